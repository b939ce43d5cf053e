//! The zoomkeeper HTTP API as a customer's bot platform calls it.

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

/// One API key against one or more base URLs (processes sharing a database).
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub key: String,
}

/// Status and JSON body (Null when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub json: Value,
}

impl Api {
    pub fn new(key: &str) -> Api {
        Api {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
            key: key.to_owned(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Answer> {
        let mut req = self
            .http
            .request(method, url)
            .header("authorization", format!("Token {}", self.key));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.with_context(|| format!("calling {url}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Ok(Answer {
            status,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
        })
    }

    /// `POST /api/v1/zoom_oauth_apps` → the app's id.
    pub async fn create_app(
        &self,
        base: &str,
        client_id: &str,
        client_secret: &str,
    ) -> anyhow::Result<String> {
        let a = self
            .call(
                reqwest::Method::POST,
                &format!("{base}/api/v1/zoom_oauth_apps"),
                Some(json!({"client_id": client_id, "client_secret": client_secret})),
            )
            .await?;
        if a.status != 201 {
            bail!("creating the app answered {}: {}", a.status, a.json);
        }
        Ok(a.json["id"].as_str().context("app id")?.to_owned())
    }

    /// `POST /api/v1/zoom_oauth_connections` → the connection's id.
    pub async fn create_connection(
        &self,
        base: &str,
        app_id: &str,
        code: &str,
        redirect_uri: &str,
    ) -> anyhow::Result<String> {
        let a = self
            .call(
                reqwest::Method::POST,
                &format!("{base}/api/v1/zoom_oauth_connections"),
                Some(json!({
                    "zoom_oauth_app_id": app_id,
                    "authorization_code": code,
                    "redirect_uri": redirect_uri,
                })),
            )
            .await?;
        if a.status != 201 {
            bail!("creating a connection answered {}: {}", a.status, a.json);
        }
        Ok(a.json["id"].as_str().context("connection id")?.to_owned())
    }

    /// `POST …/{id}/access_token`.
    pub async fn access_token(&self, base: &str, id: &str) -> anyhow::Result<Answer> {
        self.call(
            reqwest::Method::POST,
            &format!("{base}/api/v1/zoom_oauth_connections/{id}/access_token"),
            None,
        )
        .await
    }

    /// `GET …/{id}`.
    pub async fn connection(&self, base: &str, id: &str) -> anyhow::Result<Answer> {
        self.call(
            reqwest::Method::GET,
            &format!("{base}/api/v1/zoom_oauth_connections/{id}"),
            None,
        )
        .await
    }

    /// `GET …/{id}/events`, every page.
    pub async fn events(&self, base: &str, id: &str) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut url = format!("{base}/api/v1/zoom_oauth_connections/{id}/events?page_size=100");
        for _ in 0..1000 {
            let a = self.call(reqwest::Method::GET, &url, None).await?;
            if a.status != 200 {
                bail!("events of {id} answered {}: {}", a.status, a.json);
            }
            out.extend(
                a.json["results"]
                    .as_array()
                    .context("events results")?
                    .iter()
                    .cloned(),
            );
            match a.json["next"].as_str() {
                Some(next) => url = next.to_owned(),
                None => return Ok(out),
            }
        }
        bail!("more than 1000 pages of events for {id}")
    }
}
