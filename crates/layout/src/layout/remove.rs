//! Deleting files from the store, for `gc`: only what the store itself writes and
//! [`Layout::blob_files`] classified (a blob of an algorithm ocikit knows, a `.tmp-*` file, a
//! bundle partial), only in the layout's own checked `blobs/<alg>/` (or, for temp files of
//! `index.json` writes, the layout root), only regular files, never through a link.

use std::fs;
use std::path::{Path, PathBuf};

use super::{sync_dir, unsafe_path, BlobFile, BlobFileKind, Layout, WriteLock, TEMP_PREFIX};
use crate::{Algorithm, Error, Result};

/// A batch of deletions under the writer lock ([`WriteLock::removal`]). Each
/// [`Removal::remove`] re-checks what it is given before it unlinks it; [`Removal::finish`]
/// makes the deletions durable (an fsync of every `blobs/<alg>/` deleted from, when the
/// layout is durable: a lost deletion only brings garbage back).
#[derive(Debug)]
pub struct Removal<'l> {
    layout: &'l Layout,
    /// The directories deleted from, in order, each once.
    dirs: Vec<PathBuf>,
}

impl WriteLock<'_> {
    /// Start deleting files of the store.
    pub fn removal(&self) -> Removal<'_> {
        Removal {
            layout: self.layout,
            dirs: Vec::new(),
        }
    }
}

impl Removal<'_> {
    /// Delete `entry`, a file [`Layout::blob_files`] listed. Refused
    /// ([`Error::UnsafePath`]), deleting nothing, unless it is in this layout's `blobs/<alg>/`
    /// for an algorithm ocikit knows, its name makes it a blob, a `.tmp-*` file or a
    /// `.partial-*` file (as `entry.kind` says), and it is a regular file (a link is refused,
    /// never followed).
    pub fn remove(&mut self, entry: &BlobFile) -> Result<()> {
        let path = &entry.path;
        let refuse = |reason: &str| Error::UnsafePath {
            path: path.clone(),
            reason: reason.to_string(),
        };
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(refuse("it is not a file in `blobs/<alg>/`"));
        };
        let alg = dir
            .file_name()
            .and_then(|a| Algorithm::ALL.iter().find(|k| a == k.as_str()))
            .ok_or_else(|| refuse("it is not in a blob directory of an algorithm ocikit knows"))?;
        match self.layout.blobs_dir(alg.as_str())? {
            Some(d) if d == dir => {}
            _ => return Err(refuse("it is not in this layout's blob directories")),
        }
        let kind = BlobFileKind::of(alg.as_str(), &name.to_string_lossy());
        let ours = match &kind {
            BlobFileKind::Blob(d) => d.algorithm() == Some(*alg),
            BlobFileKind::Temp | BlobFileKind::Partial => true,
            BlobFileKind::Other => false,
        };
        if !ours || kind != entry.kind {
            return Err(refuse(
                "it is not a blob, temp file or partial the store wrote",
            ));
        }
        remove_regular(path)?;
        if self.dirs.last().map(PathBuf::as_path) != Some(dir) {
            self.dirs.push(dir.to_path_buf());
        }
        Ok(())
    }

    /// Delete a temp file of an interrupted `index.json` or `oci-layout` write, as
    /// [`Layout::root_temp_files`] lists them: a regular `.tmp-*` file directly in the layout
    /// root; anything else is refused ([`Error::UnsafePath`]).
    pub fn remove_root_temp(&mut self, path: &Path) -> Result<()> {
        let in_root = path.parent() == Some(self.layout.root.as_path());
        let temp = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(TEMP_PREFIX));
        if !in_root || !temp {
            return Err(Error::UnsafePath {
                path: path.to_path_buf(),
                reason: "it is not a temp file in the layout root".into(),
            });
        }
        remove_regular(path)
    }

    /// fsync the directories deleted from, when the layout is durable.
    pub fn finish(self) -> Result<()> {
        if self.layout.opts.durable {
            for d in &self.dirs {
                sync_dir(d)?;
            }
        }
        Ok(())
    }
}

/// Unlink `path` if it is a regular file (checked without following a link; unlinking never
/// follows one either).
fn remove_regular(path: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(unsafe_path(path, meta.file_type(), "a regular file"));
    }
    fs::remove_file(path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::scratch;
    use crate::{Digest, PARTIAL_PREFIX};

    fn entry(path: PathBuf, kind: BlobFileKind) -> BlobFile {
        BlobFile { path, kind }
    }

    #[test]
    fn removes_what_the_listing_classified() {
        let (_d, l) = scratch();
        let lock = l.lock().expect("lock");
        let (digest, _) = lock.write_blob(b"garbage").expect("write");
        let dir = l.root().join("blobs/sha256");
        fs::write(dir.join(".tmp-x"), b"t").expect("write");
        fs::write(dir.join(format!("{PARTIAL_PREFIX}ab")), b"p").expect("write");
        fs::write(l.root().join(".tmp-index"), b"i").expect("write");
        let mut rm = lock.removal();
        for f in l.blob_files().expect("ls") {
            rm.remove(&f).expect("remove");
        }
        for t in l.root_temp_files().expect("ls") {
            rm.remove_root_temp(&t).expect("remove");
        }
        assert_eq!(rm.dirs, vec![dir.clone()]);
        rm.finish().expect("finish");
        assert_eq!(fs::read_dir(&dir).expect("ls").count(), 0);
        assert!(!l.root().join(".tmp-index").exists());
        assert_eq!(l.blob_size(&digest).expect("size"), None);
    }

    #[test]
    fn refuses_what_is_not_the_stores() {
        let (d, l) = scratch();
        let lock = l.lock().expect("lock");
        let mut rm = lock.removal();
        let dir = l.root().join("blobs/sha256");
        let refused = |rm: &mut Removal<'_>, e: BlobFile| match rm.remove(&e) {
            Err(Error::UnsafePath { path, .. }) => assert_eq!(path, e.path),
            other => panic!("{}: {other:?}", e.path.display()),
        };
        // Another name, and a listing that lies about a name.
        let other = dir.join("README");
        fs::write(&other, b"keep").expect("write");
        refused(&mut rm, entry(other.clone(), BlobFileKind::Temp));
        refused(&mut rm, entry(other.clone(), BlobFileKind::Other));
        // Outside the layout, or outside its blob directories.
        let outside = d.path().join(".tmp-outside");
        fs::write(&outside, b"keep").expect("write");
        refused(&mut rm, entry(outside.clone(), BlobFileKind::Temp));
        let unknown = l.root().join("blobs/md5");
        fs::create_dir(&unknown).expect("mkdir");
        fs::write(unknown.join(".tmp-y"), b"keep").expect("write");
        refused(&mut rm, entry(unknown.join(".tmp-y"), BlobFileKind::Temp));
        let sneaky = dir.join("..").join("sha256").join(".tmp-z");
        fs::write(&sneaky, b"keep").expect("write");
        refused(&mut rm, entry(sneaky.clone(), BlobFileKind::Temp));
        // A link is refused, and what it points to is kept.
        let victim = d.path().join("victim");
        fs::write(&victim, b"precious").expect("write");
        let digest = Digest::sha256(b"precious");
        let link = dir.join(digest.encoded());
        std::os::unix::fs::symlink(&victim, &link).expect("symlink");
        refused(&mut rm, entry(link.clone(), BlobFileKind::Blob(digest)));
        assert!(fs::symlink_metadata(&link).is_ok());
        // A root temp file must be one.
        assert!(rm.remove_root_temp(&l.root().join("index.json")).is_err());
        assert!(rm.remove_root_temp(&outside).is_err());
        for p in [&other, &outside, &sneaky, &victim, &unknown.join(".tmp-y")] {
            assert!(p.exists(), "{} kept", p.display());
        }
        assert!(l.root().join("index.json").exists());
        assert!(rm.dirs.is_empty());
    }
}
