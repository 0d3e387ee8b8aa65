//! ocikit-layout: OCI image layouts on disk.
//!
//! The pieces, bottom up:
//! - [`Digest`] and [`MediaType`]: validated names for content and its type;
//! - [`Descriptor`], [`Manifest`], [`Index`], [`Schema1`]: documents that keep unknown fields,
//!   and [`Raw`], which keeps a document's exact bytes;
//! - [`Layout`]: verified blob reads, crash-safe blob writes and `index.json` commits under a
//!   writer lock ([`WriteLock`]);
//! - [`walk::Walk`]: everything reachable, Docker and OCI, nested and unknown;
//! - [`fsck`], [`gc`], [`refs`]: the checks and edits built on the walk;
//! - [`archive`]: the safe tar reader (indexed or streamed, within limits) and the
//!   deterministic tar writer that bundles and exports share;
//! - [`rewrite`]: bottom-up rewriting (a changed child gives its parents new bytes), for
//!   `convert` and the verbs that edit documents.
//!
//! Invariants: bytes that are not edited are never re-serialized; every read is verified;
//! `index.json` is written last; one writer at a time.

#![warn(missing_docs)]

mod annotations;
pub mod archive;
pub mod bundle;
pub mod chunked;
pub mod cleanup;
pub mod compress;
mod descriptor;
mod digest;
pub mod engine;
mod error;
pub mod fault;
pub mod fsck;
pub mod gc;
pub mod inventory;
pub mod json;
pub mod layer;
mod layout;
mod media_type;
pub mod mirror;
pub mod names;
pub mod output;
mod raw;
pub mod refs;
pub mod rewrite;
pub mod select;
pub mod validate;
pub mod walk;

pub use annotations::Annotations;
pub use descriptor::{
    Descriptor, FsLayer, ImageConfig, Index, Manifest, Platform, PlatformSpec, RootFs, Schema1,
    Schema1History, REF_NAME,
};
pub use digest::{Algorithm, Digest, DigestError, DigestList, DigestMap, DigestSet, Hasher};
pub use error::{Error, Result};
pub use layout::{
    check_layout_header, new_temp_in, open_regular, peek, sync_dir, sync_file, unwrap_io, BlobFile,
    BlobFileKind, BlobWriter, Copied, Existing, IndexStamp, Layout, Options, Partial, Peeked,
    PositionedFile, PositionedWriter, Removal, SyncingFile, VerifyingReader, WriteLock,
    WrittenChunk, OCI_LAYOUT_CONTENT, PARTIAL_PREFIX, TEMP_PREFIX,
};
pub use media_type::{Class, Compression, MediaType};
pub use raw::{Raw, INDEX_LIMIT, JSON_LIMIT};
