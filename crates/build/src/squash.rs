//! `squash` and `unpack --squash`: an image's layers flattened into one layer tar, the rootfs
//! `unpack` would make, without writing that rootfs to disk.
//!
//! Two passes over the layers, base first, never holding file data in memory:
//!
//! 1. Headers only (data is decompressed and skipped): the layers are applied to a model of the
//!    tree, a sorted map from each path (symlinks in its parents resolved inside the root, as
//!    `unpack` resolves them) to a directory or an object. Objects are inodes, so hard links
//!    are names sharing one, as on disk. Whiteouts, opaque whiteouts (never hiding what the
//!    same layer adds), hard links whose target comes later in the layer, a file replacing a
//!    directory (and its contents) follow `unpack`'s rules. Each layer's content is checked
//!    against the config's diff_id as it is read.
//! 2. The surviving entries in sorted order are laid out in the output: each header's bytes
//!    (as [`TarWriter::entry`] writes them) at its offset, which the sizes give; then the layers
//!    are read again and the data of each surviving regular file is written at its place.
//!    Layers without surviving data are not read again.
//!
//! Memory: the model holds one entry per path alive in the tree (its name, mode, owner, times,
//! xattrs, about 150 bytes plus name and xattrs) and one inode per file or link object ever
//! made, plus one layer's set of touched paths; file data passes through a 1 MiB buffer. Each
//! layer is read within the archive [`Limits`] (members, names), so the model is bounded by
//! those limits times the number of layers, and in practice by the size of the image's trees,
//! never by its data.
//!
//! Output: entries sorted by name (bytes), a parent before its children; the first name of a
//! hard-link group in that order holds the data and the others link to it; modes, owners,
//! times (with nanoseconds) and xattrs as the layers give them; directories the layers imply
//! without an entry are 0755, owned by 0:0 and dated `SOURCE_DATE_EPOCH` (else 0). No
//! whiteouts remain. The same image always gives the same bytes, and squashing a squashed
//! image gives it back unchanged.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ocikit_layout::archive::{
    block_padding, EntryHeader, EntryKind, Limits, MemberKind, MemberMeta, Stream,
};
use ocikit_layout::engine::{BuiltLayer, ImageBuilder, LayerInput, ManifestFormat};
use ocikit_layout::layer::CompressOptions;
use ocikit_layout::output::write_atomically;
use ocikit_layout::{Compression, Descriptor, Digest, Layout, PlatformSpec, WriteLock};
use serde_json::{Map, Value};

use crate::append::{rfc3339, Spooled};
use crate::edit::{self, ImageEditor, Report};
use crate::pack::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX};
use crate::unpack::{check_diff_id, choose, diff_ids_of, open_layer};
use crate::{Error, Result};

/// Symlinks followed while resolving one path, at most (as the kernel's `ELOOP`).
const MAX_HOPS: usize = 40;

/// What `unpack --squash` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SquashOptions {
    /// The platform to squash from an index (needed when it holds several images).
    pub platform: Option<PlatformSpec>,
    /// `SOURCE_DATE_EPOCH`: the time of directories the layers imply without an entry.
    pub source_date_epoch: Option<u64>,
}

/// What a squashed tar holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Squashed {
    /// Layers read.
    pub layers: usize,
    /// Members written.
    pub entries: u64,
    /// The tar's size in bytes.
    pub size: u64,
}

/// What `unpack --squash` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SquashReport {
    /// The manifest squashed.
    pub manifest: Option<Digest>,
    /// Its platform, `os/arch[/variant]`.
    pub platform: Option<String>,
    /// The tar.
    pub squashed: Squashed,
}

/// Write the flattened rootfs of the image `name` names (the platform chosen, when it is an
/// index) as one tar to `out`, whole or not at all.
pub fn squash_to_file(
    layout: &Layout,
    name: &str,
    out: &Path,
    opts: &SquashOptions,
) -> Result<SquashReport> {
    let image = choose(layout, name, opts.platform.as_ref())?;
    let tmp = std::env::temp_dir();
    let mut file = tempfile::tempfile().map_err(|e| Error::io(&tmp, e))?;
    let squashed = squash_layers(
        layout,
        &image.layers,
        &image.diff_ids,
        opts.source_date_epoch,
        &file,
    )?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(&tmp, e))?;
    write_atomically(out, layout.options().durable, |w| {
        io::copy(&mut file, w).map_err(|e| Error::io(out, e))
    })?;
    Ok(SquashReport {
        manifest: Some(image.manifest),
        platform: image.platform,
        squashed,
    })
}

/// What `squash` does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SquashImageOptions {
    /// `SOURCE_DATE_EPOCH`: the history entry's `created`, and the time of implied directories.
    pub source_date_epoch: Option<u64>,
    /// The compression of the new layer (default: as the image's top layer; gzip for none).
    pub compress: Option<CompressOptions>,
    /// The history entry's `created_by`.
    pub created_by: String,
    /// Only the images of these platforms (default: all).
    pub platforms: Vec<PlatformSpec>,
    /// Name the result so, leaving the ref as it was (default: the ref moves).
    pub to: Option<String>,
}

/// Replace the layers of every image `name` names (or those of the platforms chosen) by one,
/// their flattened rootfs: the config gets that layer's diff_id and one history entry, the
/// manifest (of the same family) the one layer; the indexes above are rewritten.
pub fn squash(layout: &Layout, name: &str, opts: &SquashImageOptions) -> Result<Report> {
    let editor = Squasher {
        opts: opts.clone(),
        memo: HashMap::new(),
    };
    edit::run(layout, name, opts.to.as_deref(), &opts.platforms, editor)
}

struct Squasher {
    opts: SquashImageOptions,
    /// Layers made, by (the layers squashed, Docker family, compression).
    memo: HashMap<(Vec<Digest>, bool, Compression), BuiltLayer>,
}

impl ImageEditor for Squasher {
    fn edit(
        &mut self,
        lock: &WriteLock<'_>,
        manifest_desc: &Descriptor,
        docker: bool,
        manifest: &mut Map<String, Value>,
        config: &mut Map<String, Value>,
    ) -> Result<()> {
        let layers: Vec<Descriptor> = match manifest.get("layers") {
            Some(v) => {
                serde_json::from_value(v.clone()).map_err(|source| ocikit_layout::Error::Json {
                    what: format!("the layers of manifest {}", manifest_desc.digest),
                    source,
                })?
            }
            None => Vec::new(),
        };
        let asked = self.opts.compress.map(|c| c.compression);
        if docker && asked == Some(Compression::Zstd) {
            return Err(Error::ZstdForDocker {
                digest: manifest_desc.digest.clone(),
            });
        }
        let top = layers.last().and_then(|l| l.media_type.compression());
        let compression = match asked.or(top).unwrap_or(Compression::Gzip) {
            Compression::Zstd if docker => Compression::Gzip,
            c => c,
        };
        let key = (
            layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(),
            docker,
            compression,
        );
        let built = match self.memo.get(&key) {
            Some(b) => b.clone(),
            None => {
                let diff_ids = diff_ids_of(&Value::Object(config.clone()));
                let b = self.build(lock, manifest_desc, docker, compression, &layers, &diff_ids)?;
                self.memo.insert(key, b.clone());
                b
            }
        };
        let descriptor = serde_json::to_value(&built.descriptor).map_err(|source| {
            ocikit_layout::Error::Json {
                what: "a layer descriptor".into(),
                source,
            }
        })?;
        manifest.insert("layers".into(), Value::Array(vec![descriptor]));
        let rootfs = serde_json::json!({
            "type": "layers",
            "diff_ids": [built.info.diff_id.to_string()],
        });
        config.insert("rootfs".into(), rootfs);
        let mut entry = Map::new();
        if let Some(e) = self.opts.source_date_epoch {
            entry.insert("created".into(), Value::String(rfc3339(e)));
        }
        entry.insert(
            "created_by".into(),
            Value::String(self.opts.created_by.clone()),
        );
        config.insert("history".into(), Value::Array(vec![Value::Object(entry)]));
        Ok(())
    }
}

impl Squasher {
    fn build(
        &self,
        lock: &WriteLock<'_>,
        manifest_desc: &Descriptor,
        docker: bool,
        compression: Compression,
        layers: &[Descriptor],
        diff_ids: &[Option<Digest>],
    ) -> Result<BuiltLayer> {
        let tmp = std::env::temp_dir();
        let file = tempfile::tempfile().map_err(|e| Error::io(&tmp, e))?;
        squash_layers(
            lock.layout(),
            layers,
            diff_ids,
            self.opts.source_date_epoch,
            &file,
        )?;
        let name = format!("the squashed layers of {}", manifest_desc.digest);
        let spool = Spooled {
            name: name.clone(),
            packed: true,
            file,
        };
        let format = if docker {
            ManifestFormat::Docker
        } else {
            ManifestFormat::Oci
        };
        let mut builder =
            ImageBuilder::new(lock)
                .format(format)
                .threads(1)
                .compress(CompressOptions {
                    compression,
                    level: self.opts.compress.and_then(|o| o.level),
                });
        let input = [LayerInput::new(name.clone(), &spool)];
        builder
            .write_layers(&input, None)?
            .pop()
            .ok_or_else(|| Error::Input {
                path: PathBuf::from(&name),
                reason: "no layer was stored".into(),
            })
    }
}

/// A directory in the model, or an object (an index into the inodes).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// A directory: its entry's metadata, or `None` for one made because a path needed it.
    Dir(Option<MemberMeta>),
    /// A file, symlink, device or FIFO.
    Obj(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ObjKind {
    File,
    Symlink(String),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

#[derive(Debug, Clone)]
struct Inode {
    kind: ObjKind,
    meta: MemberMeta,
    size: u64,
    /// Where its data is: (layer, member ordinal).
    src: (usize, u64),
}

/// The tree the layers make, by path (symlinks in parents resolved).
#[derive(Debug, Default)]
struct Model {
    tree: BTreeMap<String, Node>,
    inodes: Vec<Inode>,
}

fn join(parent: &str, leaf: &str) -> String {
    if parent.is_empty() {
        leaf.to_string()
    } else {
        format!("{parent}/{leaf}")
    }
}

fn split(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((p, l)) => (p, l),
        None => ("", path),
    }
}

/// Mark `path` and its parents as touched by the current layer.
fn touch(touched: &mut HashSet<String>, path: &str) {
    let mut p = path;
    loop {
        if !touched.insert(p.to_string()) {
            return;
        }
        match p.rsplit_once('/') {
            Some((parent, _)) => p = parent,
            None => return,
        }
    }
}

impl Model {
    /// The directory `path` names, resolved inside the root as `unpack` resolves it (symlinks
    /// followed, an absolute target from the root, `..` never above it). Missing directories
    /// are made when `create` (also where a symlink points to one not there yet); without
    /// `create`, `None` when something is missing.
    fn resolve_dir(&mut self, path: &str, create: bool) -> Result<Option<String>, String> {
        let mut queue: VecDeque<String> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        let mut cur = String::new();
        let mut hops = 0;
        while let Some(c) = queue.pop_front() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    cur = split(&cur).0.to_string();
                    continue;
                }
                _ => {}
            }
            let next = join(&cur, &c);
            match self.tree.get(&next) {
                Some(Node::Dir(_)) => cur = next,
                Some(Node::Obj(i)) => match &self.inodes[*i].kind {
                    ObjKind::Symlink(target) => {
                        hops += 1;
                        if hops > MAX_HOPS {
                            return Err(format!("`{next}`: too many levels of symbolic links"));
                        }
                        if target.starts_with('/') {
                            cur.clear();
                        }
                        for part in target.split('/').filter(|p| !p.is_empty()).rev() {
                            queue.push_front(part.to_string());
                        }
                    }
                    _ => return Err(format!("`{next}` is not a directory")),
                },
                None if create => {
                    self.tree.insert(next.clone(), Node::Dir(None));
                    cur = next;
                }
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    /// Remove `path` and everything under it.
    fn remove(&mut self, path: &str) {
        if self.tree.remove(path).is_none() {
            return;
        }
        let prefix = format!("{path}/");
        let under: Vec<String> = self
            .tree
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in under {
            self.tree.remove(&k);
        }
    }

    /// An opaque whiteout in directory `dir`: everything under it not touched by this layer.
    fn opaque(&mut self, dir: &str, touched: &HashSet<String>) {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let hidden: Vec<String> = self
            .tree
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !touched.contains(k.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        for k in hidden {
            self.tree.remove(&k);
        }
    }

    /// A hard link `name` to `target`; false when the target is not there (yet).
    fn link(&mut self, name: &str, target: &str) -> Result<bool, String> {
        let (tparent, tleaf) = split(target);
        let Ok(Some(tdir)) = self.resolve_dir(tparent, false) else {
            return Ok(false);
        };
        let inode = match self.tree.get(&join(&tdir, tleaf)) {
            None => return Ok(false),
            Some(Node::Dir(_)) => return Err(format!("hard link to the directory `{target}`")),
            Some(Node::Obj(i)) => *i,
        };
        let (parent, leaf) = split(name);
        let Some(dir) = self.resolve_dir(parent, true)? else {
            return Ok(false);
        };
        let path = join(&dir, leaf);
        if self.tree.get(&path) != Some(&Node::Obj(inode)) {
            self.remove(&path);
            self.tree.insert(path, Node::Obj(inode));
        }
        Ok(true)
    }

    /// Apply one layer's headers (pass 1).
    fn layer(
        &mut self,
        layout: &Layout,
        index: usize,
        desc: &Descriptor,
        diff_id: Option<Digest>,
    ) -> Result<()> {
        let at = |entry: &str, reason: String| Error::Entry {
            index,
            digest: desc.digest.clone(),
            entry: entry.to_string(),
            reason,
        };
        let mut hashing = open_layer(layout, index, desc)?;
        let shown = format!("layer {index} ({})", desc.digest);
        let mut touched: HashSet<String> = HashSet::new();
        let mut pending: Vec<(String, String)> = Vec::new();
        {
            let mut stream = Stream::new(&mut hashing, Path::new(&shown), &Limits::default());
            let mut members = stream.members()?;
            let mut ordinal: u64 = 0;
            while let Some(m) = members.next_member()? {
                let k = ordinal;
                ordinal += 1;
                let (parent, leaf) = split(&m.name);
                if leaf == OPAQUE_WHITEOUT {
                    if let Ok(Some(dir)) = self.resolve_dir(parent, false) {
                        self.opaque(&dir, &touched);
                    }
                    continue;
                }
                if let Some(hidden) = leaf.strip_prefix(WHITEOUT_PREFIX) {
                    if hidden.is_empty() || hidden == "." || hidden == ".." {
                        return Err(at(&m.raw_name, "a whiteout that names no file".into()));
                    }
                    if let Ok(Some(dir)) = self.resolve_dir(parent, false) {
                        let path = join(&dir, hidden);
                        if !touched.contains(&path) {
                            self.remove(&path);
                        }
                    }
                    continue;
                }
                let dir = self
                    .resolve_dir(parent, true)
                    .map_err(|e| at(&m.raw_name, e))?
                    .unwrap_or_default();
                let path = join(&dir, leaf);
                touch(&mut touched, &path);
                let obj = match &m.kind {
                    MemberKind::HardLink(target) => {
                        if !self.link(&m.name, target).map_err(|e| at(&m.raw_name, e))? {
                            pending.push((m.name.clone(), target.clone()));
                        }
                        continue;
                    }
                    MemberKind::Dir => {
                        match self.tree.get_mut(&path) {
                            Some(Node::Dir(meta)) => *meta = Some(m.meta.clone()),
                            _ => {
                                self.remove(&path);
                                self.tree.insert(path, Node::Dir(Some(m.meta.clone())));
                            }
                        }
                        continue;
                    }
                    MemberKind::File => Some(ObjKind::File),
                    MemberKind::Symlink(t) => Some(ObjKind::Symlink(t.clone())),
                    MemberKind::Other => {
                        let (major, minor) = m.meta.device.unwrap_or((0, 0));
                        match m.meta.entry_type {
                            b'3' => Some(ObjKind::Char(major, minor)),
                            b'4' => Some(ObjKind::Block(major, minor)),
                            b'6' => Some(ObjKind::Fifo),
                            _ => None, // not a file system object: it only removes
                        }
                    }
                };
                self.remove(&path);
                if let Some(kind) = obj {
                    let size = if kind == ObjKind::File { m.size } else { 0 };
                    self.inodes.push(Inode {
                        kind,
                        meta: m.meta.clone(),
                        size,
                        src: (index, k),
                    });
                    self.tree.insert(path, Node::Obj(self.inodes.len() - 1));
                }
            }
        }
        for (name, target) in pending {
            if !self.link(&name, &target).map_err(|e| at(&name, e))? {
                return Err(at(
                    &name,
                    format!(
                        "hard link to `{target}`, which neither this layer nor a lower one has"
                    ),
                ));
            }
        }
        check_diff_id(hashing, layout, index, desc, diff_id)
    }
}

/// A file written at an offset.
struct At<'a> {
    file: &'a File,
    pos: u64,
}

impl Write for At<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn xattrs(meta: &MemberMeta) -> Vec<(String, Vec<u8>)> {
    let mut x: Vec<(String, Vec<u8>)> = meta
        .xattrs
        .iter()
        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
        .collect();
    x.sort();
    x
}

/// Squash `layers` (base first; `diff_ids` from the config) into one tar written to `out`
/// from offset 0 (see the module documentation).
pub(crate) fn squash_layers(
    layout: &Layout,
    layers: &[Descriptor],
    diff_ids: &[Option<Digest>],
    epoch: Option<u64>,
    out: &File,
) -> Result<Squashed> {
    let mut model = Model::default();
    for (i, desc) in layers.iter().enumerate() {
        model.layer(layout, i, desc, diff_ids.get(i).cloned().flatten())?;
    }
    let out_err = |e: io::Error| Error::io(Path::new("the squashed layer (a temp file)"), e);

    // Lay out the entries: headers written now, data places remembered.
    let mut first_name: HashMap<usize, String> = HashMap::new();
    let mut data_at: HashMap<(usize, u64), u64> = HashMap::new();
    let mut layers_needed = vec![false; layers.len()];
    let mut pos: u64 = 0;
    let mut entries: u64 = 0;
    let mut w = BufWriter::with_capacity(1 << 20, At { file: out, pos: 0 });
    let fixed = epoch.unwrap_or(0);
    for (path, node) in &model.tree {
        let mut h = EntryHeader {
            name: path.clone().into_bytes(),
            kind: EntryKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: fixed,
            mtime_nsec: 0,
            size: 0,
            xattrs: Vec::new(),
        };
        let mut data = None;
        match node {
            Node::Dir(meta) => {
                h.name.push(b'/');
                if let Some(m) = meta {
                    (h.mode, h.uid, h.gid) = (m.mode, m.uid, m.gid);
                    (h.mtime, h.mtime_nsec) = (m.mtime, m.mtime_nsec);
                    h.xattrs = xattrs(m);
                }
            }
            Node::Obj(i) => {
                let inode = &model.inodes[*i];
                let m = &inode.meta;
                (h.mode, h.uid, h.gid) = (m.mode, m.uid, m.gid);
                (h.mtime, h.mtime_nsec) = (m.mtime, m.mtime_nsec);
                match first_name.get(i) {
                    Some(first) => h.kind = EntryKind::HardLink(first.clone().into_bytes()),
                    None => {
                        first_name.insert(*i, path.clone());
                        h.xattrs = xattrs(m);
                        h.kind = match &inode.kind {
                            ObjKind::File => {
                                h.size = inode.size;
                                if inode.size > 0 {
                                    data = Some(inode.src);
                                }
                                EntryKind::File
                            }
                            ObjKind::Symlink(t) => EntryKind::Symlink(t.clone().into_bytes()),
                            ObjKind::Char(major, minor) => EntryKind::Char {
                                major: *major,
                                minor: *minor,
                            },
                            ObjKind::Block(major, minor) => EntryKind::Block {
                                major: *major,
                                minor: *minor,
                            },
                            ObjKind::Fifo => EntryKind::Fifo,
                        };
                    }
                }
            }
        }
        let blocks = h.encode()?;
        if w.get_ref().pos + w.buffer().len() as u64 != pos {
            w.flush().map_err(out_err)?;
            w.get_mut().pos = pos;
        }
        w.write_all(&blocks).map_err(out_err)?;
        pos += blocks.len() as u64;
        if let Some(src) = data {
            data_at.insert(src, pos);
            layers_needed[src.0] = true;
            pos += h.size + block_padding(h.size);
        }
        entries += 1;
    }
    w.flush().map_err(out_err)?;
    let size = pos + 1024;
    out.set_len(size).map_err(out_err)?;
    drop(model);

    // The data, layer by layer, each file at its place.
    for (i, desc) in layers.iter().enumerate() {
        if !layers_needed[i] {
            continue;
        }
        let mut hashing = open_layer(layout, i, desc)?;
        let shown = format!("layer {i} ({})", desc.digest);
        {
            let mut stream = Stream::new(&mut hashing, Path::new(&shown), &Limits::default());
            let mut members = stream.members()?;
            let mut ordinal: u64 = 0;
            while let Some(mut m) = members.next_member()? {
                let k = ordinal;
                ordinal += 1;
                let Some(&offset) = data_at.get(&(i, k)) else {
                    continue;
                };
                let mut w = BufWriter::with_capacity(
                    1 << 20,
                    At {
                        file: out,
                        pos: offset,
                    },
                );
                let n = io::copy(&mut m, &mut w).map_err(|e| Error::Entry {
                    index: i,
                    digest: desc.digest.clone(),
                    entry: m.raw_name.clone(),
                    reason: e.to_string(),
                })?;
                w.flush().map_err(out_err)?;
                if n != m.size {
                    return Err(Error::Entry {
                        index: i,
                        digest: desc.digest.clone(),
                        entry: m.raw_name.clone(),
                        reason: format!("{n} bytes of data, the header says {}", m.size),
                    });
                }
            }
        }
        // Read to the end: the blob is verified against its digest there.
        check_diff_id(hashing, layout, i, desc, diff_ids.get(i).cloned().flatten())?;
    }
    Ok(Squashed {
        layers: layers.len(),
        entries,
        size,
    })
}
