//! Digest parsing: never panics, and every digest it accepts maps to a path inside `blobs/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocikit_layout::Digest;
use std::path::Component;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(d) = Digest::parse(s) else {
        return;
    };
    assert_eq!(d.as_str(), s);
    assert_eq!(format!("{}:{}", d.algorithm_str(), d.encoded()), s);
    let rel = d.blob_rel_path();
    let parts: Vec<Component> = rel.components().collect();
    assert_eq!(parts.len(), 3, "{rel:?}");
    assert!(
        parts.iter().all(|c| matches!(c, Component::Normal(_))),
        "{rel:?} leaves blobs/"
    );
    // Round trips: text and JSON.
    assert_eq!(Digest::parse(&d.to_string()).as_ref(), Ok(&d));
    let json = serde_json::to_string(&d).expect("serializes");
    let back: Digest = serde_json::from_str(&json).expect("parses back");
    assert_eq!(back, d);
    if let Some(alg) = d.algorithm() {
        assert_eq!(alg.as_str(), d.algorithm_str());
    }
});
