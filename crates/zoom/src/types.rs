//! Small serde helpers for Zoom's loosely typed JSON: numbers that are sometimes
//! strings, and the reverse.

use serde::{Deserialize, Deserializer};

/// A JSON string or number, kept as its text (`123` and `"123"` both become
/// `"123"`). Zoom sends ids, PMIs and error codes either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lenient(pub String);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            U(u64),
            I(i64),
            F(f64),
        }
        Ok(Lenient(match Raw::deserialize(d)? {
            Raw::S(s) => s,
            Raw::U(n) => n.to_string(),
            Raw::I(n) => n.to_string(),
            // Whole floats such as 3599.0 read as integers; others keep their text.
            Raw::F(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            Raw::F(f) => f.to_string(),
        }))
    }
}

/// The text of a JSON string or number; other types give `None`.
pub(crate) fn value_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => u.to_string(),
            (_, Some(i), _) => i.to_string(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        }),
        _ => None,
    }
}

/// Deserialize an optional string-or-number into `Option<String>`; empty
/// strings, `null` and other types become `None`.
pub(crate) fn opt_lenient_string<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(v.as_ref()
        .and_then(value_text)
        .filter(|s| !s.trim().is_empty()))
}

/// Deserialize a u64 sent as a number or as a string of digits.
pub(crate) fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let Lenient(text) = Lenient::deserialize(d)?;
    text.trim()
        .parse::<u64>()
        .map_err(|_| serde::de::Error::custom("expected a whole number"))
}

/// Deserialize an optional u64 sent as a number or a string; unreadable → `None`.
pub(crate) fn opt_lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(v.as_ref()
        .and_then(value_text)
        .and_then(|t| t.trim().parse::<u64>().ok()))
}

/// A description of a JSON error that never quotes a value from the document
/// (serde's "invalid type: string \"…\"" would leak tokens).
pub(crate) fn json_error_detail(err: &serde_json::Error) -> String {
    let text = err.to_string();
    if text.starts_with("missing field") || text.starts_with("expected a whole number") {
        let head = text.split(" at line").next().unwrap_or("");
        return format!("unexpected JSON: {head}");
    }
    format!(
        "unexpected JSON ({:?} error at line {} column {})",
        err.classify(),
        err.line(),
        err.column()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "opt_lenient_string")]
        s: Option<String>,
        #[serde(deserialize_with = "lenient_u64")]
        n: u64,
    }

    #[test]
    fn numbers_and_strings_read_the_same() {
        let a: T = serde_json::from_str(r#"{"s": 1234567890, "n": "85746065432"}"#).unwrap();
        let b: T = serde_json::from_str(r#"{"s": "1234567890", "n": 85746065432}"#).unwrap();
        assert_eq!(a.s.as_deref(), Some("1234567890"));
        assert_eq!(a.s, b.s);
        assert_eq!(a.n, 85746065432);
        assert_eq!(a.n, b.n);
    }

    #[test]
    fn null_and_missing_and_empty_are_none() {
        for json in [r#"{"n":1}"#, r#"{"s":null,"n":1}"#, r#"{"s":"","n":1}"#] {
            let t: T = serde_json::from_str(json).unwrap();
            assert_eq!(t.s, None, "{json}");
        }
    }

    #[test]
    fn json_error_detail_never_quotes_values() {
        let err = serde_json::from_str::<T>(r#"{"s": 1, "n": {"secret": "tok_abcdef"}}"#)
            .err()
            .unwrap();
        assert!(!json_error_detail(&err).contains("tok_abcdef"));
        let err = serde_json::from_str::<T>(r#"{"s": "tok_abcdef"}"#)
            .err()
            .unwrap();
        assert_eq!(
            json_error_detail(&err),
            "unexpected JSON: missing field `n`"
        );
    }
}
