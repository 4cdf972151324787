//! A simulated kernel peer for tests. [`Kernel`] owns the kernel side of a
//! `socketpair(AF_UNIX, SOCK_SEQPACKET)` whose other side is the [`Channel`] a [`Session`] serves: it
//! writes FUSE requests (well-formed, or raw bytes for malformed and fuzzed cases), reads exactly one
//! reply or notification at a time with a deadline, and checks with a sentinel request that nothing
//! else was answered. [`Sim`] adds the serving side: it starts a session of any [`Filesystem`] on its
//! own thread (which runs the session's workers), collects its request records, and stops it with
//! bounded waits. Request-body builders and reply parsers for the FUSE wire structures live here too,
//! and [`CountingAlloc`], a global allocator for test binaries that counts allocations per thread, so
//! that [`Sim::serving_thread_allocations`] can show a session allocating nothing per request.
//!
//! Test support, not product: compiled only for the crate's unit tests and with the `sim` cargo
//! feature, which the integration tests and benches enable through the crate's self
//! dev-dependency; never in the release binaries.
//!
//! Layout: `wire` holds the reply type, parsers and request-body builders; `kernel` the kernel end
//! ([`Kernel`]); `serve` the serving side ([`Sim`]); `alloc` the counting allocator.
//!
//! Owns: the kernel end of the socket pair and the serving thread's lifetime. Must not know the famfs
//! on-media format or namespace (`famfs`, `server`) and must not change how the session behaves: the
//! serving thread runs `Session::run` and then reads its allocation count, nothing else. All
//! encoding, decoding and allocation here happen on the caller's thread, so the
//! no-allocation-per-request checks measure the session alone. Nothing panics: failures are
//! `io::Error`s naming the opcode, unique, byte offset or deadline involved.
//!
//! [`Channel`]: super::Channel
//! [`Session`]: super::Session
//! [`Filesystem`]: super::Filesystem

mod alloc;
mod kernel;
mod serve;
mod wire;

use std::{
    io,
    os::fd::{FromRawFd, OwnedFd, RawFd},
    path::PathBuf,
    time::Duration,
};

pub use alloc::{CountingAlloc, thread_allocations};
pub use kernel::Kernel;
pub use serve::{Sim, SimBuilder};
pub use wire::{
    Dirent, DirentPlus, Reply, batch_forget_in, fmap_size_body, forget_in, getattr_in, getxattr_in,
    hex, name, open_in, parse_direntplus, parse_dirents, read_in, write_in,
};

use super::{DialectConfig, SessionConfig};

/// The INIT `flags` a recent kernel offers: every bit 0..=30 (INIT_EXT included).
pub const OFFER_FLAGS: u32 = 0x7fff_ffff;
/// The INIT `flags2` a recent kernel offers: bits 32..=41 (no famfs bit; see [`Kernel::init_offer`]).
pub const OFFER_FLAGS2: u32 = 0x3ff;
/// `max_readahead` offered in INIT.
pub const MAX_READAHEAD: u32 = 131_072;
/// How long [`Kernel::recv`] waits for a message unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The protocol spec's 56-byte GET_FMAP reply example (one simple extent: a 1 MiB file in 2 MiB at
/// 0xa00000), as hex bytes for [`hex`].
pub const FMAP_EXAMPLE_SIMPLE: &str = "00 00 01 00 00 00 00 00 01 00 00 00 00 00 00 00
     00 00 10 00 00 00 00 00 00 00 00 00 00 00 00 00
     00 00 00 00 00 00 00 00 00 00 a0 00 00 00 00 00
     00 00 20 00 00 00 00 00";

/// The protocol spec's 104-byte GET_FMAP reply example (3 MiB interleaved over 2 strips at 0x8600000
/// and 0x2600000, chunk 2 MiB), as hex bytes for [`hex`].
pub const FMAP_EXAMPLE_INTERLEAVED: &str = "00 00 01 00 01 00 00 00 01 00 00 00 00 00 00 00
     00 00 30 00 00 00 00 00 00 00 00 00 00 00 00 00
     02 00 00 00 00 00 20 00 00 00 30 00 00 00 00 00
     00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
     00 00 60 08 00 00 00 00 00 00 20 00 00 00 00 00
     00 00 00 00 00 00 00 00 00 00 60 02 00 00 00 00
     00 00 20 00 00 00 00 00";

/// Largest message the kernel side reads; a longer one is reported, never silently truncated (a
/// socket message is at most a few hundred KiB anyway).
const RECV_BUFFER: usize = 4 << 20;
/// How often a wait for a reply checks whether the session is still running.
const LIVENESS_SLICE: Duration = Duration::from_millis(100);

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// `e` with `what` in front of its message (same kind).
fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// A connected `AF_UNIX` `SOCK_SEQPACKET` pair (close-on-exec): one message per request or reply,
/// like `/dev/fuse`.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid 2-element array for socketpair to fill.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(context(io::Error::last_os_error(), "socketpair"));
    }
    // SAFETY: both fds were just created by socketpair and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A session configuration for a simulated connection `connection` / `mount_epoch` in `dialect`:
/// a daxdev is configured, and `kallsyms` names a file that does not exist, so `auto` never reads
/// the host kernel's symbols (the simulated kernel is not the host's). Other fields: the defaults.
pub fn session_config(connection: u32, mount_epoch: u64, dialect: DialectConfig) -> SessionConfig {
    SessionConfig {
        connection,
        mount_epoch,
        dialect,
        daxdev_configured: true,
        kallsyms: PathBuf::from("/nonexistent/kallsyms"),
        ..Default::default()
    }
}
