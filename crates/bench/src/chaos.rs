//! `zoomkeeper bench chaos`: token storms, re-authorisations, deauthorisations and
//! kills, all at once, against two `zoomkeeper serve` processes sharing one
//! PostgreSQL database; then counts the connections lost and the stale refresh-token
//! uses (issue 10, "Proof required"; DESIGN.md §5, §6). Both must be 0.
//!
//! Setup: the Zoom simulator in this process, with 30 ms of latency on every Zoom
//! call and access tokens that live `MIN_VALIDITY` + 5 s (so a token request
//! refreshes once its token is 5 s old); a throwaway PostgreSQL cluster (or
//! `--postgres-url`); two `serve` children whose token keepers run every second;
//! `--connections` users connected through the API.
//!
//! For `--seconds`, at once:
//! - a token storm: `--concurrency` workers POST `access_token` (¾) and `zak_token`
//!   (¼) for random connections to random processes; one access token in ten is
//!   checked at the simulator (issued to that user, grant alive);
//! - re-authorisations, `--reauths-per-second`: a new code for a connected user,
//!   POSTed to `/api/v1/zoom_oauth_connections`: one; two or three at once spread
//!   over both processes; one that fails after the exchange (scopes missing); two or
//!   three at once of which one fails; or one while the user is inactive at Zoom.
//!   After each round the user's connection must hand out a live token of theirs;
//! - deauthorisations: a tenth of the users remove the app at the simulator; they
//!   are expected to end disconnected and are not counted as lost;
//! - kills: every `--kill-every` seconds on average, SIGKILL of one process, then a
//!   restart.
//!
//! How kills are timed. Zoom kills a refresh token the moment it answers the refresh
//! that replaces it; a process that dies after that answer and before committing
//! the new token (milliseconds) loses that connection, and nothing in Zoom's
//! protocol can bring it back. The same holds for a code exchange. The simulator
//! applies latency *before* it looks at a request and drops requests whose client
//! went away meanwhile (`a_refresh_abandoned_during_zoom_latency_never_rotates` in
//! tests/proof_processes.rs). So before a kill: re-authorisations stop going to the
//! victim and its creates in flight finish; then Zoom's token endpoint is held
//! (`HOLD` of latency for requests arriving from then on), and the kill comes
//! `COMMIT_ALLOWANCE` after every earlier token request was answered. A kill thus
//! lands while the victim's refreshes wait at Zoom (abandoned, nothing rotated) or
//! while it has none there, never inside that window.
//!
//! Then: both processes up, no faults, the access-token lifetime margin waited out,
//! and every user the run did not deauthorise must get an access token refreshed
//! after the quiet began, issued by Zoom to that user, within `--recovery-seconds`.
//!
//! Connections lost: users the run did not deauthorise (or not yet, at that moment)
//! whose connection failed the final check, logged a `disconnected` event, or did
//! not hand out a live token of theirs right after a re-authorisation. Each is
//! printed with the path it was lost through.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum as _};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

use crate::measure::Rng;
use crate::setup::{Backend, ServeTarget, Setup, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI};

#[derive(Args, Debug, Clone)]
pub struct ChaosArgs {
    /// How long the chaos lasts, in seconds (the quiet and the checks come after).
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Users connected before the chaos starts.
    #[arg(long, default_value_t = 200)]
    pub connections: usize,
    /// Seed of every random choice (default: from the clock; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Token requests in flight at once (the storm).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Re-authorisation rounds started per second.
    #[arg(long, default_value_t = 4.0)]
    pub reauths_per_second: f64,
    /// Kinds of re-authorisation rounds to mix (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = RoundKind::ALL)]
    pub rounds: Vec<RoundKind>,
    /// Mean seconds between kills (SIGKILL of one process, then a restart).
    #[arg(long, default_value_t = 10.0)]
    pub kill_every: f64,
    /// Latency of every Zoom call, in milliseconds.
    #[arg(long, default_value_t = 30)]
    pub zoom_latency_ms: u64,
    /// After the chaos, how long a connection may take to hand out a token again
    /// (a lease a killed process held must run out first).
    #[arg(long, default_value_t = 90)]
    pub recovery_seconds: u64,
    /// An empty PostgreSQL database (postgres://…) instead of a throwaway cluster.
    #[arg(long)]
    pub postgres_url: Option<String>,
}

/// Zoom's token endpoint answers nothing new for this long before a kill.
const HOLD: Duration = Duration::from_millis(4000);
/// Time allowed between Zoom answering a refresh or exchange and its commit
/// (milliseconds in practice; generous for two loaded cores).
const COMMIT_ALLOWANCE: Duration = Duration::from_millis(1000);
/// The token keepers' settings: a round every second, every connection refreshed
/// at least every few seconds.
const KEEPER_INTERVAL: &str = "1s";
const KEEPER_MAX_AGE: &str = "5s";
/// Access tokens live this much longer than the validity a request needs.
const TTL_MARGIN_S: u64 = 5;
const NAMES: [&str; 2] = ["a", "b"];
/// Lost connections shown in detail.
const SHOWN_LOST: usize = 10;
/// A token request that finds a lease held should answer within this (DESIGN.md §6).
const SLOW_CHECK: Duration = Duration::from_secs(5);

/// Runs the chaos and prints its report; fails unless it lost no connection and
/// used no stale refresh token.
pub async fn run(args: ChaosArgs, zoomkeeper: &Path) -> anyhow::Result<Report> {
    if args.connections < 2 {
        bail!("--connections must be at least 2 (one each process connects)");
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let database_url = match &args.postgres_url {
        Some(url) => url.clone(),
        None => match testkit::pg_cluster::shared().await? {
            Some(cluster) => cluster.create_database().await?,
            None => bail!(
                "bench chaos needs PostgreSQL: no binaries (initdb, postgres) were found on PATH \
                 or under /usr/lib/postgresql/*/bin; install PostgreSQL or pass --postgres-url"
            ),
        },
    };
    let dir = tempfile::tempdir().context("creating a scratch directory")?;
    let report = chaos(&args, seed, &database_url, dir.path(), zoomkeeper).await?;
    report.print();
    if report.lost.is_empty() && report.stats.stale_refresh_token_uses == 0 {
        Ok(report)
    } else {
        bail!(
            "{} connections lost, {} stale refresh-token uses (both must be 0)",
            report.lost.len(),
            report.stats.stale_refresh_token_uses
        )
    }
}

// ---- the run -------------------------------------------------------------------

async fn chaos(
    args: &ChaosArgs,
    seed: u64,
    database_url: &str,
    dir: &Path,
    zoomkeeper: &Path,
) -> anyhow::Result<Report> {
    let ttl_s = keeper::tokens::MIN_VALIDITY.as_secs() + TTL_MARGIN_S;
    // The project and its key, written straight to the database (this also creates
    // the master key file and applies migrations) before any `serve` starts.
    let setup = Setup::start(Backend::Postgres, database_url, dir).await?;
    let control = setup.sim.control();
    control
        .set_config(&zoom_sim::SimConfig {
            access_token_ttl_s: Some(ttl_s),
            ..Default::default()
        })
        .await?;
    let base_faults = zoom_sim::SimFaults {
        latency_ms: Some(args.zoom_latency_ms),
        ..Default::default()
    };
    control.set_faults(&base_faults).await?;
    let auth = setup.authorization().await?;

    let launcher = Launcher {
        target: setup.serve_target(zoomkeeper),
        dir: dir.to_owned(),
        starts: AtomicUsize::new(0),
    };
    let a = launcher.start(NAMES[0]).await?;
    let b = launcher.start(NAMES[1]).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()?;
    let created = post_json(
        &http,
        &auth,
        &format!("{}/api/v1/zoom_oauth_apps", a.base),
        Some(json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})),
    )
    .await?;
    if created.status != 201 {
        bail!(
            "creating the app answered {}: {}",
            created.status,
            created.json
        );
    }
    let app_id = created.json["id"].as_str().context("app id")?.to_owned();

    let mut c = Chaos {
        sim: control.clone(),
        http,
        auth,
        app_id,
        users: Vec::new(),
        bases: RwLock::new([Some(a.base.clone()), Some(b.base.clone())]),
        creates_in_flight: [AtomicUsize::new(0), AtomicUsize::new(0)],
        creates_paused: [AtomicBool::new(false), AtomicBool::new(false)],
        started: Instant::now(),
        n: Counters::default(),
        odd: Mutex::new(BTreeMap::new()),
        lost: Mutex::new(BTreeMap::new()),
        kill_log: Mutex::new(Vec::new()),
    };
    let connect_started = Instant::now();
    c.users = connect_users(&c, args.connections).await?;
    let connected_in = connect_started.elapsed();
    let c = Arc::new(c);
    let before = control.stats().await?;

    // The chaos.
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let procs = Arc::new(tokio::sync::Mutex::new([Some(a), Some(b)]));
    let mut storm = tokio::task::JoinSet::new();
    for worker in 0..args.concurrency.max(1) {
        storm.spawn(token_storm(
            c.clone(),
            Rng::new(seed ^ (0x51_u64 + worker as u64).wrapping_mul(0x9E37_79B9)),
            until,
        ));
    }
    let reauths = tokio::spawn(reauthorisations(
        c.clone(),
        Rng::new(seed ^ 0xAEA0_7A11),
        until,
        args.reauths_per_second,
        args.rounds.clone(),
    ));
    let deauth_count = (args.connections / 10).max(1);
    let deauths = tokio::spawn(deauthorisations(
        c.clone(),
        Rng::new(seed ^ 0xDEA0_7A11),
        until,
        deauth_count,
    ));
    let kills = tokio::spawn(kill_and_restart(
        c.clone(),
        procs.clone(),
        Arc::new(launcher),
        Rng::new(seed ^ 0x0C11_1E55),
        until,
        args.kill_every,
        base_faults.clone(),
    ));

    tokio::time::sleep_until(until.into()).await;
    // Token requests still waiting get a moment, then are dropped (the server
    // finishes any refresh they started on its own).
    let grace = tokio::time::sleep(Duration::from_secs(3));
    tokio::pin!(grace);
    loop {
        tokio::select! {
            joined = storm.join_next() => if joined.is_none() { break },
            _ = &mut grace => { storm.abort_all(); while storm.join_next().await.is_some() {} break }
        }
    }
    reauths.await.context("re-authorisation driver")??;
    deauths.await.context("deauthorisation driver")??;
    let launcher = kills.await.context("kill driver")??;
    let chaos_stats = control.stats().await?;

    // Quiet: no faults, both processes up, every cached token too old to hand out.
    control.set_faults(&zoom_sim::SimFaults::default()).await?;
    let quiet_from = Utc::now();
    tokio::time::sleep(Duration::from_secs(TTL_MARGIN_S + 1)).await;
    let recovery = Duration::from_secs(args.recovery_seconds);
    let final_check = final_check(&c, quiet_from, recovery).await;
    disconnections_while_authorised(&c).await;
    let stats = control.stats().await?;

    let mut lost = Vec::new();
    let lost_map = c.lost.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for (index, reasons) in lost_map {
        lost.push(diagnose(&c, &c.users[index], reasons, dir).await);
    }
    {
        let mut procs = procs.lock().await;
        for p in procs.iter_mut().flatten() {
            let _ = p.child.kill().await;
        }
    }
    drop(launcher);
    let odd = c.odd.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let kill_log = c.kill_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(Report {
        seed,
        zoom_latency: Duration::from_millis(args.zoom_latency_ms),
        args_line: format!(
            "{} connections, {} s of chaos, storm of {}, {} re-authorisation rounds/s ({}), a kill every ~{} s, Zoom latency {} ms",
            args.connections,
            args.seconds,
            args.concurrency,
            args.reauths_per_second,
            args.rounds
                .iter()
                .filter_map(|k| k.to_possible_value().map(|v| v.get_name().to_owned()))
                .collect::<Vec<_>>()
                .join(","),
            args.kill_every,
            args.zoom_latency_ms
        ),
        ttl_s,
        connected_in,
        n: c.n.snapshot(),
        odd,
        kill_log,
        final_check,
        before,
        chaos_stats,
        stats,
        lost,
    })
}

/// What the drivers share.
struct Chaos {
    sim: zoom_sim::SimControl,
    http: reqwest::Client,
    auth: String,
    app_id: String,
    users: Vec<Arc<User>>,
    /// Where each process listens; `None` while it is down.
    bases: RwLock<[Option<String>; 2]>,
    creates_in_flight: [AtomicUsize; 2],
    creates_paused: [AtomicBool; 2],
    started: Instant,
    n: Counters,
    /// Unexpected answers, by what they were.
    odd: Mutex<BTreeMap<String, u64>>,
    /// Lost users (index into `users`) and how each was seen lost.
    lost: Mutex<BTreeMap<usize, Vec<String>>>,
    kill_log: Mutex<Vec<String>>,
}

struct User {
    index: usize,
    zoom_id: String,
    connection_id: String,
    /// Held by a re-authorisation round or a deauthorisation of this user.
    turn: Arc<tokio::sync::Mutex<()>>,
    deauthorized_at: Mutex<Option<DateTime<Utc>>>,
    inactive: AtomicBool,
    last_access_token: Mutex<Option<String>>,
    history: Mutex<Vec<String>>,
    seen_disconnected: AtomicBool,
}

impl User {
    fn deauthorized(&self) -> bool {
        self.deauthorized_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

#[derive(Default)]
struct Counters {
    token_requests: AtomicU64,
    zak_requests: AtomicU64,
    token_ok: AtomicU64,
    token_busy: AtomicU64,
    token_no_process: AtomicU64,
    token_disconnected_deauthorized: AtomicU64,
    token_disconnected_authorized: AtomicU64,
    token_refused_inactive: AtomicU64,
    token_other: AtomicU64,
    tokens_checked: AtomicU64,
    dead_tokens: AtomicU64,
    slowest_token_ms: AtomicU64,
    reauth_rounds: AtomicU64,
    concurrent_rounds: AtomicU64,
    failing_rounds: AtomicU64,
    inactive_rounds: AtomicU64,
    creates: AtomicU64,
    creates_as_expected: AtomicU64,
    creates_unexpected: AtomicU64,
    deauths: AtomicU64,
    kills: AtomicU64,
    kills_skipped: AtomicU64,
    kills_late: AtomicU64,
}

/// The counters' values at the end.
#[derive(Clone, Default)]
struct Counts(BTreeMap<&'static str, u64>);

impl Counts {
    fn get(&self, k: &str) -> u64 {
        self.0.get(k).copied().unwrap_or(0)
    }
}

impl Counters {
    fn snapshot(&self) -> Counts {
        let all: [(&'static str, &AtomicU64); 23] = [
            ("token_requests", &self.token_requests),
            ("zak_requests", &self.zak_requests),
            ("token_ok", &self.token_ok),
            ("token_busy", &self.token_busy),
            ("token_no_process", &self.token_no_process),
            (
                "token_disconnected_deauthorized",
                &self.token_disconnected_deauthorized,
            ),
            (
                "token_disconnected_authorized",
                &self.token_disconnected_authorized,
            ),
            ("token_refused_inactive", &self.token_refused_inactive),
            ("token_other", &self.token_other),
            ("tokens_checked", &self.tokens_checked),
            ("dead_tokens", &self.dead_tokens),
            ("slowest_token_ms", &self.slowest_token_ms),
            ("reauth_rounds", &self.reauth_rounds),
            ("concurrent_rounds", &self.concurrent_rounds),
            ("failing_rounds", &self.failing_rounds),
            ("inactive_rounds", &self.inactive_rounds),
            ("creates", &self.creates),
            ("creates_as_expected", &self.creates_as_expected),
            ("creates_unexpected", &self.creates_unexpected),
            ("deauths", &self.deauths),
            ("kills", &self.kills),
            ("kills_skipped", &self.kills_skipped),
            ("kills_late", &self.kills_late),
        ];
        Counts(all.iter().map(|(k, v)| (*k, v.load(SeqCst))).collect())
    }
}

impl Chaos {
    fn t(&self) -> String {
        format!("t={:.1}s", self.started.elapsed().as_secs_f64())
    }

    fn base(&self, slot: usize) -> Option<String> {
        self.bases.read().unwrap_or_else(|p| p.into_inner())[slot].clone()
    }

    /// A running process, at random.
    fn any_base(&self, rng: &mut Rng) -> Option<(usize, String)> {
        let first = rng.below(2) as usize;
        [first, 1 - first]
            .into_iter()
            .find_map(|slot| self.base(slot).map(|b| (slot, b)))
    }

    fn odd(&self, what: String) {
        *self
            .odd
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(what)
            .or_default() += 1;
    }

    fn lose(&self, user: &User, reason: String) {
        user.note(format!("LOST: {reason}"));
        self.lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(user.index)
            .or_default()
            .push(reason);
    }

    async fn post(&self, url: &str, body: Option<Value>) -> reqwest::Result<Answer> {
        post_json(&self.http, &self.auth, url, body).await
    }

    async fn get(&self, url: &str) -> reqwest::Result<Answer> {
        let resp = self
            .http
            .get(url)
            .header("authorization", &self.auth)
            .send()
            .await?;
        Answer::read(resp).await
    }

    /// A process to send a create to, preferring `preferred`, counted in flight
    /// until the ticket drops; none while both are paused or down.
    fn create_route(&self, preferred: usize) -> Option<(CreateTicket<'_>, String)> {
        for slot in [preferred, 1 - preferred] {
            // Counted before the pause is read: a kill that pauses this process and
            // then sees no create in flight cannot miss this one.
            self.creates_in_flight[slot].fetch_add(1, SeqCst);
            let ticket = CreateTicket { chaos: self, slot };
            if !self.creates_paused[slot].load(SeqCst) {
                if let Some(base) = self.base(slot) {
                    return Some((ticket, base));
                }
            }
        }
        None
    }
}

impl User {
    fn note(&self, line: String) {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() < 200 {
            h.push(line);
        }
    }
}

struct CreateTicket<'a> {
    chaos: &'a Chaos,
    slot: usize,
}

impl Drop for CreateTicket<'_> {
    fn drop(&mut self) {
        self.chaos.creates_in_flight[self.slot].fetch_sub(1, SeqCst);
    }
}

/// Status and JSON body (Null when not JSON).
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    json: Value,
}

impl Answer {
    async fn read(resp: reqwest::Response) -> reqwest::Result<Answer> {
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok(Answer {
            status,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
        })
    }

    fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or("-")
    }

    fn short(&self) -> String {
        format!("{} {}", self.status, self.code())
    }
}

async fn post_json(
    http: &reqwest::Client,
    auth: &str,
    url: &str,
    body: Option<Value>,
) -> reqwest::Result<Answer> {
    let mut req = http.post(url).header("authorization", auth);
    if let Some(body) = body {
        req = req.json(&body);
    }
    Answer::read(req.send().await?).await
}

// ---- setup ---------------------------------------------------------------------

/// `n` users who authorised the app, connected through both processes.
async fn connect_users(c: &Chaos, n: usize) -> anyhow::Result<Vec<Arc<User>>> {
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..n {
        let (gate, sim, http, auth, app_id) = (
            gate.clone(),
            c.sim.clone(),
            c.http.clone(),
            c.auth.clone(),
            c.app_id.clone(),
        );
        let base = c.base(index % 2).context("a process")?;
        tasks.spawn(async move {
            let _turn = gate.acquire_owned().await?;
            let user = sim.create_user(&zoom_sim::SimUser::default()).await?;
            let code = sim.authorize(&authorize(&user.id, true)).await?;
            let a = post_json(
                &http,
                &auth,
                &format!("{base}/api/v1/zoom_oauth_connections"),
                Some(create_body(&app_id, &code)),
            )
            .await?;
            if a.status != 201 {
                bail!("connecting a user answered {}: {}", a.status, a.json);
            }
            let id = a.json["id"].as_str().context("connection id")?.to_owned();
            anyhow::Ok((index, user.id, id))
        });
    }
    let mut users = Vec::with_capacity(n);
    while let Some(joined) = tasks.join_next().await {
        let (index, zoom_id, connection_id) = joined.context("connect task")??;
        users.push(Arc::new(User {
            index,
            zoom_id,
            connection_id,
            turn: Arc::new(tokio::sync::Mutex::new(())),
            deauthorized_at: Mutex::new(None),
            inactive: AtomicBool::new(false),
            last_access_token: Mutex::new(None),
            history: Mutex::new(Vec::new()),
            seen_disconnected: AtomicBool::new(false),
        }));
    }
    users.sort_by_key(|u| u.index);
    Ok(users)
}

/// Scopes one short of the local recording capability: a create from such a code
/// exchanges it, then fails with `missing_scopes`. ZAKs still work.
fn reduced_scopes() -> Vec<String> {
    zoom_sim::DEFAULT_SCOPES
        .iter()
        .filter(|s| **s != "meeting:read:local_recording_token")
        .map(|s| s.to_string())
        .collect()
}

fn authorize(user_id: &str, all_scopes: bool) -> zoom_sim::SimAuthorize {
    zoom_sim::SimAuthorize {
        client_id: CLIENT_ID.into(),
        user_id: user_id.to_owned(),
        redirect_uri: REDIRECT_URI.into(),
        scopes: (!all_scopes).then(reduced_scopes),
        ..Default::default()
    }
}

fn create_body(app_id: &str, code: &str) -> Value {
    json!({
        "zoom_oauth_app_id": app_id,
        "authorization_code": code,
        "redirect_uri": REDIRECT_URI,
    })
}

// ---- the storm -----------------------------------------------------------------

async fn token_storm(c: Arc<Chaos>, mut rng: Rng, until: Instant) {
    while Instant::now() < until {
        let user = c.users[rng.below(c.users.len() as u64) as usize].clone();
        let Some((slot, base)) = c.any_base(&mut rng) else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let zak = rng.below(4) == 0;
        let endpoint = if zak { "zak_token" } else { "access_token" };
        let url = format!(
            "{base}/api/v1/zoom_oauth_connections/{}/{endpoint}",
            user.connection_id
        );
        c.n.token_requests.fetch_add(1, SeqCst);
        if zak {
            c.n.zak_requests.fetch_add(1, SeqCst);
        }
        let started = Instant::now();
        let answer = c.post(&url, None).await;
        c.n.slowest_token_ms
            .fetch_max(started.elapsed().as_millis() as u64, SeqCst);
        let deauthorized = user.deauthorized();
        let who = if deauthorized {
            " (deauthorised user)"
        } else {
            ""
        };
        match answer {
            Err(e) => {
                if c.base(slot).as_deref() != Some(base.as_str()) {
                    c.n.token_no_process.fetch_add(1, SeqCst);
                } else {
                    c.n.token_other.fetch_add(1, SeqCst);
                    c.odd(format!(
                        "{endpoint}: no answer from a running process ({e}){who}"
                    ));
                }
            }
            Ok(a) if a.status == 200 => {
                c.n.token_ok.fetch_add(1, SeqCst);
                if zak {
                    continue;
                }
                let Some(token) = a.json["token"].as_str() else {
                    c.odd(format!("{endpoint}: 200 without a token"));
                    continue;
                };
                *user
                    .last_access_token
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(token.to_owned());
                if deauthorized || rng.below(10) != 0 {
                    continue;
                }
                c.n.tokens_checked.fetch_add(1, SeqCst);
                match c.sim.token_info(token).await {
                    Ok(Some(info))
                        if info.status == "active"
                            && info.user_id.as_deref() == Some(user.zoom_id.as_str()) => {}
                    Ok(info) if !user.deauthorized() => {
                        c.n.dead_tokens.fetch_add(1, SeqCst);
                        let what = info.map_or("an unknown".to_owned(), |i| {
                            format!("a {} ({})", i.status, i.token_type)
                        });
                        c.odd(format!(
                            "access_token handed an authorised user {what} token"
                        ));
                        user.note(format!("{} access_token handed out {what} token", c.t()));
                    }
                    _ => {}
                }
            }
            Ok(a) if a.status == 503 => {
                c.n.token_busy.fetch_add(1, SeqCst);
            }
            Ok(a) if a.status == 409 && a.code() == "connection_disconnected" => {
                if deauthorized {
                    c.n.token_disconnected_deauthorized.fetch_add(1, SeqCst);
                } else {
                    c.n.token_disconnected_authorized.fetch_add(1, SeqCst);
                    if !user.seen_disconnected.swap(true, SeqCst) {
                        user.note(format!(
                            "{} {endpoint} via {}: 409 connection_disconnected ({})",
                            c.t(),
                            NAMES[slot],
                            a.json["error"].as_str().unwrap_or("")
                        ));
                    }
                }
            }
            Ok(a) if user.inactive.load(SeqCst) && (400..500).contains(&a.status) => {
                c.n.token_refused_inactive.fetch_add(1, SeqCst);
            }
            Ok(a) => {
                c.n.token_other.fetch_add(1, SeqCst);
                c.odd(format!("{endpoint}: {}{who}", a.short()));
            }
        }
    }
}

// ---- re-authorisations ---------------------------------------------------------

/// A kind of re-authorisation round, for `--rounds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RoundKind {
    /// One create from a new code.
    One,
    /// Two or three creates at once.
    Several,
    /// One create that fails after the exchange (scopes missing).
    Failing,
    /// Two or three at once, one of them failing.
    SeveralOneFailing,
    /// One create while the user is inactive at Zoom.
    Inactive,
}

impl RoundKind {
    const ALL: [RoundKind; 5] = [
        RoundKind::One,
        RoundKind::Several,
        RoundKind::Failing,
        RoundKind::SeveralOneFailing,
        RoundKind::Inactive,
    ];

    /// How often each kind comes up, relative to the others.
    fn weight(self) -> u64 {
        match self {
            RoundKind::One => 9,
            RoundKind::Several => 6,
            RoundKind::Failing | RoundKind::SeveralOneFailing => 2,
            RoundKind::Inactive => 1,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Round {
    /// One create from a new code.
    One,
    /// Two or three at once (a double-submitted callback, a retrying backend).
    Several(usize),
    /// One whose create fails after the exchange: scopes missing.
    Failing,
    /// Two or three at once, one of them failing.
    SeveralOneFailing(usize),
    /// One while the user is inactive at Zoom (fails after the exchange).
    Inactive,
}

async fn reauthorisations(
    c: Arc<Chaos>,
    mut rng: Rng,
    until: Instant,
    per_second: f64,
    kinds: Vec<RoundKind>,
) -> anyhow::Result<()> {
    let mut rounds = tokio::task::JoinSet::new();
    let total_weight: u64 = kinds.iter().map(|k| k.weight()).sum();
    if total_weight == 0 || per_second <= 0.0 {
        return Ok(());
    }
    let mean = Duration::from_secs_f64(1.0 / per_second.max(0.01));
    loop {
        let next = Instant::now() + mean.mul_f64(2.0 * rng.unit());
        if next >= until {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
        // A user no round or deauthorisation holds, not deauthorised.
        let mut picked = None;
        for _ in 0..20 {
            let user = c.users[rng.below(c.users.len() as u64) as usize].clone();
            if user.deauthorized() {
                continue;
            }
            if let Ok(turn) = user.turn.clone().try_lock_owned() {
                picked = Some((user, turn));
                break;
            }
        }
        let Some((user, turn)) = picked else { continue };
        let mut roll = rng.below(total_weight);
        let kind = kinds
            .iter()
            .copied()
            .find(|k| {
                let hit = roll < k.weight();
                roll = roll.saturating_sub(k.weight());
                hit
            })
            .unwrap_or(RoundKind::One);
        let round = match kind {
            RoundKind::One => Round::One,
            RoundKind::Several => Round::Several(2 + rng.below(2) as usize),
            RoundKind::Failing => Round::Failing,
            RoundKind::SeveralOneFailing => Round::SeveralOneFailing(2 + rng.below(2) as usize),
            RoundKind::Inactive => Round::Inactive,
        };
        let (c, seed) = (c.clone(), rng.next_u64());
        rounds.spawn(async move {
            let _turn = turn;
            reauthorise(&c, &user, round, Rng::new(seed)).await;
        });
        while let Some(done) = rounds.try_join_next() {
            done.context("re-authorisation round")?;
        }
    }
    while let Some(done) = rounds.join_next().await {
        done.context("re-authorisation round")?;
    }
    Ok(())
}

async fn reauthorise(c: &Arc<Chaos>, user: &User, round: Round, mut rng: Rng) {
    c.n.reauth_rounds.fetch_add(1, SeqCst);
    // Which creates (true: all scopes) and which answer each should get.
    let goods: Vec<bool> = match round {
        Round::One | Round::Inactive => vec![true],
        Round::Several(n) => vec![true; n],
        Round::Failing => vec![false],
        Round::SeveralOneFailing(n) => {
            let bad = rng.below(n as u64) as usize;
            (0..n).map(|i| i != bad).collect()
        }
    };
    match round {
        Round::Several(_) => c.n.concurrent_rounds.fetch_add(1, SeqCst),
        Round::SeveralOneFailing(_) => {
            c.n.concurrent_rounds.fetch_add(1, SeqCst);
            c.n.failing_rounds.fetch_add(1, SeqCst)
        }
        Round::Failing => c.n.failing_rounds.fetch_add(1, SeqCst),
        Round::Inactive => c.n.inactive_rounds.fetch_add(1, SeqCst),
        Round::One => 0,
    };
    let inactive = matches!(round, Round::Inactive);
    let several = goods.len() > 1;
    if inactive {
        user.inactive.store(true, SeqCst);
        if let Err(e) = c.sim.update_user(&user.zoom_id, &status(true)).await {
            c.odd(format!("simulator refused to make a user inactive: {e}"));
        }
    }
    let mut codes = Vec::new();
    for good in &goods {
        match c.sim.authorize(&authorize(&user.zoom_id, *good)).await {
            Ok(code) => codes.push((*good, code)),
            Err(e) => c.odd(format!("simulator refused an authorization: {e}")),
        }
    }
    // Concurrently, spread over both processes.
    let first = rng.below(2) as usize;
    let mut sent = tokio::task::JoinSet::new();
    for (i, (good, code)) in codes.into_iter().enumerate() {
        let c = c.clone();
        sent.spawn(async move {
            let mut waited = Duration::ZERO;
            let (ticket, base) = loop {
                if let Some(route) = c.create_route((first + i) % 2) {
                    break route;
                }
                if waited > Duration::from_secs(30) {
                    return (good, "-", Err("no process to send it to".to_owned()));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                waited += Duration::from_millis(20);
            };
            let answer = c
                .post(
                    &format!("{base}/api/v1/zoom_oauth_connections"),
                    Some(create_body(&c.app_id, &code)),
                )
                .await
                .map_err(|e| e.to_string());
            let name = NAMES[ticket.slot];
            drop(ticket);
            (good, name, answer)
        });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = sent.join_next().await {
        match done {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => c.odd(format!("a create task failed: {e}")),
        }
    }
    let mut summary = Vec::new();
    for (good, name, answer) in outcomes {
        c.n.creates.fetch_add(1, SeqCst);
        let kind = if inactive {
            "inactive user"
        } else if good {
            "good"
        } else {
            "scopes missing"
        };
        let shown = match &answer {
            Ok(a) if a.status == 201 => {
                let id = a.json["id"].as_str().unwrap_or("");
                if id == user.connection_id {
                    "201".to_owned()
                } else {
                    format!("201 with another connection {id}")
                }
            }
            Ok(a) => a.short(),
            Err(e) => format!("no answer ({e})"),
        };
        // Of creates racing for one user, those whose grant Zoom replaced before
        // zoomkeeper could read whose it was answer 409 authorization_superseded.
        let superseded =
            |a: &Answer| several && a.status == 409 && a.code() == "authorization_superseded";
        let expected = match (&answer, inactive, good) {
            (Ok(a), true, _) => a.status == 400 && a.code() == "zoom_user_not_active",
            (Ok(a), false, true) => {
                (a.status == 201 && a.json["id"].as_str() == Some(user.connection_id.as_str()))
                    || superseded(a)
            }
            (Ok(a), false, false) => {
                (a.status == 400 && a.code() == "missing_scopes") || superseded(a)
            }
            (Err(_), _, _) => false,
        };
        if expected {
            c.n.creates_as_expected.fetch_add(1, SeqCst);
        } else {
            c.n.creates_unexpected.fetch_add(1, SeqCst);
            let shown = if shown.starts_with("201 with another") {
                "201 with another connection id".to_owned()
            } else {
                shown.clone()
            };
            c.odd(format!("re-authorisation ({kind}) answered {shown}"));
        }
        summary.push(format!("{name}:{kind}→{shown}"));
    }
    if inactive {
        if let Err(e) = c.sim.update_user(&user.zoom_id, &status(false)).await {
            c.odd(format!("simulator refused to make a user active: {e}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        user.inactive.store(false, SeqCst);
    }
    user.note(format!(
        "{} re-authorisation {round:?}: {}",
        c.t(),
        summary.join(", ")
    ));
    // The user is still authorised: the connection must hand out a live token of
    // theirs now.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = String::new();
    while Instant::now() < deadline {
        let Some((slot, base)) = c.any_base(&mut rng) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let url = format!(
            "{base}/api/v1/zoom_oauth_connections/{}/access_token",
            user.connection_id
        );
        match c.post(&url, None).await {
            Ok(a) if a.status == 200 => {
                let token = a.json["token"].as_str().unwrap_or("");
                match c.sim.token_info(token).await {
                    Ok(Some(info))
                        if info.status == "active"
                            && info.user_id.as_deref() == Some(user.zoom_id.as_str()) =>
                    {
                        *user
                            .last_access_token
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) = Some(token.to_owned());
                        return;
                    }
                    Ok(info) => {
                        let what = info.map_or("unknown".to_owned(), |i| {
                            format!("{} (user {:?})", i.status, i.user_id)
                        });
                        c.lose(
                            user,
                            format!(
                                "{} right after re-authorisation {round:?} [{}], the connection handed out a {what} access token",
                                c.t(),
                                summary.join(", ")
                            ),
                        );
                        return;
                    }
                    Err(e) => last = format!("token lookup failed: {e}"),
                }
            }
            Ok(a) if a.status == 409 => {
                c.lose(
                    user,
                    format!(
                        "{} right after re-authorisation {round:?} [{}], access_token via {} answered 409 {}: {}",
                        c.t(),
                        summary.join(", "),
                        NAMES[slot],
                        a.code(),
                        a.json["error"].as_str().unwrap_or("")
                    ),
                );
                return;
            }
            Ok(a) => last = a.short(),
            Err(e) => last = format!("no answer ({e})"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Busy all along (a lease a killed process holds): the final check decides.
    user.note(format!(
        "{} no token within 15 s of the re-authorisation (last: {last})",
        c.t()
    ));
}

fn status(inactive: bool) -> zoom_sim::SimUserPatch {
    zoom_sim::SimUserPatch {
        status: Some(if inactive {
            zoom_sim::SimUserStatus::Inactive
        } else {
            zoom_sim::SimUserStatus::Active
        }),
        ..Default::default()
    }
}

// ---- deauthorisations ----------------------------------------------------------

async fn deauthorisations(
    c: Arc<Chaos>,
    mut rng: Rng,
    until: Instant,
    count: usize,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let every = until.saturating_duration_since(start) / (count as u32 + 1);
    for i in 1..=count {
        tokio::time::sleep_until((start + every * i as u32).into()).await;
        let mut user = None;
        for _ in 0..50 {
            let u = c.users[rng.below(c.users.len() as u64) as usize].clone();
            if !u.deauthorized() {
                user = Some(u);
                break;
            }
        }
        let Some(user) = user else { continue };
        // Not in the middle of a re-authorisation of the same user: its exchange
        // would authorise the app again.
        let _turn = user.turn.clone().lock_owned().await;
        let at = Utc::now();
        *user
            .deauthorized_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(at);
        match c.sim.deauthorize(&user.zoom_id, CLIENT_ID).await {
            Ok(()) => {
                c.n.deauths.fetch_add(1, SeqCst);
                user.note(format!("{} deauthorised the app at Zoom", c.t()));
            }
            Err(e) => {
                // The grant was already dead at Zoom, and not by this run's hand.
                *user
                    .deauthorized_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
                c.lose(
                    &user,
                    format!(
                        "{} Zoom refused a deauthorisation: the user's grant was already dead ({e})",
                        c.t()
                    ),
                );
            }
        }
    }
    Ok(())
}

// ---- kills ---------------------------------------------------------------------

async fn kill_and_restart(
    c: Arc<Chaos>,
    procs: Arc<tokio::sync::Mutex<[Option<Serve>; 2]>>,
    launcher: Arc<Launcher>,
    mut rng: Rng,
    until: Instant,
    mean_s: f64,
    base_faults: zoom_sim::SimFaults,
) -> anyhow::Result<Arc<Launcher>> {
    let hold_faults = zoom_sim::SimFaults {
        latency_ms: Some(HOLD.as_millis() as u64),
        paths: Some(vec!["/oauth/token".into()]),
        ..Default::default()
    };
    let latency = Duration::from_millis(base_faults.latency_ms.unwrap_or(0));
    loop {
        let wait = Duration::from_secs_f64(mean_s.max(1.0) * (0.5 + rng.unit()));
        if Instant::now() + wait + HOLD >= until {
            break;
        }
        tokio::time::sleep(wait).await;
        let v = rng.below(2) as usize;
        // 1. No create of the victim may be past its exchange at the kill.
        c.creates_paused[v].store(true, SeqCst);
        let drained = Instant::now() + Duration::from_secs(20);
        while c.creates_in_flight[v].load(SeqCst) > 0 && Instant::now() < drained {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if c.creates_in_flight[v].load(SeqCst) > 0 {
            c.creates_paused[v].store(false, SeqCst);
            c.n.kills_skipped.fetch_add(1, SeqCst);
            continue;
        }
        // 2. Zoom answers no token request that arrives from now on for `HOLD`; the
        // ones already there are answered within `latency`, then committed.
        c.sim.set_faults(&hold_faults).await?;
        let held = Instant::now();
        tokio::time::sleep(latency + COMMIT_ALLOWANCE).await;
        // 3. SIGKILL.
        c.bases.write().unwrap_or_else(|p| p.into_inner())[v] = None;
        {
            let mut procs = procs.lock().await;
            if let Some(mut p) = procs[v].take() {
                let _ = p.child.kill().await;
            }
        }
        let late = held.elapsed() >= HOLD;
        c.sim.set_faults(&base_faults).await?;
        c.n.kills.fetch_add(1, SeqCst);
        if late {
            c.n.kills_late.fetch_add(1, SeqCst);
        }
        c.kill_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!(
                "{} killed {} {:.0} ms into the hold{}",
                c.t(),
                NAMES[v],
                held.elapsed().as_secs_f64() * 1000.0,
                if late {
                    " (LATE: the hold had ended)"
                } else {
                    ""
                }
            ));
        // 4. Restart.
        let restarted = launcher.start(NAMES[v]).await?;
        let base = restarted.base.clone();
        procs.lock().await[v] = Some(restarted);
        c.bases.write().unwrap_or_else(|p| p.into_inner())[v] = Some(base);
        c.creates_paused[v].store(false, SeqCst);
    }
    Ok(launcher)
}

// ---- the checks ----------------------------------------------------------------

struct FinalCheck {
    authorised: usize,
    refreshed_ok: usize,
    deauthorised: usize,
    deauthorised_disconnected: usize,
    deauthorised_other: Vec<String>,
    slowest: Duration,
    /// Connections whose check took longer than `SLOW_CHECK`.
    slow: usize,
}

/// Every user still authorised gets an access token refreshed after `quiet_from`,
/// issued to them; every deauthorised one gets 409.
async fn final_check(c: &Arc<Chaos>, quiet_from: DateTime<Utc>, recovery: Duration) -> FinalCheck {
    let deadline = Instant::now() + recovery;
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for user in c.users.clone() {
        let (c, gate) = (c.clone(), gate.clone());
        tasks.spawn(async move {
            let _turn = gate.acquire_owned().await;
            let started = Instant::now();
            let verdict = check_one(&c, &user, quiet_from, deadline).await;
            (user, verdict, started.elapsed())
        });
    }
    let mut out = FinalCheck {
        authorised: 0,
        refreshed_ok: 0,
        deauthorised: 0,
        deauthorised_disconnected: 0,
        deauthorised_other: Vec::new(),
        slowest: Duration::ZERO,
        slow: 0,
    };
    while let Some(joined) = tasks.join_next().await {
        let Ok((user, verdict, took)) = joined else {
            continue;
        };
        out.slowest = out.slowest.max(took);
        out.slow += usize::from(took > SLOW_CHECK);
        if user.deauthorized() {
            out.deauthorised += 1;
            match verdict {
                Err(v) if v.starts_with("409 connection_disconnected") => {
                    out.deauthorised_disconnected += 1
                }
                Err(v) => out
                    .deauthorised_other
                    .push(format!("{}: {v}", user.connection_id)),
                Ok(()) => out
                    .deauthorised_other
                    .push(format!("{}: handed out a live token", user.connection_id)),
            }
        } else {
            out.authorised += 1;
            match verdict {
                Ok(()) => out.refreshed_ok += 1,
                Err(v) => c.lose(&user, format!("final check: {v}")),
            }
        }
    }
    out
}

async fn check_one(
    c: &Chaos,
    user: &User,
    quiet_from: DateTime<Utc>,
    deadline: Instant,
) -> Result<(), String> {
    let mut rng = Rng::new(user.index as u64 + 1);
    let mut last = String::from("nothing");
    loop {
        if Instant::now() >= deadline {
            return Err(format!(
                "no token before the recovery deadline (last answer: {last})"
            ));
        }
        let Some((slot, base)) = c.any_base(&mut rng) else {
            return Err("no process running".into());
        };
        let url = format!(
            "{base}/api/v1/zoom_oauth_connections/{}/access_token",
            user.connection_id
        );
        match c.post(&url, None).await {
            Ok(a) if a.status == 200 => {
                let token = a.json["token"].as_str().unwrap_or("");
                match c.sim.token_info(token).await {
                    Ok(Some(info)) => {
                        let mine = info.user_id.as_deref() == Some(user.zoom_id.as_str());
                        let fresh = info
                            .issued_at
                            .is_some_and(|t| t >= quiet_from - chrono::Duration::seconds(1));
                        if !mine || info.status != "active" {
                            return Err(format!(
                                "access_token via {} handed out a {} token (user {:?})",
                                NAMES[slot], info.status, info.user_id
                            ));
                        }
                        if fresh {
                            return Ok(());
                        }
                        last = "200 with a token issued before the quiet".into();
                    }
                    Ok(None) => return Err("a token Zoom never issued".into()),
                    Err(e) => last = format!("token lookup failed: {e}"),
                }
            }
            Ok(a) if a.status == 409 => {
                return Err(format!(
                    "{} via {}: {}",
                    a.short(),
                    NAMES[slot],
                    a.json["error"].as_str().unwrap_or("")
                ))
            }
            Ok(a) if matches!(a.status, 429 | 502 | 503) => last = a.short(),
            Ok(a) => return Err(format!("access_token via {}: {}", NAMES[slot], a.short())),
            Err(e) => last = format!("no answer ({e})"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every `disconnected` event of a user the run had not deauthorised by then.
async fn disconnections_while_authorised(c: &Arc<Chaos>) {
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for user in c.users.clone() {
        let (c, gate) = (c.clone(), gate.clone());
        tasks.spawn(async move {
            let _turn = gate.acquire_owned().await;
            let events = match all_events(&c, &user.connection_id).await {
                Ok(events) => events,
                Err(e) => {
                    c.odd(format!("reading a connection's events failed: {e}"));
                    return;
                }
            };
            let deauthorized_at = *user
                .deauthorized_at
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for e in events.iter().rev() {
                if e["kind"] != "disconnected" {
                    continue;
                }
                let at = e["created_at"]
                    .as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .map(|t| t.with_timezone(&Utc));
                let expected = match (deauthorized_at, at) {
                    (Some(d), Some(at)) => at >= d,
                    _ => false,
                };
                if !expected {
                    c.lose(
                        &user,
                        format!(
                            "logged `disconnected` at {} while authorised: {} {}",
                            e["created_at"].as_str().unwrap_or("?"),
                            e["message"].as_str().unwrap_or(""),
                            e["data"]
                        ),
                    );
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn all_events(c: &Chaos, id: &str) -> anyhow::Result<Vec<Value>> {
    let base = c.base(0).or_else(|| c.base(1)).context("a process")?;
    let mut url = format!("{base}/api/v1/zoom_oauth_connections/{id}/events?page_size=100");
    let mut out = Vec::new();
    for _ in 0..1000 {
        let a = c.get(&url).await?;
        if a.status != 200 {
            bail!("events answered {}", a.short());
        }
        out.extend(a.json["results"].as_array().cloned().unwrap_or_default());
        match a.json["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    Ok(out)
}

/// A lost user: the path they were lost through, then what the run saw of them
/// and what the servers logged.
async fn diagnose(c: &Chaos, user: &User, reasons: Vec<String>, dir: &Path) -> Lost {
    let mut out = vec![format!(
        "{} (Zoom user {}):",
        user.connection_id, user.zoom_id
    )];
    for r in &reasons {
        out.push(format!("    {r}"));
    }
    let mut grant_revoked = false;
    if let Some(base) = c.base(0).or_else(|| c.base(1)) {
        if let Ok(a) = c
            .get(&format!(
                "{base}/api/v1/zoom_oauth_connections/{}",
                user.connection_id
            ))
            .await
        {
            out.push(format!(
                "    now: state {}, connection_failure_data {}",
                a.json["state"].as_str().unwrap_or("?"),
                a.json["connection_failure_data"]
            ));
        }
    }
    let token = user
        .last_access_token
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(token) = token {
        if let Ok(Some(info)) = c.sim.token_info(&token).await {
            let dead = info.status == "revoked";
            grant_revoked = dead && !user.deauthorized();
            out.push(format!(
                "    at Zoom, the last access token seen is {}{}",
                info.status,
                match (dead, user.deauthorized()) {
                    (true, true) => " (the user removed the app)",
                    (true, false) =>
                        " (its grant is dead: revoked by zoomkeeper, since this run never revokes)",
                    _ => "",
                }
            ));
        }
    }
    if let Ok(events) = all_events(c, &user.connection_id).await {
        let interesting: Vec<String> = events
            .iter()
            .filter(|e| {
                e["kind"] != "token_refreshed"
                    && !e["kind"].as_str().unwrap_or("").starts_with("sync")
            })
            .take(8)
            .map(|e| {
                format!(
                    "{} {} {}",
                    e["created_at"].as_str().unwrap_or("?"),
                    e["kind"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .collect();
        out.push(format!(
            "    events (newest first, refreshes and syncs left out): {}",
            interesting.join(" | ")
        ));
    }
    for h in user
        .history
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        out.push(format!("    run: {h}"));
    }
    for line in server_log_lines(dir, &user.connection_id)
        .into_iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .take(8)
    {
        out.push(format!("    log: {line}"));
    }
    let any = |needle: &str| reasons.iter().any(|r| r.contains(needle));
    let path = if grant_revoked || any("handed out a revoked") {
        "zoomkeeper revoked the user's grant at Zoom (a re-authorisation whose create failed)"
    } else if any("refused a deauthorisation") {
        "the grant was already dead at Zoom when the user came to remove the app"
    } else if any("invalid_grant") || any("`disconnected`") {
        "Zoom refused the stored refresh token (invalid_grant) while the user's grant lives: an outdated refresh token was stored or used"
    } else if any("recovery deadline") {
        "no token within the recovery time (a lease left behind?)"
    } else {
        "other (see below)"
    };
    Lost {
        path,
        detail: out.join("\n"),
    }
}

struct Lost {
    path: &'static str,
    detail: String,
}

/// Lines of every `serve` log that mention `needle`.
fn server_log_lines(dir: &Path, needle: &str) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let name = f
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("?")
            .to_owned();
        if let Ok(text) = std::fs::read_to_string(&f) {
            out.extend(
                text.lines()
                    .filter(|l| l.contains(needle))
                    .map(|l| format!("[{name}] {l}")),
            );
        }
    }
    out
}

// ---- the report ----------------------------------------------------------------

/// What a chaos run saw; printed by [`run`].
pub struct Report {
    seed: u64,
    args_line: String,
    zoom_latency: Duration,
    ttl_s: u64,
    connected_in: Duration,
    n: Counts,
    odd: BTreeMap<String, u64>,
    kill_log: Vec<String>,
    final_check: FinalCheck,
    before: zoom_sim::SimStats,
    chaos_stats: zoom_sim::SimStats,
    stats: zoom_sim::SimStats,
    lost: Vec<Lost>,
}

impl Report {
    /// A counter of the run by name (`kills`, `reauth_rounds`, `deauths`,
    /// `token_requests`, `token_ok`, …); 0 for a name it does not keep.
    pub fn count(&self, name: &str) -> u64 {
        self.n.get(name)
    }

    /// Connections the run lost.
    pub fn lost(&self) -> usize {
        self.lost.len()
    }

    /// Refresh grants Zoom answered during the chaos.
    pub fn refresh_grants_during_chaos(&self) -> u64 {
        self.chaos_stats.refresh_grants - self.before.refresh_grants
    }

    /// Refresh tokens used after Zoom had replaced them, over the whole run.
    pub fn stale_refresh_token_uses(&self) -> u64 {
        self.stats.stale_refresh_token_uses
    }

    fn print(&self) {
        let n = &self.n;
        let f = &self.final_check;
        let s = &self.stats;
        println!("chaos: 2 `serve` processes on one PostgreSQL database, Zoom simulated");
        println!("  {}; seed {}", self.args_line, self.seed);
        println!(
            "  setup: {} users connected in {:.1} s; access tokens live {} s, so a token request refreshes once its token is {} s old; token keepers every {KEEPER_INTERVAL}, max age {KEEPER_MAX_AGE}",
            self.final_check.authorised + self.final_check.deauthorised,
            self.connected_in.as_secs_f64(),
            self.ttl_s,
            TTL_MARGIN_S
        );
        println!(
            "  token storm: {} requests ({} zak_token): {} ok, {} busy (503), {} to a process being killed, {} connection_disconnected for deauthorised users, {} for authorised users, {} refused while the user was inactive at Zoom, {} other; slowest answer {:.1} s",
            n.get("token_requests"),
            n.get("zak_requests"),
            n.get("token_ok"),
            n.get("token_busy"),
            n.get("token_no_process"),
            n.get("token_disconnected_deauthorized"),
            n.get("token_disconnected_authorized"),
            n.get("token_refused_inactive"),
            n.get("token_other"),
            n.get("slowest_token_ms") as f64 / 1000.0
        );
        println!(
            "  access tokens checked at Zoom: {}, of them not live or not the user's: {}",
            n.get("tokens_checked"),
            n.get("dead_tokens")
        );
        println!(
            "  re-authorisations: {} rounds ({} with 2-3 creates at once, {} with a create failing after the exchange for missing scopes, {} while the user was inactive), {} creates: {} answered as expected, {} not",
            n.get("reauth_rounds"),
            n.get("concurrent_rounds"),
            n.get("failing_rounds"),
            n.get("inactive_rounds"),
            n.get("creates"),
            n.get("creates_as_expected"),
            n.get("creates_unexpected")
        );
        println!("  deauthorisations: {}", n.get("deauths"));
        println!(
            "  kills: {} SIGKILL + restart ({} skipped: creates did not drain; {} late). Timing: creates to the victim drained, then Zoom's token endpoint held ({} ms of latency for new arrivals) and the kill sent {} ms (latency + commit allowance) later, so every refresh or exchange Zoom had answered was committed and the victim's held ones were abandoned: no kill lands between Zoom rotating a token and our commit, the one window Zoom's protocol leaves no way to recover from",
            n.get("kills"),
            n.get("kills_skipped"),
            n.get("kills_late"),
            HOLD.as_millis(),
            (self.zoom_latency + COMMIT_ALLOWANCE).as_millis()
        );
        for k in &self.kill_log {
            println!("    {k}");
        }
        println!(
            "  Zoom during the chaos: {} refresh grants, {} code exchanges, {} revocations, {} invalid_grant answers",
            self.chaos_stats.refresh_grants - self.before.refresh_grants,
            self.chaos_stats.authorization_code_grants - self.before.authorization_code_grants,
            self.chaos_stats.revocations - self.before.revocations,
            self.chaos_stats.invalid_grant_errors - self.before.invalid_grant_errors
        );
        println!(
            "  final check after {} s of quiet: {} of {} authorised users got a token refreshed after the quiet began (slowest {:.1} s, {} took over {} s); {} of {} deauthorised users disconnected{}",
            TTL_MARGIN_S + 1,
            f.refreshed_ok,
            f.authorised,
            f.slowest.as_secs_f64(),
            f.slow,
            SLOW_CHECK.as_secs(),
            f.deauthorised_disconnected,
            f.deauthorised,
            if f.deauthorised_other.is_empty() {
                String::new()
            } else {
                format!(" (others: {})", f.deauthorised_other.join("; "))
            }
        );
        println!(
            "  Zoom in all: {} refresh grants, {} code exchanges, {} revocations (this run revokes nothing itself), {} invalid_grant answers, {} calls",
            s.refresh_grants,
            s.authorization_code_grants,
            s.revocations,
            s.invalid_grant_errors,
            s.api_calls
        );
        if !self.odd.is_empty() {
            println!("  unexpected answers:");
            for (what, count) in &self.odd {
                println!("    {count} × {what}");
            }
        }
        if !self.lost.is_empty() {
            let mut paths: BTreeMap<&str, usize> = BTreeMap::new();
            for l in &self.lost {
                *paths.entry(l.path).or_default() += 1;
            }
            println!("  lost, by path:");
            for (path, count) in paths {
                println!("    {count} × {path}");
            }
            for l in self.lost.iter().take(SHOWN_LOST) {
                println!("  lost {}", l.detail);
            }
            if self.lost.len() > SHOWN_LOST {
                println!(
                    "  (and {} more lost connections)",
                    self.lost.len() - SHOWN_LOST
                );
            }
        }
        println!("connections lost: {}", self.lost.len());
        println!(
            "superseded refresh-token uses (refreshes that raced a re-authorisation at Zoom): {}",
            s.superseded_refresh_token_uses
        );
        println!("stale refresh-token uses: {}", s.stale_refresh_token_uses);
    }
}

// ---- processes -----------------------------------------------------------------

/// Starts `zoomkeeper serve` processes on the shared database and Zoom.
struct Launcher {
    target: ServeTarget,
    /// Where the logs go.
    dir: PathBuf,
    starts: AtomicUsize,
}

struct Serve {
    child: tokio::process::Child,
    base: String,
}

impl Launcher {
    /// Starts `serve` on a free port, logging to `{dir}/{name}-{n}.log`, and waits
    /// until it listens.
    async fn start(&self, name: &str) -> anyhow::Result<Serve> {
        let n = self.starts.fetch_add(1, SeqCst);
        let log = self.dir.join(format!("{name}-{n}.log"));
        let mut child = self
            .target
            .command()
            .args(["--rate-limit-per-second", "1000000"])
            .args(["--rate-limit-burst", "1000000"])
            .args(["--token-keeper-interval", KEEPER_INTERVAL])
            .args(["--token-refresh-max-age", KEEPER_MAX_AGE])
            .args(["--log-format", "text"])
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("starting zoomkeeper serve")?;
        let stderr = child.stderr.take().context("serve's stderr")?;
        let file = tokio::fs::File::create(&log)
            .await
            .with_context(|| format!("creating {}", log.display()))?;
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel::<String>();
        tokio::spawn(async move {
            let mut addr_tx = Some(addr_tx);
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            let mut file = file;
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("zoomkeeper listening") {
                    if let Some(addr) = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                    {
                        if let Some(tx) = addr_tx.take() {
                            let _ = tx.send(addr.to_owned());
                        }
                    }
                }
                let _ = file.write_all(line.as_bytes()).await;
                let _ = file.write_all(b"\n").await;
            }
            let _ = file.flush().await;
        });
        match tokio::time::timeout(Duration::from_secs(30), addr_rx).await {
            Ok(Ok(addr)) => Ok(Serve {
                child,
                base: format!("http://{addr}"),
            }),
            _ => {
                let _ = child.kill().await;
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                bail!(
                    "serve {name} did not start listening within 30 s:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            }
        }
    }
}
