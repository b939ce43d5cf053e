-- Issue 17: the meeting sync of an account-level connection reads every user of the
-- Zoom account and their meetings, which can take longer than one claim (Zoom's
-- per-account rate limit). A pass is kept here as it goes, so it resumes after a
-- restart or a long 429, and the connection's `sync` rows are replaced only when
-- the pass is complete. Times are INTEGER microseconds, UTC.

-- When the pass under way began (NULL when none is); users read in it, of how many
-- (kept after the pass for the connection's representation).
ALTER TABLE zoom_oauth_connections ADD COLUMN sync_pass_started_at INTEGER;
ALTER TABLE zoom_oauth_connections ADD COLUMN sync_users_done INTEGER;
ALTER TABLE zoom_oauth_connections ADD COLUMN sync_users_total INTEGER;

-- The users whose meetings the pass has read.
CREATE TABLE account_sync_users (
    connection_id  TEXT    NOT NULL REFERENCES zoom_oauth_connections (id) ON DELETE CASCADE,
    user_id        TEXT    NOT NULL,
    CONSTRAINT account_sync_users_pkey PRIMARY KEY (connection_id, user_id)
) STRICT;

-- The meetings the pass found so far, with their hosts.
CREATE TABLE account_sync_meetings (
    connection_id  TEXT    NOT NULL REFERENCES zoom_oauth_connections (id) ON DELETE CASCADE,
    meeting_id     TEXT    NOT NULL,
    host_user_id   TEXT    NOT NULL,
    -- Zoom's listing named the user as the host (not only listed the meeting).
    host_confirmed INTEGER NOT NULL,
    topic          TEXT,
    start_time     INTEGER,
    CONSTRAINT account_sync_meetings_pkey PRIMARY KEY (connection_id, meeting_id)
) STRICT;
