//! Proof that outgoing webhooks survive a crash (DESIGN.md §4 "Outgoing webhooks",
//! §6; issue 6 "Proof required"): a real `serve` process is killed with SIGKILL
//! while its deliveries are in flight at a real receiving server, a new process is
//! started on the same database, and every delivery still arrives — at least once,
//! always under its own idempotency key — and ends `success`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::support::api::Api;
use crate::support::process::{wait_for, Deployment};
use crate::support::sim;
use serde_json::json;
use testkit::Receiver;

const CLIENT_ID: &str = "hook-proof-client";
const TRIGGER: &str = "zoom_oauth_connection.state_change";
/// Connections that break, one delivery each.
const CONNECTIONS: usize = 4;
/// How long the receiver holds every request before answering 200: the window in
/// which the sender is killed.
const HOLD: Duration = Duration::from_secs(3);
/// A claimed delivery's lease: how soon the restarted process may send again what
/// the killed one held.
const LEASE: &str = "4s";

// ---- the story ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_deliveries_in_flight_when_the_server_is_killed_arrive_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("zk.db").display());
    deliveries_in_flight_when_the_server_is_killed_arrive_after_a_restart(dir, url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_deliveries_in_flight_when_the_server_is_killed_arrive_after_a_restart() {
    let Some(url) = testkit::empty_postgres_database().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    deliveries_in_flight_when_the_server_is_killed_arrive_after_a_restart(dir, url).await;
}

async fn deliveries_in_flight_when_the_server_is_killed_arrive_after_a_restart(
    dir: tempfile::TempDir,
    database_url: String,
) {
    let started = Instant::now();
    let sim = zoom_sim::Simulator::start().await.expect("simulator");
    let secret = sim::zoom_app(&sim, CLIENT_ID).await.expect("sim app");
    // Short-lived tokens, so a token request refreshes and finds the grant gone.
    sim.control()
        .set_config(&zoom_sim::SimConfig {
            access_token_ttl_s: Some(60),
            ..Default::default()
        })
        .await
        .expect("sim config");
    let receiver = Receiver::start(200).await;
    receiver.hold(HOLD);
    let deployment = Deployment {
        dir: dir.path().to_owned(),
        database_url,
        zoom_url: sim.url(),
        flags: [
            "--allow-private-callback-urls",
            "true",
            "--webhook-retry-schedule",
            "1s,1s,1s,1s,1s,1s,1s,1s,1s,1s",
            "--webhook-delivery-lease",
            LEASE,
        ]
        .map(String::from)
        .to_vec(),
    };
    let key = deployment.api_key().expect("API key");
    let api = Api::new(&key);
    // The breakage happens on an API-only process, so no delivery starts before
    // every state change is written; then one process with workers sends them all.
    let api_only = deployment
        .serve_with("api", &["--role", "api"])
        .expect("the API process serves");
    let base = api_only.base.clone();
    let app_id = api
        .create_app(&base, CLIENT_ID, &secret)
        .await
        .expect("app");
    let hook = api
        .call(
            reqwest::Method::POST,
            &format!("{base}/api/v1/webhooks"),
            Some(json!({"url": receiver.url(), "triggers": [TRIGGER]})),
        )
        .await
        .expect("subscribe");
    assert_eq!(hook.status, 201, "{}", hook.json);
    let hook_id = hook.json["id"].as_str().expect("webhook id").to_owned();

    // Connections break: the users remove the app at Zoom, then a bot asks for a
    // token, and zoomkeeper finds each grant gone (one state change each).
    // Connected first, broken together, so every delivery is in flight at once.
    let mut users = Vec::new();
    for _ in 0..CONNECTIONS {
        let (user, code) = sim::authorized_user(&sim, CLIENT_ID).await.expect("user");
        let id = api
            .create_connection(&base, &app_id, &code, sim::REDIRECT_URI)
            .await
            .expect("connection");
        users.push((user, id));
    }
    for (user, _) in &users {
        sim.control()
            .deauthorize(user, CLIENT_ID)
            .await
            .expect("deauthorize");
    }
    // Asked together: a refused refresh waits a few seconds for a re-authorisation
    // before it disconnects, and the state changes must happen at about one time.
    let mut asked = tokio::task::JoinSet::new();
    for (_, id) in users {
        let (api, base) = (api.clone(), base.clone());
        asked.spawn(async move { (api.access_token(&base, &id).await, id) });
    }
    let mut connections = BTreeSet::new();
    while let Some(done) = asked.join_next().await {
        let (a, id) = done.expect("token request task");
        let a = a.expect("token request");
        assert_eq!(a.status, 409, "{}", a.json);
        assert_eq!(a.json["code"], "connection_disconnected", "{}", a.json);
        connections.insert(id);
    }
    let mut first = deployment.serve("first").expect("first serves");

    // Kill the sender while the receiver holds its requests (nothing answered yet).
    let in_flight = wait_for(Duration::from_secs(20), || {
        let all = receiver.received();
        async move { (all.len() == CONNECTIONS && all.iter().all(|a| !a.answered)).then_some(all) }
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "all deliveries should be in flight at once; received {:?}\n{}",
            receiver.received(),
            first.log_tail(40)
        )
    });
    first.kill();
    let killed_at = Instant::now();
    let held: BTreeSet<String> = in_flight
        .iter()
        .map(|a| a.header("webhook-id").to_owned())
        .collect();
    assert_eq!(
        held.len(),
        CONNECTIONS,
        "one key per delivery: {in_flight:?}"
    );

    // A new process on the same database finishes the work once the leases expire.
    let second = deployment.serve("second").expect("second serves");
    let rows = wait_for(Duration::from_secs(40), || {
        let (api, url) = (
            api.clone(),
            format!(
                "{}/api/v1/webhooks/{hook_id}/deliveries?page_size=100",
                second.base
            ),
        );
        async move {
            let a = api.call(reqwest::Method::GET, &url, None).await.ok()?;
            let rows = a.json["results"].as_array()?.clone();
            (rows.len() == CONNECTIONS && rows.iter().all(|d| d["status"] == "success"))
                .then_some(rows)
        }
    })
    .await
    .unwrap_or_else(|| panic!("deliveries did not all succeed\n{}", second.log_tail(40)));
    eprintln!(
        "all {CONNECTIONS} deliveries succeeded {:.1}s after the kill ({:.1}s in all)",
        killed_at.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    // Every row is one the killed process had in flight, and it arrived again under
    // the same idempotency key; every arrival carries its key in the payload too.
    let arrivals = receiver.received();
    let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &arrivals {
        assert_eq!(a.json["idempotency_key"], a.header("webhook-id"), "{a:?}");
        *per_key.entry(a.header("webhook-id")).or_default() += 1;
    }
    let row_keys: BTreeSet<String> = rows
        .iter()
        .map(|d| d["idempotency_key"].as_str().expect("key").to_owned())
        .collect();
    assert_eq!(
        row_keys, held,
        "the rows are the deliveries that were in flight"
    );
    for key in &held {
        assert!(
            per_key.get(key.as_str()).copied().unwrap_or(0) >= 2,
            "{key} was in flight at the kill and must be sent again: {per_key:?}"
        );
    }
    let announced: BTreeSet<String> = arrivals
        .iter()
        .map(|a| {
            assert_eq!(a.json["data"]["state"], "disconnected", "{a:?}");
            a.json["zoom_oauth_connection_id"]
                .as_str()
                .expect("connection id")
                .to_owned()
        })
        .collect();
    assert_eq!(
        announced, connections,
        "every broken connection is announced"
    );
    // The killed attempt was never written back: each row records one attempt.
    for d in &rows {
        assert_eq!(d["attempt_count"], 1, "{d}");
    }
}
