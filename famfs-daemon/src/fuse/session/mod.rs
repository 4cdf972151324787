//! The session: one [`Filesystem`] served on one [`Channel`] by `run(workers)` threads. It reads
//! requests, negotiates INIT (protocol spec §2 and the famfs dialect rule §5; `init`), decodes and
//! dispatches each request to the filesystem (`dispatch`), writes exactly one reply (or none for
//! FORGET / BATCH_FORGET / NOTIFY_REPLY / INTERRUPT), and reports a [`RequestRecord`] per request into
//! a bounded, non-blocking sink plus per-opcode atomic counters (`worker`).
//!
//! This file owns the session's state and lifetime: configuration, the negotiated outcome, the run
//! state, starting and joining workers, rate-limited logging. Must not contain filesystem logic (that
//! is the [`Filesystem`] impl) or block on its record consumer. Hot path: each worker reuses its
//! request, data and fmap buffers; no allocation per request (log lines are rate-limited and off the
//! normal path).
//!
//! [`RequestRecord`]: super::RequestRecord

mod dispatch;
mod gate;
mod init;
mod splice;
mod worker;

use std::{
    io,
    path::PathBuf,
    sync::{
        Arc, Condvar, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
        mpsc::SyncSender,
    },
    time::{Duration, Instant},
};

pub use init::{DEFAULT_INIT_FLAGS, Negotiated};

use super::{
    Filesystem, Notifier, RequestRecord,
    abi::MIN_READ_BUFFER,
    channel::Channel,
    dialect::DialectConfig,
    stats::{RateLimit, SessionStats},
};
use crate::util::monotonic_ns;
use worker::Worker;

const PAGE: usize = 4096;

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
    /// `max_write` announced in INIT (≥ 4096); also sizes `max_pages` (so the largest READ the
    /// kernel sends) and the worker buffers.
    pub max_write: u32,
    /// `max_readahead` announced in INIT, bytes; 0: the kernel's offer echoed. The kernel keeps
    /// `min(its bdi read-ahead, this)`, so this can lower the read-ahead but not raise it: raising
    /// it is the mount's ([`crate::fuse::Mount::set_read_ahead_kb`]) once INIT was answered.
    pub max_readahead: u32,
    pub max_background: u16,
    pub congestion_threshold: u16,
    /// Bounded sink for per-request records; a full sink drops (and counts) instead of blocking.
    pub records: Option<SyncSender<RequestRecord>>,
    /// Answer READs the filesystem describes as descriptor ranges (`Filesystem::read_fd`) by
    /// splicing them into `/dev/fuse` (each worker gets a pipe). Only on a `/dev/fuse` channel;
    /// [`Session::set_splice_reads`] turns it off and on while running.
    pub splice_reads: bool,
    /// Extra workers wait off the device until requests queue up (`gate`); needs cloned
    /// `/dev/fuse` fds, else every worker blocks on the device.
    pub on_demand_workers: bool,
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
            max_readahead: 0,
            max_background: 64,
            congestion_threshold: 48,
            records: None,
            splice_reads: false,
            on_demand_workers: false,
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
    stats: Arc<SessionStats>,
    negotiated: OnceLock<Negotiated>,
    state: Mutex<RunState>,
    state_cv: Condvar,
    destroyed: AtomicBool,
    log_limit: RateLimit,
    /// Whether workers with a pipe splice READ replies now.
    splice_on: AtomicBool,
    /// Pipes made ahead of the workers (while the process may still grow them past the
    /// unprivileged limit): each worker takes one, or makes its own.
    pipes: Mutex<Vec<splice::SplicePipe>>,
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

impl<F: Filesystem> Session<F> {
    /// A session serving `fs` on `channel`. Nothing runs until [`Session::run`].
    pub fn new(fs: F, channel: Channel, cfg: SessionConfig) -> Session<F> {
        let max_write = cfg.max_write.max(PAGE as u32);
        let max_pages = u16::try_from(max_write.div_ceil(PAGE as u32)).unwrap_or(u16::MAX);
        let cfg_splice = cfg.splice_reads;
        Session {
            fs,
            channel,
            cfg,
            max_write,
            max_pages,
            stats: Arc::new(SessionStats::default()),
            negotiated: OnceLock::new(),
            state: Mutex::new(RunState::Waiting),
            state_cv: Condvar::new(),
            destroyed: AtomicBool::new(false),
            log_limit: RateLimit::new(10_000_000_000, 20),
            splice_on: AtomicBool::new(cfg_splice),
            pipes: Mutex::new(Vec::new()),
        }
    }

    pub fn fs(&self) -> &F {
        &self.fs
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// Per-opcode counters and health counters (shared; readable while running).
    pub fn stats(&self) -> &Arc<SessionStats> {
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
        Notifier::new(self.channel.clone())
    }

    /// Make the pipes of `workers` workers now (for spliced READ replies, when configured on a
    /// `/dev/fuse` channel): a pipe big enough for the largest READ reply needs CAP_SYS_RESOURCE,
    /// so a daemon calls this before it drops its capabilities. Workers without one make their own.
    pub fn prepare_splice(&self, workers: usize) -> io::Result<()> {
        if !self.splices() {
            return Ok(());
        }
        let mut pool = self.pipes.lock().unwrap_or_else(|p| p.into_inner());
        while pool.len() < workers {
            pool.push(splice::SplicePipe::new(self.splice_pipe_bytes())?);
        }
        Ok(())
    }

    /// Turn spliced READ replies on or off (only effective when configured: `splice_reads`).
    pub fn set_splice_reads(&self, on: bool) {
        self.splice_on.store(on, Ordering::Relaxed);
    }

    /// Whether this session's workers get pipes: configured, on a `/dev/fuse` channel.
    fn splices(&self) -> bool {
        self.cfg.splice_reads && self.channel.kind() == super::ChannelKind::FuseDev
    }

    /// A pipe for the largest READ reply: the header's buffer plus a buffer per page.
    fn splice_pipe_bytes(&self) -> usize {
        (usize::from(self.max_pages) + 2) * PAGE
    }

    /// A pipe for a starting worker: one made ahead, else a new one (None when not splicing or
    /// the pipe cannot be made).
    fn take_pipe(&self) -> Option<splice::SplicePipe> {
        if !self.splices() {
            return None;
        }
        let made = self.pipes.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match made {
            Some(p) => Some(p),
            None => match splice::SplicePipe::new(self.splice_pipe_bytes()) {
                Ok(p) => Some(p),
                Err(e) => {
                    log::warn!("fuse: no pipe for spliced READ replies ({e}); this worker copies");
                    None
                }
            },
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
        let mut chans = Vec::with_capacity(n - 1);
        for _ in 1..n {
            chans.push(self.channel.clone_for_worker());
        }
        // On-demand helpers need their own non-blocking fds: a shared fd made non-blocking would
        // make the lead spin.
        let gated = self.cfg.on_demand_workers && n > 1 && chans.iter().all(|(_, cloned)| *cloned);
        let gate = gate::Gate::default();
        let gate = gated.then_some(&gate);
        let result = std::thread::scope(|scope| {
            let mut handles = Vec::with_capacity(n - 1);
            self.stats.workers.store(1, Ordering::Relaxed);
            for (i, (ch, cloned)) in chans.into_iter().enumerate() {
                let i = i + 1;
                // A helper whose fd cannot be made non-blocking blocks on the device like the lead.
                let helper = gated
                    && ch
                        .set_nonblocking()
                        .inspect_err(|e| {
                            log::warn!("fuse: worker {i} blocks on the device: O_NONBLOCK: {e}")
                        })
                        .is_ok();
                let spawned = std::thread::Builder::new()
                    .name(format!("fuse-worker-{i}"))
                    .spawn_scoped(scope, move || Worker::new(self, ch).run(gate, !helper));
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
                "fuse: serving connection {} with {} workers ({} on cloned fds{})",
                self.cfg.connection,
                self.stats.workers(),
                self.stats.cloned_fds(),
                if gated { ", helpers on demand" } else { "" }
            );
            let mut result = Worker::new(self, self.channel.clone()).run(gate, true);
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
