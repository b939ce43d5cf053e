//! A faithful Zoom simulator: OAuth (`/oauth/*`), the REST endpoints zoomkeeper uses
//! (`/v2/*`), signed webhooks with Zoom's retry schedule, fault injection, and a control
//! API (`/_sim/*`) — all on one port. See DESIGN.md §5 and §8.
//!
//! Choices where Zoom's documentation is silent (tests rely on them):
//! - Token errors: unknown or used code → 400 `invalid_request` "Invalid authorization
//!   code {code}" (Zoom echoes the code); expired code → 400 `invalid_request` "Code is
//!   expired." (Zoom's 4733); redirect mismatch → 400 `invalid_request` "Redirect URI
//!   mismatch." (Zoom's 4709; the code stays usable); PKCE failure → 400 `invalid_grant`
//!   "Invalid code_verifier"; bad or missing Basic credentials → 401 `invalid_client`.
//! - A refresh token that was rotated away answers "Invalid Token!" and counts in
//!   `stale_refresh_token_uses`; one replaced by a newer authorization of the same user
//!   for the same app ("superseded") answers the same and counts in
//!   `superseded_refresh_token_uses`. A revoked/deauthorized grant answers the same without
//!   counting. Access tokens of the current authorization stay valid until they expire
//!   (unless the grant dies); a new authorization of the same user supersedes every
//!   earlier access token too (401 code 4741).
//! - `/oauth/revoke` uninstalls the app for that user, as Zoom does: every token of
//!   that (app, user) dies and `app_deauthorized` is sent.
//! - REST errors: no bearer → 401 code 4700; unknown/revoked → 401 124 "Invalid access
//!   token."; expired → 401 124 "Access token is expired."; superseded by a newer
//!   authorization → 401 4741; missing scope → 400 4711
//!   "Invalid access token, does not contain scopes:[…]." (each endpoint by its own
//!   scopes: `/users/me/token` by `user:read:token`/`user:read`, `/users/me/zak` by
//!   `user:read:zak`/`user_zak:read`); a non-host asking for a local recording token →
//!   400 code 3000 "Cannot access meeting info."; a host whose "Local recording"
//!   setting is off → 400 code 3000 "Not allowed to start local recording"; an inactive or
//!   pending user → 400 code 1001 on every endpoint but `/users/me`, which answers with
//!   `status` so the caller can decide.
//! - Account admins (DESIGN.md §15): `GET /v2/users`, another user's
//!   `/v2/users/{id}/meetings` and `/v2/users/{id}/token`, and the local recording token
//!   of another host's meeting need the endpoint's admin scope (`…:admin`, or the
//!   classic admin name) *and* a caller who is the owner or an admin of that account,
//!   through an `account_level` app (Zoom offers admin scopes to admin-managed apps
//!   only). Missing admin scope → 400 4711 naming the admin scopes; a member, or a
//!   user-level app → 400 code 200 "No permission."; a user unknown or of another
//!   account → 404 1001 "User does not exist: {id}."; the local recording token keeps
//!   Zoom's 400 3000 "Cannot access meeting info." for every refusal. A ZAK/onbehalf
//!   token minted for another user names that user, and `/_sim/tokens/{token}` shows
//!   the admin in `minted_by`.
//! - Webhooks about a user go to apps that user (or, for account-level apps, anyone in
//!   the account) has authorized; success is exactly 200 or 204.
//! - Rate limits apply to `/v2` only, keyed by the token's Zoom account.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let sim = zoom_sim::Simulator::start().await?;
//! let control = sim.control();
//! control.create_app(&zoom_sim::SimApp { client_id: "cid".into(), client_secret: "secret".into(), ..Default::default() }).await?;
//! let user = control.create_user(&zoom_sim::SimUser::default()).await?;
//! # Ok(()) }
//! ```

mod control;
mod control_client;
mod faults;
mod oauth;
mod rest;
mod server;
mod types;
mod webhooks;
mod world;
mod zoom_error;

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use control_client::SimControl;
pub use types::*;
pub use world::{
    ACCOUNT_LEVEL_SCOPES, DEFAULT_SCOPES, LOCAL_RECORDING_SCOPES, ONBEHALF_SCOPES,
    SCOPES_LIST_MEETINGS, SCOPES_LIST_MEETINGS_ADMIN, SCOPES_LIST_USERS, SCOPES_LOCAL_RECORDING,
    SCOPES_LOCAL_RECORDING_ADMIN, SCOPES_USERS_ME, SCOPES_USER_TOKEN, SCOPES_USER_TOKEN_ADMIN,
    SCOPES_ZAK,
};

/// A running simulator. Dropping it stops the server too.
pub struct Simulator {
    addr: SocketAddr,
    url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Starts on `127.0.0.1:0` in this process (a tokio task).
    pub async fn start() -> anyhow::Result<Simulator> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(addr: SocketAddr) -> anyhow::Result<Simulator> {
        let (listener, addr) = server::bind(addr).await?;
        let url = format!("http://{addr}");
        let sim = server::Shared::new(url.clone())?;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(webhooks::revalidate_loop(std::sync::Arc::downgrade(&sim)));
        let task = tokio::spawn(server::run(listener, server::router(sim), rx));
        Ok(Simulator {
            addr,
            url,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT` — both `zoom_oauth_url` and `zoom_api_url`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn control(&self) -> SimControl {
        SimControl::new(self.url.clone())
    }

    /// Stops accepting, aborts open connections and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Runs a simulator on `listen` until ctrl-c, printing its URL (for `zoom-sim` and
/// `zoomkeeper sim`).
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let sim = Simulator::start_on(listen).await?;
    println!("zoom-sim listening on {}", sim.url());
    println!(
        "  OAuth:   {0}/oauth/authorize  {0}/oauth/token  {0}/oauth/revoke",
        sim.url()
    );
    println!("  REST:    {}/v2/…", sim.url());
    println!("  control: {}/_sim/…", sim.url());
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
