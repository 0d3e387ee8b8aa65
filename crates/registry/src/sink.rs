//! [`RegistrySink`]: a repository of a registry as the engine's [`ImageSink`].

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use ocikit_layout::engine::{ImageSink, PlannedBlob, RefChange, RefUpdate};
use ocikit_layout::{Descriptor, Digest, Existing, MediaType};
use serde_json::Value;

use crate::client::repo::{document_type, Repo};
use crate::client::{Client, Progress};
use crate::error::Error;

/// What a push sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentCounts {
    /// Blobs uploaded.
    pub blobs_sent: usize,
    /// Blobs mounted from another repository of the registry.
    pub blobs_mounted: usize,
    /// Manifests and indexes put.
    pub manifests_sent: usize,
    /// Bytes of blobs uploaded.
    pub bytes_sent: u64,
}

/// A repository as a sink: blobs are checked with `HEAD` (and mounted from `mount_from` when
/// it is another repository of the same registry), uploaded otherwise; documents are put by
/// digest after their children (the transfer's order), with their own media type and exact
/// bytes; refs are tags, put last. A manifest with a `subject` on a registry without the
/// referrers API is added to the fallback tag's index.
#[derive(Debug)]
pub struct RegistrySink<'c> {
    repo: Repo<'c>,
    mount_from: Option<String>,
    pushed: Mutex<HashMap<Digest, (String, Vec<u8>)>>,
    blobs_sent: AtomicUsize,
    blobs_mounted: AtomicUsize,
    manifests_sent: AtomicUsize,
    bytes_sent: AtomicU64,
}

impl<'c> RegistrySink<'c> {
    /// A sink into `repository` on `client`'s registry.
    pub fn new(client: &'c Client, repository: &str, mount_from: Option<String>) -> Self {
        let mount_from = mount_from.filter(|m| m != repository);
        RegistrySink {
            repo: Repo::new(client, repository, true, mount_from.as_deref()),
            mount_from,
            pushed: Mutex::new(HashMap::new()),
            blobs_sent: AtomicUsize::new(0),
            blobs_mounted: AtomicUsize::new(0),
            manifests_sent: AtomicUsize::new(0),
            bytes_sent: AtomicU64::new(0),
        }
    }

    /// What was sent so far.
    pub fn counts(&self) -> SentCounts {
        SentCounts {
            blobs_sent: self.blobs_sent.load(Ordering::Relaxed),
            blobs_mounted: self.blobs_mounted.load(Ordering::Relaxed),
            manifests_sent: self.manifests_sent.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
        }
    }

    /// The repository.
    pub fn repo(&self) -> &Repo<'c> {
        &self.repo
    }

    fn pushed_bytes(&self, digest: &Digest) -> Option<(String, Vec<u8>)> {
        self.pushed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
            .cloned()
    }
}

fn le(e: Error) -> ocikit_layout::Error {
    e.into_layout()
}

/// The media type to put a document with: its own `mediaType` when it has one (a registry
/// refuses a `Content-Type` that contradicts it, and a layout's descriptor may say another
/// type), else its descriptor's, else its shape.
fn put_type(declared: &MediaType, bytes: &[u8]) -> String {
    if let Some(t) = own_type(bytes) {
        return t;
    }
    let s = declared.as_str();
    if s.is_empty() || s == "application/octet-stream" || s == "application/json" {
        document_type(None, bytes).as_str().to_string()
    } else {
        s.to_string()
    }
}

/// The document's own `mediaType`, if it names one.
fn own_type(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|t| !t.is_empty())
}

/// A document's subject and the descriptor that lists it among the subject's referrers
/// (`artifactType`: the document's own, else a manifest's config type; its annotations).
fn referrer_descriptor(
    digest: &Digest,
    media_type: &str,
    bytes: &[u8],
) -> Option<(Digest, Descriptor)> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let subject = Digest::parse(v.get("subject")?.get("digest")?.as_str()?).ok()?;
    let mut d = Descriptor::new(
        MediaType::parse(media_type),
        digest.clone(),
        bytes.len() as u64,
    );
    d.artifact_type = v
        .get("artifactType")
        .or_else(|| v.get("config").and_then(|c| c.get("mediaType")))
        .and_then(Value::as_str)
        .map(str::to_string);
    d.annotations = v
        .get("annotations")
        .and_then(|a| serde_json::from_value(a.clone()).ok());
    Some((subject, d))
}

impl ImageSink for RegistrySink<'_> {
    fn existing(&self, digest: &Digest, size: u64) -> ocikit_layout::Result<Existing> {
        if self.repo.head_blob(digest).map_err(le)?.is_some() {
            self.repo.client().progress(Progress::Skipped { size });
            return Ok(Existing::Intact);
        }
        if let Some(from) = &self.mount_from {
            if self.repo.mount(digest, from).map_err(le)? {
                self.blobs_mounted.fetch_add(1, Ordering::Relaxed);
                self.repo.client().progress(Progress::Skipped { size });
                return Ok(Existing::Intact);
            }
        }
        Ok(Existing::Absent)
    }

    fn put_blob(&self, digest: &Digest, size: u64, r: &mut dyn Read) -> ocikit_layout::Result<()> {
        self.repo.client().progress(Progress::Start {
            digest: std::sync::Arc::from(digest.as_str()),
            size,
        });
        self.repo.upload(digest, size, r).map_err(le)?;
        self.blobs_sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(size, Ordering::Relaxed);
        Ok(())
    }

    fn existing_document(&self, digest: &Digest, _size: u64) -> ocikit_layout::Result<Existing> {
        Ok(
            match self.repo.head_manifest(digest.as_str()).map_err(le)? {
                Some(_) => Existing::Intact,
                None => Existing::Absent,
            },
        )
    }

    fn put_document(&self, blob: &PlannedBlob, bytes: &[u8]) -> ocikit_layout::Result<()> {
        let mut media_type = put_type(&blob.media_type, bytes);
        let indexed = match self
            .repo
            .put_manifest(blob.digest.as_str(), &media_type, bytes)
        {
            Ok(i) => i,
            // A document that names no type of its own, refused under its descriptor's
            // (distribution 2.8 wants `mediaType` inside a Docker list): the same bytes under
            // the type its shape says (an OCI index or manifest), once.
            Err(Error::Status { status: 400, .. })
                if own_type(bytes).is_none()
                    && document_type(None, bytes).as_str() != media_type =>
            {
                media_type = document_type(None, bytes).as_str().to_string();
                self.repo
                    .put_manifest(blob.digest.as_str(), &media_type, bytes)
                    .map_err(le)?
            }
            Err(e) => return Err(le(e)),
        };
        self.manifests_sent.fetch_add(1, Ordering::Relaxed);
        self.pushed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(blob.digest.clone(), (media_type.clone(), bytes.to_vec()));
        if indexed {
            return Ok(());
        }
        // A referrer (manifest or index) on a registry that did not say it indexed the
        // subject: the fallback tag.
        let Some((subject, d)) = referrer_descriptor(&blob.digest, &media_type, bytes) else {
            return Ok(());
        };
        self.repo.add_to_fallback_tag(&subject, &d).map_err(le)
    }

    fn commit(&self, entries: &[Descriptor]) -> ocikit_layout::Result<Vec<RefUpdate>> {
        let mut updates = Vec::new();
        for e in entries {
            let Some(tag) = e.ref_name() else {
                let change = if self.pushed_bytes(&e.digest).is_some() {
                    RefChange::Created
                } else {
                    RefChange::Unchanged
                };
                updates.push(RefUpdate {
                    name: None,
                    digest: e.digest.clone(),
                    change,
                });
                continue;
            };
            let before = self.repo.head_manifest(tag).map_err(le)?;
            let change = match before {
                Some(Some(d)) if d == e.digest => RefChange::Unchanged,
                Some(Some(d)) => RefChange::Moved(vec![d]),
                Some(None) => RefChange::Moved(Vec::new()),
                None => RefChange::Created,
            };
            if change != RefChange::Unchanged {
                let (media_type, bytes) = match self.pushed_bytes(&e.digest) {
                    Some(p) => p,
                    None => {
                        let f = self
                            .repo
                            .get_manifest(e.digest.as_str())
                            .map_err(le)?
                            .ok_or_else(|| {
                                le(Error::Missing {
                                    url: self.repo.url(&format!("manifests/{}", e.digest)),
                                    what: e.digest.to_string(),
                                })
                            })?;
                        (put_type(&e.media_type, &f.bytes), f.bytes)
                    }
                };
                self.repo
                    .put_manifest(tag, &media_type, &bytes)
                    .map_err(le)?;
            }
            updates.push(RefUpdate {
                name: Some(tag.to_string()),
                digest: e.digest.clone(),
                change,
            });
        }
        Ok(updates)
    }

    fn parallelism(&self) -> usize {
        self.repo.client().options().parallelism
    }
}
