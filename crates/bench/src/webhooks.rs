//! `zoomkeeper bench webhooks` (DESIGN.md §10, issue 5 "Performance"): the server
//! runs in this process on a fresh database (SQLite, and PostgreSQL when a throwaway
//! cluster can be started) with one app that has a webhook secret and `--users`
//! connected users (rows written through the `Store` trait). `--concurrency`
//! keep-alive clients then POST signed, distinct `meeting.created` events (each its
//! own meeting id and `event_ts`, hosted by one of the users) over loopback for
//! `--seconds`. Events are signed before the clock starts, and signed again when one
//! is about to leave Zoom's 300 s window. Prints events/s and p50/p99 latency, and
//! checks that the index holds exactly one row per `applied` answer.

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
}

const WEBHOOK_SECRET: &str = "bench-webhook-secret";
/// Events older than this are signed again before sending (Zoom's window is 300 s).
const RESIGN_AFTER_S: i64 = 240;
/// Events signed per client before the clock starts, per second of the run.
const EVENTS_PER_CLIENT_SECOND: usize = 400;
/// First meeting number of the bench's events.
const FIRST_MEETING: u64 = 80_000_000_000;

pub async fn run(args: WebhooksArgs) -> anyhow::Result<Vec<WebhooksReport>> {
    let args = &args;
    on_each_database(args.sqlite_only, |backend, url, dir| async move {
        bench_webhooks(backend, &url, &dir, args).await
    })
    .await
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
    serving.stop().await?;

    let latencies = Latencies::new(timed.iter().flat_map(|t| t.latencies.clone()).collect());
    let applied: u64 = warm.iter().chain(&timed).map(|t| t.applied).sum();
    let other: u64 = warm.iter().chain(&timed).map(|t| t.other).sum();
    let timed_events = latencies.count();
    let indexed = count_webhook_rows(&setup.keeper, &setup.project_id).await?;
    println!(
        "{backend}: {:.0} verified meeting.created events/s ({timed_events} in {:.2} s, {concurrency} clients, {} users); latency p50 {:.3} ms, p99 {:.3} ms",
        timed_events as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
        args.users,
        ms(latencies.p50()),
        ms(latencies.p99()),
    );
    println!(
        "{backend}: {applied} answered 200 applied, {other} answered otherwise; index rows from webhooks: {indexed}"
    );
    ensure!(other == 0, "{other} events were not applied");
    ensure!(
        indexed == applied,
        "the index holds {indexed} rows for {applied} applied events"
    );
    Ok(WebhooksReport {
        backend,
        sent: applied + other,
        applied,
        other,
        indexed,
        latencies,
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
