//! `famfs-trace selftest ...`: self-checks of the probes against real kernel activity, printed as
//! `RESULT <check> key=value ...` and `CHECK <check> PASS|FAIL: why` lines. The VM lane (`cargo xtask
//! vm-test`) runs them in a guest whose kernel has what this host lacks (DAX, kprobes, fentry); they
//! also run anywhere the kernel offers the same.

use std::{
    fs::File,
    io::Write,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use famfs_common::fault::{RESULT_ERROR, RESULT_FALLBACK, RESULT_OK, SIZE_PMD, SIZE_PTE};

use crate::probes::{ProbeConfig, ProbeSnapshot, Probes};

#[derive(Debug, Args)]
pub struct SelftestArgs {
    #[command(subcommand)]
    pub check: Check,
}

#[derive(Debug, Subcommand)]
pub enum Check {
    /// DAX fault probes: a 1 MiB mapping faults in 4 KiB pages, an 8 MiB 2 MiB-aligned one in 2 MiB pages.
    Dax {
        /// A directory on a filesystem mounted with `-o dax`.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Optional kernel-function probes (fentry, else kprobe) on dax_iomap_fault, checked against the
    /// DAX fault tracepoints.
    Kfuncs {
        /// A directory on a filesystem mounted with `-o dax`.
        #[arg(long)]
        dir: PathBuf,
    },
}

const PAGE: usize = 4096;
const HUGE: usize = 2 << 20;

/// Kernel dev_t encoding (`major << 20 | minor`) of a user-space st_dev.
pub fn kernel_dev(st_dev: u64) -> u32 {
    let major = libc::major(st_dev);
    let minor = libc::minor(st_dev);
    (major << 20) | minor
}

/// A file filled with `len` bytes through write(2), so its blocks are allocated.
fn make_file(path: &Path, len: usize) -> Result<File> {
    let mut f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let chunk = vec![0x5au8; HUGE.min(len)];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n])?;
        left -= n;
    }
    f.sync_all()?;
    Ok(f)
}

/// Map `len` bytes of `f` shared and writable at a 2 MiB-aligned address, write one byte per page, unmap.
fn touch_pages(f: &File, len: usize) -> Result<()> {
    // Reserve room to find an aligned address, then map the file there with MAP_FIXED.
    // SAFETY: anonymous reservation; no existing memory is affected.
    let resv = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len + HUGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if resv == libc::MAP_FAILED {
        bail!("mmap reservation: {}", std::io::Error::last_os_error());
    }
    let aligned = (resv as usize).next_multiple_of(HUGE);
    // SAFETY: `aligned..aligned+len` lies inside our own reservation, which MAP_FIXED replaces.
    let p = unsafe {
        libc::mmap(
            aligned as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED,
            f.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let e = std::io::Error::last_os_error();
        // SAFETY: unmapping our own reservation.
        unsafe { libc::munmap(resv, len + HUGE) };
        bail!("mmap of the file: {e}");
    }
    let base = p.cast::<u8>();
    for off in (0..len).step_by(PAGE) {
        // SAFETY: `off < len`, inside the shared writable mapping created above.
        unsafe { base.add(off).write_volatile(0xa5) };
    }
    // SAFETY: unmapping exactly the reservation (which now contains the file mapping).
    unsafe { libc::munmap(resv, len + HUGE) };
    Ok(())
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct FaultCounts {
    pte_ok: u64,
    pte_fallback: u64,
    pte_error: u64,
    pmd_ok: u64,
    pmd_fallback: u64,
    pmd_error: u64,
}

fn counts(snap: &ProbeSnapshot, dev: u32, ino: u64) -> FaultCounts {
    let mut c = FaultCounts::default();
    for r in snap
        .faults
        .iter()
        .filter(|r| r.key.dev == dev && r.key.ino == ino)
    {
        let slot = match (r.key.size, r.key.result) {
            (SIZE_PTE, RESULT_OK) => &mut c.pte_ok,
            (SIZE_PTE, RESULT_FALLBACK) => &mut c.pte_fallback,
            (SIZE_PTE, RESULT_ERROR) => &mut c.pte_error,
            (SIZE_PMD, RESULT_OK) => &mut c.pmd_ok,
            (SIZE_PMD, RESULT_FALLBACK) => &mut c.pmd_fallback,
            _ => &mut c.pmd_error,
        };
        *slot += r.stats.count;
    }
    c
}

fn print_counts(check: &str, file: &str, c: &FaultCounts) {
    println!(
        "RESULT {check} file={file} pte_ok={} pte_fallback={} pte_error={} pmd_ok={} pmd_fallback={} pmd_error={}",
        c.pte_ok, c.pte_fallback, c.pte_error, c.pmd_ok, c.pmd_fallback, c.pmd_error
    );
}

fn verdict(check: &str, problems: &[String]) -> ExitCode {
    if problems.is_empty() {
        println!("CHECK {check} PASS");
        ExitCode::SUCCESS
    } else {
        println!("CHECK {check} FAIL: {}", problems.join("; "));
        ExitCode::FAILURE
    }
}

fn dax(dir: &Path) -> Result<ExitCode> {
    let probes = Probes::load(&ProbeConfig {
        kfuncs: false,
        ..Default::default()
    });
    let mut problems = Vec::new();
    for p in [
        "dax_pte_fault",
        "dax_pte_fault_done",
        "dax_pmd_fault",
        "dax_pmd_fault_done",
    ] {
        if !probes.attached(p) {
            problems.push(format!("probe {p} not attached"));
        }
    }
    let small = dir.join("famfs-selftest-1m.bin");
    let big = dir.join("famfs-selftest-8m.bin");
    let fs = make_file(&small, 1 << 20)?;
    let fb = make_file(&big, 8 << 20)?;
    touch_pages(&fs, 1 << 20)?;
    touch_pages(&fb, 8 << 20)?;
    let snap = probes.snapshot();
    let ms = fs.metadata()?;
    let mb = fb.metadata()?;
    let cs = counts(&snap, kernel_dev(ms.dev()), ms.ino());
    let cb = counts(&snap, kernel_dev(mb.dev()), mb.ino());
    print_counts("dax", "1m", &cs);
    print_counts("dax", "8m", &cb);
    let want_small = FaultCounts {
        pte_ok: 256,
        ..Default::default()
    };
    if cs != want_small {
        problems.push(format!(
            "1 MiB mapping: expected 256 PTE faults and nothing else, got {cs:?}"
        ));
    }
    let want_big = FaultCounts {
        pmd_ok: 4,
        ..Default::default()
    };
    if cb != want_big {
        problems.push(format!(
            "8 MiB aligned mapping: expected 4 PMD faults and nothing else, got {cb:?}"
        ));
    }
    let _ = std::fs::remove_file(&small);
    let _ = std::fs::remove_file(&big);
    Ok(verdict("dax", &problems))
}

fn kfuncs(dir: &Path) -> Result<ExitCode> {
    let probes = Probes::load(&ProbeConfig::default());
    let mut problems = Vec::new();
    for s in probes.status() {
        if matches!(
            s.kind,
            crate::probes::ProbeKind::Fentry | crate::probes::ProbeKind::Kprobe
        ) {
            println!(
                "RESULT kfuncs attached function={} kind={:?}",
                s.program, s.kind
            );
        }
    }
    if !probes.attached("dax_iomap_fault") {
        problems.push("dax_iomap_fault not attached by fentry nor kprobe".into());
    }
    let path = dir.join("famfs-selftest-kfunc.bin");
    let f = make_file(&path, 1 << 20)?;
    touch_pages(&f, 1 << 20)?;
    let snap = probes.snapshot();
    let m = f.metadata()?;
    let c = counts(&snap, kernel_dev(m.dev()), m.ino());
    let faults = c.pte_ok + c.pte_fallback + c.pte_error + c.pmd_ok + c.pmd_fallback + c.pmd_error;
    let calls = snap
        .functions
        .iter()
        .find(|f| f.function == "dax_iomap_fault")
        .map(|f| (f.stats.calls, f.stats.returns))
        .unwrap_or((0, 0));
    println!(
        "RESULT kfuncs dax_iomap_fault calls={} returns={} tracepoint_faults={faults}",
        calls.0, calls.1
    );
    if faults != 256 {
        problems.push(format!(
            "expected 256 DAX faults from the tracepoints, got {faults}"
        ));
    }
    if calls != (faults, faults) {
        problems.push(format!(
            "dax_iomap_fault calls/returns {calls:?} != tracepoint faults {faults}"
        ));
    }
    let _ = std::fs::remove_file(&path);
    Ok(verdict("kfuncs", &problems))
}

pub fn run(args: SelftestArgs) -> Result<ExitCode> {
    match args.check {
        Check::Dax { dir } => dax(&dir),
        Check::Kfuncs { dir } => kfuncs(&dir),
    }
}
