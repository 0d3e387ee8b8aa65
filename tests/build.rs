//! The build verbs end to end: `append`, `config`, `index`, `unpack` through the binary.
//!
//! - Reproducibility: two appends of the "same" directory made differently (creation order,
//!   so inode and directory order; umask; mtimes after `SOURCE_DATE_EPOCH`) give one digest.
//! - Indexes: every platform changed, or only the `--platform` ones, the others' bytes kept
//!   (go-containerregistry 1056/1456 dropped them); `index create` from two platforms' images,
//!   then `copy --platform` selects from it.
//! - Unpack: whiteouts and opaque whiteouts per layer (ggcr 1897/2029/2372 leaked files
//!   hidden by opaque whiteouts), a hard link before its target, symlink chains, a symlink
//!   out of the root, escapes refused naming the entry, nothing written outside.
//! - Squash: the flattened tar sorted and reproducible (exact digests), idempotent, on every
//!   platform of an index, the same tree as `unpack` (and as umoci unpacks it).
//! - Docker: where a daemon runs, an appended and configured image loads and runs.
//! - Interop: umoci unpacks what `append` made to the same tree as `ocikit unpack`, and
//!   `ocikit unpack` of an image umoci made (with whiteouts) equals `umoci unpack`'s.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::*;
use ocikit_layout::{Compression, Layout};
use serde_json::Value;

const EPOCH: &str = "1700000000";

fn run_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = ocikit_cmd();
    c.current_dir(cwd).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    run_of(c.output().expect("run ocikit"), cwd)
}

fn ok(r: &Run) {
    assert_eq!(r.code, 0, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
}

fn multiarch(tmp: &Path, name: &str) -> std::path::PathBuf {
    let dest = tmp.join(name);
    copy_tree(&fixtures().join("generated/multiarch"), &dest);
    dest
}

/// The digest `ref` names in `index.json`.
fn ref_digest(dir: &Path, name: &str) -> String {
    let l = Layout::open(dir, opts()).expect("open");
    let idx = l.read_index().expect("index").value;
    ocikit_layout::refs::resolve(&idx, name, dir)
        .expect("ref")
        .digest
        .to_string()
}

/// The index a ref names: its entries' (platform, digest).
fn entries(dir: &Path, name: &str) -> Vec<(String, String)> {
    let l = Layout::open(dir, opts()).expect("open");
    let idx = l.read_index().expect("index").value;
    let d = ocikit_layout::refs::resolve(&idx, name, dir).expect("ref");
    let bytes = l.read_blob(&d.digest, Some(d.size), 1 << 20).expect("read");
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    v["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|e| {
            let p = &e["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap_or("-"),
                p["architecture"].as_str().unwrap_or("-")
            );
            if let Some(v) = p["variant"].as_str() {
                s.push('/');
                s.push_str(v);
            }
            (s, e["digest"].as_str().expect("digest").to_string())
        })
        .collect()
}

/// The uncompressed last layer of the image of `platform` under `name` (a manifest or index).
fn last_layer(dir: &Path, name: &str) -> Vec<u8> {
    let l = Layout::open(dir, opts()).expect("open");
    let idx = l.read_index().expect("index").value;
    let mut d = ocikit_layout::refs::resolve(&idx, name, dir).expect("ref");
    loop {
        let bytes = l.read_blob(&d.digest, Some(d.size), 1 << 20).expect("read");
        let v: Value = serde_json::from_slice(&bytes).expect("json");
        if let Some(m) = v["manifests"].as_array() {
            d = serde_json::from_value(m[0].clone()).expect("desc");
            continue;
        }
        let layer = v["layers"]
            .as_array()
            .expect("layers")
            .last()
            .expect("one")
            .clone();
        let ld: ocikit_layout::Descriptor = serde_json::from_value(layer).expect("desc");
        let blob = l
            .read_blob(&ld.digest, Some(ld.size), u64::MAX)
            .expect("blob");
        let mut out = Vec::new();
        match ld.media_type.compression() {
            Some(Compression::Gzip) => {
                flate2::read::MultiGzDecoder::new(&blob[..])
                    .read_to_end(&mut out)
                    .expect("gunzip");
            }
            Some(Compression::Zstd) => out = zstd::decode_all(&blob[..]).expect("unzstd"),
            _ => out = blob,
        }
        return out;
    }
}

/// Each member of a tar: `name type mode uid:gid mtime size link [xattrs]`.
fn tar_listing(tar_bytes: &[u8]) -> Vec<String> {
    let mut ar = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let h = e.header().clone();
        let mut mtime = h.mtime().expect("mtime").to_string();
        let mut xattrs = Vec::new();
        if let Some(ext) = e.pax_extensions().expect("pax") {
            for r in ext {
                let r = r.expect("record");
                match r.key().expect("key") {
                    "mtime" => mtime = r.value().expect("v").to_string(),
                    k if k.starts_with("SCHILY.xattr.") => xattrs.push(format!(
                        "{}={}",
                        &k[13..],
                        String::from_utf8_lossy(r.value_bytes())
                    )),
                    _ => {}
                }
            }
        }
        let link = e
            .link_name()
            .expect("link")
            .map(|l| format!(" -> {}", l.display()))
            .unwrap_or_default();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let mut s = format!(
            "{name} {:?} {:o} {}:{} {mtime} {}{link}",
            h.entry_type(),
            h.mode().expect("mode"),
            h.uid().expect("uid"),
            h.gid().expect("gid"),
            h.size().expect("size"),
        );
        if !xattrs.is_empty() {
            s.push_str(&format!(" [{}]", xattrs.join(",")));
        }
        let mut sink = Vec::new();
        e.read_to_end(&mut sink).expect("data");
        out.push(s);
    }
    out
}

fn set_mtime(p: &Path, secs: i64, nsec: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: nsec,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .expect("utimensat");
}

/// A source tree; `variant` changes what must not matter: creation order, umask-like modes,
/// mtimes after the epoch.
fn make_src(dir: &Path, variant: u32) {
    let long = format!("d/{}/file", "x".repeat(120));
    let mut files: Vec<(&str, &[u8], bool)> = vec![
        ("bin/tool", b"#!/bin/sh\necho tool\n", true),
        ("etc/conf", b"key=value\n", false),
        ("etc/old", b"old\n", false),
        (&long, b"long\n", false),
    ];
    if variant == 1 {
        files.reverse();
    }
    for (name, data, exec) in &files {
        let p = dir.join(name);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, data).expect("write");
        let mode = match (exec, variant) {
            (true, 0) => 0o755,
            (true, _) => 0o775,
            (false, 0) => 0o644,
            (false, _) => 0o664,
        };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    fs::create_dir_all(dir.join("var/empty")).expect("mkdir");
    std::os::unix::fs::symlink("tool", dir.join("bin/tool-link")).expect("symlink");
    std::os::unix::fs::symlink("../../outside", dir.join("bin/out")).expect("symlink");
    fs::hard_link(dir.join("bin/tool"), dir.join("bin/hard")).expect("link");
    // After the epoch (clamped), differently per variant.
    let future = 1_800_000_000 + i64::from(variant) * 1000;
    for p in [
        "bin/tool",
        "bin/tool-link",
        "bin/out",
        "etc/conf",
        "var/empty",
        "var",
        "bin",
        "etc",
        "d",
        &long,
    ] {
        set_mtime(&dir.join(p), future, 123);
    }
    // Before the epoch: kept, with its nanoseconds.
    set_mtime(&dir.join("etc/old"), 1000, 500_000_000);
    let dpath = dir.join(long.trim_end_matches("/file"));
    set_mtime(&dpath, future, 0);
}

#[test]
fn append_of_the_same_tree_made_two_ways_gives_the_same_digest() {
    let tmp = tempdir();
    let mut digests = Vec::new();
    for variant in 0..2 {
        let base = tmp.path().join(format!("v{variant}"));
        let src = base.join("src");
        make_src(&src, variant);
        let lay = multiarch(&base, "lay");
        let r = run_env(
            &base,
            &[
                "append", "lay", "app:1", "--layer", "src", "--prefix", "/opt/app",
            ],
            &[("SOURCE_DATE_EPOCH", EPOCH)],
        );
        ok(&r);
        digests.push(ref_digest(&lay, "app:1"));
        let r = ocikit(&base, &["fsck", "--deep", "lay"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        if variant == 0 {
            let long = format!("opt/app/d/{}/", "x".repeat(120));
            assert_eq!(
                tar_listing(&last_layer(&lay, "app:1")),
                [
                    "opt/ Directory 755 0:0 1700000000 0".to_string(),
                    "opt/app/ Directory 755 0:0 1700000000 0".into(),
                    "opt/app/bin/ Directory 755 0:0 1700000000 0".into(),
                    "opt/app/bin/hard Regular 755 0:0 1700000000 20".into(),
                    "opt/app/bin/out Symlink 777 0:0 1700000000 0 -> ../../outside".into(),
                    "opt/app/bin/tool Link 755 0:0 1700000000 0 -> opt/app/bin/hard".into(),
                    "opt/app/bin/tool-link Symlink 777 0:0 1700000000 0 -> tool".into(),
                    "opt/app/d/ Directory 755 0:0 1700000000 0".into(),
                    format!("{long} Directory 755 0:0 1700000000 0"),
                    format!("{long}file Regular 644 0:0 1700000000 5"),
                    "opt/app/etc/ Directory 755 0:0 1700000000 0".into(),
                    "opt/app/etc/conf Regular 644 0:0 1700000000 10".into(),
                    "opt/app/etc/old Regular 644 0:0 1000.5 4".into(),
                    "opt/app/var/ Directory 755 0:0 1700000000 0".into(),
                    "opt/app/var/empty/ Directory 755 0:0 1700000000 0".into(),
                ]
            );
        }
    }
    assert_eq!(digests[0], digests[1], "the same tree, the same image");
    assert_eq!(
        digests[0],
        "sha256:aad0838e6c85bebf7f7a759d3da7426e61da757146cfd0450eec7bdf6af0cb5c"
    );
}

#[test]
fn append_on_an_index_changes_every_platform_or_the_chosen_ones_only() {
    let tmp = tempdir();
    let lay = multiarch(tmp.path(), "lay");
    let before = entries(&lay, "app:1");
    fs::create_dir_all(tmp.path().join("src")).expect("mkdir");
    fs::write(tmp.path().join("src/added"), b"added\n").expect("write");
    // --platform: only arm64 changes; the other entries keep their bytes (ggcr 1056, 1456).
    let r = run_env(
        tmp.path(),
        &[
            "append",
            "lay",
            "app:1",
            "--layer",
            "src",
            "--platform",
            "linux/arm64",
        ],
        &[("SOURCE_DATE_EPOCH", EPOCH)],
    );
    ok(&r);
    let after = entries(&lay, "app:1");
    // Three images and an attestation manifest (which describes the amd64 image, and is left
    // alone).
    assert_eq!(after.len(), 4);
    assert_eq!(after[3].0, "unknown/unknown");
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.0, b.0);
        assert_eq!(a.1 == b.1, a.0 != "linux/arm64/v8", "{a:?} vs {b:?}");
    }
    assert_eq!(
        r.stderr,
        format!(
            "app:1: sha256:c2db98dcac48085a4d404691f72f179301110ef21e6af7f21d5ba0bbb1ea640f -> {} (1 image(s) changed: linux/arm64/v8)\n",
            ref_digest(&lay, "app:1")
        )
    );
    // Without: every platform, the index rewritten, fsck clean.
    let r = run_env(
        tmp.path(),
        &["append", "lay", "app:1", "--layer", "src"],
        &[("SOURCE_DATE_EPOCH", EPOCH)],
    );
    ok(&r);
    let all = entries(&lay, "app:1");
    for (b, a) in after.iter().zip(&all) {
        assert_eq!(a.1 == b.1, a.0 == "unknown/unknown", "{a:?} vs {b:?}");
    }
    let r = ocikit(tmp.path(), &["fsck", "--deep", "lay"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The untagged artifact entry of index.json is untouched.
    let ls = ocikit(tmp.path(), &["ls", "--json", "lay"]).json();
    assert_eq!(
        ls[1]["digest"],
        "sha256:9a3671ff4395d188d0bdccfd19090dcfcd7130deb8d3a70ed1627c62f1a522ef"
    );
    // A platform nobody has: exit 2, nothing written.
    let old = fs::read(lay.join("index.json")).expect("read");
    let r = ocikit(
        tmp.path(),
        &[
            "append",
            "lay",
            "app:1",
            "--layer",
            "src",
            "--platform",
            "linux/s390x",
        ],
    );
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: ref `app:1`: no image of platform linux/s390x\n"
    );
    assert_eq!(fs::read(lay.join("index.json")).expect("read"), old);
}

#[test]
fn append_to_names_the_result_and_keeps_the_ref() {
    let tmp = tempdir();
    let lay = multiarch(tmp.path(), "lay");
    let tarball = tar_of(&[("from-tar.txt", b"tar\n")]);
    fs::write(tmp.path().join("l.tar"), &tarball).expect("write");
    let r = run_env(
        tmp.path(),
        &[
            "append", "lay", "app:1", "--layer", "l.tar", "--to", "app:2",
        ],
        &[("SOURCE_DATE_EPOCH", EPOCH)],
    );
    ok(&r);
    assert_eq!(
        ref_digest(&lay, "app:1"),
        "sha256:c2db98dcac48085a4d404691f72f179301110ef21e6af7f21d5ba0bbb1ea640f"
    );
    // The tar is taken as it is (uncompressed): its digest is its diff_id.
    assert_eq!(last_layer(&lay, "app:2"), tarball);
    let cfg = ocikit(tmp.path(), &["config", "lay", "app:2", "--json"]).json();
    assert_eq!(cfg.as_array().expect("array").len(), 3);
    for c in cfg.as_array().expect("array") {
        let ids = c["document"]["rootfs"]["diff_ids"].as_array().expect("ids");
        assert_eq!(
            ids.last().expect("one").as_str(),
            Some(ocikit_layout::Digest::sha256(&tarball).as_str())
        );
        assert_eq!(
            c["document"]["history"].as_array().expect("history").last(),
            Some(
                &serde_json::json!({"created": "2023-11-14T22:13:20Z", "created_by": "ocikit append"})
            )
        );
    }
    let r = ocikit(tmp.path(), &["fsck", "--deep", "lay"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn config_edits_every_platform_and_keeps_what_it_does_not_edit() {
    let tmp = tempdir();
    let lay = multiarch(tmp.path(), "lay");
    let r = ocikit(
        tmp.path(),
        &[
            "config",
            "lay",
            "app:1",
            "--env",
            "A=1",
            "--env",
            "PATH=/bin",
            "--entrypoint",
            "[\"/app\",\"--serve\"]",
            "--label",
            "org.example=x",
            "--expose",
            "8080",
            "--workdir",
            "/srv",
            "--user",
            "1000",
            "--annotation",
            "note=yes",
            "--platform",
            "linux/amd64",
        ],
    );
    ok(&r);
    let cfg = ocikit(
        tmp.path(),
        &[
            "config",
            "lay",
            "app:1",
            "--json",
            "--platform",
            "linux/amd64",
        ],
    )
    .json();
    assert_eq!(
        cfg[0]["document"]["config"],
        serde_json::json!({
            "Env": ["PATH=/bin", "A=1"],
            "Cmd": null,
            "Entrypoint": ["/app", "--serve"],
            "User": "1000",
            "WorkingDir": "/srv",
            "Labels": {"org.example": "x"},
            "ExposedPorts": {"8080/tcp": {}},
        })
    );
    let others = ocikit(
        tmp.path(),
        &[
            "config",
            "lay",
            "app:1",
            "--json",
            "--platform",
            "linux/arm64",
        ],
    )
    .json();
    assert_eq!(
        others[0]["document"]["config"]["Env"],
        serde_json::json!(["PATH=/usr/bin"])
    );
    let r = ocikit(tmp.path(), &["fsck", "--deep", "lay"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // --cmd with --entrypoint keeps both; a shell string runs through /bin/sh -c.
    ok(&ocikit(
        tmp.path(),
        &[
            "config",
            "lay",
            "app:1",
            "--entrypoint",
            "run me",
            "--cmd",
            "[\"x\"]",
        ],
    ));
    let cfg = ocikit(tmp.path(), &["config", "lay", "app:1", "--json"]).json();
    for c in cfg.as_array().expect("array") {
        assert_eq!(
            c["document"]["config"]["Entrypoint"],
            serde_json::json!(["/bin/sh", "-c", "run me"])
        );
        assert_eq!(c["document"]["config"]["Cmd"], serde_json::json!(["x"]));
    }
    // A created time that is not RFC 3339 is refused, naming the manifest; nothing written.
    let old = fs::read(lay.join("index.json")).expect("read");
    let r = ocikit(
        tmp.path(),
        &["config", "lay", "app:1", "--created", "yesterday"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("ocikit: error: the edited config of manifest `sha256:"),
        "{}",
        r.stderr
    );
    assert_eq!(fs::read(lay.join("index.json")).expect("read"), old);
}

#[test]
fn index_create_from_two_platforms_then_copy_selects_from_it() {
    let tmp = tempdir();
    let lay = multiarch(tmp.path(), "lay");
    let e = entries(&lay, "app:1");
    let r = ocikit(
        tmp.path(),
        &[
            "index",
            "create",
            "lay",
            "pair",
            &e[0].1,
            &e[2].1,
            "--annotation",
            "k=v",
        ],
    );
    ok(&r);
    let got = entries(&lay, "pair");
    assert_eq!(got, vec![e[0].clone(), e[2].clone()]);
    let r = ocikit(tmp.path(), &["fsck", "--deep", "lay"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = ocikit(
        tmp.path(),
        &["copy", "lay", "out", "pair", "--platform", "linux/arm"],
    );
    ok(&r);
    let out = tmp.path().join("out");
    assert_eq!(entries(&out, "pair"), vec![e[2].clone()]);
    // Flattening: an index given is its entries.
    ok(&ocikit(
        tmp.path(),
        &["index", "create", "lay", "flat", "app:1"],
    ));
    assert_eq!(entries(&lay, "flat"), e);
    ok(&ocikit(
        tmp.path(),
        &["index", "create", "lay", "nested", "app:1", "--nested"],
    ));
    assert_eq!(
        entries(&lay, "nested"),
        vec![("-/-".to_string(), ref_digest(&lay, "app:1"))]
    );
    // add and remove.
    ok(&ocikit(
        tmp.path(),
        &["index", "add", "lay", "pair", &e[1].1],
    ));
    assert_eq!(
        entries(&lay, "pair"),
        vec![e[0].clone(), e[2].clone(), e[1].clone()]
    );
    ok(&ocikit(
        tmp.path(),
        &[
            "index",
            "remove",
            "lay",
            "pair",
            "--platform",
            "linux/amd64",
            &e[2].1,
        ],
    ));
    assert_eq!(entries(&lay, "pair"), vec![e[1].clone()]);
    let r = ocikit(tmp.path(), &["index", "remove", "lay", "pair", &e[1].1]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: index `pair`: removing 1 entries leaves it empty\n"
    );
}

/// One member of a crafted layer.
enum M<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

/// A layer tar with names written as given (no checks: hostile layers too).
fn layer(members: &[M<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let mut h = tar::Header::new_ustar();
        let (name, kind, data, link): (&str, _, &[u8], Option<&str>) = match m {
            M::File(n, d) => (n, tar::EntryType::Regular, d, None),
            M::Dir(n) => (n, tar::EntryType::Directory, b"", None),
            M::Sym(n, t) => (n, tar::EntryType::Symlink, b"", Some(t)),
            M::Hard(n, t) => (n, tar::EntryType::Link, b"", Some(t)),
        };
        let ustar = h.as_ustar_mut().expect("ustar");
        ustar.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            ustar.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).expect("append");
    }
    b.into_inner().expect("tar")
}

fn image_of(dir: &Path, tag: &str, layers: &[Vec<u8>]) {
    let specs: Vec<LayerSpec> = layers
        .iter()
        .map(|t| LayerSpec {
            tar: t.clone(),
            compression: Compression::Gzip,
            media_type: None,
        })
        .collect();
    add_image(dir, tag, &specs, None);
}

/// Every path under `root`: `path type mode size nlink [-> target]`, sorted.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let m = fs::symlink_metadata(&p).expect("stat");
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let t = m.file_type();
            let kind = if t.is_dir() {
                stack.push(p.clone());
                "dir"
            } else if t.is_symlink() {
                "symlink"
            } else if t.is_file() {
                "file"
            } else {
                "other"
            };
            let mut s = format!("{rel} {kind} {:o}", m.mode() & 0o7777);
            if t.is_file() {
                s.push_str(&format!(" {} n{}", m.len(), m.nlink()));
            }
            if t.is_symlink() {
                s.push_str(&format!(
                    " -> {}",
                    fs::read_link(&p).expect("link").display()
                ));
            }
            out.push(s);
        }
    }
    out.sort();
    out
}

fn lower_and_upper() -> Vec<Vec<u8>> {
    vec![
        layer(&[
            M::Dir("a/"),
            M::File("a/old", b"old"),
            M::File("a/keep", b"keep"),
            M::Dir("a/sub/"),
            M::File("a/sub/deep", b"deep"),
            M::Dir("b/"),
            M::File("b/file", b"file"),
            M::File("b/stay", b"stay"),
            M::Dir("lib/"),
            M::File("lib/real", b"real"),
            M::Sym("s3", "lib/real"),
            M::Sym("s2", "s3"),
            M::Sym("s1", "s2"),
            M::Sym("out", "../../../../etc"),
        ]),
        layer(&[
            // Added by this layer before its opaque marker: kept (ggcr 2372 removed it).
            M::File("a/early", b"early"),
            M::File("a/.wh..wh..opq", b""),
            M::File("a/late", b"late"),
            M::File("b/.wh.file", b""),
            // A hard link before its target.
            M::Hard("c/link", "c/target"),
            M::File("c/target", b"target"),
        ]),
    ]
}

#[test]
fn unpack_applies_whiteouts_per_layer_and_links_in_any_order() {
    let tmp = tempdir();
    image_of(&tmp.path().join("lay"), "img", &lower_and_upper());
    let r = ocikit(tmp.path(), &["unpack", "lay", "img", "rootfs"]);
    ok(&r);
    assert_eq!(
        tree(&tmp.path().join("rootfs")),
        [
            "a dir 755",
            "a/early file 644 5 n1",
            "a/late file 644 4 n1",
            "b dir 755",
            "b/stay file 644 4 n1",
            "c dir 755",
            "c/link file 644 6 n2",
            "c/target file 644 6 n2",
            "lib dir 755",
            "lib/real file 644 4 n1",
            "out symlink 777 -> ../../../../etc",
            "s1 symlink 777 -> s2",
            "s2 symlink 777 -> s3",
            "s3 symlink 777 -> lib/real",
        ]
    );
    let m = fs::metadata(tmp.path().join("rootfs/a/early")).expect("stat");
    assert_eq!(m.mtime(), 1_600_000_000);
    let m = fs::symlink_metadata(tmp.path().join("rootfs/a")).expect("stat");
    assert_eq!(m.mtime(), 1_600_000_000, "directory times are set last");
    // The target must be absent or empty.
    let r = ocikit(tmp.path(), &["unpack", "lay", "img", "rootfs"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: `rootfs`: exists and is not an empty directory\n"
    );
}

#[test]
fn unpack_never_writes_outside_the_root() {
    let tmp = tempdir();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    let abs = outside.display().to_string();
    // An absolute symlink, then a file written through it: it lands inside the root.
    let through = format!("{}/file", "esc");
    image_of(
        &tmp.path().join("lay"),
        "through",
        &[layer(&[
            M::Sym("esc", &abs),
            M::File(&through, b"x"),
            M::Sym("up", "../.."),
            M::File("up/y", b"y"),
        ])],
    );
    ok(&ocikit(tmp.path(), &["unpack", "lay", "through", "r1"]));
    assert_eq!(
        fs::read_dir(&outside).expect("read").count(),
        0,
        "nothing outside"
    );
    let inside = tmp
        .path()
        .join("r1")
        .join(abs.trim_start_matches('/'))
        .join("file");
    assert_eq!(fs::read(&inside).expect("inside the root"), b"x");
    assert_eq!(
        fs::read(tmp.path().join("r1/y")).expect("clamped at the root"),
        b"y"
    );
    assert!(!tmp.path().join("y").exists());

    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "dotdot",
            layer(&[M::File("../evil", b"evil")]),
            "member `../evil`: `..` in path",
        ),
        (
            "hardlink",
            layer(&[M::Hard("pw", "/etc/passwd")]),
            "member `pw`: hard link to `/etc/passwd` leaves the archive (absolute path)",
        ),
        (
            "dotwhiteout",
            layer(&[M::Dir("d/"), M::File("d/.wh..", b"")]),
            "entry `d/.wh..`: a whiteout that names no file",
        ),
    ];
    for (tag, l, msg) in cases {
        image_of(&tmp.path().join("lay"), tag, &[l]);
        let r = ocikit(tmp.path(), &["unpack", "lay", tag, "r2"]);
        assert_eq!(r.code, 2, "{tag}: {}", r.stderr);
        assert!(r.stderr.contains(msg), "{tag}: {}", r.stderr);
        assert!(
            !tmp.path().join("r2").exists(),
            "{tag}: the root it made is removed"
        );
        assert!(!tmp.path().join("evil").exists());
    }
    // An empty root given is left empty.
    fs::create_dir(tmp.path().join("r3")).expect("mkdir");
    image_of(
        &tmp.path().join("lay"),
        "late-fail",
        &[layer(&[M::File("ok", b"ok"), M::Hard("bad", "nowhere")])],
    );
    let r = ocikit(tmp.path(), &["unpack", "lay", "late-fail", "r3"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains(
            "entry `bad`: hard link to `nowhere`, which neither this layer nor a lower one has"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(
        fs::read_dir(tmp.path().join("r3")).expect("read").count(),
        0
    );
}

/// Is `tool` on PATH? If not, say so (the test then returns without checking anything).
fn have(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()));
    if !found {
        eprintln!("skipping: `{tool}` is not on PATH (.ci/run installs it)");
    }
    found
}

fn peer(cwd: &Path, tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn umoci_unpacks_what_append_made_to_the_same_tree() {
    if !have("umoci") {
        return;
    }
    let tmp = tempdir();
    let mut layers = lower_and_upper();
    // umoci links a hard link only to a target already unpacked: keep that case to our test.
    layers[1] = layer(&[
        M::File("a/early", b"early"),
        M::File("a/.wh..wh..opq", b""),
        M::File("a/late", b"late"),
        M::File("b/.wh.file", b""),
        M::File("c/target", b"target"),
        M::Hard("c/link", "c/target"),
    ]);
    image_of(&tmp.path().join("lay"), "img", &layers);
    let src = tmp.path().join("src");
    make_src(&src, 0);
    ok(&run_env(
        tmp.path(),
        &[
            "append", "lay", "img", "--layer", "src", "--delete", "lib/real", "--prefix", "/app",
        ],
        &[("SOURCE_DATE_EPOCH", EPOCH)],
    ));
    ok(&ocikit(tmp.path(), &["unpack", "lay", "img", "ours"]));
    peer(
        tmp.path(),
        "umoci",
        &["unpack", "--image", "lay:img", "bundle"],
    );
    let ours = tree(&tmp.path().join("ours"));
    assert_eq!(ours, tree(&tmp.path().join("bundle/rootfs")));
    assert!(
        ours.contains(&"app/bin/hard file 755 20 n2".to_string()),
        "{ours:?}"
    );
    assert!(!ours.iter().any(|l| l.starts_with("lib/real")), "{ours:?}");
}

#[test]
fn ocikit_unpacks_what_umoci_made_to_the_same_tree() {
    if !have("umoci") {
        return;
    }
    let tmp = tempdir();
    let t = tmp.path();
    peer(t, "umoci", &["init", "--layout", "lay"]);
    peer(t, "umoci", &["new", "--image", "lay:img"]);
    peer(t, "umoci", &["unpack", "--image", "lay:img", "b1"]);
    let root = t.join("b1/rootfs");
    fs::create_dir_all(root.join("etc/conf.d")).expect("mkdir");
    fs::write(root.join("etc/conf.d/one"), b"1").expect("write");
    fs::write(root.join("etc/conf.d/two"), b"2").expect("write");
    fs::write(root.join("etc/gone"), b"gone").expect("write");
    std::os::unix::fs::symlink("conf.d/one", root.join("etc/first")).expect("symlink");
    fs::hard_link(root.join("etc/conf.d/two"), root.join("etc/two-again")).expect("link");
    peer(t, "umoci", &["repack", "--image", "lay:img", "b1"]);
    peer(t, "umoci", &["unpack", "--image", "lay:img", "b2"]);
    let root = t.join("b2/rootfs");
    fs::remove_file(root.join("etc/gone")).expect("rm");
    fs::remove_dir_all(root.join("etc/conf.d")).expect("rm");
    fs::create_dir(root.join("etc/conf.d")).expect("mkdir");
    fs::write(root.join("etc/conf.d/three"), b"3").expect("write");
    peer(t, "umoci", &["repack", "--image", "lay:img", "b2"]);
    peer(t, "umoci", &["unpack", "--image", "lay:img", "theirs"]);
    ok(&ocikit(t, &["unpack", "lay", "img", "ours"]));
    let ours = tree(&t.join("ours"));
    assert_eq!(ours, tree(&t.join("theirs/rootfs")));
    assert!(
        ours.contains(&"etc/conf.d/three file 644 1 n1".to_string()),
        "{ours:?}"
    );
    assert!(!ours
        .iter()
        .any(|l| l.starts_with("etc/gone") || l.starts_with("etc/conf.d/one")));
}

/// Devices, FIFOs and xattrs are packed (as root, on a file system with user xattrs) and
/// unpacked (devices only as root, skipped with one note under --rootless).
#[test]
fn devices_fifos_and_xattrs_round_trip() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("f"), b"f").expect("write");
    let fifo = rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_bits_truncate(0o644),
        0,
    );
    fifo.expect("mkfifo");
    let dev = rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_bits_truncate(0o666),
        rustix::fs::makedev(1, 3),
    )
    .is_ok();
    if !dev {
        eprintln!("notice: mknod not permitted here; device nodes not checked");
    }
    let xattr = rustix::fs::setxattr(
        src.join("f"),
        "user.test",
        b"1",
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok();
    if !xattr {
        eprintln!("notice: user xattrs not supported here; xattrs not checked");
    }
    std::os::unix::net::UnixListener::bind(src.join("sock")).expect("socket");
    image_of(
        &tmp.path().join("lay"),
        "img",
        &[layer(&[M::File("base", b"b")])],
    );
    let r = run_env(
        tmp.path(),
        &["append", "lay", "img", "--layer", "src"],
        &[("SOURCE_DATE_EPOCH", EPOCH)],
    );
    ok(&r);
    assert!(
        r.stderr
            .contains("src/sock` is a socket, which a layer cannot hold; left out"),
        "{}",
        r.stderr
    );
    let listing = tar_listing(&last_layer(&tmp.path().join("lay"), "img"));
    let f = if xattr {
        "f Regular 644 0:0 1700000000 1 [user.test=1]"
    } else {
        "f Regular 644 0:0 1700000000 1"
    };
    let mut expect = vec![f.to_string()];
    if dev {
        expect.push("null Char 644 0:0 1700000000 0".into());
    }
    expect.push("pipe Fifo 644 0:0 1700000000 0".into());
    assert_eq!(listing, expect);
    ok(&ocikit(tmp.path(), &["unpack", "lay", "img", "root"]));
    let t = tree(&tmp.path().join("root"));
    assert!(t.contains(&"pipe other 644".to_string()), "{t:?}");
    if dev {
        assert!(t.contains(&"null other 644".to_string()), "{t:?}");
        let r = ocikit(
            tmp.path(),
            &["unpack", "lay", "img", "rootless", "--rootless"],
        );
        ok(&r);
        assert!(
            r.stderr.starts_with("note: 1 device node(s) skipped"),
            "{}",
            r.stderr
        );
        assert!(!tmp.path().join("rootless/null").exists());
    }
    if xattr {
        let mut v = [0u8; 8];
        let n = rustix::fs::getxattr(tmp.path().join("root/f"), "user.test", &mut v[..])
            .expect("xattr");
        assert_eq!(&v[..n], b"1");
    }
}

/// sha256 of bytes, `sha256:...`.
fn sha256(bytes: &[u8]) -> String {
    ocikit_layout::Digest::of(ocikit_layout::Algorithm::Sha256, bytes).to_string()
}

/// The image (manifest and config documents) of `name`, the first of an index.
fn image_docs(dir: &Path, name: &str) -> (Value, Value) {
    let l = Layout::open(dir, opts()).expect("open");
    let idx = l.read_index().expect("index").value;
    let mut d = ocikit_layout::refs::resolve(&idx, name, dir).expect("ref");
    loop {
        let bytes = l.read_blob(&d.digest, Some(d.size), 1 << 20).expect("read");
        let v: Value = serde_json::from_slice(&bytes).expect("json");
        if let Some(m) = v["manifests"].as_array() {
            d = serde_json::from_value(m[0].clone()).expect("desc");
            continue;
        }
        let c: ocikit_layout::Descriptor =
            serde_json::from_value(v["config"].clone()).expect("config");
        let cb = l.read_blob(&c.digest, Some(c.size), 1 << 20).expect("read");
        return (v, serde_json::from_slice(&cb).expect("json"));
    }
}

/// The squashed layer of `lower_and_upper`: what survives, sorted, in one layer; the hard link
/// group's first name in sorted order holds the data; same bytes on every run.
#[test]
fn unpack_squash_writes_the_flattened_rootfs_as_one_sorted_tar() {
    let tmp = tempdir();
    let t = tmp.path();
    image_of(&t.join("lay"), "img", &lower_and_upper());
    let env = [("SOURCE_DATE_EPOCH", EPOCH)];
    let r = run_env(t, &["unpack", "lay", "img", "--squash", "flat.tar"], &env);
    ok(&r);
    let bytes = fs::read(t.join("flat.tar")).expect("read");
    assert_eq!(
        tar_listing(&bytes),
        [
            "a/ Directory 755 0:0 1600000000 0",
            "a/early Regular 644 0:0 1600000000 5",
            "a/late Regular 644 0:0 1600000000 4",
            "b/ Directory 755 0:0 1600000000 0",
            "b/stay Regular 644 0:0 1600000000 4",
            "c/ Directory 755 0:0 1700000000 0",
            "c/link Regular 644 0:0 1600000000 6",
            "c/target Link 644 0:0 1600000000 0 -> c/link",
            "lib/ Directory 755 0:0 1600000000 0",
            "lib/real Regular 644 0:0 1600000000 4",
            "out Symlink 644 0:0 1600000000 0 -> ../../../../etc",
            "s1 Symlink 644 0:0 1600000000 0 -> s2",
            "s2 Symlink 644 0:0 1600000000 0 -> s3",
            "s3 Symlink 644 0:0 1600000000 0 -> lib/real",
        ]
    );
    assert_eq!(
        sha256(&bytes),
        "sha256:f06450e6e16d1cf5a6954bf3a6e23e1db701eb2e118c5268df6d4b4c7a61b0ba"
    );
    // Again: the same bytes.
    ok(&run_env(
        t,
        &["unpack", "lay", "img", "--squash", "again.tar"],
        &env,
    ));
    assert_eq!(fs::read(t.join("again.tar")).expect("read"), bytes);
    // Unpacked, the one layer makes the tree the two layers make.
    image_of(&t.join("lay2"), "flat", &[bytes]);
    ok(&ocikit(t, &["unpack", "lay", "img", "two"]));
    ok(&ocikit(t, &["unpack", "lay2", "flat", "one"]));
    assert_eq!(tree(&t.join("one")), tree(&t.join("two")));
}

/// `squash --to`: one layer (the bytes `unpack --squash` writes), one diff_id, one history
/// entry, the ref kept; squashing the result again changes nothing; fsck clean.
#[test]
fn squash_makes_an_image_of_one_layer_and_is_idempotent() {
    let tmp = tempdir();
    let t = tmp.path();
    image_of(&t.join("lay"), "img", &lower_and_upper());
    let before = ref_digest(&t.join("lay"), "img");
    let env = [("SOURCE_DATE_EPOCH", EPOCH)];
    let r = run_env(t, &["squash", "lay", "img", "--to", "flat"], &env);
    ok(&r);
    let flat = ref_digest(&t.join("lay"), "flat");
    assert_eq!(
        r.stderr,
        format!("flat: created, {flat} (1 image(s) changed: linux/amd64)\n")
    );
    assert_eq!(
        flat,
        "sha256:3410b7dfe2960c2242175fbaefb2f51aaa04f03b003656cd7e05deeeb0a09258"
    );
    assert_eq!(ref_digest(&t.join("lay"), "img"), before);
    let (m, c) = image_docs(&t.join("lay"), "flat");
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m["layers"].as_array().expect("layers").len(), 1);
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        c["rootfs"],
        serde_json::json!({"type": "layers", "diff_ids": [
            "sha256:f06450e6e16d1cf5a6954bf3a6e23e1db701eb2e118c5268df6d4b4c7a61b0ba"
        ]})
    );
    assert_eq!(
        c["history"],
        serde_json::json!([{"created": "2023-11-14T22:13:20Z", "created_by": "ocikit squash"}])
    );
    ok(&ocikit(t, &["fsck", "lay"]));
    // The squashed image unpacks to the tree the original does.
    ok(&ocikit(t, &["unpack", "lay", "img", "orig"]));
    ok(&ocikit(t, &["unpack", "lay", "flat", "flat"]));
    assert_eq!(tree(&t.join("flat")), tree(&t.join("orig")));
    // Squashing a squashed image gives it back.
    let r = run_env(t, &["squash", "lay", "flat"], &env);
    ok(&r);
    assert_eq!(r.stderr, format!("flat: {flat} unchanged\n"));
    assert_eq!(ref_digest(&t.join("lay"), "flat"), flat);
}

/// On an index: every platform squashed (the attestation left alone), or the --platform ones.
#[test]
fn squash_on_an_index_changes_every_platform_or_the_chosen_ones_only() {
    let tmp = tempdir();
    let t = tmp.path();
    let lay = multiarch(t, "lay");
    let before = entries(&lay, "app:1");
    let env = [("SOURCE_DATE_EPOCH", EPOCH)];
    ok(&run_env(
        t,
        &[
            "squash",
            "lay",
            "app:1",
            "--platform",
            "linux/arm64",
            "--to",
            "one",
        ],
        &env,
    ));
    let one = entries(&lay, "one");
    assert_eq!(one.len(), 4);
    for (b, a) in before.iter().zip(&one) {
        assert_eq!(a.0, b.0);
        assert_eq!(a.1 == b.1, a.0 != "linux/arm64/v8", "{a:?} vs {b:?}");
    }
    let r = run_env(t, &["squash", "lay", "app:1"], &env);
    ok(&r);
    let all = entries(&lay, "app:1");
    for (b, a) in before.iter().zip(&all) {
        assert_eq!(a.1 == b.1, a.0 == "unknown/unknown", "{a:?} vs {b:?}");
    }
    assert_eq!(
        ref_digest(&lay, "app:1"),
        "sha256:3961c8dc4af0f78368ef9888a9849b7e26df81c890445373d961224822953bcd"
    );
    ok(&ocikit(t, &["fsck", "lay"]));
    for p in ["linux/amd64", "linux/arm64"] {
        let dir = p.replace('/', "-");
        ok(&ocikit(
            t,
            &["unpack", "lay", "one", &format!("o-{dir}"), "--platform", p],
        ));
        ok(&ocikit(
            t,
            &[
                "unpack",
                "lay",
                "app:1",
                &format!("s-{dir}"),
                "--platform",
                p,
            ],
        ));
        assert_eq!(
            tree(&t.join(format!("o-{dir}"))),
            tree(&t.join(format!("s-{dir}")))
        );
    }
}

/// A Docker image stays a Docker image, its layer a Docker gzip layer; zstd is refused.
#[test]
fn squash_keeps_the_manifest_family() {
    let tmp = tempdir();
    let t = tmp.path();
    image_of(&t.join("lay"), "img", &lower_and_upper());
    ok(&ocikit(t, &["convert", "lay", "img", "--to", "docker"]));
    let r = ocikit(t, &["squash", "lay", "img", "--compress", "zstd"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .ends_with("is a Docker manifest, which cannot hold zstd layers\n"),
        "{}",
        r.stderr
    );
    ok(&ocikit(t, &["squash", "lay", "img"]));
    let (m, c) = image_docs(&t.join("lay"), "img");
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(c["rootfs"]["diff_ids"].as_array().expect("ids").len(), 1);
    ok(&ocikit(t, &["fsck", "lay"]));
}

/// Bad usage and bad refs: exit 2, one line, nothing written.
#[test]
fn squash_refuses_bad_input() {
    let tmp = tempdir();
    let t = tmp.path();
    image_of(&t.join("lay"), "img", &lower_and_upper());
    let r = ocikit(t, &["unpack", "lay", "img", "root", "--squash", "x.tar"]);
    assert_eq!(r.code, 2);
    assert!(!t.join("root").exists() && !t.join("x.tar").exists());
    let r = ocikit(t, &["unpack", "lay", "img"]);
    assert_eq!(r.code, 2);
    let r = ocikit(t, &["unpack", "lay", "nope", "--squash", "x.tar"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: no ref or digest `nope` in `lay/index.json`\n"
    );
    assert!(!t.join("x.tar").exists());
    let r = ocikit(t, &["squash", "lay", "nope"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: no ref or digest `nope` in `lay/index.json`\n"
    );
    // An escaping entry: refused naming it, nothing written, no ref moved.
    image_of(
        &t.join("lay"),
        "evil",
        &[layer(&[M::File("../evil", b"x")])],
    );
    let before = fs::read(t.join("lay/index.json")).expect("read");
    let r = ocikit(t, &["unpack", "lay", "evil", "--squash", "x.tar"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.ends_with("member `../evil`: `..` in path\n"),
        "{}",
        r.stderr
    );
    assert!(!t.join("x.tar").exists());
    let r = ocikit(t, &["squash", "lay", "evil"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.ends_with("member `../evil`: `..` in path\n"),
        "{}",
        r.stderr
    );
    assert_eq!(fs::read(t.join("lay/index.json")).expect("read"), before);
}

/// umoci unpacks the squashed image to the tree `ocikit unpack` makes of the original.
#[test]
fn umoci_unpacks_a_squashed_image_to_the_tree_of_the_original() {
    if !have("umoci") {
        return;
    }
    let tmp = tempdir();
    let t = tmp.path();
    let mut layers = lower_and_upper();
    let src = t.join("src");
    make_src(&src, 0);
    image_of(&t.join("lay"), "img", &layers);
    ok(&run_env(
        t,
        &[
            "append", "lay", "img", "--layer", "src", "--delete", "lib/real", "--prefix", "/app",
        ],
        &[("SOURCE_DATE_EPOCH", EPOCH)],
    ));
    layers.clear();
    ok(&ocikit(t, &["squash", "lay", "img", "--to", "flat"]));
    ok(&ocikit(t, &["unpack", "lay", "img", "ours"]));
    peer(t, "umoci", &["unpack", "--image", "lay:flat", "bundle"]);
    let ours = tree(&t.join("ours"));
    assert_eq!(ours, tree(&t.join("bundle/rootfs")));
    assert!(
        ours.contains(&"app/bin/hard file 755 20 n2".to_string()),
        "{ours:?}"
    );
    assert!(
        ours.contains(&"c/link file 644 6 n2".to_string()),
        "{ours:?}"
    );
}

/// Cases where the squash must follow `unpack`'s rules: a hard link keeps the data of a file a
/// later layer hides, a file written through a symlinked directory, a file replacing a
/// directory (and what was in it), a whiteout of something the same layer adds (kept).
#[test]
fn squash_follows_unpack_through_links_and_replacements() {
    let tmp = tempdir();
    let t = tmp.path();
    let layers = vec![
        layer(&[
            M::Dir("d/"),
            M::File("d/x", b"x-data"),
            M::Dir("gone/"),
            M::File("gone/inner", b"inner"),
            M::Sym("lnk", "/d"),
        ]),
        layer(&[M::Hard("h", "d/x"), M::File("lnk/new", b"new")]),
        layer(&[
            M::File("d/.wh..wh..opq", b""),
            M::File("gone", b"now a file"),
            M::File("added", b"a"),
            M::File(".wh.added", b""),
        ]),
    ];
    image_of(&t.join("lay"), "img", &layers);
    ok(&ocikit(
        t,
        &["unpack", "lay", "img", "--squash", "flat.tar"],
    ));
    let bytes = fs::read(t.join("flat.tar")).expect("read");
    assert_eq!(
        tar_listing(&bytes),
        [
            "added Regular 644 0:0 1600000000 1",
            "d/ Directory 755 0:0 1600000000 0",
            "gone Regular 644 0:0 1600000000 10",
            "h Regular 644 0:0 1600000000 6",
            "lnk Symlink 644 0:0 1600000000 0 -> /d",
        ]
    );
    image_of(&t.join("lay2"), "flat", &[bytes]);
    ok(&ocikit(t, &["unpack", "lay", "img", "two"]));
    ok(&ocikit(t, &["unpack", "lay2", "flat", "one"]));
    assert_eq!(tree(&t.join("one")), tree(&t.join("two")));
}

/// Does a Docker daemon answer here? If not, say so (the test then returns).
/// The host's `cat` and the libraries `ldd` names for it, placed under `dir` at their paths
/// (as `cat` at the root): a base layer that runs with no image from a registry.
fn host_cat_tree(dir: &Path) {
    fs::create_dir_all(dir).expect("mkdir");
    fs::copy("/bin/cat", dir.join("cat")).expect("copy cat");
    let out = Command::new("ldd").arg("/bin/cat").output().expect("ldd");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(path) = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(Path::new)
        else {
            continue;
        };
        let dest = dir.join(path.strip_prefix("/").expect("absolute"));
        fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        fs::copy(path, &dest).expect("copy library");
    }
}

/// Where a Docker daemon runs: an image made by `append` and `config`, exported as a
/// docker-archive, loads, and `docker run` prints the file appended.
#[test]
fn docker_runs_an_appended_and_configured_image() {
    let tmp = tempdir();
    let t = tmp.path();
    // A dockerd of the test's own, on a private socket and data root.
    let engines_dir = t.join("engines");
    fs::create_dir_all(&engines_dir).expect("mkdir");
    let mut engines = match common::engines::Engines::start(&engines_dir) {
        Ok(e) => e,
        Err(why) => {
            eprintln!("notice: the engines cannot run here ({why}); docker run not checked");
            return;
        }
    };
    let sock = match engines.dockerd("build-verbs") {
        Ok(s) => s,
        Err(why) => {
            eprintln!("notice: dockerd cannot run here ({why}); docker run not checked");
            return;
        }
    };
    let docker = || common::engines::docker(&sock);
    image_of(&t.join("lay"), "base", &[layer(&[M::Dir("tmp/")])]);
    host_cat_tree(&t.join("host"));
    fs::create_dir(t.join("app")).expect("mkdir");
    fs::write(t.join("app/hello.txt"), b"hello from an ocikit layer\n").expect("write");
    let name = format!("ocikit-test-{}:1", std::process::id());
    ok(&ocikit(
        t,
        &[
            "append", "lay", "base", "--layer", "host", "--layer", "app", "--to", &name,
        ],
    ));
    ok(&ocikit(
        t,
        &[
            "config",
            "lay",
            &name,
            "--entrypoint",
            r#"["/cat"]"#,
            "--cmd",
            r#"["/hello.txt"]"#,
        ],
    ));
    ok(&ocikit(t, &["export", "lay", &name, "-o", "image.tar"]));
    let load = docker()
        .args(["load", "-i"])
        .arg(t.join("image.tar"))
        .output()
        .expect("docker load");
    assert!(
        load.status.success(),
        "docker load: {}",
        String::from_utf8_lossy(&load.stderr)
    );
    let out = docker()
        .args(["run", "--rm", "--network", "none", &name])
        .output()
        .expect("docker run");
    assert!(
        out.status.success(),
        "docker run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from an ocikit layer\n"
    );
}
