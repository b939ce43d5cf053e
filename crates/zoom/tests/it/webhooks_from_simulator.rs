//! Webhooks the simulator really sends, received over HTTP, verified and parsed
//! with `zoom::webhook` — the same path zoomkeeper's ingress takes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use zoom::webhook::{self, ZoomEvent, DEFAULT_WINDOW};
use zoom_sim::{SimApp, SimMeeting, SimUser, SimUserPatch, Simulator};

const CLIENT_ID: &str = "zk-hooks-client";
const CLIENT_SECRET: &str = "zk-hooks-client-secret";
const WEBHOOK_SECRET: &str = "zk-hooks-secret-token";
const REDIRECT_URI: &str = "https://app.example.com/cb";

#[derive(Clone, Debug)]
struct Received {
    timestamp: Option<String>,
    signature: Option<String>,
    body: Vec<u8>,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let received = Received {
        timestamp: header(webhook::TIMESTAMP_HEADER),
        signature: header(webhook::SIGNATURE_HEADER),
        body: body.to_vec(),
    };
    if let Ok(inbox) = inbox.lock().as_mut() {
        inbox.push(received);
    }
    match webhook::parse_event(&body) {
        Ok(webhook::WebhookEvent {
            event: ZoomEvent::UrlValidation { plain_token },
            ..
        }) => Json(webhook::url_validation_response(
            WEBHOOK_SECRET,
            &plain_token,
        ))
        .into_response(),
        _ => axum::http::StatusCode::OK.into_response(),
    }
}

struct Setup {
    sim: Simulator,
    inbox: Inbox,
}

async fn setup() -> Setup {
    let inbox: Inbox = Arc::default();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sim = Simulator::start().await.unwrap();
    sim.control()
        .create_app(&SimApp {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            webhook_secret: Some(WEBHOOK_SECRET.into()),
            webhook_url: Some(format!("http://{addr}/hook")),
            ..Default::default()
        })
        .await
        .unwrap();
    Setup { sim, inbox }
}

impl Setup {
    /// A user who installed the app (Zoom only sends events for installed users).
    async fn installed_user(&self) -> zoom_sim::SimUserCreated {
        let control = self.sim.control();
        let user = control.create_user(&SimUser::default()).await.unwrap();
        let code = control
            .authorize(&zoom_sim::SimAuthorize {
                client_id: CLIENT_ID.into(),
                user_id: user.id.clone(),
                redirect_uri: REDIRECT_URI.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let client = zoom::ZoomClient::new(zoom::ZoomConfig::single_base(&self.sim.url())).unwrap();
        client
            .exchange_code(
                &zoom::AppCredentials::new(CLIENT_ID, CLIENT_SECRET),
                &zoom::SecretString::from(code),
                REDIRECT_URI,
                None,
            )
            .await
            .unwrap();
        user
    }

    /// Waits (briefly) until an event named `name` has arrived.
    async fn wait_for(&self, name: &str) -> (Received, webhook::WebhookEvent) {
        for _ in 0..200 {
            let found = self.inbox.lock().unwrap().iter().find_map(|r| {
                let ev = webhook::parse_event(&r.body).ok()?;
                (ev.name == name).then(|| (r.clone(), ev))
            });
            if let Some(found) = found {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let deliveries = self.sim.control().webhook_deliveries().await;
        let inbox: Vec<String> = self
            .inbox
            .lock()
            .unwrap()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect();
        panic!(
            "no {name} webhook arrived; received {inbox:?}; simulator deliveries {deliveries:?}"
        );
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn verify(r: &Received, secret: &str) -> Result<(), webhook::SignatureError> {
    webhook::verify(
        secret,
        r.timestamp.as_deref(),
        r.signature.as_deref(),
        &r.body,
        now_unix(),
        DEFAULT_WINDOW,
    )
}

#[tokio::test]
async fn meeting_created_and_deleted_arrive_signed_and_typed() {
    let s = setup().await;
    let user = s.installed_user().await;
    let meeting = s
        .sim
        .control()
        .create_meeting(
            &user.id,
            &SimMeeting {
                topic: Some("Standup".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let (received, event) = s.wait_for("meeting.created").await;
    assert_eq!(verify(&received, WEBHOOK_SECRET), Ok(()));
    assert_eq!(
        verify(&received, "another-secret"),
        Err(webhook::SignatureError::Mismatch)
    );
    let ZoomEvent::MeetingCreated(object) = &event.event else {
        panic!("{event:?}")
    };
    assert_eq!(object.id, meeting.id.to_string());
    assert_eq!(object.host_id.as_deref(), Some(user.id.as_str()));
    assert_eq!(object.topic.as_deref(), Some("Standup"));
    assert_eq!(
        event.dedupe_key(),
        format!("meeting.created:{}:{}", event.event_ts, meeting.id)
    );

    s.sim.control().delete_meeting(meeting.id).await.unwrap();
    let (received, event) = s.wait_for("meeting.deleted").await;
    assert_eq!(verify(&received, WEBHOOK_SECRET), Ok(()));
    assert!(matches!(&event.event, ZoomEvent::MeetingDeleted(m) if m.id == meeting.id.to_string()));
}

#[tokio::test]
async fn a_pmi_change_arrives_as_user_updated_with_the_new_pmi() {
    let s = setup().await;
    let user = s.installed_user().await;
    s.sim
        .control()
        .update_user(
            &user.id,
            &SimUserPatch {
                pmi: Some(5550001234),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (received, event) = s.wait_for("user.updated").await;
    assert_eq!(verify(&received, WEBHOOK_SECRET), Ok(()));
    let ZoomEvent::UserUpdated(update) = &event.event else {
        panic!("{event:?}")
    };
    assert_eq!(update.user_id, user.id);
    assert_eq!(update.pmi.as_deref(), Some("5550001234"));
}

#[tokio::test]
async fn deauthorization_arrives_as_app_deauthorized_for_the_user() {
    let s = setup().await;
    let user = s.installed_user().await;
    s.sim
        .control()
        .deauthorize(&user.id, CLIENT_ID)
        .await
        .unwrap();
    let (received, event) = s.wait_for("app_deauthorized").await;
    assert_eq!(verify(&received, WEBHOOK_SECRET), Ok(()));
    let ZoomEvent::AppDeauthorized(d) = &event.event else {
        panic!("{event:?}")
    };
    assert_eq!(d.user_id, user.id);
    assert_eq!(d.client_id.as_deref(), Some(CLIENT_ID));
}

#[tokio::test]
async fn the_url_validation_answer_satisfies_the_simulator() {
    let s = setup().await;
    let outcome = s
        .sim
        .control()
        .send_url_validation(CLIENT_ID)
        .await
        .unwrap();
    assert!(outcome.validated, "{outcome:?}");
    let (received, _) = s.wait_for("endpoint.url_validation").await;
    assert_eq!(verify(&received, WEBHOOK_SECRET), Ok(()));
}
