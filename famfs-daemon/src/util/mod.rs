//! Small shared helpers with no better home: clocks and size parsing. Nothing here does I/O.

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
