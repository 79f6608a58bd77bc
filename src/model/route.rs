//! API routes: an API is a base path of one namespace (`/club`) with operations, each a verb
//! and a relative path (`get /books/{isbn}`) mapped to a web action and the response type its
//! web URL is called with. hearth serves them itself at `/api/{namespace}{basepath}{relpath}`
//! (OpenWhisk needs a separate gateway for this).

use serde::{Deserialize, Serialize};

use super::EntityName;

/// The verbs an operation may map (OpenWhisk's gateway accepts these).
pub const VERBS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

/// The longest base path or relative path accepted.
pub const MAX_PATH_LEN: usize = 512;

/// Why an API definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("the path {0:?} must start with '/' and hold only letters, digits, '-', '_', '.', '~' and {{name}} parameters")]
    Path(String),
    #[error("the operation {0:?} is not one of get, post, put, delete, patch, head, options")]
    Verb(String),
    #[error("the response type {0:?} is not one of http, json, html, svg, text")]
    ResponseType(String),
}

/// The web action an operation runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteAction {
    pub namespace: EntityName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<EntityName>,
    pub name: EntityName,
}

impl RouteAction {
    /// `ns/package/name` with `default` for no package: the web URL's path.
    pub fn web_path(&self) -> String {
        let pkg = self.package.as_ref().map_or("default", EntityName::as_str);
        format!("{}/{pkg}/{}", self.namespace, self.name)
    }
}

/// One verb on one relative path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// `/books/{isbn}`.
    pub relpath: String,
    /// Lower case (`get`).
    pub verb: String,
    pub action: RouteAction,
    /// The web extension without its dot (`json`, `http`, ...).
    pub response_type: String,
    /// The action's `require-whisk-auth` secret, sent on its behalf (OpenWhisk's `secureKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_key: Option<String>,
}

/// An API: a base path of a namespace and its operations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiMeta {
    pub namespace: EntityName,
    /// `/club` (or `/`).
    pub basepath: String,
    /// OpenWhisk's `apiName`; the base path when none was given.
    pub name: String,
    pub operations: Vec<Operation>,
    pub revision: u64,
    pub updated: u64,
}

impl ApiMeta {
    /// The store key: `ns` and the base path (`guest/club`; `guest/` for `/`).
    pub fn key(&self) -> String {
        format!("{}{}", self.namespace, self.basepath)
    }

    /// The operation for `verb` on the request path `rel` (relative to the base path).
    pub fn find(&self, verb: &str, rel: &str) -> Option<&Operation> {
        self.operations.iter().find(|o| o.verb == verb && path_matches(&o.relpath, rel))
    }
}

fn segment_ok(s: &str) -> bool {
    let param = s.len() > 2 && s.starts_with('{') && s.ends_with('}');
    let inner = if param { &s[1..s.len() - 1] } else { s };
    !inner.is_empty()
        && inner != "."
        && inner != ".."
        && inner
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~'))
}

/// Validates a base or relative path and normalizes it (no trailing slash; `/` stays `/`).
pub fn normalize_path(p: &str) -> Result<String, RouteError> {
    let bad = || RouteError::Path(p.chars().take(MAX_PATH_LEN).collect());
    if !p.starts_with('/') || p.len() > MAX_PATH_LEN {
        return Err(bad());
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok("/".into());
    }
    if !trimmed[1..].split('/').all(segment_ok) {
        return Err(bad());
    }
    Ok(trimmed.to_owned())
}

/// A lower-case verb of [`VERBS`].
pub fn normalize_verb(v: &str) -> Result<String, RouteError> {
    let l = v.to_ascii_lowercase();
    VERBS.contains(&l.as_str()).then_some(l).ok_or_else(|| RouteError::Verb(v.to_owned()))
}

/// Whether request path `rel` matches template `tpl`: literal segments equal, `{name}`
/// segments any non-empty segment.
pub fn path_matches(tpl: &str, rel: &str) -> bool {
    let t: Vec<&str> = tpl.split('/').filter(|s| !s.is_empty()).collect();
    let r: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    t.len() == r.len()
        && t.iter().zip(&r).all(|(t, r)| (t.starts_with('{') && t.ends_with('}')) || t == r)
}

/// The `{name}` parameters of a relative path.
pub fn path_parameters(tpl: &str) -> Vec<&str> {
    tpl.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(normalize_path("/club/").unwrap(), "/club");
        assert_eq!(normalize_path("/").unwrap(), "/");
        assert_eq!(normalize_path("/books/{isbn}").unwrap(), "/books/{isbn}");
        for bad in ["club", "/a/../b", "/a b", "/a//b", "/{}", "/a?b"] {
            assert!(normalize_path(bad).is_err(), "{bad}");
        }
        assert!(path_matches("/books/{isbn}", "/books/978-0"));
        assert!(path_matches("/books", "/books/"));
        assert!(!path_matches("/books/{isbn}", "/books"));
        assert!(!path_matches("/books", "/films"));
        assert_eq!(path_parameters("/a/{x}/b/{y}"), vec!["x", "y"]);
    }

    #[test]
    fn verbs() {
        assert_eq!(normalize_verb("GET").unwrap(), "get");
        assert!(normalize_verb("TRACE").is_err());
    }
}
