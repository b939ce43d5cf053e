//! Retention: the bounded deletes housekeeping runs (DESIGN.md §6). Each takes at
//! most `limit` rows, skipping rows another process holds on PostgreSQL.

use chrono::{DateTime, Utc};

use super::sql::{placeholders, ts, Lock, SqlStore};
use super::StoreResult;

/// What one step of [`HousekeepingStore::prune_connection_events`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventPruning {
    /// Events deleted.
    pub deleted: u64,
    /// The last connection id this step walked, to pass as `after` to the next
    /// step; `None` when the walk reached the last connection (start over).
    pub next_after: Option<String>,
}

store_trait! {
    pub trait HousekeepingStore {
        /// Deletes up to `limit` receipts received before `before`; returns how many.
        async fn delete_webhook_receipts_before(&self, before: DateTime<Utc>, limit: u32)
            -> StoreResult<u64> {
            self.delete_some("zoom_webhook_receipts", "app_id, dedupe_key", "received_at < $1",
                before, limit).await
        }

        /// Deletes up to `limit` non-PMI index rows of meetings that started before
        /// `before` (rows without a start time stay); returns how many.
        async fn delete_meetings_started_before(&self, before: DateTime<Utc>, limit: u32)
            -> StoreResult<u64> {
            self.delete_some("zoom_meetings", "app_id, meeting_id",
                "start_time < $1 AND source <> 'pmi'", before, limit).await
        }

        /// Deletes up to `limit` finished webhook deliveries (`success` or `failure`,
        /// their attempt summaries with them) last changed before `before`; returns how
        /// many. Pending deliveries (waiting for an attempt or a retry) stay.
        async fn delete_finished_webhook_deliveries_before(&self, before: DateTime<Utc>, limit: u32)
            -> StoreResult<u64> {
            // `status <> 'pending'` as written in the partial index, so SQLite uses it. On
            // PostgreSQL the locking subquery re-reads a row changed meanwhile (a resend
            // makes it pending again) and drops it if it no longer matches.
            self.delete_some("webhook_deliveries", "idempotency_key",
                "status <> 'pending' AND updated_at < $1", before, limit).await
        }

        /// Deletes up to `limit` outbox events fanned out before `before`; returns how
        /// many. Events not yet fanned out stay, however old.
        async fn delete_dispatched_outbox_events_before(&self, before: DateTime<Utc>, limit: u32)
            -> StoreResult<u64> {
            // NULL (not fanned out yet) is never `< $1`.
            self.delete_some("outbox_events", "id", "dispatched_at < $1", before, limit).await
        }

        /// Event-log pruning, one step: for the next `connections` connections in id
        /// order after `after`, deletes the events whose kind is one of `kinds` and that
        /// are not among the connection's `keep_newest` newest events (any kind). Events
        /// of other kinds are never deleted.
        async fn prune_connection_events(&self, after: Option<&str>, connections: u32,
            keep_newest: u32, kinds: &[&str]) -> StoreResult<EventPruning> {
            let ids: Vec<String> = sql!(scalar_all &mut self.conn().await?,
                "SELECT id FROM zoom_oauth_connections WHERE ($1 IS NULL OR id > $1) \
                 ORDER BY id LIMIT $2",
                after, i64::from(connections))?;
            let next_after = ids.last().filter(|_| ids.len() >= connections as usize).cloned();
            if ids.is_empty() || kinds.is_empty() {
                return Ok(EventPruning { deleted: 0, next_after });
            }
            let sql = format!(
                "DELETE FROM connection_events WHERE id IN (\
                     SELECT id FROM (\
                         SELECT e.id, e.kind, ROW_NUMBER() OVER (\
                             PARTITION BY e.connection_id ORDER BY e.id DESC) AS newer \
                         FROM connection_events e WHERE e.connection_id IN ({})) ranked \
                     WHERE newer > $1 AND kind IN ({}))",
                placeholders(2, ids.len()),
                placeholders(2 + ids.len(), kinds.len())
            );
            let deleted = run!(&mut self.conn().await?, |c| {
                let mut q = sqlx::query(&sql).bind(i64::from(keep_newest));
                for id in &ids {
                    q = q.bind(id);
                }
                for kind in kinds {
                    q = q.bind(*kind);
                }
                q.execute(c).await?.rows_affected()
            });
            Ok(EventPruning { deleted, next_after })
        }
    }
}

impl SqlStore {
    /// Deletes up to `limit` rows of `table` whose `key` (its key columns) is among
    /// those `condition` (on `$1`) selects.
    async fn delete_some(
        &self,
        table: &str,
        key: &str,
        condition: &str,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64> {
        sql!(execute &mut self.conn().await?,
            &format!("DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} \
                      WHERE {condition} LIMIT $2{})", self.pool.lock(Lock::SkipLocked)),
            ts(before), i64::from(limit))
    }
}
