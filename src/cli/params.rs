//! Turning command-line words into API values: `-p KEY VALUE` / `-P file` parameters,
//! annotations, entity names, and `--since`/`--upto` times.
//!
//! Owns wsk's rule that a value is JSON when it parses as JSON and a string otherwise, and
//! that later parameters override earlier ones (a file first, then each `-p` in order).
//! It must never talk to the server.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::error::CliError;
use crate::model::{EntityName, KeyValue};

/// wsk's rule: `5` is a number, `{"a":1}` an object, `"5"` the string 5, `Ada` the string Ada.
pub fn parse_value(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_owned()))
}

/// Reads a JSON object from a file (`-P params.json`, `-A annotations.json`).
pub fn read_object_file(path: &Path, what: &'static str) -> Result<Map<String, Value>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(CliError::BadFile {
            path: path.to_owned(),
            message: format!("the {what} must be a JSON object"),
        }),
        Err(e) => Err(CliError::BadFile {
            path: path.to_owned(),
            message: format!("the {what} is not valid JSON: {e}"),
        }),
    }
}

/// Collects a file's pairs then `-p` pairs (clap hands them over flat: k1 v1 k2 v2), the
/// later value of a key replacing the earlier one in place so the order stays stable.
pub fn collect(
    flat_pairs: &[String],
    file: Option<&Path>,
    what: &'static str,
) -> Result<Vec<KeyValue>, CliError> {
    let mut out: Vec<KeyValue> = Vec::new();
    let mut put = |key: String, value: Value| match out.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = value,
        None => out.push(KeyValue { key, value }),
    };
    if let Some(path) = file {
        for (k, v) in read_object_file(path, what)? {
            put(k, v);
        }
    }
    if flat_pairs.len() % 2 != 0 {
        return Err(CliError::Usage(format!("each {what} needs a KEY and a VALUE")));
    }
    for pair in flat_pairs.chunks(2) {
        if let [k, v] = pair {
            if k.is_empty() {
                return Err(CliError::Usage(format!("a {what} key is empty")));
            }
            put(k.clone(), parse_value(v));
        }
    }
    Ok(out)
}

/// Key-value pairs as the JSON object an invoke sends.
pub fn to_object(kvs: Vec<KeyValue>) -> Value {
    Value::Object(kvs.into_iter().map(|kv| (kv.key, kv.value)).collect())
}

/// An entity as named on the command line, as wsk names it: `name` or `package/name` (in the
/// caller's namespace, `_`), `/namespace/name` or `/namespace/package/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityRef {
    pub namespace: String,
    pub package: Option<EntityName>,
    pub name: EntityName,
}

impl EntityRef {
    pub fn parse(s: &str) -> Result<Self, CliError> {
        let bad = |why: String| CliError::Usage(format!("invalid name {s:?}: {why}"));
        let (namespace, rest) = match s.strip_prefix('/') {
            Some(rest) => match rest.split_once('/') {
                Some((ns, rest)) => (ns.to_owned(), rest),
                None => {
                    return Err(bad("a fully qualified name is /namespace/[package/]name".into()))
                }
            },
            None => ("_".to_owned(), s),
        };
        let (package, name) = match rest.split_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, rest),
        };
        if name.contains('/') {
            return Err(bad("at most one package: [/namespace/][package/]name".into()));
        }
        if namespace != "_" {
            EntityName::parse(&namespace).map_err(|e| bad(e.to_string()))?;
        }
        let package = package.map(EntityName::parse).transpose().map_err(|e| bad(e.to_string()))?;
        let name = EntityName::parse(name).map_err(|e| bad(e.to_string()))?;
        Ok(Self { namespace, package, name })
    }

    /// A package (or any entity that cannot sit inside a package): `name` or
    /// `/namespace/name`.
    pub fn parse_top(s: &str) -> Result<Self, CliError> {
        let r = Self::parse(s)?;
        if r.package.is_some() {
            return Err(CliError::Usage(format!(
                "invalid name {s:?}: a package name is name or /namespace/name"
            )));
        }
        Ok(r)
    }

    /// `/namespace/[package/]name`, as wsk prints it.
    pub fn path(&self) -> String {
        match &self.package {
            Some(p) => format!("/{}/{p}/{}", self.namespace, self.name),
            None => format!("/{}/{}", self.namespace, self.name),
        }
    }

    /// `[package/]name`.
    pub fn short(&self) -> String {
        match &self.package {
            Some(p) => format!("{p}/{}", self.name),
            None => self.name.to_string(),
        }
    }

    /// The API path segments of this entity in `collection` (`actions`, `packages`).
    pub fn segments<'a>(&'a self, collection: &'a str) -> Vec<&'a str> {
        let mut out = vec!["namespaces", self.namespace.as_str(), collection];
        out.extend(self.package.as_ref().map(EntityName::as_str));
        out.push(self.name.as_str());
        out
    }
}

/// A point in time for `--since`/`--upto`: milliseconds since the epoch (OpenWhisk's unit),
/// an RFC 3339 time (`2024-05-01T10:00:00Z`), or a duration ago (`10m`, `2h`).
pub fn parse_time(s: &str, now: SystemTime) -> Result<u64, CliError> {
    let ms = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    };
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(ms(t));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(ms(now.checked_sub(d).unwrap_or(UNIX_EPOCH)));
    }
    Err(CliError::Usage(format!(
        "{s:?} is not a time: use milliseconds since the epoch, an RFC 3339 time or a duration ago like 10m"
    )))
}

/// Milliseconds since the epoch at `t`.
pub fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn values_are_json_when_they_parse() {
        assert_eq!(parse_value("Ada"), json!("Ada"));
        assert_eq!(parse_value("5"), json!(5));
        assert_eq!(parse_value("\"5\""), json!("5"));
        assert_eq!(parse_value("true"), json!(true));
        assert_eq!(parse_value("{\"a\":[1]}"), json!({"a":[1]}));
        assert_eq!(parse_value("{not json"), json!("{not json"));
        assert_eq!(parse_value(""), json!(""));
    }

    #[test]
    fn later_params_override_earlier_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        std::fs::write(&f, r#"{"name":"file","keep":1}"#).unwrap();
        let kvs =
            collect(&strings(&["name", "Ada", "n", "2", "n", "3"]), Some(&f), "parameter").unwrap();
        assert_eq!(to_object(kvs.clone()), json!({"name":"Ada","keep":1,"n":3}));
        // The file's keys come in serde_json's (sorted) order; -p replaced "name" in place.
        let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["keep", "name", "n"]);
        assert!(collect(&strings(&["only-key"]), None, "parameter").is_err());
        assert!(collect(&strings(&["", "v"]), None, "parameter").is_err());
    }

    #[test]
    fn param_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.json");
        std::fs::write(&list, "[1,2]").unwrap();
        let e = collect(&[], Some(&list), "parameter file").unwrap_err();
        assert!(e.to_string().contains("list.json") && e.to_string().contains("JSON object"));
        let broken = dir.path().join("broken.json");
        std::fs::write(&broken, "{").unwrap();
        assert!(collect(&[], Some(&broken), "parameter file")
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
        let missing = dir.path().join("missing.json");
        assert!(matches!(
            collect(&[], Some(&missing), "parameter file"),
            Err(CliError::ReadFile { .. })
        ));
    }

    #[test]
    fn entity_names() {
        let r = EntityRef::parse("hello").unwrap();
        assert_eq!(
            (r.namespace.as_str(), r.name.as_str(), r.path()),
            ("_", "hello", "/_/hello".into())
        );
        let r = EntityRef::parse("/guest/hello").unwrap();
        assert_eq!(r.namespace, "guest");
        let r = EntityRef::parse("utils/echo").unwrap();
        assert_eq!((r.path(), r.short()), ("/_/utils/echo".into(), "utils/echo".into()));
        assert_eq!(r.segments("actions"), ["namespaces", "_", "actions", "utils", "echo"]);
        let r = EntityRef::parse("/whisk.system/utils/echo").unwrap();
        assert_eq!((r.namespace.as_str(), r.package.unwrap().as_str()), ("whisk.system", "utils"));
        for bad in ["/guest", "/gu est!/x", "../x", "", "/guest/a/b/c", "a/b/c", "p/../x"] {
            assert!(matches!(EntityRef::parse(bad), Err(CliError::Usage(_))), "{bad:?}");
        }
        assert!(EntityRef::parse_top("p/x").is_err());
        assert_eq!(EntityRef::parse_top("/whisk.system/utils").unwrap().name.as_str(), "utils");
    }

    #[test]
    fn times() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(parse_time("1234", now).unwrap(), 1234);
        assert_eq!(parse_time("1970-01-01T00:00:10Z", now).unwrap(), 10_000);
        assert_eq!(parse_time("10s", now).unwrap(), 9_990_000);
        assert!(matches!(parse_time("yesterday", now), Err(CliError::Usage(_))));
    }
}
