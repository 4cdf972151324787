//! The kernel end of a simulated FUSE connection ([`Kernel`]): writes requests, reads exactly one
//! reply or notification at a time with a deadline, checks that nothing else was answered, and plays
//! INIT as a kernel of a given protocol version would.
//!
//! Owns the kernel side's socket, its automatic uniques and its receive buffer. Must not start or
//! stop a session (that is `serve`).

use std::{
    io::{self, IoSlice},
    os::fd::{AsRawFd, OwnedFd, RawFd},
    sync::{Arc, Condvar, Mutex, PoisonError, atomic::AtomicU64},
    time::{Duration, Instant},
};

use super::{
    super::{
        Channel,
        abi::{InHeader, InitIn, InitOut, KERNEL_MINOR_VERSION, KERNEL_VERSION, OutHeader, opcode},
    },
    DEFAULT_TIMEOUT, LIVENESS_SLICE, MAX_READAHEAD, OFFER_FLAGS, OFFER_FLAGS2, RECV_BUFFER,
    context, invalid, socketpair,
    wire::{Reply, getattr_in},
};

// The kernel side.

/// Whether the serving thread has ended (set on its way out, also when it panics).
#[derive(Debug, Default)]
pub(super) struct Ended {
    done: Mutex<bool>,
    cv: Condvar,
    /// The serving thread's [`thread_allocations`](super::thread_allocations) when `Session::run`
    /// returned.
    pub(super) allocations: AtomicU64,
}

impl Ended {
    pub(super) fn is_done(&self) -> bool {
        *self.done.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self) {
        *self.done.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.cv.notify_all();
    }

    /// Wait until done or `timeout` passes; true when done.
    pub(super) fn wait(&self, timeout: Duration) -> bool {
        let g = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        let (g, _) = self
            .cv
            .wait_timeout_while(g, timeout, |done| !*done)
            .unwrap_or_else(PoisonError::into_inner);
        *g
    }
}

/// Sets [`Ended`] when dropped: at the end of the serving thread's closure, or while it unwinds.
pub(super) struct MarkEnded<'a>(pub(super) &'a Ended);

impl Drop for MarkEnded<'_> {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// The kernel end of a simulated FUSE connection.
#[derive(Debug)]
pub struct Kernel {
    fd: Option<OwnedFd>,
    /// The last unique used by [`Kernel::request`] (the next is this + 2, as the kernel counts).
    unique: u64,
    buf: Vec<u8>,
    timeout: Duration,
    pid: u32,
    /// The serving thread, when a [`Sim`](super::Sim) runs one: a wait for a reply fails as soon
    /// as it ended.
    pub(super) server: Option<Arc<Ended>>,
}

impl Kernel {
    /// A kernel side on `fd` (one end of a SEQPACKET pair).
    pub fn new(fd: OwnedFd) -> Kernel {
        Kernel {
            fd: Some(fd),
            unique: 0,
            buf: vec![0u8; RECV_BUFFER],
            timeout: DEFAULT_TIMEOUT,
            pid: std::process::id(),
            server: None,
        }
    }

    /// A new socket pair: the kernel side, and the [`Channel`] to serve a session on.
    pub fn pair() -> io::Result<(Kernel, Channel)> {
        let (kernel, server) = socketpair()?;
        Ok((Kernel::new(kernel), Channel::from_fd(server)))
    }

    /// How long [`Kernel::recv`] waits for a message.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The `pid` put in request headers (default: this process).
    pub fn set_pid(&mut self, pid: u32) {
        self.pid = pid;
    }

    /// Continue the automatic uniques after `last`: the next request gets `last + 2`.
    pub fn set_last_unique(&mut self, last: u64) {
        self.unique = last;
    }

    /// The unique of the latest request sent with an automatic unique.
    pub fn last_unique(&self) -> u64 {
        self.unique
    }

    /// Close the kernel side: the session reads EOF (as it would read ENODEV from `/dev/fuse` after
    /// an unmount) and ends. Sending or receiving afterwards is an error.
    pub fn close(&mut self) {
        drop(self.fd.take());
    }

    pub fn is_open(&self) -> bool {
        self.fd.is_some()
    }

    fn raw_fd(&self) -> io::Result<RawFd> {
        self.fd
            .as_ref()
            .map(AsRawFd::as_raw_fd)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the kernel side is closed"))
    }

    /// Write one message gathered from `parts` (never raises SIGPIPE).
    fn send_parts(&self, parts: &[&[u8]]) -> io::Result<()> {
        let fd = self.raw_fd()?;
        let iov: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let total: usize = parts.iter().map(|p| p.len()).sum();
        // SAFETY: an all-zero msghdr is valid (no name, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is ABI-compatible with `struct iovec` on Unix (documented by std).
        msg.msg_iov = iov.as_ptr().cast::<libc::iovec>().cast_mut();
        msg.msg_iovlen = iov.len() as _;
        // SAFETY: `msg` points to `iov`, whose buffers outlive the call; the fd is open.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            return Err(context(io::Error::last_os_error(), "send"));
        }
        if n as usize != total {
            return Err(io::Error::other(format!(
                "send: wrote {n} of {total} bytes"
            )));
        }
        Ok(())
    }

    /// Send `bytes` as one message, exactly as given (malformed and fuzzed requests).
    pub fn send_raw(&self, bytes: &[u8]) -> io::Result<()> {
        self.send_parts(&[bytes])
    }

    /// Send a well-formed request with an explicit `unique`; the body is `parts` concatenated.
    pub fn request_as(&self, unique: u64, op: u32, nodeid: u64, parts: &[&[u8]]) -> io::Result<()> {
        let body: usize = parts.iter().map(|p| p.len()).sum();
        let len = u32::try_from(InHeader::SIZE + body).map_err(|_| {
            invalid(format!(
                "opcode {op}: a {body}-byte body does not fit a request"
            ))
        })?;
        let head = InHeader {
            len,
            opcode: op,
            unique,
            nodeid,
            uid: 0,
            gid: 0,
            pid: self.pid,
            ..Default::default()
        }
        .to_bytes();
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
        all.push(&head);
        all.extend_from_slice(parts);
        self.send_parts(&all)
            .map_err(|e| context(e, &format!("opcode {op} unique {unique}")))
    }

    /// Send a request whose body is `parts` concatenated, with the next unique (+2, as the kernel
    /// counts); returns that unique.
    pub fn request_parts(&mut self, op: u32, nodeid: u64, parts: &[&[u8]]) -> io::Result<u64> {
        let unique = self.unique.wrapping_add(2);
        self.request_as(unique, op, nodeid, parts)?;
        self.unique = unique;
        Ok(unique)
    }

    /// [`Kernel::request_parts`] with a one-piece body.
    pub fn request(&mut self, op: u32, nodeid: u64, body: &[u8]) -> io::Result<u64> {
        self.request_parts(op, nodeid, &[body])
    }

    /// Wait until a message can be read, the deadline passes, or the serving thread has ended.
    fn wait_readable(&self, fd: RawFd) -> io::Result<()> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let slice = left.min(LIVENESS_SLICE);
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = slice.as_micros().div_ceil(1000) as libc::c_int;
            // SAFETY: one valid pollfd for the duration of the call.
            let r = unsafe { libc::poll(&mut p, 1, ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(context(e, "poll"));
            }
            if r > 0 {
                // Readable, or the peer closed (the read then reports it).
                return Ok(());
            }
            if let Some(s) = &self.server
                && s.is_done()
            {
                // The thread may have written its last reply just before ending: look once more.
                p.revents = 0;
                // SAFETY: as above.
                if unsafe { libc::poll(&mut p, 1, 0) } > 0 {
                    return Ok(());
                }
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the session ended while a reply was due",
                ));
            }
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no reply within {:?}", self.timeout),
                ));
            }
        }
    }

    /// Receive exactly one message (a reply or a notification), waiting at most the timeout. Checks
    /// that its header's `len` equals the bytes received.
    pub fn recv(&mut self) -> io::Result<Reply> {
        let fd = self.raw_fd()?;
        self.wait_readable(fd)?;
        // MSG_TRUNC: the real length even when the message is longer than the buffer.
        // SAFETY: the buffer is valid for writes of its length; the fd is open.
        let n = unsafe {
            libc::recv(
                fd,
                self.buf.as_mut_ptr().cast::<libc::c_void>(),
                self.buf.len(),
                libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::ConnectionReset {
                // A socket closed with messages still unread on its side resets its peer.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the session closed its end with requests unread",
                ));
            }
            return Err(context(e, "recv"));
        }
        let n = n as usize;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the session closed its end",
            ));
        }
        if n > self.buf.len() {
            return Err(invalid(format!(
                "a {n}-byte message exceeds the {}-byte receive buffer",
                self.buf.len()
            )));
        }
        let h = OutHeader::decode(&self.buf[..n], 0, 0)
            .map_err(|e| invalid(format!("a {n}-byte message: {e}")))?;
        if h.len as usize != n {
            return Err(invalid(format!(
                "unique {}: the header's len is {}, {n} bytes were written",
                h.unique, h.len
            )));
        }
        Ok(Reply {
            unique: h.unique,
            error: h.error,
            body: self.buf[OutHeader::SIZE..n].to_vec(),
        })
    }

    /// Send a request (body = `parts` concatenated) and receive its reply, which must be the next
    /// message and carry the request's unique.
    pub fn call_parts(&mut self, op: u32, nodeid: u64, parts: &[&[u8]]) -> io::Result<Reply> {
        let u = self.request_parts(op, nodeid, parts)?;
        let r = self
            .recv()
            .map_err(|e| context(e, &format!("opcode {op} unique {u}")))?;
        if r.unique != u {
            return Err(invalid(format!(
                "the reply to opcode {op} (unique {u}) carries unique {} (error {})",
                r.unique, r.error
            )));
        }
        Ok(r)
    }

    /// [`Kernel::call_parts`] with a one-piece body.
    pub fn call(&mut self, op: u32, nodeid: u64, body: &[u8]) -> io::Result<Reply> {
        self.call_parts(op, nodeid, &[body])
    }

    /// Send a sentinel GETATTR of `nodeid` and read every message up to and including its reply:
    /// returns the messages that came first (the replies to what was sent before) and the
    /// sentinel's reply. With one worker, requests are served in order, so this tells exactly what
    /// the earlier requests were answered without waiting for a timeout.
    pub fn until_sentinel(&mut self, nodeid: u64) -> io::Result<(Vec<Reply>, Reply)> {
        let u = self.request(opcode::GETATTR, nodeid, &getattr_in())?;
        let mut before = Vec::new();
        loop {
            let r = self
                .recv()
                .map_err(|e| context(e, &format!("sentinel GETATTR unique {u}")))?;
            if r.unique == u {
                return Ok((before, r));
            }
            before.push(r);
        }
    }

    /// Check that nothing is answered to what was sent since the last message received (FORGET,
    /// INTERRUPT, ...): the next message must be the reply to a sentinel GETATTR of `nodeid`, which
    /// is returned.
    pub fn expect_no_reply(&mut self, nodeid: u64) -> io::Result<Reply> {
        let (before, sentinel) = self.until_sentinel(nodeid)?;
        match before.first() {
            None => Ok(sentinel),
            Some(first) => Err(invalid(format!(
                "{} message(s) arrived where none was due; the first: unique {} error {} ({} body bytes)",
                before.len(),
                first.unique,
                first.error,
                first.body.len()
            ))),
        }
    }

    /// INIT with these versions and flags (`max_readahead` [`MAX_READAHEAD`]); the reply as it is.
    pub fn init_with(
        &mut self,
        major: u32,
        minor: u32,
        flags: u32,
        flags2: u32,
    ) -> io::Result<Reply> {
        let i = InitIn {
            major,
            minor,
            max_readahead: MAX_READAHEAD,
            flags,
            flags2,
            ..Default::default()
        };
        self.call(opcode::INIT, 0, &i.to_bytes())
    }

    /// A successful INIT as kernel 7.`minor`: the decoded reply, which must be the full 64 bytes
    /// (or the 24 bytes kernels before 7.23 expect, decoded with the later fields zero).
    pub fn init(&mut self, minor: u32, flags: u32, flags2: u32) -> io::Result<InitOut> {
        let r = self.init_with(KERNEL_VERSION, minor, flags, flags2)?;
        if r.error != 0 {
            return Err(io::Error::other(format!(
                "INIT (7.{minor}) answered with error {}",
                r.error
            )));
        }
        let want = if minor < 23 { 24 } else { InitOut::SIZE };
        if r.body.len() != want {
            return Err(invalid(format!(
                "INIT (7.{minor}) reply has {} body bytes, expected {want}",
                r.body.len()
            )));
        }
        let mut full = [0u8; InitOut::SIZE];
        full[..want].copy_from_slice(&r.body);
        InitOut::decode(&full, opcode::INIT, OutHeader::SIZE).map_err(|e| invalid(e.to_string()))
    }

    /// A successful INIT as a recent kernel (7.[`KERNEL_MINOR_VERSION`]) offering [`OFFER_FLAGS`] and
    /// [`OFFER_FLAGS2`] plus `extra_flags2` (e.g. a famfs bit): the decoded reply.
    pub fn init_offer(&mut self, extra_flags2: u32) -> io::Result<InitOut> {
        self.init(
            KERNEL_MINOR_VERSION,
            OFFER_FLAGS,
            OFFER_FLAGS2 | extra_flags2,
        )
    }
}
