//! Peak memory on a layout built to explode as a tree: 1,000 refs naming one index of 1,000
//! manifests (3 million paths, 4,002 distinct blobs). Each verb that walks or plans the graph
//! must stay within 64 MiB of resident memory there; they used about 630 MB when the walk was
//! a tree and closures were kept per ref.

mod craft;

use std::path::Path;

use craft::*;
use serde_json::{json, Value};

const REFS: usize = 1000;
const MANIFESTS: usize = 1000;
const LIMIT_KIB: u64 = 64 * 1024;

/// The exploding layout.
fn explode() -> Lay {
    let lay = Lay::new();
    let config = lay.config("shared");
    let manifests: Vec<Value> = (0..MANIFESTS)
        .map(|i| {
            let layer = lay.desc(OCI_LAYER, format!("layer {i}").as_bytes());
            let m = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config,
                "layers": [layer],
            });
            let mut d = lay.desc(OCI_MANIFEST, &serde_json::to_vec(&m).expect("json"));
            d["platform"] =
                json!({"architecture": "amd64", "os": "linux", "variant": format!("v{i}")});
            d
        })
        .collect();
    let ix = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let ix = lay.desc(OCI_INDEX, &serde_json::to_vec(&ix).expect("json"));
    let entries: Vec<Value> = (0..REFS).map(|i| named(&ix, &format!("r{i}"))).collect();
    lay.set_index(&entries);
    lay
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

/// Run and check exit 0 and the peak.
fn bounded(what: &str, args: &[&str]) -> String {
    let (o, peak) = run_capped_peak(args);
    assert_eq!(o.status.code(), Some(0), "{what}: {}", stderr(&o));
    assert!(
        peak <= LIMIT_KIB,
        "{what}: peak resident set {peak} KiB, over {LIMIT_KIB} KiB"
    );
    stdout(&o)
}

#[test]
fn fsck_inspect_ls_and_gc_stay_small() {
    let lay = explode();
    bounded("fsck", &["fsck", lay.path()]);
    bounded("inspect", &["inspect", lay.path(), "r0"]);
    bounded("ls", &["ls", lay.path()]);
    bounded("gc --dry-run", &["gc", "--dry-run", lay.path()]);
}

#[test]
fn copy_stays_small_and_carries_every_blob_once() {
    let lay = explode();
    let tmp = tempfile::tempdir().expect("tmp");
    let dst = tmp.path().join("dst");
    bounded("copy", &["--no-fsync", "copy", lay.path(), s(&dst)]);
    let blobs = std::fs::read_dir(dst.join("blobs/sha256"))
        .expect("ls")
        .count();
    // 1,000 layers, 1,000 manifests, the config, the index.
    assert_eq!(blobs, MANIFESTS * 2 + 2);
    bounded("fsck of the copy", &["fsck", s(&dst)]);
}

#[test]
fn bundle_and_its_load_stay_small() {
    let lay = explode();
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("b.tar");
    bounded(
        "bundle",
        &["--no-fsync", "bundle", lay.path(), "-o", s(&out)],
    );
    // bundle.json names each blob once (a graph), not every blob of every ref.
    let size = std::fs::metadata(&out).expect("stat").len();
    assert!(size < 8 << 20, "bundle of {size} bytes");
    let far = tmp.path().join("far");
    bounded("bundle load", &["--no-fsync", "import", s(&out), s(&far)]);
    let ls = bounded("ls of the loaded layout", &["ls", s(&far)]);
    assert_eq!(
        ls.lines().count(),
        REFS + 1,
        "a header and one line per ref"
    );
}
