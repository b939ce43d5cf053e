//! The Zoom client against the real simulator (crates/zoom-sim) over HTTP: every
//! OAuth grant, every REST call, and every error class, including injected faults.

use std::time::Duration;

use zoom::api::{MeetingListType, UserTokenType};
use zoom::oauth::{AppCredentials, PkceVerifier, TokenGrant};
use zoom::{ExposeSecret, SecretString, ZoomClient, ZoomConfig, ZoomError};
use zoom_sim::{
    SimApp, SimAuthorize, SimConfig, SimFaults, SimMeeting, SimStats, SimUser, SimUserCreated,
    SimUserStatus, Simulator,
};

const CLIENT_ID: &str = "zk-test-client";
const CLIENT_SECRET: &str = "zk-test-client-secret";
const REDIRECT_URI: &str = "https://app.example.com/zoom/callback";

struct Zoom {
    sim: Simulator,
    client: ZoomClient,
    app: AppCredentials,
}

impl Zoom {
    async fn start() -> Zoom {
        Self::start_with_timeout(Duration::from_secs(10)).await
    }

    async fn start_with_timeout(timeout: Duration) -> Zoom {
        let sim = Simulator::start().await.expect("simulator starts");
        sim.control()
            .create_app(&SimApp {
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                ..Default::default()
            })
            .await
            .expect("app created");
        let mut config = ZoomConfig::single_base(&sim.url());
        config.timeout = timeout;
        let client = ZoomClient::new(config).expect("client builds");
        Zoom {
            sim,
            client,
            app: AppCredentials::new(CLIENT_ID, CLIENT_SECRET),
        }
    }

    async fn user(&self) -> SimUserCreated {
        self.user_with(SimUser::default()).await
    }

    async fn user_with(&self, user: SimUser) -> SimUserCreated {
        self.sim.control().create_user(&user).await.expect("user")
    }

    async fn code(
        &self,
        user_id: &str,
        scopes: Option<&[&str]>,
        challenge: Option<String>,
    ) -> SecretString {
        let code = self
            .sim
            .control()
            .authorize(&SimAuthorize {
                client_id: CLIENT_ID.into(),
                user_id: user_id.into(),
                redirect_uri: REDIRECT_URI.into(),
                scopes: scopes.map(|s| s.iter().map(|s| s.to_string()).collect()),
                code_challenge: challenge,
            })
            .await
            .expect("code");
        SecretString::from(code)
    }

    /// A user who authorised the app with the default scopes, and their grant.
    async fn connected_user(&self) -> (SimUserCreated, TokenGrant) {
        let user = self.user().await;
        let grant = self.grant_for(&user.id, None).await;
        (user, grant)
    }

    async fn grant_for(&self, user_id: &str, scopes: Option<&[&str]>) -> TokenGrant {
        let code = self.code(user_id, scopes, None).await;
        self.client
            .exchange_code(&self.app, &code, REDIRECT_URI, None)
            .await
            .expect("code exchange")
    }

    async fn faults(&self, faults: SimFaults) {
        self.sim
            .control()
            .set_faults(&faults)
            .await
            .expect("faults set");
    }
}

fn refresh_token(grant: &TokenGrant) -> &SecretString {
    grant.refresh_token.as_ref().expect("a refresh token")
}

/// No error's Display or Debug may show any of these.
fn assert_secret_free(err: &ZoomError, secrets: &[&str]) {
    let shown = format!("{err} {err:?}");
    for s in secrets {
        assert!(!shown.contains(s), "error shows a secret: {shown}");
    }
}

mod oauth {
    use super::*;

    #[tokio::test]
    async fn code_exchange_returns_tokens_for_the_user_with_scopes_and_lifetime() {
        let zoom = Zoom::start().await;
        let (user, grant) = zoom.connected_user().await;
        assert_eq!(grant.token_type.to_ascii_lowercase(), "bearer");
        assert_eq!(grant.expires_in, Duration::from_secs(3599));
        assert!(
            grant.scopes.iter().any(|s| s == "user:read:user"),
            "{:?}",
            grant.scopes
        );
        let info = zoom
            .sim
            .control()
            .token_info(grant.access_token.expose_secret())
            .await
            .unwrap()
            .expect("the simulator issued it");
        assert_eq!(info.token_type, "access_token");
        assert_eq!(info.user_id.as_deref(), Some(user.id.as_str()));
        assert_eq!(info.client_id, CLIENT_ID);
    }

    #[tokio::test]
    async fn pkce_exchange_succeeds_only_with_the_matching_verifier() {
        let zoom = Zoom::start().await;
        let user = zoom.user().await;
        let verifier = PkceVerifier::generate();

        let code = zoom.code(&user.id, None, Some(verifier.challenge())).await;
        let wrong = PkceVerifier::generate();
        let err = zoom
            .client
            .exchange_code(&zoom.app, &code, REDIRECT_URI, Some(&wrong))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ZoomError::GrantRevoked { ref code, .. } if code == "invalid_grant"),
            "{err:?}"
        );
        assert_secret_free(
            &err,
            &[wrong.secret().expose_secret(), code.expose_secret()],
        );

        let code = zoom.code(&user.id, None, Some(verifier.challenge())).await;
        let err = zoom
            .client
            .exchange_code(&zoom.app, &code, REDIRECT_URI, None)
            .await
            .unwrap_err();
        assert!(err.is_final(), "{err:?}");

        let code = zoom.code(&user.id, None, Some(verifier.challenge())).await;
        let grant = zoom
            .client
            .exchange_code(&zoom.app, &code, REDIRECT_URI, Some(&verifier))
            .await
            .expect("the right verifier works");
        assert!(grant.refresh_token.is_some());
    }

    #[tokio::test]
    async fn a_code_works_only_once() {
        let zoom = Zoom::start().await;
        let user = zoom.user().await;
        let code = zoom.code(&user.id, None, None).await;
        zoom.client
            .exchange_code(&zoom.app, &code, REDIRECT_URI, None)
            .await
            .expect("first use");
        let err = zoom
            .client
            .exchange_code(&zoom.app, &code, REDIRECT_URI, None)
            .await
            .unwrap_err();
        // Zoom answers `invalid_request` and echoes the code; the code is scrubbed.
        assert!(
            matches!(err, ZoomError::BadRequest { status: 400, ref code, ref message }
                if code == "invalid_request" && message.starts_with("Invalid authorization code")),
            "{err:?}"
        );
        assert!(
            !format!("{err:?}").contains(code.expose_secret()),
            "{err:?}"
        );
        assert!(!err.is_final());
    }

    #[tokio::test]
    async fn an_expired_code_is_refused() {
        let zoom = Zoom::start().await;
        let user = zoom.user().await;
        zoom.sim
            .control()
            .set_config(&SimConfig {
                code_ttl_s: Some(0),
                ..Default::default()
            })
            .await
            .unwrap();
        let code = zoom.code(&user.id, None, None).await;
        let err = zoom
            .client
            .exchange_code(&zoom.app, &code, REDIRECT_URI, None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ZoomError::BadRequest { ref message, .. } if message == "Code is expired."),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_different_redirect_uri_is_refused_and_not_final() {
        let zoom = Zoom::start().await;
        let user = zoom.user().await;
        let code = zoom.code(&user.id, None, None).await;
        let err = zoom
            .client
            .exchange_code(&zoom.app, &code, "https://elsewhere.example/cb", None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ZoomError::BadRequest { status: 400, ref code, .. } if code == "invalid_request"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn refresh_rotates_and_the_old_refresh_token_is_then_a_revoked_grant() {
        let zoom = Zoom::start().await;
        let (_, first) = zoom.connected_user().await;
        let second = zoom
            .client
            .refresh(&zoom.app, refresh_token(&first))
            .await
            .expect("refresh");
        assert_ne!(
            refresh_token(&first).expose_secret(),
            refresh_token(&second).expose_secret()
        );
        zoom.client
            .me(&second.access_token)
            .await
            .expect("new access token works");

        let err = zoom
            .client
            .refresh(&zoom.app, refresh_token(&first))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ZoomError::GrantRevoked {
                code: "invalid_grant".into(),
                reason: "Invalid Token!".into()
            }
        );
        assert!(err.is_final() && !err.is_temporary());
        assert_secret_free(
            &err,
            &[refresh_token(&first).expose_secret(), CLIENT_SECRET],
        );
        let stats = zoom.sim.control().stats().await.unwrap();
        assert_eq!(stats.refresh_grants, 1);
        assert_eq!(stats.stale_refresh_token_uses, 1);
    }

    #[tokio::test]
    async fn a_wrong_client_secret_is_invalid_client() {
        let zoom = Zoom::start().await;
        let bad = AppCredentials::new(CLIENT_ID, "not-the-secret");
        let err = zoom.client.client_credentials(&bad).await.unwrap_err();
        assert!(
            matches!(err, ZoomError::GrantRevoked { ref code, .. } if code == "invalid_client"),
            "{err:?}"
        );
        assert_secret_free(&err, &["not-the-secret"]);
    }

    #[tokio::test]
    async fn client_credentials_gives_an_access_token_and_no_refresh_token() {
        let zoom = Zoom::start().await;
        let grant = zoom
            .client
            .client_credentials(&zoom.app)
            .await
            .expect("grant");
        assert!(grant.refresh_token.is_none());
        assert!(!grant.access_token.expose_secret().is_empty());
        assert!(grant.expires_in > Duration::ZERO);
    }

    #[tokio::test]
    async fn revoke_kills_the_grant() {
        let zoom = Zoom::start().await;
        let (_, grant) = zoom.connected_user().await;
        zoom.client
            .revoke(&zoom.app, refresh_token(&grant))
            .await
            .expect("revoked");
        let err = zoom
            .client
            .refresh(&zoom.app, refresh_token(&grant))
            .await
            .unwrap_err();
        assert!(err.is_final(), "{err:?}");
        let err = zoom.client.me(&grant.access_token).await.unwrap_err();
        assert!(
            matches!(err, ZoomError::AccessTokenRejected { ref code, .. } if code == "124"),
            "{err:?}"
        );
        assert_eq!(zoom.sim.control().stats().await.unwrap().revocations, 1);
    }

    #[tokio::test]
    async fn revoking_an_unknown_token_is_a_bad_request() {
        let zoom = Zoom::start().await;
        let token = SecretString::from("never-issued-token-123".to_owned());
        let err = zoom.client.revoke(&zoom.app, &token).await.unwrap_err();
        assert!(matches!(err, ZoomError::BadRequest { .. }), "{err:?}");
        assert_secret_free(&err, &["never-issued-token-123"]);
    }

    #[tokio::test]
    async fn a_deauthorized_user_loses_both_tokens() {
        let zoom = Zoom::start().await;
        let (user, grant) = zoom.connected_user().await;
        zoom.sim
            .control()
            .deauthorize(&user.id, CLIENT_ID)
            .await
            .unwrap();
        let err = zoom.client.me(&grant.access_token).await.unwrap_err();
        assert!(
            matches!(err, ZoomError::AccessTokenRejected { .. }),
            "{err:?}"
        );
        let err = zoom
            .client
            .refresh(&zoom.app, refresh_token(&grant))
            .await
            .unwrap_err();
        assert!(err.is_final(), "{err:?}");
    }

    #[tokio::test]
    async fn authorize_url_is_accepted_by_the_simulator_consent_page() {
        let zoom = Zoom::start().await;
        zoom.user().await;
        let verifier = PkceVerifier::generate();
        let challenge = verifier.challenge();
        let url = zoom.client.authorize_url(&zoom::AuthorizeRequest {
            client_id: CLIENT_ID,
            redirect_uri: REDIRECT_URI,
            state: "st4te",
            code_challenge: Some(&challenge),
        });
        let page = reqwest::get(&url).await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains("Approve"), "{html}");
        assert!(html.contains(&challenge));
    }
}

mod rest {
    use super::*;

    #[tokio::test]
    async fn me_returns_the_user_with_the_pmi_as_text() {
        let zoom = Zoom::start().await;
        let (user, grant) = zoom.connected_user().await;
        let me = zoom.client.me(&grant.access_token).await.expect("me");
        assert_eq!(me.id, user.id);
        assert_eq!(me.account_id, user.account_id);
        assert_eq!(me.email, user.email);
        assert_eq!(me.pmi, Some(user.pmi.to_string()));
        assert_eq!(
            me.personal_meeting_url.as_deref(),
            Some(user.personal_meeting_url.as_str())
        );
        assert!(me.is_active());
    }

    #[tokio::test]
    async fn an_inactive_user_reads_as_inactive() {
        let zoom = Zoom::start().await;
        let user = zoom
            .user_with(SimUser {
                status: Some(SimUserStatus::Inactive),
                ..Default::default()
            })
            .await;
        let grant = zoom.grant_for(&user.id, None).await;
        // Zoom answers /users/me for an inactive user with its status, so the
        // caller can tell "inactive" from "gone".
        let me = zoom
            .client
            .me(&grant.access_token)
            .await
            .expect("/users/me answers");
        assert_eq!(me.status.as_deref(), Some("inactive"));
        assert!(!me.is_active());
    }

    #[tokio::test]
    async fn meeting_list_follows_pages_to_the_end() {
        let zoom = Zoom::start().await;
        let (user, grant) = zoom.connected_user().await;
        let control = zoom.sim.control();
        let mut created = Vec::new();
        for i in 0..650 {
            let m = control
                .create_meeting(
                    &user.id,
                    &SimMeeting {
                        topic: Some(format!("m{i}")),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            created.push(m.id);
        }
        let meetings = zoom
            .client
            .list_meetings(&grant.access_token, "me", MeetingListType::Upcoming)
            .await
            .expect("list");
        let mut listed: Vec<u64> = meetings.iter().map(|m| m.id).collect();
        listed.sort_unstable();
        created.sort_unstable();
        assert_eq!(listed, created);
        assert!(meetings
            .iter()
            .all(|m| m.host_id.as_deref() == Some(user.id.as_str())));
        assert!(meetings.iter().all(|m| m.start_time.is_some()));
        let calls = zoom
            .sim
            .control()
            .stats()
            .await
            .unwrap()
            .api_calls_by_endpoint;
        let pages: u64 = calls
            .iter()
            .filter(|(k, _)| k.starts_with("GET /v2/users/") && k.ends_with("/meetings"))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(pages, 3, "{calls:?}");
    }

    #[tokio::test]
    async fn an_empty_meeting_list_is_one_call() {
        let zoom = Zoom::start().await;
        let (user, grant) = zoom.connected_user().await;
        let meetings = zoom
            .client
            .list_meetings(&grant.access_token, &user.id, MeetingListType::Scheduled)
            .await
            .expect("list");
        assert!(meetings.is_empty());
    }

    #[tokio::test]
    async fn local_recording_token_is_minted_for_the_host_with_bypass() {
        let zoom = Zoom::start().await;
        let (user, grant) = zoom.connected_user().await;
        let meeting = zoom
            .sim
            .control()
            .create_meeting(&user.id, &SimMeeting::default())
            .await
            .unwrap();
        let token = zoom
            .client
            .local_recording_token(&grant.access_token, &meeting.id.to_string(), true)
            .await
            .expect("token");
        let info = zoom
            .sim
            .control()
            .token_info(token.token.expose_secret())
            .await
            .unwrap()
            .expect("issued");
        assert_eq!(info.token_type, "local_recording");
        assert_eq!(info.meeting_id, Some(meeting.id));
        assert_eq!(info.user_id.as_deref(), Some(user.id.as_str()));
        assert_eq!(info.bypass_waiting_room, Some(true));
    }

    #[tokio::test]
    async fn local_recording_token_for_an_unknown_meeting_is_not_found_3001() {
        let zoom = Zoom::start().await;
        let (_, grant) = zoom.connected_user().await;
        let err = zoom
            .client
            .local_recording_token(&grant.access_token, "12345678901", true)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ZoomError::NotFound { ref code, .. } if code == "3001"),
            "{err:?}"
        );
        assert!(!err.is_final() && !err.is_temporary());
    }

    #[tokio::test]
    async fn local_recording_token_for_someone_elses_meeting_is_forbidden() {
        let zoom = Zoom::start().await;
        let (_, grant) = zoom.connected_user().await;
        let host = zoom.user().await;
        let meeting = zoom
            .sim
            .control()
            .create_meeting(&host.id, &SimMeeting::default())
            .await
            .unwrap();
        let err = zoom
            .client
            .local_recording_token(&grant.access_token, &meeting.id.to_string(), true)
            .await
            .unwrap_err();
        assert!(matches!(err, ZoomError::Forbidden { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn zak_and_onbehalf_tokens_are_minted_for_the_user() {
        let zoom = Zoom::start().await;
        let user = zoom.user().await;
        // Both ZAK endpoints: `user:read:token` opens `/users/me/token`,
        // `user:read:zak` opens `/users/me/zak`.
        let grant = zoom
            .grant_for(&user.id, Some(&["user:read:zak", "user:read:token"]))
            .await;
        let control = zoom.sim.control();

        let zak = zoom
            .client
            .user_token(&grant.access_token, &UserTokenType::Zak)
            .await
            .unwrap();
        let info = control
            .token_info(zak.expose_secret())
            .await
            .unwrap()
            .expect("issued");
        assert_eq!(
            (info.token_type.as_str(), info.user_id.as_deref()),
            ("zak", Some(user.id.as_str()))
        );

        let zak = zoom.client.zak(&grant.access_token).await.unwrap();
        let info = control
            .token_info(zak.expose_secret())
            .await
            .unwrap()
            .expect("issued");
        assert_eq!(info.token_type, "zak");

        let obf = zoom
            .client
            .user_token(
                &grant.access_token,
                &UserTokenType::OnBehalf {
                    meeting_id: Some("98765432101".into()),
                },
            )
            .await
            .unwrap();
        let info = control
            .token_info(obf.expose_secret())
            .await
            .unwrap()
            .expect("issued");
        assert_eq!(info.token_type, "onbehalf");
        assert_eq!(info.meeting_id, Some(98765432101));

        let obf = zoom
            .client
            .user_token(
                &grant.access_token,
                &UserTokenType::OnBehalf { meeting_id: None },
            )
            .await
            .unwrap();
        let info = control
            .token_info(obf.expose_secret())
            .await
            .unwrap()
            .expect("issued");
        assert_eq!(
            (info.token_type.as_str(), info.meeting_id),
            ("onbehalf", None)
        );
    }

    #[tokio::test]
    async fn a_missing_scope_is_forbidden_with_zooms_code() {
        let zoom = Zoom::start().await;
        let user = zoom.user().await;
        let grant = zoom.grant_for(&user.id, Some(&["user:read:user"])).await;
        zoom.client.me(&grant.access_token).await.expect("allowed");
        let err = zoom.client.zak(&grant.access_token).await.unwrap_err();
        assert!(
            matches!(err, ZoomError::Forbidden { ref code, .. } if code == "4711"),
            "{err:?}"
        );
        assert!(err.description().contains("user:read:zak"), "{err}");
    }

    #[tokio::test]
    async fn an_expired_access_token_is_rejected_with_code_124() {
        let zoom = Zoom::start().await;
        let (_, grant) = zoom.connected_user().await;
        zoom.sim
            .control()
            .set_config(&SimConfig {
                clock_offset_s: Some(3600),
                ..Default::default()
            })
            .await
            .unwrap();
        let err = zoom.client.me(&grant.access_token).await.unwrap_err();
        assert!(
            matches!(err, ZoomError::AccessTokenRejected { ref code, .. } if code == "124"),
            "{err:?}"
        );
        assert_secret_free(&err, &[grant.access_token.expose_secret()]);
    }

    #[tokio::test]
    async fn an_unknown_access_token_is_rejected_and_never_shown() {
        let zoom = Zoom::start().await;
        let token = SecretString::from("made-up-access-token".to_owned());
        let err = zoom.client.me(&token).await.unwrap_err();
        assert!(
            matches!(err, ZoomError::AccessTokenRejected { .. }),
            "{err:?}"
        );
        assert_secret_free(&err, &["made-up-access-token"]);
    }
}

mod faults {
    use super::*;

    #[tokio::test]
    async fn rate_limit_gives_retry_after_in_seconds() {
        let zoom = Zoom::start().await;
        let (_, grant) = zoom.connected_user().await;
        zoom.faults(SimFaults {
            rate_limit_per_s: Some(1),
            ..Default::default()
        })
        .await;
        let mut limited = None;
        for _ in 0..5 {
            if let Err(err) = zoom.client.me(&grant.access_token).await {
                limited = Some(err);
                break;
            }
        }
        let err = limited.expect("the limit is reached within 5 calls");
        assert_eq!(
            err,
            ZoomError::RateLimited {
                retry_after: Some(Duration::from_secs(1))
            }
        );
        assert!(err.is_temporary());
    }

    #[tokio::test]
    async fn daily_rate_limit_gives_retry_after_from_an_http_date() {
        let zoom = Zoom::start().await;
        let (_, grant) = zoom.connected_user().await;
        zoom.faults(SimFaults {
            rate_limit_per_s: Some(1),
            retry_after_http_date: Some(true),
            ..Default::default()
        })
        .await;
        let mut limited = None;
        for _ in 0..5 {
            if let Err(err) = zoom.client.zak(&grant.access_token).await {
                limited = Some(err);
                break;
            }
        }
        let err = limited.expect("the limit is reached within 5 calls");
        let wait = err.retry_after().expect("a Retry-After");
        // The simulator sends now + 2 s as a whole-second date.
        assert!(wait <= Duration::from_secs(3), "{wait:?}");
        assert!(matches!(err, ZoomError::RateLimited { .. }));
    }

    #[tokio::test]
    async fn server_errors_are_unavailable_on_rest_and_oauth() {
        let zoom = Zoom::start().await;
        let (_, grant) = zoom.connected_user().await;
        zoom.faults(SimFaults {
            status_code: Some(503),
            ..Default::default()
        })
        .await;
        let err = zoom.client.me(&grant.access_token).await.unwrap_err();
        assert!(matches!(err, ZoomError::Unavailable { .. }), "{err:?}");
        assert!(err.is_temporary() && !err.is_final());
        let err = zoom
            .client
            .refresh(&zoom.app, refresh_token(&grant))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ZoomError::Unavailable {
                    outcome_unknown: true,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_secret_free(
            &err,
            &[refresh_token(&grant).expose_secret(), CLIENT_SECRET],
        );
    }

    #[tokio::test]
    async fn gets_that_change_nothing_are_retried_after_an_outage() {
        let zoom = Zoom::start().await;
        let (user, grant) = zoom.connected_user().await;
        let calls = |stats: &SimStats, endpoint: &str| {
            stats
                .api_calls_by_endpoint
                .get(endpoint)
                .copied()
                .unwrap_or_default()
        };
        // Two lost answers in a row: the third attempt gets the user.
        let before = calls(
            &zoom.sim.control().stats().await.unwrap(),
            "GET /v2/users/me",
        );
        zoom.faults(SimFaults {
            fail_next: Some(2),
            paths: Some(vec!["/v2/users/me".into()]),
            ..Default::default()
        })
        .await;
        assert_eq!(
            zoom.client.me(&grant.access_token).await.unwrap().id,
            user.id
        );
        let stats = zoom.sim.control().stats().await.unwrap();
        assert_eq!(calls(&stats, "GET /v2/users/me") - before, 3, "{stats:?}");
        // Three: the retries are spent and the outage is the answer.
        zoom.faults(SimFaults {
            fail_next: Some(3),
            paths: Some(vec!["/v2/users/me/token".into()]),
            ..Default::default()
        })
        .await;
        let err = zoom
            .client
            .user_token(&grant.access_token, &UserTokenType::Zak)
            .await
            .unwrap_err();
        assert!(matches!(err, ZoomError::Unavailable { .. }), "{err:?}");
        // A refusal is not an outage: no retry.
        zoom.faults(SimFaults::default()).await;
        let before = calls(
            &zoom.sim.control().stats().await.unwrap(),
            "GET /v2/meetings/{meeting_id}/jointoken/local_recording",
        );
        let err = zoom
            .client
            .local_recording_token(&grant.access_token, "99999999999", false)
            .await
            .unwrap_err();
        assert!(!err.is_temporary(), "{err:?}");
        let after = calls(
            &zoom.sim.control().stats().await.unwrap(),
            "GET /v2/meetings/{meeting_id}/jointoken/local_recording",
        );
        assert_eq!(after - before, 1);
    }

    #[tokio::test]
    async fn an_injected_429_at_the_token_endpoint_is_rate_limited() {
        let zoom = Zoom::start().await;
        zoom.faults(SimFaults {
            status_code: Some(429),
            ..Default::default()
        })
        .await;
        let err = zoom.client.client_credentials(&zoom.app).await.unwrap_err();
        assert_eq!(
            err,
            ZoomError::RateLimited {
                retry_after: Some(Duration::from_secs(1))
            }
        );
    }

    #[tokio::test]
    async fn a_call_that_never_answers_times_out_as_unavailable() {
        let zoom = Zoom::start_with_timeout(Duration::from_millis(300)).await;
        let (_, grant) = zoom.connected_user().await;
        zoom.faults(SimFaults {
            timeout_rate: Some(1.0),
            ..Default::default()
        })
        .await;
        let started = std::time::Instant::now();
        let err = zoom
            .client
            .refresh(&zoom.app, refresh_token(&grant))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            matches!(err, ZoomError::Unavailable { outcome_unknown: true, ref reason } if reason.contains("timed out")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_dropped_connection_is_unavailable() {
        let zoom = Zoom::start().await;
        let (_, grant) = zoom.connected_user().await;
        zoom.faults(SimFaults {
            drop_connection_rate: Some(1.0),
            ..Default::default()
        })
        .await;
        let err = zoom.client.me(&grant.access_token).await.unwrap_err();
        assert!(matches!(err, ZoomError::Unavailable { .. }), "{err:?}");
        let err = zoom
            .client
            .refresh(&zoom.app, refresh_token(&grant))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ZoomError::Unavailable {
                    outcome_unknown: true,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_unavailable_and_known_not_sent() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let client =
            ZoomClient::new(ZoomConfig::single_base(&format!("http://127.0.0.1:{port}"))).unwrap();
        let app = AppCredentials::new(CLIENT_ID, CLIENT_SECRET);
        let err = client
            .refresh(&app, &SecretString::from("rt-123456".to_owned()))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ZoomError::Unavailable {
                    outcome_unknown: false,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.to_string().contains("127.0.0.1"), "{err}");
    }

    #[tokio::test]
    async fn latency_under_the_timeout_is_just_slow() {
        let zoom = Zoom::start_with_timeout(Duration::from_secs(2)).await;
        let (_, grant) = zoom.connected_user().await;
        zoom.faults(SimFaults {
            latency_ms: Some(200),
            ..Default::default()
        })
        .await;
        zoom.client
            .me(&grant.access_token)
            .await
            .expect("slow but fine");
    }
}

/// The product's scope table (`zoom::scopes`) and the simulator's own, which stands
/// for Zoom's scope reference, name the same scopes for every call zoomkeeper makes.
#[test]
fn the_scope_table_agrees_with_the_simulators() {
    use std::collections::BTreeSet;
    use zoom::scopes;
    let pairs: [(scopes::Need, &[&str]); 5] = [
        (scopes::READ_USER, zoom_sim::SCOPES_USERS_ME),
        (scopes::LIST_MEETINGS, zoom_sim::SCOPES_LIST_MEETINGS),
        (
            scopes::LOCAL_RECORDING_TOKEN,
            zoom_sim::SCOPES_LOCAL_RECORDING,
        ),
        (scopes::ZAK, zoom_sim::SCOPES_ZAK),
        (scopes::USER_TOKEN, zoom_sim::SCOPES_USER_TOKEN),
    ];
    for (need, sim) in pairs {
        let ours: BTreeSet<&str> = need.accepted.iter().copied().collect();
        let theirs: BTreeSet<&str> = sim.iter().copied().collect();
        assert_eq!(ours, theirs, "{}", need.scope);
    }
    assert_eq!(scopes::ONBEHALF_TOKEN, scopes::USER_TOKEN);
    // A ZAK comes from either endpoint.
    let any_zak: BTreeSet<&str> = scopes::ANY_ZAK.accepted.iter().copied().collect();
    let either: BTreeSet<&str> = zoom_sim::SCOPES_ZAK
        .iter()
        .chain(zoom_sim::SCOPES_USER_TOKEN)
        .copied()
        .collect();
    assert_eq!(any_zak, either);
    // The simulator's scope sets are what each capability asks for, no more.
    let set = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let local = set(zoom_sim::LOCAL_RECORDING_SCOPES);
    assert!(scopes::missing(&local, true, false).is_empty());
    assert!(!scopes::missing(&local, false, true).is_empty());
    let onbehalf = set(zoom_sim::ONBEHALF_SCOPES);
    assert!(scopes::missing(&onbehalf, false, true).is_empty());
    assert_eq!(zoom_sim::DEFAULT_SCOPES, zoom_sim::LOCAL_RECORDING_SCOPES);
    // An account-level grant's calls for other users of the account (DESIGN.md §15).
    let admin_pairs: [(scopes::Need, &[&str]); 4] = [
        (scopes::LIST_USERS_ADMIN, zoom_sim::SCOPES_LIST_USERS),
        (
            scopes::LIST_MEETINGS_ADMIN,
            zoom_sim::SCOPES_LIST_MEETINGS_ADMIN,
        ),
        (scopes::USER_TOKEN_ADMIN, zoom_sim::SCOPES_USER_TOKEN_ADMIN),
        (
            scopes::LOCAL_RECORDING_TOKEN_ADMIN,
            zoom_sim::SCOPES_LOCAL_RECORDING_ADMIN,
        ),
    ];
    for (need, sim) in admin_pairs {
        let ours: BTreeSet<&str> = need.accepted.iter().copied().collect();
        let theirs: BTreeSet<&str> = sim.iter().copied().collect();
        assert_eq!(ours, theirs, "{}", need.scope);
    }
    let account = set(zoom_sim::ACCOUNT_LEVEL_SCOPES);
    assert!(scopes::missing_for_account(&account, true, true).is_empty());
    assert!(!scopes::missing_for_account(&local, true, false).is_empty());
}
