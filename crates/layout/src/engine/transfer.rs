//! [`transfer()`]: move what a plan names into a layout.

use crate::copy::{copy_blob, Copied};
use crate::fsck::run_parallel;
use crate::layout::Existing;
use crate::{unwrap_io, Descriptor, Error, Result, WriteLock};

use super::{ImageSource, Plan, PlannedBlob};

/// How one blob reached the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// The destination already had it (verified).
    Present,
    /// Hard-linked from a layout on the same filesystem (after verifying it).
    Linked,
    /// Copied or streamed, verified on the way.
    Copied,
    /// The destination had a corrupt file in its place; replaced by the source's bytes.
    Replaced,
    /// Optional and absent from the source: not carried.
    Absent,
}

/// What [`transfer()`] did, blob by blob.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferReport {
    /// Blobs hard-linked.
    pub linked: usize,
    /// Blobs copied or streamed.
    pub copied: usize,
    /// Blobs the destination already had (size and digest checked).
    pub present: usize,
    /// Blobs the destination had corrupt (wrong size or digest), replaced.
    pub replaced: usize,
    /// Optional blobs the source does not have (a `subject` elsewhere, a foreign layer).
    pub absent: usize,
}

impl TransferReport {
    fn count(&mut self, m: Moved) {
        match m {
            Moved::Present => self.present += 1,
            Moved::Linked => self.linked += 1,
            Moved::Copied => self.copied += 1,
            Moved::Replaced => self.replaced += 1,
            Moved::Absent => self.absent += 1,
        }
    }
}

/// Move every blob of `plan` for which `wanted` is true from `src` into the layout `dst` holds
/// the lock of: in parallel, every byte verified, blobs the destination has kept. Commits
/// nothing to `index.json`: the caller merges its entries ([`super::merge_entry`]) and commits
/// once, after every blob is in place.
pub fn transfer<S: ImageSource + ?Sized>(
    src: &S,
    plan: &Plan,
    wanted: impl Fn(&PlannedBlob) -> bool + Sync,
    dst: &WriteLock<'_>,
) -> Result<TransferReport> {
    let items: Vec<&PlannedBlob> = plan.blobs.iter().filter(|b| wanted(b)).collect();
    let results = run_parallel(&items, |b| Some(move_one(src, b, dst)));
    let mut report = TransferReport::default();
    for r in results.into_iter().flatten() {
        report.count(r?);
    }
    Ok(report)
}

fn move_one<S: ImageSource + ?Sized>(
    src: &S,
    b: &PlannedBlob,
    dst: &WriteLock<'_>,
) -> Result<Moved> {
    let held = if b.optional || b.size.is_none() {
        match src.stat(&b.digest)? {
            None if b.optional => return Ok(Moved::Absent),
            None => {
                // Open it for the source's own "missing" error.
                src.open(&b.digest, b.size)?;
                return Err(Error::BadDocument {
                    digest: b.digest.clone(),
                    reason: "is missing".into(),
                });
            }
            s => s,
        }
    } else {
        None
    };
    let size = b.size.or(held).unwrap_or_default();
    if let Some(layout) = src.local_layout() {
        if layout.blob_size(&b.digest)?.is_some() {
            let desc = Descriptor::new(b.media_type.clone(), b.digest.clone(), size);
            return Ok(match copy_blob(layout, dst, &desc)? {
                Copied::Present => Moved::Present,
                Copied::Linked => Moved::Linked,
                Copied::Copied => Moved::Copied,
                Copied::Replaced => Moved::Replaced,
            });
        }
    }
    let replacing = match dst.existing_blob(&b.digest, size)? {
        Existing::Intact => return Ok(Moved::Present),
        Existing::Corrupt => true,
        Existing::Absent => false,
    };
    let alg = b
        .digest
        .algorithm()
        .ok_or_else(|| Error::Unverifiable(b.digest.clone()))?;
    let mut r = src.open(&b.digest, Some(size))?;
    let mut w = dst.blob_writer_for(alg)?;
    let where_ = dst.layout().blob_path(&b.digest);
    crate::layer::copy_large(&mut r, &mut w).map_err(|e| unwrap_io(e, &where_))?;
    w.finish_expect(&b.digest, Some(size))?;
    Ok(if replacing {
        Moved::Replaced
    } else {
        Moved::Copied
    })
}
