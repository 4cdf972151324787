//! `famfs-trace snapshot` and `famfs-trace diff`: arguments, snapshot files and exit codes. The
//! snapshot is the daemon's `/api/v1/snapshot` (`http::api`'s schema, read by `top`'s collector), the
//! comparison `crate::regress`'s.
//!
//! Exit codes: `snapshot` 0, or 1 on any error; `diff` 0 (no regression), 1 (a regression above the
//! threshold), 2 (a snapshot could not be read). Must not compute anything about the snapshots (that is
//! `regress`'s) or define their format (`http::api`'s).

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, Result};
use clap::Args;

use super::top_cmd::parse_interval;
use crate::{
    http::{api::Snapshot, client::Client},
    join::{FileQuery, FileSort},
    regress,
    top::collector,
};

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub connect: super::connect::ConnectArgs,
    /// Where to write the snapshot (JSON); `-` for stdout.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Request timeout.
    #[arg(long, default_value = "10s", value_parser = parse_interval)]
    pub timeout: Duration,
}

pub fn snapshot(args: SnapshotArgs) -> Result<ExitCode> {
    let (addr, security) = args.connect.resolve()?;
    // Every file, by path.
    let q = FileQuery {
        sort: FileSort::Path,
        limit: 1 << 40,
        path: None,
    };
    let client = Client::new(addr, args.timeout)
        .context("starting the HTTP client")?
        .with_security(security);
    let snap = collector::fetch_snapshot(&client, &q)
        .with_context(|| format!("reading the daemon at {}", args.connect.addr))?;
    let json = serde_json::to_string_pretty(&snap)? + "\n";
    if args.output.as_os_str() == "-" {
        std::io::stdout().lock().write_all(json.as_bytes())?;
    } else {
        write_atomically(&args.output, json.as_bytes())?;
        eprintln!(
            "famfs-trace: snapshot of {}: {} files, {} opcode series -> {}",
            args.connect.addr,
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
    Snapshot::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
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
            format: crate::http::api::SNAPSHOT_FORMAT.into(),
            ..Default::default()
        };
        write_atomically(&p, serde_json::to_string(&s).unwrap().as_bytes()).unwrap();
        assert_eq!(load_snapshot(&p).unwrap(), s);
    }
}
