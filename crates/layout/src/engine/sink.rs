//! [`ImageSink`]: what the engine writes images into.

use std::io::Read;

use crate::layout::{Copied, Existing};
use crate::{unwrap_io, Descriptor, Digest, Error, Layout, Result, WriteLock};

use super::{merge_entry, Moved, PlannedBlob, RefUpdate};

/// Where images go: a layout under its writer lock (and, next, a registry). Shaped for a slow,
/// remote, fallible destination: `existing` may cost a round trip, blobs arrive as streams and
/// are verified by the sink against their digest, and refs are committed last, in one call,
/// after every blob is in place.
pub trait ImageSink: Sync {
    /// Whether the sink holds the blob intact (size and digest checked), holds a corrupt copy
    /// (to be replaced), or does not hold it.
    fn existing(&self, digest: &Digest, size: u64) -> Result<Existing>;

    /// Take the blob from a layout on this machine the cheap way (a hard link, a kernel copy),
    /// verified; `None` when this sink cannot (the caller streams it with [`Self::put_blob`]).
    fn link_from(&self, _src: &Layout, _digest: &Digest, _size: u64) -> Result<Option<Moved>> {
        Ok(None)
    }

    /// Take a blob from a reader; fails, keeping nothing, unless the bytes are `size` bytes
    /// hashing to `digest`.
    fn put_blob(&self, digest: &Digest, size: u64, r: &mut dyn Read) -> Result<()>;

    /// Whether `put_blob` checks every byte against the digest and size itself (a layout
    /// does); a transfer then reads the source without hashing it a second time.
    fn verifies(&self) -> bool {
        false
    }

    /// Whether the sink holds a manifest or index (a registry keeps those apart from blobs).
    fn existing_document(&self, digest: &Digest, size: u64) -> Result<Existing> {
        self.existing(digest, size)
    }

    /// Take a manifest or index, whose bytes hash to `blob.digest`. A transfer puts a document
    /// only after every blob and document it names (a registry refuses a manifest whose blobs
    /// it lacks).
    fn put_document(&self, blob: &PlannedBlob, bytes: &[u8]) -> Result<()> {
        self.put_blob(&blob.digest, bytes.len() as u64, &mut &bytes[..])
    }

    /// How many blobs a transfer should move at once into this sink. Default: the number of
    /// cores.
    fn parallelism(&self) -> usize {
        super::source::cores()
    }

    /// Point the sink's refs at `entries` (their ref names in the descriptors' annotations) by
    /// the one merge rule ([`merge_entry`]), in one commit.
    fn commit(&self, entries: &[Descriptor]) -> Result<Vec<RefUpdate>>;
}

/// Blobs from this size on are copied with reading and writing on two threads.
const PIPELINE_FROM: u64 = 8 << 20;

impl ImageSink for WriteLock<'_> {
    fn existing(&self, digest: &Digest, size: u64) -> Result<Existing> {
        self.existing_blob(digest, size)
    }

    fn link_from(&self, src: &Layout, digest: &Digest, size: u64) -> Result<Option<Moved>> {
        if src.blob_size(digest)?.is_none() {
            return Ok(None);
        }
        Ok(Some(match self.link_or_copy_from(src, digest, size)? {
            Copied::Present => Moved::Present,
            Copied::Linked => Moved::Linked,
            Copied::Copied => Moved::Copied,
            Copied::Replaced => Moved::Replaced,
        }))
    }

    fn verifies(&self) -> bool {
        true
    }

    fn put_blob(&self, digest: &Digest, size: u64, r: &mut dyn Read) -> Result<()> {
        let alg = digest
            .algorithm()
            .ok_or_else(|| Error::Unverifiable(digest.clone()))?;
        let mut w = self.blob_writer_for(alg)?;
        let path = self.layout().blob_path(digest);
        // Large blobs: receive and hash/write at once (a network source waits on its peer).
        if size >= PIPELINE_FROM {
            crate::layer::copy_pipelined(r, &mut w).map_err(|e| unwrap_io(e, &path))?;
        } else {
            crate::layer::copy_large(r, &mut w).map_err(|e| unwrap_io(e, &path))?;
        }
        w.finish_expect(digest, Some(size))?;
        Ok(())
    }

    fn commit(&self, entries: &[Descriptor]) -> Result<Vec<RefUpdate>> {
        let mut index = self.layout().read_index()?.value;
        let updates = entries
            .iter()
            .map(|e| merge_entry(&mut index, e))
            .collect::<Result<Vec<_>>>()?;
        self.commit_index(&index)?;
        Ok(updates)
    }
}
