//! `gc`: delete what nothing in `index.json` reaches.
//!
//! Marks from every root with [`reach`] (nested indexes, Docker and OCI manifests, configs,
//! layers and `subject`: the documents the `Walk` reads, read the same way), reading only
//! manifests and indexes — never hashing layers — and keeping only the set of reachable
//! digests, not the tree. Then one streaming pass over each `blobs/<alg>/` directory deletes
//! what is not in the set; only the deleted entries are kept for the report. Memory and time
//! grow linearly with the number of blobs.
//! Deletes unreachable blobs of any algorithm and leftover temp files, under the writer lock.
//! If a reachable manifest or index is missing, corrupt or unparseable, gc cannot know what it
//! keeps alive, so it deletes nothing and reports it.

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::layout::{sync_dir, TEMP_PREFIX};
use crate::walk::reach;
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
    let reach = reach(layout, &index.value);
    if !reach.unreadable.is_empty() {
        return Err(GcError::Blocked(reach.unreadable));
    }
    let reachable = reach.digests;
    let mut report = GcReport {
        dry_run,
        ..GcReport::default()
    };
    let mut dirs = Vec::new();
    let blobs = layout.root().join("blobs");
    let algs = match fs::read_dir(&blobs) {
        Ok(r) => r.flatten().collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(blobs, e).into()),
    };
    // One pass over each blob directory, streaming: only what is deleted is kept.
    let mut name = String::new();
    for alg in algs {
        if !alg.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let alg_name = alg.file_name().to_string_lossy().into_owned();
        let dir = alg.path();
        let entries = fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut deleted_here = false;
        for f in entries.flatten() {
            if !f.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let file_name = f.file_name();
            let file_name = file_name.to_string_lossy();
            name.clear();
            name.push_str(&alg_name);
            name.push(':');
            name.push_str(&file_name);
            let temp = file_name.starts_with(TEMP_PREFIX);
            let digest = match Digest::parse(&name) {
                Ok(d) if reachable.contains(&d) => continue,
                Ok(d) => Some(d),
                Err(_) if temp => None,
                Err(_) => continue,
            };
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            report.bytes += size;
            match digest {
                Some(d) => report.blobs.push((d, size)),
                None => report.temp_files.push(f.path()),
            }
            if !dry_run {
                crate::fault::point("gc-mid-delete");
                let path = f.path();
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                deleted_here = true;
            }
        }
        if deleted_here {
            dirs.push(dir);
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
