//! Selecting what to carry: refs, platforms and referrers, for `copy` and `bundle`.
//!
//! [`select`] resolves refs in a source layout, filters indexes down to the asked platforms
//! (a filtered index is a new document: new bytes, new digest, every other field kept; its
//! parents are rewritten too), adds referrers (manifests whose `subject` is selected) when
//! asked, and returns the `index.json` entries to create, the new documents, and every blob the
//! entries reach. Without platforms, nothing is rewritten and original bytes are carried.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::media_type::Class;
use crate::walk::{Role, Walk};
use crate::{
    refs, Descriptor, Digest, Error, Index, Layout, Manifest, PlatformSpec, Result, JSON_LIMIT,
};

/// Docker's annotation on attestation manifests naming the image they describe.
pub const DOCKER_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// What to select.
#[derive(Debug, Clone, Default)]
pub struct SelectOptions {
    /// Refs or digests of `index.json` entries; empty means every entry.
    pub refs: Vec<String>,
    /// Platforms to keep from indexes; empty keeps everything.
    pub platforms: Vec<PlatformSpec>,
    /// Also select manifests whose `subject` is selected, recursively.
    pub referrers: bool,
}

/// A blob the selection reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// Its size as descriptors declare it (`None` for schema1 layers, which have no size).
    pub size: Option<u64>,
    /// True for a document made by the selection (a filtered index), not present in the source.
    pub generated: bool,
    /// True when the blob may be absent: a non-distributable layer with `urls`, or a
    /// `subject` (a referrer may travel without the manifest it refers to).
    pub optional: bool,
}

/// The result of [`select`].
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Entries for the destination's `index.json`, in order (referrers untagged, last).
    pub entries: Vec<Descriptor>,
    /// Documents made by filtering, by digest.
    pub documents: BTreeMap<Digest, Vec<u8>>,
    /// Every blob the entries reach, by digest (generated documents included).
    pub blobs: BTreeMap<Digest, BlobRef>,
    /// For each entry (same order), the digests it needs.
    pub closures: Vec<BTreeSet<Digest>>,
}

/// Select from `layout`.
pub fn select(layout: &Layout, opts: &SelectOptions) -> Result<Selection> {
    let index = layout.read_index()?.value;
    let roots: Vec<Descriptor> = if opts.refs.is_empty() {
        index.manifests.clone()
    } else {
        let mut v = Vec::new();
        for r in &opts.refs {
            let i = refs::resolve_entry(&index, r)?;
            v.push(index.manifests[i].clone());
        }
        v
    };
    let mut sel = Selection::default();
    let mut filter = Filter {
        layout,
        platforms: &opts.platforms,
        memo: HashMap::new(),
        documents: BTreeMap::new(),
    };
    for root in roots {
        let Some(kept) = filter.filter(&root)? else {
            let plats: Vec<String> = opts
                .platforms
                .iter()
                .map(|p| {
                    format!(
                        "{}/{}{}",
                        p.os,
                        p.architecture,
                        p.variant
                            .as_ref()
                            .map(|v| format!("/{v}"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            return Err(Error::Invalid {
                what: root.ref_name().unwrap_or(root.digest.as_str()).to_string(),
                reason: format!("no manifest for platform {}", plats.join(", ")),
            });
        };
        if sel
            .entries
            .iter()
            .any(|e| e.digest == kept.digest && e.ref_name() == kept.ref_name())
        {
            continue;
        }
        sel.entries.push(kept);
    }
    sel.documents = filter.documents;

    if opts.referrers {
        let full = Walk::from_index(layout, &index);
        loop {
            let selected = closure_digests(layout, &sel)?;
            let mut added = false;
            for n in &full.nodes {
                if selected.contains(n.digest()) {
                    continue;
                }
                let refers = n.children.iter().any(|&c| {
                    full.nodes[c].role == Role::Subject && selected.contains(full.nodes[c].digest())
                });
                if refers && !sel.entries.iter().any(|e| &e.digest == n.digest()) {
                    let mut d = n.descriptor.clone();
                    d.set_ref_name(None);
                    sel.entries.push(d);
                    added = true;
                }
            }
            if !added {
                break;
            }
        }
    }

    for e in &sel.entries {
        let c = closure_of(layout, &sel.documents, e)?;
        for (d, (size, optional)) in &c {
            let b = sel.blobs.entry(d.clone()).or_insert(BlobRef {
                size: *size,
                generated: sel.documents.contains_key(d),
                optional: *optional,
            });
            b.optional &= *optional;
        }
        sel.closures.push(c.into_keys().collect());
    }
    Ok(sel)
}

fn closure_digests(layout: &Layout, sel: &Selection) -> Result<BTreeSet<Digest>> {
    let mut all = BTreeSet::new();
    for e in &sel.entries {
        all.extend(closure_of(layout, &sel.documents, e)?.into_keys());
    }
    Ok(all)
}

/// Every digest `desc` reaches, with its declared size and whether it may be absent, looking
/// into generated documents first.
fn closure_of(
    layout: &Layout,
    docs: &BTreeMap<Digest, Vec<u8>>,
    desc: &Descriptor,
) -> Result<BTreeMap<Digest, (Option<u64>, bool)>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![desc.clone()];
    while let Some(d) = stack.pop() {
        if out.contains_key(&d.digest) {
            continue;
        }
        out.insert(d.digest.clone(), (Some(d.size), false));
        match docs.get(&d.digest) {
            Some(bytes) => {
                // A generated (filtered) index: its entries are in the source or generated.
                let ix: Index = serde_json::from_slice(bytes).map_err(|e| Error::Json {
                    what: d.digest.to_string(),
                    source: e,
                })?;
                stack.extend(ix.manifests);
                stack.extend(ix.subject);
            }
            None => {
                let walk = Walk::from_descriptor(layout, &d);
                for n in &walk.nodes[1..] {
                    let external = n.descriptor.media_type.is_non_distributable()
                        && n.descriptor.urls.as_ref().is_some_and(|u| !u.is_empty());
                    let optional = external || n.role == Role::Subject;
                    let e = out
                        .entry(n.digest().clone())
                        .or_insert((n.size_known.then_some(n.descriptor.size), optional));
                    e.1 &= optional;
                }
            }
        }
    }
    Ok(out)
}

struct Filter<'a> {
    layout: &'a Layout,
    platforms: &'a [PlatformSpec],
    memo: HashMap<Digest, Option<Descriptor>>,
    documents: BTreeMap<Digest, Vec<u8>>,
}

impl Filter<'_> {
    /// The descriptor to keep for `desc` (itself, or a filtered index), or `None` when nothing
    /// under it matches the platforms.
    fn filter(&mut self, desc: &Descriptor) -> Result<Option<Descriptor>> {
        if self.platforms.is_empty() || desc.media_type.class() != Class::Index {
            return Ok(Some(desc.clone()));
        }
        if let Some(m) = self.memo.get(&desc.digest) {
            return Ok(m.as_ref().map(|k| with_identity(desc, k)));
        }
        let raw = self
            .layout
            .read_blob(&desc.digest, Some(desc.size), JSON_LIMIT)?;
        let mut value: Value = serde_json::from_slice(&raw).map_err(|e| Error::Json {
            what: desc.digest.to_string(),
            source: e,
        })?;
        let index: Index = serde_json::from_value(value.clone()).map_err(|e| Error::Json {
            what: desc.digest.to_string(),
            source: e,
        })?;
        let mut kept: Vec<Option<Descriptor>> = Vec::with_capacity(index.manifests.len());
        let mut deferred = Vec::new();
        for (i, m) in index.manifests.iter().enumerate() {
            if m.media_type.class() == Class::Index {
                kept.push(self.filter(m)?);
            } else if let Some(p) = m
                .platform
                .as_ref()
                .filter(|p| !(p.os == "unknown" && p.architecture == "unknown"))
            {
                kept.push(
                    self.platforms
                        .iter()
                        .any(|s| p.matches(s))
                        .then(|| m.clone()),
                );
            } else {
                kept.push(None);
                deferred.push(i);
            }
        }
        // Entries without a platform stay when they refer to a kept one.
        let kept_digests: BTreeSet<Digest> =
            kept.iter().flatten().map(|d| d.digest.clone()).collect();
        for i in deferred {
            let m = &index.manifests[i];
            let by_annotation = m
                .annotations
                .as_ref()
                .and_then(|a| a.get(DOCKER_REFERENCE_DIGEST))
                .and_then(|s| Digest::parse(s).ok())
                .is_some_and(|d| kept_digests.contains(&d));
            let by_subject = by_annotation
                || (m.media_type.class() == Class::Manifest
                    && self
                        .layout
                        .read_json::<Manifest>(&m.digest, Some(m.size))
                        .ok()
                        .and_then(|r| r.value.subject)
                        .is_some_and(|s| kept_digests.contains(&s.digest)));
            if by_subject {
                kept[i] = Some(m.clone());
            }
        }
        let result = if kept
            .iter()
            .zip(&index.manifests)
            .all(|(k, m)| k.as_ref() == Some(m))
        {
            Some(desc.clone())
        } else if kept.iter().all(Option::is_none) {
            None
        } else {
            // Keep the kept entries as written (unknown fields and order included); a filtered
            // nested index gets its new digest and size patched in.
            let originals = value
                .get("manifests")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let entries: Vec<Value> = originals
                .into_iter()
                .zip(&kept)
                .filter_map(|(mut v, k)| {
                    let k = k.as_ref()?;
                    if let Some(obj) = v.as_object_mut() {
                        crate::rewrite::patch_descriptor(obj, k);
                    }
                    Some(v)
                })
                .collect();
            if let Some(obj) = value.as_object_mut() {
                obj.insert("manifests".into(), Value::Array(entries));
            }
            let bytes = serde_json::to_vec(&value).map_err(|e| Error::Json {
                what: desc.digest.to_string(),
                source: e,
            })?;
            let digest = Digest::sha256(&bytes);
            let mut d = desc.clone();
            d.digest = digest.clone();
            d.size = bytes.len() as u64;
            self.documents.insert(digest, bytes);
            Some(d)
        };
        self.memo.insert(desc.digest.clone(), result.clone());
        Ok(result.map(|k| with_identity(desc, &k)))
    }
}

/// `kept`'s digest and size with `orig`'s other fields (each parent keeps its own annotations
/// and platform for the same child).
fn with_identity(orig: &Descriptor, kept: &Descriptor) -> Descriptor {
    let mut d = orig.clone();
    d.digest = kept.digest.clone();
    d.size = kept.size;
    d
}
