//! Configuration: flags > `ZOOMKEEPER_*` environment > optional TOML file, with one
//! name per setting across the three (DESIGN.md §2).
//!
//! [`Settings`] is one layer (every field optional); [`Config::resolve`] merges the
//! layers, fills in defaults and validates, failing with a message a person can act
//! on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// One layer of settings. The TOML file, the environment and the command line each
/// produce one; field names are the setting names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub public_url: Option<String>,
    pub zoom_oauth_url: Option<String>,
    pub zoom_api_url: Option<String>,
    /// An inline keyring (see `vault::Keyring::from_inline`). Prefer `master_key_file`.
    pub master_key: Option<String>,
    pub master_key_file: Option<PathBuf>,
    pub log_format: Option<String>,
    pub allow_private_callback_urls: Option<bool>,
    pub webhook_retry_schedule: Option<String>,
    pub role: Option<String>,
    /// Sustained requests per second allowed per project.
    pub rate_limit_per_second: Option<f64>,
    /// Requests a project may make in a burst above the sustained rate.
    pub rate_limit_burst: Option<u32>,
    /// How often the token keeper looks for connections to refresh, e.g. `10s`.
    pub token_keeper_interval: Option<String>,
    /// Longest a connection goes without a refresh, e.g. `30d`.
    pub token_refresh_max_age: Option<String>,
    /// How long a process holds a claimed webhook delivery before another may take
    /// it over, e.g. `60s`.
    pub webhook_delivery_lease: Option<String>,
    /// How long a connection's refresh lease lasts between renewals, e.g. `15s`.
    pub token_lease_duration: Option<String>,
    /// How long a finished (succeeded or failed) webhook delivery is kept, e.g. `30d`.
    pub webhook_delivery_retention: Option<String>,
    /// How long an outbox event is kept after it was fanned out to deliveries, e.g. `7d`.
    pub outbox_event_retention: Option<String>,
    /// Zoom calls a second per Zoom account that background work (token keeper,
    /// meeting sync) may make, per process.
    pub zoom_account_requests_per_second: Option<u32>,
    /// Zoom events a process handles at once; more are answered 503 at once (Zoom
    /// sends them again later).
    pub zoom_webhooks_in_flight: Option<u32>,
}

/// Every setting name, as used in TOML and (upper-cased, `ZOOMKEEPER_` prefixed) in
/// the environment.
pub const SETTING_NAMES: &[&str] = &[
    "listen",
    "data_dir",
    "database_url",
    "public_url",
    "zoom_oauth_url",
    "zoom_api_url",
    "master_key",
    "master_key_file",
    "log_format",
    "allow_private_callback_urls",
    "webhook_retry_schedule",
    "role",
    "rate_limit_per_second",
    "rate_limit_burst",
    "token_keeper_interval",
    "token_refresh_max_age",
    "webhook_delivery_lease",
    "token_lease_duration",
    "webhook_delivery_retention",
    "outbox_event_retention",
    "zoom_account_requests_per_second",
    "zoom_webhooks_in_flight",
];

/// Which database a `database_url` names: the one rule, used by configuration,
/// start-up and storage alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Sqlite,
    Postgres,
}

impl Database {
    /// `sqlite:…` names SQLite; `postgres://…` or `postgresql://…` PostgreSQL (the
    /// scheme in any case); anything else names neither.
    pub fn named_by(url: &str) -> Option<Database> {
        let (scheme, rest) = url.trim_start().split_once(':')?;
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Some(Database::Sqlite),
            "postgres" | "postgresql" if rest.starts_with("//") => Some(Database::Postgres),
            _ => None,
        }
    }

    /// The database's name as people write it.
    pub fn name(self) -> &'static str {
        match self {
            Database::Sqlite => "SQLite",
            Database::Postgres => "PostgreSQL",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("{setting}: {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        message: message.into(),
    }
}

impl Settings {
    /// Reads the `ZOOMKEEPER_*` variables from `vars` (pass `std::env::vars()`).
    pub fn from_env(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut s = Settings::default();
        for (name, value) in vars {
            let Some(key) = name.strip_prefix("ZOOMKEEPER_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            match key.as_str() {
                "listen" => s.listen = Some(value),
                "data_dir" => s.data_dir = Some(value.into()),
                "database_url" => s.database_url = Some(value),
                "public_url" => s.public_url = Some(value),
                "zoom_oauth_url" => s.zoom_oauth_url = Some(value),
                "zoom_api_url" => s.zoom_api_url = Some(value),
                "master_key" => s.master_key = Some(value),
                "master_key_file" => s.master_key_file = Some(value.into()),
                "log_format" => s.log_format = Some(value),
                "allow_private_callback_urls" => {
                    s.allow_private_callback_urls = Some(parse_bool(&value).ok_or_else(|| {
                        invalid(
                            "allow_private_callback_urls",
                            "ZOOMKEEPER_ALLOW_PRIVATE_CALLBACK_URLS must be true or false",
                        )
                    })?)
                }
                "webhook_retry_schedule" => s.webhook_retry_schedule = Some(value),
                "role" => s.role = Some(value),
                "rate_limit_per_second" => {
                    s.rate_limit_per_second = Some(value.trim().parse().map_err(|_| {
                        invalid(
                            "rate_limit_per_second",
                            "ZOOMKEEPER_RATE_LIMIT_PER_SECOND must be a number",
                        )
                    })?)
                }
                "rate_limit_burst" => {
                    s.rate_limit_burst = Some(value.trim().parse().map_err(|_| {
                        invalid(
                            "rate_limit_burst",
                            "ZOOMKEEPER_RATE_LIMIT_BURST must be a whole number",
                        )
                    })?)
                }
                "token_keeper_interval" => s.token_keeper_interval = Some(value),
                "token_refresh_max_age" => s.token_refresh_max_age = Some(value),
                "webhook_delivery_lease" => s.webhook_delivery_lease = Some(value),
                "token_lease_duration" => s.token_lease_duration = Some(value),
                "webhook_delivery_retention" => s.webhook_delivery_retention = Some(value),
                "outbox_event_retention" => s.outbox_event_retention = Some(value),
                "zoom_account_requests_per_second" => {
                    s.zoom_account_requests_per_second =
                        Some(value.trim().parse().map_err(|_| {
                            invalid(
                            "zoom_account_requests_per_second",
                            "ZOOMKEEPER_ZOOM_ACCOUNT_REQUESTS_PER_SECOND must be a whole number",
                        )
                        })?)
                }
                "zoom_webhooks_in_flight" => {
                    s.zoom_webhooks_in_flight = Some(value.trim().parse().map_err(|_| {
                        invalid(
                            "zoom_webhooks_in_flight",
                            "ZOOMKEEPER_ZOOM_WEBHOOKS_IN_FLIGHT must be a whole number",
                        )
                    })?)
                }
                // Unknown names are reported by `unknown_env_names`, not refused:
                // tools and tests share the prefix.
                _ => {}
            }
        }
        Ok(s)
    }

    /// `ZOOMKEEPER_*` variables that name no setting (likely typos), for a warning.
    pub fn unknown_env_names(vars: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
        const TOOLS: &[&str] = &["config", "require_postgres", "log"];
        vars.into_iter()
            .filter_map(|(name, _)| {
                let key = name.strip_prefix("ZOOMKEEPER_")?.to_ascii_lowercase();
                (!SETTING_NAMES.contains(&key.as_str()) && !TOOLS.contains(&key.as_str()))
                    .then_some(name)
            })
            .collect()
    }

    pub fn from_toml_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
            path: path.to_owned(),
            message: e.message().to_owned(),
        })
    }

    /// `self` where set, otherwise `lower`.
    pub fn over(self, lower: Settings) -> Settings {
        Settings {
            listen: self.listen.or(lower.listen),
            data_dir: self.data_dir.or(lower.data_dir),
            database_url: self.database_url.or(lower.database_url),
            public_url: self.public_url.or(lower.public_url),
            zoom_oauth_url: self.zoom_oauth_url.or(lower.zoom_oauth_url),
            zoom_api_url: self.zoom_api_url.or(lower.zoom_api_url),
            master_key: self.master_key.or(lower.master_key),
            master_key_file: self.master_key_file.or(lower.master_key_file),
            log_format: self.log_format.or(lower.log_format),
            allow_private_callback_urls: self
                .allow_private_callback_urls
                .or(lower.allow_private_callback_urls),
            webhook_retry_schedule: self.webhook_retry_schedule.or(lower.webhook_retry_schedule),
            role: self.role.or(lower.role),
            rate_limit_per_second: self.rate_limit_per_second.or(lower.rate_limit_per_second),
            rate_limit_burst: self.rate_limit_burst.or(lower.rate_limit_burst),
            token_keeper_interval: self.token_keeper_interval.or(lower.token_keeper_interval),
            token_refresh_max_age: self.token_refresh_max_age.or(lower.token_refresh_max_age),
            webhook_delivery_lease: self.webhook_delivery_lease.or(lower.webhook_delivery_lease),
            token_lease_duration: self.token_lease_duration.or(lower.token_lease_duration),
            webhook_delivery_retention: self
                .webhook_delivery_retention
                .or(lower.webhook_delivery_retention),
            outbox_event_retention: self.outbox_event_retention.or(lower.outbox_event_retention),
            zoom_account_requests_per_second: self
                .zoom_account_requests_per_second
                .or(lower.zoom_account_requests_per_second),
            zoom_webhooks_in_flight: self
                .zoom_webhooks_in_flight
                .or(lower.zoom_webhooks_in_flight),
        }
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Which parts of the service a `serve` process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Api,
    Worker,
    All,
}

impl Role {
    pub fn serves_http(self) -> bool {
        matches!(self, Role::Api | Role::All)
    }
    pub fn runs_workers(self) -> bool {
        matches!(self, Role::Worker | Role::All)
    }
}

/// Where the master keyring comes from.
#[derive(Clone)]
pub enum MasterKeySource {
    /// Read from (or, on first run, generated into) this file.
    File(PathBuf),
    /// Given inline; never printed.
    Inline(secrecy::SecretString),
}

impl std::fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MasterKeySource::File(p) => f.debug_tuple("File").field(p).finish(),
            MasterKeySource::Inline(_) => f.write_str("Inline([redacted])"),
        }
    }
}

/// The resolved, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// Base of every absolute URL the API returns; no trailing slash. `None` means
    /// `http://{bound address}`, decided once the listener is bound (so port 0 works).
    pub public_url: Option<String>,
    pub zoom_oauth_url: String,
    pub zoom_api_url: String,
    pub master_key: MasterKeySource,
    pub log_format: LogFormat,
    pub allow_private_callback_urls: bool,
    pub webhook_retry_schedule: Vec<Duration>,
    pub role: Role,
    pub rate_limit_per_second: f64,
    pub rate_limit_burst: u32,
    /// Pause between the token keeper's rounds.
    pub token_keeper_interval: Duration,
    /// Every connection is refreshed at least this often (less up to 10 % jitter).
    pub token_refresh_max_age: Duration,
    /// A claimed webhook delivery's lease; well over the 10 s attempt timeout, except
    /// in tests that kill a process mid-delivery and want the row back soon.
    pub webhook_delivery_lease: Duration,
    /// A connection's refresh lease: renewed every third of it while a refresh runs,
    /// so a process that dies releases its connections within this long.
    pub token_lease_duration: Duration,
    /// Housekeeping deletes a finished webhook delivery (`success` or `failure`) this
    /// long after its last change; pending ones are never deleted.
    pub webhook_delivery_retention: Duration,
    /// Housekeeping deletes an outbox event this long after it was fanned out; one not
    /// fanned out yet is never deleted.
    pub outbox_event_retention: Duration,
    /// Zoom calls a second per Zoom account for background work, per process (also
    /// the burst).
    pub zoom_account_requests_per_second: u32,
    /// Zoom events this process handles at once; the next are shed with a 503.
    pub zoom_webhooks_in_flight: u32,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
/// Enough to keep the receipt writers' batches full, few enough that an accepted
/// event waits well under Zoom's 3 s even at a few hundred events a second.
pub const DEFAULT_ZOOM_WEBHOOKS_IN_FLIGHT: u32 = 256;
pub const DEFAULT_DATA_DIR: &str = "./zoomkeeper-data";
pub const DEFAULT_ZOOM_OAUTH_URL: &str = "https://zoom.us";
pub const DEFAULT_ZOOM_API_URL: &str = "https://api.zoom.us";
pub const DEFAULT_WEBHOOK_RETRY_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";
pub const DEFAULT_RATE_LIMIT_PER_SECOND: f64 = 100.0;
pub const DEFAULT_RATE_LIMIT_BURST: u32 = 200;
pub const DEFAULT_TOKEN_KEEPER_INTERVAL: &str = "10s";
pub const DEFAULT_TOKEN_REFRESH_MAX_AGE: &str = "30d";
pub const DEFAULT_WEBHOOK_DELIVERY_LEASE: &str = "60s";
/// Zoom's HTTP timeout (10 s) and a few seconds of margin.
pub const DEFAULT_TOKEN_LEASE_DURATION: &str = "15s";
/// A month of delivery history to look at and resend from.
pub const DEFAULT_WEBHOOK_DELIVERY_RETENTION: &str = "30d";
/// A fanned-out event lives on in its deliveries; a week is left for debugging.
pub const DEFAULT_OUTBOX_EVENT_RETENTION: &str = "7d";
/// Zoom's lowest per-second limit (Heavy APIs on a Pro account), shared with every
/// other client of the account; Business accounts may raise it (Medium 60/s).
pub const DEFAULT_ZOOM_ACCOUNT_REQUESTS_PER_SECOND: u32 = 10;
/// Retention periods shorter than this are refused: likely a unit mistake.
const MIN_RETENTION: Duration = Duration::from_secs(60 * 60);
/// And longer than this (ten years): the cutoff must stay a date.
const MAX_RETENTION: Duration = Duration::from_secs(3650 * 86_400);

impl Config {
    /// Merges `flags` over the environment over the TOML file at `config_file` (if
    /// any), then validates.
    pub fn load(
        flags: Settings,
        env: Settings,
        config_file: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let file = match config_file {
            Some(path) => Settings::from_toml_file(path)?,
            None => Settings::default(),
        };
        Config::resolve(flags.over(env).over(file))
    }

    /// Fills in defaults and validates one merged layer.
    pub fn resolve(s: Settings) -> Result<Config, ConfigError> {
        let listen_text = s.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_text.trim().parse().map_err(|_| {
            invalid(
                "listen",
                format!("{listen_text:?} is not an address; use IP:PORT such as 127.0.0.1:8000"),
            )
        })?;
        let data_dir = s
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        let database_url = match s.database_url {
            Some(url) => {
                let url = url.trim().to_owned();
                if Database::named_by(&url).is_none() {
                    return Err(invalid(
                        "database_url",
                        "must start with sqlite:, postgres:// or postgresql://",
                    ));
                }
                url
            }
            None => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("zoomkeeper.db").display()
            ),
        };
        let public_url = match s.public_url {
            Some(u) => Some(validate_base_url("public_url", &u)?),
            None => None,
        };
        let zoom_oauth_url = validate_base_url(
            "zoom_oauth_url",
            s.zoom_oauth_url
                .as_deref()
                .unwrap_or(DEFAULT_ZOOM_OAUTH_URL),
        )?;
        let zoom_api_url = validate_base_url(
            "zoom_api_url",
            s.zoom_api_url.as_deref().unwrap_or(DEFAULT_ZOOM_API_URL),
        )?;
        let master_key = match (s.master_key, s.master_key_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "master_key",
                    "set either master_key or master_key_file, not both",
                ))
            }
            (Some(inline), None) => {
                if inline.trim().is_empty() {
                    return Err(invalid("master_key", "must not be empty"));
                }
                MasterKeySource::Inline(secrecy::SecretString::from(inline))
            }
            (None, Some(path)) => MasterKeySource::File(path),
            (None, None) => MasterKeySource::File(data_dir.join("master.key")),
        };
        let log_format = match s.log_format.as_deref().map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(
                    "log_format",
                    format!("{other:?} is not a log format; use text or json"),
                ))
            }
        };
        let webhook_retry_schedule = parse_schedule(
            s.webhook_retry_schedule
                .as_deref()
                .unwrap_or(DEFAULT_WEBHOOK_RETRY_SCHEDULE),
        )?;
        let role = match s.role.as_deref().map(str::trim) {
            None | Some("all") => Role::All,
            Some("api") => Role::Api,
            Some("worker") => Role::Worker,
            Some(other) => {
                return Err(invalid(
                    "role",
                    format!("{other:?} is not a role; use api, worker or all"),
                ))
            }
        };
        let rate_limit_per_second = s
            .rate_limit_per_second
            .unwrap_or(DEFAULT_RATE_LIMIT_PER_SECOND);
        if !(rate_limit_per_second.is_finite() && rate_limit_per_second > 0.0) {
            return Err(invalid(
                "rate_limit_per_second",
                "must be a positive number",
            ));
        }
        let rate_limit_burst = s.rate_limit_burst.unwrap_or(DEFAULT_RATE_LIMIT_BURST);
        if rate_limit_burst == 0 {
            return Err(invalid("rate_limit_burst", "must be at least 1"));
        }
        let token_keeper_interval = parse_duration(
            "token_keeper_interval",
            s.token_keeper_interval
                .as_deref()
                .unwrap_or(DEFAULT_TOKEN_KEEPER_INTERVAL),
        )?;
        if token_keeper_interval.is_zero() {
            return Err(invalid("token_keeper_interval", "must be more than 0s"));
        }
        let token_refresh_max_age = parse_duration(
            "token_refresh_max_age",
            s.token_refresh_max_age
                .as_deref()
                .unwrap_or(DEFAULT_TOKEN_REFRESH_MAX_AGE),
        )?;
        if token_refresh_max_age.is_zero() {
            return Err(invalid("token_refresh_max_age", "must be more than 0s"));
        }
        if token_refresh_max_age > Duration::from_secs(89 * 86_400) {
            // Zoom forgets a refresh token unused for about 90 days.
            return Err(invalid(
                "token_refresh_max_age",
                "must be at most 89d: Zoom forgets refresh tokens unused for about 90 days",
            ));
        }
        let webhook_delivery_lease = parse_duration(
            "webhook_delivery_lease",
            s.webhook_delivery_lease
                .as_deref()
                .unwrap_or(DEFAULT_WEBHOOK_DELIVERY_LEASE),
        )?;
        if webhook_delivery_lease < Duration::from_secs(1) {
            return Err(invalid("webhook_delivery_lease", "must be at least 1s"));
        }
        let token_lease_duration = parse_duration(
            "token_lease_duration",
            s.token_lease_duration
                .as_deref()
                .unwrap_or(DEFAULT_TOKEN_LEASE_DURATION),
        )?;
        if !(Duration::from_secs(3)..=Duration::from_secs(600)).contains(&token_lease_duration) {
            return Err(invalid(
                "token_lease_duration",
                "must be between 3s and 10m: it is renewed every third of its length",
            ));
        }
        let webhook_delivery_retention = parse_retention(
            "webhook_delivery_retention",
            s.webhook_delivery_retention
                .as_deref()
                .unwrap_or(DEFAULT_WEBHOOK_DELIVERY_RETENTION),
        )?;
        let outbox_event_retention = parse_retention(
            "outbox_event_retention",
            s.outbox_event_retention
                .as_deref()
                .unwrap_or(DEFAULT_OUTBOX_EVENT_RETENTION),
        )?;
        let zoom_account_requests_per_second = s
            .zoom_account_requests_per_second
            .unwrap_or(DEFAULT_ZOOM_ACCOUNT_REQUESTS_PER_SECOND);
        if !(1..=1000).contains(&zoom_account_requests_per_second) {
            return Err(invalid(
                "zoom_account_requests_per_second",
                "must be from 1 to 1000 (Zoom's per-second limits are 10 to 80 per account)",
            ));
        }
        let zoom_webhooks_in_flight = s
            .zoom_webhooks_in_flight
            .unwrap_or(DEFAULT_ZOOM_WEBHOOKS_IN_FLIGHT);
        if !(1..=100_000).contains(&zoom_webhooks_in_flight) {
            return Err(invalid(
                "zoom_webhooks_in_flight",
                "must be from 1 to 100000",
            ));
        }
        Ok(Config {
            listen,
            data_dir,
            database_url,
            public_url,
            zoom_oauth_url,
            zoom_api_url,
            master_key,
            log_format,
            allow_private_callback_urls: s.allow_private_callback_urls.unwrap_or(false),
            webhook_retry_schedule,
            role,
            rate_limit_per_second,
            rate_limit_burst,
            token_keeper_interval,
            token_refresh_max_age,
            webhook_delivery_lease,
            token_lease_duration,
            webhook_delivery_retention,
            outbox_event_retention,
            zoom_account_requests_per_second,
            zoom_webhooks_in_flight,
        })
    }
}

/// A retention period: a duration from [`MIN_RETENTION`] to [`MAX_RETENTION`].
fn parse_retention(setting: &'static str, raw: &str) -> Result<Duration, ConfigError> {
    let d = parse_duration(setting, raw)?;
    if d < MIN_RETENTION {
        return Err(invalid(
            setting,
            format!(
                "{:?} is too short; keep rows at least 1h, e.g. 7d",
                raw.trim()
            ),
        ));
    }
    if d > MAX_RETENTION {
        return Err(invalid(
            setting,
            format!("{:?} is too long; at most 3650d", raw.trim()),
        ));
    }
    Ok(d)
}

/// An absolute http(s) URL with no query or fragment, returned without a trailing slash.
fn validate_base_url(setting: &'static str, raw: &str) -> Result<String, ConfigError> {
    let trimmed = raw.trim();
    let parsed = url::Url::parse(trimmed).map_err(|e| {
        invalid(
            setting,
            format!("{trimmed:?} is not a URL ({e}); use e.g. https://example.com"),
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid(
            setting,
            format!("{trimmed:?} must be an http:// or https:// URL"),
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid(
            setting,
            format!("{trimmed:?} must not have a query or fragment"),
        ));
    }
    Ok(trimmed.trim_end_matches('/').to_owned())
}

/// `5s,5m,30m,2h` → durations. Units: s, m, h, d.
pub fn parse_schedule(raw: &str) -> Result<Vec<Duration>, ConfigError> {
    raw.split(',')
        .map(|part| {
            parse_delay(part).ok_or_else(|| {
                invalid(
                    "webhook_retry_schedule",
                    format!(
                        "{:?} is not a delay; use a comma-separated list like 5s,5m,30m,2h",
                        part.trim()
                    ),
                )
            })
        })
        .collect()
}

/// One duration such as `10s`, `5m`, `2h` or `30d`, for the setting named `setting`.
pub fn parse_duration(setting: &'static str, raw: &str) -> Result<Duration, ConfigError> {
    parse_delay(raw).ok_or_else(|| {
        invalid(
            setting,
            format!(
                "{:?} is not a duration; use a number and a unit (s, m, h, d) such as 10s or 30d",
                raw.trim()
            ),
        )
    })
}

/// `N` followed by one of ms, s, m, h, d (`ms` lets tests compress schedules).
fn parse_delay(raw: &str) -> Option<Duration> {
    let part = raw.trim();
    if part.len() < 2 || !part.is_ascii() {
        return None;
    }
    if let Some(millis) = part.strip_suffix("ms") {
        return millis.parse().ok().map(Duration::from_millis);
    }
    let (number, unit) = part.split_at(part.len() - 1);
    let n: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }?;
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design() {
        let c = Config::resolve(Settings::default()).expect("defaults are valid");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(
            c.database_url,
            "sqlite://./zoomkeeper-data/zoomkeeper.db?mode=rwc"
        );
        assert_eq!(c.zoom_oauth_url, "https://zoom.us");
        assert_eq!(c.role, Role::All);
        assert!(!c.allow_private_callback_urls);
        assert_eq!(c.webhook_retry_schedule.len(), 7);
        assert!(matches!(c.master_key, MasterKeySource::File(ref p) if p.ends_with("master.key")));
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let flags = Settings {
            listen: Some("127.0.0.1:1".into()),
            ..Settings::default()
        };
        let env = Settings::from_env([
            ("ZOOMKEEPER_LISTEN".to_owned(), "127.0.0.1:2".to_owned()),
            ("ZOOMKEEPER_ROLE".to_owned(), "api".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ])
        .expect("env parses");
        let file: Settings =
            toml::from_str("listen = \"127.0.0.1:3\"\nrole = \"worker\"\nlog_format = \"json\"")
                .expect("toml parses");
        let c = Config::resolve(flags.over(env).over(file)).expect("valid");
        assert_eq!(c.listen.port(), 1);
        assert_eq!(c.role, Role::Api);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn bad_values_are_named() {
        let err = Config::resolve(Settings {
            role: Some("boss".into()),
            ..Settings::default()
        })
        .expect_err("invalid role");
        assert!(err.to_string().starts_with("role:"), "{err}");
        assert!(toml::from_str::<Settings>("listne = \"x\"").is_err());
        assert_eq!(
            Settings::unknown_env_names([("ZOOMKEEPER_LISTNE".to_owned(), "x".to_owned())]),
            vec!["ZOOMKEEPER_LISTNE".to_owned()]
        );
        assert!(parse_schedule("5s,,2h").is_err());
        assert_eq!(
            parse_schedule("5s,2m").expect("valid")[1],
            Duration::from_secs(120)
        );
    }

    #[test]
    fn token_keeper_settings_take_durations() {
        let c = Config::resolve(Settings::default()).expect("defaults");
        assert_eq!(c.token_keeper_interval, Duration::from_secs(10));
        assert_eq!(c.token_refresh_max_age, Duration::from_secs(30 * 86_400));
        let env = Settings::from_env([
            (
                "ZOOMKEEPER_TOKEN_KEEPER_INTERVAL".to_owned(),
                "2s".to_owned(),
            ),
            (
                "ZOOMKEEPER_TOKEN_REFRESH_MAX_AGE".to_owned(),
                "1h".to_owned(),
            ),
        ])
        .expect("env parses");
        let c = Config::resolve(env).expect("valid");
        assert_eq!(c.token_keeper_interval, Duration::from_secs(2));
        assert_eq!(c.token_refresh_max_age, Duration::from_secs(3600));
        for bad in ["0s", "ten", "5x", "90d"] {
            let err = Config::resolve(Settings {
                token_refresh_max_age: Some(bad.into()),
                ..Settings::default()
            })
            .expect_err(bad);
            assert!(
                err.to_string().starts_with("token_refresh_max_age:"),
                "{err}"
            );
        }
        let toml: Settings = toml::from_str("token_keeper_interval = \"1m\"").expect("toml");
        assert_eq!(
            Config::resolve(toml).expect("valid").token_keeper_interval,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn retention_settings_take_durations() {
        let c = Config::resolve(Settings::default()).expect("defaults");
        assert_eq!(
            c.webhook_delivery_retention,
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(c.outbox_event_retention, Duration::from_secs(7 * 86_400));
        let env = Settings::from_env([
            (
                "ZOOMKEEPER_WEBHOOK_DELIVERY_RETENTION".to_owned(),
                "90d".to_owned(),
            ),
            (
                "ZOOMKEEPER_OUTBOX_EVENT_RETENTION".to_owned(),
                "2h".to_owned(),
            ),
        ])
        .expect("env parses");
        assert!(Settings::unknown_env_names([(
            "ZOOMKEEPER_OUTBOX_EVENT_RETENTION".to_owned(),
            "2h".to_owned()
        )])
        .is_empty());
        let file: Settings =
            toml::from_str("outbox_event_retention = \"1d\"").expect("toml parses");
        let c = Config::resolve(env.clone()).expect("valid");
        assert_eq!(
            c.webhook_delivery_retention,
            Duration::from_secs(90 * 86_400)
        );
        assert_eq!(c.outbox_event_retention, Duration::from_secs(2 * 3600));
        let c = Config::resolve(Settings::default().over(file)).expect("valid");
        assert_eq!(c.outbox_event_retention, Duration::from_secs(86_400));
        for (setting, bad) in [
            ("webhook_delivery_retention", "10m"),
            ("webhook_delivery_retention", "soon"),
            ("outbox_event_retention", "0s"),
            ("outbox_event_retention", "99999999d"),
        ] {
            let settings = if setting == "outbox_event_retention" {
                Settings {
                    outbox_event_retention: Some(bad.into()),
                    ..Settings::default()
                }
            } else {
                Settings {
                    webhook_delivery_retention: Some(bad.into()),
                    ..Settings::default()
                }
            };
            let err = Config::resolve(settings).expect_err(bad);
            assert!(err.to_string().starts_with(&format!("{setting}:")), "{err}");
        }
    }

    #[test]
    fn the_zoom_account_budget_is_a_rate_from_1_to_1000() {
        let c = Config::resolve(Settings::default()).expect("defaults");
        assert_eq!(c.zoom_account_requests_per_second, 10);
        let env = Settings::from_env([(
            "ZOOMKEEPER_ZOOM_ACCOUNT_REQUESTS_PER_SECOND".to_owned(),
            "60".to_owned(),
        )])
        .expect("env parses");
        assert_eq!(
            Config::resolve(env)
                .expect("valid")
                .zoom_account_requests_per_second,
            60
        );
        for bad in ["0", "1001"] {
            let err = Config::resolve(Settings {
                zoom_account_requests_per_second: Some(bad.parse().expect("number")),
                ..Settings::default()
            })
            .expect_err(bad);
            assert!(
                err.to_string()
                    .starts_with("zoom_account_requests_per_second:"),
                "{err}"
            );
        }
        let err = Settings::from_env([(
            "ZOOMKEEPER_ZOOM_ACCOUNT_REQUESTS_PER_SECOND".to_owned(),
            "fast".to_owned(),
        )])
        .expect_err("not a number");
        assert!(err.to_string().contains("whole number"), "{err}");
    }

    #[test]
    fn webhook_delivery_lease_defaults_to_a_minute() {
        let c = Config::resolve(Settings::default()).expect("defaults");
        assert_eq!(c.webhook_delivery_lease, Duration::from_secs(60));
        let env = Settings::from_env([(
            "ZOOMKEEPER_WEBHOOK_DELIVERY_LEASE".to_owned(),
            "5s".to_owned(),
        )])
        .expect("env parses");
        let c = Config::resolve(env).expect("valid");
        assert_eq!(c.webhook_delivery_lease, Duration::from_secs(5));
        let err = Config::resolve(Settings {
            webhook_delivery_lease: Some("500ms".into()),
            ..Settings::default()
        })
        .expect_err("too short");
        assert!(
            err.to_string().starts_with("webhook_delivery_lease:"),
            "{err}"
        );
    }

    #[test]
    fn one_rule_names_the_database() {
        for (url, db) in [
            ("sqlite://./x.db?mode=rwc", Some(Database::Sqlite)),
            ("sqlite:x.db", Some(Database::Sqlite)),
            ("postgres://u@h/db", Some(Database::Postgres)),
            ("PostgreSQL://u@h/db", Some(Database::Postgres)),
            (" postgresql://h/db", Some(Database::Postgres)),
            ("postgres:db", None),
            ("mysql://h/db", None),
            ("./x.db", None),
            ("", None),
        ] {
            assert_eq!(Database::named_by(url), db, "{url}");
        }
    }
}
