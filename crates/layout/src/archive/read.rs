//! Reading tars safely: [`Archive`] (indexed, random access) and [`Stream`] (sequential).
//!
//! [`Archive`] indexes the members of a tar once (headers only; data is skipped by seeking) and
//! then reads any member by its byte range, without holding it in memory.
//!
//! Untrusted input rules, all enforced while indexing, before anything is imported:
//! - member names are normalized (`./` prefixes and `.` components dropped, trailing `/`
//!   removed); an absolute name or a `..` component refuses the whole archive;
//! - symlinks and hard links are resolved to other members ([`Archive::resolve`]); a link that
//!   leaves the archive, loops, or ends nowhere is an error naming it;
//! - at most [`MEMBER_LIMIT`](super::MEMBER_LIMIT) members,
//!   [`NAME_LIMIT`](super::NAME_LIMIT) bytes per name or link target and
//!   [`NAMES_LIMIT`](super::NAMES_LIMIT) bytes of names and link targets in all (the index is
//!   held in memory);
//! - GNU long-name and PAX extension headers (which the tar reader reads into memory whole) of at
//!   most [`EXTENSION_LIMIT`](super::EXTENSION_LIMIT) bytes, checked by a first pass over the
//!   headers before the tar reader sees them (the pass follows PAX `size` records as the tar
//!   reader does, so both see the same chain of headers);
//! - a member of any kind whose header declares more data than the file holds means the archive
//!   is truncated (or lies): it is refused, naming the member, before anything is read.
//!
//! [`Limits`] carries these; [`Archive::open`] uses the defaults.
//!
//! `.tar.gz` and `.tar.zst` archives are recognised by their first bytes and decompressed once
//! into an anonymous temp file (removed by the kernel when closed), which is then read like any
//! tar; so is a tar read from a pipe ([`Archive::from_reader`]). Spooling costs disk space the
//! size of the tar, but keeps one code path with random access (Docker archives put
//! `manifest.json` last, so the layers are only known at the end) and keeps memory constant.
//! The spool is bounded (ratio and free space, [`super::spool`]), and a full temp directory is
//! named as the cause.
//!
//! [`Stream`] reads a plain tar from any reader, front to back, with the same [`Limits`] and
//! the same per-member checks. The tar reader is used in raw mode: extension headers (GNU long
//! names and links, PAX records) come back to this module as ordinary entries, and their
//! declared size is checked against the limit before a byte of their data is read. A PAX `size`
//! record that disagrees with the header, GNU sparse members and extension headers describing no
//! member are refused (a bundle part has none; another reader would see other members).
//! A member whose data ends early is an error naming it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{
    checked_header, extension_too_large, is_extension, join_link, normalize, Admission,
    ArchiveError as Error, Limits, MemberKind, Result, BLOCK,
};
use crate::compress::{read_full, sniff, Sniffed, SNIFF_LEN};
use crate::Compression;

/// How many links [`Archive::resolve`] follows before calling it a loop.
const LINK_HOPS: usize = 32;

/// The compression of a tar from its first bytes; bzip2, xz and nothing at all are refused.
fn compression_of(path: &Path, head: &[u8]) -> Result<Compression> {
    let bad = |reason: &str| Error::bad(path, reason);
    let compression = match sniff(head) {
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
    if head.is_empty() {
        return Err(bad("not a tar archive: the file is empty"));
    }
    Ok(compression)
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

impl Archive {
    /// Open and index a tar (plain, gzip or zstd) on disk, with the default [`Limits`].
    pub fn open(path: &Path) -> Result<Archive> {
        Archive::open_with(path, &Limits::default())
    }

    /// Open and index a tar (plain, gzip or zstd) on disk, within `limits`.
    pub fn open_with(path: &Path, limits: &Limits) -> Result<Archive> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut head = vec![0u8; SNIFF_LEN];
        let n = read_full(&mut file, &mut head).map_err(|e| Error::io(path, e))?;
        head.truncate(n);
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(path, e))?;
        let compression = compression_of(path, &head)?;
        let file = match compression {
            Compression::None => file,
            c => super::spool::spool(io::BufReader::new(file), path, c)?,
        };
        Archive::indexed(path, file, limits, compression)
    }

    /// Read a tar (plain, gzip or zstd) from a stream, such as a pipe from `docker save`: it is
    /// spooled once into an anonymous temp file, within the spool's bounds
    /// ([`super::spool`]), then indexed within `limits`. `path` names it in messages.
    pub fn from_reader(reader: impl Read, path: &Path, limits: &Limits) -> Result<Archive> {
        let mut reader = reader;
        let mut head = vec![0u8; SNIFF_LEN];
        let n = read_full(&mut reader, &mut head).map_err(|e| Error::io(path, e))?;
        head.truncate(n);
        let compression = compression_of(path, &head)?;
        let whole = io::Cursor::new(head).chain(reader);
        let file = super::spool::spool(whole, path, compression)?;
        Archive::indexed(path, file, limits, compression)
    }

    fn indexed(
        path: &Path,
        mut file: File,
        limits: &Limits,
        compression: Compression,
    ) -> Result<Archive> {
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(path, e))?;
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
/// is over the limit, before the tar reader reads it into memory. A PAX record `size` moves the
/// next member's end as it does for the tar reader (which honours it), so both walk the same
/// chain. Anything the walk does not understand (a bad checksum, an unreadable size) ends it:
/// the tar reader reports those.
fn check_extensions(file: &File, path: &Path, file_len: u64, limit: u64) -> Result<()> {
    let mut pos = 0u64;
    let mut block = [0u8; BLOCK as usize];
    let mut pax_size: Option<u64> = None;
    while pos.saturating_add(BLOCK) <= file_len {
        file.read_exact_at(&mut block, pos)
            .map_err(|e| Error::io(path, e))?;
        let Some(h) = checked_header(&block) else {
            return Ok(());
        };
        let Ok(mut size) = h.entry_size() else {
            return Ok(());
        };
        let kind = h.entry_type();
        if is_extension(kind) {
            if size > limit {
                let name = String::from_utf8_lossy(&h.path_bytes()).into_owned();
                return Err(extension_too_large(path, &name, size, limit));
            }
            if kind == tar::EntryType::XHeader {
                if pos + BLOCK + size > file_len {
                    return Ok(());
                }
                let mut records = vec![0u8; size as usize];
                file.read_exact_at(&mut records, pos + BLOCK)
                    .map_err(|e| Error::io(path, e))?;
                pax_size = pax_record_size(&records).or(pax_size);
            }
        } else if let Some(s) = pax_size.take() {
            size = s;
        }
        let Some(next) = size
            .checked_next_multiple_of(BLOCK)
            .and_then(|s| s.checked_add(pos + BLOCK))
        else {
            return Ok(());
        };
        pos = next;
    }
    Ok(())
}

/// The `size` record of PAX extension data, if it has one that parses.
fn pax_record_size(records: &[u8]) -> Option<u64> {
    tar::PaxExtensions::new(records)
        .filter_map(|r| r.ok())
        .find(|r| r.key_bytes() == b"size")
        .and_then(|r| r.value().ok()?.parse().ok())
}

/// Index the members of a plain tar.
fn index(file: &File, path: &Path, limits: &Limits) -> Result<BTreeMap<String, Member>> {
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    check_extensions(file, path, file_len, limits.extension)?;
    let bad = |reason: String| Error::bad(path, reason);
    let mut admission = Admission::new(limits);
    let mut ar = tar::Archive::new(file);
    let entries = ar
        .entries_with_seek()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    let mut members = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| match admission.count {
            0 => bad(format!("not a tar archive: {e}")),
            count => bad(format!(
                "damaged or truncated tar after {count} members: {e}"
            )),
        })?;
        let entry_type = entry.header().entry_type();
        let Some(m) = admission.admit(
            path,
            &entry.path_bytes(),
            entry.link_name_bytes().as_deref(),
            entry_type,
        )?
        else {
            continue;
        };
        let offset = entry.raw_file_position();
        // Every kind of member is checked: the tar reader skips the declared size of a
        // directory or link too, past the end of the file, and would then see the end of the
        // archive where the members after it are.
        let declared = match entry_type {
            // A sparse file's size is the expanded one; its data in the tar is the header's.
            tar::EntryType::GNUSparse => entry.header().entry_size().unwrap_or(u64::MAX),
            _ => entry.size(),
        };
        if offset.saturating_add(declared) > file_len {
            return Err(Error::member(
                path,
                &m.raw_name,
                format!("truncated archive: the member needs {declared} bytes at offset {offset}, the tar ends at {file_len}"),
            ));
        }
        let size = if m.kind == MemberKind::File {
            declared
        } else {
            0
        };
        if m.name.is_empty() {
            continue;
        }
        members.insert(
            m.name,
            Member {
                offset,
                size,
                kind: m.kind,
            },
        );
    }
    Ok(members)
}

/// A plain tar read front to back, within [`Limits`] (see the module doc). Members come from
/// [`Stream::members`].
pub struct Stream<R: Read> {
    archive: tar::Archive<R>,
    path: PathBuf,
    limits: Limits,
}

impl<R: Read> std::fmt::Debug for Stream<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("path", &self.path)
            .field("limits", &self.limits)
            .finish()
    }
}

impl<R: Read> Stream<R> {
    /// Read the tar `reader` yields; `path` names it in errors.
    pub fn new(reader: R, path: &Path, limits: &Limits) -> Stream<R> {
        Stream {
            archive: tar::Archive::new(reader),
            path: path.to_path_buf(),
            limits: *limits,
        }
    }

    /// The members, in archive order.
    pub fn members(&mut self) -> Result<StreamMembers<'_, R>> {
        let path = self.path.as_path();
        let entries = self
            .archive
            .entries()
            .map_err(|e| Error::bad(path, format!("not a tar archive: {e}")))?
            .raw(true);
        Ok(StreamMembers {
            entries,
            path,
            limits: self.limits,
            admission: Admission::new(&self.limits),
            last: None,
        })
    }
}

impl<R: Read + io::Seek> Stream<R> {
    /// [`Stream::members`] of a seekable tar: the data of a member not read is skipped by
    /// seeking, not read. A seek past the end of the file is not seen as such (the tar then
    /// seems to end there): a caller that leaves a member's data unread checks first that the
    /// file holds it ([`StreamMember::data_offset`]).
    pub fn members_with_seek(&mut self) -> Result<StreamMembers<'_, R>> {
        let path = self.path.as_path();
        let entries = self
            .archive
            .entries_with_seek()
            .map_err(|e| Error::bad(path, format!("not a tar archive: {e}")))?
            .raw(true);
        Ok(StreamMembers {
            entries,
            path,
            limits: self.limits,
            admission: Admission::new(&self.limits),
            last: None,
        })
    }
}

/// The members of a [`Stream`], one at a time ([`StreamMembers::next_member`]).
pub struct StreamMembers<'a, R: Read> {
    entries: tar::Entries<'a, R>,
    path: &'a Path,
    limits: Limits,
    admission: Admission,
    /// The last member returned, to say where a truncated archive ends.
    last: Option<String>,
}

impl<R: Read> std::fmt::Debug for StreamMembers<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamMembers")
            .field("path", &self.path)
            .field("members", &self.admission.count)
            .finish()
    }
}

impl<'a, R: Read> StreamMembers<'a, R> {
    /// The next member, checked; `None` at the end of the archive. The member's data, if not
    /// read, is skipped by the next call.
    pub fn next_member(&mut self) -> Result<Option<StreamMember<'a, R>>> {
        let path = self.path;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Vec<u8>> = None;
        loop {
            let count = self.admission.count;
            let mut entry = match self.entries.next() {
                None if long_name.is_some() || long_link.is_some() || pax.is_some() => {
                    return Err(Error::bad(
                        path,
                        "the tar ends with extension headers that describe no member",
                    ))
                }
                None => return Ok(None),
                Some(Err(e)) if count == 0 => {
                    return Err(Error::bad(path, format!("not a tar archive: {e}")))
                }
                Some(Err(e))
                    if e.kind() == io::ErrorKind::UnexpectedEof
                        || e.to_string().starts_with("unexpected EOF") =>
                {
                    // Skipping the unread data of the last member ran out of archive (the tar
                    // crate says "unexpected EOF during skip").
                    return Err(Error::bad(
                        path,
                        match &self.last {
                            Some(m) => format!("truncated archive: it ends inside member `{m}`"),
                            None => format!("truncated archive: it ends after {count} members"),
                        },
                    ));
                }
                Some(Err(e)) => {
                    return Err(Error::bad(
                        path,
                        format!("damaged or truncated tar after {count} members: {e}"),
                    ))
                }
                Some(Ok(e)) => e,
            };
            let kind = entry.header().entry_type();
            // Raw entries: the size is the header's own.
            let size = entry.size();
            let header_name = entry.header().path_bytes().into_owned();
            if is_extension(kind) {
                let shown = String::from_utf8_lossy(&header_name).into_owned();
                if size > self.limits.extension {
                    return Err(extension_too_large(
                        path,
                        &shown,
                        size,
                        self.limits.extension,
                    ));
                }
                let slot = match kind {
                    tar::EntryType::GNULongName => &mut long_name,
                    tar::EntryType::GNULongLink => &mut long_link,
                    tar::EntryType::XHeader => &mut pax,
                    // Global PAX records: not read, skipped with their data.
                    _ => continue,
                };
                if slot.is_some() {
                    return Err(Error::member(
                        path,
                        &shown,
                        "two extension headers of the same kind describe one member",
                    ));
                }
                let mut data = Vec::with_capacity(size as usize);
                entry
                    .read_to_end(&mut data)
                    .map_err(|e| Error::member(path, &shown, format!("unreadable: {e}")))?;
                if data.len() as u64 != size {
                    return Err(Error::member(
                        path,
                        &shown,
                        format!("truncated archive: the extension header needs {size} bytes, the tar holds {}", data.len()),
                    ));
                }
                *slot = Some(data);
                continue;
            }
            let mut name = header_name;
            let mut link = entry.header().link_name_bytes().map(|l| l.into_owned());
            let mut meta = MemberMeta::of(entry.header());
            if let Some(records) = &pax {
                for r in tar::PaxExtensions::new(records) {
                    let shown = String::from_utf8_lossy(&name).into_owned();
                    let r = r.map_err(|e| {
                        Error::member(path, &shown, format!("unreadable PAX records: {e}"))
                    })?;
                    meta.pax(r.key_bytes(), r.value_bytes());
                    match r.key_bytes() {
                        b"path" => name = r.value_bytes().to_vec(),
                        b"linkpath" => link = Some(r.value_bytes().to_vec()),
                        b"size"
                            if r.value().ok().and_then(|v| v.parse::<u64>().ok()) != Some(size) =>
                        {
                            return Err(Error::member(
                                path,
                                &shown,
                                format!(
                                    "a PAX size record of `{}` bytes, the header says {size}",
                                    String::from_utf8_lossy(r.value_bytes())
                                ),
                            ));
                        }
                        _ => {}
                    }
                }
            }
            if let Some(n) = long_name.take() {
                name = strip_nul(n);
            }
            if let Some(l) = long_link.take() {
                link = Some(strip_nul(l));
            }
            if kind == tar::EntryType::GNUSparse {
                return Err(Error::member(
                    path,
                    &String::from_utf8_lossy(&name),
                    "a GNU sparse member, which a streamed tar may not hold",
                ));
            }
            let Some(m) = self.admission.admit(path, &name, link.as_deref(), kind)? else {
                continue;
            };
            if m.name.is_empty() {
                pax = None;
                continue;
            }
            self.last = Some(m.raw_name.clone());
            return Ok(Some(StreamMember {
                name: m.name,
                raw_name: m.raw_name,
                kind: m.kind,
                size,
                meta,
                left: size,
                entry,
            }));
        }
    }
}

/// What a [`StreamMember`]'s header and PAX records say beyond its name, kind and size (for
/// `unpack`, which recreates it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberMeta {
    /// The header's entry type byte (`b'3'` a character device, `b'6'` a FIFO, ...).
    pub entry_type: u8,
    /// Permission bits and setuid/setgid/sticky.
    pub mode: u32,
    /// Owner (PAX `uid` when present).
    pub uid: u64,
    /// Group (PAX `gid` when present).
    pub gid: u64,
    /// Seconds since the epoch (PAX `mtime` when present; negative times read as 0).
    pub mtime: u64,
    /// Nanoseconds of the PAX `mtime`.
    pub mtime_nsec: u32,
    /// Device major and minor numbers (devices only).
    pub device: Option<(u32, u32)>,
    /// Extended attributes (`SCHILY.xattr.*` records), in archive order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl MemberMeta {
    fn of(h: &tar::Header) -> MemberMeta {
        let t = h.entry_type();
        MemberMeta {
            entry_type: t.as_byte(),
            mode: h.mode().unwrap_or(0o644) & 0o7777,
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            mtime: h.mtime().unwrap_or(0),
            mtime_nsec: 0,
            device: (t.is_character_special() || t.is_block_special()).then(|| {
                (
                    h.device_major().ok().flatten().unwrap_or(0),
                    h.device_minor().ok().flatten().unwrap_or(0),
                )
            }),
            xattrs: Vec::new(),
        }
    }

    /// Apply one PAX record (unknown keys and unparsable values are ignored).
    fn pax(&mut self, key: &[u8], value: &[u8]) {
        let text = std::str::from_utf8(value).ok();
        match key {
            b"uid" => {
                if let Some(v) = text.and_then(|t| t.parse().ok()) {
                    self.uid = v;
                }
            }
            b"gid" => {
                if let Some(v) = text.and_then(|t| t.parse().ok()) {
                    self.gid = v;
                }
            }
            b"mtime" => {
                if let Some((s, n)) = text.and_then(parse_pax_time) {
                    self.mtime = s;
                    self.mtime_nsec = n;
                }
            }
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    self.xattrs.push((name.to_vec(), value.to_vec()));
                }
            }
        }
    }
}

/// A PAX time (`secs[.fraction]`) as seconds and nanoseconds; before the epoch reads as 0.
fn parse_pax_time(t: &str) -> Option<(u64, u32)> {
    if t.starts_with('-') {
        return Some((0, 0));
    }
    let (s, f) = t.split_once('.').unwrap_or((t, ""));
    let secs = s.parse().ok()?;
    if !f.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = f.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    Some((secs, digits.parse().ok()?))
}

/// A GNU long name or link is NUL-terminated.
fn strip_nul(mut v: Vec<u8>) -> Vec<u8> {
    if v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// One member of a [`Stream`]; reading it reads its data, which must be all there.
pub struct StreamMember<'a, R: Read> {
    /// The normalized name.
    pub name: String,
    /// The name as written in the archive.
    pub raw_name: String,
    /// What it is.
    pub kind: MemberKind,
    /// The size of its data.
    pub size: u64,
    /// Its mode, owner, mtime, xattrs and device numbers (PAX records applied).
    pub meta: MemberMeta,
    left: u64,
    entry: tar::Entry<'a, R>,
}

impl<R: Read> std::fmt::Debug for StreamMember<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamMember")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("size", &self.size)
            .finish()
    }
}

impl<R: Read> StreamMember<'_, R> {
    /// Where its data starts in the tar.
    pub fn data_offset(&self) -> u64 {
        self.entry.raw_file_position()
    }
}

impl<R: Read> Read for StreamMember<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.entry.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "truncated archive: the tar ends {} bytes into member `{}`, which declares {}",
                    self.size - self.left,
                    self.raw_name,
                    self.size
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A member's bytes, read by position (several may be open at once).
#[derive(Debug)]
pub struct Section<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Section<'_> {
    /// The `len` bytes of `file` from `offset` on (a member whose place a [`Stream`] gave).
    pub fn new(file: &File, offset: u64, len: u64) -> Section<'_> {
        Section {
            file,
            pos: offset,
            end: offset.saturating_add(len),
        }
    }
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

    /// A header of `kind` named `name` declaring `size`, without its data.
    fn raw_header(name: &[u8], kind: tar::EntryType, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().expect("gnu").name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(size);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    /// PAX extension data holding `records` (key, value).
    fn pax_data(records: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in records {
            let body = format!(" {k}={v}\n");
            let mut n = body.len() + 1;
            while format!("{n}{body}").len() != n {
                n += 1;
            }
            out.extend_from_slice(format!("{n}{body}").as_bytes());
        }
        out
    }

    fn padded(mut v: Vec<u8>) -> Vec<u8> {
        v.resize(v.len().div_ceil(512) * 512, 0);
        v
    }

    /// Every member of a streamed tar: (name, kind, data), or the first error.
    fn stream_all(bytes: &[u8], limits: &Limits) -> Result<Vec<(String, MemberKind, Vec<u8>)>> {
        let mut s = Stream::new(bytes, Path::new("s.tar"), limits);
        let mut members = s.members()?;
        let mut out = Vec::new();
        while let Some(mut m) = members.next_member()? {
            let mut data = Vec::new();
            m.read_to_end(&mut data)
                .map_err(|e| Error::io("s.tar", e))?;
            out.push((m.name.clone(), m.kind.clone(), data));
        }
        Ok(out)
    }

    /// Counts what is read through it.
    struct Counting<R> {
        inner: R,
        read: std::rc::Rc<std::cell::Cell<u64>>,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read.set(self.read.get() + n as u64);
            Ok(n)
        }
    }

    /// The regression behind [`Stream`]: a 1.5 GB GNU long name after a first member is refused
    /// from its header, having read nothing of it.
    #[test]
    fn stream_refuses_an_oversized_extension_header_before_reading_it() {
        let first = tar_of(&[("bundle.json", tar::EntryType::Regular, "", b"{}")]);
        let first = &first[..1024];
        let huge = 1_500_000_000u64;
        let long = raw_header(b"././@LongLink", tar::EntryType::GNULongName, huge);
        let read = std::rc::Rc::new(std::cell::Cell::new(0));
        let src = Counting {
            inner: first.chain(&long[..]).chain(io::repeat(b'a').take(huge)),
            read: read.clone(),
        };
        let mut s = Stream::new(src, Path::new("p.tar"), &Limits::default());
        let mut members = s.members().expect("members");
        let m = members.next_member().expect("first").expect("one");
        assert_eq!(m.name, "bundle.json");
        let e = members.next_member().expect_err("refused").to_string();
        assert_eq!(
            e,
            "`p.tar`: member `././@LongLink`: an extension header (long name or PAX records) of 1500000000 bytes, over the 1048576-byte limit"
        );
        assert!(read.get() <= 1536 + 4096, "read {} bytes", read.get());
    }

    #[test]
    fn stream_applies_the_same_member_checks_as_the_index() {
        use tar::EntryType as T;
        let d = Limits::default();
        let err = |bytes: &[u8], l: &Limits| stream_all(bytes, l).expect_err("refused").to_string();
        let e = err(&tar_of(&[("a/../../x", T::Regular, "", b"1")]), &d);
        assert_eq!(e, "`s.tar`: member `a/../../x`: `..` in path");
        let e = err(&tar_of(&[("/etc/x", T::Regular, "", b"1")]), &d);
        assert_eq!(e, "`s.tar`: member `/etc/x`: absolute path");
        let e = err(&tar_of(&[("h", T::Link, "../x", b"")]), &d);
        assert_eq!(
            e,
            "`s.tar`: member `h`: hard link to `../x` leaves the archive (`..` in path)"
        );
        let three = tar_of(&[
            ("a", T::Regular, "", b"1"),
            ("./b/", T::Directory, "", b""),
            ("c", T::Symlink, "a", b""),
        ]);
        let got = stream_all(&three, &d).expect("fine");
        assert_eq!(
            got,
            vec![
                ("a".to_string(), MemberKind::File, b"1".to_vec()),
                ("b".to_string(), MemberKind::Dir, vec![]),
                ("c".to_string(), MemberKind::Symlink("a".into()), vec![]),
            ]
        );
        assert_eq!(
            err(&three, &Limits { members: 2, ..d }),
            "`s.tar`: more than 2 members"
        );
        assert_eq!(
            err(&three, &Limits { names: 3, ..d }),
            "`s.tar`: member names and link targets add up to more than 3 bytes"
        );
        // A GNU long name over the name limit (read: it is within the extension limit).
        let mut long = raw_header(b"././@LongLink", T::GNULongName, 5000);
        long.extend(padded(vec![b'x'; 5000]));
        long.extend(tar_of(&[("short", T::Regular, "", b"1")]));
        assert_eq!(
            err(&long, &d),
            "`s.tar`: a member name or link target is longer than 4096 bytes"
        );
    }

    #[test]
    fn stream_takes_pax_paths_and_refuses_what_readers_disagree_on() {
        use tar::EntryType as T;
        let d = Limits::default();
        let long_name = format!("blobs/{}", "p".repeat(200));
        let records = pax_data(&[("path", &long_name)]);
        let mut t = raw_header(b"././@PaxHeader", T::XHeader, records.len() as u64);
        t.extend(padded(records));
        t.extend(tar_of(&[("short", T::Regular, "", b"data")]));
        let got = stream_all(&t, &d).expect("pax path");
        assert_eq!(got, vec![(long_name, MemberKind::File, b"data".to_vec())]);
        // A PAX size other than the header's: another reader would see other members.
        let records = pax_data(&[("size", "1024")]);
        let mut t = raw_header(b"././@PaxHeader", T::XHeader, records.len() as u64);
        t.extend(padded(records));
        t.extend(tar_of(&[("m", T::Regular, "", b"data")]));
        assert_eq!(
            stream_all(&t, &d).expect_err("refused").to_string(),
            "`s.tar`: member `m`: a PAX size record of `1024` bytes, the header says 4"
        );
        // GNU sparse members are not taken.
        let mut t = raw_header(b"sparse", T::GNUSparse, 0);
        t.extend(vec![0u8; 1024]);
        assert_eq!(
            stream_all(&t, &d).expect_err("refused").to_string(),
            "`s.tar`: member `sparse`: a GNU sparse member, which a streamed tar may not hold"
        );
        // Extension headers with no member after them.
        let mut t = raw_header(b"././@LongLink", T::GNULongName, 2);
        t.extend(padded(b"x\0".to_vec()));
        t.extend(vec![0u8; 1024]);
        assert_eq!(
            stream_all(&t, &d).expect_err("refused").to_string(),
            "`s.tar`: the tar ends with extension headers that describe no member"
        );
    }

    #[test]
    fn stream_members_that_end_early_are_errors_naming_them() {
        let t = tar_of(&[("layer", tar::EntryType::Regular, "", &[7u8; 2000])]);
        let cut = &t[..512 + 1000];
        let e = stream_all(cut, &Limits::default())
            .expect_err("truncated")
            .to_string();
        assert_eq!(
            e,
            "`s.tar`: truncated archive: the tar ends 1000 bytes into member `layer`, which declares 2000"
        );
    }

    /// A PAX `size` record moves where the tar reader looks for the next header. The first pass
    /// follows it too; before, it walked the header's size instead, saw a harmless member where
    /// the tar reader saw none, and missed the 2 MiB long name the tar reader then read.
    #[test]
    fn the_index_pre_pass_follows_pax_sizes() {
        use tar::EntryType as T;
        let records = pax_data(&[("size", "1024")]);
        let mut t = raw_header(b"././@PaxHeader", T::XHeader, records.len() as u64);
        t.extend(padded(records));
        // The member: its header says 0 bytes, PAX says 1024. What the first pass used to take
        // for the next header is its data: a harmless member whose size covers what follows.
        t.extend(raw_header(b"m", T::Regular, 0));
        let decoy_covers = 1024 - 512 + 512 + (2 << 20);
        t.extend(raw_header(b"decoy", T::Regular, decoy_covers));
        t.extend(vec![0u8; 512]);
        // Where the tar reader goes: a long name of 2 MiB.
        t.extend(raw_header(b"././@LongLink", T::GNULongName, 2 << 20));
        t.extend(vec![b'a'; 2 << 20]);
        t.extend(tar_of(&[("x", T::Regular, "", b"1")]));
        let e = open_limited(&t, &Limits::default())
            .expect_err("refused")
            .to_string();
        assert!(
            e.ends_with("member `././@LongLink`: an extension header (long name or PAX records) of 2097152 bytes, over the 1048576-byte limit"),
            "{e}"
        );
    }
}
