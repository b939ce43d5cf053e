//! Names the commit the binary is built from, for `zoomkeeper --version`:
//! `ZOOMKEEPER_BUILD_COMMIT` when the build passes it (a container build has no
//! `.git`), else what the local `git` says. Nothing is fetched.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=ZOOMKEEPER_BUILD_COMMIT");
    let given = std::env::var("ZOOMKEEPER_BUILD_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    let commit = given.or_else(local_commit);
    let version = env!("CARGO_PKG_VERSION");
    let shown = match commit {
        Some(commit) => format!("{version} (commit {commit})"),
        None => format!("{version} (commit unknown)"),
    };
    println!("cargo:rustc-env=ZOOMKEEPER_VERSION={shown}");
}

/// The checkout's commit (12 hex digits, `-dirty` with uncommitted changes), and
/// the files whose change means another one.
fn local_commit() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let git_dir = git(&["rev-parse", "--absolute-git-dir"])?;
    println!("cargo:rerun-if-changed={git_dir}/HEAD");
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        println!("cargo:rerun-if-changed={git_dir}/{branch}");
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}
