//! Descriptor, manifest, index, schema1, config and platform parsing: never panics, and what
//! parses survives serialize -> parse unchanged (unknown fields included). Through the
//! exact-number reader and writer (`ocikit_layout::json`), a document written back parses to
//! the same value, and one written back twice gives the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocikit_layout::{json, Descriptor, ImageConfig, Index, Manifest, Platform, Raw, Schema1};
use serde::{de::DeserializeOwned, Serialize};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let bytes = serde_json::to_vec(&v).expect("a parsed document serializes");
    let back: T = serde_json::from_slice(&bytes).expect("what ocikit writes parses");
    assert_eq!(back, v);
}

/// `json::from_slice` -> `json::to_vec` is stable: what it writes reads back the same.
fn exact_round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let Ok(v) = json::from_slice::<T>(data) else {
        return;
    };
    let bytes = json::to_vec(&v).expect("a parsed document serializes");
    let back: T = json::from_slice(&bytes).expect("what ocikit writes parses");
    assert_eq!(json::to_vec(&back).expect("serializes"), bytes);
}

fuzz_target!(|data: &[u8]| {
    exact_round_trip::<serde_json::Value>(data);
    exact_round_trip::<Index>(data);
    round_trip::<Descriptor>(data);
    round_trip::<Manifest>(data);
    round_trip::<Index>(data);
    round_trip::<Schema1>(data);
    round_trip::<Platform>(data);
    let _ = serde_json::from_slice::<ImageConfig>(data);
    if let Ok(raw) = Raw::<Manifest>::parse(data.to_vec(), "fuzz") {
        assert_eq!(raw.bytes, data);
    }
});
