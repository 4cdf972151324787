//! Views of the per-file table: the query language of `/api/v1/files` (sort, limit, path filter) and the
//! bounded-cardinality selection for metrics (the N most recently active files; the rest folded).

use serde::Serialize;

use super::FileStats;

/// Sort keys of `/api/v1/files`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileSort {
    /// Most recently active first (default).
    LastAccess,
    Opens,
    Faults,
    FmapBytes,
    Path,
}

/// A parsed `/api/v1/files` query.
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

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .ok_or_else(|| format!("truncated escape in {s:?}"))?;
                out.push(
                    u8::from_str_radix(hex, 16)
                        .map_err(|_| format!("bad escape %{hex} in {s:?}"))?,
                );
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8"))
}

impl FileQuery {
    /// Parse `sort=opens&limit=10&path=datasets/`; unknown keys or bad values are errors naming them.
    pub fn parse(query: Option<&str>) -> Result<FileQuery, String> {
        let mut q = FileQuery::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v)?;
            match k {
                "sort" => {
                    q.sort = match v.as_str() {
                        "last_access" => FileSort::LastAccess,
                        "opens" => FileSort::Opens,
                        "faults" => FileSort::Faults,
                        "fmap_bytes" => FileSort::FmapBytes,
                        "path" => FileSort::Path,
                        other => {
                            return Err(format!(
                                "sort={other}: expected last_access, opens, faults, fmap_bytes or path"
                            ));
                        }
                    }
                }
                "limit" => {
                    q.limit = v
                        .parse()
                        .map_err(|_| format!("limit={v}: expected a whole number"))?;
                }
                "path" => q.path = Some(v),
                other => {
                    return Err(format!(
                        "unknown query parameter {other:?} (sort, limit, path)"
                    ));
                }
            }
        }
        Ok(q)
    }
}

/// One file as the views show it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FileView {
    pub path: String,
    pub ino: u64,
    pub size: u64,
    pub fmap_bytes: u32,
    pub fmap_extents: u32,
    pub opens: u64,
    pub open_errors: u64,
    pub open_latency_mean_seconds: f64,
    /// Joined OPEN latencies counted in `open_latency_log2_ns`.
    pub open_latency_count: u64,
    /// OPEN latency histogram: entry `i` counts latencies of `2^i ..= 2^(i+1) - 1` ns (entry 0 also
    /// takes 0; the last of `LAT_SLOTS` is open-ended). Trailing empty entries are left out.
    pub open_latency_log2_ns: Vec<u64>,
    pub get_fmap: u64,
    pub get_fmap_retries: u64,
    pub get_fmap_errors: u64,
    pub reads: u64,
    pub read_bytes: u64,
    pub writes: u64,
    pub write_bytes: u64,
    pub faults_pte: u64,
    pub faults_pmd: u64,
    pub faults_fallback: u64,
    /// DAX faults of either size that ended in an error (counted in `sort=faults`).
    pub faults_error: u64,
    pub page_cache_faults: u64,
    pub last_access_ns: u64,
    /// Seconds between the last access and the moment the view was made (`None`: never accessed, or a
    /// view made by [`FileView::of`] without a clock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_access_age_seconds: Option<f64>,
}

impl FileView {
    pub fn of(f: &FileStats) -> FileView {
        FileView {
            path: f.info.path.clone(),
            ino: f.ino,
            size: f.info.size,
            fmap_bytes: f.info.fmap_bytes,
            fmap_extents: f.info.fmap_extents,
            opens: f.opens,
            open_errors: f.open_errors,
            open_latency_mean_seconds: if f.open_lat_count == 0 {
                0.0
            } else {
                f.open_lat_sum_ns as f64 * 1e-9 / f.open_lat_count as f64
            },
            open_latency_count: f.open_lat_count,
            open_latency_log2_ns: {
                let used = f
                    .open_lat_slots
                    .iter()
                    .rposition(|&c| c != 0)
                    .map_or(0, |i| i + 1);
                f.open_lat_slots[..used].to_vec()
            },
            get_fmap: f.get_fmap,
            get_fmap_retries: f.get_fmap_retries,
            get_fmap_errors: f.get_fmap_errors,
            reads: f.reads,
            read_bytes: f.read_bytes,
            writes: f.writes,
            write_bytes: f.write_bytes,
            faults_pte: f.faults[0][0],
            faults_pmd: f.faults[1][0],
            faults_fallback: f.faults[1][1] + f.faults[0][1],
            faults_error: f.faults[1][2] + f.faults[0][2],
            page_cache_faults: f.page_cache_faults,
            last_access_ns: f.last_access_ns,
            last_access_age_seconds: None,
        }
    }

    /// [`FileView::of`], with the last access's age relative to `now_ns` (CLOCK_MONOTONIC).
    pub fn at(f: &FileStats, now_ns: u64) -> FileView {
        let mut v = FileView::of(f);
        if f.last_access_ns != 0 {
            v.last_access_age_seconds = Some(now_ns.saturating_sub(f.last_access_ns) as f64 * 1e-9);
        }
        v
    }
}

fn faults(f: &FileStats) -> u64 {
    f.faults.iter().flatten().sum::<u64>() + f.page_cache_faults
}

/// Apply `q` to `files`; ages of last accesses are taken against the monotonic clock now.
pub fn query<'a>(files: impl Iterator<Item = &'a FileStats>, q: &FileQuery) -> Vec<FileView> {
    query_at(files, q, crate::util::monotonic_ns())
}

/// Apply `q` to `files`, with last-access ages relative to `now_ns` (CLOCK_MONOTONIC).
pub fn query_at<'a>(
    files: impl Iterator<Item = &'a FileStats>,
    q: &FileQuery,
    now_ns: u64,
) -> Vec<FileView> {
    let mut v: Vec<&FileStats> = files
        .filter(|f| q.path.as_deref().is_none_or(|p| f.info.path.contains(p)))
        .collect();
    match q.sort {
        FileSort::LastAccess => v.sort_by(|a, b| {
            b.last_access_ns
                .cmp(&a.last_access_ns)
                .then(a.info.path.cmp(&b.info.path))
        }),
        FileSort::Opens => {
            v.sort_by(|a, b| b.opens.cmp(&a.opens).then(a.info.path.cmp(&b.info.path)))
        }
        FileSort::Faults => v.sort_by(|a, b| {
            faults(b)
                .cmp(&faults(a))
                .then(a.info.path.cmp(&b.info.path))
        }),
        FileSort::FmapBytes => v.sort_by(|a, b| {
            b.info
                .fmap_bytes
                .cmp(&a.info.fmap_bytes)
                .then(a.info.path.cmp(&b.info.path))
        }),
        FileSort::Path => v.sort_by(|a, b| a.info.path.cmp(&b.info.path)),
    }
    v.into_iter()
        .take(q.limit)
        .map(|f| FileView::at(f, now_ns))
        .collect()
}

/// Split `files` into the `max` most recently active (their own series) and the rest (folded into
/// `path="__other__"`). Ties break by path, so the choice is stable between scrapes.
pub fn fold_for_series<'a>(
    files: impl Iterator<Item = &'a FileStats>,
    max: usize,
) -> (Vec<&'a FileStats>, Vec<&'a FileStats>) {
    let mut v: Vec<&FileStats> = files.collect();
    let by_recency = |a: &&FileStats, b: &&FileStats| {
        b.last_access_ns
            .cmp(&a.last_access_ns)
            .then(a.info.path.cmp(&b.info.path))
    };
    if v.len() > max {
        v.select_nth_unstable_by(max, by_recency);
        let rest = v.split_off(max);
        v.sort_by(by_recency);
        (v, rest)
    } else {
        v.sort_by(by_recency);
        (v, Vec::new())
    }
}
