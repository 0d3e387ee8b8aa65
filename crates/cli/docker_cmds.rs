//! The Docker-format verbs: import, export.

use std::path::{Path, PathBuf};

use ocikit_docker::import::{import_any, AnyReport, ImportOptions};
use ocikit_docker::source::Kind;
use ocikit_layout::layer::CompressOptions;

use crate::output::note;
use crate::output::CompressArg;
use crate::{Cli, Code};

/// `import`: images (docker archives, OCI archives and layouts, `dir:` copies) or bundle parts,
/// whichever the sources are; the library decides.
pub fn import(
    cli: &Cli,
    sources: &[PathBuf],
    dir: &Path,
    asked: Option<CompressArg>,
    level: Option<i32>,
    ref_name: Option<&str>,
    dry_run: bool,
) -> anyhow::Result<Code> {
    check_destination(sources, dir)?;
    let compress = asked.unwrap_or(CompressArg::Gzip);
    if level.is_some() && compress == CompressArg::None {
        anyhow::bail!("--level needs --compress gzip or zstd");
    }
    let total: u64 = sources
        .iter()
        .filter_map(|s| std::fs::metadata(s).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    let bar = crate::output::byte_bar(cli.quiet, total, "importing");
    let progress = |n: u64| bar.inc(n);
    let opts = ImportOptions {
        compress: CompressOptions {
            compression: compress.compression(),
            level,
        },
        ref_name: ref_name.map(String::from),
        progress: Some(&progress),
    };
    let result = import_any(sources, dir, cli.layout_options(), &opts, dry_run);
    bar.finish_and_clear();
    let report = match result? {
        AnyReport::Images(r) => r,
        AnyReport::Bundle(r) => return crate::mirror_cmds::render_load(cli, &r),
    };
    for m in report.moved.iter().filter(|_| !cli.quiet) {
        let from: Vec<String> = m.from.iter().map(|d| format!("`{d}`")).collect();
        note!(
            "ref `{}` moved from {} to `{}`",
            m.name,
            from.join(", "),
            m.to
        );
    }
    if !cli.quiet {
        let copied: std::collections::BTreeSet<&Path> = report
            .entries
            .iter()
            .filter(|e| matches!(e.kind, Kind::OciArchive | Kind::LayoutDir))
            .map(|e| e.source.as_path())
            .collect();
        if asked.is_some() || level.is_some() {
            for s in copied {
                note!(
                    "note: `{}` is an OCI archive or layout: its blobs are copied as they are; --compress and --level apply to docker archives and dir: copies",
                    s.display()
                );
            }
        }
        if report.created {
            note!("created OCI image layout `{}`", dir.display());
        }
        for e in &report.entries {
            let platform = e
                .descriptor
                .platform
                .as_ref()
                .map(|p| format!(" ({})", p.to_short()))
                .unwrap_or_default();
            note!(
                "imported {} {}{} from `{}` ({})",
                e.descriptor
                    .ref_name()
                    .map(|r| format!("`{r}`"))
                    .unwrap_or_else(|| "untagged".into()),
                e.descriptor.digest,
                platform,
                e.source.display(),
                e.kind.name()
            );
        }
    }
    Ok(0)
}

/// The argument trap: `import LAYOUT out.tar` (meant: export) must not make a layout named
/// `out.tar`. A destination that is an existing file, or that does not exist and is named like
/// an archive, is refused (exit 2) with a hint.
fn check_destination(sources: &[PathBuf], dir: &Path) -> anyhow::Result<()> {
    const HINT: &str = "the destination layout directory comes last (ocikit import SRC... DIR); to write an archive from a layout, use `ocikit export DIR -o FILE`";
    if sources.is_empty() {
        anyhow::bail!(crate::output::UsageError {
            message: format!(
                "`{}` is the only argument: import needs the sources and then the destination layout directory",
                crate::output::escape(&dir.display().to_string())
            ),
            hint: "usage: ocikit import [OPTIONS] <SRC>... <DIR>",
        });
    }
    let archive_like = [".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst", ".tar.zstd"];
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => anyhow::bail!(crate::output::UsageError {
            message: format!(
                "the destination `{}` exists and is not a directory",
                crate::output::escape(&dir.display().to_string())
            ),
            hint: HINT,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = dir.to_string_lossy().to_ascii_lowercase();
            if archive_like.iter().any(|s| name.ends_with(s)) {
                anyhow::bail!(crate::output::UsageError {
                    message: format!(
                        "the destination `{}` is named like an archive, not a layout directory",
                        crate::output::escape(&dir.display().to_string())
                    ),
                    hint: HINT,
                });
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// Docker 25+ dual format: OCI layout + manifest.json + repositories, uncompressed layers.
    DockerArchive,
    /// A tarred OCI layout, reduced to what the refs reach.
    OciArchive,
}

pub fn export(
    cli: &Cli,
    dir: &Path,
    refs: &[String],
    output: &Path,
    format: FormatArg,
    platform: Option<ocikit_layout::PlatformSpec>,
) -> anyhow::Result<Code> {
    use ocikit_docker::export::{export as run_export, export_to_file, ExportOptions, Format};
    let layout = ocikit_layout::Layout::open(dir, cli.layout_options())?;
    // The total (the blob bytes the archive carries) is known once every image is checked.
    let bar = crate::output::byte_bar(cli.quiet, 0, "exporting");
    let on_total = |n: u64| bar.set_length(n);
    let progress = |n: u64| bar.inc(n);
    let opts = ExportOptions {
        format: match format {
            FormatArg::DockerArchive => Format::DockerArchive,
            FormatArg::OciArchive => Format::OciArchive,
        },
        platform,
        mtime: crate::output::source_date_epoch()?,
        on_total: Some(&on_total),
        progress: Some(&progress),
    };
    let report = if output == Path::new("-") {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        run_export(&layout, refs, &opts, &mut out)?
    } else {
        export_to_file(&layout, refs, &opts, output)?
    };
    bar.finish_and_clear();
    if !cli.quiet {
        note!(
            "wrote {} ({} entries, {} blobs, {}) to `{}`",
            opts.format.name(),
            report.entries,
            report.blobs,
            crate::output::human_bytes(report.bytes),
            output.display()
        );
    }
    Ok(0)
}
