//! Answers given before the request body was read still reach the client.
//!
//! Answering before the body has been read makes the server close a connection the
//! client is still writing to, and the client then sees a reset (a broken pipe)
//! instead of our answer. So what a request leaves unread — a body announced larger
//! than the limit, or the body of a request refused by its API key or the rate
//! limit — is read and thrown away first, up to [`DRAIN_LIMIT`] and for at most
//! [`DRAIN_TIMEOUT`] (never buffered); only bodies announced larger still are
//! refused at once. A 413 always closes the connection.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::Request;
use axum::http::header::{CONNECTION, CONTENT_LENGTH};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt as _};

use super::extract::BODY_LIMIT;
use super::ApiError;

/// Unread bodies up to this size are drained so the client reads our answer.
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
        drain(request.into_body().into_data_stream()).await;
    }
    let mut response = ApiError::PayloadTooLarge.into_response();
    close(&mut response);
    response
}

/// Whatever the handler left of the body is drained before its answer goes out (a
/// 401 or 429 is decided before the body is read). An answer that already closes
/// the connection is sent at once.
pub async fn drain_unread(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let unread = Arc::new(Mutex::new(None));
    let body = Body::from_stream(ReturnsUnread {
        inner: Some(body.into_data_stream()),
        finished: false,
        unread: Arc::clone(&unread),
    });
    let mut response = next.run(Request::from_parts(parts, body)).await;
    let rest = unread.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(rest) = rest {
        if !closes(&response) && !drain(rest).await {
            close(&mut response);
        }
    }
    response
}

/// Reads `body` to its end and throws it away: `false` when it was longer than
/// [`DRAIN_LIMIT`], failed, or took longer than [`DRAIN_TIMEOUT`] (then the
/// connection must close).
async fn drain(mut body: BodyDataStream) -> bool {
    let read_all = async {
        let mut read = 0u64;
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else {
                return false;
            };
            read += chunk.len() as u64;
            if read > DRAIN_LIMIT {
                return false;
            }
        }
        true
    };
    // A client that stalls gets its answer anyway once the time is up.
    tokio::time::timeout(DRAIN_TIMEOUT, read_all)
        .await
        .unwrap_or(false)
}

fn closes(response: &Response) -> bool {
    response
        .headers()
        .get(CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
}

fn close(response: &mut Response) {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
}

/// The request body as the handler sees it; dropped before its end, it hands what
/// is left back to [`drain_unread`].
struct ReturnsUnread {
    inner: Option<BodyDataStream>,
    finished: bool,
    unread: Arc<Mutex<Option<BodyDataStream>>>,
}

impl Stream for ReturnsUnread {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let next = inner.poll_next_unpin(cx);
        if matches!(next, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.finished = true;
        }
        next
    }
}

impl Drop for ReturnsUnread {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(inner) = self.inner.take() {
            *self.unread.lock().unwrap_or_else(|p| p.into_inner()) = Some(inner);
        }
    }
}
