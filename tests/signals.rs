//! SIGINT and SIGTERM during a write: the `.tmp-*` files of the layout being written, a
//! destination directory the command created and the `.ocikit-tmp-*` file beside an output are
//! removed, and the exit status is the conventional 128 + signal (130, 143).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ocikit_layout::Compression;

/// `len` bytes that do not compress, deterministic.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A layout at `tmp/src` with `app:1`, one uncompressed 64 MiB layer.
fn big_layout(tmp: &Path) -> PathBuf {
    let src = tmp.join("src");
    let data = noise(64 << 20);
    add_image(
        &src,
        "app:1",
        &[LayerSpec::new(&[("big.bin", &data)], Compression::None)],
        None,
    );
    src
}

/// Files under `dir` (recursively) whose names start with `prefix`.
fn files_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(files_named(&p, prefix));
        } else if e.file_name().to_string_lossy().starts_with(prefix) {
            out.push(p);
        }
    }
    out
}

/// Start `ocikit ARGS` in `cwd`, wait until a non-empty file named `prefix*` appears under
/// `watch`, then send `signal`; returns the exit code.
fn interrupt(cwd: &Path, args: &[&str], watch: &Path, prefix: &str, signal: &str) -> i32 {
    let mut child: Child = ocikit_cmd()
        .current_dir(cwd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    loop {
        let busy = files_named(watch, prefix)
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0));
        if busy {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{args:?} ended ({status}) before writing anything to interrupt");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{args:?}: no {prefix}* file under {}",
            watch.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let killed = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().expect("wait");
    out.status.code().unwrap_or(-1)
}

#[test]
fn sigterm_during_an_import_into_a_new_directory_removes_it() {
    let tmp = tempdir();
    big_layout(tmp.path());
    let run = ocikit(tmp.path(), &["export", "src", "app:1", "-o", "app.tar"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let dest = tmp.path().join("dest");
    let code = interrupt(
        tmp.path(),
        &["import", "app.tar", "dest"],
        &dest,
        ".tmp-",
        "-TERM",
    );
    assert_eq!(code, 143);
    assert!(!dest.exists(), "the new destination is left behind");
}

#[test]
fn sigint_during_an_import_into_a_layout_leaves_no_temp_file() {
    let tmp = tempdir();
    big_layout(tmp.path());
    let run = ocikit(tmp.path(), &["export", "src", "app:1", "-o", "app.tar"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = ocikit(tmp.path(), &["init", "dest"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let dest = tmp.path().join("dest");
    let before = std::fs::read(dest.join("index.json")).expect("index.json");
    let code = interrupt(
        tmp.path(),
        &["import", "app.tar", "dest"],
        &dest,
        ".tmp-",
        "-INT",
    );
    assert_eq!(code, 130);
    assert_eq!(files_named(&dest, ".tmp-"), Vec::<PathBuf>::new());
    assert_eq!(
        std::fs::read(dest.join("index.json")).expect("index.json"),
        before
    );
    let run = ocikit(tmp.path(), &["fsck", "dest"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(!run.stdout.contains("temp-file"), "{}", run.stdout);
}

#[test]
fn sigint_during_an_export_removes_its_temp_output() {
    let tmp = tempdir();
    big_layout(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let code = interrupt(
        tmp.path(),
        &["export", "src", "app:1", "-o", "out/app.tar"],
        &out,
        ".ocikit-tmp-",
        "-INT",
    );
    assert_eq!(code, 130);
    let left: Vec<_> = std::fs::read_dir(&out)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
