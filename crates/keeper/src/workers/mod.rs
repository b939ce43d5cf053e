//! Background work. Every worker is the same loop ([`poll_loop`]) around one pass
//! over the domain, coordinated with other processes through the database (leases,
//! `SKIP LOCKED` claims), never through this process's memory. [`spawn_all`]
//! starts them all; `serve` and the tests start them the same way.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::core::clock::Clock;
use crate::core::config::Role;
use crate::Keeper;

pub mod housekeeping;
pub mod meeting_sync;
pub mod recheck;
pub mod token_keeper;
pub mod webhook_delivery;

/// What one pass of a worker found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Nothing more is waiting: wait for the next tick.
    Done,
    /// A full batch: more may be due, so go again at once.
    More,
}

/// The one loop every worker runs: waits `first_wait`, then runs `pass` and, unless
/// it found more work, waits `every()` before the next — on `clock`, so a test that
/// advances it wakes the worker — until `shutdown` turns true. A pass in flight runs to its end (it may hold a rotated refresh token that
/// must be stored); a failed pass is logged and the loop goes on.
pub async fn poll_loop<P, Fut>(
    name: &'static str,
    clock: Clock,
    mut shutdown: watch::Receiver<bool>,
    first_wait: Duration,
    every: impl Fn() -> Duration,
    mut pass: P,
) where
    P: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Pass>>,
{
    tracing::info!(worker = name, "worker started");
    let mut wait = first_wait;
    loop {
        if !wait.is_zero() {
            tokio::select! {
                _ = clock.sleep(wait) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        if *shutdown.borrow() {
            break;
        }
        wait = match pass().await {
            Ok(Pass::More) => Duration::ZERO,
            Ok(Pass::Done) => every(),
            Err(e) => {
                tracing::warn!(
                    worker = name,
                    error = format!("{e:#}"),
                    "worker pass failed"
                );
                every()
            }
        };
    }
    tracing::info!(worker = name, "worker stopped");
}

/// The running workers of a process.
#[derive(Default)]
pub struct Workers(Vec<(&'static str, JoinHandle<()>)>);

impl Workers {
    /// Waits for every worker to finish (after shutdown began) and logs a panic.
    pub async fn join(self) {
        for (name, handle) in self.0 {
            if let Err(e) = handle.await {
                tracing::error!(worker = name, error = %e, "a background worker panicked");
            }
        }
    }
}

/// Starts every background worker when `role` runs them (none for `api`); each
/// stops when `shutdown` turns true.
pub fn spawn_all(keeper: &Arc<Keeper>, role: Role, shutdown: &watch::Receiver<bool>) -> Workers {
    if !role.runs_workers() {
        return Workers::default();
    }
    let k = || keeper.clone();
    let s = || shutdown.clone();
    Workers(vec![
        ("token_keeper", tokio::spawn(token_keeper::run(k(), s()))),
        ("recheck", tokio::spawn(recheck::run(k(), s()))),
        ("meeting_sync", tokio::spawn(meeting_sync::run(k(), s()))),
        (
            "webhook_delivery",
            tokio::spawn(webhook_delivery::run(k(), s())),
        ),
        ("housekeeping", tokio::spawn(housekeeping::run(k(), s()))),
    ])
}
