//! The engine: how every verb that moves or edits images does it, once.
//!
//! - [`ImageSource`]: where images come from (a layout, a layout with documents made in
//!   memory on top, and, in the other crates, archives). Reads are verified.
//! - [`plan()`]: one iterative, bounded traversal from roots to the set of blobs they need, with
//!   the documents' child lists kept so per-root closures need no second read. It fails, naming
//!   the digest, on anything it cannot read or that is nested too deep; only a `subject` and a
//!   non-distributable layer with `urls` may be absent.
//! - [`ImageSink`]: where images go (a layout under its writer lock; a registry next): says what
//!   it has, takes blobs from readers (verified), commits refs once.
//! - [`transfer()`]: moves what a [`Plan`] names from a source into a sink, in parallel,
//!   verified, skipping what the sink holds intact (hard links or kernel copies from a local
//!   layout into a layout).
//! - [`ImageBuilder`]: a config and layer streams in, layers (compressed in parallel, diff_ids
//!   checked), config and a new manifest written under the writer lock.
//! - [`merge_entry`]: the one rule for putting an entry into `index.json`, and the
//!   [`RefUpdate`] every verb reports.
//!
//! Archive outputs (oci-archive, docker-archive, bundle parts) are not sinks: their bytes must
//! not depend on the order blobs arrive in, and a tar is written front to back, so they write
//! a plan in a fixed order through [`crate::archive::TarWriter`] instead.
//!
//! Bottom-up edits (convert, platform filters) are [`crate::rewrite`], whose document sink is
//! the store or memory ([`crate::rewrite::Memory`]); the documents it makes in memory reach a
//! transfer through [`Overlay`].

mod builder;
mod plan;
mod refs;
mod sink;
mod source;
mod transfer;

pub use builder::{
    parse_config, BuildError, BuildResult, BuiltImage, BuiltLayer, ImageBuilder, ImageInput,
    LayerInput, LayerSource, ManifestFormat, Problem, SourceError, StoredLayer, PARALLEL_LAYERS,
};
pub use plan::{plan, Plan, PlannedBlob};
pub use refs::{merge_entry, RefChange, RefUpdate};
pub use sink::ImageSink;
pub use source::{ImageSource, Overlay};
pub use transfer::{transfer, Moved, TransferReport};
