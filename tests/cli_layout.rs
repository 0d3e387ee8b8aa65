//! End-to-end tests of the layout verbs (`init`, `ls`, `inspect`, `cat`, `tag`, `untag`) and
//! of the CLI contract: exact output, exit codes (0 ok, 1 a check found problems, 2 bad usage
//! or bad input), error messages naming the path or digest, a closed stdout pipe.

mod common;

use std::io::Read as _;
use std::process::Stdio;

use common::*;
use ocikit_layout::Compression;

const TEST_INDEX: &str = "ggcr-test_index";
const MULTI: &str = "cimage-delete_image_multiple_images";

#[test]
fn init_writes_exact_files_and_is_idempotent() {
    let tmp = tempdir();
    let r = ocikit(tmp.path(), &["init", "l"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""));
    assert_eq!(r.stderr, "created OCI image layout `l`\n");
    assert_eq!(
        std::fs::read(tmp.path().join("l/oci-layout")).expect("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("l/index.json")).expect("index.json"),
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#
    );
    assert_eq!(blob_names(&tmp.path().join("l")), Vec::<String>::new());
    assert!(tmp.path().join("l/blobs/sha256").is_dir());

    let r = ocikit(tmp.path(), &["ls", "l", "--json"]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "[]\n", "")
    );
    let r = ocikit(tmp.path(), &["ls", "l"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "REF  DIGEST  MEDIA TYPE  SIZE  PLATFORM\n")
    );
    let r = ocikit(tmp.path(), &["fsck", "l", "--json"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.json(),
        serde_json::json!({"clean": true, "errors": 0, "blobsChecked": 0, "findings": []})
    );

    // A second init leaves the layout as it is.
    let r = ocikit(tmp.path(), &["init", "l"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stderr,
        "`l` is already an OCI image layout; left as it is\n"
    );
    let r = ocikit(tmp.path(), &["-q", "init", "q"]);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));

    // A non-empty directory that is not a layout is refused.
    std::fs::create_dir(tmp.path().join("junk")).expect("mkdir");
    std::fs::write(tmp.path().join("junk/file"), b"x").expect("write");
    let r = ocikit(tmp.path(), &["init", "junk"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: `junk` is not an OCI image layout: the directory is not empty and has no `oci-layout`\n"
    );
    assert!(!tmp.path().join("junk/oci-layout").exists());
}

#[test]
fn ls_text_and_json_of_a_corpus_layout() {
    let l = fixtures().join("layouts").join(TEST_INDEX);
    let tmp = tempdir();
    let dir = l.to_str().expect("utf-8 path");
    let r = ocikit(tmp.path(), &["ls", dir]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(
        r.stdout,
        "\
REF  DIGEST                                                                   MEDIA TYPE                                                 SIZE  PLATFORM
1    sha256:eebff607b1628d67459b0596643fc07de70d702eccf030f0bc7bb6fc2b278650  application/vnd.oci.image.manifest.v1+json                 423   -
2    sha256:32589985702551b6c56033bb3334432a0a513bf9d6aceda0f67c42b003850720  application/vnd.oci.descriptor.v1+json                     423   -
3    sha256:05f95b26ed10668b7183c1e2da98610e91372fa9f510046d4ce5812addad86b5  application/vnd.oci.image.index.v1+json                    314   -
4    sha256:2b29a2b8dea3af91ea7d0154be1da0c92d55ddd098540930fc8d3db7de377fdb  application/vnd.docker.distribution.manifest.list.v2+json  314   -
"
    );
    let r = ocikit(tmp.path(), &["ls", dir, "--json"]);
    assert_eq!(r.code, 0);
    let entry = |r: &str, d: &str, mt: &str, size: u64| {
        serde_json::json!({
            "ref": r,
            "digest": d,
            "mediaType": mt,
            "size": size,
            "platform": null,
            "artifactType": null,
            "annotations": {"org.opencontainers.image.ref.name": r},
        })
    };
    assert_eq!(
        r.json(),
        serde_json::json!([
            entry(
                "1",
                "sha256:eebff607b1628d67459b0596643fc07de70d702eccf030f0bc7bb6fc2b278650",
                "application/vnd.oci.image.manifest.v1+json",
                423
            ),
            entry(
                "2",
                "sha256:32589985702551b6c56033bb3334432a0a513bf9d6aceda0f67c42b003850720",
                "application/vnd.oci.descriptor.v1+json",
                423
            ),
            entry(
                "3",
                "sha256:05f95b26ed10668b7183c1e2da98610e91372fa9f510046d4ce5812addad86b5",
                "application/vnd.oci.image.index.v1+json",
                314
            ),
            entry(
                "4",
                "sha256:2b29a2b8dea3af91ea7d0154be1da0c92d55ddd098540930fc8d3db7de377fdb",
                "application/vnd.docker.distribution.manifest.list.v2+json",
                314
            ),
        ])
    );
    // Pretty-printed, keys in the documented order, one trailing newline.
    assert!(r
        .stdout
        .starts_with("[\n  {\n    \"ref\": \"1\",\n    \"digest\": "));
    assert!(r.stdout.ends_with("}\n]\n"));
}

#[test]
fn ls_json_platform_and_unnamed_entries() {
    // ggcr-test_index_one_image has no ref name; the nested index of the containers/image
    // layout carries platforms, shown by `ls` only for index.json entries (none here).
    let tmp = tempdir();
    let l = fixtures().join("layouts/ggcr-test_index_one_image");
    let r = ocikit(tmp.path(), &["ls", l.to_str().expect("utf-8"), "--json"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.json(),
        serde_json::json!([{
            "ref": null,
            "digest": "sha256:98ceaf93e482fe91b9bfd6bba07137c098e49ee2d55e69f09fb6c951e75e0e46",
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": 344,
            "platform": null,
            "artifactType": null,
            "annotations": {},
        }])
    );

    // A platform and an artifactType on an index.json entry are shown as they are.
    let dir = tmp.path().join("p");
    let built = small_image(&dir, "x");
    let mut entry = serde_json::to_value(&built.manifest).expect("json");
    entry["platform"] =
        serde_json::json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
    entry["artifactType"] = serde_json::json!("application/vnd.example+type");
    entry["annotations"] =
        serde_json::json!({"org.opencontainers.image.ref.name": "arm", "a": "b"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [entry]});
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("write");
    let r = ocikit(tmp.path(), &["ls", "p", "--json"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.json(),
        serde_json::json!([{
            "ref": "arm",
            "digest": built.manifest.digest.as_str(),
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": built.manifest.size,
            "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
            "artifactType": "application/vnd.example+type",
            "annotations": {"org.opencontainers.image.ref.name": "arm", "a": "b"},
        }])
    );
    let r = ocikit(tmp.path(), &["ls", "p"]);
    assert_eq!(
        r.stdout,
        format!(
            "REF  DIGEST{}  MEDIA TYPE                                  SIZE  PLATFORM\narm  {}  application/vnd.oci.image.manifest.v1+json  {}   linux/arm64/v8\n",
            " ".repeat(65),
            built.manifest.digest,
            built.manifest.size
        )
    );
}

#[test]
fn inspect_nested_index_text_and_json() {
    let tmp = tempdir();
    let l = fixtures().join("layouts").join(TEST_INDEX);
    let dir = l.to_str().expect("utf-8");
    let r = ocikit(tmp.path(), &["inspect", dir, "3"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(
        r.stdout,
        "\
sha256:05f95b26ed10668b7183c1e2da98610e91372fa9f510046d4ce5812addad86b5 application/vnd.oci.image.index.v1+json [index] 314 bytes
└── manifests[0] sha256:eebff607b1628d67459b0596643fc07de70d702eccf030f0bc7bb6fc2b278650 application/vnd.oci.image.manifest.v1+json [manifest] 423 bytes (document says application/vnd.docker.distribution.manifest.v2+json)
    ├── config sha256:6e0b05049ed9c17d02e1a55e80d6599dbfcce7f4f4b022e3c673e685789c470e application/vnd.docker.container.image.v1+json [config] 330 bytes
    └── layers[0] sha256:dc52c6e48a1d51a96047b059f16889bc889c4b4c28f3b36b3f93187f62fc0b2b application/vnd.docker.image.rootfs.diff.tar.gzip [layer] 167 bytes
"
    );
    let r = ocikit(tmp.path(), &["inspect", dir, "3", "--json"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.json(),
        serde_json::json!({
            "digest": "sha256:05f95b26ed10668b7183c1e2da98610e91372fa9f510046d4ce5812addad86b5",
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "size": 314,
            "kind": "index",
            "role": "root",
            "platform": null,
            "children": [{
                "digest": "sha256:eebff607b1628d67459b0596643fc07de70d702eccf030f0bc7bb6fc2b278650",
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "size": 423,
                "kind": "manifest",
                "role": "manifests",
                "platform": null,
                "declaredMediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "children": [
                    {
                        "digest": "sha256:6e0b05049ed9c17d02e1a55e80d6599dbfcce7f4f4b022e3c673e685789c470e",
                        "mediaType": "application/vnd.docker.container.image.v1+json",
                        "size": 330,
                        "kind": "config",
                        "role": "config",
                        "platform": null,
                        "children": [],
                    },
                    {
                        "digest": "sha256:dc52c6e48a1d51a96047b059f16889bc889c4b4c28f3b36b3f93187f62fc0b2b",
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": 167,
                        "kind": "layer",
                        "role": "layers",
                        "platform": null,
                        "children": [],
                    },
                ],
            }],
        })
    );

    // Ref `2` names a manifest with the descriptor media type
    // `application/vnd.oci.descriptor.v1+json`: unknown to ocikit, so the document's own
    // `mediaType` decides what it is (a Docker schema2 manifest).
    let r = ocikit(tmp.path(), &["inspect", dir, "2"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stdout,
        "\
sha256:32589985702551b6c56033bb3334432a0a513bf9d6aceda0f67c42b003850720 application/vnd.oci.descriptor.v1+json [manifest] 423 bytes (document says application/vnd.docker.distribution.manifest.v2+json)
├── config sha256:930705ce23e3b6ed4c08746b6fe880089c864fbaf62482702ae3fdd66b8c7fe9 application/vnd.docker.container.image.v1+json [config] 330 bytes
└── layers[0] sha256:321460fa87fd42433950b42d04b7aff249f4ed960d43404a9f699886906cc9d3 application/vnd.docker.image.rootfs.diff.tar.gzip [layer] 165 bytes
"
    );
}

#[test]
fn inspect_by_digest_of_a_nested_manifest() {
    let tmp = tempdir();
    let l = fixtures().join("layouts").join(MULTI);
    let dir = l.to_str().expect("utf-8");
    // The linux/386 manifest is only named by the nested index `a2f79832…`.
    let d = "sha256:f6d60fd529b234d3e28837e15294d935f55da58ce57c4f9218cad38d0be82ce3";
    let r = ocikit(tmp.path(), &["inspect", dir, d]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(
        r.stdout,
        "\
sha256:f6d60fd529b234d3e28837e15294d935f55da58ce57c4f9218cad38d0be82ce3 application/vnd.oci.image.manifest.v1+json [manifest] 525 bytes linux/386
├── config sha256:aab808b283c3f654d84358a40ce8766ecd552249305141de88f0ca61f3d1368f application/vnd.oci.image.config.v1+json [config] 582 bytes
└── layers[0] sha256:e19729d5a968c71b4b691d60f4a6f85f93c303bb88635dcfef36e23b76cb7b3a application/vnd.oci.image.layer.v1.tar+gzip [layer] 34 bytes
"
    );
    let r = ocikit(tmp.path(), &["inspect", dir, d, "--json"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.json(),
        serde_json::json!({
            "digest": d,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": 525,
            "kind": "manifest",
            "role": "root",
            "platform": {"architecture": "386", "os": "linux"},
            "children": [
                {
                    "digest": "sha256:aab808b283c3f654d84358a40ce8766ecd552249305141de88f0ca61f3d1368f",
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "size": 582,
                    "kind": "config",
                    "role": "config",
                    "platform": null,
                    "children": [],
                },
                {
                    "digest": "sha256:e19729d5a968c71b4b691d60f4a6f85f93c303bb88635dcfef36e23b76cb7b3a",
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "size": 34,
                    "kind": "layer",
                    "role": "layers",
                    "platform": null,
                    "children": [],
                },
            ],
        })
    );

    // A config or layer digest is not something inspect (or tag) resolves.
    let cfg = "sha256:aab808b283c3f654d84358a40ce8766ecd552249305141de88f0ca61f3d1368f";
    let r = ocikit(tmp.path(), &["inspect", dir, cfg]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        format!("ocikit: error: no ref or digest `{cfg}` in `{dir}/index.json`\n")
    );
    let r = ocikit(tmp.path(), &["inspect", dir, "no-such-ref"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        format!("ocikit: error: no ref or digest `no-such-ref` in `{dir}/index.json`\n")
    );
}

#[test]
fn inspect_reports_problems_in_the_tree() {
    // A missing layer is a leaf the walk does not read; a missing manifest is reported.
    let tmp = tempdir();
    let dir = tmp.path().join("l");
    let built = small_image(&dir, "v1");
    std::fs::remove_file(dir.join(built.manifest.digest.blob_rel_path())).expect("rm");
    let r = ocikit(tmp.path(), &["inspect", "l", "v1"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stdout,
        format!(
            "{} application/vnd.oci.image.manifest.v1+json [manifest] {} bytes !! missing\n",
            built.manifest.digest, built.manifest.size
        )
    );
    let r = ocikit(tmp.path(), &["inspect", "l", "v1", "--json"]);
    assert_eq!(r.json()["problem"], "missing");
}

#[test]
fn cat_writes_exact_verified_bytes() {
    let tmp = tempdir();
    let l = fixtures().join("layouts").join(TEST_INDEX);
    let dir = l.to_str().expect("utf-8");
    let d = "sha256:eebff607b1628d67459b0596643fc07de70d702eccf030f0bc7bb6fc2b278650";
    let want = std::fs::read(l.join("blobs/sha256").join(&d[7..])).expect("blob");
    assert_eq!(want.len(), 423);
    let r = ocikit(tmp.path(), &["cat", dir, d]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(r.stdout_bytes, want);
    // A ref names its manifest.
    let r = ocikit(tmp.path(), &["cat", dir, "1"]);
    assert_eq!((r.code, r.stdout_bytes), (0, want));
    // Any blob, layers included, by digest.
    let layer = "sha256:dc52c6e48a1d51a96047b059f16889bc889c4b4c28f3b36b3f93187f62fc0b2b";
    let r = ocikit(tmp.path(), &["cat", dir, layer]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout_bytes.len(), 167);
    assert_eq!(&r.stdout_bytes[..2], &[0x1f, 0x8b]);
}

#[test]
fn cat_of_a_corrupt_blob_fails_with_nothing_on_stdout() {
    let tmp = tempdir();
    let dir = tmp.path().join("l");
    let built = small_image(&dir, "v1");
    let m = built.manifest.digest.clone();
    let path = dir.join(m.blob_rel_path());
    flip_byte(&path, 10);
    let found = ocikit_layout::Digest::sha256(&std::fs::read(&path).expect("read"));
    let r = ocikit(tmp.path(), &["cat", "l", m.as_str()]);
    assert_eq!(r.code, 2);
    assert_eq!(r.stdout_bytes, b"");
    assert_eq!(
        r.stderr,
        format!(
            "ocikit: error: blob `{m}` at `l/blobs/sha256/{}` has digest `{found}`\n",
            m.encoded()
        )
    );
    // By ref, the descriptor's size is checked too: a truncated manifest.
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() - 1]).expect("truncate");
    let r = ocikit(tmp.path(), &["cat", "l", "v1"]);
    assert_eq!((r.code, r.stdout_bytes.len()), (2, 0));
    assert_eq!(
        r.stderr,
        format!(
            "ocikit: error: blob `{m}` at `l/blobs/sha256/{}` is {} bytes, expected {}\n",
            m.encoded(),
            built.manifest.size - 1,
            built.manifest.size
        )
    );
    // Absent, and not a digest at all.
    std::fs::remove_file(&path).expect("rm");
    let r = ocikit(tmp.path(), &["cat", "l", m.as_str()]);
    assert_eq!((r.code, r.stdout_bytes.len()), (2, 0));
    assert_eq!(
        r.stderr,
        format!(
            "ocikit: error: blob `{m}` is missing (`l/blobs/sha256/{}`)\n",
            m.encoded()
        )
    );
    let r = ocikit(tmp.path(), &["cat", "l", "sha256:../../etc/passwd"]);
    assert_eq!((r.code, r.stdout_bytes.len()), (2, 0));
    assert_eq!(
        r.stderr,
        "ocikit: error: invalid digest `sha256:../../etc/passwd`: not of the form algorithm:encoded\n"
    );
}

#[test]
fn tag_and_untag() {
    let tmp = tempdir();
    let dir = tmp.path().join("l");
    let a = small_image(&dir, "a");
    let b = add_image(
        &dir,
        "b",
        &[LayerSpec::new(&[("b.txt", b"b\n")], Compression::Zstd)],
        None,
    );
    let refs = |tmp: &std::path::Path| -> Vec<(String, String)> {
        let r = ocikit(tmp, &["ls", "l", "--json"]);
        assert_eq!(r.code, 0);
        r.json()
            .as_array()
            .expect("array")
            .iter()
            .map(|e| {
                (
                    e["ref"].as_str().unwrap_or("-").to_string(),
                    e["digest"].as_str().expect("digest").to_string(),
                )
            })
            .collect()
    };
    let (ad, bd) = (a.manifest.digest.to_string(), b.manifest.digest.to_string());

    // A new name, from a ref: silent.
    let r = ocikit(tmp.path(), &["tag", "l", "a", "c"]);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    // From a digest.
    let r = ocikit(tmp.path(), &["tag", "l", &bd, "registry.example/b:1.0"]);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    assert_eq!(
        refs(tmp.path()),
        vec![
            ("a".into(), ad.clone()),
            ("b".into(), bd.clone()),
            ("c".into(), ad.clone()),
            ("registry.example/b:1.0".into(), bd.clone()),
        ]
    );
    // The same again changes nothing.
    let before = std::fs::read(dir.join("index.json")).expect("read");
    let r = ocikit(tmp.path(), &["tag", "l", "a", "c"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(std::fs::read(dir.join("index.json")).expect("read"), before);

    // Moving a name says so on stderr and keeps its position.
    let r = ocikit(tmp.path(), &["tag", "l", "b", "c"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stderr, format!("moved `c` from `{ad}` to `{bd}`\n"));
    assert_eq!(
        refs(tmp.path()),
        vec![
            ("a".into(), ad.clone()),
            ("b".into(), bd.clone()),
            ("c".into(), bd.clone()),
            ("registry.example/b:1.0".into(), bd.clone()),
        ]
    );
    let r = ocikit(tmp.path(), &["-q", "tag", "l", "a", "c"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));

    // Untag.
    let r = ocikit(tmp.path(), &["untag", "l", "c"]);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    assert_eq!(
        refs(tmp.path()),
        vec![
            ("a".into(), ad.clone()),
            ("b".into(), bd.clone()),
            ("registry.example/b:1.0".into(), bd.clone()),
        ]
    );
    let before = std::fs::read(dir.join("index.json")).expect("read");
    let r = ocikit(tmp.path(), &["untag", "l", "c"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: no ref or digest `c` in `l/index.json`\n"
    );
    // Invalid names, and sources that do not exist.
    for bad in ["bad name", "x-", "a..b", "x/", "ä", "a//b"] {
        let r = ocikit(tmp.path(), &["tag", "l", "a", bad]);
        assert_eq!(r.code, 2, "{bad}");
        assert_eq!(
            r.stderr,
            format!("ocikit: error: invalid ref name `{bad}`: refs are letters, digits and -._:@/+ separated components\n")
        );
    }
    let r = ocikit(tmp.path(), &["tag", "l", "nope", "x"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: no ref or digest `nope` in `l/index.json`\n"
    );
    // A config is not a manifest: it cannot be tagged.
    let cfg = a.config.0.to_string();
    let r = ocikit(tmp.path(), &["tag", "l", &cfg, "cfg"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        format!("ocikit: error: no ref or digest `{cfg}` in `l/index.json`\n")
    );
    // Nothing of that changed index.json.
    assert_eq!(std::fs::read(dir.join("index.json")).expect("read"), before);

    // Untagging the last name of `a` leaves its blobs for gc; fsck lists them.
    let r = ocikit(tmp.path(), &["untag", "l", "a"]);
    assert_eq!(r.code, 0);
    let r = ocikit(tmp.path(), &["fsck", "l", "--json"]);
    assert_eq!(r.code, 0);
    let mut unref: Vec<String> = r.json()["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            assert_eq!(f["kind"], "unreferenced");
            f["digest"].as_str().expect("digest").to_string()
        })
        .collect();
    unref.sort();
    let mut want = vec![
        ad.clone(),
        a.config.0.to_string(),
        a.layers[0].digest.to_string(),
    ];
    want.sort();
    assert_eq!(unref, want);
}

#[test]
fn tag_by_digest_of_a_nested_manifest_adds_an_entry() {
    let tmp = tempdir();
    let dir = copy_fixture(MULTI, tmp.path());
    let d = "sha256:f6d60fd529b234d3e28837e15294d935f55da58ce57c4f9218cad38d0be82ce3";
    let r = ocikit(tmp.path(), &["tag", MULTI, d, "386"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let r = ocikit(tmp.path(), &["ls", MULTI, "--json"]);
    let last = r
        .json()
        .as_array()
        .expect("array")
        .last()
        .cloned()
        .expect("entry");
    // The descriptor is the one the nested index holds, platform included.
    assert_eq!(
        last,
        serde_json::json!({
            "ref": "386",
            "digest": d,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": 525,
            "platform": {"architecture": "386", "os": "linux"},
            "artifactType": null,
            "annotations": {"org.opencontainers.image.ref.name": "386"},
        })
    );
    assert_eq!(
        std::fs::read(dir.join("oci-layout")).expect("read"),
        std::fs::read(fixtures().join("layouts").join(MULTI).join("oci-layout")).expect("read")
    );
}

#[test]
fn bad_usage_and_bad_input_exit_2_naming_the_path() {
    let tmp = tempdir();
    // Usage errors from the argument parser: one error line, one hint line.
    for (args, stderr) in [
        (&[][..], "ocikit: error: a command is needed\nhint: usage: ocikit [OPTIONS] <COMMAND>; see `ocikit --help`\n"),
        (&["frob"][..], "ocikit: error: unrecognized subcommand 'frob'\nhint: usage: ocikit [OPTIONS] <COMMAND>\n"),
        (&["ls"][..], "ocikit: error: the following required arguments were not provided: <DIR>\nhint: usage: ocikit ls <DIR>\n"),
        (&["fsck", "--nope", "x"][..], "ocikit: error: unexpected argument '--nope' found\nhint: to pass '--nope' as a value, use '-- --nope'; usage: ocikit fsck [OPTIONS] <DIR>\n"),
        (&["import", "x.tar"][..], "ocikit: error: import needs the sources and then the destination layout directory; only one path was given\nhint: usage: ocikit import [OPTIONS] <SRC>... <DIR>\n"),
        (&["convert", "L"][..], "ocikit: error: the following required arguments were not provided: --to <TO>\nhint: usage: ocikit convert --to <TO> <DIR> [REFS]...\n"),
    ] {
        let r = ocikit(tmp.path(), args);
        assert_eq!(r.code, 2, "{args:?}");
        assert_eq!(r.stdout, "", "{args:?}");
        assert_eq!(r.stderr, stderr, "{args:?}");
    }
    let r = ocikit(tmp.path(), &["--help"]);
    assert_eq!(r.code, 0);
    assert!(r
        .stdout
        .starts_with("Offline toolkit for OCI image layouts\n"));

    // No such path: every verb that reads a layout.
    let verbs: [&[&str]; 7] = [
        &["ls", "nope"],
        &["inspect", "nope", "x"],
        &["cat", "nope", "x"],
        &["fsck", "nope"],
        &["gc", "nope"],
        &["tag", "nope", "a", "b"],
        &["untag", "nope", "a"],
    ];
    for args in verbs {
        let r = ocikit(tmp.path(), args);
        assert_eq!(r.code, 2, "{args:?}");
        assert_eq!(r.stdout, "");
        assert_eq!(
            r.stderr, "ocikit: error: `nope` is not an OCI image layout: no such directory\n",
            "{args:?}"
        );
    }

    // A file, not a directory.
    std::fs::write(tmp.path().join("file"), b"x").expect("write");
    let r = ocikit(tmp.path(), &["ls", "file"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: `file` is not an OCI image layout: not a directory\n"
    );

    // A directory without `oci-layout`.
    std::fs::create_dir(tmp.path().join("empty")).expect("mkdir");
    let r = ocikit(tmp.path(), &["fsck", "empty"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: `empty` is not an OCI image layout: no `oci-layout` file\n"
    );

    // An `oci-layout` of an unknown version.
    assert_eq!(ocikit(tmp.path(), &["init", "l"]).code, 0);
    std::fs::write(
        tmp.path().join("l/oci-layout"),
        br#"{"imageLayoutVersion":"lorem ipsum"}"#,
    )
    .expect("write");
    let r = ocikit(tmp.path(), &["ls", "l"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: `l` is not an OCI image layout: `oci-layout` names unsupported imageLayoutVersion `lorem ipsum`\n"
    );
    std::fs::write(
        tmp.path().join("l/oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0","x":1}"#,
    )
    .expect("write");
    assert_eq!(ocikit(tmp.path(), &["ls", "l"]).code, 0);

    // No index.json, and an index.json that does not parse: every reading verb.
    std::fs::remove_file(tmp.path().join("l/index.json")).expect("rm");
    let r = ocikit(tmp.path(), &["ls", "l"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: `l` is not an OCI image layout: no `index.json` file\n"
    );
    std::fs::write(tmp.path().join("l/index.json"), b"{\"schemaVersion\": 2,").expect("write");
    for args in [
        &["ls", "l"][..],
        &["inspect", "l", "x"][..],
        &["fsck", "l"][..],
        &["gc", "l"][..],
        &["tag", "l", "a", "b"][..],
        &["untag", "l", "a"][..],
    ] {
        let r = ocikit(tmp.path(), args);
        assert_eq!(r.code, 2, "{args:?}");
        assert_eq!(
            r.stderr,
            "ocikit: error: `l/index.json` does not parse: EOF while parsing a value at line 1 column 20\n",
            "{args:?}"
        );
    }
    // index.json that parses as JSON but is not an index.
    std::fs::write(
        tmp.path().join("l/index.json"),
        br#"{"schemaVersion":2,"manifests":{}}"#,
    )
    .expect("write");
    let r = ocikit(tmp.path(), &["ls", "l"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: `l/index.json` does not parse: invalid type: map, expected a sequence at line 1 column 31\n"
    );
}

#[test]
fn closed_stdout_pipe_exits_quietly() {
    // A 16 MiB uncompressed layer (larger than the JSON cap, so `cat` streams it).
    let tmp = tempdir();
    let dir = tmp.path().join("l");
    let data: Vec<u8> = (0..16u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let built = add_image(
        &dir,
        "big",
        &[LayerSpec::new(&[("big.bin", &data)], Compression::None)],
        None,
    );
    let layer = built.layers[0].digest.to_string();
    let mut child = ocikit_cmd()
        .args(["cat", dir.to_str().expect("utf-8"), &layer])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        let mut out = child.stdout.take().expect("stdout");
        let mut head = [0u8; 4096];
        out.read_exact(&mut head).expect("read the first bytes");
        // Dropping `out` closes the read end of the pipe.
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert_eq!(err, "");

    // The same for `ls --json` of a big index: no panic when stdout closes early.
    let mut child = ocikit_cmd()
        .args(["inspect", dir.to_str().expect("utf-8"), "big"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn json_into_a_closed_pipe_exits_quietly() {
    // `--json` output used to be serialized straight into stdout: a closed pipe became a
    // serde_json error, "Broken pipe" on stderr and exit 2.
    let tmp = tempdir();
    let dir = tmp.path().join("l");
    add_image(
        &dir,
        "app:1",
        &[LayerSpec::new(&[("a", b"a")], Compression::Gzip)],
        None,
    );
    let d = dir.to_str().expect("utf-8");
    for args in [
        &["ls", "--json", d][..],
        &["fsck", "--json", d][..],
        &["inspect", "--json", d, "app:1"][..],
        &["gc", "--dry-run", "--json", d][..],
    ] {
        let mut child = ocikit_cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Close the read end before the command has written anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        assert_eq!(
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).as_ref()
            ),
            (Some(0), ""),
            "{args:?}"
        );
    }
}

#[test]
fn a_traversal_digest_in_index_json_is_an_error_never_a_path() {
    let tmp = tempdir();
    assert_eq!(ocikit(tmp.path(), &["-q", "init", "l"]).code, 0);
    std::fs::write(
        tmp.path().join("l/index.json"),
        br#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:../../etc/passwd","size":1}]}"#,
    )
    .expect("write");
    for args in [
        &["ls", "l"][..],
        &["fsck", "l"][..],
        &["gc", "l"][..],
        &["cat", "l", "x"][..],
    ] {
        let r = ocikit(tmp.path(), args);
        assert_eq!((r.code, r.stdout.as_str()), (2, ""), "{args:?}");
        assert_eq!(
            r.stderr,
            "ocikit: error: `l/index.json` does not parse: invalid digest `sha256:../../etc/passwd`: not of the form algorithm:encoded at line 1 column 124\n",
            "{args:?}"
        );
    }
}

#[test]
fn cat_of_a_big_corrupt_blob_streams_then_fails() {
    // Above the 4 MiB JSON cap `cat` streams; the mismatch is found at the end: exit 2,
    // after the bytes were written.
    let tmp = tempdir();
    let dir = tmp.path().join("l");
    let data: Vec<u8> = (0..5u32 << 20).map(|i| (i % 253) as u8).collect();
    let built = add_image(
        &dir,
        "big",
        &[LayerSpec::new(&[("big.bin", &data)], Compression::None)],
        None,
    );
    let layer = &built.layers[0].digest;
    let path = dir.join(layer.blob_rel_path());
    let len = std::fs::metadata(&path).expect("stat").len() as usize;
    flip_byte(&path, len - 1);
    let found = ocikit_layout::Digest::sha256(&std::fs::read(&path).expect("read"));
    let r = ocikit(tmp.path(), &["cat", "l", layer.as_str()]);
    assert_eq!(r.code, 2);
    assert_eq!(r.stdout_bytes.len(), len);
    assert_eq!(
        r.stderr,
        format!(
            "ocikit: error: blob `{layer}` at `l/blobs/sha256/{}` has digest `{found}`\n",
            layer.encoded()
        )
    );
}

#[test]
fn schema1_manifests_are_walked_through_fs_layers() {
    // An unsigned Docker schema1 manifest as an index.json entry: its `fsLayers` are layers
    // without a declared size (`size` is null in JSON, absent in text).
    let tmp = tempdir();
    let dir = tmp.path().join("l");
    assert_eq!(ocikit(tmp.path(), &["-q", "init", "l"]).code, 0);
    let layer = tar_of(&[("a", b"a\n")]);
    let ld = ocikit_layout::Digest::sha256(&layer);
    std::fs::write(dir.join(ld.blob_rel_path()), &layer).expect("layer");
    let manifest = format!(
        r#"{{"schemaVersion":1,"name":"x","tag":"y","architecture":"amd64","fsLayers":[{{"blobSum":"{ld}"}}],"history":[{{"v1Compatibility":"{{}}"}}]}}"#
    );
    let md = ocikit_layout::Digest::sha256(manifest.as_bytes());
    std::fs::write(dir.join(md.blob_rel_path()), &manifest).expect("manifest");
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.docker.distribution.manifest.v1+json",
        "digest": md.as_str(),
        "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "old"},
    }]});
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index");
    let r = ocikit(tmp.path(), &["inspect", "l", "old"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stdout,
        format!(
            "{md} application/vnd.docker.distribution.manifest.v1+json [manifest] {} bytes\n└── layers[0] {ld} application/vnd.docker.image.rootfs.diff.tar.gzip [layer]\n",
            manifest.len()
        )
    );
    let r = ocikit(tmp.path(), &["inspect", "l", "old", "--json"]);
    assert_eq!(r.json()["children"][0]["size"], serde_json::Value::Null);
    // Plain fsck: present and hashed. --deep: the blob is a plain tar, schema1 says gzip.
    let r = ocikit(tmp.path(), &["fsck", "l", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let r = ocikit(tmp.path(), &["fsck", "l", "--deep", "--json"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.json()["findings"],
        serde_json::json!([{
            "severity": "error",
            "kind": "compression-mismatch",
            "digest": ld.as_str(),
            "path": ["old", format!("layers[0] {ld}")],
            "detail": "media type says gzip, bytes are uncompressed",
        }])
    );
    // gc keeps the layer: schema1 `fsLayers` keep blobs alive.
    let r = ocikit(tmp.path(), &["gc", "l", "--json"]);
    assert_eq!(
        (r.code, r.json()["removed"].clone()),
        (0, serde_json::json!([]))
    );
}

#[test]
fn absolute_paths_in_messages_are_filtered() {
    let tmp = tempdir();
    let abs = tmp.path().join("nope");
    let r = ocikit(tmp.path(), &["fsck", abs.to_str().expect("utf-8")]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: `[TMP]/nope` is not an OCI image layout: no such directory\n"
    );
    let abs = tmp.path().join("l");
    let r = ocikit(tmp.path(), &["init", abs.to_str().expect("utf-8")]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (0, "created OCI image layout `[TMP]/l`\n")
    );
}

#[test]
fn untag_can_be_undone_by_digest_before_gc() {
    let tmp = tempdir();
    let dir = tmp.path().join("l");
    let built = small_image(&dir, "v1");
    let digest = built.manifest.digest.to_string();
    let r = ocikit(tmp.path(), &["untag", "l", "v1"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(
        ocikit(tmp.path(), &["ls", "l", "--json"]).json(),
        serde_json::json!([])
    );
    // The manifest is still in blobs/: its digest names it.
    let r = ocikit(tmp.path(), &["tag", "l", &digest, "v1"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let entries = ocikit(tmp.path(), &["ls", "l", "--json"]).json();
    assert_eq!(entries[0]["ref"], "v1");
    assert_eq!(entries[0]["digest"], digest.as_str());
    assert_eq!(
        entries[0]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(entries[0]["size"], built.manifest.size);
    assert_eq!(ocikit(tmp.path(), &["fsck", "l"]).code, 0);
}
