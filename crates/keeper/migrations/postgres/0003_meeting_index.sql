-- Issue 5: the meeting → host index as the API lists it, and account-level host
-- lookups for Zoom webhooks (DESIGN.md §3, §4 "Meetings", "Zoom webhook ingress").

-- GET /api/v1/zoom_meetings: a project's rows, most recently indexed first.
CREATE INDEX meetings_project_synced ON zoom_meetings (project_id, synced_at, app_id, meeting_id);
-- connection_in_account: a connected connection of an account-level app's account.
CREATE INDEX connections_app_account ON zoom_oauth_connections (app_id, account_id, state);
