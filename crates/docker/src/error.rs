//! The docker crate's error type. Every variant names the source, member, ref or path at fault.

use std::path::PathBuf;

/// Everything import and export can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A layout error (blob reads and writes, index commits, refs).
    #[error(transparent)]
    Layout(#[from] ocikit_layout::Error),
    /// An I/O error on a path.
    #[error("`{}`: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The source as a whole is unusable (not a tar, unknown kind, ...).
    #[error("`{}`: {reason}", path.display())]
    BadSource {
        /// The source.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// One member (file) of a source is unusable.
    #[error("`{}`: member `{member}`: {reason}", path.display())]
    BadMember {
        /// The source.
        path: PathBuf,
        /// The member, as named in the source.
        member: String,
        /// Why.
        reason: String,
    },
    /// A ref names an index, and no platform was chosen.
    #[error("ref `{name}` names an index; choose one of its platforms: {}", platforms.join(", "))]
    NeedPlatform {
        /// The ref.
        name: String,
        /// The platforms the index offers.
        platforms: Vec<String>,
    },
    /// A ref that cannot be written in the asked format.
    #[error("ref `{name}` cannot be exported as {format}: {reason}")]
    NotExportable {
        /// The ref.
        name: String,
        /// The format.
        format: &'static str,
        /// Why.
        reason: String,
    },
    /// A ref for the one untagged image of the sources, which hold `untagged` untagged images
    /// (not one).
    #[error("{}", ref_needs_one_untagged(name, *untagged))]
    RefNeedsOneUntagged {
        /// The ref asked for.
        name: String,
        /// How many untagged images the sources hold.
        untagged: usize,
    },
    /// Two different images claim one ref in one import (two archives, or two entries of one,
    /// whose names agree): neither may silently win.
    #[error("{0}")]
    RefClaimedTwice(Box<RefClaim>),
    /// Bundle parts given together with sources of other kinds.
    #[error("bundle parts and other sources cannot be imported in one command")]
    MixedBundleParts,
    /// A dry run asked for sources that are not bundle parts (only a bundle load has one).
    #[error("a dry run is for bundle parts; the sources are not bundle parts")]
    DryRunNeedsBundle,
    /// Options that do not fit together.
    #[error("{0}")]
    Usage(String),
}

fn ref_needs_one_untagged(name: &str, untagged: usize) -> String {
    if untagged == 0 {
        format!("ref `{name}` is for an untagged image, but every image in the sources has a name")
    } else {
        format!("ref `{name}` is for one image, but the sources hold {untagged} untagged images")
    }
}

impl Error {
    /// Wrap an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A bad member of a source.
    pub fn member(path: impl Into<PathBuf>, member: &str, reason: impl Into<String>) -> Error {
        Error::BadMember {
            path: path.into(),
            member: member.to_string(),
            reason: reason.into(),
        }
    }
}

impl From<ocikit_layout::archive::ArchiveError> for Error {
    /// Reading errors keep the shape they had when the reader lived in this crate (a source, a
    /// member or an I/O error naming the archive); writing errors are the layout's.
    fn from(e: ocikit_layout::archive::ArchiveError) -> Error {
        use ocikit_layout::archive::ArchiveError as A;
        match e {
            A::Io { path, source } => Error::Io { path, source },
            A::Bad { path, reason } => Error::BadSource { path, reason },
            A::Member {
                path,
                member,
                reason,
            } => Error::BadMember {
                path,
                member,
                reason,
            },
            e => Error::Layout(ocikit_layout::Error::Archive(e)),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Two different images that claim one ref in one import ([`Error::RefClaimedTwice`]).
#[derive(Debug, thiserror::Error)]
#[error("ref `{name}` names two different images in this import: `{first}` from `{}` and `{second}` from `{}`", first_source.display(), second_source.display())]
pub struct RefClaim {
    /// The ref.
    pub name: String,
    /// The image it names first.
    pub first: ocikit_layout::Digest,
    /// Where that one comes from.
    pub first_source: PathBuf,
    /// The other image.
    pub second: ocikit_layout::Digest,
    /// Where that one comes from.
    pub second_source: PathBuf,
}
