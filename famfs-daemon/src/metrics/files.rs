//! Per-file metric families from the join, with bounded cardinality: the `max_series` most recently
//! active files get their own `{fs_uuid, path}` series, the rest are summed into `path="__other__"` and
//! counted in `famfs_file_series_folded`; `path` is the path, its hash or (no per-file families at all)
//! as [`FileLabels`] says. Also the join's health counters. Reads a [`FileState`] borrowed shared; must
//! not change it.

use famfs_common::{
    hist::LAT_SLOTS,
    metric_names::{
        FILE_DAX_FAULT_DURATION, FILE_DAX_FAULTS, FILE_FMAP, FILE_FMAP_EXTENTS, FILE_GET_FMAP,
        FILE_GET_FMAP_ERRORS, FILE_GET_FMAP_RETRIES, FILE_LAST_ACCESS_TIMESTAMP,
        FILE_OPEN_DURATION, FILE_OPEN_ERRORS, FILE_OPENS, FILE_PAGE_CACHE_FAULTS, FILE_READ,
        FILE_READS, FILE_SERIES_FOLDED, FILE_SIZE, FILE_WRITES, FILE_WRITTEN, JOIN_EVENTS, Metric,
    },
};
use prometheus_client::{
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
    registry::Unit,
};

use super::{FileLabels, path_hash};
use crate::join::{FileState, FileStats, FileTotals, Join, JoinHealth, fold_for_series};

/// Slot boundaries (log2 ns, exclusive upper bound 2^(i+1)) kept for per-file histograms: about 1 µs to
/// 1 s in factors of 4, so 500 files × 12 buckets stays affordable.
const COARSE: [usize; 11] = [9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29];

fn coarse_buckets(slots: &[u64; LAT_SLOTS], out: &mut Vec<(f64, u64)>) -> u64 {
    out.clear();
    let mut acc = 0u64;
    let mut in_bucket = 0u64;
    let mut next = 0usize;
    for (i, c) in slots.iter().enumerate() {
        acc += c;
        in_bucket += c;
        if next < COARSE.len() && i == COARSE[next] {
            out.push(((1u64 << (i + 1)) as f64 * 1e-9, in_bucket));
            in_bucket = 0;
            next += 1;
        }
    }
    out.push((f64::INFINITY, in_bucket));
    acc
}

/// What one series shows: a file, or the fold of many (the join's sums, plus the latest access).
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Row {
    path: String,
    t: FileTotals,
    last_access_ns: u64,
}

impl Row {
    fn empty(path: String) -> Row {
        Row {
            path,
            t: FileTotals::default(),
            last_access_ns: 0,
        }
    }

    fn add(&mut self, f: &FileStats) {
        self.t.add_file(f);
        self.last_access_ns = self.last_access_ns.max(f.last_access_ns);
    }
}

/// The rows of one scrape: the kept files, then `__other__` (every tracked file's totals minus the
/// kept ones, so folding reads only the kept files) when some were folded; and how many were.
fn rows(join: &Join, max_series: usize) -> (Vec<Row>, usize) {
    let fold = fold_for_series(join, max_series);
    let mut out: Vec<Row> = fold
        .kept
        .iter()
        .map(|f| {
            let mut r = Row::empty(f.info.path.clone());
            r.add(f);
            r
        })
        .collect();
    if fold.folded > 0 {
        let mut other = Row {
            path: "__other__".into(),
            t: join.totals().clone(),
            last_access_ns: 0,
        };
        for r in &out {
            other.t.sub(&r.t);
        }
        other.last_access_ns = fold.folded_last_access_ns;
        out.push(other);
    }
    (out, fold.folded)
}

/// One per-file counter or gauge: its name, help, unit, type and value.
struct Simple {
    metric: Metric,
    help: &'static str,
    unit: Option<&'static Unit>,
    kind: MetricType,
    value: fn(&Row) -> u64,
}

const fn counter(metric: Metric, help: &'static str, value: fn(&Row) -> u64) -> Simple {
    Simple {
        metric,
        help,
        unit: None,
        kind: MetricType::Counter,
        value,
    }
}

/// The per-file counters and gauges, in the order they are exported.
const SIMPLE: [Simple; 13] = [
    counter(FILE_OPENS, "OPEN requests per file (server-side)", |r| {
        r.t.opens
    }),
    counter(
        FILE_OPEN_ERRORS,
        "OPEN requests per file answered with an error",
        |r| r.t.open_errors,
    ),
    counter(FILE_GET_FMAP, "famfs GET_FMAP requests per file", |r| {
        r.t.get_fmap
    }),
    counter(
        FILE_GET_FMAP_RETRIES,
        "GET_FMAP requests per file whose kernel buffer was too small (needed-size reply, then a retry)",
        |r| r.t.get_fmap_retries,
    ),
    counter(
        FILE_GET_FMAP_ERRORS,
        "GET_FMAP requests per file answered with an error (a famfs kernel then fails the open)",
        |r| r.t.get_fmap_errors,
    ),
    Simple {
        metric: FILE_FMAP,
        help: "Serialized fmap size per file (the GET_FMAP reply body)",
        unit: Some(&Unit::Bytes),
        kind: MetricType::Gauge,
        value: |r| r.t.fmap_bytes,
    },
    Simple {
        metric: FILE_FMAP_EXTENTS,
        help: "Extents (or strips) in the file's fmap",
        unit: None,
        kind: MetricType::Gauge,
        value: |r| r.t.fmap_extents,
    },
    Simple {
        metric: FILE_SIZE,
        help: "File size per the famfs log",
        unit: Some(&Unit::Bytes),
        kind: MetricType::Gauge,
        value: |r| r.t.size,
    },
    counter(
        FILE_READS,
        "READ requests per file (stock-kernel data path)",
        |r| r.t.reads,
    ),
    Simple {
        metric: FILE_READ,
        help: "Bytes read per file through READ (stock path)",
        unit: Some(&Unit::Bytes),
        kind: MetricType::Counter,
        value: |r| r.t.read_bytes,
    },
    counter(FILE_WRITES, "WRITE requests per file (stock path)", |r| {
        r.t.writes
    }),
    Simple {
        metric: FILE_WRITTEN,
        help: "Bytes written per file through WRITE (stock path)",
        unit: Some(&Unit::Bytes),
        kind: MetricType::Counter,
        value: |r| r.t.write_bytes,
    },
    counter(
        FILE_PAGE_CACHE_FAULTS,
        "Page-cache faults per file (stock path mmap)",
        |r| r.t.page_cache_faults,
    ),
];

/// The rows of one scrape with their `{fs_uuid, path}` labels.
struct Table<'a> {
    rows: &'a [Row],
    labels: Vec<[(&'static str, &'a str); 2]>,
}

impl Table<'_> {
    fn iter(&self) -> impl Iterator<Item = (&Row, &[(&'static str, &str); 2])> {
        self.rows.iter().zip(&self.labels)
    }
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn encode_simple(t: &Table<'_>, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    for s in &SIMPLE {
        let mut m = encoder.encode_descriptor(s.metric.base, s.help, s.unit, s.kind)?;
        for (r, l) in t.iter() {
            let v = (s.value)(r);
            let mut e = m.encode_family(l)?;
            match s.kind {
                MetricType::Gauge => e.encode_gauge(&gauge_value(v))?,
                _ => e.encode_counter::<NoLabelSet, _, u64>(&v, None)?,
            }
        }
    }
    Ok(())
}

fn encode_latencies(t: &Table<'_>, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let mut buckets = Vec::with_capacity(COARSE.len() + 1);
    let mut m = encoder.encode_descriptor(
        FILE_OPEN_DURATION.base,
        "Kernel-observed OPEN latency per file (queue to reply), joined on (epoch, connection, unique)",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (r, l) in t.iter() {
        let count = coarse_buckets(&r.t.open_lat_slots, &mut buckets);
        m.encode_family(l)?.encode_histogram::<NoLabelSet>(
            r.t.open_lat_sum_ns as f64 * 1e-9,
            count,
            &buckets,
            None,
        )?;
    }
    let mut m = encoder.encode_descriptor(
        FILE_DAX_FAULTS.base,
        "Direct-access faults per file by size (pte 4 KiB, pmd 2 MiB) and result, joined on (device, inode)",
        None,
        MetricType::Counter,
    )?;
    for (r, l) in t.iter() {
        for (s, size) in ["pte", "pmd"].iter().enumerate() {
            for (c, res) in ["ok", "fallback", "error"].iter().enumerate() {
                let ll = [l[0], l[1], ("size", *size), ("result", *res)];
                m.encode_family(&ll)?
                    .encode_counter::<NoLabelSet, _, u64>(&r.t.faults[s][c], None)?;
            }
        }
    }
    let mut m = encoder.encode_descriptor(
        FILE_DAX_FAULT_DURATION.base,
        "Direct-access fault latency per file",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (r, l) in t.iter() {
        let count = coarse_buckets(&r.t.fault_lat_slots, &mut buckets);
        m.encode_family(l)?.encode_histogram::<NoLabelSet>(
            r.t.fault_lat_sum_ns as f64 * 1e-9,
            count,
            &buckets,
            None,
        )?;
    }
    Ok(())
}

fn encode_health(h: &JoinHealth, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(
        JOIN_EVENTS.base,
        "Join inputs and outcomes: records/events seen, matched, unmatched (expired), late, foreign, stale",
        None,
        MetricType::Counter,
    )?;
    for (what, v) in [
        ("server_record", h.server_records),
        ("kernel_event", h.kernel_events),
        ("matched", h.matched),
        ("unmatched_server", h.unmatched_server),
        ("unmatched_kernel", h.unmatched_kernel),
        ("late", h.late),
        ("server_timed", h.server_timed),
        ("foreign", h.foreign),
        ("stale_record", h.stale_records),
        ("non_file", h.non_file),
    ] {
        m.encode_family(&[("outcome", what)])?
            .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
    }
    Ok(())
}

/// Encode the per-file families and join health of `st` (read only). `mono_to_unix` converts
/// CLOCK_MONOTONIC ns to Unix seconds.
pub fn encode(
    st: &FileState,
    labels: FileLabels,
    mono_to_unix: impl Fn(u64) -> f64,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    if labels == FileLabels::None {
        return encode_health(&st.join.health, encoder);
    }
    let (mut rows, folded) = rows(&st.join, st.max_series);
    let fs_uuid = st.fs_uuid.as_str();
    if labels == FileLabels::Hash {
        // Only the kept rows: `__other__` is the last row when files were folded.
        let kept = rows.len() - usize::from(folded > 0);
        for r in &mut rows[..kept] {
            r.path = path_hash(fs_uuid, &r.path);
        }
    }
    let t = Table {
        rows: &rows,
        labels: rows
            .iter()
            .map(|r| [("fs_uuid", fs_uuid), ("path", r.path.as_str())])
            .collect(),
    };
    encode_simple(&t, encoder)?;
    encode_latencies(&t, encoder)?;
    let mut m = encoder.encode_descriptor(
        FILE_LAST_ACCESS_TIMESTAMP.base,
        "Unix time of the last request or fault seen for the file",
        Some(&Unit::Seconds),
        MetricType::Gauge,
    )?;
    for (r, l) in t.iter() {
        let t = if r.last_access_ns == 0 {
            0.0
        } else {
            mono_to_unix(r.last_access_ns)
        };
        m.encode_family(l)?.encode_gauge(&t)?;
    }
    let mut m = encoder.encode_descriptor(
        FILE_SERIES_FOLDED.base,
        "Files folded into path=\"__other__\" because --max-file-series was reached",
        None,
        MetricType::Gauge,
    )?;
    m.encode_family(&[("fs_uuid", fs_uuid)])?
        .encode_gauge(&gauge_value(folded as u64))?;
    encode_health(&st.join.health, encoder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fold_from_totals_is_the_sum_of_the_folded_files() {
        use crate::{
            fuse::RequestRecord,
            server::{Catalog, FileInfo},
        };
        use famfs_common::{
            event::{Event, KIND_REQ_END},
            fault::{FaultKey, FaultStats},
        };
        struct Cat;
        impl Catalog for Cat {
            fn file(&self, nodeid: u64) -> Option<FileInfo> {
                Some(FileInfo {
                    path: format!("/f{nodeid}"),
                    size: 10 * nodeid,
                    fmap_bytes: 56,
                    fmap_extents: 1,
                })
            }
        }
        let mut j = Join::new(9, 1, 0, 54);
        // Files 2..=9: opens with joined latencies in many slots, reads, GET_FMAPs; faults on some.
        for u in 0..40u64 {
            let nodeid = 2 + u % 8;
            let opcode = [14, 15, 54][(u % 3) as usize];
            j.ingest_server(
                &RequestRecord {
                    mount_epoch: 1,
                    connection: 9,
                    unique: 2 * u + 2,
                    opcode,
                    nodeid,
                    io_bytes: 100 + u as u32,
                    fmap_bytes: 56 + 8 * u as u32,
                    fmap_extents: 1 + u as u32,
                    reply_ns: 1000 + u,
                    ..Default::default()
                },
                &Cat,
            );
            j.ingest_kernel(&Event {
                kind: KIND_REQ_END,
                conn: 9,
                id: 2 * u + 2,
                ts_ns: 5000 + u,
                lat_ns: 1 << (5 + u % 20),
                op: opcode,
                ..Default::default()
            });
        }
        let mut snap = crate::probes::ProbeSnapshot::default();
        for ino in [3u64, 6, 7] {
            let mut stats = FaultStats {
                count: ino,
                lat_sum_ns: 1000 * ino,
                ..FaultStats::ZERO
            };
            stats.lat_slots[ino as usize] = ino;
            snap.faults.push(crate::probes::FaultRow {
                key: FaultKey {
                    dev: 9,
                    size: (ino % 2) as u8,
                    ino,
                    ..Default::default()
                },
                stats,
            });
        }
        j.apply_fault_snapshot(&snap, 9_000);
        // The three faulted files are the most recent (new faults at 9000): /f3 and /f6 keep their
        // series, /f7 (last by path) folds with the rest.
        let (rows, folded) = rows(&j, 2);
        assert_eq!((rows.len(), folded), (3, 6));
        let kept: Vec<&str> = rows[..2].iter().map(|r| r.path.as_str()).collect();
        assert_eq!(kept, ["/f3", "/f6"]);
        let mut want = Row::empty("__other__".into());
        for f in j.files().filter(|f| !kept.contains(&f.info.path.as_str())) {
            want.add(f);
        }
        assert!(want.t.opens > 0 && want.t.faults.iter().flatten().sum::<u64>() > 0);
        assert_eq!(rows[2], want);
    }

    #[test]
    fn coarse_buckets_count_each_bucket_once() {
        // prometheus-client's encode_histogram accumulates: each bucket holds its own count.
        let mut s = [0u64; LAT_SLOTS];
        s[0] = 1;
        s[10] = 2;
        s[39] = 5;
        let mut b = Vec::new();
        assert_eq!(coarse_buckets(&s, &mut b), 8);
        assert_eq!(b.len(), 12);
        assert_eq!(b[0], (1024.0 * 1e-9, 1));
        assert_eq!(b[1], (4096.0 * 1e-9, 2));
        assert!(b[2..11].iter().all(|&(_, c)| c == 0), "{b:?}");
        assert_eq!(b[11], (f64::INFINITY, 5));
        assert_eq!(b.iter().map(|&(_, c)| c).sum::<u64>(), 8);
    }
}
