//! Extractors that turn every kind of bad input into an [`ApiError`] of the one
//! shape, instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, StatusCode};
use serde::de::DeserializeOwned;

use super::error::{ApiError, FieldErrors};

/// Largest request body accepted, in bytes (DESIGN.md §7).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A JSON body. Wrong content type → 415; over the limit → 413; bad JSON or
/// non-UTF-8 → 400 `invalid_json`; anything but an object, wrong types, unknown or
/// missing fields, or text holding NUL → 400 `invalid_request` with `fields`.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes =
            Bytes::from_request(req, state)
                .await
                .map_err(|rejection: BytesRejection| {
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::PayloadTooLarge
                    } else {
                        ApiError::BadRequest {
                            code: "unreadable_body",
                            message: "The request body could not be read.".to_owned(),
                        }
                    }
                })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A JSON body that may also be left out entirely (no body at all → `T::default()`);
/// a body that is present is held to [`ApiJson`]'s rules.
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json_content_type(req.headers());
        let bytes =
            Bytes::from_request(req, state)
                .await
                .map_err(|rejection: BytesRejection| {
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::PayloadTooLarge
                    } else {
                        ApiError::BadRequest {
                            code: "unreadable_body",
                            message: "The request body could not be read.".to_owned(),
                        }
                    }
                })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

fn is_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses `bytes` as `T`, describing failures without echoing input values (a
/// mistyped secret must not come back in an error message). The body must be a JSON
/// object (serde would otherwise read `[null, null]` as a struct, field by field),
/// and no key or string in it may hold NUL, which PostgreSQL cannot store.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = parse_value(bytes)?;
    if !value.is_object() {
        let mut fields = FieldErrors::new();
        fields.insert("body".to_owned(), vec!["Must be a JSON object.".to_owned()]);
        return Err(ApiError::validation(
            "invalid_request",
            "The request body must be a JSON object.",
            fields,
        ));
    }
    if let Some((field, problem)) = find_nul(&value, "") {
        return Err(ApiError::field(&field, problem));
    }
    // Read from the bytes, not `value`, so a repeated field is still an error.
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let err = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => return Ok(v),
        Err(err) => err,
    };
    let inner = err.inner();
    if !inner.is_data() {
        return Err(syntax_error(inner));
    }
    let path = err.path().to_string();
    let message = strip_position(&inner.to_string());
    let (field, problem) = describe_data_error(&path, &message);
    let mut fields = FieldErrors::new();
    fields.insert(field.clone(), vec![problem.clone()]);
    Err(ApiError::validation(
        "invalid_request",
        format!("{field}: {problem}"),
        fields,
    ))
}

/// The body as a JSON value; anything that is not one JSON value is `invalid_json`.
fn parse_value(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde::Deserialize::deserialize(&mut de).map_err(|e| syntax_error(&e))?;
    // Trailing garbage after the value is a syntax error too.
    de.end().map_err(|_| ApiError::InvalidJson {
        detail: "unexpected characters after the JSON value.".to_owned(),
    })?;
    Ok(value)
}

fn syntax_error(e: &serde_json::Error) -> ApiError {
    let detail = match e.classify() {
        serde_json::error::Category::Eof => "it ends too early.".to_owned(),
        _ => format!("syntax error at line {} column {}.", e.line(), e.column()),
    };
    ApiError::InvalidJson { detail }
}

pub(crate) const NUL_PROBLEM: &str = "Must not contain the NUL character (U+0000).";

/// The first key or string holding NUL: (its field path, the problem).
fn find_nul(value: &serde_json::Value, path: &str) -> Option<(String, &'static str)> {
    let here = || {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }
    };
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some((here(), NUL_PROBLEM)),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| find_nul(item, &format!("{path}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                // The key itself is not echoed: the object holding it is named.
                return Some((here(), "Keys must not contain the NUL character (U+0000)."));
            }
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            find_nul(item, &child)
        }),
        _ => None,
    }
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn backticked(message: &str, after: &str) -> Option<String> {
    let rest = message.strip_prefix(after)?;
    let end = rest.find('`')?;
    Some(rest[..end].to_owned())
}

fn join_path(path: &str, name: &str) -> String {
    // For an unknown field the tracked path already ends at the field itself.
    if path == name || path.ends_with(&format!(".{name}")) {
        path.to_owned()
    } else if path.is_empty() || path == "." {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// (field, problem) from serde's message, with input values left out.
fn describe_data_error(path: &str, message: &str) -> (String, String) {
    if let Some(name) = backticked(message, "missing field `") {
        return (join_path(path, &name), "This field is required.".to_owned());
    }
    if let Some(name) = backticked(message, "unknown field `") {
        return (join_path(path, &name), "Unknown field.".to_owned());
    }
    let field = if path.is_empty() || path == "." {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    if let Some(i) = message.find(", expected ") {
        let expected = &message[i + ", expected ".len()..];
        let expected = if expected.starts_with("struct ") || expected.starts_with("a map") {
            "a JSON object"
        } else {
            expected
        };
        return (field, format!("Must be {expected}."));
    }
    // Messages from our own validating types carry no input value.
    (field, format!("{message}."))
}

/// A path parameter as a plain string (ids are checked by the domain; a wrong one
/// is a 404).
pub struct ApiPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NoRoute)?;
        Ok(ApiPath(id))
    }
}

/// A query string. Unknown parameters are ignored; bad values, or any parameter
/// holding NUL, → 400 with `fields`.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        // Every parameter, known or not: PostgreSQL cannot compare text holding NUL.
        // (A cursor is checksummed before any query sees it; its own 400 says more.)
        if let Some((name, _)) = form_urlencoded_parse(query)
            .find(|(name, value)| name.contains('\0') || (value.contains('\0') && name != "cursor"))
        {
            let field = if name.contains('\0') { "query" } else { &name };
            return Err(ApiError::field(field, NUL_PROBLEM));
        }
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|err| {
                let message = err.inner().to_string();
                let (field, problem) = describe_data_error(&err.path().to_string(), &message);
                let mut fields = FieldErrors::new();
                fields.insert(field.clone(), vec![problem.clone()]);
                ApiError::validation("invalid_request", format!("{field}: {problem}"), fields)
            })
    }
}

fn form_urlencoded_parse(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: Option<u32>,
    }

    fn fields_of(err: ApiError) -> FieldErrors {
        match err {
            ApiError::Validation { fields, .. } => fields,
            other => panic!("expected validation error, got {other:?}"),
        }
    }

    #[test]
    fn data_errors_name_the_field_and_hide_the_value() {
        let f = fields_of(parse_json::<Body>(br#"{"count": 1}"#).expect_err("missing"));
        assert_eq!(f["name"], vec!["This field is required."]);
        let f = fields_of(parse_json::<Body>(br#"{"name": "a", "x": 1}"#).expect_err("unknown"));
        assert_eq!(f["x"], vec!["Unknown field."]);
        let err = parse_json::<Body>(br#"{"name": 12345678}"#).expect_err("wrong type");
        assert!(!err.to_string().contains("12345678"), "{err}");
        assert!(fields_of(err).contains_key("name"));
    }

    #[test]
    fn only_objects_are_bodies() {
        for body in [
            &br#"["a", 1]"#[..],
            b"[null, null]",
            b"null",
            b"\"name\"",
            b"12",
        ] {
            let err = parse_json::<Body>(body).expect_err("not an object");
            assert_eq!(err.to_string(), "The request body must be a JSON object.");
            assert_eq!(fields_of(err)["body"], vec!["Must be a JSON object."]);
        }
    }

    #[test]
    fn nul_is_refused_in_any_key_or_string_and_the_field_named() {
        for (body, field) in [
            (&br#"{"name": "a\u0000b"}"#[..], "name"),
            (br#"{"name": "a", "x": {"y": ["ok", "\u0000"]}}"#, "x.y[1]"),
            (br#"{"name": "a", "x": {"k\u0000": 1}}"#, "x"),
            (br#"{"k\u0000": 1}"#, "body"),
        ] {
            let err = parse_json::<Body>(body).expect_err("NUL");
            assert_eq!(err.code(), "invalid_request", "{body:?}");
            assert!(fields_of(err).contains_key(field), "{body:?}");
        }
    }

    #[test]
    fn syntax_errors_and_bad_utf8_are_invalid_json() {
        for body in [
            &b"{"[..],
            b"{\"name\": \"a\"} x",
            b"{\"name\": \"\xff\"}",
            b"",
        ] {
            let err = parse_json::<Body>(body).expect_err("bad json");
            assert_eq!(err.code(), "invalid_json", "{body:?}");
        }
    }
}
