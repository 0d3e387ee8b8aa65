//! Test support for the registry tests: Debian's `docker-registry` (distribution 2.8) started
//! on 127.0.0.1 with a generated config (plain, htpasswd basic auth, TLS with a CA made at test
//! time), and a fault-injecting HTTP proxy in front of it (cut bodies, 503 with `Retry-After`,
//! 413 for large bodies, bearer tokens from its own token endpoint, redirects to a second
//! host). Everything is stopped by PID when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Whether a tool is on PATH; prints a notice when it is not.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("notice: `{tool}` is not installed; skipping this test (.ci/run installs it)");
    }
    found
}

/// How the registry authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No auth, plain HTTP.
    Plain,
    /// htpasswd basic auth (user `alice`, password `wonderland`), plain HTTP.
    Basic,
    /// No auth, HTTPS with a certificate from a CA made for the test.
    Tls,
}

/// A running `docker-registry`.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The CA certificate clients must trust (TLS only).
    pub ca: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// Start one, or `None` (with a notice) when a tool it needs is missing.
    pub fn start(kind: Kind) -> Option<Registry> {
        if !have("docker-registry") {
            return None;
        }
        let dir = tempfile::tempdir().expect("tmp");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut extra = String::new();
        let mut ca = None;
        match kind {
            Kind::Plain => {}
            Kind::Basic => {
                if !have("htpasswd") {
                    return None;
                }
                let out = Command::new("htpasswd")
                    .args(["-Bbn", "alice", "wonderland"])
                    .output()
                    .expect("htpasswd");
                std::fs::write(dir.path().join("htpasswd"), &out.stdout).expect("write");
                extra.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                ));
            }
            Kind::Tls => {
                if !have("openssl") {
                    return None;
                }
                let d = dir.path();
                let sh = format!(
                    "set -e; cd {d}; \
                     openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=ocikit-test-ca 2>/dev/null; \
                     openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>/dev/null; \
                     printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > ext; \
                     openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext 2>/dev/null",
                    d = d.display()
                );
                let ok = Command::new("sh")
                    .args(["-c", &sh])
                    .status()
                    .expect("openssl");
                assert!(ok.success(), "making the test CA failed");
                extra.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    d.join("srv.pem").display(),
                    d.join("srv.key").display()
                ));
                ca = Some(d.join("ca.pem"));
            }
        }
        let (http_extra, auth_extra) = if kind == Kind::Tls {
            (extra, String::new())
        } else {
            (String::new(), extra)
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{http_extra}{auth_extra}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).expect("config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let reg = Registry {
            child,
            host,
            ca,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&reg.host).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(reg)
    }
}

/// One request seen by the proxy.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The path and query.
    pub path: String,
    /// Request headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The status answered.
    pub status: u16,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the proxy does wrong, on purpose.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Cut the body of the first GET of each blob (path contains `/blobs/sha256:`) larger
    /// than this after half its bytes.
    pub cut_blobs_over: Option<u64>,
    /// Answer this many requests to `/manifests/` with 503 and `Retry-After: 1` first.
    pub busy_manifests: usize,
    /// Refuse request bodies larger than this with 413.
    pub max_body: Option<u64>,
    /// Require `Authorization: Bearer <token>` from the proxy's own token endpoint
    /// (`/token`), which wants basic auth `bob:builder` when `token_basic` is set.
    pub bearer: bool,
    /// See `bearer`.
    pub token_basic: bool,
    /// Every token issued so far expires when the first blob upload `PUT` arrives.
    pub expire_at_first_upload: bool,
    /// Redirect blob GETs to this `host:port` (another proxy), as blob storage does.
    pub redirect_blobs_to: Option<String>,
    /// Answer 500 to every GET of a path containing this (a blob that cannot be fetched).
    pub fail_paths: Vec<String>,
    /// Serve these bytes for `GET`/`HEAD` of paths ending in the key, with the given content
    /// type and `Docker-Content-Digest` (none: no header).
    pub canned: Vec<(String, String, Option<String>, Vec<u8>)>,
}

/// A proxy in front of `upstream`.
pub struct Proxy {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// Every request, in order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.host);
    }
}

impl Proxy {
    /// Start a proxy to `upstream` (`host:port`) with `faults`.
    pub fn start(upstream: &str, faults: Faults) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let host = listener.local_addr().expect("addr").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(State {
            upstream: upstream.to_string(),
            faults,
            host: host.clone(),
            seen: seen.clone(),
            cut: Mutex::new(Vec::new()),
            busy: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            authorized: AtomicUsize::new(0),
        });
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let state = state.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &state);
                });
            }
        });
        Proxy { host, seen, stop }
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

struct State {
    upstream: String,
    faults: Faults,
    host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    cut: Mutex<Vec<String>>,
    busy: AtomicUsize,
    generation: AtomicUsize,
    authorized: AtomicUsize,
}

struct Head {
    first: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn len(&self) -> u64 {
        self.get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
    fn write(
        &self,
        w: &mut impl Write,
        drop: &[&str],
        add: &[(&str, String)],
    ) -> std::io::Result<()> {
        let mut s = format!("{}\r\n", self.first);
        for (k, v) in &self.headers {
            if !drop.iter().any(|d| k.eq_ignore_ascii_case(d)) {
                s.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        for (k, v) in add {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str("\r\n");
        w.write_all(s.as_bytes())
    }
}

fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut first = String::new();
    if r.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some(Head {
        first: first.trim_end().to_string(),
        headers,
    }))
}

fn respond(
    w: &mut impl Write,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut s = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    w.write_all(s.as_bytes())?;
    w.write_all(body)
}

fn head_only(w: &mut impl Write, headers: &[(&str, String)]) -> std::io::Result<()> {
    let mut s = "HTTP/1.1 200 OK\r\nConnection: close\r\n".to_string();
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    w.write_all(s.as_bytes())
}

/// One request per connection (`Connection: close` on every answer).
fn serve(conn: TcpStream, st: &State) -> std::io::Result<()> {
    let mut client_r = BufReader::new(conn.try_clone()?);
    let mut client_w = conn;
    let Some(req) = read_head(&mut client_r)? else {
        return Ok(());
    };
    let mut parts = req.first.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let record = |status: u16| {
        st.seen.lock().expect("lock").push(Seen {
            method: method.clone(),
            path: path.clone(),
            headers: req
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            status,
        });
    };
    let f = &st.faults;
    // The token endpoint.
    if path.starts_with("/token") {
        let want = format!("Basic {}", b64("bob:builder"));
        if f.token_basic && req.get("authorization") != Some(want.as_str()) {
            record(401);
            return respond(&mut client_w, "401 Unauthorized", &[], b"{}");
        }
        let scope = path
            .split(['?', '&'])
            .filter_map(|p| p.strip_prefix("scope="))
            .collect::<Vec<_>>()
            .join(" ");
        record(200);
        let generation = st.generation.load(Ordering::Relaxed);
        let body = format!("{{\"token\":\"tok g{generation} {scope}\"}}");
        return respond(
            &mut client_w,
            "200 OK",
            &[("Content-Type", "application/json".into())],
            body.as_bytes(),
        );
    }
    if f.bearer && path.starts_with("/v2/") {
        let repo = path
            .trim_start_matches("/v2/")
            .split("/manifests/")
            .next()
            .and_then(|p| p.split("/blobs/").next())
            .and_then(|p| p.split("/tags/").next())
            .and_then(|p| p.split("/referrers/").next())
            .unwrap_or("")
            .to_string();
        if f.expire_at_first_upload
            && method == "PUT"
            && path.contains("/blobs/uploads/")
            && st.authorized.fetch_add(1, Ordering::Relaxed) == 0
        {
            // Every token issued so far expires now, under this upload.
            st.generation.fetch_add(1, Ordering::Relaxed);
        }
        let generation = st.generation.load(Ordering::Relaxed);
        let ok = req.get("authorization").is_some_and(|a| {
            a.starts_with(&format!("Bearer tok g{generation} "))
                && a.contains(&format!("repository%3A{}", repo.replace('/', "%2F")))
        });
        if !ok {
            record(401);
            let challenge = format!(
                "Bearer realm=\"http://{}/token\",service=\"test-registry\",scope=\"repository:{repo}:pull\"",
                st.host
            );
            // Drain the body so the client sees the answer.
            let mut sink = Vec::new();
            let _ = (&mut client_r).take(req.len()).read_to_end(&mut sink);
            return respond(
                &mut client_w,
                "401 Unauthorized",
                &[("WWW-Authenticate", challenge)],
                b"{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"token required\"}]}",
            );
        }
    }
    for (suffix, ct, dcd, bytes) in &f.canned {
        if (method == "GET" || method == "HEAD") && path.ends_with(suffix.as_str()) {
            record(200);
            let mut h = vec![("Content-Type", ct.clone())];
            if let Some(d) = dcd {
                h.push(("Docker-Content-Digest", d.clone()));
            }
            if method == "HEAD" {
                h.push(("Content-Length", bytes.len().to_string()));
                return head_only(&mut client_w, &h);
            }
            return respond(&mut client_w, "200 OK", &h, bytes);
        }
    }
    if method == "GET" && f.fail_paths.iter().any(|p| path.contains(p.as_str())) {
        record(500);
        return respond(&mut client_w, "500 Internal Server Error", &[], b"");
    }
    if path.contains("/manifests/") && st.busy.fetch_add(1, Ordering::Relaxed) < f.busy_manifests {
        record(503);
        return respond(
            &mut client_w,
            "503 Service Unavailable",
            &[("Retry-After", "1".into())],
            b"",
        );
    }
    if let Some(max) = f.max_body {
        if req.len() > max {
            record(413);
            return respond(&mut client_w, "413 Payload Too Large", &[], b"");
        }
    }
    if req
        .get("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        client_w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    if let Some(to) = &f.redirect_blobs_to {
        if method == "GET" && path.contains("/blobs/sha256:") {
            record(307);
            return respond(
                &mut client_w,
                "307 Temporary Redirect",
                &[("Location", format!("http://{to}{path}"))],
                b"",
            );
        }
    }
    // Forward.
    let up = TcpStream::connect(&st.upstream)?;
    let mut up_w = up.try_clone()?;
    let mut up_r = BufReader::new(up);
    req.write(
        &mut up_w,
        &["connection", "authorization", "expect"],
        &[("Connection", "close".into())],
    )?;
    std::io::copy(&mut (&mut client_r).take(req.len()), &mut up_w)?;
    let Some(resp) = read_head(&mut up_r)? else {
        return Ok(());
    };
    let status: u16 = resp
        .first
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    record(status);
    // Rewrite upload locations that name the upstream.
    let mut drop = vec!["connection"];
    let mut add = vec![("Connection", "close".to_string())];
    if let Some(loc) = resp.get("location") {
        drop.push("location");
        add.push(("Location", loc.replace(&st.upstream, &st.host)));
    }
    resp.write(&mut client_w, &drop, &add)?;
    let mut len = if method == "HEAD" { 0 } else { resp.len() };
    if let Some(limit) = f.cut_blobs_over {
        if method == "GET" && path.contains("/blobs/sha256:") && status == 200 && len > limit {
            let mut cut = st.cut.lock().expect("lock");
            if !cut.contains(&path) {
                cut.push(path.clone());
                len /= 2;
                std::io::copy(&mut (&mut up_r).take(len), &mut client_w)?;
                let _ = client_w.shutdown(Shutdown::Both);
                return Ok(());
            }
        }
    }
    std::io::copy(&mut (&mut up_r).take(len), &mut client_w)?;
    client_w.flush()
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The path of the fixture layouts.
pub fn layouts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("layouts")
}
