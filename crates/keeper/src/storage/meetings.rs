//! Row and change types for the meeting → host index and for Zoom webhook receipts
//! (DESIGN.md §3 `zoom_meeting`, `zoom_webhook_receipt`). The methods are on
//! [`super::Store`].
//!
//! Index rules both databases keep: one row per (app, meeting); a `pmi` row is never
//! overwritten by a `webhook` or `sync` row, nor dropped by a meeting deletion (a
//! meeting scheduled "with my PMI" carries the PMI as its id, and deleting that
//! meeting must not un-index the user's personal room).

use chrono::{DateTime, Utc};

/// Where an index row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeetingSource {
    /// A `meeting.created` webhook.
    Webhook,
    /// The meeting sync (issue 5, later).
    Sync,
    /// The connection's personal meeting ID.
    Pmi,
}

impl MeetingSource {
    pub fn as_str(self) -> &'static str {
        match self {
            MeetingSource::Webhook => "webhook",
            MeetingSource::Sync => "sync",
            MeetingSource::Pmi => "pmi",
        }
    }

    pub fn parse(s: &str) -> Option<MeetingSource> {
        match s {
            "webhook" => Some(MeetingSource::Webhook),
            "sync" => Some(MeetingSource::Sync),
            "pmi" => Some(MeetingSource::Pmi),
            _ => None,
        }
    }
}

/// One meeting and the connection that hosts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingRow {
    pub project_id: String,
    pub app_id: String,
    /// Zoom's meeting number as text (9 to 11 digits; checked by the domain).
    pub meeting_id: String,
    pub connection_id: String,
    pub source: MeetingSource,
    pub topic: Option<String>,
    /// `None` for meetings without a fixed time (PMI, recurring without a time) and
    /// for recurring meetings, whose first occurrence says nothing about the next.
    pub start_time: Option<DateTime<Utc>>,
    pub synced_at: DateTime<Utc>,
}

/// Filters of `GET /api/v1/zoom_meetings`; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct MeetingFilter {
    pub meeting_id: Option<String>,
    pub connection_id: Option<String>,
}

/// A change to the index, applied alone ([`super::Store::apply_meeting_change`]) or
/// together with a webhook receipt in one transaction
/// ([`super::Store::record_webhook_receipt_and_apply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeetingIndexChange {
    /// Index the meeting, or re-point an existing (app, meeting) row to this
    /// connection (except a `pmi` row, which only another `pmi` row replaces).
    /// `StoreError::NotFound` when the connection no longer exists.
    Upsert(MeetingRow),
    /// [`Upsert`](Self::Upsert), provided the row's connection still belongs to
    /// Zoom user `user_id` and is still `state`, as when the host was chosen
    /// (perhaps from a cache): `StoreError::NotFound` when it is gone or changed, so
    /// the caller can choose again.
    UpsertIfHost {
        row: MeetingRow,
        user_id: String,
        state: super::ConnectionState,
    },
    /// Drop (app, meeting) from the index, unless it is a `pmi` row.
    Delete { app_id: String, meeting_id: String },
    /// The connection's PMI is now `row.meeting_id`: its other `pmi` rows go, `row`
    /// (source `pmi`) is indexed, and the connection's stored `pmi` (and
    /// `personal_meeting_url`, when given) change. `StoreError::NotFound` when the
    /// connection no longer exists.
    ReplacePmi {
        row: MeetingRow,
        personal_meeting_url: Option<String>,
    },
    /// Only the receipt (the change itself was made by a separate write).
    Nothing,
}

/// What `record_webhook_receipt_and_apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// The receipt is new; the change was applied with it.
    Applied,
    /// The event was received before; nothing changed.
    Duplicate,
}

/// Which of an app's webhook timestamps to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookVerification {
    /// `last_verified_webhook_received_at`.
    Verified,
    /// `last_unverified_webhook_received_at`.
    Unverified,
}

/// The cursor id of an index row: `{app_id}_{meeting_id}` (app ids contain `_`,
/// meeting numbers never do).
pub fn meeting_cursor_id(app_id: &str, meeting_id: &str) -> String {
    format!("{app_id}_{meeting_id}")
}

/// `(app_id, meeting_id)` from a cursor id made by [`meeting_cursor_id`], if it is
/// one: an app id (`zoa_…`) and a meeting number. The API checks cursors with this
/// before a query sees them (a bad one is a 400).
pub fn parse_meeting_cursor_id(id: &str) -> Option<(&str, &str)> {
    id.rsplit_once('_').filter(|(app, meeting)| {
        crate::core::ids::IdKind::App.matches(app)
            && !meeting.is_empty()
            && meeting.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// `(app_id, meeting_id)` from a cursor made by [`meeting_cursor_id`]. Only reached
/// with a cursor the API has already checked with [`parse_meeting_cursor_id`].
pub(super) fn meeting_cursor_key(cursor: &super::Cursor) -> super::StoreResult<(String, String)> {
    parse_meeting_cursor_id(&cursor.id)
        .map(|(app, meeting)| (app.to_owned(), meeting.to_owned()))
        .ok_or_else(|| {
            super::StoreError::Database(sqlx::Error::InvalidArgument(format!(
                "meeting cursor id {:?} is not app_meeting",
                cursor.id
            )))
        })
}

pub(super) fn parse_source(s: &str) -> super::StoreResult<MeetingSource> {
    MeetingSource::parse(s)
        .ok_or_else(|| super::connections::decode_error(format!("unknown meeting source {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_ids_split_back_into_app_and_meeting() {
        let cursor = super::super::Cursor {
            created_at: Utc::now(),
            id: meeting_cursor_id("zoa_abcdefghijklmnop", "85746065432"),
            direction: super::super::Direction::Older,
        };
        assert_eq!(
            meeting_cursor_key(&cursor).expect("splits"),
            ("zoa_abcdefghijklmnop".to_owned(), "85746065432".to_owned())
        );
        let bad = super::super::Cursor {
            id: "nounderscore".to_owned(),
            ..cursor
        };
        assert!(meeting_cursor_key(&bad).is_err());
    }

    #[test]
    fn sources_round_trip() {
        for s in [
            MeetingSource::Webhook,
            MeetingSource::Sync,
            MeetingSource::Pmi,
        ] {
            assert_eq!(MeetingSource::parse(s.as_str()), Some(s));
        }
        assert_eq!(MeetingSource::parse("other"), None);
    }
}
