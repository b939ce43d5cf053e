//! The rules, one module per resource. HTTP handlers and workers call these; they
//! call storage and the Zoom gateway.

pub mod api_keys;
pub mod apps;
pub mod bot_platforms;
pub mod connect_sessions;
pub mod connections;
pub mod fields;
pub mod grant;
pub mod join_tokens;
pub mod meetings;
pub mod operators;
pub mod projects;
pub mod recheck;
pub mod token_callbacks;
pub mod tokens;
pub mod webhooks;
pub mod zoom_webhooks;
