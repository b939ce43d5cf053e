//! Mechanisms with no domain imports: configuration, the secrets vault, ids, metrics,
//! telemetry, outbound URL checks, the Zoom gateway and the per-account Zoom budget,
//! and the API rate limiter.

pub mod clock;
pub mod config;
pub mod ids;
pub mod jitter;
pub mod metrics;
pub mod outbound_url;
pub mod rate_limit;
pub mod signing;
pub mod telemetry;
pub mod vault;
pub mod zoom_account_limits;
pub mod zoom_gateway;
