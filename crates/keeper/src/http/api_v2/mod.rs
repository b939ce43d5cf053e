//! `/api/v2`: the Recall.ai-compatible API (DESIGN.md §14). Customers who wrote
//! code against Recall's managed Zoom OAuth keep it and change the base URL.
//!
//! The same domain functions as `/api/v1` underneath; Recall's shapes on top:
//! - paths end in `/` (the same path without it is answered too);
//! - errors are `{"detail": "<sentence>"}` (plus our `code`, and `fields` for
//!   validation errors), rendered by [`recall_errors`] from the error every handler
//!   and extractor already returns;
//! - lists are `{next, previous, results}` with an opaque `cursor` and `ordering`;
//! - apps and credentials are named by UUIDs: each one's id mapped one to one
//!   ([`IdKind::to_uuid`]), so an object made through either API has one stable
//!   UUID, and `/api/v2` also accepts the `/api/v1` id;
//! - `Authorization: Token <key>`, or the key alone.

use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use chrono::{DateTime, Datelike as _, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, FieldErrors, RenderedError};
use super::pagination::{decode_cursor, page_link, List, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use super::AppState;
use crate::core::ids::IdKind;
use crate::domain::api_keys::{self, Caller};
use crate::storage::{Cursor, Direction, Page, PageRequest};

pub mod apps;
pub mod credentials;
pub mod logs;
pub mod mappings;

/// The tag of every `/api/v2` operation in `/openapi.json`.
pub const TAG: &str = "Recall-compatible API (v2)";

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(apps::routes())
        .merge(credentials::routes())
        .merge(mappings::routes())
        .merge(logs::routes())
}

/// `path` (which ends in `/`) and the same path without its trailing slash, both
/// routed to `handler`.
fn route_both(
    router: Router<AppState>,
    path: &str,
    handler: axum::routing::MethodRouter<AppState>,
) -> Router<AppState> {
    router
        .route(path, handler.clone())
        .route(path.trim_end_matches('/'), handler)
}

/// Whether `path` is answered in Recall's error shape: all of `/api/v2` but Zoom's
/// event URL (`…/webhook`), which answers Zoom.
pub fn is_recall_path(path: &str) -> bool {
    path.starts_with("/api/v2/") && !path.ends_with("/webhook")
}

/// An error of `/api/v2` as Recall's clients read it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"detail": "No Zoom OAuth credential with this id exists in your project.", "code": "not_found"}))]
pub struct RecallErrorBody {
    /// A sentence a person can act on.
    #[schema(example = "No Zoom OAuth credential with this id exists in your project.")]
    pub detail: String,
    /// A stable snake_case code for programs (zoomkeeper's; Recall sends none).
    #[schema(example = "not_found")]
    pub code: String,
    /// For validation errors: each offending field and what is wrong with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::HashMap<String, Vec<String>>>)]
    pub fields: Option<FieldErrors>,
}

/// Middleware over the whole router: an error answered on an `/api/v2` path (by a
/// handler, an extractor, the router's fallbacks or the size limits) is rendered
/// as [`RecallErrorBody`], with its status and headers (`Retry-After`) unchanged.
pub async fn recall_errors(request: Request, next: Next) -> Response {
    let recall = is_recall_path(request.uri().path());
    let mut response = next.run(request).await;
    if !recall {
        return response;
    }
    let Some(error) = response.extensions_mut().remove::<RenderedError>() else {
        return response;
    };
    let body = RecallErrorBody {
        detail: error.message,
        code: error.code.to_owned(),
        fields: error.fields,
    };
    let (mut head, _) = response.into_parts();
    head.headers.remove(header::CONTENT_LENGTH);
    head.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Serialising a struct of strings cannot fail.
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(head, Body::from(bytes))
}

/// The calling project, from `Authorization: Token <key>` or the key alone.
pub struct RecallCaller(pub Caller);

impl FromRequestParts<AppState> for RecallCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        super::auth::caller(state, api_keys::parse_authorization_scheme_optional(header))
            .await
            .map(RecallCaller)
    }
}

/// The UUID `/api/v2` shows for the object with id `id`.
pub fn uuid_of(kind: IdKind, id: &str) -> String {
    kind.to_uuid(id).map_or_else(
        // Every stored id has its kind's shape; this is never reached.
        || id.to_owned(),
        |uuid| uuid.to_string(),
    )
}

/// The id of the object named `text` in a path: its UUID (or its `/api/v1` id).
/// Anything else, a malformed UUID included, names nothing: 404.
pub fn id_from_path(kind: IdKind, text: &str, what: &'static str) -> Result<String, ApiError> {
    match parse_id(kind, text) {
        Parsed::Id(id) => Ok(id),
        Parsed::Nothing | Parsed::Malformed => Err(ApiError::NotFound { what }),
    }
}

/// A list filter on an object's UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdFilter {
    /// Not given.
    Any,
    /// This object (which may not exist: then nothing matches).
    Is(String),
    /// A UUID that no object of this kind can have: nothing matches.
    Nothing,
}

impl IdFilter {
    /// The id to filter by (`None`: any), or `None` when nothing can match (the
    /// list is empty without asking the database).
    pub fn matching(self) -> Option<Option<String>> {
        match self {
            IdFilter::Any => Some(None),
            IdFilter::Is(id) => Some(Some(id)),
            IdFilter::Nothing => None,
        }
    }
}

/// The filter `field=text` on objects of `kind`; a value that is not a UUID is a 400.
pub fn id_filter(kind: IdKind, field: &str, text: Option<&str>) -> Result<IdFilter, ApiError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(IdFilter::Any);
    };
    match parse_id(kind, text) {
        Parsed::Id(id) => Ok(IdFilter::Is(id)),
        Parsed::Nothing => Ok(IdFilter::Nothing),
        Parsed::Malformed => Err(ApiError::field(
            field,
            "Must be a UUID such as 3fa85f64-5717-4562-b3fc-2c963f66afa6.",
        )),
    }
}

enum Parsed {
    Id(String),
    Nothing,
    Malformed,
}

fn parse_id(kind: IdKind, text: &str) -> Parsed {
    let text = text.trim();
    if kind.matches(text) {
        return Parsed::Id(text.to_owned());
    }
    match uuid::Uuid::try_parse(text) {
        Ok(uuid) => kind.from_uuid(uuid).map_or(Parsed::Nothing, Parsed::Id),
        Err(_) => Parsed::Malformed,
    }
}

/// A time filter (`created_at_after=…`): ISO 8601 as Recall's filters take it — a
/// date-time with `Z` or an offset, a date-time without one (UTC), or a date
/// (midnight UTC).
pub fn time_filter(field: &str, text: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let parsed = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M",
            ]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
            .map(|t| t.and_utc())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        })
        // Years both databases can compare (PostgreSQL stops at 4713 BC).
        .filter(|t| (1..=9999).contains(&t.year()));
    parsed.map(Some).ok_or_else(|| {
        ApiError::field(
            field,
            "Must be an ISO 8601 date-time from the years 1 to 9999, such as 2024-05-01T12:00:00Z, or a date such as 2024-05-01.",
        )
    })
}

/// Paging parameters of every `/api/v2` list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecallListParams {
    /// The pagination cursor value: from a previous page's `next` or `previous`
    /// link, as it is.
    pub cursor: Option<String>,
    /// Which field to use when ordering the results: the list's time field
    /// (oldest first) or the same with `-` (newest first, the default).
    pub ordering: Option<String>,
    /// Items per page, 1 to 100 (default 25). A zoomkeeper addition.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub page_size: Option<String>,
}

/// One list's paging: which cursors it takes and the field it is ordered by.
#[derive(Debug, Clone, Copy)]
pub struct Listing {
    pub list: List,
    /// `created_at` or `synced_at`.
    pub time_field: &'static str,
    /// A sort key below every row's, for the first page of an oldest-first list.
    pub lowest_id: &'static str,
}

/// A page asked for, with the order it is shown in.
#[derive(Debug, Clone)]
pub struct RecallPageRequest {
    pub request: PageRequest,
    pub oldest_first: bool,
    /// True for the first page (no cursor given).
    first: bool,
}

impl RecallListParams {
    pub fn page_request(&self, listing: Listing) -> Result<RecallPageRequest, ApiError> {
        let limit = match self.page_size.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_PAGE_SIZE,
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
                _ => {
                    return Err(ApiError::field(
                        "page_size",
                        format!("Must be a whole number from 1 to {MAX_PAGE_SIZE}."),
                    ))
                }
            },
        };
        let field = listing.time_field;
        let oldest_first = match self.ordering.as_deref().map(str::trim) {
            None | Some("") => false,
            Some(o) if o.strip_prefix('-') == Some(field) => false,
            Some(o) if o == field => true,
            Some(_) => {
                return Err(ApiError::field(
                    "ordering",
                    format!(
                        "Must be {field} (oldest first) or -{field} (newest first, the default)."
                    ),
                ))
            }
        };
        let given = match self.cursor.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(decode_cursor(listing.list, text).ok_or_else(|| {
                ApiError::BadRequest {
                    code: "invalid_cursor",
                    message:
                        "Invalid cursor: use the next or previous link of a list response as it is."
                            .to_owned(),
                }
            })?),
        };
        let first = given.is_none();
        // An oldest-first list starts from below every row, going towards newer ones.
        let cursor = match given {
            None if oldest_first => Some(Cursor {
                created_at: DateTime::<Utc>::UNIX_EPOCH,
                id: listing.lowest_id.to_owned(),
                direction: Direction::Newer,
            }),
            other => other,
        };
        Ok(RecallPageRequest {
            request: PageRequest { cursor, limit },
            oldest_first,
            first,
        })
    }
}

/// One page of an `/api/v2` list.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecallPage<T> {
    /// Link to the next page, or null.
    #[schema(required = true, format = "uri")]
    pub next: Option<String>,
    /// Link to the previous page, or null.
    #[schema(required = true, format = "uri")]
    pub previous: Option<String>,
    pub results: Vec<T>,
}

impl<T> RecallPage<T> {
    /// An empty page (a filter nothing can match).
    pub fn empty() -> RecallPage<T> {
        RecallPage {
            next: None,
            previous: None,
            results: Vec::new(),
        }
    }

    /// `page`, served for `asked` from the list at `list_url` (the absolute URL of
    /// the list with its filters and ordering, without cursor), in the order asked
    /// for, with its links; `position` gives a row's sort key and `show` its
    /// representation.
    pub fn of<R>(
        list: List,
        list_url: &str,
        asked: &RecallPageRequest,
        page: Page<R>,
        position: impl Fn(&R) -> (DateTime<Utc>, String),
        show: impl Fn(&R) -> T,
    ) -> RecallPage<T> {
        // Storage pages come newest first.
        let mut items = page.items;
        let link = |item: &R, direction: Direction| {
            page_link(
                list,
                list_url,
                asked.request.limit,
                position(item),
                direction,
            )
        };
        let travelled = asked.request.cursor.as_ref().map(|c| c.direction);
        let (newest, oldest) = (items.first(), items.last());
        let (towards_older, towards_newer) = match (newest, oldest) {
            (Some(newest), Some(oldest)) => {
                let older = match travelled {
                    Some(Direction::Newer) => !asked.first,
                    _ => page.has_more,
                };
                let newer = match travelled {
                    Some(Direction::Newer) => page.has_more,
                    None => false,
                    Some(Direction::Older) => true,
                };
                (
                    older.then(|| link(oldest, Direction::Older)),
                    newer.then(|| link(newest, Direction::Newer)),
                )
            }
            _ => (None, None),
        };
        let (next, previous) = if asked.oldest_first {
            items.reverse();
            (towards_newer, towards_older)
        } else {
            (towards_older, towards_newer)
        };
        RecallPage {
            next,
            previous,
            results: items.iter().map(show).collect(),
        }
    }
}

/// The absolute URL of the list at `path` with the request's query minus its
/// paging (`cursor`, `page_size`), for the links of its pages.
pub fn list_url(state: &AppState, path: &str, query: Option<&str>) -> String {
    let kept: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(name, _)| name != "cursor" && name != "page_size")
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        return format!("{}{path}", state.public_url);
    }
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.extend_pairs(kept);
    format!("{}{path}?{}", state.public_url, query.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_filters_take_what_recall_clients_send() {
        let t = |s: &str| {
            time_filter("created_at_after", Some(s))
                .expect("valid")
                .expect("given")
        };
        assert_eq!(
            t("2024-05-01T12:00:00Z").to_rfc3339(),
            "2024-05-01T12:00:00+00:00"
        );
        assert_eq!(
            t("2024-05-01T14:00:00+02:00").to_rfc3339(),
            "2024-05-01T12:00:00+00:00"
        );
        assert_eq!(t("2024-05-01T12:00:00.5").timestamp_millis() % 1000, 500);
        assert_eq!(t("2024-05-01").to_rfc3339(), "2024-05-01T00:00:00+00:00");
        assert_eq!(time_filter("x", Some(" ")).expect("blank is absent"), None);
        assert!(time_filter("x", Some("0001-01-01")).is_ok());
        assert!(time_filter("x", Some("9999-12-31T23:59:59Z")).is_ok());
        for bad in [
            "-5000-01-01",
            "+20000-01-01",
            "yesterday",
            "2024-13-01",
            "1714564800",
            "2024-05-01T25:00:00Z",
        ] {
            assert!(time_filter("x", Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_read_as_uuids_or_v1_ids() {
        let id = IdKind::Connection.generate();
        let uuid = uuid_of(IdKind::Connection, &id);
        assert_eq!(
            id_from_path(IdKind::Connection, &uuid, "x").expect("found"),
            id
        );
        assert_eq!(
            id_from_path(IdKind::Connection, &uuid.to_uppercase(), "x").expect("found"),
            id
        );
        assert_eq!(
            id_from_path(IdKind::Connection, &id, "x").expect("found"),
            id
        );
        assert!(id_from_path(IdKind::App, &uuid, "x").is_err());
        assert_eq!(
            id_filter(IdKind::App, "oauth_app", Some(&uuid)).expect("a UUID"),
            IdFilter::Nothing
        );
        assert!(id_filter(IdKind::App, "oauth_app", Some("nope")).is_err());
    }
}
