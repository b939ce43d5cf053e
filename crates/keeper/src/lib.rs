//! The zoomkeeper service: domain rules, storage, the secrets vault, the HTTP API
//! and the background workers.
//!
//! Layering, from the bottom:
//! - [`core`]: mechanisms with no domain imports (configuration, the vault, ids,
//!   metrics, outbound URL checks, the Zoom gateway, rate limits);
//! - [`storage`]: all SQL, behind the [`storage::Store`] traits;
//! - [`domain`]: the rules, one module per resource;
//! - [`workers`]: the background loops, which only call the domain;
//! - [`http`]: parses, authorises, calls a domain function and serialises.
//!
//! [`Keeper`] bundles the handles they share; [`server::Server`] serves the router.

pub mod core;
pub mod domain;
pub mod http;
pub mod server;
pub mod service;
pub mod storage;
pub mod workers;

pub use self::core::{
    config, ids, metrics, outbound_url, rate_limit, telemetry, vault, zoom_account_limits,
    zoom_gateway,
};
pub use domain::{
    api_keys, apps, connections, join_tokens, meetings, operators, projects, tokens, webhooks,
    zoom_webhooks,
};
pub use service::Keeper;
pub use workers::{housekeeping, meeting_sync, token_keeper, webhook_delivery};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::core::config::Config;
use crate::server::Server;
use crate::workers::Workers;

/// A service built from its configuration: the keeper every part shares, the bound
/// HTTP listener (when the role serves HTTP) and the running workers (when it runs
/// them).
pub struct App {
    pub keeper: Arc<Keeper>,
    server: Option<Server>,
    workers: Workers,
    stop: watch::Sender<bool>,
}

/// The one composition root, used by `serve` and by the tests alike: opens the
/// database (migrating it) and the keyring, binds the listener when `config.role`
/// serves HTTP, and starts the workers when it runs them.
pub async fn build(config: Config) -> anyhow::Result<App> {
    let role = config.role;
    let keeper = Arc::new(Keeper::open(config).await?);
    let server = if role.serves_http() {
        Some(Server::bind(keeper.clone()).await?)
    } else {
        None
    };
    let (stop, stopping) = watch::channel(false);
    let workers = workers::spawn_all(&keeper, role, &stopping);
    Ok(App {
        keeper,
        server,
        workers,
        stop,
    })
}

impl App {
    /// The bound HTTP address, when this role serves HTTP.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(Server::addr)
    }

    /// The base of the absolute URLs the API returns, when this role serves HTTP.
    pub fn public_url(&self) -> Option<&str> {
        self.server.as_ref().map(Server::public_url)
    }

    /// Wraps the whole router, outermost, before serving: how the tests check every
    /// response against the OpenAPI document.
    pub fn wrap_router(mut self, wrap: impl FnOnce(axum::Router) -> axum::Router) -> App {
        self.server = self.server.map(|server| server.wrap_router(wrap));
        self
    }

    /// Serves (when the role does) until `shutdown` completes or serving fails,
    /// then stops the workers and waits until they have finished what they hold.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App {
            server,
            workers,
            stop,
            ..
        } = self;
        let served = match server {
            Some(server) => server.run(shutdown).await,
            None => {
                shutdown.await;
                Ok(())
            }
        };
        let _ = stop.send(true);
        workers.join().await;
        served
    }
}
