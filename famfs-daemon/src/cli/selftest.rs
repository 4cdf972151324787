//! `famfs-trace selftest ...`: self-checks of the probes against real kernel activity, printed as
//! `RESULT <check> <workload> key=value ...` and `CHECK <check> PASS|FAIL: why` lines. The VM lane (`cargo
//! xtask vm-test`) runs them in a guest whose kernel has what this host lacks (DAX, kprobes, fentry) and
//! asserts the exact counts on the host; each check also asserts the kernel-independent relations itself
//! (one fault per page, PMD fallbacks = the kernel's own `thp_fault_fallback` count, function calls =
//! tracepoint faults, one `fuse_open` per open(2)). They run anywhere the kernel offers the same.
//!
//! Owns only workloads and verdicts; loading and reading probes is `probes`' job.

use std::{
    fs::File,
    io::{Read, Write},
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use famfs_common::{
    counters, event,
    fault::{RESULT_ERROR, RESULT_FALLBACK, RESULT_OK, SIZE_PMD, SIZE_PTE},
    hist::LAT_SLOTS,
};

use crate::probes::{
    KfuncMode, ProbeConfig, ProbeKind, ProbeSnapshot, ProbeState, Probes, RequestPairing,
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

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PairingArg {
    Auto,
    Unique,
    Pointer,
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

const PAGE: usize = 4096;
const HUGE: usize = 2 << 20;

/// Kernel dev_t encoding (`major << 20 | minor`) of a user-space st_dev.
pub fn kernel_dev(st_dev: u64) -> u32 {
    famfs_common::dev::kernel_dev_of_st_dev(st_dev)
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
        f.write_all(&chunk[..n])
            .with_context(|| format!("writing {}", path.display()))?;
        left -= n;
    }
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(f)
}

/// How a workload touches each page of its mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Touch {
    /// One write per page: one write fault per page (or per huge page).
    Write,
    /// A read, then a write, per page: a read fault maps the page read-only, the write faults again to
    /// make it writable (DAX `pfn_mkwrite`), so twice the faults of `Write`.
    ReadWrite,
}

/// Map `len` bytes of `f` shared and writable at a 2 MiB-aligned address, touch every page, unmap.
/// Returns the sum of the bytes read (so the reads cannot be optimised away).
///
/// The mapping sits inside a private reservation with a free 2 MiB margin after it, so every 2 MiB
/// region it touches has no page table yet: the first fault in each region is a PMD-level fault (for a
/// 1 MiB mapping one that falls back, the VMA being too small), whatever else the process has mapped.
/// A page table left by a neighbour would silently turn that first fault into a PTE fault.
fn touch_pages(f: &File, len: usize, touch: Touch) -> Result<u64> {
    let span = len.next_multiple_of(HUGE) + 2 * HUGE;
    // SAFETY: anonymous reservation; no existing memory is affected.
    let resv = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            span,
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
        unsafe { libc::munmap(resv, span) };
        bail!("mmap of the file: {e}");
    }
    let base = p.cast::<u8>();
    let mut sum = 0u64;
    for off in (0..len).step_by(PAGE) {
        // SAFETY: `off < len`, inside the shared writable mapping created above.
        unsafe {
            if touch == Touch::ReadWrite {
                sum += base.add(off).read_volatile() as u64;
            }
            base.add(off).write_volatile(0xa5);
        }
    }
    // SAFETY: unmapping exactly the reservation (which now contains the file mapping).
    unsafe { libc::munmap(resv, span) };
    Ok(sum)
}

/// The kernel's own count of huge-page faults that fell back (`thp_fault_fallback` in /proc/vmstat).
fn thp_fault_fallback() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/vmstat").context("reading /proc/vmstat")?;
    text.lines()
        .find_map(|l| l.strip_prefix("thp_fault_fallback "))
        .and_then(|v| v.trim().parse().ok())
        .context("/proc/vmstat has no thp_fault_fallback line")
}

/// DAX fault counts of one file by (size, result, read/write), plus latency-histogram totals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct FaultCounts {
    /// `[size][result][write]`: size 0 = PTE, 1 = PMD; result 0 ok, 1 fallback, 2 error.
    n: [[[u64; 2]; 3]; 2],
    /// Sum of the latency-histogram slots (must equal the number of faults).
    lat_count: u64,
    lat_sum_ns: u64,
}

impl FaultCounts {
    fn total(&self) -> u64 {
        self.n.iter().flatten().flatten().sum()
    }
    fn get(&self, size: u8, result: u8, write: bool) -> u64 {
        self.n[size as usize][result as usize][write as usize]
    }
}

fn counts(snap: &ProbeSnapshot, dev: u32, ino: u64) -> FaultCounts {
    let mut c = FaultCounts::default();
    for r in snap
        .faults
        .iter()
        .filter(|r| r.key.dev == dev && r.key.ino == ino)
    {
        let size = (r.key.size as usize).min(1);
        let result = (r.key.result as usize).min(2);
        let write = (r.key.write != 0) as usize;
        c.n[size][result][write] += r.stats.count;
        c.lat_count += r.stats.lat_slots[..LAT_SLOTS].iter().sum::<u64>();
        c.lat_sum_ns += r.stats.lat_sum_ns;
    }
    c
}

fn fault_fields(c: &FaultCounts) -> String {
    let mut s = String::new();
    for (size, sn) in [(SIZE_PTE, "pte"), (SIZE_PMD, "pmd")] {
        for (res, rn) in [
            (RESULT_OK, "ok"),
            (RESULT_FALLBACK, "fallback"),
            (RESULT_ERROR, "error"),
        ] {
            for (w, wn) in [(false, "r"), (true, "w")] {
                s.push_str(&format!("{sn}_{rn}_{wn}={} ", c.get(size, res, w)));
            }
        }
    }
    s.push_str(&format!("lat_count={}", c.lat_count));
    s
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

/// Health counters and per-program run counts, one RESULT line each, for diagnosis.
fn print_health(check: &str, snap: &ProbeSnapshot) {
    let mut line = format!("RESULT {check} health");
    for (i, name) in counters::NAMES.iter().enumerate() {
        line.push_str(&format!(" {name}={}", snap.counters[i]));
    }
    println!("{line}");
    let mut line = format!("RESULT {check} runs");
    for p in &snap.programs {
        line.push_str(&format!(" {}={}", p.program, p.run_count));
    }
    println!("{line}");
    let mut line = format!("RESULT {check} misses");
    for p in &snap.programs {
        line.push_str(&format!(" {}={}", p.program, p.recursion_misses));
    }
    println!("{line}");
}

/// One DAX workload: a fresh file of `mib` MiB, mapped 2 MiB-aligned and touched page by page.
struct DaxWorkload {
    name: &'static str,
    mib: usize,
    touch: Touch,
}

const DAX_WORKLOADS: [DaxWorkload; 4] = [
    DaxWorkload {
        name: "pte-write",
        mib: 1,
        touch: Touch::Write,
    },
    DaxWorkload {
        name: "pte-readwrite",
        mib: 1,
        touch: Touch::ReadWrite,
    },
    DaxWorkload {
        name: "pmd-write",
        mib: 8,
        touch: Touch::Write,
    },
    DaxWorkload {
        name: "pmd-readwrite",
        mib: 8,
        touch: Touch::ReadWrite,
    },
];

/// Runs one DAX workload; returns the fault counts of its file, the thp_fault_fallback delta, and the
/// file's path. The caller removes the file after every workload ran: inode numbers are reused, and the
/// counts are per (device, inode).
fn run_dax_workload(
    probes: &Probes,
    dir: &Path,
    w: &DaxWorkload,
) -> Result<(FaultCounts, u64, PathBuf)> {
    let path = dir.join(format!("famfs-selftest-{}.bin", w.name));
    let len = w.mib << 20;
    let f = make_file(&path, len)?;
    let before = thp_fault_fallback()?;
    touch_pages(&f, len, w.touch)?;
    let after = thp_fault_fallback()?;
    let m = f
        .metadata()
        .with_context(|| format!("stat {}", path.display()))?;
    let c = counts(&probes.snapshot(), kernel_dev(m.dev()), m.ino());
    Ok((c, after - before, path))
}

/// What a workload must produce whatever the kernel: one fault per page (PTE) or per huge page (PMD),
/// doubled by read-then-write; PMD fallbacks exactly as many as the kernel counted itself; latency
/// recorded for every fault.
fn dax_expectations(w: &DaxWorkload, c: &FaultCounts, vm_fallback: u64) -> Vec<String> {
    let mut p = Vec::new();
    let (size, units) = if w.mib >= 2 {
        (SIZE_PMD, ((w.mib << 20) / HUGE) as u64)
    } else {
        (SIZE_PTE, ((w.mib << 20) / PAGE) as u64)
    };
    let want_w = units;
    let want_r = if w.touch == Touch::ReadWrite {
        units
    } else {
        0
    };
    let got_w = c.get(size, RESULT_OK, true);
    let got_r = c.get(size, RESULT_OK, false);
    if (got_r, got_w) != (want_r, want_w) {
        p.push(format!(
            "{}: expected {want_r} read + {want_w} write successful faults of its size, got {got_r} + {got_w}",
            w.name
        ));
    }
    let fallbacks =
        c.get(SIZE_PMD, RESULT_FALLBACK, false) + c.get(SIZE_PMD, RESULT_FALLBACK, true);
    if fallbacks != vm_fallback {
        p.push(format!(
            "{}: {fallbacks} PMD fallbacks seen by the probes, the kernel counted {vm_fallback}",
            w.name
        ));
    }
    let other = c.total() - got_r - got_w - fallbacks;
    if other != 0 {
        p.push(format!("{}: {other} unexpected faults: {c:?}", w.name));
    }
    if c.lat_count != c.total() || (c.total() > 0 && c.lat_sum_ns == 0) {
        p.push(format!(
            "{}: latency histogram holds {} of {} faults (sum {} ns)",
            w.name,
            c.lat_count,
            c.total(),
            c.lat_sum_ns
        ));
    }
    p
}

fn dax(dir: &Path) -> Result<ExitCode> {
    let dev = kernel_dev(
        std::fs::metadata(dir)
            .with_context(|| format!("stat {}", dir.display()))?
            .dev(),
    );
    // Trace only this filesystem's device: the filter is part of what is checked.
    let probes = Probes::load(&ProbeConfig {
        connections: Some(vec![dev]),
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
    let mut made = Vec::new();
    for w in &DAX_WORKLOADS {
        let (c, vm_fallback, path) = run_dax_workload(&probes, dir, w)?;
        made.push(path);
        println!(
            "RESULT dax {} {} vmstat_thp_fault_fallback={vm_fallback}",
            w.name,
            fault_fields(&c)
        );
        problems.extend(dax_expectations(w, &c, vm_fallback));
    }
    for p in made {
        std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
    }
    let snap = probes.snapshot();
    print_health("dax", &snap);
    for (name, idx) in [
        ("unmatched_fault", counters::UNMATCHED_FAULT),
        ("fault_start_full", counters::FAULT_START_FULL),
    ] {
        if snap.counters[idx as usize] != 0 {
            problems.push(format!("{name} = {}", snap.counters[idx as usize]));
        }
    }
    Ok(verdict("dax", &problems))
}

/// The regular files directly under `dir`, sorted.
fn regular_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        if e.file_type()?.is_file() {
            v.push(e.path());
        }
    }
    v.sort();
    if v.is_empty() {
        bail!("{} holds no regular file to open", dir.display());
    }
    Ok(v)
}

/// Open and read every file once. Returns the bytes read.
fn open_and_read(files: &[PathBuf]) -> Result<usize> {
    let mut total = 0;
    let mut buf = Vec::new();
    for p in files {
        buf.clear();
        total += File::open(p)
            .with_context(|| format!("opening {}", p.display()))?
            .read_to_end(&mut buf)
            .with_context(|| format!("reading {}", p.display()))?;
    }
    Ok(total)
}

fn kfuncs(dir: &Path, fuse_dir: Option<&Path>, mode: ModeArg) -> Result<ExitCode> {
    let (kmode, want_kind) = match mode {
        ModeArg::Auto => (KfuncMode::Auto, None),
        ModeArg::Fentry => (KfuncMode::Fentry, Some(ProbeKind::Fentry)),
        ModeArg::Kprobe => (KfuncMode::Kprobe, Some(ProbeKind::Kprobe)),
    };
    let check = format!("kfuncs-{}", format!("{mode:?}").to_lowercase());
    let probes = Probes::load(&ProbeConfig {
        kfunc_mode: kmode,
        ..Default::default()
    });
    let mut problems = Vec::new();
    for s in probes.status() {
        if matches!(
            s.kind,
            ProbeKind::Fentry | ProbeKind::Kprobe | ProbeKind::Function
        ) {
            let state = match &s.state {
                ProbeState::Attached => "attached".to_string(),
                ProbeState::Unavailable(r) => format!("unavailable: {r}"),
            };
            println!(
                "RESULT {check} probe function={} kind={:?} state={state}",
                s.program, s.kind
            );
        }
    }
    let mut wanted = vec!["dax_iomap_fault"];
    if fuse_dir.is_some() {
        wanted.push("fuse_open");
    }
    for f in &wanted {
        match probes.status().iter().find(|s| s.program == *f) {
            Some(s) if s.state == ProbeState::Attached => {
                if let Some(k) = want_kind
                    && s.kind != k
                {
                    problems.push(format!("{f} attached as {:?}, wanted {k:?}", s.kind));
                }
            }
            Some(s) => problems.push(format!("{f} not attached: {:?}", s.state)),
            None => problems.push(format!("{f} has no probe row")),
        }
    }

    let w = &DAX_WORKLOADS[0];
    let (c, _, path) = run_dax_workload(&probes, dir, w)?;
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    let faults = c.total();
    let opens = match fuse_dir {
        Some(d) => {
            let files = regular_files(d)?;
            open_and_read(&files)?;
            Some(files.len() as u64)
        }
        None => None,
    };
    let snap = probes.snapshot();
    let calls = |f: &str| {
        snap.functions
            .iter()
            .find(|r| r.function == f)
            .map(|r| {
                (
                    r.stats.calls,
                    r.stats.returns,
                    r.stats.lat_slots.iter().sum::<u64>(),
                )
            })
            .unwrap_or((0, 0, 0))
    };
    let (dc, dr, dl) = calls("dax_iomap_fault");
    println!(
        "RESULT {check} dax_iomap_fault calls={dc} returns={dr} lat_count={dl} tracepoint_faults={faults}"
    );
    if faults == 0 {
        problems.push("the DAX workload produced no tracepoint faults".into());
    }
    // Every fs_dax fault event (PTE or PMD, fallbacks included) is one dax_iomap_fault call.
    if (dc, dr, dl) != (faults, faults, faults) {
        problems.push(format!(
            "dax_iomap_fault calls/returns/latencies ({dc}, {dr}, {dl}) != tracepoint faults {faults}"
        ));
    }
    if let Some(opens) = opens {
        let (oc, or, ol) = calls("fuse_open");
        println!("RESULT {check} fuse_open calls={oc} returns={or} lat_count={ol} opens={opens}");
        if (oc, or, ol) != (opens, opens, opens) {
            problems.push(format!(
                "fuse_open calls/returns/latencies ({oc}, {or}, {ol}) != opens {opens}"
            ));
        }
    }
    print_health(&check, &snap);
    if snap.counters[counters::UNMATCHED_RETURN as usize] != 0 {
        problems.push(format!(
            "unmatched_return = {}",
            snap.counters[counters::UNMATCHED_RETURN as usize]
        ));
    }
    Ok(verdict(&check, &problems))
}

/// FUSE connection of the mount at `dir` (the minor of its st_dev, from /proc/self/mountinfo: a stat of
/// the mount point itself would be a FUSE request).
fn fuse_connection(dir: &Path) -> Result<u32> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let mp = dir.to_str().context("mount point is not UTF-8")?;
    info.lines()
        .rfind(|l| l.split_whitespace().nth(4) == Some(mp))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|dev| dev.split(':').nth(1))
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("{mp} is not a mount point in /proc/self/mountinfo"))
}

use famfs_common::opcode::{LOOKUP as FUSE_LOOKUP, OPEN as FUSE_OPEN};

fn fuse(fuse_dir: &Path, pairing: PairingArg) -> Result<ExitCode> {
    let conn = fuse_connection(fuse_dir)?;
    let files = regular_files(fuse_dir)?;
    let n = files.len() as u64;
    let req = match pairing {
        PairingArg::Auto => RequestPairing::Auto,
        PairingArg::Unique => RequestPairing::Unique,
        PairingArg::Pointer => RequestPairing::Pointer,
    };
    let check = format!("fuse-{}", format!("{pairing:?}").to_lowercase());
    let mut probes = Probes::load(&ProbeConfig {
        connections: Some(vec![conn]),
        kfuncs: false,
        request_pairing: req,
        ..Default::default()
    });
    let mut problems = Vec::new();
    for p in ["fuse_request_send", "fuse_request_end"] {
        if !probes.attached(p) {
            problems.push(format!("probe {p} not attached: {:?}", probes.status()));
        }
    }
    let used = probes.request_pairing();
    let mut reader = probes.take_events().context("ring buffer")?;

    let bytes = open_and_read(&files)?;
    let missing = fuse_dir.join(format!("famfs-selftest-missing-{}", std::process::id()));
    if std::fs::symlink_metadata(&missing).is_ok() {
        bail!("{} exists", missing.display());
    }

    let mut opens = Vec::new();
    let mut unmatched = 0u64;
    // The ring buffer is filled synchronously by the end probes, which ran before our syscalls
    // returned: one drain is complete.
    reader.poll(0, |ev| {
        if ev.conn == conn && ev.kind == event::KIND_REQ_END && ev.op == FUSE_OPEN {
            opens.push(*ev);
        } else if ev.conn == conn && ev.kind == event::KIND_REQ_END_UNMATCHED {
            unmatched += 1;
        }
    });
    let snap = probes.snapshot();
    let row = |op: u32| {
        snap.requests
            .iter()
            .find(|r| r.key.connection == conn && r.key.opcode == op)
            .map(|r| r.stats)
    };
    let open = row(FUSE_OPEN).unwrap_or(famfs_common::fuse_request::ReqStats::ZERO);
    let lookup = row(FUSE_LOOKUP).unwrap_or(famfs_common::fuse_request::ReqStats::ZERO);
    let sends: u64 = snap
        .requests
        .iter()
        .filter(|r| r.key.connection == conn)
        .map(|r| r.stats.sent)
        .sum();
    let unique0 = snap.counters[counters::SEND_UNIQUE_ZERO as usize];
    let mut uniques: Vec<u64> = opens.iter().map(|e| e.id).collect();
    uniques.sort_unstable();
    uniques.dedup();
    let own_pid = opens.iter().filter(|e| e.pid == std::process::id()).count();
    let pairing_name = format!("{used:?}").to_lowercase();
    println!(
        "RESULT {check} requests pairing={pairing_name} files={n} bytes={bytes} open_sent={} open_completed={} open_errors={} open_reply_bytes={} open_lat_count={} lookup_errors={} sends={sends} send_unique_zero={unique0} open_events={} open_event_uniques={} open_events_own_pid={own_pid} unmatched_end_events={unmatched}",
        open.sent,
        open.completed,
        open.errors,
        open.reply_bytes_sum,
        open.lat_slots.iter().sum::<u64>(),
        lookup.errors,
        opens.len(),
        uniques.iter().filter(|u| **u != 0).count(),
    );
    print_health(&check, &snap);

    if open.sent != n {
        problems.push(format!("OPEN sent {} != {n} opens", open.sent));
    }
    let quirk = unique0 > 0;
    if quirk && unique0 != sends {
        problems.push(format!(
            "{unique0} of {sends} sends carried unique 0: the quirk is all or nothing per kernel"
        ));
    }
    if used == RequestPairing::Unique && quirk {
        // Detected: no send can be paired by unique; every end is reported unmatched instead.
        if open.completed != 0 || !opens.is_empty() {
            problems.push("unique pairing paired requests whose send had unique 0".into());
        }
        if unmatched < n {
            problems.push(format!(
                "{unmatched} unmatched-end events for {n} unpairable OPENs"
            ));
        }
    } else {
        // Paired: every OPEN completes, once, with its latency, its 32-byte reply and an event
        // carrying its real unique.
        if (open.completed, open.errors, open.reply_bytes_sum) != (n, 0, 32 * n) {
            problems.push(format!(
                "OPEN completed/errors/reply bytes ({}, {}, {}) != ({n}, 0, {})",
                open.completed,
                open.errors,
                open.reply_bytes_sum,
                32 * n
            ));
        }
        if open.lat_slots.iter().sum::<u64>() != n {
            problems.push("OPEN latency histogram does not hold every completion".into());
        }
        if lookup.errors != 1 {
            problems.push(format!(
                "LOOKUP errors {} != 1 (the lookup of a missing name)",
                lookup.errors
            ));
        }
        if (opens.len() as u64, uniques.len() as u64, own_pid as u64) != (n, n, n)
            || uniques.contains(&0)
        {
            problems.push(format!(
                "OPEN events: {} events, {} distinct non-zero uniques, {own_pid} from this process; want {n} each",
                opens.len(),
                uniques.iter().filter(|u| **u != 0).count()
            ));
        }
    }
    if snap.counters[counters::RINGBUF_DROPS as usize] != 0 {
        problems.push("ring buffer drops".into());
    }
    Ok(verdict(&check, &problems))
}

pub fn run(args: SelftestArgs) -> Result<ExitCode> {
    match args.check {
        Check::Dax { dir } => dax(&dir),
        Check::Kfuncs {
            dir,
            fuse_dir,
            mode,
        } => kfuncs(&dir, fuse_dir.as_deref(), mode),
        Check::Fuse { fuse_dir, pairing } => fuse(&fuse_dir, pairing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts_with(entries: &[(u8, u8, bool, u64)]) -> FaultCounts {
        let mut c = FaultCounts::default();
        for (s, r, w, n) in entries {
            c.n[*s as usize][*r as usize][*w as usize] = *n;
        }
        c.lat_count = c.total();
        c.lat_sum_ns = c.total() * 1000;
        c
    }

    #[test]
    fn pte_write_expectations() {
        let w = &DAX_WORKLOADS[0];
        let ok = counts_with(&[
            (SIZE_PTE, RESULT_OK, true, 256),
            (SIZE_PMD, RESULT_FALLBACK, true, 2),
        ]);
        assert!(dax_expectations(w, &ok, 2).is_empty());
        let p = dax_expectations(w, &ok, 1);
        assert_eq!(
            p,
            vec!["pte-write: 2 PMD fallbacks seen by the probes, the kernel counted 1"]
        );
        let short = counts_with(&[(SIZE_PTE, RESULT_OK, true, 255)]);
        let p = dax_expectations(w, &short, 0);
        assert_eq!(
            p,
            vec![
                "pte-write: expected 0 read + 256 write successful faults of its size, got 0 + 255"
            ]
        );
    }

    #[test]
    fn readwrite_doubles_and_latency_must_cover_all() {
        let w = &DAX_WORKLOADS[3];
        let mut c = counts_with(&[
            (SIZE_PMD, RESULT_OK, false, 4),
            (SIZE_PMD, RESULT_OK, true, 4),
        ]);
        assert!(dax_expectations(w, &c, 0).is_empty());
        c.lat_count = 7;
        let p = dax_expectations(w, &c, 0);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("latency histogram holds 7 of 8"), "{p:?}");
        let stray = counts_with(&[
            (SIZE_PMD, RESULT_OK, false, 4),
            (SIZE_PMD, RESULT_OK, true, 4),
            (SIZE_PTE, RESULT_ERROR, true, 1),
        ]);
        let p = dax_expectations(w, &stray, 0);
        assert!(p[0].contains("1 unexpected faults"), "{p:?}");
    }
}
