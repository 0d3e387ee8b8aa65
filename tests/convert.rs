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

const D1: &str = "sha256:06fb05215aede6cca7922bc1d5ed67723be4e765d744ca320d999b0492c2c9ba";
const LIST: &str = "sha256:d1d46a45a5af97c25344de9eb49b8d9661fcd108204b9899020601df8a8a3983";
const MIXED: &str = "sha256:de01a472be868bb27ff1a780bf9bb2cb4ea4326dfa7bda661a3d5fd55e8ae6a2";
const SIG: &str = "sha256:5f7ea1935267a36d5b353a82f85a2902113eb3537862ab4295d0fe0f970062be";
const UNKNOWN: &str = "sha256:9bb309f878e65edba2f9a1f1e962282c18110f8569152c211d7bbea4e07ebaf1";
const D1_OCI: &str = "sha256:69a5af59a87b128ea3ef78d23cabfc182f29ff29ab4d9a77bcd91f4ddcc75b8b";
const LIST_OCI: &str = "sha256:e74be922cd0776e39dc0872e6c420f774ecced9606413cd92c66be4a0803420f";
const MIXED_OCI: &str = "sha256:b771328bb2ab41e7b01ef7017f5f825113ee5797dc48e3f50cbe24eb16fdc9f8";

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
        "sha256:607a8d23c7d5f1484a16d7ca7f2ae48baca46f8ef25e7561e14c0b099cb769d6"
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

const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
const SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";

/// The same two-layer image (plus one throwaway) as schema1 (signed and unsigned) and as
/// schema2; returns (dir, diff_ids of the schema2 image).
fn schema1_layout(root: &Path) -> (PathBuf, Vec<String>) {
    let dir = root.join("l");
    let layout = new_layout(&dir);
    let lock = layout.lock().expect("lock");
    let a = layer(&lock, "a.txt", b"layer a\n", Compression::Gzip);
    let b = layer(&lock, "b.txt", b"layer b\n", Compression::Gzip);
    // A gzipped empty tar, as Docker wrote for throwaway layers.
    let empty_tar = write_layer(
        &lock,
        &mut &[0u8; 1024][..],
        CompressOptions {
            compression: Compression::Gzip,
            level: None,
        },
    )
    .expect("layer");
    let v1 = |v: Value| json!({"v1Compatibility": v.to_string()});
    let s1 = json!({
        "schemaVersion": 1,
        "name": "example/app",
        "tag": "1",
        "architecture": "amd64",
        "fsLayers": [
            {"blobSum": b.digest.as_str()},
            {"blobSum": empty_tar.digest.as_str()},
            {"blobSum": a.digest.as_str()},
        ],
        "history": [
            v1(json!({"id": "c", "parent": "b", "architecture": "amd64", "os": "linux", "created": "2020-01-03T00:00:00.500Z",
                "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]}, "container_config": {"Cmd": ["/bin/sh", "-c", "echo b > /b.txt"]}, "Size": 8})),
            v1(json!({"id": "b", "parent": "a", "created": "2020-01-02T00:00:00Z", "throwaway": true, "author": "me <me@example.com>",
                "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ENV X=1"]}})),
            v1(json!({"id": "a", "created": "2020-01-01T00:00:00Z", "comment": "base"})),
        ],
    });
    let unsigned = desc(SCHEMA1, &put(&lock, &s1));
    let signed = desc(
        SCHEMA1_SIGNED,
        &put(
            &lock,
            &with(
                s1,
                "signatures",
                json!([{"header": {"alg": "ES256"}, "signature": "c2ln", "protected": "cHJvdA"}]),
            ),
        ),
    );
    let index = json!({"schemaVersion": 2, "manifests": [named(unsigned, "unsigned"), named(signed, "signed")]});
    lock.commit_index_bytes(&serde_json::to_vec(&index).expect("json"))
        .expect("commit");
    (dir, vec![a.diff_id.to_string(), b.diff_id.to_string()])
}

#[test]
fn schema1_to_oci_and_docker() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, diff_ids) = schema1_layout(tmp.path());
    let r = run(&["convert", s(&dir), "--to", "oci", "-q"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let unsigned = entry(&dir, "unsigned");
    let signed = entry(&dir, "signed");
    assert_eq!(unsigned["mediaType"], OCI_MANIFEST);
    // Signatures do not matter: both give the same manifest.
    assert_eq!(unsigned["digest"], signed["digest"]);
    assert_eq!(
        unsigned["digest"],
        "sha256:cf6a03d0a763b15aa03344888b61e15036d539f60a84fe8536d12c23336d2208"
    );
    let m = blob(&dir, unsigned["digest"].as_str().expect("digest"));
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["config"]["mediaType"], OCI_CONFIG);
    let layers: Vec<&str> = m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["mediaType"].as_str().expect("type"))
        .collect();
    assert_eq!(
        layers,
        [OCI_GZIP, OCI_GZIP],
        "throwaway dropped, base first"
    );
    let cfg = blob(&dir, m["config"]["digest"].as_str().expect("digest"));
    assert_eq!(
        cfg,
        json!({
            "architecture": "amd64",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
            "container_config": {"Cmd": ["/bin/sh", "-c", "echo b > /b.txt"]},
            "created": "2020-01-03T00:00:00.500Z",
            "history": [
                {"created": "2020-01-01T00:00:00Z", "comment": "base"},
                {"created": "2020-01-02T00:00:00Z", "author": "me <me@example.com>", "created_by": "/bin/sh -c #(nop) ENV X=1", "empty_layer": true},
                {"created": "2020-01-03T00:00:00.5Z", "created_by": "/bin/sh -c echo b > /b.txt"},
            ],
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        })
    );
    // Keys sorted and `<`, `>`, `&` escaped, as containers/image writes it.
    let cfg_bytes = fs::read(
        dir.join(
            Digest::parse(m["config"]["digest"].as_str().expect("digest"))
                .expect("digest")
                .blob_rel_path(),
        ),
    )
    .expect("read");
    let text = String::from_utf8(cfg_bytes).expect("utf-8");
    assert!(
        text.starts_with(r#"{"architecture":"amd64","config":"#),
        "{text}"
    );
    assert!(
        text.contains(r#""author":"me \u003cme@example.com\u003e""#),
        "{text}"
    );
    fsck_deep_clean(&dir);

    // To Docker schema2 from the same schema1 manifests, in a fresh layout.
    let tmp2 = tempfile::tempdir().expect("tempdir");
    let (dir2, _) = schema1_layout(tmp2.path());
    let r = run(&["convert", s(&dir2), "signed", "--to", "docker"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let e = entry(&dir2, "signed");
    assert_eq!(e["mediaType"], DOCKER_MANIFEST);
    let m2 = blob(&dir2, e["digest"].as_str().expect("digest"));
    assert_eq!(m2["config"]["mediaType"], DOCKER_CONFIG);
    assert_eq!(
        m2["config"]["digest"], m["config"]["digest"],
        "same config bytes"
    );
    assert_eq!(m2["layers"][0]["mediaType"], DOCKER_GZIP);
    assert_eq!(
        entry(&dir2, "unsigned")["mediaType"],
        SCHEMA1,
        "not selected"
    );
    fsck_deep_clean(&dir2);
}

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/convert")
        .join(name);
    fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).expect("fixture parses")
}

/// A layout holding one containers/image fixture manifest (and its config, when given) as
/// ref `img`. Layer blobs are absent: converting without `--compress` does not read them.
fn fixture_layout(root: &Path, manifest: &str, config: Option<&str>, mt: &str) -> PathBuf {
    let dir = root.join(manifest);
    let layout = new_layout(&dir);
    let lock = layout.lock().expect("lock");
    if let Some(c) = config {
        lock.write_blob(&fixture(c)).expect("config");
    }
    let (d, n) = lock.write_blob(&fixture(manifest)).expect("manifest");
    let index = json!({"schemaVersion": 2, "manifests": [named(json!({"mediaType": mt, "digest": d.as_str(), "size": n}), "img")]});
    lock.commit_index_bytes(&serde_json::to_vec(&index).expect("json"))
        .expect("commit");
    dir
}

fn converted(dir: &Path) -> Value {
    blob(dir, &digest_of(dir, "img"))
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().expect("object").shift_remove(key);
    v
}

/// Every field of `small` is in `big` with the same value (objects compared recursively).
fn assert_subset(small: &Value, big: &Value, at: &str) {
    match (small, big) {
        (Value::Object(s), Value::Object(b)) => {
            for (k, v) in s {
                let bv = b.get(k).unwrap_or_else(|| panic!("{at}.{k} missing"));
                assert_subset(v, bv, &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(small, big, "{at}"),
    }
}

/// containers/image `TestConvertToManifestOCI` and `TestConvertToManifestOCIAllMediaTypes`.
#[test]
fn cimage_schema2_to_oci() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = fixture_layout(
        tmp.path(),
        "schema2.json",
        Some("schema2-config.json"),
        DOCKER_MANIFEST,
    );
    let r = run(&["convert", s(&dir), "--to", "oci", "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = converted(&dir);
    assert_eq!(
        without(m.clone(), "config"),
        without(fixture_json("schema2-to-oci1.json"), "config")
    );
    // Deliberate difference: containers/image rewrites the config through its OCI struct
    // (`schema2-to-oci1-config.json`, new digest `sha256:f15ba60e…`, 4670 bytes); ocikit keeps
    // the config bytes and only relabels them. Every field containers/image keeps is in ours.
    assert_eq!(
        m["config"],
        json!({"mediaType": OCI_CONFIG, "size": 5940, "digest": "sha256:9ca4bda0a6b3727a6ffcc43e981cad0f24e2ec79d338f6ba325b4dfd0756fb8f"})
    );
    assert_subset(
        &fixture_json("schema2-to-oci1-config.json"),
        &fixture_json("schema2-config.json"),
        "config",
    );

    // Foreign layers become non-distributable ones. The fixture's config descriptor (size 4651)
    // does not match the config blob it names, which is not in this layout: only the layers
    // are compared, as containers/image's expected output also keeps its config.
    let dir = fixture_layout(
        tmp.path(),
        "schema2-all-media-types.json",
        None,
        DOCKER_MANIFEST,
    );
    let r = run(&["convert", s(&dir), "--to", "oci", "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = converted(&dir);
    let expected = fixture_json("schema2-all-media-types-to-oci1.json");
    assert_eq!(m["layers"], expected["layers"]);
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["config"]["mediaType"], OCI_CONFIG);

    // `TestConvertToOCIWithInvalidMIMEType`: a Docker zstd layer type does not exist.
    let dir = fixture_layout(
        tmp.path(),
        "schema2-invalid-media-type.json",
        None,
        DOCKER_MANIFEST,
    );
    let ij = fs::read(dir.join("index.json")).expect("read");
    let r = run(&["convert", s(&dir), "--to", "oci"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.ends_with("layers[0] `sha256:6a5a5368e0c2d3e5909184fa28ddfd56072e7ff3ee9a945876f7eee5896ef5bb` has media type `application/vnd.docker.image.rootfs.diff.tar.zstd`, which has no OCI equivalent\n"),
        "{}",
        r.stderr
    );
    assert_eq!(fs::read(dir.join("index.json")).expect("read"), ij);
}

/// containers/image `oci_test.go:TestConvertToManifestSchema2` and its refusals.
#[test]
fn cimage_oci_to_schema2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = fixture_layout(
        tmp.path(),
        "oci1.json",
        Some("oci1-config.json"),
        OCI_MANIFEST,
    );
    let r = run(&["convert", s(&dir), "--to", "docker"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Equal as parsed JSON, config included (both keep the config bytes), with one
    // deliberate difference: containers/image drops descriptor annotations (Docker's schema
    // has no such field); ocikit keeps them, as Docker readers ignore unknown fields and the
    // issue asks annotations to be preserved. Only manifest/index annotations are dropped.
    let mut m = converted(&dir);
    assert_eq!(
        m["config"]["annotations"],
        json!({"test-annotation-1": "one"})
    );
    assert_eq!(
        m["layers"][3]["annotations"],
        json!({"test-annotation-2": "two"})
    );
    m["config"] = without(m["config"].clone(), "annotations");
    m["layers"][3] = without(m["layers"][3].clone(), "annotations");
    assert_eq!(m, fixture_json("oci1-to-schema2.json"));
    assert_eq!(
        fixture("oci1-config.json"),
        fixture("oci1-to-schema2-config.json")
    );
    fsck_after_fixture(&dir);

    // Artifact, encrypted layers, zstd layers: refused, each case listed.
    let cases: &[(&str, &[&str])] = &[
        (
            "oci1-artifact.json",
            &["config has media type `application/vnd.oci.custom.artifact.config.v1+json`, not an image config"],
        ),
        (
            "oci1.encrypted.json",
            &[
                "layers[0] `sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa` is encrypted (`application/vnd.oci.image.layer.v1.tar+gzip+encrypted`)",
                "layers[4] `sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee` is encrypted (`application/vnd.oci.image.layer.v1.tar+gzip+encrypted`)",
            ],
        ),
        (
            "oci1-all-media-types.json",
            &[
                "layers[1] `sha256:1bbf5d58d24c47512e234a5623474acf65ae00d4d1414272a893204f44cc680c` is zstd-compressed (`application/vnd.oci.image.layer.v1.tar+zstd`); add `--compress gzip` or `--compress none`",
                "layers[4] `sha256:bbd6b22eb11afce63cc76f6bc41042d99f10d6024c96b655dafba930b8d25909` is a non-distributable zstd layer (`application/vnd.oci.image.layer.nondistributable.v1.tar+zstd`), which ocikit does not recompress",
            ],
        ),
    ];
    for (name, reasons) in cases {
        let dir = fixture_layout(tmp.path(), name, None, OCI_MANIFEST);
        let ij = fs::read(dir.join("index.json")).expect("read");
        let r = run(&["convert", s(&dir), "--to", "docker"]);
        assert_eq!(r.code, 2, "{name}");
        assert!(
            r.stderr
                .starts_with("ocikit: error: cannot convert to docker, nothing was written:\n"),
            "{}",
            r.stderr
        );
        for reason in *reasons {
            assert!(r.stderr.contains(reason), "{name}: {reason}\n{}", r.stderr);
        }
        assert_eq!(
            fs::read(dir.join("index.json")).expect("read"),
            ij,
            "{name}"
        );
        // And to OCI, they pass through untouched.
        let r = run(&["convert", s(&dir), "--to", "oci"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            fs::read(dir.join("index.json")).expect("read"),
            ij,
            "{name}"
        );
    }
}

/// The fixture's layers are not in the layout: check only what fsck can (the documents).
fn fsck_after_fixture(dir: &Path) {
    let r = run(&["fsck", "--json", s(dir)]);
    let v: Value = serde_json::from_str(&r.stdout).expect("json");
    let problems: Vec<&Value> = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|p| p["severity"] == "error")
        .collect();
    // Exactly the five absent layer blobs, nothing about the documents.
    assert_eq!(problems.len(), 5, "{problems:?}");
    for p in problems {
        assert_eq!(p["kind"], "missing");
        assert!(
            p["path"][1].as_str().expect("path").starts_with("layers["),
            "{p}"
        );
    }
}

/// Interop: oci-image-tool accepts the converted OCI images. (Version 1.0.0-rc1 does not
/// know image indexes: it reports them as manifests of an unknown type, and refuses `--ref` in
/// a layout whose nested indexes name the same manifest again; so images are checked in
/// layouts of their own.)
#[test]
fn oci_image_tool_validates_converted_output() {
    let tool = "oci-image-tool";
    if std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("notice: `{tool}` is not installed; skipping the interop check");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = docker_only(&tmp.path().join("d"));
    let r = run(&["convert", s(&dir), "--to", "oci", "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (sdir, _) = schema1_layout(&tmp.path().join("s1"));
    let r = run(&[
        "convert",
        s(&sdir),
        "--to",
        "oci",
        "--compress",
        "none",
        "-q",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (d, name) in [(&dir, "img"), (&sdir, "signed"), (&sdir, "unsigned")] {
        let out = std::process::Command::new(tool)
            .args(["validate", "--type", "image", s(d), "--ref"])
            .arg(format!("name={name}"))
            .output()
            .expect("run oci-image-tool");
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn schema1_with_missing_layer_is_refused_before_writing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("l");
    let layout = new_layout(&dir);
    let lock = layout.lock().expect("lock");
    let absent = Digest::sha256(b"absent");
    let s1 = json!({"schemaVersion": 1, "fsLayers": [{"blobSum": absent.as_str()}],
        "history": [{"v1Compatibility": "{\"id\":\"a\",\"created\":\"2020-01-01T00:00:00Z\"}"}]});
    let m = desc(SCHEMA1, &put(&lock, &s1));
    lock.commit_index_bytes(
        &serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [named(m.clone(), "old")]}))
            .expect("json"),
    )
    .expect("commit");
    drop(lock);
    let ij = fs::read(dir.join("index.json")).expect("read");
    let blobs = blob_names(&dir);
    let r = run(&["convert", s(&dir), "--to", "oci"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        format!(
            "ocikit: error: cannot convert to oci, nothing was written:\n  \
             old ({}): fsLayers[0] `{absent}` is not in the layout; its diff_id cannot be computed\n",
            m["digest"].as_str().expect("digest")
        )
    );
    assert_eq!(fs::read(dir.join("index.json")).expect("read"), ij);
    assert_eq!(blob_names(&dir), blobs);
}

/// Every file under `dir` (relative path -> bytes).
fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, at: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(at).expect("ls").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).expect("under root");
                out.insert(
                    rel.to_string_lossy().into_owned(),
                    fs::read(&p).expect("read"),
                );
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Text-like bytes (compressible, not trivially) from a seed.
fn text(seed: u64, n: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "layer", "chunk", "frame", "digest", "blob", "index", "manifest", "config", "zstd", "gzip",
        "tar", "ref", "the", "of", "and", "a", "\n",
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
        out.push(b' ');
    }
    out.truncate(n);
    out
}

/// A gzip layer at this level.
fn gzip_layer(lock: &WriteLock<'_>, name: &str, content: &[u8], level: Option<i32>) -> LayerInfo {
    write_layer(
        lock,
        &mut &tar_of(name, content)[..],
        CompressOptions {
            compression: Compression::Gzip,
            level,
        },
    )
    .expect("layer")
}

/// An OCI image `img` whose gzip layers (at `level`) are given by content: (dir, layers).
fn oci_image(
    root: &Path,
    level: Option<i32>,
    contents: &[(&str, Vec<u8>)],
) -> (PathBuf, Vec<LayerInfo>) {
    let dir = root.join("l");
    let layout = new_layout(&dir);
    let lock = layout.lock().expect("lock");
    let layers: Vec<LayerInfo> = contents
        .iter()
        .map(|(name, content)| gzip_layer(&lock, name, content, level))
        .collect();
    let cfg = put(
        &lock,
        &config("amd64", None, &layers.iter().collect::<Vec<_>>()),
    );
    let m = desc(
        OCI_MANIFEST,
        &put(
            &lock,
            &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": desc(OCI_CONFIG, &cfg),
                "layers": layers.iter().map(|l| layer_desc(OCI_GZIP, l)).collect::<Vec<_>>()}),
        ),
    );
    lock.commit_index_bytes(
        &serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [named(m, "img")]}))
            .expect("json"),
    )
    .expect("commit");
    (dir, layers)
}

/// `convert` recompresses an image's layers in parallel (a few at a time, each in 1 MiB chunks
/// on every core): on one core (`taskset -c 0`: one layer at a time, one chunk worker) and on
/// all of them, the bytes written are the same.
#[test]
fn parallel_recompression_writes_the_same_bytes_whatever_the_workers() {
    if Command::new("taskset").arg("-V").output().is_err() {
        eprintln!("skipping: `taskset` (util-linux) is not on PATH");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    // Four layers, two of several chunks.
    let (dir, _) = oci_image(
        tmp.path(),
        None,
        &[
            ("big.txt", text(1, (5 << 20) / 2)),
            ("small.txt", text(2, 10_000)),
            ("mid.txt", text(3, (3 << 20) / 2)),
            ("tiny.txt", text(4, 100)),
        ],
    );
    let one = tmp.path().join("one");
    let all = tmp.path().join("all");
    for d in [&one, &all] {
        fs::create_dir(d).expect("mkdir");
        for (rel, bytes) in tree(&dir) {
            let p = d.join(rel);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, bytes).expect("write");
        }
    }
    let bin = assert_cmd::cargo::cargo_bin("ocikit");
    let out = std::process::Command::new("taskset")
        .args(["-c", "0"])
        .arg(&bin)
        .args(["--no-fsync", "convert", "-q", s(&one), "--compress", "zstd"])
        .output()
        .expect("run");
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).as_ref()
        ),
        (Some(0), "")
    );
    let r = run(&["convert", "-q", s(&all), "--compress", "zstd"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(
        digest_of(&all, "img"),
        "sha256:edee0f819ecd10be27f5cfdfa213a613b7348e063303c440fc36394274cd72e9"
    );
    assert!(tree(&one) == tree(&all), "the same files, byte for byte");
    fsck_deep_clean(&all);
}

/// A corrupt layer among layers recompressed in parallel fails the convert with the error
/// naming it, whichever layer finishes first; `index.json` and every file that was there stay
/// as they were, and the only new files are the complete blobs of the other layers
/// (unreferenced: gc removes them).
#[test]
fn a_corrupt_layer_fails_a_parallel_convert_and_leaves_the_layout_as_it_was() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Stored gzip (level 0): other bytes of the same length make a blob of the same size.
    let (dir, layers) = oci_image(
        tmp.path(),
        Some(0),
        &[
            ("a.txt", text(5, 2 << 20)),
            ("b.txt", text(6, 2 << 20)),
            ("c.txt", text(7, 3 << 20)),
        ],
    );
    // What an intact convert writes: the zstd blobs of a and c.
    let good = tmp.path().join("good");
    fs::create_dir(&good).expect("mkdir");
    for (rel, bytes) in tree(&dir) {
        let p = good.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, bytes).expect("write");
    }
    let r = run(&["convert", "-q", s(&good), "--compress", "zstd"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let zstd_layers: Vec<String> = blob(&good, &digest_of(&good, "img"))["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect();

    // Layer b's file holds other gzip bytes of its length: it decompresses, but its digest
    // is not b's.
    let (a, b) = (&layers[0], &layers[1]);
    let other = gzip_layer(
        &new_layout(&tmp.path().join("scratch"))
            .lock()
            .expect("lock"),
        "b.txt",
        &text(8, 2 << 20),
        Some(0),
    );
    let b_path = dir.join(b.digest.blob_rel_path());
    let other_bytes = fs::read(
        tmp.path()
            .join("scratch")
            .join(other.digest.blob_rel_path()),
    )
    .expect("read");
    assert_eq!(other_bytes.len() as u64, b.size, "same length, other bytes");
    fs::write(&b_path, &other_bytes).expect("corrupt b");
    let before = tree(&dir);

    let r = run(&["convert", s(&dir), "--compress", "zstd"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        format!(
            "ocikit: error: layer `{}`: blob `{}` at `{}` has digest `{}`\n",
            b.digest,
            b.digest,
            b_path.display(),
            other.digest
        )
    );
    let after = tree(&dir);
    for (rel, bytes) in &before {
        assert!(after.get(rel) == Some(bytes), "{rel} is as it was");
    }
    let mut new: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    new.sort();
    let mut expected: Vec<String> = [&zstd_layers[0], &zstd_layers[2]]
        .iter()
        .map(|d| format!("blobs/sha256/{}", d.trim_start_matches("sha256:")))
        .collect();
    expected.sort();
    assert_eq!(new, expected.iter().collect::<Vec<_>>());
    assert_ne!(a.digest, b.digest);
    // gc takes the layout back to what it was, file for file.
    let r = run(&["gc", "-q", s(&dir)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        tree(&dir) == before,
        "gc leaves exactly the files of before"
    );
}

/// A layer whose bytes are not in the compression its media type says is refused when
/// recompressed, naming it, instead of being read as what it is; nothing is committed.
#[test]
fn a_layer_in_another_compression_than_its_type_says_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("l");
    let layout = new_layout(&dir);
    let lock = layout.lock().expect("lock");
    let z = layer(&lock, "a.txt", b"layer a\n", Compression::Zstd);
    let cfg = put(&lock, &config("amd64", None, &[&z]));
    let m = desc(
        OCI_MANIFEST,
        &put(
            &lock,
            &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": desc(OCI_CONFIG, &cfg),
                "layers": [layer_desc(OCI_GZIP, &z)]}),
        ),
    );
    lock.commit_index_bytes(
        &serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [named(m, "img")]}))
            .expect("json"),
    )
    .expect("commit");
    drop(lock);
    let before = tree(&dir);
    let r = run(&["convert", s(&dir), "--compress", "none"]);
    assert_eq!(
        (r.code, r.stderr),
        (
            2,
            format!(
                "ocikit: error: layer `{}`: its bytes are zstd-compressed, its media type says gzip\n",
                z.digest
            )
        )
    );
    assert!(tree(&dir) == before, "nothing written");
}
