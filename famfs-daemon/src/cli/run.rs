//! `famfs-daemon run`: its arguments ([`RunArgs`]), turned into the daemon's plain
//! [`DaemonConfig`] and handed to [`crate::daemon::run`], which owns what runs and in which order.
//!
//! Owns argument parsing only; must not start anything itself.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Result;
use clap::Args;

use crate::{
    daemon::{self, DaemonConfig, ServeTarget},
    fuse::DialectConfig,
    http::Limits,
    metrics::FileLabels,
    util::duration::parse_duration,
};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Address for /metrics and the HTTP API.
    #[arg(long, default_value = super::DEFAULT_LISTEN, value_parser = super::parse_listen)]
    pub listen: SocketAddr,
    /// Do not load eBPF probes (metrics then come from the server alone).
    #[arg(long)]
    pub no_probes: bool,
    /// Also trace these FUSE connection numbers (repeatable). Default: every FUSE connection, or only
    /// our own mount when serving one.
    #[arg(long = "connection")]
    pub connections: Vec<u32>,
    /// Point a probe at another tracepoint, PROGRAM=CATEGORY:EVENT (testing degraded kernels).
    #[arg(long = "probe-target", value_parser = super::parse_override)]
    pub probe_targets: Vec<(String, String)>,
    /// Capacity of the kernel in-flight request map (rounded up to a power of two).
    #[arg(long, default_value_t = 16384)]
    pub inflight_max: u32,
    /// Maximum simultaneous HTTP connections.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub http_max_connections: u64,
    /// Maximum simultaneous HTTP connections from one client (IPv4 address or IPv6 /64).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub http_max_connections_per_client: u64,
    /// How long an HTTP client may take to send a request's headers (and the TLS handshake), and stay
    /// idle between requests (e.g. 5s).
    #[arg(long, default_value = "5s", value_parser = parse_positive_duration)]
    pub http_header_timeout: Duration,
    /// TLS and basic auth for /metrics and the API: a Prometheus exporter-toolkit web config (YAML:
    /// tls_server_config, basic_auth_users, http_server_config).
    #[arg(long, value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// How per-file metric series name their file: path, hash (a per-filesystem hash of the path) or
    /// none (no per-file series; the JSON API still shows paths).
    #[arg(long, default_value = "path", value_parser = parse_file_labels)]
    pub file_labels: FileLabels,
    /// famfs image file or device to serve (needs --mountpoint).
    #[arg(long, requires = "mountpoint", value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// Where to mount it (needs --image). A stale mount left there by a killed daemon is cleared.
    #[arg(long, requires = "image", value_name = "DIR")]
    pub mountpoint: Option<PathBuf>,
    /// famfs FUSE dialect: off, rfc-v2, v3 or auto (famfs mode also needs a daxdev).
    #[arg(long, default_value = "auto", value_parser = parse_dialect)]
    pub dialect: DialectConfig,
    /// devdax path answered to GET_DAXDEV (default: the superblock's dd_daxdev).
    #[arg(long, value_name = "PATH")]
    pub daxdev: Option<PathBuf>,
    /// Mount read-only and refuse writes.
    #[arg(long)]
    pub read_only: bool,
    /// Let other users access the mount (allow_other).
    #[arg(long)]
    pub allow_other: bool,
    /// FUSE worker threads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub workers: u64,
    /// Workers beyond the first wait off /dev/fuse until a worker sees requests queued behind the
    /// one it took (default `false`: every worker blocks reading /dev/fuse, as libfuse's do). A
    /// streaming workload then runs on one server thread, which leaves the reader its CPU: one
    /// sequential reader ×1.2 faster, but one-at-a-time small requests (random 4 KiB reads) about
    /// ×0.6 and two readers ×0.9 against all-blocking workers (README, Benchmarks).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub on_demand_workers: bool,
    /// Kernel read-ahead for files of the mount (e.g. 1M, 512K; a multiple of 4K up to 256M; 0:
    /// leave the kernel's default, 128K). Set on the mount's backing device once INIT is answered
    /// and announced as INIT's max_readahead. The default, 512K: READs of 512 KiB, which a spliced
    /// reply carries through a pipe of the unprivileged pipe-max-size (1 MiB READs need a bigger
    /// one); 512K beat 128K and 1M in the same run (README, Benchmarks).
    #[arg(long, default_value = DEFAULT_READ_AHEAD, value_name = "SIZE", value_parser = parse_read_ahead)]
    pub read_ahead: u32,
    /// Answer READs by splicing the image's bytes into /dev/fuse through a pipe per worker instead
    /// of copying them through a buffer (`--splice-reads false`: always copy). A 1 MiB reply needs
    /// a pipe above pipe-max-size (1 MiB), which takes CAP_SYS_RESOURCE at start-up; replies that
    /// do not fit are copied.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub splice_reads: bool,
    /// Per-file metric series kept before the least recently active files fold into __other__.
    #[arg(long, default_value_t = 500)]
    pub max_file_series: usize,
    /// How often to look for log entries appended by others (e.g. 200ms, 1s).
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// How long the kernel may cache names and attributes (e.g. 30s, 0).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub attr_timeout: Duration,
    /// Keep every capability and install no seccomp filter (debugging only; by default the daemon
    /// drops privileges once it is serving).
    #[arg(long)]
    pub no_sandbox: bool,
}

/// `--read-ahead`'s default (see the Benchmarks section of the README for why).
pub const DEFAULT_READ_AHEAD: &str = "512K";
/// The largest `--read-ahead` accepted.
const MAX_READ_AHEAD: u64 = 256 << 20;

/// Parse `--read-ahead`: a size (`parse_size`) that is 0 or a multiple of 4 KiB up to 256 MiB; bytes.
pub fn parse_read_ahead(s: &str) -> Result<u32, String> {
    let v = super::image_cmd::parse_size(s).map_err(|e| format!("--read-ahead {e}"))?;
    if v % 4096 != 0 {
        return Err(format!(
            "--read-ahead {s:?}: must be a multiple of 4K (the kernel counts read-ahead in pages)"
        ));
    }
    if v > MAX_READ_AHEAD {
        return Err(format!("--read-ahead {s:?}: at most 256M"));
    }
    u32::try_from(v).map_err(|_| format!("--read-ahead {s:?}: at most 256M"))
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: must be more than 0")),
        d => Ok(d),
    }
}

fn parse_file_labels(s: &str) -> Result<FileLabels, String> {
    s.parse::<FileLabels>()
        .map_err(|e| format!("--file-labels {e}"))
}

fn parse_dialect(s: &str) -> Result<DialectConfig, String> {
    s.parse::<DialectConfig>()
        .map_err(|e| format!("--dialect: {e}"))
}

impl RunArgs {
    /// The daemon's configuration.
    pub fn config(&self) -> DaemonConfig {
        DaemonConfig {
            listen: self.listen,
            probes: !self.no_probes,
            connections: self.connections.clone(),
            probe_targets: self.probe_targets.clone(),
            inflight_max: self.inflight_max,
            http_limits: Limits {
                max_connections: usize::try_from(self.http_max_connections).unwrap_or(usize::MAX),
                max_connections_per_client: usize::try_from(self.http_max_connections_per_client)
                    .unwrap_or(usize::MAX),
                header_read_timeout: self.http_header_timeout,
                ..Limits::default()
            },
            web_config_file: self.web_config_file.clone(),
            file_labels: self.file_labels,
            serve: match (&self.image, &self.mountpoint) {
                (Some(image), Some(mountpoint)) => Some(ServeTarget {
                    image: image.clone(),
                    mountpoint: mountpoint.clone(),
                }),
                // clap makes --image and --mountpoint require each other.
                _ => None,
            },
            dialect: self.dialect,
            daxdev: self.daxdev.clone(),
            read_only: self.read_only,
            allow_other: self.allow_other,
            workers: usize::try_from(self.workers).unwrap_or(usize::MAX),
            on_demand_workers: self.on_demand_workers,
            read_ahead: self.read_ahead,
            splice_reads: self.splice_reads,
            max_file_series: self.max_file_series,
            poll_interval: self.poll_interval,
            attr_timeout: self.attr_timeout,
            sandbox: !self.no_sandbox,
        }
    }
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    daemon::run(&args.config())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_sizes_parse_to_bytes() {
        assert_eq!(parse_read_ahead("0"), Ok(0));
        assert_eq!(parse_read_ahead("4K"), Ok(4096));
        assert_eq!(parse_read_ahead("4M"), Ok(4 << 20));
        assert_eq!(parse_read_ahead("512KiB"), Ok(512 << 10));
        assert_eq!(parse_read_ahead("256M"), Ok(256 << 20));
        assert_eq!(parse_read_ahead(DEFAULT_READ_AHEAD), Ok(512 << 10));
    }

    #[test]
    fn bad_read_ahead_values_say_why() {
        assert_eq!(
            parse_read_ahead("5000"),
            Err(
                "--read-ahead \"5000\": must be a multiple of 4K (the kernel counts read-ahead in \
                 pages)"
                    .to_string()
            )
        );
        assert_eq!(
            parse_read_ahead("257M"),
            Err("--read-ahead \"257M\": at most 256M".to_string())
        );
        assert_eq!(
            parse_read_ahead("lots"),
            Err(
                "--read-ahead \"lots\": expected a size such as 4096, 0x1000, 512K, 8M, 4G"
                    .to_string()
            )
        );
    }
}
