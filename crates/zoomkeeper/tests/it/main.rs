//! The command line's integration tests, one binary: they run the built `zoomkeeper`
//! executable as separate processes. Their process helpers (`support/`) stay here,
//! beside the only tests that can name that executable (`CARGO_BIN_EXE_zoomkeeper`).

mod cli;
mod demo;
mod packaging;
mod proof_processes;
mod proof_webhook_delivery;
mod support;
