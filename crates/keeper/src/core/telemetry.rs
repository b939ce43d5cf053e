//! Logging setup: `text` or `json` lines on stderr, filtered by `RUST_LOG`
//! (default `info`). Request lines come from `http::observe`.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::core::config::LogFormat;

/// Installs the global subscriber writing to stderr. Safe to call more than once
/// (later calls do nothing).
pub fn init(format: LogFormat) {
    init_with_default_filter(format, DEFAULT_FILTER);
}

/// Like [`init`], with `default_filter` when `RUST_LOG` is unset (`zoomkeeper demo`
/// logs warnings only, so its walkthrough stays readable).
pub fn init_with_default_filter(format: LogFormat, default_filter: &str) {
    use std::io::IsTerminal as _;
    let ansi = std::io::stderr().is_terminal();
    install(format, std::io::stderr, ansi, default_filter);
}

/// Like [`init`], writing to `writer` (tests capture logs this way).
pub fn init_with_writer<W>(format: LogFormat, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    install(format, writer, false, DEFAULT_FILTER);
}

const DEFAULT_FILTER: &str = "info,sqlx=warn,hyper=warn,tower_http=warn";

fn install<W>(format: LogFormat, writer: W, ansi: bool, default_filter: &str)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Already installed (a second server in one test process): keep the first.
    let _ = result;
}
