//! `ocikit serve`'s request reading: a request head, its query, its `Range` header and a ref
//! mapped to a repository and tag never panic, and what they accept keeps their promises (a
//! target is a printable path, a range lies inside the blob, a mapped repository and tag
//! follow the distribution grammar).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocikit_registry::serve::handler::{parse_range, Range};
use ocikit_registry::serve::http::{parse_request, HEADER_COUNT};
use ocikit_registry::serve::names::{is_repository, is_tag, map_ref, RefName};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = parse_request(data) {
        assert!(req.path.starts_with('/'));
        assert!(req.path.bytes().all(|b| b.is_ascii_graphic()));
        assert!(!req.path.contains('?'));
        assert!(req.headers.len() <= HEADER_COUNT);
        for key in ["n", "last", "artifactType"] {
            let _ = req.query_values(key);
        }
        let _ = req.keep_alive();
        let _ = req.has_body();
        if let Some(r) = req.header("range") {
            let len = data.len() as u64;
            match parse_range(r, len) {
                Range::Part(start, end) => assert!(start <= end && end < len, "{r} of {len}"),
                Range::Full | Range::Unsatisfiable => {}
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        match map_ref(text) {
            RefName::OwnTag(t) => assert!(is_tag(&t)),
            RefName::Tag { repo, tag } => assert!(is_repository(&repo) && is_tag(&tag)),
            RefName::DigestOnly { repo } => assert!(is_repository(&repo)),
            RefName::Other => {}
        }
    }
});
