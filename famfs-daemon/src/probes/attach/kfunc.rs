//! The optional kernel-function probes (`famfs_common::kfunc::TARGETS`): fentry/fexit where the kernel
//! allows BPF tracing programs, else kprobe/kretprobe, else "unavailable: <both reasons>". A function the
//! running kernel does not have (per `/proc/kallsyms`) is not tried. Never leaves half an entry/return
//! pair attached. Must not read maps.

use std::{collections::HashSet, path::Path};

use aya::{
    Btf, Ebpf,
    programs::{FEntry, FExit, KProbe},
};
use famfs_common::kfunc;

use super::errchain;
use crate::{
    probes::{KfuncMode, ProbeKind, ProbeState, ProbeStatus},
    util::kallsyms,
};

/// The purpose column of every kernel-function row.
const PURPOSE: &str = "optional kernel-function probe: calls and latency";

/// Entry and return program prefixes in the object: `fentry_<func>`/`fexit_<func>`.
const FENTRY: (&str, &str) = ("fentry", "fexit");
/// `kprobe_<func>`/`kretprobe_<func>`.
const KPROBE: (&str, &str) = ("kprobe", "kretprobe");

fn pair_names((entry, ret): (&str, &str), func: &str) -> (String, String) {
    (format!("{entry}_{func}"), format!("{ret}_{func}"))
}

/// The entry and return programs of `func` attached as `kind` (none for other kinds).
pub(crate) fn programs(kind: ProbeKind, func: &str) -> Vec<String> {
    let prefixes = match kind {
        ProbeKind::Fentry => FENTRY,
        ProbeKind::Kprobe => KPROBE,
        _ => return Vec::new(),
    };
    let (entry, ret) = pair_names(prefixes, func);
    vec![entry, ret]
}

/// Every kernel-function row as unavailable for `reason` (the object could not be loaded at all).
pub(crate) fn unavailable_all(reason: &str) -> Vec<ProbeStatus> {
    kfunc::TARGETS
        .iter()
        .map(|f| ProbeStatus {
            program: f,
            kind: ProbeKind::Function,
            target: f.to_string(),
            purpose: "optional kernel-function probe",
            state: ProbeState::Unavailable(reason.to_string()),
        })
        .collect()
}

/// Try every kernel-function probe with the methods `mode` allows.
pub(crate) fn attach_all(ebpf: &mut Ebpf, mode: KfuncMode) -> Vec<ProbeStatus> {
    let present = kallsyms::functions_present(Path::new(kallsyms::PROC_KALLSYMS), &kfunc::TARGETS)
        .unwrap_or_else(|e| {
            log::warn!("reading {}: {e}", kallsyms::PROC_KALLSYMS);
            HashSet::new()
        });
    let btf = Btf::from_sys_fs().map_err(|e| errchain(&e));
    kfunc::TARGETS
        .iter()
        .map(|f| {
            let (kind, state) = attach_kfunc(ebpf, f, &present, &btf, mode);
            ProbeStatus {
                program: f,
                kind,
                target: f.to_string(),
                purpose: PURPOSE,
                state,
            }
        })
        .collect()
}

fn attach_kfunc(
    ebpf: &mut Ebpf,
    func: &str,
    present: &HashSet<String>,
    btf: &Result<Btf, String>,
    mode: KfuncMode,
) -> (ProbeKind, ProbeState) {
    if !present.contains(func) {
        return (
            ProbeKind::Function,
            ProbeState::Unavailable(format!(
                "function {func} is not in this kernel (/proc/kallsyms)"
            )),
        );
    }
    let fentry_err = if mode == KfuncMode::Kprobe {
        "not tried (kprobe mode)".to_string()
    } else {
        match btf {
            Ok(btf) => match attach_fentry(ebpf, func, btf) {
                Ok(()) => return (ProbeKind::Fentry, ProbeState::Attached),
                Err(e) => e,
            },
            Err(e) => format!("no kernel BTF: {e}"),
        }
    };
    if mode == KfuncMode::Fentry {
        return (
            ProbeKind::Function,
            ProbeState::Unavailable(format!(
                "fentry: {fentry_err}; kprobe: not tried (fentry mode)"
            )),
        );
    }
    match attach_kprobe(ebpf, func) {
        Ok(()) => (ProbeKind::Kprobe, ProbeState::Attached),
        Err(kprobe_err) => (
            ProbeKind::Function,
            ProbeState::Unavailable(format!("fentry: {fentry_err}; kprobe: {kprobe_err}")),
        ),
    }
}

fn attach_fentry(ebpf: &mut Ebpf, func: &str, btf: &Btf) -> Result<(), String> {
    let (entry, exit) = pair_names(FENTRY, func);
    {
        let p: &mut FEntry = ebpf
            .program_mut(&entry)
            .ok_or_else(|| format!("{entry} missing"))?
            .try_into()
            .map_err(|e| errchain(&e))?;
        p.load(func, btf)
            .map_err(|e| format!("load: {}", errchain(&e)))?;
        if let Err(e) = p.attach() {
            let _ = p.unload();
            return Err(format!("attach: {}", errchain(&e)));
        }
    }
    let res = (|| {
        let p: &mut FExit = ebpf
            .program_mut(&exit)
            .ok_or_else(|| format!("{exit} missing"))?
            .try_into()
            .map_err(|e| errchain(&e))?;
        p.load(func, btf)
            .map_err(|e| format!("fexit load: {}", errchain(&e)))?;
        if let Err(e) = p.attach() {
            let _ = p.unload();
            return Err(format!("fexit attach: {}", errchain(&e)));
        }
        Ok(())
    })();
    if res.is_err() {
        // Never leave half a pair attached: entries without returns, and double counts if the kprobe
        // pair attaches next.
        if let Some(Ok(p)) = ebpf.program_mut(&entry).map(<&mut FEntry>::try_from) {
            let _ = p.unload();
        }
    }
    res
}

fn attach_kprobe(ebpf: &mut Ebpf, func: &str) -> Result<(), String> {
    let (entry, ret) = pair_names(KPROBE, func);
    for (prog, what) in [(entry.clone(), KPROBE.0), (ret, KPROBE.1)] {
        let res = (|| {
            let p: &mut KProbe = ebpf
                .program_mut(&prog)
                .ok_or_else(|| format!("{prog} missing"))?
                .try_into()
                .map_err(|e| errchain(&e))?;
            p.load()
                .map_err(|e| format!("{what} load: {}", errchain(&e)))?;
            if let Err(e) = p.attach(func, 0) {
                let _ = p.unload();
                return Err(format!("{what} attach: {}", errchain(&e)));
            }
            Ok(())
        })();
        if let Err(e) = res {
            if prog != entry
                && let Some(Ok(p)) = ebpf.program_mut(&entry).map(<&mut KProbe>::try_from)
            {
                let _ = p.unload();
            }
            return Err(e);
        }
    }
    Ok(())
}
