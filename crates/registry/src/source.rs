//! [`RegistrySource`]: a repository of a registry as the engine's [`ImageSource`].

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;

use ocikit_layout::engine::ImageSource;
use ocikit_layout::{Descriptor, Digest, Index};

use crate::client::repo::Repo;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::reference::ImageRef;

/// One image of a repository, as a source: its root is the manifest or index the reference
/// names (fetched and verified once); documents are fetched by digest and kept in memory for
/// the run; blobs are streamed, verified, resumed when cut.
#[derive(Debug)]
pub struct RegistrySource<'c> {
    repo: Repo<'c>,
    root: Descriptor,
    docs: Mutex<HashMap<Digest, Vec<u8>>>,
}

impl<'c> RegistrySource<'c> {
    /// Resolve `image` on `client`'s registry; its entry is named `ref_name` (none: untagged).
    pub fn resolve(
        client: &'c Client,
        image: &ImageRef,
        ref_name: Option<String>,
    ) -> Result<RegistrySource<'c>> {
        let repo = Repo::new(client, &image.repository, false, None);
        let reference = image.reference();
        let fetched = repo
            .get_manifest(&reference)?
            .ok_or_else(|| Error::Missing {
                url: repo.url(&format!("manifests/{reference}")),
                what: reference.clone(),
            })?;
        let mut root = Descriptor::new(
            fetched.media_type.clone(),
            fetched.digest.clone(),
            fetched.bytes.len() as u64,
        );
        root.set_ref_name(ref_name.as_deref());
        let mut docs = HashMap::new();
        docs.insert(fetched.digest, fetched.bytes);
        Ok(RegistrySource {
            repo,
            root,
            docs: Mutex::new(docs),
        })
    }

    /// The root's descriptor (media type, digest, size; the ref name given).
    pub fn root(&self) -> &Descriptor {
        &self.root
    }

    fn cached(&self, digest: &Digest) -> Option<Vec<u8>> {
        self.docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
            .cloned()
    }

    fn document(&self, digest: &Digest) -> Result<Vec<u8>> {
        if let Some(b) = self.cached(digest) {
            return Ok(b);
        }
        let f = self
            .repo
            .get_manifest(digest.as_str())?
            .ok_or_else(|| Error::Missing {
                url: self.repo.url(&format!("manifests/{digest}")),
                what: digest.to_string(),
            })?;
        if &f.digest != digest {
            // A signed schema1 manifest named by its canonical digest: the layout keeps it
            // under the digest of its bytes, which is not what was asked for.
            return Err(Error::Verify {
                url: self.repo.url(&format!("manifests/{digest}")),
                digest: digest.to_string(),
                reason: format!("its bytes hash to `{}`", f.digest),
            });
        }
        self.docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(digest.clone(), f.bytes.clone());
        Ok(f.bytes)
    }
}

fn layout_err(e: Error) -> ocikit_layout::Error {
    e.into_layout()
}

impl ImageSource for RegistrySource<'_> {
    fn roots(&self) -> ocikit_layout::Result<Index> {
        let mut index = Index::empty();
        index.manifests = vec![self.root.clone()];
        Ok(index)
    }

    fn read_document(
        &self,
        digest: &Digest,
        size: Option<u64>,
        limit: u64,
    ) -> ocikit_layout::Result<Vec<u8>> {
        let bytes = self.document(digest).map_err(layout_err)?;
        let len = bytes.len() as u64;
        if len > limit {
            return Err(ocikit_layout::Error::TooLarge {
                what: digest.to_string(),
                size: len,
                limit,
            });
        }
        if let Some(s) = size.filter(|&s| s != len) {
            return Err(layout_err(Error::Verify {
                url: self.repo.url(&format!("manifests/{digest}")),
                digest: digest.to_string(),
                reason: format!("{len} bytes, the descriptor says {s}"),
            }));
        }
        Ok(bytes)
    }

    fn stat(&self, digest: &Digest) -> ocikit_layout::Result<Option<u64>> {
        if let Some(b) = self.cached(digest) {
            return Ok(Some(b.len() as u64));
        }
        if let Some(n) = self.repo.head_blob(digest).map_err(layout_err)? {
            return Ok(Some(n));
        }
        match self
            .repo
            .head_manifest(digest.as_str())
            .map_err(layout_err)?
        {
            Some(_) => Ok(Some(self.document(digest).map_err(layout_err)?.len() as u64)),
            None => Ok(None),
        }
    }

    fn open(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> ocikit_layout::Result<Box<dyn Read + '_>> {
        self.open_as(digest, size, true)
    }

    fn open_unverified(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> ocikit_layout::Result<Box<dyn Read + '_>> {
        self.open_as(digest, size, false)
    }

    fn referrers(&self, subject: &Digest) -> ocikit_layout::Result<Option<Vec<Descriptor>>> {
        Ok(Some(self.repo.referrers(subject).map_err(layout_err)?))
    }

    fn parallelism(&self) -> usize {
        self.repo.client().options().parallelism
    }
}

impl RegistrySource<'_> {
    /// A blob's reader: from the documents kept in memory, else streamed (hashed when
    /// `verify`).
    fn open_as(
        &self,
        digest: &Digest,
        size: Option<u64>,
        verify: bool,
    ) -> ocikit_layout::Result<Box<dyn Read + '_>> {
        if let Some(b) = self.cached(digest) {
            return Ok(Box::new(std::io::Cursor::new(b)));
        }
        let size = match size {
            Some(s) => s,
            None => self
                .repo
                .head_blob(digest)
                .map_err(layout_err)?
                .ok_or_else(|| {
                    layout_err(Error::Missing {
                        url: self.repo.url(&format!("blobs/{digest}")),
                        what: digest.to_string(),
                    })
                })?,
        };
        let r = if verify {
            self.repo.open_blob(digest, size)
        } else {
            self.repo.open_blob_unverified(digest, size)
        };
        Ok(r.map_err(layout_err)?)
    }
}
