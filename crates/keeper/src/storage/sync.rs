//! Write types of the meeting sync (DESIGN.md §6 "meeting sync"; issue 5). The
//! methods are on [`super::Store`]: `claim_due_syncs`, `complete_meeting_sync`,
//! `reschedule_meeting_sync`, and `connections_by_personal_link` for `/my/{vanity}`
//! links.
//!
//! The sync's claim is its own: claiming moves the connection's `next_sync_at` to
//! the end of the claim, and that value is the fence every write-back checks. The
//! refresh lease (`lease_owner`, `lease_until`, `fence`) is left alone, so a sync
//! never blocks or voids a token refresh — and the sync itself gets its tokens from
//! the broker, which needs that lease.

use chrono::{DateTime, Utc};

use super::NewConnectionEvent;

/// A meeting the sync found for the syncing connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedMeeting {
    /// A checked meeting number (9 to 11 digits).
    pub meeting_id: String,
    pub topic: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    /// Zoom's listing names the connection's user as the host (`host_id`). Only
    /// then may the row take over a `webhook` row of another connection.
    pub host_confirmed: bool,
}

/// A successful sync, committed in one transaction while the claim holds.
#[derive(Debug, Clone)]
pub struct CompletedSync {
    pub connection_id: String,
    /// `next_sync_at` as the claim set it: the fence.
    pub claim: DateTime<Utc>,
    /// Deduplicated by meeting id.
    pub meetings: Vec<SyncedMeeting>,
    /// The user's PMI (a checked meeting number), indexed as source `pmi` and
    /// stored on the connection; `None` leaves the PMI alone.
    pub pmi: Option<String>,
    pub personal_meeting_url: Option<String>,
    pub next_sync_at: DateTime<Utc>,
    pub event: NewConnectionEvent,
}

/// What `complete_meeting_sync` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncCommit {
    Committed {
        /// Rows of this connection written (inserted, refreshed or taken over).
        indexed: u64,
        /// Meetings left to another connection's `webhook` or `pmi` row.
        held_elsewhere: u64,
        /// This connection's `sync` rows Zoom no longer lists, deleted.
        removed: u64,
    },
    /// The claim was void (another sync, a re-bind or a disconnect moved
    /// `next_sync_at`, or the connection is gone or disconnected): nothing written.
    LostClaim,
}
