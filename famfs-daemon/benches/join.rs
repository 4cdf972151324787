//! Join and scrape benchmark (not a test): join ingest rate with nothing lost; what a scrape costs end to
//! end with 100k tracked files (`/metrics` and `/api/v1/files` through the daemon's own HTTP server and
//! views, p50/p99 over many requests); and the resident memory of the process holding those files.
//! Every figure is printed beside a baseline measured in the same run.
//! Run: `cargo bench -p famfs-daemon --bench join`.
//!
//! The scrape figures come from a child process (this binary re-run with `FAMFS_JOIN_BENCH_CHILD` set)
//! that holds only what the daemon's HTTP side holds: the join's per-file table, the metrics registry
//! and the HTTP server on a 2-worker tokio runtime, as `famfs-daemon run` builds them. Its VmRSS is read
//! from `/proc/PID/status` before the files are added (the baseline) and after every scrape, so the
//! client's buffers (in this process) are not counted. The child is killed when the bench ends.
//! In this process: where a scrape's time goes, and how long the join (the file table's one writer)
//! waits for its lock while unlimited listings are encoded, against one listing's time.

// A benchmark, not product code: a failed step should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/bench.rs"]
mod bench;

use std::{
    collections::HashMap,
    hint::black_box,
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use famfs_common::{
    event::{Event, KIND_REQ_END},
    fault::{FaultKey, FaultStats},
    hist::LAT_SLOTS,
};
use famfs_daemon::{
    daemon::views::DaemonViews,
    fuse::RequestRecord,
    http::{self, Limits, WebConfig, client::Client},
    join::{FileState, Join, SharedFileState},
    metrics::Metrics,
    probes::{FaultRow, ProbeSnapshot},
    server::{Catalog, FileInfo},
};

const CHILD_ENV: &str = "FAMFS_JOIN_BENCH_CHILD";
/// Tracked files in the scrape figures.
const FILES: u64 = 100_000;
/// Requests per endpoint (p99 = the 2nd slowest of 200).
const SCRAPES: usize = 200;
/// `famfs-trace top`'s query (its defaults: `--sort last_access --limit 500`).
const TOP_QUERY: &str = "/api/v1/files?sort=last_access&limit=500";
/// `famfs-trace snapshot`'s query: every file, by path.
const ALL_QUERY: &str = "/api/v1/files?sort=path&limit=1099511627776";

struct Cat;

impl Catalog for Cat {
    fn file(&self, nodeid: u64) -> Option<FileInfo> {
        Some(FileInfo {
            path: format!("datasets/part-{nodeid:07}.bin"),
            size: 1 << 21,
            fmap_bytes: 56,
            fmap_extents: 1,
        })
    }
}

fn records(n: usize, files: u64) -> (Vec<RequestRecord>, Vec<Event>) {
    let mut r = Vec::with_capacity(n);
    let mut e = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let unique = 2 * i + 2;
        r.push(RequestRecord {
            mount_epoch: 1,
            connection: 40,
            unique,
            opcode: 14,
            nodeid: 2 + i % files,
            pid: 1000 + (i % 37) as u32,
            reply_bytes: 32,
            recv_ns: 1000 + i,
            reply_ns: 2000 + i,
            ..Default::default()
        });
        e.push(Event {
            kind: KIND_REQ_END,
            conn: 40,
            id: unique,
            ts_ns: 3000 + i,
            lat_ns: 1000 + i % 5000,
            op: 14,
            len: 32,
            ..Default::default()
        });
    }
    (r, e)
}

fn ingest() {
    const N: usize = 2_000_000;
    let (recs, evs) = records(N, 10_000);
    // Baseline: the minimum a join must do, one hash insert and one remove per request.
    let t = Instant::now();
    let mut m: HashMap<u64, u64> = HashMap::with_capacity(1024);
    for (r, e) in recs.iter().zip(&evs) {
        m.insert(r.unique, r.nodeid);
        black_box(m.remove(&e.id));
    }
    let base = t.elapsed().as_secs_f64();
    let mut j = Join::new(40, 1, 0, 0);
    let t = Instant::now();
    for (i, (r, e)) in recs.iter().zip(&evs).enumerate() {
        // Alternate arrival order: half server-first, half kernel-first.
        if i % 2 == 0 {
            j.ingest_server(r, &Cat);
            j.ingest_kernel(e);
        } else {
            j.ingest_kernel(e);
            j.ingest_server(r, &Cat);
        }
    }
    let took = t.elapsed().as_secs_f64();
    let lost = N as u64 - j.health.matched;
    let events = 2.0 * N as f64;
    let (ours, baseline) = (events / took / 1e6, events / base / 1e6);
    println!(
        "join ingest: {N} requests + {N} kernel events (10k files) in {took:.3} s = {ours:.2} M events/s, lost {lost}"
    );
    println!(
        "  baseline (hash insert+remove): {base:.3} s = {baseline:.2} M events/s; join/baseline time ratio {:.2}",
        took / base
    );
    assert_eq!(lost, 0, "the join lost events");
    bench::row(&bench::Row {
        figure: "join ingest, 2 M OPEN records + 2 M kernel ends over 10k files",
        ours: format!("{ours:.1} M events/s, {lost} lost"),
        baseline: format!("hash insert+remove per request {baseline:.1} M events/s"),
        ratio: Some(ours / baseline),
        goal: "≥ 10 M events/s, 0 lost",
        met: Some(ours >= 10.0 && lost == 0),
    });
}

/// A join holding `files` files as a busy daemon's would: each opened once (by one of 37 processes)
/// with its kernel-observed OPEN latency joined, every 10th with DAX faults from a kernel snapshot.
fn populated(files: u64) -> Join {
    let mut j = Join::new(40, 1, 0, 0);
    let (recs, evs) = records(files as usize, files);
    for (r, e) in recs.iter().zip(&evs) {
        j.ingest_server(r, &Cat);
        j.ingest_kernel(e);
    }
    let mut snap = ProbeSnapshot::default();
    for id in (0..files).step_by(10) {
        let mut lat_slots = [0u64; LAT_SLOTS];
        lat_slots[12 + (id % 5) as usize] = 4;
        lat_slots[20] = 1;
        snap.faults.push(FaultRow {
            key: FaultKey {
                dev: 40,
                size: 1,
                ino: 2 + id,
                ..Default::default()
            },
            stats: FaultStats {
                count: 5,
                lat_sum_ns: 4 * 5000 + 1_500_000,
                max_pgoff: 512,
                lat_slots,
            },
        });
    }
    j.apply_fault_snapshot(&snap, 10_000_000);
    assert_eq!(j.files().count() as u64, files);
    j
}

/// VmRSS of `pid` in KiB.
fn vm_rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The child: serve a daemon's HTTP views of `FILES` files on one port and of no file table on another,
/// print `ready PORT BASE_PORT` and serve until killed.
fn child() {
    // The daemon's heap policy, set at its start-up as here.
    famfs_daemon::util::alloc::tune();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("famfs-http")
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<(SocketAddr, SocketAddr)>();
    let go = Arc::new(std::sync::Barrier::new(2));
    let go2 = go.clone();
    std::thread::spawn(move || {
        rt.block_on(async move {
            // Views without a file table: the baseline's server, up before the files exist.
            let base = views_of(None);
            let bl = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let base_addr = bl.local_addr().unwrap();
            tokio::spawn(http::serve(
                bl,
                Arc::new(base),
                Limits::default(),
                WebConfig::default(),
            ));
            // The parent reads the baseline RSS now, then lets the files in.
            println!("base {base_addr}");
            go2.wait();
            let state = SharedFileState::new(FileState {
                join: populated(FILES),
                fs_uuid: "3f2d9c1e-7b4a-4e8f-9a61-0c5d2e7f8a93".into(),
                max_series: 500,
            });
            let views = views_of(Some(state));
            let l = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
            tx.send((l.local_addr().unwrap(), base_addr)).unwrap();
            http::serve(l, Arc::new(views), Limits::default(), WebConfig::default()).await;
        });
    });
    // Wait for the parent's "go" line on stdin before adding the files.
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    go.wait();
    let (addr, _) = rx.recv().unwrap();
    println!("ready {addr}");
    // Serve until the parent kills us.
    loop {
        std::thread::park();
    }
}

/// The daemon's HTTP views over `files` (none: the baseline's, without a file table); no probes, no
/// mount.
fn views_of(files: Option<SharedFileState>) -> DaemonViews {
    DaemonViews {
        metrics: Metrics::new(None, files.clone()),
        probes: None,
        files,
        session_ended: None,
        fs: None,
    }
}

/// The child process, killed on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read_word(r: &mut impl BufRead, tag: &str) -> String {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let rest = line
        .trim()
        .strip_prefix(tag)
        .unwrap_or_else(|| panic!("child said {line:?}, expected {tag}"));
    rest.trim().to_string()
}

/// p50 and p99 (ms) of `t` (seconds).
fn pcts(t: &mut [f64]) -> (f64, f64) {
    t.sort_by(f64::total_cmp);
    let at = |q: f64| t[((q * t.len() as f64).ceil() as usize).clamp(1, t.len()) - 1] * 1e3;
    (at(0.50), at(0.99))
}

/// `n` alternating GETs of `path` on `ours` and `base`: (ours p50, p99, base p50, p99, body bytes).
fn timed(ours: &Client, base: &Client, path: &str, n: usize) -> ([f64; 4], usize) {
    let mut t = Vec::with_capacity(n);
    let mut b = Vec::with_capacity(n);
    let mut bytes = 0;
    for _ in 0..n {
        let s = Instant::now();
        bytes = ours.get(path).unwrap().len();
        t.push(s.elapsed().as_secs_f64());
        let s = Instant::now();
        black_box(base.get(path).unwrap());
        b.push(s.elapsed().as_secs_f64());
    }
    let (p50, p99) = pcts(&mut t);
    let (b50, b99) = pcts(&mut b);
    ([p50, p99, b50, b99], bytes)
}

fn endpoint_row(figure: &str, base_what: &str, f: [f64; 4], goal_ms: Option<f64>) {
    let [p50, p99, b50, b99] = f;
    bench::row(&bench::Row {
        figure,
        ours: format!("p99 {p99:.2} ms (p50 {p50:.2})"),
        baseline: format!("{base_what}: p99 {b99:.2} ms (p50 {b50:.2})"),
        ratio: Some(p99 / b99),
        goal: if goal_ms.is_some() { "p99 < 25 ms" } else { "" },
        met: goal_ms.map(|g| p99 < g),
    });
}

fn scrapes() {
    let exe = std::env::current_exe().unwrap();
    let mut c = ChildGuard(
        Command::new(exe)
            .env(CHILD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = c.0.id();
    let mut out = BufReader::new(c.0.stdout.take().unwrap());
    let base_addr: SocketAddr = read_word(&mut out, "base").parse().unwrap();
    let rss_before = vm_rss_kib(pid);
    {
        use std::io::Write;
        let mut stdin = c.0.stdin.take().unwrap();
        writeln!(stdin, "go").unwrap();
    }
    let t = Instant::now();
    let addr: SocketAddr = read_word(&mut out, "ready").parse().unwrap();
    let fill = t.elapsed().as_secs_f64();
    let rss_filled = vm_rss_kib(pid);
    let ours = Client::new(addr, Duration::from_secs(30)).unwrap();
    let base = Client::new(base_addr, Duration::from_secs(30)).unwrap();
    // Warm both servers up.
    for p in ["/metrics", TOP_QUERY] {
        black_box(ours.get(p).unwrap());
        black_box(base.get(p).unwrap());
    }
    let (m, m_bytes) = timed(&ours, &base, "/metrics", SCRAPES);
    let (f, f_bytes) = timed(&ours, &base, TOP_QUERY, SCRAPES);
    let rss_scraped = vm_rss_kib(pid);
    let (a, a_bytes) = timed(&ours, &base, ALL_QUERY, 20);
    let rss_all = vm_rss_kib(pid);
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "\nscrape through the HTTP server, {FILES} files (each opened with a joined latency, every 10th DAX-faulted), \
         max 500 file series; baseline = the same daemon views without a file table, same process, alternating"
    );
    println!(
        "{:<52} {:>9} {:>9} {:>13} {:>13} {:>10}",
        "request", "p50 ms", "p99 ms", "base p50 ms", "base p99 ms", "body KiB"
    );
    for (what, v, bytes, n) in [
        ("/metrics", m, m_bytes, SCRAPES),
        (TOP_QUERY, f, f_bytes, SCRAPES),
        (ALL_QUERY, a, a_bytes, 20),
    ] {
        println!(
            "{:<52} {:>9.2} {:>9.2} {:>13.2} {:>13.2} {:>10.0}   ({n} requests)",
            what,
            v[0],
            v[1],
            v[2],
            v[3],
            bytes as f64 / 1024.0
        );
    }
    println!(
        "daemon-side process VmRSS: {:.1} MiB before the files, {:.1} MiB with them ({fill:.2} s to add), \
         {:.1} MiB after the /metrics and top scrapes, {:.1} MiB after 20 unlimited file listings",
        mib(rss_before),
        mib(rss_filled),
        mib(rss_scraped),
        mib(rss_all)
    );
    endpoint_row(
        "/metrics at 100k files, HTTP, 200 scrapes",
        "the same views without a file table",
        m,
        Some(25.0),
    );
    endpoint_row(
        "/api/v1/files (top's query: last_access, limit 500) at 100k files, HTTP, 200 requests",
        "the same views without a file table",
        f,
        Some(25.0),
    );
    endpoint_row(
        "/api/v1/files unlimited (snapshot's query: sort=path, all 100k rows), HTTP, 20 requests",
        "the same views without a file table",
        a,
        None,
    );
    let rss = rss_scraped.max(rss_all);
    bench::row(&bench::Row {
        figure: "process RSS holding 100k files + HTTP server, after the scrapes (VmRSS)",
        ours: format!("{:.1} MiB", mib(rss)),
        baseline: format!("same process before the files {:.1} MiB", mib(rss_before)),
        ratio: Some(rss as f64 / rss_before as f64),
        goal: "< 64 MiB",
        met: Some(mib(rss) < 64.0),
    });
}

/// Where a scrape's time goes, in this process: the render functions the server calls, alone.
fn in_process() {
    let state = SharedFileState::new(FileState {
        join: populated(FILES),
        fs_uuid: "3f2d9c1e-7b4a-4e8f-9a61-0c5d2e7f8a93".into(),
        max_series: 500,
    });
    let metrics = Metrics::new(None, Some(state.clone()));
    let q = famfs_daemon::http::api::parse_file_query(Some("sort=last_access&limit=500")).unwrap();
    let (mut fold, mut render, mut top) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..50 {
        let st = state.read().unwrap();
        let t = Instant::now();
        black_box(famfs_daemon::join::fold_for_series(&st.join, 500).folded);
        fold.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        black_box(famfs_daemon::join::query(&st.join, &q).len());
        top.push(t.elapsed().as_secs_f64());
        drop(st);
        let t = Instant::now();
        black_box(
            metrics
                .render(famfs_daemon::metrics::Format::PrometheusText)
                .unwrap(),
        );
        render.push(t.elapsed().as_secs_f64());
    }
    let (f50, _) = pcts(&mut fold);
    let (r50, r99) = pcts(&mut render);
    let (q50, _) = pcts(&mut top);
    println!(
        "in process, {FILES} files, 50 runs: Metrics::render p50 {r50:.2} ms (p99 {r99:.2}), of which the fold \
         {f50:.2} ms; top's query (select and sort, no rows) {q50:.2} ms"
    );
    writer_waits(state);
}

/// How long the join (the one writer of the file table) waits for its write lock while the daemon's
/// views encode unlimited listings of every file, against how long one listing takes (what one hold
/// of the read lock for the whole listing would make it wait).
fn writer_waits(state: SharedFileState) {
    use famfs_daemon::http::Views;
    const LISTINGS: usize = 5;
    let views = views_of(Some(state.clone()));
    let all =
        famfs_daemon::http::api::parse_file_query(Some("sort=path&limit=1099511627776")).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    // Reserved up front: the measuring loop allocates nothing (a growing vector's reallocation
    // would be measured too).
    let mut waits = Vec::with_capacity(1 << 22);
    let mut listings = Vec::new();
    std::thread::scope(|s| {
        let lister = s.spawn(|| {
            let mut took = Vec::new();
            for _ in 0..LISTINGS {
                let t = Instant::now();
                let body = views.files_json(&all).unwrap();
                took.push(t.elapsed().as_secs_f64());
                assert!(body.len() > FILES as usize * 100, "{} bytes", body.len());
            }
            done.store(true, std::sync::atomic::Ordering::Release);
            took
        });
        // The join's side: take the write lock again and again, as ingest does, until the listings end.
        while !done.load(std::sync::atomic::Ordering::Acquire) && waits.len() < waits.capacity() {
            waits.push(state.writer_wait().unwrap().as_secs_f64());
            std::thread::yield_now();
        }
        listings = lister.join().unwrap();
    });
    let worst = waits.iter().copied().fold(0.0, f64::max) * 1e3;
    let (w50, w99) = pcts(&mut waits);
    let (l50, _) = pcts(&mut listings);
    println!(
        "join write-lock waits during {LISTINGS} unlimited listings ({} takes): max {worst:.2} ms, p99 \
         {w99:.3} ms, p50 {w50:.4} ms; one listing {l50:.1} ms",
        waits.len()
    );
    bench::row(&bench::Row {
        figure: "join write-lock wait while unlimited listings of 100k files are encoded (longest of all takes)",
        ours: format!("max {worst:.2} ms (p99 {w99:.3} ms)"),
        baseline: format!("one listing {l50:.1} ms (one read-lock hold for all rows)"),
        ratio: Some(worst / l50),
        goal: "",
        met: None,
    });
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    ingest();
    scrapes();
    in_process();
}
