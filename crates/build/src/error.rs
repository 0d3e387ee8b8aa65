//! The errors of the build steps: each names the path, ref, digest or entry at fault.

use std::path::PathBuf;

use ocikit_layout::archive::ArchiveError;
use ocikit_layout::engine::BuildError;
use ocikit_layout::Digest;

/// What a build step can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The layout (reading, writing, refs).
    #[error(transparent)]
    Layout(#[from] ocikit_layout::Error),
    /// Storing a layer (its compression, diff_id, media type).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Writing a layer tar, or reading one to unpack.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A file or directory could not be read or written.
    #[error("`{}`: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An input path is not what it must be.
    #[error("`{}`: {reason}", path.display())]
    Input {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A value given for an edit is malformed.
    #[error("`{value}`: {reason}")]
    BadValue {
        /// The value as given.
        value: String,
        /// Why.
        reason: String,
    },
    /// No image under the ref matched the platforms asked for (or it holds no image).
    #[error("ref `{name}`: no image {}", if platforms.is_empty() { "to change".to_string() } else { format!("of platform {}", platforms.join(", ")) })]
    NoImage {
        /// The ref or digest.
        name: String,
        /// The platforms asked for.
        platforms: Vec<String>,
    },
    /// A zstd layer for a Docker manifest.
    #[error("manifest `{digest}` is a Docker manifest, which cannot hold zstd layers")]
    ZstdForDocker {
        /// The manifest.
        digest: Digest,
    },
    /// An edited config fails the checks a stored config must pass.
    #[error("the edited config of manifest `{digest}`: {problem}")]
    Config {
        /// The manifest whose config it is.
        digest: Digest,
        /// What is wrong.
        problem: ocikit_layout::engine::Problem,
    },
    /// Not an index where one is needed.
    #[error("`{name}` ({digest}) is not an index")]
    NotAnIndex {
        /// The ref or digest.
        name: String,
        /// Its digest.
        digest: Digest,
    },
    /// Removing these entries would leave the index empty.
    #[error("index `{name}`: removing {removed} entries leaves it empty")]
    WouldEmpty {
        /// The ref.
        name: String,
        /// How many entries matched.
        removed: usize,
    },
    /// An entry to remove matched nothing.
    #[error("index `{name}`: no entry matches `{what}`")]
    NoEntry {
        /// The ref.
        name: String,
        /// What was asked for.
        what: String,
    },
    /// The unpack target is neither absent nor an empty directory.
    #[error("`{}`: exists and is not an empty directory", path.display())]
    NotEmpty {
        /// The target.
        path: PathBuf,
    },
    /// A layer's uncompressed content is not what the config says.
    #[error("layer {index} ({digest}): its uncompressed content has digest `{found}`, the config's rootfs.diff_ids[{index}] is `{expected}`")]
    DiffId {
        /// The layer's position.
        index: usize,
        /// The layer.
        digest: Digest,
        /// The config's diff_id.
        expected: Digest,
        /// What the content hashes to.
        found: Digest,
    },
    /// A ref names several images and no platform was chosen.
    #[error("ref `{name}` names {} images; choose one platform: {}", platforms.len(), platforms.join(", "))]
    NeedPlatform {
        /// The ref.
        name: String,
        /// The platforms of its images.
        platforms: Vec<String>,
    },
    /// A layer entry that cannot be unpacked safely (or at all).
    #[error("layer {index} ({digest}): entry `{entry}`: {reason}")]
    Entry {
        /// The layer's position, base first.
        index: usize,
        /// The layer.
        digest: Digest,
        /// The entry as named in the layer.
        entry: String,
        /// Why.
        reason: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
