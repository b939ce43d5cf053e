//! Cursor pagination (`?cursor=&page_size=`), newest first, with absolute
//! `next`/`previous` links. A cursor is opaque to clients: URL-safe base64 of
//! `direction|created_at µs|id` plus a 4-byte checksum, so a garbled or edited
//! cursor is refused (400 `invalid_cursor`) rather than silently misread.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;

use super::error::ApiError;
use crate::storage::{Cursor, Direction, Page, PageRequest};

pub const DEFAULT_PAGE_SIZE: u32 = 25;
pub const MAX_PAGE_SIZE: u32 = 100;
const CHECKSUM_LEN: usize = 4;

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
    pub fn page_request(&self) -> Result<PageRequest, ApiError> {
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
            Some(text) => Some(decode_cursor(text).ok_or_else(|| ApiError::BadRequest {
                code: "invalid_cursor",
                message: "The cursor is not valid. Use the next or previous link of a list response as it is.".to_owned(),
            })?),
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

pub fn encode_cursor(cursor: &Cursor) -> String {
    let direction = match cursor.direction {
        Direction::Older => 'o',
        Direction::Newer => 'n',
    };
    let payload = format!(
        "{direction}|{}|{}",
        cursor.created_at.timestamp_micros(),
        cursor.id
    );
    let mut bytes = payload.into_bytes();
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn decode_cursor(text: &str) -> Option<Cursor> {
    let bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
    if bytes.len() <= CHECKSUM_LEN {
        return None;
    }
    let (payload, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if checksum(payload) != sum {
        return None;
    }
    let payload = std::str::from_utf8(payload).ok()?;
    let mut parts = payload.splitn(3, '|');
    let direction = match parts.next()? {
        "o" => Direction::Older,
        "n" => Direction::Newer,
        _ => return None,
    };
    let created_at = DateTime::<Utc>::from_timestamp_micros(parts.next()?.parse().ok()?)?;
    let id = parts.next()?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    Some(Cursor {
        created_at,
        id: id.to_owned(),
        direction,
    })
}

/// `next` and `previous` links for a page served for `request`. `list_url` is the
/// absolute URL of the list, possibly with a query of filters (kept in the links);
/// `position` gives an item's sort key.
pub fn links<T>(
    list_url: &str,
    request: &PageRequest,
    page: &Page<T>,
    position: impl Fn(&T) -> (DateTime<Utc>, String),
) -> (Option<String>, Option<String>) {
    let link = |item: &T, direction: Direction| {
        let (created_at, id) = position(item);
        let cursor = encode_cursor(&Cursor {
            created_at,
            id,
            direction,
        });
        let separator = if list_url.contains('?') { '&' } else { '?' };
        format!(
            "{list_url}{separator}cursor={cursor}&page_size={}",
            request.limit
        )
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
        let text = encode_cursor(&c);
        assert_eq!(decode_cursor(&text), Some(c));
        let mut chars: Vec<char> = text.chars().collect();
        chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert_eq!(decode_cursor(&tampered), None);
        assert_eq!(decode_cursor("not a cursor!"), None);
        assert_eq!(decode_cursor(""), None);
    }

    #[test]
    fn page_size_is_checked() {
        let p = |s: &str| ListParams {
            cursor: None,
            page_size: Some(s.to_owned()),
        };
        assert_eq!(p("100").page_request().expect("valid").limit, 100);
        for bad in ["0", "101", "-1", "ten", "1.5"] {
            assert!(p(bad).page_request().is_err(), "{bad}");
        }
        assert_eq!(
            ListParams::default().page_request().expect("valid").limit,
            25
        );
    }
}
