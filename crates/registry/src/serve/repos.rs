//! What the server serves: layouts ("mounts"), each with its own repository name, and what
//! each one's `index.json` reaches right now.
//!
//! A [`Snapshot`] of a layout is made from its `index.json` by [`engine::plan`] (the one
//! traversal the engine has): every blob the entries reach, its media type and whether it was
//! read as a manifest or index, and the referrers (documents with a `subject`). Nothing else
//! is served: a blob left in `blobs/` for gc is unknown here, and no name from a request ever
//! becomes a path; only a digest found in the snapshot is opened, through the store.
//!
//! The snapshot is kept with the [`IndexStamp`] of the `index.json` it came from. Each request
//! compares the stamp with the file's (one `lstat`, no lock): a writer's commit renames a new
//! `index.json` into place, so a new tag or import is served from the next request on,
//! without a restart. An entry whose image cannot be planned (a manifest missing or corrupt)
//! is left out and the rest of the layout is served.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ocikit_layout::engine::{plan, Plan};
use ocikit_layout::{
    Descriptor, Digest, Index, IndexStamp, Layout, Manifest, MediaType, Options, JSON_LIMIT,
};

use super::names::{is_repository, map_ref, RefName};
use super::ServeError;

/// What to serve, as the command line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A layout under a repository name of the user's choosing (`--repo NAME=DIR`).
    Named {
        /// The repository name.
        name: String,
        /// The layout.
        dir: PathBuf,
    },
    /// A layout (its repository is named after the directory), or a directory whose
    /// subdirectories are layouts (each named by its path below it).
    Dir(PathBuf),
}

/// How deep below a served parent directory layouts are looked for.
pub const DISCOVER_DEPTH: usize = 8;

/// The least time between two searches of the parent directories for layouts.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(1);

/// One served layout.
#[derive(Debug)]
pub struct Mount {
    /// Its own repository (bare tags, untagged entries).
    pub name: String,
    /// The layout.
    pub layout: Layout,
    cache: Mutex<Option<Arc<Snapshot>>>,
    /// Serializes rebuilds, so many requests that see a new `index.json` plan it once.
    rebuild: Mutex<()>,
}

/// What one layout's `index.json` reached when it was last read.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The stamp of the `index.json` read (`None`: there was none).
    pub stamp: Option<IndexStamp>,
    /// Tags by repository; every repository the layout serves is a key (its own one too).
    pub tags: BTreeMap<String, BTreeMap<String, Descriptor>>,
    /// Every blob reachable from the entries that planned.
    pub plan: Plan,
    /// Referrers by subject digest, in the order met.
    pub referrers: HashMap<Digest, Vec<Descriptor>>,
    /// Why entries or the whole `index.json` are not served (for the log).
    pub problems: Vec<String>,
}

impl Mount {
    fn new(name: String, layout: Layout) -> Mount {
        Mount {
            name,
            layout,
            cache: Mutex::new(None),
            rebuild: Mutex::new(()),
        }
    }

    /// The snapshot for the `index.json` on disk now, rebuilt when it changed. The `bool` is
    /// true when this call rebuilt it and its problems differ from the previous snapshot's
    /// (they are then worth a warning).
    pub fn snapshot(&self) -> (Arc<Snapshot>, bool) {
        let now = self.layout.index_stamp().ok().flatten();
        if let Some(s) = self
            .cached()
            .filter(|s| s.stamp.is_some() && s.stamp == now)
        {
            return (s, false);
        }
        let _one = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.layout.index_stamp().ok().flatten();
        if let Some(s) = self
            .cached()
            .filter(|s| s.stamp.is_some() && s.stamp == now)
        {
            return (s, false);
        }
        let fresh = Arc::new(build(&self.name, &self.layout));
        let old = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(fresh.clone());
        // The same problems again (an index.json that is still missing) are not news.
        let news = old.is_none_or(|o| o.problems != fresh.problems);
        (fresh, news)
    }

    fn cached(&self) -> Option<Arc<Snapshot>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Plan what `layout`'s `index.json` reaches now.
fn build(own: &str, layout: &Layout) -> Snapshot {
    let mut snap = Snapshot::default();
    let (index, stamp) = match layout.read_index_stamped() {
        Ok((raw, stamp)) => (raw.value, stamp),
        Err(e) if !layout.root().join("oci-layout").exists() => {
            // The layout was removed: not even its own repository is served.
            snap.problems
                .push(format!("serving nothing of it: it is gone ({e})"));
            return snap;
        }
        Err(e) => {
            snap.tags.insert(own.to_string(), BTreeMap::new());
            // Not read again until it changes (a file that is absent is looked for each time).
            snap.stamp = layout.index_stamp().ok().flatten();
            snap.problems.push(format!("serving nothing of it: {e}"));
            return snap;
        }
    };
    snap.tags.insert(own.to_string(), BTreeMap::new());
    snap.stamp = Some(stamp);
    // One traversal for every entry; when an entry's image cannot be planned, each entry is
    // planned alone to find which, and the rest are planned again together.
    let roots = match plan(layout, &index.manifests) {
        Ok(p) => {
            snap.plan = p;
            index.manifests
        }
        Err(_) => {
            let mut good = Vec::new();
            for (i, d) in index.manifests.into_iter().enumerate() {
                match plan(layout, std::slice::from_ref(&d)) {
                    Ok(_) => good.push(d),
                    Err(e) => snap.problems.push(format!(
                        "not serving index.json[{i}] `{}`{}: {e}",
                        d.digest,
                        d.ref_name().map(|r| format!(" ({r})")).unwrap_or_default()
                    )),
                }
            }
            match plan(layout, &good) {
                Ok(p) => snap.plan = p,
                Err(e) => {
                    snap.problems.push(format!("serving nothing of it: {e}"));
                    good.clear();
                }
            }
            good
        }
    };
    for d in &roots {
        let (repo, tag) = match d.ref_name().map(map_ref) {
            Some(RefName::OwnTag(t)) => (own.to_string(), Some(t)),
            Some(RefName::Tag { repo, tag }) => (repo, Some(tag)),
            Some(RefName::DigestOnly { repo }) => (repo, None),
            Some(RefName::Other) | None => continue,
        };
        let tags = snap.tags.entry(repo).or_default();
        if let Some(t) = tag {
            // The first entry of a name wins, as a reader of index.json resolves it.
            tags.entry(t).or_insert_with(|| d.clone());
        }
    }
    snap.referrers = referrers(layout, &snap.plan, &mut snap.problems);
    snap
}

/// The referrers in `plan`, by subject: each document with a `subject`, described as the
/// referrers API lists it (its media type, digest and size; its `artifactType`, else its
/// config's media type; its annotations).
fn referrers(
    layout: &Layout,
    plan: &Plan,
    problems: &mut Vec<String>,
) -> HashMap<Digest, Vec<Descriptor>> {
    let mut out: HashMap<Digest, Vec<Descriptor>> = HashMap::new();
    for &(doc, subject) in plan.subjects() {
        let doc = &plan.blobs[doc as usize];
        let subject = &plan.blobs[subject as usize].digest;
        let bytes = match layout.read_blob(&doc.digest, doc.size, JSON_LIMIT) {
            Ok(b) => b,
            Err(e) => {
                problems.push(format!("referrer `{}` not listed: {e}", doc.digest));
                continue;
            }
        };
        let (artifact_type, annotations) = match doc.media_type.class() {
            ocikit_layout::Class::Index => match serde_json::from_slice::<Index>(&bytes) {
                Ok(ix) => (ix.artifact_type, ix.annotations),
                Err(_) => (None, None),
            },
            _ => match serde_json::from_slice::<Manifest>(&bytes) {
                Ok(m) => (
                    m.artifact_type
                        .or_else(|| Some(m.config.media_type.as_str().to_string())),
                    m.annotations,
                ),
                Err(_) => (None, None),
            },
        };
        let mut d = Descriptor::new(
            doc.media_type.clone(),
            doc.digest.clone(),
            bytes.len() as u64,
        );
        d.artifact_type = artifact_type;
        d.annotations = annotations;
        let list = out.entry(subject.clone()).or_default();
        if !list.iter().any(|x| x.digest == d.digest) {
            list.push(d);
        }
    }
    out
}

/// Every served layout, in the order given (layouts found below a parent directory in the
/// order of their paths).
#[derive(Debug)]
pub struct Mounts {
    /// The layouts that are not searched for: `--repo` ones and directories that are layouts.
    fixed: Vec<(String, PathBuf)>,
    /// The parent directories searched for layouts, in the order given.
    parents: Vec<PathBuf>,
    opts: Options,
    current: RwLock<Arc<Vec<Arc<Mount>>>>,
    /// When the parents were last searched, and what that search could not serve.
    scanned: Mutex<(Instant, Vec<String>)>,
}

/// A blob or manifest found for a request, and where.
#[derive(Debug)]
pub struct Found<'a> {
    /// The layout that holds it.
    pub layout: &'a Layout,
    /// Its digest.
    pub digest: Digest,
    /// Its size as descriptors declare it (`None`: schema1 layers declare none).
    pub size: Option<u64>,
    /// Its media type as the descriptor that named it says.
    pub media_type: MediaType,
}

impl Mounts {
    /// Find the layouts `sources` name (each opened, so a directory that is not a layout is
    /// refused now) and give each its repository name.
    pub fn discover(sources: &[Source], opts: &Options) -> Result<Mounts, ServeError> {
        let mut found: Vec<(String, PathBuf)> = Vec::new();
        let mut fixed: Vec<(String, PathBuf)> = Vec::new();
        let mut parents: Vec<PathBuf> = Vec::new();
        for s in sources {
            match s {
                Source::Named { name, dir } => {
                    if !is_repository(name) {
                        return Err(ServeError::InvalidName {
                            name: name.clone(),
                            path: dir.clone(),
                        });
                    }
                    found.push((name.clone(), dir.clone()));
                    fixed.push((name.clone(), dir.clone()));
                }
                Source::Dir(dir) if dir.join("oci-layout").exists() => {
                    let canon = dir.canonicalize().map_err(|e| ServeError::Io {
                        path: dir.clone(),
                        source: e,
                    })?;
                    let name = canon
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if !is_repository(&name) {
                        return Err(ServeError::InvalidName {
                            name,
                            path: dir.clone(),
                        });
                    }
                    found.push((name.clone(), dir.clone()));
                    fixed.push((name, dir.clone()));
                }
                Source::Dir(dir) => {
                    let before = found.len();
                    discover_under(dir, dir, 0, &mut found, &mut Err)?;
                    if found.len() == before {
                        return Err(ServeError::NoLayouts { path: dir.clone() });
                    }
                    parents.push(dir.clone());
                }
            }
        }
        let mut mounts: Vec<Arc<Mount>> = Vec::new();
        for (name, dir) in found {
            if let Some(m) = mounts.iter().find(|m| m.name == name) {
                return Err(ServeError::DuplicateName {
                    name,
                    first: m.layout.root().to_path_buf(),
                    second: dir,
                });
            }
            let layout = Layout::open(&dir, opts.clone())?;
            mounts.push(Arc::new(Mount::new(name, layout)));
        }
        Ok(Mounts {
            fixed,
            parents,
            opts: opts.clone(),
            current: RwLock::new(Arc::new(mounts)),
            scanned: Mutex::new((Instant::now(), Vec::new())),
        })
    }

    /// The layouts served now.
    pub fn list(&self) -> Arc<Vec<Arc<Mount>>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Search the parent directories again, unless they were searched less than
    /// [`RESCAN_INTERVAL`] ago (or a search is running now): layouts added below them are
    /// served from now on, removed ones are dropped, the others keep their snapshots. Returns
    /// whether the served layouts changed, and what the search could not serve when that
    /// differs from the previous search's (worth a warning).
    pub fn rescan(&self) -> (bool, Vec<String>) {
        if self.parents.is_empty() {
            return (false, Vec::new());
        }
        let Ok(mut scanned) = self.scanned.try_lock() else {
            return (false, Vec::new());
        };
        if scanned.0.elapsed() < RESCAN_INTERVAL {
            return (false, Vec::new());
        }
        let mut problems: Vec<String> = Vec::new();
        let mut found = self.fixed.clone();
        for dir in &self.parents {
            let mut lenient = |e: ServeError| {
                problems.push(e.to_string());
                Ok(())
            };
            if let Err(e) = discover_under(dir, dir, 0, &mut found, &mut lenient) {
                problems.push(e.to_string());
            }
        }
        let old = self.list();
        let mut mounts: Vec<Arc<Mount>> = Vec::new();
        for (name, dir) in found {
            if let Some(m) = mounts.iter().find(|m| m.name == name) {
                problems.push(
                    ServeError::DuplicateName {
                        name,
                        first: m.layout.root().to_path_buf(),
                        second: dir,
                    }
                    .to_string(),
                );
                continue;
            }
            if let Some(m) = old
                .iter()
                .find(|m| m.name == name && m.layout.root() == dir)
            {
                mounts.push(m.clone());
                continue;
            }
            match Layout::open(&dir, self.opts.clone()) {
                Ok(layout) => mounts.push(Arc::new(Mount::new(name, layout))),
                Err(e) => problems.push(format!("not serving `{}`: {e}", dir.display())),
            }
        }
        let changed = mounts.len() != old.len()
            || mounts
                .iter()
                .zip(old.iter())
                .any(|(a, b)| !Arc::ptr_eq(a, b));
        if changed {
            *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(mounts);
        }
        let news = if problems != scanned.1 {
            problems.clone()
        } else {
            Vec::new()
        };
        *scanned = (Instant::now(), problems);
        (changed, news)
    }

    /// A view of every layout served now (its current snapshot), with the problems found by
    /// rebuilding any of them now.
    pub fn view(&self) -> (View, Vec<String>) {
        let mounts = self.list();
        let mut problems = Vec::new();
        let snaps = mounts
            .iter()
            .map(|m| {
                let (s, fresh) = m.snapshot();
                if fresh {
                    problems.extend(
                        s.problems
                            .iter()
                            .map(|p| format!("`{}`: {p}", m.layout.root().display())),
                    );
                }
                s
            })
            .collect();
        (View { mounts, snaps }, problems)
    }
}

/// A view of every layout at one moment, for one request.
#[derive(Debug)]
pub struct View {
    mounts: Arc<Vec<Arc<Mount>>>,
    snaps: Vec<Arc<Snapshot>>,
}

impl View {
    /// The layouts serving repository `repo`, with their snapshots.
    fn serving<'s>(&'s self, repo: &'s str) -> impl Iterator<Item = (&'s Mount, &'s Snapshot)> {
        self.mounts
            .iter()
            .zip(self.snaps.iter())
            .filter(move |(_, s)| s.tags.contains_key(repo))
            .map(|(m, s)| (&**m, &**s))
    }

    /// Does any layout serve `repo`?
    pub fn has_repo(&self, repo: &str) -> bool {
        self.serving(repo).next().is_some()
    }

    /// Every repository, sorted.
    pub fn repositories(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.snaps.iter().flat_map(|s| s.tags.keys()).collect();
        set.into_iter().cloned().collect()
    }

    /// The tags of `repo`, sorted (a tag in several layouts once).
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let set: BTreeSet<&String> = self
            .serving(repo)
            .filter_map(|(_, s)| s.tags.get(repo))
            .flat_map(|t| t.keys())
            .collect();
        set.into_iter().cloned().collect()
    }

    /// The manifest or index `tag` of `repo` names (the first layout that has it).
    pub fn by_tag<'s>(&'s self, repo: &'s str, tag: &str) -> Option<Found<'s>> {
        self.serving(repo).find_map(|(m, s)| {
            let d = s.tags.get(repo)?.get(tag)?;
            Some(Found {
                layout: &m.layout,
                digest: d.digest.clone(),
                size: Some(d.size),
                media_type: d.media_type.clone(),
            })
        })
    }

    /// A reachable blob of `repo` (`manifest`: only one read as a manifest or index).
    pub fn by_digest<'s>(
        &'s self,
        repo: &'s str,
        digest: &Digest,
        manifest: bool,
    ) -> Option<Found<'s>> {
        self.serving(repo).find_map(|(m, s)| {
            let b = s.plan.get(digest)?;
            if manifest && !b.document {
                return None;
            }
            Some(Found {
                layout: &m.layout,
                digest: b.digest.clone(),
                size: b.size,
                media_type: b.media_type.clone(),
            })
        })
    }

    /// The referrers of `digest` in `repo`, each once.
    pub fn referrers(&self, repo: &str, digest: &Digest) -> Vec<Descriptor> {
        let mut out: Vec<Descriptor> = Vec::new();
        for (_, s) in self.serving(repo) {
            for d in s.referrers.get(digest).into_iter().flatten() {
                if !out.iter().any(|x| x.digest == d.digest) {
                    out.push(d.clone());
                }
            }
        }
        out
    }
}

/// Layouts under `dir` (not `root` itself), named by their path below `root`; a layout's own
/// subdirectories are not searched, and neither are symbolic links. A layout whose name is
/// invalid goes to `bad` (which stops the search with its error, or lets it go on).
fn discover_under(
    root: &Path,
    dir: &Path,
    depth: usize,
    found: &mut Vec<(String, PathBuf)>,
    bad: &mut dyn FnMut(ServeError) -> Result<(), ServeError>,
) -> Result<(), ServeError> {
    if depth >= DISCOVER_DEPTH {
        return Ok(());
    }
    let io_err = |e| ServeError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_err)?
        .collect::<Result<_, _>>()
        .map_err(io_err)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let ty = e.file_type().map_err(|err| ServeError::Io {
            path: e.path(),
            source: err,
        })?;
        if !ty.is_dir() {
            continue;
        }
        let path = e.path();
        if path.join("oci-layout").exists() {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            if !is_repository(&name) {
                bad(ServeError::InvalidName { name, path })?;
                continue;
            }
            found.push((name, path));
        } else {
            discover_under(root, &path, depth + 1, found, bad)?;
        }
    }
    Ok(())
}
