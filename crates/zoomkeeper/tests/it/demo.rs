//! `zoomkeeper demo`: every curl command of its walkthrough works as printed, and
//! stopping it removes its temporary directory.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::process::zoomkeeper;

/// The walkthrough's last line.
const READY: &str = "Press Ctrl-C to stop";
/// Start-up includes the first build of an argon2 hash and the seeding.
const START_WAIT: Duration = Duration::from_secs(120);
const STOP_WAIT: Duration = Duration::from_secs(30);
/// Each curl command may take this long (`curl -m`).
const CURL_MAX_SECONDS: u32 = 30;

/// The running demo; stopped if the test ends before stopping it.
struct DemoProcess {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl DemoProcess {
    fn start(cwd: &Path) -> DemoProcess {
        let mut child = zoomkeeper(cwd)
            .arg("demo")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("zoomkeeper demo starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        DemoProcess {
            child,
            stdout: rx,
            stderr: Some(stderr),
        }
    }

    /// Lines up to and including the first that starts with `prefix`; `None` when
    /// stdout closes or `within` passes first.
    fn read_until(&self, prefix: &str, within: Duration) -> Option<Vec<String>> {
        let deadline = Instant::now() + within;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.stdout.recv_timeout(left).ok()?;
            let done = line.starts_with(prefix);
            lines.push(line);
            if done {
                return Some(lines);
            }
        }
    }

    /// Everything the process wrote to stderr; call once it has exited.
    fn stderr(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default()
    }

    /// SIGTERM, then wait for the exit; `None` if it did not exit in `within`.
    fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        if !sent.is_ok_and(|s| s.success()) {
            return None;
        }
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(_) => return None,
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for DemoProcess {
    /// On a failed assertion: a chance to remove its directory, then SIGKILL.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) && self.terminate(STOP_WAIT).is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Runs `command` in a shell as printed, with a time limit and the status code
/// appended: (status, body as JSON).
fn run_printed(command: &str) -> (u16, Value, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{command} -m {CURL_MAX_SECONDS} -w '\\n%{{http_code}}'"
        ))
        .output()
        .expect("sh runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{command}\nexited {}: {}{}",
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, status) = stdout.rsplit_once('\n').expect("a status line");
    let status: u16 = status.trim().parse().expect("an HTTP status");
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, json, body.to_owned())
}

/// The HTTP status of a GET of `url`.
fn get_status(url: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-m",
            "30",
            "-w",
            "%{http_code}",
            url,
        ])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("an HTTP status")
}

/// Signs in at the dashboard as a browser without JavaScript would (the sign-in form,
/// its cookie and CSRF token, the POST), with curl; returns the overview page.
fn sign_in_with_curl(dir: &Path, base: &str, email: &str, password: &str) -> String {
    let jar = dir.join("cookies.txt");
    let jar = jar.to_str().expect("utf-8 path");
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "-m", "30", "-b", jar, "-c", jar])
            .args(args)
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let form = curl(&[&format!("{base}/dashboard/login")]);
    let marker = "name=\"csrf\" value=\"";
    let at = form.find(marker).expect("a CSRF field") + marker.len();
    let csrf = form[at..].split('"').next().expect("its value").to_owned();
    let status = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--data-urlencode",
        &format!("email={email}"),
        "--data-urlencode",
        &format!("password={password}"),
        "--data-urlencode",
        &format!("csrf={csrf}"),
        &format!("{base}/dashboard/login"),
    ]);
    assert_eq!(status.trim(), "303", "signing in with the printed login");
    curl(&[&format!("{base}/dashboard/")])
}

/// The word after `label` on the line that has it.
fn value_after<'a>(lines: &'a [String], label: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.split_once(label))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {label:?} in the walkthrough:\n{}", lines.join("\n")))
}

/// The URL a printed command calls: its last single-quoted word.
fn url_of(command: &str) -> &str {
    let end = command.rfind('\'').expect("a quoted URL");
    let start = command[..end].rfind('\'').expect("a quoted URL") + 1;
    &command[start..end]
}

fn strings(v: &Value) -> bool {
    v.as_str().is_some_and(|s| !s.is_empty())
}

#[test]
fn the_demo_walkthrough_commands_work_as_printed_and_stopping_removes_its_directory() {
    let cwd = tempfile::tempdir().expect("temp dir");
    let mut demo = DemoProcess::start(cwd.path());
    let Some(walkthrough) = demo.read_until(READY, START_WAIT) else {
        if demo.terminate(STOP_WAIT).is_none() {
            let _ = demo.child.kill();
            let _ = demo.child.wait();
        }
        panic!(
            "the walkthrough did not complete within {START_WAIT:?}; stderr:\n{}",
            demo.stderr()
        );
    };
    let text = walkthrough.join("\n");
    let data_dir = PathBuf::from(value_after(&walkthrough, "removed when the demo stops): "));
    assert!(data_dir.is_dir(), "{text}");
    assert!(data_dir.join("master.key").is_file(), "{text}");
    let base = value_after(&walkthrough, "base URL ").to_owned();
    let key = value_after(&walkthrough, "API key ").to_owned();
    let login = value_after(&walkthrough, "sign in at ").to_owned();
    assert_eq!(login, format!("{base}/dashboard/login"), "{text}");
    assert!(text.contains(&format!("{base}/dashboard/\n")), "{text}");
    assert!(!value_after(&walkthrough, "password ").is_empty());
    assert!(text.contains("demo@zoomkeeper.local"), "{text}");

    // The server is up, and the printed login signs in to the dashboard.
    assert_eq!(get_status(&format!("{base}/healthz")), 200);
    let password = value_after(&walkthrough, "password ").to_owned();
    let home = sign_in_with_curl(cwd.path(), &base, "demo@zoomkeeper.local", &password);
    assert!(home.contains("demo@zoomkeeper.local"), "{home}");
    assert!(home.contains("Zoom app"), "{home}");

    let commands: Vec<&String> = walkthrough
        .iter()
        .filter(|l| l.starts_with("curl "))
        .collect();
    let mut seen = BTreeSet::new();
    let mut connection_ids = BTreeSet::new();
    let mut one_connection = None;
    let mut joined_meeting = None;
    let mut hosted = None;
    let mut delivered_for = BTreeSet::new();
    for command in &commands {
        assert!(command.starts_with("curl -sS "), "{command}");
        assert!(
            command.contains(&format!("-H 'Authorization: Token {key}'")),
            "{command}"
        );
        let url = url_of(command);
        let path = url.strip_prefix(&base).expect("the demo's server");
        let (status, json, body) = run_printed(command);
        let kind = if path == "/api/v1/zoom_oauth_connections" {
            assert_eq!(status, 200, "{command}\n{body}");
            let results = json["results"].as_array().expect("results");
            assert_eq!(results.len(), 3, "{body}");
            for c in results {
                assert_eq!(c["state"], "connected", "{body}");
                connection_ids.insert(c["id"].as_str().expect("id").to_owned());
            }
            "list connections"
        } else if let Some(rest) = path.strip_prefix("/api/v1/zoom_oauth_connections/") {
            if let Some(id) = rest.strip_suffix("/access_token") {
                assert_eq!(status, 200, "{command}\n{body}");
                assert!(strings(&json["token"]), "{body}");
                assert!(strings(&json["expires_at"]), "{body}");
                assert!(id.starts_with("zoc_"), "{command}");
                "access token"
            } else {
                assert_eq!(status, 200, "{command}\n{body}");
                assert_eq!(json["id"], rest, "{body}");
                assert_eq!(json["state"], "connected", "{body}");
                one_connection = Some(rest.to_owned());
                "get connection"
            }
        } else if path == "/api/v1/zoom_join_tokens" {
            assert_eq!(status, 200, "{command}\n{body}");
            assert_eq!(json["problems"], Value::Array(vec![]), "{body}");
            // The local recording token, minted with the meeting host's connection.
            assert!(strings(&json["app_privilege_token"]), "{body}");
            assert!(strings(&json["zak_token"]), "{body}");
            assert!(strings(&json["onbehalf_token"]), "{body}");
            joined_meeting = json["meeting_id"].as_str().map(str::to_owned);
            "join tokens"
        } else if let Some(meeting) = path.strip_prefix("/api/v1/zoom_meetings?meeting_id=") {
            assert_eq!(status, 200, "{command}\n{body}");
            let results = json["results"].as_array().expect("results");
            assert_eq!(results.len(), 1, "{body}");
            assert_eq!(results[0]["meeting_id"], meeting, "{body}");
            hosted = Some((
                meeting.to_owned(),
                results[0]["zoom_oauth_connection_id"]
                    .as_str()
                    .expect("connection id")
                    .to_owned(),
            ));
            "meeting host"
        } else if path == "/api/v1/zoom_oauth_connect_sessions" {
            assert_eq!(status, 201, "{command}\n{body}");
            assert_eq!(json["status"], "pending", "{body}");
            let link = json["url"].as_str().expect("url");
            assert!(link.starts_with(&format!("{base}/connect/")), "{body}");
            assert_eq!(get_status(link), 200, "{link}");
            "connect link"
        } else if path.starts_with("/api/v1/webhooks/") && path.ends_with("/deliveries") {
            assert_eq!(status, 200, "{command}\n{body}");
            for d in json["results"].as_array().expect("results") {
                assert_eq!(d["trigger"], "zoom_oauth_connection.state_change", "{body}");
                assert_eq!(d["payload"]["data"]["state"], "connected", "{body}");
                delivered_for.insert(
                    d["payload"]["zoom_oauth_connection_id"]
                        .as_str()
                        .expect("connection id")
                        .to_owned(),
                );
            }
            "webhook deliveries"
        } else {
            panic!("an unexpected command: {command}");
        };
        assert!(seen.insert(kind), "two {kind} commands");
    }
    let expected = [
        "access token",
        "connect link",
        "get connection",
        "join tokens",
        "list connections",
        "meeting host",
        "webhook deliveries",
    ];
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), expected, "{text}");

    // The commands tell one story: the meeting joined is the one looked up, hosted
    // by the connection shown; every seeded connection was announced by a webhook.
    let one_connection = one_connection.expect("a connection");
    assert!(connection_ids.contains(&one_connection));
    let (meeting, host) = hosted.expect("a meeting lookup");
    assert_eq!(joined_meeting.as_deref(), Some(meeting.as_str()));
    assert_eq!(host, one_connection);
    assert_eq!(delivered_for, connection_ids);

    let status = demo.terminate(STOP_WAIT);
    assert!(
        status.is_some_and(|s| s.success()),
        "the demo did not stop cleanly on SIGTERM: {status:?}"
    );
    let rest = demo
        .read_until("Stopped; removed", STOP_WAIT)
        .expect("a line saying the directory was removed");
    assert!(
        rest.last()
            .is_some_and(|l| l.contains(&data_dir.display().to_string())),
        "{rest:?}"
    );
    assert!(!data_dir.exists(), "{} is still there", data_dir.display());

    // Logs stay out of the way: warnings only, and never the key.
    let stderr = demo.stderr();
    assert!(!stderr.contains("INFO"), "{stderr}");
    assert!(!stderr.contains(&key), "{stderr}");
}
