//! `zoomkeeper bench deliveries`: outgoing webhook delivery throughput (issue 6,
//! "Performance").
//!
//! For each database (SQLite, and PostgreSQL when a throwaway cluster can be
//! started) it opens the service in this process, subscribes one webhook to a local
//! receiver that answers 200 at once, and breaks `--deliveries` stored connections
//! through the same disconnect the token path uses — each writes its
//! `zoom_oauth_connection.state_change` outbox event in the state change's
//! transaction. Then it starts the delivery worker and times, end to end, the
//! dispatcher fanning the outbox out to delivery rows, the signed POSTs, and every
//! row written back `success`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use keeper::config::{Config, Settings};
use keeper::storage::{
    ConnectionRow, ConnectionState, DeliveryStatus, DisconnectOutcome, FailureData,
    NewConnectionEvent, PageRequest, WebhookSubscriptionRow,
};
use keeper::{apps, connections, projects, Keeper};

#[derive(Args)]
pub struct DeliveriesArgs {
    /// Deliveries to make (one broken connection each).
    #[arg(long, default_value_t = 1000)]
    deliveries: usize,
    /// Only SQLite, even when PostgreSQL binaries are present.
    #[arg(long)]
    sqlite_only: bool,
}

const CLIENT_ID: &str = "bench-client";
const CLIENT_SECRET: &str = "bench-secret";
/// Longest the bench waits for the deliveries of one database.
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

pub async fn run(args: DeliveriesArgs) -> anyhow::Result<()> {
    if args.deliveries == 0 {
        bail!("--deliveries must be at least 1");
    }
    let dir = tempfile::tempdir().context("creating a scratch directory")?;
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    bench_backend("sqlite", &sqlite_url, dir.path(), args.deliveries).await?;
    if !args.sqlite_only {
        match testkit::pg_cluster::shared().await? {
            Some(cluster) => {
                let url = cluster.create_database().await?;
                bench_backend("postgres", &url, dir.path(), args.deliveries).await?;
            }
            None => println!("postgres: skipped (no PostgreSQL binaries found)"),
        }
    }
    Ok(())
}

/// A receiver on 127.0.0.1 that counts requests and answers 200 at once; stops
/// when `stop` is dropped.
async fn start_receiver(
    received: Arc<AtomicU64>,
) -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let received = received.clone();
            async move {
                received.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::OK
            }
        }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((url, stop))
}

async fn bench_backend(
    backend: &str,
    database_url: &str,
    dir: &std::path::Path,
    n: usize,
) -> anyhow::Result<()> {
    let sim = zoom_sim::Simulator::start().await?;
    sim.control()
        .create_app(&zoom_sim::SimApp {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            ..Default::default()
        })
        .await?;
    let config = Config::resolve(Settings {
        data_dir: Some(dir.to_owned()),
        database_url: Some(database_url.to_owned()),
        master_key_file: Some(dir.join(format!("{backend}.key"))),
        zoom_oauth_url: Some(sim.url()),
        zoom_api_url: Some(sim.url()),
        // The receiver is on loopback.
        allow_private_callback_urls: Some(true),
        ..Settings::default()
    })?;
    let keeper = Arc::new(Keeper::open(config).await?);
    let project = projects::create(&keeper, "bench").await?;
    let app = apps::create(
        &keeper,
        &project.id,
        apps::NewApp {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.to_owned().into(),
            webhook_secret: None,
            kind: keeper::storage::AppKind::UserLevel,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("creating the app: {e:?}"))?;

    let received = Arc::new(AtomicU64::new(0));
    let (receiver_url, _stop_receiver) = start_receiver(received.clone()).await?;
    let now = keeper.store.now().await?;
    let subscription_id = keeper::ids::IdKind::WebhookSubscription.generate();
    keeper
        .store
        .insert_webhook_subscription(
            &WebhookSubscriptionRow {
                id: subscription_id.clone(),
                project_id: project.id.clone(),
                url: receiver_url,
                triggers: vec![connections::STATE_CHANGE_TRIGGER.to_owned()],
                is_active: true,
                created_at: now,
                updated_at: now,
            },
            10,
        )
        .await?;

    let loading = Instant::now();
    break_connections(&keeper, &project.id, &app.id, n).await?;
    let depths = keeper.store.webhook_queue_depths().await?;
    if depths.outbox_undispatched != n as u64 {
        bail!(
            "expected {n} undispatched outbox events, found {}",
            depths.outbox_undispatched
        );
    }
    let loaded_in = loading.elapsed();

    let (stop_worker, stopping) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let worker = tokio::spawn(keeper::webhook_delivery::run(keeper.clone(), stopping));
    let deadline = started + GIVE_UP_AFTER;
    let mut first_at = None;
    loop {
        let got = received.load(Ordering::Relaxed);
        if got > 0 && first_at.is_none() {
            first_at = Some(started.elapsed());
        }
        if got >= n as u64 {
            // Every POST arrived; done once every row is written back.
            let d = keeper.store.webhook_queue_depths().await?;
            if d.deliveries_due == 0 && d.outbox_undispatched == 0 {
                break;
            }
        }
        if Instant::now() >= deadline {
            bail!("{backend}: {got} of {n} deliveries arrived within {GIVE_UP_AFTER:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop_worker.send(true);
    worker.await.context("delivery worker")?;

    let succeeded = count_successes(&keeper, &project.id, &subscription_id).await?;
    if succeeded != n {
        bail!("{backend}: {succeeded} of {n} delivery rows ended success");
    }
    println!(
        "{backend}: {n} deliveries (outbox fan-out, signed POST to a local receiver \
         answering 200, row written success) in {:.2} s = {:.0} deliveries/s; first \
         arrived after {:.0} ms; {} POSTs received; setup: {n} connections broken in \
         {:.1} s",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        first_at.unwrap_or_default().as_secs_f64() * 1000.0,
        received.load(Ordering::Relaxed),
        loaded_in.as_secs_f64(),
    );
    Ok(())
}

/// Stores `n` connected connections of the app, then disconnects each the way the
/// token path does when Zoom says the grant is gone: one outbox event each.
async fn break_connections(
    keeper: &Arc<Keeper>,
    project_id: &str,
    app_id: &str,
    n: usize,
) -> anyhow::Result<()> {
    const IN_FLIGHT: usize = 8;
    let gate = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let now = keeper.store.now().await?;
    for i in 0..n {
        let permit = gate.clone().acquire_owned().await?;
        let (keeper, project_id, app_id) =
            (keeper.clone(), project_id.to_owned(), app_id.to_owned());
        tasks.spawn(async move {
            let _permit = permit;
            let row = ConnectionRow {
                id: keeper::ids::IdKind::Connection.generate(),
                project_id,
                app_id,
                user_id: format!("bench-user-{i}"),
                account_id: format!("bench-account-{}", i / 50),
                email: Some(format!("user{i}@bench.example.com")),
                pmi: None,
                personal_meeting_url: None,
                state: ConnectionState::Connected,
                connection_failure_data: None,
                metadata: Some(serde_json::json!({"bench": i})),
                deduplication_key: None,
                is_local_recording_token_supported: false,
                is_onbehalf_token_supported: false,
                scopes: Vec::new(),
                refresh_token: None,
                access_token: None,
                access_token_expires_at: None,
                lease_owner: None,
                lease_until: None,
                fence: 0,
                refresh_due_at: Some(now + Duration::from_secs(30 * 86_400)),
                last_attempted_sync_at: None,
                last_successful_sync_at: None,
                next_sync_at: None,
                last_successful_token_refresh_at: Some(now),
                created_at: now,
                updated_at: now,
            };
            let created = NewConnectionEvent {
                kind: "created".to_owned(),
                message: "The connection was created.".to_owned(),
                data: None,
            };
            keeper.store.insert_connection(&row, &created).await?;
            let failure = FailureData {
                error: "The user removed the app from their Zoom account.".to_owned(),
                code: "app_deauthorized".to_owned(),
                timestamp: now,
            };
            match connections::disconnect(&keeper, &row, None, failure, "disconnected").await? {
                DisconnectOutcome::Disconnected(_) => anyhow::Ok(()),
                other => bail!("disconnecting {}: {other:?}", row.id),
            }
        });
        while let Some(done) = tasks.try_join_next() {
            done.context("connection task")??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.context("connection task")??;
    }
    Ok(())
}

/// The subscription's delivery rows that ended `success`, every page.
async fn count_successes(
    keeper: &Keeper,
    project_id: &str,
    subscription_id: &str,
) -> anyhow::Result<usize> {
    let mut total = 0;
    let mut page = PageRequest {
        cursor: None,
        limit: 100,
    };
    for _ in 0..100_000 {
        let got = keeper
            .store
            .list_webhook_deliveries(
                project_id,
                subscription_id,
                Some(DeliveryStatus::Success),
                &page,
            )
            .await?;
        total += got.items.len();
        let Some(last) = got.items.last().filter(|_| got.has_more) else {
            return Ok(total);
        };
        page.cursor = Some(keeper::storage::Cursor {
            created_at: last.created_at,
            id: last.idempotency_key.clone(),
            direction: keeper::storage::Direction::Older,
        });
    }
    bail!("too many pages of deliveries")
}
