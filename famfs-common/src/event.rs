//! Per-event records sent through the `EVENTS` ring buffer: the few events the join needs one by one
//! (OPEN and GET_FMAP completions, unmatched request ends, slow faults). Everything high-rate is
//! aggregated in maps instead. Drops (ring full) are counted in `counters::RINGBUF_DROPS`.

/// A `fuse_request_end` for OPEN or the famfs GET_FMAP opcode: `conn`, `id` = unique, `lat_ns`.
pub const KIND_REQ_END: u32 = 1;
/// A `fuse_request_end` with no in-flight entry on a watched connection (e.g. the unique-0 send quirk):
/// the join pairs it with the server's own record of the same unique.
pub const KIND_REQ_END_UNMATCHED: u32 = 2;
/// A DAX fault slower than the configured threshold: `conn` = dev, `id` = ino, `aux` = pgoff.
pub const KIND_SLOW_FAULT: u32 = 3;

/// 56 bytes, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub kind: u32,
    /// FUSE connection, or device for fault events.
    pub conn: u32,
    /// FUSE unique, or inode for fault events.
    pub id: u64,
    /// CLOCK_MONOTONIC time of the event.
    pub ts_ns: u64,
    pub lat_ns: u64,
    /// Fault page offset; 0 for request events.
    pub aux: u64,
    /// FUSE opcode, or fault size (`fault::SIZE_*`).
    pub op: u32,
    /// Reply length, or fault result class.
    pub len: u32,
    /// Reply error, or raw VM_FAULT_* result.
    pub error: i32,
    /// Thread group id of the task that caused the event (the requester for FUSE sends).
    pub pid: u32,
}
