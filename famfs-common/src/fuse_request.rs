//! Shapes for the `fuse:fuse_request_send` / `fuse:fuse_request_end` probes.
//!
//! Kernel side: `REQ_STATS` is a per-CPU hash keyed by [`ReqKey`] holding [`ReqStats`]; `INFLIGHT` is a
//! bounded hash keyed by [`InflightKey`] holding [`Inflight`] between send and end. Tracepoint field
//! offsets are load-time globals ([`TpOffsets`]) filled by user space from tracefs `format` files, so a
//! kernel that moves a field does not silently corrupt the numbers.

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

/// In-flight key: the FUSE request id is unique per connection (and mount epoch).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InflightKey {
    pub connection: u32,
    pub _pad: u32,
    pub unique: u64,
}

/// What the send probe remembers for the end probe.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Inflight {
    pub start_ns: u64,
    pub opcode: u32,
    pub pid: u32,
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

/// Byte offsets of the `struct fuse_req` fields read by the request-pointer probes (raw tracepoints on
/// `fuse_request_send` / `fuse_request_end`, whose argument is the request itself). Filled in at load time
/// from the kernel's BTF. Pairing send and end by the request's address works on kernels whose
/// `fuse_request_send` fires before the request has its `unique` (seen on 6.12: unique 0 at send).
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
