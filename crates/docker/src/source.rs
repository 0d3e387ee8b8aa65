//! What an import source is, decided from its content (never from its name), and uniform
//! access to the files ("members") of archive and directory sources.
//!
//! | kind | recognised by |
//! |---|---|
//! | [`Kind::DockerSave`] | a tar with `manifest.json` (and no OCI layout beside it) |
//! | [`Kind::Docker25`] | a tar with `manifest.json`, `index.json` and `oci-layout` |
//! | [`Kind::OciArchive`] | a tar with `index.json` and `oci-layout` (oci-archive, containerd export) |
//! | [`Kind::LegacyRepositories`] | a tar with only `repositories` and `<id>/json` (before Docker 1.10) |
//! | [`Kind::SkopeoDir`] | a directory with `manifest.json` and `version`, or with `manifest.json` and a blob it names (skopeo `dir:`; older skopeo wrote no `version`) |
//! | [`Kind::LayoutDir`] | a directory with `oci-layout` |

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use ocikit_layout::engine::ImageSource;
use ocikit_layout::{
    Digest, Error as LError, Index, Raw, Result as LResult, VerifyingReader, INDEX_LIMIT,
};

use crate::archive::Archive;
use crate::{Error, Result};

/// The kinds of import sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `docker save` before Docker 25 (and skopeo's docker-archive).
    DockerSave,
    /// `docker save` of Docker 25 and later: an OCI layout with `manifest.json` beside it.
    Docker25,
    /// A tarred OCI layout.
    OciArchive,
    /// The oldest `docker save` archives: `repositories` and `<id>/json`, no `manifest.json`.
    LegacyRepositories,
    /// A skopeo `dir:` copy.
    SkopeoDir,
    /// An OCI image layout directory.
    LayoutDir,
}

impl Kind {
    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::DockerSave => "docker-archive",
            Kind::Docker25 => "docker-archive (Docker 25+)",
            Kind::OciArchive => "oci-archive",
            Kind::LegacyRepositories => "docker-archive (legacy, repositories only)",
            Kind::SkopeoDir => "skopeo dir:",
            Kind::LayoutDir => "OCI layout",
        }
    }
}

/// Read access to the members of a source: the files of an archive or of a directory. Shared
/// between threads: layers are streamed in parallel.
pub trait Members: Sync {
    /// The source, for messages.
    fn path(&self) -> &Path;
    /// Is there a member of this name?
    fn has(&self, name: &str) -> bool;
    /// Its size in bytes.
    fn size(&self, name: &str) -> Result<u64>;
    /// Stream its bytes.
    fn open(&self, name: &str) -> Result<Box<dyn Read + '_>>;
    /// The name a member is stored under (archives follow links), so that two names of one
    /// member are read once.
    fn canonical(&self, name: &str) -> Result<String> {
        Ok(name.to_string())
    }
    /// Read it whole, refusing more than `limit` bytes.
    fn read_small(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        let size = self.size(name)?;
        if size > limit {
            return Err(Error::member(
                self.path(),
                name,
                format!(
                    "is {size} bytes, larger than the {limit}-byte limit for this kind of member"
                ),
            ));
        }
        let mut buf = Vec::with_capacity(size as usize);
        self.open(name)?
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(self.path(), e))?;
        Ok(buf)
    }
}

impl Members for Archive {
    fn path(&self) -> &Path {
        Archive::path(self)
    }
    fn has(&self, name: &str) -> bool {
        self.contains(name)
    }
    fn size(&self, name: &str) -> Result<u64> {
        Ok(Archive::size(self, name)?)
    }
    fn open(&self, name: &str) -> Result<Box<dyn Read + '_>> {
        Ok(Box::new(self.open_member(name)?))
    }
    fn canonical(&self, name: &str) -> Result<String> {
        Ok(self.resolve(name)?)
    }
}

/// The files of a directory, by relative name (checked like archive member names).
#[derive(Debug)]
pub struct DirMembers {
    root: PathBuf,
}

impl DirMembers {
    /// Members of `root`.
    pub fn new(root: &Path) -> DirMembers {
        DirMembers {
            root: root.to_path_buf(),
        }
    }

    fn file(&self, name: &str) -> Result<PathBuf> {
        let n = crate::archive::normalize(name).map_err(|r| Error::member(&self.root, name, r))?;
        Ok(self.root.join(n))
    }
}

impl Members for DirMembers {
    fn path(&self) -> &Path {
        &self.root
    }
    fn has(&self, name: &str) -> bool {
        self.file(name).is_ok_and(|p| p.is_file())
    }
    fn size(&self, name: &str) -> Result<u64> {
        let p = self.file(name)?;
        match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => Ok(m.len()),
            Ok(_) => Err(Error::member(&self.root, name, "is not a regular file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::member(
                &self.root,
                name,
                "missing from the directory",
            )),
            Err(e) => Err(Error::io(p, e)),
        }
    }
    fn open(&self, name: &str) -> Result<Box<dyn Read + '_>> {
        let p = self.file(name)?;
        match File::open(&p) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::member(
                &self.root,
                name,
                "missing from the directory",
            )),
            Err(e) => Err(Error::io(p, e)),
        }
    }
}

/// An opened, classified source.
#[derive(Debug)]
pub enum Source {
    /// A tar archive of the given kind.
    Archive(Archive, Kind),
    /// A skopeo `dir:` copy.
    SkopeoDir(DirMembers),
    /// An OCI layout directory.
    LayoutDir(ocikit_layout::Layout),
}

impl Source {
    /// The kind of source.
    pub fn kind(&self) -> Kind {
        match self {
            Source::Archive(_, k) => *k,
            Source::SkopeoDir(_) => Kind::SkopeoDir,
            Source::LayoutDir(_) => Kind::LayoutDir,
        }
    }
}

/// The source name that means standard input.
pub const STDIN: &str = "-";

/// Open `path` and decide what it is. `-` ([`STDIN`]) is an archive read from standard input
/// (spooled once into a bounded temp file: see `ocikit_layout::archive::spool`).
pub fn detect(path: &Path) -> Result<Source> {
    if path == Path::new(STDIN) {
        let ar = Archive::from_reader(
            std::io::stdin().lock(),
            path,
            &ocikit_layout::archive::Limits::default(),
        )?;
        return classify(ar, path);
    }
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        if path.join("oci-layout").exists() {
            let l = ocikit_layout::Layout::open(path, ocikit_layout::Options::default())?;
            return Ok(Source::LayoutDir(l));
        }
        if path.join("manifest.json").is_file()
            && (path.join("version").is_file() || names_a_present_blob(path))
        {
            return Ok(Source::SkopeoDir(DirMembers::new(path)));
        }
        return Err(Error::BadSource {
            path: path.to_path_buf(),
            reason: "a directory that is neither an OCI layout (no `oci-layout`) nor a skopeo dir: copy (no `manifest.json` beside a `version` file or a blob it names)".into(),
        });
    }
    classify(Archive::open(path)?, path)
}

/// Decide what an opened archive is, from its members.
fn classify(ar: Archive, path: &Path) -> Result<Source> {
    let layout = ar.contains("index.json") && ar.contains("oci-layout");
    let kind = if ar.contains("manifest.json") {
        if layout {
            Kind::Docker25
        } else {
            Kind::DockerSave
        }
    } else if layout {
        Kind::OciArchive
    } else if ar.contains("repositories") {
        Kind::LegacyRepositories
    } else {
        return Err(Error::member(
            path,
            "manifest.json",
            "missing: not a docker save archive (no `manifest.json` or `repositories`) nor an OCI archive (no `index.json` and `oci-layout`)",
        ));
    };
    Ok(Source::Archive(ar, kind))
}

/// Does the directory's `manifest.json` name a blob that is there (a skopeo `dir:` copy
/// written before skopeo added the `version` file)? Blobs are files named by the encoded
/// digest; instances of a list are `<encoded>.manifest.json`.
fn names_a_present_blob(dir: &Path) -> bool {
    let members = DirMembers::new(dir);
    let Ok(bytes) = members.read_small("manifest.json", ocikit_layout::JSON_LIMIT) else {
        return false;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return false;
    };
    let digest_of = |d: &serde_json::Value, key: &str| {
        d.get(key)
            .and_then(serde_json::Value::as_str)
            .and_then(|s| s.parse::<Digest>().ok())
    };
    let list = |key: &str| {
        v.get(key)
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut blobs: Vec<String> = Vec::new();
    if let Some(c) = v.get("config").and_then(|c| digest_of(c, "digest")) {
        blobs.push(c.encoded().to_string());
    }
    for l in list("layers") {
        blobs.extend(digest_of(&l, "digest").map(|d| d.encoded().to_string()));
    }
    for l in list("fsLayers") {
        blobs.extend(digest_of(&l, "blobSum").map(|d| d.encoded().to_string()));
    }
    for m in list("manifests") {
        blobs.extend(digest_of(&m, "digest").map(|d| format!("{}.manifest.json", d.encoded())));
    }
    blobs.iter().any(|b| members.has(b))
}

/// The blobs of an OCI-shaped source (an oci-archive, a Docker 25 `docker save`) as an
/// [`ImageSource`] for the engine: `blobs/<alg>/<encoded>` members, verified while read, with
/// the bytes read reported to `progress`.
pub struct MembersSource<'a> {
    members: &'a dyn Members,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl std::fmt::Debug for MembersSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembersSource")
            .field("path", &self.members.path())
            .finish()
    }
}

impl<'a> MembersSource<'a> {
    /// The blobs of `members`.
    pub fn new(members: &'a dyn Members, progress: Option<&'a (dyn Fn(u64) + Sync)>) -> Self {
        MembersSource { members, progress }
    }

    fn member(&self, digest: &Digest) -> (String, PathBuf) {
        let name = format!("blobs/{}/{}", digest.algorithm_str(), digest.encoded());
        let path = self.members.path().join(&name);
        (name, path)
    }

    /// The member's size, checked against `size`; `MissingBlob` when absent.
    fn checked_size(&self, digest: &Digest, size: Option<u64>) -> LResult<(String, PathBuf)> {
        let (name, path) = self.member(digest);
        if !self.members.has(&name) {
            return Err(LError::MissingBlob {
                digest: digest.clone(),
                path,
            });
        }
        let found = self.members.size(&name).map_err(|e| LError::Invalid {
            what: path.display().to_string(),
            reason: e.to_string(),
        })?;
        if let Some(expected) = size.filter(|&s| s != found) {
            return Err(LError::SizeMismatch {
                digest: digest.clone(),
                expected,
                found,
                path,
            });
        }
        Ok((name, path))
    }
}

impl ImageSource for MembersSource<'_> {
    fn roots(&self) -> LResult<Index> {
        let bytes = self
            .members
            .read_small("index.json", INDEX_LIMIT)
            .map_err(|e| LError::Invalid {
                what: self.members.path().join("index.json").display().to_string(),
                reason: e.to_string(),
            })?;
        let digest = Digest::sha256(&bytes);
        Ok(Raw::<Index>::parse_limited(bytes, digest, "index.json", INDEX_LIMIT)?.value)
    }

    fn read_document(&self, digest: &Digest, size: Option<u64>, limit: u64) -> LResult<Vec<u8>> {
        let (_, path) = self.member(digest);
        if let Some(s) = size.filter(|&s| s > limit) {
            return Err(LError::TooLarge {
                what: path.display().to_string(),
                size: s,
                limit,
            });
        }
        let mut r = self.open(digest, size)?;
        let mut buf = Vec::new();
        (&mut r)
            .take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| ocikit_layout::unwrap_io(e, &path))?;
        if buf.len() as u64 > limit {
            return Err(LError::TooLarge {
                what: path.display().to_string(),
                size: buf.len() as u64,
                limit,
            });
        }
        Ok(buf)
    }

    fn stat(&self, digest: &Digest) -> LResult<Option<u64>> {
        let (name, path) = self.member(digest);
        if !self.members.has(&name) {
            return Ok(None);
        }
        self.members
            .size(&name)
            .map(Some)
            .map_err(|e| LError::Invalid {
                what: path.display().to_string(),
                reason: e.to_string(),
            })
    }

    fn open(&self, digest: &Digest, size: Option<u64>) -> LResult<Box<dyn Read + '_>> {
        let alg = digest
            .algorithm()
            .ok_or_else(|| LError::Unverifiable(digest.clone()))?;
        let (name, path) = self.checked_size(digest, size)?;
        let inner = self.members.open(&name).map_err(|e| LError::Invalid {
            what: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let counted = Progress {
            inner,
            report: self.progress,
        };
        Ok(Box::new(VerifyingReader::new(
            counted,
            alg.hasher(),
            digest.clone(),
            size,
            path,
        )))
    }
}

/// A reader that reports how much it read.
pub(crate) struct Progress<'p, R> {
    pub(crate) inner: R,
    pub(crate) report: Option<&'p (dyn Fn(u64) + Sync)>,
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(p) = self.report {
            p(n as u64);
        }
        Ok(n)
    }
}
