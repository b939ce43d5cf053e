//! The PostgreSQL Zoom webhook receipt writers: group commit, as SQLite's writer does
//! ([`super::sqlite_receipts`]), over a few pool connections.
//!
//! A receipt and its index change in a transaction of their own cost a `BEGIN`, a
//! `COMMIT` (and its WAL flush) and a connection per event; under load PostgreSQL's
//! own CPU was most of the ingress's. Here [`WRITERS`] tasks each take whatever has
//! queued up for them and write it in one transaction, with the sqlx side's code
//! (`super::meetings::record_receipt`). An event goes to the writer its meeting
//! hashes to, so one meeting's events keep their order and never wait on another
//! writer of this process; a batch takes its rows' locks in (app, meeting) order, so
//! batches of different writers or processes do not deadlock each other. When a batch
//! fails, each of its events is written alone and gets only its own error.

use std::hash::{Hash as _, Hasher as _};

use sqlx::PgPool;
use tokio::sync::mpsc;

use super::meetings::{record_receipt, MeetingIndexChange, ReceiptOutcome};
use super::sql::{Either, Tx};
use super::sqlite_receipts::{only, settle, ReceiptJob};
use super::StoreResult;

/// Writers per process: connections the ingress holds at most at once.
pub(super) const WRITERS: usize = 4;
/// Receipts waiting for one writer, at most; senders wait beyond it.
const QUEUE: usize = 1_024;
/// Receipts committed in one transaction, at most.
const BATCH: usize = 128;

/// Starts the writers; each ends when every sender of it is gone.
pub(super) fn spawn(pool: &PgPool) -> Vec<mpsc::Sender<ReceiptJob>> {
    (0..WRITERS)
        .map(|_| {
            let (sender, jobs) = mpsc::channel(QUEUE);
            tokio::spawn(run(pool.clone(), jobs));
            sender
        })
        .collect()
}

/// Which of `writers` a job goes to: by its meeting, else by its receipt.
pub(super) fn writer_for(
    app_id: &str,
    dedupe_key: &str,
    change: &MeetingIndexChange,
    writers: usize,
) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    app_id.hash(&mut hasher);
    match change.meeting_id() {
        Some(meeting) => meeting.hash(&mut hasher),
        None => dedupe_key.hash(&mut hasher),
    }
    (hasher.finish() % writers.max(1) as u64) as usize
}

async fn run(pool: PgPool, mut jobs: mpsc::Receiver<ReceiptJob>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(job) = jobs.recv().await {
        batch.push(job);
        while batch.len() < BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Stable: one meeting's events stay in arrival order.
        batch.sort_by(|a, b| lock_order(a).cmp(&lock_order(b)));
        let written = write(&pool, &batch).await;
        for job in settle(&mut batch, written) {
            let outcome = write(&pool, std::slice::from_ref(&job))
                .await
                .and_then(only);
            let _ = job.reply.send(outcome);
        }
    }
}

fn lock_order(job: &ReceiptJob) -> (&str, &str) {
    (&job.app_id, job.change.meeting_id().unwrap_or(""))
}

/// Writes `jobs` in one transaction: each receipt, and its change when the receipt
/// is new (so of several jobs with one key, the first applies).
async fn write(pool: &PgPool, jobs: &[ReceiptJob]) -> StoreResult<Vec<ReceiptOutcome>> {
    let mut tx: Tx = Either::Postgres(pool.begin().await?);
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        outcomes.push(
            record_receipt(
                &mut tx,
                &job.app_id,
                &job.dedupe_key,
                job.received_at,
                &job.change,
            )
            .await?,
        );
    }
    tx.commit().await?;
    Ok(outcomes)
}
