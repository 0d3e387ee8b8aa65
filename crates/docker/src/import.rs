//! `import`: Docker archives, OCI archives, skopeo `dir:` copies and OCI layouts into a layout.
//!
//! How each source kind becomes index entries:
//! - docker-save archives (legacy, skopeo's, Docker 25+) and `dir:` copies are *images*: each
//!   layer is streamed once from its member into a new blob, compressed as asked (a layer already
//!   in that compression is stored as it is), its diff_id computed in the same pass and checked
//!   against the config's `rootfs.diff_ids`. An image's layers are streamed in parallel, one
//!   per core, largest first (`stream_layers_in_parallel`), then checked in order. The config
//!   bytes are stored exactly; a new OCI manifest (compact JSON, `mediaType` set) names them as
//!   `application/vnd.oci.image.config.v1+json`.
//! - OCI archives and Docker 25+ index entries that are not plain images (indexes, unknown types)
//!   are *copied*: every blob reachable from the entry is streamed over, verified against its
//!   descriptor, and the entry is kept as it is (annotations included).
//! - OCI layout directories are merged through [`ocikit_layout::copy::copy_blob`] (hard links on
//!   the same filesystem).
//! - The oldest archives (`repositories` and `<id>/json` only) are rebuilt as moby's legacy
//!   loader rebuilds them: the parent chain gives the layers, the top `<id>/json` minus the v1
//!   fields becomes the config, with `rootfs` and `history` added. A zero-byte `layer.tar` is an
//!   empty layer (a history entry with `empty_layer`), not a layer.
//!
//! Names: every RepoTag becomes a ref (`org.opencontainers.image.ref.name`, as written) and the
//! entry also carries `io.containerd.image.name` (the normalized full name). An existing ref is
//! moved; the report lists it. All or nothing: `index.json` is committed once, at the end, under
//! the layout lock; a destination that did not exist before is removed when the import fails.
//!
//! [`import_any`] is the one entry point for any sources: bundle parts (recognised by their
//! first tar header) go to the bundle loader, everything else to [`import`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use ocikit_layout::bundle::LoadReport;
use ocikit_layout::compress::{decompressor, sniff, Sniffed, SNIFF_LEN};
use ocikit_layout::engine::{self, merge_entry, ImageSource};
use ocikit_layout::fsck::run_parallel_max;
use ocikit_layout::layer::{copy_layer, write_layer, CompressOptions, LayerInfo};
use ocikit_layout::output::NewDir;
use ocikit_layout::refs;
use ocikit_layout::validate::DocType;
use ocikit_layout::walk::shape_class;
use ocikit_layout::Class;
use ocikit_layout::{
    peek, Descriptor, Digest, ImageConfig, Index, Layout, Manifest, MediaType, Options,
    VerifyingReader, WriteLock, JSON_LIMIT,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::archive::Archive;
use crate::names::containerd_name;
use crate::source::{detect, DirMembers, Kind, Members, MembersSource, Progress, Source};
use crate::{Error, Result};

/// The annotation containerd uses for an image's full name.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// How to import.
#[derive(Clone, Default)]
pub struct ImportOptions<'a> {
    /// Compression of new layers (default gzip).
    pub compress: CompressOptions,
    /// A ref for the one untagged image of the sources.
    pub ref_name: Option<String>,
    /// Called with the number of source bytes read, as layers and blobs are streamed.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl std::fmt::Debug for ImportOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportOptions")
            .field("compress", &self.compress)
            .field("ref_name", &self.ref_name)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// One index entry the import wrote.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The source it came from.
    pub source: PathBuf,
    /// The source's kind.
    pub kind: Kind,
    /// The entry (ref annotation included when it has one).
    pub descriptor: Descriptor,
}

/// A ref that named something else before the import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedRef {
    /// The ref.
    pub name: String,
    /// What it named.
    pub from: Vec<Digest>,
    /// What it names now.
    pub to: Digest,
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// Whether the destination layout was created.
    pub created: bool,
    /// The entries written, in order.
    pub entries: Vec<Imported>,
    /// Refs that moved.
    pub moved: Vec<MovedRef>,
}

/// An entry to add: its descriptor (without ref) and its ref name.
struct Entry {
    source: usize,
    descriptor: Descriptor,
    name: Option<String>,
    /// Whether the untagged image may take `--ref` (images only, not copied entries).
    image: bool,
}

/// Import `sources` into the layout `dest` (created if missing).
pub fn import(
    sources: &[PathBuf],
    dest: &Path,
    layout_opts: Options,
    opts: &ImportOptions<'_>,
) -> Result<ImportReport> {
    if let Some(r) = &opts.ref_name {
        refs::check_ref_name(r)?;
    }
    let detected = sources
        .iter()
        .map(|p| detect(p))
        .collect::<Result<Vec<_>>>()?;
    // Nothing of a failed import may remain where nothing was.
    NewDir::run(dest, || {
        import_into(sources, &detected, dest, layout_opts, opts)
    })
}

/// What [`import_any`] did: an import of images, or a bundle load.
#[derive(Debug, Clone)]
pub enum AnyReport {
    /// The sources were images (archives, `dir:` copies, layouts): [`import`].
    Images(ImportReport),
    /// The sources were bundle parts: [`ocikit_layout::bundle::load_into`].
    Bundle(LoadReport),
}

/// Import `sources` into the layout `dest` (created if missing), whatever they are: bundle
/// parts are loaded ([`ocikit_layout::bundle::load_into`]; `dry_run` verifies them and writes
/// nothing), anything else is imported ([`import`]). Bundle parts cannot be mixed with other
/// sources ([`Error::MixedBundleParts`]), and a dry run is for bundle parts only
/// ([`Error::DryRunNeedsBundle`]).
pub fn import_any(
    sources: &[PathBuf],
    dest: &Path,
    layout_opts: Options,
    opts: &ImportOptions<'_>,
    dry_run: bool,
) -> Result<AnyReport> {
    let parts = sources
        .iter()
        .filter(|s| ocikit_layout::bundle::is_bundle_part(s))
        .count();
    if parts > 0 {
        if parts < sources.len() {
            return Err(Error::MixedBundleParts);
        }
        let report = ocikit_layout::bundle::load_into(dest, sources, layout_opts, dry_run)?;
        return Ok(AnyReport::Bundle(report));
    }
    if dry_run {
        return Err(Error::DryRunNeedsBundle);
    }
    Ok(AnyReport::Images(import(sources, dest, layout_opts, opts)?))
}

fn import_into(
    paths: &[PathBuf],
    sources: &[Source],
    dest: &Path,
    layout_opts: Options,
    opts: &ImportOptions<'_>,
) -> Result<ImportReport> {
    let (layout, created) = Layout::init(dest, layout_opts)?;
    let lock = layout.lock()?;
    let mut ctx = Ctx {
        lock: &lock,
        opts,
        layers: HashMap::new(),
        written: 0,
        copied: HashSet::new(),
    };
    let mut entries = Vec::new();
    for (i, src) in sources.iter().enumerate() {
        let before = entries.len();
        match src {
            Source::Archive(ar, Kind::DockerSave) => docker_save(&mut ctx, ar, &mut entries)?,
            Source::Archive(ar, Kind::Docker25) => docker25(&mut ctx, ar, &mut entries)?,
            Source::Archive(ar, Kind::LegacyRepositories) => legacy(&mut ctx, ar, &mut entries)?,
            Source::Archive(ar, _) => oci_archive(&mut ctx, ar, &mut entries)?,
            Source::SkopeoDir(d) => skopeo_dir(&mut ctx, d, &mut entries)?,
            Source::LayoutDir(l) => layout_dir(&mut ctx, l, &mut entries)?,
        }
        for e in &mut entries[before..] {
            e.source = i;
        }
    }
    if let Some(r) = &opts.ref_name {
        let untagged: Vec<usize> = (0..entries.len())
            .filter(|&i| entries[i].image && entries[i].name.is_none())
            .collect();
        match untagged.len() {
            1 => entries[untagged[0]].name = Some(r.clone()),
            n => {
                return Err(Error::RefNeedsOneUntagged {
                    name: r.clone(),
                    untagged: n,
                })
            }
        }
    }
    let mut index = layout.read_index()?.value;
    // What each ref named before: a move is news only against this, not against an earlier
    // source of the same import.
    let before: HashMap<String, Vec<Digest>> = index
        .manifests
        .iter()
        .filter_map(|m| Some((m.ref_name()?.to_string(), m.digest.clone())))
        .fold(HashMap::new(), |mut acc, (n, d)| {
            acc.entry(n).or_default().push(d);
            acc
        });
    let mut report = ImportReport {
        created,
        ..ImportReport::default()
    };
    for e in entries {
        let mut d = e.descriptor;
        if let Some(n) = &e.name {
            // Images built from Docker sources carry the full name for containerd; entries of
            // OCI-shaped sources are merged as they are, exactly as `copy` merges them.
            let has_name = d
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(CONTAINERD_NAME));
            if e.image && !has_name {
                if let Some(full) = containerd_name(n) {
                    d.annotations
                        .get_or_insert_with(BTreeMap::new)
                        .insert(CONTAINERD_NAME.into(), full);
                }
            }
        }
        d.set_ref_name(e.name.as_deref());
        merge_entry(&mut index, &d)?;
        report.entries.push(Imported {
            source: paths[e.source].clone(),
            kind: sources[e.source].kind(),
            descriptor: d,
        });
    }
    let mut moved: Vec<&String> = before.keys().collect();
    moved.sort();
    for name in moved {
        let now: Vec<&Digest> = index
            .manifests
            .iter()
            .filter(|m| m.ref_name() == Some(name.as_str()))
            .map(|m| &m.digest)
            .collect();
        if let [to] = now[..] {
            let from = &before[name];
            if from.iter().any(|f| f != to) {
                report.moved.push(MovedRef {
                    name: name.clone(),
                    from: from.clone(),
                    to: to.clone(),
                });
            }
        }
    }
    lock.commit_index(&index)?;
    Ok(report)
}

struct Ctx<'a> {
    lock: &'a WriteLock<'a>,
    opts: &'a ImportOptions<'a>,
    /// Layers already written, by source path and (resolved) member.
    layers: HashMap<(PathBuf, String), LayerInfo>,
    /// Layers written so far (for the crash-test fault point).
    written: usize,
    /// Blobs already copied by [`copy_tree`].
    copied: HashSet<Digest>,
}

/// One layer of an image to build.
struct LayerPlan {
    /// The member holding it.
    member: String,
    /// The descriptor the source gives it (OCI-shaped sources, LayerSources): its digest and
    /// size are verified while reading; its media type family, urls and annotations are kept.
    source: Option<Descriptor>,
}

/// An image to build from members.
struct ImagePlan {
    config: String,
    config_digest: Option<Digest>,
    layers: Vec<LayerPlan>,
    annotations: Option<BTreeMap<String, String>>,
}

/// The member name of a blob in an OCI layout.
fn blob_member(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm_str(), d.encoded())
}

fn parse_config(m: &dyn Members, name: &str, bytes: &[u8]) -> Result<ImageConfig> {
    let bad = |e: serde_json::Error| {
        Error::member(
            m.path(),
            name,
            format!("the image config is not valid JSON: {e}"),
        )
    };
    // The whole document first: the fields `ImageConfig` does not read are skipped by serde
    // without checking their strings (`IgnoredAny` does not either), and a config with invalid
    // UTF-8 there would be stored, and then be invalid JSON to fsck and to every other reader.
    serde_json::from_slice::<Value>(bytes).map_err(bad)?;
    // Then the schema checks fsck --deep applies (advisories aside): an import never leaves
    // a layout that fsck finds wrong. moby refuses the same configs (a `created` that is not an
    // RFC 3339 time fails its JSON decoding).
    let problems: Vec<String> = ocikit_layout::validate::check(DocType::Config, bytes)
        .into_iter()
        .filter(|v| !v.contains("the spec says SHOULD"))
        .collect();
    if !problems.is_empty() {
        return Err(Error::member(
            m.path(),
            name,
            format!("the image config is invalid: {}", problems.join("; ")),
        ));
    }
    serde_json::from_slice(bytes).map_err(bad)
}

/// Build an image: store the config as it is, stream every layer, write a new OCI manifest.
fn write_image(ctx: &mut Ctx<'_>, m: &dyn Members, plan: &ImagePlan) -> Result<Descriptor> {
    let cfg_bytes = m.read_small(&plan.config, JSON_LIMIT)?;
    if let Some(d) = &plan.config_digest {
        let found = Digest::sha256(&cfg_bytes);
        if d.algorithm_str() == "sha256" && &found != d {
            return Err(Error::member(
                m.path(),
                &plan.config,
                format!("the config has digest `{found}`, its descriptor says `{d}`"),
            ));
        }
    }
    let cfg = parse_config(m, &plan.config, &cfg_bytes)?;
    let diff_ids = cfg
        .rootfs
        .as_ref()
        .map(|r| r.diff_ids.clone())
        .unwrap_or_default();
    if diff_ids.len() != plan.layers.len() {
        return Err(Error::member(
            m.path(),
            &plan.config,
            format!(
                "the config's rootfs.diff_ids lists {} layers, the image has {}",
                diff_ids.len(),
                plan.layers.len()
            ),
        ));
    }
    stream_layers_in_parallel(ctx, m, &plan.layers);
    let mut layers = Vec::new();
    for (i, lp) in plan.layers.iter().enumerate() {
        layers.push(write_layer_member(ctx, m, lp, Some((i, &diff_ids[i])))?.0);
    }
    let (cd, cs) = ctx.lock.write_blob(&cfg_bytes)?;
    let manifest = new_manifest(
        Descriptor::new(MediaType::OciConfig, cd, cs),
        layers,
        plan.annotations.clone(),
    );
    let mut d = write_manifest(ctx, &manifest)?;
    d.platform = cfg.platform();
    Ok(d)
}

fn new_manifest(
    config: Descriptor,
    layers: Vec<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
) -> Manifest {
    Manifest {
        schema_version: 2,
        media_type: Some(MediaType::OciManifest),
        artifact_type: None,
        config,
        layers,
        subject: None,
        annotations,
        extra: Map::new(),
    }
}

fn write_manifest(ctx: &Ctx<'_>, manifest: &Manifest) -> Result<Descriptor> {
    let bytes = serde_json::to_vec(manifest).map_err(|e| ocikit_layout::Error::Json {
        what: "new manifest".into(),
        source: e,
    })?;
    let (md, ms) = ctx.lock.write_blob(&bytes)?;
    Ok(Descriptor::new(MediaType::OciManifest, md, ms))
}

/// Stream one layer member into the layout. `check` is (position, expected diff_id).
fn write_layer_member(
    ctx: &mut Ctx<'_>,
    m: &dyn Members,
    lp: &LayerPlan,
    check: Option<(usize, &Digest)>,
) -> Result<(Descriptor, LayerInfo)> {
    let foreign = lp
        .source
        .as_ref()
        .filter(|s| s.media_type.is_non_distributable() && s.urls.is_some());
    if let (Some(f), false) = (foreign, m.has(&lp.member)) {
        // A foreign layer that is not shipped: keep its descriptor, pointing at its urls.
        let mut d = f.clone();
        d.media_type = d.media_type.to_oci();
        let diff_id = check
            .map(|c| c.1.clone())
            .unwrap_or_else(|| d.digest.clone());
        let info = LayerInfo {
            digest: d.digest.clone(),
            size: d.size,
            diff_id,
            compression: d
                .media_type
                .compression()
                .unwrap_or(ocikit_layout::Compression::Gzip),
        };
        return Ok((d, info));
    }
    let key = (m.path().to_path_buf(), canonical(m, &lp.member)?);
    let info = match ctx.layers.get(&key) {
        Some(i) => i.clone(),
        None => {
            let info = stream_layer(ctx, m, lp)?;
            ctx.written += 1;
            if ctx.written == 1 {
                ocikit_layout::fault::point("import-mid-layers");
            }
            ctx.layers.insert(key, info.clone());
            info
        }
    };
    if let Some((i, expected)) = check {
        if &info.diff_id != expected {
            return Err(Error::member(
                m.path(),
                &lp.member,
                format!(
                    "diff_id mismatch: the layer's uncompressed content has digest `{}`, the config's rootfs.diff_ids[{i}] is `{expected}`",
                    info.diff_id
                ),
            ));
        }
    }
    let family = lp
        .source
        .as_ref()
        .map(|s| s.media_type.to_oci())
        .filter(|t| t.class() == Class::Layer)
        .unwrap_or(MediaType::OciLayer);
    let media_type = family
        .with_compression(info.compression)
        .or_else(|| MediaType::OciLayer.with_compression(info.compression))
        .unwrap_or(MediaType::OciLayer);
    let mut d = Descriptor::new(media_type, info.digest.clone(), info.size);
    if let Some(s) = &lp.source {
        d.urls = s.urls.clone();
        d.annotations = s.annotations.clone();
    }
    Ok((d, info))
}

/// The most layers streamed at once.
const PARALLEL_LAYERS: usize = 4;

/// Stream the image's layers that are not written yet, one per core at a time, into the
/// layer memo, so that [`write_layer_member`] finds them written. A layer that fails here is
/// left out: the in-order pass streams it again and reports its error where it stands (after
/// any diff_id mismatch of an earlier layer), as a one-at-a-time import would.
fn stream_layers_in_parallel(ctx: &mut Ctx<'_>, m: &dyn Members, plans: &[LayerPlan]) {
    let mut todo: Vec<(&LayerPlan, (PathBuf, String))> = Vec::new();
    for lp in plans {
        let foreign = lp
            .source
            .as_ref()
            .is_some_and(|s| s.media_type.is_non_distributable() && s.urls.is_some());
        if foreign && !m.has(&lp.member) {
            continue;
        }
        let Ok(member) = canonical(m, &lp.member) else {
            continue;
        };
        let key = (m.path().to_path_buf(), member);
        if !ctx.layers.contains_key(&key) && !todo.iter().any(|(_, k)| k == &key) {
            todo.push((lp, key));
        }
    }
    if todo.len() < 2 {
        return;
    }
    // Largest first, so that the last layer to finish is a small one.
    todo.sort_by_key(|(lp, _)| std::cmp::Reverse(m.size(&lp.member).unwrap_or(0)));
    let shared: &Ctx<'_> = ctx;
    // Each layer's compressor has its own workers and chunk buffers: a few layers at a time
    // keep every core busy while memory stays bounded on machines with many cores.
    let infos = run_parallel_max(&todo, PARALLEL_LAYERS, |(lp, _)| {
        stream_layer(shared, m, lp).ok()
    });
    for ((_, key), info) in todo.into_iter().zip(infos) {
        if let Some(info) = info {
            ctx.written += 1;
            if ctx.written == 1 {
                ocikit_layout::fault::point("import-mid-layers");
            }
            ctx.layers.insert(key, info);
        }
    }
}

fn canonical(m: &dyn Members, name: &str) -> Result<String> {
    m.canonical(name)
}

/// Refuse a member whose size is not the one its descriptor declares, before reading any of it
/// (a member far larger than declared would otherwise be streamed, decompressed and written
/// until the mismatch shows).
fn check_member_size(m: &dyn Members, member: &str, declared: u64) -> Result<()> {
    let have = m.size(member)?;
    if have != declared {
        return Err(Error::member(
            m.path(),
            member,
            format!("is {have} bytes, its descriptor says {declared}"),
        ));
    }
    Ok(())
}

fn stream_layer(ctx: &Ctx<'_>, m: &dyn Members, lp: &LayerPlan) -> Result<LayerInfo> {
    let member_err = |e: &dyn std::fmt::Display| Error::member(m.path(), &lp.member, e.to_string());
    if let Some(s) = &lp.source {
        check_member_size(m, &lp.member, s.size)?;
    }
    let raw = Progress {
        inner: m.open(&lp.member)?,
        report: ctx.opts.progress,
    };
    let reader: Box<dyn Read + '_> = match &lp.source {
        Some(s) => {
            let alg = s
                .digest
                .algorithm()
                .ok_or_else(|| ocikit_layout::Error::Unverifiable(s.digest.clone()))?;
            Box::new(VerifyingReader::new(
                raw,
                alg.hasher(),
                s.digest.clone(),
                Some(s.size),
                m.path().join(&lp.member),
            ))
        }
        None => Box::new(raw),
    };
    let (head, mut r) = peek(reader, SNIFF_LEN).map_err(|e| member_err(&e))?;
    let comp = match sniff(&head) {
        Sniffed::Known(c) => c,
        Sniffed::Bzip2 => return Err(member_err(&"bzip2-compressed layers are not supported")),
        Sniffed::Xz => return Err(member_err(&"xz-compressed layers are not supported")),
        Sniffed::Unknown => return Err(member_err(&"not a tar layer (nor gzip or zstd)")),
    };
    let res = if comp == ctx.opts.compress.compression {
        copy_layer(ctx.lock, &mut r, comp)
    } else {
        let mut dec = decompressor(r, comp).map_err(|e| member_err(&e))?;
        write_layer(ctx.lock, &mut dec, ctx.opts.compress)
    };
    res.map_err(|e| match e {
        ocikit_layout::Error::Io { source, .. } => {
            let inner = ocikit_layout::unwrap_io(source, Path::new(&lp.member));
            member_err(&inner)
        }
        other => member_err(&other),
    })
}

// ---------------------------------------------------------------- docker save (manifest.json)

/// One image of a docker save `manifest.json`. Member names are as written (the archive
/// normalizes them when they are read); RepoTags are checked when the image is imported.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SaveEntry {
    /// The config's member.
    pub config: String,
    /// The names of the image.
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    /// The layers' members, base first.
    #[serde(default)]
    pub layers: Option<Vec<String>>,
    /// Descriptors of (foreign) layers, by diff_id.
    #[serde(default)]
    pub layer_sources: Option<BTreeMap<Digest, Descriptor>>,
}

/// Parse a docker save `manifest.json`: a non-empty list of images. The error says why not
/// (without the member's name).
pub fn parse_save_manifest(bytes: &[u8]) -> std::result::Result<Vec<SaveEntry>, String> {
    let list: Option<Vec<SaveEntry>> =
        serde_json::from_slice(bytes).map_err(|e| format!("not a docker save manifest: {e}"))?;
    let list = list.ok_or("is `null`, not a list of images")?;
    if list.is_empty() {
        return Err("lists no images".into());
    }
    Ok(list)
}

fn read_save_manifest(ar: &Archive) -> Result<Vec<SaveEntry>> {
    let bytes = ar.read_small("manifest.json", JSON_LIMIT)?;
    parse_save_manifest(&bytes).map_err(|r| Error::member(ar.path(), "manifest.json", r))
}

fn save_entry_image(ctx: &mut Ctx<'_>, ar: &Archive, e: &SaveEntry) -> Result<Descriptor> {
    // LayerSources are keyed by diff_id: read the config first to pair them with layers.
    let cfg_bytes = ar.read_small(&e.config, JSON_LIMIT)?;
    let cfg = parse_config(ar, &e.config, &cfg_bytes)?;
    let diff_ids = cfg.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    let layers = e
        .layers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, member)| LayerPlan {
            source: diff_ids
                .get(i)
                .and_then(|d| e.layer_sources.as_ref()?.get(d))
                .filter(|s| s.media_type.is_non_distributable())
                .cloned(),
            member,
        })
        .collect();
    let plan = ImagePlan {
        config: e.config.clone(),
        config_digest: None,
        layers,
        annotations: None,
    };
    write_image(ctx, ar, &plan)
}

fn push_named(entries: &mut Vec<Entry>, d: Descriptor, names: &[String]) {
    if names.is_empty() {
        entries.push(Entry {
            source: 0,
            descriptor: d.clone(),
            name: None,
            image: true,
        });
    }
    for n in names {
        entries.push(Entry {
            source: 0,
            descriptor: d.clone(),
            name: Some(n.clone()),
            image: true,
        });
    }
}

fn docker_save(ctx: &mut Ctx<'_>, ar: &Archive, entries: &mut Vec<Entry>) -> Result<()> {
    for e in read_save_manifest(ar)? {
        let d = save_entry_image(ctx, ar, &e)?;
        let names = e.repo_tags.clone().unwrap_or_default();
        for n in &names {
            refs::check_ref_name(n).map_err(|_| {
                Error::member(
                    ar.path(),
                    "manifest.json",
                    format!("RepoTag `{n}` is not a valid ref name"),
                )
            })?;
        }
        push_named(entries, d, &names);
    }
    Ok(())
}

// ---------------------------------------------------------------- Docker 25+

fn docker25(ctx: &mut Ctx<'_>, ar: &Archive, entries: &mut Vec<Entry>) -> Result<()> {
    let index = read_index_member(ar)?;
    if index.manifests.is_empty() {
        // An index.json without entries (as some tools strip it): manifest.json alone says it.
        return docker_save(ctx, ar, entries);
    }
    // manifest.json may be `null` or absent-ish here; it only contributes names.
    let save: Vec<SaveEntry> = ar
        .read_small("manifest.json", JSON_LIMIT)
        .ok()
        .and_then(|b| {
            serde_json::from_slice::<Option<Vec<SaveEntry>>>(&b)
                .ok()
                .flatten()
        })
        .unwrap_or_default();
    for entry in &index.manifests {
        let mut bare = entry.clone();
        bare.set_ref_name(None);
        if let Some(a) = bare.annotations.as_mut() {
            // Recomputed for each name the entry gets.
            a.remove(CONTAINERD_NAME);
            if a.is_empty() {
                bare.annotations = None;
            }
        }
        match entry.media_type.class() {
            Class::Manifest => {
                let man = read_manifest(ar, entry)?;
                if man.config.media_type.class() == Class::Config {
                    let mut d = write_image(ctx, ar, &image_plan(&man))?;
                    d.annotations = bare.annotations.clone();
                    if d.platform.is_none() {
                        d.platform = entry.platform.clone();
                    }
                    let names = docker25_names(&save, &[blob_member(&man.config.digest)], entry);
                    push_named(entries, d, &names);
                    continue;
                }
            }
            Class::Index => {
                // The containerd image store saves the whole index but only the blobs of the
                // platforms it has: keep the platforms present, in a new index.
                let ix: Index =
                    serde_json::from_slice(&read_verified(ar, entry)?).map_err(|e| {
                        Error::member(
                            ar.path(),
                            &blob_member(&entry.digest),
                            format!("not an index: {e}"),
                        )
                    })?;
                let present: Vec<&Descriptor> = ix
                    .manifests
                    .iter()
                    .filter(|c| ar.has(&blob_member(&c.digest)))
                    .collect();
                let mut configs = Vec::new();
                for c in &present {
                    if c.media_type.class() == Class::Manifest {
                        configs.push(blob_member(&read_manifest(ar, c)?.config.digest));
                    }
                }
                let names = docker25_names(&save, &configs, entry);
                if present.is_empty() {
                    return Err(Error::member(
                        ar.path(),
                        &blob_member(&entry.digest),
                        "none of the index's manifests is in the archive",
                    ));
                }
                let d = if present.len() == ix.manifests.len() {
                    copy_tree(ctx, ar, &bare)?;
                    bare.clone()
                } else {
                    for c in &present {
                        copy_tree(ctx, ar, c)?;
                    }
                    let partial = Index {
                        manifests: present.into_iter().cloned().collect(),
                        ..ix
                    };
                    let bytes =
                        serde_json::to_vec(&partial).map_err(|e| ocikit_layout::Error::Json {
                            what: "new index".into(),
                            source: e,
                        })?;
                    let (digest, size) = ctx.lock.write_blob(&bytes)?;
                    let mut d = Descriptor::new(entry.media_type.clone(), digest, size);
                    d.annotations = bare.annotations.clone();
                    d
                };
                push_named(entries, d, &names);
                continue;
            }
            _ => {}
        }
        copy_entry(ctx, ar, entry, entries)?;
    }
    Ok(())
}

/// Copy an `index.json` entry of an OCI-shaped source as it is, and record it under its ref.
fn copy_entry(
    ctx: &mut Ctx<'_>,
    m: &dyn Members,
    entry: &Descriptor,
    entries: &mut Vec<Entry>,
) -> Result<()> {
    let mut bare = entry.clone();
    bare.set_ref_name(None);
    copy_tree(ctx, m, &bare)?;
    entries.push(Entry {
        source: 0,
        descriptor: bare,
        name: entry.ref_name().map(String::from),
        image: false,
    });
    Ok(())
}

fn read_manifest(m: &dyn Members, d: &Descriptor) -> Result<Manifest> {
    serde_json::from_slice(&read_verified(m, d)?).map_err(|e| {
        Error::member(
            m.path(),
            &blob_member(&d.digest),
            format!("not a manifest: {e}"),
        )
    })
}

fn image_plan(man: &Manifest) -> ImagePlan {
    ImagePlan {
        config: blob_member(&man.config.digest),
        config_digest: Some(man.config.digest.clone()),
        layers: man
            .layers
            .iter()
            .map(|l| LayerPlan {
                member: blob_member(&l.digest),
                source: Some(l.clone()),
            })
            .collect(),
        annotations: man.annotations.clone(),
    }
}

/// The names of a Docker 25+ index entry: the RepoTags of the manifest.json entries for its
/// config(s) (only the one matching the entry's `io.containerd.image.name` when there is one,
/// since Docker writes one index entry per name), else its `io.containerd.image.name`, else
/// its ref.
fn docker25_names(save: &[SaveEntry], configs: &[String], entry: &Descriptor) -> Vec<String> {
    let tags: Vec<String> = save
        .iter()
        .filter(|s| crate::archive::normalize(&s.config).is_ok_and(|c| configs.contains(&c)))
        .flat_map(|s| s.repo_tags.clone().unwrap_or_default())
        .collect();
    let full = entry
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONTAINERD_NAME));
    if !tags.is_empty() {
        if let Some(full) = full {
            let same: Vec<String> = tags
                .iter()
                .filter(|t| containerd_name(t).as_ref() == Some(full))
                .cloned()
                .collect();
            if !same.is_empty() {
                return same;
            }
        }
        return tags;
    }
    if let Some(full) = full {
        return vec![full.clone()];
    }
    entry
        .ref_name()
        .map(|r| vec![r.to_string()])
        .unwrap_or_default()
}

fn read_index_member(m: &dyn Members) -> Result<Index> {
    let bytes = m.read_small("index.json", JSON_LIMIT)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::member(m.path(), "index.json", format!("not an OCI index: {e}")))
}

/// Read a document blob of an OCI-shaped source, verified against its descriptor.
fn read_verified(m: &dyn Members, d: &Descriptor) -> Result<Vec<u8>> {
    let member = blob_member(&d.digest);
    if d.size > JSON_LIMIT {
        return Err(Error::member(
            m.path(),
            &member,
            format!(
                "is {} bytes, larger than the {JSON_LIMIT}-byte limit for JSON documents",
                d.size
            ),
        ));
    }
    let bytes = m.read_small(&member, JSON_LIMIT)?;
    let alg = d
        .digest
        .algorithm()
        .ok_or_else(|| ocikit_layout::Error::Unverifiable(d.digest.clone()))?;
    let found = Digest::of(alg, &bytes);
    if found != d.digest || bytes.len() as u64 != d.size {
        return Err(Error::member(
            m.path(),
            &member,
            format!(
                "content has digest `{found}` and size {}, its descriptor says `{}` and {}",
                bytes.len(),
                d.digest,
                d.size
            ),
        ));
    }
    Ok(bytes)
}

// ---------------------------------------------------------------- OCI archives

fn oci_archive(ctx: &mut Ctx<'_>, ar: &Archive, entries: &mut Vec<Entry>) -> Result<()> {
    let header = ar.read_small("oci-layout", JSON_LIMIT)?;
    ocikit_layout::check_layout_header(&header)
        .map_err(|r| Error::member(ar.path(), "oci-layout", r))?;
    let index = read_index_member(ar)?;
    for entry in &index.manifests {
        copy_entry(ctx, ar, entry, entries)?;
    }
    Ok(())
}

/// Copy everything `d` reaches from an OCI-shaped source, verified, bytes unchanged: one
/// [`plan`] (a `subject` and foreign layers may be absent; anything else missing, corrupt or
/// nested too deep fails) and one [`transfer`].
fn copy_tree(ctx: &mut Ctx<'_>, m: &dyn Members, d: &Descriptor) -> Result<()> {
    let src = MembersSource::new(m, ctx.opts.progress);
    carry(ctx, &src, std::slice::from_ref(d))
}

/// Plan what `roots` need from `src` and transfer what this import has not carried yet.
fn carry<S: ImageSource + ?Sized>(ctx: &mut Ctx<'_>, src: &S, roots: &[Descriptor]) -> Result<()> {
    let plan = engine::plan(src, roots)?;
    let copied = &ctx.copied;
    engine::transfer(src, &plan, |b| !copied.contains(&b.digest), ctx.lock)?;
    ctx.copied
        .extend(plan.blobs.iter().map(|b| b.digest.clone()));
    Ok(())
}

// ---------------------------------------------------------------- OCI layout directories

fn layout_dir(ctx: &mut Ctx<'_>, src: &Layout, entries: &mut Vec<Entry>) -> Result<()> {
    let index = src.read_index()?.value;
    let roots: Vec<Descriptor> = index
        .manifests
        .iter()
        .map(|e| {
            let mut bare = e.clone();
            bare.set_ref_name(None);
            bare
        })
        .collect();
    carry(ctx, src, &roots)?;
    for (entry, bare) in index.manifests.iter().zip(roots) {
        entries.push(Entry {
            source: 0,
            descriptor: bare,
            name: entry.ref_name().map(String::from),
            image: false,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------- skopeo dir:

fn skopeo_dir(ctx: &mut Ctx<'_>, dir: &DirMembers, entries: &mut Vec<Entry>) -> Result<()> {
    let bytes = dir.read_small("manifest.json", JSON_LIMIT)?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::member(dir.path(), "manifest.json", format!("not JSON: {e}")))?;
    let declared = v
        .get("mediaType")
        .and_then(Value::as_str)
        .map(MediaType::parse);
    let class = match declared.as_ref().map(MediaType::class) {
        Some(c @ (Class::Index | Class::Manifest | Class::Schema1)) => c,
        _ => shape_class(&v),
    };
    match class {
        Class::Schema1 => {
            // The layer blobs first (schema1 declares no sizes: the files say), then the
            // conversion, which reads them back verified to compute the diff_ids.
            let s1: ocikit_layout::Schema1 = serde_json::from_slice(&bytes).map_err(|e| {
                Error::member(
                    dir.path(),
                    "manifest.json",
                    format!("not a schema1 manifest: {e}"),
                )
            })?;
            for l in &s1.fs_layers {
                let member = l.blob_sum.encoded().to_string();
                if !ctx.copied.insert(l.blob_sum.clone()) {
                    continue;
                }
                if let Some(size) = ctx.lock.layout().blob_size(&l.blob_sum)? {
                    if ctx.lock.reuse_blob(&l.blob_sum, size)? {
                        continue;
                    }
                }
                let alg = l
                    .blob_sum
                    .algorithm()
                    .ok_or_else(|| ocikit_layout::Error::Unverifiable(l.blob_sum.clone()))?;
                let mut r = dir.open(&member)?;
                let mut w = ctx.lock.blob_writer_for(alg)?;
                ocikit_layout::layer::copy_large(&mut r, &mut w)
                    .map_err(|e| Error::io(dir.path(), e))?;
                w.finish_expect(&l.blob_sum, None)
                    .map_err(|e| Error::member(dir.path(), &member, e.to_string()))?;
            }
            // schema1 layers are gzip: kept as they are unless another compression is asked.
            let recompress = (ctx.opts.compress.compression != ocikit_layout::Compression::Gzip)
                .then_some(ctx.opts.compress);
            let mut d =
                crate::schema1::convert(ctx.lock, &bytes, crate::convert::Target::Oci, recompress)
                    .map_err(|e| Error::member(dir.path(), "manifest.json", e.to_string()))?;
            let config = ctx
                .lock
                .layout()
                .read_json::<Manifest>(&d.digest, Some(d.size))
                .and_then(|m| {
                    ctx.lock.layout().read_json::<ocikit_layout::ImageConfig>(
                        &m.value.config.digest,
                        Some(m.value.config.size),
                    )
                })?;
            d.platform = config.value.platform();
            push_named(entries, d, &[]);
            Ok(())
        }
        Class::Manifest => {
            let d = dir_image(ctx, dir, &bytes, "manifest.json")?;
            push_named(entries, d, &[]);
            Ok(())
        }
        Class::Index => {
            // `skopeo copy --all`: the list in manifest.json, each instance in <hex>.manifest.json.
            let list: Index = serde_json::from_slice(&bytes).map_err(|e| {
                Error::member(dir.path(), "manifest.json", format!("not an index: {e}"))
            })?;
            let mut children = Vec::new();
            for c in &list.manifests {
                let member = format!("{}.manifest.json", c.digest.encoded());
                if !dir.has(&member) {
                    continue; // an instance skopeo did not copy
                }
                let mbytes = dir.read_small(&member, JSON_LIMIT)?;
                let mut d = dir_image(ctx, dir, &mbytes, &member)?;
                d.platform = c.platform.clone().or(d.platform);
                d.annotations = c.annotations.clone();
                children.push(d);
            }
            if children.is_empty() {
                return Err(Error::member(
                    dir.path(),
                    "manifest.json",
                    "the list names no instance present in the directory",
                ));
            }
            let index = Index {
                schema_version: 2,
                media_type: Some(MediaType::OciIndex),
                artifact_type: None,
                manifests: children,
                subject: None,
                annotations: list.annotations.clone(),
                extra: Map::new(),
            };
            let ibytes = serde_json::to_vec(&index).map_err(|e| ocikit_layout::Error::Json {
                what: "new index".into(),
                source: e,
            })?;
            let (d, s) = ctx.lock.write_blob(&ibytes)?;
            push_named(entries, Descriptor::new(MediaType::OciIndex, d, s), &[]);
            Ok(())
        }
        _ => Err(Error::member(
            dir.path(),
            "manifest.json",
            "neither an image manifest nor a manifest list",
        )),
    }
}

fn dir_image(
    ctx: &mut Ctx<'_>,
    dir: &DirMembers,
    bytes: &[u8],
    member: &str,
) -> Result<Descriptor> {
    let man: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| Error::member(dir.path(), member, format!("not a manifest: {e}")))?;
    if man.config.media_type.class() != Class::Config {
        return Err(Error::member(
            dir.path(),
            member,
            format!(
                "config type `{}` is not an image config",
                man.config.media_type
            ),
        ));
    }
    let plan = ImagePlan {
        config: man.config.digest.encoded().to_string(),
        config_digest: Some(man.config.digest.clone()),
        layers: man
            .layers
            .iter()
            .map(|l| LayerPlan {
                member: l.digest.encoded().to_string(),
                source: Some(l.clone()),
            })
            .collect(),
        annotations: man.annotations.clone(),
    };
    write_image(ctx, dir, &plan)
}

// ---------------------------------------------------------------- repositories + <id>/json

/// How deep a v1 parent chain may go.
const CHAIN_LIMIT: usize = 1000;

/// Parse a legacy `repositories` file (`{"repo": {"tag": "<v1 id>"}}`) into the names of each
/// v1 image id (`repo:tag`, not yet checked as ref names). The error says why not.
pub fn parse_repositories(
    bytes: &[u8],
) -> std::result::Result<BTreeMap<String, Vec<String>>, String> {
    let repos: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_slice(bytes).map_err(|e| format!("not a repositories file: {e}"))?;
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (repo, tags) in &repos {
        for (tag, id) in tags {
            by_id
                .entry(id.clone())
                .or_default()
                .push(format!("{repo}:{tag}"));
        }
    }
    if by_id.is_empty() {
        return Err("names no images".into());
    }
    Ok(by_id)
}

fn legacy(ctx: &mut Ctx<'_>, ar: &Archive, entries: &mut Vec<Entry>) -> Result<()> {
    let bytes = ar.read_small("repositories", JSON_LIMIT)?;
    let by_id =
        parse_repositories(&bytes).map_err(|r| Error::member(ar.path(), "repositories", r))?;
    for (id, names) in by_id {
        let d = legacy_image(ctx, ar, &id)?;
        for n in &names {
            refs::check_ref_name(n).map_err(|_| {
                Error::member(
                    ar.path(),
                    "repositories",
                    format!("`{n}` is not a valid ref name"),
                )
            })?;
        }
        push_named(entries, d, &names);
    }
    Ok(())
}

fn v1_id_ok(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn legacy_image(ctx: &mut Ctx<'_>, ar: &Archive, top: &str) -> Result<Descriptor> {
    // The chain, top first.
    let mut chain: Vec<(String, Map<String, Value>)> = Vec::new();
    let mut cur = Some(top.to_string());
    while let Some(id) = cur {
        let member = format!("{id}/json");
        if !v1_id_ok(&id) || chain.iter().any(|(c, _)| c == &id) || chain.len() >= CHAIN_LIMIT {
            return Err(Error::member(
                ar.path(),
                &member,
                "not a valid v1 image id, or its parent chain loops",
            ));
        }
        let bytes = ar.read_small(&member, JSON_LIMIT)?;
        let v: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|e| {
            Error::member(
                ar.path(),
                &member,
                format!("not a v1 image JSON object: {e}"),
            )
        })?;
        cur = v
            .get("parent")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .map(String::from);
        chain.push((id, v));
    }
    chain.reverse();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut history = Vec::new();
    for (id, v) in &chain {
        let member = format!("{id}/layer.tar");
        let empty = ar.size(&member)? == 0;
        if !empty {
            let (d, info) = write_layer_member(
                ctx,
                ar,
                &LayerPlan {
                    member,
                    source: None,
                },
                None,
            )?;
            layers.push(d);
            diff_ids.push(Value::String(info.diff_id.to_string()));
        }
        history.push(v1_history(v, empty));
    }
    let mut config: BTreeMap<String, Value> = chain
        .last()
        .map(|(_, v)| v.clone().into_iter().collect())
        .unwrap_or_default();
    for k in ["id", "parent", "Size", "parent_id", "layer_id", "throwaway"] {
        config.remove(k);
    }
    let mut rootfs = Map::new();
    rootfs.insert("type".into(), Value::String("layers".into()));
    rootfs.insert("diff_ids".into(), Value::Array(diff_ids));
    config.insert("rootfs".into(), Value::Object(rootfs));
    config.insert("history".into(), Value::Array(history));
    let bytes = go_json(&config)?;
    let cfg: ImageConfig = parse_config(ar, &format!("{top}/json"), &bytes)?;
    let (cd, cs) = ctx.lock.write_blob(&bytes)?;
    let manifest = new_manifest(Descriptor::new(MediaType::OciConfig, cd, cs), layers, None);
    let mut d = write_manifest(ctx, &manifest)?;
    d.platform = cfg.platform();
    Ok(d)
}

/// A history entry from a v1 image JSON, as moby's `HistoryFromConfig` makes it.
fn v1_history(v: &Map<String, Value>, empty: bool) -> Value {
    let mut h = Map::new();
    for k in ["created", "author"] {
        if let Some(s) = v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()) {
            h.insert(k.into(), Value::String(s.into()));
        }
    }
    let cmd: Vec<&str> = v
        .get("container_config")
        .and_then(|c| c.get("Cmd"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !cmd.is_empty() {
        h.insert("created_by".into(), Value::String(cmd.join(" ")));
    }
    if let Some(s) = v
        .get("comment")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        h.insert("comment".into(), Value::String(s.into()));
    }
    if empty {
        h.insert("empty_layer".into(), Value::Bool(true));
    }
    Value::Object(h)
}

/// Compact JSON with Go's escaping of `<`, `>`, `&`, U+2028 and U+2029 (those characters only
/// occur inside strings, so replacing them in the output is exact).
fn go_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    let s = serde_json::to_string(v).map_err(|e| ocikit_layout::Error::Json {
        what: "config".into(),
        source: e,
    })?;
    let s = s
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    Ok(s.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From the `docker_archive` fuzz target: a docker-save config whose `history[].created_by`
    /// holds two bytes that are not UTF-8 was imported, and fsck then found the stored config
    /// invalid JSON.
    #[test]
    fn configs_with_invalid_utf8_in_unread_fields_are_refused() {
        let config = b"{\"architecture\":\"amd64\",\"os\":\"linux\",\"history\":[{\"created_by\":\"/bin/sh -c #(nop) COPY dir:9cb95877972eaa3c10d46a212a600705109eb41f2\xa4\xcae8aae88018c9d1c7355c1 in a      \"}],\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
        let src = crate::source::DirMembers::new(Path::new("src"));
        let e = parse_config(&src, "c.json", config)
            .expect_err("refused")
            .to_string();
        assert_eq!(
            e,
            "`src`: member `c.json`: the image config is not valid JSON: invalid unicode code point at line 1 column 132"
        );
        let good = String::from_utf8_lossy(config).into_owned();
        let cfg = parse_config(&src, "c.json", good.as_bytes()).expect("valid once repaired");
        assert_eq!(cfg.architecture, "amd64");
    }

    /// From the `docker_archive` fuzz target: a legacy (`repositories`) archive whose v1 image
    /// JSON says `"created":"2015-03-04T21:73:56.769279623Z"` (minute 73) was imported, and
    /// fsck --deep then found the config invalid. moby's loader refuses it too.
    #[test]
    fn configs_failing_the_schema_checks_are_refused() {
        let src = crate::source::DirMembers::new(Path::new("src"));
        let config = br#"{"architecture":"amd64","created":"2015-03-04T21:73:56.769279623Z","history":[{"created":"2015-03-04T21:73:56.769279623Z"}],"os":"linux","rootfs":{"diff_ids":[],"type":"layers"}}"#;
        let e = parse_config(&src, "0123/json", config)
            .expect_err("refused")
            .to_string();
        assert_eq!(
            e,
            "`src`: member `0123/json`: the image config is invalid: created: not an rfc 3339 date-time; history[0].created: not an rfc 3339 date-time"
        );
        let fixed = String::from_utf8_lossy(config).replace(":73:", ":38:");
        parse_config(&src, "0123/json", fixed.as_bytes()).expect("valid");
    }
}
