//! The bounded spool: a compressed tar, or a tar read from a pipe, copied once into an anonymous
//! temp file (in `$TMPDIR`, removed by the kernel when closed) so that [`Archive`] can read it
//! by byte ranges.
//!
//! Bounds, checked while copying, before the temp directory can fill:
//! - decompressed, at most [`RATIO_LIMIT`] times the compressed bytes read so far plus
//!   [`RATIO_FLOOR`] (real image tars compress a few times; a bomb compresses thousands of
//!   times);
//! - never more than the temp directory's free space at the start, less [`FREE_MARGIN`] (or a
//!   twentieth of it, on a small filesystem).
//!
//! A write to the temp file that fails (`No space left on device`) is reported on the temp
//! directory, as the temp space's fault, never as a damaged input.
//!
//! [`Archive`]: super::Archive

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::{ArchiveError as Error, Result};
use crate::compress::{decompressor, read_full};
use crate::Compression;

/// At most this many decompressed bytes per compressed byte (plus [`RATIO_FLOOR`]).
pub const RATIO_LIMIT: u64 = 1000;
/// Decompressed bytes allowed whatever the ratio.
pub const RATIO_FLOOR: u64 = 64 << 20;
/// Free space left in the temp directory (at most a twentieth of what is free).
pub const FREE_MARGIN: u64 = 16 << 20;

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// The temp directory the spool goes to.
pub fn temp_dir() -> PathBuf {
    std::env::temp_dir()
}

/// Free bytes (for an unprivileged writer) in the filesystem holding `dir`.
fn free_space(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Copy `raw` into a new temp file, decompressed as `compression` says, within the bounds
/// above (the ratio applies to compressed input only). `path` names the input in errors.
pub(super) fn spool<R: Read>(raw: R, path: &Path, compression: Compression) -> Result<File> {
    let compressed = compression != Compression::None;
    let what = if compressed {
        compression.as_str()
    } else {
        "tar"
    };
    let tmp = temp_dir();
    let mut file = tempfile::tempfile_in(&tmp).map_err(|e| spool_error(&tmp, e))?;
    let free = free_space(&tmp)
        .map(|f| f - FREE_MARGIN.min(f / 20))
        .unwrap_or(u64::MAX);
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counting = Counting {
        inner: raw,
        count: count.clone(),
    };
    let unreadable = |e: io::Error| Error::bad(path, format!("not a readable {what} stream: {e}"));
    let mut dec = decompressor(counting, compression).map_err(unreadable)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total: u64 = 0;
    loop {
        let n = read_full(&mut dec, &mut buf).map_err(unreadable)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > free {
            return Err(Error::io(
                &tmp,
                io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!(
                        "spooling `{}` needs more than the {free} bytes free in the temp directory (set TMPDIR to a directory with more room)",
                        path.display()
                    ),
                ),
            ));
        }
        if compressed {
            let read = count.load(std::sync::atomic::Ordering::Relaxed);
            let cap = read.saturating_mul(RATIO_LIMIT).saturating_add(RATIO_FLOOR);
            if total > cap {
                return Err(Error::bad(
                    path,
                    format!(
                        "decompresses to more than {RATIO_LIMIT} times its compressed size ({total} bytes from {read}): refused as a decompression bomb"
                    ),
                ));
            }
        }
        file.write_all(&buf[..n])
            .map_err(|e| spool_error(&tmp, e))?;
    }
    Ok(file)
}

/// A failure to write the temp file: the temp directory's fault, said so.
fn spool_error(tmp: &Path, e: io::Error) -> Error {
    Error::io(
        tmp,
        io::Error::new(
            e.kind(),
            format!("writing the temp file that spools the archive (TMPDIR): {e}"),
        ),
    )
}
