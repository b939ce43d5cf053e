//! The dashboard (DESIGN.md §13): server-rendered pages under `/dashboard` for the
//! people who operate zoomkeeper. Handlers are as thin as the API's and call the
//! same domain functions, so every rule and every error sentence is the API's.
//!
//! - Signed-in pages take [`Signed`] (a live session and the project it shows);
//!   without one, a browser is sent to the sign-in page.
//! - Every state-changing request is a form POST taken through [`Posted`], which
//!   refuses it unless it carries the session's CSRF token — a handler cannot
//!   forget the check.
//! - Every response carries a strict Content-Security-Policy (scripts and styles
//!   only from `/dashboard/static`, no inline script), refuses framing and caching.
//! - Secrets are shown only in the answer to a POST that asked for them, never in a
//!   URL.

use std::collections::BTreeMap;
use std::fmt;

use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use axum::Router;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::error::{ApiError, FieldErrors};
use super::AppState;
use crate::domain::operators::{self, Session};
use crate::storage::ProjectRow;

mod apps;
mod auth;
mod bot_platforms;
mod connect_sessions;
mod connections;
mod meetings;
mod settings;
mod webhooks;

/// Where the dashboard lives.
pub const ROOT: &str = "/dashboard";
/// The session cookie: a random token, `HttpOnly`, `SameSite=Lax`, `Path=/dashboard`,
/// `Secure` when `public_url` is https.
pub const SESSION_COOKIE: &str = "zk_session";
/// Sent by the script when it refreshes a live region (see `dashboard.js`).
const REFRESH_HEADER: &str = "x-zoomkeeper-refresh";
/// The name of every form's CSRF field.
pub const CSRF_FIELD: &str = "csrf";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard/") }))
        .route("/dashboard", get(|| async { Redirect::to("/dashboard/") }))
        .route("/dashboard/static/dashboard.css", get(stylesheet))
        .route("/dashboard/static/dashboard.js", get(script))
        .merge(auth::routes())
        .merge(settings::routes())
        .merge(apps::routes())
        .merge(connections::routes())
        .merge(meetings::routes())
        .merge(webhooks::routes())
        .merge(bot_platforms::routes())
        .merge(connect_sessions::routes())
        .route("/dashboard/{*rest}", any(no_such_page))
        .layer(middleware::from_fn(refuse_nul_in_query))
        .layer(middleware::from_fn(secure_headers))
}

/// The headers every dashboard response carries.
async fn secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A query holding NUL is refused before any page reads it, as the API refuses it:
/// PostgreSQL cannot compare text holding NUL.
async fn refuse_nul_in_query(request: Request, next: Next) -> Response {
    let query = request.uri().query().unwrap_or("");
    if form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k.contains('\0') || v.contains('\0')) {
        return bare_error(
            StatusCode::BAD_REQUEST,
            "A parameter of this address holds the NUL character (U+0000), which nothing here \
             accepts. Remove it and try again.",
        );
    }
    next.run(request).await
}

async fn stylesheet() -> Response {
    static_file(
        "text/css; charset=utf-8",
        include_str!("../../../static/dashboard.css"),
    )
}

async fn script() -> Response {
    static_file(
        "text/javascript; charset=utf-8",
        include_str!("../../../static/dashboard.js"),
    )
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn no_such_page(signed: Option<Signed>) -> Response {
    match signed {
        Some(signed) => signed.error(ApiError::NotFound { what: "page" }),
        None => bare_error(StatusCode::NOT_FOUND, "There is no page here."),
    }
}

// ---------------------------------------------------------------------------
// Sessions

/// A signed-in operator and the project the dashboard shows them.
pub struct Signed {
    pub session: Session,
    pub project: ProjectRow,
    pub projects: Vec<ProjectRow>,
    /// The request's path and query, for links back here.
    pub here: String,
}

impl Signed {
    pub fn project_id(&self) -> &str {
        &self.project.id
    }

    /// What the page frame needs; `section` highlights the navigation.
    pub fn layout(&self, section: &'static str) -> Layout {
        Layout {
            email: self.session.email.clone(),
            csrf: self.session.csrf.clone(),
            project_id: self.project.id.clone(),
            project_name: self.project.name.clone(),
            projects: self
                .projects
                .iter()
                .map(|p| (p.id.clone(), p.name.clone()))
                .collect(),
            section,
            here: self.here.clone(),
        }
    }

    /// The error page for `e`: its status and the API's sentence.
    pub fn error(&self, e: ApiError) -> Response {
        let status = e.status();
        if let ApiError::Internal(cause) = &e {
            tracing::error!(
                error = format!("{cause:#}"),
                "internal error in the dashboard"
            );
        }
        let message = match &e {
            ApiError::Internal(_) => {
                "Something went wrong on the server; its log has the cause. Try again.".to_owned()
            }
            ApiError::NotFound { what } => {
                format!(
                    "No {what} with this id exists in project {}.",
                    self.project.name
                )
            }
            other => other.to_string(),
        };
        render(
            status,
            ErrorPage {
                layout: self.layout(""),
                status: status.as_u16(),
                message,
            },
        )
    }
}

/// Not signed in: where the browser is sent.
pub struct SignInFirst(String);

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        Redirect::to(&self.0).into_response()
    }
}

/// The session token from the request's cookies.
fn session_token(headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, SESSION_COOKIE)
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let here = parts
            .uri
            .path_and_query()
            .map_or_else(|| ROOT.to_owned(), |p| p.as_str().to_owned());
        let sign_in = || {
            let next = if parts.method == Method::GET {
                format!("?next={}", urlencode(&here))
            } else {
                String::new()
            };
            SignInFirst(format!("{ROOT}/login{next}")).into_response()
        };
        let Some(token) = session_token(&parts.headers) else {
            return Err(sign_in());
        };
        let keeper = &state.keeper;
        // The script's refresh of a live region is not a person using the session.
        let used = !parts.headers.contains_key(REFRESH_HEADER);
        let session = operators::session(&*keeper.store, &keeper.clock, &token, used)
            .await
            .map_err(|e| internal(e.into()))?;
        let Some(mut session) = session else {
            return Err(sign_in());
        };
        let projects = keeper
            .store
            .list_projects()
            .await
            .map_err(|e| internal(e.into()))?;
        let chosen = session
            .project_id
            .as_deref()
            .and_then(|id| projects.iter().find(|p| p.id == id))
            .or_else(|| {
                projects
                    .iter()
                    .find(|p| p.name == crate::domain::projects::DEFAULT_PROJECT_NAME)
            })
            .or_else(|| projects.first())
            .cloned();
        let Some(project) = chosen else {
            return Err(bare_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "No project exists yet. Start the server once (it creates one) or run \
                 `zoomkeeper project create NAME`.",
            ));
        };
        if session.project_id.as_deref() != Some(project.id.as_str()) {
            keeper
                .store
                .set_operator_session_project(&session.token_hash, &project.id)
                .await
                .map_err(|e| internal(e.into()))?;
            session.project_id = Some(project.id.clone());
        }
        Ok(Signed {
            session,
            project,
            projects,
            here,
        })
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for Signed {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <Signed as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}

/// A form POST from a signed-in operator whose CSRF token matched, made for the
/// project the session shows, with its fields (`T`, from
/// `application/x-www-form-urlencoded`; the `csrf` and `project` fields are not part
/// of `T`). Missing or wrong token: 403; another project: 409; nothing done.
pub struct Posted<T> {
    pub signed: Signed,
    pub form: T,
}

/// Every form's field naming the project it was made for.
pub const PROJECT_FIELD: &str = "project";
/// Forms that do not act on the session's project.
const PROJECT_FREE_FORMS: &[&str] = &[
    "/dashboard/project",
    "/dashboard/logout",
    "/dashboard/projects",
    "/dashboard/operators",
];

/// Largest form body read.
const MAX_FORM_BYTES: usize = 64 * 1024;

impl<T: DeserializeOwned + Send> FromRequest<AppState> for Posted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let signed =
            <Signed as FromRequestParts<AppState>>::from_request_parts(&mut parts, state).await?;
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';').next().is_some_and(|m| {
                    m.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                })
            });
        if !is_form {
            return Err(signed.error(ApiError::BadRequest {
                code: "not_a_form",
                message: "Send this from the dashboard's form (application/x-www-form-urlencoded)."
                    .to_owned(),
            }));
        }
        let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
            Ok(bytes) => bytes,
            Err(_) => return Err(signed.error(ApiError::PayloadTooLarge)),
        };
        let presented = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if !operators::csrf_matches(&signed.session, &presented) {
            return Err(csrf_refused(Some(&signed)));
        }
        // A form acts on the project it was made for: another tab may have switched
        // the session to another project since.
        if !PROJECT_FREE_FORMS.contains(&parts.uri.path()) {
            let made_for = form_urlencoded::parse(&bytes)
                .find(|(k, _)| k == PROJECT_FIELD)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            if made_for != signed.project.id {
                return Err(signed.error(ApiError::Conflict {
                    code: "project_switched",
                    message: format!(
                        "This form was made for another project than the one this session now \
                         shows ({}), probably switched in another tab, so nothing was changed. \
                         Reload the page and try again.",
                        signed.project.name
                    ),
                }));
            }
        }
        if let Some((field, _)) =
            form_urlencoded::parse(&bytes).find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(signed.error(ApiError::field(&field, super::extract::NUL_PROBLEM)));
        }
        match serde_urlencoded::from_bytes::<T>(&bytes) {
            Ok(form) => Ok(Posted { signed, form }),
            Err(e) => Err(signed.error(ApiError::BadRequest {
                code: "invalid_form",
                message: format!("The form could not be read: {e}."),
            })),
        }
    }
}

/// The answer to a state-changing request without the right CSRF token.
fn csrf_refused(signed: Option<&Signed>) -> Response {
    let message = "This form has expired or did not come from this dashboard, so nothing \
                   was changed. Reload the page and try again.";
    match signed {
        Some(signed) => render(
            StatusCode::FORBIDDEN,
            ErrorPage {
                layout: signed.layout(""),
                status: 403,
                message: message.to_owned(),
            },
        ),
        None => bare_error(StatusCode::FORBIDDEN, message),
    }
}

// ---------------------------------------------------------------------------
// Rendering

/// The page frame: navigation, project switcher, sign-out form.
pub struct Layout {
    pub email: String,
    pub csrf: String,
    pub project_id: String,
    pub project_name: String,
    pub projects: Vec<(String, String)>,
    pub section: &'static str,
    pub here: String,
}

impl Layout {
    /// The navigation: `(section, path, label)`.
    pub fn nav(&self) -> &'static [(&'static str, &'static str, &'static str)] {
        &[
            ("apps", "/dashboard/apps", "Zoom apps"),
            ("connections", "/dashboard/connections", "Connections"),
            ("meetings", "/dashboard/meetings", "Meetings"),
            ("connect", "/dashboard/connect-sessions", "Connect links"),
            ("webhooks", "/dashboard/webhooks", "Webhooks"),
            ("bot_platforms", "/dashboard/bot-platforms", "Bot platforms"),
            ("api_keys", "/dashboard/api-keys", "API keys"),
            ("projects", "/dashboard/projects", "Projects"),
            ("operators", "/dashboard/operators", "Operators"),
        ]
    }
}

#[derive(Template)]
#[template(path = "dashboard/error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    message: String,
}

#[derive(Template)]
#[template(path = "dashboard/bare_error.html")]
struct BareErrorPage<'a> {
    message: &'a str,
}

/// Renders `page` with `status`.
pub fn render(status: StatusCode, page: impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, axum::response::Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a dashboard page could not be rendered");
            bare_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "This page could not be rendered; the server log has the cause.",
            )
        }
    }
}

/// An error page without the frame (no session).
pub fn bare_error(status: StatusCode, message: &str) -> Response {
    let html = BareErrorPage { message }
        .render()
        .unwrap_or_else(|_| "Error".to_owned());
    (status, axum::response::Html(html)).into_response()
}

fn internal(e: ApiError) -> Response {
    if let ApiError::Internal(cause) = &e {
        tracing::error!(
            error = format!("{cause:#}"),
            "internal error in the dashboard"
        );
    }
    bare_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on the server; its log has the cause. Try again.",
    )
}

/// After a successful POST: see the result at `to` (303, so a reload does not
/// resubmit).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// What went wrong with a submitted form: the API's sentence and, per field, the
/// API's problems, shown next to the inputs of the same names.
#[derive(Debug, Default)]
pub struct FormErrors {
    pub message: Option<String>,
    pub fields: FieldErrors,
}

impl FormErrors {
    pub fn none() -> FormErrors {
        FormErrors::default()
    }

    /// The problems with `field`, as one sentence.
    pub fn field(&self, field: &str) -> Option<String> {
        self.fields.get(field).map(|p| p.join(" "))
    }

    pub fn any(&self) -> bool {
        self.message.is_some() || !self.fields.is_empty()
    }
}

/// A refused form: the status to answer with and what to show. `Internal` errors
/// are logged and shown as a generic sentence.
pub fn refused(e: ApiError) -> (StatusCode, FormErrors) {
    let status = e.status();
    if let ApiError::Internal(cause) = &e {
        tracing::error!(
            error = format!("{cause:#}"),
            "internal error in the dashboard"
        );
        return (
            status,
            FormErrors {
                message: Some(
                    "Something went wrong on the server; its log has the cause. Try again."
                        .to_owned(),
                ),
                fields: BTreeMap::new(),
            },
        );
    }
    let message = Some(e.to_string());
    let fields = match e {
        ApiError::Validation { fields, .. } => fields,
        _ => BTreeMap::new(),
    };
    (status, FormErrors { message, fields })
}

/// A time as the dashboard shows it: UTC in the page (and on hover); the script
/// rewrites the text into the viewer's time zone. Render with `{{ t|safe }}`.
#[derive(Debug, Clone, Copy)]
pub struct When(pub DateTime<Utc>);

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let utc = self.0.format("%Y-%m-%d %H:%M:%S UTC");
        write!(
            f,
            "<time datetime=\"{}\" title=\"{utc}\">{utc}</time>",
            self.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

/// An optional time: `—` when absent.
pub fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "—".to_owned(), |t| When(t).to_string())
}

/// The project's apps for selects, filters and names: the first page of the largest
/// size, newest first.
pub async fn project_apps(
    state: &AppState,
    signed: &Signed,
) -> Result<Vec<crate::storage::AppRow>, ApiError> {
    let first = crate::storage::PageRequest {
        cursor: None,
        limit: super::pagination::MAX_PAGE_SIZE,
    };
    Ok(
        crate::domain::apps::list(&*state.keeper.store, signed.project_id(), &first)
            .await?
            .items,
    )
}

/// A form with no fields of its own (only the CSRF token and project).
#[derive(serde::Deserialize)]
pub struct NoFields {}

/// A page's query (`cursor`, `page_size`, filters); one that cannot be read is a
/// 400 with the reason.
pub fn read_query<T: DeserializeOwned + Default>(raw: Option<&str>) -> Result<T, ApiError> {
    match raw {
        None | Some("") => Ok(T::default()),
        Some(raw) => serde_urlencoded::from_str(raw).map_err(|e| ApiError::BadRequest {
            code: "invalid_query",
            message: format!("The address's query could not be read: {e}."),
        }),
    }
}

/// `next` and `previous` links of a list page, relative to the dashboard.
pub struct Pager {
    pub next: Option<String>,
    pub previous: Option<String>,
}

impl<T> From<&super::pagination::ListPage<T>> for Pager {
    fn from(page: &super::pagination::ListPage<T>) -> Pager {
        Pager {
            next: page.next.clone(),
            previous: page.previous.clone(),
        }
    }
}

/// Percent-encodes `text` for a query value.
pub fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// `next` is followed only when it is a dashboard path (no open redirect).
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with("/dashboard/")
                && !n.contains(['\\'])
                && !n.contains(char::is_control) =>
        {
            n
        }
        _ => "/dashboard/",
    }
}

/// Whether cookies must be `Secure`: the service is reached over https.
fn secure_cookies(state: &AppState) -> bool {
    state.public_url.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_must_stay_in_the_dashboard() {
        assert_eq!(
            safe_next(Some("/dashboard/apps?x=1")),
            "/dashboard/apps?x=1"
        );
        for bad in [
            None,
            Some("https://evil.example/"),
            Some("//evil.example/dashboard/"),
            Some("/api/v1/apps"),
            Some("/dashboard/\r\nSet-Cookie: x"),
            Some("/dashboard/\\evil"),
            Some("/dashboard/\u{1}"),
            Some("/dashboard/\u{7f}"),
        ] {
            assert_eq!(safe_next(bad), "/dashboard/", "{bad:?}");
        }
    }

    #[test]
    fn times_render_utc_with_a_machine_readable_value() {
        let t = DateTime::parse_from_rfc3339("2026-12-02T08:05:09Z")
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(
            When(t).to_string(),
            "<time datetime=\"2026-12-02T08:05:09Z\" title=\"2026-12-02 08:05:09 UTC\">\
             2026-12-02 08:05:09 UTC</time>"
        );
        assert_eq!(when(None), "—");
    }
}
