//! The mount/serve lifecycle of `famfs-daemon run`: mount a famfs image through our FUSE server and
//! wait for the kernel's INIT ([`mount_and_serve`]), unmount and wait for the session on the way out
//! ([`Served`]), and the process's signals ([`wait_for_stop`]).
//!
//! Owns the order of those steps and their timeouts. Must not contain filesystem, protocol or join
//! logic: those are `server`, `fuse` and `join`'s.

use std::{
    io,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::DaemonConfig;
use crate::{
    fuse::{
        DialectConfig, Mount, MountOptions, Negotiated, Session, SessionConfig,
        dialect::kallsyms_has_famfs,
    },
    join::RequestRecord,
    server::FamfsFs,
};

/// How long the kernel gets to send INIT after mount(2).
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the session to end after the unmount.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A mounted, negotiated famfs session with its serving thread. Dropping it unmounts and waits (a
/// bounded time) for the session to end.
pub struct Served {
    pub fs: FamfsFs,
    pub session: Arc<Session<FamfsFs>>,
    mount: Option<Mount>,
    thread: Option<JoinHandle<io::Result<()>>>,
    /// Set when the FUSE session ended (someone unmounted us, or we did).
    pub ended: Arc<AtomicBool>,
    pub connection: u32,
    pub mountpoint: PathBuf,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("connection", &self.connection)
            .field("mountpoint", &self.mountpoint)
            .finish_non_exhaustive()
    }
}

/// Wait (a bounded time) for `t` to finish; whether it did.
fn wait_finished<T>(t: &JoinHandle<T>, d: Duration) -> bool {
    let end = Instant::now() + d;
    while !t.is_finished() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    t.is_finished()
}

impl Served {
    /// Unmount (MNT_DETACH) and wait for the workers to leave; abort the connection through fusectl
    /// when files kept open on the detached mount hold it alive.
    pub fn shutdown(&mut self) {
        if let Some(mut m) = self.mount.take()
            && let Err(e) = m.unmount()
        {
            eprintln!("famfs-daemon: unmount {}: {e}", self.mountpoint.display());
        }
        let Some(t) = self.thread.take() else { return };
        if !wait_finished(&t, STOP_TIMEOUT) {
            let abort = format!("/sys/fs/fuse/connections/{}/abort", self.connection);
            if std::fs::write(&abort, "1").is_ok() {
                eprintln!(
                    "famfs-daemon: files were still open on the detached mount; aborted connection {}",
                    self.connection
                );
            }
            if !wait_finished(&t, STOP_TIMEOUT) {
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
pub fn mount_and_serve(
    cfg: &DaemonConfig,
    fs: FamfsFs,
    mountpoint: &Path,
    records: mpsc::SyncSender<RequestRecord>,
) -> Result<(Served, Negotiated)> {
    let opts = MountOptions {
        source: "famfs".into(),
        subtype: Some("famfs".into()),
        read_only: cfg.read_only,
        allow_other: cfg.allow_other,
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
    let daxdev_configured = cfg.daxdev.is_some() || is_char_device(fs.daxdev());
    // `auto` without a daxdev is simply off (the session would warn that famfs needs one).
    let dialect = match cfg.dialect {
        DialectConfig::Auto if !daxdev_configured => {
            log::info!("famfs mode off: no --daxdev and the superblock names no DAX device");
            DialectConfig::Off
        }
        d => d,
    };
    let session_cfg = SessionConfig {
        connection,
        mount_epoch: mount.mounted_ns(),
        dialect,
        daxdev_configured,
        records: Some(records),
        ..Default::default()
    };
    let session = Arc::new(Session::new(fs.clone(), channel, session_cfg));
    let ended = Arc::new(AtomicBool::new(false));
    let (s2, e2, workers) = (session.clone(), ended.clone(), cfg.workers);
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

pub fn is_char_device(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    !p.as_os_str().is_empty() && std::fs::metadata(p).is_ok_and(|m| m.file_type().is_char_device())
}

/// The GET_FMAP opcode the probes should report, predicted before INIT from the configuration (the
/// negotiated one is known only after mounting; a mismatch is logged).
pub fn predicted_fmap_opcode(dialect: DialectConfig, daxdev_configured: bool) -> u32 {
    if !daxdev_configured {
        return 0;
    }
    match dialect {
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

/// Wait for SIGINT or SIGTERM; forward SIGHUP to the log watcher (a refresh now).
pub async fn wait_for_stop(wake: Option<mpsc::Sender<()>>) -> Result<()> {
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
