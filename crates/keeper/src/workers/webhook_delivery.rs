//! The webhook delivery worker (DESIGN.md §4 "Outgoing webhooks", §6): one loop in
//! `serve` that
//!
//! 1. fans undispatched outbox events out to the project's active subscriptions
//!    with that trigger — one `webhook_deliveries` row each, with its own
//!    idempotency key — and marks the events dispatched, in one transaction;
//! 2. claims due deliveries with a lease (so several processes never send one row
//!    at once) and POSTs each: 10 s timeout, no redirects, the URL checked and its
//!    addresses pinned again at every attempt; 2xx is success;
//! 3. records each attempt (status, latency, the first 1 KiB of the answer, error
//!    class; the last [`KEPT_RESPONSES`]) and schedules the next one per
//!    `webhook_retry_schedule` with ±10 % jitter, or gives up (`failure`) when the
//!    schedule is spent.
//!
//! All state is in the database: a delivery survives restarts, and a process that
//! dies mid-attempt leaves a lease that expires, so the row is sent again (at least
//! once, with the same idempotency key).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::Pass;
use crate::core::signing::sign;
use crate::core::{jitter, outbound_url};
use crate::domain::webhooks;
use crate::storage::{DeliveryAttempt, DeliveryStatus, WebhookDeliveryRow};
use crate::Keeper;

/// Deliveries claimed per round.
pub const BATCH: u32 = 50;
/// Outbox events fanned out per transaction.
pub const DISPATCH_BATCH: u32 = 100;
/// Deliveries in flight at once per process.
pub const CONCURRENCY: usize = 16;
/// Per-attempt timeout (connect and whole answer).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle loop looks for work.
pub const POLL: Duration = Duration::from_millis(500);
/// Attempt summaries kept per delivery.
pub const KEPT_RESPONSES: usize = 10;
/// Bytes of a receiver's answer kept per attempt.
pub const KEPT_BODY_BYTES: usize = 1024;

/// When attempt number `attempt` (1-based) has failed: the delay before the next
/// one (the schedule's entry ±10 %), or `None` when the schedule is spent.
pub fn retry_delay(schedule: &[Duration], attempt: i64) -> Option<Duration> {
    let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
    let base = *schedule.get(index)?;
    Some(jitter::around_percent(base, 10))
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub dispatched_events: u64,
    pub new_deliveries: u64,
    pub claimed: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// Written back by nobody: the lease moved on (a resend, or another process).
    pub lost: usize,
}

/// Runs rounds every [`POLL`] until `shutdown` turns true.
pub async fn run(keeper: Arc<Keeper>, shutdown: watch::Receiver<bool>) {
    run_every(keeper, POLL, shutdown).await
}

/// [`run`] with another idle interval (tests use a short one).
pub async fn run_every(keeper: Arc<Keeper>, poll: Duration, shutdown: watch::Receiver<bool>) {
    super::poll_loop(
        "webhook_delivery",
        keeper.clock.clone(),
        shutdown,
        Duration::ZERO,
        || poll,
        || async {
            let round = run_once(&keeper).await?;
            if round.claimed > 0 || round.dispatched_events > 0 {
                tracing::info!(
                    dispatched_events = round.dispatched_events,
                    new_deliveries = round.new_deliveries,
                    claimed = round.claimed,
                    succeeded = round.succeeded,
                    failed = round.failed,
                    lost = round.lost,
                    "webhook delivery round"
                );
            }
            let busy = round.claimed as u32 >= BATCH
                || round.dispatched_events >= u64::from(DISPATCH_BATCH);
            Ok(if busy { Pass::More } else { Pass::Done })
        },
    )
    .await
}

/// One round: fan out the outbox, then send what is due.
pub async fn run_once(keeper: &Keeper) -> anyhow::Result<Round> {
    let dispatched = keeper.store.dispatch_outbox_events(DISPATCH_BATCH).await?;
    let claimed = keeper
        .store
        .claim_due_webhook_deliveries(
            keeper.tokens.owner(),
            BATCH,
            keeper.config.webhook_delivery_lease,
        )
        .await?;
    let mut round = Round {
        dispatched_events: dispatched.events,
        new_deliveries: dispatched.deliveries,
        claimed: claimed.len(),
        ..Round::default()
    };
    let outcomes: Vec<anyhow::Result<(DeliveryStatus, bool)>> = futures::stream::iter(claimed)
        .map(|row| deliver(keeper, row))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for outcome in outcomes {
        match outcome {
            Ok((_, false)) => round.lost += 1,
            Ok((DeliveryStatus::Success, true)) => round.succeeded += 1,
            Ok(_) => round.failed += 1,
            Err(e) => {
                round.failed += 1;
                tracing::warn!(error = format!("{e:#}"), "webhook delivery failed");
            }
        }
    }
    Ok(round)
}

/// One attempt's summary as recorded.
struct Summary {
    status_code: Option<u16>,
    body: String,
    error: Option<(&'static str, String)>,
}

/// Sends one claimed delivery and records the attempt. Returns the new status and
/// whether the write-back landed (false: the lease moved on).
async fn deliver(
    keeper: &Keeper,
    row: WebhookDeliveryRow,
) -> anyhow::Result<(DeliveryStatus, bool)> {
    let started = Instant::now();
    let attempted_at = keeper.clock.now();
    let summary = attempt(keeper, &row, attempted_at.timestamp()).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let success =
        summary.error.is_none() && summary.status_code.is_some_and(|s| (200..300).contains(&s));
    let attempt_number = row.attempt_count + 1;
    let (status, retry_in) = if success {
        (DeliveryStatus::Success, None)
    } else {
        match retry_delay(&keeper.config.webhook_retry_schedule, attempt_number) {
            Some(delay) => (DeliveryStatus::Pending, Some(delay)),
            None => (DeliveryStatus::Failure, None),
        }
    };
    let mut responses: Vec<Value> = row.responses.as_array().cloned().unwrap_or_default();
    responses.push(json!({
        "attempt": attempt_number,
        "attempted_at": attempted_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "status_code": summary.status_code,
        "latency_ms": (latency_ms * 10.0).round() / 10.0,
        "body": summary.body,
        "error": summary.error.as_ref().map(|(class, _)| *class),
        "error_message": summary.error.as_ref().map(|(_, message)| message.clone()),
    }));
    let excess = responses.len().saturating_sub(KEPT_RESPONSES);
    responses.drain(..excess);
    let written = keeper
        .store
        .record_webhook_attempt(
            &row.idempotency_key,
            row.fence,
            &DeliveryAttempt {
                status,
                retry_in,
                responses: Value::Array(responses),
            },
        )
        .await?;
    if written {
        let refused = summary
            .error
            .as_ref()
            .is_some_and(|(class, _)| *class == "refused_address");
        keeper
            .metrics
            .record_webhook_delivery(match (status, refused) {
                (DeliveryStatus::Success, _) => "success",
                (DeliveryStatus::Failure, _) => "failure",
                (DeliveryStatus::Pending, true) => "refused",
                (DeliveryStatus::Pending, false) => "retry",
            });
    } else {
        keeper.metrics.record_lease_conflict();
        tracing::info!(
            idempotency_key = %row.idempotency_key,
            "webhook delivery lease moved on; attempt result discarded"
        );
    }
    tracing::info!(
        idempotency_key = %row.idempotency_key,
        subscription_id = %row.subscription_id,
        attempt = attempt_number,
        status_code = summary.status_code,
        error = summary.error.as_ref().map(|(class, _)| *class),
        outcome = status.as_str(),
        "webhook delivery attempt"
    );
    Ok((status, written))
}

/// The `error_message` of an attempt that failed inside zoomkeeper; the cause is
/// logged, never stored (delivery records are shown to API callers).
const INTERNAL_ERROR: &str =
    "zoomkeeper could not prepare this attempt because of an internal error; the cause is in its log.";

async fn attempt(keeper: &Keeper, row: &WebhookDeliveryRow, timestamp: i64) -> Summary {
    let failed = |class: &'static str, message: String| Summary {
        status_code: None,
        body: String::new(),
        error: Some((class, message)),
    };
    let subscription = match keeper
        .store
        .get_webhook_subscription(&row.project_id, &row.subscription_id)
        .await
    {
        Ok(Some(s)) if s.is_active => s,
        Ok(_) => {
            return failed(
                "subscription_inactive",
                "the subscription is inactive".to_owned(),
            )
        }
        Err(e) => {
            tracing::error!(idempotency_key = %row.idempotency_key, error = %e, "reading a delivery's subscription failed");
            return failed("internal", INTERNAL_ERROR.to_owned());
        }
    };
    let secrets = match webhooks::signing_secrets(&*keeper.store, &keeper.vault, &row.project_id)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(idempotency_key = %row.idempotency_key, error = %e, "reading a delivery's signing secrets failed");
            return failed("internal", INTERNAL_ERROR.to_owned());
        }
    };
    // DNS may have changed since the subscription was saved: check again, and pin.
    let checked =
        match outbound_url::check(&subscription.url, keeper.config.allow_private_callback_urls)
            .await
        {
            Ok(c) => c,
            Err(e) => return failed("refused_address", e.to_string()),
        };
    let client = match checked.client(TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(idempotency_key = %row.idempotency_key, error = %e, "building a delivery's HTTP client failed");
            return failed("internal", INTERNAL_ERROR.to_owned());
        }
    };
    let signed = sign(
        secrets.current.expose_secret(),
        secrets.previous.as_ref().map(|p| p.expose_secret()),
        &row.idempotency_key,
        timestamp,
        &row.payload,
    );
    let sent = signed.post(&client, checked.url.clone()).send().await;
    let mut response = match sent {
        Ok(r) => r,
        Err(e) => {
            let class = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "request"
            };
            // reqwest's message names the URL; keep only the kind (the path may hold a secret).
            return failed(class, format!("the request failed ({class})"));
        }
    };
    let status = response.status();
    let mut body = Vec::new();
    let mut error = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = KEPT_BODY_BYTES - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= KEPT_BODY_BYTES {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                if e.is_timeout() {
                    error = Some(("timeout", "the answer did not finish in time".to_owned()));
                }
                break;
            }
        }
    }
    if status.is_redirection() {
        error = Some((
            "redirect",
            "the receiver answered with a redirect; redirects are not followed".to_owned(),
        ));
    } else if !status.is_success() && error.is_none() {
        error = Some(("http_status", format!("the receiver answered {status}")));
    }
    Summary {
        status_code: Some(status.as_u16()),
        body: String::from_utf8_lossy(&body).into_owned(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_follow_the_schedule_with_jitter_then_stop() {
        let schedule = [Duration::from_secs(10), Duration::from_secs(100)];
        for _ in 0..50 {
            let first = retry_delay(&schedule, 1).expect("first retry");
            assert!(first >= Duration::from_secs(9) && first <= Duration::from_secs(11));
            let second = retry_delay(&schedule, 2).expect("second retry");
            assert!(second >= Duration::from_secs(90) && second <= Duration::from_secs(110));
        }
        assert_eq!(retry_delay(&schedule, 3), None);
        assert_eq!(retry_delay(&schedule, 0), None);
    }
}
