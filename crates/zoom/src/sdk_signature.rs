//! The Meeting SDK signature: an HS256 JWT signed with the app's client secret
//! (https://developers.zoom.us/docs/meeting-sdk/auth/). Built by hand from
//! hmac/sha2/base64; no JWT library.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Shortest lifetime Zoom accepts (its samples: 1800 s).
pub const MIN_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Longest lifetime Zoom accepts (its samples: 172800 s).
pub const MAX_LIFETIME: Duration = Duration::from_secs(48 * 60 * 60);
/// Lifetime used unless the caller asks otherwise.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(2 * 60 * 60);
/// `iat` is set this far in the past to absorb clock skew, as Zoom's samples do.
pub const IAT_SKEW: i64 = 30;

/// The role the SDK joins with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdkRole {
    /// 0: join as a participant.
    Participant,
    /// 1: start as host.
    Host,
}

impl SdkRole {
    pub fn from_number(role: i64) -> Option<Self> {
        match role {
            0 => Some(SdkRole::Participant),
            1 => Some(SdkRole::Host),
            _ => None,
        }
    }

    pub fn as_number(self) -> u8 {
        match self {
            SdkRole::Participant => 0,
            SdkRole::Host => 1,
        }
    }
}

/// A signed JWT and when it stops working (Unix seconds). `Debug` hides the JWT.
#[derive(Debug, Clone)]
pub struct SdkSignature {
    pub jwt: SecretString,
    pub expires_at: i64,
}

/// The JWT's payload, as Zoom documents it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdkClaims {
    #[serde(rename = "appKey")]
    pub app_key: String,
    #[serde(rename = "sdkKey")]
    pub sdk_key: String,
    /// The meeting number.
    pub mn: u64,
    pub role: u8,
    pub iat: i64,
    pub exp: i64,
    #[serde(rename = "tokenExp")]
    pub token_exp: i64,
}

/// Why a signature could not be made or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdkSignatureError {
    #[error("the SDK signature lifetime must be between 30 minutes and 48 hours")]
    BadLifetime,
    #[error("the meeting number must be 9 to 11 digits")]
    BadMeetingNumber,
    #[error("the client id is empty")]
    EmptyClientId,
    #[error("the JWT is malformed")]
    Malformed,
    #[error("the JWT's signature does not match")]
    BadSignature,
}

/// Sign a Meeting SDK JWT: header `{"alg":"HS256","typ":"JWT"}`, payload
/// `appKey`/`sdkKey` (the client id), `mn`, `role`, `iat` (= now − 30 s), `exp`
/// (= now + lifetime, at most iat + 48 hours), `tokenExp` (= exp). `now_unix` is
/// the caller's clock.
///
/// The lifetime counts from now, not from the back-dated `iat`: `tokenExp` must be
/// at least the current time + 1800 s (https://devforum.zoom.us/t/jwt-expiration-clarification/65869,
/// confirmed by Zoom staff), while exp − iat must be 1800 s to 48 h
/// (https://devforum.zoom.us/t/troubleshooting-meeting-sdk-signature-validation/85961).
/// A signature at the 30-minute minimum counted from `iat` would fall 30 s short.
pub fn sign(
    client_id: &str,
    client_secret: &SecretString,
    meeting_number: &str,
    role: SdkRole,
    lifetime: Duration,
    now_unix: i64,
) -> Result<SdkSignature, SdkSignatureError> {
    if !(MIN_LIFETIME..=MAX_LIFETIME).contains(&lifetime) {
        return Err(SdkSignatureError::BadLifetime);
    }
    if client_id.trim().is_empty() {
        return Err(SdkSignatureError::EmptyClientId);
    }
    let mn = parse_meeting_number(meeting_number)?;
    let iat = now_unix.saturating_sub(IAT_SKEW);
    // Bounded above by MAX_LIFETIME, so this fits; Zoom's 48-hour maximum counts
    // from iat.
    let exp = now_unix
        .saturating_add(lifetime.as_secs() as i64)
        .min(iat.saturating_add(MAX_LIFETIME.as_secs() as i64));
    let claims = SdkClaims {
        app_key: client_id.to_owned(),
        sdk_key: client_id.to_owned(),
        mn,
        role: role.as_number(),
        iat,
        exp,
        token_exp: exp,
    };
    let jwt = encode(&claims, client_secret.expose_secret())?;
    Ok(SdkSignature {
        jwt: SecretString::from(jwt),
        expires_at: exp,
    })
}

fn parse_meeting_number(n: &str) -> Result<u64, SdkSignatureError> {
    let n = n.trim();
    if !crate::meeting_url::is_meeting_number(n) {
        return Err(SdkSignatureError::BadMeetingNumber);
    }
    n.parse().map_err(|_| SdkSignatureError::BadMeetingNumber)
}

const HEADER_JSON: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

fn encode(claims: &SdkClaims, secret: &str) -> Result<String, SdkSignatureError> {
    let payload = serde_json::to_vec(claims).map_err(|_| SdkSignatureError::Malformed)?;
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER_JSON),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = hs256(secret, signing_input.as_bytes())
        .finalize()
        .into_bytes();
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

fn hs256(secret: &str, input: &[u8]) -> HmacSha256 {
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(input);
    mac
}

/// Check a JWT's HS256 signature (in constant time) and header, and return its
/// claims. Does not judge expiry; for tests and diagnostics.
pub fn decode_and_verify(
    jwt: &str,
    client_secret: &SecretString,
) -> Result<SdkClaims, SdkSignatureError> {
    let mut parts = jwt.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SdkSignatureError::Malformed);
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| SdkSignatureError::Malformed)?;
    let signing_input = &jwt[..header.len() + 1 + payload.len()];
    hs256(client_secret.expose_secret(), signing_input.as_bytes())
        .verify_slice(&signature)
        .map_err(|_| SdkSignatureError::BadSignature)?;
    let header: serde_json::Value = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or(SdkSignatureError::Malformed)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(SdkSignatureError::Malformed);
    }
    URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or(SdkSignatureError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn signature_has_zooms_header_and_payload() {
        let sig = sign(
            "abc123",
            &secret("shhh"),
            "85746065432",
            SdkRole::Host,
            DEFAULT_LIFETIME,
            1_646_937_583,
        )
        .unwrap();
        let jwt = sig.jwt.expose_secret();
        let header = jwt.split('.').next().unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(header).unwrap(),
            br#"{"alg":"HS256","typ":"JWT"}"#
        );
        let claims = decode_and_verify(jwt, &secret("shhh")).unwrap();
        assert_eq!(
            claims,
            SdkClaims {
                app_key: "abc123".into(),
                sdk_key: "abc123".into(),
                mn: 85746065432,
                role: 1,
                iat: 1_646_937_553,
                exp: 1_646_937_583 + 7200,
                token_exp: 1_646_937_583 + 7200,
            }
        );
        assert_eq!(sig.expires_at, claims.exp);
        assert!(!jwt.contains('=') && !jwt.contains('+') && !jwt.contains('/'));
        assert!(!format!("{sig:?}").contains(jwt));
    }

    #[test]
    fn signature_matches_an_independent_hs256() {
        // Payload shape from https://developers.zoom.us/docs/meeting-sdk/auth/ ;
        // Zoom publishes no secret with its example, so the JWT was computed independently:
        //   python3 -c 'import hmac,hashlib,base64,json
        //   b=lambda x: base64.urlsafe_b64encode(x).rstrip(b"=")
        //   h=b(b"{\"alg\":\"HS256\",\"typ\":\"JWT\"}")
        //   p=b(json.dumps({"appKey":"abc123","sdkKey":"abc123","mn":123456789,"role":0,
        //       "iat":1646937553,"exp":1646944783,"tokenExp":1646944783},separators=(",",":")).encode())
        //   print((h+b"."+p+b"."+b(hmac.new(b"shhh",h+b"."+p,hashlib.sha256).digest())).decode())'
        let sig = sign(
            "abc123",
            &secret("shhh"),
            "123456789",
            SdkRole::Participant,
            DEFAULT_LIFETIME,
            1_646_937_583,
        )
        .unwrap();
        assert_eq!(sig.jwt.expose_secret(), JWT_VECTOR);
    }

    const JWT_VECTOR: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhcHBLZXkiOiJhYmMxMjMiLCJzZGtLZXkiOiJhYmMxMjMiLCJtbiI6MTIzNDU2Nzg5LCJyb2xlIjowLCJpYXQiOjE2NDY5Mzc1NTMsImV4cCI6MTY0Njk0NDc4MywidG9rZW5FeHAiOjE2NDY5NDQ3ODN9.YFnCNJr897G9-Y3Vgmxie4L0d9tzB6QDo2Etir0NgY4";

    #[test]
    fn lifetime_outside_30_minutes_to_48_hours_is_refused() {
        let s = secret("x");
        for lifetime in [
            Duration::from_secs(1799),
            Duration::from_secs(172_801),
            Duration::ZERO,
        ] {
            assert_eq!(
                sign("id", &s, "123456789", SdkRole::Participant, lifetime, 0).unwrap_err(),
                SdkSignatureError::BadLifetime
            );
        }
        for lifetime in [MIN_LIFETIME, MAX_LIFETIME] {
            assert!(sign("id", &s, "123456789", SdkRole::Participant, lifetime, 0).is_ok());
        }
    }

    #[test]
    fn token_exp_is_at_least_30_minutes_from_now() {
        // tokenExp = currentTime + 1800 at least:
        // https://devforum.zoom.us/t/jwt-expiration-clarification/65869
        let now = 1_700_000_000;
        let s = secret("x");
        let sig = sign(
            "id",
            &s,
            "123456789",
            SdkRole::Participant,
            MIN_LIFETIME,
            now,
        )
        .unwrap();
        let claims = decode_and_verify(sig.jwt.expose_secret(), &s).unwrap();
        assert!(claims.token_exp >= now + 1800, "{claims:?}");
        assert_eq!(claims.exp, claims.token_exp);
        assert_eq!(claims.iat, now - IAT_SKEW);
        // The 48-hour maximum still counts from iat.
        let sig = sign(
            "id",
            &s,
            "123456789",
            SdkRole::Participant,
            MAX_LIFETIME,
            now,
        )
        .unwrap();
        let claims = decode_and_verify(sig.jwt.expose_secret(), &s).unwrap();
        assert_eq!(claims.exp - claims.iat, 48 * 3600);
    }

    #[test]
    fn meeting_number_must_be_9_to_11_digits() {
        let s = secret("x");
        // "012345678" would sign mn 12345678: another (8-digit) meeting.
        for bad in [
            "",
            "12345678",
            "123456789012",
            "12345678a",
            "-12345678",
            "012345678",
            "00123456789",
        ] {
            assert_eq!(
                sign("id", &s, bad, SdkRole::Participant, DEFAULT_LIFETIME, 0).unwrap_err(),
                SdkSignatureError::BadMeetingNumber,
                "{bad}"
            );
        }
    }

    #[test]
    fn a_jwt_signed_with_another_secret_is_refused() {
        let sig = sign(
            "id",
            &secret("a"),
            "123456789",
            SdkRole::Host,
            DEFAULT_LIFETIME,
            0,
        )
        .unwrap();
        assert_eq!(
            decode_and_verify(sig.jwt.expose_secret(), &secret("b")),
            Err(SdkSignatureError::BadSignature)
        );
        assert_eq!(
            decode_and_verify("a.b", &secret("a")),
            Err(SdkSignatureError::Malformed)
        );
        assert_eq!(
            decode_and_verify("a.b.c.d", &secret("a")),
            Err(SdkSignatureError::Malformed)
        );
    }

    #[test]
    fn roles_map_to_zoom_numbers() {
        assert_eq!(SdkRole::from_number(0), Some(SdkRole::Participant));
        assert_eq!(SdkRole::from_number(1), Some(SdkRole::Host));
        assert_eq!(SdkRole::from_number(2), None);
    }
}
