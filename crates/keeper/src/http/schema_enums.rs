//! Closed sets of words the API answers and accepts, as OpenAPI enums, so a client
//! generator gets types as strict as the server. Documentation only: the handlers
//! keep their own types, and `api_ops::openapi_document_and_docs_page` holds these
//! lists equal to what the server uses.

use utoipa::ToSchema;

/// A connection's state.
#[derive(ToSchema)]
#[schema(as = ConnectionState, rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ConnectionStateDoc {
    Connected,
    Disconnected,
}

/// An outgoing webhook delivery's status.
#[derive(ToSchema)]
#[schema(as = DeliveryStatus, rename_all = "snake_case")]
#[allow(dead_code)]
pub enum DeliveryStatusDoc {
    Pending,
    Success,
    Failure,
}

/// What a webhook subscription is sent.
#[derive(ToSchema)]
#[schema(as = WebhookTrigger)]
#[allow(dead_code)]
pub enum TriggerDoc {
    #[schema(rename = "zoom_oauth_connection.state_change")]
    StateChange,
}

/// What a verified Zoom event did.
#[derive(ToSchema)]
#[schema(as = WebhookOutcome, rename_all = "snake_case")]
#[allow(dead_code)]
pub enum WebhookOutcomeDoc {
    /// Acted on.
    Applied,
    /// Received before; nothing changed.
    Duplicate,
    /// Nothing to do for this event; `reason` says why.
    Ignored,
}

/// A hosted-connect session's status.
#[derive(ToSchema)]
#[schema(as = SessionStatus, rename_all = "snake_case")]
#[allow(dead_code)]
pub enum SessionStatusDoc {
    Pending,
    Completed,
    Failed,
    Expired,
}

/// What a line of a connection's log (a Recall credential's log) records.
#[derive(ToSchema)]
#[schema(as = ConnectionEventKind, rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ConnectionEventKindDoc {
    /// The connection was created (an authorisation code, hosted connect, or a
    /// customer-managed credential).
    Created,
    /// The same Zoom user authorised the app again; the newer grant is kept.
    Reconnected,
    /// A create with this connection's deduplication key bound it to another user.
    Rebound,
    /// A customer-managed credential's token was checked.
    Validated,
    TokenRefreshed,
    /// Zoom refused a refresh; the connection is kept while it may recover.
    ReauthorizationFailed,
    Disconnected,
    /// The user removed the app in Zoom.
    Deauthorized,
    SyncStarted,
    /// An account-wide meeting sync stopped part-way and will resume.
    SyncPaused,
    SyncCompleted,
    SyncFailed,
    /// The app's Zoom webhooks stopped arriving while meetings kept changing.
    WebhookEventsStale,
    /// A bot platform's bot asked for tokens with this connection.
    BotPlatformCall,
}

/// What a line of an app's log records.
#[derive(ToSchema)]
#[schema(as = AppLogKind, rename_all = "snake_case")]
#[allow(dead_code)]
pub enum AppLogKindDoc {
    Created,
    /// Zoom validated the app's event notification endpoint URL.
    UrlValidated,
    /// A webhook at the app's URL did not verify (at most one line an hour).
    UnverifiedWebhook,
    /// The app's Zoom webhooks stopped arriving while meetings kept changing.
    WebhookEventsStale,
    ClientSecretChanged,
    WebhookSecretChanged,
    WebhookSecretRemoved,
}

/// Why a token was not handed out (a row of `problems`).
#[derive(ToSchema)]
#[schema(as = ProblemCode, rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ProblemCodeDoc {
    /// The meeting index knows no connection of the meeting's host.
    NoHostConnection,
    /// No connection of the app for the user the token must come from.
    NoConnection,
    ConnectionDisconnected,
    /// The connection does not allow this token (`is_…_supported` is false).
    CapabilityNotEnabled,
    /// The named connection does not host the meeting.
    NotMeetingHost,
    /// The host's account has local recording turned off.
    LocalRecordingDisabled,
    ZoomError,
    /// Another process is refreshing the token; retry shortly.
    Busy,
    CallbackUrlRefused,
    CallbackFailed,
    InvalidMeetingId,
    InvalidUserId,
    SdkSignatureFailed,
    InternalError,
}

/// A row of a bot platform call's `problems`: a token's [`ProblemCodeDoc`], or why
/// the request was refused before any token was minted.
#[derive(ToSchema)]
#[schema(as = CallProblem)]
#[allow(dead_code)]
pub struct CallProblemDoc {
    /// The token's field, or `callback`.
    #[schema(example = "zak_token")]
    token: String,
    /// A `ProblemCode`, or a refusal: `bad_signature`, `missing_signature`,
    /// `stale_timestamp`, `replayed`, `zak_user_required`, `meeting_id_required`, …
    #[schema(example = "zak_user_required")]
    code: String,
    message: String,
}
