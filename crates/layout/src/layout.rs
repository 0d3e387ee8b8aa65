//! [`Layout`]: an OCI image layout directory — `oci-layout`, `index.json`, `blobs/`.
//!
//! Reads are verified: every blob read through [`Layout::open_blob`] or
//! [`Layout::read_blob`] is checked for size and digest at EOF. Writes go through a
//! [`WriteLock`] (an advisory `flock` on the layout directory itself, so nothing extra is
//! written into the layout): blobs are written to a temp file beside their final path, hashed
//! while written, fsynced and renamed; `index.json` is the commit point, written last by temp
//! file + rename + directory fsync. A crash leaves at most unreferenced blobs and `.tmp-*` files,
//! which `gc` removes.
//!
//! # File safety
//!
//! This module and its submodules are the only code that touches `blobs/`: blobs from another
//! local layout are linked or copied by [`WriteLock::link_or_copy_from`] (`link.rs`), `gc`
//! deletes through a [`Removal`] (`remove.rs`), which checks each file again before unlinking
//! it, and bundle loads assemble chunked blobs in a [`Partial`] (`partial.rs`). Everything else
//! names blob paths only in error messages. The layout is not trusted:
//! - `blobs/` and `blobs/<alg>/` must be real directories: one that is a symbolic link or not a
//!   directory is [`Error::UnsafePath`], checked by [`Layout::open`] and again by
//!   [`Layout::blobs_dir`] before every read, write and listing ([`Layout::blob_files`], which
//!   `fsck`, `gc` and inventories use). Nothing outside the layout is read, written or deleted
//!   because of what the layout contains.
//! - Blobs, `index.json` and `oci-layout` are opened by [`open_regular`]: `O_NOFOLLOW` (a link is
//!   refused), `O_NONBLOCK` (a FIFO cannot block the open), then the descriptor must be a
//!   regular file. [`Layout::blob_size`] uses `lstat` and refuses anything but a regular file.
//! - Files written in place (bundle partials, [`Partial`] in `partial.rs`) are opened by
//!   `open_store_rw`, which never follows a link and replaces anything that is not a regular
//!   file; temp files are created with `O_EXCL`.
//! - A blob a writer would reuse is checked for size and digest first
//!   ([`WriteLock::existing_blob`]); a corrupt one is rewritten.
//! - New files are created 0666 and directories 0777, less the umask; a replaced `index.json`
//!   keeps the mode of the file it replaces.
//!
//! The checks are made on paths just before use, so a writer racing ocikit inside the layout
//! directory could still swap a directory for a link in between; what they stop is a layout
//! that was crafted or damaged before ocikit ran.
//!
//! # Durability policy
//!
//! With [`Options::durable`] (the default; the CLI's `--no-fsync` turns it off):
//! - a blob is written to `blobs/<alg>/.tmp-*`, fsynced, then renamed to its digest;
//! - [`WriteLock::commit_index`] first fsyncs every `blobs/<alg>/` directory (so every renamed
//!   blob is durable before `index.json` can name it), then writes `.tmp-*` in the root, fsyncs
//!   it, renames it over `index.json` and fsyncs the root directory;
//! - `init` writes `index.json`, then `oci-layout`, each the same way;
//! - gc fsyncs the directories it deleted from ([`Removal::finish`]; a lost deletion only brings
//!   garbage back).
//!
//! Without it nothing is fsynced; renames are still atomic, so a killed process still leaves the
//! old or the new `index.json`, but a power loss may leave an index naming blobs that never
//! reached the disk. Readers take no lock: the rename makes every read see a whole file.
//!
//! Crash tests use the fault points of [`crate::fault`]; `tests/crash.rs` kills writers there
//! and at random moments, `tests/durability.rs` counts the fsyncs under strace.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::OFlags;

use crate::compress::read_full;
use crate::{Algorithm, Digest, Error, Hasher, Index, Raw, Result, INDEX_LIMIT, JSON_LIMIT};

mod link;
mod partial;
mod remove;

pub use link::Copied;
pub use partial::{Partial, WrittenChunk};
pub use remove::Removal;

/// The content of `oci-layout` that ocikit writes.
pub const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Prefix of temp files inside `blobs/<alg>/` and the layout root.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Prefix of the files a bundle load assembles a chunked blob in, inside `blobs/<alg>/`:
/// `.partial-<encoded>` (the bytes) and `.partial-<encoded>.chunks` (the chunks done).
pub const PARTIAL_PREFIX: &str = ".partial-";

/// How a layout is opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// fsync blobs, `index.json` and directories (the default). Off only for throwaway caches.
    pub durable: bool,
    /// How long a writer waits for another writer's lock.
    pub lock_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durable: true,
            lock_timeout: Duration::from_secs(120),
        }
    }
}

/// An OCI image layout on disk.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    opts: Options,
}

impl Layout {
    /// Open an existing layout: `oci-layout` must exist and name version 1.x.
    pub fn open(root: impl AsRef<Path>, opts: Options) -> Result<Layout> {
        let root = root.as_ref().to_path_buf();
        let meta = match fs::metadata(&root) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotALayout {
                    path: root,
                    reason: "no such directory".into(),
                })
            }
            Err(e) => return Err(Error::io(&root, e)),
        };
        if !meta.is_dir() {
            return Err(Error::NotALayout {
                path: root,
                reason: "not a directory".into(),
            });
        }
        let header_path = root.join("oci-layout");
        let bytes = match open_regular(&header_path)? {
            Some(f) => read_capped(f, &header_path, JSON_LIMIT)?,
            None => {
                return Err(Error::NotALayout {
                    path: root,
                    reason: "no `oci-layout` file".into(),
                })
            }
        };
        check_layout_header(&bytes).map_err(|reason| Error::NotALayout {
            path: root.clone(),
            reason,
        })?;
        let layout = Layout { root, opts };
        // Refuse a layout whose blob store leads elsewhere before any verb reads or writes it.
        for alg in Algorithm::ALL {
            layout.blobs_dir(alg.as_str())?;
        }
        Ok(layout)
    }

    /// Create a layout in `root` (created if missing, which must be empty or already a layout).
    /// Returns the layout and whether it was created.
    pub fn init(root: impl AsRef<Path>, opts: Options) -> Result<(Layout, bool)> {
        let root = root.as_ref().to_path_buf();
        if root.join("oci-layout").exists() {
            return Ok((Layout::open(&root, opts)?, false));
        }
        let index = serde_json::to_vec(&Index::empty()).map_err(|e| Error::Json {
            what: "index.json".into(),
            source: e,
        })?;
        match fs::read_dir(&root) {
            Ok(mut entries) => {
                if entries.next().is_some() && !unfinished_init(&root, &index)? {
                    return Err(Error::NotALayout {
                        path: root,
                        reason: "the directory is not empty and has no `oci-layout`".into(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
            }
            Err(e) => return Err(Error::io(&root, e)),
        }
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(|e| Error::io(&blobs, e))?;
        let layout = Layout { root, opts };
        // index.json first, oci-layout last: a crash before the end leaves a directory that is
        // not yet a layout, which `init` can complete.
        layout.write_file_atomic("index.json", &index)?;
        layout.write_file_atomic("oci-layout", OCI_LAYOUT_CONTENT)?;
        Ok((layout, true))
    }

    /// Open a layout, creating it first if `root` does not exist or is empty.
    pub fn open_or_init(root: impl AsRef<Path>, opts: Options) -> Result<(Layout, bool)> {
        Layout::init(root, opts)
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The options it was opened with.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The path of a blob (which may not exist).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(digest.blob_rel_path())
    }

    /// `blobs/<alg>` (`alg` as a digest names it), checked: `Ok(None)` when it (or `blobs`) is
    /// absent, [`Error::UnsafePath`] when either is a symbolic link or not a directory. This is
    /// the one check every read, write, listing and deletion under `blobs/` goes through, so
    /// nothing outside the layout is reached through a link planted in it.
    pub fn blobs_dir(&self, alg: &str) -> Result<Option<PathBuf>> {
        let blobs = self.root.join("blobs");
        if !check_store_dir(&blobs)? {
            return Ok(None);
        }
        let dir = blobs.join(alg);
        if !check_store_dir(&dir)? {
            return Ok(None);
        }
        Ok(Some(dir))
    }

    /// `blobs/<alg>`, created (with the umask's modes) when absent, checked as
    /// [`Layout::blobs_dir`] checks it.
    fn create_blobs_dir(&self, alg: &str) -> Result<PathBuf> {
        let blobs = self.root.join("blobs");
        let dir = blobs.join(alg);
        for d in [&blobs, &dir] {
            if !check_store_dir(d)? {
                match fs::create_dir(d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Error::io(d, e)),
                }
                if !check_store_dir(d)? {
                    return Err(Error::io(d, io::Error::from(io::ErrorKind::NotFound)));
                }
            }
        }
        Ok(dir)
    }

    /// Every file the store holds under `blobs/<alg>/`, sorted by path: blobs (named by a
    /// digest), temp files, bundle partials and anything else. Only regular files are listed;
    /// a `blobs` or `blobs/<alg>` that is a symbolic link is refused ([`Error::UnsafePath`]),
    /// and a regular file directly in `blobs/` is not a blob directory and is skipped.
    pub fn blob_files(&self) -> Result<Vec<BlobFile>> {
        let mut out = Vec::new();
        self.each_blob_file(|f| {
            out.push(f);
            Ok(())
        })?;
        // By the path's bytes: the same order as by its components here (every path is
        // `blobs/<alg>/<name>`), without splitting half a million paths into components.
        out.sort_unstable_by(|a, b| a.path.as_os_str().cmp(b.path.as_os_str()));
        Ok(out)
    }

    /// The files of [`Layout::blob_files`], one at a time in directory order, without holding
    /// the list: gc over 51,000 blobs keeps only what it deletes.
    pub fn each_blob_file(&self, mut f: impl FnMut(BlobFile) -> Result<()>) -> Result<()> {
        self.each_blob_entry(|file, _| f(file))
    }

    /// [`Layout::each_blob_file`] with each file's size, in directory order: what an
    /// inventory of half a million blobs needs. The files are listed [`STAT_BATCH`] at a
    /// time and their sizes read on every core, each from its directory entry (`fstatat`
    /// beside the open directory, not a lookup of the whole path).
    pub fn each_blob_file_sized(
        &self,
        mut f: impl FnMut(BlobFile, u64) -> Result<()>,
    ) -> Result<()> {
        let mut batch: Vec<(BlobFile, fs::DirEntry)> = Vec::with_capacity(STAT_BATCH);
        let mut flush = |batch: &mut Vec<(BlobFile, fs::DirEntry)>| -> Result<()> {
            let sizes = crate::fsck::run_parallel(batch, |(b, e)| {
                Some(
                    e.metadata()
                        .map(|m| m.len())
                        .map_err(|err| Error::io(&b.path, err)),
                )
            });
            for ((b, _), size) in batch.drain(..).zip(sizes) {
                let size =
                    size.unwrap_or_else(|| Err(Error::io(&b.path, io::ErrorKind::Other.into())))?;
                f(b, size)?;
            }
            Ok(())
        };
        self.each_blob_entry(|file, entry| {
            batch.push((file, entry));
            if batch.len() == STAT_BATCH {
                flush(&mut batch)?;
            }
            Ok(())
        })?;
        flush(&mut batch)
    }

    fn each_blob_entry(
        &self,
        mut f: impl FnMut(BlobFile, fs::DirEntry) -> Result<()>,
    ) -> Result<()> {
        let blobs = self.root.join("blobs");
        if !check_store_dir(&blobs)? {
            return Ok(());
        }
        let io_err = |e| Error::io(&blobs, e);
        for alg in fs::read_dir(&blobs).map_err(io_err)? {
            let alg = alg.map_err(io_err)?;
            let dir = alg.path();
            let ty = alg.file_type().map_err(|e| Error::io(&dir, e))?;
            if ty.is_symlink() {
                return Err(unsafe_path(&dir, ty, "a directory"));
            }
            if !ty.is_dir() {
                if Algorithm::ALL.iter().any(|a| alg.file_name() == a.as_str()) {
                    return Err(unsafe_path(&dir, ty, "a directory"));
                }
                continue;
            }
            let alg_name = alg.file_name().to_string_lossy().into_owned();
            let io_err = |e| Error::io(&dir, e);
            for e in fs::read_dir(&dir).map_err(io_err)? {
                let e = e.map_err(io_err)?;
                // The directory entry's own type (no stat): links and other kinds are skipped.
                let ty = e.file_type().map_err(|err| Error::io(e.path(), err))?;
                if !ty.is_file() {
                    continue;
                }
                let name = e.file_name();
                let kind = BlobFileKind::of(&alg_name, &name.to_string_lossy());
                f(
                    BlobFile {
                        path: e.path(),
                        kind,
                    },
                    e,
                )?;
            }
        }
        Ok(())
    }

    /// Temp files of interrupted `index.json` and `oci-layout` writes: regular files named
    /// `.tmp-*` in the layout root, sorted.
    pub fn root_temp_files(&self) -> Result<Vec<PathBuf>> {
        let io_err = |e| Error::io(&self.root, e);
        let mut out = Vec::new();
        for e in fs::read_dir(&self.root).map_err(io_err)? {
            let e = e.map_err(io_err)?;
            if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                && e.file_type().is_ok_and(|t| t.is_file())
            {
                out.push(e.path());
            }
        }
        out.sort();
        Ok(out)
    }

    /// The size of a blob on disk, or `None` when it is absent. Anything but a regular file
    /// at its path (a symbolic link, a FIFO, a directory) is [`Error::UnsafePath`].
    pub fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        if self.blobs_dir(digest.algorithm_str())?.is_none() {
            return Ok(None);
        }
        let path = self.blob_path(digest);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(m) => Err(unsafe_path(&path, m.file_type(), "a regular file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Open a blob for reading; the reader fails at EOF unless the bytes match `digest` (and
    /// `size`, when given). A digest of an algorithm ocikit cannot compute is an error.
    pub fn open_blob(&self, digest: &Digest, size: Option<u64>) -> Result<VerifyingReader<File>> {
        Ok(self.open_blob_len(digest, size)?.0)
    }

    /// [`Layout::open_blob`], with the blob's length on disk.
    fn open_blob_len(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<(VerifyingReader<File>, u64)> {
        let alg = digest
            .algorithm()
            .ok_or_else(|| Error::Unverifiable(digest.clone()))?;
        let (file, found) = self.open_blob_sized(digest, size)?;
        let path = self.blob_path(digest);
        let reader = VerifyingReader::new(file, alg.hasher(), digest.clone(), size, path);
        Ok((reader, found))
    }

    /// Open a blob whose bytes go to a reader that verifies them itself (an HTTP client of
    /// `serve`, which sends the file with `sendfile`): checked as [`Layout::open_blob`] checks
    /// it (a regular file, opened with `O_NOFOLLOW | O_NONBLOCK`, never through a link), its
    /// length taken from the same `fstat` and compared with `size` when given
    /// ([`Error::SizeMismatch`]), but not hashed. Absent: [`Error::MissingBlob`]. Returns the
    /// file (at offset 0) and its length.
    pub fn open_blob_sized(&self, digest: &Digest, size: Option<u64>) -> Result<(File, u64)> {
        let path = self.blob_path(digest);
        let missing = || Error::MissingBlob {
            digest: digest.clone(),
            path: path.clone(),
        };
        if self.blobs_dir(digest.algorithm_str())?.is_none() {
            return Err(missing());
        }
        let Some((file, found)) = open_regular_len(&path)? else {
            return Err(missing());
        };
        if let Some(expected) = size.filter(|&e| e != found) {
            return Err(Error::SizeMismatch {
                digest: digest.clone(),
                expected,
                found,
                path,
            });
        }
        Ok((file, found))
    }

    /// Open a blob's file to read at any offset (a bundle reads a large blob chunk by chunk),
    /// checked as [`Layout::open_blob`] checks it (a regular file, never through a link) but
    /// not verified: the caller hashes what it reads and checks the digest at the end.
    pub fn open_blob_unverified(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        let missing = || Error::MissingBlob {
            digest: digest.clone(),
            path: path.clone(),
        };
        if self.blobs_dir(digest.algorithm_str())?.is_none() {
            return Err(missing());
        }
        open_regular(&path)?.ok_or_else(missing)
    }

    /// Read a whole blob, verified, refusing more than `limit` bytes.
    pub fn read_blob(&self, digest: &Digest, size: Option<u64>, limit: u64) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let (mut reader, len) = self.open_blob_len(digest, size)?;
        if len > limit {
            return Err(Error::TooLarge {
                what: digest.to_string(),
                size: len,
                limit,
            });
        }
        let mut buf = Vec::with_capacity(len as usize);
        reader
            .read_to_end(&mut buf)
            .map_err(|e| unwrap_io(e, &path))?;
        Ok(buf)
    }

    /// Read and parse a JSON blob (at most [`JSON_LIMIT`] bytes), verified.
    pub fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Raw<T>> {
        let bytes = self.read_blob(digest, size, JSON_LIMIT)?;
        Raw::parse_with_digest(bytes, digest.clone(), digest.as_str())
    }

    /// Hash a whole blob, streaming; returns its size. Errors on mismatch or absence.
    pub fn verify_blob(&self, digest: &Digest, size: Option<u64>) -> Result<u64> {
        let path = self.blob_path(digest);
        let mut reader = self.open_blob(digest, size)?;
        let n = crate::layer::copy_large(&mut reader, &mut io::sink())
            .map_err(|e| unwrap_io(e, &path))?;
        Ok(n)
    }

    /// Read `index.json` (written atomically, so never seen half-written). It is capped at
    /// [`INDEX_LIMIT`]; a larger file is refused before it is read.
    pub fn read_index(&self) -> Result<Raw<Index>> {
        Ok(self.read_index_stamped()?.0)
    }

    /// [`Layout::read_index`], with the [`IndexStamp`] of the very file read (from `fstat` on
    /// the descriptor the bytes came from), so a reader that caches what it derived from
    /// `index.json` can tell by [`Layout::index_stamp`] when a writer has replaced it.
    pub fn read_index_stamped(&self) -> Result<(Raw<Index>, IndexStamp)> {
        let path = self.root.join("index.json");
        let Some(file) = open_regular(&path)? else {
            return Err(Error::NotALayout {
                path: self.root.clone(),
                reason: "no `index.json` file".into(),
            });
        };
        let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
        let stamp = IndexStamp::of(&meta);
        let bytes = read_capped(file, &path, INDEX_LIMIT)?;
        let digest = Digest::sha256(&bytes);
        let raw = Raw::parse_limited(bytes, digest, &path.display().to_string(), INDEX_LIMIT)?;
        Ok((raw, stamp))
    }

    /// The [`IndexStamp`] of `index.json` as it is now (one `lstat`, no read), or `None` when
    /// it is absent. Every commit replaces the file by a rename, so a new commit is a new
    /// inode; an edit in place changes its size or modification time.
    pub fn index_stamp(&self) -> Result<Option<IndexStamp>> {
        let path = self.root.join("index.json");
        match fs::symlink_metadata(&path) {
            Ok(m) => Ok(Some(IndexStamp::of(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Take the writer lock, waiting up to the configured timeout for another writer. Once
    /// taken, the locked descriptor must still be the directory at the path: a failed writer
    /// that created the layout may have removed it meanwhile ([`Error::LayoutGone`]).
    pub fn lock(&self) -> Result<WriteLock<'_>> {
        let dir = File::open(&self.root).map_err(|e| Error::io(&self.root, e))?;
        let start = Instant::now();
        loop {
            match rustix::fs::flock(&dir, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {
                    if !same_dir(&dir, &self.root) {
                        return Err(Error::LayoutGone {
                            path: self.root.clone(),
                        });
                    }
                    return Ok(WriteLock {
                        layout: self,
                        _held: crate::cleanup::locked(&dir),
                        _dir: dir,
                    });
                }
                Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {
                    if start.elapsed() >= self.opts.lock_timeout {
                        return Err(Error::Locked {
                            path: self.root.clone(),
                            seconds: self.opts.lock_timeout.as_secs(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(Error::io(&self.root, e.into())),
            }
        }
    }

    /// Write a file in the layout root by temp file + fsync + rename + directory fsync. A new
    /// file gets the umask's mode; a replaced one keeps the mode it had.
    fn write_file_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let dest = self.root.join(name);
        let (mut tmp, _cleanup) = new_temp_in(&self.root)?;
        match fs::symlink_metadata(&dest) {
            Ok(m) if m.is_file() => tmp
                .as_file()
                .set_permissions(Permissions::from_mode(m.permissions().mode() & 0o7777))
                .map_err(|e| Error::io(tmp.path(), e))?,
            _ => {}
        }
        let tmp_path = tmp.path().to_path_buf();
        let failed = |e| Error::Write {
            path: tmp_path.clone(),
            source: e,
        };
        tmp.as_file_mut().write_all(bytes).map_err(failed)?;
        if self.opts.durable {
            tmp.as_file().sync_all().map_err(failed)?;
        }
        crate::fault::point("before-rename");
        tmp.persist(&dest).map_err(|e| Error::io(&dest, e.error))?;
        if self.opts.durable {
            sync_dir(&self.root)?;
        }
        Ok(())
    }
}

/// Is the open directory `dir` still the one at `path` (same device and inode)?
pub(crate) fn same_dir(dir: &File, path: &Path) -> bool {
    match (rustix::fs::fstat(dir), rustix::fs::stat(path)) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

/// Is `root` what an interrupted `init` leaves: nothing but `blobs/sha256/` (empty), an empty
/// `index.json` as init writes it (`empty_index`) and `.tmp-*` files? The temp files are removed
/// so init can complete. Anything else (another tool's unfinished layout, user files) is kept
/// and refused.
fn unfinished_init(root: &Path, empty_index: &[u8]) -> Result<bool> {
    let io_err = |e| Error::io(root, e);
    let mut temps = Vec::new();
    for entry in fs::read_dir(root).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name();
        let path = entry.path();
        let ty = entry.file_type().map_err(io_err)?;
        let ok = if name.to_string_lossy().starts_with(TEMP_PREFIX) {
            temps.push(path);
            ty.is_file()
        } else if name == "index.json" {
            ty.is_file()
                && match open_regular(&path)? {
                    Some(f) => read_capped(f, &path, INDEX_LIMIT)? == empty_index,
                    None => false,
                }
        } else if name == "blobs" {
            ty.is_dir() && {
                let mut inner = fs::read_dir(&path).map_err(|e| Error::io(&path, e))?;
                match inner.next() {
                    None => true,
                    Some(e) => {
                        let e = e.map_err(|e| Error::io(&path, e))?;
                        e.file_name() == "sha256"
                            && inner.next().is_none()
                            && fs::read_dir(e.path())
                                .map_err(|err| Error::io(e.path(), err))?
                                .next()
                                .is_none()
                    }
                }
            }
        } else {
            false
        };
        if !ok {
            return Ok(false);
        }
    }
    for t in temps {
        fs::remove_file(&t).map_err(|e| Error::io(&t, e))?;
    }
    Ok(true)
}

/// Check the bytes of `oci-layout`: a JSON object whose `imageLayoutVersion` is 1.x.
/// Extra fields are allowed.
pub fn check_layout_header(bytes: &[u8]) -> std::result::Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("`oci-layout` does not parse: {e}"))?;
    match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some(ver) if ver == "1.0.0" || ver.starts_with("1.") => Ok(()),
        Some(ver) => Err(format!(
            "`oci-layout` names unsupported imageLayoutVersion `{ver}`"
        )),
        None => Err("`oci-layout` has no imageLayoutVersion string".into()),
    }
}

/// Read a JSON file of the layout itself (`index.json`, `oci-layout`), refusing more than
/// [`JSON_LIMIT`] bytes without reading them: the size is checked first, and the read stops one
/// byte past the limit in case the file grows meanwhile (or is not a regular file).
fn read_capped(file: File, path: &Path, limit: u64) -> Result<Vec<u8>> {
    let too_large = |size| Error::TooLarge {
        what: path.display().to_string(),
        size,
        limit,
    };
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > limit {
        return Err(too_large(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// fsync a file that is already in place (a regular file, not followed through a link).
pub fn sync_file(path: &Path) -> Result<()> {
    let f = open_regular(path)?
        .ok_or_else(|| Error::io(path, io::Error::from(io::ErrorKind::NotFound)))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// Which `index.json` a reader saw: device, inode, size, modification and change times. Two
/// stamps differ when the file was replaced (every commit renames a new file over it) or
/// edited in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl IndexStamp {
    fn of(m: &fs::Metadata) -> IndexStamp {
        use std::os::unix::fs::MetadataExt;
        IndexStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// Files whose sizes [`Layout::each_blob_file_sized`] reads at a time.
const STAT_BATCH: usize = 4096;

/// A file under `blobs/<alg>/`, as [`Layout::blob_files`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobFile {
    /// Its path.
    pub path: PathBuf,
    /// What its name says it is.
    pub kind: BlobFileKind,
}

impl BlobFile {
    /// Its size (one `lstat`: the listing itself reads no metadata, so that gc over 51,000
    /// blobs stats only those it deletes).
    pub fn size(&self) -> Result<u64> {
        fs::symlink_metadata(&self.path)
            .map(|m| m.len())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// What a file under `blobs/<alg>/` is, by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobFileKind {
    /// A blob: `<alg>:<name>` is a valid digest (of any algorithm).
    Blob(Digest),
    /// A temp file of an interrupted blob write (`.tmp-*`).
    Temp,
    /// A chunked blob of an interrupted bundle load (`.partial-*`, `.partial-*.chunks`).
    Partial,
    /// Anything else: not the store's, never deleted.
    Other,
}

impl BlobFileKind {
    /// What the file `name` in `blobs/<alg_name>/` is, by its name.
    fn of(alg_name: &str, name: &str) -> BlobFileKind {
        if name.starts_with(TEMP_PREFIX) {
            BlobFileKind::Temp
        } else if name.starts_with(PARTIAL_PREFIX) {
            BlobFileKind::Partial
        } else {
            match Digest::parse_owned(format!("{alg_name}:{name}")) {
                Ok(d) => BlobFileKind::Blob(d),
                Err(_) => BlobFileKind::Other,
            }
        }
    }
}

/// What a file type is, in words.
fn describe(ty: fs::FileType) -> &'static str {
    if ty.is_symlink() {
        "a symbolic link"
    } else if ty.is_dir() {
        "a directory"
    } else if ty.is_fifo() {
        "a FIFO"
    } else if ty.is_socket() {
        "a socket"
    } else if ty.is_block_device() || ty.is_char_device() {
        "a device"
    } else if ty.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

fn unsafe_path(path: &Path, ty: fs::FileType, wanted: &str) -> Error {
    Error::UnsafePath {
        path: path.to_path_buf(),
        reason: format!("it is {}, not {wanted}", describe(ty)),
    }
}

/// Is `path` a real directory? `Ok(false)` when absent; a symbolic link (even to a directory)
/// or anything else is [`Error::UnsafePath`].
fn check_store_dir(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(m) => Err(unsafe_path(path, m.file_type(), "a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY` as `OpenOptionsExt::custom_flags` takes them.
fn nofollow_flags() -> i32 {
    (OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32
}

fn is_symlink_refusal(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
}

/// Open a file of the layout (a blob, `index.json`, `oci-layout`, a partial) for reading:
/// never through a symbolic link (`O_NOFOLLOW`), never blocking on a FIFO (`O_NONBLOCK`), and
/// only when it is a regular file (checked on the open descriptor). `Ok(None)` when absent;
/// anything else at the path is [`Error::UnsafePath`].
pub fn open_regular(path: &Path) -> Result<Option<File>> {
    Ok(open_regular_len(path)?.map(|(f, _)| f))
}

/// [`open_regular`], with the file's length (from the same `fstat`).
fn open_regular_len(path: &Path) -> Result<Option<(File, u64)>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(nofollow_flags())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if is_symlink_refusal(&e) => {
            return Err(Error::UnsafePath {
                path: path.to_path_buf(),
                reason: "it is a symbolic link, not a regular file".into(),
            })
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    let len = check_regular(&file, path)?;
    Ok(Some((file, len)))
}

/// Fail unless the open `file` is a regular file; then clear `O_NONBLOCK` (the only status flag
/// the store's opens set). Returns its length.
fn check_regular(file: &File, path: &Path) -> Result<u64> {
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    let ty = meta.file_type();
    if !ty.is_file() {
        return Err(unsafe_path(path, ty, "a regular file"));
    }
    rustix::fs::fcntl_setfl(file, OFlags::empty()).map_err(|e| Error::io(path, e.into()))?;
    Ok(meta.len())
}

/// Open (creating it when absent) a file the store writes in place, such as a bundle partial,
/// for reading and writing without truncating it: never through a symbolic link. Whatever
/// else sits at the path (a link, a FIFO, a leftover of another kind) is removed and a new
/// empty file created exclusively in its place; the `bool` says that happened, so the caller
/// forgets what it knew about the old one.
pub(crate) fn open_store_rw(path: &Path) -> Result<(File, bool)> {
    let open = |create_new: bool| {
        let mut o = OpenOptions::new();
        o.read(true).write(true).custom_flags(nofollow_flags());
        if create_new {
            o.create_new(true);
        } else {
            o.create(true);
        }
        o.mode(0o666).open(path)
    };
    match open(false) {
        Ok(f) => match check_regular(&f, path) {
            Ok(_) => return Ok((f, false)),
            Err(Error::UnsafePath { .. }) => {}
            Err(e) => return Err(e),
        },
        Err(e) if is_symlink_refusal(&e) => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    // Not a regular file: remove the entry itself (never what a link points to).
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return Err(unsafe_path(path, m.file_type(), "a regular file")),
        Ok(_) => fs::remove_file(path).map_err(|e| Error::io(path, e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    let f = open(true).map_err(|e| Error::io(path, e))?;
    check_regular(&f, path)?;
    Ok((f, true))
}

/// A temp file in `dir` for something that is renamed into place: created exclusively, with
/// the mode a new file gets (0666 less the umask), not tempfile's private 0600. It is removed
/// on SIGINT or SIGTERM while the returned guard lives ([`crate::cleanup`]).
pub fn new_temp_in(dir: &Path) -> Result<(tempfile::NamedTempFile, crate::cleanup::Registered)> {
    let tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(|e| Error::Write {
            path: dir.to_path_buf(),
            source: e,
        })?;
    let guard = crate::cleanup::temp_file(tmp.path());
    Ok((tmp, guard))
}

/// fsync a directory, so renames in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Turn an I/O error from a [`VerifyingReader`] back into the library error it carries.
pub fn unwrap_io(e: io::Error, path: &Path) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        if let Some(inner) = e.into_inner() {
            if let Ok(err) = inner.downcast::<Error>() {
                return *err;
            }
        }
        // Unreachable in practice: the check above saw an Error inside.
        return Error::io(path, io::Error::other("verification failed"));
    }
    Error::io(path, e)
}

/// The writer lock on a layout. Blob and `index.json` writes go through it; it is released
/// when dropped (and by the kernel if the process dies).
#[derive(Debug)]
pub struct WriteLock<'a> {
    layout: &'a Layout,
    /// Tells a signal's cleanup that this process holds the lock (a new directory it holds
    /// may be removed).
    _held: Option<crate::cleanup::Registered>,
    _dir: File,
}

impl<'a> WriteLock<'a> {
    /// The locked layout.
    pub fn layout(&self) -> &'a Layout {
        self.layout
    }

    /// A writer for a new sha256 blob.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        self.blob_writer_for(Algorithm::Sha256)
    }

    /// A writer for a new blob hashed with `alg`.
    pub fn blob_writer_for(&self, alg: Algorithm) -> Result<BlobWriter> {
        let dir = self.layout.create_blobs_dir(alg.as_str())?;
        let (file, cleanup) = new_temp_in(&dir)?;
        Ok(BlobWriter {
            file,
            _cleanup: cleanup,
            hasher: alg.hasher(),
            size: 0,
            dir,
            durable: self.layout.opts.durable,
            early: None,
        })
    }

    /// Whether the blob is already in the layout, intact: `size` bytes that hash to `digest`
    /// (a digest ocikit cannot compute is checked by size only). When it is and writes are
    /// durable, it is fsynced: the index this writer commits will rely on it, and an earlier
    /// `--no-fsync` run may have left it in the page cache only.
    pub fn existing_blob(&self, digest: &Digest, size: u64) -> Result<Existing> {
        match self.layout.blob_size(digest)? {
            None => return Ok(Existing::Absent),
            Some(s) if s != size => return Ok(Existing::Corrupt),
            Some(_) => {}
        }
        let path = self.layout.blob_path(digest);
        let file = match digest.algorithm() {
            None => open_regular(&path)?,
            Some(_) => {
                let mut reader = match self.layout.open_blob(digest, Some(size)) {
                    Ok(r) => r,
                    Err(Error::SizeMismatch { .. }) => return Ok(Existing::Corrupt),
                    Err(Error::MissingBlob { .. }) => return Ok(Existing::Absent),
                    Err(e) => return Err(e),
                };
                match crate::layer::copy_large(&mut reader, &mut io::sink()) {
                    Ok(_) => {}
                    Err(e) => match unwrap_io(e, &path) {
                        Error::SizeMismatch { .. } | Error::DigestMismatch { .. } => {
                            return Ok(Existing::Corrupt)
                        }
                        e => return Err(e),
                    },
                }
                Some(reader.into_inner())
            }
        };
        let Some(file) = file else {
            return Ok(Existing::Absent);
        };
        if self.layout.opts.durable {
            file.sync_all().map_err(|e| Error::io(&path, e))?;
        }
        Ok(Existing::Intact)
    }

    /// Whether the blob is already in the layout, intact ([`WriteLock::existing_blob`]). When
    /// it is not, the caller writes it; a corrupt file in its place is replaced by the rename.
    pub fn reuse_blob(&self, digest: &Digest, size: u64) -> Result<bool> {
        Ok(self.existing_blob(digest, size)? == Existing::Intact)
    }

    /// Write a small blob from memory; an existing blob is kept.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<(Digest, u64)> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes).map_err(|e| Error::io(&w.dir, e))?;
        w.finish()
    }

    /// Commit `index.json`: make the blob directories durable, then write the index by
    /// temp file + rename + directory fsync. This is the commit point of every mutation.
    pub fn commit_index(&self, index: &Index) -> Result<()> {
        let bytes = crate::json::to_vec(index).map_err(|e| Error::Json {
            what: "index.json".into(),
            source: e,
        })?;
        self.commit_index_bytes(&bytes)
    }

    /// Commit `index.json` from exact bytes.
    pub fn commit_index_bytes(&self, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 > INDEX_LIMIT {
            // Never write an index.json that no verb (`untag` included) could read back.
            return Err(Error::TooLarge {
                what: self.layout.root.join("index.json").display().to_string(),
                size: bytes.len() as u64,
                limit: INDEX_LIMIT,
            });
        }
        if self.layout.opts.durable {
            let blobs = self.layout.root.join("blobs");
            if check_store_dir(&blobs)? {
                for entry in fs::read_dir(&blobs)
                    .map_err(|e| Error::io(&blobs, e))?
                    .flatten()
                {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        sync_dir(&entry.path())?;
                    }
                }
            }
        }
        crate::fault::point("before-index-commit");
        self.layout.write_file_atomic("index.json", bytes)
    }
}

/// What [`WriteLock::existing_blob`] found at a blob's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Nothing.
    Absent,
    /// The blob, of the right size and digest.
    Intact,
    /// A file of the wrong size or digest: it is to be replaced.
    Corrupt,
}

/// A durable blob is flushed to disk by a helper thread every this many bytes while it is
/// written, so that the fsync at the end waits for the tail only instead of the whole blob:
/// the disk writes overlap with hashing and compressing.
const EARLY_SYNC_STEP: u64 = 8 << 20;

/// The helper thread that flushes a large blob to disk while it is being written.
#[derive(Debug)]
struct EarlySync {
    kick: Option<std::sync::mpsc::SyncSender<()>>,
    handle: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl EarlySync {
    fn start(file: &File) -> io::Result<EarlySync> {
        let f = file.try_clone()?;
        let (kick, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let handle = std::thread::Builder::new()
            .name("blob-sync".into())
            .spawn(move || {
                for () in rx {
                    f.sync_data()?;
                }
                Ok(())
            })?;
        Ok(EarlySync {
            kick: Some(kick),
            handle: Some(handle),
        })
    }

    /// Ask for a flush of what is written so far; skipped while one is still running.
    fn kick(&self) {
        if let Some(k) = &self.kick {
            let _ = k.try_send(());
        }
    }

    /// Wait for the helper; its error, if a flush failed.
    fn stop(&mut self) -> io::Result<()> {
        self.kick = None;
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("the blob sync thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for EarlySync {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A file written durably with its disk writes overlapped: every 8 MiB written, a
/// helper thread flushes what is written so far, and [`SyncingFile::finish`] fsyncs the rest.
/// For large outputs outside a layout (archives, bundle parts) that are renamed into place.
#[derive(Debug)]
pub struct SyncingFile<'a> {
    file: &'a mut File,
    written: u64,
    early: Option<EarlySync>,
}

impl<'a> SyncingFile<'a> {
    /// Write through to `file`.
    pub fn new(file: &'a mut File) -> SyncingFile<'a> {
        SyncingFile {
            file,
            written: 0,
            early: None,
        }
    }

    /// Wait for the helper and fsync the file.
    pub fn finish(mut self) -> io::Result<()> {
        if let Some(mut e) = self.early.take() {
            e.stop()?;
        }
        self.file.sync_all()
    }
}

impl Write for SyncingFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        let before = self.written;
        self.written += n as u64;
        if before / EARLY_SYNC_STEP != self.written / EARLY_SYNC_STEP {
            if self.early.is_none() {
                self.early = Some(EarlySync::start(self.file)?);
            }
            if let Some(e) = &self.early {
                e.kick();
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A file written at given positions by several threads at once (a bundle part whose blobs are
/// copied in parallel), flushed to disk while it is written as [`SyncingFile`] is: every 8 MiB
/// written in all, a helper thread flushes what is written so far, and
/// [`PositionedFile::finish`] waits for it and fsyncs the rest.
#[derive(Debug)]
pub struct PositionedFile<'a> {
    file: &'a File,
    written: std::sync::atomic::AtomicU64,
    early: Option<EarlySync>,
}

impl<'a> PositionedFile<'a> {
    /// Write into `file` by position; `durable`: flush while written.
    pub fn new(file: &'a File, durable: bool) -> io::Result<PositionedFile<'a>> {
        Ok(PositionedFile {
            file,
            written: std::sync::atomic::AtomicU64::new(0),
            early: if durable {
                Some(EarlySync::start(file)?)
            } else {
                None
            },
        })
    }

    /// Write all of `buf` at `pos`.
    pub fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        use std::sync::atomic::Ordering;
        self.file.write_all_at(buf, pos)?;
        let n = buf.len() as u64;
        let before = self.written.fetch_add(n, Ordering::Relaxed);
        if before / EARLY_SYNC_STEP != (before + n) / EARLY_SYNC_STEP {
            if let Some(e) = &self.early {
                e.kick();
            }
        }
        Ok(())
    }

    /// A writer of consecutive bytes from `pos` on.
    pub fn writer_at(&self, pos: u64) -> PositionedWriter<'_, 'a> {
        PositionedWriter { file: self, pos }
    }

    /// Wait for the helper; then, when durable, fsync the file.
    pub fn finish(mut self) -> io::Result<()> {
        match self.early.take() {
            Some(mut e) => {
                e.stop()?;
                self.file.sync_all()
            }
            None => Ok(()),
        }
    }
}

/// Consecutive writes into a [`PositionedFile`] (`Send`: one per thread).
#[derive(Debug)]
pub struct PositionedWriter<'f, 'a> {
    file: &'f PositionedFile<'a>,
    pos: u64,
}

impl Write for PositionedWriter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(buf, self.pos)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A new blob being written: a temp file in `blobs/<alg>/`, hashed and counted as written.
#[derive(Debug)]
pub struct BlobWriter {
    file: tempfile::NamedTempFile,
    /// Removes the temp file on a signal, until it is renamed or dropped.
    _cleanup: crate::cleanup::Registered,
    hasher: Hasher,
    size: u64,
    dir: PathBuf,
    durable: bool,
    early: Option<EarlySync>,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A failure names this file (a full disk is not the source's fault).
        let n = self
            .file
            .as_file_mut()
            .write(buf)
            .map_err(|e| Error::write_failed(self.file.path(), e))?;
        self.hasher.update(&buf[..n]);
        let before = self.size;
        self.size += n as u64;
        if self.durable && before / EARLY_SYNC_STEP != self.size / EARLY_SYNC_STEP {
            if self.early.is_none() {
                self.early = Some(
                    EarlySync::start(self.file.as_file())
                        .map_err(|e| Error::write_failed(self.file.path(), e))?,
                );
            }
            if let Some(e) = &self.early {
                e.kick();
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// fsync, then rename into place; an existing blob of the same digest is kept and the
    /// temp file dropped. Returns the digest and size of what was written.
    pub fn finish(self) -> Result<(Digest, u64)> {
        let BlobWriter {
            mut file,
            hasher,
            size,
            dir,
            durable,
            early,
            _cleanup,
        } = self;
        let digest = hasher.finish();
        let tmp_path = file.path().to_path_buf();
        let failed = |e| Error::Write {
            path: tmp_path.clone(),
            source: e,
        };
        file.flush().map_err(failed)?;
        if let Some(mut e) = early {
            e.stop().map_err(failed)?;
        }
        let dest = dir.join(digest.encoded());
        if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == size)
            && intact(&dest, &digest, size, durable)?
        {
            // Kept, and about to be relied on: `intact` fsynced it when durable, as an earlier
            // `--no-fsync` run may have left it in the page cache only.
            return Ok((digest, size));
        }
        if durable {
            file.as_file().sync_all().map_err(|e| Error::Write {
                path: file.path().to_path_buf(),
                source: e,
            })?;
        }
        file.persist(&dest).map_err(|e| Error::io(&dest, e.error))?;
        Ok((digest, size))
    }

    /// Like [`BlobWriter::finish`], but the bytes must hash to `expected` (and be `size` long,
    /// when given); otherwise nothing is renamed into place.
    pub fn finish_expect(self, expected: &Digest, size: Option<u64>) -> Result<u64> {
        let found_size = self.size;
        let path = self.dir.join(expected.encoded());
        if let Some(s) = size {
            if s != found_size {
                return Err(Error::SizeMismatch {
                    digest: expected.clone(),
                    expected: s,
                    found: found_size,
                    path,
                });
            }
        }
        let digest = self.hasher.clone().finish();
        if &digest != expected {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                found: digest,
                path,
            });
        }
        self.finish().map(|(_, s)| s)
    }
}

/// Does the regular file at `path` hold exactly the blob `digest` of `size` bytes? fsynced
/// when it does and `durable`. Anything else there is not intact (and is replaced by the
/// caller's rename).
fn intact(path: &Path, digest: &Digest, size: u64, durable: bool) -> Result<bool> {
    let Some(alg) = digest.algorithm() else {
        return Ok(false);
    };
    let file = match open_regular(path) {
        Ok(Some(f)) => f,
        Ok(None) | Err(Error::UnsafePath { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut reader = VerifyingReader::new(
        file,
        alg.hasher(),
        digest.clone(),
        Some(size),
        path.to_path_buf(),
    );
    if let Err(e) = crate::layer::copy_large(&mut reader, &mut io::sink()) {
        return match unwrap_io(e, path) {
            Error::SizeMismatch { .. } | Error::DigestMismatch { .. } => Ok(false),
            e => Err(e),
        };
    }
    if durable {
        reader
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(path, e))?;
    }
    Ok(true)
}

/// A reader that hashes and counts while reading and fails at EOF (or as soon as it reads past
/// the expected size) unless the content matches.
#[derive(Debug)]
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Digest,
    size: Option<u64>,
    count: u64,
    path: PathBuf,
}

impl<R: Read> VerifyingReader<R> {
    /// Wrap `inner`, expecting `digest` and, when given, `size`.
    pub fn new(
        inner: R,
        hasher: Hasher,
        expected: Digest,
        size: Option<u64>,
        path: PathBuf,
    ) -> Self {
        VerifyingReader {
            inner,
            hasher: Some(hasher),
            expected,
            size,
            count: 0,
            path,
        }
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The wrapped reader, unwrapped.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn fail(&self, e: Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if let Some(s) = self.size {
            if self.count > s {
                return Err(self.fail(Error::SizeMismatch {
                    digest: self.expected.clone(),
                    expected: s,
                    found: self.count,
                    path: self.path.clone(),
                }));
            }
        }
        match (&mut self.hasher, n) {
            (Some(h), n) if n > 0 => h.update(&buf[..n]),
            (Some(_), _) => {
                if let Some(s) = self.size {
                    if self.count != s {
                        return Err(self.fail(Error::SizeMismatch {
                            digest: self.expected.clone(),
                            expected: s,
                            found: self.count,
                            path: self.path.clone(),
                        }));
                    }
                }
                let found = self.hasher.take().map(Hasher::finish);
                if let Some(found) = found {
                    if found != self.expected {
                        return Err(self.fail(Error::DigestMismatch {
                            expected: self.expected.clone(),
                            found,
                            path: self.path.clone(),
                        }));
                    }
                }
            }
            (None, _) => {}
        }
        Ok(n)
    }
}

/// A reader whose first bytes were read ahead by [`peek`].
pub type Peeked<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// Read the first bytes of a reader for sniffing, returning them and a reader that yields the
/// whole stream again.
pub fn peek<R: Read>(mut r: R, len: usize) -> io::Result<(Vec<u8>, Peeked<R>)> {
    let mut head = vec![0u8; len];
    let n = read_full(&mut r, &mut head)?;
    head.truncate(n);
    Ok((head.clone(), io::Cursor::new(head).chain(r)))
}

/// A fresh layout in a temp dir, without fsync: for unit tests.
#[cfg(test)]
pub(crate) fn scratch() -> (tempfile::TempDir, Layout) {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = Options {
        durable: false,
        ..Options::default()
    };
    let (l, _) = Layout::init(dir.path().join("l"), opts).expect("init");
    (dir, l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_layout() -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (l, created) = Layout::init(dir.path().join("l"), Options::default()).expect("init");
        assert!(created);
        (dir, l)
    }

    #[test]
    fn write_reopen_read_verified() {
        let (_d, l) = tmp_layout();
        let lock = l.lock().expect("lock");
        let (digest, size) = lock.write_blob(b"hello").expect("write");
        assert_eq!(
            digest.as_str(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(size, 5);
        drop(lock);
        let l2 = Layout::open(l.root(), Options::default()).expect("open");
        assert_eq!(l2.read_blob(&digest, Some(5), 100).expect("read"), b"hello");
        // wrong declared size
        assert!(matches!(
            l2.read_blob(&digest, Some(6), 100),
            Err(Error::SizeMismatch { .. })
        ));
        // flip a byte
        fs::write(l2.blob_path(&digest), b"hellO").expect("corrupt");
        match l2.read_blob(&digest, Some(5), 100) {
            Err(Error::DigestMismatch {
                expected, found, ..
            }) => {
                assert_eq!(expected, digest);
                assert_eq!(found, Digest::sha256(b"hellO"));
            }
            other => panic!("{other:?}"),
        }
        // missing
        fs::remove_file(l2.blob_path(&digest)).expect("rm");
        assert!(matches!(
            l2.read_blob(&digest, None, 100),
            Err(Error::MissingBlob { .. })
        ));
    }

    /// Blobs and files past the early-sync step go through the helper thread and come out
    /// whole.
    #[test]
    fn large_durable_writes_flush_early_and_stay_whole() {
        let (_d, l) = tmp_layout();
        let lock = l.lock().expect("lock");
        let data: Vec<u8> = (0..(2 * EARLY_SYNC_STEP + 12_345) as usize)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut w = lock.blob_writer().expect("writer");
        for piece in data.chunks(1 << 20) {
            w.write_all(piece).expect("write");
        }
        assert!(w.early.is_some(), "the helper started");
        let (digest, size) = w.finish().expect("finish");
        assert_eq!(digest, Digest::sha256(&data));
        assert_eq!(size, data.len() as u64);
        assert_eq!(
            l.read_blob(&digest, Some(size), u64::MAX).expect("read"),
            data
        );

        let path = l.root().join("out");
        let mut f = File::create(&path).expect("create");
        let mut s = SyncingFile::new(&mut f);
        for piece in data.chunks(3 << 20) {
            s.write_all(piece).expect("write");
        }
        s.finish().expect("finish");
        assert_eq!(fs::read(&path).expect("read"), data);
    }

    #[test]
    fn existing_blob_is_kept_and_no_temp_left() {
        let (_d, l) = tmp_layout();
        let lock = l.lock().expect("lock");
        let (d1, _) = lock.write_blob(b"x").expect("write");
        let (d2, _) = lock.write_blob(b"x").expect("write");
        assert_eq!(d1, d2);
        let names: Vec<_> = fs::read_dir(l.root().join("blobs/sha256"))
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn init_refuses_non_empty_dir_and_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("junk"), b"x").expect("write");
        assert!(matches!(
            Layout::init(dir.path(), Options::default()),
            Err(Error::NotALayout { .. })
        ));
        let (_l, created) = Layout::init(dir.path().join("new"), Options::default()).expect("init");
        assert!(created);
        let (_l, created) =
            Layout::init(dir.path().join("new"), Options::default()).expect("init again");
        assert!(!created);
        assert_eq!(
            fs::read(dir.path().join("new/oci-layout")).expect("read"),
            OCI_LAYOUT_CONTENT
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("new/index.json")).expect("read"),
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#
        );
    }

    fn make_fifo(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mkfifo");
    }

    #[test]
    fn open_regular_refuses_links_fifos_and_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file");
        fs::write(&file, b"x").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        let fifo = dir.path().join("fifo");
        make_fifo(&fifo);
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).expect("mkdir");

        let mut f = open_regular(&file).expect("open").expect("present");
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).expect("read");
        assert_eq!(buf, b"x");
        assert!(open_regular(&dir.path().join("absent"))
            .expect("absent is fine")
            .is_none());
        for (path, what) in [
            (&link, "a symbolic link"),
            (&fifo, "a FIFO"),
            (&sub, "a directory"),
        ] {
            match open_regular(path) {
                Err(e @ Error::UnsafePath { .. }) => assert_eq!(
                    e.to_string(),
                    format!(
                        "refusing `{}`: it is {what}, not a regular file",
                        path.display()
                    )
                ),
                other => panic!("{}: {other:?}", path.display()),
            }
        }
    }

    #[test]
    fn a_linked_blobs_dir_is_refused_on_open_and_listing() {
        let (d, l) = tmp_layout();
        let outside = d.path().join("outside");
        fs::rename(l.root().join("blobs"), &outside).expect("move");
        std::os::unix::fs::symlink(&outside, l.root().join("blobs")).expect("symlink");
        let want = format!(
            "refusing `{}`: it is a symbolic link, not a directory",
            l.root().join("blobs").display()
        );
        let err = Layout::open(l.root(), Options::default()).expect_err("refused");
        assert_eq!(err.to_string(), want);
        assert_eq!(l.blob_files().expect_err("refused").to_string(), want);
        assert_eq!(
            l.blob_size(&Digest::sha256(b"x"))
                .expect_err("refused")
                .to_string(),
            want
        );
        let lock = l.lock().expect("lock");
        assert_eq!(
            lock.write_blob(b"x").expect_err("refused").to_string(),
            want
        );
        assert_eq!(
            fs::read_dir(&outside).expect("ls").count(),
            1,
            "nothing written outside"
        );
    }

    #[test]
    fn a_corrupt_blob_is_not_reused_and_is_rewritten() {
        let (_d, l) = tmp_layout();
        let lock = l.lock().expect("lock");
        let (digest, size) = lock.write_blob(b"hello").expect("write");
        assert_eq!(
            lock.existing_blob(&digest, size).expect("check"),
            Existing::Intact
        );
        fs::write(l.blob_path(&digest), b"hellO").expect("corrupt");
        assert_eq!(
            lock.existing_blob(&digest, size).expect("check"),
            Existing::Corrupt
        );
        assert!(!lock.reuse_blob(&digest, size).expect("check"));
        assert_eq!(
            lock.existing_blob(&digest, 4).expect("check"),
            Existing::Corrupt
        );
        assert_eq!(
            lock.write_blob(b"hello").expect("rewrite"),
            (digest.clone(), 5)
        );
        assert_eq!(fs::read(l.blob_path(&digest)).expect("read"), b"hello");
        fs::remove_file(l.blob_path(&digest)).expect("rm");
        assert_eq!(
            lock.existing_blob(&digest, size).expect("check"),
            Existing::Absent
        );
    }

    #[test]
    fn a_replaced_index_keeps_its_mode_and_new_blobs_follow_the_umask() {
        let (_d, l) = tmp_layout();
        let index = l.root().join("index.json");
        fs::set_permissions(&index, Permissions::from_mode(0o640)).expect("chmod");
        let lock = l.lock().expect("lock");
        lock.commit_index(&Index::empty()).expect("commit");
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&index), 0o640);
        // Not tempfile's 0600: some of 0666 survives any usual umask (022, 002, 027, 077).
        let (digest, _) = lock.write_blob(b"mode").expect("write");
        let m = mode(&l.blob_path(&digest));
        assert_eq!(m & 0o600, 0o600, "{m:o}");
        assert_eq!(m & 0o111, 0, "{m:o}");
    }

    #[test]
    fn a_planted_partial_link_is_replaced_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").expect("write");
        let partial = dir.path().join(".partial-x");
        std::os::unix::fs::symlink(&victim, &partial).expect("symlink");
        let (mut f, replaced) = open_store_rw(&partial).expect("open");
        assert!(replaced);
        f.write_all(b"data").expect("write");
        assert_eq!(fs::read(&victim).expect("read"), b"precious");
        assert_eq!(fs::read(&partial).expect("read"), b"data");
        assert!(fs::symlink_metadata(&partial).expect("stat").is_file());
        let (_, replaced) = open_store_rw(&partial).expect("reopen");
        assert!(!replaced, "a regular file is kept");
        fs::remove_file(&partial).expect("rm");
        make_fifo(&partial);
        let (_, replaced) = open_store_rw(&partial).expect("open");
        assert!(replaced);
        assert!(fs::symlink_metadata(&partial).expect("stat").is_file());
    }

    #[test]
    fn an_index_json_over_the_cap_is_never_committed() {
        let (_d, l) = tmp_layout();
        let lock = l.lock().expect("lock");
        let before = fs::read(l.root().join("index.json")).expect("read");
        let huge = vec![b' '; INDEX_LIMIT as usize + 1];
        let e = lock.commit_index_bytes(&huge).expect_err("over the cap");
        assert_eq!(
            e.to_string(),
            format!(
                "`{}` is 67108865 bytes, larger than the 67108864-byte limit for JSON documents",
                l.root().join("index.json").display()
            )
        );
        assert_eq!(fs::read(l.root().join("index.json")).expect("read"), before);
    }

    #[test]
    fn header_checks() {
        assert!(check_layout_header(br#"{"imageLayoutVersion": "1.0.0"}"#).is_ok());
        assert!(check_layout_header(br#"{"imageLayoutVersion":"1.0.0","x":1}"#).is_ok());
        assert!(check_layout_header(br#"{"imageLayoutVersion":"lorem ipsum"}"#).is_err());
        assert!(check_layout_header(br#"{"imageLayoutVersion":1}"#).is_err());
        assert!(check_layout_header(b"nope").is_err());
    }
}
