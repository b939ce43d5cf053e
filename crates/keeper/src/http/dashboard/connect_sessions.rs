//! Connect links (hosted connect): create a link to send a user to, and follow the
//! project's sessions. A link is a bearer link: it is shown only in the answer to
//! the POST that made it.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::bot_platforms::app_choices;
use super::webhooks::Fields;
use super::{read_query, Pager};
use super::{refused, render, FormErrors, Layout, Posted, Signed, When};
use crate::domain::connect_sessions::{self, NewConnectSession, DEFAULT_EXPIRES_IN};
use crate::http::error::ApiError;
use crate::http::pagination::{List, ListPage, ListParams};
use crate::http::AppState;
use crate::storage::ConnectSessionRow;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/dashboard/connect-sessions",
        get(sessions_page).post(create_session),
    )
}

/// What the create form shows.
struct CreateForm {
    zoom_oauth_app_id: String,
    return_url: String,
    metadata: String,
    deduplication_key: String,
    local_recording: bool,
    onbehalf: bool,
    expires_in: String,
}

impl Default for CreateForm {
    fn default() -> CreateForm {
        CreateForm {
            zoom_oauth_app_id: String::new(),
            return_url: String::new(),
            metadata: String::new(),
            deduplication_key: String::new(),
            // The API's defaults.
            local_recording: true,
            onbehalf: false,
            expires_in: DEFAULT_EXPIRES_IN.as_secs().to_string(),
        }
    }
}

/// A session as the list shows it.
struct SessionView {
    id: String,
    status: &'static str,
    app: String,
    return_url: String,
    created: When,
    expires: When,
    connection_id: Option<String>,
    error: Option<String>,
}

/// The link just made: `(session id, url)`.
struct CreatedLink {
    id: String,
    url: String,
    expires: When,
}

#[derive(Template)]
#[template(path = "dashboard/connect_sessions.html")]
struct SessionsPage {
    layout: Layout,
    apps: Vec<(String, String)>,
    form: CreateForm,
    errors: FormErrors,
    created: Option<CreatedLink>,
    sessions: Vec<SessionView>,
    pager: Pager,
    callback_url: String,
}

async fn sessions_view(
    state: &AppState,
    signed: &Signed,
    raw_query: Option<&str>,
    status: StatusCode,
    form: CreateForm,
    errors: FormErrors,
    created: Option<CreatedLink>,
) -> Response {
    let keeper = &state.keeper;
    let params: ListParams = match read_query(raw_query) {
        Ok(p) => p,
        Err(e) => return signed.error(e),
    };
    let request = match params.page_request(List::ConnectSessions) {
        Ok(r) => r,
        Err(e) => return signed.error(e),
    };
    let page = match connect_sessions::list(keeper, signed.project_id(), &request).await {
        Ok(page) => page,
        Err(e) => return signed.error(e.into()),
    };
    let apps = match app_choices(state, signed).await {
        Ok(apps) => apps,
        Err(e) => return signed.error(e),
    };
    let names: HashMap<&str, &str> = apps
        .iter()
        .map(|(id, client_id)| (id.as_str(), client_id.as_str()))
        .collect();
    let now = keeper.clock.now();
    let show = |row: &ConnectSessionRow| SessionView {
        id: row.id.clone(),
        status: connect_sessions::status_of(row, now),
        app: names
            .get(row.app_id.as_str())
            .map_or_else(|| row.app_id.clone(), |c| (*c).to_owned()),
        return_url: row.return_url.clone(),
        created: When(row.created_at),
        expires: When(row.expires_at),
        connection_id: row.connection_id.clone(),
        error: row.error.as_ref().map(|e| match &row.error_description {
            Some(d) => format!("{e}: {d}"),
            None => e.clone(),
        }),
    };
    let listed = ListPage::of(
        List::ConnectSessions,
        "/dashboard/connect-sessions",
        &request,
        &page,
        |s| (s.created_at, s.id.clone()),
        show,
    );
    render(
        status,
        SessionsPage {
            layout: signed.layout("connect"),
            apps,
            form,
            errors,
            created,
            pager: Pager::from(&listed),
            sessions: listed.results,
            callback_url: connect_sessions::callback_url(&state.public_url),
        },
    )
}

async fn sessions_page(
    State(state): State<AppState>,
    signed: Signed,
    RawQuery(query): RawQuery,
) -> Response {
    sessions_view(
        &state,
        &signed,
        query.as_deref(),
        StatusCode::OK,
        CreateForm::default(),
        FormErrors::none(),
        None,
    )
    .await
}

/// The API's create with the form's fields: blank optional fields are left out;
/// the capabilities are checkboxes (both sent, ticked or not).
async fn create_session(State(state): State<AppState>, posted: Posted<Fields>) -> Response {
    let Posted { signed, form } = posted;
    let shown = CreateForm {
        zoom_oauth_app_id: form.text("zoom_oauth_app_id"),
        return_url: form.text("return_url"),
        metadata: form.text("metadata"),
        deduplication_key: form.text("deduplication_key"),
        local_recording: form.has("is_local_recording_token_supported"),
        onbehalf: form.has("is_onbehalf_token_supported"),
        expires_in: form.text("expires_in"),
    };
    let given = |name: &str| Some(form.text(name)).filter(|t| !t.trim().is_empty());
    // The API takes metadata as JSON; the form as JSON text.
    let metadata = match given("metadata").map(|m| serde_json::from_str(&m)) {
        None => None,
        Some(Ok(value)) => Some(value),
        Some(Err(e)) => {
            let (status, errors) = refused(ApiError::field(
                "metadata",
                format!(
                    "Must be a JSON object of string keys and string values, like {{\"team\": \"sales\"}} ({e})."
                ),
            ));
            return sessions_view(&state, &signed, None, status, shown, errors, None).await;
        }
    };
    let new = NewConnectSession {
        app_id: given("zoom_oauth_app_id"),
        return_url: form.text("return_url"),
        metadata,
        deduplication_key: given("deduplication_key"),
        is_local_recording_token_supported: Some(shown.local_recording),
        is_onbehalf_token_supported: Some(shown.onbehalf),
        // Text that is not a whole number of seconds is out of range, and the
        // API's sentence says which range.
        expires_in: given("expires_in").map(|t| t.trim().parse().unwrap_or(0)),
    };
    match connect_sessions::create(&state.keeper, signed.project_id(), &state.public_url, new).await
    {
        Ok(created) => {
            tracing::info!(session_id = %created.row.id, "connect session created in the dashboard");
            let link = CreatedLink {
                id: created.row.id.clone(),
                url: created.url,
                expires: When(created.row.expires_at),
            };
            sessions_view(
                &state,
                &signed,
                None,
                StatusCode::CREATED,
                CreateForm::default(),
                FormErrors::none(),
                Some(link),
            )
            .await
        }
        Err(e) => {
            let (status, errors) = refused(e.into());
            sessions_view(&state, &signed, None, status, shown, errors, None).await
        }
    }
}
