//! The connection state machine: how a connection's grant is connected, lost and
//! erased, and the one shape of what each change records.
//!
//! Every disconnect, every erase and the meaning of each final refresh error
//! (`invalid_grant`, `invalid_client`, `unauthorized_client`, …) lives here, with the
//! `zoom_oauth_connection.state_change` event each state change writes in the same
//! transaction. [`crate::domain::connections`] (the API's rules) and
//! [`crate::domain::tokens`] (leases and refreshes) both build on this module; it
//! depends on neither.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use zoom::{TokenGrant, ZoomError};

use crate::core::jitter;
use crate::core::vault::Slot;
use crate::storage::{
    AppRow, ConnectionRow, DisconnectOutcome, FailureData, NewConnectionEvent, NewOutboxEvent,
    OutboxSource, StoreError,
};
use crate::Keeper;

/// The outgoing-webhook trigger written on every state change.
pub const STATE_CHANGE_TRIGGER: &str = "zoom_oauth_connection.state_change";

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `connection_failure_data` as the API and webhooks show it.
pub fn failure_json(failure: &FailureData) -> Value {
    json!({
        "error": failure.error,
        "code": failure.code,
        "timestamp": rfc3339(failure.timestamp),
    })
}

/// The state-change event built from the row as a write left it: what every state
/// change passes to storage, so the payload can never be staler than the row.
pub struct StateChange;

impl OutboxSource for StateChange {
    fn event_for(&self, written: &ConnectionRow) -> NewOutboxEvent {
        state_change_event(written)
    }
}

/// The `zoom_oauth_connection.state_change` event for `row` as it is after the change
/// (Attendee's payload, without the `idempotency_key` each delivery adds). Every
/// state change builds its event here.
pub fn state_change_event(row: &ConnectionRow) -> NewOutboxEvent {
    NewOutboxEvent {
        trigger: STATE_CHANGE_TRIGGER.to_owned(),
        payload: json!({
            "trigger": STATE_CHANGE_TRIGGER,
            "zoom_oauth_connection_id": row.id,
            "zoom_oauth_connection_metadata": row.metadata,
            "user_id": row.user_id,
            "account_id": row.account_id,
            "data": {
                "state": row.state.as_str(),
                "connection_failure_data": row.connection_failure_data.as_ref().map(failure_json),
                "last_successful_sync_at": row.last_successful_sync_at.map(rfc3339),
                "last_attempted_sync_at": row.last_attempted_sync_at.map(rfc3339),
            },
        }),
    }
}

pub(crate) fn refresh_slot(id: &str) -> Slot<'_> {
    Slot::connection_refresh_token(id)
}

pub(crate) fn access_slot(id: &str) -> Slot<'_> {
    Slot::connection_access_token(id)
}

/// The app's client id and (opened) client secret, for calls to Zoom's OAuth
/// endpoints on behalf of its connections.
pub fn app_credentials(
    keeper: &Keeper,
    app: &AppRow,
) -> Result<zoom::AppCredentials, crate::core::vault::VaultError> {
    let client_secret = keeper
        .vault
        .open_str(Slot::app_client_secret(&app.id), &app.client_secret)?;
    Ok(zoom::AppCredentials {
        client_id: app.client_id.clone(),
        client_secret,
    })
}

/// When the token keeper must refresh a connection next: `max_age` from `now`, less
/// up to 10 % jitter so refreshes of connections made together spread out.
pub fn next_refresh_due(now: DateTime<Utc>, max_age: std::time::Duration) -> DateTime<Utc> {
    jitter::after(now, jitter::between(max_age - max_age / 10, max_age))
}

/// Expiry of an access token Zoom just gave us, counted from now.
pub fn access_token_expiry(now: DateTime<Utc>, grant: &TokenGrant) -> DateTime<Utc> {
    jitter::after(now, grant.expires_in)
}

/// Marks `row` disconnected with `failure`, erasing its tokens, with its event and
/// the state-change outbox row in one transaction. With `fence`, only while the
/// caller's lease is still current.
pub async fn disconnect(
    keeper: &Keeper,
    row: &ConnectionRow,
    fence: Option<i64>,
    failure: FailureData,
    event_kind: &str,
) -> Result<DisconnectOutcome, StoreError> {
    disconnect_with(keeper, row, fence, failure, event_kind, false).await
}

/// Like [`disconnect`], but keeps the sealed refresh token: Zoom refused the app's
/// credentials (`invalid_client`), not the user's grant, and a corrected client
/// secret brings the connection back ([`crate::domain::recheck::recheck_after_client_secret_change`]).
pub async fn disconnect_keeping_grant(
    keeper: &Keeper,
    row: &ConnectionRow,
    fence: Option<i64>,
    failure: FailureData,
) -> Result<DisconnectOutcome, StoreError> {
    disconnect_with(keeper, row, fence, failure, "disconnected", true).await
}

async fn disconnect_with(
    keeper: &Keeper,
    row: &ConnectionRow,
    fence: Option<i64>,
    failure: FailureData,
    event_kind: &str,
    keep_grant: bool,
) -> Result<DisconnectOutcome, StoreError> {
    let event = NewConnectionEvent {
        kind: event_kind.to_owned(),
        message: format!("Disconnected: {}", failure.error),
        data: Some(json!({"code": failure.code})),
    };
    let outcome = if keep_grant {
        keeper
            .store
            .disconnect_connection_keeping_grant(
                &row.id,
                fence,
                &failure,
                &event,
                Some(&StateChange),
            )
            .await?
    } else {
        keeper
            .store
            .disconnect_connection(&row.id, fence, &failure, &event, Some(&StateChange))
            .await?
    };
    if let DisconnectOutcome::Disconnected(_) = &outcome {
        tracing::warn!(
            connection_id = %row.id,
            code = %failure.code,
            grant_kept = keep_grant,
            "connection disconnected"
        );
    }
    Ok(outcome)
}

/// A connection kept after `invalid_client` (`claimed`, whose lease the caller
/// holds) turned out to have lost its grant too: it stays disconnected with
/// `failure` as the cause and its tokens are erased. No outbox row: the state does
/// not change. False when the lease was lost (logged and counted).
pub async fn erase_kept_grant(
    keeper: &Keeper,
    claimed: &ConnectionRow,
    failure: FailureData,
) -> Result<bool, StoreError> {
    let event = NewConnectionEvent {
        kind: "disconnected".to_owned(),
        message: format!(
            "Checked again under the app's new client secret: {}",
            failure.error
        ),
        data: Some(json!({"code": failure.code})),
    };
    let written = keeper
        .store
        .erase_disconnected_grant(&claimed.id, claimed.fence, &failure, &event)
        .await?;
    if written {
        tracing::warn!(connection_id = %claimed.id, code = %failure.code, "a kept grant is gone; its tokens are erased");
    } else {
        keeper.metrics.record_lease_conflict();
        tracing::warn!(connection_id = %claimed.id, "erasing a kept grant found another process had taken the connection over");
    }
    Ok(written)
}

/// What a final refresh error leaves of the user's grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Zoom refused the app's own credentials (`invalid_client`). It checks them
    /// before it looks at the refresh token, so the user's grant still stands: the
    /// refresh token is kept for a re-check under a corrected client secret.
    Kept,
    /// The grant is gone (`invalid_grant`, `unauthorized_client`, …): tokens are erased.
    Gone,
}

/// The `connection_failure_data.code` of connections disconnected because Zoom
/// refused the app's client credentials; they keep their grant, and
/// [`crate::domain::recheck`] retries them.
pub const BAD_CLIENT_SECRET: &str = "invalid_client";

/// Why a final refresh error disconnects, in words a person can act on, and whether
/// the user's grant survives it. `app_id`: the connection's app, named in the advice.
pub fn final_failure(e: &ZoomError, app_id: &str, now: DateTime<Utc>) -> (FailureData, Grant) {
    let (code, error, grant) = match e {
        ZoomError::GrantRevoked { code, reason } if code == BAD_CLIENT_SECRET => (
            code.clone(),
            format!(
                "Zoom refused the app's client credentials while refreshing the token ({code}: {reason}). The user's authorisation is kept: update the app's client secret (PATCH /api/v1/zoom_oauth_apps/{app_id}) and this connection is checked again and reconnected."
            ),
            Grant::Kept,
        ),
        ZoomError::GrantRevoked { code, reason } if code == "unauthorized_client" => (
            code.clone(),
            format!(
                "Zoom no longer allows the app to use this grant ({code}: {reason}). The user must authorise the app again."
            ),
            Grant::Gone,
        ),
        ZoomError::GrantRevoked { code, reason } => (
            code.clone(),
            format!(
                "Zoom refused to refresh the token ({code}: {reason}): the user removed the app or the grant expired. The user must authorise the app again."
            ),
            Grant::Gone,
        ),
        other => (
            other.zoom_code().unwrap_or(other.class()).to_owned(),
            format!("{} The user must authorise the app again.", other.description()),
            Grant::Gone,
        ),
    };
    (
        FailureData {
            error,
            code,
            timestamp: now,
        },
        grant,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::ConnectionState;

    fn revoked(code: &str) -> ZoomError {
        ZoomError::GrantRevoked {
            code: code.into(),
            reason: "Invalid Token!".into(),
        }
    }

    #[test]
    fn final_errors_are_described_without_secrets() {
        let (f, grant) = final_failure(&revoked("invalid_grant"), "zoa_x", Utc::now());
        assert_eq!(f.code, "invalid_grant");
        assert!(f.error.contains("authorise the app again"), "{}", f.error);
        assert_eq!(grant, Grant::Gone);
    }

    #[test]
    fn only_a_refused_client_secret_keeps_the_grant() {
        let (f, grant) = final_failure(&revoked("invalid_client"), "zoa_x", Utc::now());
        assert_eq!((f.code.as_str(), grant), (BAD_CLIENT_SECRET, Grant::Kept));
        assert!(f.error.contains("client secret"), "{}", f.error);
        assert!(
            f.error.contains("/api/v1/zoom_oauth_apps/zoa_x"),
            "{}",
            f.error
        );
        for gone in ["invalid_grant", "unauthorized_client"] {
            let (f, grant) = final_failure(&revoked(gone), "zoa_x", Utc::now());
            assert_eq!((f.code.as_str(), grant), (gone, Grant::Gone));
            assert!(f.error.contains("authorise the app again"), "{}", f.error);
        }
    }

    #[test]
    fn refresh_due_is_spread_within_ten_percent() {
        let now = Utc::now();
        let max = std::time::Duration::from_secs(1000);
        for _ in 0..100 {
            let due = next_refresh_due(now, max);
            let secs = (due - now).num_milliseconds();
            assert!((900_000..=1_000_000).contains(&secs), "{secs}");
        }
    }

    #[test]
    fn state_change_payload_has_attendees_shape() {
        let now = Utc::now();
        let row = ConnectionRow {
            id: "zoc_x".into(),
            project_id: "prj_x".into(),
            app_id: "zoa_x".into(),
            user_id: "u".into(),
            account_id: "a".into(),
            email: None,
            pmi: None,
            personal_meeting_url: None,
            state: ConnectionState::Disconnected,
            connection_failure_data: Some(FailureData {
                error: "gone".into(),
                code: "invalid_grant".into(),
                timestamp: now,
            }),
            metadata: Some(json!({"k": "v"})),
            deduplication_key: None,
            is_local_recording_token_supported: true,
            is_onbehalf_token_supported: false,
            scopes: vec![],
            refresh_token: None,
            access_token: None,
            access_token_expires_at: None,
            lease_owner: None,
            lease_until: None,
            fence: 0,
            refresh_due_at: None,
            last_attempted_sync_at: None,
            last_successful_sync_at: None,
            next_sync_at: None,
            last_successful_token_refresh_at: None,
            created_at: now,
            updated_at: now,
            sync_requested_at: None,
            access_token_callback_url: None,
            sync_pass_started_at: None,
            sync_users_done: None,
            sync_users_total: None,
        };
        let e = state_change_event(&row);
        assert_eq!(e.trigger, "zoom_oauth_connection.state_change");
        let p = &e.payload;
        assert_eq!(p["trigger"], "zoom_oauth_connection.state_change");
        assert_eq!(p["zoom_oauth_connection_id"], "zoc_x");
        assert_eq!(p["zoom_oauth_connection_metadata"]["k"], "v");
        assert_eq!(p["user_id"], "u");
        assert_eq!(p["account_id"], "a");
        assert_eq!(p["data"]["state"], "disconnected");
        assert_eq!(
            p["data"]["connection_failure_data"]["code"],
            "invalid_grant"
        );
        assert!(p["data"]["last_successful_sync_at"].is_null());
        assert!(p.get("idempotency_key").is_none());
    }
}
