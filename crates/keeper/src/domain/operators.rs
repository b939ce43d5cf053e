//! Dashboard operators (DESIGN.md §13): accounts with an argon2id password, sessions
//! that end at logout or after [`IDLE_TIMEOUT`] without use, a CSRF token derived
//! from the session, and sign-in throttling per email address that works across
//! processes (the failures are counted in the database).

use std::collections::BTreeMap;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::core::clock::Clock;
use crate::core::ids::IdKind;
use crate::domain::fields::FieldProblems;
use crate::storage::{OperatorRow, OperatorSessionRow, OperatorStore, StoreError};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted (hashing cost must stay bounded).
pub const MAX_PASSWORD_BYTES: usize = 512;
const MAX_EMAIL_CHARS: usize = 254;
/// A session unused this long has ended.
pub const IDLE_TIMEOUT: Duration = Duration::hours(12);
/// A session ends this long after sign-in, used or not.
pub const MAX_SESSION_AGE: Duration = Duration::days(7);
/// `last_seen_at` is written at most this often per session.
const TOUCH_INTERVAL: Duration = Duration::seconds(60);
/// Failed sign-ins for one email address allowed per [`THROTTLE_WINDOW`].
pub const MAX_FAILURES: i64 = 5;
pub const THROTTLE_WINDOW: Duration = Duration::minutes(15);

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("invalid operator")]
    Invalid(BTreeMap<String, Vec<String>>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The same answer for an unknown email and a wrong password.
    #[error("Wrong email or password.")]
    Invalid,
    #[error(
        "Too many failed sign-ins for this email address; try again in {} minute(s).",
        retry_after_secs.div_ceil(60)
    )]
    Throttled { retry_after_secs: u64 },
    /// Every password-hashing slot stayed busy (a flood of sign-ins).
    #[error("The server is busy checking other sign-ins; try again in a few seconds.")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new operator and, when none was given, the generated password (shown once).
pub struct CreatedOperator {
    pub operator: OperatorRow,
    pub generated_password: Option<SecretString>,
}

/// Normalises and checks an email address: one `@`, something on each side, no
/// spaces or control characters.
fn normalise_email(email: &str, problems: &mut FieldProblems) -> String {
    let email = email.trim().to_lowercase();
    let plausible = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@') && domain.contains('.')
    }) && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !plausible {
        problems.add("email", "Enter an email address such as ops@example.com.");
    } else if email.chars().count() > MAX_EMAIL_CHARS {
        problems.add(
            "email",
            format!("An email address is at most {MAX_EMAIL_CHARS} characters."),
        );
    }
    email
}

fn check_password(password: &str, problems: &mut FieldProblems) {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        problems.add(
            "password",
            format!("A password must be at least {MIN_PASSWORD_CHARS} characters."),
        );
    } else if password.len() > MAX_PASSWORD_BYTES {
        problems.add(
            "password",
            format!("A password must be at most {MAX_PASSWORD_BYTES} bytes."),
        );
    }
}

/// A random password of 20 URL-safe characters (120 bits).
fn generate_password() -> SecretString {
    let mut bytes = [0u8; 15];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(URL_SAFE_NO_PAD.encode(bytes))
}

/// Password hashes computed at once, process-wide: each takes 19 MiB and a core for
/// tens of milliseconds, so a flood of sign-ins (each with a new address, which
/// per-address throttling does not slow) must queue rather than take the machine.
const HASHING_SLOTS: usize = 2;
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(HASHING_SLOTS);
/// How long a sign-in waits for a hashing slot before it is answered "busy".
const HASHING_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A hashing slot, or `None` when none came free within [`HASHING_WAIT`].
async fn hashing_slot() -> Option<tokio::sync::SemaphorePermit<'static>> {
    tokio::time::timeout(HASHING_WAIT, HASHING.acquire())
        .await
        .ok()
        .and_then(Result::ok)
}

/// argon2id with the crate's defaults (19 MiB, 2 passes: OWASP's recommendation),
/// off the async threads.
async fn hash_password(password: SecretString) -> Result<String, StoreError> {
    // Operators are made by operators and on the command line: waiting is fine.
    let _slot = HASHING.acquire().await;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| StoreError::Database(sqlx::Error::Protocol(format!("hashing task: {e}"))))?
    .map_err(|e| StoreError::Database(sqlx::Error::Protocol(format!("argon2: {e}"))))
}

/// Whether `password` matches `hash` (false for a malformed hash); `Busy` when no
/// hashing slot came free in time.
async fn verify_password(password: SecretString, hash: String) -> Result<bool, LoginError> {
    let Some(_slot) = hashing_slot().await else {
        return Err(LoginError::Busy);
    };
    Ok(tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.expose_secret().as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false))
}

/// A hash no password matches, verified for unknown email addresses so an unknown
/// address takes as long to refuse as a wrong password.
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$\
    ZHVtbXlzYWx0ZHVtbXlzYWx0$YmX2Id4VXH9uS0gqoeSXpK8hX8Tq5nM1bZC8QHbWsd0";

/// Creates an operator. With no `password`, one is generated and returned, to be
/// shown once.
pub async fn create(
    store: &dyn OperatorStore,
    clock: &Clock,
    email: &str,
    password: Option<SecretString>,
    created_by: Option<&str>,
) -> Result<CreatedOperator, OperatorError> {
    let mut problems = FieldProblems::default();
    let email = normalise_email(email, &mut problems);
    if let Some(password) = &password {
        check_password(password.expose_secret(), &mut problems);
    }
    problems.into_result(OperatorError::Invalid)?;
    let generated_password = password.is_none().then(generate_password);
    let password = password
        .or_else(|| generated_password.clone())
        .unwrap_or_else(generate_password);
    let operator = OperatorRow {
        id: IdKind::Operator.generate(),
        email,
        password_hash: hash_password(password).await?,
        created_by: created_by.map(str::to_owned),
        created_at: clock.now(),
    };
    match store.insert_operator(&operator).await {
        Ok(()) => Ok(CreatedOperator {
            operator,
            generated_password,
        }),
        Err(StoreError::Conflict { .. }) => Err(OperatorError::Invalid(FieldProblems::one(
            "email",
            "An operator with this email address already exists.",
        ))),
        Err(e) => Err(e.into()),
    }
}

/// A signed-in browser as the dashboard sees it.
#[derive(Debug, Clone)]
pub struct Session {
    pub token_hash: Vec<u8>,
    pub operator_id: String,
    pub email: String,
    pub project_id: Option<String>,
    /// What every form of this session carries ([`csrf_token`]).
    pub csrf: String,
}

/// A new session: the token for the cookie (never stored) and the session.
pub struct NewSession {
    pub token: SecretString,
    pub session: Session,
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The CSRF token of the session whose cookie holds `token`: an HMAC of it, so it
/// needs no storage and cannot be made without the cookie.
pub fn csrf_token(token: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(b"zoomkeeper dashboard csrf");
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Whether a form's CSRF token is the session's (constant time).
pub fn csrf_matches(session: &Session, presented: &str) -> bool {
    bool::from(session.csrf.as_bytes().ct_eq(presented.as_bytes()))
}

fn throttle_key(email: &str) -> String {
    format!("email:{}", email.trim().to_lowercase())
}

/// Signs an operator in. Five attempts for one email address within 15 minutes
/// without a success refuse further attempts for that address until the window
/// ends — whether or not the address belongs to an operator, so throttling reveals
/// nothing.
pub async fn login(
    store: &dyn OperatorStore,
    clock: &Clock,
    email: &str,
    password: SecretString,
) -> Result<NewSession, LoginError> {
    // No operator has such an address (creation refuses them), and PostgreSQL could
    // not even store it as a throttling key.
    if email.contains(char::is_control) || email.chars().count() > MAX_EMAIL_CHARS {
        return Err(LoginError::Invalid);
    }
    let now = clock.now();
    let key = throttle_key(email);
    // Counted before the password is looked at, in one statement: concurrent
    // attempts cannot all see a count under the limit.
    let (attempts, started) = store
        .count_login_attempt(&key, now, now - THROTTLE_WINDOW)
        .await?;
    if attempts > MAX_FAILURES {
        let retry_after = (started + THROTTLE_WINDOW - now).num_seconds().max(1);
        return Err(LoginError::Throttled {
            retry_after_secs: u64::try_from(retry_after).unwrap_or(1),
        });
    }
    let operator = if password.expose_secret().len() > MAX_PASSWORD_BYTES {
        None
    } else {
        store
            .operator_by_email(&email.trim().to_lowercase())
            .await?
    };
    let hash = operator
        .as_ref()
        .map_or_else(|| DECOY_HASH.to_owned(), |o| o.password_hash.clone());
    let verified = verify_password(password, hash).await? && operator.is_some();
    let Some(operator) = operator.filter(|_| verified) else {
        return Err(LoginError::Invalid);
    };
    store.clear_login_failures(&key).await?;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let row = OperatorSessionRow {
        token_hash: token_hash(&token),
        operator_id: operator.id.clone(),
        email: operator.email.clone(),
        project_id: None,
        created_at: now,
        last_seen_at: now,
    };
    store.insert_operator_session(&row).await?;
    Ok(NewSession {
        session: Session {
            token_hash: row.token_hash,
            operator_id: row.operator_id,
            email: row.email,
            project_id: None,
            csrf: csrf_token(&token),
        },
        token: SecretString::from(token),
    })
}

/// The live session whose cookie holds `token`; `None` when there is none or it has
/// ended (an ended session is deleted). `used` records a person's use, which keeps
/// the session from idling out; a page refreshing itself is not one.
pub async fn session(
    store: &dyn OperatorStore,
    clock: &Clock,
    token: &str,
    used: bool,
) -> Result<Option<Session>, StoreError> {
    let hash = token_hash(token);
    let Some(row) = store.operator_session(&hash).await? else {
        return Ok(None);
    };
    let now = clock.now();
    if now - row.last_seen_at >= IDLE_TIMEOUT || now - row.created_at >= MAX_SESSION_AGE {
        store.delete_operator_session(&hash).await?;
        return Ok(None);
    }
    if used && now - row.last_seen_at >= TOUCH_INTERVAL {
        store.touch_operator_session(&hash, now).await?;
    }
    Ok(Some(Session {
        token_hash: row.token_hash,
        operator_id: row.operator_id,
        email: row.email,
        project_id: row.project_id,
        csrf: csrf_token(token),
    }))
}

/// Ends a session.
pub async fn logout(store: &dyn OperatorStore, session: &Session) -> Result<(), StoreError> {
    store.delete_operator_session(&session.token_hash).await
}

/// Drops sessions and throttling windows that have ended (housekeeping).
pub async fn prune(store: &dyn OperatorStore, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let sessions = store
        .delete_operator_sessions_idle_before(now - IDLE_TIMEOUT)
        .await?;
    let windows = store
        .delete_login_failures_before(now - THROTTLE_WINDOW)
        .await?;
    Ok(sessions + windows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        let mut p = FieldProblems::default();
        assert_eq!(
            normalise_email(" Ops@Example.COM ", &mut p),
            "ops@example.com"
        );
        assert!(p.0.is_empty());
        for bad in [
            "",
            "ops",
            "@example.com",
            "ops@",
            "ops@localhost",
            "a b@example.com",
        ] {
            let mut p = FieldProblems::default();
            normalise_email(bad, &mut p);
            assert!(p.0.contains_key("email"), "{bad:?}");
        }
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_match_only_their_own() {
        let a = csrf_token("token-a");
        assert_ne!(a, csrf_token("token-b"));
        let session = Session {
            token_hash: vec![],
            operator_id: "opr_x".into(),
            email: "x@example.com".into(),
            project_id: None,
            csrf: a.clone(),
        };
        assert!(csrf_matches(&session, &a));
        assert!(!csrf_matches(&session, ""));
        assert!(!csrf_matches(&session, &csrf_token("token-b")));
    }

    #[test]
    fn the_decoy_hash_parses_and_matches_nothing_plausible() {
        assert!(PasswordHash::new(DECOY_HASH).is_ok());
        let parsed = PasswordHash::new(DECOY_HASH).expect("parses");
        assert!(Argon2::default()
            .verify_password(b"correct horse battery", &parsed)
            .is_err());
    }
}
