//! Command-line front ends. `famfs-daemon` (run the daemon, image tools) and `famfs-trace` (operator
//! tools: probe table, ...). Owns argument parsing and dispatch only: what the daemon runs and its
//! lifecycle (signals, readiness line) are `daemon`'s, the views `top`'s and `regress`'s.

pub mod connect;
pub mod demo;
pub mod image_cmd;
pub mod probes_cmd;
pub mod run;
pub mod selftest_cmd;
pub mod snapshot_cmd;
pub mod top_cmd;

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

/// Default metrics/API address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

#[derive(Debug, Parser)]
#[command(
    name = "famfs-daemon",
    version,
    about = "famfs FUSE server with eBPF observability"
)]
pub struct DaemonCli {
    #[command(subcommand)]
    pub cmd: DaemonCmd,
}

#[derive(Debug, Subcommand)]
pub enum DaemonCmd {
    /// Run in the foreground: probes, metrics and (with --image/--mountpoint) the famfs FUSE server.
    Run(run::RunArgs),
    /// The embedded default: daemon + demo filesystem + light workload, serving until Ctrl-C.
    Demo(demo::DemoArgs),
    /// famfs image tools: mkfs, mkdir, creat, cp, ls, getmap, fsck, logplay --dry-run, read.
    Image(image_cmd::ImageArgs),
}

#[derive(Debug, Parser)]
#[command(name = "famfs-trace", version, about = "famfs-trace operator tools")]
pub struct TraceCli {
    #[command(subcommand)]
    pub cmd: TraceCmd,
}

#[derive(Debug, Subcommand)]
pub enum TraceCmd {
    /// Load the probes on this kernel and print each as attached or unavailable with the reason.
    Probes(probes_cmd::ProbesArgs),
    /// Check the probes against real kernel activity (RESULT/CHECK lines; used by the VM lane).
    Selftest(selftest_cmd::SelftestArgs),
    /// Live terminal view of a running daemon: requests per opcode, DAX faults, per-file table.
    Top(top_cmd::TopArgs),
    /// Save the daemon's per-file, per-opcode, fault and probe state to a JSON file.
    Snapshot(snapshot_cmd::SnapshotArgs),
    /// Compare two snapshots; exit 1 if something regressed past the threshold.
    Diff(snapshot_cmd::DiffArgs),
}

/// Parse a `host:port` listen address with a message that names the flag.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .map_err(|e| format!("--listen {s:?}: expected IP:PORT (e.g. {DEFAULT_LISTEN}): {e}"))
}

/// Parse `PROGRAM=CATEGORY:EVENT`.
pub fn parse_override(s: &str) -> Result<(String, String), String> {
    let (p, t) = s
        .split_once('=')
        .ok_or_else(|| format!("--probe-target {s:?}: expected PROGRAM=CATEGORY:EVENT"))?;
    if p.is_empty() || t.is_empty() {
        return Err(format!(
            "--probe-target {s:?}: expected PROGRAM=CATEGORY:EVENT"
        ));
    }
    Ok((p.to_string(), t.to_string()))
}
