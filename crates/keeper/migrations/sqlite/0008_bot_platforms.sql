-- Issue 13: bot platforms (DESIGN.md §11). zoomkeeper answers the token callbacks
-- of Attendee's and Recall's bots itself. Times are INTEGER microseconds, UTC.

CREATE TABLE bot_platforms (
    id                     TEXT        NOT NULL,
    project_id             TEXT        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    platform               TEXT        NOT NULL CHECK (platform IN ('attendee', 'recall')),
    name                   TEXT        NOT NULL,
    -- What the platform signs its requests with (sealed); NULL for a Recall
    -- workspace without a verification secret, which uses the query token instead.
    verification_secret    BLOB,
    -- SHA-256 of the random `token` query parameter (Recall without a secret).
    query_token_hash       BLOB,
    zoom_oauth_app_id      TEXT,
    zak_user_id            TEXT,
    onbehalf_metadata_key  TEXT,
    created_at             INTEGER     NOT NULL,
    updated_at             INTEGER     NOT NULL,
    CONSTRAINT bot_platforms_pkey PRIMARY KEY (id)
);
CREATE INDEX bot_platforms_project_created ON bot_platforms (project_id, created_at, id);

-- Every callback a platform made, for its log (GET /api/v1/bot_platforms/{id}/calls).
CREATE TABLE bot_platform_calls (
    id           TEXT        NOT NULL,
    platform_id  TEXT        NOT NULL REFERENCES bot_platforms (id) ON DELETE CASCADE,
    endpoint     TEXT        NOT NULL,
    status       INTEGER     NOT NULL,
    outcome      TEXT        NOT NULL,
    bot_id       TEXT,
    meeting_id   TEXT,
    -- JSON array of the token names minted.
    minted       TEXT        NOT NULL,
    -- JSON array of {token, code, message}.
    problems     TEXT        NOT NULL,
    created_at   INTEGER     NOT NULL,
    CONSTRAINT bot_platform_calls_pkey PRIMARY KEY (id)
);
CREATE INDEX bot_platform_calls_platform_created ON bot_platform_calls (platform_id, created_at, id);
CREATE INDEX bot_platform_calls_created ON bot_platform_calls (created_at);

-- Signed message ids seen inside the timestamp window: a second use is a replay.
CREATE TABLE bot_platform_message_ids (
    platform_id  TEXT        NOT NULL REFERENCES bot_platforms (id) ON DELETE CASCADE,
    message_id   TEXT        NOT NULL,
    seen_at      INTEGER     NOT NULL,
    CONSTRAINT bot_platform_message_ids_pkey PRIMARY KEY (platform_id, message_id)
);
CREATE INDEX bot_platform_message_ids_seen ON bot_platform_message_ids (seen_at);

-- The Zoom user whose connection mints ZAKs when a request names none.
ALTER TABLE projects ADD COLUMN default_zak_user_id TEXT;
