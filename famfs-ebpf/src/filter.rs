//! Connection filter and health counters. Owns no maps (they live in `maps`); only the decisions.

use famfs_common::fuse_request::FILTER_WATCHED;

use crate::maps::{COUNTERS, FILTER_MODE, WATCH_CONN, global};

/// Increment health counter `idx` on this CPU.
#[inline(always)]
pub fn bump(idx: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(idx) {
        // SAFETY: per-CPU slot of this CPU; BPF programs on one CPU do not preempt each other here.
        unsafe { *p += 1 };
    }
}

/// Whether events of FUSE connection `conn` are traced.
#[inline(always)]
pub fn connection_wanted(conn: u32) -> bool {
    if global(&FILTER_MODE) != FILTER_WATCHED {
        return true;
    }
    WATCH_CONN.get_ptr(conn).is_some()
}
