//! famfs server benchmark (not a test; root needed, SKIP otherwise). Every figure is printed beside a
//! baseline measured in the same run:
//! * `stat` ops/s over 5,000 files through the mount, warm (names and attributes cached by the kernel)
//!   and with caching off (`attr timeout 0`: every stat is a LOOKUP + GETATTR round trip to our
//!   server), against `stat` of 5,000 files on tmpfs;
//! * sequential read GB/s of a 512 MiB file through the mount (READ requests served by `pread` of the
//!   image's descriptor) against `memcpy` GB/s from a mapping of the same bytes.
//!
//! Run: `cargo bench -p famfs-daemon --bench server`.

// Benchmark code run by hand: a failed unwrap/expect/assertion aborts the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    ffi::CString,
    hint::black_box,
    io::Read,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    sync::{
        Arc,
        mpsc::{Receiver, RecvTimeoutError, channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use famfs_daemon::{
    fuse::{Mount, MountOptions, Session, SessionConfig},
    server::{FamfsFs, ServerConfig},
};
use support::{
    GIB, MIB, can_mount,
    image::{mkfs, put},
    mounts::force_unmount,
    pattern,
};

const FILES: usize = 5000;
const DIRS: usize = 25;
const READ_SIZE: u64 = 512 * MIB;

/// An in-process mount of the image, served by 4 workers; unmounted on drop.
struct Served {
    mount: Option<Mount>,
    /// Sent by the serving thread as `Session::run` returns (disconnected if it panicked).
    done: Receiver<std::io::Result<()>>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl Served {
    fn new(img: &Path, mnt: &Path, ttl: Duration) -> Served {
        let fs = FamfsFs::open(
            img,
            &ServerConfig {
                ttl,
                ..Default::default()
            },
        )
        .expect("open image");
        let (mount, ch) = Mount::new(mnt, &MountOptions::default()).expect("mount");
        let cfg = SessionConfig {
            connection: mount.connection(),
            ..Default::default()
        };
        let session = Arc::new(Session::new(fs, ch, cfg));
        let s2 = session.clone();
        let (tx, done) = channel();
        let thread = std::thread::spawn(move || {
            let _ = tx.send(s2.run(4));
        });
        session
            .wait_negotiated(Duration::from_secs(10))
            .expect("INIT answered");
        Served {
            path: mount.path().to_path_buf(),
            mount: Some(mount),
            done,
            thread: Some(thread),
        }
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

fn rel_paths() -> Vec<String> {
    (0..FILES)
        .map(|i| format!("d{:02}/f{:04}", i % DIRS, i))
        .collect()
}

/// stat(2) every path `rounds` times; returns ops/s of the best round.
fn stat_rate(paths: &[CString], rounds: usize) -> f64 {
    let mut best = 0f64;
    for _ in 0..rounds {
        let t = Instant::now();
        for p in paths {
            // SAFETY: an all-zero stat is valid for the kernel to overwrite; `p` is NUL-terminated.
            let rc = unsafe {
                let mut st: libc::stat = std::mem::zeroed();
                libc::stat(p.as_ptr(), &mut st)
            };
            assert_eq!(rc, 0, "stat {p:?}: {}", std::io::Error::last_os_error());
        }
        best = best.max(paths.len() as f64 / t.elapsed().as_secs_f64());
    }
    best
}

fn cpaths(root: &Path, rel: &[String]) -> Vec<CString> {
    rel.iter()
        .map(|r| CString::new(root.join(r).as_os_str().as_bytes()).unwrap())
        .collect()
}

/// Read `path` sequentially with a 1 MiB buffer; GB/s of the best of `rounds` passes (a fresh open
/// each time: the server does not keep the page cache across opens).
fn read_rate(path: &Path, rounds: usize) -> f64 {
    let mut buf = vec![0u8; MIB as usize];
    let mut best = 0f64;
    for _ in 0..rounds {
        let mut f = std::fs::File::open(path).unwrap();
        let t = Instant::now();
        let mut n = 0u64;
        loop {
            let k = f.read(&mut buf).unwrap();
            if k == 0 {
                break;
            }
            n += k as u64;
        }
        assert_eq!(n, READ_SIZE);
        black_box(&buf);
        best = best.max(n as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// memcpy of the file's device range from a mapping of the image into a 1 MiB buffer; best GB/s.
fn memcpy_rate(img: &Path, dev_off: u64, rounds: usize) -> f64 {
    let f = std::fs::File::open(img).unwrap();
    // SAFETY: a read-only mapping of our own benchmark image, which nothing writes meanwhile.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(dev_off)
            .len(READ_SIZE as usize)
            .map(&f)
    }
    .unwrap();
    let mut buf = vec![0u8; MIB as usize];
    let mut best = 0f64;
    for _ in 0..rounds {
        let t = Instant::now();
        for chunk in map.chunks(MIB as usize) {
            buf[..chunk.len()].copy_from_slice(chunk);
            black_box(&buf);
        }
        best = best.max(READ_SIZE as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

fn main() {
    if !can_mount("bench server") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = Instant::now();
    let (img, mut image) = mkfs(d, "famfs.img", 16 * GIB);
    for k in 0..DIRS {
        image
            .mkdir(&format!("d{k:02}"), 0o755, 0, 0, false)
            .unwrap();
    }
    let rel = rel_paths();
    for r in &rel {
        image.creat(r, 4096, 0o644, 0, 0, None).unwrap();
    }
    let data = pattern(READ_SIZE as usize, 1);
    let big = put(&mut image, "big.bin", &data);
    let dev_off = match image.namespace().get(big).and_then(|i| i.fmap()) {
        Some(famfs_daemon::famfs::Fmap::Simple(e)) if e.len() == 1 => e[0].offset,
        other => panic!("big.bin should be one simple extent: {other:?}"),
    };
    drop(image);
    drop(data);
    println!(
        "setup: image with {FILES} files in {DIRS} dirs + a {} MiB file in {:.1} s",
        READ_SIZE / MIB,
        t.elapsed().as_secs_f64()
    );

    // Baseline: the same tree of empty files on tmpfs.
    let shm = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
    for k in 0..DIRS {
        std::fs::create_dir(shm.path().join(format!("d{k:02}"))).unwrap();
    }
    for r in &rel {
        std::fs::write(shm.path().join(r), b"").unwrap();
    }
    let base_paths = cpaths(shm.path(), &rel);
    stat_rate(&base_paths, 1);
    let base = stat_rate(&base_paths, 5);

    let mnt = d.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let (warm, uncached, read, memcpy);
    {
        let served = Served::new(&img, &mnt, Duration::from_secs(30));
        let paths = cpaths(&served.path, &rel);
        stat_rate(&paths, 1);
        warm = stat_rate(&paths, 5);
        let big = served.path.join("big.bin");
        read_rate(&big, 1);
        read = read_rate(&big, 3);
        memcpy = memcpy_rate(&img, dev_off, 3);
    }
    {
        let served = Served::new(&img, &mnt, Duration::ZERO);
        let paths = cpaths(&served.path, &rel);
        uncached = stat_rate(&paths, 3);
    }
    println!(
        "stat, {FILES} files: tmpfs {:.0} ops/s | famfs mount warm {:.0} ops/s (ratio {:.2}) | \
         famfs mount uncached (every stat a LOOKUP+GETATTR round trip) {:.0} ops/s (ratio {:.3})",
        base,
        warm,
        warm / base,
        uncached,
        uncached / base
    );
    println!(
        "sequential read, {} MiB: memcpy from the image mapping {:.2} GB/s | through the mount {:.2} GB/s (ratio {:.3})",
        READ_SIZE / MIB,
        memcpy,
        read,
        read / memcpy
    );
}
