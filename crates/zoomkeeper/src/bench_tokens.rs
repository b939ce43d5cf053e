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
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use keeper::config::{Config, Settings};
use keeper::server::Server;
use keeper::storage::{ConnectionRow, ConnectionState, NewConnectionEvent};
use keeper::vault::Slot;
use keeper::{connections, projects, Keeper};
use secrecy::ExposeSecret;

#[derive(Args)]
pub struct TokensArgs {
    /// Requests to time per endpoint and latency (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Connections stored for the memory measurement (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    connections: usize,
    /// Only SQLite, even when PostgreSQL binaries are present.
    #[arg(long)]
    sqlite_only: bool,
}

const CLIENT_ID: &str = "bench-client";
const CLIENT_SECRET: &str = "bench-secret";
const REDIRECT_URI: &str = "https://bots.example.com/zoom/callback";

pub async fn run(args: TokensArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a scratch directory")?;
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    bench_backend("sqlite", &sqlite_url, dir.path(), &args).await?;
    if !args.sqlite_only {
        match testkit::pg_cluster::shared().await? {
            Some(cluster) => {
                let url = cluster.create_database().await?;
                bench_backend("postgres", &url, dir.path(), &args).await?;
            }
            None => println!("postgres: skipped (no PostgreSQL binaries found)"),
        }
    }
    Ok(())
}

async fn bench_backend(
    backend: &str,
    database_url: &str,
    dir: &Path,
    args: &TokensArgs,
) -> anyhow::Result<()> {
    let sim = zoom_sim::Simulator::start().await?;
    let control = sim.control();
    control
        .create_app(&zoom_sim::SimApp {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            ..Default::default()
        })
        .await?;
    let master_key_file = dir.join(format!("{backend}.key"));
    let config = Config::resolve(Settings {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.to_owned()),
        database_url: Some(database_url.to_owned()),
        master_key_file: Some(master_key_file.clone()),
        zoom_oauth_url: Some(sim.url()),
        zoom_api_url: Some(sim.url()),
        // The bench measures the token path, not the limiter.
        rate_limit_per_second: Some(1e9),
        rate_limit_burst: Some(u32::MAX),
        ..Settings::default()
    })?;
    let keeper = Arc::new(Keeper::open(config).await?);
    let project = projects::create(&keeper, "bench").await?;
    let key = projects::create_api_key(&keeper, &project, "bench").await?;
    let server = Server::bind(keeper.clone()).await?;
    let base = server.public_url().to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::new();
    let auth = format!("Token {}", key.expose_secret());
    let app: serde_json::Value = http
        .post(format!("{base}/api/v1/zoom_oauth_apps"))
        .header("authorization", &auth)
        .json(&serde_json::json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let app_id = app["id"].as_str().context("app id")?.to_owned();
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
            "zoom_oauth_app_id": app_id,
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
    let direct_zak_url = format!("{}/v2/users/me/zak", sim.url());

    let n = args.requests.max(1);
    let c = args.concurrency.max(1);
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
        println!("{backend}, Zoom latency {latency_ms} ms, {n} requests, concurrency {c}:");
        println!(
            "  access_token (cached): p50 {:.3} ms, p99 {:.3} ms = server overhead (no Zoom call); Zoom calls per token {:.3}",
            ms(cached.p50),
            ms(cached.p99),
            calls(&before, &between)
        );
        println!(
            "  zak_token: p50 {:.3} ms, p99 {:.3} ms; the same Zoom call made directly: p50 {:.3} ms, p99 {:.3} ms",
            ms(zak.p50),
            ms(zak.p99),
            ms(baseline.p50),
            ms(baseline.p99)
        );
        println!(
            "  zak_token server overhead: p50 {:.3} ms, p99 {:.3} ms; Zoom calls per token {:.3}",
            ms(zak.p50.saturating_sub(baseline.p50)),
            ms(zak.p99.saturating_sub(baseline.p99)),
            calls(&between, &after)
        );
    }
    control.set_faults(&zoom_sim::SimFaults::default()).await?;
    let _ = stop.send(());
    serving.await.context("server task")??;

    if args.connections > 0 {
        let app_row = keeper
            .store
            .get_app(&project.id, &app_id)
            .await?
            .context("the bench app")?;
        let settings = ServeSettings {
            database_url,
            data_dir: dir,
            master_key_file: &master_key_file,
            zoom_url: &sim.url(),
        };
        let empty = idle_rss(&settings).await?;
        let started = Instant::now();
        store_connections(&keeper, &project.id, &app_row.id, args.connections).await?;
        let inserted_in = started.elapsed();
        let full = idle_rss(&settings).await?;
        println!(
            "{backend}: idle `serve` VmRSS {:.1} MB with {} connections stored (stored in {:.1} s); {:.1} MB with 1",
            full as f64 / 1024.0,
            args.connections,
            inserted_in.as_secs_f64(),
            empty as f64 / 1024.0
        );
    }
    Ok(())
}

/// A request to time: method, URL and Authorization header.
#[derive(Clone)]
struct Call {
    method: reqwest::Method,
    url: String,
    auth: String,
}

impl Call {
    fn new(method: reqwest::Method, url: &str, auth: &str) -> Call {
        Call {
            method,
            url: url.to_owned(),
            auth: auth.to_owned(),
        }
    }
}

struct Percentiles {
    p50: Duration,
    p99: Duration,
}

async fn timed(
    http: &reqwest::Client,
    call: &Call,
    total: usize,
    concurrency: usize,
) -> anyhow::Result<Percentiles> {
    let mut tasks = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let share = total / concurrency + usize::from(worker < total % concurrency);
        let (http, call) = (http.clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(share);
            for _ in 0..share {
                let t = Instant::now();
                let resp = http
                    .request(call.method.clone(), &call.url)
                    .header("authorization", &call.auth)
                    .send()
                    .await?;
                let status = resp.status();
                resp.bytes().await?;
                anyhow::ensure!(status.is_success(), "{} answered {status}", call.url);
                out.push(t.elapsed());
            }
            anyhow::Ok(out)
        }));
    }
    let mut all = Vec::with_capacity(total);
    for task in tasks {
        all.extend(task.await.context("bench task")??);
    }
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p).round() as usize];
    Ok(Percentiles {
        p50: pct(0.50),
        p99: pct(0.99),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `n` connected connections of one app, as the connections API would store them:
/// sealed refresh and access tokens, a refresh due in a month, a `created` event.
async fn store_connections(
    keeper: &Arc<Keeper>,
    project_id: &str,
    app_id: &str,
    n: usize,
) -> anyhow::Result<()> {
    const IN_FLIGHT: usize = 16;
    let gate = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let now = keeper.store.now().await?;
    for i in 0..n {
        let permit = gate.clone().acquire_owned().await?;
        let (keeper, project_id, app_id) =
            (keeper.clone(), project_id.to_owned(), app_id.to_owned());
        tasks.spawn(async move {
            let _permit = permit;
            let id = keeper::ids::IdKind::Connection.generate();
            let slot = |column| Slot {
                table: connections::TABLE,
                column,
                row_id: &id,
            };
            // Zoom's tokens are JWTs of several hundred bytes.
            let refresh = keeper.vault.seal_str(
                slot(connections::REFRESH_TOKEN_COLUMN),
                &format!("bench-refresh-{i:0>600}"),
            );
            let access = keeper.vault.seal_str(
                slot(connections::ACCESS_TOKEN_COLUMN),
                &format!("bench-access-{i:0>600}"),
            );
            let row = ConnectionRow {
                id: id.clone(),
                project_id,
                app_id,
                user_id: format!("bench-user-{i}"),
                account_id: format!("bench-account-{}", i / 50),
                email: Some(format!("user{i}@bench.example.com")),
                pmi: Some(format!("{}", 7_000_000_000u64 + i as u64)),
                personal_meeting_url: None,
                state: ConnectionState::Connected,
                connection_failure_data: None,
                metadata: None,
                deduplication_key: None,
                is_local_recording_token_supported: true,
                is_onbehalf_token_supported: false,
                scopes: zoom_sim::DEFAULT_SCOPES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                refresh_token: Some(refresh),
                access_token: Some(access),
                access_token_expires_at: Some(now + Duration::from_secs(3599)),
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
            keeper.store.insert_connection(&row, &event).await
        });
        while let Some(done) = tasks.try_join_next() {
            done.context("insert task")??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.context("insert task")??;
    }
    Ok(())
}

struct ServeSettings<'a> {
    database_url: &'a str,
    data_dir: &'a Path,
    master_key_file: &'a Path,
    zoom_url: &'a str,
}

/// Starts `zoomkeeper serve` on the database, waits until it answers and has sat
/// idle for a few seconds (the token keeper has run), and returns its VmRSS in KiB.
async fn idle_rss(s: &ServeSettings<'_>) -> anyhow::Result<u64> {
    let exe = std::env::current_exe().context("this program's path")?;
    let mut command = tokio::process::Command::new(exe);
    for (name, _) in std::env::vars() {
        if name.starts_with("ZOOMKEEPER_") {
            command.env_remove(name);
        }
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let mut child = command
        .arg("--database-url")
        .arg(s.database_url)
        .arg("--data-dir")
        .arg(s.data_dir)
        .arg("--master-key-file")
        .arg(s.master_key_file)
        .arg("--zoom-oauth-url")
        .arg(s.zoom_url)
        .arg("--zoom-api-url")
        .arg(s.zoom_url)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
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
    tokio::time::sleep(Duration::from_secs(12)).await;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
    let _ = child.kill().await;
    let status = status.context("reading /proc/<pid>/status (Linux only)")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc/<pid>/status")
}
