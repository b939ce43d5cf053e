-- Issue 10: durable work and retention. Timestamps: INTEGER microseconds, UTC.

-- Housekeeping: finished deliveries (success or failure) by when they finished.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (updated_at)
    WHERE status <> 'pending';
-- Dispatched outbox events by when they were fanned out: outbox_events_dispatch
-- (dispatched_at, created_at) serves that already.
