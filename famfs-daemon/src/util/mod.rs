//! The lowest layer: small helpers with no better home, usable by every other module. Imports nothing
//! from the rest of the crate.
//!
//! Owns: the heap policy ([`alloc`]), the monotonic clock shared by the probes and the server ([`monotonic_ns`]) and the one reader of
//! the kernel's symbol table ([`kallsyms`]), the duration syntax of
//! the command line ([`duration`]) and number formatting for people ([`fmt`]). Must not hold state or know about FUSE, famfs or probes.

pub mod alloc;
pub mod duration;
pub mod fmt;
pub mod kallsyms;

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns` and of the server's request records.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
