//! Copying blobs between layouts: [`copy_blob`] hard-links a blob when both layouts are on the
//! same filesystem (after verifying the source), else streams a verified copy. A blob the
//! destination already holds (same size) is left alone. Used by `import` of a layout directory
//! and meant for the `copy` verb.

use std::fs;
use std::io;

use crate::layer::copy_large;
use crate::{unwrap_io, Descriptor, Error, Layout, Result, WriteLock};

/// How a blob reached the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// The destination already had it.
    Present,
    /// Hard-linked.
    Linked,
    /// Copied byte by byte.
    Copied,
}

/// Copy the blob `desc` names from `src` into the layout `dst` holds the lock of. The source
/// bytes are verified (size and digest) either way; nothing unverified lands in `dst`.
pub fn copy_blob(src: &Layout, dst: &WriteLock<'_>, desc: &Descriptor) -> Result<Copied> {
    let layout = dst.layout();
    if layout.blob_size(&desc.digest)? == Some(desc.size) {
        return Ok(Copied::Present);
    }
    let from = src.blob_path(&desc.digest);
    let to = layout.blob_path(&desc.digest);
    // Verify first: a link shares the bytes, so they must be right.
    src.verify_blob(&desc.digest, Some(desc.size))?;
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    match fs::hard_link(&from, &to) {
        Ok(()) => return Ok(Copied::Linked),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Another blob file of the wrong size sits there: replace it by a verified copy.
        }
        Err(_) => {}
    }
    let mut reader = src.open_blob(&desc.digest, Some(desc.size))?;
    let mut w = dst.blob_writer_for(
        desc.digest
            .algorithm()
            .ok_or_else(|| Error::Unverifiable(desc.digest.clone()))?,
    )?;
    copy_large(&mut reader, &mut w).map_err(|e| unwrap_io(e, &from))?;
    w.finish_expect(&desc.digest, Some(desc.size))?;
    Ok(Copied::Copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MediaType, Options};

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
}
