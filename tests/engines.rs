//! ocikit against the real engines (Debian's `docker.io`: dockerd 20.10, containerd 1.6):
//! images built offline by both builders (the classic builder and BuildKit) with whiteouts,
//! an opaque whiteout, a symlink, a hard link, a shared base and a repeated diff_id;
//! `docker save` (several tags, by ID, gzipped, piped) -> `ocikit import` -> `fsck --deep` ->
//! config digest = `docker inspect` ID and diff_ids = `RootFS.Layers` -> `ocikit export` ->
//! `docker load` into a fresh data root -> the same IDs -> `docker run` sees the whiteouts,
//! the symlink and the hard link; and `ctr images export` -> import keeps the digests ->
//! export -> `ctr images import` -> `ctr run`.
//!
//! The tests start `containerd` and `dockerd` themselves, on private sockets and data roots
//! under a temp directory (overlay2, vfs where overlay is not available;
//! `--iptables=false --bridge=none`), and stop them by PID. Where they cannot run (not
//! installed, not root, no overlay or cgroups), each test skips with a notice.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::engines::{docker, Engines};
use common::ocikit_cmd;
use serde_json::Value;

fn check(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ctr(e: &Engines) -> Command {
    let mut c = Command::new("ctr");
    c.arg("--address")
        .arg(&e.containerd)
        .args(["--namespace", "ocikit"]);
    c
}

fn ocikit(args: &[&str]) -> String {
    check(
        ocikit_cmd().args(args).output().expect("ocikit"),
        &args.join(" "),
    )
}

/// A build context: a root filesystem of `sh`, `cat`, `rm`, `mkdir`, `ln` and the libraries
/// they load (so `RUN` and `docker run` work offline), and a Dockerfile making a symlink, a
/// hard link, a file later deleted (a whiteout), a directory deleted and made again (an opaque
/// whiteout) and the same file copied twice (a repeated diff_id).
fn context(dir: &Path) -> Result<(), String> {
    let root = dir.join("rootfs");
    let tools = ["sh", "cat", "rm", "mkdir", "ln"];
    let mut libs = std::collections::BTreeSet::new();
    for t in tools {
        let bin = Path::new("/bin").join(t);
        let out = Command::new("ldd")
            .arg(&bin)
            .output()
            .map_err(|e| e.to_string())?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let path = line
                .split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from);
            libs.extend(path);
        }
        let to = root.join("bin").join(t);
        fs::create_dir_all(to.parent().expect("bin")).map_err(|e| e.to_string())?;
        fs::copy(&bin, &to).map_err(|e| e.to_string())?;
    }
    for lib in libs {
        let to = root.join(lib.strip_prefix("/").expect("absolute"));
        fs::create_dir_all(to.parent().expect("dir")).map_err(|e| e.to_string())?;
        fs::copy(&lib, &to).map_err(|e| format!("{}: {e}", lib.display()))?;
    }
    fs::create_dir_all(root.join("etc")).map_err(|e| e.to_string())?;
    fs::write(dir.join("same"), "same\n").map_err(|e| e.to_string())?;
    fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\n\
         COPY rootfs/ /\n\
         COPY same /same\n\
         RUN mkdir -p /d/sub && echo x > /d/sub/f && echo gone > /gone && echo data > /etc/target && ln -s /etc/target /link && ln /etc/target /hard\n\
         COPY same /same\n\
         RUN rm /gone && rm -r /d && mkdir /d && echo new > /d/new\n\
         CMD [\"/bin/sh\"]\n",
    )
    .map_err(|e| e.to_string())?;
    // A second image on the first: a shared base.
    fs::create_dir_all(dir.join("child")).map_err(|e| e.to_string())?;
    fs::write(
        dir.join("child/Dockerfile"),
        "FROM classic:1\nRUN echo child > /child\n",
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

const CHECK: &str = "[ -e /gone ] && echo whiteout-failed; [ -e /d/sub ] && echo opaque-failed; \
    cat /d/new; [ -L /link ] && cat /link; [ /hard -ef /etc/target ] && echo hard-link";

fn inspect(sock: &Path, image: &str) -> (String, Vec<String>) {
    let out = check(
        docker(sock)
            .args(["image", "inspect", image])
            .output()
            .expect("docker"),
        "inspect",
    );
    let v: Value = serde_json::from_str(&out).expect("json");
    let id = v[0]["Id"].as_str().expect("Id").to_string();
    let layers = v[0]["RootFS"]["Layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l.as_str().expect("layer").to_string())
        .collect();
    (id, layers)
}

fn blob_json(layout: &Path, digest: &str) -> Value {
    let hex = digest.strip_prefix("sha256:").expect("sha256");
    serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).expect("blob"))
        .expect("json")
}

/// The config digest and diff_ids of the image a ref names in a layout.
fn image_of(layout: &Path, r: &str) -> (String, Vec<String>) {
    let out = ocikit(&[
        "ls",
        "--json",
        "--image-id",
        layout.to_str().expect("utf-8"),
    ]);
    let entries: Value = serde_json::from_str(&out).expect("json");
    let entry = entries
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["ref"] == r)
        .unwrap_or_else(|| panic!("no ref {r}: {entries}"));
    let id = entry["imageId"].as_str().expect("imageId").to_string();
    let cfg = blob_json(layout, &id);
    let diff_ids = cfg["rootfs"]["diff_ids"]
        .as_array()
        .expect("diff_ids")
        .iter()
        .map(|d| d.as_str().expect("diff_id").to_string())
        .collect();
    (id, diff_ids)
}

fn engines_or_skip(tmp: &Path) -> Option<(Engines, PathBuf)> {
    let mut e = match Engines::start(tmp) {
        Ok(e) => e,
        Err(why) => {
            eprintln!("skipped: the engines cannot run here: {why}");
            return None;
        }
    };
    match e.dockerd("build") {
        Ok(sock) => Some((e, sock)),
        Err(why) => {
            eprintln!("skipped: the engines cannot run here: {why}");
            None
        }
    }
}

#[test]
fn docker_save_import_export_load_run() {
    // A short path: unix socket paths are limited to 108 bytes.
    let tmp = tempfile::Builder::new()
        .prefix("ocikit-eng")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let Some((mut engines, build)) = engines_or_skip(tmp.path()) else {
        return;
    };
    let ctx = tmp.path().join("ctx");
    if let Err(e) = context(&ctx) {
        eprintln!("skipped: cannot make a build context from this machine's /bin: {e}");
        return;
    }
    // Both builders, offline.
    for (tag, buildkit) in [("classic:1", "0"), ("bk:1", "1")] {
        check(
            docker(&build)
                .env("DOCKER_BUILDKIT", buildkit)
                .args(["build", "--network", "none", "-q", "-t", tag])
                .arg(&ctx)
                .output()
                .expect("docker build"),
            tag,
        );
    }
    check(
        docker(&build)
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "--network", "none", "-q", "-t", "child:1"])
            .arg(ctx.join("child"))
            .output()
            .expect("docker build"),
        "child",
    );
    check(
        docker(&build)
            .args(["tag", "classic:1", "classic:also"])
            .output()
            .expect("tag"),
        "tag",
    );
    let images = ["classic:1", "classic:also", "bk:1", "child:1"];
    let want: Vec<(String, Vec<String>)> = images.iter().map(|i| inspect(&build, i)).collect();
    // The repeated diff_id and the shared base are there.
    assert_eq!(want[0].1[1], want[0].1[3]);
    assert_eq!(want[3].1[..want[0].1.len()], want[0].1[..]);

    // Several tags in one archive, piped; the same gzipped from a file; one by ID.
    let layout = tmp.path().join("layout");
    let layout_s = layout.to_str().expect("utf-8");
    let mut save = docker(&build)
        .arg("save")
        .args(images)
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker save");
    let import = ocikit_cmd()
        .args(["import", "-q", "-", layout_s])
        .stdin(save.stdout.take().expect("stdout"))
        .output()
        .expect("import");
    assert!(save.wait().expect("save").success());
    check(import, "import -");
    let by_id = tmp.path().join("by-id.tar");
    let out = docker(&build)
        .args(["save", "-o"])
        .arg(&by_id)
        .arg(&want[2].0)
        .output()
        .expect("save by id");
    check(out, "save by id");
    let raw = fs::read(&by_id).expect("read");
    let gz = tmp.path().join("bk.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&raw).expect("gzip");
    fs::write(&gz, enc.finish().expect("gzip")).expect("write");
    ocikit(&["import", "-q", gz.to_str().expect("utf-8"), layout_s]);
    ocikit(&["fsck", "--deep", "-q", layout_s]);
    for (i, image) in images.iter().enumerate() {
        assert_eq!(image_of(&layout, image), want[i], "{image}");
    }

    // Out again, into a fresh daemon: the same IDs, and the containers see what was built.
    let archive = tmp.path().join("out.tar");
    ocikit(&[
        "export",
        "-q",
        layout_s,
        "classic:1",
        "bk:1",
        "child:1",
        "-o",
        archive.to_str().expect("utf-8"),
    ]);
    let fresh = match engines.dockerd("fresh") {
        Ok(s) => s,
        Err(e) => panic!("a second dockerd: {e}"),
    };
    check(
        docker(&fresh)
            .arg("load")
            .arg("-i")
            .arg(&archive)
            .output()
            .expect("load"),
        "docker load",
    );
    for (i, image) in images.iter().enumerate() {
        if *image == "classic:also" {
            continue;
        }
        assert_eq!(inspect(&fresh, image), want[i], "{image} after docker load");
    }
    for image in ["classic:1", "bk:1", "child:1"] {
        let out = check(
            docker(&fresh)
                .args([
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    image,
                    "/bin/sh",
                    "-c",
                    CHECK,
                ])
                .output()
                .expect("docker run"),
            image,
        );
        assert_eq!(out, "new\ndata\nhard-link\n", "{image}");
    }
}

#[test]
fn containerd_export_import_keeps_digests_and_runs() {
    let tmp = tempfile::Builder::new()
        .prefix("ocikit-ctr")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let Some((engines, build)) = engines_or_skip(tmp.path()) else {
        return;
    };
    let ctx = tmp.path().join("ctx");
    if let Err(e) = context(&ctx) {
        eprintln!("skipped: cannot make a build context from this machine's /bin: {e}");
        return;
    }
    check(
        docker(&build)
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "--network", "none", "-q", "-t", "classic:1"])
            .arg(&ctx)
            .output()
            .expect("docker build"),
        "build",
    );
    let (id, layers) = inspect(&build, "classic:1");
    // Into containerd through ocikit (gzip layers, an OCI manifest), then out of containerd.
    let layout = tmp.path().join("layout");
    let layout_s = layout.to_str().expect("utf-8");
    let saved = tmp.path().join("saved.tar");
    check(
        docker(&build)
            .args(["save", "-o"])
            .arg(&saved)
            .arg("classic:1")
            .output()
            .expect("save"),
        "save",
    );
    ocikit(&["import", "-q", saved.to_str().expect("utf-8"), layout_s]);
    let oci = tmp.path().join("oci.tar");
    ocikit(&[
        "export",
        "-q",
        "--format",
        "oci-archive",
        layout_s,
        "classic:1",
        "-o",
        oci.to_str().expect("utf-8"),
    ]);
    check(
        ctr(&engines)
            .args(["images", "import"])
            .arg(&oci)
            .output()
            .expect("ctr import"),
        "ctr import",
    );
    let name = "docker.io/library/classic:1";
    let exported = tmp.path().join("ctr.tar");
    check(
        ctr(&engines)
            .args(["images", "export"])
            .arg(&exported)
            .arg(name)
            .output()
            .expect("ctr export"),
        "ctr export",
    );
    let listed = check(
        ctr(&engines)
            .args(["images", "ls"])
            .output()
            .expect("ctr ls"),
        "ctr ls",
    );
    let ctr_digest = listed
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("sha256:")))
        .expect("ctr lists the image")
        .to_string();
    // ctr export -> import keeps the digests; the names are manifest.json's RepoTags, the full
    // name in `io.containerd.image.name`.
    let back = tmp.path().join("back");
    let back_s = back.to_str().expect("utf-8");
    ocikit(&["import", "-q", exported.to_str().expect("utf-8"), back_s]);
    ocikit(&["fsck", "--deep", "-q", back_s]);
    let out = ocikit(&["ls", "--json", "--image-id", back_s]);
    let entries: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(entries.as_array().expect("array").len(), 1);
    assert_eq!(entries[0]["ref"], "classic:1");
    assert_eq!(entries[0]["annotations"]["io.containerd.image.name"], name);
    assert_eq!(entries[0]["digest"], ctr_digest.as_str());
    assert_eq!(entries[0]["imageId"], id.as_str());
    assert_eq!(image_of(&back, "classic:1").1, layers);
    // Out again, into a fresh namespace, and run.
    let again = tmp.path().join("again.tar");
    ocikit(&[
        "export",
        "-q",
        "--format",
        "oci-archive",
        back_s,
        "classic:1",
        "-o",
        again.to_str().expect("utf-8"),
    ]);
    let mut fresh = Command::new("ctr");
    fresh
        .arg("--address")
        .arg(&engines.containerd)
        .args(["--namespace", "fresh"]);
    check(
        fresh
            .args(["images", "import"])
            .arg(&again)
            .output()
            .expect("ctr import"),
        "ctr import again",
    );
    let out = check(
        Command::new("ctr")
            .arg("--address")
            .arg(&engines.containerd)
            .args(["--namespace", "fresh", "run", "--rm", name, "ocikit-check"])
            .args(["/bin/sh", "-c", CHECK])
            .output()
            .expect("ctr run"),
        "ctr run",
    );
    assert_eq!(out, "new\ndata\nhard-link\n");
}
