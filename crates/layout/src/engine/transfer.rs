//! [`transfer()`]: move what a plan names from a source into a sink.

use crate::fsck::run_parallel_on;
use crate::layout::Existing;
use crate::{Error, Result, JSON_LIMIT};

use super::{ImageSink, ImageSource, Plan, PlannedBlob};

/// How one blob reached the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// The destination already had it (verified).
    Present,
    /// Hard-linked from a layout on the same filesystem (after verifying it).
    Linked,
    /// Copied or streamed, verified on the way.
    Copied,
    /// The destination had a corrupt file in its place; replaced by the source's bytes.
    Replaced,
    /// Optional and absent from the source: not carried.
    Absent,
}

/// What [`transfer()`] did, blob by blob.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferReport {
    /// Blobs hard-linked.
    pub linked: usize,
    /// Blobs copied or streamed.
    pub copied: usize,
    /// Blobs the destination already had (size and digest checked).
    pub present: usize,
    /// Blobs the destination had corrupt (wrong size or digest), replaced.
    pub replaced: usize,
    /// Optional blobs the source does not have (a `subject` elsewhere, a foreign layer).
    pub absent: usize,
}

impl TransferReport {
    fn count(&mut self, m: Moved) {
        match m {
            Moved::Present => self.present += 1,
            Moved::Linked => self.linked += 1,
            Moved::Copied => self.copied += 1,
            Moved::Replaced => self.replaced += 1,
            Moved::Absent => self.absent += 1,
        }
    }
}

/// Move every blob of `plan` for which `wanted` is true from `src` into `dst`: in parallel,
/// every byte verified, blobs the destination holds intact kept, corrupt ones replaced.
/// Blobs that are not documents go first; then documents, each only after every document it
/// names (children first, as a registry needs: it refuses a manifest whose blobs it lacks).
/// Commits no ref: the caller commits ([`ImageSink::commit`]) once every blob is in place.
pub fn transfer<S: ImageSource + ?Sized, K: ImageSink + ?Sized>(
    src: &S,
    plan: &Plan,
    wanted: impl Fn(&PlannedBlob) -> bool + Sync,
    dst: &K,
) -> Result<TransferReport> {
    let workers = src.parallelism().max(dst.parallelism());
    let mut report = TransferReport::default();
    let leaves: Vec<&PlannedBlob> = plan
        .blobs
        .iter()
        .filter(|b| !b.document && wanted(b))
        .collect();
    for r in run_parallel_on(&leaves, workers, |b| Some(move_retrying(src, b, dst)))
        .into_iter()
        .flatten()
    {
        report.count(r?);
    }
    for round in document_rounds(plan)? {
        let docs: Vec<&PlannedBlob> = round
            .into_iter()
            .map(|i| &plan.blobs[i])
            .filter(|b| wanted(b))
            .collect();
        for r in run_parallel_on(&docs, workers, |b| Some(move_retrying(src, b, dst)))
            .into_iter()
            .flatten()
        {
            report.count(r?);
        }
    }
    Ok(report)
}

/// The plan's documents in rounds: each round names only documents whose child documents are
/// in earlier rounds.
fn document_rounds(plan: &Plan) -> Result<Vec<Vec<usize>>> {
    let docs = |i: usize| {
        plan.children_of(i)
            .iter()
            .map(|&c| c as usize)
            .filter(move |&c| plan.blobs[c].document && c != i)
    };
    let mut done = vec![false; plan.blobs.len()];
    let mut pending: Vec<usize> = (0..plan.blobs.len())
        .filter(|&i| plan.blobs[i].document)
        .collect();
    let mut rounds = Vec::new();
    while !pending.is_empty() {
        let (ready, rest): (Vec<usize>, Vec<usize>) =
            pending.iter().partition(|&&i| docs(i).all(|c| done[c]));
        if ready.is_empty() {
            return Err(Error::BadDocument {
                digest: plan.blobs[rest[0]].digest.clone(),
                reason: "names itself through its children".into(),
            });
        }
        for &i in &ready {
            done[i] = true;
        }
        rounds.push(ready);
        pending = rest;
    }
    Ok(rounds)
}

/// How often a blob is moved again, from a fresh reader, after a transient failure of the
/// source or sink (a stream cut after a body was partly sent cannot be resumed in place).
const ATTEMPTS: usize = 3;

fn move_retrying<S: ImageSource + ?Sized, K: ImageSink + ?Sized>(
    src: &S,
    b: &PlannedBlob,
    dst: &K,
) -> Result<Moved> {
    let mut attempt = 1;
    loop {
        match move_one(src, b, dst) {
            Err(e) if e.is_transient() && attempt < ATTEMPTS => attempt += 1,
            r => return r,
        }
    }
}

fn move_one<S: ImageSource + ?Sized, K: ImageSink + ?Sized>(
    src: &S,
    b: &PlannedBlob,
    dst: &K,
) -> Result<Moved> {
    let held = if b.optional || b.size.is_none() {
        match src.stat(&b.digest)? {
            None if b.optional => return Ok(Moved::Absent),
            None => {
                // Open it for the source's own "missing" error.
                src.open(&b.digest, b.size)?;
                return Err(Error::BadDocument {
                    digest: b.digest.clone(),
                    reason: "is missing".into(),
                });
            }
            s => s,
        }
    } else {
        None
    };
    let size = b.size.or(held).unwrap_or_default();
    if let Some(layout) = src.local_layout() {
        if let Some(moved) = dst.link_from(layout, &b.digest, size)? {
            return Ok(moved);
        }
    }
    let existing = if b.document {
        dst.existing_document(&b.digest, size)?
    } else {
        dst.existing(&b.digest, size)?
    };
    let replacing = match existing {
        Existing::Intact => return Ok(Moved::Present),
        Existing::Corrupt => true,
        Existing::Absent => false,
    };
    if b.document {
        let bytes = src.read_document(&b.digest, Some(size), JSON_LIMIT)?;
        dst.put_document(b, &bytes)?;
    } else {
        let mut r = if dst.verifies() {
            src.open_unverified(&b.digest, Some(size))?
        } else {
            src.open(&b.digest, Some(size))?
        };
        dst.put_blob(&b.digest, size, &mut r)?;
    }
    Ok(if replacing {
        Moved::Replaced
    } else {
        Moved::Copied
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Read;

    use super::*;
    use crate::engine::{plan, RefChange};
    use crate::{Descriptor, Digest, Index, Layout, MediaType, Options};

    /// A source that is not a layout: blobs in memory, verified on read.
    struct Mem(BTreeMap<Digest, Vec<u8>>, Vec<Descriptor>);

    impl ImageSource for Mem {
        fn roots(&self) -> Result<Index> {
            let mut ix = Index::empty();
            ix.manifests = self.1.clone();
            Ok(ix)
        }
        fn read_document(&self, d: &Digest, size: Option<u64>, limit: u64) -> Result<Vec<u8>> {
            let mut buf = Vec::new();
            self.open(d, size)?
                .take(limit)
                .read_to_end(&mut buf)
                .map_err(|e| crate::unwrap_io(e, std::path::Path::new("mem")))?;
            Ok(buf)
        }
        fn stat(&self, d: &Digest) -> Result<Option<u64>> {
            Ok(self.0.get(d).map(|b| b.len() as u64))
        }
        fn open(&self, d: &Digest, size: Option<u64>) -> Result<Box<dyn Read + '_>> {
            let b = self.0.get(d).ok_or_else(|| Error::MissingBlob {
                digest: d.clone(),
                path: "mem".into(),
            })?;
            Ok(Box::new(crate::VerifyingReader::new(
                b.as_slice(),
                crate::Algorithm::Sha256.hasher(),
                d.clone(),
                size,
                "mem".into(),
            )))
        }
    }

    fn desc(mt: MediaType, b: &[u8]) -> Descriptor {
        Descriptor::new(mt, Digest::sha256(b), b.len() as u64)
    }

    #[test]
    fn a_source_that_is_not_a_layout_moves_verified_and_skips_what_is_there() {
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let layer = b"a layer".to_vec();
        let absent_subject = desc(MediaType::OciManifest, b"not here");
        let (c, l) = (
            desc(MediaType::OciConfig, &config),
            desc(MediaType::OciLayer, &layer),
        );
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}],"subject":{}}}"#,
            serde_json::to_string(&c).expect("json"),
            serde_json::to_string(&l).expect("json"),
            serde_json::to_string(&absent_subject).expect("json"),
        );
        let mut m = desc(MediaType::OciManifest, manifest.as_bytes());
        m.set_ref_name(Some("app:1"));
        let blobs: BTreeMap<Digest, Vec<u8>> = [
            (c.digest.clone(), config),
            (l.digest.clone(), layer.clone()),
            (m.digest.clone(), manifest.into_bytes()),
        ]
        .into_iter()
        .collect();
        let src = Mem(blobs, vec![m.clone()]);
        let dir = tempfile::tempdir().expect("tmp");
        let opts = Options {
            durable: false,
            ..Options::default()
        };
        let (dst, _) = Layout::init(dir.path().join("dst"), opts).expect("init");
        let lock = dst.lock().expect("lock");
        let roots = src.roots().expect("roots").manifests;
        let p = plan(&src, &roots).expect("plan");
        assert_eq!(p.blobs.len(), 4);

        let r = transfer(&src, &p, |_| true, &lock).expect("transfer");
        assert_eq!(
            r,
            TransferReport {
                copied: 3,
                absent: 1,
                ..TransferReport::default()
            }
        );
        let updates = lock.commit(&roots).expect("commit");
        assert_eq!(updates[0].change, RefChange::Created);
        assert_eq!(updates[0].name.as_deref(), Some("app:1"));

        // Again: everything is there, verified.
        let r = transfer(&src, &p, |_| true, &lock).expect("transfer");
        assert_eq!((r.present, r.copied, r.absent), (3, 0, 1));

        // A corrupt copy in the destination is replaced.
        std::fs::write(dst.blob_path(&l.digest), b"a lAyer").expect("corrupt");
        let r = transfer(&src, &p, |_| true, &lock).expect("transfer");
        assert_eq!((r.present, r.replaced), (2, 1));
        assert_eq!(dst.read_blob(&l.digest, Some(7), 64).expect("read"), layer);

        // A required blob the source lacks fails, naming it.
        let mut lacking = src.0.clone();
        lacking.remove(&l.digest);
        let lacking = Mem(lacking, roots.clone());
        std::fs::remove_file(dst.blob_path(&l.digest)).expect("rm");
        let e = transfer(&lacking, &p, |_| true, &lock).expect_err("missing");
        assert!(
            matches!(&e, Error::MissingBlob { digest, .. } if digest == &l.digest),
            "{e}"
        );
    }
}
