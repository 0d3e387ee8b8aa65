//! Tar member names and link targets through the archive reader's normalisation.
//!
//! Input: a member name, optionally followed by a NUL and a symlink target. Invariants: an
//! accepted name has no `..`, `.` or empty component, no leading `/`, no NUL, stays under any
//! root it is joined to, and normalizes to itself; a symlink target joined to an accepted name
//! is either refused or an archive path with the same properties.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use ocikit_docker::archive::{join_link, normalize};

fn inside(n: &str) {
    assert!(!n.starts_with('/'), "{n:?}");
    assert!(!n.contains('\0'), "{n:?}");
    if !n.is_empty() {
        assert!(
            n.split('/').all(|c| !c.is_empty() && c != "." && c != ".."),
            "{n:?}"
        );
    }
    let root = Path::new("/fuzz-root");
    let joined = root.join(n);
    assert!(joined.starts_with(root), "{n:?} leaves the root");
    assert!(
        joined.components().all(|c| c != Component::ParentDir),
        "{n:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (name, target) = match text.split_once('\0') {
        Some((n, t)) => (n, Some(t)),
        None => (text.as_ref(), None),
    };
    let Ok(n) = normalize(name) else { return };
    inside(&n);
    assert_eq!(normalize(&n).as_deref(), Ok(n.as_str()), "not idempotent");
    if let Some(t) = target {
        if let Some(j) = join_link(&n, t) {
            // Link targets may hold NUL: the lookup of such a name fails, nothing is opened.
            let j = j.replace('\0', "x");
            inside(&j);
            assert_eq!(normalize(&j).as_deref(), Ok(j.as_str()));
        }
    }
});
