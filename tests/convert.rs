//! `ocikit convert`, end to end: a layout built here (Docker image, Docker list, nested mixed
//! index, OCI artifact with a subject, unknown type, schema1), and the containers/image
//! conversion fixtures.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use ocikit_layout::layer::{write_layer, CompressOptions, LayerInfo};
use ocikit_layout::{Compression, Digest, Layout, Options, WriteLock};
use serde_json::{json, Value};

fn ocikit() -> Command {
    let mut c = Command::cargo_bin("ocikit").expect("binary");
    c.arg("--no-fsync");
    c
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = ocikit().args(args).output().expect("run");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn new_layout(dir: &Path) -> Layout {
    Layout::init(
        dir,
        Options {
            durable: false,
            ..Options::default()
        },
    )
    .expect("init")
    .0
}

/// A one-file tar with fixed headers.
fn tar_of(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path(name).expect("path");
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    b.append(&h, content).expect("append");
    b.into_inner().expect("tar")
}

fn layer(lock: &WriteLock<'_>, name: &str, content: &[u8], c: Compression) -> LayerInfo {
    write_layer(
        lock,
        &mut &tar_of(name, content)[..],
        CompressOptions {
            compression: c,
            level: None,
        },
    )
    .expect("layer")
}

fn put(lock: &WriteLock<'_>, v: &Value) -> Value {
    let bytes = serde_json::to_vec(v).expect("json");
    let (d, n) = lock.write_blob(&bytes).expect("blob");
    json!({"digest": d.as_str(), "size": n})
}

fn desc(mt: &str, blob: &Value) -> Value {
    json!({"mediaType": mt, "digest": blob["digest"], "size": blob["size"]})
}

fn with(mut v: Value, k: &str, x: Value) -> Value {
    v.as_object_mut().expect("object").insert(k.into(), x);
    v
}

fn named(mut d: Value, name: &str) -> Value {
    d.as_object_mut().expect("object").insert(
        "annotations".into(),
        json!({"org.opencontainers.image.ref.name": name}),
    );
    d
}

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

fn config(arch: &str, variant: Option<&str>, layers: &[&LayerInfo]) -> Value {
    let mut c = json!({"architecture": arch, "os": "linux"});
    if let Some(v) = variant {
        c = with(c, "variant", json!(v));
    }
    with(
        c,
        "rootfs",
        json!({"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>()}),
    )
}

fn layer_desc(mt: &str, l: &LayerInfo) -> Value {
    json!({"mediaType": mt, "digest": l.digest.as_str(), "size": l.size})
}

/// The Docker image: two gzip layers, amd64.
fn docker_image(lock: &WriteLock<'_>) -> Value {
    let a = layer(lock, "a.txt", b"layer a\n", Compression::Gzip);
    let b = layer(lock, "b.txt", b"layer b\n", Compression::Gzip);
    let cfg = put(lock, &config("amd64", None, &[&a, &b]));
    let m = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": desc(DOCKER_CONFIG, &cfg),
        "layers": [layer_desc(DOCKER_GZIP, &a), layer_desc(DOCKER_GZIP, &b)],
    });
    desc(DOCKER_MANIFEST, &put(lock, &m))
}

/// Everything: returns the layout directory.
fn build_mixed(root: &Path) -> PathBuf {
    let dir = root.join("l");
    let layout = new_layout(&dir);
    let lock = layout.lock().expect("lock");
    let d1 = docker_image(&lock);

    let c = layer(&lock, "c.txt", b"layer c\n", Compression::Gzip);
    let cfg_arm = put(&lock, &config("arm", Some("v7"), &[&c]));
    let d2 = desc(
        DOCKER_MANIFEST,
        &put(
            &lock,
            &json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": desc(DOCKER_CONFIG, &cfg_arm), "layers": [layer_desc(DOCKER_GZIP, &c)]}),
        ),
    );
    let list = desc(
        DOCKER_LIST,
        &put(
            &lock,
            &json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
                with(d1.clone(), "platform", json!({"architecture": "amd64", "os": "linux"})),
                with(d2, "platform", json!({"architecture": "arm", "os": "linux", "variant": "armv7"})),
            ]}),
        ),
    );

    // An OCI manifest (already OCI, with annotations) in a mixed index with a nested Docker list
    // and a Docker manifest.
    let a = layer(&lock, "a.txt", b"layer a\n", Compression::Gzip);
    let cfg_oci = put(&lock, &config("amd64", None, &[&a]));
    let o1 = desc(
        OCI_MANIFEST,
        &put(
            &lock,
            &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": desc(OCI_CONFIG, &cfg_oci), "layers": [layer_desc(OCI_GZIP, &a)], "annotations": {"org.example.built": "today"}}),
        ),
    );
    let mixed = desc(
        OCI_INDEX,
        &put(
            &lock,
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                list.clone(),
                with(o1, "annotations", json!({"org.example.entry": "kept"})),
                with(d1.clone(), "platform", json!({"architecture": "amd64", "os": "linux"})),
            ], "annotations": {"org.example.note": "mixed"}}),
        ),
    );

    // An OCI artifact whose subject is the Docker image.
    let empty = put(&lock, &json!({}));
    let sig_layer = lock.write_blob(b"signature bytes").expect("blob");
    let sig = desc(
        OCI_MANIFEST,
        &put(
            &lock,
            &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
                "config": desc("application/vnd.oci.empty.v1+json", &empty),
                "layers": [{"mediaType": "application/vnd.example.sig.v1", "digest": sig_layer.0.as_str(), "size": sig_layer.1}],
                "subject": d1.clone()}),
        ),
    );
    let thing = lock.write_blob(b"an unknown thing").expect("blob");
    let unknown = json!({"mediaType": "application/vnd.example.thing", "digest": thing.0.as_str(), "size": thing.1});

    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        named(d1, "docker-img"),
        named(list, "docker-list"),
        named(mixed, "mixed"),
        named(sig, "sig"),
        named(unknown, "unknown"),
    ]});
    lock.commit_index_bytes(&serde_json::to_vec(&index).expect("json"))
        .expect("commit");
    dir
}

fn index_json(dir: &Path) -> Value {
    serde_json::from_slice(&fs::read(dir.join("index.json")).expect("index.json")).expect("json")
}

fn entry(dir: &Path, name: &str) -> Value {
    index_json(dir)["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no ref {name}"))
}

fn digest_of(dir: &Path, name: &str) -> String {
    entry(dir, name)["digest"]
        .as_str()
        .expect("digest")
        .to_string()
}

fn blob(dir: &Path, digest: &str) -> Value {
    let d = Digest::parse(digest).expect("digest");
    serde_json::from_slice(&fs::read(dir.join(d.blob_rel_path())).expect("blob")).expect("json")
}

fn blob_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.join("blobs/sha256"))
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn fsck_deep_clean(dir: &Path) {
    let r = run(&["fsck", "--deep", s(dir)]);
    assert_eq!(r.code, 0, "fsck --deep: {}{}", r.stdout, r.stderr);
}

const D1: &str = "sha256:a15420f947bf19e07f4a0f5bc20b6ecfa93ead90e70ee730be2f2ab2172b9a63";
const LIST: &str = "sha256:a26f1aa39a92e42f9cc35985b3b4ae171c03c1d8f35d04659f0ea09d023c276a";
const MIXED: &str = "sha256:8e88e61768d1ad83fb9352d71eb2177362387f603aa5f5df8a8b26ea643c4945";
const SIG: &str = "sha256:563be4f5ed4fd8a2c8ebbf4a82d1f11c090eab402a6dcbbd8786451362305d44";
const UNKNOWN: &str = "sha256:9bb309f878e65edba2f9a1f1e962282c18110f8569152c211d7bbea4e07ebaf1";
const D1_OCI: &str = "sha256:cf8692c922ee143862c3c93d66b9a8ba79a2773d2a50ed6bf1368d046947345d";
const LIST_OCI: &str = "sha256:412b23a149fe1c3a63b2772b53f061f0798aae78bb8d31dd76e841d50429d418";
const MIXED_OCI: &str = "sha256:65b3dbe640d7074d392980c17c6ab2864d21fda9144e7e93de7f3da22ddb2b92";

#[test]
fn to_oci_then_refused_then_back_to_docker() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = build_mixed(tmp.path());
    fsck_deep_clean(&dir);
    let before = blob(&dir, D1);
    assert_eq!(
        [D1, LIST, MIXED, SIG, UNKNOWN].map(String::from).to_vec(),
        ["docker-img", "docker-list", "mixed", "sig", "unknown"]
            .iter()
            .map(|n| digest_of(&dir, n))
            .collect::<Vec<_>>()
    );

    let r = run(&["convert", s(&dir), "--to", "oci"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        format!(
            "docker-img: {D1} -> {D1_OCI} ({DOCKER_MANIFEST} -> {OCI_MANIFEST})\n\
             docker-list: {LIST} -> {LIST_OCI} ({DOCKER_LIST} -> {OCI_INDEX})\n\
             mixed: {MIXED} -> {MIXED_OCI} ({OCI_INDEX} -> {OCI_INDEX})\n\
             sig: {SIG} unchanged\n\
             unknown: {UNKNOWN} unchanged\n"
        )
    );
    // The manifest: same fields in the same order, types relabelled, config bytes kept.
    let after = blob(&dir, D1_OCI);
    let mut expected = before.clone();
    expected["mediaType"] = json!(OCI_MANIFEST);
    expected["config"]["mediaType"] = json!(OCI_CONFIG);
    for l in expected["layers"].as_array_mut().expect("layers") {
        l["mediaType"] = json!(OCI_GZIP);
    }
    assert_eq!(after, expected);
    assert_eq!(
        serde_json::to_string(&after).expect("json"),
        serde_json::to_string(&expected).expect("json"),
        "field order kept"
    );
    // The list: entries repointed, the non-canonical variant carried as it is.
    let list = blob(&dir, LIST_OCI);
    assert_eq!(list["mediaType"], OCI_INDEX);
    assert_eq!(list["manifests"][0]["digest"], D1_OCI);
    assert_eq!(list["manifests"][0]["mediaType"], OCI_MANIFEST);
    assert_eq!(
        list["manifests"][1]["platform"],
        json!({"architecture": "arm", "os": "linux", "variant": "armv7"})
    );
    // The mixed index: the nested list and the Docker manifest repointed, the OCI manifest and
    // every annotation untouched; the same manifest named twice was converted once.
    let mixed = blob(&dir, MIXED_OCI);
    assert_eq!(mixed["manifests"][0]["digest"], LIST_OCI);
    assert_eq!(
        mixed["manifests"][1]["annotations"],
        json!({"org.example.entry": "kept"})
    );
    assert_eq!(mixed["manifests"][2]["digest"], D1_OCI);
    assert_eq!(
        mixed["manifests"][2]["platform"],
        json!({"architecture": "amd64", "os": "linux"})
    );
    assert_eq!(mixed["annotations"], json!({"org.example.note": "mixed"}));
    // The artifact still names the original image, which stays reachable through it.
    assert_eq!(blob(&dir, SIG)["subject"]["digest"], D1);
    fsck_deep_clean(&dir);

    // Twice: nothing changes.
    let ij = fs::read(dir.join("index.json")).expect("read");
    let r = run(&["convert", s(&dir), "--to", "oci", "-q"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(fs::read(dir.join("index.json")).expect("read"), ij);

    // To Docker, everything: the artifact cannot be expressed; nothing is written.
    let blobs = blob_names(&dir);
    let r = run(&["convert", s(&dir), "--to", "docker"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        format!(
            "ocikit: error: cannot convert to docker, nothing was written:\n  \
             sig ({SIG}): manifest has artifactType `application/vnd.example.sig`\n  \
             sig ({SIG}): config has media type `application/vnd.oci.empty.v1+json`, not an image config\n  \
             sig ({SIG}): manifest has a subject `{D1}`\n"
        )
    );
    assert_eq!(fs::read(dir.join("index.json")).expect("read"), ij);
    assert_eq!(blob_names(&dir), blobs);

    // Only the convertible refs: back to the original bytes; annotations Docker cannot hold
    // are dropped with a warning.
    let r = run(&[
        "convert",
        s(&dir),
        "docker-img",
        "docker-list",
        "mixed",
        "--to",
        "docker",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(digest_of(&dir, "docker-img"), D1);
    assert_eq!(digest_of(&dir, "docker-list"), LIST);
    let mixed_docker = digest_of(&dir, "mixed");
    let m = blob(&dir, &mixed_docker);
    assert_eq!(m["mediaType"], DOCKER_LIST);
    assert_eq!(m.get("annotations"), None);
    assert_eq!(m["manifests"][0]["digest"], LIST);
    assert_eq!(m["manifests"][2]["digest"], D1);
    assert_eq!(m["manifests"][1]["mediaType"], DOCKER_MANIFEST);
    assert_eq!(
        m["manifests"][1]["annotations"],
        json!({"org.example.entry": "kept"})
    );
    let o1 = blob(&dir, m["manifests"][1]["digest"].as_str().expect("digest"));
    assert_eq!(o1.get("annotations"), None);
    let warnings: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 2, "{}", r.stderr);
    assert!(
        warnings[0].ends_with(": `org.example.built`"),
        "{}",
        warnings[0]
    );
    assert_eq!(
        warnings[1],
        format!("warning: dropped the annotations of `{MIXED_OCI}` (docker has no field for them): `org.example.note`")
    );
    assert_eq!(
        entry(&dir, "mixed")["mediaType"],
        DOCKER_LIST,
        "index.json entry relabelled"
    );
    fsck_deep_clean(&dir);
}

fn docker_only(root: &Path) -> PathBuf {
    let dir = root.join("l");
    let layout = new_layout(&dir);
    let lock = layout.lock().expect("lock");
    let d1 = docker_image(&lock);
    let index =
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [named(d1, "img")]});
    lock.commit_index_bytes(&serde_json::to_vec(&index).expect("json"))
        .expect("commit");
    dir
}

#[test]
fn compress_changes_layers_not_diff_ids() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = docker_only(tmp.path());
    assert_eq!(digest_of(&dir, "img"), D1);
    let before = blob(&dir, D1);

    // zstd cannot go into a Docker manifest.
    let ij = fs::read(dir.join("index.json")).expect("read");
    let r = run(&["convert", s(&dir), "--to", "docker", "--compress", "zstd"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: docker manifests cannot hold zstd layers: use `--compress gzip` or `--compress none` with `--to docker`\n"
    );
    // --level needs --compress.
    let r = run(&["convert", s(&dir), "--to", "oci", "--level", "3"]);
    assert_eq!(r.code, 2);
    assert_eq!(fs::read(dir.join("index.json")).expect("read"), ij);

    let r = run(&["convert", s(&dir), "--to", "oci", "--compress", "zstd"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let zst = digest_of(&dir, "img");
    assert_eq!(
        zst,
        "sha256:4c228607161361f8bfc18d4b4578907da34481ade6382366fb43844c8cc928ad"
    );
    assert!(
        r.stderr.ends_with("recompressed 2 layer(s) to zstd\n"),
        "{}",
        r.stderr
    );
    let m = blob(&dir, &zst);
    assert_eq!(
        m["config"],
        json!({"mediaType": OCI_CONFIG, "digest": before["config"]["digest"], "size": before["config"]["size"]})
    );
    for (new, old) in m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .zip(before["layers"].as_array().expect("layers"))
    {
        assert_eq!(new["mediaType"], OCI_ZSTD);
        assert_ne!(new["digest"], old["digest"]);
    }
    fsck_deep_clean(&dir); // checks the zstd content against the config's diff_ids

    // Twice: the same digests, nothing rewritten.
    let r = run(&["convert", s(&dir), "--to", "oci", "--compress", "zstd"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr, format!("img: {zst} unchanged\n"));

    // zstd layers to Docker need --compress gzip|none.
    let r = run(&["convert", s(&dir), "--to", "docker"]);
    assert_eq!(r.code, 2);
    let l0 = m["layers"][0]["digest"].as_str().expect("digest");
    let l1 = m["layers"][1]["digest"].as_str().expect("digest");
    assert_eq!(
        r.stderr,
        format!(
            "ocikit: error: cannot convert to docker, nothing was written:\n  \
             img ({zst}): layers[0] `{l0}` is zstd-compressed (`{OCI_ZSTD}`); add `--compress gzip` or `--compress none`\n  \
             img ({zst}): layers[1] `{l1}` is zstd-compressed (`{OCI_ZSTD}`); add `--compress gzip` or `--compress none`\n"
        )
    );
    // Back to gzip and Docker: the original bytes again (gzip output is deterministic).
    let r = run(&[
        "convert",
        s(&dir),
        "--to",
        "docker",
        "--compress",
        "gzip",
        "-q",
    ]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(digest_of(&dir, "img"), D1);
    fsck_deep_clean(&dir);
}

#[test]
fn diff_id_mismatch_is_refused_naming_the_layer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("l");
    let layout = new_layout(&dir);
    let lock = layout.lock().expect("lock");
    let a = layer(&lock, "a.txt", b"layer a\n", Compression::Gzip);
    let cfg = put(
        &lock,
        &json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [Digest::sha256(b"not it").as_str()]}}),
    );
    let m = desc(
        DOCKER_MANIFEST,
        &put(
            &lock,
            &json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": desc(DOCKER_CONFIG, &cfg), "layers": [layer_desc(DOCKER_GZIP, &a)]}),
        ),
    );
    lock.commit_index_bytes(
        &serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [named(m.clone(), "bad")]}))
            .expect("json"),
    )
    .expect("commit");
    drop(lock);
    let ij = fs::read(dir.join("index.json")).expect("read");
    let r = run(&["convert", s(&dir), "--to", "oci", "--compress", "none"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        format!(
            "ocikit: error: layer `{}` of manifest `{}`: its content has diff_id `{}`, the config says `{}`\n",
            a.digest,
            m["digest"].as_str().expect("digest"),
            a.diff_id,
            Digest::sha256(b"not it")
        )
    );
    assert_eq!(fs::read(dir.join("index.json")).expect("read"), ij);
}
