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
//!
//! and counts Zoom calls per token from the simulator's counters. Then it stores
//! `--connections` connection rows (sealed tokens, through the `Store` trait the
//! service itself writes with), starts `zoomkeeper serve` on that database as a
//! child process, waits for it to be idle and reads its VmRSS from /proc.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;

use crate::measure::{ms, timed, Call, Latencies};
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

#[derive(Debug)]
pub struct TokensRound {
    pub zoom_latency_ms: u64,
    pub cached: Latencies,
    pub zak: Latencies,
    pub direct_zak: Latencies,
    pub zoom_calls_per_cached_token: f64,
    pub zoom_calls_per_zak_token: f64,
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
    let connection: serde_json::Value = http
        .post(format!("{base}/api/v1/zoom_oauth_connections"))
        .header("authorization", &auth)
        .json(&serde_json::json!({
            "zoom_oauth_app_id": app.id,
            "authorization_code": code,
            "redirect_uri": REDIRECT_URI,
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = connection["id"].as_str().context("connection id")?;
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

        let before = control.stats().await?;
        let cached = timed(&http, &post(&access_url), n, c).await?;
        let between = control.stats().await?;
        let zak = timed(&http, &post(&zak_url), n, c).await?;
        let after = control.stats().await?;
        let baseline = timed(&http, &direct, n, c).await?;

        let calls = |from: &zoom_sim::SimStats, to: &zoom_sim::SimStats| {
            (to.api_calls - from.api_calls) as f64 / n as f64
        };
        if after.refresh_grants != before.refresh_grants {
            bail!("a refresh happened during the timed runs; the numbers would mix paths");
        }
        let round = TokensRound {
            zoom_latency_ms: latency_ms,
            zoom_calls_per_cached_token: calls(&before, &between),
            zoom_calls_per_zak_token: calls(&between, &after),
            cached,
            zak,
            direct_zak: baseline,
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
    }
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
