//! `ocikit serve`: the pull side of the distribution API over layouts, checked with raw HTTP
//! requests on a `TcpStream` and with real clients (skopeo; containerd and dockerd in
//! `serve_engines.rs`). Each test starts its own server on a free port and kills it by PID.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::serve::*;
use common::*;
use ocikit_layout::{Compression, Digest, Layout};
use serde_json::{json, Value};

/// The layout of most tests, in `tmp/site` (so its own repository is `site`): image A tagged
/// `docker.io/library/app:1.0` (repository `library/app`) and image B tagged `latest` (a bare
/// tag: repository `site`).
fn site(tmp: &Path) -> (PathBuf, Built, Built) {
    let dir = tmp.join("site");
    let a = small_image(&dir, "docker.io/library/app:1.0");
    let b = add_image(
        &dir,
        "latest",
        &[LayerSpec::new(&[("b.txt", b"bee\n")], Compression::Gzip)],
        None,
    );
    (dir, a, b)
}

const A_MANIFEST: &str = "sha256:e9ef50656a68aba0315102b75a333871c0e1bd3bc4482a893ec628a1d40b1886";

fn blob_bytes(dir: &Path, d: &Digest) -> Vec<u8> {
    std::fs::read(dir.join(d.blob_rel_path())).expect("blob")
}

#[test]
fn manifests_by_tag_and_digest_with_type_digest_and_length() {
    let tmp = tempdir();
    let (dir, a, b) = site(tmp.path());
    assert_eq!(a.manifest.digest.as_str(), A_MANIFEST);
    let s = Served::start(tmp.path(), &["site"]);

    let r = get(&s.addr, "/v2/", &[]);
    assert_eq!((r.status, r.text()), (200, "{}".to_string()));
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );

    let a_bytes = blob_bytes(&dir, &a.manifest.digest);
    for path in [
        "/v2/library/app/manifests/1.0".to_string(),
        format!("/v2/library/app/manifests/{A_MANIFEST}"),
    ] {
        let r = get(&s.addr, &path, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, a_bytes);
        assert_eq!(
            r.header("content-type"),
            Some("application/vnd.oci.image.manifest.v1+json")
        );
        assert_eq!(r.header("docker-content-digest"), Some(A_MANIFEST));
        assert_eq!(
            r.header("content-length"),
            Some(a.manifest.size.to_string().as_str())
        );
        assert_eq!(r.header("etag"), Some(format!("\"{A_MANIFEST}\"").as_str()));
        let h = request(&s.addr, "HEAD", &path, &[]);
        assert_eq!(h.status, 200);
        assert!(h.body.is_empty());
        assert_eq!(h.header("docker-content-digest"), Some(A_MANIFEST));
        assert_eq!(
            h.header("content-length"),
            Some(a.manifest.size.to_string().as_str())
        );
    }
    // The bare tag is a tag of the layout's own repository.
    let r = get(&s.addr, "/v2/site/manifests/latest", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-content-digest"),
        Some(b.manifest.digest.as_str())
    );
    // Every digest the layout reaches is in every repository it serves; tags are not.
    let r = get(&s.addr, &format!("/v2/site/manifests/{A_MANIFEST}"), &[]);
    assert_eq!(r.status, 200);
    let r = get(&s.addr, "/v2/site/manifests/1.0", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        error_json(
            "MANIFEST_UNKNOWN",
            "manifest unknown",
            json!({"name": "site", "reference": "1.0"})
        )
    );
    // A config is a blob, not a manifest.
    let config = a.config.0.as_str();
    let r = get(&s.addr, &format!("/v2/library/app/manifests/{config}"), &[]);
    assert_eq!(r.status, 404);
    // If-None-Match with the ETag: 304, no body.
    let r = get(
        &s.addr,
        "/v2/library/app/manifests/1.0",
        &[&format!("If-None-Match: \"{A_MANIFEST}\"")],
    );
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
}

#[test]
fn blobs_with_ranges_etags_and_lengths() {
    let tmp = tempdir();
    let (dir, a, _) = site(tmp.path());
    let s = Served::start(tmp.path(), &["site"]);
    let layer = &a.layers[0];
    let bytes = blob_bytes(&dir, &layer.digest);
    let len = bytes.len();
    let path = format!("/v2/library/app/blobs/{}", layer.digest);
    let etag = format!("\"{}\"", layer.digest);

    let r = get(&s.addr, &path, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, bytes);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(
        r.header("docker-content-digest"),
        Some(layer.digest.as_str())
    );
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));

    let h = request(&s.addr, "HEAD", &path, &[]);
    assert_eq!((h.status, h.body.len()), (200, 0));
    assert_eq!(h.header("content-length"), Some(len.to_string().as_str()));

    let r = get(&s.addr, &path, &["Range: bytes=2-5"]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, bytes[2..6]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 2-5/{len}").as_str())
    );
    let r = get(&s.addr, &path, &["Range: bytes=10-"]);
    assert_eq!((r.status, &r.body[..]), (206, &bytes[10..]));
    let r = get(&s.addr, &path, &["Range: bytes=-7"]);
    assert_eq!((r.status, &r.body[..]), (206, &bytes[len - 7..]));
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {}-{}/{len}", len - 7, len - 1).as_str())
    );
    let r = get(&s.addr, &path, &[&format!("Range: bytes={len}-")]);
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    // Several ranges: the whole blob.
    let r = get(&s.addr, &path, &["Range: bytes=0-1,4-5"]);
    assert_eq!((r.status, r.body.len()), (200, len));
    // If-Range with another entity: the whole blob.
    let r = get(&s.addr, &path, &["Range: bytes=0-1", "If-Range: \"other\""]);
    assert_eq!((r.status, r.body.len()), (200, len));
    let r = get(&s.addr, &path, &[&format!("If-None-Match: {etag}")]);
    assert_eq!((r.status, r.body.len()), (304, 0));

    // A manifest is a blob too (as distribution serves it).
    let r = get(&s.addr, &format!("/v2/library/app/blobs/{A_MANIFEST}"), &[]);
    assert_eq!(r.status, 200);
}

#[test]
fn tags_list_and_catalog_paginate() {
    let tmp = tempdir();
    let (dir, _, _) = site(tmp.path());
    for t in ["b", "a", "d", "c"] {
        let run = ocikit(tmp.path(), &["tag", "site", "latest", t]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let s = Served::start(tmp.path(), &[dir.to_str().expect("utf-8")]);
    let r = get(&s.addr, "/v2/site/tags/list", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"name": "site", "tags": ["a", "b", "c", "d", "latest"]})
    );
    assert_eq!(r.header("link"), None);

    let r = get(&s.addr, "/v2/site/tags/list?n=2", &[]);
    assert_eq!(r.json(), json!({"name": "site", "tags": ["a", "b"]}));
    assert_eq!(
        r.header("link"),
        Some("</v2/site/tags/list?n=2&last=b>; rel=\"next\"")
    );
    let r = get(&s.addr, "/v2/site/tags/list?n=2&last=b", &[]);
    assert_eq!(r.json(), json!({"name": "site", "tags": ["c", "d"]}));
    assert_eq!(
        r.header("link"),
        Some("</v2/site/tags/list?n=2&last=d>; rel=\"next\"")
    );
    let r = get(&s.addr, "/v2/site/tags/list?n=2&last=d", &[]);
    assert_eq!(r.json(), json!({"name": "site", "tags": ["latest"]}));
    assert_eq!(r.header("link"), None);
    let r = get(&s.addr, "/v2/site/tags/list?n=0", &[]);
    assert_eq!(r.json(), json!({"name": "site", "tags": []}));
    let r = get(&s.addr, "/v2/site/tags/list?last=zzz", &[]);
    assert_eq!(r.json(), json!({"name": "site", "tags": []}));
    let r = get(&s.addr, "/v2/site/tags/list?n=-1", &[]);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        error_json(
            "PAGINATION_NUMBER_INVALID",
            "invalid number of results requested",
            json!({"n": "-1"})
        )
    );
    let r = get(&s.addr, "/v2/library/app/tags/list", &[]);
    assert_eq!(r.json(), json!({"name": "library/app", "tags": ["1.0"]}));

    let r = get(&s.addr, "/v2/_catalog", &[]);
    assert_eq!(r.json(), json!({"repositories": ["library/app", "site"]}));
    let r = get(&s.addr, "/v2/_catalog?n=1", &[]);
    assert_eq!(r.json(), json!({"repositories": ["library/app"]}));
    assert_eq!(
        r.header("link"),
        Some("</v2/_catalog?n=1&last=library/app>; rel=\"next\"")
    );
}

#[test]
fn errors_have_the_spec_codes_and_writes_are_unsupported() {
    let tmp = tempdir();
    site(tmp.path());
    let s = Served::start(tmp.path(), &["site"]);
    let zero = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    let r = get(&s.addr, "/v2/nope/manifests/latest", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        error_json(
            "NAME_UNKNOWN",
            "repository name not known to registry",
            json!({"name": "nope"})
        )
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = get(&s.addr, "/v2/nope/tags/list", &[]);
    assert_eq!(r.status, 404);
    let r = get(&s.addr, "/v2/Site/tags/list", &[]);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        error_json(
            "NAME_INVALID",
            "invalid repository name",
            json!({"name": "Site"})
        )
    );
    let r = get(&s.addr, &format!("/v2/site/blobs/{zero}"), &[]);
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        error_json(
            "BLOB_UNKNOWN",
            "blob unknown to registry",
            json!({"name": "site", "digest": zero})
        )
    );
    let r = get(&s.addr, &format!("/v2/site/manifests/{zero}"), &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["errors"][0]["code"], "MANIFEST_UNKNOWN");
    for bad in [
        "sha256:abc",
        "sha256:../../oci-layout",
        "md5:",
        "sha256%3A00",
    ] {
        let r = get(&s.addr, &format!("/v2/site/blobs/{bad}"), &[]);
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(
            r.json(),
            error_json("DIGEST_INVALID", "invalid digest", json!({"digest": bad})),
            "{bad}"
        );
    }
    for (method, path) in [
        ("PUT", "/v2/site/manifests/latest".to_string()),
        ("DELETE", "/v2/site/manifests/latest".to_string()),
        ("DELETE", format!("/v2/site/blobs/{A_MANIFEST}")),
        ("POST", "/v2/site/blobs/uploads/".to_string()),
        ("PATCH", "/v2/site/blobs/uploads/1".to_string()),
        (
            "PUT",
            "/v2/site/blobs/uploads/1?digest=sha256:00".to_string(),
        ),
    ] {
        let r = request(&s.addr, method, &path, &["Content-Length: 0"]);
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(
            r.json(),
            error_json(
                "UNSUPPORTED",
                "this registry is read-only: only GET and HEAD are served",
                json!({"method": method})
            )
        );
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
    // A write with a body: answered, then the connection is closed (the body is not read).
    let mut c = TcpStream::connect(&s.addr).expect("connect");
    c.write_all(b"PUT /v2/site/manifests/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .expect("send");
    let mut all = Vec::new();
    c.read_to_end(&mut all).expect("read");
    let r = parse_response(&all, true);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("connection"), Some("close"));
    let r = get(&s.addr, "/v2/site/blobs/uploads/1", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["errors"][0]["code"], "BLOB_UPLOAD_UNKNOWN");
    let r = get(&s.addr, "/index.json", &[]);
    assert_eq!(r.status, 404);
}

#[test]
fn malformed_and_oversized_requests_are_400_never_a_crash() {
    let tmp = tempdir();
    site(tmp.path());
    let s = Served::start(tmp.path(), &["site"]);
    let send = |bytes: &[u8]| -> Resp {
        let mut c = TcpStream::connect(&s.addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let _ = c.write_all(bytes);
        let mut all = Vec::new();
        let _ = c.read_to_end(&mut all);
        parse_response(&all, true)
    };
    for (bytes, status) in [
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
        (b"GET /v2/ HTTP/9.9\r\n\r\n".to_vec(), 400),
        (b"GET http://x/v2/ HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET /v2/ HTTP/1.1\r\nbad header\r\n\r\n".to_vec(), 400),
        (b"GET /v2/\xff HTTP/1.1\r\n\r\n".to_vec(), 400),
        // A TLS ClientHello: answered at once (not after the head timeout), so a client that
        // tries HTTPS first falls back to HTTP without waiting.
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
            400,
        ),
        (
            format!("GET /v2/{} HTTP/1.1\r\n\r\n", "a".repeat(20_000)).into_bytes(),
            431,
        ),
        (
            format!("GET /v2/ HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(101)).into_bytes(),
            431,
        ),
    ] {
        let r = send(&bytes);
        assert_eq!(
            r.status,
            status,
            "{:?}",
            String::from_utf8_lossy(&bytes[..40.min(bytes.len())])
        );
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(r.json()["errors"][0]["code"], "UNSUPPORTED");
    }
    // Still serving.
    assert_eq!(get(&s.addr, "/v2/", &[]).status, 200);
}

#[test]
fn keep_alive_and_pipelined_requests_share_a_connection() {
    let tmp = tempdir();
    let (dir, a, _) = site(tmp.path());
    let s = Served::start(tmp.path(), &["site"]);
    let mut c = TcpStream::connect(&s.addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let manifest = blob_bytes(&dir, &a.manifest.digest);
    // Two requests in one write, then a third that closes.
    let two = "GET /v2/library/app/manifests/1.0 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /v2/ HTTP/1.1\r\nHost: x\r\n\r\n";
    c.write_all(two.as_bytes()).expect("send");
    c.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut all = Vec::new();
    c.read_to_end(&mut all).expect("read");
    let text = String::from_utf8_lossy(&all).into_owned();
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
    let first_body = all.windows(manifest.len()).any(|w| w == &manifest[..]);
    assert!(first_body);
    assert!(text.ends_with("\r\n\r\n{}"), "{text}");
}

#[test]
fn an_unreachable_blob_is_404_even_on_disk() {
    let tmp = tempdir();
    let (dir, a, _) = site(tmp.path());
    // A blob nothing reaches, as gc would find it.
    let layout = Layout::open(&dir, opts()).expect("open");
    let (loose, _) = layout
        .lock()
        .expect("lock")
        .write_blob(b"left for gc\n")
        .expect("write");
    let s = Served::start(tmp.path(), &["site"]);
    let r = get(&s.addr, &format!("/v2/site/blobs/{loose}"), &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["errors"][0]["code"], "BLOB_UNKNOWN");
    // Untagging A leaves its blobs on disk, unreachable: no longer served.
    let layer = format!("/v2/library/app/blobs/{}", a.layers[0].digest);
    assert_eq!(get(&s.addr, &layer, &[]).status, 200);
    let run = ocikit(tmp.path(), &["untag", "site", "docker.io/library/app:1.0"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = get(&s.addr, &layer, &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["errors"][0]["code"], "NAME_UNKNOWN");
    let r = get(
        &s.addr,
        &format!("/v2/site/blobs/{}", a.layers[0].digest),
        &[],
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["errors"][0]["code"], "BLOB_UNKNOWN");
}

#[test]
fn a_new_index_json_is_served_from_the_next_request() {
    let tmp = tempdir();
    let (dir, _, b) = site(tmp.path());
    let s = Served::start(tmp.path(), &["site"]);
    assert_eq!(get(&s.addr, "/v2/site/manifests/v2", &[]).status, 404);
    // A tag (an atomic replace of index.json by another process).
    let run = ocikit(tmp.path(), &["tag", "site", "latest", "v2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = get(&s.addr, "/v2/site/manifests/v2", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-content-digest"),
        Some(b.manifest.digest.as_str())
    );
    // An import into the served layout: a new repository.
    let run = ocikit(
        tmp.path(),
        &[
            "import",
            fixtures()
                .join("docker/ggcr-test_link.tar")
                .to_str()
                .expect("utf-8"),
            dir.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = get(&s.addr, "/v2/bazel/v1/tarball/tags/list", &[]);
    assert_eq!(
        r.json(),
        json!({"name": "bazel/v1/tarball", "tags": ["test_image_1", "test_image_3"]})
    );
    let r = get(&s.addr, "/v2/bazel/v1/tarball/manifests/test_image_1", &[]);
    assert_eq!(
        r.header("docker-content-digest"),
        Some("sha256:96cd087dd32574af5079fd638e0bc195eb23c0f51c11f45b6b79f29feecfbfd2")
    );
}

#[test]
fn path_traversal_is_refused_and_nothing_outside_the_layout_is_read() {
    let tmp = tempdir();
    let (dir, a, _) = site(tmp.path());
    let secret = b"secret outside the layout\n";
    std::fs::write(tmp.path().join("secret"), secret).expect("write");
    // A reachable blob whose file is a link out of the layout: the store refuses it.
    let layer = &a.layers[0].digest;
    let blob = dir.join(layer.blob_rel_path());
    std::fs::remove_file(&blob).expect("rm");
    std::os::unix::fs::symlink(tmp.path().join("secret"), &blob).expect("symlink");
    let s = Served::start(tmp.path(), &["site"]);
    let attempts = [
        "/v2/../secret".to_string(),
        "/v2/../../secret".to_string(),
        "/v2/site/../../secret".to_string(),
        "/v2/site/blobs/../../../secret".to_string(),
        "/v2/site/blobs/sha256:..%2F..%2F..%2Fsecret".to_string(),
        "/v2/site/blobs/sha256%2F..%2F..%2F..%2Fsecret".to_string(),
        "/v2/%2e%2e/%2e%2e/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000".to_string(),
        "/v2/site/manifests/..%2f..%2fsecret".to_string(),
        "/v2/site/manifests/../../../secret".to_string(),
        "/v2/site%2f..%2f..%2fsecret/tags/list".to_string(),
        "/v2/site/blobs/sha256:/../../secret".to_string(),
        "/%2e%2e/secret".to_string(),
        "/secret".to_string(),
        format!("/v2/library/app/blobs/{layer}"),
        format!("/v2/library/app/blobs/{layer}/../../../../secret"),
    ];
    for path in &attempts {
        let r = get(&s.addr, path, &[]);
        assert!(
            (400..500).contains(&r.status) || r.status == 500,
            "{path}: {}",
            r.status
        );
        assert!(
            !r.body.windows(secret.len()).any(|w| w == secret),
            "{path} read the secret"
        );
        assert!(r.json()["errors"][0]["code"].is_string(), "{path}");
    }
    // The linked blob: refused by the store (500, logged), never followed.
    let r = get(&s.addr, &format!("/v2/library/app/blobs/{layer}"), &[]);
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["errors"][0]["code"], "UNKNOWN");
    let log = s.log().join("\n");
    assert!(
        log.contains(&format!(
            "ocikit: warning: `site`: refusing `site/{}`: it is a symbolic link, not a regular file",
            layer.blob_rel_path().display()
        )),
        "{log}"
    );
}

#[test]
fn referrers_are_listed_with_the_artifact_type_filter() {
    let tmp = tempdir();
    let (dir, a, _) = site(tmp.path());
    let layout = Layout::open(&dir, opts()).expect("open");
    let lock = layout.lock().expect("lock");
    let empty = b"{}";
    lock.write_blob(empty).expect("empty");
    let sig_layer = b"signature bytes";
    lock.write_blob(sig_layer).expect("sig");
    let subject = json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": a.manifest.digest.as_str(),
        "size": a.manifest.size,
    });
    let referrer = |artifact: Option<&str>, config_type: &str, note: &str| -> Value {
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": config_type, "digest": Digest::sha256(empty).as_str(), "size": 2},
            "layers": [desc_of("application/octet-stream", sig_layer)],
            "subject": subject,
            "annotations": {"note": note},
        });
        if let Some(t) = artifact {
            m["artifactType"] = json!(t);
        }
        m
    };
    let sig = referrer(
        Some("application/vnd.example.sig"),
        "application/vnd.oci.empty.v1+json",
        "sig",
    );
    let sbom = referrer(None, "application/vnd.example.sbom", "sbom");
    let mut index = layout.read_index().expect("index").value;
    let mut entries = Vec::new();
    for m in [&sig, &sbom] {
        let bytes = serde_json::to_vec(m).expect("json");
        let (d, size) = lock.write_blob(&bytes).expect("write");
        let desc = ocikit_layout::Descriptor::new(ocikit_layout::MediaType::OciManifest, d, size);
        index.manifests.push(desc.clone());
        entries.push(desc);
    }
    lock.commit_index(&index).expect("commit");
    drop(lock);
    let s = Served::start(tmp.path(), &["site"]);
    let listed = |d: &ocikit_layout::Descriptor, t: &str, note: &str| {
        json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": d.digest.as_str(),
            "size": d.size,
            "annotations": {"note": note},
            "artifactType": t,
        })
    };
    let path = format!("/v2/library/app/referrers/{A_MANIFEST}");
    let r = get(&s.addr, &path, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.oci.image.index.v1+json")
    );
    assert_eq!(r.header("oci-filters-applied"), None);
    assert_eq!(
        r.json(),
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                listed(&entries[0], "application/vnd.example.sig", "sig"),
                listed(&entries[1], "application/vnd.example.sbom", "sbom"),
            ],
        })
    );
    let r = get(
        &s.addr,
        &format!("{path}?artifactType=application%2Fvnd.example.sbom"),
        &[],
    );
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(
        r.json()["manifests"],
        json!([listed(&entries[1], "application/vnd.example.sbom", "sbom")])
    );
    // No referrers: an empty index, not 404.
    let r = get(
        &s.addr,
        &format!("/v2/library/app/referrers/{}", a.config.0),
        &[],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["manifests"], json!([]));
    let r = get(&s.addr, "/v2/library/app/referrers/sha256:nope", &[]);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"][0]["code"], "DIGEST_INVALID");
}

#[test]
fn repositories_from_parent_dirs_and_repo_flags() {
    let tmp = tempdir();
    let parent = tmp.path().join("mirror");
    small_image(&parent.join("team/app"), "v1");
    small_image(&parent.join("base"), "v2");
    std::fs::create_dir_all(parent.join("not-a-layout/empty")).expect("mkdir");
    let other = tmp.path().join("Other_Dir");
    small_image(&other, "v3");
    let s = Served::start(tmp.path(), &["mirror", "--repo", "named/one=Other_Dir"]);
    let r = get(&s.addr, "/v2/_catalog", &[]);
    assert_eq!(
        r.json(),
        json!({"repositories": ["base", "named/one", "team/app"]})
    );
    for (repo, tag) in [("team/app", "v1"), ("base", "v2"), ("named/one", "v3")] {
        let r = get(&s.addr, &format!("/v2/{repo}/manifests/{tag}"), &[]);
        assert_eq!(r.status, 200, "{repo}:{tag}");
        assert_eq!(r.header("docker-content-digest"), Some(A_MANIFEST));
    }
    drop(s);
    // A layout whose directory is no repository name needs --repo.
    let err = Served::try_start(tmp.path(), &["Other_Dir"])
        .err()
        .expect("refused");
    assert_eq!(
        err,
        format!(
            "exit Some(2): ocikit: error: `Other_Dir` (for `Other_Dir`) is not a valid repository name: lowercase letters and digits, separated by `.`, `_`, `__`, `-` or `/`; name it with --repo NAME=DIR"
        )
    );
    let err = Served::try_start(tmp.path(), &["mirror/not-a-layout"])
        .err()
        .expect("refused");
    assert_eq!(
        err,
        "exit Some(2): ocikit: error: `mirror/not-a-layout` is not an OCI image layout and has none in its subdirectories"
    );
    let err = Served::try_start(tmp.path(), &["--repo", "base=Other_Dir", "mirror"])
        .err()
        .expect("refused");
    assert_eq!(
        err,
        "exit Some(2): ocikit: error: two layouts would be repository `base`: `Other_Dir` and `mirror/base`"
    );
    let run = ocikit(tmp.path(), &["serve"]);
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "ocikit: error: serve needs a layout: DIR... or --repo NAME=DIR\n"
    );
}

#[test]
fn access_log_lines_and_quiet() {
    let tmp = tempdir();
    site(tmp.path());
    let s = Served::start(tmp.path(), &["site"]);
    get(&s.addr, "/v2/site/tags/list?n=1", &[]);
    std::thread::sleep(Duration::from_millis(200));
    let log = s.log();
    assert_eq!(log[0], format!("listening on {}", s.addr));
    assert_eq!(
        log[1],
        format!("serving `site` over http: `library/app` (1 tag(s)), `site` (1 tag(s))")
    );
    let line = log.last().expect("a line");
    // 127.0.0.1:PORT - [2026-01-01T00:00:00Z] "GET /v2/site/tags/list?n=1 HTTP/1.1" 200 33 0.3ms
    let (peer, rest) = line.split_once(" - [").expect("peer");
    assert!(peer.starts_with("127.0.0.1:"), "{line}");
    let (time, rest) = rest.split_once("] ").expect("time");
    assert_eq!(time.len(), 20, "{line}");
    assert!(time.ends_with('Z'), "{line}");
    assert!(
        rest.starts_with("\"GET /v2/site/tags/list?n=1 HTTP/1.1\" 200 33 "),
        "{line}"
    );
    assert!(rest.ends_with("ms"), "{line}");
    drop(s);
    let q = Served::start(tmp.path(), &["-q", "site"]);
    get(&q.addr, "/v2/", &[]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(q.log(), vec![format!("listening on {}", q.addr)]);
}

#[test]
fn skopeo_copies_and_inspects_with_the_layout_digests() {
    if !have("skopeo") {
        return;
    }
    let tmp = tempdir();
    let (dir, a, b) = site(tmp.path());
    let s = Served::start(tmp.path(), &["site"]);
    let out = tmp.path().join("out");
    for (src, tag, built) in [("library/app:1.0", "a", &a), ("site:latest", "b", &b)] {
        let o = Command::new("skopeo")
            .args([
                "copy",
                "--src-tls-verify=false",
                &format!("docker://{}/{src}", s.addr),
                &format!("oci:{}:{tag}", out.display()),
            ])
            .output()
            .expect("skopeo");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let copied = Layout::open(&out, opts()).expect("open");
        let index = copied.read_index().expect("index").value;
        let entry = index
            .manifests
            .iter()
            .find(|d| d.ref_name() == Some(tag))
            .expect("entry");
        assert_eq!(entry.digest, built.manifest.digest);
        // Every blob byte for byte.
        for d in [
            &built.manifest.digest,
            &built.config.0,
            &built.layers[0].digest,
        ] {
            assert_eq!(blob_bytes(&out, d), blob_bytes(&dir, d), "{d}");
        }
        let o = Command::new("skopeo")
            .args([
                "inspect",
                "--tls-verify=false",
                &format!("docker://{}/{src}", s.addr),
            ])
            .output()
            .expect("skopeo");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(v["Digest"], built.manifest.digest.as_str());
        assert_eq!(v["Layers"], json!([built.layers[0].digest.as_str()]));
    }
    let run = ocikit(tmp.path(), &["fsck", "out"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
}
