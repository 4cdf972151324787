//! Optional kernel-function probes on the famfs open and fault paths. Each target gets four programs
//! (fentry, fexit, kprobe, kretprobe); user space attaches fentry/fexit where the kernel allows, else
//! kprobe/kretprobe, else reports the target unavailable. Entry and return pair per (task, target id).
//! Touches only `FN_STATS`, `FN_START` and the health counters.

use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use famfs_common::{
    counters,
    hist::{LAT_SLOTS, log2_slot},
    kfunc::{self, FnStartKey},
};

use crate::{
    filter::{bump, now_ns, tid_tgid},
    maps::{FN_START, FN_STATS},
};

#[inline(always)]
fn enter(func: u32) -> u32 {
    let key = FnStartKey {
        tid: tid_tgid().0,
        func,
    };
    // Err: no start recorded (the LRU map normally evicts instead); the return counts as unmatched.
    let _ = FN_START.insert(key, now_ns(), 0);
    if let Some(s) = FN_STATS.get_ptr_mut(func) {
        // SAFETY: per-CPU value of this CPU.
        unsafe { (*s).calls += 1 };
    }
    0
}

#[inline(always)]
fn exit(func: u32) -> u32 {
    let key = FnStartKey {
        tid: tid_tgid().0,
        func,
    };
    let Some(start) = FN_START.get_ptr(key) else {
        bump(counters::UNMATCHED_RETURN);
        return 0;
    };
    // SAFETY: pointer from a successful lookup, read before the remove.
    let lat = now_ns().saturating_sub(unsafe { *start });
    // Err: a concurrent remove of the same (task, id) entry; the latency was taken already.
    let _ = FN_START.remove(key);
    if let Some(s) = FN_STATS.get_ptr_mut(func) {
        // SAFETY: per-CPU value of this CPU; slot clamped below LAT_SLOTS.
        unsafe {
            (*s).returns += 1;
            (*s).lat_sum_ns += lat;
            let slot = log2_slot(lat, LAT_SLOTS);
            if slot < LAT_SLOTS {
                (*s).lat_slots[slot] += 1;
            }
        }
    }
    0
}

macro_rules! kfunc_programs {
    ($id:expr, $fentry:ident, $fexit:ident, $kprobe:ident, $kretprobe:ident) => {
        #[fentry]
        pub fn $fentry(_ctx: FEntryContext) -> u32 {
            enter($id)
        }
        #[fexit]
        pub fn $fexit(_ctx: FExitContext) -> u32 {
            exit($id)
        }
        #[kprobe]
        pub fn $kprobe(_ctx: ProbeContext) -> u32 {
            enter($id)
        }
        #[kretprobe]
        pub fn $kretprobe(_ctx: RetProbeContext) -> u32 {
            exit($id)
        }
    };
}

kfunc_programs!(
    kfunc::FUSE_OPEN,
    fentry_fuse_open,
    fexit_fuse_open,
    kprobe_fuse_open,
    kretprobe_fuse_open
);
kfunc_programs!(
    kfunc::FUSE_GET_FMAP,
    fentry_fuse_get_fmap,
    fexit_fuse_get_fmap,
    kprobe_fuse_get_fmap,
    kretprobe_fuse_get_fmap
);
kfunc_programs!(
    kfunc::FAMFS_FILEMAP_FAULT,
    fentry_famfs_filemap_fault,
    fexit_famfs_filemap_fault,
    kprobe_famfs_filemap_fault,
    kretprobe_famfs_filemap_fault
);
kfunc_programs!(
    kfunc::FAMFS_FILEMAP_HUGE_FAULT,
    fentry_famfs_filemap_huge_fault,
    fexit_famfs_filemap_huge_fault,
    kprobe_famfs_filemap_huge_fault,
    kretprobe_famfs_filemap_huge_fault
);
kfunc_programs!(
    kfunc::FAMFS_FUSE_IOMAP_BEGIN,
    fentry_famfs_fuse_iomap_begin,
    fexit_famfs_fuse_iomap_begin,
    kprobe_famfs_fuse_iomap_begin,
    kretprobe_famfs_fuse_iomap_begin
);
kfunc_programs!(
    kfunc::DAX_IOMAP_FAULT,
    fentry_dax_iomap_fault,
    fexit_dax_iomap_fault,
    kprobe_dax_iomap_fault,
    kretprobe_dax_iomap_fault
);
