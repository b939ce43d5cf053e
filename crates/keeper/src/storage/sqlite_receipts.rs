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
//! It records a receipt and applies its change with the sqlx side's code and SQL
//! (`super::meetings::record_receipt`, over [`IndexTx`]).
//!
//! The writer does not checkpoint the WAL itself: a checkpoint (copying the WAL into
//! the database file, and its fsyncs) took a third of the writer's time, and every
//! event waited behind it. A second thread, with its own connection, checkpoints
//! (`PASSIVE`, so it never blocks the writer) at most every [`CHECKPOINT_EVERY`] while
//! the writer commits.

use std::future::{ready, Future};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::TransactionBehavior;
use rusqlite::{params_from_iter, Connection, OpenFlags, OptionalExtension, ToSql};
use tokio::sync::{mpsc, oneshot};

use super::meetings::{record_receipt, Arg, Fetched, IndexTx, MeetingIndexChange};
use super::meetings::{ReceiptOutcome, Written};
use super::sql::Lock;
use super::{StoreError, StoreResult};

/// Receipts waiting for the writer, at most; senders wait beyond it.
const QUEUE: usize = 4_096;
/// Receipts committed in one transaction, at most.
const BATCH: usize = 256;
/// How often the checkpointer checkpoints, at most, while receipts are written.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// One `record_webhook_receipt_and_apply` call, waiting for the writer.
pub(super) struct ReceiptJob {
    pub app_id: String,
    pub dedupe_key: String,
    pub received_at: DateTime<Utc>,
    pub change: MeetingIndexChange,
    pub reply: oneshot::Sender<StoreResult<ReceiptOutcome>>,
}

/// Starts the writer for the database file at `path`; it ends when every sender
/// (the store and its clones) is gone. Its connection is opened on first use.
pub(super) fn spawn(path: &Path, busy_timeout: Duration) -> StoreResult<mpsc::Sender<ReceiptJob>> {
    let (sender, jobs) = mpsc::channel(QUEUE);
    // One pending signal is enough: the checkpointer takes whatever the WAL holds.
    let (committed, commits) = std::sync::mpsc::sync_channel(1);
    let mut writer = Writer {
        path: path.to_owned(),
        busy_timeout,
        conn: None,
        committed,
    };
    let thread_error = |e| StoreError::Database(sqlx::Error::Io(e));
    std::thread::Builder::new()
        .name("zk-receipt-writer".to_owned())
        .spawn(move || writer.run(jobs))
        .map_err(thread_error)?;
    let (path, checkpointer) = (path.to_owned(), busy_timeout);
    std::thread::Builder::new()
        .name("zk-checkpointer".to_owned())
        .spawn(move || checkpoint_while_written(&path, checkpointer, commits))
        .map_err(thread_error)?;
    Ok(sender)
}

/// Checkpoints the WAL after the writer's commits, at most every
/// [`CHECKPOINT_EVERY`]; ends with the writer.
fn checkpoint_while_written(
    path: &Path,
    busy_timeout: Duration,
    commits: std::sync::mpsc::Receiver<()>,
) {
    let mut conn = None;
    while commits.recv().is_ok() {
        let checkpointed = match &conn {
            Some(c) => checkpoint(c),
            None => open(path, busy_timeout).and_then(|c| checkpoint(conn.insert(c))),
        };
        if let Err(e) = checkpointed {
            tracing::warn!(error = %e, "checkpointing the SQLite WAL failed; trying again later");
        }
        std::thread::sleep(CHECKPOINT_EVERY);
    }
}

/// Copies what it can of the WAL into the database file without waiting for anyone.
fn checkpoint(conn: &Connection) -> StoreResult<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    Ok(())
}

/// Answers a written batch's jobs (taking them out of `batch`); when a batch of
/// several failed, returns its jobs instead, for the caller to write one by one so
/// each gets only its own error.
pub(super) fn settle(
    batch: &mut Vec<ReceiptJob>,
    written: StoreResult<Vec<ReceiptOutcome>>,
) -> Vec<ReceiptJob> {
    match written {
        Ok(outcomes) => {
            for (job, outcome) in batch.drain(..).zip(outcomes) {
                let _ = job.reply.send(Ok(outcome));
            }
            Vec::new()
        }
        Err(e) if batch.len() == 1 => {
            if let Some(job) = batch.pop() {
                let _ = job.reply.send(Err(e));
            }
            Vec::new()
        }
        Err(_) => std::mem::take(batch),
    }
}

/// The outcome of a batch of one.
pub(super) fn only(outcomes: Vec<ReceiptOutcome>) -> StoreResult<ReceiptOutcome> {
    outcomes.into_iter().next().ok_or(StoreError::NotFound)
}

struct Writer {
    path: PathBuf,
    busy_timeout: Duration,
    conn: Option<Connection>,
    /// Tells the checkpointer there is something to checkpoint.
    committed: std::sync::mpsc::SyncSender<()>,
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
            let written = self.write(&batch);
            for job in settle(&mut batch, written) {
                let outcome = self.write(std::slice::from_ref(&job)).and_then(only);
                let _ = job.reply.send(outcome);
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
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs {
            // Never waits: the writer's statements run on this thread.
            outcomes.push(futures::executor::block_on(record_receipt(
                &mut tx,
                &job.app_id,
                &job.dedupe_key,
                job.received_at,
                &job.change,
            ))?);
        }
        tx.commit()?;
        let _ = self.committed.try_send(());
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
    // The checkpointer thread checkpoints instead (see the module's documentation).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // Its statement journals (every upsert keeps one) in memory, not in temporary
    // files. Only here: the pool's sorts of large scans may spill to disk.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

/// The writer holds the database's write lock, so the row it reads is the row it
/// replaces: no locking clauses.
impl IndexTx for rusqlite::Transaction<'_> {
    fn lock(&self, _: Lock) -> &'static str {
        ""
    }

    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> impl Future<Output = Written> + Send {
        let written = self
            .prepare_cached(sql)
            .and_then(|mut s| s.execute(params_from_iter(args)));
        ready(written.map(|n| n as u64).map_err(write_error))
    }

    fn fetch(&mut self, sql: &str, args: &[Arg<'_>]) -> impl Future<Output = Fetched> + Send {
        let row = self.prepare_cached(sql).and_then(|mut s| {
            s.query_row(params_from_iter(args), |r| Ok([r.get(0)?, r.get(1)?]))
                .optional()
        });
        ready(row.map_err(StoreError::from))
    }
}

impl ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Arg::Text(Some(text)) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
            Arg::Time(Some(at)) => ToSqlOutput::Owned(Value::Integer(at.timestamp_micros())),
            Arg::Text(None) | Arg::Time(None) => ToSqlOutput::Owned(Value::Null),
        })
    }
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
