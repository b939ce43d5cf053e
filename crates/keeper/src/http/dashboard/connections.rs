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

use super::apps::{read_query, Pager};
use super::{refused, render, see_other, when, FormErrors, Layout, Posted, Signed, When};
use crate::domain::apps;
use crate::domain::connections::{self, FilterInput};
use crate::domain::tokens;
use crate::http::error::ApiError;
use crate::http::pagination::{List, ListPage, ListParams};
use crate::http::AppState;
use crate::storage::{AppRow, ConnectionEventRow, ConnectionRow, PageRequest};

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
        .route("/dashboard/connections/{id}/delete", post(delete))
}

/// The project's apps (the first 100, newest first), for filters and names.
async fn project_apps(state: &AppState, signed: &Signed) -> Result<Vec<AppRow>, ApiError> {
    let request = PageRequest {
        cursor: None,
        limit: crate::http::pagination::MAX_PAGE_SIZE,
    };
    Ok(
        apps::list(&*state.keeper.store, signed.project_id(), &request)
            .await?
            .items,
    )
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
    let query: ListQuery = match read_query(raw) {
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
    expires_at: When,
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
    /// The API's sentence for a refused action (test token, sync).
    action_error: Option<String>,
    notice: Option<&'static str>,
}

impl ConnectionPage {
    fn metadata(&self) -> String {
        metadata_text(&self.connection)
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
}

struct Shown {
    status: StatusCode,
    minted: Option<MintOutcome>,
    action_error: Option<String>,
    notice: Option<&'static str>,
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
    render(
        shown.status,
        ConnectionPage {
            layout: signed.layout("connections"),
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
    let query: ConnectionQuery = match read_query(raw) {
        Ok(query) => query,
        Err(e) => return signed.error(e),
    };
    let notice = query
        .synced
        .is_some()
        .then_some("A meeting sync is scheduled; the meeting sync worker runs it shortly.");
    let shown = Shown {
        status: StatusCode::OK,
        minted: None,
        action_error: None,
        notice,
    };
    connection_view(&state, &signed, &id, &query, shown).await
}

#[derive(Deserialize)]
struct Nothing {}

/// "Mint a test token": an access token through the API's token path
/// (`POST …/access_token`); the answer shows its kind, expiry and a masked form.
async fn mint_test_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<Nothing>,
) -> Response {
    let signed = posted.signed;
    let shown = match tokens::access_token(&state.keeper, signed.project_id(), &id).await {
        Ok(token) => Shown {
            status: StatusCode::OK,
            minted: Some(MintOutcome {
                kind: "access_token",
                expires_at: When(token.expires_at),
                masked: masked(token.token.expose_secret()),
                refreshed: token.refreshed,
            }),
            action_error: None,
            notice: None,
        },
        Err(tokens::TokenError::NotFound) => {
            return signed.error(tokens::TokenError::NotFound.into())
        }
        Err(e) => {
            let (status, errors) = refused(e.into());
            Shown {
                status,
                minted: None,
                action_error: errors.message,
                notice: None,
            }
        }
    };
    connection_view(&state, &signed, &id, &ConnectionQuery::default(), shown).await
}

async fn sync(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<Nothing>,
) -> Response {
    let signed = posted.signed;
    match connections::schedule_sync(&state.keeper, signed.project_id(), &id).await {
        Ok(()) => see_other(&format!("/dashboard/connections/{id}?synced=1")),
        Err(connections::ConnectionError::NotFound) => {
            signed.error(connections::ConnectionError::NotFound.into())
        }
        Err(e) => {
            let (status, errors) = refused(e.into());
            let shown = Shown {
                status,
                minted: None,
                action_error: errors.message,
                notice: None,
            };
            connection_view(&state, &signed, &id, &ConnectionQuery::default(), shown).await
        }
    }
}

async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<Nothing>,
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
            let (status, errors) = refused(e.into());
            let shown = Shown {
                status,
                minted: None,
                action_error: errors.message,
                notice: None,
            };
            connection_view(&state, &signed, &id, &ConnectionQuery::default(), shown).await
        }
    }
}
