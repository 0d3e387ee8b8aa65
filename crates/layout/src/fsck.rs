//! `fsck`: check every blob reachable from `index.json`.
//!
//! Documents (manifests, indexes) are verified and parsed by the [`Walk`]; every other
//! reachable blob is hashed here, streaming, in parallel across cores, once per digest.
//! `deep` also decompresses each layer in the same pass (compression sniffed from the bytes),
//! checks the declared compression, and compares diff_ids with the config's `rootfs`.
//!
//! Findings come in two classes, as `git fsck` has them: **integrity** problems (missing,
//! corrupt, wrong size, unreadable, unparseable, dangling, too deep, a real loop) are errors;
//! **conformance** of documents to the image spec (schema rules, a descriptor's media type
//! differing from the document's) is a warning, which `strict` checking makes an error
//! ([`Report::is_clean_with`]). Notes ([`Severity::Info`]) are never errors.

use std::collections::{BTreeMap, HashMap, HashSet};

use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use base64::Engine as _;

use crate::compress::{decompressor, sniff, Sniffed, SNIFF_LEN};
use crate::layout::{peek, unwrap_io};
use crate::media_type::Class;
use crate::validate::{self, DocType};
use crate::walk::{DocStatus, Kind, Role, Walk};
use crate::{BlobFileKind, Digest, Error, ImageConfig, Layout, MediaType, Result, JSON_LIMIT};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Integrity: something is broken or absent; fsck exits 1.
    Error,
    /// Conformance: a document breaks a rule of the image spec, but the layout is intact;
    /// an error only when checking strictly.
    Warning,
    /// Worth knowing, not wrong.
    Info,
}

impl Severity {
    /// `error`, `warning` or `info`.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    /// A reachable blob is absent.
    Missing,
    /// A blob's size differs from its descriptor.
    SizeMismatch,
    /// A blob's content does not hash to its digest.
    DigestMismatch,
    /// A manifest, index or config does not parse as what it should be.
    Unparseable,
    /// A document breaks a rule of the image-spec schema.
    Invalid,
    /// A document ignores a SHOULD of the spec (e.g. a manifest without layers, which
    /// artifacts commonly are).
    Advisory,
    /// A descriptor's media type differs from the one its document declares.
    MediaTypeMismatch,
    /// A layer does not decompress to the diff_id its config lists (`--deep`).
    DiffIdMismatch,
    /// A zstd layer whose window needs more memory than the decoder allows (`--deep`): it
    /// cannot be checked (nor unpacked by most runtimes).
    WindowTooLarge,
    /// A layer's bytes are not in the compression its media type declares (`--deep`).
    CompressionMismatch,
    /// A descriptor's `data` does not match its digest or size.
    DataMismatch,
    /// A document names one of its ancestors (a real loop; documents shared by many parents
    /// are not one).
    Cycle,
    /// The graph has more nodes than the walk follows ([`crate::walk::NODE_LIMIT`]).
    TooManyNodes,
    /// A document nested deeper than the walk follows ([`crate::walk::MAX_DEPTH`]).
    TooDeep,
    /// The digest's algorithm cannot be verified; only the size was checked.
    Unverifiable,
    /// A blob in `blobs/` that nothing reachable names (listed only when every reachable
    /// manifest and index could be read).
    Unreferenced,
    /// An absent non-distributable layer that carries `urls` (fetched elsewhere).
    External,
    /// An absent `subject`: the referrer is kept, the manifest it refers to is elsewhere.
    MissingSubject,
    /// A leftover temp file from an interrupted write (or a partial blob of an interrupted
    /// bundle load).
    TempFile,
    /// A blob's path holds something that is not a regular file (a symbolic link, a FIFO, a
    /// directory), or it cannot be read.
    Unreadable,
}

impl FindingKind {
    /// The kebab-case name used in output.
    pub fn name(self) -> &'static str {
        use FindingKind::*;
        match self {
            Missing => "missing",
            SizeMismatch => "size-mismatch",
            DigestMismatch => "digest-mismatch",
            Unparseable => "unparseable",
            Invalid => "invalid",
            Advisory => "advisory",
            MediaTypeMismatch => "media-type-mismatch",
            DiffIdMismatch => "diff-id-mismatch",
            WindowTooLarge => "window-too-large",
            CompressionMismatch => "compression-mismatch",
            DataMismatch => "data-mismatch",
            Cycle => "cycle",
            TooManyNodes => "too-many-nodes",
            TooDeep => "too-deep",
            Unverifiable => "unverifiable",
            Unreferenced => "unreferenced",
            External => "external",
            MissingSubject => "missing-subject",
            TempFile => "temp-file",
            Unreadable => "unreadable",
        }
    }

    /// How serious this kind is.
    pub fn severity(self) -> Severity {
        use FindingKind::*;
        match self {
            Unverifiable | Unreferenced | External | MissingSubject | TempFile | Advisory => {
                Severity::Info
            }
            Invalid | MediaTypeMismatch => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// Its severity when warnings count as errors (`strict`) or not.
    pub fn severity_with(self, strict: bool) -> Severity {
        match self.severity() {
            Severity::Warning if strict => Severity::Error,
            s => s,
        }
    }
}

/// One thing fsck found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What.
    pub kind: FindingKind,
    /// The blob it concerns (`None` for `index.json` itself and temp files).
    pub digest: Option<Digest>,
    /// The path from its root ref (empty for unreferenced blobs).
    pub path: Vec<String>,
    /// Details.
    pub detail: String,
}

/// fsck's options.
#[derive(Default)]
pub struct FsckOptions<'a> {
    /// Decompress layers, check compression and diff_ids.
    pub deep: bool,
    /// Called with the number of bytes just hashed (from several threads).
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl std::fmt::Debug for FsckOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsckOptions")
            .field("deep", &self.deep)
            .finish()
    }
}

/// What fsck found, sorted: errors first, then by kind and digest.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every finding.
    pub findings: Vec<Finding>,
    /// Distinct reachable blobs checked.
    pub blobs_checked: usize,
    /// Bytes hashed.
    pub bytes_hashed: u64,
}

impl Report {
    /// True when no finding is an error (warnings and notes allowed).
    pub fn is_clean(&self) -> bool {
        self.is_clean_with(false)
    }

    /// True when no finding is an error, warnings counting as errors when `strict`.
    pub fn is_clean_with(&self, strict: bool) -> bool {
        self.findings
            .iter()
            .all(|f| f.kind.severity_with(strict) != Severity::Error)
    }
}

enum Job {
    /// Hash a blob (and for deep layer checks, decompress it as `Option<decl>`).
    Blob {
        node: usize,
        layer: Option<Option<crate::Compression>>,
        config: bool,
    },
}

#[derive(Default)]
struct JobOut {
    findings: Vec<Finding>,
    diff_id: Option<Digest>,
    config: Option<ImageConfig>,
    hashed: u64,
}

/// The finding kind for a validator message: SHOULD-level messages are advisory.
fn schema_kind(message: &str) -> FindingKind {
    if message.contains("the spec says SHOULD") {
        FindingKind::Advisory
    } else {
        FindingKind::Invalid
    }
}

/// Check a layout.
pub fn fsck(layout: &Layout, opts: &FsckOptions<'_>) -> Result<Report> {
    let index = layout.read_index()?;
    let mut findings = Vec::new();
    for v in validate::check(DocType::Index, &index.bytes) {
        findings.push(Finding {
            kind: schema_kind(&v),
            digest: None,
            path: vec!["index.json".into()],
            detail: v,
        });
    }
    let walk = Walk::from_index(layout, &index.value);

    // Findings from reading documents.
    for (i, n) in walk.nodes.iter().enumerate() {
        let digest = Some(n.digest().clone());
        let mut push = |kind, detail: String| {
            findings.push(Finding {
                kind,
                digest: digest.clone(),
                path: walk.path_of(i),
                detail,
            })
        };
        if let Some(declared) = &n.declared {
            push(
                FindingKind::MediaTypeMismatch,
                format!(
                    "descriptor says `{}`, document says `{declared}`",
                    n.descriptor.media_type
                ),
            );
        }
        match &n.status {
            DocStatus::Unparseable(m) => push(FindingKind::Unparseable, m.clone()),
            status => {
                if let Some((kind, detail)) = status_finding(status) {
                    push(kind, detail)
                }
            }
        }
        if let Some(data) = &n.descriptor.data {
            match base64::engine::general_purpose::STANDARD.decode(data) {
                Ok(bytes)
                    if n.digest()
                        .algorithm()
                        .is_none_or(|a| Digest::of(a, &bytes) == *n.digest())
                        && bytes.len() as u64 == n.descriptor.size => {}
                Ok(_) => push(
                    FindingKind::DataMismatch,
                    "`data` does not match the digest or size".into(),
                ),
                Err(e) => push(
                    FindingKind::DataMismatch,
                    format!("`data` is not base64: {e}"),
                ),
            }
        }
    }

    // Declared sizes per digest: the same digest may be named with different sizes.
    let mut jobs = Vec::new();
    let mut seen: HashSet<(Digest, u64)> = HashSet::new();
    let mut deep_layers: HashMap<Digest, usize> = HashMap::new();
    for (i, n) in walk.nodes.iter().enumerate() {
        if !seen.insert((
            n.digest().clone(),
            if n.size_known {
                n.descriptor.size
            } else {
                u64::MAX
            },
        )) {
            continue;
        }
        match &n.status {
            DocStatus::Ok => {
                // Read, verified and parsed by the walk; check its schema.
                if let Ok(bytes) = layout.read_blob(n.digest(), None, JSON_LIMIT) {
                    let ty = if n.kind == Kind::Index {
                        DocType::Index
                    } else {
                        DocType::Manifest
                    };
                    if n.class != Class::Schema1 {
                        for v in validate::check(ty, &bytes) {
                            findings.push(Finding {
                                kind: schema_kind(&v),
                                digest: Some(n.digest().clone()),
                                path: walk.path_of(i),
                                detail: v,
                            });
                        }
                    }
                }
                continue;
            }
            DocStatus::Corrupt(e) => {
                findings.push(error_finding(e, &walk, i));
                continue;
            }
            DocStatus::Missing => {
                let kind = if n.role == Role::Subject {
                    FindingKind::MissingSubject
                } else {
                    FindingKind::Missing
                };
                findings.push(Finding {
                    kind,
                    digest: Some(n.digest().clone()),
                    path: walk.path_of(i),
                    detail: "blob is absent".into(),
                });
                continue;
            }
            _ => {}
        }
        let is_config = n.kind == Kind::Config
            && matches!(
                n.descriptor.media_type,
                MediaType::OciConfig | MediaType::DockerConfig
            );
        let layer = if opts.deep && n.kind == Kind::Layer && !n.descriptor.media_type.is_encrypted()
        {
            if deep_layers.contains_key(n.digest()) {
                None
            } else {
                deep_layers.insert(n.digest().clone(), jobs.len());
                Some(n.descriptor.media_type.compression())
            }
        } else {
            None
        };
        jobs.push(Job::Blob {
            node: i,
            layer,
            config: is_config,
        });
    }

    let outs = run_parallel(&jobs, |job| {
        let Job::Blob {
            node,
            layer,
            config,
        } = job;
        check_blob(layout, &walk, *node, *layer, *config, opts)
    });
    let mut bytes_hashed = 0;
    for o in &outs {
        findings.extend(o.findings.iter().cloned());
        bytes_hashed += o.hashed;
    }

    if opts.deep {
        deep_diff_ids(&walk, &jobs, &outs, &deep_layers, &mut findings);
    }

    // Unreferenced blobs and temp files. When a reachable manifest or index cannot be read,
    // nobody knows what it names, so no blob is called unreferenced (gc refuses to run then).
    let reachable: HashSet<&Digest> = walk.nodes.iter().map(|n| n.digest()).collect();
    let walk_complete = walk.nodes.iter().all(|n| n.unreadable().is_none());
    for f in layout.blob_files()? {
        match f.kind {
            BlobFileKind::Blob(d) if !reachable.contains(&d) && walk_complete => {
                findings.push(Finding {
                    kind: FindingKind::Unreferenced,
                    digest: Some(d),
                    path: vec![],
                    detail: "no reachable descriptor names this blob".into(),
                })
            }
            BlobFileKind::Temp => findings.push(Finding {
                kind: FindingKind::TempFile,
                digest: None,
                path: vec![f.path.display().to_string()],
                detail: "leftover of an interrupted write; gc removes it".into(),
            }),
            BlobFileKind::Partial => findings.push(Finding {
                kind: FindingKind::TempFile,
                digest: None,
                path: vec![f.path.display().to_string()],
                detail: "partial blob of an interrupted bundle load (a new load of the same \
                         bundle resumes it); gc removes it"
                    .into(),
            }),
            BlobFileKind::Blob(_) | BlobFileKind::Other => {}
        }
    }

    // Temp files of interrupted index.json writes, in the root.
    for path in layout.root_temp_files()? {
        findings.push(Finding {
            kind: FindingKind::TempFile,
            digest: None,
            path: vec![path.display().to_string()],
            detail: "leftover of an interrupted write; gc removes it".into(),
        });
    }

    recheck_concurrent(layout, index.bytes, &mut findings)?;

    findings.sort_by(|a, b| {
        (a.kind.severity(), a.kind, &a.digest, &a.path).cmp(&(
            b.kind.severity(),
            b.kind,
            &b.digest,
            &b.path,
        ))
    });
    findings.dedup();
    Ok(Report {
        findings,
        // Distinct reachable digests: a document named by many parents counts once.
        blobs_checked: walk.unique().len(),
        bytes_hashed,
    })
}

/// The finding for a document the walk stopped at, if any: a loop, too many nodes, too deep.
fn status_finding(status: &DocStatus) -> Option<(FindingKind, String)> {
    match status {
        DocStatus::Cycle => Some((
            FindingKind::Cycle,
            "a document names one of its ancestors".into(),
        )),
        // Not a loop: a graph (often a DAG of shared documents) larger than the walk follows.
        DocStatus::Truncated => Some((
            FindingKind::TooManyNodes,
            format!("more than {} nodes: walk stopped", crate::walk::NODE_LIMIT),
        )),
        DocStatus::TooDeep => Some((
            FindingKind::TooDeep,
            format!(
                "nested more than {} levels deep: not followed",
                crate::walk::MAX_DEPTH
            ),
        )),
        _ => None,
    }
}

/// How many times [`recheck_concurrent`] reads `index.json` again while writers keep changing it.
const RECHECKS: usize = 8;

/// fsck takes no lock, so a writer may change the layout under it: an `untag` + `gc` removes
/// blobs of the `index.json` fsck walked (they look `missing`), an import writes blobs before
/// its commit (they look `unreferenced`). Neither is a problem of the layout. A finding a
/// writer can cause is checked again against a fresh `index.json` (only when it changed): a
/// `missing` or `unreadable` blob stays reported only while the current `index.json` still
/// reaches it and it is still absent (or, unreadable, reachable); an `unreferenced` one only while
/// the current `index.json` does not reach it. Repeated while `index.json` keeps changing
/// during the recheck, up to [`RECHECKS`] times.
fn recheck_concurrent(layout: &Layout, walked: Vec<u8>, findings: &mut Vec<Finding>) -> Result<()> {
    let suspect = |f: &Finding| {
        f.digest.is_some()
            && matches!(
                f.kind,
                FindingKind::Missing | FindingKind::Unreadable | FindingKind::Unreferenced
            )
    };
    let mut walked = walked;
    for _ in 0..RECHECKS {
        if !findings.iter().any(suspect) {
            return Ok(());
        }
        // An index.json that cannot be read now: the findings of the walk stand.
        let Ok(now) = layout.read_index() else {
            return Ok(());
        };
        if now.bytes == walked {
            return Ok(());
        }
        let reach =
            crate::walk::reach(layout, now.value.manifests.iter().map(crate::walk::root_of));
        findings.retain(|f| {
            let Some(d) = f.digest.as_ref().filter(|_| suspect(f)) else {
                return true;
            };
            let reached = reach.digests.contains(d);
            match f.kind {
                FindingKind::Unreferenced => !reached,
                FindingKind::Missing => reached && matches!(layout.blob_size(d), Ok(None)),
                _ => reached,
            }
        });
        walked = now.bytes;
    }
    Ok(())
}

fn error_finding(e: &Error, walk: &Walk, i: usize) -> Finding {
    let digest = Some(walk.nodes[i].digest().clone());
    let path = walk.path_of(i);
    let kind = match e {
        Error::MissingBlob { .. } => FindingKind::Missing,
        Error::SizeMismatch { .. } => FindingKind::SizeMismatch,
        Error::DigestMismatch { .. } => FindingKind::DigestMismatch,
        Error::TooLarge { .. } | Error::Json { .. } => FindingKind::Unparseable,
        Error::UnsafePath { .. } | Error::Io { .. } => FindingKind::Unreadable,
        _ => FindingKind::Missing,
    };
    Finding {
        kind,
        digest,
        path,
        detail: e.to_string(),
    }
}

fn check_blob(
    layout: &Layout,
    walk: &Walk,
    i: usize,
    layer: Option<Option<crate::Compression>>,
    is_config: bool,
    opts: &FsckOptions<'_>,
) -> JobOut {
    let n = &walk.nodes[i];
    let digest = n.digest();
    let mut out = JobOut::default();
    let size = n.size_known.then_some(n.descriptor.size);
    let finding = |kind, detail: String| Finding {
        kind,
        digest: Some(digest.clone()),
        path: walk.path_of(i),
        detail,
    };
    let on_disk = match layout.blob_size(digest) {
        Ok(s) => s,
        Err(e) => {
            out.findings.push(error_finding(&e, walk, i));
            return out;
        }
    };
    let Some(found) = on_disk else {
        let kind = if n.descriptor.media_type.is_non_distributable()
            && n.descriptor.urls.as_ref().is_some_and(|u| !u.is_empty())
        {
            FindingKind::External
        } else if n.role == Role::Subject {
            FindingKind::MissingSubject
        } else {
            FindingKind::Missing
        };
        out.findings.push(finding(kind, "blob is absent".into()));
        return out;
    };
    if digest.algorithm().is_none() {
        out.findings.push(finding(
            FindingKind::Unverifiable,
            format!("algorithm `{}` cannot be verified", digest.algorithm_str()),
        ));
        if let Some(s) = size.filter(|&s| s != found) {
            out.findings.push(finding(
                FindingKind::SizeMismatch,
                format!("blob is {found} bytes, descriptor says {s}"),
            ));
        }
        return out;
    }
    if let Some(s) = size.filter(|&s| s != found) {
        out.findings.push(finding(
            FindingKind::SizeMismatch,
            format!("blob is {found} bytes, descriptor says {s}"),
        ));
        return out;
    }
    let path = layout.blob_path(digest);
    let reader = match layout.open_blob(digest, None) {
        Ok(r) => r,
        Err(e) => {
            out.findings.push(error_finding(&e, walk, i));
            return out;
        }
    };
    let mut reader = Progress {
        inner: reader,
        progress: opts.progress,
    };
    let result: Result<()> = (|| {
        if is_config {
            let mut buf = Vec::new();
            (&mut reader)
                .take(JSON_LIMIT + 1)
                .read_to_end(&mut buf)
                .map_err(|e| unwrap_io(e, &path))?;
            crate::layer::copy_large(&mut reader, &mut io::sink())
                .map_err(|e| unwrap_io(e, &path))?;
            out.hashed = found;
            for v in validate::check(DocType::Config, &buf) {
                out.findings.push(finding(schema_kind(&v), v));
            }
            match serde_json::from_slice::<ImageConfig>(&buf) {
                Ok(c) => out.config = Some(c),
                Err(e) => out.findings.push(finding(
                    FindingKind::Unparseable,
                    format!("config does not parse: {e}"),
                )),
            }
            return Ok(());
        }
        let Some(declared) = layer else {
            crate::layer::copy_large(&mut reader, &mut io::sink())
                .map_err(|e| unwrap_io(e, &path))?;
            out.hashed = found;
            return Ok(());
        };
        let (head, mut whole) = peek(&mut reader, SNIFF_LEN).map_err(|e| unwrap_io(e, &path))?;
        let sniffed = sniff(&head);
        let actual = match sniffed {
            Sniffed::Known(c) => Some(c),
            _ => None,
        };
        if let Some(d) = declared {
            if actual != Some(d) {
                out.findings.push(finding(
                    FindingKind::CompressionMismatch,
                    format!(
                        "media type says {}, bytes are {}",
                        compression_name(d),
                        sniffed_name(sniffed)
                    ),
                ));
            }
        }
        match actual {
            Some(c) => {
                let mut dec = decompressor(&mut whole, c).map_err(|e| Error::io(&path, e))?;
                let mut h = crate::Algorithm::Sha256.hasher();
                let mut buf = vec![0u8; 1 << 17];
                loop {
                    let k = dec.read(&mut buf).map_err(|e| unwrap_io(e, &path))?;
                    if k == 0 {
                        break;
                    }
                    h.update(&buf[..k]);
                }
                drop(dec);
                // Drain what the decompressor did not need, so the blob digest is checked.
                crate::layer::copy_large(&mut whole, &mut io::sink())
                    .map_err(|e| unwrap_io(e, &path))?;
                out.diff_id = Some(h.finish());
            }
            None => {
                crate::layer::copy_large(&mut whole, &mut io::sink())
                    .map_err(|e| unwrap_io(e, &path))?;
            }
        }
        out.hashed = found;
        Ok(())
    })();
    if let Err(e) = result {
        let f = match &e {
            Error::SizeMismatch { .. } | Error::DigestMismatch { .. } => error_finding(&e, walk, i),
            Error::Io { source, .. } if crate::compress::is_window_too_large(source) => {
                finding(FindingKind::WindowTooLarge, source.to_string())
            }
            Error::Io { .. } if layer.is_some() => finding(
                FindingKind::DiffIdMismatch,
                format!("layer does not decompress: {e}"),
            ),
            _ => error_finding(&e, walk, i),
        };
        // A decompression failure may hide a digest mismatch: re-check the blob alone.
        if matches!(
            f.kind,
            FindingKind::DiffIdMismatch | FindingKind::WindowTooLarge
        ) {
            if let Err(e2) = layout.verify_blob(digest, size) {
                out.findings.push(error_finding(&e2, walk, i));
                return out;
            }
        }
        out.findings.push(f);
    }
    out
}

/// `gzip`, `zstd`, or `uncompressed` (rather than `none`) for messages.
fn compression_name(c: crate::Compression) -> &'static str {
    match c {
        crate::Compression::None => "uncompressed",
        c => c.as_str(),
    }
}

fn sniffed_name(s: Sniffed) -> &'static str {
    match s {
        Sniffed::Known(c) => compression_name(c),
        Sniffed::Bzip2 => "bzip2",
        Sniffed::Xz => "xz",
        Sniffed::Unknown => "neither a tar nor compressed",
    }
}

fn deep_diff_ids(
    walk: &Walk,
    jobs: &[Job],
    outs: &[JobOut],
    deep_layers: &HashMap<Digest, usize>,
    findings: &mut Vec<Finding>,
) {
    let configs: HashMap<&Digest, &ImageConfig> = jobs
        .iter()
        .zip(outs)
        .filter_map(|(Job::Blob { node, .. }, o)| {
            o.config.as_ref().map(|c| (walk.nodes[*node].digest(), c))
        })
        .collect();
    for (i, n) in walk.nodes.iter().enumerate() {
        if n.kind != Kind::Manifest
            || n.class != Class::Manifest
            || !matches!(n.status, DocStatus::Ok)
        {
            continue;
        }
        let Some(cfg_node) = n
            .children
            .iter()
            .find(|&&c| walk.nodes[c].role == Role::Config)
        else {
            continue;
        };
        let Some(cfg) = configs.get(walk.nodes[*cfg_node].digest()) else {
            continue;
        };
        let Some(rootfs) = &cfg.rootfs else { continue };
        let layers: Vec<usize> = n
            .children
            .iter()
            .copied()
            .filter(|&c| matches!(walk.nodes[c].role, Role::Layers(_)))
            .collect();
        if layers.len() != rootfs.diff_ids.len() {
            findings.push(Finding {
                kind: FindingKind::DiffIdMismatch,
                digest: Some(n.digest().clone()),
                path: walk.path_of(i),
                detail: format!(
                    "{} layers, but the config lists {} diff_ids",
                    layers.len(),
                    rootfs.diff_ids.len()
                ),
            });
            continue;
        }
        for (l, want) in layers.iter().zip(&rootfs.diff_ids) {
            let ln = &walk.nodes[*l];
            let Some(got) = deep_layers
                .get(ln.digest())
                .and_then(|&j| outs[j].diff_id.as_ref())
            else {
                continue;
            };
            if got != want {
                findings.push(Finding {
                    kind: FindingKind::DiffIdMismatch,
                    digest: Some(ln.digest().clone()),
                    path: walk.path_of(*l),
                    detail: format!("decompresses to `{got}`, config says `{want}`"),
                });
            }
        }
    }
}

/// Every regular file under `blobs/<alg>/`: its digest, when the name is one (the store's
/// [`Layout::blob_files`], which refuses a `blobs` or `blobs/<alg>` that is a link).
pub fn list_blobs(layout: &Layout) -> Result<Vec<(Option<Digest>, std::path::PathBuf)>> {
    Ok(layout
        .blob_files()?
        .into_iter()
        .map(|f| match f.kind {
            BlobFileKind::Blob(d) => (Some(d), f.path),
            _ => (None, f.path),
        })
        .collect())
}

/// Run `f` over `items` on all cores, keeping order.
pub fn run_parallel<T: Sync, O: Send + Default>(items: &[T], f: impl Fn(&T) -> O + Sync) -> Vec<O> {
    run_parallel_max(items, usize::MAX, f)
}

/// Run `f` over `items` on all cores but at most `max` threads, keeping order.
pub fn run_parallel_max<T: Sync, O: Send + Default>(
    items: &[T],
    max: usize,
    f: impl Fn(&T) -> O + Sync,
) -> Vec<O> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    run_parallel_on(items, cores.min(max.max(1)), f)
}

/// Run `f` over `items` on exactly `workers` threads (fewer when there are fewer items),
/// keeping order. For work that waits on something other than the CPU (a network).
pub fn run_parallel_on<T: Sync, O: Send + Default>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> O + Sync,
) -> Vec<O> {
    let workers = workers.max(1).min(items.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<BTreeMap<usize, O>> = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() {
                    break;
                }
                let o = f(&items[i]);
                if let Ok(mut r) = results.lock() {
                    r.insert(i, o);
                }
            });
        }
    });
    let mut map = results.into_inner().unwrap_or_default();
    (0..items.len())
        .map(|i| map.remove(&i).unwrap_or_default())
        .collect()
}

struct Progress<'a, R> {
    inner: R,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(p) = self.progress {
            p(n as u64);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_real_loop_is_a_cycle() {
        // A graph larger than the walk follows (documents shared by many parents) is not a
        // loop: it has its own kind.
        assert_eq!(
            status_finding(&DocStatus::Truncated),
            Some((
                FindingKind::TooManyNodes,
                "more than 1000000 nodes: walk stopped".to_string()
            ))
        );
        assert_eq!(
            status_finding(&DocStatus::Cycle).map(|f| f.0),
            Some(FindingKind::Cycle)
        );
        assert_eq!(FindingKind::TooManyNodes.name(), "too-many-nodes");
    }

    #[test]
    fn conformance_is_a_warning_unless_strict() {
        for k in [FindingKind::Invalid, FindingKind::MediaTypeMismatch] {
            assert_eq!(k.severity(), Severity::Warning);
            assert_eq!(k.severity_with(true), Severity::Error);
        }
        for k in [
            FindingKind::Missing,
            FindingKind::DigestMismatch,
            FindingKind::SizeMismatch,
            FindingKind::Unparseable,
            FindingKind::Unreadable,
            FindingKind::TooDeep,
            FindingKind::Cycle,
        ] {
            assert_eq!(k.severity_with(false), Severity::Error, "{k:?}");
        }
        assert_eq!(FindingKind::Advisory.severity_with(true), Severity::Info);
    }
}
