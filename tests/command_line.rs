//! The command line as people type it: the import argument trap, `convert --compress` alone,
//! `ls --image-id`, fsck's `--strict`, shell completions and the man page.

mod common;

use std::fs;

use common::{ocikit, small_image, tempdir};
use serde_json::json;

const TRAP_HINT: &str = "hint: the destination layout directory comes last (ocikit import SRC... DIR); to write an archive from a layout, use `ocikit export DIR -o FILE`\n";

#[test]
fn import_refuses_a_destination_that_is_a_file_or_named_like_an_archive() {
    let tmp = tempdir();
    small_image(&tmp.path().join("L"), "app:1");
    // Meant: export. Nothing is created.
    let r = ocikit(tmp.path(), &["import", "L", "out.tar"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        format!("ocikit: error: the destination `out.tar` is named like an archive, not a layout directory\n{TRAP_HINT}")
    );
    assert!(!tmp.path().join("out.tar").exists());
    for name in ["out.tar.gz", "out.tgz", "OUT.TAR.ZST"] {
        let r = ocikit(tmp.path(), &["import", "L", name]);
        assert_eq!(r.code, 2, "{name}");
        assert!(!tmp.path().join(name).exists());
    }
    // An existing file is not a layout directory.
    fs::write(tmp.path().join("x.tar"), b"an archive").expect("write");
    let r = ocikit(tmp.path(), &["import", "L", "x.tar"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        format!(
            "ocikit: error: the destination `x.tar` exists and is not a directory\n{TRAP_HINT}"
        )
    );
    assert_eq!(
        fs::read(tmp.path().join("x.tar")).expect("read"),
        b"an archive"
    );
    // An existing directory is a destination, whatever its name.
    fs::create_dir(tmp.path().join("y.tar")).expect("mkdir");
    let r = ocikit(tmp.path(), &["import", "-q", "L", "y.tar"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    // One path alone: the destination is what is missing, not the sources.
    let r = ocikit(tmp.path(), &["import", "x.tar"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: import needs the sources and then the destination layout directory; only one path was given\nhint: usage: ocikit import [OPTIONS] <SRC>... <DIR>\n"
    );
    // --help shows the usage as it is meant.
    let r = ocikit(tmp.path(), &["import", "--help"]);
    assert!(
        r.stdout
            .contains("\nUsage: ocikit import [OPTIONS] <SRC>... <DIR>\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn convert_recompresses_without_to() {
    let tmp = tempdir();
    let built = small_image(&tmp.path().join("L"), "app:1");
    let r = ocikit(tmp.path(), &["convert", "L", "--compress", "zstd"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = ocikit(tmp.path(), &["ls", "--json", "--image-id", "L"]);
    let entry = &r.json()[0];
    // Still an OCI manifest, a new one; the config (the image ID) is kept.
    assert_eq!(
        entry["mediaType"],
        json!("application/vnd.oci.image.manifest.v1+json")
    );
    assert_ne!(entry["digest"], json!(built.manifest.digest.as_str()));
    assert_eq!(entry["imageId"], json!(built.config.0.as_str()));
    let m = ocikit(tmp.path(), &["cat", "L", "app:1"]);
    let m: serde_json::Value = serde_json::from_str(&m.stdout).expect("json");
    assert_eq!(
        m["layers"][0]["mediaType"],
        json!("application/vnd.oci.image.layer.v1.tar+zstd")
    );
    let r = ocikit(tmp.path(), &["fsck", "--deep", "-q", "L"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[test]
fn ls_shows_image_ids() {
    let tmp = tempdir();
    let built = small_image(&tmp.path().join("L"), "app:1");
    let r = ocikit(tmp.path(), &["ls", "--image-id", "L"]);
    assert_eq!(r.code, 0);
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w - s.len()));
    assert_eq!(
        r.stdout,
        format!(
            "REF    DIGEST{}  IMAGE ID{}  MEDIA TYPE                                  SIZE  PLATFORM\napp:1  {}  {}  application/vnd.oci.image.manifest.v1+json  {}   -\n",
            " ".repeat(65),
            " ".repeat(63),
            built.manifest.digest,
            built.config.0,
            pad(&built.manifest.size.to_string(), 3),
        )
    );
}

#[test]
fn fsck_reports_conformance_as_warnings_and_strict_makes_them_errors() {
    let tmp = tempdir();
    // As `regctl artifact put --config-type application/vnd.oci.image.config.v1+json`: the
    // config is `{}`.
    let dir = tmp.path().join("L");
    let config = b"{}";
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": common::desc_of("application/vnd.oci.image.config.v1+json", config),
        "layers": [common::desc_of("application/vnd.oci.image.layer.v1.tar", &common::tar_of(&[("a", b"a")]))],
    });
    common::add_manifest(
        &dir,
        "art:1",
        &[config, &common::tar_of(&[("a", b"a")])],
        &manifest,
    );
    let r = ocikit(tmp.path(), &["fsck", "L"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.starts_with("warning: invalid: "), "{}", r.stdout);
    assert!(
        r.stderr.ends_with(" warning(s), 0 note(s)\n"),
        "{}",
        r.stderr
    );
    let r = ocikit(tmp.path(), &["fsck", "--strict", "L"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.starts_with("error: invalid: "), "{}", r.stdout);
}

#[test]
fn completions_and_man_page() {
    let tmp = tempdir();
    for (shell, marker) in [
        ("bash", "_ocikit()"),
        ("zsh", "#compdef ocikit"),
        ("fish", "complete -c ocikit"),
    ] {
        let r = ocikit(tmp.path(), &["completions", shell]);
        assert_eq!(r.code, 0, "{shell}");
        assert!(r.stdout.contains(marker), "{shell}");
        assert!(r.stdout.contains("import"), "{shell}");
    }
    let r = ocikit(tmp.path(), &["man"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.starts_with(".ie \\n(.g .ds Aq \\(aq\n"),
        "{}",
        &r.stdout[..200.min(r.stdout.len())]
    );
    assert!(r.stdout.contains(".TH ocikit 1"), "{}", r.stdout);
}
