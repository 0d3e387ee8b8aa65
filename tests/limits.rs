//! Hostile layouts: oversized JSON, negative and lying sizes, unknown digest algorithms,
//! path-traversing digests and crafted deep nesting. Each test fails without its protection.

mod craft;

use std::fs;

use craft::*;
use serde_json::{json, Value};

/// Findings of one kind, as (digest, detail) with the temp dir replaced by `<L>`.
fn findings(lay: &Lay, report: &Value, kind: &str) -> Vec<(Value, String)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["kind"] == kind)
        .map(|f| {
            (
                f["digest"].clone(),
                f["detail"]
                    .as_str()
                    .expect("detail")
                    .replace(lay.path(), "<L>"),
            )
        })
        .collect()
}

fn big_manifest(lay: &Lay, size: usize) -> Value {
    let cfg = lay.config("c");
    let layer = lay.desc(OCI_LAYER, b"layer");
    let head =
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [layer],
        "annotations": {"x": ""}})
        .to_string();
    // Pad the annotation so the document is exactly `size` bytes and still valid JSON.
    let pad = size - head.len();
    let doc = head.replace(r#""x":"""#, &format!(r#""x":"{}""#, "a".repeat(pad)));
    assert_eq!(doc.len(), size);
    lay.desc(OCI_MANIFEST, doc.as_bytes())
}

#[test]
fn manifest_over_4_mib_is_refused_with_a_clear_finding() {
    let lay = Lay::new();
    let m = big_manifest(&lay, 5 << 20);
    lay.set_index(&[named(&m, "big")]);
    let digest = m["digest"].as_str().expect("digest").to_string();
    let (code, report) = lay.fsck();
    assert_eq!(code, 1);
    assert_eq!(
        findings(&lay, &report, "unparseable"),
        vec![(
            json!(digest),
            format!("`{digest}` is 5242880 bytes, larger than the 4194304-byte limit for JSON documents")
        )]
    );
    // Just under the limit is fine.
    let ok = big_manifest(&lay, 4 << 20);
    lay.set_index(&[named(&ok, "ok")]);
    let (code, report) = lay.fsck();
    assert_eq!(code, 0, "{report}");
}

#[test]
fn huge_index_json_is_refused_before_it_is_read() {
    let lay = Lay::new();
    // A sparse 5 GiB index.json: reading it whole would take 5 GiB of memory.
    let f = fs::File::create(lay.root.join("index.json")).expect("create");
    f.set_len(5 << 30).expect("set_len");
    drop(f);
    let o = run_capped(&["ls", lay.path()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o).replace(lay.path(), "<L>"),
        "ocikit: error: `<L>/index.json` is 5368709120 bytes, larger than the 67108864-byte limit for JSON documents\n"
    );
    // The same for a sparse manifest blob named by a (lying) descriptor.
    lay.set_index(&[]);
    let d = sha256(b"not really");
    let f = fs::File::create(lay.blob_path(&d)).expect("create");
    f.set_len(5 << 30).expect("set_len");
    drop(f);
    lay.set_index(&[named(
        &json!({"mediaType": OCI_MANIFEST, "digest": d, "size": 5u64 << 30}),
        "huge",
    )]);
    // inspect only walks (fsck would go on to hash the 5 GiB, which is its job but slow here).
    let o = run_capped(&["inspect", "--json", lay.path(), "huge"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        v["problem"],
        json!(format!("unparseable: `{d}` is 5368709120 bytes, larger than the 4194304-byte limit for JSON documents"))
    );
}

#[test]
fn negative_sizes_are_parse_errors_naming_the_document() {
    let lay = Lay::new();
    let m = lay.image("neg");
    let mut entry = named(&m, "neg");
    entry["size"] = json!(-1);
    lay.set_index(&[entry]);
    let o = run(&["ls", lay.path()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o).replace(lay.path(), "<L>"),
        "ocikit: error: `<L>/index.json` does not parse: invalid value: integer `-1`, expected u64 at line 1 column 236\n"
    );

    // Inside a manifest: fsck names the manifest.
    let cfg = lay.config("c");
    let bad = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(b"x"), "size": -5}]});
    let bad = lay.desc(OCI_MANIFEST, bad.to_string().as_bytes());
    lay.set_index(&[named(&bad, "neg")]);
    let (code, report) = lay.fsck();
    assert_eq!(code, 1);
    assert_eq!(
        findings(&lay, &report, "unparseable"),
        vec![(
            bad["digest"].clone(),
            "invalid value: integer `-5`, expected u64".to_string()
        )]
    );
}

#[test]
fn declared_size_larger_than_the_blob_is_a_size_mismatch() {
    let lay = Lay::new();
    let m = lay.image("liar");
    let d = m["digest"].as_str().expect("digest").to_string();
    let real = m["size"].as_u64().expect("size");
    let mut entry = named(&m, "liar");
    entry["size"] = json!(u64::MAX);
    lay.set_index(&[entry]);
    let (code, report) = lay.fsck();
    assert_eq!(code, 1);
    assert_eq!(
        findings(&lay, &report, "size-mismatch"),
        vec![(
            json!(d),
            format!("blob `{d}` at `<L>/blobs/sha256/{}` is {real} bytes, expected 18446744073709551615", &d[7..])
        )]
    );
    let o = run(&["cat", lay.path(), "liar"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());

    // A layer that claims a terabyte.
    let cfg = lay.config("c");
    let layer = lay.put(b"tiny");
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
        "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": 1u64 << 40}]});
    let m = lay.desc(OCI_MANIFEST, m.to_string().as_bytes());
    lay.set_index(&[named(&m, "tb")]);
    let (code, report) = lay.fsck();
    assert_eq!(code, 1);
    assert_eq!(
        findings(&lay, &report, "size-mismatch"),
        vec![(
            json!(layer),
            "blob is 4 bytes, descriptor says 1099511627776".to_string()
        )]
    );
}

#[test]
fn unknown_digest_algorithms_are_unverifiable_not_errors() {
    let lay = Lay::new();
    let odd = "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564";
    fs::create_dir_all(lay.root.join("blobs/sha256+b64u")).expect("mkdir");
    fs::write(lay.blob_path(odd), b"layer bytes").expect("write");
    let cfg = lay.config("c");
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
        "layers": [{"mediaType": OCI_LAYER, "digest": odd, "size": 11}]});
    let m = lay.desc(OCI_MANIFEST, m.to_string().as_bytes());
    lay.set_index(&[named(&m, "odd")]);
    let (code, report) = lay.fsck();
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        findings(&lay, &report, "unverifiable"),
        vec![(
            json!(odd),
            "algorithm `sha256+b64u` cannot be verified".to_string()
        )]
    );
    // gc keeps it (it is reachable) and deletes nothing else.
    let o = run(&["gc", "--json", lay.path()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(lay.blob_path(odd).exists());

    // A manifest under an unverifiable digest is not trusted: gc cannot know what it keeps.
    lay.set_index(&[named(
        &json!({"mediaType": OCI_MANIFEST, "digest": odd, "size": 11}),
        "m",
    )]);
    let o = run(&["gc", lay.path()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!("ocikit: error: gc deleted nothing: 1 reachable document(s) cannot be read: `{odd}` (unverifiable digest)\n")
    );
}

#[test]
fn path_traversing_digests_are_invalid() {
    let lay = Lay::new();
    // A file outside blobs/ that a traversal would reach.
    fs::write(lay.root.join("secret"), b"{}").expect("write");
    for bad in [
        "sha256:../../secret",
        "../blobs:secret",
        "sha256:..%2f..%2fsecret",
        "..:x",
    ] {
        lay.set_index(&[json!({"mediaType": OCI_MANIFEST, "digest": bad, "size": 2})]);
        let o = run(&["ls", lay.path()]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&o).contains(&format!(
                "does not parse: invalid digest `{bad}`: not of the form algorithm:encoded"
            )),
            "{bad}: {}",
            stderr(&o)
        );
        let o = run(&["cat", lay.path(), bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(o.stdout.is_empty(), "{bad}");
    }
    // Inside a manifest: the manifest is unparseable, naming the digest.
    let cfg = lay.config("c");
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
        "layers": [{"mediaType": OCI_LAYER, "digest": "sha256:../../../secret", "size": 2}]});
    let m = lay.desc(OCI_MANIFEST, m.to_string().as_bytes());
    lay.set_index(&[named(&m, "evil")]);
    let (code, report) = lay.fsck();
    assert_eq!(code, 1);
    assert_eq!(
        findings(&lay, &report, "unparseable"),
        vec![(
            m["digest"].clone(),
            "invalid digest `sha256:../../../secret`: not of the form algorithm:encoded"
                .to_string()
        )]
    );
}

/// index.json -> 10,000 nested indexes -> an image. Without the iterative, depth-capped walk
/// every command that walks overflows its stack.
#[test]
fn ten_thousand_nested_indexes_do_not_overflow() {
    let lay = Lay::new();
    let mut d = lay.image("bottom");
    for _ in 0..10_000 {
        let ix = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [d]});
        d = lay.desc(OCI_INDEX, ix.to_string().as_bytes());
    }
    lay.set_index(&[named(&d, "deep")]);
    let (code, report) = lay.fsck();
    assert_eq!(code, 1);
    let deep = findings(&lay, &report, "too-deep");
    assert_eq!(deep.len(), 1, "{deep:?}");
    assert_eq!(deep[0].1, "nested more than 64 levels deep: not followed");
    let o = run(&["gc", lay.path()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("(nested too deep)"), "{}", stderr(&o));
    let o = run(&["inspect", "--json", lay.path(), "deep"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(&["inspect", lay.path(), "deep"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 65);
    assert!(out
        .lines()
        .last()
        .expect("line")
        .ends_with("!! not expanded: nested too deep"));
}

/// A bundle part whose second member is a GNU long-name header declaring 1.5 GB (a sparse file):
/// the tar reader would read the whole "name" into memory. The part is refused from the header
/// alone, quickly and within 1 GiB of address space, as a rejected part (exit 1).
#[test]
fn bundle_part_with_a_huge_long_name_header_is_refused_quickly() {
    let lay = Lay::new();
    let img = lay.image("app");
    lay.set_index(&[named(&img, "app:1")]);
    let tmp = tempfile::tempdir().expect("tmp");
    let good = tmp.path().join("good.tar");
    let o = run(&[
        "--no-fsync",
        "bundle",
        lay.path(),
        "-o",
        good.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Keep the first member (bundle.json, so the part is recognised and its manifest parses).
    let bytes = fs::read(&good).expect("read");
    let size = tar::Header::from_byte_slice(&bytes[..512])
        .entry_size()
        .expect("size");
    let mut part = bytes[..512 + (size as usize).div_ceil(512) * 512].to_vec();
    let declared: u64 = 1_500_000_000;
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().expect("gnu").name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_mode(0o644);
    h.set_size(declared);
    h.set_cksum();
    part.extend_from_slice(h.as_bytes());
    let bad = tmp.path().join("bad.tar");
    fs::write(&bad, &part).expect("write");
    // The "name" is there, as a hole.
    fs::OpenOptions::new()
        .write(true)
        .open(&bad)
        .and_then(|f| f.set_len(part.len() as u64 + declared.div_ceil(512) * 512 + 1024))
        .expect("extend");
    let dst = tmp.path().join("dst");
    let started = std::time::Instant::now();
    let o = run_capped(&[
        "--no-fsync",
        "import",
        bad.to_str().expect("utf-8"),
        dst.to_str().expect("utf-8"),
    ]);
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "member `././@LongLink`: an extension header (long name or PAX records) of 1500000000 bytes, over the 1048576-byte limit"
        ),
        "{}",
        stderr(&o)
    );
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
}

/// `ls` pads its columns; a ref or media type longer than 65,535 characters made it panic
/// (exit 101: `format!` widths stop there). Every row is printed in full.
#[test]
fn ls_prints_columns_wider_than_65535_characters() {
    let lay = Lay::new();
    let img = lay.image("long");
    let long_ref = format!("r{}", "a".repeat(70_000));
    lay.set_index(&[named(&img, &long_ref)]);
    let o = run(&["ls", lay.path()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with(&format!("REF{}  DIGEST", " ".repeat(70_001 - 3))));
    assert!(lines[1].starts_with(&format!(
        "{long_ref}  {}",
        img["digest"].as_str().expect("digest")
    )));
}

/// An `index.json` over the 4 MiB cap of other JSON documents (30,000 refs, about 5 MiB) is the
/// layout's own file: ocikit wrote it one ref at a time, so every verb reads it and `tag` and
/// `untag` still work (they used to exit 2 past 4 MiB, `untag` included).
#[test]
fn an_index_json_of_30000_refs_is_read_and_edited() {
    let lay = Lay::new();
    let img = lay.image("many");
    let entries: Vec<Value> = (0..30_000)
        .map(|i| {
            let mut e = named(&img, &format!("registry.example.com/team/app:build-{i:06}"));
            e["annotations"]["org.opencontainers.image.created"] = json!("2026-11-29T00:00:00Z");
            e
        })
        .collect();
    lay.set_index(&entries);
    let size = fs::metadata(lay.root.join("index.json"))
        .expect("stat")
        .len();
    assert!(size > 4 << 20, "index.json of {size} bytes");
    let o = run(&["ls", lay.path()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 30_001);
    let o = run(&[
        "tag",
        lay.path(),
        "registry.example.com/team/app:build-000000",
        "one-more",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(&[
        "untag",
        lay.path(),
        "registry.example.com/team/app:build-000001",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(&["fsck", lay.path()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn control_characters_in_names_are_escaped_for_humans_and_exact_in_json() {
    // A ref that would clear the screen, forge an `ls` row and reverse the text after it.
    let evil = "a\n\x1b[2Jfake  row\t\u{202e}x\u{9b}";
    let shown = r"a\n\u{1b}[2Jfake  row\t\u{202e}x\u{9b}";
    let lay = Lay::new();
    let m = lay.image("e");
    let digest = m["digest"].as_str().expect("digest").to_string();
    lay.set_index(&[named(&m, evil)]);
    let o = run(&["ls", lay.path()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "REF{}  DIGEST{}  MEDIA TYPE{}  SIZE  PLATFORM\n{shown}  {digest}  {OCI_MANIFEST}  {}   -\n",
            " ".repeat(shown.len() - 3),
            " ".repeat(digest.len() - 6),
            " ".repeat(OCI_MANIFEST.len() - 10),
            m["size"]
        )
    );
    // --json stays exact.
    let o = run(&["ls", "--json", lay.path()]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v[0]["ref"], json!(evil));
    // fsck paths: the manifest's layer is gone.
    let layer = lay.put(b"layer of e");
    fs::remove_file(lay.blob_path(&layer)).expect("rm");
    let o = run(&["fsck", lay.path()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        format!("error: missing: {layer} ({shown} > layers[0] {layer}): blob is absent\n")
    );
    // Error lines: an unknown ref is named escaped.
    let o = run(&["inspect", lay.path(), "b\x1b[1A\rOK"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "ocikit: error: no ref or digest `b\\u{{1b}}[1A\\rOK` in `{}/index.json`\n",
            lay.path()
        )
    );
}

#[test]
fn a_zstd_layer_with_a_1_gib_window_is_said_to_be_too_large_not_a_diff_id_mismatch() {
    let lay = Lay::new();
    let tar = vec![0u8; 1024];
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
    enc.window_log(30).expect("window_log");
    enc.long_distance_matching(true).expect("ldm");
    std::io::Write::write_all(&mut enc, &tar).expect("write");
    let blob = enc.finish().expect("finish");
    let layer = lay.desc("application/vnd.oci.image.layer.v1.tar+zstd", &blob);
    let config = lay.desc(
        OCI_CONFIG,
        format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            sha256(&tar)
        )
        .as_bytes(),
    );
    let m =
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]});
    let m = lay.desc(OCI_MANIFEST, &serde_json::to_vec(&m).expect("json"));
    lay.set_index(&[named(&m, "z")]);
    let o = run(&["fsck", "--deep", "--json", lay.path()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).expect("json");
    let kinds: Vec<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["window-too-large"]);
    assert_eq!(
        findings(&lay, &report, "window-too-large"),
        vec![(
            layer["digest"].clone(),
            "zstd window too large for the memory limit (a frame needs a window over 128 MiB)"
                .to_string()
        )]
    );
}
