//! The mount/serve lifecycle of `famfs-daemon run`: mount a famfs image through our FUSE server
//! ([`mount`], the privileged step), start serving it and wait for the kernel's INIT
//! ([`Served::start`], which may run after the privilege drop), unmount and wait for the session on
//! the way out ([`Served`]), and the process's signals ([`StopSignals`]).
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

use super::{DaemonConfig, privilege::with_unmount_capability};
use crate::{
    fuse::{
        DialectConfig, Mount, MountOptions, Negotiated, RequestRecord, Session, SessionConfig,
        dialect::kallsyms_has_famfs,
    },
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
    /// Read-ahead to set once INIT is answered, bytes (0: leave the kernel's).
    read_ahead: u32,
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
    /// Start the session's threads (its workers clone their `/dev/fuse` fds) and wait until the
    /// kernel's INIT was answered. On an error the caller drops `self`, which unmounts.
    pub fn start(&mut self, workers: usize) -> Result<Negotiated> {
        let (s2, e2) = (self.session.clone(), self.ended.clone());
        let thread = std::thread::Builder::new()
            .name("fuse-worker-0".into())
            .spawn(move || {
                let r = s2.run(workers);
                e2.store(true, Ordering::Release);
                r
            })
            .context("starting the FUSE session thread")?;
        self.thread = Some(thread);
        match self.session.wait_negotiated(INIT_TIMEOUT) {
            Some(n) => {
                self.apply_read_ahead();
                Ok(n.clone())
            }
            None if self.ended.load(Ordering::Acquire) => bail!(
                "the FUSE session for {} ended before INIT was negotiated (see the messages above)",
                self.mountpoint.display()
            ),
            None => bail!(
                "the kernel's INIT for {} was not answered within {INIT_TIMEOUT:?}",
                self.mountpoint.display()
            ),
        }
    }

    /// Raise the mount's read-ahead to the configured size: after INIT was answered, since INIT's
    /// reply lowers the kernel's to `min(it, max_readahead)`. Runs after the capability drop and
    /// before the seccomp lock-down: root owns the sysfs file, so no capability is needed. A
    /// failure leaves the kernel's read-ahead (slower reads, nothing else) and is logged.
    fn apply_read_ahead(&self) {
        if self.read_ahead == 0 {
            return;
        }
        let Some(m) = &self.mount else { return };
        let kb = self.read_ahead / 1024;
        match m.set_read_ahead_kb(kb) {
            Ok(()) => log::info!(
                "fuse: read-ahead of connection {} set to {kb} KiB",
                self.connection
            ),
            Err(e) => log::warn!(
                "fuse: could not set the read-ahead of connection {} (reads use the kernel's): {e}",
                self.connection
            ),
        }
    }

    /// Unmount (MNT_DETACH) and wait for the workers to leave; abort the connection through fusectl
    /// when files kept open on the detached mount hold it alive. The unmount raises CAP_SYS_ADMIN
    /// for itself when the sandbox left it permitted only.
    pub fn shutdown(&mut self) {
        if let Some(mut m) = self.mount.take()
            && let Err(e) = with_unmount_capability(|| m.unmount())
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

/// Mount `fs` at `mountpoint` and set up its session without starting it: the step that needs
/// CAP_SYS_ADMIN. [`Served::start`] serves it.
pub fn mount(
    cfg: &DaemonConfig,
    fs: FamfsFs,
    mountpoint: &Path,
    records: mpsc::SyncSender<RequestRecord>,
) -> Result<Served> {
    let opts = MountOptions {
        source: "famfs".into(),
        subtype: Some("famfs".into()),
        read_only: cfg.read_only,
        allow_other: cfg.allow_other,
        default_permissions: true,
        detach_stale: true,
        ..Default::default()
    };
    // mount(2) queues INIT without waiting for its answer; the session answers it once started.
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
        max_readahead: cfg.read_ahead,
        splice_reads: cfg.splice_reads,
        on_demand_workers: cfg.on_demand_workers,
        ..Default::default()
    };
    let session = Arc::new(Session::new(fs.clone(), channel, session_cfg));
    // Pipes for a whole 1 MiB reply exceed pipe-max-size: make them while still privileged.
    if let Err(e) = session.prepare_splice(cfg.workers) {
        log::warn!("pipes for spliced READ replies: {e}; workers make their own or copy");
    }
    let mountpoint = mount.path().to_path_buf();
    Ok(Served {
        fs,
        session,
        mount: Some(mount),
        thread: None,
        ended: Arc::new(AtomicBool::new(false)),
        connection,
        mountpoint,
        read_ahead: cfg.read_ahead,
    })
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

/// SIGINT, SIGTERM and SIGHUP, registered (inside a tokio runtime) before the sandbox is locked
/// down, so waiting for them needs no new system call.
pub struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn register() -> Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Wait for SIGINT or SIGTERM; forward SIGHUP to the log watcher (a refresh now).
    pub async fn wait(mut self, wake: Option<mpsc::Sender<()>>) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => {
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
}
