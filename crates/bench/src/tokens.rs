//! `zoomkeeper bench tokens`: the token path a joining bot takes, and idle memory
//! with many connections stored (DESIGN.md §10).
//!
//! For each database (SQLite, and PostgreSQL when a throwaway cluster can be
//! started) it runs the server in this process with the Zoom simulator, connects one
//! simulated user through the API, then, at 0 ms and at 50 ms of injected Zoom
//! latency, times over loopback:
//! - `POST …/access_token` with a cached token: no Zoom call, so the whole request
//!   is server overhead;
//! - `POST …/zak_token`, which makes one Zoom call: server overhead is its latency
//!   less that of the same Zoom call made directly (same client, same latency), per
//!   percentile;
//! - Attendee's `zoom_tokens` callback, as Attendee sends it (its body, its
//!   `X-Webhook-Signature` over the canonical form), for a meeting the connection
//!   hosts (created in the simulator and indexed by a meeting sync round): it mints
//!   the local recording token, so its server overhead is its latency less that of
//!   `GET /v2/meetings/{m}/jointoken/local_recording` made directly;
//! - Recall's ZAK callback, `GET …/recall/zak?user_id=…` signed Standard Webhooks
//!   style with a new `webhook-id` each time: server overhead against the direct
//!   ZAK call, as for `zak_token`;
//!
//! and counts Zoom calls per token and per callback from the simulator's counters. Then it stores
//! `--connections` connection rows (sealed tokens, through the `Store` trait the
//! service itself writes with), starts `zoomkeeper serve` on that database as a
//! child process, waits for it to be idle and reads its VmRSS from /proc.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use keeper::core::signing;

use crate::measure::{ms, timed, timed_each, Call, Latencies};
use crate::setup::{on_each_database, Backend, ServeTarget, Setup, CLIENT_ID, REDIRECT_URI};

#[derive(Args, Debug, Clone)]
pub struct TokensArgs {
    /// Requests to time per endpoint and latency (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Connections stored for the memory measurement (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    pub connections: usize,
    /// How long `serve` sits idle (its token keeper has run) before its memory is read.
    #[arg(long, default_value_t = 12)]
    pub idle_seconds: u64,
    /// Only SQLite, even when PostgreSQL binaries are present.
    #[arg(long)]
    pub sqlite_only: bool,
}

/// One database's run.
#[derive(Debug)]
pub struct TokensReport {
    pub backend: Backend,
    /// One per injected Zoom latency (0 and 50 ms).
    pub rounds: Vec<TokensRound>,
    /// Idle `serve` VmRSS in KiB with one connection, then with `--connections`
    /// (none when `--connections 0`).
    pub idle_rss_kib: Option<(u64, u64)>,
    /// Connections of the project once the memory measurement stored its own.
    pub connections_stored: usize,
}

/// The Attendee bot platform's secret: bytes 0..31, base64 as Attendee shows it.
const ATTENDEE_SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The Recall bot platform's secret (the Standard Webhooks specification's example).
const RECALL_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Debug)]
pub struct TokensRound {
    pub zoom_latency_ms: u64,
    pub cached: Latencies,
    pub zak: Latencies,
    pub direct_zak: Latencies,
    pub zoom_calls_per_cached_token: f64,
    pub zoom_calls_per_zak_token: f64,
    /// Attendee callbacks answered 200 with a local recording token (any other
    /// answer fails the bench).
    pub attendee: Latencies,
    /// The Zoom call the Attendee callback makes, made directly.
    pub direct_local_recording: Latencies,
    /// Recall ZAK callbacks answered 200 with a token (any other answer fails the
    /// bench); its baseline is `direct_zak`.
    pub recall_zak: Latencies,
    pub zoom_calls_per_attendee_callback: f64,
    pub zoom_calls_per_recall_zak_callback: f64,
}

pub async fn run(args: TokensArgs, zoomkeeper: &Path) -> anyhow::Result<Vec<TokensReport>> {
    let args = &args;
    on_each_database(args.sqlite_only, |backend, url, dir| async move {
        bench_backend(backend, &url, &dir, args, zoomkeeper).await
    })
    .await
}

async fn bench_backend(
    backend: Backend,
    database_url: &str,
    dir: &Path,
    args: &TokensArgs,
    zoomkeeper: &Path,
) -> anyhow::Result<TokensReport> {
    let setup = Setup::start(backend, database_url, dir).await?;
    let control = setup.sim.control();
    let app = setup.create_app(None).await?;
    let auth = setup.authorization().await?;
    let serving = setup.serve().await?;
    let base = &serving.base;
    let http = reqwest::Client::new();
    let user = control.create_user(&zoom_sim::SimUser::default()).await?;
    let code = control
        .authorize(&zoom_sim::SimAuthorize {
            client_id: CLIENT_ID.into(),
            user_id: user.id.clone(),
            redirect_uri: REDIRECT_URI.into(),
            ..Default::default()
        })
        .await?;
    let id = &serving.connect(&auth, &app.id, &code).await?;
    let access_url = format!("{base}/api/v1/zoom_oauth_connections/{id}/access_token");
    let zak_url = format!("{base}/api/v1/zoom_oauth_connections/{id}/zak_token");
    // The direct Zoom call zak_token makes, for the baseline.
    let access: serde_json::Value = http
        .post(&access_url)
        .header("authorization", &auth)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let zoom_auth = format!(
        "Bearer {}",
        access["token"].as_str().context("access token")?
    );
    let direct_zak_url = format!("{}/v2/users/me/zak", setup.sim.url());

    // A meeting the connection hosts, indexed as zoomkeeper indexes meetings.
    let meeting = control
        .create_meeting(&user.id, &zoom_sim::SimMeeting::default())
        .await?
        .id;
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    keeper::meeting_sync::run_once(&setup.keeper, &stopping).await?;
    let direct_local_recording_url = format!(
        "{}/v2/meetings/{meeting}/jointoken/local_recording?bypass_waiting_room=true",
        setup.sim.url()
    );
    let create_platform = |body: serde_json::Value| {
        let request = http
            .post(format!("{base}/api/v1/bot_platforms"))
            .header("authorization", &auth)
            .json(&body);
        async move {
            let platform: serde_json::Value =
                request.send().await?.error_for_status()?.json().await?;
            anyhow::Ok(platform)
        }
    };
    let attendee = create_platform(serde_json::json!({
        "platform": "attendee",
        "verification_secret": ATTENDEE_SECRET,
    }))
    .await?;
    let recall = create_platform(serde_json::json!({
        "platform": "recall",
        "verification_secret": RECALL_SECRET,
    }))
    .await?;
    let zoom_tokens_url = attendee["urls"]["zoom_tokens_url"]
        .as_str()
        .context("Attendee's zoom_tokens_url")?
        .to_owned();
    let recall_zak_url = format!(
        "{}?user_id={}",
        recall["urls"]["zak_url"]
            .as_str()
            .context("Recall's zak_url")?,
        user.id
    );
    // The body as Attendee's HTTP library writes it (Python's default `json.dumps`),
    // signed over the canonical form, as Attendee signs it.
    let attendee_body = format!(
        r#"{{"bot_id": "bot_bench", "bot_metadata": null, "callback_type": "zoom_tokens", "meeting_url": "https://zoom.us/j/{meeting}"}}"#
    );
    let attendee_key: Vec<u8> = (0u8..32).collect();
    let attendee_signature = signing::hmac_base64(
        &attendee_key,
        &[signing::python_canonical_json(&attendee_body)?.as_bytes()],
    );
    let recall_key =
        signing::standard_webhooks_key(RECALL_SECRET).context("the Recall secret's key")?;
    // Recall answers each `webhook-id` once: a new one per request, every round.
    let message_ids = Arc::new(AtomicU64::new(0));

    let n = args.requests.max(1);
    let c = args.concurrency.max(1);
    let mut rounds = Vec::new();
    for latency_ms in [0u64, 50] {
        control
            .set_faults(&zoom_sim::SimFaults {
                latency_ms: Some(latency_ms),
                ..Default::default()
            })
            .await?;
        let post = |url: &str| Call::new(reqwest::Method::POST, url, &auth);
        // Warm-up: connections, caches, prepared statements.
        timed(&http, &post(&access_url), n / 10 + 1, c).await?;
        timed(&http, &post(&zak_url), n / 10 + 1, c).await?;
        let direct = Call::new(reqwest::Method::GET, &direct_zak_url, &zoom_auth);
        timed(&http, &direct, n / 10 + 1, c).await?;
        let attendee_callback = || {
            let (http, url) = (http.clone(), zoom_tokens_url.clone());
            let (body, signature) = (attendee_body.clone(), attendee_signature.clone());
            let build = move || {
                http.post(&url)
                    .header("content-type", "application/json")
                    .header("user-agent", "Attendee-Callback/1.0")
                    .header("X-Webhook-Signature", &signature)
                    .body(body.clone())
            };
            (build, check_attendee_answer)
        };
        let recall_callback = || {
            let (http, url, key) = (http.clone(), recall_zak_url.clone(), recall_key.clone());
            let ids = message_ids.clone();
            let build = move || {
                let id = format!("msg_bench_{}", ids.fetch_add(1, Ordering::Relaxed));
                let timestamp = chrono::Utc::now().timestamp().to_string();
                let signature =
                    signing::hmac_base64(&key, &[id.as_bytes(), b".", timestamp.as_bytes(), b"."]);
                http.get(&url)
                    .header("webhook-id", id)
                    .header("webhook-timestamp", timestamp)
                    .header("webhook-signature", format!("v1,{signature}"))
            };
            (build, check_recall_answer)
        };
        let (build, check) = attendee_callback();
        timed_each(n / 10 + 1, c, build, check).await?;
        let (build, check) = recall_callback();
        timed_each(n / 10 + 1, c, build, check).await?;
        let direct_lrt = Call::new(
            reqwest::Method::GET,
            &direct_local_recording_url,
            &zoom_auth,
        );
        timed(&http, &direct_lrt, n / 10 + 1, c).await?;

        let before = control.stats().await?;
        let cached = timed(&http, &post(&access_url), n, c).await?;
        let between = control.stats().await?;
        let zak = timed(&http, &post(&zak_url), n, c).await?;
        let after_zak = control.stats().await?;
        let (build, check) = attendee_callback();
        let attendee = timed_each(n, c, build, check).await?;
        let after_attendee = control.stats().await?;
        let (build, check) = recall_callback();
        let recall_zak = timed_each(n, c, build, check).await?;
        let after = control.stats().await?;
        let baseline = timed(&http, &direct, n, c).await?;
        let direct_local_recording = timed(&http, &direct_lrt, n, c).await?;

        let calls = |from: &zoom_sim::SimStats, to: &zoom_sim::SimStats| {
            (to.api_calls - from.api_calls) as f64 / n as f64
        };
        if after.refresh_grants != before.refresh_grants {
            bail!("a refresh happened during the timed runs; the numbers would mix paths");
        }
        let round = TokensRound {
            zoom_latency_ms: latency_ms,
            zoom_calls_per_cached_token: calls(&before, &between),
            zoom_calls_per_zak_token: calls(&between, &after_zak),
            zoom_calls_per_attendee_callback: calls(&after_zak, &after_attendee),
            zoom_calls_per_recall_zak_callback: calls(&after_attendee, &after),
            cached,
            zak,
            direct_zak: baseline,
            attendee,
            direct_local_recording,
            recall_zak,
        };
        round.print(backend, n, c);
        rounds.push(round);
    }
    control.set_faults(&zoom_sim::SimFaults::default()).await?;
    serving.stop().await?;

    let mut idle_rss_kib = None;
    if args.connections > 0 {
        let target = setup.serve_target(zoomkeeper);
        let idle = Duration::from_secs(args.idle_seconds);
        let empty = idle_rss(&target, idle).await?;
        let started = Instant::now();
        setup.store_connections(&app, args.connections).await?;
        let inserted_in = started.elapsed();
        let full = idle_rss(&target, idle).await?;
        println!(
            "{backend}: idle `serve` VmRSS {:.1} MB with {} connections stored (stored in {:.1} s); {:.1} MB with 1",
            full as f64 / 1024.0,
            args.connections,
            inserted_in.as_secs_f64(),
            empty as f64 / 1024.0
        );
        idle_rss_kib = Some((empty, full));
    }
    let connections_stored = setup
        .keeper
        .store
        .get_app(&setup.project_id, &app.id)
        .await?
        .context("the bench app")?
        .connection_count as usize;
    Ok(TokensReport {
        backend,
        rounds,
        idle_rss_kib,
        connections_stored,
    })
}

impl TokensRound {
    fn print(&self, backend: Backend, n: usize, c: usize) {
        let (cached, zak, baseline) = (&self.cached, &self.zak, &self.direct_zak);
        println!(
            "{backend}, Zoom latency {} ms, {n} requests, concurrency {c}:",
            self.zoom_latency_ms
        );
        println!(
            "  access_token (cached): p50 {:.3} ms, p99 {:.3} ms = server overhead (no Zoom call); Zoom calls per token {:.3}",
            ms(cached.p50()),
            ms(cached.p99()),
            self.zoom_calls_per_cached_token
        );
        println!(
            "  zak_token: p50 {:.3} ms, p99 {:.3} ms; the same Zoom call made directly: p50 {:.3} ms, p99 {:.3} ms",
            ms(zak.p50()),
            ms(zak.p99()),
            ms(baseline.p50()),
            ms(baseline.p99())
        );
        println!(
            "  zak_token server overhead: p50 {:.3} ms, p99 {:.3} ms; Zoom calls per token {:.3}",
            ms(zak.p50().saturating_sub(baseline.p50())),
            ms(zak.p99().saturating_sub(baseline.p99())),
            self.zoom_calls_per_zak_token
        );
        let (attendee, lrt) = (&self.attendee, &self.direct_local_recording);
        println!(
            "  Attendee zoom_tokens callback: p50 {:.3} ms, p99 {:.3} ms; its Zoom call (local recording token) made directly: p50 {:.3} ms, p99 {:.3} ms",
            ms(attendee.p50()),
            ms(attendee.p99()),
            ms(lrt.p50()),
            ms(lrt.p99())
        );
        println!(
            "  Attendee callback server overhead (signature verification included): p50 {:.3} ms, p99 {:.3} ms; Zoom calls per callback {:.3}",
            ms(attendee.p50().saturating_sub(lrt.p50())),
            ms(attendee.p99().saturating_sub(lrt.p99())),
            self.zoom_calls_per_attendee_callback
        );
        let recall = &self.recall_zak;
        println!(
            "  Recall ZAK callback: p50 {:.3} ms, p99 {:.3} ms; server overhead against the direct ZAK call (signature verification included): p50 {:.3} ms, p99 {:.3} ms; Zoom calls per callback {:.3}",
            ms(recall.p50()),
            ms(recall.p99()),
            ms(recall.p50().saturating_sub(baseline.p50())),
            ms(recall.p99().saturating_sub(baseline.p99())),
            self.zoom_calls_per_recall_zak_callback
        );
    }
}

/// An Attendee callback's answer: 200 with the local recording token. A refusal's
/// reason, or the answer's `problems`, are shown; never a token.
fn check_attendee_answer(status: reqwest::StatusCode, body: &[u8]) -> anyhow::Result<()> {
    if status != reqwest::StatusCode::OK {
        bail!(
            "the Attendee callback answered {status}: {}",
            String::from_utf8_lossy(body)
        );
    }
    let answer: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    if !answer["app_privilege_token"].is_string() {
        bail!(
            "the Attendee callback answered no local recording token; problems: {}",
            answer["problems"]
        );
    }
    Ok(())
}

/// A Recall ZAK callback's answer: 200 with the token as text.
fn check_recall_answer(status: reqwest::StatusCode, body: &[u8]) -> anyhow::Result<()> {
    if status != reqwest::StatusCode::OK || body.is_empty() {
        bail!(
            "the Recall ZAK callback answered {status} without a token: {}",
            String::from_utf8_lossy(body)
        );
    }
    Ok(())
}

/// Starts `zoomkeeper serve` on the database, waits until it answers and has sat
/// idle for `idle` (the token keeper has run), and returns its VmRSS in KiB.
async fn idle_rss(target: &ServeTarget, idle: Duration) -> anyhow::Result<u64> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let mut child = target
        .command()
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting zoomkeeper serve")?;
    let pid = child.id().context("serve's pid")?;
    let http = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(&ready).send().await {
            if r.status().is_success() {
                break;
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill().await;
            bail!("serve did not become ready within a minute");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(idle).await;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
    let _ = child.kill().await;
    let status = status.context("reading /proc/<pid>/status (Linux only)")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc/<pid>/status")
}
