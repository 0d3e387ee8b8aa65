//! Tar archives, in one place: the safe reader every verb that takes a tar uses (import of
//! docker-save and oci-archives, bundle loading, the coming `unpack`) and the deterministic
//! writer every verb that makes one uses (bundle parts, docker-archive and oci-archive export).
//!
//! Reading ([`read`]) comes in two shapes over the same [`Limits`] and the same per-header
//! checks ([`normalize`], name and member bounds, link targets):
//! - [`Archive`]: indexed. The headers are read once (data skipped by seeking), then any member
//!   is read by its byte range. For archives whose members are needed out of order (Docker
//!   archives put `manifest.json` last); compressed tars are spooled to a temp file first.
//! - [`Stream`]: sequential, for a part that is consumed as it arrives (a bundle part's chunks
//!   are written to disk entry by entry). Extension headers are handled by this module, not by
//!   the tar reader: each header's declared size is checked before any of its data is read.
//!   A bundle part is a plain tar on disk, so it could also be indexed first; streaming was
//!   chosen because loading must not depend on entry order being recoverable from names (the
//!   `.digest` entry after each chunk, `bundle.json` first), because it reads each part once
//!   instead of a header pass plus a data pass, and because `unpack` will read layers that
//!   arrive decompressed from a pipe, where there is nothing to seek.
//!
//! Writing ([`write`](mod@write)): [`TarWriter`] makes ustar entries with uid/gid 0, no user or group
//! names, mode 0644 for files and 0755 for directories and one mtime for all (the caller's:
//! `SOURCE_DATE_EPOCH` or 0, decided at the command line). A streamed member must yield exactly
//! the size its header declared; a short or long source fails naming the member. A name too long
//! for the ustar name and prefix fields gets a GNU long-name entry before it (`././@LongLink`,
//! mode 0644, mtime 0), the same for every verb.
//!
//! [`checked_header`] is the one parser of a single raw 512-byte header (checksum included),
//! used where only a header is looked at: the extension pre-pass of [`Archive`] and
//! `bundle::is_bundle_part`.

pub mod read;
pub mod spool;
pub mod write;

use std::path::{Path, PathBuf};

pub use read::{Archive, Member, MemberMeta, Section, Stream, StreamMember};
pub use write::{block_padding, copy_exact, EntryHeader, EntryKind, TarWriter};

/// The size of a tar block (a header, and the unit data is padded to).
pub const BLOCK: u64 = 512;
/// The most members an archive may have.
pub const MEMBER_LIMIT: usize = 1_000_000;
/// The longest member name, in bytes.
pub const NAME_LIMIT: usize = 4096;
/// All member names and link targets together, in bytes.
pub const NAMES_LIMIT: usize = 64 << 20;
/// The largest GNU long-name/long-link or PAX extension header's data, in bytes.
pub const EXTENSION_LIMIT: u64 = 1 << 20;

/// What reading an archive may hold in memory. The defaults are the `*_LIMIT` constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most members.
    pub members: usize,
    /// The longest member name or link target, in bytes.
    pub name: usize,
    /// All member names and link targets together, in bytes.
    pub names: usize,
    /// The largest extension header's data (GNU long names, PAX records), in bytes.
    pub extension: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            members: MEMBER_LIMIT,
            name: NAME_LIMIT,
            names: NAMES_LIMIT,
            extension: EXTENSION_LIMIT,
        }
    }
}

/// What reading or writing a tar can fail with. Every variant names the archive or the member.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// An I/O error on the archive (or the temp file it is spooled to).
    #[error("`{}`: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The archive as a whole is unusable (not a tar, damaged, over a limit).
    #[error("`{}`: {reason}", path.display())]
    Bad {
        /// The archive.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// One member is unusable (a bad name or link, an oversized extension header, truncated).
    #[error("`{}`: member `{member}`: {reason}", path.display())]
    Member {
        /// The archive.
        path: PathBuf,
        /// The member, as named in the archive.
        member: String,
        /// Why.
        reason: String,
    },
    /// Writing: the reader a member's data came from failed (a failed verification is carried
    /// inside `source`; see `crate::unwrap_io`).
    #[error("tar member `{member}`: reading its data: {source}")]
    Source {
        /// The member being written.
        member: String,
        /// The reader's error.
        #[source]
        source: std::io::Error,
    },
    /// Writing: the data ended before the size the member's header declared.
    #[error("tar member `{member}`: its data ended {missing} bytes short of the {declared} bytes declared")]
    Short {
        /// The member being written.
        member: String,
        /// The size in its header.
        declared: u64,
        /// How many bytes were missing.
        missing: u64,
    },
    /// Writing: the data went on past the size the member's header declared.
    #[error("tar member `{member}`: its data is longer than the {declared} bytes declared")]
    Long {
        /// The member being written.
        member: String,
        /// The size in its header.
        declared: u64,
    },
    /// Writing: the output failed.
    #[error("writing the tar: {source}")]
    Output {
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl ArchiveError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ArchiveError {
        ArchiveError::Io {
            path: path.into(),
            source,
        }
    }

    /// The archive at `path` is unusable.
    pub fn bad(path: impl Into<PathBuf>, reason: impl Into<String>) -> ArchiveError {
        ArchiveError::Bad {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// A member of the archive at `path` is unusable.
    pub fn member(
        path: impl Into<PathBuf>,
        member: &str,
        reason: impl Into<String>,
    ) -> ArchiveError {
        ArchiveError::Member {
            path: path.into(),
            member: member.to_string(),
            reason: reason.into(),
        }
    }
}

/// The module's result type.
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// What a member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link, with its target as written.
    Symlink(String),
    /// A hard link, with the (normalized) member it names.
    HardLink(String),
    /// Anything else (devices, fifos, ...).
    Other,
}

/// Normalize a member name: drop `./`, `.` and empty components; refuse absolute names,
/// `..` components and NUL bytes (which no file name can hold).
pub fn normalize(name: &str) -> std::result::Result<String, String> {
    if name.starts_with('/') {
        return Err("absolute path".into());
    }
    if name.contains('\0') {
        return Err("NUL in path".into());
    }
    let mut parts = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("`..` in path".into()),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// Join a symlink's target to the directory of the (normalized) link `link`, resolving `..`
/// inside the archive: `None` when the target is absolute or climbs above the archive's root.
/// Public for the fuzz targets; [`Archive::resolve`] is what the importer uses.
pub fn join_link(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// One raw 512-byte block as a tar header, if it is one: not all zeros (the end of an archive)
/// and with a checksum that matches. Nothing after the block is looked at, so no extension
/// header is followed: the name is the header's own (ustar prefix included).
pub fn checked_header(block: &[u8; BLOCK as usize]) -> Option<&tar::Header> {
    if block.iter().all(|&b| b == 0) {
        return None;
    }
    let h = tar::Header::from_byte_slice(block);
    let sum: u32 = block[..148]
        .iter()
        .chain(&block[156..])
        .map(|&b| u32::from(b))
        .sum::<u32>()
        + 8 * u32::from(b' ');
    (h.cksum().ok()? == sum).then_some(h)
}

/// Is this entry type an extension header (data that describes the next member)?
fn is_extension(t: tar::EntryType) -> bool {
    use tar::EntryType as T;
    matches!(
        t,
        T::GNULongName | T::GNULongLink | T::XHeader | T::XGlobalHeader
    )
}

/// The refusal of an extension header over the limit, before its data is read.
fn extension_too_large(path: &Path, member: &str, size: u64, limit: u64) -> ArchiveError {
    ArchiveError::member(
        path,
        member,
        format!(
            "an extension header (long name or PAX records) of {size} bytes, over the {limit}-byte limit"
        ),
    )
}

/// The checks every member gets, whether the archive is indexed or streamed: the member count,
/// name and link lengths, all names together, the name's normalization and the kind (a hard
/// link must stay inside the archive).
#[derive(Debug)]
struct Admission {
    limits: Limits,
    count: usize,
    names: usize,
}

/// A member that passed [`Admission::admit`].
#[derive(Debug)]
struct Admitted {
    /// The name as written (for messages).
    raw_name: String,
    /// The normalized name (empty for the archive's root directory).
    name: String,
    kind: MemberKind,
}

impl Admission {
    fn new(limits: &Limits) -> Admission {
        Admission {
            limits: *limits,
            count: 0,
            names: 0,
        }
    }

    /// Check one member's header. `None` for a PAX global header (counted, then ignored).
    fn admit(
        &mut self,
        path: &Path,
        raw: &[u8],
        link: Option<&[u8]>,
        entry_type: tar::EntryType,
    ) -> Result<Option<Admitted>> {
        self.count += 1;
        if self.count > self.limits.members {
            return Err(ArchiveError::bad(
                path,
                format!("more than {} members", self.limits.members),
            ));
        }
        let link_len = link.map_or(0, <[u8]>::len);
        if raw.len() > self.limits.name || link_len > self.limits.name {
            return Err(ArchiveError::bad(
                path,
                format!(
                    "a member name or link target is longer than {} bytes",
                    self.limits.name
                ),
            ));
        }
        self.names += raw.len() + link_len;
        if self.names > self.limits.names {
            return Err(ArchiveError::bad(
                path,
                format!(
                    "member names and link targets add up to more than {} bytes",
                    self.limits.names
                ),
            ));
        }
        let raw_name = String::from_utf8_lossy(raw).into_owned();
        let name = normalize(&raw_name).map_err(|r| ArchiveError::member(path, &raw_name, r))?;
        use tar::EntryType as T;
        let kind = match entry_type {
            T::Regular | T::Continuous => MemberKind::File,
            T::Directory => MemberKind::Dir,
            T::Symlink | T::Link => {
                let target = link
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .ok_or_else(|| {
                        ArchiveError::member(path, &raw_name, "link without a target")
                    })?;
                if entry_type == T::Symlink {
                    MemberKind::Symlink(target)
                } else {
                    let t = normalize(&target).map_err(|r| {
                        ArchiveError::member(
                            path,
                            &raw_name,
                            format!("hard link to `{target}` leaves the archive ({r})"),
                        )
                    })?;
                    MemberKind::HardLink(t)
                }
            }
            T::XGlobalHeader => return Ok(None),
            _ => MemberKind::Other,
        };
        Ok(Some(Admitted {
            raw_name,
            name,
            kind,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(normalize("./a/./b/").as_deref(), Ok("a/b"));
        assert_eq!(normalize("manifest.json").as_deref(), Ok("manifest.json"));
        assert!(normalize("/etc/passwd").is_err());
        assert!(normalize("a/../../b").is_err());
        assert_eq!(normalize("a\0b"), Err("NUL in path".to_string()));
        assert_eq!(
            join_link("x/layer.tar", "../y/layer.tar").as_deref(),
            Some("y/layer.tar")
        );
        assert_eq!(join_link("x/layer.tar", "../../y"), None);
        assert_eq!(join_link("x/layer.tar", "/etc/passwd"), None);
    }

    #[test]
    fn checked_header_needs_a_matching_checksum() {
        let mut h = tar::Header::new_ustar();
        h.set_path("bundle.json").expect("path");
        h.set_size(3);
        h.set_cksum();
        let mut block = [0u8; 512];
        block.copy_from_slice(h.as_bytes());
        let got = checked_header(&block).expect("a header");
        assert_eq!(&*got.path_bytes(), b"bundle.json");
        assert_eq!(got.entry_size().expect("size"), 3);
        block[0] = b'c';
        assert!(
            checked_header(&block).is_none(),
            "checksum no longer matches"
        );
        assert!(checked_header(&[0u8; 512]).is_none(), "end of archive");
    }
}
