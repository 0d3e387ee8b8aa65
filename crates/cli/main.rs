//! The `ocikit` command line: clap arguments -> library options -> one library call -> render.
//!
//! Exit codes: 0 success, 1 a check found problems (fsck, gc refusing to delete, a bundle part
//! rejected), 2 bad usage or bad input, 3 a bundle load that is loaded but incomplete. Errors
//! go to stderr with the whole chain. A closed stdout pipe exits quietly.

mod build_cmds;
mod convert_cmd;
mod docker_cmds;
mod layout_cmds;
mod mirror_cmds;
mod output;
mod registry_cmds;
mod serve_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Offline toolkit for OCI image layouts.
#[derive(Debug, Parser)]
#[command(name = "ocikit", version, about, propagate_version = true)]
pub struct Cli {
    /// Silence progress bars and information on stderr (never errors).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Do not fsync blobs, index.json and directories (for throwaway caches only).
    #[arg(long, global = true)]
    pub no_fsync: bool,
    /// Seconds a writer waits for another writer's lock on a layout.
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        default_value_t = 120,
        env = "OCIKIT_LOCK_TIMEOUT"
    )]
    pub lock_timeout: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an empty OCI image layout (an existing layout is left as it is).
    Init {
        /// The layout directory.
        dir: PathBuf,
    },
    /// List the entries of index.json.
    Ls {
        /// The layout directory.
        dir: PathBuf,
        /// JSON output: one object per entry, in order.
        #[arg(long)]
        json: bool,
        /// Add each image's ID (its config digest, as `docker images` and `docker inspect`
        /// show it; `-` for indexes and artifacts): an IMAGE ID column, or `imageId` in JSON.
        #[arg(long)]
        image_id: bool,
    },
    /// Show the tree under a ref or digest.
    Inspect {
        /// The layout directory.
        dir: PathBuf,
        /// A ref, or a full digest of anything reachable.
        target: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Write a blob's verified bytes to stdout.
    Cat {
        /// The layout directory.
        dir: PathBuf,
        /// A full digest, or a ref (its manifest or index).
        target: String,
    },
    /// Check every blob reachable from index.json: integrity problems are errors (exit 1),
    /// spec conformance of documents is reported as warnings.
    Fsck {
        /// The layout directory.
        dir: PathBuf,
        /// Also decompress layers: check declared compression and diff_ids.
        #[arg(long)]
        deep: bool,
        /// Conformance warnings are errors too (exit 1).
        #[arg(long)]
        strict: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Delete blobs that nothing in index.json reaches, and leftover temp files.
    Gc {
        /// The layout directory.
        dir: PathBuf,
        /// Report what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Point a ref at what another ref or a digest names (an existing ref moves).
    Tag {
        /// The layout directory.
        dir: PathBuf,
        /// The existing ref, or a full digest.
        source: String,
        /// The new ref.
        new_ref: String,
    },
    /// Copy refs (default: all) from one layout into another, with their blobs.
    Copy {
        /// The source layout.
        src: PathBuf,
        /// The destination layout (created if missing, merged into if it exists).
        dst: PathBuf,
        /// Refs or digests to copy (default: all entries).
        refs: Vec<String>,
        /// Keep only these platforms from indexes: os/arch[/variant] (repeatable).
        #[arg(long, value_name = "PLATFORM")]
        platform: Vec<ocikit_layout::PlatformSpec>,
        /// Also copy manifests whose subject is copied (signatures, SBOMs), recursively.
        #[arg(long)]
        referrers: bool,
    },
    /// Write what a layout holds (blobs and refs) as a small JSON file for `bundle --have`.
    Inventory {
        /// The layout directory.
        dir: PathBuf,
        /// Where to write it (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Write refs, and every blob they need that the far side lacks, as bundle parts.
    Bundle {
        /// The source layout.
        src: PathBuf,
        /// Refs or digests to carry (default: all).
        refs: Vec<String>,
        /// The bundle file (with --part-size: OUT.001, OUT.002, ...); `-` for stdout (one
        /// part only).
        #[arg(short, long)]
        output: PathBuf,
        /// An inventory of the far side: blobs it lists are left out (repeatable).
        #[arg(long, value_name = "INVENTORY")]
        have: Vec<PathBuf>,
        /// Keep only these platforms from indexes: os/arch[/variant] (repeatable).
        #[arg(long, value_name = "PLATFORM")]
        platform: Vec<ocikit_layout::PlatformSpec>,
        /// Also carry manifests whose subject is carried (signatures, SBOMs), recursively.
        #[arg(long)]
        referrers: bool,
        /// The largest part file (K, M, G, T are powers of 1024).
        #[arg(long, value_name = "SIZE", value_parser = mirror_cmds::parse_size)]
        part_size: Option<u64>,
    },
    /// Import docker save archives (legacy and Docker 25+), OCI archives, skopeo dir: copies
    /// and OCI layouts into a layout (created if missing). All or nothing.
    Import {
        /// The sources: archives (`-` for standard input), dir: copies, layouts.
        #[arg(required = true, num_args = 1.., value_name = "SRC")]
        sources: Vec<PathBuf>,
        /// The destination layout directory (created if missing; the last argument).
        #[arg(required = true, value_name = "DIR")]
        dir: PathBuf,
        /// Compression of new layers (default gzip); layers already compressed this way are
        /// kept as they are. OCI archives and layouts are always copied as they are.
        #[arg(long, value_enum)]
        compress: Option<output::CompressArg>,
        /// Compression level (gzip 0-9, default 1; zstd 1-22, default 3).
        #[arg(long, value_name = "N")]
        level: Option<i32>,
        /// A ref for the one untagged image of the sources (e.g. a dir: copy).
        #[arg(long = "ref", value_name = "NAME")]
        ref_name: Option<String>,
        /// Bundle parts only: verify them and report what would change, writing nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write refs of a layout as one archive: docker-archive (Docker 25+ dual format, read by
    /// every docker load, containerd and skopeo) or oci-archive. Same input, same bytes.
    Export {
        /// The layout directory.
        dir: PathBuf,
        /// Refs (or digests of index.json entries) to export; all entries when none is given.
        refs: Vec<String>,
        /// The archive to write (`-` for stdout); written whole or not at all.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// The archive format.
        #[arg(long, value_enum, default_value = "docker-archive")]
        format: docker_cmds::FormatArg,
        /// The platform to take from refs that name an index (os/arch[/variant]).
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<ocikit_layout::PlatformSpec>,
    },
    /// Remove a ref from index.json (blobs stay until gc).
    Untag {
        /// The layout directory.
        dir: PathBuf,
        /// The ref.
        r#ref: String,
    },
    /// Pull an image from a registry into a layout (created if missing), bytes as served.
    Pull(registry_cmds::PullArgs),
    /// Push a ref of a layout to a registry: blobs it lacks, manifests, then the tag.
    Push(registry_cmds::PushArgs),
    /// Check credentials with a registry and store them in Docker's config (as docker login).
    Login(registry_cmds::LoginArgs),
    /// Serve layouts read-only over the OCI distribution API (pull side) until SIGINT or
    /// SIGTERM.
    Serve(serve_cmd::ServeArgs),
    /// Rewrite media types Docker <-> OCI, recompress layers, or both, for what the refs reach
    /// (default: every entry).
    Convert {
        /// The layout directory.
        dir: PathBuf,
        /// Refs (or digests of index.json entries) to convert; none: all.
        refs: Vec<String>,
        /// The format to convert to (without it, each document keeps its format).
        #[arg(long, value_enum, required_unless_present = "compress")]
        to: Option<convert_cmd::ToFormat>,
        /// Recompress layers (diff_ids are checked and kept); with --to, in the same pass.
        #[arg(long, value_enum)]
        compress: Option<output::CompressArg>,
        /// Compression level (gzip 0-9, zstd 1-22); needs --compress.
        #[arg(long, requires = "compress", allow_hyphen_values = true)]
        level: Option<i32>,
    },
    /// Add layers (directories packed reproducibly, or tar files) to every image under a ref,
    /// or the --platform ones; the index above is rewritten and the ref moves (or --to).
    Append(build_cmds::AppendArgs),
    /// Edit image configs (env, entrypoint, labels, ...) of every image under a ref, or the
    /// --platform ones; --json prints them instead.
    Config(Box<build_cmds::ConfigArgs>),
    /// Make and edit image indexes.
    #[command(subcommand)]
    Index(build_cmds::IndexCmd),
    /// Apply an image's layers into a directory (whiteouts, links, modes, xattrs, owners as
    /// root), never writing outside it; --squash OUT.tar writes the result as one layer tar.
    Unpack(build_cmds::UnpackArgs),
    /// Replace the layers of every image under a ref (or the --platform ones) by one, their
    /// flattened rootfs, reproducibly; the index above is rewritten and the ref moves (or --to).
    Squash(build_cmds::SquashArgs),
    /// Print a shell completion script (bash, zsh, fish) to stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page ocikit(1) (roff) to stdout.
    Man,
}

impl Cli {
    /// Library options from the global flags.
    pub fn layout_options(&self) -> ocikit_layout::Options {
        ocikit_layout::Options {
            durable: !self.no_fsync,
            lock_timeout: Duration::from_secs(self.lock_timeout),
        }
    }
}

/// What a command asks the process to exit with.
pub type Code = u8;

/// A usage error where the only missing argument is import's sources.
fn only_dir_given(e: &clap::Error) -> bool {
    use clap::error::{ContextKind, ContextValue};
    e.kind() == clap::error::ErrorKind::MissingRequiredArgument
        && matches!(
            e.get(ContextKind::InvalidArg),
            Some(ContextValue::Strings(v)) if v.len() == 1 && v[0] == "<SRC>..."
        )
        && matches!(e.get(ContextKind::Usage), Some(u) if u.to_string().contains("ocikit import"))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // A usage error: one line, then a hint line (as every other error prints).
            let (message, hint) = if e.kind()
                == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            {
                let usage = e.render().to_string();
                let line = usage
                    .lines()
                    .find_map(|l| l.strip_prefix("Usage: "))
                    .unwrap_or("ocikit [OPTIONS] <COMMAND>")
                    .to_string();
                (
                    "a command is needed".to_string(),
                    format!("usage: {line}; see `ocikit --help`"),
                )
            } else if only_dir_given(&e) {
                // clap gives a lone argument to the last positional, DIR, and would name
                // the sources as missing.
                (
                        "import needs the sources and then the destination layout directory; only one path was given".to_string(),
                        "usage: ocikit import [OPTIONS] <SRC>... <DIR>".to_string(),
                    )
            } else {
                output::usage_lines(&e.render().to_string())
            };
            eprintln!("ocikit: error: {}", output::escape(&message));
            eprintln!("hint: {}", output::escape(&hint));
            return ExitCode::from(2);
        }
    };
    // `serve` stops gracefully on these signals itself (serve_cmd.rs); every other verb
    // removes what it was writing and exits.
    if !matches!(cli.command, Command::Serve(_)) {
        exit_tidily_on_signals();
    }
    let result = run(&cli);
    if ocikit_layout::cleanup::stopping() {
        // A signal's cleanup is under way and exits with 130/143: the command's own end (an
        // error about the files it removed) is not reported.
        loop {
            std::thread::park();
        }
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            if let Some(u) = e.downcast_ref::<output::UsageError>() {
                eprintln!("ocikit: error: {u}");
                eprintln!("hint: {}", u.hint);
                return ExitCode::from(2);
            }
            eprintln!("ocikit: error: {}", output::chain(&e));
            ExitCode::from(output::exit_code_of(&e))
        }
    }
}

/// SIGINT and SIGTERM: remove the temp files and new directories the command registered
/// (`ocikit_layout::cleanup`), then exit with the conventional 128 + signal number (130, 143).
/// The only place ocikit handles signals, but for `serve`'s graceful stop.
fn exit_tidily_on_signals() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                ocikit_layout::cleanup::remove_all();
                std::process::exit(128 + sig);
            }
        });
}

fn run(cli: &Cli) -> anyhow::Result<Code> {
    use layout_cmds as l;
    match &cli.command {
        Command::Init { dir } => l::init(cli, dir),
        Command::Ls {
            dir,
            json,
            image_id,
        } => l::ls(cli, dir, *json, *image_id),
        Command::Inspect { dir, target, json } => l::inspect(cli, dir, target, *json),
        Command::Cat { dir, target } => l::cat(cli, dir, target),
        Command::Fsck {
            dir,
            deep,
            strict,
            json,
        } => l::fsck(cli, dir, *deep, *strict, *json),
        Command::Gc { dir, dry_run, json } => l::gc(cli, dir, *dry_run, *json),
        Command::Tag {
            dir,
            source,
            new_ref,
        } => l::tag(cli, dir, source, new_ref),
        Command::Untag { dir, r#ref } => l::untag(cli, dir, r#ref),
        Command::Copy {
            src,
            dst,
            refs,
            platform,
            referrers,
        } => mirror_cmds::copy(cli, src, dst, refs, platform, *referrers),
        Command::Inventory { dir, output } => mirror_cmds::inventory(cli, dir, output.as_deref()),
        Command::Bundle {
            src,
            refs,
            output,
            have,
            platform,
            referrers,
            part_size,
        } => mirror_cmds::bundle(
            cli, src, refs, output, have, platform, *referrers, *part_size,
        ),
        Command::Export {
            dir,
            refs,
            output,
            format,
            platform,
        } => docker_cmds::export(cli, dir, refs, output, *format, platform.clone()),
        Command::Import {
            sources,
            dir,
            compress,
            level,
            ref_name,
            dry_run,
        } => docker_cmds::import(
            cli,
            sources,
            dir,
            *compress,
            *level,
            ref_name.as_deref(),
            *dry_run,
        ),
        Command::Convert {
            dir,
            refs,
            to,
            compress,
            level,
        } => convert_cmd::convert(cli, dir, refs, *to, *compress, *level),
        Command::Pull(a) => registry_cmds::pull(cli, a),
        Command::Push(a) => registry_cmds::push(cli, a),
        Command::Login(a) => registry_cmds::login(cli, a),
        Command::Append(a) => build_cmds::append(cli, a),
        Command::Config(a) => build_cmds::config(cli, a),
        Command::Index(c) => build_cmds::index(cli, c),
        Command::Unpack(a) => build_cmds::unpack(cli, a),
        Command::Serve(args) => serve_cmd::serve(cli, args),
        Command::Squash(a) => build_cmds::squash(cli, a),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = std::io::stdout().lock();
            clap_complete::generate(*shell, &mut cmd, "ocikit", &mut out);
            std::io::Write::flush(&mut out)?;
            Ok(0)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            std::io::Write::flush(&mut out)?;
            Ok(0)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>().is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
            || c.downcast_ref::<ocikit_layout::Error>().is_some_and(
                |le| matches!(le, ocikit_layout::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe),
            )
    })
}
