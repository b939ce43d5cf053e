//! `zoomkeeper bench account-sync` (DESIGN.md §15, §10): the meeting sync of one
//! account-level connection whose Zoom account has `--users` users (the admin
//! included) with `--meetings-per-user` meetings each, against the simulator with
//! Zoom's per-account rate limits of a Pro account (Light 30/s, Medium 20/s) or,
//! with `--business`, of a Business account (80/s, 60/s). The service runs with its
//! default Zoom budget per account unless `--requests-per-second` says otherwise.
//!
//! The admin connects through the API; then meeting sync rounds run (as the worker
//! runs them) until the pass completes. Printed: the wall time of the whole pass,
//! the Zoom calls it made by endpoint, the 429s Zoom answered, and the rows indexed,
//! which must be every meeting and every member's personal meeting room.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use clap::Args;
use keeper::config::Settings;
use keeper::meeting_sync;
use keeper::storage::AppKind;

use crate::setup::{on_each_database, Backend, Setup, REDIRECT_URI};

const CLIENT_ID: &str = "bench-account-client";
const CLIENT_SECRET: &str = "bench-account-secret";

#[derive(Args, Debug, Clone)]
pub struct AccountSyncArgs {
    /// Users of the Zoom account, the admin included.
    #[arg(long, default_value_t = 1_000)]
    pub users: u32,
    /// Meetings each user has scheduled.
    #[arg(long, default_value_t = 2)]
    pub meetings_per_user: u32,
    /// Zoom's Business-account limits instead of a Pro account's.
    #[arg(long)]
    pub business: bool,
    /// The service's Zoom budget per account (`zoom_account_requests_per_second`);
    /// its default when absent.
    #[arg(long)]
    pub requests_per_second: Option<u32>,
    /// Only SQLite, even when PostgreSQL binaries are present.
    #[arg(long)]
    pub sqlite_only: bool,
}

/// One database's run.
#[derive(Debug)]
pub struct AccountSyncReport {
    pub backend: Backend,
    pub users: u32,
    /// From the first round to the pass's commit.
    pub elapsed: Duration,
    /// Sync rounds it took (a pass pauses when its per-claim budget runs out).
    pub rounds: usize,
    /// Zoom calls by endpoint ("GET /v2/users", …), refused ones included.
    pub zoom_calls: BTreeMap<String, u64>,
    pub rate_limited: u64,
    /// Index rows of the connection after the pass.
    pub indexed: u64,
    /// Rows the pass had to index: every meeting, every member's PMI, the admin's PMI.
    pub expected: u64,
}

pub async fn run(args: AccountSyncArgs) -> anyhow::Result<Vec<AccountSyncReport>> {
    let args = &args;
    on_each_database(args.sqlite_only, |backend, url, dir| async move {
        bench_account_sync(backend, &url, &dir, args).await
    })
    .await
}

async fn bench_account_sync(
    backend: Backend,
    database_url: &str,
    dir: &Path,
    args: &AccountSyncArgs,
) -> anyhow::Result<AccountSyncReport> {
    ensure!(args.users >= 1, "--users must be at least 1 (the admin)");
    let setup = Setup::start_with(
        backend,
        database_url,
        dir,
        Settings {
            zoom_account_requests_per_second: args.requests_per_second,
            ..Settings::default()
        },
    )
    .await?;
    let control = setup.sim.control();
    control
        .create_app(&zoom_sim::SimApp {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            kind: Some(zoom_sim::SimAppKind::AccountLevel),
            ..Default::default()
        })
        .await?;
    let app = setup
        .create_app_of(CLIENT_ID, CLIENT_SECRET, AppKind::AccountLevel, None)
        .await?;
    let account = control
        .create_account(&zoom_sim::SimAccount {
            members: args.users - 1,
            meetings_per_user: args.meetings_per_user,
            ..Default::default()
        })
        .await?;

    // The admin authorises the app, through the API.
    let auth = setup.authorization().await?;
    let serving = setup.serve().await?;
    let code = control
        .authorize(&zoom_sim::SimAuthorize {
            client_id: CLIENT_ID.into(),
            user_id: account.admin_id.clone(),
            redirect_uri: REDIRECT_URI.into(),
            scopes: Some(
                zoom_sim::ACCOUNT_LEVEL_SCOPES
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            ),
            ..Default::default()
        })
        .await?;
    let id = serving.connect(&auth, &app.id, &code).await?;

    control
        .set_faults(&if args.business {
            zoom_sim::SimFaults::zoom_business()
        } else {
            zoom_sim::SimFaults::zoom_pro()
        })
        .await?;
    let before = control.stats().await?;
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let round = meeting_sync::run_once(&setup.keeper, &stopping).await?;
        if round.synced == 1 {
            break;
        }
        ensure!(
            round.paused == 1 && rounds < 1_000,
            "the pass stopped without completing: {round:?}"
        );
    }
    let elapsed = started.elapsed();
    let after = control.stats().await?;
    control.set_faults(&zoom_sim::SimFaults::default()).await?;

    let zoom_calls: BTreeMap<String, u64> = after
        .api_calls_by_endpoint
        .iter()
        .map(|(endpoint, n)| {
            let was = before
                .api_calls_by_endpoint
                .get(endpoint)
                .copied()
                .unwrap_or(0);
            (endpoint.clone(), n - was)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    let rate_limited = after.rate_limited - before.rate_limited;
    let row = setup
        .keeper
        .store
        .connection_by_id(&id)
        .await?
        .context("the connection")?;
    ensure!(
        row.sync_users_done == Some(i64::from(args.users)) && row.sync_pass_started_at.is_none(),
        "the pass read {:?} of {} users",
        row.sync_users_done,
        args.users
    );
    let indexed = index_rows(&setup, &id).await?;
    let expected =
        u64::from(args.users) * u64::from(args.meetings_per_user) + u64::from(args.users);
    ensure!(
        indexed == expected,
        "the pass indexed {indexed} rows of {expected}"
    );
    let total_calls: u64 = zoom_calls.values().sum();
    println!(
        "{backend}: account of {} users × {} meetings, Zoom {} limits, budget {}/s: full sync in {:.1} s over {rounds} round{}; {total_calls} Zoom calls ({} refused with 429): {}; {indexed} meetings indexed",
        args.users,
        args.meetings_per_user,
        if args.business { "Business" } else { "Pro" },
        setup.keeper.config.zoom_account_requests_per_second,
        elapsed.as_secs_f64(),
        if rounds == 1 { "" } else { "s" },
        rate_limited,
        zoom_calls
            .iter()
            .map(|(endpoint, n)| format!("{endpoint} ×{n}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    serving.stop().await?;
    Ok(AccountSyncReport {
        backend,
        users: args.users,
        elapsed,
        rounds,
        zoom_calls,
        rate_limited,
        indexed,
        expected,
    })
}

/// Rows of the meeting index held by connection `id`, counted page by page as the
/// API lists them.
async fn index_rows(setup: &Setup, id: &str) -> anyhow::Result<u64> {
    use keeper::storage::{meeting_cursor_id, Cursor, Direction, MeetingFilter, PageRequest};
    let filter = MeetingFilter {
        connection_id: Some(id.to_owned()),
        ..MeetingFilter::default()
    };
    let mut cursor = None;
    let mut rows = 0;
    loop {
        let page = setup
            .keeper
            .store
            .list_meetings(
                &setup.project_id,
                &filter,
                &PageRequest { cursor, limit: 100 },
            )
            .await?;
        rows += page.items.len() as u64;
        match (page.has_more, page.items.last()) {
            (true, Some(last)) => {
                cursor = Some(Cursor {
                    created_at: last.synced_at,
                    id: meeting_cursor_id(&last.app_id, &last.meeting_id),
                    direction: Direction::Older,
                })
            }
            _ => return Ok(rows),
        }
    }
}
