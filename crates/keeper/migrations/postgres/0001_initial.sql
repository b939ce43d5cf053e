-- zoomkeeper schema, PostgreSQL (DESIGN.md §3).
-- Timestamps are timestamptz (microseconds). Sealed secrets are bytea (vault
-- envelope). Constraint names are the ones storage reports in
-- StoreError::Conflict (see storage/mod.rs UNIQUE_RULES).

CREATE TABLE projects (
    id              text        NOT NULL,
    name            text        NOT NULL,
    webhook_secret  bytea       NOT NULL,
    created_at      timestamptz NOT NULL,
    CONSTRAINT projects_pkey PRIMARY KEY (id),
    CONSTRAINT projects_name UNIQUE (name)
);

CREATE TABLE api_keys (
    id            text        NOT NULL,
    project_id    text        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name          text        NOT NULL,
    key_hash      bytea       NOT NULL,
    prefix        text        NOT NULL,
    created_at    timestamptz NOT NULL,
    last_used_at  timestamptz,
    disabled_at   timestamptz,
    CONSTRAINT api_keys_pkey PRIMARY KEY (id),
    CONSTRAINT api_keys_key_hash UNIQUE (key_hash)
);
CREATE INDEX api_keys_project_created ON api_keys (project_id, created_at, id);

CREATE TABLE zoom_oauth_apps (
    id                                  text        NOT NULL,
    project_id                          text        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    client_id                           text        NOT NULL,
    client_secret                       bytea       NOT NULL,
    webhook_secret                      bytea,
    kind                                text        NOT NULL CHECK (kind IN ('user_level', 'account_level')),
    created_at                          timestamptz NOT NULL,
    updated_at                          timestamptz NOT NULL,
    last_verified_webhook_received_at   timestamptz,
    last_unverified_webhook_received_at timestamptz,
    CONSTRAINT apps_pkey PRIMARY KEY (id),
    CONSTRAINT apps_project_client_id UNIQUE (project_id, client_id)
);
CREATE INDEX apps_project_created ON zoom_oauth_apps (project_id, created_at, id);

-- An app cannot be deleted while it has connections (ON DELETE RESTRICT backs up
-- the check in delete_app, also against a connection inserted concurrently).
CREATE TABLE zoom_oauth_connections (
    id                                  text        NOT NULL,
    project_id                          text        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    app_id                              text        NOT NULL REFERENCES zoom_oauth_apps (id) ON DELETE RESTRICT,
    user_id                             text        NOT NULL,
    account_id                          text        NOT NULL,
    email                               text,
    pmi                                 text,
    personal_meeting_url                text,
    state                               text        NOT NULL DEFAULT 'connected'
                                                    CHECK (state IN ('connected', 'disconnected')),
    connection_failure_data             jsonb,
    metadata                            jsonb,
    deduplication_key                   text,
    is_local_recording_token_supported  boolean     NOT NULL DEFAULT true,
    is_onbehalf_token_supported         boolean     NOT NULL DEFAULT false,
    -- Space-separated, as Zoom grants them.
    scopes                              text        NOT NULL DEFAULT '',
    refresh_token                       bytea,
    access_token                        bytea,
    access_token_expires_at             timestamptz,
    lease_owner                         text,
    lease_until                         timestamptz,
    fence                               bigint      NOT NULL DEFAULT 0,
    last_attempted_sync_at              timestamptz,
    last_successful_sync_at             timestamptz,
    next_sync_at                        timestamptz,
    last_successful_token_refresh_at    timestamptz,
    created_at                          timestamptz NOT NULL,
    updated_at                          timestamptz NOT NULL,
    CONSTRAINT connections_pkey PRIMARY KEY (id),
    CONSTRAINT connections_app_user_id UNIQUE (app_id, user_id),
    CONSTRAINT connections_app_deduplication_key UNIQUE (app_id, deduplication_key)
);
CREATE INDEX connections_project_created ON zoom_oauth_connections (project_id, created_at, id);
CREATE INDEX connections_next_sync ON zoom_oauth_connections (next_sync_at);
CREATE INDEX connections_token_refresh ON zoom_oauth_connections (last_successful_token_refresh_at);

CREATE TABLE zoom_meetings (
    project_id     text        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    app_id         text        NOT NULL REFERENCES zoom_oauth_apps (id) ON DELETE CASCADE,
    -- Zoom's numeric meeting number, as text.
    meeting_id     text        NOT NULL,
    connection_id  text        NOT NULL REFERENCES zoom_oauth_connections (id) ON DELETE CASCADE,
    source         text        NOT NULL CHECK (source IN ('webhook', 'sync', 'pmi')),
    topic          text,
    start_time     timestamptz,
    synced_at      timestamptz NOT NULL,
    CONSTRAINT meetings_app_meeting_id PRIMARY KEY (app_id, meeting_id)
);
CREATE INDEX meetings_meeting_id ON zoom_meetings (meeting_id);
CREATE INDEX meetings_connection ON zoom_meetings (connection_id);
CREATE INDEX meetings_start_time ON zoom_meetings (start_time);

CREATE TABLE connection_events (
    id             bigint      GENERATED ALWAYS AS IDENTITY,
    project_id     text        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    connection_id  text        NOT NULL REFERENCES zoom_oauth_connections (id) ON DELETE CASCADE,
    kind           text        NOT NULL,
    message        text        NOT NULL,
    data           jsonb,
    created_at     timestamptz NOT NULL,
    CONSTRAINT connection_events_pkey PRIMARY KEY (id)
);
CREATE INDEX connection_events_connection ON connection_events (connection_id, created_at, id);

CREATE TABLE webhook_subscriptions (
    id          text        NOT NULL,
    project_id  text        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    url         text        NOT NULL,
    -- JSON array of trigger names.
    triggers    jsonb       NOT NULL,
    is_active   boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    CONSTRAINT webhook_subscriptions_pkey PRIMARY KEY (id)
);
CREATE INDEX webhook_subscriptions_project_created ON webhook_subscriptions (project_id, created_at, id);

-- The outbox: written in the same transaction as the state change that causes it.
CREATE TABLE webhook_deliveries (
    idempotency_key  text        NOT NULL,
    project_id       text        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    subscription_id  text        NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    "trigger"        text        NOT NULL,
    payload          jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'success', 'failure')),
    attempt_count    integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    last_attempt_at  timestamptz,
    succeeded_at     timestamptz,
    -- JSON array of response summaries, bounded by the writer.
    responses        jsonb       NOT NULL DEFAULT '[]',
    lease_owner      text,
    lease_until      timestamptz,
    fence            bigint      NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (idempotency_key)
);
CREATE INDEX webhook_deliveries_subscription_created
    ON webhook_deliveries (subscription_id, created_at, idempotency_key);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);

CREATE TABLE zoom_webhook_receipts (
    app_id       text        NOT NULL REFERENCES zoom_oauth_apps (id) ON DELETE CASCADE,
    dedupe_key   text        NOT NULL,
    received_at  timestamptz NOT NULL,
    CONSTRAINT webhook_receipts_app_dedupe_key PRIMARY KEY (app_id, dedupe_key)
);
CREATE INDEX zoom_webhook_receipts_received ON zoom_webhook_receipts (received_at);
