-- Issue 17: who hosts each indexed meeting (Zoom's user id, when Zoom said), so a
-- meeting indexed to an account-level connection (an admin's grant) still names
-- its host: the onbehalf token of "the host" is that user's, not the admin's.
ALTER TABLE zoom_meetings ADD COLUMN host_user_id TEXT;
