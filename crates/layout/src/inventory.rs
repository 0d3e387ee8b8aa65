//! Inventories: what a layout holds, as a small versioned JSON file the far side of an air gap
//! carries back, so the next bundle leaves out what it already has.
//!
//! Shape (version 1), sorted and byte-reproducible (no timestamps):
//! `{"ocikitInventory": 1, "blobs": [{"digest", "size"}...], "refs": [{"name", "digest"}...]}`.
//! `blobs` lists every blob file present, reachable or not; `refs` every named `index.json`
//! entry.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{BlobFileKind, Digest, Error, Layout, Result};

/// The inventory format version ocikit writes and reads.
pub const INVENTORY_VERSION: u32 = 1;

/// What a layout holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Format version.
    #[serde(rename = "ocikitInventory")]
    pub version: u32,
    /// Every blob present, sorted by digest.
    pub blobs: Vec<InventoryBlob>,
    /// Every ref, sorted by name then digest.
    pub refs: Vec<InventoryRef>,
}

/// A blob in an inventory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InventoryBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size on disk.
    pub size: u64,
}

/// A ref in an inventory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InventoryRef {
    /// The ref name.
    pub name: String,
    /// What it points at.
    pub digest: Digest,
}

impl Inventory {
    /// Take the inventory of a layout.
    pub fn of(layout: &Layout) -> Result<Inventory> {
        // The refs first, so that the parsed index.json is gone before the blobs are listed.
        let mut refs: Vec<InventoryRef> = layout
            .read_index()?
            .value
            .manifests
            .into_iter()
            .filter_map(|d| {
                d.ref_name().map(|n| InventoryRef {
                    name: n.to_string(),
                    digest: d.digest.clone(),
                })
            })
            .collect();
        refs.sort_unstable();
        let mut blobs = Vec::new();
        layout.each_blob_file_sized(|f, size| {
            if let BlobFileKind::Blob(digest) = f.kind {
                blobs.push(InventoryBlob { digest, size });
            }
            Ok(())
        })?;
        blobs.sort_unstable();
        Ok(Inventory {
            version: INVENTORY_VERSION,
            blobs,
            refs,
        })
    }

    /// The file's bytes: pretty JSON and a newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        let _ = self.write_to(&mut v);
        v
    }

    /// Write the file's bytes ([`Inventory::to_bytes`]) to `w`, streamed.
    pub fn write_to(&self, w: &mut dyn Write) -> std::io::Result<()> {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, w);
        serde_json::to_writer_pretty(&mut w, self)?;
        w.write_all(b"\n")?;
        w.flush()
    }

    /// Write the inventory of the layout at `root` to the file `path` (not inside that layout),
    /// whole or not at all (see [`crate::output::write_atomically`]); fsynced when `durable`.
    pub fn write_file(&self, path: &Path, root: &Path, durable: bool) -> Result<()> {
        crate::output::refuse_inside(path, root)?;
        crate::output::write_atomically(path, durable, |w| {
            self.write_to(w).map_err(|e| Error::io(path, e))
        })?;
        Ok(())
    }

    /// Read an inventory file.
    pub fn read(path: &Path) -> Result<Inventory> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let what = path.display().to_string();
        if bytes.len() as u64 > 256 << 20 {
            return Err(Error::TooLarge {
                what,
                size: bytes.len() as u64,
                limit: 256 << 20,
            });
        }
        let inv: Inventory = serde_json::from_slice(&bytes).map_err(|e| Error::Json {
            what: what.clone(),
            source: e,
        })?;
        if inv.version != INVENTORY_VERSION {
            return Err(Error::Invalid {
                what,
                reason: format!(
                    "inventory version {} is not supported (expected {INVENTORY_VERSION})",
                    inv.version
                ),
            });
        }
        Ok(inv)
    }

    /// The digest of this inventory's bytes (how a bundle names the inventories it was cut
    /// against).
    pub fn digest(&self) -> Digest {
        Digest::sha256(&self.to_bytes())
    }
}
