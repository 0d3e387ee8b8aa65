//! Fault points for crash tests: when `OCIKIT_FAULT_POINT` names a point, the process aborts
//! there, as a SIGKILL would stop it. `NAME@N` aborts the N-th time the point is passed
//! (1-based; plain `NAME` is `NAME@1`).
//!
//! Points:
//! - `before-index-commit`: blobs written and synced, `index.json` not yet replaced;
//! - `before-rename`: a file of the layout root (`index.json`, `oci-layout`) written and synced
//!   as a `.tmp-*` file, not yet renamed into place;
//! - `gc-mid-delete`: passed before each deletion of gc, so `gc-mid-delete@3` stops gc with two
//!   unreachable blobs deleted;
//! - `import-mid-layers`: some layers written;
//! - `bundle-mid-load`: a blob of a bundle part written, no ref committed yet.
//!
//! Only builds with the `fault-injection` feature have them (the test suite enables it:
//! `cargo nextest run --workspace --all-features`); in any other build [`point`] is an empty
//! function and `OCIKIT_FAULT_POINT` means nothing, so no environment variable can make a
//! shipped binary abort half-way through a write.

#[cfg(feature = "fault-injection")]
use std::sync::atomic::{AtomicUsize, Ordering};

/// How often the point named in `OCIKIT_FAULT_POINT` has been passed in this process.
#[cfg(feature = "fault-injection")]
static PASSED: AtomicUsize = AtomicUsize::new(0);

/// Without the `fault-injection` feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}

/// Abort here if `OCIKIT_FAULT_POINT` names `name` (and this is the N-th pass it asks for).
#[cfg(feature = "fault-injection")]
pub fn point(name: &str) {
    let Some(value) = std::env::var_os("OCIKIT_FAULT_POINT") else {
        return;
    };
    let Some(value) = value.to_str() else { return };
    let (wanted, nth) = match value.split_once('@') {
        Some((n, k)) => (n, k.parse::<usize>().unwrap_or(1)),
        None => (value, 1),
    };
    if wanted == name && PASSED.fetch_add(1, Ordering::SeqCst) + 1 >= nth {
        std::process::abort();
    }
}
