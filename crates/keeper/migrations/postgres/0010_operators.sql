-- Issue 15: dashboard operators (DESIGN.md §13). People who operate zoomkeeper in a
-- browser: accounts with an argon2id password hash, their sessions, and the failed
-- sign-ins that throttle guessing.

CREATE TABLE operators (
    id             text         NOT NULL,
    -- Lower-cased.
    email          text         NOT NULL,
    -- argon2id, in the PHC string format.
    password_hash  text         NOT NULL,
    -- The operator who added this one; NULL when made on the command line.
    created_by     text,
    created_at     timestamptz  NOT NULL,
    CONSTRAINT operators_pkey PRIMARY KEY (id),
    CONSTRAINT operators_email UNIQUE (email)
);

-- One row per signed-in browser. The cookie carries a random token; only its
-- SHA-256 is stored.
CREATE TABLE operator_sessions (
    token_hash     bytea        NOT NULL,
    operator_id    text         NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    -- The project the dashboard shows; NULL until one is chosen.
    project_id     text         REFERENCES projects (id) ON DELETE SET NULL,
    created_at     timestamptz  NOT NULL,
    last_seen_at   timestamptz  NOT NULL,
    CONSTRAINT operator_sessions_pkey PRIMARY KEY (token_hash)
);
CREATE INDEX operator_sessions_last_seen ON operator_sessions (last_seen_at);

-- Failed sign-ins per key (`email:…` or `ip:…`) in the current window.
CREATE TABLE login_failures (
    key                text         NOT NULL,
    failures           bigint       NOT NULL,
    window_started_at  timestamptz  NOT NULL,
    CONSTRAINT login_failures_pkey PRIMARY KEY (key)
);
CREATE INDEX login_failures_window ON login_failures (window_started_at);
