//! Random mutations of the real `manifest.json` and `repositories` members of the shipped
//! docker-save archives (`fixtures/docker/*.tar`), each rebuilt into a tar with the mutated
//! member and imported through the CLI: never a panic (no "panicked" on stderr), exit always 0,
//! 1 or 2, and a failed import leaves the destination as it was — a destination that did not
//! exist still does not, an existing layout keeps its `index.json` byte for byte and stays
//! fsck-clean.
//!
//! Deterministic: a fixed seed and the small PRNG in `craft`. A failure prints the iteration, the
//! archive, the member and the mutated bytes, which then belong in a regression test next to the
//! code that broke. `tests/mutation.rs` does the same for layout documents.

mod craft;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use craft::*;
use serde_json::{json, Value};

/// The members mutated.
const TARGETS: &[&str] = &["manifest.json", "repositories"];

/// One member of a fixture archive: its header, path, link target and data.
struct Member {
    header: tar::Header,
    path: String,
    link: Option<String>,
    data: Vec<u8>,
}

struct Fixture {
    name: String,
    members: Vec<Member>,
}

fn fixtures() -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/docker");
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("fixtures/docker")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tar"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let mut ar = tar::Archive::new(fs::File::open(p).expect("open"));
            let members = ar
                .entries()
                .expect("entries")
                .map(|e| {
                    let mut e = e.expect("entry");
                    let path = e.path().expect("path").to_string_lossy().into_owned();
                    let link = e
                        .link_name()
                        .expect("link")
                        .map(|l| l.to_string_lossy().into_owned());
                    let header = e.header().clone();
                    let mut data = Vec::new();
                    e.read_to_end(&mut data).expect("data");
                    Member {
                        header,
                        path,
                        link,
                        data,
                    }
                })
                .collect();
            Fixture {
                name: p.file_name().expect("name").to_string_lossy().into_owned(),
                members,
            }
        })
        .collect()
}

/// The fixture rebuilt with `member` holding `data`.
fn rebuild(f: &Fixture, member: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in &f.members {
        let mut h = m.header.clone();
        match &m.link {
            Some(l) => b.append_link(&mut h, &m.path, l).expect("link"),
            None => {
                let bytes = if m.path == member { data } else { &m.data };
                h.set_size(bytes.len() as u64);
                b.append_data(&mut h, &m.path, bytes).expect("append");
            }
        }
    }
    b.into_inner().expect("tar")
}

/// Values aimed at the docker-save parsers: hostile member paths, other members, bad names.
fn interesting(rng: &mut Rng, members: &[String]) -> Value {
    match rng.below(20) {
        0 => json!("../../../etc/passwd"),
        1 => json!("/etc/passwd"),
        2 => json!(rng.pick(members)),
        3 => json!(format!("./{}", rng.pick(members))),
        4 => json!("a".repeat(5000)),
        5 => Value::Null,
        6 => json!([]),
        7 => json!({}),
        8 => json!(-1),
        9 => json!("UPPER/case:tag"),
        10 => json!("busybox:latest"),
        11 => json!("repo@sha256:0000000000000000000000000000000000000000000000000000000000000000"),
        12 => json!("nul\u{0}name"),
        13 => json!(""),
        14 => json!([rng.pick(members), rng.pick(members)]),
        15 => json!({"sha256:0000000000000000000000000000000000000000000000000000000000000000":
            {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
             "size": rng.below(100), "digest": "sha256:00", "urls": ["https://example.com/x"]}}),
        16 => json!({"latest": "0".repeat(64)}),
        17 => json!(u64::MAX),
        18 => json!("blobs/sha256/"),
        _ => json!(true),
    }
}

/// A random node of `v` (possibly the root).
fn random_node<'a>(rng: &mut Rng, v: &'a mut Value) -> &'a mut Value {
    let stop = rng.chance(4);
    let next = match v {
        Value::Object(o) if !o.is_empty() && !stop => {
            Some(o.keys().nth(rng.below(o.len())).cloned().expect("key"))
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

fn mutate(rng: &mut Rng, bytes: &[u8], members: &[String]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        let len = out.len().max(1);
        match rng.below(8) {
            0..=4 => {
                let Ok(mut v) = serde_json::from_slice::<Value>(&out) else {
                    continue;
                };
                let node = random_node(rng, &mut v);
                match (rng.below(4), &mut *node) {
                    (0, Value::Object(o)) if !o.is_empty() => {
                        let k = o.keys().nth(rng.below(o.len())).cloned().expect("key");
                        o.remove(&k);
                    }
                    (1, Value::Array(a)) if !a.is_empty() => {
                        let i = rng.below(a.len());
                        let dup = a[i].clone();
                        a.push(dup);
                    }
                    _ => *node = interesting(rng, members),
                }
                out = serde_json::to_vec(&v).expect("json");
            }
            5 => {
                if let Some(b) = out.get_mut(rng.below(len)) {
                    *b ^= 1 << rng.below(8);
                }
            }
            6 => out.truncate(rng.below(len)),
            _ => {
                let at = rng.below(out.len() + 1);
                let tokens: &[&[u8]] = &[b"null", b"[", b"}", b"\"", b"-1", b"\\u0000"];
                let t = rng.pick(tokens);
                out.splice(at..at, t.iter().copied());
            }
        }
    }
    out
}

#[test]
fn mutated_docker_manifests_import_with_exit_0_1_or_2_and_failures_change_nothing() {
    let fixtures = fixtures();
    let candidates: Vec<(usize, &str)> = fixtures
        .iter()
        .enumerate()
        .flat_map(|(i, f)| {
            TARGETS
                .iter()
                .filter(move |t| f.members.iter().any(|m| m.path == **t))
                .map(move |t| (i, *t))
        })
        .collect();
    assert!(candidates.len() >= 10, "{} candidates", candidates.len());
    let dir = tempfile::tempdir().expect("tempdir");
    // An existing destination with one image in it.
    let base = dir.path().join("base");
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/docker/ggcr-test_image_1.tar");
    let o = run(&[
        "import",
        seed.to_str().expect("utf-8"),
        base.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let base_index = fs::read(base.join("index.json")).expect("index.json");

    let mut rng = Rng::new(0xd0c_4e5);
    let mut codes: BTreeMap<(bool, Option<i32>), usize> = BTreeMap::new();
    for i in 0..250 {
        let (fx, member) = *rng.pick(&candidates);
        let f = &fixtures[fx];
        let original = &f.members.iter().find(|m| m.path == member).expect("m").data;
        let names: Vec<String> = f.members.iter().map(|m| m.path.clone()).collect();
        let mutated = mutate(&mut rng, original, &names);
        let src = dir.path().join(format!("in-{i}.tar"));
        fs::write(&src, rebuild(f, member, &mutated)).expect("write");
        let existing = rng.chance(2);
        let dest = dir.path().join(format!("dest-{i}"));
        if existing {
            common_copy(&base, &dest);
        }
        let o = run(&[
            "import",
            src.to_str().expect("utf-8"),
            dest.to_str().expect("utf-8"),
        ]);
        let code = o.status.code();
        let err = stderr(&o);
        let ctx = || {
            format!(
                "iteration {i}: {} with {member} mutated to {}\nexit {code:?}: {err}",
                f.name,
                String::from_utf8_lossy(&mutated)
            )
        };
        assert!(
            matches!(code, Some(0..=2)) && !err.contains("panicked"),
            "{}",
            ctx()
        );
        if code != Some(0) {
            if existing {
                assert_eq!(
                    fs::read(dest.join("index.json")).expect("index.json"),
                    base_index,
                    "{}",
                    ctx()
                );
                let fsck = run(&["fsck", dest.to_str().expect("utf-8")]);
                assert_eq!(fsck.status.code(), Some(0), "{}\n{}", ctx(), stdout(&fsck));
            } else {
                assert!(!dest.exists(), "{}", ctx());
            }
        }
        *codes.entry((existing, code)).or_insert(0) += 1;
        let _ = fs::remove_dir_all(&dest);
        let _ = fs::remove_file(&src);
    }
    eprintln!("{codes:?}");
    // The mutations must reach both the happy and the unhappy paths, in both kinds of
    // destination.
    for existing in [false, true] {
        assert!(codes.contains_key(&(existing, Some(0))), "{codes:?}");
        assert!(codes.contains_key(&(existing, Some(2))), "{codes:?}");
    }
}

fn common_copy(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir").flatten() {
        let (s, d) = (e.path(), to.join(e.file_name()));
        if e.file_type().expect("type").is_dir() {
            common_copy(&s, &d);
        } else {
            fs::copy(&s, &d).expect("copy");
        }
    }
}
