//! `famfs-trace top`, `famfs-trace snapshot` and `famfs-trace diff`: argument parsing, files and exit
//! codes for the operator views. The view itself lives in `crate::top`, the comparison in
//! `crate::regress`.
//!
//! Exit codes: `top --once` 0, or 1 when the daemon did not answer; `snapshot` 0, or 1 on any error;
//! `diff` 0 (no regression), 1 (a regression above the threshold), 2 (a snapshot could not be read).

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{
    regress,
    top::{
        self, TopConfig,
        app::SortKey,
        collector::{self, FilesQuery},
        model::{SNAPSHOT_FORMAT, Snapshot},
    },
};

/// Parse `500ms`, `1s`, `2.5s`, `1m`.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let bad = || format!("--interval {s:?}: expected a duration such as 500ms, 1s, 2.5s or 1m");
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        return Err(bad());
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 || v * scale > 86400.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(v * scale))
}

fn parse_sort(s: &str) -> Result<SortKey, String> {
    SortKey::parse(s)
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Daemon HTTP address.
    #[arg(long, default_value = super::DEFAULT_LISTEN)]
    pub addr: String,
    /// Poll interval (500ms, 1s, 2.5s, 1m).
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// File table order: last_access, opens, faults, fmap_bytes or path (`s` cycles).
    #[arg(long, default_value = "last_access", value_parser = parse_sort)]
    pub sort: SortKey,
    /// Show only files whose path contains this (`/` edits).
    #[arg(long, default_value = "")]
    pub filter: String,
    /// At most this many files are fetched per poll.
    #[arg(long, default_value_t = 500)]
    pub limit: usize,
    /// Print one plain-text frame (two samples, --interval apart) to stdout and exit.
    #[arg(long, alias = "batch")]
    pub once: bool,
    /// Width of the --once frame (default: the terminal's, else 120).
    #[arg(long)]
    pub width: Option<u16>,
}

pub fn top(args: TopArgs) -> Result<ExitCode> {
    let addr = collector::resolve(&args.addr).map_err(anyhow::Error::msg)?;
    if args.interval < Duration::from_millis(100) && !args.once {
        bail!("--interval {:?}: at least 100ms", args.interval);
    }
    let cfg = TopConfig {
        addr,
        addr_text: args.addr.clone(),
        interval: args.interval,
        sort: args.sort,
        filter: args.filter.clone(),
        limit: args.limit,
    };
    if args.once {
        let width = args.width.unwrap_or_else(|| {
            if std::io::stdout().is_terminal() {
                crossterm::terminal::size().map_or(120, |(w, _)| w)
            } else {
                120
            }
        });
        let (text, ok) = top::run_once(&cfg, width.max(40))?;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    if !std::io::stdout().is_terminal() {
        bail!("stdout is not a terminal: use --once for a plain-text frame");
    }
    top::run_live(&cfg)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Daemon HTTP address.
    #[arg(long, default_value = super::DEFAULT_LISTEN)]
    pub addr: String,
    /// Where to write the snapshot (JSON); `-` for stdout.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Request timeout.
    #[arg(long, default_value = "10s", value_parser = parse_interval)]
    pub timeout: Duration,
}

pub fn snapshot(args: SnapshotArgs) -> Result<ExitCode> {
    let addr = collector::resolve(&args.addr).map_err(anyhow::Error::msg)?;
    let q = FilesQuery {
        sort: "path",
        filter: String::new(),
        limit: 1 << 40,
    };
    let snap = collector::fetch_snapshot(addr, &q, args.timeout)
        .with_context(|| format!("reading the daemon at {}", args.addr))?;
    let json = serde_json::to_string_pretty(&snap)? + "\n";
    if args.output.as_os_str() == "-" {
        std::io::stdout().lock().write_all(json.as_bytes())?;
    } else {
        write_atomically(&args.output, json.as_bytes())?;
        eprintln!(
            "famfs-trace: snapshot of {}: {} files, {} opcode series -> {}",
            args.addr,
            snap.files.len(),
            snap.opcodes.len(),
            args.output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("-o {}: not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("renaming {} to {}", tmp.display(), path.display())
    })
}

/// Read a snapshot file; errors name the file, and the line and column of bad JSON.
pub fn load_snapshot(path: &Path) -> Result<Snapshot, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let s: Snapshot = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: line {} column {}: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    if s.format != SNAPSHOT_FORMAT {
        return Err(format!(
            "{}: format {:?}, expected {SNAPSHOT_FORMAT:?} (written by `famfs-trace snapshot`?)",
            path.display(),
            s.format
        ));
    }
    Ok(s)
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Snapshot taken before the change.
    pub before: PathBuf,
    /// Snapshot taken after the change.
    pub after: PathBuf,
    /// Growth that counts as a regression: relative for latencies, sizes and retries; in
    /// percentage points for ratios (PMD fallback, errors).
    #[arg(long, default_value = "10%", value_parser = regress::parse_threshold)]
    pub threshold: f64,
    /// List unchanged values too.
    #[arg(long)]
    pub all: bool,
}

pub fn diff(args: DiffArgs) -> Result<ExitCode> {
    let load = |p: &Path| load_snapshot(p);
    let (before, after) = match (load(&args.before), load(&args.after)) {
        (Ok(b), Ok(a)) => (b, a),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("famfs-trace: error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let report = regress::compare(&before, &after, args.threshold);
    let mut out = std::io::stdout().lock();
    out.write_all(report.render(args.all).as_bytes())?;
    out.flush()?;
    Ok(if report.regressions() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_interval("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_interval("0s"), Ok(Duration::ZERO));
        assert!(
            parse_interval("5")
                .unwrap_err()
                .contains("--interval \"5\"")
        );
        assert!(parse_interval("-1s").is_err());
    }

    #[test]
    fn snapshot_files_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.json");
        std::fs::write(&p, "{\"format\": \"other\"}").unwrap();
        assert!(load_snapshot(&p).unwrap_err().contains("format \"other\""));
        std::fs::write(&p, "{\n  \"format\": 3\n}").unwrap();
        assert!(
            load_snapshot(&p)
                .unwrap_err()
                .contains("s.json: line 2 column")
        );
        let s = Snapshot {
            format: SNAPSHOT_FORMAT.into(),
            ..Default::default()
        };
        write_atomically(&p, serde_json::to_string(&s).unwrap().as_bytes()).unwrap();
        assert_eq!(load_snapshot(&p).unwrap(), s);
    }
}
