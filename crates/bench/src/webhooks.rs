//! `zoomkeeper bench webhooks` (DESIGN.md §10, issue 19): the server runs in this
//! process on a fresh database (SQLite, and PostgreSQL when a throwaway cluster can be
//! started) with one app that has a webhook secret and `--users` connected users (rows
//! written through the `Store` trait). `--concurrency` keep-alive clients then POST
//! signed, distinct `meeting.created` events (each its own meeting id and `event_ts`,
//! hosted by one of the users) over loopback for `--seconds`. Events are signed before
//! the clock starts, and signed again when one is about to leave Zoom's 300 s window.
//!
//! The clients run in a process of their own by default (`zoomkeeper bench
//! webhook-load`, the same program), so the figure is the server's and this process's
//! CPU time is the server's CPU per event; `--pin` puts the server on CPU 0 and the
//! clients on CPU 1 (`taskset`), `--generator in-process` runs them here instead.
//! Prints events/s, p50/p99 latency and the server's CPU per event, and checks that
//! the index holds exactly one row per `applied` answer.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context as _};
use clap::Args;
use keeper::storage::{Cursor, Direction, MeetingFilter, MeetingSource, PageRequest};
use keeper::Keeper;

use crate::measure::{ms, Latencies};
use crate::setup::{on_each_database, Backend, Setup};

#[derive(Args, Debug, Clone)]
pub struct WebhooksArgs {
    /// How long to send events for.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Keep-alive clients sending at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Connected users the meetings are spread over.
    #[arg(long, default_value_t = 1_000)]
    pub users: usize,
    /// Only SQLite, even when PostgreSQL binaries are present.
    #[arg(long)]
    pub sqlite_only: bool,
    /// Where the clients run: `process` (their own, the default) or `in-process`.
    #[arg(long, value_enum, default_value_t = Generator::Process)]
    pub generator: Generator,
    /// With `--generator process`: the server on CPU 0, the clients on CPU 1.
    #[arg(long)]
    pub pin: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generator {
    Process,
    InProcess,
}

/// `zoomkeeper bench webhook-load`: the clients of `bench webhooks` in a process of
/// their own. Prints `ready` once its events are signed and its connections warm, then
/// one JSON line with what it saw.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// The Zoom event URL of the app.
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub seconds: u64,
    #[arg(long)]
    pub concurrency: usize,
    #[arg(long)]
    pub users: usize,
}

/// One database's run.
#[derive(Debug)]
pub struct WebhooksReport {
    pub backend: Backend,
    /// Events sent, warm-up included.
    pub sent: u64,
    /// Answered 200 `applied`.
    pub applied: u64,
    /// Answered anything else.
    pub other: u64,
    /// Index rows from webhooks afterwards.
    pub indexed: u64,
    /// The timed events' latencies.
    pub latencies: Latencies,
    /// Timed events per second.
    pub events_per_second: f64,
    /// CPU time this process spent per timed event (the server's, when the clients
    /// ran in their own process).
    pub cpu_per_event: Duration,
}

const WEBHOOK_SECRET: &str = "bench-webhook-secret";
/// Events older than this are signed again before sending (Zoom's window is 300 s).
const RESIGN_AFTER_S: i64 = 240;
/// Events signed per client before the clock starts, per second of the run.
const EVENTS_PER_CLIENT_SECOND: usize = 400;
/// First meeting number of the bench's events.
const FIRST_MEETING: u64 = 80_000_000_000;

pub async fn run(args: WebhooksArgs, zoomkeeper: &Path) -> anyhow::Result<Vec<WebhooksReport>> {
    let args = &args;
    if args.pin {
        ensure!(
            args.generator == Generator::Process,
            "--pin needs the clients in their own process (--generator process)"
        );
        pin(std::process::id(), 0)?;
    }
    on_each_database(args.sqlite_only, |backend, url, dir| async move {
        bench_webhooks(backend, &url, &dir, args, zoomkeeper).await
    })
    .await
}

/// Puts every thread of process `pid` on CPU `cpu`.
fn pin(pid: u32, cpu: usize) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset (util-linux) to pin the processes")?;
    ensure!(
        status.success(),
        "taskset could not pin process {pid} to CPU {cpu}"
    );
    Ok(())
}

/// CPU time (user and system) this process has used so far.
fn cpu_time() -> anyhow::Result<Duration> {
    // /proc/self/stat fields 14 and 15, in clock ticks (100 per second on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    let after_name = stat.rsplit_once(')').context("/proc/self/stat")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)
        .context("/proc/self/stat fields")?
        .iter()
        .map(|f| f.parse::<u64>())
        .sum::<Result<u64, _>>()?;
    Ok(Duration::from_millis(ticks * 10))
}

/// The clients of one run: what they saw, and how long the timed part took.
struct LoadResult {
    applied: u64,
    other: u64,
    latencies: Latencies,
    wall: Duration,
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
    backend: Backend,
    database_url: &str,
    dir: &Path,
    args: &WebhooksArgs,
    zoomkeeper: &Path,
) -> anyhow::Result<WebhooksReport> {
    let setup = Setup::start(backend, database_url, dir).await?;
    let app = setup.create_app(Some(WEBHOOK_SECRET)).await?;
    setup.store_connections(&app, args.users).await?;
    let serving = setup.serve().await?;
    let url = format!(
        "{}/external_webhooks/zoom/oauth_apps/{}",
        serving.base, app.id
    );
    let concurrency = args.concurrency.max(1);
    let (load, cpu) = match args.generator {
        Generator::InProcess => {
            let (tx, ready) = tokio::sync::oneshot::channel();
            let load = tokio::spawn(load(url.clone(), args.seconds, concurrency, args.users, tx));
            ready
                .await
                .context("the clients stopped before they were ready")?;
            let cpu_before = cpu_time()?;
            let load = load.await.context("clients")??;
            (load, cpu_time()? - cpu_before)
        }
        Generator::Process => run_load_process(zoomkeeper, &url, args, concurrency).await?,
    };
    serving.stop().await?;

    let timed_events = load.latencies.count();
    let events_per_second = timed_events as f64 / load.wall.as_secs_f64();
    let cpu_per_event = cpu / (timed_events.max(1) as u32);
    let indexed = count_webhook_rows(&setup.keeper, &setup.project_id).await?;
    let placement = match (args.generator, args.pin) {
        (Generator::InProcess, _) => "clients in this process",
        (Generator::Process, false) => "clients in their own process",
        (Generator::Process, true) => "clients in their own process on CPU 1, server on CPU 0",
    };
    println!(
        "{backend}: {events_per_second:.0} verified meeting.created events/s ({timed_events} in {:.2} s, {concurrency} clients, {} users, {placement}); latency p50 {:.3} ms, p99 {:.3} ms; server CPU {:.3} ms per event",
        load.wall.as_secs_f64(),
        args.users,
        ms(load.latencies.p50()),
        ms(load.latencies.p99()),
        ms(cpu_per_event),
    );
    println!(
        "{backend}: {} answered 200 applied, {} answered otherwise; index rows from webhooks: {indexed}",
        load.applied, load.other
    );
    ensure!(load.other == 0, "{} events were not applied", load.other);
    ensure!(
        indexed == load.applied,
        "the index holds {indexed} rows for {} applied events",
        load.applied
    );
    Ok(WebhooksReport {
        backend,
        sent: load.applied + load.other,
        applied: load.applied,
        other: load.other,
        indexed,
        latencies: load.latencies,
        events_per_second,
        cpu_per_event,
    })
}

/// `zoomkeeper bench webhook-load` against `url`; this process's CPU time is measured
/// from its `ready` to its answer.
async fn run_load_process(
    zoomkeeper: &Path,
    url: &str,
    args: &WebhooksArgs,
    concurrency: usize,
) -> anyhow::Result<(LoadResult, Duration)> {
    use tokio::io::{AsyncBufReadExt as _, BufReader};
    let mut child = tokio::process::Command::new(zoomkeeper)
        .args(["bench", "webhook-load", "--url", url])
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--concurrency", &concurrency.to_string()])
        .args(["--users", &args.users.to_string()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} bench webhook-load", zoomkeeper.display()))?;
    if args.pin {
        pin(child.id().context("the load process's id")?, 1)?;
    }
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut cpu_before = None;
    let mut answer = None;
    while let Some(line) = lines.next_line().await? {
        if line == "ready" {
            cpu_before = Some(cpu_time()?);
        } else if line.starts_with('{') {
            answer = Some((line, cpu_time()?));
        }
    }
    let status = child.wait().await?;
    ensure!(status.success(), "bench webhook-load failed: {status}");
    let ((line, cpu_after), cpu_before) = answer
        .zip(cpu_before)
        .context("bench webhook-load answered nothing")?;
    let seen: serde_json::Value = serde_json::from_str(&line)?;
    let micros = |v: &serde_json::Value| -> anyhow::Result<Vec<Duration>> {
        Ok(v.as_array()
            .context("latencies")?
            .iter()
            .filter_map(serde_json::Value::as_u64)
            .map(Duration::from_micros)
            .collect())
    };
    let load = LoadResult {
        applied: seen["applied"].as_u64().context("applied")?,
        other: seen["other"].as_u64().context("other")?,
        latencies: Latencies::new(micros(&seen["latencies_us"])?),
        wall: Duration::from_secs_f64(seen["wall_s"].as_f64().context("wall_s")?),
    };
    Ok((load, cpu_after - cpu_before))
}

/// `zoomkeeper bench webhook-load`: signs, warms up, says `ready`, sends for
/// `--seconds`, then prints what it saw as one JSON line.
pub async fn run_load(args: LoadArgs) -> anyhow::Result<()> {
    let (tx, ready) = tokio::sync::oneshot::channel();
    let load = tokio::spawn(load(
        args.url,
        args.seconds,
        args.concurrency.max(1),
        args.users,
        tx,
    ));
    if ready.await.is_ok() {
        println!("ready");
    }
    let load = load.await.context("clients")??;
    let latencies: Vec<u64> = load
        .latencies
        .iter()
        .map(|d| d.as_micros() as u64)
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "applied": load.applied,
            "other": load.other,
            "wall_s": load.wall.as_secs_f64(),
            "latencies_us": latencies,
        })
    );
    Ok(())
}

/// Warms up, signals `ready`, then sends for `seconds`.
async fn load(
    url: String,
    seconds: u64,
    concurrency: usize,
    users: usize,
    ready: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<LoadResult> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let seq = Arc::new(AtomicU64::new(0));
    // Warm-up: connections, prepared statements, the SQLite page cache.
    let warm = drive(&http, &url, &seq, users, concurrency, 20, None).await?;
    let per_client = EVENTS_PER_CLIENT_SECOND * seconds.max(1) as usize;
    let prepared = sign_events(&seq, users, concurrency, per_client);
    let _ = ready.send(());
    let run = Duration::from_secs(seconds.max(1));
    let started = Instant::now();
    let timed = drive_prepared(&http, &url, &seq, users, prepared, Some(run)).await?;
    let wall = started.elapsed();
    Ok(LoadResult {
        applied: warm.iter().chain(&timed).map(|t| t.applied).sum(),
        other: warm.iter().chain(&timed).map(|t| t.other).sum(),
        latencies: Latencies::new(timed.into_iter().flat_map(|t| t.latencies).collect()),
        wall,
    })
}

/// Index rows of the project that came from webhooks, every page of
/// `GET /api/v1/zoom_meetings`'s query.
async fn count_webhook_rows(keeper: &Keeper, project_id: &str) -> anyhow::Result<u64> {
    let mut count = 0;
    let mut page = PageRequest {
        cursor: None,
        limit: 100,
    };
    loop {
        let got = keeper
            .store
            .list_meetings(project_id, &MeetingFilter::default(), &page)
            .await?;
        count += got
            .items
            .iter()
            .filter(|m| m.source == MeetingSource::Webhook)
            .count() as u64;
        let Some(last) = got.items.last().filter(|_| got.has_more) else {
            return Ok(count);
        };
        page.cursor = Some(Cursor {
            created_at: last.synced_at,
            id: keeper::storage::meeting_cursor_id(&last.app_id, &last.meeting_id),
            direction: Direction::Older,
        });
    }
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
    let prepared = sign_events(seq, users, concurrency, per_client);
    drive_prepared(http, url, seq, users, prepared, until).await
}

/// `per_client` signed events for each of `concurrency` clients.
fn sign_events(
    seq: &AtomicU64,
    users: usize,
    concurrency: usize,
    per_client: usize,
) -> Vec<Vec<SignedEvent>> {
    (0..concurrency)
        .map(|_| {
            (0..per_client)
                .map(|_| SignedEvent::new(seq.fetch_add(1, Ordering::Relaxed), users))
                .collect()
        })
        .collect()
}

/// One client per list of `prepared` events.
async fn drive_prepared(
    http: &reqwest::Client,
    url: &str,
    seq: &Arc<AtomicU64>,
    users: usize,
    prepared: Vec<Vec<SignedEvent>>,
    until: Option<Duration>,
) -> anyhow::Result<Vec<ClientTally>> {
    let concurrency = prepared.len();
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
