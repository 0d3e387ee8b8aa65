//! Bundles: what a connected side carries to an air-gapped one.
//!
//! A bundle is an OCI image layout as a tar, plus `bundle.json`, cut into parts of bounded size.
//! Every part is a valid tar that starts with the same `bundle.json`, `oci-layout` and
//! `index.json`, so a complete single-part bundle is an oci-archive other tools read, and any
//! part can be verified and loaded alone, in any order.
//!
//! `bundle.json` (version 2):
//! ```json
//! {"ocikitBundle": 2, "parts": 2, "partSize": 1048576,
//!  "inventories": ["sha256:…"],
//!  "refs": [{"name": "app:1", "descriptor": {…}, "root": 0}],
//!  "graph": [{"digest": "sha256:…", "children": [1, 2]}, {"digest": "sha256:…"},
//!            {"digest": "sha256:…", "optional": true}, …],
//!  "blobs": [{"digest": "sha256:…", "size": 1234, "part": 1},
//!            {"digest": "sha256:…", "size": 9999999, "chunks": [{"part": 1, "offset": 0, "size": 1048064}, …]}],
//!  "assumed": [{"digest": "sha256:…", "size": 42}]}
//! ```
//! `graph` is every blob the refs reach, once, with the positions of the blobs each names
//! (`optional`: a `subject` or foreign layer that may be absent); a ref needs the blobs
//! reachable from its `root`. `blobs` is what the bundle carries and in which part; `assumed`
//! what it leaves out because an inventory (`--have`) said the far side has it. Version 1
//! listed every blob of every ref in `refs[].blobs` instead of the graph, which grows with refs
//! times image size (1,000 refs naming one index of 1,000 manifests: two million digests);
//! loading still reads it.
//! A blob larger than a part is split into chunks: `chunks/<alg>/<encoded>.<n>` holds the bytes,
//! and the entry after it, `chunks/<alg>/<encoded>.<n>.digest`, the chunk's own digest (written
//! after the data, so bundling stays one pass).
//!
//! Parts are written by [`crate::archive::TarWriter`] and read, once and front to back, by
//! [`crate::archive::Stream`] within the archive module's [`Limits`] (extension headers bounded
//! before they are read, names checked, members counted); a part that breaks them is rejected.
//!
//! Loading streams each part into the layout under its writer lock: blobs go through a
//! [`crate::BlobWriter`] and are verified against `bundle.json` before they are renamed into
//! place; chunks are written at their offset into the store's [`crate::Partial`] of the blob (so
//! extra disk is at most one blob), accepted once their `.digest` entry matches; when the last
//! chunk is accepted the whole blob is verified and renamed. A ref is committed once every blob
//! it needs is present. An interrupted load resumes: finished blobs and chunks are kept.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::archive::{
    checked_header, copy_exact, ArchiveError, Limits, MemberKind, Stream, TarWriter, BLOCK,
};
use crate::engine::{merge_entry, RefChange, RefUpdate};
use crate::inventory::Inventory;
use crate::layer::copy_large;
use crate::layout::{unwrap_io, Partial, WrittenChunk};
use crate::output::AtomicFile;
use crate::select::Selection;
use crate::{Descriptor, Digest, Error, Index, Layout, Result, OCI_LAYOUT_CONTENT};

/// The bundle format version written.
pub const BUNDLE_VERSION: u32 = 2;
const META_LIMIT: u64 = 256 << 20;

/// `bundle.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleManifest {
    /// Format version.
    #[serde(rename = "ocikitBundle")]
    pub version: u32,
    /// How many parts.
    pub parts: u32,
    /// The part size asked for, if any.
    #[serde(rename = "partSize")]
    pub part_size: Option<u64>,
    /// Digests of the inventories the bundle was cut against.
    pub inventories: Vec<Digest>,
    /// The refs to create.
    pub refs: Vec<BundleRef>,
    /// Every blob the refs reach, once, with what each names (version 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub graph: Vec<GraphNode>,
    /// The blobs carried.
    pub blobs: Vec<BundleBlob>,
    /// The blobs left out because the far side has them.
    pub assumed: Vec<AssumedBlob>,
}

/// A ref to create on load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleRef {
    /// The ref name; `None` for an untagged entry (a referrer).
    pub name: Option<String>,
    /// The `index.json` entry.
    pub descriptor: Descriptor,
    /// Its position in `graph` (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<u32>,
    /// Every blob the ref needs (version 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<Digest>,
}

/// One blob of the graph a bundle's refs reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphNode {
    /// Its digest.
    pub digest: Digest,
    /// The positions in `graph` of the blobs it names (documents only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<u32>,
    /// It may be absent (every descriptor naming it is a `subject` or a foreign layer).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// A blob carried by the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// The part holding it whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<u32>,
    /// Or the chunks it is split into, in offset order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<Chunk>,
}

/// A piece of a blob larger than a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// The part holding it.
    pub part: u32,
    /// Where it starts in the blob.
    pub offset: u64,
    /// Its length.
    pub size: u64,
}

/// A blob the bundle relies on the far side having.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssumedBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size, when known.
    pub size: Option<u64>,
}

/// How to write a bundle.
#[derive(Debug, Clone, Default)]
pub struct BundleOptions {
    /// The largest part file, in bytes; `None` writes one file.
    pub part_size: Option<u64>,
    /// The mtime of every tar entry (`SOURCE_DATE_EPOCH`, or 0).
    pub mtime: u64,
    /// Threads copying blobs into the parts (0: one per core). The bytes written do not
    /// depend on it.
    pub threads: usize,
}

/// What [`write_bundle`] wrote.
#[derive(Debug, Clone)]
pub struct BundleReport {
    /// The part files, in order, with their sizes.
    pub parts: Vec<(PathBuf, u64)>,
    /// `bundle.json`.
    pub manifest: BundleManifest,
}

/// The path of part `n` (1-based) of a bundle written to `out`.
pub fn part_path(out: &Path, n: u32, parts_split: bool) -> PathBuf {
    if !parts_split {
        return out.to_path_buf();
    }
    let mut s = out.as_os_str().to_os_string();
    s.push(format!(".{n:03}"));
    PathBuf::from(s)
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK) * BLOCK
}

fn entry_cost(size: u64) -> u64 {
    BLOCK + padded(size)
}

/// Where each carried blob goes.
struct Plan {
    parts: u32,
    blobs: Vec<BundleBlob>,
}

/// Assign blobs to parts: whole blobs first-fit in digest order; a blob larger than a part is
/// chunked across consecutive new parts, so chunks are written in offset order.
fn plan(blobs: &[(Digest, u64)], capacity: Option<u64>) -> Result<Plan> {
    let Some(cap) = capacity else {
        return Ok(Plan {
            parts: 1,
            blobs: blobs
                .iter()
                .map(|(d, s)| BundleBlob {
                    digest: d.clone(),
                    size: *s,
                    part: Some(1),
                    chunks: vec![],
                })
                .collect(),
        });
    };
    // A chunk costs its data entry plus its digest entry.
    let digest_entry = entry_cost(128);
    if cap < BLOCK * 4 + digest_entry {
        return Err(Error::PartTooSmall {
            size: cap,
            needed: BLOCK * 4 + digest_entry,
        });
    }
    let mut free: Vec<u64> = Vec::new();
    let mut out = Vec::new();
    for (d, s) in blobs {
        let cost = entry_cost(*s);
        if cost <= cap {
            let part = match free.iter().position(|&f| f >= cost) {
                Some(p) => p,
                None => {
                    free.push(cap);
                    free.len() - 1
                }
            };
            free[part] -= cost;
            out.push(BundleBlob {
                digest: d.clone(),
                size: *s,
                part: Some(part as u32 + 1),
                chunks: vec![],
            });
        } else {
            let max_chunk = (cap - BLOCK - digest_entry) / BLOCK * BLOCK;
            let mut chunks = Vec::new();
            let mut offset = 0;
            while offset < *s {
                let size = max_chunk.min(s - offset);
                free.push(cap - entry_cost(size) - digest_entry);
                chunks.push(Chunk {
                    part: free.len() as u32,
                    offset,
                    size,
                });
                offset += size;
            }
            out.push(BundleBlob {
                digest: d.clone(),
                size: *s,
                part: None,
                chunks,
            });
        }
    }
    Ok(Plan {
        parts: free.len().max(1) as u32,
        blobs: out,
    })
}

/// Write a bundle of `sel` from `layout` to `out` (or `out.001`, … with a part size), leaving
/// out blobs that any of `have` lists. Nothing is left behind on failure.
pub fn write_bundle(
    layout: &Layout,
    sel: &Selection,
    have: &[Inventory],
    opts: &BundleOptions,
    out: &Path,
) -> Result<BundleReport> {
    crate::output::refuse_inside(out, layout.root())?;
    write(layout, sel, have, opts, Dest::Files(out))
}

/// [`write_bundle`] into a stream (standard output): one part, written as it is made. A
/// bundle split into parts cannot go to one stream ([`Error::SplitBundleToStream`]); `name`
/// is what the report calls the output.
pub fn write_bundle_to(
    layout: &Layout,
    sel: &Selection,
    have: &[Inventory],
    opts: &BundleOptions,
    out: &mut dyn Write,
    name: &Path,
) -> Result<BundleReport> {
    if opts.part_size.is_some() {
        return Err(Error::SplitBundleToStream);
    }
    write(layout, sel, have, opts, Dest::Stream(out, name))
}

/// Where a bundle's parts go.
enum Dest<'a> {
    /// `OUT` (one part) or `OUT.001`, `OUT.002`, ..., each written whole or not at all.
    Files(&'a Path),
    /// One part, streamed; the path names it in reports and errors.
    Stream(&'a mut dyn Write, &'a Path),
}

fn write(
    layout: &Layout,
    sel: &Selection,
    have: &[Inventory],
    opts: &BundleOptions,
    dest_of: Dest<'_>,
) -> Result<BundleReport> {
    let have_set: HashMap<&Digest, u64> = have
        .iter()
        .flat_map(|i| i.blobs.iter().map(|b| (&b.digest, b.size)))
        .collect();
    let mut carried: Vec<(Digest, u64)> = Vec::new();
    let mut assumed = Vec::new();
    // In digest order, so the bundle's bytes do not depend on traversal order.
    let mut planned: Vec<_> = sel.plan.blobs.iter().collect();
    planned.sort_by(|a, b| a.digest.cmp(&b.digest));
    for b in planned {
        let d = &b.digest;
        if have_set.contains_key(d) {
            assumed.push(AssumedBlob {
                digest: d.clone(),
                size: b.size.or(have_set.get(d).copied()),
            });
            continue;
        }
        let size = match sel.documents.get(d) {
            Some(bytes) => bytes.len() as u64,
            None if b.optional && layout.blob_size(d)?.is_none() => continue,
            None => {
                let found = layout.blob_size(d)?.ok_or_else(|| Error::MissingBlob {
                    digest: d.clone(),
                    path: layout.blob_path(d),
                })?;
                if let Some(s) = b.size.filter(|&s| s != found) {
                    return Err(Error::SizeMismatch {
                        digest: d.clone(),
                        expected: s,
                        found,
                        path: layout.blob_path(d),
                    });
                }
                found
            }
        };
        carried.push((d.clone(), size));
    }
    let refs: Vec<BundleRef> = sel
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| BundleRef {
            name: e.ref_name().map(String::from),
            descriptor: e.clone(),
            root: Some(sel.plan.root(i)),
            blobs: Vec::new(),
        })
        .collect();
    let graph: Vec<GraphNode> = sel
        .plan
        .blobs
        .iter()
        .enumerate()
        .map(|(i, b)| GraphNode {
            digest: b.digest.clone(),
            children: sel.plan.children_of(i).to_vec(),
            optional: b.optional,
        })
        .collect();
    let mut index = Index::empty();
    index.manifests = sel.entries.clone();
    let index_bytes = crate::json::to_vec(&index).map_err(|e| Error::Json {
        what: "index.json".into(),
        source: e,
    })?;
    let mut inventories: Vec<Digest> = have.iter().map(Inventory::digest).collect();
    inventories.sort();
    inventories.dedup();
    let uses_chunks = |p: &Plan| p.blobs.iter().any(|b| !b.chunks.is_empty());
    let algs: BTreeSet<String> = carried
        .iter()
        .map(|(d, _)| d.algorithm_str().to_string())
        .collect();

    // bundle.json is in every part and its size depends on the plan: reserve room, plan,
    // and grow the reservation until it holds.
    let mut reserve = 4096u64;
    let (plan, manifest_bytes) = loop {
        let capacity = opts.part_size.map(|p| p.saturating_sub(reserve));
        // The part size, not the capacity left after the metadata, is what was asked for.
        let plan = plan(&carried, capacity).map_err(|e| match (e, opts.part_size) {
            (Error::PartTooSmall { needed, .. }, Some(size)) => Error::PartTooSmall {
                size,
                needed: needed + reserve,
            },
            (e, _) => e,
        })?;
        let manifest = BundleManifest {
            version: BUNDLE_VERSION,
            parts: plan.parts,
            part_size: opts.part_size,
            inventories: inventories.clone(),
            refs: refs.clone(),
            graph: graph.clone(),
            blobs: plan.blobs.clone(),
            assumed: assumed.clone(),
        };
        let mut bytes = crate::json::to_vec_pretty(&manifest).map_err(|e| Error::Json {
            what: "bundle.json".into(),
            source: e,
        })?;
        bytes.push(b'\n');
        let dirs = 1
            + algs.len() as u64
            + if uses_chunks(&plan) {
                1 + algs.len() as u64
            } else {
                0
            };
        let overhead = entry_cost(bytes.len() as u64)
            + entry_cost(OCI_LAYOUT_CONTENT.len() as u64)
            + entry_cost(index_bytes.len() as u64)
            + dirs * BLOCK
            + 2 * BLOCK;
        if opts.part_size.is_none() || overhead <= reserve {
            break (plan, bytes);
        }
        reserve = overhead.div_ceil(4096) * 4096;
    };
    let chunks_used = uses_chunks(&plan);
    let split = opts.part_size.is_some();

    let ctx = PartLayout {
        manifest: &manifest_bytes,
        index: &index_bytes,
        algs: &algs,
        plan: &plan,
        chunks_used,
        documents: &sel.documents,
        mtime: opts.mtime,
    };
    let durable = layout.options().durable;
    let parts = match dest_of {
        Dest::Stream(w, name) => {
            let mut chunked = HashMap::new();
            let mut streamed = Vec::new();
            for part in 1..=plan.parts {
                let mut counted = CountingWriter {
                    inner: &mut *w,
                    count: 0,
                };
                write_in_order(&ctx, layout, part, &mut counted, name, &mut chunked)?;
                let len = counted.count;
                w.flush().map_err(|e| Error::writing(name, e))?;
                streamed.push((name.to_path_buf(), len));
            }
            streamed
        }
        Dest::Files(out) => {
            // Every part goes to a temp file beside the output; they are renamed at the end.
            let mut files = (1..=plan.parts)
                .map(|part| AtomicFile::create(part_path(out, part, split), durable))
                .collect::<Result<Vec<_>>>()?;
            if files.iter().all(AtomicFile::is_temp) {
                write_positioned(&ctx, layout, &mut files, worker_count(opts.threads))?;
            } else {
                // A part that is not a regular file (`-o /dev/null`) is written as a stream.
                let mut chunked = HashMap::new();
                for (part, file) in (1..).zip(files.iter_mut()) {
                    let dest = file.dest().to_path_buf();
                    let mut w = file.writer();
                    write_in_order(&ctx, layout, part, &mut w, &dest, &mut chunked)?;
                    w.finish()?;
                }
            }
            let mut parts = Vec::with_capacity(files.len());
            for file in files {
                let len = file.len();
                parts.push((file.commit()?, len));
            }
            parts
        }
    };
    let manifest: BundleManifest =
        crate::json::from_slice(&manifest_bytes).map_err(|e| Error::Json {
            what: "bundle.json".into(),
            source: e,
        })?;
    Ok(BundleReport { parts, manifest })
}

/// Counts what goes through to `inner`.
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

/// Reads through to `inner`, hashing what it reads.
struct HashingReader<'h, R> {
    inner: R,
    hasher: &'h mut crate::Hasher,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Writes through to `inner`, hashing what it writes.
struct HashingWriter<'h, W> {
    inner: W,
    hasher: &'h mut crate::Hasher,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Blobs (and chunks) from this size on are copied with reading and hashing on one thread and
/// writing on another.
const PIPELINE_FROM: u64 = 8 << 20;

/// The length of a chunk's `.digest` entry: `sha256:` and 64 hex digits.
const CHUNK_DIGEST_LEN: u64 = 71;

/// How many threads copy blobs into parts: `threads`, or one per core when 0.
fn worker_count(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    }
}

/// Copy `r` into `w`; from [`PIPELINE_FROM`] on, reading (and the reader's hashing) stays on
/// this thread while another writes.
fn move_bytes<W: Write + Send>(r: &mut dyn Read, mut w: W, size: u64) -> io::Result<u64> {
    if size >= PIPELINE_FROM {
        crate::layer::copy_pipelined(r, &mut w)
    } else {
        copy_large(r, &mut w)
    }
}

/// What a part holds besides its blobs' data: the same for every way of writing it.
struct PartLayout<'a> {
    manifest: &'a [u8],
    index: &'a [u8],
    algs: &'a BTreeSet<String>,
    plan: &'a Plan,
    chunks_used: bool,
    documents: &'a BTreeMap<Digest, Vec<u8>>,
    mtime: u64,
}

/// The data of a member whose header [`PartLayout::lay_out`] wrote.
#[derive(Debug, Clone, Copy)]
enum Fill<'p> {
    /// A blob stored whole.
    Blob(&'p BundleBlob),
    /// Chunk `n` of a blob.
    Chunk(&'p BundleBlob, usize),
    /// The `.digest` entry after chunk `n`: the chunk's sha256.
    ChunkDigest(&'p BundleBlob, usize),
}

impl Fill<'_> {
    fn size(&self) -> u64 {
        match *self {
            Fill::Blob(b) => b.size,
            Fill::Chunk(b, n) => b.chunks.get(n).map_or(0, |c| c.size),
            Fill::ChunkDigest(..) => CHUNK_DIGEST_LEN,
        }
    }
}

fn blob_name(b: &BundleBlob) -> String {
    format!("blobs/{}/{}", b.digest.algorithm_str(), b.digest.encoded())
}

fn chunk_name(b: &BundleBlob, n: usize) -> String {
    format!(
        "chunks/{}/{}.{n}",
        b.digest.algorithm_str(),
        b.digest.encoded()
    )
}

impl<'a> PartLayout<'a> {
    /// Write part `part` into `tw`: its entries in their fixed order, then the end of the tar.
    /// A blob's (or chunk's) data is `fill`'s: called right after its header with the tar's
    /// output, it puts the data and its padding there or leaves room for them.
    fn lay_out<W: Write>(
        &self,
        mut tw: TarWriter<W>,
        part: u32,
        dest: &Path,
        fill: &mut dyn FnMut(&mut W, Fill<'a>) -> Result<()>,
    ) -> Result<()> {
        let part_err = |e: ArchiveError| tar_error(e, dest, dest);
        tw.file("bundle.json", self.manifest).map_err(part_err)?;
        tw.file("oci-layout", OCI_LAYOUT_CONTENT)
            .map_err(part_err)?;
        tw.file("index.json", self.index).map_err(part_err)?;
        tw.dir("blobs/").map_err(part_err)?;
        for a in self.algs {
            tw.dir(&format!("blobs/{a}/")).map_err(part_err)?;
        }
        let plan: &'a Plan = self.plan;
        for b in plan.blobs.iter().filter(|b| b.part == Some(part)) {
            let name = blob_name(b);
            match self.documents.get(&b.digest) {
                Some(bytes) => tw.file(&name, bytes).map_err(part_err)?,
                None => fill(tw.reserve(&name, b.size).map_err(part_err)?, Fill::Blob(b))?,
            }
        }
        if self.chunks_used {
            tw.dir("chunks/").map_err(part_err)?;
            for a in self.algs {
                tw.dir(&format!("chunks/{a}/")).map_err(part_err)?;
            }
        }
        for b in &plan.blobs {
            for (n, c) in b.chunks.iter().enumerate().filter(|(_, c)| c.part == part) {
                let name = chunk_name(b, n);
                fill(
                    tw.reserve(&name, c.size).map_err(part_err)?,
                    Fill::Chunk(b, n),
                )?;
                let out = tw
                    .reserve(&format!("{name}.digest"), CHUNK_DIGEST_LEN)
                    .map_err(part_err)?;
                fill(out, Fill::ChunkDigest(b, n))?;
            }
        }
        tw.finish().map_err(part_err)?;
        Ok(())
    }
}

/// A blob's data, verified as it is read (a blob that does not hash to its digest fails at its
/// end, with the store's error), moved by `copy`.
fn copy_blob(
    layout: &Layout,
    b: &BundleBlob,
    dest: &Path,
    copy: &mut dyn FnMut(&mut dyn Read) -> io::Result<u64>,
) -> Result<()> {
    let path = layout.blob_path(&b.digest);
    let mut r = layout.open_blob(&b.digest, Some(b.size))?;
    copy_exact(&blob_name(b), b.size, &mut r, copy).map_err(|e| tar_error(e, &path, dest))
}

/// A blob carried in chunks, read chunk by chunk in offset order and hashed whole on the way.
struct ChunkedSource {
    file: File,
    alg: crate::Algorithm,
    whole: crate::Hasher,
}

impl ChunkedSource {
    fn open(layout: &Layout, b: &BundleBlob) -> Result<ChunkedSource> {
        let alg = b
            .digest
            .algorithm()
            .ok_or_else(|| Error::Unverifiable(b.digest.clone()))?;
        Ok(ChunkedSource {
            file: layout.open_blob_unverified(&b.digest)?,
            alg,
            whole: alg.hasher(),
        })
    }

    /// Chunk `n` of `b`, moved by `copy`, which also hashes what it writes into the hasher it
    /// is given: returns that, the chunk's sha256. After the last chunk the whole blob must
    /// hash to its digest ([`Error::DigestMismatch`]).
    fn copy(
        &mut self,
        layout: &Layout,
        b: &BundleBlob,
        n: usize,
        dest: &Path,
        copy: &mut dyn FnMut(&mut dyn Read, &mut crate::Hasher) -> io::Result<u64>,
    ) -> Result<Digest> {
        let path = layout.blob_path(&b.digest);
        let Some(c) = b.chunks.get(n) else {
            return Err(Error::Invalid {
                what: "bundle.json".into(),
                reason: format!("blob `{}` has no chunk {n}", b.digest),
            });
        };
        self.file
            .seek(SeekFrom::Start(c.offset))
            .map_err(|e| Error::io(&path, e))?;
        let mut chunk_hash = crate::Algorithm::Sha256.hasher();
        let mut reader = HashingReader {
            inner: (&mut self.file).take(c.size),
            hasher: &mut self.whole,
        };
        copy_exact(&chunk_name(b, n), c.size, &mut reader, &mut |r| {
            copy(r, &mut chunk_hash)
        })
        .map_err(|e| tar_error(e, &path, dest))?;
        if n + 1 == b.chunks.len() {
            let found = std::mem::replace(&mut self.whole, self.alg.hasher()).finish();
            if found != b.digest {
                return Err(Error::DigestMismatch {
                    expected: b.digest.clone(),
                    found,
                    path,
                });
            }
        }
        Ok(chunk_hash.finish())
    }
}

/// Zeros after `size` bytes of data to the end of its block.
fn pad(w: &mut dyn Write, size: u64, dest: &Path) -> Result<()> {
    w.write_all(&[0u8; BLOCK as usize][..crate::archive::block_padding(size) as usize])
        .map_err(|e| Error::writing(dest, e))
}

/// Part `part` written front to back into `out` (a stream, or a part that is not a regular
/// file): each blob read, verified and written in turn. `chunked` keeps the blobs carried in
/// chunks open across parts.
fn write_in_order<W: Write>(
    ctx: &PartLayout<'_>,
    layout: &Layout,
    part: u32,
    out: &mut W,
    dest: &Path,
    chunked: &mut HashMap<Digest, ChunkedSource>,
) -> Result<()> {
    let mut last_chunk: Option<Digest> = None;
    let tw = TarWriter::new(out, ctx.mtime);
    ctx.lay_out(tw, part, dest, &mut |w: &mut &mut W, fill| {
        match fill {
            Fill::Blob(b) => copy_blob(layout, b, dest, &mut |r| copy_large(r, &mut **w))?,
            Fill::Chunk(b, n) => {
                let src = match chunked.entry(b.digest.clone()) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(ChunkedSource::open(layout, b)?)
                    }
                };
                let d = src.copy(layout, b, n, dest, &mut |r, h| {
                    copy_large(
                        r,
                        &mut HashingWriter {
                            inner: &mut **w,
                            hasher: h,
                        },
                    )
                })?;
                if n + 1 == b.chunks.len() {
                    chunked.remove(&b.digest);
                }
                last_chunk = Some(d);
            }
            Fill::ChunkDigest(..) => {
                let d = last_chunk
                    .take()
                    .map(|d| d.as_str().to_string())
                    .unwrap_or_default();
                w.write_all(d.as_bytes())
                    .map_err(|e| Error::writing(dest, e))?;
            }
        }
        pad(&mut **w, fill.size(), dest)
    })
}

/// One blob's share of the parts: where its data (or each chunk's data and `.digest` entry)
/// goes, by part index and position.
enum Job<'p> {
    Whole {
        blob: &'p BundleBlob,
        part: usize,
        at: u64,
    },
    Chunked {
        blob: &'p BundleBlob,
        /// (chunk number, part index, data position, `.digest` data position)
        chunks: Vec<(usize, usize, u64, u64)>,
    },
}

impl Job<'_> {
    fn size(&self) -> u64 {
        match self {
            Job::Whole { blob, .. } | Job::Chunked { blob, .. } => blob.size,
        }
    }
}

/// Every part written into its temp file at once: headers, metadata and documents in order,
/// leaving room for the blobs' data, which `workers` threads then copy in (largest first),
/// each blob read once, verified and written at its position. The bytes are those
/// [`write_in_order`] writes, whatever the number of threads; of several failing blobs the
/// one first in the bundle is reported.
fn write_positioned(
    ctx: &PartLayout<'_>,
    layout: &Layout,
    files: &mut [AtomicFile],
    workers: usize,
) -> Result<()> {
    let mut outs = Vec::with_capacity(files.len());
    for f in files.iter_mut() {
        let dest = f.dest().to_path_buf();
        outs.push(f.positioned()?.ok_or_else(|| Error::Invalid {
            what: dest.display().to_string(),
            reason: "is not a regular file".into(),
        })?);
    }
    let mut jobs: Vec<Job<'_>> = Vec::new();
    let mut chunked_job: HashMap<&Digest, usize> = HashMap::new();
    for (i, out) in outs.iter_mut().enumerate() {
        let dest = out.dest().to_path_buf();
        let tw = TarWriter::new(&mut *out, ctx.mtime);
        ctx.lay_out(tw, i as u32 + 1, &dest, &mut |w, fill| {
            let at = w.position();
            w.skip(padded(fill.size()))
                .map_err(|e| Error::writing(&dest, e))?;
            match fill {
                Fill::Blob(blob) => jobs.push(Job::Whole { blob, part: i, at }),
                Fill::Chunk(blob, n) => {
                    let j = *chunked_job.entry(&blob.digest).or_insert_with(|| {
                        jobs.push(Job::Chunked {
                            blob,
                            chunks: Vec::new(),
                        });
                        jobs.len() - 1
                    });
                    if let Some(Job::Chunked { chunks, .. }) = jobs.get_mut(j) {
                        chunks.push((n, i, at, 0));
                    }
                }
                Fill::ChunkDigest(blob, n) => {
                    let j = chunked_job.get(&blob.digest).copied();
                    if let Some(Job::Chunked { chunks, .. }) = j.and_then(|j| jobs.get_mut(j)) {
                        if let Some(c) = chunks.iter_mut().rev().find(|c| c.0 == n) {
                            c.3 = at;
                        }
                    }
                }
            }
            Ok(())
        })?;
    }
    let targets: Vec<(&crate::PositionedFile<'_>, &Path)> =
        outs.iter().map(|o| (o.file(), o.dest())).collect();
    // Largest first, so that the largest blob is not the last one started.
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&j| std::cmp::Reverse(jobs[j].size()));
    let done = crate::fsck::run_parallel_on(&order, workers, |&j| {
        Some((j, run_job(layout, &jobs[j], &targets)))
    });
    let mut results: Vec<Option<Result<()>>> = (0..jobs.len()).map(|_| None).collect();
    for (j, r) in done.into_iter().flatten() {
        results[j] = Some(r);
    }
    drop(targets);
    results.into_iter().flatten().collect::<Result<()>>()?;
    for out in outs {
        out.finish()?;
    }
    Ok(())
}

/// Copy one blob's data into its places in the parts.
fn run_job(
    layout: &Layout,
    job: &Job<'_>,
    targets: &[(&crate::PositionedFile<'_>, &Path)],
) -> Result<()> {
    let target = |part: usize| {
        targets.get(part).copied().ok_or_else(|| Error::Invalid {
            what: "bundle".into(),
            reason: format!("no part {}", part + 1),
        })
    };
    match job {
        Job::Whole { blob, part, at } => {
            let (file, dest) = target(*part)?;
            let mut w = file.writer_at(*at);
            copy_blob(layout, blob, dest, &mut |r| {
                move_bytes(r, &mut w, blob.size)
            })
        }
        Job::Chunked { blob, chunks } => {
            let mut src = ChunkedSource::open(layout, blob)?;
            for &(n, part, at, digest_at) in chunks {
                let (file, dest) = target(part)?;
                let size = blob.chunks.get(n).map_or(0, |c| c.size);
                let mut w = file.writer_at(at);
                let d = src.copy(layout, blob, n, dest, &mut |r, h| {
                    move_bytes(
                        r,
                        HashingWriter {
                            inner: &mut w,
                            hasher: h,
                        },
                        size,
                    )
                })?;
                file.write_all_at(d.as_str().as_bytes(), digest_at)
                    .map_err(|e| Error::writing(dest, e))?;
            }
            Ok(())
        }
    }
}

/// A tar writing error as the library's: a failed read of `source` (a blob or chunk that fails
/// verification) gives back the error it carries; the output failing names the part file.
fn tar_error(e: ArchiveError, source: &Path, part: &Path) -> Error {
    match e {
        ArchiveError::Source { source: io, .. } => unwrap_io(io, source),
        ArchiveError::Output { source: io } => Error::writing(part, io),
        e => Error::Archive(e),
    }
}

/// What happened to one part during a load.
#[derive(Debug, Clone, Default)]
pub struct PartReport {
    /// The part file.
    pub path: PathBuf,
    /// Blobs written (or, dry run, that would be).
    pub written: Vec<Digest>,
    /// Blobs already present.
    pub skipped: usize,
    /// Chunks written.
    pub chunks: usize,
    /// Why the part (or a blob in it) was rejected.
    pub errors: Vec<String>,
}

/// A ref that could not be committed yet.
#[derive(Debug, Clone)]
pub struct Waiting {
    /// The ref name, or the digest for an untagged entry.
    pub name: String,
    /// Blobs still missing.
    pub missing: Vec<Digest>,
    /// Parts holding them.
    pub parts: BTreeSet<u32>,
}

/// What [`load`] did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// One report per part, in the order given.
    pub parts: Vec<PartReport>,
    /// Entries merged into `index.json` (or that would be, in a dry run).
    pub committed: Vec<RefUpdate>,
    /// Refs waiting for more parts.
    pub waiting: Vec<Waiting>,
    /// Blobs the bundle assumed present that the layout lacks.
    pub missing_assumed: Vec<Digest>,
    /// True for a dry run.
    pub dry_run: bool,
}

impl LoadReport {
    /// True when every part loaded and no assumed blob is missing.
    pub fn ok(&self) -> bool {
        self.parts.iter().all(|p| p.errors.is_empty()) && self.missing_assumed.is_empty()
    }
}

/// Is `path` a bundle part (a tar whose first entry is `bundle.json`)? Only the first 512-byte
/// header is read and checked (name, type, checksum): no extension header is followed, so a
/// hostile source costs one block here and meets the archive reader's limits after.
pub fn is_bundle_part(path: &Path) -> bool {
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    let mut block = [0u8; BLOCK as usize];
    if f.read_exact(&mut block).is_err() {
        return false;
    }
    checked_header(&block).is_some_and(|h| {
        &*h.path_bytes() == b"bundle.json" && h.entry_type() == tar::EntryType::Regular
    })
}

/// Load bundle parts into the layout at `dir`, created (with `layout_opts`) when missing.
///
/// A `dir` this call created is removed again when the load fails (an `Err`); a load that
/// returns a report keeps what it wrote, rejected parts included, so that it resumes. A dry run
/// writes nothing: when `dir` is not a layout yet (absent, or an empty directory), the parts
/// are verified in a scratch layout that is removed afterwards.
pub fn load_into(
    dir: &Path,
    parts: &[PathBuf],
    layout_opts: crate::Options,
    dry_run: bool,
) -> Result<LoadReport> {
    if dry_run && !dir.join("oci-layout").exists() {
        let empty_dir = match fs::read_dir(dir) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(Error::io(dir, e)),
        };
        if empty_dir {
            let scratch = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
            let (l, _) = Layout::init(scratch.path().join("layout"), layout_opts)?;
            return load(&l, parts, true);
        }
        // Not a layout and not empty: the same refusal a real load meets.
        return load(&Layout::open(dir, layout_opts)?, parts, true);
    }
    crate::output::NewDir::run_layout(
        dir,
        || {
            let (layout, _) = Layout::init(dir, layout_opts.clone())?;
            load(&layout, parts, dry_run)
        },
        |e| matches!(e, Error::LayoutGone { .. }),
    )
}

/// Load bundle parts into `layout` (which must exist). With `dry_run`, every part is read and
/// verified but nothing is written.
pub fn load(layout: &Layout, parts: &[PathBuf], dry_run: bool) -> Result<LoadReport> {
    let lock = layout.lock()?;
    let mut report = LoadReport {
        dry_run,
        ..LoadReport::default()
    };
    let mut bundles: BTreeMap<Vec<u8>, BundleManifest> = BTreeMap::new();
    // Blobs (and chunks) verified during a dry run count as present for the ref report.
    let mut virtual_present: BTreeSet<Digest> = BTreeSet::new();
    let mut virtual_chunks: BTreeSet<(Digest, usize)> = BTreeSet::new();
    for path in parts {
        let mut pr = PartReport {
            path: path.clone(),
            ..PartReport::default()
        };
        let mut seen = Seen {
            blobs: &mut virtual_present,
            chunks: &mut virtual_chunks,
        };
        match load_part(&lock, path, dry_run, &mut pr, &mut seen) {
            Ok((bytes, m)) => {
                bundles.insert(bytes, m);
            }
            // The destination failing (a full disk) is not the part's fault: the load stops,
            // as an import does; what verified so far stays for the next load to reuse.
            Err(e) if e.is_write_failure() => return Err(e),
            Err(e) => pr.errors.push(e.to_string()),
        }
        report.parts.push(pr);
    }
    let mut index = layout.read_index()?.value;
    let mut changed = false;
    for m in bundles.values() {
        let present = |d: &Digest| -> bool {
            virtual_present.contains(d) || layout.blob_size(d).ok().flatten().is_some()
        };
        let missing_assumed: Vec<Digest> = m
            .assumed
            .iter()
            .filter(|a| !present(&a.digest))
            .map(|a| a.digest.clone())
            .collect();
        if !missing_assumed.is_empty() {
            report.missing_assumed.extend(missing_assumed);
            continue;
        }
        // The parts that still hold something of a blob: its own part, or the parts of the
        // chunks not loaded yet (never a part whose chunk is already in).
        let listed: HashMap<&Digest, &BundleBlob> =
            m.blobs.iter().map(|b| (&b.digest, b)).collect();
        let parts_left = |d: &Digest| -> BTreeSet<u32> {
            let Some(b) = listed.get(d) else {
                return BTreeSet::new();
            };
            if b.chunks.is_empty() {
                return b.part.into_iter().collect();
            }
            // A chunk counts as done only where it is this bundle's chunk (a bundle written
            // again with another part size cuts the blob elsewhere).
            let (done, extents) = lock.partial_chunks(d).unwrap_or_default();
            let is_done = |n: usize, c: &Chunk| {
                done.contains(&n) && extents.get(&n).is_none_or(|e| *e == (c.offset, c.size))
            };
            b.chunks
                .iter()
                .enumerate()
                .filter(|(n, c)| !is_done(*n, c) && !virtual_chunks.contains(&(d.clone(), *n)))
                .map(|(_, c)| c.part)
                .collect()
        };
        let mut known: HashMap<u32, bool> = HashMap::new();
        // Refs whose blobs bundle.json says are all here: (label, entry).
        let mut ready: Vec<(String, Descriptor)> = Vec::new();
        for r in &m.refs {
            let missing: Vec<Digest> = match r.root {
                Some(root) => missing_below(&m.graph, root, &mut known, &present)?,
                None => r.blobs.iter().filter(|d| !present(d)).cloned().collect(),
            };
            let label = r
                .name
                .clone()
                .unwrap_or_else(|| r.descriptor.digest.to_string());
            if !missing.is_empty() {
                let parts = missing.iter().flat_map(&parts_left).collect();
                report.waiting.push(Waiting {
                    name: label,
                    missing,
                    parts,
                });
                continue;
            }
            let mut entry = r.descriptor.clone();
            entry.set_ref_name(r.name.as_deref());
            ready.push((label, entry));
        }
        // bundle.json is not trusted to say what a ref needs: before a real load commits,
        // the refs' verified manifests in the layout say it (a dry run has written nothing to
        // read them from).
        if !dry_run {
            ready = verified_complete(layout, ready, &mut report.waiting)?;
        }
        for (_, entry) in ready {
            let update = merge_entry(&mut index, &entry)?;
            changed |= update.change != RefChange::Unchanged;
            report.committed.push(update);
        }
    }
    report.missing_assumed.sort();
    report.missing_assumed.dedup();
    if changed && !dry_run {
        lock.commit_index(&index)?;
    }
    Ok(report)
}

/// The refs of `ready` whose every required blob, as the layout's own verified documents name
/// them ([`crate::engine::plan`]), is present; the others are moved to `waiting` with what they
/// lack (no part carries it: the bundle left it out). One plan for all of them, so refs that
/// share an index read it once; a ref is planned alone only to find which ref a missing
/// document belongs to.
fn verified_complete(
    layout: &Layout,
    ready: Vec<(String, Descriptor)>,
    waiting: &mut Vec<Waiting>,
) -> Result<Vec<(String, Descriptor)>> {
    let root = |e: &Descriptor| {
        let mut d = e.clone();
        d.set_ref_name(None);
        d
    };
    let lacking = |p: &crate::engine::Plan, i: usize| -> Result<Vec<Digest>> {
        let mut missing = Vec::new();
        for b in p.closure(i) {
            if !b.optional && layout.blob_size(&b.digest)?.is_none() {
                missing.push(b.digest.clone());
            }
        }
        missing.sort();
        Ok(missing)
    };
    let roots: Vec<Descriptor> = ready.iter().map(|(_, e)| root(e)).collect();
    let all = match crate::engine::plan(layout, &roots) {
        Ok(p) => Some(p),
        Err(Error::MissingBlob { .. }) => None,
        Err(e) => return Err(e),
    };
    let mut out = Vec::with_capacity(ready.len());
    for (i, (label, entry)) in ready.into_iter().enumerate() {
        let missing = match &all {
            Some(p) => lacking(p, i)?,
            None => match crate::engine::plan(layout, &[root(&entry)]) {
                Ok(p) => lacking(&p, 0)?,
                Err(Error::MissingBlob { digest, .. }) => vec![digest],
                Err(e) => return Err(e),
            },
        };
        if missing.is_empty() {
            out.push((label, entry));
        } else {
            waiting.push(Waiting {
                name: label,
                missing,
                parts: BTreeSet::new(),
            });
        }
    }
    Ok(out)
}

/// The required blobs reachable from `root` in `graph` that are not `present`, each once,
/// sorted. `known` remembers presence across refs (many refs share most of their blobs).
fn missing_below(
    graph: &[GraphNode],
    root: u32,
    known: &mut HashMap<u32, bool>,
    present: &dyn Fn(&Digest) -> bool,
) -> Result<Vec<Digest>> {
    let bad = |i: u32| Error::Invalid {
        what: "bundle.json".into(),
        reason: format!("`graph` has no node {i}"),
    };
    let mut seen = vec![false; graph.len()];
    let mut missing = Vec::new();
    let mut stack = vec![root];
    while let Some(i) = stack.pop() {
        let node = graph.get(i as usize).ok_or_else(|| bad(i))?;
        if std::mem::replace(&mut seen[i as usize], true) {
            continue;
        }
        let here = *known.entry(i).or_insert_with(|| present(&node.digest));
        if !here && !node.optional {
            missing.push(i);
        }
        stack.extend(node.children.iter().rev());
    }
    let mut missing: Vec<Digest> = missing
        .into_iter()
        .map(|i| graph[i as usize].digest.clone())
        .collect();
    missing.sort();
    Ok(missing)
}

fn parse_chunk_name(rest: &str) -> Option<(&str, usize, bool)> {
    let (stem, is_digest) = match rest.strip_suffix(".digest") {
        Some(s) => (s, true),
        None => (rest, false),
    };
    let (enc, n) = stem.rsplit_once('.')?;
    Some((enc, n.parse().ok()?, is_digest))
}

/// What a dry run verified without writing it: whole blobs, and chunks by blob and number.
struct Seen<'a> {
    blobs: &'a mut BTreeSet<Digest>,
    chunks: &'a mut BTreeSet<(Digest, usize)>,
}

fn load_part(
    lock: &crate::WriteLock<'_>,
    path: &Path,
    dry_run: bool,
    pr: &mut PartReport,
    seen: &mut Seen<'_>,
) -> Result<(Vec<u8>, BundleManifest)> {
    let virtual_present = &mut *seen.blobs;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    // Large blobs of a part that is a regular file are loaded by other threads from their
    // place in the file, while this one goes on to the next header.
    let seekable = meta.is_file();
    let file_len = meta.len();
    let data = file.try_clone().map_err(|e| Error::io(path, e))?;
    // Read once, front to back, within the archive module's limits: extension headers are
    // bounded before their data is read, names checked, members counted.
    let mut stream = Stream::new(
        BufReader::with_capacity(64 << 10, file),
        path,
        &Limits::default(),
    );
    let mut entries = if seekable {
        stream.members_with_seek()?
    } else {
        stream.members()?
    };
    let what = path.display().to_string();
    let not_bundle = |reason: &str| Error::Invalid {
        what: what.clone(),
        reason: reason.to_string(),
    };
    let Some(mut first) = entries.next_member()? else {
        return Err(not_bundle("empty archive"));
    };
    if first.name != "bundle.json" || first.kind != MemberKind::File {
        return Err(not_bundle(
            "not a bundle part: the first entry is not `bundle.json`",
        ));
    }
    if first.size > META_LIMIT {
        return Err(Error::TooLarge {
            what: format!("{what}: bundle.json"),
            size: first.size,
            limit: META_LIMIT,
        });
    }
    let mut mbytes = Vec::new();
    first
        .read_to_end(&mut mbytes)
        .map_err(|e| Error::io(path, e))?;
    let manifest: BundleManifest = crate::json::from_slice(&mbytes).map_err(|e| Error::Json {
        what: format!("{what}: bundle.json"),
        source: e,
    })?;
    if !(1..=BUNDLE_VERSION).contains(&manifest.version) {
        return Err(not_bundle(&format!(
            "bundle version {} is not supported",
            manifest.version
        )));
    }
    let blobs: HashMap<&Digest, &BundleBlob> =
        manifest.blobs.iter().map(|b| (&b.digest, b)).collect();
    // The chunk just read, waiting for its `.digest` entry.
    let mut pending: Option<Pending<'_>> = None;
    // Blobs this part cuts differently from the chunks already loaded (said once).
    let mut recut_blobs: HashSet<Digest> = HashSet::new();
    // Blobs left to other threads, in member order.
    let mut jobs: Vec<LoadJob> = Vec::new();
    let mut dispatched: HashSet<Digest> = HashSet::new();
    let mut scan = || -> Result<()> {
        while let Some(mut entry) = entries.next_member()? {
            let name = entry.name.clone();
            if entry.kind == MemberKind::Dir || matches!(name.as_str(), "oci-layout" | "index.json")
            {
                continue;
            }
            if entry.kind != MemberKind::File
                && (name.starts_with("blobs/") || name.starts_with("chunks/"))
            {
                return Err(not_bundle(&format!("`{name}` is not a regular file")));
            }
            if let Some(rest) = name.strip_prefix("blobs/") {
                let Some((alg, enc)) = rest.split_once('/') else {
                    continue;
                };
                let digest = Digest::parse(&format!("{alg}:{enc}"))
                    .map_err(|_| not_bundle(&format!("`{name}` is not a blob name")))?;
                let Some(b) = blobs.get(&digest) else {
                    return Err(not_bundle(&format!(
                        "`{name}` is not listed in bundle.json"
                    )));
                };
                if entry.size != b.size {
                    pr.errors.push(format!(
                        "blob `{digest}` is {} bytes in the part, bundle.json says {}",
                        entry.size, b.size
                    ));
                    continue;
                }
                if dispatched.contains(&digest) {
                    // The same blob twice: the first copy decides, as when loaded in turn.
                    let done = std::mem::take(&mut jobs);
                    dispatched.clear();
                    run_load_jobs(lock, &data, path, dry_run, done, pr, virtual_present)?;
                }
                if lock.reuse_blob(&digest, b.size)? {
                    pr.skipped += 1;
                    continue;
                }
                let offset = entry.data_offset();
                if seekable
                    && b.size >= LOAD_APART_FROM
                    && digest.algorithm().is_some()
                    && offset
                        .checked_add(b.size)
                        .is_some_and(|end| end <= file_len)
                {
                    dispatched.insert(digest.clone());
                    jobs.push(LoadJob {
                        digest,
                        size: b.size,
                        offset,
                        at: (pr.written.len(), pr.errors.len()),
                    });
                    continue;
                }
                let res = if dry_run {
                    verify_stream(&mut entry, &digest, b.size)
                } else {
                    let mut w = lock.blob_writer_for(
                        digest
                            .algorithm()
                            .ok_or_else(|| Error::Unverifiable(digest.clone()))?,
                    )?;
                    // A read error is the part's; a write error carries the file it names.
                    copy_large(&mut entry, &mut w).map_err(|e| unwrap_io(e, path))?;
                    w.finish_expect(&digest, Some(b.size)).map(|_| ())
                };
                match res {
                    Ok(()) => {
                        virtual_present.insert(digest.clone());
                        pr.written.push(digest);
                        crate::fault::point("bundle-mid-load");
                    }
                    Err(e) if e.is_write_failure() => return Err(e),
                    Err(e) => pr.errors.push(format!("rejected blob `{digest}`: {e}")),
                }
                continue;
            }
            if let Some(rest) = name.strip_prefix("chunks/") {
                let Some((alg, file)) = rest.split_once('/') else {
                    continue;
                };
                let Some((enc, n, is_digest)) = parse_chunk_name(file) else {
                    return Err(not_bundle(&format!("`{name}` is not a chunk name")));
                };
                let digest = Digest::parse(&format!("{alg}:{enc}"))
                    .map_err(|_| not_bundle(&format!("`{name}` is not a chunk name")))?;
                let Some(b) = blobs.get(&digest).filter(|b| n < b.chunks.len()) else {
                    return Err(not_bundle(&format!(
                        "`{name}` is not listed in bundle.json"
                    )));
                };
                if is_digest {
                    let mut text = String::new();
                    (&mut entry)
                        .take(256)
                        .read_to_string(&mut text)
                        .map_err(|e| Error::io(path, e))?;
                    let Some(p) = pending.take().filter(|p| p.digest == digest && p.n == n) else {
                        continue;
                    };
                    let claimed = text.trim();
                    match p.written {
                        // The store checks the digest of what it wrote before the chunk counts.
                        Some((mut partial, chunk)) => match partial.accept(chunk, claimed) {
                            Ok(()) => {
                                if partial.done_chunks().len() >= b.chunks.len() {
                                    partial.finish()?;
                                    pr.written.push(digest.clone());
                                }
                            }
                            Err(e @ Error::ChunkMismatch { .. }) => {
                                pr.errors.push(e.to_string());
                                continue;
                            }
                            Err(e) => return Err(e),
                        },
                        None => {
                            if claimed != p.found.as_str() {
                                let e = Error::ChunkMismatch {
                                    digest: digest.clone(),
                                    chunk: n,
                                    found: Box::new(p.found),
                                    claimed: claimed.into(),
                                };
                                pr.errors.push(e.to_string());
                                continue;
                            }
                            seen.chunks.insert((digest.clone(), n));
                            if lock.partial_chunks_done(&digest)?.len() + 1 >= b.chunks.len() {
                                virtual_present.insert(digest.clone());
                            }
                        }
                    }
                    pr.chunks += 1;
                    continue;
                }
                let c = b.chunks[n];
                if entry.size != c.size {
                    pr.errors.push(format!(
                        "chunk {n} of blob `{digest}` is {} bytes, bundle.json says {}",
                        entry.size, c.size
                    ));
                    continue;
                }
                if lock.reuse_blob(&digest, b.size)? {
                    continue;
                }
                if recut_blobs.contains(&digest) {
                    continue;
                }
                if dry_run {
                    let (done, extents) = lock.partial_chunks(&digest)?;
                    if let Some(e) = recut(&extents, b, n) {
                        pr.errors.push(e);
                        recut_blobs.insert(digest);
                        continue;
                    }
                    if done.contains(&n) {
                        continue;
                    }
                    let mut h = crate::Algorithm::Sha256.hasher();
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let k = entry.read(&mut buf).map_err(|e| Error::io(path, e))?;
                        if k == 0 {
                            break;
                        }
                        h.update(&buf[..k]);
                    }
                    pending = Some(Pending {
                        digest,
                        n,
                        found: h.finish(),
                        written: None,
                    });
                } else {
                    // The store's partial: never written through a link or into a FIFO.
                    let mut partial = lock.partial(&digest, b.size)?;
                    // Never written over chunks of another cut of the blob: this part is wrong,
                    // not the ones already loaded.
                    if let Some(e) = recut(partial.extents(), b, n) {
                        pr.errors.push(e);
                        recut_blobs.insert(digest);
                        continue;
                    }
                    if partial.done_chunks().contains(&n) {
                        continue;
                    }
                    let chunk = partial.write_chunk(n, c.offset, c.size, &mut entry, path)?;
                    pending = Some(Pending {
                        digest,
                        n,
                        found: chunk.digest().clone(),
                        written: Some((partial, chunk)),
                    });
                }
            }
        }
        Ok(())
    };
    let scanned = scan();
    // The blobs left to other threads load whatever came after them (they come first).
    run_load_jobs(lock, &data, path, dry_run, jobs, pr, virtual_present)?;
    scanned?;
    Ok((mbytes, manifest))
}

/// Blobs from this size on are loaded by other threads (smaller ones are read in turn: each
/// blob loaded apart costs a seek and a refill of the part's read buffer).
const LOAD_APART_FROM: u64 = 1 << 20;

/// A blob of a part loaded apart: its place in the part, and where its outcome goes in the
/// part's report (the lengths of `written` and `errors` when its member was met).
struct LoadJob {
    digest: Digest,
    size: u64,
    offset: u64,
    at: (usize, usize),
}

/// Load `jobs` (blobs of the part `data`, at `path`) on every core, largest first, each read
/// from its place, hashed and written as [`load_part`] does in turn; their outcomes go into
/// `pr` where their members were met. The first failure to write (in member order) stops the
/// load, as it would have there.
fn run_load_jobs(
    lock: &crate::WriteLock<'_>,
    data: &File,
    path: &Path,
    dry_run: bool,
    jobs: Vec<LoadJob>,
    pr: &mut PartReport,
    virtual_present: &mut BTreeSet<Digest>,
) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&j| std::cmp::Reverse(jobs[j].size));
    let workers = worker_count(0);
    let done = crate::fsck::run_parallel_on(&order, workers, |&j| {
        Some((j, load_blob(lock, data, path, dry_run, &jobs[j])))
    });
    let mut results: Vec<Option<Result<Result<()>>>> = (0..jobs.len()).map(|_| None).collect();
    for (j, r) in done.into_iter().flatten() {
        results[j] = Some(r);
    }
    let mut outcomes = Vec::with_capacity(jobs.len());
    for (job, r) in jobs.into_iter().zip(results) {
        match r {
            Some(Ok(Err(e))) if e.is_write_failure() => return Err(e),
            Some(Err(e)) => return Err(e),
            Some(Ok(res)) => outcomes.push((job, res)),
            None => {}
        }
    }
    // Last first, so that the places noted stay right.
    for (job, res) in outcomes.into_iter().rev() {
        match res {
            Ok(()) => {
                virtual_present.insert(job.digest.clone());
                pr.written.insert(job.at.0, job.digest);
            }
            Err(e) => pr
                .errors
                .insert(job.at.1, format!("rejected blob `{}`: {e}", job.digest)),
        }
    }
    Ok(())
}

/// One blob of a part, read from its place: `Err` stops the part (it cannot be read, or the
/// layout written), `Ok(Err)` rejects the blob.
fn load_blob(
    lock: &crate::WriteLock<'_>,
    data: &File,
    path: &Path,
    dry_run: bool,
    job: &LoadJob,
) -> Result<Result<()>> {
    let mut r = crate::archive::Section::new(data, job.offset, job.size);
    let res = if dry_run {
        verify_stream(&mut r, &job.digest, job.size)
    } else {
        let alg = job
            .digest
            .algorithm()
            .ok_or_else(|| Error::Unverifiable(job.digest.clone()))?;
        let mut w = lock.blob_writer_for(alg)?;
        // A read error is the part's; a write error carries the file it names.
        move_bytes(&mut r, &mut w, job.size).map_err(|e| unwrap_io(e, path))?;
        w.finish_expect(&job.digest, Some(job.size)).map(|_| ())
    };
    if res.is_ok() {
        crate::fault::point("bundle-mid-load");
    }
    Ok(res)
}

/// Why chunk `n` of blob `b` is refused when the chunks already loaded (`extents`: number ->
/// (offset, length)) are not chunks of `b` as this part's `bundle.json` cuts it: the part
/// belongs to a bundle of the same images written with another part size. `None`: they agree.
fn recut(extents: &BTreeMap<usize, (u64, u64)>, b: &BundleBlob, n: usize) -> Option<String> {
    let (m, &(offset, len)) = extents.iter().find(|(m, &(offset, len))| {
        b.chunks
            .get(**m)
            .is_none_or(|c| (c.offset, c.size) != (offset, len))
    })?;
    let here = match b.chunks.get(*m) {
        Some(c) => format!(
            "{} bytes at offset {} in this part's bundle",
            c.size, c.offset
        ),
        None => format!("not in this part's bundle, which has {}", b.chunks.len()),
    };
    Some(format!(
        "rejected chunk {n} of blob `{}`: this part cuts the blob differently from the chunks \
         already loaded (chunk {m}: {len} bytes at offset {offset} loaded, {here}); it belongs \
         to a bundle of the same images written with another part size",
        b.digest
    ))
}

/// A chunk read from a part, waiting for the `.digest` entry that follows it.
struct Pending<'l> {
    digest: Digest,
    n: usize,
    /// The sha256 of the chunk's bytes.
    found: Digest,
    /// Where it was written (not in a dry run).
    written: Option<(Partial<'l>, WrittenChunk)>,
}

fn verify_stream(r: &mut dyn Read, digest: &Digest, size: u64) -> Result<()> {
    let alg = digest
        .algorithm()
        .ok_or_else(|| Error::Unverifiable(digest.clone()))?;
    let mut v = crate::VerifyingReader::new(
        r,
        alg.hasher(),
        digest.clone(),
        Some(size),
        PathBuf::from(digest.to_string()),
    );
    copy_large(&mut v, &mut io::sink()).map_err(|e| unwrap_io(e, Path::new(digest.as_str())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::sha256(&[n])
    }

    #[test]
    fn plan_first_fit_and_chunks_in_order() {
        let blobs = vec![(d(1), 1000), (d(2), 5000), (d(3), 100)];
        let p = plan(&blobs, Some(3072)).expect("plan");
        // 1000 -> part 1 (cost 1536), 5000 -> chunks over new parts, 100 -> part 1 (cost 1024)
        assert_eq!(p.blobs[0].part, Some(1));
        assert_eq!(p.blobs[2].part, Some(1));
        let chunks = &p.blobs[1].chunks;
        assert!(chunks.len() >= 3, "{chunks:?}");
        assert!(chunks
            .windows(2)
            .all(|w| w[0].part < w[1].part && w[0].offset + w[0].size == w[1].offset));
        assert_eq!(chunks.iter().map(|c| c.size).sum::<u64>(), 5000);
        assert_eq!(p.parts, chunks.last().map(|c| c.part).unwrap_or(0));
        assert!(plan(&blobs, Some(1000)).is_err());
    }

    fn image(lock: &crate::WriteLock<'_>, layer: &[u8]) -> Descriptor {
        use crate::MediaType;
        let (cd, cs) = lock.write_blob(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#).expect("config");
        let (ld, ls) = lock.write_blob(layer).expect("layer");
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{ls}}}]}}"#
        );
        let (md, ms) = lock.write_blob(m.as_bytes()).expect("manifest");
        Descriptor::new(MediaType::OciManifest, md, ms)
    }

    #[test]
    fn parts_load_in_reverse_and_resume() {
        let tmp = tempfile::tempdir().expect("tmp");
        let opts = crate::Options {
            durable: false,
            ..crate::Options::default()
        };
        let (src, _) = Layout::init(tmp.path().join("src"), opts.clone()).expect("init");
        let big: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
        {
            let lock = src.lock().expect("lock");
            let mut idx = Index::empty();
            let a = image(&lock, &big);
            crate::refs::tag(&mut idx, &a, "a").expect("tag");
            let b = image(&lock, b"small layer");
            crate::refs::tag(&mut idx, &b, "b").expect("tag");
            lock.commit_index(&idx).expect("commit");
        }
        let sel =
            crate::select::select(&src, &crate::select::SelectOptions::default()).expect("select");
        let out = tmp.path().join("bundle");
        let rep = write_bundle(
            &src,
            &sel,
            &[],
            &BundleOptions {
                part_size: Some(16 * 1024),
                mtime: 0,
                threads: 0,
            },
            &out,
        )
        .expect("bundle");
        assert!(rep.parts.len() >= 3, "{:?}", rep.parts);
        assert!(rep.parts.iter().all(|(_, len)| *len <= 16 * 1024));
        // Same input, same bytes.
        let out2 = tmp.path().join("again");
        let rep2 = write_bundle(
            &src,
            &sel,
            &[],
            &BundleOptions {
                part_size: Some(16 * 1024),
                mtime: 0,
                threads: 0,
            },
            &out2,
        )
        .expect("bundle");
        for ((p1, _), (p2, _)) in rep.parts.iter().zip(&rep2.parts) {
            assert_eq!(fs::read(p1).expect("read"), fs::read(p2).expect("read"));
        }
        let (dst, _) = Layout::init(tmp.path().join("dst"), opts).expect("init");
        let paths: Vec<PathBuf> = rep.parts.iter().map(|(p, _)| p.clone()).collect();
        // One part at a time, last first: refs appear only once complete.
        for (k, p) in paths.iter().rev().enumerate() {
            let r = load(&dst, std::slice::from_ref(p), false).expect("load");
            assert!(r.ok(), "{r:?}");
            if k + 1 < paths.len() {
                assert!(!r.waiting.is_empty());
            }
        }
        let idx = dst.read_index().expect("index").value;
        let names: Vec<_> = idx
            .manifests
            .iter()
            .map(|m| m.ref_name().unwrap_or(""))
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let report = crate::fsck::fsck(&dst, &crate::fsck::FsckOptions::default()).expect("fsck");
        assert!(report.is_clean(), "{:?}", report.findings);
        // Loading again changes nothing.
        let r = load(&dst, &paths, false).expect("reload");
        assert!(r.parts.iter().all(|p| p.written.is_empty()));
    }

    /// `n` bytes of noise, different for each `seed`.
    fn noise(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect()
    }

    /// A layout at `dir` with one image `img` whose layers are noise of these sizes; returns
    /// the layout and the layers' digests.
    fn noisy_layout(dir: &Path, sizes: &[usize]) -> (Layout, Vec<Digest>) {
        let opts = crate::Options {
            durable: false,
            ..crate::Options::default()
        };
        let (layout, _) = Layout::init(dir, opts).expect("init");
        let mut digests = Vec::new();
        {
            let lock = layout.lock().expect("lock");
            let (cd, cs) = lock
                .write_blob(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#)
                .expect("config");
            let mut layers = Vec::new();
            for (i, n) in sizes.iter().enumerate() {
                let (d, s) = lock.write_blob(&noise(*n, i as u32 + 7)).expect("layer");
                layers.push(format!(
                    r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{s}}}"#
                ));
                digests.push(d);
            }
            let m = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"layers":[{}]}}"#,
                layers.join(",")
            );
            let (md, ms) = lock.write_blob(m.as_bytes()).expect("manifest");
            let mut idx = Index::empty();
            let desc = Descriptor::new(crate::MediaType::OciManifest, md, ms);
            crate::refs::tag(&mut idx, &desc, "img").expect("tag");
            lock.commit_index(&idx).expect("commit");
        }
        (layout, digests)
    }

    /// Layers of 8.5 MiB (copied on two threads), 2 MiB, 1 MiB and a few bytes.
    const SIZES: [usize; 4] = [(8 << 20) + (1 << 19) + 3, (2 << 20) + 1, (1 << 20) + 7, 100];

    fn bundle_with(
        layout: &Layout,
        out: &Path,
        part_size: Option<u64>,
        threads: usize,
    ) -> Result<BundleReport> {
        let sel = crate::select::select(layout, &crate::select::SelectOptions::default())
            .expect("select");
        let opts = BundleOptions {
            part_size,
            mtime: 0,
            threads,
        };
        write_bundle(layout, &sel, &[], &opts, out)
    }

    fn contents(rep: &BundleReport) -> Vec<Vec<u8>> {
        rep.parts
            .iter()
            .map(|(p, _)| fs::read(p).expect("read part"))
            .collect()
    }

    #[test]
    fn bundle_bytes_do_not_depend_on_the_threads() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (src, _) = noisy_layout(&tmp.path().join("src"), &SIZES);
        // One part: the same bytes with 1, 2 and 7 threads, and as the stream writes them.
        let one = contents(&bundle_with(&src, &tmp.path().join("t1"), None, 1).expect("bundle"));
        for threads in [2, 7] {
            let out = tmp.path().join(format!("t{threads}"));
            let rep = bundle_with(&src, &out, None, threads).expect("bundle");
            assert!(contents(&rep) == one, "{threads} threads wrote other bytes");
        }
        let sel =
            crate::select::select(&src, &crate::select::SelectOptions::default()).expect("select");
        let mut streamed = Vec::new();
        write_bundle_to(
            &src,
            &sel,
            &[],
            &BundleOptions::default(),
            &mut streamed,
            Path::new("-"),
        )
        .expect("stream");
        assert!(vec![streamed] == one, "the stream differs from the file");
        // Parts of 3 MiB: the 8.5 MiB layer in chunks over three parts.
        let size = Some(3 << 20);
        let rep1 = bundle_with(&src, &tmp.path().join("p1"), size, 1).expect("bundle");
        assert!(rep1.manifest.blobs.iter().any(|b| b.chunks.len() == 3));
        let split = contents(&rep1);
        let rep4 = bundle_with(&src, &tmp.path().join("p4"), size, 4).expect("bundle");
        assert!(contents(&rep4) == split, "4 threads cut other parts");
        // A part that is not a regular file makes every part go front to back, in turn.
        let out = tmp.path().join("seq");
        std::os::unix::fs::symlink("/dev/null", part_path(&out, 2, true)).expect("symlink");
        let seq = bundle_with(&src, &out, size, 4).expect("bundle");
        let seq = contents(&seq);
        assert_eq!(seq.len(), split.len());
        for (i, (a, b)) in seq.iter().zip(&split).enumerate() {
            assert!(
                i == 1 || a == b,
                "part {} differs when written in turn",
                i + 1
            );
        }
    }

    /// Flip one byte in the middle of blob `d` of `layout`, keeping its size.
    fn corrupt(layout: &Layout, d: &Digest) {
        let path = layout.blob_path(d);
        let mut bytes = fs::read(&path).expect("read blob");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        let mut perm = fs::metadata(&path).expect("stat").permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        fs::set_permissions(&path, perm).expect("chmod");
        fs::write(&path, &bytes).expect("write blob");
    }

    #[test]
    fn a_corrupt_blob_fails_the_bundle_whatever_the_threads() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (src, layers) = noisy_layout(&tmp.path().join("src"), &SIZES);
        corrupt(&src, &layers[0]);
        corrupt(&src, &layers[1]);
        // Of two corrupt blobs, the one first in the bundle (digest order) is named.
        let first = layers[0].clone().min(layers[1].clone());
        for (threads, size) in [(1, None), (4, None), (1, Some(3 << 20)), (4, Some(3 << 20))] {
            let dir = tmp.path().join(format!("out-{threads}-{}", size.is_some()));
            fs::create_dir(&dir).expect("mkdir");
            let err = bundle_with(&src, &dir.join("b"), size, threads).expect_err("corrupt");
            match &err {
                Error::DigestMismatch { expected, .. } => assert_eq!(expected, &first, "{err}"),
                e => panic!("{threads} threads, part size {size:?}: {e}"),
            }
            assert!(err.to_string().contains(first.as_str()), "{err}");
            // Nothing written: no part, no temp file.
            assert_eq!(fs::read_dir(&dir).expect("ls").count(), 0);
        }
        // The chunked blob alone: its digest is checked over the chunks.
        let (src, layers) = noisy_layout(&tmp.path().join("src2"), &SIZES);
        corrupt(&src, &layers[0]);
        let dir = tmp.path().join("chunked");
        fs::create_dir(&dir).expect("mkdir");
        let err = bundle_with(&src, &dir.join("b"), Some(3 << 20), 4).expect_err("corrupt");
        assert!(
            matches!(&err, Error::DigestMismatch { expected, .. } if expected == &layers[0]),
            "{err}"
        );
        assert_eq!(fs::read_dir(&dir).expect("ls").count(), 0);
    }

    #[test]
    fn large_blobs_load_apart_and_are_reported_in_member_order() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (src, layers) = noisy_layout(&tmp.path().join("src"), &SIZES);
        let out = tmp.path().join("b");
        let rep = bundle_with(&src, &out, None, 0).expect("bundle");
        let part = rep.parts[0].0.clone();
        let opts = crate::Options {
            durable: false,
            ..crate::Options::default()
        };
        // Intact: every blob written, in the part's (digest) order.
        let (dst, _) = Layout::init(tmp.path().join("dst"), opts.clone()).expect("init");
        let r = load(&dst, std::slice::from_ref(&part), false).expect("load");
        assert!(r.ok(), "{r:?}");
        let mut all: Vec<Digest> = rep
            .manifest
            .blobs
            .iter()
            .map(|b| b.digest.clone())
            .collect();
        all.sort();
        assert_eq!(r.parts[0].written, all);
        assert_eq!(r.committed.len(), 1);
        let report = crate::fsck::fsck(&dst, &crate::fsck::FsckOptions::default()).expect("fsck");
        assert!(report.is_clean(), "{:?}", report.findings);
        // Two large blobs and the small one damaged in the part: each rejected, named, in
        // member order; the others written.
        let mut bytes = fs::read(&part).expect("read");
        let mut damaged = vec![layers[0].clone(), layers[1].clone(), layers[3].clone()];
        damaged.sort();
        {
            let mut ar = tar::Archive::new(fs::File::open(&part).expect("open"));
            for e in ar.entries().expect("entries") {
                let e = e.expect("entry");
                let name = e.path().expect("path").to_string_lossy().into_owned();
                if damaged.iter().any(|d| name.ends_with(d.encoded())) {
                    let at = e.raw_file_position() + e.size() / 2;
                    bytes[at as usize] ^= 0x55;
                }
            }
        }
        let bad = tmp.path().join("bad");
        fs::write(&bad, &bytes).expect("write");
        for dry_run in [true, false] {
            let (dst, _) = Layout::init(tmp.path().join(format!("dst-{dry_run}")), opts.clone())
                .expect("init");
            let r = load(&dst, std::slice::from_ref(&bad), dry_run).expect("load");
            let errors = &r.parts[0].errors;
            assert_eq!(errors.len(), 3, "{errors:?}");
            for (e, d) in errors.iter().zip(&damaged) {
                assert!(
                    e.starts_with(&format!("rejected blob `{d}`: ")) && e.contains("sha256:"),
                    "{e}"
                );
            }
            let intact: Vec<Digest> = all
                .iter()
                .filter(|d| !damaged.contains(d))
                .cloned()
                .collect();
            assert_eq!(r.parts[0].written, intact);
            assert!(r.committed.is_empty());
        }
    }
}
