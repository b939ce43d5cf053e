//! The contract test: every response a test server sends is checked against the
//! OpenAPI document the server serves, so the document cannot drift from the code.
//!
//! [`wrap`] puts a layer outside the whole router. For each response it finds the
//! documented operation (method and path template), then requires:
//! - the status to be documented, or the operation to have a `default` answer;
//! - the `Content-Type` to be one the answer documents, and a body only where one is
//!   documented;
//! - a JSON body to validate against the documented schema (JSON Schema 2020-12,
//!   formats checked, `$ref`s into the document's components);
//! - every header the answer declares (`Retry-After`) to be sent;
//! - for a request the server accepted (2xx): its JSON body to validate against the
//!   documented request schema, and each documented query parameter to have a value
//!   its schema accepts.
//!
//! A route the document does not describe must be one it leaves out on purpose
//! ([`LEFT_OUT`]); `GET /openapi.json` must serve the document itself. What does not
//! hold is recorded, and the [`crate::TestApp`] that owns the server fails the test
//! when it is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use serde_json::{json, Value};
use utoipa::OpenApi as _;

/// Routes served on purpose outside the document: the dashboard and hosted-connect
/// pages are HTML for people, `/docs` is the document made browsable, `/metrics` is
/// Prometheus text, `/` sends a browser to the dashboard.
pub const LEFT_OUT: &[&str] = &[
    "/dashboard",
    "/connect/",
    "/docs",
    "/metrics",
    "/openapi.json",
];

/// What did not match the document, one sentence per response.
#[derive(Clone, Default)]
pub struct Violations(Arc<Mutex<Vec<String>>>);

impl Violations {
    fn record(&self, violation: String) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(violation);
    }

    /// Everything recorded so far, emptied.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// `router` with every response checked against the document.
pub fn wrap(router: axum::Router, violations: Violations) -> axum::Router {
    router.layer(middleware::from_fn_with_state(violations, check))
}

/// Request bodies over this are not read by the check (the server refuses them).
const REQUEST_READ_LIMIT: u64 = 1024 * 1024;

async fn check(State(violations): State<Violations>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_ascii_lowercase();
    let path = request.uri().path().to_owned();
    // A JSON body of a declared length is read here, so a request the server
    // accepted can be held to the documented request schema; others pass untouched
    // (the size limits and streaming are the server's to see).
    let json_request = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let declared = request
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let query = request.uri().query().map(str::to_owned);
    let (request, request_body) = match declared {
        Some(length) if json_request && length <= REQUEST_READ_LIMIT => {
            let (parts, body) = request.into_parts();
            match axum::body::to_bytes(body, REQUEST_READ_LIMIT as usize).await {
                Ok(bytes) => (
                    Request::from_parts(parts, Body::from(bytes.clone())),
                    Some(bytes),
                ),
                Err(_) => (Request::from_parts(parts, Body::empty()), None),
            }
        }
        _ => (request, None),
    };
    let response = next.run(request).await;
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(e) => {
            violations.record(format!(
                "{} {path} → {}: the body could not be read: {e}",
                method.to_uppercase(),
                parts.status
            ));
            Bytes::new()
        }
    };
    let mut checked = document().check(&method, &path, parts.status, &parts.headers, &bytes);
    if checked.is_ok() && parts.status.is_success() {
        if let Some(request_body) = &request_body {
            checked = document().check_request(&method, &path, request_body);
        }
        if let (Ok(()), Some(query)) = (&checked, &query) {
            checked = document().check_query(&method, &path, query);
        }
    }
    if let Err(problem) = checked {
        violations.record(format!(
            "{} {path} → {}: {problem}",
            method.to_uppercase(),
            parts.status.as_u16()
        ));
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The document every server in this process serves, with compiled schemas.
pub struct Document {
    json: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// The served document, built once per test process.
pub fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(|| Document {
        json: serde_json::to_value(keeper::http::ops::ApiDoc::openapi())
            .expect("the document serialises"),
        validators: Mutex::new(HashMap::new()),
    })
}

impl Document {
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// The path template of the operation `method path` calls, if documented. The
    /// template with the most literal segments wins (`/a/shared` over `/a/{id}`).
    pub fn template(&self, method: &str, path: &str) -> Option<&str> {
        let segments: Vec<&str> = path.split('/').collect();
        let paths = self.json["paths"].as_object()?;
        paths
            .iter()
            .filter(|(_, item)| item.get(method).is_some())
            .filter_map(|(template, _)| {
                let parts: Vec<&str> = template.split('/').collect();
                if parts.len() != segments.len() {
                    return None;
                }
                let mut literal = 0;
                for (part, segment) in parts.iter().zip(&segments) {
                    // Any segment, even an empty one, matches a parameter: the
                    // server takes it as a (wrong) id.
                    let parameter = part.starts_with('{') && part.ends_with('}');
                    if part == segment {
                        literal += 1;
                    } else if !parameter {
                        return None;
                    }
                }
                Some((literal, template.as_str()))
            })
            .max_by_key(|(literal, _)| *literal)
            .map(|(_, template)| template)
    }

    /// [`Document::template`], where `/api/v2` paths are served with and without
    /// their trailing slash (the document names Recall's, with).
    fn operation_template(&self, method: &str, path: &str) -> Option<&str> {
        self.template(method, path).or_else(|| {
            (path.starts_with("/api/v2/") && !path.ends_with('/'))
                .then(|| self.template(method, &format!("{path}/")))
                .flatten()
        })
    }

    /// Whether this response is what the document promises.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), String> {
        if method == "get" && path == "/openapi.json" && status == StatusCode::OK {
            let served: Value = serde_json::from_slice(body)
                .map_err(|e| format!("the served document is not JSON: {e}"))?;
            return if served == self.json {
                Ok(())
            } else {
                Err("the served document is not the one this check uses".into())
            };
        }
        let Some(template) = self.operation_template(method, path) else {
            return self.check_undocumented(path, status);
        };
        let operation = &self.json["paths"][template][method];
        let code = status.as_u16().to_string();
        let (key, answer) = match operation["responses"].get(&code) {
            Some(answer) => (code, answer),
            None => match operation["responses"].get("default") {
                Some(answer) => ("default".to_owned(), answer),
                None => return Err(format!("status {code} is not documented for {template}")),
            },
        };
        let answer = self.resolve(answer);
        for name in answer["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            if !headers.contains_key(name.as_str()) {
                return Err(format!("the documented header {name} is missing"));
            }
        }
        let content = answer["content"].as_object().filter(|c| !c.is_empty());
        let Some(content) = content else {
            return if body.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "a body was sent where none is documented: {}",
                    excerpt(body)
                ))
            };
        };
        let media = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let Some((documented, media_object)) = content
            .iter()
            .find(|(documented, _)| **documented == media || *documented == "*/*")
        else {
            return Err(format!(
                "Content-Type {media:?} is not documented (documented: {})",
                content.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        };
        if !documented.ends_with("json") {
            return Ok(());
        }
        let instance: Value = serde_json::from_slice(body)
            .map_err(|e| format!("the body is not JSON ({e}): {}", excerpt(body)))?;
        let Some(schema) = media_object.get("schema") else {
            return Ok(());
        };
        let validator =
            self.validator(&format!("{method} {template} {key} {documented}"), schema)?;
        let errors = errors_of(&validator, &instance);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the body does not match the schema: {}; body: {}",
                errors.join("; "),
                excerpt(body)
            ))
        }
    }

    /// Whether a JSON request body the server accepted matches the documented
    /// request schema: a document stricter than the server would make generated
    /// clients refuse requests that work.
    pub fn check_request(&self, method: &str, path: &str, body: &[u8]) -> Result<(), String> {
        let Some(template) = self.operation_template(method, path) else {
            return Ok(());
        };
        let content = &self.json["paths"][template][method]["requestBody"]["content"];
        let Some(schema) = content["application/json"].get("schema") else {
            return Ok(());
        };
        let Ok(instance) = serde_json::from_slice::<Value>(body) else {
            return Err(format!(
                "the server accepted a request body that is not JSON: {}",
                excerpt(body)
            ));
        };
        let validator = self.validator(&format!("{method} {template} request"), schema)?;
        let errors = errors_of(&validator, &instance);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the server accepted a request the documented schema refuses: {}; body: {}",
                errors.join("; "),
                excerpt(body)
            ))
        }
    }

    /// Whether every documented query parameter of a request the server accepted has
    /// a value its schema accepts: a client generated from the document can send
    /// what the tests send.
    pub fn check_query(&self, method: &str, path: &str, query: &str) -> Result<(), String> {
        let Some(template) = self.operation_template(method, path) else {
            return Ok(());
        };
        let item = &self.json["paths"][template];
        let declared: Vec<&Value> = [&item["parameters"], &item[method]["parameters"]]
            .into_iter()
            .filter_map(Value::as_array)
            .flatten()
            .map(|p| self.resolve(p))
            .filter(|p| p["in"] == "query")
            .collect();
        let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(query) else {
            return Err(format!(
                "the server accepted a query that does not decode: {query}"
            ));
        };
        for (name, value) in pairs {
            // `?page_size=` is read as no page size: an empty value is left out the
            // way a generated client leaves out an unset parameter.
            if value.is_empty() {
                continue;
            }
            // The server ignores what an operation does not list (the document says
            // so), as Django REST Framework does.
            let Some(parameter) = declared.iter().find(|p| p["name"] == name.as_str()) else {
                continue;
            };
            let schema = &parameter["schema"];
            // An array parameter is sent as the name repeated: each value is an item.
            let (schema, key) = match schema.get("items") {
                Some(items) => (items, format!("{method} {template} ?{name}[]")),
                None => (schema, format!("{method} {template} ?{name}")),
            };
            let instance = query_value(self.resolve(schema), &value);
            let validator = self.validator(&key, schema)?;
            let errors = errors_of(&validator, &instance);
            if !errors.is_empty() {
                return Err(format!(
                    "the server accepted `{name}={value}`, which the documented schema refuses: {}",
                    errors.join("; ")
                ));
            }
        }
        Ok(())
    }

    /// Every `example` in the document that its own schema refuses, and every
    /// request or response body documented without an example.
    pub fn example_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        self.walk_examples(&self.json, "#".to_owned(), &mut problems);
        for (template, item) in self.json["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let mut bodies = vec![("request".to_owned(), &operation["requestBody"])];
                for (status, answer) in operation["responses"].as_object().into_iter().flatten() {
                    bodies.push((format!("response {status}"), self.resolve(answer)));
                }
                for (what, body) in bodies {
                    for (media, object) in body["content"].as_object().into_iter().flatten() {
                        if !media.ends_with("json") || self.has_example(object) {
                            continue;
                        }
                        problems.push(format!(
                            "{} {template}: the {what} body ({media}) has no example",
                            method.to_uppercase()
                        ));
                    }
                }
            }
        }
        problems
    }

    /// Whether a media object shows an example: its own, or its schema's.
    fn has_example(&self, media: &Value) -> bool {
        if media.get("example").is_some() || media.get("examples").is_some() {
            return true;
        }
        let mut schema = &media["schema"];
        // Follow references and one-element wrappers to the schema that says it.
        for _ in 0..4 {
            if schema.get("example").is_some() || schema.get("examples").is_some() {
                return true;
            }
            if let Some(reference) = schema["$ref"].as_str() {
                let pointer = reference.trim_start_matches('#');
                schema = self.json.pointer(pointer).unwrap_or(&Value::Null);
            } else if schema["type"] == "array" {
                schema = &schema["items"];
            } else if let Some(all) = schema["allOf"].as_array().filter(|a| a.len() == 1) {
                schema = &all[0];
            } else if let Some(one) = schema["oneOf"].as_array().and_then(|branches| {
                // `T | null`: the example of T.
                let mut others = branches.iter().filter(|b| b["type"] != "null");
                let only = others.next();
                others.next().is_none().then_some(only).flatten()
            }) {
                schema = one;
            } else {
                return false;
            }
        }
        false
    }

    fn walk_examples(&self, node: &Value, at: String, problems: &mut Vec<String>) {
        match node {
            Value::Object(object) => {
                if let Some(example) = object.get("example") {
                    let schema = match object.get("schema") {
                        // A parameter or media object: its example is of its schema.
                        Some(schema) => Some(schema.clone()),
                        None if object.contains_key("type")
                            || object.contains_key("$ref")
                            || object.contains_key("properties")
                            || object.contains_key("oneOf")
                            || object.contains_key("allOf") =>
                        {
                            let mut schema = object.clone();
                            schema.remove("example");
                            Some(Value::Object(schema))
                        }
                        None => None,
                    };
                    if let Some(schema) = schema {
                        match self.validator(&format!("example {at}"), &schema) {
                            Ok(validator) => {
                                let errors = errors_of(&validator, example);
                                if !errors.is_empty() {
                                    problems.push(format!(
                                        "the example at {at} does not match its schema: {}",
                                        errors.join("; ")
                                    ));
                                }
                            }
                            Err(e) => problems.push(format!("{at}: {e}")),
                        }
                    }
                }
                for (key, value) in object {
                    if key != "example" && key != "examples" {
                        self.walk_examples(value, format!("{at}/{key}"), problems);
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk_examples(item, format!("{at}/{i}"), problems);
                }
            }
            _ => {}
        }
    }

    fn check_undocumented(&self, path: &str, status: StatusCode) -> Result<(), String> {
        let left_out = path == "/" || LEFT_OUT.iter().any(|prefix| path.starts_with(prefix));
        // An unknown path or method answers 404/405 from the router's fallbacks, or
        // 414 when the URI is over the limit before any route is looked for.
        let no_route = matches!(status.as_u16(), 404 | 405 | 414);
        if left_out || no_route {
            Ok(())
        } else {
            Err("this route is not in the document".into())
        }
    }

    /// A response object, following a `$ref` into `components.responses`.
    fn resolve<'a>(&'a self, answer: &'a Value) -> &'a Value {
        match answer["$ref"].as_str() {
            Some(reference) => reference
                .strip_prefix("#/")
                .map(|pointer| format!("/{pointer}"))
                .and_then(|pointer| self.json.pointer(&pointer))
                .unwrap_or(answer),
            None => answer,
        }
    }

    fn validator(&self, key: &str, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        let mut validators = self.validators.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(validator) = validators.get(key) {
            return Ok(validator.clone());
        }
        // The schema's `$ref`s point into the document's components: put them at
        // the root beside it.
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.json["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| format!("the documented schema does not compile: {e}"))?;
        let validator = Arc::new(validator);
        validators.insert(key.to_owned(), validator.clone());
        Ok(validator)
    }
}

/// The first few reasons `instance` fails `validator`, each with where.
/// A query value as the JSON its schema describes: a number or a boolean where the
/// schema's type says so and the text reads as one, else the text.
fn query_value(schema: &Value, value: &str) -> Value {
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let parsed = if types.contains(&"integer") || types.contains(&"number") {
        serde_json::from_str::<serde_json::Number>(value)
            .ok()
            .map(Value::Number)
    } else if types.contains(&"boolean") {
        value.parse::<bool>().ok().map(Value::Bool)
    } else {
        None
    };
    parsed.unwrap_or_else(|| Value::String(value.to_owned()))
}

fn errors_of(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .take(5)
        .map(|e| format!("at {:?}: {e}", e.instance_path().to_string()))
        .collect()
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(400).collect()
}
