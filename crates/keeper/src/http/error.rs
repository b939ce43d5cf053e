//! The one error type at the HTTP edge. Every failure a client can see is one of
//! these variants, rendered as `{"error": "...", "code": "...", "fields"?: {...}}`.

use std::collections::BTreeMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Field name → the problems with it.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": "Invalid or disabled API key", "code": "invalid_api_key", "detail": "Invalid or disabled API key"}))]
pub struct ErrorBody {
    /// A sentence a person can act on.
    #[schema(example = "Invalid or disabled API key")]
    pub error: String,
    /// A stable snake_case code for programs.
    #[schema(example = "invalid_api_key")]
    pub code: String,
    /// For validation errors: each offending field and what is wrong with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::HashMap<String, Vec<String>>>)]
    pub fields: Option<FieldErrors>,
    /// On a 401, the sentence of `error` again: Attendee (Django REST framework)
    /// puts it under `detail`, and its clients read it there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What an error response said, kept on the response (as an extension) so an API
/// with another error shape can render the same error its own way
/// ([`super::api_v2`]'s `{"detail": …}`).
#[derive(Debug, Clone)]
pub struct RenderedError {
    pub message: String,
    pub code: &'static str,
    pub fields: Option<FieldErrors>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Missing Authorization header")]
    MissingAuthorization,
    #[error("Invalid Authorization header. Should have this format: Token <api_key>")]
    MalformedAuthorization,
    #[error("Invalid or disabled API key")]
    InvalidApiKey,
    /// The object does not exist in the caller's project (or never could: wrong id shape).
    #[error("{}", not_found_sentence(.what))]
    NotFound { what: &'static str },
    #[error("No route for this path. The API lives under /api/v1; see /docs.")]
    NoRoute,
    #[error("This method is not allowed on this path; see /docs.")]
    MethodNotAllowed,
    /// The body or query was understood but some fields are wrong.
    #[error("{message}")]
    Validation {
        code: &'static str,
        message: String,
        fields: FieldErrors,
    },
    /// A 400 that is not about one field.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("The request body is not valid JSON: {detail}")]
    InvalidJson { detail: String },
    #[error("The request body must be at most 1 MiB.")]
    PayloadTooLarge,
    #[error("The URL is too long: its path and query must be at most {max_bytes} bytes.")]
    UriTooLong { max_bytes: usize },
    #[error("Send the request body as JSON with the header Content-Type: application/json.")]
    UnsupportedMediaType,
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("Too many requests for this project; retry in {retry_after_secs} s.")]
    RateLimited { retry_after_secs: u64 },
    #[error("Zoom could not be reached or failed; try again shortly.")]
    ZoomUnavailable,
    /// Zoom's own rate limit (not this service's per-project limit).
    #[error("Zoom's rate limit was reached; retry in {retry_after_secs} s.")]
    ZoomRateLimited { retry_after_secs: u64 },
    /// Zoom refused a call for a reason that is neither the caller's input nor an
    /// outage (e.g. a missing permission). The message is Zoom's, scrubbed.
    #[error("{message}")]
    ZoomRefused { message: String },
    /// The customer's `access_token_callback_url` gave no usable token.
    #[error("{message}")]
    CallbackFailed { message: String },
    /// The object is busy with work elsewhere; retry shortly.
    #[error("{message}")]
    Busy { message: String },
    #[error("The service is not ready: {reason}")]
    NotReady { reason: &'static str },
    /// Anything unexpected. The cause is logged; the client gets a generic message.
    #[error("Internal error")]
    Internal(#[source] anyhow::Error),
}

/// What `NotFound` names for a Zoom OAuth connection of `/api/v1`.
pub const ZOOM_OAUTH_CONNECTION: &str = "Zoom OAuth connection";

/// `NotFound`'s sentence. A connection's is Attendee's, word for word (its clients
/// may match it): `{"error": "Zoom OAuth Connection not found"}` from
/// attendee-labs/attendee `bots/zoom_oauth_connections_api_views.py`.
fn not_found_sentence(what: &str) -> String {
    if what == ZOOM_OAUTH_CONNECTION {
        "Zoom OAuth Connection not found".to_owned()
    } else {
        format!("No {what} with this id exists in your project.")
    }
}

impl ApiError {
    pub fn validation(code: &'static str, message: impl Into<String>, fields: FieldErrors) -> Self {
        ApiError::Validation {
            code,
            message: message.into(),
            fields,
        }
    }

    /// `invalid_request` for `fields`, its message every field's problems in one line.
    pub fn invalid_fields(fields: FieldErrors) -> Self {
        let summary = fields
            .iter()
            .map(|(f, p)| format!("{f}: {}", p.join(" ")))
            .collect::<Vec<_>>()
            .join("; ");
        ApiError::validation("invalid_request", summary, fields)
    }

    /// A validation error about one field.
    pub fn field(field: &str, problem: impl Into<String>) -> Self {
        let problem = problem.into();
        let mut fields = FieldErrors::new();
        fields.insert(field.to_owned(), vec![problem.clone()]);
        ApiError::validation("invalid_request", format!("{field}: {problem}"), fields)
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MissingAuthorization
            | ApiError::MalformedAuthorization
            | ApiError::InvalidApiKey => StatusCode::UNAUTHORIZED,
            ApiError::NotFound { .. } | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Validation { .. }
            | ApiError::BadRequest { .. }
            | ApiError::InvalidJson { .. } => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ZoomUnavailable
            | ApiError::ZoomRefused { .. }
            | ApiError::CallbackFailed { .. } => StatusCode::BAD_GATEWAY,
            ApiError::ZoomRateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotReady { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MissingAuthorization => "missing_authorization",
            ApiError::MalformedAuthorization => "invalid_authorization_header",
            ApiError::InvalidApiKey => "invalid_api_key",
            ApiError::NotFound { .. } | ApiError::NoRoute => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Validation { code, .. }
            | ApiError::BadRequest { code, .. }
            | ApiError::Conflict { code, .. } => code,
            ApiError::InvalidJson { .. } => "invalid_json",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UriTooLong { .. } => "uri_too_long",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::ZoomUnavailable => "zoom_unavailable",
            ApiError::ZoomRateLimited { .. } => "zoom_rate_limited",
            ApiError::ZoomRefused { .. } => "zoom_refused",
            ApiError::CallbackFailed { .. } => "access_token_callback_failed",
            ApiError::Busy { .. } => "busy",
            ApiError::NotReady { .. } => "not_ready",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

impl From<crate::storage::StoreError> for ApiError {
    fn from(e: crate::storage::StoreError) -> Self {
        ApiError::Internal(anyhow::Error::new(e).context("storage"))
    }
}

/// `Retry-After` of a 502 `zoom_unavailable`.
pub const ZOOM_UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(cause) = &self {
            // `{:#}` prints the whole context chain; causes never carry plaintext secrets.
            tracing::error!(error = format!("{cause:#}"), "internal error");
        }
        let retry_after = match &self {
            ApiError::RateLimited { retry_after_secs }
            | ApiError::ZoomRateLimited { retry_after_secs } => Some(*retry_after_secs),
            ApiError::Busy { .. } => Some(1),
            // Zoom's calls were already retried inside the request; a few seconds on,
            // an outage may have passed.
            ApiError::ZoomUnavailable => Some(ZOOM_UNAVAILABLE_RETRY_AFTER_SECS),
            _ => None,
        };
        let rendered = RenderedError {
            message: self.to_string(),
            code: self.code(),
            fields: match self {
                ApiError::Validation { fields, .. } => Some(fields),
                _ => None,
            },
        };
        let unauthorized = status == StatusCode::UNAUTHORIZED;
        let body = ErrorBody {
            error: rendered.message.clone(),
            code: rendered.code.to_owned(),
            fields: rendered.fields.clone(),
            detail: unauthorized.then(|| rendered.message.clone()),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if unauthorized {
            // The scheme a client must use (RFC 9110 §11.6.1), as Attendee sends it.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
        }
        response.extensions_mut().insert(rendered);
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
