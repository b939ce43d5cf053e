//! The secrets vault: seals secrets before they reach storage and opens them after.
//!
//! # Envelope
//!
//! A sealed value is `version (1 byte, = 1) | key_id (4 bytes, big-endian) |
//! nonce (24 bytes) | ciphertext + tag (16 bytes)`, sealed with XChaCha20-Poly1305.
//! The associated data is `table \0 column \0 row_id` ([`Slot`]), so a ciphertext
//! copied to another row or another column does not open.
//!
//! # Keys
//!
//! A [`Keyring`] holds several 32-byte keys, each with a numeric id, one of them
//! active. New values are sealed under the active key; any key in the ring opens
//! values sealed under it. The key file (and the inline `master_key` setting) is
//! text, one key per line:
//!
//! ```text
//! # comments and blank lines are ignored
//! 1:q5VnqK0f2sBzCqJ3nS7r1uVQ8yY7GgS1s8i8fJ3g2nA=
//! 2:Z0f7z8L6C4w3sQ9y2mB1nV5cX4dE6rT8uI0oP2aS4dF=*
//! ```
//!
//! `KEY_ID:BASE64(32 bytes)` (standard alphabet, padded); the active key carries a
//! trailing `*`. A ring with a single key needs no `*`. Inline values may separate
//! keys with commas or whitespace instead of newlines, and a bare base64 key (no
//! `id:`) is key 1.
//!
//! # Rotation with servers running
//!
//! `zoomkeeper keys rotate`:
//! 1. [`Keyring::add_new_active_key`] and [`Keyring::save`]: the old keys stay in the
//!    file, so every existing value still opens.
//! 2. [`reseal_all`]: every sealed value not under the active key is opened and
//!    sealed again under it (compare-and-swap per value; safe to re-run).
//!
//! A running `serve` holds a [`Vault::from_key_file`], which re-reads the file when
//! it meets a key id it does not know (then tries once more) and looks at the file
//! (one `stat`) before use at most every [`KEY_FILE_CHECK_INTERVAL`], so it seals
//! under the new key soon after a rotation.
//!
//! `zoomkeeper keys retire`, once every process has reloaded: [`reseal_all`] again
//! (values a process sealed under an old key before it reloaded), and only when a
//! full pass finds nothing under an old key, [`Keyring::retire_all_but_active`] and
//! [`Keyring::save`].
//!
//! A crash at any step leaves a file that still opens everything; re-running the
//! step finishes the job (a second rotate adds one more key, which is harmless).
//!
//! An inline keyring (`master_key`) has no file to watch: rotate it by adding the
//! new key, marked active (`id:key*`), to the configuration of every process and
//! restarting them; remove the old key only after every value was re-sealed.
//!
//! Key material never appears in `Debug` output, logs or errors; [`VaultError`]
//! names the slot (table, column, row id) and at most a key id.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use secrecy::zeroize::Zeroize as _;
use secrecy::{ExposeSecret as _, SecretBox, SecretSlice, SecretString};

use crate::storage::{Sealed, Store};

/// The envelope version this code writes (and the only one it reads).
pub const ENVELOPE_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;

/// How often a vault watching a key file looks at it (one `stat`) for a rotation.
pub const KEY_FILE_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Where a sealed value lives; bound into the ciphertext as associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot<'a> {
    pub table: &'static str,
    pub column: &'static str,
    pub row_id: &'a str,
}

/// Every sealed column as `(table, column)`, sorted: each secret the service
/// stores. The constructors below name them; storage reseals exactly these.
pub const SEALED_COLUMNS: &[(&str, &str)] = &[
    ("bot_platforms", "verification_secret"),
    ("connect_sessions", "code_verifier"),
    ("projects", "previous_webhook_secret"),
    ("projects", "webhook_secret"),
    ("zoom_oauth_apps", "client_secret"),
    ("zoom_oauth_apps", "webhook_secret"),
    ("zoom_oauth_connections", "access_token"),
    ("zoom_oauth_connections", "access_token_callback_url"),
    ("zoom_oauth_connections", "refresh_token"),
];

impl<'a> Slot<'a> {
    const fn sealed_column(index: usize, row_id: &'a str) -> Slot<'a> {
        let (table, column) = SEALED_COLUMNS[index];
        Slot {
            table,
            column,
            row_id,
        }
    }

    /// What a bot platform signs its token callbacks with.
    pub const fn bot_platform_verification_secret(platform_id: &'a str) -> Slot<'a> {
        Slot::sealed_column(0, platform_id)
    }

    /// A connect session's PKCE code verifier, kept until the user comes back.
    pub const fn connect_session_code_verifier(session_id: &'a str) -> Slot<'a> {
        Slot::sealed_column(1, session_id)
    }

    /// A project's previous webhook signing secret (kept during a rotation's grace).
    pub const fn project_previous_webhook_secret(project_id: &'a str) -> Slot<'a> {
        Slot::sealed_column(2, project_id)
    }

    /// A project's webhook signing secret.
    pub const fn project_webhook_secret(project_id: &'a str) -> Slot<'a> {
        Slot::sealed_column(3, project_id)
    }

    /// An app's Zoom client secret.
    pub const fn app_client_secret(app_id: &'a str) -> Slot<'a> {
        Slot::sealed_column(4, app_id)
    }

    /// An app's Zoom webhook secret token.
    pub const fn app_webhook_secret(app_id: &'a str) -> Slot<'a> {
        Slot::sealed_column(5, app_id)
    }

    /// A connection's access token.
    pub const fn connection_access_token(connection_id: &'a str) -> Slot<'a> {
        Slot::sealed_column(6, connection_id)
    }

    /// A customer-managed connection's `access_token_callback_url` (its query
    /// string carries the customer's secret).
    pub const fn connection_access_token_callback_url(connection_id: &'a str) -> Slot<'a> {
        Slot::sealed_column(7, connection_id)
    }

    /// A connection's refresh token.
    pub const fn connection_refresh_token(connection_id: &'a str) -> Slot<'a> {
        Slot::sealed_column(8, connection_id)
    }
}

impl Slot<'_> {
    fn associated_data(&self) -> Vec<u8> {
        let mut ad =
            Vec::with_capacity(self.table.len() + self.column.len() + self.row_id.len() + 2);
        ad.extend_from_slice(self.table.as_bytes());
        ad.push(0);
        ad.extend_from_slice(self.column.as_bytes());
        ad.push(0);
        ad.extend_from_slice(self.row_id.as_bytes());
        ad
    }
}

impl fmt::Display for Slot<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} of row {}", self.table, self.column, self.row_id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the sealed value in {slot} is too short or has an unknown envelope version")]
    Malformed { slot: String },
    #[error("the sealed value in {slot} uses key {key_id}, which is not in the keyring")]
    UnknownKey { slot: String, key_id: u32 },
    #[error("the sealed value in {slot} does not open: it was altered, copied from another slot, or sealed under another key {key_id}")]
    DoesNotOpen { slot: String, key_id: u32 },
    #[error("the value in {slot} is not UTF-8 text")]
    NotText { slot: String },
}

/// Seals and opens secrets. Cheap to clone (clones share the keys); holds the keys
/// of one [`Keyring`], or of a key file it reloads after a rotation.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<VaultInner>,
}

struct VaultInner {
    keys: RwLock<Arc<VaultKeys>>,
    file: Option<WatchedKeyFile>,
}

struct VaultKeys {
    active: u32,
    ciphers: BTreeMap<u32, XChaCha20Poly1305>,
}

impl VaultKeys {
    fn of(ring: &Keyring) -> VaultKeys {
        let ciphers = ring
            .keys
            .iter()
            .map(|(id, key)| {
                (
                    *id,
                    XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(key.expose_secret())),
                )
            })
            .collect();
        VaultKeys {
            active: ring.active,
            ciphers,
        }
    }
}

struct WatchedKeyFile {
    path: PathBuf,
    check_every: Duration,
    started: Instant,
    /// Milliseconds after `started` of the last periodic look at the file.
    checked_at_ms: AtomicU64,
    /// The file the loaded keys came from; the lock also makes reloads one at a time.
    loaded: Mutex<Option<FileStamp>>,
}

/// Tells one version of the key file from another (it is replaced by a rename).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: (u64, u64),
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> FileStamp {
        #[cfg(unix)]
        let inode = {
            use std::os::unix::fs::MetadataExt as _;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let inode = (0, 0);
        FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode,
        }
    }
}

impl WatchedKeyFile {
    /// Whether a periodic look is due; true for one caller per interval.
    fn check_due(&self) -> bool {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let every = u64::try_from(self.check_every.as_millis()).unwrap_or(u64::MAX);
        let last = self.checked_at_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= every
            && self
                .checked_at_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.current();
        f.debug_struct("Vault")
            .field("active_key_id", &keys.active)
            .field("key_ids", &keys.ciphers.keys().collect::<Vec<_>>())
            .field("key_file", &self.inner.file.as_ref().map(|f| &f.path))
            .finish()
    }
}

impl Vault {
    fn fixed(keys: VaultKeys) -> Vault {
        Vault {
            inner: Arc::new(VaultInner {
                keys: RwLock::new(Arc::new(keys)),
                file: None,
            }),
        }
    }

    /// A vault over the key file (created on first run, see
    /// [`Keyring::load_or_create`]) that follows its changes: it re-reads the file
    /// when a sealed value names a key id it does not know, and looks at it before
    /// use at most every [`KEY_FILE_CHECK_INTERVAL`].
    pub fn from_key_file(file: &Path) -> anyhow::Result<Vault> {
        Vault::from_key_file_checking_every(file, KEY_FILE_CHECK_INTERVAL)
    }

    fn from_key_file_checking_every(file: &Path, check_every: Duration) -> anyhow::Result<Vault> {
        // Stamped before reading: a change in between is picked up by the next look.
        let stamp = std::fs::metadata(file).ok().map(|m| FileStamp::of(&m));
        let ring = Keyring::load_or_create(file)?;
        Ok(Vault {
            inner: Arc::new(VaultInner {
                keys: RwLock::new(Arc::new(VaultKeys::of(&ring))),
                file: Some(WatchedKeyFile {
                    path: file.to_path_buf(),
                    check_every,
                    started: Instant::now(),
                    checked_at_ms: AtomicU64::new(0),
                    loaded: Mutex::new(stamp),
                }),
            }),
        })
    }

    fn current(&self) -> Arc<VaultKeys> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The keys to use now, after a look at the key file when one is due.
    fn keys(&self) -> Arc<VaultKeys> {
        if let Some(file) = &self.inner.file {
            if file.check_due() {
                self.reload_if_changed();
            }
        }
        self.current()
    }

    /// Re-reads the watched key file if it changed since it was loaded; returns
    /// whether the keys changed. A file that cannot be read or parsed is logged
    /// (without key material) and the keys in memory stay.
    pub fn reload_if_changed(&self) -> bool {
        let Some(file) = &self.inner.file else {
            return false;
        };
        let mut loaded = file.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        let read = || -> std::io::Result<(FileStamp, String)> {
            let mut f = std::fs::File::open(&file.path)?;
            let stamp = FileStamp::of(&f.metadata()?);
            if Some(stamp) == *loaded {
                return Ok((stamp, String::new()));
            }
            let mut text = String::new();
            f.read_to_string(&mut text)?;
            Ok((stamp, text))
        };
        let (stamp, mut text) = match read() {
            Ok((stamp, _)) if Some(stamp) == *loaded => return false,
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(path = %file.path.display(), error = %e, "cannot re-read the master key file; keeping the keys in memory");
                return false;
            }
        };
        let parsed = Keyring::parse(&text);
        text.zeroize();
        // Either way this version of the file has been seen: a broken one is reported once.
        *loaded = Some(stamp);
        let ring = match parsed {
            Ok(ring) => ring,
            Err(e) => {
                tracing::warn!(path = %file.path.display(), error = format!("{e:#}"), "the master key file changed but does not parse; keeping the keys in memory");
                return false;
            }
        };
        let keys = Arc::new(VaultKeys::of(&ring));
        *self
            .inner
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner) = keys;
        tracing::info!(
            path = %file.path.display(),
            active_key_id = ring.active,
            key_ids = ?ring.key_ids(),
            "reloaded the master key file"
        );
        true
    }

    pub fn seal(&self, slot: Slot<'_>, plaintext: &[u8]) -> Sealed {
        let keys = self.keys();
        let key_id = keys.active;
        let cipher = &keys.ciphers[&key_id];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ad = slot.associated_data();
        // Encryption with a valid key and in-memory buffers cannot fail.
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &ad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer");
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + ciphertext.len());
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(&key_id.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Sealed(out)
    }

    /// Opens `sealed`. A value under a key this vault does not know makes a watching
    /// vault re-read its key file (another process may have rotated) and try again.
    pub fn open(&self, slot: Slot<'_>, sealed: &Sealed) -> Result<SecretSlice<u8>, VaultError> {
        match open_with(&self.keys(), slot, sealed) {
            Err(VaultError::UnknownKey { .. }) if self.reload_if_changed() => {
                open_with(&self.current(), slot, sealed)
            }
            opened => opened,
        }
    }

    pub fn seal_str(&self, slot: Slot<'_>, s: &str) -> Sealed {
        self.seal(slot, s.as_bytes())
    }

    pub fn open_str(&self, slot: Slot<'_>, sealed: &Sealed) -> Result<SecretString, VaultError> {
        let bytes = self.open(slot, sealed)?;
        match std::str::from_utf8(bytes.expose_secret()) {
            Ok(s) => Ok(SecretString::from(s)),
            Err(_) => Err(VaultError::NotText {
                slot: slot.to_string(),
            }),
        }
    }

    pub fn active_key_id(&self) -> u32 {
        self.keys().active
    }

    /// Whether `sealed` was sealed under the active key (nothing to re-seal).
    pub fn is_sealed_under_active_key(&self, sealed: &Sealed) -> bool {
        sealed_key_id(sealed) == Some(self.keys().active)
    }
}

fn open_with(
    keys: &VaultKeys,
    slot: Slot<'_>,
    sealed: &Sealed,
) -> Result<SecretSlice<u8>, VaultError> {
    let bytes = &sealed.0;
    let key_id = sealed_key_id(sealed).ok_or_else(|| VaultError::Malformed {
        slot: slot.to_string(),
    })?;
    let cipher = keys
        .ciphers
        .get(&key_id)
        .ok_or_else(|| VaultError::UnknownKey {
            slot: slot.to_string(),
            key_id,
        })?;
    let nonce = XNonce::from_slice(&bytes[HEADER_LEN..HEADER_LEN + NONCE_LEN]);
    let ad = slot.associated_data();
    let plaintext = cipher
        .decrypt(
            nonce,
            Payload {
                msg: &bytes[HEADER_LEN + NONCE_LEN..],
                aad: &ad,
            },
        )
        .map_err(|_| VaultError::DoesNotOpen {
            slot: slot.to_string(),
            key_id,
        })?;
    Ok(SecretSlice::from(plaintext))
}

/// The key id a sealed value names, if it is a well-formed envelope of this version.
pub fn sealed_key_id(sealed: &Sealed) -> Option<u32> {
    let bytes = &sealed.0;
    if bytes.len() < HEADER_LEN + NONCE_LEN + TAG_LEN || bytes[0] != ENVELOPE_VERSION {
        return None;
    }
    let id: [u8; 4] = bytes[1..HEADER_LEN].try_into().ok()?;
    Some(u32::from_be_bytes(id))
}

/// Several master keys, one active. See the module documentation for the file format.
pub struct Keyring {
    keys: BTreeMap<u32, SecretBox<[u8; KEY_LEN]>>,
    active: u32,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active_key_id", &self.active)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// A ring with one fresh random key, id 1.
    pub fn generate() -> Keyring {
        let mut keys = BTreeMap::new();
        keys.insert(1, fresh_key());
        Keyring { keys, active: 1 }
    }

    /// Reads the key file; creates it (mode 0600, and its directory with mode 0700
    /// if missing) holding one fresh key when it does not exist. Two processes
    /// starting at once end up with the same key.
    pub fn load_or_create(file: &Path) -> anyhow::Result<Keyring> {
        match std::fs::read_to_string(file) {
            Ok(text) => {
                warn_if_readable_by_others(file);
                return Keyring::parse(&text)
                    .with_context(|| format!("reading the key file {}", file.display()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("reading the key file {}", file.display()))
            }
        }
        let ring = Keyring::generate();
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
        // Written to a temporary file, then hard-linked into place: the link fails if
        // another process created the file first, and a reader never sees it half
        // written.
        let tmp = write_temp_beside(file, &ring.render())?;
        let linked = std::fs::hard_link(&tmp, file);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_parent(file);
                Ok(ring)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading the key file {}", file.display()))?;
                Keyring::parse(&text)
                    .with_context(|| format!("reading the key file {}", file.display()))
            }
            Err(e) => Err(e).with_context(|| format!("creating the key file {}", file.display())),
        }
    }

    /// Parses an inline keyring (the `master_key` setting): the key file format, with
    /// commas or whitespace allowed between keys, or a single bare base64 key.
    pub fn from_inline(value: &str) -> anyhow::Result<Keyring> {
        let trimmed = value.trim();
        if !trimmed.is_empty() && !trimmed.contains(':') && !trimmed.contains([',', '\n', ' ']) {
            let key = decode_key(trimmed.trim_end_matches('*'))
                .context("the master key is not base64 of 32 bytes")?;
            let mut keys = BTreeMap::new();
            keys.insert(1, key);
            return Ok(Keyring { keys, active: 1 });
        }
        Keyring::parse(value)
    }

    fn parse(text: &str) -> anyhow::Result<Keyring> {
        let mut keys = BTreeMap::new();
        let mut active = None;
        let entries = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with('#'))
            .flat_map(|line| line.split([',', ' ', '\t']))
            .map(str::trim)
            .filter(|e| !e.is_empty());
        for (n, entry) in entries.enumerate() {
            let (id, key) = entry
                .split_once(':')
                .with_context(|| format!("key entry {} is not `ID:BASE64`", n + 1))?;
            let id: u32 = id
                .parse()
                .with_context(|| format!("key entry {}: the id is not a number", n + 1))?;
            let (key, is_active) = match key.strip_suffix('*') {
                Some(k) => (k, true),
                None => (key, false),
            };
            let key = decode_key(key)
                .with_context(|| format!("key {id}: the key is not base64 of 32 bytes"))?;
            if keys.insert(id, key).is_some() {
                bail!("key {id} appears twice");
            }
            if is_active {
                if let Some(other) = active {
                    bail!("keys {other} and {id} are both marked active (`*`)");
                }
                active = Some(id);
            }
        }
        let active = match (active, keys.len()) {
            (Some(id), _) => id,
            (None, 1) => *keys.keys().next().context("one key")?,
            (None, 0) => bail!("no keys"),
            (None, _) => bail!("several keys and none marked active with a trailing `*`"),
        };
        Ok(Keyring { keys, active })
    }

    fn render(&self) -> String {
        let mut out = String::from(
            "# zoomkeeper master keys: ID:BASE64(32 bytes), the active one marked `*`.\n\
             # Keep this file secret. `zoomkeeper keys rotate` adds keys, `keys retire` removes old ones.\n",
        );
        for (id, key) in &self.keys {
            let mut encoded = BASE64.encode(key.expose_secret());
            out.push_str(&format!("{id}:{encoded}"));
            encoded.zeroize();
            if *id == self.active {
                out.push('*');
            }
            out.push('\n');
        }
        out
    }

    /// Adds a fresh key and makes it active; returns its id. Old keys stay.
    pub fn add_new_active_key(&mut self) -> u32 {
        let id = self.keys.keys().next_back().map_or(1, |max| max + 1);
        self.keys.insert(id, fresh_key());
        self.active = id;
        id
    }

    /// Atomically replaces `file` (mode 0600) with this ring.
    pub fn save(&self, file: &Path) -> anyhow::Result<()> {
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
        let tmp = write_temp_beside(file, &self.render())?;
        std::fs::rename(&tmp, file)
            .with_context(|| format!("replacing the key file {}", file.display()))?;
        sync_parent(file);
        Ok(())
    }

    /// Drops every key but the active one. Only after [`reseal_all`] succeeded.
    pub fn retire_all_but_active(&mut self) {
        let active = self.active;
        self.keys.retain(|id, _| *id == active);
    }

    pub fn active_key_id(&self) -> u32 {
        self.active
    }

    pub fn key_ids(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    /// A vault over these keys, fixed: it never reloads (see [`Vault::from_key_file`]).
    pub fn vault(&self) -> Vault {
        Vault::fixed(VaultKeys::of(self))
    }
}

fn fresh_key() -> SecretBox<[u8; KEY_LEN]> {
    SecretBox::init_with_mut(|k: &mut [u8; KEY_LEN]| OsRng.fill_bytes(k))
}

fn decode_key(b64: &str) -> anyhow::Result<SecretBox<[u8; KEY_LEN]>> {
    let mut bytes = BASE64
        .decode(b64.trim())
        .map_err(|_| anyhow::anyhow!("invalid base64"))?;
    let result = if bytes.len() == KEY_LEN {
        Ok(SecretBox::init_with_mut(|k: &mut [u8; KEY_LEN]| {
            k.copy_from_slice(&bytes)
        }))
    } else {
        Err(anyhow::anyhow!(
            "{} bytes instead of {KEY_LEN}",
            bytes.len()
        ))
    };
    bytes.zeroize();
    result
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("creating the directory {}", dir.display()))
}

/// Writes `text` to a new mode-0600 file beside `file`, synced; returns its path.
fn write_temp_beside(file: &Path, text: &str) -> anyhow::Result<std::path::PathBuf> {
    let name = file
        .file_name()
        .with_context(|| format!("{} is not a file path", file.display()))?;
    let mut suffix = [0u8; 8];
    OsRng.fill_bytes(&mut suffix);
    let tmp = file.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        hex::encode(suffix)
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let write = |tmp: &Path| -> std::io::Result<()> {
        let mut f = options.open(tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    };
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", tmp.display()));
    }
    Ok(tmp)
}

fn sync_parent(file: &Path) {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

fn warn_if_readable_by_others(file: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(file) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %file.display(),
                    "the master key file is readable by other users; chmod 600 it"
                );
            }
        }
    }
}

/// Re-seals every sealed field (projects' webhook secrets, apps' client/webhook
/// secrets, connections' tokens) under the vault's active key; returns how many
/// changed. Idempotent; safe to re-run after a crash. Fails, naming the slot, if a
/// value does not open with any key in the vault (then no key may be retired).
pub async fn reseal_all(store: &dyn Store, vault: &Vault) -> anyhow::Result<u64> {
    const BATCH: u32 = 200;
    const MAX_PASSES: usize = 5;
    let mut changed = 0u64;
    // A value rewritten concurrently (by a request using an older vault) is caught by
    // the compare-and-swap and picked up again by the next pass.
    for _ in 0..MAX_PASSES {
        let mut lost_races = 0u64;
        let mut after: Option<(&'static str, &'static str, String)> = None;
        loop {
            let batch = store
                .sealed_fields(after.as_ref().map(|(t, c, r)| (*t, *c, r.as_str())), BATCH)
                .await
                .context("listing sealed values")?;
            let Some(last) = batch.last() else { break };
            after = Some((last.table, last.column, last.row_id.clone()));
            for field in &batch {
                if vault.is_sealed_under_active_key(&field.value) {
                    continue;
                }
                let slot = Slot {
                    table: field.table,
                    column: field.column,
                    row_id: &field.row_id,
                };
                let plaintext = vault.open(slot, &field.value)?;
                let resealed = vault.seal(slot, plaintext.expose_secret());
                if store
                    .reseal_field(field, &resealed)
                    .await
                    .with_context(|| format!("re-sealing {slot}"))?
                {
                    changed += 1;
                } else {
                    lost_races += 1;
                }
            }
            if batch.len() < BATCH as usize {
                break;
            }
        }
        if lost_races == 0 {
            return Ok(changed);
        }
    }
    bail!("secrets kept changing while they were re-sealed; run the rotation again")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(row_id: &str) -> Slot<'_> {
        Slot {
            table: "zoom_oauth_apps",
            column: "client_secret",
            row_id,
        }
    }

    #[test]
    fn sealed_value_opens_in_its_slot() {
        let vault = Keyring::generate().vault();
        let sealed = vault.seal_str(slot("zoa_1"), "s3cret");
        assert_eq!(sealed.0[0], ENVELOPE_VERSION);
        assert_eq!(sealed.0.len(), 1 + 4 + 24 + 6 + 16);
        let opened = vault.open_str(slot("zoa_1"), &sealed).expect("opens");
        assert_eq!(opened.expose_secret(), "s3cret");
    }

    #[test]
    fn same_plaintext_seals_differently_each_time() {
        let vault = Keyring::generate().vault();
        assert_ne!(vault.seal(slot("a"), b"x"), vault.seal(slot("a"), b"x"));
    }

    #[test]
    fn ciphertext_copied_to_another_row_or_column_does_not_open() {
        let vault = Keyring::generate().vault();
        let sealed = vault.seal(slot("zoa_1"), b"s3cret");
        assert!(matches!(
            vault.open(slot("zoa_2"), &sealed),
            Err(VaultError::DoesNotOpen { .. })
        ));
        let other_column = Slot {
            column: "webhook_secret",
            ..slot("zoa_1")
        };
        assert!(vault.open(other_column, &sealed).is_err());
        let other_table = Slot {
            table: "projects",
            ..slot("zoa_1")
        };
        assert!(vault.open(other_table, &sealed).is_err());
    }

    #[test]
    fn any_altered_byte_is_detected() {
        let vault = Keyring::generate().vault();
        let sealed = vault.seal(slot("zoa_1"), b"s3cret");
        for i in 0..sealed.0.len() {
            let mut tampered = sealed.clone();
            tampered.0[i] ^= 0x01;
            assert!(vault.open(slot("zoa_1"), &tampered).is_err(), "byte {i}");
        }
        let truncated = Sealed(sealed.0[..20].to_vec());
        assert!(matches!(
            vault.open(slot("zoa_1"), &truncated),
            Err(VaultError::Malformed { .. })
        ));
    }

    #[test]
    fn errors_name_the_slot_but_no_bytes() {
        let vault = Keyring::generate().vault();
        let sealed = vault.seal(slot("zoa_1"), b"s3cret");
        let err = vault.open(slot("zoa_2"), &sealed).expect_err("wrong row");
        let text = err.to_string();
        assert!(
            text.contains("zoom_oauth_apps.client_secret of row zoa_2"),
            "{text}"
        );
        assert!(!text.contains("s3cret"));
    }

    #[test]
    fn rotation_keeps_old_values_readable_until_retired() {
        let mut ring = Keyring::generate();
        let old = ring.vault();
        let sealed_old = old.seal(slot("r"), b"v");
        let new_id = ring.add_new_active_key();
        assert_eq!(new_id, 2);
        let both = ring.vault();
        assert_eq!(both.active_key_id(), 2);
        assert_eq!(
            both.open(slot("r"), &sealed_old)
                .expect("old")
                .expose_secret(),
            b"v"
        );
        let sealed_new = both.seal(slot("r"), b"v");
        assert_eq!(sealed_key_id(&sealed_new), Some(2));
        ring.retire_all_but_active();
        let only_new = ring.vault();
        assert!(matches!(
            only_new.open(slot("r"), &sealed_old),
            Err(VaultError::UnknownKey { key_id: 1, .. })
        ));
        assert!(only_new.open(slot("r"), &sealed_new).is_ok());
    }

    #[test]
    fn key_file_round_trips_and_marks_the_active_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("keys").join("master.key");
        let mut ring = Keyring::load_or_create(&file).expect("create");
        let sealed = ring.vault().seal(slot("r"), b"v");
        ring.add_new_active_key();
        ring.save(&file).expect("save");
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(
            text.lines()
                .any(|l| l.starts_with("2:") && l.ends_with('*')),
            "{text}"
        );
        let reloaded = Keyring::load_or_create(&file).expect("load");
        assert_eq!(reloaded.active_key_id(), 2);
        assert_eq!(reloaded.key_ids(), vec![1, 2]);
        assert!(reloaded.vault().open(slot("r"), &sealed).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dir_mode = std::fs::metadata(file.parent().expect("parent"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(dir_mode & 0o777, 0o700);
        }
    }

    #[test]
    fn processes_starting_at_once_share_one_key_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("master.key");
        let sealed: Vec<Sealed> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        Keyring::load_or_create(&file)
                            .expect("load or create")
                            .vault()
                            .seal(slot("r"), b"v")
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let ring = Keyring::load_or_create(&file).expect("load");
        assert_eq!(ring.key_ids(), vec![1]);
        for s in &sealed {
            assert!(
                ring.vault().open(slot("r"), s).is_ok(),
                "every starter got the same key"
            );
        }
        let leftovers = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(leftovers, 1, "no temporary files left behind");
    }

    #[test]
    fn inline_keyrings_parse() {
        let k1 = BASE64.encode([1u8; 32]);
        let k2 = BASE64.encode([2u8; 32]);
        assert_eq!(Keyring::from_inline(&k1).expect("bare").active_key_id(), 1);
        assert_eq!(
            Keyring::from_inline(&format!("7:{k1}"))
                .expect("one")
                .active_key_id(),
            7
        );
        let two = Keyring::from_inline(&format!("1:{k1}, 2:{k2}*")).expect("two");
        assert_eq!(two.active_key_id(), 2);
        assert!(
            Keyring::from_inline(&format!("1:{k1},2:{k2}")).is_err(),
            "no active"
        );
        assert!(
            Keyring::from_inline(&format!("1:{k1}*,2:{k2}*")).is_err(),
            "two active"
        );
        assert!(
            Keyring::from_inline(&format!("1:{k1},1:{k2}*")).is_err(),
            "dup id"
        );
        assert!(Keyring::from_inline("1:c2hvcnQ=").is_err(), "short key");
        assert!(Keyring::from_inline("").is_err());
        let err = Keyring::from_inline(&format!("x:{k1}")).expect_err("bad id");
        assert!(!format!("{err:#}").contains(&k1));
    }

    #[test]
    fn a_running_vault_reloads_the_key_file_when_it_meets_an_unknown_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("master.key");
        let running = Vault::from_key_file(&file).expect("first start");
        let before = running.seal(slot("r"), b"old");
        assert_eq!(sealed_key_id(&before), Some(1));

        // `keys rotate` in another process: a new active key, a value sealed under it.
        let mut ring = Keyring::load_or_create(&file).expect("load");
        ring.add_new_active_key();
        ring.save(&file).expect("save");
        let resealed = ring.vault().seal(slot("r"), b"new");

        let opened = running
            .open(slot("r"), &resealed)
            .expect("reloads, then opens");
        assert_eq!(opened.expose_secret(), b"new");
        assert_eq!(
            running.active_key_id(),
            2,
            "seals under the new key from now on"
        );
        assert_eq!(sealed_key_id(&running.seal(slot("r"), b"x")), Some(2));
        assert!(running.open(slot("r"), &before).is_ok(), "old key kept");

        // A key in no version of the file stays an error, without reloading again.
        let stranger = Keyring::generate();
        let mut other = stranger.vault().seal(slot("r"), b"x");
        other.0[1..5].copy_from_slice(&9u32.to_be_bytes());
        assert!(matches!(
            running.open(slot("r"), &other),
            Err(VaultError::UnknownKey { key_id: 9, .. })
        ));
        assert!(!running.reload_if_changed(), "file unchanged");
    }

    #[test]
    fn a_running_vault_seals_under_a_new_active_key_after_its_periodic_look() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("master.key");
        let running =
            Vault::from_key_file_checking_every(&file, Duration::ZERO).expect("first start");
        let fixed = Keyring::load_or_create(&file).expect("load").vault();
        let mut ring = Keyring::load_or_create(&file).expect("load");
        ring.add_new_active_key();
        ring.save(&file).expect("save");
        assert_eq!(sealed_key_id(&running.seal(slot("r"), b"x")), Some(2));
        assert_eq!(fixed.active_key_id(), 1, "a fixed vault never reloads");

        // `keys retire`: old keys leave the file and the running vault.
        let sealed_old = fixed.seal(slot("r"), b"x");
        ring.retire_all_but_active();
        ring.save(&file).expect("save");
        assert!(matches!(
            running.open(slot("r"), &sealed_old),
            Err(VaultError::UnknownKey { key_id: 1, .. })
        ));

        // A broken file keeps the keys in memory.
        std::fs::write(&file, "not a key file").expect("write");
        assert!(!running.reload_if_changed());
        assert_eq!(sealed_key_id(&running.seal(slot("r"), b"x")), Some(2));
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let ring = Keyring::from_inline(&BASE64.encode([9u8; 32])).expect("ring");
        let shown = format!("{ring:?} {:?}", ring.vault());
        assert!(!shown.contains(&BASE64.encode([9u8; 32])));
        assert!(shown.contains("active_key_id: 1"), "{shown}");
    }

    #[test]
    fn every_sealed_column_is_named_once_and_sorted() {
        let named = [
            Slot::bot_platform_verification_secret("x"),
            Slot::connect_session_code_verifier("x"),
            Slot::project_previous_webhook_secret("x"),
            Slot::project_webhook_secret("x"),
            Slot::app_client_secret("x"),
            Slot::app_webhook_secret("x"),
            Slot::connection_access_token("x"),
            Slot::connection_access_token_callback_url("x"),
            Slot::connection_refresh_token("x"),
        ]
        .map(|slot| (slot.table, slot.column));
        assert_eq!(named.as_slice(), SEALED_COLUMNS);
        let mut sorted = SEALED_COLUMNS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, SEALED_COLUMNS);
    }
}
