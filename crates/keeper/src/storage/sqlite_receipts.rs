//! The SQLite Zoom webhook receipt writer: group commit on a thread of its own.
//!
//! SQLite has one writer at a time, and every event of the ingress writes (its
//! receipt, and its index change when the receipt is new). Through sqlx each
//! statement is a round trip to the connection's worker thread, and under load each
//! hand-over between threads waits for a core; a commit per event through those
//! hops is what limited ingress. So receipts go to one thread that owns its own
//! connection (rusqlite, which runs SQLite on the calling thread) and writes
//! whatever has queued up in one transaction: each event's receipt and change
//! together, in arrival order, so an event is applied with its receipt or not at
//! all. When a batch fails (one event's connection vanished, or the database did),
//! each of its events is retried alone and gets only its own error.
//!
//! It applies a change as the sqlx side does (`SqlStore::apply_meeting_change_in`),
//! asking `crate::domain::meetings` which index writes win.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::meetings::{parse_source, MeetingIndexChange, MeetingRow, ReceiptOutcome};
use super::{StoreError, StoreResult};

/// Receipts waiting for the writer, at most; senders wait beyond it.
const QUEUE: usize = 4_096;
/// Receipts committed in one transaction, at most.
const BATCH: usize = 256;

const INSERT_RECEIPT: &str = "INSERT INTO zoom_webhook_receipts (app_id, dedupe_key, \
     received_at) VALUES (?, ?, ?) ON CONFLICT (app_id, dedupe_key) DO NOTHING";
const HELD: &str = "SELECT source, connection_id FROM zoom_meetings \
     WHERE app_id = ? AND meeting_id = ?";
const INSERT_MEETING: &str = "INSERT INTO zoom_meetings (project_id, app_id, meeting_id, \
     connection_id, source, topic, start_time, synced_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
const REPLACE_MEETING: &str = "UPDATE zoom_meetings SET connection_id = ?, source = ?, \
     topic = ?, start_time = ?, synced_at = ? WHERE app_id = ? AND meeting_id = ?";
const DELETE_MEETING: &str = "DELETE FROM zoom_meetings WHERE app_id = ? AND meeting_id = ?";
/// Binds: pmi, personal_meeting_url (kept when NULL), updated_at, connection id.
const SET_PMI: &str = "UPDATE zoom_oauth_connections SET pmi = ?, \
     personal_meeting_url = COALESCE(?, personal_meeting_url), updated_at = ? WHERE id = ?";
/// Binds: connection id, Zoom user id, state. Whether a chosen host still is one.
const HOST_UNCHANGED: &str =
    "SELECT 1 FROM zoom_oauth_connections WHERE id = ? AND user_id = ? AND state = ?";
/// Binds: connection id, the PMI that stays.
const DELETE_OTHER_PMI_ROWS: &str =
    "DELETE FROM zoom_meetings WHERE connection_id = ? AND source = 'pmi' AND meeting_id <> ?";

/// One `record_webhook_receipt_and_apply` call, waiting for the writer.
pub(super) struct ReceiptJob {
    pub app_id: String,
    pub dedupe_key: String,
    pub received_at: DateTime<Utc>,
    pub change: MeetingIndexChange,
    pub reply: oneshot::Sender<StoreResult<ReceiptOutcome>>,
}

impl std::fmt::Debug for ReceiptJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptJob")
            .field("app_id", &self.app_id)
            .field("dedupe_key", &self.dedupe_key)
            .finish_non_exhaustive()
    }
}

/// Starts the writer for the database file at `path`; it ends when every sender
/// (the store and its clones) is gone. Its connection is opened on first use.
pub(super) fn spawn(path: &Path, busy_timeout: Duration) -> StoreResult<mpsc::Sender<ReceiptJob>> {
    let (sender, jobs) = mpsc::channel(QUEUE);
    let mut writer = Writer {
        path: path.to_owned(),
        busy_timeout,
        conn: None,
    };
    std::thread::Builder::new()
        .name("zk-receipt-writer".to_owned())
        .spawn(move || writer.run(jobs))
        .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
    Ok(sender)
}

struct Writer {
    path: PathBuf,
    busy_timeout: Duration,
    conn: Option<Connection>,
}

impl Writer {
    fn run(&mut self, mut jobs: mpsc::Receiver<ReceiptJob>) {
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(job) = jobs.blocking_recv() {
            batch.push(job);
            while batch.len() < BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            match self.write(&batch) {
                Ok(outcomes) => {
                    for (job, outcome) in batch.drain(..).zip(outcomes) {
                        let _ = job.reply.send(Ok(outcome));
                    }
                }
                Err(e) if batch.len() == 1 => {
                    if let Some(job) = batch.pop() {
                        let _ = job.reply.send(Err(e));
                    }
                }
                Err(_) => {
                    for job in batch.drain(..) {
                        let outcome = self
                            .write(std::slice::from_ref(&job))
                            .and_then(|o| o.into_iter().next().ok_or(StoreError::NotFound));
                        let _ = job.reply.send(outcome);
                    }
                }
            }
        }
    }

    fn connection(&mut self) -> StoreResult<&mut Connection> {
        if self.conn.is_none() {
            self.conn = Some(open(&self.path, self.busy_timeout)?);
        }
        self.conn.as_mut().ok_or(StoreError::NotFound)
    }

    /// Writes `jobs` in one transaction: each receipt, and its change when the
    /// receipt is new (so of several jobs with one key, the first applies).
    fn write(&mut self, jobs: &[ReceiptJob]) -> StoreResult<Vec<ReceiptOutcome>> {
        let conn = self.connection()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs {
            let inserted = tx
                .prepare_cached(INSERT_RECEIPT)?
                .execute(params![job.app_id, job.dedupe_key, micros(job.received_at)])
                .map_err(write_error)?;
            if inserted == 0 {
                outcomes.push(ReceiptOutcome::Duplicate);
                continue;
            }
            apply(&tx, &job.change)?;
            outcomes.push(ReceiptOutcome::Applied);
        }
        tx.commit()?;
        Ok(outcomes)
    }
}

/// The writer's connection, set up as the pool's are (WAL is the file's already)
/// except for `synchronous`.
fn open(path: &Path, busy_timeout: Duration) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Unlike the pool (`FULL`): a power cut may take back the last receipts and
    // index changes, which the daily meeting sync repairs; in exchange a commit
    // does not wait for an fsync. The next `FULL` commit of the pool makes them
    // durable anyway (one WAL, written in order).
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Its statement journals (every upsert keeps one) in memory, not in temporary
    // files. Only here: the pool's sorts of large scans may spill to disk.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

fn apply(tx: &rusqlite::Transaction<'_>, change: &MeetingIndexChange) -> StoreResult<()> {
    match change {
        MeetingIndexChange::Upsert(row) => upsert(tx, row),
        MeetingIndexChange::UpsertIfHost {
            row,
            user_id,
            state,
        } => {
            let unchanged = tx.prepare_cached(HOST_UNCHANGED)?.exists(params![
                row.connection_id,
                user_id,
                state.as_str()
            ])?;
            if !unchanged {
                return Err(StoreError::NotFound);
            }
            upsert(tx, row)
        }
        MeetingIndexChange::Delete { app_id, meeting_id } => {
            let held = held(tx, app_id, meeting_id)?;
            if held.is_some_and(|(source, _)| crate::domain::meetings::dropped_by_deletion(source))
            {
                tx.prepare_cached(DELETE_MEETING)?
                    .execute(params![app_id, meeting_id])?;
            }
            Ok(())
        }
        MeetingIndexChange::ReplacePmi {
            row,
            personal_meeting_url,
        } => {
            let updated = tx.prepare_cached(SET_PMI)?.execute(params![
                row.meeting_id,
                personal_meeting_url,
                micros(row.synced_at),
                row.connection_id
            ])?;
            if updated == 0 {
                return Err(StoreError::NotFound);
            }
            tx.prepare_cached(DELETE_OTHER_PMI_ROWS)?
                .execute(params![row.connection_id, row.meeting_id])?;
            upsert(tx, row)
        }
        MeetingIndexChange::Nothing => Ok(()),
    }
}

/// The (source, connection) of the index row (app, meeting), if there is one.
fn held(
    tx: &rusqlite::Transaction<'_>,
    app_id: &str,
    meeting_id: &str,
) -> StoreResult<Option<(super::MeetingSource, String)>> {
    let mut held = tx.prepare_cached(HELD)?;
    let mut rows = held.query(params![app_id, meeting_id])?;
    match rows.next()? {
        None => Ok(None),
        Some(r) => Ok(Some((parse_source(&r.get::<_, String>(0)?)?, r.get(1)?))),
    }
}

/// Writes `row` when [`crate::domain::meetings::replaces`] lets it (the writer holds the
/// database's write lock, so the row read is the row replaced).
fn upsert(tx: &rusqlite::Transaction<'_>, row: &MeetingRow) -> StoreResult<()> {
    let start_time = row.start_time.map(micros);
    match held(tx, &row.app_id, &row.meeting_id)? {
        None => tx.prepare_cached(INSERT_MEETING)?.execute(params![
            row.project_id,
            row.app_id,
            row.meeting_id,
            row.connection_id,
            row.source.as_str(),
            row.topic,
            start_time,
            micros(row.synced_at)
        ]),
        Some((source, by)) if crate::domain::meetings::replaces(source, &by, row, true) => {
            tx.prepare_cached(REPLACE_MEETING)?.execute(params![
                row.connection_id,
                row.source.as_str(),
                row.topic,
                start_time,
                micros(row.synced_at),
                row.app_id,
                row.meeting_id
            ])
        }
        Some(_) => Ok(0),
    }
    .map_err(write_error)?;
    Ok(())
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// A row whose app or connection is gone breaks a foreign key: `NotFound`.
fn write_error(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
        {
            StoreError::NotFound
        }
        _ => StoreError::Sqlite(e),
    }
}
