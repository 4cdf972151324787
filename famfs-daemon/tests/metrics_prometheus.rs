//! The daemon scraped by a real Prometheus 2.42: exact per-opcode counts through PromQL, every
//! dashboard query evaluated without error, `promtool check metrics` clean, dashboards free of
//! hard-coded datasource UIDs; and, on a famfs image served by the daemon itself, exact per-file counts
//! (opens, kernel-observed open latencies, bytes read) through PromQL and `/api/v1/files`, and the
//! `--max-file-series` fold. Also: the per-file page-cache faults of mmap reads reach `/api/v1/files`
//! with no `/metrics` scrape at all (the join applies the kernel's fault maps on its own tick), and the
//! tests' own reader of the Prometheus text format.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use famfs_daemon::http::api::FileRow;
use support::{
    GIB,
    daemon::Daemon,
    ftrace::FtraceFaults,
    http::{get_json, http_get},
    image::{mkfs, put},
    mounts::{MountGuard, SquashMount, mount_connection},
    pattern,
    prometheus::{
        Prometheus, dashboard_queries, grafana_expand, metric, parse_sample, parse_value, samples,
    },
    require_program, require_root, wait_for,
};

fn dashboards() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut v: Vec<_> = fs::read_dir(&dir)
        .expect("dashboards/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

#[test]
fn dashboards_use_a_datasource_variable() {
    let ds = dashboards();
    assert_eq!(ds.len(), 2, "{ds:?}");
    for d in ds {
        let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&d).unwrap()).unwrap();
        let templ = v["templating"]["list"].as_array().unwrap();
        assert!(
            templ
                .iter()
                .any(|t| t["type"] == "datasource" && t["name"] == "datasource"),
            "{d:?}"
        );
        // The host variable queries through the same datasource variable.
        assert!(
            templ
                .iter()
                .any(|t| t["name"] == "host" && t["datasource"]["uid"] == "${datasource}"),
            "{d:?}: host variable"
        );
        for p in v["panels"].as_array().unwrap() {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{d:?} panel {}",
                p["title"]
            );
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "{d:?} panel {}",
                    p["title"]
                );
                let e = t["expr"].as_str().unwrap();
                assert!(e.contains("famfs_"), "{d:?}: {e}");
            }
        }
    }
}

#[test]
fn prometheus_scrapes_exact_counts_and_every_dashboard_query_runs() {
    let t = "prometheus_scrapes_exact_counts_and_every_dashboard_query_runs";
    if !require_root(t) || !require_program(t, "prometheus") || !require_program(t, "promtool") {
        return;
    }
    let files = [("a", pattern(100, 1)), ("b", pattern(200, 2))];
    let Some(sq) = SquashMount::new(t, &files) else {
        return;
    };
    // Every connection is traced. The daemon starts once the mount exists: connection numbers are
    // reused, and a mount of another test that had this number before must not count here.
    let daemon = Daemon::start(&[]);
    for _ in 0..3 {
        for (name, body) in &files {
            assert_eq!(&fs::read(sq.mnt.join(name)).unwrap(), body);
        }
    }
    let prom = Prometheus::start(&[daemon.addr]);
    let c = sq.conn;
    assert_eq!(
        prom.wait_value(
            &format!("famfs_fuse_requests_total{{connection=\"{c}\",opcode=\"OPEN\"}}"),
            6.0
        ),
        Some(6.0)
    );
    assert_eq!(
        prom.wait_value(
            &format!(
                "famfs_fuse_request_duration_seconds_count{{connection=\"{c}\",opcode=\"OPEN\"}}"
            ),
            6.0
        ),
        Some(6.0)
    );
    assert_eq!(
        prom.value(&format!(
            "famfs_fuse_request_errors_total{{connection=\"{c}\",opcode=\"OPEN\"}}"
        )),
        Some(0.0)
    );
    assert_eq!(prom.value("up{job=\"famfs\"}"), Some(1.0));

    // rate() needs two samples in its window: wait for three scrapes.
    let scraped = wait_for(std::time::Duration::from_secs(30), || {
        prom.value("count_over_time(up{job=\"famfs\"}[30s])")
            .filter(|n| *n >= 3.0)
    });
    assert!(scraped.is_some(), "three scrapes within 30 s");
    for d in dashboards() {
        for (title, expr) in dashboard_queries(&d) {
            let q = grafana_expand(&expr);
            prom.query(&q); // panics with Prometheus's error text if the query is invalid
            if d.ends_with("famfs-overview.json")
                && (title.starts_with("FUSE requests") || title.starts_with("Probe status"))
            {
                assert!(!prom.query(&q).is_empty(), "{title}: {q} returned nothing");
            }
        }
    }

    // promtool on both wire formats: Prometheus text must be clean; OpenMetrics may only show promtool's
    // known false positive ("no help text" for counters, whose HELP line names the family without _total).
    promtool_check(&daemon);
}

/// `promtool check metrics` on both wire formats of the daemon's current scrape: the Prometheus text
/// must be clean; OpenMetrics may only show promtool's known false positive ("no help text" for
/// counters, whose HELP line names the family without `_total`).
fn promtool_check(daemon: &Daemon) {
    let (_, text) = daemon.get("/metrics");
    let (_, om) = http_get(
        daemon.addr,
        "/metrics",
        Some("application/openmetrics-text"),
    );
    for (what, body, allow_help) in [("text", text, false), ("openmetrics", om, true)] {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let report = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        let bad: Vec<&str> = report
            .lines()
            .filter(|l| !(l.trim().is_empty() || allow_help && l.ends_with("no help text")))
            .collect();
        assert!(bad.is_empty(), "promtool ({what}): {bad:?}");
        if !allow_help {
            assert!(out.status.success(), "promtool ({what}) failed: {report}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A famfs image served by `famfs-daemon run` (probes on).

/// The image in a temp dir, mounted by a daemon. Fields drop in order: the daemon (SIGTERM: it unmounts
/// and exits), the mount guard (detaches whatever is left), then the temp dir.
struct Served {
    daemon: Daemon,
    _guard: MountGuard,
    mnt: PathBuf,
    conn: u32,
    fs_uuid: String,
    /// Inode ids of the files, in the order given.
    ids: Vec<u64>,
    _dir: tempfile::TempDir,
}

/// Build an image holding `files` (relative path, contents) with the format library and serve it with
/// `famfs-daemon run --image … --mountpoint … --listen 127.0.0.1:0 EXTRA…`.
fn serve(files: &[(&str, Vec<u8>)], extra: &[&str]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (img_path, mut img) = mkfs(dir.path(), "famfs.img", 4 * GIB);
    let mut ids = Vec::new();
    for (path, data) in files {
        if let Some((parent, _)) = path.rsplit_once('/') {
            img.mkdir(parent, 0o755, 0, 0, true).unwrap();
        }
        ids.push(put(&mut img, path, data));
    }
    drop(img);
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let mnt = mnt.canonicalize().unwrap();
    let guard = MountGuard(mnt.clone());
    let daemon = Daemon::builder()
        .serve(dir.path(), &img_path, &mnt)
        .args(extra)
        .start();
    let conn = daemon.field("connection").unwrap().parse().unwrap();
    assert_eq!(mount_connection(&mnt), Some(conn));
    let fs_uuid = daemon.field("fs_uuid").unwrap();
    Served {
        daemon,
        _guard: guard,
        mnt,
        conn,
        fs_uuid,
        ids,
        _dir: dir,
    }
}

/// Sum of a per-file family over every series of `fs_uuid` (the `__other__` fold included).
fn sum_files(text: &str, name: &str, fs_uuid: &str) -> f64 {
    let head = format!("{name}{{");
    let uuid = format!("fs_uuid=\"{fs_uuid}\"");
    text.lines()
        .filter(|l| l.starts_with(&head) && l.contains(&uuid))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Wait (30 s deadline, polling the daemon's real state) until its join has caught up with what the
/// kernel and the server saw, judged by independent sources only: every kernel OPEN completion matched
/// to a server record, every record the server handed over taken by the join, and the per-file OPEN
/// and READ sums equal to the kernel's own OPEN and READ counts for our connection. Returns that scrape.
fn wait_joined(s: &Served) -> String {
    let c = s.conn.to_string();
    let mut last = String::new();
    let done = wait_for(Duration::from_secs(30), || {
        let t = s.daemon.metrics();
        let k = |op: &str| {
            metric(
                &t,
                "famfs_fuse_requests_total",
                &[("connection", c.as_str()), ("opcode", op)],
            )
        };
        let (k_open, k_read) = (k("OPEN"), k("READ").unwrap_or(0.0));
        let matched = metric(&t, "famfs_join_events_total", &[("outcome", "matched")]);
        let taken = metric(
            &t,
            "famfs_join_events_total",
            &[("outcome", "server_record")],
        );
        let sent = metric(&t, "famfs_server_records_total", &[("outcome", "sent")]);
        let f_open = sum_files(&t, "famfs_file_opens_total", &s.fs_uuid);
        let f_read = sum_files(&t, "famfs_file_reads_total", &s.fs_uuid);
        // Page-cache faults: the kernel's count for our device (read by this scrape) against the
        // per-file sum (applied by the join on its own tick).
        let k_pc = metric(
            &t,
            "famfs_page_cache_faults_total",
            &[("device", format!("0:{c}").as_str())],
        )
        .unwrap_or(0.0);
        let f_pc = sum_files(&t, "famfs_file_page_cache_faults_total", &s.fs_uuid);
        last = format!(
            "kernel OPEN {k_open:?} READ {k_read} page-cache faults {k_pc}, join matched {matched:?}, \
             records taken {taken:?} of {sent:?}, per-file opens {f_open} reads {f_read} page-cache \
             faults {f_pc}"
        );
        let caught_up = k_open.is_some_and(|k| k > 0.0)
            && matched == k_open
            && sent.is_some()
            && taken == sent
            && Some(f_open) == k_open
            && f_read == k_read
            && f_pc == k_pc;
        caught_up.then_some(t)
    });
    done.unwrap_or_else(|| panic!("the join did not catch up within 30 s: {last}"))
}

/// Wait until Prometheus holds a scrape that started after `t0` (Unix seconds); every sample of that
/// scrape then shows the state the caller had quiesced before `t0`.
fn wait_scrape_after(prom: &Prometheus, t0: f64) {
    let mut last = None;
    let ok = wait_for(Duration::from_secs(30), || {
        last = prom.value("timestamp(up{job=\"famfs\"})");
        last.filter(|ts| *ts >= t0)
    });
    assert!(
        ok.is_some(),
        "no scrape after {t0} within 30 s (last at {last:?})"
    );
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The `/api/v1/files` fields the famfs mount test checks.
#[derive(Debug, PartialEq)]
struct ApiRow {
    path: String,
    ino: u64,
    size: u64,
    opens: u64,
    open_errors: u64,
    open_latency_count: u64,
    /// As Prometheus reported it (a float there).
    reads: f64,
    read_bytes: u64,
}

/// Per opcode and per join outcome, through PromQL: the kernel (probes), the server and the per-file
/// join agree exactly on `total` OPENs, and on READ; exactly `files` files have series.
fn check_totals(prom: &Prometheus, s: &Served, total: f64, files: usize) {
    let (c, u) = (s.conn.to_string(), s.fs_uuid.clone());
    let q = |promql: String| prom.value(&promql);
    // Per opcode: the kernel (probes), the server and the per-file join agree on OPEN exactly.
    assert_eq!(
        q(format!(
            "famfs_fuse_requests_total{{connection=\"{c}\",opcode=\"OPEN\"}}"
        )),
        Some(total)
    );
    assert_eq!(
        q(format!(
            "famfs_fuse_request_duration_seconds_count{{connection=\"{c}\",opcode=\"OPEN\"}}"
        )),
        Some(total)
    );
    assert_eq!(
        q("famfs_server_requests_total{opcode=\"OPEN\"}".into()),
        Some(total)
    );
    assert_eq!(
        q("famfs_server_request_errors_total{opcode=\"OPEN\"}".into()),
        Some(0.0)
    );
    assert_eq!(
        q(format!("sum(famfs_file_opens_total{{fs_uuid=\"{u}\"}})")),
        Some(total)
    );
    // READ: the kernel's count, the server's and the per-file sum are one number.
    let k_read = q(format!(
        "famfs_fuse_requests_total{{connection=\"{c}\",opcode=\"READ\"}}"
    ))
    .expect("kernel READ count");
    assert_eq!(
        q("famfs_server_requests_total{opcode=\"READ\"}".into()),
        Some(k_read)
    );
    assert_eq!(
        q(format!("sum(famfs_file_reads_total{{fs_uuid=\"{u}\"}})")),
        Some(k_read)
    );
    // Exactly the K files have series (no fold, nothing else touched).
    assert_eq!(
        q(format!("count(famfs_file_opens_total{{fs_uuid=\"{u}\"}})")),
        Some(files as f64)
    );
    // Every kernel OPEN completion was joined to its server record; nothing unmatched or late.
    for (outcome, want) in [
        ("matched", total),
        ("unmatched_server", 0.0),
        ("unmatched_kernel", 0.0),
        ("late", 0.0),
        ("stale_record", 0.0),
    ] {
        assert_eq!(
            q(format!("famfs_join_events_total{{outcome=\"{outcome}\"}}")),
            Some(want),
            "join outcome {outcome}"
        );
    }
}

/// Per file, exactly, through PromQL; returns each file's READ count as Prometheus reports it.
fn check_files_in_prometheus(
    prom: &Prometheus,
    s: &Served,
    spec: &[(&str, usize, u64)],
) -> BTreeMap<String, f64> {
    let u = s.fs_uuid.as_str();
    let q = |promql: String| prom.value(&promql);
    // Per file, exactly.
    let mut prom_reads = BTreeMap::new();
    for (path, len, n) in spec {
        let sel = format!("{{fs_uuid=\"{u}\",path=\"/{path}\"}}");
        let v = |name: &str| q(format!("{name}{sel}"));
        let passes = (n + 1) as f64;
        assert_eq!(v("famfs_file_opens_total"), Some(passes), "{path}: opens");
        assert_eq!(
            v("famfs_file_open_errors_total"),
            Some(0.0),
            "{path}: open errors"
        );
        assert_eq!(
            v("famfs_file_open_duration_seconds_count"),
            Some(passes),
            "{path}: kernel-observed open latencies joined"
        );
        assert_eq!(
            v("famfs_file_read_bytes_total"),
            Some(*len as f64 * passes),
            "{path}: bytes read through READ"
        );
        assert_eq!(v("famfs_file_size_bytes"), Some(*len as f64), "{path}");
        assert_eq!(v("famfs_file_writes_total"), Some(0.0), "{path}");
        assert_eq!(v("famfs_file_fmap_extents"), Some(1.0), "{path}");
        let reads = v("famfs_file_reads_total").expect("reads");
        // At least one READ per pass, and no more than one per page per pass.
        let pages = len.div_ceil(4096) as f64;
        assert!(
            reads >= passes && reads <= pages * passes,
            "{path}: {reads} READs for {passes} passes of {pages} pages"
        );
        prom_reads.insert(format!("/{path}"), reads);
        // The mmap pass faulted through the page cache (how many faults fault-around saves is the
        // kernel's business; there is at least one).
        let pc = v("famfs_file_page_cache_faults_total").expect("page-cache faults");
        assert!(
            pc >= 1.0,
            "{path}: {pc} page-cache faults after the mmap pass"
        );
    }

    prom_reads
}

#[test]
fn famfs_mount_per_file_counts_are_exact_in_prometheus_and_the_api() {
    let t = "famfs_mount_per_file_counts_are_exact_in_prometheus_and_the_api";
    if !require_root(t) || !require_program(t, "prometheus") || !require_program(t, "promtool") {
        return;
    }
    // K = 4 files with distinct sizes (inside one page, many pages, past the 2 MiB allocation unit)
    // and distinct read-open counts n_i, so a mix-up between files shows.
    let spec: [(&str, usize, u64); 4] = [
        ("alpha.bin", 5000, 1),
        ("beta.bin", 100_000, 2),
        ("dir/gamma.bin", 300_001, 3),
        ("delta.bin", 2 * 1024 * 1024 + 4097, 5),
    ];
    let files: Vec<(&str, Vec<u8>)> = spec
        .iter()
        .enumerate()
        .map(|(i, (p, len, _))| (*p, pattern(*len, i as u8 + 1)))
        .collect();
    let s = serve(&files, &[]);

    // The workload. Each of the n_i read passes is one open(2) + read to EOF + close; then one more
    // open(2) whose mapping is read through once. FUSE sends OPEN for every open(2) (the dentry and
    // attributes are cached, but opens are never), so file i gets exactly n_i + 1 OPENs. Our server
    // answers OPEN without FOPEN_KEEP_CACHE, so the kernel drops the file's page cache at every open:
    // no drop_caches is needed, and every pass (the mmap pass too, whose faults read the pages that
    // the open just dropped) fetches the whole file through READ once — the bytes the server sends
    // per file are exactly size × (n_i + 1) (READ replies stop at EOF). How many READs that takes
    // depends on readahead, so READ counts are checked against the kernel's and the server's own.
    for ((path, data), (_, _, n)) in files.iter().zip(&spec) {
        let p = s.mnt.join(path);
        for _ in 0..*n {
            assert!(fs::read(&p).unwrap() == *data, "{path}: read pass");
        }
        let f = fs::File::open(&p).unwrap();
        // SAFETY: a read-only shared mapping of a file nothing writes while the test runs.
        let m = unsafe { memmap2::Mmap::map(&f) }.unwrap();
        assert!(m[..] == data[..], "{path}: mmap pass");
    }
    let opens_total: u64 = spec.iter().map(|(_, _, n)| n + 1).sum();
    assert_eq!(opens_total, 15);

    let text = wait_joined(&s);
    let t0 = unix_now();
    let prom = Prometheus::start(&[s.daemon.addr]);
    wait_scrape_after(&prom, t0);

    check_totals(&prom, &s, opens_total as f64, spec.len());
    let prom_reads = check_files_in_prometheus(&prom, &s, &spec);
    // /api/v1/files: the same files with the same counts.
    let (code, body) = s.daemon.get("/api/v1/files?sort=path");
    assert_eq!(code, 200, "{body}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let got: Vec<ApiRow> = rows
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
            ApiRow {
                path: r["path"].as_str().unwrap().to_string(),
                ino: n("ino"),
                size: n("size"),
                opens: n("opens"),
                open_errors: n("open_errors"),
                open_latency_count: n("open_latency_count"),
                reads: n("reads") as f64,
                read_bytes: n("read_bytes"),
            }
        })
        .collect();
    let mut want: Vec<ApiRow> = spec
        .iter()
        .zip(&s.ids)
        .map(|((path, len, n), id)| {
            let path = format!("/{path}");
            let reads = prom_reads[&path];
            ApiRow {
                path,
                ino: *id,
                size: *len as u64,
                opens: n + 1,
                open_errors: 0,
                open_latency_count: n + 1,
                reads,
                read_bytes: *len as u64 * (n + 1),
            }
        })
        .collect();
    want.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(got, want);
    // The scrape the join caught up in shows the same per-file opens the API does.
    for w in &want {
        assert_eq!(
            metric(
                &text,
                "famfs_file_opens_total",
                &[("fs_uuid", s.fs_uuid.as_str()), ("path", w.path.as_str())]
            ),
            Some(w.opens as f64),
            "{}",
            w.path
        );
    }

    promtool_check(&s.daemon);
}

#[test]
fn max_file_series_folds_the_least_recently_active_files_into_other() {
    let t = "max_file_series_folds_the_least_recently_active_files_into_other";
    if !require_root(t) || !require_program(t, "prometheus") {
        return;
    }
    // Five files, file i opened i + 1 times, one file after the other: with --max-file-series 3 the
    // three most recently active (f2, f3, f4) keep their series and f0, f1 fold into __other__.
    let names = ["f0", "f1", "f2", "f3", "f4"];
    let files: Vec<(&str, Vec<u8>)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, pattern(4096 * (i + 1), i as u8)))
        .collect();
    let s = serve(&files, &["--max-file-series", "3"]);
    for (i, n) in names.iter().enumerate() {
        for _ in 0..=i {
            drop(fs::File::open(s.mnt.join(n)).unwrap());
        }
        // Recency is the server's reply time, taken before the record goes to the join: once the
        // join has this file's opens, the next file's replies are later, even when a worker thread
        // was preempted right after replying.
        let path = format!("/{n}");
        wait_files(&s, &format!("{path} opened {} times", i + 1), |rows| {
            rows.iter()
                .any(|r| r.path == path && r.opens == i as u64 + 1)
        });
    }
    let text = wait_joined(&s);
    let u = s.fs_uuid.as_str();

    // Every per-file family has exactly the 3 kept paths plus __other__.
    let mut paths: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for l in text.lines().filter(|l| l.starts_with("famfs_file_")) {
        let Some((name, rest)) = l.split_once('{') else {
            continue;
        };
        if let Some(p) = rest
            .split_once("path=\"")
            .and_then(|(_, r)| r.split_once('"'))
        {
            paths.entry(name).or_default().insert(p.0);
        }
    }
    let want: BTreeSet<&str> = ["/f2", "/f3", "/f4", "__other__"].into();
    assert!(paths.len() >= 20, "per-file families: {:?}", paths.keys());
    for (name, got) in &paths {
        assert_eq!(got, &want, "{name}");
    }
    let per = |name: &str, path: &str| metric(&text, name, &[("fs_uuid", u), ("path", path)]);
    let opens: Vec<Option<f64>> = ["/f2", "/f3", "/f4", "__other__"]
        .iter()
        .map(|p| per("famfs_file_opens_total", p))
        .collect();
    assert_eq!(opens, [Some(3.0), Some(4.0), Some(5.0), Some(1.0 + 2.0)]);
    // Gauges of the fold are sums over the folded files: sizes 4096 + 8192, two 56-byte fmaps.
    assert_eq!(per("famfs_file_size_bytes", "__other__"), Some(12288.0));
    assert_eq!(per("famfs_file_fmap_bytes", "__other__"), Some(112.0));
    assert_eq!(
        metric(&text, "famfs_file_series_folded", &[("fs_uuid", u)]),
        Some(2.0)
    );

    // Prometheus sees the same bounded set.
    let t0 = unix_now();
    let prom = Prometheus::start(&[s.daemon.addr]);
    wait_scrape_after(&prom, t0);
    assert_eq!(
        prom.value(&format!("count(famfs_file_opens_total{{fs_uuid=\"{u}\"}})")),
        Some(4.0)
    );
    assert_eq!(
        prom.value(&format!(
            "famfs_file_opens_total{{fs_uuid=\"{u}\",path=\"__other__\"}}"
        )),
        Some(3.0)
    );
    assert_eq!(
        prom.value(&format!("famfs_file_series_folded{{fs_uuid=\"{u}\"}}")),
        Some(2.0)
    );

    // The API is not folded: all five files with their own counts.
    let (code, body) = s.daemon.get("/api/v1/files?sort=path");
    assert_eq!(code, 200, "{body}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let got: Vec<(&str, u64)> = rows
        .iter()
        .map(|r| (r["path"].as_str().unwrap(), r["opens"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        got,
        [("/f0", 1), ("/f1", 2), ("/f2", 3), ("/f3", 4), ("/f4", 5)]
    );
}

/// Poll `/api/v1/files?sort=path` (never `/metrics`) until `ok` holds for its rows; the rows then.
fn wait_files(s: &Served, what: &str, ok: impl Fn(&[FileRow]) -> bool) -> Vec<FileRow> {
    let mut last = Vec::new();
    let done = wait_for(Duration::from_secs(30), || {
        last = get_json::<Vec<FileRow>>(s.daemon.addr, "/api/v1/files?sort=path");
        ok(&last).then(|| last.clone())
    });
    done.unwrap_or_else(|| panic!("{what} within 30 s; the API shows {last:#?}"))
}

/// Open `path` (which drops its page cache: our server answers OPEN without FOPEN_KEEP_CACHE), map
/// it and read the mapping through, checking every byte.
fn mmap_pass(path: &Path, want: &[u8]) {
    let f = fs::File::open(path).unwrap();
    // SAFETY: a read-only shared mapping of a file nothing writes while the test runs.
    let m = unsafe { memmap2::Mmap::map(&f) }.unwrap();
    assert!(m[..] == want[..], "{}: mmap pass", path.display());
}

#[test]
fn page_cache_faults_reach_the_api_without_a_scrape() {
    let t = "page_cache_faults_reach_the_api_without_a_scrape";
    if !require_root(t) {
        return;
    }
    // A one-page file mapped three times, a four-page file mapped twice, a file only read(2).
    let one = pattern(4000, 1);
    let four = pattern(3 * 4096 + 100, 2);
    let read = pattern(10_000, 3);
    let files = [
        ("mapped/one.bin", one.clone()),
        ("mapped/four.bin", four.clone()),
        ("plain/read.bin", read.clone()),
    ];
    let s = serve(&files, &[]);
    // The kernel's own count of the same tracepoint on our device, read without the daemon.
    let ftrace = FtraceFaults::start(s.conn);
    for _ in 0..3 {
        mmap_pass(&s.mnt.join("mapped/one.bin"), &one);
    }
    for _ in 0..2 {
        mmap_pass(&s.mnt.join("mapped/four.bin"), &four);
        assert!(fs::read(s.mnt.join("plain/read.bin")).unwrap() == read);
    }
    let kernel = ftrace.stop();
    drop(ftrace);
    let (one_ino, four_ino, read_ino) = (s.ids[0], s.ids[1], s.ids[2]);
    let k = |ino: u64| kernel.get(&ino).copied().unwrap_or(0);
    // Each mapping faults at least once (its open dropped the page cache); nothing else faults.
    assert!(k(one_ino) >= 3 && k(four_ino) >= 2, "{kernel:?}");
    assert_eq!(k(read_ino), 0, "{kernel:?}");
    assert_eq!(
        kernel.keys().copied().collect::<Vec<_>>(),
        [one_ino, four_ino],
        "{kernel:?}"
    );

    // Nothing scrapes /metrics in this test: the counts below are the join's own, applied on its
    // tick, and they are exactly the kernel's (waited for exactly: a tick during the workload may
    // have shown fewer).
    let rows = wait_files(
        &s,
        "the workload's opens and exact page-cache faults",
        |rows| {
            let row = |p: &str| rows.iter().find(|r| r.path == p);
            row("/mapped/one.bin")
                .is_some_and(|r| r.opens == 3 && r.page_cache_faults == k(one_ino))
                && row("/mapped/four.bin")
                    .is_some_and(|r| r.opens == 2 && r.page_cache_faults == k(four_ino))
                && row("/plain/read.bin").is_some_and(|r| r.opens == 2)
        },
    );
    let by_path = |p: &str| rows.iter().find(|r| r.path == p).unwrap();
    // A file only read with read(2) never faults, exactly.
    assert_eq!(by_path("/plain/read.bin").page_cache_faults, 0);
    // No DAX on this mount: every DAX fault column is exactly zero.
    for r in &rows {
        assert_eq!(
            (
                r.faults_pte,
                r.faults_pmd,
                r.faults_fallback,
                r.faults_error
            ),
            (0, 0, 0, 0),
            "{}",
            r.path
        );
    }
    // `sort=faults` orders by them (most first, ties by path), without a scrape either.
    let by_faults: Vec<FileRow> = get_json(s.daemon.addr, "/api/v1/files?sort=faults");
    let got: Vec<(&str, u64)> = by_faults
        .iter()
        .map(|r| (r.path.as_str(), r.faults()))
        .collect();
    let mut want = vec![
        ("/mapped/four.bin", k(four_ino)),
        ("/mapped/one.bin", k(one_ino)),
        ("/plain/read.bin", 0),
    ];
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    assert_eq!(got, want);
}

#[test]
fn the_tests_metrics_reader_handles_labels_escapes_and_special_values() {
    let s = parse_sample(r#"famfs_x_total{a="1",b="q\"uo\\te\n",c="é"} 42"#).unwrap();
    assert_eq!(s.name, "famfs_x_total");
    assert_eq!(s.label("a"), Some("1"));
    assert_eq!(s.label("b"), Some("q\"uo\\te\n"));
    assert_eq!(s.label("c"), Some("é"));
    assert_eq!(s.value, 42.0);
    let s = parse_sample("up 1 1712345678000").unwrap();
    assert_eq!((s.name.as_str(), s.labels.len(), s.value), ("up", 0, 1.0));
    let s = parse_sample(r#"h_bucket{le="+Inf"} 3"#).unwrap();
    assert_eq!(s.label("le").and_then(parse_value), Some(f64::INFINITY));
    assert!(
        parse_sample(r#"m{a="1"} x"#)
            .unwrap_err()
            .contains("bad value \"x\"")
    );
    assert!(
        parse_sample(r#"m{a=1} 2"#)
            .unwrap_err()
            .contains("expected '\"' after a=")
    );
    assert!(
        parse_sample(r#"m{a="1} 2"#)
            .unwrap_err()
            .contains("unterminated value of label a")
    );
    assert_eq!(samples("# HELP x\nok 1\n\nm{a=\"b\"} 2\n").len(), 2);
}
