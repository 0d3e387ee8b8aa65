//! `cargo xtask bench`: ocikit against the peer tools (skopeo, umoci, oci-image-tool) and
//! against the machine's limit, on generated inputs (see [`inputs`]).
//!
//! Every operation is one [`Row`] in [`rows`]: the ocikit command, the peer command, how each
//! run's destination is prepared, what is read to warm the page cache, the limit job, and the
//! targets from issue 4. A row whose ocikit verb does not exist in the binary yet (checked with
//! `ocikit VERB --help`) is reported as "n/a (verb missing)" and its peer and limit are still
//! measured; a command that fails is reported as failed, with its log, and the run goes on.
//!
//! Each row: warm-up read of its inputs (untimed), then `--runs` rounds of ocikit then peer,
//! each on a fresh destination, after a `sync` so earlier writes are not paid for later. Wall
//! time is taken from spawn to exit; peak RSS is GNU time's `%M` (`ru_maxrss` from `wait4`).
//! The table shows medians of the wall times and the largest peak RSS seen.
//!
//! The limit column is what the machine needs for the bytes the operation must at least hash,
//! with every core busy and one blob per core at a time (a blob's sha256 cannot be split):
//! `openssl dgst -sha256` per blob (fsck, copy), per docker-archive member read through `tar`
//! (imports), or after `gzip -dc` for gzip layers (export, recompress). Compression is not
//! included, so for compressing rows it is a floor, not a reachable time.
//!
//! The disk is probed before and after the rows (256 MiB written, then fsync, in the work
//! directory): output size over that rate is the least time any tool that writes durably
//! needs, shown beside the output sizes.
//!
//! Bundle rows (issue 6): `ocikit bundle` against `tar -c` of the layout, and loading the
//! bundle (`ocikit import BUNDLE DIR`) against `tar -x`; the bundle is made by the ocikit under
//! test before the rows run. The load row also samples disk use every 5 ms (a walk of the
//! destination and of a private `TMPDIR` given to the command, see
//! [`measure::DiskWatch`]) and reports the peak extra disk, peak minus final use, which must
//! stay within the largest blob.
//!
//! Registry rows (issue 10): when one is selected and `docker-registry` (distribution 2.8) is
//! installed, the bench starts one on a free 127.0.0.1 port with its storage under the work
//! directory ([`registry::Registry`], stopped by PID when dropped, on error too), pushes image
//! A's gzip layout to `bench/a:1` with skopeo, and times `pull` (against `skopeo copy
//! docker:// oci:`), `push` into a fresh repository per run (named from the run's directory,
//! so every run uploads every blob; skopeo runs with an empty blob-info cache so that it does
//! not mount blobs from repositories it pushed to before) and `push-again` into `bench/a`
//! (its `--json` report must say no blob was sent). Their limit is the registry's floor:
//! three parallel `curl` GETs or uploads of the same blobs. Without `docker-registry` the
//! rows are skipped with a notice.
//! Build rows (issue 12): `ocikit unpack` against `umoci raw unpack` (RSS within the 64 MiB
//! every row must keep), and `ocikit append` of a 50 MB directory against `umoci repack` of a
//! bundle with the same directory in it.
//!
//! Serve rows (issue 11, [`serve`]): `ocikit serve` of image A's gzip layout against that
//! registry serving the same image, with the same clients: manifest GETs by tag (`wrk`'s
//! requests per second), three parallel `curl` GETs of the layers, `skopeo copy`, and the
//! server's own peak RSS under 64 `wrk` connections. Their units are not all times, so they
//! have a table of their own.
//!
//! Output: the table on stdout and in `<work>/results.md`, every sample in
//! `<work>/samples.tsv`, each command's stdout/stderr under `<work>/logs/`.
//!
//! To add an operation, push one more [`Row`] in [`rows`] (and a target in [`Target`] if it
//! needs a new kind); `--list` shows the exact command lines. When a verb's flags change, the
//! row's ocikit command is the one place to edit. Inputs change in [`inputs`]: bump
//! `INPUTS_VERSION` there so cached inputs are regenerated. Try changes with `--size-scale
//! 0.02 --runs 1`, which takes seconds; results of scaled-down runs say they are not results.

mod fmt;
mod inputs;
mod measure;
mod registry;
mod serve;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::Parser;

use inputs::{Inputs, ADD_PREFIX, A_NAME, REF, UMOCI_TAG};
use measure::{Cmd, LimitJob, Sample};

/// Benchmark ocikit against skopeo, umoci and oci-image-tool on generated images.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask bench")]
pub struct Args {
    /// Timed runs of each tool per operation (alternating ocikit and peer).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Scale the generated images: a factor (1 = image A of 750 MB; 0.02 = 15 MB, for trying
    /// the harness), or the size image A should have (`15M`).
    #[arg(long, default_value_t = 1.0, value_parser = parse_scale)]
    pub size_scale: f64,
    /// Also benchmark imports of image B (2 GB, one 1.2 GB layer).
    #[arg(long)]
    pub large: bool,
    /// Skip the scale rows (ls, tag, inventory and gc on layouts of 1,000, 10,000 and 100,000
    /// refs).
    #[arg(long)]
    pub no_scale: bool,
    /// Run only this row, or the rows whose id starts with `ID-` (repeatable); see `--list`.
    #[arg(long, value_name = "ID")]
    pub only: Vec<String>,
    /// List the rows and exit.
    #[arg(long)]
    pub list: bool,
    /// Where inputs are cached and results written [default: target/bench].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Use this ocikit binary instead of building target/release/ocikit.
    #[arg(long, value_name = "PATH")]
    pub ocikit: Option<PathBuf>,
}

fn parse_scale(s: &str) -> Result<f64, String> {
    fmt::parse_scale(s, inputs::A_FULL_BYTES)
}

/// The refs of the scale layouts; growth between them shows whether the verbs are linear.
const SCALE_REFS: [u64; 3] = [1_000, 10_000, 100_000];
/// The scale operations, in the order of their rows.
const SCALE_OPS: [&str; 4] = ["ls", "tag", "inventory", "gc"];
/// Peak RSS target for every operation.
const RSS_TARGET_MIB: u64 = 64;

/// How a run's destination is made before the (untimed) start.
#[derive(Debug, Clone)]
enum Prep {
    /// The destination is an empty directory's `out`, which does not exist yet.
    Fresh,
    /// The destination is a fresh copy of this layout (blobs hard-linked).
    CopyOf(PathBuf),
    /// The command only reads this path; nothing is prepared.
    ReadOnly(PathBuf),
}

/// One side of a row: the command, given the run's destination.
struct Job {
    prep: Prep,
    cmd: Box<dyn Fn(&Path) -> Cmd>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("prep", &self.prep).finish()
    }
}

/// The limit of a row, as jobs for [`measure::limit_run`].
#[derive(Debug, Clone)]
enum Limit {
    /// sha256 of every file under the path, one file per job.
    Hash(PathBuf),
    /// sha256 of every member of the archive, read through tar.
    ArchiveHash(PathBuf),
    /// sha256 of every blob of the layout, gzip blobs after `gzip -dc`.
    InflateHash(PathBuf),
    /// The registry's floor for a pull: `curl` GETs of the blobs of the layout's image from
    /// `repo` at `url`, [`REGISTRY_FLOOR_PARALLEL`] at a time.
    RegistryGet {
        url: String,
        repo: String,
        layout: PathBuf,
    },
    /// The registry's floor for a push: `curl` uploads (POST, then a monolithic PUT) of the
    /// blobs of the layout's image into `<repo_prefix>-run<N>`, a fresh repository each time,
    /// [`REGISTRY_FLOOR_PARALLEL`] at a time.
    RegistryPut {
        url: String,
        repo_prefix: String,
        layout: PathBuf,
    },
}

/// Parallel `curl` requests of the registry floors (issue 10 measured its targets so).
const REGISTRY_FLOOR_PARALLEL: usize = 3;

/// What a check of ocikit's stdout (its `--json` report) after a run returns.
type Check = fn(&str) -> Result<(), String>;

/// The running registry the registry rows talk to.
#[derive(Debug)]
struct RegistryCtx {
    /// `127.0.0.1:PORT`.
    host: String,
    /// Its storage, read once before the pull row.
    data: PathBuf,
    /// Whether skopeo can be run with a private, empty blob-info cache
    /// ([`registry::SKOPEO_NO_CACHE`]).
    private_cache: bool,
}

/// What a row must reach.
#[derive(Debug, Clone, Copy, Default)]
struct Target {
    /// peer time / ocikit time at least this.
    min_ratio: Option<f64>,
    /// ocikit time / limit time at most this.
    max_vs_limit: Option<f64>,
    /// ocikit output bytes / peer output bytes at most this.
    max_size_ratio: Option<f64>,
    /// ocikit time below this many seconds.
    max_seconds: Option<f64>,
    /// ocikit's peak extra disk (peak use minus final use) at most this many bytes.
    max_extra_disk: Option<u64>,
    /// ocikit's peak RSS at most this many MiB (default [`RSS_TARGET_MIB`]).
    max_rss_mib: Option<u64>,
}

/// One operation of the benchmark.
#[derive(Debug)]
struct Row {
    id: String,
    title: String,
    ocikit: Job,
    peer_name: &'static str,
    peer: Job,
    /// Read once before the runs.
    warm: Vec<PathBuf>,
    limit: Option<Limit>,
    target: Target,
    /// Record the size of the output (blobs of a layout, or the archive file).
    out_size: bool,
    /// Sample the disk use of the destination (and a private TMPDIR) while each run runs.
    disk: bool,
    /// Checked against ocikit's stdout after each successful run; an error fails the run.
    check: Option<Check>,
}

/// The table: every operation, defined once.
fn rows(inp: &Inputs, ocikit: &Path, reg: Option<&RegistryCtx>) -> Vec<Row> {
    let o = |args: &[&str]| Cmd::new(ocikit, args);
    let skopeo = |args: &[&str]| Cmd::new("skopeo", args);
    let oci_src = format!("oci:{}:{REF}", inp.a_gzip.display());
    let mut rows = Vec::new();

    let mut imports: Vec<(&str, &str, PathBuf)> = vec![("a", "image A", inp.a_tar.clone())];
    if let Some(b) = &inp.b_tar {
        imports.push(("b", "image B", b.clone()));
    }
    for (key, image, tar) in imports {
        let large = key == "b";
        let suffix = if large { "-large" } else { "" };
        for (comp, peer_flags, target) in [
            (
                "none",
                &["--dest-oci-accept-uncompressed-layers"][..],
                Target {
                    min_ratio: Some(3.0),
                    ..Target::default()
                },
            ),
            (
                "gzip",
                &[][..],
                Target {
                    min_ratio: Some(2.2),
                    max_size_ratio: Some(1.02),
                    ..Target::default()
                },
            ),
            (
                "zstd",
                &["--dest-compress-format", "zstd"][..],
                Target {
                    min_ratio: Some(2.0),
                    ..Target::default()
                },
            ),
        ] {
            let (t1, t2) = (tar.clone(), tar.clone());
            let flags: Vec<&'static str> = peer_flags.to_vec();
            rows.push(Row {
                id: format!("import-{comp}{suffix}"),
                title: format!("import docker-archive -> layout, {comp} ({image})"),
                ocikit: Job {
                    prep: Prep::Fresh,
                    cmd: Box::new({
                        let o = o(&["import"]);
                        move |out| o.clone().arg(&t1).arg(out).arg("--compress").arg(comp)
                    }),
                },
                peer_name: "skopeo",
                peer: Job {
                    prep: Prep::Fresh,
                    cmd: Box::new({
                        let s = skopeo(&["copy", "-q"]);
                        move |out| {
                            let mut c = s.clone();
                            c.args.extend(flags.iter().map(|f| f.to_string()));
                            c.arg(format!("docker-archive:{}", t2.display()))
                                .arg(format!("oci:{}:{REF}", out.display()))
                        }
                    }),
                },
                warm: vec![tar.clone()],
                limit: Some(Limit::ArchiveHash(tar.clone())),
                // The speed targets are for image A; image B checks that memory stays flat.
                target: if large { Target::default() } else { target },
                out_size: true,
                disk: false,
                check: None,
            });
        }
    }

    let a_gzip = inp.a_gzip.clone();
    rows.push(Row {
        id: "fsck".into(),
        title: "fsck (every blob hashed)".into(),
        ocikit: Job {
            prep: Prep::ReadOnly(a_gzip.clone()),
            cmd: Box::new({
                let c = o(&["fsck"]);
                move |out| c.clone().arg(out)
            }),
        },
        peer_name: "oci-image-tool",
        peer: Job {
            prep: Prep::ReadOnly(a_gzip.clone()),
            cmd: Box::new(|out| {
                Cmd::new("oci-image-tool", &["validate", "--type", "image"])
                    .arg(out)
                    .arg("--ref")
                    .arg(format!("name={REF}"))
            }),
        },
        warm: vec![a_gzip.clone()],
        limit: Some(Limit::Hash(a_gzip.join("blobs"))),
        target: Target {
            min_ratio: Some(3.0),
            max_vs_limit: Some(1.3),
            ..Target::default()
        },
        out_size: false,
        disk: false,
        check: None,
    });

    rows.push(Row {
        id: "gc".into(),
        title: "gc (unreferenced blobs of a zstd import)".into(),
        ocikit: Job {
            prep: Prep::CopyOf(inp.a_gc.clone()),
            cmd: Box::new({
                let c = o(&["gc"]);
                move |out| c.clone().arg(out)
            }),
        },
        peer_name: "umoci",
        peer: Job {
            prep: Prep::CopyOf(inp.a_gc.clone()),
            cmd: Box::new(|out| Cmd::new("umoci", &["gc", "--layout"]).arg(out)),
        },
        warm: vec![inp.a_gc.clone()],
        limit: None,
        target: Target {
            min_ratio: Some(50.0),
            ..Target::default()
        },
        out_size: false,
        disk: false,
        check: None,
    });

    rows.push(Row {
        id: "copy".into(),
        title: "copy layout -> layout".into(),
        ocikit: Job {
            prep: Prep::Fresh,
            cmd: Box::new({
                let c = o(&["copy"]);
                let src = a_gzip.clone();
                move |out| c.clone().arg(&src).arg(out)
            }),
        },
        peer_name: "skopeo",
        peer: Job {
            prep: Prep::Fresh,
            cmd: Box::new({
                let s = skopeo(&["copy", "-q"]).arg(&oci_src);
                move |out| s.clone().arg(format!("oci:{}:{REF}", out.display()))
            }),
        },
        warm: vec![a_gzip.clone()],
        limit: Some(Limit::Hash(a_gzip.join("blobs"))),
        target: Target::default(),
        out_size: false,
        disk: false,
        check: None,
    });

    rows.push(Row {
        id: "export".into(),
        title: "export layout (gzip) -> docker-archive".into(),
        ocikit: Job {
            prep: Prep::Fresh,
            cmd: Box::new({
                let c = o(&["export"]).arg(&a_gzip).arg(REF);
                move |out| {
                    c.clone()
                        .arg("-o")
                        .arg(out)
                        .arg("--format")
                        .arg("docker-archive")
                }
            }),
        },
        peer_name: "skopeo",
        peer: Job {
            prep: Prep::Fresh,
            cmd: Box::new({
                let s = skopeo(&["copy", "-q"]).arg(&oci_src);
                move |out| {
                    s.clone()
                        .arg(format!("docker-archive:{}:{A_NAME}", out.display()))
                }
            }),
        },
        warm: vec![a_gzip.clone()],
        limit: Some(Limit::InflateHash(a_gzip.clone())),
        target: Target {
            min_ratio: Some(2.0),
            ..Target::default()
        },
        out_size: true,
        disk: false,
        check: None,
    });

    rows.push(Row {
        id: "recompress".into(),
        title: "recompress layout gzip -> zstd".into(),
        ocikit: Job {
            prep: Prep::CopyOf(a_gzip.clone()),
            cmd: Box::new({
                let c = o(&["convert"]);
                move |out| {
                    c.clone()
                        .arg(out)
                        .arg("--to")
                        .arg("oci")
                        .arg("--compress")
                        .arg("zstd")
                }
            }),
        },
        peer_name: "skopeo",
        peer: Job {
            prep: Prep::Fresh,
            cmd: Box::new({
                let s = skopeo(&["copy", "-q", "--dest-compress-format", "zstd"]).arg(&oci_src);
                move |out| s.clone().arg(format!("oci:{}:{REF}", out.display()))
            }),
        },
        warm: vec![a_gzip.clone()],
        limit: Some(Limit::InflateHash(a_gzip.clone())),
        target: Target {
            min_ratio: Some(2.5),
            ..Target::default()
        },
        out_size: true,
        disk: false,
        check: None,
    });

    // Bundles (issue 6): writing one is a tar of the blobs the refs need, loading one streams
    // it into a layout; `tar` does the same copying without verifying anything, and the limit
    // is every core hashing the same bytes.
    let largest_blob = measure::files_under(&a_gzip.join("blobs"))
        .map(|v| v.iter().map(|(_, s)| *s).max().unwrap_or(0))
        .unwrap_or(0);
    rows.push(Row {
        id: "bundle".into(),
        title: "bundle layout -> bundle file".into(),
        ocikit: Job {
            prep: Prep::Fresh,
            cmd: Box::new({
                let c = o(&["bundle"]).arg(&a_gzip);
                move |out| c.clone().arg("-o").arg(out)
            }),
        },
        peer_name: "tar",
        peer: Job {
            prep: Prep::Fresh,
            cmd: Box::new({
                let src = a_gzip.clone();
                move |out| {
                    Cmd::new("tar", &["-cf"])
                        .arg(out)
                        .arg("-C")
                        .arg(&src)
                        .arg(".")
                }
            }),
        },
        warm: vec![a_gzip.clone()],
        limit: Some(Limit::Hash(a_gzip.join("blobs"))),
        // Issue 15: at the hashing limit, and close to tar (which neither verifies nor fsyncs).
        target: Target {
            min_ratio: Some(0.8),
            max_vs_limit: Some(1.3),
            ..Target::default()
        },
        out_size: true,
        disk: false,
        check: None,
    });
    let bundle = inp.a_bundle.clone();
    rows.push(Row {
        id: "bundle-load".into(),
        title: "load bundle -> layout (import)".into(),
        ocikit: Job {
            prep: Prep::Fresh,
            cmd: Box::new({
                let c = o(&["import"]).arg(&bundle);
                move |out| c.clone().arg(out)
            }),
        },
        peer_name: "tar",
        peer: Job {
            prep: Prep::Fresh,
            cmd: Box::new({
                let b = bundle.clone();
                move |out| {
                    Cmd::new(
                        "sh",
                        &["-c", "mkdir -p \"$1\" && tar -xf \"$2\" -C \"$1\"", "sh"],
                    )
                    .arg(out)
                    .arg(&b)
                }
            }),
        },
        warm: vec![bundle.clone()],
        limit: Some(Limit::ArchiveHash(bundle.clone())),
        target: Target {
            max_extra_disk: Some(largest_blob),
            max_vs_limit: Some(1.3),
            ..Target::default()
        },
        out_size: true,
        disk: true,
        check: None,
    });

    // Registry rows (issue 10): a loopback distribution 2.8 started by the bench, image A's
    // gzip layout pushed to `bench/a:1` before the rows run. The floor is the registry itself
    // serving or taking the same blobs to three parallel `curl` requests.
    if let Some(reg) = reg {
        let url = format!("http://{}", reg.host);
        let image = format!("{}/{}:{}", reg.host, registry::REPO, registry::TAG);
        let fresh = {
            let host = reg.host.clone();
            move |out: &Path| format!("{host}/{}:{}", registry::fresh_repo(out), registry::TAG)
        };
        // skopeo's pushes run with an empty blob-info cache where that is possible, so that it
        // uploads every blob too instead of mounting them from the repositories it pushed to.
        let skopeo_push = |private: bool| -> Cmd {
            if private {
                Cmd::new(
                    "unshare",
                    &["-m", "sh", "-c", registry::SKOPEO_NO_CACHE, "sh"],
                )
                .arg("copy")
            } else {
                skopeo(&["copy"])
            }
        };
        rows.push(Row {
            id: "pull".into(),
            title: "pull registry -> layout".into(),
            ocikit: Job {
                prep: Prep::Fresh,
                cmd: Box::new({
                    let c = o(&["pull"]).arg(&image);
                    move |out| c.clone().arg(out)
                }),
            },
            peer_name: "skopeo",
            peer: Job {
                prep: Prep::Fresh,
                cmd: Box::new({
                    let s = skopeo(&["copy", "-q", "--src-tls-verify=false"])
                        .arg(format!("docker://{image}"));
                    move |out| s.clone().arg(format!("oci:{}:{REF}", out.display()))
                }),
            },
            warm: vec![reg.data.clone()],
            limit: Some(Limit::RegistryGet {
                url: url.clone(),
                repo: registry::REPO.into(),
                layout: a_gzip.clone(),
            }),
            target: Target {
                min_ratio: Some(3.0),
                ..Target::default()
            },
            out_size: false,
            disk: false,
            check: None,
        });
        rows.push(Row {
            id: "push".into(),
            title: "push layout -> registry (fresh repository)".into(),
            ocikit: Job {
                prep: Prep::Fresh,
                cmd: Box::new({
                    let c = o(&["push", "--json"]).arg(&a_gzip).arg(REF);
                    let fresh = fresh.clone();
                    move |out| c.clone().arg(fresh(out))
                }),
            },
            peer_name: "skopeo",
            peer: Job {
                prep: Prep::Fresh,
                cmd: Box::new({
                    let s = skopeo_push(reg.private_cache)
                        .arg("-q")
                        .arg("--dest-tls-verify=false")
                        .arg(&oci_src);
                    let fresh = fresh.clone();
                    move |out| s.clone().arg(format!("docker://{}", fresh(out)))
                }),
            },
            warm: vec![a_gzip.clone()],
            limit: Some(Limit::RegistryPut {
                url: url.clone(),
                repo_prefix: "bench/push-floor".into(),
                layout: a_gzip.clone(),
            }),
            target: Target {
                min_ratio: Some(1.3),
                max_vs_limit: Some(1.2),
                ..Target::default()
            },
            out_size: false,
            disk: false,
            check: Some(registry::check_push_fresh),
        });
        rows.push(Row {
            id: "push-again".into(),
            title: "push again (the repository has the image)".into(),
            ocikit: Job {
                prep: Prep::Fresh,
                cmd: Box::new({
                    let c = o(&["push", "--json"]).arg(&a_gzip).arg(REF).arg(&image);
                    move |_| c.clone()
                }),
            },
            peer_name: "skopeo",
            peer: Job {
                prep: Prep::Fresh,
                cmd: Box::new({
                    let s = skopeo(&["copy", "-q", "--dest-tls-verify=false"])
                        .arg(&oci_src)
                        .arg(format!("docker://{image}"));
                    move |_| s.clone()
                }),
            },
            warm: vec![a_gzip.clone()],
            limit: None,
            target: Target {
                max_seconds: Some(0.2),
                ..Target::default()
            },
            out_size: false,
            disk: false,
            check: Some(registry::check_push_again),
        });
    }
    // Build steps (issue 12): unpack of image A against `umoci raw unpack` (both rootless, so
    // both behave alike as root or not); append of a 50 MB directory against `umoci repack` of
    // a bundle holding the same directory (the bundle is unpacked once, with the inputs).
    let a_umoci = inp.a_umoci.clone();
    let umoci_image = move |layout: &Path| format!("{}:{UMOCI_TAG}", layout.display());
    rows.push(Row {
        id: "unpack".into(),
        title: "unpack image A -> directory".into(),
        ocikit: Job {
            prep: Prep::Fresh,
            cmd: Box::new({
                let c = o(&["unpack", "--rootless"]).arg(&a_umoci).arg(UMOCI_TAG);
                move |out| c.clone().arg(out)
            }),
        },
        peer_name: "umoci",
        peer: Job {
            prep: Prep::Fresh,
            cmd: Box::new({
                let image = umoci_image(&a_umoci);
                move |out| {
                    Cmd::new("umoci", &["raw", "unpack", "--rootless", "--image", &image]).arg(out)
                }
            }),
        },
        warm: vec![a_umoci.clone()],
        limit: Some(Limit::InflateHash(a_umoci.clone())),
        target: Target {
            min_ratio: Some(1.5),
            ..Target::default()
        },
        out_size: false,
        disk: false,
        check: None,
    });
    rows.push(Row {
        id: "append".into(),
        title: "append a 50 MB directory to image A".into(),
        ocikit: Job {
            prep: Prep::CopyOf(a_umoci.clone()),
            cmd: Box::new({
                let c = o(&["append"]);
                let dir = inp.add_dir.clone();
                move |out| {
                    c.clone()
                        .arg(out)
                        .arg(UMOCI_TAG)
                        .arg("--layer")
                        .arg(&dir)
                        .arg("--prefix")
                        .arg(ADD_PREFIX)
                }
            }),
        },
        peer_name: "umoci",
        peer: Job {
            prep: Prep::CopyOf(a_umoci.clone()),
            cmd: Box::new({
                let bundle = inp.repack_bundle.clone();
                move |out| Cmd::new("umoci", &["repack", "--image", &umoci_image(out)]).arg(&bundle)
            }),
        },
        warm: vec![
            a_umoci.clone(),
            inp.add_dir.clone(),
            inp.repack_bundle.clone(),
        ],
        limit: None,
        target: Target {
            min_ratio: Some(3.0),
            ..Target::default()
        },
        out_size: false,
        disk: false,
        check: None,
    });

    for (n, layout) in &inp.scale {
        let n = *n;
        // Issue 15: at 100,000 refs and 500,000 blobs, each verb has its own time and 128 MiB;
        // the smaller layouts keep the first round's second and 64 MiB.
        let scale_target = |op: &str| {
            let big = n >= 100_000;
            Target {
                max_seconds: Some(match (big, op) {
                    (false, _) => 1.0,
                    (true, "ls") => 0.3,
                    (true, "tag") => 0.5,
                    (true, "inventory") => 2.0,
                    (true, _) => 3.0,
                }),
                max_rss_mib: big.then_some(128),
                ..Target::default()
            }
        };
        let blobs = fmt::count(5 * n + n / 10);
        let scale_row =
            |op: &'static str, title: String, ocikit: Job, peer_name: &'static str, peer: Job| {
                Row {
                    id: format!("{op}-{n}"),
                    title,
                    ocikit,
                    peer_name,
                    peer,
                    warm: vec![layout.clone()],
                    limit: None,
                    target: scale_target(op),
                    out_size: false,
                    disk: false,
                    check: None,
                }
            };
        rows.push(scale_row(
            "ls",
            format!("ls, {} refs", fmt::count(n)),
            Job {
                prep: Prep::ReadOnly(layout.clone()),
                cmd: Box::new({
                    let c = o(&["ls"]);
                    move |out| c.clone().arg(out)
                }),
            },
            "umoci",
            Job {
                prep: Prep::ReadOnly(layout.clone()),
                cmd: Box::new(|out| Cmd::new("umoci", &["ls", "--layout"]).arg(out)),
            },
        ));
        // One more ref on the first image: index.json read, changed and written durably.
        rows.push(scale_row(
            "tag",
            format!("tag, {} refs", fmt::count(n)),
            Job {
                prep: Prep::CopyOf(layout.clone()),
                cmd: Box::new({
                    let c = o(&["tag"]);
                    move |out| c.clone().arg(out).arg("img-00000").arg("bench-tag")
                }),
            },
            "umoci",
            Job {
                prep: Prep::CopyOf(layout.clone()),
                cmd: Box::new(|out| {
                    let image = format!("{}:img-00000", out.display());
                    Cmd::new("umoci", &["tag", "--image"])
                        .arg(Path::new(&image))
                        .arg("bench-tag")
                }),
            },
        ));
        // Every blob with its size, and every ref; the peer lists the blobs' sizes only.
        rows.push(scale_row(
            "inventory",
            format!("inventory, {} refs, {blobs} blobs", fmt::count(n)),
            Job {
                prep: Prep::Fresh,
                cmd: Box::new({
                    let c = o(&["inventory"]);
                    let layout = layout.clone();
                    move |out| c.clone().arg(&layout).arg("-o").arg(out)
                }),
            },
            "find | sort",
            Job {
                prep: Prep::Fresh,
                cmd: Box::new({
                    let layout = layout.clone();
                    move |out| {
                        Cmd::new(
                            "sh",
                            &[
                                "-c",
                                "find \"$1/blobs\" -type f -printf '%s %f\\n' | sort > \"$2\"",
                                "sh",
                            ],
                        )
                        .arg(&layout)
                        .arg(out)
                    }
                }),
            },
        ));
        rows.push(scale_row(
            "gc",
            format!("gc, {} refs, {blobs} blobs", fmt::count(n)),
            Job {
                prep: Prep::CopyOf(layout.clone()),
                cmd: Box::new({
                    let c = o(&["gc"]);
                    move |out| c.clone().arg(out)
                }),
            },
            "umoci",
            Job {
                prep: Prep::CopyOf(layout.clone()),
                cmd: Box::new(|out| Cmd::new("umoci", &["gc", "--layout"]).arg(out)),
            },
        ));
    }
    rows
}

/// The measurements of one side of a row.
#[derive(Debug, Default)]
struct Side {
    samples: Vec<Sample>,
    /// Size of the output of the last successful run.
    out_bytes: Option<u64>,
    /// Why the side was not measured (e.g. the verb is missing).
    skipped: Option<String>,
}

impl Side {
    fn failure(&self) -> Option<&str> {
        self.samples.iter().find_map(|s| s.failure.as_deref())
    }

    fn median(&self) -> Option<f64> {
        if self.skipped.is_some() || self.failure().is_some() {
            return None;
        }
        fmt::median(&self.samples.iter().map(|s| s.seconds).collect::<Vec<_>>())
    }

    fn peak_rss(&self) -> Option<u64> {
        self.samples.iter().filter_map(|s| s.maxrss_kib).max()
    }

    fn peak_extra_disk(&self) -> Option<u64> {
        self.samples.iter().filter_map(|s| s.extra_disk).max()
    }

    fn time_cell(&self) -> String {
        if let Some(why) = &self.skipped {
            return format!("n/a ({why})");
        }
        if let Some(f) = self.failure() {
            let code = f.split(':').next().unwrap_or(f);
            return format!("failed ({code})");
        }
        self.median().map_or("—".into(), fmt::seconds)
    }

    fn rss_cell(&self) -> String {
        if self.skipped.is_some() || self.failure().is_some() {
            return "—".into();
        }
        self.peak_rss().map_or("—".into(), fmt::rss)
    }
}

/// A measured row.
#[derive(Debug)]
struct Measured {
    ocikit: Side,
    peer: Side,
    limit: Option<f64>,
}

/// Entry point of `cargo xtask bench ARGS`.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let args = match Args::try_parse_from(
        std::iter::once("cargo xtask bench".to_string()).chain(args.iter().cloned()),
    ) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() {
                bail!("bad arguments");
            }
            return Ok(());
        }
    };
    let root = workspace_root();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let work = args
        .work_dir
        .clone()
        .unwrap_or_else(|| target_dir.join("bench"));

    let scale_refs: &[u64] = if args.no_scale { &[] } else { &SCALE_REFS };
    if args.list {
        let inp = Inputs::at(&work, args.size_scale, args.large, scale_refs);
        let ocikit = args
            .ocikit
            .clone()
            .unwrap_or_else(|| target_dir.join("release").join("ocikit"));
        let shown = |job: &Job| {
            let out = match &job.prep {
                Prep::ReadOnly(p) => p.clone(),
                Prep::Fresh => PathBuf::from("OUT"),
                Prep::CopyOf(p) => PathBuf::from(format!("OUT(copy of {})", p.display())),
            };
            (job.cmd)(&out).display()
        };
        let reg = RegistryCtx {
            host: "127.0.0.1:PORT".into(),
            data: work.join("registry").join("data"),
            private_cache: true,
        };
        for row in rows(&inp, &ocikit, Some(&reg)) {
            println!("{:<18} {}", row.id, row.title);
            println!("{:<18}   ocikit: {}", "", shown(&row.ocikit));
            println!("{:<18}   {}: {}", "", row.peer_name, shown(&row.peer));
        }
        serve::list(&ocikit, &inp.a_gzip);
        return Ok(());
    }

    measure::check_gnu_time()?;
    for tool in [
        "skopeo",
        "umoci",
        "oci-image-tool",
        "openssl",
        "tar",
        "gzip",
        "sync",
    ] {
        if which(tool).is_none() {
            bail!(
                "`{tool}` is needed on PATH (Debian: skopeo umoci oci-image-tool openssl tar gzip)"
            );
        }
    }

    let ocikit = match &args.ocikit {
        Some(p) => {
            fs::canonicalize(p).with_context(|| format!("no ocikit binary at `{}`", p.display()))?
        }
        None => {
            eprintln!("bench: cargo build --release --bin ocikit");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--release", "--bin", "ocikit"])
                .current_dir(&root)
                .status()
                .context("cannot run cargo")?;
            if !status.success() {
                bail!("cargo build --release failed");
            }
            target_dir.join("release").join("ocikit")
        }
    };

    fs::create_dir_all(&work).with_context(|| format!("cannot create `{}`", work.display()))?;
    let work = fs::canonicalize(&work)?;
    let inp = Inputs::at(&work, args.size_scale, args.large, scale_refs);
    inp.make()?;

    // The registry rows' registry: started when one of them is selected, stopped (by PID)
    // when `_registry` is dropped at the end of this function, on error too.
    let serve_rows = serve::selected(&args.only, selects);
    let wants_registry = !serve_rows.is_empty()
        || registry::ROWS
            .iter()
            .any(|id| args.only.is_empty() || args.only.iter().any(|o| selects(o, id)));
    let (_registry, reg) = if !wants_registry {
        (None, None)
    } else if which("docker-registry").is_none() {
        eprintln!(
            "bench: notice: `docker-registry` is not installed (Debian package docker-registry); \
             skipping the registry rows"
        );
        (None, None)
    } else {
        if which("curl").is_none() {
            bail!("`curl` is needed on PATH for the registry rows' floor (Debian: curl)");
        }
        let dir = work.join("registry");
        let server = registry::Registry::start(&dir, &dir.join("registry.log"))?;
        let private_cache = registry::private_cache_works();
        if !private_cache {
            eprintln!(
                "bench: notice: cannot give skopeo a private blob-info cache (`unshare -m` needs \
                 root); its pushes may mount blobs from repositories it pushed to before"
            );
        }
        eprintln!(
            "bench: docker-registry on {}; pushing image A to {}:{} (skopeo)",
            server.host,
            registry::REPO,
            registry::TAG
        );
        measure::run_ok(
            Command::new("skopeo")
                .args(["copy", "-q", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:{REF}", inp.a_gzip.display()))
                .arg(format!(
                    "docker://{}/{}:{}",
                    server.host,
                    registry::REPO,
                    registry::TAG
                )),
        )?;
        let reg = RegistryCtx {
            host: server.host.clone(),
            data: server.data.clone(),
            private_cache,
        };
        (Some(server), Some(reg))
    };

    let all = rows(&inp, &ocikit, reg.as_ref());
    let selected: Vec<&Row> = all
        .iter()
        .filter(|r| args.only.is_empty() || args.only.iter().any(|o| selects(o, &r.id)))
        .collect();
    if selected.is_empty() && (serve_rows.is_empty() || reg.is_none()) {
        if wants_registry && reg.is_none() {
            bail!(
                "the rows selected with --only {:?} need `docker-registry`, which is not installed",
                args.only
            );
        }
        bail!("no row matches --only {:?}; see --list", args.only);
    }

    if selected.iter().any(|r| r.id == "bundle-load") && has_verb(&ocikit, "bundle") {
        // The load row's input is ocikit's own format, so the ocikit under test makes it.
        eprintln!("bench: making the bundle of image A");
        measure::remove(&inp.a_bundle)?;
        measure::run_ok(
            Command::new(&ocikit)
                .args(["bundle", "-q"])
                .arg(&inp.a_gzip)
                .arg("-o")
                .arg(&inp.a_bundle),
        )?;
    }

    // The disk of a shared machine varies: the best of three probes.
    let probe = || -> anyhow::Result<f64> {
        let mut best: f64 = 0.0;
        for _ in 0..3 {
            best = best.max(measure::durable_write_rate(&work)?);
        }
        Ok(best)
    };
    let disk_before = probe()?;

    let logs = work.join("logs");
    let runs_dir = work.join("runs");
    measure::remove(&logs)?;
    fs::create_dir_all(&logs)?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut verbs: HashMap<String, bool> = HashMap::new();
    let mut samples_tsv =
        String::from("row\ttool\trun\tseconds\tmaxrss_kib\textra_disk_bytes\tstatus\n");
    let mut results = Vec::new();
    for row in &selected {
        eprintln!("bench: {} ...", row.id);
        let probe = (row.ocikit.cmd)(Path::new("out"));
        let verb = probe.args.first().cloned().unwrap_or_default();
        let has_verb = *verbs
            .entry(verb.clone())
            .or_insert_with(|| has_verb(&ocikit, &verb));
        let m = measure_row(row, has_verb, args.runs, &runs_dir, &logs, workers)?;
        for (tool, side) in [("ocikit", &m.ocikit), (row.peer_name, &m.peer)] {
            for (i, s) in side.samples.iter().enumerate() {
                let _ = writeln!(
                    samples_tsv,
                    "{}\t{tool}\t{}\t{:.4}\t{}\t{}\t{}",
                    row.id,
                    i + 1,
                    s.seconds,
                    s.maxrss_kib.map_or(String::new(), |k| k.to_string()),
                    s.extra_disk.map_or(String::new(), |k| k.to_string()),
                    s.failure.as_deref().unwrap_or("ok")
                );
            }
        }
        results.push(m);
    }
    let serve_results = match (&_registry, serve_rows.is_empty()) {
        (Some(server), false) => serve::run(
            &serve::Ctx {
                ocikit: &ocikit,
                layout: &inp.a_gzip,
                registry_host: &server.host,
                registry_pid: server.pid(),
                runs: args.runs,
                logs: &logs,
                scratch: &runs_dir.join("serve"),
            },
            &serve_rows,
        )?,
        _ => Vec::new(),
    };
    measure::remove(&runs_dir)?;
    let disk_after = probe()?;

    let mut report = render(
        &args,
        &inp,
        &ocikit,
        &selected,
        &results,
        (disk_before, disk_after),
    )?;
    if !serve_results.is_empty() {
        report.push_str(&serve::render(&serve_results));
    }
    print!("{report}");
    let results_md = work.join("results.md");
    fs::write(&results_md, &report)
        .with_context(|| format!("cannot write `{}`", results_md.display()))?;
    fs::write(work.join("samples.tsv"), samples_tsv)?;
    eprintln!("bench: wrote `{}`", results_md.display());
    Ok(())
}

fn measure_row(
    row: &Row,
    has_verb: bool,
    runs: u32,
    runs_dir: &Path,
    logs: &Path,
    workers: usize,
) -> anyhow::Result<Measured> {
    measure::warm(&row.warm)?;
    let mut ocikit = Side::default();
    let mut peer = Side::default();
    if !has_verb {
        ocikit.skipped = Some("verb missing".into());
    }
    for run in 1..=runs {
        for (tool, job, side) in [
            ("ocikit", &row.ocikit, &mut ocikit),
            (row.peer_name, &row.peer, &mut peer),
        ] {
            if side.skipped.is_some() || side.failure().is_some() {
                continue;
            }
            // A directory per run (the previous run's is removed), so that commands can derive
            // names that differ between runs from it (the push rows' fresh repositories).
            let tool_dir = runs_dir.join(&row.id).join(tool);
            measure::remove(&tool_dir)?;
            let dir = tool_dir.join(format!("run{run}"));
            fs::create_dir_all(&dir)?;
            let out = match &job.prep {
                Prep::Fresh => dir.join("out"),
                Prep::CopyOf(src) => {
                    let out = dir.join("out");
                    measure::copy_layout(src, &out)?;
                    out
                }
                Prep::ReadOnly(p) => p.clone(),
            };
            let cmd = (job.cmd)(&out);
            measure::sync();
            let stem = logs.join(format!("{}_{tool}_run{run}", row.id));
            fs::write(stem.with_extension("cmd"), cmd.display() + "\n")?;
            let watch = row.disk.then(|| measure::DiskWatch {
                dest: out.clone(),
                tmpdir: dir.join("tmp"),
            });
            let mut sample = measure::timed_run(&cmd, &stem, watch.as_ref())?;
            if let (None, Some(check), "ocikit") = (&sample.failure, row.check, tool) {
                let stdout = fs::read_to_string(stem.with_extension("out")).unwrap_or_default();
                if let Err(why) = check(&stdout) {
                    sample.failure = Some(format!("check: {why}"));
                }
            }
            if let Some(f) = &sample.failure {
                eprintln!(
                    "bench: {} {tool} failed: {f} (see `{}`)",
                    row.id,
                    stem.with_extension("err").display()
                );
            } else if row.out_size {
                side.out_bytes = Some(if let Prep::CopyOf(_) = job.prep {
                    // The copy's blobs are hard links to the input; count what the run wrote.
                    measure::new_bytes(&out.join("blobs"))?
                } else if out.is_dir() {
                    measure::total_bytes(&out.join("blobs"))?
                } else {
                    fs::metadata(&out).map(|m| m.len()).unwrap_or(0)
                });
            }
            side.samples.push(sample);
        }
    }
    measure::remove(&runs_dir.join(&row.id))?;
    let limit = match &row.limit {
        None => None,
        Some(l) => {
            let workers = match l {
                Limit::RegistryGet { .. } | Limit::RegistryPut { .. } => REGISTRY_FLOOR_PARALLEL,
                _ => workers,
            };
            measure::warm(&row.warm)?;
            let mut times = Vec::new();
            for run in 1..=runs {
                let jobs = limit_jobs(l, run)?;
                times.push(measure::limit_run(&jobs, workers)?);
            }
            fmt::median(&times)
        }
    };
    Ok(Measured {
        ocikit,
        peer,
        limit,
    })
}

/// The jobs of `limit` for its `run`-th measurement (the push floor uploads into a fresh
/// repository each time).
fn limit_jobs(limit: &Limit, run: u32) -> anyhow::Result<Vec<LimitJob>> {
    const HASH: &str = "openssl dgst -sha256 < \"$1\"";
    Ok(match limit {
        Limit::Hash(dir) => measure::files_under(dir)?
            .into_iter()
            .map(|(p, size)| LimitJob {
                script: HASH,
                args: vec![p.display().to_string()],
                size,
            })
            .collect(),
        Limit::ArchiveHash(tar) => inputs::archive_members(tar)?
            .into_iter()
            .map(|(name, size)| LimitJob {
                script: "tar -xOf \"$1\" \"$2\" | openssl dgst -sha256",
                args: vec![tar.display().to_string(), name],
                size,
            })
            .collect(),
        Limit::InflateHash(layout) => {
            let mut jobs = Vec::new();
            for (p, size) in measure::files_under(&layout.join("blobs"))? {
                let mut magic = [0u8; 2];
                let gz = fs::File::open(&p)
                    .and_then(|mut f| f.read_exact(&mut magic))
                    .is_ok()
                    && magic == [0x1f, 0x8b];
                jobs.push(LimitJob {
                    script: if gz {
                        "gzip -dc < \"$1\" | openssl dgst -sha256"
                    } else {
                        HASH
                    },
                    args: vec![p.display().to_string()],
                    size,
                });
            }
            jobs
        }
        Limit::RegistryGet { url, repo, layout } => registry::image_blobs(layout)?
            .into_iter()
            .map(|(digest, _, size)| LimitJob {
                script: registry::CURL_GET,
                args: vec![url.clone(), repo.clone(), digest],
                size,
            })
            .collect(),
        Limit::RegistryPut {
            url,
            repo_prefix,
            layout,
        } => registry::image_blobs(layout)?
            .into_iter()
            .map(|(digest, path, size)| LimitJob {
                script: registry::CURL_PUT,
                args: vec![
                    url.clone(),
                    format!("{repo_prefix}-run{run}"),
                    digest,
                    path.display().to_string(),
                ],
                size,
            })
            .collect(),
    })
}

/// Whether `--only pattern` selects the row `id`: the id itself, or ids starting with
/// `pattern-` (`import` selects every import, `gc` the gc rows).
fn selects(pattern: &str, id: &str) -> bool {
    id == pattern
        || id
            .strip_prefix(pattern)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// Whether the ocikit binary has `verb` (`ocikit VERB --help` succeeds).
fn has_verb(ocikit: &Path, verb: &str) -> bool {
    Command::new(ocikit)
        .args([verb, "--help"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The target cell and whether it is met (`None` when ocikit was not measured).
fn judge(row: &Row, m: &Measured) -> (String, Option<Result<(), Vec<String>>>) {
    let t = &row.target;
    let mut text = Vec::new();
    if let Some(r) = t.min_ratio {
        text.push(format!("≥{r}x peer"));
    }
    if let Some(l) = t.max_vs_limit {
        text.push(format!("≤{l}x limit"));
    }
    if let Some(s) = t.max_size_ratio {
        text.push(format!("size ≤{s}x peer"));
    }
    if let Some(s) = t.max_seconds {
        text.push(format!("<{s} s"));
    }
    if let Some(d) = t.max_extra_disk {
        text.push(format!("extra disk ≤{} (largest blob)", fmt::bytes(d)));
    }
    let rss_mib = t.max_rss_mib.unwrap_or(RSS_TARGET_MIB);
    text.push(format!("RSS ≤{rss_mib} MiB"));
    let text = text.join(", ");
    if m.ocikit.failure().is_some() {
        return (text, Some(Err(vec!["ocikit failed (see below)".into()])));
    }
    let Some(o) = m.ocikit.median() else {
        return (text, None);
    };
    let mut misses = Vec::new();
    if let Some(r) = t.min_ratio {
        match m.peer.median() {
            Some(p) if p / o >= r => {}
            Some(p) => misses.push(format!("ratio {}", fmt::ratio(p, o))),
            None => misses.push("no peer time".into()),
        }
    }
    if let (Some(l), Some(limit)) = (t.max_vs_limit, m.limit) {
        if o / limit > l {
            misses.push(format!("{:.2}x limit", o / limit));
        }
    }
    if let Some(s) = t.max_size_ratio {
        match (m.ocikit.out_bytes, m.peer.out_bytes) {
            (Some(a), Some(b)) if b > 0 && a as f64 / b as f64 <= s => {}
            (Some(a), Some(b)) if b > 0 => misses.push(format!("size {:.3}x", a as f64 / b as f64)),
            _ => misses.push("no sizes".into()),
        }
    }
    if let Some(s) = t.max_seconds {
        if o >= s {
            misses.push(fmt::seconds(o));
        }
    }
    if let Some(max) = t.max_extra_disk {
        match m.ocikit.peak_extra_disk() {
            Some(d) if d <= max => {}
            Some(d) => misses.push(format!("extra disk {}", fmt::bytes(d))),
            None => misses.push("no disk samples".into()),
        }
    }
    match m.ocikit.peak_rss() {
        Some(k) if k <= rss_mib * 1024 => {}
        Some(k) => misses.push(format!("RSS {}", fmt::rss(k))),
        None => misses.push("no RSS".into()),
    }
    (
        text,
        Some(if misses.is_empty() {
            Ok(())
        } else {
            Err(misses)
        }),
    )
}

fn render(
    args: &Args,
    inp: &Inputs,
    ocikit: &Path,
    rows: &[&Row],
    results: &[Measured],
    disk: (f64, f64),
) -> anyhow::Result<String> {
    let mut s = String::new();
    // The faster of the two probes: a floor no run can beat.
    let disk_rate = disk.0.max(disk.1);
    let mut cmdline = String::from("cargo xtask bench");
    if args.runs != 3 {
        let _ = write!(cmdline, " --runs {}", args.runs);
    }
    if args.size_scale != 1.0 {
        let _ = write!(cmdline, " --size-scale {}", args.size_scale);
    }
    if args.large {
        cmdline.push_str(" --large");
    }
    if args.no_scale {
        cmdline.push_str(" --no-scale");
    }
    for o in &args.only {
        let _ = write!(cmdline, " --only {o}");
    }
    let _ = writeln!(s, "## Benchmark results\n");
    let _ = writeln!(
        s,
        "`{cmdline}`, {} run(s) of each tool per operation, medians; page cache warm.{}\n",
        args.runs,
        match (args.runs < 3, args.size_scale != 1.0) {
            (true, true) =>
                " Fewer than 3 runs and a scaled image: a check of the harness, not a result.",
            (true, false) => " Fewer than 3 runs: a check of the harness, not a result.",
            (false, true) => " A scaled image: a check of the harness, not a result.",
            (false, false) => "",
        }
    );
    let _ = writeln!(s, "{}\n", machine_line());
    let _ = writeln!(
        s,
        "Disk: durable writes (256 MiB written, then fsync, in the work directory; best of three) \
         at {}/s before the operations, {}/s after.\n",
        fmt::bytes(disk.0 as u64),
        fmt::bytes(disk.1 as u64)
    );
    let _ = writeln!(s, "{}\n", versions_line(ocikit));
    if let Some(p) = &args.ocikit {
        let _ = writeln!(
            s,
            "ocikit binary: `{}` (given with --ocikit).\n",
            p.display()
        );
    }
    let _ = writeln!(
        s,
        "Image A: {}; its gzip layout (skopeo) holds {} of blobs.\n",
        describe_archive(&inp.a_tar)?,
        fmt::bytes(measure::total_bytes(&inp.a_gzip.join("blobs"))?),
    );
    if let Some(b) = &inp.b_tar {
        let _ = writeln!(s, "Image B: {}.\n", describe_archive(b)?);
    }

    let _ = writeln!(s, "| operation | ocikit median | peer median | ratio | ocikit peak RSS | peer peak RSS | limit | target | met? |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for (row, m) in rows.iter().zip(results) {
        let ratio = match (m.peer.median(), m.ocikit.median()) {
            (Some(p), Some(o)) => fmt::ratio(p, o),
            _ => "—".into(),
        };
        let (target, met) = judge(row, m);
        let met = match met {
            None => "—".to_string(),
            Some(Ok(())) => "yes".to_string(),
            Some(Err(why)) => format!("no: {}", why.join(", ")),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} ({}) | {} | {} | {} | {} | {} | {} |",
            row.title,
            m.ocikit.time_cell(),
            m.peer.time_cell(),
            row.peer_name,
            ratio,
            m.ocikit.rss_cell(),
            m.peer.rss_cell(),
            m.limit.map_or("—".into(), fmt::seconds),
            target,
            met
        );
    }

    let sized: Vec<_> = rows
        .iter()
        .zip(results)
        .filter(|(r, _)| r.out_size)
        .collect();
    if !sized.is_empty() {
        let _ = writeln!(
            s,
            "\nOutput sizes (blobs of the layout written, or the archive; for a layout edited in \
             place, the blobs the run added):\n"
        );
        let _ = writeln!(
            s,
            "| operation | ocikit | peer | ocikit / peer | durable-write floor for ocikit's output |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|");
        for (row, m) in sized {
            let cell = |b: Option<u64>, side: &Side| match (b, &side.skipped) {
                (_, Some(_)) => "n/a".to_string(),
                (Some(b), _) => fmt::bytes(b),
                (None, _) => "—".into(),
            };
            let rel = match (m.ocikit.out_bytes, m.peer.out_bytes) {
                (Some(a), Some(b)) if b > 0 => format!("{:.3}", a as f64 / b as f64),
                _ => "—".into(),
            };
            let floor = match m.ocikit.out_bytes {
                Some(b) if disk_rate > 0.0 => fmt::seconds(b as f64 / disk_rate),
                _ => "—".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                row.title,
                cell(m.ocikit.out_bytes, &m.ocikit),
                cell(m.peer.out_bytes, &m.peer),
                rel,
                floor
            );
        }
    }

    let disked: Vec<_> = rows.iter().zip(results).filter(|(r, _)| r.disk).collect();
    if !disked.is_empty() {
        let _ = writeln!(
            s,
            "\nPeak extra disk while loading (peak use minus final use of the destination and \
             the command's TMPDIR, sampled every 5 ms; the largest of the runs):\n"
        );
        let _ = writeln!(s, "| operation | ocikit | peer | largest blob |");
        let _ = writeln!(s, "|---|---|---|---|");
        for (row, m) in disked {
            let cell = |side: &Side| {
                if side.skipped.is_some() {
                    "n/a".to_string()
                } else {
                    side.peak_extra_disk().map_or("—".into(), fmt::bytes)
                }
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                row.title,
                cell(&m.ocikit),
                cell(&m.peer),
                row.target.max_extra_disk.map_or("—".into(), fmt::bytes)
            );
        }
    }

    let mut failures = String::new();
    for (row, m) in rows.iter().zip(results) {
        for (tool, side) in [("ocikit", &m.ocikit), (row.peer_name, &m.peer)] {
            if let Some((i, f)) = side
                .samples
                .iter()
                .enumerate()
                .find_map(|(i, s)| s.failure.as_deref().map(|f| (i, f)))
            {
                let _ = writeln!(
                    failures,
                    "- {} / {tool}: {f} (`logs/{}_{tool}_run{}.err`)",
                    row.id,
                    row.id,
                    i + 1
                );
            }
        }
    }
    if !failures.is_empty() {
        let _ = writeln!(
            s,
            "\nFailures (a failed tool is not run again for that row):\n"
        );
        s.push_str(&failures);
    }

    let by_id: HashMap<&str, &Measured> = rows.iter().map(|r| r.id.as_str()).zip(results).collect();
    let mut growth = String::new();
    for op in SCALE_OPS {
        let times: Vec<(u64, f64)> = inp
            .scale
            .iter()
            .filter_map(|(n, _)| {
                by_id
                    .get(format!("{op}-{n}").as_str())
                    .and_then(|m| m.ocikit.median())
                    .map(|t| (*n, t))
            })
            .collect();
        for w in times.windows(2) {
            let ((n1, t1), (n2, t2)) = (w[0], w[1]);
            let g = t2 / t1;
            let refs = n2 as f64 / n1 as f64;
            let _ = writeln!(
                growth,
                "| {op} | {} -> {} refs | {} -> {} | {:.1}x for {:.0}x the refs | {} |",
                fmt::count(n1),
                fmt::count(n2),
                fmt::seconds(t1),
                fmt::seconds(t2),
                g,
                refs,
                if g <= refs * 1.2 { "yes" } else { "no" }
            );
        }
    }
    if !growth.is_empty() {
        let _ = writeln!(
            s,
            "\nGrowth of ocikit's time with the number of refs (linear or better is met):\n"
        );
        let _ = writeln!(s, "| operation | refs | time | growth | linear? |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        s.push_str(&growth);
    }
    let _ = writeln!(
        s,
        "\nratio = peer time / ocikit time. limit = every core hashing one blob at a time with \
         `openssl dgst -sha256` (imports: each docker-archive member read through `tar`; \
         export, recompress: gzip layers through `gzip -dc`); it leaves out compression, so \
         for compressing rows it is a floor. For the registry rows (pull, push into a fresh \
         repository, push again; a loopback `docker-registry` started by the bench) the limit \
         is the registry's own floor: three parallel `curl` GETs, or uploads (POST, then one \
         PUT per blob), of the same blobs; skopeo pushes with an empty blob-info cache so that \
         it uploads every blob too. The durable-write floor is the output's size over \
         the faster disk probe: about the least time a run that writes its output durably \
         (fsync) needs, as far as the disk of a shared machine holds still. \
         Peak RSS is the largest of the runs. skopeo's \
         uncompressed import labels plain tar layers `tar+gzip` (containers/image issue 1270). Samples: \
         `samples.tsv`; logs: `logs/`."
    );
    Ok(s)
}

/// `docker-archive of 15.1 MB, 3 layers (6.0 MB, 5.0 MB, 4.1 MB)`.
fn describe_archive(tar: &Path) -> anyhow::Result<String> {
    let layers: Vec<u64> = inputs::archive_members(tar)?
        .iter()
        .filter(|(n, _)| n.ends_with(".tar"))
        .map(|(_, s)| *s)
        .collect();
    Ok(format!(
        "docker-archive of {}, {} layers ({})",
        fmt::bytes(fs::metadata(tar).map(|m| m.len()).unwrap_or(0)),
        layers.len(),
        layers
            .iter()
            .map(|b| fmt::bytes(*b))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn machine_line() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = fmt::parse_cpu_model(&read("/proc/cpuinfo")).unwrap_or_else(|| "unknown CPU".into());
    let mem = fmt::parse_meminfo_total(&read("/proc/meminfo")).map_or("unknown".into(), |b| {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    });
    let kernel = read("/proc/sys/kernel/osrelease");
    format!(
        "Machine: nproc {nproc}, {cpu}, {mem} memory, Linux {} ({}).",
        kernel.trim(),
        std::env::consts::ARCH
    )
}

fn versions_line(ocikit: &Path) -> String {
    let version = |cmd: &mut Command| -> String {
        cmd.output()
            .ok()
            .map(|o| {
                let text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.lines().next().unwrap_or("").trim().to_string()
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "unknown".into())
    };
    let commit = version(
        Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .current_dir(workspace_root()),
    );
    format!(
        "Tools: {} (commit {commit}); {}; {}; {}; {}.",
        version(Command::new(ocikit).arg("--version")),
        version(Command::new("skopeo").arg("--version")),
        version(Command::new("umoci").arg("--version")),
        version(Command::new("oci-image-tool").arg("--version")),
        version(Command::new("openssl").arg("version")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: Target) -> Row {
        let job = || Job {
            prep: Prep::Fresh,
            cmd: Box::new(|out: &Path| Cmd::new("true", &[]).arg(out)),
        };
        Row {
            id: "r".into(),
            title: "r".into(),
            ocikit: job(),
            peer_name: "peer",
            peer: job(),
            warm: Vec::new(),
            limit: None,
            target,
            out_size: true,
            disk: false,
            check: None,
        }
    }

    fn side(secs: &[f64], rss_kib: u64, out: Option<u64>) -> Side {
        Side {
            samples: secs
                .iter()
                .map(|&seconds| Sample {
                    seconds,
                    maxrss_kib: Some(rss_kib),
                    extra_disk: None,
                    failure: None,
                })
                .collect(),
            out_bytes: out,
            skipped: None,
        }
    }

    #[test]
    fn only_selects() {
        assert!(selects("gc", "gc"));
        assert!(selects("gc", "gc-1000"));
        assert!(selects("gc-1000", "gc-1000"));
        assert!(!selects("gc-1000", "gc-10000"));
        assert!(selects("import", "import-gzip"));
        assert!(selects("import-none", "import-none-large"));
        assert!(!selects("import-none", "import-gzip"));
        assert!(!selects("im", "import-gzip"));
    }

    #[test]
    fn judge_met_and_missed() {
        let gzip = row(Target {
            min_ratio: Some(1.2),
            max_size_ratio: Some(1.02),
            ..Target::default()
        });
        let m = Measured {
            ocikit: side(&[1.0, 2.0, 1.5], 30_000, Some(1000)),
            peer: side(&[3.0, 3.2, 2.9], 50_000, Some(990)),
            limit: Some(0.5),
        };
        let (text, met) = judge(&gzip, &m);
        assert_eq!(text, "≥1.2x peer, size ≤1.02x peer, RSS ≤64 MiB");
        assert_eq!(met, Some(Ok(())));

        let fsck = row(Target {
            min_ratio: Some(3.0),
            max_vs_limit: Some(1.3),
            ..Target::default()
        });
        let m = Measured {
            ocikit: side(&[1.0], 70_000, None),
            peer: side(&[2.0], 9_000, None),
            limit: Some(0.5),
        };
        assert_eq!(
            judge(&fsck, &m).1,
            Some(Err(vec![
                "ratio 2.00x".to_string(),
                "2.00x limit".to_string(),
                "RSS 68.4 MiB".to_string()
            ]))
        );
    }

    #[test]
    fn judge_extra_disk() {
        let load = row(Target {
            max_extra_disk: Some(1000),
            ..Target::default()
        });
        let mut m = Measured {
            ocikit: side(&[1.0], 2048, None),
            peer: side(&[1.0], 2048, None),
            limit: None,
        };
        assert_eq!(
            judge(&load, &m),
            (
                "extra disk ≤1.0 kB (largest blob), RSS ≤64 MiB".to_string(),
                Some(Err(vec!["no disk samples".to_string()]))
            )
        );
        m.ocikit.samples[0].extra_disk = Some(1000);
        assert_eq!(judge(&load, &m).1, Some(Ok(())));
        m.ocikit.samples.push(m.ocikit.samples[0].clone());
        m.ocikit.samples[1].extra_disk = Some(4096);
        assert_eq!(
            judge(&load, &m).1,
            Some(Err(vec!["extra disk 4.1 kB".to_string()]))
        );
    }

    #[test]
    fn judge_missing_and_failed() {
        let r = row(Target {
            max_seconds: Some(1.0),
            ..Target::default()
        });
        let mut missing = Measured {
            ocikit: Side {
                skipped: Some("verb missing".into()),
                ..Side::default()
            },
            peer: side(&[1.0], 1, None),
            limit: None,
        };
        assert_eq!(judge(&r, &missing), ("<1 s, RSS ≤64 MiB".to_string(), None));
        assert_eq!(missing.ocikit.time_cell(), "n/a (verb missing)");
        assert_eq!(missing.ocikit.rss_cell(), "—");

        missing.ocikit = side(&[0.5, 0.7], 2048, None);
        missing.ocikit.samples[1].failure = Some("exit 2: error: bad".into());
        assert_eq!(missing.ocikit.time_cell(), "failed (exit 2)");
        assert_eq!(
            judge(&r, &missing).1,
            Some(Err(vec!["ocikit failed (see below)".to_string()]))
        );

        let slow = Measured {
            ocikit: side(&[1.5, 1.2, 1.4], 2048, None),
            peer: side(&[1.0], 1, None),
            limit: None,
        };
        assert_eq!(slow.ocikit.time_cell(), "1.400 s");
        assert_eq!(slow.ocikit.rss_cell(), "2.0 MiB");
        assert_eq!(judge(&r, &slow).1, Some(Err(vec!["1.400 s".to_string()])));
    }
}
