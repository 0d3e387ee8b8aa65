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

const A_MANIFEST: &str = "sha256:07d7e0c88617a70ea1ab059d379e92954316648484342b90ae3f0f23d173d9cc";

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
        Some("sha256:ec2703e25d75565b6c19b9e57ec9e266527d60fc38e99dc734b7a1a39c3556d4")
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
    let log = s.log_with("refusing").join("\n");
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
fn a_layout_added_below_a_served_parent_is_served_without_restart_and_a_removed_one_is_gone() {
    let tmp = tempdir();
    let parent = tmp.path().join("mirror");
    small_image(&parent.join("team/app"), "v1");
    let s = Served::start(tmp.path(), &["mirror"]);
    // The parent was searched at start; the next search is at least a second later.
    std::thread::sleep(Duration::from_millis(1100));
    small_image(&parent.join("new/app"), "v9");
    small_image(&parent.join("Bad"), "v1");
    let run = ocikit(
        tmp.path(),
        &["pull", &format!("{}/new/app:v9", s.addr), "out", "--json"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["entries"][0]["digest"], A_MANIFEST);
    let r = get(&s.addr, "/v2/_catalog", &[]);
    assert_eq!(r.json(), json!({"repositories": ["new/app", "team/app"]}));
    // A layout the search cannot serve is a warning (once), not a stop.
    let bad = "ocikit: warning: `Bad` (for `mirror/Bad`) is not a valid repository name: lowercase letters and digits, separated by `.`, `_`, `__`, `-` or `/`";
    let log = s.log_with(bad);
    assert_eq!(
        log.iter().filter(|l| l.as_str() == bad).count(),
        1,
        "{log:?}"
    );

    // A removed layout is unknown from the next request on.
    std::fs::remove_dir_all(parent.join("team/app")).expect("rm");
    let r = get(&s.addr, "/v2/team/app/manifests/v1", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        error_json(
            "NAME_UNKNOWN",
            "repository name not known to registry",
            json!({"name": "team/app"})
        )
    );
    std::thread::sleep(Duration::from_millis(1100));
    let r = get(&s.addr, "/v2/_catalog", &[]);
    assert_eq!(r.json(), json!({"repositories": ["new/app"]}));
    let r = get(&s.addr, "/v2/new/app/manifests/v9", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(A_MANIFEST));
}

#[test]
fn access_log_lines_and_quiet() {
    let tmp = tempdir();
    site(tmp.path());
    let s = Served::start(tmp.path(), &["site"]);
    get(&s.addr, "/v2/site/tags/list?n=1", &[]);
    let log = s.log_with("tags/list");
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
    std::thread::sleep(Duration::from_millis(300));
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

/// bcrypt of `secret` at cost 4, as `htpasswd -B` writes it.
const ALICE: &str = "alice:$2y$04$SNKdz.aJtlOoI89CqSM6QODAw.F8hnPgluZSQ.OFrB2DSxeyBw/3C";

#[test]
fn basic_auth_from_an_htpasswd_file() {
    let tmp = tempdir();
    site(tmp.path());
    std::fs::write(tmp.path().join("users"), format!("# site users\n{ALICE}\n")).expect("write");
    let s = Served::start(tmp.path(), &["site", "--htpasswd", "users"]);
    let r = get(&s.addr, "/v2/", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"ocikit\""));
    assert_eq!(
        r.json(),
        error_json("UNAUTHORIZED", "authentication required", json!({}))
    );
    // base64("alice:wrong"), base64("alice:secret")
    let r = get(&s.addr, "/v2/", &["Authorization: Basic YWxpY2U6d3Jvbmc="]);
    assert_eq!(r.status, 401);
    let ok = "Authorization: Basic YWxpY2U6c2VjcmV0";
    let r = get(&s.addr, "/v2/library/app/manifests/1.0", &[ok]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(A_MANIFEST));
    // Unknown repositories are not told apart from known ones without credentials.
    assert_eq!(get(&s.addr, "/v2/nope/tags/list", &[]).status, 401);
    let log = s.log_with("/v2/nope/tags/list").join("\n");
    assert!(
        log.contains(" alice [")
            && log.contains("\"GET /v2/library/app/manifests/1.0 HTTP/1.1\" 200 "),
        "{log}"
    );
    if have("skopeo") {
        let src = format!("docker://{}/library/app:1.0", s.addr);
        let o = Command::new("skopeo")
            .args([
                "inspect",
                "--tls-verify=false",
                "--creds",
                "alice:secret",
                &src,
            ])
            .output()
            .expect("skopeo");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(v["Digest"], A_MANIFEST);
        let o = Command::new("skopeo")
            .args([
                "inspect",
                "--tls-verify=false",
                "--creds",
                "alice:nope",
                &src,
            ])
            .output()
            .expect("skopeo");
        assert!(!o.status.success());
    }
    drop(s);
    // Only bcrypt entries.
    std::fs::write(tmp.path().join("md5"), "bob:$apr1$abc$def\n").expect("write");
    let err = Served::try_start(tmp.path(), &["site", "--htpasswd", "md5"])
        .err()
        .expect("refused");
    assert_eq!(
        err,
        "exit Some(2): ocikit: error: `md5` line 1: user `bob`: not a bcrypt hash (`htpasswd -B` writes them)"
    );
}

/// A self-signed certificate for 127.0.0.1 and its key, by openssl.
fn certificate(dir: &Path) -> bool {
    if !have("openssl") {
        return false;
    }
    let o = Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .output()
        .expect("openssl");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    true
}

#[test]
fn https_with_a_pem_certificate() {
    let tmp = tempdir();
    let (dir, a, _) = site(tmp.path());
    if !certificate(tmp.path()) {
        return;
    }
    let s = Served::start(
        tmp.path(),
        &["site", "--tls-cert", "cert.pem", "--tls-key", "key.pem"],
    );
    assert_eq!(s.log()[0..1], [format!("listening on {}", s.addr)]);
    // Plain HTTP to the HTTPS port: a TLS alert, and the connection closed at once (not
    // after the client gives up).
    let mut c = TcpStream::connect(&s.addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    c.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut all = Vec::new();
    let started = std::time::Instant::now();
    c.read_to_end(&mut all).expect("closed, not timed out");
    assert!(started.elapsed() < Duration::from_secs(5));
    // An alert record (type 21), fatal (2), decode_error (50).
    assert_eq!(all, [21, 3, 3, 0, 2, 2, 50]);
    if have("skopeo") {
        let out = tmp.path().join("out");
        let o = Command::new("skopeo")
            .args([
                "copy",
                "--src-tls-verify=false",
                &format!("docker://{}/library/app:1.0", s.addr),
                &format!("oci:{}:a", out.display()),
            ])
            .output()
            .expect("skopeo");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            blob_bytes(&out, &a.layers[0].digest),
            blob_bytes(&dir, &a.layers[0].digest)
        );
        // Verified against the certificate as a CA.
        let certs = tmp.path().join("certs");
        std::fs::create_dir_all(&certs).expect("mkdir");
        std::fs::copy(tmp.path().join("cert.pem"), certs.join("ca.crt")).expect("copy");
        let o = Command::new("skopeo")
            .args([
                "inspect",
                "--cert-dir",
                certs.to_str().expect("utf-8"),
                &format!("docker://{}/library/app:1.0", s.addr),
            ])
            .output()
            .expect("skopeo");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(v["Digest"], A_MANIFEST);
    }
    drop(s);
    std::fs::write(tmp.path().join("empty.pem"), "").expect("write");
    let err = Served::try_start(
        tmp.path(),
        &["site", "--tls-cert", "empty.pem", "--tls-key", "key.pem"],
    )
    .err()
    .expect("refused");
    assert_eq!(
        err,
        "exit Some(2): ocikit: error: `empty.pem`: no PEM certificate in it"
    );
    let run = ocikit(tmp.path(), &["serve", "site", "--tls-cert", "cert.pem"]);
    assert_eq!(run.code, 2);
}

/// A layout whose image has one layer of `size` pseudo-random bytes; returns its digest.
fn big_blob_layout(dir: &Path, size: usize) -> Digest {
    let (layout, _) = Layout::init(dir, opts()).expect("init");
    let lock = layout.lock().expect("lock");
    let mut w = lock.blob_writer().expect("writer");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for b in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        let n = left.min(chunk.len());
        w.write_all(&chunk[..n]).expect("write");
        left -= n;
    }
    let (layer, layer_size) = w.finish().expect("finish");
    drop(lock);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc_of("application/vnd.oci.image.config.v1+json", config),
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.as_str(), "size": layer_size}],
    });
    add_manifest(dir, "big", &[config], &manifest);
    layer
}

#[test]
fn parallel_blob_gets_do_not_grow_memory_with_blob_size() {
    let tmp = tempdir();
    let dir = tmp.path().join("big");
    let size = 64 << 20;
    let layer = big_blob_layout(&dir, size);
    let s = Served::start(tmp.path(), &["-q", "big"]);
    let path = format!("/v2/big/blobs/{layer}");
    assert_eq!(get(&s.addr, "/v2/", &[]).status, 200);
    let before = s.peak_kib();
    let file = dir.join(layer.blob_rel_path());
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let addr = s.addr.clone();
            let path = path.clone();
            let file = file.clone();
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(&addr).expect("connect");
                c.write_all(
                    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .expect("send");
                // The head, then the body compared with the file as it arrives.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    c.read_exact(&mut byte).expect("head");
                    head.push(byte[0]);
                }
                assert!(head.starts_with(b"HTTP/1.1 200 OK"));
                let mut want = std::fs::File::open(&file).expect("blob");
                let mut got = vec![0u8; 1 << 20];
                let mut expected = vec![0u8; 1 << 20];
                let mut body = 0usize;
                loop {
                    let n = c.read(&mut got).expect("read");
                    if n == 0 {
                        break;
                    }
                    want.read_exact(&mut expected[..n]).expect("file");
                    assert!(got[..n] == expected[..n], "bytes differ at {body}");
                    body += n;
                }
                body
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().expect("client"), size);
    }
    let after = s.peak_kib();
    eprintln!("server peak resident set: {before} KiB before, {after} KiB after 8 x 64 MiB");
    assert!(
        after <= before + 8 * 1024 && after <= 32 * 1024,
        "peak {after} KiB after the downloads ({before} KiB before)"
    );
}

#[test]
fn sigterm_finishes_the_response_in_flight_then_exits_0() {
    let tmp = tempdir();
    let dir = tmp.path().join("big");
    let size = 16 << 20;
    let layer = big_blob_layout(&dir, size);
    let mut s = Served::start(tmp.path(), &["big"]);
    // An idle kept-alive connection must not hold the stop up.
    let mut idle = TcpStream::connect(&s.addr).expect("connect");
    idle.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
    // A download that has started: the socket buffers fill, the server waits in sendfile.
    let mut c = TcpStream::connect(&s.addr).expect("connect");
    c.write_all(format!("GET /v2/big/blobs/{layer} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .expect("send");
    let mut first = vec![0u8; 4096];
    let n = c.read(&mut first).expect("read");
    assert!(first[..n].starts_with(b"HTTP/1.1 200 OK"));
    std::thread::sleep(Duration::from_millis(200));
    let pid = s.pid().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    // No new connections once stopping.
    let start = std::time::Instant::now();
    while TcpStream::connect(&s.addr).is_ok() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        TcpStream::connect(&s.addr).map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).expect("read the rest");
    let mut all = first[..n].to_vec();
    all.extend_from_slice(&rest);
    let r = parse_response(&all, true);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), size);
    assert_eq!(Digest::sha256(&r.body), layer);
    assert_eq!(s.signal_and_wait("TERM", Duration::from_secs(10)), Some(0));
    let log = s.log_with("stopping");
    assert!(
        log.contains(&"stopping (SIGTERM): finishing the requests in flight".to_string()),
        "{log:?}"
    );
}

#[test]
fn sigint_stops_an_idle_server_with_exit_0() {
    let tmp = tempdir();
    site(tmp.path());
    let mut s = Served::start(tmp.path(), &["site"]);
    assert_eq!(s.signal_and_wait("INT", Duration::from_secs(10)), Some(0));
}

/// Run wrk against `url` (64 connections, 2 threads, `secs` seconds); returns its output
/// after checking it saw no socket error and no non-2xx answer.
fn wrk(url: &str, secs: u32) -> String {
    let o = Command::new("wrk")
        .args([
            "-t2",
            "-c64",
            &format!("-d{secs}s"),
            "--timeout",
            "10s",
            url,
        ])
        .output()
        .expect("wrk");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "wrk: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!out.contains("Socket errors"), "{out}");
    assert!(!out.contains("Non-2xx"), "{out}");
    out
}

#[test]
fn sixty_four_clients_under_load_get_no_error_and_memory_stays_flat() {
    if !have("wrk") {
        return;
    }
    let tmp = tempdir();
    let dir = tmp.path().join("big");
    let layer = big_blob_layout(&dir, 4 << 20);
    let s = Served::start(tmp.path(), &["-q", "big"]);
    let base = format!("http://{}/v2/big", s.addr);
    let manifests = wrk(&format!("{base}/manifests/big"), 3);
    let blobs = wrk(&format!("{base}/blobs/{layer}"), 3);
    let peak = s.peak_kib();
    let rate = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("Requests/sec:"))
            .map(|l| l.to_string())
            .unwrap_or_default()
    };
    eprintln!(
        "manifest GETs by tag: {}; 4 MiB blob GETs: {}; server peak resident set {peak} KiB",
        rate(&manifests),
        rate(&blobs)
    );
    assert!(
        peak <= 64 * 1024,
        "peak resident set {peak} KiB, over 64 MiB"
    );
}

#[test]
fn a_broken_index_json_serves_nothing_until_fixed_and_is_reported_once() {
    let tmp = tempdir();
    let (dir, _, b) = site(tmp.path());
    let s = Served::start(tmp.path(), &["site"]);
    let good = std::fs::read(dir.join("index.json")).expect("read");
    // Replaced by something that does not parse, as a foreign writer might.
    std::fs::write(dir.join(".tmp-x"), b"{not json").expect("write");
    std::fs::rename(dir.join(".tmp-x"), dir.join("index.json")).expect("rename");
    for _ in 0..3 {
        let r = get(&s.addr, "/v2/site/manifests/latest", &[]);
        assert_eq!(r.status, 404);
        assert_eq!(r.json()["errors"][0]["code"], "MANIFEST_UNKNOWN");
        assert_eq!(get(&s.addr, "/v2/library/app/tags/list", &[]).status, 404);
    }
    let log = s.log_with("serving nothing");
    let warnings: Vec<&String> = log.iter().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{log:?}");
    assert!(
        warnings[0].starts_with(
            "ocikit: warning: `site`: serving nothing of it: `site/index.json` does not parse"
        ),
        "{}",
        warnings[0]
    );
    std::fs::write(dir.join(".tmp-x"), &good).expect("write");
    std::fs::rename(dir.join(".tmp-x"), dir.join("index.json")).expect("rename");
    let r = get(&s.addr, "/v2/site/manifests/latest", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-content-digest"),
        Some(b.manifest.digest.as_str())
    );
}

#[test]
fn ocikit_pull_gets_the_layout_digests() {
    let tmp = tempdir();
    let (dir, a, _) = site(tmp.path());
    let s = Served::start(tmp.path(), &["site"]);
    let run = ocikit(
        tmp.path(),
        &[
            "pull",
            &format!("{}/library/app:1.0", s.addr),
            "out",
            "--json",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["entries"][0]["digest"], A_MANIFEST);
    assert_eq!(
        report["entries"][0]["ref"],
        format!("{}/library/app:1.0", s.addr).as_str()
    );
    let out = tmp.path().join("out");
    for d in [&a.manifest.digest, &a.config.0, &a.layers[0].digest] {
        assert_eq!(blob_bytes(&out, d), blob_bytes(&dir, d), "{d}");
    }
    assert_eq!(ocikit(tmp.path(), &["fsck", "out"]).code, 0);
}

#[test]
fn ocikit_pull_finds_referrers_through_the_referrers_api() {
    let tmp = tempdir();
    let arts = tmp.path().join("arts");
    copy_tree(&fixtures().join("layouts").join("oras-artifacts"), &arts);
    let s = Served::start(tmp.path(), &["arts"]);
    let run = ocikit(
        tmp.path(),
        &[
            "pull",
            &format!("{}/arts:multi", s.addr),
            "out",
            "--referrers",
            "--json",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let copied = ocikit(
        tmp.path(),
        &["copy", "arts", "copied", "multi", "--referrers"],
    );
    assert_eq!(copied.code, 0, "{}", copied.stderr);
    let digests = |dir: &str| {
        let mut v: Vec<String> = ocikit(tmp.path(), &["ls", "--json", dir])
            .json()
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["digest"].as_str().expect("digest").to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(digests("out"), digests("copied"));
    assert_eq!(digests("out").len(), 4, "the index and its three referrers");
    // Through the API, never the fallback tag.
    let log = s.log_with("/v2/arts/referrers/sha256:");
    assert!(
        log.iter().any(|l| l.contains("/v2/arts/referrers/sha256:")),
        "{log:?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("/manifests/sha256-")),
        "{log:?}"
    );
}

#[test]
fn blob_bodies_go_out_by_sendfile_not_through_the_process() {
    if !have("strace") {
        return;
    }
    let tmp = tempdir();
    let dir = tmp.path().join("big");
    let size = 8 << 20;
    let layer = big_blob_layout(&dir, size);
    let s = Served::start(tmp.path(), &["-q", "big"]);
    let trace = tmp.path().join("trace");
    let mut strace = Command::new("strace")
        .args(["-f", "-e", "trace=sendfile,sendto,write,writev", "-o"])
        .arg(&trace)
        .args(["-p", &s.pid().to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("strace");
    std::thread::sleep(Duration::from_millis(500));
    let r = get(&s.addr, &format!("/v2/big/blobs/{layer}"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), size);
    std::thread::sleep(Duration::from_millis(200));
    let _ = Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status();
    let _ = strace.wait();
    let text = std::fs::read_to_string(&trace).expect("trace");
    let count = |call: &str| text.lines().filter(|l| l.contains(call)).count();
    assert!(count("sendfile(") >= 1, "{text}");
    // The head goes by write; 8 MiB through the process would be hundreds of calls.
    assert!(
        count("sendto(") + count("write(") + count("writev(") < 10,
        "{text}"
    );
}
