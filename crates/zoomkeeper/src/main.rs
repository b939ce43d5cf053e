//! `zoomkeeper`: the command line wiring the crates together (DESIGN.md §2).

mod demo;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use keeper::config::{Config, Settings};
use keeper::server::shutdown_signal;
use keeper::{projects, telemetry, Keeper};
use secrecy::ExposeSecret;

/// mimalloc rather than glibc's malloc: per request the server allocates and frees
/// blocks large enough that glibc consolidated its free lists on the hot path
/// (`zoomkeeper bench webhooks`, profiled; README "Benchmarks").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "zoomkeeper",
    version = env!("ZOOMKEEPER_VERSION"),
    about = "A self-hosted Zoom OAuth vault and token broker for meeting bots."
)]
struct Cli {
    #[command(flatten)]
    settings: SettingFlags,
    #[command(subcommand)]
    command: Command,
}

/// Settings given as flags; each overrides `ZOOMKEEPER_<NAME>` and the TOML file.
#[derive(Args, Default)]
struct SettingFlags {
    /// TOML file with settings (same names as the flags, with underscores).
    #[arg(long, global = true, env = "ZOOMKEEPER_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8000].
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Directory for the SQLite database and the master key [default: ./zoomkeeper-data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// sqlite:… or postgres://… [default: SQLite in the data directory].
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Base of absolute URLs in responses [default: http://{listen}].
    #[arg(long, global = true)]
    public_url: Option<String>,
    /// Zoom's OAuth base URL [default: https://zoom.us].
    #[arg(long, global = true)]
    zoom_oauth_url: Option<String>,
    /// Zoom's REST API base URL [default: https://api.zoom.us].
    #[arg(long, global = true)]
    zoom_api_url: Option<String>,
    /// Master key file [default: {data_dir}/master.key]. (An inline key is accepted
    /// only from the environment or the config file, never as a flag.)
    #[arg(long, global = true)]
    master_key_file: Option<PathBuf>,
    /// text or json.
    #[arg(long, global = true)]
    log_format: Option<String>,
    /// Allow callback and webhook URLs that resolve to private addresses.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    allow_private_callback_urls: Option<bool>,
    /// Delays between outgoing webhook attempts, e.g. 5s,5m,30m,2h.
    #[arg(long, global = true)]
    webhook_retry_schedule: Option<String>,
    /// api, worker or all [default: all].
    #[arg(long, global = true)]
    role: Option<String>,
    /// Requests per second allowed per project [default: 100].
    #[arg(long, global = true)]
    rate_limit_per_second: Option<f64>,
    /// Burst allowed per project above the sustained rate [default: 200].
    #[arg(long, global = true)]
    rate_limit_burst: Option<u32>,
    /// How often the token keeper looks for connections to refresh [default: 10s].
    #[arg(long, global = true)]
    token_keeper_interval: Option<String>,
    /// Refresh every connection at least this often, less up to 10 % jitter [default: 30d].
    #[arg(long, global = true)]
    token_refresh_max_age: Option<String>,
    /// How long a claimed webhook delivery stays with its process before another may
    /// take it over [default: 60s].
    #[arg(long, global = true)]
    webhook_delivery_lease: Option<String>,
    /// How long a connection's refresh lease lasts between renewals; a process that
    /// dies releases its connections within this long [default: 15s].
    #[arg(long, global = true)]
    token_lease_duration: Option<String>,
    /// Keep finished webhook deliveries this long [default: 30d].
    #[arg(long, global = true)]
    webhook_delivery_retention: Option<String>,
    /// Keep outbox events this long after they were fanned out [default: 7d].
    #[arg(long, global = true)]
    outbox_event_retention: Option<String>,
    /// Zoom calls a second per Zoom account for background work (token keeper,
    /// meeting sync), per process [default: 10].
    #[arg(long, global = true)]
    zoom_account_requests_per_second: Option<u32>,
    /// Zoom events handled at once; more are answered 503 at once, and Zoom sends
    /// them again later [default: 256].
    #[arg(long, global = true)]
    zoom_webhooks_in_flight: Option<u32>,
}

impl SettingFlags {
    fn to_settings(&self) -> Settings {
        Settings {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            public_url: self.public_url.clone(),
            zoom_oauth_url: self.zoom_oauth_url.clone(),
            zoom_api_url: self.zoom_api_url.clone(),
            master_key: None,
            master_key_file: self.master_key_file.clone(),
            log_format: self.log_format.clone(),
            allow_private_callback_urls: self.allow_private_callback_urls,
            webhook_retry_schedule: self.webhook_retry_schedule.clone(),
            role: self.role.clone(),
            rate_limit_per_second: self.rate_limit_per_second,
            rate_limit_burst: self.rate_limit_burst,
            token_keeper_interval: self.token_keeper_interval.clone(),
            token_refresh_max_age: self.token_refresh_max_age.clone(),
            webhook_delivery_lease: self.webhook_delivery_lease.clone(),
            token_lease_duration: self.token_lease_duration.clone(),
            webhook_delivery_retention: self.webhook_delivery_retention.clone(),
            outbox_event_retention: self.outbox_event_retention.clone(),
            zoom_account_requests_per_second: self.zoom_account_requests_per_second,
            zoom_webhooks_in_flight: self.zoom_webhooks_in_flight,
        }
    }

    fn load(&self) -> anyhow::Result<Config> {
        let env = Settings::from_env(std::env::vars())?;
        let config = Config::load(self.to_settings(), env, self.config.as_deref())?;
        Ok(config)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and the background workers.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Manage API keys.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Manage dashboard operators (the people who sign in at /dashboard).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the master keys that seal secrets at rest.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Run the Zoom simulator (on `--listen`, default 127.0.0.1:9000).
    Sim,
    /// Try zoomkeeper: the server, the Zoom simulator and sample data in a temporary
    /// directory, with a walkthrough of curl commands; Ctrl-C removes it all.
    Demo,
    /// Measure the service on this machine.
    #[cfg(feature = "bench")]
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Measure the service on this machine (in builds with `--features bench`).
    #[cfg(not(feature = "bench"))]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ProjectCommand {
    /// Create a project; prints its id alone.
    Create { name: String },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create an API key; prints the key alone (it is shown only this once).
    Create {
        /// The project's id (prj_…) or name.
        #[arg(long)]
        project: String,
        /// A label to tell keys apart.
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an operator. Prints a generated one-time password alone on stdout
    /// (shown only this once), or takes the password from stdin with --password-stdin.
    Create {
        #[arg(long)]
        email: String,
        /// Read the password from the first line of stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new active master key and re-seal every secret under it. The old keys
    /// stay in the key file until `keys retire`; running servers pick the new key up.
    Rotate,
    /// Once every process has picked up the new key: re-seal anything still under an
    /// old key, then remove the old keys from the key file. Safe to re-run.
    Retire,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Sim => {
            telemetry::init(keeper::config::LogFormat::Text);
            // `--listen` is the global setting flag; the simulator has its own default.
            let listen = cli.settings.listen.as_deref().unwrap_or("127.0.0.1:9000");
            let listen: SocketAddr = listen.parse().map_err(|_| {
                anyhow::anyhow!("--listen {listen:?} is not an address like 127.0.0.1:9000")
            })?;
            zoom_sim::serve(listen).await
        }
        Command::Demo => demo::run().await,
        #[cfg(feature = "bench")]
        Command::Bench(command) => {
            telemetry::init_with_writer(keeper::config::LogFormat::Text, std::io::sink);
            let zoomkeeper = std::env::current_exe().context("this program's path")?;
            bench::run(command, &zoomkeeper).await
        }
        #[cfg(not(feature = "bench"))]
        Command::Bench { .. } => anyhow::bail!(
            "this zoomkeeper was built without the benchmarks, so the shipped binary carries \
             none of their code; from a checkout, run them with \
             `cargo run --release -p zoomkeeper --features bench -- bench …`"
        ),
        command => {
            let config = cli.settings.load()?;
            telemetry::init(config.log_format);
            for name in Settings::unknown_env_names(std::env::vars()) {
                tracing::warn!(variable = %name, "ignoring an environment variable that names no setting");
            }
            match command {
                Command::Serve => serve(config).await,
                Command::Migrate => migrate(config).await,
                Command::Project(ProjectCommand::Create { name }) => {
                    let keeper = Keeper::open(config).await?;
                    let project =
                        projects::create(&*keeper.store, &keeper.vault, &keeper.clock, &name)
                            .await?;
                    println!("{}", project.id);
                    Ok(())
                }
                Command::ApiKey(ApiKeyCommand::Create { project, name }) => {
                    let keeper = Keeper::open(config).await?;
                    let project = projects::find(&*keeper.store, &project).await?;
                    let key =
                        projects::create_api_key(&*keeper.store, &keeper.clock, &project, &name)
                            .await?;
                    println!("{}", key.expose_secret());
                    Ok(())
                }
                Command::User(UserCommand::Create {
                    email,
                    password_stdin,
                }) => create_operator(config, &email, password_stdin).await,
                Command::Keys(KeysCommand::Rotate) => {
                    let done = keeper::service::rotate_master_key(&config).await?;
                    eprintln!(
                        "Added master key {} (now active) and re-sealed {} secrets under it.\n\
                         The old keys stay in the key file, so nothing breaks meanwhile; running \
                         `serve` processes seal under the new key within {} seconds.\n\
                         Once every process reads the new key file, run `zoomkeeper keys retire`.",
                        done.new_key_id,
                        done.resealed,
                        keeper::vault::KEY_FILE_CHECK_INTERVAL.as_secs()
                    );
                    Ok(())
                }
                Command::Keys(KeysCommand::Retire) => {
                    let done = keeper::service::retire_old_master_keys(&config).await?;
                    if done.stragglers_resealed > 0 {
                        eprintln!(
                            "Re-sealed {} secrets still under an old key.",
                            done.stragglers_resealed
                        );
                    }
                    if done.retired.is_empty() {
                        eprintln!(
                            "Every secret is sealed under master key {}, the only key; nothing to retire.",
                            done.active_key_id
                        );
                    } else {
                        let ids: Vec<String> = done.retired.iter().map(u32::to_string).collect();
                        eprintln!(
                            "Every secret is sealed under master key {}; retired key(s) {}.",
                            done.active_key_id,
                            ids.join(", ")
                        );
                    }
                    Ok(())
                }
                #[cfg(feature = "bench")]
                Command::Bench(_) => unreachable!("handled above"),
                #[cfg(not(feature = "bench"))]
                Command::Bench { .. } => unreachable!("handled above"),
                Command::Sim | Command::Demo => unreachable!("handled above"),
            }
        }
    }
}

async fn create_operator(config: Config, email: &str, password_stdin: bool) -> anyhow::Result<()> {
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        Some(secrecy::SecretString::from(
            line.trim_end_matches(['\r', '\n']).to_owned(),
        ))
    } else {
        None
    };
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen));
    let keeper = Keeper::open(config).await?;
    let created = keeper::operators::create(&*keeper.store, &keeper.clock, email, password, None)
        .await
        .map_err(|e| match e {
            keeper::operators::OperatorError::Invalid(fields) => anyhow::anyhow!(
                "{}",
                fields
                    .into_iter()
                    .map(|(field, problems)| format!("{field}: {}", problems.join(" ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            other => anyhow::Error::new(other),
        })?;
    let login = format!("{}/dashboard/login", public_url.trim_end_matches('/'));
    match created.generated_password {
        Some(password) => {
            eprintln!(
                "Created operator {}. Sign in at {login} with this password, shown only this once:",
                created.operator.email
            );
            println!("{}", password.expose_secret());
        }
        None => eprintln!(
            "Created operator {}. Sign in at {login}.",
            created.operator.email
        ),
    }
    Ok(())
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let store = keeper::service::open_store(&config).await?;
    store.migrate().await.context("applying migrations")?;
    eprintln!("The {} database is up to date.", store.backend());
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let role = config.role;
    let shutdown = shutdown_signal();
    let app = keeper::build(config).await?;
    if let Some(key) =
        projects::bootstrap(&*app.keeper.store, &app.keeper.vault, &app.keeper.clock).await?
    {
        println!(
            "Created project \"{}\". Its API key, shown only this once:\n\n    {}\n\nSend it as the header  Authorization: Token <key>",
            projects::DEFAULT_PROJECT_NAME,
            key.expose_secret()
        );
    }
    let backend = app.keeper.store.backend();
    if let Some(public_url) = app.public_url() {
        if app.keeper.store.list_operators().await?.is_empty() {
            println!(
                "Dashboard: {public_url}/dashboard/ — add the first operator with\n\n    \
                 zoomkeeper user create --email you@example.com\n"
            );
        }
    }
    match (app.addr(), app.public_url()) {
        (Some(addr), Some(public_url)) => {
            tracing::info!(%addr, public_url, backend, role = ?role, "zoomkeeper listening")
        }
        _ => tracing::info!(backend, "running as a worker only"),
    }
    let served = app.run(shutdown).await;
    tracing::info!("stopped");
    served
}
