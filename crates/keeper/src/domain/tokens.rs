//! The token broker: hands out a connection's Zoom access token (and the ZAK and
//! onbehalf tokens minted with it), refreshing the grant when needed (DESIGN.md §4
//! "Tokens", §5, §6).
//!
//! The rules kept here, and only here:
//! - a cached access token valid for at least [`MIN_VALIDITY`] is returned without
//!   calling Zoom;
//! - a refresh is exclusive per connection across processes (the lease and its
//!   fence) and single-flight inside one process (a per-connection async mutex);
//! - the rotated refresh token is committed before the new access token is handed
//!   to anyone;
//! - what a refresh failure means: a final error (`invalid_grant`, `invalid_client`,
//!   `unauthorized_client`, or code 124 for a token Zoom has just issued) disconnects
//!   the connection; anything else releases the lease for a retry with backoff (a 429
//!   also pauses the Zoom account's background work);
//! - `invalid_client` is the app's credentials, not the user's grant: the refresh
//!   token is kept, and a new client secret re-checks those connections
//!   ([`crate::domain::recheck`]).
//!
//! The token keeper ([`crate::workers::token_keeper`]) refreshes through [`TokenBroker::refresh_claimed`],
//! the same code path as on-demand refreshes.
//!
//! A customer-managed connection ([`crate::domain::token_callbacks`]) gets its tokens
//! from its `access_token_callback_url` instead, through the same lease and single
//! flight: it is never refreshed or revoked at Zoom (we hold no grant), never claimed
//! by the token keeper, and never disconnected because its callback failed or gave a
//! token Zoom rejected — the request fails with [`TokenError::CallbackFailed`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use zoom::meeting_url::is_meeting_number;
use zoom::{UserTokenType, ZoomError};

use crate::core::ids::IdKind;
use crate::core::jitter;
use crate::domain::grant::{self, access_slot, refresh_slot, Grant, BAD_CLIENT_SECRET};
use crate::domain::token_callbacks;
use crate::storage::{
    ConnectionRow, ConnectionState, DisconnectOutcome, FailureData, NewConnectionEvent,
    RefreshedTokens, Sealed,
};
use crate::Keeper;

/// A handed-out access token is good for at least this much longer.
pub const MIN_VALIDITY: Duration = Duration::from_secs(120);
/// The longest a request waits for a refresh running elsewhere (another process's
/// lease, or this process's refresh of the same connection) before answering
/// [`TokenError::Busy`] (503 with `Retry-After`).
pub const LEASE_WAIT: Duration = Duration::from_secs(5);
/// How long a refresh that Zoom refused waits for a concurrent re-authorisation's
/// write before it disconnects the connection.
const REAUTHORISATION_GRACE: Duration = Duration::from_secs(3);
/// Zoom's REST code for an access token revoked by a newer authorisation of the
/// same user (the user's grant lives on in the newer one).
const SUPERSEDED_BY_NEWER_AUTHORISATION: &str = "4741";
/// How often a request polls a connection whose lease another process holds.
const POLL_EVERY: Duration = Duration::from_millis(75);
/// Pause between attempts to commit refreshed tokens when the database fails:
/// losing them would lose the connection, so they are retried while the lease is
/// held.
const WRITE_BACK_RETRY: Duration = Duration::from_millis(200);
/// A connection whose refresh token cannot be opened is retried this much later.
const BROKEN_RETRY: Duration = Duration::from_secs(3600);

/// How long an access token must outlive the start of a meeting its connection
/// hosts, so a bot joining a little late still gets a token without a refresh.
pub const MEETING_TOKEN_MARGIN: Duration = Duration::from_secs(5 * 60);

/// When a connection's refresh is due at `now` — the one statement of the rule; the
/// token keeper's claim ([`crate::storage::LeaseStore::claim_due_refreshes`]) only
/// compares with these values: its `refresh_due_at` is not after `due_by` (or was
/// never set), or it hosts an indexed meeting starting between `due_by` and
/// `meetings_until` that its access token (if any) does not outlive by
/// `token_margin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshDue {
    pub due_by: DateTime<Utc>,
    pub meetings_until: DateTime<Utc>,
    pub token_margin: Duration,
}

/// The [`RefreshDue`] thresholds at `now`, looking `ahead_of_meetings` ahead.
pub fn refresh_due(now: DateTime<Utc>, ahead_of_meetings: Duration) -> RefreshDue {
    let ahead = chrono::Duration::from_std(ahead_of_meetings).unwrap_or(chrono::Duration::MAX);
    RefreshDue {
        due_by: now,
        meetings_until: now
            .checked_add_signed(ahead)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
        token_margin: MEETING_TOKEN_MARGIN,
    }
}

/// A Zoom access token and when it expires.
#[derive(Clone)]
pub struct AccessToken {
    pub token: SecretString,
    pub expires_at: DateTime<Utc>,
    /// True when this call refreshed the grant to get it.
    pub refreshed: bool,
    /// The sealed form it was read from or written as (to recognise it later).
    sealed: Option<Sealed>,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("refreshed", &self.refreshed)
            .finish()
    }
}

/// Which user token to mint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserToken {
    Zak,
    OnBehalf { meeting_id: Option<String> },
}

impl UserToken {
    fn kind(&self) -> &'static str {
        match self {
            UserToken::Zak => "zak_token",
            UserToken::OnBehalf { .. } => "onbehalf_token",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    #[error("no such connection in this project")]
    NotFound,
    /// The connection is disconnected; carries why, when known.
    #[error("the connection is disconnected")]
    Disconnected(Option<FailureData>),
    #[error("the connection does not have the {0} capability")]
    CapabilityNotEnabled(&'static str),
    #[error("meeting_id must be a Zoom meeting number: 9 to 11 digits")]
    InvalidMeetingId,
    /// Zoom knows no such user in the account of the account-level connection.
    #[error("the Zoom user is not a user of this connection's account")]
    UserNotInAccount,
    /// Zoom asked us to slow down; try again after `retry_after`.
    #[error("Zoom rate limit reached")]
    RateLimited { retry_after: Duration },
    /// Zoom was unreachable, timed out or failed.
    #[error("Zoom is unavailable: {0}")]
    ZoomUnavailable(String),
    /// Zoom refused a token call for a reason that is not a revoked grant (scrubbed
    /// sentence from the Zoom error).
    #[error("{0}")]
    ZoomRefused(String),
    /// Another process held the refresh lease for a whole lease length.
    #[error("the connection is being refreshed elsewhere")]
    Busy,
    /// A refresh's write-back found that another process took the lease over.
    #[error("another process took over the refresh")]
    LostFence,
    /// A customer-managed connection's `access_token_callback_url` gave no usable
    /// token. A sentence naming what the customer must fix; no URL, no token.
    #[error("{0}")]
    CallbackFailed(String),
    /// Logged where it happened; the text carries no secret.
    #[error("internal error: {0}")]
    Internal(String),
}

impl TokenError {
    /// Worth sharing with callers already waiting on the same refresh.
    fn is_temporary(&self) -> bool {
        matches!(
            self,
            TokenError::RateLimited { .. }
                | TokenError::ZoomUnavailable(_)
                | TokenError::CallbackFailed(_)
        )
    }

    /// A stable label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            TokenError::NotFound => "not_found",
            TokenError::Disconnected(_) => "connection_disconnected",
            TokenError::CapabilityNotEnabled(_) => "capability_not_enabled",
            TokenError::InvalidMeetingId => "invalid_meeting_id",
            TokenError::UserNotInAccount => "user_not_in_account",
            TokenError::RateLimited { .. } => "zoom_rate_limited",
            TokenError::ZoomUnavailable(_) => "zoom_unavailable",
            TokenError::ZoomRefused(_) => "zoom_refused",
            TokenError::Busy | TokenError::LostFence => "busy",
            TokenError::CallbackFailed(_) => "callback_failed",
            TokenError::Internal(_) => "internal_error",
        }
    }
}

fn internal(context: &str, e: impl std::fmt::Display) -> TokenError {
    tracing::error!(error = %e, "{context}");
    TokenError::Internal(context.to_owned())
}

/// Why a call made through [`TokenBroker::with_access_token`] failed.
#[derive(Debug, Clone)]
pub enum BrokeredCallError {
    /// No usable token could be had (disconnected — possibly just now —, refresh
    /// failed, lease busy, …).
    Token(TokenError),
    /// The call itself failed at Zoom (not an access-token rejection).
    Zoom(ZoomError),
}

/// One in-process refresh at a time per connection. Holds the last temporary
/// failure so callers that queued behind a failing refresh share its answer instead
/// of each trying Zoom again.
#[derive(Default)]
struct Flight {
    lock: tokio::sync::Mutex<Option<(Instant, TokenError)>>,
}

/// A claimed lease kept alive while its holder works: renewed (fenced) every third
/// of its length until dropped. Knows until when the lease is surely held, so work
/// that must not outlive it (the write-back's retries) can stop in time.
pub struct LeaseHold {
    held_until: Arc<Mutex<Instant>>,
    renewer: tokio::task::JoinHandle<()>,
}

impl LeaseHold {
    /// Renews `claimed`'s lease now, then keeps renewing it; `None` when the lease is
    /// already lost (another process claimed the connection since).
    pub async fn take(keeper: &Keeper, claimed: &ConnectionRow) -> Result<LeaseHold, TokenError> {
        let lease = keeper.config.token_lease_duration;
        let renewed_at = Instant::now();
        match keeper
            .store
            .renew_connection_lease(&claimed.id, claimed.fence, lease)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                keeper.metrics.record_lease_conflict();
                tracing::warn!(connection_id = %claimed.id, "a claimed lease was lost before its work began; another process has the connection");
                return Err(TokenError::LostFence);
            }
            Err(e) => return Err(internal("renewing a connection's lease", e)),
        }
        let held_until = Arc::new(Mutex::new(renewed_at + lease));
        let renewer = {
            let store = Arc::clone(&keeper.store);
            let held_until = Arc::clone(&held_until);
            let id = claimed.id.clone();
            let fence = claimed.fence;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    let asked_at = Instant::now();
                    match store.renew_connection_lease(&id, fence, lease).await {
                        Ok(true) => {
                            *held_until.lock().unwrap_or_else(|p| p.into_inner()) =
                                asked_at + lease;
                        }
                        Ok(false) => return,
                        // The next renewal may go through; `held_until` stays put.
                        Err(e) => {
                            tracing::warn!(connection_id = %id, error = %e, "renewing a connection's lease failed")
                        }
                    }
                }
            })
        };
        Ok(LeaseHold {
            held_until,
            renewer,
        })
    }

    /// True while the lease is surely still this holder's.
    fn held(&self) -> bool {
        Instant::now() < *self.held_until.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for LeaseHold {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// The broker's in-process state; one per [`Keeper`].
pub struct TokenBroker {
    owner: String,
    flights: Mutex<HashMap<String, Arc<Flight>>>,
}

impl Default for TokenBroker {
    fn default() -> Self {
        TokenBroker::new()
    }
}

/// `POST …/{id}/access_token`: a token valid for at least [`MIN_VALIDITY`].
pub async fn access_token(
    keeper: &Arc<Keeper>,
    project_id: &str,
    id: &str,
) -> Result<AccessToken, TokenError> {
    keeper.tokens.access_token(keeper, project_id, id).await
}

/// `POST …/{id}/zak_token` and `…/onbehalf_token`: a token minted by Zoom with
/// the connection's access token. If Zoom rejects an access token we believed
/// valid (code 124), the grant is refreshed once and the call retried; a
/// rejection of a token Zoom has just issued means the grant is gone.
pub async fn user_token(
    keeper: &Arc<Keeper>,
    project_id: &str,
    id: &str,
    which: UserToken,
) -> Result<SecretString, TokenError> {
    keeper
        .tokens
        .user_token(keeper, project_id, id, which, None)
        .await
}

/// An onbehalf token or a ZAK of Zoom user `user_id`, another user of the account
/// of account-level connection `id`, minted with that connection's (an admin's)
/// grant through `GET /users/{userId}/token` (DESIGN.md §15). Zoom answers
/// [`TokenError::NotFound`]-like 404s for a user outside the account: the caller
/// tries the app's next account connection.
pub async fn user_token_of(
    keeper: &Arc<Keeper>,
    project_id: &str,
    id: &str,
    user_id: &str,
    which: UserToken,
) -> Result<SecretString, TokenError> {
    keeper
        .tokens
        .user_token(keeper, project_id, id, which, Some(user_id))
        .await
}

/// Runs `call` with an access token of connection `row` (cached, or refreshed
/// under the lease). If Zoom rejects a token we believed valid (code 124), the
/// grant is refreshed once and the call retried; a rejection of a token Zoom
/// has just issued means the grant is gone, and the connection is disconnected.
/// Every Zoom call made with a connection's token goes through here.
pub async fn with_access_token<T, F, Fut>(
    keeper: &Arc<Keeper>,
    row: &ConnectionRow,
    call: F,
) -> Result<T, BrokeredCallError>
where
    F: FnMut(SecretString) -> Fut,
    Fut: std::future::Future<Output = Result<T, ZoomError>>,
{
    keeper.tokens.with_access_token(keeper, row, call).await
}

/// Refreshes a connection whose lease this process holds (`claimed` carries the
/// fence), writes the rotated tokens back under that fence, and releases the
/// lease in every outcome. The one place that decides what a refresh failure
/// means.
pub async fn refresh_claimed(
    keeper: &Keeper,
    claimed: &ConnectionRow,
) -> Result<AccessToken, TokenError> {
    keeper.tokens.refresh_claimed(keeper, claimed).await
}

/// Before a background Zoom call for `claimed` (whose lease this process holds):
/// waits for a slot of its Zoom account ([`crate::core::zoom_account_limits`]), as long
/// as the lease leaves time for the call. When the account's next slot is
/// further away, hands the connection back for then and returns false.
pub async fn take_account_slot(keeper: &Keeper, claimed: &ConnectionRow) -> bool {
    keeper.tokens.take_account_slot(keeper, claimed).await
}

impl TokenBroker {
    pub fn new() -> TokenBroker {
        TokenBroker {
            owner: process_owner_id(),
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// This process's lease owner id: `host:pid:random`.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn flight(&self, id: &str) -> Arc<Flight> {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        flights.entry(id.to_owned()).or_default().clone()
    }

    /// Drops the flight from the map once nobody else holds it.
    fn done_with(&self, id: &str, flight: Arc<Flight>) {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        // Two holders: the map and us.
        if Arc::strong_count(&flight) <= 2 {
            flights.remove(id);
        }
    }

    /// See [`access_token`].
    async fn access_token(
        &self,
        keeper: &Arc<Keeper>,
        project_id: &str,
        id: &str,
    ) -> Result<AccessToken, TokenError> {
        let result = async {
            let row = self.read_scoped(keeper, project_id, id).await?;
            self.token_for(keeper, &row, None).await
        }
        .await;
        keeper.metrics.record_token_request(
            "access_token",
            match &result {
                Ok(t) if t.refreshed => "refreshed",
                Ok(_) => "cached",
                Err(e) => e.outcome(),
            },
        );
        result
    }

    /// See [`user_token`].
    async fn user_token(
        &self,
        keeper: &Arc<Keeper>,
        project_id: &str,
        id: &str,
        which: UserToken,
        of_user: Option<&str>,
    ) -> Result<SecretString, TokenError> {
        let kind = which.kind();
        let result = self
            .user_token_inner(keeper, project_id, id, which, of_user)
            .await;
        keeper.metrics.record_token_request(
            kind,
            match &result {
                Ok(_) => "minted",
                Err(e) => e.outcome(),
            },
        );
        result
    }

    async fn user_token_inner(
        &self,
        keeper: &Arc<Keeper>,
        project_id: &str,
        id: &str,
        which: UserToken,
        of_user: Option<&str>,
    ) -> Result<SecretString, TokenError> {
        let token_type = match &which {
            UserToken::Zak => UserTokenType::Zak,
            UserToken::OnBehalf { meeting_id } => {
                if let Some(m) = meeting_id {
                    if !is_meeting_number(m) {
                        return Err(TokenError::InvalidMeetingId);
                    }
                }
                UserTokenType::OnBehalf {
                    meeting_id: meeting_id.clone(),
                }
            }
        };
        let row = self.read_scoped(keeper, project_id, id).await?;
        if row.state == ConnectionState::Disconnected {
            return Err(TokenError::Disconnected(row.connection_failure_data));
        }
        if matches!(which, UserToken::OnBehalf { .. }) && !row.is_onbehalf_token_supported {
            return Err(TokenError::CapabilityNotEnabled("onbehalf"));
        }
        // A ZAK comes from whichever endpoint the grant's scopes open (Zoom's scope
        // table): `type=zak` needs user:read:token or user:read, `/users/me/zak`
        // needs user:read:zak or user_zak:read.
        let via_me_zak = of_user.is_none()
            && token_type == UserTokenType::Zak
            && zoom::scopes::zak_endpoint(&row.scopes) == zoom::scopes::ZakEndpoint::MeZak;
        let token_type = &token_type;
        self.with_access_token(keeper, &row, |token| async move {
            match of_user {
                Some(user) => keeper.zoom.user_token_of(&token, user, token_type).await,
                None if via_me_zak => keeper.zoom.zak(&token).await,
                None => keeper.zoom.user_token(&token, token_type).await,
            }
        })
        .await
        .map_err(|e| match e {
            BrokeredCallError::Token(e) => e,
            BrokeredCallError::Zoom(ZoomError::NotFound { .. }) if of_user.is_some() => {
                TokenError::UserNotInAccount
            }
            BrokeredCallError::Zoom(e) => zoom_call_error(e),
        })
    }

    /// See [`with_access_token`].
    async fn with_access_token<T, F, Fut>(
        &self,
        keeper: &Arc<Keeper>,
        row: &ConnectionRow,
        mut call: F,
    ) -> Result<T, BrokeredCallError>
    where
        F: FnMut(SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<T, ZoomError>>,
    {
        let mut access = self
            .token_for(keeper, row, None)
            .await
            .map_err(BrokeredCallError::Token)?;
        let mut retried = false;
        let mut waited_for_reauthorisation = false;
        loop {
            match call(access.token.clone()).await {
                Ok(value) => return Ok(value),
                Err(ZoomError::AccessTokenRejected { code, .. })
                    if row.access_token_callback_url.is_some() =>
                {
                    // The customer holds the grant: ask its callback once more; a
                    // second rejection is the callback's to fix, not a lost grant.
                    if retried {
                        return Err(BrokeredCallError::Token(TokenError::CallbackFailed(
                            token_callbacks::failure_sentence(&format!(
                                "Zoom rejected the access token it returned (Zoom code {code}); it must return a current access token of the user"
                            )),
                        )));
                    }
                    retried = true;
                    let current = self
                        .read_scoped(keeper, &row.project_id, &row.id)
                        .await
                        .map_err(BrokeredCallError::Token)?;
                    access = self
                        .token_for(keeper, &current, access.sealed.as_ref())
                        .await
                        .map_err(BrokeredCallError::Token)?;
                }
                Err(ZoomError::AccessTokenRejected { code, .. }) => {
                    if (access.refreshed || retried) && !waited_for_reauthorisation {
                        // A re-authorisation of the user kills the tokens it replaces
                        // before its create stores the new grant: wait for that write
                        // before concluding anything, then try once more.
                        waited_for_reauthorisation = true;
                        if self
                            .token_replaced_meanwhile(keeper, &row.id, access.sealed.as_ref())
                            .await
                        {
                            let current = self
                                .read_scoped(keeper, &row.project_id, &row.id)
                                .await
                                .map_err(BrokeredCallError::Token)?;
                            access = self
                                .token_for(keeper, &current, access.sealed.as_ref())
                                .await
                                .map_err(BrokeredCallError::Token)?;
                            access.refreshed = true;
                            continue;
                        }
                    }
                    if access.refreshed || retried {
                        if code == SUPERSEDED_BY_NEWER_AUTHORISATION {
                            // The user authorised the app again: their grant is not gone,
                            // the newer one is on its way (or its create failed and the
                            // next refresh finds out). Not ours to end.
                            return Err(BrokeredCallError::Token(TokenError::Busy));
                        }
                        // Zoom refuses a token it has just issued: the grant is gone.
                        let failure = FailureData {
                            error: format!("Zoom rejected an access token it had just issued (code {code}). The user must authorise the app again."),
                            code: "access_token_rejected".to_owned(),
                            timestamp: keeper.clock.now(),
                        };
                        return Err(BrokeredCallError::Token(
                            self.disconnect_now(keeper, &row.id, access.sealed.as_ref(), failure)
                                .await,
                        ));
                    }
                    retried = true;
                    let current = self
                        .read_scoped(keeper, &row.project_id, &row.id)
                        .await
                        .map_err(BrokeredCallError::Token)?;
                    access = self
                        .token_for(keeper, &current, access.sealed.as_ref())
                        .await
                        .map_err(BrokeredCallError::Token)?;
                    // A token read after the forced refresh counts as just issued.
                    access.refreshed = true;
                }
                Err(e) => return Err(BrokeredCallError::Zoom(e)),
            }
        }
    }

    async fn read_scoped(
        &self,
        keeper: &Keeper,
        project_id: &str,
        id: &str,
    ) -> Result<ConnectionRow, TokenError> {
        if !IdKind::Connection.matches(id) {
            return Err(TokenError::NotFound);
        }
        keeper
            .store
            .get_connection(project_id, id)
            .await
            .map_err(|e| internal("reading a connection", e))?
            .ok_or(TokenError::NotFound)
    }

    /// Disconnects connection `id` because Zoom rejected `rejected`, an access token
    /// it had just issued — under the connection's lease, and only if the
    /// connection still holds that token: a user who authorised the app again
    /// meanwhile has a new grant, which must not be erased.
    async fn disconnect_now(
        &self,
        keeper: &Keeper,
        id: &str,
        rejected: Option<&Sealed>,
        failure: FailureData,
    ) -> TokenError {
        let claimed = match keeper
            .store
            .claim_connection_lease(id, &self.owner, keeper.config.token_lease_duration)
            .await
        {
            Ok(Some(claimed)) => claimed,
            // Disconnected already, gone, or being refreshed elsewhere: not ours to end.
            Ok(None) => {
                return match keeper.store.connection_by_id(id).await {
                    Ok(Some(row)) if row.state == ConnectionState::Disconnected => {
                        TokenError::Disconnected(row.connection_failure_data)
                    }
                    Ok(Some(_)) => TokenError::Busy,
                    Ok(None) => TokenError::NotFound,
                    Err(e) => internal("reading a connection to disconnect it", e),
                }
            }
            Err(e) => return internal("claiming a connection's lease to disconnect it", e),
        };
        if rejected.is_none() || claimed.access_token.as_ref() != rejected {
            self.release(keeper, &claimed, None).await;
            return TokenError::Busy;
        }
        match grant::disconnect(
            keeper,
            &claimed,
            Some(claimed.fence),
            failure.clone(),
            "disconnected",
        )
        .await
        {
            Ok(DisconnectOutcome::Disconnected(_)) => TokenError::Disconnected(Some(failure)),
            // Another process took the connection over: it decides.
            Ok(DisconnectOutcome::Unchanged) => TokenError::Busy,
            Ok(DisconnectOutcome::NotFound) => TokenError::NotFound,
            Err(e) => {
                self.release(keeper, &claimed, None).await;
                internal("disconnecting a connection", e)
            }
        }
    }

    /// The cached token when usable, else a refreshed one. `rejected`: a sealed
    /// token Zoom refused, which does not count as usable.
    ///
    /// The refresh runs in a task of its own that owns what it needs: once Zoom has
    /// rotated the refresh token, the new one must be committed even if the caller
    /// goes away (a client disconnect drops the request's future), or the
    /// connection is lost and its lease stays held.
    async fn token_for(
        &self,
        keeper: &Arc<Keeper>,
        row: &ConnectionRow,
        rejected: Option<&Sealed>,
    ) -> Result<AccessToken, TokenError> {
        if row.state == ConnectionState::Disconnected {
            return Err(TokenError::Disconnected(
                row.connection_failure_data.clone(),
            ));
        }
        if let Some(token) = usable(keeper, row, rejected) {
            return Ok(token);
        }
        let arrived = Instant::now();
        let task_keeper = Arc::clone(keeper);
        let id = row.id.clone();
        let rejected = rejected.cloned();
        let seen = row.access_token.clone();
        tokio::spawn(async move {
            let wanted = Wanted {
                rejected: rejected.as_ref(),
                seen: seen.as_ref(),
                arrived,
            };
            task_keeper
                .tokens
                .refresh_single_flight(&task_keeper, &id, &wanted)
                .await
        })
        .await
        .unwrap_or_else(|e| Err(internal("a token refresh task failed", e)))
    }

    /// One refresh at a time per connection in this process; callers that arrived
    /// before a temporary failure share it. Runs inside the task [`Self::token_for`]
    /// spawns.
    async fn refresh_single_flight(
        &self,
        keeper: &Keeper,
        id: &str,
        wanted: &Wanted<'_>,
    ) -> Result<AccessToken, TokenError> {
        let flight = self.flight(id);
        let result = 'flight: {
            // Queued behind this process's refresh of the same connection for as long
            // as a request waits on another process's lease.
            let Ok(mut last_failure) = tokio::time::timeout_at(
                tokio::time::Instant::from_std(wanted.arrived + LEASE_WAIT),
                flight.lock.lock(),
            )
            .await
            else {
                break 'flight Err(TokenError::Busy);
            };
            match &*last_failure {
                // A refresh that failed while we queued: share its answer.
                Some((at, error)) if *at >= wanted.arrived => Err(error.clone()),
                _ => {
                    let result = self.refresh_exclusive(keeper, id, wanted).await;
                    *last_failure = match &result {
                        Err(e) if e.is_temporary() => Some((Instant::now(), e.clone())),
                        _ => None,
                    };
                    result
                }
            }
        };
        self.done_with(id, flight);
        result
    }

    /// Refreshes under the connection's lease, or waits (up to [`LEASE_WAIT`] from
    /// the request's arrival) for whoever holds it.
    async fn refresh_exclusive(
        &self,
        keeper: &Keeper,
        id: &str,
        wanted: &Wanted<'_>,
    ) -> Result<AccessToken, TokenError> {
        let rejected = wanted.rejected;
        let give_up_at = wanted.arrived + LEASE_WAIT;
        let lease = keeper.config.token_lease_duration;
        let mut retried_lost_fence = false;
        loop {
            let row = keeper
                .store
                .connection_by_id(id)
                .await
                .map_err(|e| internal("reading a connection", e))?
                .ok_or(TokenError::NotFound)?;
            if row.state == ConnectionState::Disconnected {
                return Err(TokenError::Disconnected(row.connection_failure_data));
            }
            if let Some(token) = usable(keeper, &row, rejected) {
                return Ok(token);
            }
            // A refresh done elsewhere while we waited is the one we waited for, even
            // when Zoom's tokens live less than MIN_VALIDITY.
            if let Some(token) = refreshed_since(keeper, &row, wanted) {
                return Ok(token);
            }
            let claimed = keeper
                .store
                .claim_connection_lease(id, &self.owner, lease)
                .await
                .map_err(|e| internal("claiming a connection's lease", e))?;
            let Some(claimed) = claimed else {
                // Another process is refreshing (or the row changed): wait and look again.
                if Instant::now() >= give_up_at {
                    return Err(TokenError::Busy);
                }
                tokio::time::sleep(POLL_EVERY).await;
                continue;
            };
            // Someone may have refreshed between our read and our claim.
            if let Some(token) = usable(keeper, &claimed, rejected)
                .or_else(|| refreshed_since(keeper, &claimed, wanted))
            {
                self.release(keeper, &claimed, None).await;
                return Ok(token);
            }
            match self.refresh_claimed(keeper, &claimed).await {
                Err(TokenError::LostFence) if !retried_lost_fence => {
                    retried_lost_fence = true;
                    continue;
                }
                Err(TokenError::LostFence) => return Err(TokenError::Busy),
                other => return other,
            }
        }
    }

    async fn release(
        &self,
        keeper: &Keeper,
        claimed: &ConnectionRow,
        retry_at: Option<DateTime<Utc>>,
    ) {
        match keeper
            .store
            .release_connection_lease(&claimed.id, claimed.fence, retry_at)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                keeper.metrics.record_lease_conflict();
                tracing::warn!(connection_id = %claimed.id, "releasing a lease found another process had taken it over");
            }
            // The lease expires on its own.
            Err(e) => {
                tracing::warn!(connection_id = %claimed.id, error = %e, "releasing a connection's lease failed")
            }
        }
    }

    /// See [`refresh_claimed`].
    async fn refresh_claimed(
        &self,
        keeper: &Keeper,
        claimed: &ConnectionRow,
    ) -> Result<AccessToken, TokenError> {
        // Renewed first (a claim may have waited in a batch) and while Zoom answers.
        let result = match LeaseHold::take(keeper, claimed).await {
            Ok(hold) => self.refresh_claimed_inner(keeper, claimed, &hold).await,
            Err(e) => Err(e),
        };
        keeper.metrics.record_refresh(match &result {
            Ok(_) => "success",
            Err(TokenError::Disconnected(_)) => "disconnected",
            Err(TokenError::LostFence) => "lost_fence",
            Err(e) if e.is_temporary() => "temporary_failure",
            Err(_) => "error",
        });
        result
    }

    async fn refresh_claimed_inner(
        &self,
        keeper: &Keeper,
        claimed: &ConnectionRow,
        hold: &LeaseHold,
    ) -> Result<AccessToken, TokenError> {
        if let Some(url) = token_callbacks::open_url(keeper, claimed) {
            return self.fetch_claimed(keeper, claimed, url).await;
        }
        let broken_retry = || {
            Some(keeper.clock.now() + chrono::Duration::from_std(BROKEN_RETRY).unwrap_or_default())
        };
        let app = match keeper
            .store
            .get_app(&claimed.project_id, &claimed.app_id)
            .await
        {
            Ok(Some(app)) => app,
            Ok(None) => {
                self.release(keeper, claimed, broken_retry()).await;
                return Err(internal("refreshing a connection", "its app is gone"));
            }
            Err(e) => {
                self.release(keeper, claimed, None).await;
                return Err(internal("reading a connection's app", e));
            }
        };
        let creds = match grant::app_credentials(keeper, &app) {
            Ok(c) => c,
            Err(e) => {
                self.release(keeper, claimed, broken_retry()).await;
                return Err(internal("opening an app's client secret", e));
            }
        };
        let refresh_token = match claimed
            .refresh_token
            .as_ref()
            .map(|sealed| keeper.vault.open_str(refresh_slot(&claimed.id), sealed))
        {
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                self.release(keeper, claimed, broken_retry()).await;
                return Err(internal("opening a connection's refresh token", e));
            }
            None => {
                self.release(keeper, claimed, broken_retry()).await;
                return Err(internal(
                    "refreshing a connection",
                    "a connected connection has no refresh token",
                ));
            }
        };

        // The lifetime counts from before we asked, so our expiry is never late.
        let requested_at = keeper.clock.now();
        match keeper.zoom.refresh(&creds, &refresh_token).await {
            Ok(grant) => {
                // Zoom always rotates; should it not, the old token stays good.
                let new_refresh = grant.refresh_token.as_ref().unwrap_or(&refresh_token);
                let now = keeper.clock.now();
                let expires_at = grant::access_token_expiry(requested_at, &grant);
                let access_sealed = keeper
                    .vault
                    .seal_str(access_slot(&claimed.id), grant.access_token.expose_secret());
                let tokens = RefreshedTokens {
                    refresh_token: keeper
                        .vault
                        .seal_str(refresh_slot(&claimed.id), new_refresh.expose_secret()),
                    access_token: access_sealed.clone(),
                    access_token_expires_at: expires_at,
                    refresh_due_at: grant::next_refresh_due(
                        now,
                        keeper.config.token_refresh_max_age,
                    ),
                    scopes: (!grant.scopes.is_empty()).then(|| grant.scopes.clone()),
                };
                let commit = if claimed.state == ConnectionState::Disconnected {
                    // A connection kept after `invalid_client`, re-checked under a new
                    // client secret: Zoom took its grant, so it is connected again.
                    Commit::Reconnect(NewConnectionEvent {
                        kind: "reconnected".to_owned(),
                        message: "Zoom accepted the app's new client secret; the connection is connected again.".to_owned(),
                        data: Some(json!({"was": "disconnected", "code": BAD_CLIENT_SECRET})),
                    })
                } else {
                    Commit::Refresh(NewConnectionEvent {
                        kind: "token_refreshed".to_owned(),
                        message: "The access token was refreshed.".to_owned(),
                        data: Some(
                            json!({"expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)}),
                        ),
                    })
                };
                self.write_back(keeper, claimed, hold, &tokens, &commit)
                    .await?;
                Ok(AccessToken {
                    token: grant.access_token,
                    expires_at,
                    refreshed: true,
                    sealed: Some(access_sealed),
                })
            }
            Err(e) if e.is_final() => {
                let (failure, grant) =
                    grant::final_failure(&e, &claimed.app_id, keeper.clock.now());
                if grant == Grant::Gone && self.reauthorised_meanwhile(keeper, claimed).await {
                    // The user authorised the app again: Zoom refused the grant the
                    // new one replaced, and the new one is stored. Nothing to end.
                    keeper.metrics.record_lease_conflict();
                    tracing::info!(connection_id = %claimed.id, "a refresh was refused because the user authorised the app again; the newer grant is kept");
                    return Err(TokenError::LostFence);
                }
                let written = match (claimed.state, grant) {
                    (ConnectionState::Connected, Grant::Gone) => grant::disconnect(
                        keeper,
                        claimed,
                        Some(claimed.fence),
                        failure.clone(),
                        "disconnected",
                    )
                    .await
                    .map(|_| ()),
                    (ConnectionState::Connected, Grant::Kept) => grant::disconnect_keeping_grant(
                        keeper,
                        claimed,
                        Some(claimed.fence),
                        failure.clone(),
                    )
                    .await
                    .map(|_| ()),
                    (ConnectionState::Disconnected, Grant::Gone) => {
                        grant::erase_kept_grant(keeper, claimed, failure.clone())
                            .await
                            .map(|_| ())
                    }
                    // Still refused: it stays as it is, grant kept, for the next secret.
                    (ConnectionState::Disconnected, Grant::Kept) => {
                        self.release(keeper, claimed, None).await;
                        Ok(())
                    }
                };
                match written {
                    Ok(()) => Err(TokenError::Disconnected(Some(failure))),
                    Err(store_error) => {
                        self.release(keeper, claimed, None).await;
                        Err(internal("disconnecting a connection", store_error))
                    }
                }
            }
            Err(e) => {
                let wait = e.retry_after().unwrap_or_else(|| {
                    zoom::error::backoff_delay(attempt_of(claimed, keeper.clock.now()))
                });
                let retry_at =
                    keeper.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
                tracing::warn!(
                    connection_id = %claimed.id,
                    error = %e,
                    retry_in_s = wait.as_secs(),
                    "refreshing a connection failed; will retry"
                );
                if matches!(e, ZoomError::RateLimited { .. }) {
                    // Zoom's limits are per account: hold that account's background work.
                    keeper
                        .zoom_accounts
                        .pause_until(&claimed.account_id, tokio::time::Instant::now() + wait);
                }
                self.release(keeper, claimed, Some(retry_at)).await;
                Err(refresh_call_error(e, wait))
            }
        }
    }

    /// A customer-managed connection's "refresh": asks its callback (`url`, opened)
    /// and stores the token under the claim's fence. A failure releases the lease
    /// and changes nothing else: the connection stays as it is.
    async fn fetch_claimed(
        &self,
        keeper: &Keeper,
        claimed: &ConnectionRow,
        url: Result<SecretString, String>,
    ) -> Result<AccessToken, TokenError> {
        let url = match url {
            Ok(url) => url,
            Err(e) => {
                self.release(keeper, claimed, None).await;
                return Err(internal(
                    "opening a connection's access_token_callback_url",
                    e,
                ));
            }
        };
        let fetched = match token_callbacks::fetch(keeper, url.expose_secret()).await {
            Ok(fetched) => fetched,
            Err(e) => {
                self.release(keeper, claimed, None).await;
                tracing::warn!(connection_id = %claimed.id, "a customer-managed connection's callback gave no usable token");
                return Err(TokenError::CallbackFailed(e.sentence()));
            }
        };
        let sealed = keeper
            .vault
            .seal_str(access_slot(&claimed.id), fetched.token.expose_secret());
        match keeper
            .store
            .store_callback_token(&claimed.id, claimed.fence, &sealed, fetched.expires_at)
            .await
        {
            Ok(true) => Ok(AccessToken {
                token: fetched.token,
                expires_at: fetched.expires_at,
                refreshed: true,
                sealed: Some(sealed),
            }),
            Ok(false) => {
                keeper.metrics.record_lease_conflict();
                Err(TokenError::LostFence)
            }
            Err(e) => {
                self.release(keeper, claimed, None).await;
                Err(internal(
                    "storing a token from an access_token_callback_url",
                    e,
                ))
            }
        }
    }

    /// After Zoom refused `claimed`'s grant: whether a re-authorisation of the user
    /// stored a newer grant meanwhile (the connection's fence moved on, or it is
    /// gone), waiting up to [`REAUTHORISATION_GRACE`] for one in flight. A new code
    /// exchange kills the user's earlier refresh token before its create can store
    /// the new one; without this the connection would be disconnected and then
    /// reconnected a moment later.
    async fn reauthorised_meanwhile(&self, keeper: &Keeper, claimed: &ConnectionRow) -> bool {
        let give_up_at = Instant::now() + REAUTHORISATION_GRACE;
        loop {
            match keeper.store.connection_by_id(&claimed.id).await {
                Ok(Some(row)) if row.fence == claimed.fence => {}
                Ok(_) => return true,
                Err(e) => {
                    tracing::warn!(connection_id = %claimed.id, error = %e, "reading a connection after a refused refresh failed");
                }
            }
            if Instant::now() >= give_up_at {
                return false;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// After Zoom rejected `rejected`, a token it had just issued: whether the
    /// connection's stored access token changed meanwhile (a re-authorisation stored
    /// a newer grant, or a refresh ran), waiting up to [`REAUTHORISATION_GRACE`].
    async fn token_replaced_meanwhile(
        &self,
        keeper: &Keeper,
        id: &str,
        rejected: Option<&Sealed>,
    ) -> bool {
        let give_up_at = Instant::now() + REAUTHORISATION_GRACE;
        loop {
            match keeper.store.connection_by_id(id).await {
                Ok(Some(row)) if row.access_token.as_ref() == rejected => {}
                Ok(Some(row)) => return row.state == ConnectionState::Connected,
                Ok(None) => return false,
                Err(e) => {
                    tracing::warn!(connection_id = %id, error = %e, "reading a connection after a rejected token failed");
                }
            }
            if Instant::now() >= give_up_at {
                return false;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Commits refreshed tokens under the claim's fence. A database failure here
    /// would lose the rotated refresh token, so it is retried — while the lease is
    /// surely held: after that another process may take the connection over.
    async fn write_back(
        &self,
        keeper: &Keeper,
        claimed: &ConnectionRow,
        hold: &LeaseHold,
        tokens: &RefreshedTokens,
        commit: &Commit,
    ) -> Result<(), TokenError> {
        let mut attempt: u32 = 0;
        loop {
            let written = match commit {
                Commit::Refresh(event) => {
                    keeper
                        .store
                        .store_refreshed_tokens(&claimed.id, claimed.fence, tokens, Some(event))
                        .await
                }
                Commit::Reconnect(event) => {
                    keeper
                        .store
                        .reconnect_connection(
                            &claimed.id,
                            claimed.fence,
                            tokens,
                            event,
                            Some(&grant::StateChange),
                        )
                        .await
                }
            };
            match written {
                Ok(true) => {
                    if matches!(commit, Commit::Reconnect(_)) {
                        tracing::info!(connection_id = %claimed.id, "connection reconnected under the app's new client secret");
                    }
                    return Ok(());
                }
                Ok(false) => {
                    keeper.metrics.record_lease_conflict();
                    tracing::warn!(
                        connection_id = %claimed.id,
                        fence = claimed.fence,
                        "a refresh's write-back lost its lease: another process took the connection over; the refreshed tokens are discarded"
                    );
                    return Err(TokenError::LostFence);
                }
                Err(e) if hold.held() => {
                    attempt += 1;
                    tracing::warn!(connection_id = %claimed.id, error = %e, attempt, "committing refreshed tokens failed; retrying while the lease is held");
                    tokio::time::sleep(WRITE_BACK_RETRY).await;
                }
                Err(e) => {
                    return Err(internal(
                        "committing refreshed tokens failed; the connection may need to be authorised again",
                        e,
                    ))
                }
            }
        }
    }

    /// See [`take_account_slot`].
    async fn take_account_slot(&self, keeper: &Keeper, claimed: &ConnectionRow) -> bool {
        let lease_left = claimed
            .lease_until
            .and_then(|until| (until - keeper.clock.now()).to_std().ok())
            .unwrap_or(Duration::ZERO);
        // The refresh renews the lease once it starts; the wait must end before it lapses.
        let budget = lease_left.saturating_sub(LEASE_MARGIN);
        match keeper
            .zoom_accounts
            .acquire_within(&claimed.account_id, budget)
            .await
        {
            Ok(()) => true,
            Err(wait) => {
                let retry_at =
                    keeper.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
                self.release(keeper, claimed, Some(retry_at)).await;
                false
            }
        }
    }
}

/// How a refresh's tokens are committed.
enum Commit {
    /// A connected connection's refresh.
    Refresh(NewConnectionEvent),
    /// A disconnected connection's re-check that Zoom accepted (its state-change
    /// event is built from the row as written).
    Reconnect(NewConnectionEvent),
}

/// A claimed connection waiting for its account's rate-limit slot gives up this long
/// before its lease would lapse.
const LEASE_MARGIN: Duration = Duration::from_secs(2);
/// What a request that needs a refresh saw, for deciding whether a refresh done by
/// someone else meanwhile serves it.
struct Wanted<'a> {
    /// An access token Zoom refused: never usable.
    rejected: Option<&'a Sealed>,
    /// The access token the connection held when the request decided to refresh.
    seen: Option<&'a Sealed>,
    arrived: Instant,
}

/// A token refreshed by someone else after the request saw `wanted.seen`: it is the
/// refresh the request waited for, usable while it has not expired, even when Zoom
/// issues tokens living less than [`MIN_VALIDITY`] (otherwise every waiter would
/// refresh again).
fn refreshed_since(
    keeper: &Keeper,
    row: &ConnectionRow,
    wanted: &Wanted<'_>,
) -> Option<AccessToken> {
    let sealed = row.access_token.as_ref()?;
    let expires_at = row.access_token_expires_at?;
    if Some(sealed) == wanted.seen || Some(sealed) == wanted.rejected {
        return None;
    }
    if expires_at <= keeper.clock.now() + chrono::Duration::seconds(5) {
        return None;
    }
    match keeper.vault.open_str(access_slot(&row.id), sealed) {
        Ok(token) => Some(AccessToken {
            token,
            expires_at,
            refreshed: false,
            sealed: Some(sealed.clone()),
        }),
        Err(_) => None,
    }
}

/// The cached access token of `row` when it is good for [`MIN_VALIDITY`] more and is
/// not the one Zoom refused.
fn usable(keeper: &Keeper, row: &ConnectionRow, rejected: Option<&Sealed>) -> Option<AccessToken> {
    let sealed = row.access_token.as_ref()?;
    let expires_at = row.access_token_expires_at?;
    let min = chrono::Duration::from_std(MIN_VALIDITY).ok()?;
    if expires_at < keeper.clock.now() + min || rejected == Some(sealed) {
        return None;
    }
    match keeper.vault.open_str(access_slot(&row.id), sealed) {
        Ok(token) => Some(AccessToken {
            token,
            expires_at,
            refreshed: false,
            sealed: Some(sealed.clone()),
        }),
        Err(e) => {
            tracing::error!(connection_id = %row.id, error = %e, "a cached access token does not open; refreshing instead");
            None
        }
    }
}

/// A backoff attempt number that grows with how long the refresh has been overdue,
/// so repeated failures wait longer without keeping a counter.
fn attempt_of(row: &ConnectionRow, now: DateTime<Utc>) -> u32 {
    row.refresh_due_at
        .map_or(0, |due| jitter::attempt_since(due, now))
}

/// A failed, non-final refresh call as a token error.
fn refresh_call_error(e: ZoomError, wait: Duration) -> TokenError {
    match e {
        ZoomError::RateLimited { .. } => TokenError::RateLimited { retry_after: wait },
        ZoomError::Unavailable { .. } | ZoomError::BadResponse { .. } => {
            TokenError::ZoomUnavailable(e.description())
        }
        other => TokenError::ZoomRefused(other.description()),
    }
}

/// A failed REST token call (zak, onbehalf) as a token error.
pub fn zoom_call_error(e: ZoomError) -> TokenError {
    match e {
        ZoomError::RateLimited { retry_after } => TokenError::RateLimited {
            retry_after: retry_after.unwrap_or_else(|| zoom::error::backoff_delay(0)),
        },
        ZoomError::Unavailable { .. } | ZoomError::BadResponse { .. } => {
            TokenError::ZoomUnavailable(e.description())
        }
        ZoomError::InvalidInput(_) => TokenError::InvalidMeetingId,
        other => TokenError::ZoomRefused(other.description()),
    }
}

/// `host:pid:random`, unique per process.
fn process_owner_id() -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng as _;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".to_owned());
    let random: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(8)
        .map(char::from)
        .collect();
    format!("{host}:{}:{random}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_ids_are_unique_per_broker() {
        let a = TokenBroker::new();
        let b = TokenBroker::new();
        assert_ne!(a.owner(), b.owner());
        assert_eq!(a.owner().split(':').count(), 3);
    }
}
