//! A small HTTP/1.1 server side: request heads parsed within fixed limits, responses written
//! with their body from memory or from a file (`sendfile` on a plain socket).
//!
//! Limits: the request head (request line and headers) is at most [`HEAD_LIMIT`] bytes and
//! [`HEADER_COUNT`] headers; it must arrive within [`HEAD_TIMEOUT`]. Anything over a limit or
//! malformed is answered 400 (431 for a head too large) and the connection closed. Request
//! bodies are never read: a request that has one (only writes do, and they are refused) is
//! answered and the connection closed.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant, SystemTime};

/// The largest request head accepted.
pub const HEAD_LIMIT: usize = 16 * 1024;
/// The most header fields accepted.
pub const HEADER_COUNT: usize = 100;
/// How long a request head may take to arrive.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an idle kept-alive connection waits for its next request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one write may block.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection: a plain socket or a TLS session over one.
pub enum Stream {
    /// Plain HTTP.
    Plain(TcpStream),
    /// HTTPS.
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stream::Plain(_) => "Stream::Plain",
            Stream::Tls(_) => "Stream::Tls",
        })
    }
}

/// `len` bytes of `file` from `offset` into the socket with `sendfile(2)`: the kernel moves
/// them, none pass through this process. (std's `io::copy` does this only for some reader
/// types; measured here, a `Take` of the blob's file became an 8 KiB read/write loop.)
fn sendfile_all(s: &TcpStream, file: &File, offset: u64, len: u64) -> io::Result<u64> {
    let mut off = offset;
    let end = offset + len;
    while off < end {
        let want = usize::try_from(end - off)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match rustix::fs::sendfile(s, file, Some(&mut off), want) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the blob's file is shorter than its size",
                ))
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            // A blocking socket with a send timeout: the client stopped reading.
            Err(rustix::io::Errno::AGAIN) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client stopped reading",
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(len)
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// Send `len` bytes of `file` from `offset`: `sendfile` on a plain socket (the kernel
    /// copies, nothing passes through this process), a fixed 64 KiB buffer under TLS.
    pub fn send_file(&mut self, file: &mut File, offset: u64, len: u64) -> io::Result<u64> {
        if let Stream::Plain(s) = self {
            return sendfile_all(s, file, offset, len);
        }
        file.seek(SeekFrom::Start(offset))?;
        let mut part = (&*file).take(len);
        let n = match self {
            Stream::Plain(s) => io::copy(&mut part, s)?,
            Stream::Tls(s) => {
                let mut buf = vec![0u8; 64 * 1024];
                let mut n = 0u64;
                loop {
                    let k = match part.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => k,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    s.write_all(&buf[..k])?;
                    n += k as u64;
                }
                s.flush()?;
                n
            }
        };
        if n != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the blob ended early",
            ));
        }
        Ok(n)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method, as sent.
    pub method: String,
    /// The request target's path (before `?`), as sent (never decoded).
    pub path: String,
    /// The query (after `?`), as sent.
    pub query: String,
    /// HTTP/1.1 (else 1.0).
    pub http11: bool,
    /// Header fields, names lowercased, in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Does the client want the connection kept open after this request?
    pub fn keep_alive(&self) -> bool {
        let conn = self.header("connection").map(str::to_ascii_lowercase);
        match conn.as_deref() {
            Some(c) if c.split(',').any(|t| t.trim() == "close") => false,
            Some(c) if c.split(',').any(|t| t.trim() == "keep-alive") => true,
            _ => self.http11,
        }
    }

    /// Does the request carry a body (which the server does not read)?
    pub fn has_body(&self) -> bool {
        self.header("transfer-encoding").is_some()
            || self
                .header("content-length")
                .is_some_and(|v| v.trim() != "0")
    }

    /// Decoded values of query parameter `key`.
    pub fn query_values(&self, key: &str) -> Vec<String> {
        self.query
            .split('&')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k)? == key)
                    .then(|| percent_decode(v))
                    .flatten()
            })
            .collect()
    }
}

/// `%XX` decoded, or `None` for a bad escape or bytes that are not UTF-8. A `+` stays a `+`
/// (media types hold them; this is a URL query, not a form).
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The connection closed (or timed out) before a request started: nothing to answer.
    Closed,
    /// The head is malformed or over a limit: answer with this status and reason, then close.
    Bad(u16, &'static str),
    /// The socket failed mid-head.
    Io(io::Error),
}

/// A connection with its read buffer.
#[derive(Debug)]
pub struct Conn {
    /// The stream.
    pub stream: Stream,
    buf: Vec<u8>,
    /// Bytes of `buf` received but not yet consumed (a pipelined request's start).
    start: usize,
    end: usize,
}

impl Conn {
    /// A connection over `stream`.
    pub fn new(stream: Stream) -> Conn {
        Conn {
            stream,
            buf: vec![0u8; HEAD_LIMIT],
            start: 0,
            end: 0,
        }
    }

    /// Shut the socket down both ways.
    pub fn shutdown(&self) {
        let _ = self.stream.tcp().shutdown(Shutdown::Both);
    }

    /// Read the next request head. `first`: the connection is new (its idle wait is the head
    /// timeout, not the keep-alive one).
    pub fn read_request(&mut self, first: bool) -> Result<Request, ReadError> {
        // Move a pipelined remainder to the front.
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let idle = if first { HEAD_TIMEOUT } else { IDLE_TIMEOUT };
        let mut deadline = Instant::now() + idle;
        let mut started = self.end > 0;
        loop {
            // A TLS ClientHello on a plain-HTTP server: answer at once, so a client trying
            // HTTPS first (skopeo, docker) reads an HTTP answer and falls back to HTTP
            // instead of waiting for its handshake to time out.
            if self.end > 0 && self.buf[0] == 0x16 && matches!(self.stream, Stream::Plain(_)) {
                self.end = 0;
                return Err(ReadError::Bad(400, "this server speaks HTTP, not HTTPS"));
            }
            if let Some(head_len) = find_head_end(&self.buf[..self.end]) {
                let req = parse_request(&self.buf[..head_len]);
                self.start = head_len;
                return req;
            }
            if self.end >= self.buf.len() {
                return Err(ReadError::Bad(431, "the request head is too large"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(if started {
                    ReadError::Bad(408, "the request head took too long")
                } else {
                    ReadError::Closed
                });
            }
            let _ = self.stream.tcp().set_read_timeout(Some(left));
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    return Err(if started {
                        ReadError::Bad(400, "the connection closed mid-request")
                    } else {
                        ReadError::Closed
                    })
                }
                Ok(n) => {
                    if !started {
                        started = true;
                        deadline = Instant::now() + HEAD_TIMEOUT;
                    }
                    self.end += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if !started => {
                    let _ = e;
                    return Err(ReadError::Closed);
                }
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}

/// The length of the head (through the blank line) if `buf` holds a whole one.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    // Leading empty lines before a request line are allowed (RFC 9112 2.2).
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

/// Parse a request head (request line and header fields, through the blank line): the
/// method, an origin-form target (a path starting with `/`, printable ASCII, never decoded),
/// HTTP/1.0 or 1.1, at most [`HEADER_COUNT`] fields with token names. Anything else is
/// [`ReadError::Bad`].
pub fn parse_request(head: &[u8]) -> Result<Request, ReadError> {
    let bad = |why| Err(ReadError::Bad(400, why));
    let Ok(text) = std::str::from_utf8(head) else {
        return bad("the request head is not UTF-8");
    };
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut request_line = "";
    for l in lines.by_ref() {
        if !l.is_empty() {
            request_line = l;
            break;
        }
    }
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return bad("malformed request line");
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return bad("malformed method");
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return bad("unsupported HTTP version"),
    };
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return bad("malformed request target");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for l in lines {
        if l.is_empty() {
            break;
        }
        if headers.len() >= HEADER_COUNT {
            return Err(ReadError::Bad(431, "too many header fields"));
        }
        let Some((name, value)) = l.split_once(':') else {
            return bad("malformed header field");
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return bad("malformed header field name");
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        http11,
        headers,
    })
}

/// A response body.
#[derive(Debug)]
pub enum Body {
    /// None (HEAD, 304); `Content-Length` is still sent when known.
    Empty(Option<u64>),
    /// Bytes in memory.
    Bytes(Vec<u8>),
    /// `len` bytes of a file from `offset`.
    File {
        /// The open blob.
        file: File,
        /// Where to start.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
}

/// A response.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields (besides `Content-Length`, `Date` and `Connection`).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Body,
}

impl Response {
    /// A response with a body in memory.
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: Body::Bytes(body),
        }
    }

    /// Add a header field.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The body's length.
    pub fn body_len(&self) -> u64 {
        match &self.body {
            Body::Empty(n) => n.unwrap_or(0),
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    /// Drop the body but keep its length (a HEAD request).
    pub fn head_only(mut self) -> Response {
        let len = match &self.body {
            Body::Empty(n) => *n,
            Body::Bytes(b) => Some(b.len() as u64),
            Body::File { len, .. } => Some(*len),
        };
        self.body = Body::Empty(len);
        self
    }

    /// Write the response; `close` adds `Connection: close`. Returns the body bytes sent.
    pub fn write_to(self, stream: &mut Stream, close: bool) -> io::Result<u64> {
        let _ = stream.tcp().set_write_timeout(Some(WRITE_TIMEOUT));
        let mut head = Vec::with_capacity(512);
        write!(head, "HTTP/1.1 {} {}\r\n", self.status, reason(self.status))?;
        write!(head, "Date: {}\r\n", http_date(SystemTime::now()))?;
        for (n, v) in &self.headers {
            write!(head, "{n}: {v}\r\n")?;
        }
        let len = match &self.body {
            Body::Empty(Some(n)) => Some(*n),
            Body::Empty(None) if self.status == 304 => None,
            Body::Empty(None) => Some(0),
            Body::Bytes(b) => Some(b.len() as u64),
            Body::File { len, .. } => Some(*len),
        };
        if let Some(n) = len {
            write!(head, "Content-Length: {n}\r\n")?;
        }
        if close {
            head.extend_from_slice(b"Connection: close\r\n");
        }
        head.extend_from_slice(b"\r\n");
        match self.body {
            Body::Empty(_) => {
                stream.write_all(&head)?;
                stream.flush()?;
                Ok(0)
            }
            Body::Bytes(b) => {
                head.extend_from_slice(&b);
                stream.write_all(&head)?;
                stream.flush()?;
                Ok(b.len() as u64)
            }
            Body::File {
                mut file,
                offset,
                len,
            } => {
                stream.write_all(&head)?;
                stream.send_file(&mut file, offset, len)
            }
        }
    }
}

/// The reason phrase of a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn split_time(t: SystemTime) -> (i64, u32, u32, u64, u32) {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let (y, m, d) = civil(days);
    (y, m, d, secs % 86_400, (days.rem_euclid(7)) as u32)
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, s, wd) = split_time(t);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        DAYS[wd as usize],
        MONTHS[(m - 1) as usize],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `1994-11-06T08:49:37Z`.
pub fn log_time(t: SystemTime) -> String {
    let (y, m, d, s, _) = split_time(t);
    format!(
        "{y}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(log_time(t), "1994-11-06T08:49:37Z");
        assert_eq!(
            http_date(SystemTime::UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(log_time(leap), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn heads_parse_or_are_refused() {
        let r = parse_request(
            b"GET /v2/a/tags/list?n=2&last=b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .expect("parses");
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/v2/a/tags/list");
        assert_eq!(r.query_values("n"), vec!["2"]);
        assert_eq!(r.query_values("last"), vec!["b"]);
        assert!(!r.keep_alive());
        let bad: &[&[u8]] = &[
            b"GET /v2/ HTTP/2.0\r\n\r\n",
            b"GET  /v2/ HTTP/1.1\r\n\r\n",
            b"get /v2/ HTTP/1.1\r\n\r\n",
            b"GET v2/ HTTP/1.1\r\n\r\n",
            b"GET http://x/v2/ HTTP/1.1\r\n\r\n",
            b"GET /v2/\x01 HTTP/1.1\r\n\r\n",
            b"GET /v2/ HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET /v2/ HTTP/1.1\r\nbad name: x\r\n\r\n",
            b"GET /v2/ HTTP/1.1\r\nX: \xff\r\n\r\n",
        ];
        for h in bad {
            assert!(
                matches!(parse_request(h), Err(ReadError::Bad(400, _))),
                "{}",
                String::from_utf8_lossy(h)
            );
        }
        let many = format!(
            "GET /v2/ HTTP/1.1\r\n{}\r\n",
            "A: b\r\n".repeat(HEADER_COUNT + 1)
        );
        assert!(matches!(
            parse_request(many.as_bytes()),
            Err(ReadError::Bad(431, _))
        ));
    }

    #[test]
    fn query_values_are_decoded() {
        let r = parse_request(
            b"GET /v2/a/referrers/x?artifactType=application%2Fvnd.example%2Bsig&t=a+b&bad=%zz HTTP/1.1\r\n\r\n",
        )
        .expect("parses");
        assert_eq!(
            r.query_values("artifactType"),
            vec!["application/vnd.example+sig"]
        );
        assert_eq!(r.query_values("t"), vec!["a+b"]);
        assert!(r.query_values("bad").is_empty());
    }
}
