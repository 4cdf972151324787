//! The join's thread: drains the kernel ring buffer and the server's record queue into the shared
//! [`FileState`](crate::metrics::FileState). I/O (polling the ring buffer) happens outside the lock;
//! records are collected into reusable buffers and applied in one short critical section per batch,
//! so a scrape waits at most one batch and nothing allocates per event once the buffers are warm.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, TryRecvError},
    },
    thread::JoinHandle,
    time::Duration,
};

use famfs_common::event::Event;

use super::{Catalog, RequestRecord};
use crate::{metrics::FileState, probes::EventReader};

/// Pending halves older than this are counted unmatched.
const MAX_PENDING_AGE: Duration = Duration::from_secs(10);
const BATCH: usize = 4096;

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

impl JoinWorker {
    pub fn start(
        state: Arc<Mutex<FileState>>,
        mut events: Option<EventReader>,
        records: Receiver<RequestRecord>,
        catalog: Arc<dyn Catalog + Send + Sync>,
    ) -> std::io::Result<JoinWorker> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("famfs-join".into())
            .spawn(move || {
                let mut evbuf: Vec<Event> = Vec::with_capacity(BATCH);
                let mut recbuf: Vec<RequestRecord> = Vec::with_capacity(BATCH);
                let mut records_open = true;
                while !stop2.load(Ordering::Relaxed) {
                    match events.as_mut() {
                        Some(r) => {
                            r.poll(50, |ev| evbuf.push(*ev));
                        }
                        None => std::thread::park_timeout(Duration::from_millis(50)),
                    }
                    // Drain everything queued, one short critical section per batch.
                    loop {
                        while records_open && recbuf.len() < BATCH {
                            match records.try_recv() {
                                Ok(r) => recbuf.push(r),
                                Err(TryRecvError::Empty) => break,
                                Err(TryRecvError::Disconnected) => records_open = false,
                            }
                        }
                        let Ok(mut st) = state.lock() else { return };
                        // Server records first: a kernel end for the same unique then matches at once.
                        for r in &recbuf {
                            st.join.ingest_server(r, catalog.as_ref());
                        }
                        for ev in &evbuf {
                            st.join.ingest_kernel(ev);
                        }
                        st.join.expire(
                            crate::util::monotonic_ns(),
                            MAX_PENDING_AGE.as_nanos() as u64,
                        );
                        drop(st);
                        let full = recbuf.len() == BATCH;
                        recbuf.clear();
                        evbuf.clear();
                        if !full {
                            break;
                        }
                    }
                }
            })?;
        Ok(JoinWorker {
            stop,
            handle: Some(handle),
        })
    }

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
