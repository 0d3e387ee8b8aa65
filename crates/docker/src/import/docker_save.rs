//! docker-save archives: `manifest.json` (Docker before 25, skopeo's docker-archive) and the
//! Docker 25+ dual format (an OCI layout with `manifest.json` beside it). Each image is built
//! from its members through the image builder; Docker 25+ index entries that are not plain
//! images are carried as they are (`oci.rs`), and an index whose archive holds only some of its
//! platforms becomes a new index of the platforms present.

use std::collections::BTreeMap;

use ocikit_layout::{refs, Class, Descriptor, Digest, Index, Manifest, JSON_LIMIT};
use serde::Deserialize;

use super::image::{parse_config, write_image, ImagePlan, LayerPlan};
use super::oci::{
    blob_member, copy_entry, copy_tree, read_index_member, read_manifest, read_verified,
};
use super::{push_named, Ctx, Entry, CONTAINERD_NAME};
use crate::archive::Archive;
use crate::names::containerd_name;
use crate::source::Members;
use crate::{Error, Result};

/// One image of a docker save `manifest.json`. Member names are as written (the archive
/// normalizes them when they are read); RepoTags are checked when the image is imported.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SaveEntry {
    /// The config's member.
    pub config: String,
    /// The names of the image.
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    /// The layers' members, base first.
    #[serde(default)]
    pub layers: Option<Vec<String>>,
    /// Descriptors of (foreign) layers, by diff_id.
    #[serde(default)]
    pub layer_sources: Option<BTreeMap<Digest, Descriptor>>,
}

/// Parse a docker save `manifest.json`: a non-empty list of images. The error says why not
/// (without the member's name).
pub fn parse_save_manifest(bytes: &[u8]) -> std::result::Result<Vec<SaveEntry>, String> {
    let list: Option<Vec<SaveEntry>> =
        serde_json::from_slice(bytes).map_err(|e| format!("not a docker save manifest: {e}"))?;
    let list = list.ok_or("is `null`, not a list of images")?;
    if list.is_empty() {
        return Err("lists no images".into());
    }
    Ok(list)
}

fn read_save_manifest(ar: &Archive) -> Result<Vec<SaveEntry>> {
    let bytes = ar.read_small("manifest.json", JSON_LIMIT)?;
    parse_save_manifest(&bytes).map_err(|r| Error::member(ar.path(), "manifest.json", r))
}

fn save_entry_image(ctx: &mut Ctx<'_>, ar: &Archive, e: &SaveEntry) -> Result<Descriptor> {
    // LayerSources are keyed by diff_id: read the config first to pair them with layers.
    let cfg_bytes = ar.read_small(&e.config, JSON_LIMIT)?;
    let cfg = parse_config(ar, &e.config, &cfg_bytes)?;
    let diff_ids = cfg.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    let layers = e
        .layers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, member)| LayerPlan {
            source: diff_ids
                .get(i)
                .and_then(|d| e.layer_sources.as_ref()?.get(d))
                .filter(|s| s.media_type.is_non_distributable())
                .cloned(),
            member,
        })
        .collect();
    let plan = ImagePlan {
        config: e.config.clone(),
        config_digest: None,
        layers,
        annotations: None,
    };
    write_image(ctx, ar, &plan)
}

pub(super) fn docker_save(ctx: &mut Ctx<'_>, ar: &Archive, entries: &mut Vec<Entry>) -> Result<()> {
    for e in read_save_manifest(ar)? {
        let d = save_entry_image(ctx, ar, &e)?;
        let names = e.repo_tags.clone().unwrap_or_default();
        for n in &names {
            refs::check_ref_name(n).map_err(|_| {
                Error::member(
                    ar.path(),
                    "manifest.json",
                    format!("RepoTag `{n}` is not a valid ref name"),
                )
            })?;
        }
        push_named(entries, d, &names);
    }
    Ok(())
}

pub(super) fn docker25(ctx: &mut Ctx<'_>, ar: &Archive, entries: &mut Vec<Entry>) -> Result<()> {
    let index = read_index_member(ar)?;
    if index.manifests.is_empty() {
        // An index.json without entries (as some tools strip it): manifest.json alone says it.
        return docker_save(ctx, ar, entries);
    }
    // manifest.json may be `null` or absent-ish here; it only contributes names.
    let save: Vec<SaveEntry> = ar
        .read_small("manifest.json", JSON_LIMIT)
        .ok()
        .and_then(|b| {
            serde_json::from_slice::<Option<Vec<SaveEntry>>>(&b)
                .ok()
                .flatten()
        })
        .unwrap_or_default();
    for entry in &index.manifests {
        let mut bare = entry.clone();
        bare.set_ref_name(None);
        if let Some(a) = bare.annotations.as_mut() {
            // Recomputed for each name the entry gets.
            a.remove(CONTAINERD_NAME);
            if a.is_empty() {
                bare.annotations = None;
            }
        }
        match entry.media_type.class() {
            Class::Manifest => {
                let man = read_manifest(ar, entry)?;
                if man.config.media_type.class() == Class::Config {
                    let names = docker25_names(&save, &[blob_member(&man.config.digest)], entry);
                    if layers_as_asked(ctx, &man) {
                        // Nothing to change (a containerd export, or Docker's save asked to
                        // stay uncompressed): the entry and its blobs are kept byte for byte,
                        // Docker media types included.
                        copy_tree(ctx, ar, &bare)?;
                        push_named(entries, bare, &names);
                        continue;
                    }
                    let mut d = write_image(ctx, ar, &image_plan(&man))?;
                    d.annotations = bare.annotations.clone();
                    if d.platform.is_none() {
                        d.platform = entry.platform.clone();
                    }
                    push_named(entries, d, &names);
                    continue;
                }
            }
            Class::Index => {
                // The containerd image store saves the whole index but only the blobs of the
                // platforms it has: keep the platforms present, in a new index.
                let ix: Index =
                    serde_json::from_slice(&read_verified(ar, entry)?).map_err(|e| {
                        Error::member(
                            ar.path(),
                            &blob_member(&entry.digest),
                            format!("not an index: {e}"),
                        )
                    })?;
                let present: Vec<&Descriptor> = ix
                    .manifests
                    .iter()
                    .filter(|c| ar.has(&blob_member(&c.digest)))
                    .collect();
                let mut configs = Vec::new();
                for c in &present {
                    if c.media_type.class() == Class::Manifest {
                        configs.push(blob_member(&read_manifest(ar, c)?.config.digest));
                    }
                }
                let names = docker25_names(&save, &configs, entry);
                if present.is_empty() {
                    return Err(Error::member(
                        ar.path(),
                        &blob_member(&entry.digest),
                        "none of the index's manifests is in the archive",
                    ));
                }
                let d = if present.len() == ix.manifests.len() {
                    copy_tree(ctx, ar, &bare)?;
                    bare.clone()
                } else {
                    for c in &present {
                        copy_tree(ctx, ar, c)?;
                    }
                    let partial = Index {
                        manifests: present.into_iter().cloned().collect(),
                        ..ix
                    };
                    let bytes =
                        serde_json::to_vec(&partial).map_err(|e| ocikit_layout::Error::Json {
                            what: "new index".into(),
                            source: e,
                        })?;
                    let (digest, size) = ctx.lock.write_blob(&bytes)?;
                    let mut d = Descriptor::new(entry.media_type.clone(), digest, size);
                    d.annotations = bare.annotations.clone();
                    d
                };
                push_named(entries, d, &names);
                continue;
            }
            _ => {}
        }
        copy_entry(ctx, ar, entry, entries)?;
    }
    Ok(())
}

/// Whether every layer of `man` is already compressed as the import asks (by its media type;
/// the copy verifies each blob's digest): then import need not write a new manifest.
fn layers_as_asked(ctx: &Ctx<'_>, man: &Manifest) -> bool {
    let asked = ctx.opts.compress.compression;
    man.layers
        .iter()
        .all(|l| l.media_type.class() == Class::Layer && l.media_type.compression() == Some(asked))
}

fn image_plan(man: &Manifest) -> ImagePlan {
    ImagePlan {
        config: blob_member(&man.config.digest),
        config_digest: Some(man.config.digest.clone()),
        layers: man
            .layers
            .iter()
            .map(|l| LayerPlan {
                member: blob_member(&l.digest),
                source: Some(l.clone()),
            })
            .collect(),
        annotations: man.annotations.clone(),
    }
}

/// The names of a Docker 25+ index entry: the RepoTags of the manifest.json entries for its
/// config(s) (only the one matching the entry's `io.containerd.image.name` when there is one,
/// since Docker writes one index entry per name), else its `io.containerd.image.name`, else
/// its ref.
fn docker25_names(save: &[SaveEntry], configs: &[String], entry: &Descriptor) -> Vec<String> {
    let tags: Vec<String> = save
        .iter()
        .filter(|s| crate::archive::normalize(&s.config).is_ok_and(|c| configs.contains(&c)))
        .flat_map(|s| s.repo_tags.clone().unwrap_or_default())
        .collect();
    let full = entry
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONTAINERD_NAME));
    if !tags.is_empty() {
        if let Some(full) = full {
            let same: Vec<String> = tags
                .iter()
                .filter(|t| containerd_name(t).as_ref() == Some(full))
                .cloned()
                .collect();
            if !same.is_empty() {
                return same;
            }
        }
        return tags;
    }
    if let Some(full) = full {
        return vec![full.clone()];
    }
    entry
        .ref_name()
        .map(|r| vec![r.to_string()])
        .unwrap_or_default()
}
