//! A running `ocikit serve` for the tests, and a raw HTTP/1.1 client on a `TcpStream`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ocikit_cmd;

/// `ocikit serve ARGS --listen 127.0.0.1:0`, killed (by its PID) when dropped.
pub struct Served {
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Every stderr line so far (the access log).
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Served {
    /// Start the server in `cwd` and wait for its `listening on ADDR` line.
    pub fn start(cwd: &Path, args: &[&str]) -> Served {
        Served::try_start(cwd, args).unwrap_or_else(|e| panic!("serve did not start: {e}"))
    }

    /// Start, or the stderr and exit code of a server that did not start.
    pub fn try_start(cwd: &Path, args: &[&str]) -> Result<Served, String> {
        let mut child = ocikit_cmd()
            .current_dir(cwd)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ocikit serve");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let keep = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Kept first, so the line is in the log by the time `start` returns.
                keep.lock().expect("lines").push(line.clone());
                let _ = tx.send(line);
            }
        });
        let first = rx.recv_timeout(Duration::from_secs(30));
        match first {
            Ok(l) if l.starts_with("listening on ") => Ok(Served {
                addr: l["listening on ".len()..].to_string(),
                child,
                lines,
            }),
            other => {
                let status = child.wait().expect("wait");
                let mut text: Vec<String> = other.into_iter().collect();
                text.extend(rx.try_iter());
                Err(format!("exit {:?}: {}", status.code(), text.join("\n")))
            }
        }
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stderr lines once one of them contains `text` (waiting up to 10 s).
    pub fn log_with(&self, text: &str) -> Vec<String> {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.iter().any(|l| l.contains(text)) || start.elapsed() > Duration::from_secs(10) {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The stderr lines so far.
    pub fn log(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// Send a signal and wait (up to `within`) for the exit code.
    pub fn signal_and_wait(&mut self, sig: &str, within: Duration) -> Option<i32> {
        let pid = self.pid().to_string();
        std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .expect("kill");
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// `VmHWM` (peak resident set) of the server, in KiB.
    pub fn peak_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response, as read off the wire.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    /// Header fields, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The first value of a header (name lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send `head` (a request head without the final blank line; `Connection: close` is added)
/// and read the whole response.
pub fn raw(addr: &str, head: &str) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let req = format!("{head}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read");
    parse_response(&all, !head.starts_with("HEAD "))
}

/// `GET path` with extra header lines.
pub fn get(addr: &str, path: &str, headers: &[&str]) -> Resp {
    request(addr, "GET", path, headers)
}

/// `METHOD path` with extra header lines.
pub fn request(addr: &str, method: &str, path: &str, headers: &[&str]) -> Resp {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}");
    for h in headers {
        head.push_str("\r\n");
        head.push_str(h);
    }
    raw(addr, &head)
}

/// Split a whole response into status, headers and body (the body is what follows the head;
/// with `check_len`, its length must be `Content-Length`).
pub fn parse_response(all: &[u8], check_len: bool) -> Resp {
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(all)));
    let head = std::str::from_utf8(&all[..end]).expect("head is text");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header");
            (n.to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let body = all[end + 4..].to_vec();
    let resp = Resp {
        status,
        headers,
        body,
    };
    if check_len {
        if let Some(n) = resp.header("content-length") {
            assert_eq!(n, resp.body.len().to_string(), "Content-Length");
        }
    }
    resp
}

/// The spec's error body for one error.
pub fn error_json(code: &str, message: &str, detail: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"errors": [{"code": code, "message": message, "detail": detail}]})
}

/// Is `tool` on PATH? If not, say so (the test then returns without checking anything).
pub fn have(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()));
    if !found {
        eprintln!("skipping: `{tool}` is not on PATH (.ci/run installs it)");
    }
    found
}
