//! `gc`: delete what nothing in `index.json` reaches.
//!
//! Marks from every root through the [`Walk`] (nested indexes, Docker and OCI manifests,
//! configs, layers and `subject`), reading only manifests and indexes — never hashing layers.
//! Deletes unreachable blobs of any algorithm and leftover temp files, under the writer lock.
//! If a reachable manifest or index is missing, corrupt or unparseable, gc cannot know what it
//! keeps alive, so it deletes nothing and reports it.

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;

use crate::fsck::list_blobs;
use crate::layout::{sync_dir, TEMP_PREFIX};
use crate::walk::Walk;
use crate::{Digest, Error, Layout, Result};

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

/// Collect garbage in `layout`.
pub fn gc(layout: &Layout, dry_run: bool) -> Result<GcReport, GcError> {
    let lock = layout.lock()?;
    let index = layout.read_index()?;
    let walk = Walk::from_index(layout, &index.value);
    let mut blocked = Vec::new();
    for n in &walk.nodes {
        let Some(why) = n.unreadable() else { continue };
        if !blocked.iter().any(|(d, _)| d == n.digest()) {
            blocked.push((n.digest().clone(), why));
        }
    }
    if !blocked.is_empty() {
        return Err(GcError::Blocked(blocked));
    }
    let reachable: HashSet<&Digest> = walk.nodes.iter().map(|n| n.digest()).collect();
    let mut report = GcReport {
        dry_run,
        ..GcReport::default()
    };
    let mut dirs = HashSet::new();
    for (digest, path) in list_blobs(layout)? {
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match digest {
            Some(d) if !reachable.contains(&d) => {
                report.bytes += size;
                report.blobs.push((d, size));
            }
            None if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(TEMP_PREFIX)) =>
            {
                report.bytes += size;
                report.temp_files.push(path.clone());
            }
            _ => continue,
        }
        if !dry_run {
            crate::fault::point("gc-mid-delete");
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            if let Some(parent) = path.parent() {
                dirs.insert(parent.to_path_buf());
            }
        }
    }
    // Temp files of interrupted index.json writes, in the root.
    if let Ok(entries) = fs::read_dir(layout.root()) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                && e.file_type().is_ok_and(|t| t.is_file())
            {
                report.temp_files.push(e.path());
                if !dry_run {
                    fs::remove_file(e.path()).map_err(|err| Error::io(e.path(), err))?;
                }
            }
        }
    }
    if layout.options().durable {
        for d in dirs {
            sync_dir(&d)?;
        }
    }
    drop(lock);
    report.blobs.sort();
    report.temp_files.sort();
    Ok(report)
}
