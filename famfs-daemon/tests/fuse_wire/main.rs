//! The FUSE wire layer end to end, through its public API only.
//!
//! (a) A simulated kernel on one end of a `socketpair(AF_UNIX, SOCK_SEQPACKET)` drives a `Session`
//!     serving a tiny in-memory filesystem ([`testfs`], started by [`harness`]): INIT negotiation per
//!     famfs dialect with exact flags ([`init`]), the ordinary opcodes, malformed requests and
//!     no-reply opcodes ([`ops`]), famfs GET_FMAP / GET_DAXDEV with byte-exact replies, RFC V2
//!     needed-size retry and V3 too-big EINVAL ([`famfs`]), request records, a full record sink,
//!     DESTROY, notifications, several workers and no allocation per request ([`session`]). No root
//!     needed.
//! (b) A real mount of the same filesystem through `/dev/fuse` + `mount(2)` (root; SKIP otherwise;
//!     [`mount`]): `ls`, `stat`, reads, 4 concurrent readers, unmount — the mount is removed by a guard
//!     even when the test fails.

// Test code: a failed unwrap/expect/assertion is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod famfs;
mod harness;
mod init;
mod mount;
mod ops;
mod session;
mod testfs;

use famfs_daemon::fuse::sim;

/// Counts heap allocations per thread (for the no-allocation-per-request check in [`session`]).
#[global_allocator]
static GLOBAL: sim::CountingAlloc = sim::CountingAlloc;
