//! Zoom's REST API (`{api_url}/v2`, Bearer auth): the user, their meetings, and
//! the tokens a bot needs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::client::{Answer, ZoomClient};
use crate::error::ZoomError;
use crate::types::{lenient_u64, opt_lenient_string, opt_lenient_u64};

/// Most meetings Zoom returns per page.
pub const MAX_PAGE_SIZE: u32 = 300;

/// Safety stop for pagination: 1,000 pages of 300 is far beyond any real user.
const MAX_PAGES: usize = 1_000;

/// `GET /users/me`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ZoomUser {
    pub id: String,
    #[serde(default)]
    pub account_id: String,
    #[serde(default)]
    pub email: String,
    /// `active`, `inactive` or `pending`.
    #[serde(default)]
    pub status: Option<String>,
    /// Personal meeting id, normalised to text (Zoom sends a number).
    #[serde(default, deserialize_with = "opt_lenient_string")]
    pub pmi: Option<String>,
    #[serde(default)]
    pub personal_meeting_url: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    /// `Owner`, `Admin`, `Member`, or the name of a custom role.
    #[serde(default)]
    pub role_name: Option<String>,
    /// `0` owner, `1` admin, `2` member; other ids are custom roles.
    #[serde(default, deserialize_with = "opt_lenient_string")]
    pub role_id: Option<String>,
}

impl ZoomUser {
    /// Whether the user has Zoom's built-in Member role: no admin rights over their
    /// account. Owners, admins and custom roles (whose rights Zoom enforces call by
    /// call) are not.
    pub fn is_plain_member(&self) -> bool {
        self.role_id.as_deref() == Some("2")
            || self
                .role_name
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case("member"))
    }

    /// Zoom omits `status` for some account types; only an explicit
    /// non-`active` status counts as inactive.
    pub fn is_active(&self) -> bool {
        self.status.as_deref().is_none_or(|s| s == "active")
    }
}

/// One meeting from a meeting list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ZoomMeeting {
    /// The meeting number (Zoom sends a number; strings are accepted).
    #[serde(deserialize_with = "lenient_u64")]
    pub id: u64,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub host_id: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    /// Zoom's meeting type (1 instant, 2 scheduled, 3 recurring no fixed time, 8 recurring).
    #[serde(default, rename = "type", deserialize_with = "opt_lenient_u64")]
    pub meeting_type: Option<u64>,
    /// Absent for recurring meetings with no fixed time; unreadable → `None`.
    #[serde(default, deserialize_with = "lenient_time")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "opt_lenient_u64")]
    pub duration: Option<u64>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub join_url: Option<String>,
    /// When the meeting was made at Zoom; unreadable → `None`.
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<DateTime<Utc>>,
}

impl ZoomMeeting {
    /// The meeting number as text, the form the meeting index keys on.
    pub fn meeting_id(&self) -> String {
        self.id.to_string()
    }
}

fn lenient_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    // Read any JSON value so a wrong type is skipped, not an error.
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(value
        .as_ref()
        .and_then(serde_json::Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
        .map(|t| t.with_timezone(&Utc)))
}

/// Which meetings to list (`type=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeetingListType {
    /// All upcoming meetings, including live ones.
    Upcoming,
    /// All valid previous (unexpired), live and upcoming scheduled meetings.
    Scheduled,
}

impl MeetingListType {
    pub fn as_str(self) -> &'static str {
        match self {
            MeetingListType::Upcoming => "upcoming",
            MeetingListType::Scheduled => "scheduled",
        }
    }
}

/// `GET /meetings/{id}/jointoken/local_recording` → `{token, expire_in}`.
#[derive(Debug, Clone)]
pub struct LocalRecordingToken {
    pub token: SecretString,
    /// Lifetime Zoom states for the token, when it states one.
    pub expires_in: Option<Duration>,
}

/// Which user token to ask for at `GET /users/me/token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserTokenType {
    /// `type=zak`: signs a bot in as the user.
    Zak,
    /// `type=onbehalf`: lets a bot join on behalf of the user; Zoom binds it to
    /// the meeting when one is given.
    OnBehalf { meeting_id: Option<String> },
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
    #[serde(default, deserialize_with = "opt_lenient_u64")]
    expire_in: Option<u64>,
}

/// One page of `GET /users/{id}/meetings`.
#[derive(Debug, Clone, Deserialize)]
pub struct MeetingPage {
    /// The token of the next page; `None` (Zoom sends `""`) on the last page.
    #[serde(default)]
    pub next_page_token: Option<String>,
    #[serde(default)]
    pub meetings: Vec<ZoomMeeting>,
}

/// One page of `GET /users` ("List users"): the active users of the grant's
/// account, which Zoom shows only to an owner or admin with `user:read:list_users:admin`
/// (or the classic `user:read:admin`).
#[derive(Debug, Clone, Deserialize)]
pub struct UserPage {
    /// The token of the next page; `None` (Zoom sends `""`) on the last page.
    #[serde(default)]
    pub next_page_token: Option<String>,
    /// Users in the whole listing, as Zoom counts them.
    #[serde(default, deserialize_with = "opt_lenient_u64")]
    pub total_records: Option<u64>,
    #[serde(default)]
    pub users: Vec<ZoomUser>,
}

impl ZoomClient {
    /// `GET /users/me`.
    pub async fn me(&self, access_token: &SecretString) -> Result<ZoomUser, ZoomError> {
        let answer = self.get(access_token, &["users", "me"], &[]).await?;
        answer.json()
    }

    /// Every meeting of `list_type` for `user_id` (`"me"` for the token's own
    /// user), following `next_page_token` to the end, 300 per page.
    pub async fn list_meetings(
        &self,
        access_token: &SecretString,
        user_id: &str,
        list_type: MeetingListType,
    ) -> Result<Vec<ZoomMeeting>, ZoomError> {
        let mut meetings = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .list_meetings_page(access_token, user_id, list_type, next.as_deref())
                .await?;
            meetings.extend(page.meetings);
            match page.next_page_token {
                Some(token) if Some(&token) == next.as_ref() => {
                    return Err(ZoomError::BadResponse {
                        status: 200,
                        detail: "Zoom returned the same page token twice".into(),
                    })
                }
                Some(token) => next = Some(token),
                None => return Ok(meetings),
            }
        }
        Err(ZoomError::BadResponse {
            status: 200,
            detail: format!("meeting list did not end after {MAX_PAGES} pages"),
        })
    }

    /// One page (300 meetings) of [`ZoomClient::list_meetings`], for callers that
    /// resume a listing after a rate limit instead of starting over.
    /// `next_page_token` is the previous page's; an empty token counts as none.
    pub async fn list_meetings_page(
        &self,
        access_token: &SecretString,
        user_id: &str,
        list_type: MeetingListType,
        next_page_token: Option<&str>,
    ) -> Result<MeetingPage, ZoomError> {
        check_user_id(user_id)?;
        let page_size = MAX_PAGE_SIZE.to_string();
        let mut query = vec![
            ("type", list_type.as_str()),
            ("page_size", page_size.as_str()),
        ];
        if let Some(token) = next_page_token.filter(|t| !t.is_empty()) {
            query.push(("next_page_token", token));
        }
        let answer = self
            .get(access_token, &["users", user_id, "meetings"], &query)
            .await?;
        let mut page: MeetingPage = answer.json()?;
        page.next_page_token = page.next_page_token.filter(|t| !t.is_empty());
        Ok(page)
    }

    /// One page (300 users) of the grant's account's active users (`GET /users`).
    /// `next_page_token` is the previous page's (they live 15 minutes); an empty
    /// token counts as none.
    pub async fn list_users_page(
        &self,
        access_token: &SecretString,
        next_page_token: Option<&str>,
    ) -> Result<UserPage, ZoomError> {
        let page_size = MAX_PAGE_SIZE.to_string();
        let mut query = vec![("status", "active"), ("page_size", page_size.as_str())];
        if let Some(token) = next_page_token.filter(|t| !t.is_empty()) {
            query.push(("next_page_token", token));
        }
        let answer = self.get(access_token, &["users"], &query).await?;
        let mut page: UserPage = answer.json()?;
        page.next_page_token = page.next_page_token.filter(|t| !t.is_empty());
        Ok(page)
    }

    /// `GET /meetings/{meeting_id}/jointoken/local_recording`, minted with the
    /// host's token; 404 code 3001 → [`ZoomError::NotFound`].
    pub async fn local_recording_token(
        &self,
        access_token: &SecretString,
        meeting_id: &str,
        bypass_waiting_room: bool,
    ) -> Result<LocalRecordingToken, ZoomError> {
        check_meeting_id(meeting_id)?;
        let query: &[(&str, &str)] = if bypass_waiting_room {
            &[("bypass_waiting_room", "true")]
        } else {
            &[]
        };
        let answer = self
            .get(
                access_token,
                &["meetings", meeting_id, "jointoken", "local_recording"],
                query,
            )
            .await?;
        let body: TokenBody = answer.json()?;
        Ok(LocalRecordingToken {
            token: SecretString::from(body.token),
            expires_in: body.expire_in.map(crate::client::token_lifetime),
        })
    }

    /// `GET /users/me/token?type=zak|onbehalf[&meeting_id=]`.
    pub async fn user_token(
        &self,
        access_token: &SecretString,
        token_type: &UserTokenType,
    ) -> Result<SecretString, ZoomError> {
        self.user_token_of(access_token, "me", token_type).await
    }

    /// `GET /users/{userId}/token?type=…`: a token of `user_id` (`me` for the
    /// grant's own user). For another user of the account Zoom needs an admin's
    /// grant with `user:read:token:admin`; a user outside the account is 404.
    pub async fn user_token_of(
        &self,
        access_token: &SecretString,
        user_id: &str,
        token_type: &UserTokenType,
    ) -> Result<SecretString, ZoomError> {
        let mut query = Vec::new();
        match token_type {
            UserTokenType::Zak => query.push(("type", "zak")),
            UserTokenType::OnBehalf { meeting_id } => {
                query.push(("type", "onbehalf"));
                if let Some(id) = meeting_id {
                    check_meeting_id(id)?;
                    query.push(("meeting_id", id.as_str()));
                }
            }
        }
        let answer = self
            .get(access_token, &["users", user_id, "token"], &query)
            .await?;
        let body: TokenBody = answer.json()?;
        Ok(SecretString::from(body.token))
    }

    /// `GET /users/me/zak`.
    pub async fn zak(&self, access_token: &SecretString) -> Result<SecretString, ZoomError> {
        let answer = self.get(access_token, &["users", "me", "zak"], &[]).await?;
        let body: TokenBody = answer.json()?;
        Ok(SecretString::from(body.token))
    }

    /// A GET that changes nothing at Zoom, retried with jitter after an outage (5xx,
    /// a dropped or refused connection) while the retries fit in
    /// [`GET_RETRY_WINDOW`] from the first attempt: a bot waiting for a token
    /// should not fail on one lost answer.
    async fn get(
        &self,
        access_token: &SecretString,
        path: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Answer, ZoomError> {
        let started = std::time::Instant::now();
        let mut retries = 0;
        loop {
            let result = self.get_once(access_token, path, query).await;
            let delay = get_retry_delay(retries);
            match result {
                Err(ZoomError::Unavailable { .. })
                    if retries < GET_RETRIES && started.elapsed() + delay <= GET_RETRY_WINDOW =>
                {
                    retries += 1;
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    async fn get_once(
        &self,
        access_token: &SecretString,
        path: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Answer, ZoomError> {
        let mut url = self.api_endpoint(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let request = self.http.get(url).bearer_auth(access_token.expose_secret());
        let answer = self.send(request).await?;
        if answer.status.is_success() {
            Ok(answer)
        } else {
            Err(answer.api_error(&[access_token.expose_secret()]))
        }
    }
}

/// Retries of a GET after an outage, at most.
const GET_RETRIES: u32 = 2;
/// No retry starts later than this after the first attempt.
const GET_RETRY_WINDOW: std::time::Duration = std::time::Duration::from_secs(3);

/// 100–300 ms before the first retry, three times that before the second.
fn get_retry_delay(retry: u32) -> std::time::Duration {
    use rand::Rng as _;
    let base = 100 * 3u64.pow(retry);
    std::time::Duration::from_millis(rand::thread_rng().gen_range(base..=base * 3))
}

/// Zoom meeting numbers are digits; anything else would change the URL's path.
fn check_meeting_id(meeting_id: &str) -> Result<(), ZoomError> {
    if !meeting_id.is_empty()
        && meeting_id.len() <= 20
        && meeting_id.bytes().all(|b| b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(ZoomError::InvalidInput(
            "a meeting id must be digits".into(),
        ))
    }
}

/// Zoom user ids are short alphanumerics (or `me`, or an email address).
fn check_user_id(user_id: &str) -> Result<(), ZoomError> {
    let ok = !user_id.is_empty()
        && user_id.len() <= 128
        && user_id != "."
        && user_id != ".."
        && user_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ZoomError::InvalidInput("not a Zoom user id".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_with_numeric_pmi_normalises_to_text() {
        let user: ZoomUser = serde_json::from_str(
            r#"{"id":"KDcuGIm1QgePTO8WbOqwIQ","account_id":"acc","email":"a@b.c","status":"active",
                "pmi":3542471135,"personal_meeting_url":"https://us02web.zoom.us/j/3542471135","unknown":[1]}"#,
        )
        .unwrap();
        assert_eq!(user.pmi.as_deref(), Some("3542471135"));
        assert!(user.is_active());
    }

    #[test]
    fn user_with_string_pmi_and_inactive_status() {
        let user: ZoomUser =
            serde_json::from_str(r#"{"id":"u","pmi":"3542471135","status":"inactive"}"#).unwrap();
        assert_eq!(user.pmi.as_deref(), Some("3542471135"));
        assert!(!user.is_active());
    }

    #[test]
    fn meeting_id_may_be_a_number_or_a_string() {
        let a: ZoomMeeting = serde_json::from_str(
            r#"{"id":85746065432,"uuid":"aDYlohsHRtCd4ii1uC2+hA==","host_id":"h","topic":"t",
                "type":2,"start_time":"2026-03-01T10:00:00Z","duration":30,"join_url":"https://zoom.us/j/85746065432"}"#,
        )
        .unwrap();
        let b: ZoomMeeting = serde_json::from_str(r#"{"id":"85746065432","type":"8"}"#).unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(a.meeting_id(), "85746065432");
        assert_eq!(b.meeting_type, Some(8));
        assert_eq!(
            a.start_time.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-03-01T10:00:00+00:00")
        );
    }

    #[test]
    fn meeting_with_unreadable_start_time_still_parses() {
        let m: ZoomMeeting =
            serde_json::from_str(r#"{"id":123456789,"start_time":"soon"}"#).unwrap();
        assert_eq!(m.start_time, None);
        let m: ZoomMeeting = serde_json::from_str(r#"{"id":123456789,"start_time":12}"#).unwrap();
        assert_eq!(m.start_time, None);
    }

    #[test]
    fn ids_that_would_change_the_path_are_refused() {
        assert!(check_meeting_id("85746065432").is_ok());
        for bad in ["", "../users", "123?x=1", "12 3", "1".repeat(21).as_str()] {
            assert!(check_meeting_id(bad).is_err(), "{bad}");
        }
        assert!(check_user_id("me").is_ok());
        assert!(check_user_id("KDcuGIm1QgePTO8WbOqwIQ").is_ok());
        for bad in ["", "..", "a/b", "a?b", "a b"] {
            assert!(check_user_id(bad).is_err(), "{bad}");
        }
    }
}
