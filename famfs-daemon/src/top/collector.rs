//! The data side of the operator views: a tiny blocking HTTP/1.1 client (std `TcpStream`, timeouts on
//! connect, read and write, a cap on the body), the parsers for `/metrics` (Prometheus text format),
//! `/api/v1/probes` and `/api/v1/files`, [`fetch_snapshot`], the per-interval [`Rates`] between two
//! snapshots, and the polling thread ([`Collector`]) that feeds `top`.
//!
//! Owns every byte `top`/`snapshot` read from the daemon. Must not touch the terminal or the view
//! state: it hands [`Update`]s over a channel and takes the file query (sort, filter) from one.

use std::{
    borrow::Cow,
    io::{Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    sync::mpsc::{self, Receiver, RecvTimeoutError, Sender},
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::model::{FaultCounts, FileRow, OpcodeStats, ProbeInfo, SNAPSHOT_FORMAT, Snapshot};

/// Largest response body read (a 100k-file table is about 60 MiB of JSON).
const MAX_BODY: u64 = 256 << 20;

/// Why a request failed, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{addr}: {what}")]
    Io { addr: String, what: String },
    #[error("GET {path}: HTTP {status}: {body}")]
    Status {
        path: String,
        status: u16,
        body: String,
    },
    #[error("GET {path}: {what}")]
    Parse { path: String, what: String },
}

/// Resolve `host:port` (the `--addr` flag).
pub fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("--addr {addr:?}: expected HOST:PORT: {e}"))?
        .next()
        .ok_or_else(|| format!("--addr {addr:?}: resolves to no address"))
}

fn io_err(addr: SocketAddr, what: impl std::fmt::Display) -> FetchError {
    FetchError::Io {
        addr: addr.to_string(),
        what: what.to_string(),
    }
}

/// Describe an I/O error the way an operator reads it ("connection refused", not "os error 111").
fn describe(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        TimedOut | WouldBlock => "timed out".into(),
        ConnectionReset => "connection reset".into(),
        _ => e.to_string(),
    }
}

/// `GET path` with `Connection: close`; the body of a 200 answer, else an error naming the path.
/// `timeout` bounds the connect and every read and write.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, FetchError> {
    let mut s =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| io_err(addr, describe(&e)))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .map_err(|e| io_err(addr, describe(&e)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain, application/json\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| io_err(addr, format!("sending GET {path}: {}", describe(&e))))?;
    let mut raw = Vec::with_capacity(16 * 1024);
    s.take(MAX_BODY + 64 * 1024)
        .read_to_end(&mut raw)
        .map_err(|e| io_err(addr, format!("reading GET {path}: {}", describe(&e))))?;
    parse_response(path, &raw)
}

/// Split an HTTP/1.1 response into status and body (Content-Length or chunked, else to the end).
pub fn parse_response(path: &str, raw: &[u8]) -> Result<String, FetchError> {
    let perr = |what: String| FetchError::Parse {
        path: path.to_string(),
        what,
    };
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| perr(format!("no end of headers in {} bytes", raw.len())))?;
    let head = std::str::from_utf8(&raw[..head_end])
        .map_err(|e| perr(format!("headers are not UTF-8 (byte {})", e.valid_up_to())))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| perr(format!("bad status line {status_line:?}")))?;
    let mut chunked = false;
    let mut length: Option<usize> = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k.eq_ignore_ascii_case("content-length") {
            length = Some(
                v.parse()
                    .map_err(|_| perr(format!("bad Content-Length {v:?}")))?,
            );
        }
    }
    let body = &raw[head_end + 4..];
    let body: Cow<[u8]> = if chunked {
        Cow::Owned(dechunk(body).map_err(perr)?)
    } else if let Some(n) = length {
        if body.len() < n {
            return Err(perr(format!(
                "body truncated: {} of {n} bytes (Content-Length)",
                body.len()
            )));
        }
        Cow::Borrowed(&body[..n])
    } else {
        Cow::Borrowed(body)
    };
    if body.len() as u64 > MAX_BODY {
        return Err(perr(format!("body larger than {MAX_BODY} bytes")));
    }
    let text = String::from_utf8(body.into_owned()).map_err(|e| {
        perr(format!(
            "body is not UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    if status != 200 {
        return Err(FetchError::Status {
            path: path.to_string(),
            status,
            body: text.trim().chars().take(200).collect(),
        });
    }
    Ok(text)
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(b.len());
    let mut offset = 0usize;
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| format!("chunk size line without CRLF at body byte {offset}"))?;
        let size_txt = std::str::from_utf8(&b[..eol]).unwrap_or("");
        let size_txt = size_txt.split(';').next().unwrap_or("").trim();
        let n = usize::from_str_radix(size_txt, 16)
            .map_err(|_| format!("bad chunk size {size_txt:?} at body byte {offset}"))?;
        let start = eol + 2;
        if n == 0 {
            return Ok(out);
        }
        if b.len() < start + n {
            return Err(format!(
                "chunk of {n} bytes truncated at body byte {offset}"
            ));
        }
        out.extend_from_slice(&b[start..start + n]);
        let next = (start + n + 2).min(b.len());
        offset += next;
        b = &b[next..];
    }
}

/// One sample line of the Prometheus text format: `name{labels} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    pub value: f64,
}

impl Sample<'_> {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_ref())
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Parse one non-comment line; errors name the column (1-based) and what was expected.
pub fn parse_sample(line: &str) -> Result<Sample<'_>, String> {
    let name_end = line
        .find(['{', ' ', '\t'])
        .ok_or_else(|| "expected a value after the metric name".to_string())?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
    {
        return Err(format!("column 1: bad metric name {name:?}"));
    }
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let bytes = r.as_bytes();
        let mut i = 0;
        loop {
            while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b',') {
                i += 1;
            }
            if i < bytes.len() && bytes[i] == b'}' {
                i += 1;
                break;
            }
            let col = name_end + 2 + i;
            let eq = r[i..]
                .find('=')
                .ok_or_else(|| format!("column {col}: expected label=\"value\""))?;
            let key = r[i..i + eq].trim();
            i += eq + 1;
            if bytes.get(i) != Some(&b'"') {
                return Err(format!(
                    "column {}: expected '\"' after {key}=",
                    name_end + 2 + i
                ));
            }
            i += 1;
            let start = i;
            let mut escaped = false;
            let mut owned: Option<String> = None;
            loop {
                let Some(&c) = bytes.get(i) else {
                    return Err(format!("column {col}: unterminated value of label {key}"));
                };
                if c == b'\\' && !escaped {
                    escaped = true;
                    owned.get_or_insert_with(|| r[start..i].to_string());
                    i += 1;
                    continue;
                }
                if c == b'"' && !escaped {
                    break;
                }
                if let Some(o) = owned.as_mut() {
                    if escaped {
                        o.push(match c {
                            b'n' => '\n',
                            other => other as char,
                        });
                    } else {
                        // Copy one whole UTF-8 character.
                        let ch = r[i..].chars().next().unwrap_or('\u{fffd}');
                        o.push(ch);
                        i += ch.len_utf8();
                        continue;
                    }
                }
                escaped = false;
                i += 1;
            }
            let value = match owned {
                Some(o) => Cow::Owned(o),
                None => Cow::Borrowed(&r[start..i]),
            };
            labels.push((key, value));
            i += 1;
        }
        rest = &r[i..];
    }
    let mut parts = rest.split_whitespace();
    let v = parts
        .next()
        .ok_or_else(|| format!("column {}: expected a value", line.len() + 1))?;
    let value = parse_value(v).ok_or_else(|| {
        format!(
            "column {}: bad value {v:?}",
            line.len() - rest.len() + rest.find(v).unwrap_or(0) + 1
        )
    })?;
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// What `top` and `snapshot` take from `/metrics`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MetricsData {
    pub opcodes: Vec<OpcodeStats>,
    pub faults: FaultCounts,
}

fn opcode_index(v: &mut Vec<OpcodeStats>, s: &Sample<'_>) -> Option<usize> {
    let conn: u32 = s.label("connection")?.parse().ok()?;
    let op = s.label("opcode")?;
    Some(
        match v
            .iter()
            .position(|o| o.connection == conn && o.opcode == op)
        {
            Some(i) => i,
            None => {
                v.push(OpcodeStats {
                    connection: conn,
                    opcode: op.to_string(),
                    ..Default::default()
                });
                v.len() - 1
            }
        },
    )
}

fn count(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

/// Parse the Prometheus text of `/metrics`. Malformed sample lines are errors naming the line (1-based)
/// and column; families this view does not use are skipped.
pub fn parse_metrics(text: &str) -> Result<MetricsData, String> {
    let mut d = MetricsData::default();
    // (connection, opcode) → (le, cumulative) pairs, sorted at the end.
    let mut buckets: Vec<Vec<(f64, u64)>> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let s = parse_sample(line).map_err(|e| format!("/metrics line {}: {e}", n + 1))?;
        match s.name {
            "famfs_fuse_requests_total" => {
                if let Some(i) = opcode_index(&mut d.opcodes, &s) {
                    d.opcodes[i].requests = count(s.value);
                }
            }
            "famfs_fuse_request_errors_total" => {
                if let Some(i) = opcode_index(&mut d.opcodes, &s) {
                    d.opcodes[i].errors = count(s.value);
                }
            }
            "famfs_fuse_request_duration_seconds_sum" => {
                if let Some(i) = opcode_index(&mut d.opcodes, &s) {
                    d.opcodes[i].latency.sum = s.value;
                }
            }
            "famfs_fuse_request_duration_seconds_count" => {
                if let Some(i) = opcode_index(&mut d.opcodes, &s) {
                    d.opcodes[i].latency.count = count(s.value);
                }
            }
            "famfs_fuse_request_duration_seconds_bucket" => {
                let le = s.label("le").and_then(parse_value).ok_or_else(|| {
                    format!(
                        "/metrics line {}: histogram bucket without a numeric le",
                        n + 1
                    )
                })?;
                let Some(i) = opcode_index(&mut d.opcodes, &s) else {
                    continue;
                };
                if buckets.len() <= i {
                    buckets.resize_with(i + 1, Vec::new);
                }
                if le.is_finite() {
                    buckets[i].push((le, count(s.value)));
                }
            }
            "famfs_dax_faults_total" => {
                let class = match s.label("size") {
                    Some("pte") => &mut d.faults.pte,
                    Some("pmd") => &mut d.faults.pmd,
                    _ => continue,
                };
                match s.label("result") {
                    Some("ok") => class.ok = count(s.value),
                    Some("fallback") => class.fallback = count(s.value),
                    Some("error") => class.error = count(s.value),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    for (o, mut b) in d.opcodes.iter_mut().zip(buckets) {
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        o.latency.bounds = b.iter().map(|x| x.0).collect();
        o.latency.cumulative = b.iter().map(|x| x.1).collect();
    }
    d.opcodes.sort_by(|a, b| {
        a.connection
            .cmp(&b.connection)
            .then_with(|| a.opcode.cmp(&b.opcode))
    });
    Ok(d)
}

/// Parse `/api/v1/probes`.
pub fn parse_probes(json: &str) -> Result<Vec<ProbeInfo>, String> {
    serde_json::from_str(json).map_err(|e| {
        format!(
            "/api/v1/probes: line {} column {}: {e}",
            e.line(),
            e.column()
        )
    })
}

/// Parse `/api/v1/files`.
pub fn parse_files(json: &str) -> Result<Vec<FileRow>, String> {
    serde_json::from_str(json).map_err(|e| {
        format!(
            "/api/v1/files: line {} column {}: {e}",
            e.line(),
            e.column()
        )
    })
}

/// The file query `top` asks the daemon for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilesQuery {
    /// The daemon's sort key name (`opens`, `faults`, ...).
    pub sort: &'static str,
    pub filter: String,
    pub limit: usize,
}

impl FilesQuery {
    /// `/api/v1/files?...`, with the filter percent-encoded.
    pub fn path(&self) -> String {
        let mut p = format!("/api/v1/files?sort={}&limit={}", self.sort, self.limit);
        if !self.filter.is_empty() {
            p.push_str("&path=");
            for b in self.filter.bytes() {
                if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                    p.push(b as char);
                } else {
                    p.push_str(&format!("%{b:02X}"));
                }
            }
        }
        p
    }
}

/// Read files, probes and metrics from the daemon at `addr` into one snapshot.
pub fn fetch_snapshot(
    addr: SocketAddr,
    files: &FilesQuery,
    timeout: Duration,
) -> Result<Snapshot, FetchError> {
    let parse_err = |path: &str, what: String| FetchError::Parse {
        path: path.to_string(),
        what,
    };
    let fpath = files.path();
    let files_json = http_get(addr, &fpath, timeout)?;
    let files = parse_files(&files_json).map_err(|e| parse_err(&fpath, e))?;
    let probes_json = http_get(addr, "/api/v1/probes", timeout)?;
    let probes = parse_probes(&probes_json).map_err(|e| parse_err("/api/v1/probes", e))?;
    let metrics_text = http_get(addr, "/metrics", timeout)?;
    let m = parse_metrics(&metrics_text).map_err(|e| parse_err("/metrics", e))?;
    Ok(Snapshot {
        format: SNAPSHOT_FORMAT.to_string(),
        taken_unix_seconds: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
        daemon: addr.to_string(),
        files,
        opcodes: m.opcodes,
        faults: m.faults,
        probes,
    })
}

/// One opcode row of the live view.
#[derive(Clone, Debug, PartialEq)]
pub struct OpcodeRate {
    pub connection: u32,
    pub opcode: String,
    /// Requests per second over the last interval (`None` on the first sample).
    pub per_sec: Option<f64>,
    pub total: u64,
    pub errors: u64,
    /// Latency quantiles (seconds) of the requests of the last interval (of all requests on the first
    /// sample); `None` when there were none.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// What changed between two snapshots, per second.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rates {
    /// Seconds between the two samples (0 on the first).
    pub interval: f64,
    pub opcodes: Vec<OpcodeRate>,
    /// DAX faults per second, `None` on the first sample.
    pub pte_per_sec: Option<f64>,
    pub pmd_per_sec: Option<f64>,
    /// Fallback ratio of the interval's PMD attempts (of all attempts on the first sample).
    pub fallback_ratio: Option<f64>,
}

/// Rates between `prev` (taken `dt` earlier) and `cur`; with no `prev`, totals only. Opcode rows are
/// ordered busiest first (requests per second, then total, then name).
pub fn rates(prev: Option<(&Snapshot, Duration)>, cur: &Snapshot) -> Rates {
    let dt = prev.map_or(0.0, |(_, d)| d.as_secs_f64());
    let per_sec = |n: u64| (dt > 0.0).then(|| n as f64 / dt);
    let mut opcodes: Vec<OpcodeRate> = cur
        .opcodes
        .iter()
        .map(|o| {
            let before = prev.and_then(|(p, _)| {
                p.opcodes
                    .iter()
                    .find(|x| x.connection == o.connection && x.opcode == o.opcode)
            });
            let (delta_req, lat) = match before {
                Some(b) => {
                    let d = if o.requests >= b.requests {
                        o.requests - b.requests
                    } else {
                        o.requests
                    };
                    (d, o.latency.since(&b.latency))
                }
                None => (o.requests, o.latency.clone()),
            };
            OpcodeRate {
                connection: o.connection,
                opcode: o.opcode.clone(),
                per_sec: if prev.is_some() {
                    per_sec(delta_req)
                } else {
                    None
                },
                total: o.requests,
                errors: o.errors,
                p50: lat.quantile(0.5),
                p99: lat.quantile(0.99),
            }
        })
        .collect();
    opcodes.sort_by(|a, b| {
        b.per_sec
            .unwrap_or(0.0)
            .total_cmp(&a.per_sec.unwrap_or(0.0))
            .then(b.total.cmp(&a.total))
            .then_with(|| a.opcode.cmp(&b.opcode))
            .then(a.connection.cmp(&b.connection))
    });
    let d = match prev {
        Some((p, _)) => cur.faults.since(&p.faults),
        None => cur.faults,
    };
    Rates {
        interval: dt,
        opcodes,
        pte_per_sec: prev.and_then(|_| per_sec(d.pte.total())),
        pmd_per_sec: prev.and_then(|_| per_sec(d.pmd.total())),
        fallback_ratio: d.pmd_fallback_ratio(),
    }
}

/// What the collector hands the view after each poll.
#[derive(Clone, Debug)]
pub enum Update {
    Data {
        snapshot: Box<Snapshot>,
        rates: Rates,
        at: Instant,
    },
    Unreachable {
        reason: String,
        at: Instant,
    },
}

/// The polling thread's handle. Dropping it stops the thread after its current request.
#[derive(Debug)]
pub struct Collector {
    control: Option<Sender<FilesQuery>>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    /// Poll `addr` every `interval` (and at once after a query change), sending updates to `out`.
    pub fn spawn(
        addr: SocketAddr,
        interval: Duration,
        query: FilesQuery,
        out: Sender<Update>,
    ) -> std::io::Result<Collector> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("famfs-top-poll".into())
            .spawn(move || poll_loop(addr, interval, query, &rx, &out))?;
        Ok(Collector {
            control: Some(tx),
            thread: Some(thread),
        })
    }

    /// Ask for another sort or filter; the next poll (started now) uses it.
    pub fn set_query(&self, q: FilesQuery) {
        if let Some(c) = &self.control {
            let _ = c.send(q);
        }
    }

    /// Stop polling and wait for the thread (at most one request timeout).
    pub fn stop(mut self) {
        self.control = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        // Closing the channel ends the loop; the thread is not joined here (it may be inside a request).
        self.control = None;
    }
}

fn poll_loop(
    addr: SocketAddr,
    interval: Duration,
    mut query: FilesQuery,
    control: &Receiver<FilesQuery>,
    out: &Sender<Update>,
) {
    let timeout = interval.clamp(Duration::from_millis(500), Duration::from_secs(5));
    let mut prev: Option<(Snapshot, Instant)> = None;
    loop {
        let started = Instant::now();
        let update = match fetch_snapshot(addr, &query, timeout) {
            Ok(s) => {
                let now = Instant::now();
                let r = rates(
                    prev.as_ref().map(|(p, at)| (p, now.duration_since(*at))),
                    &s,
                );
                let u = Update::Data {
                    snapshot: Box::new(s.clone()),
                    rates: r,
                    at: now,
                };
                prev = Some((s, now));
                u
            }
            Err(e) => Update::Unreachable {
                reason: e.to_string(),
                at: Instant::now(),
            },
        };
        if out.send(update).is_err() {
            return;
        }
        // Wait out the interval, waking early for a new query; a closed channel means stop.
        let left = (started + interval).saturating_duration_since(Instant::now());
        match control.recv_timeout(left) {
            Ok(q) => {
                query = q;
                // Take every queued change, then poll at once.
                while let Ok(q) = control.try_recv() {
                    query = q;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::model::Histogram;

    #[test]
    fn samples_with_labels_escapes_and_special_values() {
        let s = parse_sample(r#"famfs_x_total{a="1",b="q\"uo\\te\n",c="é"} 42"#).unwrap();
        assert_eq!(s.name, "famfs_x_total");
        assert_eq!(s.label("a"), Some("1"));
        assert_eq!(s.label("b"), Some("q\"uo\\te\n"));
        assert_eq!(s.label("c"), Some("é"));
        assert_eq!(s.value, 42.0);
        let s = parse_sample("up 1 1712345678000").unwrap();
        assert_eq!((s.name, s.labels.len(), s.value), ("up", 0, 1.0));
        let s = parse_sample(r#"h_bucket{le="+Inf"} 3"#).unwrap();
        assert_eq!(s.label("le").and_then(parse_value), Some(f64::INFINITY));
    }

    #[test]
    fn malformed_lines_name_line_and_column() {
        assert_eq!(
            parse_sample(r#"m{a="1"} x"#).unwrap_err(),
            "column 10: bad value \"x\""
        );
        assert_eq!(
            parse_sample(r#"m{a=1} 2"#).unwrap_err(),
            "column 5: expected '\"' after a="
        );
        assert!(
            parse_sample(r#"m{a="1} 2"#)
                .unwrap_err()
                .contains("unterminated value of label a")
        );
        let e = parse_metrics("# HELP x\nok 1\nfamfs_fuse_requests_total{connection=\"1\"\n")
            .unwrap_err();
        assert!(e.starts_with("/metrics line 3: "), "{e}");
    }

    #[test]
    fn responses_content_length_chunked_and_errors() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_response("/x", r).unwrap(), "hello");
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response("/x", r).unwrap(), "abcde");
        let r = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 9\r\n\r\nbad sort\n";
        assert_eq!(
            parse_response("/api/v1/files?sort=x", r)
                .unwrap_err()
                .to_string(),
            "GET /api/v1/files?sort=x: HTTP 400: bad sort"
        );
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort";
        assert_eq!(
            parse_response("/m", r).unwrap_err().to_string(),
            "GET /m: body truncated: 5 of 9 bytes (Content-Length)"
        );
        assert!(
            parse_response("/m", b"garbage")
                .unwrap_err()
                .to_string()
                .contains("no end of headers")
        );
    }

    #[test]
    fn files_query_encodes_the_filter() {
        let q = FilesQuery {
            sort: "opens",
            filter: "a b&c/d".into(),
            limit: 7,
        };
        assert_eq!(
            q.path(),
            "/api/v1/files?sort=opens&limit=7&path=a%20b%26c/d"
        );
    }

    fn snap(requests: u64, lat_cum: &[u64], pmd: (u64, u64)) -> Snapshot {
        Snapshot {
            opcodes: vec![OpcodeStats {
                connection: 5,
                opcode: "OPEN".into(),
                requests,
                errors: 0,
                latency: Histogram {
                    bounds: vec![1e-6, 2e-6, 4e-6],
                    cumulative: lat_cum.to_vec(),
                    count: requests,
                    sum: 0.0,
                },
            }],
            faults: FaultCounts {
                pte: Default::default(),
                pmd: super::super::model::FaultClass {
                    ok: pmd.0,
                    fallback: pmd.1,
                    error: 0,
                },
            },
            ..Default::default()
        }
    }

    #[test]
    fn rates_between_snapshots_use_the_interval_histogram() {
        let a = snap(10, &[10, 10, 10], (4, 0));
        let b = snap(30, &[10, 20, 30], (6, 2));
        let r = rates(None, &a);
        assert_eq!(r.opcodes[0].per_sec, None);
        assert_eq!(r.opcodes[0].p50, Some(0.5e-6));
        assert_eq!(r.pmd_per_sec, None);
        assert_eq!(r.fallback_ratio, Some(0.0));
        let r = rates(Some((&a, Duration::from_secs(2))), &b);
        assert_eq!(r.interval, 2.0);
        assert_eq!(r.opcodes[0].per_sec, Some(10.0));
        assert_eq!(r.opcodes[0].total, 30);
        // The interval's 20 requests: 10 in (1, 2] µs, 10 in (2, 4] µs.
        assert_eq!(r.opcodes[0].p50, Some(2e-6));
        assert_eq!(r.pmd_per_sec, Some(2.0));
        assert_eq!(r.fallback_ratio, Some(0.5));
    }

    /// A loopback HTTP server answering every GET with an empty JSON list (or an empty /metrics),
    /// reporting each request path.
    fn fake_daemon() -> (SocketAddr, Receiver<String>) {
        use std::io::{BufRead, BufReader};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let body = if path == "/metrics" { "" } else { "[]" };
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if tx.send(path).is_err() {
                    return;
                }
            }
        });
        (addr, rx)
    }

    #[test]
    fn collector_polls_and_repolls_at_once_on_a_new_query() {
        let (addr, paths) = fake_daemon();
        let (tx, updates) = mpsc::channel();
        let q = FilesQuery {
            sort: "last_access",
            filter: String::new(),
            limit: 5,
        };
        // An interval of an hour: a second poll can only come from the query change.
        let c = Collector::spawn(addr, Duration::from_secs(3600), q, tx).unwrap();
        let wait = Duration::from_secs(30);
        let Update::Data {
            snapshot, rates, ..
        } = updates.recv_timeout(wait).unwrap()
        else {
            panic!("expected data");
        };
        assert_eq!((snapshot.files.len(), rates.interval), (0, 0.0));
        let first: Vec<String> = (0..3).map(|_| paths.recv_timeout(wait).unwrap()).collect();
        assert_eq!(
            first,
            [
                "/api/v1/files?sort=last_access&limit=5",
                "/api/v1/probes",
                "/metrics"
            ]
        );
        c.set_query(FilesQuery {
            sort: "opens",
            filter: "x y".into(),
            limit: 5,
        });
        let Update::Data { rates, .. } = updates.recv_timeout(wait).unwrap() else {
            panic!("expected data");
        };
        assert!(rates.interval > 0.0);
        assert_eq!(
            paths.recv_timeout(wait).unwrap(),
            "/api/v1/files?sort=opens&limit=5&path=x%20y"
        );
        c.stop();
    }

    #[test]
    fn collector_reports_an_unreachable_daemon() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let (tx, updates) = mpsc::channel();
        let q = FilesQuery {
            sort: "path",
            filter: String::new(),
            limit: 1,
        };
        let c = Collector::spawn(addr, Duration::from_millis(100), q, tx).unwrap();
        for _ in 0..2 {
            match updates.recv_timeout(Duration::from_secs(30)).unwrap() {
                Update::Unreachable { reason, .. } => {
                    assert_eq!(reason, format!("127.0.0.1:{port}: connection refused"))
                }
                other => panic!("{other:?}"),
            }
        }
        c.stop();
    }
}
