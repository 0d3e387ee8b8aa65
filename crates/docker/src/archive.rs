//! Safe, streaming access to tar archives: [`Archive`] indexes the members of a tar once
//! (headers only; data is skipped by seeking) and then reads any member by its byte range,
//! without holding it in memory.
//!
//! Untrusted input rules, all enforced while indexing, before anything is imported:
//! - member names are normalized (`./` prefixes and `.` components dropped, trailing `/`
//!   removed); an absolute name or a `..` component refuses the whole archive;
//! - symlinks and hard links are resolved to other members ([`Archive::resolve`]); a link that
//!   leaves the archive, loops, or ends nowhere is an error naming it;
//! - at most [`MEMBER_LIMIT`] members, [`NAME_LIMIT`] bytes per name or link target and
//!   [`NAMES_LIMIT`] bytes of names and link targets in all (the index is held in memory);
//! - GNU long-name and PAX extension headers (which the tar reader reads into memory whole) of at
//!   most [`EXTENSION_LIMIT`] bytes, checked by a first pass over the headers before the tar
//!   reader sees them;
//! - a member of any kind whose header declares more data than the file holds means the archive
//!   is truncated (or lies): it is refused, naming the member, before anything is read.
//!
//! [`Limits`] carries these; [`Archive::open`] uses the defaults.
//!
//! `.tar.gz` and `.tar.zst` archives are recognised by their first bytes and decompressed once
//! into an anonymous temp file (removed by the kernel when closed), which is then read like any
//! tar. Spooling costs disk space the size of the tar, but keeps one code path with random
//! access (Docker archives put `manifest.json` last, so the layers are only known at the end)
//! and keeps memory constant.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ocikit_layout::compress::{decompressor, sniff, Sniffed, SNIFF_LEN};
use ocikit_layout::layer::copy_large;
use ocikit_layout::Compression;

use crate::{Error, Result};

/// The most members an archive may have.
pub const MEMBER_LIMIT: usize = 1_000_000;
/// The longest member name, in bytes.
pub const NAME_LIMIT: usize = 4096;
/// All member names and link targets together, in bytes.
pub const NAMES_LIMIT: usize = 64 << 20;
/// The largest GNU long-name/long-link or PAX extension header's data, in bytes.
pub const EXTENSION_LIMIT: u64 = 1 << 20;

/// What indexing an archive may hold in memory. The defaults are the `*_LIMIT` constants.
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

/// How many links [`Archive::resolve`] follows before calling it a loop.
const LINK_HOPS: usize = 32;

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

/// One member of the archive.
#[derive(Debug, Clone)]
pub struct Member {
    /// Offset of its data in the (decompressed) tar.
    pub offset: u64,
    /// Size of its data.
    pub size: u64,
    /// What it is.
    pub kind: MemberKind,
}

/// A tar archive, indexed.
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    file: File,
    members: BTreeMap<String, Member>,
    compression: Compression,
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

impl Archive {
    /// Open and index a tar (plain, gzip or zstd) on disk, with the default [`Limits`].
    pub fn open(path: &Path) -> Result<Archive> {
        Archive::open_with(path, &Limits::default())
    }

    /// Open and index a tar (plain, gzip or zstd) on disk, within `limits`.
    pub fn open_with(path: &Path, limits: &Limits) -> Result<Archive> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut head = vec![0u8; SNIFF_LEN];
        let n = ocikit_layout::compress::read_full(&mut file, &mut head)
            .map_err(|e| Error::io(path, e))?;
        head.truncate(n);
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(path, e))?;
        let bad = |reason: &str| Error::BadSource {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let compression = match sniff(&head) {
            Sniffed::Known(c) => c,
            Sniffed::Bzip2 => {
                return Err(bad(
                    "bzip2-compressed; only plain, gzip and zstd tars are read",
                ))
            }
            Sniffed::Xz => {
                return Err(bad(
                    "xz-compressed; only plain, gzip and zstd tars are read",
                ))
            }
            // Old-style (v7) tars have no magic: let the tar reader decide.
            Sniffed::Unknown => Compression::None,
        };
        if n == 0 {
            return Err(bad("not a tar archive: the file is empty"));
        }
        let file = match compression {
            Compression::None => file,
            c => {
                let mut spool =
                    tempfile::tempfile().map_err(|e| Error::io(std::env::temp_dir(), e))?;
                let mut dec =
                    decompressor(io::BufReader::new(file), c).map_err(|e| Error::io(path, e))?;
                copy_large(&mut dec, &mut spool)
                    .map_err(|e| bad(&format!("not a readable {} stream: {e}", c.as_str())))?;
                spool
                    .seek(SeekFrom::Start(0))
                    .map_err(|e| Error::io(path, e))?;
                spool
            }
        };
        let members = index(&file, path, limits)?;
        Ok(Archive {
            path: path.to_path_buf(),
            file,
            members,
            compression,
        })
    }

    /// The archive's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The compression the archive was read through.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// All members, by normalized name.
    pub fn members(&self) -> &BTreeMap<String, Member> {
        &self.members
    }

    /// Is there a member of this (normalized) name?
    pub fn contains(&self, name: &str) -> bool {
        normalize(name).is_ok_and(|n| self.members.contains_key(&n))
    }

    /// Follow links from `name` to a regular file member; returns its normalized name.
    pub fn resolve(&self, name: &str) -> Result<String> {
        let orig = name;
        let mut cur = normalize(name).map_err(|r| Error::member(&self.path, orig, r))?;
        for _ in 0..LINK_HOPS {
            let m = self
                .members
                .get(&cur)
                .ok_or_else(|| Error::member(&self.path, &cur, "missing from the archive"))?;
            match &m.kind {
                MemberKind::File => return Ok(cur),
                MemberKind::Symlink(t) => {
                    cur = join_link(&cur, t).ok_or_else(|| {
                        Error::member(
                            &self.path,
                            &cur,
                            format!("symlink to `{t}` leaves the archive"),
                        )
                    })?;
                }
                MemberKind::HardLink(t) => cur = t.clone(),
                MemberKind::Dir => {
                    return Err(Error::member(
                        &self.path,
                        &cur,
                        "is a directory, not a file",
                    ))
                }
                MemberKind::Other => {
                    return Err(Error::member(&self.path, &cur, "is not a regular file"))
                }
            }
        }
        Err(Error::member(
            &self.path,
            orig,
            "too many levels of links (a loop?)",
        ))
    }

    /// The size of a member (links followed).
    pub fn size(&self, name: &str) -> Result<u64> {
        let n = self.resolve(name)?;
        Ok(self.members.get(&n).map(|m| m.size).unwrap_or(0))
    }

    /// A reader over a member's data (links followed).
    pub fn open_member(&self, name: &str) -> Result<Section<'_>> {
        let n = self.resolve(name)?;
        let m = self
            .members
            .get(&n)
            .ok_or_else(|| Error::member(&self.path, &n, "missing from the archive"))?;
        Ok(Section {
            file: &self.file,
            pos: m.offset,
            end: m.offset + m.size,
        })
    }

    /// Read a whole member of at most `limit` bytes.
    pub fn read_small(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        let size = self.size(name)?;
        if size > limit {
            return Err(Error::member(
                &self.path,
                name,
                format!(
                    "is {size} bytes, larger than the {limit}-byte limit for this kind of member"
                ),
            ));
        }
        let mut buf = Vec::with_capacity(size as usize);
        self.open_member(name)?
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(buf)
    }
}

/// Walk the chain of headers (reading headers only) and refuse an extension header whose data
/// is over the limit, before the tar reader reads it into memory. Anything the walk does not
/// understand (a bad checksum, an unreadable size) ends it: the tar reader reports those.
fn check_extensions(file: &File, path: &Path, file_len: u64, limit: u64) -> Result<()> {
    let mut pos = 0u64;
    let mut block = [0u8; 512];
    while pos.saturating_add(512) <= file_len {
        file.read_exact_at(&mut block, pos)
            .map_err(|e| Error::io(path, e))?;
        if block.iter().all(|&b| b == 0) {
            return Ok(());
        }
        let h = tar::Header::from_byte_slice(&block);
        let mut sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        sum -= block[148..156].iter().map(|&b| u32::from(b)).sum::<u32>();
        sum += 8 * u32::from(b' ');
        let (Ok(size), Ok(cksum)) = (h.entry_size(), h.cksum()) else {
            return Ok(());
        };
        if cksum != sum {
            return Ok(());
        }
        use tar::EntryType as T;
        if matches!(
            h.entry_type(),
            T::GNULongName | T::GNULongLink | T::XHeader | T::XGlobalHeader
        ) && size > limit
        {
            let name = String::from_utf8_lossy(&h.path_bytes()).into_owned();
            return Err(Error::member(
                path,
                &name,
                format!(
                    "an extension header (long name or PAX records) of {size} bytes, over the {limit}-byte limit"
                ),
            ));
        }
        let Some(next) = size
            .checked_next_multiple_of(512)
            .and_then(|s| s.checked_add(pos + 512))
        else {
            return Ok(());
        };
        pos = next;
    }
    Ok(())
}

/// Index the members of a plain tar.
fn index(file: &File, path: &Path, limits: &Limits) -> Result<BTreeMap<String, Member>> {
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    check_extensions(file, path, file_len, limits.extension)?;
    let bad = |reason: String| Error::BadSource {
        path: path.to_path_buf(),
        reason,
    };
    let mut names_total = 0usize;
    let mut ar = tar::Archive::new(file);
    let entries = ar
        .entries_with_seek()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    let mut members = BTreeMap::new();
    let mut count = 0usize;
    for entry in entries {
        let entry = entry.map_err(|e| {
            if count == 0 {
                bad(format!("not a tar archive: {e}"))
            } else {
                bad(format!(
                    "damaged or truncated tar after {count} members: {e}"
                ))
            }
        })?;
        count += 1;
        if count > limits.members {
            return Err(bad(format!("more than {} members", limits.members)));
        }
        let raw = entry.path_bytes();
        let link_len = entry.link_name_bytes().map_or(0, |l| l.len());
        if raw.len() > limits.name || link_len > limits.name {
            return Err(bad(format!(
                "a member name or link target is longer than {} bytes",
                limits.name
            )));
        }
        names_total += raw.len() + link_len;
        if names_total > limits.names {
            return Err(bad(format!(
                "member names and link targets add up to more than {} bytes",
                limits.names
            )));
        }
        let raw_name = String::from_utf8_lossy(&raw).into_owned();
        let name = normalize(&raw_name).map_err(|r| Error::member(path, &raw_name, r))?;
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => MemberKind::File,
            tar::EntryType::Directory => MemberKind::Dir,
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .ok_or_else(|| Error::member(path, &raw_name, "link without a target"))?;
                if entry.header().entry_type() == tar::EntryType::Symlink {
                    MemberKind::Symlink(target)
                } else {
                    let t = normalize(&target).map_err(|r| {
                        Error::member(
                            path,
                            &raw_name,
                            format!("hard link to `{target}` leaves the archive ({r})"),
                        )
                    })?;
                    MemberKind::HardLink(t)
                }
            }
            tar::EntryType::XGlobalHeader => continue,
            _ => MemberKind::Other,
        };
        let offset = entry.raw_file_position();
        // Every kind of member is checked: the tar reader skips the declared size of a
        // directory or link too, past the end of the file, and would then see the end of the
        // archive where the members after it are.
        let declared = match entry.header().entry_type() {
            // A sparse file's size is the expanded one; its data in the tar is the header's.
            tar::EntryType::GNUSparse => entry.header().entry_size().unwrap_or(u64::MAX),
            _ => entry.size(),
        };
        if offset.saturating_add(declared) > file_len {
            return Err(Error::member(
                path,
                &raw_name,
                format!("truncated archive: the member needs {declared} bytes at offset {offset}, the tar ends at {file_len}"),
            ));
        }
        let size = if kind == MemberKind::File {
            declared
        } else {
            0
        };
        if name.is_empty() {
            continue;
        }
        members.insert(name, Member { offset, size, kind });
    }
    Ok(members)
}

/// A member's bytes, read by position (several may be open at once).
#[derive(Debug)]
pub struct Section<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Section<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(left.min(usize::MAX as u64) as usize);
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends inside a member",
            ));
        }
        self.pos += n as u64;
        Ok(n)
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

    /// A tar from (name, type, link target, data), names written raw.
    fn tar_of(members: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, link, data) in members {
            let mut h = tar::Header::new_ustar();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn open(bytes: &[u8]) -> (tempfile::TempDir, Result<Archive>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.tar");
        std::fs::write(&p, bytes).expect("write");
        let a = Archive::open(&p);
        (dir, a)
    }

    fn read(a: &Archive, name: &str) -> Vec<u8> {
        a.read_small(name, 1 << 20).expect("read")
    }

    #[test]
    fn links_resolve_inside_the_archive() {
        use tar::EntryType as T;
        let (_d, a) = open(&tar_of(&[
            ("./x/data", T::Regular, "", b"payload"),
            ("y/hard", T::Link, "./x/data", b""),
            ("y/sym", T::Symlink, "../x/data", b""),
            ("z/chain", T::Symlink, "../y/sym", b""),
            ("loop/a", T::Symlink, "b", b""),
            ("loop/b", T::Symlink, "a", b""),
            ("out", T::Symlink, "../../etc/passwd", b""),
            ("abs", T::Symlink, "/etc/passwd", b""),
            ("dir", T::Directory, "", b""),
        ]));
        let a = a.expect("open");
        for n in ["x/data", "./x/data", "y/hard", "y/sym", "z/chain"] {
            assert_eq!(read(&a, n), b"payload", "{n}");
            assert_eq!(a.resolve(n).expect("resolve"), "x/data");
        }
        let err = |n: &str| a.resolve(n).expect_err(n).to_string();
        assert!(
            err("loop/a").contains("too many levels of links"),
            "{}",
            err("loop/a")
        );
        assert!(
            err("out").ends_with("member `out`: symlink to `../../etc/passwd` leaves the archive")
        );
        assert!(err("abs").ends_with("member `abs`: symlink to `/etc/passwd` leaves the archive"));
        assert!(err("dir").ends_with("member `dir`: is a directory, not a file"));
        assert!(err("nope").ends_with("member `nope`: missing from the archive"));
    }

    #[test]
    fn hard_links_out_of_the_archive_refuse_it() {
        let (_d, a) = open(&tar_of(&[(
            "h",
            tar::EntryType::Link,
            "../etc/passwd",
            b"",
        )]));
        let e = a.expect_err("refused").to_string();
        assert!(
            e.ends_with(
                "member `h`: hard link to `../etc/passwd` leaves the archive (`..` in path)"
            ),
            "{e}"
        );
    }

    #[test]
    fn not_a_tar_empty_and_bzip2() {
        let (_d, a) = open(b"");
        assert!(a
            .expect_err("empty")
            .to_string()
            .ends_with("not a tar archive: the file is empty"));
        let (_d, a) = open(b"BZh91AY&SY");
        assert!(a.expect_err("bz2").to_string().contains("bzip2-compressed"));
        let (_d, a) = open(&[b'x'; 1024]);
        assert!(a
            .expect_err("junk")
            .to_string()
            .contains("not a tar archive"));
    }

    fn open_limited(bytes: &[u8], limits: &Limits) -> Result<Archive> {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.tar");
        std::fs::write(&p, bytes).expect("write");
        Archive::open_with(&p, limits)
    }

    #[test]
    fn member_count_name_length_and_total_name_bytes_are_bounded() {
        use tar::EntryType as T;
        let three = tar_of(&[
            ("a".repeat(40).as_str(), T::Regular, "", b"1"),
            ("b".repeat(40).as_str(), T::Regular, "", b"2"),
            ("c".repeat(40).as_str(), T::Symlink, &"a".repeat(40), b""),
        ]);
        let ok = open_limited(&three, &Limits::default()).expect("within the defaults");
        assert_eq!(ok.members().len(), 3);
        let err = |l: Limits| {
            open_limited(&three, &l)
                .expect_err("over a limit")
                .to_string()
        };
        let d = Limits::default();
        assert!(err(Limits { members: 2, ..d }).ends_with("`: more than 2 members"));
        assert!(err(Limits { name: 39, ..d })
            .ends_with("`: a member name or link target is longer than 39 bytes"));
        assert!(err(Limits { names: 150, ..d })
            .ends_with("`: member names and link targets add up to more than 150 bytes"));
        // A GNU long name over the default name limit.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "x/".repeat(2100), &b"1"[..])
            .expect("append");
        let long = b.into_inner().expect("tar");
        let e = open_limited(&long, &d).expect_err("long name").to_string();
        assert!(
            e.ends_with("`: a member name or link target is longer than 4096 bytes"),
            "{e}"
        );
    }

    /// A GNU long-name header declaring 2 MiB: refused before the tar reader reads it into
    /// memory (without the first pass, the reader reads it whole and the name check only sees
    /// it afterwards).
    #[test]
    fn oversized_extension_headers_are_refused_before_they_are_read() {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().expect("gnu").name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(2 << 20);
        h.set_cksum();
        let mut t = h.as_bytes().to_vec();
        t.resize(t.len() + (2 << 20), b'a');
        t.extend(tar_of(&[("m", tar::EntryType::Regular, "", b"x")]));
        let e = open_limited(&t, &Limits::default())
            .expect_err("refused")
            .to_string();
        assert!(
            e.ends_with("member `././@LongLink`: an extension header (long name or PAX records) of 2097152 bytes, over the 1048576-byte limit"),
            "{e}"
        );
        // At the limit it is read (and then refused as a name).
        let small = Limits {
            extension: 4 << 20,
            ..Limits::default()
        };
        let e = open_limited(&t, &small).expect_err("refused").to_string();
        assert!(e.ends_with("longer than 4096 bytes"), "{e}");
    }

    /// A directory whose header declares a terabyte of data: before, the reader skipped past
    /// the end of the file and saw the end of the archive there, so the members after it
    /// silently vanished.
    #[test]
    fn absurd_sizes_of_any_member_kind_are_refused() {
        for kind in [
            tar::EntryType::Directory,
            tar::EntryType::Symlink,
            tar::EntryType::Regular,
        ] {
            let mut h = tar::Header::new_ustar();
            h.as_old_mut().name[..1].copy_from_slice(b"d");
            h.as_old_mut().linkname[..1].copy_from_slice(b"m");
            h.set_entry_type(kind);
            h.set_size(1 << 40);
            h.set_cksum();
            let mut t = h.as_bytes().to_vec();
            t.extend(tar_of(&[("m", tar::EntryType::Regular, "", b"x")]));
            let e = open_limited(&t, &Limits::default())
                .expect_err("refused")
                .to_string();
            assert!(
                e.ends_with("member `d`: truncated archive: the member needs 1099511627776 bytes at offset 512, the tar ends at 2560"),
                "{kind:?}: {e}"
            );
        }
    }
}
