//! Zoom webhook ingress (DESIGN.md §4 "Zoom webhook ingress", §5 "Webhooks").
//!
//! Rules kept here: the signature (over the raw bytes, 300 s window) is the only
//! authentication; a refused signature changes nothing but the app's
//! `last_unverified_webhook_received_at`; each app's webhook timestamps are written
//! at most every [`TIMESTAMP_INTERVAL`] per process; which events change what
//! (`meeting.created`, `meeting.started` of a meeting the index does not know,
//! `meeting.deleted`, `user.updated` with a PMI,
//! `app_deauthorized`; everything else is ignored); a redelivered event (same
//! [`zoom::webhook::WebhookEvent::dedupe_key`]) is applied once, its receipt written
//! in the same transaction as its change. Nothing here calls Zoom: Zoom wants an
//! answer within 3 s. Under load, an app with its opened secret and a host's own
//! connection are reused for a few seconds; the index write re-checks the host.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use moka::sync::Cache;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest, Sha256};
use zoom::webhook::{
    self, Deauthorization, EventError, MeetingObject, SignatureError, UrlValidationResponse,
    UserUpdate, WebhookEvent, ZoomEvent,
};

use crate::core::ids::IdKind;
use crate::core::vault::Slot;
use crate::domain::meetings;
use crate::storage::{
    AppRow, ConnectionRow, Cursor, Direction, DisconnectOutcome, FailureData, MeetingIndexChange,
    MeetingSource, PageRequest, ReceiptOutcome, StoreError, WebhookVerification,
};
use crate::{domain::grant, Keeper};

/// How often one process writes an app's `last_(un)verified_webhook_received_at`.
pub const TIMESTAMP_INTERVAL: Duration = Duration::from_secs(5);
/// The connection event written when Zoom says the user removed the app.
pub const DEAUTHORIZED_EVENT: &str = "deauthorized";
/// `connection_failure_data.code` of a connection whose user removed the app.
pub const DEAUTHORIZED_CODE: &str = "app_deauthorized";
/// Longest `plainToken` echoed back (Zoom's are 22 characters).
const MAX_PLAIN_TOKEN_CHARS: usize = 256;
/// Receipt keys longer than this are stored as their SHA-256.
const MAX_RECEIPT_KEY_CHARS: usize = 200;
const MAX_PERSONAL_MEETING_URL_CHARS: usize = 2_000;
/// Events that change something; a malformed one is a 400, any other is ignored.
const ACTED_ON: &[&str] = &[
    "endpoint.url_validation",
    "meeting.created",
    "meeting.started",
    "meeting.deleted",
    "user.updated",
    "app_deauthorized",
];

/// One webhook request as it arrived.
pub struct Delivery<'a> {
    /// The app id from the URL.
    pub app_id: &'a str,
    /// `x-zm-request-timestamp`.
    pub timestamp: Option<&'a str>,
    /// `x-zm-signature`.
    pub signature: Option<&'a str>,
    /// The raw body, exactly as signed.
    pub body: &'a [u8],
}

/// What a verified webhook did.
#[derive(Debug)]
pub enum Outcome {
    /// `endpoint.url_validation`: the answer Zoom expects.
    UrlValidation(UrlValidationResponse),
    /// The event changed the index or a connection.
    Applied,
    /// The event was received and applied before.
    Duplicate,
    /// Nothing to do, and why.
    Ignored(&'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("no such app")]
    AppNotFound,
    #[error("the app has no webhook secret")]
    NoWebhookSecret,
    #[error("the signature was refused: {0}")]
    Signature(SignatureError),
    /// A verified body that cannot be read; the message says what is wrong.
    #[error("{0}")]
    InvalidEvent(String),
    #[error(transparent)]
    Internal(anyhow::Error),
}

fn internal(context: &'static str, e: impl Into<anyhow::Error>) -> IngressError {
    IngressError::Internal(e.into().context(context))
}

/// Verifies and applies one Zoom webhook.
pub async fn receive(keeper: &Keeper, delivery: Delivery<'_>) -> Result<Outcome, IngressError> {
    // A malformed id cannot exist; answer exactly as for a missing one.
    if !IdKind::App.matches(delivery.app_id) {
        return Err(IngressError::AppNotFound);
    }
    let (mut app, mut secret, cached) = app_and_secret(keeper, delivery.app_id, true).await?;
    let verify = |secret: &Option<Arc<SecretString>>| match secret {
        Some(secret) => webhook::verify(
            secret.expose_secret(),
            delivery.timestamp,
            delivery.signature,
            delivery.body,
            keeper.clock.now().timestamp(),
            webhook::DEFAULT_WINDOW,
        )
        .map_err(IngressError::Signature),
        None => Err(IngressError::NoWebhookSecret),
    };
    let mut verified = verify(&secret);
    if verified.is_err() && cached {
        // The secret may have changed since it was cached: read it again.
        (app, secret, _) = app_and_secret(keeper, delivery.app_id, false).await?;
        verified = verify(&secret);
    }
    if let Err(e) = verified {
        if let IngressError::Signature(reason) = &e {
            // The name is read from an unverified body only to label the count.
            if unverified_event_name(delivery.body).as_deref() == Some("app_deauthorized") {
                keeper
                    .metrics
                    .record_zoom_webhook_refused("app_deauthorized");
                tracing::warn!(
                    app_id = %app.id,
                    reason = %reason,
                    "a Zoom app_deauthorized webhook was refused for its signature; nothing is disconnected by it: the connection is disconnected when its next refresh is refused"
                );
            } else {
                keeper.metrics.record_zoom_webhook_refused("other");
                tracing::info!(app_id = %app.id, reason = %reason, "Zoom webhook refused");
            }
        }
        if note_received(keeper, &app.id, WebhookVerification::Unverified).await {
            crate::domain::apps::note(
                &*keeper.store,
                &app.project_id,
                &app.id,
                "unverified_webhook",
                &match &e {
                    IngressError::NoWebhookSecret => "A Zoom webhook was refused: this app has no webhook secret. Set it to the Secret Token of the Zoom app's Event Subscription.".to_owned(),
                    _ => "A Zoom webhook was refused: its signature does not verify with this app's webhook secret (or it is older than 5 minutes). If Zoom sent it, copy the Secret Token from the Zoom app's Event Subscription into the app's webhook_secret again.".to_owned(),
                },
                Some(UNVERIFIED_LOG_EVERY),
            )
            .await;
        }
        return Err(e);
    }
    let Some(secret) = secret else {
        return Err(IngressError::NoWebhookSecret);
    };
    note_received(keeper, &app.id, WebhookVerification::Verified).await;
    if app.webhook_events_stale_since.is_some() {
        // Verified events arrive again: the app is no longer flagged.
        match keeper.store.clear_app_webhook_events_stale(&app.id).await {
            Ok(true) => {
                keeper.ingress.apps.invalidate(&app.id);
                tracing::info!(app_id = %app.id, "verified Zoom webhooks arrive again");
            }
            Ok(false) => keeper.ingress.apps.invalidate(&app.id),
            Err(e) => {
                tracing::warn!(app_id = %app.id, error = %e, "clearing an app's stale-webhooks flag failed")
            }
        }
    }

    let event = match webhook::parse_event(delivery.body) {
        Ok(event) => event,
        Err(EventError::MissingField(name, _)) if !ACTED_ON.contains(&name.as_str()) => {
            return Ok(Outcome::Ignored("zoomkeeper does not act on this event"));
        }
        Err(e) => {
            return Err(IngressError::InvalidEvent(format!(
                "The webhook body cannot be read: {e}."
            )))
        }
    };
    let outcome = match &event.event {
        ZoomEvent::UrlValidation { plain_token } => {
            if plain_token.chars().count() > MAX_PLAIN_TOKEN_CHARS {
                return Err(IngressError::InvalidEvent(format!(
                    "payload.plainToken is longer than {MAX_PLAIN_TOKEN_CHARS} characters."
                )));
            }
            if let Err(e) = keeper
                .store
                .record_app_url_validation(
                    &app.project_id,
                    &app.id,
                    "Zoom validated the app's event notification endpoint URL.",
                )
                .await
            {
                tracing::warn!(app_id = %app.id, error = %e, "recording a Zoom URL validation failed");
            }
            Outcome::UrlValidation(webhook::url_validation_response(
                secret.expose_secret(),
                plain_token,
            ))
        }
        ZoomEvent::MeetingCreated(meeting) => {
            meeting_created(keeper, &app, &event, meeting).await?
        }
        ZoomEvent::MeetingStarted(meeting) => {
            meeting_started(keeper, &app, &event, meeting).await?
        }
        ZoomEvent::MeetingDeleted(meeting) => {
            meeting_deleted(keeper, &app, &event, meeting, delivery.body).await?
        }
        ZoomEvent::UserUpdated(update) => user_updated(keeper, &app, &event, update).await?,
        ZoomEvent::AppDeauthorized(d) => app_deauthorized(keeper, &app, &event, d).await?,
        _ => Outcome::Ignored("zoomkeeper does not act on this event"),
    };
    tracing::debug!(app_id = %app.id, event = %event.name, outcome = ?outcome, "Zoom webhook");
    Ok(outcome)
}

/// At the shared URL, apps with a connection in the event's Zoom account tried first…
pub const SHARED_ACCOUNT_CANDIDATES: u32 = 16;
/// …then apps with a webhook secret, oldest first: an event naming no account (URL
/// validation), or one whose account no app has a connection in yet.
pub const SHARED_FALLBACK_CANDIDATES: u32 = 64;

/// One webhook at the shared URL (`/api/v1/zoom_oauth/webhooks`, Attendee's older
/// guide: one URL for every app), which names no app: the app is the one whose
/// webhook secret verifies the signature.
///
/// Work per request is bounded however many apps exist: the headers' shape and the
/// timestamp's freshness are checked before anything is read; then at most
/// [`SHARED_ACCOUNT_CANDIDATES`] apps with a connection in the body's
/// `payload.account_id` (read from the unverified body only to pick candidates), and
/// if none verifies, at most [`SHARED_FALLBACK_CANDIDATES`] apps with a webhook
/// secret, each costing one HMAC-SHA256 of the body (at most 1 MiB) with its opened
/// secret reused for 5 s, compared in constant time. An event no candidate verifies
/// is refused (401) and counted, never guessed. Apps whose secrets verify are each
/// handed the event as at their own URL (two apps sharing a secret both get it; the
/// index is per app).
pub async fn receive_shared(
    keeper: &Keeper,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Outcome, IngressError> {
    let now = keeper.clock.now().timestamp();
    let verifies = |secret: &str| {
        webhook::verify(
            secret,
            timestamp,
            signature,
            body,
            now,
            webhook::DEFAULT_WINDOW,
        )
    };
    // Missing, malformed or stale headers fail before any secret is read.
    if let Err(e) = verifies("") {
        if e != SignatureError::Mismatch {
            keeper.metrics.record_zoom_webhook_refused("shared_url");
            return Err(IngressError::Signature(e));
        }
    }
    let account = shared_account_id(body);
    let rounds = [
        (account.as_deref(), SHARED_ACCOUNT_CANDIDATES),
        (None, SHARED_FALLBACK_CANDIDATES),
    ];
    let mut tried = std::collections::HashSet::new();
    let mut matched = Vec::new();
    for (account, limit) in rounds {
        if account.is_none() && limit == SHARED_ACCOUNT_CANDIDATES {
            continue;
        }
        let ids = keeper
            .store
            .apps_for_shared_webhook(account, limit)
            .await
            .map_err(|e| internal("finding the apps of a shared-URL Zoom webhook", e))?;
        for id in ids {
            if !tried.insert(id.clone()) {
                continue;
            }
            let (_, secret, _) = match app_and_secret(keeper, &id, true).await {
                Ok(found) => found,
                // Deleted since it was listed.
                Err(IngressError::AppNotFound) => continue,
                Err(e) => return Err(e),
            };
            if secret.is_some_and(|s| verifies(s.expose_secret()).is_ok()) {
                matched.push(id);
            }
        }
        if !matched.is_empty() {
            break;
        }
    }
    if matched.is_empty() {
        keeper.metrics.record_zoom_webhook_refused("shared_url");
        tracing::info!(
            candidates = tried.len(),
            "a Zoom webhook at the shared URL verifies with no app's webhook secret; refused"
        );
        return Err(IngressError::Signature(SignatureError::Mismatch));
    }
    let mut outcome: Option<Outcome> = None;
    for app_id in &matched {
        let this = receive(
            keeper,
            Delivery {
                app_id,
                timestamp,
                signature,
                body,
            },
        )
        .await?;
        outcome = Some(match (outcome, this) {
            (Some(Outcome::UrlValidation(first)), _) => Outcome::UrlValidation(first),
            (_, validation @ Outcome::UrlValidation(_)) => validation,
            (Some(Outcome::Applied), _) | (_, Outcome::Applied) => Outcome::Applied,
            (Some(Outcome::Ignored(why)), _) => Outcome::Ignored(why),
            (_, other) => other,
        });
    }
    outcome.ok_or_else(|| internal("a shared-URL webhook", anyhow::anyhow!("no outcome")))
}

/// `payload.account_id` of an unverified body: used only to choose which apps'
/// secrets to try.
fn shared_account_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        payload: Option<Payload>,
    }
    #[derive(serde::Deserialize)]
    struct Payload {
        account_id: Option<String>,
    }
    serde_json::from_slice::<Envelope>(body)
        .ok()?
        .payload?
        .account_id
        .filter(|a| !a.is_empty() && a.len() <= 64 && !a.contains('\0'))
}

/// The `event` of a body whose signature was refused, to label what was refused;
/// never acted on.
fn unverified_event_name(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Named {
        event: String,
    }
    serde_json::from_slice::<Named>(body).ok().map(|n| n.event)
}

/// An app as the ingress needs it: the row and its opened webhook secret.
type AppAndSecret = (Arc<AppRow>, Option<Arc<SecretString>>);

/// What the ingress reuses in this process to save reads under load, owned by the
/// [`Keeper`] (so each keeper, and each test, starts empty).
pub struct IngressCaches {
    /// Apps with their opened webhook secrets, reused for 5 s. A secret changed
    /// meanwhile is still read at once (a refused signature reads the app again); a
    /// removed secret or a deleted app takes effect within 5 s.
    apps: Cache<String, AppAndSecret>,
    /// (app id, Zoom user id) → that user's connection, reused for 5 s when it hosts
    /// its meetings. Only that choice is reused (never a fallback to the operator or
    /// another connection of the account, which a user connecting meanwhile would
    /// change), and the write re-checks that the connection is still that Zoom user's
    /// and in the same state ([`MeetingIndexChange::UpsertIfHost`]), choosing again
    /// when not: a reused choice is the one a fresh read would make, less a read per
    /// event.
    hosts: Cache<(String, String), Arc<ConnectionRow>>,
    /// Which apps' webhook timestamps this process wrote in the last
    /// [`TIMESTAMP_INTERVAL`] (one entry per app and kind): a throttle.
    timestamps: Cache<(String, WebhookVerification), ()>,
}

impl Default for IngressCaches {
    fn default() -> Self {
        fn cache<K, V>(ttl: Duration, max: u64) -> Cache<K, V>
        where
            K: std::hash::Hash + Eq + Send + Sync + 'static,
            V: Clone + Send + Sync + 'static,
        {
            Cache::builder().time_to_live(ttl).max_capacity(max).build()
        }
        IngressCaches {
            apps: cache(Duration::from_secs(5), 10_000),
            hosts: cache(Duration::from_secs(5), 100_000),
            timestamps: cache(TIMESTAMP_INTERVAL, 10_000),
        }
    }
}

/// The app and its opened webhook secret, from the cache when `cached_ok` and fresh
/// (saving a read and a decryption per event under load); the bool says whether it
/// came from the cache.
async fn app_and_secret(
    keeper: &Keeper,
    app_id: &str,
    cached_ok: bool,
) -> Result<(Arc<AppRow>, Option<Arc<SecretString>>, bool), IngressError> {
    if let Some((app, secret)) = keeper.ingress.apps.get(app_id).filter(|_| cached_ok) {
        return Ok((app, secret, true));
    }
    let app = keeper
        .store
        .app_by_id(app_id)
        .await
        .map_err(|e| internal("reading the app of a Zoom webhook", e))?
        .ok_or(IngressError::AppNotFound)?;
    let secret = match &app.webhook_secret {
        Some(sealed) => Some(Arc::new(
            keeper
                .vault
                .open_str(Slot::app_webhook_secret(&app.id), sealed)
                .map_err(|e| internal("opening an app's webhook secret", e))?,
        )),
        None => None,
    };
    let app = Arc::new(app);
    keeper
        .ingress
        .apps
        .insert(app_id.to_owned(), (app.clone(), secret.clone()));
    Ok((app, secret, false))
}

fn meeting_number<'a>(value: &'a str, field: &str) -> Result<&'a str, IngressError> {
    if meetings::is_meeting_number(value) {
        Ok(value)
    } else {
        Err(IngressError::InvalidEvent(format!(
            "{field} is not a Zoom meeting number (9 to 11 digits)."
        )))
    }
}

/// The receipt key: the event's dedupe key, hashed when it is long (an object id is
/// whatever the sender put there).
fn receipt_key(event: &WebhookEvent) -> String {
    let key = event.dedupe_key();
    if key.chars().count() <= MAX_RECEIPT_KEY_CHARS {
        key
    } else {
        format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
    }
}

/// Records the event's receipt and applies `change` with it, once.
async fn apply_once(
    keeper: &Keeper,
    app: &AppRow,
    event: &WebhookEvent,
    change: MeetingIndexChange,
    now: DateTime<Utc>,
) -> Result<Outcome, IngressError> {
    let written = keeper
        .store
        .record_webhook_receipt_and_apply(&app.id, &receipt_key(event), now, &change)
        .await;
    outcome_of(written)
}

fn outcome_of(written: Result<ReceiptOutcome, StoreError>) -> Result<Outcome, IngressError> {
    match written {
        Ok(ReceiptOutcome::Applied) => Ok(Outcome::Applied),
        Ok(ReceiptOutcome::Duplicate) => Ok(Outcome::Duplicate),
        Err(StoreError::NotFound) => Ok(Outcome::Ignored("the connection no longer exists")),
        Err(e) => Err(internal("applying a Zoom webhook", e)),
    }
}

async fn meeting_created(
    keeper: &Keeper,
    app: &AppRow,
    event: &WebhookEvent,
    meeting: &MeetingObject,
) -> Result<Outcome, IngressError> {
    let id = meeting_number(&meeting.id, "payload.object.id")?;
    let mut cached_ok = true;
    loop {
        let Some((host, cached)) = meeting_host(keeper, app, event, meeting, cached_ok).await?
        else {
            return Ok(Outcome::Ignored(
                "no connection of this app hosts the meeting",
            ));
        };
        let now = keeper.clock.now();
        let mut row = meetings::row(
            &host,
            id,
            MeetingSource::Webhook,
            meeting.topic.as_deref(),
            meetings::indexed_start_time(meeting.start_time.as_deref(), meeting.meeting_type),
            now,
        );
        row.host_user_id = meeting
            .host_id
            .as_deref()
            .map(str::trim)
            .filter(|h| crate::domain::join_tokens::is_user_id(h))
            .map(str::to_owned);
        // Written only if the host is still that user's connection and in the
        // state it was chosen in; otherwise NotFound.
        let change = MeetingIndexChange::UpsertIfHost {
            row,
            user_id: host.user_id.clone(),
            state: host.state,
        };
        let written = keeper
            .store
            .record_webhook_receipt_and_apply(&app.id, &receipt_key(event), now, &change)
            .await;
        if cached && matches!(written, Err(StoreError::NotFound)) {
            // The reused choice is out of date: forget it and choose again.
            keeper
                .ingress
                .hosts
                .invalidate(&(app.id.clone(), host.user_id.clone()));
            cached_ok = false;
            continue;
        }
        return outcome_of(written);
    }
}

/// `meeting.started` of a meeting the index does not know (an instant meeting, one
/// made before the app was installed, one whose `meeting.created` was lost) indexes
/// it to its host's connection as `meeting.created` would, so a bot that joins at
/// the start still gets a local recording token. A meeting the index knows is left
/// where it is.
async fn meeting_started(
    keeper: &Keeper,
    app: &AppRow,
    event: &WebhookEvent,
    meeting: &MeetingObject,
) -> Result<Outcome, IngressError> {
    let id = meeting_number(&meeting.id, "payload.object.id")?;
    let known = keeper
        .store
        .meeting_hosts(&app.project_id, Some(&app.id), id)
        .await
        .map_err(|e| internal("reading the meeting index", e))?;
    if !known.is_empty() {
        return Ok(Outcome::Ignored(
            "the meeting index already knows the meeting",
        ));
    }
    meeting_created(keeper, app, event, meeting).await
}

/// The connection hosting the meeting ([`meetings::host_connection`]); the host's
/// own connection is reused when `cached_ok` and chosen less than
/// 5 s ago. The bool says whether it was reused.
async fn meeting_host(
    keeper: &Keeper,
    app: &AppRow,
    event: &WebhookEvent,
    meeting: &MeetingObject,
    cached_ok: bool,
) -> Result<Option<(Arc<ConnectionRow>, bool)>, IngressError> {
    let key = meeting
        .host_id
        .as_ref()
        .map(|host| (app.id.clone(), host.clone()));
    if let Some(hit) = key
        .as_ref()
        .filter(|_| cached_ok)
        .and_then(|k| keeper.ingress.hosts.get(k))
    {
        return Ok(Some((hit, true)));
    }
    let host = meetings::host_connection(
        &*keeper.store,
        app,
        meeting.host_id.as_deref(),
        event.operator_id.as_deref(),
        event.account_id.as_deref(),
    )
    .await
    .map_err(|e| internal("finding a meeting's host", e))?;
    let Some(host) = host else {
        return Ok(None);
    };
    let host = Arc::new(host);
    if let Some(key) = key.filter(|(_, user)| *user == host.user_id) {
        keeper.ingress.hosts.insert(key, host.clone());
    }
    Ok(Some((host, false)))
}

/// Whether a `meeting.deleted` body names occurrences: then one occurrence of a
/// recurring meeting went, and the series (with its index row) stays.
fn deletes_occurrences_only(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/payload/object/occurrences")
                .and_then(serde_json::Value::as_array)
                .map(|a| !a.is_empty())
        })
        .unwrap_or(false)
}

async fn meeting_deleted(
    keeper: &Keeper,
    app: &AppRow,
    event: &WebhookEvent,
    meeting: &MeetingObject,
    body: &[u8],
) -> Result<Outcome, IngressError> {
    let id = meeting_number(&meeting.id, "payload.object.id")?;
    if deletes_occurrences_only(body) {
        return Ok(Outcome::Ignored(
            "occurrences of a recurring meeting were deleted; the series stays",
        ));
    }
    let change = MeetingIndexChange::Delete {
        app_id: app.id.clone(),
        meeting_id: id.to_owned(),
    };
    apply_once(keeper, app, event, change, keeper.clock.now()).await
}

async fn user_updated(
    keeper: &Keeper,
    app: &AppRow,
    event: &WebhookEvent,
    update: &UserUpdate,
) -> Result<Outcome, IngressError> {
    let Some(pmi) = &update.pmi else {
        return Ok(Outcome::Ignored("the update does not change the PMI"));
    };
    let pmi = meeting_number(pmi, "payload.object.pmi")?;
    let connection = keeper
        .store
        .connection_by_user(&app.id, &update.user_id)
        .await
        .map_err(|e| internal("reading the connection of an updated user", e))?;
    let Some(connection) = connection else {
        return Ok(Outcome::Ignored("the user has no connection to this app"));
    };
    let now = keeper.clock.now();
    let change = MeetingIndexChange::ReplacePmi {
        row: meetings::row(&connection, pmi, MeetingSource::Pmi, None, None, now),
        personal_meeting_url: update
            .personal_meeting_url
            .clone()
            .filter(|u| u.chars().count() <= MAX_PERSONAL_MEETING_URL_CHARS),
    };
    apply_once(keeper, app, event, change, now).await
}

/// The user removed the app: their connection is disconnected through
/// [`grant::disconnect`] (tokens erased, one `state_change` outbox row), then
/// the receipt is written. The receipt comes second because the disconnect is its
/// own transaction: a crash in between leaves the connection disconnected and the
/// redelivery finds nothing left to do, while a receipt without the disconnect
/// would lose the event.
async fn app_deauthorized(
    keeper: &Keeper,
    app: &AppRow,
    event: &WebhookEvent,
    d: &Deauthorization,
) -> Result<Outcome, IngressError> {
    if d.client_id.as_deref().is_some_and(|c| c != app.client_id) {
        return Ok(Outcome::Ignored("the event names another client_id"));
    }
    let store = &keeper.store;
    let connection = store
        .connection_by_user(&app.id, &d.user_id)
        .await
        .map_err(|e| internal("reading the connection of a deauthorizing user", e))?;
    let Some(connection) = connection else {
        return Ok(Outcome::Ignored("the user has no connection to this app"));
    };
    let key = receipt_key(event);
    // A redelivery must not disconnect a connection the user has made again since.
    if store
        .webhook_receipt_exists(&app.id, &key)
        .await
        .map_err(|e| internal("reading a webhook receipt", e))?
    {
        return Ok(Outcome::Duplicate);
    }
    // Zoom retries a deauthorization for up to an hour: one that arrives after the
    // user authorised the app again is about the old grant.
    if let Some(at) = deauthorized_at(event, d) {
        if granted_since(keeper, &connection, at).await? {
            return Ok(Outcome::Ignored(
                "the user authorised the app again after this deauthorization",
            ));
        }
    }
    let now = keeper.clock.now();
    let failure = FailureData {
        error: "The user removed the app from their Zoom account; they must authorise it again."
            .to_owned(),
        code: DEAUTHORIZED_CODE.to_owned(),
        timestamp: now,
    };
    let outcome = grant::disconnect(keeper, &connection, None, failure, DEAUTHORIZED_EVENT)
        .await
        .map_err(|e| internal("disconnecting a deauthorized connection", e))?;
    let receipt = store
        .record_webhook_receipt_and_apply(&app.id, &key, now, &MeetingIndexChange::Nothing)
        .await
        .map_err(|e| internal("recording a webhook receipt", e))?;
    Ok(match (outcome, receipt) {
        (_, ReceiptOutcome::Duplicate) => Outcome::Duplicate,
        (DisconnectOutcome::Disconnected(_), ReceiptOutcome::Applied) => Outcome::Applied,
        (DisconnectOutcome::Unchanged, ReceiptOutcome::Applied) => {
            Outcome::Ignored("the connection was already disconnected")
        }
        (DisconnectOutcome::NotFound, ReceiptOutcome::Applied) => {
            Outcome::Ignored("the connection no longer exists")
        }
    })
}

/// When the user removed the app: `deauthorization_time`, else the event's
/// `event_ts`; `None` when neither is usable.
fn deauthorized_at(event: &WebhookEvent, d: &Deauthorization) -> Option<DateTime<Utc>> {
    d.deauthorization_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| {
            (event.event_ts > 0).then(|| DateTime::from_timestamp_millis(event.event_ts))?
        })
}

/// Connection event kinds written when a grant is obtained.
const GRANT_EVENT_KINDS: &[&str] = &["created", "reconnected", "rebound"];
/// Event pages read, at most, looking for a grant after a deauthorization.
const MAX_GRANT_EVENT_PAGES: usize = 10;
/// How much later than a deauthorization a grant must be to count as newer: Zoom's
/// times have millisecond precision and its clock is not ours. A user removing and
/// adding the app again takes longer; a deauthorization within this of a grant is
/// taken to be about that grant.
const GRANT_SLACK: chrono::Duration = chrono::Duration::seconds(1);

/// Whether `connection`'s current grant was obtained after `at` (by more than
/// [`GRANT_SLACK`]): it was created after it, or its log has a
/// `created`/`reconnected`/`rebound` event after it.
async fn granted_since(
    keeper: &Keeper,
    connection: &ConnectionRow,
    at: DateTime<Utc>,
) -> Result<bool, IngressError> {
    let at = at + GRANT_SLACK;
    if connection.created_at > at {
        return Ok(true);
    }
    let mut request = PageRequest {
        cursor: None,
        limit: 100,
    };
    for _ in 0..MAX_GRANT_EVENT_PAGES {
        let page = keeper
            .store
            .list_connection_events(&connection.project_id, &connection.id, &request)
            .await
            .map_err(|e| internal("reading a deauthorizing connection's events", e))?;
        // Newest first: stop at the first event from before `at`.
        for e in &page.items {
            if e.created_at <= at {
                return Ok(false);
            }
            if GRANT_EVENT_KINDS.contains(&e.kind.as_str()) {
                return Ok(true);
            }
        }
        let Some(last) = page.items.last().filter(|_| page.has_more) else {
            return Ok(false);
        };
        request.cursor = Some(Cursor {
            created_at: last.created_at,
            id: last.id.to_string(),
            direction: Direction::Older,
        });
    }
    Ok(false)
}

/// Moves the app's webhook timestamp, throttled; a failure is logged, never fatal.
/// Refused webhooks make at most one line in the app's log this often.
const UNVERIFIED_LOG_EVERY: Duration = Duration::from_secs(3600);

/// Moves the app's webhook timestamp forward, at most once per
/// [`TIMESTAMP_INTERVAL`] per process; true when this call was that once.
async fn note_received(keeper: &Keeper, app_id: &str, which: WebhookVerification) -> bool {
    // Fresh: this call put the entry there, so it is the first in the interval.
    if !keeper
        .ingress
        .timestamps
        .entry((app_id.to_owned(), which))
        .or_insert(())
        .is_fresh()
    {
        return false;
    }
    if let Err(e) = keeper
        .store
        .record_app_webhook_received(app_id, which, keeper.clock.now())
        .await
    {
        tracing::warn!(app_id = %app_id, error = %e, "cannot record when the app last received a Zoom webhook");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_receipt_keys_are_hashed() {
        let short = webhook::parse_event(
            br#"{"event":"meeting.created","event_ts":1,"payload":{"object":{"id":123456789}}}"#,
        )
        .expect("parses");
        assert_eq!(receipt_key(&short), "meeting.created:1:123456789");
        let long_id = "x".repeat(5_000);
        let body = format!(
            r#"{{"event":"user.updated","event_ts":1,"payload":{{"object":{{"id":"{long_id}"}}}}}}"#
        );
        let long = webhook::parse_event(body.as_bytes()).expect("parses");
        let key = receipt_key(&long);
        assert!(key.starts_with("sha256:") && key.len() == 7 + 64, "{key}");
    }

    #[test]
    fn occurrence_deletions_are_recognised() {
        assert!(deletes_occurrences_only(
            br#"{"payload":{"object":{"id":1,"occurrences":[{"occurrence_id":"1"}]}}}"#
        ));
        assert!(!deletes_occurrences_only(
            br#"{"payload":{"object":{"id":1,"occurrences":[]}}}"#
        ));
        assert!(!deletes_occurrences_only(
            br#"{"payload":{"object":{"id":1}}}"#
        ));
        assert!(!deletes_occurrences_only(b"not json"));
    }
}
