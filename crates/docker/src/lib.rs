//! ocikit-docker: Docker formats for OCI image layouts.
//!
//! - [`convert`]: rewrite what refs reach between Docker (schema2, manifest list) and OCI media
//!   types, optionally recompressing layers, bottom-up through nested indexes;
//! - [`schema1`]: Docker schema1 manifests (signed or not) to OCI or schema2, config built from
//!   `v1Compatibility` the way containers/image builds it.

#![warn(missing_docs)]

pub mod convert;
pub mod schema1;
