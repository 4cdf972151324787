//! `famfs-daemon demo`: its arguments. The demo itself (image, child daemon, workload, cleanup) is
//! `daemon::demo`'s. Owns argument parsing only.

use std::{net::SocketAddr, process::ExitCode};

use anyhow::Result;
use clap::Args;

use crate::daemon::demo::{self, DemoConfig};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address for /metrics and the HTTP API.
    #[arg(long, default_value = super::DEFAULT_LISTEN, value_parser = super::parse_listen)]
    pub listen: SocketAddr,
    /// Run the workload once, print the summary and exit instead of serving until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// Do not load eBPF probes (the per-file metrics then come from the server alone).
    #[arg(long)]
    pub no_probes: bool,
}

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    demo::run(&DemoConfig {
        listen: args.listen,
        once: args.once,
        probes: !args.no_probes,
    })
}
