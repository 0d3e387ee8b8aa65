//! Blobs from another layout on this machine: [`WriteLock::link_or_copy_from`] hard-links a
//! blob when both layouts are on the same filesystem (after verifying the source), else copies
//! it in the kernel (`copy_file_range`, a reflink where the filesystem has them) into a temp
//! file and verifies the destination's own bytes, else streams a verified copy. A blob the
//! destination already holds is left alone once its size and digest are checked; a corrupt one
//! is replaced from the source (and reported as [`Copied::Replaced`]).

use std::fs;
use std::io;
use std::path::Path;

use super::{new_temp_in, open_regular, unwrap_io, Existing, Layout, VerifyingReader, WriteLock};
use crate::layer::copy_large;
use crate::{Digest, Error, Result};

/// How a blob reached the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// The destination already had it.
    Present,
    /// Hard-linked.
    Linked,
    /// Copied byte by byte.
    Copied,
    /// The destination had a corrupt file in its place (wrong size or digest); it was
    /// replaced by the source's verified bytes.
    Replaced,
}

impl WriteLock<'_> {
    /// Take the blob `digest` (`size` bytes) from `src` into this layout. The source bytes are
    /// verified (size and digest) either way; nothing unverified lands here. A corrupt file in
    /// this layout's place for it is replaced by a rename, never linked over.
    pub fn link_or_copy_from(&self, src: &Layout, digest: &Digest, size: u64) -> Result<Copied> {
        let replacing = match self.existing_blob(digest, size)? {
            Existing::Intact => return Ok(Copied::Present),
            Existing::Corrupt => true,
            Existing::Absent => false,
        };
        let done = |how| Ok(if replacing { Copied::Replaced } else { how });
        let from = src.blob_path(digest);
        let to = self.layout.blob_path(digest);
        let dir = self.layout.create_blobs_dir(digest.algorithm_str())?;
        if !replacing && src.blob_size(digest)?.is_some() && same_filesystem(&from, &dir) {
            // Verify first: a link shares the bytes, so they must be right.
            src.verify_blob(digest, Some(size))?;
            // When a link fails (links are not allowed here), copy instead.
            if fs::hard_link(&from, &to).is_ok() {
                return done(Copied::Linked);
            }
        }
        let alg = digest
            .algorithm()
            .ok_or_else(|| Error::Unverifiable(digest.clone()))?;
        if self.kernel_copy(src, digest, size, &dir)? {
            return done(Copied::Copied);
        }
        // No kernel-side copy here: stream it, hashed on the way.
        let mut reader = src.open_blob(digest, Some(size))?;
        let mut w = self.blob_writer_for(alg)?;
        copy_large(&mut reader, &mut w).map_err(|e| unwrap_io(e, &from))?;
        w.finish_expect(digest, Some(size))?;
        done(Copied::Copied)
    }

    /// Copy with `copy_file_range` (a reflink or an in-kernel copy) into a temp file in `dir`
    /// (this layout's checked `blobs/<alg>`), then verify the destination's own bytes before
    /// renaming it into place. `Ok(false)` when the kernel cannot do it for these files (the
    /// caller streams instead).
    fn kernel_copy(&self, src: &Layout, digest: &Digest, size: u64, dir: &Path) -> Result<bool> {
        let from = src.blob_path(digest);
        let missing = || Error::MissingBlob {
            digest: digest.clone(),
            path: from.clone(),
        };
        if src.blobs_dir(digest.algorithm_str())?.is_none() {
            return Err(missing());
        }
        let input = open_regular(&from)?.ok_or_else(missing)?;
        let found = input.metadata().map_err(|e| Error::io(&from, e))?.len();
        if found != size {
            return Err(Error::SizeMismatch {
                digest: digest.clone(),
                expected: size,
                found,
                path: from,
            });
        }
        let (tmp, _cleanup) = new_temp_in(dir)?;
        let mut left = size;
        while left > 0 {
            let chunk = left.min(1 << 30) as usize;
            match rustix::fs::copy_file_range(&input, None, tmp.as_file(), None, chunk) {
                Ok(0) => break,
                Ok(n) => left -= n as u64,
                Err(e)
                    if left == size
                        && matches!(
                            e,
                            rustix::io::Errno::XDEV
                                | rustix::io::Errno::NOSYS
                                | rustix::io::Errno::INVAL
                                | rustix::io::Errno::OPNOTSUPP
                        ) =>
                {
                    return Ok(false);
                }
                Err(e) => return Err(Error::io(tmp.path(), e.into())),
            }
        }
        if left != 0 {
            return Err(Error::SizeMismatch {
                digest: digest.clone(),
                expected: size,
                found: size - left,
                path: from,
            });
        }
        // Verify what landed, not what was meant to.
        let alg = digest
            .algorithm()
            .ok_or_else(|| Error::Unverifiable(digest.clone()))?;
        let landed = tmp.reopen().map_err(|e| Error::io(tmp.path(), e))?;
        let mut check = VerifyingReader::new(
            landed,
            alg.hasher(),
            digest.clone(),
            Some(size),
            from.clone(),
        );
        copy_large(&mut check, &mut io::sink()).map_err(|e| unwrap_io(e, &from))?;
        if self.layout.opts.durable {
            tmp.as_file()
                .sync_all()
                .map_err(|e| Error::io(tmp.path(), e))?;
        }
        let to = self.layout.blob_path(digest);
        tmp.persist(&to).map_err(|e| Error::io(&to, e.error))?;
        Ok(true)
    }
}

fn same_filesystem(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    matches!((fs::metadata(a), fs::metadata(b)), (Ok(x), Ok(y)) if x.dev() == y.dev())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Options, TEMP_PREFIX};

    fn two_layouts() -> (tempfile::TempDir, Layout, Layout) {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = Options {
            durable: false,
            ..Options::default()
        };
        let (a, _) = Layout::init(dir.path().join("a"), opts.clone()).expect("init");
        let (b, _) = Layout::init(dir.path().join("b"), opts).expect("init");
        (dir, a, b)
    }

    #[test]
    fn links_or_copies_verified() {
        let (_dir, a, b) = two_layouts();
        let (d, s) = a.lock().expect("lock").write_blob(b"hello").expect("write");
        let lock = b.lock().expect("lock");
        assert_eq!(
            lock.link_or_copy_from(&a, &d, s).expect("copy"),
            Copied::Linked
        );
        assert_eq!(
            lock.link_or_copy_from(&a, &d, s).expect("copy"),
            Copied::Present
        );
        assert_eq!(b.read_blob(&d, Some(5), 10).expect("read"), b"hello");
        // A corrupt source is refused.
        let (d2, _) = a.lock().expect("lock").write_blob(b"world").expect("write");
        fs::write(a.blob_path(&d2), b"worlD").expect("corrupt");
        assert!(matches!(
            lock.link_or_copy_from(&a, &d2, 5),
            Err(Error::DigestMismatch { .. })
        ));
        assert_eq!(b.blob_size(&d2).expect("size"), None);
    }

    #[test]
    fn a_corrupt_destination_is_replaced_by_a_copy_not_linked_over() {
        let (_dir, a, b) = two_layouts();
        let (d, s) = a.lock().expect("lock").write_blob(b"right").expect("write");
        let lock = b.lock().expect("lock");
        let dest = b.blob_path(&d);
        fs::write(&dest, b"wrong").expect("plant");
        assert_eq!(
            lock.link_or_copy_from(&a, &d, s).expect("copy"),
            Copied::Replaced
        );
        assert_eq!(b.read_blob(&d, Some(s), 10).expect("read"), b"right");
        // A copy, not a link: corrupting the source later leaves the destination whole.
        fs::write(a.blob_path(&d), b"rIght").expect("corrupt the source in place");
        assert_eq!(fs::read(&dest).expect("read"), b"right");
    }

    #[test]
    fn kernel_copy_verifies_what_landed() {
        let (_dir, a, b) = two_layouts();
        let (d, s) = a
            .lock()
            .expect("lock")
            .write_blob(b"kernel")
            .expect("write");
        let lock = b.lock().expect("lock");
        let blobs = b.root().join("blobs/sha256");
        // Same filesystem here, so copy_file_range is available (a reflink or an in-kernel copy).
        assert!(lock.kernel_copy(&a, &d, s, &blobs).expect("copy"));
        assert_eq!(b.read_blob(&d, Some(6), 10).expect("read"), b"kernel");
        // A source that changed is caught on the destination's bytes; nothing lands.
        let (d2, _) = a
            .lock()
            .expect("lock")
            .write_blob(b"second")
            .expect("write");
        fs::write(a.blob_path(&d2), b"secoNd").expect("corrupt");
        assert!(matches!(
            lock.kernel_copy(&a, &d2, 6, &blobs),
            Err(Error::DigestMismatch { .. })
        ));
        assert_eq!(b.blob_size(&d2).expect("size"), None);
        let leftovers: Vec<_> = fs::read_dir(&blobs)
            .expect("ls")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
            .collect();
        assert!(leftovers.is_empty());
    }
}
