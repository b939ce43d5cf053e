//! Zoom's signed webhooks: the signature (`x-zm-signature`), the
//! `endpoint.url_validation` answer, and typed events parsed from raw bytes.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;

use crate::types::value_text;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying `v0=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "x-zm-signature";
/// Header carrying the request time in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-zm-request-timestamp";
/// How far the request timestamp may be from now, either way.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

fn mac(secret: &str) -> HmacSha256 {
    // HMAC takes keys of any length; this cannot fail.
    match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

fn signed_message(mac: &mut HmacSha256, timestamp: &str, body: &[u8]) {
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
}

/// `v0=` + hex HMAC-SHA256(secret, `v0:{timestamp}:{raw body}`).
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = mac(secret);
    signed_message(&mut mac, timestamp, body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why a webhook's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the x-zm-request-timestamp header is missing")]
    MissingTimestamp,
    #[error("the x-zm-signature header is missing")]
    MissingSignature,
    #[error("the x-zm-request-timestamp header is not a Unix time in seconds")]
    MalformedTimestamp,
    #[error("the x-zm-signature header is not v0= followed by 64 hex digits")]
    MalformedSignature,
    /// `skew_s`: how far the timestamp lies behind now (negative: ahead of now).
    #[error(
        "the request timestamp is {} s in the {}, outside the allowed window",
        skew_s.unsigned_abs(),
        if *skew_s >= 0 { "past" } else { "future" }
    )]
    StaleTimestamp { skew_s: i64 },
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Check a webhook: both headers present and well formed, the timestamp within
/// `window` of `now_unix` (seconds), and the signature equal — in constant time —
/// to the HMAC of the raw body.
pub fn verify(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_unix: i64,
    window: Duration,
) -> Result<(), SignatureError> {
    let timestamp = timestamp.ok_or(SignatureError::MissingTimestamp)?;
    let signature = signature.ok_or(SignatureError::MissingSignature)?;
    let ts = timestamp.trim();
    if ts.is_empty() || ts.len() > 12 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::MalformedTimestamp);
    }
    let ts_value: i64 = ts.parse().map_err(|_| SignatureError::MalformedTimestamp)?;
    let provided = signature
        .trim()
        .strip_prefix("v0=")
        .filter(|h| h.len() == 64)
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::MalformedSignature)?;
    let skew = now_unix.saturating_sub(ts_value);
    let window_s = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
    if skew.unsigned_abs() > window_s.unsigned_abs() {
        return Err(SignatureError::StaleTimestamp { skew_s: skew });
    }
    let mut mac = mac(secret);
    signed_message(&mut mac, ts, body);
    mac.verify_slice(&provided)
        .map_err(|_| SignatureError::Mismatch)
}

/// The answer to `endpoint.url_validation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UrlValidationResponse {
    #[serde(rename = "plainToken")]
    pub plain_token: String,
    #[serde(rename = "encryptedToken")]
    pub encrypted_token: String,
}

/// `{plainToken, encryptedToken}` with encryptedToken = hex HMAC-SHA256(secret, plainToken).
pub fn url_validation_response(secret: &str, plain_token: &str) -> UrlValidationResponse {
    let mut mac = mac(secret);
    mac.update(plain_token.as_bytes());
    UrlValidationResponse {
        plain_token: plain_token.to_owned(),
        encrypted_token: hex::encode(mac.finalize().into_bytes()),
    }
}

/// A meeting event's `payload.object`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingObject {
    /// The meeting number as text (Zoom sends a number for created/updated/deleted
    /// and a string for started/ended).
    pub id: String,
    pub uuid: Option<String>,
    pub host_id: Option<String>,
    pub topic: Option<String>,
    pub meeting_type: Option<u64>,
    pub start_time: Option<String>,
}

/// `user.updated`: who changed and, when it changed, the new PMI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserUpdate {
    pub user_id: String,
    /// `object.pmi` when the update carries one.
    pub pmi: Option<String>,
    /// `old_object.pmi` when the update carries one.
    pub old_pmi: Option<String>,
    pub personal_meeting_url: Option<String>,
}

/// `app_deauthorized`: a user removed the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deauthorization {
    pub user_id: String,
    pub account_id: Option<String>,
    pub client_id: Option<String>,
    pub deauthorization_time: Option<String>,
}

/// The events zoomkeeper acts on; everything else is `Other` with its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoomEvent {
    MeetingCreated(MeetingObject),
    MeetingUpdated(MeetingObject),
    MeetingDeleted(MeetingObject),
    MeetingStarted(MeetingObject),
    MeetingEnded(MeetingObject),
    UserUpdated(UserUpdate),
    AppDeauthorized(Deauthorization),
    UrlValidation { plain_token: String },
    Other(String),
}

/// A parsed webhook: the envelope's common fields and the typed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// The `event` name, e.g. `meeting.created`.
    pub name: String,
    /// `event_ts`, milliseconds since the epoch (0 when absent).
    pub event_ts: i64,
    pub account_id: Option<String>,
    pub operator_id: Option<String>,
    pub event: ZoomEvent,
    object_id: Option<String>,
}

impl WebhookEvent {
    /// The key under which a redelivery is recognised: event, event_ts and the
    /// object's id (the user id for `app_deauthorized`).
    pub fn dedupe_key(&self) -> String {
        format!(
            "{}:{}:{}",
            self.name,
            self.event_ts,
            self.object_id.as_deref().unwrap_or("")
        )
    }
}

/// Why a webhook body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the body is not a JSON object")]
    NotJson,
    #[error("the body has no event name")]
    MissingEvent,
    #[error("the {0} event has no {1}")]
    MissingField(String, &'static str),
}

/// `s` with each NUL replaced by U+FFFD. Zoom never sends NUL and PostgreSQL cannot
/// store it; replaced rather than refused, a signed event holding one is still read
/// (its ids then match nothing stored) and can be answered 200, so Zoom stops
/// sending it.
fn without_nul(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s
    }
}

/// Parse a webhook body (the raw bytes that were verified). Never panics. No text
/// field holds NUL ([`without_nul`]).
pub fn parse_event(body: &[u8]) -> Result<WebhookEvent, EventError> {
    let root: Value = serde_json::from_slice(body).map_err(|_| EventError::NotJson)?;
    let root = root.as_object().ok_or(EventError::NotJson)?;
    let name = root
        .get("event")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(EventError::MissingEvent)?
        .to_owned();
    let event_ts = root
        .get("event_ts")
        .and_then(value_text)
        .and_then(|t| t.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let empty = serde_json::Map::new();
    let payload = root
        .get("payload")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let object = payload
        .get("object")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let text = |map: &serde_json::Map<String, Value>, key: &str| {
        map.get(key)
            .and_then(value_text)
            .filter(|s| !s.is_empty())
            .map(without_nul)
    };
    let missing = |field: &'static str| EventError::MissingField(name.clone(), field);

    let meeting = || -> Result<MeetingObject, EventError> {
        Ok(MeetingObject {
            id: text(object, "id").ok_or_else(|| missing("payload.object.id"))?,
            uuid: text(object, "uuid"),
            host_id: text(object, "host_id"),
            topic: text(object, "topic"),
            meeting_type: text(object, "type").and_then(|t| t.parse().ok()),
            start_time: text(object, "start_time"),
        })
    };

    let event = match name.as_str() {
        "meeting.created" => ZoomEvent::MeetingCreated(meeting()?),
        "meeting.updated" => ZoomEvent::MeetingUpdated(meeting()?),
        "meeting.deleted" => ZoomEvent::MeetingDeleted(meeting()?),
        "meeting.started" => ZoomEvent::MeetingStarted(meeting()?),
        "meeting.ended" => ZoomEvent::MeetingEnded(meeting()?),
        "user.updated" => {
            let old = payload
                .get("old_object")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            ZoomEvent::UserUpdated(UserUpdate {
                user_id: text(object, "id").ok_or_else(|| missing("payload.object.id"))?,
                pmi: text(object, "pmi"),
                old_pmi: text(old, "pmi"),
                personal_meeting_url: text(object, "personal_meeting_url"),
            })
        }
        "app_deauthorized" => ZoomEvent::AppDeauthorized(Deauthorization {
            user_id: text(payload, "user_id").ok_or_else(|| missing("payload.user_id"))?,
            account_id: text(payload, "account_id"),
            client_id: text(payload, "client_id"),
            deauthorization_time: text(payload, "deauthorization_time"),
        }),
        "endpoint.url_validation" => ZoomEvent::UrlValidation {
            plain_token: text(payload, "plainToken")
                .ok_or_else(|| missing("payload.plainToken"))?,
        },
        other => ZoomEvent::Other(other.to_owned()),
    };
    let object_id = match &event {
        ZoomEvent::AppDeauthorized(d) => Some(d.user_id.clone()),
        ZoomEvent::UrlValidation { plain_token } => Some(plain_token.clone()),
        _ => text(object, "id"),
    };
    Ok(WebhookEvent {
        name,
        event_ts,
        account_id: text(payload, "account_id"),
        operator_id: text(payload, "operator_id"),
        event,
        object_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The scheme is Zoom's (https://developers.zoom.us/docs/api/webhooks/#verify-webhook-events);
    // Zoom publishes no secret with its example, so the vector was computed independently:
    //   python3 -c 'import hmac,hashlib; print("v0="+hmac.new(b"mysecret",
    //     b"v0:1658936484:{\"event\":\"meeting.started\"}", hashlib.sha256).hexdigest())'
    const SECRET: &str = "mysecret";
    const TS: &str = "1658936484";
    const BODY: &[u8] = br#"{"event":"meeting.started"}"#;

    #[test]
    fn sign_matches_an_independent_hmac() {
        assert_eq!(sign(SECRET, TS, BODY), SIGNED_VECTOR);
    }

    const SIGNED_VECTOR: &str =
        "v0=cf886289e13ea1758fd3be289224a8baa2f03bb530e99adf170dbfe3ad8132cf";

    #[test]
    fn verify_accepts_a_fresh_correct_signature() {
        let sig = sign(SECRET, TS, BODY);
        assert_eq!(
            verify(
                SECRET,
                Some(TS),
                Some(&sig),
                BODY,
                1658936484 + 10,
                DEFAULT_WINDOW
            ),
            Ok(())
        );
    }

    #[test]
    fn verify_names_each_failure() {
        let sig = sign(SECRET, TS, BODY);
        let now = 1658936484;
        let check = |ts: Option<&str>, sig: Option<&str>, body: &[u8], now: i64| {
            verify(SECRET, ts, sig, body, now, DEFAULT_WINDOW)
        };
        assert_eq!(
            check(None, Some(&sig), BODY, now),
            Err(SignatureError::MissingTimestamp)
        );
        assert_eq!(
            check(Some(TS), None, BODY, now),
            Err(SignatureError::MissingSignature)
        );
        assert_eq!(
            check(Some("12x"), Some(&sig), BODY, now),
            Err(SignatureError::MalformedTimestamp)
        );
        assert_eq!(
            check(Some("-1"), Some(&sig), BODY, now),
            Err(SignatureError::MalformedTimestamp)
        );
        assert_eq!(
            check(Some(TS), Some("v1=00"), BODY, now),
            Err(SignatureError::MalformedSignature)
        );
        assert_eq!(
            check(Some(TS), Some(&sig[3..]), BODY, now),
            Err(SignatureError::MalformedSignature)
        );
        assert_eq!(
            check(Some(TS), Some(&sig), BODY, now + 301),
            Err(SignatureError::StaleTimestamp { skew_s: 301 })
        );
        assert_eq!(
            check(Some(TS), Some(&sig), BODY, now - 301),
            Err(SignatureError::StaleTimestamp { skew_s: -301 })
        );
        assert_eq!(
            check(Some(TS), Some(&sig), b"{}", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                "othersecret",
                Some(TS),
                Some(&sig),
                BODY,
                now,
                DEFAULT_WINDOW
            ),
            Err(SignatureError::Mismatch)
        );
        // A timestamp that was not the one signed fails even inside the window.
        assert_eq!(
            check(Some("1658936485"), Some(&sig), BODY, now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_stale_timestamp_says_which_way_it_is_off() {
        let sig = sign(SECRET, TS, BODY);
        let now = 1658936484;
        let past = verify(
            SECRET,
            Some(TS),
            Some(&sig),
            BODY,
            now + 301,
            DEFAULT_WINDOW,
        )
        .expect_err("stale");
        assert_eq!(
            past.to_string(),
            "the request timestamp is 301 s in the past, outside the allowed window"
        );
        let future = verify(
            SECRET,
            Some(TS),
            Some(&sig),
            BODY,
            now - 302,
            DEFAULT_WINDOW,
        )
        .expect_err("stale");
        assert_eq!(
            future.to_string(),
            "the request timestamp is 302 s in the future, outside the allowed window"
        );
    }

    #[test]
    fn nul_in_text_fields_is_replaced() {
        let body = br#"{"event":"meeting.created","event_ts":1,"payload":{"account_id":"a\u0000",
            "operator_id":"o\u0000","object":{"id":123456789,"host_id":"h\u0000x","topic":"t\u0000"}}}"#;
        let ev = parse_event(body).unwrap();
        let ZoomEvent::MeetingCreated(m) = &ev.event else {
            panic!("{ev:?}")
        };
        assert_eq!(m.host_id.as_deref(), Some("h\u{FFFD}x"));
        assert_eq!(m.topic.as_deref(), Some("t\u{FFFD}"));
        assert_eq!(ev.account_id.as_deref(), Some("a\u{FFFD}"));
        assert_eq!(ev.operator_id.as_deref(), Some("o\u{FFFD}"));
        let body = br#"{"event":"app_deauthorized","event_ts":1,"payload":{"user_id":"\u0000"}}"#;
        let ev = parse_event(body).unwrap();
        assert!(!ev.dedupe_key().contains('\0'), "{ev:?}");
        assert!(matches!(&ev.event, ZoomEvent::AppDeauthorized(d) if d.user_id == "\u{FFFD}"));
    }

    #[test]
    fn verify_survives_absurd_timestamps() {
        let sig = sign(SECRET, TS, BODY);
        for ts in ["999999999999", "0", "000000000000"] {
            let r = verify(SECRET, Some(ts), Some(&sig), BODY, i64::MAX, DEFAULT_WINDOW);
            assert!(r.is_err());
            let r = verify(SECRET, Some(ts), Some(&sig), BODY, i64::MIN, DEFAULT_WINDOW);
            assert!(r.is_err());
        }
    }

    #[test]
    fn url_validation_answer_matches_an_independent_hmac() {
        let answer = url_validation_response(SECRET, "qgg8vlvZRS6UYooatFL8Aw");
        assert_eq!(answer.plain_token, "qgg8vlvZRS6UYooatFL8Aw");
        assert_eq!(answer.encrypted_token, VALIDATION_VECTOR);
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
        assert_eq!(json["encryptedToken"], VALIDATION_VECTOR);
    }

    // The algorithm is Zoom's (https://developers.zoom.us/docs/api/webhooks/#validate-your-webhook-endpoint);
    // Zoom publishes no secret with its example, so the value was computed with
    //   python3 -c 'import hmac,hashlib; print(hmac.new(b"mysecret", b"qgg8vlvZRS6UYooatFL8Aw", hashlib.sha256).hexdigest())'
    const VALIDATION_VECTOR: &str =
        "33c02b74e471b5e135042d8a17088d887b849812ee56c6468a2279e517041936";

    #[test]
    fn url_validation_is_plain_hmac_sha256_per_rfc_4231() {
        // encryptedToken is hex HMAC-SHA256(secret, plainToken), so RFC 4231 test
        // case 2 applies verbatim: https://www.rfc-editor.org/rfc/rfc4231#section-4.3
        let answer = url_validation_response("Jefe", "what do ya want for nothing?");
        assert_eq!(
            answer.encrypted_token,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn meeting_created_reads_a_numeric_id() {
        let body = br#"{"event":"meeting.created","event_ts":1626230691572,"payload":{
            "account_id":"AAAAAABBBB","operator":"admin@example.com","operator_id":"z8yCxjabcdEFGHfp8uQ",
            "object":{"uuid":"czLF6FFFoQOKgAB99DlDb9g==","id":85746065432,"host_id":"z8yCxjabcdEFGHfp8uQ",
            "topic":"My Meeting","type":2,"start_time":"2021-07-13T21:44:51Z","duration":60,"timezone":"America/Los_Angeles"}}}"#;
        let ev = parse_event(body).unwrap();
        assert_eq!(ev.name, "meeting.created");
        assert_eq!(ev.account_id.as_deref(), Some("AAAAAABBBB"));
        assert_eq!(ev.operator_id.as_deref(), Some("z8yCxjabcdEFGHfp8uQ"));
        let ZoomEvent::MeetingCreated(m) = &ev.event else {
            panic!("{ev:?}")
        };
        assert_eq!(m.id, "85746065432");
        assert_eq!(m.host_id.as_deref(), Some("z8yCxjabcdEFGHfp8uQ"));
        assert_eq!(m.meeting_type, Some(2));
        assert_eq!(ev.dedupe_key(), "meeting.created:1626230691572:85746065432");
    }

    #[test]
    fn meeting_started_reads_a_string_id() {
        let body = br#"{"event":"meeting.started","event_ts":1,"payload":{"account_id":"a",
            "object":{"id":"85746065432","uuid":"u","host_id":"h","topic":"t","type":2}}}"#;
        let ev = parse_event(body).unwrap();
        assert!(matches!(&ev.event, ZoomEvent::MeetingStarted(m) if m.id == "85746065432"));
    }

    #[test]
    fn every_meeting_event_is_typed() {
        for (name, check) in [
            (
                "meeting.updated",
                (|e: &ZoomEvent| matches!(e, ZoomEvent::MeetingUpdated(_)))
                    as fn(&ZoomEvent) -> bool,
            ),
            ("meeting.deleted", |e| {
                matches!(e, ZoomEvent::MeetingDeleted(_))
            }),
            ("meeting.ended", |e| matches!(e, ZoomEvent::MeetingEnded(_))),
        ] {
            let body = format!(
                r#"{{"event":"{name}","event_ts":5,"payload":{{"object":{{"id":123456789}}}}}}"#
            );
            let ev = parse_event(body.as_bytes()).unwrap();
            assert!(check(&ev.event), "{name}: {ev:?}");
        }
    }

    #[test]
    fn user_updated_carries_new_and_old_pmi() {
        let body = br#"{"event":"user.updated","event_ts":1,"payload":{"account_id":"a","operator":"o",
            "object":{"id":"KDcuGIm1QgePTO8WbOqwIQ","pmi":3542471135},"old_object":{"id":"KDcuGIm1QgePTO8WbOqwIQ","pmi":"1111111111"},
            "time_stamp":1}}"#;
        let ev = parse_event(body).unwrap();
        assert_eq!(
            ev.event,
            ZoomEvent::UserUpdated(UserUpdate {
                user_id: "KDcuGIm1QgePTO8WbOqwIQ".into(),
                pmi: Some("3542471135".into()),
                old_pmi: Some("1111111111".into()),
                personal_meeting_url: None,
            })
        );
    }

    #[test]
    fn app_deauthorized_reads_the_payload_and_keys_on_the_user() {
        let body = br#"{"event":"app_deauthorized","event_ts":1740000000000,"payload":{"account_id":"EabCDEFghiLHMA",
            "user_id":"z9jkdsfsdfjhdkfjQ","signature":"827edc3452044f0bc86bdd5684afb7d1e6becfa1a767f24df1b287853cf73000",
            "deauthorization_time":"2019-06-17T13:52:28.632Z","client_id":"ADZ9k9bTWmGUoUbECUKU_a"}}"#;
        let ev = parse_event(body).unwrap();
        let ZoomEvent::AppDeauthorized(d) = &ev.event else {
            panic!("{ev:?}")
        };
        assert_eq!(d.user_id, "z9jkdsfsdfjhdkfjQ");
        assert_eq!(d.client_id.as_deref(), Some("ADZ9k9bTWmGUoUbECUKU_a"));
        assert_eq!(
            ev.dedupe_key(),
            "app_deauthorized:1740000000000:z9jkdsfsdfjhdkfjQ"
        );
    }

    #[test]
    fn url_validation_reads_the_plain_token() {
        let body = br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
        let ev = parse_event(body).unwrap();
        assert_eq!(
            ev.event,
            ZoomEvent::UrlValidation {
                plain_token: "qgg8vlvZRS6UYooatFL8Aw".into()
            }
        );
    }

    #[test]
    fn unknown_events_are_other_with_their_name() {
        let ev = parse_event(
            br#"{"event":"recording.completed","event_ts":"7","payload":{"object":{"id":9}}}"#,
        )
        .unwrap();
        assert_eq!(ev.event, ZoomEvent::Other("recording.completed".into()));
        assert_eq!(ev.event_ts, 7);
        assert_eq!(ev.dedupe_key(), "recording.completed:7:9");
    }

    #[test]
    fn malformed_bodies_are_named_errors() {
        assert_eq!(parse_event(b"not json"), Err(EventError::NotJson));
        assert_eq!(parse_event(b"[1,2]"), Err(EventError::NotJson));
        assert_eq!(
            parse_event(br#"{"payload":{}}"#),
            Err(EventError::MissingEvent)
        );
        assert_eq!(
            parse_event(br#"{"event":5}"#),
            Err(EventError::MissingEvent)
        );
        assert_eq!(
            parse_event(br#"{"event":"meeting.created","payload":{"object":{"id":{"x":1}}}}"#),
            Err(EventError::MissingField(
                "meeting.created".into(),
                "payload.object.id"
            ))
        );
        assert!(parse_event(br#"{"event":"meeting.deleted","payload":"x"}"#).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_event_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_event(&body);
        }

        #[test]
        fn json_shaped_bodies_never_panic(
            event in "(meeting\\.(created|updated|deleted|started|ended)|user\\.updated|app_deauthorized|endpoint\\.url_validation|x)",
            id in "(1|\"1\"|null|\\{\\}|\\[\\]|1\\.5|-1|\"\"|true)",
            ts in "(1|\"1\"|null|\"x\"|99999999999999999999)",
            wrap in 0usize..4,
        ) {
            let object = format!(r#"{{"id":{id},"pmi":{id},"host_id":{id}}}"#);
            let payload = match wrap {
                0 => format!(r#"{{"object":{object},"user_id":{id},"plainToken":{id}}}"#),
                1 => object.clone(),
                2 => "null".to_owned(),
                _ => format!(r#"{{"object":[{object}]}}"#),
            };
            let body = format!(r#"{{"event":"{event}","event_ts":{ts},"payload":{payload}}}"#);
            if let Ok(ev) = parse_event(body.as_bytes()) {
                let _ = ev.dedupe_key();
            }
        }

        #[test]
        fn verify_never_panics(ts in ".{0,20}", sig in ".{0,80}", now in proptest::num::i64::ANY) {
            let _ = verify(SECRET, Some(&ts), Some(&sig), BODY, now, DEFAULT_WINDOW);
        }
    }
}
