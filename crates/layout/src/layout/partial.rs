//! Blobs assembled in place from chunks that arrive in any order, over several runs (bundle
//! loads): [`WriteLock::partial`] opens `blobs/<alg>/.partial-<encoded>` (the bytes, as long as
//! the blob) and its list of finished chunks, `.partial-<encoded>.chunks` (one chunk a line:
//! its number, offset and length; older lists have the number only). A chunk is written at its offset ([`Partial::write_chunk`], which hashes what it
//! writes), then accepted when its digest matches the one its source claims
//! ([`Partial::accept`], which adds it to the list); [`Partial::finish`] verifies the whole blob
//! and renames it into place. Extra disk is at most one blob, and an interrupted load resumes
//! from the list, whose extents ([`Partial::extents`]) let a source that cuts the blob
//! differently (a bundle written again with another part size) be refused before it writes
//! over chunks already done.
//!
//! Neither file is ever opened through a link: anything but a regular file at the partial's
//! path (a planted link, a FIFO) is replaced by a new empty file and the list is forgotten; a
//! list that is not a regular file is not read, and is replaced when a chunk is added.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{open_regular, open_store_rw, unwrap_io, Layout, VerifyingReader, WriteLock};
use crate::layer::copy_large;
use crate::{Algorithm, Digest, Error, Result, PARTIAL_PREFIX};

/// The most of a chunk list read: far more lines than any blob has chunks.
const LIST_LIMIT: u64 = 256 << 20;

/// A blob being assembled from chunks under the writer lock ([`WriteLock::partial`]).
#[derive(Debug)]
pub struct Partial<'l> {
    layout: &'l Layout,
    digest: Digest,
    size: u64,
    path: PathBuf,
    list_path: PathBuf,
    file: File,
    list: Option<File>,
    done: BTreeSet<usize>,
    /// (offset, length) of the done chunks the list records them for.
    extents: BTreeMap<usize, (u64, u64)>,
}

/// The chunks a list records: number -> (offset, length) when the list says.
type Done = (BTreeSet<usize>, BTreeMap<usize, (u64, u64)>);

/// A chunk [`Partial::write_chunk`] wrote but that is not accepted yet: the digest (sha256) of
/// the bytes written.
#[derive(Debug)]
#[must_use = "a written chunk counts only once accepted"]
pub struct WrittenChunk {
    blob: Digest,
    n: usize,
    offset: u64,
    len: u64,
    digest: Digest,
}

impl WrittenChunk {
    /// The chunk's number.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The sha256 digest of the bytes written.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
}

/// `.partial-<encoded>` and `.partial-<encoded>.chunks` in the checked `blobs/<alg>` `dir`.
fn partial_paths(dir: &Path, digest: &Digest) -> (PathBuf, PathBuf) {
    let partial = dir.join(format!("{PARTIAL_PREFIX}{}", digest.encoded()));
    let list = dir.join(format!("{PARTIAL_PREFIX}{}.chunks", digest.encoded()));
    (partial, list)
}

/// Remove a file of the store (never what a link there points to); absent is fine.
fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// The chunks in the list at `path`: numbers, and extents where recorded. A list that is
/// absent or not a regular file (a planted link or FIFO) is not read: nothing is known to be
/// done.
fn read_list(path: &Path) -> Result<Done> {
    let mut done = Done::default();
    let f = match open_regular(path) {
        Ok(Some(f)) => f,
        Ok(None) | Err(Error::UnsafePath { .. }) => return Ok(done),
        Err(e) => return Err(e),
    };
    let mut s = String::new();
    f.take(LIST_LIMIT)
        .read_to_string(&mut s)
        .map_err(|e| Error::io(path, e))?;
    for line in s.lines() {
        let mut fields = line.split_whitespace().map(str::parse::<u64>);
        let Some(Ok(n)) = fields.next() else { continue };
        let Ok(n) = usize::try_from(n) else { continue };
        done.0.insert(n);
        if let (Some(Ok(offset)), Some(Ok(len))) = (fields.next(), fields.next()) {
            done.1.insert(n, (offset, len));
        }
    }
    Ok(done)
}

impl WriteLock<'_> {
    /// Open (creating it when absent) the partial of the blob `digest`, `size` bytes long,
    /// with the chunks already done. Anything but a regular file at its path is replaced, and
    /// a list without its partial (or with a replaced one) is forgotten.
    pub fn partial(&self, digest: &Digest, size: u64) -> Result<Partial<'_>> {
        if digest.algorithm().is_none() {
            return Err(Error::Unverifiable(digest.clone()));
        }
        let dir = self.layout.create_blobs_dir(digest.algorithm_str())?;
        let (path, list_path) = partial_paths(&dir, digest);
        let absent =
            matches!(fs::symlink_metadata(&path), Err(e) if e.kind() == io::ErrorKind::NotFound);
        let (file, replaced) = open_store_rw(&path)?;
        let (done, extents) = if absent || replaced {
            remove_if_present(&list_path)?;
            Done::default()
        } else {
            read_list(&list_path)?
        };
        file.set_len(size).map_err(|e| Error::io(&path, e))?;
        Ok(Partial {
            layout: self.layout,
            digest: digest.clone(),
            size,
            path,
            list_path,
            file,
            list: None,
            done,
            extents,
        })
    }

    /// The chunks of `digest` its partial already holds, without creating or changing
    /// anything (for a dry run).
    pub fn partial_chunks_done(&self, digest: &Digest) -> Result<BTreeSet<usize>> {
        Ok(self.partial_chunks(digest)?.0)
    }

    /// [`WriteLock::partial_chunks_done`] with the extents ([`Partial::extents`]).
    pub(crate) fn partial_chunks(&self, digest: &Digest) -> Result<Done> {
        let Some(dir) = self.layout.blobs_dir(digest.algorithm_str())? else {
            return Ok(Done::default());
        };
        read_list(&partial_paths(&dir, digest).1)
    }
}

impl Partial<'_> {
    /// The blob being assembled.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The chunks accepted so far, in this run or an earlier one.
    pub fn done_chunks(&self) -> &BTreeSet<usize> {
        &self.done
    }

    /// Where the done chunks are: number -> (offset, length), for the chunks the list records
    /// them for (all but those of a list written before extents were recorded).
    pub fn extents(&self) -> &BTreeMap<usize, (u64, u64)> {
        &self.extents
    }

    /// Write chunk `n`, `len` bytes read from `reader` (`source` names it in read errors), at
    /// `offset`, hashing what is written; fsynced when the layout is durable. A chunk that does
    /// not fit in the blob, or a reader that ends early, is refused ([`Error::Invalid`]). The
    /// chunk counts only once [`Partial::accept`]ed.
    pub fn write_chunk(
        &mut self,
        n: usize,
        offset: u64,
        len: u64,
        reader: &mut dyn Read,
        source: &Path,
    ) -> Result<WrittenChunk> {
        if offset.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(Error::Invalid {
                what: source.display().to_string(),
                reason: format!(
                    "chunk {n} of blob `{}` ({len} bytes at offset {offset}) does not fit in its {} bytes",
                    self.digest, self.size
                ),
            });
        }
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io(&self.path, e))?;
        let mut h = Algorithm::Sha256.hasher();
        let mut reader = reader.take(len);
        let mut count = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let k = reader.read(&mut buf).map_err(|e| Error::io(source, e))?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            self.file.write_all(&buf[..k]).map_err(|e| Error::Write {
                path: self.path.clone(),
                source: e,
            })?;
            count += k as u64;
        }
        if count != len {
            return Err(Error::Invalid {
                what: source.display().to_string(),
                reason: format!(
                    "chunk {n} of blob `{}` ends after {count} of its {len} bytes",
                    self.digest
                ),
            });
        }
        if self.layout.opts.durable {
            self.file.sync_all().map_err(|e| Error::Write {
                path: self.path.clone(),
                source: e,
            })?;
        }
        Ok(WrittenChunk {
            blob: self.digest.clone(),
            n,
            offset,
            len,
            digest: h.finish(),
        })
    }

    /// Accept a written chunk when its bytes hash to `claimed` (the digest its source gives,
    /// as text): it is added to the list (fsynced when durable) and counts as done. Otherwise
    /// [`Error::ChunkMismatch`], and the chunk stays not done (to be written again).
    pub fn accept(&mut self, chunk: WrittenChunk, claimed: &str) -> Result<()> {
        if chunk.blob != self.digest {
            return Err(Error::Invalid {
                what: self.path.display().to_string(),
                reason: format!(
                    "chunk {} was written for blob `{}`, not this one",
                    chunk.n, chunk.blob
                ),
            });
        }
        if chunk.digest.as_str() != claimed {
            return Err(Error::ChunkMismatch {
                digest: self.digest.clone(),
                chunk: chunk.n,
                found: Box::new(chunk.digest),
                claimed: claimed.into(),
            });
        }
        let list = match &mut self.list {
            Some(f) => f,
            None => {
                let (f, _) = open_store_rw(&self.list_path)?;
                self.list.insert(f)
            }
        };
        let p = &self.list_path;
        list.seek(SeekFrom::End(0)).map_err(|e| Error::io(p, e))?;
        let failed = |e| Error::Write {
            path: p.clone(),
            source: e,
        };
        writeln!(list, "{} {} {}", chunk.n, chunk.offset, chunk.len).map_err(failed)?;
        if self.layout.opts.durable {
            list.sync_all().map_err(failed)?;
        }
        self.done.insert(chunk.n);
        self.extents.insert(chunk.n, (chunk.offset, chunk.len));
        Ok(())
    }

    /// Verify the whole blob (size and digest), fsync it when the layout is durable (an
    /// earlier `--no-fsync` run may have written chunks to the page cache only), rename it into
    /// place and remove the list. A blob that does not verify is discarded, to be assembled
    /// again, and the mismatch returned.
    pub fn finish(mut self) -> Result<()> {
        let alg = self
            .digest
            .algorithm()
            .ok_or_else(|| Error::Unverifiable(self.digest.clone()))?;
        let verified = self
            .file
            .seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(&self.path, e))
            .and_then(|_| {
                let mut v = VerifyingReader::new(
                    &self.file,
                    alg.hasher(),
                    self.digest.clone(),
                    Some(self.size),
                    self.path.clone(),
                );
                copy_large(&mut v, &mut io::sink()).map_err(|e| unwrap_io(e, &self.path))
            });
        if let Err(e) = verified {
            // A bad assembly: start this blob over.
            let _ = fs::remove_file(&self.path);
            let _ = fs::remove_file(&self.list_path);
            return Err(e);
        }
        if self.layout.opts.durable {
            self.file.sync_all().map_err(|e| Error::Write {
                path: self.path.clone(),
                source: e,
            })?;
        }
        let dest = self.layout.blob_path(&self.digest);
        fs::rename(&self.path, &dest).map_err(|e| Error::io(&dest, e))?;
        let _ = fs::remove_file(&self.list_path);
        Ok(())
    }

    /// Give up on this blob: remove the partial and its list.
    pub fn discard(self) -> Result<()> {
        remove_if_present(&self.path)?;
        remove_if_present(&self.list_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::scratch;

    const BLOB: &[u8] = b"0123456789abcdefghij";

    fn paths(l: &Layout, d: &Digest) -> (PathBuf, PathBuf) {
        partial_paths(&l.root().join("blobs/sha256"), d)
    }

    fn put(p: &mut Partial<'_>, n: usize, at: usize, len: usize) -> WrittenChunk {
        p.write_chunk(
            n,
            at as u64,
            len as u64,
            &mut &BLOB[at..at + len],
            Path::new("part"),
        )
        .expect("write")
    }

    #[test]
    fn chunks_in_any_order_resume_and_finish_verified() {
        let (_d, l) = scratch();
        let lock = l.lock().expect("lock");
        let digest = Digest::sha256(BLOB);
        let size = BLOB.len() as u64;
        assert!(lock.partial_chunks_done(&digest).expect("done").is_empty());
        let (path, list) = paths(&l, &digest);
        assert!(!path.exists(), "a dry-run query creates nothing");

        let mut p = lock.partial(&digest, size).expect("partial");
        let c = put(&mut p, 1, 10, 10);
        assert_eq!(c.digest(), &Digest::sha256(&BLOB[10..]));
        let claimed = c.digest().to_string();
        p.accept(c, &claimed).expect("accept");
        drop(p);
        assert_eq!(fs::read_to_string(&list).expect("list"), "1 10 10\n");
        assert_eq!(
            lock.partial_chunks_done(&digest).expect("done"),
            BTreeSet::from([1])
        );

        // Another run resumes from the list.
        let mut p = lock.partial(&digest, size).expect("reopen");
        assert_eq!(p.done_chunks(), &BTreeSet::from([1]));
        let c = put(&mut p, 0, 0, 10);
        let claimed = c.digest().to_string();
        p.accept(c, &claimed).expect("accept");
        p.finish().expect("finish");
        assert_eq!(l.read_blob(&digest, Some(size), 100).expect("read"), BLOB);
        assert!(!path.exists() && !list.exists());
    }

    #[test]
    fn a_corrupt_chunk_is_refused_and_not_counted() {
        let (_d, l) = scratch();
        let lock = l.lock().expect("lock");
        let digest = Digest::sha256(BLOB);
        let mut p = lock.partial(&digest, BLOB.len() as u64).expect("partial");
        let c = p
            .write_chunk(0, 0, 10, &mut &b"0123456789"[..], Path::new("part"))
            .expect("write");
        let found = c.digest().clone();
        let claimed = Digest::sha256(b"something else").to_string();
        match p.accept(c, &claimed) {
            Err(e @ Error::ChunkMismatch { .. }) => assert_eq!(
                e.to_string(),
                format!(
                    "rejected chunk 0 of blob `{digest}`: its bytes hash to `{found}`, the part says `{claimed}`"
                )
            ),
            other => panic!("{other:?}"),
        }
        assert!(p.done_chunks().is_empty());
        assert!(!paths(&l, &digest).1.exists(), "nothing listed");
        // A chunk outside the blob, or shorter than announced, is refused.
        assert!(matches!(
            p.write_chunk(1, 15, 10, &mut &BLOB[..10], Path::new("part")),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(
            p.write_chunk(1, 10, 10, &mut &BLOB[..4], Path::new("part")),
            Err(Error::Invalid { .. })
        ));
        assert_eq!(
            fs::metadata(paths(&l, &digest).0).expect("stat").len(),
            BLOB.len() as u64,
            "the partial keeps the blob's size"
        );
    }

    #[test]
    fn finish_verifies_the_whole_and_starts_over_on_a_mismatch() {
        let (_d, l) = scratch();
        let lock = l.lock().expect("lock");
        let digest = Digest::sha256(BLOB);
        let mut p = lock.partial(&digest, BLOB.len() as u64).expect("partial");
        // Each chunk is what its source claims, but the source lied about the blob.
        for (n, piece) in [&b"0123456789"[..], b"ABCDEFGHIJ"].into_iter().enumerate() {
            let c = p
                .write_chunk(n, n as u64 * 10, 10, &mut &piece[..], Path::new("part"))
                .expect("write");
            let claimed = c.digest().to_string();
            p.accept(c, &claimed).expect("accept");
        }
        assert!(matches!(p.finish(), Err(Error::DigestMismatch { .. })));
        let (path, list) = paths(&l, &digest);
        assert!(!path.exists() && !list.exists(), "started over");
        assert_eq!(l.blob_size(&digest).expect("size"), None);

        // discard removes both files.
        let mut p = lock.partial(&digest, BLOB.len() as u64).expect("partial");
        let c = put(&mut p, 0, 0, 10);
        let claimed = c.digest().to_string();
        p.accept(c, &claimed).expect("accept");
        p.discard().expect("discard");
        assert!(!path.exists() && !list.exists());
    }

    #[test]
    fn a_planted_partial_link_is_replaced_not_followed() {
        let (d, l) = scratch();
        let lock = l.lock().expect("lock");
        let digest = Digest::sha256(BLOB);
        let (path, list) = paths(&l, &digest);
        let victim = d.path().join("victim");
        let victim_list = d.path().join("victim-list");
        fs::write(&victim, b"precious").expect("write");
        fs::write(&victim_list, b"0\n1\n").expect("write");
        std::os::unix::fs::symlink(&victim, &path).expect("symlink");
        std::os::unix::fs::symlink(&victim_list, &list).expect("symlink");

        let mut p = lock.partial(&digest, BLOB.len() as u64).expect("partial");
        assert!(p.done_chunks().is_empty(), "the planted list is forgotten");
        for (n, at) in [(0, 0), (1, 10)] {
            let c = put(&mut p, n, at, 10);
            let claimed = c.digest().to_string();
            p.accept(c, &claimed).expect("accept");
        }
        assert!(fs::symlink_metadata(&path).expect("stat").is_file());
        assert!(fs::symlink_metadata(&list).expect("stat").is_file());
        p.finish().expect("finish");
        assert_eq!(fs::read(&victim).expect("victim"), b"precious");
        assert_eq!(fs::read(&victim_list).expect("victim"), b"0\n1\n");
        assert_eq!(
            l.read_blob(&digest, Some(BLOB.len() as u64), 100)
                .expect("read"),
            BLOB
        );

        // A planted list alone is not read, and is replaced when a chunk is accepted.
        let other = Digest::sha256(b"other");
        let (opath, olist) = paths(&l, &other);
        fs::write(&opath, b"xxxxx").expect("write");
        std::os::unix::fs::symlink(&victim_list, &olist).expect("symlink");
        assert!(lock.partial_chunks_done(&other).expect("done").is_empty());
        let mut p = lock.partial(&other, 5).expect("partial");
        assert!(p.done_chunks().is_empty());
        let c = p
            .write_chunk(0, 0, 5, &mut &b"other"[..], Path::new("part"))
            .expect("write");
        let claimed = c.digest().to_string();
        p.accept(c, &claimed).expect("accept");
        assert!(fs::symlink_metadata(&olist).expect("stat").is_file());
        assert_eq!(fs::read(&victim_list).expect("victim"), b"0\n1\n");
    }

    #[test]
    fn a_list_without_its_partial_is_forgotten() {
        let (_d, l) = scratch();
        let lock = l.lock().expect("lock");
        let digest = Digest::sha256(BLOB);
        let (_, list) = paths(&l, &digest);
        fs::write(&list, b"0\n1\n").expect("write");
        let p = lock.partial(&digest, BLOB.len() as u64).expect("partial");
        assert!(p.done_chunks().is_empty());
        assert!(!list.exists());
    }
}
