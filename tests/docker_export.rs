//! `ocikit export`: docker-archive (Docker 25+ dual format) and oci-archive, byte-exact and
//! deterministic; refusals with exit 2.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn ocikit() -> Command {
    let mut c = Command::cargo_bin("ocikit").expect("binary");
    c.env_remove("SOURCE_DATE_EPOCH");
    c
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn import(tmp: &Path, fixtures: &[&str], name: &str) -> PathBuf {
    let dir = tmp.join(name);
    let mut c = ocikit();
    c.arg("import");
    for f in fixtures {
        c.arg(root().join("fixtures/docker").join(f));
    }
    c.arg(&dir).assert().code(0);
    dir
}

/// (name, mode, uid, gid, mtime, size, entry type, bytes) of every member, in order.
type Row = (String, u32, u64, u64, u64, u64, char, Vec<u8>);

fn members(bytes: &[u8]) -> Vec<Row> {
    let mut ar = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read");
        out.push((
            e.path().expect("path").to_string_lossy().into_owned(),
            h.mode().expect("mode"),
            h.uid().expect("uid"),
            h.gid().expect("gid"),
            h.mtime().expect("mtime"),
            h.size().expect("size"),
            if h.entry_type().is_dir() { 'd' } else { 'f' },
            data,
        ));
    }
    out
}

fn member<'a>(rows: &'a [Row], name: &str) -> &'a [u8] {
    &rows.iter().find(|r| r.0 == name).expect(name).7
}

#[test]
fn docker_archive_is_the_dual_format_byte_for_byte() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = import(tmp.path(), &["ggcr-test_link.tar"], "l");
    let out = tmp.path().join("out.tar");
    ocikit()
        .arg("export")
        .arg(&dir)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(0);
    let bytes = fs::read(&out).expect("read");
    // Same input, same bytes: this digest holds on every machine.
    assert_eq!(
        sha256(&bytes),
        "sha256:9c83697dd29752632d15aa7b72c1d76bce70daac6b0e8f4e7c8c85142dfb975f"
    );
    let rows = members(&bytes);
    let names: Vec<(&str, u32, char)> = rows.iter().map(|r| (r.0.as_str(), r.1, r.6)).collect();
    assert_eq!(
        names,
        [
            ("blobs/", 0o755, 'd'),
            ("blobs/sha256/", 0o755, 'd'),
            // Layers first, by name: the archive's manifests name their sizes, learnt while
            // they are written.
            // layer 2 of test_image_3, uncompressed, named by its diff_id
            (
                "blobs/sha256/6b617a2706576ed038acdc3aa668cac62010386a5a3d227d83aada32085c9f29",
                0o644,
                'f'
            ),
            // the shared layer, once
            (
                "blobs/sha256/8897395fd26dc44ad0e2a834335b33198cb41ac4d98dfddf58eced3853fa7b17",
                0o644,
                'f'
            ),
            // then the other blobs, by name: the archive's manifest of test_image_3
            (
                "blobs/sha256/5d3ba42d8384c74af6c56dd0dc3d5351bf28305381fb17fdad9f87743253a742",
                0o644,
                'f'
            ),
            // config of test_image_1
            (
                "blobs/sha256/6e0b05049ed9c17d02e1a55e80d6599dbfcce7f4f4b022e3c673e685789c470e",
                0o644,
                'f'
            ),
            // config of test_image_3
            (
                "blobs/sha256/d4c9adacde69c3d92446e0484cea29493e9fd573cf0c8febfc700d80c46697a4",
                0o644,
                'f'
            ),
            // the archive's manifest of test_image_1
            (
                "blobs/sha256/e3f168bd4161330b031550f00daf2dc2ad80ae80bc62cada518dd1099d8f1358",
                0o644,
                'f'
            ),
            ("index.json", 0o644, 'f'),
            ("manifest.json", 0o644, 'f'),
            ("oci-layout", 0o644, 'f'),
            ("repositories", 0o644, 'f'),
        ]
    );
    for r in &rows {
        assert_eq!((r.2, r.3, r.4), (0, 0, 0), "{}", r.0);
        if let Some(hex) = r.0.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            assert_eq!(
                sha256(&r.7),
                format!("sha256:{hex}"),
                "blob named by its digest"
            );
        }
    }
    assert_eq!(
        String::from_utf8_lossy(member(&rows, "manifest.json")),
        concat!(
            r#"[{"Config":"blobs/sha256/6e0b05049ed9c17d02e1a55e80d6599dbfcce7f4f4b022e3c673e685789c470e","RepoTags":["bazel/v1/tarball:test_image_1"],"Layers":["blobs/sha256/8897395fd26dc44ad0e2a834335b33198cb41ac4d98dfddf58eced3853fa7b17"]},"#,
            r#"{"Config":"blobs/sha256/d4c9adacde69c3d92446e0484cea29493e9fd573cf0c8febfc700d80c46697a4","RepoTags":["bazel/v1/tarball:test_image_3"],"Layers":["blobs/sha256/8897395fd26dc44ad0e2a834335b33198cb41ac4d98dfddf58eced3853fa7b17","blobs/sha256/6b617a2706576ed038acdc3aa668cac62010386a5a3d227d83aada32085c9f29"]}]"#,
            "\n"
        )
    );
    assert_eq!(
        String::from_utf8_lossy(member(&rows, "repositories")),
        "{\"bazel/v1/tarball\":{\"test_image_1\":\"8897395fd26dc44ad0e2a834335b33198cb41ac4d98dfddf58eced3853fa7b17\",\"test_image_3\":\"6b617a2706576ed038acdc3aa668cac62010386a5a3d227d83aada32085c9f29\"}}\n"
    );
    assert_eq!(
        member(&rows, "oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let ix: Value = serde_json::from_slice(member(&rows, "index.json")).expect("json");
    assert_eq!(
        ix["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/bazel/v1/tarball:test_image_1"
    );
    assert_eq!(
        ix["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "test_image_1"
    );
    // The archive's manifest describes uncompressed layers; the config bytes are the stored ones.
    let m: Value = serde_json::from_slice(member(
        &rows,
        "blobs/sha256/e3f168bd4161330b031550f00daf2dc2ad80ae80bc62cada518dd1099d8f1358",
    ))
    .expect("json");
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert_eq!(m["layers"][0]["size"], 10240);

    // Twice: the same bytes. To stdout: the same bytes. With SOURCE_DATE_EPOCH: that mtime.
    let again = tmp.path().join("again.tar");
    ocikit()
        .arg("export")
        .arg(&dir)
        .arg("-o")
        .arg(&again)
        .assert()
        .code(0);
    assert_eq!(fs::read(&again).expect("read"), bytes);
    let stdout = ocikit()
        .arg("export")
        .arg(&dir)
        .args(["-o", "-"])
        .output()
        .expect("run");
    assert_eq!(stdout.status.code(), Some(0));
    assert_eq!(stdout.stdout, bytes);
    let dated = ocikit()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("export")
        .arg(&dir)
        .args(["-q", "-o", "-"])
        .output()
        .expect("run");
    assert!(dated.stderr.is_empty(), "-q is quiet");
    assert!(members(&dated.stdout).iter().all(|r| r.4 == 1_700_000_000));
}

#[test]
fn import_export_import_keeps_config_and_diff_ids() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = import(
        tmp.path(),
        &["ggcr-test_link.tar", "ggcr-whiteout_dir.tar"],
        "first",
    );
    let out = tmp.path().join("x.tar");
    ocikit()
        .arg("export")
        .arg(&first)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(0);
    let second = tmp.path().join("second");
    ocikit()
        .arg("import")
        .arg(&out)
        .arg(&second)
        .assert()
        .code(0);
    // The same refs with the same config digests and diff_ids. (Manifests may differ: the
    // whiteout image's original gzip layers were kept on the first import; the second import
    // compresses the uncompressed archive layers itself.)
    assert_eq!(images(&first), images(&second));
    assert_eq!(images(&first).len(), 3);
}

/// ref -> (config digest, diff_ids) of every entry.
fn images(dir: &Path) -> Vec<(String, String, Vec<String>)> {
    let read = |d: &str| -> Value {
        serde_json::from_slice(&fs::read(dir.join("blobs/sha256").join(&d[7..])).expect("blob"))
            .expect("json")
    };
    let ix: Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).expect("read")).expect("json");
    ix["manifests"]
        .as_array()
        .expect("m")
        .iter()
        .map(|e| {
            let m = read(e["digest"].as_str().expect("d"));
            let c = m["config"]["digest"].as_str().expect("c").to_string();
            let cfg = read(&c);
            let diff_ids = cfg["rootfs"]["diff_ids"]
                .as_array()
                .expect("diff_ids")
                .iter()
                .map(|d| d.as_str().expect("s").to_string())
                .collect();
            (
                e["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .expect("ref")
                    .to_string(),
                c,
                diff_ids,
            )
        })
        .collect()
}

#[test]
fn several_refs_make_one_archive_and_one_ref_a_smaller_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = import(
        tmp.path(),
        &["ggcr-test_link.tar", "ggcr-whiteout_dir.tar"],
        "l",
    );
    let out = ocikit()
        .arg("export")
        .arg(&dir)
        .args([
            "localhost:5000/whiteout:latest",
            "bazel/v1/tarball:test_image_1",
            "-o",
            "-",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let rows = members(&out.stdout);
    let save: Value = serde_json::from_slice(member(&rows, "manifest.json")).expect("json");
    let tags: Vec<&str> = save
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["RepoTags"][0].as_str().expect("tag"))
        .collect();
    assert_eq!(
        tags,
        [
            "localhost:5000/whiteout:latest",
            "bazel/v1/tarball:test_image_1"
        ]
    );
    assert_eq!(
        String::from_utf8_lossy(member(&rows, "repositories")),
        "{\"bazel/v1/tarball\":{\"test_image_1\":\"8897395fd26dc44ad0e2a834335b33198cb41ac4d98dfddf58eced3853fa7b17\"},\"localhost:5000/whiteout\":{\"latest\":\"7afe19580a15baede0095edc04d692cc943e28cefdbf32d5d3d47bc931c37efe\"}}\n"
    );

    // oci-archive of one ref: only what it reaches, descriptors as they are.
    let out = ocikit()
        .arg("export")
        .arg(&dir)
        .args([
            "bazel/v1/tarball:test_image_1",
            "--format",
            "oci-archive",
            "-o",
            "-",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let rows = members(&out.stdout);
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "blobs/",
            "blobs/sha256/",
            "blobs/sha256/6e0b05049ed9c17d02e1a55e80d6599dbfcce7f4f4b022e3c673e685789c470e",
            "blobs/sha256/93bb7940c1e648fa625fa3d28d1e61c984c979de910947c933442d0f2f3e7df4",
            "blobs/sha256/ec2703e25d75565b6c19b9e57ec9e266527d60fc38e99dc734b7a1a39c3556d4",
            "index.json",
            "oci-layout",
        ]
    );
    let ix: Value = serde_json::from_slice(member(&rows, "index.json")).expect("json");
    let layout_ix: Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).expect("read")).expect("json");
    assert_eq!(
        ix["manifests"],
        Value::Array(vec![layout_ix["manifests"][0].clone()])
    );
}

#[test]
fn artifacts_cannot_be_docker_archives() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("a.tar");
    let res = ocikit()
        .arg("export")
        .arg(root().join("fixtures/layouts/oras-images"))
        .args(["nonjson-config", "-o"])
        .arg(&out)
        .output()
        .expect("run");
    assert_eq!(res.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&res.stderr),
        "ocikit: error: ref `nonjson-config` cannot be exported as docker-archive: it is an artifact: its config is `application/vnd.unknown.config.v1+json`, not an image config\n"
    );
    assert!(!out.exists(), "a failed export leaves no file");
    assert_eq!(
        fs::read_dir(tmp.path()).expect("ls").count(),
        0,
        "no temp file left"
    );
    // The helm chart of ggcr's test_index_media_type, named by digest.
    let res = ocikit()
        .arg("export")
        .arg(root().join("fixtures/layouts/ggcr-test_index_media_type"))
        .args([
            "sha256:b544f71ecd82372bc9a3c0dbef378abfd2734fe437df81ff6e242a0d720d8e3e",
            "-o",
        ])
        .arg(&out)
        .output()
        .expect("run");
    assert_eq!(res.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&res.stderr).contains(
        "cannot be exported as docker-archive: it is an artifact: its config is `application/vnd.cncf.helm.config.v1+json`"
    ));
    // As an oci-archive it is fine: nothing Docker-specific is needed.
    ocikit()
        .arg("export")
        .arg(root().join("fixtures/layouts/ggcr-test_index_media_type"))
        .args(["--format", "oci-archive", "-o"])
        .arg(&out)
        .assert()
        .code(0);
}

#[test]
fn index_refs_need_a_platform() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = import(
        tmp.path(),
        &["ggcr-test_image_1.tar", "ggcr-hello-world-v25.tar"],
        "l",
    );
    // Make a two-platform index of the two images, named `multi`.
    let mut ix: Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).expect("read")).expect("json");
    let children: Vec<Value> = ix["manifests"]
        .as_array()
        .expect("m")
        .iter()
        .map(|e| {
            serde_json::json!({
                "mediaType": e["mediaType"], "digest": e["digest"], "size": e["size"], "platform": e["platform"]
            })
        })
        .collect();
    let list = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": children
    }))
    .expect("json");
    let d = sha256(&list);
    fs::write(dir.join("blobs/sha256").join(&d[7..]), &list).expect("write");
    ix["manifests"]
        .as_array_mut()
        .expect("m")
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": list.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi:1"}
        }));
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&ix).expect("json"),
    )
    .expect("write");

    let res = ocikit()
        .arg("export")
        .arg(&dir)
        .args(["multi:1", "-o", "-"])
        .output()
        .expect("run");
    assert_eq!(res.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&res.stderr),
        "ocikit: error: ref `multi:1` names an index; choose one of its platforms with --platform: linux/amd64, linux/arm64\n"
    );
    let res = ocikit()
        .arg("export")
        .arg(&dir)
        .args(["multi:1", "--platform", "linux/s390x", "-o", "-"])
        .output()
        .expect("run");
    assert_eq!(res.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&res.stderr)
        .contains("has no image for platform `linux/s390x`; it has: linux/amd64, linux/arm64"));
    let res = ocikit()
        .arg("export")
        .arg(&dir)
        .args(["multi:1", "--platform", "linux/arm64", "-o", "-"])
        .output()
        .expect("run");
    assert_eq!(res.status.code(), Some(0));
    let rows = members(&res.stdout);
    let save: Value = serde_json::from_slice(member(&rows, "manifest.json")).expect("json");
    assert_eq!(
        save[0]["Config"],
        "blobs/sha256/ee301c921b8aadc002973b2e0c3da17d701dcd994b606769a7e6eaa100b81d44"
    );
    assert_eq!(save[0]["RepoTags"][0], "multi:1");
}

#[test]
fn refs_docker_load_cannot_take_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = import(tmp.path(), &["ggcr-test_image_1.tar"], "l");
    let entry = serde_json::from_slice::<Value>(&fs::read(dir.join("index.json")).expect("read"))
        .expect("json")["manifests"][0]
        .clone();
    let digest = entry["digest"].as_str().expect("digest").to_string();
    for (name, why) in [
        ("latest", "not a Docker image name with a tag; `docker load` needs NAME:TAG (e.g. `ocikit tag DIR latest app:latest`)"),
        ("App:1", "`App` is not a valid Docker repository component (lowercase letters, digits, and . _ __ - between them); `docker load` needs NAME:TAG (e.g. `ocikit tag DIR App:1 app:latest`)"),
    ] {
        ocikit().arg("tag").arg(&dir).arg(&digest).arg(name).assert().code(0);
        let out = tmp.path().join("out.tar");
        let res = ocikit().arg("export").arg(&dir).arg(name).arg("-o").arg(&out).output().expect("run");
        assert_eq!(res.status.code(), Some(2));
        assert_eq!(
            String::from_utf8_lossy(&res.stderr),
            format!("ocikit: error: ref `{name}` cannot be exported as docker-archive: {why}\n")
        );
        assert!(!out.exists(), "nothing written");
        // An oci-archive has no such limit.
        ocikit().arg("export").arg(&dir).arg(name).args(["--format", "oci-archive", "-o"]).arg(&out).assert().code(0);
        fs::remove_file(&out).expect("rm");
    }
}

/// A gzip layer whose content does not match the config's diff_id stops the export, naming
/// the layer, and leaves no file; the layers around it are decompressed by the pool meanwhile.
#[test]
fn a_layer_that_does_not_match_its_diff_id_stops_the_export() {
    use std::io::Write as _;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("l");
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("mkdir");
    fs::write(dir.join("oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}").expect("oci-layout");
    let put = |bytes: &[u8]| -> String {
        let d = sha256(bytes);
        fs::write(blobs.join(&d[7..]), bytes).expect("blob");
        d
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for n in 0..3u8 {
        let mut t = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        let body = vec![b'a' + n; 1000];
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        t.append_data(&mut h, format!("f{n}"), &body[..])
            .expect("append");
        let tar = t.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).expect("gzip");
        let gz = gz.finish().expect("gzip");
        // The config claims layer 1 is the uncompressed tar of layer 2.
        diff_ids.push(sha256(&tar));
        layers.push((put(&gz), gz.len()));
    }
    diff_ids[1] = diff_ids[2].clone();
    let config = format!(
        "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"{}\"]}}}}",
        diff_ids.join("\",\"")
    );
    let config_digest = put(config.as_bytes());
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{config_digest}\",\"size\":{}}},\"layers\":[{}]}}",
        config.len(),
        layers
            .iter()
            .map(|(d, n)| format!(
                "{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"{d}\",\"size\":{n}}}"
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    let manifest_digest = put(manifest.as_bytes());
    fs::write(
        dir.join("index.json"),
        format!(
            "{{\"schemaVersion\":2,\"manifests\":[{{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"{manifest_digest}\",\"size\":{},\"annotations\":{{\"org.opencontainers.image.ref.name\":\"bad:1\"}}}}]}}",
            manifest.len()
        ),
    )
    .expect("index");
    let out = tmp.path().join("out.tar");
    let r = ocikit()
        .arg("export")
        .arg(&dir)
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "layer 1 `{}` decompresses to `{}`, the config's diff_id is `{}`",
            layers[1].0,
            sha256(&{
                let mut t = Vec::new();
                flate2::read::GzDecoder::new(
                    &fs::read(blobs.join(&layers[1].0[7..])).expect("r")[..],
                )
                .read_to_end(&mut t)
                .expect("gunzip");
                t
            }),
            diff_ids[1]
        )),
        "{stderr}"
    );
    assert!(!out.exists());
    assert_eq!(
        fs::read_dir(tmp.path()).expect("ls").count(),
        1,
        "no temp file left beside the output"
    );
}
