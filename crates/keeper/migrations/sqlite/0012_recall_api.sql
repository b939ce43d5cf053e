-- Issue 16: what the Recall-compatible API (/api/v2, DESIGN.md §14) shows that the
-- tables did not record. Times are INTEGER microseconds, UTC.

-- When a meeting sync was last asked for (on create, on re-authorisation, by
-- `POST …/sync` or `…/sync-meetings/`): a sync asked for after the last attempt is
-- `in_progress` in `meeting_sync_status`.
ALTER TABLE zoom_oauth_connections ADD COLUMN sync_requested_at INTEGER;

-- When Zoom last validated the app's event notification endpoint URL
-- (`endpoint.url_validation` answered): Recall's `webhook_last_validation`.
ALTER TABLE zoom_oauth_apps ADD COLUMN webhook_last_validation_at INTEGER;

-- The app's log a person can read (Recall's app logs): warnings and changes that
-- concern the app rather than one connection.
CREATE TABLE app_events (
    id             INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    project_id     TEXT    NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    app_id         TEXT    NOT NULL REFERENCES zoom_oauth_apps (id) ON DELETE CASCADE,
    kind           TEXT    NOT NULL,
    message        TEXT    NOT NULL,
    created_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX app_events_app ON app_events (app_id, id);
CREATE INDEX app_events_project ON app_events (project_id, id);
CREATE INDEX app_events_created ON app_events (created_at);
CREATE INDEX connection_events_project ON connection_events (project_id, id);
