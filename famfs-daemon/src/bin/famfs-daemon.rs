//! `famfs-daemon`: the famfs FUSE server with eBPF observability.

use std::process::ExitCode;

use clap::Parser;
use famfs_daemon::cli::{DaemonCli, DaemonCmd, demo, image_cmd, run};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = DaemonCli::parse();
    let res = match cli.cmd {
        DaemonCmd::Run(args) => run::run(args),
        DaemonCmd::Demo(args) => demo::run(args),
        DaemonCmd::Image(args) => image_cmd::run(args),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("famfs-daemon: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
