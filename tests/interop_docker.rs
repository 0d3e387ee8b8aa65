//! Interop of import and export with the real peers (skopeo, umoci, oci-image-tool). A test
//! whose tool is not on PATH prints a notice and returns; CI (`.ci/run`) installs them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as Std;

use assert_cmd::Command;
use serde_json::Value;

fn ocikit() -> Command {
    let mut c = Command::cargo_bin("ocikit").expect("binary");
    c.env_remove("SOURCE_DATE_EPOCH");
    c
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/docker")
        .join(name)
}

fn have(tool: &str) -> bool {
    let found = Std::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("notice: `{tool}` is not on PATH; skipping this interop test");
    }
    found
}

fn run(cmd: &mut Std) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_file(p: &Path) -> Value {
    serde_json::from_slice(&fs::read(p).expect("read")).expect("json")
}

fn blob_json(dir: &Path, digest: &str) -> Value {
    json_file(&dir.join("blobs/sha256").join(&digest[7..]))
}

fn import(srcs: &[&Path], dir: &Path) {
    let mut c = ocikit();
    c.arg("import").arg("-q");
    for s in srcs {
        c.arg(s);
    }
    c.arg(dir).assert().code(0);
}

fn fsck(dir: &Path) {
    ocikit().args(["fsck", "--deep"]).arg(dir).assert().code(0);
}

/// (ref, config digest, diff_ids) of every entry.
fn images(dir: &Path) -> Vec<(Option<String>, String, Vec<String>)> {
    json_file(&dir.join("index.json"))["manifests"]
        .as_array()
        .expect("m")
        .iter()
        .map(|e| {
            let m = blob_json(dir, e["digest"].as_str().expect("d"));
            let c = m["config"]["digest"].as_str().expect("c").to_string();
            let diff_ids = blob_json(dir, &c)["rootfs"]["diff_ids"]
                .as_array()
                .expect("diff_ids")
                .iter()
                .map(|d| d.as_str().expect("s").to_string())
                .collect();
            let r = e["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .map(String::from);
            (r, c, diff_ids)
        })
        .collect()
}

#[test]
fn skopeo_docker_archive_with_several_tags_imports() {
    if !have("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    import(&[&fixture("ggcr-test_link.tar")], &src);
    let out = tmp.path().join("skopeo.tar");
    run(Std::new("skopeo").args([
        "copy",
        &format!("oci:{}:bazel/v1/tarball:test_image_3", src.display()),
        &format!("docker-archive:{}:example.com/a:1", out.display()),
        "--additional-tag",
        "example.com/a:2",
        "--additional-tag",
        "b:3",
    ]));
    let dir = tmp.path().join("dst");
    import(&[&out], &dir);
    fsck(&dir);
    let got = images(&dir);
    let want_config =
        "sha256:d4c9adacde69c3d92446e0484cea29493e9fd573cf0c8febfc700d80c46697a4".to_string();
    let want_diffs = vec![
        "sha256:8897395fd26dc44ad0e2a834335b33198cb41ac4d98dfddf58eced3853fa7b17".to_string(),
        "sha256:6b617a2706576ed038acdc3aa668cac62010386a5a3d227d83aada32085c9f29".to_string(),
    ];
    // skopeo writes the extra tags as given, prefixing docker.io/ to short names.
    assert_eq!(
        got,
        [
            "example.com/a:1",
            "example.com/a:2",
            "docker.io/library/b:3"
        ]
        .map(|r| (Some(r.to_string()), want_config.clone(), want_diffs.clone()))
    );
}

#[test]
fn skopeo_reads_what_export_writes() {
    if !have("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("l");
    import(
        &[
            &fixture("ggcr-test_link.tar"),
            &fixture("ggcr-whiteout_dir.tar"),
        ],
        &dir,
    );

    // A multi-image docker-archive: skopeo needs a selector, by name or by position.
    let all = tmp.path().join("all.tar");
    ocikit()
        .arg("export")
        .arg(&dir)
        .arg("-o")
        .arg(&all)
        .assert()
        .code(0);
    let inspect: Value = serde_json::from_str(&run(Std::new("skopeo").args([
        "inspect",
        &format!(
            "docker-archive:{}:bazel/v1/tarball:test_image_3",
            all.display()
        ),
    ])))
    .expect("json");
    assert_eq!(
        inspect["Layers"],
        serde_json::json!([
            "sha256:8897395fd26dc44ad0e2a834335b33198cb41ac4d98dfddf58eced3853fa7b17",
            "sha256:6b617a2706576ed038acdc3aa668cac62010386a5a3d227d83aada32085c9f29"
        ])
    );
    run(Std::new("skopeo").args(["inspect", &format!("docker-archive:{}:@2", all.display())]));

    // One image: plain `docker-archive:FILE` works, and copies to a layout fsck accepts.
    let one = tmp.path().join("one.tar");
    ocikit()
        .arg("export")
        .arg(&dir)
        .args(["localhost:5000/whiteout:latest", "-o"])
        .arg(&one)
        .assert()
        .code(0);
    let inspect: Value = serde_json::from_str(&run(Std::new("skopeo").args([
        "inspect",
        "--config",
        &format!("docker-archive:{}", one.display()),
    ])))
    .expect("json");
    assert_eq!(
        inspect["rootfs"]["diff_ids"].as_array().expect("d").len(),
        4
    );
    let copied = tmp.path().join("copied");
    run(Std::new("skopeo").args([
        "copy",
        &format!("docker-archive:{}", one.display()),
        &format!("oci:{}:x", copied.display()),
    ]));
    fsck(&copied);

    // oci-archive: skopeo copies it, and the manifest keeps its digest.
    let oci = tmp.path().join("one.oci.tar");
    ocikit()
        .arg("export")
        .arg(&dir)
        .args([
            "localhost:5000/whiteout:latest",
            "--format",
            "oci-archive",
            "-o",
        ])
        .arg(&oci)
        .assert()
        .code(0);
    let copied = tmp.path().join("copied-oci");
    run(Std::new("skopeo").args([
        "copy",
        &format!(
            "oci-archive:{}:localhost:5000/whiteout:latest",
            oci.display()
        ),
        &format!("oci:{}:x", copied.display()),
    ]));
    fsck(&copied);
    let ix = json_file(&copied.join("index.json"));
    assert_eq!(
        ix["manifests"][0]["digest"],
        json_file(&dir.join("index.json"))["manifests"][2]["digest"]
    );

    // Export twice: the same bytes.
    let again = tmp.path().join("again.tar");
    ocikit()
        .arg("export")
        .arg(&dir)
        .arg("-o")
        .arg(&again)
        .assert()
        .code(0);
    assert_eq!(
        fs::read(&again).expect("read"),
        fs::read(&all).expect("read")
    );
}

#[test]
fn import_export_import_through_skopeo_keeps_config_and_diff_ids() {
    if !have("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = tmp.path().join("first");
    import(&[&fixture("cimage-almostempty.tar")], &first);
    let out = tmp.path().join("x.tar");
    ocikit()
        .arg("export")
        .arg(&first)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(0);
    // skopeo re-reads our archive and writes its own legacy one; ocikit imports that.
    let sk = tmp.path().join("sk.tar");
    run(Std::new("skopeo").args([
        "copy",
        &format!("docker-archive:{}", out.display()),
        &format!("docker-archive:{}:emptyimage:latest", sk.display()),
    ]));
    let second = tmp.path().join("second");
    import(&[&sk], &second);
    let a = images(&first);
    let b = images(&second);
    assert_eq!((&a[0].1, &a[0].2), (&b[0].1, &b[0].2));
}

#[test]
fn umoci_unpacks_imported_layouts() {
    if !have("umoci") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("l");
    import(&[&fixture("ggcr-whiteout_dir.tar")], &dir);
    ocikit()
        .arg("tag")
        .arg(&dir)
        .args(["localhost:5000/whiteout:latest", "wd"])
        .assert()
        .code(0);
    let bundle = tmp.path().join("bundle");
    run(Std::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:wd", dir.display()))
        .arg(&bundle));
    // Layer 1 adds a/foo, layer 2 b/bar, layer 3 deletes directory `a/` with `.wh.a`,
    // layer 4 adds a/baz: a/foo must be gone.
    let mut found = Vec::new();
    let mut stack = vec![bundle.join("rootfs")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("ls") {
            let p = e.expect("entry").path();
            found.push(
                p.strip_prefix(bundle.join("rootfs"))
                    .expect("prefix")
                    .to_string_lossy()
                    .into_owned(),
            );
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    found.sort();
    assert_eq!(found, ["a", "a/baz", "b", "b/bar"]);
}

#[test]
fn oci_image_tool_validates_imported_layouts() {
    if !have("oci-image-tool") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    for (f, r) in [
        ("ggcr-test_image_1.tar", "bazel/v1/tarball:test_image_1"),
        ("ggcr-whiteout_dir.tar", "localhost:5000/whiteout:latest"),
        (
            "moby-emptyLayer.tar",
            "matthughes/library-centos:6-2015.03.20",
        ),
        ("cimage-almostempty.tar", "emptyimage:latest"),
    ] {
        // Not named like an archive: `import` refuses such a destination.
        let dir = tmp.path().join(f.trim_end_matches(".tar"));
        import(&[&fixture(f)], &dir);
        run(Std::new("oci-image-tool")
            .args(["validate", "--type", "image"])
            .arg(&dir)
            .args(["--ref", &format!("name={r}")]));
    }
    // With several entries, oci-image-tool 1.0.0-rc1's `--ref name=` lookup reports "not
    // unique" even for distinct refs, so a multi-image layout is validated whole.
    let dir = tmp.path().join("multi");
    import(
        &[
            &fixture("ggcr-test_link.tar"),
            &fixture("ggcr-test_bundle.tar"),
        ],
        &dir,
    );
    run(Std::new("oci-image-tool")
        .args(["validate", "--type", "image"])
        .arg(&dir));
}

#[test]
fn skopeo_dir_copies_import() {
    if !have("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    import(&[&fixture("ggcr-whiteout_dir.tar")], &src);
    for (format, flag) in [("oci", None), ("docker v2s2", Some("v2s2"))] {
        let d = tmp.path().join(format!("dir-{}", flag.unwrap_or("oci")));
        let mut c = Std::new("skopeo");
        c.arg("copy");
        if let Some(f) = flag {
            c.args(["--format", f]);
        }
        c.arg(format!(
            "oci:{}:localhost:5000/whiteout:latest",
            src.display()
        ))
        .arg(format!("dir:{}", d.display()));
        run(&mut c);
        let dst = tmp.path().join(format!("dst-{}", flag.unwrap_or("oci")));
        ocikit()
            .args(["import", "-q", "--ref", "wd"])
            .arg(&d)
            .arg(&dst)
            .assert()
            .code(0);
        fsck(&dst);
        // dir: keeps the config bytes, so the config digest survives the trip ({format}).
        assert_eq!(images(&src)[0].1, images(&dst)[0].1, "{format}");
        assert_eq!(images(&src)[0].2, images(&dst)[0].2, "{format}");
    }
}

/// A docker-archive with one layer of `file_bytes` in `big.bin` (layer tar, config, manifest).
fn docker_archive_with_file(path: &Path, file_bytes: &[u8]) {
    use sha2::{Digest as _, Sha256};
    let hex = |b: &[u8]| -> String { b.iter().map(|x| format!("{x:02x}")).collect() };
    let mut layer = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(file_bytes.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    layer
        .append_data(&mut h, "big.bin", file_bytes)
        .expect("append");
    let layer = layer.into_inner().expect("layer");
    let diff_id = hex(&Sha256::digest(&layer));
    let config = format!(
        "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"sha256:{diff_id}\"]}}}}"
    );
    let config_hex = hex(&Sha256::digest(config.as_bytes()));
    let manifest = format!(
        "[{{\"Config\":\"{config_hex}.json\",\"RepoTags\":[\"big:1\"],\"Layers\":[\"{diff_id}/layer.tar\"]}}]"
    );
    let mut ar = tar::Builder::new(fs::File::create(path).expect("create"));
    for (name, bytes) in [
        (format!("{config_hex}.json"), config.as_bytes()),
        (format!("{diff_id}/layer.tar"), &layer[..]),
        ("manifest.json".to_string(), manifest.as_bytes()),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        ar.append_data(&mut h, name, bytes).expect("append");
    }
    ar.finish().expect("finish");
}

/// Layers of several chunks (multi-member gzip with stored and deflated members, several zstd
/// frames) are read by umoci (gzip: unpacked) and skopeo (zstd: recompressed to gzip, whose
/// diff_ids fsck --deep then checks against the config).
#[test]
fn peers_read_multi_chunk_gzip_and_zstd_layers() {
    if !have("umoci") || !have("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut bytes: Vec<u8> = (0..1_500_000u32)
        .map(|i| b"layer text, compressible\n"[(i % 25) as usize])
        .collect();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    bytes.extend((0..1_200_000).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 32) as u8
    }));
    let archive = tmp.path().join("big.tar");
    docker_archive_with_file(&archive, &bytes);

    let gz = tmp.path().join("gz");
    import(&[&archive], &gz);
    fsck(&gz);
    let largest = |dir: &Path| -> Vec<u8> {
        fs::read_dir(dir.join("blobs/sha256"))
            .expect("ls")
            .map(|e| fs::read(e.expect("entry").path()).expect("read"))
            .max_by_key(Vec::len)
            .expect("a blob")
    };
    let members = largest(&gz)
        .windows(8)
        .filter(|w| w == &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0])
        .count();
    assert_eq!(members, 3, "one gzip member per started MiB");
    let bundle = tmp.path().join("bundle");
    run(Std::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:big:1", gz.display()))
        .arg(&bundle));
    assert!(fs::read(bundle.join("rootfs/big.bin")).expect("unpacked") == bytes);

    let zst = tmp.path().join("zst");
    ocikit()
        .args(["import", "-q", "--compress", "zstd"])
        .arg(&archive)
        .arg(&zst)
        .assert()
        .code(0);
    let frames = largest(&zst)
        .windows(4)
        .filter(|w| w == &[0x28, 0xb5, 0x2f, 0xfd])
        .count();
    assert_eq!(frames, 3, "one zstd frame per started MiB");
    let back = tmp.path().join("back");
    run(Std::new("skopeo")
        .args(["copy", "-q", "--dest-compress-format", "gzip"])
        .arg(format!("oci:{}:big:1", zst.display()))
        .arg(format!("oci:{}:big:1", back.display())));
    fsck(&back);
    assert_eq!(images(&back)[0].2, images(&zst)[0].2);
}
