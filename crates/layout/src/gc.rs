//! `gc`: delete what nothing in `index.json` reaches.
//!
//! Marks from every root with [`reach`] (nested indexes, Docker and OCI manifests, configs,
//! layers and `subject`: the documents the `Walk` reads, read the same way), reading only
//! manifests and indexes — never hashing layers — and keeping only the reachable digests
//! (one sorted list, sha256 digests as 32 bytes), not the tree. Meanwhile another thread lists
//! `blobs/<alg>/` through the store, keeping sha256 blobs as 32 bytes too; what is listed and
//! not reached is one merge of the two sorted lists, and only it is turned back into paths
//! and deleted. Memory and time grow linearly with the number of blobs (510,000 blobs: about
//! 16 MB per list).
//!
//! What gc deletes, under the writer lock, is only what the store itself writes:
//! - files in `blobs/sha256/` and `blobs/sha512/` whose names are valid encodings of that
//!   algorithm and that nothing reachable names;
//! - its temp files (`.tmp-*`, there and in the layout root);
//! - bundle partials (`.partial-*`, `.partial-*.chunks`): gc holds the writer lock, so no load
//!   is using them (a later load of the same bundle starts those blobs over).
//!
//! Anything else (other names, other algorithms' directories, links, FIFOs) is left alone. The
//! listing is the store's [`Layout::blob_files`], which refuses a `blobs/` or `blobs/<alg>` that is
//! a symbolic link or not a directory, and the deleting is the store's [`crate::Removal`], which
//! checks each entry again (its directory, its name, a regular file) before unlinking it, so gc
//! never deletes outside the layout.
//! If a reachable manifest or index is missing, corrupt or unparseable, gc cannot know what it
//! keeps alive, so it deletes nothing and reports it.

use std::path::PathBuf;

use crate::walk::{reach, Root};
use crate::{Algorithm, BlobFile, BlobFileKind, Digest, Error, Layout, Result};

/// What gc removed (or, with `dry_run`, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Unreachable blobs, sorted by digest, with their sizes.
    pub blobs: Vec<(Digest, u64)>,
    /// Leftover temp files.
    pub temp_files: Vec<PathBuf>,
    /// Bytes freed.
    pub bytes: u64,
    /// True when nothing was deleted because of `dry_run`.
    pub dry_run: bool,
}

/// Why gc refused to delete anything.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// Reading the layout failed.
    #[error(transparent)]
    Layout(#[from] Error),
    /// A reachable document cannot be read, so what it keeps alive is unknown.
    #[error("gc deleted nothing: {} reachable document(s) cannot be read: {}", .0.len(), .0.iter().map(|(d, why)| format!("`{d}` ({why})")).collect::<Vec<_>>().join(", "))]
    Blocked(Vec<(Digest, String)>),
}

/// What gc's listing keeps: sha256 blobs as their bytes, and what else it may delete (blobs
/// of other known algorithms, temp files, partials), all in directory order.
struct Listed {
    sha256: Vec<[u8; 32]>,
    others: Vec<BlobFile>,
}

/// The store's listing of `blobs/`, reduced to what gc may delete.
fn list(layout: &Layout) -> Result<Listed> {
    let mut out = Listed {
        sha256: Vec::new(),
        others: Vec::new(),
    };
    layout.each_blob_file(|f| {
        if let BlobFileKind::Blob(d) = &f.kind {
            if let Some(b) = d.sha256_bytes() {
                out.sha256.push(b);
                return Ok(());
            }
        }
        let known_alg = f
            .path
            .parent()
            .and_then(|d| d.file_name())
            .is_some_and(|n| Algorithm::ALL.iter().any(|a| n == a.as_str()));
        let may_go = match &f.kind {
            BlobFileKind::Blob(d) => d.algorithm().is_some(),
            BlobFileKind::Temp | BlobFileKind::Partial => true,
            BlobFileKind::Other => false,
        };
        if known_alg && may_go {
            out.others.push(f);
        }
        Ok(())
    })?;
    Ok(out)
}

/// Collect garbage in `layout`.
pub fn gc(layout: &Layout, dry_run: bool) -> Result<GcReport, GcError> {
    let lock = layout.lock()?;
    // Only what marking needs of the entries: a large index.json's annotations and bytes are
    // not kept while it runs.
    let manifests = layout.read_index()?.value.manifests;
    // A new vector, not collected in place: that would keep the entries' larger allocation.
    let mut roots: Vec<Root> = Vec::with_capacity(manifests.len());
    roots.extend(
        manifests
            .into_iter()
            .map(|d| (d.digest, d.media_type, d.size)),
    );
    // The listing runs beside the marking (gc holds the writer lock, so nothing is added
    // meanwhile); what it keeps is compact: a sha256 blob is its 32 bytes.
    let (reach, listed) = std::thread::scope(|s| {
        let lister = s.spawn(|| list(layout));
        let reach = reach(layout, roots);
        let listed = lister.join().unwrap_or_else(|_| {
            Err(Error::io(
                layout.root(),
                std::io::Error::other("listing failed"),
            ))
        });
        (reach, listed)
    });
    if !reach.unreadable.is_empty() {
        return Err(GcError::Blocked(reach.unreadable));
    }
    let Listed {
        sha256: mut listed_sha256,
        others,
    } = listed?;
    let reachable = reach.digests;
    let mut report = GcReport {
        dry_run,
        ..GcReport::default()
    };
    let mut removal = lock.removal();
    // The store listed `blobs/<alg>/` (refusing a `blobs` or `blobs/<alg>` that is a link, so
    // nothing outside the layout is ever deleted) and deletes (checking again what it is given).
    // Only what the store itself writes goes: unreachable blobs of an algorithm ocikit knows,
    // its temp files and bundle partials (gc holds the writer lock, so no load is using them).
    // Anything else is left alone.
    // Listed and reachable, both sorted: what is listed and not reached, in one merge.
    listed_sha256.sort_unstable();
    let mut reached = reachable.sha256().iter().peekable();
    let unreachable = listed_sha256
        .into_iter()
        .filter(move |b| {
            while reached.next_if(|r| *r < b).is_some() {}
            reached.peek() != Some(&b)
        })
        .map(|b| {
            let d = Digest::from_sha256_bytes(&b);
            BlobFile {
                path: layout.blob_path(&d),
                kind: BlobFileKind::Blob(d),
            }
        });
    for f in unreachable.chain(others) {
        let size = match &f.kind {
            BlobFileKind::Blob(d) if d.algorithm().is_some() && !reachable.contains(d) => {
                let size = f.size()?;
                report.blobs.push((d.clone(), size));
                size
            }
            BlobFileKind::Temp | BlobFileKind::Partial => {
                report.temp_files.push(f.path.clone());
                f.size()?
            }
            _ => continue,
        };
        report.bytes += size;
        if !dry_run {
            crate::fault::point("gc-mid-delete");
            removal.remove(&f)?;
        }
    }
    // Temp files of interrupted index.json writes, in the root.
    for path in layout.root_temp_files()? {
        report.temp_files.push(path.clone());
        if !dry_run {
            removal.remove_root_temp(&path)?;
        }
    }
    // The directories deleted from are fsynced when the layout is durable.
    removal.finish()?;
    drop(lock);
    report.blobs.sort();
    report.temp_files.sort();
    Ok(report)
}
