//! The daemon's composition root: what `famfs-daemon run` starts, in which order, and how it stops.
//! With an image and a mountpoint it mounts the image through our FUSE server, follows the log for
//! entries other writers append (every `poll_interval` and on SIGHUP), and joins the server's request
//! records with the kernel's events; it always loads probes (unless told not to) and serves HTTP.
//! SIGINT/SIGTERM unmount and stop it cleanly. `demo` is the embedded default job built on it.
//!
//! Start-up order (least privilege): open the image, load the probes, mount, bind the listener, all
//! on the one thread; then drop privileges ([`privilege`]) before any thread starts, start serving
//! (FUSE workers, join, log watcher, HTTP), lock the sandbox down (seccomp on every thread) and only
//! then print the ready line.
//!
//! Prints one line `famfs-daemon: ready listen=ADDR [mountpoint=DIR connection=N fs_uuid=UUID]` on
//! stdout once everything is serving (for a mount: after the kernel's INIT was answered), so scripts
//! and tests can wait for readiness without sleeping.
//!
//! Owns the lifecycle ([`run`], taking a plain [`DaemonConfig`]), the HTTP views ([`views`]), the
//! mount/serve steps ([`serve`]) and the privilege drop ([`privilege`]). Must not parse arguments
//! (that is `cli`'s) and must not contain filesystem, protocol or join logic.

pub mod demo;
pub mod privilege;
pub mod serve;
pub mod views;

use std::{
    io::Write,
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use anyhow::{Context, Result};

use crate::{
    fuse::{DialectConfig, RequestRecord},
    http::{self, Limits, WebConfig},
    join::{FileState, Join, JoinInputs, JoinWorker, SharedFileState},
    metrics::{FileLabels, Metrics},
    probes::{ProbeConfig, Probes},
    server::{FamfsFs, LogWatcher, ServerConfig},
};
use privilege::Sandbox;
use serve::{Served, StopSignals, is_char_device, predicted_fmap_opcode};
use views::DaemonViews;

/// Capacity of the server → join record queue (a full queue drops and counts, never blocks).
const RECORD_QUEUE: usize = 65536;
/// How often the kernel's in-flight request map is swept of requests whose end was never seen.
const INFLIGHT_SWEEP: Duration = Duration::from_secs(10);
/// In-flight requests older than this are dropped by the sweep.
const INFLIGHT_MAX_AGE: Duration = Duration::from_secs(60);

/// A famfs image and where to mount it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeTarget {
    pub image: PathBuf,
    pub mountpoint: PathBuf,
}

/// Everything `run` needs, as plain values (the CLI builds it from its arguments).
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// Address for `/metrics` and the HTTP API.
    pub listen: SocketAddr,
    /// Load the eBPF probes.
    pub probes: bool,
    /// Also trace these FUSE connections (empty: every connection, or only our own mount).
    pub connections: Vec<u32>,
    /// `(program, category:event)` probe retargets.
    pub probe_targets: Vec<(String, String)>,
    /// Capacity of the kernel in-flight request map.
    pub inflight_max: u32,
    /// Connection caps and timeouts of the HTTP server.
    pub http_limits: Limits,
    /// `--web-config-file`: TLS and basic auth for the HTTP server (exporter-toolkit format).
    pub web_config_file: Option<PathBuf>,
    /// How per-file metric series name their file.
    pub file_labels: FileLabels,
    /// The famfs image to serve, if any.
    pub serve: Option<ServeTarget>,
    pub dialect: DialectConfig,
    /// devdax path answered to GET_DAXDEV (default: the superblock's).
    pub daxdev: Option<PathBuf>,
    pub read_only: bool,
    pub allow_other: bool,
    /// FUSE worker threads.
    pub workers: usize,
    /// Workers beyond the first wait off `/dev/fuse` until requests queue up.
    pub on_demand_workers: bool,
    /// Kernel read-ahead for the mount's files, bytes (0: the kernel's default): announced in INIT
    /// and set on the mount's backing device once INIT is answered ([`serve::Served::start`]).
    pub read_ahead: u32,
    /// Splice READ data from the image into `/dev/fuse` (one pipe per worker, made before the
    /// privilege drop) instead of copying it through a buffer.
    pub splice_reads: bool,
    /// Per-file metric series kept before the least recently active files fold into `__other__`.
    pub max_file_series: usize,
    /// How often to look for log entries appended by others.
    pub poll_interval: Duration,
    /// How long the kernel may cache names and attributes.
    pub attr_timeout: Duration,
    /// Drop privileges and install the seccomp allow-list once serving ([`privilege`]).
    pub sandbox: bool,
}

/// The probes, loaded, with the GET_FMAP opcode they were told to report.
struct LoadedProbes {
    probes: Arc<Mutex<Probes>>,
    fmap_opcode: u32,
}

/// Open the image first: a bad image is reported before anything is loaded or mounted.
fn open_image(cfg: &DaemonConfig) -> Result<Option<FamfsFs>> {
    let Some(target) = &cfg.serve else {
        return Ok(None);
    };
    let server_cfg = ServerConfig {
        read_only: cfg.read_only,
        daxdev: cfg.daxdev.clone(),
        ttl: cfg.attr_timeout,
        system_uuid_path: None,
    };
    let img = &target.image;
    let fs = FamfsFs::open(img, &server_cfg)
        .with_context(|| format!("opening famfs image {}", img.display()))?;
    eprintln!(
        "famfs-daemon: image {} fs_uuid {}: {} objects, log next index {}",
        img.display(),
        fs.fs_uuid(),
        fs.objects(),
        fs.next_index()
    );
    Ok(Some(fs))
}

fn load_probes(cfg: &DaemonConfig, fs: Option<&FamfsFs>) -> Option<LoadedProbes> {
    if !cfg.probes {
        return None;
    }
    let daxdev_configured = cfg.daxdev.is_some() || fs.is_some_and(|f| is_char_device(f.daxdev()));
    let connections = if fs.is_some() {
        // Filtered: our own mount is added once it exists.
        Some(cfg.connections.clone())
    } else {
        (!cfg.connections.is_empty()).then(|| cfg.connections.clone())
    };
    let probe_cfg = ProbeConfig {
        connections,
        inflight_max: cfg.inflight_max,
        target_overrides: cfg.probe_targets.clone(),
        fmap_opcode: predicted_fmap_opcode(cfg.dialect, daxdev_configured),
        ..Default::default()
    };
    let p = Probes::load(&probe_cfg);
    eprint!("{}", crate::probes::render_table(p.status()));
    Some(LoadedProbes {
        probes: Arc::new(Mutex::new(p)),
        fmap_opcode: probe_cfg.fmap_opcode,
    })
}

/// A mounted, not yet started, session and the receiving end of its request records.
struct Mounted {
    served: Served,
    records: mpsc::Receiver<RequestRecord>,
}

/// Mount the image (a privileged step: before the privilege drop).
fn mount_image(cfg: &DaemonConfig, fs: Option<FamfsFs>) -> Result<Option<Mounted>> {
    let (Some(fs), Some(target)) = (fs, &cfg.serve) else {
        return Ok(None);
    };
    let (tx, records) = mpsc::sync_channel::<RequestRecord>(RECORD_QUEUE);
    let served = serve::mount(cfg, fs, &target.mountpoint, tx)?;
    Ok(Some(Mounted { served, records }))
}

/// Bind the HTTP listener (before the privilege drop: a port below 1024 needs a capability).
fn bind_listener(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)
        .with_context(|| format!("binding the HTTP listener on {addr}"))?;
    l.set_nonblocking(true)
        .context("making the HTTP listener non-blocking")?;
    Ok(l)
}

/// A served mount with the join and the log watcher that go with it.
struct Serving {
    served: Served,
    files: SharedFileState,
    join: JoinWorker,
    watcher: LogWatcher,
    /// Wakes the watcher (SIGHUP); dropping it stops the watcher.
    wake: mpsc::Sender<()>,
}

impl Serving {
    /// Serve the mount, then start the join (fed by the session's records, the probes' events and
    /// fault maps) and the log watcher.
    fn start(cfg: &DaemonConfig, m: Mounted, probes: Option<&LoadedProbes>) -> Result<Serving> {
        let Mounted {
            mut served,
            records: rx,
        } = m;
        let n = served.start(cfg.workers)?;
        let fs = served.fs.clone();
        let fmap_opcode = n.get_fmap_opcode().unwrap_or(0);
        if let Some(p) = probes
            && fmap_opcode != p.fmap_opcode
        {
            log::warn!(
                "probes report GET_FMAP as opcode {} but the mount negotiated {fmap_opcode}",
                p.fmap_opcode
            );
        }
        let files = SharedFileState::new(FileState {
            join: Join::new(n.connection, n.mount_epoch, n.init_ns, fmap_opcode),
            fs_uuid: fs.fs_uuid().to_string(),
            max_series: cfg.max_file_series,
        });
        let events = match probes {
            Some(p) => {
                let mut p = p
                    .probes
                    .lock()
                    .map_err(|_| anyhow::anyhow!("probe state poisoned"))?;
                // A previous mount may have used this connection number.
                p.reset_connection(n.connection);
                if let Err(e) = p.watch_connection(n.connection) {
                    log::warn!("probes cannot follow connection {}: {e:#}", n.connection);
                }
                p.take_events()
            }
            None => None,
        };
        let inputs = JoinInputs {
            events,
            records: rx,
            catalog: Arc::new(fs.clone()),
            faults: probes.map(|p| p.probes.clone() as Arc<dyn crate::join::FaultSource>),
        };
        let join = JoinWorker::start(files.clone(), inputs).context("starting the join thread")?;
        let (wake, wake_rx) = mpsc::channel();
        let watcher = LogWatcher::start(
            fs,
            Some(served.session.notifier()),
            cfg.poll_interval,
            wake_rx,
        )
        .context("starting the log watcher")?;
        Ok(Serving {
            served,
            files,
            join,
            watcher,
            wake,
        })
    }

    /// ` mountpoint=DIR connection=N fs_uuid=UUID` of the ready line.
    fn ready_fields(&self) -> String {
        let s = &self.served;
        format!(
            " mountpoint={} connection={} fs_uuid={}",
            s.mountpoint.display(),
            s.connection,
            s.fs.fs_uuid()
        )
    }

    /// Stop in reverse order of start: the watcher (it notifies the session), the mount and session,
    /// then the join (which applies what is left, the kernel's last fault counts included).
    fn stop(self) {
        drop(self.wake);
        self.watcher.join();
        let mut served = self.served;
        served.shutdown();
        let st = served.session.stats();
        eprintln!(
            "famfs-daemon: unmounted {} (served {} requests, {} malformed)",
            served.mountpoint.display(),
            st.per_opcode().map(|(_, n, _)| n).sum::<u64>() + st.requests_other(),
            st.malformed()
        );
        self.join.stop();
    }
}

/// Read `--web-config-file` (before anything else starts, so a bad file stops the daemon at once).
fn load_web_config(cfg: &DaemonConfig) -> Result<WebConfig> {
    let Some(path) = &cfg.web_config_file else {
        return Ok(WebConfig::default());
    };
    let web = WebConfig::load(path).map_err(anyhow::Error::msg)?;
    for w in &web.warnings {
        log::warn!("web config {}: {w}", path.display());
    }
    eprintln!(
        "famfs-daemon: web config {}: {}",
        path.display(),
        web.describe()
    );
    Ok(web)
}

/// The HTTP views of what runs.
fn views_of(
    probes: Option<&LoadedProbes>,
    serving: Option<&Serving>,
    file_labels: FileLabels,
) -> DaemonViews {
    let probes = probes.map(|p| p.probes.clone());
    let mut metrics = Metrics::with_file_labels(
        probes.clone(),
        serving.map(|s| s.files.clone()),
        file_labels,
    );
    if let Some(s) = serving {
        let famfs_ops = s
            .served
            .session
            .negotiated()
            .and_then(|n| n.get_fmap_opcode().zip(n.get_daxdev_opcode()));
        metrics.add_server(s.served.session.stats().clone(), famfs_ops);
    }
    DaemonViews {
        metrics,
        probes,
        files: serving.map(|s| s.files.clone()),
        session_ended: serving.map(|s| s.served.ended.clone()),
        fs: serving.map(|s| s.served.fs.clone()),
    }
}

/// What the HTTP server serves, and where: bound before the privilege drop, served after it.
struct HttpFace {
    listener: std::net::TcpListener,
    web: WebConfig,
    views: DaemonViews,
}

/// Serve HTTP until SIGINT/SIGTERM: serve on `listener`, sweep the kernel's in-flight map, lock the
/// sandbox down, print the ready line, wait.
fn serve_http(
    cfg: &DaemonConfig,
    face: HttpFace,
    probes: Option<Arc<Mutex<Probes>>>,
    ready_fields: String,
    wake: Option<mpsc::Sender<()>>,
    sandbox: Option<&Sandbox>,
) -> Result<()> {
    let HttpFace {
        listener,
        web,
        views,
    } = face;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("famfs-http")
        .build()?;
    let limits = cfg.http_limits;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let local = listener.local_addr()?;
        let signals = StopSignals::register()?;
        web.start().map_err(anyhow::Error::msg)?;
        let server = tokio::spawn(http::serve(listener, Arc::new(views), limits, web));
        if let Some(p) = probes {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(INFLIGHT_SWEEP);
                loop {
                    tick.tick().await;
                    if let Ok(mut p) = p.lock() {
                        p.expire_inflight(INFLIGHT_MAX_AGE);
                    }
                }
            });
        }
        if let Some(s) = sandbox {
            s.lock_down()?;
        }
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "famfs-daemon: ready listen={local}{ready_fields}")?;
            out.flush()?;
        }
        signals.wait(wake).await;
        eprintln!("famfs-daemon: stopping");
        server.abort();
        Ok::<_, anyhow::Error>(())
    })
}

/// Run the daemon until SIGINT/SIGTERM.
pub fn run(cfg: &DaemonConfig) -> Result<ExitCode> {
    // Before any thread: scrape-sized buffers must not stay resident (see `util::alloc`).
    crate::util::alloc::tune();
    let web = load_web_config(cfg)?;
    let fs = open_image(cfg)?;
    let probes = load_probes(cfg, fs.as_ref());
    let mounted = mount_image(cfg, fs)?;
    let listener = bind_listener(cfg.listen)?;
    // No thread exists yet: every thread started from here on inherits the reduced credentials.
    let sandbox = if cfg.sandbox {
        Some(Sandbox::drop_privileges(mounted.is_some())?)
    } else {
        None
    };
    let serving = match mounted {
        Some(m) => Some(Serving::start(cfg, m, probes.as_ref())?),
        None => None,
    };
    let views = views_of(probes.as_ref(), serving.as_ref(), cfg.file_labels);
    let ready = serving
        .as_ref()
        .map(Serving::ready_fields)
        .unwrap_or_default();
    let wake = serving.as_ref().map(|s| s.wake.clone());
    let face = HttpFace {
        listener,
        web,
        views,
    };
    let served = serve_http(
        cfg,
        face,
        probes.as_ref().map(|p| p.probes.clone()),
        ready,
        wake,
        sandbox.as_ref(),
    );
    if let Some(s) = serving {
        s.stop();
    }
    drop(probes);
    served?;
    Ok(ExitCode::SUCCESS)
}
