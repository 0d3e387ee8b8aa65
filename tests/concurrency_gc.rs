//! Concurrency: readers never see a partial `index.json`, concurrent writers lose no ref, and gc
//! never deletes a blob that a writer holding the lock has written but not yet committed.

mod craft;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use craft::*;
use ocikit_layout::{refs, Descriptor, Index, Layout, MediaType, Options};
use serde_json::Value;

/// Sets the flag when dropped, so helper threads stop even when the main loop panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn refs_in(lay: &Lay) -> BTreeSet<String> {
    let ix: Index = serde_json::from_slice(&lay.index_bytes()).expect("index.json");
    ix.manifests
        .iter()
        .filter_map(|d| d.ref_name().map(String::from))
        .collect()
}

#[test]
fn readers_see_whole_indexes_while_writers_lose_no_ref() {
    let lay = Lay::new();
    let img = lay.image("one");
    // A big index.json (about 400 KiB), so a torn write could not go unnoticed.
    let entries: Vec<Value> = (0..2000)
        .map(|i| named(&img, &format!("base-{i}")))
        .collect();
    lay.set_index(&entries);
    let done = AtomicBool::new(false);
    let (direct_reads, ls_reads) = (AtomicUsize::new(0), AtomicUsize::new(0));
    const WRITERS: usize = 3;
    const ROUNDS: usize = 12;
    std::thread::scope(|s| {
        // Reader 1: the file itself, as fast as it can.
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let bytes = std::fs::read(lay.root.join("index.json")).expect("read");
                if let Err(e) = serde_json::from_slice::<Index>(&bytes) {
                    panic!("partial index.json ({} bytes): {e}", bytes.len());
                }
                direct_reads.fetch_add(1, Ordering::SeqCst);
            }
        });
        // Reader 2: `ocikit ls --json`.
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let o = run(&["ls", "--json", lay.path()]);
                assert_eq!(o.status.code(), Some(0), "ls: {}", stderr(&o));
                let v: Value = serde_json::from_slice(&o.stdout).expect("ls --json parses");
                assert!(v.as_array().expect("array").len() >= 2000);
                ls_reads.fetch_add(1, Ordering::SeqCst);
            }
        });
        let _stop = StopOnDrop(&done);
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let lay = &lay;
                s.spawn(move || {
                    for i in 0..ROUNDS {
                        let name = format!("w{w}-{i}");
                        let o = run(&["tag", lay.path(), "base-0", &name]);
                        assert_eq!(o.status.code(), Some(0), "tag {name}: {}", stderr(&o));
                        if i % 2 == 0 {
                            let o = run(&["untag", lay.path(), &name]);
                            assert_eq!(o.status.code(), Some(0), "untag {name}: {}", stderr(&o));
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
    });
    let mut want: BTreeSet<String> = (0..2000).map(|i| format!("base-{i}")).collect();
    for w in 0..WRITERS {
        for i in (1..ROUNDS).step_by(2) {
            want.insert(format!("w{w}-{i}"));
        }
    }
    assert_eq!(refs_in(&lay), want);
    let (direct, ls) = (direct_reads.into_inner(), ls_reads.into_inner());
    assert!(
        direct >= 20 && ls >= 5,
        "too few reads to mean anything: {direct} direct, {ls} ls"
    );
}

/// A writer that writes blobs under the lock and commits index.json only after a pause, while
/// gc runs in a loop. Without the writer lock gc would see those blobs unreferenced.
#[test]
fn gc_waits_for_a_writer_that_has_not_committed_yet() {
    let lay = Lay::new();
    let base = lay.image("base");
    lay.set_index(&[named(&base, "base")]);
    let done = AtomicBool::new(false);
    let gc_runs = AtomicUsize::new(0);
    const IMAGES: usize = 12;
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let o = run(&["gc", "-q", lay.path()]);
                assert_eq!(o.status.code(), Some(0), "gc: {}", stderr(&o));
                gc_runs.fetch_add(1, Ordering::SeqCst);
            }
        });
        let _stop = StopOnDrop(&done);
        let layout = Layout::open(&lay.root, Options::default()).expect("open");
        for i in 0..IMAGES {
            let lock = layout.lock().expect("lock");
            let cfg = format!(
                r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"n":{i}}}"#
            );
            let (cd, cs) = lock.write_blob(cfg.as_bytes()).expect("config");
            let (ld, ls) = lock
                .write_blob(format!("layer {i}").as_bytes())
                .expect("layer");
            let m = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": Descriptor::new(MediaType::OciConfig, cd, cs),
                "layers": [Descriptor::new(MediaType::OciLayerGzip, ld, ls)]});
            let (md, ms) = lock
                .write_blob(&serde_json::to_vec(&m).expect("json"))
                .expect("manifest");
            // The window in which an unlocked gc would delete all three.
            std::thread::sleep(Duration::from_millis(40));
            let mut index = layout.read_index().expect("index").value;
            refs::tag(
                &mut index,
                &Descriptor::new(MediaType::OciManifest, md, ms),
                &format!("img-{i}"),
            )
            .expect("tag");
            lock.commit_index(&index).expect("commit");
            drop(lock);
            // Let gc in.
            std::thread::sleep(Duration::from_millis(15));
        }
    });
    assert!(gc_runs.load(Ordering::SeqCst) >= 3, "gc hardly ran");
    let (code, report) = lay.fsck();
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["findings"], serde_json::json!([]), "{report}");
    let mut want: BTreeSet<String> = (0..IMAGES).map(|i| format!("img-{i}")).collect();
    want.insert("base".into());
    assert_eq!(refs_in(&lay), want);
}

/// fsck takes no lock. While `untag` + `gc` remove images it has just walked, it must not
/// report their blobs `missing`: the layout is consistent at every moment (each state of
/// `index.json` names only blobs that are there). Without the recheck against a fresh
/// `index.json`, a few fsck runs in a hundred here reported `missing`.
#[test]
fn fsck_beside_untag_and_gc_reports_nothing_the_writer_caused() {
    let lay = Lay::new();
    let keep = lay.image("keep");
    lay.set_index(&[named(&keep, "keep")]);
    let done = AtomicBool::new(false);
    let fsck_runs = AtomicUsize::new(0);
    let bad = std::sync::Mutex::new(Vec::new());
    const ROUNDS: usize = 15;
    // Many small layers per image: fsck is still checking them when gc removes them.
    const LAYERS: usize = 600;
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let (code, report) = lay.fsck();
                let missing: Vec<Value> = report["findings"]
                    .as_array()
                    .expect("findings")
                    .iter()
                    .filter(|f| f["severity"] == "error")
                    .cloned()
                    .collect();
                if code != 0 || !missing.is_empty() {
                    bad.lock().expect("lock").push(missing);
                }
                fsck_runs.fetch_add(1, Ordering::SeqCst);
            }
        });
        let _stop = StopOnDrop(&done);
        let opts = Options {
            durable: false,
            ..Options::default()
        };
        let layout = Layout::open(&lay.root, opts).expect("open");
        for i in 0..ROUNDS {
            {
                let lock = layout.lock().expect("lock");
                let cfg = format!(
                    r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"n":{i}}}"#
                );
                let (cd, cs) = lock.write_blob(cfg.as_bytes()).expect("config");
                let layers: Vec<Descriptor> = (0..LAYERS)
                    .map(|l| {
                        let (d, s) = lock
                            .write_blob(format!("layer {l} of {i}").as_bytes())
                            .expect("layer");
                        Descriptor::new(MediaType::OciLayerGzip, d, s)
                    })
                    .collect();
                let m = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": Descriptor::new(MediaType::OciConfig, cd, cs), "layers": layers});
                let (md, ms) = lock
                    .write_blob(&serde_json::to_vec(&m).expect("json"))
                    .expect("manifest");
                let mut index = layout.read_index().expect("index").value;
                refs::tag(
                    &mut index,
                    &Descriptor::new(MediaType::OciManifest, md, ms),
                    "temp",
                )
                .expect("tag");
                lock.commit_index(&index).expect("commit");
            }
            // Give fsck time to read the index.json naming `temp`.
            std::thread::sleep(Duration::from_millis(10));
            let o = run(&["untag", lay.path(), "temp"]);
            assert_eq!(o.status.code(), Some(0), "untag: {}", stderr(&o));
            let o = run(&["gc", "-q", lay.path()]);
            assert_eq!(o.status.code(), Some(0), "gc: {}", stderr(&o));
        }
    });
    let runs = fsck_runs.load(Ordering::SeqCst);
    assert!(runs >= 10, "fsck hardly ran ({runs} runs)");
    let bad = bad.into_inner().expect("lock");
    assert!(
        bad.is_empty(),
        "{} of {runs} fsck runs reported: {bad:?}",
        bad.len()
    );
    let (code, report) = lay.fsck();
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["findings"], serde_json::json!([]), "{report}");
}
