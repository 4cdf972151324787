//! The dispatcher: reads requests from a [`Channel`], negotiates INIT (protocol spec §2 and the famfs
//! dialect rule §5), decodes each request, calls the [`Filesystem`], writes exactly one reply (or none
//! for FORGET / BATCH_FORGET / NOTIFY_REPLY / INTERRUPT), and reports a [`RequestRecord`] per request
//! into a bounded, non-blocking sink plus per-opcode atomic counters.
//!
//! Owns: the worker loop, request validation, reply framing, INIT, famfs GET_FMAP / GET_DAXDEV size
//! handling, notifications. Must not contain filesystem logic (that is the [`Filesystem`] impl) or
//! block on its record consumer. Hot path: each worker reuses its request, data and fmap buffers; no
//! allocation per request (log lines are rate-limited and off the normal path).

use std::{
    ffi::OsStr,
    io::{self, IoSlice},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    sync::{
        Condvar, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
        mpsc::{SyncSender, TrySendError},
    },
    time::{Duration, Instant},
};

use super::{
    Errno,
    abi::{
        self, AttrOut, BatchForgetIn, COMPAT_22_INIT_OUT_SIZE, DecodeError, EntryOut, FlushIn,
        ForgetIn, ForgetOne, FsyncIn, GetattrIn, GetxattrIn, GetxattrOut, InHeader, InitIn,
        InitOut, InterruptIn, KERNEL_MINOR_VERSION, KERNEL_VERSION, Kstatfs, LkIn,
        MIN_KERNEL_MINOR, MIN_READ_BUFFER, NotifyInvalEntryOut, NotifyInvalInodeOut, OpenIn,
        OpenOut, OutHeader, ReadIn, ReleaseIn, SetattrIn, WireField, WriteIn, WriteOut, init_flags,
        notify, opcode,
    },
    channel::Channel,
    dialect::{self, DialectConfig, DialectSpec, FmapSize, Reason},
    fmap,
    reply::{DirentBuf, DirentPlusBuf, FmapReply},
    stats::{RateLimit, SessionStats},
};
use crate::{join::RequestRecord, util::monotonic_ns};

const PAGE: usize = 4096;

/// INIT capabilities the session always asks for (when offered).
pub const DEFAULT_INIT_FLAGS: u64 = init_flags::ASYNC_READ
    | init_flags::BIG_WRITES
    | init_flags::PARALLEL_DIROPS
    | init_flags::MAX_PAGES;

/// Bits a filesystem may not request through [`Filesystem::init_flags`]: the famfs bits are granted
/// only by the dialect rule, INIT_EXT is always set.
const RESERVED_INIT_FLAGS: u64 = init_flags::FAMFS_DAX_FMAP_RFC
    | init_flags::FAMFS_DAX_FMAP_V3
    | init_flags::INIT_EXT
    | init_flags::INIT_RESERVED;

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

/// A filesystem served by a [`Session`]. Every method has a default: requests answer ENOSYS
/// (FORGET/BATCH_FORGET do nothing). Methods are called concurrently from the session's workers.
///
/// Errors are positive errnos ([`Errno`]); LOOKUP of a missing name should answer `ENOENT` as an error
/// (not a negative entry), so names that appear later are found.
pub trait Filesystem: Send + Sync {
    /// INIT capability bits wanted beyond [`DEFAULT_INIT_FLAGS`] (e.g. `DO_READDIRPLUS` when
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

/// What INIT settled for a connection. Visible to the filesystem (every [`Request`]) and to callers
/// ([`Session::negotiated`], [`Session::wait_negotiated`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub kernel_major: u32,
    pub kernel_minor: u32,
    /// The minor both sides use: `min(kernel_minor, KERNEL_MINOR_VERSION)`.
    pub minor: u32,
    /// The kernel's offered 64-bit flag set (`flags | flags2 << 32`, flags2 only with INIT_EXT).
    pub offered: u64,
    /// The flags sent in the reply (accepted bits, INIT_EXT included).
    pub flags: u64,
    pub max_readahead: u32,
    pub max_write: u32,
    pub max_pages: u16,
    pub max_background: u16,
    pub congestion_threshold: u16,
    pub time_gran: u32,
    /// The famfs dialect in force, `None` when famfs mode is off.
    pub famfs: Option<&'static DialectSpec>,
    pub famfs_config: DialectConfig,
    /// Why famfs mode is on or off.
    pub famfs_reason: Reason,
    pub connection: u32,
    pub mount_epoch: u64,
    /// CLOCK_MONOTONIC ns at which INIT was received.
    pub init_ns: u64,
}

impl Negotiated {
    /// True when `flag` (an `init_flags` bit) was offered and accepted.
    pub fn has(&self, flag: u64) -> bool {
        self.flags & flag == flag
    }

    pub fn dialect(&self) -> Option<dialect::Dialect> {
        self.famfs.map(|s| s.dialect)
    }

    /// The GET_FMAP opcode in force (the join's `fmap_opcode`), if famfs mode is on.
    pub fn get_fmap_opcode(&self) -> Option<u32> {
        self.famfs.map(|s| s.get_fmap)
    }

    pub fn get_daxdev_opcode(&self) -> Option<u32> {
        self.famfs.map(|s| s.get_daxdev)
    }

    /// The opcode's name on this connection: famfs names for the negotiated famfs opcodes, upstream
    /// names otherwise.
    pub fn opcode_name(&self, op: u32) -> Option<&'static str> {
        match self.famfs {
            Some(s) if op == s.get_fmap => Some("GET_FMAP"),
            Some(s) if op == s.get_daxdev => Some("GET_DAXDEV"),
            _ => famfs_common::opcode::name(op),
        }
    }
}

/// How a session is set up.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The connection id put in every record ([`crate::fuse::Mount::connection`]).
    pub connection: u32,
    /// The mount epoch put in every record (distinguishes reused connection ids).
    pub mount_epoch: u64,
    pub dialect: DialectConfig,
    /// famfs mode is only enabled with a daxdev configured.
    pub daxdev_configured: bool,
    /// Where `auto` looks for `famfs_fuse_iomap_begin`.
    pub kallsyms: PathBuf,
    /// `max_write` announced in INIT (≥ 4096); also sizes `max_pages` and the worker buffers.
    pub max_write: u32,
    pub max_background: u16,
    pub congestion_threshold: u16,
    /// Bounded sink for per-request records; a full sink drops (and counts) instead of blocking.
    pub records: Option<SyncSender<RequestRecord>>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            connection: 0,
            mount_epoch: 0,
            dialect: DialectConfig::Off,
            daxdev_configured: false,
            kallsyms: PathBuf::from("/proc/kallsyms"),
            max_write: 1 << 20,
            max_background: 64,
            congestion_threshold: 48,
            records: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    Waiting,
    Negotiated,
    Ended,
}

/// A FUSE session: one filesystem served on one channel by `run(workers)` threads.
pub struct Session<F> {
    fs: F,
    channel: Channel,
    cfg: SessionConfig,
    max_write: u32,
    max_pages: u16,
    stats: std::sync::Arc<SessionStats>,
    negotiated: OnceLock<Negotiated>,
    state: Mutex<RunState>,
    state_cv: Condvar,
    destroyed: AtomicBool,
    log_limit: RateLimit,
}

impl<F> std::fmt::Debug for Session<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("channel", &self.channel)
            .field("connection", &self.cfg.connection)
            .field("negotiated", &self.negotiated.get())
            .finish_non_exhaustive()
    }
}

/// What a worker does after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    /// DESTROY answered or the connection is gone.
    Exit,
}

/// A reply as written (or not).
#[derive(Clone, Copy, Debug)]
struct Sent {
    error: i32,
    bytes: u32,
    gone: bool,
}

const NO_REPLY: Sent = Sent {
    error: 0,
    bytes: 0,
    gone: false,
};

impl<F: Filesystem> Session<F> {
    /// A session serving `fs` on `channel`. Nothing runs until [`Session::run`].
    pub fn new(fs: F, channel: Channel, cfg: SessionConfig) -> Session<F> {
        let max_write = cfg.max_write.max(PAGE as u32);
        let max_pages = u16::try_from(max_write.div_ceil(PAGE as u32)).unwrap_or(u16::MAX);
        Session {
            fs,
            channel,
            cfg,
            max_write,
            max_pages,
            stats: std::sync::Arc::new(SessionStats::default()),
            negotiated: OnceLock::new(),
            state: Mutex::new(RunState::Waiting),
            state_cv: Condvar::new(),
            destroyed: AtomicBool::new(false),
            log_limit: RateLimit::new(10_000_000_000, 20),
        }
    }

    pub fn fs(&self) -> &F {
        &self.fs
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// Per-opcode counters and health counters (shared; readable while running).
    pub fn stats(&self) -> &std::sync::Arc<SessionStats> {
        &self.stats
    }

    /// The INIT outcome, once INIT has been answered successfully.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.get()
    }

    /// Wait (on a condition variable) until INIT is negotiated, the session ends, or `timeout` passes.
    pub fn wait_negotiated(&self, timeout: Duration) -> Option<&Negotiated> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while *st == RunState::Waiting {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = match self.state_cv.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        drop(st);
        self.negotiated.get()
    }

    /// A handle for sending invalidation notifications on this session's channel.
    pub fn notifier(&self) -> Notifier {
        Notifier {
            ch: self.channel.clone(),
        }
    }

    /// Request buffer size per worker: `max(8192, 80 + max_write)` plus a page for extensions.
    pub fn request_buffer_size(&self) -> usize {
        MIN_READ_BUFFER.max(80 + self.max_write as usize) + PAGE
    }

    /// Data buffer size per worker (READ / READDIR / GETXATTR replies).
    pub fn data_buffer_size(&self) -> usize {
        (self.max_write as usize).max(usize::from(self.max_pages) * PAGE)
    }

    fn set_state(&self, s: RunState) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if *st != RunState::Ended {
            *st = s;
        }
        self.state_cv.notify_all();
    }

    fn destroy_once(&self) {
        if !self.destroyed.swap(true, Ordering::AcqRel) {
            self.fs.destroy();
        }
    }

    /// Serve until the connection ends (ENODEV after unmount, EOF on a socket, or DESTROY) with
    /// `workers` threads (at least one; this thread is one of them). With `/dev/fuse` each extra
    /// worker gets its own cloned fd (FUSE_DEV_IOC_CLONE), else they share the fd. Returns the first
    /// fatal read error, if any. Calls `Filesystem::destroy` once at the end.
    pub fn run(&self, workers: usize) -> io::Result<()> {
        let n = workers.max(1);
        let result = std::thread::scope(|scope| {
            let mut handles = Vec::with_capacity(n - 1);
            self.stats.workers.store(1, Ordering::Relaxed);
            for i in 1..n {
                let (ch, cloned) = self.channel.clone_for_worker();
                let spawned = std::thread::Builder::new()
                    .name(format!("fuse-worker-{i}"))
                    .spawn_scoped(scope, move || Worker::new(self, ch).run());
                match spawned {
                    Ok(h) => {
                        handles.push(h);
                        self.stats.workers.fetch_add(1, Ordering::Relaxed);
                        if cloned {
                            self.stats.cloned_fds.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        log::warn!("fuse: could not start worker {i}: {e}; serving with {i}");
                        break;
                    }
                }
            }
            log::info!(
                "fuse: serving connection {} with {} workers ({} on cloned fds)",
                self.cfg.connection,
                self.stats.workers(),
                self.stats.cloned_fds()
            );
            let mut result = Worker::new(self, self.channel.clone()).run();
            for h in handles {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("fuse worker panicked")));
                if result.is_ok() {
                    result = r;
                }
            }
            result
        });
        self.destroy_once();
        self.set_state(RunState::Ended);
        result
    }

    fn log_malformed(&self, op: u32, unique: u64, what: &dyn std::fmt::Display) {
        self.stats.malformed.fetch_add(1, Ordering::Relaxed);
        self.log_limited(format_args!(
            "malformed request opcode {op} ({}) unique {unique}: {what}",
            self.op_name(op)
        ));
    }

    fn log_limited(&self, args: std::fmt::Arguments<'_>) {
        if let Some(suppressed) = self.log_limit.check(monotonic_ns()) {
            if suppressed > 0 {
                log::warn!("fuse: {args} ({suppressed} similar lines suppressed)");
            } else {
                log::warn!("fuse: {args}");
            }
        }
    }

    fn op_name(&self, op: u32) -> &'static str {
        match self.negotiated.get() {
            Some(n) => n.opcode_name(op),
            None => famfs_common::opcode::name(op),
        }
        .unwrap_or("unknown")
    }
}

/// Sends FUSE notifications (unique 0, `error` = notify code). Clonable; usable from any thread.
#[derive(Clone, Debug)]
pub struct Notifier {
    ch: Channel,
}

impl Notifier {
    /// Invalidate the dentry `name` in directory `parent`. The kernel answers ENOENT when it has no
    /// such entry cached.
    pub fn inval_entry(&self, parent: u64, name: &[u8]) -> io::Result<()> {
        let namelen = u32::try_from(name.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::ENAMETOOLONG))?;
        let body = NotifyInvalEntryOut {
            parent,
            namelen,
            flags: 0,
        }
        .to_bytes();
        self.send(notify::INVAL_ENTRY, &[&body, name, &[0]])
    }

    /// Invalidate cached attributes and the data range `off..off+len` of `ino` (`len` 0 = to EOF,
    /// `off` < 0 = attributes only).
    pub fn inval_inode(&self, ino: u64, off: i64, len: i64) -> io::Result<()> {
        let body = NotifyInvalInodeOut { ino, off, len }.to_bytes();
        self.send(notify::INVAL_INODE, &[&body])
    }

    fn send(&self, code: i32, parts: &[&[u8]]) -> io::Result<()> {
        let len = OutHeader::SIZE + parts.iter().map(|p| p.len()).sum::<usize>();
        let len = u32::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let head = OutHeader {
            len,
            error: code,
            unique: 0,
        }
        .to_bytes();
        let mut iov = [IoSlice::new(&[]); 4];
        iov[0] = IoSlice::new(&head);
        for (slot, p) in iov[1..].iter_mut().zip(parts) {
            *slot = IoSlice::new(p);
        }
        let n = self.ch.send(&iov[..1 + parts.len().min(3)])?;
        if n != len as usize {
            return Err(io::Error::other(format!(
                "notification: wrote {n} of {len} bytes"
            )));
        }
        Ok(())
    }
}

/// One worker thread's state: its channel and reusable buffers.
struct Worker<'s, F> {
    req: Vec<u8>,
    ctx: Ctx<'s, F>,
}

struct Ctx<'s, F> {
    s: &'s Session<F>,
    ch: Channel,
    data: Vec<u8>,
    fmap: Vec<u8>,
    records: Option<SyncSender<RequestRecord>>,
    rec: RequestRecord,
}

impl<'s, F: Filesystem> Worker<'s, F> {
    fn new(s: &'s Session<F>, ch: Channel) -> Self {
        Worker {
            req: vec![0u8; s.request_buffer_size()],
            ctx: Ctx {
                s,
                ch,
                data: vec![0u8; s.data_buffer_size()],
                fmap: Vec::with_capacity(PAGE),
                records: s.cfg.records.clone(),
                rec: RequestRecord::default(),
            },
        }
    }

    fn run(mut self) -> io::Result<()> {
        loop {
            let n = match self.ctx.ch.receive(&mut self.req) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) => match e.raw_os_error() {
                    Some(libc::ENOENT | libc::EINTR | libc::EAGAIN) => continue,
                    Some(libc::ENODEV) => return Ok(()),
                    _ => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("read from the FUSE channel: {e}"),
                        ));
                    }
                },
            };
            let recv_ns = monotonic_ns();
            if self.ctx.handle(&self.req[..n], recv_ns) == Flow::Exit {
                return Ok(());
            }
        }
    }
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4).map(u32::read)
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    b.get(off..off + 8).map(u64::read)
}

/// Opcodes the kernel expects no reply to.
fn no_reply(op: u32) -> bool {
    matches!(
        op,
        opcode::FORGET | opcode::BATCH_FORGET | opcode::NOTIFY_REPLY | opcode::INTERRUPT
    )
}

impl<F: Filesystem> Ctx<'_, F> {
    /// Serve one request; always finishes with a record.
    fn handle(&mut self, msg: &[u8], recv_ns: u64) -> Flow {
        let s = self.s;
        self.rec = RequestRecord {
            mount_epoch: s.cfg.mount_epoch,
            connection: s.cfg.connection,
            recv_ns,
            ..Default::default()
        };
        // Framing: header, length field, extensions.
        if msg.len() < InHeader::SIZE {
            let op = u32_at(msg, 4).unwrap_or(0);
            let unique = u64_at(msg, 8);
            s.log_malformed(
                op,
                unique.unwrap_or(0),
                &format_args!(
                    "short read: {} bytes, the header alone is {}",
                    msg.len(),
                    InHeader::SIZE
                ),
            );
            let Some(unique) = unique else {
                // Nothing identifies the request: no reply, no record.
                return Flow::Continue;
            };
            s.stats.count_request(op);
            self.rec.opcode = op;
            self.rec.unique = unique;
            let sent = if no_reply(op) {
                NO_REPLY
            } else {
                self.send_err(unique, Errno::EIO)
            };
            return self.finish(sent);
        }
        let h = InHeader::read(msg);
        s.stats.count_request(h.opcode);
        self.rec.opcode = h.opcode;
        self.rec.unique = h.unique;
        self.rec.nodeid = h.nodeid;
        let ext = usize::from(h.total_extlen) * 8;
        let framing = if h.len as usize != msg.len() {
            Some(format!(
                "length field {} but {} bytes were read",
                h.len,
                msg.len()
            ))
        } else if InHeader::SIZE + ext > msg.len() {
            Some(format!(
                "extensions of {ext} bytes do not fit a {}-byte request",
                msg.len()
            ))
        } else {
            None
        };
        if let Some(what) = framing {
            s.log_malformed(h.opcode, h.unique, &what);
            let sent = if no_reply(h.opcode) {
                NO_REPLY
            } else {
                self.send_err(h.unique, Errno::EIO)
            };
            return self.finish(sent);
        }
        let body = &msg[InHeader::SIZE..msg.len() - ext];
        let (sent, flow) = match self.dispatch(&h, body) {
            Ok(r) => r,
            Err(e) => {
                s.log_malformed(h.opcode, h.unique, &e);
                let sent = if no_reply(h.opcode) {
                    NO_REPLY
                } else {
                    self.send_err(h.unique, Errno::EINVAL)
                };
                (sent, Flow::Continue)
            }
        };
        match self.finish(sent) {
            Flow::Exit => Flow::Exit,
            Flow::Continue => flow,
        }
    }

    /// Complete the record, count errors, deliver the record without blocking.
    fn finish(&mut self, sent: Sent) -> Flow {
        let s = self.s;
        self.rec.reply_ns = monotonic_ns();
        self.rec.reply_bytes = sent.bytes;
        self.rec.error = sent.error;
        if sent.error != 0 {
            s.stats.count_error(self.rec.opcode);
        }
        if let Some(tx) = &self.records {
            match tx.try_send(self.rec) {
                Ok(()) => {
                    s.stats.records_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    s.stats.records_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if sent.gone {
            Flow::Exit
        } else {
            Flow::Continue
        }
    }

    /// Write one reply: header + `parts` in one `writev`.
    fn send(&self, unique: u64, error: i32, parts: &[&[u8]]) -> Sent {
        send_on(self.s, &self.ch, unique, error, parts)
    }

    fn send_err(&self, unique: u64, e: Errno) -> Sent {
        self.send(unique, e.wire(), &[])
    }

    fn send_result<const N: usize>(&self, unique: u64, r: Result<[u8; N], Errno>) -> Sent {
        match r {
            Ok(b) => self.send(unique, 0, &[&b]),
            Err(e) => self.send_err(unique, e),
        }
    }

    fn send_unit(&self, unique: u64, r: Result<(), Errno>) -> Sent {
        match r {
            Ok(()) => self.send(unique, 0, &[]),
            Err(e) => self.send_err(unique, e),
        }
    }

    /// Decode and serve. `Err` = the body is malformed (answered EINVAL by the caller).
    fn dispatch(&mut self, h: &InHeader, body: &[u8]) -> Result<(Sent, Flow), DecodeError> {
        let s = self.s;
        let op = h.opcode;
        let u = h.unique;
        const B: usize = InHeader::SIZE;
        if op == opcode::INIT {
            return Ok((self.init(h, body)?, Flow::Continue));
        }
        let Some(neg) = s.negotiated.get() else {
            if no_reply(op) {
                return Ok((NO_REPLY, Flow::Continue));
            }
            s.log_limited(format_args!(
                "opcode {op} unique {u} before INIT was negotiated: EIO"
            ));
            return Ok((self.send_err(u, Errno::EIO), Flow::Continue));
        };
        let req = Request {
            unique: u,
            opcode: op,
            nodeid: h.nodeid,
            uid: h.uid,
            gid: h.gid,
            pid: h.pid,
            negotiated: neg,
        };
        let ino = h.nodeid;
        let fs = &s.fs;
        if let Some(spec) = neg.famfs {
            if op == spec.get_fmap {
                return Ok((self.get_fmap(&req, spec, body), Flow::Continue));
            }
            if op == spec.get_daxdev {
                return Ok((self.get_daxdev(&req), Flow::Continue));
            }
        }
        let sent = match op {
            opcode::LOOKUP => {
                let name = abi::c_name(body, op, B)?;
                let r = fs.lookup(&req, ino, OsStr::from_bytes(name));
                self.send_result(u, r.map(|e| e.to_bytes()))
            }
            opcode::FORGET => {
                let a = ForgetIn::decode(body, op, B)?;
                fs.forget(&req, ino, a.nlookup);
                NO_REPLY
            }
            opcode::BATCH_FORGET => {
                let a = BatchForgetIn::decode(body, op, B)?;
                let list = &body[BatchForgetIn::SIZE..];
                let want = a.count as usize * ForgetOne::SIZE;
                if want > list.len() {
                    // Serve the entries present; no reply either way.
                    s.log_malformed(
                        op,
                        u,
                        &format_args!(
                            "count {} needs {want} bytes of entries, request has {}",
                            a.count,
                            list.len()
                        ),
                    );
                }
                fs.batch_forget(&req, ForgetList::new(&list[..want.min(list.len())]));
                NO_REPLY
            }
            opcode::GETATTR => {
                let a = GetattrIn::decode(body, op, B)?;
                let r = fs.getattr(&req, ino, &a);
                self.send_result(u, r.map(|a| a.to_bytes()))
            }
            opcode::SETATTR => {
                let a = SetattrIn::decode(body, op, B)?;
                let r = fs.setattr(&req, ino, &a);
                self.send_result(u, r.map(|a| a.to_bytes()))
            }
            opcode::STATFS => {
                let r = fs.statfs(&req, ino);
                self.send_result(u, r.map(|a| a.to_bytes()))
            }
            opcode::OPEN | opcode::OPENDIR => {
                let a = OpenIn::decode(body, op, B)?;
                let r = if op == opcode::OPEN {
                    fs.open(&req, ino, &a)
                } else {
                    fs.opendir(&req, ino, &a)
                };
                self.send_result(u, r.map(|o| o.to_bytes()))
            }
            opcode::RELEASE | opcode::RELEASEDIR => {
                let a = ReleaseIn::decode(body, op, B)?;
                let r = if op == opcode::RELEASE {
                    fs.release(&req, ino, &a)
                } else {
                    fs.releasedir(&req, ino, &a)
                };
                self.send_unit(u, r)
            }
            opcode::FLUSH => {
                let a = FlushIn::decode(body, op, B)?;
                let r = fs.flush(&req, ino, &a);
                self.send_unit(u, r)
            }
            opcode::FSYNC => {
                let a = FsyncIn::decode(body, op, B)?;
                let r = fs.fsync(&req, ino, &a);
                self.send_unit(u, r)
            }
            opcode::READ => {
                let a = ReadIn::decode(body, op, B)?;
                self.read(&req, &a)
            }
            opcode::WRITE => {
                let a = WriteIn::decode(body, op, B)?;
                let data = &body[WriteIn::SIZE..];
                let Some(data) = data.get(..a.size as usize) else {
                    return Err(DecodeError {
                        opcode: op,
                        what: "write data",
                        field: "data",
                        offset: B + WriteIn::SIZE,
                        need: a.size as usize,
                        have: data.len(),
                    });
                };
                match fs.write(&req, ino, &a, data) {
                    Ok(n) => {
                        self.rec.io_bytes = n;
                        let out = WriteOut {
                            size: n,
                            ..Default::default()
                        };
                        self.send(u, 0, &[&out.to_bytes()])
                    }
                    Err(e) => self.send_err(u, e),
                }
            }
            opcode::GETXATTR => {
                let a = GetxattrIn::decode(body, op, B)?;
                let name = abi::c_name(&body[GetxattrIn::SIZE..], op, B + GetxattrIn::SIZE)?;
                self.getxattr(&req, &a, OsStr::from_bytes(name))
            }
            opcode::READDIR | opcode::READDIRPLUS => {
                let a = ReadIn::decode(body, op, B)?;
                self.readdir(&req, &a, op == opcode::READDIRPLUS)
            }
            opcode::SETLK | opcode::SETLKW => {
                let a = LkIn::decode(body, op, B)?;
                let r = fs.setlk(&req, ino, &a, op == opcode::SETLKW);
                self.send_unit(u, r)
            }
            opcode::INTERRUPT => {
                // Validated, then ignored: every request is answered when it completes anyway.
                InterruptIn::decode(body, op, B)?;
                NO_REPLY
            }
            opcode::NOTIFY_REPLY => NO_REPLY,
            opcode::DESTROY => {
                s.destroy_once();
                let sent = self.send(u, 0, &[]);
                return Ok((sent, Flow::Exit));
            }
            _ => self.send_err(u, Errno::ENOSYS),
        };
        Ok((sent, Flow::Continue))
    }

    fn read(&mut self, req: &Request<'_>, a: &ReadIn) -> Sent {
        let s = self.s;
        let lim = (a.size as usize).min(self.data.len());
        let Ctx { ch, data, rec, .. } = self;
        match s.fs.read(req, req.nodeid, a, &mut data[..lim]) {
            Ok(bytes) => {
                let bytes = if bytes.len() > a.size as usize {
                    s.log_limited(format_args!(
                        "READ unique {}: filesystem returned {} bytes for a {}-byte read; cut",
                        req.unique,
                        bytes.len(),
                        a.size
                    ));
                    &bytes[..a.size as usize]
                } else {
                    bytes
                };
                rec.io_bytes = bytes.len() as u32;
                send_on(s, ch, req.unique, 0, &[bytes])
            }
            Err(e) => send_on(s, ch, req.unique, e.wire(), &[]),
        }
    }

    fn getxattr(&mut self, req: &Request<'_>, a: &GetxattrIn, name: &OsStr) -> Sent {
        let s = self.s;
        let Ctx { ch, data, .. } = self;
        match s.fs.getxattr(req, req.nodeid, name, &mut data[..]) {
            Ok(value) => {
                if a.size == 0 {
                    match u32::try_from(value.len()) {
                        Ok(size) => {
                            let out = GetxattrOut {
                                size,
                                ..Default::default()
                            };
                            send_on(s, ch, req.unique, 0, &[&out.to_bytes()])
                        }
                        Err(_) => send_on(s, ch, req.unique, Errno::ERANGE.wire(), &[]),
                    }
                } else if value.len() > a.size as usize {
                    send_on(s, ch, req.unique, Errno::ERANGE.wire(), &[])
                } else {
                    send_on(s, ch, req.unique, 0, &[value])
                }
            }
            Err(e) => send_on(s, ch, req.unique, e.wire(), &[]),
        }
    }

    fn readdir(&mut self, req: &Request<'_>, a: &ReadIn, plus: bool) -> Sent {
        let s = self.s;
        let lim = (a.size as usize).min(self.data.len());
        let Ctx { ch, data, .. } = self;
        let buf = &mut data[..lim];
        let r = if plus {
            let mut out = DirentPlusBuf::new(buf);
            s.fs.readdirplus(req, req.nodeid, a, &mut out)
                .map(|()| out.len())
        } else {
            let mut out = DirentBuf::new(buf);
            s.fs.readdir(req, req.nodeid, a, &mut out)
                .map(|()| out.len())
        };
        match r {
            Ok(n) => send_on(s, ch, req.unique, 0, &[&data[..n]]),
            Err(e) => send_on(s, ch, req.unique, e.wire(), &[]),
        }
    }

    fn get_fmap(&mut self, req: &Request<'_>, spec: &DialectSpec, body: &[u8]) -> Sent {
        let s = self.s;
        let limit = spec.fmap_limit(body);
        let Ctx { ch, fmap, rec, .. } = self;
        let mut out = FmapReply::new(fmap);
        if let Err(e) = s.fs.get_fmap(req, req.nodeid, &mut out) {
            return send_on(s, ch, req.unique, e.wire(), &[]);
        }
        let Some((total, extents)) = out.encoded() else {
            s.log_limited(format_args!(
                "GET_FMAP unique {} nodeid {}: filesystem returned no fmap: EIO",
                req.unique, req.nodeid
            ));
            return send_on(s, ch, req.unique, Errno::EIO.wire(), &[]);
        };
        match spec.fmap_size(limit, total) {
            FmapSize::Full => {
                rec.fmap_bytes = total as u32;
                rec.fmap_extents = extents as u32;
                send_on(s, ch, req.unique, 0, &[out.bytes()])
            }
            FmapSize::NeededSize(need) => {
                rec.retry = true;
                send_on(s, ch, req.unique, 0, &[&need.to_ne_bytes()])
            }
            FmapSize::TooBig => {
                s.log_limited(format_args!(
                    "GET_FMAP unique {} nodeid {}: fmap of {total} bytes ({extents} extents) does not \
                     fit the kernel's {limit}-byte buffer and {} has no retry: EINVAL",
                    req.unique, req.nodeid, spec.name
                ));
                send_on(s, ch, req.unique, Errno::EINVAL.wire(), &[])
            }
        }
    }

    fn get_daxdev(&mut self, req: &Request<'_>) -> Sent {
        let s = self.s;
        match s.fs.get_daxdev(req, req.nodeid) {
            Ok(path) => match fmap::daxdev_reply(req.nodeid, path.as_os_str().as_bytes()) {
                Some(out) => self.send(req.unique, 0, &[&out.to_bytes()]),
                None => {
                    s.log_limited(format_args!(
                        "GET_DAXDEV unique {} index {}: index or path {} does not fit the reply: EINVAL",
                        req.unique,
                        req.nodeid,
                        path.display()
                    ));
                    self.send_err(req.unique, Errno::EINVAL)
                }
            },
            Err(e) => self.send_err(req.unique, e),
        }
    }

    fn init(&mut self, h: &InHeader, body: &[u8]) -> Result<Sent, DecodeError> {
        let s = self.s;
        let u = h.unique;
        // Kernels before 7.36 send only 16 bytes; the rest reads as zero.
        if body.len() < 16 {
            // Names the first field that does not fit.
            return Err(InitIn::decode(body, opcode::INIT, InHeader::SIZE)
                .err()
                .unwrap_or(DecodeError {
                    opcode: opcode::INIT,
                    what: InitIn::C_NAME,
                    field: "flags",
                    offset: InHeader::SIZE + 12,
                    need: 4,
                    have: body.len().saturating_sub(12),
                }));
        }
        let mut raw = [0u8; InitIn::SIZE];
        let n = body.len().min(InitIn::SIZE);
        raw[..n].copy_from_slice(&body[..n]);
        let arg = InitIn::read(&raw);
        if s.negotiated.get().is_some() {
            s.log_limited(format_args!(
                "second INIT (unique {u}) after negotiation: EINVAL"
            ));
            return Ok(self.send_err(u, Errno::EINVAL));
        }
        if arg.major < KERNEL_VERSION {
            s.log_limited(format_args!(
                "INIT: kernel protocol {}.{} is older than {KERNEL_VERSION}: EPROTO",
                arg.major, arg.minor
            ));
            return Ok(self.send_err(u, Errno::EPROTO));
        }
        if arg.major > KERNEL_VERSION {
            // Announce our major only; the kernel sends a second INIT.
            let out = InitOut {
                major: KERNEL_VERSION,
                minor: KERNEL_MINOR_VERSION,
                ..Default::default()
            };
            return Ok(self.send(u, 0, &[&out.to_bytes()]));
        }
        if arg.minor < MIN_KERNEL_MINOR {
            s.log_limited(format_args!(
                "INIT: kernel protocol 7.{} is older than 7.{MIN_KERNEL_MINOR}: EPROTO",
                arg.minor
            ));
            return Ok(self.send_err(u, Errno::EPROTO));
        }
        let ext = u64::from(arg.flags) & init_flags::INIT_EXT != 0;
        let offered = u64::from(arg.flags) | if ext { u64::from(arg.flags2) << 32 } else { 0 };
        let cfg = &s.cfg;
        let res = dialect::resolve(cfg.dialect, offered, cfg.daxdev_configured, || {
            dialect::kallsyms_has_famfs(&cfg.kallsyms)
        });
        let desired = DEFAULT_INIT_FLAGS | (s.fs.init_flags() & !RESERVED_INIT_FLAGS);
        let mut want = desired & offered;
        if let Some(d) = res.dialect {
            want |= d.spec().init_bit;
        }
        let flags = want | init_flags::INIT_EXT;
        let neg = Negotiated {
            kernel_major: arg.major,
            kernel_minor: arg.minor,
            minor: arg.minor.min(KERNEL_MINOR_VERSION),
            offered,
            flags,
            max_readahead: arg.max_readahead,
            max_write: s.max_write,
            max_pages: s.max_pages,
            max_background: cfg.max_background,
            congestion_threshold: cfg.congestion_threshold,
            time_gran: 1,
            famfs: res.dialect.map(|d| d.spec()),
            famfs_config: cfg.dialect,
            famfs_reason: res.reason,
            connection: cfg.connection,
            mount_epoch: cfg.mount_epoch,
            init_ns: self.rec.recv_ns,
        };
        let line = format!(
            "fuse: INIT kernel 7.{} offered {offered:#x}, reply flags {flags:#x}; famfs dialect {} \
             (configured {}): {}",
            arg.minor,
            res.dialect.map_or("off", |d| d.spec().name),
            cfg.dialect,
            res.reason
        );
        if res.reason.is_warning() {
            log::warn!("{line}");
        } else {
            log::info!("{line}");
        }
        if let Err(e) = s.fs.init(&neg) {
            log::warn!("fuse: filesystem refused INIT: {e}");
            return Ok(self.send_err(u, e));
        }
        let out = InitOut {
            major: KERNEL_VERSION,
            minor: KERNEL_MINOR_VERSION,
            max_readahead: neg.max_readahead,
            flags: flags as u32,
            max_background: neg.max_background,
            congestion_threshold: neg.congestion_threshold,
            max_write: neg.max_write,
            time_gran: neg.time_gran,
            max_pages: neg.max_pages,
            flags2: (flags >> 32) as u32,
            ..Default::default()
        }
        .to_bytes();
        let len = if arg.minor < 23 {
            COMPAT_22_INIT_OUT_SIZE
        } else {
            InitOut::SIZE
        };
        // Visible to every worker before the kernel can send the next request.
        let _ = s.negotiated.set(neg);
        s.set_state(RunState::Negotiated);
        Ok(self.send(u, 0, &[&out[..len]]))
    }
}

/// Write one reply on `ch`: header + `parts` in a single `writev`; classifies the outcome.
fn send_on<F>(s: &Session<F>, ch: &Channel, unique: u64, error: i32, parts: &[&[u8]]) -> Sent {
    // Header + up to 3 body parts (callers pass at most 2); the length counts exactly what is sent.
    let mut bodies = [&[][..]; 3];
    let mut nb = 0;
    for p in parts.iter().filter(|p| !p.is_empty()) {
        if nb == bodies.len() {
            debug_assert!(false, "reply with more than 3 body parts");
            break;
        }
        bodies[nb] = p;
        nb += 1;
    }
    let total = OutHeader::SIZE + bodies[..nb].iter().map(|p| p.len()).sum::<usize>();
    let Ok(len) = u32::try_from(total) else {
        s.stats.reply_failures.fetch_add(1, Ordering::Relaxed);
        return NO_REPLY;
    };
    if unique == 0 {
        // unique 0 would read as a notification.
        s.stats.reply_failures.fetch_add(1, Ordering::Relaxed);
        return NO_REPLY;
    }
    let head = OutHeader { len, error, unique }.to_bytes();
    let mut iov = [IoSlice::new(&[]); 4];
    iov[0] = IoSlice::new(&head);
    for (slot, b) in iov[1..].iter_mut().zip(&bodies[..nb]) {
        *slot = IoSlice::new(b);
    }
    let k = 1 + nb;
    let sent = Sent {
        error,
        bytes: len,
        gone: false,
    };
    match s_send(ch, &iov[..k]) {
        Ok(n) if n == total => sent,
        Ok(n) => {
            s.stats.reply_failures.fetch_add(1, Ordering::Relaxed);
            log::warn!("fuse: reply to unique {unique}: wrote {n} of {total} bytes");
            sent
        }
        Err(e) => match e.raw_os_error() {
            Some(libc::ENOENT) => {
                s.stats.replies_interrupted.fetch_add(1, Ordering::Relaxed);
                sent
            }
            Some(libc::ENODEV | libc::EPIPE | libc::ECONNRESET) => Sent { gone: true, ..sent },
            _ => {
                s.stats.reply_failures.fetch_add(1, Ordering::Relaxed);
                if let Some(sup) = s.log_limit.check(monotonic_ns()) {
                    log::warn!(
                        "fuse: reply to unique {unique} ({total} bytes, error {error}) failed: {e} \
                         ({sup} similar lines suppressed)"
                    );
                }
                sent
            }
        },
    }
}

fn s_send(ch: &Channel, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    loop {
        match ch.send(iov) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            r => return r,
        }
    }
}
