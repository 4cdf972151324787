//! `fuse:fuse_request_send` / `fuse:fuse_request_end`: per (connection, opcode) counts, errors, latency
//! and reply-size log2 histograms, aggregated in `REQ_STATS`; in-flight requests in `INFLIGHT`.
//!
//! send: count `sent`, remember (start time, opcode) under (connection, unique).
//! end:  take the in-flight entry, count completion/error, add latency and reply size to the slots;
//!       OPEN and GET_FMAP completions, and unmatched ends on watched connections, go to `EVENTS`.
//!
//! Two pairings, one loaded at a time: the classic tracepoints key in-flight requests by (connection,
//! unique) from the tracepoint record; the raw-tracepoint variants (`*_raw`) key them by the kernel's
//! request address and read the fields from `struct fuse_req` at BTF-derived offsets (`REQ_OFFSETS`),
//! which also pairs requests on kernels whose send event fires before `unique` is assigned (6.12).
//! Must not touch the fault or kernel-function maps.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use famfs_common::{
    counters,
    event::{Event, KIND_REQ_END, KIND_REQ_END_UNMATCHED},
    fuse_request::{Inflight, InflightKey, ReqKey, ReqOffsets, ReqStats},
    hist::{LAT_SLOTS, SIZE_SLOTS, log2_slot},
};

use crate::{
    filter::{bump, connection_wanted, filtering, now_ns, read, tid_tgid},
    maps::{
        EVENTS, FMAP_OPCODE, INFLIGHT, INFLIGHT_REQ, REQ_OFFSETS, REQ_STATS, TP_OFFSETS,
        ZERO_STATS, global,
    },
};

const BPF_NOEXIST: u64 = 1;
use famfs_common::opcode::OPEN as FUSE_OPEN;

/// The stats row for `key`, created zeroed on first use.
#[inline(always)]
fn stats_row(key: &ReqKey) -> Option<*mut ReqStats> {
    if let Some(p) = REQ_STATS.get_ptr_mut(key) {
        return Some(p);
    }
    let zero = ZERO_STATS.get_ptr(0)?;
    // SAFETY: `zero` points at a map value of the right type; the helper copies from it.
    let zero = unsafe { &*zero };
    if REQ_STATS.insert(key, zero, BPF_NOEXIST).is_err() && REQ_STATS.get_ptr(key).is_none() {
        bump(counters::STATS_FULL);
        return None;
    }
    REQ_STATS.get_ptr_mut(key)
}

#[inline(always)]
fn emit(ev: Event) {
    if EVENTS.output::<Event>(&ev, 0).is_err() {
        bump(counters::RINGBUF_DROPS);
    }
}

/// Count a send on `connection`; false when the connection is filtered out.
#[inline(always)]
fn count_send(connection: u32, opcode: u32, unique: u64) -> bool {
    if !connection_wanted(connection) {
        bump(counters::FILTERED);
        return false;
    }
    bump(counters::SEND_EVENTS);
    if let Some(row) = stats_row(&ReqKey { connection, opcode }) {
        // SAFETY: per-CPU value of this CPU.
        unsafe { (*row).sent += 1 };
    }
    if unique == 0 {
        bump(counters::SEND_UNIQUE_ZERO);
    }
    true
}

#[inline(always)]
fn inflight_now(opcode: u32) -> Inflight {
    Inflight {
        start_ns: now_ns(),
        opcode,
        pid: tid_tgid().1,
    }
}

#[tracepoint]
pub fn fuse_request_send(ctx: TracePointContext) -> u32 {
    let off = global(&TP_OFFSETS);
    let (Some(connection), Some(unique), Some(opcode)) = (
        read::<u32>(&ctx, off.send_connection),
        read::<u64>(&ctx, off.send_unique),
        read::<u32>(&ctx, off.send_opcode),
    ) else {
        return 0;
    };
    if !count_send(connection, opcode, unique) || unique == 0 {
        // unique 0: this kernel traces the send before assigning the id; nothing to pair on here.
        return 0;
    }
    let key = InflightKey {
        connection,
        _pad: 0,
        unique,
    };
    if INFLIGHT.insert(key, inflight_now(opcode), 0).is_err() {
        bump(counters::INFLIGHT_FULL);
    }
    0
}

/// Account one request end. `inflight` is what its send left (None: send not seen).
#[inline(always)]
fn count_end(connection: u32, unique: u64, len: u32, error: i32, inflight: Option<Inflight>) {
    let now = now_ns();
    let Some(inflight) = inflight else {
        bump(counters::UNMATCHED_END);
        if filtering() {
            emit(Event {
                kind: KIND_REQ_END_UNMATCHED,
                conn: connection,
                id: unique,
                ts_ns: now,
                len,
                error,
                ..Event::default()
            });
        }
        return;
    };
    let lat = now.saturating_sub(inflight.start_ns);
    let opcode = inflight.opcode;
    let fmap_op = global(&FMAP_OPCODE);
    if opcode == FUSE_OPEN || (fmap_op != 0 && opcode == fmap_op) {
        emit(Event {
            kind: KIND_REQ_END,
            conn: connection,
            id: unique,
            ts_ns: now,
            lat_ns: lat,
            aux: 0,
            op: opcode,
            len,
            error,
            pid: inflight.pid,
        });
    }
    let Some(row) = stats_row(&ReqKey { connection, opcode }) else {
        return;
    };
    // SAFETY: per-CPU value of this CPU; slot indexes are clamped below the array lengths.
    unsafe {
        let row = &mut *row;
        row.completed += 1;
        if error != 0 {
            row.errors += 1;
        }
        row.lat_sum_ns += lat;
        row.reply_bytes_sum += len as u64;
        let ls = log2_slot(lat, LAT_SLOTS);
        if ls < LAT_SLOTS {
            row.lat_slots[ls] += 1;
        }
        let ss = log2_slot(len as u64, SIZE_SLOTS);
        if ss < SIZE_SLOTS {
            row.reply_slots[ss] += 1;
        }
    }
}

#[tracepoint]
pub fn fuse_request_end(ctx: TracePointContext) -> u32 {
    let off = global(&TP_OFFSETS);
    let (Some(connection), Some(unique), Some(len), Some(error)) = (
        read::<u32>(&ctx, off.end_connection),
        read::<u64>(&ctx, off.end_unique),
        read::<u32>(&ctx, off.end_len),
        read::<i32>(&ctx, off.end_error),
    ) else {
        return 0;
    };
    if !connection_wanted(connection) {
        bump(counters::FILTERED);
        return 0;
    }
    bump(counters::END_EVENTS);
    let key = InflightKey {
        connection,
        _pad: 0,
        unique,
    };
    let inflight = match INFLIGHT.get_ptr(key) {
        Some(p) => {
            // SAFETY: pointer from a successful lookup; copied out before the entry is removed.
            let v = unsafe { *p };
            // Err: a concurrent end took the entry first; this end is counted with the copy either way.
            let _ = INFLIGHT.remove(key);
            Some(v)
        }
        None => None,
    };
    count_end(connection, unique, len, error, inflight);
    0
}

/// Read a `T` at `base + off` in kernel memory.
#[inline(always)]
fn kread<T>(base: u64, off: u32) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel copies through the kernel's fault-safe path; a bad address gives Err.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.ok()
}

/// The connection (`req->fm->fc->dev`) of a request.
#[inline(always)]
fn req_connection(req: u64, off: &ReqOffsets) -> Option<u32> {
    let fm = kread::<u64>(req, off.req_fm)?;
    let fc = kread::<u64>(fm, off.fm_fc)?;
    kread::<u32>(fc, off.fc_dev)
}

#[raw_tracepoint(tracepoint = "fuse_request_send")]
pub fn fuse_request_send_raw(ctx: RawTracePointContext) -> i32 {
    let req: u64 = ctx.arg(0);
    let off = global(&REQ_OFFSETS);
    let (Some(connection), Some(opcode), Some(unique)) = (
        req_connection(req, &off),
        kread::<u32>(req, off.in_opcode),
        kread::<u64>(req, off.in_unique),
    ) else {
        return 0;
    };
    if !count_send(connection, opcode, unique) {
        return 0;
    }
    // The request's address is unique while it is in flight; a stale entry (end lost) is overwritten
    // when the address is reused, and the LRU map evicts the oldest when full.
    if INFLIGHT_REQ.insert(req, inflight_now(opcode), 0).is_err() {
        bump(counters::INFLIGHT_FULL);
    }
    0
}

#[raw_tracepoint(tracepoint = "fuse_request_end")]
pub fn fuse_request_end_raw(ctx: RawTracePointContext) -> i32 {
    let req: u64 = ctx.arg(0);
    let off = global(&REQ_OFFSETS);
    let (Some(connection), Some(unique), Some(len), Some(error)) = (
        req_connection(req, &off),
        kread::<u64>(req, off.in_unique),
        kread::<u32>(req, off.out_len),
        kread::<i32>(req, off.out_error),
    ) else {
        return 0;
    };
    if !connection_wanted(connection) {
        bump(counters::FILTERED);
        return 0;
    }
    bump(counters::END_EVENTS);
    let inflight = match INFLIGHT_REQ.get_ptr(req) {
        Some(p) => {
            // SAFETY: pointer from a successful lookup; copied out before the entry is removed.
            let v = unsafe { *p };
            // Err: a concurrent end took the entry first; this end is counted with the copy either way.
            let _ = INFLIGHT_REQ.remove(req);
            Some(v)
        }
        None => None,
    };
    count_end(connection, unique, len, error, inflight);
    0
}
