//! Proof that no healthy connection dies by zoomkeeper's hand under everything at
//! once (issue 10, "Proof required"): `zoomkeeper bench chaos`, small, against two
//! `serve` processes on PostgreSQL — token storms, re-authorisations (concurrent,
//! and ones whose create fails after the exchange), deauthorisations and SIGKILLs —
//! must print 0 connections lost and 0 stale refresh-token uses, and exit 0.
//! The bench's module documentation says how it counts, and how kills are timed.

use crate::support::process::zoomkeeper;

/// The number at the start of what follows `label` on the first line holding it.
fn number_after(report: &str, label: &str) -> u64 {
    report
        .lines()
        .find_map(|l| l.split_once(label).map(|(_, rest)| rest))
        .and_then(|rest| {
            rest.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no number after {label:?} in the report:\n{report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_on_two_processes_loses_no_connection_and_uses_no_stale_refresh_token() {
    let Some(database_url) = testkit::empty_postgres_database().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = zoomkeeper(dir.path());
    command.args([
        "bench",
        "chaos",
        "--connections",
        "20",
        "--seconds",
        "15",
        "--concurrency",
        "8",
        "--kill-every",
        "4",
        "--recovery-seconds",
        "30",
        "--postgres-url",
        &database_url,
    ]);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("zoomkeeper bench chaos runs");
    let report = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{report}{stderr}");

    // The chaos really happened.
    assert!(number_after(&report, "kills:") >= 1, "{report}");
    assert!(
        number_after(&report, "re-authorisations:") >= 10,
        "{report}"
    );
    assert!(number_after(&report, "deauthorisations:") >= 1, "{report}");
    assert!(
        number_after(&report, "Zoom during the chaos:") >= 10,
        "refresh grants: {report}"
    );
    // And lost nothing.
    assert_eq!(
        (
            number_after(&report, "connections lost:"),
            number_after(&report, "stale refresh-token uses:")
        ),
        (0, 0),
        "{report}"
    );
    assert!(out.status.success(), "{report}{stderr}");
}
