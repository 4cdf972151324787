//! `famfs-trace`: operator tools for famfs-trace.

use std::process::ExitCode;

use clap::Parser;
use famfs_daemon::cli::{TraceCli, TraceCmd, probes_cmd, selftest_cmd, snapshot_cmd, top_cmd};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = TraceCli::parse();
    let res = match cli.cmd {
        TraceCmd::Probes(args) => probes_cmd::run(args),
        TraceCmd::Selftest(args) => selftest_cmd::run(args),
        TraceCmd::Top(args) => top_cmd::top(args),
        TraceCmd::Snapshot(args) => snapshot_cmd::snapshot(args),
        TraceCmd::Diff(args) => snapshot_cmd::diff(args),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("famfs-trace: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
