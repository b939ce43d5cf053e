//! Object ids: a type prefix plus 16 random alphanumerics (DESIGN.md §3).

use rand::distributions::Alphanumeric;
use rand::Rng;

/// The kinds of object that carry a public id, with their prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Project,
    ApiKey,
    App,
    Connection,
    WebhookSubscription,
    BotPlatform,
    BotPlatformCall,
    ConnectSession,
    Operator,
}

impl IdKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            IdKind::Project => "prj_",
            IdKind::ApiKey => "key_",
            IdKind::App => "zoa_",
            IdKind::Connection => "zoc_",
            IdKind::WebhookSubscription => "webhook_",
            IdKind::BotPlatform => "bpl_",
            IdKind::BotPlatformCall => "bpc_",
            IdKind::ConnectSession => "zcs_",
            IdKind::Operator => "opr_",
        }
    }

    /// A new random id of this kind.
    pub fn generate(self) -> String {
        let suffix: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(16)
            .map(char::from)
            .collect();
        format!("{}{}", self.prefix(), suffix)
    }

    /// Whether `id` has this kind's shape. Callers answer 404 for ids that do not,
    /// exactly as for ids that do not exist.
    pub fn matches(self, id: &str) -> bool {
        id.strip_prefix(self.prefix())
            .is_some_and(|rest| rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
    }
}

/// The 62 characters of an id's random part, in value order.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Bits of a UUID's payload (128 minus the version's 4 and the variant's 2).
const UUID_PAYLOAD_BITS: u32 = 122;
/// Where the kind's tag sits in the payload: its top 8 bits.
const UUID_TAG_SHIFT: u32 = UUID_PAYLOAD_BITS - 8;

impl IdKind {
    /// The tag a UUID of this kind carries in its first byte; only the kinds the
    /// Recall-compatible API names by UUID have one.
    const fn uuid_tag(self) -> Option<u8> {
        match self {
            IdKind::App => Some(0xa1),
            IdKind::Connection => Some(0xc1),
            _ => None,
        }
    }

    /// The UUID under which `/api/v2` shows the object with id `id` (which must
    /// match this kind). The mapping is a bijection, computed, never stored: the
    /// random part (16 base-62 digits, under 2^96) and the kind's tag fill a
    /// version-8 UUID (RFC 9562 §5.8), so every object has one stable UUID from the
    /// moment it exists, whichever API created it.
    pub fn to_uuid(self, id: &str) -> Option<uuid::Uuid> {
        let tag = self.uuid_tag()?;
        if !self.matches(id) {
            return None;
        }
        let value = id[self.prefix().len()..]
            .bytes()
            .try_fold(0u128, |acc, b| {
                let digit = BASE62.iter().position(|&c| c == b)?;
                Some(acc * 62 + digit as u128)
            })?;
        let payload = (u128::from(tag) << UUID_TAG_SHIFT) | value;
        // Spread the payload around the version (bits 76–79) and variant (62–63).
        let bits = ((payload >> 74) << 80)
            | (0x8 << 76)
            | (((payload >> 62) & 0xfff) << 64)
            | (0b10 << 62)
            | (payload & ((1 << 62) - 1));
        Some(uuid::Uuid::from_u128(bits))
    }

    /// The id `uuid` stands for, when it is a UUID of this kind made by
    /// [`IdKind::to_uuid`]; `None` for any other UUID.
    pub fn from_uuid(self, uuid: uuid::Uuid) -> Option<String> {
        let tag = self.uuid_tag()?;
        let bits = uuid.as_u128();
        if (bits >> 76) & 0xf != 0x8 || (bits >> 62) & 0b11 != 0b10 {
            return None;
        }
        let payload =
            ((bits >> 80) << 74) | (((bits >> 64) & 0xfff) << 62) | (bits & ((1 << 62) - 1));
        if payload >> UUID_TAG_SHIFT != u128::from(tag) {
            return None;
        }
        let mut value = payload & ((1 << UUID_TAG_SHIFT) - 1);
        let mut digits = [0u8; 16];
        for digit in digits.iter_mut().rev() {
            *digit = BASE62[(value % 62) as usize];
            value /= 62;
        }
        // A value of more than 16 digits was not made from an id.
        if value != 0 {
            return None;
        }
        Some(format!(
            "{}{}",
            self.prefix(),
            String::from_utf8_lossy(&digits)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_their_uuids_map_both_ways() {
        for _ in 0..1000 {
            for kind in [IdKind::App, IdKind::Connection] {
                let id = kind.generate();
                let uuid = kind.to_uuid(&id).expect("a UUID");
                assert_eq!(uuid.get_version_num(), 8, "{uuid}");
                assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{uuid}");
                assert_eq!(kind.from_uuid(uuid).as_deref(), Some(id.as_str()));
            }
        }
        let lowest = IdKind::App.to_uuid("zoa_0000000000000000").expect("a UUID");
        let highest = IdKind::App.to_uuid("zoa_zzzzzzzzzzzzzzzz").expect("a UUID");
        assert_eq!(lowest.to_string(), "a1000000-0000-8000-8000-000000000000");
        assert_eq!(
            IdKind::App.from_uuid(highest).as_deref(),
            Some("zoa_zzzzzzzzzzzzzzzz")
        );
    }

    #[test]
    fn a_uuid_names_one_kind_only() {
        let app = IdKind::App.generate();
        let uuid = IdKind::App.to_uuid(&app).expect("a UUID");
        assert_eq!(IdKind::Connection.from_uuid(uuid), None);
        assert_eq!(IdKind::App.to_uuid("zoc_0000000000000000"), None);
        assert_eq!(IdKind::Project.to_uuid(&IdKind::Project.generate()), None);
        // Random (version 4) UUIDs, and version-8 ones past 16 digits, name nothing.
        assert_eq!(IdKind::App.from_uuid(uuid::Uuid::new_v4()), None);
        let too_big = uuid::Uuid::parse_str("a1ffffff-ffff-8fff-bfff-ffffffffffff").expect("uuid");
        assert_eq!(IdKind::App.from_uuid(too_big), None);
    }

    #[test]
    fn generated_ids_match_their_kind_only() {
        let id = IdKind::App.generate();
        assert!(id.starts_with("zoa_") && id.len() == 20);
        assert!(IdKind::App.matches(&id));
        assert!(!IdKind::Connection.matches(&id));
        assert!(!IdKind::App.matches("zoa_short"));
        assert!(!IdKind::App.matches("zoa_0123456789abcde!"));
    }
}
