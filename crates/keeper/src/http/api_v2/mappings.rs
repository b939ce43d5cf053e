//! `/api/v2/zoom-meetings-to-credentials/`: which credential hosts which meeting —
//! zoomkeeper's meeting index — over [`crate::domain::meetings`].

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    id_filter, list_url, route_both, time_filter, uuid_of, Listing, RecallCaller, RecallErrorBody,
    RecallListParams, RecallPage, TAG,
};
use crate::core::ids::IdKind;
use crate::domain::meetings::{self, ListFilterInput};
use crate::http::apps::timestamp;
use crate::http::error::ApiError;
use crate::http::extract::ApiQuery;
use crate::http::pagination::List;
use crate::http::AppState;
use crate::storage::{meeting_cursor_id, MeetingRow};

pub const PATH: &str = "/api/v2/zoom-meetings-to-credentials/";

const LISTING: Listing = Listing {
    list: List::Meetings,
    time_field: "synced_at",
    lowest_id: "zoa_0000000000000000_0",
};

pub fn routes() -> Router<AppState> {
    route_both(Router::new(), PATH, get(list_mappings))
}

/// A meeting and the credential whose user hosts it: a bot sent to this meeting
/// gets its local recording token from that credential.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"meeting_id": 85746065432_i64, "credential": "c10b2c3d-4e5f-8a6b-8c7d-8e9f0a1b2c3d", "synced_at": "2026-12-01T09:30:00Z"}))]
pub struct MeetingToCredential {
    /// Zoom's meeting number.
    #[schema(example = 85746065432_i64)]
    pub meeting_id: i64,
    /// The credential's UUID.
    #[schema(format = "uuid")]
    pub credential: String,
    /// When the meeting was indexed (by the meeting sync or a Zoom webhook).
    #[schema(format = DateTime)]
    pub synced_at: String,
}

impl From<&MeetingRow> for MeetingToCredential {
    fn from(row: &MeetingRow) -> Self {
        MeetingToCredential {
            // The domain indexes only meeting numbers (9 to 11 digits).
            meeting_id: row.meeting_id.parse().unwrap_or_default(),
            credential: uuid_of(IdKind::Connection, &row.connection_id),
            synced_at: timestamp(row.synced_at),
        }
    }
}

/// Filters of `GET /api/v2/zoom-meetings-to-credentials/`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MappingFilterParams {
    /// The credential's UUID.
    pub credential: Option<String>,
    /// Zoom's meeting number.
    #[param(value_type = Option<i64>)]
    pub meeting_id: Option<String>,
    pub synced_at_after: Option<String>,
    pub synced_at_before: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    pub paging: RecallListParams,
}

/// List Zoom Meetings to Credentials Mappings: the meetings bots sent to get a
/// local recording token without asking, and from which credential.
#[utoipa::path(
    get, path = "/api/v2/zoom-meetings-to-credentials/", tag = TAG,
    operation_id = "zoom_meetings_to_credentials_list",
    params(MappingFilterParams, RecallListParams),
    responses(
        (status = 200, description = "A page of mappings", body = RecallPage<MeetingToCredential>),
        (status = 400, description = "A bad filter, ordering or cursor", body = RecallErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_mappings(
    State(state): State<AppState>,
    RecallCaller(caller): RecallCaller,
    RawQuery(query): RawQuery,
    ApiQuery(params): ApiQuery<MappingFilterParams>,
) -> Result<Json<RecallPage<MeetingToCredential>>, ApiError> {
    let asked = params.paging.page_request(LISTING)?;
    let Some(connection_id) = id_filter(
        IdKind::Connection,
        "credential",
        params.credential.as_deref(),
    )?
    .matching() else {
        return Ok(Json(RecallPage::empty()));
    };
    let input = ListFilterInput {
        meeting_id: params.meeting_id,
        connection_id,
        synced_after: time_filter("synced_at_after", params.synced_at_after.as_deref())?,
        synced_before: time_filter("synced_at_before", params.synced_at_before.as_deref())?,
    };
    let page = meetings::list(
        &*state.keeper.store,
        &caller.project_id,
        input,
        &asked.request,
    )
    .await
    .map_err(|e| match e {
        meetings::MeetingError::Invalid(mut fields) => {
            if let Some(problems) = fields.remove("zoom_oauth_connection_id") {
                fields.insert("credential".to_owned(), problems);
            }
            ApiError::invalid_fields(fields)
        }
        other => other.into(),
    })?;
    Ok(Json(RecallPage::of(
        LISTING.list,
        &list_url(&state, PATH, query.as_deref()),
        &asked,
        page,
        |m| (m.synced_at, meeting_cursor_id(&m.app_id, &m.meeting_id)),
        |row| MeetingToCredential::from(row),
    )))
}
