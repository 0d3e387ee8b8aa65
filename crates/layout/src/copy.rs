//! Copying blobs between layouts: the store does it ([`WriteLock::link_or_copy_from`]: a hard
//! link on one filesystem after verifying the source, else a kernel copy verified on the
//! destination's bytes, else a verified stream; a corrupt destination blob is replaced and
//! reported as [`Copied::Replaced`]). This module keeps the descriptor-shaped entry point.

pub use crate::layout::Copied;
use crate::{Descriptor, Layout, Result, WriteLock};

/// Copy the blob `desc` names from `src` into the layout `dst` holds the lock of: the store's
/// [`WriteLock::link_or_copy_from`].
pub fn copy_blob(src: &Layout, dst: &WriteLock<'_>, desc: &Descriptor) -> Result<Copied> {
    dst.link_or_copy_from(src, &desc.digest, desc.size)
}
