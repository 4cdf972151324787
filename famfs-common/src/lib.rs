//! Types shared by the famfs-trace eBPF programs (`famfs-ebpf`) and user space (`famfs-daemon`).
//!
//! Everything here is `#[repr(C)]`, `Copy`, free of pointers and padding-explicit, because the same bytes
//! are written by the kernel programs and read back by user space. This crate owns the *shape* of the data
//! (map keys, values, counter slots, histogram geometry); it must not contain logic that only one side needs.
//! User-space-only trait impls (`aya::Pod`) sit behind the `user` feature, in `user.rs`.
#![no_std]

pub mod counters;
pub mod dev;
pub mod event;
pub mod fault;
pub mod fuse_request;
pub mod hist;
pub mod kfunc;
pub mod metric_names;
pub mod opcode;

#[cfg(feature = "user")]
mod user;

/// Names of the maps and programs in the eBPF object, so both sides spell them the same way.
pub mod names {
    pub const REQ_STATS: &str = "REQ_STATS";
    /// Per-CPU array of request stats for watched connections, indexed by (stats slot, opcode).
    pub const REQ_SLOTS: &str = "REQ_SLOTS";
    /// In-flight requests: an array indexed by a hash of the pairing key (unique or request address).
    pub const INFLIGHT: &str = "INFLIGHT";
    pub const COUNTERS: &str = "COUNTERS";
    pub const WATCH_CONN: &str = "WATCH_CONN";
    /// The watched connections with a stats slot, one array value the programs scan.
    pub const WATCH_LIST: &str = "WATCH_LIST";
    pub const PROG_FUSE_REQUEST_SEND: &str = "fuse_request_send";
    pub const PROG_FUSE_REQUEST_END: &str = "fuse_request_end";
    /// Raw-tracepoint variants of the request probes, paired by request address.
    pub const PROG_FUSE_REQUEST_SEND_RAW: &str = "fuse_request_send_raw";
    pub const PROG_FUSE_REQUEST_END_RAW: &str = "fuse_request_end_raw";
    /// BTF-tracepoint (`tp_btf`) variants of the raw ones: the same pairing, fields by direct loads.
    pub const PROG_FUSE_REQUEST_SEND_BTF: &str = "fuse_request_send_btf";
    pub const PROG_FUSE_REQUEST_END_BTF: &str = "fuse_request_end_btf";
    /// An empty raw-tracepoint program, never attached by the daemon: the probe-cost bench attaches it
    /// to both request tracepoints to measure the floor any program there costs.
    pub const PROG_FUSE_REQUEST_FLOOR: &str = "fuse_request_floor";
    pub const FAULT_STATS: &str = "FAULT_STATS";
    pub const FAULT_START: &str = "FAULT_START";
    pub const FILEMAP_STATS: &str = "FILEMAP_STATS";
    /// DAX faults per (dev, ino, process), with the process's name; LRU.
    pub const FAULT_PROCS: &str = "FAULT_PROCS";
    pub const FN_STATS: &str = "FN_STATS";
    pub const EVENTS: &str = "EVENTS";
}
