//! OCI-shaped sources: oci-archives and OCI layout directories, whose `index.json` entries are
//! carried as they are (one [`engine::plan`] and one [`engine::transfer`] per entry, bytes and
//! annotations unchanged), and the helpers Docker 25+ archives share with them.

use ocikit_layout::engine::{self, ImageSource};
use ocikit_layout::{Descriptor, Digest, Index, Layout, Manifest, JSON_LIMIT};

use super::{Ctx, Entry};
use crate::archive::Archive;
use crate::source::{Members, MembersSource};
use crate::{Error, Result};

/// The member name of a blob in an OCI layout.
pub(super) fn blob_member(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm_str(), d.encoded())
}

pub(super) fn oci_archive(ctx: &mut Ctx<'_>, ar: &Archive, entries: &mut Vec<Entry>) -> Result<()> {
    let header = ar.read_small("oci-layout", JSON_LIMIT)?;
    ocikit_layout::check_layout_header(&header)
        .map_err(|r| Error::member(ar.path(), "oci-layout", r))?;
    let index = read_index_member(ar)?;
    for entry in &index.manifests {
        copy_entry(ctx, ar, entry, entries)?;
    }
    Ok(())
}

/// Copy everything `d` reaches from an OCI-shaped source, verified, bytes unchanged: one
/// [`engine::plan`] (a `subject` and foreign layers may be absent; anything else missing,
/// corrupt or nested too deep fails) and one [`engine::transfer`].
pub(super) fn copy_tree(ctx: &mut Ctx<'_>, m: &dyn Members, d: &Descriptor) -> Result<()> {
    let src = MembersSource::new(m, ctx.opts.progress);
    carry(ctx, &src, std::slice::from_ref(d))
}

/// Plan what `roots` need from `src` and transfer what this import has not carried yet.
fn carry<S: ImageSource + ?Sized>(ctx: &mut Ctx<'_>, src: &S, roots: &[Descriptor]) -> Result<()> {
    let plan = engine::plan(src, roots)?;
    let copied = &ctx.copied;
    engine::transfer(src, &plan, |b| !copied.contains(&b.digest), ctx.lock)?;
    ctx.copied
        .extend(plan.blobs.iter().map(|b| b.digest.clone()));
    Ok(())
}

pub(super) fn layout_dir(ctx: &mut Ctx<'_>, src: &Layout, entries: &mut Vec<Entry>) -> Result<()> {
    let index = src.read_index()?.value;
    let copied: Vec<Entry> = index.manifests.iter().map(copied_entry).collect();
    let roots: Vec<Descriptor> = copied.iter().map(|e| e.descriptor.clone()).collect();
    carry(ctx, src, &roots)?;
    entries.extend(copied);
    Ok(())
}

/// An `index.json` entry of an OCI-shaped source, to be merged as it is under its ref.
fn copied_entry(entry: &Descriptor) -> Entry {
    let mut bare = entry.clone();
    bare.set_ref_name(None);
    Entry {
        source: 0,
        descriptor: bare,
        name: entry_name(entry),
        image: false,
    }
}

/// The ref of an OCI-shaped source's entry: its `org.opencontainers.image.ref.name`, except
/// that containerd writes only the tag there (`1`) and the full name in
/// `io.containerd.image.name` (`docker.io/library/app:1`): an entry without a ref, or whose
/// ref is just the tag of that name, takes the full name.
pub(super) fn entry_name(entry: &Descriptor) -> Option<String> {
    let full = entry
        .annotations
        .as_ref()
        .and_then(|a| a.get(super::CONTAINERD_NAME))
        .filter(|f| ocikit_layout::refs::check_ref_name(f).is_ok());
    match (entry.ref_name(), full) {
        (None, Some(full)) => Some(full.clone()),
        (Some(r), Some(full))
            if !r.contains([':', '/', '@'])
                && full.strip_suffix(r).is_some_and(|p| p.ends_with(':')) =>
        {
            Some(full.clone())
        }
        (r, _) => r.map(String::from),
    }
}

/// Copy an `index.json` entry of an OCI-shaped source as it is, and record it under its ref.
pub(super) fn copy_entry(
    ctx: &mut Ctx<'_>,
    m: &dyn Members,
    entry: &Descriptor,
    entries: &mut Vec<Entry>,
) -> Result<()> {
    let copied = copied_entry(entry);
    copy_tree(ctx, m, &copied.descriptor)?;
    entries.push(copied);
    Ok(())
}

pub(super) fn read_manifest(m: &dyn Members, d: &Descriptor) -> Result<Manifest> {
    ocikit_layout::json::from_slice(&read_verified(m, d)?).map_err(|e| {
        Error::member(
            m.path(),
            &blob_member(&d.digest),
            format!("not a manifest: {e}"),
        )
    })
}

pub(super) fn read_index_member(m: &dyn Members) -> Result<Index> {
    let bytes = m.read_small("index.json", ocikit_layout::INDEX_LIMIT)?;
    ocikit_layout::json::from_slice(&bytes)
        .map_err(|e| Error::member(m.path(), "index.json", format!("not an OCI index: {e}")))
}

/// Read a document blob of an OCI-shaped source, verified against its descriptor.
pub(super) fn read_verified(m: &dyn Members, d: &Descriptor) -> Result<Vec<u8>> {
    let member = blob_member(&d.digest);
    if d.size > JSON_LIMIT {
        return Err(Error::member(
            m.path(),
            &member,
            format!(
                "is {} bytes, larger than the {JSON_LIMIT}-byte limit for JSON documents",
                d.size
            ),
        ));
    }
    let bytes = m.read_small(&member, JSON_LIMIT)?;
    let alg = d
        .digest
        .algorithm()
        .ok_or_else(|| ocikit_layout::Error::Unverifiable(d.digest.clone()))?;
    let found = Digest::of(alg, &bytes);
    if found != d.digest || bytes.len() as u64 != d.size {
        return Err(Error::member(
            m.path(),
            &member,
            format!(
                "content has digest `{found}` and size {}, its descriptor says `{}` and {}",
                bytes.len(),
                d.digest,
                d.size
            ),
        ));
    }
    Ok(bytes)
}
