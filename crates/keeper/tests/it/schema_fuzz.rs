//! Schema-driven fuzzing, as a client generator's user (or schemathesis) would
//! probe the API: every documented operation is called with bodies, path and query
//! parameters drawn from its own schemas, mixed with wrong types, empty and
//! oversized strings, NUL bytes and real ids of the project. No answer may be a
//! server error, and every answer is checked against the document by the contract
//! layer of the test server. The seed is printed; `ZOOMKEEPER_FUZZ_SEED` replays it.

use keeper::config::Settings;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Map, Value};
use testkit::{on_both_databases, spawn_app_with, Backend, TestApp};

/// Requests per database.
const REQUESTS: usize = 1500;

/// What a string may be: the shapes the server must tell apart.
fn string(rng: &mut StdRng, ids: &[String]) -> String {
    let choices: [&dyn Fn(&mut StdRng) -> String; 12] = [
        &|_| String::new(),
        &|_| "zoa_a1b2c3d4e5f6g7h8".into(),
        &|_| "85746065432".into(),
        &|_| "https://example.com/zoom/callback".into(),
        &|_| "http://127.0.0.1:1/internal".into(),
        &|_| "a\u{0}b".into(),
        &|_| "💥 naïve".into(),
        &|r| "x".repeat(r.gen_range(1000..20_000)),
        &|_| "-1".into(),
        &|_| "user_level".into(),
        &|_| " ".into(),
        &|r| format!("{:x}", r.gen::<u64>()),
    ];
    if !ids.is_empty() && rng.gen_bool(0.3) {
        return ids.choose(rng).expect("ids").clone();
    }
    choices.choose(rng).expect("choices")(rng)
}

fn any_value(rng: &mut StdRng, ids: &[String]) -> Value {
    match rng.gen_range(0..7) {
        0 => Value::Null,
        1 => json!(rng.gen_bool(0.5)),
        2 => [
            json!(-1),
            json!(0),
            json!(1.5),
            json!(9_007_199_254_740_993_u64),
            json!(i64::MAX),
        ][rng.gen_range(0..5)]
        .clone(),
        3 => json!(string(rng, ids)),
        4 => json!([]),
        5 => json!({}),
        _ => json!({"nested": string(rng, ids)}),
    }
}

/// A value for `schema` (mostly valid, sometimes not).
fn value_for(schema: &Value, doc: &Value, rng: &mut StdRng, ids: &[String], depth: u32) -> Value {
    if depth > 5 || rng.gen_bool(0.08) {
        return any_value(rng, ids);
    }
    if let Some(reference) = schema["$ref"].as_str() {
        let target = doc
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or(&Value::Null);
        return value_for(target, doc, rng, ids, depth + 1);
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(branches) = schema[combinator].as_array().filter(|b| !b.is_empty()) {
            let branch = branches.choose(rng).expect("branch");
            return value_for(branch, doc, rng, ids, depth + 1);
        }
    }
    if let Some(values) = schema["enum"].as_array().filter(|v| !v.is_empty()) {
        return values.choose(rng).expect("enum").clone();
    }
    let kinds: Vec<&str> = match &schema["type"] {
        Value::String(kind) => vec![kind.as_str()],
        Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    match kinds.choose(rng).copied().unwrap_or("any") {
        "null" => Value::Null,
        "boolean" => json!(rng.gen_bool(0.5)),
        "integer" => json!([0, 1, -1, 60, 1800, 604_801, i64::MAX][rng.gen_range(0..7)]),
        "number" => json!(rng.gen_range(-10.0..10.0)),
        "string" => json!(string(rng, ids)),
        "array" => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| value_for(&schema["items"], doc, rng, ids, depth + 1))
                .collect(),
        ),
        "object" => {
            let mut object = Map::new();
            let required: Vec<&str> = schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for (name, property) in schema["properties"].as_object().into_iter().flatten() {
                let keep = if required.contains(&name.as_str()) {
                    0.9
                } else {
                    0.5
                };
                if rng.gen_bool(keep) {
                    object.insert(name.clone(), value_for(property, doc, rng, ids, depth + 1));
                }
            }
            if schema.get("additionalProperties").is_some() || rng.gen_bool(0.1) {
                object.insert(
                    string(rng, &[]).chars().take(40).collect(),
                    any_value(rng, ids),
                );
            }
            Value::Object(object)
        }
        _ => any_value(rng, ids),
    }
}

/// A path segment: a real id, or something else, percent-encoded.
fn segment(rng: &mut StdRng, ids: &[String]) -> String {
    let raw = string(rng, ids);
    let raw: String = raw.chars().take(300).collect();
    url_encode(&raw)
}

fn url_encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn fuzz(app: &TestApp) {
    let seed = std::env::var("ZOOMKEEPER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("schema fuzz seed {seed} on {:?}", app.backend);
    let mut rng = StdRng::seed_from_u64(seed);
    // Real objects to aim at, so requests get past "not found".
    let zoom_app = app.new_app("fuzz-app").await;
    let (user, connection) = app.connect("fuzz-app", json!({})).await;
    let ids: Vec<String> = vec![
        zoom_app["id"].as_str().unwrap_or_default().to_owned(),
        connection.json["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        user,
    ];
    let doc = testkit::contract::document().json().clone();
    let mut operations = Vec::new();
    for (template, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            operations.push((template.clone(), method.clone(), operation.clone()));
        }
    }
    let mut failures = Vec::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..REQUESTS {
        let (template, method, operation) = operations.choose(&mut rng).expect("operations");
        let path: String = template
            .split('/')
            .map(|part| {
                if part.starts_with('{') {
                    segment(&mut rng, &ids)
                } else {
                    part.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let mut query = Vec::new();
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            if parameter["in"] == "query" && rng.gen_bool(0.5) {
                let value = value_for(&parameter["schema"], &doc, &mut rng, &ids, 0);
                let text = match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let name = parameter["name"].as_str().unwrap_or_default();
                query.push(format!("{name}={}", url_encode(&text)));
            }
        }
        let url = if query.is_empty() {
            path.clone()
        } else {
            format!("{path}?{}", query.join("&"))
        };
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let mut request = app.request(method.clone(), &url);
        let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
        if !schema.is_null() {
            request = request.json(&value_for(schema, &doc, &mut rng, &ids, 0));
        }
        let answer = app.send(request).await;
        *statuses.entry(answer.status).or_default() += 1;
        if answer.status >= 500 && answer.json["code"] != "busy" {
            failures.push(format!(
                "{method} {url} → {}: {}",
                answer.status,
                answer.text.chars().take(300).collect::<String>()
            ));
        }
    }
    eprintln!("schema fuzz answers by status: {statuses:?}");
    assert!(
        failures.is_empty(),
        "seed {seed}: {} server error(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

on_both_databases!(requests_drawn_from_the_document_never_get_a_server_error);

async fn requests_drawn_from_the_document_never_get_a_server_error(backend: Backend) {
    // A budget the fuzz stays under, so requests reach the handlers.
    let settings = Settings {
        rate_limit_per_second: Some(10_000.0),
        rate_limit_burst: Some(10_000),
        ..Settings::default()
    };
    let Some(app) = spawn_app_with(backend, settings).await else {
        return;
    };
    fuzz(&app).await;
}
