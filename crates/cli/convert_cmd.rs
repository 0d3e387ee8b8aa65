//! `convert`: Docker <-> OCI media types, optionally recompressing layers.

use std::path::Path;

use ocikit_docker::convert::{self, ConvertOptions, Target};
use ocikit_layout::layer::CompressOptions;
use ocikit_layout::Layout;

use crate::output::note;
use crate::output::CompressArg;
use crate::{Cli, Code};

/// `--to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ToFormat {
    /// OCI image manifests and indexes.
    Oci,
    /// Docker schema2 manifests and manifest lists.
    Docker,
}

pub fn convert(
    cli: &Cli,
    dir: &Path,
    refs: &[String],
    to: Option<ToFormat>,
    compress: Option<CompressArg>,
    level: Option<i32>,
) -> anyhow::Result<Code> {
    let layout = Layout::open(dir, cli.layout_options())?;
    let opts = ConvertOptions::new(
        to.map(|t| match t {
            ToFormat::Oci => Target::Oci,
            ToFormat::Docker => Target::Docker,
        }),
        refs.to_vec(),
        compress.map(|c| CompressOptions {
            compression: c.compression(),
            level,
        }),
    );
    let report = convert::convert(&layout, &opts)?;
    for d in &report.dropped {
        note!(
            "warning: dropped the annotations of `{}` (docker has no field for them): {}",
            d.digest,
            d.keys
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !cli.quiet {
        for e in &report.entries {
            match &e.new {
                Some(n) => note!(
                    "{}: {} -> {} ({} -> {})",
                    e.name,
                    e.old.digest,
                    n.digest,
                    e.old.media_type,
                    n.media_type
                ),
                None => note!("{}: {} unchanged", e.name, e.old.digest),
            }
        }
        if !report.recompressed.is_empty() {
            note!(
                "recompressed {} layer(s) to {}",
                report.recompressed.len(),
                opts.compress
                    .map(|c| c.compression.as_str())
                    .unwrap_or_default()
            );
        }
    }
    Ok(0)
}
