//! A whole tar built from the input, imported into a layout.
//!
//! The input is a tar (seeds: the docker save archives of `fixtures/docker/`). Before it is
//! written out, the checksum of every header on the chain of headers is recomputed, so that
//! mutated names, sizes, types and link targets reach the importer instead of stopping at the
//! tar reader's checksum check.
//!
//! Invariants beyond "no panic": after a successful import, fsck (deep) finds no errors; after a
//! failed one, `index.json` is byte for byte what it was and fsck finds no errors either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocikit_docker::import::{import, ImportOptions};
use ocikit_layout::fsck::{fsck, FsckOptions, Severity};
use ocikit_layout::{Layout, Options};

/// Parse a tar numeric field (octal, or base-256 when the high bit is set).
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut n: u64 = 0;
        for &b in &field[1..] {
            n = n.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(n);
    }
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// Recompute the checksum of each header, following sizes from one header to the next.
fn fix_checksums(tar: &mut [u8]) {
    let mut pos = 0usize;
    for _ in 0..10_000 {
        let Some(block) = tar.get_mut(pos..pos + 512) else {
            return;
        };
        if block.iter().all(|&b| b == 0) {
            pos += 512;
            continue;
        }
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        let text = format!("{sum:06o}\0 ");
        block[148..156].copy_from_slice(&text.as_bytes()[..8]);
        let Some(size) = number(&block[124..136]) else {
            return;
        };
        let Some(next) = usize::try_from(size)
            .ok()
            .and_then(|s| s.checked_add(511))
            .map(|s| s / 512 * 512)
            .and_then(|s| s.checked_add(pos + 512))
        else {
            return;
        };
        pos = next;
    }
}

fn errors(layout: &Layout) -> Vec<String> {
    let report = fsck(
        layout,
        &FsckOptions {
            deep: true,
            progress: None,
        },
    )
    .expect("fsck runs on a layout import left behind");
    report
        .findings
        .iter()
        .filter(|f| f.kind.severity() == Severity::Error)
        .map(|f| format!("{:?} {:?}: {}", f.kind, f.digest, f.detail))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut tar = data.to_vec();
    fix_checksums(&mut tar);
    let Ok(dir) = tempfile::tempdir() else { return };
    let src = dir.path().join("in.tar");
    std::fs::write(&src, &tar).expect("write the tar");
    let root = dir.path().join("l");
    let opts = Options {
        durable: false,
        ..Options::default()
    };
    let (layout, _) = Layout::init(&root, opts.clone()).expect("init");
    let before = std::fs::read(root.join("index.json")).expect("index.json");
    let result = import(&[src], &root, opts.clone(), &ImportOptions::default());
    let layout = match &result {
        Ok(_) => Layout::open(&root, opts).expect("the imported layout opens"),
        Err(_) => {
            let after = std::fs::read(root.join("index.json")).expect("index.json");
            assert_eq!(before, after, "a failed import changed index.json");
            layout
        }
    };
    let errs = errors(&layout);
    assert!(errs.is_empty(), "{result:?}: fsck: {errs:#?}");
});
