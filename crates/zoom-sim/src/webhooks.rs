//! Sends Zoom's signed webhooks, with Zoom's retry schedule (scaled by
//! `webhook_retry_scale`). Every event is its own tokio task: queuing never waits.

use std::time::Duration;

use axum::http::header;
use serde_json::{json, Value};

use crate::server::Sim;
use crate::types::SimUrlValidation;
use crate::world::{
    hmac_hex, random_token, WebhookJob, WEBHOOK_RETRY_DELAYS_S, WEBHOOK_REVALIDATION_S,
};
use crate::zoom_error::ApiError;

/// Starts delivering each job in the background.
pub(crate) fn dispatch(sim: &Sim, jobs: Vec<WebhookJob>) {
    for job in jobs {
        tokio::spawn(deliver(sim.clone(), job));
    }
}

async fn deliver(sim: Sim, job: WebhookJob) {
    let attempts = WEBHOOK_RETRY_DELAYS_S.len() + 1;
    for attempt in 0..attempts {
        if attempt > 0 {
            let scale = sim.lock().config.webhook_retry_scale;
            let delay = Duration::try_from_secs_f64(WEBHOOK_RETRY_DELAYS_S[attempt - 1] * scale)
                .unwrap_or(Duration::from_secs(365 * 24 * 3600));
            tokio::time::sleep(delay).await;
        }
        let outcome = send_signed(&sim, &job.url, &job.secret, &job.body).await;
        let delivered = matches!(outcome.status, Some(200 | 204));
        let last = attempt + 1 == attempts;
        sim.lock().record_attempt(
            job.delivery_id,
            outcome.status,
            outcome.error,
            delivered,
            last,
        );
        if delivered {
            return;
        }
    }
}

struct Outcome {
    status: Option<u16>,
    error: Option<String>,
    body: Option<Value>,
}

/// One signed POST: `x-zm-signature: v0=hex(HMAC-SHA256(secret, "v0:{ts}:{body}"))`.
async fn send_signed(sim: &Sim, url: &str, secret: &str, body: &str) -> Outcome {
    let (ts, timeout_ms) = {
        let w = sim.lock();
        (w.now().timestamp(), w.config.webhook_timeout_ms)
    };
    let signature = format!("v0={}", hmac_hex(secret, &format!("v0:{ts}:{body}")));
    let request = sim
        .http
        .post(url)
        .timeout(Duration::from_millis(timeout_ms))
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .header(header::USER_AGENT, "Zoom Marketplace/1.0a")
        .header("x-zm-request-timestamp", ts.to_string())
        .header("x-zm-signature", signature)
        .header(
            "x-zm-trackingid",
            format!("v=2.0;clid=us05;rid={}", random_token(16)),
        )
        .body(body.to_owned());
    match request.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp.json::<Value>().await.ok();
            Outcome {
                status: Some(status),
                error: None,
                body,
            }
        }
        Err(e) => Outcome {
            status: None,
            error: Some(if e.is_timeout() {
                format!("no answer within {timeout_ms} ms")
            } else {
                format!("request failed: {e}")
            }),
            body: None,
        },
    }
}

/// Sends `endpoint.url_validation` once and checks the answer, as the Marketplace's
/// "Validate" button does.
pub(crate) async fn validate_url(sim: &Sim, client_id: &str) -> Result<SimUrlValidation, ApiError> {
    let plain_token = random_token(22);
    let job = {
        let mut w = sim.lock();
        let Some(app) = w.app(client_id).cloned() else {
            return Err(ApiError::control(404, format!("no app {client_id}")));
        };
        let Some(url) = app.webhook_url.clone() else {
            return Err(ApiError::control(
                400,
                format!("app {client_id} has no webhook_url"),
            ));
        };
        w.queue_webhook(
            "endpoint.url_validation",
            json!({"plainToken": plain_token}),
            client_id,
            &url,
            &app.webhook_secret,
        )
    };
    let outcome = send_signed(sim, &job.url, &job.secret, &job.body).await;
    let expected = hmac_hex(&job.secret, &plain_token);
    let answered = |k: &str| {
        outcome
            .body
            .as_ref()
            .and_then(|b| b.get(k))
            .and_then(Value::as_str)
    };
    let validated = outcome.status == Some(200)
        && answered("plainToken") == Some(plain_token.as_str())
        && answered("encryptedToken") == Some(expected.as_str());
    let error = outcome.error.clone().or_else(|| {
        (!validated).then(|| {
            "the answer did not carry the expected plainToken and encryptedToken".to_owned()
        })
    });
    {
        let mut w = sim.lock();
        w.record_attempt(
            job.delivery_id,
            outcome.status,
            error.clone(),
            validated,
            true,
        );
        w.set_url_validated(client_id, validated);
    }
    Ok(SimUrlValidation {
        validated,
        plain_token,
        status_code: outcome.status,
        error,
    })
}

/// Zoom revalidates every validated endpoint every 72 hours (scaled by
/// `webhook_retry_scale`; 0 turns it off); an endpoint that fails revalidation gets
/// no more events until someone intervenes. Ends when the simulator is dropped.
pub(crate) async fn revalidate_loop(sim: std::sync::Weak<crate::server::Shared>) {
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(sim) = sim.upgrade() else {
            return;
        };
        let scale = sim.lock().config.webhook_retry_scale;
        let Some(every) = Duration::try_from_secs_f64(WEBHOOK_REVALIDATION_S * scale)
            .ok()
            .filter(|d| !d.is_zero())
        else {
            last = tokio::time::Instant::now();
            continue;
        };
        if last.elapsed() < every {
            continue;
        }
        last = tokio::time::Instant::now();
        let apps = sim.lock().validated_apps();
        for client_id in apps {
            if let Ok(v) = validate_url(&sim, &client_id).await {
                if !v.validated {
                    sim.lock().stop_events(&client_id);
                }
            }
        }
    }
}
