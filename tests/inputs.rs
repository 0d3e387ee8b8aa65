//! Real inputs: containerd exports kept byte for byte, containerd's full names, skopeo `dir:`
//! copies without a `version` file (and skopeo's mislabelled `uncompressed-image-s2`), archives
//! piped on standard input, and the bounded spool for compressed archives.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use common::{ocikit, ocikit_cmd, run_of, tar_of, tempdir};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn hex(d: &str) -> &str {
    d.strip_prefix("sha256:").expect("sha256")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

struct Export {
    tar: Vec<u8>,
    manifest: String,
    config: String,
    layer: String,
}

/// A `ctr images export` of one image: an OCI layout of a Docker schema2 manifest, the index
/// entry named by containerd (`io.containerd.image.name` and the bare tag as ref), and a
/// `manifest.json` beside it when `with_manifest_json`.
fn ctr_export(gzipped: bool, with_manifest_json: bool) -> Export {
    let layer_tar = tar_of(&[("hello", b"hello from containerd\n")]);
    let (layer, layer_type) = if gzipped {
        (gzip(&layer_tar), DOCKER_LAYER_GZIP)
    } else {
        (layer_tar.clone(), DOCKER_LAYER)
    };
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer_tar)]},
    }))
    .expect("json");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": layer_type, "digest": sha256(&layer), "size": layer.len()}],
    }))
    .expect("json");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": sha256(&manifest), "size": manifest.len(),
            "annotations": {"io.containerd.image.name": "docker.io/library/app:1",
                            "org.opencontainers.image.ref.name": "1"}}],
    }))
    .expect("json");
    let blob = |b: &[u8]| format!("blobs/sha256/{}", hex(&sha256(b)));
    let save = serde_json::to_vec(&json!([{
        "Config": blob(&config), "RepoTags": ["app:1"], "Layers": [blob(&layer)],
    }]))
    .expect("json");
    let (bm, bc, bl) = (blob(&manifest), blob(&config), blob(&layer));
    let mut files: Vec<(&str, &[u8])> = vec![
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json", &index),
        (&bm, &manifest),
        (&bc, &config),
        (&bl, &layer),
    ];
    if with_manifest_json {
        files.push(("manifest.json", &save));
    }
    Export {
        tar: tar_of(&files),
        manifest: sha256(&manifest),
        config: sha256(&config),
        layer: sha256(&layer),
    }
}

fn index(dir: &Path) -> Value {
    serde_json::from_slice(&fs::read(dir.join("index.json")).expect("index.json")).expect("json")
}

#[test]
fn containerd_exports_are_kept_byte_for_byte() {
    let tmp = tempdir();
    let e = ctr_export(true, true);
    fs::write(tmp.path().join("ctr.tar"), &e.tar).expect("write");
    let r = ocikit(tmp.path(), &["import", "ctr.tar", "L"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The schema2 manifest, its config and its gzip layer: the same bytes, the same digests.
    assert_eq!(
        index(&tmp.path().join("L"))["manifests"],
        json!([{"mediaType": DOCKER_MANIFEST, "digest": e.manifest, "size": fs::metadata(tmp.path().join("L/blobs/sha256").join(hex(&e.manifest))).expect("kept").len(),
            "annotations": {"io.containerd.image.name": "docker.io/library/app:1",
                            "org.opencontainers.image.ref.name": "app:1"}}])
    );
    for d in [&e.config, &e.layer] {
        assert!(tmp.path().join("L/blobs/sha256").join(hex(d)).is_file());
    }
    let r = ocikit(tmp.path(), &["fsck", "--deep", "L"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);

    // An uncompressed layer is kept with --compress none, and changed (a new OCI manifest) by
    // default, since the layer is not compressed as asked.
    let e = ctr_export(false, true);
    fs::write(tmp.path().join("plain.tar"), &e.tar).expect("write");
    let r = ocikit(
        tmp.path(),
        &["import", "--compress", "none", "plain.tar", "N"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        index(&tmp.path().join("N"))["manifests"][0]["digest"],
        json!(e.manifest)
    );
    let r = ocikit(tmp.path(), &["import", "plain.tar", "G"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let g = index(&tmp.path().join("G"));
    assert_ne!(g["manifests"][0]["digest"], json!(e.manifest));
    assert_eq!(
        g["manifests"][0]["mediaType"],
        json!("application/vnd.oci.image.manifest.v1+json")
    );
}

#[test]
fn containerd_names_are_full_names() {
    let tmp = tempdir();
    let e = ctr_export(true, false);
    fs::write(tmp.path().join("ctr.tar"), &e.tar).expect("write");
    let r = ocikit(tmp.path(), &["import", "ctr.tar", "L"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        format!(
            "created OCI image layout `L`\nimported `docker.io/library/app:1` {} from `ctr.tar` (oci-archive)\n",
            e.manifest
        )
    );
    let r = ocikit(tmp.path(), &["ls", "--image-id", "--json", "L"]);
    assert_eq!(r.json()[0]["ref"], json!("docker.io/library/app:1"));
    assert_eq!(r.json()[0]["imageId"], json!(e.config));
}

/// A skopeo `dir:` copy: blobs by hex digest, `manifest.json`, and (newer skopeo) `version`.
fn skopeo_dir(dir: &Path, config: &[u8], config_type: &str, layer: &[u8], layer_type: &str) {
    fs::create_dir_all(dir).expect("mkdir");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": config_type, "digest": sha256(config), "size": config.len()},
        "layers": [{"mediaType": layer_type, "digest": sha256(layer), "size": layer.len()}],
    }))
    .expect("json");
    fs::write(dir.join("manifest.json"), manifest).expect("write");
    fs::write(dir.join(hex(&sha256(config))), config).expect("write");
    fs::write(dir.join(hex(&sha256(layer))), layer).expect("write");
}

#[test]
fn skopeo_dirs_without_version_and_mislabelled_blobs_are_read_as_skopeo_reads_them() {
    let tmp = tempdir();
    let layer_tar = tar_of(&[("etc/motd", b"uncompressed\n")]);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer_tar)]},
    }))
    .expect("json");
    // As containers/image's `uncompressed-image-s2`: no `version`, the config labelled
    // `application/octet-stream`, a plain tar labelled gzip.
    skopeo_dir(
        &tmp.path().join("s2"),
        &config,
        "application/octet-stream",
        &layer_tar,
        DOCKER_LAYER_GZIP,
    );
    let r = ocikit(
        tmp.path(),
        &["import", "--compress", "none", "--ref", "s2:1", "s2", "L"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let entry = &index(&tmp.path().join("L"))["manifests"][0];
    let manifest: Value = serde_json::from_slice(
        &fs::read(
            tmp.path()
                .join("L/blobs/sha256")
                .join(hex(entry["digest"].as_str().expect("digest"))),
        )
        .expect("manifest"),
    )
    .expect("json");
    // The layer is labelled for what its bytes are; the config by the manifest's type.
    assert_eq!(
        manifest["layers"],
        json!([{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(&layer_tar), "size": layer_tar.len()}])
    );
    assert_eq!(
        manifest["config"],
        json!({"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()})
    );
    let r = ocikit(tmp.path(), &["fsck", "--deep", "L"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);

    // A directory whose manifest.json names no blob that is there is still refused.
    fs::create_dir_all(tmp.path().join("other")).expect("mkdir");
    fs::write(tmp.path().join("other/manifest.json"), b"[]").expect("write");
    let r = ocikit(tmp.path(), &["import", "other", "M"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: `other`: a directory that is neither an OCI layout (no `oci-layout`) nor a skopeo dir: copy (no `manifest.json` beside a `version` file or a blob it names)\n"
    );
}

fn import_stdin(cwd: &Path, input: &[u8], args: &[&str]) -> common::Run {
    let mut child = ocikit_cmd()
        .current_dir(cwd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer");
    run_of(out, cwd)
}

#[test]
fn archives_are_read_from_stdin() {
    let tmp = tempdir();
    let e = ctr_export(true, true);
    for (name, bytes) in [("plain", e.tar.clone()), ("gzipped", gzip(&e.tar))] {
        let r = import_stdin(tmp.path(), &bytes, &["import", "-", name]);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert_eq!(
            r.stderr,
            format!(
                "created OCI image layout `{name}`\nimported `app:1` {} from `-` (docker-archive (Docker 25+))\n",
                e.manifest
            )
        );
    }
    let r = import_stdin(tmp.path(), &e.tar, &["import", "-", "-", "twice"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: `-`: standard input can be read only once\n"
    );
    assert!(!tmp.path().join("twice").exists());
}

#[test]
fn a_compression_bomb_is_refused_before_it_fills_the_temp_directory() {
    let tmp = tempdir();
    // 256 MiB of zeros in a few kilobytes of zstd: far over the ratio cap.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        enc.write_all(&zeros).expect("write");
    }
    let zst = enc.finish().expect("finish");
    fs::write(tmp.path().join("bomb.tar.zst"), &zst).expect("write");
    let spool = tmp.path().join("spool");
    fs::create_dir(&spool).expect("mkdir");
    let out = ocikit_cmd()
        .current_dir(tmp.path())
        .env("TMPDIR", &spool)
        .args(["import", "bomb.tar.zst", "L"])
        .output()
        .expect("run");
    let r = run_of(out, tmp.path());
    assert_eq!(r.code, 2);
    let prefix =
        "ocikit: error: `bomb.tar.zst`: decompresses to more than 1000 times its compressed size (";
    assert!(r.stderr.starts_with(prefix), "{}", r.stderr);
    assert!(
        r.stderr.ends_with(&format!(
            " from {}): refused as a decompression bomb\n",
            zst.len()
        )),
        "{}",
        r.stderr
    );
    assert!(!tmp.path().join("L").exists());
}

/// A full TMPDIR is named as the cause, not blamed on the input. Needs a small tmpfs (root);
/// skipped with a notice where it cannot be mounted.
#[test]
fn a_full_temp_directory_is_named_as_the_cause() {
    let tmp = tempdir();
    let small = tmp.path().join("small");
    fs::create_dir(&small).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&small);
    // 4 MiB of tar, gzipped: fine as input, too big for a 1 MiB TMPDIR.
    let big: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let gz = gzip(&tar_of(&[("manifest.json", b"[]"), ("big", &big)]));
    fs::write(tmp.path().join("x.tar.gz"), gz).expect("write");
    let out = ocikit_cmd()
        .current_dir(tmp.path())
        .env("TMPDIR", &small)
        .args(["import", "x.tar.gz", "L"])
        .output()
        .expect("run");
    let r = run_of(out, tmp.path());
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: `[TMP]/small`: spooling `x.tar.gz` needs more than the 996148 bytes free in the temp directory (set TMPDIR to a directory with more room)\n"
    );
    assert!(!r.stderr.contains("readable"));
    assert!(!tmp.path().join("L").exists());
}
