//! What the join may ask the server about its namespace: [`Catalog`] resolves a nodeid to the file
//! facts per-file statistics are labelled with ([`FileInfo`]). The server implements it; the join
//! (a later stage) consumes it. Owns the interface only, no state.

/// Static facts about a file, from the server's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileInfo {
    pub path: String,
    pub size: u64,
    pub fmap_bytes: u32,
    pub fmap_extents: u32,
}

/// Resolves a nodeid (== st_ino) of the current mount to its file facts; `None` for directories and
/// unknown ids. Called once per newly seen file, never per event.
pub trait Catalog {
    fn file(&self, nodeid: u64) -> Option<FileInfo>;
}
