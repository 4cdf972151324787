//! Per-file metric families from the join, with bounded cardinality: the `max_series` most recently
//! active files get their own `{fs_uuid, path}` series, the rest are summed into `path="__other__"` and
//! counted in `famfs_file_series_folded`. Also the join's health counters.

use famfs_common::hist::LAT_SLOTS;
use prometheus_client::{
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
    registry::Unit,
};

use crate::join::{FileStats, Join, fold_for_series};

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

/// What one series shows: a file, or the fold of many.
struct Row {
    path: String,
    opens: u64,
    open_errors: u64,
    open_slots: [u64; LAT_SLOTS],
    open_sum_ns: u64,
    get_fmap: u64,
    retries: u64,
    fmap_errors: u64,
    fmap_bytes: u64,
    extents: u64,
    size: u64,
    reads: u64,
    read_bytes: u64,
    writes: u64,
    write_bytes: u64,
    faults: [[u64; 3]; 2],
    fault_slots: [u64; LAT_SLOTS],
    fault_sum_ns: u64,
    page_cache: u64,
    last_access_ns: u64,
}

impl Row {
    fn empty(path: String) -> Row {
        Row {
            path,
            opens: 0,
            open_errors: 0,
            open_slots: [0; LAT_SLOTS],
            open_sum_ns: 0,
            get_fmap: 0,
            retries: 0,
            fmap_errors: 0,
            fmap_bytes: 0,
            extents: 0,
            size: 0,
            reads: 0,
            read_bytes: 0,
            writes: 0,
            write_bytes: 0,
            faults: [[0; 3]; 2],
            fault_slots: [0; LAT_SLOTS],
            fault_sum_ns: 0,
            page_cache: 0,
            last_access_ns: 0,
        }
    }

    fn add(&mut self, f: &FileStats) {
        self.opens += f.opens;
        self.open_errors += f.open_errors;
        for (a, b) in self.open_slots.iter_mut().zip(&f.open_lat_slots) {
            *a += b;
        }
        self.open_sum_ns += f.open_lat_sum_ns;
        self.get_fmap += f.get_fmap;
        self.retries += f.get_fmap_retries;
        self.fmap_errors += f.get_fmap_errors;
        self.fmap_bytes += u64::from(f.info.fmap_bytes);
        self.extents += u64::from(f.info.fmap_extents);
        self.size += f.info.size;
        self.reads += f.reads;
        self.read_bytes += f.read_bytes;
        self.writes += f.writes;
        self.write_bytes += f.write_bytes;
        for (a, b) in self
            .faults
            .iter_mut()
            .flatten()
            .zip(f.faults.iter().flatten())
        {
            *a += b;
        }
        for (a, b) in self.fault_slots.iter_mut().zip(&f.fault_lat_slots) {
            *a += b;
        }
        self.fault_sum_ns += f.fault_lat_sum_ns;
        self.page_cache += f.page_cache_faults;
        self.last_access_ns = self.last_access_ns.max(f.last_access_ns);
    }
}

fn rows(join: &Join, max_series: usize) -> (Vec<Row>, usize) {
    let (keep, rest) = fold_for_series(join.files(), max_series);
    let mut out: Vec<Row> = keep
        .iter()
        .map(|f| {
            let mut r = Row::empty(f.info.path.clone());
            r.add(f);
            r
        })
        .collect();
    if !rest.is_empty() {
        let mut other = Row::empty("__other__".into());
        for f in &rest {
            other.add(f);
        }
        out.push(other);
    }
    (out, rest.len())
}

/// Encode the per-file families and join health. `mono_to_unix` converts CLOCK_MONOTONIC ns to Unix
/// seconds.
pub fn encode(
    join: &Join,
    fs_uuid: &str,
    max_series: usize,
    mono_to_unix: impl Fn(u64) -> f64,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let (rows, folded) = rows(join, max_series);
    let labels: Vec<[(&str, &str); 2]> = rows
        .iter()
        .map(|r| [("fs_uuid", fs_uuid), ("path", r.path.as_str())])
        .collect();

    macro_rules! counter {
        ($name:literal, $help:literal, $unit:expr, $field:ident) => {{
            let mut m = encoder.encode_descriptor($name, $help, $unit, MetricType::Counter)?;
            for (r, l) in rows.iter().zip(&labels) {
                m.encode_family(l)?
                    .encode_counter::<NoLabelSet, _, u64>(&r.$field, None)?;
            }
        }};
    }
    macro_rules! gauge {
        ($name:literal, $help:literal, $unit:expr, $field:ident) => {{
            let mut m = encoder.encode_descriptor($name, $help, $unit, MetricType::Gauge)?;
            for (r, l) in rows.iter().zip(&labels) {
                m.encode_family(l)?.encode_gauge(&(r.$field as i64))?;
            }
        }};
    }
    counter!(
        "file_opens",
        "OPEN requests per file (server-side)",
        None,
        opens
    );
    counter!(
        "file_open_errors",
        "OPEN requests per file answered with an error",
        None,
        open_errors
    );
    counter!(
        "file_get_fmap",
        "famfs GET_FMAP requests per file",
        None,
        get_fmap
    );
    counter!(
        "file_get_fmap_retries",
        "GET_FMAP requests per file whose kernel buffer was too small (needed-size reply, then a retry)",
        None,
        retries
    );
    counter!(
        "file_get_fmap_errors",
        "GET_FMAP requests per file answered with an error (a famfs kernel then fails the open)",
        None,
        fmap_errors
    );
    gauge!(
        "file_fmap",
        "Serialized fmap size per file (the GET_FMAP reply body)",
        Some(&Unit::Bytes),
        fmap_bytes
    );
    gauge!(
        "file_fmap_extents",
        "Extents (or strips) in the file's fmap",
        None,
        extents
    );
    gauge!(
        "file_size",
        "File size per the famfs log",
        Some(&Unit::Bytes),
        size
    );
    counter!(
        "file_reads",
        "READ requests per file (stock-kernel data path)",
        None,
        reads
    );
    counter!(
        "file_read",
        "Bytes read per file through READ (stock path)",
        Some(&Unit::Bytes),
        read_bytes
    );
    counter!(
        "file_writes",
        "WRITE requests per file (stock path)",
        None,
        writes
    );
    counter!(
        "file_written",
        "Bytes written per file through WRITE (stock path)",
        Some(&Unit::Bytes),
        write_bytes
    );
    counter!(
        "file_page_cache_faults",
        "Page-cache faults per file (stock path mmap)",
        None,
        page_cache
    );

    let mut buckets = Vec::with_capacity(COARSE.len() + 1);
    let mut m = encoder.encode_descriptor(
        "file_open_duration",
        "Kernel-observed OPEN latency per file (queue to reply), joined on (epoch, connection, unique)",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (r, l) in rows.iter().zip(&labels) {
        let count = coarse_buckets(&r.open_slots, &mut buckets);
        m.encode_family(l)?.encode_histogram::<NoLabelSet>(
            r.open_sum_ns as f64 * 1e-9,
            count,
            &buckets,
            None,
        )?;
    }
    let mut m = encoder.encode_descriptor(
        "file_dax_faults",
        "Direct-access faults per file by size (pte 4 KiB, pmd 2 MiB) and result, joined on (device, inode)",
        None,
        MetricType::Counter,
    )?;
    for (r, l) in rows.iter().zip(&labels) {
        for (s, size) in ["pte", "pmd"].iter().enumerate() {
            for (c, res) in ["ok", "fallback", "error"].iter().enumerate() {
                let ll = [l[0], l[1], ("size", *size), ("result", *res)];
                m.encode_family(&ll)?
                    .encode_counter::<NoLabelSet, _, u64>(&r.faults[s][c], None)?;
            }
        }
    }
    let mut m = encoder.encode_descriptor(
        "file_dax_fault_duration",
        "Direct-access fault latency per file",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (r, l) in rows.iter().zip(&labels) {
        let count = coarse_buckets(&r.fault_slots, &mut buckets);
        m.encode_family(l)?.encode_histogram::<NoLabelSet>(
            r.fault_sum_ns as f64 * 1e-9,
            count,
            &buckets,
            None,
        )?;
    }
    let mut m = encoder.encode_descriptor(
        "file_last_access_timestamp",
        "Unix time of the last request or fault seen for the file",
        Some(&Unit::Seconds),
        MetricType::Gauge,
    )?;
    for (r, l) in rows.iter().zip(&labels) {
        let t = if r.last_access_ns == 0 {
            0.0
        } else {
            mono_to_unix(r.last_access_ns)
        };
        m.encode_family(l)?.encode_gauge(&t)?;
    }
    let mut m = encoder.encode_descriptor(
        "file_series_folded",
        "Files folded into path=\"__other__\" because --max-file-series was reached",
        None,
        MetricType::Gauge,
    )?;
    m.encode_family(&[("fs_uuid", fs_uuid)])?
        .encode_gauge(&(folded as i64))?;

    let h = join.health;
    let mut m = encoder.encode_descriptor(
        "join_events",
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

#[cfg(test)]
mod tests {
    use super::*;

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
