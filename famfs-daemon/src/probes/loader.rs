//! The probe table and attach logic. Every program is attached only where its target exists; a probe
//! that cannot attach is recorded with the kernel's reason and the daemon goes on without it.
//!
//! Tracepoints are the core probes. Kernel-function probes are optional: fentry/fexit where the kernel
//! allows BPF tracing programs, else kprobe/kretprobe, else "unavailable: <both reasons>".
//!
//! FUSE requests are paired send → end by the request's address (raw tracepoints reading `struct
//! fuse_req` at offsets from the kernel's BTF) when the BTF has them, else by (connection, unique) from
//! the classic tracepoint records. The first also works on kernels whose send event carries unique 0.

use std::{collections::HashSet, os::fd::OwnedFd, path::Path, time::Duration};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, PerCpuHashMap},
    programs::{FEntry, FExit, KProbe, RawTracePoint, TracePoint},
};
use famfs_common::{
    fault::{DaxOffsets, FaultKey, FaultStats, FileKey, FilemapOffsets},
    fuse_request::{
        FILTER_ALL, FILTER_WATCHED, Inflight, InflightKey, ReqKey, ReqOffsets, ReqStats, TpOffsets,
    },
    kfunc, names,
};
use serde::Serialize;

use super::{EBPF_OBJECT, btf, tracefs};

/// How a probe hooks into the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    Tracepoint,
    /// Raw tracepoint: the program gets the tracepoint's arguments (the kernel objects), not its record.
    RawTracepoint,
    /// fentry + fexit (BPF trampoline).
    Fentry,
    /// kprobe + kretprobe.
    Kprobe,
    /// A kernel-function probe that attached neither way.
    Function,
}

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

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum ProbeState {
    Attached,
    Unavailable(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct ProbeStatus {
    pub program: &'static str,
    pub kind: ProbeKind,
    pub target: String,
    pub purpose: &'static str,
    #[serde(flatten)]
    pub state: ProbeState,
}

/// How the optional kernel-function probes attach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KfuncMode {
    /// fentry/fexit, else kprobe/kretprobe.
    #[default]
    Auto,
    /// fentry/fexit only.
    Fentry,
    /// kprobe/kretprobe only.
    Kprobe,
}

/// How FUSE request sends are paired with their ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestPairing {
    /// By request address where the kernel's BTF describes `struct fuse_req`, else by unique.
    #[default]
    Auto,
    /// Classic tracepoints, keyed by (connection, unique) from the records.
    Unique,
    /// Raw tracepoints, keyed by the request's address.
    Pointer,
}

/// Load-time settings.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// Trace only these FUSE connections (and devices); `None` traces every connection.
    pub connections: Option<Vec<u32>>,
    /// Capacity of the in-flight request map.
    pub inflight_max: u32,
    /// Capacity of the (connection, opcode) stats map.
    pub stats_max: u32,
    /// Capacity of the per-file LRU maps (DAX faults, page-cache faults).
    pub files_max: u32,
    /// Enable the kernel's BPF run-time statistics while the probes are loaded (probe self-cost).
    pub bpf_stats: bool,
    /// Try the optional kernel-function probes.
    pub kfuncs: bool,
    /// Which attach methods the kernel-function probes may use.
    pub kfunc_mode: KfuncMode,
    /// How request sends and ends are paired.
    pub request_pairing: RequestPairing,
    /// famfs GET_FMAP opcode on the watched connections (0 = none): its completions become events.
    pub fmap_opcode: u32,
    /// DAX faults at least this slow are reported one by one.
    pub slow_fault: Duration,
    /// Replace a probe's `category:event` (by program name): lets tests and operators point a probe at a
    /// target that does not exist and check that the daemon degrades.
    pub target_overrides: Vec<(String, String)>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            connections: None,
            inflight_max: 16384,
            stats_max: 1024,
            files_max: 8192,
            bpf_stats: true,
            kfuncs: true,
            kfunc_mode: KfuncMode::Auto,
            request_pairing: RequestPairing::Auto,
            fmap_opcode: 0,
            slow_fault: Duration::from_millis(1),
            target_overrides: Vec::new(),
        }
    }
}

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

/// Load-time tracepoint layouts; each falls back to the 6.18 layout with a warning.
struct Layouts {
    fuse: TpOffsets,
    pte: DaxOffsets,
    pmd: DaxOffsets,
    filemap: FilemapOffsets,
}

fn layouts(root: &Path) -> Layouts {
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
        let fail_all = |probes: &mut Probes, reason: String| {
            for spec in TRACEPOINTS {
                let (c, e) = tp_target(cfg, spec);
                probes.status.push(ProbeStatus {
                    program: spec.program,
                    kind: ProbeKind::Tracepoint,
                    target: format!("{c}:{e}"),
                    purpose: spec.purpose,
                    state: ProbeState::Unavailable(reason.clone()),
                });
            }
            for f in kfunc::TARGETS {
                probes.status.push(ProbeStatus {
                    program: f,
                    kind: ProbeKind::Function,
                    target: f.to_string(),
                    purpose: "optional kernel-function probe",
                    state: ProbeState::Unavailable(reason.clone()),
                });
            }
        };

        let root = match tracefs::ensure_mounted() {
            Ok((root, mounted)) => {
                probes.mounted_tracefs = mounted;
                root
            }
            Err(e) => {
                fail_all(&mut probes, format!("{e:#}"));
                return probes;
            }
        };
        let lay = layouts(&root);
        // Request-pointer pairing needs struct fuse_req offsets from the kernel's BTF.
        let req_offsets: Result<ReqOffsets, String> = match cfg.request_pairing {
            RequestPairing::Unique => Err("unique pairing requested".into()),
            _ => btf::Btf::for_struct("fuse_req", "fuse")
                .and_then(|b| btf::fuse_req_offsets(&b))
                .map_err(|e| format!("{e:#}")),
        };
        let req_off = req_offsets.clone().unwrap_or_default();
        let filter_mode = if cfg.connections.is_some() {
            FILTER_WATCHED
        } else {
            FILTER_ALL
        };
        let slow_ns = cfg.slow_fault.as_nanos() as u64;
        let mut loader = EbpfLoader::new();
        loader
            .override_global("TP_OFFSETS", &lay.fuse, true)
            .override_global("DAX_PTE_OFFSETS", &lay.pte, true)
            .override_global("DAX_PMD_OFFSETS", &lay.pmd, true)
            .override_global("FILEMAP_OFFSETS", &lay.filemap, true)
            .override_global("FILTER_MODE", &filter_mode, true)
            .override_global("FMAP_OPCODE", &cfg.fmap_opcode, true)
            .override_global("SLOW_FAULT_NS", &slow_ns, true)
            .override_global("REQ_OFFSETS", &req_off, true)
            .map_max_entries(names::INFLIGHT, cfg.inflight_max.max(1))
            .map_max_entries(names::INFLIGHT_REQ, cfg.inflight_max.max(1))
            .map_max_entries(names::REQ_STATS, cfg.stats_max.max(1))
            .map_max_entries(names::FAULT_STATS, cfg.files_max.max(1))
            .map_max_entries(names::FILEMAP_STATS, cfg.files_max.max(1));
        let mut ebpf = match loader.load(EBPF_OBJECT) {
            Ok(b) => b,
            Err(e) => {
                fail_all(
                    &mut probes,
                    format!("loading the eBPF object failed: {}", errchain(&e)),
                );
                return probes;
            }
        };

        if let Some(conns) = &cfg.connections {
            for c in conns {
                if let Err(e) = watch(&mut ebpf, *c) {
                    log::warn!("cannot watch FUSE connection {c}: {e:#}");
                }
            }
        }
        if cfg.bpf_stats {
            match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
                Ok(fd) => probes._stats_fd = Some(fd),
                Err(e) => log::warn!("BPF run-time statistics unavailable: {e}"),
            }
        }

        // Pointer pairing when asked for, or (auto) when the offsets resolved and both raw programs load.
        let pointer_err = match (&req_offsets, cfg.request_pairing) {
            (_, RequestPairing::Unique) => Some("unique pairing requested".to_string()),
            (Err(e), _) => Some(format!("struct fuse_req offsets: {e}")),
            (Ok(_), _) => load_raw_pair(&mut ebpf).err(),
        };
        probes.pairing = match (&pointer_err, cfg.request_pairing) {
            (None, _) | (Some(_), RequestPairing::Pointer) => RequestPairing::Pointer,
            (Some(e), _) => {
                if cfg.request_pairing == RequestPairing::Auto {
                    log::info!("FUSE requests paired by unique (request-pointer pairing: {e})");
                }
                RequestPairing::Unique
            }
        };
        for spec in TRACEPOINTS {
            let (category, event) = tp_target(cfg, spec);
            let raw =
                raw_variant(spec.program).filter(|_| probes.pairing == RequestPairing::Pointer);
            let (kind, state) = match (raw, &pointer_err) {
                (Some(_), Some(e)) => (
                    ProbeKind::RawTracepoint,
                    ProbeState::Unavailable(format!("request-pointer pairing: {e}")),
                ),
                (Some(raw), None) => (
                    ProbeKind::RawTracepoint,
                    attach_raw_tracepoint(&mut ebpf, raw, &root, &category, &event),
                ),
                (None, _) => (
                    ProbeKind::Tracepoint,
                    attach_tracepoint(&mut ebpf, spec.program, &root, &category, &event),
                ),
            };
            probes.push(
                spec.program,
                kind,
                format!("{category}:{event}"),
                spec.purpose,
                state,
            );
        }
        if cfg.kfuncs {
            let present = kallsyms_present(&kfunc::TARGETS);
            let btf = Btf::from_sys_fs().map_err(|e| errchain(&e));
            for f in kfunc::TARGETS {
                let (kind, state) = attach_kfunc(&mut ebpf, f, &present, &btf, cfg.kfunc_mode);
                probes.push(
                    f,
                    kind,
                    f.to_string(),
                    "optional kernel-function probe: calls and latency",
                    state,
                );
            }
        }
        probes.ebpf = Some(ebpf);
        probes
    }

    fn push(
        &mut self,
        program: &'static str,
        kind: ProbeKind,
        target: String,
        purpose: &'static str,
        state: ProbeState,
    ) {
        match &state {
            ProbeState::Attached => log::info!("probe {program} attached ({kind:?} {target})"),
            ProbeState::Unavailable(r) => {
                log::info!("probe {program} on {target} unavailable: {r}")
            }
        }
        self.status.push(ProbeStatus {
            program,
            kind,
            target,
            purpose,
            state,
        });
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

    /// Add a FUSE connection (or device) to the watch set (effective when loaded with a filter).
    pub fn watch_connection(&mut self, connection: u32) -> anyhow::Result<()> {
        let ebpf = self
            .ebpf
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("probes are not loaded"))?;
        watch(ebpf, connection)
    }

    /// Forget everything recorded for `connection`: connection numbers are reused by later mounts, so a
    /// new mount epoch starts from zero (Prometheus sees an ordinary counter reset).
    pub fn reset_connection(&mut self, connection: u32) {
        let Some(ebpf) = self.ebpf.as_mut() else {
            return;
        };
        if let Some(Ok(mut m)) = ebpf
            .map_mut(names::REQ_STATS)
            .map(PerCpuHashMap::<_, ReqKey, ReqStats>::try_from)
        {
            let keys: Vec<ReqKey> = m
                .keys()
                .filter_map(Result::ok)
                .filter(|k| k.connection == connection)
                .collect();
            for k in keys {
                let _ = m.remove(&k);
            }
        }
        if let Some(Ok(mut m)) = ebpf
            .map_mut(names::INFLIGHT)
            .map(BpfHashMap::<_, InflightKey, Inflight>::try_from)
        {
            let keys: Vec<InflightKey> = m
                .keys()
                .filter_map(Result::ok)
                .filter(|k| k.connection == connection)
                .collect();
            for k in keys {
                let _ = m.remove(&k);
            }
        }
        if let Some(Ok(mut m)) = ebpf
            .map_mut(names::FAULT_STATS)
            .map(BpfHashMap::<_, FaultKey, FaultStats>::try_from)
        {
            let keys: Vec<FaultKey> = m
                .keys()
                .filter_map(Result::ok)
                .filter(|k| k.dev == connection)
                .collect();
            for k in keys {
                let _ = m.remove(&k);
            }
        }
        if let Some(Ok(mut m)) = ebpf
            .map_mut(names::FILEMAP_STATS)
            .map(BpfHashMap::<_, FileKey, u64>::try_from)
        {
            let keys: Vec<FileKey> = m
                .keys()
                .filter_map(Result::ok)
                .filter(|k| k.dev == connection)
                .collect();
            for k in keys {
                let _ = m.remove(&k);
            }
        }
    }

    /// Remove in-flight entries older than `max_age` (their end event was lost, e.g. an aborted
    /// connection) so the bounded map never fills with garbage. Returns how many were removed.
    pub fn expire_inflight(&mut self, max_age: Duration) -> usize {
        let Some(ebpf) = self.ebpf.as_mut() else {
            return 0;
        };
        let Some(map) = ebpf.map_mut(names::INFLIGHT) else {
            return 0;
        };
        let Ok(mut m) = BpfHashMap::<_, InflightKey, Inflight>::try_from(map) else {
            return 0;
        };
        let now = crate::util::monotonic_ns();
        let max = max_age.as_nanos() as u64;
        let stale: Vec<InflightKey> = m
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| now.saturating_sub(v.start_ns) > max)
            .map(|(k, _)| k)
            .collect();
        let mut n = 0;
        for k in stale {
            if m.remove(&k).is_ok() {
                n += 1;
            }
        }
        self.expired_inflight += n as u64;
        n
    }

    /// Take the per-event ring buffer (once).
    pub fn take_events(&mut self) -> Option<super::events::EventReader> {
        let map = self.ebpf.as_mut()?.take_map(names::EVENTS)?;
        match aya::maps::RingBuf::try_from(map) {
            Ok(rb) => Some(super::events::EventReader::new(rb)),
            Err(e) => {
                log::warn!("EVENTS ring buffer unusable: {e}");
                None
            }
        }
    }
}

fn watch(ebpf: &mut Ebpf, connection: u32) -> anyhow::Result<()> {
    let map = ebpf
        .map_mut(names::WATCH_CONN)
        .ok_or_else(|| anyhow::anyhow!("WATCH_CONN map missing"))?;
    let mut m = BpfHashMap::<_, u32, u32>::try_from(map)?;
    m.insert(connection, 1, 0)?;
    Ok(())
}

/// The raw-tracepoint program of a request probe (`None` for the other tracepoints).
fn raw_variant(program: &str) -> Option<&'static str> {
    match program {
        names::PROG_FUSE_REQUEST_SEND => Some(names::PROG_FUSE_REQUEST_SEND_RAW),
        names::PROG_FUSE_REQUEST_END => Some(names::PROG_FUSE_REQUEST_END_RAW),
        _ => None,
    }
}

/// Load (verify) both raw request programs; attaching is per probe afterwards.
fn load_raw_pair(ebpf: &mut Ebpf) -> Result<(), String> {
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

/// The program `program`, if the tracepoint `category:event` exists on this kernel; else why not.
fn tracepoint_program<'e>(
    ebpf: &'e mut Ebpf,
    program: &str,
    root: &Path,
    category: &str,
    event: &str,
) -> Result<&'e mut aya::programs::Program, ProbeState> {
    if !tracefs::event_exists(root, category, event) {
        return Err(ProbeState::Unavailable(format!(
            "tracepoint {category}:{event} does not exist on this kernel"
        )));
    }
    ebpf.program_mut(program).ok_or_else(|| {
        ProbeState::Unavailable(format!("program {program} missing from the eBPF object"))
    })
}

fn attach_raw_tracepoint(
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
    let tp: &mut RawTracePoint = match prog.try_into() {
        Ok(tp) => tp,
        Err(e) => return ProbeState::Unavailable(errchain(&e)),
    };
    match tp.attach(event) {
        Ok(_) => ProbeState::Attached,
        Err(e) => ProbeState::Unavailable(format!("attach: {}", errchain(&e))),
    }
}

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

/// Which of `names` are functions of the running kernel (vmlinux or a loaded module).
fn kallsyms_present(names: &[&str]) -> HashSet<String> {
    let mut found = HashSet::new();
    let Ok(text) = std::fs::read_to_string("/proc/kallsyms") else {
        return found;
    };
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(_), Some(kind), Some(name)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if matches!(kind, "t" | "T") && names.contains(&name) {
            found.insert(name.to_string());
        }
    }
    found
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
    let entry = format!("fentry_{func}");
    let exit = format!("fexit_{func}");
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
    let entry = format!("kprobe_{func}");
    for (prog, what) in [
        (entry.clone(), "kprobe"),
        (format!("kretprobe_{func}"), "kretprobe"),
    ] {
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
