//! The join's thread: drains the kernel ring buffer and the server's record queue into the shared
//! [`FileState`](super::FileState), and on its own tick (every [`FAULT_TICK`], and once more when it
//! stops) reads the kernel's cumulative per-file fault maps and applies them, so the per-file fault
//! counters move whether or not anyone scrapes `/metrics`.
//!
//! I/O (polling the ring buffer, reading the fault maps) happens outside the state lock; records are
//! collected into reusable buffers and applied in one short critical section per batch, so a reader
//! waits at most one batch and nothing allocates per event once the buffers are warm. The only writer of
//! the shared table; must not read anything from the probes but the ring buffer and their fault maps.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, TryRecvError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use famfs_common::event::Event;

use super::{Catalog, RequestRecord, SharedFileState};
use crate::probes::{EventReader, ProbeSnapshot, Probes};

/// Pending halves older than this are counted unmatched.
const MAX_PENDING_AGE: Duration = Duration::from_secs(10);
const BATCH: usize = 4096;
/// How long one wait for ring-buffer records (or, without probes, for nothing) lasts.
const POLL_MS: u16 = 50;
/// How often the kernel's per-file fault counters are read and applied.
pub const FAULT_TICK: Duration = Duration::from_millis(250);

/// Where the worker reads the kernel's cumulative per-file fault counters.
pub trait FaultSource: Send + Sync {
    /// The kernel's aggregates now (only `faults` and `filemap` are used); `None` when they cannot be
    /// read this time.
    fn fault_snapshot(&self) -> Option<ProbeSnapshot>;
}

impl FaultSource for Mutex<Probes> {
    fn fault_snapshot(&self) -> Option<ProbeSnapshot> {
        self.lock().ok().map(|p| p.snapshot())
    }
}

/// What the join consumes.
pub struct JoinInputs {
    /// The probes' per-event ring buffer (`None` without probes).
    pub events: Option<EventReader>,
    /// The FUSE server's request records.
    pub records: Receiver<RequestRecord>,
    /// Resolves nodeids to files.
    pub catalog: Arc<dyn Catalog + Send + Sync>,
    /// The kernel's per-file fault counters (`None` without probes).
    pub faults: Option<Arc<dyn FaultSource>>,
}

impl std::fmt::Debug for JoinInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinInputs")
            .field("events", &self.events.is_some())
            .field("faults", &self.faults.is_some())
            .finish_non_exhaustive()
    }
}

/// A running join thread; stops and joins on [`JoinWorker::stop`] or drop.
pub struct JoinWorker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for JoinWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinWorker")
    }
}

/// The thread's state.
struct Worker {
    state: SharedFileState,
    inputs: JoinInputs,
    evbuf: Vec<Event>,
    recbuf: Vec<RequestRecord>,
    records_open: bool,
}

impl Worker {
    /// Wait once for ring-buffer records (at most [`POLL_MS`]).
    fn wait(&mut self) {
        let evbuf = &mut self.evbuf;
        match self.inputs.events.as_mut() {
            Some(r) => {
                r.poll(i32::from(POLL_MS), |ev| evbuf.push(*ev));
            }
            None => std::thread::park_timeout(Duration::from_millis(u64::from(POLL_MS))),
        }
    }

    /// Apply everything queued, one short critical section per batch. `false` when the state is
    /// unusable (poisoned): the thread then ends.
    fn drain(&mut self) -> bool {
        loop {
            while self.records_open && self.recbuf.len() < BATCH {
                match self.inputs.records.try_recv() {
                    Ok(r) => self.recbuf.push(r),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => self.records_open = false,
                }
            }
            let Ok(mut st) = self.state.write() else {
                return false;
            };
            // Server records first: a kernel end for the same unique then matches at once.
            for r in &self.recbuf {
                st.join.ingest_server(r, self.inputs.catalog.as_ref());
            }
            for ev in &self.evbuf {
                st.join.ingest_kernel(ev);
            }
            st.join.expire(
                crate::util::monotonic_ns(),
                u64::try_from(MAX_PENDING_AGE.as_nanos()).unwrap_or(u64::MAX),
            );
            drop(st);
            let full = self.recbuf.len() == BATCH;
            self.recbuf.clear();
            self.evbuf.clear();
            if !full {
                return true;
            }
        }
    }

    /// Read the kernel's fault counters (outside the lock) and apply them. `false` when the state is
    /// unusable.
    fn apply_faults(&self) -> bool {
        let Some(snap) = self.inputs.faults.as_ref().and_then(|f| f.fault_snapshot()) else {
            return true;
        };
        let Ok(mut st) = self.state.write() else {
            return false;
        };
        st.join
            .apply_fault_snapshot(&snap, crate::util::monotonic_ns());
        true
    }

    fn run(mut self, stop: &AtomicBool) {
        let mut next_faults = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            self.wait();
            if !self.drain() {
                return;
            }
            if Instant::now() >= next_faults {
                if !self.apply_faults() {
                    return;
                }
                next_faults = Instant::now() + FAULT_TICK;
            }
        }
        // Stopping: take what is still queued, then the kernel's final fault counts.
        if let Some(r) = self.inputs.events.as_mut() {
            let evbuf = &mut self.evbuf;
            r.poll(0, |ev| evbuf.push(*ev));
        }
        if self.drain() {
            self.apply_faults();
        }
    }
}

impl JoinWorker {
    /// Start the join's thread over `state` (which it alone writes) and `inputs`.
    pub fn start(state: SharedFileState, inputs: JoinInputs) -> std::io::Result<JoinWorker> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let worker = Worker {
            state,
            inputs,
            evbuf: Vec::with_capacity(BATCH),
            recbuf: Vec::with_capacity(BATCH),
            records_open: true,
        };
        let handle = std::thread::Builder::new()
            .name("famfs-join".into())
            .spawn(move || worker.run(&stop2))?;
        Ok(JoinWorker {
            stop,
            handle: Some(handle),
        })
    }

    /// Stop the thread after it applied what is queued and the kernel's last fault counts.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for JoinWorker {
    fn drop(&mut self) {
        self.shutdown();
    }
}
