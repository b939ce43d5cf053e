//! `zoomkeeper bench …`: measurements of the service on this machine, printed as
//! plain text (DESIGN.md §10). A crate of its own so the shipped binary carries none
//! of it: the command line links it only with its `bench` feature.

use std::path::Path;

use anyhow::Context as _;
use clap::Subcommand;

mod api;
mod chaos;
mod deliveries;
mod tokens;
mod webhooks;

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
    Tokens(crate::tokens::TokensArgs),
    /// Outgoing webhook deliveries per second to a local receiver, 1,000 pending.
    Deliveries(crate::deliveries::DeliveriesArgs),
    /// Zoom webhook ingress: signed `meeting.created` events per second over loopback.
    Webhooks(crate::webhooks::WebhooksArgs),
    /// Meeting → host lookups (the join-token path) with 1,000,000 indexed meetings.
    Lookup(crate::webhooks::LookupArgs),
    /// Token storms, re-authorisations, deauthorisations and kills against two
    /// `serve` processes on PostgreSQL; prints connections lost and stale
    /// refresh-token uses, and fails unless both are 0.
    Chaos(crate::chaos::ChaosArgs),
}

/// Runs one bench; `zoomkeeper` is the program whose `serve` the benches that need
/// separate processes start (chaos, and the idle memory of `tokens`).
pub async fn run(command: BenchCommand, zoomkeeper: &Path) -> anyhow::Result<()> {
    match command {
        BenchCommand::Tokens(args) => crate::tokens::run(args, zoomkeeper).await,
        BenchCommand::Deliveries(args) => crate::deliveries::run(args).await,
        BenchCommand::Webhooks(args) => crate::webhooks::run_webhooks(args).await,
        BenchCommand::Lookup(args) => crate::webhooks::run_lookup(args).await,
        BenchCommand::Chaos(args) => crate::chaos::run(args, zoomkeeper).await,
        BenchCommand::Api {
            requests,
            concurrency,
            sqlite_only,
        } => {
            let dir = tempfile::tempdir().context("creating a scratch directory")?;
            let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
            api::bench_api("sqlite", &sqlite_url, dir.path(), requests, concurrency).await?;
            if !sqlite_only {
                match keeper::pg_cluster::shared().await? {
                    Some(cluster) => {
                        let url = cluster.create_database().await?;
                        api::bench_api("postgres", &url, dir.path(), requests, concurrency).await?;
                    }
                    None => println!("postgres: skipped (no PostgreSQL binaries found)"),
                }
            }
            Ok(())
        }
    }
}

