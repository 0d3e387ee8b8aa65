//! ocikit-docker: Docker formats in and out of OCI image layouts.
//!
//! - [`archive`]: safe, random access to tar archives (plain, gzip, zstd), re-exported from
//!   [`ocikit_layout::archive`];
//! - [`source`]: what an import source is (docker-save legacy or Docker 25+, oci-archive,
//!   the oldest `repositories`-only archives, skopeo `dir:`, OCI layout directories);
//! - [`import`]: sources into a layout, all or nothing;
//! - [`export`]: refs of a layout out as a docker-archive (Docker 25+ dual format) or an
//!   oci-archive, deterministic and streamed;
//! - [`convert`]: rewrite what refs reach between Docker (schema2, manifest list) and OCI media
//!   types, optionally recompressing layers, bottom-up through nested indexes;
//! - [`schema1`]: Docker schema1 manifests (signed or not) to OCI or schema2, config built from
//!   `v1Compatibility` the way containers/image builds it;
//! - [`names`]: Docker's name normalization.
//!
//! The crate reads and writes blobs only through the layout API (`ocikit_layout`).

#![warn(missing_docs)]

pub mod archive;
pub mod convert;
mod error;
pub mod export;
pub mod import;
pub use ocikit_layout::names;
pub mod schema1;
pub mod source;

pub use error::{Error, RefClaim, Result};
