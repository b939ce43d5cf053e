//! The control API under `/_sim/` (JSON in, JSON out, errors `{"error": "..."}`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::server::Sim;
use crate::types::*;
use crate::webhooks;
use crate::zoom_error::ApiError;

pub(crate) fn router() -> Router<Sim> {
    Router::new()
        .route("/_sim/apps", post(create_app))
        .route("/_sim/apps/{client_id}", get(get_app).patch(patch_app))
        .route(
            "/_sim/apps/{client_id}/url_validation",
            post(url_validation),
        )
        .route("/_sim/users", post(create_user).get(list_users))
        .route("/_sim/accounts", post(create_account))
        .route("/_sim/users/{id}", patch(patch_user))
        .route("/_sim/users/{id}/meetings", post(create_meeting))
        .route("/_sim/users/{id}/deauthorize", post(deauthorize))
        .route("/_sim/meetings/{id}", delete(delete_meeting))
        .route("/_sim/authorize", post(authorize))
        .route("/_sim/config", get(get_config).put(put_config))
        .route("/_sim/faults", get(get_faults).put(put_faults))
        .route("/_sim/tokens/{token}", get(token_info))
        .route("/_sim/tokens/{token}/join", post(join_with_token))
        .route("/_sim/stats", get(stats))
        .route("/_sim/webhooks", get(webhook_deliveries))
        .route("/_sim/reset", post(reset))
}

type Answer = Result<Response, ApiError>;

/// An empty body reads as `{}`, so `POST /_sim/users` with no body makes a default user.
fn body<T: DeserializeOwned>(raw: &Bytes) -> Result<T, ApiError> {
    let raw: &[u8] = if raw.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        raw
    };
    serde_json::from_slice(raw)
        .map_err(|e| ApiError::control(400, format!("invalid JSON body: {e}")))
}

fn ok() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn create_app(State(sim): State<Sim>, raw: Bytes) -> Answer {
    let app: SimApp = body(&raw)?;
    sim.lock()
        .upsert_app(&app)
        .map_err(|e| ApiError::control(400, e))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"client_id": app.client_id})),
    )
        .into_response())
}

async fn get_app(State(sim): State<Sim>, Path(client_id): Path<String>) -> Answer {
    let info = sim.lock().app_info(&client_id);
    info.map(|i| Json(i).into_response())
        .ok_or_else(|| ApiError::control(404, format!("no app {client_id}")))
}

async fn patch_app(State(sim): State<Sim>, Path(client_id): Path<String>, raw: Bytes) -> Answer {
    let p: SimAppPatch = body(&raw)?;
    sim.lock()
        .patch_app(&client_id, &p)
        .ok_or_else(|| ApiError::control(404, format!("no app {client_id}")))?;
    Ok(ok())
}

async fn url_validation(State(sim): State<Sim>, Path(client_id): Path<String>) -> Answer {
    Ok(Json(webhooks::validate_url(&sim, &client_id).await?).into_response())
}

async fn create_user(State(sim): State<Sim>, raw: Bytes) -> Answer {
    let u: SimUser = body(&raw)?;
    let created = sim.lock().create_user(&u)?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn create_account(State(sim): State<Sim>, raw: Bytes) -> Answer {
    let a: SimAccount = body(&raw)?;
    let (created, jobs) = sim.lock().create_account(&a)?;
    webhooks::dispatch(&sim, jobs);
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list_users(State(sim): State<Sim>) -> Answer {
    Ok(Json(sim.lock().user_list()).into_response())
}

async fn patch_user(State(sim): State<Sim>, Path(id): Path<String>, raw: Bytes) -> Answer {
    let p: SimUserPatch = body(&raw)?;
    let jobs = sim.lock().patch_user(&id, &p)?;
    webhooks::dispatch(&sim, jobs);
    Ok(ok())
}

async fn create_meeting(State(sim): State<Sim>, Path(id): Path<String>, raw: Bytes) -> Answer {
    let m: SimMeeting = body(&raw)?;
    let (created, jobs) = sim.lock().create_meeting(&id, &m)?;
    webhooks::dispatch(&sim, jobs);
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `DELETE /_sim/meetings/{id}[?occurrence_id=…]`: the meeting, or one occurrence.
async fn delete_meeting(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Answer {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::control(404, format!("no meeting {id}")))?;
    let occurrence = q.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "occurrence_id")
            .map(|(_, v)| v.into_owned())
    });
    let jobs = match occurrence {
        Some(o) => sim.lock().delete_occurrence(id, &o)?,
        None => sim.lock().delete_meeting(id)?,
    };
    webhooks::dispatch(&sim, jobs);
    Ok(ok())
}

async fn deauthorize(State(sim): State<Sim>, Path(id): Path<String>, raw: Bytes) -> Answer {
    let d: SimDeauthorize = body(&raw)?;
    let jobs = sim.lock().deauthorize(&id, &d.client_id)?;
    webhooks::dispatch(&sim, jobs);
    Ok(ok())
}

async fn authorize(State(sim): State<Sim>, raw: Bytes) -> Answer {
    let a: SimAuthorize = body(&raw)?;
    let code = sim.lock().authorize(&a)?;
    Ok(Json(SimAuthorizeCode { code }).into_response())
}

async fn get_config(State(sim): State<Sim>) -> Answer {
    Ok(Json(sim.lock().config.to_public()).into_response())
}

async fn put_config(State(sim): State<Sim>, raw: Bytes) -> Answer {
    let c: SimConfig = body(&raw)?;
    let mut w = sim.lock();
    w.apply_config(&c).map_err(|e| ApiError::control(400, e))?;
    Ok(Json(w.config.to_public()).into_response())
}

async fn get_faults(State(sim): State<Sim>) -> Answer {
    Ok(Json(sim.lock().faults.clone()).into_response())
}

fn check_rate(name: &str, v: Option<f64>) -> Result<(), ApiError> {
    match v {
        Some(r) if !(0.0..=1.0).contains(&r) => Err(ApiError::control(
            400,
            format!("{name} must be between 0 and 1"),
        )),
        _ => Ok(()),
    }
}

async fn put_faults(State(sim): State<Sim>, raw: Bytes) -> Answer {
    let f: SimFaults = body(&raw)?;
    check_rate("error_rate", f.error_rate)?;
    check_rate("drop_connection_rate", f.drop_connection_rate)?;
    check_rate("timeout_rate", f.timeout_rate)?;
    if let Some(s) = f.status_code {
        if !(400..=599).contains(&s) {
            return Err(ApiError::control(
                400,
                "status_code must be between 400 and 599",
            ));
        }
    }
    sim.lock().faults = f.clone();
    Ok(Json(f).into_response())
}

async fn token_info(State(sim): State<Sim>, Path(token): Path<String>) -> Answer {
    let info = sim.lock().token_info(&token);
    info.map(|i| Json(i).into_response())
        .ok_or_else(|| ApiError::control(404, "the simulator did not issue this token"))
}

/// `POST /_sim/tokens/{token}/join {meeting_id}`: a bot joins with an onbehalf token.
async fn join_with_token(State(sim): State<Sim>, Path(token): Path<String>, raw: Bytes) -> Answer {
    let join: SimJoin = body(&raw)?;
    sim.lock().join_with_onbehalf(&token, join.meeting_id)?;
    Ok(ok())
}

async fn stats(State(sim): State<Sim>) -> Answer {
    Ok(Json(sim.lock().stats.clone()).into_response())
}

async fn webhook_deliveries(State(sim): State<Sim>) -> Answer {
    Ok(Json(sim.lock().deliveries()).into_response())
}

async fn reset(State(sim): State<Sim>) -> Answer {
    sim.lock().reset();
    Ok(ok())
}
