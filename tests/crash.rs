//! Crash safety: writers killed at fault points and at random moments leave a layout whose
//! `index.json` is byte for byte the old or the new one, that fsck finds clean, and whose
//! leftovers (unreferenced blobs, `.tmp-*` files) one gc removes.
//!
//! The harness is generic over the command: an [`Op`] is an argument list, and the index.json
//! it leaves when it completes is found by running it to completion on a hard-linked copy of
//! the layout ([`reference_run`]). A new writing verb (`import`, `convert`, ...) gets crash
//! tests by adding its argument list to [`random_op`] and a test per fault point like
//! [`tag_and_untag_at_fault_points`].

mod craft;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use craft::*;
use serde_json::Value;

/// A layout with `images` tagged images `img-0..` and no garbage.
fn populated(images: usize) -> Lay {
    let lay = Lay::new();
    let entries: Vec<Value> = (0..images)
        .map(|i| named(&lay.image(&format!("img-{i}")), &format!("img-{i}")))
        .collect();
    lay.set_index(&entries);
    lay
}

/// Add `n` unreferenced blobs (valid names, so only gc's reachability decides).
fn add_garbage(lay: &Lay, tag: &str, n: usize) {
    for i in 0..n {
        lay.put(format!("garbage {tag} {i}").as_bytes());
    }
}

fn blob_count(lay: &Lay) -> usize {
    fs::read_dir(lay.root.join("blobs/sha256"))
        .expect("read_dir")
        .count()
}

/// A command line against the layout (the layout path is filled in per run).
#[derive(Debug, Clone)]
struct Op {
    /// Arguments before the layout path (the verb and its flags).
    verb: Vec<String>,
    /// Arguments after the layout path.
    rest: Vec<String>,
}

impl Op {
    fn new(verb: &[&str], rest: &[&str]) -> Op {
        Op {
            verb: verb.iter().map(|s| s.to_string()).collect(),
            rest: rest.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn command(&self, root: &Path) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("ocikit"));
        c.args(&self.verb)
            .arg(root)
            .args(&self.rest)
            .arg("-q")
            .env_remove("OCIKIT_FAULT_POINT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }
}

/// Hard-link every file of `from` into `to` (directories recreated): a cheap copy that the
/// writers cannot corrupt, since they replace files by rename and never write into one.
fn link_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir").flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().expect("type").is_dir() {
            link_tree(&src, &dst);
        } else {
            fs::hard_link(&src, &dst).expect("link");
        }
    }
}

/// The index.json `op` leaves when it runs to completion, and how long that took: run it on a
/// hard-linked copy.
fn reference_run_timed(lay: &Lay, op: &Op) -> (Vec<u8>, Duration) {
    let copy = tempfile::tempdir().expect("tempdir");
    let root = copy.path().join("l");
    link_tree(&lay.root, &root);
    let start = Instant::now();
    let out = op.command(&root).output().expect("run");
    let took = start.elapsed();
    assert!(out.status.success(), "{op:?}: {}", stderr(&out));
    (fs::read(root.join("index.json")).expect("index.json"), took)
}

fn reference_run(lay: &Lay, op: &Op) -> Vec<u8> {
    reference_run_timed(lay, op).0
}

/// After a crash: index.json is `old` or `new` byte for byte (and parses), fsck finds no error,
/// and one gc leaves no temp file and nothing unreferenced. Returns which one it was.
fn check_after_crash(lay: &Lay, old: &[u8], new: &[u8], what: &str) -> &'static str {
    let now = lay.index_bytes();
    let which = if now == new {
        "new"
    } else if now == old {
        "old"
    } else {
        panic!(
            "{what}: index.json is neither the old nor the new one:\n{}",
            String::from_utf8_lossy(&now)
        );
    };
    serde_json::from_slice::<ocikit_layout::Index>(&now).expect("index.json parses");
    let (code, report) = lay.fsck();
    assert_eq!(code, 0, "{what}: fsck after the crash: {report}");
    let o = run(&["gc", "-q", lay.path()]);
    assert_eq!(o.status.code(), Some(0), "{what}: gc: {}", stderr(&o));
    assert_eq!(lay.temp_files(), Vec::<std::path::PathBuf>::new(), "{what}");
    let (code, report) = lay.fsck();
    assert_eq!(code, 0, "{what}: fsck after gc: {report}");
    assert_eq!(
        report["findings"],
        serde_json::json!([]),
        "{what}: gc left something"
    );
    assert_eq!(lay.index_bytes(), now, "{what}: gc changed index.json");
    which
}

/// Run `op` with a fault point; it must die by SIGABRT there.
fn run_at_fault(lay: &Lay, op: &Op, point: &str) -> ExitStatus {
    let out = op
        .command(&lay.root)
        .env("OCIKIT_FAULT_POINT", point)
        .output()
        .expect("run");
    assert_eq!(
        out.status.signal(),
        Some(6),
        "{op:?} at {point}: {:?} {}",
        out.status,
        stderr(&out)
    );
    out.status
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "fault points need `--features fault-injection`"
)]
fn tag_and_untag_at_fault_points() {
    let lay = populated(20);
    let ops = [
        Op::new(&["tag"], &["img-3", "new-ref"]),
        Op::new(&["tag"], &["img-4", "img-5"]), // moves an existing ref
        Op::new(&["untag"], &["img-7"]),
    ];
    for op in &ops {
        for point in ["before-index-commit", "before-rename"] {
            add_garbage(&lay, point, 5);
            let old = lay.index_bytes();
            let new = reference_run(&lay, op);
            assert_ne!(old, new, "{op:?} changes nothing");
            run_at_fault(&lay, op, point);
            if point == "before-rename" {
                // The synced temp index.json is left beside the old one.
                let temps = lay.temp_files();
                assert_eq!(temps.len(), 1, "{temps:?}");
                assert_eq!(fs::read(&temps[0]).expect("read"), new);
                let (code, report) = lay.fsck();
                assert_eq!(code, 0);
                let kinds: Vec<&Value> = report["findings"]
                    .as_array()
                    .expect("findings")
                    .iter()
                    .map(|f| &f["kind"])
                    .collect();
                assert!(kinds.contains(&&Value::from("temp-file")), "{report}");
            }
            let what = format!("{op:?} at {point}");
            assert_eq!(check_after_crash(&lay, &old, &new, &what), "old", "{what}");
            // The same command completes afterwards.
            let o = op.command(&lay.root).output().expect("run");
            assert!(o.status.success(), "{what}: rerun: {}", stderr(&o));
            assert_eq!(lay.index_bytes(), new, "{what}: rerun");
            // Put things back for the next point.
            lay.set_index_bytes(&old);
        }
    }
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "fault points need `--features fault-injection`"
)]
fn gc_at_fault_points() {
    let lay = populated(10);
    let images = blob_count(&lay);
    for nth in [1, 2, 40] {
        add_garbage(&lay, &format!("gc{nth}"), 50);
        assert_eq!(blob_count(&lay), images + 50);
        let old = lay.index_bytes();
        run_at_fault(
            &lay,
            &Op::new(&["gc"], &[]),
            &format!("gc-mid-delete@{nth}"),
        );
        // Stopped before its nth deletion: nth - 1 blobs are gone.
        assert_eq!(blob_count(&lay), images + 50 - (nth - 1));
        let what = format!("gc at gc-mid-delete@{nth}");
        check_after_crash(&lay, &old, &old, &what);
        assert_eq!(blob_count(&lay), images);
    }
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "fault points need `--features fault-injection`"
)]
fn interrupted_init_can_be_completed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("new");
    for point in ["before-rename@1", "before-rename@2"] {
        let out = ocikit()
            .args(["init", root.to_str().expect("utf-8")])
            .env("OCIKIT_FAULT_POINT", point)
            .output()
            .expect("run");
        assert_eq!(out.status.signal(), Some(6), "{point}");
        assert!(!root.join("oci-layout").exists(), "{point}");
        let o = run(&["init", root.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(0), "{point}: {}", stderr(&o));
        assert_eq!(
            stderr(&o),
            format!("created OCI image layout `{}`\n", root.display())
        );
        let mut names: Vec<String> = fs::read_dir(&root)
            .expect("read_dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["blobs", "index.json", "oci-layout"], "{point}");
        fs::remove_dir_all(&root).expect("rm");
    }
    // A directory that merely looks unfinished (another tool's index.json) is refused.
    fs::create_dir_all(root.join("blobs/sha256")).expect("mkdir");
    fs::write(
        root.join("index.json"),
        br#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .expect("write");
    let o = run(&["init", root.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        fs::read(root.join("index.json")).expect("read"),
        br#"{"schemaVersion":2,"manifests":[]}"#
    );
}

/// Pick the next operation for the timed-kill loop.
fn random_op(rng: &mut Rng, lay: &Lay, i: usize) -> Op {
    let index: Value = serde_json::from_slice(&lay.index_bytes()).expect("index");
    let refs: Vec<String> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["annotations"][REF_NAME].as_str().map(String::from))
        .collect();
    match rng.below(3) {
        0 => Op::new(&["gc"], &[]),
        1 => {
            let src = rng.pick(&refs).clone();
            Op::new(&["tag"], &[&src, &format!("t-{i}")])
        }
        _ => {
            let r = rng.pick(&refs).clone();
            Op::new(&["untag"], &[&r])
        }
    }
}

#[test]
fn sigkill_at_random_moments() {
    const ITERATIONS: usize = 30;
    let mut rng = Rng::new(0x5eed_0c1c);
    let lay = populated(150);
    let mut killed = 0;
    let mut changed = 0;
    let mut outcomes = Vec::new();
    for i in 0..ITERATIONS {
        // Enough garbage that gc spends a while deleting.
        add_garbage(&lay, &format!("it{i}"), 400);
        let op = random_op(&mut rng, &lay, i);
        let old = lay.index_bytes();
        let (new, full) = reference_run_timed(&lay, &op);
        // A moment anywhere in the run (and a little past it).
        let delay =
            Duration::from_micros(rng.below(full.as_micros() as usize * 11 / 10 + 1) as u64);
        let mut child = op.command(&lay.root).spawn().expect("spawn");
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL; a no-op if it already exited
        let status = child.wait().expect("wait");
        let was_killed = status.signal() == Some(9);
        if was_killed {
            killed += 1;
        } else {
            assert!(status.success(), "{op:?}: {status:?}");
        }
        let what = format!("iteration {i}: {op:?} killed after {delay:?} of {full:?}");
        let which = check_after_crash(&lay, &old, &new, &what);
        if !was_killed {
            assert_eq!(
                which, "new",
                "{what}: completed but index.json is the old one"
            );
        }
        if which == "new" && old != new {
            changed += 1;
        }
        outcomes.push((op.verb[0].clone(), was_killed, which));
    }
    eprintln!("{killed} of {ITERATIONS} runs killed, {changed} index.json changes: {outcomes:?}");
    // Most kills must land while the command runs, or this test proves nothing.
    assert!(
        killed >= ITERATIONS / 3,
        "only {killed} of {ITERATIONS} runs were killed: {outcomes:?}"
    );
}

fn fixture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
        .to_str()
        .expect("utf-8")
        .to_string()
}

/// A bundle of the multi-platform fixture, written once per test run.
fn bundle_of_multiarch(dir: &Path) -> String {
    let out = dir.join("multiarch.bundle");
    let o = run(&[
        "bundle",
        &fixture("generated/multiarch"),
        "-o",
        out.to_str().expect("utf-8"),
        "--referrers",
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    out.to_str().expect("utf-8").to_string()
}

/// The writers that take other inputs: import (a docker save archive, a bundle), copy and
/// convert, each stopped at every fault point it passes.
#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "fault points need `--features fault-injection`"
)]
fn import_convert_copy_and_bundle_load_at_fault_points() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bundle = bundle_of_multiarch(tmp.path());
    let archive = fixture("docker/ggcr-test_link.tar");
    let multiarch = fixture("generated/multiarch");
    let cases: Vec<(Op, Vec<&str>)> = vec![
        (
            Op::new(&["import", &archive], &[]),
            vec!["import-mid-layers", "before-index-commit", "before-rename"],
        ),
        (
            Op::new(&["import", &bundle], &[]),
            vec!["bundle-mid-load@3", "before-index-commit"],
        ),
        (
            Op::new(&["copy", &multiarch], &[]),
            vec!["before-index-commit", "before-rename"],
        ),
        (
            Op::new(&["convert"], &["--to", "docker"]),
            vec!["before-index-commit", "before-rename"],
        ),
    ];
    for (op, points) in &cases {
        let lay = populated(4);
        for point in points {
            let old = lay.index_bytes();
            let new = reference_run(&lay, op);
            assert_ne!(old, new, "{op:?} changes nothing");
            run_at_fault(&lay, op, point);
            let what = format!("{op:?} at {point}");
            assert_eq!(check_after_crash(&lay, &old, &new, &what), "old", "{what}");
            let o = op.command(&lay.root).output().expect("run");
            assert!(o.status.success(), "{what}: rerun: {}", stderr(&o));
            assert_eq!(lay.index_bytes(), new, "{what}: rerun");
            lay.set_index_bytes(&old);
            let o = run(&["gc", "-q", lay.path()]);
            assert_eq!(o.status.code(), Some(0), "{what}: gc: {}", stderr(&o));
        }
    }
}

#[test]
fn import_and_convert_killed_at_random_moments() {
    const ITERATIONS: usize = 12;
    let mut rng = Rng::new(0x1a2b_3c4d);
    let archive = fixture("docker/ggcr-test_link.tar");
    let lay = populated(30);
    // The imported images have real layers, so convert can recompress them.
    let o = run(&["import", &archive, lay.path(), "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut killed = 0;
    for i in 0..ITERATIONS {
        let image = "bazel/v1/tarball:test_image_3";
        let op = match i % 4 {
            0 => Op::new(&["import", &archive], &["--compress", "zstd"]),
            1 => Op::new(
                &["convert"],
                &[image, "--to", "docker", "--compress", "gzip"],
            ),
            2 => Op::new(&["import", &archive], &["--compress", "gzip"]),
            _ => Op::new(&["convert"], &[image, "--to", "oci", "--compress", "zstd"]),
        };
        let old = lay.index_bytes();
        let (new, full) = reference_run_timed(&lay, &op);
        let delay =
            Duration::from_micros(rng.below(full.as_micros() as usize * 11 / 10 + 1) as u64);
        let mut child = op.command(&lay.root).spawn().expect("spawn");
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().expect("wait");
        if status.signal() == Some(9) {
            killed += 1;
        } else {
            assert!(status.success(), "{op:?}: {status:?}");
        }
        let what = format!("iteration {i}: {op:?} killed after {delay:?} of {full:?}");
        check_after_crash(&lay, &old, &new, &what);
    }
    eprintln!("{killed} of {ITERATIONS} runs killed");
    assert!(
        killed >= ITERATIONS / 4,
        "only {killed} of {ITERATIONS} runs were killed"
    );
}
