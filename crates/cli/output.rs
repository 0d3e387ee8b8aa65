//! Rendering helpers shared by the commands: error chains, exit codes, JSON shapes, progress.

use std::io::{self, Write};

use indicatif::{ProgressBar, ProgressStyle};
use ocikit_layout::{Descriptor, Platform};
use serde_json::{json, Value};

/// Marks an error as "a check found problems" (exit 1) rather than bad input (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckFailed(pub String);

/// The whole error chain on one line, lowercase messages joined by `: `.
pub fn chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        if parts.last().is_some_and(|p| p.contains(&s)) {
            continue;
        }
        parts.push(s);
    }
    parts.join(": ")
}

/// 1 for failed checks, 2 for everything else.
pub fn exit_code_of(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| {
        c.is::<CheckFailed>()
            || c.is::<ocikit_layout::gc::GcError>()
                && matches!(
                    c.downcast_ref::<ocikit_layout::gc::GcError>(),
                    Some(ocikit_layout::gc::GcError::Blocked(_))
                )
    }) {
        1
    } else {
        2
    }
}

/// A platform as JSON (its own fields, unknown ones included), or null.
pub fn platform_json(p: Option<&Platform>) -> Value {
    p.and_then(|p| serde_json::to_value(p).ok())
        .unwrap_or(Value::Null)
}

/// The `ls --json` object for one index.json entry.
pub fn entry_json(d: &Descriptor) -> Value {
    json!({
        "ref": d.ref_name(),
        "digest": d.digest.as_str(),
        "mediaType": d.media_type.as_str(),
        "size": d.size,
        "platform": platform_json(d.platform.as_ref()),
        "artifactType": d.artifact_type,
        "annotations": d.annotations.clone().unwrap_or_default(),
    })
}

/// Write pretty JSON and a newline to stdout.
pub fn print_json(v: &Value) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// A byte-count progress bar on stderr, hidden unless stderr is a terminal and not quiet.
pub fn byte_bar(quiet: bool, total: u64, msg: &'static str) -> ProgressBar {
    if quiet || !io::IsTerminal::is_terminal(&io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(msg);
    bar
}

/// Human-readable byte count.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `--compress` of `import` and `convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressArg {
    /// gzip (read by every tool).
    Gzip,
    /// Zstandard (smaller and faster; needs containerd 1.5+, Docker 23+, Podman; OCI only).
    Zstd,
    /// Plain tar.
    None,
}

impl CompressArg {
    /// The library's compression.
    pub fn compression(self) -> ocikit_layout::Compression {
        match self {
            CompressArg::Gzip => ocikit_layout::Compression::Gzip,
            CompressArg::Zstd => ocikit_layout::Compression::Zstd,
            CompressArg::None => ocikit_layout::Compression::None,
        }
    }
}

/// `SOURCE_DATE_EPOCH`, or 0.
pub fn source_date_epoch() -> anyhow::Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v.trim().parse().map_err(|_| {
            anyhow::anyhow!("SOURCE_DATE_EPOCH `{v}` is not a whole number of seconds")
        }),
        _ => Ok(0),
    }
}
