//! Unknown fields keep their numbers exactly when ocikit rewrites `index.json` or a document:
//! integers beyond 64 bits, exponents beyond `f64` and spellings `serde_json` would print
//! differently (`1E2`) come back as they were written, through tag, untag, copy and convert.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use serde_json::Value;

const BIG: &str = "123456789012345678901234567890";
const NEG: &str = "-98765432109876543210";
const HUGE_EXP: &str = "1.0e400";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const REF: &str = "org.opencontainers.image.ref.name";

fn sha256(b: &[u8]) -> String {
    ocikit_layout::Digest::sha256(b).to_string()
}

/// The index.json entry text for `digest`/`size` named `name`, with an unknown field.
fn entry(digest: &str, size: usize, name: &str) -> String {
    format!(
        r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{digest}","size":{size},"annotations":{{"{REF}":"{name}"}},"x-e":{NEG}}}"#
    )
}

fn index(entries: &[String]) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}],"x-big":{BIG},"x-exp":{HUGE_EXP}}}"#,
        entries.join(",")
    )
}

/// A layout at `dir` whose `app:1` manifest and index.json carry numbers serde_json changes.
/// Returns the manifest's digest and size.
fn layout_with_numbers(dir: &Path) -> (String, usize) {
    let built = small_image(dir, "app:1");
    let layer = &built.layers[0];
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{},"x-c":1E2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{},"x-l":{BIG}}}],"x-m":{HUGE_EXP}}}"#,
        built.config.0, built.config.1, layer.digest, layer.size
    );
    let digest = sha256(manifest.as_bytes());
    fs::write(
        dir.join("blobs/sha256").join(&digest[7..]),
        manifest.as_bytes(),
    )
    .expect("write manifest");
    let ix = index(&[entry(&digest, manifest.len(), "app:1")]);
    fs::write(dir.join("index.json"), ix).expect("write index.json");
    (digest, manifest.len())
}

fn index_text(dir: &Path) -> String {
    String::from_utf8(fs::read(dir.join("index.json")).expect("read")).expect("utf-8")
}

#[test]
fn tag_and_untag_keep_unknown_numbers_exactly() {
    let tmp = tempdir();
    let l = tmp.path().join("l");
    let (digest, size) = layout_with_numbers(&l);
    let before = index_text(&l);
    let run = ocikit(tmp.path(), &["tag", "l", "app:1", "app:2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        index_text(&l),
        index(&[entry(&digest, size, "app:1"), entry(&digest, size, "app:2")])
    );
    let run = ocikit(tmp.path(), &["untag", "l", "app:2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(index_text(&l), before);
    let run = ocikit(tmp.path(), &["fsck", "l"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

#[test]
fn copy_merges_entries_with_their_unknown_numbers() {
    let tmp = tempdir();
    let l = tmp.path().join("l");
    let (digest, size) = layout_with_numbers(&l);
    let run = ocikit(tmp.path(), &["copy", "l", "d", "app:1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        index_text(&tmp.path().join("d")),
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
            entry(&digest, size, "app:1")
        )
    );
    // The manifest is carried byte for byte.
    let m = fs::read(tmp.path().join("d/blobs/sha256").join(&digest[7..])).expect("manifest");
    assert!(String::from_utf8_lossy(&m).contains(&format!(r#""x-m":{HUGE_EXP}"#)));
}

#[test]
fn convert_rewrites_documents_keeping_unknown_numbers() {
    let tmp = tempdir();
    let l = tmp.path().join("l");
    layout_with_numbers(&l);
    let run = ocikit(tmp.path(), &["convert", "l", "app:1", "--to", "docker"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let ix = index_text(&l);
    assert!(
        ix.ends_with(&format!(
            r#","x-e":{NEG}}}],"x-big":{BIG},"x-exp":{HUGE_EXP}}}"#
        )),
        "{ix}"
    );
    let v: Value = ocikit_layout::json::from_slice(ix.as_bytes()).expect("index.json");
    let d = v["manifests"][0]["digest"].as_str().expect("digest");
    let m = fs::read(l.join("blobs/sha256").join(&d[7..])).expect("manifest");
    let m = String::from_utf8(m).expect("utf-8");
    assert!(
        m.contains("application/vnd.docker.distribution.manifest.v2+json"),
        "{m}"
    );
    for kept in [
        r#""x-c":1E2"#.to_string(),
        format!(r#""x-l":{BIG}"#),
        format!(r#""x-m":{HUGE_EXP}"#),
    ] {
        assert!(m.contains(&kept), "{kept} lost: {m}");
    }
}

#[test]
fn import_of_an_oci_archive_and_a_bundle_load_keep_unknown_numbers() {
    let tmp = tempdir();
    let l = tmp.path().join("l");
    let (digest, size) = layout_with_numbers(&l);
    let want = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entry(&digest, size, "app:1")
    );
    let run = ocikit(
        tmp.path(),
        &[
            "export",
            "l",
            "app:1",
            "--format",
            "oci-archive",
            "-o",
            "a.tar",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = ocikit(tmp.path(), &["import", "a.tar", "from-archive"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(index_text(&tmp.path().join("from-archive")), want);
    let run = ocikit(tmp.path(), &["bundle", "l", "app:1", "-o", "b.tar"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = ocikit(tmp.path(), &["import", "b.tar", "from-bundle"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(index_text(&tmp.path().join("from-bundle")), want);
}
