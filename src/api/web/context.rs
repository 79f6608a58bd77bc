//! A web request turned into an action's parameters, as OpenWhisk builds them
//! (`WebActions.scala`, `Context.toActionArgument`): the `__ow_*` context, then the query,
//! then the body (a JSON object or form fields merged in; anything else kept whole under
//! `__ow_body`, base64 when the content type is binary). A raw-http action gets the query
//! string and the body unparsed instead.

use base64::Engine;
use serde_json::{Map, Value};

use super::super::query::decode;
use super::super::response::ApiError;

pub const METHOD: &str = "__ow_method";
pub const HEADERS: &str = "__ow_headers";
pub const PATH: &str = "__ow_path";
pub const USER: &str = "__ow_user";
pub const BODY: &str = "__ow_body";
pub const QUERY: &str = "__ow_query";

/// The names no request may set.
pub const RESERVED: [&str; 6] = [METHOD, HEADERS, PATH, USER, BODY, QUERY];

/// OpenWhisk's message when a request sets a reserved or final parameter.
pub const PARAMETERS_NOT_ALLOWED: &str =
    "Request defines parameters that are not allowed (e.g., reserved properties).";

/// What the request brought, before it becomes parameters.
#[derive(Debug, Default)]
pub struct Request<'a> {
    /// Lower case, as OpenWhisk passes it (`get`, `post`, ...).
    pub method: String,
    /// Lower-case names; a repeated header keeps its last value.
    pub headers: Map<String, Value>,
    /// The path after the action's segment (`""` when nothing follows it).
    pub path: String,
    /// The raw query string (without `?`).
    pub query: &'a str,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    /// The authenticated caller's namespace, when the action asks for it.
    pub user: Option<String>,
}

/// The media type of a `Content-Type` value: lower case, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// `application/json` or any `+json` type.
pub fn is_json_family(mt: &str) -> bool {
    mt == "application/json" || mt.ends_with("+json")
}

/// Whether a media type carries text (kept as a string) rather than bytes (base64), after the
/// media types pekko-http, which OpenWhisk uses, marks as not binary.
pub fn is_text(mt: &str) -> bool {
    mt.starts_with("text/")
        || is_json_family(mt)
        || mt.ends_with("+xml")
        || matches!(
            mt,
            "application/xml"
                | "application/javascript"
                | "application/ecmascript"
                | "application/x-www-form-urlencoded"
                | "application/x-javascript"
        )
}

/// The query string's pairs, decoded (`+` is a space); the last of a repeated name wins.
fn query_pairs(q: &str) -> Result<Map<String, Value>, ApiError> {
    let bad = || ApiError::bad_request("The query string is not correctly encoded.");
    let mut m = Map::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        m.insert(decode(k, true).ok_or_else(bad)?, Value::String(decode(v, true).ok_or_else(bad)?));
    }
    Ok(m)
}

/// The body as OpenWhisk hands it over: `None` when empty; a JSON value for a JSON body or
/// form data (not raw); otherwise a string, base64 for binary types and, for legacy,
/// `application/json` itself.
fn body_value(r: &Request<'_>, raw: bool) -> Result<Option<Value>, ApiError> {
    if r.body.is_empty() {
        return Ok(None);
    }
    // No content type: pekko-http's default for an entity, application/octet-stream.
    let mt = r.content_type.map_or_else(|| "application/octet-stream".to_owned(), media_type);
    if !raw && is_json_family(&mt) {
        return serde_json::from_slice(r.body).map(Some).map_err(|e| {
            ApiError::bad_request(format!("The request content was malformed:\n{e}"))
        });
    }
    if !raw && mt == "application/x-www-form-urlencoded" {
        let text = std::str::from_utf8(r.body)
            .map_err(|_| ApiError::bad_request("The request content was malformed."))?;
        return query_pairs(text).map(|m| Some(Value::Object(m)));
    }
    if !is_text(&mt) || mt == "application/json" {
        return Ok(Some(Value::String(base64::engine::general_purpose::STANDARD.encode(r.body))));
    }
    match std::str::from_utf8(r.body) {
        Ok(s) => Ok(Some(Value::String(s.to_owned()))),
        Err(_) => Err(ApiError::bad_request(format!("Content type '{mt}' is not supported."))),
    }
}

/// The action's parameters for this request. `immutable`: parameters the action made final;
/// a request that sets one of them, or a reserved `__ow_` name, is refused (400), unless the
/// action is raw (its request values never become parameters).
pub fn parameters(
    r: &Request<'_>,
    raw: bool,
    is_immutable: impl Fn(&str) -> bool,
) -> Result<Map<String, Value>, ApiError> {
    let body = body_value(r, raw)?;
    let mut params = Map::new();
    params.insert(METHOD.into(), Value::String(r.method.clone()));
    params.insert(HEADERS.into(), Value::Object(r.headers.clone()));
    params.insert(PATH.into(), Value::String(r.path.clone()));
    if let Some(u) = &r.user {
        params.insert(USER.into(), Value::String(u.clone()));
    }
    if raw {
        params.insert(QUERY.into(), Value::String(r.query.to_owned()));
        params.insert(BODY.into(), body.unwrap_or_else(|| Value::String(String::new())));
        return Ok(params);
    }
    let query = query_pairs(r.query)?;
    let refused = |k: &String| RESERVED.contains(&k.as_str()) || is_immutable(k);
    let body_keys = match &body {
        Some(Value::Object(m)) => m.keys().collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    if query.keys().chain(body_keys).any(refused) {
        return Err(ApiError::bad_request(PARAMETERS_NOT_ALLOWED));
    }
    params.extend(query);
    match body {
        Some(Value::Object(m)) => params.extend(m),
        Some(v) => {
            params.insert(BODY.into(), v);
        }
        None => {}
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req<'a>(query: &'a str, ct: Option<&'a str>, body: &'a [u8]) -> Request<'a> {
        Request {
            method: "post".into(),
            path: "/x".into(),
            query,
            content_type: ct,
            body,
            ..Request::default()
        }
    }

    fn never(_: &str) -> bool {
        false
    }

    #[test]
    fn query_and_json_body_merge_body_last() {
        let r = req("name=Jane&a=1", Some("application/json"), br#"{"a":2}"#);
        let p = parameters(&r, false, never).unwrap();
        assert_eq!(p["name"], "Jane");
        assert_eq!(p["a"], 2);
        assert_eq!(p[METHOD], "post");
        assert_eq!(p[PATH], "/x");
        assert!(p.get(BODY).is_none() && p.get(QUERY).is_none() && p.get(USER).is_none());
    }

    #[test]
    fn form_text_binary_and_non_object_json() {
        let p = parameters(
            &req("", Some("application/x-www-form-urlencoded"), b"name=J+D"),
            false,
            never,
        )
        .unwrap();
        assert_eq!(p["name"], "J D");
        let p = parameters(&req("", Some("text/plain"), b"Jane"), false, never).unwrap();
        assert_eq!(p[BODY], "Jane");
        let p = parameters(&req("", Some("image/png"), &[0, 1, 2]), false, never).unwrap();
        assert_eq!(p[BODY], "AAEC");
        let p = parameters(&req("", None, b"abc"), false, never).unwrap();
        assert_eq!(p[BODY], "YWJj", "no content type is octet-stream: binary");
        let p = parameters(&req("", Some("application/json"), b"[1,2]"), false, never).unwrap();
        assert_eq!(p[BODY], json!([1, 2]));
        assert!(parameters(&req("", Some("application/json"), b"{nope"), false, never).is_err());
    }

    #[test]
    fn raw_keeps_query_and_body_unparsed() {
        let r = req("name=Jane", Some("application/json"), br#"{"name":"Jane"}"#);
        let p = parameters(&r, true, never).unwrap();
        assert_eq!(p[QUERY], "name=Jane");
        assert_eq!(p[BODY], "eyJuYW1lIjoiSmFuZSJ9");
        assert!(p.get("name").is_none());
        let p = parameters(&req("", Some("text/plain"), b""), true, never).unwrap();
        assert_eq!(p[BODY], "");
        // A raw action may receive reserved names in its query: they stay in the string.
        assert!(parameters(&req("__ow_user=x", None, b""), true, never).is_ok());
    }

    #[test]
    fn reserved_and_final_cannot_be_overridden() {
        for q in ["__ow_method=get", "__ow_user=root", "__ow_body=x"] {
            let e = parameters(&req(q, None, b""), false, never).unwrap_err();
            assert_eq!(e.message, PARAMETERS_NOT_ALLOWED);
        }
        let fin = |k: &str| k == "name";
        assert!(parameters(&req("name=x", None, b""), false, fin).is_err());
        let r = req("", Some("application/json"), br#"{"name":"x"}"#);
        assert!(parameters(&r, false, fin).is_err());
        assert!(parameters(&req("other=x", None, b""), false, fin).is_ok());
    }

    #[test]
    fn media_types() {
        assert_eq!(media_type("Application/JSON; charset=utf-8"), "application/json");
        assert!(is_json_family("application/vnd.api+json"));
        assert!(is_text("text/csv") && is_text("image/svg+xml"));
        assert!(!is_text("image/png") && !is_text("application/octet-stream"));
    }
}
