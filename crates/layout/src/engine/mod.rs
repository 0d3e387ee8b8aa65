//! The engine: how every verb that moves or edits images does it, once.
//!
//! - [`ImageSource`]: where images come from (a layout, a layout with documents made in
//!   memory on top, and, in the other crates, archives). Reads are verified.
//! - [`plan()`]: one iterative, bounded traversal from roots to the set of blobs they need, with
//!   the documents' child lists kept so per-root closures need no second read. It fails, naming
//!   the digest, on anything it cannot read or that is nested too deep; only a `subject` and a
//!   non-distributable layer with `urls` may be absent.
//! - [`transfer()`]: moves what a [`Plan`] names from a source into a layout under its writer
//!   lock, in parallel, verified, skipping what the destination has.
//! - [`ImageBuilder`]: a config and layer streams in, layers (compressed in parallel, diff_ids
//!   checked), config and a new manifest written under the writer lock.
//! - [`merge_entry`]: the one rule for putting an entry into `index.json`, and the
//!   [`RefUpdate`] every verb reports.
//!
//! Bottom-up edits (convert, platform filters) are [`crate::rewrite`], whose document sink is
//! the store or memory ([`crate::rewrite::Memory`]); the documents it makes in memory reach a
//! transfer through [`Overlay`].

mod builder;
mod plan;
mod refs;
mod source;
mod transfer;

pub use builder::{
    parse_config, BuildError, BuildResult, BuiltImage, BuiltLayer, ImageBuilder, ImageInput,
    LayerInput, LayerSource, ManifestFormat, Problem, SourceError, PARALLEL_LAYERS,
};
pub use plan::{plan, Plan, PlannedBlob};
pub use refs::{merge_entry, RefChange, RefUpdate};
pub use source::{ImageSource, Overlay};
pub use transfer::{transfer, Moved, TransferReport};
