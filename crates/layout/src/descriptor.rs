//! Descriptors, platforms and the documents that hold them (manifests, indexes, schema1).
//!
//! Every type keeps the fields it does not know in `extra` (`#[serde(flatten)]`), so a
//! parse -> edit -> serialize cycle loses nothing. Documents that are not edited are never
//! re-serialized: [`crate::Raw`] keeps their exact bytes.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::{Annotations, Digest, MediaType};

/// The annotation that names a ref in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the referenced content.
    pub media_type: MediaType,
    /// The digest of the referenced content.
    pub digest: Digest,
    /// The size in bytes of the referenced content.
    pub size: u64,
    /// Where else the content may be fetched (non-distributable layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
    /// The content itself, base64, for small blobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The platform of an index entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Box<Platform>>,
    /// The artifact type of the referenced manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Fields ocikit does not know, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Descriptor {
    /// A descriptor with only the three required fields.
    pub fn new(media_type: MediaType, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type,
            digest,
            size,
            urls: None,
            annotations: None,
            data: None,
            platform: None,
            artifact_type: None,
            extra: Map::new(),
        }
    }

    /// The `org.opencontainers.image.ref.name` annotation, if any.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations.as_ref()?.get(REF_NAME).map(String::as_str)
    }

    /// Set (or with `None`, remove) the ref name annotation.
    pub fn set_ref_name(&mut self, name: Option<&str>) {
        match name {
            Some(n) => {
                self.annotations
                    .get_or_insert_with(Annotations::new)
                    .insert(REF_NAME.to_string(), n.to_string());
            }
            None => {
                if let Some(a) = self.annotations.as_mut() {
                    a.remove(REF_NAME);
                    if a.is_empty() {
                        self.annotations = None;
                    }
                }
            }
        }
    }
}

/// A platform, as in an index entry or a config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`, ...).
    pub architecture: String,
    /// Operating system (`linux`, `windows`, ...).
    pub os: String,
    /// OS version.
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features.
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// CPU variant (`v7`, `v8`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Fields ocikit does not know (e.g. Docker's legacy `features`), kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Platform {
    /// `os/arch[/variant]`.
    pub fn to_short(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{}", self.os, self.architecture, v),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    /// Does this platform match `os/arch[/variant]`? Without a variant, any variant matches.
    pub fn matches(&self, spec: &PlatformSpec) -> bool {
        self.os == spec.os
            && self.architecture == spec.architecture
            && (spec.variant.is_none() || self.variant == spec.variant)
    }
}

/// A platform selector given on the command line: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    /// OS.
    pub os: String,
    /// Architecture.
    pub architecture: String,
    /// Variant, or any.
    pub variant: Option<String>,
}

impl std::str::FromStr for PlatformSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "invalid platform `{s}`: expected os/arch[/variant]"
            ));
        }
        Ok(PlatformSpec {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// An OCI image index or a Docker manifest list (also the shape of `index.json`).
///
/// `"manifests": null`, written by some tools for an empty repository, reads as empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    /// The artifact type, for artifact indexes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The entries.
    #[serde(deserialize_with = "null_as_empty", default)]
    pub manifests: Vec<Descriptor>,
    /// The subject, for referrers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
    /// Fields ocikit does not know, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Index {
    /// An empty OCI index, as `init` writes it.
    pub fn empty() -> Index {
        Index {
            schema_version: 2,
            media_type: Some(MediaType::OciIndex),
            artifact_type: None,
            manifests: Vec::new(),
            subject: None,
            annotations: None,
            extra: Map::new(),
        }
    }
}

/// An OCI image manifest or a Docker schema2 manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type (optional in OCI, required by Docker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    /// The artifact type, for artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config.
    pub config: Descriptor,
    /// The layers, base first. `null` reads as empty.
    #[serde(deserialize_with = "null_as_empty", default)]
    pub layers: Vec<Descriptor>,
    /// The subject, for referrers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
    /// Fields ocikit does not know, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A Docker schema1 manifest (signed or unsigned). Layers are listed top first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schema1 {
    /// Always 1.
    pub schema_version: u32,
    /// Repository name.
    #[serde(default)]
    pub name: String,
    /// Tag.
    #[serde(default)]
    pub tag: String,
    /// Architecture.
    #[serde(default)]
    pub architecture: String,
    /// Layer digests, top layer first.
    #[serde(rename = "fsLayers")]
    pub fs_layers: Vec<FsLayer>,
    /// v1 compatibility history, top first, one per fsLayer.
    #[serde(default)]
    pub history: Vec<Schema1History>,
    /// Fields ocikit does not know (signatures), kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One schema1 layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FsLayer {
    /// Digest of the compressed layer.
    #[serde(rename = "blobSum")]
    pub blob_sum: Digest,
}

/// One schema1 history entry: a JSON document in a string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema1History {
    /// The v1 image JSON.
    #[serde(rename = "v1Compatibility")]
    pub v1_compatibility: String,
}

/// The image configuration fields ocikit reads (platform, diff_ids); the rest is ignored here
/// because config bytes are never re-serialized.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ImageConfig {
    /// Architecture.
    #[serde(default)]
    pub architecture: String,
    /// OS.
    #[serde(default)]
    pub os: String,
    /// OS version.
    #[serde(rename = "os.version", default)]
    pub os_version: Option<String>,
    /// Variant.
    #[serde(default)]
    pub variant: Option<String>,
    /// The layers, uncompressed.
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

impl ImageConfig {
    /// The platform this config describes, if it names one.
    pub fn platform(&self) -> Option<Platform> {
        if self.architecture.is_empty() || self.os.is_empty() {
            return None;
        }
        Some(Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            os_version: self.os_version.clone(),
            os_features: None,
            variant: self.variant.clone(),
            extra: Map::new(),
        })
    }
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Digests of the uncompressed layers, base first.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `documents` fuzz target: an unknown field holding an integer too large for
    /// u64 (121 eights) read as 8.888888888888891e120, which read back as 8.88888888888889e120:
    /// every edit of the document changed it, until serde_json parsed numbers exactly
    /// (its `float_roundtrip` feature).
    #[test]
    fn unknown_numbers_survive_a_round_trip() {
        let input = br#"{"schemaVersion": 2, "x": {"big": [8888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888]}, "f": 0.30000000000000004, "g": 8.888888888888891e120}"#;
        let ix: Index = serde_json::from_slice(input).expect("parses");
        let once = serde_json::to_vec(&ix).expect("serializes");
        let back: Index = serde_json::from_slice(&once).expect("parses back");
        assert_eq!(back, ix);
        assert_eq!(serde_json::to_vec(&back).expect("serializes"), once);
        // The fuzzer's input, verbatim.
        let found = r#"
{
  "schemaVersion": 2,
  "medi`Type" : "application/vnd.oci.image.manifest.v1+json",
  "conf'g": {
    "mediaType": "application/vnd.oci.imagei.image.ma\nfest.v1plicad.oiciғmage.ma\nifest.v1+jso!n",
  "con" : "applie.ma\nage.ma\nfest.6efb0633b"
  },
  "layers": [8888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888]
}"#;
        let ix: Index = serde_json::from_str(found).expect("parses");
        let again: Index =
            serde_json::from_slice(&serde_json::to_vec(&ix).expect("serializes")).expect("parses");
        assert_eq!(again, ix);
        assert_eq!(
            String::from_utf8(once).expect("utf-8"),
            r#"{"schemaVersion":2,"manifests":[],"x":{"big":[8.888888888888888e+120]},"f":0.30000000000000004,"g":8.888888888888891e+120}"#
        );
    }
}
