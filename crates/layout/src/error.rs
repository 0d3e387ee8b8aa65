//! The library's error type.

use std::path::PathBuf;

use crate::Digest;

/// Everything the layout library can fail with. Each variant names the path or digest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a path.
    #[error("`{}`: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file that could not be written (a full disk, a quota, a failing device): named as the
    /// file being written, never as the source being read. The same failure, and the same
    /// exit status, for every command that writes.
    #[error("could not write `{}`: {source}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A path in the layout that is not what the store accepts: a symbolic link, a FIFO, a
    /// device, a directory where a file belongs (or a file where a directory belongs), or a
    /// path that leads out of the layout. Nothing is read, written or deleted through it.
    #[error("refusing `{}`: {reason}", path.display())]
    UnsafePath {
        /// The path.
        path: PathBuf,
        /// What it is instead of what it should be.
        reason: String,
    },
    /// The directory is not an OCI image layout.
    #[error("`{}` is not an OCI image layout: {reason}", path.display())]
    NotALayout {
        /// The directory.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// A JSON document that does not parse.
    #[error("`{what}` does not parse: {source}")]
    Json {
        /// The path or digest of the document.
        what: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON document larger than the cap.
    #[error("`{what}` is {size} bytes, larger than the {limit}-byte limit for JSON documents")]
    TooLarge {
        /// The path or digest of the document.
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A blob whose content does not hash to its digest.
    #[error("blob `{expected}` at `{}` has digest `{found}`", path.display())]
    DigestMismatch {
        /// The digest asked for.
        expected: Digest,
        /// The digest of the bytes found.
        found: Digest,
        /// The blob's path.
        path: PathBuf,
    },
    /// A blob whose size differs from its descriptor.
    #[error("blob `{digest}` at `{}` is {found} bytes, expected {expected}", path.display())]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The size the descriptor declares.
        expected: u64,
        /// The size found (a lower bound when the blob is larger).
        found: u64,
        /// The blob's path.
        path: PathBuf,
    },
    /// A blob that is not in the layout.
    #[error("blob `{digest}` is missing (`{}`)", path.display())]
    MissingBlob {
        /// The blob.
        digest: Digest,
        /// Where it should be.
        path: PathBuf,
    },
    /// A digest whose algorithm ocikit cannot compute.
    #[error("digest `{0}` uses an algorithm ocikit cannot verify")]
    Unverifiable(Digest),
    /// An invalid digest string.
    #[error(transparent)]
    Digest(#[from] crate::DigestError),
    /// A bundle with a part size was to be written to a stream: parts are separate files.
    #[error("a bundle split into parts cannot be written to a stream: each part is a file")]
    SplitBundleToStream,
    /// A ref that names nothing in a layout's `index.json`.
    #[error("no ref or digest `{name}` in `{}`", index.display())]
    RefNotFound {
        /// The ref or digest asked for.
        name: String,
        /// The `index.json` searched (which layout: `copy` reads two).
        index: PathBuf,
    },
    /// A ref that names several entries.
    #[error("ref `{name}` names {} entries in index.json: {}", digests.len(), digests.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", "))]
    AmbiguousRef {
        /// The ref.
        name: String,
        /// The digests it names.
        digests: Vec<Digest>,
    },
    /// A ref name that does not fit the grammar.
    #[error("invalid ref name `{0}`: refs are letters, digits and -._:@/+ separated components")]
    InvalidRef(String),
    /// Another process holds the writer lock.
    #[error("`{}` is locked by another ocikit writer; gave up after {seconds} s", path.display())]
    Locked {
        /// The layout.
        path: PathBuf,
        /// How long we waited.
        seconds: u64,
    },
    /// The layout directory was removed or replaced while this writer waited for its lock
    /// (the lock it got is on a directory that is no longer at the path).
    #[error("`{}` was removed or replaced while waiting for its lock", path.display())]
    LayoutGone {
        /// The layout.
        path: PathBuf,
    },
    /// Input that is not what it should be (a bundle, an inventory, a selection).
    #[error("`{what}`: {reason}")]
    Invalid {
        /// The file, digest or ref concerned.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A bundle part size too small for the bundle's metadata and any data.
    #[error("a part size of {size} bytes is too small to hold the bundle's metadata and any data (at least {needed} bytes)")]
    PartTooSmall {
        /// The part size asked for.
        size: u64,
        /// The least a part needs here.
        needed: u64,
    },
    /// A document nested deeper than [`crate::walk::MAX_DEPTH`] levels below its root: a
    /// crafted chain, refused rather than carried in part.
    #[error("`{digest}` is nested more than {depth} levels deep; refusing to follow it")]
    TooDeep {
        /// The first document past the limit.
        digest: Digest,
        /// The limit.
        depth: usize,
    },
    /// A tar that cannot be read safely, or a tar entry that cannot be written as declared.
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    /// A chunk of a blob assembled in place whose bytes do not hash to the digest its source
    /// (a bundle part) gives for it.
    #[error("rejected chunk {chunk} of blob `{digest}`: its bytes hash to `{found}`, the part says `{claimed}`")]
    ChunkMismatch {
        /// The blob.
        digest: Digest,
        /// The chunk's number.
        chunk: usize,
        /// The digest of the bytes (boxed, as `claimed`, to keep the error small).
        found: Box<Digest>,
        /// The digest the source claims, as given.
        claimed: Box<str>,
    },
    /// A document that is not what its position requires.
    #[error("`{digest}`: {reason}")]
    BadDocument {
        /// The document.
        digest: Digest,
        /// What is wrong.
        reason: String,
    },
    /// A failure of a source or sink outside this crate (a registry), kept whole so the
    /// caller can downcast it back.
    #[error("{source}")]
    External {
        /// The failure.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
        /// Trying again may succeed (a dropped connection, a busy server).
        transient: bool,
    },
}

impl Error {
    /// Whether trying the same step again may succeed (only an external source or sink
    /// knows; a layout's errors are not transient).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::External {
                transient: true,
                ..
            }
        )
    }

    /// The error of a writer of `path`, as an `io::Error` that carries [`Error::Write`] (of the
    /// same kind) through code that only sees `io::Error`s; [`crate::unwrap_io`] gives it back.
    pub fn write_failed(path: impl Into<PathBuf>, source: std::io::Error) -> std::io::Error {
        if source.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return source;
        }
        let kind = source.kind();
        std::io::Error::new(
            kind,
            Error::Write {
                path: path.into(),
                source,
            },
        )
    }

    /// An `io::Error` met while writing to `path`: the error it carries when a writer below
    /// named its own file (or a source failed verification), else [`Error::Write`] of `path`.
    pub fn writing(path: impl Into<PathBuf>, e: std::io::Error) -> Error {
        let path = path.into();
        match crate::unwrap_io(e, &path) {
            Error::Io { path, source } => Error::Write { path, source },
            other => other,
        }
    }

    /// Whether this is a failure to write a file ([`Error::Write`]), not a problem of the
    /// input.
    pub fn is_write_failure(&self) -> bool {
        matches!(self, Error::Write { .. })
    }

    /// Wrap an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
