-- Issue 14: hosted connect sessions (DESIGN.md §12). A customer asks for a link, the
-- user authorises the app at Zoom through zoomkeeper's own callback, and comes back
-- to the customer's return_url with a connection.
-- Times are INTEGER microseconds, UTC.

CREATE TABLE connect_sessions (
    id                                  TEXT        NOT NULL,
    project_id                          TEXT        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    app_id                              TEXT        NOT NULL,
    return_url                          TEXT        NOT NULL,
    metadata                            TEXT,
    deduplication_key                   TEXT,
    is_local_recording_token_supported  BOOLEAN,
    is_onbehalf_token_supported         BOOLEAN,
    -- SHA-256 of the link's token ({public_url}/connect/{token}).
    token_hash                          BLOB        NOT NULL,
    -- SHA-256 of the OAuth state of the newest authorize redirect.
    state_hash                          BLOB,
    -- The PKCE verifier of that redirect (sealed).
    code_verifier                       BLOB,
    status                              TEXT        NOT NULL
        CHECK (status IN ('pending', 'exchanging', 'completed', 'failed')),
    connection_id                       TEXT,
    error                               TEXT,
    error_description                   TEXT,
    expires_at                          INTEGER     NOT NULL,
    created_at                          INTEGER     NOT NULL,
    updated_at                          INTEGER     NOT NULL,
    CONSTRAINT connect_sessions_pkey PRIMARY KEY (id),
    CONSTRAINT connect_sessions_token_hash UNIQUE (token_hash),
    CONSTRAINT connect_sessions_state_hash UNIQUE (state_hash)
);
CREATE INDEX connect_sessions_created ON connect_sessions (created_at);
