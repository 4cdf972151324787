//! Shapes for the page-fault probes: `fs_dax:dax_{pte,pmd}_fault[_done]` (direct access) and
//! `filemap:mm_filemap_fault` (page cache, the stock-kernel FUSE path).
//!
//! Fault start and done are paired per task in `FAULT_START`; per-file aggregates live in LRU maps keyed
//! by (dev, ino), so memory is bounded however many files are touched. `dev` is the kernel's dev_t
//! encoding (`major << 20 | minor`); for a FUSE mount it equals the FUSE connection number.

use crate::hist::LAT_SLOTS;

/// Fault size: one 4 KiB page (PTE) or one 2 MiB huge page (PMD).
pub const SIZE_PTE: u8 = 0;
pub const SIZE_PMD: u8 = 1;

/// Outcome class of a fault, from the `result` (VM_FAULT_*) of the `_done` event.
pub const RESULT_OK: u8 = 0;
/// VM_FAULT_FALLBACK: a huge mapping was refused; the kernel retries with PTE faults.
pub const RESULT_FALLBACK: u8 = 1;
/// SIGBUS, SIGSEGV, OOM or HWPOISON.
pub const RESULT_ERROR: u8 = 2;

pub const VM_FAULT_OOM: i32 = 0x1;
pub const VM_FAULT_SIGBUS: i32 = 0x2;
pub const VM_FAULT_HWPOISON: i32 = 0x10;
pub const VM_FAULT_HWPOISON_LARGE: i32 = 0x20;
pub const VM_FAULT_SIGSEGV: i32 = 0x40;
pub const VM_FAULT_FALLBACK: i32 = 0x800;

/// Classify a VM_FAULT_* result.
#[inline(always)]
pub fn classify(result: i32) -> u8 {
    if result & VM_FAULT_FALLBACK != 0 {
        RESULT_FALLBACK
    } else if result
        & (VM_FAULT_OOM
            | VM_FAULT_SIGBUS
            | VM_FAULT_HWPOISON
            | VM_FAULT_HWPOISON_LARGE
            | VM_FAULT_SIGSEGV)
        != 0
    {
        RESULT_ERROR
    } else {
        RESULT_OK
    }
}

/// Per-file DAX fault aggregate key.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FaultKey {
    pub dev: u32,
    pub size: u8,
    pub result: u8,
    /// 1 for write faults (FAULT_FLAG_WRITE).
    pub write: u8,
    pub _pad: u8,
    pub ino: u64,
}

/// Per-file DAX fault aggregate; updated with atomic adds (the map is shared by all CPUs).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FaultStats {
    pub count: u64,
    pub lat_sum_ns: u64,
    /// Highest page offset seen + 1 (how far into the file faults reached).
    pub max_pgoff: u64,
    pub lat_slots: [u64; LAT_SLOTS],
}

impl FaultStats {
    pub const ZERO: FaultStats = FaultStats {
        count: 0,
        lat_sum_ns: 0,
        max_pgoff: 0,
        lat_slots: [0; LAT_SLOTS],
    };
}

/// What the start event leaves for the done event of the same task.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FaultStart {
    pub start_ns: u64,
    pub ino: u64,
    pub dev: u32,
    pub size: u8,
    pub _pad: [u8; 3],
}

/// (dev, ino) key for the page-cache fault counter.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FileKey {
    pub dev: u32,
    pub _pad: u32,
    pub ino: u64,
}

/// (dev, ino, process) key of the per-process DAX fault counter: which process (thread group) faulted
/// on which file.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ProcFaultKey {
    pub dev: u32,
    pub tgid: u32,
    pub ino: u64,
}

/// DAX faults of one process on one file (every size and result), and the faulting task's name as the
/// kernel saw it (`comm`, NUL-padded) at its last fault, so the name outlives the process.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ProcFaultStats {
    pub count: u64,
    pub comm: [u8; 16],
}

/// Field offsets of one fs_dax event layout (the PTE and PMD events differ).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DaxOffsets {
    pub ino: u32,
    pub pgoff: u32,
    pub dev: u32,
    pub flags: u32,
    pub result: u32,
    pub _pad: u32,
}

impl DaxOffsets {
    pub const PTE_6_18: DaxOffsets = DaxOffsets {
        ino: 8,
        pgoff: 32,
        dev: 40,
        flags: 44,
        result: 48,
        _pad: 0,
    };
    pub const PMD_6_18: DaxOffsets = DaxOffsets {
        ino: 8,
        pgoff: 48,
        dev: 64,
        flags: 68,
        result: 72,
        _pad: 0,
    };
}

/// Field offsets of `filemap:mm_filemap_fault`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilemapOffsets {
    pub ino: u32,
    pub dev: u32,
    pub index: u32,
    pub _pad: u32,
}

impl FilemapOffsets {
    pub const LINUX_6_18: FilemapOffsets = FilemapOffsets {
        ino: 8,
        dev: 16,
        index: 24,
        _pad: 0,
    };
}

pub const FAULT_FLAG_WRITE: u32 = 0x1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_results() {
        assert_eq!(classify(0x100), RESULT_OK);
        assert_eq!(classify(0), RESULT_OK);
        assert_eq!(classify(0x800), RESULT_FALLBACK);
        assert_eq!(classify(0x2), RESULT_ERROR);
        assert_eq!(classify(0x10 | 0x100), RESULT_ERROR);
    }
}
