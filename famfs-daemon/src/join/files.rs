//! Views of the per-file table: the sort keys and selection of `/api/v1/files` (sort, limit, path
//! filter) and the bounded-cardinality selection for metrics (the N most recently active files; the rest
//! folded). The sort keys and their order are defined here once: the daemon sorts [`FileStats`] with
//! them and `top` re-sorts the rows it received with the same [`FileSort::compare`]. How a query is
//! spelled in a URL is the HTTP API's business (`http::api`).

use std::cmp::Ordering;

use super::{FileStats, Join};

/// Sort keys of the file table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileSort {
    /// Most recently active first (default).
    #[default]
    LastAccess,
    Opens,
    /// Every fault counted for the file: DAX faults of any size and result, and page-cache faults.
    Faults,
    FmapBytes,
    Path,
}

/// What a sort key looks at, from a [`FileStats`] or from a row a client received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortFields<'a> {
    pub path: &'a str,
    pub last_access_ns: u64,
    pub opens: u64,
    /// All faults ([`FileSort::Faults`]).
    pub faults: u64,
    pub fmap_bytes: u64,
}

impl FileSort {
    /// Every key, in the order `top`'s `s` key cycles through them.
    pub const ALL: [FileSort; 5] = [
        FileSort::LastAccess,
        FileSort::Opens,
        FileSort::Faults,
        FileSort::FmapBytes,
        FileSort::Path,
    ];

    /// The key's name (`sort=` of the API, `--sort` of `top`).
    pub fn as_str(self) -> &'static str {
        match self {
            FileSort::LastAccess => "last_access",
            FileSort::Opens => "opens",
            FileSort::Faults => "faults",
            FileSort::FmapBytes => "fmap_bytes",
            FileSort::Path => "path",
        }
    }

    /// The key named `s`, if any.
    pub fn parse(s: &str) -> Option<FileSort> {
        FileSort::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// `expected last_access, opens, faults, fmap_bytes or path`: for messages about a bad name.
    pub fn expected() -> String {
        let names: Vec<&str> = FileSort::ALL.iter().map(|k| k.as_str()).collect();
        match names.split_last() {
            Some((last, rest)) => format!("expected {} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }

    /// The next key in the cycle.
    pub fn next(self) -> FileSort {
        let i = FileSort::ALL.iter().position(|k| *k == self).unwrap_or(0);
        FileSort::ALL[(i + 1) % FileSort::ALL.len()]
    }

    /// The table's order for this key: descending by the key, ties by path (last access: most recent
    /// first; path: ascending).
    pub fn compare(self, a: &SortFields<'_>, b: &SortFields<'_>) -> Ordering {
        let by_path = || a.path.cmp(b.path);
        match self {
            FileSort::LastAccess => b.last_access_ns.cmp(&a.last_access_ns).then_with(by_path),
            FileSort::Opens => b.opens.cmp(&a.opens).then_with(by_path),
            FileSort::Faults => b.faults.cmp(&a.faults).then_with(by_path),
            FileSort::FmapBytes => b.fmap_bytes.cmp(&a.fmap_bytes).then_with(by_path),
            FileSort::Path => by_path(),
        }
    }
}

impl std::fmt::Display for FileSort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FileStats {
    /// Every fault counted for this file: DAX faults of any size and result, and page-cache faults.
    pub fn all_faults(&self) -> u64 {
        self.faults().iter().flatten().sum::<u64>() + self.page_cache_faults
    }

    /// What the sort keys look at.
    pub fn sort_fields(&self) -> SortFields<'_> {
        SortFields {
            path: &self.info.path,
            last_access_ns: self.last_access_ns,
            opens: self.opens,
            faults: self.all_faults(),
            fmap_bytes: u64::from(self.info.fmap_bytes),
        }
    }
}

/// A file-table query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileQuery {
    pub sort: FileSort,
    pub limit: usize,
    /// Only paths containing this substring.
    pub path: Option<String>,
}

impl Default for FileQuery {
    fn default() -> Self {
        FileQuery {
            sort: FileSort::LastAccess,
            limit: 100,
            path: None,
        }
    }
}

impl FileSort {
    /// The number `self` orders by (0 for [`FileSort::Path`], which orders by path alone).
    fn key_of(self, f: &FileStats) -> u64 {
        match self {
            FileSort::LastAccess => f.last_access_ns,
            FileSort::Opens => f.opens,
            FileSort::Faults => f.all_faults(),
            FileSort::FmapBytes => u64::from(f.info.fmap_bytes),
            FileSort::Path => 0,
        }
    }
}

/// Apply `q` to the join's files: the positions (in [`Join::file_slice`]) of the matching files in
/// the query's order, at most `q.limit` of them. Files are never removed from the table, so a position
/// names the same file for the table's life: a reader can take the order under the read lock once and
/// read the rows in batches, letting the join write between them. No path is compared: by path is
/// the join's own order ([`Join::by_path`]), and the other orders break ties by rank in it.
pub fn query_positions(join: &Join, q: &FileQuery) -> Vec<u32> {
    let files = join.file_slice();
    let order = join.by_path();
    let wanted = |f: &FileStats| q.path.as_deref().is_none_or(|p| f.info.path.contains(p));
    if q.sort == FileSort::Path {
        return order
            .iter()
            .copied()
            .filter(|&i| files.get(i as usize).is_some_and(wanted))
            .take(q.limit)
            .collect();
    }
    let mut rank = vec![0u32; files.len()];
    for (&i, r) in order.iter().zip(0u32..) {
        if let Some(x) = rank.get_mut(i as usize) {
            *x = r;
        }
    }
    // (sort number, path rank, position): the number taken out once, not per comparison.
    let cmp = |a: &(u64, u32, u32), b: &(u64, u32, u32)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
    let mut v: Vec<(u64, u32, u32)> = files
        .iter()
        .zip(rank)
        .zip(0u32..)
        .filter(|((f, _), _)| wanted(f))
        .map(|((f, r), i)| (q.sort.key_of(f), r, i))
        .collect();
    let n = q.limit.min(v.len());
    if n < v.len() {
        v.select_nth_unstable_by(n, cmp);
    }
    v[..n].sort_unstable_by(cmp);
    v.truncate(n);
    v.into_iter().map(|(_, _, i)| i).collect()
}

/// Apply `q` to the join's files: the matching files in the query's order, at most `q.limit` of them.
pub fn query<'a>(join: &'a Join, q: &FileQuery) -> Vec<&'a FileStats> {
    let files = join.file_slice();
    query_positions(join, q)
        .into_iter()
        .filter_map(|i| files.get(i as usize))
        .collect()
}

/// Files split for bounded-cardinality series: the most recently active keep their own series, the
/// rest are folded into one.
#[derive(Debug)]
pub struct Fold<'a> {
    /// The kept files, most recently active first.
    pub kept: Vec<&'a FileStats>,
    /// How many files were folded.
    pub folded: usize,
    /// The latest `last_access_ns` among the folded files (0 when none).
    pub folded_last_access_ns: u64,
}

/// Split the join's files into the `max` most recently active (their own series) and the rest
/// (folded into `path="__other__"`; their sums are the join's totals minus the kept files'). Ties break
/// by path, so the choice is stable between scrapes. Ranks by [`Join::recency`], so only the files it
/// compares by path are read.
pub fn fold_for_series(join: &Join, max: usize) -> Fold<'_> {
    let files = join.file_slice();
    let path = |i: u32| files.get(i as usize).map_or("", |f| f.info.path.as_str());
    // Index into `files` (u32: half the size to move around; a table of 4 G files is not tracked).
    let cmp = |a: &(u64, u32), b: &(u64, u32)| b.0.cmp(&a.0).then_with(|| path(a.1).cmp(path(b.1)));
    let mut v: Vec<(u64, u32)> = join
        .recency()
        .iter()
        .zip(0u32..)
        .map(|(&t, i)| (t, i))
        .collect();
    let n = max.min(v.len());
    if n < v.len() {
        v.select_nth_unstable_by(n, cmp);
    }
    v[..n].sort_unstable_by(cmp);
    // `v[n]` is now the most recent of the folded files.
    let folded_last_access_ns = v.get(n).map_or(0, |(t, _)| *t);
    Fold {
        kept: v[..n]
            .iter()
            .filter_map(|&(_, i)| files.get(i as usize))
            .collect(),
        folded: v.len() - n,
        folded_last_access_ns,
    }
}
