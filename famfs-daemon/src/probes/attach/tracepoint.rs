//! Tracepoint and raw-tracepoint probes: the core probe table ([`TRACEPOINTS`]), each tracepoint's
//! record layout read from tracefs, and attaching every row where its target exists on this kernel.
//!
//! The FUSE request probes come in three variants: classic tracepoints paired by (connection, unique)
//! from the records, or, paired by the request's address, BTF tracepoints (`tp_btf`: fields by direct
//! loads) or raw tracepoints (fields by helper calls) (see `loader` for the choice). Must not choose
//! the pairing or read maps.

use std::path::Path;

use aya::{
    Btf, Ebpf,
    programs::{BtfTracePoint, Program, RawTracePoint, TracePoint},
};
use famfs_common::{
    fault::{DaxOffsets, FilemapOffsets},
    fuse_request::TpOffsets,
    names,
};

use super::errchain;
use crate::probes::{ProbeConfig, ProbeKind, ProbeState, ProbeStatus, tracefs};

/// One tracepoint row of the probe table.
#[derive(Clone, Copy, Debug)]
pub struct TracepointSpec {
    /// Program name in the eBPF object.
    pub program: &'static str,
    pub category: &'static str,
    pub event: &'static str,
    /// What the probe is for, shown by `famfs-trace probes`.
    pub purpose: &'static str,
}

/// Every tracepoint probe, in attach order.
pub const TRACEPOINTS: &[TracepointSpec] = &[
    TracepointSpec {
        program: names::PROG_FUSE_REQUEST_SEND,
        category: "fuse",
        event: "fuse_request_send",
        purpose: "FUSE request queued: per-opcode counts, latency start",
    },
    TracepointSpec {
        program: names::PROG_FUSE_REQUEST_END,
        category: "fuse",
        event: "fuse_request_end",
        purpose: "FUSE reply written: latency, errors, reply size, OPEN/GET_FMAP events",
    },
    TracepointSpec {
        program: "dax_pte_fault",
        category: "fs_dax",
        event: "dax_pte_fault",
        purpose: "4 KiB DAX fault start",
    },
    TracepointSpec {
        program: "dax_pte_fault_done",
        category: "fs_dax",
        event: "dax_pte_fault_done",
        purpose: "4 KiB DAX fault result and latency per file",
    },
    TracepointSpec {
        program: "dax_pmd_fault",
        category: "fs_dax",
        event: "dax_pmd_fault",
        purpose: "2 MiB DAX fault start",
    },
    TracepointSpec {
        program: "dax_pmd_fault_done",
        category: "fs_dax",
        event: "dax_pmd_fault_done",
        purpose: "2 MiB DAX fault result (FALLBACK = huge page refused) and latency per file",
    },
    TracepointSpec {
        program: "mm_filemap_fault",
        category: "filemap",
        event: "mm_filemap_fault",
        purpose: "page-cache faults per file (stock-kernel FUSE data path)",
    },
];

/// The `category:event` a row attaches to: its own, or the configured override.
fn tp_target(cfg: &ProbeConfig, spec: &TracepointSpec) -> (String, String) {
    for (prog, target) in &cfg.target_overrides {
        if prog == spec.program {
            return match target.split_once(':') {
                Some((c, e)) => (c.to_string(), e.to_string()),
                None => (String::new(), target.clone()),
            };
        }
    }
    (spec.category.to_string(), spec.event.to_string())
}

/// Every tracepoint row as unavailable for `reason` (the object could not be loaded at all).
pub(crate) fn unavailable_all(cfg: &ProbeConfig, reason: &str) -> Vec<ProbeStatus> {
    TRACEPOINTS
        .iter()
        .map(|spec| {
            let (c, e) = tp_target(cfg, spec);
            ProbeStatus {
                program: spec.program,
                kind: ProbeKind::Tracepoint,
                target: format!("{c}:{e}"),
                purpose: spec.purpose,
                state: ProbeState::Unavailable(reason.to_string()),
            }
        })
        .collect()
}

/// Load-time tracepoint layouts; each falls back to the 6.18 layout with a warning.
pub(crate) struct Layouts {
    pub fuse: TpOffsets,
    pub pte: DaxOffsets,
    pub pmd: DaxOffsets,
    pub filemap: FilemapOffsets,
}

/// The record layouts of the running kernel's tracepoints, from their tracefs `format` files.
pub(crate) fn layouts(root: &Path) -> Layouts {
    fn or_default<T>(what: &str, r: anyhow::Result<T>, d: T) -> T {
        r.unwrap_or_else(|e| {
            log::debug!("{what} layout unreadable ({e:#}); using the 6.18 layout");
            d
        })
    }
    Layouts {
        fuse: or_default(
            "fuse",
            tracefs::fuse_request_offsets(root),
            TpOffsets::LINUX_6_18,
        ),
        pte: or_default(
            "dax_pte",
            tracefs::dax_offsets(root, "dax_pte_fault_done"),
            DaxOffsets::PTE_6_18,
        ),
        pmd: or_default(
            "dax_pmd",
            tracefs::dax_offsets(root, "dax_pmd_fault_done"),
            DaxOffsets::PMD_6_18,
        ),
        filemap: or_default(
            "filemap",
            tracefs::filemap_offsets(root),
            FilemapOffsets::LINUX_6_18,
        ),
    }
}

/// The raw-tracepoint program of a request probe (`None` for the other tracepoints).
pub(crate) fn raw_variant(program: &str) -> Option<&'static str> {
    match program {
        names::PROG_FUSE_REQUEST_SEND => Some(names::PROG_FUSE_REQUEST_SEND_RAW),
        names::PROG_FUSE_REQUEST_END => Some(names::PROG_FUSE_REQUEST_END_RAW),
        _ => None,
    }
}

/// The BTF-tracepoint program of a request probe (`None` for the other tracepoints).
pub(crate) fn btf_variant(program: &str) -> Option<&'static str> {
    match program {
        names::PROG_FUSE_REQUEST_SEND => Some(names::PROG_FUSE_REQUEST_SEND_BTF),
        names::PROG_FUSE_REQUEST_END => Some(names::PROG_FUSE_REQUEST_END_BTF),
        _ => None,
    }
}

/// Which programs serve the two request probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestPrograms {
    /// Classic tracepoints (unique pairing).
    Classic,
    /// Raw tracepoints (pointer pairing, fields by helper calls).
    Raw,
    /// BTF tracepoints (pointer pairing, fields by direct loads).
    Btf,
}

/// Load (verify) both BTF request programs against the kernel's BTF; attaching is per probe afterwards.
pub(crate) fn load_btf_pair(ebpf: &mut Ebpf) -> Result<(), String> {
    let btf = Btf::from_sys_fs().map_err(|e| format!("kernel BTF: {}", errchain(&e)))?;
    for (name, event) in [
        (names::PROG_FUSE_REQUEST_SEND_BTF, "fuse_request_send"),
        (names::PROG_FUSE_REQUEST_END_BTF, "fuse_request_end"),
    ] {
        let p: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| format!("program {name} missing from the eBPF object"))?
            .try_into()
            .map_err(|e| errchain(&e))?;
        p.load(event, &btf)
            .map_err(|e| format!("{name} load: {}", errchain(&e)))?;
    }
    Ok(())
}

/// Load (verify) both raw request programs; attaching is per probe afterwards.
pub(crate) fn load_raw_pair(ebpf: &mut Ebpf) -> Result<(), String> {
    for name in [
        names::PROG_FUSE_REQUEST_SEND_RAW,
        names::PROG_FUSE_REQUEST_END_RAW,
    ] {
        let p: &mut RawTracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| format!("program {name} missing from the eBPF object"))?
            .try_into()
            .map_err(|e| errchain(&e))?;
        p.load()
            .map_err(|e| format!("{name} load: {}", errchain(&e)))?;
    }
    Ok(())
}

/// Attach every row of [`TRACEPOINTS`]. The request probes attach the variant `programs` names (already
/// loaded unless `Classic`); `pointer_err` (when set) says why the pointer-paired ones could not be.
pub(crate) fn attach_all(
    ebpf: &mut Ebpf,
    cfg: &ProbeConfig,
    root: &Path,
    programs: RequestPrograms,
    pointer_err: Option<&str>,
) -> Vec<ProbeStatus> {
    let mut rows = Vec::with_capacity(TRACEPOINTS.len());
    for spec in TRACEPOINTS {
        let (category, event) = tp_target(cfg, spec);
        let variant = match programs {
            RequestPrograms::Classic => None,
            RequestPrograms::Raw => {
                raw_variant(spec.program).map(|p| (ProbeKind::RawTracepoint, p))
            }
            RequestPrograms::Btf => {
                btf_variant(spec.program).map(|p| (ProbeKind::BtfTracepoint, p))
            }
        };
        let (kind, state) = match (variant, pointer_err) {
            (Some((kind, _)), Some(e)) => (
                kind,
                ProbeState::Unavailable(format!("request-pointer pairing: {e}")),
            ),
            (Some((kind, program)), None) => (
                kind,
                attach_loaded(ebpf, kind, program, root, &category, &event),
            ),
            (None, _) => (
                ProbeKind::Tracepoint,
                attach_tracepoint(ebpf, spec.program, root, &category, &event),
            ),
        };
        rows.push(ProbeStatus {
            program: spec.program,
            kind,
            target: format!("{category}:{event}"),
            purpose: spec.purpose,
            state,
        });
    }
    rows
}

/// The program `program`, if the tracepoint `category:event` exists on this kernel; else why not.
fn tracepoint_program<'e>(
    ebpf: &'e mut Ebpf,
    program: &str,
    root: &Path,
    category: &str,
    event: &str,
) -> Result<&'e mut Program, ProbeState> {
    if !tracefs::event_exists(root, category, event) {
        return Err(ProbeState::Unavailable(format!(
            "tracepoint {category}:{event} does not exist on this kernel"
        )));
    }
    ebpf.program_mut(program).ok_or_else(|| {
        ProbeState::Unavailable(format!("program {program} missing from the eBPF object"))
    })
}

/// Attach an already loaded raw-tracepoint or BTF-tracepoint program (see [`load_raw_pair`],
/// [`load_btf_pair`]; a BTF tracepoint's event was fixed at load) to `event`.
fn attach_loaded(
    ebpf: &mut Ebpf,
    kind: ProbeKind,
    program: &str,
    root: &Path,
    category: &str,
    event: &str,
) -> ProbeState {
    let prog = match tracepoint_program(ebpf, program, root, category, event) {
        Ok(p) => p,
        Err(unavailable) => return unavailable,
    };
    let attached = if kind == ProbeKind::BtfTracepoint {
        let tp: Result<&mut BtfTracePoint, _> = prog.try_into();
        tp.map_err(|e| errchain(&e))
            .and_then(|tp| tp.attach().map(drop).map_err(|e| errchain(&e)))
    } else {
        let tp: Result<&mut RawTracePoint, _> = prog.try_into();
        tp.map_err(|e| errchain(&e))
            .and_then(|tp| tp.attach(event).map(drop).map_err(|e| errchain(&e)))
    };
    match attached {
        Ok(()) => ProbeState::Attached,
        Err(e) => ProbeState::Unavailable(format!("attach: {e}")),
    }
}

/// Load a tracepoint program and attach it to `category:event`.
fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &str,
    root: &Path,
    category: &str,
    event: &str,
) -> ProbeState {
    let prog = match tracepoint_program(ebpf, program, root, category, event) {
        Ok(p) => p,
        Err(unavailable) => return unavailable,
    };
    let tp: &mut TracePoint = match prog.try_into() {
        Ok(tp) => tp,
        Err(e) => return ProbeState::Unavailable(errchain(&e)),
    };
    if let Err(e) = tp.load() {
        return ProbeState::Unavailable(format!("load: {}", errchain(&e)));
    }
    match tp.attach(category, event) {
        Ok(_) => ProbeState::Attached,
        Err(e) => ProbeState::Unavailable(format!("attach: {}", errchain(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_the_target_by_program() {
        let cfg = ProbeConfig {
            target_overrides: vec![
                ("dax_pte_fault".into(), "nope:missing".into()),
                ("mm_filemap_fault".into(), "bare".into()),
            ],
            ..Default::default()
        };
        let rows = unavailable_all(&cfg, "why");
        let target = |p: &str| {
            rows.iter()
                .find(|r| r.program == p)
                .map(|r| r.target.clone())
        };
        assert_eq!(target("dax_pte_fault").as_deref(), Some("nope:missing"));
        assert_eq!(target("mm_filemap_fault").as_deref(), Some(":bare"));
        assert_eq!(
            target("fuse_request_send").as_deref(),
            Some("fuse:fuse_request_send")
        );
        assert_eq!(rows.len(), TRACEPOINTS.len());
        assert!(
            rows.iter()
                .all(|r| r.state == ProbeState::Unavailable("why".into()))
        );
    }

    #[test]
    fn only_request_probes_have_btf_variants() {
        let btf: Vec<_> = TRACEPOINTS
            .iter()
            .filter_map(|s| btf_variant(s.program))
            .collect();
        assert_eq!(
            btf,
            [
                names::PROG_FUSE_REQUEST_SEND_BTF,
                names::PROG_FUSE_REQUEST_END_BTF
            ]
        );
    }

    #[test]
    fn only_request_probes_have_raw_variants() {
        let raw: Vec<_> = TRACEPOINTS
            .iter()
            .filter_map(|s| raw_variant(s.program))
            .collect();
        assert_eq!(
            raw,
            [
                names::PROG_FUSE_REQUEST_SEND_RAW,
                names::PROG_FUSE_REQUEST_END_RAW
            ]
        );
    }
}
