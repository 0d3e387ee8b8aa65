//! The safe tar reader, re-exported from [`ocikit_layout::archive`], where it lives with the
//! deterministic writer so that bundles (in the layout crate) use the same code. Kept under this
//! path for the importer and the fuzz targets.

pub use ocikit_layout::archive::{
    join_link, normalize, Archive, ArchiveError, Limits, Member, MemberKind, Section,
    EXTENSION_LIMIT, MEMBER_LIMIT, NAMES_LIMIT, NAME_LIMIT,
};
