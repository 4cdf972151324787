//! Probe health counters: one slot each in the per-CPU `COUNTERS` array.
//!
//! Kernel programs only ever increment these; user space sums the CPUs and exports them as
//! `famfs_probe_events_total{event=...}`. Adding a counter = a new index and a name in `NAMES`.

pub const SEND_EVENTS: u32 = 0;
pub const END_EVENTS: u32 = 1;
/// `fuse_request_end` with no matching in-flight entry (started before attach, or evicted).
pub const UNMATCHED_END: u32 = 2;
/// A send found its in-flight slot held by another request still in flight (or whose end was lost): that
/// entry is overwritten, so its end is counted unmatched and its latency lost.
pub const INFLIGHT_FULL: u32 = 3;
/// Events for connections outside the watch set (filter on).
pub const FILTERED: u32 = 4;
/// `fuse_request_send` carried `unique == 0` (kernel quirk seen on 6.12): paired by end time instead.
pub const SEND_UNIQUE_ZERO: u32 = 5;
/// Stats map full: a (connection, opcode) key could not be created.
pub const STATS_FULL: u32 = 6;

/// Ring buffer full: a per-event record was lost (its aggregate was still counted).
pub const RINGBUF_DROPS: u32 = 7;
/// A fault `_done` with no start of the same task (started before attach).
pub const UNMATCHED_FAULT: u32 = 8;
/// Fault start map full.
pub const FAULT_START_FULL: u32 = 9;
/// A kernel-function return with no entry of the same task.
pub const UNMATCHED_RETURN: u32 = 10;

pub const COUNT: u32 = 11;

/// Export names, indexed by counter slot.
pub const NAMES: [&str; COUNT as usize] = [
    "send",
    "end",
    "unmatched_end",
    "inflight_full",
    "filtered",
    "send_unique_zero",
    "stats_full",
    "ringbuf_drop",
    "unmatched_fault",
    "fault_start_full",
    "unmatched_return",
];
