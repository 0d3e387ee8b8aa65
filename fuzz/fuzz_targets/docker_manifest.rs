//! docker save `manifest.json` and legacy `repositories` parsing, as import reads them.
//!
//! The input is parsed as both. Invariants beyond "no panic": every layer and config path
//! either normalizes to a relative path without `..` that normalizes to itself again, or is
//! refused; every RepoTag is either a valid ref name with a containerd full name, or refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocikit_docker::archive::normalize;
use ocikit_docker::import::{parse_repositories, parse_save_manifest};
use ocikit_docker::names::containerd_name;
use ocikit_layout::refs::check_ref_name;

fn check_path(p: &str) {
    if let Ok(n) = normalize(p) {
        assert!(!n.starts_with('/'), "{p:?} -> {n:?}");
        assert!(!n.split('/').any(|c| c == ".." || c == "." || c.is_empty()) || n.is_empty());
        assert!(!n.contains('\0'));
        assert_eq!(
            normalize(&n).as_deref(),
            Ok(n.as_str()),
            "not idempotent: {p:?}"
        );
    }
}

fn check_name(n: &str) {
    if check_ref_name(n).is_ok() {
        // A name import accepts also gets the containerd annotation, or none (digests).
        let _ = containerd_name(n);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = parse_save_manifest(data) {
        assert!(!list.is_empty());
        for e in &list {
            check_path(&e.config);
            for l in e.layers.iter().flatten() {
                check_path(l);
            }
            for t in e.repo_tags.iter().flatten() {
                check_name(t);
            }
        }
    }
    if let Ok(by_id) = parse_repositories(data) {
        assert!(!by_id.is_empty());
        for (id, names) in &by_id {
            check_path(&format!("{id}/json"));
            check_path(&format!("{id}/layer.tar"));
            for n in names {
                check_name(n);
            }
        }
    }
});
