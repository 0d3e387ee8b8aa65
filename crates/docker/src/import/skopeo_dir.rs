//! skopeo `dir:` copies: `manifest.json` (an image manifest, a manifest list with one
//! `<hex>.manifest.json` per instance copied, or schema1) and blobs named by their hex digest.
//! Images are built through the image builder; schema1 manifests are converted (`schema1.rs`).

use ocikit_layout::walk::shape_class;
use ocikit_layout::{Class, Descriptor, Index, Manifest, MediaType, JSON_LIMIT};
use serde_json::{Map, Value};

use super::image::{write_image, ImagePlan, LayerPlan};
use super::{push_named, Ctx, Entry};
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
            // The layer blobs first (schema1 declares no sizes: the files say), then the
            // conversion, which reads them back verified to compute the diff_ids.
            let s1: ocikit_layout::Schema1 = serde_json::from_slice(&bytes).map_err(|e| {
                Error::member(
                    dir.path(),
                    "manifest.json",
                    format!("not a schema1 manifest: {e}"),
                )
            })?;
            for l in &s1.fs_layers {
                let member = l.blob_sum.encoded().to_string();
                if !ctx.copied.insert(l.blob_sum.clone()) {
                    continue;
                }
                if let Some(size) = ctx.lock.layout().blob_size(&l.blob_sum)? {
                    if ctx.lock.reuse_blob(&l.blob_sum, size)? {
                        continue;
                    }
                }
                let alg = l
                    .blob_sum
                    .algorithm()
                    .ok_or_else(|| ocikit_layout::Error::Unverifiable(l.blob_sum.clone()))?;
                let mut r = dir.open(&member)?;
                let mut w = ctx.lock.blob_writer_for(alg)?;
                ocikit_layout::layer::copy_large(&mut r, &mut w)
                    .map_err(|e| Error::io(dir.path(), e))?;
                w.finish_expect(&l.blob_sum, None)
                    .map_err(|e| Error::member(dir.path(), &member, e.to_string()))?;
            }
            // schema1 layers are gzip: kept as they are unless another compression is asked.
            let recompress = (ctx.opts.compress.compression != ocikit_layout::Compression::Gzip)
                .then_some(ctx.opts.compress);
            let mut d =
                crate::schema1::convert(ctx.lock, &bytes, crate::convert::Target::Oci, recompress)
                    .map_err(|e| Error::member(dir.path(), "manifest.json", e.to_string()))?;
            let config = ctx
                .lock
                .layout()
                .read_json::<Manifest>(&d.digest, Some(d.size))
                .and_then(|m| {
                    ctx.lock.layout().read_json::<ocikit_layout::ImageConfig>(
                        &m.value.config.digest,
                        Some(m.value.config.size),
                    )
                })?;
            d.platform = config.value.platform();
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
    if man.config.media_type.class() != Class::Config {
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
