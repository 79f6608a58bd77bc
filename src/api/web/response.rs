//! A web action's result turned into an HTTP response, by the extension the URL asked for
//! (OpenWhisk's transcoders in `WebActions.scala`): `.json` the result itself, `.html`,
//! `.svg` and `.text` one property of it, `.http` (and no extension) a
//! `{statusCode, headers, body}` object whose body is text, JSON or base64 for binary types.

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::Value;

use super::super::response::{ApiError, Body};
use super::context::{is_json_family, is_text, media_type};

/// The response type a web URL asks for with its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    Http,
    Json,
    Html,
    Svg,
    Text,
}

impl Extension {
    pub const ALL: [(&'static str, Extension); 5] = [
        (".http", Extension::Http),
        (".json", Extension::Json),
        (".html", Extension::Html),
        (".svg", Extension::Svg),
        (".text", Extension::Text),
    ];

    /// Splits `name.ext` into the action name and its extension; a name without a known
    /// extension is the whole name, answered as `.http`.
    pub fn split(segment: &str) -> (&str, Extension) {
        Self::ALL
            .iter()
            .find_map(|(suffix, e)| segment.strip_suffix(suffix).map(|base| (base, *e)))
            .unwrap_or((segment, Extension::Http))
    }

    /// The extension by its name without the dot (`json`, `http`: an API's response type).
    pub fn parse(name: &str) -> Option<Extension> {
        Self::ALL.iter().find(|(s, _)| &s[1..] == name).map(|(_, e)| *e)
    }
}

/// OpenWhisk's messages for results that do not fit the extension.
pub const PROPERTY_NOT_FOUND: &str = "Response does not include requested property.";
pub const UNKNOWN_CONTENT_TYPE: &str = "Response did not specify a known content-type.";
pub const CONTENT_TYPE_ERROR: &str =
    "Response type in header did not match generated content type.";

fn invalid_media(media: &str) -> ApiError {
    ApiError::bad_request(format!("Response is not valid '{media}'."))
}

fn with_body(status: StatusCode, content_type: Option<&str>, body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(c).ok()) {
        resp.headers_mut().insert(CONTENT_TYPE, ct);
    }
    resp
}

fn pretty(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

/// The response for `result` (already projected: the `error` property of an application
/// error) under `ext`.
pub fn transcode(result: &Value, ext: Extension) -> Result<Response<Body>, ApiError> {
    let field = |name: &str| match result {
        Value::Object(m) => m.get("body").or_else(|| m.get(name)),
        other => Some(other),
    };
    match ext {
        Extension::Json => match result {
            Value::Object(_) | Value::Array(_) => {
                Ok(with_body(StatusCode::OK, Some("application/json"), pretty(result)))
            }
            _ => Err(invalid_media("application/json")),
        },
        Extension::Html => match field("html") {
            Some(Value::String(s)) => {
                Ok(with_body(StatusCode::OK, Some("text/html; charset=UTF-8"), s.clone().into()))
            }
            _ => Err(invalid_media("text/html")),
        },
        Extension::Svg => match field("svg") {
            Some(Value::String(s)) => {
                Ok(with_body(StatusCode::OK, Some("image/svg+xml"), s.clone().into()))
            }
            _ => Err(invalid_media("image/svg+xml")),
        },
        Extension::Text => {
            let text = match field("text") {
                Some(Value::String(s)) => s.clone(),
                Some(v @ (Value::Object(_) | Value::Array(_))) => {
                    String::from_utf8_lossy(&pretty(v)).into_owned()
                }
                Some(v) => v.to_string(),
                None => return Err(ApiError::new(StatusCode::NOT_FOUND, PROPERTY_NOT_FOUND)),
            };
            Ok(with_body(StatusCode::OK, Some("text/plain; charset=UTF-8"), text.into()))
        }
        Extension::Http => http(result),
    }
}

/// The headers of an `.http` result: strings, numbers and booleans; an array repeats the
/// header. Anything else makes the result invalid.
fn headers(v: Option<&Value>) -> Option<Vec<(HeaderName, HeaderValue)>> {
    fn one(name: &HeaderName, v: &Value, out: &mut Vec<(HeaderName, HeaderValue)>) -> Option<()> {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Array(items) => {
                return items.iter().try_for_each(|i| one(name, i, out));
            }
            _ => return None,
        };
        out.push((name.clone(), HeaderValue::from_str(&text).ok()?));
        Some(())
    }
    let mut out = Vec::new();
    match v {
        None => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let name = HeaderName::from_bytes(k.as_bytes()).ok()?;
                one(&name, v, &mut out)?;
            }
        }
        Some(_) => return None,
    }
    Some(out)
}

fn status(v: Option<&Value>) -> Option<Option<StatusCode>> {
    let code = match v {
        None => return Some(None),
        Some(Value::Number(n)) => u16::try_from(n.as_u64()?).ok()?,
        Some(Value::String(s)) => s.trim().parse::<u16>().ok()?,
        Some(_) => return None,
    };
    if !(100..=599).contains(&code) {
        return None;
    }
    StatusCode::from_u16(code).ok().map(Some)
}

/// OpenWhisk's inference of base64 (`Exec.isBinaryCode`), for JSON sent base64-encoded.
fn looks_base64(s: &str) -> bool {
    let t = s.trim().as_bytes();
    let body = t.strip_suffix(b"==").or_else(|| t.strip_suffix(b"=")).unwrap_or(t);
    !t.is_empty()
        && t.len() % 4 == 0
        && body.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

fn http(result: &Value) -> Result<Response<Body>, ApiError> {
    let invalid = || invalid_media("message/http");
    let Value::Object(m) = result else { return Err(invalid()) };
    let hs = headers(m.get("headers")).ok_or_else(invalid)?;
    let code = status(m.get("statusCode")).ok_or_else(invalid)?;
    let declared = hs.iter().find(|(n, _)| *n == CONTENT_TYPE).map(|(_, v)| v.clone());
    let mut resp = match m.get("body") {
        None | Some(Value::Null) => with_body(code.unwrap_or(StatusCode::NO_CONTENT), None, vec![]),
        Some(Value::String(s)) if s.is_empty() => {
            with_body(code.unwrap_or(StatusCode::NO_CONTENT), None, vec![])
        }
        Some(Value::String(s)) => {
            let ct = match &declared {
                Some(v) => v.to_str().map_err(|_| ApiError::bad_request(UNKNOWN_CONTENT_TYPE))?,
                None => "text/html",
            };
            let mt = media_type(ct);
            if !mt.contains('/') {
                return Err(ApiError::bad_request(UNKNOWN_CONTENT_TYPE));
            }
            let decode = || {
                base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .map_err(|_| ApiError::bad_request(CONTENT_TYPE_ERROR))
            };
            let bytes = if is_json_family(&mt) && looks_base64(s) {
                decode()?
            } else if is_text(&mt) {
                s.clone().into_bytes()
            } else {
                decode()?
            };
            // Text without a charset is UTF-8, as OpenWhisk sends it.
            let ct = if is_text(&mt) && !ct.to_ascii_lowercase().contains("charset") {
                format!("{ct}; charset=UTF-8")
            } else {
                ct.to_owned()
            };
            with_body(code.unwrap_or(StatusCode::OK), Some(&ct), bytes)
        }
        Some(js) => {
            let ct = match &declared {
                Some(v) => v.to_str().map_err(|_| ApiError::bad_request(UNKNOWN_CONTENT_TYPE))?,
                None => "application/json",
            };
            if !is_json_family(&media_type(ct)) {
                return Err(ApiError::bad_request(CONTENT_TYPE_ERROR));
            }
            with_body(code.unwrap_or(StatusCode::OK), Some(ct), pretty(js))
        }
    };
    let h = resp.headers_mut();
    for (name, value) in hs.into_iter().filter(|(n, _)| *n != CONTENT_TYPE) {
        h.append(name, value);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(r: &Response<Body>) -> Vec<u8> {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(r.body().clone().collect()).map(|c| c.to_bytes().to_vec()).unwrap_or_default()
    }

    fn ct(r: &Response<Body>) -> &str {
        r.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    #[test]
    fn extensions_split() {
        assert_eq!(Extension::split("hello.json"), ("hello", Extension::Json));
        assert_eq!(Extension::split("hello"), ("hello", Extension::Http));
        assert_eq!(Extension::split("hello.txt"), ("hello.txt", Extension::Http));
        assert_eq!(Extension::parse("svg"), Some(Extension::Svg));
        assert_eq!(Extension::parse("xml"), None);
    }

    #[test]
    fn json_html_svg_text() {
        let r = transcode(&json!({"a": 1}), Extension::Json).unwrap();
        assert_eq!(ct(&r), "application/json");
        assert_eq!(transcode(&json!("x"), Extension::Json).unwrap_err().status, 400);
        let r = transcode(&json!({"html": "<p>"}), Extension::Html).unwrap();
        assert_eq!((ct(&r), body(&r)), ("text/html; charset=UTF-8", b"<p>".to_vec()));
        let r = transcode(&json!({"body": "<svg/>"}), Extension::Svg).unwrap();
        assert_eq!(ct(&r), "image/svg+xml");
        assert_eq!(transcode(&json!({"html": 1}), Extension::Html).unwrap_err().status, 400);
        let r = transcode(&json!({"text": 5}), Extension::Text).unwrap();
        assert_eq!(body(&r), b"5");
        let e = transcode(&json!({"other": 5}), Extension::Text).unwrap_err();
        assert_eq!((e.status, e.message.as_str()), (StatusCode::NOT_FOUND, PROPERTY_NOT_FOUND));
    }

    #[test]
    fn http_results() {
        let r =
            transcode(&json!({"statusCode": 302, "headers": {"location": "/x"}}), Extension::Http)
                .unwrap();
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()["location"], "/x");
        let r = transcode(&json!({}), Extension::Http).unwrap();
        assert_eq!(r.status(), 204);
        let r = transcode(&json!({"body": "<h1>"}), Extension::Http).unwrap();
        assert_eq!((r.status().as_u16(), ct(&r)), (200, "text/html; charset=UTF-8"));
        let r = transcode(&json!({"body": {"a": 1}}), Extension::Http).unwrap();
        assert_eq!(ct(&r), "application/json");
        let r = transcode(
            &json!({"headers": {"Content-Type": "image/png"}, "body": "AAEC"}),
            Extension::Http,
        )
        .unwrap();
        assert_eq!(body(&r), vec![0, 1, 2]);
        let cookies = json!({"headers": {"Set-Cookie": ["a=1", "b=2"]}, "body": "x"});
        let r = transcode(&cookies, Extension::Http).unwrap();
        assert_eq!(r.headers().get_all("set-cookie").iter().count(), 2);
        let r = transcode(&json!({"statusCode": "201", "body": "x"}), Extension::Http).unwrap();
        assert_eq!(r.status(), 201);
    }

    #[test]
    fn http_errors() {
        let bad = |v: Value| transcode(&v, Extension::Http).unwrap_err().message;
        assert_eq!(bad(json!("str")), "Response is not valid 'message/http'.");
        assert_eq!(bad(json!({"statusCode": 1000})), "Response is not valid 'message/http'.");
        assert_eq!(bad(json!({"statusCode": 2.5})), "Response is not valid 'message/http'.");
        assert_eq!(bad(json!({"headers": {"a": {}}})), "Response is not valid 'message/http'.");
        let png = json!({"headers": {"content-type": "image/png"}, "body": "!!notbase64"});
        assert_eq!(bad(png), CONTENT_TYPE_ERROR);
        let js = json!({"headers": {"content-type": "text/plain"}, "body": {"a": 1}});
        assert_eq!(bad(js), CONTENT_TYPE_ERROR);
        let unknown = json!({"headers": {"content-type": "nonsense"}, "body": "x"});
        assert_eq!(bad(unknown), UNKNOWN_CONTENT_TYPE);
    }
}
