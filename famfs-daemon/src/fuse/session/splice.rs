//! Spliced READ replies: a worker's pipe, filled with the reply header and then the data spliced
//! from the filesystem's descriptor ([`FdRead`]), then spliced whole into `/dev/fuse` (the kernel
//! takes a spliced write only as one complete message, header first). The data then crosses user
//! memory zero times instead of twice (pread into our buffer, write out of it).
//!
//! Owns: the pipes (creation, sizing, draining after a failure) and the splice(2) calls. Must not
//! decide whether a READ is spliced (that is `dispatch`) nor classify the reply's outcome (that is
//! `worker`). A pipe holds one buffer per page spliced plus one for the header, so a reply that
//! would not fit (or any short or failed splice from the source) is left to the copying path, and
//! the pipe is emptied before the next use: a reply is never sent with fewer bytes than its length.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
};

use super::{super::reply::FdRead, PAGE};

/// One pipe for spliced replies, non-blocking at both ends.
#[derive(Debug)]
pub(crate) struct SplicePipe {
    r: OwnedFd,
    w: OwnedFd,
    /// Pipe buffers it holds (its size in pages).
    slots: usize,
}

/// What filling the pipe came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Filled {
    /// Header and every byte of the ranges are in the pipe.
    Whole,
    /// The reply does not fit the pipe; nothing was written.
    TooBig,
    /// A splice from the source came back short or failed; the pipe was emptied.
    Short,
}

impl SplicePipe {
    /// A pipe of at least `bytes` (rounded up by the kernel to a power of two pages). Growing a pipe
    /// past `/proc/sys/fs/pipe-max-size` needs CAP_SYS_RESOURCE: without it the pipe keeps the largest
    /// size allowed, and replies that do not fit it are copied.
    pub(crate) fn new(bytes: usize) -> io::Result<SplicePipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is valid for two ints; the flags are valid.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 returned two new descriptors owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: F_SETPIPE_SZ takes an int size; `w` is an open pipe.
        if unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, want) } < 0 {
            // SAFETY: as above, with the largest unprivileged size.
            let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
                .ok()
                .and_then(|t| t.trim().parse::<libc::c_int>().ok())
                .unwrap_or(1 << 20);
            // SAFETY: as above.
            unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, max.min(want)) };
        }
        // SAFETY: F_GETPIPE_SZ takes no argument; `w` is an open pipe.
        let size = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) };
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SplicePipe {
            r,
            w,
            slots: size as usize / PAGE,
        })
    }

    /// Whether a reply of `len` data bytes can fit, however its ranges fall on pages (header
    /// buffer, and one page more than the length needs for a range not starting on a page).
    pub(super) fn may_fit(&self, len: usize) -> bool {
        len.div_ceil(PAGE) + 2 <= self.slots
    }

    /// Pipe buffers a reply of `head` then `src` takes: one for the header, one per page each range
    /// touches.
    fn slots_for(src: &FdRead<'_>) -> usize {
        1 + src
            .ranges()
            .iter()
            .map(|&(off, len)| {
                let first = off / PAGE as u64;
                let end = (off + len as u64).div_ceil(PAGE as u64);
                (end - first) as usize
            })
            .sum::<usize>()
    }

    /// Put `head` and then every range of `src` into the pipe (which must be empty).
    pub(super) fn fill(&self, head: &[u8], src: &FdRead<'_>, scratch: &mut [u8]) -> Filled {
        let Some(fd) = src.fd() else {
            return Filled::TooBig;
        };
        if Self::slots_for(src) > self.slots {
            return Filled::TooBig;
        }
        // SAFETY: `head` is valid for reads of its length; the pipe is open and empty, so a write
        // smaller than a page is taken whole.
        let n = unsafe { libc::write(self.w.as_raw_fd(), head.as_ptr().cast(), head.len()) };
        if n != head.len() as isize {
            self.drain(scratch);
            return Filled::Short;
        }
        for &(off, len) in src.ranges() {
            if !self.splice_in(fd, off, len) {
                self.drain(scratch);
                return Filled::Short;
            }
        }
        Filled::Whole
    }

    /// Splice `len` bytes at `off` of `fd` into the pipe; false if it came back short.
    fn splice_in(&self, fd: BorrowedFd<'_>, off: u64, len: usize) -> bool {
        let Ok(mut pos) = libc::loff_t::try_from(off) else {
            return false;
        };
        let mut left = len;
        while left > 0 {
            // SAFETY: both descriptors are open for the call; `pos` is a valid in/out offset.
            let n = unsafe {
                libc::splice(
                    fd.as_raw_fd(),
                    &mut pos,
                    self.w.as_raw_fd(),
                    std::ptr::null_mut(),
                    left,
                    libc::SPLICE_F_NONBLOCK,
                )
            };
            match n {
                n if n > 0 => left -= n as usize,
                0 => return false,
                _ if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
                _ => return false,
            }
        }
        true
    }

    /// Splice the whole message (`len` bytes, all in the pipe) into `dev` (a `/dev/fuse` fd).
    pub(super) fn send(&self, dev: RawFd, len: usize, scratch: &mut [u8]) -> io::Result<usize> {
        let r = loop {
            // SAFETY: both descriptors are open for the call; no offsets (pipe and device).
            let n = unsafe {
                libc::splice(
                    self.r.as_raw_fd(),
                    std::ptr::null_mut(),
                    dev,
                    std::ptr::null_mut(),
                    len,
                    0,
                )
            };
            if n >= 0 {
                break Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                break Err(e);
            }
        };
        if !matches!(r, Ok(n) if n == len) {
            // The kernel takes the message's buffers out of the pipe whatever the outcome, except
            // when it refuses before that (EINVAL): leave nothing behind for the next reply.
            self.drain(scratch);
        }
        r
    }

    /// Empty the pipe (reads until it would block).
    fn drain(&self, scratch: &mut [u8]) {
        loop {
            // SAFETY: `scratch` is valid for writes of its length; the pipe is non-blocking.
            let n = unsafe {
                libc::read(
                    self.r.as_raw_fd(),
                    scratch.as_mut_ptr().cast(),
                    scratch.len(),
                )
            };
            if n <= 0 && !(n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR))
            {
                return;
            }
        }
    }
}
