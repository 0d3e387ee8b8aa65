//! `index create`, `index add`, `index remove`.
//!
//! - [`create`]: a new OCI index of the manifests given (refs, or digests of anything
//!   reachable), each entry's platform (`os`, `architecture`, `variant`, `os.version`,
//!   `os.features`) taken from its config; a given index is flattened into its entries (nested
//!   indexes too) unless `nested`, which keeps it as one entry. A new document, written through
//!   the writer lock; the ref goes in with `engine::merge_entry`.
//! - [`add`] and [`remove`]: edits of the index a ref names, as a rewriter transform on that
//!   index only; the ref moves to the result (`Rewriter::rewrite_index_json`).

use ocikit_layout::engine::{merge_entry, plan, RefUpdate};
use ocikit_layout::rewrite::{DocEdit, Keep, Rewriter, Rewritten, Store, Transform};
use ocikit_layout::walk::MAX_DEPTH;
use ocikit_layout::{refs, Class, Descriptor, Digest, Index, Layout, MediaType, PlatformSpec};
use serde_json::{Map, Value};

use crate::edit::{config_platform, image_config, read_object};
use crate::{Error, Result};

/// What `index create` and `index add` take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexOptions {
    /// Keep given indexes as entries instead of flattening them.
    pub nested: bool,
    /// Annotations of the new index (`create` only).
    pub annotations: ocikit_layout::Annotations,
}

/// A new index and the ref that names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// The index.
    pub index: Descriptor,
    /// Its entries.
    pub entries: Vec<Descriptor>,
    /// The ref.
    pub update: RefUpdate,
}

/// The descriptor an `index.json` ref or any reachable digest names.
fn resolve(layout: &Layout, index: &Index, what: &str) -> Result<Descriptor> {
    Ok(refs::resolve_anywhere(layout, index, what)?)
}

/// The entries `d` gives an index: a manifest with its platform, an index's entries
/// (flattened) or the index itself (`nested`).
fn entries_of(
    layout: &Layout,
    d: &Descriptor,
    nested: bool,
    out: &mut Vec<Descriptor>,
) -> Result<()> {
    let mut stack = vec![(d.clone(), 0usize)];
    while let Some((d, depth)) = stack.pop() {
        match d.media_type.class() {
            Class::Index if !nested => {
                if depth >= MAX_DEPTH {
                    return Err(ocikit_layout::Error::TooDeep {
                        digest: d.digest.clone(),
                        depth: MAX_DEPTH,
                    }
                    .into());
                }
                let raw = layout.read_json::<Index>(&d.digest, Some(d.size))?;
                for e in raw.value.manifests.into_iter().rev() {
                    stack.push((e, depth + 1));
                }
            }
            Class::Index => out.push(entry(d)),
            Class::Manifest => {
                let mut e = entry(d.clone());
                if e.platform.is_none() {
                    let doc = read_object(layout, &e)?;
                    if let Some(c) = image_config(&e, &doc) {
                        e.platform = config_platform(&read_object(layout, &c)?).map(Box::new);
                    }
                } else if let Some(p) = e.platform.as_mut() {
                    // Fill what the entry leaves out from the config.
                    let doc = read_object(layout, &d)?;
                    if let Some(c) = image_config(&d, &doc) {
                        if let Some(cp) = config_platform(&read_object(layout, &c)?) {
                            if cp.os == p.os && cp.architecture == p.architecture {
                                p.variant = p.variant.take().or(cp.variant);
                                p.os_version = p.os_version.take().or(cp.os_version);
                                p.os_features = p.os_features.take().or(cp.os_features);
                            }
                        }
                    }
                }
                out.push(e);
            }
            _ => {
                return Err(Error::BadValue {
                    value: d.digest.to_string(),
                    reason: format!("`{}` is neither a manifest nor an index", d.media_type),
                })
            }
        }
    }
    Ok(())
}

/// An entry as an index holds it: type, digest, size, platform, annotations (no ref name).
fn entry(mut d: Descriptor) -> Descriptor {
    d.set_ref_name(None);
    d.data = None;
    d
}

fn push_unique(list: &mut Vec<Descriptor>, e: Descriptor) {
    if !list
        .iter()
        .any(|x| x.digest == e.digest && x.platform == e.platform)
    {
        list.push(e);
    }
}

/// Make an index of `sources` and name it `new_ref`.
pub fn create(
    layout: &Layout,
    new_ref: &str,
    sources: &[String],
    opts: &IndexOptions,
) -> Result<Created> {
    refs::check_ref_name(new_ref)?;
    let lock = layout.lock()?;
    let index = layout.read_index()?.value;
    let mut entries = Vec::new();
    for s in sources {
        let d = resolve(layout, &index, s)?;
        plan(layout, std::slice::from_ref(&d))?;
        let mut found = Vec::new();
        entries_of(layout, &d, opts.nested, &mut found)?;
        for e in found {
            push_unique(&mut entries, e);
        }
    }
    let doc = Index {
        schema_version: 2,
        media_type: Some(MediaType::OciIndex),
        artifact_type: None,
        manifests: entries.clone(),
        subject: None,
        annotations: (!opts.annotations.is_empty()).then(|| opts.annotations.clone()),
        extra: Map::new(),
    };
    let bytes = ocikit_layout::json::to_vec(&doc).map_err(|source| ocikit_layout::Error::Json {
        what: "the new index".into(),
        source,
    })?;
    let (digest, size) = lock.write_blob(&bytes)?;
    let mut desc = Descriptor::new(MediaType::OciIndex, digest, size);
    desc.set_ref_name(Some(new_ref));
    let mut idx = layout.read_index()?.value;
    let update = merge_entry(&mut idx, &desc)?;
    lock.commit_index(&idx)?;
    desc.set_ref_name(None);
    Ok(Created {
        index: desc,
        entries,
        update,
    })
}

/// An edit of one index: what was there, what is there now.
#[derive(Debug, Clone, PartialEq)]
pub struct Edited {
    /// The entry before.
    pub old: Descriptor,
    /// The entry after (`None`: nothing changed).
    pub new: Option<Descriptor>,
    /// Entries added or removed.
    pub entries: Vec<Descriptor>,
}

/// What to remove from an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Entries naming this ref's or digest's content.
    Named(String),
    /// Entries of this platform.
    Platform(PlatformSpec),
}

struct IndexEdit {
    root: Digest,
    add: Vec<Descriptor>,
    remove: Vec<(Removal, Option<Digest>)>,
    hits: Vec<usize>,
    touched: Vec<Descriptor>,
}

impl<'w, 'l> Transform<Store<'w, 'l>> for IndexEdit {
    type Error = Error;
    fn keep_entry(&mut self, _: &Store<'w, 'l>, index: &Descriptor, e: &Descriptor) -> Keep {
        if index.digest != self.root {
            return Keep::Yes;
        }
        let mut keep = Keep::Yes;
        for (i, (r, digest)) in self.remove.iter().enumerate() {
            let hit = match r {
                Removal::Named(_) => digest.as_ref() == Some(&e.digest),
                Removal::Platform(p) => e.platform.as_ref().is_some_and(|ep| ep.matches(p)),
            };
            if hit {
                self.hits[i] += 1;
                keep = Keep::No;
            }
        }
        if keep == Keep::No {
            self.touched.push(e.clone());
        }
        keep
    }
    fn index(
        &mut self,
        _: &Store<'w, 'l>,
        desc: &Descriptor,
        doc: &mut Map<String, Value>,
        changed: bool,
    ) -> Result<DocEdit> {
        let mut added = false;
        if desc.digest == self.root && !self.add.is_empty() {
            let present: Vec<Descriptor> = doc
                .get("manifests")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| serde_json::from_value(v.clone()).ok())
                        .collect()
                })
                .unwrap_or_default();
            let list = doc
                .entry("manifests")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(a) = list {
                for e in &self.add {
                    if present
                        .iter()
                        .any(|p| p.digest == e.digest && p.platform == e.platform)
                    {
                        continue;
                    }
                    a.push(serde_json::to_value(e).map_err(|source| {
                        ocikit_layout::Error::Json {
                            what: "an index entry".into(),
                            source,
                        }
                    })?);
                    self.touched.push(e.clone());
                    added = true;
                }
            }
        }
        Ok(DocEdit {
            edited: changed || added,
            media_type: None,
        })
    }
    fn manifest(
        &mut self,
        _: &Store<'w, 'l>,
        _: &Descriptor,
        _: &mut Map<String, Value>,
    ) -> Result<DocEdit> {
        Ok(DocEdit::unchanged())
    }
}

fn edit_index(
    layout: &Layout,
    name: &str,
    add: &[String],
    remove: &[Removal],
    nested: bool,
) -> Result<Edited> {
    let lock = layout.lock()?;
    let index = layout.read_index()?.value;
    let pos = refs::resolve_entry(&index, name, layout.root())?;
    let root = index.manifests[pos].clone();
    if root.media_type.class() != Class::Index {
        return Err(Error::NotAnIndex {
            name: name.to_string(),
            digest: root.digest.clone(),
        });
    }
    plan(layout, std::slice::from_ref(&root))?;
    let mut new_entries = Vec::new();
    for s in add {
        let d = resolve(layout, &index, s)?;
        plan(layout, std::slice::from_ref(&d))?;
        let mut found = Vec::new();
        entries_of(layout, &d, nested, &mut found)?;
        for e in found {
            push_unique(&mut new_entries, e);
        }
    }
    let mut removals = Vec::new();
    for r in remove {
        let digest = match r {
            Removal::Named(s) => Some(resolve(layout, &index, s)?.digest),
            Removal::Platform(_) => None,
        };
        removals.push((r.clone(), digest));
    }
    let transform = IndexEdit {
        root: root.digest.clone(),
        add: new_entries,
        hits: vec![0; removals.len()],
        remove: removals,
        touched: Vec::new(),
    };
    let mut rw = Rewriter::new(&lock, transform);
    let visited = rw.visit(&root)?;
    let t = rw.transform();
    for (i, (r, _)) in t.remove.iter().enumerate() {
        if t.hits[i] == 0 {
            return Err(Error::NoEntry {
                name: name.to_string(),
                what: match r {
                    Removal::Named(s) => s.clone(),
                    Removal::Platform(p) => match &p.variant {
                        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                        None => format!("{}/{}", p.os, p.architecture),
                    },
                },
            });
        }
    }
    if visited == Rewritten::Dropped {
        return Err(Error::WouldEmpty {
            name: name.to_string(),
            removed: t.touched.len(),
        });
    }
    let changes = rw.rewrite_index_json(|i, _| i == pos)?;
    let new = changes.into_iter().next().and_then(|c| c.new);
    Ok(Edited {
        old: root,
        new,
        entries: rw.into_transform().touched,
    })
}

/// Add the manifests `what` names (flattened unless `opts.nested`) to the index `name` names.
pub fn add(layout: &Layout, name: &str, what: &[String], opts: &IndexOptions) -> Result<Edited> {
    edit_index(layout, name, what, &[], opts.nested)
}

/// Remove entries from the index `name` names.
pub fn remove(layout: &Layout, name: &str, what: &[Removal]) -> Result<Edited> {
    edit_index(layout, name, &[], what, false)
}
