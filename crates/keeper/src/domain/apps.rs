//! Zoom OAuth apps: a project's Zoom app credentials (DESIGN.md §4 "Zoom OAuth apps").
//!
//! Rules kept here: secrets are trimmed and must not be blank; credentials are
//! checked against Zoom before anything is stored; client_id is unique per project
//! and never changes; an app with connections cannot be deleted.
//!
//! [`get`], [`list`] and [`delete`] take the [`AppStore`] alone. [`create`] and
//! [`update`] take the [`Keeper`]: they check credentials with Zoom through its
//! gateway, and `update` starts the app's connection re-check, which runs on it.

use std::collections::BTreeMap;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use crate::core::ids::IdKind;
use crate::core::vault::Slot;
use crate::core::zoom_gateway::CredentialCheck;
use crate::domain::recheck;
use crate::storage::{
    AppEventFilter, AppEventRow, AppFilter, AppKind, AppRow, AppSecretsUpdate, AppStore,
    DeleteAppOutcome, Page, PageRequest, StoreError,
};
use crate::Keeper;

const MAX_CLIENT_ID_CHARS: usize = 200;
const MAX_SECRET_CHARS: usize = 500;

pub struct NewApp {
    pub client_id: String,
    pub client_secret: SecretString,
    pub webhook_secret: Option<SecretString>,
    pub kind: AppKind,
}

/// A change to an app. `webhook_secret: Some(None)` removes the webhook secret.
#[derive(Default)]
pub struct AppChange {
    /// Present only to be refused if it differs: client_id never changes.
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub webhook_secret: Option<Option<SecretString>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid input")]
    Invalid(BTreeMap<String, Vec<String>>),
    #[error("no such app in this project")]
    NotFound,
    #[error("Zoom rejected the client credentials")]
    InvalidClientCredentials,
    #[error("Zoom could not be reached")]
    ZoomUnavailable,
    #[error("an app with this client_id already exists in the project")]
    DuplicateClientId,
    #[error("client_id cannot change")]
    ClientIdImmutable,
    #[error("the app still has connections")]
    HasConnections,
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Problems(BTreeMap<String, Vec<String>>);

impl Problems {
    fn new() -> Self {
        Problems(BTreeMap::new())
    }
    fn add(&mut self, field: &str, problem: &str) {
        self.0
            .entry(field.to_owned())
            .or_default()
            .push(problem.to_owned());
    }
    fn into_result(self) -> Result<(), AppError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(AppError::Invalid(self.0))
        }
    }
}

/// Trims a secret and records a problem if it is blank or too long.
fn clean_secret(field: &str, raw: &SecretString, problems: &mut Problems) -> Option<SecretString> {
    let trimmed = raw.expose_secret().trim();
    if trimmed.is_empty() {
        problems.add(field, "Must not be empty or only whitespace.");
        return None;
    }
    if trimmed.chars().count() > MAX_SECRET_CHARS {
        problems.add(
            field,
            &format!("Must be at most {MAX_SECRET_CHARS} characters."),
        );
        return None;
    }
    Some(SecretString::from(trimmed.to_owned()))
}

fn check_result(outcome: CredentialCheck) -> Result<(), AppError> {
    match outcome {
        CredentialCheck::Accepted => Ok(()),
        CredentialCheck::Rejected => Err(AppError::InvalidClientCredentials),
        CredentialCheck::Unavailable => Err(AppError::ZoomUnavailable),
    }
}

pub async fn create(keeper: &Keeper, project_id: &str, new: NewApp) -> Result<AppRow, AppError> {
    let mut problems = Problems::new();
    let client_id = new.client_id.trim().to_owned();
    if client_id.is_empty() {
        problems.add("client_id", "Must not be empty or only whitespace.");
    } else if client_id.chars().count() > MAX_CLIENT_ID_CHARS {
        problems.add(
            "client_id",
            &format!("Must be at most {MAX_CLIENT_ID_CHARS} characters."),
        );
    }
    let client_secret = clean_secret("client_secret", &new.client_secret, &mut problems);
    let webhook_secret = new
        .webhook_secret
        .as_ref()
        .and_then(|s| clean_secret("webhook_secret", s, &mut problems));
    problems.into_result()?;
    let Some(client_secret) = client_secret else {
        return Err(AppError::Invalid(BTreeMap::new()));
    };

    check_result(
        keeper
            .zoom
            .check_client_credentials(&client_id, &client_secret)
            .await,
    )?;

    let id = IdKind::App.generate();
    let now = keeper.clock.now();
    let row = AppRow {
        client_secret: keeper.vault.seal(
            Slot::app_client_secret(&id),
            client_secret.expose_secret().as_bytes(),
        ),
        webhook_secret: webhook_secret.map(|s| {
            keeper
                .vault
                .seal(Slot::app_webhook_secret(&id), s.expose_secret().as_bytes())
        }),
        id,
        project_id: project_id.to_owned(),
        client_id,
        kind: new.kind,
        created_at: now,
        updated_at: now,
        last_verified_webhook_received_at: None,
        last_unverified_webhook_received_at: None,
        webhook_events_stale_since: None,
        webhook_last_validation_at: None,
        connection_count: 0,
    };
    match keeper.store.insert_app(&row).await {
        Ok(()) => {
            let kind = match row.kind {
                AppKind::UserLevel => "user-level",
                AppKind::AccountLevel => "account-level",
            };
            let message = format!(
                "App added ({kind}, client ID {}); Zoom accepted its client credentials.{}",
                row.client_id,
                if row.webhook_secret.is_some() {
                    ""
                } else {
                    " It has no webhook secret yet: local recording tokens need the meeting index that Zoom's webhooks keep."
                }
            );
            note(
                &*keeper.store,
                project_id,
                &row.id,
                "created",
                &message,
                None,
            )
            .await;
            Ok(row)
        }
        Err(StoreError::Conflict {
            constraint: "apps_project_client_id",
        }) => Err(AppError::DuplicateClientId),
        Err(e) => Err(e.into()),
    }
}

pub async fn get(store: &dyn AppStore, project_id: &str, id: &str) -> Result<AppRow, AppError> {
    // An id of the wrong shape cannot exist; answer exactly as for a missing one.
    if !IdKind::App.matches(id) {
        return Err(AppError::NotFound);
    }
    store
        .get_app(project_id, id)
        .await?
        .ok_or(AppError::NotFound)
}

/// The project's apps matching `filter`, newest first.
pub async fn list_where(
    store: &dyn AppStore,
    project_id: &str,
    filter: &AppFilter,
    page: &PageRequest,
) -> Result<Page<AppRow>, AppError> {
    Ok(store.list_apps_filtered(project_id, filter, page).await?)
}

/// The project's app log matching `filter`, newest first.
pub async fn log(
    store: &dyn AppStore,
    project_id: &str,
    filter: &AppEventFilter,
    page: &PageRequest,
) -> Result<Page<AppEventRow>, AppError> {
    Ok(store.list_app_events(project_id, filter, page).await?)
}

/// Writes a line to app `app_id`'s log (a sentence a person can act on, never a
/// secret); with `once_per`, only if no line of this `kind` is newer than that.
/// Best effort: the log explains, it decides nothing.
pub async fn note(
    store: &dyn AppStore,
    project_id: &str,
    app_id: &str,
    kind: &str,
    message: &str,
    once_per: Option<std::time::Duration>,
) {
    if let Err(e) = store
        .add_app_event(project_id, app_id, kind, message, once_per)
        .await
    {
        tracing::warn!(app_id = %app_id, kind, error = %e, "writing a line of an app's log failed");
    }
}

pub async fn list(
    store: &dyn AppStore,
    project_id: &str,
    page: &PageRequest,
) -> Result<Page<AppRow>, AppError> {
    Ok(store.list_apps(project_id, page).await?)
}

/// Changes an app's secrets. A new client secret is checked against Zoom first;
/// the write that saves it also marks the app's re-check due, so the app's
/// connections that were disconnected because Zoom refused the old one
/// (`invalid_client`) are re-checked even if this process dies: at once, in the
/// background ([`recheck::start_now`]), so the answer does not wait for
/// them, or else by a worker's re-check loop.
pub async fn update(
    keeper: &Arc<Keeper>,
    project_id: &str,
    id: &str,
    change: AppChange,
) -> Result<AppRow, AppError> {
    let current = get(&*keeper.store, project_id, id).await?;
    if let Some(client_id) = &change.client_id {
        if client_id.trim() != current.client_id {
            return Err(AppError::ClientIdImmutable);
        }
    }
    let mut problems = Problems::new();
    let client_secret = change
        .client_secret
        .as_ref()
        .and_then(|s| clean_secret("client_secret", s, &mut problems));
    let webhook_secret = change.webhook_secret.as_ref().map(|maybe| {
        maybe
            .as_ref()
            .and_then(|s| clean_secret("webhook_secret", s, &mut problems))
    });
    problems.into_result()?;
    if client_secret.is_none() && webhook_secret.is_none() {
        return Ok(current);
    }

    let new_client_secret = client_secret.is_some();
    if let Some(secret) = &client_secret {
        check_result(
            keeper
                .zoom
                .check_client_credentials(&current.client_id, secret)
                .await,
        )?;
    }
    let update = AppSecretsUpdate {
        client_secret: client_secret.map(|s| {
            keeper
                .vault
                .seal(Slot::app_client_secret(id), s.expose_secret().as_bytes())
        }),
        webhook_secret: webhook_secret.map(|maybe| {
            maybe.map(|s| {
                keeper
                    .vault
                    .seal(Slot::app_webhook_secret(id), s.expose_secret().as_bytes())
            })
        }),
    };
    let row = keeper
        .store
        .update_app_secrets(project_id, id, &update, keeper.clock.now())
        .await?
        .ok_or(AppError::NotFound)?;
    if new_client_secret {
        note(&*keeper.store, project_id, id, "client_secret_changed",
            "Client secret changed; Zoom accepted it. Connections disconnected because Zoom refused the previous one are re-checked with it.",
            None).await;
        recheck::start_now(keeper.clone(), row.id.clone());
    }
    match &update.webhook_secret {
        Some(Some(_)) => note(&*keeper.store, project_id, id, "webhook_secret_changed",
            "Webhook secret (Zoom's Secret Token) changed; Zoom's webhooks are verified with it from now on.",
            None).await,
        Some(None) => note(&*keeper.store, project_id, id, "webhook_secret_removed",
            "Webhook secret removed: Zoom's webhooks to this app are refused until one is set.",
            None).await,
        None => {}
    }
    Ok(row)
}

pub async fn delete(store: &dyn AppStore, project_id: &str, id: &str) -> Result<(), AppError> {
    if !IdKind::App.matches(id) {
        return Err(AppError::NotFound);
    }
    match store.delete_app(project_id, id).await? {
        DeleteAppOutcome::Deleted => Ok(()),
        DeleteAppOutcome::NotFound => Err(AppError::NotFound),
        DeleteAppOutcome::HasConnections => Err(AppError::HasConnections),
    }
}
