//! The one support module of the integration tests (and of `benches/server.rs`): the basics every
//! test binary may need — SKIP checks (`require_root`, `require_program`, `can_mount`), the waiting
//! primitive (`wait_for`: a condition polled against a deadline, never a fixed delay), deterministic
//! file contents (`pattern`), digests (`sha256`), the binaries under test, shared sizes — and, by
//! topic, the daemon process guard ([`daemon`]), famfs test images ([`image`]), mounts ([`mounts`]),
//! HTTP GETs ([`http`]), Prometheus ([`prometheus`]), an ftrace counter ([`ftrace`]), tmux
//! ([`tmux`]) and the benchmarks' row format ([`bench`]).
//!
//! It owns test plumbing only: no assertion of a test lives here (a helper panics only when a step it
//! was asked to do fails), and it never reaches into the daemon's internals beyond its public API.
//! Included as `mod support;` by `tests/*.rs`, as `#[path = "../support/mod.rs"] mod support;` from
//! a test directory or a bench.

// Compiled into every test binary, each using a part of it: unused items are expected per binary.
#![allow(dead_code)]
// Test support: a failed unwrap/expect/panic is the calling test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod bench;
pub mod daemon;
pub mod ftrace;
pub mod http;
pub mod image;
pub mod mounts;
pub mod prometheus;
pub mod tmux;

use std::{
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

pub const MIB: u64 = 1 << 20;
/// The famfs allocation unit (2 MiB).
pub const MIB2: u64 = 2 << 20;
pub const GIB: u64 = 1 << 30;

/// How long a condition a test waits for (a screen, a counter) may take to come true.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The `famfs-daemon` binary under test.
pub const DAEMON: &str = env!("CARGO_BIN_EXE_famfs-daemon");
/// The `famfs-trace` binary under test.
pub const TRACE: &str = env!("CARGO_BIN_EXE_famfs-trace");

/// True when running as root; otherwise prints `SKIP: <test>: <reason>` and returns false.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    println!("SKIP: {test}: needs root (BPF, mount(2) of FUSE filesystems)");
    false
}

/// Root and /dev/fuse, or a SKIP line.
pub fn can_mount(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    if !Path::new("/dev/fuse").exists() {
        println!("SKIP: {test}: /dev/fuse is missing");
        return false;
    }
    true
}

/// True when `prog` is on PATH; otherwise prints a SKIP line.
pub fn require_program(test: &str, prog: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()));
    if !found {
        println!("SKIP: {test}: `{prog}` is not installed (run `cargo xtask setup`)");
    }
    found
}

/// How often [`wait_for`] checks its condition.
pub const POLL_STEP: Duration = Duration::from_millis(5);

/// Check `f` every [`POLL_STEP`] until it returns Some, or `timeout` passes (then None): waiting on a
/// condition, not a fixed delay.
pub fn wait_for<T>(timeout: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    wait_for_every(timeout, POLL_STEP, f)
}

/// [`wait_for`] with its own polling step, for conditions that are costly to check (each check of a
/// tmux pane starts a process).
pub fn wait_for_every<T>(
    timeout: Duration,
    step: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(step);
    }
}

/// Deterministic file contents of `len` bytes for `seed`: a xorshift64 stream, so no two offsets of
/// a file (nor two seeds) are likely to hold the same run of bytes and a misplaced read shows.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// `sha256sum` of a file, as the hex digest.
pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("sha256sum {}: no digest", path.display()))
        .to_string()
}

/// Run `famfs-trace ARGS` to completion.
pub fn trace(args: &[&str]) -> Output {
    Command::new(TRACE)
        .args(args)
        .output()
        .expect("famfs-trace")
}

/// A loopback TCP port nobody listens on right now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}
