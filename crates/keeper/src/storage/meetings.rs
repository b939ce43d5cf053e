//! The meeting → host index and Zoom webhook receipts (DESIGN.md §3 `zoom_meeting`,
//! `zoom_webhook_receipt`). One row per (app, meeting); which write may replace or
//! drop a row is decided by `crate::domain::meetings` ([`crate::domain::meetings::replaces`],
//! [`crate::domain::meetings::dropped_by_deletion`]) for every writer, this one and the
//! SQLite receipt writer alike: SQL here only reads the row and writes.

use chrono::{DateTime, Utc};

use super::sql::{keyset, ots, page_of, placeholders, ts, Lock, Row, SqlStore, Tx};
use super::sqlite_receipts::ReceiptJob;
use super::{foreign_key_not_found, Page, PageRequest, StoreError, StoreResult};

text_enum! {
    /// Where an index row came from.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum MeetingSource("meeting source") {
        /// A `meeting.created` webhook.
        Webhook = "webhook",
        /// The meeting sync (issue 5, later).
        Sync = "sync",
        /// The connection's personal meeting ID.
        Pmi = "pmi",
    }
}

/// One meeting and the connection that hosts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingRow {
    pub project_id: String,
    pub app_id: String,
    /// Zoom's meeting number as text (9 to 11 digits; checked by the domain).
    pub meeting_id: String,
    pub connection_id: String,
    pub source: MeetingSource,
    pub topic: Option<String>,
    /// `None` for meetings without a fixed time (PMI, recurring without a time) and
    /// for recurring meetings, whose first occurrence says nothing about the next.
    pub start_time: Option<DateTime<Utc>>,
    pub synced_at: DateTime<Utc>,
}

/// Filters of `GET /api/v1/zoom_meetings`; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct MeetingFilter {
    pub meeting_id: Option<String>,
    pub connection_id: Option<String>,
}

/// A change to the index, applied alone ([`MeetingStore::apply_meeting_change`]) or
/// together with a webhook receipt in one transaction
/// ([`MeetingStore::record_webhook_receipt_and_apply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeetingIndexChange {
    /// Index the meeting, or re-point an existing (app, meeting) row to this
    /// connection (except a `pmi` row, which only another `pmi` row replaces).
    /// `StoreError::NotFound` when the connection no longer exists.
    Upsert(MeetingRow),
    /// [`Upsert`](Self::Upsert), provided the row's connection still belongs to
    /// Zoom user `user_id` and is still `state`, as when the host was chosen
    /// (perhaps from a cache): `StoreError::NotFound` when it is gone or changed, so
    /// the caller can choose again.
    UpsertIfHost {
        row: MeetingRow,
        user_id: String,
        state: super::ConnectionState,
    },
    /// Drop (app, meeting) from the index, unless it is a `pmi` row.
    Delete { app_id: String, meeting_id: String },
    /// The connection's PMI is now `row.meeting_id`: its other `pmi` rows go, `row`
    /// (source `pmi`) is indexed, and the connection's stored `pmi` (and
    /// `personal_meeting_url`, when given) change. `StoreError::NotFound` when the
    /// connection no longer exists.
    ReplacePmi {
        row: MeetingRow,
        personal_meeting_url: Option<String>,
    },
    /// Only the receipt (the change itself was made by a separate write).
    Nothing,
}

/// What `record_webhook_receipt_and_apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// The receipt is new; the change was applied with it.
    Applied,
    /// The event was received before; nothing changed.
    Duplicate,
}

/// Which of an app's webhook timestamps to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookVerification {
    /// `last_verified_webhook_received_at`.
    Verified,
    /// `last_unverified_webhook_received_at`.
    Unverified,
}

/// The cursor id of an index row: `{app_id}_{meeting_id}` (app ids contain `_`,
/// meeting numbers never do).
pub fn meeting_cursor_id(app_id: &str, meeting_id: &str) -> String {
    format!("{app_id}_{meeting_id}")
}

/// `(app_id, meeting_id)` from a cursor id made by [`meeting_cursor_id`], if it is
/// one: an app id (`zoa_…`) and a meeting number. The API checks cursors with this
/// before a query sees them (a bad one is a 400).
pub fn parse_meeting_cursor_id(id: &str) -> Option<(&str, &str)> {
    id.rsplit_once('_').filter(|(app, meeting)| {
        crate::core::ids::IdKind::App.matches(app)
            && !meeting.is_empty()
            && meeting.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// `(app_id, meeting_id)` from a cursor made by [`meeting_cursor_id`]. Only reached
/// with a cursor the API has already checked with [`parse_meeting_cursor_id`].
pub(super) fn meeting_cursor_key(cursor: &super::Cursor) -> StoreResult<(String, String)> {
    parse_meeting_cursor_id(&cursor.id)
        .map(|(app, meeting)| (app.to_owned(), meeting.to_owned()))
        .ok_or_else(|| {
            super::StoreError::Database(sqlx::Error::InvalidArgument(format!(
                "meeting cursor id {:?} is not app_meeting",
                cursor.id
            )))
        })
}

pub(super) fn parse_source(s: &str) -> StoreResult<MeetingSource> {
    MeetingSource::parse(s)
        .ok_or_else(|| super::sql::decode_error(format!("unknown meeting source {s:?}")))
}

store_trait! {
    pub trait MeetingStore {
        /// Records Zoom webhook `(app_id, dedupe_key)` and applies `change` in one
        /// transaction. `Duplicate` (nothing changed) when the receipt exists already.
        /// Errors (e.g. `NotFound` for a vanished connection) leave no receipt.
        async fn record_webhook_receipt_and_apply(&self, app_id: &str, dedupe_key: &str,
            received_at: DateTime<Utc>, change: &MeetingIndexChange)
            -> StoreResult<ReceiptOutcome> {
            if let Some(receipts) = self.receipts() {
                let (reply, answer) = tokio::sync::oneshot::channel();
                let job = ReceiptJob {
                    app_id: app_id.to_owned(),
                    dedupe_key: dedupe_key.to_owned(),
                    received_at,
                    change: change.clone(),
                    reply,
                };
                let gone = || StoreError::Database(sqlx::Error::PoolClosed);
                receipts.send(job).await.map_err(|_| gone())?;
                return answer.await.map_err(|_| gone())?;
            }
            let mut tx = self.begin().await?;
            // A concurrent delivery of the same event waits here on the key, then sees
            // the first one's receipt and changes nothing.
            let inserted = sql!(execute &mut tx,
                "INSERT INTO zoom_webhook_receipts (app_id, dedupe_key, received_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (app_id, dedupe_key) DO NOTHING",
                app_id, dedupe_key, ts(received_at))
            .map_err(foreign_key_not_found)?;
            if inserted == 0 {
                return Ok(ReceiptOutcome::Duplicate);
            }
            self.apply_meeting_change_in(&mut tx, change).await?;
            tx.commit().await?;
            Ok(ReceiptOutcome::Applied)
        }

        async fn webhook_receipt_exists(&self, app_id: &str, dedupe_key: &str)
            -> StoreResult<bool> {
            sql!(scalar_one &mut self.conn().await?,
                "SELECT EXISTS (SELECT 1 FROM zoom_webhook_receipts \
                 WHERE app_id = $1 AND dedupe_key = $2)",
                app_id, dedupe_key)
        }

        /// Applies one index change on its own (meeting sync, connection changes).
        async fn apply_meeting_change(&self, change: &MeetingIndexChange) -> StoreResult<()> {
            let mut tx = self.begin().await?;
            self.apply_meeting_change_in(&mut tx, change).await?;
            tx.commit().await
        }

        /// Who hosts `meeting_id` in the project: the rows of every app, or of `app_id`
        /// only; most recently indexed first. The join-token lookup.
        async fn meeting_hosts(&self, project_id: &str, app_id: Option<&str>, meeting_id: &str)
            -> StoreResult<Vec<MeetingRow>> {
            // `project_id || ''`: without statistics SQLite would walk the project's rows
            // in synced_at order instead of using the meeting_id index.
            sql!(all &mut self.conn().await?, meeting_from_row,
                &format!("SELECT {MEETING_COLUMNS} FROM zoom_meetings \
                          WHERE meeting_id = $1 AND project_id || '' = $2 \
                          AND ($3 IS NULL OR app_id = $3) ORDER BY synced_at DESC, app_id DESC"),
                meeting_id, project_id, app_id)
        }

        /// The project's index, most recently indexed (`synced_at`) first; cursors carry
        /// `synced_at` and [`meeting_cursor_id`].
        async fn list_meetings(&self, project_id: &str, filter: &MeetingFilter, page: &PageRequest)
            -> StoreResult<Page<MeetingRow>> {
            // Conditions only when given, so each filter can use its index.
            let mut sql =
                format!("SELECT {MEETING_COLUMNS} FROM zoom_meetings WHERE project_id = $1");
            let mut n = 1;
            let mut next = || {
                n += 1;
                n
            };
            if filter.meeting_id.is_some() {
                sql.push_str(&format!(" AND meeting_id = ${}", next()));
            }
            if filter.connection_id.is_some() {
                sql.push_str(&format!(" AND connection_id = ${}", next()));
            }
            let (cmp, order) = keyset(page);
            let cursor = page.cursor.as_ref().map(meeting_cursor_key).transpose()?;
            if cursor.is_some() {
                let first = next();
                next();
                next();
                sql.push_str(&format!(
                    " AND (synced_at, app_id, meeting_id) {cmp} ({})",
                    placeholders(first, 3)
                ));
            }
            sql.push_str(&format!(
                " ORDER BY synced_at {order}, app_id {order}, meeting_id {order} LIMIT ${}",
                next()
            ));
            let items = run!(&mut self.conn().await?, |c| {
                let mut q = sqlx::query(&sql).bind(project_id);
                if let Some(meeting_id) = &filter.meeting_id {
                    q = q.bind(meeting_id);
                }
                if let Some(connection_id) = &filter.connection_id {
                    q = q.bind(connection_id);
                }
                if let (Some(c), Some((app_id, meeting_id))) = (&page.cursor, &cursor) {
                    q = q.bind(ts(c.created_at)).bind(app_id).bind(meeting_id);
                }
                let rows = q.bind(i64::from(page.limit) + 1).fetch_all(c).await?;
                rows.iter()
                    .map(meeting_from_row)
                    .collect::<StoreResult<Vec<_>>>()
            })?;
            Ok(page_of(items, page))
        }
    }
}

pub(super) const MEETING_COLUMNS: &str =
    "project_id, app_id, meeting_id, connection_id, source, topic, start_time, synced_at";

fn meeting_from_row(row: &impl Row) -> StoreResult<MeetingRow> {
    from_row!(row => MeetingRow {
        project_id, app_id, meeting_id, connection_id, source, topic, start_time, synced_at
    })
}

fn held_from_row(row: &impl Row) -> StoreResult<(MeetingSource, String)> {
    Ok((row.get("source")?, row.get("connection_id")?))
}

impl SqlStore {
    /// Writes index row `row` when [`crate::domain::meetings::replaces`] lets it replace
    /// the row its (app, meeting) holds (or there is none); true when written.
    pub(super) async fn index_meeting(
        &self,
        tx: &mut Tx,
        row: &MeetingRow,
        host_confirmed: bool,
    ) -> StoreResult<bool> {
        // The read locks the row on PostgreSQL; a row inserted meanwhile makes the
        // insert write nothing, and the rule is asked again about it.
        for _ in 0..3 {
            let held = sql!(optional &mut *tx, held_from_row,
                &format!("SELECT source, connection_id FROM zoom_meetings \
                          WHERE app_id = $1 AND meeting_id = $2{}", self.lock(Lock::Update)),
                &row.app_id, &row.meeting_id)?;
            let written = match held {
                None => sql!(execute &mut *tx,
                    &format!("INSERT INTO zoom_meetings ({MEETING_COLUMNS}) \
                              VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                              ON CONFLICT (app_id, meeting_id) DO NOTHING"),
                    &row.project_id, &row.app_id, &row.meeting_id, &row.connection_id,
                    row.source.as_str(), &row.topic, ots(row.start_time), ts(row.synced_at)),
                Some((source, by))
                    if !crate::domain::meetings::replaces(source, &by, row, host_confirmed) =>
                {
                    return Ok(false)
                }
                Some((source, by)) => sql!(execute &mut *tx,
                    "UPDATE zoom_meetings SET connection_id = $1, source = $2, topic = $3, \
                     start_time = $4, synced_at = $5 \
                     WHERE app_id = $6 AND meeting_id = $7 AND source = $8 AND connection_id = $9",
                    &row.connection_id, row.source.as_str(), &row.topic, ots(row.start_time),
                    ts(row.synced_at), &row.app_id, &row.meeting_id, source.as_str(), by),
            }
            .map_err(foreign_key_not_found)?;
            if written == 1 {
                return Ok(true);
            }
        }
        Err(StoreError::Database(sqlx::Error::Protocol(
            "the meeting index row kept changing under the write".to_owned(),
        )))
    }

    /// Applies `change` in `tx` (see [`MeetingIndexChange`]).
    pub(super) async fn apply_meeting_change_in(
        &self,
        tx: &mut Tx,
        change: &MeetingIndexChange,
    ) -> StoreResult<()> {
        match change {
            MeetingIndexChange::Upsert(row) => {
                self.index_meeting(tx, row, true).await?;
            }
            MeetingIndexChange::UpsertIfHost {
                row,
                user_id,
                state,
            } => {
                // Locked on PostgreSQL: a rebind or disconnect waits for this write.
                let host: Option<String> = sql!(scalar_optional &mut *tx,
                    &format!("SELECT id FROM zoom_oauth_connections \
                              WHERE id = $1 AND user_id = $2 AND state = $3{}",
                             self.lock(Lock::Share)),
                    &row.connection_id, user_id, state.as_str())?;
                host.ok_or(StoreError::NotFound)?;
                self.index_meeting(tx, row, true).await?;
            }
            MeetingIndexChange::Delete { app_id, meeting_id } => {
                let held = sql!(optional &mut *tx, held_from_row,
                    &format!("SELECT source, connection_id FROM zoom_meetings \
                              WHERE app_id = $1 AND meeting_id = $2{}", self.lock(Lock::Update)),
                    app_id, meeting_id)?;
                if let Some((source, _)) =
                    held.filter(|h| crate::domain::meetings::dropped_by_deletion(h.0))
                {
                    sql!(execute &mut *tx,
                        "DELETE FROM zoom_meetings \
                         WHERE app_id = $1 AND meeting_id = $2 AND source = $3",
                        app_id, meeting_id, source.as_str())?;
                }
            }
            MeetingIndexChange::ReplacePmi {
                row,
                personal_meeting_url,
            } => {
                let updated = sql!(execute &mut *tx,
                    "UPDATE zoom_oauth_connections SET pmi = $1, \
                     personal_meeting_url = COALESCE($2, personal_meeting_url), updated_at = $3 \
                     WHERE id = $4",
                    &row.meeting_id, personal_meeting_url, ts(row.synced_at), &row.connection_id)?;
                if updated == 0 {
                    return Err(StoreError::NotFound);
                }
                sql!(execute &mut *tx,
                    "DELETE FROM zoom_meetings WHERE connection_id = $1 AND source = 'pmi' \
                     AND meeting_id <> $2",
                    &row.connection_id, &row.meeting_id)?;
                self.index_meeting(tx, row, true).await?;
            }
            MeetingIndexChange::Nothing => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_ids_split_back_into_app_and_meeting() {
        let cursor = super::super::Cursor {
            created_at: Utc::now(),
            id: meeting_cursor_id("zoa_abcdefghijklmnop", "85746065432"),
            direction: super::super::Direction::Older,
        };
        assert_eq!(
            meeting_cursor_key(&cursor).expect("splits"),
            ("zoa_abcdefghijklmnop".to_owned(), "85746065432".to_owned())
        );
        let bad = super::super::Cursor {
            id: "nounderscore".to_owned(),
            ..cursor
        };
        assert!(meeting_cursor_key(&bad).is_err());
    }

    #[test]
    fn sources_round_trip() {
        for s in [
            MeetingSource::Webhook,
            MeetingSource::Sync,
            MeetingSource::Pmi,
        ] {
            assert_eq!(MeetingSource::parse(s.as_str()), Some(s));
        }
        assert_eq!(MeetingSource::parse("other"), None);
    }
}
