//! Join and scrape benchmark (not a test): join ingest rate with nothing lost, `/metrics` render time
//! and daemon RSS with 1k, 10k and 100k tracked files. Every figure is printed beside a baseline
//! measured in the same run. Run: `cargo bench -p famfs-daemon --bench join`.

// A benchmark, not product code: a failed step should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{collections::HashMap, hint::black_box, time::Instant};

use famfs_common::event::{Event, KIND_REQ_END};
use famfs_daemon::{
    fuse::RequestRecord,
    join::{FileState, Join, SharedFileState},
    metrics::{Format, Metrics},
    server::{Catalog, FileInfo},
};

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

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1 << 20) as f64
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
    println!(
        "join ingest: {N} requests + {N} kernel events in {:.3} s = {:.2} M events/s, lost {lost}",
        took,
        events / took / 1e6
    );
    println!(
        "  baseline (hash insert+remove): {:.3} s = {:.2} M events/s; join/baseline time ratio {:.2}",
        base,
        events / base / 1e6,
        took / base
    );
    assert_eq!(lost, 0, "the join lost events");
}

fn scrape(files: u64) -> (f64, f64, f64, f64, f64) {
    let rss0 = rss_mib();
    let mut j = Join::new(40, 1, 0, 0);
    for id in 0..files {
        let r = RequestRecord {
            mount_epoch: 1,
            connection: 40,
            unique: 2 * id + 2,
            opcode: 14,
            nodeid: 2 + id,
            reply_ns: id,
            ..Default::default()
        };
        j.ingest_server(&r, &Cat);
    }
    let state = SharedFileState::new(FileState {
        join: j,
        fs_uuid: "3f2d9c1e-7b4a-4e8f-9a61-0c5d2e7f8a93".into(),
        max_series: 500,
    });
    let metrics = Metrics::new(None, Some(state));
    let baseline = Metrics::new(None, None);
    let rss = rss_mib() - rss0;
    let mut times = Vec::with_capacity(50);
    let mut base_times = Vec::with_capacity(50);
    let mut bytes = 0;
    for _ in 0..50 {
        let t = Instant::now();
        bytes = black_box(metrics.render(Format::PrometheusText).unwrap()).len();
        times.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        black_box(baseline.render(Format::PrometheusText).unwrap());
        base_times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    base_times.sort_by(f64::total_cmp);
    let p50 = times[25] * 1e3;
    let p99 = times[49] * 1e3;
    let base_p50 = base_times[25] * 1e3;
    (p50, p99, base_p50, rss, bytes as f64 / 1024.0)
}

fn main() {
    ingest();
    println!();
    println!(
        "scrape (/metrics render, 500 file series, 50 runs)  baseline = registry without the per-file families"
    );
    println!(
        "{:>8}  {:>9}  {:>9}  {:>13}  {:>10}  {:>9}",
        "files", "p50 ms", "p99 ms", "baseline p50", "body KiB", "RSS MiB"
    );
    for n in [1_000u64, 10_000, 100_000] {
        let (p50, p99, b, rss, kib) = scrape(n);
        println!("{n:>8}  {p50:>9.2}  {p99:>9.2}  {b:>10.3} ms  {kib:>10.0}  {rss:>9.1}");
    }
}
