//! The blob store's file-safety rules, end to end: nothing outside a layout is read, written or
//! deleted because of what the layout contains (links, FIFOs, planted partials), reused blobs
//! are verified, and files get the umask's modes.

mod craft;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output, Stdio};
use std::time::{Duration, Instant};

use craft::*;

/// Run `ocikit ARGS`, killed after 30 s: a command that blocks on a FIFO fails the test
/// instead of hanging it.
fn run_timed(args: &[&str]) -> Output {
    let bin = assert_cmd::cargo::cargo_bin("ocikit");
    let mut child = StdCommand::new(bin)
        .args(args)
        .env_remove("OCIKIT_FAULT_POINT")
        .env_remove("OCIKIT_LOCK_TIMEOUT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ocikit");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("ocikit {args:?} hung: {}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run `ocikit ARGS` under `umask`.
fn run_umask(umask: &str, args: &[&str]) -> Output {
    let bin = assert_cmd::cargo::cargo_bin("ocikit");
    let o = StdCommand::new("sh")
        .arg("-c")
        .arg(format!(r#"umask {umask}; exec "$0" "$@""#))
        .arg(bin)
        .args(args)
        .env_remove("OCIKIT_FAULT_POINT")
        .env_remove("OCIKIT_LOCK_TIMEOUT")
        .output()
        .expect("run ocikit");
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    o
}

fn mkfifo(path: &Path) {
    let st = StdCommand::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(st.success());
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A layout with one tagged image `app:1`, and an unreferenced blob `junk`.
fn layout_with_image() -> (Lay, String) {
    let lay = Lay::new();
    let m = lay.image("app");
    lay.set_index(&[named(&m, "app:1")]);
    let junk = lay.put(b"unreferenced junk");
    (lay, junk)
}

/// What every verb says about a store directory that is a link.
fn assert_refused(o: &Output, path: &Path, reason: &str) {
    assert_eq!(code(o), 2, "stderr: {}", stderr(o));
    let want = format!("refusing `{}`: it is {reason}", path.display());
    assert!(stderr(o).contains(&want), "want {want:?} in: {}", stderr(o));
}

fn check_every_verb_refuses(lay: &Lay, linked: &Path, outside_file: &Path, tmp: &Path) {
    let reason = "a symbolic link, not a directory";
    let before = fs::read(outside_file).expect("outside file");

    let gc = run_timed(&["gc", lay.path()]);
    assert_refused(&gc, linked, reason);
    assert_eq!(fs::read(outside_file).expect("still there"), before);

    for args in [
        vec!["fsck", lay.path()],
        vec!["ls", lay.path()],
        vec!["inventory", lay.path()],
    ] {
        assert_refused(&run_timed(&args), linked, reason);
    }
    // copy out of it and into it
    let other = Lay::new();
    let m = other.image("other");
    other.set_index(&[named(&m, "other:1")]);
    let dst = tmp.join("dst");
    assert_refused(&run_timed(&["copy", lay.path(), p(&dst)]), linked, reason);
    assert!(!dst.exists(), "a failed copy leaves no destination");
    assert_refused(
        &run_timed(&["copy", other.path(), lay.path()]),
        linked,
        reason,
    );
    // import into it
    assert_refused(
        &run_timed(&["import", other.path(), lay.path()]),
        linked,
        reason,
    );
    assert_eq!(fs::read(outside_file).expect("still there"), before);
}

#[test]
fn a_linked_blobs_dir_is_refused_and_gc_deletes_nothing_outside() {
    let (lay, junk) = layout_with_image();
    let outside = tempfile::tempdir().expect("tmp");
    let real = outside.path().join("blobs");
    fs::rename(lay.root.join("blobs"), &real).expect("move blobs out");
    symlink(&real, lay.root.join("blobs")).expect("symlink");
    let (alg, enc) = junk.split_once(':').expect("digest");
    let outside_file = real.join(alg).join(enc);
    check_every_verb_refuses(&lay, &lay.root.join("blobs"), &outside_file, outside.path());
}

#[test]
fn a_linked_blobs_alg_dir_is_refused_and_gc_deletes_nothing_outside() {
    let (lay, junk) = layout_with_image();
    let outside = tempfile::tempdir().expect("tmp");
    let real = outside.path().join("sha256");
    fs::rename(lay.root.join("blobs/sha256"), &real).expect("move blobs/sha256 out");
    symlink(&real, lay.root.join("blobs/sha256")).expect("symlink");
    let outside_file = real.join(junk.split_once(':').expect("digest").1);
    check_every_verb_refuses(
        &lay,
        &lay.root.join("blobs/sha256"),
        &outside_file,
        outside.path(),
    );
}

#[test]
fn a_fifo_blob_is_a_finding_and_never_blocks_a_read() {
    let lay = Lay::new();
    let m = lay.image("app");
    lay.set_index(&[named(&m, "app:1")]);
    let layer = sha256(b"layer of app");
    let path = lay.blob_path(&layer);
    fs::remove_file(&path).expect("rm");
    mkfifo(&path);

    let fsck = run_timed(&["fsck", "--json", lay.path()]);
    assert_eq!(code(&fsck), 1, "{}", stderr(&fsck));
    let v: serde_json::Value = serde_json::from_slice(&fsck.stdout).expect("json");
    let findings = v["findings"].as_array().expect("findings");
    let f = findings
        .iter()
        .find(|f| f["digest"] == layer.as_str())
        .unwrap_or_else(|| panic!("no finding for the FIFO: {v}"));
    assert_eq!(f["kind"], "unreadable", "{f}");
    let want = format!(
        "refusing `{}`: it is a FIFO, not a regular file",
        path.display()
    );
    assert_eq!(f["detail"], want.as_str(), "{f}");

    // Reading it directly is refused at once, naming the path.
    let cat = run_timed(&["cat", lay.path(), &layer]);
    assert_eq!(code(&cat), 2, "{}", stderr(&cat));
    assert!(stderr(&cat).contains(&want), "{}", stderr(&cat));
}

#[test]
fn a_fifo_index_json_is_refused_without_blocking() {
    let lay = Lay::new();
    let index = lay.root.join("index.json");
    fs::remove_file(&index).expect("rm");
    mkfifo(&index);
    let want = format!(
        "refusing `{}`: it is a FIFO, not a regular file",
        index.display()
    );
    for verb in ["ls", "fsck", "gc"] {
        let o = run_timed(&[verb, lay.path()]);
        assert_eq!(code(&o), 2, "{verb}: {}", stderr(&o));
        assert!(stderr(&o).contains(&want), "{verb}: {}", stderr(&o));
    }
}

/// A source whose one layer is larger than a 64 KiB part, so a bundle carries it in chunks.
fn big_source() -> (Lay, String) {
    let lay = Lay::new();
    let mut payload = Vec::with_capacity(300_000);
    let mut x: u32 = 2463534242;
    for _ in 0..300_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        payload.push((x >> 24) as u8);
    }
    let layer = lay.desc("application/vnd.oci.image.layer.v1.tar", &payload);
    let config = lay.config("big");
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]});
    let md = lay.desc(OCI_MANIFEST, &serde_json::to_vec(&m).expect("json"));
    lay.set_index(&[named(&md, "big:1")]);
    let d = layer["digest"].as_str().expect("digest").to_string();
    (lay, d)
}

#[test]
fn a_planted_partial_link_is_never_written_through() {
    let (src, layer) = big_source();
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("b");
    let o = run_timed(&["bundle", src.path(), "-o", p(&out), "--part-size", "64K"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut parts: Vec<PathBuf> = fs::read_dir(tmp.path())
        .expect("ls")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("b."))
        })
        .collect();
    parts.sort();
    assert!(parts.len() >= 5, "{parts:?}");

    let far = tmp.path().join("far");
    let o = run_timed(&["init", p(&far)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let victim = tmp.path().join("victim");
    let victim_list = tmp.path().join("victim-list");
    fs::write(&victim, b"precious").expect("write");
    fs::write(&victim_list, b"precious list").expect("write");
    let enc = layer.split_once(':').expect("digest").1;
    let partial = far.join("blobs/sha256").join(format!(".partial-{enc}"));
    symlink(&victim, &partial).expect("symlink");
    symlink(
        &victim_list,
        far.join("blobs/sha256")
            .join(format!(".partial-{enc}.chunks")),
    )
    .expect("symlink");

    let mut args = vec!["import"];
    args.extend(parts.iter().map(|p| p.to_str().expect("utf-8")));
    args.push(p(&far));
    let o = run_timed(&args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(fs::read(&victim).expect("victim"), b"precious");
    assert_eq!(fs::read(&victim_list).expect("victim"), b"precious list");
    assert_eq!(
        fs::read(far.join("blobs/sha256").join(enc)).expect("blob"),
        fs::read(src.blob_path(&layer)).expect("source blob")
    );
    let fsck = run_timed(&["fsck", p(&far)]);
    assert_eq!(code(&fsck), 0, "{}", stderr(&fsck));
}

#[test]
fn copy_replaces_a_corrupt_destination_blob_and_says_so() {
    let src = Lay::new();
    let m = src.image("app");
    src.set_index(&[named(&m, "app:1")]);
    let tmp = tempfile::tempdir().expect("tmp");
    let dst = tmp.path().join("dst");
    let o = run_timed(&["copy", src.path(), p(&dst)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // Same size, one byte flipped: only hashing tells.
    let layer = sha256(b"layer of app");
    let (alg, enc) = layer.split_once(':').expect("digest");
    let blob = dst.join("blobs").join(alg).join(enc);
    fs::remove_file(&blob).expect("unlink the link to the source");
    fs::write(&blob, b"layer of apP").expect("corrupt");

    let o = run_timed(&["copy", src.path(), p(&dst)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "copied 1 entry: 0 blob(s) linked, 0 copied, 2 already present, \
         1 replaced (the destination's copy was corrupt)\n"
    );
    assert_eq!(fs::read(&blob).expect("blob"), b"layer of app");
    let fsck = run_timed(&["fsck", p(&dst)]);
    assert_eq!(code(&fsck), 0, "{}", stderr(&fsck));
}

/// An oci-archive of `lay` (so an import writes every blob, where a layout would be linked).
fn oci_archive(lay: &Lay, out: &Path) {
    let mut b = tar::Builder::new(fs::File::create(out).expect("create"));
    b.mode(tar::HeaderMode::Deterministic);
    b.append_dir_all(".", &lay.root).expect("tar");
    b.finish().expect("tar");
}

fn modes_after_init_and_import(umask: &str) -> Vec<(String, u32)> {
    let src = Lay::new();
    let m = src.image("app");
    src.set_index(&[named(&m, "app:1")]);
    let tmp = tempfile::tempdir().expect("tmp");
    let archive = tmp.path().join("app.tar");
    oci_archive(&src, &archive);
    let dst = tmp.path().join("dst");
    run_umask(umask, &["init", p(&dst)]);
    run_umask(umask, &["import", p(&archive), p(&dst)]);
    let mut out = vec![
        ("index.json".to_string(), mode(&dst.join("index.json"))),
        ("oci-layout".to_string(), mode(&dst.join("oci-layout"))),
        ("blobs".to_string(), mode(&dst.join("blobs"))),
        ("blobs/sha256".to_string(), mode(&dst.join("blobs/sha256"))),
    ];
    let mut blobs: Vec<_> = fs::read_dir(dst.join("blobs/sha256"))
        .expect("ls")
        .flatten()
        .map(|e| e.path())
        .collect();
    blobs.sort();
    assert_eq!(blobs.len(), 3);
    for b in blobs {
        out.push(("blob".to_string(), mode(&b)));
    }
    out
}

#[test]
fn new_files_take_the_umask_mode() {
    let want = |f: u32, d: u32| {
        vec![
            ("index.json".to_string(), f),
            ("oci-layout".to_string(), f),
            ("blobs".to_string(), d),
            ("blobs/sha256".to_string(), d),
            ("blob".to_string(), f),
            ("blob".to_string(), f),
            ("blob".to_string(), f),
        ]
    };
    assert_eq!(modes_after_init_and_import("022"), want(0o644, 0o755));
    assert_eq!(modes_after_init_and_import("077"), want(0o600, 0o700));
}

#[test]
fn a_replaced_index_json_keeps_its_mode() {
    let lay = Lay::new();
    let m = lay.image("app");
    lay.set_index(&[named(&m, "app:1")]);
    let index = lay.root.join("index.json");
    fs::set_permissions(&index, fs::Permissions::from_mode(0o640)).expect("chmod");
    let o = run_umask("022", &["tag", lay.path(), "app:1", "app:2"]);
    assert_eq!(code(&o), 0);
    assert_eq!(mode(&index), 0o640);
    assert!(String::from_utf8_lossy(&lay.index_bytes()).contains("app:2"));
}

#[test]
fn gc_deletes_only_what_the_store_wrote() {
    let (lay, junk) = layout_with_image();
    let notadigest = lay.root.join("blobs/sha256/notadigest");
    fs::write(&notadigest, b"mine").expect("write");
    fs::create_dir_all(lay.root.join("blobs/foo")).expect("mkdir");
    let foreign = lay.root.join("blobs/foo/abc");
    fs::write(&foreign, b"mine too").expect("write");
    let partial_name = format!(".partial-{}", "ab".repeat(32));
    let partial = lay.root.join("blobs/sha256").join(&partial_name);
    let chunks = lay
        .root
        .join("blobs/sha256")
        .join(format!("{partial_name}.chunks"));
    fs::write(&partial, b"half a blob").expect("write");
    fs::write(&chunks, b"0\n").expect("write");

    // fsck reports the stale partials as leftovers, not as errors.
    let (fsck_code, v) = lay.fsck();
    assert_eq!(fsck_code, 0, "{v}");
    let temp: Vec<String> = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["kind"] == "temp-file")
        .map(|f| f["path"].to_string())
        .collect();
    assert_eq!(temp.len(), 2, "{v}");
    assert!(temp
        .iter()
        .any(|t| t.contains(&partial_name) && !t.contains(".chunks")));
    assert!(temp
        .iter()
        .any(|t| t.contains(&format!("{partial_name}.chunks"))));

    let o = run_timed(&["gc", "--json", lay.path()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        !lay.blob_path(&junk).exists(),
        "the unreachable blob is gone"
    );
    assert!(
        !partial.exists() && !chunks.exists(),
        "stale partials are gone"
    );
    assert_eq!(fs::read(&notadigest).expect("kept"), b"mine");
    assert_eq!(fs::read(&foreign).expect("kept"), b"mine too");
}
