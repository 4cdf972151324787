//! Every map and load-time global of the eBPF object. Sizes here are defaults; the daemon resizes the
//! maps at load time (`EbpfLoader::map_max_entries`) and fills the globals (`override_global`).
//! Holds no program logic; map names must match `famfs_common::names`.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use famfs_common::{
    counters,
    fault::{
        DaxOffsets, FaultKey, FaultStart, FaultStats, FileKey, FilemapOffsets, ProcFaultKey,
        ProcFaultStats,
    },
    fuse_request::{
        FILTER_ALL, Inflight, ReqKey, ReqOffsets, ReqStats, STATS_OPCODES, STATS_SLOTS, TpOffsets,
        WatchList,
    },
    kfunc::{self, FnStartKey, FnStats},
};

/// Per (connection, opcode) request aggregates of connections without a stats slot (no filter, more
/// watched connections than slots, opcodes past `STATS_OPCODES`).
#[map]
pub static REQ_STATS: PerCpuHashMap<ReqKey, ReqStats> = PerCpuHashMap::with_max_entries(1024, 0);

/// Per (stats slot, opcode) request aggregates of watched connections (`stats_index`): an array, whose
/// lookups the verifier inlines (no hashing, no locking).
#[map]
pub static REQ_SLOTS: PerCpuArray<ReqStats> =
    PerCpuArray::with_max_entries(STATS_SLOTS * STATS_OPCODES, 0);

/// Requests between `fuse_request_send` and `fuse_request_end`, in the slot `inflight_index` gives their
/// pairing key; the end checks the key stored there. Resized to a power of two at load (`INFLIGHT_MASK`).
/// A send that finds its slot still taken overwrites it (counted `INFLIGHT_FULL`).
#[map]
pub static INFLIGHT: Array<Inflight> = Array::with_max_entries(16384, 0);

/// Health counters, see `famfs_common::counters`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counters::COUNT, 0);

/// FUSE connections (= device numbers of their superblocks) to trace when `FILTER_MODE == FILTER_WATCHED`.
#[map]
pub static WATCH_CONN: HashMap<u32, u32> = HashMap::with_max_entries(64, 0);

/// The watched connections with a stats slot (index 0 only): scanned instead of hashing into
/// `WATCH_CONN`, which is consulted only after a connection was watched without a slot.
#[map]
pub static WATCH_LIST: Array<WatchList> = Array::with_max_entries(1, 0);

/// Zeroed values to insert from: these values are larger than what the BPF stack may hold.
#[map]
pub static ZERO_STATS: PerCpuArray<ReqStats> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static ZERO_FAULT: PerCpuArray<FaultStats> = PerCpuArray::with_max_entries(1, 0);

/// DAX fault start, per task, until its `_done`. LRU: a start whose done was never seen ages out.
#[map]
pub static FAULT_START: LruHashMap<u32, FaultStart> = LruHashMap::with_max_entries(4096, 0);

/// Per (dev, ino, size, result, write) DAX fault aggregates; LRU so it is bounded by file count.
#[map]
pub static FAULT_STATS: LruHashMap<FaultKey, FaultStats> = LruHashMap::with_max_entries(8192, 0);

/// DAX faults per (dev, ino, process) and the process's name; LRU, bounded like the per-file maps.
#[map]
pub static FAULT_PROCS: LruHashMap<ProcFaultKey, ProcFaultStats> =
    LruHashMap::with_max_entries(8192, 0);

/// Page-cache faults per (dev, ino); LRU.
#[map]
pub static FILEMAP_STATS: LruHashMap<FileKey, u64> = LruHashMap::with_max_entries(8192, 0);

/// Optional kernel-function probes: stats by target id, entry time per (task, id).
#[map]
pub static FN_STATS: PerCpuArray<FnStats> = PerCpuArray::with_max_entries(kfunc::COUNT, 0);
/// LRU: a kretprobe can miss returns (instance pool exhausted), which would otherwise leak entries.
#[map]
pub static FN_START: LruHashMap<FnStartKey, u64> = LruHashMap::with_max_entries(4096, 0);

/// Per-event records for the join (see `famfs_common::event`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

#[unsafe(no_mangle)]
pub static FILTER_MODE: u32 = FILTER_ALL;
/// `INFLIGHT`'s size − 1 (the size is a power of two).
#[unsafe(no_mangle)]
pub static INFLIGHT_MASK: u32 = 16383;
#[unsafe(no_mangle)]
pub static TP_OFFSETS: TpOffsets = TpOffsets::LINUX_6_18;
/// `struct fuse_req` field offsets for the raw-tracepoint request probes (from kernel BTF at load time).
#[unsafe(no_mangle)]
pub static REQ_OFFSETS: ReqOffsets = ReqOffsets {
    in_unique: 0,
    in_opcode: 0,
    in_len: 0,
    out_error: 0,
    out_len: 0,
    req_fm: 0,
    fm_fc: 0,
    fc_dev: 0,
};
#[unsafe(no_mangle)]
pub static DAX_PTE_OFFSETS: DaxOffsets = DaxOffsets::PTE_6_18;
#[unsafe(no_mangle)]
pub static DAX_PMD_OFFSETS: DaxOffsets = DaxOffsets::PMD_6_18;
#[unsafe(no_mangle)]
pub static FILEMAP_OFFSETS: FilemapOffsets = FilemapOffsets::LINUX_6_18;
/// famfs GET_FMAP opcode on the watched connections (0: none negotiated). OPEN and this opcode are
/// reported one by one through `EVENTS`.
#[unsafe(no_mangle)]
pub static FMAP_OPCODE: u32 = 0;
/// DAX faults slower than this are reported one by one through `EVENTS`.
#[unsafe(no_mangle)]
pub static SLOW_FAULT_NS: u64 = 1_000_000;

/// Read a load-time global. Volatile, so the compiler cannot fold the default value in.
#[inline(always)]
pub fn global<T: Copy>(g: &'static T) -> T {
    // SAFETY: `g` is a valid, aligned static; the loader rewrites it before load and nothing writes it after.
    unsafe { core::ptr::read_volatile(g) }
}
