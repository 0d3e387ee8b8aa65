//! `ocikit import`: every docker-save archive of the corpus (CATALOG.md §2.1), with the outcome
//! its source project asserts or, where ocikit deliberately differs, a comment saying so; and
//! one test per kind of bad source, each leaving the destination unchanged.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/docker")
        .join(name)
}

fn ocikit() -> Command {
    let mut c = Command::cargo_bin("ocikit").expect("binary");
    c.env_remove("SOURCE_DATE_EPOCH");
    c
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn blob(dir: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256");
    fs::read(dir.join("blobs/sha256").join(hex)).expect("blob")
}

fn json_blob(dir: &Path, digest: &str) -> Value {
    serde_json::from_slice(&blob(dir, digest)).expect("json")
}

fn index(dir: &Path) -> Value {
    serde_json::from_slice(&fs::read(dir.join("index.json")).expect("index.json")).expect("json")
}

fn fsck_deep_clean(dir: &Path) {
    let out = ocikit()
        .args(["fsck", "--deep"])
        .arg(dir)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "fsck --deep: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// What one imported index entry must be.
struct Expect {
    reference: Option<&'static str>,
    containerd: Option<&'static str>,
    manifest: &'static str,
    platform: &'static str,
    config: &'static str,
    layers: &'static [&'static str],
    diff_ids: &'static [&'static str],
}

fn import_ok(fixture_name: &str, extra: &[&str], expect: &[Expect]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("layout");
    ocikit()
        .arg("import")
        .arg(fixture(fixture_name))
        .arg(&dir)
        .args(extra)
        .assert()
        .code(0);
    let ix = index(&dir);
    let entries = ix["manifests"].as_array().expect("manifests");
    assert_eq!(entries.len(), expect.len(), "{ix}");
    for (e, x) in entries.iter().zip(expect) {
        assert_eq!(e["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(e["digest"], x.manifest, "{e}");
        assert_eq!(
            e["annotations"]["org.opencontainers.image.ref.name"].as_str(),
            x.reference
        );
        assert_eq!(
            e["annotations"]["io.containerd.image.name"].as_str(),
            x.containerd
        );
        let p = &e["platform"];
        assert_eq!(
            format!(
                "{}/{}",
                p["os"].as_str().expect("os"),
                p["architecture"].as_str().expect("arch")
            ),
            x.platform
        );
        let mbytes = blob(&dir, x.manifest);
        assert_eq!(sha256(&mbytes), x.manifest);
        let m: Value = serde_json::from_slice(&mbytes).expect("manifest");
        // Field order is fixed: schemaVersion, mediaType, config, layers.
        let text = String::from_utf8(mbytes).expect("utf8");
        assert!(
            text.starts_with(
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":""#
            ),
            "{text}"
        );
        assert_eq!(m["config"]["digest"], x.config);
        let layers: Vec<&str> = m["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["digest"].as_str().expect("digest"))
            .collect();
        assert_eq!(layers, x.layers);
        let cfg = json_blob(&dir, x.config);
        let diff_ids: Vec<&str> = cfg["rootfs"]["diff_ids"]
            .as_array()
            .expect("diff_ids")
            .iter()
            .map(|d| d.as_str().expect("str"))
            .collect();
        assert_eq!(diff_ids, x.diff_ids);
    }
    fsck_deep_clean(&dir);
    tmp
}

const IMAGE_1: Expect = Expect {
    reference: Some("bazel/v1/tarball:test_image_1"),
    containerd: Some("docker.io/bazel/v1/tarball:test_image_1"),
    manifest: "sha256:ec2703e25d75565b6c19b9e57ec9e266527d60fc38e99dc734b7a1a39c3556d4",
    platform: "linux/amd64",
    // The config member is `6e0b0504….json`: its bytes are kept, so its digest is its name.
    config: "sha256:6e0b05049ed9c17d02e1a55e80d6599dbfcce7f4f4b022e3c673e685789c470e",
    layers: &["sha256:93bb7940c1e648fa625fa3d28d1e61c984c979de910947c933442d0f2f3e7df4"],
    diff_ids: &["sha256:8897395fd26dc44ad0e2a834335b33198cb41ac4d98dfddf58eced3853fa7b17"],
};

#[test]
fn test_image_1_legacy_docker_save() {
    // ggcr TestManifestAndConfig: VALID, one layer.
    let tmp = import_ok("ggcr-test_image_1.tar", &[], &[IMAGE_1]);
    // The config's bytes are kept exactly.
    let dir = tmp.path().join("layout");
    let member = tar_member(
        &fixture("ggcr-test_image_1.tar"),
        "6e0b05049ed9c17d02e1a55e80d6599dbfcce7f4f4b022e3c673e685789c470e.json",
    );
    assert_eq!(blob(&dir, IMAGE_1.config), member);
}

fn tar_member(path: &Path, name: &str) -> Vec<u8> {
    let mut ar = tar::Archive::new(fs::File::open(path).expect("open"));
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        if e.path().expect("path").to_str() == Some(name) {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut v).expect("read");
            return v;
        }
    }
    panic!("no member {name}");
}

#[test]
fn test_link_symlinked_layer() {
    // ggcr TestLayerLink: the second image's first layer is a symlink to the first image's
    // layer; it must read the link target's content (so both images share one blob).
    import_ok(
        "ggcr-test_link.tar",
        &[],
        &[
            IMAGE_1,
            Expect {
                reference: Some("bazel/v1/tarball:test_image_3"),
                containerd: Some("docker.io/bazel/v1/tarball:test_image_3"),
                manifest: "sha256:953e54c5a2fc47907728d72bea497ef6abda1abde7d7616a727378de8cde736d",
                platform: "linux/amd64",
                config: "sha256:d4c9adacde69c3d92446e0484cea29493e9fd573cf0c8febfc700d80c46697a4",
                layers: &[
                    "sha256:93bb7940c1e648fa625fa3d28d1e61c984c979de910947c933442d0f2f3e7df4",
                    "sha256:dad19d41eed7baba19ca5fa24242155d304fd6a63fcfd9f680620afa2b76745a",
                ],
                diff_ids: &[
                    "sha256:8897395fd26dc44ad0e2a834335b33198cb41ac4d98dfddf58eced3853fa7b17",
                    "sha256:6b617a2706576ed038acdc3aa668cac62010386a5a3d227d83aada32085c9f29",
                ],
            },
        ],
    );
}

#[test]
fn test_bundle_two_images() {
    // ggcr TestBundleSingle says loading one image *without a tag* is ambiguous; ocikit imports
    // every image of the archive, so there is nothing to choose (TestBundleMultiple: each image
    // is valid). The LayerSources entry of test_image_2 names a gzip blob that is not shipped;
    // the layer itself is in the archive, so it is imported from there.
    import_ok(
        "ggcr-test_bundle.tar",
        &[],
        &[
            Expect {
                reference: Some("test_image_2"),
                containerd: Some("docker.io/library/test_image_2:latest"),
                manifest: "sha256:cfe2c3a061107e0f785a940f3a5ca879ec48a1ec0c52ed8c05dfd5df73596a52",
                platform: "linux/amd64",
                config: "sha256:930705ce23e3b6ed4c08746b6fe880089c864fbaf62482702ae3fdd66b8c7fe9",
                layers: &[
                    "sha256:8fce91661775fb26fee72e14d8297f4f1cd354bbccc6584c8974438715691f23",
                ],
                diff_ids: &[
                    "sha256:3610aa5267a210147ba6ca02cdd87610dfc08522de9c5f5015edd8ee14853fd8",
                ],
            },
            Expect {
                reference: Some("test_image_1"),
                containerd: Some("docker.io/library/test_image_1:latest"),
                ..IMAGE_1
            },
        ],
    );
}

const HELLO_V25: Expect = Expect {
    reference: None,
    containerd: None,
    manifest: "sha256:47987dd8c1d6b2504d79a4c7992c603df047795ccfee0f9fb3f7968b44bfc381",
    platform: "linux/arm64",
    config: "sha256:ee301c921b8aadc002973b2e0c3da17d701dcd994b606769a7e6eaa100b81d44",
    layers: &["sha256:83f8299c45c414192334d7b42854cb6b9c59e47f031660e5a6948c039cd78116"],
    diff_ids: &["sha256:12660636fe55438cc3ae7424da7ac56e845cdb52493ff9cf949c47a7f57f8b43"],
};

#[test]
fn hello_world_v25_dual_format() {
    // ggcr TestDocker25: VALID as docker save. Its index.json was stripped to
    // `"manifests": null`, so manifest.json is what names the image; RepoTags is null, so the
    // image is untagged (and takes --ref when given).
    import_ok("ggcr-hello-world-v25.tar", &[], &[HELLO_V25]);
    import_ok(
        "ggcr-hello-world-v25.tar",
        &["--ref", "hello-world:latest"],
        &[Expect {
            reference: Some("hello-world:latest"),
            containerd: Some("docker.io/library/hello-world:latest"),
            ..HELLO_V25
        }],
    );
}

#[test]
fn whiteout_dir_gzip_layers_are_copied_as_they_are() {
    // ggcr mutate tests load it: VALID. Its layers are gzip already, so they are stored
    // unchanged: each layer's digest is the sha256 its member name carries.
    import_ok(
        "ggcr-whiteout_dir.tar",
        &[],
        &[Expect {
            reference: Some("localhost:5000/whiteout:latest"),
            containerd: Some("localhost:5000/whiteout:latest"),
            manifest: "sha256:4bcabe4d5d497d23d128a114cea45fbab34d150b5042d7a049649a226bef9bbe",
            platform: "linux/amd64",
            config: "sha256:92f1e3d53acdc7e137e73869abc4e87aba6614440a31723423790ca0d5db9111",
            layers: &[
                "sha256:e351ee8e5cab41e244c9a219e949dcc90cfa157f0a216157e3406eeef976a953",
                "sha256:66386e0afc5a20378faa73a0d72ebcd690c13248867dfc299997ab5d6c5a4608",
                "sha256:9d8bff046c709e215d2c0a5b720ca4edf67e925af8078393ae99ed0724963e40",
                "sha256:a09a7f2d8191df180b280eceb816ba2ce5440564e4e41b79d9f8d7641aa7171a",
            ],
            diff_ids: &[
                "sha256:7e9fc0fd7367e0b3c3417cd2f96905d16b7314fcc5b38cab4c3e01d7ea719f48",
                "sha256:671e19d084a03c0ef04379902fd228c0f8221778a4011f031528f7e484d1ba45",
                "sha256:a941a11c30af7442c9d9d635ee7c13beb54a9b9272577a0e1e78314c8843d27a",
                "sha256:7afe19580a15baede0095edc04d692cc943e28cefdbf32d5d3d47bc931c37efe",
            ],
        }],
    );
}

#[test]
fn almostempty_containers_image_reference_archive() {
    // containers/image docker/archive transport tests: VALID, tag emptyimage:latest.
    import_ok(
        "cimage-almostempty.tar",
        &[],
        &[Expect {
            reference: Some("emptyimage:latest"),
            containerd: Some("docker.io/library/emptyimage:latest"),
            manifest: "sha256:d2f3c163c6c5f8b0b88cfa1b620f735283d7eae21082a1563285142b00e541f7",
            platform: "linux/amd64",
            config: "sha256:9d7f147c0d0c4d4538a04c7ef385809e56eb1aac7bf800fbe976612188025b68",
            layers: &["sha256:985d0ff62ed261747d92cb620e9ca4cf34d9e5017b90e7f4206f0493e04fc9c8"],
            diff_ids: &["sha256:0b916d257bd406111a3fced53f81b47de9a30f7c7d514a89769b3483aaddca7e"],
        }],
    );
}

#[test]
fn no_manifest_legacy_archive_is_read() {
    // Deliberate difference: ggcr TestNoManifest expects an ERROR. The issue asks ocikit to
    // read the oldest archives (only `repositories` and `<id>/json`), so the config is rebuilt
    // from `<id>/json` as moby's legacy loader rebuilds it.
    let tmp = import_ok(
        "ggcr-no_manifest.tar",
        &[],
        &[Expect {
            reference: Some("bazel/v1/tarball:test_image"),
            containerd: Some("docker.io/bazel/v1/tarball:test_image"),
            manifest: "sha256:2de31da0ff06db5bb722642f1bb00d211f1c7f72594f32abe8987ed613d5c113",
            platform: "linux/amd64",
            config: "sha256:5760349ac96a85fe2b1d70264cb4d9558f5397fe2e5fc4b94ea316a35b4254d8",
            layers: &["sha256:5fa48ece09a3d592cc2ea0c4923039bf390eebd5ba108556d41fdd51a6bfe59c"],
            diff_ids: &["sha256:fbec6100edacb7a6374f75545cfdfac2d83f74d0f5ed813645e4c3944c68c761"],
        }],
    );
    let dir = tmp.path().join("layout");
    assert_eq!(
        String::from_utf8(blob(
            &dir,
            "sha256:5760349ac96a85fe2b1d70264cb4d9558f5397fe2e5fc4b94ea316a35b4254d8"
        ))
        .expect("utf8"),
        r#"{"architecture":"amd64","config":{},"created":"1970-01-01T00:00:00Z","history":[{"created":"1970-01-01T00:00:00Z"}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:fbec6100edacb7a6374f75545cfdfac2d83f74d0f5ed813645e4c3944c68c761"]}}"#
    );
}

#[test]
fn empty_layer_legacy_archive_is_read() {
    // Deliberate difference: moby TestLoadZeroSizeLayer is skipped because current Docker
    // refuses archives without manifest.json (ERROR). ocikit reads them; the zero-byte
    // `layer.tar` of the middle image is an empty layer: a history entry with `empty_layer`
    // and no layer, so the image stays a valid OCI image.
    let tmp = import_ok(
        "moby-emptyLayer.tar",
        &[],
        &[Expect {
            reference: Some("matthughes/library-centos:6-2015.03.20"),
            containerd: Some("docker.io/matthughes/library-centos:6-2015.03.20"),
            manifest: "sha256:53dbbe69c1bbb059e5bb00e0bf6981c0505c25a53c750e663b361c64f037a42d",
            platform: "linux/amd64",
            config: "sha256:79e03b4711fd72081c457a8af8ba3eabbf700a8dd3f85e81065e8606b2d2b3f0",
            layers: &[
                "sha256:fa95d635df5d4d69bcab042a22943b647909c57f9246462d88a43a4ea28dea07",
                "sha256:43815dc90ef480370b6d7b644f919b2fee118e1a21f097ed8a0e2fdf2967b820",
            ],
            diff_ids: &[
                "sha256:f624397841595b2369935cbd47fde10171ff91347afa9a5c793275d3765e8e0d",
                "sha256:3b90aed61465a1f294fdd312108c1e7f476b3e1b7246c8eebc0f537dec42f2de",
            ],
        }],
    );
    let cfg = json_blob(
        &tmp.path().join("layout"),
        "sha256:79e03b4711fd72081c457a8af8ba3eabbf700a8dd3f85e81065e8606b2d2b3f0",
    );
    let empty: Vec<bool> = cfg["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["empty_layer"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(empty, [false, true, false]);
    // The v1 fields are gone, the rest of the top image's JSON stays.
    assert!(cfg.get("id").is_none() && cfg.get("parent").is_none() && cfg.get("Size").is_none());
    assert_eq!(cfg["docker_version"], "1.4.1");
}

#[test]
fn null_manifest_is_refused() {
    // ggcr TestNullManifest and moby: ERROR.
    bad_source(
        &fixture("ggcr-null_manifest.tar"),
        "member `manifest.json`: is `null`, not a list of images",
    );
}

#[test]
fn compression_choices() {
    // --compress none: the stored layer is the tar itself, so its digest is its diff_id.
    import_ok(
        "ggcr-test_image_1.tar",
        &["--compress", "none"],
        &[Expect {
            manifest: "sha256:e3f168bd4161330b031550f00daf2dc2ad80ae80bc62cada518dd1099d8f1358",
            layers: &["sha256:8897395fd26dc44ad0e2a834335b33198cb41ac4d98dfddf58eced3853fa7b17"],
            ..IMAGE_1
        }],
    );
    // --compress zstd: a zstd layer with the same diff_id.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("z");
    ocikit()
        .args(["import", "--compress", "zstd", "--level", "19"])
        .arg(fixture("ggcr-test_image_1.tar"))
        .arg(&dir)
        .assert()
        .code(0);
    let m = json_blob(
        &dir,
        index(&dir)["manifests"][0]["digest"].as_str().expect("d"),
    );
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(m["config"]["digest"], IMAGE_1.config);
    let zst = blob(&dir, m["layers"][0]["digest"].as_str().expect("d"));
    assert_eq!(
        sha256(&zstd::decode_all(&zst[..]).expect("zstd")),
        IMAGE_1.diff_ids[0]
    );
    fsck_deep_clean(&dir);
    // --level without compression is a usage error.
    ocikit()
        .args(["import", "--compress", "none", "--level", "3"])
        .arg(fixture("ggcr-test_image_1.tar"))
        .arg(tmp.path().join("n"))
        .assert()
        .code(2);
}

#[test]
fn existing_ref_moves_and_stderr_says_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("l");
    ocikit()
        .args(["import", "--ref", "bazel/v1/tarball:test_image_1"])
        .arg(fixture("ggcr-hello-world-v25.tar"))
        .arg(&dir)
        .assert()
        .code(0);
    let out = ocikit()
        .arg("import")
        .arg(fixture("ggcr-test_image_1.tar"))
        .arg(&dir)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "ref `bazel/v1/tarball:test_image_1` moved from `{}` to `{}`",
            HELLO_V25.manifest, IMAGE_1.manifest
        )),
        "{err}"
    );
    let ix = index(&dir);
    assert_eq!(ix["manifests"].as_array().expect("m").len(), 1);
    assert_eq!(ix["manifests"][0]["digest"], IMAGE_1.manifest);
    // Importing the same again changes nothing and says nothing about moves.
    let before = fs::read(dir.join("index.json")).expect("read");
    let out = ocikit()
        .arg("import")
        .arg(fixture("ggcr-test_image_1.tar"))
        .arg(&dir)
        .output()
        .expect("run");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("moved"));
    assert_eq!(fs::read(dir.join("index.json")).expect("read"), before);
}

#[test]
fn several_sources_merge_into_one_layout_and_dedupe_blobs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("l");
    ocikit()
        .arg("import")
        .arg(fixture("ggcr-test_image_1.tar"))
        .arg(fixture("ggcr-test_link.tar"))
        .arg(&dir)
        .assert()
        .code(0);
    let ix = index(&dir);
    let refs: Vec<&str> = ix["manifests"]
        .as_array()
        .expect("m")
        .iter()
        .map(|e| {
            e["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .expect("ref")
        })
        .collect();
    assert_eq!(
        refs,
        [
            "bazel/v1/tarball:test_image_1",
            "bazel/v1/tarball:test_image_3"
        ]
    );
    // 2 manifests, 2 configs, 2 layers: the shared layer is stored once.
    assert_eq!(
        fs::read_dir(dir.join("blobs/sha256")).expect("ls").count(),
        6
    );
    fsck_deep_clean(&dir);
}

#[test]
fn compressed_archives_and_oci_archives_and_layouts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // .tar.gz and .tar.zst are read transparently.
    let raw = fs::read(fixture("ggcr-test_image_1.tar")).expect("read");
    let gz = tmp.path().join("a.tar.gz");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut e, &raw).expect("gz");
    fs::write(&gz, e.finish().expect("gz")).expect("write");
    let zst = tmp.path().join("a.tar.zst");
    fs::write(&zst, zstd::encode_all(&raw[..], 3).expect("zstd")).expect("write");
    for src in [&gz, &zst] {
        let dir = tmp.path().join(format!(
            "from-{}",
            src.extension().expect("ext").to_string_lossy()
        ));
        ocikit().arg("import").arg(src).arg(&dir).assert().code(0);
        assert_eq!(index(&dir)["manifests"][0]["digest"], IMAGE_1.manifest);
    }
    // An oci-archive (as `export --format oci-archive` writes it) imports as it is.
    let first = tmp.path().join("from-gz");
    let oci = tmp.path().join("x.oci.tar");
    ocikit()
        .args(["export", "--format", "oci-archive", "-o"])
        .arg(&oci)
        .arg(&first)
        .assert()
        .code(0);
    let again = tmp.path().join("from-oci");
    ocikit()
        .arg("import")
        .arg(&oci)
        .arg(&again)
        .assert()
        .code(0);
    assert_eq!(
        fs::read(again.join("index.json")).expect("read"),
        fs::read(first.join("index.json")).expect("read")
    );
    // An OCI layout directory is merged (blobs linked or copied, verified).
    let merged = tmp.path().join("merged");
    ocikit()
        .arg("import")
        .arg(fixture("ggcr-hello-world-v25.tar"))
        .arg(&merged)
        .assert()
        .code(0);
    ocikit()
        .arg("import")
        .arg(&first)
        .arg(&merged)
        .assert()
        .code(0);
    let ix = index(&merged);
    let digests: Vec<&str> = ix["manifests"]
        .as_array()
        .expect("m")
        .iter()
        .map(|e| e["digest"].as_str().expect("d"))
        .collect();
    assert_eq!(digests, [HELLO_V25.manifest, IMAGE_1.manifest]);
    fsck_deep_clean(&merged);
}

// ---------------------------------------------------------------- bad sources

/// A tar member for hand-made archives; names and link targets are written raw, so absolute
/// and `..` names can be made.
enum M<'a> {
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
}

fn raw_tar(members: &[M<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        let mut h = tar::Header::new_ustar();
        let (name, data, link): (&str, &[u8], Option<&str>) = match m {
            M::File(n, d) => (n, d, None),
            M::Symlink(n, t) => (n, &[], Some(t)),
        };
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(t) = link {
                old.linkname[..t.len()].copy_from_slice(t.as_bytes());
            }
        }
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_entry_type(if link.is_some() {
            tar::EntryType::Symlink
        } else {
            tar::EntryType::Regular
        });
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// A one-layer layer tar, and the diff_id of it.
fn layer() -> (Vec<u8>, String) {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "hello.txt", &b"hi\n"[..])
        .expect("append");
    let bytes = b.into_inner().expect("tar");
    let d = sha256(&bytes);
    (bytes, d)
}

fn config(diff_id: &str) -> Vec<u8> {
    format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#).into_bytes()
}

const MANIFEST: &[u8] = br#"[{"Config":"c.json","RepoTags":["bad:1"],"Layers":["l/layer.tar"]}]"#;

/// Import `src` into a fresh directory and into an existing layout: exit 2, `message` in the
/// error, nothing left behind, the existing layout's index.json unchanged.
fn bad_source(src: &Path, message: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fresh = tmp.path().join("fresh");
    let out = ocikit()
        .arg("import")
        .arg(src)
        .arg(&fresh)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(message), "expected `{message}` in: {err}");
    assert!(err.starts_with("ocikit: error: "), "{err}");
    assert!(
        !fresh.exists(),
        "a failed import left `{}` behind",
        fresh.display()
    );

    let existing = tmp.path().join("existing");
    ocikit()
        .arg("import")
        .arg(fixture("ggcr-test_image_1.tar"))
        .arg(&existing)
        .assert()
        .code(0);
    let before = fs::read(existing.join("index.json")).expect("read");
    let out = ocikit()
        .arg("import")
        .arg(src)
        .arg(&existing)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(message));
    assert_eq!(fs::read(existing.join("index.json")).expect("read"), before);
    fsck_deep_clean(&existing);
}

fn write_src(dir: &Path, bytes: &[u8]) -> PathBuf {
    let p = dir.join("src.tar");
    fs::write(&p, bytes).expect("write");
    p
}

#[test]
fn bad_not_a_tar() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = write_src(
        tmp.path(),
        &b"this is a text file, not an archive\n".repeat(40),
    );
    bad_source(&p, "src.tar`: not a tar archive");
}

#[test]
fn bad_truncated() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let raw = fs::read(fixture("ggcr-test_image_1.tar")).expect("read");
    // The layer's data starts at 2560 and is 10240 bytes long: cut inside it.
    let p = write_src(tmp.path(), &raw[..6000]);
    bad_source(
        &p,
        "member `555b1001d54ed229f56990845856f080b0707348b26b3aa85aaf58d5570cdee0/layer.tar`: truncated archive",
    );
}

#[test]
fn bad_no_manifest() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = write_src(tmp.path(), &raw_tar(&[M::File("hello.txt", b"hi\n")]));
    bad_source(
        &p,
        "member `manifest.json`: missing: not a docker save archive",
    );
}

#[test]
fn bad_missing_layer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, diff) = layer();
    let p = write_src(
        tmp.path(),
        &raw_tar(&[
            M::File("c.json", &config(&diff)),
            M::File("manifest.json", MANIFEST),
        ]),
    );
    bad_source(&p, "member `l/layer.tar`: missing from the archive");
}

#[test]
fn bad_absolute_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (l, diff) = layer();
    let p = write_src(
        tmp.path(),
        &raw_tar(&[
            M::File("/etc/evil", b"x"),
            M::File("c.json", &config(&diff)),
            M::File("l/layer.tar", &l),
            M::File("manifest.json", MANIFEST),
        ]),
    );
    bad_source(&p, "member `/etc/evil`: absolute path");
}

#[test]
fn bad_dotdot_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (l, diff) = layer();
    let p = write_src(
        tmp.path(),
        &raw_tar(&[
            M::File("c.json", &config(&diff)),
            M::File("l/../../evil", b"x"),
            M::File("l/layer.tar", &l),
            M::File("manifest.json", MANIFEST),
        ]),
    );
    bad_source(&p, "member `l/../../evil`: `..` in path");
}

#[test]
fn bad_symlink_leaving_the_archive() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, diff) = layer();
    let p = write_src(
        tmp.path(),
        &raw_tar(&[
            M::File("c.json", &config(&diff)),
            M::Symlink("l/layer.tar", "../../etc/passwd"),
            M::File("manifest.json", MANIFEST),
        ]),
    );
    bad_source(
        &p,
        "member `l/layer.tar`: symlink to `../../etc/passwd` leaves the archive",
    );
}

#[test]
fn bad_config_not_json() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (l, _) = layer();
    let p = write_src(
        tmp.path(),
        &raw_tar(&[
            M::File("c.json", b"this is not JSON"),
            M::File("l/layer.tar", &l),
            M::File("manifest.json", MANIFEST),
        ]),
    );
    bad_source(&p, "member `c.json`: the image config is not valid JSON");
}

#[test]
fn bad_diff_id_mismatch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (l, diff) = layer();
    let wrong = sha256(b"something else");
    let p = write_src(
        tmp.path(),
        &raw_tar(&[
            M::File("c.json", &config(&wrong)),
            M::File("l/layer.tar", &l),
            M::File("manifest.json", MANIFEST),
        ]),
    );
    bad_source(
        &p,
        &format!("member `l/layer.tar`: diff_id mismatch: the layer's uncompressed content has digest `{diff}`, the config's rootfs.diff_ids[0] is `{wrong}`"),
    );
}

#[test]
fn a_good_hand_made_archive_imports() {
    // The control for the bad-source cases: the same archive, correct, imports.
    let tmp = tempfile::tempdir().expect("tempdir");
    let (l, diff) = layer();
    let p = write_src(
        tmp.path(),
        &raw_tar(&[
            M::File("c.json", &config(&diff)),
            M::File("l/layer.tar", &l),
            M::File("manifest.json", MANIFEST),
        ]),
    );
    let dir = tmp.path().join("ok");
    ocikit().arg("import").arg(&p).arg(&dir).assert().code(0);
    assert_eq!(
        index(&dir)["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "bad:1"
    );
    fsck_deep_clean(&dir);
}

#[test]
fn ref_flag_needs_exactly_one_untagged_image() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("l");
    let out = ocikit()
        .args(["import", "--ref", "x:1"])
        .arg(fixture("ggcr-test_image_1.tar"))
        .arg(&dir)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ocikit: error: --ref `x:1` names an untagged image, but every image in the sources has a name\n"
    );
    assert!(!dir.exists());
}

#[test]
fn ref_flag_refuses_several_untagged_images() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, _, _) = make_dir_copy(&tmp.path().join("a"));
    let (b, _, _) = make_dir_copy(&tmp.path().join("b"));
    let dir = tmp.path().join("l");
    let out = ocikit()
        .args(["import", "--ref", "x:1"])
        .arg(&a)
        .arg(&b)
        .arg(&dir)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ocikit: error: --ref `x:1` names one image, but the sources hold 2 untagged images\n"
    );
    assert!(!dir.exists());
}

// ---------------------------------------------------------------- skopeo dir:, containerd, crashes

/// A skopeo `dir:` copy of test_image_1 as Docker schema2: blobs named by hex, a gzip layer.
fn make_dir_copy(root: &Path) -> (PathBuf, String, String) {
    let dir = root.join("dircopy");
    fs::create_dir_all(&dir).expect("mkdir");
    let config = tar_member(
        &fixture("ggcr-test_image_1.tar"),
        "6e0b05049ed9c17d02e1a55e80d6599dbfcce7f4f4b022e3c673e685789c470e.json",
    );
    let layer = tar_member(
        &fixture("ggcr-test_image_1.tar"),
        "555b1001d54ed229f56990845856f080b0707348b26b3aa85aaf58d5570cdee0/layer.tar",
    );
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
    std::io::Write::write_all(&mut e, &layer).expect("gz");
    let gz = e.finish().expect("gz");
    let (cd, ld) = (sha256(&config), sha256(&gz));
    fs::write(dir.join(&cd[7..]), &config).expect("write");
    fs::write(dir.join(&ld[7..]), &gz).expect("write");
    fs::write(dir.join("version"), "Directory Transport Version: 1.1\n").expect("write");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{},"digest":"{cd}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":{},"digest":"{ld}"}}]}}"#,
        config.len(),
        gz.len()
    );
    fs::write(dir.join("manifest.json"), manifest).expect("write");
    (dir, cd, ld)
}

#[test]
fn skopeo_dir_copy_imports_with_its_gzip_layer_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (src, config, layer) = make_dir_copy(tmp.path());
    let dir = tmp.path().join("l");
    ocikit()
        .args(["import", "--ref", "dircopy:1"])
        .arg(&src)
        .arg(&dir)
        .assert()
        .code(0);
    let e = &index(&dir)["manifests"][0];
    assert_eq!(
        e["annotations"]["org.opencontainers.image.ref.name"],
        "dircopy:1"
    );
    assert_eq!(e["platform"]["architecture"], "amd64");
    let m = json_blob(&dir, e["digest"].as_str().expect("d"));
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(m["config"]["digest"], config);
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        m["layers"][0]["digest"], layer,
        "already gzip: stored as it is"
    );
    fsck_deep_clean(&dir);
    // Without --ref the image is imported untagged.
    let untagged = tmp.path().join("u");
    ocikit()
        .arg("import")
        .arg(&src)
        .arg(&untagged)
        .assert()
        .code(0);
    assert!(index(&untagged)["manifests"][0]
        .get("annotations")
        .is_none());

    // A blob that does not match its descriptor is refused, naming it.
    fs::write(src.join(&layer[7..]), b"garbage").expect("write");
    bad_source(&src, &format!("member `{}`", &layer[7..]));
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A one-file tar and its gzip, as a schema1 registry stored layers.
fn gz_layer(name: &str, content: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_size(content.len() as u64);
    b.append_data(&mut h, name, content).expect("tar");
    let tar = b.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).expect("gzip");
    (tar, gz.finish().expect("gzip"))
}

#[test]
fn skopeo_dir_copy_of_schema1_converts_to_oci() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("s1");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("version"), "Directory Transport Version: 1.1\n").expect("write");
    let (tar_a, gz_a) = gz_layer("a.txt", b"layer a\n");
    let (tar_b, gz_b) = gz_layer("b.txt", b"layer b\n");
    let (_, gz_empty) = gz_layer("empty", b"");
    for gz in [&gz_a, &gz_b, &gz_empty] {
        fs::write(src.join(sha256_hex(gz)), gz).expect("write");
    }
    let v1 = |v: Value| serde_json::json!({"v1Compatibility": v.to_string()});
    let manifest = serde_json::json!({
        "schemaVersion": 1, "name": "example/app", "tag": "1", "architecture": "amd64",
        "fsLayers": [
            {"blobSum": format!("sha256:{}", sha256_hex(&gz_b))},
            {"blobSum": format!("sha256:{}", sha256_hex(&gz_empty))},
            {"blobSum": format!("sha256:{}", sha256_hex(&gz_a))},
        ],
        "history": [
            v1(serde_json::json!({"id": "c", "parent": "b", "architecture": "amd64", "os": "linux", "created": "2020-01-03T00:00:00Z", "config": {"Cmd": ["sh"]}})),
            v1(serde_json::json!({"id": "b", "parent": "a", "created": "2020-01-02T00:00:00Z", "throwaway": true})),
            v1(serde_json::json!({"id": "a", "created": "2020-01-01T00:00:00Z"})),
        ],
    });
    fs::write(
        src.join("manifest.json"),
        serde_json::to_vec(&manifest).expect("json"),
    )
    .expect("write");
    let dir = tmp.path().join("l");
    ocikit()
        .arg("import")
        .arg(&src)
        .arg(&dir)
        .arg("--ref")
        .arg("app:1")
        .assert()
        .code(0);
    let e = &index(&dir)["manifests"][0];
    assert_eq!(
        e["annotations"]["org.opencontainers.image.ref.name"],
        "app:1"
    );
    assert_eq!(e["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        e["platform"],
        serde_json::json!({"architecture": "amd64", "os": "linux"})
    );
    let m = json_blob(&dir, e["digest"].as_str().expect("digest"));
    // Base first, the throwaway layer dropped; gzip layers stored as they are.
    let layers: Vec<String> = m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("d").to_string())
        .collect();
    assert_eq!(
        layers,
        vec![
            format!("sha256:{}", sha256_hex(&gz_a)),
            format!("sha256:{}", sha256_hex(&gz_b))
        ]
    );
    let cfg = json_blob(&dir, m["config"]["digest"].as_str().expect("digest"));
    assert_eq!(
        cfg["rootfs"]["diff_ids"],
        serde_json::json!([
            format!("sha256:{}", sha256_hex(&tar_a)),
            format!("sha256:{}", sha256_hex(&tar_b))
        ])
    );
    assert_eq!(cfg["history"][1]["empty_layer"], true);
    fsck_deep_clean(&dir);
}

#[test]
fn oci_archive_with_dot_slash_prefixes_imports() {
    // containerd's `ctr export` writes `./`-prefixed names; they are the same members.
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = tmp.path().join("first");
    ocikit()
        .arg("import")
        .arg(fixture("ggcr-test_link.tar"))
        .arg(&first)
        .assert()
        .code(0);
    let plain = ocikit()
        .args(["export", "--format", "oci-archive", "-o", "-"])
        .arg(&first)
        .output()
        .expect("run");
    assert_eq!(plain.status.code(), Some(0));
    let mut b = tar::Builder::new(Vec::new());
    let mut ar = tar::Archive::new(&plain.stdout[..]);
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let mut h = e.header().clone();
        let name = format!("./{}", e.path().expect("path").display());
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).expect("read");
        b.append_data(&mut h, name, &data[..]).expect("append");
    }
    let dotted = tmp.path().join("dotted.tar");
    fs::write(&dotted, b.into_inner().expect("tar")).expect("write");
    let second = tmp.path().join("second");
    ocikit()
        .arg("import")
        .arg(&dotted)
        .arg(&second)
        .assert()
        .code(0);
    assert_eq!(
        fs::read(first.join("index.json")).expect("read"),
        fs::read(second.join("index.json")).expect("read")
    );
    fsck_deep_clean(&second);
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "fault points need `--features fault-injection`"
)]
fn an_interrupted_import_leaves_the_layout_as_it_was() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("l");
    ocikit()
        .arg("import")
        .arg(fixture("ggcr-test_image_1.tar"))
        .arg(&dir)
        .assert()
        .code(0);
    let before = fs::read(dir.join("index.json")).expect("read");
    // The process aborts (as a SIGKILL would stop it) after the first layer is written.
    let out = ocikit()
        .env("OCIKIT_FAULT_POINT", "import-mid-layers")
        .arg("import")
        .arg(fixture("ggcr-whiteout_dir.tar"))
        .arg(&dir)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert_eq!(fs::read(dir.join("index.json")).expect("read"), before);
    fsck_deep_clean(&dir);
    // What was written is unreferenced, and gc removes it.
    ocikit().arg("gc").arg(&dir).assert().code(0);
    assert_eq!(
        fs::read_dir(dir.join("blobs/sha256")).expect("ls").count(),
        3
    );
}

#[test]
fn docker25_index_entry_keeps_the_platforms_present() {
    // Docker 25+ with the containerd image store saves a multi-platform index in index.json
    // but only the blobs of the platforms it has. Build such an archive: an index of
    // test_image_1 (linux/amd64) and hello-world (linux/arm64), with hello-world's blobs left out.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("l");
    ocikit()
        .arg("import")
        .arg(fixture("ggcr-test_image_1.tar"))
        .arg(fixture("ggcr-hello-world-v25.tar"))
        .arg(&dir)
        .assert()
        .code(0);
    let mut ix = index(&dir);
    let children: Vec<Value> = ix["manifests"]
        .as_array()
        .expect("m")
        .iter()
        .map(|e| serde_json::json!({"mediaType": e["mediaType"], "digest": e["digest"], "size": e["size"], "platform": e["platform"]}))
        .collect();
    let list = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children.clone()
    }))
    .expect("json");
    let list_digest = sha256(&list);
    fs::write(dir.join("blobs/sha256").join(&list_digest[7..]), &list).expect("write");
    ix["manifests"] = serde_json::json!([{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": list_digest, "size": list.len(),
        "annotations": {"io.containerd.image.name": "docker.io/library/multi:1", "org.opencontainers.image.ref.name": "1"}
    }]);
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&ix).expect("json"),
    )
    .expect("write");
    let oci = ocikit()
        .args(["export", "--format", "oci-archive", "-o", "-"])
        .arg(&dir)
        .output()
        .expect("run");
    assert_eq!(oci.status.code(), Some(0));
    let dropped = [HELLO_V25.manifest, HELLO_V25.config, HELLO_V25.layers[0]];
    let mut b = tar::Builder::new(Vec::new());
    let mut ar = tar::Archive::new(&oci.stdout[..]);
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = e.path().expect("path").display().to_string();
        if dropped.iter().any(|d| name.ends_with(&d[7..])) {
            continue;
        }
        let mut h = e.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).expect("read");
        b.append_data(&mut h, name, &data[..]).expect("append");
    }
    let save = format!(
        r#"[{{"Config":"blobs/sha256/{}","RepoTags":["multi:1"],"Layers":[]}}]"#,
        &IMAGE_1.config[7..]
    );
    let mut h = tar::Header::new_ustar();
    h.set_size(save.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "manifest.json", save.as_bytes())
        .expect("append");
    let src = tmp.path().join("docker25.tar");
    fs::write(&src, b.into_inner().expect("tar")).expect("write");

    let dst = tmp.path().join("dst");
    ocikit().arg("import").arg(&src).arg(&dst).assert().code(0);
    let expected = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [children[0].clone()]
    }))
    .expect("json");
    let e = &index(&dst)["manifests"][0];
    assert_eq!(e["digest"].as_str(), Some(sha256(&expected).as_str()));
    assert_eq!(blob(&dst, e["digest"].as_str().expect("d")), expected);
    assert_eq!(
        e["annotations"]["org.opencontainers.image.ref.name"],
        "multi:1"
    );
    assert_eq!(
        e["annotations"]["io.containerd.image.name"],
        "docker.io/library/multi:1"
    );
    fsck_deep_clean(&dst);
}

#[test]
fn foreign_layers_named_by_layer_sources_are_kept_as_descriptors() {
    // Windows base layers are "foreign": `docker save` lists them in LayerSources with their
    // URLs and may leave their bytes out. The descriptor is kept (as OCI non-distributable).
    let tmp = tempfile::tempdir().expect("tempdir");
    let (l, diff) = layer();
    let foreign_diff = sha256(b"foreign layer tar");
    let foreign_digest = sha256(b"foreign layer gzip");
    let cfg = format!(
        r#"{{"architecture":"amd64","os":"windows","rootfs":{{"type":"layers","diff_ids":["{foreign_diff}","{diff}"]}}}}"#
    );
    let manifest = format!(
        r#"[{{"Config":"c.json","RepoTags":["win:1"],"Layers":["f/layer.tar","l/layer.tar"],"LayerSources":{{"{foreign_diff}":{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","size":1234,"digest":"{foreign_digest}","urls":["https://example.invalid/base"]}}}}}}]"#
    );
    let p = write_src(
        tmp.path(),
        &raw_tar(&[
            M::File("c.json", cfg.as_bytes()),
            M::File("l/layer.tar", &l),
            M::File("manifest.json", manifest.as_bytes()),
        ]),
    );
    let dir = tmp.path().join("w");
    ocikit().arg("import").arg(&p).arg(&dir).assert().code(0);
    let e = &index(&dir)["manifests"][0];
    assert_eq!(e["platform"]["os"], "windows");
    let m = json_blob(&dir, e["digest"].as_str().expect("d"));
    assert_eq!(
        m["layers"][0],
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "digest": foreign_digest,
            "size": 1234,
            "urls": ["https://example.invalid/base"]
        })
    );
    assert_eq!(
        m["layers"][1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
}
