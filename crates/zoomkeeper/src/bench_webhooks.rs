//! `zoomkeeper bench webhooks` and `zoomkeeper bench lookup` (DESIGN.md §10, issue 5
//! "Performance").
//!
//! `webhooks`: the server runs in this process on a fresh database (SQLite, and
//! PostgreSQL when a throwaway cluster can be started) with one app that has a
//! webhook secret and `--users` connected users (rows written through the `Store`
//! trait). `--concurrency` keep-alive clients then POST signed, distinct
//! `meeting.created` events (each its own meeting id and `event_ts`, hosted by one of
//! the users) over loopback for `--seconds`. Events are signed before the clock
//! starts, and signed again when one is about to leave Zoom's 300 s window. Prints
//! events/s and p50/p99 latency, and checks that the index holds exactly one row per
//! `applied` answer.
//!
//! `lookup`: `--meetings` index rows (bulk-loaded with multi-row INSERTs straight
//! through a pool, not the `Store` trait: the service never writes in bulk) spread
//! over `--connections` connections, then `--lookups` meeting → host lookups
//! (`meetings::hosts`, the join-token path) of random ids, about half of them
//! misses: p50/p99/max.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context as _};
use clap::Args;
use keeper::config::{Config, Settings};
use keeper::server::Server;
use keeper::storage::{AppKind, AppRow, ConnectionRow, ConnectionState, NewConnectionEvent};
use keeper::vault::Slot;
use keeper::{apps, connections, meetings, projects, Keeper};

#[derive(Args)]
pub struct WebhooksArgs {
    /// How long to send events for.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Keep-alive clients sending at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Connected users the meetings are spread over.
    #[arg(long, default_value_t = 1_000)]
    users: usize,
    /// Only SQLite, even when PostgreSQL binaries are present.
    #[arg(long)]
    sqlite_only: bool,
}

#[derive(Args)]
pub struct LookupArgs {
    /// Index rows to load.
    #[arg(long, default_value_t = 1_000_000)]
    meetings: u64,
    /// Connections the rows are spread over.
    #[arg(long, default_value_t = 1_000)]
    connections: usize,
    /// Lookups to time (random ids, about half of them not indexed).
    #[arg(long, default_value_t = 20_000)]
    lookups: usize,
    /// Only SQLite, even when PostgreSQL binaries are present.
    #[arg(long)]
    sqlite_only: bool,
}

const WEBHOOK_SECRET: &str = "bench-webhook-secret";
/// Events older than this are signed again before sending (Zoom's window is 300 s).
const RESIGN_AFTER_S: i64 = 240;
/// Events signed per client before the clock starts, per second of the run.
const EVENTS_PER_CLIENT_SECOND: usize = 400;
/// First meeting number of the bench's events.
const FIRST_MEETING: u64 = 80_000_000_000;

/// Runs `bench` on SQLite, then on PostgreSQL unless `sqlite_only`.
async fn on_each_database<F, Fut>(sqlite_only: bool, bench: F) -> anyhow::Result<()>
where
    F: Fn(&'static str, String, std::path::PathBuf) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let dir = tempfile::tempdir().context("creating a scratch directory")?;
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    bench("sqlite", sqlite_url, dir.path().to_owned()).await?;
    if !sqlite_only {
        match testkit::pg_cluster::shared().await? {
            Some(cluster) => {
                let url = cluster.create_database().await?;
                bench("postgres", url, dir.path().to_owned()).await?;
            }
            None => println!("postgres: skipped (no PostgreSQL binaries found)"),
        }
    }
    Ok(())
}

pub async fn run_webhooks(args: WebhooksArgs) -> anyhow::Result<()> {
    let args = &args;
    on_each_database(args.sqlite_only, |backend, url, dir| async move {
        bench_webhooks(backend, &url, &dir, args).await
    })
    .await
}

pub async fn run_lookup(args: LookupArgs) -> anyhow::Result<()> {
    let args = &args;
    on_each_database(args.sqlite_only, |backend, url, dir| async move {
        bench_lookup(backend, &url, &dir, args).await
    })
    .await
}

/// A keeper on a fresh database with a project and one app with a webhook secret.
struct Setup {
    keeper: Arc<Keeper>,
    project_id: String,
    app_id: String,
}

async fn setup(backend: &str, database_url: &str, dir: &Path) -> anyhow::Result<Setup> {
    let config = Config::resolve(Settings {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.to_owned()),
        database_url: Some(database_url.to_owned()),
        master_key_file: Some(dir.join(format!("{backend}.key"))),
        // The bench measures ingress, not the limiter.
        rate_limit_per_second: Some(1e9),
        rate_limit_burst: Some(u32::MAX),
        ..Settings::default()
    })?;
    let keeper = Arc::new(Keeper::open(config).await?);
    let project = projects::create(&keeper, "bench").await?;
    // Stored directly: creating it through the API would check the credentials
    // with Zoom, which this bench does not need.
    let app_id = keeper::ids::IdKind::App.generate();
    let seal = |column, value: &str| {
        keeper.vault.seal(
            Slot {
                table: apps::TABLE,
                column,
                row_id: &app_id,
            },
            value.as_bytes(),
        )
    };
    let now = keeper.store.now().await?;
    let app = AppRow {
        id: app_id.clone(),
        project_id: project.id.clone(),
        client_id: "bench-client".to_owned(),
        client_secret: seal(apps::CLIENT_SECRET_COLUMN, "bench-secret"),
        webhook_secret: Some(seal(apps::WEBHOOK_SECRET_COLUMN, WEBHOOK_SECRET)),
        kind: AppKind::UserLevel,
        created_at: now,
        updated_at: now,
        last_verified_webhook_received_at: None,
        last_unverified_webhook_received_at: None,
        webhook_events_stale_since: None,
        connection_count: 0,
    };
    keeper.store.insert_app(&app).await?;
    Ok(Setup {
        keeper,
        project_id: project.id,
        app_id,
    })
}

/// `n` connected connections of the app, users `bench-user-{i}`; returns their ids.
async fn store_connections(setup: &Setup, n: usize) -> anyhow::Result<Vec<String>> {
    let keeper = &setup.keeper;
    let now = keeper.store.now().await?;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let id = keeper::ids::IdKind::Connection.generate();
        let slot = |column| Slot {
            table: connections::TABLE,
            column,
            row_id: &id,
        };
        let refresh = keeper.vault.seal_str(
            slot(connections::REFRESH_TOKEN_COLUMN),
            &format!("bench-refresh-{i}"),
        );
        let row = ConnectionRow {
            id: id.clone(),
            project_id: setup.project_id.clone(),
            app_id: setup.app_id.clone(),
            user_id: format!("bench-user-{i}"),
            account_id: format!("bench-account-{}", i / 50),
            email: Some(format!("user{i}@bench.example.com")),
            pmi: None,
            personal_meeting_url: None,
            state: ConnectionState::Connected,
            connection_failure_data: None,
            metadata: None,
            deduplication_key: None,
            is_local_recording_token_supported: true,
            is_onbehalf_token_supported: false,
            scopes: Vec::new(),
            refresh_token: Some(refresh),
            access_token: None,
            access_token_expires_at: None,
            lease_owner: None,
            lease_until: None,
            fence: 0,
            refresh_due_at: Some(now + Duration::from_secs(30 * 86_400)),
            last_attempted_sync_at: None,
            last_successful_sync_at: None,
            next_sync_at: None,
            last_successful_token_refresh_at: Some(now),
            created_at: now,
            updated_at: now,
        };
        let event = NewConnectionEvent {
            kind: "created".to_owned(),
            message: "The connection was created.".to_owned(),
            data: None,
        };
        keeper.store.insert_connection(&row, &event).await?;
        ids.push(id);
    }
    Ok(ids)
}

/// A pool of the bench's own, for bulk loading and counting (the `Store` trait has
/// neither, on purpose).
enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Pool {
    async fn connect(database_url: &str) -> anyhow::Result<Pool> {
        Ok(if database_url.starts_with("sqlite:") {
            Pool::Sqlite(sqlx::SqlitePool::connect(database_url).await?)
        } else {
            Pool::Postgres(sqlx::PgPool::connect(database_url).await?)
        })
    }

    async fn count_webhook_rows(&self) -> anyhow::Result<i64> {
        const SQL: &str = "SELECT COUNT(*) FROM zoom_meetings WHERE source = 'webhook'";
        Ok(match self {
            Pool::Sqlite(p) => sqlx::query_scalar(SQL).fetch_one(p).await?,
            Pool::Postgres(p) => sqlx::query_scalar(SQL).fetch_one(p).await?,
        })
    }

    async fn close(self) {
        match self {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// One signed `meeting.created` delivery.
struct SignedEvent {
    body: String,
    timestamp: i64,
    signature: String,
}

impl SignedEvent {
    fn new(seq: u64, users: usize) -> SignedEvent {
        let user = seq as usize % users.max(1);
        let meeting = FIRST_MEETING + seq;
        let body = serde_json::json!({
            "event": "meeting.created",
            "event_ts": 1_700_000_000_000u64 + seq,
            "payload": {
                "account_id": format!("bench-account-{}", user / 50),
                "operator": format!("user{user}@bench.example.com"),
                "operator_id": format!("bench-user-{user}"),
                "object": {
                    "uuid": format!("bench{seq:016}=="),
                    "id": meeting,
                    "host_id": format!("bench-user-{user}"),
                    "topic": format!("Bench meeting {seq}"),
                    "type": 2,
                    "start_time": "2030-01-01T10:00:00Z",
                    "duration": 30,
                    "timezone": "UTC",
                    "join_url": format!("https://zoom.us/j/{meeting}"),
                }
            }
        })
        .to_string();
        let mut event = SignedEvent {
            body,
            timestamp: 0,
            signature: String::new(),
        };
        event.sign();
        event
    }

    fn sign(&mut self) {
        self.timestamp = unix_now();
        self.signature = zoom::webhook::sign(
            WEBHOOK_SECRET,
            &self.timestamp.to_string(),
            self.body.as_bytes(),
        );
    }
}

/// What one client saw.
#[derive(Default)]
struct ClientTally {
    applied: u64,
    other: u64,
    latencies: Vec<Duration>,
}

async fn bench_webhooks(
    backend: &str,
    database_url: &str,
    dir: &Path,
    args: &WebhooksArgs,
) -> anyhow::Result<()> {
    let setup = setup(backend, database_url, dir).await?;
    store_connections(&setup, args.users).await?;
    let server = Server::bind(setup.keeper.clone()).await?;
    let url = format!(
        "{}/external_webhooks/zoom/oauth_apps/{}",
        server.public_url(),
        setup.app_id
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let concurrency = args.concurrency.max(1);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let seq = Arc::new(AtomicU64::new(0));
    // Warm-up: connections, prepared statements, the SQLite page cache.
    let warm = drive(&http, &url, &seq, args.users, concurrency, 20, None).await?;
    let per_client = EVENTS_PER_CLIENT_SECOND * args.seconds.max(1) as usize;
    let run = Duration::from_secs(args.seconds.max(1));
    let started = Instant::now();
    let timed = drive(
        &http,
        &url,
        &seq,
        args.users,
        concurrency,
        per_client,
        Some(run),
    )
    .await?;
    let wall = started.elapsed();
    let _ = stop.send(());
    serving.await.context("server task")??;

    let mut latencies: Vec<Duration> = timed.iter().flat_map(|t| t.latencies.clone()).collect();
    latencies.sort();
    let applied: u64 = warm.iter().chain(&timed).map(|t| t.applied).sum();
    let other: u64 = warm.iter().chain(&timed).map(|t| t.other).sum();
    let timed_events = latencies.len();
    let pool = Pool::connect(database_url).await?;
    let indexed = pool.count_webhook_rows().await?;
    pool.close().await;
    println!(
        "{backend}: {:.0} verified meeting.created events/s ({timed_events} in {:.2} s, {concurrency} clients, {} users); latency p50 {:.3} ms, p99 {:.3} ms",
        timed_events as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
        args.users,
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
    );
    println!(
        "{backend}: {applied} answered 200 applied, {other} answered otherwise; index rows from webhooks: {indexed}"
    );
    ensure!(other == 0, "{other} events were not applied");
    ensure!(
        u64::try_from(indexed).ok() == Some(applied),
        "the index holds {indexed} rows for {applied} applied events"
    );
    Ok(())
}

/// Runs `concurrency` clients, each sending its own events: `per_client` of them,
/// or, with `until`, for that long (signing more when the prepared ones run out).
async fn drive(
    http: &reqwest::Client,
    url: &str,
    seq: &Arc<AtomicU64>,
    users: usize,
    concurrency: usize,
    per_client: usize,
    until: Option<Duration>,
) -> anyhow::Result<Vec<ClientTally>> {
    // Signed before the clock starts.
    let prepared: Vec<Vec<SignedEvent>> = (0..concurrency)
        .map(|_| {
            (0..per_client)
                .map(|_| SignedEvent::new(seq.fetch_add(1, Ordering::Relaxed), users))
                .collect()
        })
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for events in prepared {
        let (http, url, seq) = (http.clone(), url.to_owned(), seq.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = ClientTally {
                latencies: Vec::with_capacity(events.len()),
                ..ClientTally::default()
            };
            let mut events = events.into_iter();
            loop {
                let mut event = match (events.next(), until) {
                    (Some(e), _) => e,
                    (None, None) => break,
                    (None, Some(_)) => SignedEvent::new(seq.fetch_add(1, Ordering::Relaxed), users),
                };
                if until.is_some_and(|u| started.elapsed() >= u) {
                    break;
                }
                if unix_now() - event.timestamp > RESIGN_AFTER_S {
                    event.sign();
                }
                let t = Instant::now();
                let resp = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header(zoom::webhook::TIMESTAMP_HEADER, event.timestamp.to_string())
                    .header(zoom::webhook::SIGNATURE_HEADER, &event.signature)
                    .body(event.body)
                    .send()
                    .await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                tally.latencies.push(t.elapsed());
                if status.is_success() && body.windows(9).any(|w| w == b"\"applied\"") {
                    tally.applied += 1;
                } else {
                    tally.other += 1;
                    if tally.other <= 3 {
                        eprintln!("{status}: {}", String::from_utf8_lossy(&body));
                    }
                }
            }
            anyhow::Ok(tally)
        }));
    }
    let mut out = Vec::with_capacity(concurrency);
    for task in tasks {
        out.push(task.await.context("client task")??);
    }
    Ok(out)
}

async fn bench_lookup(
    backend: &str,
    database_url: &str,
    dir: &Path,
    args: &LookupArgs,
) -> anyhow::Result<()> {
    let setup = setup(backend, database_url, dir).await?;
    let connection_ids = store_connections(&setup, args.connections.max(1)).await?;
    let pool = Pool::connect(database_url).await?;
    let started = Instant::now();
    bulk_load_meetings(&pool, &setup, &connection_ids, args.meetings).await?;
    let loaded_in = started.elapsed();
    if let Pool::Postgres(p) = &pool {
        // What autovacuum does after a load this size; without statistics the
        // planner may walk the project's rows in synced_at order instead.
        sqlx::query("ANALYZE zoom_meetings").execute(p).await?;
    }
    pool.close().await;

    // Indexed ids are even offsets from FIRST_MEETING; odd ones are misses.
    let mut rng = SplitMix(0x5eed);
    let ids: Vec<String> = (0..args.lookups.max(1))
        .map(|_| (FIRST_MEETING + rng.below(2 * args.meetings.max(1))).to_string())
        .collect();
    // Warm-up: prepared statements and the page cache, as in a running service.
    for id in ids.iter().take(1_000) {
        meetings::hosts(&setup.keeper, &setup.project_id, None, id).await?;
    }
    let mut latencies = Vec::with_capacity(ids.len());
    let mut hits = 0usize;
    for id in &ids {
        let t = Instant::now();
        let found = meetings::hosts(&setup.keeper, &setup.project_id, None, id).await?;
        latencies.push(t.elapsed());
        if let Some(row) = found.first() {
            let offset = id.parse::<u64>()? - FIRST_MEETING;
            ensure!(offset.is_multiple_of(2), "meeting {id} was never indexed");
            let expected = &connection_ids[(offset / 2) as usize % connection_ids.len()];
            ensure!(&row.connection_id == expected, "meeting {id}: wrong host");
            hits += 1;
        }
    }
    latencies.sort();
    println!(
        "{backend}: {} meetings over {} connections (loaded in {:.1} s); {} lookups ({hits} hits): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        args.meetings,
        connection_ids.len(),
        loaded_in.as_secs_f64(),
        latencies.len(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    Ok(())
}

/// Rows per INSERT statement (8 columns: well under both databases' bind limits).
const ROWS_PER_INSERT: u64 = 1_000;
/// INSERT statements per transaction.
const INSERTS_PER_TRANSACTION: u64 = 50;

/// Loads `n` index rows: meeting `FIRST_MEETING + 2 i` hosted by connection
/// `i % len`, a third of them past, a third upcoming, a third without a start time.
/// Multi-row INSERTs straight through the bench's pool: a bulk loader, not a path of
/// the service.
async fn bulk_load_meetings(
    pool: &Pool,
    setup: &Setup,
    connection_ids: &[String],
    n: u64,
) -> anyhow::Result<()> {
    if connection_ids.is_empty() {
        bail!("no connections to host the meetings");
    }
    let now = setup.keeper.store.now().await?;
    let row = |i: u64| {
        let start = match i % 3 {
            0 => Some(now - chrono::Duration::days((i % 7) as i64)),
            1 => Some(now + chrono::Duration::days((i % 30) as i64)),
            _ => None,
        };
        (
            (FIRST_MEETING + 2 * i).to_string(),
            connection_ids[i as usize % connection_ids.len()].as_str(),
            if i.is_multiple_of(2) {
                "webhook"
            } else {
                "sync"
            },
            format!("Bench meeting {i}"),
            start,
        )
    };
    const COLUMNS: &str = "INSERT INTO zoom_meetings \
        (project_id, app_id, meeting_id, connection_id, source, topic, start_time, synced_at) ";
    let per_tx = ROWS_PER_INSERT * INSERTS_PER_TRANSACTION;
    let mut first = 0;
    while first < n {
        let last = (first + per_tx).min(n);
        match pool {
            Pool::Sqlite(p) => {
                let micros = |t: chrono::DateTime<chrono::Utc>| t.timestamp_micros();
                let mut tx = p.begin().await?;
                for chunk in (first..last).step_by(ROWS_PER_INSERT as usize) {
                    let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(COLUMNS);
                    let end = (chunk + ROWS_PER_INSERT).min(last);
                    q.push_values((chunk..end).map(row), |mut b, r| {
                        b.push_bind(&setup.project_id)
                            .push_bind(&setup.app_id)
                            .push_bind(r.0)
                            .push_bind(r.1.to_owned())
                            .push_bind(r.2)
                            .push_bind(r.3)
                            .push_bind(r.4.map(micros))
                            .push_bind(micros(now));
                    });
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                for chunk in (first..last).step_by(ROWS_PER_INSERT as usize) {
                    let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(COLUMNS);
                    let end = (chunk + ROWS_PER_INSERT).min(last);
                    q.push_values((chunk..end).map(row), |mut b, r| {
                        b.push_bind(&setup.project_id)
                            .push_bind(&setup.app_id)
                            .push_bind(r.0)
                            .push_bind(r.1.to_owned())
                            .push_bind(r.2)
                            .push_bind(r.3)
                            .push_bind(r.4)
                            .push_bind(now);
                    });
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        first = last;
    }
    Ok(())
}

/// A small deterministic generator, so runs look up the same ids.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
