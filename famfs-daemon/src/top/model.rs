//! What the operator views know about a daemon at one moment: the [`Snapshot`] (per-file rows from
//! `/api/v1/files`, per-opcode request counters and latency histograms, DAX fault counts and the probe
//! table), and the histogram arithmetic both `top` and `regress` use (quantiles, means, deltas).
//!
//! Pure data and arithmetic: no I/O, no clocks. The snapshot is also the on-disk format of
//! `famfs-trace snapshot` (JSON), so fields are only ever added, each with a serde default, and readers
//! accept files written by older versions.

use serde::{Deserialize, Serialize};

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
pub struct ProbeInfo {
    pub program: String,
    pub kind: String,
    pub target: String,
    /// `attached` or `unavailable`.
    pub state: String,
    /// Why an unavailable probe is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ProbeInfo {
    pub fn attached(&self) -> bool {
        self.state == "attached"
    }
}

/// One file as `/api/v1/files` reports it (the daemon's `FileView`). Every field defaults, so rows from
/// older daemons (without latency buckets or ages) still read.
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
    pub open_latency_count: u64,
    /// Log2 ns slots (see the daemon's `FileView::open_latency_log2_ns`).
    pub open_latency_log2_ns: Vec<u64>,
    pub get_fmap: u64,
    pub get_fmap_retries: u64,
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
    pub last_access_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_access_age_seconds: Option<f64>,
}

impl FileRow {
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

/// Everything the operator views read from a daemon at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    /// [`SNAPSHOT_FORMAT`].
    pub format: String,
    /// Wall-clock time the snapshot was taken, seconds since the Unix epoch.
    pub taken_unix_seconds: f64,
    /// The daemon's address.
    pub daemon: String,
    pub files: Vec<FileRow>,
    pub opcodes: Vec<OpcodeStats>,
    pub faults: FaultCounts,
    pub probes: Vec<ProbeInfo>,
}

impl Snapshot {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn h(bounds: &[f64], cum: &[u64], count: u64, sum: f64) -> Histogram {
        Histogram {
            bounds: bounds.to_vec(),
            cumulative: cum.to_vec(),
            count,
            sum,
        }
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        // 10 observations: 4 in (0, 1], 4 in (1, 2], 2 in (2, 4].
        let x = h(&[1.0, 2.0, 4.0], &[4, 8, 10], 10, 20.0);
        assert_eq!(x.quantile(0.5), Some(1.25));
        assert_eq!(x.quantile(0.2), Some(0.5));
        assert_eq!(x.quantile(0.9), Some(3.0));
        assert_eq!(x.quantile(1.0), Some(4.0));
        assert_eq!(x.mean(), Some(2.0));
    }

    #[test]
    fn quantile_above_last_bound_is_that_bound_and_empty_is_none() {
        let x = h(&[1.0, 2.0], &[1, 1], 4, 10.0);
        assert_eq!(x.quantile(0.99), Some(2.0));
        assert_eq!(x.quantile(0.1), Some(0.4));
        assert_eq!(Histogram::default().quantile(0.5), None);
        assert_eq!(Histogram::default().mean(), None);
    }

    #[test]
    fn log2_slots_become_second_buckets() {
        // 3 values in slot 10 (1024..=2047 ns), 1 in slot 12 (4096..=8191 ns).
        let mut slots = vec![0u64; 13];
        slots[10] = 3;
        slots[12] = 1;
        let x = Histogram::from_log2_ns(&slots, 40, 1e-5);
        assert_eq!(x.bounds.len(), 13);
        assert_eq!(x.bounds[10], 2048e-9);
        assert_eq!(x.cumulative[10], 3);
        assert_eq!(x.cumulative[11], 3);
        assert_eq!(x.cumulative[12], 4);
        assert_eq!(x.count, 4);
        // p50: rank 2 of 3 in (1024, 2048] ns.
        let p50 = x.quantile(0.5).unwrap();
        assert!(
            (p50 - (1024.0 + 1024.0 * 2.0 / 3.0) * 1e-9).abs() < 1e-18,
            "{p50}"
        );
        // The open-ended last slot only counts toward the total.
        let mut all = vec![0u64; 40];
        all[39] = 2;
        let y = Histogram::from_log2_ns(&all, 40, 0.0);
        assert_eq!((y.bounds.len(), y.count, y.cumulative[38]), (39, 2, 0));
    }

    #[test]
    fn since_subtracts_and_detects_resets() {
        let a = h(&[1.0, 2.0], &[1, 2], 3, 3.0);
        let b = h(&[1.0, 2.0], &[3, 5], 7, 10.0);
        assert_eq!(b.since(&a), h(&[1.0, 2.0], &[2, 3], 4, 7.0));
        // A restart: counters went down, the new reading counts whole.
        assert_eq!(a.since(&b), a);
        let f = FaultClass {
            ok: 5,
            fallback: 1,
            error: 0,
        };
        let g = FaultClass {
            ok: 7,
            fallback: 0,
            error: 2,
        };
        assert_eq!(
            g.since(&f),
            FaultClass {
                ok: 2,
                fallback: 0,
                error: 2
            }
        );
    }

    #[test]
    fn by_opcode_sums_connections() {
        let s = Snapshot {
            opcodes: vec![
                OpcodeStats {
                    connection: 40,
                    opcode: "OPEN".into(),
                    requests: 2,
                    errors: 1,
                    latency: h(&[1.0], &[2], 2, 1.0),
                },
                OpcodeStats {
                    connection: 41,
                    opcode: "OPEN".into(),
                    requests: 3,
                    errors: 0,
                    latency: h(&[1.0], &[1], 3, 5.0),
                },
                OpcodeStats {
                    connection: 40,
                    opcode: "GETATTR".into(),
                    requests: 1,
                    errors: 0,
                    latency: h(&[1.0], &[1], 1, 0.5),
                },
            ],
            ..Default::default()
        };
        let v = s.by_opcode();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].opcode, "GETATTR");
        assert_eq!((v[1].connection, v[1].requests, v[1].errors), (0, 5, 1));
        assert_eq!(v[1].latency, h(&[1.0], &[3], 5, 6.0));
    }

    #[test]
    fn fallback_ratios() {
        let f = FaultCounts {
            pte: FaultClass::default(),
            pmd: FaultClass {
                ok: 3,
                fallback: 1,
                error: 0,
            },
        };
        assert_eq!(f.pmd_fallback_ratio(), Some(0.25));
        assert_eq!(FaultCounts::default().pmd_fallback_ratio(), None);
        let r = FileRow {
            faults_pmd: 1,
            faults_fallback: 3,
            ..Default::default()
        };
        assert_eq!(r.fallback_ratio(), Some(0.75));
    }
}
