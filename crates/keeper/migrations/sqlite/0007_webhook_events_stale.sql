-- Issue 11: set when an app's verified Zoom webhooks stopped while its connections
-- kept scheduling meetings (the meeting sync found meetings no webhook announced:
-- Zoom stops an app's events after the last failed retry until someone
-- intervenes); cleared by the next verified webhook. INTEGER microseconds, UTC.
ALTER TABLE zoom_oauth_apps ADD COLUMN webhook_events_stale_since INTEGER;
