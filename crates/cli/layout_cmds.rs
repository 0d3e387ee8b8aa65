//! The layout verbs: init, ls, inspect, cat, fsck, gc, tag, untag.

use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::Context as _;
use ocikit_layout::fsck::{FsckOptions, Severity};
use ocikit_layout::refs::{self, TagOutcome};
use ocikit_layout::walk::{DocStatus, Walk};
use ocikit_layout::{Digest, Layout, JSON_LIMIT};
use serde_json::{json, Value};

use crate::output::note;
use crate::output::{byte_bar, entry_json, escape, human_bytes, platform_json, print_json};
use crate::{Cli, Code};

fn open(cli: &Cli, dir: &Path) -> anyhow::Result<Layout> {
    Ok(Layout::open(dir, cli.layout_options())?)
}

pub fn init(cli: &Cli, dir: &Path) -> anyhow::Result<Code> {
    let (_, created) = Layout::init(dir, cli.layout_options())?;
    if !cli.quiet {
        if created {
            note!("created OCI image layout `{}`", dir.display());
        } else {
            note!(
                "`{}` is already an OCI image layout; left as it is",
                dir.display()
            );
        }
    }
    Ok(0)
}

pub fn ls(cli: &Cli, dir: &Path, json: bool, image_id: bool) -> anyhow::Result<Code> {
    let layout = open(cli, dir)?;
    let index = layout.read_index()?;
    let ids = if image_id {
        index
            .value
            .manifests
            .iter()
            .map(|d| refs::image_id(&layout, d))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    if json {
        print_json(&Value::Array(
            index
                .value
                .manifests
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let mut v = entry_json(d);
                    if let (Some(id), Value::Object(o)) = (ids.get(i), &mut v) {
                        o.insert(
                            "imageId".into(),
                            id.as_ref().map_or(Value::Null, |d| d.as_str().into()),
                        );
                    }
                    v
                })
                .collect(),
        ))?;
        return Ok(0);
    }
    // Two passes over the entries, each row's cells made when needed: the widths, then the
    // lines. No table is held: an index of 100,000 refs would be half a million strings.
    let row = |i: usize, d| ls_row(d, ids.get(i));
    let mut header: Vec<std::borrow::Cow<'_, str>> = vec![
        "REF".into(),
        "DIGEST".into(),
        "MEDIA TYPE".into(),
        "SIZE".into(),
        "PLATFORM".into(),
    ];
    if image_id {
        header.insert(2, "IMAGE ID".into());
    }
    let manifests = &index.value.manifests;
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for (i, d) in manifests.iter().enumerate() {
        for (w, c) in widths.iter_mut().zip(row(i, d)) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let rows = manifests.iter().enumerate().map(|(i, d)| row(i, d));
    let mut line = String::new();
    for r in std::iter::once(header.clone()).chain(rows) {
        line.clear();
        for (k, (c, w)) in r.iter().zip(widths.iter().copied()).enumerate() {
            if k > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            // Padded by hand: `format!`'s width stops at 65,535 and panics past it, and a
            // layout can hold a longer ref or media type.
            for _ in c.chars().count()..w {
                line.push(' ');
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    out.flush()?;
    Ok(0)
}

/// The cells of `ls`'s row for the entry `d` (with `id`, the image ID column).
fn ls_row<'a>(
    d: &'a ocikit_layout::Descriptor,
    id: Option<&'a Option<Digest>>,
) -> Vec<std::borrow::Cow<'a, str>> {
    let mut row = vec![
        escape(d.ref_name().unwrap_or("-")),
        d.digest.as_str().into(),
        escape(d.media_type.as_str()),
        d.size.to_string().into(),
        match &d.platform {
            Some(p) => escape(&p.to_short()).into_owned().into(),
            None => "-".into(),
        },
    ];
    if let Some(id) = id {
        row.insert(2, id.as_ref().map_or("-", |d| d.as_str()).into());
    }
    row
}

pub fn inspect(cli: &Cli, dir: &Path, target: &str, json: bool) -> anyhow::Result<Code> {
    let layout = open(cli, dir)?;
    let index = layout.read_index()?;
    let desc = refs::resolve_anywhere(&layout, &index.value, target)?;
    let walk = Walk::from_descriptor(&layout, &desc);
    let root = walk.roots[0];
    if json {
        print_json(&node_json(&walk, root))?;
    } else {
        let mut out = io::stdout().lock();
        print_tree(&mut out, &walk, root, "", "")?;
    }
    Ok(0)
}

fn node_json(walk: &Walk, i: usize) -> Value {
    let n = &walk.nodes[i];
    let mut v = json!({
        "digest": n.digest().as_str(),
        "mediaType": n.descriptor.media_type.as_str(),
        "size": if n.size_known { json!(n.descriptor.size) } else { Value::Null },
        "kind": n.kind.name(),
        "role": n.role.name(),
        "platform": platform_json(n.platform()),
        "children": n.children.iter().map(|&c| node_json(walk, c)).collect::<Vec<_>>(),
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(d) = &n.declared {
            obj.insert("declaredMediaType".into(), json!(d.as_str()));
        }
        if let Some(a) = &n.descriptor.artifact_type {
            obj.insert("artifactType".into(), json!(a));
        }
        if let Some(s) = status_text(&n.status) {
            obj.insert("problem".into(), json!(s));
        }
        if n.expanded_at.is_some() {
            obj.insert("shownAbove".into(), json!(true));
        }
    }
    v
}

fn status_text(s: &DocStatus) -> Option<String> {
    match s {
        DocStatus::NotRead | DocStatus::Ok => None,
        DocStatus::Missing => Some("missing".into()),
        DocStatus::Corrupt(e) => Some(e.to_string()),
        DocStatus::Unparseable(m) => Some(format!("unparseable: {m}")),
        DocStatus::Unverifiable => Some("unverifiable digest".into()),
        DocStatus::Cycle => Some("cycle".into()),
        DocStatus::Truncated => Some("not expanded: too many nodes".into()),
        DocStatus::TooDeep => Some("not expanded: nested too deep".into()),
    }
}

fn print_tree(
    out: &mut impl Write,
    walk: &Walk,
    i: usize,
    first: &str,
    rest: &str,
) -> anyhow::Result<()> {
    let n = &walk.nodes[i];
    let mut line = first.to_string();
    if !matches!(n.role, ocikit_layout::walk::Role::Root(_)) {
        line.push_str(&format!("{} ", n.role));
    }
    line.push_str(&format!(
        "{} {} [{}]",
        n.digest(),
        n.descriptor.media_type,
        n.kind.name()
    ));
    if n.size_known {
        line.push_str(&format!(" {} bytes", n.descriptor.size));
    }
    if let Some(p) = n.platform() {
        line.push_str(&format!(" {}", p.to_short()));
    }
    if let Some(a) = &n.descriptor.artifact_type {
        line.push_str(&format!(" artifactType={a}"));
    }
    if let Some(d) = &n.declared {
        line.push_str(&format!(" (document says {d})"));
    }
    if let Some(s) = status_text(&n.status) {
        line.push_str(&format!(" !! {s}"));
    }
    if n.expanded_at.is_some() {
        line.push_str(" (shown above)");
    }
    writeln!(out, "{}", escape(&line))?;
    let count = n.children.len();
    for (k, &c) in n.children.iter().enumerate() {
        let last = k + 1 == count;
        let f = format!("{rest}{}", if last { "└── " } else { "├── " });
        let r = format!("{rest}{}", if last { "    " } else { "│   " });
        print_tree(out, walk, c, &f, &r)?;
    }
    Ok(())
}

pub fn cat(cli: &Cli, dir: &Path, target: &str) -> anyhow::Result<Code> {
    let layout = open(cli, dir)?;
    // A ref first (`app:1` also fits the digest grammar), then a digest.
    let index = layout.read_index()?;
    let (digest, size) = if refs::entries_named(&index.value, target).is_empty() {
        (Digest::parse(target)?, None)
    } else {
        let d = refs::resolve(&index.value, target, layout.root())?;
        (d.digest, Some(d.size))
    };
    let path = layout.blob_path(&digest);
    let mut reader = layout.open_blob(&digest, size)?;
    let len = reader
        .get_ref()
        .metadata()
        .with_context(|| format!("`{}`", path.display()))?
        .len();
    let mut out = io::stdout().lock();
    if len <= JSON_LIMIT {
        // Small blobs are verified before a byte is written.
        let mut buf = Vec::with_capacity(len as usize);
        reader
            .read_to_end(&mut buf)
            .map_err(|e| ocikit_layout::unwrap_io(e, &path))?;
        out.write_all(&buf)?;
    } else {
        // Large ones stream; a mismatch is reported (exit 2) when the end is reached.
        let mut buf = vec![0u8; 1 << 18];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| ocikit_layout::unwrap_io(e, &path))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
        }
    }
    out.flush()?;
    Ok(0)
}

pub fn fsck(cli: &Cli, dir: &Path, deep: bool, strict: bool, json: bool) -> anyhow::Result<Code> {
    let layout = open(cli, dir)?;
    let bar = byte_bar(cli.quiet, 0, "checking");
    bar.set_length(blob_bytes(&layout));
    let progress = |n: u64| bar.inc(n);
    let report = ocikit_layout::fsck::fsck(
        &layout,
        &FsckOptions {
            deep,
            progress: Some(&progress),
        },
    )?;
    bar.finish_and_clear();
    let count = |sev: Severity| {
        report
            .findings
            .iter()
            .filter(|f| f.kind.severity_with(strict) == sev)
            .count()
    };
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    if json {
        let findings: Vec<Value> = report
            .findings
            .iter()
            .map(|f| {
                json!({
                    "severity": f.kind.severity_with(strict).name(),
                    "kind": f.kind.name(),
                    "digest": f.digest.as_ref().map(|d| d.as_str()),
                    "path": f.path,
                    "detail": f.detail,
                })
            })
            .collect();
        print_json(&json!({
            "clean": report.is_clean_with(strict),
            "errors": errors,
            "blobsChecked": report.blobs_checked,
            "findings": findings,
        }))?;
    } else {
        let mut out = io::stdout().lock();
        for f in &report.findings {
            let sev = f.kind.severity_with(strict).name();
            let digest = f
                .digest
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_else(|| "-".into());
            let path = if f.path.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.path.join(" > "))
            };
            let line = format!("{sev}: {}: {digest}{path}: {}", f.kind.name(), f.detail);
            writeln!(out, "{}", escape(&line))?;
        }
        if !cli.quiet {
            note!(
                "checked {} blobs ({}): {} error(s), {}{} note(s)",
                report.blobs_checked,
                human_bytes(report.bytes_hashed),
                errors,
                if warnings > 0 {
                    format!("{warnings} warning(s), ")
                } else {
                    String::new()
                },
                report.findings.len() - errors - warnings
            );
        }
    }
    Ok(if report.is_clean_with(strict) { 0 } else { 1 })
}

fn blob_bytes(layout: &Layout) -> u64 {
    ocikit_layout::fsck::list_blobs(layout)
        .map(|v| {
            v.iter()
                .filter_map(|(_, p)| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

pub fn gc(cli: &Cli, dir: &Path, dry_run: bool, json: bool) -> anyhow::Result<Code> {
    let layout = open(cli, dir)?;
    let report = ocikit_layout::gc::gc(&layout, dry_run)?;
    if json {
        print_json(&json!({
            "dryRun": report.dry_run,
            "removed": report.blobs.iter().map(|(d, s)| json!({"digest": d.as_str(), "size": s})).collect::<Vec<_>>(),
            "tempFiles": report.temp_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "bytes": report.bytes,
        }))?;
    } else {
        let verb = if dry_run { "would remove" } else { "removed" };
        let mut out = io::stdout().lock();
        for (d, s) in &report.blobs {
            writeln!(out, "{verb} {d} ({s} bytes)")?;
        }
        for p in &report.temp_files {
            writeln!(
                out,
                "{}",
                escape(&format!("{verb} temp file {}", p.display()))
            )?;
        }
        if !cli.quiet {
            note!(
                "{verb} {} blob(s) and {} temp file(s), {}",
                report.blobs.len(),
                report.temp_files.len(),
                human_bytes(report.bytes)
            );
        }
    }
    Ok(0)
}

pub fn tag(cli: &Cli, dir: &Path, source: &str, new_ref: &str) -> anyhow::Result<Code> {
    let layout = open(cli, dir)?;
    let tagged = refs::tag_in(&layout, source, new_ref)?;
    if let TagOutcome::Moved(from) = &tagged.outcome {
        if !cli.quiet {
            let from: Vec<String> = from.iter().map(|d| format!("`{d}`")).collect();
            note!(
                "moved `{new_ref}` from {} to `{}`",
                from.join(", "),
                tagged.target.digest
            );
        }
    }
    Ok(0)
}

pub fn untag(cli: &Cli, dir: &Path, name: &str) -> anyhow::Result<Code> {
    let layout = open(cli, dir)?;
    let removed = refs::untag_in(&layout, name)?;
    if removed.len() > 1 && !cli.quiet {
        note!("removed {} entries named `{name}`", removed.len());
    }
    Ok(0)
}
