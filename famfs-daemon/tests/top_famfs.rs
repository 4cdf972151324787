//! The operator views on real famfs files (root; SKIP otherwise): famfs images made with the format
//! library, served by `famfs-daemon run --image --mountpoint` processes that the tests start, stop by
//! PID and unmount in Drop, and a workload of known opens and reads through the mounts.
//!
//! - `top_and_snapshots_show_real_famfs_files` (probes on): five files (one extent, three extents, four
//!   strips: fmap 56, 104, 152 bytes) opened 6/5/4/3/3 times. Every histogram of `/metrics` is
//!   well-formed (+Inf bucket = `_count`). `famfs-trace top --sort opens` in tmux
//!   shows exactly those rows in that order (ties by path), each with its open count, OPEN p99 (computed
//!   here from the daemon's histogram), fmap bytes, retries and faults; `/` with a filter leaves only
//!   the matching rows; `q` restores the screen. `top --once` prints the same rows. `snapshot` before
//!   and after a second identical round, and `diff` of the two: counts doubled are shown and never
//!   judged, nothing but (timing-dependent) latencies may be marked, and the exit code follows the
//!   marks.
//! - `diff_reports_fmap_growth_between_two_images` (no probes: every compared value is exact): the
//!   same path with one extent in one image and three in another → `fmap bytes` and `fmap extents`
//!   REGRESSION and exit 1, the exact report; the reverse comparison is no regression, exit 0.

// Test code: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    collections::BTreeSet,
    io::Read,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use famfs_daemon::{
    famfs::{Fmap, StripeSpec},
    http::{
        api::{FileRow, Snapshot},
        client::Client,
    },
    join::{FileQuery, FileSort},
    top::collector,
    util::fmt::fmt_secs,
};
use support::{
    GIB, MIB, TRACE, can_mount,
    daemon::Daemon,
    image::{ext, mkfs, put},
    pattern,
    prometheus::{check_histograms, parse_sample},
    require_program,
    tmux::{Tmux, file_rows},
    trace, wait_for,
};

/// How long the daemon may take to settle on a workload round.
const DEADLINE: Duration = Duration::from_secs(60);

/// One file of a test image and what the workload does with it.
struct Spec {
    path: &'static str,
    data: Vec<u8>,
    /// Opens per workload round.
    opens: u64,
    fmap_bytes: u64,
    fmap_extents: u64,
}

/// Three 2 MiB extents, 8 MiB apart, from 1 GiB on (far from what the allocator hands out first).
fn three_extents() -> Fmap {
    Fmap::Simple(vec![
        ext(GIB, 2 * MIB),
        ext(GIB + 8 * MIB, 2 * MIB),
        ext(GIB + 16 * MIB, 2 * MIB),
    ])
}

/// The main test image: five files with three fmap shapes.
fn main_image(dir: &Path) -> (PathBuf, Vec<Spec>) {
    let (path, mut img) = mkfs(dir, "main.img", 4 * GIB);
    for d in ["datasets", "models", "logs"] {
        img.mkdir(d, 0o755, 0, 0, false).expect("mkdir");
    }
    let val = pattern(5 * MIB as usize + 77, 1);
    let id = img
        .creat_with_fmap(
            "datasets/val.bin",
            val.len() as u64,
            0o644,
            0,
            0,
            &three_extents(),
        )
        .expect("creat val.bin");
    img.write_file(id, 0, &val).expect("write val.bin");
    let model = pattern(3 * MIB as usize + 5, 2);
    let id = img
        .creat(
            "models/model.bin",
            model.len() as u64,
            0o644,
            0,
            0,
            Some(StripeSpec {
                nstrips: 4,
                nbuckets: 8,
                chunk_size: 2 * MIB,
            }),
        )
        .expect("creat model.bin");
    img.write_file(id, 0, &model).expect("write model.bin");
    let train = pattern(300_000, 3);
    put(&mut img, "datasets/train.bin", &train);
    let log = b"step 1 loss 0.9\nstep 2 loss 0.7\n".to_vec();
    put(&mut img, "logs/run.log", &log);
    let readme = b"famfs-trace operator view test data\n".to_vec();
    put(&mut img, "README.txt", &readme);
    drop(img);
    // fmap bytes: 32-byte header + 24 per simple extent; interleaved: + 24 for the interleave
    // header + 24 per strip.
    let specs = vec![
        Spec {
            path: "/datasets/train.bin",
            data: train,
            opens: 6,
            fmap_bytes: 56,
            fmap_extents: 1,
        },
        Spec {
            path: "/models/model.bin",
            data: model,
            opens: 5,
            fmap_bytes: 32 + 24 + 4 * 24,
            fmap_extents: 4,
        },
        Spec {
            path: "/datasets/val.bin",
            data: val,
            opens: 4,
            fmap_bytes: 32 + 3 * 24,
            fmap_extents: 3,
        },
        Spec {
            path: "/logs/run.log",
            data: log,
            opens: 3,
            fmap_bytes: 56,
            fmap_extents: 1,
        },
        Spec {
            path: "/README.txt",
            data: readme,
            opens: 3,
            fmap_bytes: 56,
            fmap_extents: 1,
        },
    ];
    (path, specs)
}

/// One round: every file opened `opens` times (each a new open file description), read to the end
/// and compared with what was written.
fn workload(mnt: &Path, specs: &[Spec]) {
    let mut buf = Vec::new();
    for s in specs {
        for i in 0..s.opens {
            buf.clear();
            let p = mnt.join(s.path.trim_start_matches('/'));
            let mut f = std::fs::File::open(&p).unwrap_or_else(|e| panic!("open {p:?}: {e}"));
            f.read_to_end(&mut buf).expect("read");
            assert!(buf == s.data, "{}: read {i} returned other bytes", s.path);
        }
    }
}

fn snapshot_of(addr: SocketAddr) -> Option<Snapshot> {
    let q = FileQuery {
        sort: FileSort::Path,
        path: None,
        limit: 1000,
    };
    let client = Client::new(addr, Duration::from_secs(10)).ok()?;
    collector::fetch_snapshot(&client, &q).ok()
}

/// The daemon's `/metrics`, if it answers.
fn metrics_text(addr: SocketAddr) -> Option<String> {
    Client::new(addr, Duration::from_secs(10))
        .ok()?
        .get("/metrics")
        .ok()
}

fn kernel_requests(s: &Snapshot, conn: u32, op: &str) -> u64 {
    s.opcodes
        .iter()
        .find(|o| o.connection == conn && o.opcode == op)
        .map_or(0, |o| o.requests)
}

/// The server's and the join's record counters: (requests the server counted, records sent to the
/// join, records dropped, records the join consumed).
fn record_counters(addr: SocketAddr) -> Option<(u64, u64, u64, u64)> {
    let text = metrics_text(addr)?;
    let (mut requests, mut sent, mut dropped, mut joined) = (0, 0, 0, 0);
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let s = parse_sample(line).ok()?;
        let v = s.value as u64;
        match (s.name.as_str(), s.label("outcome")) {
            ("famfs_server_requests_total", _) => requests += v,
            ("famfs_server_records_total", Some("sent")) => sent = v,
            ("famfs_server_records_total", Some("dropped")) => dropped = v,
            ("famfs_join_events_total", Some("server_record")) => joined = v,
            _ => {}
        }
    }
    Some((requests, sent, dropped, joined))
}

/// Wait until the daemon reports every file of `specs` (and no other) with `round` rounds of opens,
/// each OPEN's kernel latency joined (with probes), the kernel's OPEN, FLUSH and RELEASE counts of
/// the connection complete (with probes; RELEASE is sent asynchronously after close), and the file
/// table read while the join had consumed every record the server had answered (so reads and last
/// accesses are final too).
fn wait_settled(d: &Daemon, specs: &[Spec], round: u64, probes: bool) -> Snapshot {
    let want_paths: BTreeSet<&str> = specs.iter().map(|s| s.path).collect();
    let total: u64 = specs.iter().map(|s| s.opens * round).sum();
    let mut last = String::new();
    let settled = wait_for(DEADLINE, || {
        let c0 = record_counters(d.addr);
        let snap = snapshot_of(d.addr);
        let c1 = record_counters(d.addr);
        let (Some(c0), Some(s), Some(c1)) = (c0, snap, c1) else {
            return None;
        };
        let (requests, sent, dropped, joined) = c0;
        let quiet = c0 == c1 && dropped == 0 && requests == sent && joined == sent;
        let paths: BTreeSet<&str> = s.files.iter().map(|f| f.path.as_str()).collect();
        let files_ok = paths == want_paths
            && specs.iter().all(|sp| {
                s.files.iter().any(|f| {
                    f.path == sp.path
                        && f.opens == sp.opens * round
                        && (!probes || f.open_latency_count == f.opens)
                })
            });
        let kernel: Vec<u64> = ["OPEN", "FLUSH", "RELEASE"]
            .iter()
            .map(|op| kernel_requests(&s, d.connection(), op))
            .collect();
        let kernel_ok = !probes || kernel.iter().all(|&n| n == total);
        if quiet && files_ok && kernel_ok {
            return Some(s);
        }
        last = format!(
            "counters {c0:?} then {c1:?}; kernel OPEN/FLUSH/RELEASE {kernel:?} (want {total}); files {:#?}",
            s.files
        );
        None
    });
    settled.unwrap_or_else(|| panic!("the daemon did not settle on round {round}: {last}"))
}

/// p99 of an OPEN latency histogram in the daemon's log2 ns slots (slot i holds 2^i ..= 2^(i+1)-1
/// ns), interpolated inside the bucket that holds it, the first bucket starting at 0 — computed
/// here independently of the collector.
fn p99_of_slots(slots: &[u64]) -> Option<f64> {
    let count: u64 = slots.iter().sum();
    if count == 0 {
        return None;
    }
    let rank = 0.99 * count as f64;
    let (mut lower, mut cum) = (0.0f64, 0u64);
    for (i, &c) in slots.iter().enumerate() {
        let upper = (1u64 << (i + 1)) as f64 * 1e-9;
        if c > 0 && (cum + c) as f64 >= rank {
            return Some(lower + (upper - lower) * (rank - cum as f64) / c as f64);
        }
        lower = upper;
        cum += c;
    }
    None
}

/// The first seven cells of a file table row: PATH OPENS "OPEN P99" "FMAP B" RETRY PTE PMD.
type Row = Vec<String>;

fn expected_rows(specs: &[Spec], s: &Snapshot, round: u64, filter: &str) -> Vec<Row> {
    let mut v: Vec<&Spec> = specs.iter().filter(|sp| sp.path.contains(filter)).collect();
    // By opens, most first; ties by path (byte order: "/README.txt" before "/logs/run.log").
    v.sort_by(|a, b| b.opens.cmp(&a.opens).then(a.path.cmp(b.path)));
    v.iter()
        .map(|sp| {
            let f: &FileRow = s.files.iter().find(|f| f.path == sp.path).expect("settled");
            let p99 = p99_of_slots(&f.open_latency_log2_ns).map_or("-".to_string(), fmt_secs);
            vec![
                sp.path.to_string(),
                (sp.opens * round).to_string(),
                p99,
                sp.fmap_bytes.to_string(),
                "0".into(),
                "0".into(),
                "0".into(),
            ]
        })
        .collect()
}

fn first7(rows: Vec<Vec<String>>) -> Vec<Row> {
    rows.into_iter()
        .map(|r| r.into_iter().take(7).collect())
        .collect()
}

fn is_age(s: &str) -> bool {
    let num = s.trim_end_matches(['s', 'm', 'h', 'd']);
    num.len() < s.len() && !num.is_empty() && num.parse::<f64>().is_ok()
}

/// File rows without the last access's age (it depends on when the table was read).
fn without_ages(files: &[FileRow]) -> Vec<FileRow> {
    files
        .iter()
        .map(|f| FileRow {
            last_access_age_seconds: None,
            ..f.clone()
        })
        .collect()
}

/// Report lines with runs of blanks collapsed (the column widths depend on the longest cell).
fn report_lines(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn top_and_snapshots_show_real_famfs_files() {
    let test = "top_and_snapshots_show_real_famfs_files";
    if !can_mount(test) || !require_program(test, "tmux") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, specs) = main_image(dir.path());
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let d = Daemon::builder().serve(dir.path(), &img, &mnt).start();
    let addr = d.addr.to_string();

    workload(&mnt, &specs);
    let s1 = wait_settled(&d, &specs, 1, true);
    let (attached, _) = s1.probe_counts();
    assert!(attached > 0, "no probe attached: {:?}", s1.probes);
    let want = expected_rows(&specs, &s1, 1, "");
    // The exported histograms are well-formed (cumulative once: +Inf equals _count).
    let families = check_histograms(&metrics_text(d.addr).expect("/metrics"));
    for f in [
        "famfs_fuse_request_duration_seconds",
        "famfs_fuse_reply_size_bytes",
        "famfs_file_open_duration_seconds",
    ] {
        assert!(families.contains(f), "no {f} histogram in {families:?}");
    }
    // Every OPEN was timed by the kernel, so every row has a p99.
    assert!(want.iter().all(|r| r[2] != "-"), "{want:?}");

    let (live, want_filtered) = check_live_view(&d, &specs, &s1, &want, attached);
    check_once_frames(&addr, &want, &want_filtered, live);
    check_snapshots_and_diff(dir.path(), &d, &mnt, &specs, &s1);
}

/// The live view in a real terminal (tmux): the rows of `want` in order, the OPEN row of the
/// mount's connection, filtering, and the screen restored on `q`. Returns the live rows and the
/// rows expected under the `/datasets/` filter.
fn check_live_view(
    d: &Daemon,
    specs: &[Spec],
    s1: &Snapshot,
    want: &[Row],
    attached: usize,
) -> (Vec<Vec<String>>, Vec<Row>) {
    let addr = d.addr.to_string();
    // The live view in a real terminal.
    let tmux = Tmux::start("famfs");
    tmux.type_line(&format!(
        "{TRACE} top --addr {addr} --sort opens --interval 200ms; echo TOP-EXIT=$?"
    ));
    let screen = tmux.wait_screen("the five files in order with their values", |s| {
        first7(file_rows(s)) == want
    });
    assert!(screen.contains("┌ Files: 5 ─"), "{screen}");
    assert!(screen.contains(" sort: opens  filter: none"), "{screen}");
    assert!(
        screen.contains(&format!("daemon {addr}  updated"))
            && screen.contains(&format!("probes {attached} attached / ")),
        "{screen}"
    );
    let live = file_rows(&screen);
    for r in &live {
        assert_eq!(r.len(), 8, "{r:?}");
        assert!(is_age(&r[7]), "LAST {:?} is not an age", r[7]);
    }
    // The kernel's OPEN row for the mount's connection: total 21, no errors.
    let conn = d.connection().to_string();
    let open_row: Vec<&str> = screen
        .lines()
        .find(|l| l.starts_with("│OPEN "))
        .unwrap_or_else(|| panic!("no OPEN row:\n{screen}"))
        .trim_matches('│')
        .split_whitespace()
        .collect();
    assert_eq!(
        (open_row[1], open_row[3], open_row[4]),
        (conn.as_str(), "21", "0"),
        "{screen}"
    );

    // Filter: `/`, the text (shown as typed), Enter; only the matching rows remain.
    tmux.key("/");
    tmux.type_text("/datasets/");
    tmux.wait_screen("the filter being typed", |s| {
        s.contains(" sort: opens  filter: /datasets/_  (Enter apply, Esc cancel)")
    });
    tmux.key("Enter");
    let want_filtered = expected_rows(specs, s1, 1, "/datasets/");
    assert_eq!(want_filtered.len(), 2);
    let screen = tmux.wait_screen("only the /datasets/ rows", |s| {
        first7(file_rows(s)) == want_filtered
            && s.contains("┌ Files: 2 matching \"/datasets/\" ─")
            && s.contains(" sort: opens  filter: /datasets/   q quit")
    });
    assert!(!screen.contains("/models/model.bin"), "{screen}");

    tmux.key("q");
    let screen = tmux.wait_screen("top to exit and the shell to come back", |s| {
        s.contains("TOP-EXIT=0") && s.trim_end().ends_with("READY$")
    });
    assert!(!screen.contains("Files:"), "screen not restored:\n{screen}");
    assert_eq!(tmux.pane_var("alternate_on"), "0");
    assert_eq!(tmux.pane_var("cursor_flag"), "1");
    drop(tmux);

    (live, want_filtered)
}

/// `top --once`: the same rows and values as the live view, and the filter.
fn check_once_frames(addr: &str, want: &[Row], want_filtered: &[Row], live: Vec<Vec<String>>) {
    // `top --once`: the same rows, the same values.
    let out = trace(&[
        "top",
        "--once",
        "--addr",
        addr,
        "--sort",
        "opens",
        "--interval",
        "0s",
        "--width",
        "120",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let frame = String::from_utf8(out.stdout).unwrap();
    let once = first7(file_rows(&frame));
    assert_eq!(once, want, "{frame}");
    assert_eq!(once, first7(live), "--once and the live view differ");
    let out = trace(&[
        "top",
        "--once",
        "--addr",
        addr,
        "--sort",
        "opens",
        "--filter",
        "/datasets/",
        "--interval",
        "0s",
        "--width",
        "120",
    ]);
    let frame = String::from_utf8(out.stdout).unwrap();
    assert_eq!(first7(file_rows(&frame)), want_filtered, "{frame}");
}

/// `snapshot`, a second identical round, `snapshot` again, and `diff` of the two.
fn check_snapshots_and_diff(dir: &Path, d: &Daemon, mnt: &Path, specs: &[Spec], s1: &Snapshot) {
    let addr = d.addr.to_string();
    // snapshot → a second, identical round → snapshot; diff.
    let before = dir.join("before.json");
    let after = dir.join("after.json");
    let snap = |p: &Path| {
        let out = trace(&["snapshot", "--addr", &addr, "-o", p.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("famfs-trace: snapshot of {addr}: 5 files, ")),
            "{err}"
        );
        serde_json::from_str::<Snapshot>(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let sb = snap(&before);
    assert_eq!(without_ages(&sb.files), without_ages(&s1.files));
    workload(mnt, specs);
    let s2 = wait_settled(d, specs, 2, true);
    let sa = snap(&after);
    assert_eq!(without_ages(&sa.files), without_ages(&s2.files));
    // The snapshots hold the files by path with their exact counts and fmap sizes.
    for (f, sp) in sa.files.iter().zip({
        let mut v: Vec<&Spec> = specs.iter().collect();
        v.sort_by_key(|s| s.path);
        v
    }) {
        assert_eq!(
            (f.path.as_str(), f.opens, f.fmap_bytes, f.fmap_extents),
            (sp.path, 2 * sp.opens, sp.fmap_bytes, sp.fmap_extents)
        );
    }

    let out = trace(&["diff", before.to_str().unwrap(), after.to_str().unwrap()]);
    let lines = report_lines(&out.stdout);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // Counts that doubled are shown, never judged.
    for op in ["OPEN", "FLUSH", "RELEASE"] {
        let want = format!("opcode {op} requests 21 42 +100.0%");
        assert!(lines.contains(&want), "no {want:?} in:\n{text}");
    }
    // Nothing about the files' layouts changed, nor the DAX fault counts: those are not listed.
    for l in &lines {
        for m in [
            "fmap bytes",
            "fmap extents",
            "GET_FMAP retries",
            "PTE faults",
            "PMD faults",
        ] {
            assert!(!l.contains(m), "unexpected change {l:?} in:\n{text}");
        }
    }
    // Only latencies (which depend on timing) can be marked; the exit code follows the marks.
    let marked: Vec<&String> = lines
        .iter()
        .filter(|l| l.ends_with(" REGRESSION"))
        .collect();
    for l in &marked {
        assert!(
            l.contains(" latency mean ") || l.contains(" latency p99 "),
            "{l:?} marked in:\n{text}"
        );
    }
    let ops: BTreeSet<&str> = sb
        .opcodes
        .iter()
        .chain(&sa.opcodes)
        .map(|o| o.opcode.as_str())
        .collect();
    // Per file 7 values (no PMD attempts: no fallback ratio), per opcode 4, and 2 DAX counts.
    let n = 7 * specs.len() + 4 * ops.len() + 2;
    let summary = match marked.len() {
        0 => format!("no regression above 10% ({n} values compared)"),
        1 => format!("1 regression above 10% ({n} values compared)"),
        k => format!("{k} regressions above 10% ({n} values compared)"),
    };
    assert_eq!(lines.last(), Some(&summary), "{text}");
    assert_eq!(
        out.status.code(),
        Some(if marked.is_empty() { 0 } else { 1 }),
        "{text}"
    );
}

/// An image with `/data/grow.bin` placed by `fmap` and `/data/same.bin` from the allocator.
fn grow_image(dir: &Path, name: &str, grow: &[u8], same: &[u8], fmap: &Fmap) -> PathBuf {
    let (path, mut img) = mkfs(dir, name, 4 * GIB);
    img.mkdir("data", 0o755, 0, 0, false).expect("mkdir");
    let id = img
        .creat_with_fmap("data/grow.bin", grow.len() as u64, 0o644, 0, 0, fmap)
        .expect("creat grow.bin");
    img.write_file(id, 0, grow).expect("write grow.bin");
    put(&mut img, "data/same.bin", same);
    path
}

#[test]
fn diff_reports_fmap_growth_between_two_images() {
    let test = "diff_reports_fmap_growth_between_two_images";
    if !can_mount(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let grow = pattern(5 * MIB as usize + 4321, 9);
    let same = pattern(10_000, 4);
    // The same path, re-created with three extents instead of one.
    let one = Fmap::Simple(vec![ext(GIB, 6 * MIB)]);
    let img_a = grow_image(d, "a.img", &grow, &same, &one);
    let img_b = grow_image(d, "b.img", &grow, &same, &three_extents());
    let specs = |fmap_bytes, fmap_extents| {
        vec![
            Spec {
                path: "/data/grow.bin",
                data: grow.clone(),
                opens: 1,
                fmap_bytes,
                fmap_extents,
            },
            Spec {
                path: "/data/same.bin",
                data: same.clone(),
                opens: 1,
                fmap_bytes: 56,
                fmap_extents: 1,
            },
        ]
    };
    let mut snaps = Vec::new();
    for (img, name, spec) in [(&img_a, "a", specs(56, 1)), (&img_b, "b", specs(104, 3))] {
        let mnt = d.join(format!("mnt-{name}"));
        std::fs::create_dir(&mnt).unwrap();
        let daemon = Daemon::builder().serve(d, img, &mnt).probes(false).start();
        // Both files read back byte for byte through the mount (three extents included).
        workload(&mnt, &spec);
        let s = wait_settled(&daemon, &spec, 1, false);
        for sp in &spec {
            let f = s.files.iter().find(|f| f.path == sp.path).unwrap();
            assert_eq!(
                (f.fmap_bytes, f.fmap_extents),
                (sp.fmap_bytes, sp.fmap_extents)
            );
        }
        let out_path = d.join(format!("{name}.json"));
        let out = trace(&[
            "snapshot",
            "--addr",
            &daemon.addr.to_string(),
            "-o",
            out_path.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{out:?}");
        snaps.push(out_path);
    }

    // a → b: the fmap of /data/grow.bin grew; nothing else changed (no probes: no latencies, no
    // opcode rows). 5 values per file (PTE, PMD, fmap bytes, extents, retries) and 2 DAX counts.
    let out = trace(&[
        "diff",
        snaps[0].to_str().unwrap(),
        snaps[1].to_str().unwrap(),
    ]);
    assert_eq!(
        report_lines(&out.stdout),
        [
            "SCOPE METRIC BEFORE AFTER CHANGE",
            "file /data/grow.bin fmap bytes 56 104 +85.7% REGRESSION",
            "file /data/grow.bin fmap extents 1 3 +200.0% REGRESSION",
            "2 regressions above 10% (12 values compared)",
        ],
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(1));
    // Even a 100% threshold: +200% extents is still a regression.
    let out = trace(&[
        "diff",
        "--threshold",
        "100%",
        snaps[0].to_str().unwrap(),
        snaps[1].to_str().unwrap(),
    ]);
    assert_eq!(
        report_lines(&out.stdout)[1..],
        [
            "file /data/grow.bin fmap bytes 56 104 +85.7%",
            "file /data/grow.bin fmap extents 1 3 +200.0% REGRESSION",
            "1 regression above 100% (12 values compared)",
        ]
    );
    assert_eq!(out.status.code(), Some(1));

    // b → a: the fmap shrank: shown, not a regression, exit 0.
    let out = trace(&[
        "diff",
        snaps[1].to_str().unwrap(),
        snaps[0].to_str().unwrap(),
    ]);
    assert_eq!(
        report_lines(&out.stdout),
        [
            "SCOPE METRIC BEFORE AFTER CHANGE",
            "file /data/grow.bin fmap bytes 104 56 -46.2%",
            "file /data/grow.bin fmap extents 3 1 -66.7%",
            "no regression above 10% (12 values compared)",
        ]
    );
    assert_eq!(out.status.code(), Some(0));
}
