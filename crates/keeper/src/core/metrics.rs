//! The Prometheus metrics behind `/metrics`, on `prometheus-client`: HTTP requests by
//! route template and status, request latency as a histogram, Zoom calls by endpoint
//! and outcome, token refreshes by outcome, lease conflicts, token requests by kind and
//! outcome, bot platform callbacks, revocations, outgoing webhook delivery attempts and
//! refused Zoom webhooks. [`Metrics::render`] writes the OpenMetrics text exposition,
//! with the webhook queue depths the handler reads from the store at scrape time.
//!
//! Every label value comes from a bounded set (route templates, `&'static str`
//! outcomes): each distinct value is a series kept for the life of the process.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency histogram buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Outcomes of an outgoing webhook delivery attempt, shown from zero.
const DELIVERY_OUTCOMES: [&str; 4] = ["success", "retry", "refused", "failure"];

/// Kinds of refused Zoom webhooks, shown from zero: `app_deauthorized` and `other` at an
/// app's own URL, `shared_url` at the one URL for all apps when no app's secret
/// verifies the signature.
const REFUSED_WEBHOOK_EVENTS: [&str; 3] = ["app_deauthorized", "other", "shared_url"];

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

type Latency = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// What a scrape reads from the store: pending deliveries that are due now and outbox
/// events not yet fanned out to deliveries.
#[derive(Clone, Copy, Debug)]
pub struct QueueDepths {
    pub deliveries_due: u64,
    pub outbox_undispatched: u64,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Latency,
    zoom_calls: Family<EndpointLabels, Counter>,
    refreshes: Family<OutcomeLabel, Counter>,
    lease_conflicts: Counter,
    token_requests: Family<TokenLabels, Counter>,
    bot_platform_calls: Family<EndpointLabels, Counter>,
    revocations: Family<OutcomeLabel, Counter>,
    webhook_deliveries: Family<OutcomeLabel, Counter>,
    zoom_webhooks_refused: Family<EventLabel, Counter>,
    zoom_webhooks_shed: Counter,
    webhook_events_stale: Counter,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::default();
        registry.register(
            "zoomkeeper_http_requests",
            "HTTP requests by method, route template and status",
            Family::clone(&requests),
        );
        let latency = Latency::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "zoomkeeper_http_request_duration",
            "HTTP request latency by method and route template",
            Unit::Seconds,
            latency.clone(),
        );
        let zoom_calls = Family::default();
        registry.register(
            "zoomkeeper_zoom_calls",
            "Calls to Zoom by endpoint and outcome",
            Family::clone(&zoom_calls),
        );
        let refreshes = Family::default();
        registry.register(
            "zoomkeeper_token_refreshes",
            "Refreshes of Zoom grants by outcome",
            Family::clone(&refreshes),
        );
        let lease_conflicts = Counter::default();
        registry.register(
            "zoomkeeper_lease_conflicts",
            "Write-backs refused because another process took the lease",
            lease_conflicts.clone(),
        );
        let token_requests = Family::default();
        registry.register(
            "zoomkeeper_token_requests",
            "Token requests by kind and outcome",
            Family::clone(&token_requests),
        );
        let bot_platform_calls = Family::default();
        registry.register(
            "zoomkeeper_bot_platform_calls",
            "Token callbacks of bot platforms by endpoint and outcome",
            Family::clone(&bot_platform_calls),
        );
        let revocations = Family::default();
        registry.register(
            "zoomkeeper_zoom_revocations",
            "Best-effort token revocations at Zoom by outcome",
            Family::clone(&revocations),
        );
        let webhook_deliveries: Family<OutcomeLabel, Counter> = Family::default();
        for outcome in DELIVERY_OUTCOMES {
            drop(webhook_deliveries.get_or_create(&OutcomeLabel { outcome }));
        }
        registry.register(
            "zoomkeeper_webhook_deliveries",
            "Outgoing webhook delivery attempts by outcome (success, retry, refused, failure)",
            webhook_deliveries.clone(),
        );
        let zoom_webhooks_refused: Family<EventLabel, Counter> = Family::default();
        for event in REFUSED_WEBHOOK_EVENTS {
            drop(zoom_webhooks_refused.get_or_create(&EventLabel { event }));
        }
        registry.register(
            "zoomkeeper_zoom_webhooks_refused",
            "Zoom webhooks refused for their signature, by event (app_deauthorized, other, shared_url)",
            zoom_webhooks_refused.clone(),
        );
        let zoom_webhooks_shed = Counter::default();
        registry.register(
            "zoomkeeper_zoom_webhooks_shed",
            "Zoom webhooks answered 503 because the process was handling as many as it may at once (zoom_webhooks_in_flight)",
            zoom_webhooks_shed.clone(),
        );
        let webhook_events_stale = Counter::default();
        registry.register(
            "zoomkeeper_zoom_webhook_events_stale",
            "Apps flagged because their verified Zoom webhooks stopped while their connections kept scheduling meetings",
            webhook_events_stale.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            zoom_calls,
            refreshes,
            lease_conflicts,
            token_requests,
            bot_platform_calls,
            revocations,
            webhook_deliveries,
            zoom_webhooks_refused,
            zoom_webhooks_shed,
            webhook_events_stale,
        }
    }

    /// `method` is recorded as [`method_label`] gives it; `route` must come from a
    /// bounded set (a route template, or [`UNMATCHED_ROUTE`]), for every distinct
    /// value is a series kept for the life of the process.
    pub fn record_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = method_label(method);
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method,
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// `endpoint` names the Zoom call (e.g. `oauth_token_client_credentials`);
    /// `outcome` is `success` or an error class.
    pub fn record_zoom_call(&self, endpoint: &'static str, outcome: &'static str) {
        self.zoom_calls
            .get_or_create(&EndpointLabels { endpoint, outcome })
            .inc();
    }

    /// A refresh of a connection's grant: `success`, `disconnected`, `temporary_failure`,
    /// `lost_fence`, `error`.
    pub fn record_refresh(&self, outcome: &'static str) {
        self.refreshes
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// A lease write-back that found the fence moved on (someone else took over).
    pub fn record_lease_conflict(&self) {
        self.lease_conflicts.inc();
    }

    /// `kind`: `access_token`, `zak_token`, `onbehalf_token`; `outcome`: `cached`,
    /// `refreshed`, `minted` or an error code.
    pub fn record_token_request(&self, kind: &'static str, outcome: &'static str) {
        self.token_requests
            .get_or_create(&TokenLabels { kind, outcome })
            .inc();
    }

    /// A bot platform's token callback: `endpoint` (`attendee_zoom_tokens`,
    /// `recall_zak`, `recall_obf`, `recall_join_token`) and `outcome` (`minted`,
    /// `partial`, `none`, or why it was refused: `bad_signature`, `replayed`, …).
    pub fn record_bot_platform_call(&self, endpoint: &'static str, outcome: &'static str) {
        self.bot_platform_calls
            .get_or_create(&EndpointLabels { endpoint, outcome })
            .inc();
    }

    /// A best-effort revocation at Zoom: `success` or an error class.
    pub fn record_revocation(&self, outcome: &'static str) {
        self.revocations
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// An outgoing webhook delivery attempt whose result was written: `success`,
    /// `retry` (failed, another attempt scheduled), `refused` (not sent: the URL's
    /// address is refused; another attempt scheduled) or `failure` (failed and the
    /// retry schedule is spent: the delivery gave up).
    pub fn record_webhook_delivery(&self, outcome: &'static str) {
        self.webhook_deliveries
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// A Zoom webhook whose signature was refused: see [`REFUSED_WEBHOOK_EVENTS`].
    /// `app_deauthorized` is counted apart (read from the unverified body only to pick
    /// the label): a refused one leaves the connection to be disconnected by its next
    /// refresh.
    pub fn record_zoom_webhook_refused(&self, event: &'static str) {
        self.zoom_webhooks_refused
            .get_or_create(&EventLabel { event })
            .inc();
    }

    /// A Zoom webhook shed with a 503: the process was handling as many as it may.
    pub fn record_zoom_webhook_shed(&self) {
        self.zoom_webhooks_shed.inc();
    }

    /// An app was newly flagged: its verified Zoom webhooks stopped while its
    /// connections kept scheduling meetings.
    pub fn record_webhook_events_stale(&self) {
        self.webhook_events_stale.inc();
    }

    /// The OpenMetrics text exposition ([`CONTENT_TYPE`]) of everything recorded so
    /// far, with the webhook queues as gauges when the store could be read (the
    /// counters are worth serving without them).
    pub fn render(&self, queues: Option<QueueDepths>) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, and every label value encodes.
        let _ = encode_registry(&mut out, &self.registry);
        if let Some(queues) = queues {
            let _ = encode_registry(&mut out, &queue_registry(queues));
        }
        let _ = encode_eof(&mut out);
        out
    }
}

/// The queue depths of one scrape as gauges, in a registry of their own.
fn queue_registry(queues: QueueDepths) -> Registry {
    let mut registry = Registry::default();
    let gauge = |value| {
        let gauge = Gauge::<u64, AtomicU64>::default();
        gauge.set(value);
        gauge
    };
    registry.register(
        "zoomkeeper_webhook_deliveries_due",
        "Pending webhook deliveries whose next attempt is due",
        gauge(queues.deliveries_due),
    );
    registry.register(
        "zoomkeeper_outbox_events_undispatched",
        "State changes not yet fanned out to webhook deliveries",
        gauge(queues.outbox_undispatched),
    );
    registry
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
        let text = m.render(None);
        assert!(text.contains(
            "zoomkeeper_http_requests_total{method=\"GET\",route=\"/api/v1/zoom_oauth_apps/{id}\",status=\"200\"} 2"
        ));
        let bucket = |le: &str| {
            format!("zoomkeeper_http_request_duration_seconds_bucket{{le=\"{le}\",method=\"GET\",route=\"/api/v1/zoom_oauth_apps/{{id}}\"}}")
        };
        assert!(text.contains(&format!("{} 0\n", bucket("0.001"))), "{text}");
        assert!(text.contains(&format!("{} 1\n", bucket("0.0025"))));
        assert!(text.contains(&format!("{} 2\n", bucket("+Inf"))));
        assert!(text.contains("endpoint=\"oauth_token_client_credentials\",outcome=\"success\"} 1"));
    }

    #[test]
    fn request_labels_stay_within_known_methods() {
        let m = Metrics::new();
        for method in ["GET", "BREW", "get", "PROPFIND", "X\"Y"] {
            m.record_request(method, UNMATCHED_ROUTE, 404, Duration::from_millis(1));
        }
        let text = m.render(None);
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
        let text = m.render(None);
        assert!(text.contains("zoomkeeper_token_refreshes_total{outcome=\"success\"} 2"));
        assert!(text.contains("zoomkeeper_token_refreshes_total{outcome=\"disconnected\"} 1"));
        assert!(text.contains("zoomkeeper_lease_conflicts_total 1"));
        assert!(text.contains(
            "zoomkeeper_token_requests_total{kind=\"access_token\",outcome=\"cached\"} 1"
        ));
        assert!(text.contains("zoomkeeper_zoom_revocations_total{outcome=\"success\"} 1"));
    }

    #[test]
    fn renders_webhook_deliveries_and_queue_depths() {
        let m = Metrics::new();
        m.record_webhook_delivery("retry");
        m.record_webhook_delivery("success");
        let text = m.render(None);
        assert!(text.contains("zoomkeeper_webhook_deliveries_total{outcome=\"retry\"} 1"));
        assert!(text.contains("zoomkeeper_webhook_deliveries_total{outcome=\"success\"} 1"));
        assert!(text.contains("zoomkeeper_webhook_deliveries_total{outcome=\"failure\"} 0"));
        let text = m.render(Some(QueueDepths {
            deliveries_due: 3,
            outbox_undispatched: 7,
        }));
        assert!(text.contains("\nzoomkeeper_webhook_deliveries_due 3\n"));
        assert!(text.contains("\nzoomkeeper_outbox_events_undispatched 7\n"));
        assert!(
            text.ends_with("\n# EOF\n"),
            "one end marker, after the gauges"
        );
        assert_eq!(text.matches("# EOF").count(), 1);
    }

    #[test]
    fn refused_zoom_webhooks_show_every_event_from_zero() {
        let m = Metrics::new();
        m.record_zoom_webhook_refused("shared_url");
        let text = m.render(None);
        assert!(text.contains("zoomkeeper_zoom_webhooks_refused_total{event=\"shared_url\"} 1"));
        assert!(
            text.contains("zoomkeeper_zoom_webhooks_refused_total{event=\"app_deauthorized\"} 0")
        );
        assert!(text.contains("zoomkeeper_zoom_webhooks_refused_total{event=\"other\"} 0"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.record_request("GET", "/a\"b\\c", 200, Duration::from_millis(1));
        let text = m.render(None);
        assert!(
            text.contains(r#"route="/a\"b\\c",status="200"} 1"#),
            "{text}"
        );
    }
}
