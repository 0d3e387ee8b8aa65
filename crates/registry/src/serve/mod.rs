//! `serve`: layouts, read-only, over the pull side of the OCI distribution API.
//!
//! - [`repos`]: which layouts are served under which repository names, and what each one's
//!   `index.json` reaches now ([`engine::plan`](ocikit_layout::engine::plan), recomputed when
//!   `index.json` changes; no lock is taken).
//! - [`handler`]: the endpoints (`/v2/`, manifests, blobs with ranges, tags, referrers,
//!   catalog) and the spec's error JSON; writes are 405 `UNSUPPORTED`.
//! - [`http`]: a small HTTP/1.1 server side (bounded request heads, keep-alive, bodies from
//!   memory or `sendfile` from the blob's file).
//! - [`auth`] (htpasswd, bcrypt) and [`tls`] (rustls, ring).
//!
//! Threads: one accepting, one per connection, at most [`ServeOptions::max_connections`] at
//! once (the next connection waits in the kernel's backlog). A blob is sent from its open file
//! by the kernel, so memory does not grow with blob size or with the number of clients
//! fetching it. [`Stopper::stop`] (the CLI calls it on SIGINT and SIGTERM) stops accepting,
//! ends idle connections, and lets responses in flight finish (up to [`DRAIN_TIMEOUT`]).

pub mod auth;
pub mod handler;
pub mod http;
pub mod names;
pub mod repos;
pub mod tls;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use self::auth::Htpasswd;
use self::http::{Conn, ReadError, Request, Stream};
use self::repos::{Mounts, Source, View};

/// How long a stop waits for responses in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A layout could not be opened.
    #[error(transparent)]
    Layout(#[from] ocikit_layout::Error),
    /// I/O on a path.
    #[error("`{}`: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A repository name that the distribution grammar does not allow.
    #[error("`{name}` (for `{}`) is not a valid repository name: lowercase letters and digits, separated by `.`, `_`, `__`, `-` or `/`", path.display())]
    InvalidName {
        /// The name.
        name: String,
        /// The layout it would name.
        path: PathBuf,
    },
    /// Two layouts with one repository name.
    #[error("two layouts would be repository `{name}`: `{}` and `{}`", first.display(), second.display())]
    DuplicateName {
        /// The name.
        name: String,
        /// The first layout.
        first: PathBuf,
        /// The second.
        second: PathBuf,
    },
    /// A directory that is neither a layout nor holds any.
    #[error("`{}` is not an OCI image layout and has none in its subdirectories", path.display())]
    NoLayouts {
        /// The directory.
        path: PathBuf,
    },
    /// The address to listen on does not resolve or cannot be bound.
    #[error("cannot listen on `{addr}`: {source}")]
    Bind {
        /// The address as given.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key that cannot be used.
    #[error("`{}`: {reason}", path.display())]
    Tls {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An htpasswd file that cannot be used.
    #[error("`{}` line {line}: {reason}", path.display())]
    Htpasswd {
        /// The file.
        path: PathBuf,
        /// The line (1-based; 0 for the whole file).
        line: usize,
        /// Why.
        reason: String,
    },
}

/// What to serve and how.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The layouts.
    pub sources: Vec<Source>,
    /// The address to listen on (`127.0.0.1:5000`; port 0 picks a free one).
    pub listen: String,
    /// HTTPS: a PEM certificate chain and its PEM private key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Basic auth from this htpasswd file (bcrypt entries).
    pub htpasswd: Option<PathBuf>,
    /// One line per request on stderr.
    pub access_log: bool,
    /// How the layouts are opened.
    pub layout: ocikit_layout::Options,
    /// The most connections served at once.
    pub max_connections: usize,
}

impl ServeOptions {
    /// Options for `sources` with the defaults: `127.0.0.1:5000`, plain HTTP, no auth, access
    /// log on, 256 connections.
    pub fn new(sources: Vec<Source>) -> ServeOptions {
        ServeOptions {
            sources,
            listen: "127.0.0.1:5000".into(),
            tls: None,
            htpasswd: None,
            access_log: true,
            layout: ocikit_layout::Options::default(),
            max_connections: 256,
        }
    }
}

/// What every connection thread shares.
#[derive(Debug)]
pub struct Shared {
    mounts: Mounts,
    auth: Option<Htpasswd>,
    access_log: bool,
}

impl Shared {
    /// A view of the current snapshots; problems found by a rebuild are logged.
    fn view(&self) -> View {
        let (view, problems) = self.mounts.view();
        for p in problems {
            self.warn(&p);
        }
        view
    }

    /// Search the parent directories for layouts again (rate-limited, see
    /// [`Mounts::rescan`]); whether the served layouts changed. Problems are logged.
    fn rescan(&self) -> bool {
        let (changed, problems) = self.mounts.rescan();
        for p in problems {
            self.warn(&p);
        }
        changed
    }

    /// A warning on stderr (never silenced).
    fn warn(&self, what: &str) {
        let line = format!("ocikit: warning: {what}\n");
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// Stops a running [`Server`] from another thread (a signal handler's).
#[derive(Debug, Clone)]
pub struct Stopper {
    stop: Arc<AtomicBool>,
    wake: SocketAddr,
}

impl Stopper {
    /// Stop accepting, end idle connections, let responses in flight finish.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.wake, Duration::from_secs(1));
    }
}

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: Arc<AtomicBool>,
    max_connections: usize,
    startup_problems: Vec<String>,
}

/// One served layout, as [`Server::repositories`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The layout's own repository name.
    pub name: String,
    /// The layout.
    pub dir: PathBuf,
    /// Every repository it serves (its own included), with its number of tags.
    pub repositories: Vec<(String, usize)>,
}

impl Server {
    /// Find and open the layouts, read the certificate and htpasswd files, plan every
    /// layout's `index.json` once, and bind the address.
    pub fn bind(opts: &ServeOptions) -> Result<Server, ServeError> {
        let mounts = Mounts::discover(&opts.sources, &opts.layout)?;
        let tls = match &opts.tls {
            Some((cert, key)) => Some(tls::server_config(cert, key)?),
            None => None,
        };
        let auth = match &opts.htpasswd {
            Some(p) => Some(Htpasswd::load(p)?),
            None => None,
        };
        let (_, startup_problems) = mounts.view();
        let bind_err = |source| ServeError::Bind {
            addr: opts.listen.clone(),
            source,
        };
        let listener = TcpListener::bind(opts.listen.as_str()).map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        Ok(Server {
            listener,
            addr,
            shared: Arc::new(Shared {
                mounts,
                auth,
                access_log: opts.access_log,
            }),
            tls,
            stop: Arc::new(AtomicBool::new(false)),
            max_connections: opts.max_connections.max(1),
            startup_problems,
        })
    }

    /// The address bound (with the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether it speaks HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// What the first planning of the layouts could not serve.
    pub fn startup_problems(&self) -> &[String] {
        &self.startup_problems
    }

    /// The served layouts and the repositories of each, as planned now. A snapshot rebuilt
    /// here (the layout changed since [`Server::bind`]) has its problems logged, as a
    /// request's would: they are not news to the next request.
    pub fn repositories(&self) -> Vec<Served> {
        self.shared
            .mounts
            .list()
            .iter()
            .map(|m| {
                let (snap, fresh) = m.snapshot();
                if fresh {
                    for p in &snap.problems {
                        self.shared
                            .warn(&format!("`{}`: {p}", m.layout.root().display()));
                    }
                }
                Served {
                    name: m.name.clone(),
                    dir: m.layout.root().to_path_buf(),
                    repositories: snap
                        .tags
                        .iter()
                        .map(|(r, t)| (r.clone(), t.len()))
                        .collect(),
                }
            })
            .collect()
    }

    /// A handle that stops [`Server::run`].
    pub fn stopper(&self) -> Stopper {
        let ip = self.addr.ip();
        let wake_ip = match ip {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            other => other,
        };
        Stopper {
            stop: self.stop.clone(),
            wake: SocketAddr::new(wake_ip, self.addr.port()),
        }
    }

    /// Serve until stopped; returns once the connections in flight are done (or
    /// [`DRAIN_TIMEOUT`] passed).
    pub fn run(self) -> Result<(), ServeError> {
        let live: Arc<(Mutex<HashMap<u64, TcpStream>>, Condvar)> =
            Arc::new((Mutex::new(HashMap::new()), Condvar::new()));
        let next_id = AtomicU64::new(0);
        let Server {
            listener,
            shared: server_shared,
            tls: server_tls,
            stop: server_stop,
            max_connections,
            ..
        } = self;
        for incoming in listener.incoming() {
            if server_stop.load(Ordering::SeqCst) {
                break;
            }
            let tcp = match incoming {
                Ok(s) => s,
                Err(_) => {
                    // Out of descriptors or a connection reset before accept: wait a moment.
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            // A slot: wait while the most connections are being served.
            {
                let (lock, cv) = &*live;
                let mut map = lock.lock().unwrap_or_else(|p| p.into_inner());
                while map.len() >= max_connections && !server_stop.load(Ordering::SeqCst) {
                    map = cv
                        .wait_timeout(map, Duration::from_millis(100))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                match tcp.try_clone() {
                    Ok(c) => {
                        map.insert(id, c);
                    }
                    Err(_) => continue,
                }
                drop(map);
                let shared = server_shared.clone();
                let tls = server_tls.clone();
                let stop = server_stop.clone();
                let live2 = live.clone();
                let spawned = std::thread::Builder::new()
                    .name("ocikit-serve".into())
                    .stack_size(512 * 1024)
                    .spawn(move || {
                        serve_connection(&shared, tls, tcp, &stop);
                        let (lock, cv) = &*live2;
                        lock.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                        cv.notify_all();
                    });
                if spawned.is_err() {
                    let (lock, _) = &*live;
                    lock.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                }
            }
        }
        // Stop: new connections are refused, idle ones see EOF now, busy ones finish their
        // response, then close.
        drop(listener);
        let (lock, cv) = &*live;
        let mut map = lock.lock().unwrap_or_else(|p| p.into_inner());
        for s in map.values() {
            let _ = s.shutdown(Shutdown::Read);
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while !map.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            map = cv
                .wait_timeout(map, left.min(Duration::from_millis(100)))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        Ok(())
    }
}

/// Serve one connection until it closes, errs, or the server stops.
fn serve_connection(
    shared: &Shared,
    tls: Option<Arc<rustls::ServerConfig>>,
    tcp: TcpStream,
    stop: &AtomicBool,
) {
    let peer = tcp
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "-".into());
    let _ = tcp.set_nodelay(true);
    let stream = match tls {
        Some(cfg) => match rustls::ServerConnection::new(cfg) {
            Ok(c) => Stream::Tls(Box::new(rustls::StreamOwned::new(c, tcp))),
            Err(_) => return,
        },
        None => Stream::Plain(tcp),
    };
    let mut conn = Conn::new(stream);
    let mut first = true;
    loop {
        let req = match conn.read_request(first) {
            Ok(r) => r,
            Err(ReadError::Closed) | Err(ReadError::Io(_)) => break,
            Err(ReadError::Bad(status, why)) => {
                let start = Instant::now();
                let resp = handler::error(status, "UNSUPPORTED", why, serde_json::json!({}));
                let n = resp.write_to(&mut conn.stream, true).unwrap_or(0);
                log(shared, &peer, None, None, status, n, start);
                break;
            }
        };
        first = false;
        let start = Instant::now();
        let (resp, user) = handler::handle(shared, &req);
        let close = !req.keep_alive() || req.has_body() || stop.load(Ordering::SeqCst);
        let status = resp.status;
        let written = resp.write_to(&mut conn.stream, close);
        log(
            shared,
            &peer,
            user.as_deref(),
            Some(&req),
            status,
            *written.as_ref().unwrap_or(&0),
            start,
        );
        if written.is_err() {
            break;
        }
        if close {
            if req.has_body() {
                drain(&mut conn.stream);
            }
            break;
        }
    }
    if let Stream::Tls(s) = &mut conn.stream {
        // Written straight to the socket: rustls's own flush would first try to finish a
        // handshake that failed, waiting for the client.
        s.conn.send_close_notify();
        while s.conn.wants_write() {
            if s.conn.write_tls(&mut s.sock).is_err() {
                break;
            }
        }
    }
    conn.shutdown();
}

/// Read and drop what a client still sends (a refused write's body) for a moment, so closing
/// does not reset the connection before the client has read the answer.
fn drain(stream: &mut Stream) {
    let tcp = match stream {
        Stream::Plain(s) => s,
        Stream::Tls(s) => &mut s.sock,
    };
    let _ = tcp.shutdown(Shutdown::Write);
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 8192];
    let mut left: usize = 4 << 20;
    while left > 0 {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// One access log line: `PEER USER [TIME] "METHOD TARGET HTTP/1.1" STATUS BYTES MILLISms`.
fn log(
    shared: &Shared,
    peer: &str,
    user: Option<&str>,
    req: Option<&Request>,
    status: u16,
    bytes: u64,
    start: Instant,
) {
    if !shared.access_log {
        return;
    }
    let line = match req {
        Some(r) => {
            let mut target = r.path.clone();
            if !r.query.is_empty() {
                target.push('?');
                target.push_str(&r.query);
            }
            if target.len() > 512 {
                target.truncate(512);
                target.push_str("...");
            }
            format!(
                "{} HTTP/1.{}",
                format_args!("{} {target}", r.method),
                u8::from(r.http11)
            )
        }
        None => "-".into(),
    };
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let text = format!(
        "{peer} {} [{}] \"{line}\" {status} {bytes} {ms:.1}ms\n",
        user.unwrap_or("-"),
        http::log_time(SystemTime::now()),
    );
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
