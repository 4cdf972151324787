//! `cargo xtask vm-test`: the VM lane. Proves in a qemu guest what the host kernel cannot show: DAX faults
//! on real pmem, fentry and kprobe programs, and a stock 6.12 kernel's FUSE tracepoints (with its
//! unique-0 send quirk) against a real FUSE mount.
//!
//! Host side, one module per stage: [`packages`] picks the newest `linux-image-6.12.*+deb12-amd64`
//! package, fetches it, `busybox-static` and `kmod` with `apt-get download` into `<target dir>/vm-cache`,
//! unpacks them with `dpkg -x` (nothing is installed on the host) and runs the package's own `depmod`
//! from the unpacked kmod; [`initramfs`] writes an initramfs ([`cpio`]: newc, built here) with busybox,
//! the pmem/ext4 modules, `mke2fs`, `squashfuse` and a squashfs image, and this workspace's
//! `famfs-trace` / `famfs-daemon` with the shared libraries `ldd` lists; [`qemu`] boots it under
//! `timeout` with `qemu -accel tcg -cpu max -smp 2`, `memmap=512M!1G` (pmem), `-no-reboot` and
//! `panic=-1`; [`console`] reads the `RESULT`/`CHECK`/`METRIC`/`FMETRIC` lines of the serial console
//! and [`eval`] / [`eval_famfs`] assert exact counts.
//!
//! Guest side: the shell `/init` (`init.sh`, rendered by [`initramfs`]), and [`guest`] (`xtask
//! vm-guest famfs`, this binary copied into the initramfs), which serves a famfs image with
//! `famfs-daemon run` in the guest, runs a workload of known counts on the mount, and prints the
//! daemon's per-file and join metrics for the host to assert. [`famfs_files`] is the one definition of
//! that workload, shared by the guest and the host's expected values.
//!
//! Owns only the lane; must not touch the host's packages, mounts or modules. Metric names come from
//! `famfs_common::metric_names`, never spelled here.

use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{Context, Result, bail};

use crate::{root, target_dir};

mod console;
mod cpio;
mod eval;
mod eval_famfs;
mod famfs_files;
mod guest;
mod initramfs;
mod packages;
mod qemu;

pub use guest::guest;

/// Files in the guest's squashfs image: each is opened exactly once per FUSE check.
const FUSE_FILES: u64 = 5;

/// Outcome of the lane, counted into `cargo xtask test`'s closing tally.
#[derive(Debug, Default)]
pub struct Outcome {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
}

/// Run `cmd` to completion; its stdout, or an error with both outputs when it fails.
fn output(what: &str, cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("{what}: cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn on_path(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(prog))
            .find(|p| p.is_file())
    })
}

/// Run the lane. `Err` = the lane could not run (no kernel package, boot failure): a loud failure.
pub fn run() -> Result<Outcome> {
    let started = Instant::now();
    let Some(qemu) = on_path("qemu-system-x86_64") else {
        println!(
            "SKIP: vm-test: qemu-system-x86_64 is not installed (`cargo xtask setup` installs qemu-system-x86)"
        );
        return Ok(Outcome {
            skipped: 1,
            ..Default::default()
        });
    };
    let target = target_dir()?;
    let cache = target.join("vm-cache");
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;

    eprintln!("== vm-test: building famfs-trace and famfs-daemon");
    let st = Command::new("cargo")
        .args(["build", "--quiet", "-p", "famfs-daemon", "--bins"])
        .current_dir(root())
        .status()
        .context("cargo build")?;
    if !st.success() {
        bail!("cargo build -p famfs-daemon --bins failed");
    }
    let bins = target.join("debug");

    let kernel = packages::fetch(&cache)?;
    let initrd = cache.join("initramfs.cpio");
    initramfs::build(&initramfs::Input {
        initrd: &initrd,
        work: &cache.join("work"),
        kroot: &kernel.root,
        kver: &kernel.version,
        busybox: &kernel.busybox,
        famfs_trace: &bins.join("famfs-trace"),
        famfs_daemon: &bins.join("famfs-daemon"),
        xtask: &std::env::current_exe().context("locating the xtask binary")?,
    })?;
    let prep = started.elapsed();

    eprintln!(
        "== vm-test: booting {} under qemu (TCG), prepared in {:.1}s",
        kernel.version,
        prep.as_secs_f64()
    );
    let log = cache.join("console.log");
    let console = qemu::boot(&qemu, &kernel.vmlinuz(), &initrd, &log)?;
    let out = eval::evaluate(&console, &kernel.version);
    println!(
        "vm-test result: {}. {} passed; {} failed; finished in {:.1}s (prepare {:.1}s, guest {:.1}s)",
        if out.failed == 0 { "ok" } else { "FAILED" },
        out.passed,
        out.failed,
        started.elapsed().as_secs_f64(),
        prep.as_secs_f64(),
        (started.elapsed() - prep).as_secs_f64()
    );
    if out.failed > 0 {
        println!("vm-test: full console log in {}", log.display());
    }
    Ok(out)
}
