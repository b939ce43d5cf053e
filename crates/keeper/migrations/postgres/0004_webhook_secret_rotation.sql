-- Issue 6: outgoing webhooks. After a rotation the previous signing secret keeps
-- signing (beside the new one) until previous_webhook_secret_until, so receivers
-- can switch without dropping deliveries. Sealed under slot
-- (projects, previous_webhook_secret, id).
ALTER TABLE projects ADD COLUMN previous_webhook_secret bytea;
ALTER TABLE projects ADD COLUMN previous_webhook_secret_until timestamptz;

-- dispatch_outbox_events: the undispatched events, oldest first.
CREATE INDEX outbox_events_undispatched ON outbox_events (created_at, id)
    WHERE dispatched_at IS NULL;
