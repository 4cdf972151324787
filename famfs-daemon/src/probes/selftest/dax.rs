//! `selftest dax`: the DAX fault probes against mappings of files on a filesystem mounted `-o dax`.
//! 1 MiB mappings fault in 4 KiB pages, 8 MiB 2 MiB-aligned ones in 2 MiB pages, each written page by
//! page, then read-then-written page by page. Also owns the DAX workload `kfuncs` reuses.

use std::{
    fs::File,
    io::Write,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use famfs_common::{
    counters,
    dev::kernel_dev_of_st_dev,
    fault::{RESULT_ERROR, RESULT_FALLBACK, RESULT_OK, SIZE_PMD, SIZE_PTE},
    hist::LAT_SLOTS,
};

use super::{Verdict, print_health, verdict};
use crate::probes::{ProbeConfig, ProbeSnapshot, Probes};

const PAGE: usize = 4096;
const HUGE: usize = 2 << 20;

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
pub(super) struct FaultCounts {
    /// `[size][result][write]`: size 0 = PTE, 1 = PMD; result 0 ok, 1 fallback, 2 error.
    n: [[[u64; 2]; 3]; 2],
    /// Sum of the latency-histogram slots (must equal the number of faults).
    lat_count: u64,
    lat_sum_ns: u64,
    /// Faults the kernel's per-process map attributes to this process on the file, and the name it
    /// recorded (`FAULT_PROCS`).
    by_process: u64,
    comm: [u8; 16],
}

impl FaultCounts {
    pub(super) fn total(&self) -> u64 {
        self.n.iter().flatten().flatten().sum()
    }
    fn get(&self, size: u8, result: u8, write: bool) -> u64 {
        self.n[size as usize][result as usize][write as usize]
    }
}

fn counts(snap: &ProbeSnapshot, dev: u32, ino: u64) -> FaultCounts {
    let mut c = FaultCounts::default();
    let me = std::process::id();
    for (_, v) in snap
        .fault_procs
        .iter()
        .filter(|(k, _)| k.dev == dev && k.ino == ino && k.tgid == me)
    {
        c.by_process += v.count;
        c.comm = v.comm;
    }
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
    let end = c.comm.iter().position(|&b| b == 0).unwrap_or(c.comm.len());
    s.push_str(&format!(
        " by_process={} by_process_comm={}",
        c.by_process,
        String::from_utf8_lossy(&c.comm[..end])
    ));
    s
}

/// One DAX workload: a fresh file of `mib` MiB, mapped 2 MiB-aligned and touched page by page.
pub(super) struct DaxWorkload {
    name: &'static str,
    mib: usize,
    touch: Touch,
}

pub(super) const DAX_WORKLOADS: [DaxWorkload; 4] = [
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
pub(super) fn run_dax_workload(
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
    let c = counts(&probes.snapshot(), kernel_dev_of_st_dev(m.dev()), m.ino());
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
    if c.by_process != c.total() {
        p.push(format!(
            "{}: {} of {} faults attributed to this process",
            w.name,
            c.by_process,
            c.total()
        ));
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

/// `selftest dax --dir DIR`: every DAX workload in `dir` (on a filesystem mounted `-o dax`), with the
/// probes watching only that filesystem's device.
pub fn check_dax(dir: &Path, out: &mut dyn Write) -> Result<Verdict> {
    let dev = kernel_dev_of_st_dev(
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
        writeln!(
            out,
            "RESULT dax {} {} vmstat_thp_fault_fallback={vm_fallback}",
            w.name,
            fault_fields(&c)
        )?;
        problems.extend(dax_expectations(w, &c, vm_fallback));
    }
    for p in made {
        std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
    }
    let snap = probes.snapshot();
    print_health(out, "dax", &snap)?;
    for (name, idx) in [
        ("unmatched_fault", counters::UNMATCHED_FAULT),
        ("fault_start_full", counters::FAULT_START_FULL),
    ] {
        if snap.counters[idx as usize] != 0 {
            problems.push(format!("{name} = {}", snap.counters[idx as usize]));
        }
    }
    Ok(verdict(out, "dax", &problems)?)
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
        c.by_process = c.total();
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

    #[test]
    fn fault_fields_name_every_cell_in_order() {
        let c = counts_with(&[
            (SIZE_PTE, RESULT_OK, true, 256),
            (SIZE_PMD, RESULT_FALLBACK, true, 2),
        ]);
        assert_eq!(
            fault_fields(&c),
            "pte_ok_r=0 pte_ok_w=256 pte_fallback_r=0 pte_fallback_w=0 pte_error_r=0 pte_error_w=0 \
             pmd_ok_r=0 pmd_ok_w=0 pmd_fallback_r=0 pmd_fallback_w=2 pmd_error_r=0 pmd_error_w=0 \
             lat_count=258 by_process=258 by_process_comm="
        );
    }

    #[test]
    fn every_fault_must_be_attributed_to_this_process() {
        let w = &DAX_WORKLOADS[0];
        let mut c = counts_with(&[
            (SIZE_PTE, RESULT_OK, true, 256),
            (SIZE_PMD, RESULT_FALLBACK, true, 2),
        ]);
        assert!(dax_expectations(w, &c, 2).is_empty());
        c.by_process = 257;
        assert_eq!(
            dax_expectations(w, &c, 2),
            vec!["pte-write: 257 of 258 faults attributed to this process"]
        );
    }
}
