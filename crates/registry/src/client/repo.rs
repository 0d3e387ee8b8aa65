//! One repository of a registry: the distribution API's manifest, blob, upload and referrers
//! requests, each verified.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use ocikit_layout::{Descriptor, Digest, Index, MediaType, VerifyingReader};
use serde_json::Value;
use ureq::http::Method;

use super::{status_error, Body, Client, Progress, MANIFEST_ACCEPT};
use crate::error::{Error, Result};

/// Registries cap manifests at 4 MiB; so does this client.
pub const MANIFEST_LIMIT: u64 = 4 << 20;

/// A manifest as the registry served it.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its exact bytes.
    pub bytes: Vec<u8>,
    /// The digest of those bytes (what a layout stores it under).
    pub digest: Digest,
    /// Its media type: `Content-Type` without parameters, else its `mediaType`, else its shape.
    pub media_type: MediaType,
}

/// Whether the registry answers the referrers API (unknown until asked).
const REFERRERS_UNKNOWN: u8 = 0;
const REFERRERS_API: u8 = 1;
const REFERRERS_TAG: u8 = 2;

/// A repository on a registry.
#[derive(Debug)]
pub struct Repo<'c> {
    client: &'c Client,
    name: String,
    scope: String,
    referrers_mode: AtomicU8,
    chunk_size: AtomicU64,
    /// One fallback-tag update at a time from this process (two referrers of one subject
    /// are pushed in the same round; each must see the other's write).
    fallback: Mutex<()>,
}

impl<'c> Repo<'c> {
    /// `name` on `client`'s registry, for pulling (`push`: also for pushing; `mount_from`:
    /// another repository blobs may be mounted from).
    pub fn new(client: &'c Client, name: &str, push: bool, mount_from: Option<&str>) -> Repo<'c> {
        let mut scope = format!(
            "repository:{name}:{}",
            if push { "pull,push" } else { "pull" }
        );
        if let Some(from) = mount_from {
            scope.push_str(&format!(" repository:{from}:pull"));
        }
        Repo {
            client,
            name: name.to_string(),
            scope,
            referrers_mode: AtomicU8::new(REFERRERS_UNKNOWN),
            chunk_size: AtomicU64::new(client.options().chunk_size),
            fallback: Mutex::new(()),
        }
    }

    /// The repository's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client.
    pub fn client(&self) -> &'c Client {
        self.client
    }

    /// The URL of `rest` under this repository (`manifests/<ref>`, `blobs/<digest>`, ...).
    pub(crate) fn url(&self, rest: &str) -> String {
        self.client.url(&format!("/v2/{}/{rest}", self.name))
    }

    fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        self.client.send(method, url, headers, body, &self.scope)
    }

    /// `GET` a manifest by tag or digest, verified: by digest, its bytes must hash to it; by
    /// tag, to `Docker-Content-Digest` when the registry sends one. A signed schema1
    /// manifest is checked by its canonical payload, as registries name it. `None`: unknown.
    pub fn get_manifest(&self, reference: &str) -> Result<Option<Fetched>> {
        let url = self.url(&format!("manifests/{reference}"));
        let mut resp = self.send(
            Method::GET,
            &url,
            &[("accept", MANIFEST_ACCEPT.to_string())],
            Body::Empty,
        )?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => return Err(status_error("GET", &url, &mut resp)),
        }
        let verify = |reason: String| Error::Verify {
            url: url.clone(),
            digest: reference.to_string(),
            reason,
        };
        if let Some(len) = content_length(&resp) {
            if len > MANIFEST_LIMIT {
                return Err(verify(format!(
                    "the manifest is {len} bytes, over the {MANIFEST_LIMIT}-byte limit"
                )));
            }
        }
        let content_type = header(&resp, "content-type");
        let claimed = header(&resp, "docker-content-digest");
        let bytes = read_capped(&mut resp, &url)?;
        if bytes.len() as u64 > MANIFEST_LIMIT {
            return Err(verify(format!(
                "the manifest is over the {MANIFEST_LIMIT}-byte limit"
            )));
        }
        let expected = match Digest::parse(reference) {
            Ok(d) => Some(d),
            Err(_) => match claimed.as_deref().map(Digest::parse) {
                Some(Ok(d)) => Some(d),
                Some(Err(_)) => {
                    return Err(verify(format!(
                        "Docker-Content-Digest `{}` is not a digest",
                        claimed.unwrap_or_default()
                    )))
                }
                None => None,
            },
        };
        let digest = Digest::sha256(&bytes);
        if let Some(expected) = expected {
            let matches = match expected.algorithm() {
                Some(alg) => {
                    Digest::of(alg, &bytes) == expected
                        || schema1_payload(&bytes).is_some_and(|p| Digest::of(alg, &p) == expected)
                }
                None => {
                    return Err(verify(format!(
                        "`{expected}` uses an algorithm this client cannot verify"
                    )))
                }
            };
            if !matches {
                return Err(verify(format!(
                    "the manifest's bytes hash to `{digest}`, not to `{expected}`"
                )));
            }
        }
        let media_type = document_type(content_type.as_deref(), &bytes);
        Ok(Some(Fetched {
            bytes,
            digest,
            media_type,
        }))
    }

    /// `HEAD` a manifest: its digest (from `Docker-Content-Digest`) when the registry has it.
    pub fn head_manifest(&self, reference: &str) -> Result<Option<Option<Digest>>> {
        let url = self.url(&format!("manifests/{reference}"));
        let mut resp = self.send(
            Method::HEAD,
            &url,
            &[("accept", MANIFEST_ACCEPT.to_string())],
            Body::Empty,
        )?;
        match resp.status().as_u16() {
            200 => Ok(Some(
                header(&resp, "docker-content-digest").and_then(|d| Digest::parse(&d).ok()),
            )),
            404 => Ok(None),
            _ => Err(status_error("HEAD", &url, &mut resp)),
        }
    }

    /// `HEAD` a blob: its size when the registry has it.
    pub fn head_blob(&self, digest: &Digest) -> Result<Option<u64>> {
        let url = self.url(&format!("blobs/{digest}"));
        let mut resp = self.send(Method::HEAD, &url, &[], Body::Empty)?;
        match resp.status().as_u16() {
            200 => Ok(Some(content_length(&resp).unwrap_or(0))),
            404 => Ok(None),
            _ => Err(status_error("HEAD", &url, &mut resp)),
        }
    }

    /// A reader over a blob, verified against `digest` and `size` at EOF; a body cut short is
    /// resumed with `Range` from where it stopped.
    pub fn open_blob(&self, digest: &Digest, size: u64) -> Result<Box<dyn Read + Send + 'c>> {
        self.open_blob_as(digest, size, true)
    }

    /// [`Repo::open_blob`] without the hashing, for a reader whose bytes the caller verifies
    /// (a layout's blob writer does): resumed the same way.
    pub fn open_blob_unverified(
        &self,
        digest: &Digest,
        size: u64,
    ) -> Result<Box<dyn Read + Send + 'c>> {
        self.open_blob_as(digest, size, false)
    }

    fn open_blob_as(
        &self,
        digest: &Digest,
        size: u64,
        verify: bool,
    ) -> Result<Box<dyn Read + Send + 'c>> {
        let alg = digest.algorithm().ok_or_else(|| Error::Verify {
            url: self.url(&format!("blobs/{digest}")),
            digest: digest.to_string(),
            reason: "an algorithm this client cannot verify".into(),
        })?;
        let url = self.url(&format!("blobs/{digest}"));
        let inner = Resuming {
            client: self.client,
            scope: self.scope.clone(),
            url: url.clone(),
            digest: digest.clone(),
            size,
            pos: 0,
            body: None,
            resumes: 0,
            label: Arc::from(digest.as_str()),
        };
        self.client.progress(Progress::Start {
            digest: inner.label.clone(),
            size,
        });
        if !verify {
            return Ok(Box::new(inner));
        }
        Ok(Box::new(VerifyingReader::new(
            inner,
            alg.hasher(),
            digest.clone(),
            Some(size),
            PathBuf::from(url),
        )))
    }

    /// Whether the blob is there; if not, and `from` names another repository of the same
    /// registry, try to mount it from there (`true`: mounted).
    pub fn mount(&self, digest: &Digest, from: &str) -> Result<bool> {
        let url = format!(
            "{}?mount={}&from={}",
            self.url("blobs/uploads/"),
            super::encode(digest.as_str()),
            super::encode(from)
        );
        let mut resp = self.send(
            Method::POST,
            &url,
            &[("content-length", "0".into())],
            Body::Empty,
        )?;
        match resp.status().as_u16() {
            201 => Ok(true),
            // 202: the registry started an upload instead; leave it (it expires).
            202 => Ok(false),
            _ => Err(status_error("POST", &url, &mut resp)),
        }
    }

    /// Upload a blob of `size` bytes from `r`: one `PUT` (`Content-Length` set), or `PATCH`
    /// chunks when the registry (or a proxy) refused a large body before. A refused body
    /// switches this repository to chunks and fails transiently, so the caller sends again.
    pub fn upload(&self, digest: &Digest, size: u64, r: &mut dyn Read) -> Result<()> {
        let start = self.url("blobs/uploads/");
        let mut resp = self.send(
            Method::POST,
            &start,
            &[("content-length", "0".into())],
            Body::Empty,
        )?;
        if resp.status().as_u16() != 202 {
            return Err(status_error("POST", &start, &mut resp));
        }
        let mut location = self.location(&start, &resp)?;
        let chunk = self.chunk_size.load(Ordering::Relaxed);
        let mut counted = Counting {
            inner: r,
            client: self.client,
            digest: Arc::from(digest.as_str()),
        };
        if chunk == 0 || size <= chunk {
            let url = with_query(
                &location,
                &format!("digest={}", super::encode(digest.as_str())),
            );
            let mut resp = self.send(
                Method::PUT,
                &url,
                &[("content-type", "application/octet-stream".into())],
                Body::Stream(&mut counted, size),
            )?;
            return match resp.status().as_u16() {
                201 => Ok(()),
                413 => {
                    self.smaller_chunks(size);
                    Err(status_error("PUT", &url, &mut resp))
                }
                _ => Err(status_error("PUT", &url, &mut resp)),
            };
        }
        let mut sent = 0u64;
        while sent < size {
            let n = chunk.min(size - sent);
            let mut part = (&mut counted).take(n);
            let mut resp = self.send(
                Method::PATCH,
                &location,
                &[
                    ("content-type", "application/octet-stream".into()),
                    ("content-range", format!("{sent}-{}", sent + n - 1)),
                ],
                Body::Stream(&mut part, n),
            )?;
            match resp.status().as_u16() {
                202 => {}
                413 => {
                    self.smaller_chunks(n);
                    return Err(status_error("PATCH", &location, &mut resp));
                }
                _ => return Err(status_error("PATCH", &location, &mut resp)),
            }
            location = self.location(&location, &resp)?;
            sent += n;
        }
        let url = with_query(
            &location,
            &format!("digest={}", super::encode(digest.as_str())),
        );
        let mut resp = self.send(
            Method::PUT,
            &url,
            &[("content-length", "0".into())],
            Body::Empty,
        )?;
        match resp.status().as_u16() {
            201 => Ok(()),
            _ => Err(status_error("PUT", &url, &mut resp)),
        }
    }

    /// After a 413 for a body of `refused` bytes: send chunks of half that from now on.
    fn smaller_chunks(&self, refused: u64) {
        let next = (refused / 2).max(64 << 10);
        let _ = self
            .chunk_size
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(if c == 0 { next } else { c.min(next) })
            });
    }

    /// The chunk size uploads use now (0: whole blobs).
    pub fn chunk_size(&self) -> u64 {
        self.chunk_size.load(Ordering::Relaxed)
    }

    fn location(&self, url: &str, resp: &ureq::http::Response<ureq::Body>) -> Result<String> {
        header(resp, "location")
            .map(|l| self.client.resolve(&l))
            .ok_or_else(|| Error::Verify {
                url: url.to_string(),
                digest: String::new(),
                reason: "the registry gave no upload location".into(),
            })
    }

    /// `PUT` a manifest under `reference` (its digest, or a tag). Returns whether the registry
    /// said it indexed the manifest's `subject` (`OCI-Subject`).
    pub fn put_manifest(&self, reference: &str, media_type: &str, bytes: &[u8]) -> Result<bool> {
        let url = self.url(&format!("manifests/{reference}"));
        let mut resp = self.send(
            Method::PUT,
            &url,
            &[("content-type", media_type.to_string())],
            Body::Bytes(bytes),
        )?;
        match resp.status().as_u16() {
            200..=202 => Ok(header(&resp, "oci-subject").is_some()),
            _ => Err(status_error("PUT", &url, &mut resp)),
        }
    }

    /// The manifests whose `subject` is `subject`: from the referrers API when the registry
    /// has it, else from the fallback tag `<alg>-<hex>` (an index of them).
    pub fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>> {
        if self.referrers_mode.load(Ordering::Relaxed) != REFERRERS_TAG {
            let url = self.url(&format!("referrers/{subject}"));
            let mut resp = self.send(
                Method::GET,
                &url,
                &[("accept", MediaType::OciIndex.as_str().to_string())],
                Body::Empty,
            )?;
            match resp.status().as_u16() {
                200 => {
                    self.referrers_mode.store(REFERRERS_API, Ordering::Relaxed);
                    let bytes = read_capped(&mut resp, &url)?;
                    if bytes.len() as u64 > MANIFEST_LIMIT {
                        return Err(Error::Verify {
                            url,
                            digest: subject.to_string(),
                            reason: format!(
                                "the referrers index is over the {MANIFEST_LIMIT}-byte limit"
                            ),
                        });
                    }
                    return parse_referrers(&url, subject, &bytes);
                }
                404 | 405 | 400 => {
                    self.referrers_mode.store(REFERRERS_TAG, Ordering::Relaxed);
                }
                _ => return Err(status_error("GET", &url, &mut resp)),
            }
        }
        match self.get_manifest(&fallback_tag(subject))? {
            Some(f) => parse_referrers(&self.url("manifests/"), subject, &f.bytes),
            None => Ok(Vec::new()),
        }
    }

    /// Whether the registry is known to answer the referrers API.
    pub fn has_referrers_api(&self) -> Option<bool> {
        match self.referrers_mode.load(Ordering::Relaxed) {
            REFERRERS_API => Some(true),
            REFERRERS_TAG => Some(false),
            _ => None,
        }
    }

    /// Add `referrer` to the fallback tag's index of `subject`'s referrers: read, merge,
    /// write, then read again until it holds (another writer may have written in between).
    pub fn add_to_fallback_tag(&self, subject: &Digest, referrer: &Descriptor) -> Result<()> {
        let tag = fallback_tag(subject);
        let _one = self.fallback.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..5 {
            let mut index = match self.get_manifest(&tag)? {
                Some(f) => {
                    serde_json::from_slice::<Index>(&f.bytes).unwrap_or_else(|_| Index::empty())
                }
                None => Index::empty(),
            };
            if index.manifests.iter().any(|m| m.digest == referrer.digest) {
                return Ok(());
            }
            index.media_type = Some(MediaType::OciIndex);
            index.manifests.push(referrer.clone());
            let bytes = serde_json::to_vec(&index).map_err(|e| Error::Verify {
                url: self.url(&format!("manifests/{tag}")),
                digest: tag.clone(),
                reason: e.to_string(),
            })?;
            self.put_manifest(&tag, MediaType::OciIndex.as_str(), &bytes)?;
            // Read back: a concurrent writer's index may have replaced ours.
            if let Some(f) = self.get_manifest(&tag)? {
                if let Ok(ix) = serde_json::from_slice::<Index>(&f.bytes) {
                    if ix.manifests.iter().any(|m| m.digest == referrer.digest) {
                        return Ok(());
                    }
                }
            }
        }
        Err(Error::Verify {
            url: self.url(&format!("manifests/{tag}")),
            digest: tag,
            reason: "other writers kept replacing the referrers index".into(),
        })
    }
}

/// The fallback tag of `subject`'s referrers: `<alg>-<hex>`.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm_str(), subject.encoded())
}

fn parse_referrers(url: &str, subject: &Digest, bytes: &[u8]) -> Result<Vec<Descriptor>> {
    let index: Index = serde_json::from_slice(bytes).map_err(|e| Error::Verify {
        url: url.to_string(),
        digest: subject.to_string(),
        reason: format!("the referrers index does not parse: {e}"),
    })?;
    Ok(index.manifests)
}

/// Counts the bytes of an upload for progress.
struct Counting<'a, 'c> {
    inner: &'a mut dyn Read,
    client: &'c Client,
    digest: Arc<str>,
}

impl Read for Counting<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.client.progress(Progress::Bytes {
            digest: self.digest.clone(),
            n: n as u64,
        });
        Ok(n)
    }
}

/// A blob body that resumes with `Range` when the connection drops before `size` bytes.
struct Resuming<'c> {
    client: &'c Client,
    scope: String,
    url: String,
    digest: Digest,
    size: u64,
    pos: u64,
    body: Option<ureq::BodyReader<'static>>,
    resumes: u32,
    label: Arc<str>,
}

impl Resuming<'_> {
    fn open(&mut self) -> io::Result<()> {
        let mut headers = Vec::new();
        if self.pos > 0 {
            headers.push(("range", format!("bytes={}-", self.pos)));
        }
        let mut resp = self
            .client
            .send(Method::GET, &self.url, &headers, Body::Empty, &self.scope)
            .map_err(io::Error::other)?;
        let status = resp.status().as_u16();
        let mut skip = 0;
        match status {
            200 => skip = self.pos,
            206 if self.pos > 0 => {
                let start = header(&resp, "content-range").and_then(|r| {
                    r.strip_prefix("bytes ")
                        .and_then(|r| r.split('-').next())
                        .and_then(|s| s.parse::<u64>().ok())
                });
                if start != Some(self.pos) {
                    return Err(io::Error::other(Error::Verify {
                        url: self.url.clone(),
                        digest: self.digest.to_string(),
                        reason: format!("asked for bytes from {}, got another range", self.pos),
                    }));
                }
            }
            _ => return Err(io::Error::other(status_error("GET", &self.url, &mut resp))),
        }
        let mut body = resp.into_body().into_reader();
        if skip > 0 {
            io::copy(&mut (&mut body).take(skip), &mut io::sink())?;
        }
        self.body = Some(body);
        Ok(())
    }
}

impl Read for Resuming<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.body.is_none() {
                self.open()?;
            }
            let r = match self.body.as_mut() {
                Some(b) => b.read(buf),
                None => Ok(0),
            };
            match r {
                Ok(0) if self.pos < self.size && self.resumes < self.client.options().attempts => {}
                Ok(n) => {
                    self.pos += n as u64;
                    if self.pos > self.size {
                        // Never more than declared reaches the caller, verified or not: a body
                        // that does not end must not fill a disk.
                        return Err(io::Error::other(Error::Verify {
                            url: self.url.clone(),
                            digest: self.digest.to_string(),
                            reason: format!(
                                "the body is longer than the {} bytes declared",
                                self.size
                            ),
                        }));
                    }
                    self.client.progress(Progress::Bytes {
                        digest: self.label.clone(),
                        n: n as u64,
                    });
                    return Ok(n);
                }
                Err(_) if self.resumes < self.client.options().attempts => {}
                Err(e) => {
                    return Err(io::Error::other(Error::Transport {
                        url: self.url.clone(),
                        reason: format!("`{}` cut at byte {}: {e}", self.digest, self.pos),
                    }))
                }
            }
            // The body ended early or failed: resume after what was read.
            self.resumes += 1;
            self.body = None;
            std::thread::sleep(std::time::Duration::from_millis(100 << self.resumes.min(6)));
        }
    }
}

/// A document body, at most one byte over [`MANIFEST_LIMIT`] read (the caller judges).
fn read_capped(resp: &mut ureq::http::Response<ureq::Body>, url: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    resp.body_mut()
        .as_reader()
        .take(MANIFEST_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Transport {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    Ok(bytes)
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn content_length(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    header(resp, "content-length").and_then(|v| v.trim().parse().ok())
}

fn with_query(url: &str, q: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{q}")
}

/// A manifest's media type: `Content-Type` without parameters (unless generic), else the
/// document's `mediaType`, else its shape. Unknown types are kept as they are.
pub fn document_type(content_type: Option<&str>, bytes: &[u8]) -> MediaType {
    let ct = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|c| {
            !c.is_empty()
                && !matches!(
                    c.as_str(),
                    "application/json" | "text/plain" | "application/octet-stream"
                )
        });
    if let Some(ct) = ct {
        return MediaType::parse(&ct);
    }
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return MediaType::parse("application/octet-stream");
    };
    if let Some(mt) = v.get("mediaType").and_then(Value::as_str) {
        return MediaType::parse(mt);
    }
    match ocikit_layout::walk::shape_class(&v) {
        ocikit_layout::Class::Index => MediaType::OciIndex,
        ocikit_layout::Class::Manifest => MediaType::OciManifest,
        ocikit_layout::Class::Schema1 if v.get("signatures").is_some() => {
            MediaType::parse("application/vnd.docker.distribution.manifest.v1+prettyjws")
        }
        ocikit_layout::Class::Schema1 => {
            MediaType::parse("application/vnd.docker.distribution.manifest.v1+json")
        }
        _ => MediaType::parse("application/octet-stream"),
    }
}

/// The canonical payload of a signed schema1 manifest (what registries digest it by): the
/// bytes up to the JWS header's `formatLength`, then its `formatTail`.
pub fn schema1_payload(bytes: &[u8]) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let protected = v.get("signatures")?.get(0)?.get("protected")?.as_str()?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: Value =
        serde_json::from_slice(&b64.decode(protected.trim_end_matches('=')).ok()?).ok()?;
    let len = usize::try_from(header.get("formatLength")?.as_u64()?).ok()?;
    let tail = b64
        .decode(header.get("formatTail")?.as_str()?.trim_end_matches('='))
        .ok()?;
    let mut out = bytes.get(..len)?.to_vec();
    out.extend_from_slice(&tail);
    Some(out)
}
