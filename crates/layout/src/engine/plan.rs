//! [`plan()`]: from roots to every blob they need, in one bounded traversal.

use std::collections::HashMap;
use std::sync::Arc;

use crate::media_type::Class;
use crate::walk::{read_doc, DocStatus, Role, MAX_DEPTH};
use crate::{Descriptor, Digest, Error, MediaType, Result, JSON_LIMIT};

use super::ImageSource;

/// One blob a plan carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size as the descriptors declare it (`None` for schema1 layers, which declare none).
    pub size: Option<u64>,
    /// The media type of the first descriptor that named it.
    pub media_type: MediaType,
    /// Every descriptor naming it allows it to be absent: a `subject` (a referrer may travel
    /// without the manifest it refers to), or a non-distributable layer with `urls`.
    pub optional: bool,
    /// It was read as a manifest or index (its children are in the plan).
    pub document: bool,
}

/// What a set of roots needs: each blob once, parents before children, in document order.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The blobs.
    pub blobs: Vec<PlannedBlob>,
    /// For each blob (same order), the positions of the blobs it names.
    children: Vec<Vec<u32>>,
    /// The position of each root's blob, in the order the roots were given.
    roots: Vec<u32>,
    /// (document, its `subject`) pairs, as positions in `blobs`.
    subjects: Vec<(u32, u32)>,
    by_digest: HashMap<Digest, u32>,
}

impl Plan {
    /// The blob with this digest.
    pub fn get(&self, digest: &Digest) -> Option<&PlannedBlob> {
        self.by_digest.get(digest).map(|&i| &self.blobs[i as usize])
    }

    /// The positions (in [`Plan::blobs`]) of the blobs blob `i` names, in document order.
    pub fn children_of(&self, i: usize) -> &[u32] {
        &self.children[i]
    }

    /// Every document of the plan that has a `subject` (a referrer: signature, SBOM,
    /// attestation), with the subject, as positions in [`Plan::blobs`], in the order the
    /// traversal met them. The subject itself may be absent from the source (it is optional).
    pub fn subjects(&self) -> &[(u32, u32)] {
        &self.subjects
    }

    /// The position of root `n`'s blob (in the order given to [`plan()`]).
    pub fn root(&self, n: usize) -> u32 {
        self.roots[n]
    }

    /// Every blob root `n` (in the order given to [`plan()`]) needs, itself first, each once,
    /// in document order. Computed from the kept child lists: nothing is read again.
    pub fn closure(&self, n: usize) -> Vec<&PlannedBlob> {
        let mut seen = vec![false; self.blobs.len()];
        let mut out = Vec::new();
        let mut stack = vec![self.roots[n]];
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut seen[i as usize], true) {
                continue;
            }
            out.push(&self.blobs[i as usize]);
            stack.extend(self.children[i as usize].iter().rev());
        }
        out
    }
}

/// A descriptor waiting to be visited.
struct Pending {
    desc: Descriptor,
    size_known: bool,
    role: Role,
    depth: usize,
    parent: Option<u32>,
}

/// Plan what `roots` need from `src`: read every manifest and index they reach (verified, once
/// each, iteratively), note configs, layers and unknown blobs as leaves without reading them.
///
/// Fails, naming the digest, on a document that is missing (except where it may be absent),
/// corrupt, unparseable or of an unverifiable algorithm, and on one nested more than
/// [`MAX_DEPTH`] levels below its root: a caller never carries part of an image by accident.
/// Memory grows with the number of distinct blobs, not with the number of paths to them.
pub fn plan<S: ImageSource + ?Sized>(src: &S, roots: &[Descriptor]) -> Result<Plan> {
    let mut p = Plan::default();
    let mut missing: Vec<u32> = Vec::new();
    let mut stack: Vec<Pending> = Vec::new();
    for (i, r) in roots.iter().enumerate() {
        stack.push(Pending {
            desc: r.clone(),
            size_known: true,
            role: Role::Root(i),
            depth: 0,
            parent: None,
        });
        visit_all(src, &mut p, &mut stack, &mut missing)?;
    }
    for i in missing {
        let b = &p.blobs[i as usize];
        if !b.optional {
            return Err(match src.read_document(&b.digest, b.size, JSON_LIMIT) {
                Err(e) => e,
                Ok(_) => Error::BadDocument {
                    digest: b.digest.clone(),
                    reason: "is missing".into(),
                },
            });
        }
    }
    Ok(p)
}

fn visit_all<S: ImageSource + ?Sized>(
    src: &S,
    p: &mut Plan,
    stack: &mut Vec<Pending>,
    missing: &mut Vec<u32>,
) -> Result<()> {
    while let Some(pending) = stack.pop() {
        let Pending {
            desc,
            size_known,
            role,
            depth,
            parent,
        } = pending;
        let optional = role == Role::Subject
            || (desc.media_type.is_non_distributable()
                && desc.urls.as_ref().is_some_and(|u| !u.is_empty()));
        if let Some(&i) = p.by_digest.get(&desc.digest) {
            let b = &mut p.blobs[i as usize];
            b.optional &= optional;
            if b.size.is_none() && size_known {
                b.size = Some(desc.size);
            }
            match parent {
                Some(par) => p.children[par as usize].push(i),
                None => p.roots.push(i),
            }
            if let (Role::Subject, Some(par)) = (role, parent) {
                p.subjects.push((par, i));
            }
            continue;
        }
        let i = p.blobs.len() as u32;
        p.by_digest.insert(desc.digest.clone(), i);
        p.blobs.push(PlannedBlob {
            digest: desc.digest.clone(),
            size: size_known.then_some(desc.size),
            media_type: desc.media_type.clone(),
            optional,
            document: false,
        });
        p.children.push(Vec::new());
        match parent {
            Some(par) => p.children[par as usize].push(i),
            None => p.roots.push(i),
        }
        if let (Role::Subject, Some(par)) = (role, parent) {
            p.subjects.push((par, i));
        }
        let class = desc.media_type.class();
        let doc_class = matches!(class, Class::Index | Class::Manifest | Class::Schema1);
        if !(doc_class || (class == Class::Unknown && role.may_be_document())) {
            continue;
        }
        if depth >= MAX_DEPTH {
            return Err(Error::TooDeep {
                digest: desc.digest,
                depth: MAX_DEPTH,
            });
        }
        let (_, _, parsed) = read_doc(src, &desc.digest, desc.size, &desc.media_type);
        match parsed {
            Ok(doc) => {
                p.blobs[i as usize].document = true;
                let children = doc.children();
                stack.extend(children.into_iter().rev().map(|(d, known, role)| Pending {
                    desc: d,
                    size_known: known,
                    role,
                    depth: depth + 1,
                    parent: Some(i),
                }));
            }
            Err(DocStatus::NotRead) => {}
            Err(DocStatus::Missing) => missing.push(i),
            Err(DocStatus::Corrupt(e)) => {
                return Err(Arc::try_unwrap(e).unwrap_or_else(|e| Error::BadDocument {
                    digest: desc.digest,
                    reason: e.to_string(),
                }))
            }
            Err(DocStatus::Unparseable(why)) => {
                return Err(Error::BadDocument {
                    digest: desc.digest,
                    reason: format!("does not parse: {why}"),
                })
            }
            Err(DocStatus::Unverifiable) => return Err(Error::Unverifiable(desc.digest)),
            Err(other) => {
                return Err(Error::BadDocument {
                    digest: desc.digest,
                    reason: format!("cannot be read ({other:?})"),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Layout, Options};

    #[test]
    fn subjects_pair_each_referrer_with_its_subject_even_when_absent() {
        let dir = tempfile::tempdir().expect("tmp");
        let (layout, _) = Layout::init(dir.path(), Options::default()).expect("init");
        let lock = layout.lock().expect("lock");
        let (config, config_size) = lock.write_blob(b"{}").expect("config");
        let manifest = |subject: Option<(&Digest, u64)>| {
            let mut m = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config.as_str(), "size": config_size},
                "layers": [],
            });
            if let Some((d, size)) = subject {
                m["subject"] = serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": d.as_str(),
                    "size": size,
                });
            }
            let bytes = serde_json::to_vec(&m).expect("json");
            let (d, size) = lock.write_blob(&bytes).expect("write");
            Descriptor::new(MediaType::OciManifest, d, size)
        };
        let image = manifest(None);
        let sig = manifest(Some((&image.digest, image.size)));
        let absent = Digest::sha256(b"not in the layout");
        let orphan = manifest(Some((&absent, 7)));
        let p = plan(&layout, &[image.clone(), sig.clone(), orphan.clone()]).expect("plan");
        let named: Vec<(&Digest, &Digest)> = p
            .subjects()
            .iter()
            .map(|&(r, s)| (&p.blobs[r as usize].digest, &p.blobs[s as usize].digest))
            .collect();
        assert_eq!(
            named,
            vec![(&sig.digest, &image.digest), (&orphan.digest, &absent)]
        );
        assert!(p.get(&absent).is_some_and(|b| b.optional && !b.document));
    }
}
