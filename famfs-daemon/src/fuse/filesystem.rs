//! The interface between the session and a filesystem: the [`Filesystem`] trait (one method per
//! FUSE operation, each with an ENOSYS default), the [`Request`] a method sees, and [`ForgetList`],
//! the lazily decoded entries of a BATCH_FORGET.
//!
//! Owns the contract only: what each method is asked and may answer. Must not contain dispatch,
//! wire framing or INIT logic (that is `session`) nor any concrete filesystem (that is `server`, or a
//! test's own filesystem).

use std::{ffi::OsStr, path::Path};

use super::{
    Errno,
    abi::{
        AttrOut, EntryOut, FlushIn, ForgetOne, FsyncIn, GetattrIn, Kstatfs, LkIn, OpenIn, OpenOut,
        ReadIn, ReleaseIn, SetattrIn, WireField, WriteIn,
    },
    reply::{DirentBuf, DirentPlusBuf, FdRead, FmapReply},
    session::Negotiated,
};

/// The request being served, as the filesystem sees it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub unique: u64,
    pub opcode: u32,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    /// What INIT settled for this connection.
    pub negotiated: &'a Negotiated,
}

/// The entries of a BATCH_FORGET, decoded lazily from the request.
#[derive(Clone, Debug)]
pub struct ForgetList<'a> {
    raw: &'a [u8],
}

impl<'a> ForgetList<'a> {
    /// Over `raw`, a packed array of `fuse_forget_one` (a trailing partial entry is ignored).
    pub fn new(raw: &'a [u8]) -> Self {
        ForgetList { raw }
    }

    pub fn len(&self) -> usize {
        self.raw.len() / ForgetOne::SIZE
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Iterator for ForgetList<'_> {
    type Item = ForgetOne;
    fn next(&mut self) -> Option<ForgetOne> {
        let (one, rest) = self.raw.split_at_checked(ForgetOne::SIZE)?;
        self.raw = rest;
        Some(ForgetOne::read(one))
    }
}

/// A filesystem served by a [`Session`](super::Session). Every method has a default: requests
/// answer ENOSYS (FORGET/BATCH_FORGET do nothing). Methods are called concurrently from the
/// session's workers.
///
/// Errors are positive errnos ([`Errno`]); LOOKUP of a missing name should answer `ENOENT` as an error
/// (not a negative entry), so names that appear later are found.
pub trait Filesystem: Send + Sync {
    /// INIT capability bits wanted beyond
    /// [`DEFAULT_INIT_FLAGS`](super::session::DEFAULT_INIT_FLAGS) (e.g. `DO_READDIRPLUS` when
    /// `readdirplus` is implemented, `FLOCK_LOCKS`). Granted only when the kernel offers them; the
    /// famfs bits and INIT_EXT are ignored here (the dialect rule decides the famfs bit).
    fn init_flags(&self) -> u64 {
        0
    }

    /// Called once negotiation is settled, before the INIT reply is sent. An error is sent as the
    /// INIT reply (the mount then fails) and the session is not marked negotiated.
    fn init(&self, _negotiated: &Negotiated) -> Result<(), Errno> {
        Ok(())
    }

    /// DESTROY, or the end of the session without one. Called at most once.
    fn destroy(&self) {}

    fn lookup(&self, _req: &Request<'_>, _parent: u64, _name: &OsStr) -> Result<EntryOut, Errno> {
        Err(Errno::ENOSYS)
    }

    /// Drop `nlookup` lookup references of `nodeid`. No reply is sent.
    fn forget(&self, _req: &Request<'_>, _nodeid: u64, _nlookup: u64) {}

    /// BATCH_FORGET: by default, `forget` for each entry.
    fn batch_forget(&self, req: &Request<'_>, nodes: ForgetList<'_>) {
        for n in nodes {
            self.forget(req, n.nodeid, n.nlookup);
        }
    }

    /// `arg.fh` is valid when `arg.getattr_flags & GETATTR_FH`. For a file with an fmap the size must
    /// never change.
    fn getattr(&self, _req: &Request<'_>, _ino: u64, _arg: &GetattrIn) -> Result<AttrOut, Errno> {
        Err(Errno::ENOSYS)
    }

    /// `arg.valid` holds `fattr::*` bits. May refuse (famfs refuses size changes with EINVAL).
    fn setattr(&self, _req: &Request<'_>, _ino: u64, _arg: &SetattrIn) -> Result<AttrOut, Errno> {
        Err(Errno::ENOSYS)
    }

    fn statfs(&self, _req: &Request<'_>, _ino: u64) -> Result<Kstatfs, Errno> {
        Err(Errno::ENOSYS)
    }

    fn opendir(&self, _req: &Request<'_>, _ino: u64, _arg: &OpenIn) -> Result<OpenOut, Errno> {
        Err(Errno::ENOSYS)
    }

    /// Pack entries starting after `arg.offset` into `out` until it is full (`push` returns false).
    fn readdir(
        &self,
        _req: &Request<'_>,
        _ino: u64,
        _arg: &ReadIn,
        _out: &mut DirentBuf<'_>,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// As `readdir`, with attributes. Sent only if `DO_READDIRPLUS` was requested in `init_flags`.
    fn readdirplus(
        &self,
        _req: &Request<'_>,
        _ino: u64,
        _arg: &ReadIn,
        _out: &mut DirentPlusBuf<'_>,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    fn releasedir(&self, _req: &Request<'_>, _ino: u64, _arg: &ReleaseIn) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// OPEN. A famfs kernel follows with GET_FMAP for regular files.
    fn open(&self, _req: &Request<'_>, _ino: u64, _arg: &OpenIn) -> Result<OpenOut, Errno> {
        Err(Errno::ENOSYS)
    }

    fn release(&self, _req: &Request<'_>, _ino: u64, _arg: &ReleaseIn) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    fn flush(&self, _req: &Request<'_>, _ino: u64, _arg: &FlushIn) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// FSYNC (`datasync`: only the data, not the metadata). Default ENOSYS, which the kernel
    /// remembers and then treats every later fsync as a success.
    fn fsync(&self, _req: &Request<'_>, _ino: u64, _arg: &FsyncIn) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// READ of up to `arg.size` bytes at `arg.offset`. Either return a slice of the filesystem's own
    /// memory (e.g. a memory map: it is written to the kernel straight from there), or fill a prefix
    /// of `buf` (the worker's reusable buffer, `min(arg.size, buffer)` long) and return it. A slice
    /// longer than `arg.size` is cut to `arg.size`. Shorter than asked means end of file.
    fn read<'a>(
        &'a self,
        _req: &Request<'_>,
        _ino: u64,
        _arg: &ReadIn,
        _buf: &'a mut [u8],
    ) -> Result<&'a [u8], Errno> {
        Err(Errno::ENOSYS)
    }

    /// READ described as byte ranges of one descriptor (`out.push`, at most `arg.size` bytes in all;
    /// fewer than asked means end of file), which the session may splice into `/dev/fuse` without a
    /// copy through user memory. `Ok(false)`: answer with `read` instead (the default; also right
    /// when the data is not behind a descriptor). The session falls back to `read` whenever it cannot
    /// use the ranges (not a `/dev/fuse` channel, splicing off, a splice that came back short or
    /// failed), so `read` must answer the same bytes, or the error.
    fn read_fd<'a>(
        &'a self,
        _req: &Request<'_>,
        _ino: u64,
        _arg: &ReadIn,
        _out: &mut FdRead<'a>,
    ) -> Result<bool, Errno> {
        Ok(false)
    }

    /// WRITE of `data` (`arg.size` bytes) at `arg.offset`; returns the bytes written.
    fn write(
        &self,
        _req: &Request<'_>,
        _ino: u64,
        _arg: &WriteIn,
        _data: &[u8],
    ) -> Result<u32, Errno> {
        Err(Errno::ENOSYS)
    }

    /// The value of xattr `name`, borrowed or written into `buf` as for `read`. The session answers
    /// the kernel's size probe (`size == 0`) and ERANGE itself; answer ENODATA when absent.
    fn getxattr<'a>(
        &'a self,
        _req: &Request<'_>,
        _ino: u64,
        _name: &OsStr,
        _buf: &'a mut [u8],
    ) -> Result<&'a [u8], Errno> {
        Err(Errno::ENOSYS)
    }

    /// SETLK (`sleep` false) / SETLKW (`sleep` true). For `flock()` the kernel sends these only when
    /// `FLOCK_LOCKS` was requested in `init_flags`; then `arg.lk_flags & LK_FLOCK` is set and
    /// `arg.lk.typ` is F_RDLCK / F_WRLCK / F_UNLCK. A SETLKW that blocks holds its worker thread.
    fn setlk(&self, _req: &Request<'_>, _ino: u64, _arg: &LkIn, _sleep: bool) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// famfs GET_FMAP for `ino` (only after the famfs bit was negotiated): call `out.set(&fmap)`. The
    /// session applies the dialect's size rule. Returning `Ok` without setting an fmap answers EIO.
    fn get_fmap(
        &self,
        _req: &Request<'_>,
        _ino: u64,
        _out: &mut FmapReply<'_>,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// famfs GET_DAXDEV for daxdev `index`: the devdax character device's path (≤ 255 bytes).
    fn get_daxdev(&self, _req: &Request<'_>, _index: u64) -> Result<&Path, Errno> {
        Err(Errno::ENOSYS)
    }
}
