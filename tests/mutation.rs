//! Random mutations of real documents (the `index.json` files, manifests, indexes and configs of
//! `fixtures/layouts/*`, and the image-spec vectors of `fixtures/schema-vectors/`) placed into a
//! layout: reading, walking, fsck, gc --dry-run and inspect never panic, and through the CLI
//! every command exits 0, 1 or 2 without "panicked" on stderr.
//!
//! Deterministic: a fixed seed and the small PRNG in `common`. A failure prints the iteration and
//! the mutated document, which then belongs in a regression test.
//!
//! Docker `manifest.json` / `repositories` mutations, inside rebuilt docker-save archives, are in
//! `tests/mutation_docker.rs`.

mod craft;

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use craft::*;
use ocikit_layout::fsck::{fsck, FsckOptions};
use ocikit_layout::walk::Walk;
use ocikit_layout::{gc, refs, Layout, Options};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A layout's own index.json.
    IndexJson,
    /// A manifest or index blob.
    Document,
    /// An image config (placed under a copy of a manifest that names it).
    Config,
}

#[derive(Debug, Clone)]
struct Doc {
    kind: Kind,
    /// The fixture layout it came from (its blobs stay reachable by the mutated copy).
    host: usize,
    bytes: Vec<u8>,
    /// For blobs: the digest it is stored under in the host.
    digest: Option<String>,
    /// For configs: a manifest of the host that names it.
    manifest: Option<Value>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Every fixture layout copied into `dir` (with an `oci-layout` where the fixture has none);
/// returns their roots, sorted by name.
fn copy_hosts(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<_> = fs::read_dir(fixtures().join("layouts"))
        .expect("fixtures/layouts")
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    names
        .iter()
        .map(|src| {
            let dst = dir.join(src.file_name().expect("name"));
            copy_tree(src, &dst);
            if !dst.join("oci-layout").exists() {
                fs::write(dst.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
                    .expect("write");
            }
            fs::create_dir_all(dst.join("blobs/sha256")).expect("mkdir");
            dst
        })
        .collect()
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir").flatten() {
        let (s, d) = (e.path(), to.join(e.file_name()));
        if e.file_type().expect("type").is_dir() {
            copy_tree(&s, &d);
        } else {
            fs::copy(&s, &d).expect("copy");
        }
    }
}

fn collect_docs(hosts: &[PathBuf]) -> Vec<Doc> {
    let mut docs = Vec::new();
    for (h, root) in hosts.iter().enumerate() {
        docs.push(Doc {
            kind: Kind::IndexJson,
            host: h,
            bytes: fs::read(root.join("index.json")).expect("index.json"),
            digest: None,
            manifest: None,
        });
        let Ok(entries) = fs::read_dir(root.join("blobs/sha256")) else {
            continue;
        };
        let mut blobs: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        blobs.sort();
        let parsed: Vec<(String, Vec<u8>, Option<Value>)> = blobs
            .iter()
            .filter(|p| fs::metadata(p).is_ok_and(|m| m.len() < 1 << 20))
            .map(|p| {
                let bytes = fs::read(p).expect("blob");
                let v = serde_json::from_slice::<Value>(&bytes).ok();
                let name = p.file_name().expect("name").to_string_lossy();
                (format!("sha256:{name}"), bytes, v)
            })
            .collect();
        for (digest, bytes, v) in &parsed {
            let Some(Value::Object(o)) = v else { continue };
            if o.contains_key("manifests") || o.contains_key("layers") || o.contains_key("fsLayers")
            {
                docs.push(Doc {
                    kind: Kind::Document,
                    host: h,
                    bytes: bytes.clone(),
                    digest: Some(digest.clone()),
                    manifest: None,
                });
            }
            if let Some(cfg) = o.get("config").and_then(|c| c["digest"].as_str()) {
                if let Some((_, cb, _)) = parsed.iter().find(|(d, _, _)| d == cfg) {
                    docs.push(Doc {
                        kind: Kind::Config,
                        host: h,
                        bytes: cb.clone(),
                        digest: Some(cfg.to_string()),
                        manifest: v.clone(),
                    });
                }
            }
        }
    }
    // The image-spec vectors: documents of every shape, valid and not, placed into the first
    // host that has blobs.
    let host = hosts
        .iter()
        .position(|r| r.ends_with("ggcr-test_index"))
        .expect("ggcr-test_index fixture");
    for sub in [
        "manifest",
        "index",
        "descriptor",
        "docker-compat-manifest",
        "docker-compat-index",
    ] {
        let mut files: Vec<_> = fs::read_dir(fixtures().join("schema-vectors").join(sub))
            .expect("vectors")
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for f in files {
            docs.push(Doc {
                kind: Kind::Document,
                host,
                bytes: fs::read(&f).expect("vector"),
                digest: None,
                manifest: None,
            });
        }
    }
    docs
}

const MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.empty.v1+json",
    "application/x-nobody-knows",
    "",
];

/// Values that have broken parsers before: signs, overflow, wrong types, traversal, odd digests.
fn interesting(rng: &mut Rng, digests: &[String]) -> Value {
    match rng.below(22) {
        0 => json!(-1),
        1 => json!(0),
        2 => json!(u64::MAX),
        3 => json!(i64::MIN),
        4 => json!(1.5),
        5 => Value::Null,
        6 => json!(true),
        7 => json!(""),
        8 => json!("sha256:../../../etc/passwd"),
        9 => json!("sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564"),
        10 => json!("sha512:abc"),
        11 => json!([]),
        12 => json!({}),
        13 => json!(rng.pick(MEDIA_TYPES)),
        14 => json!(rng.pick(digests)),
        15 => json!("x".repeat(rng.below(5000))),
        16 => {
            // Nested past serde_json's recursion limit, or just under it.
            let depth = 100 + rng.below(60);
            let mut v = json!(1);
            for _ in 0..depth {
                v = json!([v]);
            }
            v
        }
        17 => {
            json!({"mediaType": rng.pick(MEDIA_TYPES), "digest": rng.pick(digests), "size": rng.below(2000)})
        }
        18 => {
            json!([{"mediaType": rng.pick(MEDIA_TYPES), "digest": rng.pick(digests), "size": -3}])
        }
        19 => json!("\u{0}\u{ffff}é"),
        20 => json!({"architecture": "amd64", "os": "linux", "os.features": [1]}),
        _ => json!(1u64 << 53),
    }
}

/// A random path to a node of `v` (possibly the root).
fn random_node<'a>(rng: &mut Rng, v: &'a mut Value) -> &'a mut Value {
    let stop = rng.chance(4);
    let next = match v {
        Value::Object(o) if !o.is_empty() && !stop => {
            let k = o.keys().nth(rng.below(o.len())).cloned().expect("key");
            Some(k)
        }
        Value::Array(a) if !a.is_empty() && !stop => Some(rng.below(a.len()).to_string()),
        _ => None,
    };
    match next {
        None => v,
        Some(k) => match v {
            Value::Object(o) => random_node(rng, o.get_mut(&k).expect("key")),
            Value::Array(a) => random_node(rng, &mut a[k.parse::<usize>().expect("index")]),
            _ => unreachable!("only containers have children"),
        },
    }
}

fn mutate(rng: &mut Rng, bytes: &[u8], digests: &[String]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let rounds = if rng.chance(3) { 2 + rng.below(3) } else { 1 };
    for _ in 0..rounds {
        let len = out.len().max(1);
        match rng.below(9) {
            // Structured: replace a node, drop a key, or splice another digest in.
            0..=3 => {
                let Ok(mut v) = serde_json::from_slice::<Value>(&out) else {
                    continue;
                };
                let node = random_node(rng, &mut v);
                match (rng.below(3), &mut *node) {
                    (0, Value::Object(o)) if !o.is_empty() => {
                        let k = o.keys().nth(rng.below(o.len())).cloned().expect("key");
                        o.remove(&k);
                    }
                    _ => *node = interesting(rng, digests),
                }
                out = serde_json::to_vec(&v).expect("json");
            }
            4 => {
                let i = rng.below(len);
                if let Some(b) = out.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
            5 => {
                let at = rng.below(out.len() + 1);
                let tokens: &[&[u8]] = &[
                    b"-1",
                    b"1e999",
                    b"null",
                    b"[",
                    b"]",
                    b"{",
                    b"}",
                    b"\"",
                    b",",
                    b":",
                    b"\\u0000",
                    b"\\ud800",
                    b"\"sha256:\"",
                    b"18446744073709551616",
                ];
                let t = rng.pick(tokens);
                out.splice(at..at, t.iter().copied());
            }
            6 => {
                let a = rng.below(len);
                let b = (a + rng.below(64)).min(out.len());
                if a < b {
                    out.drain(a..b);
                }
            }
            7 => out.truncate(rng.below(len)),
            _ => {
                let a = rng.below(len);
                let b = (a + rng.below(128)).min(out.len());
                if a < b {
                    let chunk = out[a..b].to_vec();
                    let at = rng.below(out.len() + 1);
                    out.splice(at..at, chunk);
                }
            }
        }
    }
    out
}

/// Put `doc` mutated into its host; returns what to restore afterwards.
struct Placed {
    root: PathBuf,
    index_json: Vec<u8>,
    /// A blob overwritten in place, with its original bytes.
    overwritten: Option<(PathBuf, Vec<u8>)>,
}

impl Drop for Placed {
    fn drop(&mut self) {
        fs::write(self.root.join("index.json"), &self.index_json).expect("restore index.json");
        if let Some((p, b)) = &self.overwritten {
            fs::write(p, b).expect("restore blob");
        }
    }
}

fn store(root: &Path, bytes: &[u8]) -> String {
    let d = sha256(bytes);
    fs::write(root.join("blobs/sha256").join(&d[7..]), bytes).expect("store");
    d
}

fn place(rng: &mut Rng, root: &Path, doc: &Doc, mutated: &[u8]) -> Placed {
    let mut placed = Placed {
        root: root.to_path_buf(),
        index_json: fs::read(root.join("index.json")).expect("index.json"),
        overwritten: None,
    };
    let entry_for = |rng: &mut Rng, d: String, size: usize, own: Option<&str>| {
        let mt = match own {
            Some(m) if !rng.chance(5) => m.to_string(),
            _ => rng.pick(MEDIA_TYPES).to_string(),
        };
        let size = if rng.chance(10) { size + 1 } else { size };
        json!({"schemaVersion": 2, "manifests": [{"mediaType": mt, "digest": d, "size": size,
            "annotations": {REF_NAME: "m"}}]})
    };
    let own_type = |bytes: &[u8]| -> Option<String> {
        serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(String::from))
    };
    match doc.kind {
        Kind::IndexJson => {
            fs::write(root.join("index.json"), mutated).expect("write");
        }
        Kind::Document if doc.digest.is_some() && rng.chance(5) => {
            // In place: the bytes no longer match their digest.
            let p = root
                .join("blobs/sha256")
                .join(&doc.digest.as_deref().expect("digest")[7..]);
            let old = fs::read(&p).expect("read");
            fs::write(&p, mutated).expect("write");
            placed.overwritten = Some((p, old));
        }
        Kind::Document => {
            let d = store(root, mutated);
            let own = own_type(&doc.bytes);
            let ix = entry_for(rng, d, mutated.len(), own.as_deref());
            fs::write(root.join("index.json"), ix.to_string()).expect("write");
        }
        Kind::Config => {
            let d = store(root, mutated);
            let mut m = doc.manifest.clone().expect("manifest");
            m["config"]["digest"] = json!(d);
            m["config"]["size"] = json!(mutated.len());
            let mb = serde_json::to_vec(&m).expect("json");
            let md = store(root, &mb);
            let own = own_type(&mb);
            let ix = entry_for(rng, md, mb.len(), own.as_deref());
            fs::write(root.join("index.json"), ix.to_string()).expect("write");
        }
    }
    placed
}

/// How far an input got: index.json parsed, documents read and parsed by the walk, fsck
/// findings.
#[derive(Debug, Default, Clone, Copy)]
struct Reach {
    index_parsed: bool,
    documents_ok: usize,
    findings: usize,
}

/// Everything the read side of the CLI does, through the library.
fn exercise(root: &Path, deep: bool) -> Reach {
    let mut reach = Reach::default();
    let opts = Options {
        durable: false,
        ..Options::default()
    };
    let Ok(layout) = Layout::open(root, opts) else {
        return reach;
    };
    let _ = gc::gc(&layout, true);
    if let Ok(r) = fsck(
        &layout,
        &FsckOptions {
            deep,
            progress: None,
        },
    ) {
        reach.findings = r.findings.len();
    }
    let Ok(index) = layout.read_index() else {
        return reach;
    };
    reach.index_parsed = true;
    let walk = Walk::from_index(&layout, &index.value);
    reach.documents_ok = walk
        .nodes
        .iter()
        .filter(|n| matches!(n.status, ocikit_layout::walk::DocStatus::Ok))
        .count();
    for n in &walk.nodes {
        let _ = walk.path_of(n.parent.unwrap_or(0).min(walk.nodes.len() - 1));
    }
    for d in index.value.manifests.iter().take(4) {
        let what = d
            .ref_name()
            .map(String::from)
            .unwrap_or(d.digest.to_string());
        if let Ok(desc) = refs::resolve_anywhere(&layout, &index.value, &what) {
            let _ = Walk::from_descriptor(&layout, &desc);
        }
    }
    reach
}

fn all_digests(docs: &[Doc]) -> Vec<String> {
    let mut v: Vec<String> = docs.iter().filter_map(|d| d.digest.clone()).collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn mutated_documents_never_panic_the_library() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts = copy_hosts(dir.path());
    let docs = collect_docs(&hosts);
    assert!(docs.len() > 100, "only {} documents", docs.len());
    let digests = all_digests(&docs);
    let mut rng = Rng::new(0x0c1_417);
    let (mut unparsed, mut walked, mut found) = (0, 0, 0);
    for i in 0..300 {
        let doc = rng.pick(&docs).clone();
        let mutated = mutate(&mut rng, &doc.bytes, &digests);
        let deep = rng.chance(4);
        let placed = place(&mut rng, &hosts[doc.host], &doc, &mutated);
        match catch_unwind(AssertUnwindSafe(|| exercise(&placed.root, deep))) {
            Ok(r) => {
                unparsed += usize::from(!r.index_parsed);
                walked += usize::from(r.documents_ok > 0);
                found += usize::from(r.findings > 0);
            }
            Err(e) => panic!(
                "iteration {i}: {doc:?} mutated to {}: panicked: {:?}",
                String::from_utf8_lossy(&mutated),
                e.downcast_ref::<String>()
            ),
        }
    }
    // The inputs must reach past the first parser, or this proves little.
    eprintln!(
        "{unparsed} unparseable index.json, {walked} walked a document, {found} with findings"
    );
    assert!(
        unparsed >= 10 && walked >= 90 && found >= 150,
        "{unparsed} {walked} {found}"
    );
}

#[test]
fn mutated_documents_exit_0_1_or_2_through_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts = copy_hosts(dir.path());
    let docs = collect_docs(&hosts);
    let digests = all_digests(&docs);
    let mut rng = Rng::new(0xc11_0c1c);
    let mut codes = std::collections::BTreeMap::new();
    for i in 0..25 {
        let doc = rng.pick(&docs).clone();
        let mutated = mutate(&mut rng, &doc.bytes, &digests);
        let placed = place(&mut rng, &hosts[doc.host], &doc, &mutated);
        let root = placed.root.to_str().expect("utf-8").to_string();
        let target = serde_json::from_slice::<Value>(&mutated)
            .ok()
            .and_then(|_| {
                let ix: Value =
                    serde_json::from_slice(&fs::read(placed.root.join("index.json")).ok()?).ok()?;
                ix["manifests"][0]["digest"].as_str().map(String::from)
            })
            .unwrap_or_else(|| "m".into());
        let runs: [Vec<&str>; 6] = [
            vec!["ls", &root],
            vec!["ls", "--json", &root],
            vec!["inspect", "--json", &root, &target],
            vec!["fsck", "--json", &root],
            vec!["fsck", "--deep", &root],
            vec!["gc", "--dry-run", &root],
        ];
        for args in &runs {
            let o = run(args);
            let code = o.status.code();
            let err = stderr(&o);
            assert!(
                matches!(code, Some(0..=2)) && !err.contains("panicked"),
                "iteration {i}: {args:?} exited {code:?}: {err}\ninput: {}",
                String::from_utf8_lossy(&mutated)
            );
            *codes.entry((args[0].to_string(), code)).or_insert(0) += 1;
        }
    }
    // The mutations must reach both the happy and the unhappy paths.
    assert!(codes.keys().any(|(_, c)| *c == Some(0)), "{codes:?}");
    assert!(codes.keys().any(|(_, c)| *c != Some(0)), "{codes:?}");
}
