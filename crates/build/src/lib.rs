//! ocikit-build: the build steps, on the engine of `ocikit-layout`.
//!
//! - [`append`]: layers from directories (packed reproducibly by [`pack`]) or tar files added
//!   to every image (or the chosen platforms) under a ref, through the one rewriter;
//! - [`config`]: edits of image configs and manifest annotations, the same way; `--json`
//!   reading through the rewriter with a memory sink;
//! - [`index`]: `create`, `add`, `remove` of index entries;
//! - [`unpack`]: layers applied in order into a root directory, never writing outside it;
//! - [`squash`]: the layers flattened into one layer tar (`unpack --squash`), or an image of
//!   that one layer (`squash`), without writing a rootfs to disk.
//!
//! Every change to a layout is a [`ocikit_layout::rewrite::Transform`] (or, for a new index, a
//! document written through the writer lock) and refs move through
//! `Rewriter::rewrite_index_json` or `engine::merge_entry`; nothing here touches `blobs/`.

pub mod append;
pub mod config;
mod edit;
mod error;
pub mod index;
pub mod pack;
pub mod squash;
pub mod unpack;

pub use edit::{ImageChange, Report};
pub use error::{Error, Result};
