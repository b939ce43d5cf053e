//! The meeting → host index (DESIGN.md §3 `zoom_meeting`, §4 "Meetings"): which
//! connection hosts a Zoom meeting, so that a joining bot can get a local recording
//! token minted with the host's credentials.
//!
//! Rules kept here: what a meeting number is; which connection hosts a meeting Zoom
//! announces (the host's, else the operator's; for account-level apps a connected
//! grant in the meeting's account); what an index row holds; the list filters.
//! Rows arrive from Zoom webhooks ([`crate::domain::zoom_webhooks`]) and, later, from the
//! meeting sync.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::core::ids::IdKind;
use crate::storage::{
    AppKind, AppRow, ConnectionRow, ConnectionState, ConnectionStore, MeetingFilter, MeetingRow,
    MeetingSource, MeetingStore, Page, PageRequest, StoreError,
};

/// Longest topic kept in the index; Zoom allows 200 characters.
pub const MAX_TOPIC_CHARS: usize = 300;

/// Zoom meeting types whose `start_time` is only the first occurrence (or absent):
/// 3 recurring without a fixed time, 8 recurring with one.
const RECURRING_TYPES: [u64; 2] = [3, 8];

#[derive(Debug, thiserror::Error)]
pub enum MeetingError {
    #[error("invalid input")]
    Invalid(BTreeMap<String, Vec<String>>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub use zoom::meeting_url::is_meeting_number;

/// The list filters as the API received them.
#[derive(Debug, Default)]
pub struct ListFilterInput {
    pub meeting_id: Option<String>,
    pub connection_id: Option<String>,
    pub synced_after: Option<DateTime<Utc>>,
    pub synced_before: Option<DateTime<Utc>>,
}

fn check_filter(input: ListFilterInput) -> Result<MeetingFilter, MeetingError> {
    let mut problems: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let given = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let meeting_id = given(input.meeting_id);
    if let Some(m) = &meeting_id {
        if !is_meeting_number(m) {
            problems
                .entry("meeting_id".to_owned())
                .or_default()
                .push("Must be a Zoom meeting number: 9 to 11 digits, without spaces.".to_owned());
        }
    }
    let connection_id = given(input.connection_id);
    if let Some(c) = &connection_id {
        if !IdKind::Connection.matches(c) {
            problems
                .entry("zoom_oauth_connection_id".to_owned())
                .or_default()
                .push("Must be a connection id: zoc_ and 16 letters or digits.".to_owned());
        }
    }
    if problems.is_empty() {
        Ok(MeetingFilter {
            meeting_id,
            connection_id,
            synced_after: input.synced_after,
            synced_before: input.synced_before,
        })
    } else {
        Err(MeetingError::Invalid(problems))
    }
}

/// `GET /api/v1/zoom_meetings`: the project's index, most recently indexed first.
pub async fn list(
    store: &dyn MeetingStore,
    project_id: &str,
    input: ListFilterInput,
    page: &PageRequest,
) -> Result<Page<MeetingRow>, MeetingError> {
    let filter = check_filter(input)?;
    Ok(store.list_meetings(project_id, &filter, page).await?)
}

/// Who hosts `meeting_id` in the project (within `app_id` when given), most recently
/// indexed first. For join tokens: the host's credentials mint the local recording
/// token.
pub async fn hosts(
    store: &dyn MeetingStore,
    project_id: &str,
    app_id: Option<&str>,
    meeting_id: &str,
) -> Result<Vec<MeetingRow>, StoreError> {
    if !is_meeting_number(meeting_id) {
        return Ok(Vec::new());
    }
    store.meeting_hosts(project_id, app_id, meeting_id).await
}

/// Which of `app`'s connections hosts a meeting Zoom announced: the host's own
/// connection, else the operator's (who scheduled it). For an account-level app, a
/// connected grant wins over a disconnected one: the host's, the operator's, then
/// any in the meeting's account. `None` when no connection of the app can host it.
pub async fn host_connection(
    store: &dyn ConnectionStore,
    app: &AppRow,
    host_id: Option<&str>,
    operator_id: Option<&str>,
    account_id: Option<&str>,
) -> Result<Option<ConnectionRow>, StoreError> {
    let host = match host_id {
        Some(h) => store.connection_by_user(&app.id, h).await?,
        None => None,
    };
    let connected = |c: &Option<ConnectionRow>| {
        c.as_ref()
            .is_some_and(|c| c.state == ConnectionState::Connected)
    };
    if (app.kind == AppKind::UserLevel && host.is_some()) || connected(&host) {
        return Ok(host);
    }
    let operator = match operator_id.filter(|o| Some(*o) != host_id) {
        Some(o) => store.connection_by_user(&app.id, o).await?,
        None => None,
    };
    match app.kind {
        AppKind::UserLevel => Ok(operator),
        AppKind::AccountLevel => {
            if connected(&operator) {
                return Ok(operator);
            }
            if let Some(account) = account_id {
                if let Some(c) = store.connection_in_account(&app.id, account).await? {
                    return Ok(Some(c));
                }
            }
            // A disconnected host still tells a joining bot why no token comes.
            Ok(host.or(operator))
        }
    }
}

/// Whether an index write of `new` replaces the row its (app, meeting) already
/// has, which came from `held_source` and points at connection `held_by`. Every
/// writer of the index asks this (storage, its SQLite receipt writer, the meeting
/// sync's commit); SQL only reads the row and writes.
///
/// - A `pmi` row is replaced only by a `pmi` row: a meeting scheduled "with my PMI"
///   carries the PMI as its id, and its webhooks must not move the personal room.
/// - A `sync` write takes the connection's own rows and another connection's `sync`
///   row (the newest listing wins: the meeting moved), but another connection's
///   `webhook` row only when Zoom's listing named this user as the host
///   (`host_confirmed`): Zoom's current answer beats a creation-time webhook, a
///   listing that does not say leaves it alone.
/// - Otherwise the latest event wins.
pub fn replaces(
    held_source: MeetingSource,
    held_by: &str,
    new: &MeetingRow,
    host_confirmed: bool,
) -> bool {
    match (held_source, new.source) {
        (MeetingSource::Pmi, new_source) => new_source == MeetingSource::Pmi,
        (_, MeetingSource::Sync) => {
            held_by == new.connection_id || held_source == MeetingSource::Sync || host_confirmed
        }
        _ => true,
    }
}

/// Whether a meeting deletion Zoom announces drops an index row from `source`: a
/// `pmi` row stays (deleting a meeting scheduled with the PMI must not un-index the
/// user's personal room).
pub fn dropped_by_deletion(source: MeetingSource) -> bool {
    source != MeetingSource::Pmi
}

/// Zoom's `start_time`, unless the meeting recurs (its `start_time` is then only the
/// first occurrence, and housekeeping must not drop the series after it).
pub fn indexed_start_time(
    start_time: Option<&str>,
    meeting_type: Option<u64>,
) -> Option<DateTime<Utc>> {
    if meeting_type.is_some_and(|t| RECURRING_TYPES.contains(&t)) {
        return None;
    }
    start_time
        .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn clean_topic(topic: Option<&str>) -> Option<String> {
    topic
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.chars().take(MAX_TOPIC_CHARS).collect())
}

/// An index row for meeting `meeting_id` hosted by `connection`.
pub fn row(
    connection: &ConnectionRow,
    meeting_id: &str,
    source: MeetingSource,
    topic: Option<&str>,
    start_time: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> MeetingRow {
    MeetingRow {
        project_id: connection.project_id.clone(),
        app_id: connection.app_id.clone(),
        meeting_id: meeting_id.to_owned(),
        connection_id: connection.id.clone(),
        source,
        topic: clean_topic(topic),
        start_time,
        synced_at: now,
        host_user_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pmi_row_is_replaced_only_by_a_pmi_and_never_dropped_by_a_deletion() {
        let at = Utc::now();
        let new = |source, connection: &str| MeetingRow {
            project_id: "prj_a".to_owned(),
            app_id: "zoa_a".to_owned(),
            meeting_id: "3542471135".to_owned(),
            connection_id: connection.to_owned(),
            source,
            topic: None,
            start_time: None,
            synced_at: at,
            host_user_id: None,
        };
        use MeetingSource::{Pmi, Sync, Webhook};
        // A PMI row: only a PMI replaces it, whoever writes and whatever Zoom says.
        assert!(replaces(Pmi, "zoc_a", &new(Pmi, "zoc_b"), false));
        for host_confirmed in [false, true] {
            assert!(!replaces(
                Pmi,
                "zoc_a",
                &new(Webhook, "zoc_a"),
                host_confirmed
            ));
            assert!(!replaces(Pmi, "zoc_a", &new(Sync, "zoc_a"), host_confirmed));
            assert!(!replaces(Pmi, "zoc_a", &new(Sync, "zoc_b"), host_confirmed));
        }
        assert!(!dropped_by_deletion(Pmi));
        assert!(dropped_by_deletion(Webhook) && dropped_by_deletion(Sync));
        // The latest webhook wins over anything but a PMI.
        assert!(replaces(Webhook, "zoc_a", &new(Webhook, "zoc_b"), false));
        assert!(replaces(Sync, "zoc_a", &new(Webhook, "zoc_b"), false));
        // A sync takes its own rows and other syncs' rows; another connection's
        // webhook row only when Zoom named this user as the host.
        assert!(replaces(Webhook, "zoc_a", &new(Sync, "zoc_a"), false));
        assert!(replaces(Sync, "zoc_b", &new(Sync, "zoc_a"), false));
        assert!(!replaces(Webhook, "zoc_b", &new(Sync, "zoc_a"), false));
        assert!(replaces(Webhook, "zoc_b", &new(Sync, "zoc_a"), true));
    }

    #[test]
    fn filters_are_checked() {
        let ok = check_filter(ListFilterInput {
            meeting_id: Some(" 85746065432 ".into()),
            connection_id: Some("zoc_abcdefghijklmnop".into()),
            ..ListFilterInput::default()
        })
        .expect("valid");
        assert_eq!(ok.meeting_id.as_deref(), Some("85746065432"));
        for bad in [
            "12345678",
            "123456789012",
            "0123456789",
            "85746o65432",
            "1e10",
        ] {
            let err = check_filter(ListFilterInput {
                meeting_id: Some(bad.into()),
                connection_id: None,
                ..ListFilterInput::default()
            });
            assert!(
                matches!(&err, Err(MeetingError::Invalid(f)) if f.contains_key("meeting_id")),
                "{bad}"
            );
        }
        let err = check_filter(ListFilterInput {
            meeting_id: None,
            connection_id: Some("zoa_abcdefghijklmnop".into()),
            ..ListFilterInput::default()
        });
        assert!(
            matches!(&err, Err(MeetingError::Invalid(f)) if f.contains_key("zoom_oauth_connection_id"))
        );
        let empty = check_filter(ListFilterInput {
            meeting_id: Some("".into()),
            connection_id: Some("  ".into()),
            ..ListFilterInput::default()
        })
        .expect("blank filters are no filters");
        assert!(empty.meeting_id.is_none() && empty.connection_id.is_none());
    }

    #[test]
    fn recurring_meetings_keep_no_start_time() {
        let t = "2021-07-13T21:44:51Z";
        assert!(indexed_start_time(Some(t), Some(2)).is_some());
        assert!(indexed_start_time(Some(t), None).is_some());
        assert!(indexed_start_time(Some(t), Some(8)).is_none());
        assert!(indexed_start_time(Some(t), Some(3)).is_none());
        assert!(indexed_start_time(Some("yesterday"), Some(2)).is_none());
    }

    #[test]
    fn topics_are_trimmed_and_bounded() {
        assert_eq!(clean_topic(Some("  ")), None);
        let long = "é".repeat(1000);
        assert_eq!(
            clean_topic(Some(&long)).map(|t| t.chars().count()),
            Some(MAX_TOPIC_CHARS)
        );
    }
}
