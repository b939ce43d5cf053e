//! Zoom OAuth: the authorize URL (with PKCE), the three grants at
//! `/oauth/token`, and `/oauth/revoke` — Basic auth and form bodies, as Zoom
//! documents them (DESIGN.md §5).

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::client::ZoomClient;
use crate::error::ZoomError;
use crate::types::Lenient;

/// An OAuth app's credentials. `Debug` never shows the secret.
#[derive(Debug, Clone)]
pub struct AppCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
}

impl AppCredentials {
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        AppCredentials {
            client_id: client_id.into(),
            client_secret: SecretString::from(client_secret.into()),
        }
    }

    /// `Basic base64(client_id:client_secret)`.
    fn basic_auth(&self) -> String {
        let raw = format!("{}:{}", self.client_id, self.client_secret.expose_secret());
        format!("Basic {}", STANDARD.encode(raw))
    }
}

/// A PKCE code verifier (RFC 7636). Keep it with the `state` until the user comes
/// back, then pass it to [`ZoomClient::exchange_code`].
#[derive(Debug, Clone)]
pub struct PkceVerifier(SecretString);

impl PkceVerifier {
    /// A fresh verifier: 32 random bytes, base64url without padding (43 chars).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        PkceVerifier(SecretString::from(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Wrap a verifier received from elsewhere.
    pub fn from_string(verifier: impl Into<String>) -> Self {
        PkceVerifier(SecretString::from(verifier.into()))
    }

    /// The S256 challenge for this verifier.
    pub fn challenge(&self) -> String {
        pkce_challenge(self.0.expose_secret())
    }

    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

/// `BASE64URL-NOPAD(SHA256(ASCII(verifier)))` — the S256 PKCE challenge.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// What goes into an authorize URL.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub state: &'a str,
    /// The S256 challenge (see [`PkceVerifier::challenge`]), if PKCE is used.
    pub code_challenge: Option<&'a str>,
}

/// The answer of a successful grant. `Debug` never shows the tokens.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub access_token: SecretString,
    pub token_type: String,
    /// Absent for `client_credentials`. For a refresh, this replaces the old
    /// refresh token, which is already dead at Zoom.
    pub refresh_token: Option<SecretString>,
    /// Lifetime of the access token, counted from when the answer arrived (at
    /// most [`crate::client::MAX_TOKEN_LIFETIME`]).
    pub expires_in: Duration,
    /// Granted scopes (Zoom sends them space-separated).
    pub scopes: Vec<String>,
    /// The API base Zoom says to use for this token, when it says one.
    pub api_url: Option<String>,
}

impl TokenGrant {
    /// Parse a token endpoint answer leniently: `expires_in` as number or string
    /// (missing → 3599 s, Zoom's documented lifetime), `scope` space-separated,
    /// `refresh_token` optional.
    pub fn from_json(body: &[u8]) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Raw {
            access_token: String,
            #[serde(default)]
            token_type: Option<String>,
            #[serde(default)]
            refresh_token: Option<String>,
            #[serde(default)]
            expires_in: Option<Lenient>,
            #[serde(default)]
            scope: Option<String>,
            #[serde(default)]
            api_url: Option<String>,
        }
        let raw: Raw = serde_json::from_slice(body)?;
        let expires_in = raw
            .expires_in
            .and_then(|l| l.0.trim().parse::<u64>().ok())
            .unwrap_or(3599);
        Ok(TokenGrant {
            access_token: SecretString::from(raw.access_token),
            token_type: raw.token_type.unwrap_or_else(|| "bearer".to_owned()),
            refresh_token: raw
                .refresh_token
                .filter(|t| !t.is_empty())
                .map(SecretString::from),
            expires_in: crate::client::token_lifetime(expires_in),
            scopes: raw
                .scope
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            api_url: raw.api_url.filter(|u| !u.is_empty()),
        })
    }
}

impl ZoomClient {
    /// `{oauth_url}/oauth/authorize?response_type=code&client_id&redirect_uri&state
    /// [&code_challenge&code_challenge_method=S256]`.
    pub fn authorize_url(&self, request: &AuthorizeRequest<'_>) -> String {
        let mut url = self.oauth_endpoint("authorize");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", request.client_id)
                .append_pair("redirect_uri", request.redirect_uri)
                .append_pair("state", request.state);
            if let Some(challenge) = request.code_challenge {
                q.append_pair("code_challenge", challenge)
                    .append_pair("code_challenge_method", "S256");
            }
        }
        url.into()
    }

    /// Exchange an authorization code (`grant_type=authorization_code`). Zoom
    /// refuses a bad, used or expired code, or a redirect URI that does not match,
    /// with `invalid_request` ([`ZoomError::BadRequest`]: "Invalid authorization
    /// code …", 4733 "Code is expired.", 4709 "Redirect URI mismatch.") or, for some
    /// refusals, `invalid_grant` ([`ZoomError::GrantRevoked`]); a caller treats both
    /// as a refused code. The code is scrubbed from Zoom's reason.
    pub async fn exchange_code(
        &self,
        app: &AppCredentials,
        code: &SecretString,
        redirect_uri: &str,
        code_verifier: Option<&PkceVerifier>,
    ) -> Result<TokenGrant, ZoomError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.expose_secret()),
            ("redirect_uri", redirect_uri),
        ];
        if let Some(v) = code_verifier {
            form.push(("code_verifier", v.0.expose_secret()));
        }
        let secrets = [
            app.client_secret.expose_secret(),
            code.expose_secret(),
            code_verifier.map_or("", |v| v.0.expose_secret()),
        ];
        self.token_grant(app, &form, &secrets).await
    }

    /// Refresh (`grant_type=refresh_token`). Zoom rotates refresh tokens: on
    /// success the old one is dead and the grant's `refresh_token` must be stored
    /// before anything else. `Unavailable { outcome_unknown: true }` means the
    /// old one may be dead too.
    pub async fn refresh(
        &self,
        app: &AppCredentials,
        refresh_token: &SecretString,
    ) -> Result<TokenGrant, ZoomError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
        ];
        let secrets = [
            app.client_secret.expose_secret(),
            refresh_token.expose_secret(),
        ];
        self.token_grant(app, &form, &secrets).await
    }

    /// An app-only token (`grant_type=client_credentials`); also how app
    /// credentials are checked. Has no refresh token.
    pub async fn client_credentials(&self, app: &AppCredentials) -> Result<TokenGrant, ZoomError> {
        let form = [("grant_type", "client_credentials")];
        self.token_grant(app, &form, &[app.client_secret.expose_secret()])
            .await
    }

    /// Revoke an access or refresh token (`POST /oauth/revoke`, form `token=…`).
    pub async fn revoke(
        &self,
        app: &AppCredentials,
        token: &SecretString,
    ) -> Result<(), ZoomError> {
        let request = self
            .http
            .post(self.oauth_endpoint("revoke"))
            .header(reqwest::header::AUTHORIZATION, app.basic_auth())
            .form(&[("token", token.expose_secret())]);
        let answer = self.send(request).await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(answer.oauth_error(&[app.client_secret.expose_secret(), token.expose_secret()]))
        }
    }

    async fn token_grant(
        &self,
        app: &AppCredentials,
        form: &[(&str, &str)],
        secrets: &[&str],
    ) -> Result<TokenGrant, ZoomError> {
        let request = self
            .http
            .post(self.oauth_endpoint("token"))
            .header(reqwest::header::AUTHORIZATION, app.basic_auth())
            .form(form);
        let answer = self.send(request).await?;
        if !answer.status.is_success() {
            return Err(answer.oauth_error(secrets));
        }
        TokenGrant::from_json(&answer.body).map_err(|err| ZoomError::BadResponse {
            status: answer.status.as_u16(),
            detail: crate::types::json_error_detail(&err),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ZoomConfig;

    #[test]
    fn pkce_challenge_matches_rfc_7636_appendix_b() {
        // RFC 7636, Appendix B: https://www.rfc-editor.org/rfc/rfc7636#appendix-B
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn generated_verifiers_are_valid_and_distinct() {
        let a = PkceVerifier::generate();
        let b = PkceVerifier::generate();
        let text = a.secret().expose_secret();
        assert_eq!(text.len(), 43);
        assert!(text
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(text, b.secret().expose_secret());
        assert!(!format!("{a:?}").contains(text));
    }

    #[test]
    fn authorize_url_carries_every_parameter_encoded() {
        let client = ZoomClient::new(ZoomConfig::default()).unwrap();
        let url = client.authorize_url(&AuthorizeRequest {
            client_id: "cid",
            redirect_uri: "https://app.example/cb?x=1",
            state: "s t&ate",
            code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
        });
        assert_eq!(
            url,
            "https://zoom.us/oauth/authorize?response_type=code&client_id=cid\
             &redirect_uri=https%3A%2F%2Fapp.example%2Fcb%3Fx%3D1&state=s+t%26ate\
             &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
             &code_challenge_method=S256"
        );
    }

    #[test]
    fn authorize_url_without_pkce_has_no_challenge() {
        let client = ZoomClient::new(ZoomConfig::default()).unwrap();
        let url = client.authorize_url(&AuthorizeRequest {
            client_id: "cid",
            redirect_uri: "https://app.example/cb",
            state: "xyz",
            code_challenge: None,
        });
        assert!(!url.contains("code_challenge"));
    }

    #[test]
    fn basic_auth_is_base64_of_id_colon_secret() {
        let app = AppCredentials::new("abc", "s3cret");
        assert_eq!(app.basic_auth(), "Basic YWJjOnMzY3JldA==");
        assert!(!format!("{app:?}").contains("s3cret"));
    }

    #[test]
    fn token_response_as_zoom_documents_it() {
        let grant = TokenGrant::from_json(
            br#"{"access_token":"at","token_type":"bearer","refresh_token":"rt",
                "expires_in":3599,"scope":"user:read:user user:read:zak","api_url":"https://api.zoom.us"}"#,
        )
        .unwrap();
        assert_eq!(grant.access_token.expose_secret(), "at");
        assert_eq!(grant.refresh_token.as_ref().unwrap().expose_secret(), "rt");
        assert_eq!(grant.expires_in, Duration::from_secs(3599));
        assert_eq!(grant.scopes, ["user:read:user", "user:read:zak"]);
        assert_eq!(grant.api_url.as_deref(), Some("https://api.zoom.us"));
        let shown = format!("{grant:?}");
        assert!(!shown.contains("\"at\"") && !shown.contains("\"rt\""));
    }

    #[test]
    fn token_response_accepts_expires_in_as_string_and_no_refresh_token() {
        let grant = TokenGrant::from_json(
            br#"{"access_token":"at","token_type":"bearer","expires_in":"3600","scope":"","extra":1}"#,
        )
        .unwrap();
        assert_eq!(grant.expires_in, Duration::from_secs(3600));
        assert!(grant.refresh_token.is_none());
        assert!(grant.scopes.is_empty());
    }

    #[test]
    fn an_absurd_expires_in_is_bounded_so_callers_can_add_it_to_now() {
        let grant =
            TokenGrant::from_json(br#"{"access_token":"at","expires_in":18446744073709551615}"#)
                .unwrap();
        assert!(grant.expires_in <= crate::client::MAX_TOKEN_LIFETIME);
        let _ = std::time::SystemTime::now() + grant.expires_in;
        let _ = chrono::Utc::now() + chrono::Duration::from_std(grant.expires_in).unwrap();
    }

    #[test]
    fn token_response_without_access_token_is_an_error() {
        assert!(TokenGrant::from_json(br#"{"token_type":"bearer"}"#).is_err());
        assert!(TokenGrant::from_json(b"not json").is_err());
    }
}
