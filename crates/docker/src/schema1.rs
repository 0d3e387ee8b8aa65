//! Docker schema1 manifests (signed `+prettyjws` or not) -> OCI or Docker schema2.
//!
//! schema1 lists layers top first, one `history[i].v1Compatibility` (a v1 image JSON in a
//! string) per `fsLayers[i]`, and carries no diff_ids or sizes. Converting, the way
//! containers/image does (`manifest/docker_schema1.go`, `ToSchema2Config`, and
//! `internal/image/docker_schema1.go`, `convertToManifestSchema2`):
//!
//! - layers are reversed (base first); layers whose v1Compatibility says `"throwaway": true` are
//!   dropped from `layers` but kept in `history` with `empty_layer: true`;
//! - diff_ids are computed by decompressing each layer blob, so the same image as schema1 and
//!   as schema2 gives the same diff_ids;
//! - the config is the top layer's v1Compatibility without `id`, `parent`, `parent_id`,
//!   `layer_id`, `throwaway` and `Size`, plus `rootfs` (`{"type":"layers","diff_ids":[…]}`) and
//!   `history` (one entry per fsLayer, base first: `created`, `author`, `created_by` = the
//!   `container_config.Cmd` words joined by spaces, `comment`, `empty_layer`), serialized as Go's
//!   `encoding/json` writes a map: top-level keys sorted, compact, `<`, `>`, `&` escaped.
//!   Not reproduced: containers/image re-encodes the v1Compatibility of images built by
//!   Docker before 1.8.3 through a Go struct first; here their fields are kept as written.
//!
//! The config bytes are the same for both targets (containers/image further rewrites the config
//! through its OCI struct when the target is OCI; ocikit keeps the Docker config, which is a valid
//! OCI config, and only labels it). Signatures are ignored.
//!
//! Entry points: [`convert`] for a manifest whose layer blobs are already in the layout (the
//! `convert` verb, for schema1 manifests it meets): each layer blob is read in place for its
//! diff_id, and written only when recompressed. [`build`] is the pure part, given the layer
//! facts, and [`write`] stores its result: `import` uses them for skopeo `dir:` copies, whose
//! layers it streams from the directory through the image builder
//! ([`ocikit_layout::engine::ImageBuilder`]). `convert` does not use the builder: the builder
//! stores every layer it reads, which for a blob already in the layout is a second copy of its
//! bytes (and a re-hash of the present one); and the manifest keeps containers/image's field
//! order (`mediaType`, `size`, `digest`), which differs from the builder's.

use std::collections::HashMap;
use std::io::{self, Read};

use ocikit_layout::compress::{decompressor, sniff, Sniffed, SNIFF_LEN};
use ocikit_layout::layer::{copy_large, CompressOptions, LayerWriter};
use ocikit_layout::{peek, Descriptor, Digest, Hasher, MediaType, Schema1, WriteLock};
use serde_json::{json, Map, Value};

use crate::convert::Target;

/// Why a schema1 manifest cannot be converted.
#[derive(Debug, thiserror::Error)]
pub enum Schema1Error {
    /// Reading or writing the layout failed.
    #[error(transparent)]
    Layout(#[from] ocikit_layout::Error),
    /// The bytes are not a schema1 manifest.
    #[error("does not parse as a schema1 manifest: {0}")]
    Json(#[source] serde_json::Error),
    /// No layers at all.
    #[error("has no history entries")]
    NoHistory,
    /// `history` and `fsLayers` differ in length.
    #[error("has {history} history entries and {fs_layers} fsLayers")]
    Mismatch {
        /// history entries.
        history: usize,
        /// fsLayers.
        fs_layers: usize,
    },
    /// A v1Compatibility string that is not what it should be.
    #[error("history[{index}].v1Compatibility: {reason}")]
    V1Compat {
        /// Its position in `history`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// [`build`] was given layer facts that do not fit the manifest.
    #[error("layer facts for fsLayers[{index}] are missing or do not match `{digest}`")]
    Facts {
        /// The fsLayer.
        index: usize,
        /// Its blobSum.
        digest: Digest,
    },
    /// A layer blob that is neither a tar nor gzip nor zstd.
    #[error("layer `{layer}` is not a tar, gzip or zstd stream ({what})")]
    Compression {
        /// The layer.
        layer: Digest,
        /// What it looks like.
        what: &'static str,
    },
    /// A zstd layer cannot go into a Docker manifest as it is.
    #[error("layer `{layer}` is zstd-compressed, which Docker manifests cannot hold; recompress with gzip or none")]
    ZstdForDocker {
        /// The layer.
        layer: Digest,
    },
}

/// What is known about one fsLayer after reading its blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFacts {
    /// The layer's media type in the target's family.
    pub media_type: MediaType,
    /// The stored blob (the blobSum, or the recompressed blob).
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
}

/// A converted manifest, not yet written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The config bytes.
    pub config: Vec<u8>,
    /// The manifest bytes (its config descriptor names `config`).
    pub manifest: Vec<u8>,
    /// The manifest's media type.
    pub media_type: MediaType,
}

/// The fields of a v1Compatibility that the conversion reads.
#[derive(Debug, Clone)]
struct V1Compat {
    obj: Map<String, Value>,
    throwaway: bool,
    created: String,
    author: String,
    comment: String,
    cmd: Vec<String>,
}

/// Look a key up as Go's `encoding/json` does: exact match first, then case-insensitively.
fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn string_field(obj: &Map<String, Value>, key: &str, index: usize) -> Result<String, Schema1Error> {
    match get_ci(obj, key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Schema1Error::V1Compat {
            index,
            reason: format!("`{key}` is not a string"),
        }),
    }
}

fn parse_v1(s: &str, index: usize) -> Result<V1Compat, Schema1Error> {
    let bad = |reason: String| Schema1Error::V1Compat { index, reason };
    let obj = match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err(bad("not a JSON object".into())),
        Err(e) => return Err(bad(format!("does not parse: {e}"))),
    };
    let throwaway = match get_ci(&obj, "throwaway") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("`throwaway` is not a boolean".into())),
    };
    let created = match get_ci(&obj, "created") {
        None | Some(Value::Null) => "0001-01-01T00:00:00Z".to_string(),
        Some(Value::String(t)) => {
            go_time(t).ok_or_else(|| bad(format!("`created` is not an RFC 3339 time: `{t}`")))?
        }
        Some(_) => return Err(bad("`created` is not a string".into())),
    };
    let cmd = match get_ci(&obj, "container_config") {
        Some(Value::Object(cc)) => match get_ci(cc, "Cmd") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|w| w.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("`container_config.Cmd` is not a list of strings".into()))?,
            Some(_) => return Err(bad("`container_config.Cmd` is not a list".into())),
        },
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(bad("`container_config` is not an object".into())),
    };
    Ok(V1Compat {
        throwaway,
        created,
        author: string_field(&obj, "author", index)?,
        comment: string_field(&obj, "comment", index)?,
        cmd,
        obj,
    })
}

/// An RFC 3339 time as Go writes it back (`time.Time` JSON): fraction without trailing zeros.
fn go_time(t: &str) -> Option<String> {
    let b = t.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !shape {
        return None;
    }
    let mut rest = &t[19..];
    let mut frac = "";
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        frac = &r[..n];
        rest = &r[n..];
    }
    let zone_ok = rest == "Z"
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && digits(t.len() - 5..t.len() - 3)
            && rest.as_bytes()[3] == b':'
            && digits(t.len() - 2..t.len()));
    if !zone_ok {
        return None;
    }
    let frac = frac.get(..9).unwrap_or(frac).trim_end_matches('0');
    let frac = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    Some(format!("{}{frac}{rest}", &t[..19]))
}

/// Structural checks: one history entry per fsLayer, at least one, each parseable.
pub fn check(s: &Schema1) -> Result<(), Schema1Error> {
    parse_history(s).map(|_| ())
}

fn parse_history(s: &Schema1) -> Result<Vec<V1Compat>, Schema1Error> {
    if s.history.is_empty() {
        return Err(Schema1Error::NoHistory);
    }
    if s.history.len() != s.fs_layers.len() {
        return Err(Schema1Error::Mismatch {
            history: s.history.len(),
            fs_layers: s.fs_layers.len(),
        });
    }
    s.history
        .iter()
        .enumerate()
        .map(|(i, h)| parse_v1(&h.v1_compatibility, i))
        .collect()
}

/// Parse schema1 bytes (signatures, if any, are ignored).
pub fn parse(bytes: &[u8]) -> Result<Schema1, Schema1Error> {
    serde_json::from_slice(bytes).map_err(Schema1Error::Json)
}

/// Which fsLayers (top first, as in the manifest) are throwaways.
pub fn throwaways(s: &Schema1) -> Result<Vec<bool>, Schema1Error> {
    Ok(parse_history(s)?.iter().map(|v| v.throwaway).collect())
}

/// Serialize as Go's `encoding/json` does: compact, with `<`, `>`, `&`, U+2028 and U+2029
/// escaped (they only occur inside strings in compact JSON).
fn go_json(v: &Value) -> Vec<u8> {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.into_bytes()
}

/// The image config containers/image builds from a schema1 manifest and the diff_ids of its
/// non-throwaway layers (base first).
pub fn config_bytes(s: &Schema1, diff_ids: &[Digest]) -> Result<Vec<u8>, Schema1Error> {
    let v1 = parse_history(s)?;
    let history: Vec<Value> = v1
        .iter()
        .rev()
        .map(|c| {
            let mut h = Map::new();
            h.insert("created".into(), Value::String(c.created.clone()));
            if !c.author.is_empty() {
                h.insert("author".into(), Value::String(c.author.clone()));
            }
            let created_by = c.cmd.join(" ");
            if !created_by.is_empty() {
                h.insert("created_by".into(), Value::String(created_by));
            }
            if !c.comment.is_empty() {
                h.insert("comment".into(), Value::String(c.comment.clone()));
            }
            if c.throwaway {
                h.insert("empty_layer".into(), Value::Bool(true));
            }
            Value::Object(h)
        })
        .collect();
    let mut fields: Vec<(String, Value)> = v1[0]
        .obj
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "id" | "parent" | "parent_id" | "layer_id" | "throwaway" | "Size"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .filter(|(k, _)| k != "rootfs" && k != "history")
        .collect();
    fields.push((
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.as_str()).collect::<Vec<_>>()}),
    ));
    fields.push(("history".into(), Value::Array(history)));
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(go_json(&Value::Object(fields.into_iter().collect())))
}

/// Build the converted config and manifest from schema1 bytes and the facts of each fsLayer
/// (same order as `fsLayers`, top first; throwaway layers may be `None`).
pub fn build(
    bytes: &[u8],
    layers: &[Option<LayerFacts>],
    target: Target,
) -> Result<Built, Schema1Error> {
    let s = parse(bytes)?;
    let v1 = parse_history(&s)?;
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for i in (0..s.fs_layers.len()).rev() {
        if v1[i].throwaway {
            continue;
        }
        let Some(Some(f)) = layers.get(i) else {
            return Err(Schema1Error::Facts {
                index: i,
                digest: s.fs_layers[i].blob_sum.clone(),
            });
        };
        descs.push(json!({"mediaType": f.media_type.as_str(), "size": f.size, "digest": f.digest.as_str()}));
        diff_ids.push(f.diff_id.clone());
    }
    let config = config_bytes(&s, &diff_ids)?;
    let (mt, cfg_mt) = match target {
        Target::Oci => (MediaType::OciManifest, MediaType::OciConfig),
        Target::Docker => (MediaType::DockerManifest, MediaType::DockerConfig),
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": mt.as_str(),
        "config": {
            "mediaType": cfg_mt.as_str(),
            "size": config.len(),
            "digest": Digest::sha256(&config).as_str(),
        },
        "layers": descs,
    });
    Ok(Built {
        config,
        manifest: manifest.to_string().into_bytes(),
        media_type: mt,
    })
}

/// Read one layer blob already in the layout: its diff_id, and, when `compress` asks for another
/// compression, a recompressed copy written in the same pass.
fn layer_facts(
    lock: &WriteLock<'_>,
    blob: &Digest,
    target: Target,
    compress: Option<CompressOptions>,
) -> Result<LayerFacts, Schema1Error> {
    let layout = lock.layout();
    let path = layout.blob_path(blob);
    let size = layout.blob_size(blob)?;
    let src = layout.open_blob(blob, size)?;
    let io_err = |e: io::Error| Schema1Error::Layout(ocikit_layout::unwrap_io(e, &path));
    let (head, mut src) = peek(src, SNIFF_LEN).map_err(io_err)?;
    let found = match sniff(&head) {
        Sniffed::Known(c) => c,
        Sniffed::Bzip2 => {
            return Err(Schema1Error::Compression {
                layer: blob.clone(),
                what: "bzip2",
            })
        }
        Sniffed::Xz => {
            return Err(Schema1Error::Compression {
                layer: blob.clone(),
                what: "xz",
            })
        }
        Sniffed::Unknown => {
            return Err(Schema1Error::Compression {
                layer: blob.clone(),
                what: "unknown content",
            })
        }
    };
    let base = match target {
        Target::Oci => MediaType::OciLayer,
        Target::Docker => MediaType::DockerLayer,
    };
    let stored = compress.map(|c| c.compression).unwrap_or(found);
    let media_type = base
        .with_compression(stored)
        .ok_or_else(|| Schema1Error::ZstdForDocker {
            layer: blob.clone(),
        })?;
    match compress {
        Some(opts) if opts.compression != found => {
            let mut w = LayerWriter::new(lock, opts)?;
            {
                let mut dec = decompressor(&mut src, found).map_err(io_err)?;
                copy_large(&mut dec, &mut w).map_err(io_err)?;
            }
            copy_large(&mut src, &mut io::sink()).map_err(io_err)?;
            let info = w.finish()?;
            Ok(LayerFacts {
                media_type,
                digest: info.digest,
                size: info.size,
                diff_id: info.diff_id,
            })
        }
        _ => {
            let mut h: Hasher = ocikit_layout::Algorithm::Sha256.hasher();
            {
                let mut dec = decompressor(&mut src, found).map_err(io_err)?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = dec.read(&mut buf).map_err(io_err)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            }
            copy_large(&mut src, &mut io::sink()).map_err(io_err)?;
            Ok(LayerFacts {
                media_type,
                digest: blob.clone(),
                size: size.unwrap_or(0),
                diff_id: h.finish(),
            })
        }
    }
}

/// Convert a schema1 manifest whose layer blobs are in the layout to `target` (OCI manifest or
/// Docker schema2), writing the config and manifest (and, with `compress`, recompressed layers)
/// through `lock`. Returns the new manifest's descriptor; nothing is added to `index.json`.
///
/// Each non-throwaway layer is read once, verified against its blobSum, decompressed for its
/// diff_id and, when `compress` asks for another compression, recompressed in the same pass.
pub fn convert(
    lock: &WriteLock<'_>,
    schema1_bytes: &[u8],
    target: Target,
    compress: Option<CompressOptions>,
) -> Result<Descriptor, Schema1Error> {
    let s = parse(schema1_bytes)?;
    let throw = throwaways(&s)?;
    let mut memo: HashMap<Digest, LayerFacts> = HashMap::new();
    let mut facts = Vec::with_capacity(s.fs_layers.len());
    for (i, l) in s.fs_layers.iter().enumerate() {
        if throw[i] {
            facts.push(None);
            continue;
        }
        let f = match memo.get(&l.blob_sum) {
            Some(f) => f.clone(),
            None => {
                let f = layer_facts(lock, &l.blob_sum, target, compress)?;
                memo.insert(l.blob_sum.clone(), f.clone());
                f
            }
        };
        facts.push(Some(f));
    }
    let built = build(schema1_bytes, &facts, target)?;
    Ok(write(lock, &built)?)
}

/// Write a converted config and manifest (the layers are already in the layout); returns the
/// manifest's descriptor.
pub fn write(lock: &WriteLock<'_>, built: &Built) -> Result<Descriptor, ocikit_layout::Error> {
    lock.write_blob(&built.config)?;
    let (digest, size) = lock.write_blob(&built.manifest)?;
    Ok(Descriptor::new(built.media_type.clone(), digest, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_matches_go_formatting() {
        let table = [
            (
                "2018-01-24T23:08:25.300741Z",
                Some("2018-01-24T23:08:25.300741Z"),
            ),
            (
                "2016-03-07T21:38:08.690000000Z",
                Some("2016-03-07T21:38:08.69Z"),
            ),
            ("2016-03-07T21:38:08.000Z", Some("2016-03-07T21:38:08Z")),
            (
                "2016-03-07T21:38:08+02:00",
                Some("2016-03-07T21:38:08+02:00"),
            ),
            ("2016-03-07 21:38:08Z", None),
            ("yesterday", None),
            ("2016-03-07T21:38:08.Z", None),
        ];
        for (input, want) in table {
            assert_eq!(go_time(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn go_json_escapes_like_encoding_json() {
        let v = json!({"a": "<b> & \u{2028}", "n": [1, 2]});
        assert_eq!(
            String::from_utf8(go_json(&v)).expect("utf8"),
            r#"{"a":"\u003cb\u003e \u0026 \u2028","n":[1,2]}"#
        );
    }

    #[test]
    fn structure_errors() {
        let no_hist = br#"{"schemaVersion":1,"fsLayers":[],"history":[]}"#;
        assert!(matches!(
            throwaways(&parse(no_hist).expect("parse")),
            Err(Schema1Error::NoHistory)
        ));
        let mismatch = br#"{"schemaVersion":1,"fsLayers":[{"blobSum":"sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"}],"history":[]}"#;
        assert!(matches!(
            throwaways(&parse(mismatch).expect("parse")),
            Err(Schema1Error::NoHistory)
        ));
        let mismatch2 =
            br#"{"schemaVersion":1,"fsLayers":[],"history":[{"v1Compatibility":"{}"}]}"#;
        match throwaways(&parse(mismatch2).expect("parse")) {
            Err(e @ Schema1Error::Mismatch { .. }) => {
                assert_eq!(e.to_string(), "has 1 history entries and 0 fsLayers")
            }
            other => panic!("{other:?}"),
        }
        let bad_time = br#"{"schemaVersion":1,"fsLayers":[{"blobSum":"sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"}],"history":[{"v1Compatibility":"{\"created\":\"now\"}"}]}"#;
        assert_eq!(
            throwaways(&parse(bad_time).expect("parse"))
                .expect_err("bad time")
                .to_string(),
            "history[0].v1Compatibility: `created` is not an RFC 3339 time: `now`"
        );
    }

    fn fixture(name: &str) -> Vec<u8> {
        let p = format!(
            "{}/../../fixtures/convert/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    fn fixture_json(name: &str) -> Value {
        serde_json::from_slice(&fixture(name)).expect("fixture parses")
    }

    /// The side inputs containers/image's test feeds its converter (base first), as facts per
    /// fsLayer (top first).
    fn side_facts(block: &str, family: MediaType) -> Vec<Option<LayerFacts>> {
        let side = fixture_json("schema1-conversion-side-inputs.json");
        let infos = side[block]["layerInfos"].as_array().expect("infos").clone();
        let diff_ids = side[block]["diffIDs"].as_array().expect("diffIDs").clone();
        let mut facts: Vec<Option<LayerFacts>> = infos
            .iter()
            .zip(&diff_ids)
            .map(|(i, d)| {
                Some(LayerFacts {
                    media_type: family.clone(),
                    digest: Digest::parse(i["digest"].as_str().expect("digest")).expect("digest"),
                    size: i["size"].as_u64().expect("size"),
                    diff_id: Digest::parse(d.as_str().expect("diff")).expect("diff"),
                })
            })
            .collect();
        facts.reverse();
        facts
    }

    fn without(mut v: Value, key: &str) -> Value {
        if let Value::Object(m) = &mut v {
            m.shift_remove(key);
        }
        v
    }

    /// Every field of `small` is in `big` with the same value (objects compared recursively).
    fn assert_subset(small: &Value, big: &Value, at: &str) {
        match (small, big) {
            (Value::Object(s), Value::Object(b)) => {
                for (k, v) in s {
                    let bv = b.get(k).unwrap_or_else(|| panic!("{at}.{k} missing"));
                    assert_subset(v, bv, &format!("{at}.{k}"));
                }
            }
            _ => assert_eq!(small, big, "{at}"),
        }
    }

    /// containers/image `TestManifestSchema1ConvertToManifestOCI1` and
    /// `TestManifestSchema1ConvertToSchema2`: manifest equal ignoring `config` (the fixture's
    /// config descriptor is a placeholder), config equal to `schema1-to-schema2-config.json`.
    #[test]
    fn cimage_schema1_to_oci_and_schema2() {
        let bytes = fixture("schema1.json");
        let expected_config = fixture_json("schema1-to-schema2-config.json");

        let oci = build(
            &bytes,
            &side_facts("schema1.json", MediaType::OciLayerGzip),
            Target::Oci,
        )
        .expect("to oci");
        let m: Value = serde_json::from_slice(&oci.manifest).expect("json");
        assert_eq!(
            without(m.clone(), "config"),
            without(fixture_json("schema1-to-oci1.json"), "config")
        );
        assert_eq!(
            m["config"],
            json!({"mediaType": "application/vnd.oci.image.config.v1+json", "size": oci.config.len(), "digest": Digest::sha256(&oci.config).as_str()})
        );
        let cfg: Value = serde_json::from_slice(&oci.config).expect("json");
        assert_eq!(cfg, expected_config);
        // Deliberate difference: for OCI, containers/image passes the config through its OCI
        // struct (`schema1-to-oci1-config.json`), which drops Docker-only fields (`container`,
        // `container_config`, `docker_version`, `config.Hostname`, ...); ocikit keeps the
        // Docker config (a valid OCI config) and only labels it. Everything it keeps, we have.
        let cimage_oci_config = fixture_json("schema1-to-oci1-config.json");
        assert_ne!(cimage_oci_config, cfg);
        assert_subset(&cimage_oci_config, &cfg, "config");

        let docker = build(
            &bytes,
            &side_facts("schema1.json", MediaType::DockerLayerGzip),
            Target::Docker,
        )
        .expect("to docker");
        let m: Value = serde_json::from_slice(&docker.manifest).expect("json");
        assert_eq!(
            without(m.clone(), "config"),
            without(fixture_json("schema1-to-schema2.json"), "config")
        );
        assert_eq!(
            m["config"]["mediaType"],
            "application/vnd.docker.container.image.v1+json"
        );
        assert_eq!(
            docker.config, oci.config,
            "same config bytes for both targets"
        );
        assert_eq!(
            Digest::sha256(&oci.config).as_str(),
            "sha256:dd141b66ab1456238e13189d0f886d74aefce51e41219577f8b6fea7a11b61ec"
        );
    }

    /// The throwaway case of the same containers/image tests: 15 fsLayers, 10 throwaways ->
    /// the 5 layers of `schema2-to-oci1.json`; history keeps all 15, 10 with `empty_layer`.
    #[test]
    fn cimage_schema1_throwaways() {
        let bytes = fixture("schema2-to-schema1-by-docker.json");
        let built = build(
            &bytes,
            &side_facts("schema2-to-schema1-by-docker.json", MediaType::OciLayerGzip),
            Target::Oci,
        )
        .expect("to oci");
        let m: Value = serde_json::from_slice(&built.manifest).expect("json");
        assert_eq!(m["layers"], fixture_json("schema2-to-oci1.json")["layers"]);
        let cfg: Value = serde_json::from_slice(&built.config).expect("json");
        let history = cfg["history"].as_array().expect("history");
        assert_eq!(history.len(), 15);
        assert_eq!(
            history
                .iter()
                .filter(|h| h["empty_layer"] == Value::Bool(true))
                .count(),
            10
        );
        assert_eq!(
            cfg["rootfs"],
            json!({"type": "layers", "diff_ids": [
                "sha256:142a601d97936307e75220c35dde0348971a9584c21e7cb42e1f7004005432ab",
                "sha256:90fcc66ad3be9f1757f954b750deb37032f208428aa12599fcb02182b9065a9c",
                "sha256:5a8624bb7e76d1e6829f9c64c43185e02bc07f97a2189eb048609a8914e72c56",
                "sha256:d349ff6b3afc6a2800054768c82bfbf4289c9aa5da55c1290f802943dcd4d1e9",
                "sha256:8c064bb1f60e84fa8cc6079b6d2e76e0423389fd6aeb7e497dfdae5e05b2b25b"
            ]})
        );
        // Base first: the base layer is the last fsLayer, not a throwaway, and the top one is.
        assert_eq!(history[0].get("empty_layer"), None);
        assert_eq!(history[14]["empty_layer"], Value::Bool(true));
    }
}
