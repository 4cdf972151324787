//! Least privilege of `famfs-daemon run`, on the real kernel (root for most tests; SKIP otherwise).
//!
//! * [`daemon`]: a daemon with probes and a real mount, after its ready line: every thread's
//!   `/proc/PID/task/TID/status` shows the documented set (no effective capability, CAP_SYS_ADMIN
//!   permitted and bounding only, no ambient or inheritable ones, NoNewPrivs 1, Seccomp 2), and the
//!   daemon still serves reads and writes, metrics (probe statistics included), the log poll, SIGHUP
//!   and a clean unmount on SIGTERM. `--no-sandbox` keeps root's set; without a mount nothing stays.
//! * [`filter`]: the seccomp allow-list and the capability drop installed on one test thread:
//!   what is refused (EPERM; clone3 ENOSYS) and what still works.
//! * [`unit`]: `deploy/famfs-daemon.service` passes `systemd-analyze verify` (its `security` exposure
//!   is printed and bounded), sets nothing that needs a mount namespace, and — run with its capability
//!   bounding set and NoNewPrivileges (setpriv) under `strace -f` — its SystemCallFilter= allows every
//!   call the daemon makes, the daemon attaches the same probes as unrestricted root, and nothing it
//!   does once sandboxed is refused.

// Test code: a failed unwrap/expect/assertion is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod daemon;
mod filter;
mod unit;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use famfs_daemon::http::client::Client;
use support::{
    daemon::wait_exit,
    image::uuid_file,
    mounts::{force_unmount, is_mounted},
};

/// The documented steady state of a daemon serving a mount (README, "Least privilege").
pub const CAP_SYS_ADMIN_MASK: u64 = 0x0000_0000_0020_0000;

/// A `famfs-daemon run` (possibly under wrappers such as setpriv or strace) that printed its ready
/// line. On drop: SIGTERM to the daemon's PID, wait (SIGKILL to our child after 15 s), detach the
/// mount if it is still there.
pub struct Launched {
    child: Option<Child>,
    /// The daemon's own PID (a wrapper that forks, like strace, has another one).
    pub pid: i32,
    pub mountpoint: Option<PathBuf>,
    pub ready: String,
    stderr: mpsc::Receiver<String>,
}

impl Launched {
    /// Start `wrapper... famfs-daemon run ARGS` with the host UUID file of `dir` and wait (60 s) for
    /// the ready line.
    pub fn start(dir: &Path, wrapper: &[&str], args: &[&str], mountpoint: Option<&Path>) -> Self {
        let bin = support::DAEMON;
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .arg("run")
            .args(args)
            .env("FAMFS_SYSTEM_UUID_PATH", uuid_file(dir))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn famfs-daemon run");
        let (etx, stderr) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[daemon] {l}");
                let _ = etx.send(l);
            }
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let child_pid = child.id() as i32;
        let mut d = Launched {
            child: Some(child),
            pid: child_pid,
            mountpoint: mountpoint.map(|m| m.canonicalize().unwrap()),
            ready: String::new(),
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) if l.starts_with("famfs-daemon: ready") => break d.ready = l,
                Ok(_) => {}
                Err(_) => panic!("famfs-daemon did not print its ready line"),
            }
        }
        // Under a forking wrapper the daemon is our child's only child.
        let children = format!("/proc/{child_pid}/task/{child_pid}/children");
        if let Some(p) = std::fs::read_to_string(children)
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        {
            d.pid = p;
        }
        d
    }

    pub fn addr(&self) -> SocketAddr {
        self.ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix("listen="))
            .and_then(|a| a.parse().ok())
            .unwrap()
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr(), Duration::from_secs(10)).unwrap()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of the daemon this test started.
        unsafe { libc::kill(self.pid, sig) };
    }

    /// Wait (15 s) for a stderr line containing `needle`; returns it, or panics with what was seen.
    pub fn wait_stderr(&self, needle: &str) -> String {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self
                .stderr
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(l) if l.contains(needle) => return l,
                Ok(l) => seen.push(l),
                Err(_) => panic!("no stderr line with {needle:?}; saw:\n{}", seen.join("\n")),
            }
        }
    }

    /// SIGTERM and wait (30 s) for our child to exit: whether it exited with status 0, the stderr
    /// lines not yet consumed, and whether its mount was still there afterwards (then detached).
    pub fn stop(&mut self) -> Stopped {
        let Some(mut child) = self.child.take() else {
            return Stopped::default();
        };
        self.signal(libc::SIGTERM);
        let ok = match wait_exit(&mut child, Duration::from_secs(30)) {
            Ok(Some(s)) => s.success(),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                false
            }
        };
        // The reader thread ends at EOF once the daemon (and any wrapper) is gone.
        let mut rest = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(l) = self
            .stderr
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            rest.push(l);
        }
        let left_mounted = self.mountpoint.as_deref().is_some_and(is_mounted);
        if let Some(m) = &self.mountpoint {
            force_unmount(m);
        }
        Stopped {
            ok,
            stderr: rest,
            left_mounted,
        }
    }
}

/// How a [`Launched`] daemon ended.
#[derive(Debug, Default)]
pub struct Stopped {
    pub ok: bool,
    pub stderr: Vec<String>,
    pub left_mounted: bool,
}

impl Drop for Launched {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every thread of `pid`: (tid, name, status text).
pub fn thread_status(pid: i32) -> Vec<(u32, String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let e = e.unwrap();
        let tid: u32 = e.file_name().to_str().unwrap().parse().unwrap();
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let name = field(&status, "Name").to_string();
        out.push((tid, name, status));
    }
    out.sort_by_key(|t| t.0);
    out
}

/// The value of `Key:` in a status file.
pub fn field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map_or("", str::trim)
}

/// The value of the first sample of `metric` whose labels contain `label` (e.g. `path="/a.bin"`).
pub fn metric(text: &str, metric: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with('{'))
        .find(|l| l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `command` is on PATH.
pub fn have(command: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .output()
        .is_ok_and(|o| o.status.success())
}
