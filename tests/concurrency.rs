//! Several processes writing one layout at once: `tag`, `untag` and `gc` from the CLI in
//! parallel threads, plus a library writer adding images, plus a reader parsing `index.json`
//! the whole time. No ref may be lost, `index.json` must always parse, and the layout must be
//! clean at the end. Also: a writer that cannot get the lock fails clearly.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use ocikit_layout::{Compression, Layout};

const WRITERS: usize = 4;
const TAGS_PER_WRITER: usize = 12;

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn run_ok(tmp: &std::path::Path, args: &[&str]) {
    let r = ocikit(tmp, args);
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
}

#[test]
fn parallel_tag_untag_gc_lose_nothing() {
    let tmp = tempdir();
    let dir = tmp.path().join("l");
    let base_a = small_image(&dir, "base-a");
    let base_b = add_image(
        &dir,
        "base-b",
        &[LayerSpec::new(&[("b", b"b\n")], Compression::Zstd)],
        None,
    );
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let tmp_path = tmp.path().to_path_buf();

    std::thread::scope(|s| {
        // Reader: index.json is replaced atomically, so every read parses.
        {
            let (done, reads, dir) = (done.clone(), reads.clone(), dir.clone());
            s.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let bytes = std::fs::read(dir.join("index.json")).expect("index.json exists");
                    let v: serde_json::Value = serde_json::from_slice(&bytes)
                        .unwrap_or_else(|e| panic!("index.json does not parse ({e}): {bytes:?}"));
                    assert!(v["manifests"].is_array());
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Stops the reader even when a writer fails and this thread unwinds.
        let _stop_reader = SetOnDrop(done.clone());
        let mut handles = Vec::new();
        // CLI writers: each tags its own names from the base images (by ref and by digest),
        // moves one shared name back and forth, and untags every third of its names.
        for w in 0..WRITERS {
            let tmp = tmp_path.clone();
            let b_digest = base_b.manifest.digest.to_string();
            handles.push(s.spawn(move || {
                for k in 0..TAGS_PER_WRITER {
                    let name = format!("w{w}-{k}");
                    if k % 2 == 0 {
                        run_ok(&tmp, &["tag", "l", "base-a", &name]);
                    } else {
                        run_ok(&tmp, &["tag", "l", &b_digest, &name]);
                    }
                    run_ok(
                        &tmp,
                        &[
                            "-q",
                            "tag",
                            "l",
                            if k % 2 == 0 { "base-a" } else { "base-b" },
                            "shared",
                        ],
                    );
                    if k % 3 == 2 {
                        run_ok(&tmp, &["untag", "l", &name]);
                    }
                }
            }));
        }
        // gc, over and over.
        {
            let tmp = tmp_path.clone();
            handles.push(s.spawn(move || {
                for _ in 0..10 {
                    run_ok(&tmp, &["-q", "gc", "l"]);
                }
            }));
        }
        // A library writer adding new images: blobs, then index.json, under the lock, so a
        // concurrent gc never sees the blobs without the ref.
        let lib_images = {
            let dir = dir.clone();
            s.spawn(move || {
                (0..5)
                    .map(|i| {
                        let content = format!("image {i}\n");
                        let built = add_image(
                            &dir,
                            &format!("lib-{i}"),
                            &[LayerSpec::new(
                                &[("i", content.as_bytes())],
                                Compression::Gzip,
                            )],
                            None,
                        );
                        (format!("lib-{i}"), built.manifest.digest.to_string())
                    })
                    .collect::<Vec<_>>()
            })
        };
        for h in handles {
            h.join().expect("writer thread");
        }
        let lib_images = lib_images.join().expect("library writer");
        done.store(true, Ordering::Relaxed);

        // Every name that was tagged and not untagged is there, pointing where it should.
        let (a, b) = (
            base_a.manifest.digest.to_string(),
            base_b.manifest.digest.to_string(),
        );
        let mut want: BTreeSet<(String, String)> = BTreeSet::new();
        want.insert(("base-a".into(), a.clone()));
        want.insert(("base-b".into(), b.clone()));
        for w in 0..WRITERS {
            for k in 0..TAGS_PER_WRITER {
                if k % 3 != 2 {
                    want.insert((
                        format!("w{w}-{k}"),
                        if k % 2 == 0 { a.clone() } else { b.clone() },
                    ));
                }
            }
        }
        want.extend(lib_images);
        let r = ocikit(&tmp_path, &["ls", "l", "--json"]);
        assert_eq!(r.code, 0);
        let entries = r.json();
        let entries = entries.as_array().expect("array");
        let mut got: BTreeSet<(String, String)> = BTreeSet::new();
        let mut shared = None;
        for e in entries {
            let name = e["ref"].as_str().expect("every entry is named").to_string();
            let digest = e["digest"].as_str().expect("digest").to_string();
            if name == "shared" {
                assert!(shared.replace(digest).is_none(), "`shared` named twice");
            } else {
                assert!(got.insert((name, digest)), "duplicate entry");
            }
        }
        assert_eq!(got, want);
        let shared = shared.expect("`shared` exists");
        assert!(shared == a || shared == b, "{shared}");
        assert_eq!(entries.len(), want.len() + 1);
    });
    assert!(reads.load(Ordering::Relaxed) > 0);

    // A last gc has nothing to do (nothing was ever unreferenced), and fsck is clean.
    let r = ocikit(tmp.path(), &["gc", "l", "--json"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.json(),
        serde_json::json!({"dryRun": false, "removed": [], "tempFiles": [], "bytes": 0})
    );
    let r = ocikit(tmp.path(), &["fsck", "l", "--deep", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(
        r.json(),
        serde_json::json!({"clean": true, "errors": 0, "blobsChecked": 3 * 7, "findings": []})
    );
}

#[test]
fn a_writer_that_cannot_get_the_lock_fails_clearly() {
    let tmp = tempdir();
    let dir = tmp.path().join("l");
    small_image(&dir, "v1");
    let layout = Layout::open(&dir, opts()).expect("open");
    let lock = layout.lock().expect("lock");
    let before = std::fs::read(dir.join("index.json")).expect("read");
    for args in [
        &["--lock-timeout", "0", "tag", "l", "v1", "v2"][..],
        &["--lock-timeout", "0", "untag", "l", "v1"][..],
        &["--lock-timeout", "0", "gc", "l"][..],
    ] {
        let r = ocikit(tmp.path(), args);
        assert_eq!(r.code, 2, "{args:?}");
        assert_eq!(
            r.stderr, "ocikit: error: `l` is locked by another ocikit writer; gave up after 0 s\n",
            "{args:?}"
        );
    }
    // Readers do not take the lock.
    assert_eq!(ocikit(tmp.path(), &["ls", "l"]).code, 0);
    assert_eq!(ocikit(tmp.path(), &["fsck", "l"]).code, 0);
    assert_eq!(std::fs::read(dir.join("index.json")).expect("read"), before);

    // A writer waits for the lock, then succeeds once it is released.
    let child = ocikit_cmd()
        .current_dir(tmp.path())
        .args(["--lock-timeout", "30", "tag", "l", "v1", "v2"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(std::fs::read(dir.join("index.json")).expect("read"), before);
    drop(lock);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    let r = ocikit(tmp.path(), &["ls", "l", "--json"]);
    let v = r.json();
    let names: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["ref"].as_str().expect("ref"))
        .collect();
    assert_eq!(names, vec!["v1", "v2"]);
}

/// `ocikit import bad.tar D & ocikit import good.tar D` with `D` new: the failing import used
/// to remove `D` while the other waited for its lock on it; the other then wrote into the
/// removed directory and reported success, leaving nothing at `D`. Here the failing writer is
/// this test (it creates `D`, holds the lock, then gives up the way `NewDir` does), and the
/// other is the binary.
#[test]
fn an_import_waiting_on_a_new_dir_another_import_removed_starts_over() {
    let tmp = tempdir();
    let dir = tmp.path().join("d");
    let good = fixtures().join("docker/ggcr-hello-world-v25.tar");
    let failing = ocikit_layout::output::NewDir::guard(&dir);
    assert!(failing.is_new());
    let (layout, _) = Layout::init(&dir, opts()).expect("init");
    let lock = layout.lock().expect("lock");
    let child = ocikit_cmd()
        .args(["-q", "import"])
        .arg(&good)
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Let the other import find `D` and start waiting for its lock.
    std::thread::sleep(std::time::Duration::from_millis(800));
    drop(lock);
    drop(failing);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).as_ref()
        ),
        (Some(0), "")
    );
    let r = ocikit(tmp.path(), &["ls", "d"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
    assert_eq!(ocikit(tmp.path(), &["fsck", "d"]).code, 0);
}
