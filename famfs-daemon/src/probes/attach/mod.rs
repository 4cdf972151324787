//! Attaching the object's programs, one module per program type: tracepoints and raw tracepoints
//! (`tracepoint`, the core probes) and the optional kernel-function probes (`kfunc`: fentry/fexit, else
//! kprobe/kretprobe). Each attach returns the probe's table row; a probe that cannot attach is a row with
//! the kernel's reason, never an error of the whole load.
//!
//! Owns: the probe table ([`tracepoint::TRACEPOINTS`], [`kfunc`] targets), the names of the programs in
//! the object behind each row ([`object_programs`]) and the one-line rendering of aya errors
//! ([`errchain`]). Must not read or write maps (that is `maps` and `snapshot`).

pub mod kfunc;
pub mod tracepoint;

use super::{ProbeKind, ProbeStatus};

/// An error with its sources, on one line.
pub(crate) fn errchain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    // aya appends an empty verifier log to load errors; drop it.
    if let Some(t) = s.strip_suffix(". Verifier output: ") {
        s = t.to_string();
    }
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// The programs in the object behind an attached row, each with the label its run cost is reported
/// under: one program per tracepoint probe, labelled by the probe whichever pairing loaded it; the entry
/// and return programs of a kernel-function probe.
pub(crate) fn object_programs(s: &ProbeStatus) -> Vec<(String, String)> {
    match s.kind {
        ProbeKind::Tracepoint => vec![(s.program.to_string(), s.program.to_string())],
        ProbeKind::RawTracepoint => tracepoint::raw_variant(s.program)
            .into_iter()
            .map(|raw| (raw.to_string(), s.program.to_string()))
            .collect(),
        ProbeKind::BtfTracepoint => tracepoint::btf_variant(s.program)
            .into_iter()
            .map(|btf| (btf.to_string(), s.program.to_string()))
            .collect(),
        ProbeKind::Fentry | ProbeKind::Kprobe => kfunc::programs(s.kind, s.program)
            .into_iter()
            .map(|p| (p.clone(), p))
            .collect(),
        ProbeKind::Function => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::ProbeState;

    fn row(program: &'static str, kind: ProbeKind) -> ProbeStatus {
        ProbeStatus {
            program,
            kind,
            target: String::new(),
            purpose: "",
            state: ProbeState::Attached,
        }
    }

    #[test]
    fn object_programs_name_what_the_ebpf_crate_defines() {
        let p = |program, kind| object_programs(&row(program, kind));
        assert_eq!(
            p("dax_pte_fault", ProbeKind::Tracepoint),
            [("dax_pte_fault".to_string(), "dax_pte_fault".to_string())]
        );
        assert_eq!(
            p("fuse_request_end", ProbeKind::RawTracepoint),
            [(
                "fuse_request_end_raw".to_string(),
                "fuse_request_end".to_string()
            )]
        );
        assert_eq!(
            p("fuse_open", ProbeKind::Fentry),
            [
                (
                    "fentry_fuse_open".to_string(),
                    "fentry_fuse_open".to_string()
                ),
                ("fexit_fuse_open".to_string(), "fexit_fuse_open".to_string())
            ]
        );
        assert_eq!(
            p("fuse_open", ProbeKind::Kprobe),
            [
                (
                    "kprobe_fuse_open".to_string(),
                    "kprobe_fuse_open".to_string()
                ),
                (
                    "kretprobe_fuse_open".to_string(),
                    "kretprobe_fuse_open".to_string()
                )
            ]
        );
        assert!(p("fuse_open", ProbeKind::Function).is_empty());
    }
}
