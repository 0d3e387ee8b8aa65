//! The build verbs: `append`, `config`, `index create|add|remove`, `unpack`, `squash`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use ocikit_build::append::{self, AppendOptions, NewLayer};
use ocikit_build::config::{self, parse_command, parse_key_edit, ConfigEdits, ConfigOptions};
use ocikit_build::index::{self, IndexOptions, Removal};
use ocikit_build::pack::PackOptions;
use ocikit_build::squash::{self, SquashImageOptions, SquashOptions};
use ocikit_build::unpack::{self, UnpackOptions};
use ocikit_build::Report;
use ocikit_layout::engine::RefChange;
use ocikit_layout::layer::CompressOptions;
use ocikit_layout::{Layout, PlatformSpec};
use serde_json::{json, Value};

use crate::output::{platform_json, print_json, CompressArg};
use crate::{Cli, Code};

/// `ocikit append`.
#[derive(Debug, Args)]
pub struct AppendArgs {
    /// The layout directory.
    pub dir: PathBuf,
    /// The ref (or digest of an index.json entry) to append to.
    pub r#ref: String,
    /// A directory (packed reproducibly) or a tar file (plain, gzip or zstd, taken as it is);
    /// repeatable, appended in order.
    #[arg(long = "layer", value_name = "PATH")]
    pub layers: Vec<PathBuf>,
    /// Hide this path of the image (a whiteout); repeatable.
    #[arg(long = "delete", value_name = "PATH")]
    pub deletes: Vec<String>,
    /// Place the packed directories under this path (e.g. /opt/app).
    #[arg(long, value_name = "PATH")]
    pub prefix: Option<String>,
    /// Keep files' numeric owners (default: 0:0).
    #[arg(long)]
    pub keep_owner: bool,
    /// Keep permission bits as they are (default: 0644/0755 as git does, special bits kept).
    #[arg(long)]
    pub keep_mode: bool,
    /// Compression of the new layers (default: a directory as the image's top layer, a tar
    /// file as it is).
    #[arg(long, value_enum)]
    pub compress: Option<CompressArg>,
    /// Compression level (gzip 0-9, zstd 1-22).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub level: Option<i32>,
    /// Only the images of these platforms of an index: os/arch[/variant] (repeatable).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Vec<PlatformSpec>,
    /// Name the result NEW_REF and leave REF as it is (default: REF moves).
    #[arg(long, value_name = "NEW_REF")]
    pub to: Option<String>,
}

/// `ocikit config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The layout directory.
    pub dir: PathBuf,
    /// The ref (or digest of an index.json entry).
    pub r#ref: String,
    /// Print the config of each image (of --platform ones) as JSON and change nothing.
    #[arg(long)]
    pub json: bool,
    /// Set K=V in Env, or remove K (repeatable).
    #[arg(long, value_name = "K=V|K")]
    pub env: Vec<String>,
    /// Entrypoint: a JSON array, or a shell string (run with /bin/sh -c); clears Cmd unless
    /// --cmd is given too.
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// Cmd: a JSON array, or a shell string.
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    pub cmd: Option<String>,
    /// User.
    #[arg(long)]
    pub user: Option<String>,
    /// WorkingDir.
    #[arg(long)]
    pub workdir: Option<String>,
    /// Set K=V in Labels, or remove K (repeatable).
    #[arg(long, value_name = "K=V|K")]
    pub label: Vec<String>,
    /// Add an exposed port (8080, 8080/tcp, 53/udp; repeatable).
    #[arg(long, value_name = "PORT")]
    pub expose: Vec<String>,
    /// Add a volume (repeatable).
    #[arg(long, value_name = "PATH")]
    pub volume: Vec<String>,
    /// StopSignal.
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Set K=V in the manifest's annotations, or remove K (repeatable).
    #[arg(long, value_name = "K=V|K")]
    pub annotation: Vec<String>,
    /// The config's os.version.
    #[arg(long, value_name = "VERSION")]
    pub os_version: Option<String>,
    /// The config's created time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub created: Option<String>,
    /// Only the images of these platforms of an index: os/arch[/variant] (repeatable).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Vec<PlatformSpec>,
    /// Name the result NEW_REF and leave REF as it is (default: REF moves).
    #[arg(long, value_name = "NEW_REF")]
    pub to: Option<String>,
}

/// `ocikit index`.
#[derive(Debug, Subcommand)]
pub enum IndexCmd {
    /// Make an OCI index of manifests (platforms from their configs); indexes given are
    /// flattened into their entries unless --nested.
    Create {
        /// The layout directory.
        dir: PathBuf,
        /// The ref of the new index.
        new_ref: String,
        /// Refs or digests of the manifests (or indexes).
        #[arg(required = true, value_name = "REF|DIGEST")]
        sources: Vec<String>,
        /// Keep indexes given as entries.
        #[arg(long)]
        nested: bool,
        /// Set K=V in the index's annotations (repeatable).
        #[arg(long, value_name = "K=V")]
        annotation: Vec<String>,
    },
    /// Add manifests (or the entries of indexes) to the index a ref names; the ref moves.
    Add {
        /// The layout directory.
        dir: PathBuf,
        /// The ref of the index.
        r#ref: String,
        /// Refs or digests to add.
        #[arg(required = true, value_name = "REF|DIGEST")]
        sources: Vec<String>,
        /// Keep indexes given as entries.
        #[arg(long)]
        nested: bool,
    },
    /// Remove entries (by ref, digest or platform) from the index a ref names; the ref moves.
    Remove {
        /// The layout directory.
        dir: PathBuf,
        /// The ref of the index.
        r#ref: String,
        /// Refs or digests whose entries go.
        #[arg(value_name = "REF|DIGEST")]
        targets: Vec<String>,
        /// Entries of these platforms go: os/arch[/variant] (repeatable).
        #[arg(long, value_name = "PLATFORM")]
        platform: Vec<PlatformSpec>,
    },
}

/// `ocikit unpack`.
#[derive(Debug, Args)]
pub struct UnpackArgs {
    /// The layout directory.
    pub dir: PathBuf,
    /// The ref (or digest) of the image.
    pub r#ref: String,
    /// The directory to unpack into (must not exist, or be empty).
    #[arg(required_unless_present = "squash", conflicts_with = "squash")]
    pub rootfs: Option<PathBuf>,
    /// Write the flattened rootfs as one layer tar to this file instead (reproducible; no
    /// rootfs is written to disk).
    #[arg(long, value_name = "OUT.tar")]
    pub squash: Option<PathBuf>,
    /// The platform to unpack from an index: os/arch[/variant].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<PlatformSpec>,
    /// Act as an unprivileged user even as root: files owned by the caller, no device nodes.
    #[arg(long, conflicts_with = "squash")]
    pub rootless: bool,
}

/// `ocikit squash`.
#[derive(Debug, Args)]
pub struct SquashArgs {
    /// The layout directory.
    pub dir: PathBuf,
    /// The ref (or digest of an index.json entry) to squash.
    pub r#ref: String,
    /// Compression of the new layer (default: as the image's top layer).
    #[arg(long, value_enum)]
    pub compress: Option<CompressArg>,
    /// Compression level (gzip 0-9, zstd 1-22).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub level: Option<i32>,
    /// Only the images of these platforms of an index: os/arch[/variant] (repeatable).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Vec<PlatformSpec>,
    /// Name the result NEW_REF and leave REF as it is (default: REF moves).
    #[arg(long, value_name = "NEW_REF")]
    pub to: Option<String>,
}

/// `SOURCE_DATE_EPOCH` when set.
fn epoch() -> anyhow::Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Ok(Some(v.trim().parse().map_err(|_| {
            anyhow::anyhow!("SOURCE_DATE_EPOCH `{v}` is not a whole number of seconds")
        })?)),
        _ => Ok(None),
    }
}

fn platforms(images: &Report) -> String {
    let p: Vec<String> = images
        .images
        .iter()
        .filter(|i| i.changed)
        .map(|i| {
            i.platform
                .as_ref()
                .map_or_else(|| "image".into(), |p| p.to_short())
        })
        .collect();
    p.join(", ")
}

fn render(cli: &Cli, name: &str, r: &Report) {
    if cli.quiet {
        return;
    }
    let changed = r.images.iter().filter(|i| i.changed).count();
    match (&r.update, &r.new) {
        (Some(u), _) if u.name.as_deref() != Some(name) => {
            let how = match &u.change {
                RefChange::Created => "created",
                RefChange::Moved(_) => "moved",
                RefChange::Unchanged => "unchanged",
            };
            eprintln!(
                "{}: {how}, {} ({changed} image(s) changed: {})",
                u.label(),
                u.digest,
                platforms(r)
            );
        }
        (_, Some(n)) => eprintln!(
            "{name}: {} -> {} ({changed} image(s) changed: {})",
            r.old.digest,
            n.digest,
            platforms(r)
        ),
        _ => eprintln!("{name}: {} unchanged", r.old.digest),
    }
}

pub fn append(cli: &Cli, a: &AppendArgs) -> anyhow::Result<Code> {
    let layout = Layout::open(&a.dir, cli.layout_options())?;
    let mut created_by = String::from("ocikit append");
    if let Some(p) = &a.prefix {
        created_by.push_str(&format!(" --prefix {p}"));
    }
    for d in &a.deletes {
        created_by.push_str(&format!(" --delete {d}"));
    }
    if a.keep_owner {
        created_by.push_str(" --keep-owner");
    }
    if a.keep_mode {
        created_by.push_str(" --keep-mode");
    }
    let opts = AppendOptions {
        layers: a.layers.iter().map(|p| NewLayer::from_path(p)).collect(),
        deletes: a.deletes.clone(),
        pack: PackOptions {
            prefix: a.prefix.clone(),
            keep_owner: a.keep_owner,
            keep_mode: a.keep_mode,
            source_date_epoch: epoch()?,
        },
        compress: a.compress.map(|c| CompressOptions {
            compression: c.compression(),
            level: a.level,
        }),
        created_by,
        platforms: a.platform.clone(),
        to: a.to.clone(),
    };
    let report = append::append(&layout, &a.r#ref, &opts)?;
    for p in &report.packed {
        for s in &p.sockets {
            eprintln!(
                "note: `{}` is a socket, which a layer cannot hold; left out",
                s.display()
            );
        }
    }
    render(cli, &a.r#ref, &report.edit);
    Ok(0)
}

fn key_edits(v: &[String]) -> anyhow::Result<Vec<(String, Option<String>)>> {
    v.iter().map(|s| Ok(parse_key_edit(s)?)).collect()
}

pub fn config(cli: &Cli, a: &ConfigArgs) -> anyhow::Result<Code> {
    let layout = Layout::open(&a.dir, cli.layout_options())?;
    let edits = ConfigEdits {
        env: key_edits(&a.env)?,
        entrypoint: a.entrypoint.as_deref().map(parse_command).transpose()?,
        cmd: a.cmd.as_deref().map(parse_command).transpose()?,
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        labels: key_edits(&a.label)?,
        expose: a.expose.clone(),
        volumes: a.volume.clone(),
        stop_signal: a.stop_signal.clone(),
        annotations: key_edits(&a.annotation)?,
        os_version: a.os_version.clone(),
        created: a.created.clone(),
    };
    if a.json {
        if !edits.is_empty() || a.to.is_some() {
            anyhow::bail!(
                "--json prints the configs and changes nothing: give it no edit and no --to"
            );
        }
        let shown = config::show(&layout, &a.r#ref, &a.platform)?;
        let out: Vec<Value> = shown
            .iter()
            .map(|s| {
                json!({
                    "platform": platform_json(s.platform.as_ref()),
                    "manifest": s.manifest.digest.as_str(),
                    "config": s.config.as_str(),
                    "document": s.document,
                })
            })
            .collect();
        print_json(&Value::Array(out))?;
        return Ok(0);
    }
    if edits.is_empty() {
        anyhow::bail!(
            "nothing to change: give an edit (--env, --entrypoint, --label, ...) or --json"
        );
    }
    let opts = ConfigOptions {
        edits,
        platforms: a.platform.clone(),
        to: a.to.clone(),
    };
    let report = config::config(&layout, &a.r#ref, &opts)?;
    render(cli, &a.r#ref, &report);
    Ok(0)
}

pub fn index(cli: &Cli, cmd: &IndexCmd) -> anyhow::Result<Code> {
    match cmd {
        IndexCmd::Create {
            dir,
            new_ref,
            sources,
            nested,
            annotation,
        } => {
            let layout = Layout::open(dir, cli.layout_options())?;
            let mut annotations = ocikit_layout::Annotations::new();
            for a in annotation {
                let (k, v) = a
                    .split_once('=')
                    .with_context(|| format!("--annotation `{a}`: expected K=V"))?;
                annotations.insert(k.to_string(), v.to_string());
            }
            let opts = IndexOptions {
                nested: *nested,
                annotations,
            };
            let c = index::create(&layout, new_ref, sources, &opts)?;
            if !cli.quiet {
                let how = match c.update.change {
                    RefChange::Created => "created",
                    RefChange::Moved(_) => "moved",
                    RefChange::Unchanged => "unchanged",
                };
                eprintln!(
                    "{new_ref}: {how}, {} ({} entries)",
                    c.index.digest,
                    c.entries.len()
                );
            }
            Ok(0)
        }
        IndexCmd::Add {
            dir,
            r#ref,
            sources,
            nested,
        } => {
            let layout = Layout::open(dir, cli.layout_options())?;
            let opts = IndexOptions {
                nested: *nested,
                ..IndexOptions::default()
            };
            let e = index::add(&layout, r#ref, sources, &opts)?;
            render_index(cli, r#ref, &e, "added");
            Ok(0)
        }
        IndexCmd::Remove {
            dir,
            r#ref,
            targets,
            platform,
        } => {
            if targets.is_empty() && platform.is_empty() {
                anyhow::bail!("nothing to remove: give refs, digests or --platform");
            }
            let layout = Layout::open(dir, cli.layout_options())?;
            let what: Vec<Removal> = targets
                .iter()
                .map(|t| Removal::Named(t.clone()))
                .chain(platform.iter().map(|p| Removal::Platform(p.clone())))
                .collect();
            let e = index::remove(&layout, r#ref, &what)?;
            render_index(cli, r#ref, &e, "removed");
            Ok(0)
        }
    }
}

fn render_index(cli: &Cli, name: &str, e: &index::Edited, what: &str) {
    if cli.quiet {
        return;
    }
    match &e.new {
        Some(n) => eprintln!(
            "{name}: {} -> {} ({what} {} entries)",
            e.old.digest,
            n.digest,
            e.entries.len()
        ),
        None => eprintln!("{name}: {} unchanged", e.old.digest),
    }
}

pub fn squash(cli: &Cli, a: &SquashArgs) -> anyhow::Result<Code> {
    let layout = Layout::open(&a.dir, cli.layout_options())?;
    let opts = SquashImageOptions {
        source_date_epoch: epoch()?,
        compress: a.compress.map(|c| CompressOptions {
            compression: c.compression(),
            level: a.level,
        }),
        created_by: "ocikit squash".into(),
        platforms: a.platform.clone(),
        to: a.to.clone(),
    };
    let report = squash::squash(&layout, &a.r#ref, &opts)?;
    render(cli, &a.r#ref, &report);
    Ok(0)
}

pub fn unpack(cli: &Cli, a: &UnpackArgs) -> anyhow::Result<Code> {
    let layout = Layout::open(&a.dir, cli.layout_options())?;
    let rootfs = match (&a.rootfs, &a.squash) {
        (_, Some(out)) => {
            let opts = SquashOptions {
                platform: a.platform.clone(),
                source_date_epoch: epoch()?,
            };
            let r = squash::squash_to_file(&layout, &a.r#ref, out, &opts)?;
            if !cli.quiet {
                eprintln!(
                    "squashed {} layer(s) of {}{} into {} ({} entries, {} bytes)",
                    r.squashed.layers,
                    r.manifest
                        .as_ref()
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    r.platform
                        .as_ref()
                        .map(|p| format!(" ({p})"))
                        .unwrap_or_default(),
                    display(out),
                    r.squashed.entries,
                    r.squashed.size
                );
            }
            return Ok(0);
        }
        (Some(r), None) => r,
        (None, None) => anyhow::bail!("give a ROOTFS directory or --squash OUT.tar"),
    };
    let opts = UnpackOptions {
        platform: a.platform.clone(),
        rootless: a.rootless,
    };
    let r = unpack::unpack(&layout, &a.r#ref, rootfs, &opts)?;
    if r.devices_skipped > 0 {
        eprintln!(
            "note: {} device node(s) skipped (made only as root, without --rootless)",
            r.devices_skipped
        );
    }
    if r.xattrs_skipped > 0 {
        eprintln!(
            "note: {} extended attribute(s) not set (not permitted or not supported here)",
            r.xattrs_skipped
        );
    }
    if !cli.quiet {
        eprintln!(
            "unpacked {} layer(s) of {}{} into {}",
            r.layers,
            r.manifest
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_default(),
            r.platform
                .as_ref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default(),
            display(rootfs)
        );
    }
    Ok(0)
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
