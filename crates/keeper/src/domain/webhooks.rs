//! Outgoing webhooks, the customer's side (DESIGN.md §4 "Outgoing webhooks"):
//! subscriptions and the project's signing secret. Delivery is in
//! [`crate::workers::webhook_delivery`].
//!
//! A subscription's URL is checked when it is saved — absolute http(s), https unless
//! `allow_private_callback_urls` is on, and no host resolving to a loopback,
//! private, link-local or multicast address unless that setting allows it
//! ([`crate::core::outbound_url`]) — and checked again at every delivery, since DNS
//! answers change.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice};

use crate::core::clock::Clock;
use crate::core::ids::IdKind;
use crate::core::outbound_url::{self, OutboundUrlError};
use crate::core::vault::{Slot, Vault};
use crate::storage::{
    DeliveryStatus, Page, PageRequest, ProjectStore, StoreError, WebhookDeliveryRow, WebhookStore,
    WebhookSubscriptionRow, WebhookSubscriptionUpdate, WEBHOOK_SUBSCRIPTION_LIMIT,
};

/// The triggers a subscription may ask for.
pub const TRIGGERS: &[&str] = &[STATE_CHANGE];
/// Sent when a connection becomes disconnected, and when it becomes connected again.
pub const STATE_CHANGE: &str = "zoom_oauth_connection.state_change";
/// Subscriptions per project.
pub const MAX_SUBSCRIPTIONS: u32 = 10;
/// How long the previous secret keeps signing after a rotation.
pub const ROTATION_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// Field → problems.
    #[error("invalid webhook subscription")]
    Invalid(BTreeMap<String, Vec<String>>),
    #[error("not found")]
    NotFound,
    #[error("no such delivery")]
    DeliveryNotFound,
    #[error("the project already has {MAX_SUBSCRIPTIONS} webhook subscriptions")]
    TooMany,
    #[error("the signing secret could not be opened")]
    Secret,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What saving a subscription ([`create`], [`update`]) needs.
#[derive(Clone, Copy)]
pub struct Subscriptions<'a> {
    pub store: &'a dyn WebhookStore,
    pub clock: &'a Clock,
    /// The `allow_private_callback_urls` setting ([`check_url`]).
    pub allow_private_callback_urls: bool,
}

/// Checks a subscription URL (see the module docs); the problem as a sentence.
/// `allow_private` is the `allow_private_callback_urls` setting.
pub async fn check_url(url: &str, allow_private: bool) -> Result<String, String> {
    Ok(checked_url(url, allow_private).await?.url.to_string())
}

/// [`check_url`]'s rule for every URL a customer gives us to call (subscriptions,
/// token callbacks), with the addresses the request must be pinned to.
pub async fn checked_url(
    url: &str,
    allow_private: bool,
) -> Result<outbound_url::CheckedUrl, String> {
    let checked = outbound_url::check(url, allow_private)
        .await
        .map_err(|e| match e {
            OutboundUrlError::NotHttp => {
                "Must be an absolute http:// or https:// URL of at most 2048 characters.".to_owned()
            }
            other => format!("{}{}", capitalised(&other.to_string()), "."),
        })?;
    if checked.url.scheme() != "https" && !allow_private {
        return Err(
            "Must be an https:// URL (http:// is accepted only when allow_private_callback_urls is on)."
                .to_owned(),
        );
    }
    Ok(checked)
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn check_triggers(triggers: &[String]) -> Result<Vec<String>, String> {
    if triggers.is_empty() {
        return Err(format!(
            "Give at least one trigger; known triggers: {}.",
            TRIGGERS.join(", ")
        ));
    }
    let mut seen = HashSet::new();
    for t in triggers {
        if !TRIGGERS.contains(&t.as_str()) {
            return Err(format!(
                "Unknown trigger {:?}; known triggers: {}.",
                t.chars().take(100).collect::<String>(),
                TRIGGERS.join(", ")
            ));
        }
        if !seen.insert(t.as_str()) {
            return Err(format!("The trigger {t:?} is listed twice."));
        }
    }
    Ok(triggers.to_vec())
}

pub async fn create(
    subscriptions: Subscriptions<'_>,
    project_id: &str,
    url: &str,
    triggers: &[String],
) -> Result<WebhookSubscriptionRow, SubscriptionError> {
    let mut problems = BTreeMap::new();
    let url = check_url(url, subscriptions.allow_private_callback_urls)
        .await
        .map_err(|p| problems.insert("url".to_owned(), vec![p]))
        .ok();
    let triggers = check_triggers(triggers)
        .map_err(|p| problems.insert("triggers".to_owned(), vec![p]))
        .ok();
    let (Some(url), Some(triggers)) = (url, triggers) else {
        return Err(SubscriptionError::Invalid(problems));
    };
    let now = subscriptions.clock.now();
    let row = WebhookSubscriptionRow {
        id: IdKind::WebhookSubscription.generate(),
        project_id: project_id.to_owned(),
        url,
        triggers,
        is_active: true,
        created_at: now,
        updated_at: now,
    };
    match subscriptions
        .store
        .insert_webhook_subscription(&row, MAX_SUBSCRIPTIONS)
        .await
    {
        Ok(()) => Ok(row),
        Err(StoreError::Conflict {
            constraint: WEBHOOK_SUBSCRIPTION_LIMIT,
        }) => Err(SubscriptionError::TooMany),
        Err(e) => Err(e.into()),
    }
}

pub async fn list(
    store: &dyn WebhookStore,
    project_id: &str,
    page: &PageRequest,
) -> Result<Page<WebhookSubscriptionRow>, SubscriptionError> {
    Ok(store.list_webhook_subscriptions(project_id, page).await?)
}

pub async fn get(
    store: &dyn WebhookStore,
    project_id: &str,
    id: &str,
) -> Result<WebhookSubscriptionRow, SubscriptionError> {
    if !IdKind::WebhookSubscription.matches(id) {
        return Err(SubscriptionError::NotFound);
    }
    store
        .get_webhook_subscription(project_id, id)
        .await?
        .ok_or(SubscriptionError::NotFound)
}

/// A requested change, as the caller gave it.
#[derive(Debug, Default)]
pub struct SubscriptionChange {
    pub url: Option<String>,
    pub triggers: Option<Vec<String>>,
    pub is_active: Option<bool>,
}

pub async fn update(
    subscriptions: Subscriptions<'_>,
    project_id: &str,
    id: &str,
    change: SubscriptionChange,
) -> Result<WebhookSubscriptionRow, SubscriptionError> {
    get(subscriptions.store, project_id, id).await?;
    let mut problems = BTreeMap::new();
    let mut update = WebhookSubscriptionUpdate {
        is_active: change.is_active,
        ..Default::default()
    };
    if let Some(url) = &change.url {
        match check_url(url, subscriptions.allow_private_callback_urls).await {
            Ok(url) => update.url = Some(url),
            Err(p) => {
                problems.insert("url".to_owned(), vec![p]);
            }
        }
    }
    if let Some(triggers) = &change.triggers {
        match check_triggers(triggers) {
            Ok(t) => update.triggers = Some(t),
            Err(p) => {
                problems.insert("triggers".to_owned(), vec![p]);
            }
        }
    }
    if !problems.is_empty() {
        return Err(SubscriptionError::Invalid(problems));
    }
    subscriptions
        .store
        .update_webhook_subscription(project_id, id, &update, subscriptions.clock.now())
        .await?
        .ok_or(SubscriptionError::NotFound)
}

pub async fn delete(
    store: &dyn WebhookStore,
    project_id: &str,
    id: &str,
) -> Result<(), SubscriptionError> {
    if !IdKind::WebhookSubscription.matches(id) {
        return Err(SubscriptionError::NotFound);
    }
    if store.delete_webhook_subscription(project_id, id).await? {
        Ok(())
    } else {
        Err(SubscriptionError::NotFound)
    }
}

/// A deliveries filter as given (`pending`, `success`, `failure`; blank: all).
pub fn delivery_status(text: Option<&str>) -> Result<Option<DeliveryStatus>, SubscriptionError> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => DeliveryStatus::parse(s).map(Some).ok_or_else(|| {
            SubscriptionError::Invalid(BTreeMap::from([(
                "status".to_owned(),
                vec!["Must be one of pending, success, failure.".to_owned()],
            )]))
        }),
    }
}

/// A subscription's deliveries, newest first, optionally of one status.
pub async fn deliveries(
    store: &dyn WebhookStore,
    project_id: &str,
    subscription_id: &str,
    status: Option<DeliveryStatus>,
    page: &PageRequest,
) -> Result<Page<WebhookDeliveryRow>, SubscriptionError> {
    get(store, project_id, subscription_id).await?;
    Ok(store
        .list_webhook_deliveries(project_id, subscription_id, status, page)
        .await?)
}

/// Sends a delivery again: back to pending, due now, same idempotency key (the
/// delivery worker makes the attempt). Returns the key, hyphenated.
pub async fn resend(
    store: &dyn WebhookStore,
    project_id: &str,
    idempotency_key: &str,
) -> Result<String, SubscriptionError> {
    let key = uuid::Uuid::parse_str(idempotency_key)
        .map_err(|_| SubscriptionError::DeliveryNotFound)?
        .hyphenated()
        .to_string();
    if store.resend_webhook_delivery(project_id, &key).await? {
        Ok(key)
    } else {
        Err(SubscriptionError::DeliveryNotFound)
    }
}

fn current_slot(project_id: &str) -> Slot<'_> {
    Slot::project_webhook_secret(project_id)
}

fn previous_slot(project_id: &str) -> Slot<'_> {
    Slot::project_previous_webhook_secret(project_id)
}

/// The keys that sign a project's deliveries: the current one, and the one the last
/// rotation replaced while its grace period lasts.
pub struct SigningSecrets {
    pub current: SecretSlice<u8>,
    pub previous: Option<SecretSlice<u8>>,
}

/// The project's signing keys: the current one is on its row ([`ProjectStore`]),
/// the previous one beside its subscriptions ([`WebhookStore`]).
pub async fn signing_secrets(
    store: &(impl ProjectStore + WebhookStore + ?Sized),
    vault: &Vault,
    project_id: &str,
) -> Result<SigningSecrets, SubscriptionError> {
    let project = store
        .project_by_id(project_id)
        .await?
        .ok_or(SubscriptionError::NotFound)?;
    let current = vault
        .open(current_slot(project_id), &project.webhook_secret)
        .map_err(|_| SubscriptionError::Secret)?;
    let previous = match store.previous_webhook_secret(project_id).await? {
        Some(p) => Some(
            vault
                .open(previous_slot(project_id), &p.secret)
                .map_err(|_| SubscriptionError::Secret)?,
        ),
        None => None,
    };
    Ok(SigningSecrets { current, previous })
}

/// The project's current signing secret, base64 (`GET /api/v1/webhook_secret`).
pub async fn secret_base64(
    store: &(impl ProjectStore + WebhookStore + ?Sized),
    vault: &Vault,
    project_id: &str,
) -> Result<String, SubscriptionError> {
    let secrets = signing_secrets(store, vault, project_id).await?;
    Ok(STANDARD.encode(secrets.current.expose_secret()))
}

/// Replaces the signing secret with 32 new random bytes; the old one keeps signing
/// beside it for [`ROTATION_GRACE`]. Returns the new secret, base64.
pub async fn rotate_secret(
    store: &(impl ProjectStore + WebhookStore + ?Sized),
    vault: &Vault,
    clock: &Clock,
    project_id: &str,
) -> Result<String, SubscriptionError> {
    // A concurrent rotation wins the compare-and-swap; try again on top of it.
    for _ in 0..5 {
        let project = store
            .project_by_id(project_id)
            .await?
            .ok_or(SubscriptionError::NotFound)?;
        let old = vault
            .open(current_slot(project_id), &project.webhook_secret)
            .map_err(|_| SubscriptionError::Secret)?;
        let mut fresh = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut fresh);
        let new_sealed = vault.seal(current_slot(project_id), &fresh);
        let previous = vault.seal(previous_slot(project_id), old.expose_secret());
        let until = clock.now()
            + chrono::Duration::from_std(ROTATION_GRACE).unwrap_or(chrono::Duration::zero());
        if store
            .rotate_project_webhook_secret(
                project_id,
                &project.webhook_secret,
                &new_sealed,
                &previous,
                until,
            )
            .await?
        {
            return Ok(STANDARD.encode(fresh));
        }
    }
    Err(SubscriptionError::Store(StoreError::Conflict {
        constraint: "projects_webhook_secret",
    }))
}
