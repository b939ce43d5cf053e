//! Signatures on what the service sends: Attendee's `X-Webhook-Signature` and the
//! Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`), over the one canonical body (sorted keys, compact,
//! non-ASCII unescaped). Outgoing webhooks and token callbacks both sign here.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Base64 HMAC-SHA256 of the concatenated `parts`: the one HMAC the service signs with.
pub fn hmac_base64(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    for part in parts {
        mac.update(part);
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The signed request a delivery sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The payload as JSON with sorted keys, no spaces, non-ASCII unescaped.
    pub body: String,
    /// `X-Webhook-Signature` (Attendee's scheme, current secret).
    pub x_webhook_signature: String,
    /// `webhook-id`: the idempotency key.
    pub webhook_id: String,
    /// `webhook-timestamp`: Unix seconds.
    pub webhook_timestamp: i64,
    /// `webhook-signature`: `v1,<current>` then, during a rotation's grace period,
    /// ` v1,<previous>`.
    pub webhook_signature: String,
}

/// Signs `payload` for sending at `timestamp` (see [`SignedRequest`]).
pub fn sign(
    current: &[u8],
    previous: Option<&[u8]>,
    webhook_id: &str,
    timestamp: i64,
    payload: &Value,
) -> SignedRequest {
    let (x_webhook_signature, body) = sign_payload(current, payload);
    let standard = |secret: &[u8]| {
        let ts = timestamp.to_string();
        format!(
            "v1,{}",
            hmac_base64(
                secret,
                &[
                    webhook_id.as_bytes(),
                    b".",
                    ts.as_bytes(),
                    b".",
                    body.as_bytes()
                ]
            )
        )
    };
    let mut webhook_signature = standard(current);
    if let Some(previous) = previous {
        webhook_signature.push(' ');
        webhook_signature.push_str(&standard(previous));
    }
    SignedRequest {
        body,
        x_webhook_signature,
        webhook_id: webhook_id.to_owned(),
        webhook_timestamp: timestamp,
        webhook_signature,
    }
}

impl SignedRequest {
    /// A POST of this body to `url` with the JSON content type and every signature
    /// header: `X-Webhook-Signature`, `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`. Deliveries and token callbacks both send this way.
    pub fn post(self, client: &reqwest::Client, url: reqwest::Url) -> reqwest::RequestBuilder {
        client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Webhook-Signature", self.x_webhook_signature)
            .header("webhook-id", self.webhook_id)
            .header("webhook-timestamp", self.webhook_timestamp.to_string())
            .header("webhook-signature", self.webhook_signature)
            .body(self.body)
    }
}

/// `X-Webhook-Signature`: base64 HMAC-SHA256 with the project's secret over the
/// payload as JSON with sorted keys, no spaces, non-ASCII unescaped (Attendee's
/// scheme). Returns the signature and the exact body it covers.
pub fn sign_payload(secret: &[u8], payload: &Value) -> (String, String) {
    let body = sorted_json(payload);
    (hmac_base64(secret, &[body.as_bytes()]), body)
}

/// `value` as compact JSON with every object's keys sorted.
pub fn sorted_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let ordered: BTreeMap<&String, Value> =
                    map.iter().map(|(k, v)| (k, sorted(v))).collect();
                let mut out = serde_json::Map::new();
                for (k, v) in ordered {
                    out.insert(k.clone(), v);
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // serde_json writes compact JSON and leaves non-ASCII unescaped; a map built in
    // sorted order keeps that order whether or not `preserve_order` is on.
    sorted(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The README's "Verifying webhooks" example, number for number.
    #[test]
    fn readme_worked_example_signs_as_documented() {
        let secret = STANDARD
            .decode("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
            .expect("base64");
        assert_eq!(secret, b"0123456789abcdef0123456789abcdef");
        // Keys deliberately out of order: the body sorts them.
        let payload = json!({
            "trigger": "zoom_oauth_connection.state_change",
            "idempotency_key": "3b241101-e2bb-4255-8caf-4136c566a962",
            "zoom_oauth_connection_id": "zoc_A1b2C3d4E5f6G7h8",
            "zoom_oauth_connection_metadata": {"team": "sales"},
            "user_id": "KdYKjnimT4KPd8FFgQt9FQ",
            "account_id": "lq0PsNSDQWuYiyd8dm9kXg",
            "data": {
                "state": "disconnected",
                "connection_failure_data": {
                    "error": "The user removed the app from their Zoom account.",
                    "code": "app_deauthorized",
                    "timestamp": "2026-01-01T00:00:00.000000Z"
                },
                "last_successful_sync_at": null,
                "last_attempted_sync_at": null
            }
        });
        let signed = sign(
            &secret,
            None,
            "3b241101-e2bb-4255-8caf-4136c566a962",
            1_767_225_600,
            &payload,
        );
        let body = r#"{"account_id":"lq0PsNSDQWuYiyd8dm9kXg","data":{"connection_failure_data":{"code":"app_deauthorized","error":"The user removed the app from their Zoom account.","timestamp":"2026-01-01T00:00:00.000000Z"},"last_attempted_sync_at":null,"last_successful_sync_at":null,"state":"disconnected"},"idempotency_key":"3b241101-e2bb-4255-8caf-4136c566a962","trigger":"zoom_oauth_connection.state_change","user_id":"KdYKjnimT4KPd8FFgQt9FQ","zoom_oauth_connection_id":"zoc_A1b2C3d4E5f6G7h8","zoom_oauth_connection_metadata":{"team":"sales"}}"#;
        assert_eq!(signed.body, body);
        assert_eq!(
            signed.x_webhook_signature,
            "RcVBxcaQa23iC/0uCMY3BS2979B4mdFR688Ymnx3mJo="
        );
        assert_eq!(
            signed.webhook_signature,
            "v1,iZY9fjt/MiC9YYynT8IOKAscGLc+XV63h8TwUltD1a4="
        );
        // The README shows exactly these values.
        let readme = include_str!("../../../../README.md");
        for shown in [
            body,
            "RcVBxcaQa23iC/0uCMY3BS2979B4mdFR688Ymnx3mJo=",
            "v1,iZY9fjt/MiC9YYynT8IOKAscGLc+XV63h8TwUltD1a4=",
            "1767225600",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ] {
            assert!(readme.contains(shown), "README lacks {shown}");
        }
    }

    #[test]
    fn signatures_cover_sorted_compact_json() {
        let payload = serde_json::json!({"z": 1, "a": {"y": "é", "b": [2, 1]}});
        let (signature, body) = sign_payload(b"secret", &payload);
        assert_eq!(body, r#"{"a":{"b":[2,1],"y":"é"},"z":1}"#);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").expect("key");
        mac.update(body.as_bytes());
        assert_eq!(signature, STANDARD.encode(mac.finalize().into_bytes()));
    }

    #[test]
    fn a_rotation_adds_the_previous_secrets_signature() {
        let payload = json!({"idempotency_key": "k", "é": "ü"});
        let one = sign(b"new", None, "k", 7, &payload);
        let two = sign(b"new", Some(b"old"), "k", 7, &payload);
        assert_eq!(one.body, "{\"idempotency_key\":\"k\",\"é\":\"ü\"}");
        assert_eq!(one.x_webhook_signature, two.x_webhook_signature);
        let (first, second) = two.webhook_signature.split_once(' ').expect("two");
        assert_eq!(first, one.webhook_signature);
        assert_eq!(
            second,
            sign(b"old", None, "k", 7, &payload).webhook_signature
        );
    }
}
