//! A real browser for tests of web pages (DESIGN.md §12, §13): headless Chromium
//! driven through WebDriver by Debian's `chromedriver`, with a screenshot of each page
//! a test asks for saved under `target/test-output/<test name>/`.
//!
//! [`Browser::start`] answers `None` (test skipped, with a note on stderr) when
//! `chromedriver` or Chromium is missing, unless `ZOOMKEEPER_REQUIRE_BROWSER=1`, which
//! `.ci/run` sets so browser tests cannot silently skip.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

/// Set to 1 to make a missing browser an error instead of a skip.
pub const REQUIRE_ENV: &str = "ZOOMKEEPER_REQUIRE_BROWSER";

/// How long to wait for chromedriver to answer and for an element to appear; generous,
/// since the machine may be busy compiling. Nothing asserts on how long anything took.
pub const WAIT: Duration = Duration::from_secs(30);

/// A headless Chromium session; chromedriver and the browser are killed on drop.
pub struct Browser {
    client: Option<Client>,
    driver: Child,
    out_dir: PathBuf,
    shots: u32,
    /// Chromium's fresh `--user-data-dir`.
    profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver runs in its own process group with the browser it started:
        // kill them all, so a failed test leaves no Chromium behind.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts chromedriver on a free 127.0.0.1 port and opens a headless Chromium
    /// session. Screenshots go to `target/test-output/<current test's name>/`.
    pub async fn start() -> Option<Browser> {
        let test = std::thread::current()
            .name()
            .filter(|n| *n != "main")
            .unwrap_or("browser")
            .replace("::", ".");
        Self::start_for(&test).await
    }

    /// As [`Browser::start`], with screenshots under `target/test-output/<test>/`.
    pub async fn start_for(test: &str) -> Option<Browser> {
        let (Some(driver_bin), Some(chromium_bin)) = (
            find_program(&["chromedriver"]),
            find_program(&["chromium", "chromium-browser", "google-chrome"]),
        ) else {
            if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
                panic!(
                    "{REQUIRE_ENV}=1 but chromedriver or chromium is not on PATH; install \
                     Debian's `chromium` and `chromium-driver` (.ci/run does)"
                );
            }
            eprintln!(
                "skipped: no chromedriver/chromium on PATH (set {REQUIRE_ENV}=1 to make this an error)"
            );
            return None;
        };

        let out_dir = target_dir().join("test-output").join(test);
        let _ = std::fs::remove_dir_all(&out_dir);
        std::fs::create_dir_all(&out_dir).expect("creating the screenshot directory");

        let port = free_port();
        let mut command = Command::new(&driver_bin);
        command
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                out_dir.join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = command.spawn().unwrap_or_else(|e| {
            panic!("starting {}: {e}", driver_bin.display());
        });
        let profile = tempfile::tempdir().expect("temp dir for the browser profile");
        let mut browser = Browser {
            client: None,
            driver,
            out_dir,
            shots: 0,
            profile,
        };
        browser.wait_for_driver(port).await;

        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium_bin,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", browser.profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "opening a headless Chromium session (see {}): {e}",
                    browser.out_dir.join("chromedriver.log").display()
                )
            });
        browser.client = Some(client);
        Some(browser)
    }

    /// The WebDriver client, for what this small API does not cover.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open")
    }

    /// Where this test's screenshots go.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.client()
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The current page's URL.
    pub async fn current_url(&self) -> url::Url {
        self.client().current_url().await.expect("current URL")
    }

    /// Clicks the first element matching the CSS selector, once it appears.
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css:?}: {e}"));
    }

    /// Types `text` into the first element matching the CSS selector (a form field).
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clearing {css:?}: {e}"));
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into {css:?}: {e}"));
    }

    /// The rendered text of the first element matching the CSS selector, once it
    /// appears.
    /// An element replaced while it is read (the page navigated or refreshed it) is
    /// found again.
    pub async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.find(css).await.text().await {
                Ok(text) => return text,
                Err(e) if Instant::now() > deadline => {
                    panic!("reading the text of {css:?}: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Waits until the page's path ends with `suffix` (a click's navigation may still
    /// be under way when the click returns).
    pub async fn wait_for_path(&self, suffix: &str) -> url::Url {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.current_url().await;
            if url.path().ends_with(suffix) {
                return url;
            }
            if Instant::now() > deadline {
                panic!("the page did not come to {suffix:?} within {WAIT:?}; it is at {url}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the text of the first element matching `css` contains `needle`
    /// (the page may change it itself, e.g. a live region); returns that text.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = match self.client().find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(needle) {
                return text;
            }
            if Instant::now() > deadline {
                panic!(
                    "{css:?} did not come to contain {needle:?} within {WAIT:?}; it reads {text:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The current value of the input matching `css`.
    pub async fn value(&self, css: &str) -> String {
        self.find(css)
            .await
            .prop("value")
            .await
            .unwrap_or_else(|e| panic!("reading the value of {css:?}: {e}"))
            .unwrap_or_default()
    }

    /// Chooses the option with `value` in the select matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("choosing {value:?} in {css:?}: {e}"));
    }

    /// Accepts the confirmation dialog the page opened (waits for it).
    pub async fn accept_dialog(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.client().accept_alert().await {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("no dialog to accept: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Saves a PNG of the viewport as `NN-<name>.png` in [`Browser::out_dir`] and
    /// returns its path (also printed, so a developer can find it).
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let png = self.client().screenshot().await.expect("screenshot");
        self.shots += 1;
        let path = self.out_dir.join(format!("{:02}-{name}.png", self.shots));
        std::fs::write(&path, png).expect("writing the screenshot");
        println!("screenshot: {}", path.display());
        path
    }

    /// Ends the session (Chromium quits); chromedriver is stopped on drop.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            client.close().await.expect("closing the browser session");
        }
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client()
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| {
                panic!("no element {css:?} on the page within {WAIT:?}: {e}");
            })
    }

    async fn wait_for_driver(&mut self, port: u16) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + WAIT;
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.driver.try_wait() {
                panic!(
                    "chromedriver exited at start ({status}); see its log in {}",
                    self.out_dir.display()
                );
            }
            if Instant::now() > deadline {
                panic!("chromedriver did not answer on {addr} within {WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The first of `names` found on PATH.
fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Cargo's target directory: the test binary lives in `<target>/<profile>/deps/`.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let deps = exe.parent().filter(|d| d.ends_with("deps"))?;
            Some(deps.parent()?.parent()?.to_owned())
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}
