//! Round trips: write an image with the library, reopen the layout with the CLI, fsck clean;
//! then break one thing at a time and check that `fsck --json` reports exactly that, with the
//! digest, the path from the root ref, and the kind.

mod common;

use common::*;
use ocikit_layout::{Compression, Digest};
use serde_json::{json, Value};

fn finding(kind: &str, digest: &Digest, path: Vec<String>, detail: String) -> Value {
    json!({
        "severity": "error",
        "kind": kind,
        "digest": digest.as_str(),
        "path": path,
        "detail": detail,
    })
}

fn fsck_json(tmp: &std::path::Path, deep: bool) -> (i32, Value) {
    let mut args = vec!["fsck", "l", "--json"];
    if deep {
        args.push("--deep");
    }
    let r = ocikit(tmp, &args);
    assert_eq!(r.stderr, "", "fsck --json writes nothing to stderr");
    (r.code, r.json())
}

fn report(errors: usize, checked: usize, findings: Vec<Value>) -> Value {
    json!({
        "clean": errors == 0,
        "errors": errors,
        "blobsChecked": checked,
        "findings": findings,
    })
}

#[test]
fn written_image_is_clean_and_deterministic() {
    let tmp = tempdir();
    let built = small_image(&tmp.path().join("l"), "v1");
    // The same inputs give the same bytes on every machine.
    let tar = tar_of(&[
        ("hello.txt", b"hello\n"),
        ("etc/os-release", b"ID=ocikit\n"),
    ]);
    assert_eq!(tar.len(), 3072);
    assert_eq!(built.layers[0].diff_id, Digest::sha256(&tar));
    assert_eq!(
        built.layers[0].diff_id.as_str(),
        "sha256:0b3497c2be485adcc2b7b401297d915748571a2c59c481ee0a1fa5654cb7aefb"
    );
    assert_eq!(
        built.manifest.digest.as_str(),
        "sha256:07d7e0c88617a70ea1ab059d379e92954316648484342b90ae3f0f23d173d9cc"
    );
    for deep in [false, true] {
        assert_eq!(fsck_json(tmp.path(), deep), (0, report(0, 3, vec![])));
    }
    let r = ocikit(tmp.path(), &["fsck", "l"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""));
    assert_eq!(
        r.stderr,
        format!(
            "checked 3 blobs ({} B): 0 error(s), 0 note(s)\n",
            built.config.1 + built.layers[0].size
        )
    );
    let r = ocikit(tmp.path(), &["-q", "fsck", "l"]);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
}

#[test]
fn flipped_byte_in_a_layer_is_a_digest_mismatch() {
    let tmp = tempdir();
    let built = small_image(&tmp.path().join("l"), "v1");
    let layer = &built.layers[0].digest;
    let path = tmp.path().join("l").join(layer.blob_rel_path());
    flip_byte(&path, 20);
    let found = Digest::sha256(&std::fs::read(&path).expect("read"));
    let want = report(
        1,
        3,
        vec![finding(
            "digest-mismatch",
            layer,
            vec!["v1".into(), format!("layers[0] {layer}")],
            format!(
                "blob `{layer}` at `l/blobs/sha256/{}` has digest `{found}`",
                layer.encoded()
            ),
        )],
    );
    assert_eq!(fsck_json(tmp.path(), false), (1, want.clone()));
    // --deep does not report a second problem for the same bytes.
    assert_eq!(fsck_json(tmp.path(), true), (1, want));
    // The text form names the digest and the path too.
    let r = ocikit(tmp.path(), &["fsck", "l"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stdout,
        format!(
            "error: digest-mismatch: {layer} (v1 > layers[0] {layer}): blob `{layer}` at `l/blobs/sha256/{}` has digest `{found}`\n",
            layer.encoded()
        )
    );
}

#[test]
fn flipped_byte_in_the_manifest_and_config() {
    let tmp = tempdir();
    let built = small_image(&tmp.path().join("l"), "v1");
    let m = &built.manifest.digest;
    let c = &built.config.0;
    let cpath = tmp.path().join("l").join(c.blob_rel_path());
    flip_byte(&cpath, 3);
    let cfound = Digest::sha256(&std::fs::read(&cpath).expect("read"));
    assert_eq!(
        fsck_json(tmp.path(), false),
        (
            1,
            report(
                1,
                3,
                vec![finding(
                    "digest-mismatch",
                    c,
                    vec!["v1".into(), format!("config {c}")],
                    format!(
                        "blob `{c}` at `l/blobs/sha256/{}` has digest `{cfound}`",
                        c.encoded()
                    ),
                )]
            )
        )
    );
    // A corrupt manifest hides what is under it: only the manifest is reported.
    let mpath = tmp.path().join("l").join(m.blob_rel_path());
    flip_byte(&mpath, 3);
    let mfound = Digest::sha256(&std::fs::read(&mpath).expect("read"));
    assert_eq!(
        fsck_json(tmp.path(), false),
        (
            1,
            report(
                1,
                1,
                vec![
                    finding(
                        "digest-mismatch",
                        m,
                        vec!["v1".into()],
                        format!(
                            "blob `{m}` at `l/blobs/sha256/{}` has digest `{mfound}`",
                            m.encoded()
                        ),
                    ),
                    // The config and layer are no longer reachable through a readable manifest.
                ]
            )
        )
    );
    // gc cannot know what the unreadable manifest keeps alive: it deletes nothing, exit 1.
    let before = blob_names(&tmp.path().join("l"));
    let r = ocikit(tmp.path(), &["gc", "l"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        format!("ocikit: error: gc deleted nothing: 1 reachable document(s) cannot be read: `{m}` (blob `{m}` at `l/blobs/sha256/{}` has digest `{mfound}`)\n", m.encoded())
    );
    assert_eq!(blob_names(&tmp.path().join("l")), before);
}

#[test]
fn deleted_blob_is_missing() {
    let tmp = tempdir();
    let built = small_image(&tmp.path().join("l"), "v1");
    let layer = &built.layers[0].digest;
    std::fs::remove_file(tmp.path().join("l").join(layer.blob_rel_path())).expect("rm");
    let want = report(
        1,
        3,
        vec![finding(
            "missing",
            layer,
            vec!["v1".into(), format!("layers[0] {layer}")],
            "blob is absent".into(),
        )],
    );
    assert_eq!(fsck_json(tmp.path(), false), (1, want.clone()));
    assert_eq!(fsck_json(tmp.path(), true), (1, want));
    // A missing layer does not stop gc: layers keep nothing else alive.
    let r = ocikit(tmp.path(), &["gc", "l", "--json"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.json(),
        json!({"dryRun": false, "removed": [], "tempFiles": [], "bytes": 0})
    );
}

#[test]
fn truncated_blob_is_a_size_mismatch() {
    let tmp = tempdir();
    let built = small_image(&tmp.path().join("l"), "v1");
    let layer = &built.layers[0].digest;
    let size = built.layers[0].size;
    let path = tmp.path().join("l").join(layer.blob_rel_path());
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() - 5]).expect("truncate");
    let want = report(
        1,
        3,
        vec![finding(
            "size-mismatch",
            layer,
            vec!["v1".into(), format!("layers[0] {layer}")],
            format!("blob is {} bytes, descriptor says {size}", size - 5),
        )],
    );
    assert_eq!(fsck_json(tmp.path(), false), (1, want.clone()));
    assert_eq!(fsck_json(tmp.path(), true), (1, want));
}

#[test]
fn wrong_declared_compression_is_found_by_deep() {
    let tmp = tempdir();
    let files: &[(&str, &[u8])] = &[("a.txt", b"a\n")];
    // gzip bytes declared as zstd, and plain tar bytes declared as gzip.
    let mut zstd_claim = LayerSpec::new(files, Compression::Gzip);
    zstd_claim.media_type = Some("application/vnd.oci.image.layer.v1.tar+zstd".into());
    let mut gzip_claim = LayerSpec::new(&[("b.txt", b"b\n")], Compression::None);
    gzip_claim.media_type = Some("application/vnd.oci.image.layer.v1.tar+gzip".into());
    let built = add_image(&tmp.path().join("l"), "v1", &[zstd_claim, gzip_claim], None);
    // Without --deep, the bytes match their digests: clean.
    assert_eq!(fsck_json(tmp.path(), false), (0, report(0, 4, vec![])));
    let (l0, l1) = (&built.layers[0].digest, &built.layers[1].digest);
    let (code, got) = fsck_json(tmp.path(), true);
    assert_eq!(code, 1);
    assert_eq!(
        got,
        report(
            2,
            4,
            vec![
                finding(
                    "compression-mismatch",
                    std::cmp::min(l0, l1),
                    if l0 < l1 {
                        vec!["v1".into(), format!("layers[0] {l0}")]
                    } else {
                        vec!["v1".into(), format!("layers[1] {l1}")]
                    },
                    if l0 < l1 {
                        "media type says zstd, bytes are gzip".into()
                    } else {
                        "media type says gzip, bytes are uncompressed".into()
                    },
                ),
                finding(
                    "compression-mismatch",
                    std::cmp::max(l0, l1),
                    if l0 < l1 {
                        vec!["v1".into(), format!("layers[1] {l1}")]
                    } else {
                        vec!["v1".into(), format!("layers[0] {l0}")]
                    },
                    if l0 < l1 {
                        "media type says gzip, bytes are uncompressed".into()
                    } else {
                        "media type says zstd, bytes are gzip".into()
                    },
                ),
            ]
        )
    );
}

#[test]
fn diff_id_that_differs_from_the_config() {
    let tmp = tempdir();
    let wrong = Digest::sha256(b"not the tar").to_string();
    let built = add_image(
        &tmp.path().join("l"),
        "v1",
        &[LayerSpec::new(&[("a.txt", b"a\n")], Compression::Zstd)],
        Some(vec![wrong.clone()]),
    );
    let layer = &built.layers[0].digest;
    assert_eq!(fsck_json(tmp.path(), false), (0, report(0, 3, vec![])));
    assert_eq!(
        fsck_json(tmp.path(), true),
        (
            1,
            report(
                1,
                3,
                vec![finding(
                    "diff-id-mismatch",
                    layer,
                    vec!["v1".into(), format!("layers[0] {layer}")],
                    format!(
                        "decompresses to `{}`, config says `{wrong}`",
                        built.layers[0].diff_id
                    ),
                )]
            )
        )
    );

    // A config that lists fewer diff_ids than the manifest has layers: reported on the
    // manifest.
    let tmp = tempdir();
    let built = add_image(
        &tmp.path().join("l"),
        "v1",
        &[LayerSpec::new(&[("a.txt", b"a\n")], Compression::Gzip)],
        Some(vec![]),
    );
    let m = &built.manifest.digest;
    assert_eq!(
        fsck_json(tmp.path(), true),
        (
            1,
            report(
                1,
                3,
                vec![finding(
                    "diff-id-mismatch",
                    m,
                    vec!["v1".into()],
                    "1 layers, but the config lists 0 diff_ids".into(),
                )]
            )
        )
    );
}

#[test]
fn unreferenced_blobs_and_temp_files_are_information() {
    let tmp = tempdir();
    let dir = tmp.path().join("l");
    let built = small_image(&dir, "v1");
    std::fs::write(
        dir.join("blobs/sha256/2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"),
        b"foo",
    )
    .expect("write");
    std::fs::write(dir.join("blobs/sha256/.tmp-abc"), b"partial").expect("write");
    let (code, got) = fsck_json(tmp.path(), false);
    assert_eq!(code, 0);
    assert_eq!(
        got,
        json!({
            "clean": true,
            "errors": 0,
            "blobsChecked": 3,
            "findings": [
                {
                    "severity": "info",
                    "kind": "unreferenced",
                    "digest": "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
                    "path": [],
                    "detail": "no reachable descriptor names this blob",
                },
                {
                    "severity": "info",
                    "kind": "temp-file",
                    "digest": null,
                    "path": ["l/blobs/sha256/.tmp-abc"],
                    "detail": "leftover of an interrupted write; gc removes it",
                },
            ],
        })
    );
    // gc removes both; a dry run first removes nothing.
    let r = ocikit(tmp.path(), &["gc", "l", "--dry-run", "--json"]);
    assert_eq!(r.code, 0);
    let want = |dry: bool| {
        json!({
            "dryRun": dry,
            "removed": [{"digest": "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", "size": 3}],
            "tempFiles": ["l/blobs/sha256/.tmp-abc"],
            "bytes": 10,
        })
    };
    assert_eq!(r.json(), want(true));
    assert_eq!(blob_names(&dir).len(), 5);
    let r = ocikit(tmp.path(), &["gc", "l"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stdout,
        "removed sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae (3 bytes)\nremoved temp file l/blobs/sha256/.tmp-abc\n"
    );
    assert_eq!(r.stderr, "removed 1 blob(s) and 1 temp file(s), 10 B\n");
    let mut want_blobs = vec![
        format!("sha256:{}", built.manifest.digest.encoded()),
        format!("sha256:{}", built.config.0.encoded()),
        format!("sha256:{}", built.layers[0].digest.encoded()),
    ];
    want_blobs.sort();
    assert_eq!(blob_names(&dir), want_blobs);
    assert_eq!(fsck_json(tmp.path(), false), (0, report(0, 3, vec![])));
}

fn info(kind: &str, digest: &str, path: Vec<String>, detail: &str) -> Value {
    json!({"severity": "info", "kind": kind, "digest": digest, "path": path, "detail": detail})
}

const EMPTY: &[u8] = b"{}";

#[test]
fn absent_subject_and_external_layers_are_information() {
    let tmp = tempdir();
    let dir = tmp.path().join("l");
    let sig = b"signature\n";
    let absent_subject = Digest::sha256(b"a manifest kept elsewhere");
    let foreign = Digest::sha256(b"a foreign layer");
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": desc_of("application/vnd.oci.empty.v1+json", EMPTY),
        "layers": [
            desc_of("application/vnd.example.signature.v1", sig),
            {
                "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                "digest": foreign.as_str(),
                "size": 1234,
                "urls": ["https://example.invalid/layer"],
            },
        ],
        "subject": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": absent_subject.as_str(),
            "size": 99,
        },
    });
    add_manifest(&dir, "sig", &[EMPTY, sig], &manifest);
    let (code, got) = fsck_json(tmp.path(), true);
    assert_eq!(code, 0);
    let mut want = vec![
        info(
            "external",
            foreign.as_str(),
            vec!["sig".into(), format!("layers[1] {foreign}")],
            "blob is absent",
        ),
        info(
            "missing-subject",
            absent_subject.as_str(),
            vec!["sig".into(), format!("subject {absent_subject}")],
            "blob is absent",
        ),
    ];
    want.sort_by_key(|f| f["kind"].as_str().map(String::from));
    assert_eq!(
        got,
        json!({"clean": true, "errors": 0, "blobsChecked": 5, "findings": want})
    );
    // Neither stops gc, and gc keeps everything the referrer names.
    let r = ocikit(tmp.path(), &["gc", "l", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["removed"], json!([]));
    assert_eq!(blob_names(&dir).len(), 3);
}

#[test]
fn a_subject_keeps_its_manifest_alive_through_gc() {
    let tmp = tempdir();
    let dir = tmp.path().join("l");
    let image = small_image(&dir, "app");
    let sig = b"signature\n";
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": desc_of("application/vnd.oci.empty.v1+json", EMPTY),
        "layers": [desc_of("application/vnd.example.signature.v1", sig)],
        "subject": serde_json::to_value(&image.manifest).expect("json"),
    });
    add_manifest(&dir, "app.sig", &[EMPTY, sig], &manifest);
    assert_eq!(ocikit(tmp.path(), &["untag", "l", "app"]).code, 0);
    let r = ocikit(tmp.path(), &["gc", "l", "--json"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.json(),
        json!({"dryRun": false, "removed": [], "tempFiles": [], "bytes": 0})
    );
    assert_eq!(blob_names(&dir).len(), 6);
    assert_eq!(fsck_json(tmp.path(), true), (0, report(0, 6, vec![])));
    // Once the referrer goes too, all six go.
    assert_eq!(ocikit(tmp.path(), &["untag", "l", "app.sig"]).code, 0);
    let r = ocikit(tmp.path(), &["gc", "l", "--json"]);
    assert_eq!(r.json()["removed"].as_array().expect("removed").len(), 6);
    assert_eq!(blob_names(&dir), Vec::<String>::new());
}

#[test]
fn unverifiable_algorithm_and_data_mismatch() {
    let tmp = tempdir();
    let dir = tmp.path().join("l");
    // A layer named by an algorithm ocikit cannot compute: only its size is checked.
    let odd = format!("blake3:{}", "ab".repeat(32));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": Digest::sha256(EMPTY).as_str(),
            "size": 2,
            // `e30=` is `{}`; `e3x9` is not.
            "data": "e3x9",
        },
        "layers": [{"mediaType": "application/vnd.example.blob", "digest": odd, "size": 5}],
    });
    add_manifest(&dir, "odd", &[EMPTY], &manifest);
    std::fs::create_dir_all(dir.join("blobs/blake3")).expect("mkdir");
    std::fs::write(dir.join("blobs/blake3").join("ab".repeat(32)), b"12345").expect("write");
    let cfg = Digest::sha256(EMPTY);
    let (code, got) = fsck_json(tmp.path(), false);
    assert_eq!(code, 1);
    assert_eq!(
        got["findings"],
        json!([
            {
                "severity": "error",
                "kind": "data-mismatch",
                "digest": cfg.as_str(),
                "path": ["odd", format!("config {cfg}")],
                "detail": "`data` does not match the digest or size",
            },
            info(
                "unverifiable",
                &odd,
                vec!["odd".into(), format!("layers[0] {odd}")],
                "algorithm `blake3` cannot be verified",
            ),
        ])
    );
}
