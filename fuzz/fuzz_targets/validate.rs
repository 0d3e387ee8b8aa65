//! The schema checks never panic, whatever the document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocikit_layout::validate::{check, DocType};

fuzz_target!(|data: &[u8]| {
    for t in [
        DocType::Manifest,
        DocType::Index,
        DocType::Config,
        DocType::Descriptor,
        DocType::LayoutHeader,
    ] {
        let _ = check(t, data);
    }
});
