//! Comparison tests with exact values: identical snapshots, a constructed famfs regression (huge pages
//! falling back, slower opens, GET_FMAP retries appearing), thresholds at their edges.

use super::*;
use crate::http::api::{FaultClass, FaultCounts, Histogram, SNAPSHOT_FORMAT};

/// Histogram over log2 ns bounds (2 ns .. 2^20 ns) with `n` observations in (2^(k-1), 2^k] ns.
fn lat(n: u64, k: usize, sum: f64) -> Histogram {
    Histogram {
        bounds: (1..=20).map(|i| (1u64 << i) as f64 * 1e-9).collect(),
        cumulative: (1..=20).map(|i| if i >= k { n } else { 0 }).collect(),
        count: n,
        sum,
    }
}

fn file(path: &str, slot: usize, mean: f64) -> FileRow {
    let mut slots = vec![0u64; slot + 1];
    slots[slot] = 2;
    FileRow {
        path: path.into(),
        fmap_bytes: 56,
        fmap_extents: 1,
        opens: 2,
        open_latency_count: 2,
        open_latency_mean_seconds: mean,
        open_latency_log2_ns: slots,
        faults_pte: 10,
        faults_pmd: 2,
        ..Default::default()
    }
}

fn before() -> Snapshot {
    Snapshot {
        format: SNAPSHOT_FORMAT.into(),
        files: vec![file("a", 12, 6e-6), file("old", 12, 6e-6)],
        opcodes: vec![OpcodeStats {
            connection: 40,
            opcode: "OPEN".into(),
            requests: 10,
            errors: 0,
            latency: lat(10, 12, 3e-5),
        }],
        faults: FaultCounts {
            pte: FaultClass::default(),
            pmd: FaultClass {
                ok: 100,
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

#[test]
fn identical_snapshots_have_no_change() {
    let r = compare(&before(), &before(), 0.10);
    // 2 files × 8 values + OPEN × 4 + dax × 3.
    assert_eq!(r.changes.len(), 23);
    assert!(r.changes.iter().all(|c| !c.changed() && !c.regression));
    assert_eq!(r.regressions(), 0);
    assert_eq!(
        r.render(false),
        "no regression above 10% (23 values compared)\n"
    );
    let all = r.render(true);
    assert_eq!(all.lines().count(), 1 + 23 + 1);
    assert!(
        all.contains("\nfile a       open latency p99     8.2µs  8.2µs       =\n"),
        "{all}"
    );
}

fn regressed() -> Snapshot {
    let mut a = before();
    a.files.retain(|f| f.path != "old");
    let f = &mut a.files[0];
    // Opens 4× slower, huge pages all falling back, a bigger fmap, GET_FMAP retries appearing.
    *f = FileRow {
        fmap_bytes: 60,
        get_fmap_retries: 3,
        faults_pte: 522,
        faults_pmd: 0,
        faults_fallback: 2,
        ..file("a", 14, 2e-5)
    };
    a.files.push(file("new", 12, 6e-6));
    // OPEN twice as slow; half the PMD faults fall back.
    a.opcodes[0].latency = lat(10, 13, 6e-5);
    a.faults.pmd = FaultClass {
        ok: 50,
        fallback: 50,
        error: 0,
    };
    a
}

#[test]
fn constructed_regression_exact_report() {
    let r = compare(&before(), &regressed(), 0.10);
    let v = |scope: &str, metric: &str| {
        r.changes
            .iter()
            .find(|c| c.scope == scope && c.metric == metric)
            .unwrap()
            .clone()
    };
    // p99 of two OPENs in 4096..=8191 ns: 4096 + 4096 × 0.99 = 8151.04 ns; in 16384..=32767 ns:
    // 32604.16 ns, exactly four times as much.
    let p99 = v("file a", "open latency p99");
    assert!((p99.before.unwrap() - 8151.04e-9).abs() < 1e-15);
    assert!((p99.after.unwrap() - 32604.16e-9).abs() < 1e-15);
    assert_eq!(p99.change_text(), "+300.0%");
    assert!(p99.regression);
    let fb = v("file a", "PMD fallback ratio");
    assert_eq!((fb.before, fb.after), (Some(0.0), Some(1.0)));
    assert_eq!(fb.change_text(), "+100.0pt");
    let fm = v("file a", "fmap bytes");
    assert_eq!(
        (fm.before, fm.after, fm.regression),
        (Some(56.0), Some(60.0), false)
    );
    assert_eq!(fm.change_text(), "+7.1%");
    let rt = v("file a", "GET_FMAP retries");
    assert_eq!((rt.change_text().as_str(), rt.regression), ("new", true));
    let pte = v("file a", "PTE faults");
    assert_eq!(
        (pte.before, pte.after, pte.regression),
        (Some(10.0), Some(522.0), false)
    );
    let om = v("opcode OPEN", "latency mean");
    assert_eq!((om.before, om.after), (Some(3e-6), Some(6e-6)));
    assert!(om.regression);
    let d = v("dax", "PMD fallback ratio");
    assert_eq!(
        (d.before, d.after, d.regression),
        (Some(0.0), Some(0.5), true)
    );
    assert_eq!(r.only_before, ["old"]);
    assert_eq!(r.only_after, ["new"]);
    assert_eq!(r.regressions(), 7);

    let want = "\
SCOPE        METRIC              BEFORE   AFTER    CHANGE
file a       open latency mean    6.0µs  20.0µs   +233.3%  REGRESSION
file a       open latency p99     8.2µs  32.6µs   +300.0%  REGRESSION
file a       PMD fallback ratio    0.0%  100.0%  +100.0pt  REGRESSION
file a       PTE faults              10     522  +5120.0%
file a       PMD faults               2       0   -100.0%
file a       fmap bytes              56      60     +7.1%
file a       GET_FMAP retries         0       3       new  REGRESSION
opcode OPEN  latency mean         3.0µs   6.0µs   +100.0%  REGRESSION
opcode OPEN  latency p99          4.1µs   8.2µs   +100.0%  REGRESSION
dax          PMD fallback ratio    0.0%   50.0%   +50.0pt  REGRESSION
file old: only in BEFORE
file new: only in AFTER
7 regressions above 10% (15 values compared)
";
    assert_eq!(r.render(false), want, "\n{}", r.render(false));
}

#[test]
fn thresholds_at_the_edge_and_improvements() {
    let t = 0.10;
    assert!(!is_regression(Kind::Latency, Some(1.0), Some(1.1), t));
    assert!(is_regression(Kind::Latency, Some(1.0), Some(1.1001), t));
    assert!(!is_regression(Kind::Latency, Some(2.0), Some(1.0), t));
    assert!(!is_regression(Kind::Ratio, Some(0.1), Some(0.2), t));
    assert!(is_regression(Kind::Ratio, Some(0.1), Some(0.2001), t));
    assert!(is_regression(Kind::WorseCount, Some(0.0), Some(1.0), t));
    assert!(!is_regression(Kind::WorseCount, Some(0.0), Some(0.0), t));
    assert!(!is_regression(Kind::Count, Some(1.0), Some(1e9), t));
    assert!(!is_regression(Kind::Latency, None, Some(1.0), t));
    assert!(!is_regression(Kind::Latency, Some(1.0), None, t));
    // A faster run reports a negative change and no regression.
    let r = compare(&regressed(), &before(), t);
    assert_eq!(r.regressions(), 0);
    let p99 = r
        .changes
        .iter()
        .find(|c| c.scope == "file a" && c.metric == "open latency p99")
        .unwrap();
    assert_eq!(p99.change_text(), "-75.0%");
}

#[test]
fn threshold_parsing() {
    assert_eq!(parse_threshold("10%"), Ok(0.10));
    assert_eq!(parse_threshold("10"), Ok(0.10));
    assert_eq!(parse_threshold("2.5%"), Ok(0.025));
    assert!(
        parse_threshold("ten")
            .unwrap_err()
            .contains("--threshold \"ten\"")
    );
    assert!(parse_threshold("-5%").is_err());
    assert_eq!(fmt_threshold(0.025), "2.5");
    assert_eq!(fmt_threshold(0.10), "10");
}
