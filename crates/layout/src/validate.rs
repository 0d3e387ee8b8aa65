//! Placeholder until the schema checker lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// Document types.
pub enum DocType {
    /// m
    Manifest,
    /// i
    Index,
    /// c
    Config,
    /// d
    Descriptor,
    /// l
    LayoutHeader,
}
/// Violations.
pub fn check(_doc: DocType, _bytes: &[u8]) -> Vec<String> {
    Vec::new()
}
