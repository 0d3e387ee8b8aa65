//! The mirroring verbs: inventory, bundle (and bundle loading, reached through `import`).

use std::path::{Path, PathBuf};

use ocikit_layout::bundle::{self, BundleOptions, LoadReport};
use ocikit_layout::engine::RefChange;
use ocikit_layout::inventory::Inventory;
use ocikit_layout::select::{self, SelectOptions};
use ocikit_layout::{Layout, PlatformSpec};

use crate::output::note;
use crate::output::{human_bytes, CheckFailed};
use crate::{Cli, Code};

/// Parse `4G`, `512M`, `100K` or plain bytes (K, M, G, T are powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => {
                    return Err(format!(
                        "invalid size `{s}`: use a number with an optional K, M, G or T"
                    ))
                }
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size `{s}`: use a number with an optional K, M, G or T"))?;
    n.checked_mul(mult)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("invalid size `{s}`"))
}

pub fn inventory(cli: &Cli, dir: &Path, out: Option<&Path>) -> anyhow::Result<Code> {
    let layout = Layout::open(dir, cli.layout_options())?;
    let inv = Inventory::of(&layout)?;
    match out {
        Some(path) if path != Path::new("-") => {
            inv.write_file(path, dir, cli.layout_options().durable)?;
            if !cli.quiet {
                note!(
                    "wrote inventory of {} blob(s) and {} ref(s) to `{}`",
                    inv.blobs.len(),
                    inv.refs.len(),
                    path.display()
                );
            }
        }
        _ => {
            inv.write_to(&mut std::io::stdout().lock())?;
        }
    }
    Ok(0)
}

#[allow(clippy::too_many_arguments)]
pub fn bundle(
    cli: &Cli,
    src: &Path,
    refs: &[String],
    out: &Path,
    have: &[PathBuf],
    platforms: &[PlatformSpec],
    referrers: bool,
    part_size: Option<u64>,
) -> anyhow::Result<Code> {
    let layout = Layout::open(src, cli.layout_options())?;
    let sel = select::select(
        &layout,
        &SelectOptions {
            refs: refs.to_vec(),
            platforms: platforms.to_vec(),
            referrers,
        },
    )?;
    let mut invs = Vec::new();
    for h in have {
        invs.push(Inventory::read(h)?);
    }
    let opts = BundleOptions {
        part_size,
        mtime: crate::output::source_date_epoch()?,
        ..BundleOptions::default()
    };
    let report = if out == Path::new("-") {
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        bundle::write_bundle_to(&layout, &sel, &invs, &opts, &mut w, out)?
    } else {
        bundle::write_bundle(&layout, &sel, &invs, &opts, out)?
    };
    if !cli.quiet {
        let m = &report.manifest;
        let bytes: u64 = m.blobs.iter().map(|b| b.size).sum();
        note!(
            "bundled {} ref(s), {} blob(s) ({}), left out {} blob(s) the far side has, in {} part(s):",
            m.refs.len(),
            m.blobs.len(),
            human_bytes(bytes),
            m.assumed.len(),
            report.parts.len()
        );
        for (p, len) in &report.parts {
            note!("  {} ({})", p.display(), human_bytes(*len));
        }
    }
    Ok(0)
}

/// Render what a bundle load did (`import` of bundle parts). Exit 1 when a part was rejected,
/// the layout lacks blobs the bundle assumed, or a ref needs a blob no part carries; exit 3
/// ("loaded, incomplete") when every part given loaded but refs wait for parts not given yet.
pub fn render_load(cli: &Cli, report: &LoadReport) -> anyhow::Result<Code> {
    print_load_report(cli, report);
    let mut why = Vec::new();
    for p in &report.parts {
        // Errors about the part itself already start with its name.
        let prefix = format!("`{}`: ", p.path.display());
        for e in &p.errors {
            if e.starts_with(&prefix) {
                why.push(e.clone());
            } else {
                why.push(format!("{prefix}{e}"));
            }
        }
    }
    if !report.missing_assumed.is_empty() {
        let list: Vec<String> = report
            .missing_assumed
            .iter()
            .map(|d| format!("`{d}`"))
            .collect();
        why.push(format!(
            "the layout lacks {} blob(s) the bundle assumed present, so no ref was committed: {}",
            list.len(),
            list.join(", ")
        ));
    }
    for w in report.waiting.iter().filter(|w| w.parts.is_empty()) {
        why.push(format!(
            "`{}` needs {} blob(s) that no part of the bundle carries: {}",
            w.name,
            w.missing.len(),
            digests(&w.missing)
        ));
    }
    if !why.is_empty() {
        return Err(CheckFailed(why.join("; ")).into());
    }
    if report.waiting.is_empty() {
        return Ok(0);
    }
    let parts: std::collections::BTreeSet<u32> = report
        .waiting
        .iter()
        .flat_map(|w| w.parts.iter().copied())
        .collect();
    if !cli.quiet {
        note!(
            "loaded, incomplete: {} ref(s) wait for part(s) {}",
            report.waiting.len(),
            part_list(&parts)
        );
    }
    Ok(3)
}

fn digests(ds: &[ocikit_layout::Digest]) -> String {
    ds.iter()
        .map(|d| format!("`{d}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn part_list(parts: &std::collections::BTreeSet<u32>) -> String {
    parts
        .iter()
        .map(|p| format!("{p:03}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_load_report(cli: &Cli, r: &LoadReport) {
    if cli.quiet {
        return;
    }
    let verb = if r.dry_run { "would write" } else { "wrote" };
    for p in &r.parts {
        note!(
            "{}: {verb} {} blob(s), {} chunk(s), {} already present",
            p.path.display(),
            p.written.len(),
            p.chunks,
            p.skipped
        );
    }
    for u in &r.committed {
        let verb = if r.dry_run {
            "would commit"
        } else {
            "committed"
        };
        let (name, digest) = (u.label(), &u.digest);
        match &u.change {
            RefChange::Moved(from) => note!(
                "{verb} `{name}` -> `{digest}` (moved from {})",
                from.iter()
                    .map(|d| format!("`{d}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => note!("{verb} `{name}` -> `{digest}`"),
        }
    }
    for w in r.waiting.iter().filter(|w| !w.parts.is_empty()) {
        note!(
            "`{}` waits for {} blob(s) in part(s) {}: {}",
            w.name,
            w.missing.len(),
            part_list(&w.parts),
            digests(&w.missing)
        );
    }
}

pub fn copy(
    cli: &Cli,
    src: &Path,
    dst: &Path,
    refs: &[String],
    platforms: &[PlatformSpec],
    referrers: bool,
) -> anyhow::Result<Code> {
    let source = Layout::open(src, cli.layout_options())?;
    let report = ocikit_layout::mirror::copy_to_path(
        &source,
        dst,
        cli.layout_options(),
        &SelectOptions {
            refs: refs.to_vec(),
            platforms: platforms.to_vec(),
            referrers,
        },
    )?;
    if !cli.quiet {
        for u in &report.entries {
            if let RefChange::Moved(from) = &u.change {
                let from: Vec<String> = from.iter().map(|d| format!("`{d}`")).collect();
                note!(
                    "moved `{}` from {} to `{}`",
                    u.label(),
                    from.join(", "),
                    u.digest
                );
            }
        }
        note!(
            "copied {} entr{}: {} blob(s) linked, {} copied, {} already present{}",
            report.entries.len(),
            if report.entries.len() == 1 {
                "y"
            } else {
                "ies"
            },
            report.blobs.linked,
            report.blobs.copied,
            report.blobs.present,
            if report.blobs.replaced > 0 {
                format!(
                    ", {} replaced (the destination's copy was corrupt)",
                    report.blobs.replaced
                )
            } else {
                String::new()
            }
        );
    }
    Ok(0)
}
