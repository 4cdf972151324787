//! Prometheus in the tests: a reader of the exposition text (`/metrics`) — samples with labels and
//! special values, one value by name and labels, histogram well-formedness — a real Prometheus server
//! (Debian's 2.42) scraping the daemon on loopback, and the dashboards' PromQL with Grafana's variables
//! expanded. Owns no metric name: the tests name what they check.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{
    free_port,
    http::{http_fetch, http_get},
    wait_for,
};

/// One sample line of the Prometheus text format: `name{labels} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A sample value, `+Inf`, `-Inf` and `NaN` included.
pub fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// A label value up to its closing quote, with `\\`, `\"` and `\n` escapes; the value and the rest.
fn label_value(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// Label pairs of a sample, in the order written.
type Labels = Vec<(String, String)>;

/// The `{…}` label set at the start of `r` (after its `{`): the labels and the rest of the line.
fn parse_labels<'a>(line: &str, mut r: &'a str) -> Result<(Labels, &'a str), String> {
    let mut labels = Vec::new();
    loop {
        r = r.trim_start_matches([' ', ',']);
        if let Some(after) = r.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (key, after) = r
            .split_once('=')
            .ok_or_else(|| format!("{line:?}: expected label=\"value\""))?;
        let after = after
            .strip_prefix('"')
            .ok_or_else(|| format!("{line:?}: expected '\"' after {key}="))?;
        let (value, after) = label_value(after)
            .ok_or_else(|| format!("{line:?}: unterminated value of label {key}"))?;
        labels.push((key.trim().to_string(), value));
        r = after;
    }
}

/// Parse one non-comment line of `/metrics`; errors say what was expected.
pub fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' ', '\t'])
        .ok_or_else(|| format!("{line:?}: expected a value after the metric name"))?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
    {
        return Err(format!("{line:?}: bad metric name {name:?}"));
    }
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(r) => parse_labels(line, r)?,
        None => (Vec::new(), &line[name_end..]),
    };
    let v = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| format!("{line:?}: expected a value"))?;
    let value = parse_value(v).ok_or_else(|| format!("{line:?}: bad value {v:?}"))?;
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Every sample of a `/metrics` text (comments and blank lines skipped); panics on a malformed line.
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| parse_sample(l).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// The sample value of `name{labels}` where every `(k, v)` in `labels` matches; `None` if absent.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (lbl, value) = if let Some(r) = rest.strip_prefix('{') {
            let Some((l, v)) = r.split_once('}') else {
                continue;
            };
            (l, v)
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue;
        };
        let ok = labels
            .iter()
            .all(|(k, v)| lbl.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if ok {
            return value.split_whitespace().next().and_then(|v| v.parse().ok());
        }
    }
    None
}

/// Every histogram series of a `/metrics` text: buckets cumulative (never decreasing) and the
/// `+Inf` bucket equal to `_count`. Returns the names of the histogram families seen.
pub fn check_histograms(text: &str) -> BTreeSet<String> {
    // (family, labels without le) → (bucket values in order, count)
    let mut series: BTreeMap<(String, String), (Vec<u64>, Option<u64>)> = BTreeMap::new();
    for s in samples(text) {
        let labels: Vec<String> = s
            .labels
            .iter()
            .filter(|(k, _)| *k != "le")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if let Some(base) = s.name.strip_suffix("_bucket") {
            let e = series
                .entry((base.to_string(), labels.join(",")))
                .or_default();
            e.0.push(s.value as u64);
        } else if let Some(base) = s.name.strip_suffix("_count") {
            series
                .entry((base.to_string(), labels.join(",")))
                .or_default()
                .1 = Some(s.value as u64);
        }
    }
    let mut families = BTreeSet::new();
    for ((name, labels), (buckets, count)) in &series {
        if buckets.is_empty() {
            // A name ending in `_count` without buckets: a counter, not a histogram.
            continue;
        }
        assert!(
            buckets.windows(2).all(|w| w[0] <= w[1]),
            "{name}{{{labels}}}: buckets decrease: {buckets:?}"
        );
        assert_eq!(
            buckets.last().copied(),
            *count,
            "{name}{{{labels}}}: +Inf bucket vs _count"
        );
        families.insert(name.clone());
    }
    families
}

/// A real Prometheus server (Debian's 2.42) on loopback, scraping `targets` every second, with its own
/// config and storage in a temp dir; killed on drop.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Start it and wait (30 s deadline) until `/-/ready` answers 200.
    pub fn start(targets: &[SocketAddr]) -> Prometheus {
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let cfg = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: famfs\n    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        );
        Prometheus::start_config(&cfg, &[])
    }

    /// A Prometheus running `config` (written as `prometheus.yml` in its temp dir, beside `files`:
    /// (name, contents), e.g. rule files the config names relatively).
    pub fn start_config(config: &str, files: &[(&str, &str)]) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("config");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("config file");
        }
        // A free loopback port (released just before Prometheus binds it).
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        let ready = wait_for(Duration::from_secs(30), || {
            let (status, _) = http_fetch(p.addr, "/-/ready", None).ok()?;
            (status == 200).then_some(())
        });
        assert!(ready.is_some(), "prometheus did not become ready");
        p
    }

    /// Instant query; returns the `data.result` array. Panics on a query error (with Prometheus's text).
    pub fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let (code, body) = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", urlencode(promql)),
            None,
        );
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{promql}: {e}: {body}"));
        assert_eq!(
            (code, v["status"].as_str()),
            (200, Some("success")),
            "query {promql} failed: {body}"
        );
        v["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("query {promql}: no data.result array: {body}"))
    }

    /// The single value of an instant vector query, if exactly one series answered.
    pub fn value(&self, promql: &str) -> Option<f64> {
        let r = self.query(promql);
        if r.len() != 1 {
            return None;
        }
        r[0]["value"][1].as_str()?.parse().ok()
    }

    /// Wait (up to 30 s, several scrapes) until `promql` has the single value `want`; returns the last value.
    pub fn wait_value(&self, promql: &str, want: f64) -> Option<f64> {
        let mut last = None;
        let ok = wait_for(Duration::from_secs(30), || {
            last = self.value(promql);
            (last == Some(want)).then_some(())
        });
        if ok.is_some() { Some(want) } else { last }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bytes of a query value written as they are (RFC 3986 unreserved); the rest is percent-encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s` as a query-string value.
pub fn urlencode(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Every PromQL expression in a Grafana dashboard, with its panel title.
pub fn dashboard_queries(path: &Path) -> Vec<(String, String)> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read dashboard"))
            .expect("dashboard JSON");
    let mut out = Vec::new();
    for p in v["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            out.push((
                p["title"].as_str().unwrap_or("").to_string(),
                t["expr"].as_str().expect("expr").to_string(),
            ));
        }
    }
    out
}

/// Grafana's variables replaced the way Grafana would for "All" and a 1-minute range.
pub fn grafana_expand(expr: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("$__range", "1m")
        .replace("$connection", ".*")
        .replace("$host", ".*")
        .replace("$fs_uuid", ".*")
        .replace("$path", ".*")
}
