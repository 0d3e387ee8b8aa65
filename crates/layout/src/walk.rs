//! [`Walk`]: everything reachable from `index.json` (or from one descriptor), as a tree.
//!
//! The walk reads manifests and indexes (verified, capped at [`JSON_LIMIT`]); configs and
//! layers are leaves it does not read. A node's type comes from its descriptor; where the
//! descriptor's media type is unknown and the node stands where a manifest may stand, from the
//! document's own `mediaType`, then from its shape. An unknown media type is a leaf that is
//! reported ([`Kind::Unknown`]), never an error; a document that disagrees with its descriptor
//! is reported ([`Node::declared`]), not fatal. Each document is parsed once even when many
//! parents name it; a digest that is its own ancestor is a cycle and is not expanded.
//!
//! The walk is iterative (its own stack, not the thread's) and bounded: at most [`NODE_LIMIT`]
//! nodes and [`MAX_DEPTH`] levels, so hostile layouts cannot exhaust the stack or memory.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::engine::ImageSource;
use crate::media_type::Class;
use crate::{
    Descriptor, Digest, DigestList, DigestMap, DigestSet, Error, Index, Layout, Manifest,
    MediaType, Platform, Schema1, JSON_LIMIT,
};

/// Where a node stands in its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Entry `n` of `index.json`, or the descriptor a walk started from.
    Root(usize),
    /// Entry `n` of an index's `manifests`.
    Manifests(usize),
    /// A manifest's `config`.
    Config,
    /// Layer `n` of a manifest (schema1: of `fsLayers`).
    Layers(usize),
    /// A manifest's or index's `subject`.
    Subject,
}

impl Role {
    /// The role's name as used in JSON output: `manifests`, `config`, `layers`, `subject`, or
    /// `root`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Root(_) => "root",
            Role::Manifests(_) => "manifests",
            Role::Config => "config",
            Role::Layers(_) => "layers",
            Role::Subject => "subject",
        }
    }

    pub(crate) fn may_be_document(self) -> bool {
        matches!(self, Role::Root(_) | Role::Manifests(_) | Role::Subject)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Root(n) => write!(f, "index.json[{n}]"),
            Role::Manifests(n) => write!(f, "manifests[{n}]"),
            Role::Config => f.write_str("config"),
            Role::Layers(n) => write!(f, "layers[{n}]"),
            Role::Subject => f.write_str("subject"),
        }
    }
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An OCI index or Docker manifest list.
    Index,
    /// An OCI manifest, Docker schema2 or schema1 manifest.
    Manifest,
    /// An image config.
    Config,
    /// A layer.
    Layer,
    /// A media type ocikit does not know.
    Unknown,
}

impl Kind {
    /// Lower-case name as used in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Index => "index",
            Kind::Manifest => "manifest",
            Kind::Config => "config",
            Kind::Layer => "layer",
            Kind::Unknown => "unknown",
        }
    }
}

/// What happened when the walk read a document.
#[derive(Debug, Clone)]
pub enum DocStatus {
    /// Not a document (config, layer, unknown leaf): not read by the walk.
    NotRead,
    /// Read, verified and parsed.
    Ok,
    /// The blob is absent.
    Missing,
    /// The blob's size or digest does not match (the error says which).
    Corrupt(Arc<Error>),
    /// The bytes do not parse as the document they should be.
    Unparseable(String),
    /// The digest's algorithm cannot be verified, so the document was not trusted.
    Unverifiable,
    /// The digest is its own ancestor.
    Cycle,
    /// The walk stopped expanding: too many nodes.
    Truncated,
    /// The walk stopped expanding: the document is nested [`MAX_DEPTH`] levels below its root.
    TooDeep,
}

/// One node of the walk.
#[derive(Debug, Clone)]
pub struct Node {
    /// The descriptor as the parent wrote it (schema1 layers get a synthesized one, size 0
    /// and [`Node::size_known`] false).
    pub descriptor: Descriptor,
    /// Whether the parent declared a size (schema1 does not).
    pub size_known: bool,
    /// What it is.
    pub kind: Kind,
    /// For documents: the class ocikit parsed it as.
    pub class: Class,
    /// Where it stands in its parent.
    pub role: Role,
    /// The parent node.
    pub parent: Option<usize>,
    /// The children, in document order.
    pub children: Vec<usize>,
    /// For documents: how reading went.
    pub status: DocStatus,
    /// For documents: the media type the document declares itself, when it differs from its
    /// descriptor's.
    pub declared: Option<MediaType>,
    /// For a document already expanded elsewhere in the walk: the node that holds its children
    /// (this one has none). Each document is expanded once, so a layout built to explode as a
    /// tree (1,000 refs naming one index of 1,000 manifests) costs one node per edge, not per
    /// path.
    pub expanded_at: Option<usize>,
}

impl Node {
    /// The digest.
    pub fn digest(&self) -> &Digest {
        &self.descriptor.digest
    }

    /// The platform the descriptor names.
    pub fn platform(&self) -> Option<&Platform> {
        self.descriptor.platform.as_deref()
    }

    /// Why this document's children are unknown, when they are: it is absent (a `subject`
    /// excepted: a referrer may travel without it), corrupt, unparseable, unverifiable, or the
    /// walk stopped short of it. While any reachable node says so, nobody can tell which blobs
    /// are unreferenced: gc deletes nothing and fsck calls nothing unreferenced.
    pub fn unreadable(&self) -> Option<String> {
        Some(match &self.status {
            DocStatus::Missing if self.role != Role::Subject => "missing".to_string(),
            DocStatus::Corrupt(e) => e.to_string(),
            DocStatus::Unparseable(m) => format!("unparseable: {m}"),
            DocStatus::Truncated => "too many nodes".to_string(),
            DocStatus::TooDeep => "nested too deep".to_string(),
            DocStatus::Unverifiable => "unverifiable digest".to_string(),
            _ => return None,
        })
    }
}

/// A parsed document and the descriptors it names.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // behind an Arc, built once per document
pub(crate) enum Parsed {
    Index(Index),
    Manifest(Manifest),
    Schema1(Schema1),
}

impl Parsed {
    /// The descriptors the document names, in document order: (descriptor, whether it declares
    /// a size, role). Schema1 layers get a synthesized gzip-layer descriptor of size 0.
    pub(crate) fn children(&self) -> Vec<(Descriptor, bool, Role)> {
        let mut children = Vec::new();
        match self {
            Parsed::Index(ix) => {
                for (i, d) in ix.manifests.iter().enumerate() {
                    children.push((d.clone(), true, Role::Manifests(i)));
                }
                if let Some(s) = &ix.subject {
                    children.push((s.clone(), true, Role::Subject));
                }
            }
            Parsed::Manifest(m) => {
                children.push((m.config.clone(), true, Role::Config));
                for (i, d) in m.layers.iter().enumerate() {
                    children.push((d.clone(), true, Role::Layers(i)));
                }
                if let Some(s) = &m.subject {
                    children.push((s.clone(), true, Role::Subject));
                }
            }
            Parsed::Schema1(s1) => {
                for (i, l) in s1.fs_layers.iter().enumerate() {
                    let d = Descriptor::new(MediaType::DockerLayerGzip, l.blob_sum.clone(), 0);
                    children.push((d, false, Role::Layers(i)));
                }
            }
        }
        children
    }
}

/// The result of a walk: nodes in depth-first order; roots are the nodes without a parent.
#[derive(Debug, Default)]
pub struct Walk {
    /// All nodes.
    pub nodes: Vec<Node>,
    /// The root nodes, in order.
    pub roots: Vec<usize>,
}

/// The most nodes a walk creates before it stops expanding (a guard against DAGs crafted to
/// blow up when seen as a tree).
pub const NODE_LIMIT: usize = 1_000_000;

/// The deepest a document may stand below its root (a root is at depth 0) and still be read.
/// Real images nest two or three levels; a longer chain is crafted and is reported as
/// [`DocStatus::TooDeep`] instead of being followed.
pub const MAX_DEPTH: usize = 64;

impl Walk {
    /// Walk everything `index.json` names.
    pub fn from_index(layout: &Layout, index: &Index) -> Walk {
        let mut w = Walker {
            layout,
            memo: HashMap::new(),
            expanded: HashMap::new(),
            walk: Walk::default(),
        };
        for (i, d) in index.manifests.iter().enumerate() {
            let n = w.visit(d.clone(), true, Role::Root(i), None);
            w.walk.roots.push(n);
        }
        w.walk
    }

    /// Walk from one descriptor.
    pub fn from_descriptor(layout: &Layout, desc: &Descriptor) -> Walk {
        let mut w = Walker {
            layout,
            memo: HashMap::new(),
            expanded: HashMap::new(),
            walk: Walk::default(),
        };
        let n = w.visit(desc.clone(), true, Role::Root(0), None);
        w.walk.roots.push(n);
        w.walk
    }

    /// The chain of nodes from a root down to `n`, as text: `latest > manifests[0] sha256:… >
    /// layers[1] sha256:…`. A root is named by its ref, else by its position in `index.json`.
    pub fn path_of(&self, n: usize) -> Vec<String> {
        let mut chain = Vec::new();
        let mut cur = Some(n);
        while let Some(i) = cur {
            let node = &self.nodes[i];
            chain.push(match node.role {
                Role::Root(k) => match node.descriptor.ref_name() {
                    Some(r) => r.to_string(),
                    None => format!("index.json[{k}] {}", node.descriptor.digest),
                },
                role => format!("{role} {}", node.descriptor.digest),
            });
            cur = node.parent;
        }
        chain.reverse();
        chain
    }

    /// The first node (in walk order) of each distinct digest.
    pub fn unique(&self) -> Vec<usize> {
        let mut seen = std::collections::HashSet::new();
        (0..self.nodes.len())
            .filter(|&i| seen.insert(self.nodes[i].descriptor.digest.clone()))
            .collect()
    }
}

/// What [`reach`] found: the digests reachable from `index.json`, without the tree.
#[derive(Debug, Default)]
pub struct Reach {
    /// Every digest a reachable descriptor names (documents, configs, layers, unknown leaves),
    /// sealed.
    pub digests: DigestList,
    /// Reachable documents that cannot be read, once each, in walk order, with why: absent
    /// (except as a `subject`), corrupt, unparseable, or of an unverifiable algorithm.
    pub unreadable: Vec<(Digest, String)>,
}

/// How a document read went, as far as reachability cares.
#[derive(Debug, Clone)]
enum Seen {
    /// Read and expanded, or not a document after all.
    Fine,
    /// Absent: fine only where it stands as a `subject`.
    Missing,
    /// Cannot be read, for this reason.
    Bad(String),
}

/// Everything reachable from `roots` (the entries of `index.json`), as a set of digests: the
/// same documents the [`Walk`] reads, read the same way, but each document is read once and
/// dropped after its descriptors are noted, and no tree is built. Memory grows with the number
/// of distinct digests only; this is what gc marks with.
///
/// The roots' documents are read ahead on every core, [`REACH_BATCH`] roots at a time (a
/// layout of 100,000 refs is 100,000 documents to open, verify and parse); the marking itself
/// stays depth-first in document order, so what it reports does not depend on the cores.
pub fn reach(layout: &Layout, roots: impl IntoIterator<Item = Root>) -> Reach {
    let roots: Vec<Root> = roots.into_iter().collect();
    let mut out = Reach::default();
    // Documents read: the fine ones in a compact set, the others (few) with what was wrong.
    let mut fine = DigestSet::default();
    let mut docs: DigestMap<Seen> = DigestMap::default();
    let mut reported = DigestSet::default();
    let mut stack: Vec<Marking> = Vec::new();
    for (b, batch) in roots.chunks(REACH_BATCH).enumerate() {
        let mut picked = DigestSet::default();
        let todo: Vec<&Root> = batch
            .iter()
            .filter(|(d, mt, _)| {
                may_be_doc(mt, Role::Root(0))
                    && !fine.contains(d)
                    && !docs.contains_key(d)
                    && picked.insert(d.clone())
            })
            .collect();
        // A document naming more than AHEAD_CHILDREN descriptors is left for the marking to
        // read when it gets there, so what is read ahead stays small whatever the layout holds.
        let mut ahead: DigestMap<Expanded> = crate::fsck::run_parallel(&todo, |(d, mt, size)| {
            let e = expand(layout, d, *size, mt, 0);
            (e.1.len() <= AHEAD_CHILDREN).then(|| (d.clone(), e))
        })
        .into_iter()
        .flatten()
        .collect();
        // Depth-first, in document order (children pushed in reverse), like the walk.
        stack.extend(batch.iter().enumerate().rev().map(|(i, (d, mt, size))| {
            (
                d.clone(),
                mt.clone(),
                *size,
                Role::Root(b * REACH_BATCH + i),
                0,
            )
        }));
        while let Some((digest, media_type, size, role, depth)) = stack.pop() {
            if !may_be_doc(&media_type, role) {
                out.digests.push(digest);
                continue;
            }
            let known = if fine.contains(&digest) {
                Some(Seen::Fine)
            } else {
                docs.get(&digest).cloned()
            };
            let seen = match known {
                Some(s) => s,
                // As the walk does: a longer chain is crafted, and is not followed.
                None if depth > MAX_DEPTH => Seen::Bad("nested too deep".into()),
                None => {
                    let (seen, children) = match ahead.remove(&digest) {
                        // Read ahead as a root; met here first, perhaps deeper (under an
                        // earlier root): its children are one level below where it stands.
                        Some((seen, mut children)) => {
                            for c in &mut children {
                                c.4 = depth + 1;
                            }
                            (seen, children)
                        }
                        None => expand(layout, &digest, size, &media_type, depth),
                    };
                    stack.extend(children.into_iter().rev());
                    if matches!(seen, Seen::Fine) {
                        fine.insert(digest.clone());
                    } else {
                        docs.insert(digest.clone(), seen.clone());
                    }
                    seen
                }
            };
            let why = match seen {
                Seen::Fine => None,
                Seen::Missing if role == Role::Subject => None,
                Seen::Missing => Some("missing".to_string()),
                Seen::Bad(why) => Some(why),
            };
            if let Some(why) = why {
                if reported.insert(digest.clone()) {
                    out.unreadable.push((digest.clone(), why));
                }
            }
            out.digests.push(digest);
        }
    }
    out.digests.seal();
    out
}

/// What [`reach`] needs of an entry of `index.json`: its digest, media type and size.
pub type Root = (Digest, MediaType, u64);

/// The [`Root`] of a descriptor.
pub fn root_of(d: &Descriptor) -> Root {
    (d.digest.clone(), d.media_type.clone(), d.size)
}

/// Roots whose documents [`reach`] reads ahead at a time.
const REACH_BATCH: usize = 256;

/// The most descriptors a document read ahead by [`reach`] may name and be kept.
const AHEAD_CHILDREN: usize = 256;

/// A descriptor waiting on [`reach`]'s stack: digest, media type, size, role, depth.
type Marking = (Digest, MediaType, u64, Role, usize);

/// A document read for [`reach`]: how it went, and the descriptors it names.
type Expanded = (Seen, Vec<Marking>);

/// Might the content at `role` with `media_type` be a document [`reach`] reads?
fn may_be_doc(media_type: &MediaType, role: Role) -> bool {
    let class = media_type.class();
    matches!(class, Class::Index | Class::Manifest | Class::Schema1)
        || (class == Class::Unknown && role.may_be_document())
}

/// Read one document for [`reach`] (at `depth`): how it went, and its children.
fn expand(
    layout: &Layout,
    digest: &Digest,
    size: u64,
    media_type: &MediaType,
    depth: usize,
) -> Expanded {
    let (_, _, parsed) = read_doc(layout, digest, size, media_type);
    match parsed {
        Ok(p) => (
            Seen::Fine,
            p.children()
                .into_iter()
                .map(|(d, _, role)| (d.digest, d.media_type, d.size, role, depth + 1))
                .collect(),
        ),
        Err(DocStatus::Missing) => (Seen::Missing, Vec::new()),
        Err(DocStatus::Corrupt(e)) => (Seen::Bad(e.to_string()), Vec::new()),
        Err(DocStatus::Unparseable(m)) => (Seen::Bad(format!("unparseable: {m}")), Vec::new()),
        Err(DocStatus::Unverifiable) => (Seen::Bad("unverifiable digest".into()), Vec::new()),
        Err(_) => (Seen::Fine, Vec::new()),
    }
}

/// How reading a document went: the class it was parsed as, the media type it declares, and
/// the parsed document or why there is none.
pub(crate) type ReadOutcome = (Class, Option<MediaType>, Result<Arc<Parsed>, DocStatus>);

struct Walker<'a> {
    layout: &'a Layout,
    memo: HashMap<Digest, ReadOutcome>,
    /// The node each expanded document's children hang under.
    expanded: HashMap<Digest, usize>,
    walk: Walk,
}

/// A descriptor waiting to become a node: the walk keeps its own stack instead of recursing,
/// so a crafted chain of documents cannot overflow the thread's stack.
struct Pending {
    descriptor: Descriptor,
    size_known: bool,
    role: Role,
    parent: Option<usize>,
    depth: usize,
}

impl Walker<'_> {
    /// Visit `descriptor` and everything under it, depth first, children in document order;
    /// returns the index of its node.
    fn visit(
        &mut self,
        descriptor: Descriptor,
        size_known: bool,
        role: Role,
        parent: Option<usize>,
    ) -> usize {
        let first = self.walk.nodes.len();
        let mut stack = vec![Pending {
            descriptor,
            size_known,
            role,
            parent,
            depth: 0,
        }];
        while let Some(p) = stack.pop() {
            let depth = p.depth;
            let (idx, children) = self.visit_one(p);
            // Reversed, so the first child is popped (and numbered) first.
            stack.extend(children.into_iter().rev().map(|(d, known, role)| Pending {
                descriptor: d,
                size_known: known,
                role,
                parent: Some(idx),
                depth: depth + 1,
            }));
        }
        first
    }

    /// Add one node; read it when it is a document and return the descriptors it names.
    fn visit_one(&mut self, p: Pending) -> (usize, Vec<(Descriptor, bool, Role)>) {
        let Pending {
            descriptor,
            size_known,
            role,
            parent,
            depth,
        } = p;
        let idx = self.walk.nodes.len();
        let class = descriptor.media_type.class();
        let leaf_kind = match (class, role) {
            (Class::Config, _) => Kind::Config,
            (Class::Layer, _) => Kind::Layer,
            (Class::Empty, Role::Config) => Kind::Config,
            (Class::Empty, Role::Layers(_)) => Kind::Layer,
            (Class::Index, _) => Kind::Index,
            (Class::Manifest | Class::Schema1, _) => Kind::Manifest,
            _ => Kind::Unknown,
        };
        self.walk.nodes.push(Node {
            descriptor,
            size_known,
            kind: leaf_kind,
            class,
            role,
            parent,
            children: Vec::new(),
            status: DocStatus::NotRead,
            declared: None,
            expanded_at: None,
        });
        if let Some(p) = parent {
            self.walk.nodes[p].children.push(idx);
        }
        let no_children = Vec::new();
        let is_doc_class = matches!(class, Class::Index | Class::Manifest | Class::Schema1);
        if !(is_doc_class || (class == Class::Unknown && role.may_be_document())) {
            return (idx, no_children);
        }
        if self.walk.nodes.len() >= NODE_LIMIT {
            self.walk.nodes[idx].status = DocStatus::Truncated;
            return (idx, no_children);
        }
        // cycle: is this digest an ancestor? (at most MAX_DEPTH steps)
        let digest = self.walk.nodes[idx].descriptor.digest.clone();
        let mut cur = parent;
        while let Some(p) = cur {
            if self.walk.nodes[p].descriptor.digest == digest {
                self.walk.nodes[idx].status = DocStatus::Cycle;
                return (idx, no_children);
            }
            cur = self.walk.nodes[p].parent;
        }
        if depth >= MAX_DEPTH {
            self.walk.nodes[idx].status = DocStatus::TooDeep;
            return (idx, no_children);
        }
        let entry = match self.memo.get(&digest) {
            Some(e) => (e.0, e.1.clone(), e.2.clone()),
            None => {
                let size = self.walk.nodes[idx].descriptor.size;
                let e = self.read(
                    &digest,
                    size,
                    &self.walk.nodes[idx].descriptor.media_type.clone(),
                );
                self.memo
                    .insert(digest.clone(), (e.0, e.1.clone(), e.2.clone()));
                e
            }
        };
        let (doc_class, declared, parsed) = entry;
        let node = &mut self.walk.nodes[idx];
        if declared
            .as_ref()
            .is_some_and(|d| d != &node.descriptor.media_type)
        {
            node.declared = declared;
        }
        let parsed = match parsed {
            Ok(p) => {
                node.status = DocStatus::Ok;
                p
            }
            Err(status) => {
                node.status = status;
                return (idx, no_children);
            }
        };
        if class == Class::Unknown {
            node.class = doc_class;
            node.kind = match doc_class {
                Class::Index => Kind::Index,
                Class::Manifest | Class::Schema1 => Kind::Manifest,
                _ => Kind::Unknown,
            };
        }
        if let Some(&first) = self.expanded.get(&digest) {
            node.expanded_at = Some(first);
            return (idx, no_children);
        }
        self.expanded.insert(digest, idx);
        let children = parsed.children();
        (idx, children)
    }

    /// Read a document: (class parsed as, mediaType it declares, parsed or failure).
    fn read(&self, digest: &Digest, size: u64, mt: &MediaType) -> ReadOutcome {
        read_doc(self.layout, digest, size, mt)
    }
}

/// Read a document: (class parsed as, mediaType it declares, parsed or failure).
pub(crate) fn read_doc<S: ImageSource + ?Sized>(
    layout: &S,
    digest: &Digest,
    size: u64,
    mt: &MediaType,
) -> ReadOutcome {
    {
        let class = mt.class();
        if digest.algorithm().is_none() {
            return (class, None, Err(DocStatus::Unverifiable));
        }
        if class == Class::Unknown && size > JSON_LIMIT {
            return (class, None, Err(DocStatus::NotRead));
        }
        let bytes = match layout.read_document(digest, Some(size), JSON_LIMIT) {
            Ok(b) => b,
            Err(Error::MissingBlob { .. }) => {
                // An unknown type that is absent is just an unknown leaf.
                let st = if class == Class::Unknown {
                    DocStatus::NotRead
                } else {
                    DocStatus::Missing
                };
                return (class, None, Err(st));
            }
            Err(e @ Error::TooLarge { .. }) if class != Class::Unknown => {
                return (class, None, Err(DocStatus::Unparseable(e.to_string())))
            }
            Err(_) if class == Class::Unknown => return (class, None, Err(DocStatus::NotRead)),
            Err(e) => return (class, None, Err(DocStatus::Corrupt(Arc::new(e)))),
        };
        // The usual case, in one parse: a manifest or an index that parses as what its
        // descriptor says. Anything else goes the long way below, through a `Value`, for the
        // same outcome and messages as always.
        let fast = match class {
            Class::Manifest => crate::json::from_slice::<Manifest>(&bytes)
                .ok()
                .map(|m| (m.media_type.clone(), Parsed::Manifest(m))),
            Class::Index => crate::json::from_slice::<Index>(&bytes)
                .ok()
                .map(|ix| (ix.media_type.clone(), Parsed::Index(ix))),
            _ => None,
        };
        if let Some((declared, parsed)) = fast {
            return (class, declared, Ok(Arc::new(parsed)));
        }
        let value: Value = match crate::json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) if class == Class::Unknown => {
                let _ = e;
                return (class, None, Err(DocStatus::NotRead));
            }
            Err(e) => {
                return (
                    class,
                    None,
                    Err(DocStatus::Unparseable(format!("not JSON: {e}"))),
                )
            }
        };
        let declared = value
            .get("mediaType")
            .and_then(Value::as_str)
            .map(MediaType::parse);
        let class = match class {
            Class::Unknown => {
                let by_type = declared
                    .as_ref()
                    .map(MediaType::class)
                    .unwrap_or(Class::Unknown);
                match by_type {
                    Class::Index | Class::Manifest | Class::Schema1 => by_type,
                    _ => shape_class(&value),
                }
            }
            c => c,
        };
        let parsed = match class {
            Class::Index => serde_json::from_value::<Index>(value).map(Parsed::Index),
            Class::Manifest => serde_json::from_value::<Manifest>(value).map(Parsed::Manifest),
            Class::Schema1 => serde_json::from_value::<Schema1>(value).map(Parsed::Schema1),
            _ => return (class, declared, Err(DocStatus::NotRead)),
        };
        match parsed {
            Ok(p) => (class, declared, Ok(Arc::new(p))),
            Err(e) => (class, declared, Err(DocStatus::Unparseable(e.to_string()))),
        }
    }
}

/// Guess a document's class from its shape, for documents with no known media type.
pub fn shape_class(v: &Value) -> Class {
    if v.get("manifests")
        .is_some_and(|m| m.is_array() || m.is_null())
    {
        Class::Index
    } else if v.get("fsLayers").is_some_and(Value::is_array) {
        Class::Schema1
    } else if v.get("config").is_some_and(Value::is_object)
        && v.get("layers").is_some_and(|l| l.is_array() || l.is_null())
    {
        Class::Manifest
    } else {
        Class::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WriteLock;

    fn layout() -> (tempfile::TempDir, Layout) {
        crate::layout::scratch()
    }

    fn put(lock: &WriteLock<'_>, mt: MediaType, bytes: &[u8]) -> Descriptor {
        let (d, n) = lock.write_blob(bytes).expect("write");
        Descriptor::new(mt, d, n)
    }

    fn index_of(descs: &[Descriptor]) -> Vec<u8> {
        let mut ix = Index::empty();
        ix.manifests = descs.to_vec();
        serde_json::to_vec(&ix).expect("json")
    }

    fn image(lock: &WriteLock<'_>, tag: &str) -> Descriptor {
        let cfg = put(
            lock,
            MediaType::OciConfig,
            format!("{{\"t\":\"{tag}\"}}").as_bytes(),
        );
        let l0 = put(lock, MediaType::OciLayerGzip, format!("{tag}-0").as_bytes());
        let l1 = put(lock, MediaType::OciLayerGzip, format!("{tag}-1").as_bytes());
        let m = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": cfg, "layers": [l0, l1]});
        put(
            lock,
            MediaType::OciManifest,
            &serde_json::to_vec(&m).expect("json"),
        )
    }

    #[test]
    fn depth_first_in_document_order() {
        let (_d, l) = layout();
        let lock = l.lock().expect("lock");
        let a = image(&lock, "a");
        let b = image(&lock, "b");
        let ix = put(
            &lock,
            MediaType::OciIndex,
            &index_of(&[a.clone(), b.clone()]),
        );
        let mut root = Index::empty();
        root.manifests = vec![ix.clone(), a.clone()];
        let w = Walk::from_index(&l, &root);
        let got: Vec<(String, Kind, Option<usize>)> = w
            .nodes
            .iter()
            .map(|n| (n.role.to_string(), n.kind, n.parent))
            .collect();
        let want = [
            ("index.json[0]", Kind::Index, None),
            ("manifests[0]", Kind::Manifest, Some(0)),
            ("config", Kind::Config, Some(1)),
            ("layers[0]", Kind::Layer, Some(1)),
            ("layers[1]", Kind::Layer, Some(1)),
            ("manifests[1]", Kind::Manifest, Some(0)),
            ("config", Kind::Config, Some(5)),
            ("layers[0]", Kind::Layer, Some(5)),
            ("layers[1]", Kind::Layer, Some(5)),
            // `a` again: already expanded under node 1, so a node without children.
            ("index.json[1]", Kind::Manifest, None),
        ]
        .map(|(r, k, p)| (r.to_string(), k, p));
        assert_eq!(got, want);
        assert_eq!(w.roots, vec![0, 9]);
        assert_eq!(w.nodes[9].expanded_at, Some(1));
        assert!(w.nodes[9].children.is_empty());
        assert_eq!(w.nodes[1].expanded_at, None);
        assert_eq!(w.nodes[0].children, vec![1, 5]);
        assert_eq!(w.nodes[5].children, vec![6, 7, 8]);
        assert_eq!(w.nodes[5].digest(), &b.digest);
        assert!(w.nodes.iter().all(|n| !matches!(
            n.status,
            DocStatus::Missing | DocStatus::Corrupt(_) | DocStatus::Unparseable(_)
        )));
    }

    /// 1,000 refs naming one index of 1,000 manifests: one node per edge (1,000 roots, the
    /// index's 1,000 entries and their 2,000 leaves, expanded once), not one per path (3
    /// million). The walk used to stop at NODE_LIMIT here, after 600 MB.
    #[test]
    fn a_dag_is_expanded_once_per_document() {
        let (_d, l) = layout();
        let lock = l.lock().expect("lock");
        let manifests: Vec<Descriptor> = (0..1000)
            .map(|i| {
                let cfg = put(&lock, MediaType::OciConfig, b"{}");
                let layer = put(&lock, MediaType::OciLayer, format!("layer {i}").as_bytes());
                let m = format!(
                    r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{}","size":{}}}]}}"#,
                    cfg.media_type, cfg.digest, cfg.size, layer.media_type, layer.digest, layer.size
                );
                put(&lock, MediaType::OciManifest, m.as_bytes())
            })
            .collect();
        let ix = put(&lock, MediaType::OciIndex, &index_of(&manifests));
        let mut root = Index::empty();
        root.manifests = vec![ix; 1000];
        let w = Walk::from_index(&l, &root);
        assert_eq!(w.nodes.len(), 1000 + 1000 + 2000);
        assert!(w
            .nodes
            .iter()
            .all(|n| matches!(n.status, DocStatus::Ok | DocStatus::NotRead)));
        assert_eq!(w.nodes[w.roots[999]].expanded_at, Some(w.roots[0]));
    }

    /// A chain of 10,000 indexes, each naming the next: the walk must neither recurse 10,000
    /// frames deep (a test thread has a 2 MiB stack) nor follow it past MAX_DEPTH.
    #[test]
    fn deep_chain_is_cut_at_max_depth() {
        let (_d, l) = layout();
        let lock = l.lock().expect("lock");
        let mut d = image(&lock, "bottom");
        for _ in 0..10_000 {
            d = put(&lock, MediaType::OciIndex, &index_of(&[d]));
        }
        let mut root = Index::empty();
        root.manifests = vec![d];
        let w = Walk::from_index(&l, &root);
        assert_eq!(w.nodes.len(), MAX_DEPTH + 1);
        for (i, n) in w.nodes.iter().enumerate() {
            assert_eq!(n.kind, Kind::Index);
            if i < MAX_DEPTH {
                assert!(matches!(n.status, DocStatus::Ok), "{i}: {:?}", n.status);
                assert_eq!(n.children, vec![i + 1]);
            } else {
                assert!(matches!(n.status, DocStatus::TooDeep), "{:?}", n.status);
                assert!(n.children.is_empty());
            }
        }
        assert_eq!(w.path_of(MAX_DEPTH).len(), MAX_DEPTH + 1);
    }

    /// A document read ahead as a root but met first deeper, under an earlier root, stands
    /// where it is met: a chain whose links are also roots is cut at the same depth as alone.
    #[test]
    fn reach_cuts_a_chain_of_roots_at_max_depth() {
        let (_d, l) = layout();
        let lock = l.lock().expect("lock");
        let mut chain = vec![image(&lock, "bottom")];
        for i in 0..MAX_DEPTH + 3 {
            let d = put(&lock, MediaType::OciIndex, &index_of(&[chain[i].clone()]));
            chain.push(d);
        }
        chain.reverse();
        let too_deep = chain[MAX_DEPTH + 1].digest.clone();
        let want = vec![(too_deep, "nested too deep".to_string())];
        assert_eq!(reach(&l, [root_of(&chain[0])]).unreadable, want);
        assert_eq!(reach(&l, chain.iter().map(root_of)).unreadable, want);
    }

    /// Digests make real cycles impossible, so the guard is checked with a document planted in
    /// the walker's memo: an index that names itself, directly and through its subject.
    #[test]
    fn a_document_naming_its_ancestor_is_a_cycle() {
        let (_d, l) = layout();
        let me = Descriptor::new(MediaType::OciIndex, Digest::sha256(b"self"), 4);
        let mut ix = Index::empty();
        ix.manifests = vec![me.clone()];
        ix.subject = Some(me.clone());
        let mut w = Walker {
            layout: &l,
            memo: HashMap::new(),
            expanded: HashMap::new(),
            walk: Walk::default(),
        };
        w.memo.insert(
            me.digest.clone(),
            (Class::Index, None, Ok(Arc::new(Parsed::Index(ix)))),
        );
        let root = w.visit(me.clone(), true, Role::Root(0), None);
        let walk = w.walk;
        assert_eq!(root, 0);
        assert_eq!(walk.nodes.len(), 3);
        assert!(matches!(walk.nodes[0].status, DocStatus::Ok));
        assert_eq!(walk.nodes[1].role, Role::Manifests(0));
        assert!(matches!(walk.nodes[1].status, DocStatus::Cycle));
        assert_eq!(walk.nodes[2].role, Role::Subject);
        assert!(matches!(walk.nodes[2].status, DocStatus::Cycle));
    }

    /// `reach` finds exactly the digests the walk has nodes for, and blocks on what gc's walk
    /// used to block on: a missing manifest, but not a missing subject.
    #[test]
    fn reach_agrees_with_the_walk() {
        let (_dir, l) = crate::layout::scratch();
        let lock = l.lock().expect("lock");
        let (cfg, cfg_size) = lock.write_blob(b"{}").expect("config");
        let (layer, layer_size) = lock.write_blob(b"layer").expect("layer");
        let absent = Digest::sha256(b"absent");
        let manifest = |subject: Option<&Digest>| {
            let mut m = format!(
                "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{cfg}\",\"size\":{cfg_size}}},\"layers\":[{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"{layer}\",\"size\":{layer_size}}}]"
            );
            if let Some(s) = subject {
                m.push_str(&format!(",\"subject\":{{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"{s}\",\"size\":5}}"));
            }
            m.push('}');
            m
        };
        let m1 = manifest(None);
        let m2 = manifest(Some(&absent));
        let (d1, s1) = lock.write_blob(m1.as_bytes()).expect("m1");
        let (d2, s2) = lock.write_blob(m2.as_bytes()).expect("m2");
        let ix = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"{d1}\",\"size\":{s1}}},{{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"{d2}\",\"size\":{s2}}}]}}"
        );
        let (dix, six) = lock.write_blob(ix.as_bytes()).expect("ix");
        let mut index = Index::empty();
        index.manifests = vec![
            Descriptor::new(MediaType::OciIndex, dix.clone(), six),
            Descriptor::new(MediaType::OciManifest, d1.clone(), s1),
        ];
        let r = reach(&l, index.manifests.iter().map(root_of));
        let walk = Walk::from_index(&l, &index);
        let walked: std::collections::HashSet<Digest> =
            walk.nodes.iter().map(|n| n.digest().clone()).collect();
        assert_eq!(r.digests.len(), walked.len());
        assert!(walked.iter().all(|d| r.digests.contains(d)));
        assert_eq!(r.digests.len(), 6);
        assert!(r.digests.contains(&absent));
        assert!(r.unreadable.is_empty(), "a missing subject does not block");

        // The same absent digest named as a manifest blocks, once, after the entries before it.
        index
            .manifests
            .push(Descriptor::new(MediaType::OciManifest, absent.clone(), 5));
        index
            .manifests
            .push(Descriptor::new(MediaType::OciManifest, absent.clone(), 5));
        let r = reach(&l, index.manifests.iter().map(root_of));
        assert_eq!(r.unreadable, vec![(absent.clone(), "missing".to_string())]);
        // A corrupt manifest blocks with the read error.
        std::fs::write(l.blob_path(&d1), m1.replace("2,", "3,")).expect("corrupt");
        let r = reach(&l, [(d1.clone(), MediaType::OciManifest, s1)]);
        assert_eq!(r.unreadable.len(), 1);
        assert_eq!(r.unreadable[0].0, d1);
        assert!(
            r.unreadable[0].1.contains("digest"),
            "{}",
            r.unreadable[0].1
        );
    }
}
