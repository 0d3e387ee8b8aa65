//! A disk filling up: every command that writes names the file it could not write (not the
//! source it was reading) and exits 2, and leaves no half-written output or new destination.
//! Each test writes onto a 2 MiB tmpfs of its own; where mounting one is not permitted (not
//! root, or in a container without the capability) the test says so and passes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use ocikit_layout::Compression;

/// A 2 MiB tmpfs mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Option<Tmpfs> {
        let dir = tempdir();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("notice: cannot mount a tmpfs here (needs root); disk-full test skipped");
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// What is in the tmpfs, sorted.
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// 3 MiB that do not compress, deterministic.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A layout at `tmp/src` with `app:1`: one uncompressed 3 MiB layer.
fn big_layout(tmp: &Path) -> PathBuf {
    let src = tmp.join("src");
    let data = noise(3 << 20);
    add_image(
        &src,
        "app:1",
        &[LayerSpec::new(&[("big.bin", &data)], Compression::None)],
        None,
    );
    src
}

/// The stderr of a run with the mount point replaced by `[FS]`.
fn stderr_of(run: &Run, fs: &Tmpfs) -> String {
    filter(&run.stderr, fs.path()).replace("[TMP]", "[FS]")
}

/// The temp file a blob was being written to (its random name replaced by `*`).
fn temp_named(s: &str) -> String {
    match s.find(".tmp-") {
        Some(i) => {
            let end = s[i..].find('`').map_or(s.len(), |e| i + e);
            format!("{}.tmp-*{}", &s[..i], &s[end..])
        }
        None => s.to_string(),
    }
}

const ENOSPC: &str = "No space left on device (os error 28)";

/// `export -o` onto a full disk named `output` (or the source layer) before; now the file.
#[test]
fn export_names_the_file_it_could_not_write() {
    let Some(fs) = Tmpfs::mount() else { return };
    let tmp = tempdir();
    let src = big_layout(tmp.path());
    let out = fs.path().join("app.tar");
    let run = ocikit(
        tmp.path(),
        &["export", "src", "app:1", "-o", out.to_str().expect("utf-8")],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        stderr_of(&run, &fs),
        format!("ocikit: error: could not write `[FS]/app.tar`: {ENOSPC}\n")
    );
    assert!(fs.names().is_empty(), "left behind: {:?}", fs.names());
    assert!(src.join("index.json").is_file());
}

/// `bundle -o` onto a full disk: the part file is named.
#[test]
fn bundle_names_the_part_it_could_not_write() {
    let Some(fs) = Tmpfs::mount() else { return };
    let tmp = tempdir();
    big_layout(tmp.path());
    let out = fs.path().join("b.tar");
    let run = ocikit(
        tmp.path(),
        &["bundle", "src", "app:1", "-o", out.to_str().expect("utf-8")],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        stderr_of(&run, &fs),
        format!("ocikit: error: could not write `[FS]/b.tar`: {ENOSPC}\n")
    );
    assert!(fs.names().is_empty(), "left behind: {:?}", fs.names());
}

/// Loading a bundle onto a full disk is a write failure (exit 2, as import), not a rejected
/// part (exit 1): the part is fine. The new destination is removed.
#[test]
fn a_bundle_load_out_of_space_exits_2_naming_the_blob_file() {
    let Some(fs) = Tmpfs::mount() else { return };
    let tmp = tempdir();
    big_layout(tmp.path());
    let run = ocikit(tmp.path(), &["bundle", "src", "app:1", "-o", "b.tar"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let dest = fs.path().join("dest");
    let run = ocikit(
        tmp.path(),
        &["import", "b.tar", dest.to_str().expect("utf-8")],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        temp_named(&stderr_of(&run, &fs)),
        format!("ocikit: error: could not write `[FS]/dest/blobs/sha256/.tmp-*`: {ENOSPC}\n")
    );
    assert!(fs.names().is_empty(), "left behind: {:?}", fs.names());
}

/// An import onto a full disk names the blob file too, and exits 2.
#[test]
fn an_import_out_of_space_names_the_blob_file() {
    let Some(fs) = Tmpfs::mount() else { return };
    let tmp = tempdir();
    big_layout(tmp.path());
    let run = ocikit(
        tmp.path(),
        &[
            "export",
            "src",
            "app:1",
            "--format",
            "oci-archive",
            "-o",
            "a.tar",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let dest = fs.path().join("dest");
    let run = ocikit(
        tmp.path(),
        &["import", "a.tar", dest.to_str().expect("utf-8")],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    let err = temp_named(&stderr_of(&run, &fs));
    assert!(
        err.ends_with(&format!(
            "could not write `[FS]/dest/blobs/sha256/.tmp-*`: {ENOSPC}\n"
        )),
        "{err}"
    );
    assert!(fs.names().is_empty(), "left behind: {:?}", fs.names());
}
