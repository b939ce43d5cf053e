//! The `zoom` crate's integration tests, one binary: the client against the
//! in-process simulator, over real HTTP.

mod against_simulator;
mod webhooks_from_simulator;
