//! End-to-end tests of the air-gap verbs: copy, inventory, bundle, and loading bundles with
//! `import`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use ocikit_layout::{Descriptor, Digest, Layout, MediaType, Options};
use serde_json::Value;

const MULTIARCH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/generated/multiarch");
const ONE_IMAGE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/layouts/ggcr-test_index_one_image"
);
const APP1: &str = "sha256:c2db98dcac48085a4d404691f72f179301110ef21e6af7f21d5ba0bbb1ea640f";
const APP1_AMD64_ONLY: &str =
    "sha256:af60157d168fbcad5f51a251308e51404e62056d0ae5b03bcacf8a07d2b336a6";
const AMD64: &str = "sha256:492e43537086555aa271aedbc07737fab025762c1347eae3756dd19382cc7978";
const SBOM_REFERRER: &str =
    "sha256:9a3671ff4395d188d0bdccfd19090dcfcd7130deb8d3a70ed1627c62f1a522ef";

fn ocikit(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::cargo_bin("ocikit").expect("binary");
    c.env_remove("SOURCE_DATE_EPOCH").arg("--no-fsync");
    for a in args {
        c.arg(a.as_ref());
    }
    c.output().expect("runs")
}

fn ok(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let out = ocikit(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ls(dir: &Path) -> Vec<(Option<String>, String)> {
    let out = ok(&[&"ls", &dir, &"--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| {
            (
                e["ref"].as_str().map(String::from),
                e["digest"].as_str().expect("digest").to_string(),
            )
        })
        .collect()
}

fn blobs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.join("blobs/sha256"))
        .expect("blobs")
        .flatten()
        .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
        .filter(|n| !n.contains(".partial-"))
        .collect();
    v.sort();
    v
}

fn fsck_clean(dir: &Path) {
    let out = ocikit(&[&"fsck", &"--deep", &dir]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "fsck: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

/// A source layout holding the multi-platform fixture and a second image.
fn source(tmp: &Path) -> PathBuf {
    let src = tmp.join("src");
    ok(&[&"copy", &MULTIARCH, &src]);
    ok(&[&"copy", &ONE_IMAGE, &src]);
    ok(&[
        &"tag",
        &src,
        &"sha256:98ceaf93e482fe91b9bfd6bba07137c098e49ee2d55e69f09fb6c951e75e0e46",
        &"one:1",
    ]);
    src
}

#[test]
fn copy_keeps_bytes_without_platform() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dst = tmp.path().join("dst");
    let out = ok(&[&"copy", &MULTIARCH, &dst]);
    assert_eq!(ls(&dst), ls(Path::new(MULTIARCH)));
    assert_eq!(ls(&dst)[0], (Some("app:1".into()), APP1.into()));
    assert_eq!(blobs(&dst), blobs(Path::new(MULTIARCH)));
    assert!(
        stderr(&out).contains("copied 2 entries"),
        "{}",
        stderr(&out)
    );
    fsck_clean(&dst);
}

#[test]
fn copy_platform_filters_index_and_keeps_attestation() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dst = tmp.path().join("dst");
    ok(&[
        &"copy",
        &MULTIARCH,
        &dst,
        &"app:1",
        &"--platform",
        &"linux/amd64",
    ]);
    assert_eq!(
        ls(&dst),
        vec![(Some("app:1".into()), APP1_AMD64_ONLY.into())]
    );
    let index: Value =
        serde_json::from_slice(&ok(&[&"cat", &dst, &APP1_AMD64_ONLY]).stdout).expect("json");
    let kept: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| m["digest"].as_str().expect("d"))
        .collect();
    // amd64 and the attestation that names it by `vnd.docker.reference.digest`.
    assert_eq!(
        kept,
        vec![
            AMD64,
            "sha256:b243d4bc77746a1ab4890025bc0940cd5a03140cb4de1a23be6854f6e28a58f7"
        ]
    );
    assert_eq!(
        index["annotations"]["org.opencontainers.image.source"],
        "https://example.invalid/app"
    );
    // The arm images are not copied.
    assert!(!blobs(&dst).contains(
        &"sha256:05d213d422e3dc7dbf91750accf075e0ffca3de4d4502eeadb51e685a66d8af9".to_string()
    ));
    fsck_clean(&dst);
    // Hard links on one filesystem.
    use std::os::unix::fs::MetadataExt;
    let layer = "blobs/sha256/2f4be036f6dd0c220a56cb8dd09655be846ef20069698908535d357d3f89c429";
    let a = fs::metadata(Path::new(MULTIARCH).join(layer)).expect("src");
    let b = fs::metadata(dst.join(layer)).expect("dst");
    assert_eq!(a.ino(), b.ino());
}

#[test]
fn copy_platform_without_variant_matches_any_variant() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dst = tmp.path().join("dst");
    ok(&[
        &"copy",
        &MULTIARCH,
        &dst,
        &"app:1",
        &"--platform",
        &"linux/arm",
    ]);
    let index: Value = serde_json::from_slice(&ok(&[&"cat", &dst, &"app:1"]).stdout).expect("json");
    assert_eq!(index["manifests"].as_array().expect("m").len(), 1);
    assert_eq!(index["manifests"][0]["platform"]["variant"], "v7");
    let none = ocikit(&[
        &"copy",
        &MULTIARCH,
        &tmp.path().join("none"),
        &"app:1",
        &"--platform",
        &"linux/arm/v6",
    ]);
    assert_eq!(none.status.code(), Some(2));
    assert!(
        stderr(&none).contains("no manifest for platform linux/arm/v6"),
        "{}",
        stderr(&none)
    );
    assert!(
        !tmp.path().join("none").exists(),
        "a failed copy leaves no new destination"
    );
}

#[test]
fn copy_referrers_carries_the_sbom() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dst = tmp.path().join("dst");
    ok(&[
        &"copy",
        &MULTIARCH,
        &dst,
        &"app:1",
        &"--platform",
        &"linux/amd64",
    ]);
    assert_eq!(ls(&dst).len(), 1);
    let dst2 = tmp.path().join("dst2");
    ok(&[
        &"copy",
        &MULTIARCH,
        &dst2,
        &"app:1",
        &"--platform",
        &"linux/amd64",
        &"--referrers",
    ]);
    assert_eq!(
        ls(&dst2),
        vec![
            (Some("app:1".into()), APP1_AMD64_ONLY.into()),
            (None, SBOM_REFERRER.into())
        ]
    );
    fsck_clean(&dst2);
    // Only arm64: the SBOM refers to amd64, so it stays behind.
    let dst3 = tmp.path().join("dst3");
    ok(&[
        &"copy",
        &MULTIARCH,
        &dst3,
        &"app:1",
        &"--platform",
        &"linux/arm64",
        &"--referrers",
    ]);
    assert_eq!(ls(&dst3).len(), 1);
}

#[test]
fn copy_corpus_multi_platform_layout() {
    // containers/image delete_image_multiple_images: nested indexes for linux/amd64 + linux/386.
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/layouts/cimage-delete_image_multiple_images"
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let dst = tmp.path().join("dst");
    ok(&[&"copy", &src, &dst, &"latest", &"--platform", &"linux/386"]);
    let entries = ls(&dst);
    assert_eq!(
        entries,
        vec![(
            Some("latest".into()),
            "sha256:d35cf9c647c3befd2823db8eb7535653680841f1d0ddd478b3160af5ee5a0553".into()
        )]
    );
    let tree: Value = serde_json::from_slice(&ok(&[&"inspect", &dst, &"latest", &"--json"]).stdout)
        .expect("json");
    assert_eq!(tree["children"].as_array().expect("c").len(), 1);
    assert_eq!(tree["children"][0]["platform"]["architecture"], "386");
    // Not --deep: the upstream fixture's layers are placeholders, not gzip.
    assert_eq!(ocikit(&[&"fsck", &dst]).status.code(), Some(0));
}

#[test]
fn copy_moves_an_existing_ref_and_says_so() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dst = tmp.path().join("dst");
    ok(&[
        &"copy",
        &MULTIARCH,
        &dst,
        &"app:1",
        &"--platform",
        &"linux/amd64",
    ]);
    let out = ok(&[&"copy", &MULTIARCH, &dst, &"app:1"]);
    assert!(
        stderr(&out).contains(&format!(
            "moved `app:1` from `{APP1_AMD64_ONLY}` to `{APP1}`"
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(ls(&dst), vec![(Some("app:1".into()), APP1.into())]);
}

#[test]
fn inventory_is_sorted_and_reproducible() {
    let out = ok(&[&"inventory", &MULTIARCH]);
    let text = String::from_utf8(out.stdout).expect("utf8");
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["ocikitInventory"], 1);
    let listed: Vec<String> = v["blobs"]
        .as_array()
        .expect("blobs")
        .iter()
        .map(|b| b["digest"].as_str().expect("d").to_string())
        .collect();
    assert_eq!(listed, blobs(Path::new(MULTIARCH)));
    assert_eq!(listed.len(), 15);
    assert_eq!(
        v["blobs"][0]["size"],
        fs::metadata(
            Path::new(MULTIARCH)
                .join("blobs/sha256")
                .join(&listed[0][7..])
        )
        .expect("blob")
        .len()
    );
    assert_eq!(
        v["refs"],
        serde_json::json!([{"name": "app:1", "digest": APP1}])
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("inv.json");
    ok(&[&"inventory", &MULTIARCH, &"-o", &file]);
    assert_eq!(fs::read_to_string(&file).expect("read"), text);
}

fn part_files(out: &Path) -> Vec<PathBuf> {
    let dir = out.parent().expect("parent");
    let stem = out
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("ls")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{stem}.")))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn bundle_round_trip_into_empty_layout() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = source(tmp.path());
    let out = tmp.path().join("b.tar");
    ok(&[&"bundle", &src, &"-o", &out, &"--referrers"]);
    let far = tmp.path().join("far");
    ok(&[&"import", &out, &far]);
    assert_eq!(ls(&far), ls(&src));
    assert_eq!(blobs(&far), blobs(&src));
    fsck_clean(&far);
    // Two bundles of the same input are byte-identical.
    let again = tmp.path().join("again.tar");
    ok(&[&"bundle", &src, &"-o", &again, &"--referrers"]);
    assert_eq!(fs::read(&out).expect("a"), fs::read(&again).expect("b"));
}

#[test]
fn bundle_delta_carries_exactly_the_new_blobs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = source(tmp.path());
    let first = tmp.path().join("first.tar");
    ok(&[&"bundle", &src, &"-o", &first]);
    let far = tmp.path().join("far");
    ok(&[&"import", &first, &far]);
    let inv = tmp.path().join("far.inventory.json");
    ok(&[&"inventory", &far, &"-o", &inv]);

    // Near side: a new image that shares the amd64 layer, with its own config.
    let layout = Layout::open(&src, Options::default()).expect("open");
    let layer = "sha256:2f4be036f6dd0c220a56cb8dd09655be846ef20069698908535d357d3f89c429";
    let lock = layout.lock().expect("lock");
    let config = br#"{"architecture":"amd64","os":"linux","config":{"Env":["APP=2"]},"rootfs":{"type":"layers","diff_ids":["sha256:1a8e2368eb71382a22cc8d682c111a101836532f2ac7d201362aecf9af04c969"]}}"#;
    let (cd, cs) = lock.write_blob(config).expect("config");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":101}}]}}"#
    );
    let (md, ms) = lock.write_blob(manifest.as_bytes()).expect("manifest");
    drop(lock);
    ok(&[&"tag", &src, &md.as_str(), &"app:2"]);
    let _ = Descriptor::new(MediaType::OciManifest, md.clone(), ms);

    let delta = tmp.path().join("delta.tar");
    ok(&[&"bundle", &src, &"app:2", &"-o", &delta, &"--have", &inv]);
    let bundle_json = tar_member(&delta, "bundle.json");
    let m: Value = serde_json::from_slice(&bundle_json).expect("bundle.json");
    let mut carried: Vec<&str> = m["blobs"]
        .as_array()
        .expect("blobs")
        .iter()
        .map(|b| b["digest"].as_str().expect("d"))
        .collect();
    carried.sort();
    let mut want = vec![cd.as_str(), md.as_str()];
    want.sort();
    assert_eq!(carried, want);
    assert_eq!(m["assumed"].as_array().expect("assumed").len(), 1);
    assert_eq!(m["assumed"][0]["digest"], layer);
    assert_eq!(
        m["inventories"][0],
        Digest::sha256(&fs::read(&inv).expect("inv")).as_str()
    );

    ok(&[&"import", &delta, &far]);
    assert!(ls(&far).contains(&(Some("app:2".into()), md.to_string())));
    fsck_clean(&far);
}

fn tar_member(tar: &Path, name: &str) -> Vec<u8> {
    let mut ar = tar::Archive::new(fs::File::open(tar).expect("open"));
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        if e.path().expect("path").to_string_lossy() == name {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut v).expect("read");
            return v;
        }
    }
    panic!("no {name} in {}", tar.display());
}

/// A source with one image whose layer is larger than a part.
fn big_source(tmp: &Path) -> PathBuf {
    let src = tmp.join("bigsrc");
    ok(&[&"copy", &MULTIARCH, &src]);
    let layout = Layout::open(&src, Options::default()).expect("open");
    let lock = layout.lock().expect("lock");
    let mut payload = Vec::new();
    let mut x: u32 = 12345;
    for _ in 0..300_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        payload.push((x >> 24) as u8);
    }
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_size(payload.len() as u64);
    b.append_data(&mut h, "random.bin", &payload[..])
        .expect("tar");
    let data = b.into_inner().expect("tar");
    let (ld, ls_) = lock.write_blob(&data).expect("layer");
    let diff = ld.clone();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#
    );
    let (cd, cs) = lock.write_blob(config.as_bytes()).expect("config");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{ls_}}}]}}"#
    );
    let (md, _) = lock.write_blob(manifest.as_bytes()).expect("manifest");
    drop(lock);
    ok(&[&"tag", &src, &md.as_str(), &"big:1"]);
    src
}

#[test]
fn parts_load_alone_in_reverse_order() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = big_source(tmp.path());
    let out = tmp.path().join("b");
    ok(&[&"bundle", &src, &"-o", &out, &"--part-size", &"64K"]);
    let parts = part_files(&out);
    assert!(parts.len() >= 5, "{parts:?}");
    for p in &parts {
        assert!(
            fs::metadata(p).expect("part").len() <= 64 * 1024,
            "{}",
            p.display()
        );
        // Each part verifies alone (loaded, incomplete: exit 3).
        let dry = ocikit(&[&"import", &"--dry-run", &p, &tmp.path().join("nowhere")]);
        assert_eq!(dry.status.code(), Some(3), "{}", stderr(&dry));
    }
    assert!(
        !tmp.path().join("nowhere").exists(),
        "--dry-run writes nothing"
    );
    let far = tmp.path().join("far");
    for (k, p) in parts.iter().rev().enumerate() {
        if k + 1 < parts.len() {
            // Loaded, incomplete: exit 3 until the last part is in.
            let o = ocikit(&[&"import", &p, &far]);
            assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
            assert!(stderr(&o).contains("waits for"), "{}", stderr(&o));
        } else {
            ok(&[&"import", &p, &far]);
        }
    }
    assert_eq!(ls(&far), ls(&src));
    fsck_clean(&far);
    // Same input, same bytes.
    let again = tmp.path().join("again");
    ok(&[&"bundle", &src, &"-o", &again, &"--part-size", &"64K"]);
    for (a, b) in parts.iter().zip(part_files(&again)) {
        assert_eq!(fs::read(a).expect("a"), fs::read(b).expect("b"));
    }
}

#[test]
fn corrupt_part_is_rejected_and_others_load() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = big_source(tmp.path());
    let out = tmp.path().join("b");
    ok(&[&"bundle", &src, &"-o", &out, &"--part-size", &"64K"]);
    let parts = part_files(&out);
    // Corrupt the first data byte of the last part's first blob or chunk.
    let victim = parts.last().expect("parts").clone();
    let offset = {
        let mut ar = tar::Archive::new(fs::File::open(&victim).expect("open"));
        let mut found = None;
        for e in ar.entries().expect("entries") {
            let e = e.expect("entry");
            let name = e.path().expect("path").to_string_lossy().into_owned();
            if (name.starts_with("blobs/") || name.starts_with("chunks/"))
                && !name.ends_with(".digest")
                && e.size() > 0
            {
                found = Some(e.raw_file_position());
                break;
            }
        }
        found.expect("a blob in the last part") as usize
    };
    let mut bytes = fs::read(&victim).expect("read");
    bytes[offset] ^= 0xff;
    fs::write(&victim, &bytes).expect("write");
    let far = tmp.path().join("far");
    let bad = ocikit(&[&"import", &victim, &far]);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("rejected"), "{}", stderr(&bad));
    for p in &parts[..parts.len() - 1] {
        let o = ocikit(&[&"import", &p, &far]);
        assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    }
    // Everything but the corrupt piece is in; the ref waits for it.
    assert!(!ls(&far).iter().any(|(r, _)| r.as_deref() == Some("big:1")));
    // The intact part (rebuilt) completes it.
    ok(&[
        &"bundle",
        &src,
        &"-o",
        &tmp.path().join("fresh"),
        &"--part-size",
        &"64K",
    ]);
    let fresh = part_files(&tmp.path().join("fresh"));
    ok(&[&"import", &fresh.last().expect("last"), &far]);
    assert_eq!(ls(&far), ls(&src));
    fsck_clean(&far);
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "fault points need `--features fault-injection`"
)]
fn interrupted_load_resumes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = big_source(tmp.path());
    let out = tmp.path().join("b.tar");
    ok(&[&"bundle", &src, &"-o", &out]);
    let far = tmp.path().join("far");
    ok(&[&"init", &far]);
    let killed = Command::cargo_bin("ocikit")
        .expect("bin")
        .env("OCIKIT_FAULT_POINT", "bundle-mid-load")
        .args(["import".as_ref(), out.as_os_str(), far.as_os_str()])
        .output()
        .expect("runs");
    assert_ne!(killed.status.code(), Some(0));
    assert_eq!(ls(&far), vec![], "no ref before the load completes");
    let kept = blobs(&far).len();
    assert_eq!(kept, 1, "the first blob written is kept");
    let o = ok(&[&"import", &out, &far]);
    assert!(stderr(&o).contains("1 already present"), "{}", stderr(&o));
    assert_eq!(ls(&far), ls(&src));
    fsck_clean(&far);
}

#[test]
fn missing_assumed_blobs_block_every_ref_until_restored() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = source(tmp.path());
    let first = tmp.path().join("first.tar");
    ok(&[&"bundle", &src, &"app:1", &"-o", &first]);
    let far = tmp.path().join("far");
    ok(&[&"import", &first, &far]);
    let inv = tmp.path().join("inv.json");
    ok(&[&"inventory", &far, &"-o", &inv]);
    let delta = tmp.path().join("delta.tar");
    ok(&[&"bundle", &src, &"-o", &delta, &"--have", &inv]);
    // The far side loses a blob the delta assumed.
    let lost = "blobs/sha256/2f4be036f6dd0c220a56cb8dd09655be846ef20069698908535d357d3f89c429";
    let saved = fs::read(far.join(lost)).expect("read");
    fs::remove_file(far.join(lost)).expect("rm");
    let before = fs::read(far.join("index.json")).expect("index");
    let bad = ocikit(&[&"import", &delta, &far]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad)
            .contains("sha256:2f4be036f6dd0c220a56cb8dd09655be846ef20069698908535d357d3f89c429"),
        "{}",
        stderr(&bad)
    );
    assert_eq!(
        fs::read(far.join("index.json")).expect("index"),
        before,
        "no ref committed"
    );
    fs::write(far.join(lost), saved).expect("restore");
    ok(&[&"import", &delta, &far]);
    assert_eq!(ls(&far).len(), ls(&src).len());
    fsck_clean(&far);
}

#[test]
fn skopeo_reads_a_single_part_bundle() {
    if which("skopeo").is_none() {
        eprintln!("skopeo not on PATH: skipping (CI installs it)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("b.tar");
    ok(&[&"bundle", &MULTIARCH, &"-o", &out]);
    let o = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            &format!("oci-archive:{}:app:1", out.display()),
        ])
        .output()
        .expect("skopeo");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(Digest::sha256(&o.stdout).as_str(), APP1);
    let dest = tmp.path().join("copied");
    let o = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--override-os",
            "linux",
            "--override-arch",
            "amd64",
            &format!("oci-archive:{}:app:1", out.display()),
            &format!("oci:{}:x", dest.display()),
        ])
        .output()
        .expect("skopeo");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

#[test]
fn copy_across_filesystems_copies_and_verifies() {
    use std::os::unix::fs::MetadataExt;
    let shm = Path::new("/dev/shm");
    let here = fs::metadata(MULTIARCH).expect("fixture").dev();
    if !shm.is_dir() || fs::metadata(shm).map(|m| m.dev()).ok() == Some(here) {
        eprintln!("no second filesystem at /dev/shm: skipping");
        return;
    }
    let tmp = tempfile::tempdir_in(shm).expect("tmp");
    let dst = tmp.path().join("dst");
    let out = ok(&[&"copy", &MULTIARCH, &dst]);
    assert!(
        stderr(&out).contains("0 blob(s) linked, 15 copied"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ls(&dst), ls(Path::new(MULTIARCH)));
    fsck_clean(&dst);
}

/// The names in a directory, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_part_size_too_small_names_the_flag_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = source(tmp.path());
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).expect("mkdir");
    let o = ocikit(&[
        &"bundle",
        &src,
        &"-o",
        &out_dir.join("b"),
        &"--part-size",
        &"1K",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "ocikit: error: `--part-size`: too small to hold the bundle's metadata and any data\n"
    );
    assert_eq!(names_in(&out_dir), Vec::<String>::new());
}

#[test]
fn bundle_parts_and_other_sources_are_refused_together() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = source(tmp.path());
    let out = tmp.path().join("b.tar");
    ok(&[&"bundle", &src, &"-o", &out]);
    let far = tmp.path().join("far");
    let o = ocikit(&[&"import", &out, &ONE_IMAGE, &far]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "ocikit: error: bundle parts and other sources cannot be imported in one command\n"
    );
    assert!(!far.exists());
    // A dry run is for bundle parts only.
    let o = ocikit(&[&"import", &"--dry-run", &ONE_IMAGE, &far]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "ocikit: error: --dry-run is for bundle parts; the sources are not bundle parts\n"
    );
    assert!(!far.exists());
    // --level without compression is refused whatever the sources are.
    let o = ocikit(&[
        &"import",
        &"--compress",
        &"none",
        &"--level",
        &"3",
        &out,
        &far,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "ocikit: error: --level needs --compress gzip or zstd\n"
    );
    assert!(!far.exists());
}

#[test]
fn a_dry_run_load_writes_nothing_into_a_missing_or_empty_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = source(tmp.path());
    let out = tmp.path().join("b.tar");
    ok(&[&"bundle", &src, &"-o", &out]);
    let missing = tmp.path().join("missing");
    let o = ok(&[&"import", &"--dry-run", &out, &missing]);
    assert!(
        stderr(&o).contains("would commit `app:1`"),
        "{}",
        stderr(&o)
    );
    assert!(!missing.exists());
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    let o2 = ok(&[&"import", &"--dry-run", &out, &empty]);
    assert_eq!(
        stderr(&o2).replace(empty.to_str().expect("utf-8"), "DIR"),
        stderr(&o).replace(missing.to_str().expect("utf-8"), "DIR")
    );
    assert_eq!(names_in(&empty), Vec::<String>::new());
    // A non-empty directory that is not a layout is refused, as a real load refuses it.
    fs::write(empty.join("x"), b"x").expect("write");
    let o = ocikit(&[&"import", &"--dry-run", &out, &empty]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(names_in(&empty), ["x"]);
}

#[test]
fn a_failed_copy_into_a_new_directory_leaves_none() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dst = tmp.path().join("dst");
    let o = ocikit(&[&"copy", &ONE_IMAGE, &dst, &"no-such-ref"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!("ocikit: error: no ref or digest `no-such-ref` in `{ONE_IMAGE}/index.json`\n")
    );
    assert!(!dst.exists());
    // An existing destination stays.
    ok(&[&"init", &dst]);
    let o = ocikit(&[&"copy", &ONE_IMAGE, &dst, &"no-such-ref"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(dst.join("oci-layout").exists());
}

#[test]
fn inventory_to_a_file_is_written_whole() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = source(tmp.path());
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).expect("mkdir");
    let file = out_dir.join("inv.json");
    let o = ok(&[&"inventory", &src, &"-o", &file]);
    let stdout = ok(&[&"inventory", &src]).stdout;
    assert_eq!(fs::read(&file).expect("read"), stdout);
    assert!(
        stderr(&o).starts_with("wrote inventory of "),
        "{}",
        stderr(&o)
    );
    assert_eq!(names_in(&out_dir), ["inv.json"]);
    // A target that cannot be replaced (a directory) fails naming it, leaving no temp file.
    fs::create_dir(out_dir.join("d")).expect("mkdir");
    let o = ocikit(&[&"inventory", &src, &"-o", &out_dir.join("d")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with(&format!(
            "ocikit: error: `{}`: ",
            out_dir.join("d").display()
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(names_in(&out_dir), ["d", "inv.json"]);
}

/// `-o -` is standard output for `bundle` as for `export` and `inventory`; it used to create a
/// file named `-` in the working directory. Parts cannot go to one stream.
#[test]
fn bundle_to_dash_writes_stdout_and_refuses_parts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("b.tar");
    ok(&[&"-q", &"bundle", &ONE_IMAGE, &"-o", &file]);
    let mut c = Command::cargo_bin("ocikit").expect("binary");
    let o = c
        .current_dir(tmp.path())
        .env_remove("SOURCE_DATE_EPOCH")
        .args(["--no-fsync", "-q", "bundle", ONE_IMAGE, "-o", "-"])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        o.stdout == fs::read(&file).expect("bundle"),
        "stdout ({} bytes) is not the bundle",
        o.stdout.len()
    );
    assert!(!tmp.path().join("-").exists());
    let mut c = Command::cargo_bin("ocikit").expect("binary");
    let o = c
        .current_dir(tmp.path())
        .args(["bundle", ONE_IMAGE, "-o", "-", "--part-size", "1M"])
        .output()
        .expect("runs");
    assert_eq!((o.status.code(), o.stdout.len()), (Some(2), 0));
    assert_eq!(
        stderr(&o),
        "ocikit: error: `-o -` (standard output) cannot be used with `--part-size`: each part is a file\n"
    );
    assert_eq!(
        fs::read_dir(tmp.path()).expect("ls").count(),
        1,
        "only b.tar"
    );
}

/// Every part given loaded but refs still wait for parts not given: exit 3 ("loaded,
/// incomplete"; it was 0), naming only the parts still to come (the parts just loaded were
/// listed as missing too) and the blobs they bring. A truncated part says so, naming it once.
#[test]
fn a_load_waiting_for_parts_not_given_exits_3_and_names_only_what_is_missing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = big_source(tmp.path());
    let out = tmp.path().join("b");
    ok(&[&"bundle", &src, &"-o", &out, &"--part-size", &"64K"]);
    let parts = part_files(&out);
    assert!(parts.len() >= 5, "{parts:?}");
    let far = tmp.path().join("far");
    let o = ocikit(&[&"import", &parts[0], &parts[1], &far]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    let waits: Vec<&str> = err.lines().filter(|l| l.contains(" waits for ")).collect();
    assert!(!waits.is_empty(), "{err}");
    let mut all_parts = std::collections::BTreeSet::new();
    for l in &waits {
        let (_, rest) = l.split_once(" in part(s) ").expect("parts named");
        let (list, blobs) = rest.split_once(": ").expect("blobs named");
        for p in list.split(", ") {
            assert!(
                p != "001" && p != "002",
                "a loaded part listed as missing: {l}"
            );
            all_parts.insert(p.to_string());
        }
        for b in blobs.split(", ") {
            let d = b.trim_matches('`');
            let (alg, enc) = d.split_once(':').expect("digest");
            assert!(
                !far.join("blobs").join(alg).join(enc).exists(),
                "{d} is present but listed as missing"
            );
        }
    }
    assert_eq!(
        err.lines().last(),
        Some(
            format!(
                "loaded, incomplete: {} ref(s) wait for part(s) {}",
                waits.len(),
                all_parts.into_iter().collect::<Vec<_>>().join(", ")
            )
            .as_str()
        )
    );
    // A truncated part: which, and that it is truncated.
    let cut = tmp.path().join("cut.003");
    let bytes = fs::read(&parts[2]).expect("part");
    fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let o = ocikit(&[&"import", &cut, &far]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let last = stderr(&o).lines().last().expect("error").to_string();
    let prefix = format!("ocikit: error: `{}`: truncated archive: ", cut.display());
    assert!(last.starts_with(&prefix), "{last}");
    assert_eq!(
        last.matches(&cut.display().to_string()).count(),
        1,
        "{last}"
    );
    // The rest completes it.
    for p in &parts[2..] {
        let o = ocikit(&[&"import", &p, &far]);
        assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));
    }
    assert_eq!(ls(&far), ls(&src));
}

/// Parts of the same images bundled again with another part size cut the large blob
/// differently. Such a part is refused (exit 1) naming the blob, before it writes over the
/// chunks already loaded; the parts of the first bundle then complete the image. It used to
/// write its chunks at other offsets, the whole blob failed verification and every chunk was
/// discarded, blamed on whichever part came last.
#[test]
fn a_part_of_a_bundle_cut_with_another_part_size_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = big_source(tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    ok(&[&"bundle", &src, &"-o", &a, &"--part-size", &"64K"]);
    ok(&[&"bundle", &src, &"-o", &b, &"--part-size", &"96K"]);
    let (a_parts, b_parts) = (part_files(&a), part_files(&b));
    let far = tmp.path().join("far");
    for p in &a_parts[..a_parts.len() - 1] {
        let o = ocikit(&[&"import", &p, &far]);
        assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    }
    let mut refused = 0;
    for p in &b_parts {
        let o = ocikit(&[&"import", &p, &far]);
        let err = stderr(&o);
        if err.contains("cuts the blob differently") {
            assert_eq!(o.status.code(), Some(1), "{err}");
            assert!(
                err.contains(
                    "it belongs to a bundle of the same images written with another part size"
                ),
                "{err}"
            );
            // The ref waits for this bundle's own chunks, not for "no part".
            assert!(!err.contains("no part of the bundle carries"), "{err}");
            refused += 1;
        }
    }
    assert!(refused >= 1, "no part of the second bundle was refused");
    ok(&[&"import", &a_parts.last().expect("last"), &far]);
    assert_eq!(ls(&far), ls(&src));
    fsck_clean(&far);
}

/// Blobs are copied into a part on every core, each hashed as it is copied: a layer that no
/// longer hashes to its digest still stops the bundle, exit 2, naming the digest, the file and
/// what it hashes to, and no part (or temp file) is left. Loading a part whose large blob is
/// damaged rejects that blob by name (exit 1) while the others load.
#[test]
fn a_corrupt_blob_stops_the_bundle_and_a_damaged_large_blob_is_rejected_on_load() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    ok(&[&"copy", &MULTIARCH, &src]);
    // Two refs' worth of layers in one part; one layer made larger than a MiB, so that loading
    // hands it to another thread.
    let layout = Layout::open(&src, Options::default()).expect("open");
    let noise: Vec<u8> = (0..(3u32 << 19))
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(noise.len() as u64);
    tar.append_data(&mut h, "noise.bin", &noise[..])
        .expect("tar");
    let big = tar.into_inner().expect("tar");
    let (layer, _) = layout
        .lock()
        .expect("lock")
        .write_blob(&big)
        .expect("layer");
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer}"]}}}}"#
    );
    let lock = layout.lock().expect("lock");
    let (cd, cs) = lock.write_blob(config.as_bytes()).expect("config");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{}}}]}}"#,
        big.len()
    );
    let (md, _) = lock.write_blob(manifest.as_bytes()).expect("manifest");
    drop(lock);
    ok(&[&"tag", &src, &md.as_str(), &"big:1"]);

    // A good bundle first, then the same layer damaged in place.
    let good = tmp.path().join("good.bundle");
    ok(&[&"bundle", &src, &"-o", &good]);
    let path = layout.blob_path(&layer);
    let mut bytes = fs::read(&path).expect("read");
    bytes[1000] ^= 0xff;
    let found = Digest::sha256(&bytes);
    let mut perm = fs::metadata(&path).expect("stat").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(&path, perm).expect("chmod");
    fs::write(&path, &bytes).expect("write");
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).expect("mkdir");
    let bad = ocikit(&[&"bundle", &src, &"-o", &out_dir.join("b")]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert_eq!(
        stderr(&bad),
        format!(
            "ocikit: error: blob `{layer}` at `{}` has digest `{found}`\n",
            path.display()
        )
    );
    assert_eq!(fs::read_dir(&out_dir).expect("ls").count(), 0);

    // The good bundle with the layer's bytes damaged inside the part.
    let mut part = fs::read(&good).expect("read");
    let at = {
        let mut ar = tar::Archive::new(fs::File::open(&good).expect("open"));
        let mut at = None;
        for e in ar.entries().expect("entries") {
            let e = e.expect("entry");
            if e.path().expect("path").ends_with(layer.encoded()) {
                at = Some(e.raw_file_position() as usize);
            }
        }
        at.expect("the layer is in the part")
    };
    part[at + 1000] ^= 0xff;
    let damaged = tmp.path().join("damaged.bundle");
    fs::write(&damaged, &part).expect("write");
    let far = tmp.path().join("far");
    let o = ocikit(&[&"import", &damaged, &far]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("rejected blob `{layer}`: ")) && err.contains(found.as_str()),
        "{err}"
    );
    assert!(
        !blobs(&far).contains(&layer.to_string()),
        "{:?}",
        blobs(&far)
    );
    // Everything else loaded; the intact part completes it.
    ok(&[&"import", &good, &far]);
    assert_eq!(ls(&far), ls(&src));
    fsck_clean(&far);
}
