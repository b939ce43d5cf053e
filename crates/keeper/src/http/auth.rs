//! The API-key extractor: `Authorization: Token <key>` → the calling project,
//! with the per-project rate limit applied.

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use secrecy::SecretString;

use super::error::ApiError;
use super::AppState;
use crate::domain::api_keys::{self, AuthError, Caller};

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        caller(state, api_keys::parse_authorization(header)).await
    }
}

/// The project of a presented key (as parsed from the `Authorization` header), with
/// the per-project rate limit applied.
pub(super) async fn caller(
    state: &AppState,
    key: Result<SecretString, AuthError>,
) -> Result<Caller, ApiError> {
    let caller = match key {
        Ok(key) => api_keys::authenticate(&*state.keeper.store, &state.keeper.clock, &key).await,
        Err(e) => Err(e),
    }
    .map_err(|e| match e {
        AuthError::Missing => ApiError::MissingAuthorization,
        AuthError::Malformed => ApiError::MalformedAuthorization,
        AuthError::Invalid => ApiError::InvalidApiKey,
        AuthError::Store(e) => e.into(),
    })?;
    if let Err(wait) = state.keeper.rate_limiter.check(&caller.project_id) {
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        });
    }
    Ok(caller)
}
