//! `selftest kfuncs`: the optional kernel-function probes, forced to one attach method or either.
//! `dax_iomap_fault` must be called once per DAX fault tracepoint event of the PTE workload and, with a
//! FUSE directory, `fuse_open` once per open(2) made there; each call with its return and latency.

use std::{io::Write, path::Path};

use anyhow::{Context, Result};
use famfs_common::counters;

use super::{
    Verdict,
    dax::{DAX_WORKLOADS, run_dax_workload},
    open_and_read, print_health, regular_files, verdict,
};
use crate::probes::{KfuncMode, ProbeConfig, ProbeKind, ProbeSnapshot, ProbeState, Probes};

/// Print the row of every kernel-function probe; return what is wrong with the ones the check needs
/// (`wanted`): not attached, or attached another way than `want_kind`.
fn attach_problems(
    out: &mut dyn Write,
    check: &str,
    probes: &Probes,
    wanted: &[&str],
    want_kind: Option<ProbeKind>,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for s in probes.status() {
        if matches!(
            s.kind,
            ProbeKind::Fentry | ProbeKind::Kprobe | ProbeKind::Function
        ) {
            writeln!(
                out,
                "RESULT {check} probe function={} kind={:?} state={}",
                s.program, s.kind, s.state
            )?;
        }
    }
    for f in wanted {
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
    Ok(problems)
}

/// (calls, returns, latency samples) of the kernel function `f` in `snap`; zeros without a row.
fn calls(snap: &ProbeSnapshot, f: &str) -> (u64, u64, u64) {
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
}

/// `selftest kfuncs --dir DIR [--fuse-dir FUSE] --mode MODE`.
pub fn check_kfuncs(
    dir: &Path,
    fuse_dir: Option<&Path>,
    mode: KfuncMode,
    out: &mut dyn Write,
) -> Result<Verdict> {
    let want_kind = match mode {
        KfuncMode::Auto => None,
        KfuncMode::Fentry => Some(ProbeKind::Fentry),
        KfuncMode::Kprobe => Some(ProbeKind::Kprobe),
    };
    let check = format!("kfuncs-{}", mode.as_str());
    let probes = Probes::load(&ProbeConfig {
        kfunc_mode: mode,
        ..Default::default()
    });
    let mut wanted = vec!["dax_iomap_fault"];
    if fuse_dir.is_some() {
        wanted.push("fuse_open");
    }
    let mut problems = attach_problems(out, &check, &probes, &wanted, want_kind)?;

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
    let (dc, dr, dl) = calls(&snap, "dax_iomap_fault");
    writeln!(
        out,
        "RESULT {check} dax_iomap_fault calls={dc} returns={dr} lat_count={dl} tracepoint_faults={faults}"
    )?;
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
        let (oc, or, ol) = calls(&snap, "fuse_open");
        writeln!(
            out,
            "RESULT {check} fuse_open calls={oc} returns={or} lat_count={ol} opens={opens}"
        )?;
        if (oc, or, ol) != (opens, opens, opens) {
            problems.push(format!(
                "fuse_open calls/returns/latencies ({oc}, {or}, {ol}) != opens {opens}"
            ));
        }
    }
    print_health(out, &check, &snap)?;
    let unmatched = snap.counters[counters::UNMATCHED_RETURN as usize];
    if unmatched != 0 {
        problems.push(format!("unmatched_return = {unmatched}"));
    }
    Ok(verdict(out, &check, &problems)?)
}
