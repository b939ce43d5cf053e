//! Bodies announced larger than the limit get a clean 413.
//!
//! Answering before the body has been read makes the server close a connection the
//! client is still writing to, and the client then sees a reset instead of our
//! answer. So a body up to [`DRAIN_LIMIT`] is read and thrown away first (bounded in
//! size and time, never buffered); only larger ones are refused at once.

use std::time::Duration;

use axum::extract::Request;
use axum::http::header::{CONNECTION, CONTENT_LENGTH};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;

use super::extract::BODY_LIMIT;
use super::ApiError;

/// Oversized bodies up to this size are drained so the client reads our 413.
pub const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn refuse_oversized(request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(length) = announced.filter(|&n| n > BODY_LIMIT as u64) else {
        return next.run(request).await;
    };
    if length <= DRAIN_LIMIT {
        let mut body = request.into_body().into_data_stream();
        let drain = async {
            let mut read = 0u64;
            while let Some(Ok(chunk)) = body.next().await {
                read += chunk.len() as u64;
                if read > DRAIN_LIMIT {
                    break;
                }
            }
        };
        // A client that stalls gets its answer anyway once the time is up.
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    }
    let mut response = ApiError::PayloadTooLarge.into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}
