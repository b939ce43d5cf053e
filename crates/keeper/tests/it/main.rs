//! The keeper's integration tests, one binary: the real server on port 0 against the
//! in-process Zoom simulator, on SQLite and on PostgreSQL (harness: `testkit`).

mod account_level;
mod api_apps;
mod api_connections;
mod api_join_tokens;
mod api_meetings;
mod api_ops;
mod api_v2;
mod api_v2_hostile;
mod api_webhooks;
mod app_recheck;
mod attendee_compat;
mod bot_platforms;
mod browser_smoke;
mod callback_connections;
mod connect;
mod dashboard;
mod dashboard_apps;
mod dashboard_browser;
mod dashboard_webhooks;
mod hostile_input;
mod housekeeping;
mod meeting_sync;
mod no_connection_dies;
mod proof_concurrency;
mod schema_fuzz;
mod storage;
mod storage_operators;
mod webhook_delivery;
mod zoom_webhooks;
