//! `famfs-trace top`: argument parsing and exit codes of the live view. The view itself lives in
//! `crate::top`.
//!
//! Exit codes: `top --once` 0, or 1 when the daemon did not answer. Must not talk to the daemon or the
//! terminal itself beyond choosing the frame width.

use std::{io::IsTerminal, io::Write, process::ExitCode, time::Duration};

use anyhow::{Result, bail};
use clap::Args;

use crate::{
    join::FileSort,
    top::{self, TopConfig},
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

/// Parse a `--sort` value (the daemon's sort key names).
pub fn parse_sort(s: &str) -> Result<FileSort, String> {
    FileSort::parse(s).ok_or_else(|| format!("--sort {s:?}: {}", FileSort::expected()))
}

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub connect: super::connect::ConnectArgs,
    /// Poll interval (500ms, 1s, 2.5s, 1m).
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// File table order: last_access, opens, faults, fmap_bytes or path (`s` cycles).
    #[arg(long, default_value = "last_access", value_parser = parse_sort)]
    pub sort: FileSort,
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
    let (addr, security) = args.connect.resolve()?;
    if args.interval < Duration::from_millis(100) && !args.once {
        bail!("--interval {:?}: at least 100ms", args.interval);
    }
    let cfg = TopConfig {
        addr,
        security,
        addr_text: args.connect.addr.clone(),
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
    fn sort_keys() {
        assert_eq!(parse_sort("fmap_bytes"), Ok(FileSort::FmapBytes));
        assert_eq!(
            parse_sort("size").unwrap_err(),
            "--sort \"size\": expected last_access, opens, faults, fmap_bytes or path"
        );
    }
}
