//! The HTTP side of the client: one [`Client`] per registry, doing the distribution API's
//! requests with authentication, retries and redirects.
//!
//! - Scheme: HTTPS, verified against the system's roots plus any CA file given. Plain HTTP
//!   only for this machine (`localhost`, `127.0.0.0/8`) or when asked for, as Docker treats
//!   insecure registries: HTTPS is tried first, then HTTP.
//! - Auth: anonymous until the registry answers 401; then its `WWW-Authenticate` challenge
//!   says how: basic (the credentials found by [`crate::auth::lookup`] or given) or bearer (a
//!   token from the challenge's realm, one per scope, cached for the run).
//! - Retries: connection failures, 408, 429 and 5xx are tried again with exponential backoff
//!   (honouring `Retry-After`), when the request can be sent again (no body, or a body in
//!   memory). A streamed body fails with a transient error instead, and the engine's transfer
//!   moves the blob again from a fresh reader.
//! - Redirects (blob storage) are followed for `GET` and `HEAD`; `Authorization` is never sent
//!   to another host than the registry's.

pub mod repo;

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ureq::http::{self, Response};
use ureq::tls::{RootCerts, TlsConfig};

use crate::auth::{parse_challenge, Challenge, Credentials};
use crate::error::{Error, Result};
use crate::reference::is_loopback;

/// The manifest types a client accepts, in the `Accept` header of every manifest request.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws, \
application/vnd.docker.distribution.manifest.v1+json, \
application/vnd.oci.artifact.manifest.v1+json;q=0.5, \
application/json;q=0.4, */*;q=0.1";

/// Streamed bodies from this size on ask `Expect: 100-continue` first.
const EXPECT_CONTINUE_FROM: u64 = 64 << 10;

/// What a client reports while it moves bytes.
#[derive(Debug, Clone)]
pub enum Progress {
    /// A blob's bytes began to move.
    Start {
        /// The digest.
        digest: Arc<str>,
        /// Its size.
        size: u64,
    },
    /// Bytes of a blob moved.
    Bytes {
        /// The digest.
        digest: Arc<str>,
        /// How many.
        n: u64,
    },
    /// A blob the other side already had; nothing moved.
    Skipped {
        /// Its size.
        size: u64,
    },
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// How to reach a registry.
#[derive(Clone)]
pub struct ClientOptions {
    /// Allow plain HTTP to a host that is not this machine.
    pub plain_http: bool,
    /// More CA certificates (PEM) to trust, beside the system's.
    pub ca_files: Vec<PathBuf>,
    /// Credentials to use instead of looking them up.
    pub credentials: Option<Credentials>,
    /// How many times a request that may succeed again is sent in all.
    pub attempts: u32,
    /// The first backoff; it doubles per attempt, up to 10 s.
    pub backoff: Duration,
    /// Blobs moved at once.
    pub parallelism: usize,
    /// Upload in chunks of this size from the start (0: one request per blob, chunks only
    /// when the registry refuses a body as too large).
    pub chunk_size: u64,
    /// Progress reports.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("plain_http", &self.plain_http)
            .field("ca_files", &self.ca_files)
            .field("credentials", &self.credentials)
            .field("attempts", &self.attempts)
            .field("parallelism", &self.parallelism)
            .field("chunk_size", &self.chunk_size)
            .finish_non_exhaustive()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            plain_http: false,
            ca_files: Vec::new(),
            credentials: None,
            attempts: 5,
            backoff: Duration::from_millis(250),
            parallelism: 6,
            chunk_size: 0,
            progress: None,
        }
    }
}

/// A request body.
pub(crate) enum Body<'a> {
    /// None.
    Empty,
    /// Bytes in memory (can be sent again).
    Bytes(&'a [u8]),
    /// A stream of exactly this many bytes (sent once).
    Stream(&'a mut dyn Read, u64),
}

impl Body<'_> {
    fn replayable(&self) -> bool {
        !matches!(self, Body::Stream(..))
    }
}

/// A client for one registry.
pub struct Client {
    agent: ureq::Agent,
    registry: String,
    base: String,
    credentials: Option<Credentials>,
    notes: Vec<String>,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, String>>,
    opts: ClientOptions,
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("registry", &self.registry)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connect to `registry` (a host with optional port, `docker.io` for Docker Hub): pick the
    /// scheme, find credentials, learn how the registry authenticates (`GET /v2/`).
    pub fn connect(registry: &str, api_host: &str, opts: ClientOptions) -> Result<Client> {
        let agent = agent(&opts)?;
        let (credentials, notes) = match &opts.credentials {
            Some(c) => (Some(c.clone()), Vec::new()),
            None => {
                let l = crate::auth::lookup(registry)?;
                (l.credentials, l.notes)
            }
        };
        let mut client = Client {
            agent,
            registry: registry.to_string(),
            base: format!("https://{api_host}"),
            credentials,
            notes,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            opts,
            requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        };
        if client.opts.plain_http && !is_loopback(api_host) {
            // Asked for: no HTTPS attempt at all.
            client.base = format!("http://{api_host}");
            client.ping()?;
            return Ok(client);
        }
        match client.ping() {
            Ok(()) => Ok(client),
            Err(e @ Error::Transport { .. }) => {
                // Does it speak plain HTTP, as a registry (200 or 401 on /v2/)? Used for this
                // machine; otherwise said, not used.
                client.base = format!("http://{api_host}");
                match client.ping_status() {
                    Ok(200 | 401) if is_loopback(api_host) => {
                        client.ping()?;
                        Ok(client)
                    }
                    Ok(200 | 401) => Err(Error::Insecure {
                        registry: registry.to_string(),
                    }),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Notes about credential sources that failed (for the user).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The registry's name, as in references.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// `scheme://host` the API is reached at.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The options this client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// How many HTTP requests were sent (for reports and tests).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Blob bytes moved (received or sent) so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn progress(&self, p: Progress) {
        if let Progress::Bytes { n, .. } = &p {
            self.bytes.fetch_add(*n, Ordering::Relaxed);
        }
        if let Some(f) = &self.opts.progress {
            f(p);
        }
    }

    /// Check that the credentials this client has are accepted (`login`): `GET /v2/` with
    /// them, after a token when the registry uses bearer tokens.
    pub fn check_login(&self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let challenge = lock(&self.challenge).clone();
        let auth = match &challenge {
            None => return Ok(()),
            Some(Challenge::Basic) => self.credentials.as_ref().and_then(|c| c.basic_header()),
            Some(c @ Challenge::Bearer { .. }) => {
                self.fetch_token(c, "")?;
                lock(&self.tokens).get("").cloned()
            }
        };
        let resp = self.raw(
            http::Method::GET,
            &url,
            &[],
            &mut Body::Empty,
            auth.as_deref(),
        )?;
        match resp.status().as_u16() {
            200 => Ok(()),
            s => Err(Error::Auth {
                registry: self.registry.clone(),
                reason: format!("the credentials were refused: GET {url}: HTTP {s}"),
            }),
        }
    }

    /// The status of `GET /v2/`, without retries or auth.
    fn ping_status(&self) -> Result<u16> {
        let url = format!("{}/v2/", self.base);
        let resp = self.raw(http::Method::GET, &url, &[], &mut Body::Empty, None)?;
        Ok(resp.status().as_u16())
    }

    /// `GET /v2/`: reachable, and which challenge (if any) it answers with.
    fn ping(&self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let resp = self.raw(http::Method::GET, &url, &[], &mut Body::Empty, None)?;
        let status = resp.status().as_u16();
        if status == 401 {
            if let Some(c) = challenge_of(&resp) {
                *lock(&self.challenge) = Some(c);
            }
            return Ok(());
        }
        if status == 200 {
            return Ok(());
        }
        // Some registries answer /v2/ with 404 behind a proxy; the real requests will tell.
        Ok(())
    }

    /// Send a request to the registry for `scope` (`repository:NAME:pull`, or several joined
    /// by spaces), authenticating and retrying as the module says. Returns any final response;
    /// the caller judges the status.
    pub(crate) fn send(
        &self,
        method: http::Method,
        url: &str,
        headers: &[(&str, String)],
        mut body: Body<'_>,
        scope: &str,
    ) -> Result<Response<ureq::Body>> {
        let mut attempt = 1;
        let mut authed_again = false;
        loop {
            let auth = self.authorization(scope);
            let r = self.raw(method.clone(), url, headers, &mut body, auth.as_deref());
            let resp = match r {
                Ok(resp) => resp,
                Err(e) if e.is_transient() && body.replayable() && attempt < self.opts.attempts => {
                    self.sleep(attempt, None);
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let status = resp.status().as_u16();
            if status == 401 && !authed_again {
                let Some(c) = challenge_of(&resp) else {
                    return Ok(resp);
                };
                *lock(&self.challenge) = Some(c.clone());
                if let Challenge::Bearer { .. } = c {
                    self.fetch_token(&c, scope)?;
                } else if self.credentials.is_none() {
                    return Ok(resp);
                }
                authed_again = true;
                if !body.replayable() {
                    // A streamed body (an upload) met an expired token: the new token is in
                    // place, and the transfer sends the blob again from a fresh reader.
                    return Err(Error::Again {
                        url: url.to_string(),
                        reason: "the registry asked for new credentials during the upload".into(),
                    });
                }
                continue;
            }
            let retry = matches!(status, 408 | 429) || (500..600).contains(&status);
            if retry && body.replayable() && attempt < self.opts.attempts {
                let after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                self.sleep(attempt, after);
                attempt += 1;
                continue;
            }
            return Ok(resp);
        }
    }

    fn sleep(&self, attempt: u32, retry_after: Option<u64>) {
        let backoff = self
            .opts
            .backoff
            .saturating_mul(1 << (attempt - 1).min(6))
            .min(Duration::from_secs(10));
        let wait = match retry_after {
            Some(s) => Duration::from_secs(s.min(60)),
            None => backoff,
        };
        std::thread::sleep(wait);
    }

    /// The `Authorization` value for `scope`, if the registry asked for one.
    fn authorization(&self, scope: &str) -> Option<String> {
        match &*lock(&self.challenge) {
            Some(Challenge::Basic) => self.credentials.as_ref().and_then(|c| c.basic_header()),
            Some(Challenge::Bearer { .. }) => lock(&self.tokens).get(scope).cloned(),
            None => None,
        }
    }

    /// Get a bearer token for `scope` from the challenge's realm.
    fn fetch_token(&self, challenge: &Challenge, scope: &str) -> Result<()> {
        let Challenge::Bearer { realm, service, .. } = challenge else {
            return Ok(());
        };
        let mut query = Vec::new();
        if let Some(s) = service {
            query.push(format!("service={}", encode(s)));
        }
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            query.push(format!("scope={}", encode(s)));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{}", query.join("&"));
        let auth_err = |reason: String| Error::Auth {
            registry: self.registry.clone(),
            reason,
        };
        let mut resp = match &self.credentials {
            Some(Credentials::IdentityToken(t)) => {
                let mut form = vec![
                    "grant_type=refresh_token".to_string(),
                    format!("refresh_token={}", encode(t)),
                    "client_id=ocikit".to_string(),
                ];
                form.extend(query.iter().cloned());
                let body = form.join("&");
                self.raw(
                    http::Method::POST,
                    realm,
                    &[(
                        "content-type",
                        "application/x-www-form-urlencoded".to_string(),
                    )],
                    &mut Body::Bytes(body.as_bytes()),
                    None,
                )?
            }
            Some(c) => self.raw(
                http::Method::GET,
                &url,
                &[],
                &mut Body::Empty,
                c.basic_header().as_deref(),
            )?,
            None => self.raw(http::Method::GET, &url, &[], &mut Body::Empty, None)?,
        };
        let status = resp.status().as_u16();
        if status != 200 {
            let what = if self.credentials.is_some() {
                "the token service refused the credentials"
            } else {
                "the token service refused anonymous access (log in first)"
            };
            return Err(auth_err(format!("{what}: {realm}: HTTP {status}")));
        }
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| auth_err(format!("{realm}: {e}")))?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| auth_err(format!("{realm}: the token response is not JSON")))?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| auth_err(format!("{realm}: the token response has no token")))?;
        lock(&self.tokens).insert(scope.to_string(), format!("Bearer {token}"));
        Ok(())
    }

    /// One exchange, following redirects for GET and HEAD (without `Authorization` on another
    /// host). A connection failure is [`Error::Transport`].
    fn raw(
        &self,
        method: http::Method,
        url: &str,
        headers: &[(&str, String)],
        body: &mut Body<'_>,
        auth: Option<&str>,
    ) -> Result<Response<ureq::Body>> {
        let mut url = url.to_string();
        let origin = host_of(&url).to_string();
        for _ in 0..6 {
            let mut b = http::Request::builder().method(method.clone()).uri(&url);
            for (k, v) in headers {
                b = b.header(*k, v);
            }
            if let Some(a) = auth.filter(|_| host_of(&url) == origin) {
                b = b.header("authorization", a);
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let transport = |e: ureq::Error| Error::Transport {
                url: url.clone(),
                reason: e.to_string(),
            };
            let resp = match body {
                Body::Empty => {
                    let req = b.body(()).map_err(|e| Error::Transport {
                        url: url.clone(),
                        reason: e.to_string(),
                    })?;
                    self.agent.run(req).map_err(transport)?
                }
                Body::Bytes(bytes) => {
                    let req = b.body(*bytes).map_err(|e| Error::Transport {
                        url: url.clone(),
                        reason: e.to_string(),
                    })?;
                    self.agent.run(req).map_err(transport)?
                }
                Body::Stream(r, len) => {
                    if *len >= EXPECT_CONTINUE_FROM {
                        // A registry or proxy that refuses the size says so before the body.
                        b = b.header("expect", "100-continue");
                    }
                    let req = b
                        .header("content-length", len.to_string())
                        .body(ureq::SendBody::from_reader(*r))
                        .map_err(|e| Error::Transport {
                            url: url.clone(),
                            reason: e.to_string(),
                        })?;
                    self.agent.run(req).map_err(transport)?
                }
            };
            let status = resp.status().as_u16();
            let follow = matches!(status, 301 | 302 | 303 | 307 | 308)
                && (method == http::Method::GET || method == http::Method::HEAD);
            if !follow {
                return Ok(resp);
            }
            let Some(loc) = resp.headers().get("location").and_then(|v| v.to_str().ok()) else {
                return Ok(resp);
            };
            url = resolve(&url, loc);
        }
        Err(Error::Transport {
            url,
            reason: "too many redirects".into(),
        })
    }

    /// `base + path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A location the registry returned (absolute or relative), as a full URL.
    pub(crate) fn resolve(&self, location: &str) -> String {
        resolve(&self.base, location)
    }
}

fn agent(opts: &ClientOptions) -> Result<ureq::Agent> {
    let native = rustls_native_certs::load_native_certs();
    let mut certs: Vec<ureq::tls::Certificate<'static>> = native
        .certs
        .into_iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    for path in &opts.ca_files {
        let bytes = std::fs::read(path).map_err(|e| Error::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let before = certs.len();
        for item in ureq::tls::parse_pem(&bytes) {
            if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                certs.push(c);
            }
        }
        if certs.len() == before {
            return Err(Error::File {
                path: path.clone(),
                reason: "no PEM certificate in it".into(),
            });
        }
    }
    let roots = if certs.is_empty() {
        RootCerts::WebPki
    } else {
        RootCerts::new_with_certs(&certs)
    };
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("ocikit/", env!("CARGO_PKG_VERSION")))
        .accept("")
        .accept_encoding("identity")
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(300)))
        .max_idle_connections_per_host(opts.parallelism.max(4) * 2)
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .build();
    Ok(ureq::Agent::new_with_config(config))
}

fn challenge_of(resp: &Response<ureq::Body>) -> Option<Challenge> {
    resp.headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_challenge)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `scheme://host[:port]` of a URL.
fn host_of(url: &str) -> &str {
    let after = url.find("://").map(|i| i + 3).unwrap_or(0);
    let end = url[after..]
        .find('/')
        .map(|i| i + after)
        .unwrap_or(url.len());
    &url[..end]
}

/// A `Location` against the URL it came from.
fn resolve(base: &str, loc: &str) -> String {
    if loc.contains("://") {
        loc.to_string()
    } else if loc.starts_with('/') {
        format!("{}{loc}", host_of(base))
    } else {
        let dir = base.rsplit_once('/').map(|(d, _)| d).unwrap_or(base);
        format!("{dir}/{loc}")
    }
}

/// Percent-encode a query value.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The registry's error detail from a failed response (`errors[].code: message`), at most
/// 4 KiB read.
pub(crate) fn error_detail(resp: &mut Response<ureq::Body>) -> String {
    let Ok(bytes) = resp.body_mut().with_config().limit(4096).read_to_vec() else {
        return String::new();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return String::new();
    };
    v.get("errors")
        .and_then(|e| e.as_array())
        .map(|errs| {
            errs.iter()
                .map(|e| {
                    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                    let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                    format!("{code}: {msg}")
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

/// The error for a response whose status the operation cannot go on from.
pub(crate) fn status_error(
    method: &'static str,
    url: &str,
    resp: &mut Response<ureq::Body>,
) -> Error {
    Error::Status {
        method,
        url: url.to_string(),
        status: resp.status().as_u16(),
        detail: error_detail(resp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            host_of("https://a.example:5000/v2/x"),
            "https://a.example:5000"
        );
        assert_eq!(
            resolve(
                "http://h:1/v2/r/blobs/uploads/",
                "/v2/r/blobs/uploads/u?x=1"
            ),
            "http://h:1/v2/r/blobs/uploads/u?x=1"
        );
        assert_eq!(
            resolve("http://h:1/v2/x", "https://s3.example/b?sig=1"),
            "https://s3.example/b?sig=1"
        );
        assert_eq!(
            encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
