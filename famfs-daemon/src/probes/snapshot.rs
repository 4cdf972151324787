//! Reads the kernel aggregates into owned, CPU-summed snapshots. Called at scrape time (the
//! ebpf_exporter model): no per-event user-space work, and the cost scales with map size, not event rate.

use aya::maps::{PerCpuArray, PerCpuHashMap};
use famfs_common::{
    counters,
    fuse_request::{ReqKey, ReqStats},
    names,
};

use super::Probes;

/// One (connection, opcode) row, summed over CPUs.
#[derive(Clone, Copy, Debug)]
pub struct RequestRow {
    pub key: ReqKey,
    pub stats: ReqStats,
}

/// Run count and run time of one program, from the kernel's BPF statistics.
#[derive(Clone, Debug)]
pub struct ProgramCost {
    pub program: &'static str,
    pub run_count: u64,
    pub run_time_ns: u64,
}

#[derive(Clone, Debug, Default)]
pub struct ProbeSnapshot {
    pub requests: Vec<RequestRow>,
    pub counters: [u64; counters::COUNT as usize],
    pub programs: Vec<ProgramCost>,
    pub expired_inflight: u64,
}

pub(crate) fn add_stats(acc: &mut ReqStats, v: &ReqStats) {
    acc.sent += v.sent;
    acc.completed += v.completed;
    acc.errors += v.errors;
    acc.lat_sum_ns += v.lat_sum_ns;
    acc.reply_bytes_sum += v.reply_bytes_sum;
    for (a, b) in acc.lat_slots.iter_mut().zip(v.lat_slots.iter()) {
        *a += b;
    }
    for (a, b) in acc.reply_slots.iter_mut().zip(v.reply_slots.iter()) {
        *a += b;
    }
}

impl Probes {
    /// Read every aggregate map. Missing maps (probes not loaded) give an empty snapshot.
    pub fn snapshot(&self) -> ProbeSnapshot {
        let mut snap = ProbeSnapshot {
            expired_inflight: self.expired_inflight,
            ..Default::default()
        };
        let Some(ebpf) = self.ebpf.as_ref() else {
            return snap;
        };
        if let Some(Ok(m)) = ebpf
            .map(names::REQ_STATS)
            .map(PerCpuHashMap::<_, ReqKey, ReqStats>::try_from)
        {
            for (key, per_cpu) in m.iter().filter_map(Result::ok) {
                let mut stats = ReqStats::ZERO;
                for v in per_cpu.iter() {
                    add_stats(&mut stats, v);
                }
                snap.requests.push(RequestRow { key, stats });
            }
            snap.requests
                .sort_by_key(|r| (r.key.connection, r.key.opcode));
        }
        if let Some(Ok(m)) = ebpf
            .map(names::COUNTERS)
            .map(PerCpuArray::<_, u64>::try_from)
        {
            for i in 0..counters::COUNT {
                if let Ok(v) = m.get(&i, 0) {
                    snap.counters[i as usize] = v.iter().sum();
                }
            }
        }
        for s in self.status() {
            if s.state != super::ProbeState::Attached {
                continue;
            }
            let Some(prog) = ebpf.program(s.program) else {
                continue;
            };
            if let Ok(info) = prog.info() {
                snap.programs.push(ProgramCost {
                    program: s.program,
                    run_count: info.run_count(),
                    run_time_ns: info.run_time().as_nanos() as u64,
                });
            }
        }
        snap
    }
}
