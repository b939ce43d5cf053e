//! A throwaway PostgreSQL cluster for tests and `zoomkeeper bench`.
//!
//! [`shared`] starts one cluster per process on first use, from the machine's
//! PostgreSQL binaries (`initdb`/`postgres` on `PATH` or under
//! `/usr/lib/postgresql/*/bin`), in a fresh temporary directory, listening on
//! 127.0.0.1 on a free port, tuned for speed over durability (`fsync=off`). Each
//! caller gets its own database from [`PgCluster::create_database`], or a copy of a
//! template from [`PgCluster::create_database_from`].
//!
//! PostgreSQL refuses to run as root; as root (CI), the directory is given to the
//! `postgres` user and the binaries run through `runuser -u postgres --`.
//!
//! The server must not outlive the process, even one killed with SIGKILL: it runs
//! under a small `sh` watchdog (in its own process group, so Ctrl-C in a terminal
//! does not kill the watchdog first) that polls this process's pid, then stops
//! PostgreSQL with SIGQUIT and removes the directory.
//!
//! Without PostgreSQL binaries, [`shared`] answers `Ok(None)` (callers skip) unless
//! `ZOOMKEEPER_REQUIRE_POSTGRES=1`, when it is an error.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rand::Rng as _;
use sqlx::{Connection as _, Executor as _};

/// Set to `1` to make a missing PostgreSQL an error instead of a skip.
pub const REQUIRE_ENV: &str = "ZOOMKEEPER_REQUIRE_POSTGRES";

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running throwaway cluster. Lives until the process exits.
#[derive(Debug)]
pub struct PgCluster {
    port: u16,
    root: PathBuf,
    next_database: AtomicU32,
    // Kept so the handle is not dropped (and to report an early exit while starting).
    watchdog: Mutex<Child>,
}

/// Whether `ZOOMKEEPER_REQUIRE_POSTGRES=1` is set.
pub fn postgres_required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v.trim() == "1" || v.trim() == "true")
}

static SHARED: tokio::sync::OnceCell<Result<Option<PgCluster>, String>> =
    tokio::sync::OnceCell::const_new();

/// The process's cluster, started on first use; `None` when this machine has no
/// PostgreSQL binaries and [`REQUIRE_ENV`] is not set.
pub async fn shared() -> anyhow::Result<Option<&'static PgCluster>> {
    let started = SHARED
        .get_or_init(|| async {
            match find_binaries() {
                None if postgres_required() => Err(format!(
                    "{REQUIRE_ENV}=1 but no PostgreSQL binaries (initdb, postgres) were found \
                     on PATH or under /usr/lib/postgresql/*/bin; install PostgreSQL \
                     (e.g. apt-get install postgresql) or unset {REQUIRE_ENV}"
                )),
                None => Ok(None),
                Some(bin) => PgCluster::start(&bin)
                    .await
                    .map(Some)
                    .map_err(|e| format!("starting a throwaway PostgreSQL: {e:#}")),
            }
        })
        .await;
    match started {
        Ok(cluster) => Ok(cluster.as_ref()),
        Err(message) => bail!("{message}"),
    }
}

impl PgCluster {
    async fn start(bin: &Path) -> anyhow::Result<PgCluster> {
        let as_root = is_root();
        if as_root
            && Command::new("id")
                .args(["-u", "postgres"])
                .output()
                .map_or(true, |o| !o.status.success())
        {
            bail!("running as root, PostgreSQL refuses root, and there is no `postgres` user to run it as");
        }
        let root = make_temp_dir()?;
        let data = root.join("data");
        let result = async {
            if as_root {
                run(Command::new("chown").arg("postgres:").arg(&root))
                    .context("giving the cluster directory to the postgres user")?;
            }
            run(pg_command(as_root, &bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]))
            .context("initdb")?;
            let mut last_error = None;
            for _ in 0..3 {
                let port = free_port()?;
                let watchdog = spawn_watchdog(as_root, bin, &root, &data, port)?;
                let cluster = PgCluster {
                    port,
                    root: root.clone(),
                    next_database: AtomicU32::new(1),
                    watchdog: Mutex::new(watchdog),
                };
                match cluster.wait_until_ready().await {
                    Ok(()) => return Ok(cluster),
                    Err(e) => {
                        cluster.stop_now();
                        last_error = Some(e);
                    }
                }
            }
            Err(last_error.unwrap_or_else(|| anyhow::anyhow!("PostgreSQL did not start")))
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&root);
        }
        result
    }

    async fn wait_until_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match sqlx::PgConnection::connect(&self.admin_url()).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Err(e) => {
                    let exited = self
                        .watchdog
                        .lock()
                        .map_err(|_| anyhow::anyhow!("watchdog lock poisoned"))?
                        .try_wait()?
                        .is_some();
                    if exited || Instant::now() > deadline {
                        let log = std::fs::read_to_string(self.root.join("postgres.log"))
                            .unwrap_or_default();
                        let tail: Vec<&str> = log.lines().rev().take(15).collect();
                        let tail: Vec<&str> = tail.into_iter().rev().collect();
                        bail!(
                            "PostgreSQL on port {} did not accept connections ({e}); log:\n{}",
                            self.port,
                            tail.join("\n")
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Used only when a start attempt failed: stop that server and its watchdog.
    fn stop_now(&self) {
        if let Some(pid) = postmaster_pid(&self.root.join("data")) {
            let _ = Command::new("kill")
                .args(["-QUIT", &pid.to_string()])
                .status();
        }
        if let Ok(mut child) = self.watchdog.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `postgres` maintenance database, as superuser.
    pub fn admin_url(&self) -> String {
        self.url_for("postgres")
    }

    fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A new empty database; returns its URL.
    pub async fn create_database(&self) -> anyhow::Result<String> {
        self.create(None).await
    }

    /// A new database copied from the database at `template_url` (made by this
    /// cluster, with nobody connected to it): a copy is much faster than migrating.
    pub async fn create_database_from(&self, template_url: &str) -> anyhow::Result<String> {
        let template = template_url
            .rsplit('/')
            .next()
            .context("a database URL ends with its name")?;
        self.create(Some(template)).await
    }

    async fn create(&self, template: Option<&str>) -> anyhow::Result<String> {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        let name = format!("zk_{n}");
        let sql = match template {
            Some(template) => format!("CREATE DATABASE {name} TEMPLATE {template}"),
            None => format!("CREATE DATABASE {name}"),
        };
        let mut conn = sqlx::PgConnection::connect(&self.admin_url())
            .await
            .context("connecting to the throwaway PostgreSQL")?;
        conn.execute(sql.as_str())
            .await
            .with_context(|| format!("creating database {name}"))?;
        let _ = conn.close().await;
        Ok(self.url_for(&name))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .is_some_and(|uid| uid.trim() == "0")
}

/// The directory holding `initdb` and `postgres`, symlinks resolved.
fn find_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if let Ok(initdb) = std::fs::canonicalize(dir.join("initdb")) {
                if let Some(real_dir) = initdb.parent() {
                    if has_both(real_dir) {
                        return Some(real_dir.to_path_buf());
                    }
                }
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn make_temp_dir() -> anyhow::Result<PathBuf> {
    let suffix: String = rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(10)
        .map(char::from)
        .collect();
    let dir = std::env::temp_dir().join(format!("zoomkeeper-pg-{suffix}"));
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A command running `program` as the postgres user when we are root.
fn pg_command(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn postmaster_pid(data: &Path) -> Option<u32> {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The watchdog: starts PostgreSQL, waits for our pid to disappear, stops it with
/// SIGQUIT (immediate shutdown: nothing here is worth keeping) and removes the
/// directory.
const WATCHDOG: &str = r#"
parent="$1"; root="$2"; data="$3"; shift 3
"$@" >"$root/postgres.log" 2>&1 &
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ]; then
  kill -QUIT "$pid" 2>/dev/null
  i=0
  while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  kill -KILL "$pid" 2>/dev/null
fi
wait
rm -rf "$root"
"#;

fn spawn_watchdog(
    as_root: bool,
    bin: &Path,
    root: &Path,
    data: &Path,
    port: u16,
) -> anyhow::Result<Child> {
    let postgres = pg_command(as_root, &bin.join("postgres"));
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(WATCHDOG)
        .arg("zoomkeeper-pg-watchdog")
        .arg(std::process::id().to_string())
        .arg(root)
        .arg(data)
        .arg(postgres.get_program())
        .args(postgres.get_args())
        .arg("-D")
        .arg(data)
        .arg("-k")
        .arg(root)
        .args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string()])
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "shared_buffers=32MB"])
        .args(["-c", "max_connections=200"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
    }
    command.spawn().context("starting the PostgreSQL watchdog")
}
