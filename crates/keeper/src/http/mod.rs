//! The HTTP layer: routing, the error shape, extractors and per-request
//! observation (one log line and metrics per request). Handlers are thin: parse,
//! authorise, call the domain module, serialise.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

pub mod api_v2;
pub mod apps;
pub mod auth;
pub mod bot_platforms;
pub mod connect;
pub mod connections;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod join_tokens;
pub mod meetings;
pub mod ops;
pub mod oversize;
pub mod pagination;
pub mod schema_enums;
pub mod webhooks;
pub mod zoom_webhooks;

pub use error::ApiError;

use crate::{core::metrics, Keeper};

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub keeper: Arc<Keeper>,
    /// Base of absolute URLs in responses, without a trailing slash.
    pub public_url: Arc<str>,
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(api_v2::routes())
        .merge(apps::routes())
        .merge(bot_platforms::routes())
        .merge(connect::routes())
        .merge(connections::routes())
        .merge(dashboard::routes())
        .merge(join_tokens::routes())
        .merge(meetings::routes())
        .merge(zoom_webhooks::routes())
        .merge(webhooks::routes())
        .merge(ops::routes())
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(oversize::refuse_oversized))
        .layer(middleware::from_fn(refuse_long_uri))
        .layer(middleware::from_fn(api_v2::recall_errors))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn(oversize::drain_unread))
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                // The panic payload may quote data; it is not logged.
                tracing::error!("a request handler panicked");
                ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
            },
        ))
        .layer(middleware::from_fn(run_to_completion))
        .with_state(state)
}

/// Runs each request in a task of its own and waits for it: a client that goes away
/// drops only the wait, never the work half-way (sqlx's PostgreSQL `BEGIN` is not
/// cancel-safe: dropped mid-round-trip, it returns the pooled connection inside a
/// transaction sqlx does not know of, which later requests' statements then join).
async fn run_to_completion(request: Request, next: Next) -> Response {
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(e) => ApiError::Internal(anyhow::Error::new(e).context("a request task failed"))
            .into_response(),
    }
}

/// Longest path and query read, in bytes; longer ones get a 414 in the API's error
/// shape. (hyper itself answers a bare 414 above 64 KiB, before any of this runs.)
pub const MAX_URI_BYTES: usize = 8 * 1024;

async fn refuse_long_uri(request: Request, next: Next) -> Response {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if length > MAX_URI_BYTES {
        return ApiError::UriTooLong {
            max_bytes: MAX_URI_BYTES,
        }
        .into_response();
    }
    next.run(request).await
}

/// One log line and the metrics for every request. Logs the route template, never
/// the raw path or query (they may hold ids or secrets) and never headers. Every
/// label comes from a bounded set: the method from the known ones (else `other`),
/// the route from the route table (else `unmatched`).
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = metrics::method_label(request.method().as_str());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(metrics::UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state
        .keeper
        .metrics
        .record_request(method, &route, status, elapsed);
    tracing::info!(
        method,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    response
}
