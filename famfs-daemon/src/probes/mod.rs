//! Kernel probes: loading the embedded eBPF object, attaching its programs where the running kernel
//! allows, and reading the kernel-side aggregates back as plain snapshots.
//!
//! Owns: tracefs discovery (`tracefs`), load-time settings (`config`), the probe table's rows (`status`),
//! the load sequence (`loader`), attaching per program type (`attach`), map maintenance (`maps`), map
//! reads (`snapshot`), the per-event ring buffer (`events`), kernel BTF offsets for the request-pointer
//! probes (`btf`), and the probes' self-test against real kernel activity (`selftest`, behind
//! `famfs-trace selftest`). Must not touch: metrics encoding (that is `metrics`), FUSE serving, or any
//! tracing state it did not create (it only mounts tracefs where none is mounted, and detaches only its
//! own links).

pub mod attach;
pub mod btf;
pub mod config;
pub mod events;
pub mod loader;
pub mod maps;
pub mod selftest;
pub mod snapshot;
pub mod status;
pub mod tracefs;

pub use config::{KfuncMode, ProbeConfig, RequestPairing};
pub use events::EventReader;
pub use loader::Probes;
pub use snapshot::{FaultRow, FnRow, ProbeSnapshot, ProgramCost, RequestRow};
pub use status::{ProbeKind, ProbeState, ProbeStatus, render_table};

/// The eBPF object built by build.rs from `famfs-ebpf`.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/famfs-ebpf"));
