//! `--no-fsync` really skips every fsync, and the default really syncs: each writing verb runs
//! under `strace` (installed by `.ci/run`), once durable and once with `--no-fsync`, and the
//! fsync/fdatasync calls are counted. The durable counts are exact, so a broken trace cannot
//! pass for "no fsync".

mod craft;

use std::path::Path;
use std::process::Command;

use craft::*;

/// Run `ocikit args` under strace; returns the number of fsync and fdatasync calls.
fn syncs(args: &[&str]) -> usize {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("trace");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=fsync,fdatasync,syncfs,sync", "-o"])
        .arg(&trace)
        .arg(assert_cmd::cargo::cargo_bin("ocikit"))
        .args(args)
        .env_remove("OCIKIT_FAULT_POINT")
        .output()
        .expect("strace must be installed (apt-get install strace; .ci/run does)");
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    let text = std::fs::read_to_string(&trace).expect("trace");
    text.lines()
        .filter(|l| {
            ["fsync(", "fdatasync(", "syncfs(", "sync("]
                .iter()
                .any(|c| l.contains(c))
        })
        .count()
}

fn layout_with_garbage() -> Lay {
    let lay = Lay::new();
    let a = lay.image("a");
    lay.set_index(&[named(&a, "a")]);
    lay.put(b"garbage");
    lay
}

#[test]
fn tag_untag_and_gc_sync_unless_told_not_to() {
    // tag: blobs/sha256/ (so blobs are durable before the index names them), the temp
    // index.json, then the layout directory after the rename.
    let lay = layout_with_garbage();
    assert_eq!(syncs(&["tag", lay.path(), "a", "b"]), 3);
    assert_eq!(syncs(&["--no-fsync", "tag", lay.path(), "a", "c"]), 0);
    // untag: the same three.
    assert_eq!(syncs(&["untag", lay.path(), "b"]), 3);
    assert_eq!(syncs(&["--no-fsync", "untag", lay.path(), "c"]), 0);
    // gc: the directory it deleted from.
    assert_eq!(syncs(&["gc", lay.path()]), 1);
    lay.put(b"more garbage");
    assert_eq!(syncs(&["--no-fsync", "gc", lay.path()]), 0);
    assert!(!lay.blob_path(&sha256(b"more garbage")).exists());
}

#[test]
fn init_syncs_unless_told_not_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n).to_str().expect("utf-8").to_string();
    // index.json and oci-layout: each file, then the directory after its rename.
    assert_eq!(syncs(&["init", &p("a")]), 4);
    assert_eq!(syncs(&["--no-fsync", "init", &p("b")]), 0);
    assert!(Path::new(&p("b")).join("oci-layout").exists());
}

#[test]
fn blobs_a_durable_run_reuses_are_synced_even_if_first_written_without() {
    let archive =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/docker/ggcr-test_image_1.tar");
    let archive = archive.to_str().expect("utf-8");
    let dir = tempfile::tempdir().expect("tempdir");
    let l = dir.path().join("l");
    let l = l.to_str().expect("utf-8");
    assert_eq!(syncs(&["--no-fsync", "-q", "import", archive, l]), 0);
    // The same import, durable: its config, layer and manifest are already there (maybe only in
    // the page cache), so each is synced before index.json names them: 3, then blobs/sha256/,
    // the temp index.json and the layout directory.
    assert_eq!(syncs(&["-q", "import", archive, l]), 6);
}

#[test]
fn export_bundle_and_inventory_files_sync_unless_told_not_to() {
    let lay = layout_with_garbage();
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n).to_str().expect("utf-8").to_string();
    // Each output file: the file, then its directory after the rename.
    assert_eq!(
        syncs(&[
            "-q",
            "export",
            lay.path(),
            "a",
            "--format",
            "oci-archive",
            "-o",
            &p("a.tar")
        ]),
        2
    );
    assert_eq!(
        syncs(&[
            "--no-fsync",
            "-q",
            "export",
            lay.path(),
            "a",
            "--format",
            "oci-archive",
            "-o",
            &p("b.tar")
        ]),
        0
    );
    assert_eq!(syncs(&["-q", "bundle", lay.path(), "-o", &p("c.tar")]), 2);
    assert_eq!(
        syncs(&["--no-fsync", "-q", "bundle", lay.path(), "-o", &p("d.tar")]),
        0
    );
    assert_eq!(
        syncs(&["-q", "inventory", lay.path(), "-o", &p("e.json")]),
        2
    );
    assert_eq!(
        syncs(&[
            "--no-fsync",
            "-q",
            "inventory",
            lay.path(),
            "-o",
            &p("f.json")
        ]),
        0
    );
    assert_eq!(
        std::fs::read(p("a.tar")).expect("a"),
        std::fs::read(p("b.tar")).expect("b")
    );
    assert_eq!(
        std::fs::read(p("c.tar")).expect("c"),
        std::fs::read(p("d.tar")).expect("d")
    );
}
