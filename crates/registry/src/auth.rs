//! Credentials and challenges: what to send a registry, and where it comes from.
//!
//! Credentials are looked up as Docker does: `$REGISTRY_AUTH_FILE` (the containers tools'
//! `auth.json`) first when set, then Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): its `credHelpers` entry for the host, else its `credsStore`, else its
//! `auths` entry. A credential helper that fails is skipped with a note (anonymous access may
//! still work). [`login`] writes an `auths` entry as `docker login` does.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::reference::DOCKER_HUB;

/// What to authenticate with.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (or a personal access token).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// An identity token (OAuth2 refresh token) from a credential helper or `config.json`.
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::IdentityToken(_) => write!(f, "IdentityToken(***)"),
        }
    }
}

impl Credentials {
    /// The `Authorization` header value for basic auth, when these are basic credentials.
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Credentials::IdentityToken(_) => None,
        }
    }
}

/// The key a registry has in `config.json` (Docker Hub's is its old index URL).
pub fn config_key(registry: &str) -> String {
    if registry == DOCKER_HUB {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

/// Docker's `config.json`: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// The file `login` writes: `$REGISTRY_AUTH_FILE` when set, else Docker's `config.json`.
pub fn login_file() -> Option<PathBuf> {
    std::env::var_os("REGISTRY_AUTH_FILE")
        .map(PathBuf::from)
        .or_else(docker_config_path)
}

/// Credentials found for a registry, with notes about sources that failed.
#[derive(Debug, Default)]
pub struct Lookup {
    /// What was found.
    pub credentials: Option<Credentials>,
    /// Sources skipped, and why (for the user; never contain secrets).
    pub notes: Vec<String>,
}

/// Look up credentials for `registry` (as written in references: `docker.io`, `host:port`).
pub fn lookup(registry: &str) -> Result<Lookup> {
    let mut out = Lookup::default();
    let mut files = Vec::new();
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(f));
    }
    files.extend(docker_config_path());
    for path in files {
        let Some(config) = read_config(&path)? else {
            continue;
        };
        if let Some(c) = from_config(&path, &config, registry, &mut out.notes)? {
            out.credentials = Some(c);
            return Ok(out);
        }
    }
    Ok(out)
}

fn read_config(path: &Path) -> Result<Option<Map<String, Value>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::File {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        }
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(Error::File {
            path: path.to_path_buf(),
            reason: "not a JSON object".into(),
        }),
        Err(e) => Err(Error::File {
            path: path.to_path_buf(),
            reason: format!("not valid JSON: {e}"),
        }),
    }
}

/// The keys an entry for `registry` may have in a config file.
fn keys_for(registry: &str) -> Vec<String> {
    let mut keys = vec![config_key(registry), registry.to_string()];
    if registry == DOCKER_HUB {
        keys.extend(
            [
                "index.docker.io",
                "registry-1.docker.io",
                "https://registry-1.docker.io",
            ]
            .map(String::from),
        );
    }
    keys.push(format!("https://{registry}"));
    keys.push(format!("http://{registry}"));
    keys
}

fn from_config(
    path: &Path,
    config: &Map<String, Value>,
    registry: &str,
    notes: &mut Vec<String>,
) -> Result<Option<Credentials>> {
    let keys = keys_for(registry);
    let helper = config
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|h| keys.iter().find_map(|k| h.get(k)))
        .and_then(Value::as_str)
        .or_else(|| config.get("credsStore").and_then(Value::as_str));
    if let Some(helper) = helper {
        match run_helper(helper, &config_key(registry)) {
            Ok(Some(c)) => return Ok(Some(c)),
            Ok(None) => {}
            Err(reason) => notes.push(format!(
                "credential helper `docker-credential-{helper}` for {registry} failed ({reason}); trying without it"
            )),
        }
    }
    let Some(auths) = config.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    let Some(entry) = keys.iter().find_map(|k| auths.get(k)) else {
        return Ok(None);
    };
    if let Some(t) = entry
        .get("identitytoken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(Credentials::IdentityToken(t.to_string())));
    }
    if let Some(a) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let bad = |reason: &str| Error::File {
            path: path.to_path_buf(),
            reason: format!("auths entry for {registry}: {reason}"),
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .map_err(|_| bad("`auth` is not base64"))?;
        let s = String::from_utf8(raw).map_err(|_| bad("`auth` is not UTF-8"))?;
        let (u, p) = s
            .split_once(':')
            .ok_or_else(|| bad("`auth` is not user:password"))?;
        return Ok(Some(Credentials::Basic {
            username: u.to_string(),
            password: p.to_string(),
        }));
    }
    Ok(None)
}

/// Run `docker-credential-<helper> get`; `Ok(None)` when it has nothing for the host.
fn run_helper(helper: &str, server: &str) -> std::result::Result<Option<Credentials>, String> {
    if helper.is_empty()
        || !helper
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err("not a valid helper name".into());
    }
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its exit status, not the pipe.
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(format!("exit status {}", out.status.code().unwrap_or(-1)));
    }
    let v: Value = serde_json::from_str(&text).map_err(|_| "output is not JSON".to_string())?;
    let user = v.get("Username").and_then(Value::as_str).unwrap_or("");
    let secret = v.get("Secret").and_then(Value::as_str).unwrap_or("");
    Ok(match (user, secret) {
        (_, "") => None,
        ("<token>", s) => Some(Credentials::IdentityToken(s.to_string())),
        (u, s) => Some(Credentials::Basic {
            username: u.to_string(),
            password: s.to_string(),
        }),
    })
}

/// Write `auths[registry] = {"auth": base64(user:password)}` into `path` (created when missing,
/// mode 0600, other fields kept), as `docker login` does without a credential store.
pub fn store_login(path: &Path, registry: &str, username: &str, password: &str) -> Result<()> {
    let mut config = read_config(path)?.unwrap_or_default();
    let auths = config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(auths) = auths else {
        return Err(Error::File {
            path: path.to_path_buf(),
            reason: "`auths` is not an object".into(),
        });
    };
    let mut entry = Map::new();
    entry.insert(
        "auth".into(),
        Value::String(
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")),
        ),
    );
    auths.insert(config_key(registry), Value::Object(entry));
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(config)).map_err(|e| Error::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::File {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    // A new temp file beside it (mode 0600), fsynced, renamed over: never a half-written
    // credentials file, never one readable by others.
    let io = |e: std::io::Error| Error::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
    tmp.write_all(&bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=...`.
    Basic,
    /// `Bearer realm=...,service=...,scope=...`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The service name to ask for.
        service: Option<String>,
        /// The scope the registry asked for, if it said.
        scope: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` header value (the first scheme this client knows).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        _ => None,
    }
}

fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i] == b' ') {
            i += 1;
        }
        let k0 = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        let key = s[k0..i].trim().to_ascii_lowercase();
        i += 1;
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                let ch = s[i..].chars().next().unwrap_or(' ');
                v.push(ch);
                i += ch.len_utf8();
            }
            i += 1;
            v
        } else {
            let v0 = i.min(b.len());
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            s[v0..i.min(b.len())].trim().to_string()
        };
        if !key.is_empty() {
            out.insert(key, value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Bearer realm="http://127.0.0.1:1/t""#),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn config_entries_in_dockers_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpwOng="},"r.example:5000":{"auth":"YTpi"},"tok.example":{"identitytoken":"T"}},"credHelpers":{"h.example":"ocikit-test-missing"}}"#,
        )
        .expect("write");
        let config = read_config(&path).expect("read").expect("some");
        let mut notes = Vec::new();
        assert_eq!(
            from_config(&path, &config, "docker.io", &mut notes).expect("hub"),
            Some(Credentials::Basic {
                username: "u".into(),
                password: "p:x".into()
            })
        );
        assert_eq!(
            from_config(&path, &config, "r.example:5000", &mut notes).expect("r"),
            Some(Credentials::Basic {
                username: "a".into(),
                password: "b".into()
            })
        );
        assert_eq!(
            from_config(&path, &config, "tok.example", &mut notes).expect("t"),
            Some(Credentials::IdentityToken("T".into()))
        );
        assert!(notes.is_empty());
        assert_eq!(
            from_config(&path, &config, "h.example", &mut notes).expect("h"),
            None
        );
        assert_eq!(notes.len(), 1);
        assert!(notes[0].starts_with(
            "credential helper `docker-credential-ocikit-test-missing` for h.example failed ("
        ));
    }

    #[test]
    fn login_keeps_other_fields() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("sub").join("config.json");
        std::fs::create_dir_all(path.parent().expect("p")).expect("mkdir");
        std::fs::write(
            &path,
            r#"{"psFormat":"x","auths":{"o.example":{"auth":"eDp5"}}}"#,
        )
        .expect("write");
        store_login(&path, "127.0.0.1:5000", "user", "pw").expect("login");
        let v: Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(v["psFormat"], "x");
        assert_eq!(v["auths"]["o.example"]["auth"], "eDp5");
        assert_eq!(v["auths"]["127.0.0.1:5000"]["auth"], "dXNlcjpwdw==");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
