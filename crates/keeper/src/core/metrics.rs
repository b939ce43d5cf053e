//! A small Prometheus registry: HTTP requests by route template and status, request
//! latency as a histogram, Zoom calls by endpoint and outcome, token refreshes by
//! outcome, lease conflicts, token requests by kind and outcome, and outgoing webhook
//! delivery attempts by outcome. Rendered in the Prometheus text format at `/metrics`,
//! with the webhook queue depths the handler reads from the store at scrape time
//! ([`render_webhook_queue_depths`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    /// Cumulative counts per bucket of `LATENCY_BUCKETS`.
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

#[derive(Default)]
struct Inner {
    /// (method, route, status) → count
    requests: BTreeMap<(&'static str, String, u16), u64>,
    /// (method, route) → latency
    latency: BTreeMap<(&'static str, String), Histogram>,
    /// (endpoint, outcome) → count
    zoom_calls: BTreeMap<(&'static str, &'static str), u64>,
    /// outcome → count
    refreshes: BTreeMap<&'static str, u64>,
    lease_conflicts: u64,
    /// (kind, outcome) → count
    token_requests: BTreeMap<(&'static str, &'static str), u64>,
    /// What happened to revocations at Zoom: outcome → count.
    revocations: BTreeMap<&'static str, u64>,
    /// Outgoing webhook delivery attempts: outcome → count.
    webhook_deliveries: BTreeMap<&'static str, u64>,
    /// Zoom webhooks refused for their signature: event (`app_deauthorized` or
    /// `other`) → count.
    zoom_webhooks_refused: BTreeMap<&'static str, u64>,
    /// Apps flagged because their verified Zoom webhooks stopped while their
    /// connections kept scheduling meetings.
    webhook_events_stale: u64,
    /// Bot platform token callbacks: (endpoint, outcome) → count.
    bot_platform_calls: BTreeMap<(&'static str, &'static str), u64>,
}

/// The `route` label of a request no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The `method` label: one of the methods the API knows, else `other` (a client
/// may send any token as a method; each must not become a series).
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    KNOWN
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("other")
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// `method` is recorded as [`method_label`] gives it; `route` must come from a
    /// bounded set (a route template, or [`UNMATCHED_ROUTE`]), for every distinct
    /// value is a series kept for the life of the process.
    pub fn record_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = method_label(method);
        let mut inner = self.lock();
        *inner
            .requests
            .entry((method, route.to_owned(), status))
            .or_default() += 1;
        inner
            .latency
            .entry((method, route.to_owned()))
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// `endpoint` names the Zoom call (e.g. `oauth_token_client_credentials`);
    /// `outcome` is `success` or an error class.
    pub fn record_zoom_call(&self, endpoint: &'static str, outcome: &'static str) {
        *self
            .lock()
            .zoom_calls
            .entry((endpoint, outcome))
            .or_default() += 1;
    }

    /// A refresh of a connection's grant: `success`, `disconnected`, `temporary_failure`,
    /// `lost_fence`, `error`.
    pub fn record_refresh(&self, outcome: &'static str) {
        *self.lock().refreshes.entry(outcome).or_default() += 1;
    }

    /// A lease write-back that found the fence moved on (someone else took over).
    pub fn record_lease_conflict(&self) {
        self.lock().lease_conflicts += 1;
    }

    /// `kind`: `access_token`, `zak_token`, `onbehalf_token`; `outcome`: `cached`,
    /// `refreshed`, `minted` or an error code.
    pub fn record_token_request(&self, kind: &'static str, outcome: &'static str) {
        *self
            .lock()
            .token_requests
            .entry((kind, outcome))
            .or_default() += 1;
    }

    /// A bot platform's token callback: `endpoint` (`attendee_zoom_tokens`,
    /// `recall_zak`, `recall_obf`, `recall_join_token`) and `outcome` (`minted`,
    /// `partial`, `none`, or why it was refused: `bad_signature`, `replayed`, …).
    pub fn record_bot_platform_call(&self, endpoint: &'static str, outcome: &'static str) {
        *self
            .lock()
            .bot_platform_calls
            .entry((endpoint, outcome))
            .or_default() += 1;
    }

    /// A best-effort revocation at Zoom: `success` or an error class.
    pub fn record_revocation(&self, outcome: &'static str) {
        *self.lock().revocations.entry(outcome).or_default() += 1;
    }

    /// An outgoing webhook delivery attempt whose result was written: `success`,
    /// `retry` (failed, another attempt scheduled), `refused` (not sent: the URL's
    /// address is refused; another attempt scheduled) or `failure` (failed and the
    /// retry schedule is spent: the delivery gave up).
    pub fn record_webhook_delivery(&self, outcome: &'static str) {
        *self.lock().webhook_deliveries.entry(outcome).or_default() += 1;
    }

    /// A Zoom webhook whose signature was refused; `app_deauthorized` is counted
    /// apart (read from the unverified body only to pick the label): a refused one
    /// leaves the connection to be disconnected by its next refresh.
    pub fn record_zoom_webhook_refused(&self, event: &'static str) {
        *self.lock().zoom_webhooks_refused.entry(event).or_default() += 1;
    }

    /// Zoom webhooks refused for their signature so far, for `event`.
    pub fn zoom_webhooks_refused(&self, event: &str) -> u64 {
        self.lock()
            .zoom_webhooks_refused
            .get(event)
            .copied()
            .unwrap_or(0)
    }

    /// An app was newly flagged: its verified Zoom webhooks stopped while its
    /// connections kept scheduling meetings.
    pub fn record_webhook_events_stale(&self) {
        self.lock().webhook_events_stale += 1;
    }

    /// Apps flagged stale so far.
    pub fn webhook_events_stale(&self) -> u64 {
        self.lock().webhook_events_stale
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain counters: still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Prometheus text exposition of everything recorded so far.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        out.push_str("# HELP zoomkeeper_http_requests_total HTTP requests by method, route template and status.\n");
        out.push_str("# TYPE zoomkeeper_http_requests_total counter\n");
        for ((method, route, status), n) in &inner.requests {
            let _ = writeln!(
                out,
                "zoomkeeper_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        out.push_str("# HELP zoomkeeper_http_request_duration_seconds HTTP request latency by method and route template.\n");
        out.push_str("# TYPE zoomkeeper_http_request_duration_seconds histogram\n");
        for ((method, route), h) in &inner.latency {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets.iter()) {
                let _ = writeln!(
                    out,
                    "zoomkeeper_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "zoomkeeper_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "zoomkeeper_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "zoomkeeper_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out.push_str("# HELP zoomkeeper_zoom_calls_total Calls to Zoom by endpoint and outcome.\n");
        out.push_str("# TYPE zoomkeeper_zoom_calls_total counter\n");
        for ((endpoint, outcome), n) in &inner.zoom_calls {
            let _ = writeln!(
                out,
                "zoomkeeper_zoom_calls_total{{endpoint=\"{endpoint}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP zoomkeeper_token_refreshes_total Refreshes of Zoom grants by outcome.\n",
        );
        out.push_str("# TYPE zoomkeeper_token_refreshes_total counter\n");
        for (outcome, n) in &inner.refreshes {
            let _ = writeln!(
                out,
                "zoomkeeper_token_refreshes_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str("# HELP zoomkeeper_lease_conflicts_total Write-backs refused because another process took the lease.\n");
        out.push_str("# TYPE zoomkeeper_lease_conflicts_total counter\n");
        let _ = writeln!(
            out,
            "zoomkeeper_lease_conflicts_total {}",
            inner.lease_conflicts
        );
        out.push_str(
            "# HELP zoomkeeper_token_requests_total Token requests by kind and outcome.\n",
        );
        out.push_str("# TYPE zoomkeeper_token_requests_total counter\n");
        for ((kind, outcome), n) in &inner.token_requests {
            let _ = writeln!(
                out,
                "zoomkeeper_token_requests_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str("# HELP zoomkeeper_bot_platform_calls_total Token callbacks of bot platforms by endpoint and outcome.\n");
        out.push_str("# TYPE zoomkeeper_bot_platform_calls_total counter\n");
        for ((endpoint, outcome), n) in &inner.bot_platform_calls {
            let _ = writeln!(
                out,
                "zoomkeeper_bot_platform_calls_total{{endpoint=\"{endpoint}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str("# HELP zoomkeeper_zoom_revocations_total Best-effort token revocations at Zoom by outcome.\n");
        out.push_str("# TYPE zoomkeeper_zoom_revocations_total counter\n");
        for (outcome, n) in &inner.revocations {
            let _ = writeln!(
                out,
                "zoomkeeper_zoom_revocations_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str("# HELP zoomkeeper_webhook_deliveries_total Outgoing webhook delivery attempts by outcome (success, retry, refused, failure).\n");
        out.push_str("# TYPE zoomkeeper_webhook_deliveries_total counter\n");
        for outcome in ["success", "retry", "refused", "failure"] {
            let n = inner.webhook_deliveries.get(outcome).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "zoomkeeper_webhook_deliveries_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str("# HELP zoomkeeper_zoom_webhooks_refused_total Zoom webhooks refused for their signature, by event (app_deauthorized, other).\n");
        out.push_str("# TYPE zoomkeeper_zoom_webhooks_refused_total counter\n");
        for event in ["app_deauthorized", "other"] {
            let n = inner.zoom_webhooks_refused.get(event).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "zoomkeeper_zoom_webhooks_refused_total{{event=\"{event}\"}} {n}"
            );
        }
        out.push_str("# HELP zoomkeeper_zoom_webhook_events_stale_total Apps flagged because their verified Zoom webhooks stopped while their connections kept scheduling meetings.\n");
        out.push_str("# TYPE zoomkeeper_zoom_webhook_events_stale_total counter\n");
        let _ = writeln!(
            out,
            "zoomkeeper_zoom_webhook_events_stale_total {}",
            inner.webhook_events_stale
        );
        out
    }

    /// Webhook delivery attempts with `outcome` counted so far.
    pub fn webhook_deliveries(&self, outcome: &str) -> u64 {
        self.lock()
            .webhook_deliveries
            .get(outcome)
            .copied()
            .unwrap_or(0)
    }

    /// Lease conflicts counted so far (for tests and the bench).
    pub fn lease_conflicts(&self) -> u64 {
        self.lock().lease_conflicts
    }

    /// Refreshes with `outcome` counted so far.
    pub fn refreshes(&self, outcome: &str) -> u64 {
        self.lock()
            .refreshes
            .iter()
            .filter(|(o, _)| **o == outcome)
            .map(|(_, n)| *n)
            .sum()
    }
}

/// The outgoing webhook queues as gauges: pending deliveries that are due now and
/// outbox events not yet fanned out to deliveries (read from the store per scrape).
pub fn render_webhook_queue_depths(deliveries_due: u64, outbox_undispatched: u64) -> String {
    format!(
        "# HELP zoomkeeper_webhook_deliveries_due Pending webhook deliveries whose next attempt is due.\n\
         # TYPE zoomkeeper_webhook_deliveries_due gauge\n\
         zoomkeeper_webhook_deliveries_due {deliveries_due}\n\
         # HELP zoomkeeper_outbox_events_undispatched State changes not yet fanned out to webhook deliveries.\n\
         # TYPE zoomkeeper_outbox_events_undispatched gauge\n\
         zoomkeeper_outbox_events_undispatched {outbox_undispatched}\n"
    )
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::new();
        m.record_request(
            "GET",
            "/api/v1/zoom_oauth_apps/{id}",
            200,
            Duration::from_millis(2),
        );
        m.record_request(
            "GET",
            "/api/v1/zoom_oauth_apps/{id}",
            200,
            Duration::from_millis(20),
        );
        m.record_zoom_call("oauth_token_client_credentials", "success");
        let text = m.render();
        assert!(text.contains(
            "zoomkeeper_http_requests_total{method=\"GET\",route=\"/api/v1/zoom_oauth_apps/{id}\",status=\"200\"} 2"
        ));
        assert!(text.contains("le=\"0.0025\"} 1"));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("endpoint=\"oauth_token_client_credentials\",outcome=\"success\"} 1"));
    }

    #[test]
    fn request_labels_stay_within_known_methods() {
        let m = Metrics::new();
        for method in ["GET", "BREW", "get", "PROPFIND", "X\"Y"] {
            m.record_request(method, UNMATCHED_ROUTE, 404, Duration::from_millis(1));
        }
        let text = m.render();
        assert!(text.contains(
            "zoomkeeper_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1"
        ));
        assert!(text.contains(
            "zoomkeeper_http_requests_total{method=\"other\",route=\"unmatched\",status=\"404\"} 4"
        ));
        assert_eq!(text.matches("zoomkeeper_http_requests_total{").count(), 2);
    }

    #[test]
    fn renders_token_counters() {
        let m = Metrics::new();
        m.record_refresh("success");
        m.record_refresh("success");
        m.record_refresh("disconnected");
        m.record_lease_conflict();
        m.record_token_request("access_token", "cached");
        m.record_revocation("success");
        let text = m.render();
        assert!(text.contains("zoomkeeper_token_refreshes_total{outcome=\"success\"} 2"));
        assert!(text.contains("zoomkeeper_token_refreshes_total{outcome=\"disconnected\"} 1"));
        assert!(text.contains("zoomkeeper_lease_conflicts_total 1"));
        assert!(text.contains(
            "zoomkeeper_token_requests_total{kind=\"access_token\",outcome=\"cached\"} 1"
        ));
        assert!(text.contains("zoomkeeper_zoom_revocations_total{outcome=\"success\"} 1"));
        assert_eq!(m.refreshes("success"), 2);
        assert_eq!(m.lease_conflicts(), 1);
    }

    #[test]
    fn renders_webhook_deliveries_and_queue_depths() {
        let m = Metrics::new();
        m.record_webhook_delivery("retry");
        m.record_webhook_delivery("success");
        let text = m.render();
        assert!(text.contains("zoomkeeper_webhook_deliveries_total{outcome=\"retry\"} 1"));
        assert!(text.contains("zoomkeeper_webhook_deliveries_total{outcome=\"success\"} 1"));
        assert!(text.contains("zoomkeeper_webhook_deliveries_total{outcome=\"failure\"} 0"));
        let depths = render_webhook_queue_depths(3, 7);
        assert!(depths.contains("\nzoomkeeper_webhook_deliveries_due 3\n"));
        assert!(depths.contains("\nzoomkeeper_outbox_events_undispatched 7\n"));
    }
}
