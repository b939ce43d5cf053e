//! Connections: the filtered list, a connection's page (its facts, failure data and
//! event log, refreshed while open), a test token, a meeting sync and deleting —
//! through [`crate::domain::connections`] and [`crate::domain::tokens`], as the API
//! does.

use std::borrow::Borrow;

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::{project_apps, read_query, Pager};
use super::{refused, render, see_other, when, FormErrors, Layout, Posted, Signed, When};
use crate::domain::apps;
use crate::domain::connections::{self, FilterInput};
use crate::domain::tokens;
use crate::http::error::ApiError;
use crate::http::pagination::{List, ListPage, ListParams};
use crate::http::AppState;
use crate::storage::{AppRow, ConnectionEventRow, ConnectionRow};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard/connections", get(connections_page))
        // The test token is posted to the page's own address, so the page's live
        // region keeps refreshing from it after the answer.
        .route(
            "/dashboard/connections/{id}",
            get(connection_page).post(mint_test_token),
        )
        .route("/dashboard/connections/{id}/sync", post(sync))
        .route("/dashboard/connections/{id}/edit", post(edit))
        .route("/dashboard/connections/{id}/delete", post(delete))
}

/// Metadata as compact JSON, or "—".
fn metadata_text(row: &ConnectionRow) -> String {
    row.metadata
        .as_ref()
        .map_or_else(|| "—".to_owned(), |m| m.to_string())
}

// ---------------------------------------------------------------------------
// The list

/// The API's list filters (and `metadata`: `key=value`), plus the page.
#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    page_size: Option<String>,
    #[serde(default)]
    zoom_oauth_app_id: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    account_id: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    deduplication_key: String,
    #[serde(default)]
    metadata: String,
}

impl ListQuery {
    /// The filters as a query string, kept in the pager's links.
    fn filter_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("zoom_oauth_app_id", &self.zoom_oauth_app_id),
            ("user_id", &self.user_id),
            ("account_id", &self.account_id),
            ("state", &self.state),
            ("deduplication_key", &self.deduplication_key),
            ("metadata", &self.metadata),
        ] {
            if !value.trim().is_empty() {
                q.append_pair(name, value);
            }
        }
        q.finish()
    }

    fn filter(&self) -> FilterInput {
        let text = |v: &String| Some(v.clone());
        FilterInput {
            app_id: text(&self.zoom_oauth_app_id),
            user_id: text(&self.user_id),
            account_id: text(&self.account_id),
            state: text(&self.state),
            deduplication_key: text(&self.deduplication_key),
            metadata: text(&self.metadata),
            ..FilterInput::default()
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard/connections.html")]
struct ConnectionsPage {
    layout: Layout,
    query: ListQuery,
    apps: Vec<AppRow>,
    connections: Vec<ConnectionRow>,
    pager: Pager,
    errors: FormErrors,
}

impl ConnectionsPage {
    fn app_name(&self, row: &ConnectionRow) -> String {
        self.apps
            .iter()
            .find(|a| a.id == row.app_id)
            .map_or_else(|| row.app_id.clone(), |a| a.client_id.clone())
    }
    fn created(&self, row: &ConnectionRow) -> When {
        When(row.created_at)
    }
    fn metadata(&self, row: &ConnectionRow) -> String {
        metadata_text(row)
    }
}

async fn connections_page(
    State(state): State<AppState>,
    signed: Signed,
    RawQuery(raw): RawQuery,
) -> Response {
    let query: ListQuery = match read_query(raw.as_deref()) {
        Ok(query) => query,
        Err(e) => return signed.error(e),
    };
    let apps = match project_apps(&state, &signed).await {
        Ok(apps) => apps,
        Err(e) => return signed.error(e),
    };
    let listed = async {
        let request = ListParams {
            cursor: query.cursor.clone(),
            page_size: query.page_size.clone(),
        }
        .page_request(List::Connections)?;
        let page =
            connections::list(&state.keeper, signed.project_id(), query.filter(), &request).await?;
        let filters = query.filter_query();
        let list_url = if filters.is_empty() {
            "/dashboard/connections".to_owned()
        } else {
            format!("/dashboard/connections?{filters}")
        };
        let links = ListPage::of(
            List::Connections,
            &list_url,
            &request,
            &page,
            |c| (c.created_at, c.id.clone()),
            |_| (),
        );
        Ok::<_, ApiError>((page.items, Pager::from(&links)))
    };
    let (status, connections, pager, errors) = match listed.await {
        Ok((rows, pager)) => (StatusCode::OK, rows, pager, FormErrors::none()),
        Err(e) => {
            let (status, errors) = refused(e);
            let pager = Pager {
                next: None,
                previous: None,
            };
            (status, Vec::new(), pager, errors)
        }
    };
    render(
        status,
        ConnectionsPage {
            layout: signed.layout("connections"),
            query,
            apps,
            connections,
            pager,
            errors,
        },
    )
}

// ---------------------------------------------------------------------------
// One connection

/// What "Mint a test token" got: never the token itself.
struct MintOutcome {
    kind: &'static str,
    /// Rendered `<time>`, or "—" when Zoom gives no expiry (ZAK, onbehalf).
    expires_at: String,
    /// The first characters and the length.
    masked: String,
    refreshed: bool,
}

/// A token as the dashboard shows it: its first 6 characters (none of a short one),
/// "…" and its length — enough to tell two tokens apart, never enough to use one.
fn masked(token: &str) -> String {
    let length = token.chars().count();
    let start: String = if length > 12 {
        token.chars().take(6).collect()
    } else {
        String::new()
    };
    format!("{start}… ({length} characters)")
}

#[derive(Template)]
#[template(path = "dashboard/connection.html")]
struct ConnectionPage {
    layout: Layout,
    connection: ConnectionRow,
    app: Option<AppRow>,
    events: Vec<ConnectionEventRow>,
    pager: Pager,
    minted: Option<MintOutcome>,
    edit: EditValues,
    edit_errors: FormErrors,
    /// The API's sentence for a refused action (test token, sync).
    action_error: Option<String>,
    notice: Option<&'static str>,
}

impl ConnectionPage {
    fn metadata(&self) -> String {
        metadata_text(&self.connection)
    }
    /// How far the account-wide meeting sync read the Zoom account.
    fn account_sync(&self) -> String {
        let c = &self.connection;
        let done = c.sync_users_done.unwrap_or(0);
        let of = c
            .sync_users_total
            .map_or_else(String::new, |total| format!(" of {total}"));
        match c.sync_pass_started_at {
            Some(started) => format!(
                "in progress: {done}{of} users read (started {})",
                started.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            None => format!("last pass read {done}{of} users"),
        }
    }
    fn scopes(&self) -> String {
        if self.connection.scopes.is_empty() {
            "—".to_owned()
        } else {
            self.connection.scopes.join(" ")
        }
    }
    // Askama passes fields of loop items by reference and others by value.
    fn time(&self, t: impl Borrow<DateTime<Utc>>) -> When {
        When(*t.borrow())
    }
    fn maybe(&self, t: impl Borrow<Option<DateTime<Utc>>>) -> String {
        when(*t.borrow())
    }
    fn event_data(&self, event: &ConnectionEventRow) -> String {
        event
            .data
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_default()
    }
}

#[derive(Deserialize, Default)]
struct ConnectionQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    page_size: Option<String>,
    /// Set by the redirect after a sync was scheduled.
    #[serde(default)]
    synced: Option<String>,
    /// Set by the redirect after an edit was saved.
    #[serde(default)]
    saved: Option<String>,
}

struct Shown {
    status: StatusCode,
    minted: Option<MintOutcome>,
    action_error: Option<String>,
    notice: Option<&'static str>,
    /// A refused edit: what was typed and what is wrong with it.
    edit: Option<(EditValues, FormErrors)>,
}

impl Shown {
    fn ok(notice: Option<&'static str>) -> Shown {
        Shown {
            status: StatusCode::OK,
            minted: None,
            action_error: None,
            notice,
            edit: None,
        }
    }

    fn refused(e: ApiError) -> Shown {
        let (status, errors) = refused(e);
        Shown {
            status,
            minted: None,
            action_error: errors.message,
            notice: None,
            edit: None,
        }
    }
}

/// The edit form's values.
#[derive(Debug, Default)]
struct EditValues {
    metadata: String,
    deduplication_key: String,
    local_recording: bool,
    onbehalf: bool,
}

impl EditValues {
    fn of(row: &ConnectionRow) -> EditValues {
        EditValues {
            metadata: row
                .metadata
                .as_ref()
                .and_then(|m| serde_json::to_string_pretty(m).ok())
                .unwrap_or_default(),
            deduplication_key: row.deduplication_key.clone().unwrap_or_default(),
            local_recording: row.is_local_recording_token_supported,
            onbehalf: row.is_onbehalf_token_supported,
        }
    }
}

async fn connection_view(
    state: &AppState,
    signed: &Signed,
    id: &str,
    query: &ConnectionQuery,
    shown: Shown,
) -> Response {
    let keeper = &state.keeper;
    let connection = match connections::get(keeper, signed.project_id(), id).await {
        Ok(row) => row,
        Err(e) => return signed.error(e.into()),
    };
    let request = match (ListParams {
        cursor: query.cursor.clone(),
        page_size: query.page_size.clone(),
    })
    .page_request(List::ConnectionEvents)
    {
        Ok(request) => request,
        Err(e) => return signed.error(e),
    };
    let page = match connections::events(keeper, signed.project_id(), id, &request).await {
        Ok(page) => page,
        Err(e) => return signed.error(e.into()),
    };
    let links = ListPage::of(
        List::ConnectionEvents,
        &format!("/dashboard/connections/{id}"),
        &request,
        &page,
        |e| (e.created_at, e.id.to_string()),
        |_| (),
    );
    let app = apps::get(&*keeper.store, signed.project_id(), &connection.app_id)
        .await
        .ok();
    let (edit, edit_errors) = shown
        .edit
        .unwrap_or_else(|| (EditValues::of(&connection), FormErrors::none()));
    render(
        shown.status,
        ConnectionPage {
            layout: signed.layout("connections"),
            edit,
            edit_errors,
            connection,
            app,
            events: page.items,
            pager: Pager::from(&links),
            minted: shown.minted,
            action_error: shown.action_error,
            notice: shown.notice,
        },
    )
}

async fn connection_page(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query: ConnectionQuery = match read_query(raw.as_deref()) {
        Ok(query) => query,
        Err(e) => return signed.error(e),
    };
    let notice = if query.synced.is_some() {
        Some("A meeting sync is scheduled; the meeting sync worker runs it shortly.")
    } else if query.saved.is_some() {
        Some("Saved.")
    } else {
        None
    };
    connection_view(&state, &signed, &id, &query, Shown::ok(notice)).await
}

#[derive(Deserialize)]
struct MintForm {
    /// `access_token` (the default), `zak` or `onbehalf`.
    #[serde(default)]
    kind: String,
}

/// "Mint a test token": an access token, a ZAK or an onbehalf token through the
/// API's token paths; the answer shows its kind, expiry (when Zoom gives one) and a
/// masked form, never the token.
async fn mint_test_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<MintForm>,
) -> Response {
    let Posted { signed, form } = posted;
    let keeper = &state.keeper;
    let project = signed.project_id();
    let minted = match form.kind.as_str() {
        "" | "access_token" => tokens::access_token(keeper, project, &id)
            .await
            .map(|token| MintOutcome {
                kind: "access_token",
                expires_at: when(Some(token.expires_at)),
                masked: masked(token.token.expose_secret()),
                refreshed: token.refreshed,
            }),
        "zak" | "onbehalf" => {
            let (which, kind) = if form.kind == "zak" {
                (tokens::UserToken::Zak, "zak_token")
            } else {
                (
                    tokens::UserToken::OnBehalf { meeting_id: None },
                    "onbehalf_token",
                )
            };
            tokens::user_token(keeper, project, &id, which)
                .await
                .map(|token| MintOutcome {
                    kind,
                    expires_at: when(None),
                    masked: masked(token.expose_secret()),
                    refreshed: false,
                })
        }
        _ => {
            let refused = ApiError::field("kind", "Must be access_token, zak or onbehalf.");
            let shown = Shown::refused(refused);
            return connection_view(&state, &signed, &id, &ConnectionQuery::default(), shown).await;
        }
    };
    let shown = match minted {
        Ok(outcome) => Shown {
            minted: Some(outcome),
            ..Shown::ok(None)
        },
        Err(tokens::TokenError::NotFound) => {
            return signed.error(tokens::TokenError::NotFound.into())
        }
        Err(e) => Shown::refused(e.into()),
    };
    connection_view(&state, &signed, &id, &ConnectionQuery::default(), shown).await
}

#[derive(Deserialize)]
struct EditForm {
    #[serde(default)]
    metadata: String,
    #[serde(default)]
    deduplication_key: String,
    /// A ticked checkbox sends its value; an unticked one sends nothing.
    #[serde(default)]
    is_local_recording_token_supported: Option<String>,
    #[serde(default)]
    is_onbehalf_token_supported: Option<String>,
}

/// The API's `PATCH …/{id}`: metadata (a JSON object, or empty to clear it), the
/// deduplication key (empty clears it) and the two capabilities.
async fn edit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<EditForm>,
) -> Response {
    let Posted { signed, form } = posted;
    let values = EditValues {
        metadata: form.metadata.clone(),
        deduplication_key: form.deduplication_key.clone(),
        local_recording: form.is_local_recording_token_supported.is_some(),
        onbehalf: form.is_onbehalf_token_supported.is_some(),
    };
    let metadata = match form.metadata.trim() {
        "" => Ok(None),
        text => serde_json::from_str::<serde_json::Value>(text)
            .map(Some)
            .map_err(|e| {
                ApiError::field(
                    "metadata",
                    format!("Enter a JSON object, or leave it empty to clear it ({e})."),
                )
            }),
    };
    let result = match metadata {
        Ok(metadata) => {
            let key = form.deduplication_key.trim();
            let change = connections::ConnectionChange {
                metadata: Some(metadata),
                deduplication_key: Some((!key.is_empty()).then(|| key.to_owned())),
                is_local_recording_token_supported: Some(values.local_recording),
                is_onbehalf_token_supported: Some(values.onbehalf),
            };
            connections::update(&state.keeper, signed.project_id(), &id, change)
                .await
                .map_err(ApiError::from)
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => see_other(&format!("/dashboard/connections/{id}?saved=1")),
        Err(e @ ApiError::NotFound { .. }) => signed.error(e),
        Err(e) => {
            let (status, errors) = refused(e);
            let shown = Shown {
                status,
                edit: Some((values, errors)),
                ..Shown::ok(None)
            };
            connection_view(&state, &signed, &id, &ConnectionQuery::default(), shown).await
        }
    }
}

async fn sync(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<super::NoFields>,
) -> Response {
    let signed = posted.signed;
    match connections::schedule_sync(&state.keeper, signed.project_id(), &id).await {
        Ok(()) => see_other(&format!("/dashboard/connections/{id}?synced=1")),
        Err(connections::ConnectionError::NotFound) => {
            signed.error(connections::ConnectionError::NotFound.into())
        }
        Err(e) => {
            let shown = Shown::refused(e.into());
            connection_view(&state, &signed, &id, &ConnectionQuery::default(), shown).await
        }
    }
}

async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<super::NoFields>,
) -> Response {
    let signed = posted.signed;
    match connections::delete(&state.keeper, signed.project_id(), &id).await {
        Ok(()) => {
            tracing::info!(connection_id = %id, project_id = %signed.project.id, "connection deleted in the dashboard");
            see_other("/dashboard/connections")
        }
        Err(connections::ConnectionError::NotFound) => {
            signed.error(connections::ConnectionError::NotFound.into())
        }
        Err(e) => {
            let shown = Shown::refused(e.into());
            connection_view(&state, &signed, &id, &ConnectionQuery::default(), shown).await
        }
    }
}
