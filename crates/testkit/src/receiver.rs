//! A real webhook receiver (STYLE.md: svix's `tests/it`): an HTTP server on
//! 127.0.0.1 that records every request to `/hook` and answers a status the test
//! sets, at once or after a hold. It can also answer Zoom's `endpoint.url_validation` challenge, so the same
//! receiver serves the simulator's Zoom webhooks and the keeper's outgoing ones.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// How long [`Receiver::wait_for_exactly`] waits for the expected requests.
pub const WAIT: Duration = Duration::from_secs(20);

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: String,
    /// The body as JSON (`Null` when it is not JSON).
    pub json: Value,
    pub at: Instant,
    /// Whether the receiver has answered it yet (see [`Receiver::hold`]).
    pub answered: bool,
}

impl Received {
    /// The header's value, or "" when it is missing.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

#[derive(Clone, Default)]
struct Inbox {
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    hold: Arc<Mutex<Duration>>,
    zoom_secret: Arc<Mutex<Option<String>>>,
}

/// Stops serving when dropped.
pub struct Receiver {
    addr: SocketAddr,
    inbox: Inbox,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Receiver {
    /// Answers every request with `status`.
    pub async fn start(status: u16) -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().expect("addr"), status).await
    }

    /// Listens on `addr` (e.g. one a sender already failed to reach).
    pub async fn start_on(addr: SocketAddr, status: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("receiver binds");
        let addr = listener.local_addr().expect("addr");
        let inbox = Inbox::default();
        inbox.status.store(status, Ordering::SeqCst);
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(inbox.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Receiver {
            addr,
            inbox,
            stop: Some(stop),
        }
    }

    /// A Zoom app's endpoint: answers 200, and Zoom's `endpoint.url_validation`
    /// challenge with the HMAC of its plain token under `webhook_secret`.
    pub async fn for_zoom(webhook_secret: &str) -> Receiver {
        let r = Receiver::start(200).await;
        *r.inbox.zoom_secret.lock().expect("lock") = Some(webhook_secret.to_owned());
        r
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answers `status` from now on.
    pub fn answer(&self, status: u16) {
        self.inbox.status.store(status, Ordering::SeqCst);
    }

    /// Records each request at once but answers it only after `hold`: the window in
    /// which a sender can be killed with its request in flight.
    pub fn hold(&self, hold: Duration) {
        *self.inbox.hold.lock().expect("lock") = hold;
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.inbox
            .received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until at least `n` requests arrived; panics after `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} webhooks, got {}: {got:#?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `n` requests arrived (panics after [`WAIT`]), then checks that no
    /// more arrive for `quiet`: "exactly n", decided without guessing how long the
    /// first n take.
    pub async fn wait_for_exactly(&self, n: usize, quiet: Duration) -> Vec<Received> {
        self.wait_for(n, WAIT).await;
        tokio::time::sleep(quiet).await;
        let got = self.received();
        assert_eq!(got.len(), n, "expected exactly {n} webhooks: {got:#?}");
        got
    }
}

async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> Response {
    let body = String::from_utf8_lossy(&body).into_owned();
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let plain = json["payload"]["plainToken"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let is_validation = json["event"] == "endpoint.url_validation";
    let index = {
        let mut received = inbox.received.lock().unwrap_or_else(|p| p.into_inner());
        received.push(Received {
            headers,
            body,
            json,
            at: Instant::now(),
            answered: false,
        });
        received.len() - 1
    };
    let hold = *inbox.hold.lock().expect("lock");
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    inbox.received.lock().unwrap_or_else(|p| p.into_inner())[index].answered = true;
    let secret = inbox.zoom_secret.lock().expect("lock").clone();
    if let (true, Some(secret)) = (is_validation, secret) {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
        mac.update(plain.as_bytes());
        let encrypted = hex::encode(mac.finalize().into_bytes());
        return Json(serde_json::json!({"plainToken": plain, "encryptedToken": encrypted}))
            .into_response();
    }
    StatusCode::from_u16(inbox.status.load(Ordering::SeqCst))
        .unwrap_or(StatusCode::OK)
        .into_response()
}
