//! [`SimControl`]: a typed client for the `/_sim/*` control API, over HTTP.

use anyhow::{anyhow, Context};
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use crate::types::*;

/// Drives a simulator (in-process or `zoom-sim --listen …`) through its control API.
#[derive(Debug, Clone)]
pub struct SimControl {
    base_url: String,
    http: reqwest::Client,
}

impl SimControl {
    /// `base_url` is the simulator's root, e.g. `http://127.0.0.1:9000`.
    pub fn new(base_url: impl Into<String>) -> SimControl {
        SimControl {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `/_sim/{segments…}`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> anyhow::Result<url::Url> {
        let mut url = url::Url::parse(&self.base_url).context("simulator base URL")?;
        url.path_segments_mut()
            .map_err(|_| anyhow!("simulator base URL cannot have a path"))?
            .push("_sim")
            .extend(segments);
        Ok(url)
    }

    fn request(&self, method: Method, segments: &[&str]) -> anyhow::Result<RequestBuilder> {
        Ok(self.http.request(method, self.url(segments)?))
    }

    async fn send(&self, req: RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .context("calling the simulator's control API")?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let url = resp.url().path().to_owned();
        let body = resp.text().await.unwrap_or_default();
        Err(anyhow!("simulator answered {status} to {url}: {body}"))
    }

    async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> anyhow::Result<T> {
        Ok(self.send(req).await?.json().await?)
    }

    async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        body: &B,
    ) -> anyhow::Result<()> {
        self.send(self.request(method, segments)?.json(body))
            .await
            .map(drop)
    }

    /// `POST /_sim/apps` (an existing client_id is updated).
    pub async fn create_app(&self, app: &SimApp) -> anyhow::Result<()> {
        self.call(Method::POST, &["apps"], app).await
    }

    /// `GET /_sim/apps/{client_id}` — includes the (possibly generated) webhook secret.
    pub async fn app(&self, client_id: &str) -> anyhow::Result<SimAppInfo> {
        self.json(self.request(Method::GET, &["apps", client_id])?)
            .await
    }

    /// `PATCH /_sim/apps/{client_id}`.
    pub async fn update_app(&self, client_id: &str, patch: &SimAppPatch) -> anyhow::Result<()> {
        self.call(Method::PATCH, &["apps", client_id], patch).await
    }

    /// `POST /_sim/users`.
    pub async fn create_user(&self, user: &SimUser) -> anyhow::Result<SimUserCreated> {
        self.json(self.request(Method::POST, &["users"])?.json(user))
            .await
    }

    /// `POST /_sim/accounts`: an admin, `members` members and `meetings_per_user`
    /// meetings each, in one call (no `meeting.created` unless `send_webhooks`).
    pub async fn create_account(&self, account: &SimAccount) -> anyhow::Result<SimAccountCreated> {
        self.json(self.request(Method::POST, &["accounts"])?.json(account))
            .await
    }

    /// `GET /_sim/users`, in creation order.
    pub async fn users(&self) -> anyhow::Result<Vec<SimUserCreated>> {
        self.json(self.request(Method::GET, &["users"])?).await
    }

    /// `PATCH /_sim/users/{id}` (a PMI change sends `user.updated`).
    pub async fn update_user(&self, id: &str, patch: &SimUserPatch) -> anyhow::Result<()> {
        self.call(Method::PATCH, &["users", id], patch).await
    }

    /// `POST /_sim/authorize` → an authorization code, as if the user approved.
    pub async fn authorize(&self, req: &SimAuthorize) -> anyhow::Result<String> {
        let c: SimAuthorizeCode = self
            .json(self.request(Method::POST, &["authorize"])?.json(req))
            .await?;
        Ok(c.code)
    }

    /// `POST /_sim/users/{id}/meetings` (sends `meeting.created`).
    pub async fn create_meeting(
        &self,
        user_id: &str,
        m: &SimMeeting,
    ) -> anyhow::Result<SimMeetingCreated> {
        self.json(
            self.request(Method::POST, &["users", user_id, "meetings"])?
                .json(m),
        )
        .await
    }

    /// `DELETE /_sim/meetings/{id}` (sends `meeting.deleted`).
    pub async fn delete_meeting(&self, id: u64) -> anyhow::Result<()> {
        let id = id.to_string();
        self.send(self.request(Method::DELETE, &["meetings", &id])?)
            .await
            .map(drop)
    }

    /// `DELETE /_sim/meetings/{id}?occurrence_id=…` (sends `meeting.deleted` naming
    /// the occurrence; the series stays).
    pub async fn delete_occurrence(&self, id: u64, occurrence_id: &str) -> anyhow::Result<()> {
        let id = id.to_string();
        let mut request = self.request(Method::DELETE, &["meetings", &id])?;
        request = request.query(&[("occurrence_id", occurrence_id)]);
        self.send(request).await.map(drop)
    }

    /// `POST /_sim/users/{id}/deauthorize` (kills the grant, sends `app_deauthorized`).
    pub async fn deauthorize(&self, user_id: &str, client_id: &str) -> anyhow::Result<()> {
        self.call(
            Method::POST,
            &["users", user_id, "deauthorize"],
            &json!({"client_id": client_id}),
        )
        .await
    }

    /// `PUT /_sim/config` (only the given fields change).
    pub async fn set_config(&self, c: &SimConfig) -> anyhow::Result<()> {
        self.call(Method::PUT, &["config"], c).await
    }

    /// `GET /_sim/config`.
    pub async fn config(&self) -> anyhow::Result<SimConfig> {
        self.json(self.request(Method::GET, &["config"])?).await
    }

    /// `PUT /_sim/faults` (replaces the fault set; `SimFaults::default()` clears it).
    pub async fn set_faults(&self, f: &SimFaults) -> anyhow::Result<()> {
        self.call(Method::PUT, &["faults"], f).await
    }

    /// `GET /_sim/tokens/{token}`; `None` when the simulator never issued it.
    pub async fn token_info(&self, token: &str) -> anyhow::Result<Option<SimTokenInfo>> {
        let resp = self
            .request(Method::GET, &["tokens", token])?
            .send()
            .await
            .context("calling the simulator's control API")?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(anyhow!(
                "simulator answered {} to token lookup",
                resp.status()
            ));
        }
        Ok(Some(resp.json().await?))
    }

    /// `GET /_sim/stats`.
    /// `POST /_sim/tokens/{token}/join`: joins `meeting_id` with an onbehalf token;
    /// an error says why the simulated Zoom refused the join.
    pub async fn join_with_token(&self, token: &str, meeting_id: u64) -> anyhow::Result<()> {
        self.call(
            Method::POST,
            &["tokens", token, "join"],
            &SimJoin { meeting_id },
        )
        .await
    }

    pub async fn stats(&self) -> anyhow::Result<SimStats> {
        self.json(self.request(Method::GET, &["stats"])?).await
    }

    /// `GET /_sim/webhooks`: every event queued so far and what became of it.
    pub async fn webhook_deliveries(&self) -> anyhow::Result<Vec<SimWebhookDelivery>> {
        self.json(self.request(Method::GET, &["webhooks"])?).await
    }

    /// `POST /_sim/apps/{client_id}/url_validation`: sends `endpoint.url_validation` now
    /// and waits for the answer.
    pub async fn send_url_validation(&self, client_id: &str) -> anyhow::Result<SimUrlValidation> {
        self.json(self.request(Method::POST, &["apps", client_id, "url_validation"])?)
            .await
    }

    /// `POST /_sim/reset`: forget everything (apps, users, tokens, stats, faults, config).
    pub async fn reset(&self) -> anyhow::Result<()> {
        self.send(self.request(Method::POST, &["reset"])?)
            .await
            .map(drop)
    }
}
