//! The HTTP API's schema, defined once for the daemon that writes it and the clients that read it
//! (`top`, `snapshot`, `diff`, tests): file rows (`/api/v1/files`), one file's detail with the
//! processes behind it (`/api/v1/file`), probe rows (`/api/v1/probes`) and
//! the [`Snapshot`] (`/api/v1/snapshot`: files, per-opcode request counters and latency histograms, DAX
//! fault totals, probes), with the conversions from the daemon's state (join, probes) into those
//! rows, the query string of the file table, and the histogram arithmetic `top` and `regress` use
//! (quantiles, means, deltas).
//!
//! Pure data and arithmetic: no I/O, no locks (callers hand in what they read and the clock). The
//! snapshot is also the on-disk format of `famfs-trace snapshot` (JSON), so fields are only ever added,
//! each with a serde default, and readers accept files written by older versions.

use std::borrow::Cow;

use famfs_common::{
    fault::{RESULT_ERROR, RESULT_FALLBACK, RESULT_OK, SIZE_PMD, SIZE_PTE},
    hist::LAT_SLOTS,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use crate::{
    join::{FaultMatrix, FileQuery, FileSort, FileStats, ProcTop, SortFields, fault_totals},
    metrics::opcode_label,
    probes::{ProbeSnapshot, ProbeStatus, RequestRow},
};

/// Path of the file table.
pub const FILES_PATH: &str = "/api/v1/files";
/// Path of the probe table.
pub const PROBES_PATH: &str = "/api/v1/probes";
/// Path of one file's detail (`?path=P`, the file's path in the image, with or without the leading `/`): its row and the processes that used it.
pub const FILE_PATH: &str = "/api/v1/file";
/// Path of the whole snapshot.
pub const SNAPSHOT_PATH: &str = "/api/v1/snapshot";

/// Identifies snapshot files; readers reject other values.
pub const SNAPSHOT_FORMAT: &str = "famfs-trace-snapshot/1";

/// A cumulative histogram (Prometheus style): `cumulative[i]` observations were `<= bounds[i]`; `count`
/// is the total including those above the last finite bound (+Inf), `sum` their sum.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Histogram {
    /// Finite upper bounds, increasing.
    pub bounds: Vec<f64>,
    /// Cumulative counts, one per bound.
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    /// From log2 nanosecond slots (slot `i` holds `2^i ..= 2^(i+1) - 1` ns; the last of `total_slots`
    /// is open-ended), as exported by the daemon for per-file OPEN latency. `slots` may be shorter than
    /// `total_slots` (trailing empty slots left out); `sum_seconds` is the observations' sum.
    pub fn from_log2_ns(slots: &[u64], total_slots: usize, sum_seconds: f64) -> Histogram {
        let finite = total_slots.saturating_sub(1).min(slots.len());
        let mut bounds = Vec::with_capacity(finite);
        let mut cumulative = Vec::with_capacity(finite);
        let mut acc = 0u64;
        for (i, c) in slots.iter().take(finite).enumerate() {
            acc += c;
            bounds.push((1u64 << (i + 1)) as f64 * 1e-9);
            cumulative.push(acc);
        }
        Histogram {
            bounds,
            cumulative,
            count: slots.iter().sum(),
            sum: sum_seconds,
        }
    }

    /// Mean of the observations, `None` when there are none.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// Estimate of quantile `q` (0..=1) by linear interpolation inside the bucket that holds it (as
    /// Prometheus' `histogram_quantile`): the first bucket's lower edge is 0, and a quantile that falls
    /// above the last finite bound is reported as that bound. `None` when there are no observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut prev_bound = 0.0;
        let mut prev_cum = 0u64;
        for (&b, &c) in self.bounds.iter().zip(&self.cumulative) {
            if c as f64 >= rank && c > prev_cum {
                let inside = (rank - prev_cum as f64) / (c - prev_cum) as f64;
                return Some(prev_bound + (b - prev_bound) * inside);
            }
            prev_bound = b;
            prev_cum = c;
        }
        Some(prev_bound)
    }

    /// Observations made since `prev` (an earlier reading of the same counter). A counter that went
    /// down (the daemon restarted) counts from zero, as Prometheus' `rate()` does; a change of bounds
    /// likewise yields `self` whole.
    pub fn since(&self, prev: &Histogram) -> Histogram {
        let reset = self.count < prev.count
            || self.bounds != prev.bounds
            || self
                .cumulative
                .iter()
                .zip(&prev.cumulative)
                .any(|(a, b)| a < b);
        if reset {
            return self.clone();
        }
        Histogram {
            bounds: self.bounds.clone(),
            cumulative: self
                .cumulative
                .iter()
                .zip(&prev.cumulative)
                .map(|(a, b)| a - b)
                .collect(),
            count: self.count - prev.count,
            sum: (self.sum - prev.sum).max(0.0),
        }
    }

    /// Add `other` into `self`. Bucket counts are added where the bounds agree; if `self` is empty it
    /// takes `other`'s bounds. Histograms of one metric always share bounds; on a mismatch only
    /// count and sum are added (quantiles of the result then ignore `other`).
    pub fn add(&mut self, other: &Histogram) {
        if self.bounds.is_empty() && self.count == 0 {
            *self = other.clone();
            return;
        }
        if self.bounds == other.bounds {
            for (a, b) in self.cumulative.iter_mut().zip(&other.cumulative) {
                *a += b;
            }
        }
        self.count += other.count;
        self.sum += other.sum;
    }
}

/// One FUSE opcode on one connection: the kernel's counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OpcodeStats {
    pub connection: u32,
    pub opcode: String,
    pub requests: u64,
    pub errors: u64,
    /// Queue → reply latency, seconds.
    pub latency: Histogram,
}

impl OpcodeStats {
    /// The kernel's counters of one (connection, opcode), the opcode named as `/metrics` labels it.
    pub fn of(r: &RequestRow) -> OpcodeStats {
        OpcodeStats {
            connection: r.key.connection,
            opcode: opcode_label(r.key.opcode).into_owned(),
            requests: r.stats.sent,
            errors: r.stats.errors,
            latency: Histogram::from_log2_ns(
                &r.stats.lat_slots,
                LAT_SLOTS,
                r.stats.lat_sum_ns as f64 * 1e-9,
            ),
        }
    }
}

/// DAX faults of one size, by result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultClass {
    pub ok: u64,
    pub fallback: u64,
    pub error: u64,
}

impl FaultClass {
    pub fn total(&self) -> u64 {
        self.ok + self.fallback + self.error
    }

    /// Per-field difference against an earlier reading (a counter that went down counts from zero).
    pub fn since(&self, prev: &FaultClass) -> FaultClass {
        let d = |a: u64, b: u64| if a >= b { a - b } else { a };
        FaultClass {
            ok: d(self.ok, prev.ok),
            fallback: d(self.fallback, prev.fallback),
            error: d(self.error, prev.error),
        }
    }
}

/// DAX faults (`famfs_dax_faults_total`): 4 KiB (PTE) and 2 MiB (PMD).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultCounts {
    pub pte: FaultClass,
    pub pmd: FaultClass,
}

impl FaultCounts {
    /// From `[size][result]` counts.
    pub fn from_matrix(m: &FaultMatrix) -> FaultCounts {
        let class = |size: u8| {
            let row = m[usize::from(size)];
            FaultClass {
                ok: row[usize::from(RESULT_OK)],
                fallback: row[usize::from(RESULT_FALLBACK)],
                error: row[usize::from(RESULT_ERROR)],
            }
        };
        FaultCounts {
            pte: class(SIZE_PTE),
            pmd: class(SIZE_PMD),
        }
    }

    /// Share of 2 MiB fault attempts that fell back to 4 KiB pages (the famfs huge-page regression);
    /// `None` when no PMD fault was attempted.
    pub fn pmd_fallback_ratio(&self) -> Option<f64> {
        let t = self.pmd.total();
        (t > 0).then(|| self.pmd.fallback as f64 / t as f64)
    }

    pub fn since(&self, prev: &FaultCounts) -> FaultCounts {
        FaultCounts {
            pte: self.pte.since(&prev.pte),
            pmd: self.pmd.since(&prev.pmd),
        }
    }
}

/// One probe as `/api/v1/probes` reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbeRow {
    pub program: String,
    /// `tracepoint`, `raw_tracepoint`, `tp_btf`, `fentry`, `kprobe` or `function`.
    pub kind: String,
    pub target: String,
    /// What the probe is for (empty in snapshots written before this field existed).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub purpose: String,
    /// `attached` or `unavailable`.
    pub state: String,
    /// Why an unavailable probe is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ProbeRow {
    /// The row of one probe. The spelling of kinds and states is the probes' own (their serde names),
    /// taken through JSON so that it is written down once.
    pub fn of(s: &ProbeStatus) -> Result<ProbeRow, serde_json::Error> {
        serde_json::to_value(s).and_then(serde_json::from_value)
    }

    pub fn attached(&self) -> bool {
        self.state == "attached"
    }
}

/// One file as `/api/v1/files` reports it. Every field defaults, so rows from older daemons (without
/// latency buckets, ages or GET_FMAP errors) still read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileRow {
    pub path: String,
    pub ino: u64,
    pub size: u64,
    pub fmap_bytes: u64,
    pub fmap_extents: u64,
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
    /// GET_FMAP requests answered with an error (a famfs kernel then fails the open).
    pub get_fmap_errors: u64,
    pub reads: u64,
    pub read_bytes: u64,
    pub writes: u64,
    pub write_bytes: u64,
    pub faults_pte: u64,
    pub faults_pmd: u64,
    pub faults_fallback: u64,
    /// DAX faults that ended in an error (0 from daemons that do not report them).
    pub faults_error: u64,
    pub page_cache_faults: u64,
    /// CLOCK_MONOTONIC ns of the daemon's last request or fault for the file.
    pub last_access_ns: u64,
    /// Seconds between the last access and the moment the row was made (`None`: never accessed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_access_age_seconds: Option<f64>,
}

impl FileRow {
    /// The row of `f`, with the last access's age relative to `now_ns` (CLOCK_MONOTONIC).
    pub fn of(f: &FileStats, now_ns: u64) -> FileRow {
        let open_lat = f.open_lat.to_array();
        let faults = f.faults();
        let used = open_lat.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
        FileRow {
            path: f.info.path.clone(),
            ino: f.ino,
            size: f.info.size,
            fmap_bytes: u64::from(f.info.fmap_bytes),
            fmap_extents: u64::from(f.info.fmap_extents),
            opens: f.opens,
            open_errors: f.open_errors,
            open_latency_mean_seconds: if f.open_lat_count == 0 {
                0.0
            } else {
                f.open_lat_sum_ns as f64 * 1e-9 / f.open_lat_count as f64
            },
            open_latency_count: f.open_lat_count,
            open_latency_log2_ns: open_lat[..used].to_vec(),
            get_fmap: f.get_fmap,
            get_fmap_retries: f.get_fmap_retries,
            get_fmap_errors: f.get_fmap_errors,
            reads: f.reads,
            read_bytes: f.read_bytes,
            writes: f.writes,
            write_bytes: f.write_bytes,
            faults_pte: faults[0][0],
            faults_pmd: faults[1][0],
            faults_fallback: faults[1][1] + faults[0][1],
            faults_error: faults[1][2] + faults[0][2],
            page_cache_faults: f.page_cache_faults,
            last_access_ns: f.last_access_ns,
            last_access_age_seconds: (f.last_access_ns != 0)
                .then(|| now_ns.saturating_sub(f.last_access_ns) as f64 * 1e-9),
        }
    }

    /// What the file table's sort keys look at (the daemon's order, see [`FileSort::compare`]).
    pub fn sort_fields(&self) -> SortFields<'_> {
        SortFields {
            path: &self.path,
            last_access_ns: self.last_access_ns,
            opens: self.opens,
            faults: self.faults(),
            fmap_bytes: self.fmap_bytes,
        }
    }

    /// OPEN latency histogram in seconds.
    pub fn open_latency(&self) -> Histogram {
        let count: u64 = self.open_latency_log2_ns.iter().sum();
        Histogram::from_log2_ns(
            &self.open_latency_log2_ns,
            famfs_common::hist::LAT_SLOTS,
            self.open_latency_mean_seconds * count as f64,
        )
    }

    /// All faults the daemon counts for this file, errors included: the daemon's `sort=faults` key.
    pub fn faults(&self) -> u64 {
        self.faults_pte
            + self.faults_pmd
            + self.faults_fallback
            + self.faults_error
            + self.page_cache_faults
    }

    /// Share of this file's huge-page attempts that fell back (`fallback / (pmd + fallback)`).
    pub fn fallback_ratio(&self) -> Option<f64> {
        let t = self.faults_pmd + self.faults_fallback;
        (t > 0).then(|| self.faults_fallback as f64 / t as f64)
    }
}

/// Files encoded as a JSON array of [`FileRow`]s, written in as many batches as the caller likes:
/// each row is made only while it is written (a listing of 100k files holds one row at a time, not
/// 100k), and the text is the same as the `Vec<FileRow>`'s.
#[derive(Debug)]
pub struct FileRowsJson {
    buf: Vec<u8>,
    /// The rows' clock ([`FileRow::of`]).
    now_ns: u64,
    rows: usize,
}

impl FileRowsJson {
    /// An empty array whose rows will be made at `now_ns`; `capacity`: bytes to reserve.
    pub fn new(now_ns: u64, capacity: usize) -> FileRowsJson {
        let mut buf = Vec::with_capacity(capacity.max(2));
        buf.push(b'[');
        FileRowsJson {
            buf,
            now_ns,
            rows: 0,
        }
    }

    /// Append `f`'s row.
    pub fn push(&mut self, f: &FileStats) -> Result<(), serde_json::Error> {
        if self.rows > 0 {
            self.buf.push(b',');
        }
        self.rows += 1;
        serde_json::to_writer(&mut self.buf, &FileRow::of(f, self.now_ns))
    }

    /// Rows written so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The array's text.
    pub fn finish(mut self) -> String {
        self.buf.push(b']');
        // serde_json writes UTF-8 only; the brackets and commas are ASCII.
        String::from_utf8(self.buf)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// One process's share of a file's events (`/api/v1/file`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcRow {
    /// Opens: the FUSE request's pid (the opening thread's id); faults: the faulting process (tgid).
    pub pid: u32,
    /// The process's name (`/proc/PID/comm`) when the row was made; empty when it has exited.
    pub comm: String,
    pub count: u64,
}

/// The processes behind a file's events: a bounded top-N each (see `join::ProcTop`), most events
/// first; `other_*` counts the events of processes that did not keep a place, so each list's counts
/// plus its `other_*` are the file's total.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileProcesses {
    pub opens: Vec<ProcRow>,
    pub other_opens: u64,
    /// DAX faults by faulting process (from the kernel; the name as the kernel saw it at the
    /// process's last fault, so it stays after the process exits).
    pub faults: Vec<ProcRow>,
    pub other_faults: u64,
}

/// `/api/v1/file?path=P`: one file's row and the processes that opened it and that faulted on it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileDetail {
    pub file: FileRow,
    pub processes: FileProcesses,
}

impl FileDetail {
    /// The detail of `f` at `now_ns`; `comm` names a pid (empty when it has exited).
    pub fn of(f: &FileStats, now_ns: u64, comm: &dyn Fn(u32) -> String) -> FileDetail {
        let rows = |t: &ProcTop| -> Vec<ProcRow> {
            t.sorted()
                .into_iter()
                .map(|p| ProcRow {
                    pid: p.pid,
                    comm: comm(p.pid),
                    count: p.count,
                })
                .collect()
        };
        FileDetail {
            file: FileRow::of(f, now_ns),
            processes: FileProcesses {
                opens: rows(&f.open_procs),
                other_opens: f.open_procs.other,
                faults: f
                    .fault_procs()
                    .sorted()
                    .into_iter()
                    .map(|p| ProcRow {
                        pid: p.pid,
                        comm: p.comm_str(),
                        count: p.count,
                    })
                    .collect(),
                other_faults: f.fault_procs().other,
            },
        }
    }
}

/// Parse the query string of `/api/v1/file`: `path=P` (percent-encoded), the only key.
pub fn parse_file_path(query: Option<&str>) -> Result<String, String> {
    let mut path = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("path", v)) => path = Some(decode_value(v)?),
            _ => return Err(format!("unknown query parameter {pair:?} (path)")),
        }
    }
    path.ok_or_else(|| "missing path= (the file's path in the image)".to_string())
}

/// The query string of `/api/v1/file` for `path`, as [`parse_file_path`] reads it.
pub fn file_path_query(path: &str) -> String {
    format!("path={}", utf8_percent_encode(path, FILTER_SET))
}

/// Everything the operator views read from a daemon at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    /// [`SNAPSHOT_FORMAT`].
    pub format: String,
    /// Wall-clock time the snapshot was taken, seconds since the Unix epoch.
    pub taken_unix_seconds: f64,
    /// The daemon's address, as the reader asked it (empty in what the daemon sends).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub daemon: String,
    pub files: Vec<FileRow>,
    pub opcodes: Vec<OpcodeStats>,
    pub faults: FaultCounts,
    pub probes: Vec<ProbeRow>,
}

impl Snapshot {
    /// A saved snapshot from its JSON text; errors give the line and column of bad JSON, or name a
    /// file that is not a snapshot of this format.
    pub fn from_json(text: &str) -> Result<Snapshot, String> {
        let s: Snapshot = serde_json::from_str(text)
            .map_err(|e| format!("line {} column {}: {e}", e.line(), e.column()))?;
        if s.format != SNAPSHOT_FORMAT {
            return Err(format!(
                "format {:?}, expected {SNAPSHOT_FORMAT:?} (written by `famfs-trace snapshot`?)",
                s.format
            ));
        }
        Ok(s)
    }

    /// The daemon's snapshot: `files` (already queried), the kernel's per-opcode counters and DAX
    /// fault totals from `kernel`, the probe table; taken at `unix_seconds`. `daemon` is left for the
    /// reader to fill in (the address it asked).
    pub fn of(
        files: Vec<FileRow>,
        kernel: &ProbeSnapshot,
        probes: Vec<ProbeRow>,
        unix_seconds: f64,
    ) -> Snapshot {
        let mut opcodes: Vec<OpcodeStats> = Vec::with_capacity(kernel.requests.len());
        for o in kernel.requests.iter().map(OpcodeStats::of) {
            // Opcodes without a name of their own share a label (`other`): one row each.
            match opcodes
                .iter_mut()
                .find(|x| x.connection == o.connection && x.opcode == o.opcode)
            {
                Some(x) => {
                    x.requests += o.requests;
                    x.errors += o.errors;
                    x.latency.add(&o.latency);
                }
                None => opcodes.push(o),
            }
        }
        opcodes.sort_by(|a, b| {
            a.connection
                .cmp(&b.connection)
                .then_with(|| a.opcode.cmp(&b.opcode))
        });
        Snapshot {
            format: SNAPSHOT_FORMAT.to_string(),
            taken_unix_seconds: unix_seconds,
            daemon: String::new(),
            files,
            opcodes,
            faults: FaultCounts::from_matrix(&fault_totals(&kernel.faults)),
            probes,
        }
    }

    /// Probe summary: (attached, unavailable).
    pub fn probe_counts(&self) -> (usize, usize) {
        let a = self.probes.iter().filter(|p| p.attached()).count();
        (a, self.probes.len() - a)
    }

    /// Per-opcode statistics summed over connections (connection numbers differ between runs, so
    /// comparisons key on the opcode alone), sorted by opcode name; `connection` is 0 in the result.
    pub fn by_opcode(&self) -> Vec<OpcodeStats> {
        let mut out: Vec<OpcodeStats> = Vec::new();
        for o in &self.opcodes {
            match out.iter_mut().find(|x| x.opcode == o.opcode) {
                Some(x) => {
                    x.requests += o.requests;
                    x.errors += o.errors;
                    x.latency.add(&o.latency);
                }
                None => out.push(OpcodeStats {
                    connection: 0,
                    ..o.clone()
                }),
            }
        }
        out.sort_by(|a, b| a.opcode.cmp(&b.opcode));
        out
    }
}

/// Bytes of a `path=` filter written as they are; the rest is percent-encoded.
const FILTER_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Decode one query value: `%XX` escapes (each `%` must start one) and `+` for a space.
fn decode_value(s: &str) -> Result<String, String> {
    for (i, _) in s.match_indices('%') {
        let hex = s
            .get(i + 1..i + 3)
            .ok_or_else(|| format!("truncated escape in {s:?}"))?;
        if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("bad escape %{hex} in {s:?}"));
        }
    }
    let spaced: Cow<str> = if s.contains('+') {
        Cow::Owned(s.replace('+', " "))
    } else {
        Cow::Borrowed(s)
    };
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| format!("{s:?} is not UTF-8"))
}

/// Parse the query string of `/api/v1/files` and `/api/v1/snapshot`: `sort=opens&limit=10&path=datasets/`.
/// Unknown keys or bad values are errors naming them.
pub fn parse_file_query(query: Option<&str>) -> Result<FileQuery, String> {
    let mut q = FileQuery::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode_value(v)?;
        match k {
            "sort" => {
                q.sort = FileSort::parse(&v)
                    .ok_or_else(|| format!("sort={v}: {}", FileSort::expected()))?;
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

/// The query string of `q` (`sort=opens&limit=10&path=a%20b`), as [`parse_file_query`] reads it; an
/// empty filter is left out.
pub fn file_query_string(q: &FileQuery) -> String {
    let mut s = format!("sort={}&limit={}", q.sort.as_str(), q.limit);
    if let Some(p) = q.path.as_deref().filter(|p| !p.is_empty()) {
        s.push_str("&path=");
        s.extend(utf8_percent_encode(p, FILTER_SET));
    }
    s
}

#[cfg(test)]
mod tests;
