//! `copy`: layout to layout, by ref, platform and referrers.
//!
//! Selection is [`crate::select`]; blobs move with [`crate::copy::copy_blob`] (hard links on one
//! filesystem, verified copies otherwise), in parallel; filtered indexes are written as new
//! blobs; `index.json` of the destination is committed once, under its writer lock. An existing
//! ref in the destination moves to the copied image.

use crate::copy::{copy_blob, Copied};
use crate::fsck::run_parallel;
use crate::refs::{self, TagOutcome};
use crate::select::{select, SelectOptions};
use crate::{Descriptor, Digest, Error, Layout, MediaType, Result};

/// A blob to move: digest, declared size, and the bytes of a generated document.
type Item<'a> = (&'a Digest, Option<u64>, Option<&'a Vec<u8>>);

/// What [`copy`] did.
#[derive(Debug, Clone, Default)]
pub struct CopyReport {
    /// Entries created or moved: (ref name or digest, digest, digests the name moved from).
    pub entries: Vec<(String, Digest, Option<Vec<Digest>>)>,
    /// Blobs hard-linked.
    pub linked: usize,
    /// Blobs copied byte by byte (or written, for filtered indexes).
    pub copied: usize,
    /// Blobs the destination already had (size and digest checked).
    pub present: usize,
    /// Blobs the destination had corrupt (wrong size or digest), replaced by the source's.
    pub replaced: usize,
}

/// Copy what `opts` selects from `src` into `dst`.
pub fn copy(src: &Layout, dst: &Layout, opts: &SelectOptions) -> Result<CopyReport> {
    let sel = select(src, opts)?;
    let lock = dst.lock()?;
    let mut report = CopyReport::default();
    // Blobs that may be absent (external layers, subjects elsewhere) travel only if present.
    let mut items: Vec<Item<'_>> = Vec::new();
    for (d, b) in &sel.blobs {
        if b.optional && !b.generated && src.blob_size(d)?.is_none() {
            continue;
        }
        items.push((d, b.size, sel.documents.get(d)));
    }
    let results = run_parallel(&items, |(digest, size, doc)| -> Option<Result<Copied>> {
        Some(match doc {
            Some(bytes) => lock.write_blob(bytes).and_then(|(d, _)| {
                if &d == *digest {
                    Ok(Copied::Copied)
                } else {
                    Err(Error::DigestMismatch {
                        expected: (*digest).clone(),
                        found: d,
                        path: dst.blob_path(digest),
                    })
                }
            }),
            None => {
                let size = match size {
                    Some(s) => Ok(*s),
                    None => src.blob_size(digest).and_then(|s| {
                        s.ok_or_else(|| Error::MissingBlob {
                            digest: (*digest).clone(),
                            path: src.blob_path(digest),
                        })
                    }),
                };
                size.and_then(|s| {
                    copy_blob(
                        src,
                        &lock,
                        &Descriptor::new(MediaType::Other(String::new()), (*digest).clone(), s),
                    )
                })
            }
        })
    });
    for r in results.into_iter().flatten() {
        match r? {
            Copied::Present => report.present += 1,
            Copied::Linked => report.linked += 1,
            Copied::Copied => report.copied += 1,
            Copied::Replaced => report.replaced += 1,
        }
    }
    let mut index = dst.read_index()?.value;
    for e in &sel.entries {
        let mut entry = e.clone();
        entry.set_ref_name(None);
        match e.ref_name() {
            Some(name) => {
                let moved = match refs::tag(&mut index, &entry, name)? {
                    TagOutcome::Moved(from) => Some(from),
                    _ => None,
                };
                report
                    .entries
                    .push((name.to_string(), entry.digest.clone(), moved));
            }
            None => {
                if !index
                    .manifests
                    .iter()
                    .any(|m| m.digest == entry.digest && m.ref_name().is_none())
                {
                    index.manifests.push(entry.clone());
                }
                report
                    .entries
                    .push((entry.digest.to_string(), entry.digest.clone(), None));
            }
        }
    }
    lock.commit_index(&index)?;
    Ok(report)
}
