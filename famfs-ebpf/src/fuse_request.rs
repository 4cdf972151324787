//! `fuse:fuse_request_send` / `fuse:fuse_request_end`: per (connection, opcode) counts, errors, latency
//! and reply-size log2 histograms, aggregated in `REQ_STATS`; in-flight requests in `INFLIGHT`.
//!
//! send: count `sent`, remember (start time, opcode) under (connection, unique).
//! end:  take the in-flight entry, count completion/error, add latency and reply size to the slots;
//!       OPEN and GET_FMAP completions, and unmatched ends on watched connections, go to `EVENTS`.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use famfs_common::{
    counters,
    event::{Event, KIND_REQ_END, KIND_REQ_END_UNMATCHED},
    fuse_request::{Inflight, InflightKey, ReqKey, ReqStats},
    hist::{LAT_SLOTS, SIZE_SLOTS, log2_slot},
};

use crate::{
    filter::{bump, connection_wanted, filtering, now_ns, read, tid_tgid},
    maps::{EVENTS, FMAP_OPCODE, INFLIGHT, REQ_STATS, TP_OFFSETS, ZERO_STATS, global},
};

const BPF_NOEXIST: u64 = 1;
const FUSE_OPEN: u32 = 14;

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
    if !connection_wanted(connection) {
        bump(counters::FILTERED);
        return 0;
    }
    bump(counters::SEND_EVENTS);
    if let Some(row) = stats_row(&ReqKey { connection, opcode }) {
        // SAFETY: per-CPU value of this CPU.
        unsafe { (*row).sent += 1 };
    }
    if unique == 0 {
        bump(counters::SEND_UNIQUE_ZERO);
        return 0;
    }
    let key = InflightKey {
        connection,
        _pad: 0,
        unique,
    };
    let val = Inflight {
        start_ns: now_ns(),
        opcode,
        pid: tid_tgid().1,
    };
    if INFLIGHT.insert(&key, &val, 0).is_err() {
        bump(counters::INFLIGHT_FULL);
    }
    0
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
    let now = now_ns();
    let key = InflightKey {
        connection,
        _pad: 0,
        unique,
    };
    let Some(inflight) = INFLIGHT.get_ptr(&key) else {
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
        return 0;
    };
    // SAFETY: pointer from a successful lookup; copied out before the entry is removed.
    let inflight = unsafe { *inflight };
    let _ = INFLIGHT.remove(&key);
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
        return 0;
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
    0
}
