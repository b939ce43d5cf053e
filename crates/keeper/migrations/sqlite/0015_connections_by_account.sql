-- Issue 18: a Zoom webhook at the shared URL (`/api/v1/zoom_oauth/webhooks`, no app
-- in it) is verified against the apps with a connection in the event's Zoom account.
CREATE INDEX connections_account ON zoom_oauth_connections (account_id, app_id);
