//! Meetings: "who hosts this meeting, and what would a joining bot get?" — the
//! same planning and minting as `POST /api/v1/zoom_join_tokens`
//! ([`crate::domain::join_tokens`]), showing which tokens came and the problems, never
//! a token — and the meeting index as `GET /api/v1/zoom_meetings` lists it.
//!
//! The lookup is a form POST, not a GET: a pasted link can carry the meeting's
//! passcode or (a start link) a ZAK, which must not land in an address, and the
//! lookup mints tokens at Zoom.

use std::borrow::Borrow;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{project_apps, read_query, Pager};
use super::{refused, render, when, FormErrors, Layout, Posted, Signed, When};
use crate::domain::join_tokens::{self, JoinTokenRequest, JoinTokens};
use crate::domain::meetings::{self, is_meeting_number, ListFilterInput};
use crate::http::error::ApiError;
use crate::http::pagination::{List, ListPage, ListParams};
use crate::http::AppState;
use crate::storage::{meeting_cursor_id, AppRow, ConnectionRow, MeetingRow};

pub fn routes() -> Router<AppState> {
    Router::new().route("/dashboard/meetings", get(meetings_page).post(look_up))
}

/// The list's query: the API's filters and the page.
#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    page_size: Option<String>,
    #[serde(default)]
    meeting_id: String,
    #[serde(default)]
    zoom_oauth_connection_id: String,
}

impl ListQuery {
    fn filter_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("meeting_id", &self.meeting_id),
            ("zoom_oauth_connection_id", &self.zoom_oauth_connection_id),
        ] {
            if !value.trim().is_empty() {
                q.append_pair(name, value.trim());
            }
        }
        q.finish()
    }
}

/// The lookup form: what `POST /api/v1/zoom_join_tokens` takes, as text.
#[derive(Deserialize, Default)]
struct LookupForm {
    #[serde(default)]
    meeting_url: String,
    #[serde(default)]
    zoom_oauth_app_id: String,
    /// `onbehalf_token.zoom_oauth_connection_user_id` (comma-separated users allowed).
    #[serde(default)]
    onbehalf_user_id: String,
    /// `zak_token.zoom_oauth_connection_user_id`; empty: the project's default, if any.
    #[serde(default)]
    zak_user_id: String,
    /// `sdk_signature.role`: empty (none), 0 or 1.
    #[serde(default)]
    sdk_role: String,
}

/// One token a joining bot asks for: whether it came, and until when.
struct TokenLine {
    kind: &'static str,
    minted: bool,
    expires: String,
}

/// The lookup's answer, without any token.
struct Lookup {
    meeting_id: String,
    has_passcode: bool,
    has_registrant_token: bool,
    /// The meeting index's rows for this meeting, the one used first.
    hosts: Vec<(MeetingRow, Option<ConnectionRow>)>,
    tokens: Vec<TokenLine>,
    problems: Vec<join_tokens::Problem>,
}

#[derive(Template)]
#[template(path = "dashboard/meetings.html")]
struct MeetingsPage {
    layout: Layout,
    apps: Vec<AppRow>,
    form: LookupForm,
    form_errors: FormErrors,
    lookup: Option<Lookup>,
    query: ListQuery,
    meetings: Vec<MeetingRow>,
    pager: Pager,
    list_errors: FormErrors,
}

impl MeetingsPage {
    // Askama passes fields of loop items by reference and others by value.
    fn time(&self, t: impl Borrow<DateTime<Utc>>) -> When {
        When(*t.borrow())
    }
    fn maybe(&self, t: impl Borrow<Option<DateTime<Utc>>>) -> String {
        when(*t.borrow())
    }
}

async fn page(
    state: &AppState,
    signed: &Signed,
    query: ListQuery,
    status: StatusCode,
    mut form: LookupForm,
    form_errors: FormErrors,
    lookup: Option<Lookup>,
) -> Response {
    // A pasted link may carry the passcode (`pwd`) or, for a start link, a ZAK: the
    // answer shows the link without its query.
    form.meeting_url = form
        .meeting_url
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let apps = match project_apps(state, signed).await {
        Ok(apps) => apps,
        Err(e) => return signed.error(e),
    };
    let listed = async {
        let request = ListParams {
            cursor: query.cursor.clone(),
            page_size: query.page_size.clone(),
        }
        .page_request(List::Meetings)?;
        let input = ListFilterInput {
            meeting_id: Some(query.meeting_id.clone()),
            connection_id: Some(query.zoom_oauth_connection_id.clone()),
            ..ListFilterInput::default()
        };
        let page =
            meetings::list(&*state.keeper.store, signed.project_id(), input, &request).await?;
        let filters = query.filter_query();
        let list_url = if filters.is_empty() {
            "/dashboard/meetings".to_owned()
        } else {
            format!("/dashboard/meetings?{filters}")
        };
        let links = ListPage::of(
            List::Meetings,
            &list_url,
            &request,
            &page,
            |m| (m.synced_at, meeting_cursor_id(&m.app_id, &m.meeting_id)),
            |_| (),
        );
        Ok::<_, ApiError>((page.items, Pager::from(&links)))
    };
    let (list_status, meetings, pager, list_errors) = match listed.await {
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
    let status = if status == StatusCode::OK {
        list_status
    } else {
        status
    };
    render(
        status,
        MeetingsPage {
            layout: signed.layout("meetings"),
            apps,
            form,
            form_errors,
            lookup,
            query,
            meetings,
            pager,
            list_errors,
        },
    )
}

async fn meetings_page(
    State(state): State<AppState>,
    signed: Signed,
    RawQuery(raw): RawQuery,
) -> Response {
    let query: ListQuery = match read_query(raw.as_deref()) {
        Ok(query) => query,
        Err(e) => return signed.error(e),
    };
    page(
        &state,
        &signed,
        query,
        StatusCode::OK,
        LookupForm::default(),
        FormErrors::none(),
        None,
    )
    .await
}

/// A bare meeting number (Zoom shows them with spaces) as the link it stands for.
fn as_link(input: &str) -> String {
    let compact: String = input.chars().filter(|c| *c != ' ').collect();
    if is_meeting_number(&compact) {
        format!("https://zoom.us/j/{compact}")
    } else {
        input.to_owned()
    }
}

fn given(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

async fn look_up(State(state): State<AppState>, posted: Posted<LookupForm>) -> Response {
    let Posted { signed, form } = posted;
    let sdk_role = match form.sdk_role.trim() {
        "" => None,
        text => match text
            .parse::<i64>()
            .ok()
            .and_then(zoom::SdkRole::from_number)
        {
            Some(role) => Some(role),
            None => {
                let (status, errors) = refused(ApiError::field(
                    "sdk_role",
                    "Must be 0 (join as a participant) or 1 (start as host).",
                ));
                return page(
                    &state,
                    &signed,
                    ListQuery::default(),
                    status,
                    form,
                    errors,
                    None,
                )
                .await;
            }
        },
    };
    let app_id = given(&form.zoom_oauth_app_id);
    let request = JoinTokenRequest {
        meeting_url: as_link(&form.meeting_url),
        app_id: app_id.clone(),
        onbehalf_user_id: given(&form.onbehalf_user_id),
        zak_user_id: given(&form.zak_user_id),
        sdk_role,
        zoom_tokens_url: None,
        recording_connection_id: None,
    };
    let answer = match join_tokens::join_tokens(&state.keeper, signed.project_id(), request).await {
        Ok(answer) => answer,
        Err(e) => {
            let (status, errors) = refused(e.into());
            return page(
                &state,
                &signed,
                ListQuery::default(),
                status,
                form,
                errors,
                None,
            )
            .await;
        }
    };
    let lookup = match describe(&state, &signed, app_id.as_deref(), answer).await {
        Ok(lookup) => lookup,
        Err(e) => return signed.error(e),
    };
    page(
        &state,
        &signed,
        ListQuery::default(),
        StatusCode::OK,
        form,
        FormErrors::none(),
        Some(lookup),
    )
    .await
}

/// What the page shows of a join tokens answer: who hosts the meeting (the index
/// the answer's local recording token was minted from), which tokens came, the
/// problems — and no token.
async fn describe(
    state: &AppState,
    signed: &Signed,
    app_id: Option<&str>,
    answer: JoinTokens,
) -> Result<Lookup, ApiError> {
    let store = &*state.keeper.store;
    let meeting_id = answer.meeting_id.clone().unwrap_or_default();
    let rows = meetings::hosts(store, signed.project_id(), app_id, &meeting_id).await?;
    let mut hosts = Vec::new();
    for row in rows {
        let connection = store
            .get_connection(signed.project_id(), &row.connection_id)
            .await?;
        hosts.push((row, connection));
    }
    let asked = |kind: &str| answer.problems.iter().any(|p| p.token == kind);
    let mut tokens = Vec::new();
    let lines: [(&'static str, bool); 3] = [
        ("app_privilege_token", answer.app_privilege_token.is_some()),
        ("onbehalf_token", answer.onbehalf_token.is_some()),
        ("zak_token", answer.zak_token.is_some()),
    ];
    for (kind, minted) in lines {
        if minted || asked(kind) {
            tokens.push(TokenLine {
                kind,
                minted,
                expires: "—".to_owned(),
            });
        }
    }
    if let Some(signature) = &answer.sdk_signature {
        tokens.push(TokenLine {
            kind: "sdk_signature",
            minted: true,
            expires: when(join_tokens::unix_to_datetime(signature.expires_at)),
        });
    } else if asked("sdk_signature") {
        tokens.push(TokenLine {
            kind: "sdk_signature",
            minted: false,
            expires: "—".to_owned(),
        });
    }
    Ok(Lookup {
        meeting_id,
        has_passcode: answer.meeting_password.is_some(),
        has_registrant_token: answer.registrant_token.is_some(),
        hosts,
        tokens,
        problems: answer.problems,
    })
}
