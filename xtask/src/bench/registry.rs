//! The registry rows' machinery: one `docker-registry` (distribution 2.8) on a free
//! 127.0.0.1 port with its storage under the work directory, stopped by PID when its guard is
//! dropped (also when the bench fails); the blobs of image A for the `curl` floors; fresh
//! repository names per run; and the checks of ocikit's `--json` reports.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::measure;

/// The ids of the rows that need the registry.
pub const ROWS: [&str; 3] = ["pull", "push", "push-again"];

/// The repository image A is pushed to once before the rows (tag [`TAG`]).
pub const REPO: &str = "bench/a";
/// The tag of every image the bench pushes.
pub const TAG: &str = "1";

/// A running `docker-registry`; dropping it kills the process (by its PID) and removes its
/// storage.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The storage root (every blob pushed lives here once).
    pub data: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = measure::remove(&self.data);
    }
}

impl Registry {
    /// Its process id (the serve rows read its peak RSS).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Start one under `dir` (config, storage; the previous storage is removed), its stderr
    /// to `log`. Waits until it accepts connections.
    pub fn start(dir: &Path, log: &Path) -> anyhow::Result<Registry> {
        let data = dir.join("data");
        measure::remove(&data)?;
        fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot find a free port on 127.0.0.1")?
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.join("config.yml");
        fs::write(&config, config_yaml(&data, &host))
            .with_context(|| format!("cannot write `{}`", config.display()))?;
        let stderr =
            fs::File::create(log).with_context(|| format!("cannot create `{}`", log.display()))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("cannot start docker-registry")?;
        let mut reg = Registry { child, host, data };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&reg.host).is_err() {
            if let Ok(Some(status)) = reg.child.try_wait() {
                bail!(
                    "docker-registry exited ({status}) before listening on {}; see `{}`",
                    reg.host,
                    log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "docker-registry did not listen on {} within 20 s; see `{}`",
                    reg.host,
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(reg)
    }
}

/// The registry's config: plain HTTP on `host`, storage at `data`, errors only, no access log.
pub fn config_yaml(data: &Path, host: &str) -> String {
    format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n\
         http:\n  addr: {host}\n",
        data.display()
    )
}

/// A fresh repository for the run whose destination is `out`
/// (`<runs>/<row>/<tool>/run<N>/out`): `bench/<row>-<tool>-run<N>`, so every run of every
/// tool pushes into a repository that has none of the blobs.
pub fn fresh_repo(out: &Path) -> String {
    let parts: Vec<String> = out
        .parent()
        .into_iter()
        .flat_map(|p| p.components().rev().take(3))
        .map(|c| c.as_os_str().to_string_lossy().to_ascii_lowercase())
        .collect();
    let name: Vec<String> = parts
        .iter()
        .rev()
        .map(|p| {
            p.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect::<String>()
        })
        .filter(|p| !p.is_empty())
        .collect();
    if name.len() < 3 {
        // Not a run's directory (`--list` shows `OUT`): a placeholder no registry accepts.
        "bench/ROW-TOOL-runN".into()
    } else {
        format!("bench/{}", name.join("-"))
    }
}

/// The blobs image `REF` of the layout needs (config and layers): digest, path, size.
pub fn image_blobs(layout: &Path) -> anyhow::Result<Vec<(String, PathBuf, u64)>> {
    let read = |p: &Path| -> anyhow::Result<serde_json::Value> {
        let bytes = fs::read(p).with_context(|| format!("cannot read `{}`", p.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("`{}` is not JSON", p.display()))
    };
    let blob_path = |digest: &str| -> anyhow::Result<PathBuf> {
        let (alg, hex) = digest
            .split_once(':')
            .with_context(|| format!("bad digest `{digest}` in `{}`", layout.display()))?;
        Ok(layout.join("blobs").join(alg).join(hex))
    };
    let index = read(&layout.join("index.json"))?;
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .with_context(|| format!("no manifest in `{}/index.json`", layout.display()))?;
    let manifest = read(&blob_path(manifest)?)?;
    let mut out = Vec::new();
    let descs = std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().into_iter().flatten());
    for d in descs {
        let digest = d["digest"]
            .as_str()
            .with_context(|| format!("a descriptor without digest in `{}`", layout.display()))?;
        let path = blob_path(digest)?;
        let size = fs::metadata(&path)
            .with_context(|| format!("cannot stat `{}`", path.display()))?
            .len();
        out.push((digest.to_string(), path, size));
    }
    Ok(out)
}

/// One parallel `curl` GET of a blob: `sh -c GET sh URL REPO DIGEST`.
pub const CURL_GET: &str = "curl -sSf -o /dev/null \"$1/v2/$2/blobs/$3\"";

/// One `curl` upload of a blob: POST for the upload location, then a monolithic
/// `PUT <location>&digest=` with the blob as the body: `sh -c PUT sh URL REPO DIGEST FILE`.
pub const CURL_PUT: &str = "loc=$(curl -sSf -X POST -o /dev/null -D - \"$1/v2/$2/blobs/uploads/\" \
     | tr -d '\\r' | sed -n 's/^[Ll]ocation: *//p') && [ -n \"$loc\" ] \
     && case $loc in /*) loc=$1$loc ;; esac \
     && case $loc in *'?'*) loc=\"$loc&\" ;; *) loc=\"$loc?\" ;; esac \
     && curl -sSf -X PUT -o /dev/null -H 'Content-Type: application/octet-stream' \
     --data-binary \"@$4\" \"${loc}digest=$3\"";

/// skopeo records where it pushed blobs (its blob-info cache, under
/// `/var/lib/containers/cache` for root) and mounts them from there into any other
/// repository of the same registry, so a push into a fresh repository would upload nothing.
/// This runs skopeo with an empty cache on a private tmpfs (a mount namespace of its own):
/// `unshare -m sh -c SKOPEO_NO_CACHE sh ARGS...`.
pub const SKOPEO_NO_CACHE: &str = "d=/var/lib/containers/cache; mkdir -p \"$d\" \
     && mount -t tmpfs tmpfs \"$d\" && exec skopeo \"$@\"";

/// Whether [`SKOPEO_NO_CACHE`] can run here (root, mount namespaces allowed).
pub fn private_cache_works() -> bool {
    Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs tmpfs /tmp", "sh"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `blobs.<key>` of an ocikit `--json` report.
fn blob_count(report: &str, key: &str) -> Result<u64, String> {
    let v: serde_json::Value = serde_json::from_str(report.trim())
        .map_err(|e| format!("the --json report is not JSON ({e})"))?;
    v["blobs"][key]
        .as_u64()
        .ok_or_else(|| format!("the --json report has no blobs.{key}"))
}

/// A push into a fresh repository uploads every blob: none present, none mounted.
pub fn check_push_fresh(report: &str) -> Result<(), String> {
    let present = blob_count(report, "present")?;
    let mounted = blob_count(report, "mounted")?;
    let sent = blob_count(report, "sent")?;
    if present != 0 || mounted != 0 || sent == 0 {
        return Err(format!(
            "blobs.sent {sent}, present {present}, mounted {mounted}: not a push of every blob"
        ));
    }
    Ok(())
}

/// A second push of the same image sends no blob.
pub fn check_push_again(report: &str) -> Result<(), String> {
    match blob_count(report, "sent")? {
        0 => Ok(()),
        n => Err(format!("blobs.sent {n}, not 0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_repo_names() {
        assert_eq!(
            fresh_repo(Path::new("/w/runs/push/ocikit/run2/out")),
            "bench/push-ocikit-run2"
        );
        assert_eq!(
            fresh_repo(Path::new("/w/runs/push/Skopeo/run10/out")),
            "bench/push-skopeo-run10"
        );
        assert_eq!(fresh_repo(Path::new("OUT")), "bench/ROW-TOOL-runN");
        assert_eq!(fresh_repo(Path::new("run1/out")), "bench/ROW-TOOL-runN");
    }

    #[test]
    fn config() {
        assert_eq!(
            config_yaml(Path::new("/w/registry/data"), "127.0.0.1:5000"),
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: /w/registry/data\n\
             http:\n  addr: 127.0.0.1:5000\n"
        );
    }

    #[test]
    fn push_reports() {
        let report = |sent, mounted, present| {
            format!(
                "{{\"blobs\": {{\"sent\": {sent}, \"mounted\": {mounted}, \"present\": {present}, \"absent\": 0}}}}\n"
            )
        };
        assert_eq!(check_push_again(&report(0, 0, 4)), Ok(()));
        assert_eq!(
            check_push_again(&report(1, 0, 3)),
            Err("blobs.sent 1, not 0".to_string())
        );
        assert_eq!(
            check_push_again("pushed"),
            Err("the --json report is not JSON (expected value at line 1 column 1)".to_string())
        );
        assert_eq!(
            check_push_again("{\"blobs\": {}}"),
            Err("the --json report has no blobs.sent".to_string())
        );
        assert_eq!(check_push_fresh(&report(4, 0, 0)), Ok(()));
        assert_eq!(
            check_push_fresh(&report(3, 1, 0)),
            Err("blobs.sent 3, present 0, mounted 1: not a push of every blob".to_string())
        );
        assert_eq!(
            check_push_fresh(&report(0, 0, 4)),
            Err("blobs.sent 0, present 4, mounted 0: not a push of every blob".to_string())
        );
    }

    #[test]
    fn blobs_of_an_image() {
        use sha2::{Digest, Sha256};
        let tmp = tempfile::tempdir().expect("tmp");
        let l = tmp.path();
        fs::create_dir_all(l.join("blobs/sha256")).expect("mkdir");
        let put = |bytes: &[u8]| {
            let hex = format!("{:x}", Sha256::digest(bytes));
            fs::write(l.join("blobs/sha256").join(&hex), bytes).expect("write");
            format!("sha256:{hex}")
        };
        let config = put(b"{}");
        let layer = put(b"layer bytes");
        let manifest = put(
            format!(
                "{{\"config\":{{\"digest\":\"{config}\",\"size\":2}},\"layers\":[{{\"digest\":\"{layer}\",\"size\":11}}]}}"
            )
            .as_bytes(),
        );
        fs::write(
            l.join("index.json"),
            format!("{{\"manifests\":[{{\"digest\":\"{manifest}\"}}]}}"),
        )
        .expect("index");
        let blobs = image_blobs(l).expect("blobs");
        assert_eq!(
            blobs
                .iter()
                .map(|(d, _, s)| (d.as_str(), *s))
                .collect::<Vec<_>>(),
            vec![(config.as_str(), 2), (layer.as_str(), 11)]
        );
    }
}
