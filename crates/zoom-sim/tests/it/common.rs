//! A started simulator with one app, and helpers that speak Zoom over real HTTP.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use zoom_sim::*;

pub const CLIENT_ID: &str = "sim-client";
pub const CLIENT_SECRET: &str = "sim-secret";
pub const WEBHOOK_SECRET: &str = "sim-webhook-secret";
pub const REDIRECT_URI: &str = "https://app.example.com/zoom/callback";

pub struct Zoom {
    pub sim: Simulator,
    pub control: SimControl,
    pub http: reqwest::Client,
    pub url: String,
}

pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Zoom {
    /// A simulator with the app `CLIENT_ID` (user-level, default scopes, no webhook URL).
    pub async fn start() -> Zoom {
        let sim = Simulator::start().await.expect("simulator starts");
        let control = sim.control();
        control
            .create_app(&SimApp {
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                webhook_secret: Some(WEBHOOK_SECRET.into()),
                ..Default::default()
            })
            .await
            .expect("app created");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let url = sim.url();
        Zoom {
            sim,
            control,
            http,
            url,
        }
    }

    pub async fn user(&self) -> SimUserCreated {
        self.control
            .create_user(&SimUser::default())
            .await
            .expect("user created")
    }

    pub async fn code(&self, user_id: &str, scopes: Option<&str>) -> String {
        self.control
            .authorize(&SimAuthorize {
                client_id: CLIENT_ID.into(),
                user_id: user_id.into(),
                redirect_uri: REDIRECT_URI.into(),
                scopes: scopes.map(|s| s.split(' ').map(str::to_owned).collect()),
                code_challenge: None,
            })
            .await
            .expect("code issued")
    }

    /// `POST /oauth/token` with the app's Basic credentials.
    pub async fn token(&self, form: &[(&str, &str)]) -> Answer {
        self.token_as(CLIENT_ID, CLIENT_SECRET, form).await
    }

    pub async fn token_as(&self, id: &str, secret: &str, form: &[(&str, &str)]) -> Answer {
        let resp = self
            .http
            .post(format!("{}/oauth/token", self.url))
            .basic_auth(id, Some(secret))
            .form(form)
            .send()
            .await
            .expect("token request");
        answer(resp).await
    }

    pub async fn exchange(&self, code: &str) -> Answer {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
        ])
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Answer {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// Authorize + exchange: the tokens a freshly connected user gives the app.
    pub async fn connect(&self, user_id: &str, scopes: Option<&str>) -> Tokens {
        let code = self.code(user_id, scopes).await;
        let a = self.exchange(&code).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        tokens(&a.body)
    }

    /// The simulator's stats once `done` holds for them (it books a webhook's outcome
    /// just after the receiver answers); panics after 10 s.
    pub async fn stats_when(&self, done: impl Fn(&SimStats) -> bool) -> SimStats {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stats = self.control.stats().await.expect("stats");
            if done(&stats) {
                return stats;
            }
            assert!(Instant::now() < deadline, "gave up waiting: {stats:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The webhook deliveries once `done` holds for them; panics after 10 s.
    pub async fn deliveries_when(
        &self,
        done: impl Fn(&[SimWebhookDelivery]) -> bool,
    ) -> Vec<SimWebhookDelivery> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let deliveries = self.control.webhook_deliveries().await.expect("deliveries");
            if done(&deliveries) {
                return deliveries;
            }
            assert!(Instant::now() < deadline, "gave up waiting: {deliveries:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn get(&self, path_and_query: &str, access_token: &str) -> Answer {
        let resp = self
            .http
            .get(format!("{}{}", self.url, path_and_query))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("api request");
        answer(resp).await
    }
}

pub fn tokens(body: &Value) -> Tokens {
    Tokens {
        access: body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned(),
        refresh: body["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_owned(),
    }
}

pub async fn answer(resp: reqwest::Response) -> Answer {
    let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        body,
    }
}

pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Zoom's webhook signature, computed here independently of the simulator.
pub fn zoom_signature(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}
