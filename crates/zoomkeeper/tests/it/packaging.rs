//! The deployment files as an operator uses them: the settings they name are settings
//! zoomkeeper reads, the systemd unit passes systemd's own check, and the container
//! files keep the promises their comments make (non-root, `/data`, `/readyz`).
//!
//! No container engine here can pull the base images (no registry), so the image
//! itself is not built by the tests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_file(name: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    (path, text)
}

/// Every `ZOOMKEEPER_<NAME>` in `text`, the bare prefix (as in prose) aside.
fn setting_variables(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("ZOOMKEEPER_") {
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if name.len() > "ZOOMKEEPER_".len() && !name.ends_with('_') {
            names.insert(name);
        }
    }
    names
}

/// A misspelt variable in a deployment file is silently ignored by the process: hold
/// every name they use to the names zoomkeeper reads.
#[test]
fn every_variable_the_deployment_files_set_is_a_setting() {
    // Read by the build, not the running process.
    const BUILD_TIME: &[&str] = &["ZOOMKEEPER_BUILD_COMMIT"];
    let mut seen = 0;
    for file in [
        "Dockerfile",
        "compose.yaml",
        "deploy/zoomkeeper.service",
        "deploy/zoomkeeper.env.example",
    ] {
        let (_, text) = repo_file(file);
        let names: Vec<(String, String)> = setting_variables(&text)
            .into_iter()
            .filter(|n| !BUILD_TIME.contains(&n.as_str()))
            .map(|n| (n, String::new()))
            .collect();
        seen += names.len();
        let unknown = keeper::config::Settings::unknown_env_names(names);
        assert!(
            unknown.is_empty(),
            "{file} names no such setting: {unknown:?}"
        );
    }
    assert!(seen >= 10, "the scan found the files' variables ({seen})");
}

/// The example environment file, as systemd would hand it to the process (with the
/// data directory moved to a temporary one), starts zoomkeeper without a complaint.
#[test]
fn the_example_environment_file_loads_without_a_warning() {
    let (_, text) = repo_file("deploy/zoomkeeper.env.example");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_zoomkeeper"));
    command
        .arg("migrate")
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    let mut set = 0;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not NAME=value: {line:?}"));
        command.env(name, value);
        set += 1;
    }
    assert!(set >= 4, "the file sets the usual settings");
    command.env("ZOOMKEEPER_DATA_DIR", dir.path());
    let out = command.output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("WARN") && !stderr.contains("names no setting"),
        "{stderr}"
    );
}

/// `systemd-analyze verify` on the example unit, pointed at the built binary and an
/// empty environment file: no unknown key, no value systemd refuses.
#[test]
fn the_systemd_unit_passes_systemds_check() {
    let Ok(analyze) = which("systemd-analyze") else {
        assert!(
            std::env::var_os("ZOOMKEEPER_REQUIRE_POSTGRES").is_none(),
            "systemd-analyze is required in CI (.ci/run installs it)"
        );
        eprintln!("skipping: systemd-analyze is not installed");
        return;
    };
    let (_, unit) = repo_file("deploy/zoomkeeper.service");
    let dir = tempfile::tempdir().expect("temp dir");
    let env_file = dir.path().join("zoomkeeper.env");
    std::fs::write(&env_file, "").expect("env file");
    assert!(unit.contains("ExecStart=/usr/local/bin/zoomkeeper serve"));
    assert!(unit.contains("EnvironmentFile=/etc/zoomkeeper/zoomkeeper.env"));
    let unit = unit
        .replace(
            "/usr/local/bin/zoomkeeper",
            env!("CARGO_BIN_EXE_zoomkeeper"),
        )
        .replace(
            "/etc/zoomkeeper/zoomkeeper.env",
            env_file.to_str().expect("utf-8 path"),
        );
    let path = dir.path().join("zoomkeeper.service");
    std::fs::write(&path, unit).expect("unit");
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let about_the_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("zoomkeeper.service"))
        .collect();
    assert!(about_the_unit.is_empty(), "{stderr}");
    let (_, unit) = repo_file("deploy/zoomkeeper.service");
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "User=zoomkeeper",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
}

fn which(program: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .ok_or(())
}

/// The image's promises, read from the Dockerfile's last stage: built from the lock
/// file in release mode, run as an unprivileged user, data in the `/data` volume, the
/// health check on `/readyz`, `zoomkeeper serve` by default.
#[test]
fn the_dockerfile_keeps_its_promises() {
    let (_, text) = repo_file("Dockerfile");
    let instructions: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("FROM "))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    assert!(instructions[stages[0]].ends_with(" AS builder"));
    assert!(text.contains("cargo build --release -p zoomkeeper --locked"));
    let runtime = &instructions[stages[1]..];
    assert!(
        instructions[stages[1]].contains("-slim"),
        "a small runtime base"
    );
    let user = runtime
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage names its user");
    assert!(
        !["root", "0", "0:0"].contains(&user) && !user.starts_with("0:"),
        "{user}"
    );
    assert!(runtime.contains(&r#"VOLUME ["/data"]"#));
    assert!(runtime.contains(&"ENV ZOOMKEEPER_DATA_DIR=/data \\"));
    assert!(runtime.iter().any(|l| l.starts_with("HEALTHCHECK ")));
    assert!(text.contains("/readyz\" || exit 1"));
    assert!(runtime.contains(&r#"ENTRYPOINT ["zoomkeeper"]"#));
    assert!(runtime.contains(&r#"CMD ["serve"]"#));
    assert!(runtime
        .iter()
        .any(|l| l.starts_with("COPY --from=builder /usr/local/bin/zoomkeeper ")));
}

/// The compose file: PostgreSQL 15 with a health check the replicas wait for, and two
/// zoomkeeper replicas on the same database sharing one master key file.
#[test]
fn the_compose_file_runs_two_replicas_on_one_database() {
    let (_, text) = repo_file("compose.yaml");
    for needed in [
        "\n  postgres:\n",
        "image: postgres:15",
        "pg_isready",
        "\n  zoomkeeper-a:\n",
        "\n  zoomkeeper-b:\n",
        "condition: service_healthy",
        "ZOOMKEEPER_DATABASE_URL: postgres://",
        "ZOOMKEEPER_MASTER_KEY_FILE: /data/master.key",
        "- zoomkeeper-keys:/data",
    ] {
        assert!(text.contains(needed), "compose.yaml lacks {needed:?}");
    }
    assert_eq!(text.matches("<<: *zoomkeeper").count(), 2, "both replicas");
}
