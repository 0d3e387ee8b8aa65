//! Running and measuring: one timed run of a command (wall time from spawn to exit, peak RSS
//! from GNU time's `%M`, which takes it from `wait4`), the hashing limit (one file per core,
//! largest first), and the file-system chores around runs (fresh copies, warm-up reads, sizes).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context};

use super::fmt;

/// GNU time; it reports the peak RSS of the command itself (`ru_maxrss` from `wait4`).
pub const GNU_TIME: &str = "/usr/bin/time";

/// A command line: program and arguments.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl Cmd {
    pub fn new(program: impl Into<PathBuf>, args: &[&str]) -> Self {
        Self {
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn arg(mut self, a: impl AsRef<Path>) -> Self {
        self.args.push(a.as_ref().display().to_string());
        self
    }

    pub fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }
}

/// What one timed run gave.
#[derive(Debug, Clone)]
pub struct Sample {
    pub seconds: f64,
    pub maxrss_kib: Option<u64>,
    /// With a [`DiskWatch`]: the peak extra disk, peak use minus final use, in bytes.
    pub extra_disk: Option<u64>,
    /// `None` on success, else what went wrong (exit status, last line of stderr).
    pub failure: Option<String>,
}

/// Check that GNU time is there and reports RSS (busybox `time` has no `-f %M`).
pub fn check_gnu_time() -> anyhow::Result<()> {
    let out = Command::new(GNU_TIME)
        .args(["-f", "%M", "true"])
        .output()
        .with_context(|| {
            format!("`{GNU_TIME}` is needed to measure peak RSS (Debian package `time`)")
        })?;
    if !out.status.success()
        || fmt::parse_time_maxrss(&String::from_utf8_lossy(&out.stderr)).is_none()
    {
        bail!("`{GNU_TIME} -f %M true` did not report a peak RSS; install GNU time (Debian package `time`)");
    }
    Ok(())
}

/// Where a run may put bytes on disk, watched while it runs: the destination, and a private
/// `TMPDIR` the command gets (so spooling to temp files counts too).
#[derive(Debug, Clone)]
pub struct DiskWatch {
    pub dest: PathBuf,
    pub tmpdir: PathBuf,
}

/// How often the disk use of a watched run is sampled.
const DISK_SAMPLE: std::time::Duration = std::time::Duration::from_millis(5);

/// Bytes allocated on disk for the files under `path` (st_blocks, so sparse and preallocated
/// files count as the file system sees them); files that vanish while walking are skipped.
pub fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        fs::read_dir(path)
            .map(|rd| rd.flatten().map(|e| allocated_bytes(&e.path())).sum())
            .unwrap_or(0)
    } else {
        meta.blocks() * 512
    }
}

/// Run `cmd` once under GNU time, stdout and stderr to `log_stem.out` / `log_stem.err`. With
/// `disk`, the bytes under its paths are sampled every few milliseconds while the command
/// runs (a walk of the destination and the command's `TMPDIR`, which other processes on a
/// shared machine do not disturb, unlike the free space of the whole file system).
pub fn timed_run(cmd: &Cmd, log_stem: &Path, disk: Option<&DiskWatch>) -> anyhow::Result<Sample> {
    let rss_file = log_stem.with_extension("rss");
    let out_file = log_stem.with_extension("out");
    let err_file = log_stem.with_extension("err");
    let stdout = fs::File::create(&out_file)
        .with_context(|| format!("cannot create `{}`", out_file.display()))?;
    let stderr = fs::File::create(&err_file)
        .with_context(|| format!("cannot create `{}`", err_file.display()))?;
    let mut command = Command::new(GNU_TIME);
    command
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(&cmd.program)
        .args(&cmd.args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if let Some(w) = disk {
        fs::create_dir_all(&w.tmpdir)
            .with_context(|| format!("cannot create `{}`", w.tmpdir.display()))?;
        command.env("TMPDIR", &w.tmpdir);
    }
    let used = |w: &DiskWatch| allocated_bytes(&w.dest) + allocated_bytes(&w.tmpdir);
    let start = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run `{}`", cmd.display()))?;
    let mut peak = 0u64;
    let status = match disk {
        None => child.wait(),
        Some(w) => loop {
            peak = peak.max(used(w));
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => std::thread::sleep(DISK_SAMPLE),
                Err(e) => break Err(e),
            }
        },
    }
    .with_context(|| format!("cannot run `{}`", cmd.display()))?;
    let seconds = start.elapsed().as_secs_f64();
    let extra_disk = disk.map(|w| peak.saturating_sub(used(w)));
    let maxrss_kib = fs::read_to_string(&rss_file)
        .ok()
        .and_then(|s| fmt::parse_time_maxrss(&s));
    let failure = (!status.success()).then(|| {
        let err = fs::read_to_string(&err_file).unwrap_or_default();
        let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        let code = status
            .code()
            .map_or_else(|| "killed".to_string(), |c| format!("exit {c}"));
        format!("{code}: {}", last.trim())
    });
    Ok(Sample {
        seconds,
        maxrss_kib,
        extra_disk,
        failure,
    })
}

/// Run a helper command that must succeed; its output is returned.
pub fn run_ok(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Bytes written by [`durable_write_rate`].
pub const DISK_PROBE_BYTES: usize = 256 << 20;

/// How fast the disk under `dir` takes durable writes: [`DISK_PROBE_BYTES`] of incompressible
/// bytes written in 1 MiB pieces, then fsync, timed; in bytes per second. Every operation that
/// writes its output durably needs at least its output size divided by this.
pub fn durable_write_rate(dir: &Path) -> anyhow::Result<f64> {
    use std::io::Write;
    let path = dir.join(".disk-probe");
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 32) as u8;
    }
    sync();
    let start = Instant::now();
    let mut f =
        fs::File::create(&path).with_context(|| format!("cannot create `{}`", path.display()))?;
    for i in 0..DISK_PROBE_BYTES / block.len() {
        block[0] = i as u8;
        f.write_all(&block)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    f.sync_all()
        .with_context(|| format!("cannot fsync `{}`", path.display()))?;
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    remove(&path)?;
    Ok(DISK_PROBE_BYTES as f64 / secs)
}

/// Flush dirty pages so that writes of an earlier run are not paid by the next one.
pub fn sync() {
    let _ = Command::new("sync").status();
}

/// One job of a limit measurement: `sh -c script sh ARGS...`, standing for `size` bytes.
#[derive(Debug, Clone)]
pub struct LimitJob {
    pub script: &'static str,
    pub args: Vec<String>,
    pub size: u64,
}

/// The machine's limit for a row: the jobs run `workers` at a time, largest first (a blob's
/// sha256 cannot be split, so one blob is one job). Returns the wall time of the whole batch.
pub fn limit_run(jobs: &[LimitJob], workers: usize) -> anyhow::Result<f64> {
    let sizes: Vec<u64> = jobs.iter().map(|j| j.size).collect();
    let queues = fmt::lpt_schedule(&sizes, workers);
    let errors = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|scope| {
        for queue in &queues {
            let errors = &errors;
            scope.spawn(move || {
                for &i in queue {
                    let job = &jobs[i];
                    let result = Command::new("sh")
                        .arg("-c")
                        .arg(job.script)
                        .arg("sh")
                        .args(&job.args)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .status()
                        .with_context(|| format!("cannot run `sh -c {}`", job.script))
                        .and_then(|status| {
                            if !status.success() {
                                bail!("`{}` on {:?} failed: {status}", job.script, job.args);
                            }
                            Ok(())
                        });
                    if let Err(e) = result {
                        if let Ok(mut v) = errors.lock() {
                            v.push(e);
                        }
                    }
                }
            });
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    if let Some(e) = errors.into_inner().ok().and_then(|mut v| v.pop()) {
        return Err(e);
    }
    Ok(seconds)
}

/// Every regular file under `path` (or `path` itself), sorted, with sizes.
pub fn files_under(path: &Path) -> anyhow::Result<Vec<(PathBuf, u64)>> {
    let mut out = Vec::new();
    visit(path, &mut out)?;
    Ok(out)
}

fn visit(path: &Path, out: &mut Vec<(PathBuf, u64)>) -> anyhow::Result<()> {
    let meta =
        fs::symlink_metadata(path).with_context(|| format!("cannot stat `{}`", path.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .with_context(|| format!("cannot list `{}`", path.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()
            .with_context(|| format!("cannot list `{}`", path.display()))?;
        entries.sort();
        for e in entries {
            visit(&e, out)?;
        }
    } else if meta.is_file() {
        out.push((path.to_path_buf(), meta.len()));
    }
    Ok(())
}

/// Total bytes of the regular files under `path`.
pub fn total_bytes(path: &Path) -> anyhow::Result<u64> {
    Ok(files_under(path)?.iter().map(|(_, s)| s).sum())
}

/// Total bytes of the regular files under `path` that have one link: in a layout made by
/// [`copy_layout`], the blobs a run wrote, not the hard links to its input.
pub fn new_bytes(path: &Path) -> anyhow::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for (f, size) in files_under(path)? {
        let meta = fs::metadata(&f).with_context(|| format!("cannot stat `{}`", f.display()))?;
        if meta.nlink() == 1 {
            total += size;
        }
    }
    Ok(total)
}

/// Read every file under the given paths once, so the timed runs start with a warm cache.
pub fn warm(paths: &[PathBuf]) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    for p in paths {
        for (f, _) in files_under(p)? {
            let mut file =
                fs::File::open(&f).with_context(|| format!("cannot open `{}`", f.display()))?;
            while file
                .read(&mut buf)
                .with_context(|| format!("cannot read `{}`", f.display()))?
                > 0
            {}
        }
    }
    Ok(())
}

/// Remove `path` if it exists (file or directory).
pub fn remove(path: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(path).with_context(|| format!("cannot remove `{}`", path.display()))
        }
        Ok(_) => {
            fs::remove_file(path).with_context(|| format!("cannot remove `{}`", path.display()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot stat `{}`", path.display())),
    }
}

/// A fresh copy of the layout `src` at `dst`: blobs hard-linked (blobs never change in place;
/// tools only add or unlink them), everything else copied, so a tool that rewrites
/// `index.json` cannot touch the cached input.
pub fn copy_layout(src: &Path, dst: &Path) -> anyhow::Result<()> {
    remove(dst)?;
    copy_tree(src, dst, src)
}

fn copy_tree(path: &Path, dst: &Path, root: &Path) -> anyhow::Result<()> {
    let meta =
        fs::symlink_metadata(path).with_context(|| format!("cannot stat `{}`", path.display()))?;
    if meta.is_dir() {
        fs::create_dir_all(dst).with_context(|| format!("cannot create `{}`", dst.display()))?;
        for e in fs::read_dir(path).with_context(|| format!("cannot list `{}`", path.display()))? {
            let e = e.with_context(|| format!("cannot list `{}`", path.display()))?;
            copy_tree(&e.path(), &dst.join(e.file_name()), root)?;
        }
    } else if meta.is_file() {
        let in_blobs = path
            .strip_prefix(root)
            .map(|rel| rel.starts_with("blobs"))
            .unwrap_or(false);
        if in_blobs {
            fs::hard_link(path, dst).with_context(|| {
                format!("cannot link `{}` to `{}`", path.display(), dst.display())
            })?;
        } else {
            fs::copy(path, dst).with_context(|| {
                format!("cannot copy `{}` to `{}`", path.display(), dst.display())
            })?;
        }
    }
    Ok(())
}
