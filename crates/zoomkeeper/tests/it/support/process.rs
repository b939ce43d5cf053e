//! Real `zoomkeeper serve` processes, killed on every exit path.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// A `zoomkeeper` command with no setting leaking in from the test's environment.
pub fn zoomkeeper(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zoomkeeper"));
    c.current_dir(dir);
    for (name, _) in std::env::vars() {
        if name.starts_with("ZOOMKEEPER_") {
            c.env_remove(name);
        }
    }
    c
}

/// Where a group of `serve` processes keep their shared state: one database, one
/// master key, one Zoom.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub dir: PathBuf,
    pub database_url: String,
    pub zoom_url: String,
    /// Extra flags for every process, e.g. `["--token-keeper-interval", "1s"]`.
    pub flags: Vec<String>,
}

impl Deployment {
    fn command(&self) -> Command {
        let mut c = zoomkeeper(&self.dir);
        c.arg("--database-url")
            .arg(&self.database_url)
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--master-key-file")
            .arg(self.dir.join("master.key"))
            .arg("--zoom-oauth-url")
            .arg(&self.zoom_url)
            .arg("--zoom-api-url")
            .arg(&self.zoom_url)
            // The proofs measure refresh safety, not the per-project limiter.
            .args(["--rate-limit-per-second", "1000000"])
            .args(["--rate-limit-burst", "1000000"])
            .args(&self.flags);
        c
    }

    /// Runs a one-shot subcommand and returns its stdout, trimmed.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command()
            .args(args)
            .output()
            .context("running zoomkeeper")?;
        if !out.status.success() {
            bail!(
                "zoomkeeper {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// A project and an API key for it, made with the command line.
    pub fn api_key(&self) -> anyhow::Result<String> {
        self.run(&["migrate"])?;
        self.run(&["project", "create", "proof"])?;
        self.run(&["api-key", "create", "--project", "proof"])
    }

    /// Starts `serve` on a free port and waits until it listens.
    pub fn serve(&self, name: &str) -> anyhow::Result<ServeProcess> {
        self.serve_with(name, &[])
    }

    /// [`Deployment::serve`] with extra flags for this process only (e.g. a role).
    pub fn serve_with(&self, name: &str, extra: &[&str]) -> anyhow::Result<ServeProcess> {
        let mut child = self
            .command()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting zoomkeeper serve")?;
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let stderr = child.stderr.take().context("serve's stderr")?;
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<String>();
        let lines = log.clone();
        // Reads every line (so the child never blocks on a full pipe) and reports the
        // listening address once.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("zoomkeeper listening") {
                    if let Some(addr) = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                    {
                        let _ = addr_tx.send(addr.to_owned());
                    }
                }
                let mut lines = lines.lock().unwrap_or_else(|p| p.into_inner());
                if lines.len() < 20_000 {
                    lines.push(line);
                }
            }
        });
        let mut process = ServeProcess {
            name: name.to_owned(),
            child: Some(child),
            base: String::new(),
            log,
        };
        match addr_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => process.base = format!("http://{addr}"),
            Err(_) => bail!("{name} did not start listening:\n{}", process.log_tail(40)),
        }
        Ok(process)
    }
}

/// A running `serve`. Dropping it kills it (SIGKILL) and reaps it.
pub struct ServeProcess {
    pub name: String,
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServeProcess {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, then reap: no chance to finish or release anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait up to `timeout` for a clean exit (SIGKILL after that).
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} is not running", self.name);
        };
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline || !sent.as_ref().is_ok_and(|s| s.success()) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not stop within {timeout:?} of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running (it has not crashed).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The last `n` lines the process logged.
    pub fn log_tail(&self, n: usize) -> String {
        let lines = self.log.lock().unwrap_or_else(|p| p.into_inner());
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Every line logged so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` until it answers `Some`, at most `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A small deterministic-enough generator (xorshift64*), seeded from the clock and
/// printed so a failing run can be told apart; tests need no better.
pub struct Rng(u64);

impl Rng {
    pub fn from_clock(label: &str) -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            | 1;
        eprintln!("{label}: random seed {seed}");
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
