//! Re-sealing every stored secret under a new key (`zoomkeeper keys rotate`).

use super::sql::pair;
use super::{Sealed, SealedField, StoreError, StoreResult};

/// Every sealed column, sorted by table, then column: the order
/// [`VaultStore::sealed_fields`] walks them. Named once, in the vault.
pub use crate::core::vault::SEALED_COLUMNS;

store_trait! {
    pub trait VaultStore {
        /// Sealed values in a stable order, `limit` at a time, after `after`
        /// (`(table, column, row_id)` of the last one seen).
        async fn sealed_fields(&self, after: Option<(&str, &str, &str)>, limit: u32)
            -> StoreResult<Vec<SealedField>> {
            let mut out = Vec::new();
            for (index, (table, column)) in SEALED_COLUMNS.iter().enumerate() {
                let after_row = match after {
                    None => None,
                    Some((t, c, r)) => match sealed_column_index(t, c) {
                        Some(i) if index < i => continue,
                        Some(i) if index == i => Some(r),
                        Some(_) => None,
                        // Unknown column: order by name like the list does.
                        None if (*table, *column) <= (t, c) => continue,
                        None => None,
                    },
                };
                let remaining = i64::from(limit) - out.len() as i64;
                if remaining <= 0 {
                    break;
                }
                let rows = sql!(all &mut self.conn().await?, |r| pair(r, "id", "value"),
                    &format!("SELECT id, {column} AS value FROM {table} \
                              WHERE {column} IS NOT NULL AND ($1 IS NULL OR id > $1) \
                              ORDER BY id LIMIT $2"),
                    after_row, remaining)?;
                out.extend(rows.into_iter().map(|(row_id, value)| SealedField {
                    table,
                    column,
                    row_id,
                    value: Sealed(value),
                }));
            }
            Ok(out)
        }

        /// Replaces a sealed value if it still equals `field.value`; false if it changed.
        async fn reseal_field(&self, field: &SealedField, new_value: &Sealed) -> StoreResult<bool> {
            let (table, column) = sealed_column_index(field.table, field.column)
                .map(|i| SEALED_COLUMNS[i])
                .ok_or_else(|| {
                    StoreError::Database(sqlx::Error::InvalidArgument(format!(
                        "{}.{} is not a sealed column",
                        field.table, field.column
                    )))
                })?;
            sql!(one_changed &mut self.conn().await?,
                &format!("UPDATE {table} SET {column} = $1 WHERE id = $2 AND {column} = $3"),
                &new_value.0, &field.row_id, &field.value.0)
        }
    }
}

/// The position of a sealed column in [`SEALED_COLUMNS`].
fn sealed_column_index(table: &str, column: &str) -> Option<usize> {
    SEALED_COLUMNS
        .iter()
        .position(|(t, c)| *t == table && *c == column)
}
