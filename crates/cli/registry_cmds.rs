//! The registry verbs: pull, push, login.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::Args;
use indicatif::{MultiProgress, ProgressBar};
use ocikit_layout::engine::{RefChange, RefUpdate};
use ocikit_layout::{Layout, PlatformSpec};
use ocikit_registry::auth::Credentials;
use ocikit_registry::{Client, ClientOptions, ImageRef, Progress};
use serde_json::json;

use crate::output::{byte_bar, human_bytes, print_json};
use crate::{Cli, Code};

/// How to reach the registry (shared by pull, push and login).
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Allow plain HTTP to this registry (always allowed for localhost and 127.0.0.1).
    #[arg(long)]
    pub plain_http: bool,
    /// Also trust the CA certificates in this PEM file (repeatable).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Vec<PathBuf>,
    /// User name (with --password-stdin); otherwise credentials come from Docker's config.
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password (or token) from stdin.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Blobs moved at once.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub parallel: usize,
}

/// `ocikit pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image: host[:port]/repo[:tag][@digest] (Docker Hub short names as docker takes them).
    pub image: String,
    /// The layout directory (created if missing).
    pub dir: PathBuf,
    /// The ref to record (default: the image's full name with its tag).
    #[arg(long = "ref", value_name = "NAME")]
    pub ref_name: Option<String>,
    /// Keep only these platforms from an index: os/arch[/variant] (repeatable).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Vec<PlatformSpec>,
    /// Also pull manifests whose subject is pulled (signatures, SBOMs), recursively.
    #[arg(long)]
    pub referrers: bool,
    /// A JSON report on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `ocikit push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The layout directory.
    pub dir: PathBuf,
    /// The ref (or digest of an index.json entry) to push.
    pub source: String,
    /// Where: host[:port]/repo[:tag][@digest] (no tag: the ref's own tag).
    pub image: String,
    /// Keep only these platforms from an index: os/arch[/variant] (repeatable).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Vec<PlatformSpec>,
    /// Also push manifests whose subject is pushed (signatures, SBOMs), recursively.
    #[arg(long)]
    pub referrers: bool,
    /// Upload blobs in chunks of this size (K, M, G; default: one request per blob, chunks
    /// only after the registry refuses a body as too large).
    #[arg(long, value_name = "SIZE", value_parser = crate::mirror_cmds::parse_size)]
    pub chunk_size: Option<u64>,
    /// A JSON report on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `ocikit login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry: host[:port] (docker.io for Docker Hub).
    pub registry: String,
    #[command(flatten)]
    pub args: RegistryArgs,
}

fn client(
    cli: &Cli,
    reg: &RegistryArgs,
    image: &ImageRef,
    chunk: u64,
) -> anyhow::Result<(Client, indicatif::ProgressBar)> {
    let credentials = match &reg.username {
        Some(u) => Some(Credentials::Basic {
            username: u.clone(),
            password: read_password()?,
        }),
        None => None,
    };
    let bar = byte_bar(cli.quiet, 0, "total");
    let progress: ocikit_registry::client::ProgressFn = Arc::new(blob_bars(bar.clone()));
    let opts = ClientOptions {
        plain_http: reg.plain_http,
        ca_files: reg.ca_file.clone(),
        credentials,
        parallelism: reg.parallel.max(1),
        chunk_size: chunk,
        progress: Some(progress),
        ..ClientOptions::default()
    };
    let client = Client::connect(&image.registry, image.api_host(), opts)?;
    if !cli.quiet {
        for n in client.notes() {
            eprintln!("ocikit: note: {n}");
        }
    }
    Ok((client, bar))
}

/// The total bar, with a bar per blob moving under it (terminals only).
fn blob_bars(total: ProgressBar) -> impl Fn(Progress) + Send + Sync {
    let multi = (!total.is_hidden()).then(|| {
        let m = MultiProgress::new();
        m.add(total.clone());
        m
    });
    let bars: Mutex<HashMap<Arc<str>, ProgressBar>> = Mutex::new(HashMap::new());
    move |p| match p {
        Progress::Start { digest, size } => {
            total.inc_length(size);
            if let Some(m) = &multi {
                let short: String = digest.chars().take(19).collect();
                let b = byte_bar(false, size, "");
                b.set_message(short);
                lock(&bars).insert(digest, m.add(b));
            }
        }
        Progress::Bytes { digest, n } => {
            total.inc(n);
            let mut bars = lock(&bars);
            if let Some(b) = bars.get(&digest) {
                b.inc(n);
                if b.position() >= b.length().unwrap_or(0) {
                    b.finish_and_clear();
                    bars.remove(&digest);
                }
            }
        }
        Progress::Skipped { size } => {
            total.inc_length(size);
            total.inc(size);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_password() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .take(64 << 10)
        .read_to_string(&mut s)
        .map_err(|e| anyhow::anyhow!("reading the password from stdin: {e}"))?;
    let p = s.trim_end_matches(['\n', '\r']).to_string();
    if p.is_empty() {
        anyhow::bail!("the password on stdin is empty");
    }
    Ok(p)
}

fn updates_json(entries: &[RefUpdate]) -> serde_json::Value {
    entries
        .iter()
        .map(|u| {
            json!({
                "ref": u.name,
                "digest": u.digest.as_str(),
                "change": change_word(&u.change),
                "movedFrom": match &u.change {
                    RefChange::Moved(f) => f.iter().map(|d| d.as_str().to_string()).collect(),
                    _ => Vec::<String>::new(),
                },
            })
        })
        .collect()
}

pub fn pull(cli: &Cli, a: &PullArgs) -> anyhow::Result<Code> {
    let image = ImageRef::parse(&a.image)?;
    let (client, bar) = client(cli, &a.registry, &image, 0)?;
    let report = ocikit_registry::pull(
        &client,
        &image,
        &a.dir,
        &ocikit_registry::PullOptions {
            ref_name: a.ref_name.clone(),
            platforms: a.platform.clone(),
            referrers: a.referrers,
            layout: cli.layout_options(),
        },
    )?;
    bar.finish_and_clear();
    if a.json {
        print_json(&json!({
            "image": image.to_string(),
            "layout": a.dir.display().to_string(),
            "entries": updates_json(&report.entries),
            "blobs": {
                "fetched": report.blobs.copied + report.blobs.replaced,
                "present": report.blobs.present,
                "absent": report.blobs.absent,
            },
            "bytes": report.bytes,
            "requests": report.requests,
        }))?;
    } else if !cli.quiet {
        print_updates(&report.entries);
        eprintln!(
            "pulled {}: {} blob(s) fetched ({}), {} already present",
            image,
            report.blobs.copied + report.blobs.replaced,
            human_bytes(report.bytes),
            report.blobs.present
        );
    }
    Ok(0)
}

pub fn push(cli: &Cli, a: &PushArgs) -> anyhow::Result<Code> {
    let layout = Layout::open(&a.dir, cli.layout_options())?;
    let mut image = ImageRef::parse(&a.image)?;
    if !has_explicit_tag(&a.image) && image.digest.is_none() {
        // No tag given: the ref's own tag, as `docker push` takes the image's.
        image.tag = Some(ref_tag(&a.source).unwrap_or_else(|| "latest".into()));
    } else if !has_explicit_tag(&a.image) {
        image.tag = None;
    }
    let (client, bar) = client(cli, &a.registry, &image, a.chunk_size.unwrap_or(0))?;
    let report = ocikit_registry::push(
        &layout,
        &a.source,
        &client,
        &image,
        &ocikit_registry::PushOptions {
            platforms: a.platform.clone(),
            referrers: a.referrers,
        },
    )?;
    bar.finish_and_clear();
    if a.json {
        print_json(&json!({
            "image": image.to_string(),
            "entries": updates_json(&report.entries),
            "blobs": {
                "sent": report.sent.blobs_sent,
                "mounted": report.sent.blobs_mounted,
                "present": report.blobs.present,
                "absent": report.blobs.absent,
            },
            "manifests": report.sent.manifests_sent,
            "bytes": report.sent.bytes_sent,
            "requests": report.requests,
        }))?;
    } else if !cli.quiet {
        print_updates(&report.entries);
        eprintln!(
            "pushed {}: {} blob(s) sent ({}), {} mounted, {} already there, {} manifest(s) put",
            image,
            report.sent.blobs_sent,
            human_bytes(report.sent.bytes_sent),
            report.sent.blobs_mounted,
            report.blobs.present - report.sent.blobs_mounted.min(report.blobs.present),
            report.sent.manifests_sent,
        );
    }
    Ok(0)
}

pub fn login(cli: &Cli, a: &LoginArgs) -> anyhow::Result<Code> {
    let Some(username) = &a.args.username else {
        anyhow::bail!("login needs --username and --password-stdin");
    };
    let image = ImageRef::parse(&format!("{}/ocikit-login", a.registry))?;
    let (client, _) = client(cli, &a.args, &image, 0)?;
    client.check_login()?;
    let Some(Credentials::Basic { password, .. }) = client.options().credentials.clone() else {
        anyhow::bail!("login needs --username and --password-stdin");
    };
    let path = ocikit_registry::auth::login_file().ok_or_else(|| {
        anyhow::anyhow!("no HOME, DOCKER_CONFIG or REGISTRY_AUTH_FILE to store credentials in")
    })?;
    ocikit_registry::auth::store_login(&path, &image.registry, username, &password)?;
    if !cli.quiet {
        eprintln!(
            "login to {} succeeded; credentials stored in `{}`",
            image.registry,
            path.display()
        );
    }
    Ok(0)
}

fn print_updates(entries: &[RefUpdate]) {
    for u in entries {
        eprintln!(
            "{} `{}` -> `{}`",
            change_word(&u.change),
            u.label(),
            u.digest
        );
    }
}

fn change_word(c: &RefChange) -> &'static str {
    match c {
        RefChange::Created => "created",
        RefChange::Moved(_) => "moved",
        RefChange::Unchanged => "unchanged",
    }
}

/// Whether the last path component of `image` (before any `@`) has a `:tag`.
fn has_explicit_tag(image: &str) -> bool {
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    last.contains(':')
}

/// The tag part of a layout ref (`app:v1` -> `v1`, `v1` -> `v1`), if it is a valid tag.
fn ref_tag(r: &str) -> Option<String> {
    if r.contains('@') || ocikit_layout::Digest::parse(r).is_ok() {
        return None;
    }
    let last = r.rsplit('/').next().unwrap_or(r);
    let tag = last.rsplit_once(':').map(|(_, t)| t).unwrap_or(last);
    ocikit_layout::names::is_docker_tag(tag).then(|| tag.to_string())
}
