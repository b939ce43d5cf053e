//! The meeting → host index and Zoom webhook receipts (DESIGN.md §3 `zoom_meeting`,
//! `zoom_webhook_receipt`). One row per (app, meeting); which write may replace or
//! drop a row is decided by `crate::domain::meetings` ([`crate::domain::meetings::replaces`],
//! [`crate::domain::meetings::dropped_by_deletion`]) for every writer, this one and the
//! SQLite receipt writer alike: SQL here only reads the row and writes.

use std::future::Future;

use chrono::{DateTime, Utc};

use sqlx::{Database, Encode, Postgres, Sqlite, Type};

use super::sql::{keyset, ots, page_of, placeholders, Column, Either, Lock, Row, Ts};
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
    /// The Zoom user who hosts it, when Zoom said (a webhook's `host_id`, a
    /// listing's host); `None` for rows indexed before this was kept.
    pub host_user_id: Option<String>,
}

/// Filters of `GET /api/v1/zoom_meetings`; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct MeetingFilter {
    pub meeting_id: Option<String>,
    pub connection_id: Option<String>,
    /// Indexed (`synced_at`) at or after this time.
    pub synced_after: Option<DateTime<Utc>>,
    /// Indexed (`synced_at`) at or before this time.
    pub synced_before: Option<DateTime<Utc>>,
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

impl MeetingIndexChange {
    /// The meeting whose index row the change writes, if one.
    pub fn meeting_id(&self) -> Option<&str> {
        match self {
            MeetingIndexChange::Upsert(row)
            | MeetingIndexChange::UpsertIfHost { row, .. }
            | MeetingIndexChange::ReplacePmi { row, .. } => Some(&row.meeting_id),
            MeetingIndexChange::Delete { meeting_id, .. } => Some(meeting_id),
            MeetingIndexChange::Nothing => None,
        }
    }
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

store_trait! {
    pub trait MeetingStore {
        /// Records Zoom webhook `(app_id, dedupe_key)` and applies `change` in one
        /// transaction. `Duplicate` (nothing changed) when the receipt exists already.
        /// Errors (e.g. `NotFound` for a vanished connection) leave no receipt.
        async fn record_webhook_receipt_and_apply(&self, app_id: &str, dedupe_key: &str,
            received_at: DateTime<Utc>, change: &MeetingIndexChange)
            -> StoreResult<ReceiptOutcome> {
            if let Some(receipts) = self.receipt_writer(app_id, dedupe_key, change) {
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
            let outcome = record_receipt(&mut tx, app_id, dedupe_key, received_at, change).await?;
            tx.commit().await?;
            Ok(outcome)
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
            apply(&mut tx, change).await?;
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
            let cursor = page.cursor.as_ref().map(meeting_cursor_key).transpose()?;
            let mut sql =
                format!("SELECT {MEETING_COLUMNS} FROM zoom_meetings WHERE project_id = $1");
            let mut args = vec![Arg::from(project_id)];
            for (column, value) in [("meeting_id", &filter.meeting_id),
                                    ("connection_id", &filter.connection_id)] {
                if let Some(value) = value {
                    args.push(Arg::from(value));
                    sql.push_str(&format!(" AND {column} = ${}", args.len()));
                }
            }
            for (comparison, value) in [(">=", filter.synced_after), ("<=", filter.synced_before)] {
                if let Some(value) = value {
                    args.push(Arg::from(value));
                    sql.push_str(&format!(" AND synced_at {comparison} ${}", args.len()));
                }
            }
            let (cmp, order) = keyset(page);
            if let (Some(c), Some((app_id, meeting_id))) = (&page.cursor, &cursor) {
                sql.push_str(&format!(" AND (synced_at, app_id, meeting_id) {cmp} ({})",
                                      placeholders(args.len() + 1, 3)));
                args.extend([Arg::from(c.created_at), Arg::from(app_id), Arg::from(meeting_id)]);
            }
            sql.push_str(&format!(" ORDER BY synced_at {order}, app_id {order}, \
                                   meeting_id {order} LIMIT ${}", args.len() + 1));
            let limit = i64::from(page.limit) + 1;
            let items = run!(&mut self.conn().await?, |c| {
                let rows = bound(sqlx::query(&sql), &args).bind(limit).fetch_all(c).await?;
                rows.iter().map(meeting_from_row).collect::<StoreResult<Vec<_>>>()
            })?;
            Ok(page_of(items, page))
        }
    }
}

pub(super) const MEETING_COLUMNS: &str =
    "project_id, app_id, meeting_id, connection_id, source, topic, start_time, synced_at, \
     host_user_id";

fn meeting_from_row(row: &impl Row) -> StoreResult<MeetingRow> {
    from_row!(row => MeetingRow {
        project_id, app_id, meeting_id, connection_id, source, topic, start_time, synced_at,
        host_user_id
    })
}

/// The index's statements, written once for both writers: sqlx and the SQLite receipt
/// writer (rusqlite numbers `$n` in order of first appearance, so each names its
/// placeholders in order).
const INSERT_RECEIPT: &str = "INSERT INTO zoom_webhook_receipts (app_id, dedupe_key, \
     received_at) VALUES ($1, $2, $3) ON CONFLICT (app_id, dedupe_key) DO NOTHING";
const HELD: &str = "SELECT source, connection_id FROM zoom_meetings \
     WHERE app_id = $1 AND meeting_id = $2";
const HOST_UNCHANGED: &str = "SELECT id, state FROM zoom_oauth_connections \
     WHERE id = $1 AND user_id = $2 AND state = $3";
const INSERT_MEETING: &str = "INSERT INTO zoom_meetings (project_id, app_id, meeting_id, \
     connection_id, source, topic, start_time, synced_at, host_user_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (app_id, meeting_id) DO NOTHING";
/// Only while the row is still the one read (`source`, `connection_id`).
const REPLACE_MEETING: &str = "UPDATE zoom_meetings SET connection_id = $1, source = $2, \
     topic = $3, start_time = $4, synced_at = $5, host_user_id = $6 \
     WHERE app_id = $7 AND meeting_id = $8 AND source = $9 AND connection_id = $10";
const DELETE_MEETING: &str =
    "DELETE FROM zoom_meetings WHERE app_id = $1 AND meeting_id = $2 AND source = $3";
/// `personal_meeting_url` is kept when `$2` is NULL.
const SET_PMI: &str = "UPDATE zoom_oauth_connections SET pmi = $1, \
     personal_meeting_url = COALESCE($2, personal_meeting_url), updated_at = $3 WHERE id = $4";
const DELETE_OTHER_PMI_ROWS: &str = "DELETE FROM zoom_meetings \
     WHERE connection_id = $1 AND source = 'pmi' AND meeting_id <> $2";

/// A transaction the index is changed in: sqlx's [`super::sql::Tx`], or the receipt writer's
/// (which does its work before it returns the future, so the future is `Send`).
pub(super) trait IndexTx {
    /// The row-locking clause for this database ([`Lock`]).
    fn lock(&self, lock: Lock) -> &'static str;
    /// Rows written. A row the write refers to that is gone (a foreign key) is `NotFound`.
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> impl Future<Output = Written> + Send;
    /// The first two columns, both text, of the first row.
    fn fetch(&mut self, sql: &str, args: &[Arg<'_>]) -> impl Future<Output = Fetched> + Send;
}

pub(super) type Written = StoreResult<u64>;
pub(super) type Fetched = StoreResult<Option<[String; 2]>>;

type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>;

/// A value bound to an index statement.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg<'a> {
    Text(Option<&'a str>),
    Time(Option<DateTime<Utc>>),
}

/// `&[Arg]` from text (`&str`, `&String`, `Option<&str>`) and times.
macro_rules! args {
    ($($arg:expr),* $(,)?) => { &[$(Arg::from($arg)),*] };
}

macro_rules! arg_from {
    ($($t:ty => $variant:ident($v:ident => $value:expr);)*) => {$(
        impl<'a> From<$t> for Arg<'a> {
            fn from($v: $t) -> Self {
                Arg::$variant($value)
            }
        }
    )*};
}

arg_from! {
    &'a str => Text(v => Some(v));
    &'a String => Text(v => Some(v));
    Option<&'a str> => Text(v => v);
    DateTime<Utc> => Time(v => Some(v));
    Option<DateTime<Utc>> => Time(v => v);
}

/// For any transaction lifetime, not only [`super::sql::Tx`]'s `'static`: proving the futures
/// `Send` asks for that.
impl IndexTx for Either<sqlx::Transaction<'_, Sqlite>, sqlx::Transaction<'_, Postgres>> {
    fn lock(&self, lock: Lock) -> &'static str {
        Either::lock(self, lock)
    }

    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Written {
        let done = run!(self, |c| bound(sqlx::query(sql), args)
            .execute(c)
            .await
            .map(|done| done.rows_affected()));
        done.map_err(|e| foreign_key_not_found(e.into()))
    }

    async fn fetch(&mut self, sql: &str, args: &[Arg<'_>]) -> Fetched {
        run!(self, |c| {
            let row = bound(sqlx::query(sql), args).fetch_optional(c).await?;
            let pair = row.map(|r| Ok([sqlx::Row::try_get(&r, 0)?, sqlx::Row::try_get(&r, 1)?]));
            pair.transpose()
        })
    }
}

/// `query` with `args` bound, on either database.
fn bound<'q, DB: Database>(query: Query<'q, DB>, args: &[Arg<'q>]) -> Query<'q, DB>
where
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    Option<Ts>: Encode<'q, DB> + Type<DB>,
{
    args.iter().fold(query, |q, arg| match *arg {
        Arg::Text(text) => q.bind(text),
        Arg::Time(at) => q.bind(ots(at)),
    })
}

/// Records Zoom webhook receipt `(app_id, dedupe_key)` in `tx` and, when it is new,
/// applies `change` with it.
pub(super) async fn record_receipt(
    tx: &mut impl IndexTx,
    app_id: &str,
    dedupe_key: &str,
    received_at: DateTime<Utc>,
    change: &MeetingIndexChange,
) -> StoreResult<ReceiptOutcome> {
    // A concurrent delivery of the same event waits here on the key, then sees the
    // first one's receipt and changes nothing.
    let receipt = args![app_id, dedupe_key, received_at];
    if tx.execute(INSERT_RECEIPT, receipt).await? == 0 {
        return Ok(ReceiptOutcome::Duplicate);
    }
    apply(tx, change).await?;
    Ok(ReceiptOutcome::Applied)
}

/// The (source, connection) of index row (app, meeting), locked on PostgreSQL.
async fn held(
    tx: &mut impl IndexTx,
    app_id: &str,
    meeting_id: &str,
) -> StoreResult<Option<(MeetingSource, String)>> {
    let sql = format!("{HELD}{}", tx.lock(Lock::Update));
    let held = tx.fetch(&sql, args![app_id, meeting_id]).await?;
    held.map(|[source, by]| Ok((MeetingSource::from_stored(source)?, by)))
        .transpose()
}

/// Writes index row `row` when [`crate::domain::meetings::replaces`] lets it replace
/// the row its (app, meeting) holds (or there is none); true when written.
pub(super) async fn index_meeting(
    tx: &mut impl IndexTx,
    row: &MeetingRow,
    host_confirmed: bool,
) -> StoreResult<bool> {
    let (source, topic) = (row.source.as_str(), row.topic.as_deref());
    // The read locks the row on PostgreSQL; a row inserted meanwhile makes the insert
    // write nothing, and the rule is asked again about it.
    for _ in 0..3 {
        let written = match held(tx, &row.app_id, &row.meeting_id).await? {
            None => {
                let args = args![
                    &row.project_id,
                    &row.app_id,
                    &row.meeting_id,
                    &row.connection_id,
                    source,
                    topic,
                    row.start_time,
                    row.synced_at,
                    row.host_user_id.as_deref()
                ];
                tx.execute(INSERT_MEETING, args).await?
            }
            Some((was, by))
                if !crate::domain::meetings::replaces(was, &by, row, host_confirmed) =>
            {
                return Ok(false)
            }
            Some((was, by)) => {
                let args = args![
                    &row.connection_id,
                    source,
                    topic,
                    row.start_time,
                    row.synced_at,
                    row.host_user_id.as_deref(),
                    &row.app_id,
                    &row.meeting_id,
                    was.as_str(),
                    &by
                ];
                tx.execute(REPLACE_MEETING, args).await?
            }
        };
        if written == 1 {
            return Ok(true);
        }
    }
    Err(StoreError::Database(sqlx::Error::Protocol(
        "the meeting index row kept changing under the write".to_owned(),
    )))
}

/// Applies `change` in `tx` (see [`MeetingIndexChange`]).
pub(super) async fn apply(tx: &mut impl IndexTx, change: &MeetingIndexChange) -> StoreResult<()> {
    match change {
        MeetingIndexChange::Upsert(row) => {
            index_meeting(tx, row, true).await?;
        }
        MeetingIndexChange::UpsertIfHost {
            row,
            user_id,
            state,
        } => {
            // Locked on PostgreSQL: a rebind or disconnect waits for this write.
            let sql = format!("{HOST_UNCHANGED}{}", tx.lock(Lock::Share));
            let args = args![&row.connection_id, user_id, state.as_str()];
            tx.fetch(&sql, args).await?.ok_or(StoreError::NotFound)?;
            index_meeting(tx, row, true).await?;
        }
        MeetingIndexChange::Delete { app_id, meeting_id } => {
            if let Some((source, _)) = held(tx, app_id, meeting_id).await? {
                if crate::domain::meetings::dropped_by_deletion(source) {
                    let args = args![app_id, meeting_id, source.as_str()];
                    tx.execute(DELETE_MEETING, args).await?;
                }
            }
        }
        MeetingIndexChange::ReplacePmi {
            row,
            personal_meeting_url,
        } => {
            let args = args![
                &row.meeting_id,
                personal_meeting_url.as_deref(),
                row.synced_at,
                &row.connection_id
            ];
            if tx.execute(SET_PMI, args).await? == 0 {
                return Err(StoreError::NotFound);
            }
            let args = args![&row.connection_id, &row.meeting_id];
            tx.execute(DELETE_OTHER_PMI_ROWS, args).await?;
            index_meeting(tx, row, true).await?;
        }
        MeetingIndexChange::Nothing => {}
    }
    Ok(())
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
