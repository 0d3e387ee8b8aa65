//! `serve`: layouts, read-only, over the OCI distribution API, until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context as _;
use ocikit_registry::serve::repos::Source;
use ocikit_registry::serve::{ServeOptions, Server};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::{Cli, Code};

/// `ocikit serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Layouts (each a repository named after its directory), or directories whose
    /// subdirectories are layouts (each named by its path below the directory).
    #[arg(value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// A layout served as repository NAME (repeatable).
    #[arg(long = "repo", value_name = "NAME=DIR", value_parser = parse_repo)]
    pub repos: Vec<(String, PathBuf)>,
    /// The address to listen on (port 0: any free port; the first line on stderr says which).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5000")]
    pub listen: String,
    /// HTTPS: the certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// HTTPS: the certificate's private key (PEM); needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require basic auth from the users of this htpasswd file (bcrypt entries, `htpasswd -B`).
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
}

fn parse_repo(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, dir)) if !name.is_empty() && !dir.is_empty() => {
            Ok((name.to_string(), PathBuf::from(dir)))
        }
        _ => Err(format!("`{s}` is not NAME=DIR")),
    }
}

pub fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<Code> {
    if args.dirs.is_empty() && args.repos.is_empty() {
        anyhow::bail!("serve needs a layout: DIR... or --repo NAME=DIR");
    }
    let mut sources: Vec<Source> = args
        .repos
        .iter()
        .map(|(name, dir)| Source::Named {
            name: name.clone(),
            dir: dir.clone(),
        })
        .collect();
    sources.extend(args.dirs.iter().cloned().map(Source::Dir));
    let mut opts = ServeOptions::new(sources);
    opts.listen = args.listen.clone();
    opts.tls = args.tls_cert.clone().zip(args.tls_key.clone());
    opts.htpasswd = args.htpasswd.clone();
    opts.access_log = !cli.quiet;
    opts.layout = cli.layout_options();
    let server = Server::bind(&opts)?;
    // Signals are caught before the first line, so a test that reads it can stop us at once.
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).context("cannot handle SIGINT and SIGTERM")?;
    let scheme = if server.is_tls() { "https" } else { "http" };
    eprintln!("listening on {}", server.local_addr());
    if !cli.quiet {
        for s in server.repositories() {
            let repos: Vec<String> = s
                .repositories
                .iter()
                .map(|(r, tags)| format!("`{r}` ({tags} tag(s))"))
                .collect();
            eprintln!(
                "serving `{}` over {scheme}: {}",
                s.dir.display(),
                repos.join(", ")
            );
        }
    }
    for p in server.startup_problems() {
        eprintln!("ocikit: warning: {p}");
    }
    let stopper = server.stopper();
    let quiet = cli.quiet;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            if !quiet {
                let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                eprintln!("stopping ({name}): finishing the requests in flight");
            }
            stopper.stop();
        }
    });
    server.run()?;
    Ok(0)
}
