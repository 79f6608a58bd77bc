//! Where the client finds its server and its key.
//!
//! Owns the precedence rule, flag > environment > config file > default, and the parsing of
//! the config file (`KEY=VALUE` lines like `~/.wskprops`). Resolution is a pure function of
//! its inputs ([`Inputs`]), so every branch is unit-tested without touching the process
//! environment. It must never send anything over the network, and never print a secret.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::model::{AuthKey, GUEST_KEY};

/// Where the standalone server listens by default.
pub const DEFAULT_APIHOST: &str = "http://127.0.0.1:3233";
/// The port assumed when an apihost names no scheme and no port (`myhost` -> `myhost:3233`).
pub const DEFAULT_PORT: u16 = 3233;
/// Environment variable naming the API host.
pub const ENV_APIHOST: &str = "HEARTH_APIHOST";
/// Environment variable holding the key (`uuid:secret`).
pub const ENV_AUTH: &str = "HEARTH_AUTH";
/// Environment variable naming the config file (instead of `~/.hearth/config`).
pub const ENV_CONFIG: &str = "HEARTH_CONFIG";
/// OpenWhisk's variable naming the wsk properties file (instead of `~/.wskprops`).
pub const ENV_WSK_CONFIG: &str = "WSK_CONFIG_FILE";

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("apihost {value:?} ({source_}) is not a URL of the form http://host[:port][/path]: {reason}")]
    BadApiHost { value: String, source_: Source, reason: String },
    #[error("apihost {value:?} ({source_}) uses https; hearth's client speaks plain HTTP only (put a TLS proxy in front of it on loopback)")]
    TlsUnsupported { value: String, source_: Source },
    #[error("the key from {source_} is not of the form uuid:secret")]
    BadKey { source_: Source },
    #[error("no key configured for {apihost}: pass --auth, set {ENV_AUTH}, or write AUTH=uuid:secret in the config file (the guest key is used only on loopback)")]
    NoKey { apihost: String },
    #[error("cannot read the config file {path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("{path}:{line}: expected KEY=VALUE")]
    BadLine { path: PathBuf, line: usize },
}

/// Where a setting came from; shown by `hearth property get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(&'static str),
    File(PathBuf),
    Default,
    /// The public guest key, chosen because the server is on loopback.
    GuestDefault,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("command-line flag"),
            Source::Env(var) => write!(f, "environment {var}"),
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::Default => f.write_str("default"),
            Source::GuestDefault => f.write_str("default guest key, loopback only"),
        }
    }
}

/// A parsed API host: plain HTTP to `host:port`, requests under `base_path` + `/api/v1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiHost {
    /// The host as written, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// A path prefix without a trailing slash (empty for the root), for servers behind a
    /// reverse proxy under a sub-path.
    pub base_path: String,
}

impl ApiHost {
    /// Parses `http://host[:port][/path]`, `host:port` or `host`. Without a scheme the
    /// server is hearth's own (port 3233 unless given); with `http://` the port defaults to 80.
    pub fn parse(value: &str, source: &Source) -> Result<Self, ConfigError> {
        let bad = |reason: &str| ConfigError::BadApiHost {
            value: value.to_owned(),
            source_: source.clone(),
            reason: reason.to_owned(),
        };
        let trimmed = value.trim();
        let (has_scheme, rest) = if let Some(r) = trimmed.strip_prefix("http://") {
            (true, r)
        } else if trimmed.starts_with("https://") {
            return Err(ConfigError::TlsUnsupported {
                value: value.to_owned(),
                source_: source.clone(),
            });
        } else if trimmed.contains("://") {
            return Err(bad("only http:// is supported"));
        } else {
            (false, trimmed)
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad("the host is empty"));
        }
        if authority.contains('@') || path.contains(['?', '#']) {
            return Err(bad("user info, queries and fragments are not allowed"));
        }
        let default_port = if has_scheme { 80 } else { DEFAULT_PORT };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("the port is not a number 1..65535"))?,
                None if after.is_empty() => default_port,
                None => return Err(bad("junk after ']'")),
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => {
                    (h.to_owned(), p.parse().map_err(|_| bad("the port is not a number 1..65535"))?)
                }
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() || port == 0 {
            return Err(bad("the host is empty or the port is 0"));
        }
        Ok(Self { host, port, base_path: path.trim_end_matches('/').to_owned() })
    }

    /// True for `localhost` and loopback addresses: the only hosts the guest key is sent to.
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
    }

    /// `host:port`, with brackets around an IPv6 address (for the Host header and messages).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for ApiHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.base_path)
    }
}

/// The values read from a config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileValues {
    pub path: PathBuf,
    pub apihost: Option<String>,
    pub auth: Option<String>,
}

/// Parses `KEY=VALUE` lines; `#` starts a comment line, keys other than APIHOST and AUTH
/// are ignored so a `.wskprops` (NAMESPACE=, APIVERSION=) can be used as it is.
pub fn parse_file(path: &Path, text: &str) -> Result<FileValues, ConfigError> {
    let mut out = FileValues { path: path.to_owned(), ..FileValues::default() };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or(ConfigError::BadLine { path: path.to_owned(), line: i + 1 })?;
        let value = value.trim().to_owned();
        match key.trim() {
            "APIHOST" => out.apihost = Some(value),
            "AUTH" => out.auth = Some(value),
            _ => {}
        }
    }
    Ok(out)
}

/// The config file's path: `$HEARTH_CONFIG`, else `$HOME/.hearth/config`.
pub fn file_path(env_config: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    match env_config {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => home.filter(|h| !h.is_empty()).map(|h| Path::new(h).join(".hearth").join("config")),
    }
}

/// The files tried in order: `$HEARTH_CONFIG` alone when set; else `~/.hearth/config`, then
/// OpenWhisk's `$WSK_CONFIG_FILE` or `~/.wskprops`, so a user coming from OpenWhisk keeps
/// the properties file they have (the same `APIHOST=`/`AUTH=` lines) until they write a
/// hearth config.
pub fn file_paths(
    env_config: Option<&str>,
    env_wsk: Option<&str>,
    home: Option<&str>,
) -> Vec<PathBuf> {
    if let Some(p) = env_config.filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let home = home.filter(|h| !h.is_empty()).map(Path::new);
    let mut out: Vec<PathBuf> = file_path(None, home.and_then(Path::to_str)).into_iter().collect();
    match env_wsk.filter(|p| !p.is_empty()) {
        Some(p) => out.push(PathBuf::from(p)),
        None => out.extend(home.map(|h| h.join(".wskprops"))),
    }
    out
}

/// Reads the config file if it exists. A missing file is normal (like a missing .wskprops);
/// one that exists but cannot be read is an error, so a typo in permissions is not silently
/// replaced by defaults.
pub fn read_file(path: &Path) -> Result<Option<FileValues>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_file(path, &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::Unreadable { path: path.to_owned(), message: e.to_string() }),
    }
}

/// Everything resolution looks at.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub flag_apihost: Option<String>,
    pub flag_auth: Option<String>,
    pub env_apihost: Option<String>,
    pub env_auth: Option<String>,
    pub file: Option<FileValues>,
}

impl Inputs {
    /// Reads the process environment and the config file it points to.
    pub fn from_process(
        flag_apihost: Option<String>,
        flag_auth: Option<String>,
    ) -> Result<Self, ConfigError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut file = None;
        let paths = file_paths(
            var(ENV_CONFIG).as_deref(),
            var(ENV_WSK_CONFIG).as_deref(),
            var("HOME").as_deref(),
        );
        for p in paths {
            if let Some(found) = read_file(&p)? {
                file = Some(found);
                break;
            }
        }
        Ok(Self {
            flag_apihost,
            flag_auth,
            env_apihost: var(ENV_APIHOST),
            env_auth: var(ENV_AUTH),
            file,
        })
    }
}

/// The settings in force for one command.
#[derive(Debug, Clone)]
pub struct Config {
    pub apihost: ApiHost,
    pub apihost_source: Source,
    pub auth: AuthKey,
    pub auth_source: Source,
}

impl Config {
    /// The key for display: the uuid and a mask, never the secret.
    pub fn masked_auth(&self) -> String {
        format!("{}:********", self.auth.uuid)
    }
}

/// Picks the first value in precedence order.
fn pick(
    flag: &Option<String>,
    env: (&'static str, &Option<String>),
    file: Option<(&Path, &Option<String>)>,
) -> Option<(String, Source)> {
    if let Some(v) = flag {
        return Some((v.clone(), Source::Flag));
    }
    if let Some(v) = env.1 {
        return Some((v.clone(), Source::Env(env.0)));
    }
    if let Some((path, Some(v))) = file {
        return Some((v.clone(), Source::File(path.to_owned())));
    }
    None
}

/// The API host alone, by the same precedence (for reports that must work without a key).
pub fn resolve_apihost(inputs: &Inputs) -> Result<(ApiHost, Source), ConfigError> {
    let (value, source) = pick(
        &inputs.flag_apihost,
        (ENV_APIHOST, &inputs.env_apihost),
        inputs.file.as_ref().map(|f| (f.path.as_path(), &f.apihost)),
    )
    .unwrap_or_else(|| (DEFAULT_APIHOST.to_owned(), Source::Default));
    let apihost = ApiHost::parse(&value, &source)?;
    Ok((apihost, source))
}

/// Applies flag > environment > file > default to each setting. The guest key is the
/// default only for a loopback apihost: sending a public key to a remote server would at
/// best fail and at worst act on a shared guest namespace someone else controls.
pub fn resolve(inputs: &Inputs) -> Result<Config, ConfigError> {
    let file = inputs.file.as_ref();
    let (apihost, apihost_source) = resolve_apihost(inputs)?;
    let (auth, auth_source) = match pick(
        &inputs.flag_auth,
        (ENV_AUTH, &inputs.env_auth),
        file.map(|f| (f.path.as_path(), &f.auth)),
    ) {
        Some((value, source)) => match AuthKey::parse(value.trim()) {
            Ok(k) => (k, source),
            Err(_) => return Err(ConfigError::BadKey { source_: source }),
        },
        None if apihost.is_loopback() => match AuthKey::parse(GUEST_KEY) {
            Ok(k) => (k, Source::GuestDefault),
            Err(_) => return Err(ConfigError::BadKey { source_: Source::GuestDefault }),
        },
        None => return Err(ConfigError::NoKey { apihost: apihost.to_string() }),
    };
    Ok(Config { apihost, apihost_source, auth, auth_source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "11111111-1111-4111-8111-111111111111:aaaa";
    const KEY_B: &str = "22222222-2222-4222-8222-222222222222:bbbb";
    const KEY_C: &str = "33333333-3333-4333-8333-333333333333:cccc";

    fn file(apihost: Option<&str>, auth: Option<&str>) -> FileValues {
        FileValues {
            path: PathBuf::from("/cfg"),
            apihost: apihost.map(str::to_owned),
            auth: auth.map(str::to_owned),
        }
    }

    #[test]
    fn defaults_to_loopback_with_guest_key() {
        let c = resolve(&Inputs::default()).unwrap();
        assert_eq!(c.apihost.to_string(), "http://127.0.0.1:3233");
        assert_eq!(c.apihost_source, Source::Default);
        assert_eq!(c.auth.to_string(), GUEST_KEY);
        assert_eq!(c.auth_source, Source::GuestDefault);
    }

    #[test]
    fn flag_beats_env_beats_file() {
        let mut i = Inputs {
            flag_apihost: Some("http://127.0.0.1:1".into()),
            flag_auth: Some(KEY_A.into()),
            env_apihost: Some("http://127.0.0.1:2".into()),
            env_auth: Some(KEY_B.into()),
            file: Some(file(Some("http://127.0.0.1:3"), Some(KEY_C))),
        };
        let c = resolve(&i).unwrap();
        assert_eq!((c.apihost.port, c.apihost_source.clone()), (1, Source::Flag));
        assert_eq!(c.auth.to_string(), KEY_A);
        i.flag_apihost = None;
        i.flag_auth = None;
        let c = resolve(&i).unwrap();
        assert_eq!((c.apihost.port, c.apihost_source.clone()), (2, Source::Env(ENV_APIHOST)));
        assert_eq!((c.auth.to_string(), c.auth_source), (KEY_B.into(), Source::Env(ENV_AUTH)));
        i.env_apihost = None;
        i.env_auth = None;
        let c = resolve(&i).unwrap();
        assert_eq!(c.apihost.port, 3);
        assert_eq!(c.apihost_source, Source::File(PathBuf::from("/cfg")));
        assert_eq!(c.auth.to_string(), KEY_C);
    }

    #[test]
    fn settings_resolve_independently() {
        // The host from the environment, the key from the file.
        let i = Inputs {
            env_apihost: Some("http://127.0.0.1:9".into()),
            file: Some(file(None, Some(KEY_C))),
            ..Inputs::default()
        };
        let c = resolve(&i).unwrap();
        assert_eq!(c.apihost.port, 9);
        assert_eq!(c.auth.to_string(), KEY_C);
    }

    #[test]
    fn guest_key_never_goes_to_a_remote_host() {
        let i =
            Inputs { flag_apihost: Some("http://example.org:3233".into()), ..Default::default() };
        let e = resolve(&i).unwrap_err();
        assert!(matches!(e, ConfigError::NoKey { .. }), "{e}");
        assert!(e.to_string().contains("--auth"));
        for lo in ["localhost:3233", "http://[::1]:3233", "127.1.2.3"] {
            let i = Inputs { flag_apihost: Some(lo.into()), ..Default::default() };
            assert_eq!(resolve(&i).unwrap().auth_source, Source::GuestDefault, "{lo}");
        }
    }

    #[test]
    fn bad_key_names_its_source_not_its_value() {
        let i = Inputs { env_auth: Some("not-a-key:secret123".into()), ..Default::default() };
        let e = resolve(&i).unwrap_err();
        assert_eq!(e, ConfigError::BadKey { source_: Source::Env(ENV_AUTH) });
        assert!(!e.to_string().contains("secret123"));
    }

    #[test]
    fn apihost_forms() {
        let p = |s: &str| ApiHost::parse(s, &Source::Flag);
        let h = p("http://10.0.0.1:8080/proxy/").unwrap();
        assert_eq!((h.host.as_str(), h.port, h.base_path.as_str()), ("10.0.0.1", 8080, "/proxy"));
        assert_eq!(p("http://host").unwrap().port, 80);
        assert_eq!(p("host").unwrap().port, DEFAULT_PORT);
        assert_eq!(p("host:99").unwrap().port, 99);
        let v6 = p("http://[::1]:3233").unwrap();
        assert_eq!((v6.host.as_str(), v6.authority()), ("::1", "[::1]:3233".to_owned()));
        assert!(matches!(p("https://h"), Err(ConfigError::TlsUnsupported { .. })));
        for bad in ["", "http://", "h:port", "h:0", "ftp://h", "http://u@h", "h:1?x", "[::1"] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_file_lines() {
        let text = "# hearth\n\nAPIHOST = http://127.0.0.1:4000\nNAMESPACE=guest\nAUTH=k:v\n";
        let f = parse_file(Path::new("/x"), text).unwrap();
        assert_eq!(f.apihost.as_deref(), Some("http://127.0.0.1:4000"));
        assert_eq!(f.auth.as_deref(), Some("k:v"));
        let e = parse_file(Path::new("/x"), "APIHOST=a\njunk\n").unwrap_err();
        assert_eq!(e, ConfigError::BadLine { path: PathBuf::from("/x"), line: 2 });
    }

    #[test]
    fn config_file_location_and_missing_file() {
        assert_eq!(file_path(Some("/etc/h"), Some("/root")), Some(PathBuf::from("/etc/h")));
        assert_eq!(file_path(None, Some("/root")), Some(PathBuf::from("/root/.hearth/config")));
        assert_eq!(file_path(None, None), None);
        let wsk = |c, w, h| file_paths(c, w, h);
        assert_eq!(wsk(Some("/etc/h"), Some("/w"), Some("/root")), [PathBuf::from("/etc/h")]);
        assert_eq!(
            wsk(None, None, Some("/root")),
            [PathBuf::from("/root/.hearth/config"), PathBuf::from("/root/.wskprops")]
        );
        assert_eq!(
            wsk(None, Some("/w/props"), Some("/root")),
            [PathBuf::from("/root/.hearth/config"), PathBuf::from("/w/props")]
        );
        assert_eq!(wsk(None, Some("/w/props"), None), [PathBuf::from("/w/props")]);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_file(&dir.path().join("absent")).unwrap(), None);
        let p = dir.path().join("config");
        std::fs::write(&p, format!("AUTH={KEY_A}\n")).unwrap();
        assert_eq!(read_file(&p).unwrap().unwrap().auth.as_deref(), Some(KEY_A));
        // A directory in place of the file cannot be read: an error, not a silent default.
        assert!(matches!(read_file(dir.path()), Err(ConfigError::Unreadable { .. })));
    }

    #[test]
    fn masked_auth_hides_the_secret() {
        let c = resolve(&Inputs::default()).unwrap();
        let m = c.masked_auth();
        assert!(m.starts_with("23bc46b1-"));
        assert!(!m.contains("123zO3"));
    }
}
