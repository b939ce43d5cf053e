//! The zoomkeeper service: domain rules, storage, the secrets vault, the HTTP API
//! and the background workers.
//!
//! Layering: `http` parses, authorises, calls a domain module and serialises; the
//! domain modules (`projects`, `api_keys`, `apps`, `connections`, `tokens`, `meetings`,
//! `zoom_webhooks`, …) hold the rules; `storage` holds
//! all SQL behind the [`storage::Store`] trait, one implementation per database.
//! [`Keeper`] bundles the handles they share; [`server::Server`] serves the router.

pub mod api_keys;
pub mod apps;
pub mod config;
pub mod connections;
pub mod housekeeping;
pub mod http;
pub mod ids;
pub mod join_tokens;
pub mod meeting_sync;
pub mod meetings;
pub mod metrics;
pub mod outbound_url;
pub mod projects;
pub mod rate_limit;
pub mod server;
pub mod service;
pub mod storage;
pub mod telemetry;
pub mod token_keeper;
pub mod tokens;
pub mod vault;
pub mod webhook_delivery;
pub mod webhooks;
pub mod zoom_account_limits;
pub mod zoom_gateway;
pub mod zoom_webhooks;

pub use service::Keeper;
