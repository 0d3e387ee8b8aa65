//! [`Raw`]: a parsed document together with its exact bytes and digest.

use serde::de::DeserializeOwned;

use crate::{Digest, Error, Result};

/// The largest JSON document ocikit reads (registries use the same cap).
pub const JSON_LIMIT: u64 = 4 << 20;

/// The largest `index.json` read or written. The layout's own file, grown by ocikit one ref at a
/// time: 100,000 refs with names and annotations fit under it (about 25 MiB), and no commit may
/// exceed it, so ocikit never writes an `index.json` it would then refuse to read.
pub const INDEX_LIMIT: u64 = 64 << 20;

/// A parsed document that remembers its bytes. Writing it out again writes `bytes`, never a
/// re-serialization, so an unedited document keeps its digest.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw<T> {
    /// The exact bytes.
    pub bytes: Vec<u8>,
    /// The sha256 digest of `bytes` (or the digest it was read under).
    pub digest: Digest,
    /// The parsed value.
    pub value: T,
}

impl<T: DeserializeOwned> Raw<T> {
    /// Parse `bytes`; `what` names the document in errors.
    pub fn parse(bytes: Vec<u8>, what: &str) -> Result<Raw<T>> {
        let digest = Digest::sha256(&bytes);
        Raw::parse_with_digest(bytes, digest, what)
    }

    /// Parse bytes already known to have `digest`.
    pub fn parse_with_digest(bytes: Vec<u8>, digest: Digest, what: &str) -> Result<Raw<T>> {
        Raw::parse_limited(bytes, digest, what, JSON_LIMIT)
    }

    /// Parse bytes already known to have `digest`, refusing more than `limit` of them.
    pub fn parse_limited(bytes: Vec<u8>, digest: Digest, what: &str, limit: u64) -> Result<Raw<T>> {
        if bytes.len() as u64 > limit {
            return Err(Error::TooLarge {
                what: what.to_string(),
                size: bytes.len() as u64,
                limit,
            });
        }
        let value = crate::json::from_slice(&bytes).map_err(|source| Error::Json {
            what: what.to_string(),
            source,
        })?;
        Ok(Raw {
            bytes,
            digest,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Manifest;

    #[test]
    fn unedited_document_keeps_its_bytes() {
        // Odd spacing, field order and an unknown field: nothing may change.
        let bytes = br#"{ "schemaVersion":2,"x-unknown":{"a":[1,2]},
  "config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
  "layers":[]}"#
            .to_vec();
        let raw: Raw<Manifest> = Raw::parse(bytes.clone(), "test").expect("parses");
        assert_eq!(raw.bytes, bytes);
        assert_eq!(raw.digest, Digest::sha256(&bytes));
        assert_eq!(
            raw.value.extra.get("x-unknown"),
            Some(&serde_json::json!({"a": [1, 2]}))
        );
        // An edit re-serializes and keeps the unknown field.
        let out = serde_json::to_string(&raw.value).expect("serializes");
        assert!(out.contains(r#""x-unknown":{"a":[1,2]}"#), "{out}");
    }
}
