//! `cargo xtask fixtures [--check]`: generate the deterministic fixtures under
//! `fixtures/generated/` through the ocikit-layout library, or (`--check`) generate them into a
//! temp dir and fail if the committed copies differ by a byte.
//!
//! `multiarch/`: one ref `app:1`, an OCI index of three images (linux/amd64, linux/arm64/v8,
//! linux/arm/v7), a Docker-style attestation manifest for amd64 (platform unknown/unknown,
//! `vnd.docker.reference.digest`), and an SBOM artifact whose `subject` is the amd64 image
//! (untagged entry). Layers are small gzip tars with fixed metadata.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ocikit_layout::layer::{write_layer, CompressOptions};
use ocikit_layout::{
    Compression, Descriptor, Index, Layout, MediaType, Options, Platform, WriteLock,
};
use serde_json::json;

pub fn run(root: &Path, check: bool) -> anyhow::Result<()> {
    let dest = root.join("fixtures/generated");
    if !check {
        if dest.exists() {
            fs::remove_dir_all(&dest).with_context(|| format!("removing `{}`", dest.display()))?;
        }
        generate(&dest)?;
        println!("wrote {}", dest.display());
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let fresh = tmp.path().join("generated");
    generate(&fresh)?;
    let a = tree(&fresh)?;
    let b = tree(&dest)?;
    if a != b {
        let differ: Vec<&PathBuf> = a
            .keys()
            .chain(b.keys())
            .filter(|k| a.get(*k) != b.get(*k))
            .collect();
        bail!("fixtures/generated is stale ({} file(s) differ, e.g. `{}`): run `cargo xtask fixtures`", differ.len(), differ[0].display());
    }
    println!("fixtures/generated is up to date");
    Ok(())
}

fn tree(dir: &Path) -> anyhow::Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(
                    e.path().strip_prefix(dir)?.to_path_buf(),
                    fs::read(e.path())?,
                );
            }
        }
    }
    Ok(out)
}

fn tar_of(files: &[(&str, &[u8])]) -> anyhow::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, *data)?;
    }
    Ok(b.into_inner()?)
}

fn platform(os: &str, arch: &str, variant: Option<&str>) -> Platform {
    Platform {
        architecture: arch.into(),
        os: os.into(),
        os_version: None,
        os_features: None,
        variant: variant.map(String::from),
        extra: Default::default(),
    }
}

fn blob(lock: &WriteLock<'_>, bytes: &[u8], mt: MediaType) -> anyhow::Result<Descriptor> {
    let (d, s) = lock.write_blob(bytes)?;
    Ok(Descriptor::new(mt, d, s))
}

fn image(lock: &WriteLock<'_>, p: &Platform, payload: &str) -> anyhow::Result<Descriptor> {
    let tar = tar_of(&[("etc/hello.txt", payload.as_bytes())])?;
    let layer = write_layer(
        lock,
        &mut &tar[..],
        CompressOptions {
            compression: Compression::Gzip,
            level: Some(9),
        },
    )?;
    let mut config = json!({
        "architecture": p.architecture, "os": p.os,
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id.as_str()]},
        "history": [{"created_by": "ocikit xtask fixtures"}]
    });
    if let (Some(v), Some(o)) = (&p.variant, config.as_object_mut()) {
        o.insert("variant".into(), json!(v));
    }
    let config = blob(lock, &serde_json::to_vec(&config)?, MediaType::OciConfig)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MediaType::OciManifest.as_str(),
        "config": config,
        "layers": [Descriptor::new(MediaType::OciLayerGzip, layer.digest, layer.size)],
    });
    let mut d = blob(
        lock,
        &serde_json::to_vec(&manifest)?,
        MediaType::OciManifest,
    )?;
    d.platform = Some(Box::new(p.clone()));
    Ok(d)
}

fn generate(dest: &Path) -> anyhow::Result<()> {
    let (layout, _) = Layout::init(
        dest.join("multiarch"),
        Options {
            durable: false,
            ..Options::default()
        },
    )?;
    let lock = layout.lock()?;
    let amd64 = image(
        &lock,
        &platform("linux", "amd64", None),
        "hello from amd64\n",
    )?;
    let arm64 = image(
        &lock,
        &platform("linux", "arm64", Some("v8")),
        "hello from arm64\n",
    )?;
    let arm = image(
        &lock,
        &platform("linux", "arm", Some("v7")),
        "hello from arm\n",
    )?;

    // A Docker-style attestation for amd64: no real platform, names its image by annotation.
    let att_layer = blob(
        &lock,
        br#"{"_type":"https://in-toto.io/Statement/v0.1"}"#,
        MediaType::Other("application/vnd.in-toto+json".into()),
    )?;
    let empty = blob(&lock, b"{}", MediaType::OciEmpty)?;
    let att = json!({
        "schemaVersion": 2, "mediaType": MediaType::OciManifest.as_str(),
        "config": empty, "layers": [att_layer],
    });
    let mut att = blob(&lock, &serde_json::to_vec(&att)?, MediaType::OciManifest)?;
    att.platform = Some(Box::new(platform("unknown", "unknown", None)));
    att.annotations = Some(
        [
            (
                "vnd.docker.reference.digest".to_string(),
                amd64.digest.to_string(),
            ),
            (
                "vnd.docker.reference.type".to_string(),
                "attestation-manifest".to_string(),
            ),
        ]
        .into(),
    );

    let index = json!({
        "schemaVersion": 2, "mediaType": MediaType::OciIndex.as_str(),
        "manifests": [amd64, arm64, arm, att],
        "annotations": {"org.opencontainers.image.source": "https://example.invalid/app"},
    });
    let index_desc = blob(&lock, &serde_json::to_vec(&index)?, MediaType::OciIndex)?;

    // An SBOM artifact referring to the amd64 image.
    let sbom = blob(
        &lock,
        br#"{"spdxVersion":"SPDX-2.3","name":"app"}"#,
        MediaType::Other("application/spdx+json".into()),
    )?;
    let mut subject = amd64.clone();
    subject.platform = None;
    let referrer = json!({
        "schemaVersion": 2, "mediaType": MediaType::OciManifest.as_str(),
        "artifactType": "application/spdx+json",
        "config": empty, "layers": [sbom], "subject": subject,
    });
    let mut referrer_desc = blob(
        &lock,
        &serde_json::to_vec(&referrer)?,
        MediaType::OciManifest,
    )?;
    referrer_desc.artifact_type = Some("application/spdx+json".into());

    let mut idx = Index::empty();
    let mut entry = index_desc;
    entry.set_ref_name(Some("app:1"));
    idx.manifests = vec![entry, referrer_desc];
    lock.commit_index(&idx)?;
    Ok(())
}
