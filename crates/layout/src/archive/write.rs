//! Writing deterministic tars: [`TarWriter`] (see the module doc of [`crate::archive`]).

use std::io::{self, Read, Write};

use super::{ArchiveError, Result};

/// Mode of every regular file written.
pub const FILE_MODE: u32 = 0o644;
/// Mode of every directory written.
pub const DIR_MODE: u32 = 0o755;

/// A tar being written: ustar headers, uid/gid 0, no user or group names, modes
/// [`FILE_MODE`] and [`DIR_MODE`], one mtime. Entries are written in the order they are added;
/// [`TarWriter::finish`] writes the two zero blocks that end the archive. Names are written as
/// given (a name too long for ustar gets a GNU long-name entry first).
pub struct TarWriter<W: Write> {
    tar: tar::Builder<W>,
    mtime: u64,
}

impl<W: Write> std::fmt::Debug for TarWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarWriter")
            .field("mtime", &self.mtime)
            .finish()
    }
}

impl<W: Write> TarWriter<W> {
    /// A tar written to `out`, every entry with mtime `mtime` (seconds since the epoch).
    pub fn new(out: W, mtime: u64) -> TarWriter<W> {
        TarWriter {
            tar: tar::Builder::new(out),
            mtime,
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime);
        h.set_size(size);
        h
    }

    /// A directory entry; `name` gets a trailing `/` if it has none.
    pub fn dir(&mut self, name: &str) -> Result<()> {
        let mut h = self.header(tar::EntryType::Directory, DIR_MODE, 0);
        let name = if name.ends_with('/') {
            name.to_string()
        } else {
            format!("{name}/")
        };
        self.tar
            .append_data(&mut h, name, io::empty())
            .map_err(|source| ArchiveError::Output { source })
    }

    /// A regular file holding `bytes`.
    pub fn file(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let mut h = self.header(tar::EntryType::Regular, FILE_MODE, bytes.len() as u64);
        self.tar
            .append_data(&mut h, name, bytes)
            .map_err(|source| ArchiveError::Output { source })
    }

    /// A regular file of `size` bytes read from `data`, which must yield exactly that many: it is
    /// read once more at the end (a verifying reader checks its digest there), and a short or
    /// long source fails naming the member ([`ArchiveError::Short`], [`ArchiveError::Long`]).
    /// An error of `data` itself comes back as [`ArchiveError::Source`].
    pub fn stream(&mut self, name: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        let mut h = self.header(tar::EntryType::Regular, FILE_MODE, size);
        let mut r = Exact {
            inner: data,
            left: size,
            size,
            name,
            failure: None,
        };
        let res = self.tar.append_data(&mut h, name, &mut r);
        if let Some(f) = r.failure.take() {
            return Err(f);
        }
        res.map_err(|source| ArchiveError::Output { source })
    }

    /// The header of a regular file of `size` bytes, without its data: the caller puts
    /// exactly `size` bytes and [`block_padding`]`(size)` zero bytes right after it, into the
    /// output it is given back or, later, at that position of the file (a bundle part whose
    /// blobs are filled in by several threads; see [`copy_exact`] for the data).
    pub fn reserve(&mut self, name: &str, size: u64) -> Result<&mut W> {
        let mut h = self.header(tar::EntryType::Regular, FILE_MODE, size);
        self.tar
            .append_data(&mut h, name, io::empty())
            .map_err(|source| ArchiveError::Output { source })?;
        Ok(self.tar.get_mut())
    }

    /// A member described in full ([`EntryHeader`]: any kind, mode, owner, mtime with
    /// nanoseconds, xattrs), for layers packed from a directory. A PAX extended header comes
    /// first when ustar cannot hold it all (a long name or link target, sub-second mtime, large
    /// ids or size, xattrs); its records are written in a fixed order (`path`, `linkpath`,
    /// `mtime`, `uid`, `gid`, `size`, then `SCHILY.xattr.*` in the order given). A regular
    /// file's `data` must yield exactly `size` bytes, as for [`TarWriter::stream`].
    pub fn entry(&mut self, e: &EntryHeader, data: &mut dyn Read) -> Result<()> {
        let shown = String::from_utf8_lossy(&e.name).into_owned();
        let blocks = e.encode()?;
        let out = self.tar.get_mut();
        out.write_all(&blocks)
            .map_err(|source| ArchiveError::Output { source })?;
        let size = e.data_size();
        if size == 0 {
            return Ok(());
        }
        let mut r = Exact {
            inner: data,
            left: size,
            size,
            name: &shown,
            failure: None,
        };
        let res = io::copy(&mut r, out).and_then(|n| {
            let pad = block_padding(n);
            out.write_all(&[0u8; 512][..pad as usize])
        });
        if let Some(f) = r.failure.take() {
            return Err(f);
        }
        res.map_err(|source| ArchiveError::Output { source })
    }

    /// End the archive (two zero blocks); returns the output.
    pub fn finish(self) -> Result<W> {
        self.tar
            .into_inner()
            .map_err(|source| ArchiveError::Output { source })
    }
}

/// What a member written by [`TarWriter::entry`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link to this target, as written.
    Symlink(Vec<u8>),
    /// A hard link to this earlier member.
    HardLink(Vec<u8>),
    /// A character device.
    Char {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    Block {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

/// One member for [`TarWriter::entry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryHeader {
    /// The name as written (a directory's ends in `/`).
    pub name: Vec<u8>,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits and setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Seconds since the epoch.
    pub mtime: u64,
    /// Nanoseconds (a PAX `mtime` record when not 0).
    pub mtime_nsec: u32,
    /// Data size (regular files only).
    pub size: u64,
    /// Extended attributes, in the order they are written.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl EntryHeader {
    /// The size of the data that follows the header (a regular file's `size`, else 0).
    pub fn data_size(&self) -> u64 {
        if self.kind == EntryKind::File {
            self.size
        } else {
            0
        }
    }

    /// The header blocks [`TarWriter::entry`] writes before the member's data: a PAX extended
    /// header and its records (padded) when ustar cannot hold it all, then the ustar header.
    /// A multiple of 512 bytes; the data (padded to 512) follows. Knowing this length lets a
    /// writer place members at computed offsets.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let e = self;
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let mut h = tar::Header::new_ustar();
        let (kind, link) = match &e.kind {
            EntryKind::File => (tar::EntryType::Regular, None),
            EntryKind::Dir => (tar::EntryType::Directory, None),
            EntryKind::Symlink(t) => (tar::EntryType::Symlink, Some(t)),
            EntryKind::HardLink(t) => (tar::EntryType::Link, Some(t)),
            EntryKind::Char { .. } => (tar::EntryType::Char, None),
            EntryKind::Block { .. } => (tar::EntryType::Block, None),
            EntryKind::Fifo => (tar::EntryType::Fifo, None),
        };
        h.set_entry_type(kind);
        h.set_mode(e.mode & 0o7777);
        if let EntryKind::Char { major, minor } | EntryKind::Block { major, minor } = e.kind {
            h.set_device_major(major)
                .and_then(|_| h.set_device_minor(minor))
                .map_err(|source| ArchiveError::Output { source })?;
        }
        if let Some(ustar) = h.as_ustar_mut() {
            if !split_name(&e.name, &mut ustar.name, &mut ustar.prefix) {
                pax.push(("path".into(), e.name.clone()));
                put_truncated(&mut ustar.name, &e.name);
            }
            if let Some(link) = link {
                if link.len() > ustar.linkname.len() {
                    pax.push(("linkpath".into(), link.clone()));
                }
                put_truncated(&mut ustar.linkname, link);
            }
        }
        const OCTAL_MAX: u64 = 0o77_777_777_777;
        const ID_MAX: u64 = 0o7_777_777;
        if e.mtime_nsec != 0 || e.mtime > OCTAL_MAX {
            pax.push(("mtime".into(), pax_time(e.mtime, e.mtime_nsec).into_bytes()));
        }
        h.set_mtime(e.mtime.min(OCTAL_MAX));
        for (key, id, set) in [
            (
                "uid",
                e.uid,
                tar::Header::set_uid as fn(&mut tar::Header, u64),
            ),
            ("gid", e.gid, tar::Header::set_gid),
        ] {
            if id > ID_MAX {
                pax.push((key.into(), id.to_string().into_bytes()));
            }
            set(&mut h, id.min(ID_MAX));
        }
        let size = e.data_size();
        if size > OCTAL_MAX {
            pax.push(("size".into(), size.to_string().into_bytes()));
        }
        h.set_size(size.min(OCTAL_MAX));
        for (k, v) in &e.xattrs {
            pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
        }
        let mut out = Vec::with_capacity(512);
        if !pax.is_empty() {
            let mut records = Vec::new();
            for (k, v) in &pax {
                pax_record(&mut records, k, v);
            }
            let mut x = tar::Header::new_ustar();
            x.set_entry_type(tar::EntryType::XHeader);
            x.set_mode(FILE_MODE);
            x.set_uid(0);
            x.set_gid(0);
            x.set_mtime(e.mtime.min(OCTAL_MAX));
            x.set_size(records.len() as u64);
            if let Some(ustar) = x.as_ustar_mut() {
                let base = e
                    .name
                    .strip_suffix(b"/")
                    .unwrap_or(&e.name)
                    .rsplit(|&b| b == b'/')
                    .next()
                    .unwrap_or_default();
                let mut name = b"PaxHeaders/".to_vec();
                name.extend_from_slice(base);
                put_truncated(&mut ustar.name, &name);
            }
            x.set_cksum();
            out.extend_from_slice(x.as_bytes());
            let pad = block_padding(records.len() as u64) as usize;
            out.extend_from_slice(&records);
            out.resize(out.len() + pad, 0);
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        Ok(out)
    }
}

/// The data of member `name` (a [`TarWriter::reserve`]d one), exactly `size` bytes of `data`,
/// moved by `copy` (which writes what it reads wherever the member's data goes and returns the
/// count). Checked as [`TarWriter::stream`] checks: a short or long source is
/// [`ArchiveError::Short`] or [`ArchiveError::Long`], a failing one [`ArchiveError::Source`]
/// (a verifying reader fails at its end), any other error is the output's
/// ([`ArchiveError::Output`]). Padding is the caller's.
pub fn copy_exact(
    name: &str,
    size: u64,
    data: &mut dyn Read,
    copy: &mut dyn FnMut(&mut dyn Read) -> io::Result<u64>,
) -> Result<()> {
    let mut r = Exact {
        inner: data,
        left: size,
        size,
        name,
        failure: None,
    };
    let res = copy(&mut r);
    if let Some(f) = r.failure.take() {
        return Err(f);
    }
    match res {
        Ok(n) if n == size => Ok(()),
        // A copy that stopped early without an error of the source: the output's doing.
        Ok(n) => Err(ArchiveError::Output {
            source: io::Error::new(
                io::ErrorKind::WriteZero,
                format!("{n} of {size} bytes of `{name}` written"),
            ),
        }),
        Err(source) => Err(ArchiveError::Output { source }),
    }
}

/// Zero bytes after `len` bytes of data to the next 512-byte block.
pub fn block_padding(len: u64) -> u64 {
    (512 - len % 512) % 512
}

/// Put `name` into ustar's name and prefix fields, split at a `/`; false when it does not fit.
fn split_name(name: &[u8], field: &mut [u8; 100], prefix: &mut [u8; 155]) -> bool {
    if name.contains(&0) {
        return false;
    }
    if name.len() <= field.len() {
        field[..name.len()].copy_from_slice(name);
        return true;
    }
    // The last `/` that leaves a name part short enough (and a prefix that fits).
    let mut at = None;
    for (i, &b) in name.iter().enumerate() {
        if b == b'/' && i <= prefix.len() && name.len() - i - 1 <= field.len() && i > 0 {
            let rest = &name[i + 1..];
            if !rest.is_empty() {
                at = Some(i);
                break;
            }
        }
    }
    let Some(i) = at else {
        return false;
    };
    prefix[..i].copy_from_slice(&name[..i]);
    let rest = &name[i + 1..];
    field[..rest.len()].copy_from_slice(rest);
    true
}

/// As much of `value` as fits (the PAX record holds the whole).
fn put_truncated(field: &mut [u8], value: &[u8]) {
    let n = field.len().min(value.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// A PAX time: seconds, then the fraction without trailing zeros.
fn pax_time(secs: u64, nsec: u32) -> String {
    if nsec == 0 {
        return secs.to_string();
    }
    let frac = format!("{nsec:09}");
    format!("{secs}.{}", frac.trim_end_matches('0'))
}

/// One PAX record: `LEN KEY=VALUE\n`, LEN counting itself.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// A reader that must yield exactly `size` bytes: the tar header already promised that size.
/// Its failures are kept aside, so that the writer can tell them from the output's.
struct Exact<'a> {
    inner: &'a mut dyn Read,
    left: u64,
    size: u64,
    name: &'a str,
    failure: Option<ArchiveError>,
}

impl Exact<'_> {
    fn fail(&mut self, e: ArchiveError) -> io::Error {
        let msg = e.to_string();
        self.failure = Some(e);
        io::Error::other(msg)
    }
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // Make sure the source is really at its end (and let a verifying reader check).
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe) {
                Ok(0) => Ok(0),
                Ok(_) => Err(self.fail(ArchiveError::Long {
                    member: self.name.to_string(),
                    declared: self.size,
                })),
                Err(source) => Err(self.fail(ArchiveError::Source {
                    member: self.name.to_string(),
                    source,
                })),
            };
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        match self.inner.read(&mut buf[..want]) {
            Ok(0) if want > 0 => Err(self.fail(ArchiveError::Short {
                member: self.name.to_string(),
                declared: self.size,
                missing: self.left,
            })),
            Ok(n) => {
                self.left -= n as u64;
                Ok(n)
            }
            Err(source) => Err(self.fail(ArchiveError::Source {
                member: self.name.to_string(),
                source,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{Limits, MemberKind, Stream};

    fn read_back(bytes: &[u8]) -> Vec<(String, MemberKind, u64, Vec<u8>, tar::Header)> {
        let mut out = Vec::new();
        let mut ar = tar::Archive::new(bytes);
        for e in ar.entries().expect("entries") {
            let mut e = e.expect("entry");
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("data");
            let kind = if e.header().entry_type().is_dir() {
                MemberKind::Dir
            } else {
                MemberKind::File
            };
            out.push((
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                kind,
                e.size(),
                data,
                e.header().clone(),
            ));
        }
        out
    }

    #[test]
    fn headers_are_fixed_and_names_kept() {
        let mut w = TarWriter::new(Vec::new(), 1_700_000_000);
        w.dir("blobs").expect("dir");
        w.dir("blobs/sha256/").expect("dir");
        w.file("index.json", b"{}").expect("file");
        w.stream("blobs/sha256/x", 5, &mut &b"hello"[..])
            .expect("stream");
        let bytes = w.finish().expect("finish");
        assert_eq!(bytes.len() % 512, 0);
        assert_eq!(&bytes[bytes.len() - 1024..], &[0u8; 1024][..]);
        let got = read_back(&bytes);
        let names: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(
            names,
            ["blobs/", "blobs/sha256/", "index.json", "blobs/sha256/x"]
        );
        for (name, kind, _, _, h) in &got {
            assert_eq!(h.uid().expect("uid"), 0, "{name}");
            assert_eq!(h.gid().expect("gid"), 0, "{name}");
            assert_eq!(h.mtime().expect("mtime"), 1_700_000_000, "{name}");
            assert_eq!(h.username_bytes(), Some(&b""[..]), "{name}");
            assert_eq!(h.groupname_bytes(), Some(&b""[..]), "{name}");
            let mode = if *kind == MemberKind::Dir {
                0o755
            } else {
                0o644
            };
            assert_eq!(h.mode().expect("mode"), mode, "{name}");
            assert!(h.as_ustar().is_some(), "{name}");
        }
        assert_eq!(got[3].3, b"hello");
    }

    /// A sha512 blob name is longer than ustar's name field and cannot be split at a `/` into
    /// prefix and name: it gets a GNU long-name entry, which both readers take back.
    #[test]
    fn long_names_get_a_gnu_long_name_entry() {
        let long = format!("blobs/sha512/{}", "a".repeat(128));
        let mut w = TarWriter::new(Vec::new(), 0);
        w.file(&long, b"x").expect("file");
        let bytes = w.finish().expect("finish");
        assert_eq!(&bytes[..13], b"././@LongLink");
        assert_eq!(bytes[156], b'L');
        assert_eq!(read_back(&bytes)[0].0, long);
        let mut s = Stream::new(&bytes[..], "t".as_ref(), &Limits::default());
        let mut m = s.members().expect("members");
        let got = m.next_member().expect("ok").expect("one");
        assert_eq!(got.name, long);
        assert_eq!(got.size, 1);
    }

    #[test]
    fn short_and_long_sources_fail_naming_the_member() {
        let mut w = TarWriter::new(Vec::new(), 0);
        let e = w
            .stream("blobs/sha256/short", 10, &mut &b"12345"[..])
            .expect_err("short");
        assert_eq!(
            e.to_string(),
            "tar member `blobs/sha256/short`: its data ended 5 bytes short of the 10 bytes declared"
        );
        let mut w = TarWriter::new(Vec::new(), 0);
        let e = w
            .stream("blobs/sha256/long", 3, &mut &b"12345"[..])
            .expect_err("long");
        assert_eq!(
            e.to_string(),
            "tar member `blobs/sha256/long`: its data is longer than the 3 bytes declared"
        );
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("boom"))
            }
        }
        let mut w = TarWriter::new(Vec::new(), 0);
        let e = w.stream("m", 3, &mut Broken).expect_err("broken");
        assert!(matches!(&e, ArchiveError::Source { member, .. } if member == "m"));
        assert_eq!(e.to_string(), "tar member `m`: reading its data: boom");
    }

    #[test]
    fn output_errors_are_told_apart() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = TarWriter::new(Full, 0);
        let e = w.stream("m", 3, &mut &b"abc"[..]).expect_err("full");
        assert!(matches!(e, ArchiveError::Output { .. }), "{e:?}");
    }
}
