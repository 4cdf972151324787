//! The serving side of a simulated connection: [`Sim`] starts a [`Session`] of any [`Filesystem`] on
//! a thread of its own, collects its request records, and stops it with bounded waits; it
//! dereferences to its [`Kernel`].
//!
//! Owns the serving thread's lifetime. Must not change how the session behaves: the thread runs
//! `Session::run` and then reads its allocation count, nothing else.

use std::{
    io,
    sync::{
        Arc,
        atomic::Ordering,
        mpsc::{Receiver, sync_channel},
    },
    thread::JoinHandle,
    time::Duration,
};

use super::{
    super::{Filesystem, RequestRecord, Session, SessionConfig},
    DEFAULT_TIMEOUT,
    alloc::thread_allocations,
    context,
    kernel::{Ended, Kernel, MarkEnded},
};

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
    /// counted only when the binary's global allocator is
    /// [`CountingAlloc`](super::CountingAlloc), 0 otherwise.
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
