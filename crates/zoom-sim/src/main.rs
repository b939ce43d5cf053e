use std::net::SocketAddr;

use clap::Parser;

/// A faithful Zoom simulator: OAuth, REST, webhooks, control API, fault injection.
#[derive(Debug, Parser)]
#[command(name = "zoom-sim", version)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:9000", env = "ZOOM_SIM_LISTEN")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    zoom_sim::serve(args.listen).await
}
