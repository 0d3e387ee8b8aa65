//! The image builder: an image config and its layer streams in, an image (layer blobs, config
//! blob, new manifest) in the layout out, under the writer lock the caller holds.
//!
//! It lives in the engine, beside [`transfer`](super::transfer()), because it is the other way
//! images enter a layout: `transfer` carries documents that exist, the builder makes new ones
//! from a config and layer streams (docker-save and legacy archives, skopeo `dir:` copies, the
//! build verbs) and recompresses the layers `convert` rewrites ([`StoredLayer`]: a blob already
//! in the layout, through [`ImageBuilder::write_layers`]). Like `transfer`, it writes blobs only
//! and commits nothing.
//!
//! What it does, in order:
//! - the config bytes are kept exactly (never re-serialized); they are checked as an import must
//!   leave nothing fsck finds wrong (valid JSON throughout, the image-spec schema checks) and
//!   parsed for `rootfs.diff_ids` and the platform; a declared config digest is verified;
//! - each layer is read once from its [`LayerSource`]: verified against its declared descriptor
//!   while read (its size is compared before any byte is read), its compression sniffed from
//!   its first bytes, stored as it is when already in the compression asked (or when asked to
//!   keep it), else decompressed and recompressed, its diff_id computed in the same pass;
//! - an image's layers are streamed in parallel (at most [`ImageBuilder::threads`] at a time,
//!   largest first, so the last to finish is a small one), then checked in order against the
//!   config's diff_ids, so a failing layer is reported where it stands, as a one-at-a-time
//!   build would report it;
//! - layers with the same [`LayerSource::key`] are read once per builder, across images;
//! - the config blob and a new manifest (compact JSON, `mediaType` set, OCI or Docker media
//!   types) are written last.
//!
//! Output depends only on the inputs and options: parallel and one-at-a-time builds write the
//! same bytes (the layer codecs are deterministic, see [`crate::chunked`]).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::compress::{decompressor, sniff, Sniffed, SNIFF_LEN};
use crate::fsck::run_parallel_max;
use crate::layer::{copy_large, copy_layer, write_layer, CompressOptions, LayerInfo};
use crate::validate::DocType;
use crate::{
    peek, unwrap_io, Class, Compression, Descriptor, Digest, Error, ImageConfig, Layout, Manifest,
    MediaType, VerifyingReader, WriteLock,
};

/// An error a [`LayerSource`] reports; callers downcast it back to their own error type.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Where a layer's bytes come from: something that can be opened (again) and sized.
///
/// It is shared between the builder's worker threads (`Sync`); each reader is opened, read and
/// dropped on one thread, so readers need not be `Send` (an archive member reader borrowing
/// the archive is enough).
pub trait LayerSource: Sync {
    /// Its size in bytes, known before reading (largest layers start first; a declared
    /// descriptor of another size is refused before any byte is read).
    fn size(&self) -> Result<u64, SourceError>;
    /// A reader of its bytes, from the start.
    fn open(&self) -> Result<Box<dyn Read + '_>, SourceError>;
    /// Its identity: layers of the same key are the same bytes, read once per builder.
    /// `None` (the default): read every time it is given.
    fn key(&self) -> Result<Option<String>, SourceError> {
        Ok(None)
    }
}

impl LayerSource for [u8] {
    fn size(&self) -> Result<u64, SourceError> {
        Ok(self.len() as u64)
    }
    fn open(&self) -> Result<Box<dyn Read + '_>, SourceError> {
        Ok(Box::new(self))
    }
}

impl<T: LayerSource + ?Sized> LayerSource for &T {
    fn size(&self) -> Result<u64, SourceError> {
        (**self).size()
    }
    fn open(&self) -> Result<Box<dyn Read + '_>, SourceError> {
        (**self).open()
    }
    fn key(&self) -> Result<Option<String>, SourceError> {
        (**self).key()
    }
}

impl LayerSource for Vec<u8> {
    fn size(&self) -> Result<u64, SourceError> {
        Ok(self.len() as u64)
    }
    fn open(&self) -> Result<Box<dyn Read + '_>, SourceError> {
        Ok(Box::new(&self[..]))
    }
}

/// A layer blob already in a layout (what `convert` recompresses): read through
/// [`Layout::open_blob`], so its size and digest are checked while it is read (a failure is a
/// [`Problem::Source`] holding the store's [`Error`]), and keyed by its digest, so a layer that
/// several images share is recompressed once per builder.
#[derive(Debug)]
pub struct StoredLayer<'a> {
    layout: &'a Layout,
    digest: Digest,
    size: u64,
}

impl<'a> StoredLayer<'a> {
    /// The blob `descriptor` names in `layout`.
    pub fn new(layout: &'a Layout, descriptor: &Descriptor) -> StoredLayer<'a> {
        StoredLayer {
            layout,
            digest: descriptor.digest.clone(),
            size: descriptor.size,
        }
    }
}

impl LayerSource for StoredLayer<'_> {
    fn size(&self) -> Result<u64, SourceError> {
        Ok(self.size)
    }
    fn open(&self) -> Result<Box<dyn Read + '_>, SourceError> {
        Ok(Box::new(
            self.layout.open_blob(&self.digest, Some(self.size))?,
        ))
    }
    fn key(&self) -> Result<Option<String>, SourceError> {
        Ok(Some(format!("blob\0{}", self.digest)))
    }
}

/// One layer of an image to build.
pub struct LayerInput<'a> {
    name: String,
    path: Option<PathBuf>,
    source: Option<Box<dyn LayerSource + 'a>>,
    declared: Option<Descriptor>,
    compression: Option<Compression>,
}

impl std::fmt::Debug for LayerInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerInput")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("source", &self.source.is_some())
            .field("declared", &self.declared)
            .field("compression", &self.compression)
            .finish()
    }
}

impl<'a> LayerInput<'a> {
    /// A layer read from `source`; `name` says which one in errors.
    pub fn new(name: impl Into<String>, source: impl LayerSource + 'a) -> LayerInput<'a> {
        LayerInput {
            name: name.into(),
            path: None,
            source: Some(Box::new(source)),
            declared: None,
            compression: None,
        }
    }

    /// A layer that is not shipped (a non-distributable layer with `urls`): its descriptor is
    /// kept (in the manifest's media type family), nothing is read or written, and its diff_id
    /// is the config's.
    pub fn absent(name: impl Into<String>, descriptor: Descriptor) -> LayerInput<'a> {
        LayerInput {
            name: name.into(),
            path: None,
            source: None,
            declared: Some(descriptor),
            compression: None,
        }
    }

    /// The descriptor the source gives the layer as it is read (compressed): its digest and
    /// size are verified while reading; its media type family, `urls` and `annotations` are
    /// kept on the new descriptor.
    pub fn declared(mut self, descriptor: Descriptor) -> LayerInput<'a> {
        self.declared = Some(descriptor);
        self
    }

    /// The compression its bytes must be in (a stored layer's media type says it): bytes in
    /// another are refused ([`Problem::Compression`]) instead of being read as what they are.
    pub fn compressed(mut self, compression: Compression) -> LayerInput<'a> {
        self.compression = Some(compression);
        self
    }

    /// The path a verification error names (default: the name).
    pub fn at(mut self, path: impl Into<PathBuf>) -> LayerInput<'a> {
        self.path = Some(path.into());
        self
    }

    /// The name errors give it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A layer the builder stored (or kept, for an absent layer).
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltLayer {
    /// Its descriptor in the new manifest.
    pub descriptor: Descriptor,
    /// The stored blob, its diff_id and compression.
    pub info: LayerInfo,
}

/// An image the builder wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltImage {
    /// The new manifest (its `platform` is the config's, when the config names one).
    pub manifest: Descriptor,
    /// The config blob, bytes as given.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<BuiltLayer>,
}

/// The media types of the new manifest, config and layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ManifestFormat {
    /// OCI image manifest, config and layer types.
    #[default]
    Oci,
    /// Docker schema2 types (no zstd layers).
    Docker,
}

/// An image to build: the config's exact bytes and the layers, base first.
#[derive(Debug)]
pub struct ImageInput<'i, 'a> {
    /// The config's bytes, stored as they are.
    pub config: &'i [u8],
    /// The config digest the source declares, verified (when the algorithm is known).
    pub config_digest: Option<&'i Digest>,
    /// The layers, base first, one per `rootfs.diff_ids` entry.
    pub layers: &'i [LayerInput<'a>],
    /// The new manifest's annotations.
    pub annotations: Option<crate::Annotations>,
}

/// What is wrong with the config or one layer (see [`BuildError`] for which).
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// The config is not JSON (anywhere in it, including fields nobody reads).
    #[error("the image config is not valid JSON: {0}")]
    ConfigJson(serde_json::Error),
    /// The config fails the image-spec schema checks (advisories aside).
    #[error("the image config is invalid: {}", .0.join("; "))]
    ConfigInvalid(Vec<String>),
    /// The config's bytes do not hash to the declared digest.
    #[error("the config has digest `{found}`, its descriptor says `{expected}`")]
    ConfigDigest {
        /// The declared digest.
        expected: Digest,
        /// The digest of the bytes.
        found: Digest,
    },
    /// `rootfs.diff_ids` and the layers differ in number.
    #[error("the config's rootfs.diff_ids lists {diff_ids} layers, the image has {layers}")]
    LayerCount {
        /// Entries of `rootfs.diff_ids`.
        diff_ids: usize,
        /// Layers given.
        layers: usize,
    },
    /// A layer's uncompressed content is not what the config says.
    #[error("diff_id mismatch: the layer's uncompressed content has digest `{found}`, the config's rootfs.diff_ids[{index}] is `{expected}`")]
    DiffId {
        /// The layer's position.
        index: usize,
        /// `rootfs.diff_ids[index]`.
        expected: Digest,
        /// The digest of the layer's uncompressed content.
        found: Digest,
    },
    /// The source's size differs from the declared descriptor's (nothing was read).
    #[error("is {found} bytes, its descriptor says {declared}")]
    Size {
        /// The source's size.
        found: u64,
        /// The declared size.
        declared: u64,
    },
    /// The bytes are not in the compression the layer must be in ([`LayerInput::compressed`]).
    #[error("its bytes are {}, its media type says {}", compression_words(*.found), .expected.as_str())]
    Compression {
        /// The compression asked for.
        expected: Compression,
        /// The compression sniffed from its first bytes.
        found: Compression,
    },
    /// A compression OCI layers cannot have (`bzip2`, `xz`).
    #[error("{0}-compressed layers are not supported")]
    Unsupported(&'static str),
    /// Neither a tar nor gzip nor zstd.
    #[error("not a tar layer (nor gzip or zstd)")]
    NotALayer,
    /// A zstd layer for a Docker manifest.
    #[error(
        "is zstd-compressed, which Docker manifests cannot hold; recompress with gzip or none"
    )]
    ZstdForDocker,
    /// An absent layer without a descriptor.
    #[error("has neither content nor a descriptor")]
    NoContent,
    /// Reading, decompressing or writing failed.
    #[error("{0}")]
    Io(std::io::Error),
    /// Reading or writing failed, or the content does not match the declared descriptor.
    #[error("{0}")]
    Layout(Error),
    /// The [`LayerSource`] failed (sizing, opening or naming it).
    #[error("{0}")]
    Source(SourceError),
}

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A store error not tied to one input (writing the config or the manifest, a declared
    /// digest that cannot be verified).
    #[error(transparent)]
    Layout(#[from] Error),
    /// The config is wrong.
    #[error("image config: {0}")]
    Config(Problem),
    /// A layer is wrong.
    #[error("layer {index} (`{name}`): {problem}")]
    Layer {
        /// Its position, base first.
        index: usize,
        /// Its name, as given.
        name: String,
        /// What is wrong.
        problem: Problem,
    },
}

/// Result of the builder.
pub type BuildResult<T> = std::result::Result<T, BuildError>;

/// The most layers streamed at once by default: each layer's compressor has its own workers
/// and chunk buffers, so a few layers at a time keep every core busy while memory stays
/// bounded on machines with many cores.
pub const PARALLEL_LAYERS: usize = 4;

/// A hook called after each layer the builder stores.
type OnLayer<'a> = Box<dyn FnMut(&LayerInfo) + 'a>;

/// Builds images into a layout: see the module documentation.
pub struct ImageBuilder<'a> {
    lock: &'a WriteLock<'a>,
    compress: Option<CompressOptions>,
    format: ManifestFormat,
    threads: usize,
    memo: HashMap<String, LayerInfo>,
    on_layer: Option<OnLayer<'a>>,
}

impl std::fmt::Debug for ImageBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageBuilder")
            .field("compress", &self.compress)
            .field("format", &self.format)
            .field("threads", &self.threads)
            .field("layers_known", &self.memo.len())
            .finish()
    }
}

impl<'a> ImageBuilder<'a> {
    /// A builder writing through `lock`: OCI media types, layers gzip-compressed at the default
    /// level, [`PARALLEL_LAYERS`] layers at a time.
    pub fn new(lock: &'a WriteLock<'a>) -> ImageBuilder<'a> {
        ImageBuilder {
            lock,
            compress: Some(CompressOptions::default()),
            format: ManifestFormat::Oci,
            threads: PARALLEL_LAYERS,
            memo: HashMap::new(),
            on_layer: None,
        }
    }

    /// Store layers in this compression (a layer already in it is stored as it is).
    pub fn compress(mut self, opts: CompressOptions) -> Self {
        self.compress = Some(opts);
        self
    }

    /// Store every layer in the compression it comes in.
    pub fn keep_compression(mut self) -> Self {
        self.compress = None;
        self
    }

    /// The media types of what is written.
    pub fn format(mut self, format: ManifestFormat) -> Self {
        self.format = format;
        self
    }

    /// At most this many layers streamed at once (1: one at a time); the number of cores
    /// bounds it too.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// Called on the caller's thread after each layer the builder newly stored.
    pub fn on_layer_written(mut self, f: impl FnMut(&LayerInfo) + 'a) -> Self {
        self.on_layer = Some(Box::new(f));
        self
    }

    /// Build one image: check the config, store its layers (checked against its diff_ids),
    /// then the config and a new manifest.
    pub fn build(&mut self, image: &ImageInput<'_, '_>) -> BuildResult<BuiltImage> {
        if let Some(d) = image.config_digest {
            if let Some(alg) = d.algorithm() {
                let found = Digest::of(alg, image.config);
                if &found != d {
                    return Err(BuildError::Config(Problem::ConfigDigest {
                        expected: d.clone(),
                        found,
                    }));
                }
            }
        }
        let cfg = parse_config(image.config).map_err(BuildError::Config)?;
        let diff_ids = diff_ids(&cfg);
        if diff_ids.len() != image.layers.len() {
            return Err(BuildError::Config(Problem::LayerCount {
                diff_ids: diff_ids.len(),
                layers: image.layers.len(),
            }));
        }
        let layers = self.write_layers(image.layers, Some(&diff_ids))?;
        self.write_documents(image.config, &cfg, layers, image.annotations.clone())
    }

    /// Store layers without a config yet (for a config made from their diff_ids, then given
    /// to [`ImageBuilder::finish`]). With `diff_ids`, each layer is checked against its entry.
    pub fn write_layers(
        &mut self,
        layers: &[LayerInput<'_>],
        diff_ids: Option<&[Digest]>,
    ) -> BuildResult<Vec<BuiltLayer>> {
        let mut early = self.stream_in_parallel(layers);
        let mut out = Vec::with_capacity(layers.len());
        for (i, input) in layers.iter().enumerate() {
            let expected = diff_ids.and_then(|d| d.get(i));
            out.push(self.write_layer_at(i, input, expected, &mut early)?);
        }
        Ok(out)
    }

    /// Write the config and a new manifest for layers already stored: the config's diff_ids
    /// must be the layers'.
    pub fn finish(
        &mut self,
        config: &[u8],
        layers: Vec<BuiltLayer>,
        annotations: Option<crate::Annotations>,
    ) -> BuildResult<BuiltImage> {
        let cfg = parse_config(config).map_err(BuildError::Config)?;
        let diff_ids = diff_ids(&cfg);
        if diff_ids.len() != layers.len() {
            return Err(BuildError::Config(Problem::LayerCount {
                diff_ids: diff_ids.len(),
                layers: layers.len(),
            }));
        }
        for (i, (l, expected)) in layers.iter().zip(&diff_ids).enumerate() {
            if &l.info.diff_id != expected {
                return Err(BuildError::Layer {
                    index: i,
                    name: l.descriptor.digest.to_string(),
                    problem: Problem::DiffId {
                        index: i,
                        expected: expected.clone(),
                        found: l.info.diff_id.clone(),
                    },
                });
            }
        }
        self.write_documents(config, &cfg, layers, annotations)
    }

    fn write_documents(
        &self,
        config: &[u8],
        cfg: &ImageConfig,
        layers: Vec<BuiltLayer>,
        annotations: Option<crate::Annotations>,
    ) -> BuildResult<BuiltImage> {
        let (manifest_type, config_type) = match self.format {
            ManifestFormat::Oci => (MediaType::OciManifest, MediaType::OciConfig),
            ManifestFormat::Docker => (MediaType::DockerManifest, MediaType::DockerConfig),
        };
        let (cd, cs) = self.lock.write_blob(config)?;
        let config = Descriptor::new(config_type, cd, cs);
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(manifest_type.clone()),
            artifact_type: None,
            config: config.clone(),
            layers: layers.iter().map(|l| l.descriptor.clone()).collect(),
            subject: None,
            annotations,
            extra: Map::new(),
        };
        let bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Json {
            what: "new manifest".into(),
            source: e,
        })?;
        let (md, ms) = self.lock.write_blob(&bytes)?;
        let mut d = Descriptor::new(manifest_type, md, ms);
        d.platform = cfg.platform().map(Box::new);
        Ok(BuiltImage {
            manifest: d,
            config,
            layers,
        })
    }

    /// Stream the layers not stored yet, a few at a time, largest first. A layer that fails
    /// here is left out: the in-order pass streams it again and reports its error where it
    /// stands (after any diff_id mismatch of an earlier layer). Returns what unkeyed layers
    /// gave, by position; keyed ones go to the memo.
    fn stream_in_parallel(&mut self, layers: &[LayerInput<'_>]) -> Vec<Option<LayerInfo>> {
        let mut early = vec![None; layers.len()];
        let mut todo: Vec<(usize, &dyn LayerSource, Option<String>)> = Vec::new();
        for (i, input) in layers.iter().enumerate() {
            let Some(src) = input.source.as_deref() else {
                continue;
            };
            let Ok(key) = src.key() else {
                continue;
            };
            if let Some(k) = &key {
                if self.memo.contains_key(k) || todo.iter().any(|t| t.2.as_ref() == Some(k)) {
                    continue;
                }
            }
            todo.push((i, src, key));
        }
        if todo.len() < 2 || self.threads < 2 {
            return early;
        }
        todo.sort_by_key(|(_, src, _)| std::cmp::Reverse(src.size().unwrap_or(0)));
        let (lock, compress, format) = (self.lock, self.compress, self.format);
        let infos = run_parallel_max(&todo, self.threads, |(i, src, _)| {
            stream_layer(lock, compress, format, *i, &layers[*i], *src).ok()
        });
        for ((i, _, key), info) in todo.into_iter().zip(infos) {
            if let Some(info) = info {
                self.written(&info);
                match key {
                    Some(k) => {
                        self.memo.insert(k, info);
                    }
                    None => early[i] = Some(info),
                }
            }
        }
        early
    }

    fn written(&mut self, info: &LayerInfo) {
        if let Some(f) = self.on_layer.as_mut() {
            f(info);
        }
    }

    fn write_layer_at(
        &mut self,
        index: usize,
        input: &LayerInput<'_>,
        expected: Option<&Digest>,
        early: &mut [Option<LayerInfo>],
    ) -> BuildResult<BuiltLayer> {
        let layer_err = |problem: Problem| BuildError::Layer {
            index,
            name: input.name.clone(),
            problem,
        };
        let Some(src) = input.source.as_deref() else {
            let Some(declared) = &input.declared else {
                return Err(layer_err(Problem::NoContent));
            };
            // Not shipped: keep the descriptor, pointing at its urls.
            let mut d = declared.clone();
            d.media_type = match self.format {
                ManifestFormat::Oci => d.media_type.to_oci(),
                ManifestFormat::Docker => d.media_type.to_docker().unwrap_or(d.media_type),
            };
            let info = LayerInfo {
                digest: d.digest.clone(),
                size: d.size,
                diff_id: expected.cloned().unwrap_or_else(|| d.digest.clone()),
                compression: d.media_type.compression().unwrap_or(Compression::Gzip),
            };
            return Ok(BuiltLayer {
                descriptor: d,
                info,
            });
        };
        let key = src.key().map_err(|e| layer_err(Problem::Source(e)))?;
        let known = match &key {
            Some(k) => self.memo.get(k).cloned(),
            None => early.get_mut(index).and_then(Option::take),
        };
        let info = match known {
            Some(info) => info,
            None => {
                let info = stream_layer(self.lock, self.compress, self.format, index, input, src)?;
                self.written(&info);
                if let Some(k) = key {
                    self.memo.insert(k, info.clone());
                }
                info
            }
        };
        if let Some(expected) = expected {
            if &info.diff_id != expected {
                return Err(layer_err(Problem::DiffId {
                    index,
                    expected: expected.clone(),
                    found: info.diff_id,
                }));
            }
        }
        let media_type = layer_type(self.format, input.declared.as_ref(), info.compression)
            .ok_or_else(|| layer_err(Problem::ZstdForDocker))?;
        let mut d = Descriptor::new(media_type, info.digest.clone(), info.size);
        if let Some(s) = &input.declared {
            d.urls = s.urls.clone();
            d.annotations = s.annotations.clone();
        }
        Ok(BuiltLayer {
            descriptor: d,
            info,
        })
    }
}

/// The new layer type: the declared type's family (non-distributable stays so) in the
/// manifest's format, with the stored compression; `None` for zstd in a Docker manifest.
fn layer_type(
    format: ManifestFormat,
    declared: Option<&Descriptor>,
    compression: Compression,
) -> Option<MediaType> {
    let layer = |t: &MediaType| (t.class() == Class::Layer).then(|| t.clone());
    match format {
        ManifestFormat::Oci => {
            let family = declared
                .and_then(|d| layer(&d.media_type.to_oci()))
                .unwrap_or(MediaType::OciLayer);
            Some(
                family
                    .with_compression(compression)
                    .or_else(|| MediaType::OciLayer.with_compression(compression))
                    .unwrap_or(MediaType::OciLayer),
            )
        }
        ManifestFormat::Docker => {
            let family = declared
                .and_then(|d| d.media_type.to_docker())
                .and_then(|t| layer(&t))
                .unwrap_or(MediaType::DockerLayer);
            family
                .with_compression(compression)
                .or_else(|| MediaType::DockerLayer.with_compression(compression))
        }
    }
}

/// Read one layer from its source into the layout.
fn stream_layer(
    lock: &WriteLock<'_>,
    compress: Option<CompressOptions>,
    format: ManifestFormat,
    index: usize,
    input: &LayerInput<'_>,
    src: &dyn LayerSource,
) -> BuildResult<LayerInfo> {
    let layer_err = |problem: Problem| BuildError::Layer {
        index,
        name: input.name.clone(),
        problem,
    };
    if let Some(d) = &input.declared {
        let found = src.size().map_err(|e| layer_err(Problem::Source(e)))?;
        if found != d.size {
            return Err(layer_err(Problem::Size {
                found,
                declared: d.size,
            }));
        }
    }
    let raw = src.open().map_err(|e| layer_err(Problem::Source(e)))?;
    let reader: Box<dyn Read + '_> = match &input.declared {
        Some(d) => {
            let alg = d
                .digest
                .algorithm()
                .ok_or_else(|| Error::Unverifiable(d.digest.clone()))?;
            let path = input
                .path
                .clone()
                .unwrap_or_else(|| PathBuf::from(&input.name));
            Box::new(VerifyingReader::new(
                raw,
                alg.hasher(),
                d.digest.clone(),
                Some(d.size),
                path,
            ))
        }
        None => raw,
    };
    let (head, mut r) = peek(reader, SNIFF_LEN).map_err(|e| layer_err(Problem::Io(e)))?;
    let found = match sniff(&head) {
        Sniffed::Known(c) => c,
        Sniffed::Bzip2 => return Err(layer_err(Problem::Unsupported("bzip2"))),
        Sniffed::Xz => return Err(layer_err(Problem::Unsupported("xz"))),
        Sniffed::Unknown => return Err(layer_err(Problem::NotALayer)),
    };
    if let Some(expected) = input.compression {
        if found != expected {
            return Err(layer_err(Problem::Compression { expected, found }));
        }
    }
    let stored = compress.map_or(found, |c| c.compression);
    if format == ManifestFormat::Docker && stored == Compression::Zstd {
        return Err(layer_err(Problem::ZstdForDocker));
    }
    let res = match compress {
        Some(opts) if opts.compression != found => {
            let mut dec = decompressor(&mut r, found).map_err(|e| layer_err(Problem::Io(e)))?;
            let res = write_layer(lock, &mut dec, opts);
            drop(dec);
            // Read what the decompressor left, so that a verifying source is checked to its
            // end (a digest or size mismatch is found there).
            res.and_then(|info| {
                copy_large(&mut r, &mut std::io::sink())
                    .map_err(|e| Error::io(Path::new(&input.name), e))?;
                Ok(info)
            })
        }
        _ => copy_layer(lock, &mut r, found),
    };
    res.map_err(|e| {
        layer_err(match e {
            // A plain read or decompression error: the layer is named by `layer_err` already,
            // so the message does not repeat it. Errors carried inside (a verification
            // failure, a file that could not be written) keep their own path.
            Error::Io { source, .. } => match unwrap_io(source, Path::new(&input.name)) {
                Error::Io { source, .. } => Problem::Io(source),
                other => Problem::Layout(other),
            },
            other => Problem::Layout(other),
        })
    })
}

fn compression_words(c: Compression) -> &'static str {
    match c {
        Compression::None => "an uncompressed tar",
        Compression::Gzip => "gzip-compressed",
        Compression::Zstd => "zstd-compressed",
    }
}

/// Check an image config as a build must (see the module documentation) and parse it.
pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig, Problem> {
    // The whole document first: the fields `ImageConfig` does not read are skipped by serde
    // without checking their strings (`IgnoredAny` does not either), and a config with invalid
    // UTF-8 there would be stored, and then be invalid JSON to fsck and to every other reader.
    serde_json::from_slice::<Value>(bytes).map_err(Problem::ConfigJson)?;
    // Then the schema checks fsck --deep applies (advisories aside): a build never leaves a
    // layout that fsck finds wrong. moby refuses the same configs (a `created` that is not an
    // RFC 3339 time fails its JSON decoding).
    let problems: Vec<String> = crate::validate::check(DocType::Config, bytes)
        .into_iter()
        .filter(|v| !v.contains("the spec says SHOULD"))
        .collect();
    if !problems.is_empty() {
        return Err(Problem::ConfigInvalid(problems));
    }
    serde_json::from_slice(bytes).map_err(Problem::ConfigJson)
}

fn diff_ids(cfg: &ImageConfig) -> Vec<Digest> {
    cfg.rootfs
        .as_ref()
        .map(|r| r.diff_ids.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::layout::scratch;
    use crate::Platform;

    /// A one-file tar, the same bytes every time.
    fn tar(name: &str, body: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, name, body).expect("append");
        b.into_inner().expect("tar")
    }

    fn config(diff_ids: &[&Digest]) -> Vec<u8> {
        let ids: Vec<String> = diff_ids.iter().map(|d| format!("\"{d}\"")).collect();
        format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            ids.join(",")
        )
        .into_bytes()
    }

    fn none() -> CompressOptions {
        CompressOptions {
            compression: Compression::None,
            level: None,
        }
    }

    #[test]
    fn one_uncompressed_layer_gives_an_exact_manifest() {
        let (_dir, l) = scratch();
        let lock = l.lock().expect("lock");
        let layer = tar("hello.txt", b"hello\n");
        let diff = Digest::sha256(&layer);
        let cfg = config(&[&diff]);
        let layers = [LayerInput::new("l.tar", layer.clone())];
        let built = ImageBuilder::new(&lock)
            .compress(none())
            .build(&ImageInput {
                config: &cfg,
                config_digest: None,
                layers: &layers,
                annotations: None,
            })
            .expect("build");
        assert_eq!(
            diff.as_str(),
            "sha256:f85f45d8a49665c258f2048bbcf662ead1cf2a5b67f0061f4b8d8e48d53da063"
        );
        assert_eq!(built.layers[0].info.digest, diff, "stored as it is");
        assert_eq!(built.layers[0].descriptor.media_type, MediaType::OciLayer);
        assert_eq!(built.config.media_type, MediaType::OciConfig);
        assert_eq!(built.config.digest, Digest::sha256(&cfg));
        assert_eq!(
            built.manifest.digest.as_str(),
            "sha256:ba7de58df0d355811607816084e0d932c2d21fc49203e292115304a595a9d79b"
        );
        assert_eq!(
            built.manifest.platform.as_deref().map(Platform::to_short),
            Some("linux/amd64".into())
        );
        let bytes = l
            .read_blob(&built.manifest.digest, Some(built.manifest.size), u64::MAX)
            .expect("manifest stored");
        assert_eq!(
            String::from_utf8(bytes).expect("utf8"),
            concat!(
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
                r#""config":{"mediaType":"application/vnd.oci.image.config.v1+json","#,
                r#""digest":"sha256:f56858c964ef010d84ef39ba9b0cd978816fb42c81372258127b7b7121f78f8a","size":151},"#,
                r#""layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","#,
                r#""digest":"sha256:f85f45d8a49665c258f2048bbcf662ead1cf2a5b67f0061f4b8d8e48d53da063","size":2048}]}"#
            )
        );
    }

    #[test]
    fn a_diff_id_mismatch_names_the_layer_and_both_digests() {
        let (_dir, l) = scratch();
        let lock = l.lock().expect("lock");
        let good = tar("a.txt", b"a");
        let other = tar("b.txt", b"b");
        let cfg = config(&[&Digest::sha256(&good), &Digest::sha256(&good)]);
        let layers = [
            LayerInput::new("base.tar", good.clone()),
            LayerInput::new("top.tar", other.clone()),
        ];
        let e = ImageBuilder::new(&lock)
            .build(&ImageInput {
                config: &cfg,
                config_digest: None,
                layers: &layers,
                annotations: None,
            })
            .expect_err("mismatch");
        assert!(matches!(
            &e,
            BuildError::Layer {
                index: 1,
                problem: Problem::DiffId { index: 1, .. },
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            format!(
                "layer 1 (`top.tar`): diff_id mismatch: the layer's uncompressed content has digest `{}`, the config's rootfs.diff_ids[1] is `{}`",
                Digest::sha256(&other),
                Digest::sha256(&good)
            )
        );
        assert_eq!(
            Digest::sha256(&other).as_str(),
            "sha256:9171d0ab5b9f62628f40c20c13f8400b1a3cf927b54fe7e446d513ef5d66a41c"
        );
    }

    /// Builds the same three-layer gzip image in a fresh layout; returns the manifest and every
    /// blob, by digest.
    fn build_three(threads: usize) -> (BuiltImage, std::collections::BTreeMap<String, Vec<u8>>) {
        let (dir, l) = scratch();
        let lock = l.lock().expect("lock");
        let bodies: Vec<Vec<u8>> = (0..3u32)
            .map(|n| {
                (0..(50_000 + n * 400_000))
                    .flat_map(|i| (i % (97 + n)).to_le_bytes())
                    .collect()
            })
            .collect();
        let tars: Vec<Vec<u8>> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| tar(&format!("f{i}"), b))
            .collect();
        let diffs: Vec<Digest> = tars.iter().map(|t| Digest::sha256(t)).collect();
        let cfg = config(&diffs.iter().collect::<Vec<_>>());
        let layers: Vec<LayerInput<'_>> = tars
            .iter()
            .enumerate()
            .map(|(i, t)| LayerInput::new(format!("l{i}"), &t[..]))
            .collect();
        let built = ImageBuilder::new(&lock)
            .threads(threads)
            .build(&ImageInput {
                config: &cfg,
                config_digest: Some(&Digest::sha256(&cfg)),
                layers: &layers,
                annotations: None,
            })
            .expect("build");
        let mut blobs = std::collections::BTreeMap::new();
        for e in std::fs::read_dir(dir.path().join("l/blobs/sha256")).expect("blobs") {
            let p = e.expect("entry").path();
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            blobs.insert(name, std::fs::read(&p).expect("read"));
        }
        (built, blobs)
    }

    #[test]
    fn parallel_and_one_at_a_time_write_the_same_bytes() {
        let (a, blobs_a) = build_three(4);
        let (b, blobs_b) = build_three(1);
        assert_eq!(a, b);
        assert_eq!(blobs_a, blobs_b);
        assert_eq!(blobs_a.len(), 5, "three layers, the config, the manifest");
        assert!(a
            .layers
            .iter()
            .all(|l| l.descriptor.media_type == MediaType::OciLayerGzip));
        assert_eq!(
            a.manifest.digest.as_str(),
            "sha256:f2ac7f2368aa70688608f09f236de5e8020f6f2ffc81781252a413ab59f541f4"
        );
    }

    /// Opens counted: a key makes a layer read once, within an image and across images.
    struct Counted<'c> {
        bytes: &'c [u8],
        opens: &'c AtomicUsize,
    }

    impl LayerSource for Counted<'_> {
        fn size(&self) -> Result<u64, SourceError> {
            Ok(self.bytes.len() as u64)
        }
        fn open(&self) -> Result<Box<dyn Read + '_>, SourceError> {
            self.opens.fetch_add(1, Ordering::Relaxed);
            Ok(Box::new(self.bytes))
        }
        fn key(&self) -> Result<Option<String>, SourceError> {
            Ok(Some("the layer".into()))
        }
    }

    #[test]
    fn layers_of_one_key_are_read_once() {
        let (_dir, l) = scratch();
        let lock = l.lock().expect("lock");
        let layer = tar("x", b"x");
        let diff = Digest::sha256(&layer);
        let cfg = config(&[&diff, &diff]);
        let opens = AtomicUsize::new(0);
        let written = std::cell::Cell::new(0);
        let input = || {
            LayerInput::new(
                "x.tar",
                Counted {
                    bytes: &layer,
                    opens: &opens,
                },
            )
        };
        let layers = [input(), input()];
        let mut builder =
            ImageBuilder::new(&lock).on_layer_written(|_| written.set(written.get() + 1));
        let image = ImageInput {
            config: &cfg,
            config_digest: None,
            layers: &layers,
            annotations: None,
        };
        let a = builder.build(&image).expect("first");
        let b = builder.build(&image).expect("second");
        assert_eq!(a, b);
        assert_eq!(opens.load(Ordering::Relaxed), 1);
        assert_eq!(written.get(), 1);
    }

    #[test]
    fn declared_descriptors_are_verified_and_their_family_kept() {
        let (_dir, l) = scratch();
        let lock = l.lock().expect("lock");
        let layer = tar("x", b"x");
        let diff = Digest::sha256(&layer);
        let cfg = config(&[&diff]);
        let build = |declared: Descriptor| {
            let layers = [LayerInput::new("x.tar", layer.clone())
                .declared(declared)
                .at("src/x.tar")];
            ImageBuilder::new(&lock)
                .compress(none())
                .build(&ImageInput {
                    config: &cfg,
                    config_digest: None,
                    layers: &layers,
                    annotations: None,
                })
        };
        // The size is checked before reading, the digest while reading.
        let e = build(Descriptor::new(MediaType::DockerLayer, diff.clone(), 7)).expect_err("size");
        assert_eq!(
            e.to_string(),
            "layer 0 (`x.tar`): is 2048 bytes, its descriptor says 7"
        );
        let wrong = Digest::sha256(b"something else");
        let e = build(Descriptor::new(MediaType::DockerLayer, wrong.clone(), 2048))
            .expect_err("digest");
        assert_eq!(
            e.to_string(),
            format!("layer 0 (`x.tar`): blob `{wrong}` at `src/x.tar` has digest `{diff}`")
        );
        // A Docker foreign layer stays non-distributable, in the OCI family; urls are kept.
        let mut foreign = Descriptor::new(MediaType::DockerForeignLayer, diff.clone(), 2048);
        foreign.urls = Some(vec!["https://example.invalid/x".into()]);
        let built = build(foreign).expect("build");
        assert_eq!(
            built.layers[0].descriptor.media_type,
            MediaType::OciLayerNondist
        );
        assert_eq!(
            built.layers[0].descriptor.urls,
            Some(vec!["https://example.invalid/x".to_string()])
        );
    }

    #[test]
    fn absent_layers_keep_their_descriptor_and_the_config_diff_id() {
        let (_dir, l) = scratch();
        let lock = l.lock().expect("lock");
        let diff = Digest::sha256(b"not shipped");
        let cfg = config(&[&diff]);
        let mut foreign = Descriptor::new(
            MediaType::DockerForeignLayerGzip,
            Digest::sha256(b"gz"),
            1234,
        );
        foreign.urls = Some(vec!["https://example.invalid/base".into()]);
        let layers = [LayerInput::absent("base", foreign)];
        let built = ImageBuilder::new(&lock)
            .build(&ImageInput {
                config: &cfg,
                config_digest: None,
                layers: &layers,
                annotations: None,
            })
            .expect("build");
        let d = &built.layers[0].descriptor;
        assert_eq!(d.media_type, MediaType::OciLayerNondistGzip);
        assert_eq!((d.digest.clone(), d.size), (Digest::sha256(b"gz"), 1234));
        assert_eq!(built.layers[0].info.diff_id, diff);
    }

    #[test]
    fn docker_manifests_refuse_zstd_and_name_docker_types() {
        let (_dir, l) = scratch();
        let lock = l.lock().expect("lock");
        let layer = tar("x", b"x");
        let cfg = config(&[&Digest::sha256(&layer)]);
        let layers = [LayerInput::new("x.tar", layer.clone())];
        let image = ImageInput {
            config: &cfg,
            config_digest: None,
            layers: &layers,
            annotations: None,
        };
        let zstd = CompressOptions {
            compression: Compression::Zstd,
            level: None,
        };
        let e = ImageBuilder::new(&lock)
            .format(ManifestFormat::Docker)
            .compress(zstd)
            .build(&image)
            .expect_err("zstd");
        assert_eq!(
            e.to_string(),
            "layer 0 (`x.tar`): is zstd-compressed, which Docker manifests cannot hold; recompress with gzip or none"
        );
        let built = ImageBuilder::new(&lock)
            .format(ManifestFormat::Docker)
            .build(&image)
            .expect("gzip");
        assert_eq!(built.manifest.media_type, MediaType::DockerManifest);
        assert_eq!(built.config.media_type, MediaType::DockerConfig);
        assert_eq!(
            built.layers[0].descriptor.media_type,
            MediaType::DockerLayerGzip
        );
    }

    #[test]
    fn config_problems_are_found_before_any_layer_is_read() {
        let (_dir, l) = scratch();
        let lock = l.lock().expect("lock");
        let layer = tar("x", b"x");
        let layers = [LayerInput::new("x.tar", layer.clone())];
        let cfg = config(&[]);
        let e = ImageBuilder::new(&lock)
            .build(&ImageInput {
                config: &cfg,
                config_digest: Some(&Digest::sha256(b"{}")),
                layers: &layers,
                annotations: None,
            })
            .expect_err("digest");
        assert_eq!(
            e.to_string(),
            format!(
                "image config: the config has digest `{}`, its descriptor says `{}`",
                Digest::sha256(&cfg),
                Digest::sha256(b"{}")
            )
        );
        let e = ImageBuilder::new(&lock)
            .build(&ImageInput {
                config: &cfg,
                config_digest: None,
                layers: &layers,
                annotations: None,
            })
            .expect_err("count");
        assert_eq!(
            e.to_string(),
            "image config: the config's rootfs.diff_ids lists 0 layers, the image has 1"
        );
        assert!(crate::fsck::list_blobs(&l).expect("list").is_empty());
    }
}
