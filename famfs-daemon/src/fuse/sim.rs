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
//! Owns: the kernel end of the socket pair and the serving thread's lifetime. Must not know the famfs
//! on-media format or namespace (`famfs`, `server`) and must not change how the session behaves: the
//! serving thread runs `Session::run` and then reads its allocation count, nothing else. All
//! encoding, decoding and allocation here happen on the caller's thread, so the
//! no-allocation-per-request checks measure the session alone. Nothing panics: failures are
//! `io::Error`s naming the opcode, unique, byte offset or deadline involved.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    io::{self, IoSlice},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    path::PathBuf,
    sync::{
        Arc, Condvar, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, sync_channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    Channel, DialectConfig, Filesystem, RequestRecord, Session, SessionConfig,
    abi::{
        self, BatchForgetIn, DirentHead, EntryOut, ForgetOne, GetFmapIn, GetattrIn, GetxattrIn,
        InHeader, InitIn, InitOut, KERNEL_MINOR_VERSION, KERNEL_VERSION, OpenIn, OutHeader, ReadIn,
        WireField, WriteIn, opcode,
    },
};

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

/// One message from the session: a reply (`unique` of its request) or a notification (`unique` 0,
/// `error` = notify code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub unique: u64,
    /// `-errno`, 0 for success (or the notify code).
    pub error: i32,
    /// What follows the 16-byte `fuse_out_header`.
    pub body: Vec<u8>,
}

impl Reply {
    /// Bytes on the wire, header included (equal to the header's `len`, which `recv` checked).
    pub fn wire_len(&self) -> usize {
        OutHeader::SIZE + self.body.len()
    }

    /// The body as one wire struct: the reply must be a success of exactly `T`'s size.
    pub fn decode<T: WireField>(&self) -> io::Result<T> {
        let what = std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("?");
        if self.error != 0 {
            return Err(io::Error::other(format!(
                "unique {}: expected a {what}, got error {}",
                self.unique, self.error
            )));
        }
        if self.body.len() != T::LEN {
            return Err(invalid(format!(
                "unique {}: a {what} is {} bytes, the reply body has {}",
                self.unique,
                T::LEN,
                self.body.len()
            )));
        }
        Ok(T::read(&self.body))
    }
}

/// A READDIR entry as the kernel reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirent {
    pub ino: u64,
    /// Offset of the next entry.
    pub off: u64,
    /// `DT_*` type.
    pub typ: u32,
    pub name: String,
}

impl Dirent {
    pub fn new(ino: u64, off: u64, typ: u32, name: &str) -> Dirent {
        Dirent {
            ino,
            off,
            typ,
            name: name.to_string(),
        }
    }
}

/// A READDIRPLUS entry: the entry (attributes, lookup reference) and its dirent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirentPlus {
    pub entry: EntryOut,
    pub dirent: Dirent,
}

/// The dirent at `pos` of `b` and the position of the next one.
fn dirent_at(b: &[u8], pos: usize, base: usize) -> io::Result<(Dirent, usize)> {
    let h = DirentHead::decode(&b[pos..], opcode::READDIR, base + pos)
        .map_err(|e| invalid(format!("dirent at byte {}: {e}", base + pos)))?;
    let name_at = pos + DirentHead::SIZE;
    let namelen = h.namelen as usize;
    let next = pos + abi::dirent_size(namelen);
    if next > b.len() {
        return Err(invalid(format!(
            "dirent at byte {}: a name of {namelen} bytes (padded) runs past the end at {}",
            base + pos,
            base + b.len()
        )));
    }
    let name = String::from_utf8_lossy(&b[name_at..name_at + namelen]).into_owned();
    Ok((
        Dirent {
            ino: h.ino,
            off: h.off,
            typ: h.typ,
            name,
        },
        next,
    ))
}

/// Parse a READDIR reply body: packed dirents, each padded to 8 bytes.
pub fn parse_dirents(b: &[u8]) -> io::Result<Vec<Dirent>> {
    let mut v = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let (d, next) = dirent_at(b, pos, 0)?;
        v.push(d);
        pos = next;
    }
    Ok(v)
}

/// Parse a READDIRPLUS reply body: `fuse_entry_out` then a dirent, per name.
pub fn parse_direntplus(b: &[u8]) -> io::Result<Vec<DirentPlus>> {
    let mut v = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let entry = EntryOut::decode(&b[pos..], opcode::READDIRPLUS, pos)
            .map_err(|e| invalid(format!("direntplus at byte {pos}: {e}")))?;
        let d_at = pos + EntryOut::SIZE;
        let (dirent, next) = dirent_at(&b[d_at..], 0, d_at)?;
        v.push(DirentPlus { entry, dirent });
        pos = d_at + next;
    }
    Ok(v)
}

/// Bytes from whitespace-separated hex pairs (`"00 0a ff"`); an error names the bad token's index.
pub fn hex(s: &str) -> io::Result<Vec<u8>> {
    s.split_whitespace()
        .enumerate()
        .map(|(i, t)| {
            u8::from_str_radix(t, 16).map_err(|e| invalid(format!("hex token {i} {t:?}: {e}")))
        })
        .collect()
}

// Request bodies.

/// `fuse_getattr_in` with no flags.
pub fn getattr_in() -> [u8; GetattrIn::SIZE] {
    GetattrIn::default().to_bytes()
}

/// `fuse_read_in` (READ, READDIR, READDIRPLUS).
pub fn read_in(fh: u64, offset: u64, size: u32) -> [u8; ReadIn::SIZE] {
    ReadIn {
        fh,
        offset,
        size,
        ..Default::default()
    }
    .to_bytes()
}

/// `fuse_open_in` (OPEN, OPENDIR) with `flags` (`O_*`).
pub fn open_in(flags: u32) -> [u8; OpenIn::SIZE] {
    OpenIn {
        flags,
        ..Default::default()
    }
    .to_bytes()
}

/// A famfs GET_FMAP body announcing a `size`-byte reply buffer (RFC V2 sends it; V3 sends none).
pub fn fmap_size_body(size: u32) -> [u8; GetFmapIn::SIZE] {
    GetFmapIn {
        size,
        ..Default::default()
    }
    .to_bytes()
}

/// A name as requests carry it: the bytes, then a NUL.
pub fn name(n: impl AsRef<[u8]>) -> Vec<u8> {
    let n = n.as_ref();
    let mut v = Vec::with_capacity(n.len() + 1);
    v.extend_from_slice(n);
    v.push(0);
    v
}

/// `fuse_write_in` for `data` at `offset`, followed by the data.
pub fn write_in(fh: u64, offset: u64, data: &[u8]) -> Vec<u8> {
    let mut v = WriteIn {
        fh,
        offset,
        size: u32::try_from(data.len()).unwrap_or(u32::MAX),
        ..Default::default()
    }
    .to_bytes()
    .to_vec();
    v.extend_from_slice(data);
    v
}

/// `fuse_getxattr_in` for a `size`-byte buffer, then the attribute's name and its NUL.
pub fn getxattr_in(size: u32, attr: &[u8]) -> Vec<u8> {
    let mut v = GetxattrIn {
        size,
        ..Default::default()
    }
    .to_bytes()
    .to_vec();
    v.extend_from_slice(&name(attr));
    v
}

/// A FORGET body: `nlookup`.
pub fn forget_in(nlookup: u64) -> [u8; 8] {
    nlookup.to_ne_bytes()
}

/// A BATCH_FORGET body for `(nodeid, nlookup)` pairs.
pub fn batch_forget_in(nodes: &[(u64, u64)]) -> Vec<u8> {
    let mut v = BatchForgetIn {
        count: u32::try_from(nodes.len()).unwrap_or(u32::MAX),
        ..Default::default()
    }
    .to_bytes()
    .to_vec();
    for &(nodeid, nlookup) in nodes {
        v.extend_from_slice(&ForgetOne { nodeid, nlookup }.to_bytes());
    }
    v
}

// The kernel side.

/// Whether the serving thread has ended (set on its way out, also when it panics).
#[derive(Debug, Default)]
struct Ended {
    done: Mutex<bool>,
    cv: Condvar,
    /// The serving thread's [`thread_allocations`] when `Session::run` returned.
    allocations: AtomicU64,
}

impl Ended {
    fn is_done(&self) -> bool {
        *self.done.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self) {
        *self.done.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.cv.notify_all();
    }

    /// Wait until done or `timeout` passes; true when done.
    fn wait(&self, timeout: Duration) -> bool {
        let g = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        let (g, _) = self
            .cv
            .wait_timeout_while(g, timeout, |done| !*done)
            .unwrap_or_else(PoisonError::into_inner);
        *g
    }
}

/// Sets [`Ended`] when dropped: at the end of the serving thread's closure, or while it unwinds.
struct MarkEnded<'a>(&'a Ended);

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
    /// The serving thread, when a [`Sim`] runs one: a wait for a reply fails as soon as it ended.
    server: Option<Arc<Ended>>,
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

// The serving side.

/// How to start a [`Sim`]; see [`Sim::builder`].
pub struct SimBuilder<F> {
    fs: F,
    cfg: SessionConfig,
    workers: usize,
    records: Option<usize>,
    timeout: Duration,
}

impl<F: Filesystem + 'static> SimBuilder<F> {
    /// The session's configuration (default: [`SessionConfig::default`]).
    pub fn config(mut self, cfg: SessionConfig) -> Self {
        self.cfg = cfg;
        self
    }

    /// Worker threads of the session (default 1: requests are served in order).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Give the session a bounded record sink of `capacity` (replacing the config's), drained by
    /// [`Sim::records`] or taken with [`Sim::take_records`].
    pub fn records(mut self, capacity: usize) -> Self {
        self.records = Some(capacity);
        self
    }

    /// How long a receive waits for a message (default [`DEFAULT_TIMEOUT`]); also bounds the wait
    /// for the session to end in [`Sim::stop`] and on drop.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Create the socket pair and start serving on a new thread.
    pub fn start(self) -> io::Result<Sim<F>> {
        let SimBuilder {
            fs,
            mut cfg,
            workers,
            records,
            timeout,
        } = self;
        let (mut kernel, channel) = Kernel::pair()?;
        kernel.set_timeout(timeout);
        let records = records.map(|cap| {
            let (tx, rx) = sync_channel(cap);
            cfg.records = Some(tx);
            rx
        });
        let session = Arc::new(Session::new(fs, channel, cfg));
        let ended = Arc::new(Ended::default());
        kernel.server = Some(ended.clone());
        let (s2, e2) = (session.clone(), ended.clone());
        let thread = std::thread::Builder::new()
            .name("fuse-sim-session".into())
            .spawn(move || {
                let _mark = MarkEnded(&e2);
                let r = s2.run(workers);
                e2.allocations
                    .store(thread_allocations(), Ordering::Relaxed);
                r
            })
            .map_err(|e| context(e, "spawn the session thread"))?;
        Ok(Sim {
            kernel,
            session,
            thread: Some(thread),
            ended,
            records,
            timeout,
        })
    }
}

/// A [`Kernel`] and the [`Session`] it talks to, served on a thread of its own. Dereferences to the
/// kernel side (`sim.call(..)`, `sim.recv()`, ...). Dropping it closes the kernel side and waits (at
/// most the timeout) for the session to end.
pub struct Sim<F: Filesystem + 'static> {
    kernel: Kernel,
    session: Arc<Session<F>>,
    thread: Option<JoinHandle<io::Result<()>>>,
    ended: Arc<Ended>,
    records: Option<Receiver<RequestRecord>>,
    timeout: Duration,
}

impl<F: Filesystem + 'static> Sim<F> {
    /// Serve `fs`: configure, then [`SimBuilder::start`].
    pub fn builder(fs: F) -> SimBuilder<F> {
        SimBuilder {
            fs,
            cfg: SessionConfig::default(),
            workers: 1,
            records: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn session(&self) -> &Session<F> {
        &self.session
    }

    pub fn fs(&self) -> &F {
        self.session.fs()
    }

    pub fn kernel(&mut self) -> &mut Kernel {
        &mut self.kernel
    }

    /// The records handed over so far (none without [`SimBuilder::records`]). Each record is sent
    /// after its reply, so read them after the reply to the last request of interest, or after
    /// [`Sim::stop`].
    pub fn records(&self) -> Vec<RequestRecord> {
        self.records
            .as_ref()
            .map(|rx| rx.try_iter().collect())
            .unwrap_or_default()
    }

    /// The record receiver, for a consumer of its own (e.g. a join worker).
    pub fn take_records(&mut self) -> Option<Receiver<RequestRecord>> {
        self.records.take()
    }

    /// The heap allocations the serving thread made from its start until `Session::run` returned
    /// (the session's workers beyond the first run on threads of their own), once it has ended;
    /// counted only when the binary's global allocator is [`CountingAlloc`], 0 otherwise.
    pub fn serving_thread_allocations(&self) -> Option<u64> {
        // `done` is set (under its lock) after the count was stored.
        self.ended
            .is_done()
            .then(|| self.ended.allocations.load(Ordering::Relaxed))
    }

    /// Whether the serving thread is still running.
    pub fn is_running(&self) -> bool {
        !self.ended.is_done()
    }

    /// Wait up to `timeout` for the session to end by itself (after DESTROY, with the kernel side
    /// still open) and return what `Session::run` returned. A session still running after `timeout`
    /// is an error and keeps running.
    pub fn wait_ended(&mut self, timeout: Duration) -> io::Result<()> {
        let Some(t) = self.thread.take() else {
            return Ok(());
        };
        if !self.ended.wait(timeout) {
            self.thread = Some(t);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the session did not end within {timeout:?}"),
            ));
        }
        t.join()
            .unwrap_or_else(|_| Err(io::Error::other("the session thread panicked")))
    }

    /// Close the kernel side and wait (at most the timeout) for the session to end; what
    /// `Session::run` returned. Calling it again returns `Ok`.
    pub fn stop(&mut self) -> io::Result<()> {
        self.kernel.close();
        self.wait_ended(self.timeout)
    }
}

impl<F: Filesystem + 'static> std::ops::Deref for Sim<F> {
    type Target = Kernel;

    fn deref(&self) -> &Kernel {
        &self.kernel
    }
}

impl<F: Filesystem + 'static> std::ops::DerefMut for Sim<F> {
    fn deref_mut(&mut self) -> &mut Kernel {
        &mut self.kernel
    }
}

impl<F: Filesystem + 'static> Drop for Sim<F> {
    fn drop(&mut self) {
        // A session that does not end within the timeout is left running (detached), never waited
        // for without bound.
        let _ = self.stop();
    }
}

// Allocation counting.

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Heap allocations (`alloc`, `alloc_zeroed`, `realloc`) this thread has made so far, when the
/// binary's global allocator is [`CountingAlloc`]; 0 otherwise.
pub fn thread_allocations() -> u64 {
    ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}

fn count_allocation() {
    // `try_with`: allocations during thread-local teardown are not counted (never a panic).
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

/// The system allocator, counting allocations per thread ([`thread_allocations`]). For test
/// binaries that check a thread allocates nothing per request:
/// `#[global_allocator] static GLOBAL: CountingAlloc = CountingAlloc;`
pub struct CountingAlloc;

// SAFETY: forwards every call to the system allocator unchanged; only counts (in a const-initialised
// thread-local `Cell`, which itself never allocates).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}
