//! What every bench starts from: a fresh database of each kind, the service on it
//! with the Zoom simulator, a project, an app and connections — all written through
//! the service's own domain functions and `Store`, never raw SQL, so a migration
//! cannot leave the benches behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use keeper::config::{Config, Settings};
use keeper::server::Server;
use keeper::storage::{AppKind, AppRow, ConnectionRow, ConnectionState, NewConnectionEvent};
use keeper::vault::Slot;
use keeper::{apps, projects, Keeper};
use secrecy::{ExposeSecret as _, SecretString};

pub(crate) const CLIENT_ID: &str = "bench-client";
pub(crate) const CLIENT_SECRET: &str = "bench-secret";
pub(crate) const REDIRECT_URI: &str = "https://bots.example.com/zoom/callback";

/// One database a bench ran on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Runs `bench` on a fresh SQLite database, then on a fresh database of the
/// throwaway PostgreSQL cluster unless `sqlite_only` (or when the machine has no
/// PostgreSQL binaries: then it says so). Returns each run's report.
pub(crate) async fn on_each_database<F, Fut, R>(
    sqlite_only: bool,
    bench: F,
) -> anyhow::Result<Vec<R>>
where
    F: Fn(Backend, String, PathBuf) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<R>>,
{
    let dir = tempfile::tempdir().context("creating a scratch directory")?;
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let mut reports = vec![bench(Backend::Sqlite, sqlite_url, dir.path().to_owned()).await?];
    if !sqlite_only {
        match testkit::pg_cluster::shared().await? {
            Some(cluster) => {
                let url = cluster.create_database().await?;
                reports.push(bench(Backend::Postgres, url, dir.path().to_owned()).await?);
            }
            None => println!("postgres: skipped (no PostgreSQL binaries found)"),
        }
    }
    Ok(reports)
}

/// The service on a fresh database, with the Zoom simulator (one app,
/// `CLIENT_ID`) and a project named `bench`.
pub(crate) struct Setup {
    pub sim: zoom_sim::Simulator,
    pub keeper: Arc<Keeper>,
    pub project_id: String,
    pub dir: PathBuf,
    pub database_url: String,
    pub master_key_file: PathBuf,
}

impl Setup {
    pub async fn start(backend: Backend, database_url: &str, dir: &Path) -> anyhow::Result<Setup> {
        Setup::start_with(backend, database_url, dir, Settings::default()).await
    }

    /// [`Setup::start`] with `extra` settings over the benches' own.
    pub async fn start_with(
        backend: Backend,
        database_url: &str,
        dir: &Path,
        extra: Settings,
    ) -> anyhow::Result<Setup> {
        let sim = zoom_sim::Simulator::start().await?;
        sim.control()
            .create_app(&zoom_sim::SimApp {
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                ..Default::default()
            })
            .await?;
        let master_key_file = dir.join(format!("{backend}.key"));
        let config = Config::resolve(extra.over(Settings {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(dir.to_owned()),
            database_url: Some(database_url.to_owned()),
            master_key_file: Some(master_key_file.clone()),
            zoom_oauth_url: Some(sim.url()),
            zoom_api_url: Some(sim.url()),
            // The benches measure the service, not the per-project limiter.
            rate_limit_per_second: Some(1e9),
            rate_limit_burst: Some(u32::MAX),
            // Webhook receivers are on loopback.
            allow_private_callback_urls: Some(true),
            ..Settings::default()
        }))?;
        let keeper = Arc::new(Keeper::open(config).await?);
        let project =
            projects::create(&*keeper.store, &keeper.vault, &keeper.clock, "bench").await?;
        Ok(Setup {
            sim,
            keeper,
            project_id: project.id,
            dir: dir.to_owned(),
            database_url: database_url.to_owned(),
            master_key_file,
        })
    }

    /// Where `zoomkeeper serve` processes on this database and Zoom are pointed.
    pub fn serve_target(&self, zoomkeeper: &Path) -> ServeTarget {
        ServeTarget {
            zoomkeeper: zoomkeeper.to_owned(),
            database_url: self.database_url.clone(),
            data_dir: self.dir.clone(),
            master_key_file: self.master_key_file.clone(),
            zoom_url: self.sim.url(),
        }
    }

    /// An API key of the project, as the `Authorization` header value.
    pub async fn authorization(&self) -> anyhow::Result<String> {
        let project = projects::find(&*self.keeper.store, &self.project_id).await?;
        let key =
            projects::create_api_key(&*self.keeper.store, &self.keeper.clock, &project, "bench")
                .await?;
        Ok(format!("Token {}", key.expose_secret()))
    }

    /// The simulator's app, created as `POST /api/v1/zoom_oauth_apps` does (the
    /// credentials are checked with Zoom).
    pub async fn create_app(&self, webhook_secret: Option<&str>) -> anyhow::Result<AppRow> {
        self.create_app_of(CLIENT_ID, CLIENT_SECRET, AppKind::UserLevel, webhook_secret)
            .await
    }

    /// An app of the simulator's app `client_id`, created as the API does.
    pub async fn create_app_of(
        &self,
        client_id: &str,
        client_secret: &str,
        kind: AppKind,
        webhook_secret: Option<&str>,
    ) -> anyhow::Result<AppRow> {
        apps::create(
            &self.keeper,
            &self.project_id,
            apps::NewApp {
                client_id: client_id.into(),
                client_secret: SecretString::from(client_secret),
                webhook_secret: webhook_secret.map(SecretString::from),
                kind,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating the app: {e:?}"))
    }

    /// Starts the HTTP API in this process; it serves until the returned handle is
    /// stopped.
    pub async fn serve(&self) -> anyhow::Result<Serving> {
        let server = Server::bind(self.keeper.clone()).await?;
        let base = server.public_url().to_owned();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Ok(Serving { base, stop, task })
    }

    /// Stores `n` connected connections of `app` as the connections API stores them
    /// (sealed refresh and access tokens the size of Zoom's, a refresh due in a
    /// month, a `created` event), `IN_FLIGHT` at a time: connection `i` is Zoom user
    /// `bench-user-{i}` in account `bench-account-{i / 50}`. Returns their ids in
    /// that order. A meeting sync is due for each (`next_sync_at` empty).
    pub async fn store_connections(&self, app: &AppRow, n: usize) -> anyhow::Result<Vec<String>> {
        const IN_FLIGHT: usize = 16;
        let now = self.keeper.store.now().await?;
        let gate = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        let mut tasks = tokio::task::JoinSet::new();
        let mut ids = vec![String::new(); n];
        for i in 0..n {
            let permit = gate.clone().acquire_owned().await?;
            let (keeper, project_id, app_id) =
                (self.keeper.clone(), self.project_id.clone(), app.id.clone());
            tasks.spawn(async move {
                let _permit = permit;
                let id = keeper::ids::IdKind::Connection.generate();
                // Zoom's tokens are JWTs of several hundred bytes.
                let refresh = keeper.vault.seal_str(
                    Slot::connection_refresh_token(&id),
                    &format!("bench-refresh-{i:0>600}"),
                );
                let access = keeper.vault.seal_str(
                    Slot::connection_access_token(&id),
                    &format!("bench-access-{i:0>600}"),
                );
                let row = ConnectionRow {
                    id: id.clone(),
                    project_id,
                    app_id,
                    user_id: format!("bench-user-{i}"),
                    account_id: format!("bench-account-{}", i / 50),
                    email: Some(format!("user{i}@bench.example.com")),
                    pmi: None,
                    personal_meeting_url: None,
                    state: ConnectionState::Connected,
                    connection_failure_data: None,
                    metadata: Some(serde_json::json!({"bench": i})),
                    deduplication_key: None,
                    is_local_recording_token_supported: true,
                    is_onbehalf_token_supported: false,
                    scopes: zoom_sim::DEFAULT_SCOPES
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                    refresh_token: Some(refresh),
                    access_token: Some(access),
                    access_token_expires_at: Some(now + Duration::from_secs(3599)),
                    lease_owner: None,
                    lease_until: None,
                    fence: 0,
                    refresh_due_at: Some(now + Duration::from_secs(30 * 86_400)),
                    last_attempted_sync_at: None,
                    last_successful_sync_at: None,
                    next_sync_at: None,
                    last_successful_token_refresh_at: Some(now),
                    created_at: now,
                    updated_at: now,
                    sync_requested_at: None,
                    access_token_callback_url: None,
                    sync_pass_started_at: None,
                    sync_users_done: None,
                    sync_users_total: None,
                };
                let event = NewConnectionEvent {
                    kind: "created".to_owned(),
                    message: "The connection was created.".to_owned(),
                    data: None,
                };
                keeper.store.insert_connection(&row, &event, None).await?;
                anyhow::Ok((i, row.id))
            });
            while let Some(done) = tasks.try_join_next() {
                let (i, id) = done.context("insert task")??;
                ids[i] = id;
            }
        }
        while let Some(done) = tasks.join_next().await {
            let (i, id) = done.context("insert task")??;
            ids[i] = id;
        }
        Ok(ids)
    }
}

/// The HTTP API running in this process.
pub(crate) struct Serving {
    pub base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Serving {
    /// `POST /api/v1/zoom_oauth_connections` with an authorization code of `app_id`,
    /// as `auth` (an API key's header value); returns the connection's id.
    pub async fn connect(&self, auth: &str, app_id: &str, code: &str) -> anyhow::Result<String> {
        let connection: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/api/v1/zoom_oauth_connections", self.base))
            .header("authorization", auth)
            .json(&serde_json::json!({
                "zoom_oauth_app_id": app_id,
                "authorization_code": code,
                "redirect_uri": REDIRECT_URI,
            }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(connection["id"]
            .as_str()
            .context("connection id")?
            .to_owned())
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("server task")?
    }
}

/// Where `zoomkeeper serve` processes find their database, master key and Zoom.
pub(crate) struct ServeTarget {
    pub zoomkeeper: PathBuf,
    pub database_url: String,
    pub data_dir: PathBuf,
    pub master_key_file: PathBuf,
    pub zoom_url: String,
}

impl ServeTarget {
    /// `zoomkeeper` with those settings and no `ZOOMKEEPER_*` variable leaking in;
    /// the caller adds its own flags and `serve`.
    pub fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.zoomkeeper);
        for (name, _) in std::env::vars() {
            if name.starts_with("ZOOMKEEPER_") {
                command.env_remove(name);
            }
        }
        command
            .arg("--database-url")
            .arg(&self.database_url)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--master-key-file")
            .arg(&self.master_key_file)
            .arg("--zoom-oauth-url")
            .arg(&self.zoom_url)
            .arg("--zoom-api-url")
            .arg(&self.zoom_url)
            .kill_on_drop(true);
        command
    }
}
