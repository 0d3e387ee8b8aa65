//! Copying blobs between layouts: [`copy_blob`] hard-links a blob when both layouts are on the
//! same filesystem (after verifying the source), else streams a verified copy. A blob the
//! destination already holds is left alone once its size and digest are checked; a corrupt one
//! is replaced from the source (and reported as [`Copied::Replaced`]). Used by `copy` and by
//! `import` of a layout directory.

use std::fs;
use std::io;

use crate::layer::copy_large;
use std::path::Path;

use crate::layout::{new_temp_in, open_regular};
use crate::{unwrap_io, Descriptor, Error, Existing, Layout, Result, VerifyingReader, WriteLock};

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

/// Copy the blob `desc` names from `src` into the layout `dst` holds the lock of. The source
/// bytes are verified (size and digest) either way; nothing unverified lands in `dst`.
pub fn copy_blob(src: &Layout, dst: &WriteLock<'_>, desc: &Descriptor) -> Result<Copied> {
    let layout = dst.layout();
    let replacing = match dst.existing_blob(&desc.digest, desc.size)? {
        Existing::Intact => return Ok(Copied::Present),
        Existing::Corrupt => true,
        Existing::Absent => false,
    };
    let done = |how| Ok(if replacing { Copied::Replaced } else { how });
    let from = src.blob_path(&desc.digest);
    let to = layout.blob_path(&desc.digest);
    let dir = dst.blobs_dir_for_write(&desc.digest)?;
    // A corrupt file in the destination is replaced by a rename, never linked over.
    if !replacing && src.blob_size(&desc.digest)?.is_some() && same_filesystem(&from, &dir) {
        // Verify first: a link shares the bytes, so they must be right.
        src.verify_blob(&desc.digest, Some(desc.size))?;
        // When a link fails (links are not allowed here), copy instead.
        if fs::hard_link(&from, &to).is_ok() {
            return done(Copied::Linked);
        }
    }
    let alg = desc
        .digest
        .algorithm()
        .ok_or_else(|| Error::Unverifiable(desc.digest.clone()))?;
    if kernel_copy(src, dst, desc, &dir)? {
        return done(Copied::Copied);
    }
    // No kernel-side copy here: stream it, hashed on the way.
    let mut reader = src.open_blob(&desc.digest, Some(desc.size))?;
    let mut w = dst.blob_writer_for(alg)?;
    copy_large(&mut reader, &mut w).map_err(|e| unwrap_io(e, &from))?;
    w.finish_expect(&desc.digest, Some(desc.size))?;
    done(Copied::Copied)
}

fn same_filesystem(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    matches!((fs::metadata(a), fs::metadata(b)), (Ok(x), Ok(y)) if x.dev() == y.dev())
}

/// Copy with `copy_file_range` (a reflink or an in-kernel copy) into a temp file, then verify
/// the destination's own bytes before renaming it into place. `Ok(false)` when the kernel
/// cannot do it for these files (the caller streams instead).
fn kernel_copy(src: &Layout, dst: &WriteLock<'_>, desc: &Descriptor, dir: &Path) -> Result<bool> {
    let from = src.blob_path(&desc.digest);
    let missing = || Error::MissingBlob {
        digest: desc.digest.clone(),
        path: from.clone(),
    };
    if src.blobs_dir(desc.digest.algorithm_str())?.is_none() {
        return Err(missing());
    }
    let input = open_regular(&from)?.ok_or_else(missing)?;
    let found = input.metadata().map_err(|e| Error::io(&from, e))?.len();
    if found != desc.size {
        return Err(Error::SizeMismatch {
            digest: desc.digest.clone(),
            expected: desc.size,
            found,
            path: from,
        });
    }
    let tmp = new_temp_in(dir)?;
    let mut left = desc.size;
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        match rustix::fs::copy_file_range(&input, None, tmp.as_file(), None, chunk) {
            Ok(0) => break,
            Ok(n) => left -= n as u64,
            Err(e)
                if left == desc.size
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
            digest: desc.digest.clone(),
            expected: desc.size,
            found: desc.size - left,
            path: from,
        });
    }
    // Verify what landed, not what was meant to.
    let alg = desc
        .digest
        .algorithm()
        .ok_or_else(|| Error::Unverifiable(desc.digest.clone()))?;
    let landed = tmp.reopen().map_err(|e| Error::io(tmp.path(), e))?;
    let mut check = VerifyingReader::new(
        landed,
        alg.hasher(),
        desc.digest.clone(),
        Some(desc.size),
        from.clone(),
    );
    copy_large(&mut check, &mut io::sink()).map_err(|e| unwrap_io(e, &from))?;
    if dst.layout().options().durable {
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(tmp.path(), e))?;
    }
    let to = dst.layout().blob_path(&desc.digest);
    tmp.persist(&to).map_err(|e| Error::io(&to, e.error))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MediaType, Options, TEMP_PREFIX};

    #[test]
    fn links_or_copies_verified() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = Options {
            durable: false,
            ..Options::default()
        };
        let (a, _) = Layout::init(dir.path().join("a"), opts.clone()).expect("init");
        let (b, _) = Layout::init(dir.path().join("b"), opts).expect("init");
        let (d, s) = a.lock().expect("lock").write_blob(b"hello").expect("write");
        let desc = Descriptor::new(MediaType::OciLayer, d.clone(), s);
        let lock = b.lock().expect("lock");
        assert_eq!(copy_blob(&a, &lock, &desc).expect("copy"), Copied::Linked);
        assert_eq!(copy_blob(&a, &lock, &desc).expect("copy"), Copied::Present);
        assert_eq!(b.read_blob(&d, Some(5), 10).expect("read"), b"hello");
        // A corrupt source is refused.
        let (d2, _) = a.lock().expect("lock").write_blob(b"world").expect("write");
        fs::write(a.blob_path(&d2), b"worlD").expect("corrupt");
        let bad = Descriptor::new(MediaType::OciLayer, d2.clone(), 5);
        assert!(matches!(
            copy_blob(&a, &lock, &bad),
            Err(Error::DigestMismatch { .. })
        ));
        assert_eq!(b.blob_size(&d2).expect("size"), None);
    }

    #[test]
    fn kernel_copy_verifies_what_landed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = Options {
            durable: false,
            ..Options::default()
        };
        let (a, _) = Layout::init(dir.path().join("a"), opts.clone()).expect("init");
        let (b, _) = Layout::init(dir.path().join("b"), opts).expect("init");
        let (d, s) = a
            .lock()
            .expect("lock")
            .write_blob(b"kernel")
            .expect("write");
        let desc = Descriptor::new(MediaType::OciLayer, d.clone(), s);
        let lock = b.lock().expect("lock");
        let blobs = b.root().join("blobs/sha256");
        // Same filesystem here, so copy_file_range is available (a reflink or an in-kernel copy).
        assert!(kernel_copy(&a, &lock, &desc, &blobs).expect("copy"));
        assert_eq!(b.read_blob(&d, Some(6), 10).expect("read"), b"kernel");
        // A source that changed is caught on the destination's bytes; nothing lands.
        let (d2, _) = a
            .lock()
            .expect("lock")
            .write_blob(b"second")
            .expect("write");
        fs::write(a.blob_path(&d2), b"secoNd").expect("corrupt");
        let bad = Descriptor::new(MediaType::OciLayer, d2.clone(), 6);
        assert!(matches!(
            kernel_copy(&a, &lock, &bad, &blobs),
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
