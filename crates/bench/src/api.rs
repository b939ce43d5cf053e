//! `zoomkeeper bench api`: the real server in this process on a fresh database
//! (SQLite, and PostgreSQL when a throwaway cluster can be started) with the Zoom
//! simulator, a project, a key and an app; then times authenticated
//! `GET /api/v1/zoom_oauth_apps/{id}` round trips over loopback.

use std::time::Instant;

use clap::Args;

use crate::measure::{ms, timed, Call, Latencies};
use crate::setup::{on_each_database, Backend, Setup};

#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// Requests to time (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 5000)]
    pub requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Only SQLite, even when PostgreSQL binaries are present.
    #[arg(long)]
    pub sqlite_only: bool,
}

/// One database's run.
#[derive(Debug)]
pub struct ApiReport {
    pub backend: Backend,
    pub latencies: Latencies,
}

pub async fn run(args: ApiArgs) -> anyhow::Result<Vec<ApiReport>> {
    let args = &args;
    on_each_database(args.sqlite_only, |backend, url, dir| async move {
        bench_backend(backend, &url, &dir, args).await
    })
    .await
}

async fn bench_backend(
    backend: Backend,
    database_url: &str,
    dir: &std::path::Path,
    args: &ApiArgs,
) -> anyhow::Result<ApiReport> {
    let setup = Setup::start(backend, database_url, dir).await?;
    let app = setup.create_app(None).await?;
    let auth = setup.authorization().await?;
    let serving = setup.serve().await?;
    let http = reqwest::Client::new();
    let call = Call::new(
        reqwest::Method::GET,
        &format!("{}/api/v1/zoom_oauth_apps/{}", serving.base, app.id),
        &auth,
    );

    let concurrency = args.concurrency.max(1);
    // Warm-up: connections, caches, prepared statements.
    timed(&http, &call, args.requests / 10 + 1, concurrency).await?;
    let started = Instant::now();
    let latencies = timed(&http, &call, args.requests, concurrency).await?;
    let wall = started.elapsed();
    println!(
        "{backend}: GET /api/v1/zoom_oauth_apps/{{id}} x{} (concurrency {concurrency}): p50 {:.3} ms, p99 {:.3} ms, {:.0} req/s",
        latencies.count(),
        ms(latencies.p50()),
        ms(latencies.p99()),
        latencies.count() as f64 / wall.as_secs_f64()
    );
    serving.stop().await?;
    Ok(ApiReport { backend, latencies })
}
