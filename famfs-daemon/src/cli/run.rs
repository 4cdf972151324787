//! `famfs-daemon run`: the foreground daemon. Loads probes, serves HTTP, stops cleanly on SIGINT/SIGTERM.
//!
//! Prints one line `famfs-daemon: ready listen=ADDR ...` on stdout once everything is serving, so
//! scripts and tests can wait for readiness without sleeping.

use std::{
    io::Write,
    net::SocketAddr,
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Result;
use clap::Args;

use crate::{
    http::{self, Limits, Views},
    join::FileQuery,
    metrics::{FileState, Format, Metrics},
    probes::{ProbeConfig, Probes},
};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Address for /metrics and the HTTP API.
    #[arg(long, default_value = super::DEFAULT_LISTEN, value_parser = super::parse_listen)]
    pub listen: SocketAddr,
    /// Do not load eBPF probes (metrics then come from the server alone).
    #[arg(long)]
    pub no_probes: bool,
    /// Trace only these FUSE connection numbers (repeatable). Default: every FUSE connection.
    #[arg(long = "connection")]
    pub connections: Vec<u32>,
    /// Point a probe at another tracepoint, PROGRAM=CATEGORY:EVENT (testing degraded kernels).
    #[arg(long = "probe-target", value_parser = super::parse_override)]
    pub probe_targets: Vec<(String, String)>,
    /// Capacity of the kernel in-flight request map.
    #[arg(long, default_value_t = 16384)]
    pub inflight_max: u32,
    /// Maximum simultaneous HTTP connections.
    #[arg(long, default_value_t = 64)]
    pub http_max_connections: usize,
}

struct DaemonViews {
    metrics: Metrics,
    probes: Option<Arc<Mutex<Probes>>>,
    files: Option<Arc<Mutex<FileState>>>,
}

impl Views for DaemonViews {
    fn metrics(&self, format: Format) -> Result<String, String> {
        self.metrics
            .render(format)
            .map_err(|e| format!("encoding metrics failed: {e}"))
    }

    fn probes_json(&self) -> String {
        let status = match &self.probes {
            Some(p) => p.lock().map(|p| p.status().to_vec()).unwrap_or_default(),
            None => Vec::new(),
        };
        serde_json::to_string(&status).unwrap_or_else(|_| "[]".into())
    }

    fn files_json(&self, query: Option<&str>) -> Result<String, String> {
        let q = FileQuery::parse(query)?;
        let Some(files) = &self.files else {
            return Ok("[]".into());
        };
        let views = {
            let st = files
                .lock()
                .map_err(|_| "file table unavailable".to_string())?;
            crate::join::query(st.join.files(), &q)
        };
        serde_json::to_string(&views).map_err(|e| format!("encoding files: {e}"))
    }

    fn unhealthy(&self) -> Option<String> {
        None
    }
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let probes = if args.no_probes {
        None
    } else {
        let cfg = ProbeConfig {
            connections: (!args.connections.is_empty()).then(|| args.connections.clone()),
            inflight_max: args.inflight_max,
            target_overrides: args.probe_targets.clone(),
            ..Default::default()
        };
        let p = Probes::load(&cfg);
        eprint!("{}", super::probes_cmd::render_table(p.status()));
        Some(Arc::new(Mutex::new(p)))
    };
    let files: Option<Arc<Mutex<FileState>>> = None;
    let views = Arc::new(DaemonViews {
        metrics: Metrics::new(probes.clone(), files.clone()),
        probes: probes.clone(),
        files,
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("famfs-http")
        .build()?;
    let sweeper_probes = probes.clone();
    rt.block_on(async move {
        let listener = http::bind(args.listen).await?;
        let local = listener.local_addr()?;
        let limits = Limits {
            max_connections: args.http_max_connections,
            ..Default::default()
        };
        let server = tokio::spawn(http::serve(listener, views, limits));
        if let Some(p) = sweeper_probes {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(10));
                loop {
                    tick.tick().await;
                    if let Ok(mut p) = p.lock() {
                        p.expire_inflight(Duration::from_secs(60));
                    }
                }
            });
        }
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "famfs-daemon: ready listen={local}")?;
            out.flush()?;
        }
        wait_for_stop().await?;
        eprintln!("famfs-daemon: stopping");
        server.abort();
        Ok::<_, anyhow::Error>(())
    })?;
    drop(probes);
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_stop() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
