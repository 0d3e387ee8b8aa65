//! Every layout in `fixtures/layouts/` (copied from third-party test data, see
//! `fixtures/README.md`): what `ls`, `fsck` and `gc` do with it, against what its source
//! project asserts (`../shared/corpus/CATALOG.md` §1). Where ocikit deliberately does
//! something else than the source project, the test says what and why.
//!
//! `gc` and the edits run on a copy in a temp dir; the fixtures are never written.
//!
//! fsck findings of kind `invalid` come from the image-spec schema checks
//! (`ocikit_layout::validate`); they are asserted separately from the structural findings
//! (missing, sizes, digests, media types, compression), which is what CATALOG.md §1 records.

mod common;

use std::path::Path;

use common::*;
use serde_json::{json, Value};

fn err(kind: &str, digest: &str, path: &[&str], detail: &str) -> Value {
    json!({"severity": "error", "kind": kind, "digest": digest, "path": path, "detail": detail})
}

/// A conformance finding: a warning (an error only with `--strict`).
fn warn(kind: &str, digest: &str, path: &[&str], detail: &str) -> Value {
    json!({"severity": "warning", "kind": kind, "digest": digest, "path": path, "detail": detail})
}

fn info(kind: &str, digest: &str, detail: &str) -> Value {
    json!({"severity": "info", "kind": kind, "digest": digest, "path": [], "detail": detail})
}

const UNREF: &str = "no reachable descriptor names this blob";

/// `ocikit fsck [--deep] --json` on a fixture (read in place: fsck never writes).
fn fsck(name: &str, deep: bool) -> (i32, Value) {
    let tmp = tempdir();
    let dir = fixtures().join("layouts").join(name);
    let mut args = vec!["fsck", dir.to_str().expect("utf-8"), "--json"];
    if deep {
        args.push("--deep");
    }
    let r = ocikit(tmp.path(), &args);
    assert_eq!(r.stderr, "", "{name}");
    (r.code, r.json())
}

/// The findings split into (structural, schema).
fn split(report: &Value) -> (Vec<Value>, Vec<Value>) {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .cloned()
        .partition(|f| f["kind"] != "invalid" && f["kind"] != "advisory")
}

fn counts(report: &Value) -> (bool, u64, u64) {
    (
        report["clean"].as_bool().expect("clean"),
        report["errors"].as_u64().expect("errors"),
        report["blobsChecked"].as_u64().expect("blobsChecked"),
    )
}

/// `ocikit gc --json` on a copy of the fixture; returns the exit code, the removed digests,
/// and the blob files left.
fn gc_copy(name: &str) -> (i32, Vec<String>, Vec<String>, String) {
    let tmp = tempdir();
    let dir = copy_fixture(name, tmp.path());
    let r = ocikit(tmp.path(), &["gc", name, "--json"]);
    let removed = if r.code == 0 {
        let v = r.json();
        assert_eq!(v["dryRun"], false);
        assert_eq!(v["tempFiles"], json!([]));
        v["removed"]
            .as_array()
            .expect("removed")
            .iter()
            .map(|e| e["digest"].as_str().expect("digest").to_string())
            .collect()
    } else {
        vec![]
    };
    (r.code, removed, blob_names(&dir), r.stderr)
}

fn ls_refs(dir: &Path) -> Vec<(Option<String>, String)> {
    let r = ocikit(
        dir.parent().expect("parent"),
        &["ls", dir.to_str().expect("utf-8"), "--json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json()
        .as_array()
        .expect("array")
        .iter()
        .map(|e| {
            (
                e["ref"].as_str().map(String::from),
                e["digest"].as_str().expect("digest").to_string(),
            )
        })
        .collect()
}

fn ls_text(name: &str) -> String {
    let tmp = tempdir();
    let dir = fixtures().join("layouts").join(name);
    let r = ocikit(tmp.path(), &["ls", dir.to_str().expect("utf-8")]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{name}");
    r.stdout
}

// go-containerregistry pkg/v1/layout/testdata -------------------------------------------------

const EEBFF: &str = "sha256:eebff607b1628d67459b0596643fc07de70d702eccf030f0bc7bb6fc2b278650";
const DOCKER_IN_OCI: &str = "descriptor says `application/vnd.oci.image.manifest.v1+json`, document says `application/vnd.docker.distribution.manifest.v2+json`";

#[test]
fn ggcr_test_index() {
    // ls: see cli_layout.rs for the exact text and JSON of this layout.
    // go-containerregistry accepts it (its descriptors win over the documents' own media
    // types). ocikit reads every document the same way but reports the four places where a
    // descriptor's media type differs from the document's: descriptor.md says a descriptor's
    // mediaType is the type of the referenced content (CATALOG: INVALID [R]).
    let (code, r) = fsck("ggcr-test_index", false);
    assert_eq!(code, 0); // conformance warnings only (exit 1 with --strict)
    assert_eq!(counts(&r), (true, 0, 8));
    assert_eq!(
        r["findings"],
        json!([
            warn("media-type-mismatch", "sha256:32589985702551b6c56033bb3334432a0a513bf9d6aceda0f67c42b003850720", &["2"],
                "descriptor says `application/vnd.oci.descriptor.v1+json`, document says `application/vnd.docker.distribution.manifest.v2+json`"),
            warn("media-type-mismatch", EEBFF, &["1"], DOCKER_IN_OCI),
            warn("media-type-mismatch", EEBFF, &["3", &format!("manifests[0] {EEBFF}")], DOCKER_IN_OCI),
            warn("media-type-mismatch", EEBFF, &["4", &format!("manifests[0] {EEBFF}")], DOCKER_IN_OCI),
        ])
    );
    // --deep: the Docker gzip layers decompress to the config's diff_ids.
    assert_eq!(fsck("ggcr-test_index", true), (code, r.clone()));
    // --strict: the conformance warnings are errors.
    let tmp = tempdir();
    let dir = fixtures().join("layouts/ggcr-test_index");
    let s = ocikit(
        tmp.path(),
        &["fsck", "--strict", "--json", dir.to_str().expect("utf-8")],
    );
    assert_eq!(s.code, 1);
    assert_eq!(counts(&s.json()), (false, 4, 8));
    assert_eq!(s.json()["findings"][0]["severity"], json!("error"));
    // Nothing to collect: all 8 blobs are reachable.
    let (code, removed, left, _) = gc_copy("ggcr-test_index");
    assert_eq!((code, removed, left.len()), (0, vec![], 8));
    // TestIndexErrors / TestImageErrors: an unknown digest is an error.
    let tmp = tempdir();
    let dir = fixtures().join("layouts/ggcr-test_index");
    let bad = "sha256:deadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeef";
    let r = ocikit(tmp.path(), &["inspect", dir.to_str().expect("utf-8"), bad]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        format!(
            "ocikit: error: no ref or digest `{bad}` in `{}`\n",
            dir.join("index.json").display()
        )
    );
}

#[test]
fn ggcr_test_gc_index_removes_exactly_the_unreferenced_layer() {
    assert_eq!(
        ls_text("ggcr-test_gc_index"),
        "\
REF  DIGEST                                                                   MEDIA TYPE                                                 SIZE  PLATFORM
1    sha256:eebff607b1628d67459b0596643fc07de70d702eccf030f0bc7bb6fc2b278650  application/vnd.oci.image.manifest.v1+json                 423   -
3    sha256:05f95b26ed10668b7183c1e2da98610e91372fa9f510046d4ce5812addad86b5  application/vnd.oci.image.index.v1+json                    314   -
4    sha256:2b29a2b8dea3af91ea7d0154be1da0c92d55ddd098540930fc8d3db7de377fdb  application/vnd.docker.distribution.manifest.list.v2+json  314   -
"
    );
    let (code, r) = fsck("ggcr-test_gc_index", false);
    assert_eq!(code, 0);
    assert_eq!(counts(&r), (true, 0, 5));
    assert_eq!(
        r["findings"],
        json!([
            warn("media-type-mismatch", EEBFF, &["1"], DOCKER_IN_OCI),
            warn(
                "media-type-mismatch",
                EEBFF,
                &["3", &format!("manifests[0] {EEBFF}")],
                DOCKER_IN_OCI
            ),
            warn(
                "media-type-mismatch",
                EEBFF,
                &["4", &format!("manifests[0] {EEBFF}")],
                DOCKER_IN_OCI
            ),
            info(
                "unreferenced",
                "sha256:492b89b9dd3cda4596f94916d17f6901455fb8bd7f4c5a2a90df8d39c90f48a0",
                UNREF
            ),
        ])
    );
    // gc_test.go:TestGcIndex: exactly this blob goes.
    let (code, removed, left, _) = gc_copy("ggcr-test_gc_index");
    assert_eq!(code, 0);
    assert_eq!(
        removed,
        vec!["sha256:492b89b9dd3cda4596f94916d17f6901455fb8bd7f4c5a2a90df8d39c90f48a0"]
    );
    assert_eq!(
        left,
        vec![
            "sha256:05f95b26ed10668b7183c1e2da98610e91372fa9f510046d4ce5812addad86b5",
            "sha256:2b29a2b8dea3af91ea7d0154be1da0c92d55ddd098540930fc8d3db7de377fdb",
            "sha256:6e0b05049ed9c17d02e1a55e80d6599dbfcce7f4f4b022e3c673e685789c470e",
            "sha256:dc52c6e48a1d51a96047b059f16889bc889c4b4c28f3b36b3f93187f62fc0b2b",
            "sha256:eebff607b1628d67459b0596643fc07de70d702eccf030f0bc7bb6fc2b278650",
        ]
    );
}

#[test]
fn ggcr_test_gc_image_unknown_mediatype_gc_succeeds() {
    assert_eq!(
        ls_text("ggcr-test_gc_image_unknown_mediatype"),
        "\
REF  DIGEST                                                                   MEDIA TYPE                              SIZE  PLATFORM
-    sha256:32589985702551b6c56033bb3334432a0a513bf9d6aceda0f67c42b003850720  application/vnd.oci.descriptor.v1+json  423   -
"
    );
    // The only entry has a media type nobody registered for a manifest, and its blob (like the
    // whole `blobs/` directory) is absent. fsck reports the absent blob: everything reachable
    // from index.json is checked, whatever its type.
    let d = "sha256:32589985702551b6c56033bb3334432a0a513bf9d6aceda0f67c42b003850720";
    let (code, r) = fsck("ggcr-test_gc_image_unknown_mediatype", false);
    assert_eq!(code, 1);
    assert_eq!(counts(&r), (false, 1, 1));
    assert_eq!(
        r["findings"],
        json!([err(
            "missing",
            d,
            &[&format!("index.json[0] {d}")],
            "blob is absent"
        )])
    );
    // Deliberately unlike go-containerregistry, whose TestGcUnknownMediaType expects
    // `gc: unknown media type: application/vnd.oci.descriptor.v1+json`: image-layout.md says an
    // unknown media type in index.json MUST NOT be an error. An unknown type is a leaf (it
    // keeps itself alive and nothing else); an absent blob of an unknown type is not a
    // document gc failed to read, so gc runs, and finds nothing to delete.
    let (code, removed, left, stderr) = gc_copy("ggcr-test_gc_image_unknown_mediatype");
    assert_eq!((code, removed, left), (0, vec![], vec![]));
    assert_eq!(stderr, "");
}

#[test]
fn ggcr_test_index_media_type_helm_chart() {
    assert_eq!(
        ls_text("ggcr-test_index_media_type"),
        "\
REF  DIGEST                                                                   MEDIA TYPE                                  SIZE  PLATFORM
-    sha256:b544f71ecd82372bc9a3c0dbef378abfd2734fe437df81ff6e242a0d720d8e3e  application/vnd.oci.image.manifest.v1+json  391   -
"
    );
    // TestImageCustomMediaType: the layer's media type is reported as `application/tar+gzip`;
    // the helm config and that layer type are unknown to ocikit: leaves, hashed, not parsed.
    for deep in [false, true] {
        assert_eq!(
            fsck("ggcr-test_index_media_type", deep),
            (
                0,
                json!({"clean": true, "errors": 0, "blobsChecked": 3, "findings": []})
            )
        );
    }
    let tmp = tempdir();
    let dir = fixtures().join("layouts/ggcr-test_index_media_type");
    let r = ocikit(
        tmp.path(),
        &[
            "inspect",
            dir.to_str().expect("utf-8"),
            "sha256:b544f71ecd82372bc9a3c0dbef378abfd2734fe437df81ff6e242a0d720d8e3e",
        ],
    );
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "\
sha256:b544f71ecd82372bc9a3c0dbef378abfd2734fe437df81ff6e242a0d720d8e3e application/vnd.oci.image.manifest.v1+json [manifest] 391 bytes
├── config sha256:ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356 application/vnd.cncf.helm.config.v1+json [unknown] 3 bytes
└── layers[0] sha256:dc52c6e48a1d51a96047b059f16889bc889c4b4c28f3b36b3f93187f62fc0b2b application/tar+gzip [unknown] 167 bytes
")
    );
    // TestGcIndexMediaType: nothing to collect.
    let (code, removed, left, _) = gc_copy("ggcr-test_index_media_type");
    assert_eq!((code, removed, left.len()), (0, vec![], 3));
}

#[test]
fn ggcr_test_index_one_image_is_valid() {
    assert_eq!(
        ls_text("ggcr-test_index_one_image"),
        "\
REF  DIGEST                                                                   MEDIA TYPE                                  SIZE  PLATFORM
-    sha256:98ceaf93e482fe91b9bfd6bba07137c098e49ee2d55e69f09fb6c951e75e0e46  application/vnd.oci.image.manifest.v1+json  344   -
"
    );
    for deep in [false, true] {
        assert_eq!(
            fsck("ggcr-test_index_one_image", deep),
            (
                0,
                json!({"clean": true, "errors": 0, "blobsChecked": 3, "findings": []})
            )
        );
    }
    // TestGcOneImage: nothing to collect.
    let (code, removed, left, _) = gc_copy("ggcr-test_index_one_image");
    assert_eq!((code, removed, left.len()), (0, vec![], 3));
    // TestImageWithEmptyHash picks the only image; ocikit names it by digest.
    let tmp = tempdir();
    copy_fixture("ggcr-test_index_one_image", tmp.path());
    let r = ocikit(
        tmp.path(),
        &[
            "tag",
            "ggcr-test_index_one_image",
            "sha256:98ceaf93e482fe91b9bfd6bba07137c098e49ee2d55e69f09fb6c951e75e0e46",
            "only",
        ],
    );
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    // The unnamed entry took the name rather than gaining a twin.
    assert_eq!(
        ls_refs(&tmp.path().join("ggcr-test_index_one_image")),
        vec![(
            Some("only".into()),
            "sha256:98ceaf93e482fe91b9bfd6bba07137c098e49ee2d55e69f09fb6c951e75e0e46".into()
        )]
    );
}

// containers/image oci/layout/fixtures ----------------------------------------------------------

const MULTI: &str = "cimage-delete_image_multiple_images";

#[test]
fn cimage_multiple_images_size_defect_and_deletes() {
    assert_eq!(
        ls_text(MULTI),
        "\
REF     DIGEST                                                                   MEDIA TYPE                                  SIZE  PLATFORM
latest  sha256:a2f798327b3f25e3eff54badcb769953de235e62e3e32051d57a5e66246de4a1  application/vnd.oci.image.index.v1+json     759   -
3.18.3  sha256:a2f798327b3f25e3eff54badcb769953de235e62e3e32051d57a5e66246de4a1  application/vnd.oci.image.index.v1+json     759   -
3       sha256:93cbd11a4f41467a0409b975499ae711bc6f8222de38d9f1b5a4097583195ad5  application/vnd.oci.image.manifest.v1+json  525   -
3.18    sha256:93cbd11a4f41467a0409b975499ae711bc6f8222de38d9f1b5a4097583195ad5  application/vnd.oci.image.manifest.v1+json  525   -
3.17.5  sha256:5b2aba4d3c27bc6493633d0ec446b25c8d0a5c9cfe99894bcdff0aee80813805  application/vnd.oci.image.manifest.v1+json  525   -
3.16.7  sha256:861d3c014b0e3edcf80e6221247d6b2921a4f892feb9bafe9515b9975b78c44f  application/vnd.oci.image.index.v1+json     759   -
1.0.0   sha256:0dc27f36a618c110ae851662c13283e9fbc1b5a5de003befc4bcefa5a05d2eef  application/vnd.oci.image.manifest.v1+json  525   -
"
    );
    // The data defect CATALOG.md records: manifest `0dc27f36…` (ref 1.0.0) declares config
    // size 585, the blob has 584 bytes. The manifests that declare 584 for the same config are
    // fine; the finding's path is the one through the bad descriptor.
    let cfg = "sha256:913cf3a39d377faf89ed388ad913a318a390488c9f34c46e43424795cdabffe8";
    let size_defect = err(
        "size-mismatch",
        cfg,
        &["1.0.0", &format!("config {cfg}")],
        "blob is 584 bytes, descriptor says 585",
    );
    let (code, r) = fsck(MULTI, false);
    assert_eq!(code, 1);
    assert_eq!(counts(&r), (false, 1, 19));
    assert_eq!(r["findings"], json!([size_defect]));
    // --deep: the fixture's "layers" are placeholder text (`insert binary content here #…`)
    // declared as tar+gzip; ocikit reports every one.
    let (code, r) = fsck(MULTI, true);
    assert_eq!(code, 1);
    let cm = |d: &str, path: &[&str]| {
        err(
            "compression-mismatch",
            d,
            path,
            "media type says gzip, bytes are neither a tar nor compressed",
        )
    };
    let l = |n: &str, d: &str| format!("{n} {d}");
    assert_eq!(
        r["findings"],
        json!([
            size_defect,
            cm(
                "sha256:02ea786cb1ff44d997661886a4186cbd8a1dc466938712bf7281379209476022",
                &[
                    "3.16.7",
                    &l(
                        "manifests[0]",
                        "sha256:39c524417bb4228f9fcb0aef43a680b5fd6b9f3a1df2fd50509d047e47dad8be"
                    ),
                    &l(
                        "layers[0]",
                        "sha256:02ea786cb1ff44d997661886a4186cbd8a1dc466938712bf7281379209476022"
                    )
                ]
            ),
            cm(
                "sha256:557ac7d133b7770216a8101268640edf4e88beab1b4e1e1bfc9b1891a1cab861",
                &[
                    "latest",
                    &l(
                        "manifests[0]",
                        "sha256:93cbd11a4f41467a0409b975499ae711bc6f8222de38d9f1b5a4097583195ad5"
                    ),
                    &l(
                        "layers[0]",
                        "sha256:557ac7d133b7770216a8101268640edf4e88beab1b4e1e1bfc9b1891a1cab861"
                    )
                ]
            ),
            cm(
                "sha256:986315a0e599fac2b80eb31db2124dab8d3de04d7ca98b254999bd913c1f73fe",
                &[
                    "3.17.5",
                    &l(
                        "layers[0]",
                        "sha256:986315a0e599fac2b80eb31db2124dab8d3de04d7ca98b254999bd913c1f73fe"
                    )
                ]
            ),
            cm(
                "sha256:a6f737ac2b84bc463f2ff721af39588c69646c82f79f3808236178e02e35b922",
                &[
                    "1.0.0",
                    &l(
                        "layers[0]",
                        "sha256:a6f737ac2b84bc463f2ff721af39588c69646c82f79f3808236178e02e35b922"
                    )
                ]
            ),
            cm(
                "sha256:e19729d5a968c71b4b691d60f4a6f85f93c303bb88635dcfef36e23b76cb7b3a",
                &[
                    "latest",
                    &l(
                        "manifests[1]",
                        "sha256:f6d60fd529b234d3e28837e15294d935f55da58ce57c4f9218cad38d0be82ce3"
                    ),
                    &l(
                        "layers[0]",
                        "sha256:e19729d5a968c71b4b691d60f4a6f85f93c303bb88635dcfef36e23b76cb7b3a"
                    )
                ]
            ),
            cm(
                "sha256:e2f7e0374fd6a03d9c373f4d9a0c7802045cc3ddcc1433e89d83b81fa7007242",
                &[
                    "3.16.7",
                    &l(
                        "manifests[1]",
                        "sha256:be6036f9b6a4e120a04868c47f1b8674f58b2fe5e410cba9f585a13ca8946cf0"
                    ),
                    &l(
                        "layers[0]",
                        "sha256:e2f7e0374fd6a03d9c373f4d9a0c7802045cc3ddcc1433e89d83b81fa7007242"
                    )
                ]
            ),
        ])
    );
    // Nothing unreachable: 19 blob files, gc keeps all (info.txt is not under blobs/).
    let (code, removed, left, _) = gc_copy(MULTI);
    assert_eq!((code, removed, left.len()), (0, vec![], 19));

    // oci_delete_test.go: deleting a ref, then collecting, leaves exactly this many blobs.
    // ocikit splits the delete into `untag` + `gc`; the counts agree with containers/image.
    for (name, blobs_left, gone) in [
        (
            "3.17.5",
            16,
            vec![
                "sha256:5b2aba4d3c27bc6493633d0ec446b25c8d0a5c9cfe99894bcdff0aee80813805",
                "sha256:986315a0e599fac2b80eb31db2124dab8d3de04d7ca98b254999bd913c1f73fe",
                "sha256:df11bc189adeb50dadb3291a3a7f2c34b36e0efdba0df70f2c8a2d761b215cde",
            ],
        ),
        // Its manifest and layer go; the config it shares with `3`/`3.18` stays.
        (
            "1.0.0",
            17,
            vec![
                "sha256:0dc27f36a618c110ae851662c13283e9fbc1b5a5de003befc4bcefa5a05d2eef",
                "sha256:a6f737ac2b84bc463f2ff721af39588c69646c82f79f3808236178e02e35b922",
            ],
        ),
        // A nested index: the index, both platform manifests, their configs and layers.
        (
            "3.16.7",
            12,
            vec![
                "sha256:02ea786cb1ff44d997661886a4186cbd8a1dc466938712bf7281379209476022",
                "sha256:39c524417bb4228f9fcb0aef43a680b5fd6b9f3a1df2fd50509d047e47dad8be",
                "sha256:7ffdfe7d276286b39a203dcc247949cf47c91d2d5e10a53a675c0962ed9e4402",
                "sha256:861d3c014b0e3edcf80e6221247d6b2921a4f892feb9bafe9515b9975b78c44f",
                "sha256:be6036f9b6a4e120a04868c47f1b8674f58b2fe5e410cba9f585a13ca8946cf0",
                "sha256:e2f7e0374fd6a03d9c373f4d9a0c7802045cc3ddcc1433e89d83b81fa7007242",
                "sha256:f732172ad8d2a666550fa3ec37a5153d59acc95744562ae64cf62ded46de101a",
            ],
        ),
        // Same content as `latest`: nothing goes.
        ("3.18.3", 19, vec![]),
    ] {
        let tmp = tempdir();
        let dir = copy_fixture(MULTI, tmp.path());
        let r = ocikit(tmp.path(), &["untag", MULTI, name]);
        assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{name}");
        let r = ocikit(tmp.path(), &["gc", MULTI, "--json"]);
        assert_eq!(r.code, 0, "{name}");
        let v = r.json();
        let removed: Vec<&str> = v["removed"]
            .as_array()
            .expect("removed")
            .iter()
            .map(|e| e["digest"].as_str().expect("digest"))
            .collect();
        assert_eq!(removed, gone, "{name}");
        assert_eq!(blob_names(&dir).len(), blobs_left, "{name}");
        assert_eq!(ls_refs(&dir).len(), 6, "{name}");
    }
    // `does-not-exist` and the empty name are errors.
    let tmp = tempdir();
    copy_fixture(MULTI, tmp.path());
    for name in ["does-not-exist", ""] {
        let r = ocikit(tmp.path(), &["untag", MULTI, name]);
        assert_eq!(r.code, 2, "{name:?}");
        assert_eq!(
            r.stderr,
            format!("ocikit: error: no ref or digest `{name}` in `{MULTI}/index.json`\n")
        );
    }
}

#[test]
fn cimage_only_one_image() {
    assert_eq!(
        ls_text("cimage-delete_image_only_one_image"),
        "\
REF     DIGEST                                                                   MEDIA TYPE                                  SIZE  PLATFORM
latest  sha256:eaa95f3cfaac07c8a5153eb77c933269586ad0226c83405776be08547e4d2a18  application/vnd.oci.image.manifest.v1+json  476   -
"
    );
    // Data defect: the config descriptor says 585 bytes, the blob has 740.
    let cfg = "sha256:a527179158cd5cebc11c152b8637b47ce96c838ba2aa0de66d14f45cedc11423";
    let (code, r) = fsck("cimage-delete_image_only_one_image", false);
    assert_eq!(code, 1);
    assert_eq!(counts(&r), (false, 1, 3));
    assert_eq!(
        r["findings"],
        json!([err(
            "size-mismatch",
            cfg,
            &["latest", &format!("config {cfg}")],
            "blob is 740 bytes, descriptor says 585"
        )])
    );
    // A wrong config size is not a document gc needs: gc runs and keeps everything.
    let (code, removed, left, _) = gc_copy("cimage-delete_image_only_one_image");
    assert_eq!((code, removed, left.len()), (0, vec![], 3));
    // Deleting `latest` empties blobs/ and the index.
    let tmp = tempdir();
    let dir = copy_fixture("cimage-delete_image_only_one_image", tmp.path());
    assert_eq!(
        ocikit(
            tmp.path(),
            &["untag", "cimage-delete_image_only_one_image", "latest"]
        )
        .code,
        0
    );
    let r = ocikit(tmp.path(), &["gc", "cimage-delete_image_only_one_image"]);
    assert_eq!(r.code, 0);
    assert_eq!(blob_names(&dir), Vec::<String>::new());
    // index.json is rewritten compactly; the fields it had (no `mediaType`) are kept as they were.
    assert_eq!(
        std::fs::read_to_string(dir.join("index.json")).expect("read"),
        r#"{"schemaVersion":2,"manifests":[]}"#
    );
}

#[test]
fn cimage_shared_blobs_dir_is_read_as_a_plain_layout() {
    // containers/image keeps the manifest and layer in `shared_blobs/` (its
    // `OCISharedBlobDirPath` extension). ocikit reads plain OCI layouts only: the manifest is
    // missing, so fsck reports it and gc refuses to guess what it would keep alive.
    let m = "sha256:eaa95f3cfaac07c8a5153eb77c933269586ad0226c83405776be08547e4d2a18";
    let (code, r) = fsck("cimage-delete_image_shared_blobs_dir", false);
    assert_eq!(code, 1);
    assert_eq!(counts(&r), (false, 1, 1));
    // The config in blobs/ is not listed as unreferenced: the unreadable manifest may name it.
    assert_eq!(
        r["findings"],
        json!([err("missing", m, &["latest"], "blob is absent")])
    );
    let (code, removed, left, stderr) = gc_copy("cimage-delete_image_shared_blobs_dir");
    assert_eq!(code, 1);
    assert_eq!(removed, Vec::<String>::new());
    assert_eq!(
        left,
        vec!["sha256:a527179158cd5cebc11c152b8637b47ce96c838ba2aa0de66d14f45cedc11423"]
    );
    assert_eq!(
        stderr,
        format!("ocikit: error: gc deleted nothing: 1 reachable document(s) cannot be read: `{m}` (missing)\n")
    );
}

#[test]
fn cimage_two_identical_references() {
    let first = "sha256:49d1584496c6e196f512c4a9f52b17b187642269d84c044538523c5b69a660b3";
    let second = "sha256:ecfa463536cb5472e238aadc4df81d4785d5d6373027c488a2db8a6e76fe88ed";
    assert_eq!(
        ls_text("cimage-delete_image_two_identical_references"),
        format!("\
REF    DIGEST                                                                   MEDIA TYPE                                  SIZE  PLATFORM
1.0.0  {first}  application/vnd.oci.image.manifest.v1+json  476   -
1.0.0  {second}  application/vnd.oci.image.manifest.v1+json  476   -
")
    );
    // The spec puts no uniqueness rule on ref names: the layout is fine.
    assert_eq!(
        fsck("cimage-delete_image_two_identical_references", false),
        (
            0,
            json!({"clean": true, "errors": 0, "blobsChecked": 6, "findings": []})
        )
    );
    // Resolving the name is ambiguous: an error listing both digests, for every verb that
    // resolves a ref.
    let tmp = tempdir();
    let name = "cimage-delete_image_two_identical_references";
    let dir = copy_fixture(name, tmp.path());
    let msg = format!(
        "ocikit: error: ref `1.0.0` names 2 entries in index.json: `{first}`, `{second}`\n"
    );
    for args in [
        &["inspect", name, "1.0.0"][..],
        &["cat", name, "1.0.0"][..],
        &["tag", name, "1.0.0", "new"][..],
    ] {
        let r = ocikit(tmp.path(), args);
        assert_eq!((r.code, r.stdout.as_str()), (2, ""), "{args:?}");
        assert_eq!(r.stderr, msg, "{args:?}");
    }
    // A digest still picks one.
    let r = ocikit(tmp.path(), &["tag", name, second, "second"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    // Tagging onto the shared name moves it from both entries to one.
    let r = ocikit(tmp.path(), &["tag", name, "second", "1.0.0"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stderr,
        format!("moved `1.0.0` from `{first}`, `{second}` to `{second}`\n")
    );
    assert_eq!(
        ls_refs(&dir),
        vec![
            (Some("1.0.0".into()), second.into()),
            (Some("second".into()), second.into())
        ]
    );

    // containers/image deletes only the first match of a duplicated name (3 blobs left).
    // ocikit's `untag NAME` removes every entry of that name and says how many: a name
    // that is ambiguous to read should not be half-deleted.
    let tmp = tempdir();
    let dir = copy_fixture(name, tmp.path());
    let r = ocikit(tmp.path(), &["untag", name, "1.0.0"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stderr, "removed 2 entries named `1.0.0`\n");
    assert_eq!(ls_refs(&dir), vec![]);
    let r = ocikit(tmp.path(), &["gc", name]);
    assert_eq!(r.code, 0);
    assert_eq!(blob_names(&dir), Vec::<String>::new());
}

#[test]
fn cimage_index_only_fixtures_are_not_layouts() {
    // No `oci-layout` file (REQUIRED by image-layout.md): containers/image reads index.json
    // anyway; ocikit refuses, exit 2, for every verb.
    for name in [
        "cimage-manifest",
        "cimage-name_lookups",
        "cimage-two_images_manifest",
    ] {
        let tmp = tempdir();
        copy_fixture(name, tmp.path());
        for args in [
            &["ls", name][..],
            &["fsck", name][..],
            &["gc", name][..],
            &["inspect", name, "a"][..],
            &["tag", name, "a", "b"][..],
        ] {
            let r = ocikit(tmp.path(), args);
            assert_eq!((r.code, r.stdout.as_str()), (2, ""), "{args:?}");
            assert_eq!(
                r.stderr,
                format!(
                    "ocikit: error: `{name}` is not an OCI image layout: no `oci-layout` file\n"
                ),
                "{args:?}"
            );
        }
        // Nothing was written.
        let mut files: Vec<String> = std::fs::read_dir(tmp.path().join(name))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, vec!["index.json"], "{name}");
    }
}

// oras (zot storage) ----------------------------------------------------------------------------

#[test]
fn oras_blobs_null_manifests_reads_as_empty() {
    // index.json is `{"schemaVersion":2,"manifests":null}`: zot's empty repository.
    assert_eq!(
        ls_text("oras-blobs"),
        "REF  DIGEST  MEDIA TYPE  SIZE  PLATFORM\n"
    );
    let tmp = tempdir();
    let dir = fixtures().join("layouts/oras-blobs");
    let r = ocikit(tmp.path(), &["ls", dir.to_str().expect("utf-8"), "--json"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "[]\n"));
    // Read as empty, but the schema says `manifests` is an array: reported.
    let (code, r) = fsck("oras-blobs", false);
    assert_eq!(code, 0);
    assert_eq!(counts(&r), (true, 0, 0));
    assert_eq!(
        r["findings"],
        json!([
            {"severity": "warning", "kind": "invalid", "digest": null, "path": ["index.json"], "detail": "manifests: expected an array"},
            info("unreferenced", "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", UNREF),
        ])
    );
    // The one blob is unreferenced: gc removes it.
    let (code, removed, left, _) = gc_copy("oras-blobs");
    assert_eq!(code, 0);
    assert_eq!(
        removed,
        vec!["sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"]
    );
    assert_eq!(left, Vec::<String>::new());
}

/// Configs oras writes as `{"architecture": …, "os": …}`: no `rootfs`, which the image-spec
/// config schema requires.
fn no_rootfs(cfg: &str, path: &[&str]) -> Value {
    warn("invalid", cfg, path, "rootfs: required field is missing")
}

#[test]
fn oras_artifacts_referrers() {
    assert_eq!(
        ls_text("oras-artifacts"),
        "\
REF      DIGEST                                                                   MEDIA TYPE                                  SIZE  PLATFORM
unnamed  sha256:977c6cf8e8aeaa35a5b5d6127e5008775d66d65985ac77634f79e1d7501bba83  application/vnd.oci.image.manifest.v1+json  390   -
multi    sha256:e2bfc9cc6a84ec2d7365b5a28c6bc5806b7fa581c9ad7883be955a64e3cc034f  application/vnd.oci.image.index.v1+json     706   -
foobar   sha256:fd6ed2f36b5465244d5dc86cb4e7df0ab8a9d24adc57825099f522fe009a22bb  application/vnd.oci.image.manifest.v1+json  851   -
v1.3.8   sha256:553c18eccc8b22efb7e4de2cc3200263f0ae3950bdae6f55394a156c143568b2  application/vnd.oci.image.index.v1+json     393   -
empty    sha256:7156dd4030da2375969c4da97e051d907f54ff8e9d28cc82c57289bbd22e3f9f  application/vnd.oci.image.manifest.v1+json  519   -
config   sha256:0e7404d1cc4a2115fdd83449df19dbef6ad10c0e1c2882241e3fedfe20f012a3  application/vnd.oci.image.manifest.v1+json  505   -
blob     sha256:ccd5f15fb7e0d27d47e2912b948eb846c968511ae02724672d608f3d05bc61a1  application/vnd.oci.image.manifest.v1+json  571   -
-        sha256:7679bc22c33b87aa345c6950a993db98a6df7a6cc77a35c388908a3a50be6bad  application/vnd.oci.image.index.v1+json     867   -
-        sha256:e2c6633a79985906f1ed55c592718c73c41e809fb9818de232a635904a74d48d  application/vnd.oci.image.manifest.v1+json  660   -
-        sha256:0cb8c4da7e9ff2e7eefca33141091b9239218e3125a35e17e8bcd05fa3a5e714  application/vnd.oci.image.manifest.v1+json  670   -
-        sha256:20e7d3a6ce087c54238c18a3428853b50cdaf4478a9d00caa8304119b58ae8a9  application/vnd.oci.image.manifest.v1+json  734   -
-        sha256:9d84a5716c66a1d1b9c13f8ed157ba7d1edfe7f9b8766728b8a1f25c0d9c14c1  application/vnd.oci.image.manifest.v1+json  458   -
-        sha256:359bac7f6a262e0f36e83b6b78ee3cc7a0bb8813e04d330328ca7ca9785e1e0b  application/vnd.oci.image.manifest.v1+json  720   -
-        sha256:6aa11331ce0c766d6333b60dac98d584d98eea45fa93bbfc9b5bdb915ce3a43f  application/vnd.oci.image.manifest.v1+json  584   -
-        sha256:ab01d6e284e843d51fb5e753904a540f507a62361a5fd7e434e4f27b285ca5c9  application/vnd.oci.image.manifest.v1+json  584   -
-        sha256:58efe73e78fe043ca31b89007a025c594ce12aa7e6da27d21c7b14b50112e255  application/vnd.oci.image.manifest.v1+json  458   -
-        sha256:d37baf66300b9006b0f4c7102075d56b970fbf910be5c6bca07fdbb000dfa383  application/vnd.oci.image.manifest.v1+json  473   -
-        sha256:c5e00045954a70e3fd28307dd543d4cc158946117943700b8f520f72ddca031f  application/vnd.oci.image.manifest.v1+json  482   -
-        sha256:938419ae89a9947476bbed93abc5eb7abf7d5708be69679fe6cc4b22afe8fdd5  application/vnd.oci.image.manifest.v1+json  730   -
-        sha256:4f93460061882467e6fb3b772dc6ab72130d9ac1906aed2fc7589a5cd145433c  application/vnd.oci.image.manifest.v1+json  458   -
"
    );
    // Structurally clean: every blob reachable through indexes, manifests and `subject`
    // (referrers of images and of indexes, chains of referrers) is present, sized and hashed
    // right, and no blob is unreferenced.
    let (code, r) = fsck("oras-artifacts", false);
    let (structural, schema) = split(&r);
    assert_eq!(structural, Vec::<Value>::new());
    assert_eq!(counts(&r).2, 34);
    // The schema checks flag what oras wrote: configs without `rootfs`, and two referrers
    // with an empty `layers` array (a SHOULD of the spec, reported as such).
    let (m0, m1, m2) = (
        "sha256:9d84a5716c66a1d1b9c13f8ed157ba7d1edfe7f9b8766728b8a1f25c0d9c14c1",
        "sha256:4f93460061882467e6fb3b772dc6ab72130d9ac1906aed2fc7589a5cd145433c",
        "sha256:58efe73e78fe043ca31b89007a025c594ce12aa7e6da27d21c7b14b50112e255",
    );
    let (c0, c1, c2) = (
        "sha256:fe9dbc99451d0517d65e048c309f0b5afb2cc513b7a3d456b6cc29fe641386c5",
        "sha256:1fd9a5fc54b634130102861815e2881f1eec22958d604301904c5353041794c1",
        "sha256:a5dfce5d28768e985f91f610591f0203bb6e07f11e2fb0ce1b8508e9aac4ebe2",
    );
    let empty_layers = "layers: empty (the spec says SHOULD have at least one)";
    let (r16, r17) = (
        "sha256:d37baf66300b9006b0f4c7102075d56b970fbf910be5c6bca07fdbb000dfa383",
        "sha256:c5e00045954a70e3fd28307dd543d4cc158946117943700b8f520f72ddca031f",
    );
    assert_eq!(
        schema,
        vec![
            no_rootfs(
                c1,
                &[
                    "multi",
                    &format!("manifests[1] {m1}"),
                    &format!("config {c1}")
                ]
            ),
            no_rootfs(
                c2,
                &[
                    "multi",
                    &format!("manifests[2] {m2}"),
                    &format!("config {c2}")
                ]
            ),
            no_rootfs(
                c0,
                &[
                    "multi",
                    &format!("manifests[0] {m0}"),
                    &format!("config {c0}")
                ]
            ),
            // SHOULD-level: reported as advisory information, not an error.
            json!({"severity": "info", "kind": "advisory", "digest": r17, "path": [format!("index.json[17] {r17}")], "detail": empty_layers}),
            json!({"severity": "info", "kind": "advisory", "digest": r16, "path": [format!("index.json[16] {r16}")], "detail": empty_layers}),
        ]
    );
    assert_eq!(code, 0); // configs `{}`-like without rootfs: warnings

    // A referrer's tree shows its subject.
    let tmp = tempdir();
    let dir = fixtures().join("layouts/oras-artifacts");
    let r = ocikit(
        tmp.path(),
        &["inspect", dir.to_str().expect("utf-8"), r16, "--json"],
    );
    assert_eq!(r.code, 0);
    let v = r.json();
    let roles: Vec<(&str, &str)> = v["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|c| {
            (
                c["role"].as_str().expect("role"),
                c["kind"].as_str().expect("kind"),
            )
        })
        .collect();
    assert_eq!(roles, vec![("config", "unknown"), ("subject", "index")]);
    assert_eq!(
        v["children"][1]["digest"],
        "sha256:e2bfc9cc6a84ec2d7365b5a28c6bc5806b7fa581c9ad7883be955a64e3cc034f"
    );

    // Every blob is reachable: gc removes nothing.
    let (code, removed, left, _) = gc_copy("oras-artifacts");
    assert_eq!((code, removed, left.len()), (0, vec![], 34));

    // gc never deletes what a kept manifest names as its subject: untag the subject index
    // `multi`; the unnamed referrers that point at it keep it (and its images) alive.
    let tmp = tempdir();
    let dir = copy_fixture("oras-artifacts", tmp.path());
    assert_eq!(
        ocikit(tmp.path(), &["untag", "oras-artifacts", "multi"]).code,
        0
    );
    let r = ocikit(tmp.path(), &["gc", "oras-artifacts", "--json"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.json()["removed"], json!([]));
    assert_eq!(blob_names(&dir).len(), 34);
}

#[test]
fn oras_images_nonjson_config_and_empty_index() {
    assert_eq!(
        ls_text("oras-images"),
        "\
REF             DIGEST                                                                   MEDIA TYPE                                  SIZE  PLATFORM
linux-armv7     sha256:58efe73e78fe043ca31b89007a025c594ce12aa7e6da27d21c7b14b50112e255  application/vnd.oci.image.manifest.v1+json  458   -
nonjson-config  sha256:9d16f5505246424aed7116cb21216704ba8c919997d0f1f37e154c11d509e1d2  application/vnd.oci.image.manifest.v1+json  529   -
foobar          sha256:fd6ed2f36b5465244d5dc86cb4e7df0ab8a9d24adc57825099f522fe009a22bb  application/vnd.oci.image.manifest.v1+json  851   -
linux-arm64     sha256:4f93460061882467e6fb3b772dc6ab72130d9ac1906aed2fc7589a5cd145433c  application/vnd.oci.image.manifest.v1+json  458   -
empty_index     sha256:b2a5fcfb112ccde647a5a3dc0215c2c9e7d0ce598924a5ec48aa85beca048286  application/vnd.oci.image.index.v1+json     89    -
multi           sha256:e2bfc9cc6a84ec2d7365b5a28c6bc5806b7fa581c9ad7883be955a64e3cc034f  application/vnd.oci.image.index.v1+json     706   -
linux-amd64     sha256:9d84a5716c66a1d1b9c13f8ed157ba7d1edfe7f9b8766728b8a1f25c0d9c14c1  application/vnd.oci.image.manifest.v1+json  458   -
"
    );
    // `nonjson-config`: the config's media type `application/vnd.unknown.config.v1+json` is
    // not an image config, so its 9 non-JSON bytes are hashed, never parsed: no finding.
    // `empty_index` (an index with no manifests) is fine.
    let (code, r) = fsck("oras-images", false);
    let (structural, schema) = split(&r);
    assert_eq!(structural, Vec::<Value>::new());
    assert_eq!(counts(&r).2, 16);
    let (m0, c0) = (
        "sha256:9d84a5716c66a1d1b9c13f8ed157ba7d1edfe7f9b8766728b8a1f25c0d9c14c1",
        "sha256:fe9dbc99451d0517d65e048c309f0b5afb2cc513b7a3d456b6cc29fe641386c5",
    );
    let c1 = "sha256:1fd9a5fc54b634130102861815e2881f1eec22958d604301904c5353041794c1";
    let c2 = "sha256:a5dfce5d28768e985f91f610591f0203bb6e07f11e2fb0ce1b8508e9aac4ebe2";
    assert_eq!(
        schema,
        vec![
            no_rootfs(c1, &["linux-arm64", &format!("config {c1}")]),
            no_rootfs(c2, &["linux-armv7", &format!("config {c2}")]),
            no_rootfs(
                c0,
                &[
                    "multi",
                    &format!("manifests[0] {m0}"),
                    &format!("config {c0}")
                ]
            ),
        ]
    );
    assert_eq!(code, 0);
    // --deep: `foobar` and `nonjson-config` carry files pushed as layers of type `tar` that
    // are not tars (`foo`, `bar`, a text file): ocikit reports them.
    let (code, r) = fsck("oras-images", true);
    assert_eq!(code, 1);
    let not_tar = "media type says uncompressed, bytes are neither a tar nor compressed";
    let (foo, bar, txt) = (
        "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
        "sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9",
        "sha256:24b9e859bfdff44fbeee998abb782f69fa2b19164464b200351b3be3b690cf4a",
    );
    assert_eq!(
        split(&r).0,
        vec![
            err(
                "compression-mismatch",
                txt,
                &["nonjson-config", &format!("layers[0] {txt}")],
                not_tar
            ),
            err(
                "compression-mismatch",
                foo,
                &["foobar", &format!("layers[0] {foo}")],
                not_tar
            ),
            err(
                "compression-mismatch",
                bar,
                &["foobar", &format!("layers[2] {bar}")],
                not_tar
            ),
        ]
    );
    let tmp = tempdir();
    let dir = fixtures().join("layouts/oras-images");
    let r = ocikit(
        tmp.path(),
        &["inspect", dir.to_str().expect("utf-8"), "nonjson-config"],
    );
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "\
sha256:9d16f5505246424aed7116cb21216704ba8c919997d0f1f37e154c11d509e1d2 application/vnd.oci.image.manifest.v1+json [manifest] 529 bytes artifactType=application/vnd.unknown.config.v1+json
├── config sha256:02c15a8d1735c65bb8ca86c716615d3c0d8beb87dc68ed88bb49192f90b184e2 application/vnd.unknown.config.v1+json [unknown] 9 bytes
└── layers[0] sha256:24b9e859bfdff44fbeee998abb782f69fa2b19164464b200351b3be3b690cf4a application/vnd.oci.image.layer.v1.tar [layer] 12 bytes
")
    );
    let r = ocikit(
        tmp.path(),
        &["inspect", dir.to_str().expect("utf-8"), "empty_index"],
    );
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "sha256:b2a5fcfb112ccde647a5a3dc0215c2c9e7d0ce598924a5ec48aa85beca048286 application/vnd.oci.image.index.v1+json [index] 89 bytes\n")
    );
    let (code, removed, left, _) = gc_copy("oras-images");
    assert_eq!(
        (code, removed, left.len()),
        (0, vec![], blob_names(&dir).len())
    );
}
