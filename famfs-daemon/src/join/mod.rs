//! The join: turns the FUSE server's request records, the kernel's per-event records and the kernel's
//! per-file map snapshots into per-file statistics.
//!
//! Keys: requests join on (mount epoch, connection, unique) — `unique` restarts per mount and connection
//! numbers are reused, so a kernel event belongs to the current epoch only if it happened after that
//! epoch's INIT; faults join on (device == connection, inode == the server's st_ino).
//! Owns: [`Join`] (pure state, no I/O, no locks of its own), [`FileStats`], the per-file table shared
//! with the readers ([`FileState`] behind [`SharedFileState`], written only by the join), the file
//! table's query (sort keys, limit, path filter) and the worker thread that feeds the join, the per-file top-N of opening processes (`procs`), including
//! the kernel's per-file fault counters on the join's own tick ([`JoinWorker`]). `Join` itself does no
//! I/O; the worker reads the probes' ring buffer and map snapshots. Must not import `metrics`, `http`
//! or any view. The hot path (`ingest_*`) allocates only when a new file or a new pending request
//! appears, never per repeated event.

mod files;
mod lat;
mod procs;
mod state;
mod worker;

use std::collections::HashMap;

use famfs_common::{event, fault::FaultKey, hist::LAT_SLOTS, hist::log2_slot};

pub use files::{FileQuery, FileSort, Fold, SortFields, fold_for_series, query, query_positions};
pub use lat::LatHist;
pub use procs::{FaultTop, PROC_SLOTS, ProcCount, ProcFaults, ProcTop};
pub use state::{FileState, SharedFileState, StatePoisoned};
pub use worker::{FAULT_TICK, FaultSource, JoinInputs, JoinWorker};

use crate::probes::FaultRow;

/// DAX fault counts by `[size][result]`: size 0 = PTE (4 KiB), 1 = PMD (2 MiB); result 0 = ok,
/// 1 = fallback, 2 = error.
pub type FaultMatrix = [[u64; 3]; 2];

/// The [`FaultMatrix`] cell of a kernel fault key (unknown sizes and results clamp to PMD and error).
pub fn fault_cell(key: &FaultKey) -> (usize, usize) {
    (usize::from(key.size).min(1), usize::from(key.result).min(2))
}

/// The kernel's fault rows summed over every device and file.
pub fn fault_totals(rows: &[FaultRow]) -> FaultMatrix {
    let mut m = [[0; 3]; 2];
    for r in rows {
        let (s, c) = fault_cell(&r.key);
        m[s][c] += r.stats.count;
    }
    m
}

use crate::fuse::RequestRecord;

use crate::server::{Catalog, FileInfo};

/// Per-file statistics. Kept small (a daemon may track 100k files): the OPEN latency histogram is a
/// compact [`LatHist`], and everything about DAX faults lives in one [`DaxFaults`] that only files
/// the kernel saw fault carry.
#[derive(Clone, Debug)]
pub struct FileStats {
    pub ino: u64,
    pub info: FileInfo,
    pub opens: u64,
    pub open_errors: u64,
    /// The processes that opened the file (FUSE OPEN's requesting pid), bounded.
    pub open_procs: ProcTop,
    /// Kernel-observed OPEN latency (send → reply), log2 ns slots.
    pub open_lat: LatHist,
    pub open_lat_sum_ns: u64,
    pub open_lat_count: u64,
    pub get_fmap: u64,
    pub get_fmap_retries: u64,
    /// GET_FMAP requests answered with an error (e.g. V3's EINVAL for a map that does not fit; the
    /// kernel then fails the open).
    pub get_fmap_errors: u64,
    pub reads: u64,
    pub read_bytes: u64,
    pub writes: u64,
    pub write_bytes: u64,
    /// DAX faults from the last kernel snapshot the join applied (`None`: none, see [`FileStats::dax`]).
    dax: Option<Box<DaxFaults>>,
    pub page_cache_faults: u64,
    /// CLOCK_MONOTONIC ns of the last request or fault seen for this file.
    pub last_access_ns: u64,
}

/// A file's DAX faults as of the last kernel snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaxFaults {
    pub counts: FaultMatrix,
    pub lat_slots: [u64; LAT_SLOTS],
    pub lat_sum_ns: u64,
    /// The processes that DAX-faulted on the file (from the kernel's per-process map, each snapshot).
    pub procs: FaultTop,
}

impl DaxFaults {
    /// No faults.
    pub const NONE: DaxFaults = DaxFaults {
        counts: [[0; 3]; 2],
        lat_slots: [0; LAT_SLOTS],
        lat_sum_ns: 0,
        procs: FaultTop::EMPTY,
    };
}

static NO_DAX_FAULTS: DaxFaults = DaxFaults::NONE;

/// Every tracked file's counters summed, kept up to date as the files change, so a view that folds
/// most files into one row (metrics' `path="__other__"`) gets their sum as these totals minus the few
/// files it keeps, without reading every file. Exact: the same integer sums, in another order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileTotals {
    pub opens: u64,
    pub open_errors: u64,
    pub open_lat_slots: [u64; LAT_SLOTS],
    pub open_lat_sum_ns: u64,
    pub get_fmap: u64,
    pub get_fmap_retries: u64,
    pub get_fmap_errors: u64,
    pub fmap_bytes: u64,
    pub fmap_extents: u64,
    pub size: u64,
    pub reads: u64,
    pub read_bytes: u64,
    pub writes: u64,
    pub write_bytes: u64,
    pub faults: FaultMatrix,
    pub fault_lat_slots: [u64; LAT_SLOTS],
    pub fault_lat_sum_ns: u64,
    pub page_cache_faults: u64,
}

impl Default for FileTotals {
    fn default() -> Self {
        FileTotals {
            opens: 0,
            open_errors: 0,
            open_lat_slots: [0; LAT_SLOTS],
            open_lat_sum_ns: 0,
            get_fmap: 0,
            get_fmap_retries: 0,
            get_fmap_errors: 0,
            fmap_bytes: 0,
            fmap_extents: 0,
            size: 0,
            reads: 0,
            read_bytes: 0,
            writes: 0,
            write_bytes: 0,
            faults: [[0; 3]; 2],
            fault_lat_slots: [0; LAT_SLOTS],
            fault_lat_sum_ns: 0,
            page_cache_faults: 0,
        }
    }
}

impl FileTotals {
    /// Add every counter of `f` (what a view that sums files shows for them).
    pub fn add_file(&mut self, f: &FileStats) {
        self.opens += f.opens;
        self.open_errors += f.open_errors;
        f.open_lat.for_each(|i, c| self.open_lat_slots[i] += c);
        self.open_lat_sum_ns += f.open_lat_sum_ns;
        self.get_fmap += f.get_fmap;
        self.get_fmap_retries += f.get_fmap_retries;
        self.get_fmap_errors += f.get_fmap_errors;
        self.fmap_bytes += u64::from(f.info.fmap_bytes);
        self.fmap_extents += u64::from(f.info.fmap_extents);
        self.size += f.info.size;
        self.reads += f.reads;
        self.read_bytes += f.read_bytes;
        self.writes += f.writes;
        self.write_bytes += f.write_bytes;
        self.add_faults(f);
    }

    /// Take out `o`, a sum of some of the files these totals count.
    pub fn sub(&mut self, o: &FileTotals) {
        self.opens -= o.opens;
        self.open_errors -= o.open_errors;
        for (a, b) in self.open_lat_slots.iter_mut().zip(&o.open_lat_slots) {
            *a -= b;
        }
        self.open_lat_sum_ns -= o.open_lat_sum_ns;
        self.get_fmap -= o.get_fmap;
        self.get_fmap_retries -= o.get_fmap_retries;
        self.get_fmap_errors -= o.get_fmap_errors;
        self.fmap_bytes -= o.fmap_bytes;
        self.fmap_extents -= o.fmap_extents;
        self.size -= o.size;
        self.reads -= o.reads;
        self.read_bytes -= o.read_bytes;
        self.writes -= o.writes;
        self.write_bytes -= o.write_bytes;
        for (a, b) in self
            .faults
            .iter_mut()
            .flatten()
            .zip(o.faults.iter().flatten())
        {
            *a -= b;
        }
        for (a, b) in self.fault_lat_slots.iter_mut().zip(&o.fault_lat_slots) {
            *a -= b;
        }
        self.fault_lat_sum_ns -= o.fault_lat_sum_ns;
        self.page_cache_faults -= o.page_cache_faults;
    }

    /// Add the kernel-snapshot part of `f` (DAX and page-cache faults).
    fn add_faults(&mut self, f: &FileStats) {
        self.page_cache_faults += f.page_cache_faults;
        if let Some(d) = f.dax_faults() {
            for (a, b) in self
                .faults
                .iter_mut()
                .flatten()
                .zip(d.counts.iter().flatten())
            {
                *a += b;
            }
            for (a, b) in self.fault_lat_slots.iter_mut().zip(&d.lat_slots) {
                *a += b;
            }
            self.fault_lat_sum_ns += d.lat_sum_ns;
        }
    }
}

impl FileStats {
    fn new(ino: u64, info: FileInfo) -> Self {
        FileStats {
            ino,
            info,
            opens: 0,
            open_errors: 0,
            open_procs: ProcTop::default(),
            open_lat: LatHist::default(),
            open_lat_sum_ns: 0,
            open_lat_count: 0,
            get_fmap: 0,
            get_fmap_retries: 0,
            get_fmap_errors: 0,
            reads: 0,
            read_bytes: 0,
            writes: 0,
            write_bytes: 0,
            dax: None,
            page_cache_faults: 0,
            last_access_ns: 0,
        }
    }

    /// The file's DAX faults ([`DaxFaults::NONE`] for a file that never faulted).
    pub fn dax(&self) -> &DaxFaults {
        self.dax.as_deref().unwrap_or(&NO_DAX_FAULTS)
    }

    /// The file's DAX faults, `None` for a file that never faulted (what [`FileStats::dax`] shows as
    /// [`DaxFaults::NONE`]).
    pub fn dax_faults(&self) -> Option<&DaxFaults> {
        self.dax.as_deref()
    }

    /// DAX fault counts by `[size][result]`.
    pub fn faults(&self) -> &FaultMatrix {
        &self.dax().counts
    }

    /// The processes that DAX-faulted on the file.
    pub fn fault_procs(&self) -> &FaultTop {
        &self.dax().procs
    }

    /// The fault state to update on a snapshot (made on the file's first fault, then reused).
    fn dax_mut(&mut self) -> &mut DaxFaults {
        self.dax.get_or_insert_with(|| Box::new(DaxFaults::NONE))
    }
}

/// Join health counters (exported as `famfs_join_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JoinHealth {
    pub server_records: u64,
    pub kernel_events: u64,
    /// Kernel OPEN/GET_FMAP completions joined to a server record.
    pub matched: u64,
    /// Pending halves that never found their partner before expiring.
    pub unmatched_server: u64,
    pub unmatched_kernel: u64,
    /// Kernel events for our connection from before the current epoch (a previous mount).
    pub late: u64,
    /// Matches whose latency came from the server's receive time because the kernel could not pair the
    /// request's send and end (kernels whose `fuse_request_send` reports unique 0).
    pub server_timed: u64,
    /// Kernel events for connections that are not ours.
    pub foreign: u64,
    /// Server records of another epoch (a previous mount still draining).
    pub stale_records: u64,
    /// Server records for nodeids the catalog does not know as files (directories, meta).
    pub non_file: u64,
}

#[derive(Clone, Copy, Debug)]
struct PendingServer {
    nodeid: u64,
    opcode: u32,
    recv_ns: u64,
    at_ns: u64,
}

#[derive(Clone, Copy, Debug)]
struct PendingKernel {
    /// Kernel-observed latency, or `None` for an end whose send was not paired in the kernel (the
    /// unique-0 send quirk): its latency is taken from the server's receive time instead.
    lat_ns: Option<u64>,
    end_ns: u64,
    error: i32,
    at_ns: u64,
}

/// Cap of each pending table: past it, a half is counted unmatched at once (memory stays bounded even
/// when every request end is unpaired in the kernel).
const PENDING_MAX: usize = 65536;

use famfs_common::opcode::{OPEN as FUSE_OPEN, READ as FUSE_READ, WRITE as FUSE_WRITE};

/// The join state for one mount (one epoch at a time).
#[derive(Debug)]
pub struct Join {
    connection: u32,
    epoch: u64,
    /// CLOCK_MONOTONIC ns at which the current epoch began (INIT); kernel events before it are late.
    epoch_start_ns: u64,
    fmap_opcode: u32,
    /// Every tracked file, densely (scans for a scrape touch only file data), found by nodeid through
    /// `index`. Files are never removed.
    files: Vec<FileStats>,
    index: HashMap<u64, usize>,
    /// `files[i].last_access_ns` for every `i`, side by side: what the metrics' fold ranks files by,
    /// read without touching the files themselves.
    recency: Vec<u64>,
    /// Positions in `files` ordered by path, kept as files are added (a binary search and one move
    /// of this array; files are only ever added): a listing by path needs no sort, and the other
    /// orders break ties by this rank instead of comparing paths.
    by_path: Vec<u32>,
    totals: FileTotals,
    pending_server: HashMap<u64, PendingServer>,
    pending_kernel: HashMap<u64, PendingKernel>,
    pub health: JoinHealth,
}

impl Join {
    /// A join for `connection`, epoch `epoch` starting at `epoch_start_ns`; `fmap_opcode` is the famfs
    /// GET_FMAP opcode negotiated on this connection (0: none).
    pub fn new(connection: u32, epoch: u64, epoch_start_ns: u64, fmap_opcode: u32) -> Join {
        Join {
            connection,
            epoch,
            epoch_start_ns,
            fmap_opcode,
            files: Vec::with_capacity(1024),
            index: HashMap::with_capacity(1024),
            recency: Vec::with_capacity(1024),
            by_path: Vec::with_capacity(1024),
            totals: FileTotals::default(),
            pending_server: HashMap::with_capacity(1024),
            pending_kernel: HashMap::with_capacity(1024),
            health: JoinHealth::default(),
        }
    }

    /// Start a new epoch (remount): per-request pending state is dropped (counted as unmatched); per-file
    /// statistics are kept, since the files are the same image's.
    pub fn new_epoch(
        &mut self,
        connection: u32,
        epoch: u64,
        epoch_start_ns: u64,
        fmap_opcode: u32,
    ) {
        self.health.unmatched_server += self.pending_server.len() as u64;
        self.health.unmatched_kernel += self.pending_kernel.len() as u64;
        self.pending_server.clear();
        self.pending_kernel.clear();
        self.connection = connection;
        self.epoch = epoch;
        self.epoch_start_ns = epoch_start_ns;
        self.fmap_opcode = fmap_opcode;
    }

    pub fn connection(&self) -> u32 {
        self.connection
    }

    /// The index of `nodeid`'s file, tracking it (and counting its catalog facts in the totals) if new.
    fn file_index(&mut self, nodeid: u64, catalog: &dyn Catalog) -> Option<usize> {
        match self.index.entry(nodeid) {
            std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
            std::collections::hash_map::Entry::Vacant(e) => {
                let info = catalog.file(nodeid)?;
                self.totals.size += info.size;
                self.totals.fmap_bytes += u64::from(info.fmap_bytes);
                self.totals.fmap_extents += u64::from(info.fmap_extents);
                let files = &self.files;
                let at = self.by_path.partition_point(|&j| {
                    files
                        .get(j as usize)
                        .is_some_and(|f| f.info.path < info.path)
                });
                let i = u32::try_from(self.files.len()).ok()?;
                self.by_path.insert(at, i);
                self.files.push(FileStats::new(nodeid, info));
                self.recency.push(0);
                Some(*e.insert(i as usize))
            }
        }
    }

    /// Apply one server record.
    pub fn ingest_server(&mut self, r: &RequestRecord, catalog: &dyn Catalog) {
        self.health.server_records += 1;
        if r.mount_epoch != self.epoch || r.connection != self.connection {
            self.health.stale_records += 1;
            return;
        }
        let is_fmap = self.fmap_opcode != 0 && r.opcode == self.fmap_opcode;
        let interesting = matches!(r.opcode, FUSE_OPEN | FUSE_READ | FUSE_WRITE) || is_fmap;
        if !interesting {
            return;
        }
        let Some(i) = self.file_index(r.nodeid, catalog) else {
            self.health.non_file += 1;
            return;
        };
        let (Some(f), Some(recent)) = (self.files.get_mut(i), self.recency.get_mut(i)) else {
            return;
        };
        let t = &mut self.totals;
        f.last_access_ns = f.last_access_ns.max(r.reply_ns);
        *recent = f.last_access_ns;
        match r.opcode {
            FUSE_OPEN => {
                f.opens += 1;
                t.opens += 1;
                f.open_procs.count(r.pid);
                if r.error != 0 {
                    f.open_errors += 1;
                    t.open_errors += 1;
                }
            }
            FUSE_READ if r.error == 0 => {
                f.reads += 1;
                f.read_bytes += u64::from(r.io_bytes);
                t.reads += 1;
                t.read_bytes += u64::from(r.io_bytes);
            }
            FUSE_WRITE if r.error == 0 => {
                f.writes += 1;
                f.write_bytes += u64::from(r.io_bytes);
                t.writes += 1;
                t.write_bytes += u64::from(r.io_bytes);
            }
            _ if is_fmap => {
                f.get_fmap += 1;
                t.get_fmap += 1;
                if r.retry {
                    f.get_fmap_retries += 1;
                    t.get_fmap_retries += 1;
                } else if r.error != 0 {
                    f.get_fmap_errors += 1;
                    t.get_fmap_errors += 1;
                } else if r.fmap_bytes > 0 {
                    // The totals hold every file's current map size: swap this file's old one out.
                    t.fmap_bytes =
                        t.fmap_bytes - u64::from(f.info.fmap_bytes) + u64::from(r.fmap_bytes);
                    t.fmap_extents =
                        t.fmap_extents - u64::from(f.info.fmap_extents) + u64::from(r.fmap_extents);
                    f.info.fmap_bytes = r.fmap_bytes;
                    f.info.fmap_extents = r.fmap_extents;
                }
            }
            _ => {}
        }
        if r.opcode == FUSE_OPEN || is_fmap {
            match self.pending_kernel.remove(&r.unique) {
                Some(k) => {
                    let lat = self.kernel_latency(&k, r.recv_ns);
                    self.apply_latency(r.nodeid, r.opcode, lat, k.error);
                }
                None => {
                    let p = PendingServer {
                        nodeid: r.nodeid,
                        opcode: r.opcode,
                        recv_ns: r.recv_ns,
                        at_ns: r.reply_ns,
                    };
                    if self.pending_server.len() < PENDING_MAX {
                        self.pending_server.insert(r.unique, p);
                    } else {
                        self.health.unmatched_server += 1;
                    }
                }
            }
        }
    }

    fn apply_latency(&mut self, nodeid: u64, opcode: u32, lat_ns: u64, error: i32) {
        if opcode != FUSE_OPEN || error != 0 {
            return;
        }
        let Some(i) = self.index.get(&nodeid).copied() else {
            return;
        };
        if let Some(f) = self.files.get_mut(i) {
            let slot = log2_slot(lat_ns, LAT_SLOTS);
            f.open_lat.add(slot, 1);
            f.open_lat_sum_ns += lat_ns;
            self.totals.open_lat_slots[slot] += 1;
            self.totals.open_lat_sum_ns += lat_ns;
            f.open_lat_count += 1;
        }
    }

    fn kernel_latency(&mut self, k: &PendingKernel, server_recv_ns: u64) -> u64 {
        self.health.matched += 1;
        match k.lat_ns {
            Some(l) => l,
            None => {
                self.health.server_timed += 1;
                k.end_ns.saturating_sub(server_recv_ns)
            }
        }
    }

    /// Apply one kernel ring-buffer event.
    pub fn ingest_kernel(&mut self, ev: &event::Event) {
        self.health.kernel_events += 1;
        let paired_in_kernel = match ev.kind {
            event::KIND_REQ_END => true,
            event::KIND_REQ_END_UNMATCHED => false,
            _ => return,
        };
        if ev.conn != self.connection {
            self.health.foreign += 1;
            return;
        }
        if ev.ts_ns < self.epoch_start_ns {
            self.health.late += 1;
            return;
        }
        let k = PendingKernel {
            lat_ns: paired_in_kernel.then_some(ev.lat_ns),
            end_ns: ev.ts_ns,
            error: ev.error,
            at_ns: ev.ts_ns,
        };
        match self.pending_server.remove(&ev.id) {
            Some(s) => {
                let lat = self.kernel_latency(&k, s.recv_ns);
                self.apply_latency(s.nodeid, s.opcode, lat, k.error);
            }
            None if self.pending_kernel.len() < PENDING_MAX => {
                self.pending_kernel.insert(ev.id, k);
            }
            None => self.health.unmatched_kernel += 1,
        }
    }

    /// Drop pending halves older than `max_age_ns` (relative to `now_ns`), counting them as unmatched.
    pub fn expire(&mut self, now_ns: u64, max_age_ns: u64) {
        let before = self.pending_server.len();
        self.pending_server
            .retain(|_, p| now_ns.saturating_sub(p.at_ns) <= max_age_ns);
        self.health.unmatched_server += (before - self.pending_server.len()) as u64;
        let before = self.pending_kernel.len();
        self.pending_kernel
            .retain(|_, p| now_ns.saturating_sub(p.at_ns) <= max_age_ns);
        self.health.unmatched_kernel += (before - self.pending_kernel.len()) as u64;
    }

    /// Replace the per-file fault counters with a kernel snapshot (the kernel maps are cumulative).
    /// A file whose DAX fault count grew since the last snapshot was accessed at `now_ns`. The join's
    /// worker calls this on its own tick; nothing else needs to.
    pub fn apply_fault_snapshot(&mut self, snap: &crate::probes::ProbeSnapshot, now_ns: u64) {
        /// One file's DAX faults in a snapshot.
        struct Faults {
            counts: FaultMatrix,
            lat_slots: [u64; LAT_SLOTS],
            lat_sum_ns: u64,
        }
        let mut fresh: HashMap<u64, Faults> = HashMap::new();
        for r in snap.faults.iter().filter(|r| r.key.dev == self.connection) {
            if !self.index.contains_key(&r.key.ino) {
                continue;
            }
            let e = fresh.entry(r.key.ino).or_insert(Faults {
                counts: [[0; 3]; 2],
                lat_slots: [0; LAT_SLOTS],
                lat_sum_ns: 0,
            });
            let (size, result) = fault_cell(&r.key);
            e.counts[size][result] += r.stats.count;
            for (a, b) in e.lat_slots.iter_mut().zip(r.stats.lat_slots.iter()) {
                *a += b;
            }
            e.lat_sum_ns += r.stats.lat_sum_ns;
        }
        for (f, recent) in self.files.iter_mut().zip(&mut self.recency) {
            match fresh.remove(&f.ino) {
                Some(n) => {
                    let before: u64 = f.faults().iter().flatten().sum();
                    if n.counts.iter().flatten().sum::<u64>() > before {
                        f.last_access_ns = f.last_access_ns.max(now_ns);
                        *recent = f.last_access_ns;
                    }
                    let d = f.dax_mut();
                    d.counts = n.counts;
                    d.lat_slots = n.lat_slots;
                    d.lat_sum_ns = n.lat_sum_ns;
                }
                None => {
                    if let Some(d) = &mut f.dax {
                        d.counts = [[0; 3]; 2];
                        d.lat_slots = [0; LAT_SLOTS];
                        d.lat_sum_ns = 0;
                    }
                }
            }
            f.page_cache_faults = 0;
            // Per-process faults: none until this snapshot's rows say otherwise.
            if let Some(d) = &mut f.dax {
                let total = d.counts.iter().flatten().sum();
                d.procs.rebuild(std::iter::empty(), total);
            }
        }
        // Per-process faults: the snapshot's rows are sorted by (dev, ino, tgid), one group per file.
        for group in snap
            .fault_procs
            .chunk_by(|a, b| a.0.dev == b.0.dev && a.0.ino == b.0.ino)
        {
            let Some((k, _)) = group.first() else {
                continue;
            };
            if k.dev != self.connection {
                continue;
            }
            if let Some(f) = self.file_at(k.ino) {
                let rows = group.iter().map(|(k, v)| ProcFaults {
                    pid: k.tgid,
                    comm: v.comm,
                    count: v.count,
                });
                let d = f.dax_mut();
                let total = d.counts.iter().flatten().sum();
                d.procs.rebuild(rows, total);
            }
        }
        let conn = self.connection;
        for (k, n) in snap.filemap.iter().filter(|(k, _)| k.dev == conn) {
            if let Some(f) = self.file_at(k.ino) {
                f.page_cache_faults = *n;
            }
        }
        // The snapshot replaced every file's fault counters: sum them afresh.
        let t = &mut self.totals;
        t.faults = [[0; 3]; 2];
        t.fault_lat_slots = [0; LAT_SLOTS];
        t.fault_lat_sum_ns = 0;
        t.page_cache_faults = 0;
        for f in &self.files {
            t.add_faults(f);
        }
    }

    /// Make sure `nodeid` is tracked (e.g. a file that only faults, never seen by the server since the
    /// daemon started). Returns whether it is a file.
    pub fn track(&mut self, nodeid: u64, catalog: &dyn Catalog) -> bool {
        self.file_index(nodeid, catalog).is_some()
    }

    /// Every tracked file's counters summed.
    pub fn totals(&self) -> &FileTotals {
        &self.totals
    }

    pub fn files(&self) -> impl ExactSizeIterator<Item = &FileStats> {
        self.files.iter()
    }

    /// Every file's `last_access_ns`, in the order of [`Join::files`].
    pub fn recency(&self) -> &[u64] {
        &self.recency
    }

    /// Positions in [`Join::file_slice`], ordered by path.
    pub fn by_path(&self) -> &[u32] {
        &self.by_path
    }

    /// The files as a slice, in the order of [`Join::recency`].
    pub fn file_slice(&self) -> &[FileStats] {
        &self.files
    }

    pub fn file(&self, nodeid: u64) -> Option<&FileStats> {
        self.index.get(&nodeid).and_then(|&i| self.files.get(i))
    }

    fn file_at(&mut self, nodeid: u64) -> Option<&mut FileStats> {
        let i = *self.index.get(&nodeid)?;
        self.files.get_mut(i)
    }

    pub fn pending(&self) -> (usize, usize) {
        (self.pending_server.len(), self.pending_kernel.len())
    }
}

#[cfg(test)]
mod tests;
