//! Reading a Zoom meeting link: which meeting, its passcode and registrant token.
//!
//! Conservative on purpose (DESIGN.md §5): only Zoom's own hosts and the link
//! shapes Zoom produces are accepted; anything else is refused with a reason,
//! never guessed at. A start link's `zak` is never kept, and no error quotes the
//! query string.

use url::{Host, Url};

/// Longest input we look at; real links are well under 500 characters.
pub const MAX_URL_LEN: usize = 2048;

/// The meeting a link points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeetingId {
    /// A meeting number, 9 to 11 digits.
    Number(String),
    /// A personal link name from `/my/{vanity}` (lowercased); resolve it through
    /// the connections' `personal_meeting_url`.
    Vanity(String),
}

/// A parsed meeting link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingLink {
    pub meeting_id: MeetingId,
    /// `pwd`: the (encoded) passcode.
    pub password: Option<String>,
    /// `tk`: the registrant token.
    pub registrant_token: Option<String>,
    /// `uname`: the display name the link suggests.
    pub display_name: Option<String>,
    /// The Zoom host, lowercased, e.g. `us02web.zoom.us`.
    pub host: String,
}

impl MeetingLink {
    /// The meeting number, unless the link is a vanity link.
    pub fn meeting_number(&self) -> Option<&str> {
        match &self.meeting_id {
            MeetingId::Number(n) => Some(n),
            MeetingId::Vanity(_) => None,
        }
    }
}

/// Why a link was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeetingUrlError {
    #[error("the meeting URL is empty")]
    Empty,
    #[error("the meeting URL is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("the meeting URL is not a URL (it must start with https://)")]
    NotAUrl,
    #[error("the meeting URL uses the scheme {0:?}; only https, http, zoommtg and zoomus are Zoom links")]
    UnsupportedScheme(String),
    #[error("the meeting URL carries a user name or password before the host")]
    UserInfo,
    #[error("the meeting URL names a port; Zoom links never do")]
    UnexpectedPort,
    #[error("{0:?} is not a Zoom host (zoom.us, zoom.com, zoomgov.com or their subdomains)")]
    NotZoomHost(String),
    #[error("the meeting URL's path is not a Zoom meeting link (/j/, /s/, /w/, /wc/, /my/)")]
    UnsupportedPath,
    #[error("the meeting URL has no meeting number")]
    MissingMeetingNumber,
    #[error("the meeting number must be 9 to 11 digits")]
    BadMeetingNumber,
    #[error("the personal link name is not valid")]
    BadVanity,
    /// A kept query value (`pwd`, `tk`, `uname`, `confno`) holds a line break or
    /// another control character, or is far longer than Zoom makes them. Only the
    /// parameter's name is shown, never its value.
    #[error("the meeting URL's {0} parameter is not valid")]
    BadParameter(&'static str),
}

/// Parse a meeting link in any of the forms Zoom produces.
pub fn parse(input: &str) -> Result<MeetingLink, MeetingUrlError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(MeetingUrlError::Empty);
    }
    if input.len() > MAX_URL_LEN {
        return Err(MeetingUrlError::TooLong);
    }
    if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(MeetingUrlError::NotAUrl);
    }
    let url = Url::parse(input).map_err(|_| MeetingUrlError::NotAUrl)?;
    let scheme = url.scheme();
    let app_link = match scheme {
        "https" | "http" => false,
        "zoommtg" | "zoomus" => true,
        other => {
            let shown: String = other.chars().take(20).collect();
            return Err(MeetingUrlError::UnsupportedScheme(shown));
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(MeetingUrlError::UserInfo);
    }
    if url.port().is_some() {
        return Err(MeetingUrlError::UnexpectedPort);
    }
    let host = zoom_host(&url)?;
    let query = Query::read(&url)?;

    let segments: Vec<&str> = url
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();

    let meeting_id = if app_link {
        match segments.as_slice() {
            ["join"] | ["start"] => MeetingId::Number(meeting_number(query.confno.as_deref())?),
            _ => return Err(MeetingUrlError::UnsupportedPath),
        }
    } else {
        match segments.as_slice() {
            ["j" | "s" | "w", rest @ ..] => MeetingId::Number(single_number(rest)?),
            ["wc", "join", rest @ ..] => MeetingId::Number(single_number(rest)?),
            ["wc", n, "join" | "start"] => MeetingId::Number(meeting_number(Some(n))?),
            ["my", rest @ ..] => MeetingId::Vanity(vanity(rest)?),
            [] => return Err(MeetingUrlError::MissingMeetingNumber),
            _ => return Err(MeetingUrlError::UnsupportedPath),
        }
    };

    Ok(MeetingLink {
        meeting_id,
        password: query.pwd,
        registrant_token: query.tk,
        display_name: query.uname,
        host,
    })
}

const ZOOM_DOMAINS: [&str; 3] = ["zoom.us", "zoom.com", "zoomgov.com"];

/// The host, if it is a Zoom domain or a subdomain of one (label boundaries
/// matter: `evilzoom.us` and `zoom.us.evil.com` are not Zoom).
fn zoom_host(url: &Url) -> Result<String, MeetingUrlError> {
    let host = match url.host() {
        Some(Host::Domain(d)) => d.to_ascii_lowercase(),
        Some(Host::Ipv4(ip)) => return Err(MeetingUrlError::NotZoomHost(ip.to_string())),
        Some(Host::Ipv6(ip)) => return Err(MeetingUrlError::NotZoomHost(ip.to_string())),
        None => return Err(MeetingUrlError::NotAUrl),
    };
    let shown = || MeetingUrlError::NotZoomHost(host.chars().take(100).collect());
    let is_zoom = ZOOM_DOMAINS.iter().any(|domain| {
        host == *domain
            || host
                .strip_suffix(domain)
                .and_then(|prefix| prefix.strip_suffix('.'))
                .is_some_and(valid_subdomain)
    });
    if is_zoom {
        Ok(host)
    } else {
        Err(shown())
    }
}

/// `us02web`, `acme`, `acme.eu` — DNS labels of letters, digits and inner dashes.
fn valid_subdomain(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A Zoom meeting number: 9 to 11 digits, the first not 0. Zoom's numbers never
/// start with 0, and `0123456789` would never match the number Zoom sends in
/// JSON, so it is refused rather than guessed at.
pub fn is_meeting_number(n: &str) -> bool {
    (9..=11).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0')
}

fn single_number(rest: &[&str]) -> Result<String, MeetingUrlError> {
    match rest {
        [n] => meeting_number(Some(n)),
        [] => Err(MeetingUrlError::MissingMeetingNumber),
        _ => Err(MeetingUrlError::UnsupportedPath),
    }
}

fn meeting_number(candidate: Option<&str>) -> Result<String, MeetingUrlError> {
    let n = candidate
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or(MeetingUrlError::MissingMeetingNumber)?;
    if is_meeting_number(n) {
        Ok(n.to_owned())
    } else {
        Err(MeetingUrlError::BadMeetingNumber)
    }
}

fn vanity(rest: &[&str]) -> Result<String, MeetingUrlError> {
    let [name] = rest else {
        return Err(if rest.is_empty() {
            MeetingUrlError::BadVanity
        } else {
            MeetingUrlError::UnsupportedPath
        });
    };
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(MeetingUrlError::BadVanity)
    }
}

/// The query parameters we keep; `zak` and everything else is dropped unread.
#[derive(Default)]
struct Query {
    pwd: Option<String>,
    tk: Option<String>,
    uname: Option<String>,
    confno: Option<String>,
}

/// Longest query value we keep (passcodes and registrant tokens are short).
const MAX_PARAM_LEN: usize = 512;

impl Query {
    fn read(url: &Url) -> Result<Self, MeetingUrlError> {
        let mut q = Query::default();
        for (key, value) in url.query_pairs() {
            let (name, slot) = match key.as_ref() {
                "pwd" => ("pwd", &mut q.pwd),
                "tk" => ("tk", &mut q.tk),
                "uname" => ("uname", &mut q.uname),
                "confno" => ("confno", &mut q.confno),
                _ => continue,
            };
            // The first non-empty value wins; later repeats are ignored.
            if slot.is_some() {
                continue;
            }
            // Checked before trimming: `%0D%0A` around a value is an injection
            // attempt, not padding to strip.
            if value.len() > MAX_PARAM_LEN || value.chars().any(breaks_a_line) {
                return Err(MeetingUrlError::BadParameter(name));
            }
            let value = value.trim();
            if !value.is_empty() {
                *slot = Some(value.to_owned());
            }
        }
        Ok(q)
    }
}

/// Control characters, and the Unicode line and paragraph separators.
fn breaks_a_line(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use MeetingUrlError as E;

    fn number(n: &str, pwd: Option<&str>, host: &str) -> Result<MeetingLink, MeetingUrlError> {
        Ok(MeetingLink {
            meeting_id: MeetingId::Number(n.into()),
            password: pwd.map(Into::into),
            registrant_token: None,
            display_name: None,
            host: host.into(),
        })
    }

    fn vanity_link(name: &str, host: &str) -> Result<MeetingLink, MeetingUrlError> {
        Ok(MeetingLink {
            meeting_id: MeetingId::Vanity(name.into()),
            password: None,
            registrant_token: None,
            display_name: None,
            host: host.into(),
        })
    }

    fn with(
        mut link: Result<MeetingLink, MeetingUrlError>,
        tk: Option<&str>,
        uname: Option<&str>,
    ) -> Result<MeetingLink, MeetingUrlError> {
        if let Ok(l) = link.as_mut() {
            l.registrant_token = tk.map(Into::into);
            l.display_name = uname.map(Into::into);
        }
        link
    }

    #[test]
    fn real_world_links_table() {
        let long = format!(
            "https://zoom.us/j/123456789?pwd={}",
            "a".repeat(MAX_URL_LEN)
        );
        let long_pwd = format!(
            "https://zoom.us/j/123456789?pwd={}",
            "a".repeat(MAX_PARAM_LEN + 1)
        );
        let cases: Vec<(&str, Result<MeetingLink, MeetingUrlError>)> = vec![
            // Join links, with and without passcode, on the hosts Zoom uses.
            (
                "https://zoom.us/j/85746065432",
                number("85746065432", None, "zoom.us"),
            ),
            (
                "https://zoom.us/j/85746065432?pwd=VXpFaWtQbjVKS2dBRDhxSm9vWW1uZz09",
                number(
                    "85746065432",
                    Some("VXpFaWtQbjVKS2dBRDhxSm9vWW1uZz09"),
                    "zoom.us",
                ),
            ),
            (
                "https://us02web.zoom.us/j/85746065432?pwd=aBcD1234efGh.1",
                number("85746065432", Some("aBcD1234efGh.1"), "us02web.zoom.us"),
            ),
            (
                "https://us06web.zoom.us/j/8574606543?pwd=abc&from=addon",
                number("8574606543", Some("abc"), "us06web.zoom.us"),
            ),
            (
                "https://acme.zoom.us/j/123456789",
                number("123456789", None, "acme.zoom.us"),
            ),
            (
                "https://zoom.com/j/85746065432",
                number("85746065432", None, "zoom.com"),
            ),
            (
                "https://app.zoom.com/j/85746065432",
                number("85746065432", None, "app.zoom.com"),
            ),
            (
                "https://zoomgov.com/j/1612345678",
                number("1612345678", None, "zoomgov.com"),
            ),
            (
                "https://acme.zoomgov.com/j/1612345678?pwd=xyz",
                number("1612345678", Some("xyz"), "acme.zoomgov.com"),
            ),
            (
                "https://ACME.Zoom.US/j/123456789",
                number("123456789", None, "acme.zoom.us"),
            ),
            (
                "http://zoom.us/j/123456789",
                number("123456789", None, "zoom.us"),
            ),
            (
                "  https://zoom.us/j/123456789  ",
                number("123456789", None, "zoom.us"),
            ),
            (
                "https://zoom.us/j/123456789/",
                number("123456789", None, "zoom.us"),
            ),
            (
                "https://zoom.us/j/123456789#success",
                number("123456789", None, "zoom.us"),
            ),
            (
                "https://zoom.us/j/123456789?pwd=",
                number("123456789", None, "zoom.us"),
            ),
            (
                "https://zoom.us/j/123456789?pwd=first&pwd=second",
                number("123456789", Some("first"), "zoom.us"),
            ),
            (
                "https://zoom.us/j/123456789?pwd=a%2Bb%3D",
                number("123456789", Some("a+b="), "zoom.us"),
            ),
            // Registrant token and display name.
            (
                "https://us02web.zoom.us/w/98765432101?tk=abcDEF.123&pwd=p1",
                with(
                    number("98765432101", Some("p1"), "us02web.zoom.us"),
                    Some("abcDEF.123"),
                    None,
                ),
            ),
            (
                "https://zoom.us/j/123456789?uname=Note%20Taker",
                with(
                    number("123456789", None, "zoom.us"),
                    None,
                    Some("Note Taker"),
                ),
            ),
            // Start links: the zak is dropped.
            (
                "https://us02web.zoom.us/s/85746065432?zak=eyJ0eXAiOiJKV1Qi.secret",
                number("85746065432", None, "us02web.zoom.us"),
            ),
            (
                "https://zoom.us/s/123456789?pwd=p&zak=z",
                number("123456789", Some("p"), "zoom.us"),
            ),
            // Web client forms.
            (
                "https://zoom.us/wc/join/85746065432",
                number("85746065432", None, "zoom.us"),
            ),
            (
                "https://app.zoom.us/wc/85746065432/join?fromPWA=1&pwd=abc",
                number("85746065432", Some("abc"), "app.zoom.us"),
            ),
            (
                "https://zoom.us/wc/85746065432/start",
                number("85746065432", None, "zoom.us"),
            ),
            // App links.
            (
                "zoommtg://zoom.us/join?action=join&confno=85746065432&pwd=abc",
                number("85746065432", Some("abc"), "zoom.us"),
            ),
            (
                "zoommtg://us02web.zoom.us/join?confno=123456789",
                number("123456789", None, "us02web.zoom.us"),
            ),
            (
                "zoomus://zoom.us/join?confno=123456789&pwd=x",
                number("123456789", Some("x"), "zoom.us"),
            ),
            (
                "zoommtg://zoom.us/start?confno=123456789&zak=secret",
                number("123456789", None, "zoom.us"),
            ),
            // Vanity links.
            (
                "https://acme.zoom.us/my/john.doe",
                vanity_link("john.doe", "acme.zoom.us"),
            ),
            ("https://zoom.us/my/JaneDoe?pwd=x", {
                let mut l = vanity_link("janedoe", "zoom.us");
                if let Ok(l) = l.as_mut() {
                    l.password = Some("x".into());
                }
                l
            }),
            // Refused: not Zoom.
            (
                "https://zoom.us.evil.com/j/123456789",
                Err(E::NotZoomHost("zoom.us.evil.com".into())),
            ),
            (
                "https://evilzoom.us/j/123456789",
                Err(E::NotZoomHost("evilzoom.us".into())),
            ),
            (
                "https://zoom.usa/j/123456789",
                Err(E::NotZoomHost("zoom.usa".into())),
            ),
            ("https://zoom.us@evil.com/j/123456789", Err(E::UserInfo)),
            ("https://user:pass@zoom.us/j/123456789", Err(E::UserInfo)),
            (
                "https://evil.com\\@zoom.us/j/123456789",
                Err(E::NotZoomHost("evil.com".into())),
            ),
            (
                "https://evil.com/zoom.us/j/123456789",
                Err(E::NotZoomHost("evil.com".into())),
            ),
            (
                "https://127.0.0.1/j/123456789",
                Err(E::NotZoomHost("127.0.0.1".into())),
            ),
            ("https://zoom.us:8443/j/123456789", Err(E::UnexpectedPort)),
            (
                "https://-bad.zoom.us/j/123456789",
                Err(E::NotZoomHost("-bad.zoom.us".into())),
            ),
            (
                "https://teams.microsoft.com/l/meetup-join/19%3ameeting",
                Err(E::NotZoomHost("teams.microsoft.com".into())),
            ),
            // Refused: scheme.
            (
                "ftp://zoom.us/j/123456789",
                Err(E::UnsupportedScheme("ftp".into())),
            ),
            (
                "javascript:alert(1)//zoom.us/j/123456789",
                Err(E::UnsupportedScheme("javascript".into())),
            ),
            ("zoom.us/j/123456789", Err(E::NotAUrl)),
            ("", Err(E::Empty)),
            ("   ", Err(E::Empty)),
            ("https://zoom.us/j/123 456 789", Err(E::NotAUrl)),
            (long.as_str(), Err(E::TooLong)),
            (long_pwd.as_str(), Err(E::BadParameter("pwd"))),
            // Refused: numbers and paths.
            ("https://zoom.us/j/12345678", Err(E::BadMeetingNumber)),
            ("https://zoom.us/j/123456789012", Err(E::BadMeetingNumber)),
            ("https://zoom.us/j/123-456-789", Err(E::BadMeetingNumber)),
            ("https://zoom.us/j/85746065432abc", Err(E::BadMeetingNumber)),
            (
                "https://zoom.us/j/%38%35746065432",
                Err(E::BadMeetingNumber),
            ),
            ("https://zoom.us/j/", Err(E::MissingMeetingNumber)),
            ("https://zoom.us/", Err(E::MissingMeetingNumber)),
            ("https://zoom.us/j/123456789/extra", Err(E::UnsupportedPath)),
            ("https://zoom.us/meeting/123456789", Err(E::UnsupportedPath)),
            (
                "https://zoom.us/wc/123456789/leave",
                Err(E::UnsupportedPath),
            ),
            ("https://zoom.us/my/", Err(E::BadVanity)),
            ("https://zoom.us/my/-dash", Err(E::BadVanity)),
            (
                "zoommtg://zoom.us/join?action=join",
                Err(E::MissingMeetingNumber),
            ),
            ("zoommtg://zoom.us/join?confno=12", Err(E::BadMeetingNumber)),
            (
                "zoommtg://evil.com/join?confno=123456789",
                Err(E::NotZoomHost("evil.com".into())),
            ),
            ("zoommtg://zoom.us/j/123456789", Err(E::UnsupportedPath)),
            // Hostile hosts: percent-encoded dots, a trailing dot, userinfo tricks.
            (
                "https://zoom.us%2eevil.com/j/123456789",
                Err(E::NotZoomHost("zoom.us.evil.com".into())),
            ),
            (
                "https://zoom.us./j/123456789",
                Err(E::NotZoomHost("zoom.us.".into())),
            ),
            ("https://evil.com%40zoom.us/j/123456789", Err(E::NotAUrl)),
            (
                "https://zoom.us\\@evil.com/j/123456789",
                Err(E::UnsupportedPath),
            ),
            (
                "https://zoom.us#@evil.com/j/123456789",
                Err(E::MissingMeetingNumber),
            ),
            (
                "zoommtg://evil.com\\@zoom.us/join?confno=123456789",
                Err(E::UserInfo),
            ),
            (
                "zoommtg://zoom.us%2eevil.com/join?confno=123456789",
                Err(E::NotZoomHost("zoom.us%2eevil.com".into())),
            ),
            (
                "https://[::1]/j/123456789",
                Err(E::NotZoomHost("::1".into())),
            ),
            // What a browser normalises to the same page is the same link.
            (
                "https://zoom.us\\j\\123456789",
                number("123456789", None, "zoom.us"),
            ),
            (
                "https://zoom.us//j//123456789",
                number("123456789", None, "zoom.us"),
            ),
            (
                "https://zoom.us:443/j/123456789",
                number("123456789", None, "zoom.us"),
            ),
            (
                "https://zoom.us/x/../j/123456789",
                number("123456789", None, "zoom.us"),
            ),
            // Numbers: leading zeros, far too many digits, encoded or trailing garbage.
            ("https://zoom.us/j/0123456789", Err(E::BadMeetingNumber)),
            ("https://zoom.us/j/000000000", Err(E::BadMeetingNumber)),
            (
                "zoommtg://zoom.us/join?confno=01234567890",
                Err(E::BadMeetingNumber),
            ),
            (
                "https://zoom.us/j/1234567890123456789012345",
                Err(E::BadMeetingNumber),
            ),
            ("https://zoom.us/j/123456789%0A", Err(E::BadMeetingNumber)),
            ("https://zoom.us/j/123456789;x=1", Err(E::BadMeetingNumber)),
            ("https://zoom.us/j/+123456789", Err(E::BadMeetingNumber)),
            // Line breaks never reach a field, raw or percent-encoded.
            ("https://zoom.us/j/123456789\r\n?pwd=x", Err(E::NotAUrl)),
            (
                "https://zoom.us/j/123456789?pwd=abc%0D%0ASet-Cookie:x",
                Err(E::BadParameter("pwd")),
            ),
            (
                "https://zoom.us/j/123456789?pwd=%0Aabc",
                Err(E::BadParameter("pwd")),
            ),
            (
                "zoommtg://zoom.us/join?confno=123456789%0D%0A",
                Err(E::BadParameter("confno")),
            ),
            (
                "https://zoom.us/j/123456789?uname=Bot%E2%80%A8INFO%20forged",
                Err(E::BadParameter("uname")),
            ),
            (
                "https://zoom.us/j/123456789?tk=%00",
                Err(E::BadParameter("tk")),
            ),
            // Vanity edge cases.
            ("https://zoom.us/my/john.doe/extra", Err(E::UnsupportedPath)),
            ("https://zoom.us/my/john%20doe", Err(E::BadVanity)),
            ("https://zoom.us/my/%2e%2e", Err(E::MissingMeetingNumber)),
            ("https://zoom.us/MY/john", Err(E::UnsupportedPath)),
            (
                "https://acme.zoom.us/my/john.doe/",
                vanity_link("john.doe", "acme.zoom.us"),
            ),
        ];
        assert!(cases.len() >= 40);
        for (input, expected) in cases {
            assert_eq!(parse(input), expected, "{input}");
        }
    }

    #[test]
    fn errors_never_quote_the_query() {
        for input in [
            "https://zoom.us/j/12?zak=SECRETZAK",
            "https://evil.com/j/123456789?zak=SECRETZAK",
            "https://zoom.us/x?zak=SECRETZAK",
        ] {
            let err = parse(input).unwrap_err();
            assert!(!err.to_string().contains("SECRETZAK"), "{input}: {err}");
        }
    }

    #[test]
    fn look_alike_hosts_in_unicode_are_not_zoom() {
        // Cyrillic "о" in zoom, a fullwidth-dot suffix, and a Zoom-looking label
        // on another domain: IDNA turns them into punycode, which is not Zoom.
        for input in [
            "https://z\u{43e}\u{43e}m.us/j/123456789",
            "https://zoom.us\u{ff0e}evil.com/j/123456789",
            "https://zoom\u{2024}us/j/123456789",
        ] {
            let err = parse(input).unwrap_err();
            assert!(
                matches!(&err, E::NotZoomHost(_) | E::NotAUrl),
                "{input}: {err:?}"
            );
        }
    }

    #[test]
    fn bad_parameter_errors_name_the_parameter_not_its_value() {
        let err = parse("https://zoom.us/j/123456789?pwd=SECRETPWD%0A").unwrap_err();
        assert_eq!(err, E::BadParameter("pwd"));
        assert!(!err.to_string().contains("SECRETPWD"), "{err}");
    }

    #[test]
    fn start_link_keeps_no_zak_anywhere() {
        let link = parse("https://zoom.us/s/123456789?zak=SECRETZAK&pwd=p").unwrap();
        assert!(!format!("{link:?}").contains("SECRETZAK"));
    }

    #[test]
    fn personal_meeting_url_parses_to_the_same_vanity() {
        let from_user = parse("https://acme.zoom.us/my/John.Doe").unwrap();
        let from_bot = parse("https://acme.zoom.us/my/john.doe?pwd=abc").unwrap();
        assert_eq!(from_user.meeting_id, from_bot.meeting_id);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_strings_never_panic(input in ".{0,300}") {
            let _ = parse(&input);
        }

        #[test]
        fn url_shaped_strings_never_panic(
            scheme in "(https?|zoommtg|zoomus|ftp|)",
            host in "[a-zA-Z0-9.@:\\\\-]{0,30}",
            path in "[/a-z0-9%.?=&#-]{0,60}",
        ) {
            let _ = parse(&format!("{scheme}://{host}{path}"));
        }

        #[test]
        fn mutated_valid_links_never_panic(
            index in 0usize..6,
            position in 0usize..120,
            insert in ".{0,8}",
            delete in 0usize..5,
        ) {
            let valid = [
                "https://us02web.zoom.us/j/85746065432?pwd=aBcD1234efGh.1",
                "https://acme.zoom.us/my/john.doe",
                "zoommtg://zoom.us/join?action=join&confno=85746065432&pwd=abc",
                "https://app.zoom.us/wc/85746065432/join?fromPWA=1&pwd=abc",
                "https://us02web.zoom.us/w/98765432101?tk=abcDEF.123&pwd=p1",
                "https://zoom.us/s/123456789?zak=z",
            ];
            let mut chars: Vec<char> = valid[index].chars().collect();
            let at = position.min(chars.len());
            let end = (at + delete).min(chars.len());
            chars.splice(at..end, insert.chars());
            let mutated: String = chars.into_iter().collect();
            let _ = parse(&mutated);
        }

        #[test]
        fn any_9_to_11_digit_number_round_trips(n in "[1-9][0-9]{8,10}", sub in "(|us02web\\.|acme\\.)", domain in "(zoom\\.us|zoom\\.com|zoomgov\\.com)") {
            let link = parse(&format!("https://{sub}{domain}/j/{n}")).unwrap();
            proptest::prop_assert_eq!(link.meeting_id, MeetingId::Number(n));
        }
    }
}
