//! The three error shapes the simulator answers with: Zoom OAuth (`{reason, error}`),
//! Zoom REST (`{code, message}`) and the control API (`{error}`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// `/oauth/*` failure: `{"reason": "...", "error": "invalid_grant" | ...}`.
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub reason: String,
}

impl OAuthError {
    pub fn new(status: u16, error: &'static str, reason: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            reason: reason.into(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        (
            status,
            Json(json!({"reason": self.reason, "error": self.error})),
        )
            .into_response()
    }
}

/// `/v2/*` failure `{"code": N, "message": "..."}`, or a control API failure `{"error"}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub code: Option<u32>,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: u32, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: Some(code),
            message: message.into(),
        }
    }

    /// A control API (`/_sim`) error.
    pub fn control(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: None,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = match self.code {
            Some(code) => json!({"code": code, "message": self.message}),
            None => json!({"error": self.message}),
        };
        (status, Json(body)).into_response()
    }
}
