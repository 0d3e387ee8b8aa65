//! Shared helpers for the end-to-end tests: one way to run the `ocikit` binary, a filter for
//! temp paths, and builders for small deterministic layouts.
//!
//! Everything here is deterministic: tar entries have fixed headers (mtime 0, uid/gid 0,
//! mode 0644), JSON documents are written with a fixed field order, gzip has mtime 0, so the
//! digests the tests assert are the same on every machine.

#![allow(dead_code)] // each test file uses a different part

pub mod engines;
pub mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output};

use assert_cmd::cargo::CommandCargoExt as _;
use ocikit_layout::layer::{write_layer, CompressOptions, LayerInfo};
use ocikit_layout::{refs, Compression, Descriptor, Digest, Layout, MediaType, Options};
use serde_json::{json, Value};

/// What one run of `ocikit` produced.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Standard output, raw.
    pub stdout_bytes: Vec<u8>,
    /// Standard output as text, temp paths replaced by `[TMP]`.
    pub stdout: String,
    /// Standard error as text, temp paths replaced by `[TMP]`.
    pub stderr: String,
}

impl Run {
    /// Standard output parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout_bytes)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// The `ocikit` binary as a `std::process::Command`, for tests that need to spawn it
/// themselves (pipes, threads).
pub fn ocikit_cmd() -> StdCommand {
    let mut c = StdCommand::cargo_bin("ocikit").expect("the ocikit binary is built");
    c.env_remove("OCIKIT_LOCK_TIMEOUT")
        .env_remove("OCIKIT_FAULT_POINT");
    c
}

/// Run `ocikit ARGS` with `cwd` as working directory; paths under `cwd` in the output are
/// replaced by `[TMP]`.
pub fn ocikit(cwd: &Path, args: &[&str]) -> Run {
    let out = ocikit_cmd()
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("run ocikit");
    run_of(out, cwd)
}

/// Turn a finished process into a [`Run`], filtering `tmp` out of its text.
pub fn run_of(out: Output, tmp: &Path) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: filter(&String::from_utf8_lossy(&out.stdout), tmp),
        stderr: filter(&String::from_utf8_lossy(&out.stderr), tmp),
        stdout_bytes: out.stdout,
    }
}

/// Replace `tmp` (as given and canonicalized) by `[TMP]`.
pub fn filter(text: &str, tmp: &Path) -> String {
    let mut s = text.to_string();
    let mut paths = vec![tmp.display().to_string()];
    if let Ok(c) = tmp.canonicalize() {
        paths.push(c.display().to_string());
    }
    // Longest first, so a canonical path that extends the given one is replaced whole.
    paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in paths {
        if !p.is_empty() {
            s = s.replace(&p, "[TMP]");
        }
    }
    s
}

/// The workspace's `fixtures/` directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A fresh temp dir.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Copy `fixtures/layouts/NAME` to `DEST`, recursively (files and directories only).
pub fn copy_tree(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).expect("mkdir");
    for e in std::fs::read_dir(src).expect("read_dir") {
        let e = e.expect("entry");
        let to = dest.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_tree(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).expect("copy");
        }
    }
}

/// Copy the corpus layout `name` into `tmp/name` and return that path.
pub fn copy_fixture(name: &str, tmp: &Path) -> PathBuf {
    let dest = tmp.join(name);
    copy_tree(&fixtures().join("layouts").join(name), &dest);
    dest
}

/// The files under `dir/blobs/<alg>/`, as `alg:name`, sorted.
pub fn blob_names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(algs) = std::fs::read_dir(dir.join("blobs")) else {
        return out;
    };
    for alg in algs.flatten() {
        for f in std::fs::read_dir(alg.path()).expect("read_dir").flatten() {
            out.push(format!(
                "{}:{}",
                alg.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            ));
        }
    }
    out.sort();
    out
}

/// Options for the library in tests: no fsync (throwaway dirs), short lock wait.
pub fn opts() -> Options {
    Options {
        durable: false,
        lock_timeout: std::time::Duration::from_secs(30),
    }
}

/// A tar with the given regular files, fixed headers (ustar, mode 0644, uid/gid 0, mtime 0),
/// ending with the two zero blocks.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).expect("path");
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, *data).expect("append");
    }
    b.into_inner().expect("finish tar")
}

/// One layer of an image the tests build.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    /// The uncompressed tar.
    pub tar: Vec<u8>,
    /// How the stored blob is compressed.
    pub compression: Compression,
    /// The media type the manifest declares (default: the OCI layer type of `compression`).
    pub media_type: Option<String>,
}

impl LayerSpec {
    /// A layer holding `files`, stored with `compression`, declared truthfully.
    pub fn new(files: &[(&str, &[u8])], compression: Compression) -> LayerSpec {
        LayerSpec {
            tar: tar_of(files),
            compression,
            media_type: None,
        }
    }
}

/// What [`add_image`] wrote.
#[derive(Debug, Clone)]
pub struct Built {
    /// The manifest's descriptor (no ref annotation).
    pub manifest: Descriptor,
    /// The config's digest and size.
    pub config: (Digest, u64),
    /// The layers as written.
    pub layers: Vec<LayerInfo>,
}

fn oci_layer_type(c: Compression) -> &'static str {
    match c {
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

/// Write an image into the layout at `dir` (created when absent) through the library: its
/// layers, a config whose `rootfs.diff_ids` are the layers' (or `diff_ids` when given), and an
/// OCI manifest; then tag it `tag` in `index.json`.
pub fn add_image(
    dir: &Path,
    tag: &str,
    layers: &[LayerSpec],
    diff_ids: Option<Vec<String>>,
) -> Built {
    let (layout, _) = Layout::init(dir, opts()).expect("init");
    let lock = layout.lock().expect("lock");
    let mut infos = Vec::new();
    for l in layers {
        let info = write_layer(
            &lock,
            &mut &l.tar[..],
            CompressOptions {
                compression: l.compression,
                level: None,
            },
        )
        .expect("write layer");
        infos.push(info);
    }
    let diff_ids =
        diff_ids.unwrap_or_else(|| infos.iter().map(|i| i.diff_id.to_string()).collect());
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {"Env": ["PATH=/usr/bin"]},
    });
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let (config_digest, config_size) = lock.write_blob(&config_bytes).expect("config");
    let layer_descs: Vec<Value> = layers
        .iter()
        .zip(&infos)
        .map(|(spec, info)| {
            json!({
                "mediaType": spec.media_type.clone().unwrap_or_else(|| oci_layer_type(spec.compression).to_string()),
                "digest": info.digest.as_str(),
                "size": info.size,
            })
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.as_str(),
            "size": config_size,
        },
        "layers": layer_descs,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("json");
    let (m_digest, m_size) = lock.write_blob(&manifest_bytes).expect("manifest");
    let desc = Descriptor::new(MediaType::OciManifest, m_digest, m_size);
    let mut index = layout.read_index().expect("index").value;
    refs::tag(&mut index, &desc, tag).expect("tag");
    lock.commit_index(&index).expect("commit");
    Built {
        manifest: desc,
        config: (config_digest, config_size),
        layers: infos,
    }
}

/// The standard small image of the round-trip tests: one gzip layer with two files.
pub fn small_image(dir: &Path, tag: &str) -> Built {
    add_image(
        dir,
        tag,
        &[LayerSpec::new(
            &[
                ("hello.txt", b"hello\n"),
                ("etc/os-release", b"ID=ocikit\n"),
            ],
            Compression::Gzip,
        )],
        None,
    )
}

/// Flip the last bit of byte `at` of a file.
pub fn flip_byte(path: &Path, at: usize) {
    let mut b = std::fs::read(path).expect("read");
    b[at] ^= 1;
    std::fs::write(path, b).expect("write");
}

/// Write `blobs` and then `manifest` (an OCI manifest, as given) into the layout at `dir`
/// (created when absent), and tag the manifest `tag`. Returns the manifest's descriptor.
pub fn add_manifest(dir: &Path, tag: &str, blobs: &[&[u8]], manifest: &Value) -> Descriptor {
    let (layout, _) = Layout::init(dir, opts()).expect("init");
    let lock = layout.lock().expect("lock");
    for b in blobs {
        lock.write_blob(b).expect("blob");
    }
    let bytes = serde_json::to_vec(manifest).expect("json");
    let (digest, size) = lock.write_blob(&bytes).expect("manifest");
    let desc = Descriptor::new(MediaType::OciManifest, digest, size);
    let mut index = layout.read_index().expect("index").value;
    refs::tag(&mut index, &desc, tag).expect("tag");
    lock.commit_index(&index).expect("commit");
    desc
}

/// A descriptor object for `bytes` of type `media_type`.
pub fn desc_of(media_type: &str, bytes: &[u8]) -> Value {
    json!({
        "mediaType": media_type,
        "digest": Digest::sha256(bytes).as_str(),
        "size": bytes.len(),
    })
}
