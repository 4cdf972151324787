//! Helpers shared by the integration tests: root check with a SKIP line, a daemon process guard that
//! waits for the readiness line (no sleeps), HTTP GETs through the crate's one client, a reader of the
//! Prometheus text format for checking `/metrics`, and mount lookup.
// Test code: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use famfs_daemon::http::client::{Client, ClientError};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// True when running as root; otherwise prints `SKIP: <test>: <reason>` and returns false.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    println!("SKIP: {test}: needs root (BPF, mount(2) of FUSE filesystems)");
    false
}

/// True when `prog` is on PATH; otherwise prints a SKIP line.
pub fn require_program(test: &str, prog: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false);
    if !found {
        println!("SKIP: {test}: `{prog}` is not installed (run `cargo xtask setup`)");
    }
    found
}

/// A running `famfs-daemon run`, killed (SIGTERM, then waited for) on drop.
pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    pub ready_line: String,
}

impl Daemon {
    pub fn start(args: &[&str]) -> Daemon {
        Daemon::start_env(args, &[])
    }

    /// [`Daemon::start`] with extra environment variables (e.g. `FAMFS_SYSTEM_UUID_PATH` for an image).
    pub fn start_env(args: &[&str], env: &[(&str, &Path)]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_famfs-daemon"))
            .arg("run")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn famfs-daemon");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready_line = loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("famfs-daemon: ready") => break l,
                Some(Ok(_)) => continue,
                _ => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!("famfs-daemon exited before it was ready: {status:?}");
                }
            }
        };
        // Keep draining stdout so the daemon never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        let addr = ready_line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("listen="))
            .and_then(|a| a.parse().ok())
            .expect("listen= in ready line");
        Daemon {
            child,
            addr,
            ready_line,
        }
    }

    /// Value of `key=` in the ready line.
    pub fn ready_field(&self, key: &str) -> Option<String> {
        let k = format!("{key}=");
        self.ready_line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(k.as_str()).map(str::to_string))
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path, None)
    }

    pub fn metrics(&self) -> String {
        let (code, body) = self.get("/metrics");
        assert_eq!(code, 200, "/metrics answered {code}: {body}");
        body
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// How long one test request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// GET `path` (with `Accept: accept` if given): (status, body), or why there was no answer.
pub fn http_fetch(
    addr: SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> Result<(u16, String), ClientError> {
    let r = Client::new(addr, HTTP_TIMEOUT)
        .expect("HTTP client")
        .fetch(path, accept)?;
    Ok((r.status, r.body))
}

/// GET `path`: (status, body); panics when the server does not answer.
pub fn http_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (u16, String) {
    http_fetch(addr, path, accept).unwrap_or_else(|e| panic!("{e}"))
}

/// GET `path` and decode its JSON; panics on any error (naming it).
pub fn get_json<T: serde::de::DeserializeOwned>(addr: SocketAddr, path: &str) -> T {
    Client::new(addr, HTTP_TIMEOUT)
        .expect("HTTP client")
        .get_json(path)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// One sample line of the Prometheus text format: `name{labels} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
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
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(mut r) = rest.strip_prefix('{') {
        loop {
            r = r.trim_start_matches([' ', ',']);
            if let Some(after) = r.strip_prefix('}') {
                r = after;
                break;
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
        rest = r;
    }
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
pub fn check_histograms(text: &str) -> std::collections::BTreeSet<String> {
    use std::collections::{BTreeMap, BTreeSet};
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

/// FUSE connection number (minor of st_dev) of the mount at `mountpoint`, from /proc/self/mountinfo.
pub fn mount_connection(mountpoint: &Path) -> Option<u32> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mp = mountpoint.to_str()?;
    info.lines()
        .rfind(|l| l.split_whitespace().nth(4) == Some(mp))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|dev| dev.split(':').nth(1))
        .and_then(|m| m.parse().ok())
}

/// Poll `f` until it returns Some or `timeout` passes (waiting on a condition, not a fixed delay).
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An independent count of `filemap:mm_filemap_fault` events on one device: a private ftrace
/// instance (tracefs, which the daemon mounted) with the event enabled and filtered on `s_dev`.
/// Removed on drop.
pub struct FtraceFaults {
    dir: std::path::PathBuf,
}

impl FtraceFaults {
    pub fn start(dev: u32) -> FtraceFaults {
        let dir = std::path::PathBuf::from(format!(
            "/sys/kernel/tracing/instances/famfs-test-{}",
            std::process::id()
        ));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let f = FtraceFaults { dir };
        let ev = f.dir.join("events/filemap/mm_filemap_fault");
        std::fs::write(ev.join("filter"), format!("s_dev == {dev}")).unwrap();
        std::fs::write(ev.join("enable"), "1").unwrap();
        f
    }

    /// Stop counting; events per inode.
    pub fn stop(&self) -> std::collections::BTreeMap<u64, u64> {
        let ev = self.dir.join("events/filemap/mm_filemap_fault");
        std::fs::write(ev.join("enable"), "0").unwrap();
        let trace = std::fs::read_to_string(self.dir.join("trace")).unwrap();
        let mut per_ino = std::collections::BTreeMap::new();
        for l in trace.lines().filter(|l| l.contains("mm_filemap_fault:")) {
            let ino = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("ino="))
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .unwrap_or_else(|| panic!("no ino= in {l:?}"));
            *per_ino.entry(ino).or_insert(0) += 1;
        }
        per_ino
    }
}

impl Drop for FtraceFaults {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("events/filemap/mm_filemap_fault/enable"), "0");
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Unmounts `path` (lazily, if busy) on drop.
pub struct MountGuard(pub std::path::PathBuf);

impl MountGuard {
    pub fn unmount(&self) -> bool {
        let c = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), 0) == 0 }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if mount_connection(&self.0).is_some() && !self.unmount() {
            let c = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).expect("path");
            // SAFETY: valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// A squashfuse mount of a squashfs image built from `files`, in its own temp dir; unmounted on drop.
pub struct SquashMount {
    // Field order is drop order: unmount before the temp dir is removed.
    guard: MountGuard,
    pub mnt: std::path::PathBuf,
    pub conn: u32,
    pub dir: tempfile::TempDir,
}

impl SquashMount {
    /// `None` (after printing a SKIP line) when root or the squashfs tools are missing.
    pub fn new(test: &str, files: &[(&str, Vec<u8>)]) -> Option<SquashMount> {
        if !require_root(test)
            || !require_program(test, "squashfuse")
            || !require_program(test, "mksquashfs")
        {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        for (rel, body) in files {
            let p = src.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, body).expect("write");
        }
        let img = dir.path().join("img.sqfs");
        let st = Command::new("mksquashfs")
            .args([src.as_os_str(), img.as_os_str()])
            .args(["-quiet", "-no-progress", "-noappend"])
            .status()
            .expect("mksquashfs");
        assert!(st.success(), "mksquashfs failed");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir mnt");
        // squashfuse daemonizes once the mount exists, so the mount is there when it returns.
        let st = Command::new("squashfuse")
            .arg(&img)
            .arg(&mnt)
            .status()
            .expect("squashfuse");
        assert!(st.success(), "squashfuse failed");
        let guard = MountGuard(mnt.clone());
        let conn = mount_connection(&mnt).expect("squashfuse mount in mountinfo");
        Some(SquashMount {
            dir,
            mnt,
            conn,
            guard,
        })
    }

    pub fn unmount(&self) -> bool {
        self.guard.unmount()
    }
}

/// Deterministic file contents.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A real Prometheus server (Debian's 2.42) on loopback, scraping `targets` every second, with its own
/// config and storage in a temp dir; killed on drop.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
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
        v["data"]["result"].as_array().cloned().unwrap_or_default()
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
