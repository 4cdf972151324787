//! `cargo xtask bench [--bench NAME]...`: runs every benchmark of famfs-daemon (`cargo bench --benches`,
//! release build) or the named ones,
//! echoes what they print, and gathers their `bench-row` / `bench-skip` lines (format owned by
//! famfs-daemon/tests/support/bench.rs) into one table, printed at the end and written as Markdown to
//! `target/bench/table.md` with the machine it ran on. Not part of `cargo xtask test` (which only
//! compiles the benches). Owns the gathering and layout only; no figure is computed here.

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

/// One gathered row: figure, ours, baseline, ratio, goal, verdict.
#[derive(Debug, PartialEq)]
struct Row([String; 6]);

#[derive(Default)]
struct Gathered {
    rows: Vec<Row>,
    /// (bench, reason)
    skips: Vec<(String, String)>,
}

impl Gathered {
    fn add_line(&mut self, line: &str) {
        let mut f = line.split('\t');
        match f.next() {
            Some("bench-row") => {
                let cols: Vec<String> = f.map(str::to_string).collect();
                if let Ok(cols) = <[String; 6]>::try_from(cols) {
                    self.rows.push(Row(cols));
                }
            }
            Some("bench-skip") => {
                let name = f.next().unwrap_or_default().to_string();
                let why = f.next().unwrap_or_default().to_string();
                self.skips.push((name, why));
            }
            _ => {}
        }
    }

    fn markdown(&self, machine: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Machine: {machine}\n");
        let _ = writeln!(
            s,
            "| figure | ours | baseline (same run) | ratio | goal | goal met |\n|---|---|---|---|---|---|"
        );
        for Row(c) in &self.rows {
            let _ = writeln!(s, "| {} |", c.join(" | "));
        }
        for (name, why) in &self.skips {
            let _ = writeln!(s, "| {name} | SKIP: {why} | | | | |");
        }
        s
    }
}

/// CPU model, cores, memory and kernel of this machine, in one line.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_string();
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib.div_ceil(1 << 20));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {mem_gib} GiB, Linux {}",
        kernel.trim()
    )
}

/// Run the benchmarks: all of them, or those `extra` names (e.g. `--bench replay`).
pub fn run(extra: &[String]) -> Result<()> {
    let all = ["--benches".to_string()];
    let mut child = Command::new("cargo")
        .args(["bench", "-p", "famfs-daemon"])
        .args(if extra.is_empty() { &all[..] } else { extra })
        .current_dir(super::root())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo bench")?;
    let out = child.stdout.take().context("cargo bench stdout")?;
    let mut g = Gathered::default();
    for line in BufReader::new(out).lines() {
        let line = line?;
        if !line.starts_with("bench-") {
            println!("{line}");
        }
        g.add_line(&line);
    }
    let ok = child.wait()?.success();
    let table = g.markdown(&machine());
    println!("\n{table}");
    let dir = super::target_dir()?.join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("table.md");
    std::fs::write(&path, &table).with_context(|| format!("writing {}", path.display()))?;
    println!("(table written to {})", path.display());
    if !ok {
        bail!("cargo bench failed");
    }
    if g.rows.is_empty() {
        bail!("no benchmark printed a row");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_skips_are_gathered_and_laid_out() {
        let mut g = Gathered::default();
        g.add_line("seq read 12.3 GB/s");
        g.add_line("bench-row\tseq read\t2.1 GB/s\ttmpfs 7.0 GB/s\t×0.300\t≥ ×0.33\tmissed");
        g.add_line("bench-row\ttoo\tfew");
        g.add_line("bench-skip\tprobe cost\tneeds root");
        assert_eq!(g.rows.len(), 1);
        assert_eq!(g.rows[0].0[5], "missed");
        assert_eq!(
            g.markdown("m"),
            "Machine: m\n\n| figure | ours | baseline (same run) | ratio | goal | goal met |\n\
             |---|---|---|---|---|---|\n\
             | seq read | 2.1 GB/s | tmpfs 7.0 GB/s | ×0.300 | ≥ ×0.33 | missed |\n\
             | probe cost | SKIP: needs root | | | | |\n"
        );
    }
}
