//! Helpers for the famfs server tests (and `benches/server.rs`): sparse temp images built with the
//! format library, a `famfs-daemon run` process guard that waits for the ready line, answers HTTP
//! GETs, and always unmounts and kills by PID, the image CLI, mountinfo lookups and file digests.
// Included by several test binaries (and `benches/server.rs`), each using a part of it.
#![allow(dead_code)]
// Test support: a failed unwrap/expect/panic is the calling test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::{self, BufRead, BufReader},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use famfs_daemon::famfs::{Extent, Image, ImageOptions, MkfsOptions};

pub const MIB: u64 = 1 << 20;
pub const MIB2: u64 = 2 << 20;
pub const GIB: u64 = 1 << 30;

/// The host UUID every test image is made with (written to the temp dir's `system_uuid` file, so the
/// daemons and the image CLI see themselves as the image's master).
pub const HOST: [u8; 16] = [
    0x5e, 0x0f, 0x7a, 0x2c, 0xd3, 0xb1, 0x4a, 0x96, 0xb8, 0xe4, 0x21, 0xc7, 0xf0, 0x9a, 0x6d, 0x3b,
];

/// Root, or a SKIP line.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    println!("SKIP: {test}: needs root (mount(2) of FUSE filesystems)");
    false
}

/// Root and /dev/fuse, or a SKIP line.
pub fn can_mount(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    if !Path::new("/dev/fuse").exists() {
        println!("SKIP: {test}: /dev/fuse is missing");
        return false;
    }
    true
}

/// The `system_uuid` file holding [`HOST`] in `dir`.
pub fn uuid_file(dir: &Path) -> PathBuf {
    let p = dir.join("system_uuid");
    if !p.exists() {
        let text = format!(
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}\n",
            HOST[0],
            HOST[1],
            HOST[2],
            HOST[3],
            HOST[4],
            HOST[5],
            HOST[6],
            HOST[7],
            HOST[8],
            HOST[9],
            HOST[10],
            HOST[11],
            HOST[12],
            HOST[13],
            HOST[14],
            HOST[15]
        );
        std::fs::write(&p, text).expect("write system_uuid");
    }
    p
}

/// A fresh sparse image file `name` of `size` bytes in `dir`, formatted with [`HOST`] as master.
pub fn mkfs(dir: &Path, name: &str, size: u64) -> (PathBuf, Image) {
    let p = dir.join(name);
    let o = MkfsOptions {
        size: Some(size),
        host_uuid: Some(HOST),
        system_uuid_path: Some(uuid_file(dir)),
        ..Default::default()
    };
    let img = Image::mkfs(&p, &o).expect("mkfs");
    (p, img)
}

/// Reopen an image writable as its master.
pub fn open_rw(path: &Path) -> Image {
    Image::open_with(
        path,
        &ImageOptions {
            writable: true,
            host_uuid: Some(HOST),
            ..Default::default()
        },
    )
    .expect("open image")
}

pub fn ext(offset: u64, len: u64) -> Extent {
    Extent {
        devindex: 0,
        offset,
        len,
    }
}

/// Deterministic file contents.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 12) as u8))
        .collect()
}

/// Create `path` of `data.len()` bytes (simple allocation) and write `data` into it; returns its id.
pub fn put(img: &mut Image, path: &str, data: &[u8]) -> u64 {
    let id = img
        .creat(path, data.len() as u64, 0o644, 0, 0, None)
        .unwrap_or_else(|e| panic!("creat {path}: {e}"));
    if !data.is_empty() {
        img.write_file(id, 0, data)
            .unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
    id
}

/// The `famfs-daemon` binary.
pub fn daemon_bin() -> &'static str {
    env!("CARGO_BIN_EXE_famfs-daemon")
}

/// Run `famfs-daemon image ARGS` with the host UUID file of `dir`; panics unless it succeeds.
pub fn image_cli(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(daemon_bin())
        .arg("image")
        .args(args)
        .env("FAMFS_SYSTEM_UUID_PATH", uuid_file(dir))
        .output()
        .expect("run famfs-daemon image");
    assert!(
        out.status.success(),
        "famfs-daemon image {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// True when a FUSE mount is at `mountpoint` (canonical path) in /proc/self/mountinfo.
pub fn is_mounted(mountpoint: &Path) -> bool {
    famfs_daemon::fuse::channel::mount_connection(mountpoint).is_ok()
}

/// Detach whatever FUSE mount is at `mountpoint` (test cleanup).
pub fn force_unmount(mountpoint: &Path) {
    while is_mounted(mountpoint) {
        if famfs_daemon::fuse::channel::umount_detach(mountpoint).is_err() {
            break;
        }
    }
}

/// A running `famfs-daemon run --image … --mountpoint …`: waits for the ready line; on drop sends
/// SIGTERM to its PID, waits (SIGKILL after 15 s), and detaches the mount if it is still there.
pub struct Daemon {
    child: Option<Child>,
    pub mountpoint: PathBuf,
    pub ready_line: String,
    pub stderr: mpsc::Receiver<String>,
}

impl Daemon {
    /// Start a daemon with `--no-probes` plus `extra` arguments; `dir` holds the host UUID file.
    pub fn start(dir: &Path, image: &Path, mountpoint: &Path, extra: &[&str]) -> Daemon {
        let mut child = Command::new(daemon_bin())
            .arg("run")
            .args(["--listen", "127.0.0.1:0", "--no-probes"])
            .arg("--image")
            .arg(image)
            .arg("--mountpoint")
            .arg(mountpoint)
            .args(extra)
            .env("FAMFS_SYSTEM_UUID_PATH", uuid_file(dir))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn famfs-daemon run");
        let (etx, erx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[daemon] {l}");
                let _ = etx.send(l);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut d = Daemon {
            child: Some(child),
            mountpoint: mountpoint
                .canonicalize()
                .unwrap_or(mountpoint.to_path_buf()),
            ready_line: String::new(),
            stderr: erx,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.starts_with("famfs-daemon: ready") => {
                    d.ready_line = l;
                    break;
                }
                Ok(_) => {}
                Err(_) => {
                    let status = d.child.as_mut().map(|c| c.try_wait());
                    panic!("famfs-daemon did not print its ready line (status {status:?})");
                }
            }
        }
        d
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Value of `key=` in the ready line.
    pub fn field(&self, key: &str) -> Option<String> {
        let k = format!("{key}=");
        self.ready_line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(k.as_str()).map(str::to_string))
    }

    /// `GET path` on the daemon's HTTP address (from the ready line): (status code, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let addr = self.field("listen").expect("listen= in the ready line");
        let mut s = std::net::TcpStream::connect(&addr).expect("connect to the daemon");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read the response");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (code, body.to_string())
    }

    /// Whether the process is still running (not exited, not a zombie we reaped).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.pid();
        if pid > 0 {
            // SAFETY: kill(2) on our own child's PID.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// SIGTERM and wait (at most 15 s, then SIGKILL); returns the exit status (None if it had to
    /// be killed).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on our own child's PID.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = match wait_exit(&mut child, Duration::from_secs(15)) {
            Ok(Some(s)) => Some(s),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        };
        force_unmount(&self.mountpoint);
        status
    }

    /// SIGKILL (the mount is left stale) and reap it.
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
        force_unmount(&self.mountpoint);
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

/// `sha256sum` of a file, as the hex digest.
pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Poll `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
