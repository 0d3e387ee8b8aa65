//! Hostile archives: members far larger than their descriptors declare, and extension headers
//! declaring gigabytes. Both are sparse files here (gigabytes declared, almost nothing on disk),
//! so each test is fast when the protection works and slow, or out of memory, when it does not.
//! The archive reader's own limits (member count, name lengths, absurd header sizes, link
//! escapes) have unit tests in `crates/docker/src/archive.rs`.

mod craft;

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use craft::*;

/// A tar of small members, without the end-of-archive blocks (more members follow).
fn small_members(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, *data).expect("append");
    }
    let mut out = b.into_inner().expect("tar");
    out.truncate(out.len() - 1024);
    out
}

/// Write `head`, then a member header of `kind` named `name` declaring `size` bytes of data that
/// are a hole in the file, then `tail` members and the end of the archive.
fn with_sparse_member(
    path: &Path,
    head: &[u8],
    name: &[u8],
    kind: tar::EntryType,
    size: u64,
    tail: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().expect("gnu").name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    let mut f = fs::File::create(path).expect("create");
    f.write_all(head).expect("write");
    f.write_all(h.as_bytes()).expect("write");
    let pos = f.stream_position().expect("pos") + size.div_ceil(512) * 512;
    f.seek(SeekFrom::Start(pos)).expect("seek");
    f.write_all(tail).expect("write");
    f.write_all(&[0u8; 1024]).expect("write");
}

/// An OCI archive whose layer descriptor says 1024 bytes while the member holds 1 GiB: refused
/// from the tar header before a byte is copied. Without the check the whole gigabyte was copied
/// into the layout, and only then found not to match.
#[test]
fn a_layer_member_larger_than_its_descriptor_is_refused_before_it_is_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let layer_digest = sha256(b"the layer the descriptor means");
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":1024}}]}}"#,
        sha256(config),
        config.len()
    );
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"big"}}}}]}}"#,
        sha256(manifest.as_bytes()),
        manifest.len()
    );
    let blob = |d: &str| format!("blobs/sha256/{}", &d[7..]);
    let (mname, cname) = (blob(&sha256(manifest.as_bytes())), blob(&sha256(config)));
    let head = small_members(&[
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json", index.as_bytes()),
        (&mname, manifest.as_bytes()),
        (&cname, config),
    ]);
    let src = tmp.path().join("big.tar");
    let lname = blob(&layer_digest);
    with_sparse_member(
        &src,
        &head,
        lname.as_bytes(),
        tar::EntryType::Regular,
        1 << 30,
        &[],
    );
    let dest = tmp.path().join("dest");
    let t = Instant::now();
    let o = run(&[
        "import",
        src.to_str().expect("utf-8"),
        dest.to_str().expect("utf-8"),
    ]);
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "ocikit: error: blob `{layer_digest}` at `{}` is 1073741824 bytes, expected 1024\n",
            src.join(&lname).display()
        )
    );
    assert!(!dest.exists());
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// A GNU long-name header declaring 3 GiB (a hole on disk). The tar reader reads such a header's
/// data into memory whole: without the first pass over the headers, under a 1 GiB address-space
/// cap, it read a gigabyte and failed with "out of memory" (without the cap it took 3 GiB).
/// ocikit refuses it from its header first.
#[test]
fn a_gigabyte_long_name_header_is_refused_without_reading_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("longname.tar");
    let tail = small_members(&[("manifest.json", b"[]")]);
    with_sparse_member(
        &src,
        &[],
        b"././@LongLink",
        tar::EntryType::GNULongName,
        3 << 30,
        &tail,
    );
    let dest = tmp.path().join("dest");
    let o = run_capped(&[
        "import",
        src.to_str().expect("utf-8"),
        dest.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "ocikit: error: `{}`: member `././@LongLink`: an extension header (long name or PAX records) of 3221225472 bytes, over the 1048576-byte limit\n",
            src.display()
        )
    );
    assert!(!dest.exists());
}

/// A docker-save archive with one layer and a config listing `diff_id`.
fn docker_save_with_layer(path: &Path, layer_name: &str, layer: &[u8], diff_id: &str) {
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let manifest =
        format!(r#"[{{"Config":"c.json","RepoTags":["x:1"],"Layers":["{layer_name}"]}}]"#);
    let mut tar = small_members(&[
        (layer_name, layer),
        ("c.json", config.as_bytes()),
        ("manifest.json", manifest.as_bytes()),
    ]);
    tar.extend_from_slice(&[0u8; 1024]);
    fs::write(path, tar).expect("write");
}

/// Layer errors named the member twice (`member `l/layer.tar`: `l/layer.tar`: ...`), and a zstd
/// window over the decoder's limit was reported as a broken stream.
#[test]
fn layer_errors_name_the_member_once_and_a_large_zstd_window_says_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("bad.tar");
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0];
    gz.extend_from_slice(&[b'x'; 64]);
    docker_save_with_layer(&bad, "l/layer.tar", &gz, &sha256(b""));
    let dst = tmp.path().join("dst");
    let o = run(&[
        "import",
        bad.to_str().expect("utf-8"),
        dst.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "ocikit: error: `{}`: member `l/layer.tar`: corrupt deflate stream\n",
            bad.display()
        )
    );
    let wide = tmp.path().join("wide.tar");
    let tar = [0u8; 1024];
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
    enc.window_log(30).expect("window_log");
    enc.long_distance_matching(true).expect("ldm");
    enc.write_all(&tar).expect("write");
    let zst = enc.finish().expect("finish");
    docker_save_with_layer(&wide, "l/layer.tar", &zst, &sha256(&tar));
    let o = run(&[
        "import",
        wide.to_str().expect("utf-8"),
        dst.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "ocikit: error: `{}`: member `l/layer.tar`: zstd window too large for the memory limit (a frame needs a window over 128 MiB)\n",
            wide.display()
        )
    );
    assert!(!dst.exists());
}

/// A member name with an escape sequence and a newline is printed escaped: it cannot erase the
/// error line and print a fake success line in its place.
#[test]
fn member_names_are_escaped_in_error_lines() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let evil = tmp.path().join("evil.tar");
    with_sparse_member(
        &evil,
        &[],
        b"ok\r\x1b[2Kimported `x:1`\n/../../x",
        tar::EntryType::Regular,
        1,
        &[],
    );
    let dst = tmp.path().join("dst");
    let o = run(&[
        "import",
        evil.to_str().expect("utf-8"),
        dst.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "ocikit: error: `{}`: member `ok\\r\\u{{1b}}[2Kimported `x:1`\\n/../../x`: `..` in path\n",
            evil.display()
        )
    );
}
