//! `famfs-trace selftest ...`: the arguments of the probes' self-test and the call into it. The checks,
//! their workloads and their RESULT/CHECK lines live in `probes::selftest`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};

use crate::probes::{
    KfuncMode, RequestPairing,
    selftest::{self, Verdict},
};

#[derive(Debug, Args)]
pub struct SelftestArgs {
    #[command(subcommand)]
    pub check: Check,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Auto,
    Fentry,
    Kprobe,
}

impl From<ModeArg> for KfuncMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Auto => KfuncMode::Auto,
            ModeArg::Fentry => KfuncMode::Fentry,
            ModeArg::Kprobe => KfuncMode::Kprobe,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PairingArg {
    Auto,
    Unique,
    Pointer,
}

impl From<PairingArg> for RequestPairing {
    fn from(p: PairingArg) -> Self {
        match p {
            PairingArg::Auto => RequestPairing::Auto,
            PairingArg::Unique => RequestPairing::Unique,
            PairingArg::Pointer => RequestPairing::Pointer,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Check {
    /// DAX fault probes: 1 MiB mappings fault in 4 KiB pages, 8 MiB 2 MiB-aligned ones in 2 MiB pages,
    /// each written page by page, then read-then-written page by page.
    Dax {
        /// A directory on a filesystem mounted with `-o dax`.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Optional kernel-function probes: `dax_iomap_fault` against the DAX fault tracepoints and, with
    /// `--fuse-dir`, `fuse_open` against the opens made on a FUSE mount.
    Kfuncs {
        /// A directory on a filesystem mounted with `-o dax`.
        #[arg(long)]
        dir: PathBuf,
        /// A FUSE mount whose regular files are opened once each.
        #[arg(long)]
        fuse_dir: Option<PathBuf>,
        /// Attach with fentry/fexit only, kprobe/kretprobe only, or either.
        #[arg(long, value_enum, default_value = "auto")]
        mode: ModeArg,
    },
    /// FUSE request probes on a FUSE mount: exact OPEN counts, completions, errors and events.
    Fuse {
        /// A FUSE mount whose regular files are opened and read once each.
        #[arg(long)]
        fuse_dir: PathBuf,
        /// Pair sends and ends by request address, by unique, or whichever the kernel allows.
        #[arg(long, value_enum, default_value = "auto")]
        pairing: PairingArg,
    },
}

/// Run one check with its lines on stdout; exit 1 when it failed.
pub fn run(args: SelftestArgs) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let verdict = match args.check {
        Check::Dax { dir } => selftest::check_dax(&dir, &mut out)?,
        Check::Kfuncs {
            dir,
            fuse_dir,
            mode,
        } => selftest::check_kfuncs(&dir, fuse_dir.as_deref(), mode.into(), &mut out)?,
        Check::Fuse { fuse_dir, pairing } => {
            selftest::check_fuse(&fuse_dir, pairing.into(), &mut out)?
        }
    };
    Ok(match verdict {
        Verdict::Pass => ExitCode::SUCCESS,
        Verdict::Fail => ExitCode::FAILURE,
    })
}
