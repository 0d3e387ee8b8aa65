//! Descriptor, manifest, index, schema1, config and platform parsing: never panics, and what
//! parses survives serialize -> parse unchanged (unknown fields included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocikit_layout::{Descriptor, ImageConfig, Index, Manifest, Platform, Raw, Schema1};
use serde::{de::DeserializeOwned, Serialize};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let bytes = serde_json::to_vec(&v).expect("a parsed document serializes");
    let back: T = serde_json::from_slice(&bytes).expect("what ocikit writes parses");
    assert_eq!(back, v);
}

fuzz_target!(|data: &[u8]| {
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
