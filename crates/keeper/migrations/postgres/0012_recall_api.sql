-- Issue 16: what the Recall-compatible API (/api/v2, DESIGN.md §14) shows that the
-- tables did not record.

-- When a meeting sync was last asked for (on create, on re-authorisation, by
-- `POST …/sync` or `…/sync-meetings/`): a sync asked for after the last attempt is
-- `in_progress` in `meeting_sync_status`.
ALTER TABLE zoom_oauth_connections ADD COLUMN sync_requested_at timestamptz;

-- When Zoom last validated the app's event notification endpoint URL
-- (`endpoint.url_validation` answered): Recall's `webhook_last_validation`.
ALTER TABLE zoom_oauth_apps ADD COLUMN webhook_last_validation_at timestamptz;

-- The app's log a person can read (Recall's app logs): warnings and changes that
-- concern the app rather than one connection.
CREATE TABLE app_events (
    id             bigint      GENERATED ALWAYS AS IDENTITY,
    project_id     text        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    app_id         text        NOT NULL REFERENCES zoom_oauth_apps (id) ON DELETE CASCADE,
    kind           text        NOT NULL,
    message        text        NOT NULL,
    created_at     timestamptz NOT NULL,
    CONSTRAINT app_events_pkey PRIMARY KEY (id)
);
CREATE INDEX app_events_app ON app_events (app_id, id);
CREATE INDEX app_events_project ON app_events (project_id, id);
CREATE INDEX app_events_created ON app_events (created_at);
CREATE INDEX connection_events_project ON connection_events (project_id, id);
