//! The simulator's integration tests, one binary: Zoom's endpoints as documented,
//! spoken to over real HTTP (helpers: `common`; webhook receiver: `testkit`).

mod accounts;
mod authorize_page;
mod common;
mod faults;
mod oauth;
mod rest;
mod webhooks;
