//! Media types: every OCI and Docker type ocikit knows, plus [`MediaType::Other`] for the rest.
//!
//! An unknown media type is never an error by itself: it round-trips as written. The one
//! Docker <-> OCI table lives here ([`MediaType::to_oci`], [`MediaType::to_docker`]), following
//! the mapping containers/image uses.

use std::fmt;

/// How a media type's content is to be understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// An OCI image index or a Docker manifest list.
    Index,
    /// An OCI image manifest or a Docker schema2 manifest.
    Manifest,
    /// A Docker schema1 manifest (`fsLayers`), signed or not.
    Schema1,
    /// An image configuration.
    Config,
    /// A filesystem layer.
    Layer,
    /// The OCI empty descriptor (`{}`).
    Empty,
    /// Not a type ocikit knows.
    Unknown,
}

/// Layer compression, as declared by a media type or sniffed from bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (deflate).
    Gzip,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// Lower-case name, as used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

macro_rules! media_types {
    ($( $variant:ident => $s:literal, $class:ident, $comp:expr; )*) => {
        /// A media type. Known types are variants; anything else is [`MediaType::Other`].
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum MediaType {
            $(
                #[doc = concat!("`", $s, "`")]
                $variant,
            )*
            /// A media type ocikit does not know, kept as written.
            Other(String),
        }

        impl MediaType {
            /// The media type string.
            pub fn as_str(&self) -> &str {
                match self {
                    $( MediaType::$variant => $s, )*
                    MediaType::Other(s) => s,
                }
            }

            /// Parse a media type string; unknown strings become [`MediaType::Other`].
            pub fn parse(s: &str) -> MediaType {
                match s {
                    $( $s => MediaType::$variant, )*
                    other => MediaType::Other(other.to_string()),
                }
            }

            /// What kind of content this type names.
            pub fn class(&self) -> Class {
                match self {
                    $( MediaType::$variant => Class::$class, )*
                    MediaType::Other(_) => Class::Unknown,
                }
            }

            /// The compression a layer type declares, `None` for non-layers and for
            /// layer types whose compression ocikit cannot read (encrypted).
            pub fn compression(&self) -> Option<Compression> {
                match self {
                    $( MediaType::$variant => $comp, )*
                    MediaType::Other(_) => None,
                }
            }
        }
    };
}

media_types! {
    OciIndex => "application/vnd.oci.image.index.v1+json", Index, None;
    OciManifest => "application/vnd.oci.image.manifest.v1+json", Manifest, None;
    OciConfig => "application/vnd.oci.image.config.v1+json", Config, None;
    OciLayer => "application/vnd.oci.image.layer.v1.tar", Layer, Some(Compression::None);
    OciLayerGzip => "application/vnd.oci.image.layer.v1.tar+gzip", Layer, Some(Compression::Gzip);
    OciLayerZstd => "application/vnd.oci.image.layer.v1.tar+zstd", Layer, Some(Compression::Zstd);
    OciLayerNondist => "application/vnd.oci.image.layer.nondistributable.v1.tar", Layer, Some(Compression::None);
    OciLayerNondistGzip => "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", Layer, Some(Compression::Gzip);
    OciLayerNondistZstd => "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", Layer, Some(Compression::Zstd);
    OciLayerGzipEncrypted => "application/vnd.oci.image.layer.v1.tar+gzip+encrypted", Layer, None;
    OciLayerZstdEncrypted => "application/vnd.oci.image.layer.v1.tar+zstd+encrypted", Layer, None;
    OciLayerEncrypted => "application/vnd.oci.image.layer.v1.tar+encrypted", Layer, None;
    OciEmpty => "application/vnd.oci.empty.v1+json", Empty, None;
    DockerManifestList => "application/vnd.docker.distribution.manifest.list.v2+json", Index, None;
    DockerManifest => "application/vnd.docker.distribution.manifest.v2+json", Manifest, None;
    DockerSchema1 => "application/vnd.docker.distribution.manifest.v1+json", Schema1, None;
    DockerSchema1Signed => "application/vnd.docker.distribution.manifest.v1+prettyjws", Schema1, None;
    DockerConfig => "application/vnd.docker.container.image.v1+json", Config, None;
    DockerLayerGzip => "application/vnd.docker.image.rootfs.diff.tar.gzip", Layer, Some(Compression::Gzip);
    DockerLayer => "application/vnd.docker.image.rootfs.diff.tar", Layer, Some(Compression::None);
    DockerForeignLayerGzip => "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", Layer, Some(Compression::Gzip);
    DockerForeignLayer => "application/vnd.docker.image.rootfs.foreign.diff.tar", Layer, Some(Compression::None);
    DockerPluginConfig => "application/vnd.docker.plugin.v1+json", Config, None;
}

impl MediaType {
    /// True for Docker's own types.
    pub fn is_docker(&self) -> bool {
        self.as_str().starts_with("application/vnd.docker.")
    }

    /// True for non-distributable (OCI) and foreign (Docker) layers.
    pub fn is_non_distributable(&self) -> bool {
        matches!(
            self,
            MediaType::OciLayerNondist
                | MediaType::OciLayerNondistGzip
                | MediaType::OciLayerNondistZstd
                | MediaType::DockerForeignLayer
                | MediaType::DockerForeignLayerGzip
        )
    }

    /// True for encrypted layers (ocicrypt).
    pub fn is_encrypted(&self) -> bool {
        self.as_str().ends_with("+encrypted")
    }

    /// The OCI type for a Docker type; OCI and unknown types map to themselves.
    pub fn to_oci(&self) -> MediaType {
        use MediaType::*;
        match self {
            DockerManifestList => OciIndex,
            DockerManifest => OciManifest,
            DockerConfig => OciConfig,
            DockerLayerGzip => OciLayerGzip,
            DockerLayer => OciLayer,
            DockerForeignLayerGzip => OciLayerNondistGzip,
            DockerForeignLayer => OciLayerNondist,
            other => other.clone(),
        }
    }

    /// The Docker type for an OCI type, or `None` when Docker has no equivalent (artifact
    /// configs, encrypted layers, the empty descriptor, zstd layers). Docker and
    /// unknown types map to themselves.
    pub fn to_docker(&self) -> Option<MediaType> {
        use MediaType::*;
        Some(match self {
            OciIndex => DockerManifestList,
            OciManifest => DockerManifest,
            OciConfig => DockerConfig,
            OciLayerGzip => DockerLayerGzip,
            OciLayer => DockerLayer,
            OciLayerNondistGzip => DockerForeignLayerGzip,
            OciLayerNondist => DockerForeignLayer,
            OciLayerZstd
            | OciLayerNondistZstd
            | OciLayerGzipEncrypted
            | OciLayerZstdEncrypted
            | OciLayerEncrypted
            | OciEmpty => return None,
            other => other.clone(),
        })
    }

    /// The same layer type with another compression, keeping its family (OCI or Docker,
    /// distributable or not). `None` when the family has no such type.
    pub fn with_compression(&self, c: Compression) -> Option<MediaType> {
        use Compression as C;
        use MediaType::*;
        let oci = !self.is_docker();
        let nondist = self.is_non_distributable();
        Some(match (oci, nondist, c) {
            (true, false, C::None) => OciLayer,
            (true, false, C::Gzip) => OciLayerGzip,
            (true, false, C::Zstd) => OciLayerZstd,
            (true, true, C::None) => OciLayerNondist,
            (true, true, C::Gzip) => OciLayerNondistGzip,
            (true, true, C::Zstd) => OciLayerNondistZstd,
            (false, false, C::None) => DockerLayer,
            (false, false, C::Gzip) => DockerLayerGzip,
            (false, true, C::None) => DockerForeignLayer,
            (false, true, C::Gzip) => DockerForeignLayerGzip,
            (false, _, C::Zstd) => return None,
        })
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediaType({})", self.as_str())
    }
}

impl serde::Serialize for MediaType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for MediaType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(MediaType::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_classes() {
        let table: &[(&str, Class, Option<Compression>)] = &[
            (
                "application/vnd.oci.image.index.v1+json",
                Class::Index,
                None,
            ),
            (
                "application/vnd.docker.distribution.manifest.list.v2+json",
                Class::Index,
                None,
            ),
            (
                "application/vnd.oci.image.manifest.v1+json",
                Class::Manifest,
                None,
            ),
            (
                "application/vnd.docker.distribution.manifest.v2+json",
                Class::Manifest,
                None,
            ),
            (
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
                Class::Schema1,
                None,
            ),
            (
                "application/vnd.docker.distribution.manifest.v1+json",
                Class::Schema1,
                None,
            ),
            (
                "application/vnd.docker.container.image.v1+json",
                Class::Config,
                None,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Class::Layer,
                Some(Compression::Zstd),
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Class::Layer,
                Some(Compression::Gzip),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
                Class::Layer,
                None,
            ),
            ("application/vnd.oci.empty.v1+json", Class::Empty, None),
            (
                "application/vnd.cncf.helm.config.v1+json",
                Class::Unknown,
                None,
            ),
            ("x-completely-unknown", Class::Unknown, None),
        ];
        for (s, class, comp) in table {
            let mt = MediaType::parse(s);
            assert_eq!(mt.as_str(), *s);
            assert_eq!(mt.class(), *class, "{s}");
            assert_eq!(mt.compression(), *comp, "{s}");
        }
    }

    #[test]
    fn docker_oci_mapping_is_inverse() {
        use MediaType::*;
        for d in [
            DockerManifestList,
            DockerManifest,
            DockerConfig,
            DockerLayerGzip,
            DockerLayer,
            DockerForeignLayer,
            DockerForeignLayerGzip,
        ] {
            assert_eq!(d.to_oci().to_docker(), Some(d.clone()), "{d}");
        }
        assert_eq!(DockerForeignLayerGzip.to_oci(), OciLayerNondistGzip);
        assert_eq!(OciLayerZstd.to_docker(), None);
        assert_eq!(OciLayerGzipEncrypted.to_docker(), None);
        assert_eq!(
            OciLayerGzip.with_compression(Compression::Zstd),
            Some(OciLayerZstd)
        );
        assert_eq!(
            DockerForeignLayerGzip.with_compression(Compression::None),
            Some(DockerForeignLayer)
        );
    }
}
