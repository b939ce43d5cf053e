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

#[cfg(test)]
mod tests {
    use super::*;

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
