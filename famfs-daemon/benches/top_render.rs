//! `famfs-trace top` render benchmark (not a test): the cost of one frame with 10k files (and 40
//! opcode rows) against an empty frame, both measured in the same run into ratatui's in-memory backend,
//! plus the once-per-poll cost of taking a 10k-file update (p99s, filter, sort).
//! Run: `cargo bench -p famfs-daemon --bench top_render`.

// A benchmark, not product code: a failed step should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/bench.rs"]
mod bench;

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use famfs_daemon::{
    http::api::{FileRow, Histogram, OpcodeStats, Snapshot},
    join::FileSort,
    top::{
        app::App,
        collector::{Rates, Update, rates},
        render,
    },
};
use ratatui::{Terminal, backend::TestBackend};

fn app() -> App {
    App::new(
        "127.0.0.1:9464".into(),
        Duration::from_secs(1),
        FileSort::Opens,
        String::new(),
        10_000,
    )
}

fn snapshot(files: usize) -> Snapshot {
    let mut slots = vec![0u64; 20];
    slots[12] = 5;
    slots[15] = 1;
    Snapshot {
        files: (0..files as u64)
            .map(|i| FileRow {
                path: format!("datasets/part-{i:07}.bin"),
                opens: i % 97,
                fmap_bytes: 56 + (i % 7) * 24,
                open_latency_log2_ns: slots.clone(),
                open_latency_count: 6,
                faults_pte: i % 13,
                faults_pmd: i % 5,
                last_access_ns: i * 1000,
                last_access_age_seconds: Some((files as u64 - i) as f64 * 0.01),
                ..Default::default()
            })
            .collect(),
        opcodes: (0..40u32)
            .map(|op| OpcodeStats {
                connection: 40,
                opcode: format!("op_{op}"),
                requests: u64::from(op) * 100,
                errors: 0,
                latency: Histogram {
                    bounds: (1..40).map(|i| (1u64 << i) as f64 * 1e-9).collect(),
                    cumulative: (1..40).map(|i| u64::from(op) * 100 * i / 39).collect(),
                    count: u64::from(op) * 100,
                    sum: 0.1,
                },
            })
            .collect(),
        ..Default::default()
    }
}

fn per_frame(app: &App, frames: u32) -> Duration {
    let mut term = Terminal::new(TestBackend::new(200, 60)).expect("terminal");
    // Warm up (first frame allocates the buffers).
    term.draw(|f| render::render(f, app)).expect("draw");
    let t = Instant::now();
    for _ in 0..frames {
        term.draw(|f| render::render(f, black_box(app)))
            .expect("draw");
    }
    t.elapsed() / frames
}

fn main() {
    let frames = 2000;
    let empty = app();
    let mut big = app();
    let snap = snapshot(10_000);
    let r: Rates = rates(None, &snap);
    let t = Instant::now();
    big.apply(Update::Data {
        snapshot: Box::new(snap),
        rates: r,
        at: Instant::now(),
    });
    let apply = t.elapsed();
    let base = per_frame(&empty, frames);
    let full = per_frame(&big, frames);
    println!(
        "top render, 200x60: empty frame {:.1} µs (baseline); 10k files + 40 opcodes {:.1} µs = {:.2}x baseline",
        base.as_secs_f64() * 1e6,
        full.as_secs_f64() * 1e6,
        full.as_secs_f64() / base.as_secs_f64()
    );
    println!(
        "taking a 10k-file update (p99s, sort): {:.2} ms = {:.0}x one empty frame (once per poll, not per frame)",
        apply.as_secs_f64() * 1e3,
        apply.as_secs_f64() / base.as_secs_f64()
    );
    bench::row(&bench::Row {
        figure: "top: one 200x60 frame, 10k files + 40 opcodes",
        ours: format!("{:.0} µs", full.as_secs_f64() * 1e6),
        baseline: format!("empty frame: {:.0} µs", base.as_secs_f64() * 1e6),
        ratio: Some(full.as_secs_f64() / base.as_secs_f64()),
        goal: "< 16 ms (60 frames/s)",
        met: Some(full.as_secs_f64() < 0.016),
    });
    bench::row(&bench::Row {
        figure: "top: taking a 10k-file update (once per poll)",
        ours: format!("{:.2} ms", apply.as_secs_f64() * 1e3),
        baseline: format!("empty frame: {:.0} µs", base.as_secs_f64() * 1e6),
        ratio: Some(apply.as_secs_f64() / base.as_secs_f64()),
        goal: "",
        met: None,
    });
}
