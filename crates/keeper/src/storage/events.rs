//! A connection's event log and the outbox of outgoing-webhook events (DESIGN.md §3
//! `connection_event`, `outbox_event`): both written in the transaction of their
//! cause, by the helpers here.

use chrono::{DateTime, Utc};

use super::sql::{keyset, ots, page_of, ts, Row, Tx};
use super::{
    ConnectionEventRow, ConnectionRow, NewConnectionEvent, OutboxEventRow, OutboxSource, Page,
    PageRequest, StoreError, StoreResult,
};

/// Filters of the project's connection logs; ranges are inclusive.
#[derive(Debug, Clone, Default)]
pub struct ConnectionEventFilter {
    pub connection_id: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

store_trait! {
    pub trait EventStore {
        /// `NotFound` when the connection does not exist.
        async fn insert_connection_event(&self, connection_id: &str, event: &NewConnectionEvent)
            -> StoreResult<()> {
            let now = self.now().await?;
            let mut tx = self.begin().await?;
            if !write_connection_event(&mut tx, connection_id, event, now).await? {
                return Err(StoreError::NotFound);
            }
            tx.commit().await
        }

        /// Newest first.
        async fn list_connection_events(&self, project_id: &str, connection_id: &str,
            page: &PageRequest) -> StoreResult<Page<ConnectionEventRow>> {
            let (cmp, order) = keyset(page);
            let after = page.cursor.as_ref().map(|c| {
                super::parse_event_cursor_id(&c.id).ok_or_else(|| {
                    StoreError::Database(sqlx::Error::InvalidArgument(format!(
                        "connection event cursor id {:?} is not a number", c.id)))
                })
            }).transpose()?;
            let items = sql!(all &mut self.conn().await?, connection_event_from_row,
                &format!("SELECT id, connection_id, kind, message, data, created_at \
                          FROM connection_events WHERE project_id = $1 AND connection_id = $2 \
                          AND ($3 IS NULL OR id {cmp} $3) ORDER BY id {order} LIMIT $4"),
                project_id, connection_id, after, i64::from(page.limit) + 1)?;
            Ok(page_of(items, page))
        }

        /// The connection logs of the whole project matching `filter`, newest first;
        /// cursors carry the event's id.
        async fn list_project_connection_events(&self, project_id: &str,
            filter: &ConnectionEventFilter, page: &PageRequest)
            -> StoreResult<Page<ConnectionEventRow>> {
            let (cmp, order) = keyset(page);
            let after = page.cursor.as_ref().map(|c| {
                super::parse_event_cursor_id(&c.id).ok_or_else(|| {
                    StoreError::Database(sqlx::Error::InvalidArgument(format!(
                        "connection event cursor id {:?} is not a number", c.id)))
                })
            }).transpose()?;
            let items = sql!(all &mut self.conn().await?, connection_event_from_row,
                &format!("SELECT id, connection_id, kind, message, data, created_at \
                          FROM connection_events WHERE project_id = $1 \
                          AND ($2 IS NULL OR connection_id = $2) \
                          AND ($3 IS NULL OR created_at >= $3) \
                          AND ($4 IS NULL OR created_at <= $4) \
                          AND ($5 IS NULL OR id {cmp} $5) ORDER BY id {order} LIMIT $6"),
                project_id, &filter.connection_id, ots(filter.created_after),
                ots(filter.created_before), after, i64::from(page.limit) + 1)?;
            Ok(page_of(items, page))
        }

        /// Newest first; for tests and the delivery worker.
        async fn list_outbox_events(&self, project_id: &str, limit: u32)
            -> StoreResult<Vec<OutboxEventRow>> {
            sql!(all &mut self.conn().await?, outbox_event_from_row,
                &format!("SELECT {OUTBOX_COLUMNS} FROM outbox_events WHERE project_id = $1 \
                          ORDER BY created_at DESC, id DESC LIMIT $2"),
                project_id, i64::from(limit))
        }
    }
}

pub(super) const OUTBOX_COLUMNS: &str =
    "id, project_id, \"trigger\", payload, created_at, dispatched_at";

fn connection_event_from_row(row: &impl Row) -> StoreResult<ConnectionEventRow> {
    from_row!(row => ConnectionEventRow { id, connection_id, kind, message, data, created_at })
}

pub(super) fn outbox_event_from_row(row: &impl Row) -> StoreResult<OutboxEventRow> {
    from_row!(row => OutboxEventRow {
        id, project_id, trigger, payload, created_at, dispatched_at
    })
}

/// Appends `event` to connection `connection_id`'s log; false when it does not exist.
pub(super) async fn write_connection_event(
    tx: &mut Tx,
    connection_id: &str,
    event: &NewConnectionEvent,
    at: DateTime<Utc>,
) -> StoreResult<bool> {
    sql!(one_changed tx,
        "INSERT INTO connection_events (project_id, connection_id, kind, message, data, \
         created_at) SELECT project_id, id, $1, $2, $3, $4 FROM zoom_oauth_connections \
         WHERE id = $5",
        &event.kind, &event.message, event.data.as_ref(), ts(at), connection_id)
}

/// Appends `event` to the log of connection `row` (as a write just left it) and, when
/// given, the outbox event `outbox` makes of the row.
pub(super) async fn write_connection_change(
    tx: &mut Tx,
    row: &ConnectionRow,
    event: &NewConnectionEvent,
    outbox: Option<&dyn OutboxSource>,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    write_connection_event(tx, &row.id, event, at).await?;
    if let Some(outbox) = outbox.map(|o| o.event_for(row)) {
        sql!(execute tx,
            "INSERT INTO outbox_events (id, project_id, \"trigger\", payload, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
            uuid::Uuid::new_v4().to_string(), &row.project_id, &outbox.trigger, &outbox.payload,
            ts(at))?;
    }
    Ok(())
}
