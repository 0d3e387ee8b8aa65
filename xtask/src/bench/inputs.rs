//! The benchmark's inputs, generated on demand and cached under the work directory.
//!
//! - Image A (about 750 MB at `--size-scale 1`): three layers, 300 MB of random bytes,
//!   250 MB of pseudo-text and 200 MB of real files from this machine (`/usr/lib`, then
//!   `/usr/share`, walked in sorted order). Built with umoci (`init`, `new`, `unpack`, then one
//!   `repack --refresh-bundle` per layer) and written as a docker-archive by skopeo, so every
//!   tool reads the same bytes. From it, skopeo makes the gzip layout the layout rows start
//!   from, and a copy with unreferenced blobs for gc.
//! - Image B (`--large`, about 2 GB): one 1.2 GB layer and two of 400 MB.
//! - Build rows: `a_gzip` with a ref umoci can name, a 50 MB directory to append, and a umoci
//!   bundle of image A with that directory copied in (for `umoci repack`).
//! - Scale layouts: N refs, each a manifest with a config and three small layers (5 N blobs),
//!   plus N/10 unreferenced blobs, written directly.
//!
//! The inputs are reproducible (seeded generator, sorted file walk, fixed mtimes and creation
//! time) except for the real file tree, which depends on what this machine has installed. Each artifact is marked complete by a
//! `.done` stamp holding [`INPUTS_VERSION`]; anything without a stamp is regenerated. Bump the
//! version when generation changes.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::fmt;
use super::measure::{self, run_ok};

/// Version of the generated inputs; part of the cache key.
pub const INPUTS_VERSION: &str = "3";

const MB: f64 = 1_000_000.0;

/// The size of image A's content at `--size-scale 1`.
pub const A_FULL_BYTES: u64 = 750_000_000;

/// The ref of images in the layouts the benchmark makes: a Docker name with a tag, so that
/// `export --format docker-archive` (which `docker load` must read) accepts it.
pub const REF: &str = "a:latest";
/// The tag umoci builds image A under (umoci's `--image PATH:TAG` takes no colon in the tag).
pub const UMOCI_TAG: &str = "a";
/// Where the append row places its directory inside image A.
pub const ADD_PREFIX: &str = "/added";
/// The name of image A in its docker-archive.
pub const A_NAME: &str = "bench/a:latest";
/// The name of image B in its docker-archive.
pub const B_NAME: &str = "bench/b:latest";

/// One part of a layer.
#[derive(Debug, Clone, Copy)]
enum Part {
    Random(u64),
    Text(u64),
    Tree(u64),
}

/// An image: its layers, each a list of parts.
#[derive(Debug)]
struct ImageSpec {
    name: &'static str,
    seed: u64,
    layers: Vec<Vec<Part>>,
}

fn scaled(mb: f64, scale: f64) -> u64 {
    (mb * MB * scale).round() as u64
}

fn image_a(scale: f64) -> ImageSpec {
    ImageSpec {
        name: "a",
        seed: 0xA,
        layers: vec![
            vec![Part::Random(scaled(300.0, scale))],
            vec![Part::Text(scaled(250.0, scale))],
            vec![Part::Tree(scaled(200.0, scale))],
        ],
    }
}

fn image_b(scale: f64) -> ImageSpec {
    ImageSpec {
        name: "b",
        seed: 0xB,
        layers: vec![
            vec![
                Part::Random(scaled(600.0, scale)),
                Part::Text(scaled(600.0, scale)),
            ],
            vec![Part::Random(scaled(400.0, scale))],
            vec![Part::Text(scaled(400.0, scale))],
        ],
    }
}

/// What the benchmark reads, all under `dir`.
#[derive(Debug)]
pub struct Inputs {
    /// `<work>/inputs/v<version>-x<scale>`: the cache key is the inputs version and the scale.
    dir: PathBuf,
    size_scale: f64,
    /// Image A as a docker-archive (skopeo).
    pub a_tar: PathBuf,
    /// Image A as an OCI layout with gzip layers, ref [`REF`] (skopeo).
    pub a_gzip: PathBuf,
    /// `a_gzip` plus unreferenced blobs (those of a zstd import of A).
    pub a_gc: PathBuf,
    /// A bundle of `a_gzip` (all refs), made by the ocikit under test before the bundle rows.
    pub a_bundle: PathBuf,
    /// Image B as a docker-archive, with `--large`.
    pub b_tar: Option<PathBuf>,
    /// `a_gzip` with its ref named [`UMOCI_TAG`] instead, which umoci's `--image` can name
    /// (blobs hard-linked): the layout of the build rows (unpack, append).
    pub a_umoci: PathBuf,
    /// The directory the append row adds: one file of 50 MB (scaled) of random bytes.
    pub add_dir: PathBuf,
    /// `umoci unpack --rootless` of `a_umoci` with `add_dir` copied into its rootfs at
    /// [`ADD_PREFIX`]: what `umoci repack` turns into the same change as the append row.
    pub repack_bundle: PathBuf,
    /// Scale layouts by number of refs.
    pub scale: Vec<(u64, PathBuf)>,
}

impl Inputs {
    /// Where the inputs for these options live (nothing is made).
    pub fn at(work: &Path, size_scale: f64, large: bool, scale_refs: &[u64]) -> Self {
        let dir = work
            .join("inputs")
            .join(format!("v{INPUTS_VERSION}-x{size_scale}"));
        Self {
            a_tar: dir.join("a.tar"),
            a_gzip: dir.join("a-gzip"),
            a_gc: dir.join("a-gc"),
            a_bundle: dir.join("a.bundle"),
            b_tar: large.then(|| dir.join("b.tar")),
            a_umoci: dir.join("a-umoci"),
            add_dir: dir.join("add-50m"),
            repack_bundle: dir.join("a-repack-bundle"),
            scale: scale_refs
                .iter()
                .map(|&n| (n, dir.join(format!("scale-{n}"))))
                .collect(),
            dir,
            size_scale,
        }
    }

    /// Make every input that is not cached yet.
    pub fn make(&self) -> anyhow::Result<()> {
        let dir = &self.dir;
        fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
        let (a_tar, a_gzip, a_gc) = (&self.a_tar, &self.a_gzip, &self.a_gc);
        cached(dir, "a", &[a_tar, a_gzip, a_gc], || {
            build_image(dir, &image_a(self.size_scale), A_NAME, a_tar)?;
            eprintln!("bench: making the gzip layout and the gc layout from image A");
            run_ok(
                Command::new("skopeo")
                    .args(["copy", "-q"])
                    .arg(format!("docker-archive:{}", a_tar.display()))
                    .arg(format!("oci:{}:{REF}", a_gzip.display())),
            )?;
            let zstd = dir.join("a-zstd.tmp");
            measure::remove(&zstd)?;
            run_ok(
                Command::new("skopeo")
                    .args(["copy", "-q", "--dest-compress-format", "zstd"])
                    .arg(format!("docker-archive:{}", a_tar.display()))
                    .arg(format!("oci:{}:{REF}", zstd.display())),
            )?;
            measure::copy_layout(a_gzip, a_gc)?;
            for (blob, _) in measure::files_under(&zstd.join("blobs"))? {
                let rel = blob
                    .strip_prefix(&zstd)
                    .context("blob outside its layout")?;
                let to = a_gc.join(rel);
                if !to.exists() {
                    fs::copy(&blob, &to)
                        .with_context(|| format!("cannot copy `{}`", blob.display()))?;
                }
            }
            measure::remove(&zstd)
        })?;
        let (a_umoci, add_dir, bundle) = (&self.a_umoci, &self.add_dir, &self.repack_bundle);
        cached(dir, "build", &[a_umoci, add_dir, bundle], || {
            eprintln!("bench: the build rows' layout, directory and umoci bundle");
            measure::copy_layout(a_gzip, a_umoci)?;
            let index = a_umoci.join("index.json");
            let mut doc: serde_json::Value = serde_json::from_slice(
                &fs::read(&index).with_context(|| format!("cannot read `{}`", index.display()))?,
            )
            .with_context(|| format!("`{}` is not JSON", index.display()))?;
            for m in doc["manifests"].as_array_mut().into_iter().flatten() {
                if let Some(a) = m["annotations"].as_object_mut() {
                    if a.get("org.opencontainers.image.ref.name")
                        .and_then(|v| v.as_str())
                        == Some(REF)
                    {
                        a.insert("org.opencontainers.image.ref.name".into(), UMOCI_TAG.into());
                    }
                }
            }
            measure::remove(&index)?;
            fs::write(&index, serde_json::to_vec(&doc)?)
                .with_context(|| format!("cannot write `{}`", index.display()))?;
            fs::create_dir_all(add_dir)
                .with_context(|| format!("cannot create `{}`", add_dir.display()))?;
            let mut rng = Rng::new(0xADD);
            write_random(add_dir, scaled(50.0, self.size_scale), &mut rng)?;
            set_mtimes(add_dir)?;
            run_ok(
                Command::new("umoci")
                    .args(["unpack", "--rootless", "--image"])
                    .arg(format!("{}:{UMOCI_TAG}", a_umoci.display()))
                    .arg(bundle),
            )?;
            let to = bundle
                .join("rootfs")
                .join(ADD_PREFIX.trim_start_matches('/'));
            fs::create_dir_all(&to).with_context(|| format!("cannot create `{}`", to.display()))?;
            for e in fs::read_dir(add_dir)
                .with_context(|| format!("cannot list `{}`", add_dir.display()))?
            {
                let e = e.with_context(|| format!("cannot list `{}`", add_dir.display()))?;
                fs::copy(e.path(), to.join(e.file_name()))
                    .with_context(|| format!("cannot copy `{}`", e.path().display()))?;
            }
            set_mtimes(&to)
        })?;
        if let Some(b) = &self.b_tar {
            cached(dir, "b", &[b], || {
                build_image(dir, &image_b(self.size_scale), B_NAME, b)
            })?;
        }
        for (n, p) in &self.scale {
            cached(dir, &format!("scale-{n}"), &[p], || {
                eprintln!("bench: writing a layout with {} refs", fmt::count(*n));
                write_scale_layout(p, *n)
            })?;
        }
        Ok(())
    }
}

/// Reuse `paths` when the stamp `<name>.done` says they are complete, else remove them, run
/// `make` and write the stamp.
fn cached(
    dir: &Path,
    name: &str,
    paths: &[&PathBuf],
    make: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let stamp = dir.join(format!("{name}.done"));
    if fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == INPUTS_VERSION) {
        return Ok(());
    }
    for p in paths {
        measure::remove(p)?;
    }
    make()?;
    fs::write(&stamp, format!("{INPUTS_VERSION}\n"))
        .with_context(|| format!("cannot write `{}`", stamp.display()))
}

/// Build `spec` with umoci and write it as a docker-archive at `out`.
fn build_image(dir: &Path, spec: &ImageSpec, name: &str, out: &Path) -> anyhow::Result<()> {
    let oci = dir.join(format!("{}-umoci.tmp", spec.name));
    let bundle = dir.join(format!("{}-bundle.tmp", spec.name));
    measure::remove(&oci)?;
    measure::remove(&bundle)?;
    let image = format!("{}:{UMOCI_TAG}", oci.display());
    eprintln!("bench: building image {} with umoci", spec.name);
    run_ok(Command::new("umoci").args(["init", "--layout"]).arg(&oci))?;
    run_ok(Command::new("umoci").args(["new", "--image", &image]))?;
    run_ok(Command::new("umoci").args([
        "config",
        "--no-history",
        "--image",
        &image,
        "--created",
        CREATED,
    ]))?;
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image", &image])
            .arg(&bundle),
    )?;
    let rootfs = bundle.join("rootfs");
    for (i, parts) in spec.layers.iter().enumerate() {
        let layer_dir = rootfs.join(format!("layer{}", i + 1));
        let mut rng = Rng::new(spec.seed * 1000 + i as u64);
        for (j, part) in parts.iter().enumerate() {
            let part_dir = layer_dir.join(format!("part{}", j + 1));
            fs::create_dir_all(&part_dir)
                .with_context(|| format!("cannot create `{}`", part_dir.display()))?;
            match *part {
                Part::Random(n) => write_random(&part_dir, n, &mut rng)?,
                Part::Text(n) => write_text(&part_dir, n, &mut rng)?,
                Part::Tree(n) => copy_real_tree(&part_dir, n)?,
            }
        }
        set_mtimes(&rootfs)?;
        eprintln!(
            "bench: umoci repack, layer {} of image {}",
            i + 1,
            spec.name
        );
        run_ok(
            Command::new("umoci")
                .args(["repack", "--refresh-bundle", "--image", &image])
                .args(["--history.created", CREATED])
                .arg(&bundle),
        )?;
    }
    eprintln!("bench: skopeo copy to docker-archive `{}`", out.display());
    run_ok(
        Command::new("skopeo")
            .args(["copy", "-q"])
            .arg(format!("oci:{image}"))
            .arg(format!("docker-archive:{}:{name}", out.display())),
    )?;
    measure::remove(&bundle)?;
    measure::remove(&oci)
}

/// The creation time written into the images, and the mtime of every file in them.
const CREATED: &str = "2020-01-01T00:00:00Z";
const CREATED_UNIX: u64 = 1_577_836_800;

/// Give everything under `root` (and `root`) the mtime [`CREATED`], so the layers umoci writes
/// do not depend on when they were generated.
fn set_mtimes(root: &Path) -> anyhow::Result<()> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(CREATED_UNIX);
    let times = fs::FileTimes::new().set_accessed(t).set_modified(t);
    let meta =
        fs::symlink_metadata(root).with_context(|| format!("cannot stat `{}`", root.display()))?;
    if meta.is_dir() {
        for e in fs::read_dir(root).with_context(|| format!("cannot list `{}`", root.display()))? {
            let e = e.with_context(|| format!("cannot list `{}`", root.display()))?;
            set_mtimes(&e.path())?;
        }
    }
    if meta.is_dir() || meta.is_file() {
        fs::File::open(root)
            .and_then(|f| f.set_times(times))
            .with_context(|| format!("cannot set the mtime of `{}`", root.display()))?;
    }
    Ok(())
}

/// A small deterministic generator (splitmix64); not for anything but test data.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// `total` random bytes in files of 16 MiB (the last one shorter).
fn write_random(dir: &Path, total: u64, rng: &mut Rng) -> anyhow::Result<()> {
    const FILE: u64 = 16 << 20;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = total;
    let mut i = 0;
    while left > 0 {
        let size = left.min(FILE);
        let path = dir.join(format!("random-{i:04}.bin"));
        let mut f = BufWriter::new(
            fs::File::create(&path)
                .with_context(|| format!("cannot create `{}`", path.display()))?,
        );
        let mut n = size;
        while n > 0 {
            let k = n.min(buf.len() as u64) as usize;
            rng.fill(&mut buf[..k]);
            f.write_all(&buf[..k])?;
            n -= k as u64;
        }
        f.flush()?;
        left -= size;
        i += 1;
    }
    Ok(())
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "a",
    "to",
    "in",
    "is",
    "you",
    "that",
    "it",
    "he",
    "was",
    "for",
    "on",
    "are",
    "as",
    "with",
    "his",
    "they",
    "at",
    "be",
    "this",
    "have",
    "from",
    "or",
    "one",
    "had",
    "by",
    "word",
    "but",
    "not",
    "what",
    "all",
    "were",
    "we",
    "when",
    "your",
    "can",
    "said",
    "there",
    "use",
    "an",
    "each",
    "which",
    "she",
    "do",
    "how",
    "their",
    "if",
    "will",
    "up",
    "other",
    "about",
    "out",
    "many",
    "then",
    "them",
    "these",
    "so",
    "some",
    "her",
    "would",
    "make",
    "like",
    "him",
    "into",
    "time",
    "has",
    "look",
    "two",
    "more",
    "write",
    "go",
    "see",
    "number",
    "no",
    "way",
    "could",
    "people",
    "my",
    "than",
    "first",
    "water",
    "been",
    "call",
    "who",
    "oil",
    "its",
    "now",
    "find",
    "long",
    "down",
    "day",
    "did",
    "get",
    "come",
    "made",
    "may",
    "part",
    "image",
    "layer",
    "manifest",
    "digest",
    "registry",
    "container",
    "archive",
    "layout",
    "blob",
    "index",
    "config",
    "platform",
    "runtime",
    "kernel",
    "memory",
    "buffer",
    "stream",
    "compression",
    "checksum",
    "offline",
    "mirror",
    "bundle",
    "reproducible",
];

/// `total` bytes of pseudo-text (lines of words, paragraphs) in files of 64 KiB to 1 MiB.
fn write_text(dir: &Path, total: u64, rng: &mut Rng) -> anyhow::Result<()> {
    let mut left = total;
    let mut i = 0;
    let mut text = Vec::with_capacity(1 << 20);
    while left > 0 {
        let size = left.min((64 << 10) + rng.below(960 << 10));
        text.clear();
        while (text.len() as u64) < size {
            let words = 6 + rng.below(12);
            for w in 0..words {
                let word = WORDS[rng.below(WORDS.len() as u64) as usize];
                if w == 0 {
                    let mut cs = word.chars();
                    if let Some(c) = cs.next() {
                        text.extend(c.to_uppercase().to_string().bytes());
                        text.extend(cs.as_str().bytes());
                    }
                } else {
                    text.push(b' ');
                    text.extend(word.bytes());
                }
            }
            text.extend_from_slice(if rng.below(8) == 0 { b".\n\n" } else { b".\n" });
        }
        text.truncate(size as usize);
        let path = dir.join(format!("text-{i:05}.txt"));
        fs::write(&path, &text).with_context(|| format!("cannot write `{}`", path.display()))?;
        left -= size;
        i += 1;
    }
    Ok(())
}

/// Copy regular files from `/usr/lib`, then `/usr/share`, walked in sorted order, taking each
/// file that still fits, until `budget` bytes are copied. Unreadable entries are skipped.
fn copy_real_tree(dir: &Path, budget: u64) -> anyhow::Result<()> {
    let mut left = budget;
    for src in ["/usr/lib", "/usr/share"] {
        copy_fitting(
            Path::new(src),
            &dir.join(src.trim_start_matches('/')),
            &mut left,
        )?;
        if left == 0 {
            break;
        }
    }
    Ok(())
}

fn copy_fitting(src: &Path, dst: &Path, left: &mut u64) -> anyhow::Result<()> {
    let Ok(meta) = fs::symlink_metadata(src) else {
        return Ok(());
    };
    if meta.is_dir() {
        let Ok(rd) = fs::read_dir(src) else {
            return Ok(());
        };
        let mut names: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
        names.sort();
        for n in names {
            if *left == 0 {
                break;
            }
            copy_fitting(&src.join(&n), &dst.join(&n), left)?;
        }
    } else if meta.is_file() && meta.len() <= *left {
        let Ok(mut from) = fs::File::open(src) else {
            return Ok(());
        };
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        let mut to =
            fs::File::create(dst).with_context(|| format!("cannot create `{}`", dst.display()))?;
        let n = io::copy(&mut from, &mut to)
            .with_context(|| format!("cannot copy `{}`", src.display()))?;
        *left = left.saturating_sub(n);
    }
    Ok(())
}

/// Write a layout with `refs` refs: each an OCI manifest with a config and three small layers
/// (5 blobs per ref), plus `refs / 10` unreferenced blobs for gc to find.
pub fn write_scale_layout(dir: &Path, refs: u64) -> anyhow::Result<()> {
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).with_context(|| format!("cannot create `{}`", blobs.display()))?;
    fs::write(dir.join("oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}")
        .with_context(|| format!("cannot write `{}`", dir.display()))?;
    let put = |bytes: &[u8]| -> anyhow::Result<String> {
        let hex = hex(&Sha256::digest(bytes));
        let path = blobs.join(&hex);
        fs::write(&path, bytes).with_context(|| format!("cannot write `{}`", path.display()))?;
        Ok(format!("sha256:{hex}"))
    };
    let mut rng = Rng::new(0x5CA1E);
    let mut index = String::from("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[");
    let mut buf = vec![0u8; 1024];
    for i in 0..refs {
        let mut layers = Vec::new();
        for _ in 0..3 {
            let n = 64 + rng.below(960) as usize;
            rng.fill(&mut buf[..n]);
            layers.push((put(&buf[..n])?, n));
        }
        let config = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{{\"Env\":[\"N={i}\"]}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[{}]}}}}",
            layers
                .iter()
                .map(|(d, _)| format!("\"{d}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        let config_digest = put(config.as_bytes())?;
        let manifest = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{config_digest}\",\"size\":{}}},\"layers\":[{}]}}",
            config.len(),
            layers
                .iter()
                .map(|(d, n)| format!(
                    "{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"{d}\",\"size\":{n}}}"
                ))
                .collect::<Vec<_>>()
                .join(",")
        );
        let manifest_digest = put(manifest.as_bytes())?;
        if i > 0 {
            index.push(',');
        }
        index.push_str(&format!(
            "{{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"{manifest_digest}\",\"size\":{},\"annotations\":{{\"org.opencontainers.image.ref.name\":\"img-{i:05}\"}}}}",
            manifest.len()
        ));
    }
    index.push_str("]}");
    for _ in 0..refs / 10 {
        let n = 64 + rng.below(960) as usize;
        rng.fill(&mut buf[..n]);
        put(&buf[..n])?;
    }
    let path = dir.join("index.json");
    fs::write(&path, index).with_context(|| format!("cannot write `{}`", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Regular-file members of a tar archive, with their sizes (for the import limit).
pub fn archive_members(path: &Path) -> anyhow::Result<Vec<(String, u64)>> {
    let f = fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let mut ar = tar::Archive::new(f);
    let mut out = Vec::new();
    for e in ar
        .entries()
        .with_context(|| format!("cannot read `{}`", path.display()))?
    {
        let e = e.with_context(|| format!("cannot read `{}`", path.display()))?;
        if e.header().entry_type().is_file() {
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            out.push((name, e.size()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic() {
        let mut r = Rng::new(1);
        assert_eq!(r.next_u64(), 0x910A_2DEC_8902_5CC1);
        let mut a = [0u8; 13];
        let mut b = [0u8; 13];
        Rng::new(7).fill(&mut a);
        Rng::new(7).fill(&mut b);
        assert_eq!(a, b);
        assert!(Rng::new(3).below(10) < 10);
    }

    #[test]
    fn image_sizes_scale() {
        let total = |s: &ImageSpec| -> u64 {
            s.layers
                .iter()
                .flatten()
                .map(|p| match *p {
                    Part::Random(n) | Part::Text(n) | Part::Tree(n) => n,
                })
                .sum()
        };
        assert_eq!(total(&image_a(1.0)), A_FULL_BYTES);
        assert_eq!(total(&image_a(0.02)), 15_000_000);
        assert_eq!(total(&image_b(1.0)), 2_000_000_000);
        match image_b(1.0).layers[0][..] {
            [Part::Random(r), Part::Text(t)] => assert_eq!(r + t, 1_200_000_000),
            _ => panic!("layer 1 of image B is random bytes then text"),
        }
    }

    #[test]
    fn scale_layout_shape() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("l");
        write_scale_layout(&dir, 20).expect("write");
        let blobs = fs::read_dir(dir.join("blobs/sha256"))
            .expect("blobs")
            .count();
        assert_eq!(blobs, 5 * 20 + 2);
        let index = fs::read_to_string(dir.join("index.json")).expect("index");
        assert_eq!(
            index.matches("org.opencontainers.image.ref.name").count(),
            20
        );
        assert!(index.contains("\"img-00019\""));
        assert!(!index.contains("\"img-00020\""));
    }
}
