//! Hostile input on every `/api/v2` operation that `/openapi.json` documents, on
//! SQLite and PostgreSQL. Each operation gets, for its `{id}`, a real object of the
//! right kind, one of the other kind, a random UUID, garbage, another project's
//! object (and its own object asked for with another project's key); for its body,
//! nothing, `{}`, arrays, broken JSON, form encoding and every documented field
//! with a wrong type, NUL, control characters or 20 kB; for its query, every
//! documented parameter with garbage, NUL, impossible dates and long values, and
//! unknown parameters. The requests come from a seeded RNG, so a failure replays.
//!
//! Every answer is a 2xx or a 4xx in Recall's shape (`detail`, no `error`, JSON),
//! never a 401 (the key is valid), never a 5xx, and never holds a secret that was
//! sent; afterwards both projects' apps and credentials are as they were.

use std::collections::BTreeSet;

use futures::StreamExt as _;
use keeper::config::Settings;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use reqwest::Method;
use serde_json::{json, Value};
use testkit::{on_both_databases, spawn_app_with, Answer, Backend, TestApp, REDIRECT_URI};

on_both_databases!(no_hostile_request_breaks_api_v2_or_changes_anything);

/// Change it to explore; a failure names the request, which replays with the same seed.
const SEED: u64 = 0x0016_5eed;
/// Requests in flight at once.
const CONCURRENCY: usize = 6;
const CLIENT: &str = "hostile-client";
const SECOND_CLIENT: &str = "hostile-client-2";
const THEIR_CLIENT: &str = "their-hostile-client";

fn secret_of(client_id: &str) -> String {
    format!("zzsecret-client-{client_id}")
}

fn webhook_secret_of(client_id: &str) -> String {
    format!("zzsecret-webhook-{client_id}")
}

/// Which kind of object an operation's `{id}` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    App,
    Credential,
}

/// One documented operation.
#[derive(Debug, Clone)]
struct Op {
    method: Method,
    path: String,
    id: Option<Kind>,
    query: Vec<String>,
    /// Documented body fields, nested ones as paths (`authorization_code.code`);
    /// `None` when the operation documents no body.
    body: Option<Vec<Vec<String>>>,
}

/// The objects the storm aims at.
struct World {
    app_uuid: String,
    app_v1: String,
    cred_uuid: String,
    cred_v1: String,
    their_key: String,
    their_app_uuid: String,
    their_app_v1: String,
    their_cred_uuid: String,
    their_cred_v1: String,
    /// Cursors from real pages of the lists (and one tampered with).
    cursors: Vec<String>,
}

/// A request to send, and what it may be answered.
struct Probe {
    label: String,
    method: Method,
    path: String,
    /// Another project's key instead of the test project's.
    as_other: bool,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
    /// Whether a 2xx is a possible answer (a real object of the caller's project,
    /// a list, …); otherwise only a 4xx is.
    success_allowed: bool,
}

fn schema<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    match s["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap_or_default()],
        None => s,
    }
}

/// Every property path of `s` (following `$ref`, `oneOf`, `anyOf`, `allOf`).
fn field_paths(doc: &Value, s: &Value, prefix: &[String], out: &mut BTreeSet<Vec<String>>) {
    let s = schema(doc, s);
    for key in ["oneOf", "anyOf", "allOf"] {
        for sub in s[key].as_array().into_iter().flatten() {
            field_paths(doc, sub, prefix, out);
        }
    }
    for (name, sub) in s["properties"].as_object().into_iter().flatten() {
        let mut path = prefix.to_vec();
        path.push(name.clone());
        if out.insert(path.clone()) && path.len() < 3 {
            field_paths(doc, sub, &path, out);
        }
    }
}

/// The `/api/v2` operations of `/openapi.json` but Zoom's event URL.
fn operations(doc: &Value) -> Vec<Op> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.starts_with("/api/v2/") || path.ends_with("/webhook") {
            continue;
        }
        for (method, op) in item.as_object().expect("path item") {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let query = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().expect("name").to_owned())
                .collect();
            let body = op["requestBody"]["content"]["application/json"]
                .get("schema")
                .map(|s| {
                    let mut fields = BTreeSet::new();
                    field_paths(doc, s, &[], &mut fields);
                    fields.into_iter().collect()
                });
            let id = path.contains("{id}").then(|| {
                if path.starts_with("/api/v2/zoom-oauth-apps/") {
                    Kind::App
                } else {
                    Kind::Credential
                }
            });
            ops.push(Op {
                method,
                path: path.clone(),
                id,
                query,
                body,
            });
        }
    }
    ops
}

/// A token no answer may repeat (`zzsecret…`), or one that may be (`zzvalue…`).
fn token(rng: &mut StdRng, secret: bool) -> String {
    let prefix = if secret { "zzsecret" } else { "zzvalue" };
    format!("{prefix}{:016x}", rng.gen::<u64>())
}

/// Whether a body field holds a secret: its value must never come back.
fn is_secret_field(path: &[String]) -> bool {
    path.last().is_some_and(|f| {
        f.contains("secret") || f == "code" || f == "code_verifier" || f.contains("callback")
    })
}

/// Values of every wrong type, and hostile strings around `tok`.
fn hostile_values(tok: &str) -> Vec<Value> {
    vec![
        json!(0),
        json!(-1),
        json!(1.5),
        json!(u64::MAX),
        json!(i64::MIN),
        json!({"nested": {"deeper": [tok]}}),
        json!({}),
        Value::Null,
        json!(true),
        json!(false),
        json!([tok, 1, null]),
        json!([]),
        json!(""),
        json!("   "),
        json!(format!("{tok}\u{0}")),
        json!(format!("\u{0}{tok}")),
        json!(tok.repeat(20_000 / tok.len() + 1)),
        json!(format!("{tok}\u{1}\u{7}\u{1b}[31m\r\n\t\u{7f}\u{85}")),
        json!(format!("{tok} \u{202e}☃\u{feff}\u{10ffff}")),
        json!(format!("{tok}' OR '1'='1")),
        // URLs with the token in their query, user info and path, on addresses
        // refused without a DNS lookup (private, loopback, link-local).
        json!(format!("http://10.0.0.1/token?key={tok}")),
        json!(format!("https://user:{tok}@127.0.0.1/x")),
        json!(format!("http://169.254.169.254/latest/{tok}#{tok}")),
        json!(format!("http://[::1]:9/?k={tok}")),
        json!(tok),
    ]
}

/// Sets `path` in `body` to `value`, making the objects on the way.
fn set(body: &mut Value, path: &[String], value: Value) {
    let mut here = body;
    for (i, name) in path.iter().enumerate() {
        if !here.is_object() {
            *here = json!({});
        }
        let map = here.as_object_mut().expect("object");
        if i + 1 == path.len() {
            map.insert(name.clone(), value);
            return;
        }
        here = map.entry(name.clone()).or_insert_with(|| json!({}));
    }
}

/// Bodies every operation with a body gets, whatever its fields.
fn shapeless_bodies() -> Vec<(&'static str, Option<&'static str>, Vec<u8>)> {
    let json = Some("application/json");
    let mut deep = "[".repeat(5000);
    deep.push_str(&"]".repeat(5000));
    vec![
        ("no body", None, Vec::new()),
        ("empty JSON body", json, Vec::new()),
        ("{}", json, b"{}".to_vec()),
        ("array", json, b"[]".to_vec()),
        ("array of nulls", json, b"[null,null,null,null]".to_vec()),
        ("array of objects", json, b"[{},{\"kind\":1}]".to_vec()),
        ("null", json, b"null".to_vec()),
        ("string", json, b"\"x\"".to_vec()),
        ("number", json, b"12".to_vec()),
        ("truncated", json, b"{\"a\":".to_vec()),
        (
            "trailing comma",
            json,
            b"{\"kind\":\"user_level\",}".to_vec(),
        ),
        ("trailing garbage", json, b"{}garbage".to_vec()),
        ("byte order mark", json, "\u{feff}{}".as_bytes().to_vec()),
        ("bad UTF-8", json, b"{\"a\":\"\xff\xfe\"}".to_vec()),
        ("NUL key", json, b"{\"a\\u0000\":1}".to_vec()),
        ("escaped NUL", json, b"{\"a\":\"\\u0000\"}".to_vec()),
        ("lone surrogate", json, b"{\"a\":\"\\ud800\"}".to_vec()),
        ("1e309", json, b"{\"a\":1e309}".to_vec()),
        ("repeated key", json, b"{\"a\":1,\"a\":2}".to_vec()),
        ("deep nesting", json, deep.into_bytes()),
        (
            "form encoded",
            Some("application/x-www-form-urlencoded"),
            b"kind=user_level&client_id=x&client_secret=zzsecretform".to_vec(),
        ),
        ("text/plain", Some("text/plain"), b"{}".to_vec()),
        (
            "+json type",
            Some("application/merge-patch+json"),
            b"[1]".to_vec(),
        ),
        (
            "utf-16 charset",
            Some("application/json; charset=utf-16"),
            b"\xff\xfe{\x00}\x00".to_vec(),
        ),
        (
            "over 1 MiB",
            json,
            format!("{{\"a\":\"{}\"}}", "x".repeat(1_100_000)).into_bytes(),
        ),
    ]
}

/// Query values for every documented parameter (already percent-encoded).
fn hostile_query_values(w: &World) -> Vec<String> {
    vec![
        "%00".into(),
        "a%00b".into(),
        "%FF%FE".into(),
        "x".repeat(10_000),
        "y".repeat(7_000),
        "-1".into(),
        "0".into(),
        "1".into(),
        "101".into(),
        "99999999999999999999999".into(),
        "1e309".into(),
        "9999-12-31T23:59:59Z".into(),
        "9999-12-31T23:59:59.999999999-23:59".into(),
        "0001-01-01".into(),
        "0000-01-01T00:00:00Z".into(),
        "0001-01-01T00:00:00%2B23:59".into(),
        "%2B262143-12-31".into(),
        "-262144-01-01".into(),
        "-5000-01-01".into(),
        "%2B99999-01-01".into(),
        "2024-02-30".into(),
        "2024-05-01T12:00:00%2B99:99".into(),
        "%27%20OR%201%3D1%20--".into(),
        "created_at".into(),
        "-created_at".into(),
        "--created_at".into(),
        "synced_at".into(),
        "%E2%98%83%E2%80%AE".into(),
        "%01%1B%7F".into(),
        uuid::Uuid::new_v4().to_string(),
        w.app_uuid.clone(),
        w.cred_uuid.clone(),
        w.their_app_uuid.clone(),
        w.their_cred_uuid.clone(),
        w.their_cred_v1.clone(),
    ]
}

/// Query strings any operation gets: unknown, repeated and malformed parameters.
fn unknown_queries() -> Vec<String> {
    vec![
        "foo=bar".into(),
        "%00=1".into(),
        "a%00b=c".into(),
        "cursor[]=1&cursor[]=2".into(),
        "page_size=1&page_size=2".into(),
        "ordering=created_at&ordering=-created_at".into(),
        "&&&==&=".into(),
        "%".into(),
        "%zz=%zz".into(),
        format!("{}=1", "k".repeat(7_000)),
        "format=api&limit=1&offset=-1".into(),
    ]
}

/// Recall's create body for a new user of `client_id` with `key`'s project.
async fn credential(app: &TestApp, key: &str, client_id: &str, app_uuid: &str) -> Value {
    let user = app.zoom_user(None).await;
    let code = app
        .auth_code(
            client_id,
            &user,
            Some(testkit::scopes_asked_for(&json!({}))),
        )
        .await;
    let a = app
        .send(
            app.request_as(key, Method::POST, "/api/v2/zoom-oauth-credentials/")
                .json(&json!({
                    "oauth_app": app_uuid,
                    "authorization_code": {"code": code, "redirect_uri": REDIRECT_URI},
                })),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    a.json
}

async fn recall_app(app: &TestApp, key: &str, client_id: &str) -> Value {
    app.zoom_app(client_id, &secret_of(client_id)).await;
    let a = app
        .send(
            app.request_as(key, Method::POST, "/api/v2/zoom-oauth-apps/")
                .json(&json!({
                    "kind": "user_level",
                    "client_id": client_id,
                    "client_secret": secret_of(client_id),
                    "webhook_secret": webhook_secret_of(client_id),
                })),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    a.json
}

fn text(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .to_owned()
}

/// What `key`'s project holds, through both APIs.
async fn snapshot(app: &TestApp, key: &str) -> Vec<String> {
    let mut state = Vec::new();
    for (path, fields) in [
        (
            "/api/v2/zoom-oauth-apps/?page_size=100",
            &[
                "id",
                "kind",
                "client_id",
                "webhook_last_validation",
                "created_at",
            ][..],
        ),
        (
            "/api/v2/zoom-oauth-credentials/?page_size=100",
            &[
                "id",
                "oauth_app",
                "status",
                "user_id",
                "account_id",
                "created_at",
            ][..],
        ),
        (
            "/api/v1/zoom_oauth_apps?page_size=100",
            &["id", "client_id", "kind", "has_webhook_secret"][..],
        ),
        (
            "/api/v1/zoom_oauth_connections?page_size=100",
            &["id", "zoom_oauth_app_id", "state", "user_id", "scopes"][..],
        ),
    ] {
        let a = app.send(app.request_as(key, Method::GET, path)).await;
        assert_eq!(a.status, 200, "{path}: {}", a.text);
        assert!(a.json["next"].is_null(), "{path}: one page");
        for item in a.json["results"].as_array().expect("results") {
            let shown: Vec<String> = fields.iter().map(|f| item[*f].to_string()).collect();
            state.push(format!("{path} {}", shown.join(" ")));
        }
    }
    state
}

/// The probes for one operation.
fn probes(op: &Op, w: &World, rng: &mut StdRng, secrets: &mut BTreeSet<String>) -> Vec<Probe> {
    // The `{id}`s: (label, value, with the other project's key, whether it names
    // an object the caller may act on).
    let ids: Vec<(String, String, bool, bool)> = match op.id {
        None => vec![(String::new(), String::new(), false, true)],
        Some(kind) => {
            let (mine, mine_v1, other_kind, theirs, theirs_v1) = match kind {
                Kind::App => (
                    &w.app_uuid,
                    &w.app_v1,
                    &w.cred_uuid,
                    &w.their_app_uuid,
                    &w.their_app_v1,
                ),
                Kind::Credential => (
                    &w.cred_uuid,
                    &w.cred_v1,
                    &w.app_uuid,
                    &w.their_cred_uuid,
                    &w.their_cred_v1,
                ),
            };
            let mut ids = vec![
                ("other kind".into(), other_kind.clone(), false, false),
                (
                    "random UUID".into(),
                    uuid::Uuid::new_v4().to_string(),
                    false,
                    false,
                ),
                ("not a UUID".into(), "not-a-uuid".into(), false, false),
                ("%00".into(), "%00".into(), false, false),
                ("300 chars".into(), "a".repeat(300), false, false),
                ("..%2F..".into(), "..%2F..".into(), false, false),
                ("%FF".into(), "%FF%FE".into(), false, false),
                (
                    "upper-case other kind".into(),
                    other_kind.to_uppercase(),
                    false,
                    false,
                ),
                ("another project's".into(), theirs.clone(), false, false),
                (
                    "another project's v1 id".into(),
                    theirs_v1.clone(),
                    false,
                    false,
                ),
                ("mine, with their key".into(), mine.clone(), true, false),
            ];
            // Deleting the real credential would succeed, as it should: left out.
            if !(op.method == Method::DELETE && kind == Kind::Credential) {
                ids.push(("mine".into(), mine.clone(), false, true));
                ids.push(("mine by v1 id".into(), mine_v1.clone(), false, true));
            }
            ids
        }
    };
    let mut out = Vec::new();
    for (id_label, id, as_other, real) in ids {
        let path = op.path.replace("{id}", &id);
        let label = format!("{} {} [{id_label}]", op.method, op.path);
        let probe = |what: String, path: String, content_type, body| Probe {
            label: format!("{label} {what}"),
            method: op.method.clone(),
            path,
            as_other,
            content_type,
            body,
            success_allowed: real,
        };
        // Shapeless bodies on every operation that reads one (and a few on the others).
        let bodies = shapeless_bodies();
        let wanted = if op.body.is_some() || op.method == Method::POST {
            bodies.len()
        } else {
            4
        };
        for (what, content_type, bytes) in bodies.into_iter().take(wanted) {
            let body = (content_type.is_some() || !bytes.is_empty()).then_some(bytes);
            out.push(probe(what.to_owned(), path.clone(), content_type, body));
        }
        // Each documented field with each hostile value, the others plausible.
        if let Some(fields) = &op.body {
            // Fewer for ids that name nothing: they are refused before the body matters.
            let keep = if real || op.id.is_none() { 1.0 } else { 0.25 };
            for field in fields {
                for value in hostile_values(&token(rng, is_secret_field(field))) {
                    if !rng.gen_bool(keep) {
                        continue;
                    }
                    let mut body = plausible_body(op, w, field, rng, secrets);
                    if let Some(s) = value.as_str().filter(|_| is_secret_field(field)) {
                        remember(secrets, s);
                    }
                    set(&mut body, field, value);
                    out.push(probe(
                        format!("{} = {:.40}", field.join("."), body.to_string()),
                        path.clone(),
                        Some("application/json"),
                        Some(body.to_string().into_bytes()),
                    ));
                }
            }
        }
        // Queries: the documented parameters with hostile values, and unknown ones.
        let mut queries = unknown_queries();
        for name in &op.query {
            for value in hostile_query_values(w) {
                queries.push(format!("{name}={value}"));
            }
        }
        if op.query.iter().any(|q| q == "cursor") {
            for cursor in &w.cursors {
                queries.push(format!("cursor={cursor}"));
                queries.push(format!("cursor={cursor}&ordering=created_at&page_size=100"));
                queries.push(format!("cursor={cursor}&ordering=-synced_at"));
            }
        }
        let keep = if op.id.is_some() { 0.3 } else { 1.0 };
        for query in queries {
            if rng.gen_bool(keep) {
                out.push(probe(
                    format!("?{:.60}", query),
                    format!("{path}?{query}"),
                    None,
                    None,
                ));
            }
        }
    }
    // A few random mixes of several documented parameters at once.
    for _ in 0..if op.query.is_empty() { 0 } else { 40 } {
        let values = hostile_query_values(w);
        let query: Vec<String> = op
            .query
            .choose_multiple(rng, 3)
            .map(|name| format!("{name}={}", values.choose(rng).expect("values")))
            .collect();
        let query = query.join("&");
        out.push(Probe {
            label: format!("{} {} ?{:.80}", op.method, op.path, query),
            method: op.method.clone(),
            path: format!("{}?{query}", op.path),
            as_other: false,
            content_type: None,
            body: None,
            success_allowed: true,
        });
    }
    out
}

/// Keeps the distinctive part of a secret value sent, to look for in answers.
fn remember(secrets: &mut BTreeSet<String>, value: &str) {
    if let Some(start) = value.find("zzsecret") {
        let tok: String = value[start..].chars().take(24).collect();
        secrets.insert(tok);
    }
}

/// A body of `op` in which every documented field but `field` is plausible, so
/// `field`'s own checks are reached. Nothing plausible here can succeed: the
/// simulated Zoom knows neither its client ids nor its codes.
fn plausible_body(
    op: &Op,
    w: &World,
    field: &[String],
    rng: &mut StdRng,
    secrets: &mut BTreeSet<String>,
) -> Value {
    let mut secret = || {
        let s = token(rng, true);
        remember(secrets, &s);
        s
    };
    let body = if op.path.starts_with("/api/v2/zoom-oauth-apps/") && op.method == Method::POST {
        json!({
            "kind": "user_level",
            "client_id": "zzvalue-unknown-client",
            "client_secret": secret(),
            "webhook_secret": secret(),
        })
    } else if op.path.starts_with("/api/v2/zoom-oauth-credentials/") && op.method == Method::POST {
        if field
            .first()
            .is_some_and(|f| f == "access_token_callback_url")
        {
            json!({"oauth_app": w.app_uuid})
        } else {
            json!({
                "oauth_app": w.app_uuid,
                "authorization_code": {
                    "code": secret(),
                    "redirect_uri": REDIRECT_URI,
                    "code_verifier": secret(),
                },
            })
        }
    } else {
        json!({})
    };
    body
}

/// What is wrong with the answer `a` to `probe`, if anything.
fn check(probe: &Probe, a: &Answer, secrets: &BTreeSet<String>) -> Result<(), String> {
    let fail = |what: &str| {
        let body: String = a.text.chars().take(300).collect();
        Err(format!("{what}: {} → {} {body}", probe.label, a.status))
    };
    if a.status >= 500 {
        return fail("a server error");
    }
    if a.status == 401 {
        return fail("a valid key refused");
    }
    if (200..300).contains(&a.status) {
        if !probe.success_allowed {
            return fail("accepted");
        }
    } else if (400..500).contains(&a.status) {
        let content_type = a
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with("application/json") {
            return fail("not JSON");
        }
        if a.json.get("error").is_some()
            || a.json["detail"]
                .as_str()
                .is_none_or(|d| d.trim().len() <= 10)
        {
            return fail("not Recall's error shape");
        }
    } else {
        return fail("neither a 2xx nor a 4xx");
    }
    // A list's links keep the filters and ordering asked for.
    let asked = |link: &str| -> BTreeSet<(String, String)> {
        let query = link.split_once('?').map_or("", |(_, q)| q);
        form_urlencoded::parse(query.as_bytes())
            .filter(|(name, _)| name != "cursor" && name != "page_size")
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect()
    };
    for link in ["next", "previous"] {
        if let Some(url) = a.json[link].as_str() {
            if asked(url) != asked(&probe.path) || !url.contains("cursor=") {
                return fail(&format!("{link} link {url:.200} loses the query"));
            }
        }
    }
    match secrets.iter().find(|s| a.text.contains(s.as_str())) {
        Some(secret) => fail(&format!("{secret} echoed")),
        None => Ok(()),
    }
}

async fn send(app: &TestApp, w: &World, probe: &Probe) -> Answer {
    let key = if probe.as_other {
        &w.their_key
    } else {
        &app.key
    };
    let mut request = app.request_as(key, probe.method.clone(), &probe.path);
    if let Some(content_type) = probe.content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(body) = &probe.body {
        request = request.body(body.clone());
    }
    app.send(request).await
}

async fn no_hostile_request_breaks_api_v2_or_changes_anything(backend: Backend) {
    // The storm is the point: the per-project rate limit would answer most of it.
    let unlimited = Settings {
        rate_limit_per_second: Some(1e9),
        rate_limit_burst: Some(u32::MAX),
        ..Settings::default()
    };
    let Some(app) = spawn_app_with(backend, unlimited).await else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(SEED);
    let key = app.key.clone();
    let zoa = recall_app(&app, &key, CLIENT).await;
    let cred = credential(&app, &key, CLIENT, &text(&zoa, "id")).await;
    // A second app and its log line, so that lists have second pages.
    recall_app(&app, &key, SECOND_CLIENT).await;
    let (_, their_key) = app.other_project("elsewhere").await;
    let their_zoa = recall_app(&app, &their_key, THEIR_CLIENT).await;
    let their_cred = credential(&app, &their_key, THEIR_CLIENT, &text(&their_zoa, "id")).await;
    // A next page of each list that has one, as its link gives it.
    let mut cursors = Vec::new();
    for list in [
        "zoom-oauth-credential-logs",
        "zoom-oauth-app-logs",
        "zoom-oauth-credentials",
        "zoom-oauth-apps",
        "zoom-meetings-to-credentials",
    ] {
        let field = if list.starts_with("zoom-meetings") {
            "synced_at"
        } else {
            "created_at"
        };
        for ordering in [String::new(), format!("&ordering={field}")] {
            let path = format!("/api/v2/{list}/?page_size=1{ordering}");
            let a = app.send(app.request(Method::GET, &path)).await;
            assert_eq!(a.status, 200, "{path}: {}", a.text);
            if let Some(next) = a.json["next"].as_str() {
                let cursor = next.split("cursor=").nth(1).expect("a cursor");
                cursors.push(cursor.split('&').next().expect("cursor").to_owned());
            }
        }
    }
    assert!(cursors.len() >= 2, "{cursors:?}");
    let mut tampered = cursors[0].clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    cursors.push(String::from_utf8(tampered).expect("ASCII"));
    let w = World {
        cursors,
        app_uuid: text(&zoa, "id"),
        app_v1: text(&zoa, "zoomkeeper_id"),
        cred_uuid: text(&cred, "id"),
        cred_v1: text(&cred, "zoomkeeper_id"),
        their_key,
        their_app_uuid: text(&their_zoa, "id"),
        their_app_v1: text(&their_zoa, "zoomkeeper_id"),
        their_cred_uuid: text(&their_cred, "id"),
        their_cred_v1: text(&their_cred, "zoomkeeper_id"),
    };
    let mine_before = snapshot(&app, &key).await;
    let theirs_before = snapshot(&app, &w.their_key).await;
    assert_eq!(mine_before.len(), 6, "{mine_before:?}");

    let doc = app.send(app.http.get(app.url("/openapi.json"))).await.json;
    let ops = operations(&doc);
    assert!(ops.len() >= 15, "{ops:?}");
    let mut secrets: BTreeSet<String> = [
        secret_of(CLIENT),
        secret_of(SECOND_CLIENT),
        webhook_secret_of(SECOND_CLIENT),
        secret_of(THEIR_CLIENT),
        webhook_secret_of(CLIENT),
        webhook_secret_of(THEIR_CLIENT),
        "zzsecretform".to_owned(),
    ]
    .into();
    let mut all = Vec::new();
    for op in &ops {
        all.extend(probes(op, &w, &mut rng, &mut secrets));
    }
    assert!(secrets.len() > 300, "{} secrets sent", secrets.len());
    all.shuffle(&mut rng);
    assert!(
        (1000..5000).contains(&all.len()),
        "{} requests: keep the storm bounded",
        all.len()
    );
    let answers: Vec<(usize, Answer)> = futures::stream::iter(all.iter().enumerate())
        .map(|(i, probe)| {
            let (app, w) = (&app, &w);
            async move { (i, send(app, w, probe).await) }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut failures = BTreeSet::new();
    for (i, a) in &answers {
        if let Err(failure) = check(&all[*i], a, &secrets) {
            failures.insert(failure);
        }
        *statuses.entry(a.status).or_default() += 1;
    }
    eprintln!("{} requests: {statuses:?}", answers.len());
    assert!(
        failures.is_empty(),
        "{} bad answers (seed {SEED:#x}):\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Most were refused, and for the reasons the storm aimed at.
    for status in [400, 404, 413, 414, 415] {
        assert!(statuses.contains_key(&status), "no {status}: {statuses:?}");
    }

    assert_eq!(snapshot(&app, &key).await, mine_before);
    assert_eq!(snapshot(&app, &w.their_key).await, theirs_before);
}
