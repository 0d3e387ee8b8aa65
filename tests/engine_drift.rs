//! Drifts between verbs: the image graph used to be walked by different code in `fsck`, `copy`,
//! `bundle`, `import` and `export`, and the walks disagreed on hostile or unusual layouts (a
//! stale `data` field, an absent `subject`, nesting past the depth cap, index.json merge rules, a
//! huge extension header in front of the bundle sniffing). Each test pins the right behaviour of
//! one drift end to end, through the CLI, on a layout built byte by byte.

mod craft;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use craft::*;
use serde_json::{json, Value};

/// `ocikit --no-fsync ARGS` (every destination here is a throwaway temp dir).
fn oc(args: &[&str]) -> Output {
    ocikit()
        .env_remove("SOURCE_DATE_EPOCH")
        .arg("--no-fsync")
        .args(args)
        .output()
        .expect("run ocikit")
}

/// How a run ended, for assertion messages: exit code or signal, then stderr.
fn how(o: &Output) -> String {
    match (o.status.code(), o.status.signal()) {
        (Some(c), _) => format!("exit {c}; stderr: {}", stderr(o)),
        (None, s) => format!("killed by signal {s:?}; stderr: {}", stderr(o)),
    }
}

/// Run and require exit 0.
fn ok(args: &[&str]) -> Output {
    let o = oc(args);
    assert_eq!(o.status.code(), Some(0), "ocikit {args:?}: {}", how(&o));
    o
}

/// Standard base64 with padding (RFC 4648), for descriptors' `data` fields.
fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Store a JSON document; returns its descriptor and its exact bytes.
fn put_doc(lay: &Lay, media_type: &str, doc: &Value) -> (Value, Vec<u8>) {
    let bytes = serde_json::to_vec(doc).expect("json");
    (lay.desc(media_type, &bytes), bytes)
}

/// A linux image for `arch` (config + one layer); returns the manifest's descriptor (with its
/// platform) and bytes.
fn platform_image(lay: &Lay, arch: &str) -> (Value, Vec<u8>) {
    let config = lay.desc(
        OCI_CONFIG,
        format!(
            r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        )
        .as_bytes(),
    );
    let layer = lay.desc(OCI_LAYER, format!("layer for {arch}").as_bytes());
    let m =
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]});
    let (mut d, bytes) = put_doc(lay, OCI_MANIFEST, &m);
    d["platform"] = json!({"architecture": arch, "os": "linux"});
    (d, bytes)
}

/// `sha256:<hex>` of every blob in `dir`, sorted.
fn blob_set(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.join("blobs/sha256"))
        .expect("blobs/sha256")
        .flatten()
        .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
        .collect();
    v.sort();
    v
}

/// `ls --json`: (ref, digest) of each index.json entry, in order.
fn entries(dir: &Path) -> Vec<(Option<String>, String)> {
    let o = ok(&["ls", "--json", s(dir)]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("ls --json");
    v.as_array()
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

/// `fsck --json DIR`: exit code and the (kind, digest) of every finding.
fn fsck(dir: &Path) -> (Option<i32>, Vec<(String, Value)>, Value) {
    let o = oc(&["fsck", "--json", s(dir)]);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("fsck --json output: {e}: {}", how(&o)));
    let kinds = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().expect("kind").to_string(),
                f["digest"].clone(),
            )
        })
        .collect();
    (o.status.code(), kinds, v)
}

/// fsck exits 0 and reports no error.
fn fsck_clean(dir: &Path) {
    let (code, _, report) = fsck(dir);
    assert_eq!(code, Some(0), "fsck {}: {report:#}", dir.display());
    assert_eq!(report["errors"], json!(0), "{report:#}");
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Every file under `dir` with its bytes (a destination that must not change).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if e.file_type().expect("type").is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("under dir").to_path_buf();
                out.insert(rel, fs::read(&p).expect("read"));
            }
        }
    }
    out
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A chain of `levels` indexes above one linux/amd64 image, tagged `deep`; returns the source
/// layout.
fn nested(levels: usize) -> Lay {
    let lay = Lay::new();
    let (mut d, _) = platform_image(&lay, "amd64");
    for _ in 0..levels {
        let ix = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [d]});
        d = put_doc(&lay, OCI_INDEX, &ix).0;
    }
    lay.set_index(&[named(&d, "deep")]);
    lay
}

/// The same bytes from every verb, or a failure that shows each verb's bytes.
fn assert_same(what: &str, got: &[(&str, Vec<u8>)]) {
    let first = &got[0].1;
    if got.iter().all(|(_, b)| b == first) {
        return;
    }
    let mut msg = format!("{what} differs between verbs:\n");
    for (verb, b) in got {
        msg.push_str(&format!("  {verb}: {}\n", String::from_utf8_lossy(b)));
    }
    panic!("{msg}");
}

// ---- 1. a `data` field on a filtered index ----

/// `app:1` -> a linux/amd64 + linux/arm64 index. index.json's entry embeds the index's bytes in
/// `data`, and the index's amd64 entry embeds the amd64 manifest's bytes. Returns the layout,
/// the amd64 entry as written and the index.json entry.
fn data_source() -> (Lay, Value, Value) {
    let lay = Lay::new();
    let (mut amd, amd_bytes) = platform_image(&lay, "amd64");
    amd["data"] = json!(b64(&amd_bytes));
    let (arm, _) = platform_image(&lay, "arm64");
    let ix = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd, arm],
        "annotations": {"org.opencontainers.image.source": "https://example.invalid/app"}});
    let (mut root, ix_bytes) = put_doc(&lay, OCI_INDEX, &ix);
    root["data"] = json!(b64(&ix_bytes));
    let root = named(&root, "app:1");
    lay.set_index(std::slice::from_ref(&root));
    // The source is consistent: both `data` fields match their blobs.
    fsck_clean(&lay.root);
    (lay, amd, root)
}

/// `dst` holds `app:1` filtered to amd64: a new index whose one entry is the amd64 entry as
/// written (its `data` still matches), annotations kept.
fn assert_filtered_to_amd64(dst: &Path, amd: &Value, root: &Value) {
    let got = entries(dst);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0.as_deref(), Some("app:1"));
    assert_ne!(
        got[0].1,
        root["digest"].as_str().expect("digest"),
        "filtered"
    );
    let filtered: Value =
        serde_json::from_slice(&ok(&["cat", s(dst), "app:1"]).stdout).expect("index");
    assert_eq!(filtered["manifests"], json!([amd]));
    assert_eq!(
        filtered["annotations"],
        json!({"org.opencontainers.image.source": "https://example.invalid/app"})
    );
}

/// Drift: `copy --platform` filters the multi-platform index into a new document but kept the
/// index.json entry's `data` (the unfiltered index's bytes), so the copy failed `fsck` with
/// `data-mismatch`. The `data` of the kept amd64 entry inside the index stays valid and is kept.
#[test]
fn data_field_copy_platform_gives_a_clean_layout() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (src, amd, root) = data_source();
    let dst = tmp.path().join("dst");
    ok(&["copy", "--platform", "linux/amd64", src.path(), s(&dst)]);
    fsck_clean(&dst);
    assert_filtered_to_amd64(&dst, &amd, &root);
}

/// Drift: the same stale `data` through `bundle --platform`, once the bundle is loaded with
/// `import`; the loaded layout must also agree with `copy --platform`.
#[test]
fn data_field_bundle_platform_gives_a_clean_layout() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (src, amd, root) = data_source();
    let out = tmp.path().join("b.tar");
    ok(&[
        "bundle",
        "--platform",
        "linux/amd64",
        src.path(),
        "-o",
        s(&out),
    ]);
    let dst = tmp.path().join("dst");
    ok(&["import", s(&out), s(&dst)]);
    fsck_clean(&dst);
    assert_filtered_to_amd64(&dst, &amd, &root);
    let copied = tmp.path().join("copied");
    ok(&["copy", "--platform", "linux/amd64", src.path(), s(&copied)]);
    assert_same(
        "index.json",
        &[
            (
                "bundle load",
                fs::read(dst.join("index.json")).expect("read"),
            ),
            ("copy", fs::read(copied.join("index.json")).expect("read")),
        ],
    );
}

// ---- 2. a referrer whose subject is absent ----

/// `app:1` (an image) and `sig` (a referrer whose `subject` is in no blob of the layout).
/// Returns the layout, its entries as `ls` shows them, and the absent subject's digest.
fn absent_subject_source() -> (Lay, Vec<(Option<String>, String)>, String) {
    let lay = Lay::new();
    let app = lay.image("app");
    let empty = lay.desc("application/vnd.oci.empty.v1+json", b"{}");
    let sig = lay.desc("application/vnd.example.sig.v1", b"signature bytes");
    let absent = b"the subject manifest, kept in another layout";
    let referrer = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": empty, "layers": [sig],
        "subject": {"mediaType": OCI_MANIFEST, "digest": sha256(absent), "size": absent.len()}});
    let (referrer, _) = put_doc(&lay, OCI_MANIFEST, &referrer);
    lay.set_index(&[named(&app, "app:1"), named(&referrer, "sig")]);
    let digest = |v: &Value| v["digest"].as_str().expect("digest").to_string();
    let want = vec![
        (Some("app:1".to_string()), digest(&app)),
        (Some("sig".to_string()), digest(&referrer)),
    ];
    assert_eq!(blob_set(&lay.root).len(), 6);
    (lay, want, sha256(absent))
}

/// Drift baseline: `fsck` notes the absent subject (`missing-subject`, exit 0) and `copy`
/// carries the referrer without it (exit 0). The import and export tests hold the other verbs
/// to this.
#[test]
fn absent_subject_fsck_notes_it_and_copy_carries_the_referrer() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (src, want, absent) = absent_subject_source();
    let (code, kinds, report) = fsck(&src.root);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(
        kinds,
        vec![("missing-subject".to_string(), json!(absent))],
        "{report:#}"
    );
    let copied = tmp.path().join("copied");
    ok(&["copy", src.path(), s(&copied)]);
    assert_eq!(entries(&copied), want);
    assert_eq!(blob_set(&copied), blob_set(&src.root));
    fsck_clean(&copied);
}

/// Drift: `import` of a layout directory walked `subject` as a required child and failed with
/// "blob ... is missing" where `copy` succeeds. It must carry the referrer (exit 0).
#[test]
fn absent_subject_layout_import_carries_the_referrer() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (src, want, _) = absent_subject_source();
    let imported = tmp.path().join("imported");
    ok(&["import", src.path(), s(&imported)]);
    assert_eq!(entries(&imported), want);
    assert_eq!(blob_set(&imported), blob_set(&src.root));
    fsck_clean(&imported);
}

/// Drift: `export --format oci-archive` failed the same way ("blob ... is missing"). It must
/// write the archive (exit 0), and the archive must import back to the same entries and blobs.
#[test]
fn absent_subject_oci_archive_export_carries_the_referrer() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (src, want, _) = absent_subject_source();
    let archive = tmp.path().join("a.tar");
    ok(&[
        "export",
        src.path(),
        "--format",
        "oci-archive",
        "-o",
        s(&archive),
    ]);
    let back = tmp.path().join("back");
    ok(&["import", s(&archive), s(&back)]);
    assert_eq!(entries(&back), want);
    assert_eq!(blob_set(&back), blob_set(&src.root));
    fsck_clean(&back);
}

/// A bundle of a referrer whose subject is absent: version 1 of `bundle.json` listed the
/// subject among the ref's blobs, so the load left the ref waiting for a blob no part carries.
/// It must commit the referrer (exit 0).
#[test]
fn absent_subject_bundle_load_commits_the_referrer() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (src, want, _) = absent_subject_source();
    let out = tmp.path().join("b.tar");
    ok(&["bundle", src.path(), "-o", s(&out)]);
    let far = tmp.path().join("far");
    ok(&["import", s(&out), s(&far)]);
    assert_eq!(entries(&far), want);
    assert_eq!(blob_set(&far), blob_set(&src.root));
    fsck_clean(&far);
}

// ---- 3. nesting past the depth cap ----

/// 70 nested indexes above an image, tagged `deep`; `fsck` reports the one index past the
/// 64-level cap as `too-deep`. Returns the layout and that index's digest.
fn too_deep_source() -> (Lay, String) {
    let lay = nested(70);
    let (code, kinds, report) = fsck(&lay.root);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["errors"], json!(1), "{report:#}");
    assert_eq!(kinds.len(), 1, "{report:#}");
    let f = &report["findings"][0];
    assert_eq!(f["kind"], "too-deep", "{report:#}");
    assert_eq!(f["detail"], "nested more than 64 levels deep: not followed");
    let digest = f["digest"].as_str().expect("digest").to_string();
    (lay, digest)
}

/// Exit 2, an error that names `digest` (the index fsck reports) and says it is too deep.
fn assert_refused_too_deep(o: &Output, verb: &str, digest: &str) {
    assert_eq!(o.status.code(), Some(2), "{verb}: {}", how(o));
    let e = stderr(o);
    assert!(e.starts_with("ocikit: error: "), "{verb}: {e}");
    assert!(e.contains(digest), "{verb} names `{digest}`: {e}");
    assert!(e.contains("deep"), "{verb} says it is too deep: {e}");
}

/// Baseline for the three tests below: the exact finding `fsck` gives (fsck already walked
/// this way before the fix).
#[test]
fn too_deep_fsck_reports_the_index_past_the_cap() {
    let (lay, digest) = too_deep_source();
    // The chain's 65th index below index.json (the 6th from the bottom of 70) is the one not
    // followed.
    let mut d = platform_image(&lay, "amd64").0;
    let mut chain = Vec::new();
    for _ in 0..70 {
        let ix = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [d]});
        d = put_doc(&lay, OCI_INDEX, &ix).0;
        chain.push(d["digest"].as_str().expect("digest").to_string());
    }
    assert_eq!(chain.last(), Some(&entries(&lay.root)[0].1));
    assert_eq!(digest, chain[70 - 65], "{chain:#?}");
}

/// Drift: `copy` stopped at the cap without a word and exited 0 with part of the blobs. It
/// must exit 2 naming the index and leave the destination as it was (an existing one
/// unchanged, a new one not created).
#[test]
fn too_deep_copy_fails_and_leaves_the_destination() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (src, digest) = too_deep_source();
    let dst = Lay::new();
    let keep = dst.image("keep");
    dst.set_index(&[named(&keep, "keep")]);
    let before = snapshot(&dst.root);
    assert_refused_too_deep(&oc(&["copy", src.path(), dst.path()]), "copy", &digest);
    assert_eq!(snapshot(&dst.root), before, "the destination is as it was");
    let fresh = tmp.path().join("fresh");
    assert_refused_too_deep(&oc(&["copy", src.path(), s(&fresh)]), "copy", &digest);
    assert!(!fresh.exists(), "a failed copy leaves no new destination");
}

/// Drift: `bundle` wrote a bundle of the first 65 levels and exited 0. It must exit 2 naming
/// the index and write no part.
#[test]
fn too_deep_bundle_fails_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (src, digest) = too_deep_source();
    let out = tmp.path().join("b.tar");
    assert_refused_too_deep(
        &oc(&["bundle", src.path(), "-o", s(&out)]),
        "bundle",
        &digest,
    );
    assert_eq!(names(tmp.path()), Vec::<String>::new(), "no bundle part");
}

/// Drift: `export --format oci-archive` wrote an archive of the first 65 levels and exited 0.
/// It must exit 2 naming the index and write no archive.
#[test]
fn too_deep_export_fails_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (src, digest) = too_deep_source();
    let out = tmp.path().join("a.tar");
    let o = oc(&[
        "export",
        src.path(),
        "--format",
        "oci-archive",
        "-o",
        s(&out),
    ]);
    assert_refused_too_deep(&o, "export", &digest);
    assert_eq!(names(tmp.path()), Vec::<String>::new(), "no archive");
}

// ---- 4. nesting deep enough to overflow a recursive walk ----

/// Exit 2 (not a signal) with an error saying the nesting is too deep.
fn assert_error_not_crash(o: &Output, verb: &str) {
    assert_eq!(o.status.signal(), None, "{verb} crashed: {}", how(o));
    assert_eq!(o.status.code(), Some(2), "{verb}: {}", how(o));
    let e = stderr(o);
    assert!(e.starts_with("ocikit: error: "), "{verb}: {e}");
    assert!(e.contains("deep"), "{verb} says it is too deep: {e}");
}

/// Drift: `fsck`, `gc` and `inspect` walk iteratively with a depth cap, but the platform filter
/// of `copy --platform` recursed without one: 2,000 nested indexes overflowed its stack
/// (SIGABRT, "has overflowed its stack"). It must exit 2 and create nothing.
#[test]
fn nested_2000_copy_platform_is_an_error_not_a_crash() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = nested(2000);
    let dst = tmp.path().join("dst");
    let o = oc(&["copy", "--platform", "linux/amd64", src.path(), s(&dst)]);
    assert_error_not_crash(&o, "copy --platform");
    assert!(!dst.exists(), "a failed copy leaves no new destination");
}

/// Drift: `bundle --platform` shares the selection of `copy --platform`: the same 2,000 levels
/// must be an exit 2, with no part written.
#[test]
fn nested_2000_bundle_platform_is_an_error_not_a_crash() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = nested(2000);
    let out = tmp.path().join("b.tar");
    let o = oc(&[
        "bundle",
        "--platform",
        "linux/amd64",
        src.path(),
        "-o",
        s(&out),
    ]);
    assert_error_not_crash(&o, "bundle --platform");
    assert_eq!(names(tmp.path()), Vec::<String>::new(), "no bundle part");
}

/// Drift: the bottom-up rewrite of `convert` recursed without a cap: 2,000 nested indexes
/// overflowed its stack. It must exit 2 and write nothing (index.json unchanged).
#[test]
fn nested_2000_convert_is_an_error_not_a_crash() {
    let src = nested(2000);
    let before = src.index_bytes();
    let o = oc(&["convert", src.path(), "--to", "docker"]);
    assert_error_not_crash(&o, "convert --to docker");
    assert_eq!(src.index_bytes(), before, "convert wrote nothing");
}

// ---- 5. and 6. index.json written by copy, import and bundle load ----

/// A layout with two tags (a full name with `io.containerd.image.name` and a creation date, and
/// a short one) and one untagged entry; returns the entries as written.
fn three_entries(lay: &Lay) -> Vec<Value> {
    let full = lay.image("full");
    let short = lay.image("short");
    let untagged = lay.image("untagged");
    let mut full = named(&full, "example.com/app:1");
    full["annotations"]["org.opencontainers.image.created"] = json!("2024-01-02T03:04:05Z");
    full["annotations"]["io.containerd.image.name"] = json!("example.com/app:1");
    vec![full, named(&short, "v1"), untagged]
}

/// Drift: `import` of a layout directory, `copy`, and a single-part bundle loaded by `import`
/// each wrote index.json with their own code; `import` added `io.containerd.image.name`
/// (`docker.io/library/v1:latest` for the OCI tag `v1`) where the others keep entries as
/// written. Into an empty destination all three must give the same index.json, byte for
/// byte, with every entry as the source wrote it, and the same blobs.
#[test]
fn import_copy_and_bundle_write_the_same_layout() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = Lay::new();
    let want = three_entries(&src);
    src.set_index(&want);

    let d1 = tmp.path().join("imported");
    ok(&["import", src.path(), s(&d1)]);
    let d2 = tmp.path().join("copied");
    ok(&["copy", src.path(), s(&d2)]);
    let out = tmp.path().join("b.tar");
    ok(&["bundle", src.path(), "-o", s(&out)]);
    let d3 = tmp.path().join("loaded");
    ok(&["import", s(&out), s(&d3)]);

    let blobs = blob_set(&src.root);
    assert_eq!(blobs.len(), 9);
    for (verb, d) in [("import", &d1), ("copy", &d2), ("bundle load", &d3)] {
        assert_eq!(blob_set(d), blobs, "{verb}");
        fsck_clean(d);
    }
    let read = |d: &Path| fs::read(d.join("index.json")).expect("index.json");
    assert_same(
        "index.json",
        &[
            ("import", read(&d1)),
            ("copy", read(&d2)),
            ("bundle load", read(&d3)),
        ],
    );
    let v: Value = serde_json::from_slice(&read(&d2)).expect("index.json");
    assert_eq!(
        v["manifests"],
        json!(want),
        "every entry as written, in order"
    );
}

/// Drift: merging into an existing layout, `copy`, `import` and loading a bundle disagreed on
/// index.json. From a destination with `v1` on another image and the source's untagged entry,
/// all three must give the same bytes: `v1` moved (in place) to the source's image, the shared
/// untagged entry once, the new ref appended.
#[test]
fn merge_into_an_existing_layout_gives_the_same_index() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = Lay::new();
    let sources = three_entries(&src);
    src.set_index(&sources);
    let dest = || {
        let d = Lay::new();
        let other = d.image("other");
        let again = d.image("untagged");
        assert_eq!(again, sources[2]);
        d.set_index(&[named(&other, "v1"), again]);
        d
    };

    let d1 = dest();
    ok(&["copy", src.path(), d1.path()]);
    let d2 = dest();
    ok(&["import", src.path(), d2.path()]);
    let d3 = dest();
    let out = tmp.path().join("b.tar");
    ok(&["bundle", src.path(), "-o", s(&out)]);
    ok(&["import", s(&out), d3.path()]);

    for (verb, d) in [("copy", &d1), ("import", &d2), ("bundle load", &d3)] {
        fsck_clean(&d.root);
        assert_eq!(blob_set(&d.root).len(), 12, "{verb}");
    }
    assert_same(
        "index.json",
        &[
            ("copy", d1.index_bytes()),
            ("import", d2.index_bytes()),
            ("bundle load", d3.index_bytes()),
        ],
    );
    let v: Value = serde_json::from_slice(&d1.index_bytes()).expect("index.json");
    assert_eq!(
        v["manifests"],
        json!([sources[1], sources[2], sources[0]]),
        "v1 moved in place, the untagged entry once, the new ref appended"
    );
}

/// Drift: an untagged source entry whose image the destination already has under a ref.
/// `import` and a bundle load dropped it (they looked for any entry of the digest), `copy`
/// appended it (it looks for an untagged twin only). The one rule: an untagged entry is
/// appended unless an untagged entry of the same digest is there, so the copied entry survives
/// a later `untag keep` instead of leaving its content to `gc`. (The source's other ref already
/// carries `io.containerd.image.name`, so only this rule is compared.)
#[test]
fn merge_keeps_an_untagged_entry_the_destination_has_tagged() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = Lay::new();
    let sources = three_entries(&src);
    let (full, untagged) = (sources[0].clone(), sources[2].clone());
    src.set_index(&[full.clone(), untagged.clone()]);
    let dest = || {
        let d = Lay::new();
        assert_eq!(d.image("untagged"), untagged);
        d.set_index(&[named(&untagged, "keep")]);
        d
    };

    let d1 = dest();
    ok(&["copy", src.path(), d1.path()]);
    let d2 = dest();
    ok(&["import", src.path(), d2.path()]);
    let d3 = dest();
    let out = tmp.path().join("b.tar");
    ok(&["bundle", src.path(), "-o", s(&out)]);
    ok(&["import", s(&out), d3.path()]);

    for d in [&d1, &d2, &d3] {
        fsck_clean(&d.root);
    }
    assert_same(
        "index.json",
        &[
            ("copy", d1.index_bytes()),
            ("import", d2.index_bytes()),
            ("bundle load", d3.index_bytes()),
        ],
    );
    let v: Value = serde_json::from_slice(&d1.index_bytes()).expect("index.json");
    assert_eq!(
        v["manifests"],
        json!([named(&untagged, "keep"), full, untagged]),
        "the new ref appended, then the untagged entry"
    );
}

// ---- 7. a huge GNU long-name header ----

/// A tar that starts with a GNU long-name header (`././@LongLink`, typeflag `L`) declaring
/// 1.5 GiB of name; returns the header bytes and the declared size.
fn long_name_header() -> (Vec<u8>, u64) {
    let size: u64 = 1_610_612_736;
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().expect("gnu").name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_size(size);
    h.set_cksum();
    (h.as_bytes().to_vec(), size)
}

/// `import FILE DST` with 1 GiB of address space: exit 2 within 5 s and 64 MiB of resident
/// memory, refusing the header by its declared size, and DST not created.
fn assert_long_name_refused(file: &Path, size: u64) {
    let dst = file.with_file_name("dst");
    let started = Instant::now();
    let (o, peak_kib) = run_capped_peak(&["--no-fsync", "import", s(file), s(&dst)]);
    let took = started.elapsed();
    assert_eq!(o.status.signal(), None, "import crashed: {}", how(&o));
    assert_eq!(o.status.code(), Some(2), "import: {}", how(&o));
    let want = format!(
        "member `././@LongLink`: an extension header (long name or PAX records) of {size} bytes, over the 1048576-byte limit"
    );
    assert!(stderr(&o).contains(&want), "{}", how(&o));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        peak_kib < 64 * 1024,
        "import read the header's data: peak resident set {peak_kib} KiB, in {took:?}"
    );
    assert!(!dst.exists(), "a failed import leaves no new destination");
}

/// Drift guard, truncated variant: the header declares 1.5 GiB and the file ends 4 KiB later.
/// (The sniffing's tar reader stops at the end of such a file, so this variant never cost
/// much; the sparse variant below is the one that read ~0.5 GiB into memory.)
#[test]
fn huge_long_name_header_in_a_truncated_tar_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (mut bytes, size) = long_name_header();
    bytes.extend(std::iter::repeat_n(b'a', 4096));
    let file = tmp.path().join("evil.tar");
    fs::write(&file, &bytes).expect("write");
    assert_long_name_refused(&file, size);
}

/// Drift: `import` sniffs for a bundle part (first member `bundle.json`) with a plain tar
/// reader before the archive guard that refuses oversized extension headers, and the tar reader
/// reads a long name whole into memory. Here the 1.5 GiB is there (a sparse file): the sniffing
/// must not read it; the guard refuses it from its header.
#[test]
fn huge_long_name_header_is_refused_before_the_bundle_sniffing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (bytes, size) = long_name_header();
    let file = tmp.path().join("evil.tar");
    fs::write(&file, &bytes).expect("write");
    let f = fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open");
    f.set_len(512 + size + 1024).expect("set_len");
    drop(f);
    assert_long_name_refused(&file, size);
}

/// Bundles written before `bundle.json` version 2 list every blob of every ref in
/// `refs[].blobs` and have no `graph`; loading still reads them.
#[test]
fn a_version_1_bundle_still_loads() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = Lay::new();
    let img = src.image("a");
    src.set_index(&[named(&img, "a")]);
    let mut blobs: Vec<(String, Vec<u8>)> = fs::read_dir(src.root.join("blobs/sha256"))
        .expect("ls")
        .map(|e| {
            let e = e.expect("entry");
            (
                format!("sha256:{}", e.file_name().to_string_lossy()),
                fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    blobs.sort();
    let manifest = json!({
        "ocikitBundle": 1,
        "parts": 1,
        "partSize": null,
        "inventories": [],
        "refs": [{
            "name": "a",
            "descriptor": named(&img, "a"),
            "blobs": blobs.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
        }],
        "blobs": blobs
            .iter()
            .map(|(d, b)| json!({"digest": d, "size": b.len(), "part": 1}))
            .collect::<Vec<_>>(),
        "assumed": [],
    });
    let index = json!({"schemaVersion": 2, "manifests": [named(&img, "a")]});
    let part = tmp.path().join("v1.tar");
    write_part(&part, &manifest, &index, &blobs);

    let far = tmp.path().join("far");
    ok(&["import", s(&part), s(&far)]);
    assert_eq!(entries(&far), entries(&src.root));
    assert_eq!(blob_set(&far), blob_set(&src.root));
    fsck_clean(&far);
}

/// `copy --referrers app:1` finds the referrers of `app:1` anywhere in the layout; a broken
/// image under another ref (its manifest missing) must not stop it: only what is copied has to
/// be readable.
#[test]
fn referrers_of_one_ref_copy_past_a_broken_other_ref() {
    let tmp = tempfile::tempdir().expect("tmp");
    let lay = Lay::new();
    let app = lay.image("app");
    let empty = lay.desc("application/vnd.oci.empty.v1+json", b"{}");
    let sig = lay.desc("application/vnd.example.sig.v1", b"signature bytes");
    let referrer = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": empty, "layers": [sig],
        "subject": {"mediaType": OCI_MANIFEST, "digest": app["digest"], "size": app["size"]}});
    let (referrer, _) = put_doc(&lay, OCI_MANIFEST, &referrer);
    let broken = b"a manifest that is not in the layout";
    let broken = json!({"mediaType": OCI_MANIFEST, "digest": sha256(broken), "size": broken.len()});
    lay.set_index(&[
        named(&app, "app:1"),
        referrer.clone(),
        named(&broken, "broken"),
    ]);
    let dst = tmp.path().join("dst");
    ok(&["copy", "--referrers", lay.path(), s(&dst), "app:1"]);
    let digest = |v: &Value| v["digest"].as_str().expect("digest").to_string();
    assert_eq!(
        entries(&dst),
        vec![
            (Some("app:1".to_string()), digest(&app)),
            (None, digest(&referrer)),
        ]
    );
    fsck_clean(&dst);
}

/// A single bundle part written by hand: `bundle.json`, `oci-layout`, `index.json`, then the
/// blobs, in plain ustar entries.
fn write_part(path: &Path, manifest: &Value, index: &Value, blobs: &[(String, Vec<u8>)]) {
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "bundle.json".into(),
            serde_json::to_vec(manifest).expect("json"),
        ),
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        (
            "index.json".into(),
            serde_json::to_vec(index).expect("json"),
        ),
    ];
    for (d, b) in blobs {
        files.push((format!("blobs/sha256/{}", &d[7..]), b.clone()));
    }
    let mut t = tar::Builder::new(Vec::new());
    for (name, data) in &files {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).expect("path");
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        t.append(&h, data.as_slice()).expect("append");
    }
    fs::write(path, t.into_inner().expect("tar")).expect("write part");
}

/// A `bundle.json` that leaves a layer out of its graph (and the part without it) must not get
/// the ref committed: the loader checks the ref's verified manifest in the layout, not the
/// bundle's word. It used to commit a ref that fsck then found broken.
#[test]
fn a_bundle_that_leaves_a_layer_out_commits_nothing_broken() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = Lay::new();
    let img = src.image("a");
    let manifest_bytes =
        fs::read(src.blob_path(img["digest"].as_str().expect("digest"))).expect("manifest");
    let m: Value = serde_json::from_slice(&manifest_bytes).expect("manifest json");
    let config_digest = m["config"]["digest"].as_str().expect("config").to_string();
    let config = fs::read(src.blob_path(&config_digest)).expect("config");
    let carried = vec![
        (
            img["digest"].as_str().expect("digest").to_string(),
            manifest_bytes,
        ),
        (config_digest.clone(), config),
    ];
    let bundle = json!({
        "ocikitBundle": 2,
        "parts": 1,
        "partSize": null,
        "inventories": [],
        "refs": [{"name": "a", "descriptor": named(&img, "a"), "root": 0}],
        "graph": [{"digest": carried[0].0, "children": [1]}, {"digest": config_digest}],
        "blobs": carried
            .iter()
            .map(|(d, b)| json!({"digest": d, "size": b.len(), "part": 1}))
            .collect::<Vec<_>>(),
        "assumed": [],
    });
    let index = json!({"schemaVersion": 2, "manifests": [named(&img, "a")]});
    let part = tmp.path().join("liar.tar");
    write_part(&part, &bundle, &index, &carried);
    let far = tmp.path().join("far");
    let o = oc(&["import", s(&part), s(&far)]);
    // No part will ever bring the layer: a problem with the bundle (exit 1), not a wait.
    assert_eq!(o.status.code(), Some(1), "{}", how(&o));
    let layer = m["layers"][0]["digest"].as_str().expect("layer");
    assert_eq!(
        stderr(&o).lines().last(),
        Some(
            format!(
                "ocikit: error: `a` needs 1 blob(s) that no part of the bundle carries: `{layer}`"
            )
            .as_str()
        ),
        "{}",
        how(&o)
    );
    assert_eq!(entries(&far), vec![], "no ref committed");
}

/// `import A B DIR` where both sources tag a different image `app:v1`: both were reported
/// imported and the last won. It is an error naming both sources (exit 2), and a new DIR is
/// not created; the same image under the same ref twice is fine.
#[test]
fn two_images_claiming_one_ref_in_one_import_is_an_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = Lay::new();
    let img_a = a.image("one");
    a.set_index(&[named(&img_a, "app:v1")]);
    let b = Lay::new();
    let img_b = b.image("two");
    b.set_index(&[named(&img_b, "app:v1")]);
    let dst = tmp.path().join("dst");
    let o = oc(&["import", a.path(), b.path(), s(&dst)]);
    assert_eq!(o.status.code(), Some(2), "{}", how(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "ocikit: error: ref `app:v1` names two different images in this import: `{}` from `{}` and `{}` from `{}`\n",
            img_a["digest"].as_str().expect("digest"),
            a.path(),
            img_b["digest"].as_str().expect("digest"),
            b.path()
        )
    );
    assert!(!dst.exists(), "nothing created");
    // The same image from two sources is one image.
    let a2 = tmp.path().join("a2");
    ok(&["copy", a.path(), s(&a2)]);
    ok(&["import", a.path(), s(&a2), s(&dst)]);
    assert_eq!(
        entries(&dst),
        vec![(
            Some("app:v1".to_string()),
            img_a["digest"].as_str().expect("digest").to_string()
        )]
    );
}

/// Outputs used to be written beside their path and renamed over it, whatever it was:
/// `export -o /dev/null` replaced the device node by a regular file. A target that is not a
/// regular file is written into as a stream; a symbolic link keeps being a link (the file it
/// names is replaced); and an output inside the layout being read is refused, leaving the
/// layout as it was (`export L -o L/index.json` destroyed its own source).
#[test]
fn outputs_respect_what_is_at_their_path() {
    use std::os::unix::fs::FileTypeExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let lay = Lay::new();
    let img = lay.image("x");
    lay.set_index(&[named(&img, "app:1")]);

    // A device node (a private null device in the temp dir; it takes root to make one).
    let file = tmp.path().join("file.tar");
    ok(&[
        "export",
        lay.path(),
        "--format",
        "oci-archive",
        "-o",
        s(&file),
    ]);
    let null = tmp.path().join("null");
    let made = std::process::Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success());
    if made {
        ok(&[
            "export",
            lay.path(),
            "--format",
            "oci-archive",
            "-o",
            s(&null),
        ]);
        let ty = fs::symlink_metadata(&null).expect("stat").file_type();
        assert!(ty.is_char_device(), "the device node is still one");
    } else {
        eprintln!("skipped the device-node case: mknod needs root");
    }

    // A symbolic link to a file: the link stays, the file it names gets the archive.
    let target = tmp.path().join("target.tar");
    fs::write(&target, b"old").expect("write");
    let link = tmp.path().join("link.tar");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    ok(&[
        "export",
        lay.path(),
        "--format",
        "oci-archive",
        "-o",
        s(&link),
    ]);
    assert!(fs::symlink_metadata(&link)
        .expect("stat")
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::read(&target).expect("read"),
        fs::read(&file).expect("read")
    );

    // Inside the source layout: refused, the layout untouched.
    let before = lay.index_bytes();
    let inside = lay.root.join("index.json");
    for args in [
        vec!["export", lay.path(), "-o", s(&inside)],
        vec!["bundle", lay.path(), "-o", s(&inside)],
        vec!["inventory", lay.path(), "-o", s(&inside)],
    ] {
        let o = oc(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", how(&o));
        assert!(
            stderr(&o).contains(&format!(
                "is inside the layout `{}` this command reads; write it elsewhere",
                fs::canonicalize(&lay.root).expect("canonical").display()
            )),
            "{args:?}: {}",
            how(&o)
        );
        assert_eq!(lay.index_bytes(), before, "{args:?}");
    }
}
