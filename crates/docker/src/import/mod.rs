//! `import`: Docker archives, OCI archives, skopeo `dir:` copies and OCI layouts into a layout.
//!
//! How each source kind becomes index entries (one module each):
//! - docker-save archives (`docker_save`: `manifest.json`, skopeo's, Docker 25+), the oldest
//!   `repositories`-only archives (`legacy`) and skopeo `dir:` copies (`skopeo_dir`) are
//!   *images*, built through the engine's [`ImageBuilder`] (`image`: members as layer
//!   sources): each layer is streamed once from its member into a new blob, compressed as asked (a layer already in that compression is stored as it is),
//!   its diff_id computed in the same pass and checked against the config's `rootfs.diff_ids`;
//!   an image's layers are streamed in parallel, largest first, then checked in order. The
//!   config bytes are stored exactly; a new OCI manifest (compact JSON, `mediaType` set) names
//!   them as `application/vnd.oci.image.config.v1+json`. A layer shared by images of one
//!   source is read once.
//! - OCI archives and Docker 25+ index entries that are not plain images (indexes, unknown types)
//!   are *copied* (`oci`): every blob reachable from the entry is streamed over, verified against
//!   its descriptor, and the entry is kept as it is (annotations included).
//! - OCI layout directories are carried the same way, with `engine::plan` and
//!   `engine::transfer` (hard links on the same filesystem, through the store).
//!
//! Names: every RepoTag becomes a ref (`org.opencontainers.image.ref.name`, as written) and the
//! entry also carries `io.containerd.image.name` (the normalized full name). An existing ref is
//! moved; the report lists it. All or nothing: `index.json` is committed once, at the end, under
//! the layout lock; a destination that did not exist before is removed when the import fails.
//!
//! [`import_any`] is the one entry point for any sources: bundle parts (recognised by their
//! first tar header) go to the bundle loader, everything else to [`import`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use ocikit_layout::bundle::LoadReport;
use ocikit_layout::engine::{merge_entry, ImageBuilder};
use ocikit_layout::layer::CompressOptions;
use ocikit_layout::output::NewDir;
use ocikit_layout::refs;
use ocikit_layout::{Descriptor, Digest, Layout, Options, WriteLock};

use crate::names::containerd_name;
use crate::source::{detect, Kind, Source};
use crate::{Error, RefClaim, Result};

mod docker_save;
mod image;
mod legacy;
mod oci;
mod skopeo_dir;

pub use docker_save::{parse_save_manifest, SaveEntry};
pub use legacy::parse_repositories;

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
pub(super) struct Entry {
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
    if sources
        .iter()
        .filter(|s| s.as_path() == Path::new(crate::source::STDIN))
        .count()
        > 1
    {
        return Err(Error::BadSource {
            path: PathBuf::from(crate::source::STDIN),
            reason: "standard input can be read only once".into(),
        });
    }
    let detected = sources
        .iter()
        .map(|p| detect(p))
        .collect::<Result<Vec<_>>>()?;
    // Nothing of a failed import may remain where nothing was.
    NewDir::run_layout(
        dest,
        || import_into(sources, &detected, dest, layout_opts.clone(), opts),
        |e| matches!(e, Error::Layout(ocikit_layout::Error::LayoutGone { .. })),
    )
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
    let mut written = 0usize;
    let mut ctx = Ctx {
        lock: &lock,
        opts,
        builder: ImageBuilder::new(&lock)
            .compress(opts.compress)
            .on_layer_written(move |_| {
                written += 1;
                if written == 1 {
                    ocikit_layout::fault::point("import-mid-layers");
                }
            }),
        copied: HashSet::new(),
    };
    let mut entries = Vec::new();
    for (i, src) in sources.iter().enumerate() {
        let before = entries.len();
        match src {
            Source::Archive(ar, Kind::DockerSave) => {
                docker_save::docker_save(&mut ctx, ar, &mut entries)?
            }
            Source::Archive(ar, Kind::Docker25) => {
                docker_save::docker25(&mut ctx, ar, &mut entries)?
            }
            Source::Archive(ar, Kind::LegacyRepositories) => {
                legacy::legacy(&mut ctx, ar, &mut entries)?
            }
            Source::Archive(ar, _) => oci::oci_archive(&mut ctx, ar, &mut entries)?,
            Source::SkopeoDir(d) => skopeo_dir::skopeo_dir(&mut ctx, d, &mut entries)?,
            Source::LayoutDir(l) => oci::layout_dir(&mut ctx, l, &mut entries)?,
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
    // One ref, one image: two different images claiming a ref in one run is an error, before
    // anything is committed (the same image twice is fine).
    let mut claimed: HashMap<&str, &Entry> = HashMap::new();
    for e in &entries {
        let Some(name) = e.name.as_deref() else {
            continue;
        };
        match claimed.get(name) {
            Some(first) if first.descriptor.digest != e.descriptor.digest => {
                return Err(Error::RefClaimedTwice(Box::new(RefClaim {
                    name: name.to_string(),
                    first: first.descriptor.digest.clone(),
                    first_source: paths[first.source].clone(),
                    second: e.descriptor.digest.clone(),
                    second_source: paths[e.source].clone(),
                })));
            }
            Some(_) => {}
            None => {
                claimed.insert(name, e);
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
                        .get_or_insert_with(ocikit_layout::Annotations::new)
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

/// What the sources of one import share.
struct Ctx<'a> {
    lock: &'a WriteLock<'a>,
    opts: &'a ImportOptions<'a>,
    /// Builds the images; remembers the layers written, by source and (resolved) member.
    builder: ImageBuilder<'a>,
    /// Blobs already copied by `oci::copy_tree`.
    copied: HashSet<Digest>,
}

pub(super) fn push_named(entries: &mut Vec<Entry>, d: Descriptor, names: &[String]) {
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
