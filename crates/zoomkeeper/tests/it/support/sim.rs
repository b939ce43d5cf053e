//! Talking to the in-process Zoom simulator the way Zoom's OAuth clients do.

use anyhow::Context as _;
use serde_json::Value;

pub const REDIRECT_URI: &str = "https://bots.example.com/zoom/callback";

/// Registers `client_id` at the simulator with its secret.
pub async fn zoom_app(sim: &zoom_sim::Simulator, client_id: &str) -> anyhow::Result<String> {
    let secret = format!("secret-of-{client_id}");
    sim.control()
        .create_app(&zoom_sim::SimApp {
            client_id: client_id.into(),
            client_secret: secret.clone(),
            ..Default::default()
        })
        .await?;
    Ok(secret)
}

/// A new simulated user who approved `client_id`: (user id, authorization code).
pub async fn authorized_user(
    sim: &zoom_sim::Simulator,
    client_id: &str,
) -> anyhow::Result<(String, String)> {
    let control = sim.control();
    let user = control.create_user(&zoom_sim::SimUser::default()).await?;
    let code = control
        .authorize(&zoom_sim::SimAuthorize {
            client_id: client_id.into(),
            user_id: user.id.clone(),
            redirect_uri: REDIRECT_URI.into(),
            ..Default::default()
        })
        .await?;
    Ok((user.id, code))
}

/// `POST /oauth/token` with Basic auth and a form body; the answer's status and JSON.
pub async fn token_grant(
    http: &reqwest::Client,
    sim_url: &str,
    client_id: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> anyhow::Result<(u16, Value)> {
    let resp = http
        .post(format!("{sim_url}/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .form(form)
        .send()
        .await
        .context("token endpoint")?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}
