//! The `famfs-daemon run` process guard, for both uses: a daemon that only traces (probes, HTTP
//! API) and a daemon serving a famfs image at a mount point (probes on or off). Started through
//! [`DaemonBuilder`]; it waits (with a deadline) for the ready line, keeps reading the daemon's
//! stdout and stderr (stderr echoed as `[daemon] …` and kept for [`Daemon::wait_stderr`]), and on drop
//! stops it by PID (SIGTERM, SIGKILL after a bounded wait) and detaches its mount if one is left.
//! It owns the daemon's process lifetime only: what the daemon answers is for the tests to judge.

use std::{
    ffi::OsString,
    io::{self, BufRead, BufReader},
    net::SocketAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use super::{DAEMON, http::http_get, image::uuid_file, mounts::force_unmount};

/// How long a daemon may take to print its ready line (probes load first).
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long a daemon may take to exit after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// How to start `famfs-daemon run --listen 127.0.0.1:0 …`: by default with probes and without an
/// image; [`DaemonBuilder::serve`] adds an image and a mount point.
pub struct DaemonBuilder {
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    mountpoint: Option<PathBuf>,
    probes: bool,
}

impl DaemonBuilder {
    /// Serve `image` at `mountpoint`, with the host UUID file of `dir` (the image's master).
    pub fn serve(mut self, dir: &Path, image: &Path, mountpoint: &Path) -> Self {
        self.args.extend([
            "--image".into(),
            image.into(),
            "--mountpoint".into(),
            mountpoint.into(),
        ]);
        self.env
            .push(("FAMFS_SYSTEM_UUID_PATH".into(), uuid_file(dir).into()));
        self.mountpoint = Some(
            mountpoint
                .canonicalize()
                .unwrap_or_else(|_| mountpoint.to_path_buf()),
        );
        self
    }

    /// Load the probes (the default) or not (`--no-probes`).
    pub fn probes(mut self, on: bool) -> Self {
        self.probes = on;
        self
    }

    /// More arguments of `run`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(OsString::from));
        self
    }

    /// An environment variable of the daemon.
    pub fn env(mut self, key: &str, value: &Path) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Spawn the daemon and wait for its ready line; panics (after stopping it) when none comes.
    pub fn start(self) -> Daemon {
        let mut cmd = Command::new(DAEMON);
        cmd.arg("run").args(["--listen", "127.0.0.1:0"]);
        if !self.probes {
            cmd.arg("--no-probes");
        }
        let mut child = cmd
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn famfs-daemon run");
        let stderr = read_stderr(&mut child);
        let stdout = read_stdout(&mut child);
        let mut d = Daemon {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ready_line: String::new(),
            mountpoint: self.mountpoint,
            stderr,
        };
        d.ready_line = d.wait_ready(&stdout);
        d.addr = d
            .field("listen")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no listen= in {:?}", d.ready_line));
        d
    }
}

/// Echo the daemon's stderr lines (captured with the test's output) and hand them to a channel.
fn read_stderr(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[daemon] {l}");
            let _ = tx.send(l);
        }
    });
    rx
}

/// Hand the daemon's stdout lines to a channel, and keep draining stdout once nobody listens, so
/// the daemon never blocks on a full pipe.
fn read_stdout(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    rx
}

/// A running `famfs-daemon run`; stopped by PID on drop, its mount (if any) detached if still there.
pub struct Daemon {
    child: Option<Child>,
    /// The HTTP address from the ready line's `listen=`.
    pub addr: SocketAddr,
    /// `famfs-daemon: ready listen=… [mountpoint=… connection=… fs_uuid=…]`.
    pub ready_line: String,
    /// The mount point it serves (canonical), if it serves an image.
    pub mountpoint: Option<PathBuf>,
    pub stderr: mpsc::Receiver<String>,
}

impl Daemon {
    /// How to start one (probes on, no image).
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder {
            args: Vec::new(),
            env: Vec::new(),
            mountpoint: None,
            probes: true,
        }
    }

    /// A daemon with probes and `args` (no image).
    pub fn start(args: &[&str]) -> Daemon {
        Daemon::builder().args(args).start()
    }

    /// A daemon serving `image` at `mountpoint` without probes, with `extra` arguments; `dir` holds
    /// the host UUID file.
    pub fn serve(dir: &Path, image: &Path, mountpoint: &Path, extra: &[&str]) -> Daemon {
        Daemon::builder()
            .serve(dir, image, mountpoint)
            .probes(false)
            .args(extra)
            .start()
    }

    fn wait_ready(&mut self, stdout: &mpsc::Receiver<String>) -> String {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match stdout.recv_timeout(left) {
                Ok(l) if l.starts_with("famfs-daemon: ready") => return l,
                Ok(_) => {}
                Err(e) => {
                    // Disconnected: stdout closed, the daemon is exiting; give it a moment to.
                    let status = self
                        .child
                        .as_mut()
                        .map(|c| wait_exit(c, Duration::from_secs(5)));
                    panic!("famfs-daemon printed no ready line ({e}; exit status {status:?})");
                }
            }
        }
    }

    /// Value of `key=` in the ready line.
    pub fn field(&self, key: &str) -> Option<String> {
        let k = format!("{key}=");
        self.ready_line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(k.as_str()).map(str::to_string))
    }

    /// The FUSE connection of the mount it serves (`connection=` of the ready line).
    pub fn connection(&self) -> u32 {
        self.field("connection")
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no connection= in {:?}", self.ready_line))
    }

    /// GET `path` from its HTTP API: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path, None)
    }

    /// Whether the process is still running (not exited, not a zombie we reaped).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Its `/metrics` text; panics unless it answers 200.
    pub fn metrics(&self) -> String {
        let (code, body) = self.get("/metrics");
        assert_eq!(code, 200, "/metrics answered {code}: {body}");
        body
    }

    /// Its PID while it runs (not after [`Daemon::stop`] or [`Daemon::kill9`]).
    pub fn pid(&self) -> Option<libc::pid_t> {
        self.child
            .as_ref()
            .and_then(|c| libc::pid_t::try_from(c.id()).ok())
    }

    /// Send `sig` to it (nothing once it was stopped).
    pub fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own, not yet reaped, child's PID.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// SIGTERM and wait (at most 15 s, then SIGKILL), then detach its mount if it is still there;
    /// the exit status (None if it had to be killed, or was stopped before).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take()?;
        let status = match wait_exit(&mut child, STOP_DEADLINE) {
            Ok(Some(s)) => Some(s),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        };
        if let Some(m) = &self.mountpoint {
            force_unmount(m);
        }
        status
    }

    /// SIGKILL (a mount is left stale) and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Wait (up to 15 s) for a stderr line containing `needle`; returns it, or every line seen.
    pub fn wait_stderr(&self, needle: &str) -> Result<String, Vec<String>> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return Ok(l),
                Ok(l) => seen.push(l),
                Err(_) => return Err(seen),
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        if let Some(m) = &self.mountpoint {
            force_unmount(m);
        }
    }
}

/// Wait up to `timeout` for `child` to exit: poll(2) on a pidfd wakes when it does (no sleeping
/// loop). `Ok(None)` when it is still running; the child is reaped when it has exited.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or -1; nothing is borrowed.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    let raw = RawFd::try_from(raw).map_err(io::Error::other)?;
    // SAFETY: `raw` was just returned by pidfd_open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `p` is one valid pollfd for the duration of the call.
        if unsafe { libc::poll(&mut p, 1, ms) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}
