//! Rendering helpers shared by the commands: error chains, exit codes, JSON shapes, progress.

use std::io::{self, Write};

use indicatif::{ProgressBar, ProgressStyle};
use ocikit_layout::{Descriptor, Platform};
use serde_json::{json, Value};

/// Text for a terminal: control characters (C0, DEL, C1) and the Unicode controls that reorder
/// or hide text (bidi overrides and isolates, zero-width marks) are written as escapes (`\n`,
/// `\t`, `\r`, `\u{1b}`), so a ref, path or member name cannot move the cursor, recolour the
/// terminal or forge a line. `--json` output never goes through this: JSON escapes itself.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    fn hostile(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
    }
    if !s.chars().any(hostile) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if hostile(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `eprintln!` for a human: the whole line goes through [`escape`].
macro_rules! note {
    ($($arg:tt)*) => {
        eprintln!("{}", $crate::output::escape(&format!($($arg)*)))
    };
}
pub(crate) use note;

/// Marks an error as "a check found problems" (exit 1) rather than bad input (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckFailed(pub String);

/// The whole error chain on one line, lowercase messages joined by `: `. Library errors that
/// a flag answers are said in the CLI's terms ([`flag_hint`]).
/// A usage error found after parsing (exit 2): one `ocikit: error:` line, then a `hint:` line.
#[derive(Debug)]
pub struct UsageError {
    /// The error line.
    pub message: String,
    /// The hint line.
    pub hint: &'static str,
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

/// A clap usage error as the two lines every usage error prints: clap's first line (its
/// `error: ` prefix dropped) and a hint: clap's tip when it gives one, else the usage line.
pub fn usage_lines(rendered: &str) -> (String, String) {
    let mut raw = rendered.lines();
    let first = raw.next().unwrap_or("bad usage").trim();
    let mut message = first.strip_prefix("error: ").unwrap_or(first).to_string();
    if message.ends_with(':') {
        // clap lists what it means on the lines below ("not provided:\n  <DIR>").
        let listed: Vec<&str> = raw
            .by_ref()
            .map(str::trim)
            .take_while(|l| !l.is_empty())
            .collect();
        message = format!("{message} {}", listed.join(", "));
    }
    let rest: Vec<&str> = raw.map(str::trim).filter(|l| !l.is_empty()).collect();
    let usage = rest
        .iter()
        .find_map(|l| l.strip_prefix("Usage: "))
        .map(|u| format!("usage: {u}"));
    let tip = rest
        .iter()
        .find_map(|l| l.strip_prefix("tip: "))
        .map(String::from);
    let hint = match (tip, usage) {
        (Some(t), Some(u)) => format!("{t}; {u}"),
        (Some(t), None) => t,
        (None, Some(u)) => u,
        (None, None) => "see `ocikit --help`".into(),
    };
    (message, hint)
}

pub fn chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = flag_hint(c).unwrap_or_else(|| escape(&c.to_string()).into_owned());
        if parts.last().is_some_and(|p| p.contains(&s)) {
            continue;
        }
        parts.push(s);
    }
    parts.join(": ")
}

/// The message of a library error that names the flag which answers it, or `None` for errors
/// the library's own message says well. Library errors never name flags; this is where the
/// command line's names are added.
pub fn flag_hint(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use ocikit_docker::convert::{ConvertError, Reason};
    use ocikit_docker::Error as DockerError;
    use ocikit_layout::Error as LayoutError;
    if let Some(e) = e.downcast_ref::<LayoutError>() {
        return match e {
            LayoutError::PartTooSmall { .. } => {
                Some("`--part-size`: too small to hold the bundle's metadata and any data".into())
            }
            LayoutError::SplitBundleToStream => Some(
                "`-o -` (standard output) cannot be used with `--part-size`: each part is a file"
                    .into(),
            ),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<DockerError>() {
        // One line each: escaped whole.
        return match e {
            DockerError::Layout(inner) => flag_hint(inner),
            DockerError::NeedPlatform { name, platforms } => Some(format!(
                "ref `{name}` names an index; choose one of its platforms with --platform: {}",
                platforms.join(", ")
            )),
            DockerError::RefNeedsOneUntagged { name, untagged: 0 } => Some(format!(
                "--ref `{name}` names an untagged image, but every image in the sources has a name"
            )),
            DockerError::RefNeedsOneUntagged { name, untagged } => Some(format!(
                "--ref `{name}` names one image, but the sources hold {untagged} untagged images"
            )),
            DockerError::DryRunNeedsBundle => {
                Some("--dry-run is for bundle parts; the sources are not bundle parts".into())
            }
            _ => None,
        }
        .map(|h| escape(&h).into_owned());
    }
    if let Some(e) = e.downcast_ref::<ocikit_registry::serve::ServeError>() {
        use ocikit_registry::serve::ServeError;
        return match e {
            ServeError::Layout(inner) => flag_hint(inner),
            ServeError::InvalidName { .. } => Some(format!("{e}; name it with --repo NAME=DIR")),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<ConvertError>() {
        return match e {
            ConvertError::Layout(inner) => flag_hint(inner),
            ConvertError::ZstdForDocker => Some(
                "docker manifests cannot hold zstd layers: use `--compress gzip` or `--compress none` with `--to docker`".into(),
            ),
            ConvertError::Refused { target, cases } => {
                let lines: Vec<String> = cases
                    .iter()
                    .map(|c| {
                        let why = match &c.reason {
                            Reason::ZstdLayer {
                                index,
                                digest,
                                media_type,
                            } => format!("layers[{index}] `{digest}` is zstd-compressed (`{media_type}`); add `--compress gzip` or `--compress none`"),
                            other => other.to_string(),
                        };
                        format!("  {}: {}", escape(&c.path.to_string()), escape(&why))
                    })
                    .collect();
                let what = match target {
                    Some(t) => format!("convert to {t}"),
                    None => "recompress".into(),
                };
                Some(format!(
                    "cannot {what}, nothing was written:\n{}",
                    lines.join("\n")
                ))
            }
            _ => None,
        };
    }
    None
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
        "platform": platform_json(d.platform.as_deref()),
        "artifactType": d.artifact_type,
        "annotations": d.annotations.clone().unwrap_or_default(),
    })
}

/// Write pretty JSON and a newline to stdout. Serialized first, so that a closed pipe is an
/// `io::Error` (a quiet exit 0), not a `serde_json::Error`.
pub fn print_json(v: &Value) -> anyhow::Result<()> {
    let mut bytes = ocikit_layout::json::to_vec_pretty(v)?;
    bytes.push(b'\n');
    let mut out = io::stdout().lock();
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(())
}

/// A byte-count progress bar on stderr, hidden unless stderr is a terminal and not quiet.
pub fn byte_bar(quiet: bool, total: u64, msg: &'static str) -> ProgressBar {
    if quiet || !io::IsTerminal::is_terminal(&io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {settled_eta}",
    ) {
        // No ETA until the rate has settled: the first seconds (opening, spooling, the
        // first fsyncs) say nothing about the rest.
        let style = style.with_key(
            "settled_eta",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let settled = s.elapsed() >= std::time::Duration::from_secs(3)
                    && s.len().is_some_and(|l| l > 0 && s.pos() * 50 >= l);
                if settled {
                    let _ = write!(w, "{:#}", indicatif::HumanDuration(s.eta()));
                }
            },
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hinted(e: impl Into<anyhow::Error>) -> String {
        chain(&e.into())
    }

    #[test]
    fn library_errors_name_no_flag_and_the_cli_adds_it() {
        use ocikit_docker::convert::{ConvertError, Reason, Refusal, Target};
        use ocikit_docker::Error as DockerError;
        let digest = ocikit_layout::Digest::sha256(b"x");
        let cases: Vec<(anyhow::Error, String, &str)> = vec![
            (
                ocikit_layout::Error::PartTooSmall { size: 1024, needed: 7168 }.into(),
                "a part size of 1024 bytes is too small to hold the bundle's metadata and any data (at least 7168 bytes)".into(),
                "`--part-size`: too small to hold the bundle's metadata and any data",
            ),
            (
                DockerError::Layout(ocikit_layout::Error::PartTooSmall { size: 1, needed: 2 }).into(),
                "a part size of 1 bytes is too small to hold the bundle's metadata and any data (at least 2 bytes)".into(),
                "`--part-size`: too small to hold the bundle's metadata and any data",
            ),
            (
                DockerError::NeedPlatform { name: "m:1".into(), platforms: vec!["linux/amd64".into(), "linux/arm64".into()] }.into(),
                "ref `m:1` names an index; choose one of its platforms: linux/amd64, linux/arm64".into(),
                "ref `m:1` names an index; choose one of its platforms with --platform: linux/amd64, linux/arm64",
            ),
            (
                DockerError::RefNeedsOneUntagged { name: "x:1".into(), untagged: 0 }.into(),
                "ref `x:1` is for an untagged image, but every image in the sources has a name".into(),
                "--ref `x:1` names an untagged image, but every image in the sources has a name",
            ),
            (
                DockerError::RefNeedsOneUntagged { name: "x:1".into(), untagged: 3 }.into(),
                "ref `x:1` is for one image, but the sources hold 3 untagged images".into(),
                "--ref `x:1` names one image, but the sources hold 3 untagged images",
            ),
            (
                DockerError::DryRunNeedsBundle.into(),
                "a dry run is for bundle parts; the sources are not bundle parts".into(),
                "--dry-run is for bundle parts; the sources are not bundle parts",
            ),
            (
                ConvertError::ZstdForDocker.into(),
                "docker manifests cannot hold zstd layers: recompress to gzip or none when converting to docker".into(),
                "docker manifests cannot hold zstd layers: use `--compress gzip` or `--compress none` with `--to docker`",
            ),
            (
                ConvertError::Refused {
                    target: Some(Target::Docker),
                    cases: vec![
                        Refusal {
                            path: "img".into(),
                            reason: Reason::ZstdLayer { index: 1, digest: digest.clone(), media_type: ocikit_layout::MediaType::parse("application/vnd.oci.image.layer.v1.tar+zstd") },
                        },
                        Refusal { path: "img".into(), reason: Reason::Other("manifest has a subject".into()) },
                    ],
                }
                .into(),
                format!("cannot convert to docker, nothing was written:\n  img: layers[1] `{digest}` is zstd-compressed (`application/vnd.oci.image.layer.v1.tar+zstd`); recompress it to gzip or none\n  img: manifest has a subject"),
                "",
            ),
        ];
        for (e, library, cli) in cases {
            let own = e.to_string();
            assert_eq!(own, library);
            assert!(!own.contains("--"), "{own}");
            let cli = if cli.is_empty() {
                format!("cannot convert to docker, nothing was written:\n  img: layers[1] `{digest}` is zstd-compressed (`application/vnd.oci.image.layer.v1.tar+zstd`); add `--compress gzip` or `--compress none`\n  img: manifest has a subject")
            } else {
                cli.to_string()
            };
            assert_eq!(hinted(e), cli);
        }
    }
}
