//! Dev-only test support for the workspace's integration tests (DESIGN.md §1, §9);
//! never linked into the binary.
//!
//! - [`receiver::Receiver`]: a real HTTP server that records the webhooks sent to it.
//! - With the `app` feature (the default): [`pg_cluster`] (throwaway PostgreSQL),
//!   [`postgres_database`] (a copy of one migrated template database per test),
//!   [`app::spawn_app`] (the real server against the simulator), [`store::TestStore`]
//!   (a bare migrated store with row builders) and [`on_both_databases!`], which runs
//!   one test story on SQLite and on PostgreSQL.
//!   Every response such a server sends is checked against its OpenAPI document
//!   ([`contract`]); what does not match fails the test.
//! - [`dashboard::Dashboard`]: a signed-in dashboard session over plain HTTP.
//! - With the `browser` feature: [`browser::Browser`], headless Chromium through
//!   chromedriver, with screenshots under `target/test-output/<test>/`.

pub mod receiver;

#[cfg(feature = "browser")]
pub mod browser;

#[cfg(feature = "app")]
pub mod app;
#[cfg(feature = "app")]
pub mod contract;
#[cfg(feature = "app")]
pub mod dashboard;
#[cfg(feature = "app")]
pub mod pg_cluster;
#[cfg(feature = "app")]
pub mod store;

#[cfg(feature = "app")]
pub use app::{
    captured_logs, scopes_asked_for, spawn_app, spawn_app_with, Answer, TestApp, REDIRECT_URI,
};
pub use receiver::{Received, Receiver};
#[cfg(feature = "app")]
pub use store::TestStore;

/// Which database a test runs on.
#[cfg(feature = "app")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What a test written for both databases takes: the [`Backend`] itself (to pass to
/// [`spawn_app`]) or a fresh [`TestStore`].
#[cfg(feature = "app")]
pub trait OnDatabase: Sized {
    /// `None` skips the test: PostgreSQL is missing and not required.
    fn open(backend: Backend) -> impl std::future::Future<Output = Option<Self>>;
}

#[cfg(feature = "app")]
impl OnDatabase for Backend {
    async fn open(backend: Backend) -> Option<Backend> {
        Some(backend)
    }
}

#[cfg(feature = "app")]
impl OnDatabase for TestStore {
    async fn open(backend: Backend) -> Option<TestStore> {
        match backend {
            Backend::Sqlite => Some(store::sqlite().await),
            Backend::Postgres => store::postgres().await,
        }
    }
}

/// Runs `test` on `backend`; used by [`on_both_databases!`].
#[cfg(feature = "app")]
pub async fn run_on<T, F>(test: impl FnOnce(T) -> F, backend: Backend)
where
    T: OnDatabase,
    F: std::future::Future<Output = ()>,
{
    if let Some(fixture) = T::open(backend).await {
        test(fixture).await
    }
}

/// Turns each `async fn behaviour(backend: Backend)` or `async fn behaviour(s:
/// TestStore)` of the calling module into two tests, `behaviour::sqlite` and
/// `behaviour::postgres`. The PostgreSQL one skips when the machine has no
/// PostgreSQL, unless `ZOOMKEEPER_REQUIRE_POSTGRES=1`.
#[cfg(feature = "app")]
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                $crate::run_on(super::$name, $crate::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::run_on(super::$name, $crate::Backend::Postgres).await
            }
        }
    )*};
}

/// A fresh, empty database on the process's throwaway PostgreSQL, for a server
/// process that migrates it itself; `None` (skip, with a note on stderr) when the
/// machine has no PostgreSQL and `ZOOMKEEPER_REQUIRE_POSTGRES` is not 1.
#[cfg(feature = "app")]
pub async fn empty_postgres_database() -> Option<String> {
    match pg_cluster::shared().await.expect("throwaway PostgreSQL") {
        Some(cluster) => Some(cluster.create_database().await.expect("database")),
        None => {
            eprintln!(
                "skipped: no PostgreSQL binaries (set {}=1 to make this an error)",
                pg_cluster::REQUIRE_ENV
            );
            None
        }
    }
}

/// A fresh, migrated PostgreSQL database for one test: a copy of a template database
/// migrated once per process. `None` when the machine has no PostgreSQL and
/// `ZOOMKEEPER_REQUIRE_POSTGRES` is not 1.
#[cfg(feature = "app")]
pub async fn postgres_database() -> Option<String> {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let cluster = pg_cluster::shared().await.expect("starting PostgreSQL")?;
    let template = TEMPLATE
        .get_or_init(|| async {
            let url = cluster
                .create_database()
                .await
                .expect("creating the template database");
            let store = keeper::storage::postgres::PostgresStore::connect(&url)
                .await
                .expect("opening the template database");
            keeper::storage::DatabaseStore::migrate(&store)
                .await
                .expect("migrating the template database");
            // A template is copied only while nobody is connected to it.
            if let Some(pool) = store.postgres_pool() {
                pool.close().await;
            }
            url
        })
        .await;
    Some(
        cluster
            .create_database_from(template)
            .await
            .expect("copying the template database"),
    )
}
