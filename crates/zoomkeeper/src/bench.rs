//! `zoomkeeper bench`: measurements on this machine, printed as plain text.
//!
//! `bench api` starts the real server in this process on a fresh database (SQLite,
//! and PostgreSQL when a throwaway cluster can be started) with the Zoom simulator,
//! creates a project, a key and an app, then times authenticated
//! `GET /api/v1/zoom_oauth_apps/{id}` round trips over loopback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Subcommand;
use keeper::config::{Config, Settings};
use keeper::server::Server;
use keeper::{projects, Keeper};
use secrecy::ExposeSecret;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Authenticated GET of one app over loopback.
    Api {
        /// Requests to time (after a warm-up of a tenth as many).
        #[arg(long, default_value_t = 5000)]
        requests: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Only SQLite, even when PostgreSQL binaries are present.
        #[arg(long)]
        sqlite_only: bool,
    },
    /// Token requests for a joining bot: cached access_token and zak_token, Zoom
    /// calls per token, and idle memory with 100,000 connections.
    Tokens(crate::bench_tokens::TokensArgs),
    /// Outgoing webhook deliveries per second to a local receiver, 1,000 pending.
    Deliveries(crate::bench_deliveries::DeliveriesArgs),
    /// Zoom webhook ingress: signed `meeting.created` events per second over loopback.
    Webhooks(crate::bench_webhooks::WebhooksArgs),
    /// Meeting → host lookups (the join-token path) with 1,000,000 indexed meetings.
    Lookup(crate::bench_webhooks::LookupArgs),
    /// Token storms, re-authorisations, deauthorisations and kills against two
    /// `serve` processes on PostgreSQL; prints connections lost and stale
    /// refresh-token uses, and fails unless both are 0.
    Chaos(crate::bench_chaos::ChaosArgs),
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Tokens(args) => crate::bench_tokens::run(args).await,
        BenchCommand::Deliveries(args) => crate::bench_deliveries::run(args).await,
        BenchCommand::Webhooks(args) => crate::bench_webhooks::run_webhooks(args).await,
        BenchCommand::Lookup(args) => crate::bench_webhooks::run_lookup(args).await,
        BenchCommand::Chaos(args) => crate::bench_chaos::run(args).await,
        BenchCommand::Api {
            requests,
            concurrency,
            sqlite_only,
        } => {
            let dir = tempfile::tempdir().context("creating a scratch directory")?;
            let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
            bench_api("sqlite", &sqlite_url, dir.path(), requests, concurrency).await?;
            if !sqlite_only {
                match testkit::pg_cluster::shared().await? {
                    Some(cluster) => {
                        let url = cluster.create_database().await?;
                        bench_api("postgres", &url, dir.path(), requests, concurrency).await?;
                    }
                    None => println!("postgres: skipped (no PostgreSQL binaries found)"),
                }
            }
            Ok(())
        }
    }
}

async fn bench_api(
    backend: &str,
    database_url: &str,
    dir: &std::path::Path,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let sim = zoom_sim::Simulator::start().await?;
    sim.control()
        .create_app(&zoom_sim::SimApp {
            client_id: "bench-client".into(),
            client_secret: "bench-secret".into(),
            ..Default::default()
        })
        .await?;
    let config = Config::resolve(Settings {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.to_owned()),
        database_url: Some(database_url.to_owned()),
        master_key_file: Some(dir.join(format!("{backend}.key"))),
        zoom_oauth_url: Some(sim.url()),
        zoom_api_url: Some(sim.url()),
        // The bench measures the request path, not the limiter.
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
    let created: serde_json::Value = http
        .post(format!("{base}/api/v1/zoom_oauth_apps"))
        .header("authorization", &auth)
        .json(&serde_json::json!({"client_id": "bench-client", "client_secret": "bench-secret"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = created["id"]
        .as_str()
        .context("app id in the create response")?;
    let url = format!("{base}/api/v1/zoom_oauth_apps/{id}");

    let concurrency = concurrency.max(1);
    // Warm-up: connections, caches, prepared statements.
    timed_requests(&http, &url, &auth, requests / 10 + 1, concurrency).await?;
    let started = Instant::now();
    let mut latencies = timed_requests(&http, &url, &auth, requests, concurrency).await?;
    let wall = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{backend}: GET /api/v1/zoom_oauth_apps/{{id}} x{} (concurrency {concurrency}): p50 {:.3} ms, p99 {:.3} ms, {:.0} req/s",
        latencies.len(),
        ms(pct(0.50)),
        ms(pct(0.99)),
        latencies.len() as f64 / wall.as_secs_f64()
    );

    let _ = stop.send(());
    serving.await.context("server task")??;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn timed_requests(
    http: &reqwest::Client,
    url: &str,
    auth: &str,
    total: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut tasks = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let share = total / concurrency + usize::from(worker < total % concurrency);
        let (http, url, auth) = (http.clone(), url.to_owned(), auth.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(share);
            for _ in 0..share {
                let t = Instant::now();
                let resp = http.get(&url).header("authorization", &auth).send().await?;
                anyhow::ensure!(resp.status().is_success(), "GET answered {}", resp.status());
                resp.bytes().await?;
                out.push(t.elapsed());
            }
            anyhow::Ok(out)
        }));
    }
    let mut all = Vec::with_capacity(total);
    for task in tasks {
        all.extend(task.await.context("bench task")??);
    }
    Ok(all)
}
