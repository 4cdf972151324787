//! `fuse:fuse_request_send` / `fuse:fuse_request_end`: per (connection, opcode) counts, errors, latency
//! and reply-size log2 histograms, aggregated in `REQ_SLOTS` (watched connections: a per-CPU array row
//! per (stats slot, opcode)) or `REQ_STATS` (the rest: a per-CPU hash); in-flight requests in `INFLIGHT`,
//! an array slot per request chosen by hashing its pairing key.
//!
//! send: filter by connection (its `WATCH_CONN` value is its stats slot), count `sent`, store (key,
//!       connection, opcode, start time, pid, slot) in the request's in-flight slot.
//! end:  take the in-flight slot if it holds this request's key (then no connection read or filter
//!       lookup is needed: the slot has them), count completion/error, add latency and reply size;
//!       OPEN and GET_FMAP completions, and unmatched ends on watched connections, go to `EVENTS`.
//!
//! Two pairings, one loaded at a time: the classic tracepoints key in-flight requests by (connection,
//! unique) from the tracepoint record (read with one helper call); the BTF-tracepoint (`*_btf`) and
//! raw-tracepoint (`*_raw`) variants key them by the kernel's request address and read `struct
//! fuse_req` at BTF-derived offsets (`REQ_OFFSETS`), which also pairs requests on kernels whose send
//! event fires before `unique` is assigned (6.12). The BTF variants read by direct loads the verifier
//! checks against the kernel's types (no helper call); the raw ones, the fallback where `tp_btf` is
//! refused, copy with `bpf_probe_read_kernel`. Must not touch the fault or kernel-function maps.

use aya_ebpf::{
    EbpfContext,
    helpers::bpf_probe_read_kernel,
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use famfs_common::{
    counters,
    event::{Event, KIND_REQ_END, KIND_REQ_END_UNMATCHED},
    fuse_request::{Inflight, ReqKey, ReqOffsets, ReqStats, inflight_index, stats_index},
    hist::{LAT_SLOTS, SIZE_SLOTS, log2_slot},
    opcode::OPEN as FUSE_OPEN,
};

use crate::{
    filter::{bump, filtering, now_ns, read, tid_tgid, watched_slot},
    maps::{
        EVENTS, FMAP_OPCODE, INFLIGHT, INFLIGHT_MASK, REQ_OFFSETS, REQ_SLOTS, REQ_STATS,
        TP_OFFSETS, ZERO_STATS, global,
    },
};

const BPF_NOEXIST: u64 = 1;

/// The stats row of (`connection`, `opcode`): the connection's `REQ_SLOTS` row when it has a stats
/// slot, else its `REQ_STATS` hash row, created zeroed on first use.
#[inline(always)]
fn stats_row(connection: u32, slot: u32, opcode: u32) -> Option<*mut ReqStats> {
    if let Some(i) = stats_index(slot, opcode) {
        return REQ_SLOTS.get_ptr_mut(i);
    }
    let key = ReqKey { connection, opcode };
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

/// Account a send on `connection` and remember it under pairing `key` (0: nothing to pair on), in the
/// in-flight slot of (`hash`, `index_conn`); `hash` is `key` except where the verifier types the key
/// as a pointer, on which it allows no hashing.
#[inline(always)]
fn on_send(key: u64, hash: u64, index_conn: u32, connection: u32, opcode: u32, unique: u64) {
    let Some(slot) = watched_slot(connection) else {
        bump(counters::FILTERED);
        return;
    };
    bump(counters::SEND_EVENTS);
    if let Some(row) = stats_row(connection, slot, opcode) {
        // SAFETY: per-CPU value of this CPU.
        unsafe { (*row).sent += 1 };
    }
    if unique == 0 {
        bump(counters::SEND_UNIQUE_ZERO);
    }
    if key == 0 {
        return;
    }
    let Some(e) = INFLIGHT.get_ptr_mut(inflight_index(hash, index_conn, global(&INFLIGHT_MASK)))
    else {
        return;
    };
    // SAFETY: a live array value; a concurrent end of another request hashed to this slot sees either
    // key and checks it.
    unsafe {
        if (*e).key != 0 && (*e).key != key {
            bump(counters::INFLIGHT_FULL);
        }
        *e = Inflight {
            key,
            start_ns: now_ns(),
            connection,
            opcode,
            pid: tid_tgid().1,
            stats_slot: slot,
        };
    }
}

/// Take the in-flight entry of pairing `key` (slot of `hash`, see [`on_send`]) if its slot holds it
/// (and, when known, the same connection); the slot is freed.
#[inline(always)]
fn take_inflight(
    key: u64,
    hash: u64,
    index_conn: u32,
    connection: Option<u32>,
) -> Option<Inflight> {
    if key == 0 {
        return None;
    }
    let e = INFLIGHT.get_ptr_mut(inflight_index(hash, index_conn, global(&INFLIGHT_MASK)))?;
    // SAFETY: a live array value, copied out before the slot is freed.
    unsafe {
        let v = *e;
        if v.key != key || connection.is_some_and(|c| c != v.connection) {
            return None;
        }
        (*e).key = 0;
        Some(v)
    }
}

/// An end whose send was not seen, on `connection`: counted (and reported) when the connection is
/// traced, else counted as filtered.
#[inline(always)]
fn unmatched_end(connection: u32, unique: u64, len: u32, error: i32) {
    if watched_slot(connection).is_none() {
        bump(counters::FILTERED);
        return;
    }
    bump(counters::END_EVENTS);
    bump(counters::UNMATCHED_END);
    if filtering() {
        emit(Event {
            kind: KIND_REQ_END_UNMATCHED,
            conn: connection,
            id: unique,
            ts_ns: now_ns(),
            len,
            error,
            ..Event::default()
        });
    }
}

/// Account one request end whose send left `inflight`. `unique` is asked for only when an event is sent.
#[inline(always)]
fn count_end(inflight: &Inflight, unique: impl Fn() -> u64, len: u32, error: i32) {
    bump(counters::END_EVENTS);
    let now = now_ns();
    let lat = now.saturating_sub(inflight.start_ns);
    let (connection, opcode) = (inflight.connection, inflight.opcode);
    let fmap_op = global(&FMAP_OPCODE);
    if opcode == FUSE_OPEN || (fmap_op != 0 && opcode == fmap_op) {
        emit(Event {
            kind: KIND_REQ_END,
            conn: connection,
            id: unique(),
            ts_ns: now,
            lat_ns: lat,
            aux: 0,
            op: opcode,
            len,
            error,
            pid: inflight.pid,
        });
    }
    let Some(row) = stats_row(connection, inflight.stats_slot, opcode) else {
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

/// The first bytes of a tracepoint record, copied with one helper call.
const RECORD: usize = 32;

#[inline(always)]
fn record(ctx: &TracePointContext) -> Option<[u64; RECORD / 8]> {
    // SAFETY: bpf_probe_read_kernel copies through the kernel's fault-safe path; a bad address gives Err.
    unsafe { bpf_probe_read_kernel(ctx.as_ptr() as *const [u64; RECORD / 8]) }.ok()
}

/// Field `T` at byte `off` of the record: from the copy when it lies inside (naturally aligned), else
/// read from the record on its own.
#[inline(always)]
fn field<T: Copy>(ctx: &TracePointContext, rec: &[u64; RECORD / 8], off: u32) -> Option<T> {
    let off = off as usize;
    if off + size_of::<T>() <= RECORD && off.is_multiple_of(size_of::<T>()) {
        // SAFETY: in bounds of `rec` (checked above) and aligned for `T`, an integer type.
        return Some(unsafe { *(rec.as_ptr().cast::<u8>().add(off).cast::<T>()) });
    }
    read::<T>(ctx, off as u32)
}

#[tracepoint]
pub fn fuse_request_send(ctx: TracePointContext) -> u32 {
    let off = global(&TP_OFFSETS);
    let Some(rec) = record(&ctx) else {
        return 0;
    };
    let (Some(connection), Some(unique), Some(opcode)) = (
        field::<u32>(&ctx, &rec, off.send_connection),
        field::<u64>(&ctx, &rec, off.send_unique),
        field::<u32>(&ctx, &rec, off.send_opcode),
    ) else {
        return 0;
    };
    // unique 0: this kernel traces the send before assigning the id; nothing to pair on here.
    on_send(unique, unique, connection, connection, opcode, unique);
    0
}

#[tracepoint]
pub fn fuse_request_end(ctx: TracePointContext) -> u32 {
    let off = global(&TP_OFFSETS);
    let Some(rec) = record(&ctx) else {
        return 0;
    };
    let (Some(connection), Some(unique), Some(len), Some(error)) = (
        field::<u32>(&ctx, &rec, off.end_connection),
        field::<u64>(&ctx, &rec, off.end_unique),
        field::<u32>(&ctx, &rec, off.end_len),
        field::<i32>(&ctx, &rec, off.end_error),
    ) else {
        return 0;
    };
    match take_inflight(unique, unique, connection, Some(connection)) {
        Some(inflight) => count_end(&inflight, || unique, len, error),
        None => unmatched_end(connection, unique, len, error),
    }
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

/// `struct fuse_in_header`'s first fields (UAPI layout: len, opcode, unique).
#[repr(C)]
#[derive(Clone, Copy)]
struct InHeader {
    len: u32,
    opcode: u32,
    unique: u64,
}

/// `struct fuse_out_header`'s first fields (UAPI layout: len, error).
#[repr(C)]
#[derive(Clone, Copy)]
struct OutHeader {
    len: u32,
    error: i32,
}

/// Bytes of `struct fuse_req` copied at once from the in header on, to take the header and `fm` with
/// one helper call when `fm` lies within (it does on 6.12 and 6.18: 88 bytes apart).
const WINDOW: usize = 128;

/// The in header and `req->fm` of a request: one copy of the window holding both when it does (and the
/// offsets are 8-byte aligned), else two reads.
#[inline(always)]
fn send_fields(req: u64, off: &ReqOffsets) -> Option<(InHeader, u64)> {
    let base = off.in_len;
    let fm_at = off.req_fm.wrapping_sub(base) as usize;
    if off.req_fm >= base
        && fm_at + 8 <= WINDOW
        && fm_at.is_multiple_of(8)
        && base.is_multiple_of(8)
    {
        let w = kread::<[u64; WINDOW / 8]>(req, base)?;
        let h = InHeader {
            len: w[0] as u32,
            opcode: (w[0] >> 32) as u32,
            unique: w[1],
        };
        return Some((h, *w.get(fm_at / 8)?));
    }
    Some((
        kread::<InHeader>(req, off.in_len)?,
        kread::<u64>(req, off.req_fm)?,
    ))
}

#[raw_tracepoint(tracepoint = "fuse_request_send")]
pub fn fuse_request_send_raw(ctx: RawTracePointContext) -> i32 {
    let req: u64 = ctx.arg(0);
    let off = global(&REQ_OFFSETS);
    let Some((h, fm)) = send_fields(req, &off) else {
        return 0;
    };
    let Some(connection) = kread::<u64>(fm, off.fm_fc).and_then(|fc| kread::<u32>(fc, off.fc_dev))
    else {
        return 0;
    };
    // The request's address is unique while it is in flight; a stale slot (end lost) is overwritten.
    on_send(req, req, 0, connection, h.opcode, h.unique);
    0
}

#[raw_tracepoint(tracepoint = "fuse_request_end")]
pub fn fuse_request_end_raw(ctx: RawTracePointContext) -> i32 {
    let req: u64 = ctx.arg(0);
    let off = global(&REQ_OFFSETS);
    let Some(h) = kread::<OutHeader>(req, off.out_len) else {
        return 0;
    };
    // The request's own unique (`out.h.unique` is only the reply's), read only for an event.
    let unique = || kread::<u64>(req, off.in_unique).unwrap_or(0);
    if let Some(inflight) = take_inflight(req, req, 0, None) {
        count_end(&inflight, unique, h.len, h.error);
        return 0;
    }
    if let Some(connection) = req_connection(req, &off) {
        unmatched_end(connection, unique(), h.len, h.error);
    }
    0
}

/// A `T` at `base + off` by a direct load: `base` is a BTF-typed kernel pointer (a `tp_btf` argument or
/// a pointer member read from one) and `off` a load-time global, which the verifier knows as a constant
/// (`.rodata` is frozen), so it checks the access against the BTF type and emits a fault-safe load
/// (PROBE_MEM: a bad address reads 0) instead of a helper call. Volatile: one load of exactly `T`, as
/// the verifier refuses loads spanning two members.
#[inline(always)]
fn bload<T: Copy>(base: u64, off: u32) -> T {
    // SAFETY: only verified against the BTF type of `base` by the kernel, which makes the load
    // fault-safe; never dereferenced outside BPF.
    unsafe { core::ptr::read_volatile((base + off as u64) as *const T) }
}

/// The in-flight slot hash of a request typed as a pointer: the verifier refuses any arithmetic on a
/// BTF pointer but the difference of two (for a privileged loader), which is a plain number. `req −
/// req->fm` is fixed for the request's life (its mount does not change), so send and end agree; the
/// slot still holds the full address to compare.
#[inline(always)]
fn req_hash(req: u64, fm: u64) -> u64 {
    req.wrapping_sub(fm)
}

/// The BTF-tracepoint variant of [`fuse_request_send_raw`]: the same fields by direct loads.
#[btf_tracepoint(function = "fuse_request_send")]
pub fn fuse_request_send_btf(ctx: BtfTracePointContext) -> i32 {
    let req: u64 = ctx.arg(0);
    let off = global(&REQ_OFFSETS);
    let opcode = bload::<u32>(req, off.in_opcode);
    let unique = bload::<u64>(req, off.in_unique);
    let fm = bload::<u64>(req, off.req_fm);
    let connection = bload::<u32>(bload::<u64>(fm, off.fm_fc), off.fc_dev);
    on_send(req, req_hash(req, fm), 0, connection, opcode, unique);
    0
}

/// The BTF-tracepoint variant of [`fuse_request_end_raw`].
#[btf_tracepoint(function = "fuse_request_end")]
pub fn fuse_request_end_btf(ctx: BtfTracePointContext) -> i32 {
    let req: u64 = ctx.arg(0);
    let off = global(&REQ_OFFSETS);
    let len = bload::<u32>(req, off.out_len);
    let error = bload::<i32>(req, off.out_error);
    let unique = || bload::<u64>(req, off.in_unique);
    let fm = bload::<u64>(req, off.req_fm);
    if let Some(inflight) = take_inflight(req, req_hash(req, fm), 0, None) {
        count_end(&inflight, unique, len, error);
        return 0;
    }
    let connection = bload::<u32>(bload::<u64>(fm, off.fm_fc), off.fc_dev);
    unmatched_end(connection, unique(), len, error);
    0
}

/// Does nothing: the floor of a program on the request tracepoints (dispatch, context, BPF statistics),
/// attached only by `benches/probe_cost.rs`, never by the daemon.
#[raw_tracepoint(tracepoint = "fuse_request_send")]
pub fn fuse_request_floor(_ctx: RawTracePointContext) -> i32 {
    0
}
