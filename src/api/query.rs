//! Paths and query strings: percent-decoding and typed parameters.

use std::collections::HashMap;

use super::response::ApiError;

/// Percent-decodes `s` (and `+` as space when `plus` is set); `None` on bad escapes or bytes
/// that are not UTF-8.
pub fn decode(s: &str, plus: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The parsed query string; the last value of a repeated name wins.
#[derive(Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(q: Option<&str>) -> Result<Self, ApiError> {
        let mut m = HashMap::new();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = || ApiError::bad_request("The query string is not correctly encoded.");
            m.insert(decode(k, true).ok_or_else(bad)?, decode(v, true).ok_or_else(bad)?);
        }
        Ok(Self(m))
    }

    pub fn str(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// `true`/`false`; absent means `default`.
    pub fn bool(&self, k: &str, default: bool) -> Result<bool, ApiError> {
        match self.str(k) {
            None => Ok(default),
            Some("true") | Some("") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(ApiError::bad_request(format!(
                "The value of '{k}' must be true or false, not {v:?}."
            ))),
        }
    }

    pub fn u64(&self, k: &str) -> Result<Option<u64>, ApiError> {
        self.str(k)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "The value of '{k}' must be a non-negative integer, not {v:?}."
                    ))
                })
            })
            .transpose()
    }

    /// `limit` as OpenWhisk reads it: absent or 0 means `default`, above `max` is refused.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.u64("limit")? {
            None | Some(0) => Ok(default),
            Some(n) if n <= max as u64 => Ok(n as usize),
            Some(n) => Err(ApiError::bad_request(format!(
                "The value of 'limit' ({n}) is not in the range 0..={max}."
            ))),
        }
    }

    pub fn skip(&self) -> Result<usize, ApiError> {
        Ok(self.u64("skip")?.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        assert_eq!(decode("a%20b", false).unwrap(), "a b");
        assert_eq!(decode("a+b", true).unwrap(), "a b");
        assert_eq!(decode("a+b", false).unwrap(), "a+b");
        assert!(decode("%zz", false).is_none());
        assert!(decode("%ff", false).is_none());
        assert!(decode("%4", false).is_none());
    }

    #[test]
    fn typed_params() {
        let q = Query::parse(Some("limit=5&skip=2&blocking=true&x=%41")).unwrap();
        assert_eq!(q.limit(30, 200).unwrap(), 5);
        assert_eq!(q.skip().unwrap(), 2);
        assert!(q.bool("blocking", false).unwrap());
        assert!(!q.bool("result", false).unwrap());
        assert_eq!(q.str("x"), Some("A"));
        assert!(Query::parse(Some("limit=201")).unwrap().limit(30, 200).is_err());
        assert!(Query::parse(Some("limit=-1")).unwrap().limit(30, 200).is_err());
        assert!(Query::parse(Some("blocking=yes")).unwrap().bool("blocking", false).is_err());
    }
}
