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
pub mod pg_cluster;
pub mod server;
pub mod service;
pub mod storage;
pub mod workers;

pub use self::core::{
    config, ids, metrics, outbound_url, rate_limit, telemetry, vault, zoom_account_limits,
    zoom_gateway,
};
pub use domain::{
    api_keys, apps, connections, join_tokens, meetings, projects, tokens, webhooks, zoom_webhooks,
};
pub use service::Keeper;
pub use workers::{housekeeping, meeting_sync, token_keeper, webhook_delivery};
