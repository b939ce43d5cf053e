//! The one HTTP client that talks to Zoom, and the classification of every answer
//! into [`ZoomError`].

use std::time::{Duration, SystemTime};

use reqwest::{header, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{parse_retry_after, scrub, ZoomError};

/// Default time limit for one call to Zoom: well under a 60 s work lease.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest token lifetime believed from Zoom (its tokens live one or two hours):
/// anything larger is cut to this, so callers can always compute `now + lifetime`.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// A lifetime Zoom stated in seconds, bounded by [`MAX_TOKEN_LIFETIME`].
pub(crate) fn token_lifetime(secs: u64) -> Duration {
    Duration::from_secs(secs).min(MAX_TOKEN_LIFETIME)
}

/// Largest answer body we read from Zoom; a page of 300 meetings is ~200 KB.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Where Zoom is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct ZoomConfig {
    /// Base of the OAuth endpoints, e.g. `https://zoom.us`.
    pub oauth_url: String,
    /// Base of the REST API, e.g. `https://api.zoom.us` (`/v2` is appended).
    pub api_url: String,
    /// Time limit for each call, connect to last byte.
    pub timeout: Duration,
}

impl Default for ZoomConfig {
    fn default() -> Self {
        ZoomConfig {
            oauth_url: "https://zoom.us".to_owned(),
            api_url: "https://api.zoom.us".to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl ZoomConfig {
    /// Both endpoints at one base URL (the simulator serves `/oauth` and `/v2`).
    pub fn single_base(base_url: &str) -> Self {
        ZoomConfig {
            oauth_url: base_url.to_owned(),
            api_url: base_url.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// A client for Zoom's OAuth and REST endpoints. Cheap to clone: clones share one
/// connection pool.
#[derive(Debug, Clone)]
pub struct ZoomClient {
    pub(crate) http: reqwest::Client,
    pub(crate) oauth_base: Url,
    pub(crate) api_base: Url,
    pub(crate) timeout: Duration,
}

impl ZoomClient {
    /// Build the client. Fails only on a base URL that is not an absolute
    /// http(s) URL or a TLS setup failure.
    pub fn new(config: ZoomConfig) -> Result<Self, ZoomError> {
        let oauth_base = parse_base(&config.oauth_url, "oauth_url")?;
        let api_base = parse_base(&config.api_url, "api_url")?;
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("zoomkeeper/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| ZoomError::InvalidInput("could not build the HTTP client".into()))?;
        Ok(ZoomClient {
            http,
            oauth_base,
            api_base,
            timeout: config.timeout,
        })
    }

    /// `{oauth_url}/oauth/{name}`.
    pub(crate) fn oauth_endpoint(&self, name: &str) -> Url {
        join_segments(&self.oauth_base, &["oauth", name])
    }

    /// `{api_url}/v2/{segments…}`, each segment percent-encoded.
    pub(crate) fn api_endpoint(&self, segments: &[&str]) -> Url {
        let mut all = Vec::with_capacity(segments.len() + 1);
        all.push("v2");
        all.extend_from_slice(segments);
        join_segments(&self.api_base, &all)
    }

    /// Send a request and read its answer, with the call's time limit. Transport
    /// failures become [`ZoomError::Unavailable`]; the body is read in full (up to
    /// a bound) so a connection dropped mid-answer is caught here too.
    pub(crate) async fn send(&self, request: RequestBuilder) -> Result<Answer, ZoomError> {
        let response = request
            .timeout(self.timeout)
            .send()
            .await
            .map_err(transport_error)?;
        Answer::read(response).await
    }
}

fn parse_base(raw: &str, name: &str) -> Result<Url, ZoomError> {
    let url = Url::parse(raw.trim())
        .map_err(|_| ZoomError::InvalidInput(format!("{name} is not a URL")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(ZoomError::InvalidInput(format!(
            "{name} must be an http(s) URL"
        )));
    }
    Ok(url)
}

fn join_segments(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        path.extend(segments);
    }
    url
}

/// Describe a transport failure without the URL (its query may carry values we
/// must not log).
fn transport_error(err: reqwest::Error) -> ZoomError {
    let (reason, outcome_unknown) = if err.is_timeout() {
        ("the call timed out", true)
    } else if err.is_connect() {
        ("could not connect", false)
    } else if err.is_body() || err.is_decode() {
        ("the connection dropped while reading the answer", true)
    } else if err.is_redirect() {
        ("Zoom answered with a redirect", false)
    } else {
        ("the connection failed or dropped", true)
    };
    ZoomError::Unavailable {
        reason: reason.to_owned(),
        outcome_unknown,
    }
}

/// A complete answer from Zoom.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

impl Answer {
    async fn read(mut response: Response) -> Result<Self, ZoomError> {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY_BYTES {
                        return Err(ZoomError::BadResponse {
                            status: status.as_u16(),
                            detail: "the answer is larger than we accept".into(),
                        });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(err) => return Err(transport_error(err)),
            }
        }
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    /// Parse a successful answer's JSON body.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ZoomError> {
        serde_json::from_slice(&self.body).map_err(|err| ZoomError::BadResponse {
            status: self.status.as_u16(),
            detail: crate::types::json_error_detail(&err),
        })
    }

    /// Classify a failed answer from the OAuth endpoints (`/oauth/token`,
    /// `/oauth/revoke`): `{"reason": "...", "error": "..."}`.
    pub fn oauth_error(&self, secrets: &[&str]) -> ZoomError {
        let parsed: Option<OAuthErrorBody> = serde_json::from_slice(&self.body).ok();
        let (code, reason) = match parsed {
            Some(b) => (
                b.error.map(|e| scrub(&e, secrets)).unwrap_or_default(),
                b.reason
                    .or(b.error_description)
                    .map(|r| scrub(&r, secrets))
                    .unwrap_or_default(),
            ),
            None => (String::new(), String::new()),
        };
        match (self.status.as_u16(), code.as_str()) {
            // A 429 or 5xx is temporary whatever its body says: only a 4xx refusal
            // may declare the grant gone.
            (429 | 500..=599, _) => self.common_error(code, reason),
            (_, "invalid_grant" | "invalid_client" | "unauthorized_client") => {
                ZoomError::GrantRevoked { code, reason }
            }
            _ => self.common_error(code, reason),
        }
    }

    /// Classify a failed answer from the REST API: `{"code": 124, "message": "..."}`.
    pub fn api_error(&self, secrets: &[&str]) -> ZoomError {
        let parsed: Option<ApiErrorBody> = serde_json::from_slice(&self.body).ok();
        let (code, message) = match parsed {
            Some(b) => (
                b.code.map(|c| scrub(&c.0, secrets)).unwrap_or_default(),
                b.message.map(|m| scrub(&m, secrets)).unwrap_or_default(),
            ),
            None => (String::new(), String::new()),
        };
        let status = self.status.as_u16();
        match (status, code.as_str()) {
            (429, _) | (500..=599, _) => self.common_error(code, message),
            // 4711: the token lacks a scope; 200 "No permission"; 3000 "Cannot
            // access meeting info" (not the host). Checked before 401 on purpose.
            (_, "4711" | "200" | "3000") | (403, _) => ZoomError::Forbidden { code, message },
            (401, _) => ZoomError::AccessTokenRejected { code, message },
            (404, _) | (_, "3001" | "1001") => ZoomError::NotFound { code, message },
            _ => self.common_error(code, message),
        }
    }

    fn common_error(&self, code: String, message: String) -> ZoomError {
        let status = self.status.as_u16();
        match status {
            429 => ZoomError::RateLimited {
                retry_after: self.retry_after,
            },
            500..=599 => ZoomError::Unavailable {
                reason: format!("Zoom answered HTTP {status}"),
                outcome_unknown: true,
            },
            400..=499 => ZoomError::BadRequest {
                status,
                code,
                message: if message.is_empty() {
                    format!("HTTP {status}")
                } else {
                    message
                },
            },
            _ => ZoomError::BadResponse {
                status,
                detail: format!("unexpected HTTP {status}"),
            },
        }
    }
}

#[derive(serde::Deserialize)]
struct OAuthErrorBody {
    error: Option<String>,
    reason: Option<String>,
    error_description: Option<String>,
}

#[derive(serde::Deserialize)]
struct ApiErrorBody {
    code: Option<crate::types::Lenient>,
    message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn stale_refresh_token_is_a_revoked_grant() {
        let err = answer(
            400,
            r#"{"reason":"Invalid Token!","error":"invalid_grant"}"#,
        )
        .oauth_error(&[]);
        assert_eq!(
            err,
            ZoomError::GrantRevoked {
                code: "invalid_grant".into(),
                reason: "Invalid Token!".into()
            }
        );
        assert!(err.is_final());
    }

    #[test]
    fn invalid_client_and_unauthorized_client_are_final() {
        for code in ["invalid_client", "unauthorized_client"] {
            let body = format!(r#"{{"reason":"x","error":"{code}"}}"#);
            assert!(answer(401, &body).oauth_error(&[]).is_final(), "{code}");
        }
    }

    #[test]
    fn a_grant_error_body_on_429_or_5xx_is_temporary_not_final() {
        // Only Zoom's 4xx answer says the grant is gone; an outage or a proxy
        // echoing a body must never disconnect a user.
        let body = r#"{"reason":"Invalid Token!","error":"invalid_grant"}"#;
        let limited = answer(429, body).oauth_error(&[]);
        assert!(
            matches!(limited, ZoomError::RateLimited { .. }),
            "{limited:?}"
        );
        for status in [500, 502, 503] {
            let err = answer(status, body).oauth_error(&[]);
            assert!(err.is_temporary() && !err.is_final(), "{status}: {err:?}");
        }
    }

    #[test]
    fn invalid_request_is_a_bad_request_not_final() {
        let err = answer(
            400,
            r#"{"reason":"Missing grant type","error":"invalid_request"}"#,
        )
        .oauth_error(&[]);
        assert!(matches!(err, ZoomError::BadRequest { status: 400, .. }));
        assert!(!err.is_final());
    }

    #[test]
    fn oauth_reason_echoing_a_secret_is_scrubbed() {
        let err = answer(
            400,
            r#"{"reason":"token rt_SECRET_123456 is bad","error":"invalid_grant"}"#,
        )
        .oauth_error(&["rt_SECRET_123456"]);
        assert!(!err.to_string().contains("rt_SECRET_123456"));
    }

    #[test]
    fn code_124_is_access_token_rejected() {
        let err = answer(401, r#"{"code":124,"message":"Invalid access token."}"#).api_error(&[]);
        assert_eq!(
            err,
            ZoomError::AccessTokenRejected {
                code: "124".into(),
                message: "Invalid access token.".into()
            }
        );
    }

    #[test]
    fn an_empty_token_4700_is_access_token_rejected() {
        let err = answer(401, r#"{"code":4700,"message":"Token cannot be empty."}"#).api_error(&[]);
        assert!(
            matches!(err, ZoomError::AccessTokenRejected { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn not_the_host_3000_is_forbidden() {
        let err = answer(
            400,
            r#"{"code":3000,"message":"Cannot access meeting info."}"#,
        )
        .api_error(&[]);
        assert!(matches!(err, ZoomError::Forbidden { .. }), "{err:?}");
    }

    #[test]
    fn code_3001_is_not_found_even_on_400() {
        let err = answer(400, r#"{"code":3001,"message":"Meeting does not exist"}"#).api_error(&[]);
        assert!(matches!(err, ZoomError::NotFound { ref code, .. } if code == "3001"));
    }

    #[test]
    fn missing_scope_is_forbidden() {
        let body = r#"{"code":4711,"message":"Invalid access token, does not contain scopes:[user:read:zak]."}"#;
        for status in [400, 401, 403] {
            let err = answer(status, body).api_error(&[]);
            assert!(
                matches!(err, ZoomError::Forbidden { .. }),
                "{status}: {err:?}"
            );
        }
    }

    #[test]
    fn server_errors_are_unavailable_whatever_the_body() {
        let err = answer(502, "<html>bad gateway</html>").api_error(&[]);
        assert!(err.is_temporary());
        assert!(matches!(err, ZoomError::Unavailable { .. }));
    }

    #[test]
    fn other_4xx_with_garbage_body_is_a_bad_request() {
        let err = answer(418, "teapot").api_error(&[]);
        assert_eq!(
            err,
            ZoomError::BadRequest {
                status: 418,
                code: String::new(),
                message: "HTTP 418".into()
            }
        );
    }

    #[test]
    fn endpoints_are_joined_under_the_configured_base() {
        let client = ZoomClient::new(ZoomConfig {
            oauth_url: "http://127.0.0.1:9/prefix/".into(),
            api_url: "http://127.0.0.1:9".into(),
            timeout: DEFAULT_TIMEOUT,
        })
        .unwrap();
        assert_eq!(
            client.oauth_endpoint("token").as_str(),
            "http://127.0.0.1:9/prefix/oauth/token"
        );
        assert_eq!(
            client.api_endpoint(&["users", "a/b"]).as_str(),
            "http://127.0.0.1:9/v2/users/a%2Fb"
        );
    }

    #[test]
    fn non_http_base_url_is_refused() {
        let err = ZoomClient::new(ZoomConfig::single_base("ftp://zoom.us")).unwrap_err();
        assert!(matches!(err, ZoomError::InvalidInput(_)));
    }
}
