//! The one implementation of the store traits, [`SqlStore`], over SQLite or
//! PostgreSQL. Each statement is written once (`$n` placeholders, [`Ts`] for time)
//! and [`run!`] expands it once per database. Where the dialects really differ the
//! arm is named here: [`Lock`] clauses, `BEGIN IMMEDIATE`, the first-start lock,
//! the SQLite receipt writer and the clock ([`SqlStore::now`]).
//!
//! SQLite: one file, WAL, foreign keys on, a busy timeout so writers queue, and
//! `synchronous=FULL` — a commit is on disk before the call returns, so a crash
//! cannot take back a rotated refresh token Zoom has already replaced. Only the
//! receipt writer ([`super::sqlite_receipts`]) runs `NORMAL`. Timestamps are INTEGER
//! microseconds since the Unix epoch. PostgreSQL: any number of processes share one
//! database; what must happen once is decided under row locks or `SKIP LOCKED`.

use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Database, Decode, Encode, Postgres, Sqlite, Transaction, Type};
use tokio::sync::mpsc;

use super::pg_receipts;
use super::sqlite_receipts::{self, ReceiptJob};
use super::{is_postgres_url, Direction, Page, PageRequest, Sealed, StoreError, StoreResult};
use crate::core::clock::Clock;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a SQLite statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const SQLITE_CONNECTIONS: u32 = 8;
const POSTGRES_CONNECTIONS: u32 = 16;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Advisory lock serialising first-start bootstrap on PostgreSQL ("zk-boot").
const BOOTSTRAP_LOCK: i64 = 0x007a_6b2d_626f_6f74;

/// One of each database's things: pools, connections, transactions.
#[derive(Debug, Clone)]
pub enum Either<S, P> {
    Sqlite(S),
    Postgres(P),
}

pub(super) type Conn = Either<PoolConnection<Sqlite>, PoolConnection<Postgres>>;
pub(super) type Tx = Either<Transaction<'static, Sqlite>, Transaction<'static, Postgres>>;

/// Runs `$body` with `$c` bound to the `&mut` connection of `$on` (a `&mut Conn` or
/// `&mut Tx`): the body is written once and compiled once per database.
macro_rules! run {
    ($on:expr, |$c:ident| $body:expr) => {
        match $on {
            $crate::storage::sql::Either::Sqlite(x) => {
                let $c = &mut **x;
                $body
            }
            $crate::storage::sql::Either::Postgres(x) => {
                let $c = &mut **x;
                $body
            }
        }
    };
}

/// `sqlx::query($sql)` with each argument bound in order.
macro_rules! query {
    ($sql:expr $(, $arg:expr)* $(,)?) => { sqlx::query($sql)$(.bind($arg))* };
}

/// One statement: `optional`, `one` or `all` rows through `$decode`; a `page` of them
/// (the query ends in [`page_clause`], whose values are bound after `$arg`s); `execute`
/// (rows affected); `one_changed` (whether exactly one row changed); `scalar_one` /
/// `scalar_optional` / `scalar_all` (type from the caller).
macro_rules! sql {
    (optional $on:expr, $decode:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        run!($on, |c| match query!($sql $(, $arg)*).fetch_optional(c).await {
            Ok(row) => row.as_ref().map($decode).transpose(),
            Err(e) => Err($crate::storage::StoreError::from(e)),
        })
    };
    (one $on:expr, $decode:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        run!($on, |c| match query!($sql $(, $arg)*).fetch_one(c).await {
            Ok(row) => $decode(&row),
            Err(e) => Err($crate::storage::StoreError::from(e)),
        })
    };
    (all $on:expr, $decode:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        run!($on, |c| match query!($sql $(, $arg)*).fetch_all(c).await {
            Ok(rows) => rows.iter().map($decode).collect::<$crate::storage::StoreResult<Vec<_>>>(),
            Err(e) => Err($crate::storage::StoreError::from(e)),
        })
    };
    (page $on:expr, $decode:expr, $page:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        sql!(all $on, $decode, $sql $(, $arg)*,
            $page.cursor.as_ref().map(|c| $crate::storage::sql::ts(c.created_at)),
            $page.cursor.as_ref().map_or("", |c| c.id.as_str()), i64::from($page.limit) + 1)
        .map(|items| $crate::storage::sql::page_of(items, $page))
    };
    (execute $on:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        run!($on, |c| query!($sql $(, $arg)*)
            .execute(c)
            .await
            .map(|done| done.rows_affected())
            .map_err($crate::storage::StoreError::from))
    };
    (one_changed $on:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        sql!(execute $on, $sql $(, $arg)*).map(|changed| changed == 1)
    };
    (scalar_one $($rest:tt)*) => { sql!(@scalar fetch_one $($rest)*) };
    (scalar_optional $($rest:tt)*) => { sql!(@scalar fetch_optional $($rest)*) };
    (scalar_all $($rest:tt)*) => { sql!(@scalar fetch_all $($rest)*) };
    (@scalar $fetch:ident $on:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        run!($on, |c| sqlx::query_scalar($sql)$(.bind($arg))*
            .$fetch(c).await.map_err($crate::storage::StoreError::from))
    };
}

/// A store trait and its implementation for [`SqlStore`], from one text: each method
/// is written once, its doc comment (the contract, which goes on the trait) above its
/// signature and its SQL below.
macro_rules! store_trait {
    (
        $(#[$trait_doc:meta])*
        pub trait $name:ident {
            $(
                $(#[$doc:meta])*
                async fn $method:ident($($params:tt)*) -> $ret:ty $body:block
            )*
        }
    ) => {
        $(#[$trait_doc])*
        #[async_trait::async_trait]
        pub trait $name: Send + Sync + 'static {
            $(
                $(#[$doc])*
                async fn $method($($params)*) -> $ret;
            )*
        }

        #[async_trait::async_trait]
        impl $name for $crate::storage::SqlStore {
            $(
                async fn $method($($params)*) -> $ret $body
            )*
        }
    };
}

/// The store over one database. `sqlite::SqliteStore` and `postgres::PostgresStore`
/// name it too; [`SqlStore::connect`] picks the database from the URL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(super) pool: Either<SqlitePool, PgPool>,
    local: Option<Arc<Local>>,
    /// The Zoom webhook receipt writers: SQLite's one thread
    /// ([`sqlite_receipts`]), or PostgreSQL's tasks ([`pg_receipts`]).
    receipts: Arc<[mpsc::Sender<ReceiptJob>]>,
    clock: Clock,
}

/// What only SQLite has.
#[derive(Debug)]
struct Local {
    /// The last time [`SqlStore::now`] answered, in microseconds.
    last_now: AtomicI64,
}

impl SqlStore {
    /// Opens the database `url_or_path` names ([`is_postgres_url`]); does not migrate.
    /// SQLite: a `sqlite:` URL or a plain path, created (with its directory) when
    /// missing; an in-memory database is refused — it would lose every credential at
    /// exit, and the receipt writer needs a file it can open too.
    pub async fn connect(url_or_path: &str) -> StoreResult<Self> {
        if is_postgres_url(url_or_path) {
            let pool = PgPoolOptions::new()
                .max_connections(POSTGRES_CONNECTIONS)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect(url_or_path)
                .await?;
            return Ok(SqlStore {
                receipts: pg_receipts::spawn(&pool).into(),
                pool: Either::Postgres(pool),
                local: None,
                clock: Clock::system(),
            });
        }
        if url_or_path.contains(":memory:") || url_or_path.contains("mode=memory") {
            return Err(configuration(
                "an in-memory SQLite database would lose every stored credential when the \
                 process exits; give a database file path instead",
            ));
        }
        let options = if crate::core::config::Database::named_by(url_or_path)
            == Some(crate::core::config::Database::Sqlite)
        {
            SqliteConnectOptions::from_str(url_or_path)?
        } else {
            SqliteConnectOptions::new().filename(url_or_path)
        }
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true);
        let path: PathBuf = options.get_filename().to_path_buf();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    configuration(&format!(
                        "creating the database directory {}: {e}",
                        dir.display()
                    ))
                })?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(SQLITE_CONNECTIONS)
            // A local file has no network to have broken: no ping before each use.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(SqlStore {
            pool: Either::Sqlite(pool),
            receipts: [sqlite_receipts::spawn(&path, BUSY_TIMEOUT)?].into(),
            local: Some(Arc::new(Local {
                last_now: AtomicI64::new(i64::MIN),
            })),
            clock: Clock::system(),
        })
    }

    /// Brings the schema up to date. On PostgreSQL sqlx holds an advisory lock while
    /// migrating, so concurrent starts are safe.
    pub async fn migrate(&self) -> StoreResult<()> {
        match &self.pool {
            Either::Sqlite(p) => SQLITE_MIGRATOR.run(p).await?,
            Either::Postgres(p) => POSTGRES_MIGRATOR.run(p).await?,
        }
        Ok(())
    }

    /// The SQLite pool, for tests that need raw access.
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.pool {
            Either::Sqlite(p) => Some(p),
            Either::Postgres(_) => None,
        }
    }

    /// The PostgreSQL pool, for tests that need raw access.
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.pool {
            Either::Postgres(p) => Some(p),
            Either::Sqlite(_) => None,
        }
    }

    pub(super) async fn conn(&self) -> StoreResult<Conn> {
        Ok(match &self.pool {
            Either::Sqlite(p) => Either::Sqlite(p.acquire().await?),
            Either::Postgres(p) => Either::Postgres(p.acquire().await?),
        })
    }

    /// A transaction. On SQLite it takes the write lock up front (`BEGIN
    /// IMMEDIATE`), so one that reads before it writes never fails busy halfway.
    pub(super) async fn begin(&self) -> StoreResult<Tx> {
        Ok(match &self.pool {
            Either::Sqlite(p) => Either::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Either::Postgres(p) => Either::Postgres(p.begin().await?),
        })
    }

    /// On PostgreSQL, waits in `tx` for any other first-start bootstrap to commit.
    pub(super) async fn lock_bootstrap(tx: &mut Tx) -> StoreResult<()> {
        if let Either::Postgres(t) = tx {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(BOOTSTRAP_LOCK)
                .execute(&mut **t)
                .await?;
        }
        Ok(())
    }

    /// The receipt writer that takes this receipt and change.
    pub(super) fn receipt_writer(
        &self,
        app_id: &str,
        dedupe_key: &str,
        change: &super::meetings::MeetingIndexChange,
    ) -> Option<&mpsc::Sender<ReceiptJob>> {
        let writers = self.receipts.len();
        let at = match writers {
            0 => return None,
            1 => 0,
            _ => pg_receipts::writer_for(app_id, dedupe_key, change, writers),
        };
        self.receipts.get(at)
    }

    /// The clock this store and everything built on it measures time on.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The database clock, to microseconds ([`Clock`]). SQLite runs in this process,
    /// so its clock is this process's, made strictly increasing, so rows written one
    /// after another never share a time; PostgreSQL's is the server's, moved by as
    /// much as this store's clock was advanced.
    pub async fn now(&self) -> StoreResult<DateTime<Utc>> {
        match (&self.pool, &self.local) {
            (Either::Sqlite(_), Some(local)) => {
                let wall = self.clock.now().timestamp_micros();
                let previous = local
                    .last_now
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                        Some(wall.max(last.saturating_add(1)))
                    })
                    .unwrap_or(wall);
                let micros = wall.max(previous.saturating_add(1));
                Ok(DateTime::from_timestamp_micros(micros).unwrap_or_else(|| self.clock.now()))
            }
            _ => {
                let at: DateTime<Utc> =
                    sql!(scalar_one &mut self.conn().await?, "SELECT clock_timestamp()")?;
                Ok(truncate_to_micros(at + self.clock.ahead()))
            }
        }
    }
}

/// Row-locking clauses ([`Either::lock`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum Lock {
    Update,
    Share,
    SkipLocked,
}

impl<S, P> Either<S, P> {
    /// A row-locking clause to append to a `SELECT` on this pool's (or transaction's)
    /// database. SQLite needs none: its transactions begin holding the one write lock.
    pub(super) fn lock(&self, lock: Lock) -> &'static str {
        match (self, lock) {
            (Either::Sqlite(_), _) => "",
            (Either::Postgres(_), Lock::Update) => " FOR UPDATE",
            (Either::Postgres(_), Lock::Share) => " FOR SHARE",
            (Either::Postgres(_), Lock::SkipLocked) => " FOR UPDATE SKIP LOCKED",
        }
    }
}

impl Tx {
    pub(super) async fn commit(self) -> StoreResult<()> {
        match self {
            Either::Sqlite(t) => t.commit().await?,
            Either::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
}

#[async_trait]
impl super::DatabaseStore for SqlStore {
    fn backend(&self) -> &'static str {
        match self.pool {
            Either::Sqlite(_) => "sqlite",
            Either::Postgres(_) => "postgres",
        }
    }

    async fn migrate(&self) -> StoreResult<()> {
        SqlStore::migrate(self).await
    }

    async fn ping(&self) -> StoreResult<()> {
        sql!(execute &mut self.conn().await?, "SELECT 1")?;
        Ok(())
    }

    async fn now(&self) -> StoreResult<DateTime<Utc>> {
        SqlStore::now(self).await
    }

    fn clock(&self) -> &Clock {
        SqlStore::clock(self)
    }
}

fn configuration(message: &str) -> StoreError {
    StoreError::Database(sqlx::Error::Configuration(message.to_owned().into()))
}

/// Timestamps are stored with microsecond precision on both databases; values are
/// truncated (not rounded) on the way in so both agree.
pub(super) fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// A point in time as both databases store it: INTEGER microseconds since the Unix
/// epoch on SQLite, `timestamptz` on PostgreSQL. Bind with [`ts`]; read with
/// [`Row::get`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ts(DateTime<Utc>);

pub(super) fn ts(at: DateTime<Utc>) -> Ts {
    Ts(truncate_to_micros(at))
}

pub(super) fn ots(at: Option<DateTime<Utc>>) -> Option<Ts> {
    at.map(ts)
}

/// `now + d` as a bindable time, saturating.
pub(super) fn after(now: DateTime<Utc>, d: Duration) -> Ts {
    let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    ts(now
        .checked_add_signed(d)
        .unwrap_or(DateTime::<Utc>::MAX_UTC))
}

/// `now - d` as a bindable time, saturating.
pub(super) fn before(now: DateTime<Utc>, d: Duration) -> Ts {
    let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    ts(now
        .checked_sub_signed(d)
        .unwrap_or(DateTime::<Utc>::MIN_UTC))
}

/// `$t` is stored on `$db` as `$as`: `to` gives that value, `from` (when the type is
/// read back) turns it into `$t`.
macro_rules! stored_as {
    ($t:ty, $db:ty, $as:ty, to: |$v:ident| $to:expr $(, from: |$s:ident| $from:expr)?) => {
        impl Type<$db> for $t {
            fn type_info() -> <$db as Database>::TypeInfo {
                <$as as Type<$db>>::type_info()
            }
            fn compatible(ty: &<$db as Database>::TypeInfo) -> bool {
                <$as as Type<$db>>::compatible(ty)
            }
        }

        impl<'q> Encode<'q, $db> for $t {
            fn encode_by_ref(
                &self,
                buf: &mut <$db as Database>::ArgumentBuffer<'q>,
            ) -> Result<IsNull, BoxDynError> {
                let $v = self;
                <$as as Encode<'q, $db>>::encode($to, buf)
            }
        }

        $(impl<'r> Decode<'r, $db> for $t {
            fn decode(value: <$db as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                let $s = <$as as Decode<'r, $db>>::decode(value)?;
                $from
            }
        })?
    };
}

stored_as!(Ts, Sqlite, i64, to: |t| t.0.timestamp_micros(), from: |micros| {
    DateTime::from_timestamp_micros(micros)
        .map(Ts)
        .ok_or_else(|| format!("timestamp {micros} out of range").into())
});
stored_as!(Ts, Postgres, DateTime<Utc>, to: |t| t.0, from: |at| Ok(Ts(at)));

/// A length of time added to a stored time in SQL (`start_time + $n`): INTEGER
/// microseconds on SQLite, an `interval` on PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span(pub Duration);

stored_as!(Span, Sqlite, i64, to: |s| i64::try_from(s.0.as_micros()).unwrap_or(i64::MAX));
stored_as!(Span, Postgres, Duration, to: |s| s.0);

/// A value both databases decode.
pub(super) trait Value:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl<T> Value for T where
    T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

/// A result row of either database, read by column name.
pub(super) trait Row {
    /// A value both databases decode as it is stored.
    fn value<T: Value>(&self, column: &str) -> StoreResult<T>;

    /// A column as the field type it fills ([`Column`]).
    fn get<T: Column>(&self, column: &str) -> StoreResult<T> {
        T::from_stored(self.value(column)?)
    }
}

impl Row for SqliteRow {
    fn value<T: Value>(&self, column: &str) -> StoreResult<T> {
        Ok(sqlx::Row::try_get(self, column)?)
    }
}

impl Row for PgRow {
    fn value<T: Value>(&self, column: &str) -> StoreResult<T> {
        Ok(sqlx::Row::try_get(self, column)?)
    }
}

/// A field type read from one column: times through [`Ts`], sealed secrets from their
/// bytes, [`text_enum!`]s by name, anything else as both databases decode it; an
/// `Option` of any of these from NULL or such a value.
pub(super) trait Column: Sized {
    /// What both databases decode the column as.
    type Stored: Value;
    fn from_stored(stored: Self::Stored) -> StoreResult<Self>;
}

impl<T: Column> Column for Option<T>
where
    Option<T::Stored>: Value,
{
    type Stored = Option<T::Stored>;
    fn from_stored(stored: Self::Stored) -> StoreResult<Self> {
        stored.map(T::from_stored).transpose()
    }
}

macro_rules! column_stored_as {
    ($($t:ty: $stored:ty => |$s:ident| $value:expr;)*) => {$(
        impl Column for $t {
            type Stored = $stored;
            fn from_stored($s: $stored) -> StoreResult<Self> {
                Ok($value)
            }
        }
    )*};
}

column_stored_as! {
    String: String => |s| s;
    i64: i64 => |s| s;
    bool: bool => |s| s;
    Vec<u8>: Vec<u8> => |s| s;
    serde_json::Value: serde_json::Value => |s| s;
    DateTime<Utc>: Ts => |s| s.0;
    Sealed: Vec<u8> => |s| Sealed(s);
}

/// Columns `a` and `b` of `row` ([`Row::get`]).
pub(super) fn pair<A: Column, B: Column>(row: &impl Row, a: &str, b: &str) -> StoreResult<(A, B)> {
    Ok((row.get(a)?, row.get(b)?))
}

/// `Ok($ty { … })` from `$row`: each listed field read from the column of its name
/// ([`Row::get`]), then the fields after `;` from their expressions.
macro_rules! from_row {
    (
        $row:ident => $ty:ident {
            $($field:ident),* $(,)? $(; $($name:ident: $value:expr),* $(,)?)?
        }
    ) => {
        Ok($ty {
            $($field: $crate::storage::sql::Row::get($row, stringify!($field))?,)*
            $($($name: $value,)*)?
        })
    };
}

/// A public enum stored as one of a few words: `as_str`, `parse`, and [`Column`]
/// (an unknown word is a decode error naming `$what`).
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident($what:literal) {
            $($(#[$doc:meta])* $variant:ident = $text:literal,)*
        }
    ) => {
        $(#[$meta])*
        pub enum $name {
            $($(#[$doc])* $variant,)*
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl $crate::storage::sql::Column for $name {
            type Stored = String;
            fn from_stored(text: String) -> $crate::storage::StoreResult<Self> {
                $name::parse(&text).ok_or_else(|| {
                    $crate::storage::sql::decode_error(format!("unknown {} {text:?}", $what))
                })
            }
        }
    };
}

/// `(comparison, order)` for keyset pagination in the cursor's direction.
pub(super) fn keyset(page: &PageRequest) -> (&'static str, &'static str) {
    match page.cursor.as_ref().map(|c| c.direction) {
        None | Some(Direction::Older) => ("<", "DESC"),
        Some(Direction::Newer) => (">", "ASC"),
    }
}

/// The end of a newest-first page's query over rows keyed `($key)` (a time and an
/// id): the cursor's condition on `$first` and `$first + 1`, the order, and the limit
/// (`$first + 2`). The `page` arm of [`sql!`] binds the three.
pub(super) fn page_clause(page: &PageRequest, key: &str, first: usize) -> String {
    let (cmp, order) = keyset(page);
    let (at, id, limit) = (first, first + 1, first + 2);
    let ordered = key.replace(',', &format!(" {order},"));
    format!(
        " AND (${at} IS NULL OR ({key}) {cmp} (${at}, ${id})) \
         ORDER BY {ordered} {order} LIMIT ${limit}"
    )
}

/// A page from rows fetched one past `page.limit` in the cursor's direction.
pub(super) fn page_of<T>(mut items: Vec<T>, page: &PageRequest) -> Page<T> {
    let has_more = items.len() > page.limit as usize;
    items.truncate(page.limit as usize);
    if matches!(&page.cursor, Some(c) if c.direction == Direction::Newer) {
        items.reverse();
    }
    Page { items, has_more }
}

/// `$first, $first+1, …` for `n` values bound one by one (an `IN (…)` list).
pub(super) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A decode failure of a stored value.
pub(super) fn decode_error(what: impl std::fmt::Display) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(what.to_string().into()))
}
