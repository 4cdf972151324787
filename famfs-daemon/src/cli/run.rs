//! `famfs-daemon run`: the foreground daemon. With `--image` and `--mountpoint` it mounts the famfs
//! image through our FUSE server, follows the log for entries other writers append (the client role:
//! every `--poll-interval` and on SIGHUP), and joins the server's request records with the kernel's
//! events; it always loads probes (unless `--no-probes`) and serves HTTP. SIGINT/SIGTERM unmount and
//! stop it cleanly.
//!
//! Prints one line `famfs-daemon: ready listen=ADDR [mountpoint=DIR connection=N fs_uuid=UUID]` on
//! stdout once everything is serving (for a mount: after the kernel's INIT was answered), so scripts
//! and tests can wait for readiness without sleeping.
//!
//! Owns argument parsing and the process lifecycle (what starts in which order, signals, shutdown).
//! Must not contain filesystem, protocol or join logic.

use std::{
    io::{self, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{
    fuse::{
        DialectConfig, Mount, MountOptions, Negotiated, Session, SessionConfig,
        dialect::kallsyms_has_famfs,
    },
    http::{self, Limits, Views},
    join::{FileQuery, Join, JoinWorker, RequestRecord},
    metrics::{FileState, Format, Metrics},
    probes::{ProbeConfig, Probes},
    server::{FamfsFs, LogWatcher, ServerConfig},
};

/// Capacity of the server → join record queue (a full queue drops and counts, never blocks).
const RECORD_QUEUE: usize = 65536;
/// How long the kernel gets to send INIT after mount(2).
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the session to end after the unmount.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Capacity of the kernel in-flight request map.
    #[arg(long, default_value_t = 16384)]
    pub inflight_max: u32,
    /// Maximum simultaneous HTTP connections.
    #[arg(long, default_value_t = 64)]
    pub http_max_connections: usize,
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
    /// Per-file metric series kept before the least recently active files fold into __other__.
    #[arg(long, default_value_t = 500)]
    pub max_file_series: usize,
    /// How often to look for log entries appended by others (e.g. 200ms, 1s).
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// How long the kernel may cache names and attributes (e.g. 30s, 0).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub attr_timeout: Duration,
}

fn parse_dialect(s: &str) -> Result<DialectConfig, String> {
    s.parse::<DialectConfig>()
        .map_err(|e| format!("--dialect: {e}"))
}

/// `250ms`, `2s`, `1m`, `1h`, or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, mul_ms) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 200ms, 1s, 2m or 1h"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{s:?}: a duration must be finite and not negative"));
    }
    Ok(Duration::from_secs_f64(v * mul_ms / 1000.0))
}

struct DaemonViews {
    metrics: Metrics,
    probes: Option<Arc<Mutex<Probes>>>,
    files: Option<Arc<Mutex<FileState>>>,
    /// Set when the FUSE session ended while the daemon runs (someone unmounted us).
    session_ended: Option<Arc<AtomicBool>>,
    /// The served filesystem, for its health (a shrunk image, I/O failures, stale maps).
    fs: Option<FamfsFs>,
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
        match &self.session_ended {
            Some(e) if e.load(Ordering::Acquire) => {
                Some("the FUSE session ended (the mount is gone)".into())
            }
            _ => self.fs.as_ref().and_then(FamfsFs::health),
        }
    }
}

/// A mounted, negotiated famfs session with its serving thread. Dropping it unmounts and waits (a
/// bounded time) for the session to end.
struct Served {
    fs: FamfsFs,
    session: Arc<Session<FamfsFs>>,
    mount: Option<Mount>,
    thread: Option<JoinHandle<io::Result<()>>>,
    ended: Arc<AtomicBool>,
    connection: u32,
    mountpoint: PathBuf,
}

impl Served {
    /// Unmount (MNT_DETACH) and wait for the workers to leave; abort the connection through fusectl
    /// when files kept open on the detached mount hold it alive.
    fn shutdown(&mut self) {
        if let Some(mut m) = self.mount.take()
            && let Err(e) = m.unmount()
        {
            eprintln!("famfs-daemon: unmount {}: {e}", self.mountpoint.display());
        }
        let Some(t) = self.thread.take() else { return };
        let wait = |t: &JoinHandle<_>, d: Duration| {
            let end = Instant::now() + d;
            while !t.is_finished() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
            t.is_finished()
        };
        if !wait(&t, STOP_TIMEOUT) {
            let abort = format!("/sys/fs/fuse/connections/{}/abort", self.connection);
            if std::fs::write(&abort, "1").is_ok() {
                eprintln!(
                    "famfs-daemon: files were still open on the detached mount; aborted connection {}",
                    self.connection
                );
            }
            if !wait(&t, STOP_TIMEOUT) {
                eprintln!("famfs-daemon: the FUSE session did not end; leaving it to process exit");
                return;
            }
        }
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("famfs-daemon: FUSE session ended with an error: {e}"),
            Err(_) => eprintln!("famfs-daemon: a FUSE worker panicked"),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Mount `fs` at `mountpoint`, start the session and wait until the kernel's INIT was answered.
fn mount_and_serve(
    args: &RunArgs,
    fs: FamfsFs,
    mountpoint: &Path,
    records: mpsc::SyncSender<RequestRecord>,
) -> Result<(Served, Negotiated)> {
    let opts = MountOptions {
        source: "famfs".into(),
        subtype: Some("famfs".into()),
        read_only: args.read_only,
        allow_other: args.allow_other,
        default_permissions: true,
        detach_stale: true,
        ..Default::default()
    };
    // mount(2) queues INIT without waiting for its answer; the session started below answers it.
    let (mount, channel) = Mount::new(mountpoint, &opts)
        .with_context(|| format!("mounting {}", mountpoint.display()))?;
    if mount.stale_detached() {
        eprintln!(
            "famfs-daemon: {}: cleared a stale mount left by a daemon that is gone (ENOTCONN)",
            mountpoint.display()
        );
    }
    let connection = mount.connection();
    let daxdev_configured = args.daxdev.is_some() || is_char_device(fs.daxdev());
    // `auto` without a daxdev is simply off (the session would warn that famfs needs one).
    let dialect = match args.dialect {
        DialectConfig::Auto if !daxdev_configured => {
            log::info!("famfs mode off: no --daxdev and the superblock names no DAX device");
            DialectConfig::Off
        }
        d => d,
    };
    let cfg = SessionConfig {
        connection,
        mount_epoch: mount.mounted_ns(),
        dialect,
        daxdev_configured,
        records: Some(records),
        ..Default::default()
    };
    let session = Arc::new(Session::new(fs.clone(), channel, cfg));
    let ended = Arc::new(AtomicBool::new(false));
    let (s2, e2, workers) = (session.clone(), ended.clone(), args.workers as usize);
    let thread = std::thread::Builder::new()
        .name("fuse-worker-0".into())
        .spawn(move || {
            let r = s2.run(workers);
            e2.store(true, Ordering::Release);
            r
        })
        .context("starting the FUSE session thread")?;
    let mountpoint = mount.path().to_path_buf();
    let served = Served {
        fs,
        session,
        mount: Some(mount),
        thread: Some(thread),
        ended,
        connection,
        mountpoint,
    };
    let negotiated = match served.session.wait_negotiated(INIT_TIMEOUT) {
        Some(n) => n.clone(),
        // Dropping `served` unmounts.
        None if served.ended.load(Ordering::Acquire) => bail!(
            "the FUSE session for {} ended before INIT was negotiated (see the messages above)",
            served.mountpoint.display()
        ),
        None => bail!(
            "the kernel's INIT for {} was not answered within {INIT_TIMEOUT:?}",
            served.mountpoint.display()
        ),
    };
    Ok((served, negotiated))
}

fn is_char_device(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    !p.as_os_str().is_empty() && std::fs::metadata(p).is_ok_and(|m| m.file_type().is_char_device())
}

/// The GET_FMAP opcode the probes should report, predicted before INIT from the configuration (the
/// negotiated one is known only after mounting; a mismatch is logged).
fn predicted_fmap_opcode(args: &RunArgs, daxdev_configured: bool) -> u32 {
    if !daxdev_configured {
        return 0;
    }
    match args.dialect {
        DialectConfig::Off => 0,
        DialectConfig::RfcV2 => 53,
        DialectConfig::V3 => 54,
        DialectConfig::Auto => {
            if kallsyms_has_famfs(Path::new("/proc/kallsyms")) {
                54
            } else {
                0
            }
        }
    }
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    // The filesystem first: a bad image is reported before anything is loaded or mounted.
    let fs = match &args.image {
        Some(img) => {
            let cfg = ServerConfig {
                read_only: args.read_only,
                daxdev: args.daxdev.clone(),
                ttl: args.attr_timeout,
                system_uuid_path: None,
            };
            let fs = FamfsFs::open(img, &cfg)
                .with_context(|| format!("opening famfs image {}", img.display()))?;
            eprintln!(
                "famfs-daemon: image {} fs_uuid {}: {} objects, log next index {}",
                img.display(),
                fs.fs_uuid(),
                fs.objects(),
                fs.next_index()
            );
            Some(fs)
        }
        None => None,
    };

    let probes = if args.no_probes {
        None
    } else {
        let daxdev_configured =
            args.daxdev.is_some() || fs.as_ref().is_some_and(|f| is_char_device(f.daxdev()));
        let connections = if fs.is_some() {
            // Filtered: our own mount is added once it exists.
            Some(args.connections.clone())
        } else {
            (!args.connections.is_empty()).then(|| args.connections.clone())
        };
        let cfg = ProbeConfig {
            connections,
            inflight_max: args.inflight_max,
            target_overrides: args.probe_targets.clone(),
            fmap_opcode: predicted_fmap_opcode(&args, daxdev_configured),
            ..Default::default()
        };
        let p = Probes::load(&cfg);
        eprint!("{}", super::probes_cmd::render_table(p.status()));
        Some((Arc::new(Mutex::new(p)), cfg.fmap_opcode))
    };
    let (probes, probe_fmap_opcode) = match probes {
        Some((p, op)) => (Some(p), op),
        None => (None, 0),
    };

    // Mount, serve, and wire the join.
    let mut served: Option<Served> = None;
    let mut files: Option<Arc<Mutex<FileState>>> = None;
    let mut join_worker: Option<JoinWorker> = None;
    let mut watcher: Option<(LogWatcher, mpsc::Sender<()>)> = None;
    if let (Some(fs), Some(mp)) = (fs.clone(), args.mountpoint.as_deref()) {
        let (tx, rx) = mpsc::sync_channel::<RequestRecord>(RECORD_QUEUE);
        let (s, n) = mount_and_serve(&args, fs.clone(), mp, tx)?;
        let fmap_opcode = n.get_fmap_opcode().unwrap_or(0);
        if probes.is_some() && fmap_opcode != probe_fmap_opcode {
            log::warn!(
                "probes report GET_FMAP as opcode {probe_fmap_opcode} but the mount negotiated {fmap_opcode}"
            );
        }
        let state = Arc::new(Mutex::new(FileState {
            join: Join::new(n.connection, n.mount_epoch, n.init_ns, fmap_opcode),
            fs_uuid: fs.fs_uuid().to_string(),
            max_series: args.max_file_series,
        }));
        let events = match &probes {
            Some(p) => {
                let mut p = p
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
        join_worker = Some(
            JoinWorker::start(state.clone(), events, rx, Arc::new(fs.clone()))
                .context("starting the join thread")?,
        );
        let (wake_tx, wake_rx) = mpsc::channel();
        let w = LogWatcher::start(
            fs.clone(),
            Some(s.session.notifier()),
            args.poll_interval,
            wake_rx,
        )
        .context("starting the log watcher")?;
        watcher = Some((w, wake_tx));
        files = Some(state);
        served = Some(s);
    }

    let mut metrics = Metrics::new(probes.clone(), files.clone());
    if let Some(s) = &served {
        let famfs_ops = s
            .session
            .negotiated()
            .and_then(|n| n.get_fmap_opcode().zip(n.get_daxdev_opcode()));
        metrics.add_server(s.session.stats().clone(), famfs_ops);
    }
    let views = Arc::new(DaemonViews {
        metrics,
        probes: probes.clone(),
        files,
        session_ended: served.as_ref().map(|s| s.ended.clone()),
        fs: served.as_ref().map(|s| s.fs.clone()),
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("famfs-http")
        .build()?;
    let sweeper_probes = probes.clone();
    let wake = watcher.as_ref().map(|(_, tx)| tx.clone());
    let mount_fields = served.as_ref().map(|s| {
        format!(
            " mountpoint={} connection={} fs_uuid={}",
            s.mountpoint.display(),
            s.connection,
            s.fs.fs_uuid()
        )
    });
    let served_result = rt.block_on(async move {
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
            writeln!(
                out,
                "famfs-daemon: ready listen={local}{}",
                mount_fields.unwrap_or_default()
            )?;
            out.flush()?;
        }
        wait_for_stop(wake).await?;
        eprintln!("famfs-daemon: stopping");
        server.abort();
        Ok::<_, anyhow::Error>(())
    });
    // Stop in reverse order of start: the watcher (it notifies the session), the mount and session,
    // then the join and the probes.
    if let Some((w, tx)) = watcher {
        drop(tx);
        w.join();
    }
    if let Some(mut s) = served {
        s.shutdown();
        let st = s.session.stats();
        eprintln!(
            "famfs-daemon: unmounted {} (served {} requests, {} malformed)",
            s.mountpoint.display(),
            st.per_opcode().map(|(_, n, _)| n).sum::<u64>() + st.requests_other(),
            st.malformed()
        );
    }
    if let Some(j) = join_worker {
        j.stop();
    }
    drop(probes);
    served_result?;
    Ok(ExitCode::SUCCESS)
}

/// Wait for SIGINT or SIGTERM; forward SIGHUP to the log watcher (a refresh now).
async fn wait_for_stop(wake: Option<mpsc::Sender<()>>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => {
                match &wake {
                    Some(tx) => {
                        eprintln!("famfs-daemon: SIGHUP: refreshing from the log");
                        let _ = tx.send(());
                    }
                    None => eprintln!("famfs-daemon: SIGHUP ignored (no image is served)"),
                }
            }
        }
    }
}
