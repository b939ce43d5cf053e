//! Webhooks arrive signed at a real receiver, and are retried on Zoom's (compressed)
//! schedule. Signatures are checked here with our own HMAC, not the simulator's.

use std::time::Duration;

use crate::common::*;
use axum::http::StatusCode;
use serde_json::json;
use testkit::{Received, Receiver};
use zoom_sim::*;

const WAIT: Duration = Duration::from_secs(5);

async fn with_receiver() -> (Zoom, Receiver) {
    let zoom = Zoom::start().await;
    let receiver = Receiver::for_zoom(WEBHOOK_SECRET).await;
    zoom.control
        .update_app(
            CLIENT_ID,
            &SimAppPatch {
                webhook_url: Some(receiver.url()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (zoom, receiver)
}

fn assert_signed(hit: &Received) {
    assert_eq!(
        hit.header("x-zm-signature"),
        zoom_signature(
            WEBHOOK_SECRET,
            hit.header("x-zm-request-timestamp"),
            &hit.body
        ),
        "signature of {}",
        hit.body
    );
    let ts: i64 = hit
        .header("x-zm-request-timestamp")
        .parse()
        .expect("timestamp in seconds");
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
}

#[tokio::test]
async fn meeting_created_and_deleted_arrive_signed_with_a_numeric_id() {
    let (zoom, receiver) = with_receiver().await;
    let host = zoom.user().await;
    zoom.connect(&host.id, None).await;
    let m = zoom
        .control
        .create_meeting(
            &host.id,
            &SimMeeting {
                topic: Some("Standup".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    zoom.control.delete_meeting(m.id).await.unwrap();

    let hits = receiver.wait_for(2, WAIT).await;
    let mut events: Vec<_> = hits
        .iter()
        .map(|h| h.json["event"].as_str().unwrap().to_owned())
        .collect();
    events.sort();
    assert_eq!(events, ["meeting.created", "meeting.deleted"]);
    for hit in &hits {
        assert_signed(hit);
        let payload = &hit.json["payload"];
        assert_eq!(payload["account_id"], host.account_id);
        assert_eq!(payload["operator_id"], host.id);
        assert_eq!(payload["object"]["id"], json!(m.id));
        assert!(payload["object"]["id"].is_u64());
        assert_eq!(payload["object"]["host_id"], host.id);
        assert_eq!(payload["object"]["topic"], "Standup");
        assert!(
            hit.json["event_ts"].as_i64().unwrap() > 1_600_000_000_000,
            "event_ts in ms"
        );
    }
    let stats = zoom.stats_when(|s| s.webhooks_delivered >= 2).await;
    assert_eq!(
        (
            stats.webhooks_sent,
            stats.webhooks_delivered,
            stats.webhooks_failed
        ),
        (2, 2, 0)
    );
}

#[tokio::test]
async fn pmi_change_sends_user_updated_with_old_and_new_pmi() {
    let (zoom, receiver) = with_receiver().await;
    let user = zoom.user().await;
    zoom.connect(&user.id, None).await;
    zoom.control
        .update_user(
            &user.id,
            &SimUserPatch {
                pmi: Some(5_555_555_555),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // A status change alone sends nothing.
    zoom.control
        .update_user(
            &user.id,
            &SimUserPatch {
                status: Some(SimUserStatus::Active),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let hits = receiver.wait_for(1, WAIT).await;
    assert_signed(&hits[0]);
    assert_eq!(hits[0].json["event"], "user.updated");
    assert_eq!(
        hits[0].json["payload"]["object"],
        json!({"id": user.id, "pmi": 5_555_555_555u64})
    );
    assert_eq!(
        hits[0].json["payload"]["old_object"],
        json!({"id": user.id, "pmi": user.pmi})
    );
    let got = receiver
        .wait_for_exactly(1, Duration::from_millis(100))
        .await;
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn app_deauthorized_is_sent_and_the_grant_is_gone() {
    let (zoom, receiver) = with_receiver().await;
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    zoom.control.deauthorize(&user.id, CLIENT_ID).await.unwrap();
    let hits = receiver.wait_for(1, WAIT).await;
    assert_signed(&hits[0]);
    assert_eq!(hits[0].json["event"], "app_deauthorized");
    let p = &hits[0].json["payload"];
    assert_eq!(p["user_id"], user.id);
    assert_eq!(p["account_id"], user.account_id);
    assert_eq!(p["client_id"], CLIENT_ID);
    assert!(
        p["deauthorization_time"].is_string()
            && p["signature"].is_string()
            && p["event_ts"].is_i64()
    );
    assert_eq!(
        zoom.refresh(&t.refresh).await.body["error"],
        "invalid_grant"
    );
}

/// DESIGN.md §5/§8: Zoom's developer forum — "the revoke endpoint actually does
/// uninstall the app and trigger the deauth flow": revoking any token of a user's
/// grant kills every token of that (app, user) and sends `app_deauthorized`.
#[tokio::test]
async fn revoke_uninstalls_the_app_and_sends_app_deauthorized() {
    let (zoom, receiver) = with_receiver().await;
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    let revoked = zoom
        .http
        .post(format!("{}/oauth/revoke", zoom.url))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("token", t.refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let hits = receiver.wait_for(1, WAIT).await;
    assert_signed(&hits[0]);
    assert_eq!(hits[0].json["event"], "app_deauthorized");
    assert_eq!(hits[0].json["payload"]["user_id"], user.id);
    assert_eq!(hits[0].json["payload"]["client_id"], CLIENT_ID);
    assert_eq!(
        zoom.get("/v2/users/me", &t.access).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Revoking the dead grant again uninstalls nothing more: no second event.
    zoom.http
        .post(format!("{}/oauth/revoke", zoom.url))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("token", t.access.as_str())])
        .send()
        .await
        .unwrap();
    // A later event of another user is the next one to arrive (a second event for
    // the first user would have been queued before it).
    let user2 = zoom.user().await;
    zoom.connect(&user2.id, None).await;
    zoom.control
        .deauthorize(&user2.id, CLIENT_ID)
        .await
        .unwrap();
    let hits = receiver.wait_for(2, WAIT).await;
    let users: Vec<_> = hits
        .iter()
        .map(|h| h.json["payload"]["user_id"].clone())
        .collect();
    assert_eq!(users, vec![json!(user.id), json!(user2.id)]);
}

#[tokio::test]
async fn events_go_only_to_apps_the_user_has_authorized() {
    let (zoom, receiver) = with_receiver().await;
    let stranger = zoom.user().await;
    zoom.control
        .create_meeting(&stranger.id, &SimMeeting::default())
        .await
        .unwrap();
    let member = zoom.user().await;
    zoom.connect(&member.id, None).await;
    zoom.control
        .create_meeting(&member.id, &SimMeeting::default())
        .await
        .unwrap();
    let hits = receiver.wait_for(1, WAIT).await;
    assert_eq!(hits[0].json["payload"]["object"]["host_id"], member.id);
    let got = receiver
        .wait_for_exactly(1, Duration::from_millis(100))
        .await;
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn failed_deliveries_are_retried_three_times_on_the_scaled_schedule() {
    let (zoom, receiver) = with_receiver().await;
    // 5, 20, 60 minutes × 0.0005 = 0.15 s, 0.6 s, 1.8 s.
    zoom.control
        .set_config(&SimConfig {
            webhook_retry_scale: Some(0.0005),
            ..Default::default()
        })
        .await
        .unwrap();
    receiver.answer(500);
    let user = zoom.user().await;
    zoom.connect(&user.id, None).await;
    zoom.control
        .create_meeting(&user.id, &SimMeeting::default())
        .await
        .unwrap();

    let hits = receiver.wait_for(4, WAIT).await;
    for h in &hits {
        assert_signed(h);
        assert_eq!(h.body, hits[0].body, "a retry resends the same event");
    }
    let gaps: Vec<f64> = hits
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs_f64())
        .collect();
    for (gap, expected) in gaps.iter().zip([0.15, 0.6, 1.8]) {
        assert!(
            *gap >= expected * 0.9 && *gap < expected + 1.0,
            "gaps {gaps:?}"
        );
    }
    let stats = zoom.stats_when(|s| s.webhooks_abandoned >= 1).await;
    assert_eq!(
        (
            stats.webhooks_sent,
            stats.webhooks_failed,
            stats.webhooks_abandoned
        ),
        (4, 4, 1)
    );
    let deliveries = zoom.control.webhook_deliveries().await.unwrap();
    assert_eq!(
        (deliveries[0].attempts, deliveries[0].status.as_str()),
        (4, "abandoned")
    );
    assert_eq!(deliveries[0].last_status_code, Some(500));
}

#[tokio::test]
async fn a_retry_that_succeeds_ends_the_schedule() {
    let (zoom, receiver) = with_receiver().await;
    zoom.control
        .set_config(&SimConfig {
            webhook_retry_scale: Some(0.0005),
            ..Default::default()
        })
        .await
        .unwrap();
    receiver.answer(503);
    let user = zoom.user().await;
    zoom.connect(&user.id, None).await;
    zoom.control
        .create_meeting(&user.id, &SimMeeting::default())
        .await
        .unwrap();
    receiver.wait_for(1, WAIT).await;
    receiver.answer(204);
    receiver.wait_for(2, WAIT).await;
    let got = receiver
        .wait_for_exactly(2, Duration::from_millis(900))
        .await;
    assert_eq!(got.len(), 2);
    let stats = zoom.control.stats().await.unwrap();
    assert_eq!(
        (
            stats.webhooks_sent,
            stats.webhooks_delivered,
            stats.webhooks_failed
        ),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn a_slow_receiver_counts_as_a_failure() {
    let zoom = Zoom::start().await;
    // A receiver that accepts the connection and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    zoom.control
        .update_app(
            CLIENT_ID,
            &SimAppPatch {
                webhook_url: Some(url),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    zoom.control
        .set_config(&SimConfig {
            webhook_timeout_ms: Some(200),
            webhook_retry_scale: Some(100.0),
            ..Default::default()
        })
        .await
        .unwrap();
    let user = zoom.user().await;
    zoom.connect(&user.id, None).await;
    zoom.control
        .create_meeting(&user.id, &SimMeeting::default())
        .await
        .unwrap();
    let deliveries = zoom
        .deliveries_when(|d| d.first().is_some_and(|d| d.last_error.is_some()))
        .await;
    let d = &deliveries[0];
    assert_eq!((d.attempts, d.status.as_str()), (1, "retrying"));
    assert!(
        d.last_error.as_deref().unwrap_or("").contains("200 ms"),
        "{d:?}"
    );
}

#[tokio::test]
async fn url_validation_checks_the_receivers_answer() {
    let (zoom, receiver) = with_receiver().await;
    let v = zoom.control.send_url_validation(CLIENT_ID).await.unwrap();
    assert!(v.validated, "{v:?}");
    let hit = &receiver.received()[0];
    assert_signed(hit);
    assert_eq!(hit.json["event"], "endpoint.url_validation");
    assert_eq!(hit.json["payload"]["plainToken"], v.plain_token);
    assert_eq!(
        zoom.control.app(CLIENT_ID).await.unwrap().url_validated,
        Some(true)
    );

    // An app whose secret differs from the receiver's fails validation.
    zoom.control
        .update_app(
            CLIENT_ID,
            &SimAppPatch {
                webhook_secret: Some("rotated".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let v = zoom.control.send_url_validation(CLIENT_ID).await.unwrap();
    assert!(!v.validated);
    assert_eq!(
        zoom.control.app(CLIENT_ID).await.unwrap().url_validated,
        Some(false)
    );
}

/// Events with Zoom's fields. `meeting.created` carries `password`, `settings` and
/// `operation` (zoom/rivet-javascript, `MeetingCreatedEvent`); deleting one
/// occurrence of a recurring meeting sends `meeting.deleted` with
/// `object.occurrences` and the series stays (`MeetingDeletedEvent`);
/// `app_deauthorized` carries `user_data_retention` and a top-level `event_ts`
/// (`AppDeauthorizedEvent`, and the every-event `event_ts` of Zoom's webhook docs).
#[tokio::test]
async fn events_carry_zooms_fields_and_an_occurrence_deletion_names_it() {
    let (zoom, receiver) = with_receiver().await;
    let host = zoom.user().await;
    zoom.connect(&host.id, None).await;
    let m = zoom
        .control
        .create_meeting(
            &host.id,
            &SimMeeting {
                meeting_type: Some(8),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let occurrence = "1893456000000"; // 2030-01-01T00:00:00Z
    zoom.control
        .delete_occurrence(m.id, occurrence)
        .await
        .unwrap();
    let hits = receiver.wait_for(2, WAIT).await;
    let created = &hits[0].json;
    assert_eq!(created["event"], "meeting.created");
    let o = &created["payload"]["object"];
    assert!(o["password"].is_string(), "{o}");
    assert_eq!(o["settings"]["use_pmi"], false);
    assert!(o["settings"]["alternative_hosts"].is_string());
    let deleted = &hits[1].json;
    assert_eq!(deleted["event"], "meeting.deleted");
    assert_eq!(deleted["payload"]["operation"], "single");
    let occ = &deleted["payload"]["object"]["occurrences"][0];
    assert_eq!(occ["occurrence_id"], occurrence);
    assert_eq!(occ["start_time"], "2030-01-01T00:00:00Z");
    // The series is still there: deleting it whole works.
    zoom.control.delete_meeting(m.id).await.unwrap();
    // Only a recurring meeting has occurrences.
    let single = zoom
        .control
        .create_meeting(&host.id, &SimMeeting::default())
        .await
        .unwrap();
    assert!(zoom
        .control
        .delete_occurrence(single.id, occurrence)
        .await
        .is_err());

    zoom.control.deauthorize(&host.id, CLIENT_ID).await.unwrap();
    let hits = receiver.wait_for(5, WAIT).await;
    let d = hits
        .iter()
        .find(|h| h.json["event"] == "app_deauthorized")
        .expect("app_deauthorized");
    assert_signed(d);
    assert_eq!(d.json["payload"]["user_data_retention"], "false");
    assert!(d.json["event_ts"].is_i64());
}

/// One forum report says an `app_deauthorized` did not verify with the documented
/// `x-zm-signature` scheme; the fault reproduces an event that does not verify.
#[tokio::test]
async fn an_unverifiable_deauthorization_can_be_sent() {
    let (zoom, receiver) = with_receiver().await;
    let user = zoom.user().await;
    zoom.connect(&user.id, None).await;
    zoom.control
        .set_faults(&SimFaults {
            unverifiable_deauthorizations: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    zoom.control.deauthorize(&user.id, CLIENT_ID).await.unwrap();
    let hits = receiver.wait_for(1, WAIT).await;
    assert_eq!(hits[0].json["event"], "app_deauthorized");
    assert_ne!(
        hits[0].header("x-zm-signature"),
        zoom_signature(
            WEBHOOK_SECRET,
            hits[0].header("x-zm-request-timestamp"),
            &hits[0].body
        )
    );
}

/// "If Zoom doesn't receive a 2XX response even after executing all three retries,
/// no further notifications ... will be sent to your app's Event Notification
/// Endpoint URL. To reset the retry count, please submit a ticket."
/// (devsupport.zoom.us/hc/en-us/articles/360059893812-Webhook-delays)
#[tokio::test]
async fn after_the_last_failed_retry_the_app_gets_no_events_until_resumed() {
    let (zoom, receiver) = with_receiver().await;
    zoom.control
        .set_config(&SimConfig {
            webhook_retry_scale: Some(0.0001),
            ..Default::default()
        })
        .await
        .unwrap();
    receiver.answer(500);
    let user = zoom.user().await;
    zoom.connect(&user.id, None).await;
    zoom.control
        .create_meeting(&user.id, &SimMeeting::default())
        .await
        .unwrap();
    receiver.wait_for(4, WAIT).await;
    let mut stopped = None;
    for _ in 0..100 {
        stopped = zoom.control.app(CLIENT_ID).await.unwrap().events_stopped_at;
        if stopped.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopped.is_some(), "events stop after the last retry");

    receiver.answer(200);
    zoom.control
        .create_meeting(&user.id, &SimMeeting::default())
        .await
        .unwrap();
    let got = receiver
        .wait_for_exactly(4, Duration::from_millis(200))
        .await;
    assert_eq!(got.len(), 4, "nothing more is sent");
    let deliveries = zoom.control.webhook_deliveries().await.unwrap();
    assert_eq!(deliveries.last().unwrap().status, "withheld");
    assert_eq!(zoom.control.stats().await.unwrap().webhooks_withheld, 1);

    zoom.control
        .update_app(
            CLIENT_ID,
            &SimAppPatch {
                resume_events: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    zoom.control
        .create_meeting(&user.id, &SimMeeting::default())
        .await
        .unwrap();
    let hits = receiver.wait_for(5, WAIT).await;
    assert_eq!(hits[4].json["event"], "meeting.created");
}

/// Zoom revalidates an endpoint every 72 hours (Zoom's webhook docs, "Validate your
/// webhook endpoint"; devforum.zoom.us/t/124112); one that fails gets no events.
/// Scaled like the retries: 72 h × 0.00001 ≈ 2.6 s.
#[tokio::test]
async fn validated_endpoints_are_revalidated_every_72_scaled_hours() {
    let (zoom, receiver) = with_receiver().await;
    assert!(
        zoom.control
            .send_url_validation(CLIENT_ID)
            .await
            .unwrap()
            .validated
    );
    zoom.control
        .set_config(&SimConfig {
            webhook_retry_scale: Some(0.00001),
            ..Default::default()
        })
        .await
        .unwrap();
    let hits = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(hits[1].json["event"], "endpoint.url_validation");
    assert!(zoom
        .control
        .app(CLIENT_ID)
        .await
        .unwrap()
        .events_stopped_at
        .is_none());
    // The receiver no longer answers with the app's secret token.
    zoom.control
        .update_app(
            CLIENT_ID,
            &SimAppPatch {
                webhook_secret: Some("rotated-at-zoom".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let n = receiver.received().len();
    receiver.wait_for(n + 1, Duration::from_secs(10)).await;
    let mut info = zoom.control.app(CLIENT_ID).await.unwrap();
    for _ in 0..100 {
        if info.events_stopped_at.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        info = zoom.control.app(CLIENT_ID).await.unwrap();
    }
    assert_eq!(info.url_validated, Some(false));
    assert!(info.events_stopped_at.is_some());
}
