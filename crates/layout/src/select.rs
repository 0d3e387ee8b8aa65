//! Selecting what to carry: refs, platforms and referrers, for `copy` and `bundle`.
//!
//! [`select`] resolves refs in a source layout, filters indexes down to the asked platforms
//! with the one rewriter ([`crate::rewrite`]) into memory (a filtered index is a new document:
//! new bytes, new digest, every other field kept, a stale `data` dropped; its parents are
//! rewritten too), adds referrers (manifests whose `subject` is selected) when asked, and plans
//! what the entries need with [`crate::engine::plan`]. Without platforms, nothing is rewritten
//! and original bytes are carried. Anything unreadable or nested too deep is an error.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};

use crate::engine::{plan, ImageSource, Overlay, Plan};
use crate::media_type::Class;
use crate::rewrite::{DocEdit, DocSink, Keep, Memory, Rewriter, Rewritten, Transform};
use crate::walk::{Role, Walk};
use crate::{
    refs, Descriptor, Digest, Error, Index, Layout, Manifest, PlatformSpec, Result, JSON_LIMIT,
};

/// Docker's annotation on attestation manifests naming the image they describe.
pub const DOCKER_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// What to select.
#[derive(Debug, Clone, Default)]
pub struct SelectOptions {
    /// Refs or digests of `index.json` entries; empty means every entry.
    pub refs: Vec<String>,
    /// Platforms to keep from indexes; empty keeps everything.
    pub platforms: Vec<PlatformSpec>,
    /// Also select manifests whose `subject` is selected, recursively.
    pub referrers: bool,
}

/// The result of [`select`].
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Entries for the destination's `index.json`, in order (referrers untagged, last).
    pub entries: Vec<Descriptor>,
    /// Documents made by filtering, by digest.
    pub documents: BTreeMap<Digest, Vec<u8>>,
    /// The plan the blobs come from (over the source with the generated documents on top).
    pub plan: Plan,
}

impl Selection {
    /// The digests entry `n` needs, in document order (computed from the plan, not stored:
    /// many entries sharing one large index would otherwise hold its closure many times).
    pub fn closure(&self, n: usize) -> Vec<Digest> {
        self.plan
            .closure(n)
            .into_iter()
            .map(|b| b.digest.clone())
            .collect()
    }
}

/// Select from `layout`.
pub fn select(layout: &Layout, opts: &SelectOptions) -> Result<Selection> {
    select_from(layout, opts)
}

/// Select from any source: its roots stand for `index.json`. Referrers come from the source
/// when it can name them ([`ImageSource::referrers`], a registry), else from a walk of the
/// layout behind it.
pub fn select_from<S: ImageSource>(src: &S, opts: &SelectOptions) -> Result<Selection> {
    let index = src.roots()?;
    let roots: Vec<Descriptor> = if opts.refs.is_empty() {
        index.manifests.clone()
    } else {
        let mut v = Vec::new();
        for r in &opts.refs {
            let root = src
                .local_layout()
                .map_or(std::path::Path::new("the source"), Layout::root);
            let i = refs::resolve_entry(&index, r, root)?;
            v.push(index.manifests[i].clone());
        }
        v
    };
    let mut sel = Selection::default();
    let mut rw = Rewriter::with_sink(
        Memory::new(src),
        PlatformFilter {
            platforms: &opts.platforms,
        },
    );
    for root in roots {
        let kept = if opts.platforms.is_empty() || root.media_type.class() != Class::Index {
            root.clone()
        } else {
            match rw.visit(&root)? {
                Rewritten::Same => root.clone(),
                Rewritten::New(d) => d,
                Rewritten::Dropped => {
                    let plats: Vec<String> = opts
                        .platforms
                        .iter()
                        .map(|p| {
                            format!(
                                "{}/{}{}",
                                p.os,
                                p.architecture,
                                p.variant
                                    .as_ref()
                                    .map(|v| format!("/{v}"))
                                    .unwrap_or_default()
                            )
                        })
                        .collect();
                    return Err(Error::Invalid {
                        what: root.ref_name().unwrap_or(root.digest.as_str()).to_string(),
                        reason: format!("no manifest for platform {}", plats.join(", ")),
                    });
                }
            }
        };
        if sel
            .entries
            .iter()
            .any(|e| e.digest == kept.digest && e.ref_name() == kept.ref_name())
        {
            continue;
        }
        sel.entries.push(kept);
    }
    sel.documents = rw.into_parts().0.documents;

    if opts.referrers {
        add_referrers(src, &index, &mut sel)?;
    }

    let overlay = Overlay::new(src, &sel.documents);
    sel.plan = plan(&overlay, &sel.entries)?;
    Ok(sel)
}

/// Add, as untagged entries, the manifests whose subject the selection reaches, until none is
/// left to add (referrers of referrers too).
fn add_referrers<S: ImageSource + ?Sized>(
    src: &S,
    index: &Index,
    sel: &mut Selection,
) -> Result<()> {
    // A layout: referrers anywhere in it, found by the tolerant walk (each document read
    // once): an unreadable image elsewhere in the layout must not stop copying this one.
    let known: Option<Vec<(Descriptor, Digest)>> = src.local_layout().map(|layout| {
        let walk = Walk::from_index(layout, index);
        walk.nodes
            .iter()
            .filter_map(|n| {
                let s = n
                    .children
                    .iter()
                    .find(|&&c| walk.nodes[c].role == Role::Subject)?;
                Some((n.descriptor.clone(), walk.nodes[*s].digest().clone()))
            })
            .collect()
    });
    // Otherwise ask the source about each document the selection reaches, once.
    let mut asked: HashSet<Digest> = HashSet::new();
    loop {
        let overlay = Overlay::new(src, &sel.documents);
        let selected = plan(&overlay, &sel.entries)?;
        let found: Vec<Descriptor> = match &known {
            Some(known) => known
                .iter()
                .filter(|(r, s)| selected.get(&r.digest).is_none() && selected.get(s).is_some())
                .map(|(r, _)| r.clone())
                .collect(),
            None => {
                let mut found = Vec::new();
                for b in selected.blobs.iter().filter(|b| b.document) {
                    if asked.insert(b.digest.clone()) {
                        found.extend(src.referrers(&b.digest)?.unwrap_or_default());
                    }
                }
                found
            }
        };
        let mut added = false;
        for referrer in found {
            if selected.get(&referrer.digest).is_none()
                && !sel.entries.iter().any(|e| e.digest == referrer.digest)
            {
                let mut d = referrer;
                d.set_ref_name(None);
                sel.entries.push(d);
                added = true;
            }
        }
        if !added {
            return Ok(());
        }
    }
}

/// Keeps the index entries of the asked platforms; entries without a platform stay when they
/// refer to a kept one (attestations, referrers); nested indexes are filtered in turn and
/// dropped when nothing in them is kept.
struct PlatformFilter<'a> {
    platforms: &'a [PlatformSpec],
}

impl<S: DocSink> Transform<S> for PlatformFilter<'_> {
    type Error = Error;

    fn keep_entry(&mut self, _: &S, _: &Descriptor, m: &Descriptor) -> Keep {
        if m.media_type.class() == Class::Index {
            return Keep::Yes;
        }
        match m
            .platform
            .as_ref()
            .filter(|p| !(p.os == "unknown" && p.architecture == "unknown"))
        {
            Some(p) if self.platforms.iter().any(|s| p.matches(s)) => Keep::Yes,
            Some(_) => Keep::No,
            None => Keep::Later,
        }
    }

    fn keep_later(
        &mut self,
        sink: &S,
        _: &Descriptor,
        m: &Descriptor,
        kept: &[Descriptor],
    ) -> bool {
        let kept_has = |d: &Digest| kept.iter().any(|k| &k.digest == d);
        let by_annotation = m
            .annotations
            .as_ref()
            .and_then(|a| a.get(DOCKER_REFERENCE_DIGEST))
            .and_then(|s| Digest::parse(s).ok())
            .is_some_and(|d| kept_has(&d));
        by_annotation
            || (m.media_type.class() == Class::Manifest
                && sink
                    .source()
                    .read_document(&m.digest, Some(m.size), JSON_LIMIT)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
                    .and_then(|m| m.subject)
                    .is_some_and(|s| kept_has(&s.digest)))
    }

    fn index(
        &mut self,
        _: &S,
        _: &Descriptor,
        _: &mut Map<String, Value>,
        changed: bool,
    ) -> Result<DocEdit> {
        Ok(DocEdit {
            edited: changed,
            media_type: None,
        })
    }

    fn manifest(&mut self, _: &S, _: &Descriptor, _: &mut Map<String, Value>) -> Result<DocEdit> {
        Ok(DocEdit::unchanged())
    }
}
