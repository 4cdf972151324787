//! Performance-regression comparison of two daemon snapshots (`famfs-trace diff BEFORE AFTER`): per
//! file (matched by path) OPEN latency mean and p99, PMD→PTE fallback ratio, DAX fault counts by size,
//! fmap bytes and extents, GET_FMAP retries; per opcode (summed over connections) request latency mean
//! and p99, error ratio and request count; and the daemon-wide DAX fault counts and fallback ratio.
//!
//! A value regresses when it grows past the threshold: relatively (after > before × (1 + t)) for
//! latencies, sizes and retries, in absolute percentage points for ratios (fallback, errors), and from
//! zero to anything for any of them. Counts that only measure the workload (requests, faults by size)
//! are reported, never judged. Pure: takes two [`Snapshot`]s (the HTTP API's schema, as `famfs-trace
//! snapshot` saved them), returns a [`Report`]; reading files and exit codes belong to the CLI.

use crate::{
    http::api::{FileRow, OpcodeStats, Snapshot},
    util::fmt::{fmt_bytes, fmt_secs},
};

/// How a value is shown and judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Seconds; higher is worse (relative threshold).
    Latency,
    /// Bytes; higher is worse (relative threshold).
    Bytes,
    /// A count where higher is worse (relative threshold), e.g. retries, extents.
    WorseCount,
    /// A ratio in 0..=1; higher is worse (threshold in percentage points).
    Ratio,
    /// A count that depends on the workload: reported, not judged.
    Count,
}

impl Kind {
    fn show(self, v: Option<f64>) -> String {
        let Some(v) = v else {
            return "-".into();
        };
        match self {
            Kind::Latency => fmt_secs(v),
            Kind::Bytes => fmt_bytes(v as u64),
            Kind::WorseCount | Kind::Count => format!("{v:.0}"),
            Kind::Ratio => format!("{:.1}%", v * 100.0),
        }
    }
}

/// One compared value.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// `file PATH`, `opcode NAME` or `dax`.
    pub scope: String,
    pub metric: &'static str,
    pub kind: Kind,
    pub before: Option<f64>,
    pub after: Option<f64>,
    pub regression: bool,
}

impl Change {
    /// `+12.5%`, `-3.0%`, `+90.0pt` (ratios), `new` (from zero or nothing), `gone`, or `=`.
    pub fn change_text(&self) -> String {
        match (self.before, self.after) {
            (Some(b), Some(a)) if a == b => "=".into(),
            (Some(b), Some(a)) if self.kind == Kind::Ratio => {
                format!("{:+.1}pt", (a - b) * 100.0)
            }
            (Some(b), Some(a)) if b != 0.0 => format!("{:+.1}%", (a - b) / b * 100.0),
            (_, Some(_)) => "new".into(),
            (Some(_), None) => "gone".into(),
            (None, None) => "=".into(),
        }
    }

    pub fn changed(&self) -> bool {
        self.before != self.after
    }
}

/// Judge `before → after` of `kind` against `threshold` (a fraction: 0.10 = 10 %).
pub fn is_regression(kind: Kind, before: Option<f64>, after: Option<f64>, threshold: f64) -> bool {
    let (Some(b), Some(a)) = (before, after) else {
        return false;
    };
    match kind {
        Kind::Count => false,
        Kind::Ratio => a - b > threshold + 1e-12,
        Kind::Latency | Kind::Bytes | Kind::WorseCount => {
            if b <= 0.0 {
                a > 0.0
            } else {
                a > b * (1.0 + threshold) * (1.0 + 1e-12)
            }
        }
    }
}

/// The outcome of a comparison.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub threshold: f64,
    /// Every compared value, files by path, then opcodes by name, then the daemon-wide faults.
    pub changes: Vec<Change>,
    pub only_before: Vec<String>,
    pub only_after: Vec<String>,
}

impl Report {
    pub fn regressions(&self) -> usize {
        self.changes.iter().filter(|c| c.regression).count()
    }

    /// The table of changed values (regressions marked), the files only on one side, and a summary
    /// line. With `all`, unchanged values are listed too.
    pub fn render(&self, all: bool) -> String {
        let rows: Vec<&Change> = self.changes.iter().filter(|c| all || c.changed()).collect();
        let mut out = String::new();
        if !rows.is_empty() {
            let cells: Vec<[String; 5]> = rows
                .iter()
                .map(|c| {
                    [
                        c.scope.clone(),
                        c.metric.to_string(),
                        c.kind.show(c.before),
                        c.kind.show(c.after),
                        c.change_text(),
                    ]
                })
                .collect();
            let head = ["SCOPE", "METRIC", "BEFORE", "AFTER", "CHANGE"];
            let mut w = head.map(str::len);
            for r in &cells {
                for (wi, c) in w.iter_mut().zip(r) {
                    *wi = (*wi).max(c.chars().count());
                }
            }
            let line = |r: [&str; 5], mark: &str| {
                let s = format!(
                    "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {:>w4$}  {mark}",
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    w0 = w[0],
                    w1 = w[1],
                    w2 = w[2],
                    w3 = w[3],
                    w4 = w[4],
                );
                s.trim_end().to_string() + "\n"
            };
            out.push_str(&line(head, ""));
            for (c, r) in rows.iter().zip(&cells) {
                let mark = if c.regression { "REGRESSION" } else { "" };
                out.push_str(&line(
                    [
                        r[0].as_str(),
                        r[1].as_str(),
                        r[2].as_str(),
                        r[3].as_str(),
                        r[4].as_str(),
                    ],
                    mark,
                ));
            }
        }
        for p in &self.only_before {
            out.push_str(&format!("file {p}: only in BEFORE\n"));
        }
        for p in &self.only_after {
            out.push_str(&format!("file {p}: only in AFTER\n"));
        }
        let pct = fmt_threshold(self.threshold);
        let n = self.regressions();
        if n == 0 {
            out.push_str(&format!(
                "no regression above {pct}% ({} values compared)\n",
                self.changes.len()
            ));
        } else {
            out.push_str(&format!(
                "{n} regression{} above {pct}% ({} values compared)\n",
                if n == 1 { "" } else { "s" },
                self.changes.len()
            ));
        }
        out
    }
}

struct Builder {
    threshold: f64,
    changes: Vec<Change>,
}

impl Builder {
    fn add(
        &mut self,
        scope: &str,
        metric: &'static str,
        kind: Kind,
        before: Option<f64>,
        after: Option<f64>,
    ) {
        if before.is_none() && after.is_none() {
            return;
        }
        self.changes.push(Change {
            scope: scope.to_string(),
            metric,
            kind,
            before,
            after,
            regression: is_regression(kind, before, after, self.threshold),
        });
    }
}

fn file_values(f: &FileRow) -> [(&'static str, Kind, Option<f64>); 8] {
    let lat = f.open_latency();
    let mean = if f.open_latency_count > 0 {
        Some(f.open_latency_mean_seconds)
    } else {
        lat.mean()
    };
    [
        ("open latency mean", Kind::Latency, mean),
        ("open latency p99", Kind::Latency, lat.quantile(0.99)),
        ("PMD fallback ratio", Kind::Ratio, f.fallback_ratio()),
        ("PTE faults", Kind::Count, Some(f.faults_pte as f64)),
        ("PMD faults", Kind::Count, Some(f.faults_pmd as f64)),
        ("fmap bytes", Kind::Bytes, Some(f.fmap_bytes as f64)),
        (
            "fmap extents",
            Kind::WorseCount,
            Some(f.fmap_extents as f64),
        ),
        (
            "GET_FMAP retries",
            Kind::WorseCount,
            Some(f.get_fmap_retries as f64),
        ),
    ]
}

fn opcode_values(o: &OpcodeStats) -> [(&'static str, Kind, Option<f64>); 4] {
    [
        ("latency mean", Kind::Latency, o.latency.mean()),
        ("latency p99", Kind::Latency, o.latency.quantile(0.99)),
        (
            "error ratio",
            Kind::Ratio,
            (o.requests > 0).then(|| o.errors as f64 / o.requests as f64),
        ),
        ("requests", Kind::Count, Some(o.requests as f64)),
    ]
}

/// Compare `before` with `after`; `threshold` is a fraction (0.10 = 10 %).
pub fn compare(before: &Snapshot, after: &Snapshot, threshold: f64) -> Report {
    let mut b = Builder {
        threshold,
        changes: Vec::new(),
    };
    let mut bf: Vec<&FileRow> = before.files.iter().collect();
    let mut af: Vec<&FileRow> = after.files.iter().collect();
    bf.sort_by(|x, y| x.path.cmp(&y.path));
    af.sort_by(|x, y| x.path.cmp(&y.path));
    let mut only_before = Vec::new();
    let mut only_after = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < bf.len() || j < af.len() {
        match (bf.get(i), af.get(j)) {
            (Some(x), Some(y)) if x.path == y.path => {
                let scope = format!("file {}", x.path);
                for ((m, k, vb), (_, _, va)) in file_values(x).into_iter().zip(file_values(y)) {
                    b.add(&scope, m, k, vb, va);
                }
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.path < y.path => {
                only_before.push(x.path.clone());
                i += 1;
            }
            (Some(_), Some(y)) => {
                only_after.push(y.path.clone());
                j += 1;
            }
            (Some(x), None) => {
                only_before.push(x.path.clone());
                i += 1;
            }
            (None, Some(y)) => {
                only_after.push(y.path.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }

    let bo = before.by_opcode();
    let ao = after.by_opcode();
    let mut names: Vec<&str> = bo.iter().chain(&ao).map(|o| o.opcode.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let empty = OpcodeStats::default();
    for name in names {
        let x = bo.iter().find(|o| o.opcode == name);
        let y = ao.iter().find(|o| o.opcode == name);
        let scope = format!("opcode {name}");
        let vx = opcode_values(x.unwrap_or(&empty));
        let vy = opcode_values(y.unwrap_or(&empty));
        for ((m, k, vb), (_, _, va)) in vx.into_iter().zip(vy) {
            b.add(&scope, m, k, x.and(vb), y.and(va));
        }
    }

    let (fb, fa) = (&before.faults, &after.faults);
    b.add(
        "dax",
        "PTE faults",
        Kind::Count,
        Some(fb.pte.total() as f64),
        Some(fa.pte.total() as f64),
    );
    b.add(
        "dax",
        "PMD faults",
        Kind::Count,
        Some(fb.pmd.total() as f64),
        Some(fa.pmd.total() as f64),
    );
    b.add(
        "dax",
        "PMD fallback ratio",
        Kind::Ratio,
        fb.pmd_fallback_ratio(),
        fa.pmd_fallback_ratio(),
    );
    Report {
        threshold,
        changes: b.changes,
        only_before,
        only_after,
    }
}

/// A threshold fraction as a percentage without float noise: `10`, `2.5`.
pub fn fmt_threshold(t: f64) -> String {
    let p = t * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{:.0}", p.round())
    } else {
        format!("{p:.1}")
    }
}

/// Parse `--threshold`: `10%`, `10` (both ten percent) or `2.5%`.
pub fn parse_threshold(s: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches('%');
    let v: f64 = t
        .parse()
        .map_err(|_| format!("--threshold {s:?}: expected a percentage such as 10%"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!(
            "--threshold {s:?}: must be a percentage of zero or more"
        ));
    }
    Ok(v / 100.0)
}

#[cfg(test)]
mod tests;
