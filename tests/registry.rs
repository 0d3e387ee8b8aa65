//! `pull`, `push` and `login` against a real registry (Debian's `docker-registry`,
//! distribution 2.8, started here on 127.0.0.1), through a fault-injecting proxy where a test
//! needs one, and with skopeo on the other side for interop. Skips with a notice when
//! `docker-registry` (or skopeo, htpasswd, openssl for the tests that need them) is missing.

mod common;
mod registry_support;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use common::{ocikit, ocikit_cmd, tempdir, Run};
use registry_support::{have, layouts, Faults, Kind, Proxy, Registry};
use serde_json::Value;

const MULTI: &str = "sha256:c2db98dcac48085a4d404691f72f179301110ef21e6af7f21d5ba0bbb1ea640f";

fn multiarch() -> std::path::PathBuf {
    common::fixtures().join("generated").join("multiarch")
}

fn ls(dir: &Path) -> Vec<(Option<String>, String)> {
    let r = ocikit(dir, &["ls", "--json", dir.to_str().expect("utf8")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json()
        .as_array()
        .expect("array")
        .iter()
        .map(|e| {
            (
                e["ref"].as_str().map(str::to_string),
                e["digest"].as_str().expect("digest").to_string(),
            )
        })
        .collect()
}

fn fsck_clean(dir: &Path) {
    let r = ocikit(dir, &["fsck", dir.to_str().expect("utf8")]);
    assert_eq!(r.code, 0, "fsck: {}{}", r.stdout, r.stderr);
}

/// fsck finds the same in both (the fixtures' own findings travel with them).
fn same_fsck(a: &Path, b: &Path) {
    let fa = ocikit(a, &["fsck", "--json", a.to_str().expect("utf8")]);
    let fb = ocikit(b, &["fsck", "--json", b.to_str().expect("utf8")]);
    assert_eq!(fa.code, fb.code, "{}\n{}", fa.stdout, fb.stdout);
    let count = |v: &Value| v["findings"].as_array().map(Vec::len);
    assert_eq!(count(&fa.json()), count(&fb.json()));
}

fn run(tmp: &Path, args: &[&str]) -> Run {
    ocikit(tmp, args)
}

fn ok(r: &Run) -> Value {
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    r.json()
}

#[test]
fn push_then_pull_round_trip_keeps_every_digest() {
    let Some(reg) = Registry::start(Kind::Plain) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    let image = format!("{}/multi:1", reg.host);
    let push = ok(&run(
        t,
        &[
            "push",
            multiarch().to_str().expect("p"),
            "app:1",
            &image,
            "--json",
        ],
    ));
    assert_eq!(push["entries"][0]["ref"], "1");
    assert_eq!(push["entries"][0]["digest"], MULTI);
    assert_eq!(push["entries"][0]["change"], "created");
    assert_eq!(push["blobs"]["sent"], 8);
    assert_eq!(push["manifests"], 5);

    // Pull into a new layout: same digest, same blobs, fsck clean.
    let dst = t.join("pulled");
    let pull = ok(&run(
        t,
        &["pull", &image, dst.to_str().expect("p"), "--json"],
    ));
    assert_eq!(pull["entries"][0]["ref"], image.as_str());
    assert_eq!(pull["entries"][0]["digest"], MULTI);
    assert_eq!(pull["blobs"]["fetched"], 13);
    assert_eq!(
        pull["bytes"], 1147,
        "the 8 blobs push sent; manifests are not counted"
    );
    assert_eq!(ls(&dst), vec![(Some(image.clone()), MULTI.to_string())]);
    let copied = t.join("copied");
    assert_eq!(
        run(
            t,
            &[
                "copy",
                multiarch().to_str().expect("p"),
                copied.to_str().expect("p"),
                "app:1"
            ]
        )
        .code,
        0
    );
    assert_eq!(common::blob_names(&dst), common::blob_names(&copied));
    fsck_clean(&dst);

    // Pulling again fetches nothing; pushing again sends nothing.
    let again = ok(&run(
        t,
        &["pull", &image, dst.to_str().expect("p"), "--json"],
    ));
    assert_eq!(again["blobs"]["fetched"], 0);
    assert_eq!(again["blobs"]["present"], 13);
    assert_eq!(again["entries"][0]["change"], "unchanged");
    let push2 = ok(&run(
        t,
        &[
            "push",
            multiarch().to_str().expect("p"),
            "app:1",
            &image,
            "--json",
        ],
    ));
    assert_eq!(push2["blobs"]["sent"], 0);
    assert_eq!(push2["manifests"], 0);
    assert_eq!(push2["bytes"], 0);
    assert_eq!(push2["entries"][0]["change"], "unchanged");

    // By digest, with a ref of the user's choosing.
    let by_digest = format!("{}/multi@{MULTI}", reg.host);
    let dst2 = t.join("by-digest");
    ok(&run(
        t,
        &[
            "pull",
            &by_digest,
            dst2.to_str().expect("p"),
            "--ref",
            "mine:v1",
            "--json",
        ],
    ));
    assert_eq!(ls(&dst2), vec![(Some("mine:v1".into()), MULTI.to_string())]);
}

#[test]
fn pull_platform_filters_the_index_as_copy_does() {
    let Some(reg) = Registry::start(Kind::Plain) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    let image = format!("{}/multi:1", reg.host);
    ok(&run(
        t,
        &[
            "push",
            multiarch().to_str().expect("p"),
            "app:1",
            &image,
            "--json",
        ],
    ));
    let pulled = t.join("arm");
    ok(&run(
        t,
        &[
            "pull",
            &image,
            pulled.to_str().expect("p"),
            "--platform",
            "linux/arm64",
            "--json",
        ],
    ));
    let copied = t.join("copied");
    let r = run(
        t,
        &[
            "copy",
            multiarch().to_str().expect("p"),
            copied.to_str().expect("p"),
            "app:1",
            "--platform",
            "linux/arm64",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (p, c) = (ls(&pulled), ls(&copied));
    assert_eq!(p[0].1, c[0].1, "the same filtered index either way");
    assert_ne!(p[0].1, MULTI);
    assert_eq!(common::blob_names(&pulled), common::blob_names(&copied));
    fsck_clean(&pulled);

    // A platform the index lacks: exit 2, nothing committed.
    let none = t.join("none");
    let r = run(
        t,
        &[
            "pull",
            &image,
            none.to_str().expect("p"),
            "--platform",
            "plan9/mips",
        ],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("no manifest for platform plan9/mips"),
        "{}",
        r.stderr
    );
}

#[test]
fn referrers_travel_through_the_fallback_tag() {
    let Some(reg) = Registry::start(Kind::Plain) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    let src = layouts().join("oras-artifacts");
    let image = format!("{}/arts:multi", reg.host);
    let push = ok(&run(
        t,
        &[
            "push",
            src.to_str().expect("p"),
            "multi",
            &image,
            "--referrers",
            "--json",
        ],
    ));
    let pushed: Vec<&str> = push["entries"]
        .as_array()
        .expect("a")
        .iter()
        .map(|e| e["digest"].as_str().expect("d"))
        .collect();
    assert_eq!(
        pushed,
        [
            "sha256:e2bfc9cc6a84ec2d7365b5a28c6bc5806b7fa581c9ad7883be955a64e3cc034f",
            "sha256:7679bc22c33b87aa345c6950a993db98a6df7a6cc77a35c388908a3a50be6bad",
            "sha256:d37baf66300b9006b0f4c7102075d56b970fbf910be5c6bca07fdbb000dfa383",
            "sha256:c5e00045954a70e3fd28307dd543d4cc158946117943700b8f520f72ddca031f",
        ]
    );
    // distribution 2.8 has no referrers API: the fallback tags hold them.
    let tags = http_get(&reg.host, "/v2/arts/tags/list");
    for tag in [
        "sha256-e2bfc9cc6a84ec2d7365b5a28c6bc5806b7fa581c9ad7883be955a64e3cc034f",
        "sha256-9d84a5716c66a1d1b9c13f8ed157ba7d1edfe7f9b8766728b8a1f25c0d9c14c1",
    ] {
        assert!(tags.contains(tag), "{tags}");
    }
    // Both referrers of the index are in its fallback index (pushed in one round).
    let fallback = http_get(&reg.host, "/v2/arts/manifests/sha256-e2bfc9cc6a84ec2d7365b5a28c6bc5806b7fa581c9ad7883be955a64e3cc034f");
    assert!(
        fallback.contains("7679bc22c33b87aa") && fallback.contains("d37baf66300b9006"),
        "{fallback}"
    );

    // Pull with --referrers finds them all; the same entries as `copy --referrers`.
    let pulled = t.join("pulled");
    ok(&run(
        t,
        &[
            "pull",
            &image,
            pulled.to_str().expect("p"),
            "--referrers",
            "--json",
        ],
    ));
    let copied = t.join("copied");
    assert_eq!(
        run(
            t,
            &[
                "copy",
                src.to_str().expect("p"),
                copied.to_str().expect("p"),
                "multi",
                "--referrers"
            ]
        )
        .code,
        0
    );
    let mut p: Vec<String> = ls(&pulled).into_iter().map(|e| e.1).collect();
    let mut c: Vec<String> = ls(&copied).into_iter().map(|e| e.1).collect();
    p.sort();
    c.sort();
    assert_eq!(p, c);
    assert_eq!(common::blob_names(&pulled), common::blob_names(&copied));
    same_fsck(&pulled, &copied);

    // Without --referrers, only the image.
    let plain = t.join("plain");
    ok(&run(
        t,
        &["pull", &image, plain.to_str().expect("p"), "--json"],
    ));
    assert_eq!(ls(&plain).len(), 1);
}

/// A plain `GET` with std only.
fn http_get(host: &str, path: &str) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: application/vnd.oci.image.index.v1+json\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn mixed_and_unknown_content_is_pushed_byte_for_byte() {
    let Some(reg) = Registry::start(Kind::Plain) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    for (fixture, r#ref) in [
        ("ggcr-test_index", None),
        ("ggcr-test_index_media_type", None),
        ("oras-images", None),
    ] {
        let src = layouts().join(fixture);
        for (i, (name, digest)) in ls(&src).into_iter().enumerate() {
            let target = r#ref.unwrap_or(digest.as_str()).to_string();
            let target = name.clone().unwrap_or(target);
            let repo = format!(
                "{}/{}:t{i}",
                reg.host,
                fixture.replace('_', "-").to_lowercase()
            );
            let r = run(
                t,
                &["push", src.to_str().expect("p"), &target, &repo, "--json"],
            );
            assert_eq!(r.code, 0, "{fixture} {target}: {}", r.stderr);
            let dst = t.join(format!("{fixture}-{i}"));
            let p = ok(&run(
                t,
                &["pull", &repo, dst.to_str().expect("p"), "--json"],
            ));
            assert_eq!(
                p["entries"][0]["digest"],
                digest.as_str(),
                "{fixture} {target}"
            );
            let copied = t.join(format!("{fixture}-{i}-copy"));
            assert_eq!(
                run(
                    t,
                    &[
                        "copy",
                        src.to_str().expect("p"),
                        copied.to_str().expect("p"),
                        &target
                    ]
                )
                .code,
                0
            );
            assert_eq!(
                common::blob_names(&dst),
                common::blob_names(&copied),
                "{fixture} {target}"
            );
            // Never worse than a copy: the pulled descriptor carries the type the registry
            // serves, which may correct a layout's wrong one (ggcr-test_index `1`).
            let fd = ocikit(&dst, &["fsck", dst.to_str().expect("p")]);
            let fc = ocikit(&copied, &["fsck", copied.to_str().expect("p")]);
            assert!(fd.code <= fc.code, "{fixture} {target}: {}", fd.stdout);
        }
    }
}

#[test]
fn skopeo_and_ocikit_agree_on_digests() {
    if !have("skopeo") {
        return;
    }
    let Some(reg) = Registry::start(Kind::Plain) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    // skopeo pushes, ocikit pulls.
    let image = format!("{}/sk:1", reg.host);
    let st = std::process::Command::new("skopeo")
        .args(["copy", "-q", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:app:1", multiarch().display()))
        .arg(format!("docker://{image}"))
        .status()
        .expect("skopeo");
    assert!(st.success());
    let dst = t.join("from-skopeo");
    let p = ok(&run(
        t,
        &["pull", &image, dst.to_str().expect("p"), "--json"],
    ));
    assert_eq!(p["entries"][0]["digest"], MULTI);
    fsck_clean(&dst);

    // ocikit pushes, skopeo copies to oci: and dir:.
    let image2 = format!("{}/oc:1", reg.host);
    ok(&run(
        t,
        &[
            "push",
            multiarch().to_str().expect("p"),
            "app:1",
            &image2,
            "--json",
        ],
    ));
    let oci = t.join("sk-oci");
    let st = std::process::Command::new("skopeo")
        .args(["copy", "-q", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{image2}"))
        .arg(format!("oci:{}:x", oci.display()))
        .status()
        .expect("skopeo");
    assert!(st.success());
    assert_eq!(ls(&oci), vec![(Some("x".into()), MULTI.to_string())]);
    let dir = t.join("sk-dir");
    let st = std::process::Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--src-tls-verify=false",
            "--override-arch",
            "amd64",
        ])
        .arg(format!("docker://{image2}"))
        .arg(format!("dir:{}", dir.display()))
        .status()
        .expect("skopeo");
    assert!(st.success());
    let manifest = std::fs::read(dir.join("manifest.json")).expect("manifest");
    let digest = format!("sha256:{}", common_sha256(&manifest));
    // The amd64 manifest skopeo wrote is the one in ocikit's index, byte for byte.
    let index: Value = serde_json::from_slice(
        &std::fs::read(multiarch().join("blobs/sha256").join(&MULTI[7..])).expect("index"),
    )
    .expect("json");
    let amd64 = index["manifests"]
        .as_array()
        .expect("m")
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .expect("amd64");
    assert_eq!(amd64["digest"], digest.as_str());
}

fn common_sha256(b: &[u8]) -> String {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(b);
    h.iter().map(|x| format!("{x:02x}")).collect()
}

/// The standard small image, in `t/src` as `base:1`, pushed to `image`.
fn pushed_small_image(t: &Path, image: &str) -> common::Built {
    let src = t.join("src");
    let built = common::small_image(&src, "base:1");
    ok(&run(
        t,
        &["push", src.to_str().expect("p"), "base:1", image, "--json"],
    ));
    built
}

/// A layout with one image whose single layer is `size` bytes (stored uncompressed, so the
/// blob is about that large).
fn big_image(dir: &Path, size: usize) -> String {
    let mut data = vec![0u8; size];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let built = common::add_image(
        dir,
        "big:1",
        &[common::LayerSpec::new(
            &[("data.bin", &data)],
            ocikit_layout::Compression::None,
        )],
        None,
    );
    built.manifest.digest.to_string()
}

#[test]
fn a_blob_cut_half_way_resumes_with_range_and_is_verified_whole() {
    let Some(reg) = Registry::start(Kind::Plain) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    let src = t.join("src");
    let digest = big_image(&src, 600 << 10);
    ok(&run(
        t,
        &[
            "push",
            src.to_str().expect("p"),
            "big:1",
            &format!("{}/big:1", reg.host),
            "--json",
        ],
    ));
    let proxy = Proxy::start(
        &reg.host,
        Faults {
            cut_blobs_over: Some(100 << 10),
            ..Faults::default()
        },
    );
    let dst = t.join("dst");
    let p = ok(&run(
        t,
        &[
            "pull",
            &format!("{}/big:1", proxy.host),
            dst.to_str().expect("p"),
            "--json",
        ],
    ));
    assert_eq!(p["entries"][0]["digest"], digest.as_str());
    fsck_clean(&dst);
    let ranged: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.header("range").is_some())
        .collect();
    assert_eq!(ranged.len(), 1, "one resumed request");
    assert!(ranged[0].header("range").expect("r").starts_with("bytes="));
    assert_eq!(ranged[0].status, 206);
}

#[test]
fn busy_registry_is_retried_after_retry_after() {
    let Some(reg) = Registry::start(Kind::Plain) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    ok(&run(
        t,
        &[
            "push",
            multiarch().to_str().expect("p"),
            "app:1",
            &format!("{}/multi:1", reg.host),
            "--json",
        ],
    ));
    let proxy = Proxy::start(
        &reg.host,
        Faults {
            busy_manifests: 2,
            ..Faults::default()
        },
    );
    let dst = t.join("dst");
    let started = std::time::Instant::now();
    let p = ok(&run(
        t,
        &[
            "pull",
            &format!("{}/multi:1", proxy.host),
            dst.to_str().expect("p"),
            "--json",
        ],
    ));
    assert_eq!(p["entries"][0]["digest"], MULTI);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "waited as Retry-After said"
    );
    let busy = proxy.seen().iter().filter(|s| s.status == 503).count();
    assert_eq!(busy, 2);
}

#[test]
fn refused_large_bodies_switch_the_upload_to_chunks() {
    let Some(reg) = Registry::start(Kind::Plain) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    let src = t.join("src");
    let digest = big_image(&src, 700 << 10);
    let proxy = Proxy::start(
        &reg.host,
        Faults {
            max_body: Some(256 << 10),
            ..Faults::default()
        },
    );
    let image = format!("{}/big:1", proxy.host);
    let push = ok(&run(
        t,
        &["push", src.to_str().expect("p"), "big:1", &image, "--json"],
    ));
    assert_eq!(push["entries"][0]["digest"], digest.as_str());
    let seen = proxy.seen();
    assert!(seen.iter().any(|s| s.method == "PUT" && s.status == 413));
    // Chunks halve after each refusal until the proxy takes them.
    let taken: Vec<_> = seen
        .iter()
        .filter(|s| s.method == "PATCH" && s.status == 202)
        .collect();
    assert!(taken.len() >= 3, "{taken:?}");
    assert!(taken.iter().all(|s| s
        .header("content-length")
        .is_some_and(|l| l.parse::<u64>().expect("n") <= 256 << 10)));
    // What the registry holds pulls back whole.
    let dst = t.join("dst");
    let p = ok(&run(
        t,
        &[
            "pull",
            &format!("{}/big:1", reg.host),
            dst.to_str().expect("p"),
            "--json",
        ],
    ));
    assert_eq!(p["entries"][0]["digest"], digest.as_str());
    fsck_clean(&dst);

    // --chunk-size from the start.
    let proxy2 = Proxy::start(&reg.host, Faults::default());
    ok(&run(
        t,
        &[
            "push",
            src.to_str().expect("p"),
            "big:1",
            &format!("{}/chunked:1", proxy2.host),
            "--chunk-size",
            "200K",
            "--json",
        ],
    ));
    let patches = proxy2
        .seen()
        .into_iter()
        .filter(|s| s.method == "PATCH")
        .count();
    assert_eq!(patches, 4, "700 KiB in 200 KiB chunks");
}

#[test]
fn bearer_tokens_are_fetched_per_repository_and_never_sent_to_another_host() {
    let Some(reg) = Registry::start(Kind::Plain) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    let storage = Proxy::start(&reg.host, Faults::default());
    let proxy = Proxy::start(
        &reg.host,
        Faults {
            bearer: true,
            token_basic: true,
            redirect_blobs_to: Some(storage.host.clone()),
            ..Faults::default()
        },
    );
    let image = format!("{}/team/app:1", proxy.host);
    // Anonymous: the token service refuses; exit 2, a clear line.
    let r = run(
        t,
        &["push", multiarch().to_str().expect("p"), "app:1", &image],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the token service refused anonymous access"),
        "{}",
        r.stderr
    );

    let with_creds = |args: &[&str]| {
        let mut c = ocikit_cmd();
        c.current_dir(t)
            .args(args)
            .args(["--username", "bob", "--password-stdin"]);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"builder\n")
            .expect("pw");
        common::run_of(child.wait_with_output().expect("wait"), t)
    };
    let r = with_creds(&[
        "push",
        multiarch().to_str().expect("p"),
        "app:1",
        &image,
        "--json",
    ]);
    assert_eq!(r.json()["entries"][0]["digest"], MULTI, "{}", r.stderr);
    let dst = t.join("dst");
    let r = with_creds(&["pull", &image, dst.to_str().expect("p"), "--json"]);
    assert_eq!(r.json()["entries"][0]["digest"], MULTI, "{}", r.stderr);
    fsck_clean(&dst);
    // The token asked for names the repository; blobs came from the other host, without
    // the registry's Authorization.
    assert!(proxy.seen().iter().any(|s| s
        .path
        .contains("scope=repository%3Ateam%2Fapp%3Apull%2Cpush")));
    let redirected: Vec<_> = storage
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET")
        .collect();
    assert!(!redirected.is_empty());
    assert!(redirected
        .iter()
        .all(|s| s.header("authorization").is_none()));
}

#[test]
fn basic_auth_login_stores_credentials_docker_reads() {
    let Some(reg) = Registry::start(Kind::Basic) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    let cfg = t.join("docker");
    let login = |pw: &str| {
        let mut c = ocikit_cmd();
        c.current_dir(t)
            .env("DOCKER_CONFIG", &cfg)
            .env_remove("REGISTRY_AUTH_FILE")
            .args([
                "login",
                &reg.host,
                "--username",
                "alice",
                "--password-stdin",
            ]);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(pw.as_bytes())
            .expect("pw");
        common::run_of(child.wait_with_output().expect("wait"), t)
    };
    let bad = login("wrong\n");
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("the credentials were refused"),
        "{}",
        bad.stderr
    );
    assert!(!cfg.join("config.json").exists());

    let image = format!("{}/app:1", reg.host);
    let anon = ocikit_cmd()
        .current_dir(t)
        .env("DOCKER_CONFIG", &cfg)
        .args(["push", multiarch().to_str().expect("p"), "app:1", &image])
        .output()
        .expect("run");
    assert_eq!(anon.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&anon.stderr).contains("HTTP 401"),
        "{}",
        String::from_utf8_lossy(&anon.stderr)
    );

    let good = login("wonderland\n");
    assert_eq!(good.code, 0, "{}", good.stderr);
    let config: Value =
        serde_json::from_slice(&std::fs::read(cfg.join("config.json")).expect("cfg"))
            .expect("json");
    assert_eq!(
        config["auths"][reg.host.as_str()]["auth"],
        "YWxpY2U6d29uZGVybGFuZA=="
    );

    let push = ocikit_cmd()
        .current_dir(t)
        .env("DOCKER_CONFIG", &cfg)
        .args([
            "push",
            multiarch().to_str().expect("p"),
            "app:1",
            &image,
            "--json",
        ])
        .output()
        .expect("run");
    assert_eq!(
        push.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&push.stderr)
    );
    let dst = t.join("dst");
    let pull = ocikit_cmd()
        .current_dir(t)
        .env("DOCKER_CONFIG", &cfg)
        .args(["pull", &image, dst.to_str().expect("p"), "--json"])
        .output()
        .expect("run");
    assert_eq!(
        pull.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&pull.stderr)
    );
    fsck_clean(&dst);
}

#[test]
fn tls_needs_the_ca_and_works_with_it() {
    let Some(reg) = Registry::start(Kind::Tls) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    let ca = reg.ca.clone().expect("ca");
    let image = format!("{}/app:1", reg.host);
    let r = run(
        t,
        &["push", multiarch().to_str().expect("p"), "app:1", &image],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains(&format!("https://{}/v2/", reg.host)),
        "{}",
        r.stderr
    );
    let r = run(
        t,
        &[
            "push",
            multiarch().to_str().expect("p"),
            "app:1",
            &image,
            "--ca-file",
            ca.to_str().expect("p"),
            "--json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dst = t.join("dst");
    let p = ok(&run(
        t,
        &[
            "pull",
            &image,
            dst.to_str().expect("p"),
            "--ca-file",
            ca.to_str().expect("p"),
            "--json",
        ],
    ));
    assert_eq!(p["entries"][0]["digest"], MULTI);
}

#[test]
fn a_manifest_that_does_not_match_its_digest_is_refused() {
    let Some(reg) = Registry::start(Kind::Plain) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#.to_vec();
    let liar = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let proxy = Proxy::start(
        &reg.host,
        Faults {
            canned: vec![
                (
                    "/manifests/lies".into(),
                    "application/vnd.oci.image.index.v1+json".into(),
                    Some(liar.into()),
                    body.clone(),
                ),
                (
                    format!("/manifests/{liar}"),
                    "application/vnd.oci.image.index.v1+json".into(),
                    None,
                    body.clone(),
                ),
            ],
            ..Faults::default()
        },
    );
    let dst = t.join("dst");
    let r = run(
        t,
        &[
            "pull",
            &format!("{}/x:lies", proxy.host),
            dst.to_str().expect("p"),
        ],
    );
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        format!("ocikit: error: http://{}/v2/x/manifests/lies: `lies`: the manifest's bytes hash to `sha256:{}`, not to `{liar}`\n", proxy.host, common_sha256(&body))
    );
    let r = run(
        t,
        &[
            "pull",
            &format!("{}/x@{liar}", proxy.host),
            dst.to_str().expect("p"),
        ],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("the manifest's bytes hash to"),
        "{}",
        r.stderr
    );
    assert!(!dst.exists() || ls(&dst).is_empty(), "nothing committed");
}

#[test]
fn bad_references_and_plain_http_elsewhere_are_refused() {
    let tmp = tempdir();
    let t = tmp.path();
    let r = run(t, &["pull", "UPPER/case", t.join("d").to_str().expect("p")]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ocikit: error: `UPPER/case`: not an image reference: `UPPER` is not a valid repository component (lowercase letters, digits, and . _ __ - between them)\n"
    );
    assert!(!t.join("d").exists());
}

/// `sha256:<hex>` of the config of the manifest `digest` in `layout`.
fn built_config(layout: &Path, digest: &str) -> String {
    let m: Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).expect("manifest"),
    )
    .expect("json");
    m["config"]["digest"].as_str().expect("d").to_string()
}

#[test]
fn an_interrupted_pull_keeps_what_it_fetched_and_resumes_from_it() {
    let Some(reg) = Registry::start(Kind::Plain) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    let src = t.join("src");
    let digest = big_image(&src, 300 << 10);
    ok(&run(
        t,
        &[
            "push",
            src.to_str().expect("p"),
            "big:1",
            &format!("{}/big:1", reg.host),
            "--json",
        ],
    ));
    // The big layer cannot be fetched through this proxy (500 every time).
    let big_layer = {
        let m: Value = serde_json::from_slice(
            &std::fs::read(src.join("blobs/sha256").join(&digest[7..])).expect("manifest"),
        )
        .expect("json");
        m["layers"][0]["digest"].as_str().expect("d").to_string()
    };
    let proxy = Proxy::start(
        &reg.host,
        Faults {
            fail_paths: vec![big_layer.clone()],
            ..Faults::default()
        },
    );
    let dst = t.join("dst");
    let r = run(
        t,
        &[
            "pull",
            &format!("{}/big:1", proxy.host),
            dst.to_str().expect("p"),
        ],
    );
    assert_eq!(r.code, 2, "{} {}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&big_layer) && r.stderr.contains("HTTP 500"),
        "{}",
        r.stderr
    );
    // Nothing committed, but the layout and the blobs fetched (the config; the manifest
    // comes only after its blobs) stay for the next try.
    assert!(ls(&dst).is_empty());
    let config = built_config(&src, &digest);
    assert_eq!(common::blob_names(&dst), vec![config]);
    let p = ok(&run(
        t,
        &[
            "pull",
            &format!("{}/big:1", reg.host),
            dst.to_str().expect("p"),
            "--json",
        ],
    ));
    assert_eq!(p["blobs"]["present"], 1, "{p}");
    assert_eq!(p["blobs"]["fetched"], 2);
    assert_eq!(p["entries"][0]["digest"], digest.as_str());
    fsck_clean(&dst);
}

/// A schema1 manifest (`unsigned`: plain `v1+json`; else a JWS-signed `prettyjws` whose
/// registry digest is that of its canonical payload) naming `layer`.
fn schema1(layer: &str, signed: bool) -> (Vec<u8>, String) {
    use base64::Engine;
    let payload = format!(
        "{{\n   \"schemaVersion\": 1,\n   \"name\": \"old/app\",\n   \"tag\": \"s1\",\n   \"architecture\": \"amd64\",\n   \"fsLayers\": [\n      {{\n         \"blobSum\": \"{layer}\"\n      }}\n   ],\n   \"history\": [\n      {{\n         \"v1Compatibility\": \"{{\\\"id\\\":\\\"aa\\\",\\\"os\\\":\\\"linux\\\",\\\"architecture\\\":\\\"amd64\\\",\\\"config\\\":{{}}}}\"\n      }}\n   ]\n}}"
    );
    if !signed {
        let d = format!("sha256:{}", common_sha256(payload.as_bytes()));
        return (payload.into_bytes(), d);
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let cut = payload.len() - 2; // before "\n}"
    let protected = b64.encode(format!(
        "{{\"formatLength\":{cut},\"formatTail\":\"{}\",\"time\":\"2016-01-01T00:00:00Z\"}}",
        b64.encode("\n}")
    ));
    let signed = format!(
        "{},\n   \"signatures\": [\n      {{\n         \"header\": {{\"alg\": \"ES256\"}},\n         \"signature\": \"c2ln\",\n         \"protected\": \"{protected}\"\n      }}\n   ]\n}}",
        &payload[..cut]
    );
    let canonical = format!("sha256:{}", common_sha256(payload.as_bytes()));
    (signed.into_bytes(), canonical)
}

#[test]
fn schema1_manifests_are_pulled_as_served() {
    let Some(reg) = Registry::start(Kind::Plain) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    // Put a layer into the repository by pushing an image that has it.
    let built = pushed_small_image(t, &format!("{}/old/app:base", reg.host));
    let layer = built.layers[0].digest.to_string();
    for signed in [false, true] {
        let (bytes, registry_digest) = schema1(&layer, signed);
        let ct = if signed {
            "application/vnd.docker.distribution.manifest.v1+prettyjws"
        } else {
            "application/vnd.docker.distribution.manifest.v1+json"
        };
        let proxy = Proxy::start(
            &reg.host,
            Faults {
                canned: vec![
                    (
                        "/manifests/s1".into(),
                        ct.into(),
                        Some(registry_digest.clone()),
                        bytes.clone(),
                    ),
                    (
                        format!("/manifests/{registry_digest}"),
                        ct.into(),
                        Some(registry_digest.clone()),
                        bytes.clone(),
                    ),
                ],
                ..Faults::default()
            },
        );
        let own = format!("sha256:{}", common_sha256(&bytes));
        for reference in [":s1".to_string(), format!("@{registry_digest}")] {
            let dst = t.join(format!("s1-{signed}-{}", reference.len()));
            let p = ok(&run(
                t,
                &[
                    "pull",
                    &format!("{}/old/app{reference}", proxy.host),
                    dst.to_str().expect("p"),
                    "--json",
                ],
            ));
            // Stored under the digest of the bytes served (for a signed one, not the
            // registry's canonical digest), with the type the registry served.
            assert_eq!(p["entries"][0]["digest"], own.as_str());
            let entries = ocikit(&dst, &["ls", "--json", dst.to_str().expect("p")]).json();
            assert_eq!(entries[0]["mediaType"], ct);
            assert_eq!(
                std::fs::read(dst.join("blobs/sha256").join(&own[7..])).expect("m"),
                bytes
            );
            assert!(dst.join("blobs/sha256").join(&layer[7..]).exists());
        }
    }
}

#[test]
fn blobs_are_mounted_from_the_repository_the_ref_names() {
    let Some(reg) = Registry::start(Kind::Plain) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    let a = format!("{}/team/a:1", reg.host);
    ok(&run(
        t,
        &[
            "push",
            multiarch().to_str().expect("p"),
            "app:1",
            &a,
            "--json",
        ],
    ));
    // A layout whose ref names the image on this registry (as a pull records it).
    let l = t.join("l");
    ok(&run(t, &["pull", &a, l.to_str().expect("p"), "--json"]));
    let b = format!("{}/team/b:1", reg.host);
    let push = ok(&run(t, &["push", l.to_str().expect("p"), &a, &b, "--json"]));
    assert_eq!(push["blobs"]["mounted"], 8);
    assert_eq!(push["blobs"]["sent"], 0);
    assert_eq!(push["bytes"], 0);
    assert_eq!(push["entries"][0]["digest"], MULTI);
    let dst = t.join("dst");
    let p = ok(&run(t, &["pull", &b, dst.to_str().expect("p"), "--json"]));
    assert_eq!(p["entries"][0]["digest"], MULTI);
    fsck_clean(&dst);
}

/// A `docker-credential-NAME` script in `dir` that prints `json` for `get` (or fails).
fn helper_script(dir: &Path, name: &str, json: Option<&str>) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("docker-credential-{name}"));
    let body = match json {
        Some(j) => format!("#!/bin/sh\ncat >/dev/null\necho '{j}'\n"),
        None => "#!/bin/sh\necho 'helper crashed' >&2\nexit 3\n".to_string(),
    };
    std::fs::write(&path, body).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn credential_helpers_in_dockers_order_and_a_failing_one_is_skipped() {
    let Some(reg) = Registry::start(Kind::Basic) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    let bin = t.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    helper_script(
        &bin,
        "good",
        Some(r#"{"ServerURL":"x","Username":"alice","Secret":"wonderland"}"#),
    );
    helper_script(&bin, "broken", None);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cfg = t.join("docker");
    std::fs::create_dir_all(&cfg).expect("mkdir");
    let image = format!("{}/app:1", reg.host);
    let with_config = |config: &str, args: &[&str]| {
        std::fs::write(cfg.join("config.json"), config).expect("cfg");
        let out = ocikit_cmd()
            .current_dir(t)
            .env("PATH", &path)
            .env("DOCKER_CONFIG", &cfg)
            .env_remove("REGISTRY_AUTH_FILE")
            .args(args)
            .output()
            .expect("run");
        common::run_of(out, t)
    };
    let src = multiarch();
    let push = [
        "push",
        src.to_str().expect("p"),
        "app:1",
        image.as_str(),
        "--json",
    ];
    // credHelpers for the host wins over credsStore and auths.
    let r = with_config(
        &format!(
            r#"{{"credHelpers":{{"{}":"good"}},"credsStore":"broken","auths":{{"{}":{{"auth":"eDp5"}}}}}}"#,
            reg.host, reg.host
        ),
        &push,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr, "");
    // A failing credsStore: a note, then auths; here auths are wrong, so HTTP 401.
    let r = with_config(
        &format!(
            r#"{{"credsStore":"broken","auths":{{"{}":{{"auth":"eDp5"}}}}}}"#,
            reg.host
        ),
        &push,
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with(&format!(
            "ocikit: note: credential helper `docker-credential-broken` for {} failed (exit status 3); trying without it\n",
            reg.host
        )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("HTTP 401"), "{}", r.stderr);
    // $REGISTRY_AUTH_FILE comes first.
    let auth_file = t.join("auth.json");
    std::fs::write(
        &auth_file,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"YWxpY2U6d29uZGVybGFuZA=="}}}}}}"#,
            reg.host
        ),
    )
    .expect("auth");
    std::fs::write(cfg.join("config.json"), "{}").expect("cfg");
    let out = ocikit_cmd()
        .current_dir(t)
        .env("DOCKER_CONFIG", &cfg)
        .env("REGISTRY_AUTH_FILE", &auth_file)
        .args(push)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unknown_manifest_type_is_carried_not_refused() {
    let Some(reg) = Registry::start(Kind::Plain) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    let built = pushed_small_image(t, &format!("{}/odd:base", reg.host));
    let (cfg, cfg_size) = &built.config;
    let body = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.example.config+json","digest":"{cfg}","size":{cfg_size}}},"layers":[{{"mediaType":"application/vnd.example.blob","digest":"{}","size":{}}}]}}"#,
        built.layers[0].digest, built.layers[0].size
    )
    .into_bytes();
    let odd = "application/vnd.example.thing.v1+json";
    let proxy = Proxy::start(
        &reg.host,
        Faults {
            canned: vec![(
                "/manifests/odd".into(),
                format!("{odd}; charset=utf-8"),
                None,
                body.clone(),
            )],
            ..Faults::default()
        },
    );
    let dst = t.join("dst");
    let p = ok(&run(
        t,
        &[
            "pull",
            &format!("{}/odd:odd", proxy.host),
            dst.to_str().expect("p"),
            "--json",
        ],
    ));
    let own = format!("sha256:{}", common_sha256(&body));
    assert_eq!(p["entries"][0]["digest"], own.as_str());
    assert_eq!(p["blobs"]["fetched"], 3);
    let entries = ocikit(&dst, &["ls", "--json", dst.to_str().expect("p")]).json();
    assert_eq!(
        entries[0]["mediaType"], odd,
        "Content-Type without its parameters"
    );
}

#[test]
fn an_expired_token_mid_upload_is_renewed_and_the_blob_sent_again() {
    let Some(reg) = Registry::start(Kind::Plain) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    let src = t.join("src");
    let digest = big_image(&src, 500 << 10);
    let proxy = Proxy::start(
        &reg.host,
        Faults {
            bearer: true,
            expire_at_first_upload: true,
            ..Faults::default()
        },
    );
    let image = format!("{}/exp:1", proxy.host);
    let push = ok(&run(
        t,
        &[
            "push",
            src.to_str().expect("p"),
            "big:1",
            &image,
            "--json",
            "--parallel",
            "1",
        ],
    ));
    assert_eq!(push["entries"][0]["digest"], digest.as_str());
    let puts_refused = proxy
        .seen()
        .iter()
        .filter(|s| s.method == "PUT" && s.path.contains("/blobs/uploads/") && s.status == 401)
        .count();
    assert!(puts_refused >= 1, "a streamed upload met an expired token");
    let dst = t.join("dst");
    let p = ok(&run(
        t,
        &[
            "pull",
            &format!("{}/exp:1", reg.host),
            dst.to_str().expect("p"),
            "--json",
        ],
    ));
    assert_eq!(p["entries"][0]["digest"], digest.as_str());
    fsck_clean(&dst);
}

#[test]
fn a_blob_with_other_bytes_is_refused_naming_its_digest() {
    let Some(reg) = Registry::start(Kind::Plain) else {
        return;
    };
    let tmp = tempdir();
    let t = tmp.path();
    let built = pushed_small_image(t, &format!("{}/bad:1", reg.host));
    let layer = built.layers[0].digest.to_string();
    let size = built.layers[0].size as usize;
    for (what, bytes) in [
        ("same size", vec![0u8; size]),
        ("longer", vec![0u8; size + 10]),
    ] {
        let proxy = Proxy::start(
            &reg.host,
            Faults {
                canned: vec![(
                    format!("/blobs/{layer}"),
                    "application/octet-stream".into(),
                    None,
                    bytes,
                )],
                ..Faults::default()
            },
        );
        let dst = t.join(format!("dst-{}", what.len()));
        let r = run(
            t,
            &[
                "pull",
                &format!("{}/bad:1", proxy.host),
                dst.to_str().expect("p"),
            ],
        );
        assert_eq!(r.code, 2, "{what}: {}", r.stderr);
        assert!(r.stderr.contains(&layer), "{what}: {}", r.stderr);
        if what == "longer" {
            assert!(
                r.stderr.contains(&format!(
                    "the body is longer than the {size} bytes declared"
                )),
                "{}",
                r.stderr
            );
        }
        assert!(ls(&dst).is_empty(), "{what}: nothing committed");
        assert!(!common::blob_names(&dst).contains(&format!("sha256:{}", &layer[7..])));
    }
}
