//! `/oauth/authorize` (consent page), `/oauth/token`, `/oauth/revoke`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::server::Sim;
use crate::types::SimAuthorize;
use crate::zoom_error::OAuthError;

/// Parses a query string or form body; the last value of a repeated key wins.
pub(crate) fn parse_form(raw: &[u8]) -> Option<HashMap<String, String>> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(raw)
        .ok()
        .map(|pairs| pairs.into_iter().collect())
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// Zoom reads the token parameters from the form body, and also from the query string.
fn token_params(query: Option<String>, body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let bad = || OAuthError::new(400, "invalid_request", "Malformed request parameters");
    let mut params = parse_form(query.unwrap_or_default().as_bytes()).ok_or_else(bad)?;
    params.extend(parse_form(body).ok_or_else(bad)?);
    Ok(params)
}

pub(crate) async fn token(
    State(sim): State<Sim>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = match token_params(query, &body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let mut world = sim.lock();
    let result = world
        .authenticate_client(authorization(&headers))
        .and_then(|client_id| world.token(&client_id, &params, &sim.base_url));
    drop(world);
    match result {
        Ok(t) => (
            StatusCode::OK,
            [(header::CACHE_CONTROL, "no-store")],
            Json(t),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn revoke(
    State(sim): State<Sim>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = match token_params(query, &body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let mut world = sim.lock();
    let result = world
        .authenticate_client(authorization(&headers))
        .and_then(|client_id| world.revoke(&client_id, params.get("token").map(String::as_str)));
    drop(world);
    match result {
        Ok(jobs) => {
            crate::webhooks::dispatch(&sim, jobs);
            Json(json!({"status": "success"})).into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:3em auto}}\
         li{{margin:.6em 0}} button{{margin-left:.5em}}</style></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    )
}

fn error_page(message: &str) -> Response {
    let html = page(
        "Zoom simulator: cannot authorize",
        &format!("<p>{}</p>", escape(message)),
    );
    (StatusCode::BAD_REQUEST, Html(html)).into_response()
}

/// What the authorize request asked for, checked against the app.
struct AuthorizeRequest {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    code_challenge: Option<String>,
}

fn check_authorize_request(
    sim: &Sim,
    p: &HashMap<String, String>,
) -> Result<AuthorizeRequest, String> {
    let get = |k: &str| p.get(k).filter(|v| !v.is_empty()).cloned();
    if get("response_type").as_deref() != Some("code") {
        return Err("response_type must be \"code\".".into());
    }
    let client_id = get("client_id").ok_or("client_id is missing.")?;
    let redirect_uri = get("redirect_uri").ok_or("redirect_uri is missing.")?;
    if url::Url::parse(&redirect_uri).is_err() {
        return Err("redirect_uri is not an absolute URL.".into());
    }
    let code_challenge = get("code_challenge");
    if code_challenge.is_some() && get("code_challenge_method").as_deref() != Some("S256") {
        return Err("code_challenge_method must be S256.".into());
    }
    let world = sim.lock();
    let app = world.app(&client_id).ok_or("Invalid client_id.")?;
    if let Some(allowed) = &app.redirect_uris {
        if !allowed.contains(&redirect_uri) {
            return Err(
                "Invalid redirect: the redirect_uri is not in the app's allow list.".into(),
            );
        }
    }
    Ok(AuthorizeRequest {
        client_id,
        redirect_uri,
        state: get("state"),
        code_challenge,
    })
}

/// `GET /oauth/authorize`: a consent page with one Approve button per simulated user.
pub(crate) async fn authorize_page(State(sim): State<Sim>, RawQuery(query): RawQuery) -> Response {
    let Some(params) = parse_form(query.unwrap_or_default().as_bytes()) else {
        return error_page("Malformed query string.");
    };
    let req = match check_authorize_request(&sim, &params) {
        Ok(r) => r,
        Err(msg) => return error_page(&msg),
    };
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        )
    };
    let mut common = hidden("response_type", "code")
        + &hidden("client_id", &req.client_id)
        + &hidden("redirect_uri", &req.redirect_uri);
    if let Some(s) = &req.state {
        common += &hidden("state", s);
    }
    if let Some(c) = &req.code_challenge {
        common += &hidden("code_challenge", c);
        common += &hidden("code_challenge_method", "S256");
    }
    let users = sim.lock().user_list();
    let mut body = format!(
        "<p>The app <b>{}</b> would like to access your Zoom account. Sign in as:</p><ul>",
        escape(&req.client_id)
    );
    if users.is_empty() {
        body += "<li>No simulated users yet: create one with <code>POST /_sim/users</code>.</li>";
    }
    for u in &users {
        body += &format!(
            "<li><form method=\"post\" action=\"/oauth/authorize\">{common}{}{} ({})<button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button></form></li>",
            hidden("user_id", &u.id),
            escape(&u.email),
            escape(&u.id),
        );
    }
    body += &format!(
        "</ul><form method=\"post\" action=\"/oauth/authorize\">{common}<button type=\"submit\" name=\"decision\" value=\"deny\">Decline</button></form>"
    );
    Html(page("Zoom simulator: authorize app", &body)).into_response()
}

/// `POST /oauth/authorize` (the consent form): redirects back with `code` and `state`.
pub(crate) async fn authorize_submit(State(sim): State<Sim>, body: Bytes) -> Response {
    let Some(params) = parse_form(&body) else {
        return error_page("Malformed form.");
    };
    let req = match check_authorize_request(&sim, &params) {
        Ok(r) => r,
        Err(msg) => return error_page(&msg),
    };
    let Ok(mut target) = url::Url::parse(&req.redirect_uri) else {
        return error_page("redirect_uri is not an absolute URL.");
    };
    if params.get("decision").map(String::as_str) == Some("deny") {
        target
            .query_pairs_mut()
            .append_pair("error", "access_denied");
    } else {
        let Some(user_id) = params.get("user_id").filter(|u| !u.is_empty()) else {
            return error_page("Pick a user to sign in as.");
        };
        let code = sim.lock().authorize(&SimAuthorize {
            client_id: req.client_id.clone(),
            user_id: user_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            scopes: None,
            code_challenge: req.code_challenge.clone(),
        });
        match code {
            Ok(code) => {
                target.query_pairs_mut().append_pair("code", &code);
            }
            Err(e) => return error_page(&e.message),
        }
    }
    if let Some(state) = &req.state {
        target.query_pairs_mut().append_pair("state", state);
    }
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}
