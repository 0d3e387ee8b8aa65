//! What a command writes outside a layout, whole or not at all.
//!
//! - [`AtomicFile`] / [`write_atomically`]: an output file (archive, bundle part, inventory) is
//!   written to a temp file beside it (created exclusively, with the mode a new file gets: 0666
//!   less the umask), flushed to disk while it is written and fsynced at the end when durable,
//!   then renamed over the target (and the directory fsynced). Dropped before
//!   [`AtomicFile::commit`], the temp file is removed: a failure leaves nothing. A target that
//!   is not a regular file (`/dev/null`, a FIFO, a terminal) is written into as a stream,
//!   never replaced; a symbolic link to a regular file keeps its link, and its target is the
//!   file replaced.
//! - [`refuse_inside`]: an output path inside the layout a command reads is refused (an
//!   `export L -o L/index.json` would destroy its own source).
//! - [`NewDir`]: a destination directory that did not exist before the command is removed
//!   again when the command fails, so a failed copy, import or bundle load leaves no
//!   destination it created.

use std::fs::{self, File, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::{sync_dir, Error, PositionedFile, Result, SyncingFile};

/// Prefix of the temp files beside an output file.
pub const OUTPUT_TEMP_PREFIX: &str = ".ocikit-tmp-";

/// An output file being written; it replaces its target only on [`AtomicFile::commit`].
#[derive(Debug)]
pub struct AtomicFile {
    tmp: Target,
    /// Removes the temp file on a signal ([`crate::cleanup`]), until it is renamed or dropped.
    _cleanup: Option<crate::cleanup::Registered>,
    dest: PathBuf,
    durable: bool,
    written: u64,
    /// fsynced since the last write (by [`OutputWriter::finish`]).
    synced: bool,
}

/// The directory a path's file is in (`.` for a bare name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Where an output's bytes go.
#[derive(Debug)]
enum Target {
    /// A temp file beside the target, renamed over it at the end.
    Temp(tempfile::NamedTempFile),
    /// The target itself, which is not a regular file: written as a stream.
    Stream(File),
}

impl Target {
    fn file_mut(&mut self) -> &mut File {
        match self {
            Target::Temp(t) => t.as_file_mut(),
            Target::Stream(f) => f,
        }
    }
}

impl AtomicFile {
    /// Start writing `dest`: a new temp file in its directory (in the directory of the file a
    /// symbolic link names, for a link), or `dest` itself when it is not a regular file. With
    /// `durable`, what goes to a temp file is flushed to disk as it goes and fsynced before
    /// the rename.
    pub fn create(dest: impl AsRef<Path>, durable: bool) -> Result<AtomicFile> {
        let mut dest = dest.as_ref().to_path_buf();
        match fs::metadata(&dest) {
            Ok(m) if !m.is_file() && !m.is_dir() => {
                let file = fs::OpenOptions::new()
                    .write(true)
                    .open(&dest)
                    .map_err(|e| Error::io(&dest, e))?;
                return Ok(AtomicFile {
                    tmp: Target::Stream(file),
                    _cleanup: None,
                    dest,
                    durable: false,
                    written: 0,
                    synced: false,
                });
            }
            Ok(m) if m.is_file() => {
                let linked = fs::symlink_metadata(&dest)
                    .map_err(|e| Error::io(&dest, e))?
                    .file_type()
                    .is_symlink();
                if linked {
                    dest = fs::canonicalize(&dest).map_err(|e| Error::io(&dest, e))?;
                }
            }
            _ => {}
        }
        let dir = parent_of(&dest);
        let tmp = tempfile::Builder::new()
            .prefix(OUTPUT_TEMP_PREFIX)
            // 0666 less the umask, as any new file: not tempfile's private 0600.
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        let cleanup = crate::cleanup::temp_file(tmp.path());
        Ok(AtomicFile {
            _cleanup: Some(cleanup),
            tmp: Target::Temp(tmp),
            dest,
            durable,
            written: 0,
            synced: false,
        })
    }

    /// The file it will become.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Written to a temp file (a regular file), not as a stream: [`AtomicFile::positioned`]
    /// works.
    pub fn is_temp(&self) -> bool {
        matches!(self.tmp, Target::Temp(_))
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.written
    }

    /// Nothing written yet.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// A writer for the content, through a 1 MiB buffer (flushed to disk while it is written
    /// when durable, so the fsync at [`AtomicFile::commit`] waits for the tail only). Call
    /// [`OutputWriter::finish`] when done.
    pub fn writer(&mut self) -> OutputWriter<'_> {
        let AtomicFile {
            tmp,
            dest,
            durable,
            written,
            synced,
            ..
        } = self;
        *synced = false;
        let file: &mut File = tmp.file_mut();
        let sink = if *durable {
            Sink::Syncing(SyncingFile::new(file))
        } else {
            Sink::Plain(file)
        };
        OutputWriter {
            inner: BufWriter::with_capacity(1 << 20, sink),
            count: 0,
            written,
            synced,
            dest,
        }
    }

    /// For content written partly in order and partly at positions by other threads (a bundle
    /// part whose blobs are copied in parallel): `None` when the target is written as a stream
    /// (not a regular file), where only [`AtomicFile::writer`] works. Call
    /// [`PositionedOutput::finish`] when done.
    pub fn positioned(&mut self) -> Result<Option<PositionedOutput<'_>>> {
        let AtomicFile {
            tmp,
            dest,
            durable,
            written,
            synced,
            ..
        } = self;
        let Target::Temp(t) = tmp else {
            return Ok(None);
        };
        *synced = false;
        let file: &File = t.as_file();
        let positioned = PositionedFile::new(file, *durable).map_err(|e| Error::Write {
            path: dest.clone(),
            source: e,
        })?;
        Ok(Some(PositionedOutput {
            file: positioned,
            seq: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            len: 0,
            written,
            synced,
            durable: *durable,
            dest,
        }))
    }

    /// Make the file its target: fsync (when durable), rename over the target, fsync the
    /// directory (when durable).
    pub fn commit(self) -> Result<PathBuf> {
        let AtomicFile {
            tmp,
            dest,
            durable,
            synced,
            _cleanup,
            ..
        } = self;
        let tmp = match tmp {
            Target::Stream(_) => return Ok(dest),
            Target::Temp(t) => t,
        };
        if durable && !synced {
            tmp.as_file().sync_all().map_err(|e| Error::Write {
                path: dest.clone(),
                source: e,
            })?;
        }
        tmp.persist(&dest).map_err(|e| Error::io(&dest, e.error))?;
        if durable {
            sync_dir(parent_of(&dest))?;
        }
        Ok(dest)
    }
}

/// Where an [`OutputWriter`]'s buffer goes.
enum Sink<'a> {
    Syncing(SyncingFile<'a>),
    Plain(&'a mut File),
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Syncing(s) => s.write(buf),
            Sink::Plain(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Syncing(s) => s.flush(),
            Sink::Plain(f) => f.flush(),
        }
    }
}

/// Writes the content of an [`AtomicFile`]; counts the bytes.
pub struct OutputWriter<'a> {
    inner: BufWriter<Sink<'a>>,
    count: u64,
    written: &'a mut u64,
    synced: &'a mut bool,
    dest: &'a Path,
}

impl std::fmt::Debug for OutputWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputWriter")
            .field("dest", &self.dest)
            .field("count", &self.count)
            .finish()
    }
}

impl OutputWriter<'_> {
    /// Flush the buffer (and, when durable, wait for the early flushes to disk).
    pub fn finish(self) -> Result<()> {
        let OutputWriter {
            inner,
            count,
            written,
            synced,
            dest,
        } = self;
        let failed = |e| Error::Write {
            path: dest.to_path_buf(),
            source: e,
        };
        let sink = inner.into_inner().map_err(|e| failed(e.into_error()))?;
        if let Sink::Syncing(s) = sink {
            s.finish().map_err(failed)?;
            *synced = true;
        }
        *written += count;
        Ok(())
    }
}

impl Write for OutputWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A failure names the output file, whatever the caller was copying from.
        let n = self
            .inner
            .write(buf)
            .map_err(|e| Error::write_failed(self.dest, e))?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner
            .flush()
            .map_err(|e| Error::write_failed(self.dest, e))
    }
}

/// The content of an [`AtomicFile`] written in order (as a `Write`, with [`skip`] leaving
/// room) and at positions, by other threads, through [`PositionedOutput::file`]; what is
/// skipped reads as zeros until it is written.
///
/// [`skip`]: PositionedOutput::skip
pub struct PositionedOutput<'a> {
    file: PositionedFile<'a>,
    seq: BufWriter<&'a File>,
    /// Where the next write in order goes.
    pos: u64,
    /// The end of the content.
    len: u64,
    written: &'a mut u64,
    synced: &'a mut bool,
    durable: bool,
    dest: &'a Path,
}

impl std::fmt::Debug for PositionedOutput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PositionedOutput")
            .field("dest", &self.dest)
            .field("pos", &self.pos)
            .finish()
    }
}

impl<'a> PositionedOutput<'a> {
    /// Where the next write in order goes.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Leave `n` bytes to be written at their position.
    pub fn skip(&mut self, n: u64) -> io::Result<()> {
        use std::io::{Seek, SeekFrom};
        self.pos += n;
        self.len = self.len.max(self.pos);
        self.seq
            .seek(SeekFrom::Start(self.pos))
            .map_err(|e| Error::write_failed(self.dest, e))?;
        Ok(())
    }

    /// The file, for writes at positions (from any thread).
    pub fn file(&self) -> &PositionedFile<'a> {
        &self.file
    }

    /// The file it will become.
    pub fn dest(&self) -> &Path {
        self.dest
    }

    /// Flush what was written in order, wait for the flushes to disk and fsync when durable.
    /// Every byte skipped must have been written by then.
    pub fn finish(self) -> Result<()> {
        let PositionedOutput {
            file,
            seq,
            len,
            written,
            synced,
            durable,
            dest,
            ..
        } = self;
        let failed = |e| Error::Write {
            path: dest.to_path_buf(),
            source: e,
        };
        let f = seq.into_inner().map_err(|e| failed(e.into_error()))?;
        // Room skipped at the very end holds no write in order: the length says it.
        if f.metadata().map_err(failed)?.len() < len {
            f.set_len(len).map_err(failed)?;
        }
        file.finish().map_err(failed)?;
        *synced = durable;
        *written += len;
        Ok(())
    }
}

impl Write for PositionedOutput<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self
            .seq
            .write(buf)
            .map_err(|e| Error::write_failed(self.dest, e))?;
        self.pos += n as u64;
        self.len = self.len.max(self.pos);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.seq
            .flush()
            .map_err(|e| Error::write_failed(self.dest, e))
    }
}

/// Refuse `dest` when it would land inside the layout at `root` (which the command reads): the
/// output would overwrite or add to its own source.
pub fn refuse_inside(dest: &Path, root: &Path) -> Result<()> {
    let Ok(root) = fs::canonicalize(root) else {
        return Ok(());
    };
    let dir = fs::canonicalize(parent_of(dest)).unwrap_or_else(|_| parent_of(dest).to_path_buf());
    if dir.starts_with(&root) {
        return Err(Error::Invalid {
            what: dest.display().to_string(),
            reason: format!(
                "is inside the layout `{}` this command reads; write it elsewhere",
                root.display()
            ),
        });
    }
    Ok(())
}

/// Write `dest` whole or not at all: `f` writes the content, then the file replaces `dest`.
/// When `f` (or anything after it) fails, `dest` is as it was and no temp file remains.
/// Returns what `f` returned and the file's size.
pub fn write_atomically<T, E: From<Error>>(
    dest: impl AsRef<Path>,
    durable: bool,
    f: impl FnOnce(&mut dyn Write) -> std::result::Result<T, E>,
) -> std::result::Result<(T, u64), E> {
    let mut file = AtomicFile::create(dest, durable)?;
    let mut w = file.writer();
    let value = f(&mut w)?;
    w.finish()?;
    let len = file.len();
    file.commit()?;
    Ok((value, len))
}

/// A destination directory: when it did not exist before the command, it is removed again
/// unless [`NewDir::keep`] is called (a failed command, or a panic, leaves no destination it
/// created). A directory that existed, or anything else at the path, is never touched.
#[derive(Debug)]
pub struct NewDir {
    path: PathBuf,
    created: bool,
    /// Removes the directory on a signal ([`crate::cleanup`]) while it is new and not kept.
    cleanup: Option<crate::cleanup::Registered>,
}

impl NewDir {
    /// Look at `path` before anything is written there.
    pub fn guard(path: impl AsRef<Path>) -> NewDir {
        let path = path.as_ref().to_path_buf();
        let created =
            matches!(fs::symlink_metadata(&path), Err(e) if e.kind() == io::ErrorKind::NotFound);
        let cleanup = created.then(|| crate::cleanup::new_dir(&path));
        NewDir {
            path,
            created,
            cleanup,
        }
    }

    /// Whether the path was absent (so this command creates it).
    pub fn is_new(&self) -> bool {
        self.created
    }

    /// The command succeeded: keep the directory.
    pub fn keep(mut self) {
        self.created = false;
        self.cleanup = None;
    }

    /// Run `f`, keeping the directory only when it succeeds.
    pub fn run<T, E>(
        path: impl AsRef<Path>,
        f: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let guard = NewDir::guard(path);
        let result = f();
        if result.is_ok() {
            guard.keep();
        }
        result
    }
}

impl NewDir {
    /// [`NewDir::run`] for a command that creates a layout at `path` (when missing) and takes
    /// its writer lock: when the directory was removed by another writer's failure while this
    /// one waited for the lock (`is_gone`, [`Error::LayoutGone`]), it starts over, up to three
    /// times, instead of writing into a removed directory.
    pub fn run_layout<T, E>(
        path: impl AsRef<Path>,
        mut f: impl FnMut() -> std::result::Result<T, E>,
        is_gone: impl Fn(&E) -> bool,
    ) -> std::result::Result<T, E> {
        let mut tries = 0;
        loop {
            match NewDir::run(path.as_ref(), &mut f) {
                Err(e) if is_gone(&e) && tries < 3 => tries += 1,
                r => return r,
            }
        }
    }
}

impl Drop for NewDir {
    fn drop(&mut self) {
        if !self.created {
            return;
        }
        // Nothing of a failed command may remain where nothing was, but another writer may
        // have opened the directory meanwhile (it was there when it looked): remove it only
        // while holding its writer lock, so nobody is writing into it. A writer that waited
        // for the lock finds, once it has it, that the directory is gone (`Layout::lock`
        // compares the locked descriptor with the path) and does not report success into it.
        let Ok(dir) = File::open(&self.path) else {
            return;
        };
        if rustix::fs::flock(&dir, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err()
            || !crate::layout::same_dir(&dir, &self.path)
        {
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn written_whole_with_the_umask_mode() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dest = tmp.path().join("out");
        let ((), len) = write_atomically(&dest, true, |w| -> Result<()> {
            w.write_all(b"hello").map_err(|e| Error::io("out", e))
        })
        .expect("write");
        assert_eq!(len, 5);
        assert_eq!(fs::read(&dest).expect("read"), b"hello");
        assert_eq!(names(tmp.path()), ["out"]);
        // Not tempfile's 0600: some of 0666 survives any usual umask (022, 002, 027, 077)
        // beyond the owner's bits only under 077.
        let mode = fs::metadata(&dest).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode & !0o666, 0, "{mode:o}");
        assert_eq!(mode & 0o600, 0o600, "{mode:o}");
    }

    #[test]
    fn a_failure_leaves_the_target_as_it_was_and_no_temp_file() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dest = tmp.path().join("out");
        fs::write(&dest, b"old").expect("write");
        let r = write_atomically(&dest, false, |w| -> Result<()> {
            w.write_all(&[7u8; 3 << 20])
                .map_err(|e| Error::io("out", e))?;
            Err(Error::Invalid {
                what: "test".into(),
                reason: "stop".into(),
            })
        });
        assert!(matches!(r, Err(Error::Invalid { .. })));
        assert_eq!(fs::read(&dest).expect("read"), b"old");
        assert_eq!(names(tmp.path()), ["out"]);
        // Dropped uncommitted: nothing either.
        let mut f = AtomicFile::create(tmp.path().join("other"), true).expect("create");
        let mut w = f.writer();
        w.write_all(b"x").expect("write");
        w.finish().expect("finish");
        assert_eq!(f.len(), 1);
        drop(f);
        assert_eq!(names(tmp.path()), ["out"]);
    }

    #[test]
    fn a_new_dir_is_removed_on_failure_and_an_existing_one_never() {
        let tmp = tempfile::tempdir().expect("tmp");
        let new = tmp.path().join("new");
        let r: std::result::Result<(), &str> = NewDir::run(&new, || {
            fs::create_dir_all(new.join("blobs")).expect("mkdir");
            Err("failed")
        });
        assert!(r.is_err());
        assert!(!new.exists());
        NewDir::run(&new, || {
            fs::create_dir(&new)?;
            Ok::<_, io::Error>(())
        })
        .expect("ok");
        assert!(new.is_dir());
        let r: std::result::Result<(), &str> = NewDir::run(&new, || Err("failed"));
        assert!(r.is_err());
        assert!(new.is_dir(), "an existing directory is not touched");
    }

    /// Two imports into one new directory: the one that fails must not remove the directory
    /// while the other holds its lock (it used to, and the other then reported success into a
    /// directory that no longer existed).
    #[test]
    fn a_new_dir_another_writer_holds_is_not_removed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let new = tmp.path().join("new");
        let opts = crate::Options {
            durable: false,
            lock_timeout: std::time::Duration::from_secs(1),
        };
        let r: std::result::Result<(), &str> = NewDir::run(&new, || {
            let (other, _) = crate::Layout::init(&new, opts.clone()).expect("init");
            // The other writer has the lock when this command gives up.
            let held = Box::leak(Box::new(other)).lock().expect("lock");
            std::mem::forget(held);
            Err("failed")
        });
        assert!(r.is_err());
        assert!(
            new.join("oci-layout").is_file(),
            "kept for the writer holding it"
        );
    }

    /// A writer that waited for the lock of a directory which was removed (and made again)
    /// meanwhile finds out once it has the lock, instead of writing into the removed one.
    #[test]
    fn a_lock_on_a_removed_layout_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("l");
        let opts = crate::Options {
            durable: false,
            lock_timeout: std::time::Duration::from_secs(10),
        };
        let (holder, _) = crate::Layout::init(&path, opts.clone()).expect("init");
        let held = holder.lock().expect("lock");
        let waiter = std::thread::spawn({
            let path = path.clone();
            let opts = opts.clone();
            move || {
                let layout = crate::Layout::open(&path, opts).expect("open");
                layout.lock().map(drop).map_err(|e| e.to_string())
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        fs::remove_dir_all(&path).expect("rm");
        crate::Layout::init(&path, opts).expect("init again");
        drop(held);
        assert_eq!(
            waiter.join().expect("join"),
            Err(format!(
                "`{}` was removed or replaced while waiting for its lock",
                path.display()
            ))
        );
    }
}
