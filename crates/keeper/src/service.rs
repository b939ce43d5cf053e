//! [`Keeper`]: the handles every part of the service shares — store, vault, Zoom,
//! metrics, configuration — and the operations that set them up.

use std::sync::Arc;

use anyhow::Context as _;
use secrecy::ExposeSecret;

use crate::core::clock::Clock;
use crate::core::config::{Config, Database, MasterKeySource};
use crate::core::metrics::Metrics;
use crate::core::rate_limit::RateLimiter;
use crate::core::vault::{Keyring, Vault};
use crate::core::zoom_account_limits::ZoomAccountLimits;
use crate::core::zoom_gateway::ZoomGateway;
use crate::domain::tokens::TokenBroker;
use crate::domain::zoom_webhooks::IngressCaches;
use crate::storage::{self, Store};

pub struct Keeper {
    pub config: Config,
    /// The one clock ([`Clock`]): the store's, so domain and SQL agree on "now".
    pub clock: Clock,
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
    /// What the Zoom webhook ingress reuses for a few seconds in this process.
    pub ingress: IngressCaches,
    /// One per Zoom event being handled; when none is left the next is shed (503)
    /// rather than queued, so an accepted event is answered well within Zoom's 3 s.
    pub ingress_slots: tokio::sync::Semaphore,
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
        if let MasterKeySource::File(path) = &config.master_key {
            if !path.exists() && store.count_projects().await? > 0 {
                anyhow::bail!(
                    "the master key file {} is missing, but the database holds secrets sealed under a master key: a new key would open none of them. Put back the key file these secrets were sealed with (restore it with the database backup), or point master_key_file at it",
                    path.display()
                );
            }
        }
        let vault = load_vault(&config)?;
        check_vault_opens_the_database(&*store, &vault).await?;
        Keeper::from_parts(config, store, Arc::new(vault))
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
        let zoom_accounts = ZoomAccountLimits::new(
            config.zoom_account_requests_per_second,
            config.zoom_account_requests_per_second,
        );
        let ingress_slots = tokio::sync::Semaphore::new(config.zoom_webhooks_in_flight as usize);
        Ok(Keeper {
            config,
            clock: store.clock().clone(),
            store,
            vault,
            zoom,
            metrics,
            rate_limiter,
            tokens: TokenBroker::new(),
            zoom_accounts,
            ingress: IngressCaches::default(),
            ingress_slots,
        })
    }
}

/// Refuses to run with a keyring that cannot open what the database holds (a
/// database restored without its key file, another installation's key), which would
/// otherwise fail every request that needs a secret: one project's sealed secret is
/// opened as a sample.
async fn check_vault_opens_the_database(store: &dyn Store, vault: &Vault) -> anyhow::Result<()> {
    let Some(project) = store.list_projects().await?.into_iter().next() else {
        return Ok(());
    };
    vault
        .open(
            crate::core::vault::Slot::project_webhook_secret(&project.id),
            &project.webhook_secret,
        )
        .map(drop)
        .map_err(|e| {
            anyhow::anyhow!(
                "the master key does not open the secrets in this database ({e}): this is not the key they were sealed with. Use the key file (or master_key) that belongs to this database, e.g. the one backed up with it"
            )
        })
}

/// Opens the configured database without migrating it.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let database = Database::named_by(&config.database_url).unwrap_or(Database::Sqlite);
    if database == Database::Sqlite {
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
        .with_context(|| format!("opening the {} database", database.name()))
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

/// The vault a long-running process seals with. Over a key file it follows the
/// file, so `keys rotate` and `keys retire` need no restart; an inline keyring is
/// fixed (rotate it by changing every process's configuration and restarting).
pub fn load_vault(config: &Config) -> anyhow::Result<Vault> {
    match &config.master_key {
        MasterKeySource::Inline(_) => Ok(load_keyring(config)?.vault()),
        MasterKeySource::File(path) => Vault::from_key_file(path)
            .with_context(|| format!("loading the master key file {}", path.display())),
    }
}

const INLINE_KEYS: &str = "master_key is given inline, so there is no key file to change: \
     add the new key marked active (`id:key*`) to master_key in every process's \
     configuration and restart them; remove the old key only once every secret was \
     re-sealed";

/// What `keys rotate` did.
#[derive(Debug)]
pub struct Rotation {
    pub new_key_id: u32,
    /// Secrets re-sealed under the new key.
    pub resealed: u64,
}

/// `zoomkeeper keys rotate`: adds a new active key to the key file, then re-seals
/// every secret under it. The old keys stay in the file, so processes that have not
/// reloaded it yet keep working; `keys retire` removes them later.
pub async fn rotate_master_key(config: &Config) -> anyhow::Result<Rotation> {
    let MasterKeySource::File(path) = &config.master_key else {
        anyhow::bail!("{INLINE_KEYS}");
    };
    let store = open_store(config).await?;
    store
        .migrate()
        .await
        .context("applying database migrations")?;
    let mut keyring = load_keyring(config)?;
    let new_key_id = keyring.add_new_active_key();
    keyring
        .save(path)
        .with_context(|| format!("saving {}", path.display()))?;
    let resealed = crate::core::vault::reseal_all(&*store, &keyring.vault()).await?;
    Ok(Rotation {
        new_key_id,
        resealed,
    })
}

/// What `keys retire` did.
#[derive(Debug)]
pub struct Retirement {
    pub active_key_id: u32,
    /// Keys removed from the key file (empty when only the active key was left).
    pub retired: Vec<u32>,
    /// Values found under an old key (sealed by a process that had not reloaded the
    /// key file yet) and re-sealed under the active key before retiring.
    pub stragglers_resealed: u64,
    /// How long it waited for running processes to pick up the key file.
    pub waited: std::time::Duration,
}

/// `zoomkeeper keys retire`: removes every key but the active one from the key file,
/// but only once a full pass over every sealed value finds none under another key
/// (stragglers are re-sealed first). Waits until the key file is older than the
/// servers' reload interval, so none of them still seals under an old key. Safe to
/// re-run.
pub async fn retire_old_master_keys(config: &Config) -> anyhow::Result<Retirement> {
    use crate::core::vault::KEY_FILE_CHECK_INTERVAL;
    const MAX_PASSES: usize = 5;
    let MasterKeySource::File(path) = &config.master_key else {
        anyhow::bail!("{INLINE_KEYS}");
    };
    let mut keyring = load_keyring(config)?;
    // Only with old keys left can a server that has not reloaded yet seal under one.
    let mut waited = std::time::Duration::ZERO;
    if keyring.key_ids().len() > 1 {
        let meta =
            std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        let age = meta
            .modified()
            .ok()
            .and_then(|m| std::time::SystemTime::now().duration_since(m).ok())
            .unwrap_or_default();
        let settle = KEY_FILE_CHECK_INTERVAL + std::time::Duration::from_secs(5);
        waited = settle.saturating_sub(age);
        if !waited.is_zero() {
            tracing::info!(
                seconds = waited.as_secs_f32().ceil(),
                "waiting for running servers to pick up the key file first"
            );
            tokio::time::sleep(waited).await;
        }
    }
    let store = open_store(config).await?;
    store
        .migrate()
        .await
        .context("applying database migrations")?;
    let vault = keyring.vault();
    let mut stragglers_resealed = 0;
    let mut clean = false;
    for _ in 0..MAX_PASSES {
        let n = crate::core::vault::reseal_all(&*store, &vault)
            .await
            .context("no key was retired")?;
        if n == 0 {
            clean = true;
            break;
        }
        stragglers_resealed += n;
    }
    if !clean {
        anyhow::bail!(
            "values kept appearing under an old key ({stragglers_resealed} re-sealed so far): \
             a process still seals with an old key — check that every process reads {}, \
             then run `keys retire` again; no key was retired",
            path.display()
        );
    }
    let active_key_id = keyring.active_key_id();
    let retired: Vec<u32> = keyring
        .key_ids()
        .into_iter()
        .filter(|id| *id != active_key_id)
        .collect();
    if !retired.is_empty() {
        // A `keys rotate` that ran meanwhile added a key this ring lacks: keep the file.
        let now = load_keyring(config)?;
        if now.key_ids() != keyring.key_ids() || now.active_key_id() != active_key_id {
            anyhow::bail!(
                "{} changed while retiring (another `keys rotate`?); no key was retired, run `keys retire` again",
                path.display()
            );
        }
        keyring.retire_all_but_active();
        keyring
            .save(path)
            .with_context(|| format!("saving {}", path.display()))?;
    }
    Ok(Retirement {
        active_key_id,
        retired,
        stragglers_resealed,
        waited,
    })
}
