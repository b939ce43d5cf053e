//! The one table of Zoom OAuth scope names zoomkeeper relies on: for each call a
//! capability needs, the granular scope it is reported as when missing, and every
//! name Zoom accepts for it (granular, granular `:admin`, and the classic names
//! still granted to older apps). Zoom's scope reference lists these per endpoint;
//! the simulator keeps its own copy, and a test holds the two equal.

/// One scope a capability needs, and the names that grant it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// The granular name, shown to users when the scope is missing.
    pub scope: &'static str,
    /// Every name that grants it.
    pub accepted: &'static [&'static str],
}

impl Need {
    /// True when one of `granted` grants this need.
    pub fn granted_by(&self, granted: &[String]) -> bool {
        granted
            .iter()
            .any(|g| self.accepted.iter().any(|a| g.trim() == *a))
    }
}

/// `GET /users/me`.
pub const READ_USER: Need = Need {
    scope: "user:read:user",
    accepted: &[
        "user:read:user",
        "user:read:user:admin",
        "user:read",
        "user:read:admin",
    ],
};
/// `GET /users/{userId}/meetings`.
pub const LIST_MEETINGS: Need = Need {
    scope: "meeting:read:list_meetings",
    accepted: &[
        "meeting:read:list_meetings",
        "meeting:read:list_meetings:admin",
        "meeting:read",
        "meeting:read:admin",
    ],
};
/// `GET /meetings/{meetingId}/jointoken/local_recording`.
pub const LOCAL_RECORDING_TOKEN: Need = Need {
    scope: "meeting:read:local_recording_token",
    accepted: &[
        "meeting:read:local_recording_token",
        "meeting:read:local_recording_token:admin",
        "meeting_token:read:local_recording",
        "meeting_token:read:admin:local_recording",
    ],
};
/// `GET /users/me/zak`: a ZAK that lives five minutes.
pub const ZAK: Need = Need {
    scope: "user:read:zak",
    accepted: &["user:read:zak", "user:read:zak:admin", "user_zak:read"],
};
/// `GET /users/me/token?type=zak|onbehalf`: Zoom lists granular `user:read:token`
/// (`…:admin` for other users) and classic `user:read` (`user:read:admin`). The
/// ZAK scopes do not open it.
pub const USER_TOKEN: Need = Need {
    scope: "user:read:token",
    accepted: &[
        "user:read:token",
        "user:read:token:admin",
        "user:read",
        "user:read:admin",
    ],
};
/// An onbehalf token (`GET /users/me/token?type=onbehalf`).
pub const ONBEHALF_TOKEN: Need = USER_TOKEN;
/// A ZAK by either endpoint: `GET /users/me/token?type=zak` ([`USER_TOKEN`]) or
/// `GET /users/me/zak` ([`ZAK`]). Reported as `user:read:zak` when missing, the
/// scope zoomkeeper asks for.
pub const ANY_ZAK: Need = Need {
    scope: "user:read:zak",
    accepted: &[
        "user:read:zak",
        "user:read:zak:admin",
        "user_zak:read",
        "user:read:token",
        "user:read:token:admin",
        "user:read",
        "user:read:admin",
    ],
};

/// `GET /users` (an account's users): admin only.
pub const LIST_USERS_ADMIN: Need = Need {
    scope: "user:read:list_users:admin",
    accepted: &["user:read:list_users:admin", "user:read:admin"],
};
/// `GET /users/{userId}` of another user of the account.
pub const READ_USER_ADMIN: Need = Need {
    scope: "user:read:user:admin",
    accepted: &["user:read:user:admin", "user:read:admin"],
};
/// `GET /users/{userId}/meetings` of another user of the account.
pub const LIST_MEETINGS_ADMIN: Need = Need {
    scope: "meeting:read:list_meetings:admin",
    accepted: &["meeting:read:list_meetings:admin", "meeting:read:admin"],
};
/// `GET /meetings/{meetingId}/jointoken/local_recording` of any meeting of the account.
pub const LOCAL_RECORDING_TOKEN_ADMIN: Need = Need {
    scope: "meeting:read:local_recording_token:admin",
    accepted: &[
        "meeting:read:local_recording_token:admin",
        "meeting_token:read:admin:local_recording",
    ],
};
/// `GET /users/{userId}/token?type=zak|onbehalf` for another user of the account.
pub const USER_TOKEN_ADMIN: Need = Need {
    scope: "user:read:token:admin",
    accepted: &["user:read:token:admin", "user:read:admin"],
};

/// What an account-level grant needs to serve local recording for the whole
/// account: its users, each one's meetings, local recording tokens for any of them,
/// and ZAKs of any user (DESIGN.md §15).
pub const ACCOUNT_LOCAL_RECORDING: &[Need] = &[
    READ_USER_ADMIN,
    LIST_USERS_ADMIN,
    LIST_MEETINGS_ADMIN,
    LOCAL_RECORDING_TOKEN_ADMIN,
    USER_TOKEN_ADMIN,
];
/// What an account-level grant needs to mint onbehalf tokens for any user.
pub const ACCOUNT_ONBEHALF: &[Need] = &[READ_USER_ADMIN, USER_TOKEN_ADMIN];

/// What the local recording capability needs: the user, their meetings (for the
/// meeting index), the local recording token, and a ZAK.
pub const LOCAL_RECORDING: &[Need] = &[READ_USER, ANY_ZAK, LIST_MEETINGS, LOCAL_RECORDING_TOKEN];
/// What the onbehalf capability needs.
pub const ONBEHALF: &[Need] = &[READ_USER, ONBEHALF_TOKEN];

/// Where to mint a ZAK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZakEndpoint {
    /// `GET /users/me/token?type=zak`: needs [`USER_TOKEN`]; the lifetime is chosen.
    UserToken,
    /// `GET /users/me/zak`: needs [`ZAK`]; the ZAK lives five minutes.
    MeZak,
}

/// The ZAK endpoint `granted` opens: `type=zak` when the grant covers it (its ZAK's
/// lifetime is ours to choose), else `/users/me/zak` (also when neither is granted:
/// Zoom then names the missing scope).
pub fn zak_endpoint(granted: &[String]) -> ZakEndpoint {
    if USER_TOKEN.granted_by(granted) {
        ZakEndpoint::UserToken
    } else {
        ZakEndpoint::MeZak
    }
}

/// The granular names of the scopes the capabilities asked for need and `granted`
/// lacks, each once, in a stable order.
pub fn missing(granted: &[String], local_recording: bool, onbehalf: bool) -> Vec<&'static str> {
    missing_of(
        granted,
        local_recording.then_some(LOCAL_RECORDING),
        onbehalf.then_some(ONBEHALF),
    )
}

/// [`missing`] for an account-level grant: the `:admin` scopes of
/// [`ACCOUNT_LOCAL_RECORDING`] and [`ACCOUNT_ONBEHALF`].
pub fn missing_for_account(
    granted: &[String],
    local_recording: bool,
    onbehalf: bool,
) -> Vec<&'static str> {
    missing_of(
        granted,
        local_recording.then_some(ACCOUNT_LOCAL_RECORDING),
        onbehalf.then_some(ACCOUNT_ONBEHALF),
    )
}

fn missing_of(
    granted: &[String],
    local_recording: Option<&[Need]>,
    onbehalf: Option<&[Need]>,
) -> Vec<&'static str> {
    let mut needs: Vec<Need> = Vec::new();
    needs.extend(local_recording.unwrap_or_default());
    needs.extend(onbehalf.unwrap_or_default());
    let mut missing: Vec<&'static str> = Vec::new();
    for need in needs {
        if !need.granted_by(granted) && !missing.contains(&need.scope) {
            missing.push(need.scope);
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn granular_scopes_cover_both_capabilities() {
        let all = scopes(&[
            "user:read:user",
            "user:read:zak",
            "meeting:read:list_meetings",
            "meeting:read:local_recording_token",
            "user:read:token",
        ]);
        assert!(missing(&all, true, true).is_empty());
    }

    #[test]
    fn an_account_grant_needs_the_admin_scopes() {
        let user_level = scopes(&[
            "user:read:user",
            "user:read:zak",
            "meeting:read:list_meetings",
            "meeting:read:local_recording_token",
            "user:read:token",
        ]);
        assert_eq!(
            missing_for_account(&user_level, true, true),
            vec![
                "user:read:user:admin",
                "user:read:list_users:admin",
                "meeting:read:list_meetings:admin",
                "meeting:read:local_recording_token:admin",
                "user:read:token:admin",
            ]
        );
        let granular = scopes(&[
            "user:read:user:admin",
            "user:read:list_users:admin",
            "meeting:read:list_meetings:admin",
            "meeting:read:local_recording_token:admin",
            "user:read:token:admin",
        ]);
        assert!(missing_for_account(&granular, true, true).is_empty());
        let classic = scopes(&[
            "user:read:admin",
            "meeting:read:admin",
            "meeting_token:read:admin:local_recording",
        ]);
        assert!(missing_for_account(&classic, true, true).is_empty());
        assert_eq!(
            missing_for_account(&scopes(&["user:read:admin"]), true, false),
            vec![
                "meeting:read:list_meetings:admin",
                "meeting:read:local_recording_token:admin"
            ]
        );
        assert!(missing_for_account(&scopes(&["user:read:admin"]), false, true).is_empty());
    }

    #[test]
    fn classic_and_admin_names_count_as_their_granular_scope() {
        let classic = scopes(&[
            "user:read",
            "user_zak:read",
            "meeting:read",
            "meeting_token:read:local_recording",
        ]);
        assert!(missing(&classic, true, false).is_empty());
        // Classic `user:read` opens `/users/me/token`, so onbehalf too (Zoom's "Get a
        // user's token" lists `user:read`).
        assert!(missing(&classic, false, true).is_empty());
        let admin = scopes(&["user:read:user:admin", "user:read:token:admin"]);
        assert!(missing(&admin, false, true).is_empty());
        // The classic admin name of the local recording token puts `admin` inside.
        let classic_admin = scopes(&[
            "user:read:admin",
            "meeting:read:admin",
            "meeting_token:read:admin:local_recording",
        ]);
        assert!(missing(&classic_admin, true, true).is_empty());
        // The ZAK scopes do not open `/users/me/token`.
        let zak_only = scopes(&["user:read:user", "user:read:zak"]);
        assert_eq!(missing(&zak_only, false, true), vec!["user:read:token"]);
    }

    #[test]
    fn a_zak_is_minted_where_the_grant_allows() {
        // The local recording scope set zoomkeeper asks for has user:read:zak only.
        let local = scopes(&[
            "user:read:user",
            "user:read:zak",
            "meeting:read:list_meetings",
            "meeting:read:local_recording_token",
        ]);
        assert_eq!(zak_endpoint(&local), ZakEndpoint::MeZak);
        assert_eq!(
            zak_endpoint(&scopes(&["user_zak:read"])),
            ZakEndpoint::MeZak
        );
        for token_scope in ["user:read:token", "user:read", "user:read:token:admin"] {
            let both = scopes(&["user:read:zak", token_scope]);
            assert_eq!(zak_endpoint(&both), ZakEndpoint::UserToken, "{token_scope}");
        }
        // A grant with only user:read:token still covers the ZAK need.
        let token_only = scopes(&[
            "user:read:user",
            "user:read:token",
            "meeting:read:list_meetings",
            "meeting:read:local_recording_token",
        ]);
        assert!(missing(&token_only, true, true).is_empty());
    }

    #[test]
    fn missing_scopes_are_named_once_in_order() {
        let some = scopes(&["meeting:read:list_meetings"]);
        assert_eq!(
            missing(&some, true, true),
            vec![
                "user:read:user",
                "user:read:zak",
                "meeting:read:local_recording_token",
                "user:read:token"
            ]
        );
    }
}
