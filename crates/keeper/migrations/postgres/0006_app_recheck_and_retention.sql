-- Issue 10: durable work and retention.

-- When the app's connections disconnected by a bad client secret must be checked
-- again: set to now by the write that stores a new client secret; a worker's claim
-- moves it to the end of its lease; a finished re-check clears it (only if it still
-- holds the claimed value, so a newer change keeps it due). NULL: nothing to do.
ALTER TABLE zoom_oauth_apps ADD COLUMN recheck_due_at timestamptz;
CREATE INDEX apps_recheck_due ON zoom_oauth_apps (recheck_due_at)
    WHERE recheck_due_at IS NOT NULL;

-- Housekeeping: finished deliveries (success or failure) by when they finished.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (updated_at)
    WHERE status <> 'pending';
-- Dispatched outbox events by when they were fanned out: outbox_events_dispatch
-- (dispatched_at, created_at) serves that already.
