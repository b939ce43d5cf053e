//! The service's one door to Zoom: it holds the [`zoom::ZoomClient`], counts every
//! call in the metrics and turns Zoom's answers into the outcomes the domain acts on.

use std::sync::Arc;

use std::future::Future;

use secrecy::SecretString;
use zoom::{
    AppCredentials, LocalRecordingToken, MeetingListType, MeetingPage, PkceVerifier, TokenGrant,
    UserPage, UserTokenType, ZoomClient, ZoomConfig, ZoomError, ZoomUser,
};

use crate::core::metrics::Metrics;

/// What Zoom said about a client_id/client_secret pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialCheck {
    Accepted,
    /// Zoom answered, and not with success.
    Rejected,
    /// Zoom could not be reached, timed out, failed (5xx) or asked us to slow down.
    Unavailable,
}

#[derive(Clone)]
pub struct ZoomGateway {
    client: ZoomClient,
    metrics: Arc<Metrics>,
}

impl ZoomGateway {
    pub fn new(
        oauth_url: &str,
        api_url: &str,
        metrics: Arc<Metrics>,
    ) -> Result<ZoomGateway, ZoomError> {
        let client = ZoomClient::new(ZoomConfig {
            oauth_url: oauth_url.to_owned(),
            api_url: api_url.to_owned(),
            ..ZoomConfig::default()
        })?;
        Ok(ZoomGateway { client, metrics })
    }

    pub fn client(&self) -> &ZoomClient {
        &self.client
    }

    /// A `client_credentials` grant at Zoom's token endpoint: the cheapest call that
    /// proves a client secret belongs to a client id.
    pub async fn check_client_credentials(
        &self,
        client_id: &str,
        client_secret: &SecretString,
    ) -> CredentialCheck {
        let app = AppCredentials {
            client_id: client_id.to_owned(),
            client_secret: client_secret.clone(),
        };
        let result = self.client.client_credentials(&app).await;
        self.metrics.record_zoom_call(
            "oauth_token_client_credentials",
            match &result {
                Ok(_) => "success",
                Err(e) => e.class(),
            },
        );
        match result {
            Ok(_) => CredentialCheck::Accepted,
            Err(e) if e.is_temporary() => {
                tracing::warn!(error = %e, "Zoom token endpoint unavailable during a credential check");
                CredentialCheck::Unavailable
            }
            Err(ZoomError::BadResponse { status, .. }) if status >= 500 => {
                CredentialCheck::Unavailable
            }
            Err(e) => {
                tracing::info!(class = e.class(), "Zoom refused client credentials");
                CredentialCheck::Rejected
            }
        }
    }

    /// Runs one call to Zoom and counts it under `endpoint`.
    async fn counted<T>(
        &self,
        endpoint: &'static str,
        call: impl Future<Output = Result<T, ZoomError>>,
    ) -> Result<T, ZoomError> {
        let result = call.await;
        self.metrics.record_zoom_call(
            endpoint,
            match &result {
                Ok(_) => "success",
                Err(e) => e.class(),
            },
        );
        result
    }

    pub async fn exchange_code(
        &self,
        app: &AppCredentials,
        code: &SecretString,
        redirect_uri: &str,
        code_verifier: Option<&PkceVerifier>,
    ) -> Result<TokenGrant, ZoomError> {
        self.counted(
            "oauth_token_authorization_code",
            self.client
                .exchange_code(app, code, redirect_uri, code_verifier),
        )
        .await
    }

    pub async fn refresh(
        &self,
        app: &AppCredentials,
        refresh_token: &SecretString,
    ) -> Result<TokenGrant, ZoomError> {
        self.counted(
            "oauth_token_refresh_token",
            self.client.refresh(app, refresh_token),
        )
        .await
    }

    /// Best effort: the outcome is counted (zoom calls and revocations) and logged,
    /// never returned — a failed revocation must not fail what the caller is doing.
    pub async fn revoke_best_effort(&self, app: &AppCredentials, token: &SecretString, why: &str) {
        let result = self
            .counted("oauth_revoke", self.client.revoke(app, token))
            .await;
        match result {
            Ok(()) => self.metrics.record_revocation("success"),
            Err(e) => {
                self.metrics.record_revocation(e.class());
                tracing::warn!(error = %e, why, "revoking a token at Zoom failed; it stays valid at Zoom until it expires");
            }
        }
    }

    pub async fn me(&self, access_token: &SecretString) -> Result<ZoomUser, ZoomError> {
        self.counted("users_me", self.client.me(access_token)).await
    }

    pub async fn user_token(
        &self,
        access_token: &SecretString,
        token_type: &UserTokenType,
    ) -> Result<SecretString, ZoomError> {
        let endpoint = match token_type {
            UserTokenType::Zak => "users_me_token_zak",
            UserTokenType::OnBehalf { .. } => "users_me_token_onbehalf",
        };
        self.counted(endpoint, self.client.user_token(access_token, token_type))
            .await
    }

    /// `GET /users/{userId}/token`: a token of another user of the grant's account.
    pub async fn user_token_of(
        &self,
        access_token: &SecretString,
        user_id: &str,
        token_type: &UserTokenType,
    ) -> Result<SecretString, ZoomError> {
        let endpoint = match token_type {
            UserTokenType::Zak => "users_id_token_zak",
            UserTokenType::OnBehalf { .. } => "users_id_token_onbehalf",
        };
        self.counted(
            endpoint,
            self.client.user_token_of(access_token, user_id, token_type),
        )
        .await
    }

    /// `GET /users/me/zak`: a ZAK for grants without `/users/me/token` scopes.
    pub async fn zak(&self, access_token: &SecretString) -> Result<SecretString, ZoomError> {
        self.counted("users_me_zak", self.client.zak(access_token))
            .await
    }

    /// One page of a user's meetings (meeting sync): `me` for the token's own user,
    /// or another user of an admin's account.
    pub async fn list_meetings_page(
        &self,
        access_token: &SecretString,
        user_id: &str,
        list_type: MeetingListType,
        next_page_token: Option<&str>,
    ) -> Result<MeetingPage, ZoomError> {
        let endpoint = if user_id == "me" {
            "users_me_meetings"
        } else {
            "users_id_meetings"
        };
        self.counted(
            endpoint,
            self.client
                .list_meetings_page(access_token, user_id, list_type, next_page_token),
        )
        .await
    }

    /// One page of the admin's account's active users (account meeting sync).
    pub async fn list_users_page(
        &self,
        access_token: &SecretString,
        next_page_token: Option<&str>,
    ) -> Result<UserPage, ZoomError> {
        self.counted(
            "users",
            self.client.list_users_page(access_token, next_page_token),
        )
        .await
    }

    /// The local recording token of `meeting_id`, minted with its host's token.
    pub async fn local_recording_token(
        &self,
        access_token: &SecretString,
        meeting_id: &str,
        bypass_waiting_room: bool,
    ) -> Result<LocalRecordingToken, ZoomError> {
        self.counted(
            "meetings_jointoken_local_recording",
            self.client
                .local_recording_token(access_token, meeting_id, bypass_waiting_room),
        )
        .await
    }
}
