//! Load-time settings of the probes: [`ProbeConfig`] and its choices ([`KfuncMode`], [`RequestPairing`]).
//! Plain data with defaults; must not touch the kernel.

use std::time::Duration;

use serde::{Serialize, Serializer};

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

impl KfuncMode {
    /// `auto`, `fentry` or `kprobe`.
    pub const fn as_str(self) -> &'static str {
        match self {
            KfuncMode::Auto => "auto",
            KfuncMode::Fentry => "fentry",
            KfuncMode::Kprobe => "kprobe",
        }
    }
}

/// How FUSE request sends are paired with their ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RequestPairing {
    /// By request address where the kernel's BTF describes `struct fuse_req`, else by unique.
    #[default]
    Auto,
    /// Classic tracepoints, keyed by (connection, unique) from the records.
    Unique,
    /// Raw tracepoints, keyed by the request's address.
    Pointer,
}

impl RequestPairing {
    /// `auto`, `unique` or `pointer` (also the JSON spelling).
    pub const fn as_str(self) -> &'static str {
        match self {
            RequestPairing::Auto => "auto",
            RequestPairing::Unique => "unique",
            RequestPairing::Pointer => "pointer",
        }
    }
}

impl Serialize for RequestPairing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
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
    /// With request-pointer pairing, try the BTF-tracepoint (`tp_btf`) programs before the raw ones.
    pub btf_tracepoints: bool,
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
            btf_tracepoints: true,
            fmap_opcode: 0,
            slow_fault: Duration::from_millis(1),
            target_overrides: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_their_debug_spelling() {
        // The selftest check names (`kfuncs-<mode>`, `fuse-<pairing>`) were built from the Debug text.
        for m in [KfuncMode::Auto, KfuncMode::Fentry, KfuncMode::Kprobe] {
            assert_eq!(m.as_str(), format!("{m:?}").to_lowercase());
        }
        for p in [
            RequestPairing::Auto,
            RequestPairing::Unique,
            RequestPairing::Pointer,
        ] {
            assert_eq!(p.as_str(), format!("{p:?}").to_lowercase());
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
    }
}
