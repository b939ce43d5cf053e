//! API keys: `zk_` + URL-safe base64 of 32 random bytes. Only the SHA-256 of a key is
//! stored; a presented key is looked up by its hash and compared in constant time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::core::clock::Clock;
use crate::core::ids::IdKind;
use crate::storage::{ApiKeyRow, ProjectStore, StoreResult};

pub const KEY_PREFIX: &str = "zk_";
/// How many characters of a key are kept visible (prefix included).
const VISIBLE_CHARS: usize = 8;
/// `last_used_at` is written at most this often per key.
pub const TOUCH_INTERVAL: chrono::Duration = chrono::Duration::seconds(60);

/// A freshly made key: the row to store and the key to show once.
pub struct NewApiKey {
    pub row: ApiKeyRow,
    pub key: SecretString,
}

/// Makes a new key for `project_id` (not yet stored).
pub fn generate(project_id: &str, name: &str, now: DateTime<Utc>) -> NewApiKey {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let row = ApiKeyRow {
        id: IdKind::ApiKey.generate(),
        project_id: project_id.to_owned(),
        name: name.to_owned(),
        key_hash: hash(&key).to_vec(),
        prefix: key.chars().take(VISIBLE_CHARS).collect(),
        created_at: now,
        last_used_at: None,
        disabled_at: None,
    };
    NewApiKey {
        row,
        key: SecretString::from(key),
    }
}

pub fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Who is calling: the project every query is scoped to.
#[derive(Debug, Clone)]
pub struct Caller {
    pub project_id: String,
    pub api_key_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization header")]
    Missing,
    #[error("malformed Authorization header")]
    Malformed,
    #[error("unknown or disabled API key")]
    Invalid,
    #[error(transparent)]
    Store(#[from] crate::storage::StoreError),
}

/// Extracts the key from an `Authorization` header value (`Token <key>`).
pub fn parse_authorization(value: Option<&[u8]>) -> Result<SecretString, AuthError> {
    let value = value.ok_or(AuthError::Missing)?;
    let text = std::str::from_utf8(value).map_err(|_| AuthError::Malformed)?;
    let (scheme, key) = text.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    let key = key.trim();
    if !scheme.eq_ignore_ascii_case("token") || key.is_empty() || key.contains(char::is_whitespace)
    {
        return Err(AuthError::Malformed);
    }
    Ok(SecretString::from(key.to_owned()))
}

/// Like [`parse_authorization`], but the `Token ` scheme may also be left out (a
/// bare key), as Recall's API allows.
pub fn parse_authorization_scheme_optional(
    value: Option<&[u8]>,
) -> Result<SecretString, AuthError> {
    let value = value.ok_or(AuthError::Missing)?;
    let text = std::str::from_utf8(value).map_err(|_| AuthError::Malformed)?;
    let bare = text.trim();
    if !bare.is_empty() && !bare.contains(char::is_whitespace) {
        return Ok(SecretString::from(bare.to_owned()));
    }
    parse_authorization(Some(value))
}

/// Checks a presented key and records its use (at most every [`TOUCH_INTERVAL`]).
pub async fn authenticate(
    store: &dyn ProjectStore,
    clock: &Clock,
    key: &SecretString,
) -> Result<Caller, AuthError> {
    let presented = hash(key.expose_secret());
    let row = store
        .api_key_by_hash(&presented)
        .await?
        .ok_or(AuthError::Invalid)?;
    // The lookup already matched; this keeps the decision itself constant time.
    if !bool::from(row.key_hash.as_slice().ct_eq(&presented)) || row.disabled_at.is_some() {
        return Err(AuthError::Invalid);
    }
    let now = clock.now();
    if row.last_used_at.is_none_or(|at| now - at >= TOUCH_INTERVAL) {
        touch(store, &row.id, now).await;
    }
    Ok(Caller {
        project_id: row.project_id,
        api_key_id: row.id,
    })
}

/// Recording use is bookkeeping: a failure is logged, not fatal to the request.
async fn touch(store: &dyn ProjectStore, id: &str, now: DateTime<Utc>) {
    let result: StoreResult<()> = store.touch_api_key(id, now).await;
    if let Err(e) = result {
        tracing::warn!(api_key_id = id, error = %e, "could not record API key use");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_shape() {
        let k = generate("prj_x", "test", Utc::now());
        let key = k.key.expose_secret();
        assert!(key.starts_with("zk_"));
        assert_eq!(key.len(), 3 + 43);
        assert_eq!(k.row.key_hash, hash(key).to_vec());
        assert!(key.starts_with(&k.row.prefix));
    }

    #[test]
    fn authorization_header_forms() {
        assert!(matches!(parse_authorization(None), Err(AuthError::Missing)));
        for bad in [
            &b"Bearer zk_x"[..],
            b"Token",
            b"Token ",
            b"zk_abc",
            b"Token a b",
            b"Token \xff",
        ] {
            assert!(
                matches!(parse_authorization(Some(bad)), Err(AuthError::Malformed)),
                "{bad:?}"
            );
        }
        let k = parse_authorization(Some(b"Token zk_abc")).expect("valid");
        assert_eq!(k.expose_secret(), "zk_abc");
    }
}
