//! The one rule for putting entries into `index.json`, and what every verb reports of it.

use crate::refs::{self, TagOutcome};
use crate::{Descriptor, Digest, Index, Result};

/// What happened to one ref (or untagged entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefChange {
    /// A new name, or a new untagged entry.
    Created,
    /// The name moved away from these digests.
    Moved(Vec<Digest>),
    /// The name already named this content, or the untagged entry was already there.
    Unchanged,
}

/// One entry merged into `index.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// The ref name, `None` for an untagged entry.
    pub name: Option<String>,
    /// The digest it names now.
    pub digest: Digest,
    /// What changed.
    pub change: RefChange,
}

impl RefUpdate {
    /// The name, or the digest of an untagged entry (for reports).
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.digest.to_string())
    }
}

/// Merge `entry` into `index`, the same way for every verb (`copy`, `import`, bundle loading,
/// `pull`):
/// - an entry with a ref name takes that name ([`crate::refs::tag`]): an existing entry of the
///   name is replaced in place (the name moves), an untagged entry of the same digest takes the
///   name, otherwise it is appended;
/// - an untagged entry is appended unless an untagged entry of the same digest is there.
///
/// The entry's other fields (annotations, platform, unknown fields) are kept as given.
pub fn merge_entry(index: &mut Index, entry: &Descriptor) -> Result<RefUpdate> {
    let digest = entry.digest.clone();
    match entry.ref_name() {
        Some(name) => {
            let name = name.to_string();
            let mut bare = entry.clone();
            bare.set_ref_name(None);
            let change = match refs::tag(index, &bare, &name)? {
                TagOutcome::Created => RefChange::Created,
                TagOutcome::Moved(from) => RefChange::Moved(from),
                TagOutcome::Unchanged => RefChange::Unchanged,
            };
            Ok(RefUpdate {
                name: Some(name),
                digest,
                change,
            })
        }
        None => {
            let there = index
                .manifests
                .iter()
                .any(|m| m.digest == digest && m.ref_name().is_none());
            if !there {
                index.manifests.push(entry.clone());
            }
            Ok(RefUpdate {
                name: None,
                digest,
                change: if there {
                    RefChange::Unchanged
                } else {
                    RefChange::Created
                },
            })
        }
    }
}
