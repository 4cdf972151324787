//! Every map and load-time global of the eBPF object. Sizes here are defaults; the daemon resizes the
//! maps at load time (`EbpfLoader::set_max_entries`) and fills the globals (`set_global`).

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray, PerCpuHashMap},
};
use famfs_common::{
    counters,
    fuse_request::{FILTER_ALL, Inflight, InflightKey, ReqKey, ReqStats, TpOffsets},
};

/// Per (connection, opcode) request aggregates.
#[map]
pub static REQ_STATS: PerCpuHashMap<ReqKey, ReqStats> = PerCpuHashMap::with_max_entries(1024, 0);

/// Requests between `fuse_request_send` and `fuse_request_end`. Bounded; full = counted drop.
#[map]
pub static INFLIGHT: HashMap<InflightKey, Inflight> = HashMap::with_max_entries(16384, 0);

/// Health counters, see `famfs_common::counters`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counters::COUNT, 0);

/// FUSE connections to trace when `FILTER_MODE == FILTER_WATCHED`.
#[map]
pub static WATCH_CONN: HashMap<u32, u32> = HashMap::with_max_entries(64, 0);

/// A zeroed `ReqStats` to insert from: the value is larger than what the BPF stack may hold.
#[map]
pub static ZERO_STATS: PerCpuArray<ReqStats> = PerCpuArray::with_max_entries(1, 0);

#[unsafe(no_mangle)]
pub static FILTER_MODE: u32 = FILTER_ALL;

#[unsafe(no_mangle)]
pub static TP_OFFSETS: TpOffsets = TpOffsets::LINUX_6_18;

/// Read a load-time global. Volatile, so the compiler cannot fold the default value in.
#[inline(always)]
pub fn global<T: Copy>(g: &'static T) -> T {
    // SAFETY: `g` is a valid, aligned static; the loader rewrites it before load and nothing writes it after.
    unsafe { core::ptr::read_volatile(g) }
}
