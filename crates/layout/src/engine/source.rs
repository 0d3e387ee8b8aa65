//! [`ImageSource`]: what the engine reads images from.

use std::collections::BTreeMap;
use std::io::Read;

use crate::{Descriptor, Digest, Error, Index, Layout, Result};

/// Where images come from. Every read is verified against the digest (and the size, when
/// given); a mismatch is an error naming the digest. Nothing here assumes the source is local
/// or cheap: `stat` may cost a round trip, and nothing is read whole unless it is a document.
pub trait ImageSource: Sync {
    /// The source's roots: its `index.json` (or what stands for it).
    fn roots(&self) -> Result<Index>;

    /// A document's bytes, verified, at most `limit` bytes (larger is [`Error::TooLarge`]).
    fn read_document(&self, digest: &Digest, size: Option<u64>, limit: u64) -> Result<Vec<u8>>;

    /// The size of a blob the source holds, or `None` when it does not hold it.
    fn stat(&self, digest: &Digest) -> Result<Option<u64>>;

    /// A reader over a blob that fails at EOF unless the bytes match `digest` (and `size`).
    fn open(&self, digest: &Digest, size: Option<u64>) -> Result<Box<dyn Read + '_>>;

    /// A reader over a blob for a caller that verifies every byte itself (a sink whose
    /// [`ImageSink::verifies`](super::ImageSink::verifies) is true): the bytes are not hashed
    /// twice. Default: [`Self::open`].
    fn open_unverified(&self, digest: &Digest, size: Option<u64>) -> Result<Box<dyn Read + '_>> {
        self.open(digest, size)
    }

    /// The layout behind this source, when it is one on this machine (lets a transfer
    /// hard-link or copy in the kernel instead of streaming).
    fn local_layout(&self) -> Option<&Layout> {
        None
    }

    /// The manifests whose `subject` is `subject`, when the source can answer that question
    /// directly (a registry's referrers API or its fallback tag); `None` when it cannot, and
    /// the caller must find them by walking what the source holds.
    fn referrers(&self, _subject: &Digest) -> Result<Option<Vec<Descriptor>>> {
        Ok(None)
    }

    /// How many blobs a transfer should move at once when this is the source (a network
    /// source waits on round trips, not on the CPU). Default: the number of cores.
    fn parallelism(&self) -> usize {
        cores()
    }
}

/// The number of cores (2 when unknown).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

impl ImageSource for Layout {
    fn roots(&self) -> Result<Index> {
        Ok(self.read_index()?.value)
    }

    fn read_document(&self, digest: &Digest, size: Option<u64>, limit: u64) -> Result<Vec<u8>> {
        self.read_blob(digest, size, limit)
    }

    fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        self.blob_size(digest)
    }

    fn open(&self, digest: &Digest, size: Option<u64>) -> Result<Box<dyn Read + '_>> {
        Ok(Box::new(self.open_blob(digest, size)?))
    }

    fn open_unverified(&self, digest: &Digest, _size: Option<u64>) -> Result<Box<dyn Read + '_>> {
        Ok(Box::new(self.open_blob_unverified(digest)?))
    }

    fn local_layout(&self) -> Option<&Layout> {
        Some(self)
    }
}

/// A source with documents made in memory (a filtered index, say) on top of another source.
#[derive(Debug)]
pub struct Overlay<'a, S: ?Sized> {
    base: &'a S,
    docs: &'a BTreeMap<Digest, Vec<u8>>,
}

impl<'a, S: ImageSource + ?Sized> Overlay<'a, S> {
    /// `docs` (by digest; their bytes hash to it) over `base`.
    pub fn new(base: &'a S, docs: &'a BTreeMap<Digest, Vec<u8>>) -> Self {
        Overlay { base, docs }
    }

    /// The documents made in memory.
    pub fn documents(&self) -> &'a BTreeMap<Digest, Vec<u8>> {
        self.docs
    }
}

impl<S: ImageSource + ?Sized> ImageSource for Overlay<'_, S> {
    fn roots(&self) -> Result<Index> {
        self.base.roots()
    }

    fn read_document(&self, digest: &Digest, size: Option<u64>, limit: u64) -> Result<Vec<u8>> {
        match self.docs.get(digest) {
            Some(b) => {
                if b.len() as u64 > limit {
                    return Err(Error::TooLarge {
                        what: digest.to_string(),
                        size: b.len() as u64,
                        limit,
                    });
                }
                check_size(digest, size, b.len() as u64)?;
                Ok(b.clone())
            }
            None => self.base.read_document(digest, size, limit),
        }
    }

    fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match self.docs.get(digest) {
            Some(b) => Ok(Some(b.len() as u64)),
            None => self.base.stat(digest),
        }
    }

    fn open(&self, digest: &Digest, size: Option<u64>) -> Result<Box<dyn Read + '_>> {
        match self.docs.get(digest) {
            Some(b) => {
                check_size(digest, size, b.len() as u64)?;
                Ok(Box::new(b.as_slice()))
            }
            None => self.base.open(digest, size),
        }
    }

    fn open_unverified(&self, digest: &Digest, size: Option<u64>) -> Result<Box<dyn Read + '_>> {
        match self.docs.get(digest) {
            Some(_) => self.open(digest, size),
            None => self.base.open_unverified(digest, size),
        }
    }

    fn local_layout(&self) -> Option<&Layout> {
        self.base.local_layout()
    }

    fn referrers(&self, subject: &Digest) -> Result<Option<Vec<Descriptor>>> {
        self.base.referrers(subject)
    }

    fn parallelism(&self) -> usize {
        self.base.parallelism()
    }
}

fn check_size(digest: &Digest, expected: Option<u64>, found: u64) -> Result<()> {
    match expected {
        Some(e) if e != found => Err(Error::SizeMismatch {
            digest: digest.clone(),
            expected: e,
            found,
            path: "(in memory)".into(),
        }),
        _ => Ok(()),
    }
}
