//! A whole layout built from the input, then everything that reads it: open, index.json, the
//! walk, fsck (deep), gc --dry-run, resolving refs and digests, and a real gc.
//!
//! Input: chunks separated by NUL bytes. Chunk 0 is `index.json`; chunk N > 0 is a blob stored
//! under its sha256 digest. Inside chunk i, `@j` (a digit j > i) becomes the digest of chunk j
//! and `#j` its size, so the fuzzer can build real references (chunks are resolved from the last
//! to the first, which keeps references acyclic, as digests force them to be).
//!
//! Invariants beyond "no panic": gc never makes a reachable blob missing, and a second gc finds
//! nothing to delete.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocikit_layout::fsck::{fsck, FindingKind, FsckOptions};
use ocikit_layout::walk::Walk;
use ocikit_layout::{gc, refs, Digest, Layout, Options};

const MAX_CHUNKS: usize = 10;

fn resolve(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut done: Vec<Vec<u8>> = vec![Vec::new(); chunks.len()];
    for i in (0..chunks.len()).rev() {
        let src = chunks[i];
        let mut out = Vec::with_capacity(src.len());
        let mut k = 0;
        while k < src.len() {
            let (c, next) = (src[k], src.get(k + 1).copied());
            match (c, next) {
                (b'@' | b'#', Some(d @ b'0'..=b'9'))
                    if ((d - b'0') as usize) > i && ((d - b'0') as usize) < chunks.len() =>
                {
                    let j = (d - b'0') as usize;
                    if c == b'@' {
                        out.extend_from_slice(Digest::sha256(&done[j]).as_str().as_bytes());
                    } else {
                        out.extend_from_slice(done[j].len().to_string().as_bytes());
                    }
                    k += 2;
                }
                _ => {
                    out.push(c);
                    k += 1;
                }
            }
        }
        done[i] = out;
    }
    done
}

fn missing(layout: &Layout) -> Vec<(Option<Digest>, Vec<String>)> {
    let Ok(r) = fsck(
        layout,
        &FsckOptions {
            deep: true,
            progress: None,
        },
    ) else {
        return Vec::new();
    };
    r.findings
        .into_iter()
        .filter(|f| f.kind == FindingKind::Missing)
        .map(|f| (f.digest, f.path))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let chunks: Vec<&[u8]> = data.split(|&b| b == 0).take(MAX_CHUNKS).collect();
    let docs = resolve(&chunks);
    let Ok(dir) = tempfile::tempdir() else { return };
    let root = dir.path().join("l");
    let opts = Options {
        durable: false,
        ..Options::default()
    };
    let Ok((layout, _)) = Layout::init(&root, opts.clone()) else {
        return;
    };
    {
        let Ok(lock) = layout.lock() else { return };
        for blob in &docs[1..] {
            let _ = lock.write_blob(blob);
        }
        let _ = lock.commit_index_bytes(&docs[0]);
    }
    let Ok(layout) = Layout::open(&root, opts) else {
        return;
    };
    let before = missing(&layout);
    let _ = gc::gc(&layout, true);
    let Ok(index) = layout.read_index() else {
        return;
    };
    let walk = Walk::from_index(&layout, &index.value);
    for i in 0..walk.nodes.len() {
        let _ = walk.path_of(i);
    }
    let _ = walk.unique();
    for d in &index.value.manifests {
        let _ = refs::resolve_anywhere(&layout, &index.value, d.digest.as_str());
        if let Some(r) = d.ref_name() {
            if let Ok(desc) = refs::resolve_anywhere(&layout, &index.value, r) {
                let _ = Walk::from_descriptor(&layout, &desc);
            }
        }
    }
    if let Ok(report) = gc::gc(&layout, false) {
        let after = missing(&layout);
        assert_eq!(before, after, "gc deleted a reachable blob: {report:?}");
        let again = gc::gc(&layout, false).expect("a second gc works when the first did");
        assert!(
            again.blobs.is_empty() && again.temp_files.is_empty(),
            "{again:?}"
        );
    }
});
