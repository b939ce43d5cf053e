//! The service's one door to Zoom: it holds the [`zoom::ZoomClient`], counts every
//! call in the metrics and turns Zoom's answers into the outcomes the domain acts on.

use std::sync::Arc;

use secrecy::SecretString;
use zoom::{AppCredentials, ZoomClient, ZoomConfig, ZoomError};

use crate::metrics::Metrics;

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
}
