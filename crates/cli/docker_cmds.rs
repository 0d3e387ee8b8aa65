//! The Docker-format verbs: import, export.

use std::path::{Path, PathBuf};

use ocikit_docker::import::{import as run_import, ImportOptions};
use ocikit_layout::layer::CompressOptions;
use ocikit_layout::Compression;

use crate::{Cli, Code};

/// `--compress` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressArg {
    /// gzip (read by every tool).
    Gzip,
    /// Zstandard (smaller and faster; needs containerd 1.5+, Docker 23+, Podman).
    Zstd,
    /// Plain tar.
    None,
}

impl CompressArg {
    pub fn compression(self) -> Compression {
        match self {
            CompressArg::Gzip => Compression::Gzip,
            CompressArg::Zstd => Compression::Zstd,
            CompressArg::None => Compression::None,
        }
    }
}

pub fn import(
    cli: &Cli,
    sources: &[PathBuf],
    dir: &Path,
    compress: CompressArg,
    level: Option<i32>,
    ref_name: Option<&str>,
) -> anyhow::Result<Code> {
    if level.is_some() && compress == CompressArg::None {
        anyhow::bail!("--level needs --compress gzip or zstd");
    }
    let opts = ImportOptions {
        compress: CompressOptions {
            compression: compress.compression(),
            level,
        },
        ref_name: ref_name.map(String::from),
    };
    let report = run_import(sources, dir, cli.layout_options(), &opts)?;
    for m in &report.moved {
        // Always said, even with -q: the user's ref now names other content.
        let from: Vec<String> = m.from.iter().map(|d| format!("`{d}`")).collect();
        eprintln!(
            "ref `{}` moved from {} to `{}`",
            m.name,
            from.join(", "),
            m.to
        );
    }
    if !cli.quiet {
        if report.created {
            eprintln!("created OCI image layout `{}`", dir.display());
        }
        for e in &report.entries {
            let platform = e
                .descriptor
                .platform
                .as_ref()
                .map(|p| format!(" ({})", p.to_short()))
                .unwrap_or_default();
            eprintln!(
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
