//! Helpers for the fault and hostile-input tests: the binary, and layouts built byte by byte (so a
//! test can plant exactly the hostile content it needs, digests and all).

#![allow(dead_code)] // each test file uses a different subset

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// `ocikit` from this build, with no fault point and no inherited lock timeout.
pub fn ocikit() -> Command {
    let mut c = Command::cargo_bin("ocikit").expect("binary");
    c.env_remove("OCIKIT_FAULT_POINT")
        .env_remove("OCIKIT_LOCK_TIMEOUT");
    c
}

/// Run `ocikit` with `args`.
pub fn run(args: &[&str]) -> Output {
    ocikit().args(args).output().expect("run ocikit")
}

/// Run `ocikit` with `args` and its address space capped at 1 GiB, so a command that tries to
/// read a huge input into memory fails instead of passing slowly.
pub fn run_capped(args: &[&str]) -> Output {
    let bin = assert_cmd::cargo::cargo_bin("ocikit");
    std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v 1048576 && exec "$0" "$@""#)
        .arg(bin)
        .args(args)
        .env_remove("OCIKIT_FAULT_POINT")
        .output()
        .expect("run ocikit")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let h = Sha256::digest(bytes);
    let mut s = String::from("sha256:");
    for b in h {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A layout in a temp dir, written directly (no ocikit involved).
pub struct Lay {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Lay {
    pub fn new() -> Lay {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("layout");
        fs::create_dir_all(root.join("blobs/sha256")).expect("mkdir");
        fs::write(
            root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("write");
        let lay = Lay { _dir: dir, root };
        lay.set_index(&[]);
        lay
    }

    /// The layout's path as a string, for command lines.
    pub fn path(&self) -> &str {
        self.root.to_str().expect("utf-8 temp path")
    }

    /// Store `bytes` under their sha256 digest; returns the digest.
    pub fn put(&self, bytes: &[u8]) -> String {
        let d = sha256(bytes);
        fs::write(self.blob_path(&d), bytes).expect("write blob");
        d
    }

    /// Store `bytes` and return a descriptor for them.
    pub fn desc(&self, media_type: &str, bytes: &[u8]) -> Value {
        let d = self.put(bytes);
        json!({"mediaType": media_type, "digest": d, "size": bytes.len()})
    }

    /// Where a blob lives.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let (alg, enc) = digest.split_once(':').expect("digest");
        self.root.join("blobs").join(alg).join(enc)
    }

    /// A valid image config stored in the layout; returns its descriptor.
    pub fn config(&self, tag: &str) -> Value {
        self.desc(
            OCI_CONFIG,
            format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"tag":"{tag}"}}"#)
                .as_bytes(),
        )
    }

    /// A small image (config + one layer) stored in the layout; returns the manifest's
    /// descriptor. `tag` makes the content unique.
    pub fn image(&self, tag: &str) -> Value {
        let config = self.config(tag);
        let layer = self.desc(OCI_LAYER, format!("layer of {tag}").as_bytes());
        let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]});
        self.desc(OCI_MANIFEST, &serde_json::to_vec(&m).expect("json"))
    }

    /// Replace index.json with an index of `entries`.
    pub fn set_index(&self, entries: &[Value]) {
        let ix = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        self.set_index_bytes(&serde_json::to_vec(&ix).expect("json"));
    }

    pub fn set_index_bytes(&self, bytes: &[u8]) {
        fs::write(self.root.join("index.json"), bytes).expect("write index.json");
    }

    pub fn index_bytes(&self) -> Vec<u8> {
        fs::read(self.root.join("index.json")).expect("read index.json")
    }

    /// `ocikit fsck --json` on this layout: exit code and parsed report.
    pub fn fsck(&self) -> (i32, Value) {
        let o = run(&["fsck", "--json", self.path()]);
        let v: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("fsck --json output: {e}: {}", stderr(&o)));
        (o.status.code().unwrap_or(-1), v)
    }

    /// Every file in the layout whose name starts with `.tmp-`.
    pub fn temp_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        collect_temp(&self.root, &mut out);
        out.sort();
        out
    }
}

fn collect_temp(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect_temp(&p, out);
        } else if e.file_name().to_string_lossy().starts_with(".tmp-") {
            out.push(p);
        }
    }
}

/// A ref-named copy of a descriptor, for index.json.
pub fn named(desc: &Value, name: &str) -> Value {
    let mut d = desc.clone();
    d["annotations"] = json!({ REF_NAME: name });
    d
}

/// A small deterministic PRNG (splitmix64), so randomised tests replay exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Run `ocikit ARGS` like [`run_capped`] (1 GiB of address space), polling its peak resident
/// set (`VmHWM`) every 2 ms while it runs (its output is drained on other threads, so a large
/// output cannot stall it); returns the output and the largest peak seen, in KiB.
pub fn run_capped_peak(args: &[&str]) -> (Output, u64) {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v 1048576 && exec "$0" "$@""#)
        .arg(assert_cmd::cargo::cargo_bin("ocikit"))
        .args(args)
        .env_remove("OCIKIT_FAULT_POINT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ocikit");
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).expect("read output");
            buf
        })
    };
    let out_t = drain(Box::new(child.stdout.take().expect("stdout")));
    let err_t = drain(Box::new(child.stderr.take().expect("stderr")));
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak = peak.max(hwm.unwrap_or(0));
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let out = Output {
        status,
        stdout: out_t.join().expect("stdout thread"),
        stderr: err_t.join().expect("stderr thread"),
    };
    (out, peak)
}
