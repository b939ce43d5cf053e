//! Talking to Zoom, and nothing else: the OAuth and REST client with one
//! classified error type, webhook signatures and events, the meeting-URL parser
//! and the Meeting SDK signature. No database, no HTTP server.

pub mod api;
pub mod client;
pub mod error;
pub mod meeting_url;
pub mod oauth;
pub mod scopes;
pub mod sdk_signature;
mod types;
pub mod webhook;

pub use api::{
    LocalRecordingToken, MeetingListType, MeetingPage, UserPage, UserTokenType, ZoomMeeting,
    ZoomUser,
};
pub use client::{ZoomClient, ZoomConfig, DEFAULT_TIMEOUT};
pub use error::ZoomError;
pub use meeting_url::{MeetingId, MeetingLink, MeetingUrlError};
pub use oauth::{AppCredentials, AuthorizeRequest, PkceVerifier, TokenGrant};
pub use sdk_signature::{SdkRole, SdkSignature};
pub use secrecy::{ExposeSecret, SecretString};
