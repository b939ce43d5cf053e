//! Projects and their API keys (DESIGN.md §3 `project`, `api_key`).

use chrono::{DateTime, Utc};

use super::sql::{ots, ts, Row, SqlStore, Tx};
use super::{Sealed, StoreResult};

#[derive(Debug, Clone)]
pub struct ProjectRow {
    pub id: String,
    pub name: String,
    pub webhook_secret: Sealed,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    pub id: String,
    pub project_id: String,
    pub name: String,
    /// SHA-256 of the full key; the key itself is never stored.
    pub key_hash: Vec<u8>,
    /// The first characters of the key, shown so a person can tell keys apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
}

store_trait! {
    pub trait ProjectStore {
        /// `Conflict { constraint: "projects_name" }` when the name is taken.
        async fn insert_project(&self, project: &ProjectRow) -> StoreResult<()> {
            let mut tx = self.begin().await?;
            insert_project_in(&mut tx, project).await?;
            tx.commit().await
        }

        async fn project_by_id(&self, id: &str) -> StoreResult<Option<ProjectRow>> {
            sql!(optional &mut self.conn().await?, project_from_row,
                &format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1"), id)
        }

        async fn project_by_name(&self, name: &str) -> StoreResult<Option<ProjectRow>> {
            sql!(optional &mut self.conn().await?, project_from_row,
                &format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE name = $1"), name)
        }

        async fn count_projects(&self) -> StoreResult<i64> {
            sql!(scalar_one &mut self.conn().await?, "SELECT COUNT(*) FROM projects")
        }

        /// Creates `project` and `key` atomically, but only when no project exists yet
        /// (first start). Returns false, changing nothing, when one already exists —
        /// safe when several processes start at once.
        async fn bootstrap_first_project(&self, project: &ProjectRow, key: &ApiKeyRow)
            -> StoreResult<bool> {
            let mut tx = self.begin().await?;
            // Held until commit: the check below sees any earlier bootstrap's project.
            SqlStore::lock_bootstrap(&mut tx).await?;
            let exists: bool = sql!(scalar_one &mut tx, "SELECT EXISTS (SELECT 1 FROM projects)")?;
            if exists {
                return Ok(false);
            }
            insert_project_in(&mut tx, project).await?;
            insert_api_key_in(&mut tx, key).await?;
            tx.commit().await?;
            Ok(true)
        }

        async fn insert_api_key(&self, key: &ApiKeyRow) -> StoreResult<()> {
            let mut tx = self.begin().await?;
            insert_api_key_in(&mut tx, key).await?;
            tx.commit().await
        }

        async fn api_key_by_hash(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKeyRow>> {
            sql!(optional &mut self.conn().await?, api_key_from_row,
                &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"), key_hash)
        }

        /// Every project, by name.
        async fn list_projects(&self) -> StoreResult<Vec<ProjectRow>> {
            sql!(all &mut self.conn().await?, project_from_row,
                &format!("SELECT {PROJECT_COLUMNS} FROM projects ORDER BY name"))
        }

        /// The project's API keys, newest first (enabled and disabled).
        async fn list_api_keys(&self, project_id: &str) -> StoreResult<Vec<ApiKeyRow>> {
            sql!(all &mut self.conn().await?, api_key_from_row,
                &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE project_id = $1 \
                          ORDER BY created_at DESC, id DESC"), project_id)
        }

        /// Disables the key from `at` on; false when the project has no such key.
        /// Disabling a disabled key keeps its first time.
        async fn disable_api_key(&self, project_id: &str, id: &str, at: DateTime<Utc>)
            -> StoreResult<bool> {
            sql!(one_changed &mut self.conn().await?,
                "UPDATE api_keys SET disabled_at = COALESCE(disabled_at, $1) \
                 WHERE project_id = $2 AND id = $3",
                ts(at), project_id, id)
        }

        /// Records use; callers throttle how often they call it.
        async fn touch_api_key(&self, id: &str, at: DateTime<Utc>) -> StoreResult<()> {
            sql!(execute &mut self.conn().await?,
                "UPDATE api_keys SET last_used_at = $1 \
                 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
                ts(at), id)?;
            Ok(())
        }
    }
}

const PROJECT_COLUMNS: &str = "id, name, webhook_secret, created_at";
const API_KEY_COLUMNS: &str =
    "id, project_id, name, key_hash, prefix, created_at, last_used_at, disabled_at";

fn project_from_row(row: &impl Row) -> StoreResult<ProjectRow> {
    from_row!(row => ProjectRow { id, name, webhook_secret, created_at })
}

fn api_key_from_row(row: &impl Row) -> StoreResult<ApiKeyRow> {
    from_row!(row => ApiKeyRow {
        id, project_id, name, key_hash, prefix, created_at, last_used_at, disabled_at
    })
}

async fn insert_project_in(tx: &mut Tx, p: &ProjectRow) -> StoreResult<()> {
    sql!(execute tx,
        &format!("INSERT INTO projects ({PROJECT_COLUMNS}) VALUES ($1, $2, $3, $4)"),
        &p.id, &p.name, &p.webhook_secret.0, ts(p.created_at))?;
    Ok(())
}

async fn insert_api_key_in(tx: &mut Tx, k: &ApiKeyRow) -> StoreResult<()> {
    sql!(execute tx,
        &format!("INSERT INTO api_keys ({API_KEY_COLUMNS}) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
        &k.id, &k.project_id, &k.name, &k.key_hash, &k.prefix, ts(k.created_at),
        ots(k.last_used_at), ots(k.disabled_at))?;
    Ok(())
}
