//! The probe table and attach logic. Every program is attached only where its target exists; a probe
//! that cannot attach is recorded with the kernel's reason and the daemon goes on without it.

use std::{os::fd::OwnedFd, path::PathBuf, time::Duration};

use aya::{Ebpf, EbpfLoader, maps::HashMap as BpfHashMap, programs::TracePoint};
use famfs_common::{
    fuse_request::{FILTER_ALL, FILTER_WATCHED, Inflight, InflightKey, TpOffsets},
    names,
};
use serde::Serialize;

use super::{EBPF_OBJECT, tracefs};

/// How a probe hooks into the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    Tracepoint,
}

/// One row of the probe table.
#[derive(Clone, Copy, Debug)]
pub struct ProbeSpec {
    /// Program name in the eBPF object.
    pub program: &'static str,
    pub kind: ProbeKind,
    pub category: &'static str,
    pub event: &'static str,
    /// What the probe is for, shown by `famfs-trace probes`.
    pub purpose: &'static str,
}

/// Every probe the daemon knows, in attach order.
pub const PROBES: &[ProbeSpec] = &[
    ProbeSpec {
        program: names::PROG_FUSE_REQUEST_SEND,
        kind: ProbeKind::Tracepoint,
        category: "fuse",
        event: "fuse_request_send",
        purpose: "FUSE request queued: per-opcode counts, latency start",
    },
    ProbeSpec {
        program: names::PROG_FUSE_REQUEST_END,
        kind: ProbeKind::Tracepoint,
        category: "fuse",
        event: "fuse_request_end",
        purpose: "FUSE reply written: latency, errors, reply size",
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

/// Load-time settings.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// Trace only these FUSE connections; `None` traces every connection.
    pub connections: Option<Vec<u32>>,
    /// Capacity of the in-flight request map.
    pub inflight_max: u32,
    /// Capacity of the (connection, opcode) stats map.
    pub stats_max: u32,
    /// Enable the kernel's BPF run-time statistics while the probes are loaded (probe self-cost).
    pub bpf_stats: bool,
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
            bpf_stats: true,
            target_overrides: Vec::new(),
        }
    }
}

/// The loaded eBPF object with its attach results.
pub struct Probes {
    pub(crate) ebpf: Option<Ebpf>,
    status: Vec<ProbeStatus>,
    tracefs: Option<PathBuf>,
    mounted_tracefs: bool,
    _stats_fd: Option<OwnedFd>,
    /// In-flight entries removed by `expire_inflight` (requests whose end was never seen).
    pub(crate) expired_inflight: u64,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

fn errchain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
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

impl Probes {
    /// Load the object and attach every probe the kernel offers. Never fails as a whole: what cannot be
    /// loaded or attached is reported in [`Probes::status`].
    pub fn load(cfg: &ProbeConfig) -> Probes {
        let mut probes = Probes {
            ebpf: None,
            status: Vec::new(),
            tracefs: None,
            mounted_tracefs: false,
            _stats_fd: None,
            expired_inflight: 0,
        };
        let target_of = |spec: &ProbeSpec| -> (String, String) {
            for (prog, target) in &cfg.target_overrides {
                if prog == spec.program {
                    if let Some((c, e)) = target.split_once(':') {
                        return (c.to_string(), e.to_string());
                    }
                    return (String::new(), target.clone());
                }
            }
            (spec.category.to_string(), spec.event.to_string())
        };
        let fail_all = |probes: &mut Probes, reason: String| {
            for spec in PROBES {
                let (c, e) = target_of(spec);
                probes.status.push(ProbeStatus {
                    program: spec.program,
                    kind: spec.kind,
                    target: format!("{c}:{e}"),
                    purpose: spec.purpose,
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
        probes.tracefs = Some(root.clone());

        let offsets = match tracefs::fuse_request_offsets(&root) {
            Ok(o) => o,
            Err(e) => {
                log::warn!("fuse tracepoint layout unreadable ({e:#}); using the 6.18 layout");
                TpOffsets::LINUX_6_18
            }
        };
        let filter_mode = if cfg.connections.is_some() {
            FILTER_WATCHED
        } else {
            FILTER_ALL
        };
        let mut loader = EbpfLoader::new();
        loader
            .override_global("TP_OFFSETS", &offsets, true)
            .override_global("FILTER_MODE", &filter_mode, true)
            .map_max_entries(names::INFLIGHT, cfg.inflight_max.max(1))
            .map_max_entries(names::REQ_STATS, cfg.stats_max.max(1));
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
            match ebpf
                .map_mut(names::WATCH_CONN)
                .map(BpfHashMap::<_, u32, u32>::try_from)
            {
                Some(Ok(mut m)) => {
                    for c in conns {
                        if let Err(e) = m.insert(*c, 1, 0) {
                            log::warn!("cannot watch FUSE connection {c}: {e}");
                        }
                    }
                }
                Some(Err(e)) => log::warn!("WATCH_CONN map unusable: {e}"),
                None => log::warn!("WATCH_CONN map missing from the eBPF object"),
            }
        }

        if cfg.bpf_stats {
            match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
                Ok(fd) => probes._stats_fd = Some(fd),
                Err(e) => log::warn!("BPF run-time statistics unavailable: {e}"),
            }
        }

        for spec in PROBES {
            let (category, event) = target_of(spec);
            let target = format!("{category}:{event}");
            let state = attach_one(&mut ebpf, spec, &root, &category, &event);
            match &state {
                ProbeState::Attached => log::info!("probe {} attached to {target}", spec.program),
                ProbeState::Unavailable(r) => {
                    log::warn!("probe {} on {target} unavailable: {r}", spec.program)
                }
            }
            probes.status.push(ProbeStatus {
                program: spec.program,
                kind: spec.kind,
                target,
                purpose: spec.purpose,
                state,
            });
        }
        probes.ebpf = Some(ebpf);
        probes
    }

    pub fn status(&self) -> &[ProbeStatus] {
        &self.status
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

    /// Add a FUSE connection to the watch set (only meaningful when loaded with a connection filter).
    pub fn watch_connection(&mut self, connection: u32) -> anyhow::Result<()> {
        let ebpf = self
            .ebpf
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("probes are not loaded"))?;
        let map = ebpf
            .map_mut(names::WATCH_CONN)
            .ok_or_else(|| anyhow::anyhow!("WATCH_CONN map missing"))?;
        let mut m = BpfHashMap::<_, u32, u32>::try_from(map)?;
        m.insert(connection, 1, 0)?;
        Ok(())
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
}

fn attach_one(
    ebpf: &mut Ebpf,
    spec: &ProbeSpec,
    root: &std::path::Path,
    category: &str,
    event: &str,
) -> ProbeState {
    match spec.kind {
        ProbeKind::Tracepoint => {
            if !tracefs::event_exists(root, category, event) {
                return ProbeState::Unavailable(format!(
                    "tracepoint {category}:{event} does not exist on this kernel"
                ));
            }
            let Some(prog) = ebpf.program_mut(spec.program) else {
                return ProbeState::Unavailable(format!(
                    "program {} missing from the eBPF object",
                    spec.program
                ));
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
    }
}
