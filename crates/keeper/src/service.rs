//! [`Keeper`]: the handles every part of the service shares — store, vault, Zoom,
//! metrics, configuration — and the operations that set them up.

use std::sync::Arc;

use anyhow::Context as _;
use secrecy::ExposeSecret;

use crate::config::{Config, MasterKeySource};
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::storage::{self, Store};
use crate::tokens::TokenBroker;
use crate::vault::{Keyring, Vault};
use crate::zoom_account_limits::ZoomAccountLimits;
use crate::zoom_gateway::ZoomGateway;

pub struct Keeper {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub vault: Arc<Vault>,
    pub zoom: ZoomGateway,
    pub metrics: Arc<Metrics>,
    pub rate_limiter: RateLimiter,
    /// Hands out access tokens; holds this process's lease owner id and its
    /// single-flight refreshes.
    pub tokens: TokenBroker,
    /// Per-Zoom-account budget that background loops take a slot from before each
    /// Zoom call (DESIGN.md §6).
    pub zoom_accounts: ZoomAccountLimits,
}

impl Keeper {
    /// Opens the database (running migrations) and the keyring (generating the master
    /// key file on first run).
    pub async fn open(config: Config) -> anyhow::Result<Keeper> {
        let store = open_store(&config).await?;
        store
            .migrate()
            .await
            .context("applying database migrations")?;
        let keyring = load_keyring(&config)?;
        Keeper::from_parts(config, store, Arc::new(keyring.vault()))
    }

    /// Assembles a keeper from an already opened store and vault.
    pub fn from_parts(
        config: Config,
        store: Arc<dyn Store>,
        vault: Arc<Vault>,
    ) -> anyhow::Result<Keeper> {
        let metrics = Arc::new(Metrics::new());
        let zoom = ZoomGateway::new(
            &config.zoom_oauth_url,
            &config.zoom_api_url,
            metrics.clone(),
        )
        .context("building the Zoom HTTP client")?;
        let rate_limiter = RateLimiter::new(config.rate_limit_per_second, config.rate_limit_burst);
        Ok(Keeper {
            config,
            store,
            vault,
            zoom,
            metrics,
            rate_limiter,
            tokens: TokenBroker::new(),
            zoom_accounts: ZoomAccountLimits::default(),
        })
    }
}

/// Opens the configured database without migrating it.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if config.database_url.starts_with("sqlite:") {
        // The data directory holds the database and usually the master key: owner only.
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.data_dir)
            .with_context(|| {
                format!("creating the data directory {}", config.data_dir.display())
            })?;
    }
    storage::open_store(&config.database_url)
        .await
        .with_context(|| {
            format!(
                "opening the {} database",
                backend_name(&config.database_url)
            )
        })
}

fn backend_name(url: &str) -> &'static str {
    if url.starts_with("sqlite:") {
        "SQLite"
    } else {
        "PostgreSQL"
    }
}

/// Loads the keyring from the configured source, creating the key file on first run.
pub fn load_keyring(config: &Config) -> anyhow::Result<Keyring> {
    match &config.master_key {
        MasterKeySource::Inline(text) => {
            Keyring::from_inline(text.expose_secret()).context("reading master_key")
        }
        // load_or_create makes a missing parent directory itself, mode 0700.
        MasterKeySource::File(path) => Keyring::load_or_create(path)
            .with_context(|| format!("loading the master key file {}", path.display())),
    }
}

/// `zoomkeeper keys rotate`: adds a new active key, re-seals every secret under it,
/// then retires the old keys. The old keys stay in the file (and so keep opening
/// old ciphertexts) until every secret has been re-sealed. Returns how many secrets
/// were re-sealed.
pub async fn rotate_master_key(config: &Config) -> anyhow::Result<u64> {
    let MasterKeySource::File(path) = &config.master_key else {
        anyhow::bail!(
            "master_key is given inline; rotation rewrites the key file, so use master_key_file"
        );
    };
    let store = open_store(config).await?;
    store
        .migrate()
        .await
        .context("applying database migrations")?;
    let mut keyring = load_keyring(config)?;
    keyring.add_new_active_key();
    keyring
        .save(path)
        .with_context(|| format!("saving {}", path.display()))?;
    let resealed = storage_reseal(&*store, &keyring.vault()).await?;
    keyring.retire_all_but_active();
    keyring
        .save(path)
        .with_context(|| format!("saving {}", path.display()))?;
    Ok(resealed)
}

async fn storage_reseal(store: &dyn Store, vault: &Vault) -> anyhow::Result<u64> {
    crate::vault::reseal_all(store, vault).await
}
