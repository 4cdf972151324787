//! Collector for the kernel-side aggregates: FUSE request families, probe status, health and self-cost,
//! and (read only, as the join last left them) the per-file families. Must not write to the join.

use std::{
    borrow::Cow,
    sync::{Arc, Mutex},
};

use famfs_common::{
    counters,
    fault::{self, FaultStats},
    hist::{LAT_SLOTS, SIZE_SLOTS},
    metric_names::{
        DAX_FAULT_DURATION, DAX_FAULTS, FUSE_REPLY_SIZE, FUSE_REQUEST_DURATION,
        FUSE_REQUEST_ERRORS, FUSE_REQUESTS, KERNEL_FUNCTION_CALLS, KERNEL_FUNCTION_DURATION,
        PAGE_CACHE_FAULTS, PROBE_ATTACHED, PROBE_EVENTS, PROBE_RECURSION_MISSES, PROBE_RUN_TIME,
        PROBE_RUNS,
    },
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
    registry::Unit,
};

use crate::{
    join::{SharedFileState, fault_cell},
    probes::{ProbeKind, ProbeSnapshot, ProbeState, Probes},
};

/// Encodes, on every scrape, one probe snapshot (the kernel families) and the join's per-file table as
/// the join last left it (read only).
#[derive(Debug)]
pub struct KernelCollector {
    probes: Option<Arc<Mutex<Probes>>>,
    files: Option<SharedFileState>,
    file_labels: super::FileLabels,
}

impl KernelCollector {
    pub fn new(
        probes: Option<Arc<Mutex<Probes>>>,
        files: Option<SharedFileState>,
        file_labels: super::FileLabels,
    ) -> Self {
        Self {
            probes,
            files,
            file_labels,
        }
    }
}

/// Bounded opcode label: the upstream name, `op_<n>` below 64, `other` beyond.
pub fn opcode_label(op: u32) -> Cow<'static, str> {
    match famfs_common::opcode::name(op) {
        Some(n) => Cow::Borrowed(n),
        None if op < 64 => Cow::Owned(format!("op_{op}")),
        None => Cow::Borrowed("other"),
    }
}

/// Histogram buckets from log2 slots, as prometheus-client's `encode_histogram` takes them: the
/// count of each bucket alone (the encoder accumulates them into the cumulative `le` series; handing
/// it cumulative counts would accumulate twice). `scale` converts a slot's exclusive upper bound
/// `2^(i+1)` into the exported unit. The last slot is open-ended and only counts toward +Inf.
/// Returns the total count.
pub fn histogram_buckets(slots: &[u64], scale: f64, out: &mut Vec<(f64, u64)>) -> u64 {
    out.clear();
    let n = slots.len();
    for (i, &c) in slots.iter().enumerate().take(n.saturating_sub(1)) {
        out.push(((1u64 << (i + 1)) as f64 * scale, c));
    }
    out.push((f64::INFINITY, slots.last().copied().unwrap_or(0)));
    slots.iter().sum()
}

impl Collector for KernelCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (snap, status) = match &self.probes {
            Some(p) => match p.lock() {
                Ok(p) => (p.snapshot(), p.status().to_vec()),
                Err(_) => (ProbeSnapshot::default(), Vec::new()),
            },
            None => (ProbeSnapshot::default(), Vec::new()),
        };
        if let Some(files) = &self.files
            && let Ok(st) = files.read()
        {
            let now = crate::util::monotonic_ns();
            let unix_now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            let to_unix = |mono: u64| unix_now - now.saturating_sub(mono) as f64 * 1e-9;
            super::files::encode(&st, self.file_labels, to_unix, &mut encoder)?;
        }

        let mut labels: Vec<[(&'static str, Cow<'static, str>); 2]> =
            Vec::with_capacity(snap.requests.len());
        for r in &snap.requests {
            labels.push([
                ("connection", Cow::Owned(r.key.connection.to_string())),
                ("opcode", opcode_label(r.key.opcode)),
            ]);
        }

        let mut m = encoder.encode_descriptor(
            FUSE_REQUESTS.base,
            "FUSE requests queued by the kernel (fuse_request_send), by connection and opcode",
            None,
            MetricType::Counter,
        )?;
        for (r, l) in snap.requests.iter().zip(&labels) {
            m.encode_family(l)?
                .encode_counter::<NoLabelSet, _, u64>(&r.stats.sent, None)?;
        }
        let mut m = encoder.encode_descriptor(
            FUSE_REQUEST_ERRORS.base,
            "FUSE requests answered with an error, by connection and opcode",
            None,
            MetricType::Counter,
        )?;
        for (r, l) in snap.requests.iter().zip(&labels) {
            m.encode_family(l)?
                .encode_counter::<NoLabelSet, _, u64>(&r.stats.errors, None)?;
        }

        let mut buckets = Vec::with_capacity(LAT_SLOTS.max(SIZE_SLOTS) + 1);
        let mut m = encoder.encode_descriptor(
            FUSE_REQUEST_DURATION.base,
            "Kernel-observed FUSE request latency, queue to reply (fuse_request_send to _end)",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (r, l) in snap.requests.iter().zip(&labels) {
            let count = histogram_buckets(&r.stats.lat_slots, 1e-9, &mut buckets);
            m.encode_family(l)?.encode_histogram::<NoLabelSet>(
                r.stats.lat_sum_ns as f64 * 1e-9,
                count,
                &buckets,
                None,
            )?;
        }
        let mut m = encoder.encode_descriptor(
            FUSE_REPLY_SIZE.base,
            "FUSE reply length (reply header len), by connection and opcode",
            Some(&Unit::Bytes),
            MetricType::Histogram,
        )?;
        for (r, l) in snap.requests.iter().zip(&labels) {
            let count = histogram_buckets(&r.stats.reply_slots, 1.0, &mut buckets);
            m.encode_family(l)?.encode_histogram::<NoLabelSet>(
                r.stats.reply_bytes_sum as f64,
                count,
                &buckets,
                None,
            )?;
        }

        encode_faults(&snap, &mut encoder, &mut buckets)?;

        let mut m = encoder.encode_descriptor(
            PROBE_ATTACHED.base,
            "1 if the probe is attached on this kernel, 0 if unavailable",
            None,
            MetricType::Gauge,
        )?;
        for s in &status {
            let kind = match s.kind {
                ProbeKind::Function => "none",
                k => k.as_str(),
            };
            let l = [
                ("probe", s.program),
                ("target", s.target.as_str()),
                ("kind", kind),
            ];
            let v: i64 = matches!(s.state, ProbeState::Attached).into();
            m.encode_family(&l)?.encode_gauge(&v)?;
        }
        let mut m = encoder.encode_descriptor(
            PROBE_EVENTS.base,
            "Probe health events: send/end seen, unmatched ends, full maps, filtered",
            None,
            MetricType::Counter,
        )?;
        for (i, name) in counters::NAMES.iter().enumerate() {
            m.encode_family(&[("event", *name)])?
                .encode_counter::<NoLabelSet, _, u64>(&snap.counters[i], None)?;
        }
        m.encode_family(&[("event", "inflight_expired")])?
            .encode_counter::<NoLabelSet, _, u64>(&snap.expired_inflight, None)?;

        let mut m = encoder.encode_descriptor(
            PROBE_RUNS.base,
            "Times each eBPF program ran (kernel BPF statistics, enabled while the daemon runs)",
            None,
            MetricType::Counter,
        )?;
        for p in &snap.programs {
            m.encode_family(&[("probe", p.program.as_str())])?
                .encode_counter::<NoLabelSet, _, u64>(&p.run_count, None)?;
        }
        let mut m = encoder.encode_descriptor(
            PROBE_RUN_TIME.base,
            "CPU time spent in each eBPF program (kernel BPF statistics)",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?;
        for p in &snap.programs {
            m.encode_family(&[("probe", p.program.as_str())])?
                .encode_counter::<NoLabelSet, _, f64>(&(p.run_time_ns as f64 * 1e-9), None)?;
        }
        let mut m = encoder.encode_descriptor(
            PROBE_RECURSION_MISSES.base,
            "Runs the kernel skipped because a BPF program was already running on that CPU (events the probe never saw)",
            None,
            MetricType::Counter,
        )?;
        for p in &snap.programs {
            m.encode_family(&[("probe", p.program.as_str())])?
                .encode_counter::<NoLabelSet, _, u64>(&p.recursion_misses, None)?;
        }
        Ok(())
    }
}

fn size_label(size: u8) -> &'static str {
    if size == fault::SIZE_PMD {
        "pmd"
    } else {
        "pte"
    }
}

fn result_label(result: u8) -> &'static str {
    match result {
        fault::RESULT_OK => "ok",
        fault::RESULT_FALLBACK => "fallback",
        _ => "error",
    }
}

/// DAX faults (by size and result, summed over files), page-cache faults per device, and the optional
/// kernel-function probes. Per-file series come from the join, not from here.
fn encode_faults(
    snap: &ProbeSnapshot,
    encoder: &mut DescriptorEncoder,
    buckets: &mut Vec<(f64, u64)>,
) -> Result<(), std::fmt::Error> {
    // Sum per (size, result) and per size for latency.
    let mut by_class = [[0u64; 3]; 2];
    let mut lat = [FaultStats::ZERO; 2];
    for r in &snap.faults {
        let (s, c) = fault_cell(&r.key);
        by_class[s][c] += r.stats.count;
        lat[s].count += r.stats.count;
        lat[s].lat_sum_ns += r.stats.lat_sum_ns;
        for (a, b) in lat[s].lat_slots.iter_mut().zip(r.stats.lat_slots.iter()) {
            *a += b;
        }
    }
    let mut m = encoder.encode_descriptor(
        DAX_FAULTS.base,
        "DAX page faults (fs_dax tracepoints) by size (pte = 4 KiB, pmd = 2 MiB) and result",
        None,
        MetricType::Counter,
    )?;
    for (s, row) in by_class.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            let l = [
                ("size", size_label(s as u8)),
                ("result", result_label(c as u8)),
            ];
            m.encode_family(&l)?
                .encode_counter::<NoLabelSet, _, u64>(v, None)?;
        }
    }
    let mut m = encoder.encode_descriptor(
        DAX_FAULT_DURATION.base,
        "DAX page fault latency (fault start to done) by size",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (s, st) in lat.iter().enumerate() {
        let count = histogram_buckets(&st.lat_slots, 1e-9, buckets);
        m.encode_family(&[("size", size_label(s as u8))])?
            .encode_histogram::<NoLabelSet>(st.lat_sum_ns as f64 * 1e-9, count, buckets, None)?;
    }
    let mut per_dev: Vec<(u32, u64)> = Vec::new();
    for (k, v) in &snap.filemap {
        match per_dev.last_mut() {
            Some((d, n)) if *d == k.dev => *n += v,
            _ => per_dev.push((k.dev, *v)),
        }
    }
    let mut m = encoder.encode_descriptor(
        PAGE_CACHE_FAULTS.base,
        "Page-cache faults (filemap:mm_filemap_fault) on FUSE and other anonymous-device filesystems, by device",
        None,
        MetricType::Counter,
    )?;
    for (dev, n) in &per_dev {
        let d = format!("{}:{}", dev >> 20, dev & 0xfffff);
        m.encode_family(&[("device", d.as_str())])?
            .encode_counter::<NoLabelSet, _, u64>(n, None)?;
    }
    let mut m = encoder.encode_descriptor(
        KERNEL_FUNCTION_CALLS.base,
        "Calls of famfs/FUSE/DAX kernel functions seen by the optional fentry or kprobe probes",
        None,
        MetricType::Counter,
    )?;
    for f in &snap.functions {
        m.encode_family(&[("function", f.function)])?
            .encode_counter::<NoLabelSet, _, u64>(&f.stats.calls, None)?;
    }
    let mut m = encoder.encode_descriptor(
        KERNEL_FUNCTION_DURATION.base,
        "Latency of famfs/FUSE/DAX kernel functions (entry to return)",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for f in &snap.functions {
        let count = histogram_buckets(&f.stats.lat_slots, 1e-9, buckets);
        m.encode_family(&[("function", f.function)])?
            .encode_histogram::<NoLabelSet>(
                f.stats.lat_sum_ns as f64 * 1e-9,
                count,
                buckets,
                None,
            )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_each_bucket_once_with_exact_bounds() {
        let mut slots = [0u64; 4];
        slots[0] = 1; // value 1
        slots[2] = 3; // values 4..=7
        slots[3] = 2; // open-ended
        let mut b = Vec::new();
        let total = histogram_buckets(&slots, 1.0, &mut b);
        assert_eq!(total, 6);
        assert_eq!(b, vec![(2.0, 1), (4.0, 0), (8.0, 3), (f64::INFINITY, 2)]);
    }

    /// What a scrape shows: cumulative `le` buckets whose +Inf equals `_count`.
    #[test]
    fn encoded_histogram_is_cumulative_once() {
        use prometheus_client::encoding::EncodeMetric;
        #[derive(Debug)]
        struct H(Vec<(f64, u64)>, u64);
        impl EncodeMetric for H {
            fn encode(
                &self,
                mut e: prometheus_client::encoding::MetricEncoder,
            ) -> Result<(), std::fmt::Error> {
                e.encode_histogram::<NoLabelSet>(1.5, self.1, &self.0, None)
            }
            fn metric_type(&self) -> MetricType {
                MetricType::Histogram
            }
        }
        let mut slots = [0u64; 4];
        slots[0] = 1;
        slots[2] = 3;
        slots[3] = 2;
        let mut b = Vec::new();
        let total = histogram_buckets(&slots, 1.0, &mut b);
        let mut reg = prometheus_client::registry::Registry::default();
        reg.register("h", "test", H(b, total));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        for want in [
            "h_count 6",
            "h_bucket{le=\"2.0\"} 1",
            "h_bucket{le=\"4.0\"} 1",
            "h_bucket{le=\"8.0\"} 4",
            "h_bucket{le=\"+Inf\"} 6",
        ] {
            assert!(text.lines().any(|l| l == want), "no {want:?} in:\n{text}");
        }
    }

    #[test]
    fn opcode_labels_are_bounded() {
        assert_eq!(opcode_label(14), "OPEN");
        assert_eq!(opcode_label(55), "op_55");
        assert_eq!(opcode_label(9999), "other");
    }
}
