//! `/v2/*`: the REST endpoints zoomkeeper calls.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use crate::oauth::parse_form;
use crate::server::Sim;
use crate::world::{Caller, World};
use crate::zoom_error::ApiError;

fn query(raw: Option<String>) -> Result<HashMap<String, String>, ApiError> {
    parse_form(raw.unwrap_or_default().as_bytes())
        .ok_or_else(|| ApiError::new(400, 300, "Malformed query string."))
}

/// Authenticates the bearer token and runs `f` with the world locked.
fn with_caller(
    sim: &Sim,
    headers: &HeaderMap,
    f: impl FnOnce(&mut World, &Caller) -> Result<Value, ApiError>,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let mut world = sim.lock();
    let result = world
        .authenticate_bearer(auth)
        .and_then(|caller| f(&mut world, &caller));
    drop(world);
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn users_me(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    with_caller(&sim, &headers, |w, c| w.users_me(c))
}

pub(crate) async fn my_meetings(
    State(sim): State<Sim>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    list_meetings(sim, headers, "me".into(), q)
}

pub(crate) async fn user_meetings(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path(user_id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    list_meetings(sim, headers, user_id, q)
}

fn list_meetings(sim: Sim, headers: HeaderMap, user_ref: String, q: Option<String>) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    with_caller(&sim, &headers, |w, c| {
        w.list_meetings(
            c,
            &user_ref,
            get("type"),
            get("page_size"),
            get("next_page_token"),
        )
    })
}

pub(crate) async fn local_recording_token(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path(meeting_id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let bypass = q.get("bypass_waiting_room").is_some_and(|v| v == "true");
    with_caller(&sim, &headers, |w, c| {
        w.local_recording_token(c, &meeting_id, bypass)
    })
}

pub(crate) async fn my_token(
    State(sim): State<Sim>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    token_for(sim, headers, "me".into(), q)
}

pub(crate) async fn user_token(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path(user_id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    token_for(sim, headers, user_id, q)
}

fn token_for(sim: Sim, headers: HeaderMap, user_ref: String, q: Option<String>) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    with_caller(&sim, &headers, |w, c| {
        w.user_token(c, &user_ref, get("type"), get("meeting_id"), get("ttl"))
    })
}

/// `GET /users` ("List users").
pub(crate) async fn list_users(
    State(sim): State<Sim>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    with_caller(&sim, &headers, |w, c| {
        w.list_users(
            c,
            get("status"),
            get("role_id"),
            get("page_size"),
            get("page_number"),
            get("next_page_token"),
        )
    })
}

pub(crate) async fn my_zak(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    with_caller(&sim, &headers, |w, c| w.me_zak(c))
}
