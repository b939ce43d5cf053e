-- Issue 4: the token keeper's due time, and the outbox of outgoing-webhook events
-- (DESIGN.md §3, §6). Timestamps are INTEGER microseconds since the Unix epoch, UTC.

-- When the token keeper must refresh a connection next, at the latest.
ALTER TABLE zoom_oauth_connections ADD COLUMN refresh_due_at INTEGER;
-- claim_due_refreshes: connected rows by due time.
CREATE INDEX connections_state_refresh_due ON zoom_oauth_connections (state, refresh_due_at);
-- claim_due_refreshes: a connection's meetings starting soon.
CREATE INDEX meetings_connection_start_time ON zoom_meetings (connection_id, start_time);

-- Written in the same transaction as the state change that causes it; the delivery
-- worker fans each row out to the project's subscriptions (webhook_deliveries).
CREATE TABLE outbox_events (
    -- A UUID v4.
    id             TEXT    NOT NULL PRIMARY KEY,
    project_id     TEXT    NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    "trigger"      TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    dispatched_at  INTEGER
) STRICT;
CREATE INDEX outbox_events_dispatch ON outbox_events (dispatched_at, created_at);
CREATE INDEX outbox_events_project_created ON outbox_events (project_id, created_at, id);
