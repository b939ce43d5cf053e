//! Connection leases (DESIGN.md §6): only the holder of the current fence writes a
//! connection's tokens. Claims, refresh write-backs, disconnects and reconnects.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::connections::{
    connection_from_row, failure_to_json, scopes_to_text, CONNECTION_COLUMNS,
};
use super::events::{write_connection_change, write_connection_event};
use super::sql::{after, ots, ts, Lock, Span, SqlStore};
use super::{
    ConnectionRow, DisconnectOutcome, FailureData, NewConnectionEvent, OutboxSource,
    RefreshedTokens, Sealed, StoreResult,
};

store_trait! {
    pub trait LeaseStore {
        /// Claims connection `id` for a refresh when it is connected and its lease is
        /// free or expired (database clock): sets owner, `lease_until = now + lease_for`,
        /// `fence = fence + 1`. Returns the claimed row (with the new fence), or `None`
        /// when it is leased by someone else, disconnected, or gone.
        async fn claim_connection_lease(&self, id: &str, owner: &str, lease_for: Duration)
            -> StoreResult<Option<ConnectionRow>> {
            self.claim_lease(id, owner, lease_for, false).await
        }

        /// Claims connection `id` whatever its state, when its lease is free or expired:
        /// for changes that must not race a refresh (delete, re-bind) and then revoke the
        /// grant they read. Same fields and answer as [`LeaseStore::claim_connection_lease`].
        async fn claim_connection_lease_any_state(&self, id: &str, owner: &str, lease_for: Duration)
            -> StoreResult<Option<ConnectionRow>> {
            self.claim_lease(id, owner, lease_for, true).await
        }

        /// Extends a held lease to `now + lease_for` (database clock), only `WHERE id
        /// AND fence`: false when the fence moved on (the lease is lost).
        async fn renew_connection_lease(&self, id: &str, fence: i64, lease_for: Duration)
            -> StoreResult<bool> {
            let now = self.now().await?;
            sql!(one_changed &mut self.conn().await?,
                "UPDATE zoom_oauth_connections SET lease_until = $1 \
                 WHERE id = $2 AND fence = $3 AND lease_owner IS NOT NULL",
                after(now, lease_for), id, fence)
        }

        /// Claims up to `limit` connected connections whose refresh is due
        /// ([`crate::domain::tokens::refresh_due`] at the database clock, `ahead_of_meetings`),
        /// oldest due first, skipping leased ones (and locked ones, on PostgreSQL).
        /// Customer-managed connections (with an `access_token_callback_url`) are never
        /// claimed: there is no grant of ours to refresh.
        async fn claim_due_refreshes(&self, owner: &str, limit: u32, lease_for: Duration,
            ahead_of_meetings: Duration) -> StoreResult<Vec<ConnectionRow>> {
            let now = self.now().await?;
            let due = crate::domain::tokens::refresh_due(now, ahead_of_meetings);
            let mut tx = self.begin().await?;
            let mut claimed = sql!(all &mut tx, connection_from_row,
                &format!("WITH due(due_id) AS MATERIALIZED (\
                              SELECT c.id FROM zoom_oauth_connections c \
                              WHERE c.state = 'connected' \
                              AND c.access_token_callback_url IS NULL \
                              AND (c.lease_until IS NULL OR c.lease_until < $1) \
                              AND (c.refresh_due_at IS NULL OR c.refresh_due_at <= $2 OR EXISTS (\
                                  SELECT 1 FROM zoom_meetings m WHERE m.connection_id = c.id \
                                  AND m.start_time >= $2 AND m.start_time <= $3 \
                                  AND (c.access_token_expires_at IS NULL \
                                       OR c.access_token_expires_at < m.start_time + $4))) \
                              ORDER BY c.refresh_due_at NULLS FIRST LIMIT $5{}) \
                          UPDATE zoom_oauth_connections \
                          SET lease_owner = $6, lease_until = $7, fence = fence + 1 \
                          FROM due WHERE id = due.due_id RETURNING {CONNECTION_COLUMNS}",
                         self.pool.lock(Lock::SkipLocked)),
                ts(now), ts(due.due_by), ts(due.meetings_until), Span(due.token_margin),
                i64::from(limit), owner, after(now, lease_for))?;
            tx.commit().await?;
            // None (never scheduled) first, like the claim's ORDER BY.
            claimed.sort_by_key(|c| c.refresh_due_at);
            Ok(claimed)
        }

        /// Writes refreshed tokens and releases the lease, only `WHERE id AND fence`;
        /// false (nothing written) when the fence moved on.
        async fn store_refreshed_tokens(&self, id: &str, fence: i64, tokens: &RefreshedTokens,
            event: Option<&NewConnectionEvent>) -> StoreResult<bool> {
            let now = self.now().await?;
            let mut tx = self.begin().await?;
            let written = sql!(execute &mut tx,
                "UPDATE zoom_oauth_connections SET refresh_token = $1, access_token = $2, \
                 access_token_expires_at = $3, refresh_due_at = $4, scopes = COALESCE($5, scopes), \
                 last_successful_token_refresh_at = $6, lease_owner = NULL, lease_until = NULL, \
                 updated_at = $6 WHERE id = $7 AND fence = $8",
                &tokens.refresh_token.0, &tokens.access_token.0, ts(tokens.access_token_expires_at),
                ts(tokens.refresh_due_at), tokens.scopes.as_deref().map(scopes_to_text), ts(now),
                id, fence)?;
            if written == 0 {
                return Ok(false);
            }
            if let Some(event) = event {
                write_connection_event(&mut tx, id, event, now).await?;
            }
            tx.commit().await?;
            Ok(true)
        }

        /// Writes an access token fetched from a customer-managed connection's
        /// `access_token_callback_url` (no refresh token, no due time) and releases the
        /// lease, only `WHERE id AND fence` and while the connection still has a
        /// callback; false (nothing written) otherwise.
        async fn store_callback_token(&self, id: &str, fence: i64, access_token: &Sealed,
            expires_at: DateTime<Utc>) -> StoreResult<bool> {
            let now = self.now().await?;
            sql!(one_changed &mut self.conn().await?,
                "UPDATE zoom_oauth_connections SET access_token = $1, \
                 access_token_expires_at = $2, last_successful_token_refresh_at = $3, \
                 lease_owner = NULL, lease_until = NULL, updated_at = $3 \
                 WHERE id = $4 AND fence = $5 AND access_token_callback_url IS NOT NULL",
                &access_token.0, ts(expires_at), ts(now), id, fence)
        }

        /// Releases the lease without writing tokens (temporary failure), optionally
        /// pushing `refresh_due_at` back for a retry. False when the fence moved on.
        async fn release_connection_lease(&self, id: &str, fence: i64,
            retry_at: Option<DateTime<Utc>>) -> StoreResult<bool> {
            sql!(one_changed &mut self.conn().await?,
                "UPDATE zoom_oauth_connections SET lease_owner = NULL, lease_until = NULL, \
                 refresh_due_at = COALESCE($1, refresh_due_at) WHERE id = $2 AND fence = $3",
                ots(retry_at), id, fence)
        }

        /// Marks a connected connection disconnected with `failure`, erasing its tokens
        /// and releasing any lease, with `event` and `outbox` in the same transaction.
        /// With `fence: Some(f)` only while the fence is still `f`.
        async fn disconnect_connection(&self, id: &str, fence: Option<i64>, failure: &FailureData,
            event: &NewConnectionEvent, outbox: Option<&dyn OutboxSource>)
            -> StoreResult<DisconnectOutcome> {
            self.disconnect(id, fence, failure, event, outbox, false)
                .await
        }

        /// Like [`LeaseStore::disconnect_connection`], but keeps the sealed refresh token
        /// (the access token is erased): for a failure of the app's own credentials
        /// (`invalid_client`), which leaves the user's grant alive, so a corrected
        /// client secret can bring the connection back ([`LeaseStore::reconnect_connection`]).
        async fn disconnect_connection_keeping_grant(&self, id: &str, fence: Option<i64>,
            failure: &FailureData, event: &NewConnectionEvent, outbox: Option<&dyn OutboxSource>)
            -> StoreResult<DisconnectOutcome> {
            self.disconnect(id, fence, failure, event, outbox, true)
                .await
        }

        /// Claims, as [`LeaseStore::claim_connection_lease`] does, up to `limit`
        /// disconnected connections of `app_id` whose `connection_failure_data.code` is
        /// `code`, that still hold a refresh token and whose lease is free or expired, in
        /// id order after `after` (a walk that visits each once). Returns the claimed rows.
        async fn claim_disconnected_connections(&self, app_id: &str, code: &str,
            after: Option<&str>, owner: &str, limit: u32, lease_for: Duration)
            -> StoreResult<Vec<ConnectionRow>> {
            let now = self.now().await?;
            let mut tx = self.begin().await?;
            let mut claimed = sql!(all &mut tx, connection_from_row,
                &format!("WITH due(due_id) AS MATERIALIZED (\
                              SELECT id FROM zoom_oauth_connections \
                              WHERE app_id = $1 AND state = 'disconnected' \
                              AND refresh_token IS NOT NULL \
                              AND connection_failure_data ->> 'code' = $2 \
                              AND (lease_until IS NULL OR lease_until < $3) \
                              AND ($4 IS NULL OR id > $4) ORDER BY id LIMIT $5{}) \
                          UPDATE zoom_oauth_connections \
                          SET lease_owner = $6, lease_until = $7, fence = fence + 1 \
                          FROM due WHERE id = due.due_id RETURNING {CONNECTION_COLUMNS}",
                         self.pool.lock(Lock::SkipLocked)),
                app_id, code, ts(now), after, i64::from(limit), owner,
                super::sql::after(now, lease_for))?;
            tx.commit().await?;
            claimed.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(claimed)
        }

        /// Brings a disconnected connection claimed with
        /// [`LeaseStore::claim_disconnected_connections`] back: state `connected`, failure
        /// data cleared, `tokens` written, lease released, `event` and `outbox` in the
        /// same transaction — only `WHERE id AND fence AND state = 'disconnected'`.
        /// False (nothing written) when the fence moved on.
        async fn reconnect_connection(&self, id: &str, fence: i64, tokens: &RefreshedTokens,
            event: &NewConnectionEvent, outbox: Option<&dyn OutboxSource>) -> StoreResult<bool> {
            let now = self.now().await?;
            let mut tx = self.begin().await?;
            let row = sql!(optional &mut tx, connection_from_row,
                &format!("UPDATE zoom_oauth_connections SET state = 'connected', \
                          connection_failure_data = NULL, refresh_token = $1, access_token = $2, \
                          access_token_expires_at = $3, refresh_due_at = $4, \
                          scopes = COALESCE($5, scopes), last_successful_token_refresh_at = $6, \
                          lease_owner = NULL, lease_until = NULL, updated_at = $6 \
                          WHERE id = $7 AND fence = $8 AND state = 'disconnected' \
                          RETURNING {CONNECTION_COLUMNS}"),
                &tokens.refresh_token.0, &tokens.access_token.0, ts(tokens.access_token_expires_at),
                ts(tokens.refresh_due_at), tokens.scopes.as_deref().map(scopes_to_text), ts(now),
                id, fence)?;
            let Some(row) = row else {
                return Ok(false);
            };
            write_connection_change(&mut tx, &row, event, outbox, now).await?;
            tx.commit().await?;
            Ok(true)
        }

        /// For a disconnected connection claimed with
        /// [`LeaseStore::claim_disconnected_connections`] whose grant turned out to be
        /// gone: replaces its failure data with `failure`, erases its tokens, releases the
        /// lease and writes `event`, under the fence. The state does not change, so no
        /// outbox row. False when the fence moved on.
        async fn erase_disconnected_grant(&self, id: &str, fence: i64, failure: &FailureData,
            event: &NewConnectionEvent) -> StoreResult<bool> {
            let now = self.now().await?;
            let mut tx = self.begin().await?;
            let written = sql!(execute &mut tx,
                "UPDATE zoom_oauth_connections SET connection_failure_data = $1, \
                 refresh_token = NULL, access_token = NULL, access_token_expires_at = NULL, \
                 lease_owner = NULL, lease_until = NULL, updated_at = $2 \
                 WHERE id = $3 AND fence = $4 AND state = 'disconnected'",
                failure_to_json(failure), ts(now), id, fence)?;
            if written == 0 {
                return Ok(false);
            }
            write_connection_event(&mut tx, id, event, now).await?;
            tx.commit().await?;
            Ok(true)
        }
    }
}

impl SqlStore {
    /// Claims connection `id` when its lease is free or expired (and, unless
    /// `any_state`, it is connected).
    async fn claim_lease(
        &self,
        id: &str,
        owner: &str,
        lease_for: Duration,
        any_state: bool,
    ) -> StoreResult<Option<ConnectionRow>> {
        let now = self.now().await?;
        sql!(optional &mut self.conn().await?, connection_from_row,
            &format!("UPDATE zoom_oauth_connections SET lease_owner = $1, lease_until = $2, \
                      fence = fence + 1 \
                      WHERE id = $3 AND ($5 OR state = 'connected') \
                      AND (lease_until IS NULL OR lease_until < $4) \
                      RETURNING {CONNECTION_COLUMNS}"),
            owner, after(now, lease_for), id, ts(now), any_state)
    }

    /// `disconnect_connection` and `disconnect_connection_keeping_grant`.
    async fn disconnect(
        &self,
        id: &str,
        fence: Option<i64>,
        failure: &FailureData,
        event: &NewConnectionEvent,
        outbox: Option<&dyn OutboxSource>,
        keep_refresh_token: bool,
    ) -> StoreResult<DisconnectOutcome> {
        let now = self.now().await?;
        let mut tx = self.begin().await?;
        // Concurrent callers queue on the row lock and then see `disconnected`.
        let row = sql!(optional &mut tx, connection_from_row,
            &format!("UPDATE zoom_oauth_connections SET state = 'disconnected', \
                      connection_failure_data = $1, \
                      refresh_token = CASE WHEN $5 THEN refresh_token ELSE NULL END, \
                      access_token = NULL, access_token_expires_at = NULL, \
                      lease_owner = NULL, lease_until = NULL, fence = fence + 1, updated_at = $2 \
                      WHERE id = $3 AND state = 'connected' AND ($4 IS NULL OR fence = $4) \
                      RETURNING {CONNECTION_COLUMNS}"),
            failure_to_json(failure), ts(now), id, fence, keep_refresh_token)?;
        let Some(row) = row else {
            let exists: bool = sql!(scalar_one &mut tx,
                "SELECT EXISTS (SELECT 1 FROM zoom_oauth_connections WHERE id = $1)", id)?;
            return Ok(if exists {
                DisconnectOutcome::Unchanged
            } else {
                DisconnectOutcome::NotFound
            });
        };
        write_connection_change(&mut tx, &row, event, outbox, now).await?;
        tx.commit().await?;
        Ok(DisconnectOutcome::Disconnected(Box::new(row)))
    }
}
