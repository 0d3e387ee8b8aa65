//! `copy`: layout to layout, by ref, platform and referrers.
//!
//! Selection is [`crate::select`] (filtered indexes are made in memory); blobs move with
//! [`crate::engine::transfer`] (hard links on one filesystem, verified copies otherwise, in
//! parallel); entries are merged into the destination's `index.json` with
//! [`crate::engine::merge_entry`], committed once, under its writer lock. An existing ref in
//! the destination moves to the copied image.

use std::path::Path;

use crate::engine::{transfer, ImageSink, ImageSource, Overlay, RefUpdate, TransferReport};
use crate::output::NewDir;
use crate::select::{select_from, SelectOptions};
use crate::{Layout, Options, Result};

/// What [`copy`] did.
#[derive(Debug, Clone, Default)]
pub struct CopyReport {
    /// Every entry merged into the destination's `index.json`, in order.
    pub entries: Vec<RefUpdate>,
    /// How the blobs got there.
    pub blobs: TransferReport,
}

/// Copy what `opts` selects from `src` into `dst`.
pub fn copy(src: &Layout, dst: &Layout, opts: &SelectOptions) -> Result<CopyReport> {
    copy_from(src, dst, opts)
}

/// Copy what `opts` selects from any source (a layout, a registry) into `dst`: the same
/// selection, transfer and one commit for every kind of source.
pub fn copy_from<S: ImageSource>(
    src: &S,
    dst: &Layout,
    opts: &SelectOptions,
) -> Result<CopyReport> {
    let sel = select_from(src, opts)?;
    let lock = dst.lock()?;
    let source = Overlay::new(src, &sel.documents);
    let blobs = transfer(&source, &sel.plan, |_| true, &lock)?;
    let entries = lock.commit(&sel.entries)?;
    Ok(CopyReport { entries, blobs })
}

/// [`copy`] into the layout at `dst`, created (with `layout_opts`) when missing. A `dst` this
/// call created is removed again when the copy fails: nothing half-written remains.
pub fn copy_to_path<S: ImageSource>(
    src: &S,
    dst: &Path,
    layout_opts: Options,
    opts: &SelectOptions,
) -> Result<CopyReport> {
    NewDir::run_layout(
        dst,
        || {
            let (dest, _) = Layout::init(dst, layout_opts.clone())?;
            copy_from(src, &dest, opts)
        },
        |e| matches!(e, crate::Error::LayoutGone { .. }),
    )
}
