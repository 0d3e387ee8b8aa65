//! Refs: the `org.opencontainers.image.ref.name` annotation of `index.json` entries.

use std::path::Path;

use crate::{Descriptor, Digest, Error, Index, Result};

/// The image ID of an `index.json` entry, as `docker images` and `docker inspect` show it: the
/// digest of the config of the image manifest the entry names (read capped and verified);
/// `None` for an index, an artifact or any other entry.
pub fn image_id(layout: &crate::Layout, d: &Descriptor) -> Result<Option<Digest>> {
    if d.media_type.class() != crate::Class::Manifest {
        return Ok(None);
    }
    let m = layout.read_json::<crate::Manifest>(&d.digest, Some(d.size))?;
    let config = m.value.config;
    Ok((config.media_type.class() == crate::Class::Config).then_some(config.digest))
}

/// Is `name` a valid ref per the image-layout grammar?
///
/// `ref ::= component ("/" component)*`, `component ::= alphanum (separator alphanum)*`,
/// `alphanum ::= [A-Za-z0-9]+`, `separator ::= [-._:@+] | "--"`.
pub fn valid_ref_name(name: &str) -> bool {
    !name.is_empty() && name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphanumeric() {
            i += 1;
        } else if b[i] == b'-' && b.get(i + 1) == Some(&b'-') {
            i += 2;
            if !b.get(i).is_some_and(u8::is_ascii_alphanumeric) {
                return false;
            }
        } else if matches!(b[i], b'-' | b'.' | b'_' | b':' | b'@' | b'+') {
            i += 1;
            if !b.get(i).is_some_and(u8::is_ascii_alphanumeric) {
                return false;
            }
        } else {
            return false;
        }
    }
    true
}

/// Check a ref name before writing it.
pub fn check_ref_name(name: &str) -> Result<()> {
    if valid_ref_name(name) {
        Ok(())
    } else {
        Err(Error::InvalidRef(name.to_string()))
    }
}

/// The positions of the entries whose ref name is `name`.
pub fn entries_named(index: &Index, name: &str) -> Vec<usize> {
    index
        .manifests
        .iter()
        .enumerate()
        .filter(|(_, d)| d.ref_name() == Some(name))
        .map(|(i, _)| i)
        .collect()
}

/// The error for a ref or digest that names nothing in the `index.json` of the layout at `root`.
pub fn not_found(what: &str, root: &Path) -> Error {
    Error::RefNotFound {
        name: what.to_string(),
        index: root.join("index.json"),
    }
}

/// Resolve a ref or a full digest to one `index.json` entry: a ref must name exactly one entry;
/// a digest picks the first entry with that digest. `root` (the layout's directory) is named
/// when nothing matches.
pub fn resolve_entry(index: &Index, what: &str, root: &Path) -> Result<usize> {
    let named = entries_named(index, what);
    match named.len() {
        1 => return Ok(named[0]),
        0 => {}
        _ => {
            return Err(Error::AmbiguousRef {
                name: what.to_string(),
                digests: named
                    .iter()
                    .map(|&i| index.manifests[i].digest.clone())
                    .collect(),
            })
        }
    }
    if let Ok(d) = Digest::parse(what) {
        if let Some(i) = index.manifests.iter().position(|m| m.digest == d) {
            return Ok(i);
        }
    }
    Err(not_found(what, root))
}

/// The descriptor a ref or digest names, without its ref annotation.
pub fn resolve(index: &Index, what: &str, root: &Path) -> Result<Descriptor> {
    let i = resolve_entry(index, what, root)?;
    let mut d = index.manifests[i].clone();
    d.set_ref_name(None);
    Ok(d)
}

/// What [`tag`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagOutcome {
    /// The name is new.
    Created,
    /// The name already named this content.
    Unchanged,
    /// The name moved away from these digests.
    Moved(Vec<Digest>),
}

/// Point `name` at `target` in `index`. An existing entry of that name is replaced in place (the
/// name moves); an untagged entry for the same digest takes the name instead of a new entry.
pub fn tag(index: &mut Index, target: &Descriptor, name: &str) -> Result<TagOutcome> {
    check_ref_name(name)?;
    let named = entries_named(index, name);
    if named.len() == 1 && index.manifests[named[0]].digest == target.digest {
        return Ok(TagOutcome::Unchanged);
    }
    let mut entry = target.clone();
    entry.set_ref_name(Some(name));
    let moved: Vec<Digest> = named
        .iter()
        .map(|&i| index.manifests[i].digest.clone())
        .collect();
    let untagged = index
        .manifests
        .iter()
        .position(|m| m.digest == target.digest && m.ref_name().is_none());
    let slot = named.first().copied().or(untagged);
    let mut remove: Vec<usize> = named.iter().copied().filter(|&i| Some(i) != slot).collect();
    remove.extend(untagged.filter(|&u| Some(u) != slot));
    match slot {
        Some(i) => index.manifests[i] = entry,
        None => index.manifests.push(entry),
    }
    remove.sort_unstable();
    for i in remove.into_iter().rev() {
        index.manifests.remove(i);
    }
    Ok(if moved.is_empty() {
        TagOutcome::Created
    } else {
        TagOutcome::Moved(moved)
    })
}

/// Remove every entry named `name`; returns their digests. None is an error naming the
/// `index.json` of `root`.
pub fn untag(index: &mut Index, name: &str, root: &Path) -> Result<Vec<Digest>> {
    let named = entries_named(index, name);
    if named.is_empty() {
        return Err(not_found(name, root));
    }
    let removed = named
        .iter()
        .map(|&i| index.manifests[i].digest.clone())
        .collect();
    index.manifests.retain(|m| m.ref_name() != Some(name));
    Ok(removed)
}

/// What [`tag_in`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Tagged {
    /// What the ref names now (without its ref annotation).
    pub target: Descriptor,
    /// Whether it was new, unchanged or moved.
    pub outcome: TagOutcome,
}

/// `tag` on a layout: under its writer lock, point `name` at what `source` (a ref, or a digest
/// reachable from `index.json`, see [`resolve_anywhere`]) names, and commit `index.json` when
/// something changed.
pub fn tag_in(layout: &crate::Layout, source: &str, name: &str) -> Result<Tagged> {
    check_ref_name(name)?;
    let lock = layout.lock()?;
    let mut index = layout.read_index()?.value;
    let target = resolve_anywhere(layout, &index, source)?;
    let outcome = tag(&mut index, &target, name)?;
    if outcome != TagOutcome::Unchanged {
        lock.commit_index(&index)?;
    }
    Ok(Tagged { target, outcome })
}

/// `untag` on a layout: under its writer lock, remove every entry named `name` and commit;
/// returns their digests. A name that names nothing is [`Error::RefNotFound`].
pub fn untag_in(layout: &crate::Layout, name: &str) -> Result<Vec<Digest>> {
    let lock = layout.lock()?;
    let mut index = layout.read_index()?.value;
    let removed = untag(&mut index, name, layout.root())?;
    lock.commit_index(&index)?;
    Ok(removed)
}

/// Resolve a ref or digest like [`resolve`]; a digest that is not an `index.json` entry may
/// also name any manifest or index reachable from one (a platform image inside an index).
pub fn resolve_anywhere(layout: &crate::Layout, index: &Index, what: &str) -> Result<Descriptor> {
    match resolve(index, what, layout.root()) {
        Err(Error::RefNotFound { .. }) => {}
        other => return other,
    }
    if let Ok(d) = Digest::parse(what) {
        let walk = crate::walk::Walk::from_index(layout, index);
        // Only documents: a config or layer is not something a ref can name.
        if let Some(n) = walk.nodes.iter().find(|n| {
            n.descriptor.digest == d
                && matches!(
                    n.kind,
                    crate::walk::Kind::Index | crate::walk::Kind::Manifest
                )
        }) {
            let mut desc = n.descriptor.clone();
            desc.set_ref_name(None);
            return Ok(desc);
        }
        // A manifest or index that is in blobs/ but not (yet) named by anything.
        if let Ok(bytes) = layout.read_blob(&d, None, crate::JSON_LIMIT) {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                let declared = v
                    .get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(crate::MediaType::parse);
                let class = match declared.as_ref().map(crate::MediaType::class) {
                    Some(
                        c @ (crate::Class::Index | crate::Class::Manifest | crate::Class::Schema1),
                    ) => c,
                    _ => crate::walk::shape_class(&v),
                };
                let media_type = match (declared, class) {
                    (
                        Some(m),
                        crate::Class::Index | crate::Class::Manifest | crate::Class::Schema1,
                    ) if m.class() == class => Some(m),
                    (_, crate::Class::Index) => Some(crate::MediaType::OciIndex),
                    (_, crate::Class::Manifest) => Some(crate::MediaType::OciManifest),
                    (_, crate::Class::Schema1) => Some(crate::MediaType::DockerSchema1Signed),
                    _ => None,
                };
                if let Some(mt) = media_type {
                    let mut desc = Descriptor::new(mt, d, bytes.len() as u64);
                    desc.artifact_type = v
                        .get("artifactType")
                        .and_then(|a| a.as_str())
                        .map(String::from);
                    return Ok(desc);
                }
            }
        }
    }
    Err(not_found(what, layout.root()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MediaType;

    #[test]
    fn ref_grammar() {
        for ok in [
            "latest",
            "v1.0",
            "busybox:latest",
            "docker.io/library/x:1",
            "a--b",
            "a@b+c",
            "1.0.0",
            "A_b",
        ] {
            assert!(valid_ref_name(ok), "{ok}");
        }
        for bad in [
            "", "-a", "a-", "a..b", "a/", "/a", "a//b", "a b", "a---b", "ä", "a:", "..",
        ] {
            assert!(!valid_ref_name(bad), "{bad}");
        }
    }

    fn desc(n: u8) -> Descriptor {
        Descriptor::new(MediaType::OciManifest, Digest::sha256(&[n]), 1)
    }

    #[test]
    fn tag_moves_and_untag_removes() {
        let mut idx = Index::empty();
        assert_eq!(
            tag(&mut idx, &desc(1), "a").expect("tag"),
            TagOutcome::Created
        );
        assert_eq!(
            tag(&mut idx, &desc(1), "a").expect("tag"),
            TagOutcome::Unchanged
        );
        assert_eq!(
            tag(&mut idx, &desc(2), "b").expect("tag"),
            TagOutcome::Created
        );
        assert_eq!(
            tag(&mut idx, &desc(2), "a").expect("tag"),
            TagOutcome::Moved(vec![desc(1).digest])
        );
        assert_eq!(idx.manifests.len(), 2);
        assert_eq!(idx.manifests[0].ref_name(), Some("a"));
        assert_eq!(idx.manifests[0].digest, desc(2).digest);
        assert_eq!(resolve_entry(&idx, "b", Path::new("l")).expect("b"), 1);
        assert_eq!(
            untag(&mut idx, "a", Path::new("l")).expect("untag"),
            vec![desc(2).digest]
        );
        assert_eq!(
            untag(&mut idx, "a", Path::new("l"))
                .expect_err("a is gone")
                .to_string(),
            "no ref or digest `a` in `l/index.json`"
        );
        assert!(matches!(
            tag(&mut idx, &desc(3), "bad name"),
            Err(Error::InvalidRef(_))
        ));
    }

    #[test]
    fn untagged_entry_takes_the_name() {
        let mut idx = Index::empty();
        idx.manifests.push(desc(1));
        tag(&mut idx, &desc(1), "x").expect("tag");
        assert_eq!(idx.manifests.len(), 1);
        assert_eq!(idx.manifests[0].ref_name(), Some("x"));
    }

    #[test]
    fn ambiguous_ref_lists_digests() {
        let mut idx = Index::empty();
        let mut a = desc(1);
        a.set_ref_name(Some("dup"));
        let mut b = desc(2);
        b.set_ref_name(Some("dup"));
        idx.manifests = vec![a, b];
        match resolve_entry(&idx, "dup", Path::new("l")) {
            Err(Error::AmbiguousRef { digests, .. }) => {
                assert_eq!(digests, vec![desc(1).digest, desc(2).digest])
            }
            other => panic!("{other:?}"),
        }
    }
}
