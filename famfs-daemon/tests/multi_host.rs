//! Two hosts, one famfs image (root, real FUSE mounts, probes on, real Prometheus 2.42): a master
//! daemon and a client daemon (separate system-UUID files, listen ports and mounts) serve one image;
//! a file the master appends with `famfs-daemon image cp` appears in the client's mount; each host
//! opens and reads known files known numbers of times. One Prometheus, started from the shipped
//! `dashboards/prometheus/prometheus.yml` (targets and intervals substituted) with the shipped rules,
//! scrapes both with a `host` label per target: PromQL gives exact per-host and cross-host
//! (`sum by (fs_uuid, path)`) opens and bytes read — nothing counted twice, nothing lost; every
//! dashboard query and recording rule evaluates over the two targets, and no alert fires.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use famfs_daemon::http::api::FileRow;
use support::{
    GIB, daemon::*, http::*, image::*, mounts::*, pattern, prometheus::*, require_program,
    require_root, wait_for,
};

/// One host: its daemon (dropped first: SIGTERM unmounts), a guard detaching what is left, its mount.
struct Host {
    name: &'static str,
    daemon: Daemon,
    _guard: MountGuard,
    mnt: PathBuf,
    conn: String,
}

/// Start `famfs-daemon run` (probes on) for `img` at `<dir>/<name>/mnt` with the system-UUID file
/// `uuid` (master if it holds the image's creator, client otherwise).
fn host(name: &'static str, dir: &Path, img: &Path, uuid: &Path) -> Host {
    let mnt = dir.join(name).join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let mnt = mnt.canonicalize().unwrap();
    let guard = MountGuard(mnt.clone());
    let daemon = Daemon::builder()
        .args(&[
            "--image",
            img.to_str().unwrap(),
            "--mountpoint",
            mnt.to_str().unwrap(),
            "--poll-interval",
            "200ms",
        ])
        .env("FAMFS_SYSTEM_UUID_PATH", uuid)
        .start();
    let conn = daemon.field("connection").unwrap();
    assert_eq!(
        mount_connection(&mnt).map(|c| c.to_string()),
        Some(conn.clone())
    );
    Host {
        name,
        daemon,
        _guard: guard,
        mnt,
        conn,
    }
}

/// Read `path` through `n` times (each: open, read to EOF, close), checking every byte.
fn read_n(h: &Host, path: &str, want: &[u8], n: u64) {
    for _ in 0..n {
        assert!(
            fs::read(h.mnt.join(path)).unwrap() == want,
            "{}: {path}",
            h.name
        );
    }
}

/// Wait (30 s) until the host's own API shows exactly `want` (path, opens, read bytes) for its files.
fn wait_api(h: &Host, want: &[(&str, u64, u64)]) {
    let mut last = Vec::new();
    let ok = wait_for(Duration::from_secs(30), || {
        last = get_json::<Vec<FileRow>>(h.daemon.addr, "/api/v1/files?sort=path");
        let got: Vec<(&str, u64, u64)> = last
            .iter()
            .filter(|r| r.opens > 0)
            .map(|r| (r.path.as_str(), r.opens, r.read_bytes))
            .collect();
        (got == want).then_some(())
    });
    assert!(
        ok.is_some(),
        "{}: want {want:?}; the API shows {last:#?}",
        h.name
    );
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The shipped example configuration with the two hosts' addresses and 1 s intervals; asserts every
/// substitution happened (so a change of the example shows here).
fn example_config(a: &Host, b: &Host) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/prometheus");
    let mut cfg = fs::read_to_string(dir.join("prometheus.yml")).unwrap();
    for (from, to) in [
        ("famfs-host-a.example:9464", a.daemon.addr.to_string()),
        ("famfs-host-b.example:9464", b.daemon.addr.to_string()),
        ("scrape_interval: 15s", "scrape_interval: 1s".into()),
        ("scrape_timeout: 10s", "scrape_timeout: 900ms".into()),
        ("evaluation_interval: 15s", "evaluation_interval: 1s".into()),
    ] {
        assert!(cfg.contains(from), "example prometheus.yml has no {from:?}");
        cfg = cfg.replace(from, &to);
    }
    cfg
}

#[test]
fn two_hosts_one_image_exact_per_host_and_cross_host_counts_in_prometheus() {
    let t = "two_hosts_one_image_exact_per_host_and_cross_host_counts_in_prometheus";
    if !require_root(t) || !require_program(t, "prometheus") || !require_program(t, "promtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The image is made by host a (its UUID file is the master's); host b has its own UUID.
    let (img, mut image) = mkfs(d, "famfs.img", 4 * GIB);
    let a_only = pattern(70_000, 1);
    let b_only = pattern(9_000, 2);
    put(&mut image, "a_only.bin", &a_only);
    put(&mut image, "b_only.bin", &b_only);
    drop(image);
    let uuid_a = uuid_file(d);
    fs::create_dir_all(d.join("b")).unwrap();
    let uuid_b = d.join("b/system_uuid");
    fs::write(&uuid_b, "2f1d3c4b-5a69-4788-9aab-bccddeeff001\n").unwrap();
    let a = host("famfs-host-a", d, &img, &uuid_a);
    let b = host("famfs-host-b", d, &img, &uuid_b);
    assert_ne!(a.conn, b.conn);
    let fs_uuid = a.daemon.field("fs_uuid").unwrap();
    assert_eq!(b.daemon.field("fs_uuid"), Some(fs_uuid.clone()));
    // Roles: the log is writable on the master only.
    let mode = |h: &Host| {
        fs::metadata(h.mnt.join(".meta/.log"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!((mode(&a), mode(&b)), (0o644, 0o444), "master a, client b");

    // The master appends the shared file; the client's mount shows it without a remount.
    let shared = pattern(300_001, 3);
    let src = d.join("shared.src");
    fs::write(&src, &shared).unwrap();
    image_cli(
        d,
        &[
            "cp",
            img.to_str().unwrap(),
            src.to_str().unwrap(),
            "/shared.bin",
        ],
    );
    for h in [&a, &b] {
        let seen = wait_for(Duration::from_secs(10), || {
            h.mnt.join("shared.bin").exists().then_some(())
        });
        assert!(
            seen.is_some(),
            "{}: /shared.bin did not appear within 10 s",
            h.name
        );
    }

    // The workload: a reads shared 3×, a_only 2×; b reads shared 5×, b_only 1×. Our server answers
    // OPEN without FOPEN_KEEP_CACHE, so every open refetches the file: bytes = size × opens.
    let (sa, sb) = (3u64, 5u64);
    read_n(&a, "shared.bin", &shared, sa);
    read_n(&a, "a_only.bin", &a_only, 2);
    read_n(&b, "shared.bin", &shared, sb);
    read_n(&b, "b_only.bin", &b_only, 1);
    let size = shared.len() as u64;
    wait_api(
        &a,
        &[
            ("/a_only.bin", 2, 2 * a_only.len() as u64),
            ("/shared.bin", sa, sa * size),
        ],
    );
    wait_api(
        &b,
        &[
            ("/b_only.bin", 1, b_only.len() as u64),
            ("/shared.bin", sb, sb * size),
        ],
    );

    // One Prometheus from the shipped example (with the shipped rules), scraping both hosts.
    let cfg = example_config(&a, &b);
    let rules = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/prometheus/famfs-rules.yml"),
    )
    .unwrap();
    let t0 = unix_now();
    let prom = Prometheus::start_config(&cfg, &[("famfs-rules.yml", &rules)]);
    let scraped = wait_for(Duration::from_secs(30), || {
        let n = prom.value("count(up{job=\"famfs\"} == 1)")?;
        let oldest = prom.value("min(timestamp(up{job=\"famfs\"}))")?;
        (n == 2.0 && oldest >= t0).then_some(())
    });
    assert!(
        scraped.is_some(),
        "both targets up and scraped after the workload"
    );
    check_counts(&prom, &a, &b, &fs_uuid, size, (sa, sb));
    check_dashboards_and_rules(&prom);
}

/// Exact per-host and cross-host values through PromQL.
fn check_counts(prom: &Prometheus, a: &Host, b: &Host, u: &str, size: u64, (sa, sb): (u64, u64)) {
    let q = |e: String| prom.value(&e);
    let shared = format!("fs_uuid=\"{u}\",path=\"/shared.bin\"");
    for (h, n) in [(a, sa), (b, sb)] {
        let host = format!("host=\"{}\"", h.name);
        assert_eq!(
            q(format!("famfs_file_opens_total{{{host},{shared}}}")),
            Some(n as f64),
            "{}: shared opens",
            h.name
        );
        assert_eq!(
            q(format!("famfs_file_read_bytes_total{{{host},{shared}}}")),
            Some((n * size) as f64),
            "{}: shared bytes read",
            h.name
        );
        assert_eq!(
            q(format!(
                "famfs_file_open_duration_seconds_count{{{host},{shared}}}"
            )),
            Some(n as f64),
            "{}: kernel-observed open latencies joined",
            h.name
        );
        // The kernel's own count for the host's connection agrees with the per-file sum.
        let c = &h.conn;
        let k = q(format!(
            "famfs_fuse_requests_total{{{host},connection=\"{c}\",opcode=\"OPEN\"}}"
        ));
        let f = q(format!(
            "sum(famfs_file_opens_total{{{host},fs_uuid=\"{u}\"}})"
        ));
        assert_eq!(
            (k, f),
            (Some(n as f64 + if h.name == a.name { 2.0 } else { 1.0 }), k)
        );
        assert_eq!(
            q(format!(
                "sum(famfs_join_events_total{{{host},outcome=~\"unmatched_.*|late\"}})"
            )),
            Some(0.0),
            "{}: join lost nothing",
            h.name
        );
    }
    // Across hosts: one series per file, the exact sums.
    let all = |m: &str| prom.query(&format!("sum by (fs_uuid, path) ({m}{{fs_uuid=\"{u}\"}})"));
    let opens = all("famfs_file_opens_total");
    let mut got: Vec<(String, f64)> = opens
        .iter()
        .map(|r| {
            (
                r["metric"]["path"].as_str().unwrap().to_string(),
                r["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    got.sort_by(|x, y| x.0.cmp(&y.0));
    let want = [
        ("/a_only.bin".to_string(), 2.0),
        ("/b_only.bin".to_string(), 1.0),
        ("/shared.bin".to_string(), (sa + sb) as f64),
    ];
    assert_eq!(got, want, "opens by (fs_uuid, path) across hosts");
    assert_eq!(
        q(format!(
            "sum by (fs_uuid, path) (famfs_file_read_bytes_total{{{shared}}})"
        )),
        Some(((sa + sb) * size) as f64)
    );
    // Which host opens the shared file: exactly the two, each once.
    assert_eq!(
        q(format!("count(famfs_file_opens_total{{{shared}}} > 0)")),
        Some(2.0)
    );
    assert_eq!(
        q(format!(
            "count(famfs_file_opens_total{{fs_uuid=\"{u}\",path=\"/a_only.bin\",host=\"{}\"}})",
            b.name
        )),
        None,
        "b never opened a_only"
    );
}

/// Every dashboard query over the two targets (the cross-host panels must answer), every recording
/// rule has one series per host, and nothing alerts on two healthy hosts.
fn check_dashboards_and_rules(prom: &Prometheus) {
    // rate() needs two samples in its window: wait for three scrapes of each target.
    let three = wait_for(Duration::from_secs(30), || {
        prom.value("min(count_over_time(up{job=\"famfs\"}[30s]))")
            .filter(|n| *n >= 3.0)
    });
    assert!(three.is_some(), "three scrapes of each target within 30 s");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut n = 0;
    for d in ["famfs-overview.json", "famfs-files.json"] {
        for (title, expr) in dashboard_queries(&dir.join(d)) {
            let q = grafana_expand(&expr);
            let r = prom.query(&q);
            n += 1;
            if title.starts_with("Shared file") && !title.contains("DAX") {
                assert!(!r.is_empty(), "{d}: {title}: {q} returned nothing");
                let hosts: Vec<&str> = r
                    .iter()
                    .filter_map(|s| s["metric"]["host"].as_str())
                    .collect();
                if expr.contains("by (host, path") {
                    assert!(
                        hosts.contains(&"famfs-host-a") && hosts.contains(&"famfs-host-b"),
                        "{title}: {r:?}"
                    );
                }
            }
        }
    }
    println!("RESULT multi-host: {n} dashboard queries evaluated over two targets");
    // Recording rules with a series per host once evaluated (open p99 per host for the shared file,
    // probe CPU share).
    for (rule, want) in [
        (
            "count(instance_path:famfs_file_open_duration_seconds:p99_rate5m{path=\"/shared.bin\"})",
            2.0,
        ),
        (
            "count(fs_path:famfs_file_open_duration_seconds:p99_rate5m{path=\"/shared.bin\"})",
            1.0,
        ),
        ("count(instance:famfs_probe_run_time_seconds:rate5m)", 2.0),
    ] {
        assert_eq!(prom.wait_value(rule, want), Some(want), "{rule}");
    }
    // The workload ended before Prometheus started, so no OPEN is joined inside the window: the
    // unmatched share has no series rather than a 0/0 (its values are unit-tested by promtool).
    let idle = prom.query("instance:famfs_join_unmatched:ratio_rate15m");
    assert!(idle.is_empty(), "{idle:?}");
    // The series budget README's "Many hosts" states: 48 per file and host (10 counters, 4 gauges,
    // 6 DAX fault series, 2 histograms of 12 buckets + sum + count); the rest is printed.
    for h in ["famfs-host-a", "famfs-host-b"] {
        let per_file =
            format!("count({{__name__=~\"famfs_file_.*\",host=\"{h}\",path=\"/shared.bin\"}})");
        assert_eq!(prom.value(&per_file), Some(48.0), "{per_file}");
        let rest = prom.value(&format!(
            "count({{__name__=~\"famfs_.*\",host=\"{h}\",path=\"\"}})"
        ));
        println!("RESULT multi-host: {h}: 48 series per file, {rest:?} series not per file");
    }
    let firing = prom.query("ALERTS");
    assert!(firing.is_empty(), "alerts on two healthy hosts: {firing:?}");
}
