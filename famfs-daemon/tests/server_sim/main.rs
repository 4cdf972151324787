//! The famfs FUSE server (`server::FamfsFs`) over a simulated kernel: one end of a
//! `socketpair(AF_UNIX, SOCK_SEQPACKET)` plays `/dev/fuse` while a `Session` serves a real famfs image
//! built with the format library from real log entries. For each dialect (off, rfc-v2, v3): INIT with
//! and without the famfs bits, the namespace and data opcodes with exact replies, GET_FMAP (byte-exact
//! against the protocol spec's 56- and 104-byte examples, RFC V2's needed-size retry, V3's EINVAL),
//! GET_DAXDEV, ENOSYS for everything else, malformed requests, the client-role refresh with its
//! invalidation notifications, no heap allocation per hot-path request, and the image changing
//! under the server (read-only `.meta` files, one open of the image, truncation; stale maps are
//! `tests/server_stale.rs`). No root needed.
//!
//! Layout: the image built from log entries ([`fixture`]), the session and typed requests
//! ([`harness`]); the tests by area: INIT and the namespace ([`namespace`]), file data ([`data`]),
//! famfs GET_FMAP / GET_DAXDEV ([`fmap`]), malformed requests and the allocation-free hot path
//! ([`serving`]), the client-role refresh and the join's catalog ([`refresh`]), the image changing
//! under the server ([`integrity`]).

// Test code: a failed unwrap/expect/assertion is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod data;
mod fixture;
mod fmap;
mod harness;
mod integrity;
mod namespace;
mod refresh;
mod serving;

use famfs_daemon::fuse::sim;

/// Counts heap allocations per thread (for the no-allocation-per-request check in [`serving`]).
#[global_allocator]
static GLOBAL: sim::CountingAlloc = sim::CountingAlloc;
