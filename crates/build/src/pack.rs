//! Packing a directory into a layer tar, reproducibly.
//!
//! - Entries are sorted by their full name (bytes), so a parent comes before its children and
//!   the order never depends on the file system's directory order.
//! - Regular files, directories, symlinks (the target kept as written), hard links (an inode
//!   seen again is a link to its first name in that order), character and block devices and
//!   FIFOs. Sockets cannot be held by a tar and are skipped (and counted).
//! - Extended attributes, sorted by name, as PAX `SCHILY.xattr.*` records, except
//!   `security.selinux` (a label of the machine that packed, not of the image).
//! - Owners are 0:0 with no user or group names unless [`PackOptions::keep_owner`] (numeric ids
//!   then, still no names).
//! - Modes are normalized as git does unless [`PackOptions::keep_mode`]: a file is 0755 when its
//!   owner may execute it, else 0644; a directory 0755; setuid, setgid and sticky bits are kept.
//!   So the umask of a checkout does not change the layer.
//! - With `SOURCE_DATE_EPOCH`, mtimes later than it are clamped to it (older stay older);
//!   sub-second times are kept in PAX records.
//! - [`PackOptions::prefix`] places the tree under a path (its parents are written as 0755
//!   directories); whiteouts (`.wh.NAME`) hide paths of the layers below.
//!
//! The tar goes through [`TarWriter::entry`], the project's one deterministic tar writer.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use ocikit_layout::archive::{normalize, EntryHeader, EntryKind, TarWriter};
use rustix::fs::{Mode, OFlags};

use crate::{Error, Result};

/// The prefix of whiteout names.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The name of an opaque whiteout (hides everything lower layers put in its directory).
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// How a directory is packed (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackOptions {
    /// Place the tree under this path (`/opt/app` or `opt/app`).
    pub prefix: Option<String>,
    /// Keep numeric owners instead of 0:0.
    pub keep_owner: bool,
    /// Keep permission bits as they are instead of normalizing them.
    pub keep_mode: bool,
    /// `SOURCE_DATE_EPOCH`: later mtimes are clamped to it.
    pub source_date_epoch: Option<u64>,
}

/// What a pack wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackReport {
    /// Tar members written (whiteouts and prefix directories included).
    pub entries: usize,
    /// Sockets found and left out.
    pub sockets: Vec<PathBuf>,
}

enum Source {
    /// A file system object.
    Path(PathBuf, Metadata),
    /// A parent directory of the prefix.
    PrefixDir,
    /// A whiteout.
    Whiteout,
}

struct Item {
    name: Vec<u8>,
    source: Source,
}

/// A path inside the image as tar name components: leading `/` and `.` dropped; `..` refused.
fn image_path(p: &str) -> Result<String> {
    normalize(p.trim_start_matches('/')).map_err(|reason| Error::BadValue {
        value: p.to_string(),
        reason: format!("not a path inside the image ({reason})"),
    })
}

/// Pack `dir` (when given) and whiteouts for `deletes` (paths inside the image) into a tar
/// written to `out`.
pub fn pack(
    dir: Option<&Path>,
    deletes: &[String],
    opts: &PackOptions,
    out: impl Write,
) -> Result<PackReport> {
    let mut items: Vec<Item> = Vec::new();
    let mut report = PackReport::default();
    let mut base: Vec<u8> = Vec::new();
    if let Some(dir) = dir {
        let meta = fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
        if !meta.is_dir() {
            return Err(Error::Input {
                path: dir.to_path_buf(),
                reason: "not a directory".into(),
            });
        }
        if let Some(prefix) = &opts.prefix {
            let p = image_path(prefix)?;
            if !p.is_empty() {
                let parts: Vec<&str> = p.split('/').collect();
                for i in 1..parts.len() {
                    items.push(Item {
                        name: parts[..i].join("/").into_bytes(),
                        source: Source::PrefixDir,
                    });
                }
                items.push(Item {
                    name: p.clone().into_bytes(),
                    source: Source::Path(dir.to_path_buf(), meta),
                });
                base = p.into_bytes();
            }
        }
        collect(dir, &base, &mut items, &mut report)?;
    }
    for d in deletes {
        let p = image_path(d)?;
        let (parent, leaf) = match p.rsplit_once('/') {
            Some((a, b)) => (Some(a), b),
            None => (None, p.as_str()),
        };
        if leaf.is_empty() {
            return Err(Error::BadValue {
                value: d.clone(),
                reason: "the root of the image cannot be deleted".into(),
            });
        }
        let mut name = parent.map(|p| format!("{p}/")).unwrap_or_default();
        name.push_str(WHITEOUT_PREFIX);
        name.push_str(leaf);
        items.push(Item {
            name: name.into_bytes(),
            source: Source::Whiteout,
        });
    }
    items.sort_by(|a, b| a.name.cmp(&b.name));
    items.dedup_by(|a, b| a.name == b.name);

    let epoch = opts.source_date_epoch;
    let clamp = |secs: i64, nsec: i64| -> (u64, u32) {
        let secs = u64::try_from(secs).unwrap_or(0);
        let nsec = u32::try_from(nsec).unwrap_or(0);
        match epoch {
            Some(e) if (secs, nsec) > (e, 0) => (e, 0),
            _ => (secs, nsec),
        }
    };
    let fixed_time = epoch.unwrap_or(0);
    let mut tar = TarWriter::new(out, fixed_time);
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for item in &items {
        let mut h = EntryHeader {
            name: item.name.clone(),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: fixed_time,
            mtime_nsec: 0,
            size: 0,
            xattrs: Vec::new(),
        };
        let (path, meta) = match &item.source {
            Source::Whiteout => {
                tar.entry(&h, &mut std::io::empty())?;
                report.entries += 1;
                continue;
            }
            Source::PrefixDir => {
                h.kind = EntryKind::Dir;
                h.mode = 0o755;
                h.name.push(b'/');
                tar.entry(&h, &mut std::io::empty())?;
                report.entries += 1;
                continue;
            }
            Source::Path(p, m) => (p, m),
        };
        let ft = meta.file_type();
        (h.mtime, h.mtime_nsec) = clamp(meta.mtime(), meta.mtime_nsec());
        if opts.keep_owner {
            h.uid = u64::from(meta.uid());
            h.gid = u64::from(meta.gid());
        }
        let perm = meta.mode() & 0o7777;
        let special = perm & 0o7000;
        h.mode = if opts.keep_mode {
            perm
        } else if ft.is_dir() {
            special | 0o755
        } else if ft.is_symlink() {
            0o777
        } else if ft.is_file() && perm & 0o100 != 0 {
            special | 0o755
        } else {
            special | 0o644
        };
        h.xattrs = xattrs(path)?;
        if !ft.is_dir() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = links.get(&key) {
                h.kind = EntryKind::HardLink(first.clone());
                h.xattrs.clear();
                tar.entry(&h, &mut std::io::empty())?;
                report.entries += 1;
                continue;
            }
            links.insert(key, item.name.clone());
        }
        if ft.is_dir() {
            h.kind = EntryKind::Dir;
            h.name.push(b'/');
            tar.entry(&h, &mut std::io::empty())?;
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(|e| Error::io(path, e))?;
            h.kind = EntryKind::Symlink(target.as_os_str().as_bytes().to_vec());
            tar.entry(&h, &mut std::io::empty())?;
        } else if ft.is_file() {
            h.size = meta.len();
            let fd = rustix::fs::open(
                path,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::io(path, e.into()))?;
            let mut f = File::from(fd);
            tar.entry(&h, &mut f).map_err(|e| match e {
                ocikit_layout::archive::ArchiveError::Source { source, .. } => {
                    Error::io(path, source)
                }
                ocikit_layout::archive::ArchiveError::Short { .. }
                | ocikit_layout::archive::ArchiveError::Long { .. } => Error::Input {
                    path: path.clone(),
                    reason: "changed size while it was packed".into(),
                },
                other => other.into(),
            })?;
        } else if ft.is_char_device() || ft.is_block_device() {
            let rdev = meta.rdev();
            let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
            h.kind = if ft.is_char_device() {
                EntryKind::Char { major, minor }
            } else {
                EntryKind::Block { major, minor }
            };
            tar.entry(&h, &mut std::io::empty())?;
        } else if ft.is_fifo() {
            h.kind = EntryKind::Fifo;
            tar.entry(&h, &mut std::io::empty())?;
        } else {
            report.sockets.push(path.clone());
            continue;
        }
        report.entries += 1;
    }
    tar.finish()?;
    Ok(report)
}

/// Every object under `dir`, named `base/relative` (or `relative` without a base).
fn collect(dir: &Path, base: &[u8], items: &mut Vec<Item>, report: &mut PackReport) -> Result<()> {
    let mut stack: Vec<(PathBuf, Vec<u8>)> = vec![(dir.to_path_buf(), base.to_vec())];
    while let Some((d, prefix)) = stack.pop() {
        let rd = fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let path = entry.path();
            let leaf: &OsStr = path.file_name().unwrap_or_default();
            let leaf = leaf.as_bytes();
            if leaf.starts_with(WHITEOUT_PREFIX.as_bytes()) {
                return Err(Error::Input {
                    path,
                    reason: "a file named `.wh.*` would be read as a whiteout".into(),
                });
            }
            let meta = fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
            let mut name = prefix.clone();
            if !name.is_empty() {
                name.push(b'/');
            }
            name.extend_from_slice(leaf);
            if meta.is_dir() {
                stack.push((path.clone(), name.clone()));
            }
            if meta.file_type().is_socket() {
                report.sockets.push(path);
                continue;
            }
            items.push(Item {
                name,
                source: Source::Path(path, meta),
            });
        }
    }
    Ok(())
}

/// The extended attributes of `path` (not following a symlink), sorted by name, without
/// `security.selinux`. A file system without xattrs has none.
fn xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut names = vec![0u8; 4096];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) if names.len() < (1 << 20) => {
                names.resize(names.len() * 4, 0)
            }
            Err(rustix::io::Errno::NOTSUP) | Err(rustix::io::Errno::PERM) => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(path, e.into())),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if name == "security.selinux" {
            continue;
        }
        let mut value = vec![0u8; 4096];
        let len = loop {
            match rustix::fs::lgetxattr(path, name, &mut value[..]) {
                Ok(len) => break len,
                Err(rustix::io::Errno::RANGE) if value.len() < (1 << 20) => {
                    value.resize(value.len() * 4, 0)
                }
                Err(rustix::io::Errno::NODATA) => break usize::MAX,
                Err(e) => return Err(Error::io(path, e.into())),
            }
        };
        if len == usize::MAX {
            continue;
        }
        value.truncate(len);
        out.push((name.to_string(), value));
    }
    out.sort();
    Ok(out)
}
