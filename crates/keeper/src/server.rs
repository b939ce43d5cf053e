//! Binding the HTTP listener and serving until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::http::{self, AppState};
use crate::Keeper;

/// A bound, not yet serving, HTTP server.
pub struct Server {
    listener: TcpListener,
    router: axum::Router,
    addr: SocketAddr,
    public_url: String,
}

impl Server {
    /// Binds `keeper.config.listen` (port 0 picks a free port). `public_url` defaults
    /// to `http://{bound address}`.
    pub async fn bind(keeper: Arc<Keeper>) -> anyhow::Result<Server> {
        let listen = keeper.config.listen;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let public_url = keeper
            .config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let router = http::router(AppState {
            keeper,
            public_url: public_url.clone().into(),
        });
        Ok(Server {
            listener,
            router,
            addr,
            public_url,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The same server with its router wrapped by `wrap`.
    pub fn wrap_router(self, wrap: impl FnOnce(axum::Router) -> axum::Router) -> Server {
        Server {
            router: wrap(self.router),
            ..self
        }
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP")
    }
}

/// Completes on ctrl-c (SIGINT) or SIGTERM. The handlers are installed when this is
/// called (not when first polled), so a signal that arrives while starting up is
/// not lost.
#[cfg(unix)]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>, name: &'static str| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, signal = name, "cannot listen for a signal");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = wait(interrupt, "SIGINT") => {},
            () = wait(terminate, "SIGTERM") => {},
        }
        tracing::info!("shutting down");
    }
}

/// Completes on ctrl-c.
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("shutting down");
    }
}
