//! The one output format of the benchmarks: every bench prints its human-readable lines and, for each
//! figure it measured, one machine-readable row that `cargo xtask bench` (xtask/src/bench.rs) gathers
//! into the single table the README carries.
//!
//! A row is one line, tab-separated: `bench-row`, figure, ours, baseline (what it is and its value,
//! measured in the same run), ratio (ours ÷ baseline in the figure's own unit, or `-`), goal (`-` when
//! the figure has none), verdict (`met`, `missed` or `-`). A bench that cannot run prints
//! `bench-skip`, its name and the reason (and a `SKIP:` line for people). Owns the format only: what a
//! row says is the calling bench's.

// Also included alone (`#[path]`) by benches that need nothing else of the support module.
#![allow(dead_code)]

/// One figure of a benchmark.
pub struct Row<'a> {
    /// What was measured, with the workload's size (e.g. "sequential read, 512 MiB, buffered").
    pub figure: &'a str,
    /// Our figure with its unit.
    pub ours: String,
    /// The same-run baseline: what it is and its figure with the unit.
    pub baseline: String,
    /// ours ÷ baseline, in the unit of the figure (throughput ratio for rates, time ratio for times).
    pub ratio: Option<f64>,
    /// The goal, stated on the ratio or on our figure; empty: none.
    pub goal: &'a str,
    /// Whether the goal was met (None: no goal).
    pub met: Option<bool>,
}

fn clean(s: &str) -> String {
    s.replace(['\t', '\n'], " ")
}

/// Print `row` for `cargo xtask bench`.
pub fn row(row: &Row<'_>) {
    let ratio = row
        .ratio
        .map_or_else(|| "-".to_string(), |r| format!("×{}", ratio_fmt(r)));
    let goal = if row.goal.is_empty() { "-" } else { row.goal };
    let verdict = match row.met {
        Some(true) => "met",
        Some(false) => "missed",
        None => "-",
    };
    println!(
        "bench-row\t{}\t{}\t{}\t{ratio}\t{}\t{verdict}",
        clean(row.figure),
        clean(&row.ours),
        clean(&row.baseline),
        clean(goal),
    );
}

/// A ratio with 2 significant figures below 10, else whole.
pub fn ratio_fmt(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}")
    } else if r >= 1.0 {
        format!("{r:.2}")
    } else {
        format!("{r:.3}")
    }
}

/// Say that bench `name` cannot run here, and why.
pub fn skip(name: &str, reason: &str) {
    println!("SKIP: {name}: {reason}");
    println!("bench-skip\t{}\t{}", clean(name), clean(reason));
}
