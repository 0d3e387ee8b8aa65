//! The registry client's error type.

use std::path::PathBuf;

/// Everything the registry client can fail with. Each variant names the URL, digest,
/// reference or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image reference that does not parse.
    #[error("`{input}`: not an image reference: {reason}")]
    Reference {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry answered with a status the operation cannot go on from.
    #[error("{method} {url}: HTTP {status}{}", detail_suffix(.detail))]
    Status {
        /// The request method.
        method: &'static str,
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error codes and messages, if it sent any.
        detail: String,
    },
    /// The connection failed (refused, reset, timed out, TLS), after retries.
    #[error("{url}: {reason}")]
    Transport {
        /// The URL asked.
        url: String,
        /// What failed.
        reason: String,
    },
    /// A step to take again from the start (a streamed upload met an expired token).
    #[error("{url}: {reason}")]
    Again {
        /// The URL asked.
        url: String,
        /// Why.
        reason: String,
    },
    /// Something the registry sent is not what was asked for.
    #[error("{url}: `{digest}`: {reason}")]
    Verify {
        /// The URL it came from.
        url: String,
        /// The digest (or tag) asked for.
        digest: String,
        /// What does not match.
        reason: String,
    },
    /// The registry does not have what was asked for.
    #[error("{url}: `{what}` is not in the repository")]
    Missing {
        /// The URL asked.
        url: String,
        /// The tag or digest.
        what: String,
    },
    /// The registry wants credentials that were not given or were refused.
    #[error("{registry}: {reason}")]
    Auth {
        /// The registry host.
        registry: String,
        /// What happened.
        reason: String,
    },
    /// A credentials file (Docker's `config.json`, `$REGISTRY_AUTH_FILE`) or a CA file that
    /// cannot be read or written.
    #[error("`{}`: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Plain HTTP to a host that is not this machine.
    #[error("{registry}: plain HTTP is allowed only for localhost and 127.0.0.1 unless asked for")]
    Insecure {
        /// The registry host.
        registry: String,
    },
    /// The layout side failed.
    #[error(transparent)]
    Layout(#[from] ocikit_layout::Error),
}

fn detail_suffix(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(" ({d})")
    }
}

impl Error {
    /// Whether trying again (a new connection, the body re-sent) may succeed: connection
    /// failures, 408, 413 (the upload switches to chunks), 429 and 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Again { .. } => true,
            Error::Status { status, .. } => {
                matches!(status, 408 | 413 | 429) || (500..600).contains(status)
            }
            _ => false,
        }
    }

    /// Into the engine's error, kept whole (the CLI downcasts it back).
    pub fn into_layout(self) -> ocikit_layout::Error {
        match self {
            Error::Layout(e) => e,
            e => {
                let transient = e.is_transient();
                ocikit_layout::Error::External {
                    source: Box::new(e),
                    transient,
                }
            }
        }
    }
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
