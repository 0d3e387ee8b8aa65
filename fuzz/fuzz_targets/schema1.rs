//! schema1 conversion (`ocikit_docker::schema1::build`), with layer facts derived from the input.
//!
//! Each non-throwaway fsLayer gets facts (gzip layer, its blobSum, a size and diff_id derived
//! from its position). Invariants beyond "no panic": when conversion succeeds, for both targets,
//! the manifest parses with one layer per non-throwaway fsLayer (base first), its config
//! descriptor names the config bytes, the config's `rootfs.diff_ids` are the facts' diff_ids in
//! the same order, and `history` has one entry per fsLayer with `empty_layer` exactly on the
//! throwaways.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocikit_docker::convert::Target;
use ocikit_docker::schema1::{build, parse, throwaways, LayerFacts};
use ocikit_layout::{Digest, ImageConfig, Manifest, MediaType};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = parse(data) else { return };
    let Ok(thrown) = throwaways(&s) else {
        assert!(build(data, &[], Target::Oci).is_err());
        return;
    };
    assert_eq!(thrown.len(), s.fs_layers.len());
    let facts: Vec<Option<LayerFacts>> = s
        .fs_layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (!thrown[i]).then(|| LayerFacts {
                media_type: MediaType::OciLayerGzip,
                digest: l.blob_sum.clone(),
                size: i as u64 * 7,
                diff_id: Digest::sha256(format!("{i}").as_bytes()),
            })
        })
        .collect();
    for target in [Target::Oci, Target::Docker] {
        let built = match build(data, &facts, target) {
            Ok(b) => b,
            Err(_) => continue,
        };
        let m: Manifest = serde_json::from_slice(&built.manifest).expect("manifest parses");
        assert_eq!(m.config.digest, Digest::sha256(&built.config));
        assert_eq!(m.config.size, built.config.len() as u64);
        let want: Vec<&LayerFacts> = facts.iter().rev().flatten().collect();
        assert_eq!(m.layers.len(), want.len());
        for (d, f) in m.layers.iter().zip(&want) {
            assert_eq!(d.digest, f.digest);
            assert_eq!(d.size, f.size);
        }
        let v: Value = serde_json::from_slice(&built.config).expect("config is JSON");
        let cfg: ImageConfig = serde_json::from_slice(&built.config).expect("config parses");
        let diff_ids = cfg.rootfs.expect("rootfs").diff_ids;
        let want_ids: Vec<Digest> = want.iter().map(|f| f.diff_id.clone()).collect();
        assert_eq!(diff_ids, want_ids);
        let history = v["history"].as_array().expect("history");
        assert_eq!(history.len(), s.fs_layers.len());
        for (h, t) in history.iter().zip(thrown.iter().rev()) {
            assert_eq!(h.get("empty_layer") == Some(&Value::Bool(true)), *t);
        }
    }
});
