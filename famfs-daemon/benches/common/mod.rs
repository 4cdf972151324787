//! What the mount benchmarks (`server.rs`, `read.rs`, `probe_cost.rs`) share: an in-process mount of a famfs image
//! served by our session ([`Served`]), a `squashfuse_ll` mount as the same-run reference of a FUSE
//! server this project did not write ([`SquashLl`]), and the median / spread of alternating rounds
//! ([`Stats`]). Included by each bench as `#[path = "common/mod.rs"] mod common;` next to the test
//! support module (`support`), which it uses. Owns bench plumbing only: no figure is computed here.

// Each bench uses a part of it.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        mpsc::{Receiver, RecvTimeoutError, channel},
    },
    thread::JoinHandle,
    time::Duration,
};

use famfs_daemon::{
    fuse::{Mount, MountOptions, Session, SessionConfig},
    server::{FamfsFs, ServerConfig},
};

use crate::support::mounts::{MountGuard, force_unmount, mount_connection};

/// How a [`Served`] mount is set up.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// How long the kernel may cache names and attributes.
    pub ttl: Duration,
    pub workers: usize,
    /// Read-ahead, bytes: announced in INIT and set on the mount once INIT is answered, as the
    /// daemon's `--read-ahead` does (0: the kernel's default is left).
    pub read_ahead: u32,
    /// Give the workers pipes for spliced READ replies (`SessionConfig::splice_reads`); whether
    /// they are used is `Session::set_splice_reads`.
    pub splice: bool,
    /// Extra workers wait off the device until requests queue up
    /// (`SessionConfig::on_demand_workers`, the daemon's `--on-demand-workers`, off by default).
    pub on_demand: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            ttl: Duration::from_secs(30),
            workers: 4,
            read_ahead: 0,
            splice: false,
            on_demand: false,
        }
    }
}

/// An in-process mount of a famfs image served by our session; unmounted on drop.
pub struct Served {
    mount: Option<Mount>,
    pub session: Arc<Session<FamfsFs>>,
    /// Sent by the serving thread as `Session::run` returns (disconnected if it panicked).
    done: Receiver<std::io::Result<()>>,
    thread: Option<JoinHandle<()>>,
    pub path: PathBuf,
    /// The FUSE connection (the mount's device minor), what the probes filter on.
    pub connection: u32,
}

impl Served {
    pub fn new(img: &Path, mnt: &Path, setup: Setup) -> Served {
        let fs = FamfsFs::open(
            img,
            &ServerConfig {
                ttl: setup.ttl,
                ..Default::default()
            },
        )
        .expect("open image");
        let (mount, ch) = Mount::new(mnt, &MountOptions::default()).expect("mount");
        let connection = mount.connection();
        let cfg = SessionConfig {
            connection,
            max_readahead: setup.read_ahead,
            splice_reads: setup.splice,
            on_demand_workers: setup.on_demand,
            ..Default::default()
        };
        let session = Arc::new(Session::new(fs, ch, cfg));
        let s2 = session.clone();
        let (tx, done) = channel();
        let workers = setup.workers;
        let thread = std::thread::spawn(move || {
            let _ = tx.send(s2.run(workers));
        });
        session
            .wait_negotiated(Duration::from_secs(10))
            .expect("INIT answered");
        if setup.read_ahead > 0 {
            mount
                .set_read_ahead_kb(setup.read_ahead / 1024)
                .expect("set read-ahead");
        }
        Served {
            connection,
            path: mount.path().to_path_buf(),
            mount: Some(mount),
            session,
            done,
            thread: Some(thread),
        }
    }

    /// The mount's kernel read-ahead, KiB.
    pub fn read_ahead_kb(&self) -> u32 {
        self.mount
            .as_ref()
            .map(|m| m.read_ahead_kb().expect("read-ahead"))
            .unwrap_or(0)
    }

    /// Change the mount's read-ahead (takes effect for files opened afterwards).
    pub fn set_read_ahead_kb(&self, kb: u32) {
        if let Some(m) = &self.mount {
            m.set_read_ahead_kb(kb).expect("set read-ahead");
        }
    }

    /// READ requests served so far.
    pub fn reads(&self) -> u64 {
        self.session
            .stats()
            .requests(famfs_daemon::fuse::abi::opcode::READ)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut m) = self.mount.take() {
            let _ = m.unmount();
        }
        // Wait for the session to end (at most 10 s; a session still running is left behind).
        let ended = !matches!(
            self.done.recv_timeout(Duration::from_secs(10)),
            Err(RecvTimeoutError::Timeout)
        );
        if ended && let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        force_unmount(&self.path);
    }
}

/// A `squashfuse_ll` mount of a squashfs image; unmounted on drop (the daemonized server then
/// ends by itself).
pub struct SquashLl {
    guard: MountGuard,
    pub path: PathBuf,
}

impl SquashLl {
    /// Why it cannot run here, if so.
    pub fn unavailable() -> Option<String> {
        for p in ["squashfuse_ll", "mksquashfs"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {p}")])
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                return Some(format!(
                    "{p} not installed (Debian packages squashfuse, squashfs-tools)"
                ));
            }
        }
        None
    }

    /// An uncompressed squashfs of directory `src` at `img` (no compression of inodes, data,
    /// fragments or xattrs: reading it costs what reading our image costs, plus squashfs's own
    /// lookups), with `mksquashfs`'s default 128 KiB block.
    pub fn make_image(src: &Path, img: &Path) {
        let st = Command::new("mksquashfs")
            .args([src.as_os_str(), img.as_os_str()])
            .args([
                "-noI",
                "-noD",
                "-noF",
                "-noX",
                "-quiet",
                "-no-progress",
                "-noappend",
            ])
            .status()
            .expect("mksquashfs");
        assert!(st.success(), "mksquashfs failed");
    }

    /// Mount `img` at `mnt` (canonical) with `squashfuse_ll`, which daemonizes once the mount exists.
    pub fn mount(img: &Path, mnt: &Path) -> SquashLl {
        let st = Command::new("squashfuse_ll")
            .arg(img)
            .arg(mnt)
            .status()
            .expect("squashfuse_ll");
        assert!(st.success(), "squashfuse_ll failed");
        assert!(mount_connection(mnt).is_some(), "squashfuse_ll mounted");
        SquashLl {
            guard: MountGuard(mnt.to_path_buf()),
            path: mnt.to_path_buf(),
        }
    }
}

impl Drop for SquashLl {
    fn drop(&mut self) {
        self.guard.unmount();
    }
}

/// Figures of alternating rounds: median and spread.
#[derive(Clone, Debug, Default)]
pub struct Stats(pub Vec<f64>);

impl Stats {
    pub fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    /// `median (min–max, n rounds)` with `prec` decimals and `unit`.
    pub fn show(&self, prec: usize, unit: &str) -> String {
        format!(
            "{:.prec$} {unit} ({:.prec$}–{:.prec$}, {} rounds)",
            self.median(),
            self.min(),
            self.max(),
            self.0.len()
        )
    }
}
