//! `unpack`: the layers of one image applied in order into a root directory.
//!
//! Safety: every path is resolved inside the root. The parent directory of each entry is opened
//! with `openat2(RESOLVE_IN_ROOT)` where the kernel has it (symlinks in the path are followed
//! as a `chroot` would, never out of the root), else by a walk that does the same one component
//! at a time (`O_NOFOLLOW`, symlinks resolved by hand, `..` stopping at the root). The entry
//! itself is then made relative to that directory without following its last component
//! (`O_CREAT|O_EXCL|O_NOFOLLOW`, `symlinkat`, `linkat` without `AT_SYMLINK_FOLLOW`, `mknodat`),
//! after removing whatever was there. Names with `..` or absolute names, and hard links that
//! leave the archive, are refused by the archive reader before anything of the entry is
//! written: the unpack stops naming the entry.
//!
//! Layers: whiteouts (`.wh.NAME`) remove what lower layers put at `NAME`; an opaque whiteout
//! (`.wh..wh..opq`) removes everything lower layers put in its directory, and never what the
//! same layer adds (before or after the marker). A hard link whose target comes later in the
//! same layer is made at the end of the layer. Each layer's uncompressed content is checked
//! against the config's diff_id.
//!
//! Metadata: modes, mtimes (with nanoseconds) and xattrs are applied; directories' last, after
//! every layer, so that later writes do not change them. Owners are applied when running as
//! root (and not `rootless`); otherwise files belong to the current user. Device nodes are made
//! only as root (and not `rootless`); otherwise they are skipped and counted. An xattr the file
//! system or the user may not set is skipped and counted.
//!
//! A failed unpack removes the root it created, or empties the empty root it was given.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use ocikit_layout::archive::{ArchiveError, Limits, MemberKind, MemberMeta, Stream};
use ocikit_layout::compress::{decompressor, sniff, Sniffed, SNIFF_LEN};
use ocikit_layout::output::NewDir;
use ocikit_layout::{peek, Algorithm, Descriptor, Digest, Hasher, Layout, Manifest, PlatformSpec};
use rustix::fs::{
    AtFlags, Dir, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;
use serde_json::Value;

use crate::pack::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX};
use crate::{Error, Result};

/// What `unpack` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackOptions {
    /// The platform to unpack from an index (needed when it holds several images).
    pub platform: Option<PlatformSpec>,
    /// Behave as an unprivileged user even as root: no owners, no device nodes.
    pub rootless: bool,
}

/// What an unpack did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// The manifest unpacked.
    pub manifest: Option<Digest>,
    /// Its platform, `os/arch[/variant]`.
    pub platform: Option<String>,
    /// Layers applied.
    pub layers: usize,
    /// Entries applied (whiteouts included).
    pub entries: u64,
    /// Device nodes skipped (not root, or rootless).
    pub devices_skipped: u64,
    /// Extended attributes the file system or user could not set.
    pub xattrs_skipped: u64,
    /// Whether owners were applied.
    pub owners: bool,
}

/// Unpack the image `name` names (the platform chosen, when it is an index) into `rootfs`,
/// which must not exist or be an empty directory.
pub fn unpack(
    layout: &Layout,
    name: &str,
    rootfs: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackReport> {
    let image = choose(layout, name, opts.platform.as_ref())?;
    let existed = match std::fs::symlink_metadata(rootfs) {
        Ok(m) => {
            let empty = m.is_dir()
                && std::fs::read_dir(rootfs)
                    .map_err(|e| Error::io(rootfs, e))?
                    .next()
                    .is_none();
            if !empty {
                return Err(Error::NotEmpty {
                    path: rootfs.to_path_buf(),
                });
            }
            true
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(rootfs, e)),
    };
    let guard = NewDir::guard(rootfs);
    if !existed {
        std::fs::create_dir(rootfs).map_err(|e| Error::io(rootfs, e))?;
    }
    let root = rustix::fs::open(
        rootfs,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(rootfs, e.into()))?;
    let privileged = !opts.rootless && rustix::process::geteuid().is_root();
    let mut u = Unpacker {
        root,
        rootfs,
        privileged,
        openat2: true,
        dirs: BTreeMap::new(),
        report: UnpackReport {
            manifest: Some(image.manifest.clone()),
            platform: image.platform.clone(),
            owners: privileged,
            ..UnpackReport::default()
        },
    };
    let result = (|| {
        for (i, layer) in image.layers.iter().enumerate() {
            u.layer(layout, i, layer, image.diff_ids.get(i).cloned().flatten())?;
        }
        u.finish()
    })();
    match result {
        Ok(()) => {
            guard.keep();
            Ok(u.report)
        }
        Err(e) => {
            if existed {
                // Leave the directory as empty as it was given.
                let _ = clear(u.root.as_fd());
            }
            Err(e)
        }
    }
}

/// The image an unpack (or a squash to a file) reads: its manifest, platform, layers and the
/// config's diff_ids.
#[derive(Debug, Clone)]
pub(crate) struct Chosen {
    pub manifest: Digest,
    pub platform: Option<String>,
    pub layers: Vec<Descriptor>,
    pub diff_ids: Vec<Option<Digest>>,
}

/// The one image `name` names: the platform chosen, when it is an index of several.
pub(crate) fn choose(
    layout: &Layout,
    name: &str,
    platform: Option<&PlatformSpec>,
) -> Result<Chosen> {
    let platforms: Vec<PlatformSpec> = platform.into_iter().cloned().collect();
    let found = crate::config::show(layout, name, &platforms)?;
    if found.len() > 1 {
        return Err(Error::NeedPlatform {
            name: name.to_string(),
            platforms: found
                .iter()
                .map(|f| {
                    f.platform
                        .as_ref()
                        .map_or_else(|| "unknown".into(), |p| p.to_short())
                })
                .collect(),
        });
    }
    let Some(image) = found.into_iter().next() else {
        return Err(Error::NoImage {
            name: name.to_string(),
            platforms: Vec::new(),
        });
    };
    let manifest = layout
        .read_json::<Manifest>(&image.manifest.digest, Some(image.manifest.size))?
        .value;
    Ok(Chosen {
        manifest: image.manifest.digest.clone(),
        platform: image.platform.as_ref().map(|p| p.to_short()),
        layers: manifest.layers,
        diff_ids: diff_ids_of(&image.document),
    })
}

/// A config's `rootfs.diff_ids` (an entry that is no digest is `None`).
pub(crate) fn diff_ids_of(config: &Value) -> Vec<Option<Digest>> {
    config
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().and_then(|s| Digest::parse(s).ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// A layer's uncompressed stream (verified against its descriptor at the end of the blob),
/// hashed as it is read, for [`check_diff_id`].
pub(crate) fn open_layer<'l>(
    layout: &'l Layout,
    index: usize,
    desc: &Descriptor,
) -> Result<Hashing<Box<dyn Read + 'l>>> {
    let blob = layout.open_blob(&desc.digest, Some(desc.size))?;
    let (head, r) = peek(blob, SNIFF_LEN).map_err(|e| Error::io(layout.root(), e))?;
    let compression = match sniff(&head) {
        Sniffed::Known(c) => c,
        _ => {
            return Err(Error::Entry {
                index,
                digest: desc.digest.clone(),
                entry: String::new(),
                reason: "not a tar layer (nor gzip or zstd)".into(),
            });
        }
    };
    let dec = decompressor(r, compression).map_err(|e| Error::io(layout.root(), e))?;
    Ok(Hashing {
        inner: dec,
        hasher: Algorithm::Sha256.hasher(),
    })
}

/// Read the rest of a layer (the end blocks, padding count for the diff_id) and compare what
/// it hashes to with the config's diff_id.
pub(crate) fn check_diff_id<R: Read>(
    mut hashing: Hashing<R>,
    layout: &Layout,
    index: usize,
    desc: &Descriptor,
    diff_id: Option<Digest>,
) -> Result<()> {
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| Error::io(layout.root(), e))?;
    let found = hashing.hasher.finish();
    if let Some(expected) = diff_id {
        if expected.algorithm() == Some(Algorithm::Sha256) && expected != found {
            return Err(Error::DiffId {
                index,
                digest: desc.digest.clone(),
                expected,
                found,
            });
        }
    }
    Ok(())
}

/// Remove everything inside a directory.
fn clear(dir: BorrowedFd<'_>) -> io::Result<()> {
    let mut names = Vec::new();
    let mut d = Dir::read_from(dir)?;
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    for n in names {
        remove_all(dir, &n)?;
    }
    Ok(())
}

struct Unpacker<'a> {
    root: OwnedFd,
    rootfs: &'a Path,
    privileged: bool,
    openat2: bool,
    /// Directories' metadata, applied at the end, by path.
    dirs: BTreeMap<String, MemberMeta>,
    report: UnpackReport,
}

/// A reader that hashes what passes through (the layer's diff_id).
pub(crate) struct Hashing<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// What goes wrong with one entry.
struct EntryError(String);

impl From<io::Error> for EntryError {
    fn from(e: io::Error) -> Self {
        EntryError(e.to_string())
    }
}

impl From<Errno> for EntryError {
    fn from(e: Errno) -> Self {
        EntryError(io::Error::from(e).to_string())
    }
}

fn split(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((p, l)) => (p, l),
        None => ("", path),
    }
}

fn mode(bits: u32) -> Mode {
    Mode::from_bits_truncate(bits & 0o7777)
}

fn times(meta: &MemberMeta) -> Timestamps {
    let t = Timespec {
        tv_sec: i64::try_from(meta.mtime).unwrap_or(i64::MAX),
        tv_nsec: i64::from(meta.mtime_nsec),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn ids(meta: &MemberMeta) -> Option<(Uid, Gid)> {
    let uid = u32::try_from(meta.uid).ok().filter(|&u| u != u32::MAX)?;
    let gid = u32::try_from(meta.gid).ok().filter(|&g| g != u32::MAX)?;
    Some((Uid::from_raw(uid), Gid::from_raw(gid)))
}

impl Unpacker<'_> {
    fn layer(
        &mut self,
        layout: &Layout,
        index: usize,
        desc: &Descriptor,
        diff_id: Option<Digest>,
    ) -> Result<()> {
        let at = |entry: &str, reason: String| Error::Entry {
            index,
            digest: desc.digest.clone(),
            entry: entry.to_string(),
            reason,
        };
        let mut hashing = open_layer(layout, index, desc)?;
        let shown = format!("layer {index} ({})", desc.digest);
        let mut touched: HashSet<String> = HashSet::new();
        let mut pending: Vec<(String, String, MemberMeta)> = Vec::new();
        {
            let mut stream = Stream::new(&mut hashing, Path::new(&shown), &Limits::default());
            let mut members = stream.members().map_err(|e| self.unwrap_archive(e))?;
            while let Some(mut m) = members.next_member().map_err(|e| self.unwrap_archive(e))? {
                self.report.entries += 1;
                let name = m.name.clone();
                let (parent, leaf) = split(&name);
                if leaf == OPAQUE_WHITEOUT {
                    self.opaque(parent, &touched)
                        .map_err(|e| at(&m.raw_name, e.0))?;
                    continue;
                }
                if let Some(hidden) = leaf.strip_prefix(WHITEOUT_PREFIX) {
                    if hidden.is_empty() || hidden == "." || hidden == ".." {
                        return Err(at(&m.raw_name, "a whiteout that names no file".into()));
                    }
                    let path = if parent.is_empty() {
                        hidden.to_string()
                    } else {
                        format!("{parent}/{hidden}")
                    };
                    if !touched.contains(&path) {
                        self.whiteout(parent, hidden, &path)
                            .map_err(|e| at(&m.raw_name, e.0))?;
                    }
                    continue;
                }
                touch(&mut touched, &name);
                if let MemberKind::HardLink(target) = &m.kind {
                    if !self.link(&name, target).map_err(|e| at(&m.raw_name, e.0))? {
                        pending.push((name.clone(), target.clone(), m.meta.clone()));
                    }
                    continue;
                }
                let kind = m.kind.clone();
                let meta = m.meta.clone();
                self.entry(&name, &kind, &meta, &mut m)
                    .map_err(|e| at(&m.raw_name, e.0))?;
            }
        }
        for (name, target, _) in pending {
            if !self.link(&name, &target).map_err(|e| at(&name, e.0))? {
                return Err(at(
                    &name,
                    format!(
                        "hard link to `{target}`, which neither this layer nor a lower one has"
                    ),
                ));
            }
        }
        check_diff_id(hashing, layout, index, desc, diff_id)?;
        self.report.layers += 1;
        Ok(())
    }

    /// An archive error, with the store's verification error brought out of an I/O error.
    fn unwrap_archive(&self, e: ArchiveError) -> Error {
        Error::Archive(e)
    }

    /// The directory `path` (relative to the root), resolved inside the root; missing
    /// directories are made (0755) when `create`, also where a symlink in the path points to
    /// a directory that is not there yet (inside the root, as a `chroot` would).
    fn dir(&mut self, path: &str, create: bool) -> Result<OwnedFd, EntryError> {
        self.dir_hops(path, create, 0)
    }

    fn dir_hops(&mut self, path: &str, create: bool, hops: usize) -> Result<OwnedFd, EntryError> {
        match self.open_in_root(path) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) if create => {}
            Err(Errno::NOTDIR) => {
                return Err(EntryError(format!("`{path}` is not a directory")));
            }
            Err(e) => return Err(e.into()),
        }
        let mut cur = self.open_in_root("")?;
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for i in 0..parts.len() {
            let sub = parts[..=i].join("/");
            cur = match self.open_in_root(&sub) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    let st = rustix::fs::statat(&cur, parts[i], AtFlags::SYMLINK_NOFOLLOW);
                    if st.is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink) {
                        // A symlink to a directory not there yet: make it where it points.
                        if hops >= 40 {
                            return Err(EntryError(format!(
                                "`{sub}`: too many levels of symbolic links"
                            )));
                        }
                        let target = rustix::fs::readlinkat(&cur, parts[i], Vec::new())?;
                        let target = String::from_utf8_lossy(target.to_bytes()).into_owned();
                        let mut joined = if target.starts_with('/') {
                            target
                        } else {
                            format!("{}/{target}", parts[..i].join("/"))
                        };
                        for rest in &parts[i + 1..] {
                            joined.push('/');
                            joined.push_str(rest);
                        }
                        return self.dir_hops(&joined, create, hops + 1);
                    }
                    rustix::fs::mkdirat(&cur, parts[i], Mode::from_bits_truncate(0o755))?;
                    rustix::fs::openat(
                        &cur,
                        parts[i],
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?
                }
                Err(Errno::NOTDIR) => {
                    return Err(EntryError(format!("`{sub}` is not a directory")));
                }
                Err(e) => return Err(e.into()),
            };
        }
        Ok(cur)
    }

    fn open_in_root(&mut self, path: &str) -> Result<OwnedFd, Errno> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        if path.is_empty() {
            return rustix::fs::openat(&self.root, ".", flags, Mode::empty());
        }
        if self.openat2 {
            match rustix::fs::openat2(
                &self.root,
                path,
                flags,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Err(Errno::NOSYS) => self.openat2 = false,
                other => return other,
            }
        }
        walk_in_root(self.root.as_fd(), path)
    }

    fn whiteout(&mut self, parent: &str, hidden: &str, path: &str) -> Result<(), EntryError> {
        let dir = match self.dir(parent, false) {
            Ok(d) => d,
            Err(_) => return Ok(()), // nothing there to hide
        };
        remove_all(dir.as_fd(), hidden.as_bytes())?;
        self.forget(path);
        Ok(())
    }

    /// Remove what lower layers put in `parent`, keeping what this layer touched.
    fn opaque(&mut self, parent: &str, touched: &HashSet<String>) -> Result<(), EntryError> {
        let Ok(dir) = self.dir(parent, false) else {
            return Ok(());
        };
        let mut todo = vec![(dir, parent.to_string())];
        while let Some((fd, path)) = todo.pop() {
            let mut names = Vec::new();
            let mut d = Dir::read_from(&fd)?;
            while let Some(e) = d.read() {
                let e = e?;
                let n = e.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push((String::from_utf8_lossy(n).into_owned(), n.to_vec()));
                }
            }
            for (n, raw) in names {
                let full = if path.is_empty() {
                    n.clone()
                } else {
                    format!("{path}/{n}")
                };
                if touched.contains(&full) {
                    let st = rustix::fs::statat(&fd, &raw[..], AtFlags::SYMLINK_NOFOLLOW)?;
                    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                        let sub = rustix::fs::openat(
                            &fd,
                            &raw[..],
                            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                            Mode::empty(),
                        )?;
                        todo.push((sub, full));
                    }
                } else {
                    remove_all(fd.as_fd(), &raw)?;
                    self.forget(&full);
                }
            }
        }
        Ok(())
    }

    /// `path` and everything under it no longer has directory metadata to apply.
    fn forget(&mut self, path: &str) {
        self.dirs.remove(path);
        let prefix = format!("{path}/");
        let under: Vec<String> = self
            .dirs
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in under {
            self.dirs.remove(&k);
        }
    }

    /// Make a hard link; false when its target is not there (yet).
    fn link(&mut self, name: &str, target: &str) -> Result<bool, EntryError> {
        let (tparent, tleaf) = split(target);
        let Ok(tdir) = self.dir(tparent, false) else {
            return Ok(false);
        };
        let st = match rustix::fs::statat(&tdir, tleaf, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return Err(EntryError(format!("hard link to the directory `{target}`")));
        }
        let (parent, leaf) = split(name);
        let dir = self.dir(parent, true)?;
        if let Ok(cur) = rustix::fs::statat(&dir, leaf, AtFlags::SYMLINK_NOFOLLOW) {
            if cur.st_ino == st.st_ino && cur.st_dev == st.st_dev {
                return Ok(true);
            }
        }
        remove_all(dir.as_fd(), leaf.as_bytes())?;
        rustix::fs::linkat(&tdir, tleaf, &dir, leaf, AtFlags::empty())?;
        self.forget(name);
        Ok(true)
    }

    fn entry(
        &mut self,
        name: &str,
        kind: &MemberKind,
        meta: &MemberMeta,
        data: &mut dyn Read,
    ) -> Result<(), EntryError> {
        let (parent, leaf) = split(name);
        let dir = self.dir(parent, true)?;
        let existing = rustix::fs::statat(&dir, leaf, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| FileType::from_raw_mode(st.st_mode));
        if *kind == MemberKind::Dir {
            if existing != Some(FileType::Directory) {
                if existing.is_some() {
                    remove_all(dir.as_fd(), leaf.as_bytes())?;
                }
                rustix::fs::mkdirat(&dir, leaf, Mode::from_bits_truncate(0o755))?;
            }
            self.dirs.insert(name.to_string(), meta.clone());
            return Ok(());
        }
        if existing.is_some() {
            remove_all(dir.as_fd(), leaf.as_bytes())?;
        }
        self.forget(name);
        match kind {
            MemberKind::File => {
                let fd = rustix::fs::openat(
                    &dir,
                    leaf,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )?;
                let mut f = File::from(fd);
                io::copy(data, &mut f)?;
                self.set_meta(f.as_fd(), meta)?;
            }
            MemberKind::Symlink(target) => {
                rustix::fs::symlinkat(target.as_str(), &dir, leaf)?;
                if self.privileged {
                    if let Some((u, g)) = ids(meta) {
                        rustix::fs::chownat(
                            &dir,
                            leaf,
                            Some(u),
                            Some(g),
                            AtFlags::SYMLINK_NOFOLLOW,
                        )?;
                    }
                }
                if !meta.xattrs.is_empty() {
                    self.report.xattrs_skipped += meta.xattrs.len() as u64;
                }
                rustix::fs::utimensat(&dir, leaf, &times(meta), AtFlags::SYMLINK_NOFOLLOW)?;
            }
            MemberKind::Other => {
                let ft = match meta.entry_type {
                    b'3' => FileType::CharacterDevice,
                    b'4' => FileType::BlockDevice,
                    b'6' => FileType::Fifo,
                    _ => return Ok(()), // not a file system object (a volume label, ...)
                };
                if ft != FileType::Fifo && !self.privileged {
                    self.report.devices_skipped += 1;
                    return Ok(());
                }
                let (major, minor) = meta.device.unwrap_or((0, 0));
                rustix::fs::mknodat(
                    &dir,
                    leaf,
                    ft,
                    mode(meta.mode),
                    rustix::fs::makedev(major, minor),
                )?;
                let fd = rustix::fs::openat(
                    &dir,
                    leaf,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                if self.privileged {
                    if let Some((u, g)) = ids(meta) {
                        rustix::fs::chownat(
                            &dir,
                            leaf,
                            Some(u),
                            Some(g),
                            AtFlags::SYMLINK_NOFOLLOW,
                        )?;
                    }
                }
                let _ = fd;
                rustix::fs::chmodat(&dir, leaf, mode(meta.mode), AtFlags::empty())?;
                rustix::fs::utimensat(&dir, leaf, &times(meta), AtFlags::SYMLINK_NOFOLLOW)?;
            }
            MemberKind::Dir | MemberKind::HardLink(_) => {}
        }
        Ok(())
    }

    /// Owner, mode, xattrs, times on an open file or directory.
    fn set_meta(&mut self, fd: BorrowedFd<'_>, meta: &MemberMeta) -> Result<(), EntryError> {
        if self.privileged {
            if let Some((u, g)) = ids(meta) {
                rustix::fs::fchown(fd, Some(u), Some(g))?;
            }
        }
        // After chown, which clears setuid and setgid.
        rustix::fs::fchmod(fd, mode(meta.mode))?;
        for (k, v) in &meta.xattrs {
            match rustix::fs::fsetxattr(fd, &k[..], v, XattrFlags::empty()) {
                Ok(()) => {}
                Err(Errno::PERM) | Err(Errno::NOTSUP) | Err(Errno::ACCESS) | Err(Errno::INVAL) => {
                    self.report.xattrs_skipped += 1
                }
                Err(e) => return Err(e.into()),
            }
        }
        rustix::fs::futimens(fd, &times(meta))?;
        Ok(())
    }

    /// Directories' metadata, last.
    fn finish(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (path, meta) in dirs.iter().rev() {
            let at = |reason: String| Error::Input {
                path: self.rootfs.join(path),
                reason,
            };
            let fd = match self.open_in_root(path) {
                Ok(fd) => fd,
                Err(Errno::NOENT) | Err(Errno::NOTDIR) => continue,
                Err(e) => return Err(at(io::Error::from(e).to_string())),
            };
            self.set_meta(fd.as_fd(), meta).map_err(|e| at(e.0))?;
        }
        let _ = self.rootfs.as_os_str().as_bytes();
        Ok(())
    }
}

/// Mark `path` and its parents as touched by the current layer.
fn touch(touched: &mut HashSet<String>, path: &str) {
    let mut p = path;
    loop {
        if !touched.insert(p.to_string()) {
            return;
        }
        match p.rsplit_once('/') {
            Some((parent, _)) => p = parent,
            None => return,
        }
    }
}

/// The directory `path` names inside `root`, resolved as `RESOLVE_IN_ROOT` does, one component
/// at a time: `O_NOFOLLOW` opens, symlinks read and followed by hand (an absolute target starts
/// again at the root), `..` never above the root, at most 40 links.
pub fn walk_in_root(root: BorrowedFd<'_>, path: &str) -> Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut queue: VecDeque<Vec<u8>> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(|c| c.as_bytes().to_vec())
        .collect();
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut hops = 0;
    while let Some(c) = queue.pop_front() {
        let cur = stack.last().map_or(root, |f| f.as_fd());
        match &c[..] {
            b"." => continue,
            b".." => {
                stack.pop();
                continue;
            }
            _ => {}
        }
        let st = rustix::fs::statat(cur, &c[..], AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            hops += 1;
            if hops > 40 {
                return Err(Errno::LOOP);
            }
            let target = rustix::fs::readlinkat(cur, &c[..], Vec::new())?;
            let t = target.to_bytes();
            if t.starts_with(b"/") {
                stack.clear();
            }
            for part in t.split(|&b| b == b'/').filter(|p| !p.is_empty()).rev() {
                queue.push_front(part.to_vec());
            }
            continue;
        }
        let fd = rustix::fs::openat(cur, &c[..], flags, Mode::empty())?;
        stack.push(fd);
    }
    match stack.pop() {
        Some(fd) => Ok(fd),
        None => rustix::fs::openat(root, ".", flags, Mode::empty()),
    }
}

/// Remove `name` in `dir`, a directory with everything in it; never following a symlink.
pub fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut stack: Vec<(OwnedFd, Vec<u8>)> = vec![(
        rustix::fs::openat(dir, name, flags, Mode::empty())?,
        name.to_vec(),
    )];
    while let Some((fd, _)) = stack.last() {
        let mut sub = None;
        let mut d = Dir::read_from(fd)?;
        while let Some(e) = d.read() {
            let e = e?;
            let n = e.file_name().to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            match rustix::fs::unlinkat(fd, n, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(Errno::ISDIR) | Err(Errno::PERM) => {
                    sub = Some(n.to_vec());
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        match sub {
            Some(n) => {
                let child = rustix::fs::openat(fd, &n[..], flags, Mode::empty())?;
                stack.push((child, n));
            }
            None => {
                let Some((_, n)) = stack.pop() else { break };
                let parent = stack.last().map_or(dir, |(f, _)| f.as_fd());
                rustix::fs::unlinkat(parent, &n[..], AtFlags::REMOVEDIR)?;
            }
        }
    }
    Ok(())
}

#[allow(dead_code)]
fn raw(fd: BorrowedFd<'_>) -> i32 {
    fd.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ino(fd: &OwnedFd) -> u64 {
        rustix::fs::fstat(fd).expect("fstat").st_ino
    }

    /// The walk used where the kernel has no `openat2` resolves as `RESOLVE_IN_ROOT` does.
    #[test]
    fn the_walk_resolves_as_openat2_in_root_does() {
        let tmp = tempfile::tempdir().expect("tmp");
        let r = tmp.path();
        std::fs::create_dir_all(r.join("a/b")).expect("mkdir");
        std::os::unix::fs::symlink("/a", r.join("abs")).expect("ln");
        std::os::unix::fs::symlink("../../../a/b", r.join("a/up")).expect("ln");
        std::os::unix::fs::symlink("abs", r.join("chain")).expect("ln");
        std::os::unix::fs::symlink("loop", r.join("loop")).expect("ln");
        let root =
            rustix::fs::open(r, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).expect("open");
        for path in [
            "a",
            "abs",
            "chain/b",
            "a/up",
            "abs/up/../..",
            "a/b/../../..",
            "",
        ] {
            let walked = walk_in_root(root.as_fd(), path).expect(path);
            let kernel = rustix::fs::openat2(
                &root,
                if path.is_empty() { "." } else { path },
                OFlags::RDONLY | OFlags::DIRECTORY,
                Mode::empty(),
                ResolveFlags::IN_ROOT,
            )
            .expect(path);
            assert_eq!(ino(&walked), ino(&kernel), "{path}");
        }
        assert_eq!(
            walk_in_root(root.as_fd(), "loop/x").err(),
            Some(Errno::LOOP)
        );
        assert_eq!(
            walk_in_root(root.as_fd(), "missing").err(),
            Some(Errno::NOENT)
        );
    }
}
