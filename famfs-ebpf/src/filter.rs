//! Connection/device filter, health counters, and small shared helpers. Owns no maps (they live in
//! `maps`); only decisions and arithmetic.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::programs::TracePointContext;
use famfs_common::fuse_request::{FILTER_WATCHED, STATS_SLOTS};

use crate::maps::{COUNTERS, FILTER_MODE, WATCH_CONN, WATCH_LIST, global};

/// Increment health counter `idx` on this CPU.
#[inline(always)]
pub fn bump(idx: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(idx) {
        // SAFETY: per-CPU slot of this CPU; BPF programs on one CPU do not preempt each other here.
        unsafe { *p += 1 };
    }
}

/// Whether events of FUSE connection (or device) `conn` are traced.
#[inline(always)]
pub fn connection_wanted(conn: u32) -> bool {
    watched_slot(conn).is_some()
}

/// None when connection `conn` is filtered out; else its stats slot (its `WATCH_CONN` value; 0 without
/// a filter or a slot: the hash path).
#[inline(always)]
pub fn watched_slot(conn: u32) -> Option<u32> {
    if global(&FILTER_MODE) != FILTER_WATCHED {
        return Some(0);
    }
    let list = WATCH_LIST.get_ptr(0)?;
    // SAFETY: the array's one value, read in place.
    let list = unsafe { &*list };
    if conn != 0 {
        for i in 0..STATS_SLOTS as usize {
            if list.conns[i] == conn {
                return Some(i as u32 + 1);
            }
        }
    }
    if list.overflow == 0 {
        return None;
    }
    // SAFETY: a map value pointer from a successful lookup, read at once.
    WATCH_CONN.get_ptr(conn).map(|p| unsafe { *p })
}

/// Whether the filter is on (only watched connections/devices are traced).
#[inline(always)]
pub fn filtering() -> bool {
    global(&FILTER_MODE) == FILTER_WATCHED
}

/// Atomically add `v` to a u64 in a shared (non-per-CPU) map value.
#[inline(always)]
pub fn atomic_add(p: *mut u64, v: u64) {
    // SAFETY: `p` points into a live map value (8-byte aligned u64 field); BPF atomics are valid on it.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, v) };
}

/// Read a tracepoint field at a load-time offset.
#[inline(always)]
pub fn read<T>(ctx: &TracePointContext, off: u32) -> Option<T> {
    // SAFETY: `read_at` uses bpf_probe_read_kernel on the tracepoint record; a bad offset yields Err, not UB.
    unsafe { ctx.read_at::<T>(off as usize) }.ok()
}

/// Current task id (thread) and thread-group id.
#[inline(always)]
pub fn tid_tgid() -> (u32, u32) {
    let v = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    (v as u32, (v >> 32) as u32)
}

#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: plain helper call, no arguments.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() }
}
