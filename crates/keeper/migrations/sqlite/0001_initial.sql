-- zoomkeeper schema, SQLite (DESIGN.md §3).
-- Timestamps are INTEGER microseconds since the Unix epoch, UTC (they sort and
-- compare as numbers). Sealed secrets are BLOBs (vault envelope). JSON is TEXT.
-- Booleans are INTEGER 0/1. Unique rules carry the names storage reports in
-- StoreError::Conflict (see storage/mod.rs UNIQUE_RULES).

CREATE TABLE projects (
    id              TEXT    NOT NULL PRIMARY KEY,
    name            TEXT    NOT NULL,
    webhook_secret  BLOB    NOT NULL,
    created_at      INTEGER NOT NULL,
    CONSTRAINT projects_name UNIQUE (name)
) STRICT;

CREATE TABLE api_keys (
    id            TEXT    NOT NULL PRIMARY KEY,
    project_id    TEXT    NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    key_hash      BLOB    NOT NULL,
    prefix        TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    disabled_at   INTEGER,
    CONSTRAINT api_keys_key_hash UNIQUE (key_hash)
) STRICT;
CREATE INDEX api_keys_project_created ON api_keys (project_id, created_at, id);

CREATE TABLE zoom_oauth_apps (
    id                                  TEXT    NOT NULL PRIMARY KEY,
    project_id                          TEXT    NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    client_id                           TEXT    NOT NULL,
    client_secret                       BLOB    NOT NULL,
    webhook_secret                      BLOB,
    kind                                TEXT    NOT NULL CHECK (kind IN ('user_level', 'account_level')),
    created_at                          INTEGER NOT NULL,
    updated_at                          INTEGER NOT NULL,
    last_verified_webhook_received_at   INTEGER,
    last_unverified_webhook_received_at INTEGER,
    CONSTRAINT apps_project_client_id UNIQUE (project_id, client_id)
) STRICT;
CREATE INDEX apps_project_created ON zoom_oauth_apps (project_id, created_at, id);

-- An app cannot be deleted while it has connections (ON DELETE RESTRICT backs up
-- the check in delete_app).
CREATE TABLE zoom_oauth_connections (
    id                                  TEXT    NOT NULL PRIMARY KEY,
    project_id                          TEXT    NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    app_id                              TEXT    NOT NULL REFERENCES zoom_oauth_apps (id) ON DELETE RESTRICT,
    user_id                             TEXT    NOT NULL,
    account_id                          TEXT    NOT NULL,
    email                               TEXT,
    pmi                                 TEXT,
    personal_meeting_url                TEXT,
    state                               TEXT    NOT NULL DEFAULT 'connected'
                                                CHECK (state IN ('connected', 'disconnected')),
    connection_failure_data             TEXT,
    metadata                            TEXT,
    deduplication_key                   TEXT,
    is_local_recording_token_supported  INTEGER NOT NULL DEFAULT 1,
    is_onbehalf_token_supported         INTEGER NOT NULL DEFAULT 0,
    -- Space-separated, as Zoom grants them.
    scopes                              TEXT    NOT NULL DEFAULT '',
    refresh_token                       BLOB,
    access_token                        BLOB,
    access_token_expires_at             INTEGER,
    lease_owner                         TEXT,
    lease_until                         INTEGER,
    fence                               INTEGER NOT NULL DEFAULT 0,
    last_attempted_sync_at              INTEGER,
    last_successful_sync_at             INTEGER,
    next_sync_at                        INTEGER,
    last_successful_token_refresh_at    INTEGER,
    created_at                          INTEGER NOT NULL,
    updated_at                          INTEGER NOT NULL,
    CONSTRAINT connections_app_user_id UNIQUE (app_id, user_id),
    CONSTRAINT connections_app_deduplication_key UNIQUE (app_id, deduplication_key)
) STRICT;
CREATE INDEX connections_project_created ON zoom_oauth_connections (project_id, created_at, id);
CREATE INDEX connections_next_sync ON zoom_oauth_connections (next_sync_at);
CREATE INDEX connections_token_refresh ON zoom_oauth_connections (last_successful_token_refresh_at);

CREATE TABLE zoom_meetings (
    project_id     TEXT    NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    app_id         TEXT    NOT NULL REFERENCES zoom_oauth_apps (id) ON DELETE CASCADE,
    -- Zoom's numeric meeting number, as text.
    meeting_id     TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL REFERENCES zoom_oauth_connections (id) ON DELETE CASCADE,
    source         TEXT    NOT NULL CHECK (source IN ('webhook', 'sync', 'pmi')),
    topic          TEXT,
    start_time     INTEGER,
    synced_at      INTEGER NOT NULL,
    CONSTRAINT meetings_app_meeting_id PRIMARY KEY (app_id, meeting_id)
) STRICT;
CREATE INDEX meetings_meeting_id ON zoom_meetings (meeting_id);
CREATE INDEX meetings_connection ON zoom_meetings (connection_id);
CREATE INDEX meetings_start_time ON zoom_meetings (start_time);

CREATE TABLE connection_events (
    id             INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    project_id     TEXT    NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    connection_id  TEXT    NOT NULL REFERENCES zoom_oauth_connections (id) ON DELETE CASCADE,
    kind           TEXT    NOT NULL,
    message        TEXT    NOT NULL,
    data           TEXT,
    created_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX connection_events_connection ON connection_events (connection_id, created_at, id);

CREATE TABLE webhook_subscriptions (
    id          TEXT    NOT NULL PRIMARY KEY,
    project_id  TEXT    NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    url         TEXT    NOT NULL,
    -- JSON array of trigger names.
    triggers    TEXT    NOT NULL,
    is_active   INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_subscriptions_project_created ON webhook_subscriptions (project_id, created_at, id);

-- The outbox: written in the same transaction as the state change that causes it.
CREATE TABLE webhook_deliveries (
    idempotency_key  TEXT    NOT NULL PRIMARY KEY,
    project_id       TEXT    NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    subscription_id  TEXT    NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    "trigger"        TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'success', 'failure')),
    attempt_count    INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    last_attempt_at  INTEGER,
    succeeded_at     INTEGER,
    -- JSON array of response summaries, bounded by the writer.
    responses        TEXT    NOT NULL DEFAULT '[]',
    lease_owner      TEXT,
    lease_until      INTEGER,
    fence            INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_deliveries_subscription_created
    ON webhook_deliveries (subscription_id, created_at, idempotency_key);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);

CREATE TABLE zoom_webhook_receipts (
    app_id       TEXT    NOT NULL REFERENCES zoom_oauth_apps (id) ON DELETE CASCADE,
    dedupe_key   TEXT    NOT NULL,
    received_at  INTEGER NOT NULL,
    CONSTRAINT webhook_receipts_app_dedupe_key PRIMARY KEY (app_id, dedupe_key)
) STRICT;
CREATE INDEX zoom_webhook_receipts_received ON zoom_webhook_receipts (received_at);
