//! `zoomkeeper demo` (DESIGN.md §2): the server with its workers, the Zoom simulator
//! and a webhook receiver in this process, on free ports of 127.0.0.1, over a
//! temporary directory. Sample data is made through the domain functions the API
//! uses; then a walkthrough with curl commands that work as printed. Ctrl-C (or
//! SIGTERM) stops everything and removes the directory.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use keeper::config::{Config, LogFormat, Settings};
use keeper::domain::connect_sessions;
use keeper::server::shutdown_signal;
use keeper::storage::AppKind;
use keeper::{apps, connections, meetings, operators, projects, telemetry, webhooks, Keeper};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use zoom_sim::{SimAppPatch, SimAuthorize, SimMeeting, SimUser, Simulator};

const CLIENT_ID: &str = "demo-zoom-app";
const CLIENT_SECRET: &str = "demo-client-secret";
const ZOOM_WEBHOOK_SECRET: &str = "demo-zoom-webhook-secret";
const OPERATOR_EMAIL: &str = "demo@zoomkeeper.local";
/// The last line of the walkthrough.
const READY_LINE: &str = "Press Ctrl-C to stop; the demo then removes its data directory.";
/// How long seeding waits for the index and the first webhooks.
const SEED_WAIT: Duration = Duration::from_secs(30);

/// A simulated Zoom user: first name, last name, and their meetings' topics.
const PEOPLE: [(&str, &str, [&str; 2]); 3] = [
    (
        "Ada",
        "Lovelace",
        ["Engine design review", "Notes on the engine"],
    ),
    (
        "Grace",
        "Hopper",
        ["Compiler stand-up", "Nanosecond workshop"],
    ),
    (
        "Alan",
        "Turing",
        ["Imitation game", "Morphogenesis reading group"],
    ),
];

pub async fn run() -> anyhow::Result<()> {
    telemetry::init_with_default_filter(LogFormat::Text, "warn");
    // Installed first, so a Ctrl-C during start-up still stops (and cleans up).
    let shutdown = shutdown_signal();
    let dir = tempfile::Builder::new()
        .prefix("zoomkeeper-demo-")
        .tempdir()
        .context("making a temporary directory")?;
    let outcome = run_in(dir.path(), shutdown).await;
    // Everything that had files open in the directory has stopped by now.
    let path = dir.path().display().to_string();
    match dir.close() {
        Ok(()) => println!("Stopped; removed {path}."),
        Err(e) => {
            outcome?;
            return Err(e).with_context(|| format!("removing {path}"));
        }
    }
    outcome
}

async fn run_in(
    dir: &Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let sim = Simulator::start()
        .await
        .context("starting the Zoom simulator")?;
    let (deliveries_tx, deliveries) = mpsc::unbounded_channel();
    let receiver = Receiver::start(deliveries_tx).await?;
    let config = Config::resolve(Settings {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.to_owned()),
        zoom_oauth_url: Some(sim.url()),
        zoom_api_url: Some(sim.url()),
        // The receiver listens on 127.0.0.1.
        allow_private_callback_urls: Some(true),
        ..Settings::default()
    })
    .context("the demo's configuration")?;
    let app = keeper::build(config).await?;
    let public_url = app
        .public_url()
        .context("the demo server serves HTTP")?
        .to_owned();
    let keeper = app.keeper.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let mut server = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));

    let mut shutdown = Box::pin(shutdown);
    let seeded = tokio::select! {
        seeded = seed(&keeper, &sim, &receiver, &public_url) => Some(seeded),
        () = &mut shutdown => None,
    };
    let mut outcome = Ok(());
    let mut ended_early = None;
    match seeded {
        Some(Ok(demo)) => {
            print!("{}", walkthrough(&demo, dir, &public_url, &sim, &receiver));
            let printer = tokio::spawn(print_deliveries(deliveries));
            tokio::select! {
                () = &mut shutdown => {}
                served = &mut server => ended_early = Some(served),
            }
            printer.abort();
        }
        Some(Err(e)) => outcome = Err(e.context("seeding the demo data")),
        None => {}
    }

    // The server and its workers first: they call the simulator and the receiver.
    let _ = stop.send(());
    let served = match ended_early {
        Some(served) => served,
        None => server.await,
    };
    sim.shutdown().await;
    receiver.shutdown().await;
    drop(keeper);
    let served = served
        .context("the demo server panicked")
        .and_then(|served| served);
    outcome.and(served)
}

/// What was seeded, for the walkthrough.
struct Demo {
    api_key: SecretString,
    operator_password: SecretString,
    app_id: String,
    webhook_id: String,
    people: Vec<Person>,
}

struct Person {
    name: String,
    email: String,
    zoom_user_id: String,
    connection_id: String,
    meetings: Vec<SeededMeeting>,
}

struct SeededMeeting {
    id: String,
    join_url: String,
}

async fn seed(
    keeper: &Arc<Keeper>,
    sim: &Simulator,
    receiver: &Receiver,
    public_url: &str,
) -> anyhow::Result<Demo> {
    let zoom = sim.control();
    let api_key = projects::bootstrap(&*keeper.store, &keeper.vault, &keeper.clock)
        .await?
        .context("the new database already had a project")?;
    let project = projects::find(&*keeper.store, projects::DEFAULT_PROJECT_NAME).await?;

    // Set up at Zoom for both capabilities: local recording and onbehalf tokens.
    let mut scopes: Vec<String> = Vec::new();
    for scope in zoom_sim::LOCAL_RECORDING_SCOPES
        .iter()
        .chain(zoom_sim::ONBEHALF_SCOPES)
    {
        if !scopes.iter().any(|s| s == scope) {
            scopes.push((*scope).to_owned());
        }
    }
    zoom.create_app(&zoom_sim::SimApp {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        webhook_secret: Some(ZOOM_WEBHOOK_SECRET.into()),
        scopes: Some(scopes),
        ..Default::default()
    })
    .await?;
    let app = apps::create(
        keeper,
        &project.id,
        apps::NewApp {
            client_id: CLIENT_ID.into(),
            client_secret: SecretString::from(CLIENT_SECRET),
            webhook_secret: Some(SecretString::from(ZOOM_WEBHOOK_SECRET)),
            kind: AppKind::UserLevel,
        },
    )
    .await
    .context("adding the Zoom app")?;
    // The app's Event Subscription at Zoom points at zoomkeeper, as an operator sets it up.
    let zoom_webhook_url = format!(
        "{public_url}{}",
        keeper::http::zoom_webhooks::PATH.replace("{app_id}", &app.id)
    );
    zoom.update_app(
        CLIENT_ID,
        &SimAppPatch {
            webhook_url: Some(zoom_webhook_url),
            ..Default::default()
        },
    )
    .await?;

    // Before the connections, so their state_change events are delivered to it.
    let subscription = webhooks::create(
        webhooks::Subscriptions {
            store: &*keeper.store,
            clock: &keeper.clock,
            allow_private_callback_urls: keeper.config.allow_private_callback_urls,
        },
        &project.id,
        &receiver.hook_url(),
        &[webhooks::STATE_CHANGE.to_owned()],
    )
    .await
    .context("subscribing the receiver to webhooks")?;

    let redirect_uri = connect_sessions::callback_url(public_url);
    let mut people = Vec::new();
    for (first, last, _) in PEOPLE {
        let user = zoom
            .create_user(&SimUser {
                email: Some(format!("{}@demo.example", first.to_lowercase())),
                first_name: Some(first.into()),
                last_name: Some(last.into()),
                ..Default::default()
            })
            .await?;
        // The code Zoom sends back once the user approves the app.
        let code = zoom
            .authorize(&SimAuthorize {
                client_id: CLIENT_ID.into(),
                user_id: user.id.clone(),
                redirect_uri: redirect_uri.clone(),
                scopes: None,
                code_challenge: None,
            })
            .await?;
        let connection = connections::create(
            keeper,
            &project.id,
            connections::NewConnection {
                authorization_code: SecretString::from(code),
                redirect_uri: redirect_uri.clone(),
                app_id: Some(app.id.clone()),
                code_verifier: None,
                is_local_recording_token_supported: Some(true),
                is_onbehalf_token_supported: Some(true),
                metadata: Some(json!({"name": format!("{first} {last}")})),
                deduplication_key: None,
                // Announced like a hosted connect, so the receiver has deliveries to show.
                announce_new: true,
                capabilities_from_scopes: false,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("connecting {first} {last}: {e}"))?;
        people.push(Person {
            name: format!("{first} {last}"),
            email: user.email,
            zoom_user_id: user.id,
            connection_id: connection.id,
            meetings: Vec::new(),
        });
    }

    // Scheduled after connecting: Zoom's meeting.created webhooks index them, and
    // the first meeting sync (run here rather than waiting for the worker's tick)
    // lists them too.
    for (person, (_, _, topics)) in people.iter_mut().zip(PEOPLE) {
        for topic in topics {
            let m = zoom
                .create_meeting(
                    &person.zoom_user_id,
                    &SimMeeting {
                        topic: Some(topic.into()),
                        ..Default::default()
                    },
                )
                .await?;
            person.meetings.push(SeededMeeting {
                id: m.id.to_string(),
                join_url: m.join_url,
            });
        }
    }
    let (_running, running) = watch::channel(false);
    keeper::meeting_sync::run_once(keeper, &running).await?;
    wait_until_indexed(keeper, &project.id, &app.id, &people).await?;

    let operator =
        operators::create(&*keeper.store, &keeper.clock, OPERATOR_EMAIL, None, None).await?;
    let operator_password = operator
        .generated_password
        .context("no password was generated for the operator")?;

    receiver
        .wait_for_deliveries(people.len(), SEED_WAIT)
        .await
        .context("waiting for the webhooks about the new connections")?;

    Ok(Demo {
        api_key,
        operator_password,
        app_id: app.id,
        webhook_id: subscription.id,
        people,
    })
}

/// Waits until every seeded meeting is indexed to its host's connection.
async fn wait_until_indexed(
    keeper: &Keeper,
    project_id: &str,
    app_id: &str,
    people: &[Person],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + SEED_WAIT;
    for person in people {
        for meeting in &person.meetings {
            loop {
                let hosts =
                    meetings::hosts(&*keeper.store, project_id, Some(app_id), &meeting.id).await?;
                if hosts
                    .first()
                    .is_some_and(|m| m.connection_id == person.connection_id)
                {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!(
                        "meeting {} of {} was not indexed within {SEED_WAIT:?}",
                        meeting.id,
                        person.name
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    Ok(())
}

/// The walkthrough: where everything is, the login, and commands to try.
fn walkthrough(
    demo: &Demo,
    dir: &Path,
    public_url: &str,
    sim: &Simulator,
    receiver: &Receiver,
) -> String {
    use std::fmt::Write as _;
    let key = demo.api_key.expose_secret();
    let auth = format!("-H 'Authorization: Token {key}'");
    let json_body = "-H 'Content-Type: application/json'";
    let api = |path: &str| format!("'{public_url}{path}'");
    let first = &demo.people[0];
    let second = &demo.people[1];
    let meeting = &first.meetings[0];
    let connections_path = keeper::http::connections::PATH;
    let join_body = json!({
        "meeting_url": meeting.join_url,
        "zak_token": {"zoom_oauth_connection_user_id": second.zoom_user_id},
        "onbehalf_token": {"zoom_oauth_connection_user_id": second.zoom_user_id},
    });
    let connect_body = json!({"return_url": receiver.connected_url()});

    let mut out = String::new();
    let mut line = |text: String| {
        let _ = writeln!(out, "{text}");
    };
    line("zoomkeeper demo: the server, a simulated Zoom and sample data, all throwaway.".into());
    line(format!(
        "Data directory (removed when the demo stops): {}",
        dir.display()
    ));
    line(String::new());
    line("Dashboard".into());
    line(format!("  {public_url}/dashboard/"));
    line(format!("  sign in at {public_url}/dashboard/login"));
    line(format!("  email     {OPERATOR_EMAIL}"));
    line(format!(
        "  password  {}",
        demo.operator_password.expose_secret()
    ));
    line(String::new());
    line("API".into());
    line(format!(
        "  base URL  {public_url}   (reference: {public_url}/docs)"
    ));
    line(format!(
        "  API key   {key}   (header  Authorization: Token <key>)"
    ));
    line(String::new());
    line(format!(
        "Zoom simulator    {}   (its sign-in page opens from a connect link)",
        sim.url()
    ));
    line(format!(
        "Webhook receiver  {}   (prints each delivery below)",
        receiver.hook_url()
    ));
    line(String::new());
    line("Seeded".into());
    line(format!(
        "  Zoom app {}   client_id {CLIENT_ID}",
        demo.app_id
    ));
    for p in &demo.people {
        let ids: Vec<&str> = p.meetings.iter().map(|m| m.id.as_str()).collect();
        line(format!(
            "  {:<14} {:<20} connection {}   meetings {}",
            p.name,
            p.email,
            p.connection_id,
            ids.join(", ")
        ));
    }
    line(format!(
        "  webhook {} -> the receiver, trigger {}",
        demo.webhook_id,
        webhooks::STATE_CHANGE
    ));
    line(String::new());
    line("Try it (each command works as printed)".into());
    let mut command = |title: String, curl: String| {
        line(String::new());
        line(format!("{title}:"));
        line(curl);
    };
    command(
        "The connections".into(),
        format!("curl -sS {auth} {}", api(connections_path)),
    );
    command(
        format!("{}'s connection", first.name),
        format!(
            "curl -sS {auth} {}",
            api(&format!("{connections_path}/{}", first.connection_id))
        ),
    );
    command(
        format!(
            "A Zoom access token from {}'s connection (refreshed before it expires)",
            first.name
        ),
        format!(
            "curl -sS -X POST {auth} {}",
            api(&format!(
                "{connections_path}/{}/access_token",
                first.connection_id
            ))
        ),
    );
    command(
        format!(
            "What a bot needs to join {}'s meeting {}: its local recording token (from the \
             host's connection), a ZAK and an onbehalf token from {}'s",
            first.name, meeting.id, second.name
        ),
        format!(
            "curl -sS {auth} {json_body} -d '{join_body}' {}",
            api(keeper::http::join_tokens::PATH)
        ),
    );
    command(
        format!("Who hosts meeting {}", meeting.id),
        format!(
            "curl -sS {auth} {}",
            api(&format!(
                "{}?meeting_id={}",
                keeper::http::meetings::PATH,
                meeting.id
            ))
        ),
    );
    command(
        "A connect link (open its url in a browser and approve as a simulated user)".into(),
        format!(
            "curl -sS {auth} {json_body} -d '{connect_body}' {}",
            api(keeper::http::connect::PATH)
        ),
    );
    command(
        "The webhook deliveries to the receiver".into(),
        format!(
            "curl -sS {auth} {}",
            api(&format!(
                "{}/{}/deliveries",
                keeper::http::webhooks::PATH,
                demo.webhook_id
            ))
        ),
    );
    line(String::new());
    line(READY_LINE.into());
    line(String::new());
    line("Webhooks received:".into());
    out
}

async fn print_deliveries(mut lines: mpsc::UnboundedReceiver<String>) {
    while let Some(line) = lines.recv().await {
        println!("  {line}");
    }
}

/// The demo's webhook receiver: prints one line per delivery (the trigger, the
/// connection and its state; never a token) and answers the connect flow's return.
struct Receiver {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

#[derive(Clone)]
struct Inbox {
    lines: mpsc::UnboundedSender<String>,
    received: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(lines: mpsc::UnboundedSender<String>) -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("starting the webhook receiver")?;
        let addr = listener.local_addr()?;
        let received = Arc::new(AtomicUsize::new(0));
        let router = axum::Router::new()
            .route("/hook", post(delivery))
            .route("/connected", get(connected))
            .with_state(Inbox {
                lines,
                received: received.clone(),
            });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "the demo's webhook receiver stopped");
            }
        });
        Ok(Receiver {
            addr,
            received,
            stop,
            task,
        })
    }

    fn hook_url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn connected_url(&self) -> String {
        format!("http://{}/connected", self.addr)
    }

    async fn wait_for_deliveries(&self, n: usize, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while self.received.load(Ordering::SeqCst) < n {
            if Instant::now() >= deadline {
                bail!(
                    "{} of {n} webhooks arrived within {within:?}",
                    self.received.load(Ordering::SeqCst)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Keeps a value printable on one line: anything else (control characters
/// included) becomes `?`.
fn printable(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    text.chars()
        .take(100)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

async fn delivery(State(inbox): State<Inbox>, body: Bytes) -> StatusCode {
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = inbox.lines.send(format!(
        "{}  {}  {}",
        printable(&event["trigger"]),
        printable(&event["zoom_oauth_connection_id"]),
        printable(&event["data"]["state"]),
    ));
    inbox.received.fetch_add(1, Ordering::SeqCst);
    StatusCode::NO_CONTENT
}

async fn connected(
    State(inbox): State<Inbox>,
    Query(params): Query<BTreeMap<String, String>>,
) -> String {
    let outcome = match params.get("zoom_oauth_connection_id") {
        Some(id) => format!("connected {}", printable(&Value::String(id.clone()))),
        None => format!(
            "error {}",
            printable(
                &params
                    .get("error")
                    .cloned()
                    .map_or(Value::Null, Value::from)
            )
        ),
    };
    let _ = inbox
        .lines
        .send(format!("connect link came back: {outcome}"));
    format!("zoomkeeper demo: the connect link came back ({outcome}). You can close this tab.\n")
}
