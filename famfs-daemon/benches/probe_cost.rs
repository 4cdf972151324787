//! Probe cost benchmark (not a test; root needed, SKIP otherwise). One in-process mount of our server
//! with attribute and entry timeouts 0 (every stat is LOOKUP + GETATTR round trips); the workload is a
//! stat of 5,000 files, measured with five setups in alternating rounds (the order rotates each round):
//! * nothing attached;
//! * our probes, loaded by the daemon's own loader (`Probes::load`, filtered to this mount's connection,
//!   with the kernel-function probes, as `famfs-daemon run` attaches them);
//! * our probes with the BTF tracepoints turned off (`btf_tracepoints: false`): the raw-tracepoint
//!   request programs the daemon falls back to where `tp_btf` is refused;
//! * Debian's bpftrace with a per-opcode latency histogram on the same tracepoints (the send keeps
//!   start time and opcode by unique; the end, which has no opcode, looks them up);
//! * the floor: an empty raw-tracepoint program of our object attached to both tracepoints.
//!
//! `kernel.bpf_stats_enabled` is set to 1 for the run (and restored): each program's run_time_ns and
//! run_cnt give the BPF time per FUSE request, (time of the send + end programs) ÷ requests, for exactly
//! the programs of each setup (ours from their fds, bpftrace's from its /proc fdinfo). The tracepoints
//! are global, so requests of other FUSE mounts on the machine are counted (and cost) too; the figure
//! is per request either way. Wall time is per round, reported as medians of per-round ratios against
//! the nothing-attached round with their min–max.
//!
//! The rounds run twice. First with the threads where the scheduler puts them (the stat-ing thread
//! and the server's workers on different CPUs, as in production): the BPF figures and the goal row;
//! the wall-time ratios of this pass are printed but swing ±40% (a LOOKUP round trip is a few
//! wake-ups, and where they land dominates). Then with every thread pinned to one CPU, which never
//! idles between a request and its reply: wall time is CPU time and the ratios hold to a few
//! percent (the wall-time rows), and BPF time without cross-CPU map traffic.
//!
//! Run: `cargo bench -p famfs-daemon --bench probe_cost`. Our probes load with the daemon's default
//! pairing (by request address where the kernel's BTF allows); `FAMFS_BENCH_PAIRING=unique` measures the
//! classic-tracepoint pairing instead (for both "ours" setups, which then measure the same programs).

// Benchmark code run by hand: a failed unwrap/expect/assertion aborts the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/mod.rs"]
mod common;

use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{RawTracePoint, raw_trace_point::RawTracePointLinkId},
};
use common::Served;
use famfs_common::names;
use famfs_daemon::probes::{EBPF_OBJECT, ProbeConfig, ProbeKind, Probes};
use support::{GIB, bench, can_mount, image::mkfs, require_program, wait_for};

const FILES: usize = 5000;
const DIRS: usize = 25;
/// Passes over the 5,000 files per measured round.
const PASSES: usize = 2;
const ROUNDS: usize = 16;
const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// The bpftrace baseline: per-opcode latency histogram. The send keeps (start, opcode) by unique in
/// one map; the end reads it once, adds to the opcode's histogram and deletes it.
const BPFTRACE_HIST: &str = r#"
tracepoint:fuse:fuse_request_send { @start[args->unique] = (nsecs, args->opcode); }
tracepoint:fuse:fuse_request_end {
  $s = @start[args->unique];
  if ($s.0 != 0) {
    @lat_ns[$s.1] = hist(nsecs - $s.0);
    delete(@start[args->unique]);
  }
}
"#;

/// `kernel.bpf_stats_enabled` set to 1 while alive; the previous value is written back on drop.
struct BpfStats {
    previous: String,
}

impl BpfStats {
    fn enable() -> BpfStats {
        let previous = std::fs::read_to_string(STATS_SYSCTL).expect("read bpf_stats_enabled");
        std::fs::write(STATS_SYSCTL, "1").expect("enable bpf_stats");
        BpfStats { previous }
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(STATS_SYSCTL, self.previous.trim());
    }
}

/// A running bpftrace (our child); interrupted, then killed if it lingers, on drop.
struct Bpftrace {
    child: Child,
}

impl Bpftrace {
    fn start(script: &Path, out: &Path) -> Bpftrace {
        let child = Command::new("bpftrace")
            .arg(script)
            .stdout(std::fs::File::create(out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bpftrace");
        Bpftrace { child }
    }

    /// (run_time_ns, run_cnt) summed over bpftrace's tracepoint programs, and how many there are.
    fn cost(&self) -> (u64, u64, usize) {
        let dir = format!("/proc/{}/fdinfo", self.child.id());
        let mut acc = (0, 0, 0);
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let Ok(t) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            let field = |name: &str| {
                t.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            // prog_type 5: BPF_PROG_TYPE_TRACEPOINT.
            if field("prog_type:") == Some(5) {
                acc.0 += field("run_time_ns:").unwrap_or(0);
                acc.1 += field("run_cnt:").unwrap_or(0);
                acc.2 += 1;
            }
        }
        acc
    }

    fn stop(mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: a signal to our own child process, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let exited = wait_for(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten()
        });
        assert!(exited.is_some(), "bpftrace did not exit on SIGINT");
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// stat(2) every path `PASSES` times; seconds taken.
fn stat_all(paths: &[CString]) -> f64 {
    let t = Instant::now();
    for _ in 0..PASSES {
        for p in paths {
            stat1(p);
        }
    }
    t.elapsed().as_secs_f64()
}

fn stat1(p: &CString) {
    // SAFETY: an all-zero stat is valid for the kernel to overwrite; `p` is NUL-terminated.
    let rc = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::stat(p.as_ptr(), &mut st)
    };
    assert_eq!(rc, 0, "stat {p:?}: {}", std::io::Error::last_os_error());
}

/// (run_time_ns, run_cnt) of our send (`false`) or end (`true`) program, whichever pairing was loaded.
fn ours_prog(p: &Probes, end: bool) -> (u64, u64) {
    let name = match end {
        false => names::PROG_FUSE_REQUEST_SEND,
        true => names::PROG_FUSE_REQUEST_END,
    };
    p.snapshot()
        .programs
        .iter()
        .filter(|c| c.program == name)
        .fold((0, 0), |a, c| (a.0 + c.run_time_ns, a.1 + c.run_count))
}

/// (run_time_ns, run_cnt) of our send + end programs.
fn ours_cost(p: &Probes) -> (u64, u64) {
    let (s, e) = (ours_prog(p, false), ours_prog(p, true));
    (s.0 + e.0, s.1 + e.1)
}

/// ns per run of one program between two (run_time_ns, run_cnt) readings.
fn per_run(before: (u64, u64), after: (u64, u64)) -> f64 {
    (after.0 - before.0) as f64 / (after.1 - before.1).max(1) as f64
}

/// The empty floor program, loaded once; attached to both request tracepoints per round.
struct Floor {
    ebpf: Ebpf,
}

impl Floor {
    fn load() -> Floor {
        let mut ebpf = EbpfLoader::new().load(EBPF_OBJECT).expect("load object");
        let p: &mut RawTracePoint = ebpf
            .program_mut(names::PROG_FUSE_REQUEST_FLOOR)
            .expect("floor program")
            .try_into()
            .unwrap();
        p.load().expect("load floor program");
        Floor { ebpf }
    }

    fn prog(&mut self) -> &mut RawTracePoint {
        self.ebpf
            .program_mut(names::PROG_FUSE_REQUEST_FLOOR)
            .unwrap()
            .try_into()
            .unwrap()
    }

    fn attach(&mut self) -> Vec<RawTracePointLinkId> {
        ["fuse_request_send", "fuse_request_end"]
            .iter()
            .map(|tp| self.prog().attach(tp).expect("attach floor"))
            .collect()
    }

    fn detach(&mut self, links: Vec<RawTracePointLinkId>) {
        for l in links {
            self.prog().detach(l).expect("detach floor");
        }
    }

    fn cost(&mut self) -> (u64, u64) {
        let info = self.prog().info().expect("floor info");
        (info.run_time().as_nanos() as u64, info.run_count())
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Setup {
    None,
    Ours,
    /// Ours with the BTF tracepoints turned off: the raw-tracepoint programs the daemon falls back to.
    OursRaw,
    Bpftrace,
    Floor,
}

const SETUPS: [Setup; 5] = [
    Setup::None,
    Setup::Ours,
    Setup::OursRaw,
    Setup::Bpftrace,
    Setup::Floor,
];

/// One measured round of one setup: wall seconds, and BPF ns per request (None: nothing attached).
#[derive(Clone)]
struct Sample {
    setup: Setup,
    secs: f64,
    ns_per_req: Option<f64>,
    /// Ours: ns per run of the send and of the end program.
    split: Option<(f64, f64)>,
}

/// BPF ns per request from (run_time_ns, run_cnt) deltas of the send + end programs.
fn per_request(before: (u64, u64), after: (u64, u64)) -> f64 {
    let t = after.0 - before.0;
    let runs = after.1 - before.1;
    assert!(runs > 0, "no program runs counted");
    t as f64 / (runs as f64 / 2.0)
}

struct Bench {
    paths: Vec<CString>,
    connection: u32,
    floor: Floor,
    script: PathBuf,
    bt_out: PathBuf,
}

impl Bench {
    fn round(&mut self, setup: Setup) -> Sample {
        let mut split = None;
        let (secs, ns_per_req) = match setup {
            Setup::None => (stat_all(&self.paths), None),
            Setup::Ours | Setup::OursRaw => {
                let mut p = Probes::load(&ProbeConfig {
                    btf_tracepoints: setup == Setup::Ours,
                    connections: Some(Vec::new()),
                    request_pairing: match std::env::var("FAMFS_BENCH_PAIRING").as_deref() {
                        Ok("unique") => famfs_daemon::probes::RequestPairing::Unique,
                        _ => famfs_daemon::probes::RequestPairing::Auto,
                    },
                    ..Default::default()
                });
                p.reset_connection(self.connection);
                p.watch_connection(self.connection).unwrap();
                assert!(
                    p.attached(names::PROG_FUSE_REQUEST_SEND),
                    "{:?}",
                    p.status()
                );
                assert!(p.attached(names::PROG_FUSE_REQUEST_END), "{:?}", p.status());
                if setup == Setup::OursRaw {
                    let kinds = p.status().iter().filter(|s| {
                        s.program == names::PROG_FUSE_REQUEST_SEND
                            || s.program == names::PROG_FUSE_REQUEST_END
                    });
                    assert!(
                        kinds.clone().all(|s| s.kind != ProbeKind::BtfTracepoint),
                        "{:?}",
                        p.status()
                    );
                }
                let (bs, be) = (ours_prog(&p, false), ours_prog(&p, true));
                let b = ours_cost(&p);
                let s = stat_all(&self.paths);
                let a = ours_cost(&p);
                let (as_, ae) = (ours_prog(&p, false), ours_prog(&p, true));
                split = Some((per_run(bs, as_), per_run(be, ae)));
                let snap = p.snapshot();
                let sent: u64 = snap
                    .requests
                    .iter()
                    .filter(|r| r.key.connection == self.connection)
                    .map(|r| r.stats.completed)
                    .sum();
                assert!(sent >= (FILES * PASSES) as u64, "probes counted {sent}");
                (s, Some(per_request(b, a)))
            }
            Setup::Bpftrace => {
                let bt = Bpftrace::start(&self.script, &self.bt_out);
                // Attached once both programs have run (a stat per check drives requests).
                let ready = wait_for(Duration::from_secs(60), || {
                    stat1(&self.paths[0]);
                    let (_, runs, progs) = bt.cost();
                    (progs == 2 && runs >= 2).then_some(())
                });
                assert!(ready.is_some(), "bpftrace did not attach");
                let b = bt.cost();
                let s = stat_all(&self.paths);
                let a = bt.cost();
                bt.stop();
                let out = std::fs::read_to_string(&self.bt_out).unwrap_or_default();
                assert!(
                    out.contains("@lat_ns["),
                    "bpftrace printed no histogram: {out}"
                );
                (s, Some(per_request((b.0, b.1), (a.0, a.1))))
            }
            Setup::Floor => {
                let links = self.floor.attach();
                let b = self.floor.cost();
                let s = stat_all(&self.paths);
                let a = self.floor.cost();
                self.floor.detach(links);
                (s, Some(per_request(b, a)))
            }
        };
        Sample {
            setup,
            secs,
            ns_per_req,
            split,
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// (median, min, max).
fn spread(v: Vec<f64>) -> (f64, f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(v), lo, hi)
}

fn ns_of(samples: &[Sample], s: Setup) -> (f64, f64, f64) {
    spread(
        samples
            .iter()
            .filter(|x| x.setup == s)
            .filter_map(|x| x.ns_per_req)
            .collect(),
    )
}

/// Per-round wall-time ratio of `s` against the round's nothing-attached pass.
fn wall_ratio(rounds: &[Vec<Sample>], s: Setup) -> (f64, f64, f64) {
    let secs = |r: &[Sample], want: Setup| r.iter().find(|x| x.setup == want).map(|x| x.secs);
    spread(
        rounds
            .iter()
            .filter_map(|r| Some(secs(r, s)? / secs(r, Setup::None)?))
            .collect(),
    )
}

/// Put every thread of this process on CPU 0 (threads started later inherit it).
fn pin_to_one_cpu() {
    // SAFETY: a zeroed cpu_set_t with one CPU set, valid for each call.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU 0 is inside the set's bounds.
    unsafe { libc::CPU_SET(0, &mut set) };
    for e in std::fs::read_dir("/proc/self/task").unwrap() {
        let tid: libc::pid_t = e.unwrap().file_name().to_str().unwrap().parse().unwrap();
        // SAFETY: `set` is valid for the call; `tid` is a thread of this process.
        let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
        assert_eq!(
            rc,
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The BPF figures of the unpinned pass (requester and server threads where the scheduler puts
/// them, as in production): the goal row.
fn report_bpf(rounds: &[Vec<Sample>]) {
    let flat: Vec<Sample> = rounds.concat();
    let (ours, ours_lo, ours_hi) = ns_of(&flat, Setup::Ours);
    let (bt, bt_lo, bt_hi) = ns_of(&flat, Setup::Bpftrace);
    let (floor, floor_lo, floor_hi) = ns_of(&flat, Setup::Floor);
    println!(
        "BPF ns per FUSE request (send + end), medians of {ROUNDS} rounds [min–max]: ours {ours:.0} \
         [{ours_lo:.0}–{ours_hi:.0}] | bpftrace histogram {bt:.0} [{bt_lo:.0}–{bt_hi:.0}] | empty \
         program (floor) {floor:.0} [{floor_lo:.0}–{floor_hi:.0}]"
    );
    let (raw, raw_lo, raw_hi) = ns_of(&flat, Setup::OursRaw);
    println!(
        "ours with the raw-tracepoint fallback (BTF tracepoints off): {raw:.0} [{raw_lo:.0}–{raw_hi:.0}] \
         ns per request"
    );
    print_split(&flat);
    let ratio = ours / bt;
    bench::row(&bench::Row {
        figure: "BPF time per FUSE request (send + end programs, kernel bpf_stats), stat of 5,000 files, attr timeout 0",
        ours: format!("{ours:.0} ns [{ours_lo:.0}–{ours_hi:.0}]"),
        baseline: format!("bpftrace per-opcode latency hist {bt:.0} ns [{bt_lo:.0}–{bt_hi:.0}]"),
        ratio: Some(ratio),
        goal: "≤ ×0.5",
        met: Some(ratio <= 0.5),
    });
    bench::row(&bench::Row {
        figure: "BPF time per FUSE request of the raw-tracepoint fallback (kernels without tp_btf)",
        ours: format!("{raw:.0} ns [{raw_lo:.0}–{raw_hi:.0}]"),
        baseline: format!("bpftrace per-opcode latency hist {bt:.0} ns [{bt_lo:.0}–{bt_hi:.0}]"),
        ratio: Some(raw / bt),
        goal: "",
        met: None,
    });
    bench::row(&bench::Row {
        figure: "BPF floor per FUSE request: an empty program on send + end",
        ours: format!("{floor:.0} ns [{floor_lo:.0}–{floor_hi:.0}]"),
        baseline: format!("ours {ours:.0} ns, bpftrace {bt:.0} ns"),
        ratio: None,
        goal: "",
        met: None,
    });
    print_wall(rounds, "unpinned", false);
}

fn print_split(flat: &[Sample]) {
    for (s, what) in [
        (Setup::Ours, "ours"),
        (Setup::OursRaw, "ours (raw fallback)"),
    ] {
        let (send, end): (Vec<f64>, Vec<f64>) = flat
            .iter()
            .filter(|x| x.setup == s)
            .filter_map(|x| x.split)
            .unzip();
        println!(
            "{what} per program run (medians): send {:.0} ns, end {:.0} ns",
            median(send),
            median(end)
        );
    }
}

/// The pinned pass: every thread (requester, server, bpftrace) on one CPU, so the CPU never idles
/// between a request and its reply and wall time is CPU time: the stable wall-time rows.
fn report_pinned(rounds: &[Vec<Sample>]) {
    let flat: Vec<Sample> = rounds.concat();
    let (ours, ours_lo, ours_hi) = ns_of(&flat, Setup::Ours);
    let (bt, bt_lo, bt_hi) = ns_of(&flat, Setup::Bpftrace);
    let (floor, ..) = ns_of(&flat, Setup::Floor);
    println!(
        "pinned to one CPU: BPF ns per FUSE request: ours {ours:.0} [{ours_lo:.0}–{ours_hi:.0}] | \
         bpftrace histogram {bt:.0} [{bt_lo:.0}–{bt_hi:.0}] | floor {floor:.0}"
    );
    print_split(&flat);
    bench::row(&bench::Row {
        figure: "BPF time per FUSE request, requester and server pinned to one CPU (no cross-CPU map traffic)",
        ours: format!("{ours:.0} ns [{ours_lo:.0}–{ours_hi:.0}]"),
        baseline: format!("bpftrace per-opcode latency hist {bt:.0} ns [{bt_lo:.0}–{bt_hi:.0}]"),
        ratio: Some(ours / bt),
        goal: "",
        met: None,
    });
    print_wall(rounds, "pinned to one CPU", true);
}

/// Wall-time ratios against the round's nothing-attached pass; table rows when `rows`.
fn print_wall(rounds: &[Vec<Sample>], pass: &str, rows: bool) {
    let flat: Vec<Sample> = rounds.concat();
    let none = median(
        flat.iter()
            .filter(|x| x.setup == Setup::None)
            .map(|x| x.secs)
            .collect(),
    );
    for (s, what) in [
        (Setup::Ours, "our probes"),
        (Setup::OursRaw, "our probes (raw fallback)"),
        (Setup::Bpftrace, "bpftrace histogram"),
        (Setup::Floor, "empty program"),
    ] {
        let (r, lo, hi) = wall_ratio(rounds, s);
        println!(
            "{pass}: wall time with {what} ÷ nothing attached: ×{r:.3} [{lo:.3}–{hi:.3}] (median of \
             per-round ratios [min–max]; nothing attached {:.0} ms per {} stats)",
            none * 1e3,
            FILES * PASSES
        );
        if rows {
            bench::row(&bench::Row {
                figure: &format!(
                    "wall time of the stat workload with {what}, {pass} (per-round ratio to nothing attached)"
                ),
                ours: format!("×{r:.3} [{lo:.3}–{hi:.3}]"),
                baseline: format!(
                    "nothing attached {:.0} ms per {} stats",
                    none * 1e3,
                    FILES * PASSES
                ),
                ratio: Some(r),
                goal: "",
                met: None,
            });
        }
    }
}

fn main() {
    if !can_mount("bench probe_cost") {
        bench::skip("probe_cost", "needs root and /dev/fuse");
        return;
    }
    if !require_program("bench probe_cost", "bpftrace") {
        bench::skip(
            "probe_cost",
            "bpftrace is not installed (cargo xtask setup)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (img, mut image) = mkfs(d, "famfs.img", 16 * GIB);
    for k in 0..DIRS {
        image
            .mkdir(&format!("d{k:02}"), 0o755, 0, 0, false)
            .unwrap();
    }
    let rel: Vec<String> = (0..FILES)
        .map(|i| format!("d{:02}/f{:04}", i % DIRS, i))
        .collect();
    for r in &rel {
        image.creat(r, 4096, 0o644, 0, 0, None).unwrap();
    }
    drop(image);
    let script = d.join("hist.bt");
    std::fs::write(&script, BPFTRACE_HIST).unwrap();
    let mnt = d.join("mnt");
    std::fs::create_dir(&mnt).unwrap();

    let _stats = BpfStats::enable();
    let served = Served::new(
        &img,
        &mnt,
        common::Setup {
            ttl: Duration::ZERO,
            ..common::Setup::default()
        },
    );
    let paths: Vec<CString> = rel
        .iter()
        .map(|r| CString::new(served.path.join(r).as_os_str().as_bytes()).unwrap())
        .collect();
    let mut b = Bench {
        paths,
        connection: served.connection,
        floor: Floor::load(),
        script,
        bt_out: d.join("bpftrace.out"),
    };
    stat_all(&b.paths);
    let mut measure = || {
        (0..ROUNDS)
            .map(|r| {
                (0..SETUPS.len())
                    .map(|i| b.round(SETUPS[(i + r) % SETUPS.len()]))
                    .collect::<Vec<Sample>>()
            })
            .collect::<Vec<_>>()
    };
    let free = measure();
    report_bpf(&free);
    pin_to_one_cpu();
    let pinned = measure();
    report_pinned(&pinned);
}
