//! The serve rows (issue 11): `ocikit serve` against the bench's `docker-registry`
//! (distribution 2.8), both serving image A (the registry has it as `bench/a:1`, pushed by
//! skopeo before the registry rows; `serve` serves image A's gzip layout as `--repo
//! bench/a=LAYOUT`, where its ref `a:latest` is tag `latest` of repository `a`).
//!
//! The rows are measured against the same clients in the same run, serve then distribution,
//! `--runs` times each, and shown in a table of their own: their units are not all times.
//!
//! - `serve-manifests`: `wrk` (2 threads, 32 connections, 3 s) GETs the manifest by tag with
//!   an OCI `Accept` header; the cell is `wrk`'s requests per second (a rate, higher is better;
//!   any non-2xx answer or socket error fails the run).
//! - `serve-blobs`: the wall time of three parallel `curl` GETs of image A's layers.
//! - `serve-skopeo`: the wall time of `skopeo copy docker://... oci:OUT`.
//! - `serve-rss`: a fresh `ocikit serve` under 64 `wrk` connections (5 s) that alternate the
//!   manifest and the largest layer; the cell is the server's own `VmHWM` (peak resident set,
//!   from `/proc/PID/status`) afterwards, not wrk's. The registry's `VmHWM` after the same load
//!   is shown beside it for context (it is the peak of its whole life, pushes included).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::measure::{self, Cmd, LimitJob};
use super::{fmt, registry};

/// The ids of the serve rows.
pub const ROWS: [&str; 4] = [
    "serve-manifests",
    "serve-blobs",
    "serve-skopeo",
    "serve-rss",
];

/// The repository and tag of image A in `serve` (its layout's ref `a:latest`).
const SERVE_IMAGE: &str = "a:latest";
/// The manifest media type asked for (distribution answers an OCI manifest by tag only to a
/// client that accepts it).
const ACCEPT: &str = "Accept: application/vnd.oci.image.manifest.v1+json";
/// `wrk` load of the rate row: connections, seconds.
const RATE_LOAD: (u32, u32) = (32, 3);
/// `wrk` load of the memory row: connections, seconds.
const RSS_LOAD: (u32, u32) = (64, 5);
/// Targets: serve's manifest rate over distribution's, at least; serve's peak RSS, at most.
const MIN_RATE_RATIO: f64 = 10.0;
const MAX_RSS_MIB: u64 = 64;

/// A running `ocikit serve -q --listen 127.0.0.1:0 --repo bench/a=LAYOUT`, killed by its PID
/// when dropped.
#[derive(Debug)]
struct Served {
    child: Child,
    host: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Start it, its stderr to `log`, and wait for its `listening on ADDR` line.
    fn start(ocikit: &Path, layout: &Path, log: &Path) -> anyhow::Result<Served> {
        let stderr =
            fs::File::create(log).with_context(|| format!("cannot create `{}`", log.display()))?;
        let child = Command::new(ocikit)
            .args(["serve", "-q", "--listen", "127.0.0.1:0", "--repo"])
            .arg(format!("{}={}", registry::REPO, layout.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("cannot start ocikit serve")?;
        let mut s = Served {
            child,
            host: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = fs::read_to_string(log).unwrap_or_default();
            if let Some(addr) = text.lines().find_map(|l| l.strip_prefix("listening on ")) {
                s.host = addr.trim().to_string();
                return Ok(s);
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                bail!(
                    "ocikit serve exited ({status}) before listening; see `{}`",
                    log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "ocikit serve did not listen within 20 s; see `{}`",
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What the serve rows need from the bench.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub ocikit: &'a Path,
    /// Image A's gzip layout (the one pushed to the registry).
    pub layout: &'a Path,
    /// The registry: `127.0.0.1:PORT` and its PID.
    pub registry_host: &'a str,
    pub registry_pid: u32,
    pub runs: u32,
    /// Logs go here (`serve-*`).
    pub logs: &'a Path,
    /// Scratch space for skopeo's outputs.
    pub scratch: &'a Path,
}

/// The unit of a row's cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Requests per second: higher is better.
    Rate,
    /// Seconds: lower is better.
    Seconds,
    /// KiB of peak RSS.
    Kib,
}

/// One measured serve row.
#[derive(Debug)]
pub struct Measured {
    id: &'static str,
    title: String,
    unit: Unit,
    serve: Result<Vec<f64>, String>,
    dist: Result<Vec<f64>, String>,
}

impl Measured {
    fn median(side: &Result<Vec<f64>, String>) -> Option<f64> {
        side.as_ref().ok().and_then(|v| fmt::median(v))
    }

    fn cell(&self, side: &Result<Vec<f64>, String>) -> String {
        match side {
            Err(why) => format!("failed ({why})"),
            Ok(v) => match (fmt::median(v), self.unit) {
                (None, _) => "—".into(),
                (Some(x), Unit::Rate) => format!("{} req/s", fmt::count(x.round() as u64)),
                (Some(x), Unit::Seconds) => fmt::seconds(x),
                (Some(x), Unit::Kib) => fmt::rss(x as u64),
            },
        }
    }

    /// The ratio cell: how many times better serve is (rates: serve / distribution; times:
    /// distribution / serve).
    fn ratio(&self) -> Option<f64> {
        let (s, d) = (Self::median(&self.serve)?, Self::median(&self.dist)?);
        match self.unit {
            Unit::Rate if d > 0.0 => Some(s / d),
            Unit::Seconds | Unit::Kib if s > 0.0 => Some(d / s),
            _ => None,
        }
    }

    /// The target and whether it is met (`None`: serve not measured).
    fn judge(&self) -> (String, Option<Result<(), String>>) {
        let s = Self::median(&self.serve);
        match self.id {
            "serve-manifests" => (
                format!("≥{MIN_RATE_RATIO}x distribution's rate"),
                s.map(|_| match self.ratio() {
                    Some(r) if r >= MIN_RATE_RATIO => Ok(()),
                    Some(r) => Err(format!("{r:.1}x")),
                    None => Err("no distribution rate".into()),
                }),
            ),
            "serve-rss" => (
                format!("serve ≤{MAX_RSS_MIB} MiB"),
                s.map(|k| {
                    if k <= (MAX_RSS_MIB * 1024) as f64 {
                        Ok(())
                    } else {
                        Err(fmt::rss(k as u64))
                    }
                }),
            ),
            _ => (
                "no slower than distribution".into(),
                s.map(|_| match self.ratio() {
                    Some(r) if r >= 1.0 => Ok(()),
                    Some(r) => Err(format!("{r:.2}x")),
                    None => Err("no distribution time".into()),
                }),
            ),
        }
    }
}

/// Whether `id` is one of the rows `only` selects (all when `only` is empty).
pub fn selected(only: &[String], selects: impl Fn(&str, &str) -> bool) -> Vec<&'static str> {
    ROWS.iter()
        .copied()
        .filter(|id| only.is_empty() || only.iter().any(|o| selects(o, id)))
        .collect()
}

/// The command lines of the rows, for `--list`.
pub fn list(ocikit: &Path, layout: &Path) {
    let serve = format!(
        "{} serve -q --listen 127.0.0.1:PORT --repo {}={}",
        ocikit.display(),
        registry::REPO,
        layout.display()
    );
    let (repo, tag) = SERVE_IMAGE
        .split_once(':')
        .unwrap_or((SERVE_IMAGE, "latest"));
    let lines = [
        (
            "serve-manifests",
            "manifest GET by tag, wrk 32 connections (rate)",
            format!(
                "wrk -t2 -c{} -d{}s -H '{ACCEPT}' http://HOST/v2/{repo}/manifests/{tag} (and /v2/{}/manifests/{})",
                RATE_LOAD.0,
                RATE_LOAD.1,
                registry::REPO,
                registry::TAG
            ),
        ),
        (
            "serve-blobs",
            "image A's layers, three parallel curl GETs",
            format!("sh -c '{}' sh http://HOST {} DIGEST  (x3)", registry::CURL_GET, registry::REPO),
        ),
        (
            "serve-skopeo",
            "skopeo copy docker:// -> oci:",
            format!("skopeo copy -q --src-tls-verify=false docker://HOST/{repo}:{tag} oci:OUT:{SERVE_IMAGE}"),
        ),
        (
            "serve-rss",
            "server peak RSS under 64 wrk connections",
            format!(
                "wrk -t2 -c{} -d{}s -s SCRIPT (manifest and largest layer alternately); VmHWM of the server",
                RSS_LOAD.0, RSS_LOAD.1
            ),
        ),
    ];
    for (id, title, client) in lines {
        println!("{id:<18} {title}");
        println!("{:<18}   serve: {serve}", "");
        println!("{:<18}   client: {client}", "");
    }
}

/// Measure the `ids` rows.
pub fn run(ctx: &Ctx<'_>, ids: &[&'static str]) -> anyhow::Result<Vec<Measured>> {
    if which("wrk").is_none()
        && ids
            .iter()
            .any(|i| *i != "serve-blobs" && *i != "serve-skopeo")
    {
        bail!("`wrk` is needed on PATH for the serve rows (Debian: wrk)");
    }
    let has_serve = Command::new(ctx.ocikit)
        .args(["serve", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let layers: Vec<(String, u64)> = registry::image_blobs(ctx.layout)?
        .into_iter()
        .skip(1)
        .map(|(d, _, size)| (d, size))
        .collect();
    let largest = layers
        .iter()
        .max_by_key(|(_, s)| *s)
        .map(|(d, _)| d.clone())
        .context("image A has no layers")?;
    let (repo, tag) = SERVE_IMAGE
        .split_once(':')
        .unwrap_or((SERVE_IMAGE, "latest"));
    let dist_manifest = format!(
        "http://{}/v2/{}/manifests/{}",
        ctx.registry_host,
        registry::REPO,
        registry::TAG
    );
    let mut out = Vec::new();
    for &id in ids {
        eprintln!("bench: {id} ...");
        let server = if has_serve {
            Some(Served::start(
                ctx.ocikit,
                ctx.layout,
                &ctx.logs.join(format!("{id}_serve.log")),
            )?)
        } else {
            None
        };
        let serve_manifest = server
            .as_ref()
            .map(|s| format!("http://{}/v2/{repo}/manifests/{tag}", s.host));
        let mut serve: Result<Vec<f64>, String> = if has_serve {
            Ok(Vec::new())
        } else {
            Err("verb missing".into())
        };
        let mut dist: Result<Vec<f64>, String> = Ok(Vec::new());
        let (title, unit) = match id {
            "serve-manifests" => (
                format!(
                    "manifest GET by tag, wrk {} connections, {} s",
                    RATE_LOAD.0, RATE_LOAD.1
                ),
                Unit::Rate,
            ),
            "serve-blobs" => (
                format!(
                    "image A's {} layers, three parallel curl GETs",
                    layers.len()
                ),
                Unit::Seconds,
            ),
            "serve-skopeo" => ("skopeo copy docker:// -> oci:".to_string(), Unit::Seconds),
            _ => (
                format!(
                    "server peak RSS, wrk {} connections, {} s, manifest and largest layer",
                    RSS_LOAD.0, RSS_LOAD.1
                ),
                Unit::Kib,
            ),
        };
        // The RSS row is one load per server: a peak, not a median of several.
        let runs = if unit == Unit::Kib { 1 } else { ctx.runs };
        for run in 1..=runs {
            for (side, host, manifest, blob_repo, image, values) in [
                (
                    "serve",
                    server.as_ref().map(|s| s.host.clone()),
                    serve_manifest.clone(),
                    registry::REPO,
                    format!("{repo}:{tag}"),
                    &mut serve,
                ),
                (
                    "distribution",
                    Some(ctx.registry_host.to_string()),
                    Some(dist_manifest.clone()),
                    registry::REPO,
                    format!("{}:{}", registry::REPO, registry::TAG),
                    &mut dist,
                ),
            ] {
                let (Ok(vals), Some(host), Some(manifest)) = (values.as_mut(), host, manifest)
                else {
                    continue;
                };
                let stem = ctx.logs.join(format!("{id}_{side}_run{run}"));
                let got: Result<f64, String> = match id {
                    "serve-manifests" => {
                        wrk(&manifest, RATE_LOAD, None, &stem).map_err(|e| format!("{e:#}"))
                    }
                    "serve-blobs" => {
                        let jobs: Vec<LimitJob> = layers
                            .iter()
                            .map(|(d, size)| LimitJob {
                                script: registry::CURL_GET,
                                args: vec![format!("http://{host}"), blob_repo.into(), d.clone()],
                                size: *size,
                            })
                            .collect();
                        measure::limit_run(&jobs, 3).map_err(|e| format!("{e:#}"))
                    }
                    "serve-skopeo" => skopeo(&host, &image, ctx.scratch, &stem),
                    _ => {
                        let script = stem.with_extension("lua");
                        let blob = format!("/v2/{blob_repo}/blobs/{largest}");
                        let path = manifest
                            .split_once(&host)
                            .map(|(_, p)| p.to_string())
                            .unwrap_or_default();
                        let pid = match side {
                            "serve" => server.as_ref().map(|s| s.child.id()),
                            _ => Some(ctx.registry_pid),
                        };
                        fs::write(&script, lua_alternate(&path, &blob))
                            .map_err(|e| e.to_string())
                            .and_then(|()| {
                                wrk(&manifest, RSS_LOAD, Some(&script), &stem)
                                    .map_err(|e| format!("{e:#}"))
                            })
                            .and_then(|_| {
                                pid.and_then(vm_hwm_kib)
                                    .map(|k| k as f64)
                                    .ok_or_else(|| "no VmHWM".to_string())
                            })
                    }
                };
                match got {
                    Ok(v) => vals.push(v),
                    Err(why) => {
                        eprintln!("bench: {id} {side} failed: {why}");
                        *values = Err(why);
                    }
                }
            }
        }
        drop(server);
        out.push(Measured {
            id,
            title,
            unit,
            serve,
            dist,
        });
    }
    let _ = measure::remove(ctx.scratch);
    Ok(out)
}

/// A `wrk` script whose requests alternate between two paths (the `-H` headers are kept).
fn lua_alternate(a: &str, b: &str) -> String {
    format!(
        "local paths = {{\"{a}\", \"{b}\"}}\nlocal i = 0\n\
         request = function()\n  i = i + 1\n  return wrk.format(nil, paths[(i % 2) + 1])\nend\n"
    )
}

/// Run `wrk` (2 threads, `conns` connections, `secs` seconds, with the OCI `Accept` header) and
/// return its requests per second; a non-2xx answer or a socket error is an error.
fn wrk(
    url: &str,
    (conns, secs): (u32, u32),
    script: Option<&Path>,
    stem: &Path,
) -> anyhow::Result<f64> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t2".to_string(),
        format!("-c{conns}"),
        format!("-d{secs}s"),
        "--timeout".into(),
        "10s".into(),
        "-H".into(),
        ACCEPT.into(),
    ]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    cmd.arg(url);
    let text = measure::run_ok(&mut cmd)?;
    fs::write(stem.with_extension("out"), &text)?;
    if let Some(l) = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        bail!("wrk: {}", l.trim());
    }
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("no Requests/sec in wrk's output (`{}`)", stem.display()))
}

/// Time `skopeo copy docker://HOST/IMAGE oci:OUT:a:latest` into a fresh directory.
fn skopeo(host: &str, image: &str, scratch: &Path, stem: &Path) -> Result<f64, String> {
    let out = scratch.join("out");
    measure::remove(scratch).map_err(|e| format!("{e:#}"))?;
    fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let cmd = Cmd::new("skopeo", &["copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://{host}/{image}"))
        .arg(format!("oci:{}:{SERVE_IMAGE}", out.display()));
    let _ = fs::write(stem.with_extension("cmd"), cmd.display() + "\n");
    measure::sync();
    let sample = measure::timed_run(&cmd, stem, None).map_err(|e| format!("{e:#}"))?;
    match sample.failure {
        Some(f) => Err(f),
        None => Ok(sample.seconds),
    }
}

/// `VmHWM` of process `pid`, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// The serve section of the report.
pub fn render(rows: &[Measured]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n### Serving (issue 11): `ocikit serve` against distribution 2.8, same image, same clients\n"
    );
    let _ = writeln!(
        s,
        "| operation | serve | distribution | serve vs distribution | target | met? |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for m in rows {
        let (target, met) = m.judge();
        let met = match met {
            None => "—".to_string(),
            Some(Ok(())) => "yes".into(),
            Some(Err(why)) => format!("no: {why}"),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {target} | {met} |",
            m.title,
            m.cell(&m.serve),
            m.cell(&m.dist),
            m.ratio().map_or("—".into(), |r| format!("{r:.2}x")),
        );
    }
    let _ = writeln!(
        s,
        "\nserve vs distribution: how many times better serve is (a rate: serve's over \
         distribution's; a time or a peak RSS: distribution's over serve's). The manifest row \
         is `wrk`'s requests per second (median of the runs; a run with a non-2xx answer or a \
         socket error fails), not a time. The blob and skopeo rows are wall times (medians). \
         The RSS row is `VmHWM` of the server process itself (a fresh `ocikit serve`; for \
         distribution, its peak over its whole life in this run), read after one load, not \
         the client's. Both servers are on loopback with the clients on the same cores. \
         Logs: `logs/serve-*`."
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &'static str, unit: Unit, serve: Vec<f64>, dist: Vec<f64>) -> Measured {
        Measured {
            id,
            title: id.into(),
            unit,
            serve: Ok(serve),
            dist: Ok(dist),
        }
    }

    #[test]
    fn judged_by_kind() {
        let r = m("serve-manifests", Unit::Rate, vec![12_000.0], vec![1_000.0]);
        assert_eq!(r.ratio(), Some(12.0));
        assert_eq!(r.judge().1, Some(Ok(())));
        assert_eq!(r.cell(&r.serve), "12,000 req/s");
        let r = m("serve-manifests", Unit::Rate, vec![9_000.0], vec![1_000.0]);
        assert_eq!(r.judge().1, Some(Err("9.0x".into())));
        let r = m("serve-blobs", Unit::Seconds, vec![0.2], vec![0.3]);
        assert_eq!(r.judge().1, Some(Ok(())));
        let r = m("serve-skopeo", Unit::Seconds, vec![0.4], vec![0.3]);
        assert_eq!(r.judge().1, Some(Err("0.75x".into())));
        let r = m("serve-rss", Unit::Kib, vec![10_000.0], vec![40_000.0]);
        assert_eq!(r.judge().1, Some(Ok(())));
        let r = m("serve-rss", Unit::Kib, vec![70_000.0], vec![40_000.0]);
        assert!(matches!(r.judge().1, Some(Err(_))));
        let mut r = m("serve-blobs", Unit::Seconds, vec![], vec![0.3]);
        r.serve = Err("verb missing".into());
        assert_eq!(r.judge().1, None);
        assert_eq!(r.cell(&r.serve), "failed (verb missing)");
    }

    #[test]
    fn lua_alternates() {
        assert_eq!(
            lua_alternate("/v2/a/manifests/latest", "/v2/b/blobs/sha256:00"),
            "local paths = {\"/v2/a/manifests/latest\", \"/v2/b/blobs/sha256:00\"}\nlocal i = 0\n\
             request = function()\n  i = i + 1\n  return wrk.format(nil, paths[(i % 2) + 1])\nend\n"
        );
    }
}
