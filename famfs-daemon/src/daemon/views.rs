//! What the daemon shows over HTTP: the [`Views`] of a running daemon, answered from in-memory state
//! (the metrics registry, the probes' maps, the join's per-file table, `/proc/PID/comm` for the names of the processes behind a file, the FUSE session's liveness).
//!
//! Owns which state answers which endpoint. Reads only: the join's table through its read half, the
//! probes through one snapshot per request. The schema is `http::api`'s, the encoding `http`'s.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use crate::{
    http::{
        Views,
        api::{FileDetail, FileRow, FileRowsJson, ProbeRow, Snapshot},
    },
    join::{FileQuery, FileStats, SharedFileState, query_positions},
    metrics::{Format, Metrics},
    probes::{ProbeSnapshot, ProbeStatus, Probes},
    server::FamfsFs,
};

/// The daemon's state as the HTTP layer sees it.
pub struct DaemonViews {
    pub metrics: Metrics,
    pub probes: Option<Arc<Mutex<Probes>>>,
    pub files: Option<SharedFileState>,
    /// Set when the FUSE session ended while the daemon runs (someone unmounted us).
    pub session_ended: Option<Arc<AtomicBool>>,
    /// The served filesystem, for its health (a shrunk image, I/O failures, stale maps).
    pub fs: Option<FamfsFs>,
}

impl std::fmt::Debug for DaemonViews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonViews")
            .field("probes", &self.probes.is_some())
            .field("files", &self.files.is_some())
            .finish_non_exhaustive()
    }
}

/// Rows encoded per hold of the join's read lock in a file listing (~5 ms at 100k files).
const LIST_BATCH: usize = 4096;
/// About what one encoded file row takes, to reserve a listing's buffer once.
const ROW_BYTES: usize = 480;

/// A file listing at least this long freed many blocks: their pages go back to the kernel
/// (`util::alloc`).
const RELEASE_AFTER: usize = 4 << 20;

/// The name of process `pid` (`/proc/PID/comm`), empty when it has exited. Read at view time only.
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end_matches('\n').to_string())
        .unwrap_or_default()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl DaemonViews {
    /// The probe table and, if asked, the kernel's aggregates, under one lock.
    fn probe_state(&self, kernel: bool) -> Result<(Vec<ProbeStatus>, ProbeSnapshot), String> {
        let Some(p) = &self.probes else {
            return Ok((Vec::new(), ProbeSnapshot::default()));
        };
        let p = p
            .lock()
            .map_err(|_| "the probe state is unavailable".to_string())?;
        let snap = if kernel {
            p.snapshot()
        } else {
            ProbeSnapshot::default()
        };
        Ok((p.status().to_vec(), snap))
    }

    /// The files `q` selects, in its order: `start` makes the listing from their number and the
    /// listing's clock, then `row` adds each file to it. The order is taken under the read lock once; the rows are then read in batches
    /// of [`LIST_BATCH`], each under the read lock on its own, and between batches the join, if it waits
    /// to write, goes first ([`SharedFileState::read`]): a listing of every file never keeps
    /// the join from writing for longer than one batch. Each row is one consistent moment of its file;
    /// rows of later batches may be a little newer than the order.
    fn each_file<L>(
        &self,
        q: &FileQuery,
        start: impl FnOnce(usize, u64) -> L,
        mut row: impl FnMut(&mut L, &FileStats) -> Result<(), String>,
    ) -> Result<L, String> {
        let Some(files) = &self.files else {
            return Ok(start(0, 0));
        };
        let (order, now) = {
            let st = files.read().map_err(|e| e.to_string())?;
            (query_positions(&st.join, q), crate::util::monotonic_ns())
        };
        let mut listing = start(order.len(), now);
        for batch in order.chunks(LIST_BATCH) {
            let st = files.read().map_err(|e| e.to_string())?;
            let all = st.join.file_slice();
            for &i in batch {
                // Files are never removed: a position taken above is still in the table.
                let f = all
                    .get(i as usize)
                    .ok_or_else(|| format!("file table position {i} is gone"))?;
                row(&mut listing, f)?;
            }
        }
        Ok(listing)
    }

    fn probe_rows(status: &[ProbeStatus]) -> Result<Vec<ProbeRow>, String> {
        status
            .iter()
            .map(|s| ProbeRow::of(s).map_err(|e| format!("encoding probe {}: {e}", s.program)))
            .collect()
    }
}

impl Views for DaemonViews {
    fn metrics(&self, format: Format) -> Result<String, String> {
        self.metrics
            .render(format)
            .map_err(|e| format!("encoding metrics failed: {e}"))
    }

    fn probes(&self) -> Result<Vec<ProbeRow>, String> {
        let (status, _) = self.probe_state(false)?;
        Self::probe_rows(&status)
    }

    fn files(&self, q: &FileQuery) -> Result<Vec<FileRow>, String> {
        let (rows, _) = self.each_file(
            q,
            |n, now| (Vec::with_capacity(n), now),
            |(rows, now), f| {
                rows.push(FileRow::of(f, *now));
                Ok(())
            },
        )?;
        Ok(rows)
    }

    /// Encoded row by row, never holding every row at once (see [`DaemonViews::each_file`]).
    fn files_json(&self, q: &FileQuery) -> Result<String, String> {
        let rows = self.each_file(
            q,
            |n, now| FileRowsJson::new(now, n.saturating_mul(ROW_BYTES)),
            |rows, f| rows.push(f).map_err(|e| format!("encoding JSON: {e}")),
        )?;
        let body = rows.finish();
        if body.len() >= RELEASE_AFTER {
            crate::util::alloc::release_free();
        }
        Ok(body)
    }

    fn file(&self, path: &str) -> Result<Option<FileDetail>, String> {
        let Some(files) = &self.files else {
            return Ok(None);
        };
        let st = files.read().map_err(|e| e.to_string())?;
        let now = crate::util::monotonic_ns();
        Ok(st
            .join
            .files()
            .find(|f| f.info.path.trim_start_matches('/') == path.trim_start_matches('/'))
            .map(|f| FileDetail::of(f, now, &comm)))
    }

    fn snapshot(&self, q: &FileQuery) -> Result<Snapshot, String> {
        let (status, kernel) = self.probe_state(true)?;
        let probes = Self::probe_rows(&status)?;
        let files = self.files(q)?;
        Ok(Snapshot::of(files, &kernel, probes, unix_now()))
    }

    fn unhealthy(&self) -> Option<String> {
        match &self.session_ended {
            Some(e) if e.load(Ordering::Acquire) => {
                Some("the FUSE session ended (the mount is gone)".into())
            }
            _ => self.fs.as_ref().and_then(FamfsFs::health),
        }
    }
}

#[cfg(test)]
mod tests;
