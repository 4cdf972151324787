//! Our own FUSE wire-protocol layer: the kernel ABI (`abi`), famfs dialects (`dialect`, `fmap`), the
//! transport and mount (`channel`), the [`Filesystem`] contract (`filesystem`), the session with its
//! INIT negotiation, dispatch and workers (`session`), notifications (`notify`), and the per-request
//! [`RequestRecord`] (`record`), serving any filesystem that implements [`Filesystem`]. The simulated
//! kernel peer for tests (`sim`) is compiled only for tests and with the `sim` cargo feature.
//!
//! Why not fuser: its opcode set is closed (GET_FMAP / GET_DAXDEV would be answered ENOSYS inside the
//! crate with no hook to serve them) and it cannot negotiate the famfs INIT bit in `flags2`.
//!
//! Owns the FUSE protocol only; it is filesystem-agnostic. Must not know the famfs on-media format or
//! namespace (`famfs`, `server`), probes or the join, and imports nothing from those later stages: it
//! produces [`RequestRecord`]s, which the join consumes.

pub mod abi;
pub mod channel;
pub mod dialect;
pub mod filesystem;
pub mod fmap;
pub mod notify;
pub mod record;
pub mod reply;
pub mod session;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod stats;

#[cfg(test)]
mod tests;

use std::fmt;

pub use channel::{Channel, ChannelKind, Mount, MountOptions};
pub use dialect::{Dialect, DialectConfig, DialectSpec};
pub use filesystem::{Filesystem, ForgetList, Request};
pub use fmap::{WireExtent, WireFmap, WireLayout};
pub use notify::Notifier;
pub use record::RequestRecord;
pub use reply::{DirentBuf, DirentPlusBuf, FdRead, FmapReply, dt};
pub use session::{Negotiated, Session, SessionConfig};
pub use stats::SessionStats;

/// A positive errno a filesystem answers with; sent as `-errno` in the reply header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const ENXIO: Errno = Errno(libc::ENXIO);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const ENOMEM: Errno = Errno(libc::ENOMEM);
    pub const EACCES: Errno = Errno(libc::EACCES);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    pub const EISDIR: Errno = Errno(libc::EISDIR);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const EFBIG: Errno = Errno(libc::EFBIG);
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    pub const EROFS: Errno = Errno(libc::EROFS);
    pub const ERANGE: Errno = Errno(libc::ERANGE);
    pub const ENAMETOOLONG: Errno = Errno(libc::ENAMETOOLONG);
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
    pub const ENOTEMPTY: Errno = Errno(libc::ENOTEMPTY);
    pub const ENODATA: Errno = Errno(libc::ENODATA);
    pub const EPROTO: Errno = Errno(libc::EPROTO);
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);

    /// The reply header's `error` value: `-errno`, or `-EIO` for a value outside 1..512 (which the
    /// kernel would reject).
    pub fn wire(self) -> i32 {
        if (1..512).contains(&self.0) {
            -self.0
        } else {
            -libc::EIO
        }
    }
}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Errno {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

impl std::error::Error for Errno {}
