//! Proof that no connection dies by zoomkeeper's hand when several real `serve`
//! processes share one PostgreSQL database, and when one is killed mid-refresh
//! (DESIGN.md §5 "Refresh tokens rotate", §6, §9; issue 4 "Proof required").

mod support;

use std::time::Duration;

use support::sim;

/// The kill test below relies on this: the simulator applies injected latency
/// *before* it looks at a refresh, and a client that disconnects during that wait
/// (as a SIGKILLed process's sockets do) abandons the request — Zoom never rotates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_abandoned_during_zoom_latency_never_rotates() {
    let sim = zoom_sim::Simulator::start().await.expect("simulator");
    let secret = sim::zoom_app(&sim, "probe").await.expect("app");
    let (_, code) = sim::authorized_user(&sim, "probe").await.expect("user");
    let http = reqwest::Client::new();
    let (status, grant) = sim::token_grant(
        &http,
        &sim.url(),
        "probe",
        &secret,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", sim::REDIRECT_URI),
        ],
    )
    .await
    .expect("code exchange");
    assert_eq!(status, 200, "{grant}");
    let refresh_token = grant["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();

    sim.control()
        .set_faults(&zoom_sim::SimFaults {
            latency_ms: Some(600),
            paths: Some(vec!["/oauth/token".into()]),
            ..Default::default()
        })
        .await
        .expect("latency");
    // A client of its own, so that dropping the request closes its socket.
    let leaving = reqwest::Client::new();
    let (url, rt, secret2) = (sim.url(), refresh_token.clone(), secret.clone());
    let attempt = tokio::spawn(async move {
        sim::token_grant(
            &leaving,
            &url,
            "probe",
            &secret2,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    attempt.abort();
    let _ = attempt.await;
    // Well past the latency: had the simulator carried on, it would have rotated.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let stats = sim.control().stats().await.expect("stats");
    // The refresh reached the simulator (the code exchange is the other call)…
    assert_eq!(stats.api_calls, 2, "{stats:?}");
    // …and was dropped with its connection before Zoom looked at it.
    assert_eq!(stats.refresh_grants, 0, "{stats:?}");
    let info = sim
        .control()
        .token_info(&refresh_token)
        .await
        .expect("token info")
        .expect("known token");
    assert_eq!(info.status, "active", "{info:?}");

    sim.control()
        .set_faults(&zoom_sim::SimFaults::default())
        .await
        .expect("no faults");
    let (status, refreshed) = sim::token_grant(
        &http,
        &sim.url(),
        "probe",
        &secret,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ],
    )
    .await
    .expect("refresh");
    assert_eq!(status, 200, "{refreshed}");
    let stats = sim.control().stats().await.expect("stats");
    assert_eq!(
        (stats.refresh_grants, stats.stale_refresh_token_uses),
        (1, 0)
    );
}
