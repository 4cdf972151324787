//! The data side of `top` and `snapshot`: [`fetch_snapshot`] reads the daemon's `/api/v1/snapshot`
//! (JSON, through the crate's one HTTP client), [`fetch_detail`] one file's `/api/v1/file`, [`rates`] turns two snapshots into per-interval rates,
//! and the polling thread ([`Collector`]) feeds `top`.
//!
//! Owns what `top`/`snapshot` ask the daemon and when. Must not touch the terminal or the view state: it
//! hands [`Update`]s over a channel and takes the file query (sort, filter) from one. The schema is
//! `http::api`'s; nothing here parses the Prometheus text.

use std::{
    net::{SocketAddr, ToSocketAddrs},
    sync::mpsc::{self, Receiver, RecvTimeoutError, Sender},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    http::{
        api::{FILE_PATH, FileDetail, SNAPSHOT_PATH, Snapshot, file_path_query, file_query_string},
        client::{Client, ClientError, ClientSecurity},
    },
    join::FileQuery,
};

/// Resolve `host:port` (the `--addr` flag).
pub fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("--addr {addr:?}: expected HOST:PORT: {e}"))?
        .next()
        .ok_or_else(|| format!("--addr {addr:?}: resolves to no address"))
}

/// The daemon's snapshot with the files `files` selects; `daemon` names the address asked.
pub fn fetch_snapshot(client: &Client, files: &FileQuery) -> Result<Snapshot, ClientError> {
    let path = format!("{SNAPSHOT_PATH}?{}", file_query_string(files));
    let mut s: Snapshot = client.get_json(&path)?;
    s.daemon = client.addr().to_string();
    Ok(s)
}

/// One file's detail (`/api/v1/file`, the exact path).
pub fn fetch_detail(client: &Client, path: &str) -> Result<FileDetail, ClientError> {
    client.get_json(&format!("{FILE_PATH}?{}", file_path_query(path)))
}

/// How long one poll's requests may wait, for a poll `interval`.
pub fn timeout_for(interval: Duration) -> Duration {
    interval.clamp(Duration::from_millis(500), Duration::from_secs(5))
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
    /// The detail of the file the view asked about (after that poll's `Data`).
    Detail {
        path: String,
        answer: Result<Box<FileDetail>, String>,
    },
}

/// What the view asks the polling thread.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Control {
    Query(FileQuery),
    Detail(Option<String>),
}

/// The polling thread's handle. Dropping it stops the thread after its current request.
#[derive(Debug)]
pub struct Collector {
    control: Option<Sender<Control>>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    /// Poll `addr` every `interval` (and at once after a query change), sending updates to `out`.
    pub fn spawn(
        addr: SocketAddr,
        security: ClientSecurity,
        interval: Duration,
        query: FileQuery,
        out: Sender<Update>,
    ) -> std::io::Result<Collector> {
        let client = Client::new(addr, timeout_for(interval))?.with_security(security);
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("famfs-top-poll".into())
            .spawn(move || poll_loop(&client, interval, query, &rx, &out))?;
        Ok(Collector {
            control: Some(tx),
            thread: Some(thread),
        })
    }

    /// Ask for another sort or filter; the next poll (started now) uses it.
    pub fn set_query(&self, q: FileQuery) {
        if let Some(c) = &self.control {
            let _ = c.send(Control::Query(q));
        }
    }

    /// Fetch this file's detail on every poll from now on (started now); `None` stops.
    pub fn set_detail(&self, path: Option<String>) {
        if let Some(c) = &self.control {
            let _ = c.send(Control::Detail(path));
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
    client: &Client,
    interval: Duration,
    mut query: FileQuery,
    control: &Receiver<Control>,
    out: &Sender<Update>,
) {
    let mut detail: Option<String> = None;
    let mut prev: Option<(Snapshot, Instant)> = None;
    loop {
        let started = Instant::now();
        let update = match fetch_snapshot(client, &query) {
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
        if let Some(path) = &detail {
            let answer = fetch_detail(client, path)
                .map(Box::new)
                .map_err(|e| e.to_string());
            if out
                .send(Update::Detail {
                    path: path.clone(),
                    answer,
                })
                .is_err()
            {
                return;
            }
        }
        // Wait out the interval, waking early for a new query; a closed channel means stop.
        let left = (started + interval).saturating_duration_since(Instant::now());
        match control.recv_timeout(left) {
            Ok(c) => {
                // Take every queued change, then poll at once.
                let mut next = Some(c);
                while let Some(c) = next {
                    match c {
                        Control::Query(q) => query = q,
                        Control::Detail(d) => detail = d,
                    }
                    next = control.try_recv().ok();
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::{
        http::api::{FaultClass, FaultCounts, Histogram, OpcodeStats},
        join::FileSort,
    };

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
                pmd: FaultClass {
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

    /// A loopback HTTP server answering every GET with an empty JSON object (an empty snapshot),
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
                let body = "{}";
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
        let q = FileQuery {
            sort: FileSort::LastAccess,
            path: None,
            limit: 5,
        };
        // An interval of an hour: a second poll can only come from the query change.
        let c = Collector::spawn(
            addr,
            ClientSecurity::default(),
            Duration::from_secs(3600),
            q,
            tx,
        )
        .unwrap();
        let wait = Duration::from_secs(30);
        let Update::Data {
            snapshot, rates, ..
        } = updates.recv_timeout(wait).unwrap()
        else {
            panic!("expected data");
        };
        assert_eq!((snapshot.files.len(), rates.interval), (0, 0.0));
        // One request per poll: the whole snapshot, with the file query.
        assert_eq!(
            paths.recv_timeout(wait).unwrap(),
            "/api/v1/snapshot?sort=last_access&limit=5"
        );
        c.set_query(FileQuery {
            sort: FileSort::Opens,
            path: Some("x y".into()),
            limit: 5,
        });
        let Update::Data { rates, .. } = updates.recv_timeout(wait).unwrap() else {
            panic!("expected data");
        };
        assert!(rates.interval > 0.0);
        assert_eq!(
            paths.recv_timeout(wait).unwrap(),
            "/api/v1/snapshot?sort=opens&limit=5&path=x%20y"
        );
        assert!(paths.try_recv().is_err(), "more than one request per poll");
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
        let q = FileQuery {
            sort: FileSort::Path,
            path: None,
            limit: 1,
        };
        let c = Collector::spawn(
            addr,
            ClientSecurity::default(),
            Duration::from_millis(100),
            q,
            tx,
        )
        .unwrap();
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
