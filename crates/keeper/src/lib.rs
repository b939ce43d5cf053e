//! The zoomkeeper service: domain rules, storage, the secrets vault, the HTTP API
//! and the background workers.
//!
//! Layering: `http` parses, authorises, calls a domain module and serialises; the
//! domain modules (`projects`, `api_keys`, `apps`, …) hold the rules; `storage` holds
//! all SQL behind the [`storage::Store`] trait, one implementation per database.

pub mod api_keys;
pub mod apps;
pub mod config;
pub mod http;
pub mod ids;
pub mod projects;
pub mod storage;
pub mod vault;
