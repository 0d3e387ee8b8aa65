//! Interop with real peers (Debian's umoci 0.4.7, skopeo 1.9.3, oci-image-tool 1.0.0-rc1;
//! `.ci/run` installs them). A test whose peer is not on PATH prints a notice and returns.
//!
//! - Layouts umoci writes pass `ocikit fsck --deep`.
//! - Layouts ocikit writes (`init`, `tag`, `untag`, images from the library) are read by
//!   `skopeo inspect` and pass `oci-image-tool validate --type image`.
//! - `ocikit gc` removes the same blobs as `umoci gc` after an untag.
//!
//! What we found about the peers while writing these:
//! - umoci 0.4.7 `insert` writes layer tars without the two end-of-archive blocks, and even
//!   without padding the last file's data to 512 bytes (umoci issue 436). The diff_id umoci
//!   records is the sha256 of exactly those bytes, so ocikit's `--deep` diff_id check holds:
//!   it hashes the decompressed stream as it is and does not judge the tar inside.
//!   `unpack` + `repack` writes proper tars (a multiple of 512 bytes, ending in zero blocks).
//! - umoci writes manifests without a `mediaType` field and blobs with mode 0600; ocikit
//!   takes the type from the descriptor (no media-type-mismatch).
//! - oci-image-tool's `--ref name=X` filter drops entries from the list it is iterating over
//!   and so skips the entry after each one it drops: with three or more entries in
//!   `index.json` it reports "not unique" or "not match" for refs that are unique. The tests
//!   validate layouts of at most two entries by ref, and bigger ones without `--ref` (which
//!   validates every entry).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// Is `tool` on PATH? If not, say so (the test then returns without checking anything).
fn have(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()));
    if !found {
        eprintln!("skipping: `{tool}` is not on PATH (.ci/run installs it)");
    }
    found
}

/// Run a peer in `cwd`; panics with its output unless it exits 0. Returns stdout.
fn peer(cwd: &Path, tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The exit code and stderr of a peer that may fail.
fn peer_status(cwd: &Path, tool: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(tool)
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}

/// The digest of entry `name` of `dir/index.json`.
fn entry_digest(dir: &Path, name: &str) -> String {
    read_json(&dir.join("index.json"))["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .and_then(|m| m["digest"].as_str())
        .unwrap_or_else(|| panic!("no entry `{name}`"))
        .to_string()
}

fn blob_json(dir: &Path, digest: &str) -> Value {
    read_json(&dir.join("blobs/sha256").join(&digest["sha256:".len()..]))
}

/// Findings of `ocikit fsck --deep --json` (which must exit 0).
fn fsck_clean(cwd: &Path, dir: &str) -> Vec<Value> {
    let r = ocikit(cwd, &["fsck", "--deep", dir, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let v = r.json();
    assert_eq!(v["clean"], true);
    assert_eq!(v["errors"], 0);
    v["findings"].as_array().expect("findings").clone()
}

fn unreferenced(digests: &[&str]) -> Vec<Value> {
    let mut d: Vec<&str> = digests.to_vec();
    d.sort();
    d.into_iter()
        .map(|d| {
            serde_json::json!({
                "severity": "info",
                "kind": "unreferenced",
                "digest": d,
                "path": [],
                "detail": "no reachable descriptor names this blob",
            })
        })
        .collect()
}

/// A umoci layout: `t` from `umoci new` + `umoci insert` of a small tree; `t2` from
/// `unpack` + a new file + `repack`. Returns the digests umoci left unreferenced.
fn umoci_layout(tmp: &Path) -> Vec<String> {
    peer(tmp, "umoci", &["init", "--layout", "img"]);
    peer(tmp, "umoci", &["new", "--image", "img:t"]);
    let empty_manifest = entry_digest(&tmp.join("img"), "t");
    let empty_config = blob_json(&tmp.join("img"), &empty_manifest)["config"]["digest"]
        .as_str()
        .expect("config")
        .to_string();
    std::fs::create_dir_all(tmp.join("src/etc")).expect("mkdir");
    std::fs::write(tmp.join("src/etc/hello"), b"hello from the test\n").expect("write");
    std::fs::write(tmp.join("src/run.sh"), b"#!/bin/sh\necho hi\n").expect("write");
    peer(
        tmp,
        "umoci",
        &[
            "insert",
            "--rootless",
            "--image",
            "img:t",
            "src",
            "/opt/src",
        ],
    );
    peer(
        tmp,
        "umoci",
        &["unpack", "--rootless", "--image", "img:t", "bundle"],
    );
    std::fs::write(tmp.join("bundle/rootfs/newfile"), b"added by repack\n").expect("write");
    peer(
        tmp,
        "umoci",
        &["repack", "--refresh-bundle", "--image", "img:t2", "bundle"],
    );
    vec![empty_manifest, empty_config]
}

fn decompressed_len(dir: &Path, digest: &str) -> usize {
    let f = std::fs::File::open(dir.join("blobs/sha256").join(&digest["sha256:".len()..]))
        .expect("open");
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(f), &mut out).expect("gunzip");
    out.len()
}

#[test]
fn umoci_layouts_pass_fsck_deep() {
    if !have("umoci") {
        return;
    }
    let tmp = tempdir();
    let left_over = umoci_layout(tmp.path());
    let img = tmp.path().join("img");
    let r = ocikit(tmp.path(), &["ls", "img", "--json"]);
    assert_eq!(r.code, 0);
    let v = r.json();
    let refs: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["ref"].as_str().expect("ref"))
        .collect();
    assert_eq!(refs, vec!["t", "t2"]);

    // `insert` wrote its layer without end-of-archive blocks; `repack` with them.
    let t2 = blob_json(&img, &entry_digest(&img, "t2"));
    let layers: Vec<String> = t2["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect();
    assert_eq!(layers.len(), 2);
    assert_ne!(
        decompressed_len(&img, &layers[0]) % 512,
        0,
        "insert: no padding"
    );
    assert_eq!(
        decompressed_len(&img, &layers[1]) % 512,
        0,
        "repack: whole blocks"
    );
    // umoci's manifests carry no mediaType; their descriptors do.
    assert_eq!(t2.get("mediaType"), None);

    // fsck --deep: every diff_id holds; only the blobs `insert` replaced are unreferenced.
    let left: Vec<&str> = left_over.iter().map(String::as_str).collect();
    assert_eq!(fsck_clean(tmp.path(), "img"), unreferenced(&left));
    // umoci's own check agrees that the layout is sound.
    let t2_digest = entry_digest(&img, "t2");
    assert!(peer(
        tmp.path(),
        "umoci",
        &["stat", "--image", "img:t2", "--json"]
    )
    .contains("\"history\""));
    assert_eq!(
        ocikit(tmp.path(), &["inspect", "img", "t2", "--json"]).json()["digest"],
        t2_digest.as_str()
    );
}

#[test]
fn layouts_ocikit_writes_are_read_by_skopeo() {
    if !have("skopeo") {
        return;
    }
    let tmp = tempdir();
    assert_eq!(ocikit(tmp.path(), &["init", "l"]).code, 0);
    // Empty: skopeo finds no image of that name.
    let (code, stderr) = peer_status(tmp.path(), "skopeo", &["inspect", "oci:l:nothing"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("nothing"), "{stderr}");

    let built = small_image(&tmp.path().join("l"), "v1");
    // A ref with a slash and a colon: skopeo splits `oci:PATH:REF` at the first colon after
    // the path, so the rest is the ref.
    let r = ocikit(tmp.path(), &["tag", "l", "v1", "registry.example/app:1.0"]);
    assert_eq!(r.code, 0);
    let r = ocikit(
        tmp.path(),
        &["tag", "l", built.manifest.digest.as_str(), "by-digest"],
    );
    assert_eq!(r.code, 0);
    for name in ["v1", "registry.example/app:1.0", "by-digest"] {
        let out = peer(tmp.path(), "skopeo", &["inspect", &format!("oci:l:{name}")]);
        let v: Value = serde_json::from_str(&out).expect("skopeo json");
        assert_eq!(v["Digest"], built.manifest.digest.as_str(), "{name}");
        assert_eq!(v["Architecture"], "amd64");
        assert_eq!(v["Os"], "linux");
        assert_eq!(v["Env"], serde_json::json!(["PATH=/usr/bin"]));
        assert_eq!(
            v["Layers"],
            serde_json::json!([built.layers[0].digest.as_str()])
        );
        // skopeo's raw manifest is the byte-exact blob ocikit wrote.
        let raw = peer(
            tmp.path(),
            "skopeo",
            &["inspect", "--raw", &format!("oci:l:{name}")],
        );
        assert_eq!(
            raw.as_bytes(),
            ocikit(tmp.path(), &["cat", "l", name]).stdout_bytes
        );
    }
    // After untag, skopeo no longer finds the name; the others still resolve.
    assert_eq!(ocikit(tmp.path(), &["untag", "l", "v1"]).code, 0);
    let (code, _) = peer_status(tmp.path(), "skopeo", &["inspect", "oci:l:v1"]);
    assert_ne!(code, 0);
    peer(tmp.path(), "skopeo", &["inspect", "oci:l:by-digest"]);

    // skopeo writes into a layout ocikit created, and ocikit finds it sound.
    assert_eq!(ocikit(tmp.path(), &["init", "dest"]).code, 0);
    peer(
        tmp.path(),
        "skopeo",
        &["copy", "--quiet", "oci:l:by-digest", "oci:dest:copied"],
    );
    assert_eq!(fsck_clean(tmp.path(), "dest"), Vec::<Value>::new());
    let r = ocikit(tmp.path(), &["ls", "dest", "--json"]);
    assert_eq!(r.json()[0]["ref"], "copied");
}

#[test]
fn layouts_ocikit_writes_pass_oci_image_tool() {
    if !have("oci-image-tool") {
        return;
    }
    let tmp = tempdir();
    assert_eq!(ocikit(tmp.path(), &["init", "l"]).code, 0);
    small_image(&tmp.path().join("l"), "v1");
    assert_eq!(ocikit(tmp.path(), &["tag", "l", "v1", "v1.0"]).code, 0);
    // Two entries: both refs validate by name (see the module docs for why not more).
    for name in ["v1", "v1.0"] {
        let out = peer(
            tmp.path(),
            "oci-image-tool",
            &[
                "validate",
                "--type",
                "image",
                "l",
                "--ref",
                &format!("name={name}"),
            ],
        );
        assert!(
            out.contains(&format!("reference [name={name}]: OK")),
            "{out}"
        );
    }
    // A second image makes three entries: validate every entry, without `--ref`.
    let b = add_image(
        &tmp.path().join("l"),
        "b",
        &[LayerSpec::new(
            &[("b.txt", b"b\n")],
            ocikit_layout::Compression::Gzip,
        )],
        None,
    );
    let out = peer(
        tmp.path(),
        "oci-image-tool",
        &["validate", "--type", "image", "l"],
    );
    assert!(out.contains("Validation succeeded"), "{out}");
    assert_eq!(fsck_clean(tmp.path(), "l"), Vec::<Value>::new());

    // And it fails on what ocikit's fsck fails on: a flipped byte in a layer.
    let layer = tmp
        .path()
        .join("l")
        .join(b.layers[0].digest.blob_rel_path());
    flip_byte(&layer, 12);
    let (code, stderr) = peer_status(
        tmp.path(),
        "oci-image-tool",
        &["validate", "--type", "image", "l"],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("digest mismatch"), "{stderr}");
    assert_eq!(ocikit(tmp.path(), &["fsck", "l"]).code, 1);
}

#[test]
fn an_image_from_umoci_retagged_by_ocikit_is_read_by_skopeo_and_oci_image_tool() {
    if !have("umoci") || !have("skopeo") || !have("oci-image-tool") {
        return;
    }
    let tmp = tempdir();
    umoci_layout(tmp.path());
    let t2 = entry_digest(&tmp.path().join("img"), "t2");
    // ocikit rewrites umoci's index.json: a new name for t2, `t` removed.
    assert_eq!(ocikit(tmp.path(), &["tag", "img", "t2", "copy"]).code, 0);
    assert_eq!(ocikit(tmp.path(), &["untag", "img", "t"]).code, 0);
    let out = peer(tmp.path(), "skopeo", &["inspect", "oci:img:copy"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["Digest"], t2.as_str());
    assert_eq!(v["Layers"].as_array().expect("layers").len(), 2);
    for name in ["t2", "copy"] {
        let out = peer(
            tmp.path(),
            "oci-image-tool",
            &[
                "validate",
                "--type",
                "image",
                "img",
                "--ref",
                &format!("name={name}"),
            ],
        );
        assert!(
            out.contains(&format!("reference [name={name}]: OK")),
            "{out}"
        );
    }
    // umoci reads it back too.
    peer(tmp.path(), "umoci", &["stat", "--image", "img:copy"]);
}

#[test]
fn gc_removes_what_umoci_gc_removes() {
    if !have("umoci") {
        return;
    }
    let tmp = tempdir();
    umoci_layout(tmp.path());
    // Drop `t2` with umoci's own untag, then collect with each tool on its own copy.
    peer(tmp.path(), "umoci", &["rm", "--image", "img:t2"]);
    copy_tree(&tmp.path().join("img"), &tmp.path().join("by-umoci"));
    copy_tree(&tmp.path().join("img"), &tmp.path().join("by-ocikit"));
    let before = blob_names(&tmp.path().join("img"));
    peer(tmp.path(), "umoci", &["gc", "--layout", "by-umoci"]);
    let r = ocikit(tmp.path(), &["gc", "by-ocikit", "--json"]);
    assert_eq!(r.code, 0);
    let kept = blob_names(&tmp.path().join("by-umoci"));
    assert_eq!(blob_names(&tmp.path().join("by-ocikit")), kept);
    // What went: exactly the difference, as ocikit reports it.
    let mut removed: Vec<String> = before
        .iter()
        .filter(|b| !kept.contains(b))
        .cloned()
        .collect();
    removed.sort();
    let reported: Vec<String> = r.json()["removed"]
        .as_array()
        .expect("removed")
        .iter()
        .map(|e| e["digest"].as_str().expect("digest").to_string())
        .collect();
    assert_eq!(reported, removed);
    // t2's config, its second layer and manifest, and the two blobs `insert` replaced.
    assert_eq!(removed.len(), 5);
    assert_eq!(fsck_clean(tmp.path(), "by-ocikit"), Vec::<Value>::new());

    // The same after an untag by ocikit instead of umoci.
    let tmp2 = tempdir();
    umoci_layout(tmp2.path());
    assert_eq!(ocikit(tmp2.path(), &["untag", "img", "t"]).code, 0);
    copy_tree(&tmp2.path().join("img"), &tmp2.path().join("by-umoci"));
    peer(tmp2.path(), "umoci", &["gc", "--layout", "by-umoci"]);
    assert_eq!(ocikit(tmp2.path(), &["gc", "img"]).code, 0);
    assert_eq!(
        blob_names(&tmp2.path().join("img")),
        blob_names(&tmp2.path().join("by-umoci"))
    );
}

#[test]
fn gc_keeps_the_subject_of_a_referrer_as_umoci_gc_does() {
    if !have("umoci") {
        return;
    }
    let tmp = tempdir();
    let left_over = umoci_layout(tmp.path());
    let img = tmp.path().join("img");
    let t = entry_digest(&img, "t");
    let t_size = std::fs::metadata(img.join("blobs/sha256").join(&t["sha256:".len()..]))
        .expect("stat")
        .len();
    // A signature-like referrer of `t`, written with the library, then `t` untagged: only the
    // referrer's `subject` still names `t`.
    let layout = ocikit_layout::Layout::open(&img, opts()).expect("open");
    {
        let lock = layout.lock().expect("lock");
        let (empty, _) = lock.write_blob(b"{}").expect("empty");
        let (sig, sig_size) = lock.write_blob(b"signature of t\n").expect("sig");
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.example.signature",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.as_str(), "size": 2},
            "layers": [{"mediaType": "application/vnd.example.signature.v1", "digest": sig.as_str(), "size": sig_size}],
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": t, "size": t_size},
        });
        let (m, m_size) = lock
            .write_blob(&serde_json::to_vec(&manifest).expect("json"))
            .expect("manifest");
        let desc = ocikit_layout::Descriptor::new(ocikit_layout::MediaType::OciManifest, m, m_size);
        let mut index = layout.read_index().expect("index").value;
        ocikit_layout::refs::tag(&mut index, &desc, "sig").expect("tag");
        lock.commit_index(&index).expect("commit");
    }
    assert_eq!(ocikit(tmp.path(), &["untag", "img", "t"]).code, 0);
    copy_tree(&img, &tmp.path().join("by-umoci"));
    peer(tmp.path(), "umoci", &["gc", "--layout", "by-umoci"]);
    assert_eq!(ocikit(tmp.path(), &["gc", "img"]).code, 0);
    // ocikit keeps `t` (its manifest, config and layer) because the kept referrer names it.
    // umoci as packaged here keeps the same set (Debian builds it against its own image-spec
    // module, which knows `subject`): the two agree blob for blob.
    let m = blob_json(&img, &t);
    let mut t_blobs = vec![
        t.clone(),
        m["config"]["digest"].as_str().expect("cfg").to_string(),
    ];
    t_blobs.extend(
        m["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["digest"].as_str().expect("d").to_string()),
    );
    let by_ocikit = blob_names(&img);
    for b in &t_blobs {
        assert!(by_ocikit.contains(b), "ocikit kept {b}");
    }
    // What nothing names any more is gone from both.
    for b in &left_over {
        assert!(!by_ocikit.contains(b), "ocikit removed {b}");
    }
    assert_eq!(by_ocikit, blob_names(&tmp.path().join("by-umoci")));
    assert_eq!(fsck_clean(tmp.path(), "img"), Vec::<Value>::new());
}
