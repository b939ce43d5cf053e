//! Every bench, run with tiny sizes on SQLite and PostgreSQL through the same flags
//! `zoomkeeper bench …` takes, so a change to the schema or the storage layer cannot
//! silently break one. They check that each report adds up (nothing lost, every
//! count where it belongs), never how fast anything was.
//!
//! The chaos run is also the proof that no healthy connection dies by zoomkeeper's
//! hand under everything at once (issue 10, "Proof required"): two `serve`
//! processes on PostgreSQL, token storms, re-authorisations (concurrent, and ones
//! whose create fails after the exchange), deauthorisations and SIGKILLs must lose
//! no connection and use no stale refresh token. The bench's module documentation
//! says how it counts, and how kills are timed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bench::{Backend, BenchCommand};
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    bench: BenchCommand,
}

/// The bench `zoomkeeper bench {args}` would run.
fn parse(args: &[&str]) -> BenchCommand {
    let argv = std::iter::once("bench").chain(args.iter().copied());
    match Cli::try_parse_from(argv) {
        Ok(cli) => cli.bench,
        Err(e) => panic!("zoomkeeper bench {args:?}: {e}"),
    }
}

/// One bench at a time: they share two cores, and the chaos run's kill timing
/// assumes it has them.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// The databases every bench must have run on: SQLite, and PostgreSQL when the
/// machine has it (required with `ZOOMKEEPER_REQUIRE_POSTGRES=1`).
async fn expected_backends() -> Vec<Backend> {
    match testkit::pg_cluster::shared()
        .await
        .expect("throwaway PostgreSQL")
    {
        Some(_) => vec![Backend::Sqlite, Backend::Postgres],
        None => vec![Backend::Sqlite],
    }
}

/// The `zoomkeeper` program whose `serve` the benches start: `ZOOMKEEPER_BIN`, or
/// the one cargo builds for the workspace's tests. Asking for exactly what
/// `cargo test --workspace` builds finds it already built there (a different
/// feature set, as `cargo build -p zoomkeeper` has, would rebuild half the
/// dependencies); cargo waits for any build holding the target directory.
fn zoomkeeper() -> &'static Path {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        if let Some(program) = std::env::var_os("ZOOMKEEPER_BIN") {
            return program.into();
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let mut build = std::process::Command::new(cargo);
        // Cargo gives this test its package's variables (`CARGO_PKG_NAME`, …); build
        // scripts that watch them (ring's do) would see a change and rebuild half the
        // dependencies. The build must see what the outer `cargo test` saw.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let from_cargo = [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_CFG_",
            ]
            .iter()
            .any(|prefix| name.starts_with(prefix))
                || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*name);
            if from_cargo {
                build.env_remove(&*name);
            }
        }
        build.args([
            "test",
            "--workspace",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let out = build
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("running cargo to build zoomkeeper");
        assert!(
            out.status.success(),
            "cargo test --workspace --no-run failed"
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| {
                m["target"]["name"] == "zoomkeeper"
                    && m["target"]["kind"] == serde_json::json!(["bin"])
                    && m["profile"]["test"] == false
            })
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo names the zoomkeeper executable it built")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_bench_times_every_request_on_both_databases() {
    let _turn = one_at_a_time().await;
    let BenchCommand::Api(args) = parse(&["api", "--requests", "20", "--concurrency", "2"]) else {
        unreachable!()
    };
    let reports = bench::api::run(args).await.expect("bench api");

    let backends: Vec<Backend> = reports.iter().map(|r| r.backend).collect();
    assert_eq!(backends, expected_backends().await);
    for r in &reports {
        assert_eq!(r.latencies.count(), 20, "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_bench_hands_out_cached_tokens_without_zoom_answers_bot_platform_callbacks_and_measures_serve_with_its_connections(
) {
    let _turn = one_at_a_time().await;
    let BenchCommand::Tokens(args) = parse(&[
        "tokens",
        "--requests",
        "10",
        "--concurrency",
        "2",
        "--connections",
        "20",
        "--idle-seconds",
        "1",
    ]) else {
        unreachable!()
    };
    let reports = bench::tokens::run(args, zoomkeeper())
        .await
        .expect("bench tokens");

    let backends: Vec<Backend> = reports.iter().map(|r| r.backend).collect();
    assert_eq!(backends, expected_backends().await);
    for r in &reports {
        let latencies: Vec<u64> = r.rounds.iter().map(|x| x.zoom_latency_ms).collect();
        assert_eq!(latencies, [0, 50], "{r:?}");
        for round in &r.rounds {
            assert_eq!(
                (
                    round.cached.count(),
                    round.zak.count(),
                    round.direct_zak.count()
                ),
                (10, 10, 10),
                "{r:?}"
            );
            assert_eq!(round.zoom_calls_per_cached_token, 0.0, "{r:?}");
            assert_eq!(round.zoom_calls_per_zak_token, 1.0, "{r:?}");
            // Each callback was answered 200 with its token (the bench fails on any
            // other answer) and made only the mint's Zoom call.
            assert_eq!(
                (
                    round.attendee.count(),
                    round.direct_local_recording.count(),
                    round.recall_zak.count()
                ),
                (10, 10, 10),
                "{r:?}"
            );
            assert_eq!(round.zoom_calls_per_attendee_callback, 1.0, "{r:?}");
            assert_eq!(round.zoom_calls_per_recall_zak_callback, 1.0, "{r:?}");
        }
        let (one, twenty) = r.idle_rss_kib.expect("the memory measurement ran");
        assert!(one > 0 && twenty > 0, "{r:?}");
        // The one connected through the API, and the twenty stored.
        assert_eq!(r.connections_stored, 21, "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_bench_delivers_one_webhook_per_broken_connection() {
    let _turn = one_at_a_time().await;
    let BenchCommand::Deliveries(args) = parse(&["deliveries", "--deliveries", "10"]) else {
        unreachable!()
    };
    let reports = bench::deliveries::run(args)
        .await
        .expect("bench deliveries");

    let backends: Vec<Backend> = reports.iter().map(|r| r.backend).collect();
    assert_eq!(backends, expected_backends().await);
    for r in &reports {
        assert_eq!((r.outbox_events, r.succeeded), (10, 10), "{r:?}");
        assert!(r.received >= 10, "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_bench_indexes_one_meeting_per_applied_event() {
    let _turn = one_at_a_time().await;
    let BenchCommand::Webhooks(args) = parse(&[
        "webhooks",
        "--seconds",
        "1",
        "--concurrency",
        "2",
        "--users",
        "5",
        // The clients' own process would be this program's `bench webhook-load`,
        // which the tests' build of it leaves out.
        "--generator",
        "in-process",
    ]) else {
        unreachable!()
    };
    let reports = bench::webhooks::run(args, zoomkeeper())
        .await
        .expect("bench webhooks");

    let backends: Vec<Backend> = reports.iter().map(|r| r.backend).collect();
    assert_eq!(backends, expected_backends().await);
    for r in &reports {
        assert!(r.latencies.count() > 0, "{r:?}");
        assert_eq!(r.other, 0, "{r:?}");
        assert_eq!((r.applied, r.indexed), (r.sent, r.sent), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_bench_finds_the_host_of_every_indexed_meeting_it_asks_for() {
    let _turn = one_at_a_time().await;
    let BenchCommand::Lookup(args) = parse(&[
        "lookup",
        "--meetings",
        "300",
        "--connections",
        "7",
        "--lookups",
        "200",
    ]) else {
        unreachable!()
    };
    let reports = bench::lookup::run(args).await.expect("bench lookup");

    let backends: Vec<Backend> = reports.iter().map(|r| r.backend).collect();
    assert_eq!(backends, expected_backends().await);
    for r in &reports {
        assert_eq!(r.indexed, 300, "{r:?}");
        assert_eq!(r.latencies.count(), 200, "{r:?}");
        // About half the ids asked for were never indexed; every hit had the
        // right host (the bench fails otherwise).
        assert!(r.hits > 0 && r.hits < 200, "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_on_two_processes_loses_no_connection_and_uses_no_stale_refresh_token() {
    let _turn = one_at_a_time().await;
    let Some(cluster) = testkit::pg_cluster::shared()
        .await
        .expect("throwaway PostgreSQL")
    else {
        eprintln!(
            "skipped: no PostgreSQL binaries (set {}=1 to make this an error)",
            testkit::pg_cluster::REQUIRE_ENV
        );
        return;
    };
    let database_url = cluster.create_database().await.expect("database");
    let BenchCommand::Chaos(args) = parse(&[
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
    ]) else {
        unreachable!()
    };
    // Fails unless it lost no connection and used no stale refresh token.
    let report = bench::chaos::run(args, zoomkeeper())
        .await
        .expect("bench chaos");

    // The chaos really happened.
    assert!(report.count("kills") >= 1);
    assert!(report.count("reauth_rounds") >= 10);
    assert!(report.count("deauths") >= 1);
    assert!(report.refresh_grants_during_chaos() >= 10);
    // And lost nothing.
    assert_eq!((report.lost(), report.stale_refresh_token_uses()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_sync_bench_indexes_every_meeting_of_the_account() {
    let _turn = one_at_a_time().await;
    let BenchCommand::AccountSync(args) = parse(&[
        "account-sync",
        "--users",
        "6",
        "--meetings-per-user",
        "2",
        "--business",
    ]) else {
        unreachable!()
    };
    let reports = bench::account_sync::run(args)
        .await
        .expect("bench account-sync");

    let backends: Vec<Backend> = reports.iter().map(|r| r.backend).collect();
    assert_eq!(backends, expected_backends().await);
    for r in &reports {
        // 6 × 2 meetings, 5 members' PMIs and the admin's.
        assert_eq!((r.indexed, r.expected), (18, 18), "{r:?}");
        assert_eq!(r.zoom_calls.get("GET /v2/users"), Some(&1), "{r:?}");
        assert!(r.rounds >= 1 && r.users == 6, "{r:?}");
    }
}
