//! skopeo `dir:` copies: `manifest.json` (an image manifest, a manifest list with one
//! `<hex>.manifest.json` per instance copied, or schema1) and blobs named by their hex digest.
//! Images are built through the image builder; schema1 manifests are converted (`schema1.rs`).

use ocikit_layout::engine::ImageBuilder;
use ocikit_layout::walk::shape_class;
use ocikit_layout::{
    Class, Compression, Descriptor, ImageConfig, Index, Manifest, MediaType, JSON_LIMIT,
};
use serde_json::{Map, Value};

use super::image::{build_error, layer_input, write_image, ImagePlan, LayerPlan};
use super::{push_named, Ctx, Entry};
use crate::convert::Target;
use crate::schema1::{self, LayerFacts};
use crate::source::{DirMembers, Members};
use crate::{Error, Result};

pub(super) fn skopeo_dir(
    ctx: &mut Ctx<'_>,
    dir: &DirMembers,
    entries: &mut Vec<Entry>,
) -> Result<()> {
    let bytes = dir.read_small("manifest.json", JSON_LIMIT)?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::member(dir.path(), "manifest.json", format!("not JSON: {e}")))?;
    let declared = v
        .get("mediaType")
        .and_then(Value::as_str)
        .map(MediaType::parse);
    let class = match declared.as_ref().map(MediaType::class) {
        Some(c @ (Class::Index | Class::Manifest | Class::Schema1)) => c,
        _ => shape_class(&v),
    };
    match class {
        Class::Schema1 => {
            let d = schema1_image(ctx, dir, &bytes)?;
            push_named(entries, d, &[]);
            Ok(())
        }
        Class::Manifest => {
            let d = dir_image(ctx, dir, &bytes, "manifest.json")?;
            push_named(entries, d, &[]);
            Ok(())
        }
        Class::Index => {
            // `skopeo copy --all`: the list in manifest.json, each instance in <hex>.manifest.json.
            let list: Index = serde_json::from_slice(&bytes).map_err(|e| {
                Error::member(dir.path(), "manifest.json", format!("not an index: {e}"))
            })?;
            let mut children = Vec::new();
            for c in &list.manifests {
                let member = format!("{}.manifest.json", c.digest.encoded());
                if !dir.has(&member) {
                    continue; // an instance skopeo did not copy
                }
                let mbytes = dir.read_small(&member, JSON_LIMIT)?;
                let mut d = dir_image(ctx, dir, &mbytes, &member)?;
                d.platform = c.platform.clone().or(d.platform);
                d.annotations = c.annotations.clone();
                children.push(d);
            }
            if children.is_empty() {
                return Err(Error::member(
                    dir.path(),
                    "manifest.json",
                    "the list names no instance present in the directory",
                ));
            }
            let index = Index {
                schema_version: 2,
                media_type: Some(MediaType::OciIndex),
                artifact_type: None,
                manifests: children,
                subject: None,
                annotations: list.annotations.clone(),
                extra: Map::new(),
            };
            let ibytes = serde_json::to_vec(&index).map_err(|e| ocikit_layout::Error::Json {
                what: "new index".into(),
                source: e,
            })?;
            let (d, s) = ctx.lock.write_blob(&ibytes)?;
            push_named(entries, Descriptor::new(MediaType::OciIndex, d, s), &[]);
            Ok(())
        }
        _ => Err(Error::member(
            dir.path(),
            "manifest.json",
            "neither an image manifest nor a manifest list",
        )),
    }
}

fn dir_image(
    ctx: &mut Ctx<'_>,
    dir: &DirMembers,
    bytes: &[u8],
    member: &str,
) -> Result<Descriptor> {
    let man: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| Error::member(dir.path(), member, format!("not a manifest: {e}")))?;
    // The manifest's own type says what its config is: skopeo's `uncompressed-image-s2`
    // labels a schema2 image's config `application/octet-stream`, and skopeo reads it.
    let image_manifest = matches!(
        man.media_type,
        Some(MediaType::DockerManifest | MediaType::OciManifest)
    );
    let untyped = man.config.media_type.as_str() == "application/octet-stream";
    if man.config.media_type.class() != Class::Config && !(image_manifest && untyped) {
        return Err(Error::member(
            dir.path(),
            member,
            format!(
                "config type `{}` is not an image config",
                man.config.media_type
            ),
        ));
    }
    let plan = ImagePlan {
        config: man.config.digest.encoded().to_string(),
        config_digest: Some(man.config.digest.clone()),
        layers: man
            .layers
            .iter()
            .map(|l| LayerPlan {
                member: l.digest.encoded().to_string(),
                source: Some(l.clone()),
            })
            .collect(),
        annotations: man.annotations.clone(),
    };
    write_image(ctx, dir, &plan)
}

/// A schema1 manifest, converted as containers/image converts it (`crate::schema1`): its
/// layers (throwaways aside, which the new manifest does not name) go through the image
/// builder, verified against their blobSums, diff_ids computed in the same pass; gzip layers are
/// kept as they are unless another compression is asked.
fn schema1_image(ctx: &mut Ctx<'_>, dir: &DirMembers, bytes: &[u8]) -> Result<Descriptor> {
    let bad = |e: &dyn std::fmt::Display| Error::member(dir.path(), "manifest.json", e.to_string());
    let s1: ocikit_layout::Schema1 =
        serde_json::from_slice(bytes).map_err(|e| bad(&format!("not a schema1 manifest: {e}")))?;
    let throwaway = schema1::throwaways(&s1).map_err(|e| bad(&e))?;
    let mut kept = Vec::new();
    let mut plans = Vec::new();
    for (i, l) in s1.fs_layers.iter().enumerate() {
        if throwaway[i] {
            continue;
        }
        // schema1 declares no sizes: the file says; its digest is verified while read.
        let member = l.blob_sum.encoded().to_string();
        let size = dir.size(&member)?;
        plans.push(LayerPlan {
            source: Some(Descriptor::new(
                MediaType::DockerLayerGzip,
                l.blob_sum.clone(),
                size,
            )),
            member,
        });
        kept.push(i);
    }
    let inputs: Vec<_> = plans
        .iter()
        .map(|lp| layer_input(ctx.opts.progress, dir, lp))
        .collect();
    let builder = ImageBuilder::new(ctx.lock);
    let mut builder = if ctx.opts.compress.compression == Compression::Gzip {
        builder.keep_compression()
    } else {
        builder.compress(ctx.opts.compress)
    };
    let layers = builder
        .write_layers(&inputs, None)
        .map_err(|e| build_error(dir, "manifest.json", e))?;
    let mut facts = vec![None; s1.fs_layers.len()];
    for (i, l) in kept.into_iter().zip(layers) {
        facts[i] = Some(LayerFacts {
            media_type: l.descriptor.media_type,
            digest: l.info.digest,
            size: l.info.size,
            diff_id: l.info.diff_id,
        });
    }
    let built = schema1::build(bytes, &facts, Target::Oci).map_err(|e| bad(&e))?;
    let mut d = schema1::write(ctx.lock, &built)?;
    let config: ImageConfig =
        serde_json::from_slice(&built.config).map_err(|e| ocikit_layout::Error::Json {
            what: "converted config".into(),
            source: e,
        })?;
    d.platform = config.platform().map(Box::new);
    Ok(d)
}
