//! Reads the kernel aggregates into owned, CPU-summed snapshots. Called at scrape time (the
//! ebpf_exporter model): no per-event user-space work, and the cost scales with map size, not event rate.

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, PerCpuArray, PerCpuHashMap},
};
use famfs_common::{
    counters,
    fault::{FaultKey, FaultStats, FileKey, ProcFaultKey, ProcFaultStats},
    fuse_request::{ReqKey, ReqStats, STATS_OPCODES, stats_index},
    kfunc::{self, FnStats},
    names,
};

use super::{ProbeState, Probes};

/// One (connection, opcode) row, summed over CPUs.
#[derive(Clone, Copy, Debug)]
pub struct RequestRow {
    pub key: ReqKey,
    pub stats: ReqStats,
}

/// One (dev, ino, size, result, write) DAX fault row.
#[derive(Clone, Copy, Debug)]
pub struct FaultRow {
    pub key: FaultKey,
    pub stats: FaultStats,
}

/// One optional kernel-function row, summed over CPUs.
#[derive(Clone, Copy, Debug)]
pub struct FnRow {
    pub function: &'static str,
    pub stats: FnStats,
}

/// Run count and run time of one program, from the kernel's BPF statistics.
#[derive(Clone, Debug)]
pub struct ProgramCost {
    pub program: String,
    pub run_count: u64,
    pub run_time_ns: u64,
    /// Runs the kernel skipped because a BPF program was already running on that CPU (another program
    /// of ours, or someone else's): events this probe never saw. From the program's fdinfo.
    pub recursion_misses: u64,
}

/// `recursion_misses` of a loaded program, from /proc/self/fdinfo (the kernel prints it there; the
/// aya program info does not carry it). 0 when the kernel does not report it.
fn recursion_misses(prog: &aya::programs::Program) -> u64 {
    use std::os::fd::{AsFd, AsRawFd};
    let Ok(fd) = prog.fd() else {
        return 0;
    };
    let path = format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd());
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("recursion_misses:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[derive(Clone, Debug, Default)]
pub struct ProbeSnapshot {
    pub requests: Vec<RequestRow>,
    pub faults: Vec<FaultRow>,
    /// Page-cache faults per (dev, ino).
    pub filemap: Vec<(FileKey, u64)>,
    /// DAX faults per (dev, ino, process), with the process's name.
    pub fault_procs: Vec<(ProcFaultKey, ProcFaultStats)>,
    pub functions: Vec<FnRow>,
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

/// Add the `REQ_SLOTS` rows of every watched connection with a stats slot to `rows` (merged with a
/// row of the same key, if the hash has one).
fn add_slot_rows(ebpf: &Ebpf, rows: &mut Vec<RequestRow>) {
    let (Some(Ok(watch)), Some(Ok(slots))) = (
        ebpf.map(names::WATCH_CONN)
            .map(BpfHashMap::<_, u32, u32>::try_from),
        ebpf.map(names::REQ_SLOTS)
            .map(PerCpuArray::<_, ReqStats>::try_from),
    ) else {
        return;
    };
    for (connection, slot) in watch.iter().filter_map(Result::ok) {
        for opcode in 0..STATS_OPCODES {
            let Some(i) = stats_index(slot, opcode) else {
                break;
            };
            let Ok(per_cpu) = slots.get(&i, 0) else {
                continue;
            };
            let mut stats = ReqStats::ZERO;
            for v in per_cpu.iter() {
                add_stats(&mut stats, v);
            }
            if stats.sent == 0 && stats.completed == 0 {
                continue;
            }
            let key = ReqKey { connection, opcode };
            match rows.iter_mut().find(|r| r.key == key) {
                Some(r) => add_stats(&mut r.stats, &stats),
                None => rows.push(RequestRow { key, stats }),
            }
        }
    }
}

fn add_fn(acc: &mut FnStats, v: &FnStats) {
    acc.calls += v.calls;
    acc.returns += v.returns;
    acc.lat_sum_ns += v.lat_sum_ns;
    for (a, b) in acc.lat_slots.iter_mut().zip(v.lat_slots.iter()) {
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
        }
        add_slot_rows(ebpf, &mut snap.requests);
        snap.requests
            .sort_by_key(|r| (r.key.connection, r.key.opcode));
        if let Some(Ok(m)) = ebpf
            .map(names::FAULT_STATS)
            .map(BpfHashMap::<_, FaultKey, FaultStats>::try_from)
        {
            snap.faults = m
                .iter()
                .filter_map(Result::ok)
                .map(|(key, stats)| FaultRow { key, stats })
                .collect();
            snap.faults
                .sort_by_key(|r| (r.key.dev, r.key.ino, r.key.size, r.key.result, r.key.write));
        }
        if let Some(Ok(m)) = ebpf
            .map(names::FAULT_PROCS)
            .map(BpfHashMap::<_, ProcFaultKey, ProcFaultStats>::try_from)
        {
            snap.fault_procs = m.iter().filter_map(Result::ok).collect();
            snap.fault_procs
                .sort_by_key(|(k, _)| (k.dev, k.ino, k.tgid));
        }
        if let Some(Ok(m)) = ebpf
            .map(names::FILEMAP_STATS)
            .map(BpfHashMap::<_, FileKey, u64>::try_from)
        {
            snap.filemap = m.iter().filter_map(Result::ok).collect();
            snap.filemap.sort_by_key(|(k, _)| (k.dev, k.ino));
        }
        if let Some(Ok(m)) = ebpf
            .map(names::FN_STATS)
            .map(PerCpuArray::<_, FnStats>::try_from)
        {
            for (i, f) in kfunc::TARGETS.iter().enumerate() {
                if !self.attached(f) {
                    continue;
                }
                if let Ok(v) = m.get(&(i as u32), 0) {
                    let mut stats = FnStats::ZERO;
                    for s in v.iter() {
                        add_fn(&mut stats, s);
                    }
                    snap.functions.push(FnRow { function: f, stats });
                }
            }
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
            if s.state != ProbeState::Attached {
                continue;
            }
            let progs = super::attach::object_programs(s);
            for (name, label) in progs {
                let Some(prog) = ebpf.program(&name) else {
                    continue;
                };
                if let Ok(info) = prog.info() {
                    snap.programs.push(ProgramCost {
                        program: label,
                        run_count: info.run_count(),
                        run_time_ns: info.run_time().as_nanos() as u64,
                        recursion_misses: recursion_misses(prog),
                    });
                }
            }
        }
        snap
    }
}
