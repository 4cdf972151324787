//! The daemon scraped by a real Prometheus 2.42: exact per-opcode counts through PromQL, every
//! dashboard query evaluated without error, `promtool check metrics` clean, dashboards free of
//! hard-coded datasource UIDs.

mod common;

use std::{fs, path::Path, process::Command};

use common::*;

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
    let daemon = Daemon::start(&[]);
    let files = [("a", pattern(100, 1)), ("b", pattern(200, 2))];
    let Some(sq) = SquashMount::new(t, &files) else {
        return;
    };
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
