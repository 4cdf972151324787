//! Page-fault probes. `fs_dax:dax_{pte,pmd}_fault` starts a fault for the current task; the matching
//! `_done` classifies the result and adds count, latency and reach to `FAULT_STATS[(dev, ino, size,
//! result, write)]`; slow faults go to `EVENTS`. `filemap:mm_filemap_fault` counts page-cache faults per
//! (dev, ino) in `FILEMAP_STATS`; each counted DAX fault also counts for the faulting process in
//! `FAULT_PROCS[(dev, ino, tgid)]` with its `comm` (with the filter off: only anonymous-device filesystems such as FUSE).
//! Must not touch the request or kernel-function maps.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use famfs_common::{
    counters,
    event::{Event, KIND_SLOW_FAULT},
    fault::{
        DaxOffsets, FAULT_FLAG_WRITE, FaultKey, FaultStart, FaultStats, FileKey, ProcFaultKey,
        ProcFaultStats, SIZE_PMD, SIZE_PTE, classify,
    },
    hist::{LAT_SLOTS, log2_slot},
};

use crate::{
    filter::{atomic_add, bump, connection_wanted, filtering, now_ns, read, tid_tgid},
    maps::{
        DAX_PMD_OFFSETS, DAX_PTE_OFFSETS, EVENTS, FAULT_PROCS, FAULT_START, FAULT_STATS,
        FILEMAP_OFFSETS, FILEMAP_STATS, SLOW_FAULT_NS, ZERO_FAULT, global,
    },
};

const BPF_NOEXIST: u64 = 1;

#[inline(always)]
fn fault_start(ctx: &TracePointContext, off: DaxOffsets, size: u8) -> u32 {
    let (Some(ino), Some(dev)) = (read::<u64>(ctx, off.ino), read::<u32>(ctx, off.dev)) else {
        return 0;
    };
    if !connection_wanted(dev) {
        bump(counters::FILTERED);
        return 0;
    }
    let start = FaultStart {
        start_ns: now_ns(),
        ino,
        dev,
        size,
        _pad: [0; 3],
    };
    if FAULT_START.insert(tid_tgid().0, start, 0).is_err() {
        bump(counters::FAULT_START_FULL);
    }
    0
}

#[inline(always)]
fn fault_done(ctx: &TracePointContext, off: DaxOffsets, size: u8) -> u32 {
    let (Some(ino), Some(dev), Some(pgoff), Some(flags), Some(result)) = (
        read::<u64>(ctx, off.ino),
        read::<u32>(ctx, off.dev),
        read::<u64>(ctx, off.pgoff),
        read::<u32>(ctx, off.flags),
        read::<i32>(ctx, off.result),
    ) else {
        return 0;
    };
    if !connection_wanted(dev) {
        return 0;
    }
    let (tid, tgid) = tid_tgid();
    let now = now_ns();
    let lat = match FAULT_START.get_ptr(tid) {
        // SAFETY: pointer from a successful lookup, read before the remove below.
        Some(p) => unsafe {
            let s = *p;
            if s.dev == dev && s.ino == ino && s.size == size {
                Some(now.saturating_sub(s.start_ns))
            } else {
                None
            }
        },
        None => None,
    };
    // Err: no start was recorded for this task; counted as unmatched just below.
    let _ = FAULT_START.remove(tid);
    let Some(lat) = lat else {
        bump(counters::UNMATCHED_FAULT);
        return 0;
    };
    let class = classify(result);
    let key = FaultKey {
        dev,
        size,
        result: class,
        write: (flags & FAULT_FLAG_WRITE != 0) as u8,
        _pad: 0,
        ino,
    };
    let row = match FAULT_STATS.get_ptr_mut(key) {
        Some(p) => p,
        None => {
            let Some(zero) = ZERO_FAULT.get_ptr(0) else {
                return 0;
            };
            // SAFETY: `zero` points at a map value of the right type; the helper copies from it. A
            // reference, not a copy: the value is larger than what the BPF stack may hold.
            let zero: &FaultStats = unsafe { &*zero };
            // Err: another CPU created the row first (or the map is full); the lookup below decides.
            let _ = FAULT_STATS.insert(key, zero, BPF_NOEXIST);
            let Some(p) = FAULT_STATS.get_ptr_mut(key) else {
                return 0;
            };
            p
        }
    };
    // SAFETY: `row` points at a live map value; fields are updated with atomic adds (shared by CPUs);
    // the slot index is clamped below LAT_SLOTS.
    unsafe {
        atomic_add(&raw mut (*row).count, 1);
        atomic_add(&raw mut (*row).lat_sum_ns, lat);
        let slot = log2_slot(lat, LAT_SLOTS);
        if slot < LAT_SLOTS {
            atomic_add(&raw mut (*row).lat_slots[slot], 1);
        }
        // Reach: a racy max is fine (monotone, approximate under concurrency).
        if pgoff + 1 > (*row).max_pgoff {
            (*row).max_pgoff = pgoff + 1;
        }
    }
    count_process(dev, ino, tgid);
    if lat >= global(&SLOW_FAULT_NS) {
        let ev = Event {
            kind: KIND_SLOW_FAULT,
            conn: dev,
            id: ino,
            ts_ns: now,
            lat_ns: lat,
            aux: pgoff,
            op: size as u32,
            len: class as u32,
            error: result,
            pid: tgid,
        };
        if EVENTS.output::<Event>(&ev, 0).is_err() {
            bump(counters::RINGBUF_DROPS);
        }
    }
    0
}

/// One DAX fault of the current process on (dev, ino), with its name.
#[inline(always)]
fn count_process(dev: u32, ino: u64, tgid: u32) {
    let key = ProcFaultKey { dev, tgid, ino };
    let comm = aya_ebpf::helpers::bpf_get_current_comm().unwrap_or([0; 16]);
    match FAULT_PROCS.get_ptr_mut(key) {
        // SAFETY: `p` points at a live map value; the count is updated with an atomic add, the name
        // written whole (a racing writer is the same process).
        Some(p) => unsafe {
            atomic_add(&raw mut (*p).count, 1);
            (*p).comm = comm;
        },
        None => {
            let row = ProcFaultStats { count: 1, comm };
            // Lost the race to create the entry: count on the one another CPU made.
            if FAULT_PROCS.insert(key, row, BPF_NOEXIST).is_err()
                && let Some(p) = FAULT_PROCS.get_ptr_mut(key)
            {
                // SAFETY: as above.
                unsafe { atomic_add(&raw mut (*p).count, 1) };
            }
        }
    }
}

#[tracepoint]
pub fn dax_pte_fault(ctx: TracePointContext) -> u32 {
    fault_start(&ctx, global(&DAX_PTE_OFFSETS), SIZE_PTE)
}

#[tracepoint]
pub fn dax_pte_fault_done(ctx: TracePointContext) -> u32 {
    fault_done(&ctx, global(&DAX_PTE_OFFSETS), SIZE_PTE)
}

#[tracepoint]
pub fn dax_pmd_fault(ctx: TracePointContext) -> u32 {
    fault_start(&ctx, global(&DAX_PMD_OFFSETS), SIZE_PMD)
}

#[tracepoint]
pub fn dax_pmd_fault_done(ctx: TracePointContext) -> u32 {
    fault_done(&ctx, global(&DAX_PMD_OFFSETS), SIZE_PMD)
}

#[tracepoint]
pub fn mm_filemap_fault(ctx: TracePointContext) -> u32 {
    let off = global(&FILEMAP_OFFSETS);
    let (Some(ino), Some(dev)) = (read::<u64>(&ctx, off.ino), read::<u32>(&ctx, off.dev)) else {
        return 0;
    };
    if filtering() {
        if !connection_wanted(dev) {
            return 0;
        }
    } else if dev >> 20 != 0 {
        // Filter off: only anonymous-device superblocks (FUSE among them), not every disk filesystem.
        return 0;
    }
    let key = FileKey { dev, _pad: 0, ino };
    match FILEMAP_STATS.get_ptr_mut(key) {
        Some(p) => atomic_add(p, 1),
        None => {
            // Lost the race to create the entry: count on the one another CPU made.
            if FILEMAP_STATS.insert(key, 1u64, BPF_NOEXIST).is_err()
                && let Some(p) = FILEMAP_STATS.get_ptr_mut(key)
            {
                atomic_add(p, 1);
            }
        }
    }
    0
}
