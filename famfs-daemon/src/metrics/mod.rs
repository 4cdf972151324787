//! Prometheus metrics: one `famfs_`-prefixed registry, encoded as OpenMetrics or Prometheus text.
//!
//! Owns help texts, label sets and the rebuilding of kernel log2 slots into cumulative histogram
//! buckets, the bounded per-file families (`files`) and how they name files ([`FileLabels`]:
//! `--file-labels path|hash|none`), and the FUSE server's own counters (`server`).
//! Metric names come from `famfs_common::metric_names` (`.base` here). Kernel aggregates are read at
//! scrape time through [`crate::probes::Probes::snapshot`] (no per-event user-space work); the join's
//! per-file table is only read ([`SharedFileState::read`]): a scrape changes nothing. Must not do any
//! I/O besides that read, and must not hold the probe lock longer than the snapshot.

mod files;
mod kernel;
mod server;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};

use famfs_common::metric_names::BUILD_INFO;

use crate::{join::SharedFileState, probes::Probes};

pub use kernel::{KernelCollector, opcode_label};
pub use server::ServerCollector;

/// How the per-file families name their file (`--file-labels`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileLabels {
    /// `path="/dir/file"` (the default).
    #[default]
    Path,
    /// `path="<16 hex digits>"`: [`path_hash`] of the path, stable across restarts, different per
    /// filesystem; `__other__` stays as it is.
    Hash,
    /// No per-file families at all; the aggregate families (requests, faults, join health) remain.
    None,
}

impl std::str::FromStr for FileLabels {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "path" => Ok(FileLabels::Path),
            "hash" => Ok(FileLabels::Hash),
            "none" => Ok(FileLabels::None),
            _ => Err(format!("{s:?}: expected path, hash or none")),
        }
    }
}

/// The `path` label of a file under `--file-labels hash`: the first 16 hex digits of
/// SHA-256(`fs_uuid` NUL `path`). Salted by the filesystem's UUID, so one name does not give the same
/// label on two filesystems; whoever can guess a path and read `fs_uuid` can still confirm the guess.
pub fn path_hash(fs_uuid: &str, path: &str) -> String {
    let mut buf = Vec::with_capacity(fs_uuid.len() + 1 + path.len());
    buf.extend_from_slice(fs_uuid.as_bytes());
    buf.push(0);
    buf.extend_from_slice(path.as_bytes());
    let d = ring::digest::digest(&ring::digest::SHA256, &buf);
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Wire format of a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    PrometheusText,
}

impl Format {
    /// Pick the format from an HTTP `Accept` header (OpenMetrics only when asked for).
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::PrometheusText,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    kernel: String,
}

/// The daemon's metrics.
pub struct Metrics {
    registry: Registry,
    /// Length of the last scrape's text: the next one is encoded into a buffer of about that size,
    /// allocated once instead of grown by doubling (a 100k-file scrape is megabytes).
    last_len: AtomicUsize,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new(probes: Option<Arc<Mutex<Probes>>>, files: Option<SharedFileState>) -> Metrics {
        Metrics::with_file_labels(probes, files, FileLabels::Path)
    }

    /// [`Metrics::new`] with the per-file families labelled as `labels` says.
    pub fn with_file_labels(
        probes: Option<Arc<Mutex<Probes>>>,
        files: Option<SharedFileState>,
        labels: FileLabels,
    ) -> Metrics {
        let mut registry = Registry::with_prefix("famfs");
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
                kernel: kernel_release(),
            })
            .set(1);
        registry.register(
            BUILD_INFO.base,
            "Build and kernel of the running daemon (value 1)",
            build,
        );
        registry.register_collector(Box::new(KernelCollector::new(probes, files, labels)));
        Metrics {
            registry,
            last_len: AtomicUsize::new(0),
        }
    }

    /// Add the FUSE server's own counters (`famfs_server_*`); `famfs_ops` = the negotiated
    /// `(GET_FMAP, GET_DAXDEV)` opcodes, if famfs mode is on.
    pub fn add_server(
        &mut self,
        stats: Arc<crate::fuse::SessionStats>,
        famfs_ops: Option<(u32, u32)>,
    ) {
        self.registry
            .register_collector(Box::new(ServerCollector::new(stats, famfs_ops)));
    }

    /// Encode every metric in `format`.
    pub fn render(&self, format: Format) -> Result<String, std::fmt::Error> {
        let last = self.last_len.load(Ordering::Relaxed);
        let mut out = String::with_capacity((last + last / 16).max(16 * 1024));
        match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)?
            }
            Format::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?
            }
        }
        self.last_len.store(out.len(), Ordering::Relaxed);
        Ok(out)
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests;
