//! Fault points for crash tests: when `OCIKIT_FAULT_POINT` names a point, the process aborts
//! there, as a SIGKILL would stop it. Points: `before-index-commit` (blobs written and synced,
//! `index.json` not yet replaced), `gc-mid-delete` (some unreachable blobs deleted), and
//! `import-mid-layers` (some layers written), and `bundle-mid-load` (a bundle blob written,
//! refs not yet committed). Unset in normal use; the check costs one
//! environment lookup per point passed.

/// Abort here if `OCIKIT_FAULT_POINT` names `name`.
pub fn point(name: &str) {
    if std::env::var_os("OCIKIT_FAULT_POINT").is_some_and(|v| v == name) {
        std::process::abort();
    }
}
