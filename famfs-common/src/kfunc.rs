//! Optional kernel-function probes (fentry/fexit, else kprobe/kretprobe): call counts and latency of the
//! famfs open and fault paths. Each target has a fixed id (its index in [`TARGETS`]); stats are a per-CPU
//! array indexed by id, entry/exit paired per (task, id).

use crate::hist::LAT_SLOTS;

/// Kernel functions with optional probes, by id. Targets missing from a kernel are reported unavailable.
pub const TARGETS: [&str; 6] = [
    "fuse_open",
    "fuse_get_fmap",
    "famfs_filemap_fault",
    "famfs_filemap_huge_fault",
    "famfs_fuse_iomap_begin",
    "dax_iomap_fault",
];
pub const COUNT: u32 = TARGETS.len() as u32;

pub const FUSE_OPEN: u32 = 0;
pub const FUSE_GET_FMAP: u32 = 1;
pub const FAMFS_FILEMAP_FAULT: u32 = 2;
pub const FAMFS_FILEMAP_HUGE_FAULT: u32 = 3;
pub const FAMFS_FUSE_IOMAP_BEGIN: u32 = 4;
pub const DAX_IOMAP_FAULT: u32 = 5;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FnStats {
    pub calls: u64,
    /// Returns seen (paired with an entry of the same task).
    pub returns: u64,
    pub lat_sum_ns: u64,
    pub lat_slots: [u64; LAT_SLOTS],
}

impl FnStats {
    pub const ZERO: FnStats = FnStats {
        calls: 0,
        returns: 0,
        lat_sum_ns: 0,
        lat_slots: [0; LAT_SLOTS],
    };
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FnStartKey {
    pub tid: u32,
    pub func: u32,
}
