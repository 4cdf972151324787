//! Read-path benchmark of the stock-kernel data path (root needed, SKIP otherwise): every READ of a
//! file on our mount is a FUSE request served from the image (spliced into `/dev/fuse` by default,
//! see the splice lever; else `pread` into a buffer and `writev`). The image lives on tmpfs (a
//! famfs image lives in memory), and every figure is printed beside references measured in the
//! same run, in alternating rounds (medians, with the spread):
//! * buffered sequential read of a 512 MiB file (1 MiB `read`s) through our mount, against the same
//!   file on tmpfs and through `squashfuse_ll` serving an uncompressed squashfs of it (also on
//!   tmpfs). Our mount's and squashfuse_ll's page cache of the file is dropped before each round
//!   (`posix_fadvise(DONTNEED)`, checked empty with `cachestat(2)`), so every byte goes to the
//!   server; the READ requests counted by our session confirm it;
//! * 4 KiB random reads at fixed-seed offsets, buffered (cache dropped first) and with O_DIRECT
//!   (every read a READ request), against squashfuse_ll with the same flags and tmpfs (which serves
//!   O_DIRECT from its page cache: the floor of a 4 KiB copy, not a like-for-like device);
//! * the levers on our mount: read-ahead sizes (one mount, its bdi changed between rounds), spliced
//!   against copied READ replies at 512 KiB and 1 MiB read-ahead (toggled on one mount between
//!   rounds) and worker counts, all blocking on `/dev/fuse` or on demand, with one reader and two
//!   at once (one mount each).
//!
//! Run: `cargo bench -p famfs-daemon --bench read` (or `cargo xtask bench --bench read`).

// Benchmark code run by hand: a failed unwrap/expect/assertion aborts the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/mod.rs"]
mod common;

use std::{
    fs::File,
    io::Read,
    os::{
        fd::AsRawFd,
        unix::fs::{FileExt, OpenOptionsExt},
    },
    path::Path,
    time::Instant,
};

use common::{Served, Setup, SquashLl, Stats};
use support::{
    GIB, MIB, bench, can_mount,
    image::{mkfs, put},
    pattern,
};

const SIZE: u64 = 512 * MIB;
const ROUNDS: usize = 5;
/// 4 KiB reads per random round.
const RANDOM_READS: usize = 10_000;
const SEED: u64 = 0x5eed_f00d_1234_5678;
/// The read-ahead of the daemon's default `--read-ahead`, bytes.
const DEFAULT_RA: u32 = 512 << 10;

/// The kernel's per-file page-cache pages of `f` (cachestat(2), Linux 6.5).
fn cached_pages(f: &File) -> u64 {
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Cachestat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    let r = Range { off: 0, len: 0 };
    let mut cs = Cachestat::default();
    // SAFETY: cachestat reads `r` and writes `cs`, both valid for the call; 451 is cachestat on
    // every architecture.
    let rc = unsafe {
        libc::syscall(
            451,
            f.as_raw_fd(),
            &r as *const Range,
            &mut cs as *mut Cachestat,
            0u32,
        )
    };
    assert_eq!(rc, 0, "cachestat: {}", std::io::Error::last_os_error());
    cs.nr_cache
}

/// Drop the page cache of `path` (FUSE mounts); asserts it is empty afterwards.
fn drop_cache(path: &Path) {
    let f = File::open(path).unwrap();
    // SAFETY: a valid fd; the advice only drops clean cached pages.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "fadvise");
    assert_eq!(cached_pages(&f), 0, "{} still cached", path.display());
}

/// Buffered sequential read of `path` with 1 MiB `read`s; GB/s.
fn seq_read(path: &Path, buf: &mut [u8]) -> f64 {
    let mut f = File::open(path).unwrap();
    let t = Instant::now();
    let mut n = 0u64;
    loop {
        let k = f.read(buf).unwrap();
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    let s = t.elapsed().as_secs_f64();
    assert_eq!(n, SIZE);
    std::hint::black_box(&buf);
    n as f64 / s / 1e9
}

/// `RANDOM_READS` 4 KiB-aligned offsets in the file, fixed seed.
fn offsets() -> Vec<u64> {
    let mut x = SEED;
    (0..RANDOM_READS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (SIZE / 4096)) * 4096
        })
        .collect()
}

/// 4 KiB `pread`s at `offs`; thousands of reads per second. `None` when `O_DIRECT` is refused.
fn random_read(path: &Path, direct: bool, offs: &[u64], want: &[u8]) -> Option<f64> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    let f = match o.open(path) {
        Ok(f) => f,
        Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => return None,
        Err(e) => panic!("open {}: {e}", path.display()),
    };
    // A page-aligned 4 KiB buffer (O_DIRECT).
    let mut raw = vec![0u8; 8192];
    let skip = raw.as_ptr().align_offset(4096);
    let buf = &mut raw[skip..skip + 4096];
    let t = Instant::now();
    for &off in offs {
        f.read_exact_at(buf, off).unwrap();
    }
    let s = t.elapsed().as_secs_f64();
    // The last read's bytes are the file's.
    let last = *offs.last().unwrap() as usize;
    assert_eq!(&buf[..], &want[last..last + 4096]);
    Some(offs.len() as f64 / s / 1e3)
}

fn ratio_row(figure: &str, ours: &Stats, unit: &str, base_name: &str, base: &Stats, goal: f64) {
    let r = ours.median() / base.median();
    let goal_text = if goal > 0.0 {
        format!("≥ ×{}", bench::ratio_fmt(goal))
    } else {
        String::new()
    };
    let prec = if unit == "GB/s" { 2 } else { 1 };
    bench::row(&bench::Row {
        figure,
        ours: ours.show(prec, unit),
        baseline: format!("{base_name} {}", base.show(prec, unit)),
        ratio: Some(r),
        goal: &goal_text,
        met: (goal > 0.0).then_some(r >= goal),
    });
}

/// What the run measures against: the tmpfs copy and the squashfuse_ll mount.
struct Refs<'a> {
    tmpfs: &'a Path,
    squash: &'a Path,
}

/// Sequential reads through our mount as the daemon serves it by default (`ours`), through a
/// second mount with `--on-demand-workers true` (`on_demand`), tmpfs and squashfuse_ll, alternating.
fn sequential(ours: &Served, on_demand: &Served, refs: &Refs<'_>) {
    let mut buf = vec![0u8; MIB as usize];
    let files = [
        ours.path.join("big.bin"),
        on_demand.path.join("big.bin"),
        refs.tmpfs.to_path_buf(),
        refs.squash.join("big.bin"),
    ];
    let mut got = vec![Stats::default(); files.len()];
    let mut reads = Stats::default();
    for round in 0..=ROUNDS {
        // Round 0 warms up (the tmpfs copy, the servers' code paths) and is not counted.
        for k in 0..files.len() {
            let i = (round + k) % files.len();
            if i != 2 {
                drop_cache(&files[i]);
            }
            let before = ours.reads();
            let v = seq_read(&files[i], &mut buf);
            if round > 0 {
                got[i].push(v);
                if i == 0 {
                    reads.push((ours.reads() - before) as f64);
                }
            }
        }
    }
    let per_read = SIZE as f64 / reads.median() / 1024.0;
    println!(
        "sequential read, {} MiB, buffered (read-ahead {} KiB, 4 workers): ours {} | ours with \
         on-demand workers {} | tmpfs {} | squashfuse_ll {} | READ requests per pass {:.0} \
         ({per_read:.0} KiB each)",
        SIZE / MIB,
        ours.read_ahead_kb(),
        got[0].show(2, "GB/s"),
        got[1].show(2, "GB/s"),
        got[2].show(2, "GB/s"),
        got[3].show(2, "GB/s"),
        reads.median(),
    );
    assert!(
        reads.min() >= (SIZE / MIB) as f64,
        "every byte went to the server: at least one READ per MiB"
    );
    let fig = format!("sequential read, {} MiB, buffered, vs tmpfs", SIZE / MIB);
    ratio_row(&fig, &got[0], "GB/s", "tmpfs", &got[2], 0.33);
    let fig = format!(
        "sequential read, {} MiB, buffered, --on-demand-workers true, vs tmpfs",
        SIZE / MIB
    );
    ratio_row(&fig, &got[1], "GB/s", "tmpfs", &got[2], 0.33);
    let fig = format!(
        "sequential read, {} MiB, buffered, vs squashfuse_ll",
        SIZE / MIB
    );
    ratio_row(&fig, &got[0], "GB/s", "squashfuse_ll", &got[3], 0.0);
}

fn random(ours: &Served, refs: &Refs<'_>, want: &[u8]) {
    let offs = offsets();
    let ours_file = ours.path.join("big.bin");
    let sq_file = refs.squash.join("big.bin");
    for direct in [false, true] {
        let (mut o, mut t, mut q) = (Stats::default(), Stats::default(), Stats::default());
        let mut reads = Stats::default();
        let mut tmpfs_direct = true;
        for round in 0..=ROUNDS {
            for k in 0..3 {
                let v = match (round + k) % 3 {
                    0 => {
                        drop_cache(&ours_file);
                        let before = ours.reads();
                        let v = random_read(&ours_file, direct, &offs, want);
                        if round > 0 {
                            reads.push((ours.reads() - before) as f64);
                        }
                        v.map(|v| (&mut o, v))
                    }
                    1 => match random_read(refs.tmpfs, direct, &offs, want) {
                        Some(v) => Some((&mut t, v)),
                        None => {
                            tmpfs_direct = false;
                            random_read(refs.tmpfs, false, &offs, want).map(|v| (&mut t, v))
                        }
                    },
                    _ => {
                        drop_cache(&sq_file);
                        random_read(&sq_file, direct, &offs, want).map(|v| (&mut q, v))
                    }
                };
                if round > 0
                    && let Some((s, v)) = v
                {
                    s.push(v);
                }
            }
        }
        let mode = if direct { "O_DIRECT" } else { "buffered" };
        let tmpfs_mode = if !direct {
            "buffered"
        } else if tmpfs_direct {
            "O_DIRECT accepted, served from its page cache"
        } else {
            "O_DIRECT refused: buffered"
        };
        println!(
            "random 4 KiB reads, {mode}, {RANDOM_READS} per round: ours {} | squashfuse_ll {} | \
             tmpfs ({tmpfs_mode}) {} | our READ requests per round {:.0}",
            o.show(1, "k reads/s"),
            q.show(1, "k reads/s"),
            t.show(1, "k reads/s"),
            reads.median(),
        );
        if direct {
            assert_eq!(
                reads.min(),
                RANDOM_READS as f64,
                "O_DIRECT: one READ per read"
            );
        }
        let fig = format!("random 4 KiB reads, {mode}, vs squashfuse_ll");
        ratio_row(&fig, &o, "k reads/s", "squashfuse_ll", &q, 1.0);
        let fig = format!("random 4 KiB reads, {mode}, vs tmpfs ({tmpfs_mode})");
        ratio_row(&fig, &o, "k reads/s", "tmpfs", &t, 0.0);
    }
}

/// Read-ahead sizes on one mount, alternating; sequential GB/s each. The row compares the daemon's
/// default with the kernel's 128 KiB.
fn read_ahead_lever(ours: &Served) {
    let sizes_kb = [128u32, 512, 1024, 2048, 4096, 16384];
    let mut stats = vec![Stats::default(); sizes_kb.len()];
    let mut reqs = vec![Stats::default(); sizes_kb.len()];
    let mut buf = vec![0u8; MIB as usize];
    let file = ours.path.join("big.bin");
    for round in 0..=ROUNDS {
        for k in 0..sizes_kb.len() {
            let i = (round + k) % sizes_kb.len();
            ours.set_read_ahead_kb(sizes_kb[i]);
            drop_cache(&file);
            let before = ours.reads();
            let v = seq_read(&file, &mut buf);
            if round > 0 {
                stats[i].push(v);
                reqs[i].push((ours.reads() - before) as f64);
            }
        }
    }
    ours.set_read_ahead_kb(DEFAULT_RA / 1024);
    for (i, kb) in sizes_kb.iter().enumerate() {
        println!(
            "lever read-ahead {kb:>6} KiB: sequential {} | READ requests per pass {:.0}",
            stats[i].show(2, "GB/s"),
            reqs[i].median()
        );
    }
    let def = sizes_kb
        .iter()
        .position(|&k| k == DEFAULT_RA / 1024)
        .unwrap();
    ratio_row(
        "sequential read, 512 MiB: --read-ahead 512K (default) vs the kernel's 128 KiB",
        &stats[def],
        "GB/s",
        "read-ahead 128 KiB",
        &stats[0],
        0.0,
    );
}

/// Spliced READ replies (image → pipe → /dev/fuse, no copy through our memory) against copied
/// ones (pread into the worker's buffer, writev), toggled on one mount between alternating rounds,
/// at two read-ahead sizes: 512 KiB (a reply fits a pipe of pipe-max-size, 1 MiB) and 1 MiB (it
/// needs 257 pipe buffers, so without CAP_SYS_RESOURCE those replies are copied).
fn splice_lever(ours: &Served) {
    let cases = [(512u32, false), (512, true), (1024, false), (1024, true)];
    let mut stats = vec![Stats::default(); cases.len()];
    let mut spliced = vec![Stats::default(); cases.len()];
    let mut buf = vec![0u8; MIB as usize];
    let file = ours.path.join("big.bin");
    let st = ours.session.stats().clone();
    for round in 0..=ROUNDS {
        for k in 0..cases.len() {
            let i = (round + k) % cases.len();
            ours.set_read_ahead_kb(cases[i].0);
            ours.session.set_splice_reads(cases[i].1);
            drop_cache(&file);
            let before = st.spliced_replies();
            let v = seq_read(&file, &mut buf);
            if round > 0 {
                stats[i].push(v);
                spliced[i].push((st.spliced_replies() - before) as f64);
            }
        }
    }
    ours.set_read_ahead_kb(DEFAULT_RA / 1024);
    ours.session.set_splice_reads(true);
    for (i, (kb, on)) in cases.iter().enumerate() {
        let how = if *on {
            "spliced"
        } else {
            "copied (pread + writev)"
        };
        println!(
            "lever READ replies {how}, read-ahead {kb} KiB: sequential {} | spliced replies per pass {:.0}",
            stats[i].show(2, "GB/s"),
            spliced[i].median()
        );
    }
    assert_eq!(spliced[0].max(), 0.0, "no splice while it is off");
    assert!(spliced[1].min() > 0.0, "replies were spliced");
    for (on, off, kb) in [(1, 0, 512), (3, 2, 1024)] {
        ratio_row(
            &format!(
                "sequential read, 512 MiB, read-ahead {kb} KiB: spliced READ replies vs copied"
            ),
            &stats[on],
            "GB/s",
            "copied",
            &stats[off],
            0.0,
        );
    }
}

/// Two buffered sequential readers at once, of `big.bin` and `big2.bin`; aggregate GB/s.
fn two_readers(dir: &Path) -> f64 {
    let t = Instant::now();
    std::thread::scope(|scope| {
        let other = scope.spawn(|| {
            let mut buf = vec![0u8; MIB as usize];
            seq_read(&dir.join("big2.bin"), &mut buf)
        });
        let mut buf = vec![0u8; MIB as usize];
        seq_read(&dir.join("big.bin"), &mut buf);
        other.join().unwrap();
    });
    2.0 * SIZE as f64 / t.elapsed().as_secs_f64() / 1e9
}

/// Worker counts and on-demand workers, one mount each, alternating; sequential GB/s at the
/// default read-ahead, spliced, with one reader and with two at once.
fn workers_lever(img: &Path, mnt: &Path, want: &[u8]) {
    let offs = offsets();
    // (workers, on demand)
    let cases = [
        (1usize, false),
        (2, false),
        (4, false),
        (8, false),
        (4, true),
    ];
    let mut one = vec![Stats::default(); cases.len()];
    let mut two = vec![Stats::default(); cases.len()];
    let mut rnd = vec![Stats::default(); cases.len()];
    let mut rnd_direct = vec![Stats::default(); cases.len()];
    let mut buf = vec![0u8; MIB as usize];
    for round in 0..=ROUNDS {
        for k in 0..cases.len() {
            let i = (round + k) % cases.len();
            let served = Served::new(
                img,
                mnt,
                Setup {
                    workers: cases[i].0,
                    on_demand: cases[i].1,
                    read_ahead: DEFAULT_RA,
                    splice: true,
                    ..Default::default()
                },
            );
            let v = seq_read(&served.path.join("big.bin"), &mut buf);
            drop_cache(&served.path.join("big.bin"));
            let w = two_readers(&served.path);
            drop_cache(&served.path.join("big.bin"));
            let r = random_read(&served.path.join("big.bin"), false, &offs, want).unwrap();
            let rd = random_read(&served.path.join("big.bin"), true, &offs, want).unwrap();
            if round > 0 {
                rnd_direct[i].push(rd);
                one[i].push(v);
                two[i].push(w);
                rnd[i].push(r);
            }
        }
    }
    let name = |i: usize| {
        let (n, on_demand) = cases[i];
        if on_demand {
            format!("{n} on demand")
        } else {
            format!("{n} all blocking")
        }
    };
    for i in 0..cases.len() {
        println!(
            "lever workers {}: sequential, one reader {} | two readers at once (aggregate) {} | \
             random 4 KiB buffered {} | O_DIRECT {}",
            name(i),
            one[i].show(2, "GB/s"),
            two[i].show(2, "GB/s"),
            rnd[i].show(1, "k reads/s"),
            rnd_direct[i].show(1, "k reads/s")
        );
    }
    // `--on-demand-workers true` against the default, 4 workers all blocking (libfuse's way), and 1.
    let (od, all4, single) = (4, 2, 0);
    ratio_row(
        "sequential read, one reader: 4 workers on demand vs all 4 blocking on /dev/fuse (default)",
        &one[od],
        "GB/s",
        "all blocking",
        &one[all4],
        0.0,
    );
    ratio_row(
        "sequential read, two readers at once: 4 workers on demand vs all 4 blocking (default)",
        &two[od],
        "GB/s",
        "all blocking",
        &two[all4],
        0.0,
    );
    ratio_row(
        "random 4 KiB reads, buffered: 4 workers on demand vs all 4 blocking (default)",
        &rnd[od],
        "k reads/s",
        "all blocking",
        &rnd[all4],
        0.0,
    );
    ratio_row(
        "random 4 KiB reads, O_DIRECT: 4 workers on demand vs all 4 blocking (default)",
        &rnd_direct[od],
        "k reads/s",
        "all blocking",
        &rnd_direct[all4],
        0.0,
    );
    ratio_row(
        "sequential read, two readers at once: 4 workers on demand vs 1 worker",
        &two[od],
        "GB/s",
        "1 worker",
        &two[single],
        0.0,
    );
}

fn main() {
    if !can_mount("bench read") {
        bench::skip("read", "needs root (mount(2) of FUSE filesystems)");
        return;
    }
    if let Some(why) = SquashLl::unavailable() {
        bench::skip("read", &why);
        return;
    }
    let t = Instant::now();
    let shm = tempfile::tempdir_in("/dev/shm").expect("a tmpfs at /dev/shm");
    let d = shm.path();
    let data = pattern(SIZE as usize, 7);
    let (img, mut image) = mkfs(d, "famfs.img", 4 * GIB);
    put(&mut image, "big.bin", &data);
    put(&mut image, "big2.bin", &pattern(SIZE as usize, 8));
    drop(image);
    let src = d.join("src");
    std::fs::create_dir(&src).unwrap();
    let tmpfs_file = src.join("big.bin");
    std::fs::write(&tmpfs_file, &data).unwrap();
    let sqfs = d.join("big.sqfs");
    SquashLl::make_image(&src, &sqfs);
    let mnt = support::mounts::mnt_dir(d, "mnt");
    let sq_mnt = support::mounts::mnt_dir(d, "sq");
    let od_mnt = support::mounts::mnt_dir(d, "on-demand");
    println!(
        "setup: famfs image, tmpfs copy and uncompressed squashfs of a {} MiB file, all on tmpfs, in {:.1} s",
        SIZE / MIB,
        t.elapsed().as_secs_f64()
    );
    {
        let squash = SquashLl::mount(&sqfs, &sq_mnt);
        let ours = Served::new(
            &img,
            &mnt,
            Setup {
                read_ahead: DEFAULT_RA,
                splice: true,
                on_demand: false,
                ..Default::default()
            },
        );
        assert_eq!(ours.read_ahead_kb(), DEFAULT_RA / 1024);
        let on_demand = Served::new(
            &img,
            &od_mnt,
            Setup {
                read_ahead: DEFAULT_RA,
                splice: true,
                on_demand: true,
                ..Default::default()
            },
        );
        let refs = Refs {
            tmpfs: &tmpfs_file,
            squash: &squash.path,
        };
        sequential(&ours, &on_demand, &refs);
        drop(on_demand);
        random(&ours, &refs, &data);
        read_ahead_lever(&ours);
        splice_lever(&ours);
    }
    workers_lever(&img, &mnt, &data);
}
