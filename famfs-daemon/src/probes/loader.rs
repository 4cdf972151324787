//! Loading the eBPF object and deciding what attaches. Every program is attached only where its target
//! exists; a probe that cannot attach is recorded with the kernel's reason and the daemon goes on without
//! it.
//!
//! Tracepoints are the core probes. Kernel-function probes are optional: fentry/fexit where the kernel
//! allows BPF tracing programs, else kprobe/kretprobe, else "unavailable: <both reasons>".
//!
//! FUSE requests are paired send → end by the request's address (BTF tracepoints, else raw tracepoints,
//! reading `struct fuse_req` at offsets from the kernel's BTF) when the BTF has them, else by
//! (connection, unique) from the classic tracepoint records. The first also works on kernels whose send
//! event carries unique 0.
//!
//! Owns: [`Probes`] (the loaded object, its rows, the pairing in use) and the load sequence. The attach
//! of each program type is `attach`, map maintenance `maps`, map reads `snapshot`.

use std::{os::fd::OwnedFd, path::Path};

use aya::{Ebpf, EbpfLoader};
use famfs_common::{
    fuse_request::{FILTER_ALL, FILTER_WATCHED, ReqOffsets},
    names,
};

use super::{
    EBPF_OBJECT, ProbeConfig, ProbeState, ProbeStatus, RequestPairing,
    attach::{
        errchain, kfunc,
        tracepoint::{self, RequestPrograms},
    },
    btf, maps, tracefs,
};

/// The loaded eBPF object with its attach results.
pub struct Probes {
    pub(crate) ebpf: Option<Ebpf>,
    status: Vec<ProbeStatus>,
    mounted_tracefs: bool,
    _stats_fd: Option<OwnedFd>,
    /// In-flight entries removed by `expire_inflight` (requests whose end was never seen).
    pub(crate) expired_inflight: u64,
    /// The pairing in use (`Unique` or `Pointer`; `Auto` only before load decided).
    pairing: RequestPairing,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// The `struct fuse_req` offsets request-pointer pairing needs, from the kernel's BTF; else why not.
fn request_offsets(pairing: RequestPairing) -> Result<ReqOffsets, String> {
    match pairing {
        RequestPairing::Unique => Err("unique pairing requested".into()),
        _ => btf::Btf::for_struct("fuse_req", "fuse")
            .and_then(|b| btf::fuse_req_offsets(&b))
            .map_err(|e| format!("{e:#}")),
    }
}

/// Load the object with this kernel's layouts and the configured filter and map sizes.
fn load_object(cfg: &ProbeConfig, root: &Path, req_off: &ReqOffsets) -> Result<Ebpf, String> {
    let lay = tracepoint::layouts(root);
    let filter_mode = if cfg.connections.is_some() {
        FILTER_WATCHED
    } else {
        FILTER_ALL
    };
    let slow_ns = cfg.slow_fault.as_nanos() as u64;
    // The in-flight array is indexed by a hash masked to its size: a power of two.
    let inflight = cfg.inflight_max.clamp(1, 1 << 24).next_power_of_two();
    let inflight_mask = inflight - 1;
    let mut loader = EbpfLoader::new();
    loader
        .override_global("TP_OFFSETS", &lay.fuse, true)
        .override_global("DAX_PTE_OFFSETS", &lay.pte, true)
        .override_global("DAX_PMD_OFFSETS", &lay.pmd, true)
        .override_global("FILEMAP_OFFSETS", &lay.filemap, true)
        .override_global("FILTER_MODE", &filter_mode, true)
        .override_global("FMAP_OPCODE", &cfg.fmap_opcode, true)
        .override_global("SLOW_FAULT_NS", &slow_ns, true)
        .override_global("REQ_OFFSETS", req_off, true)
        .override_global("INFLIGHT_MASK", &inflight_mask, true)
        .map_max_entries(names::INFLIGHT, inflight)
        .map_max_entries(names::REQ_STATS, cfg.stats_max.max(1))
        .map_max_entries(names::FAULT_STATS, cfg.files_max.max(1))
        .map_max_entries(names::FILEMAP_STATS, cfg.files_max.max(1))
        .map_max_entries(names::FAULT_PROCS, cfg.files_max.max(1));
    loader
        .load(EBPF_OBJECT)
        .map_err(|e| format!("loading the eBPF object failed: {}", errchain(&e)))
}

/// The pointer-paired request programs that load: the BTF tracepoints when allowed and the kernel takes
/// them, else the raw tracepoints; else why neither.
fn load_pointer_programs(ebpf: &mut Ebpf, try_btf: bool) -> Result<RequestPrograms, String> {
    if try_btf {
        match tracepoint::load_btf_pair(ebpf) {
            Ok(()) => return Ok(RequestPrograms::Btf),
            Err(e) => log::info!("FUSE request probes use raw tracepoints (tp_btf: {e})"),
        }
    }
    tracepoint::load_raw_pair(ebpf).map(|()| RequestPrograms::Raw)
}

/// Decide the pairing: pointer when asked for, or (auto) when the offsets resolved and both BTF or both
/// raw programs load. Returns the pairing, the request programs and, when pointer pairing is unusable,
/// why.
fn choose_pairing(
    ebpf: &mut Ebpf,
    cfg: &ProbeConfig,
    req_offsets: &Result<ReqOffsets, String>,
) -> (RequestPairing, RequestPrograms, Option<String>) {
    let wanted = cfg.request_pairing;
    let mut programs = RequestPrograms::Raw;
    let pointer_err = match (req_offsets, wanted) {
        (_, RequestPairing::Unique) => Some("unique pairing requested".to_string()),
        (Err(e), _) => Some(format!("struct fuse_req offsets: {e}")),
        (Ok(_), _) => match load_pointer_programs(ebpf, cfg.btf_tracepoints) {
            Ok(p) => {
                programs = p;
                None
            }
            Err(e) => Some(e),
        },
    };
    let pairing = match (&pointer_err, wanted) {
        (None, _) | (Some(_), RequestPairing::Pointer) => RequestPairing::Pointer,
        (Some(e), _) => {
            if wanted == RequestPairing::Auto {
                log::info!("FUSE requests paired by unique (request-pointer pairing: {e})");
            }
            RequestPairing::Unique
        }
    };
    if pairing == RequestPairing::Unique {
        programs = RequestPrograms::Classic;
    }
    (pairing, programs, pointer_err)
}

impl Probes {
    /// Load the object and attach every probe the kernel offers. Never fails as a whole: what cannot be
    /// loaded or attached is reported in [`Probes::status`].
    pub fn load(cfg: &ProbeConfig) -> Probes {
        let mut probes = Probes {
            ebpf: None,
            status: Vec::new(),
            mounted_tracefs: false,
            _stats_fd: None,
            expired_inflight: 0,
            pairing: RequestPairing::Unique,
        };
        let root = match tracefs::ensure_mounted() {
            Ok((root, mounted)) => {
                probes.mounted_tracefs = mounted;
                root
            }
            Err(e) => {
                probes.fail_all(cfg, &format!("{e:#}"));
                return probes;
            }
        };
        // Request-pointer pairing needs struct fuse_req offsets from the kernel's BTF.
        let req_offsets = request_offsets(cfg.request_pairing);
        // Without offsets the raw programs are never attached, so their zero defaults are never read.
        let req_off = req_offsets.clone().unwrap_or_default();
        let mut ebpf = match load_object(cfg, &root, &req_off) {
            Ok(b) => b,
            Err(reason) => {
                probes.fail_all(cfg, &reason);
                return probes;
            }
        };
        for c in cfg.connections.iter().flatten() {
            if let Err(e) = maps::watch(&mut ebpf, *c) {
                log::warn!("cannot watch FUSE connection {c}: {e:#}");
            }
        }
        if cfg.bpf_stats {
            match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
                Ok(fd) => probes._stats_fd = Some(fd),
                Err(e) => log::warn!("BPF run-time statistics unavailable: {e}"),
            }
        }
        let (pairing, programs, pointer_err) = choose_pairing(&mut ebpf, cfg, &req_offsets);
        probes.pairing = pairing;
        let rows = tracepoint::attach_all(&mut ebpf, cfg, &root, programs, pointer_err.as_deref());
        rows.into_iter().for_each(|r| probes.push(r));
        if cfg.kfuncs {
            let rows = kfunc::attach_all(&mut ebpf, cfg.kfunc_mode);
            rows.into_iter().for_each(|r| probes.push(r));
        }
        probes.ebpf = Some(ebpf);
        probes
    }

    /// Every row unavailable for `reason`: nothing could be loaded.
    fn fail_all(&mut self, cfg: &ProbeConfig, reason: &str) {
        self.status.extend(tracepoint::unavailable_all(cfg, reason));
        self.status.extend(kfunc::unavailable_all(reason));
    }

    /// Record one attach result (and log it).
    fn push(&mut self, row: ProbeStatus) {
        let (program, kind, target) = (row.program, row.kind, &row.target);
        match &row.state {
            ProbeState::Attached => log::info!("probe {program} attached ({kind:?} {target})"),
            ProbeState::Unavailable(r) => {
                log::info!("probe {program} on {target} unavailable: {r}")
            }
        }
        self.status.push(row);
    }

    pub fn status(&self) -> &[ProbeStatus] {
        &self.status
    }

    /// How FUSE request sends are paired with their ends on this load: `Pointer` or `Unique`.
    pub fn request_pairing(&self) -> RequestPairing {
        self.pairing
    }

    pub fn attached(&self, program: &str) -> bool {
        self.status
            .iter()
            .any(|s| s.program == program && s.state == ProbeState::Attached)
    }

    /// Whether this process mounted tracefs (it was mounted nowhere before).
    pub fn mounted_tracefs(&self) -> bool {
        self.mounted_tracefs
    }
}
