//! `convert`: rewrite the media types of everything some refs reach, Docker <-> OCI.
//!
//! What changes, per node (see [`convert`]):
//!
//! | node | `--to oci` | `--to docker` |
//! |---|---|---|
//! | manifest list / index | list -> index | index -> list; `annotations` dropped (reported); `artifactType`, `subject` refused |
//! | Docker schema2 / OCI image manifest | v2s2 -> OCI | OCI -> v2s2; `annotations` dropped (reported); `artifactType`, `subject`, a non-image config, encrypted or zstd layers refused |
//! | config | relabelled, bytes kept | relabelled, bytes kept |
//! | layers | [`MediaType::to_oci`] (foreign -> non-distributable) | [`MediaType::to_docker`] |
//! | schema1 | -> OCI ([`crate::schema1`]) | -> v2s2 |
//! | artifacts, unknown types | untouched | artifacts refused, unknown types untouched |
//!
//! Descriptor `annotations`, `urls` and `platform` (non-canonical variants such as `armv7`
//! included) are kept as written. Parents of a changed node get new bytes through
//! [`ocikit_layout::rewrite`]; `index.json` is committed once at the end; old blobs stay for gc.
//!
//! `--to docker` checks everything first and refuses, listing every case Docker cannot express,
//! before writing anything. With [`ConvertOptions::compress`], layers are recompressed in the
//! same pass (decompressed stream checked against the config's `rootfs.diff_ids`); layers that
//! cannot be read (encrypted, non-distributable, unknown types) keep their bytes. A manifest's
//! layers are recompressed by the engine's [`ImageBuilder`], as import builds an image's
//! layers: several at a time (largest first), each in parallel chunks, each digest once; a
//! failing layer is reported in layer order, and nothing is committed.

use std::collections::HashSet;
use std::fmt;

use ocikit_layout::engine::{
    BuildError, ImageBuilder, LayerInput, ManifestFormat, Problem, StoredLayer, PARALLEL_LAYERS,
};
use ocikit_layout::layer::{CompressOptions, LayerInfo};
use ocikit_layout::rewrite::{patch_descriptor, DocEdit, Rewriter, RootChange, Store, Transform};
use ocikit_layout::{
    refs, Class, Compression, Descriptor, Digest, ImageConfig, Layout, MediaType, Schema1,
    WriteLock, JSON_LIMIT,
};
use serde_json::{Map, Value};

use crate::schema1::{self, Schema1Error};

/// The format to convert to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// OCI image manifests and indexes.
    Oci,
    /// Docker schema2 manifests and manifest lists.
    Docker,
}

impl Target {
    /// `oci` or `docker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Oci => "oci",
            Target::Docker => "docker",
        }
    }

    fn manifest_type(self) -> MediaType {
        match self {
            Target::Oci => MediaType::OciManifest,
            Target::Docker => MediaType::DockerManifest,
        }
    }

    fn index_type(self) -> MediaType {
        match self {
            Target::Oci => MediaType::OciIndex,
            Target::Docker => MediaType::DockerManifestList,
        }
    }

    fn config_type(self) -> MediaType {
        match self {
            Target::Oci => MediaType::OciConfig,
            Target::Docker => MediaType::DockerConfig,
        }
    }

    /// The layer type in this target's family, or `None` when it has none.
    pub fn layer_type(self, mt: &MediaType) -> Option<MediaType> {
        match self {
            Target::Oci => Some(mt.to_oci()),
            Target::Docker => mt.to_docker(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to convert, and how.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// The format to convert to; `None` keeps each document's format (recompressing only).
    pub target: Option<Target>,
    /// Refs (or digests of `index.json` entries) to convert; empty: every entry.
    pub refs: Vec<String>,
    /// Recompress layers as asked (`None`: layer bytes kept).
    pub compress: Option<CompressOptions>,
    /// At most this many layers of an image recompressed at once (the number of cores bounds
    /// it too; 1: one at a time). The output does not depend on it.
    pub parallel_layers: usize,
}

impl ConvertOptions {
    /// Convert `refs` (empty: every entry) to `target`, recompressing as `compress` asks,
    /// [`PARALLEL_LAYERS`] layers at a time.
    pub fn new(
        target: Option<Target>,
        refs: Vec<String>,
        compress: Option<CompressOptions>,
    ) -> ConvertOptions {
        ConvertOptions {
            target,
            refs,
            compress,
            parallel_layers: PARALLEL_LAYERS,
        }
    }
}

/// Something Docker cannot express (or a layer type with no equivalent), found before writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Where: the chain from the ref down to the node.
    pub path: String,
    /// Why.
    pub reason: Reason,
}

/// Why a node is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A zstd layer, which Docker manifests cannot hold; recompressing it (to gzip or none)
    /// in the same conversion lifts the refusal.
    ZstdLayer {
        /// Its position in the manifest's `layers`.
        index: usize,
        /// The layer.
        digest: Digest,
        /// Its media type.
        media_type: MediaType,
    },
    /// Anything else, in words.
    Other(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::ZstdLayer {
                index,
                digest,
                media_type,
            } => write!(
                f,
                "layers[{index}] `{digest}` is zstd-compressed (`{media_type}`); recompress it to gzip or none"
            ),
            Reason::Other(s) => f.write_str(s),
        }
    }
}

/// Annotations dropped from a document converted to Docker, which has no field for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The document (its digest before conversion).
    pub digest: Digest,
    /// The annotation keys, in document order.
    pub keys: Vec<String>,
}

/// One converted `index.json` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryReport {
    /// Its ref, else `index.json[N]`.
    pub name: String,
    /// Before.
    pub old: Descriptor,
    /// After, when it changed.
    pub new: Option<Descriptor>,
}

/// What [`convert`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConvertReport {
    /// One per selected entry, in `index.json` order.
    pub entries: Vec<EntryReport>,
    /// Annotations dropped (`--to docker`).
    pub dropped: Vec<Dropped>,
    /// Layers recompressed: (old digest, new digest).
    pub recompressed: Vec<(Digest, Digest)>,
}

/// Why a conversion failed. Nothing is committed on error.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// Reading or writing the layout failed.
    #[error(transparent)]
    Layout(#[from] ocikit_layout::Error),
    /// Docker (or OCI) cannot express what the refs reach; nothing was written.
    #[error("cannot {}, nothing was written:\n{}", match target { Some(t) => format!("convert to {t}"), None => "recompress".to_string() }, cases.iter().map(|c| format!("  {}: {}", c.path, c.reason)).collect::<Vec<_>>().join("\n"))]
    Refused {
        /// The target (`None`: recompressing only).
        target: Option<Target>,
        /// Every case found.
        cases: Vec<Refusal>,
    },
    /// Recompression to zstd asked together with a conversion to Docker.
    #[error("docker manifests cannot hold zstd layers: recompress to gzip or none when converting to docker")]
    ZstdForDocker,
    /// A recompressed layer's content differs from the config's diff_id.
    #[error("layer `{}` of manifest `{}`: its content has diff_id `{}`, the config says `{}`", .0.layer, .0.manifest, .0.found, .0.expected)]
    DiffIdMismatch(Box<DiffIdMismatch>),
    /// The config does not list one diff_id per layer, so recompression cannot be checked.
    #[error("manifest `{manifest}`: config `{config}` lists {diff_ids} diff_ids for {layers} layers; cannot check recompressed layers")]
    DiffIdCount {
        /// The manifest.
        manifest: Digest,
        /// Its config.
        config: Digest,
        /// Layers in the manifest.
        layers: usize,
        /// diff_ids in the config.
        diff_ids: usize,
    },
    /// Reading, decompressing or recompressing a layer failed.
    #[error("layer `{layer}`: {source}")]
    Layer {
        /// The layer.
        layer: Digest,
        /// The cause.
        #[source]
        source: ocikit_layout::Error,
    },
    /// A layer's bytes cannot be recompressed (not in the compression its media type says).
    #[error("layer `{layer}`: {problem}")]
    LayerContent {
        /// The layer.
        layer: Digest,
        /// What is wrong.
        #[source]
        problem: Problem,
    },
    /// A schema1 manifest could not be converted.
    #[error("schema1 manifest `{manifest}`: {source}")]
    Schema1 {
        /// The manifest.
        manifest: Digest,
        /// The cause.
        #[source]
        source: Schema1Error,
    },
}

/// The details of [`ConvertError::DiffIdMismatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffIdMismatch {
    /// The manifest.
    pub manifest: Digest,
    /// The layer.
    pub layer: Digest,
    /// The config's diff_id.
    pub expected: Digest,
    /// The decompressed content's digest.
    pub found: Digest,
}

/// Convert what `opts.refs` reach (default: every `index.json` entry) to `opts.target`.
///
/// Takes the writer lock. `--to docker` refusals are found before anything is written;
/// `index.json` is committed once, at the end, and only when something changed.
pub fn convert(layout: &Layout, opts: &ConvertOptions) -> Result<ConvertReport, ConvertError> {
    if opts.target == Some(Target::Docker)
        && opts
            .compress
            .is_some_and(|c| c.compression == Compression::Zstd)
    {
        return Err(ConvertError::ZstdForDocker);
    }
    let lock = layout.lock()?;
    let index = layout.read_index()?;
    let selected: Option<HashSet<usize>> = if opts.refs.is_empty() {
        None
    } else {
        let mut s = HashSet::new();
        for r in &opts.refs {
            s.insert(refs::resolve_entry(&index.value, r, layout.root())?);
        }
        Some(s)
    };
    let is_selected = |i: usize| selected.as_ref().is_none_or(|s| s.contains(&i));

    // Plan first: anything unreadable or nested too deep fails here, before anything is
    // written (and bounds the checker's and the rewriter's depth).
    let roots: Vec<Descriptor> = index
        .value
        .manifests
        .iter()
        .enumerate()
        .filter(|(i, _)| is_selected(*i))
        .map(|(_, d)| d.clone())
        .collect();
    ocikit_layout::engine::plan(layout, &roots)?;

    // Check first: nothing is written when something cannot be converted.
    let mut checker = Checker {
        layout,
        opts,
        seen: HashSet::new(),
        cases: Vec::new(),
    };
    for (i, d) in index.value.manifests.iter().enumerate() {
        if is_selected(i) {
            checker.check(d, &entry_name(i, d))?;
        }
    }
    if !checker.cases.is_empty() {
        return Err(ConvertError::Refused {
            target: opts.target,
            cases: checker.cases,
        });
    }

    let conv = Converter::new(&lock, opts);
    let mut rw = Rewriter::new(&lock, conv);
    let changes: Vec<RootChange> = rw.rewrite_index_json(|i, _| is_selected(i))?;
    let conv = rw.into_transform();
    Ok(ConvertReport {
        entries: changes
            .into_iter()
            .map(|c| EntryReport {
                name: entry_name(c.position, &c.old),
                old: c.old,
                new: c.new,
            })
            .collect(),
        dropped: conv.dropped,
        recompressed: conv.recompressed,
    })
}

fn entry_name(i: usize, d: &Descriptor) -> String {
    match d.ref_name() {
        Some(r) => r.to_string(),
        None => format!("index.json[{i}]"),
    }
}

fn read_doc(layout: &Layout, d: &Descriptor) -> Result<Map<String, Value>, ocikit_layout::Error> {
    let raw = layout.read_json::<Value>(&d.digest, Some(d.size))?;
    match raw.value {
        Value::Object(m) => Ok(m),
        _ => Err(ocikit_layout::Error::BadDocument {
            digest: d.digest.clone(),
            reason: "not a JSON object".into(),
        }),
    }
}

fn str_field<'a>(doc: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    doc.get(k).and_then(Value::as_str)
}

fn descriptors(doc: &Map<String, Value>, k: &str) -> Vec<Option<Descriptor>> {
    match doc.get(k) {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| serde_json::from_value(v.clone()).ok())
            .collect(),
        _ => Vec::new(),
    }
}

fn config_of(doc: &Map<String, Value>) -> Option<Descriptor> {
    doc.get("config")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// The image configs a converted manifest may have; anything else is an artifact.
fn is_image_config(mt: &MediaType) -> bool {
    matches!(mt, MediaType::OciConfig | MediaType::DockerConfig)
        || mt.as_str() == "application/octet-stream"
}

/// Is this manifest in Docker's format (by descriptor or by its own `mediaType`)?
fn is_docker_doc(desc: &Descriptor, doc: &Map<String, Value>) -> bool {
    match str_field(doc, "mediaType") {
        Some(s) => MediaType::parse(s).is_docker(),
        None => desc.media_type.is_docker(),
    }
}

/// The read-only pass: everything that would make the conversion fail.
struct Checker<'a> {
    layout: &'a Layout,
    opts: &'a ConvertOptions,
    seen: HashSet<Digest>,
    cases: Vec<Refusal>,
}

impl Checker<'_> {
    fn refuse(&mut self, path: &str, reason: String) {
        self.refuse_for(path, Reason::Other(reason));
    }

    fn refuse_for(&mut self, path: &str, reason: Reason) {
        self.cases.push(Refusal {
            path: path.to_string(),
            reason,
        });
    }

    fn check(&mut self, d: &Descriptor, path: &str) -> Result<(), ConvertError> {
        if !self.seen.insert(d.digest.clone()) {
            return Ok(());
        }
        let docker = self.opts.target == Some(Target::Docker);
        match d.media_type.class() {
            Class::Index => {
                let doc = read_doc(self.layout, d)?;
                let here = format!("{path} ({})", d.digest);
                if docker {
                    if let Some(t) = str_field(&doc, "artifactType") {
                        self.refuse(&here, format!("index has artifactType `{t}`"));
                    }
                    if let Some(s) = descriptor_field(&doc, "subject") {
                        self.refuse(&here, format!("index has a subject `{}`", s.digest));
                    }
                }
                for (i, c) in descriptors(&doc, "manifests").into_iter().enumerate() {
                    if let Some(c) = c {
                        self.check(&c, &format!("{path} > manifests[{i}]"))?;
                    }
                }
            }
            Class::Manifest => {
                let doc = read_doc(self.layout, d)?;
                self.check_manifest(d, &doc, &format!("{path} ({})", d.digest));
            }
            Class::Schema1 => {
                let raw = self.layout.read_json::<Schema1>(&d.digest, Some(d.size))?;
                let here = format!("{path} ({})", d.digest);
                match schema1::throwaways(&raw.value) {
                    Err(e) => {
                        self.refuse(&here, format!("schema1 manifest cannot be converted: {e}"))
                    }
                    Ok(throw) => {
                        // Its diff_ids come from the layer blobs: they must all be here.
                        for (i, l) in raw.value.fs_layers.iter().enumerate() {
                            if !throw[i] && self.layout.blob_size(&l.blob_sum)?.is_none() {
                                self.refuse(
                                    &here,
                                    format!("fsLayers[{i}] `{}` is not in the layout; its diff_id cannot be computed", l.blob_sum),
                                );
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn check_manifest(&mut self, d: &Descriptor, doc: &Map<String, Value>, here: &str) {
        let target = self.opts.target;
        let from_docker = is_docker_doc(d, doc);
        let artifact_type = str_field(doc, "artifactType");
        let config = config_of(doc);
        let image = artifact_type.is_none()
            && config
                .as_ref()
                .is_some_and(|c| is_image_config(&c.media_type));
        let Some(target) = target else {
            // Recompressing only: a Docker manifest cannot name a zstd layer.
            let zstd = self
                .opts
                .compress
                .is_some_and(|c| c.compression == Compression::Zstd);
            if from_docker && image && zstd {
                self.refuse(
                    here,
                    "a Docker manifest cannot hold zstd layers (convert it to OCI as well)".into(),
                );
            }
            return;
        };
        match target {
            Target::Oci => {
                if !from_docker || !image {
                    return;
                }
                for (i, l) in descriptors(doc, "layers").into_iter().enumerate() {
                    match l {
                        Some(l) if l.media_type.to_oci().class() == Class::Layer => {}
                        Some(l) => self.refuse(
                            here,
                            format!(
                                "layers[{i}] `{}` has media type `{}`, which has no OCI equivalent",
                                l.digest, l.media_type
                            ),
                        ),
                        None => self.refuse(here, format!("layers[{i}] is not a descriptor")),
                    }
                }
            }
            Target::Docker => {
                if from_docker {
                    return;
                }
                if let Some(t) = artifact_type {
                    self.refuse(here, format!("manifest has artifactType `{t}`"));
                }
                match &config {
                    Some(c) if is_image_config(&c.media_type) => {}
                    Some(c) => self.refuse(
                        here,
                        format!(
                            "config has media type `{}`, not an image config",
                            c.media_type
                        ),
                    ),
                    None => self.refuse(here, "manifest has no config descriptor".into()),
                }
                if let Some(s) = descriptor_field(doc, "subject") {
                    self.refuse(here, format!("manifest has a subject `{}`", s.digest));
                }
                if !image {
                    return; // an artifact: its layers are not image layers
                }
                let recompress = self.opts.compress.map(|c| c.compression);
                for (i, l) in descriptors(doc, "layers").into_iter().enumerate() {
                    let Some(l) = l else {
                        self.refuse(here, format!("layers[{i}] is not a descriptor"));
                        continue;
                    };
                    let mt = &l.media_type;
                    let what = format!("layers[{i}] `{}`", l.digest);
                    if mt.is_encrypted() {
                        self.refuse(here, format!("{what} is encrypted (`{mt}`)"));
                    } else if mt.compression() == Some(Compression::Zstd) {
                        if mt.is_non_distributable() {
                            self.refuse(
                                here,
                                format!("{what} is a non-distributable zstd layer (`{mt}`), which ocikit does not recompress"),
                            );
                        } else if recompress.is_none() {
                            self.refuse_for(
                                here,
                                Reason::ZstdLayer {
                                    index: i,
                                    digest: l.digest.clone(),
                                    media_type: mt.clone(),
                                },
                            );
                        }
                    } else if mt.class() != Class::Layer || mt.to_docker().is_none() {
                        self.refuse(
                            here,
                            format!("{what} has media type `{mt}`, which has no Docker equivalent"),
                        );
                    }
                }
            }
        }
    }
}

fn descriptor_field(doc: &Map<String, Value>, k: &str) -> Option<Descriptor> {
    doc.get(k)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Set a document's own `mediaType`: in place when present, else right after `schemaVersion`.
/// Returns whether the document changed.
fn set_media_type(doc: &mut Map<String, Value>, mt: &MediaType) -> bool {
    if str_field(doc, "mediaType") == Some(mt.as_str()) {
        return false;
    }
    let v = Value::String(mt.to_string());
    if doc.contains_key("mediaType") {
        doc.insert("mediaType".into(), v);
    } else {
        let at = doc
            .keys()
            .position(|k| k == "schemaVersion")
            .map_or(0, |p| p + 1);
        doc.shift_insert(at, "mediaType".into(), v);
    }
    true
}

/// The rewrite pass.
struct Converter<'a> {
    opts: &'a ConvertOptions,
    /// Recompresses layers: an image's layers in parallel, each layer once (by digest).
    builder: ImageBuilder<'a>,
    dropped: Vec<Dropped>,
    recompressed: Vec<(Digest, Digest)>,
    /// The layers in `recompressed`.
    reported: HashSet<Digest>,
}

/// A layer of one manifest to recompress: (position, descriptor, its compression, new type).
type Pending = (usize, Descriptor, Compression, MediaType);

impl<'a> Converter<'a> {
    fn new(lock: &'a WriteLock<'a>, opts: &'a ConvertOptions) -> Converter<'a> {
        let builder = ImageBuilder::new(lock)
            .threads(opts.parallel_layers)
            .format(match opts.target {
                Some(Target::Docker) => ManifestFormat::Docker,
                _ => ManifestFormat::Oci,
            });
        let builder = match opts.compress {
            Some(c) => builder.compress(c),
            None => builder.keep_compression(),
        };
        Converter {
            opts,
            builder,
            dropped: Vec::new(),
            recompressed: Vec::new(),
            reported: HashSet::new(),
        }
    }

    fn drop_annotations(&mut self, desc: &Descriptor, doc: &mut Map<String, Value>) -> bool {
        match doc.shift_remove("annotations") {
            Some(Value::Object(a)) => {
                if !a.is_empty() {
                    self.dropped.push(Dropped {
                        digest: desc.digest.clone(),
                        keys: a.keys().cloned().collect(),
                    });
                }
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Recompress a manifest's layers (in parallel; a layer seen before is not read again),
    /// each checked against its diff_id: the new blobs, in the order given.
    fn recompress(
        &mut self,
        layout: &Layout,
        manifest: &Digest,
        pending: &[Pending],
        diff_ids: &[Digest],
    ) -> Result<Vec<LayerInfo>, ConvertError> {
        let inputs: Vec<LayerInput<'_>> = pending
            .iter()
            .map(|(_, l, from, _)| {
                LayerInput::new(l.digest.to_string(), StoredLayer::new(layout, l))
                    .at(layout.blob_path(&l.digest))
                    .compressed(*from)
            })
            .collect();
        let expected: Vec<Digest> = pending.iter().map(|p| diff_ids[p.0].clone()).collect();
        let built = self
            .builder
            .write_layers(&inputs, Some(&expected))
            .map_err(|e| layer_error(layout, manifest, pending, e))?;
        let mut out = Vec::with_capacity(built.len());
        for ((_, l, _, _), b) in pending.iter().zip(built) {
            if self.reported.insert(l.digest.clone()) {
                self.recompressed
                    .push((l.digest.clone(), b.info.digest.clone()));
            }
            out.push(b.info);
        }
        Ok(out)
    }
}

/// The builder's error for one of `pending`, said as convert says it: naming the layer (and
/// the manifest, for a diff_id mismatch).
fn layer_error(
    layout: &Layout,
    manifest: &Digest,
    pending: &[Pending],
    e: BuildError,
) -> ConvertError {
    let (index, problem) = match e {
        BuildError::Layout(e) => return e.into(),
        // No config goes through the builder here; kept for completeness.
        BuildError::Config(problem) => (0, problem),
        BuildError::Layer { index, problem, .. } => (index, problem),
    };
    let Some(layer) = pending.get(index).map(|p| p.1.digest.clone()) else {
        return ConvertError::Layout(ocikit_layout::Error::BadDocument {
            digest: manifest.clone(),
            reason: problem.to_string(),
        });
    };
    match problem {
        Problem::DiffId {
            expected, found, ..
        } => ConvertError::DiffIdMismatch(Box::new(DiffIdMismatch {
            manifest: manifest.clone(),
            layer,
            expected,
            found,
        })),
        Problem::Layout(source) => ConvertError::Layer { layer, source },
        Problem::Io(e) => ConvertError::Layer {
            source: ocikit_layout::Error::io(layout.blob_path(&layer), e),
            layer,
        },
        Problem::Source(s) => match s.downcast::<ocikit_layout::Error>() {
            Ok(source) => ConvertError::Layer {
                layer,
                source: *source,
            },
            Err(s) => ConvertError::LayerContent {
                layer,
                problem: Problem::Source(s),
            },
        },
        problem => ConvertError::LayerContent { layer, problem },
    }
}

impl<'w, 'l> Transform<Store<'w, 'l>> for Converter<'_> {
    type Error = ConvertError;

    fn index(
        &mut self,
        _lock: &Store<'w, 'l>,
        desc: &Descriptor,
        doc: &mut Map<String, Value>,
        children_changed: bool,
    ) -> Result<DocEdit, ConvertError> {
        let Some(target) = self.opts.target else {
            return Ok(DocEdit {
                edited: children_changed,
                media_type: None,
            });
        };
        let new_type = target.index_type();
        let mut edited = children_changed;
        let was_docker = match str_field(doc, "mediaType") {
            Some(s) => MediaType::parse(s).is_docker(),
            None => desc.media_type.is_docker(),
        };
        let convert = match target {
            Target::Oci => was_docker,
            Target::Docker => !was_docker,
        };
        if convert {
            edited |= set_media_type(doc, &new_type);
            if target == Target::Docker {
                edited |= self.drop_annotations(desc, doc);
            }
        }
        Ok(DocEdit {
            edited,
            media_type: (convert && desc.media_type != new_type).then_some(new_type),
        })
    }

    fn manifest(
        &mut self,
        lock: &Store<'w, 'l>,
        desc: &Descriptor,
        doc: &mut Map<String, Value>,
    ) -> Result<DocEdit, ConvertError> {
        let target = self.opts.target;
        let from_docker = is_docker_doc(desc, doc);
        let Some(config) = config_of(doc) else {
            return Ok(DocEdit::unchanged());
        };
        let image = str_field(doc, "artifactType").is_none() && is_image_config(&config.media_type);
        if !image {
            return Ok(DocEdit::unchanged()); // artifacts pass through (refused earlier for docker)
        }
        let convert = target.is_some_and(|t| from_docker != (t == Target::Docker));
        // The family layers stay in when nothing is converted.
        let target = target.unwrap_or(if from_docker {
            Target::Docker
        } else {
            Target::Oci
        });
        let mut edited = false;
        if convert {
            edited |= set_media_type(doc, &target.manifest_type());
            let cfg_type = target.config_type();
            if config.media_type != cfg_type {
                if let Some(Value::Object(c)) = doc.get_mut("config") {
                    c.insert("mediaType".into(), Value::String(cfg_type.to_string()));
                    edited = true;
                }
            }
            if target == Target::Docker {
                edited |= self.drop_annotations(desc, doc);
            }
        }
        // Layers: relabel, and recompress when asked.
        let layers = descriptors(doc, "layers");
        let mut pending: Vec<Pending> = Vec::new();
        let mut new_layers: Vec<Option<Descriptor>> = Vec::with_capacity(layers.len());
        for l in &layers {
            let Some(l) = l else {
                new_layers.push(None);
                continue;
            };
            let map = |mt: &MediaType| {
                if convert {
                    target.layer_type(mt).unwrap_or_else(|| mt.clone())
                } else {
                    mt.clone()
                }
            };
            let mut new = l.clone();
            new.media_type = map(&l.media_type);
            // Recompress when asked, when the layer can be read, and when it is not already
            // in the asked compression. The new type keeps the layer's family (OCI or Docker,
            // distributable or not) and is mapped to the target's.
            let recompress = match (self.opts.compress, l.media_type.compression()) {
                (Some(opts), Some(from))
                    if from != opts.compression && !l.media_type.is_non_distributable() =>
                {
                    let c = opts.compression;
                    let to_type = match target {
                        Target::Oci => map(&l.media_type).with_compression(c),
                        Target::Docker => l.media_type.with_compression(c).map(|t| map(&t)),
                    };
                    to_type.map(|t| (opts, from, t))
                }
                _ => None,
            };
            if let Some((_, from, to_type)) = recompress {
                pending.push((new_layers.len(), l.clone(), from, to_type));
            }
            new_layers.push(Some(new));
        }
        if !pending.is_empty() {
            let cfg = lock
                .layout()
                .read_json::<ImageConfig>(&config.digest, Some(config.size))?;
            let diff_ids = cfg.value.rootfs.map(|r| r.diff_ids).unwrap_or_default();
            if diff_ids.len() != layers.len() {
                return Err(ConvertError::DiffIdCount {
                    manifest: desc.digest.clone(),
                    config: config.digest.clone(),
                    layers: layers.len(),
                    diff_ids: diff_ids.len(),
                });
            }
            let infos = self.recompress(lock.layout(), &desc.digest, &pending, &diff_ids)?;
            for ((i, _, _, to_type), info) in pending.into_iter().zip(infos) {
                if let Some(new) = new_layers[i].as_mut() {
                    new.digest = info.digest;
                    new.size = info.size;
                    new.media_type = to_type;
                }
            }
        }
        let new_layers: Vec<Option<Descriptor>> = new_layers
            .into_iter()
            .zip(&layers)
            .map(|(new, old)| new.filter(|n| Some(n) != old.as_ref()))
            .collect();
        if let Some(Value::Array(arr)) = doc.get_mut("layers") {
            for (v, new) in arr.iter_mut().zip(new_layers) {
                if let (Value::Object(obj), Some(new)) = (v, new) {
                    patch_descriptor(obj, &new);
                    edited = true;
                }
            }
        }
        let new_type = target.manifest_type();
        Ok(DocEdit {
            edited,
            media_type: (convert && desc.media_type != new_type).then_some(new_type),
        })
    }

    fn other(
        &mut self,
        lock: &Store<'w, 'l>,
        desc: &Descriptor,
    ) -> Result<Option<Descriptor>, ConvertError> {
        let Some(target) = self.opts.target else {
            return Ok(None); // recompressing only: schema1 is left as it is
        };
        if desc.media_type.class() != Class::Schema1 {
            return Ok(None);
        }
        let bytes = lock
            .layout()
            .read_blob(&desc.digest, Some(desc.size), JSON_LIMIT)?;
        let new = schema1::convert(lock, &bytes, target, self.opts.compress).map_err(|source| {
            ConvertError::Schema1 {
                manifest: desc.digest.clone(),
                source,
            }
        })?;
        Ok(Some(new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocikit_layout::Options;

    fn fixture_json(name: &str) -> Map<String, Value> {
        let p = format!(
            "{}/../../fixtures/convert/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
        serde_json::from_slice(&bytes).expect("fixture parses")
    }

    fn index_hook(
        name: &str,
        from: MediaType,
        target: Target,
    ) -> (Map<String, Value>, DocEdit, Vec<Dropped>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (layout, _) = Layout::init(
            dir.path().join("l"),
            Options {
                durable: false,
                ..Options::default()
            },
        )
        .expect("init");
        let lock = layout.lock().expect("lock");
        let opts = ConvertOptions::new(Some(target), Vec::new(), None);
        let mut conv = Converter::new(&lock, &opts);
        let mut doc = fixture_json(name);
        let desc = Descriptor::new(from, Digest::sha256(b"x"), 1);
        let edit = conv
            .index(&Store(&lock), &desc, &mut doc, false)
            .expect("hook");
        (doc, edit, conv.dropped)
    }

    /// containers/image has no expected-output fixture for list <-> index; its list fixtures
    /// are converted at the document level here (entries whose children are not converted keep
    /// their descriptors; children are converted in `tests/convert.rs`): only the document's own
    /// `mediaType` changes, entries and platforms stay as written, non-canonical variants
    /// (`armv7`) included.
    #[test]
    fn cimage_list_to_index_and_back() {
        for name in ["schema2list.json", "v2list.manifest.json"] {
            let (doc, edit, dropped) = index_hook(name, MediaType::DockerManifestList, Target::Oci);
            let mut expected = fixture_json(name);
            expected.insert(
                "mediaType".into(),
                Value::String(MediaType::OciIndex.to_string()),
            );
            assert_eq!(doc, expected, "{name}");
            assert_eq!(
                edit,
                DocEdit {
                    edited: true,
                    media_type: Some(MediaType::OciIndex)
                }
            );
            assert!(dropped.is_empty());
        }
        let (doc, _, _) = index_hook(
            "v2list.manifest.json",
            MediaType::DockerManifestList,
            Target::Oci,
        );
        assert_eq!(doc["manifests"][3]["platform"]["variant"], "armv7");
        assert_eq!(doc["manifests"][1]["platform"]["features"][0], "sse");

        // An OCI index to a Docker list: the index annotations have no Docker field, so they go
        // and are reported; entry annotations and platforms stay.
        let (doc, edit, dropped) =
            index_hook("oci1index.json", MediaType::OciIndex, Target::Docker);
        let mut expected = fixture_json("oci1index.json");
        expected.insert(
            "mediaType".into(),
            Value::String(MediaType::DockerManifestList.to_string()),
        );
        expected.shift_remove("annotations");
        assert_eq!(doc, expected);
        assert_eq!(edit.media_type, Some(MediaType::DockerManifestList));
        assert_eq!(
            dropped,
            vec![Dropped {
                digest: Digest::sha256(b"x"),
                keys: vec!["com.example.key1".into(), "com.example.key2".into()],
            }]
        );

        // Already in the target format: nothing to do.
        let (_, edit, _) = index_hook("oci1index.json", MediaType::OciIndex, Target::Oci);
        assert_eq!(edit, DocEdit::unchanged());
    }

    #[test]
    fn set_media_type_goes_after_schema_version() {
        let mut doc: Map<String, Value> =
            serde_json::from_str(r#"{"schemaVersion":2,"manifests":[]}"#).expect("json");
        assert!(set_media_type(&mut doc, &MediaType::DockerManifestList));
        assert_eq!(
            Value::Object(doc.clone()).to_string(),
            r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#
        );
        assert!(!set_media_type(&mut doc, &MediaType::DockerManifestList));
    }
}
