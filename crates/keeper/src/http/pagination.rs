//! Cursor pagination (`?cursor=&page_size=`), newest first, with absolute
//! `next`/`previous` links. A cursor is opaque to clients: URL-safe base64 of
//! `list|direction|created_at µs|id` plus a 4-byte checksum, so a garbled or edited
//! cursor, or one taken from another list, is refused (400 `invalid_cursor`) rather
//! than silently misread — and its id is checked to have the shape the list's sort
//! key needs before any query sees it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use crate::storage::{Cursor, Direction, Page, PageRequest};

pub const DEFAULT_PAGE_SIZE: u32 = 25;
pub const MAX_PAGE_SIZE: u32 = 100;
const CHECKSUM_LEN: usize = 4;

/// Which list a cursor belongs to. Its tag is part of the cursor, and its id rule
/// is checked when a cursor is read, so a cursor can only page the list that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Apps,
    Connections,
    ConnectionEvents,
    Meetings,
    Webhooks,
    WebhookDeliveries,
    BotPlatforms,
    BotPlatformCalls,
    ConnectSessions,
    AppEvents,
}

impl List {
    fn tag(self) -> &'static str {
        match self {
            List::Apps => "apps",
            List::Connections => "connections",
            List::ConnectionEvents => "connection_events",
            List::Meetings => "meetings",
            List::Webhooks => "webhooks",
            List::WebhookDeliveries => "webhook_deliveries",
            List::BotPlatforms => "bot_platforms",
            List::BotPlatformCalls => "bot_platform_calls",
            List::ConnectSessions => "connect_sessions",
            List::AppEvents => "app_events",
        }
    }

    /// Whether `id` is a sort key this list's query can take.
    fn accepts_id(self, id: &str) -> bool {
        let word =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match self {
            List::Apps
            | List::Connections
            | List::Webhooks
            | List::BotPlatforms
            | List::BotPlatformCalls
            | List::ConnectSessions => word(id),
            List::ConnectionEvents | List::AppEvents => {
                crate::storage::connections::parse_event_cursor_id(id).is_some()
            }
            List::Meetings => crate::storage::meetings::parse_meeting_cursor_id(id).is_some(),
            // Idempotency keys: hyphenated UUIDs.
            List::WebhookDeliveries => {
                !id.is_empty()
                    && id.len() <= 64
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }
        }
    }
}

fn invalid_cursor() -> ApiError {
    ApiError::BadRequest {
        code: "invalid_cursor",
        message:
            "The cursor is not valid. Use the next or previous link of a list response as it is."
                .to_owned(),
    }
}

/// Query parameters of every list endpoint. Kept as text so a bad value gets our
/// own message.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Opaque cursor from a previous page's `next` or `previous` link.
    pub cursor: Option<String>,
    /// Items per page, 1 to 100 (default 25).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub page_size: Option<String>,
}

impl ListParams {
    /// The page asked for in `list`; a cursor made by another list is refused.
    pub fn page_request(&self, list: List) -> Result<PageRequest, ApiError> {
        let limit = match self.page_size.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_PAGE_SIZE,
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
                _ => {
                    return Err(ApiError::field(
                        "page_size",
                        format!("Must be a whole number from 1 to {MAX_PAGE_SIZE}."),
                    ))
                }
            },
        };
        let cursor = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(text) => Some(decode_cursor(list, text).ok_or_else(invalid_cursor)?),
        };
        Ok(PageRequest { cursor, limit })
    }
}

fn checksum(payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let digest = Sha256::digest(payload);
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&digest[..CHECKSUM_LEN]);
    out
}

pub fn encode_cursor(list: List, cursor: &Cursor) -> String {
    let direction = match cursor.direction {
        Direction::Older => 'o',
        Direction::Newer => 'n',
    };
    let payload = format!(
        "{}|{direction}|{}|{}",
        list.tag(),
        cursor.created_at.timestamp_micros(),
        cursor.id
    );
    let mut bytes = payload.into_bytes();
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn decode_cursor(list: List, text: &str) -> Option<Cursor> {
    let bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
    if bytes.len() <= CHECKSUM_LEN {
        return None;
    }
    let (payload, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if checksum(payload) != sum {
        return None;
    }
    let payload = std::str::from_utf8(payload).ok()?;
    let mut parts = payload.splitn(4, '|');
    if parts.next()? != list.tag() {
        return None;
    }
    let direction = match parts.next()? {
        "o" => Direction::Older,
        "n" => Direction::Newer,
        _ => return None,
    };
    let created_at = DateTime::<Utc>::from_timestamp_micros(parts.next()?.parse().ok()?)?;
    let id = parts.next()?;
    if !list.accepts_id(id) {
        return None;
    }
    Some(Cursor {
        created_at,
        id: id.to_owned(),
        direction,
    })
}

/// The link to the page of `list` (at `list_url`, possibly with a query of filters)
/// that goes from the row at `position` in `direction`, `limit` rows long.
pub fn page_link(
    list: List,
    list_url: &str,
    limit: u32,
    (created_at, id): (DateTime<Utc>, String),
    direction: Direction,
) -> String {
    let cursor = encode_cursor(
        list,
        &Cursor {
            created_at,
            id,
            direction,
        },
    );
    let separator = if list_url.contains('?') { '&' } else { '?' };
    format!("{list_url}{separator}cursor={cursor}&page_size={limit}")
}

/// `next` and `previous` links for a page served for `request`. `list_url` is the
/// absolute URL of the list, possibly with a query of filters (kept in the links);
/// `position` gives an item's sort key.
fn links<T>(
    list: List,
    list_url: &str,
    request: &PageRequest,
    page: &Page<T>,
    position: impl Fn(&T) -> (DateTime<Utc>, String),
) -> (Option<String>, Option<String>) {
    let link = |item: &T, direction: Direction| {
        page_link(list, list_url, request.limit, position(item), direction)
    };
    let (Some(first), Some(last)) = (page.items.first(), page.items.last()) else {
        return (None, None);
    };
    match request.cursor.as_ref().map(|c| c.direction) {
        None => (page.has_more.then(|| link(last, Direction::Older)), None),
        Some(Direction::Older) => (
            page.has_more.then(|| link(last, Direction::Older)),
            Some(link(first, Direction::Newer)),
        ),
        Some(Direction::Newer) => (
            Some(link(last, Direction::Older)),
            page.has_more.then(|| link(first, Direction::Newer)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_tampering() {
        let c = Cursor {
            created_at: DateTime::<Utc>::from_timestamp_micros(1_700_000_000_123_456)
                .expect("valid time"),
            id: "zoa_abcdefghijklmnop".to_owned(),
            direction: Direction::Newer,
        };
        let text = encode_cursor(List::Apps, &c);
        assert_eq!(decode_cursor(List::Apps, &text), Some(c));
        let mut chars: Vec<char> = text.chars().collect();
        chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert_eq!(decode_cursor(List::Apps, &tampered), None);
        assert_eq!(decode_cursor(List::Apps, "not a cursor!"), None);
        assert_eq!(decode_cursor(List::Apps, ""), None);
    }

    #[test]
    fn delivery_cursors_carry_hyphenated_keys() {
        let c = Cursor {
            created_at: DateTime::<Utc>::from_timestamp_micros(1_700_000_000_123_456)
                .expect("valid time"),
            id: "0b6f1c2e-8f1d-4c3a-9a57-1f0e2d3c4b5a".to_owned(),
            direction: Direction::Older,
        };
        let text = encode_cursor(List::WebhookDeliveries, &c);
        assert_eq!(decode_cursor(List::WebhookDeliveries, &text), Some(c));
    }

    #[test]
    fn a_cursor_only_pages_its_own_list() {
        let c = Cursor {
            created_at: Utc::now(),
            id: "zoc_abcdefghijklmnop".to_owned(),
            direction: Direction::Older,
        };
        let text = encode_cursor(List::Connections, &c);
        for other in [
            List::Apps,
            List::ConnectionEvents,
            List::Meetings,
            List::Webhooks,
            List::WebhookDeliveries,
            List::ConnectSessions,
        ] {
            assert_eq!(decode_cursor(other, &text), None, "{other:?}");
        }
        // Even with the right tag, an id the list cannot sort by is refused.
        for (list, id) in [
            (List::ConnectionEvents, "zoc_x"),
            (List::Meetings, "nounderscore"),
        ] {
            let text = encode_cursor(
                list,
                &Cursor {
                    id: id.to_owned(),
                    ..c.clone()
                },
            );
            assert_eq!(decode_cursor(list, &text), None, "{list:?}");
        }
    }

    #[test]
    fn page_size_is_checked() {
        let p = |s: &str| ListParams {
            cursor: None,
            page_size: Some(s.to_owned()),
        };
        assert_eq!(p("100").page_request(List::Apps).expect("valid").limit, 100);
        for bad in ["0", "101", "-1", "ten", "1.5"] {
            assert!(p(bad).page_request(List::Apps).is_err(), "{bad}");
        }
        assert_eq!(
            ListParams::default()
                .page_request(List::Apps)
                .expect("valid")
                .limit,
            25
        );
    }
}

/// One page of a list, newest first: the answer of every list endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListPage<T> {
    /// Link to the next (older) page, or null.
    #[schema(required = true, format = "uri")]
    pub next: Option<String>,
    /// Link to the previous (newer) page, or null.
    #[schema(required = true, format = "uri")]
    pub previous: Option<String>,
    pub results: Vec<T>,
}

impl<T> ListPage<T> {
    /// `page` (served for `request` from the list at `list_url`) with its links;
    /// `position` gives a row's sort key and `show` its representation.
    pub fn of<R>(
        list: List,
        list_url: &str,
        request: &PageRequest,
        page: &Page<R>,
        position: impl Fn(&R) -> (DateTime<Utc>, String),
        show: impl Fn(&R) -> T,
    ) -> ListPage<T> {
        let (next, previous) = links(list, list_url, request, page, position);
        ListPage {
            next,
            previous,
            results: page.items.iter().map(show).collect(),
        }
    }
}
