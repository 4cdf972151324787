//! Join unit tests with synthetic records: exact matching in both arrival orders, epochs, retries,
//! folding, queries.

use std::{collections::HashMap, sync::Arc, time::Duration};

use famfs_common::event::{Event, KIND_REQ_END};

use super::*;

struct Cat(HashMap<u64, FileInfo>);

impl Catalog for Cat {
    fn file(&self, nodeid: u64) -> Option<FileInfo> {
        self.0.get(&nodeid).cloned()
    }
}

fn cat() -> Cat {
    let mut m = HashMap::new();
    for (id, path) in [(2u64, "a"), (3, "dir/b"), (4, "dir/c")] {
        m.insert(
            id,
            FileInfo {
                path: path.into(),
                size: 100 * id,
                fmap_bytes: 56,
                fmap_extents: 1,
            },
        );
    }
    Cat(m)
}

const CONN: u32 = 42;
const EPOCH: u64 = 7;

fn rec(unique: u64, opcode: u32, nodeid: u64) -> RequestRecord {
    RequestRecord {
        mount_epoch: EPOCH,
        connection: CONN,
        unique,
        opcode,
        nodeid,
        reply_bytes: 32,
        recv_ns: 1000 + unique,
        reply_ns: 2000 + unique,
        ..Default::default()
    }
}

fn kev(unique: u64, op: u32, lat: u64, ts: u64) -> Event {
    Event {
        kind: KIND_REQ_END,
        conn: CONN,
        id: unique,
        ts_ns: ts,
        lat_ns: lat,
        op,
        len: 32,
        ..Default::default()
    }
}

#[test]
fn open_latency_joins_in_either_order() {
    let c = cat();
    let mut j = Join::new(CONN, EPOCH, 500, 54);
    // server first
    j.ingest_server(&rec(10, 14, 2), &c);
    j.ingest_kernel(&kev(10, 14, 1500, 3000));
    // kernel first
    j.ingest_kernel(&kev(12, 14, 3000, 3100));
    j.ingest_server(&rec(12, 14, 2), &c);
    let f = j.file(2).unwrap();
    assert_eq!(f.opens, 2);
    assert_eq!(f.open_lat_count, 2);
    assert_eq!(f.open_lat_sum_ns, 4500);
    assert_eq!(f.open_lat.get(10), 1, "1500 ns is in slot 10");
    assert_eq!(f.open_lat.get(11), 1, "3000 ns is in slot 11");
    assert_eq!(j.health.matched, 2);
    assert_eq!(j.pending(), (0, 0));
}

#[test]
fn fmap_retries_sizes_and_io_are_per_file() {
    let c = cat();
    let mut j = Join::new(CONN, EPOCH, 0, 54);
    let mut r = rec(20, 54, 3);
    r.retry = true;
    r.reply_bytes = 20;
    j.ingest_server(&r, &c);
    let mut r = rec(22, 54, 3);
    r.fmap_bytes = 824;
    r.fmap_extents = 32;
    j.ingest_server(&r, &c);
    let mut r = rec(24, 15, 3);
    r.io_bytes = 4096;
    j.ingest_server(&r, &c);
    let mut r = rec(26, 16, 4);
    r.io_bytes = 10;
    j.ingest_server(&r, &c);
    // An error reply (V3's EINVAL: no retry) counts as an error and leaves the map's size alone.
    let mut r = rec(28, 54, 3);
    r.error = -libc::EINVAL;
    r.reply_bytes = 16;
    j.ingest_server(&r, &c);
    let b = j.file(3).unwrap();
    assert_eq!(
        (b.get_fmap, b.get_fmap_retries, b.get_fmap_errors),
        (3, 1, 1)
    );
    assert_eq!((b.info.fmap_bytes, b.info.fmap_extents), (824, 32));
    assert_eq!((b.reads, b.read_bytes), (1, 4096));
    let c4 = j.file(4).unwrap();
    assert_eq!((c4.writes, c4.write_bytes), (1, 10));
}

#[test]
fn other_epochs_connections_and_dirs_are_counted_not_applied() {
    let c = cat();
    let mut j = Join::new(CONN, EPOCH, 5000, 0);
    let mut old = rec(2, 14, 2);
    old.mount_epoch = EPOCH - 1;
    j.ingest_server(&old, &c);
    j.ingest_server(&rec(4, 14, 1), &c); // root dir: not a file
    let mut foreign = kev(6, 14, 10, 6000);
    foreign.conn = CONN + 1;
    j.ingest_kernel(&foreign);
    j.ingest_kernel(&kev(8, 14, 10, 4000)); // before the epoch began
    assert_eq!(j.health.stale_records, 1);
    assert_eq!(j.health.non_file, 1);
    assert_eq!(j.health.foreign, 1);
    assert_eq!(j.health.late, 1);
    assert_eq!(j.files().count(), 0);
}

#[test]
fn unmatched_halves_expire_and_are_counted() {
    let c = cat();
    let mut j = Join::new(CONN, EPOCH, 0, 0);
    j.ingest_server(&rec(30, 14, 2), &c);
    j.ingest_kernel(&kev(32, 14, 100, 2100));
    assert_eq!(j.pending(), (1, 1));
    j.expire(2030 + 1_000, 2_000);
    assert_eq!(j.pending(), (1, 1), "young entries stay");
    j.expire(10_000_000, 2_000);
    assert_eq!(j.pending(), (0, 0));
    assert_eq!(
        (j.health.unmatched_server, j.health.unmatched_kernel),
        (1, 1)
    );
}

#[test]
fn folding_keeps_the_most_recent_and_breaks_ties_by_path() {
    let c = cat();
    let mut j = Join::new(CONN, EPOCH, 0, 0);
    for (u, id) in [(2u64, 2u64), (4, 3), (6, 4)] {
        j.ingest_server(&rec(u, 14, id), &c);
    }
    let fold = fold_for_series(&j, 2);
    let keep: Vec<&str> = fold.kept.iter().map(|f| f.info.path.as_str()).collect();
    assert_eq!(keep, vec!["dir/c", "dir/b"]);
    let a = j.file(2).unwrap().last_access_ns;
    assert_eq!((fold.folded, fold.folded_last_access_ns), (1, a));
    let fold = fold_for_series(&j, 10);
    assert_eq!(
        (fold.kept.len(), fold.folded, fold.folded_last_access_ns),
        (3, 0, 0)
    );
}

#[test]
fn queries_filter_sort_and_limit() {
    let q = FileQuery {
        sort: FileSort::Opens,
        limit: 1,
        path: Some("dir/".into()),
    };
    let c = cat();
    let mut j = Join::new(CONN, EPOCH, 0, 0);
    j.ingest_server(&rec(2, 14, 3), &c);
    j.ingest_server(&rec(4, 14, 3), &c);
    j.ingest_server(&rec(6, 14, 4), &c);
    j.ingest_server(&rec(8, 14, 2), &c);
    let v = query(&j, &q);
    assert_eq!(v.len(), 1);
    assert_eq!((v[0].info.path.as_str(), v[0].opens), ("dir/b", 2));
}

#[test]
fn sort_keys_have_one_spelling_and_cycle() {
    for k in FileSort::ALL {
        assert_eq!(FileSort::parse(k.as_str()), Some(k));
    }
    assert_eq!(FileSort::parse("size"), None);
    assert_eq!(
        FileSort::expected(),
        "expected last_access, opens, faults, fmap_bytes or path"
    );
    let mut k = FileSort::default();
    let mut seen = Vec::new();
    for _ in 0..FileSort::ALL.len() {
        seen.push(k);
        k = k.next();
    }
    assert_eq!(seen, FileSort::ALL);
    assert_eq!(k, FileSort::LastAccess);
}

#[test]
fn unique_zero_quirk_pairs_by_server_receive_time() {
    use famfs_common::event::KIND_REQ_END_UNMATCHED;
    let c = cat();
    let mut j = Join::new(CONN, EPOCH, 0, 0);
    // The server saw OPEN unique 40 at recv 1040; the kernel could not pair it (send had unique 0) and
    // reports the end at 5040: the latency is 4000 ns, measured from the server's receive time.
    j.ingest_server(&rec(40, 14, 2), &c);
    let ev = Event {
        kind: KIND_REQ_END_UNMATCHED,
        conn: CONN,
        id: 40,
        ts_ns: 5040,
        ..Default::default()
    };
    j.ingest_kernel(&ev);
    let f = j.file(2).unwrap();
    assert_eq!((f.open_lat_count, f.open_lat_sum_ns), (1, 4000));
    assert_eq!((j.health.matched, j.health.server_timed), (1, 1));
    // The kernel half may come first; it waits for its server record.
    let ev = Event {
        kind: KIND_REQ_END_UNMATCHED,
        conn: CONN,
        id: 42,
        ts_ns: 9042,
        ..Default::default()
    };
    j.ingest_kernel(&ev);
    assert_eq!(j.pending(), (0, 1));
    j.ingest_server(&rec(42, 14, 2), &c);
    assert_eq!(j.pending(), (0, 0));
    let f = j.file(2).unwrap();
    assert_eq!(
        (f.open_lat_count, f.open_lat_sum_ns),
        (2, 4000 + 9042 - 1042)
    );
}

/// A kernel whose fault maps the test sets: file 2 of [`CONN`] with `pte` PTE faults and `pc`
/// page-cache faults.
struct Kernel(std::sync::Mutex<(u64, u64)>);

impl FaultSource for Kernel {
    fn fault_snapshot(&self) -> Option<crate::probes::ProbeSnapshot> {
        use famfs_common::fault::{FaultKey, FaultStats, FileKey, RESULT_OK, SIZE_PTE};
        let (pte, pc) = *self.0.lock().ok()?;
        Some(crate::probes::ProbeSnapshot {
            faults: vec![crate::probes::FaultRow {
                key: FaultKey {
                    dev: CONN,
                    size: SIZE_PTE,
                    result: RESULT_OK,
                    write: 0,
                    _pad: 0,
                    ino: 2,
                },
                stats: FaultStats {
                    count: pte,
                    ..FaultStats::ZERO
                },
            }],
            filemap: vec![(
                FileKey {
                    dev: CONN,
                    _pad: 0,
                    ino: 2,
                },
                pc,
            )],
            ..Default::default()
        })
    }
}

/// A worker over a fresh state for [`CONN`]; file 2 is opened once (so the join tracks it).
fn worker_with(kernel: Arc<Kernel>) -> (SharedFileState, JoinWorker) {
    let state = SharedFileState::new(FileState {
        join: Join::new(CONN, EPOCH, 0, 0),
        fs_uuid: "u".into(),
        max_series: 10,
    });
    let (tx, rx) = std::sync::mpsc::sync_channel(8);
    tx.send(rec(10, 14, 2)).unwrap();
    drop(tx);
    let w = JoinWorker::start(
        state.clone(),
        JoinInputs {
            events: None,
            records: rx,
            catalog: Arc::new(cat()),
            faults: Some(kernel),
        },
    )
    .unwrap();
    (state, w)
}

fn faults_of_file_2(state: &SharedFileState) -> Option<(u64, u64, u64)> {
    let st = state.read().unwrap();
    let f = st.join.file(2)?;
    Some((f.opens, f.faults()[0][0], f.page_cache_faults))
}

#[test]
fn the_worker_applies_kernel_fault_counts_on_its_own_tick() {
    let kernel = Arc::new(Kernel(std::sync::Mutex::new((5, 3))));
    let (state, w) = worker_with(kernel.clone());
    // Nothing but the worker reads the kernel here: the counts arrive on its tick (a deadline guards
    // against a hang; the tick is FAULT_TICK).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while faults_of_file_2(&state) != Some((1, 5, 3)) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            faults_of_file_2(&state)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The kernel counts on; the next tick follows them (the maps are cumulative: replaced, not added).
    *kernel.0.lock().unwrap() = (7, 4);
    while faults_of_file_2(&state) != Some((1, 7, 4)) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            faults_of_file_2(&state)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    w.stop();
}

#[test]
fn the_worker_applies_the_last_kernel_counts_when_it_stops() {
    let kernel = Arc::new(Kernel(std::sync::Mutex::new((1, 1))));
    let (state, w) = worker_with(kernel.clone());
    // Whatever ticks ran so far, stopping reads the kernel one last time.
    *kernel.0.lock().unwrap() = (9, 6);
    w.stop();
    assert_eq!(faults_of_file_2(&state), Some((1, 9, 6)));
}

#[test]
fn only_new_dax_faults_make_a_file_recent() {
    use famfs_common::fault::{FaultKey, FaultStats, RESULT_OK, SIZE_PTE};
    let snap = |count: u64| crate::probes::ProbeSnapshot {
        faults: vec![crate::probes::FaultRow {
            key: FaultKey {
                dev: CONN,
                size: SIZE_PTE,
                result: RESULT_OK,
                write: 0,
                _pad: 0,
                ino: 2,
            },
            stats: FaultStats {
                count,
                ..FaultStats::ZERO
            },
        }],
        ..Default::default()
    };
    let mut j = Join::new(CONN, EPOCH, 0, 0);
    assert!(j.track(2, &cat()));
    j.apply_fault_snapshot(&snap(4), 1_000);
    assert_eq!(
        j.file(2).map(|f| (f.faults()[0][0], f.last_access_ns)),
        Some((4, 1_000))
    );
    // The same cumulative count later: no new fault, no new access.
    j.apply_fault_snapshot(&snap(4), 2_000);
    assert_eq!(
        j.file(2).map(|f| (f.faults()[0][0], f.last_access_ns)),
        Some((4, 1_000))
    );
    j.apply_fault_snapshot(&snap(5), 3_000);
    assert_eq!(
        j.file(2).map(|f| (f.faults()[0][0], f.last_access_ns)),
        Some((5, 3_000))
    );
    // Gone from the kernel's map (evicted): zero, and still last accessed at 3000.
    j.apply_fault_snapshot(&crate::probes::ProbeSnapshot::default(), 4_000);
    assert_eq!(
        j.file(2).map(|f| (f.faults()[0][0], f.last_access_ns)),
        Some((0, 3_000))
    );
}

#[test]
fn dax_faults_are_attributed_to_the_kernel_s_processes() {
    use famfs_common::fault::{FaultKey, FaultStats, ProcFaultKey, ProcFaultStats, SIZE_PTE};
    let comm = |s: &[u8]| {
        let mut c = [0u8; 16];
        c[..s.len()].copy_from_slice(s);
        c
    };
    let proc_row = |dev: u32, ino: u64, tgid: u32, count: u64, name: &[u8]| {
        (
            ProcFaultKey { dev, tgid, ino },
            ProcFaultStats {
                count,
                comm: comm(name),
            },
        )
    };
    let snap = crate::probes::ProbeSnapshot {
        faults: vec![crate::probes::FaultRow {
            key: FaultKey {
                dev: CONN,
                size: SIZE_PTE,
                ino: 2,
                ..Default::default()
            },
            stats: FaultStats {
                count: 10,
                ..FaultStats::ZERO
            },
        }],
        // Sorted by (dev, ino, tgid), as the probes read them; 1 of file 2's 10 faults is no longer
        // in the kernel's per-process map; another connection's rows do not count.
        fault_procs: vec![
            proc_row(CONN, 2, 50, 6, b"mapper"),
            proc_row(CONN, 2, 51, 3, b"reader-with-a-15"),
            proc_row(CONN, 3, 52, 4, b"x"),
            proc_row(CONN + 1, 2, 53, 7, b"other"),
        ],
        ..Default::default()
    };
    let mut j = Join::new(CONN, EPOCH, 0, 0);
    assert!(j.track(2, &cat()));
    j.apply_fault_snapshot(&snap, 1_000);
    let f = j.file(2).unwrap();
    let got: Vec<(u32, String, u64)> = f
        .fault_procs()
        .sorted()
        .iter()
        .map(|p| (p.pid, p.comm_str(), p.count))
        .collect();
    assert_eq!(
        got,
        vec![
            (50, "mapper".to_string(), 6),
            (51, "reader-with-a-15".to_string(), 3)
        ]
    );
    assert_eq!(f.fault_procs().other, 1);
    // The processes' rows gone from the kernel: nothing attributed, every fault is "other".
    let snap2 = crate::probes::ProbeSnapshot {
        fault_procs: Vec::new(),
        ..snap
    };
    j.apply_fault_snapshot(&snap2, 2_000);
    let f = j.file(2).unwrap();
    assert_eq!(
        (f.fault_procs().entries().len(), f.fault_procs().other),
        (0, 10)
    );
}

/// Every file's counters summed the slow way, as [`FileTotals`] keeps them.
fn summed(j: &Join) -> FileTotals {
    let mut t = FileTotals::default();
    for f in j.files() {
        t.add_file(f);
    }
    t
}

#[test]
fn totals_are_the_sum_of_every_file() {
    use famfs_common::fault::{FaultKey, FaultStats, FileKey};
    let c = cat();
    let mut j = Join::new(CONN, EPOCH, 0, 54);
    // Opens with joined latencies (one an error), a retried and a sized GET_FMAP, reads and writes.
    j.ingest_server(&rec(2, 14, 2), &c);
    j.ingest_kernel(&kev(2, 14, 1500, 3000));
    j.ingest_kernel(&kev(4, 14, 700_000, 3100));
    j.ingest_server(&rec(4, 14, 3), &c);
    let mut r = rec(6, 14, 4);
    r.error = -libc::ENOENT;
    j.ingest_server(&r, &c);
    let mut r = rec(8, 54, 3);
    r.retry = true;
    j.ingest_server(&r, &c);
    let mut r = rec(10, 54, 3);
    r.fmap_bytes = 824;
    r.fmap_extents = 32;
    j.ingest_server(&r, &c);
    let mut r = rec(12, 15, 4);
    r.io_bytes = 4096;
    j.ingest_server(&r, &c);
    let mut r = rec(14, 16, 2);
    r.io_bytes = 10;
    j.ingest_server(&r, &c);
    let mut lat_slots = [0u64; LAT_SLOTS];
    lat_slots[12] = 2;
    lat_slots[20] = 1;
    let snap = crate::probes::ProbeSnapshot {
        faults: vec![crate::probes::FaultRow {
            key: FaultKey {
                dev: CONN,
                size: 1,
                ino: 3,
                ..Default::default()
            },
            stats: FaultStats {
                count: 3,
                lat_sum_ns: 1_010_000,
                max_pgoff: 0,
                lat_slots,
            },
        }],
        filemap: vec![(
            FileKey {
                dev: CONN,
                _pad: 0,
                ino: 4,
            },
            9,
        )],
        ..Default::default()
    };
    j.apply_fault_snapshot(&snap, 5_000);
    let t = j.totals().clone();
    assert_eq!(t, summed(&j));
    // The recency column follows every file's last access (the faulted file 3 moved to 5000).
    let recency: Vec<u64> = j.files().map(|f| f.last_access_ns).collect();
    assert_eq!(j.recency(), recency.as_slice());
    assert_eq!(j.file(3).map(|f| f.last_access_ns), Some(5_000));
    // The values themselves, so that the comparison above cannot pass on two empty sums.
    assert_eq!((t.opens, t.open_errors, t.open_lat_sum_ns), (3, 1, 701_500));
    assert_eq!(
        (t.get_fmap, t.get_fmap_retries, t.fmap_bytes, t.fmap_extents),
        (2, 1, 56 + 824 + 56, 34)
    );
    assert_eq!(
        (t.size, t.reads, t.read_bytes, t.writes, t.write_bytes),
        (900, 1, 4096, 1, 10)
    );
    assert_eq!(
        (t.faults[1][0], t.fault_lat_sum_ns, t.page_cache_faults),
        (3, 1_010_000, 9)
    );
    // A later snapshot without those faults: the totals follow it.
    j.apply_fault_snapshot(&crate::probes::ProbeSnapshot::default(), 6_000);
    assert_eq!(j.totals(), &summed(&j));
    assert_eq!(
        (j.totals().faults[1][0], j.totals().page_cache_faults),
        (0, 0)
    );
}

/// Files tracked in no particular path order: the join keeps them by path, and every query order
/// (ties among equal numbers broken by path, filters, limits) is the full sort by `FileSort::compare`.
#[test]
fn path_order_is_kept_on_insert_and_every_query_is_the_full_sort() {
    let paths = [
        "m/b", "a", "z/q", "m/a", "b/x", "aa", "m/ab", "0", "z/p", "m",
    ];
    let mut m = HashMap::new();
    for (k, p) in paths.iter().enumerate() {
        m.insert(
            10 + k as u64,
            FileInfo {
                path: (*p).into(),
                size: 1,
                // Three files share each fmap size: ties broken by path.
                fmap_bytes: 8 * (k as u32 % 3),
                fmap_extents: 1,
            },
        );
    }
    let c = Cat(m);
    let mut j = Join::new(CONN, EPOCH, 0, 0);
    // Opens: files 12 and 15 twice, 11 once; the rest never opened (equal zero keys).
    for (u, id) in [(2u64, 12u64), (4, 15), (6, 12), (8, 15), (10, 11)] {
        j.ingest_server(&rec(u, 14, id), &c);
    }
    for id in 10..20 {
        assert!(j.track(id, &c));
    }
    let by_path: Vec<&str> = j
        .by_path()
        .iter()
        .map(|&i| j.file_slice()[i as usize].info.path.as_str())
        .collect();
    let mut sorted = paths.to_vec();
    sorted.sort_unstable();
    assert_eq!(by_path, sorted);
    for sort in FileSort::ALL {
        for (limit, path) in [
            (100, None),
            (3, None),
            (0, None),
            (2, Some("m/")),
            (9, Some("a")),
        ] {
            let q = FileQuery {
                sort,
                limit,
                path: path.map(Into::into),
            };
            let got: Vec<&str> = query(&j, &q).iter().map(|f| f.info.path.as_str()).collect();
            let mut want: Vec<&FileStats> = j
                .file_slice()
                .iter()
                .filter(|f| path.is_none_or(|p| f.info.path.contains(p)))
                .collect();
            want.sort_by(|a, b| sort.compare(&a.sort_fields(), &b.sort_fields()));
            let want: Vec<&str> = want
                .iter()
                .take(limit)
                .map(|f| f.info.path.as_str())
                .collect();
            assert_eq!(got, want, "{sort} limit {limit} path {path:?}");
        }
    }
}
