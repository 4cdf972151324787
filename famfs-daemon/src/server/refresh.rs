//! The client role: apply log entries other writers appended ([`FamfsFs::refresh`]) and tell the
//! kernel what changed, on a timer and on demand ([`LogWatcher`]).
//!
//! Owns when and how the namespace is refreshed and the invalidations that follow, and the locking of
//! a refresh: one at a time; the log is read and checked a chunk at a time under the namespace's
//! shared lock (requests keep being answered), and only applying a checked chunk takes the write
//! lock. Must not parse the log itself (that is `famfs`, through `volume`) or decide the daemon's
//! signals (the daemon forwards SIGHUP to the watcher's wake channel).

use std::{
    sync::{
        atomic::Ordering,
        mpsc::{Receiver, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    FamfsFs, RefreshReport, RefreshSummary, ServerError,
    volume::{Volume, VolumeError},
};
use crate::fuse::Notifier;

impl FamfsFs {
    /// Apply log entries appended since the last refresh (by another process or host) and tell the
    /// kernel what changed: `inval_entry(parent, name)` for every new name and `inval_inode(parent)`
    /// for every directory that gained one.
    ///
    /// First the image's size is rechecked (fstat): an image shorter than the filesystem is not read
    /// at all ([`ServerError::Shrunk`], `/healthz` degraded). Then, without `force`, the log header's
    /// `next_index` (one 8-byte read) is compared with the namespace and the call returns at once when
    /// nothing was appended. A filesystem found re-created, or a log that went back, makes the extent
    /// maps stale for good ([`ServerError::Stale`], then and from then on without reading anything;
    /// logged once, when it happens).
    /// Notifications are sent after the namespace lock is released.
    pub fn refresh(
        &self,
        notifier: Option<&Notifier>,
        force: bool,
    ) -> Result<RefreshSummary, ServerError> {
        let st = &self.inner.refresh_stats;
        st.polls.fetch_add(1, Ordering::Relaxed);
        if let Some(why) = self.stale_reason() {
            return Err(ServerError::Stale(why.to_string()));
        }
        let len = self.inner.data.recheck().map_err(|e| {
            st.errors.fetch_add(1, Ordering::Relaxed);
            ServerError::Open(e)
        })?;
        if self.note_image_len(len) {
            st.errors.fetch_add(1, Ordering::Relaxed);
            return Err(ServerError::Shrunk {
                path: self.inner.data.path().display().to_string(),
                len,
                need: self.inner.dev_size,
            });
        }
        if !force {
            let on_media = self.inner.data.read_u64(self.inner.next_index_off).ok();
            let vol = self.vol().map_err(|_| ServerError::Poisoned)?;
            if on_media == Some(vol.next_index()) && !vol.is_stopped() {
                return Ok(RefreshSummary::default());
            }
        }
        let report = self.replay_new().inspect_err(|_| {
            st.errors.fetch_add(1, Ordering::Relaxed);
        })?;
        st.refreshes.fetch_add(1, Ordering::Relaxed);
        st.added
            .fetch_add(report.added.len() as u64, Ordering::Relaxed);
        if let Some(n) = notifier {
            let mut parents: Vec<u64> = Vec::new();
            for a in &report.added {
                // ENOENT: the kernel had no such dentry cached, which is the common case.
                if let Err(e) = n.inval_entry(a.parent, &a.name)
                    && e.raw_os_error() != Some(libc::ENOENT)
                {
                    st.notify_errors.fetch_add(1, Ordering::Relaxed);
                    self.warn(format_args!(
                        "inval_entry({}, {:?}): {e}",
                        a.parent,
                        String::from_utf8_lossy(&a.name)
                    ));
                }
                if !parents.contains(&a.parent) {
                    parents.push(a.parent);
                }
            }
            for p in parents {
                if let Err(e) = n.inval_inode(p, 0, 0)
                    && e.raw_os_error() != Some(libc::ENOENT)
                {
                    st.notify_errors.fetch_add(1, Ordering::Relaxed);
                    self.warn(format_args!("inval_inode({p}): {e}"));
                }
            }
        }
        Ok(RefreshSummary {
            replayed: true,
            report,
        })
    }

    /// Replay the new log entries while FUSE requests keep being served: the log is read and
    /// frame-checked a chunk at a time under the shared lock (other readers proceed), and only the
    /// apply of each decoded chunk (at most [`DECODE_CHUNK`](super::volume::DECODE_CHUNK) entries, no
    /// I/O) takes the write lock.
    fn replay_new(&self) -> Result<RefreshReport, ServerError> {
        let st = &self.inner.refresh_stats;
        let _gate = self
            .inner
            .refresh_gate
            .lock()
            .map_err(|_| ServerError::Poisoned)?;
        let image_err = |vol: &Volume, source| ServerError::Image {
            path: vol.path().display().to_string(),
            source,
        };
        // The image's length was rechecked by the caller (the data path and the volume share it).
        let mut pending = {
            let vol = self.vol().map_err(|_| ServerError::Poisoned)?;
            match vol.begin_refresh() {
                Ok(p) => p,
                // The filesystem is not the one whose extent maps we hold: stale for good.
                Err(
                    source @ (VolumeError::Reformatted { .. } | VolumeError::LogRegressed { .. }),
                ) => {
                    let why = format!("{}: {source}", vol.path().display());
                    drop(vol);
                    return Err(ServerError::Stale(self.mark_stale(&why)));
                }
                Err(e) => return Err(image_err(&vol, e)),
            }
        };
        loop {
            let t = Instant::now();
            let chunk = {
                let vol = self.vol().map_err(|_| ServerError::Poisoned)?;
                let chunk = vol.read_chunk(&pending).map_err(|e| image_err(&vol, e))?;
                #[cfg(any(test, feature = "sim"))]
                self.call_refresh_hook(chunk.first, chunk.entries.len() as u64);
                chunk
            };
            st.read_ns.fetch_add(elapsed_ns(t), Ordering::Relaxed);
            let t = Instant::now();
            let complete = self.vol_mut()?.apply_chunk(&mut pending, &chunk);
            st.apply_max_ns.fetch_max(elapsed_ns(t), Ordering::Relaxed);
            st.apply_steps.fetch_add(1, Ordering::Relaxed);
            if complete {
                return Ok(pending.into_report());
            }
        }
    }

    /// Test builds: call `hook(first_index, entries)` after each chunk of a refresh was read and
    /// checked, while the refresh holds the shared lock (and not the write lock).
    #[cfg(any(test, feature = "sim"))]
    pub fn set_refresh_hook(&self, hook: Option<RefreshHook>) {
        if let Ok(mut h) = self.inner.refresh_hook.lock() {
            *h = hook;
        }
    }

    #[cfg(any(test, feature = "sim"))]
    fn call_refresh_hook(&self, first: u64, n: u64) {
        if let Ok(h) = self.inner.refresh_hook.lock()
            && let Some(f) = h.as_ref()
        {
            f(first, n);
        }
    }
}

/// The test hook of a refresh: `(first index of the chunk, entries in it)`.
#[cfg(any(test, feature = "sim"))]
pub type RefreshHook = Box<dyn Fn(u64, u64) + Send + Sync>;

fn elapsed_ns(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Calls [`FamfsFs::refresh`] every `interval` and whenever something is sent on its wake channel
/// (the daemon forwards SIGHUP there); stops when the wake channel's sender is dropped.
#[derive(Debug)]
pub struct LogWatcher {
    handle: Option<JoinHandle<()>>,
}

impl LogWatcher {
    pub fn start(
        fs: FamfsFs,
        notifier: Option<Notifier>,
        interval: Duration,
        wake: Receiver<()>,
    ) -> std::io::Result<LogWatcher> {
        let handle = std::thread::Builder::new()
            .name("famfs-log-watch".into())
            .spawn(move || {
                let mut last_stop: Option<String> = None;
                // A persistent failure (a re-created image) is logged once, not every poll.
                let mut last_err: Option<String> = None;
                loop {
                    let force = match wake.recv_timeout(interval) {
                        Ok(()) => true,
                        Err(RecvTimeoutError::Timeout) => false,
                        Err(RecvTimeoutError::Disconnected) => return,
                    };
                    let r = fs.refresh(notifier.as_ref(), force);
                    if r.is_ok() && last_err.take().is_some() {
                        log::info!("famfs: log refresh works again");
                    }
                    match r {
                        Ok(s) if s.replayed => {
                            let r = &s.report;
                            if !r.added.is_empty() || force {
                                log::info!(
                                    "famfs: log refreshed{}: {} new objects, next index {}",
                                    if force { " (requested)" } else { "" },
                                    r.added.len(),
                                    r.next_index
                                );
                            }
                            for a in &r.anomalies {
                                log::warn!("famfs: log: {a}");
                            }
                            if r.stopped != last_stop {
                                if let Some(st) = &r.stopped {
                                    log::warn!("famfs: log play stopped: {st}");
                                }
                                last_stop = r.stopped.clone();
                            }
                        }
                        Ok(_) => {}
                        // Said once when it happens (stale maps; a shrunk image, and when it is
                        // whole again); every later poll repeats it.
                        Err(ServerError::Stale(_) | ServerError::Shrunk { .. }) => {}
                        Err(e) => {
                            let msg = e.to_string();
                            if last_err.as_deref() != Some(msg.as_str()) {
                                log::warn!("famfs: log refresh failed: {msg}");
                                last_err = Some(msg);
                            }
                        }
                    }
                }
            })?;
        Ok(LogWatcher {
            handle: Some(handle),
        })
    }

    /// Wait for the thread (after the wake sender was dropped).
    pub fn join(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
