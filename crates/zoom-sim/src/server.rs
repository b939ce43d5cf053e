//! The shared state, the router, and the accept loop (hyper directly, so a fault can
//! close a connection without answering).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::Request;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::faults::{self, DropConnection};
use crate::world::World;
use crate::zoom_error::ApiError;
use crate::{control, oauth, rest};

pub(crate) struct Shared {
    world: Mutex<World>,
    /// `http://127.0.0.1:PORT`, returned as `api_url` in token answers.
    pub base_url: String,
    /// For webhooks: no redirects, a timeout per request.
    pub http: reqwest::Client,
}

pub(crate) type Sim = Arc<Shared>;

impl Shared {
    pub fn new(base_url: String) -> anyhow::Result<Sim> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Arc::new(Shared {
            world: Mutex::new(World::default()),
            base_url,
            http,
        }))
    }

    /// The world lock. Every rule runs with it held, which makes refresh rotation
    /// atomic. A panic while holding it cannot leave a half-rotated token (rotation is
    /// one map update), so a poisoned lock is safe to reuse.
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) fn router(sim: Sim) -> Router {
    let zoom = Router::new()
        .route(
            "/oauth/authorize",
            get(oauth::authorize_page).post(oauth::authorize_submit),
        )
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/v2/users", get(rest::list_users))
        .route("/v2/users/me", get(rest::users_me))
        .route("/v2/users/me/meetings", get(rest::my_meetings))
        .route("/v2/users/me/token", get(rest::my_token))
        .route("/v2/users/me/zak", get(rest::my_zak))
        .route("/v2/users/{user_id}/meetings", get(rest::user_meetings))
        .route("/v2/users/{user_id}/token", get(rest::user_token))
        .route(
            "/v2/meetings/{meeting_id}/jointoken/local_recording",
            get(rest::local_recording_token),
        )
        .route_layer(middleware::from_fn_with_state(
            sim.clone(),
            faults::zoom_surface,
        ));
    zoom.merge(control::router())
        .fallback(not_found)
        .with_state(sim)
}

async fn not_found(req: Request) -> Response {
    if req.uri().path().starts_with("/v2/") {
        ApiError::new(404, 404, "Not found.").into_response()
    } else {
        ApiError::control(
            404,
            format!("no route {} {}", req.method(), req.uri().path()),
        )
        .into_response()
    }
}

#[derive(Debug)]
struct ConnectionDropped;

impl std::fmt::Display for ConnectionDropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for ConnectionDropped {}

/// Serves until `shutdown` fires; open connections are aborted then.
pub(crate) async fn run(listener: TcpListener, app: Router, mut shutdown: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let app = app.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let app = app.clone();
                        async move {
                            let response = match app.oneshot(req).await {
                                Ok(r) => r,
                                Err(never) => match never {},
                            };
                            if response.extensions().get::<DropConnection>().is_some() {
                                // hyper closes the connection without writing anything.
                                return Err(ConnectionDropped);
                            }
                            Ok::<_, ConnectionDropped>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
    connections.abort_all();
}

pub(crate) async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
