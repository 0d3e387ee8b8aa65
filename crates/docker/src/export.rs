//! `export`: refs of a layout out as one tar, streamed.
//!
//! - [`Format::DockerArchive`]: the dual format Docker 25+ writes, read by every `docker load`
//!   version, containerd and skopeo: an OCI layout (`oci-layout`, `index.json`,
//!   `blobs/sha256/...`) plus `manifest.json` and `repositories`. Layers are stored as
//!   uncompressed tars named by their diff_id; the archive's own OCI manifest (new bytes)
//!   describes those uncompressed layers; the config bytes are kept exactly.
//! - [`Format::OciArchive`]: a tar of the layout reduced to what the refs reach, every blob
//!   and every descriptor as it is.
//!
//! Deterministic: entries in a fixed order (oci-archive: sorted by name; docker-archive: the
//! directories, then the layers sorted by name, then every other entry sorted by name),
//! uid/gid 0, no user or group names, modes 0755 and 0644, one mtime for all
//! (`SOURCE_DATE_EPOCH` or 0); JSON written compact with a fixed field order.
//!
//! Streaming: a tar header needs the member's size before its data, and the uncompressed size
//! of a stored gzip or zstd layer is not recorded anywhere. This module decompresses such a
//! layer twice: once to learn its size and check that it hashes to the config's diff_id, then
//! again while writing it into the tar. The second pass checks the stored bytes' digest again
//! at their end, before the tar entry is complete, so it decompresses the very bytes the first
//! pass checked and a changed blob stops the export with an error; the output is not hashed a
//! second time. Every image is checked before anything is written; the layers go first, so the
//! first pass of the next layers runs on other cores while one is written (`write_layers`),
//! and the archive's manifests, which name the layers' sizes, follow them. Writing a layer is
//! three threads: reading and hashing the stored bytes, decompressing, writing. The
//! alternative, spooling each decompressed layer to a temp file, would need free disk space the
//! size of the largest layer and write every byte twice; decompression is cheaper than that
//! (zlib-rs inflates at ~600 MB/s, zstd at ~2 GB/s here) and memory stays constant.
//! Uncompressed stored layers are read once. A layer whose diff_id does not match is found
//! before it is written, but possibly after earlier layers were: a file output is then
//! removed; on stdout the archive is cut short and the exit code says so.
//!
//! Progress ([`ExportOptions::progress`]) counts the stored bytes of the blobs written, not the
//! tar's: their total is known once the images are checked, the tar's only at its end.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::path::Path;

use ocikit_layout::archive::{ArchiveError, TarWriter};

use ocikit_layout::compress::decompressor;
use ocikit_layout::refs;
use ocikit_layout::{
    unwrap_io, Algorithm, Class, Compression, Descriptor, Digest, ImageConfig, Index, Layout,
    Manifest, MediaType, PlatformSpec, JSON_LIMIT, OCI_LAYOUT_CONTENT, REF_NAME,
};
use serde_json::{Map, Value};

use crate::import::CONTAINERD_NAME;
use crate::names::containerd_name;
use crate::{Error, Result};

/// The archive format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Docker 25+ dual format (OCI layout + `manifest.json` + `repositories`).
    #[default]
    DockerArchive,
    /// A tarred OCI layout.
    OciArchive,
}

impl Format {
    /// The format's name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::DockerArchive => "docker-archive",
            Format::OciArchive => "oci-archive",
        }
    }
}

/// How to export.
#[derive(Clone, Default)]
pub struct ExportOptions<'a> {
    /// The format.
    pub format: Format,
    /// The platform to take from refs that name an index.
    pub platform: Option<PlatformSpec>,
    /// The mtime of every entry (seconds since the epoch).
    pub mtime: u64,
    /// Progress, in bytes of the layout's blobs the archive carries: called once with their
    /// total when every image has been checked, before anything is written (the archive's
    /// own size is not known then: a docker-archive's layers are decompressed on the way).
    pub on_total: Option<&'a (dyn Fn(u64) + Sync)>,
    /// Progress: called with each amount of those blob bytes written into the archive.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl std::fmt::Debug for ExportOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportOptions")
            .field("format", &self.format)
            .field("platform", &self.platform)
            .field("mtime", &self.mtime)
            .field("on_total", &self.on_total.is_some())
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Default)]
pub struct ExportReport {
    /// Images (docker-archive) or index entries (oci-archive) written.
    pub entries: usize,
    /// Blobs written.
    pub blobs: usize,
    /// Bytes of tar written.
    pub bytes: u64,
}

/// Export `what` (refs or digests of `index.json` entries; all entries when empty) to `out`.
pub fn export(
    layout: &Layout,
    what: &[String],
    opts: &ExportOptions<'_>,
    out: &mut dyn Write,
) -> Result<ExportReport> {
    let index = layout.read_index()?.value;
    // (the name the user gave, or None for all, the entry)
    let mut selected: Vec<(Option<String>, Descriptor)> = Vec::new();
    if what.is_empty() {
        for d in &index.manifests {
            selected.push((d.ref_name().map(String::from), d.clone()));
        }
        if selected.is_empty() {
            return Err(Error::Usage(format!(
                "`{}` has no entries in index.json: nothing to export",
                layout.root().display()
            )));
        }
    } else {
        for w in what {
            let i = refs::resolve_entry(&index, w, layout.root())?;
            let d = index.manifests[i].clone();
            let name = d.ref_name().filter(|r| r == w).map(String::from);
            selected.push((name, d));
        }
    }
    let mut counter = CountingWriter {
        inner: out,
        count: 0,
    };
    let mut report = match opts.format {
        Format::DockerArchive => docker_archive(layout, &selected, opts, &mut counter)?,
        Format::OciArchive => oci_archive(layout, &index, &selected, opts, &mut counter)?,
    };
    counter.flush().map_err(output_error)?;
    report.bytes = counter.count;
    Ok(report)
}

/// [`export`] to the file `path`, whole or not at all: written beside it and renamed at the end
/// ([`ocikit_layout::output::write_atomically`], fsynced when the layout is durable), so a
/// failed export leaves no file and an existing one as it was. A path inside the layout is
/// refused.
pub fn export_to_file(
    layout: &Layout,
    what: &[String],
    opts: &ExportOptions<'_>,
    path: &Path,
) -> Result<ExportReport> {
    ocikit_layout::output::refuse_inside(path, layout.root())?;
    let durable = layout.options().durable;
    let (report, _) =
        ocikit_layout::output::write_atomically(path, durable, |w| export(layout, what, opts, w))?;
    Ok(report)
}

/// Pick the image manifest a descriptor leads to: an index needs a platform.
fn pick_image(
    layout: &Layout,
    name: &str,
    d: &Descriptor,
    platform: Option<&PlatformSpec>,
) -> Result<Descriptor> {
    let mut cur = d.clone();
    for _ in 0..8 {
        if cur.media_type.class() != Class::Index {
            return Ok(cur);
        }
        let ix = layout
            .read_json::<Index>(&cur.digest, Some(cur.size))?
            .value;
        let platforms: Vec<String> = ix
            .manifests
            .iter()
            .map(|m| {
                m.platform
                    .as_ref()
                    .map(|p| p.to_short())
                    .unwrap_or_else(|| "unknown".into())
            })
            .collect();
        let Some(spec) = platform else {
            return Err(Error::NeedPlatform {
                name: name.to_string(),
                platforms,
            });
        };
        let Some(child) = ix
            .manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(|p| p.matches(spec)))
        else {
            return Err(Error::Usage(format!(
                "ref `{name}` has no image for platform `{}/{}{}`; it has: {}",
                spec.os,
                spec.architecture,
                spec.variant
                    .as_ref()
                    .map(|v| format!("/{v}"))
                    .unwrap_or_default(),
                platforms.join(", ")
            )));
        };
        cur = child.clone();
    }
    Err(Error::Usage(format!(
        "ref `{name}`: indexes nested too deeply"
    )))
}

// ---------------------------------------------------------------- tar writing

struct CountingWriter<'a> {
    inner: &'a mut dyn Write,
    count: u64,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What goes into the tar, by name (sorted by the map).
enum Content {
    Dir,
    Bytes(Vec<u8>),
    /// A stored blob, as it is.
    Blob(Descriptor),
    /// A stored layer, decompressed: (stored descriptor, diff_id, uncompressed size).
    Layer(Descriptor, Digest, u64),
}

/// The tar of an export, written through the one deterministic writer.
type Tar<'a> = TarWriter<&'a mut dyn Write>;

/// The progress callback of [`ExportOptions`].
type ProgressFn<'a> = Option<&'a (dyn Fn(u64) + Sync)>;

/// A reader that reports the bytes read from it.
struct Reporting<'a, R> {
    inner: R,
    progress: ProgressFn<'a>,
}

impl<R: Read> Read for Reporting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(p) = self.progress {
            p(n as u64);
        }
        Ok(n)
    }
}

/// The stored bytes of the blobs among `entries`: the progress total.
fn stored_total<'e>(entries: impl IntoIterator<Item = &'e Content>) -> u64 {
    entries
        .into_iter()
        .map(|c| match c {
            Content::Blob(d) | Content::Layer(d, ..) => d.size,
            Content::Dir | Content::Bytes(_) => 0,
        })
        .sum()
}

fn write_tar(
    layout: &Layout,
    entries: &BTreeMap<String, Content>,
    opts: &ExportOptions<'_>,
    out: &mut dyn Write,
) -> Result<usize> {
    if let Some(t) = opts.on_total {
        t(stored_total(entries.values()));
    }
    let mut b = TarWriter::new(out, opts.mtime);
    let blobs = write_entries(layout, &mut b, entries, opts.progress)?;
    b.finish().map_err(|e| tar_error(e, Path::new("")))?;
    Ok(blobs)
}

/// A tar writing error as the crate's: a failed read of the blob at `blob` (a digest that no
/// longer matches) gives back the layout error it carries; the output failing names the file
/// being written ([`ocikit_layout::Error::Write`]).
fn tar_error(e: ArchiveError, blob: &Path) -> Error {
    match e {
        ArchiveError::Source { source, .. } => Error::Layout(unwrap_io(source, blob)),
        ArchiveError::Output { source } => output_error(source),
        e => Error::Layout(ocikit_layout::Error::Archive(e)),
    }
}

/// The output failing: an output file names itself (it carries [`ocikit_layout::Error::Write`]);
/// another writer (standard output) is `output`.
fn output_error(e: io::Error) -> Error {
    Error::Layout(ocikit_layout::Error::writing("output", e))
}

/// Append `entries` to `b`, in their order; returns how many blobs were written. `progress`
/// hears of the stored blob bytes read.
fn write_entries(
    layout: &Layout,
    b: &mut Tar<'_>,
    entries: &BTreeMap<String, Content>,
    progress: ProgressFn<'_>,
) -> Result<usize> {
    let mut blobs = 0;
    let output = |e| tar_error(e, Path::new(""));
    for (name, c) in entries {
        match c {
            Content::Dir => b.dir(name).map_err(output)?,
            Content::Bytes(bytes) => {
                b.file(name, bytes).map_err(output)?;
                if name.starts_with("blobs/") {
                    blobs += 1;
                }
            }
            Content::Blob(d) => {
                let path = layout.blob_path(&d.digest);
                let r = layout.open_blob(&d.digest, Some(d.size))?;
                let mut r = Reporting { inner: r, progress };
                b.stream(name, d.size, &mut r)
                    .map_err(|e| tar_error(e, &path))?;
                blobs += 1;
            }
            Content::Layer(d, _diff_id, size) => {
                let path = layout.blob_path(&d.digest);
                let compression = d.media_type.compression().unwrap_or(Compression::None);
                let raw = Reporting {
                    inner: layout.open_blob(&d.digest, Some(d.size))?,
                    progress,
                };
                // Three stages on their own threads: reading and hashing the stored bytes
                // (checked at their end), decompressing, writing. The stored bytes are the
                // ones the first pass decompressed to `diff_id` (their digest is checked again
                // before the entry ends), so the output is not hashed again.
                std::thread::scope(|scope| {
                    let (stored, reader) = Pipe::start(scope, move || Ok(Box::new(raw)));
                    let (mut inner, inflater) =
                        Pipe::start(scope, move || decompressor(stored, compression));
                    let res = b.stream(name, *size, &mut inner);
                    drop(inner);
                    let _ = inflater.join();
                    let _ = reader.join();
                    res.map_err(|e| tar_error(e, &path))
                })?;
                blobs += 1;
            }
        }
    }
    Ok(blobs)
}

/// Blocks of [`Pipe`].
const PIPE_BLOCK: usize = 1 << 20;
/// Blocks in flight in a [`Pipe`].
const PIPE_DEPTH: usize = 4;

/// A reader fed by a thread that reads another reader ahead, in blocks (recycled, so memory
/// is [`PIPE_DEPTH`] blocks). The thread reads its source to the end (so a verifying source
/// checks its digest there); an error there is handed to this reader.
struct Pipe {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    back: std::sync::mpsc::SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Pipe {
    /// Start the thread; it makes its source with `make` and reads it.
    fn start<'scope, 'env, F>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        make: F,
    ) -> (Pipe, std::thread::ScopedJoinHandle<'scope, ()>)
    where
        F: FnOnce() -> io::Result<Box<dyn Read + 'scope>> + Send + 'scope,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(PIPE_DEPTH);
        let (back, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPE_DEPTH + 2);
        let handle = scope.spawn(move || {
            let mut src = match make() {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            Self::feed(&mut src, &tx, &spare);
        });
        (
            Pipe {
                rx,
                back,
                cur: Vec::new(),
                pos: 0,
            },
            handle,
        )
    }

    fn feed(
        src: &mut dyn Read,
        tx: &std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>,
        spare: &std::sync::mpsc::Receiver<Vec<u8>>,
    ) {
        loop {
            let mut buf = spare
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(PIPE_BLOCK));
            buf.resize(PIPE_BLOCK, 0);
            match ocikit_layout::compress::read_full(src, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send(Ok(buf)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    break;
                }
            }
        }
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(block) => {
                    let old = std::mem::replace(&mut self.cur, block?);
                    let _ = self.back.try_send(old);
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Decompress a stored layer once: its uncompressed size and digest (the stored bytes are
/// verified on the way).
fn measure_layer(
    layout: &Layout,
    d: &Descriptor,
    compression: Compression,
) -> Result<(Digest, u64)> {
    let path = layout.blob_path(&d.digest);
    let raw = layout.open_blob(&d.digest, Some(d.size))?;
    let mut dec = decompressor(raw, compression).map_err(|e| Error::io(&path, e))?;
    let mut h = Algorithm::Sha256.hasher();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = dec
            .read(&mut buf)
            .map_err(|e| Error::Layout(unwrap_io(e, &path)))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((h.finish(), size))
}

fn add_dirs(entries: &mut BTreeMap<String, Content>, name: &str) {
    let mut cur = String::new();
    let parts: Vec<&str> = name.split('/').collect();
    for p in &parts[..parts.len() - 1] {
        if !cur.is_empty() {
            cur.push('/');
        }
        cur.push_str(p);
        entries.entry(cur.clone()).or_insert(Content::Dir);
    }
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm_str(), d.encoded())
}

fn json_bytes<T: serde::Serialize>(v: &T, what: &str) -> Result<Vec<u8>> {
    ocikit_layout::json::to_vec(v).map_err(|e| {
        Error::Layout(ocikit_layout::Error::Json {
            what: what.into(),
            source: e,
        })
    })
}

// ---------------------------------------------------------------- docker-archive

struct ArchiveImage {
    manifest: Descriptor,
    config: Digest,
    layers: Vec<Digest>,
    layer_sources: BTreeMap<String, Descriptor>,
    names: Vec<String>,
}

fn docker_archive(
    layout: &Layout,
    selected: &[(Option<String>, Descriptor)],
    opts: &ExportOptions<'_>,
    out: &mut dyn Write,
) -> Result<ExportReport> {
    // 1. Check every image before anything is written.
    let mut planned: Vec<Planned> = Vec::new();
    for (name, entry) in selected {
        let label = name.clone().unwrap_or_else(|| entry.digest.to_string());
        let not = |reason: String| Error::NotExportable {
            name: label.clone(),
            format: "docker-archive",
            reason,
        };
        let d = pick_image(layout, &label, entry, opts.platform.as_ref())?;
        match d.media_type.class() {
            Class::Manifest => {}
            Class::Schema1 => {
                return Err(not(
                    "it is a Docker schema1 manifest; `ocikit convert` it to OCI first".into(),
                ))
            }
            _ => {
                return Err(not(format!(
                    "`{}` is not an image manifest (an artifact or an unknown type)",
                    d.media_type
                )))
            }
        }
        let man = layout.read_json::<Manifest>(&d.digest, Some(d.size))?.value;
        if man.config.media_type.class() != Class::Config || man.artifact_type.is_some() {
            return Err(not(format!(
                "it is an artifact: its config is `{}`, not an image config",
                man.config.media_type
            )));
        }
        let cfg_bytes = layout.read_blob(&man.config.digest, Some(man.config.size), JSON_LIMIT)?;
        let cfg: ImageConfig = serde_json::from_slice(&cfg_bytes)
            .map_err(|e| not(format!("its config does not parse: {e}")))?;
        let diff_ids = cfg.rootfs.clone().map(|r| r.diff_ids).unwrap_or_default();
        if diff_ids.len() != man.layers.len() {
            return Err(not(format!(
                "its config lists {} diff_ids for {} layers",
                diff_ids.len(),
                man.layers.len()
            )));
        }
        for (i, l) in man.layers.iter().enumerate() {
            if l.media_type.compression().is_none() {
                return Err(not(format!(
                    "layer {i} has type `{}`, which Docker cannot load",
                    l.media_type
                )));
            }
            if l.media_type.class() != Class::Layer {
                return Err(not(format!(
                    "layer {i} has type `{}`, not a layer type",
                    l.media_type
                )));
            }
        }
        planned.push(Planned {
            name: name.clone(),
            label,
            d,
            man,
            cfg_bytes,
            cfg,
            diff_ids,
        });
    }

    // 2. The layers, each once, in name order, first in the archive: while one is written,
    //    the next ones are decompressed to learn their sizes.
    let mut jobs: BTreeMap<String, LayerJob<'_>> = BTreeMap::new();
    for p in &planned {
        for (i, l) in p.man.layers.iter().enumerate() {
            jobs.entry(blob_name(&p.diff_ids[i]))
                .or_insert_with(|| LayerJob {
                    l,
                    c: l.media_type.compression().unwrap_or(Compression::None),
                    diff_id: p.diff_ids[i].clone(),
                    label: p.label.clone(),
                    i,
                });
        }
    }
    let mut dirs: BTreeMap<String, Content> = BTreeMap::new();
    add_dirs(&mut dirs, "blobs/sha256/x");
    for n in jobs.keys() {
        add_dirs(&mut dirs, n);
    }
    for p in &planned {
        add_dirs(&mut dirs, &blob_name(&p.man.config.digest));
    }
    if let Some(t) = opts.on_total {
        t(jobs.values().map(|j| j.l.size).sum());
    }
    let mut b = TarWriter::new(out, opts.mtime);
    let mut blobs = write_entries(layout, &mut b, &dirs, None)?;
    let (written, sizes) = write_layers(layout, &mut b, &jobs, opts.progress)?;
    blobs += written;

    // 3. Configs, the archive's manifests (which name the layers' sizes), and the indexes.
    let mut entries: BTreeMap<String, Content> = BTreeMap::new();
    let mut images: Vec<ArchiveImage> = Vec::new();
    for p in planned {
        let mut layers = Vec::new();
        let mut descs = Vec::new();
        let mut layer_sources = BTreeMap::new();
        for (i, l) in p.man.layers.iter().enumerate() {
            let diff_id = p.diff_ids[i].clone();
            let size = sizes.get(&blob_name(&diff_id)).copied().unwrap_or(0);
            let mt = if l.media_type.is_non_distributable() {
                MediaType::OciLayerNondist
            } else {
                MediaType::OciLayer
            };
            let mut nd = Descriptor::new(mt, diff_id.clone(), size);
            nd.urls = l.urls.clone();
            if l.media_type.is_non_distributable() {
                layer_sources.insert(diff_id.to_string(), nd.clone());
            }
            descs.push(nd);
            layers.push(diff_id);
        }
        let cfg_name = blob_name(&p.man.config.digest);
        entries.insert(cfg_name, Content::Bytes(p.cfg_bytes));
        let new = Manifest {
            schema_version: 2,
            media_type: Some(MediaType::OciManifest),
            artifact_type: None,
            config: Descriptor::new(
                MediaType::OciConfig,
                p.man.config.digest.clone(),
                p.man.config.size,
            ),
            layers: descs,
            subject: None,
            annotations: p.man.annotations.clone(),
            extra: Map::new(),
        };
        let mbytes = json_bytes(&new, "archive manifest")?;
        let mut md = Descriptor::new(
            MediaType::OciManifest,
            Digest::sha256(&mbytes),
            mbytes.len() as u64,
        );
        md.platform = p.cfg.platform().map(Box::new).or(p.d.platform.clone());
        let mname = blob_name(&md.digest);
        entries.insert(mname, Content::Bytes(mbytes));
        let name = p.name;
        match images.iter_mut().find(|im| im.manifest.digest == md.digest) {
            Some(im) => im.names.extend(name),
            None => images.push(ArchiveImage {
                manifest: md,
                config: p.man.config.digest.clone(),
                layers,
                layer_sources,
                names: name.into_iter().collect(),
            }),
        }
    }
    // `docker load` takes only `name:tag` references; say so before writing anything.
    for im in &images {
        for n in &im.names {
            if let Err(reason) = crate::names::check_docker_tagged(n) {
                return Err(Error::NotExportable {
                    name: n.clone(),
                    format: "docker-archive",
                    reason: format!(
                        "{reason}; `docker load` needs NAME:TAG (e.g. `ocikit tag DIR {n} app:{}`)",
                        if crate::names::is_docker_tag(n) {
                            n.as_str()
                        } else {
                            "latest"
                        }
                    ),
                });
            }
        }
    }
    // index.json: one entry per name (Docker 25 style), an untagged image gets one bare entry.
    let mut index = Index::empty();
    let mut save = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for im in &images {
        if im.names.is_empty() {
            index.manifests.push(im.manifest.clone());
        }
        for n in &im.names {
            let mut d = im.manifest.clone();
            let mut ann = ocikit_layout::Annotations::new();
            if let Some(full) = containerd_name(n) {
                ann.insert(CONTAINERD_NAME.to_string(), full);
            }
            ann.insert(REF_NAME.to_string(), tag_of(n).unwrap_or(n).to_string());
            d.annotations = Some(ann);
            index.manifests.push(d);
            if let (Some((repo, tag)), Some(top)) = (split_repo_tag(n), im.layers.last()) {
                repositories
                    .entry(familiar(repo))
                    .or_default()
                    .insert(tag.to_string(), top.encoded().to_string());
            }
        }
        let mut e = Map::new();
        e.insert("Config".into(), Value::String(blob_name(&im.config)));
        e.insert(
            "RepoTags".into(),
            if im.names.is_empty() {
                Value::Null
            } else {
                Value::Array(im.names.iter().cloned().map(Value::String).collect())
            },
        );
        e.insert(
            "Layers".into(),
            Value::Array(
                im.layers
                    .iter()
                    .map(|l| Value::String(blob_name(l)))
                    .collect(),
            ),
        );
        if !im.layer_sources.is_empty() {
            let ls = serde_json::to_value(&im.layer_sources).map_err(|e| {
                Error::Layout(ocikit_layout::Error::Json {
                    what: "LayerSources".into(),
                    source: e,
                })
            })?;
            e.insert("LayerSources".into(), ls);
        }
        save.push(Value::Object(e));
    }
    entries.insert(
        "index.json".into(),
        Content::Bytes(json_bytes(&index, "index.json")?),
    );
    let mut mj = json_bytes(&save, "manifest.json")?;
    mj.push(b'\n');
    entries.insert("manifest.json".into(), Content::Bytes(mj));
    entries.insert(
        "oci-layout".into(),
        Content::Bytes(OCI_LAYOUT_CONTENT.to_vec()),
    );
    if !repositories.is_empty() {
        let mut r = json_bytes(&repositories, "repositories")?;
        r.push(b'\n');
        entries.insert("repositories".into(), Content::Bytes(r));
    }
    blobs += write_entries(layout, &mut b, &entries, None)?;
    b.finish().map_err(|e| tar_error(e, Path::new("")))?;
    Ok(ExportReport {
        entries: images.len(),
        blobs,
        bytes: 0,
    })
}

/// An image that passed the checks, waiting for its layers' sizes.
struct Planned {
    name: Option<String>,
    label: String,
    d: Descriptor,
    man: Manifest,
    cfg_bytes: Vec<u8>,
    cfg: ImageConfig,
    diff_ids: Vec<Digest>,
}

/// A layer's first pass: its diff_id and uncompressed size.
type Measured = Result<(Digest, u64)>;

/// A layer to write into a docker-archive, uncompressed, named by its diff_id.
struct LayerJob<'a> {
    l: &'a Descriptor,
    c: Compression,
    diff_id: Digest,
    /// The first image naming it, and its position there, for messages.
    label: String,
    i: usize,
}

/// Write the layers in `jobs`' order; a pool of threads decompresses the compressed ones
/// ahead, in the same order, to learn their sizes and check their diff_ids, while the layer
/// before is being written. Returns the blobs written and each layer's uncompressed size.
/// `progress` hears of the stored bytes written (the first pass is not counted).
fn write_layers(
    layout: &Layout,
    b: &mut Tar<'_>,
    jobs: &BTreeMap<String, LayerJob<'_>>,
    progress: ProgressFn<'_>,
) -> Result<(usize, HashMap<String, u64>)> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex};
    let list: Vec<(&String, &LayerJob<'_>)> = jobs.iter().collect();
    let slots: Mutex<Vec<Option<Measured>>> = Mutex::new(list.iter().map(|_| None).collect());
    let ready = Condvar::new();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let measuring = list
        .iter()
        .filter(|(_, j)| j.c != Compression::None)
        .count();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(measuring)
        .min(4);
    let mut sizes = HashMap::new();
    let mut written = 0;
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                if k >= list.len() || stop.load(Ordering::SeqCst) {
                    break;
                }
                let j = list[k].1;
                if j.c == Compression::None {
                    continue;
                }
                let r = measure_layer(layout, j.l, j.c);
                if let Ok(mut all) = slots.lock() {
                    all[k] = Some(r);
                }
                ready.notify_all();
            });
        }
        let result = (|| -> Result<()> {
            for (k, (name, j)) in list.iter().enumerate() {
                let (found, size) = if j.c == Compression::None {
                    // Stored uncompressed: the blob is the tar, and its digest is its diff_id.
                    (j.l.digest.clone(), j.l.size)
                } else {
                    let poisoned = || Error::io("export", io::Error::other("lock poisoned"));
                    let mut all = slots.lock().map_err(|_| poisoned())?;
                    loop {
                        if let Some(r) = all[k].take() {
                            break r?;
                        }
                        all = ready.wait(all).map_err(|_| poisoned())?;
                    }
                };
                if found != j.diff_id {
                    return Err(Error::NotExportable {
                        name: j.label.clone(),
                        format: "docker-archive",
                        reason: format!(
                            "layer {} `{}` decompresses to `{found}`, the config's diff_id is `{}`",
                            j.i, j.l.digest, j.diff_id
                        ),
                    });
                }
                let content = if j.c == Compression::None {
                    Content::Blob(j.l.clone())
                } else {
                    Content::Layer(j.l.clone(), j.diff_id.clone(), size)
                };
                let one: BTreeMap<String, Content> =
                    std::iter::once(((*name).clone(), content)).collect();
                written += write_entries(layout, b, &one, progress)?;
                sizes.insert((*name).clone(), size);
            }
            Ok(())
        })();
        stop.store(true, Ordering::SeqCst);
        result
    })?;
    Ok((written, sizes))
}

/// `repo:tag` -> `(repo, tag)`; a digest reference or a bare name has no tag.
fn split_repo_tag(n: &str) -> Option<(&str, &str)> {
    if n.contains('@') {
        return None;
    }
    let slash = n.rfind('/').map(|i| i + 1).unwrap_or(0);
    let colon = n[slash..].rfind(':')? + slash;
    Some((&n[..colon], &n[colon + 1..]))
}

fn tag_of(n: &str) -> Option<&str> {
    split_repo_tag(n).map(|(_, t)| t)
}

/// Docker's familiar form of a repository: `docker.io/library/x` -> `x`.
fn familiar(repo: &str) -> String {
    let r = repo
        .strip_prefix("docker.io/")
        .or_else(|| repo.strip_prefix("index.docker.io/"))
        .unwrap_or(repo);
    r.strip_prefix("library/")
        .filter(|rest| !rest.contains('/') && r.len() != repo.len())
        .unwrap_or(r)
        .to_string()
}

// ---------------------------------------------------------------- oci-archive

fn oci_archive(
    layout: &Layout,
    source: &Index,
    selected: &[(Option<String>, Descriptor)],
    opts: &ExportOptions<'_>,
    out: &mut dyn Write,
) -> Result<ExportReport> {
    let mut index = Index {
        manifests: Vec::new(),
        ..source.clone()
    };
    for (name, entry) in selected {
        let label = name.clone().unwrap_or_else(|| entry.digest.to_string());
        let d = match (&opts.platform, entry.media_type.class()) {
            (Some(p), Class::Index) => {
                let mut picked = pick_image(layout, &label, entry, Some(p))?;
                picked.annotations = entry.annotations.clone();
                picked
            }
            _ => entry.clone(),
        };
        if !index.manifests.contains(&d) {
            index.manifests.push(d);
        }
    }
    let mut entries: BTreeMap<String, Content> = BTreeMap::new();
    // One plan: a missing, corrupt or too-deep document fails the export; an absent `subject`
    // or foreign layer is left out, as everywhere.
    let plan = ocikit_layout::engine::plan(layout, &index.manifests)?;
    for b in &plan.blobs {
        let size = match (layout.blob_size(&b.digest)?, b.size) {
            (None, _) if b.optional => continue,
            (None, _) => {
                return Err(Error::Layout(ocikit_layout::Error::MissingBlob {
                    digest: b.digest.clone(),
                    path: layout.blob_path(&b.digest),
                }))
            }
            (Some(_), Some(declared)) => declared,
            (Some(found), None) => found,
        };
        let name = blob_name(&b.digest);
        add_dirs(&mut entries, &name);
        entries.insert(
            name,
            Content::Blob(Descriptor::new(
                b.media_type.clone(),
                b.digest.clone(),
                size,
            )),
        );
    }
    entries.insert(
        "index.json".into(),
        Content::Bytes(json_bytes(&index, "index.json")?),
    );
    entries.insert(
        "oci-layout".into(),
        Content::Bytes(OCI_LAYOUT_CONTENT.to_vec()),
    );
    let blobs = write_tar(layout, &entries, opts, out)?;
    Ok(ExportReport {
        entries: index.manifests.len(),
        blobs,
        bytes: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that yields `good` bytes, then fails.
    struct Failing {
        good: usize,
    }

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.good == 0 {
                return Err(io::Error::other("boom"));
            }
            let n = buf.len().min(self.good).min(1000);
            buf[..n].fill(7);
            self.good -= n;
            Ok(n)
        }
    }

    #[test]
    fn pipe_passes_bytes_through_and_errors_after_them() {
        let data: Vec<u8> = (0..3 * PIPE_BLOCK + 17).map(|i| (i % 253) as u8).collect();
        let got = std::thread::scope(|scope| {
            let src = data.clone();
            let (mut p, h) = Pipe::start(scope, move || Ok(Box::new(io::Cursor::new(src))));
            let mut got = Vec::new();
            p.read_to_end(&mut got).expect("read");
            h.join().expect("join");
            got
        });
        assert_eq!(got, data);

        let err = std::thread::scope(|scope| {
            let (mut p, h) = Pipe::start(scope, || {
                Ok(Box::new(Failing {
                    good: PIPE_BLOCK + 5,
                }))
            });
            let mut got = Vec::new();
            let e = p.read_to_end(&mut got).expect_err("fails");
            drop(p);
            h.join().expect("join");
            assert_eq!(got.len(), PIPE_BLOCK, "the full block before the error");
            e
        });
        assert_eq!(err.to_string(), "boom");
    }

    /// Export `fmt` of a layout imported from `fixture` to memory: (the progress total, the
    /// sum of the progress calls, the total's calls).
    fn progress_of(fixture: &str, fmt: Format) -> (u64, u64, usize) {
        use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("l");
        let src = std::path::PathBuf::from(format!(
            "{}/../../fixtures/docker/{fixture}",
            env!("CARGO_MANIFEST_DIR")
        ));
        crate::import::import_any(
            &[src],
            &dir,
            ocikit_layout::Options::default(),
            &crate::import::ImportOptions::default(),
            false,
        )
        .expect("import");
        let layout = Layout::open(&dir, ocikit_layout::Options::default()).expect("open");
        let (total, sum, calls) = (AtomicU64::new(0), AtomicU64::new(0), AtomicUsize::new(0));
        let on_total = |n: u64| {
            total.store(n, Ordering::SeqCst);
            calls.fetch_add(1, Ordering::SeqCst);
        };
        let progress = |n: u64| {
            sum.fetch_add(n, Ordering::SeqCst);
        };
        let opts = ExportOptions {
            format: fmt,
            on_total: Some(&on_total),
            progress: Some(&progress),
            ..Default::default()
        };
        export(&layout, &[], &opts, &mut Vec::new()).expect("export");
        (
            total.load(Ordering::SeqCst),
            sum.load(Ordering::SeqCst),
            calls.load(Ordering::SeqCst),
        )
    }

    /// The progress bar has a total up front and ends at it: the stored bytes of the blobs
    /// carried (the gzip layers of a docker-archive, not their decompressed size).
    #[test]
    fn progress_has_a_total_and_reaches_it() {
        let (total, sum, calls) = progress_of("ggcr-test_image_1.tar", Format::DockerArchive);
        assert_eq!((total, sum, calls), (158, 158, 1));
        let (total, sum, calls) = progress_of("ggcr-test_image_1.tar", Format::OciArchive);
        assert_eq!((total, sum, calls), (889, 889, 1));
    }

    #[test]
    fn names() {
        assert_eq!(
            split_repo_tag("busybox:latest"),
            Some(("busybox", "latest"))
        );
        assert_eq!(split_repo_tag("localhost:5000/x"), None);
        assert_eq!(
            split_repo_tag("localhost:5000/x:1"),
            Some(("localhost:5000/x", "1"))
        );
        assert_eq!(split_repo_tag("x@sha256:abc"), None);
        assert_eq!(familiar("docker.io/library/busybox"), "busybox");
        assert_eq!(familiar("docker.io/bazel/x"), "bazel/x");
        assert_eq!(familiar("library/busybox"), "library/busybox");
        assert_eq!(familiar("quay.io/a/b"), "quay.io/a/b");
    }
}
