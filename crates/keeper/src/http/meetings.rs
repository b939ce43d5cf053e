//! `GET /api/v1/zoom_meetings`: the meeting → host index. A thin handler over
//! [`crate::domain::meetings`].

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::apps::timestamp;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use super::pagination::{List, ListPage, ListParams};
use super::AppState;
use crate::domain::api_keys::Caller;
use crate::domain::meetings::{self, ListFilterInput, MeetingError};
use crate::storage::{meeting_cursor_id, MeetingRow};

pub const PATH: &str = "/api/v1/zoom_meetings";

pub fn routes() -> Router<AppState> {
    Router::new().route(PATH, get(list_meetings))
}

/// Query of `GET /api/v1/zoom_meetings`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MeetingListParams {
    /// Opaque cursor from a previous page's `next` or `previous` link.
    pub cursor: Option<String>,
    /// Items per page, 1 to 100 (default 25).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub page_size: Option<String>,
    /// A Zoom meeting number (9 to 11 digits).
    pub meeting_id: Option<String>,
    /// A connection id (`zoc_…`).
    pub zoom_oauth_connection_id: Option<String>,
}

impl MeetingListParams {
    /// The filters as a query string, to keep them in pagination links.
    fn filter_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("meeting_id", &self.meeting_id),
            ("zoom_oauth_connection_id", &self.zoom_oauth_connection_id),
        ] {
            if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                q.append_pair(name, v);
            }
        }
        q.finish()
    }
}

/// Where a meeting's index row came from.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A `meeting.created` webhook from Zoom.
    Webhook,
    /// The meeting sync.
    Sync,
    /// The host's personal meeting ID.
    Pmi,
}

/// One meeting and the connection that hosts it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"meeting_id": "85746065432", "zoom_oauth_app_id": "zoa_a1b2c3d4e5f6g7h8", "zoom_oauth_connection_id": "zoc_q7w8e9r0t1y2u3i4", "source": "webhook", "topic": "Weekly sync", "start_time": "2026-12-01T09:30:00Z", "synced_at": "2026-12-01T09:30:00Z"}))]
pub struct MeetingResponse {
    #[schema(example = "85746065432")]
    #[schema(pattern = "^[1-9][0-9]{8,10}$")]
    pub meeting_id: String,
    #[schema(pattern = "^zoa_[A-Za-z0-9]{16}$")]
    pub zoom_oauth_app_id: String,
    #[schema(pattern = "^zoc_[A-Za-z0-9]{16}$")]
    pub zoom_oauth_connection_id: String,
    pub source: Source,
    pub topic: Option<String>,
    /// Null for meetings without a fixed time and for recurring meetings.
    #[schema(format = DateTime)]
    pub start_time: Option<String>,
    /// When this row was last written.
    #[schema(format = DateTime)]
    pub synced_at: String,
}

impl From<&MeetingRow> for MeetingResponse {
    fn from(row: &MeetingRow) -> MeetingResponse {
        use crate::storage::MeetingSource;
        MeetingResponse {
            meeting_id: row.meeting_id.clone(),
            zoom_oauth_app_id: row.app_id.clone(),
            zoom_oauth_connection_id: row.connection_id.clone(),
            source: match row.source {
                MeetingSource::Webhook => Source::Webhook,
                MeetingSource::Sync => Source::Sync,
                MeetingSource::Pmi => Source::Pmi,
            },
            topic: row.topic.clone(),
            start_time: row.start_time.map(timestamp),
            synced_at: timestamp(row.synced_at),
        }
    }
}

impl From<MeetingError> for ApiError {
    fn from(e: MeetingError) -> ApiError {
        match e {
            MeetingError::Invalid(fields) => ApiError::invalid_fields(fields),
            MeetingError::Store(e) => e.into(),
        }
    }
}

/// List the meeting → host index, most recently indexed first.
#[utoipa::path(
    get, path = "/api/v1/zoom_meetings", tag = "Meetings",
    params(MeetingListParams),
    responses(
        (status = 200, description = "A page of indexed meetings", body = ListPage<MeetingResponse>),
        (status = 400, description = "Bad filter, page_size or cursor", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_meetings(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<MeetingListParams>,
) -> Result<Json<ListPage<MeetingResponse>>, ApiError> {
    let request = ListParams {
        cursor: params.cursor.clone(),
        page_size: params.page_size.clone(),
    }
    .page_request(List::Meetings)?;
    let filter_query = params.filter_query();
    let input = ListFilterInput {
        meeting_id: params.meeting_id,
        connection_id: params.zoom_oauth_connection_id,
        ..ListFilterInput::default()
    };
    let page = meetings::list(&*state.keeper.store, &caller.project_id, input, &request).await?;
    let list_url = if filter_query.is_empty() {
        format!("{}{PATH}", state.public_url)
    } else {
        format!("{}{PATH}?{filter_query}", state.public_url)
    };
    Ok(Json(ListPage::of(
        List::Meetings,
        &list_url,
        &request,
        &page,
        |m| (m.synced_at, meeting_cursor_id(&m.app_id, &m.meeting_id)),
        |row| row.into(),
    )))
}
