//! The command line as scripts use it: what goes to stdout, and nothing more.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn zoomkeeper(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zoomkeeper"));
    c.current_dir(dir)
        .env_remove("ZOOMKEEPER_DATABASE_URL")
        .env_remove("ZOOMKEEPER_MASTER_KEY")
        .env_remove("ZOOMKEEPER_MASTER_KEY_FILE")
        .env_remove("ZOOMKEEPER_DATA_DIR")
        .env_remove("ZOOMKEEPER_CONFIG")
        .env_remove("ZOOMKEEPER_LISTEN");
    c
}

fn run_ok(dir: &Path, args: &[&str]) -> String {
    let out: Output = zoomkeeper(dir).args(args).output().expect("runs");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

fn is_key(s: &str) -> bool {
    s.len() == 46
        && s.starts_with("zk_")
        && s[3..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[test]
fn project_create_prints_the_id_alone_and_api_key_create_the_key_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run_ok(dir.path(), &["project", "create", "acme"]);
    let id = out.strip_suffix('\n').expect("one line");
    assert!(
        id.starts_with("prj_") && id.len() == 20 && !id.contains('\n'),
        "{out:?}"
    );

    for project in [id, "acme"] {
        let out = run_ok(
            dir.path(),
            &["api-key", "create", "--project", project, "--name", "ci"],
        );
        let key = out.strip_suffix('\n').expect("one line");
        assert!(is_key(key), "{out:?}");
    }

    let dup = zoomkeeper(dir.path())
        .args(["project", "create", "acme"])
        .output()
        .expect("runs");
    assert!(!dup.status.success());
    assert!(dup.stdout.is_empty());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));

    let missing = zoomkeeper(dir.path())
        .args(["api-key", "create", "--project", "nope"])
        .output()
        .expect("runs");
    assert!(!missing.status.success() && missing.stdout.is_empty());

    let master_key = dir.path().join("zoomkeeper-data/master.key");
    let before = std::fs::read(&master_key).expect("master key written");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&master_key)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    run_ok(dir.path(), &["keys", "rotate"]);
    assert_ne!(std::fs::read(&master_key).expect("master key"), before);
    // Everything still opens under the new key.
    let out = run_ok(dir.path(), &["api-key", "create", "--project", "acme"]);
    assert!(is_key(out.trim_end()));
}

/// Starts `serve` on a free port and waits until it listens; returns the child and
/// its stdout so far.
fn start_serving(dir: &Path) -> Child {
    let mut child = zoomkeeper(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "serve did not start in time");
        match lines.next() {
            Some(Ok(line)) if line.contains("zoomkeeper listening") => break,
            Some(Ok(_)) => continue,
            _ => panic!("serve exited before listening"),
        }
    }
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

fn stop(child: Child) -> String {
    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("exits");
    assert!(
        out.status.success(),
        "serve exits cleanly on SIGTERM: {:?}",
        out.status
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn first_serve_prints_one_key_once_and_a_second_start_keeps_the_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = stop(start_serving(dir.path()));
    let keys: Vec<&str> = first.split_whitespace().filter(|w| is_key(w)).collect();
    assert_eq!(keys.len(), 1, "exactly one key, clearly labelled: {first}");
    assert!(first.contains("shown only this once"), "{first}");

    let second = stop(start_serving(dir.path()));
    assert!(
        !second.contains("zk_"),
        "no key on the second start: {second}"
    );

    // The first key still names the default project.
    let out = run_ok(dir.path(), &["api-key", "create", "--project", "default"]);
    assert!(is_key(out.trim_end()));
}

#[test]
fn user_create_prints_a_one_time_password_alone_or_takes_one_from_stdin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out: Output = zoomkeeper(dir.path())
        .args(["user", "create", "--email", "Ops@Example.com"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let password = String::from_utf8(out.stdout).expect("utf-8");
    let password = password.trim_end();
    assert_eq!(password.len(), 20, "the password alone: {password:?}");
    assert!(!password.contains(char::is_whitespace));
    let told = String::from_utf8_lossy(&out.stderr);
    assert!(
        told.contains("ops@example.com") && told.contains("/dashboard/login"),
        "{told}"
    );
    assert!(
        !told.contains(password),
        "the password goes to stdout only: {told}"
    );

    let with_stdin = |email: &str, password: &str| {
        let mut child = zoomkeeper(dir.path())
            .args(["user", "create", "--email", email, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs");
        use std::io::Write as _;
        writeln!(child.stdin.take().expect("stdin"), "{password}").expect("writes");
        child.wait_with_output().expect("exits")
    };
    let chosen = with_stdin("second@example.com", "a long enough password");
    assert!(
        chosen.status.success(),
        "{}",
        String::from_utf8_lossy(&chosen.stderr)
    );
    assert!(
        chosen.stdout.is_empty(),
        "nothing to print when the password was given"
    );

    for (email, password, sentence) in [
        ("ops@example.com", "another long password", "already exists"),
        ("third@example.com", "short", "at least 12 characters"),
        (
            "not-an-email",
            "a long enough password",
            "Enter an email address",
        ),
    ] {
        let refused = with_stdin(email, password);
        assert!(!refused.status.success(), "{email}");
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(err.contains(sentence), "{email}: {err}");
        assert!(!err.contains(password) || password == "short", "{err}");
    }
}

#[test]
fn bad_configuration_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = zoomkeeper(dir.path())
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen:") && err.contains("IP:PORT"), "{err}");

    std::fs::write(
        dir.path().join("zk.toml"),
        "listen = \"127.0.0.1:1\"\nlog_fromat = \"json\"\n",
    )
    .expect("write");
    let out = zoomkeeper(dir.path())
        .args(["--config", "zk.toml", "migrate"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("log_fromat"), "{err}");
}

#[test]
fn sim_subcommand_serves_the_simulator_on_the_given_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = zoomkeeper(dir.path())
        .args(["sim", "--listen", &listen])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let answered = loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(&listen) {
            use std::io::{Read, Write};
            let request =
                format!("GET /_sim/stats HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).expect("write");
            let mut response = String::new();
            stream.read_to_string(&mut response).expect("read");
            break response;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            panic!("sim exited with {status}: {err}");
        }
        assert!(Instant::now() < deadline, "sim did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    assert!(answered.contains("stale_refresh_token_uses"), "{answered}");
}

/// Like [`start_serving`], also returning the address it listens on.
fn start_serving_at(dir: &Path) -> (Child, String) {
    let mut child = zoomkeeper(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        assert!(Instant::now() < deadline, "serve did not start in time");
        match lines.next() {
            Some(Ok(line)) if line.contains("zoomkeeper listening") => {
                let addr = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .expect("the listening line names the address");
                break addr.to_owned();
            }
            Some(Ok(_)) => continue,
            _ => panic!("serve exited before listening"),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// One HTTP/1.1 request with the API key; returns the status and the body.
fn call(addr: &str, method: &str, path: &str, api_key: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Token {api_key}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn webhook_secret(addr: &str, method: &str, path: &str, api_key: &str) -> String {
    let (status, body) = call(addr, method, path, api_key);
    assert_eq!(status, 200, "{method} {path}: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    json["secret"].as_str().expect("a secret").to_owned()
}

fn stop_quietly(mut child: Child) {
    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(
        child.wait().expect("exits").success(),
        "serve exits cleanly"
    );
}

#[test]
fn keys_rotate_and_retire_while_serve_runs_lose_no_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    run_ok(dir.path(), &["project", "create", "acme"]);
    let api_key = run_ok(dir.path(), &["api-key", "create", "--project", "acme"]);
    let api_key = api_key.trim_end();
    let (serve, addr) = start_serving_at(dir.path());
    let get = |addr: &str| webhook_secret(addr, "GET", "/api/v1/webhook_secret", api_key);
    let first = get(&addr);

    let out = zoomkeeper(dir.path())
        .args(["keys", "rotate"])
        .output()
        .expect("runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("re-sealed 1 secrets"), "{said}");
    assert!(said.contains("keys retire"), "{said}");
    let key_file = dir.path().join("zoomkeeper-data/master.key");
    let key_lines = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(
        key_lines(&std::fs::read_to_string(&key_file).expect("key file")),
        2,
        "the old key stays until retired"
    );

    // The running server opens the value re-sealed under the key it never loaded…
    assert_eq!(get(&addr), first);
    // …and what it seals now still opens after the old key is retired.
    let second = webhook_secret(&addr, "POST", "/api/v1/webhook_secret/rotate", api_key);
    assert_ne!(second, first);

    let out = zoomkeeper(dir.path())
        .args(["keys", "retire"])
        .output()
        .expect("runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("retired key(s) 1"), "{said}");
    assert_eq!(
        key_lines(&std::fs::read_to_string(&key_file).expect("key file")),
        1
    );
    assert_eq!(get(&addr), second);
    let third = webhook_secret(&addr, "POST", "/api/v1/webhook_secret/rotate", api_key);

    // Retiring again finds nothing to do.
    let out = zoomkeeper(dir.path())
        .args(["keys", "retire"])
        .output()
        .expect("runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("nothing to retire"), "{said}");
    stop_quietly(serve);

    let (serve, addr) = start_serving_at(dir.path());
    assert_eq!(get(&addr), third, "everything opens after a restart");
    stop_quietly(serve);
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run_ok(dir.path(), &["--version"]);
    let line = out.trim();
    assert!(
        line.starts_with(&format!(
            "zoomkeeper {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{line}"
    );
    let commit = line
        .rsplit_once("(commit ")
        .and_then(|(_, c)| c.strip_suffix(')'))
        .expect("a commit");
    // This test runs from a git checkout (CI clones the repository).
    let hex = commit.trim_end_matches("-dirty");
    assert!(
        hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{line}"
    );
}

/// A database restored without its key file (or with another installation's) is
/// refused at start with a sentence saying what to put back, instead of a service
/// whose every secret fails to open; a missing file is not replaced by a new key.
#[test]
fn a_database_without_its_master_key_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    run_ok(dir.path(), &["project", "create", "acme"]);
    let key_file = dir.path().join("zoomkeeper-data").join("master.key");
    let key = std::fs::read(&key_file).expect("the generated key file");
    std::fs::remove_file(&key_file).expect("remove the key");

    let missing = zoomkeeper(dir.path())
        .args(["project", "create", "other"])
        .output()
        .expect("runs");
    assert!(!missing.status.success());
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(
        said.contains("master key file") && said.contains("missing"),
        "{said}"
    );
    assert!(!key_file.exists(), "no new key was made");

    // Another installation's key.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    run_ok(elsewhere.path(), &["project", "create", "acme"]);
    std::fs::copy(
        elsewhere.path().join("zoomkeeper-data").join("master.key"),
        &key_file,
    )
    .expect("copy the wrong key");
    let wrong = zoomkeeper(dir.path())
        .args(["project", "create", "other"])
        .output()
        .expect("runs");
    assert!(!wrong.status.success());
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(said.contains("does not open"), "{said}");

    // The right key back: it works again.
    std::fs::write(&key_file, key).expect("restore the key");
    run_ok(dir.path(), &["project", "create", "other"]);
}
