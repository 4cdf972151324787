//! Helpers shared by the integration tests: root check with a SKIP line, a daemon process guard that
//! waits for the readiness line (no sleeps), a minimal HTTP GET, metric parsing and mount lookup.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

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

/// HTTP/1.1 GET with `Connection: close`; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (code, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
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
        let dir = tempfile::tempdir().expect("tempdir");
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let cfg = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: famfs\n    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), cfg).expect("config");
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
            let s = TcpStream::connect(p.addr).ok()?;
            drop(s);
            (http_get(p.addr, "/-/ready", None).0 == 200).then_some(())
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

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
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
        .replace("$fs_uuid", ".*")
        .replace("$path", ".*")
}
