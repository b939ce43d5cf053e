-- Issue 14: hosted connect sessions (DESIGN.md §12). A customer asks for a link, the
-- user authorises the app at Zoom through zoomkeeper's own callback, and comes back
-- to the customer's return_url with a connection.

CREATE TABLE connect_sessions (
    id                                  text        NOT NULL,
    project_id                          text        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    app_id                              text        NOT NULL,
    return_url                          text        NOT NULL,
    metadata                            jsonb,
    deduplication_key                   text,
    is_local_recording_token_supported  boolean,
    is_onbehalf_token_supported         boolean,
    -- SHA-256 of the link's token ({public_url}/connect/{token}).
    token_hash                          bytea       NOT NULL,
    -- SHA-256 of the OAuth state of the newest authorize redirect.
    state_hash                          bytea,
    -- The PKCE verifier of that redirect (sealed).
    code_verifier                       bytea,
    status                              text        NOT NULL
        CHECK (status IN ('pending', 'exchanging', 'completed', 'failed')),
    connection_id                       text,
    error                               text,
    error_description                   text,
    expires_at                          timestamptz NOT NULL,
    created_at                          timestamptz NOT NULL,
    updated_at                          timestamptz NOT NULL,
    CONSTRAINT connect_sessions_pkey PRIMARY KEY (id),
    CONSTRAINT connect_sessions_token_hash UNIQUE (token_hash),
    CONSTRAINT connect_sessions_state_hash UNIQUE (state_hash)
);
CREATE INDEX connect_sessions_created ON connect_sessions (created_at);
