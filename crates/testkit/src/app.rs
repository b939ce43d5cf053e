//! `spawn_app()`: the real router on 127.0.0.1:0, a fresh database and the Zoom
//! simulator, with typed helpers so tests read like the user's story.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use keeper::config::{Config, LogFormat, Settings};
use keeper::{projects, Keeper};
use reqwest::{Method, RequestBuilder, Response};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::Backend;

/// Every log line written by any server in this test process.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logs() -> Arc<Mutex<Vec<u8>>> {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buf.clone());
        keeper::telemetry::init_with_writer(LogFormat::Text, move || writer.clone());
        buf
    })
    .clone()
}

/// Everything logged so far in this process.
pub fn captured_logs() -> String {
    let buf = init_logs();
    let bytes = buf.lock().unwrap_or_else(|p| p.into_inner()).clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub struct TestApp {
    /// `public_url`: the base of the absolute URLs the service returns.
    pub base: String,
    /// `http://{bound address}`: where requests go even when `public_url` names
    /// another host.
    pub listen_url: String,
    pub http: reqwest::Client,
    /// The API key of the project the helpers act as.
    pub key: String,
    pub project_id: String,
    pub backend: Backend,
    pub database_url: String,
    pub keeper: Arc<Keeper>,
    pub sim: zoom_sim::Simulator,
    /// What the server sent that its OpenAPI document does not describe.
    pub contract: crate::contract::Violations,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let violations = self.contract.take();
        if !violations.is_empty() && !std::thread::panicking() {
            panic!(
                "{} response(s) did not match the OpenAPI document:\n{}",
                violations.len(),
                violations.join("\n")
            );
        }
    }
}

/// Starts the service on `backend`. Returns `None` (test skipped) when PostgreSQL is
/// asked for but its binaries are missing and `ZOOMKEEPER_REQUIRE_POSTGRES` is not 1.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, Settings::default()).await
}

pub async fn spawn_app_with(backend: Backend, extra: Settings) -> Option<TestApp> {
    init_logs();
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("test.db").display()),
        // One cluster per test process; a fresh copy of the migrated template per test.
        Backend::Postgres => crate::postgres_database().await?,
    };
    let sim = zoom_sim::Simulator::start()
        .await
        .expect("simulator starts");
    let settings = extra.over(Settings {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.path().to_owned()),
        database_url: Some(database_url.clone()),
        zoom_oauth_url: Some(sim.url()),
        zoom_api_url: Some(sim.url()),
        // Tests drive the workers themselves unless they ask for a role.
        role: Some("api".into()),
        ..Settings::default()
    });
    let config = Config::resolve(settings).expect("valid test config");
    // The same composition root as `zoomkeeper serve`.
    let contract = crate::contract::Violations::default();
    let app = keeper::build(config)
        .await
        .expect("the service builds")
        .wrap_router(|router| crate::contract::wrap(router, contract.clone()));
    let keeper = app.keeper.clone();
    let project = projects::create(&*keeper.store, &keeper.vault, &keeper.clock, "test")
        .await
        .expect("project");
    let key = projects::create_api_key(&*keeper.store, &keeper.clock, &project, "test")
        .await
        .expect("api key");
    let base = app
        .public_url()
        .expect("the test app serves HTTP")
        .to_owned();
    let listen_url = format!("http://{}", app.addr().expect("the test app listens"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    Some(TestApp {
        base,
        listen_url,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .expect("client"),
        key: key.expose_secret().to_owned(),
        project_id: project.id,
        backend,
        database_url,
        keeper,
        sim,
        contract,
        stop: Some(stop),
        _dir: dir,
    })
}

/// A response read whole: status, headers and JSON (or text) body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Answer {
    pub async fn read(resp: Response) -> Answer {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            text,
            json,
        }
    }

    /// Asserts the §4 error shape with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) -> &Answer {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.json["code"], code, "{}", self.text);
        let message = self.json["error"].as_str().expect("error is a string");
        assert!(!message.is_empty());
        let content_type = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        self
    }

    /// The problems listed for `field`.
    pub fn field_problems(&self, field: &str) -> Vec<String> {
        self.json["fields"][field]
            .as_array()
            .unwrap_or_else(|| panic!("no fields.{field} in {}", self.text))
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request authenticated as this app's project.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_as(&self.key, method, path)
    }

    pub fn request_as(&self, key: &str, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("authorization", format!("Token {key}"))
    }

    pub async fn send(&self, builder: RequestBuilder) -> Answer {
        Answer::read(builder.send().await.expect("request sent")).await
    }

    /// Registers an app at the simulated Zoom so credential checks pass.
    pub async fn zoom_app(&self, client_id: &str, client_secret: &str) {
        self.sim
            .control()
            .create_app(&zoom_sim::SimApp {
                client_id: client_id.into(),
                client_secret: client_secret.into(),
                ..Default::default()
            })
            .await
            .expect("sim app");
    }

    pub async fn create_app(&self, body: Value) -> Answer {
        self.send(
            self.request(Method::POST, "/api/v1/zoom_oauth_apps")
                .json(&body),
        )
        .await
    }

    /// Registers `client_id` at Zoom and creates it here; returns the app's JSON.
    pub async fn new_app(&self, client_id: &str) -> Value {
        let secret = format!("secret-of-{client_id}");
        self.zoom_app(client_id, &secret).await;
        let a = self
            .create_app(json!({"client_id": client_id, "client_secret": secret}))
            .await;
        assert_eq!(a.status, 201, "{}", a.text);
        a.json
    }

    pub async fn get_app(&self, id: &str) -> Answer {
        self.send(self.request(Method::GET, &format!("/api/v1/zoom_oauth_apps/{id}")))
            .await
    }

    pub async fn list_apps(&self, query: &str) -> Answer {
        self.send(self.request(Method::GET, &format!("/api/v1/zoom_oauth_apps{query}")))
            .await
    }

    /// Follows an absolute `next`/`previous` link.
    pub async fn follow(&self, link: &str) -> Answer {
        self.send(
            self.http
                .get(link)
                .header("authorization", format!("Token {}", self.key)),
        )
        .await
    }

    pub async fn patch_app(&self, id: &str, body: Value) -> Answer {
        self.send(
            self.request(Method::PATCH, &format!("/api/v1/zoom_oauth_apps/{id}"))
                .json(&body),
        )
        .await
    }

    pub async fn delete_app(&self, id: &str) -> Answer {
        self.send(self.request(Method::DELETE, &format!("/api/v1/zoom_oauth_apps/{id}")))
            .await
    }

    /// Every app id in the project, newest first, walking all pages.
    pub async fn all_app_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        let mut page = self.list_apps("?page_size=100").await;
        loop {
            assert_eq!(page.status, 200, "{}", page.text);
            for a in page.json["results"].as_array().expect("results") {
                ids.push(a["id"].as_str().expect("id").to_owned());
            }
            match page.json["next"].as_str() {
                Some(next) => page = self.follow(next).await,
                None => return ids,
            }
        }
    }

    /// A second project with its own key: (project id, key).
    pub async fn other_project(&self, name: &str) -> (String, String) {
        let project = projects::create(
            &*self.keeper.store,
            &self.keeper.vault,
            &self.keeper.clock,
            name,
        )
        .await
        .expect("project");
        let key =
            projects::create_api_key(&*self.keeper.store, &self.keeper.clock, &project, "other")
                .await
                .expect("key");
        (project.id, key.expose_secret().to_owned())
    }

    /// Runs each statement (no parameters) on this app's database, as someone with
    /// access to the database would.
    pub async fn execute_sql(&self, statements: &[&str]) {
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.database_url)
                    .await
                    .expect("sqlite");
                for sql in statements {
                    sqlx::query(sql).execute(&pool).await.expect(sql);
                }
                pool.close().await;
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.database_url)
                    .await
                    .expect("postgres");
                for sql in statements {
                    sqlx::query(sql).execute(&pool).await.expect(sql);
                }
                pool.close().await;
            }
        }
    }

    /// Inserts a bare connection row for `app_id` (the connections API arrives in a
    /// later issue; until then a test reaches the table directly).
    pub async fn insert_connection(&self, app_id: &str) {
        let id = keeper::ids::IdKind::Connection.generate();
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.database_url)
                    .await
                    .expect("sqlite");
                sqlx::query(
                    "INSERT INTO zoom_oauth_connections (id, project_id, app_id, user_id, account_id, created_at, updated_at) VALUES (?, ?, ?, 'u1', 'a1', 0, 0)",
                )
                .bind(&id)
                .bind(&self.project_id)
                .bind(app_id)
                .execute(&pool)
                .await
                .expect("insert connection");
                pool.close().await;
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.database_url)
                    .await
                    .expect("postgres");
                sqlx::query(
                    "INSERT INTO zoom_oauth_connections (id, project_id, app_id, user_id, account_id, created_at, updated_at) VALUES ($1, $2, $3, 'u1', 'a1', now(), now())",
                )
                .bind(&id)
                .bind(&self.project_id)
                .bind(app_id)
                .execute(&pool)
                .await
                .expect("insert connection");
                pool.close().await;
            }
        }
    }

    /// A simulated Zoom user (active unless `status` says otherwise); returns its id.
    pub async fn zoom_user(&self, status: Option<zoom_sim::SimUserStatus>) -> String {
        self.sim
            .control()
            .create_user(&zoom_sim::SimUser {
                status,
                ..Default::default()
            })
            .await
            .expect("sim user")
            .id
    }

    /// An authorization code for `user_id` at `client_id` (scopes: the app's).
    pub async fn auth_code(
        &self,
        client_id: &str,
        user_id: &str,
        scopes: Option<Vec<String>>,
    ) -> String {
        self.sim
            .control()
            .authorize(&zoom_sim::SimAuthorize {
                client_id: client_id.into(),
                user_id: user_id.into(),
                redirect_uri: REDIRECT_URI.into(),
                scopes,
                code_challenge: None,
            })
            .await
            .expect("sim authorize")
    }

    pub async fn create_connection(&self, body: Value) -> Answer {
        self.send(
            self.request(Method::POST, "/api/v1/zoom_oauth_connections")
                .json(&body),
        )
        .await
    }

    /// Authorises a new active user at `client_id` and connects them with `extra`
    /// fields merged into the body; returns (Zoom user id, the answer).
    pub async fn connect(&self, client_id: &str, extra: Value) -> (String, Answer) {
        let user = self.zoom_user(None).await;
        let a = self.connect_user(client_id, &user, extra).await;
        (user, a)
    }

    /// Authorises `user` at `client_id` with the scopes zoomkeeper asks users for
    /// the capabilities in `extra` (local recording unless turned off, onbehalf when
    /// turned on), and posts the code.
    pub async fn connect_user(&self, client_id: &str, user: &str, extra: Value) -> Answer {
        let code = self
            .auth_code(client_id, user, Some(scopes_asked_for(&extra)))
            .await;
        let mut body = json!({"authorization_code": code, "redirect_uri": REDIRECT_URI});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        self.create_connection(body).await
    }

    pub async fn connection_call(&self, method: Method, id: &str, suffix: &str) -> Answer {
        self.send(self.request(
            method,
            &format!("/api/v1/zoom_oauth_connections/{id}{suffix}"),
        ))
        .await
    }

    /// `GET` the connection; asserts 200 and returns its JSON.
    pub async fn connection(&self, id: &str) -> Value {
        let a = self.connection_call(Method::GET, id, "").await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.json
    }

    /// The kinds of the connection's events, newest first.
    pub async fn event_kinds(&self, id: &str) -> Vec<String> {
        let a = self.connection_call(Method::GET, id, "/events").await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.json["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|e| e["kind"].as_str().expect("kind").to_owned())
            .collect()
    }

    /// What the simulated Zoom counted so far.
    pub async fn sim_stats(&self) -> zoom_sim::SimStats {
        self.sim.control().stats().await.expect("sim stats")
    }

    /// Zoom issues access tokens that live `ttl_s` seconds from now on.
    pub async fn zoom_token_ttl(&self, ttl_s: u64) {
        self.sim
            .control()
            .set_config(&zoom_sim::SimConfig {
                access_token_ttl_s: Some(ttl_s),
                ..Default::default()
            })
            .await
            .expect("sim config");
    }

    /// Posts `body` to `url` as Zoom would: signed with `secret` at Unix time `ts`.
    pub async fn post_zoom_event(&self, url: &str, body: &[u8], secret: &str, ts: i64) -> Answer {
        let ts = ts.to_string();
        let signature = zoom::webhook::sign(secret, &ts, body);
        self.send(
            self.http
                .post(url)
                .header("content-type", "application/json")
                .header("x-zm-request-timestamp", ts)
                .header("x-zm-signature", signature)
                .body(body.to_vec()),
        )
        .await
    }

    /// The value of an unlabelled or fully labelled series in a `/metrics` scrape, e.g.
    /// `zoomkeeper_lease_conflicts_total` or `zoomkeeper_zoom_webhooks_refused_total{event="other"}`.
    pub async fn metric(&self, series: &str) -> u64 {
        let m = self.send(self.http.get(self.url("/metrics"))).await;
        assert_eq!(m.status, 200, "{}", m.text);
        m.text
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{series} missing from:\n{}", m.text))
            .parse()
            .expect("a count")
    }

    pub async fn access_token(&self, id: &str) -> Answer {
        self.connection_call(Method::POST, id, "/access_token")
            .await
    }
}

/// The scopes zoomkeeper asks a user to grant for the capabilities a create body
/// asks for — never every scope, so a call the grant does not cover fails as at Zoom.
pub fn scopes_asked_for(body: &Value) -> Vec<String> {
    let local = body["is_local_recording_token_supported"] != Value::Bool(false);
    let onbehalf = body["is_onbehalf_token_supported"] == Value::Bool(true);
    let mut scopes: Vec<String> = Vec::new();
    let sets = [
        (local, zoom_sim::LOCAL_RECORDING_SCOPES),
        (onbehalf, zoom_sim::ONBEHALF_SCOPES),
    ];
    for (wanted, set) in sets {
        for s in set.iter().filter(|_| wanted) {
            if !scopes.iter().any(|x| x == s) {
                scopes.push((*s).to_owned());
            }
        }
    }
    scopes
}

/// The redirect URI the test helpers authorise with.
pub const REDIRECT_URI: &str = "https://bots.example.com/zoom/callback";
