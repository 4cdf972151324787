//! What operators load next to the daemon, checked with the real tools: the recording and alerting
//! rules (`promtool check rules`, `promtool test rules` with every alert tested firing and not
//! firing, and a real Prometheus loading them), the example `prometheus.yml` (`promtool check config`
//! as shipped and with its TLS/basic-auth block uncommented), the Grafana provisioning files, the
//! dashboards' structure (host variable, units, links, datasource variable) and their type check
//! against Grafana's published dashboard schema (`@grafana/schema` with the TypeScript compiler).
//! Every metric a dashboard or rule names must be one `famfs_common::metric_names::ALL` exports.
//! The multi-host scrape of the example configuration is in `tests/multi_host.rs`.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use support::{http::http_get, prometheus::*, require_program, wait_for};

fn dash_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

fn prom_dir() -> PathBuf {
    dash_dir().join("prometheus")
}

fn dashboard_files() -> Vec<PathBuf> {
    ["famfs-overview.json", "famfs-files.json"]
        .iter()
        .map(|n| dash_dir().join(n))
        .collect()
}

fn load(p: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(p).unwrap()).unwrap_or_else(|e| panic!("{p:?}: {e}"))
}

/// Run `prog args` in `cwd`; (success, stdout + stderr).
fn run(prog: &str, args: &[&str], cwd: &Path) -> (bool, String) {
    let out: Output = Command::new(prog)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The alerts the rules must define.
const ALERTS: [&str; 7] = [
    "FamfsTargetDown",
    "FamfsProbeUnavailable",
    "FamfsRingBufferDrops",
    "FamfsJoinUnmatchedShareHigh",
    "FamfsPmdFallbackRatioHigh",
    "FamfsGetFmapErrors",
    "FamfsMalformedFuseRequests",
];

/// The recording rules the dashboards' expensive queries and the alerts use.
const RECORDS: [&str; 6] = [
    "instance_path:famfs_file_open_duration_seconds:p99_rate5m",
    "fs_path:famfs_file_open_duration_seconds:p99_rate5m",
    "instance:famfs_dax_pmd_fallback:ratio_rate5m",
    "instance_probe:famfs_probe_run_time_seconds:rate5m",
    "instance:famfs_probe_run_time_seconds:rate5m",
    "instance:famfs_join_unmatched:ratio_rate15m",
];

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    let t = "rules_pass_promtool_check_and_their_unit_tests";
    if !require_program(t, "promtool") {
        return;
    }
    let (ok, out) = run(
        "promtool",
        &["check", "rules", "famfs-rules.yml"],
        &prom_dir(),
    );
    assert!(ok, "promtool check rules: {out}");
    let n = ALERTS.len() + RECORDS.len();
    assert!(out.contains(&format!("SUCCESS: {n} rules found")), "{out}");
    let (ok, out) = run(
        "promtool",
        &["test", "rules", "famfs-rules.test.yml"],
        &prom_dir(),
    );
    assert!(ok, "promtool test rules: {out}");
    assert!(out.contains("SUCCESS"), "{out}");
    println!("RESULT rules: promtool check rules ({n} rules) and promtool test rules: SUCCESS");
}

/// Per alert name: (tested not firing, tested firing) in the promtool unit tests. Reads the
/// `alert_rule_test` entries: an `alertname:` line followed by `exp_alerts: []` or by a list.
fn unit_test_coverage(text: &str) -> BTreeMap<String, (bool, bool)> {
    let mut cov: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    let mut current: Option<String> = None;
    for l in text.lines().map(str::trim) {
        if let Some(name) = l.strip_prefix("alertname:") {
            current = Some(name.trim().to_string());
        } else if let Some(rest) = l.strip_prefix("exp_alerts:") {
            let name = current.take().expect("exp_alerts after alertname");
            let e = cov.entry(name).or_default();
            if rest.trim() == "[]" {
                e.0 = true;
            } else {
                e.1 = true;
            }
        }
    }
    cov
}

#[test]
fn every_alert_is_tested_firing_and_not_firing_and_has_a_runbook() {
    let t = "every_alert_is_tested_firing_and_not_firing_and_has_a_runbook";
    if !require_program(t, "prometheus") {
        return;
    }
    let cov =
        unit_test_coverage(&fs::read_to_string(prom_dir().join("famfs-rules.test.yml")).unwrap());
    for a in ALERTS {
        assert_eq!(
            cov.get(a),
            Some(&(true, true)),
            "{a}: (not firing, firing) tested"
        );
    }
    assert_eq!(cov.len(), ALERTS.len(), "{cov:?}");

    // A real Prometheus loads the rules; its rules API is what the checks below read.
    let rules = fs::read_to_string(prom_dir().join("famfs-rules.yml")).unwrap();
    let cfg = "global:\n  evaluation_interval: 1s\nrule_files:\n  - famfs-rules.yml\n";
    let prom = Prometheus::start_config(cfg, &[("famfs-rules.yml", &rules)]);
    // Health is "unknown" until a rule's first evaluation, "err" if it failed.
    let mut last = String::new();
    let v = wait_for(std::time::Duration::from_secs(30), || {
        let (code, body) = http_get(prom.addr, "/api/v1/rules", None);
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let all_ok = v["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .all(|r| r["health"] == "ok");
        last = body;
        all_ok.then_some(v)
    })
    .unwrap_or_else(|| panic!("rules not all evaluated with health ok within 30 s: {last}"));
    let mut alerts = BTreeSet::new();
    let mut records = BTreeSet::new();
    let mut queries = Vec::new();
    for g in v["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let name = r["name"].as_str().unwrap().to_string();
            assert_eq!(r["health"], "ok", "{name}: {r}");
            queries.push((name.clone(), r["query"].as_str().unwrap().to_string()));
            if r["type"] == "alerting" {
                for key in ["summary", "runbook"] {
                    let a = r["annotations"][key].as_str().unwrap_or("");
                    assert!(a.len() >= 20, "{name}: annotation {key} {a:?}");
                }
                let sev = r["labels"]["severity"].as_str();
                assert!(
                    matches!(sev, Some("warning" | "critical")),
                    "{name}: {sev:?}"
                );
                alerts.insert(name);
            } else {
                records.insert(name);
            }
        }
    }
    assert_eq!(alerts, ALERTS.iter().map(|s| s.to_string()).collect());
    assert_eq!(records, RECORDS.iter().map(|s| s.to_string()).collect());
    for (name, q) in &queries {
        check_names(&format!("rule {name}"), q, &records);
    }
}

/// Every `famfs_…` metric `expr` names is an exported family (histograms: with `_bucket`, `_sum` or
/// `_count`), and every `a:b:c` name is one of `records`.
fn check_names(what: &str, expr: &str, records: &BTreeSet<String>) {
    let names: BTreeSet<String> = famfs_common::metric_names::ALL
        .iter()
        .flat_map(|m| {
            ["", "_bucket", "_sum", "_count"]
                .iter()
                .map(move |s| format!("{}{s}", m.name))
        })
        .collect();
    // Label values and strings are not names: drop quoted text first.
    let mut bare = String::new();
    let mut quoted = false;
    for c in expr.chars() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted {
            bare.push(c);
        }
    }
    let mut seen = 0;
    for tok in bare.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
        if tok.contains(':') && !tok.starts_with(':') {
            assert!(
                records.contains(tok),
                "{what}: unknown recording rule {tok} in {expr}"
            );
            seen += 1;
        } else if tok.starts_with("famfs_") {
            assert!(
                names.contains(tok),
                "{what}: {tok} is not an exported metric (metric_names::ALL): {expr}"
            );
            seen += 1;
        }
    }
    assert!(
        seen > 0 || expr.starts_with("up"),
        "{what}: names no famfs metric: {expr}"
    );
}

#[test]
fn dashboards_name_only_exported_metrics() {
    let none = BTreeSet::new();
    let mut n = 0;
    for d in dashboard_files() {
        for (title, expr) in dashboard_queries(&d) {
            check_names(&format!("{d:?} panel {title}"), &expr, &none);
            n += 1;
        }
        for v in load(&d)["templating"]["list"].as_array().unwrap() {
            if let Some(q) = v["query"]["query"].as_str() {
                check_names(&format!("{d:?} variable {}", v["name"]), q, &none);
            }
        }
    }
    assert!(n >= 30, "{n} queries");
    // The check bites: a misspelt family and an undefined recording rule are refused.
    for bad in [
        "rate(famfs_file_open_total[1m])",
        "instance:famfs_nope:rate5m > 1",
    ] {
        let r = std::panic::catch_unwind(|| check_names("probe", bad, &none));
        assert!(r.is_err(), "{bad} accepted");
    }
}

#[test]
fn dashboards_have_a_host_variable_units_links_and_cross_host_panels() {
    let uid = |d: &serde_json::Value| d["uid"].as_str().unwrap().to_string();
    let (o, f) = (load(&dashboard_files()[0]), load(&dashboard_files()[1]));
    for (d, other) in [(&o, &f), (&f, &o)] {
        let name = uid(d);
        let vars = d["templating"]["list"].as_array().unwrap();
        let host = vars
            .iter()
            .find(|v| v["name"] == "host")
            .expect("host variable");
        assert_eq!(host["type"], "query", "{name}");
        assert_eq!(host["datasource"]["uid"], "${datasource}", "{name}");
        assert_eq!(
            (host["includeAll"].as_bool(), host["allValue"].as_str()),
            (Some(true), Some(".*"))
        );
        // Every query of a famfs metric filters on the host variable.
        for p in d["panels"].as_array().unwrap() {
            let title = p["title"].as_str().unwrap();
            let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
            assert!(!unit.is_empty(), "{name}: panel {title} has no unit");
            for t in p["targets"].as_array().unwrap() {
                let e = t["expr"].as_str().unwrap();
                assert_eq!(
                    e.matches("famfs_").count(),
                    e.matches("host=~\"$host\"").count(),
                    "{name}: panel {title}: {e}"
                );
            }
        }
        // A link to the other dashboard, carrying the variables and the time range.
        let links = d["links"].as_array().expect("links");
        let l = links
            .iter()
            .find(|l| l["url"] == format!("/d/{}", uid(other)))
            .unwrap_or_else(|| panic!("{name}: no link to {}", uid(other)));
        assert_eq!(
            (l["includeVars"].as_bool(), l["keepTime"].as_bool()),
            (Some(true), Some(true))
        );
    }
    // Cross-host panels of the files dashboard: per host (opens, faults, latency, bytes) and summed.
    let per_host: Vec<String> = f["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .filter(|e| e.contains("by (host, path"))
        .collect();
    for m in [
        "famfs_file_opens_total",
        "famfs_file_dax_faults_total",
        "famfs_file_page_cache_faults_total",
        "famfs_file_open_duration_seconds_bucket",
        "famfs_file_read_bytes_total",
    ] {
        assert!(
            per_host.iter().any(|e| e.contains(m)),
            "no per-host panel of {m}"
        );
    }
    let exprs: Vec<(String, String)> = dashboard_queries(&dashboard_files()[1]);
    for m in ["famfs_file_opens_total", "famfs_file_read_bytes_total"] {
        assert!(
            exprs
                .iter()
                .any(|(_, e)| e.starts_with("sum by (fs_uuid, path)") && e.contains(m)),
            "no all-hosts panel of {m}"
        );
    }
}

/// Where the schema checker lives: `<target>/grafana-schema` (the test binary is in `<target>/<profile>/deps`).
fn schema_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().join("grafana-schema")
}

/// `npm ci` the pinned `@grafana/schema` and TypeScript into `schema_dir()` unless the lock file there
/// already is ours (idempotent, offline after the first run).
fn install_schema_checker() -> PathBuf {
    let src = dash_dir().join("schema");
    let dir = schema_dir();
    fs::create_dir_all(dir.join("checks")).unwrap();
    let lock = fs::read_to_string(src.join("package-lock.json")).unwrap();
    let installed = fs::read_to_string(dir.join("node_modules/.package-lock.json")).is_ok()
        && fs::read_to_string(dir.join("package-lock.json"))
            .ok()
            .as_deref()
            == Some(lock.as_str());
    for f in ["package.json", "package-lock.json", "tsconfig.json"] {
        fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    if !installed {
        let (ok, out) = run(
            "npm",
            &[
                "ci",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--cache",
                "npm-cache",
            ],
            &dir,
        );
        assert!(ok, "npm ci in {dir:?}: {out}");
    }
    dir
}

/// Type-check `dashboards` (name, JSON text) as `Dashboard` object literals: (success, tsc output).
fn tsc_check(dir: &Path, dashboards: &[(&str, String)]) -> (bool, String) {
    let checks = dir.join("checks");
    for e in fs::read_dir(&checks).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    for (name, json) in dashboards {
        let ts = format!(
            "import type {{ Dashboard }} from '@grafana/schema';\nexport const dashboard: Dashboard = {json};\n"
        );
        fs::write(checks.join(format!("{name}.ts")), ts).unwrap();
    }
    run(
        "node",
        &["node_modules/typescript/bin/tsc", "-p", "tsconfig.json"],
        dir,
    )
}

#[test]
fn dashboards_type_check_against_grafanas_published_schema() {
    let t = "dashboards_type_check_against_grafanas_published_schema";
    if !require_program(t, "node") || !require_program(t, "npm") {
        return;
    }
    let dir = install_schema_checker();
    let ds: Vec<(&str, String)> = dashboard_files()
        .iter()
        .map(|p| {
            let n = p.file_stem().unwrap().to_str().unwrap();
            (
                if n.ends_with("overview") {
                    "overview"
                } else {
                    "files"
                },
                fs::read_to_string(p).unwrap(),
            )
        })
        .collect();
    let (ok, out) = tsc_check(&dir, &ds);
    assert!(
        ok,
        "dashboards do not match @grafana/schema's Dashboard type:\n{out}"
    );
    // The check bites: an unknown panel property and a wrong variable type are reported, by file.
    let bad = ds[0].1.replacen("\"gridPos\"", "\"gridPosition\"", 1);
    let bad2 = ds[1]
        .1
        .replacen("\"type\": \"query\"", "\"type\": \"sql\"", 1);
    let (ok, out) = tsc_check(&dir, &[("bad_panel", bad), ("bad_variable", bad2)]);
    assert!(!ok, "tsc accepted broken dashboards");
    assert!(
        out.contains("bad_panel.ts") && out.contains("gridPosition\"' does not exist"),
        "{out}"
    );
    assert!(
        out.contains("bad_variable.ts") && out.contains("\"sql\""),
        "{out}"
    );
    println!("RESULT dashboards: both type-check against @grafana/schema's Dashboard (tsc)");
}

#[test]
fn example_prometheus_config_passes_promtool_also_with_tls_and_basic_auth() {
    let t = "example_prometheus_config_passes_promtool_also_with_tls_and_basic_auth";
    if !require_program(t, "promtool") {
        return;
    }
    let (ok, out) = run(
        "promtool",
        &["check", "config", "prometheus.yml"],
        &prom_dir(),
    );
    assert!(ok && out.contains("SUCCESS: 1 rule files found"), "{out}");
    // Uncomment the TLS/basic-auth block (drop one `# ` after the indentation of every line from
    // `# scheme:` on) and point its files at real ones.
    let text = fs::read_to_string(prom_dir().join("prometheus.yml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ca, pw) = (dir.path().join("ca.pem"), dir.path().join("pw"));
    fs::write(&ca, "").unwrap();
    fs::write(&pw, "secret\n").unwrap();
    let mut on = false;
    let mut lines = Vec::new();
    for l in text.lines() {
        on |= l.trim_start().starts_with("# scheme: https");
        lines.push(if on {
            l.replacen("# ", "", 1)
        } else {
            l.to_string()
        });
    }
    let tls = lines
        .join("\n")
        .replace("/etc/prometheus/famfs-ca.pem", ca.to_str().unwrap())
        .replace(
            "/etc/prometheus/famfs-scrape.password",
            pw.to_str().unwrap(),
        );
    assert!(
        tls.contains("\n    scheme: https\n    tls_config:\n      ca_file: "),
        "{tls}"
    );
    fs::write(dir.path().join("prometheus.yml"), &tls).unwrap();
    fs::copy(
        prom_dir().join("famfs-rules.yml"),
        dir.path().join("famfs-rules.yml"),
    )
    .unwrap();
    let (ok, out) = run(
        "promtool",
        &["check", "config", "prometheus.yml"],
        dir.path(),
    );
    assert!(ok, "with TLS and basic auth: {out}\n{tls}");
}

#[test]
fn grafana_provisioning_files_name_the_dashboards_and_a_prometheus_datasource() {
    let g = dash_dir().join("grafana/provisioning");
    let ds = fs::read_to_string(g.join("datasources/famfs.yml")).unwrap();
    assert!(
        ds.starts_with('#') && ds.contains("apiVersion: 1\ndatasources:\n"),
        "{ds}"
    );
    assert!(ds.contains("    type: prometheus\n"), "{ds}");
    let prov = fs::read_to_string(g.join("dashboards/famfs.yml")).unwrap();
    assert!(
        prov.contains("apiVersion: 1\nproviders:\n") && prov.contains("    type: file\n"),
        "{prov}"
    );
    // The provider's comment names exactly the dashboards that exist.
    for d in dashboard_files() {
        let n = d.file_name().unwrap().to_str().unwrap();
        assert!(prov.contains(n), "provider comment does not name {n}");
    }
}
