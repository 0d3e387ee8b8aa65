//! Rewriting documents bottom-up: when a child changes, every parent that names it gets new
//! bytes and a new digest, up to `index.json`.
//!
//! A [`Transform`] decides what happens to each node; the [`Rewriter`] does the rest:
//!
//! - it reads each index and manifest (verified) as a `serde_json` map, so an edit keeps
//!   unknown fields and field order; a document that neither the transform nor a changed child
//!   touches is never re-serialized, and keeps its digest;
//! - indexes are visited children first: a changed child's descriptor is patched in place
//!   (`mediaType`, `digest`, `size`; its `platform`, `annotations`, `urls` stay; an embedded
//!   `data` that no longer matches is removed), then [`Transform::index`] sees the document;
//! - manifests go to [`Transform::manifest`], which edits its config and layer descriptors itself
//!   (only it knows what a layer rewrite means: recompression needs the config's diff_ids);
//! - anything else in a document position (schema1, unknown types) goes to
//!   [`Transform::other`], which may return a replacement;
//! - new documents go to a [`DocSink`]: the [`Store`] (blobs written through the
//!   [`WriteLock`]) or [`Memory`] (kept by digest, the source untouched); results are memoized
//!   per digest, so a manifest that several parents name is converted once; a digest that is its
//!   own ancestor is left alone; nesting deeper than [`MAX_DEPTH`] is [`Error::TooDeep`] (the
//!   recursion is bounded by it, so a crafted chain cannot overflow the stack);
//! - an index whose every entry the transform removed ([`Transform::keep_entry`],
//!   [`Transform::keep_later`]) is [`Rewritten::Dropped`], and its parent drops it too;
//! - [`Rewriter::rewrite_index_json`] repoints `index.json` entries and commits `index.json`
//!   once, at the end. Old blobs stay until `gc`.
//!
//! `subject` descriptors are not followed: a referrer keeps naming the original, which stays
//! reachable through it.
//!
//! Users: `convert` (media types, recompression, into the store) and the platform filter of
//! `copy --platform` / `bundle --platform` ([`crate::select`], into memory); the build verbs of
//! `ocikit-build` (`append`, `config`, `index add|remove`, and `config --json` into memory).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Deref;

use serde_json::{Map, Value};

use crate::engine::ImageSource;
use crate::media_type::Class;
use crate::walk::MAX_DEPTH;
use crate::{Descriptor, Digest, Error, MediaType, Result, WriteLock, JSON_LIMIT};

/// Where a rewrite reads documents from and puts the documents it makes.
pub trait DocSink {
    /// Where documents are read from.
    fn source(&self) -> &dyn ImageSource;
    /// Keep a new document; returns its digest and size.
    fn put(&mut self, bytes: Vec<u8>) -> Result<(Digest, u64)>;
}

/// The store: new documents are blobs written through the writer lock (`convert`, the build
/// verbs). Derefs to the lock, for transforms that write layers and configs themselves.
#[derive(Debug)]
pub struct Store<'w, 'l>(pub &'w WriteLock<'l>);

impl<'l> Deref for Store<'_, 'l> {
    type Target = WriteLock<'l>;
    fn deref(&self) -> &WriteLock<'l> {
        self.0
    }
}

impl DocSink for Store<'_, '_> {
    fn source(&self) -> &dyn ImageSource {
        self.0.layout()
    }
    fn put(&mut self, bytes: Vec<u8>) -> Result<(Digest, u64)> {
        self.0.write_blob(&bytes)
    }
}

/// Memory: new documents are kept by digest and the source is not touched (`copy --platform`
/// and `bundle --platform` carry them to the destination; [`crate::engine::Overlay`] serves them).
pub struct Memory<'a> {
    source: &'a dyn ImageSource,
    /// The documents made, by digest.
    pub documents: BTreeMap<Digest, Vec<u8>>,
}

impl std::fmt::Debug for Memory<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("documents", &self.documents.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<'a> Memory<'a> {
    /// A memory sink reading from `source`.
    pub fn new(source: &'a dyn ImageSource) -> Self {
        Memory {
            source,
            documents: BTreeMap::new(),
        }
    }
}

impl DocSink for Memory<'_> {
    fn source(&self) -> &dyn ImageSource {
        self.source
    }
    fn put(&mut self, bytes: Vec<u8>) -> Result<(Digest, u64)> {
        let digest = Digest::sha256(&bytes);
        let size = bytes.len() as u64;
        self.documents.insert(digest.clone(), bytes);
        Ok((digest, size))
    }
}

/// What a transform did to a document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocEdit {
    /// The document was changed and must be written as new bytes.
    pub edited: bool,
    /// The media type its descriptors should carry from now on (`None`: unchanged).
    pub media_type: Option<MediaType>,
}

impl DocEdit {
    /// Nothing changed.
    pub fn unchanged() -> DocEdit {
        DocEdit::default()
    }
}

/// Whether an index keeps one of its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Keep it (and rewrite what it names).
    Yes,
    /// Remove it.
    No,
    /// Decide with [`Transform::keep_later`], once the other entries are decided.
    Later,
}

/// A per-node transformation, called bottom-up by the [`Rewriter`], over a sink `S`.
pub trait Transform<S: DocSink> {
    /// The error type; layout errors convert into it.
    type Error: From<Error>;

    /// Whether an index keeps entry `entry` (default: all). Called before the entry is visited.
    fn keep_entry(&mut self, _sink: &S, _index: &Descriptor, _entry: &Descriptor) -> Keep {
        Keep::Yes
    }

    /// For an entry [`Transform::keep_entry`] deferred: keep it, given the entries kept (as
    /// rewritten)? Deferred entries are kept as they are, not visited.
    fn keep_later(
        &mut self,
        _sink: &S,
        _index: &Descriptor,
        _entry: &Descriptor,
        _kept: &[Descriptor],
    ) -> bool {
        true
    }

    /// An index (or manifest list), after its entries were rewritten. `children_changed` says
    /// whether any entry's descriptor was patched (or an entry removed).
    fn index(
        &mut self,
        sink: &S,
        desc: &Descriptor,
        doc: &mut Map<String, Value>,
        children_changed: bool,
    ) -> Result<DocEdit, Self::Error>;

    /// An image manifest (OCI or Docker schema2, artifacts included).
    fn manifest(
        &mut self,
        sink: &S,
        desc: &Descriptor,
        doc: &mut Map<String, Value>,
    ) -> Result<DocEdit, Self::Error>;

    /// Anything else standing where a manifest may stand (schema1, unknown media types): return
    /// the descriptor of a replacement already written, or `None` to keep it.
    fn other(&mut self, _sink: &S, _desc: &Descriptor) -> Result<Option<Descriptor>, Self::Error> {
        Ok(None)
    }
}

/// What became of one descriptor.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per visited document, returned by value once
pub enum Rewritten {
    /// Nothing changed.
    Same,
    /// Replaced: the new descriptor (the parent's `platform`, `annotations`, `urls` and unknown
    /// fields kept; a stale `data` dropped).
    New(Descriptor),
    /// An index whose every entry was removed: its parent drops it too.
    Dropped,
}

impl Rewritten {
    /// The new descriptor, when there is one.
    pub fn new_descriptor(self) -> Option<Descriptor> {
        match self {
            Rewritten::New(d) => Some(d),
            _ => None,
        }
    }
}

/// One `index.json` entry after a rewrite.
#[derive(Debug, Clone, PartialEq)]
pub struct RootChange {
    /// Its position in `index.json`.
    pub position: usize,
    /// The entry before.
    pub old: Descriptor,
    /// The entry after, when it changed.
    pub new: Option<Descriptor>,
}

/// Applies a [`Transform`] bottom-up. See the module docs.
#[derive(Debug)]
pub struct Rewriter<S, T> {
    sink: S,
    transform: T,
    memo: HashMap<Digest, Rewritten>,
    /// The documents being visited, root first (ancestors of the current one).
    stack: HashSet<Digest>,
}

impl<'w, 'l, T: Transform<Store<'w, 'l>>> Rewriter<Store<'w, 'l>, T> {
    /// A rewriter writing through `lock`.
    pub fn new(lock: &'w WriteLock<'l>, transform: T) -> Self {
        Rewriter::with_sink(Store(lock), transform)
    }

    /// Rewrite the `index.json` entries for which `select` is true, repoint them, and commit
    /// `index.json` once (only when something changed). Returns one [`RootChange`] per selected
    /// entry, in order.
    pub fn rewrite_index_json(
        &mut self,
        select: impl Fn(usize, &Descriptor) -> bool,
    ) -> Result<Vec<RootChange>, T::Error> {
        let lock = self.sink.0;
        let raw = lock.layout().read_index()?;
        let mut doc: Map<String, Value> =
            crate::json::from_slice(&raw.bytes).map_err(|source| Error::Json {
                what: "index.json".into(),
                source,
            })?;
        let mut changes = Vec::new();
        for (i, old) in raw.value.manifests.iter().enumerate() {
            if !select(i, old) {
                continue;
            }
            let new = self.visit(old)?.new_descriptor();
            if let Some(n) = &new {
                if let Some(Value::Object(obj)) = doc
                    .get_mut("manifests")
                    .and_then(Value::as_array_mut)
                    .and_then(|a| a.get_mut(i))
                {
                    patch_descriptor(obj, n);
                }
            }
            changes.push(RootChange {
                position: i,
                old: old.clone(),
                new,
            });
        }
        if changes.iter().any(|c| c.new.is_some()) {
            let bytes = crate::json::to_vec(&Value::Object(doc)).map_err(|source| Error::Json {
                what: "index.json".into(),
                source,
            })?;
            lock.commit_index_bytes(&bytes)?;
        }
        Ok(changes)
    }
}

impl<S: DocSink, T: Transform<S>> Rewriter<S, T> {
    /// A rewriter putting new documents into `sink`.
    pub fn with_sink(sink: S, transform: T) -> Self {
        Rewriter {
            sink,
            transform,
            memo: HashMap::new(),
            stack: HashSet::new(),
        }
    }

    /// The transform (to read what it collected).
    pub fn transform(&self) -> &T {
        &self.transform
    }

    /// Give the transform back.
    pub fn into_transform(self) -> T {
        self.transform
    }

    /// Give the sink and the transform back.
    pub fn into_parts(self) -> (S, T) {
        (self.sink, self.transform)
    }

    /// Rewrite what `desc` names. Nesting deeper than [`MAX_DEPTH`] is an error
    /// ([`Error::TooDeep`]), so a crafted chain cannot exhaust the stack.
    pub fn visit(&mut self, desc: &Descriptor) -> Result<Rewritten, T::Error> {
        let core = match self.memo.get(&desc.digest) {
            Some(m) => m.clone(),
            None => {
                if self.stack.contains(&desc.digest) {
                    return Ok(Rewritten::Same); // a cycle: leave it
                }
                if self.stack.len() >= MAX_DEPTH {
                    return Err(Error::TooDeep {
                        digest: desc.digest.clone(),
                        depth: MAX_DEPTH,
                    }
                    .into());
                }
                self.stack.insert(desc.digest.clone());
                let r = self.visit_uncached(desc);
                self.stack.remove(&desc.digest);
                let r = r?;
                self.memo.insert(desc.digest.clone(), r.clone());
                r
            }
        };
        Ok(match core {
            Rewritten::New(new) => {
                let mut d = desc.clone();
                if d.digest != new.digest {
                    d.data = None;
                }
                d.media_type = new.media_type;
                d.digest = new.digest;
                d.size = new.size;
                Rewritten::New(d)
            }
            other => other,
        })
    }

    fn visit_uncached(&mut self, desc: &Descriptor) -> Result<Rewritten, T::Error> {
        let class = desc.media_type.class();
        if !matches!(class, Class::Index | Class::Manifest) {
            return Ok(match self.transform.other(&self.sink, desc)? {
                Some(d) => Rewritten::New(d),
                None => Rewritten::Same,
            });
        }
        let bytes = self
            .sink
            .source()
            .read_document(&desc.digest, Some(desc.size), JSON_LIMIT)?;
        let mut doc = match crate::json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(Error::BadDocument {
                    digest: desc.digest.clone(),
                    reason: "not a JSON object".into(),
                }
                .into())
            }
            Err(source) => {
                return Err(Error::Json {
                    what: desc.digest.to_string(),
                    source,
                }
                .into())
            }
        };
        let edit = if class == Class::Index {
            let (changed, emptied) = self.rewrite_entries(desc, &mut doc)?;
            if emptied {
                return Ok(Rewritten::Dropped);
            }
            self.transform.index(&self.sink, desc, &mut doc, changed)?
        } else {
            self.transform.manifest(&self.sink, desc, &mut doc)?
        };
        let media_type = edit.media_type.unwrap_or_else(|| desc.media_type.clone());
        if edit.edited {
            let new_bytes =
                crate::json::to_vec(&Value::Object(doc)).map_err(|source| Error::Json {
                    what: desc.digest.to_string(),
                    source,
                })?;
            if new_bytes == bytes && media_type == desc.media_type {
                return Ok(Rewritten::Same);
            }
            let (digest, size) = self.sink.put(new_bytes)?;
            Ok(Rewritten::New(Descriptor::new(media_type, digest, size)))
        } else if media_type != desc.media_type {
            Ok(Rewritten::New(Descriptor::new(
                media_type,
                desc.digest.clone(),
                desc.size,
            )))
        } else {
            Ok(Rewritten::Same)
        }
    }

    /// Visit and patch the `manifests` of an index: (anything changed, every entry removed by
    /// the transform).
    fn rewrite_entries(
        &mut self,
        desc: &Descriptor,
        doc: &mut Map<String, Value>,
    ) -> Result<(bool, bool), T::Error> {
        let Some(Value::Array(entries)) = doc.get_mut("manifests") else {
            return Ok((false, false));
        };
        let entries = std::mem::take(entries);
        let had = entries.len();
        let mut changed = false;
        // (entry as written, its descriptor, decision): None = removed.
        let mut slots: Vec<Option<(Value, Descriptor)>> = Vec::with_capacity(had);
        let mut later = Vec::new();
        for mut entry in entries {
            let child: Descriptor = match serde_json::from_value(entry.clone()) {
                Ok(d) => d,
                Err(e) => {
                    return Err(Error::BadDocument {
                        digest: desc.digest.clone(),
                        reason: format!("an entry of `manifests` is not a descriptor: {e}"),
                    }
                    .into())
                }
            };
            match self.transform.keep_entry(&self.sink, desc, &child) {
                Keep::No => {
                    changed = true;
                    slots.push(None);
                }
                Keep::Later => {
                    later.push(slots.len());
                    slots.push(Some((entry, child)));
                }
                Keep::Yes => match self.visit(&child)? {
                    Rewritten::Same => slots.push(Some((entry, child))),
                    Rewritten::New(new) => {
                        if let Value::Object(obj) = &mut entry {
                            patch_descriptor(obj, &new);
                        }
                        changed = true;
                        slots.push(Some((entry, new)));
                    }
                    Rewritten::Dropped => {
                        changed = true;
                        slots.push(None);
                    }
                },
            }
        }
        if !later.is_empty() {
            let kept: Vec<Descriptor> = slots
                .iter()
                .enumerate()
                .filter(|(i, _)| !later.contains(i))
                .filter_map(|(_, s)| s.as_ref().map(|(_, d)| d.clone()))
                .collect();
            for i in later {
                let keep = match &slots[i] {
                    Some((_, d)) => self.transform.keep_later(&self.sink, desc, d, &kept),
                    None => false,
                };
                if !keep {
                    slots[i] = None;
                    changed = true;
                }
            }
        }
        let kept: Vec<Value> = slots.into_iter().flatten().map(|(v, _)| v).collect();
        let emptied = had > 0 && kept.is_empty();
        if let Some(Value::Array(entries)) = doc.get_mut("manifests") {
            *entries = kept;
        }
        Ok((changed, emptied))
    }
}

/// Set a descriptor object's `mediaType`, `digest` and `size` from `new`, in place (fields
/// missing are added at the end); `data` is removed when the digest changes. Other fields stay.
pub fn patch_descriptor(obj: &mut Map<String, Value>, new: &Descriptor) {
    let digest_changed = obj.get("digest").and_then(Value::as_str) != Some(new.digest.as_str());
    obj.insert(
        "mediaType".into(),
        Value::String(new.media_type.to_string()),
    );
    obj.insert("digest".into(), Value::String(new.digest.to_string()));
    obj.insert("size".into(), Value::from(new.size));
    if digest_changed {
        obj.shift_remove("data");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renames one media type everywhere it stands as a document's own type.
    struct Relabel {
        calls: usize,
    }

    impl<S: DocSink> Transform<S> for Relabel {
        type Error = Error;
        fn index(
            &mut self,
            _: &S,
            _: &Descriptor,
            _: &mut Map<String, Value>,
            changed: bool,
        ) -> Result<DocEdit, Error> {
            Ok(DocEdit {
                edited: changed,
                media_type: None,
            })
        }
        fn manifest(
            &mut self,
            _: &S,
            _: &Descriptor,
            doc: &mut Map<String, Value>,
        ) -> Result<DocEdit, Error> {
            self.calls += 1;
            if doc.get("x-convert").is_none() || doc.contains_key("x-converted") {
                return Ok(DocEdit::unchanged());
            }
            doc.insert("x-converted".into(), Value::Bool(true));
            Ok(DocEdit {
                edited: true,
                media_type: None,
            })
        }
    }

    #[test]
    fn parents_are_rewritten_and_shared_children_converted_once() {
        let (_dir, l) = crate::layout::scratch();
        let lock = l.lock().expect("lock");
        let (cfg, cfg_size) = lock.write_blob(b"{}").expect("w");
        let m1 = format!(
            r#"{{"schemaVersion":2,"x-convert":1,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":{cfg_size}}},"layers":[]}}"#
        );
        let m2 = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":{cfg_size}}},"layers":[]}}"#
        );
        let (d1, s1) = lock.write_blob(m1.as_bytes()).expect("w");
        let (d2, s2) = lock.write_blob(m2.as_bytes()).expect("w");
        let mt = "application/vnd.oci.image.manifest.v1+json";
        // The index names m1 twice (with different platforms) and m2 once; `data` on m1 is stale
        // after the rewrite and must go; the unknown field stays, in place.
        let idx = format!(
            r#"{{"schemaVersion":2,"x-first":0,"manifests":[{{"mediaType":"{mt}","digest":"{d1}","size":{s1},"data":"e30=","platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"{mt}","digest":"{d1}","size":{s1},"platform":{{"architecture":"arm64","os":"linux"}}}},{{"mediaType":"{mt}","digest":"{d2}","size":{s2}}}]}}"#
        );
        let (di, si) = lock.write_blob(idx.as_bytes()).expect("w");
        let index_json = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{di}","size":{si},"annotations":{{"org.opencontainers.image.ref.name":"x"}}}},{{"mediaType":"{mt}","digest":"{d2}","size":{s2}}}]}}"#
        );
        lock.commit_index_bytes(index_json.as_bytes())
            .expect("commit");

        let mut rw = Rewriter::new(&lock, Relabel { calls: 0 });
        let changes = rw.rewrite_index_json(|_, _| true).expect("rewrite");
        assert_eq!(rw.transform().calls, 2, "m1 and m2 each seen once");
        assert_eq!(changes.len(), 2);
        assert!(changes[1].new.is_none(), "m2 untouched");
        let new_root = changes[0].new.clone().expect("index changed");
        assert_eq!(new_root.ref_name(), Some("x"));

        let new_m1 = format!(
            r#"{{"schemaVersion":2,"x-convert":1,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":{cfg_size}}},"layers":[],"x-converted":true}}"#
        );
        let nd1 = Digest::sha256(new_m1.as_bytes());
        let expect_idx = format!(
            r#"{{"schemaVersion":2,"x-first":0,"manifests":[{{"mediaType":"{mt}","digest":"{nd1}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"{mt}","digest":"{nd1}","size":{},"platform":{{"architecture":"arm64","os":"linux"}}}},{{"mediaType":"{mt}","digest":"{d2}","size":{s2}}}]}}"#,
            new_m1.len(),
            new_m1.len()
        );
        assert_eq!(new_root.digest, Digest::sha256(expect_idx.as_bytes()));
        assert_eq!(
            l.read_blob(&new_root.digest, None, 1 << 20).expect("read"),
            expect_idx.as_bytes()
        );
        let ij = std::fs::read_to_string(l.root().join("index.json")).expect("read");
        assert_eq!(
            ij,
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"x"}}}},{{"mediaType":"{mt}","digest":"{d2}","size":{s2}}}]}}"#,
                new_root.digest,
                expect_idx.len()
            )
        );
        // The old blobs are still there for gc.
        assert!(l.blob_size(&d1).expect("stat").is_some());
        assert!(l.blob_size(&di).expect("stat").is_some());

        // A second pass changes nothing and does not commit.
        let mut rw = Rewriter::new(&lock, Relabel { calls: 0 });
        let changes = rw.rewrite_index_json(|_, _| true).expect("rewrite");
        assert!(changes.iter().all(|c| c.new.is_none()));
    }

    /// Keeps only the index entries of one architecture (what `copy --platform` needs).
    struct OnlyArch(&'static str);

    impl<S: DocSink> Transform<S> for OnlyArch {
        type Error = Error;
        fn keep_entry(&mut self, _: &S, _: &Descriptor, entry: &Descriptor) -> Keep {
            if entry
                .platform
                .as_ref()
                .is_none_or(|p| p.architecture == self.0)
            {
                Keep::Yes
            } else {
                Keep::No
            }
        }
        fn index(
            &mut self,
            _: &S,
            _: &Descriptor,
            _: &mut Map<String, Value>,
            changed: bool,
        ) -> Result<DocEdit, Error> {
            Ok(DocEdit {
                edited: changed,
                media_type: None,
            })
        }
        fn manifest(
            &mut self,
            _: &S,
            _: &Descriptor,
            _: &mut Map<String, Value>,
        ) -> Result<DocEdit, Error> {
            Ok(DocEdit::unchanged())
        }
    }

    #[test]
    fn entries_can_be_filtered() {
        let (_dir, l) = crate::layout::scratch();
        let lock = l.lock().expect("lock");
        let (m, ms) = lock
            .write_blob(br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#)
            .expect("w");
        lock.write_blob(b"{}").expect("w");
        let mt = "application/vnd.oci.image.manifest.v1+json";
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{mt}","digest":"{m}","size":{ms},"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"{mt}","digest":"{m}","size":{ms},"platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#
        );
        let (di, si) = lock.write_blob(idx.as_bytes()).expect("w");
        let root = Descriptor::new(MediaType::OciIndex, di, si);
        let mut rw = Rewriter::new(&lock, OnlyArch("arm64"));
        let new = rw
            .visit(&root)
            .expect("visit")
            .new_descriptor()
            .expect("changed");
        let expect = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{mt}","digest":"{m}","size":{ms},"platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#
        );
        assert_eq!(new.digest, Digest::sha256(expect.as_bytes()));
        assert_eq!(new.media_type, MediaType::OciIndex);
    }
}
