//! Kernel probes: loading the embedded eBPF object, attaching its programs where the running kernel
//! allows, and reading the kernel-side aggregates back as plain snapshots.
//!
//! Owns: tracefs discovery (`tracefs`), the probe table and attach logic (`loader`), map reads
//! (`snapshot`), the per-event ring buffer (`events`), kernel BTF offsets for the request-pointer
//! probes (`btf`). Must not touch: metrics encoding (that is `metrics`), FUSE serving, or any tracing state
//! it did not create (it only mounts tracefs where none is mounted, and detaches only its own links).

pub mod btf;
pub mod events;
pub mod loader;
pub mod snapshot;
pub mod tracefs;

pub use events::EventReader;
pub use loader::{
    KfuncMode, ProbeConfig, ProbeKind, ProbeState, ProbeStatus, Probes, RequestPairing,
};
pub use snapshot::{FaultRow, FnRow, ProbeSnapshot, ProgramCost, RequestRow};

/// The eBPF object built by build.rs from `famfs-ebpf`.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/famfs-ebpf"));
