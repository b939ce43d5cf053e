//! Housekeeping (DESIGN.md §6), on SQLite and PostgreSQL: old Zoom webhook receipts
//! and index rows of meetings long past go; recent ones, PMI rows and meetings
//! without a start time stay; two processes sweeping at once agree; the loop stops
//! on shutdown.

mod common;

use std::time::Duration;

use common::{spawn_app, Backend, TestApp};
use futures::StreamExt as _;
use keeper::housekeeping::{self, Sweep, BATCH};
use keeper::storage::{MeetingIndexChange, MeetingRow, MeetingSource};
use serde_json::json;

/// Runs `$name(Backend)` once per database.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(Backend::Postgres).await
            }
        }
    )*};
}

on_both_databases!(
    old_receipts_and_past_meetings_go_recent_and_pmi_rows_stay,
    two_processes_sweeping_at_once_delete_each_row_once,
    the_loop_stops_on_shutdown,
);

const CLIENT: &str = "housekeeping-client";
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A started service with one app and one connected user: (app id, connection id).
async fn connected(backend: Backend) -> Option<(TestApp, String, String)> {
    let app = spawn_app(backend).await?;
    let zoa = app.new_app(CLIENT).await["id"]
        .as_str()
        .expect("app id")
        .to_owned();
    let (_, c) = app.connect(CLIENT, json!({})).await;
    assert_eq!(c.status, 201, "{}", c.text);
    let zoc = c.json["id"].as_str().expect("connection id").to_owned();
    Some((app, zoa, zoc))
}

async fn sweep(app: &TestApp) -> Sweep {
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    housekeeping::run_once(&app.keeper, &stopping)
        .await
        .expect("sweep")
}

async fn index(
    app: &TestApp,
    zoa: &str,
    zoc: &str,
    meeting_id: &str,
    source: MeetingSource,
    start: Option<Duration>,
    ago: bool,
) {
    let now = app.keeper.store.now().await.expect("now");
    let row = MeetingRow {
        project_id: app.project_id.clone(),
        app_id: zoa.to_owned(),
        meeting_id: meeting_id.to_owned(),
        connection_id: zoc.to_owned(),
        source,
        topic: None,
        start_time: start.map(|d| if ago { now - d } else { now + d }),
        synced_at: now,
    };
    let change = if source == MeetingSource::Pmi {
        MeetingIndexChange::ReplacePmi {
            row,
            personal_meeting_url: None,
        }
    } else {
        MeetingIndexChange::Upsert(row)
    };
    app.keeper
        .store
        .apply_meeting_change(&change)
        .await
        .expect("index a meeting");
}

async fn indexed(app: &TestApp, zoa: &str, meeting_id: &str) -> bool {
    !app.keeper
        .store
        .meeting_hosts(&app.project_id, Some(zoa), meeting_id)
        .await
        .expect("lookup")
        .is_empty()
}

async fn receipt(app: &TestApp, zoa: &str, key: &str, age: Duration) {
    let now = app.keeper.store.now().await.expect("now");
    app.keeper
        .store
        .record_webhook_receipt_and_apply(zoa, key, now - age, &MeetingIndexChange::Nothing)
        .await
        .expect("receipt");
}

async fn has_receipt(app: &TestApp, zoa: &str, key: &str) -> bool {
    app.keeper
        .store
        .webhook_receipt_exists(zoa, key)
        .await
        .expect("receipt lookup")
}

/// `n` one-off webhook rows (ids from `first`) that started `age` ago.
async fn past_meetings(app: &TestApp, zoa: &str, zoc: &str, first: u64, n: u64, age: Duration) {
    futures::stream::iter(first..first + n)
        .for_each_concurrent(8, |id| async move {
            index(
                app,
                zoa,
                zoc,
                &id.to_string(),
                MeetingSource::Webhook,
                Some(age),
                true,
            )
            .await
        })
        .await;
}

async fn old_receipts_and_past_meetings_go_recent_and_pmi_rows_stay(backend: Backend) {
    let Some((app, zoa, zoc)) = connected(backend).await else {
        return;
    };
    use MeetingSource::*;
    // More than one batch of long-past meetings, so the sweep goes round.
    let many = u64::from(BATCH) + 250;
    past_meetings(&app, &zoa, &zoc, 100_000_000_000, many, 8 * DAY).await;
    index(&app, &zoa, &zoc, "811111111", Sync, Some(8 * DAY), true).await;
    index(&app, &zoa, &zoc, "822222222", Webhook, Some(6 * DAY), true).await;
    index(&app, &zoa, &zoc, "833333333", Sync, Some(DAY), false).await;
    // Recurring meetings are indexed without a start time.
    index(&app, &zoa, &zoc, "844444444", Webhook, None, true).await;
    // A PMI row stays whatever its start time says.
    index(&app, &zoa, &zoc, "855555555", Pmi, Some(30 * DAY), true).await;
    receipt(&app, &zoa, "meeting.created:1:811111111", 8 * DAY).await;
    receipt(&app, &zoa, "meeting.created:2:822222222", 6 * DAY).await;
    receipt(
        &app,
        &zoa,
        "meeting.created:3:833333333",
        Duration::from_secs(60),
    )
    .await;

    let first = sweep(&app).await;
    assert_eq!(
        first,
        Sweep {
            receipts: 1,
            meetings: many + 1,
            interrupted: false
        }
    );
    assert!(!indexed(&app, &zoa, "811111111").await);
    assert!(!indexed(&app, &zoa, "100000000000").await);
    assert!(!indexed(&app, &zoa, &(100_000_000_000 + many - 1).to_string()).await);
    for kept in ["822222222", "833333333", "844444444", "855555555"] {
        assert!(indexed(&app, &zoa, kept).await, "{kept} was dropped");
    }
    assert!(!has_receipt(&app, &zoa, "meeting.created:1:811111111").await);
    assert!(has_receipt(&app, &zoa, "meeting.created:2:822222222").await);
    assert!(has_receipt(&app, &zoa, "meeting.created:3:833333333").await);

    // A second sweep finds nothing more to do.
    assert_eq!(sweep(&app).await, Sweep::default());
}

async fn two_processes_sweeping_at_once_delete_each_row_once(backend: Backend) {
    let Some((app, zoa, zoc)) = connected(backend).await else {
        return;
    };
    let many = 2 * u64::from(BATCH) + 100;
    past_meetings(&app, &zoa, &zoc, 200_000_000_000, many, 9 * DAY).await;
    index(
        &app,
        &zoa,
        &zoc,
        "866666666",
        MeetingSource::Sync,
        Some(DAY),
        true,
    )
    .await;
    let (a, b) = tokio::join!(sweep(&app), sweep(&app));
    assert_eq!(a.meetings + b.meetings, many);
    // Whatever a process stopped early on (PostgreSQL skips locked rows), the next
    // sweep finishes.
    let rest = sweep(&app).await;
    assert_eq!(rest.meetings, 0);
    assert!(indexed(&app, &zoa, "866666666").await);
    assert!(!indexed(&app, &zoa, "200000000000").await);
}

async fn the_loop_stops_on_shutdown(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(housekeeping::run(app.keeper.clone(), stopping));
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.send(true).expect("the loop listens");
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("stops within 5 s")
        .expect("no panic");
}
