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
