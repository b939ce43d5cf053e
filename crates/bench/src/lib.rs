//! `zoomkeeper bench …`: measurements of the service on this machine, printed as
//! plain text (DESIGN.md §10). A crate of its own so the shipped binary carries none
//! of it: the command line links it only with its `bench` feature.
//!
//! Every bench loads its data through the service's domain functions and `Store`
//! ([`setup`]), and returns what it printed as a report, so the smoke tests
//! (`tests/smoke.rs`) can run each with tiny sizes on both databases.

use std::path::Path;

use clap::Subcommand;

pub mod account_sync;
pub mod api;
pub mod chaos;
pub mod deliveries;
pub mod lookup;
mod measure;
mod setup;
pub mod tokens;
pub mod webhooks;

pub use measure::Latencies;
pub use setup::Backend;

#[derive(Subcommand, Debug, Clone)]
pub enum BenchCommand {
    /// Authenticated GET of one app over loopback.
    Api(api::ApiArgs),
    /// Token requests for a joining bot: cached access_token and zak_token, Zoom
    /// calls per token, and idle memory with 100,000 connections.
    Tokens(tokens::TokensArgs),
    /// Outgoing webhook deliveries per second to a local receiver, 1,000 pending.
    Deliveries(deliveries::DeliveriesArgs),
    /// Zoom webhook ingress: signed `meeting.created` events per second over loopback.
    Webhooks(webhooks::WebhooksArgs),
    /// The clients of `bench webhooks`, run by it in a process of their own.
    #[command(hide = true)]
    WebhookLoad(webhooks::LoadArgs),
    /// Meeting → host lookups (the join-token path) with 1,000,000 indexed meetings.
    Lookup(lookup::LookupArgs),
    /// The meeting sync of an account-level connection whose Zoom account has
    /// 1,000 users: time and Zoom calls at a Pro account's rate limits.
    AccountSync(account_sync::AccountSyncArgs),
    /// Token storms, re-authorisations, deauthorisations and kills against two
    /// `serve` processes on PostgreSQL; prints connections lost and stale
    /// refresh-token uses, and fails unless both are 0.
    Chaos(chaos::ChaosArgs),
}

/// Runs one bench, which prints its figures; `zoomkeeper` is the program whose
/// `serve` the benches that need separate processes start (chaos, and the idle
/// memory of `tokens`).
pub async fn run(command: BenchCommand, zoomkeeper: &Path) -> anyhow::Result<()> {
    match command {
        BenchCommand::Api(args) => api::run(args).await.map(drop),
        BenchCommand::Tokens(args) => tokens::run(args, zoomkeeper).await.map(drop),
        BenchCommand::Deliveries(args) => deliveries::run(args).await.map(drop),
        BenchCommand::Webhooks(args) => webhooks::run(args, zoomkeeper).await.map(drop),
        BenchCommand::WebhookLoad(args) => webhooks::run_load(args).await,
        BenchCommand::Lookup(args) => lookup::run(args).await.map(drop),
        BenchCommand::AccountSync(args) => account_sync::run(args).await.map(drop),
        BenchCommand::Chaos(args) => chaos::run(args, zoomkeeper).await.map(drop),
    }
}
