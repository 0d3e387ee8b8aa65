//! Basic authentication against an htpasswd file of bcrypt entries (`user:$2y$...`, as
//! `htpasswd -B` writes them; `#` comments and blank lines are skipped). Other hash kinds
//! (`{SHA}`, `$apr1$`, crypt) are refused when the file is read.
//!
//! bcrypt is slow on purpose (tens of milliseconds a check), and clients send the same
//! `Authorization` header with every request, so a header that checked out once is
//! remembered (by its SHA-256, at most [`CACHE_LIMIT`] of them, for the server's lifetime;
//! the file is read once, at start). A wrong password is checked with bcrypt every time.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;

use super::ServeError;

/// How many accepted `Authorization` headers are remembered before the memory is cleared.
pub const CACHE_LIMIT: usize = 1024;

/// The users of an htpasswd file.
#[derive(Debug)]
pub struct Htpasswd {
    users: HashMap<String, String>,
    accepted: Mutex<HashMap<String, String>>,
}

impl Htpasswd {
    /// Read an htpasswd file.
    pub fn load(path: &Path) -> Result<Htpasswd, ServeError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServeError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Htpasswd::parse(&text).map_err(|(line, reason)| ServeError::Htpasswd {
            path: path.to_path_buf(),
            line,
            reason,
        })
    }

    /// Parse htpasswd text; an error names the line (1-based).
    pub fn parse(text: &str) -> Result<Htpasswd, (usize, String)> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err((i + 1, "not `user:hash`".into()));
            };
            if user.is_empty() {
                return Err((i + 1, "empty user name".into()));
            }
            let bcrypt = ["$2a$", "$2b$", "$2x$", "$2y$"]
                .iter()
                .any(|p| hash.starts_with(p));
            if !bcrypt || hash.len() != 60 {
                return Err((
                    i + 1,
                    format!("user `{user}`: not a bcrypt hash (`htpasswd -B` writes them)"),
                ));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        if users.is_empty() {
            return Err((0, "no users".into()));
        }
        Ok(Htpasswd {
            users,
            accepted: Mutex::new(HashMap::new()),
        })
    }

    /// The user an `Authorization` header value authenticates, if it does.
    pub fn check(&self, authorization: Option<&str>) -> Option<String> {
        let value = authorization?.trim();
        let (scheme, creds) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let key = ocikit_layout::Digest::sha256(value.as_bytes()).to_string();
        if let Some(user) = self.memory().get(&key) {
            return Some(user.clone());
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(creds.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        let hash = self.users.get(user)?;
        if !bcrypt::verify(password, hash).unwrap_or(false) {
            return None;
        }
        let mut memory = self.memory();
        if memory.len() >= CACHE_LIMIT {
            memory.clear();
        }
        memory.insert(key, user.to_string());
        Some(user.to_string())
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.accepted.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // bcrypt of `secret` at cost 4 (fast), with the `$2y$` prefix `htpasswd -B` writes.
    const ALICE: &str = "alice:$2y$04$SNKdz.aJtlOoI89CqSM6QODAw.F8hnPgluZSQ.OFrB2DSxeyBw/3C";

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    #[test]
    fn bcrypt_entries_authenticate() {
        let h = Htpasswd::parse(&format!("# users\n\n{ALICE}\n")).expect("parses");
        assert_eq!(h.check(Some(&basic("alice:secret"))), Some("alice".into()));
        // Remembered: the second check is the cached one.
        assert_eq!(h.check(Some(&basic("alice:secret"))), Some("alice".into()));
        assert_eq!(h.check(Some(&basic("alice:wrong"))), None);
        assert_eq!(h.check(Some(&basic("bob:secret"))), None);
        assert_eq!(h.check(Some("Bearer abc")), None);
        assert_eq!(h.check(Some("Basic !!!")), None);
        assert_eq!(h.check(None), None);
    }

    #[test]
    fn other_hashes_are_refused_naming_the_line() {
        let cases = [
            (
                "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
                (
                    1,
                    "user `bob`: not a bcrypt hash (`htpasswd -B` writes them)".to_string(),
                ),
            ),
            (
                "\nbob:$apr1$x$y",
                (
                    2,
                    "user `bob`: not a bcrypt hash (`htpasswd -B` writes them)".to_string(),
                ),
            ),
            ("nocolon", (1, "not `user:hash`".to_string())),
            ("", (0, "no users".to_string())),
        ];
        for (text, want) in cases {
            assert_eq!(Htpasswd::parse(text).err(), Some(want), "{text}");
        }
    }
}
