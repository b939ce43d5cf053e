//! Projects: the tenant every other object belongs to.

use chrono::{DateTime, Utc};
use rand::RngCore;
use secrecy::SecretString;

use crate::core::clock::Clock;
use crate::core::ids::IdKind;
use crate::core::vault::{Slot, Vault};
use crate::domain::api_keys;
use crate::storage::{ProjectRow, ProjectStore, StoreError};

/// The project created on first start.
pub const DEFAULT_PROJECT_NAME: &str = "default";
const MAX_NAME_CHARS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("a project name must be 1 to {MAX_NAME_CHARS} characters, not blank, without control characters")]
    InvalidName,
    #[error("a project named {0:?} already exists")]
    NameTaken(String),
    #[error("no project has the id or name {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new project row with a fresh sealed webhook signing secret (32 random bytes).
fn new_project_row(vault: &Vault, name: &str, now: DateTime<Utc>) -> ProjectRow {
    let id = IdKind::Project.generate();
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let sealed = vault.seal(Slot::project_webhook_secret(&id), &secret);
    ProjectRow {
        id,
        name: name.to_owned(),
        webhook_secret: sealed,
        created_at: now,
    }
}

fn validate_name(name: &str) -> Result<&str, ProjectError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.contains(char::is_control) {
        return Err(ProjectError::InvalidName);
    }
    Ok(name)
}

pub async fn create(
    store: &dyn ProjectStore,
    vault: &Vault,
    clock: &Clock,
    name: &str,
) -> Result<ProjectRow, ProjectError> {
    let name = validate_name(name)?;
    let row = new_project_row(vault, name, clock.now());
    match store.insert_project(&row).await {
        Ok(()) => Ok(row),
        Err(StoreError::Conflict { .. }) => Err(ProjectError::NameTaken(name.to_owned())),
        Err(e) => Err(e.into()),
    }
}

/// Finds a project by id (`prj_…`) or, failing that, by name.
pub async fn find(store: &dyn ProjectStore, id_or_name: &str) -> Result<ProjectRow, ProjectError> {
    let wanted = id_or_name.trim();
    if IdKind::Project.matches(wanted) {
        if let Some(p) = store.project_by_id(wanted).await? {
            return Ok(p);
        }
    }
    store
        .project_by_name(wanted)
        .await?
        .ok_or_else(|| ProjectError::NotFound(wanted.to_owned()))
}

/// On an empty database, creates the `default` project with one API key and returns
/// the key (to be shown once). Returns `None` when any project exists — also when
/// another process won the race.
pub async fn bootstrap(
    store: &dyn ProjectStore,
    vault: &Vault,
    clock: &Clock,
) -> Result<Option<SecretString>, ProjectError> {
    if store.count_projects().await? > 0 {
        return Ok(None);
    }
    let project = new_project_row(vault, DEFAULT_PROJECT_NAME, clock.now());
    let key = api_keys::generate(&project.id, "initial", project.created_at);
    if store.bootstrap_first_project(&project, &key.row).await? {
        Ok(Some(key.key))
    } else {
        Ok(None)
    }
}

/// Makes and stores a new API key for a project; returns the key, to be shown once.
pub async fn create_api_key(
    store: &dyn ProjectStore,
    clock: &Clock,
    project: &ProjectRow,
    name: &str,
) -> Result<SecretString, ProjectError> {
    let key = api_keys::generate(&project.id, name.trim(), clock.now());
    store.insert_api_key(&key.row).await?;
    Ok(key.key)
}
