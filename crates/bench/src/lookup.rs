//! `zoomkeeper bench lookup` (DESIGN.md §10): `--meetings` index rows spread over
//! `--connections` connections, loaded the way the daily meeting sync writes them
//! (one `complete_meeting_sync` transaction per connection, under its claim), then
//! `--lookups` meeting → host lookups (`meetings::hosts`, the join-token path) of
//! random ids, about half of them misses: p50/p99/max.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use clap::Args;
use keeper::meetings;
use keeper::storage::{CompletedSync, NewConnectionEvent, SyncCommit, SyncedMeeting};

use crate::measure::{ms, Latencies, Rng};
use crate::setup::{on_each_database, Backend, Setup};

#[derive(Args, Debug, Clone)]
pub struct LookupArgs {
    /// Index rows to load.
    #[arg(long, default_value_t = 1_000_000)]
    pub meetings: u64,
    /// Connections the rows are spread over.
    #[arg(long, default_value_t = 1_000)]
    pub connections: usize,
    /// Lookups to time (random ids, about half of them not indexed).
    #[arg(long, default_value_t = 20_000)]
    pub lookups: usize,
    /// Only SQLite, even when PostgreSQL binaries are present.
    #[arg(long)]
    pub sqlite_only: bool,
}

/// One database's run.
#[derive(Debug)]
pub struct LookupReport {
    pub backend: Backend,
    /// Index rows the syncs wrote.
    pub indexed: u64,
    /// Lookups that found their meeting (each with the right host).
    pub hits: usize,
    pub latencies: Latencies,
}

/// First meeting number; indexed ids are even offsets from it, odd ones are misses.
const FIRST_MEETING: u64 = 80_000_000_000;

pub async fn run(args: LookupArgs) -> anyhow::Result<Vec<LookupReport>> {
    let args = &args;
    on_each_database(args.sqlite_only, |backend, url, dir| async move {
        bench_lookup(backend, &url, &dir, args).await
    })
    .await
}

async fn bench_lookup(
    backend: Backend,
    database_url: &str,
    dir: &Path,
    args: &LookupArgs,
) -> anyhow::Result<LookupReport> {
    let setup = Setup::start(backend, database_url, dir).await?;
    let app = setup.create_app(None).await?;
    let connection_ids = setup
        .store_connections(&app, args.connections.max(1))
        .await?;
    let started = Instant::now();
    let indexed = load_meetings(&setup, &connection_ids, args.meetings).await?;
    let loaded_in = started.elapsed();
    ensure!(
        indexed == args.meetings,
        "the syncs indexed {indexed} of {} meetings",
        args.meetings
    );
    if backend == Backend::Postgres {
        analyze(database_url).await?;
    }

    let mut rng = Rng::new(0x5eed);
    let ids: Vec<String> = (0..args.lookups.max(1))
        .map(|_| (FIRST_MEETING + rng.below(2 * args.meetings.max(1))).to_string())
        .collect();
    // Warm-up: prepared statements and the page cache, as in a running service.
    for id in ids.iter().take(1_000) {
        meetings::hosts(&*setup.keeper.store, &setup.project_id, None, id).await?;
    }
    let mut latencies = Vec::with_capacity(ids.len());
    let mut hits = 0usize;
    for id in &ids {
        let t = Instant::now();
        let found = meetings::hosts(&*setup.keeper.store, &setup.project_id, None, id).await?;
        latencies.push(t.elapsed());
        if let Some(row) = found.first() {
            let offset = id.parse::<u64>()? - FIRST_MEETING;
            ensure!(offset.is_multiple_of(2), "meeting {id} was never indexed");
            let expected = &connection_ids[(offset / 2) as usize % connection_ids.len()];
            ensure!(&row.connection_id == expected, "meeting {id}: wrong host");
            hits += 1;
        }
    }
    let latencies = Latencies::new(latencies);
    println!(
        "{backend}: {} meetings over {} connections (loaded in {:.1} s); {} lookups ({hits} hits): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        args.meetings,
        connection_ids.len(),
        loaded_in.as_secs_f64(),
        latencies.count(),
        ms(latencies.p50()),
        ms(latencies.p99()),
        ms(latencies.max()),
    );
    Ok(LookupReport {
        backend,
        indexed,
        hits,
        latencies,
    })
}

/// Indexes `n` meetings as the daily sync does: meeting `FIRST_MEETING + 2 i`
/// hosted by connection `i % len`, a third of them past, a third upcoming, a third
/// without a start time; one sync transaction per connection, several at once.
/// Returns the rows the syncs say they wrote.
async fn load_meetings(setup: &Setup, connection_ids: &[String], n: u64) -> anyhow::Result<u64> {
    const IN_FLIGHT: usize = 4;
    if connection_ids.is_empty() {
        bail!("no connections to host the meetings");
    }
    let now = setup.keeper.store.now().await?;
    let len = connection_ids.len() as u64;
    let position: std::collections::HashMap<&str, u64> = connection_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i as u64))
        .collect();
    let gate = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut indexed = 0;
    loop {
        // Every stored connection is due for its first sync.
        let claimed = setup
            .keeper
            .store
            .claim_due_syncs(100, Duration::from_secs(3600))
            .await?;
        if claimed.is_empty() {
            break;
        }
        for row in claimed {
            let Some(&c) = position.get(row.id.as_str()) else {
                continue;
            };
            let meetings = (c..n)
                .step_by(len as usize)
                .map(|i| SyncedMeeting {
                    meeting_id: (FIRST_MEETING + 2 * i).to_string(),
                    topic: Some(format!("Bench meeting {i}")),
                    start_time: match i % 3 {
                        0 => Some(now - chrono::Duration::days((i % 7) as i64)),
                        1 => Some(now + chrono::Duration::days((i % 30) as i64)),
                        _ => None,
                    },
                    host_confirmed: true,
                    host_user_id: Some(row.user_id.clone()),
                })
                .collect();
            let done = CompletedSync {
                connection_id: row.id.clone(),
                claim: row.next_sync_at.context("a claimed sync's fence")?,
                meetings,
                pmi: None,
                personal_meeting_url: None,
                next_sync_at: now + Duration::from_secs(86_400),
                event: NewConnectionEvent {
                    kind: "sync_completed".to_owned(),
                    message: "Bench meetings indexed.".to_owned(),
                    data: None,
                },
                ends_account_pass: false,
            };
            let permit = gate.clone().acquire_owned().await?;
            let keeper = setup.keeper.clone();
            tasks.spawn(async move {
                let _permit = permit;
                match keeper.store.complete_meeting_sync(&done).await? {
                    SyncCommit::Committed { indexed, .. } => anyhow::Ok(indexed),
                    SyncCommit::LostClaim => {
                        bail!("the sync of {} lost its claim", done.connection_id)
                    }
                }
            });
            while let Some(done) = tasks.try_join_next() {
                indexed += done.context("sync task")??;
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        indexed += done.context("sync task")??;
    }
    Ok(indexed)
}

/// What autovacuum does after a load this size; without statistics the planner may
/// walk the project's rows in `synced_at` order instead. The one statement the
/// benches send around the `Store`: a maintenance command, not data.
async fn analyze(database_url: &str) -> anyhow::Result<()> {
    use sqlx::{Connection as _, Executor as _};
    let mut db = sqlx::PgConnection::connect(database_url).await?;
    db.execute("ANALYZE zoom_meetings").await?;
    db.close().await?;
    Ok(())
}
