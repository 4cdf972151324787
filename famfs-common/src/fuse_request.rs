//! Shapes for the `fuse:fuse_request_send` / `fuse:fuse_request_end` probes.
//!
//! Kernel side: [`ReqStats`] rows live in `REQ_SLOTS`, a per-CPU array indexed by (stats slot, opcode)
//! for watched connections ([`stats_index`]; the slot is the `WATCH_CONN` value), and in `REQ_STATS`, a
//! per-CPU hash keyed by [`ReqKey`], for the rest (no filter, unwatched slots, opcodes past
//! [`STATS_OPCODES`]). `INFLIGHT` is an array of [`Inflight`] slots indexed by a hash of the pairing key
//! ([`inflight_index`]) between send and end; the end checks the stored key. Tracepoint field offsets
//! are load-time globals ([`TpOffsets`]) filled by user space from tracefs `format` files, so a kernel
//! that moves a field does not silently corrupt the numbers.

use crate::hist::{LAT_SLOTS, SIZE_SLOTS};

/// Aggregation key: one row per (FUSE connection, opcode).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ReqKey {
    pub connection: u32,
    pub opcode: u32,
}

/// Per (connection, opcode) aggregate, summed over CPUs by user space.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ReqStats {
    /// Requests queued (`fuse_request_send`).
    pub sent: u64,
    /// Requests completed (`fuse_request_end`) whose send was seen.
    pub completed: u64,
    /// Completions with a non-zero `error`.
    pub errors: u64,
    /// Sum of send→end latency in ns over `completed`.
    pub lat_sum_ns: u64,
    /// Sum of reply lengths (reply header `len`) over `completed`.
    pub reply_bytes_sum: u64,
    pub _reserved: u64,
    pub lat_slots: [u64; LAT_SLOTS],
    pub reply_slots: [u64; SIZE_SLOTS],
}

impl ReqStats {
    pub const ZERO: ReqStats = ReqStats {
        sent: 0,
        completed: 0,
        errors: 0,
        lat_sum_ns: 0,
        reply_bytes_sum: 0,
        _reserved: 0,
        lat_slots: [0; LAT_SLOTS],
        reply_slots: [0; SIZE_SLOTS],
    };
}

/// Watched connections with their own rows in `REQ_SLOTS` (`WATCH_CONN` values 1..=STATS_SLOTS; 0 = the
/// hash path).
pub const STATS_SLOTS: u32 = 8;
/// Opcodes below this have a `REQ_SLOTS` row per slot; larger ones (CUSE_INIT) use the hash path.
pub const STATS_OPCODES: u32 = 64;

/// `REQ_SLOTS` index of (`WATCH_CONN` value `slot` ≥ 1, `opcode`), or None: the hash path.
#[inline(always)]
pub fn stats_index(slot: u32, opcode: u32) -> Option<u32> {
    if slot == 0 || slot > STATS_SLOTS || opcode >= STATS_OPCODES {
        return None;
    }
    Some((slot - 1) * STATS_OPCODES + opcode)
}

/// The watched connections with a stats slot, as one array value the programs scan (no hashing):
/// `conns[i]` holds slot `i + 1` (0: free). `overflow` is set once a connection was watched without a
/// slot (or is connection 0): then a connection not in `conns` is looked up in `WATCH_CONN`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchList {
    pub conns: [u32; STATS_SLOTS as usize],
    pub overflow: u32,
    pub _pad: u32,
}

/// One in-flight request: what the send probe remembers for the end probe. `key` is the pairing key
/// (the request's unique, or the kernel's request address); 0 = a free slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inflight {
    pub key: u64,
    pub start_ns: u64,
    pub connection: u32,
    pub opcode: u32,
    pub pid: u32,
    /// The connection's `WATCH_CONN` value at send (its stats slot; 0 = hash path).
    pub stats_slot: u32,
}

/// The `INFLIGHT` slot of pairing key `key` on `connection`; `mask` is the array size − 1 (a power of
/// two). Multiplicative hashing spreads both consecutive uniques and slab addresses.
#[inline(always)]
pub fn inflight_index(key: u64, connection: u32, mask: u32) -> u32 {
    let h = (key ^ ((connection as u64) << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h >> 32) as u32) & mask
}

/// Byte offsets of the tracepoint fields the probes read (defaults: Linux 6.18, see the protocol doc §10.1).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpOffsets {
    pub send_connection: u32,
    pub send_unique: u32,
    pub send_opcode: u32,
    pub send_len: u32,
    pub end_connection: u32,
    pub end_unique: u32,
    pub end_len: u32,
    pub end_error: u32,
}

impl TpOffsets {
    pub const LINUX_6_18: TpOffsets = TpOffsets {
        send_connection: 8,
        send_unique: 16,
        send_opcode: 24,
        send_len: 28,
        end_connection: 8,
        end_unique: 16,
        end_len: 24,
        end_error: 28,
    };
}

/// Connection filter mode, a load-time global: trace every FUSE connection, or only those in `WATCH_CONN`.
pub const FILTER_ALL: u32 = 0;
pub const FILTER_WATCHED: u32 = 1;

/// Byte offsets of the `struct fuse_req` fields read by the request-pointer probes (BTF or raw
/// tracepoints on `fuse_request_send` / `fuse_request_end`, whose argument is the request itself). Filled
/// in at load time from the kernel's BTF. Pairing send and end by the request's address works on
/// kernels whose `fuse_request_send` fires before the request has its `unique` (seen on 6.12: unique
/// 0 at send).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReqOffsets {
    /// `req->in.h.unique`
    pub in_unique: u32,
    /// `req->in.h.opcode`
    pub in_opcode: u32,
    /// `req->in.h.len`
    pub in_len: u32,
    /// `req->out.h.error`
    pub out_error: u32,
    /// `req->out.h.len`
    pub out_len: u32,
    /// `req->fm` (struct fuse_mount *)
    pub req_fm: u32,
    /// `fm->fc` (struct fuse_conn *)
    pub fm_fc: u32,
    /// `fc->dev` (dev_t): the connection number the tracepoints report.
    pub fc_dev: u32,
}
