//! famfs server metadata benchmark (not a test; root needed, SKIP otherwise). Every figure is
//! printed beside a baseline measured in the same run, as a bench row too:
//! * `stat` ops/s over 5,000 files through the mount, warm (names and attributes cached by the kernel)
//!   and with caching off (`attr timeout 0`: every stat is a LOOKUP + GETATTR round trip to our
//!   server), against `stat` of the same tree on tmpfs;
//! * cold `stat` right after mount (one pass over a fresh mount: every name a LOOKUP) against
//!   `squashfuse_ll` serving an uncompressed squashfs of the same tree, fresh mounts alternating.
//!
//! The read path has its own bench (`read.rs`). Run: `cargo bench -p famfs-daemon --bench server`.

// Benchmark code run by hand: a failed unwrap/expect/assertion aborts the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/mod.rs"]
mod common;

use std::{ffi::CString, os::unix::ffi::OsStrExt, path::Path, time::Duration};

use common::{Served, Setup, SquashLl, Stats};
use support::{GIB, bench, can_mount, image::mkfs};

const FILES: usize = 5000;
const DIRS: usize = 25;
const ROUNDS: usize = 5;

fn rel_paths() -> Vec<String> {
    (0..FILES)
        .map(|i| format!("d{:02}/f{:04}", i % DIRS, i))
        .collect()
}

fn cpaths(root: &Path, rel: &[String]) -> Vec<CString> {
    rel.iter()
        .map(|r| CString::new(root.join(r).as_os_str().as_bytes()).unwrap())
        .collect()
}

/// stat(2) every path once; ops/s.
fn stat_pass(paths: &[CString]) -> f64 {
    let t = std::time::Instant::now();
    for p in paths {
        // SAFETY: an all-zero stat is valid for the kernel to overwrite; `p` is NUL-terminated.
        let rc = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            libc::stat(p.as_ptr(), &mut st)
        };
        assert_eq!(rc, 0, "stat {p:?}: {}", std::io::Error::last_os_error());
    }
    paths.len() as f64 / t.elapsed().as_secs_f64()
}

fn row(figure: &str, ours: &Stats, base_name: &str, base: &Stats) {
    bench::row(&bench::Row {
        figure,
        ours: ours.show(0, "stat/s"),
        baseline: format!("{base_name} {}", base.show(0, "stat/s")),
        ratio: Some(ours.median() / base.median()),
        goal: "",
        met: None,
    });
}

/// Warm and uncached stat on our mount against tmpfs, alternating rounds (round 0 warms up).
fn warm_and_uncached(img: &Path, mnt: &Path, shm: &Path, rel: &[String]) {
    let base_paths = cpaths(shm, rel);
    let warm_mount = Served::new(img, mnt, Setup::default());
    let warm_paths = cpaths(&warm_mount.path, rel);
    let (mut base, mut warm) = (Stats::default(), Stats::default());
    for round in 0..=ROUNDS {
        let b = stat_pass(&base_paths);
        let w = stat_pass(&warm_paths);
        if round > 0 {
            base.push(b);
            warm.push(w);
        }
    }
    drop(warm_mount);
    let cold_mount = Served::new(
        img,
        mnt,
        Setup {
            ttl: Duration::ZERO,
            ..Default::default()
        },
    );
    let paths = cpaths(&cold_mount.path, rel);
    let (mut base2, mut uncached) = (Stats::default(), Stats::default());
    for round in 0..=ROUNDS {
        let b = stat_pass(&base_paths);
        let u = stat_pass(&paths);
        if round > 0 {
            base2.push(b);
            uncached.push(u);
        }
    }
    println!(
        "stat, {FILES} files: tmpfs {} | famfs mount warm {} | tmpfs {} | famfs mount uncached \
         (attr timeout 0: every stat a LOOKUP+GETATTR round trip) {}",
        base.show(0, "stat/s"),
        warm.show(0, "stat/s"),
        base2.show(0, "stat/s"),
        uncached.show(0, "stat/s"),
    );
    row(
        &format!("stat of {FILES} files, warm (kernel-cached attributes)"),
        &warm,
        "tmpfs",
        &base,
    );
    row(
        &format!("stat of {FILES} files, uncached (--attr-timeout 0)"),
        &uncached,
        "tmpfs",
        &base2,
    );
}

/// Cold stat: one pass over a fresh mount, ours and squashfuse_ll alternating.
fn cold(img: &Path, mnt: &Path, sqfs: &Path, sq_mnt: &Path, rel: &[String]) {
    let (mut ours, mut squash) = (Stats::default(), Stats::default());
    for round in 0..=ROUNDS {
        for k in 0..2 {
            let v = if (round + k) % 2 == 0 {
                let m = Served::new(img, mnt, Setup::default());
                stat_pass(&cpaths(&m.path, rel))
            } else {
                let m = SquashLl::mount(sqfs, sq_mnt);
                stat_pass(&cpaths(&m.path, rel))
            };
            if round > 0 {
                if (round + k) % 2 == 0 {
                    ours.push(v);
                } else {
                    squash.push(v);
                }
            }
        }
    }
    println!(
        "cold stat right after mount, {FILES} files: famfs mount {} | squashfuse_ll {}",
        ours.show(0, "stat/s"),
        squash.show(0, "stat/s"),
    );
    row(
        &format!("cold stat of {FILES} files right after mount"),
        &ours,
        "squashfuse_ll",
        &squash,
    );
}

fn main() {
    if !can_mount("bench server") {
        bench::skip("server", "needs root (mount(2) of FUSE filesystems)");
        return;
    }
    let t = std::time::Instant::now();
    let shm = tempfile::tempdir_in("/dev/shm").expect("a tmpfs at /dev/shm");
    let d = shm.path();
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
    drop(image);
    // Baseline: the same tree of 4 KiB files on tmpfs, and a squashfs of it.
    let tree = d.join("tree");
    for k in 0..DIRS {
        std::fs::create_dir_all(tree.join(format!("d{k:02}"))).unwrap();
    }
    for r in &rel {
        std::fs::write(tree.join(r), [0u8; 4096]).unwrap();
    }
    println!(
        "setup: image with {FILES} files in {DIRS} dirs on tmpfs, the same tree on tmpfs, in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mnt = support::mounts::mnt_dir(d, "mnt");
    warm_and_uncached(&img, &mnt, &tree, &rel);
    match SquashLl::unavailable() {
        Some(why) => bench::skip("server: cold stat vs squashfuse_ll", &why),
        None => {
            let sqfs = d.join("tree.sqfs");
            SquashLl::make_image(&tree, &sqfs);
            let sq_mnt = support::mounts::mnt_dir(d, "sq");
            cold(&img, &mnt, &sqfs, &sq_mnt, &rel);
        }
    }
}
