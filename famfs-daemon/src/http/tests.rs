//! The server against real sockets on loopback: a client that never sends its headers is
//! disconnected, connections past the global or the per-client limit are refused, and neither stalls
//! a well-behaved client; TLS and basic auth from a web config, with the crate's client on the other end.

use std::{
    io::{Read, Write},
    net::TcpStream,
};

use super::*;
use crate::http::testpki;

struct Fixed;

impl Views for Fixed {
    fn metrics(&self, _format: Format) -> Result<String, String> {
        Ok("famfs_test 1\n".into())
    }
    fn probes(&self) -> Result<Vec<api::ProbeRow>, String> {
        Ok(Vec::new())
    }
    /// One row per query: its path is the query as the view received it.
    fn files(&self, query: &FileQuery) -> Result<Vec<api::FileRow>, String> {
        Ok(vec![api::FileRow {
            path: api::file_query_string(query),
            ..Default::default()
        }])
    }
    /// A file named `known` exists, with one opening process.
    fn file(&self, path: &str) -> Result<Option<api::FileDetail>, String> {
        Ok((path == "known dir/a").then(|| api::FileDetail {
            file: api::FileRow {
                path: path.into(),
                opens: 2,
                ..Default::default()
            },
            processes: api::FileProcesses {
                opens: vec![api::ProcRow {
                    pid: 7,
                    comm: "cat".into(),
                    count: 2,
                }],
                ..Default::default()
            },
        }))
    }
    fn snapshot(&self, query: &FileQuery) -> Result<api::Snapshot, String> {
        if query.limit == 0 {
            return Err("no snapshot of nothing".into());
        }
        Ok(api::Snapshot {
            files: self.files(query)?,
            ..Default::default()
        })
    }
    fn unhealthy(&self) -> Option<String> {
        None
    }
}

/// A guard against a hang, not a timing assertion: every read below is expected to finish at once
/// or when the server closes the socket.
const HANG_GUARD: Duration = Duration::from_secs(20);

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(HANG_GUARD)).expect("timeout");
    s
}

/// Read until the server closes; `Err` if it did not within the hang guard.
fn read_to_close(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

fn get(addr: SocketAddr, path: &str) -> client::Response {
    client::Client::new(addr, HANG_GUARD)
        .expect("client")
        .fetch(path, None)
        .expect("response")
}

fn start(limits: Limits) -> (tokio::runtime::Runtime, SocketAddr) {
    start_with(limits, WebConfig::default())
}

fn start_with(limits: Limits, web: WebConfig) -> (tokio::runtime::Runtime, SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(bind("127.0.0.1:0".parse().expect("addr")))
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    rt.spawn(serve(listener, Arc::new(Fixed), limits, web));
    (rt, addr)
}

#[test]
fn silent_and_excess_clients_are_cut_off_without_stalling_others() {
    let (_rt, addr) = start(Limits {
        max_connections: 2,
        max_connections_per_client: 2,
        header_read_timeout: Duration::from_millis(300),
        connection_deadline: Duration::from_secs(30),
    });
    // One client that sends half a request line and then nothing: it holds a permit until the
    // header timeout closes it.
    let mut silent = connect(addr);
    silent.write_all(b"GET /met").expect("partial");
    // Meanwhile a normal client is served in full.
    let r = get(addr, "/metrics");
    assert_eq!((r.status, r.body.as_str()), (200, "famfs_test 1\n"));
    // The silent client is disconnected by the server (EOF, perhaps after an error response),
    // not left hanging.
    let got = read_to_close(&mut silent).expect("the server closed the silent client");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "unexpected reply to a silent client: {text:?}"
    );

    // Two idle connections take both permits; a third is refused (closed with no response)...
    let mut idle: Vec<TcpStream> = (0..2).map(|_| connect(addr)).collect();
    for s in &mut idle {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .expect("partial");
    }
    // The server takes the two in accept order; make sure both were accepted (each holds a
    // permit) before the third arrives: a completed request on each proves it.
    for s in &mut idle {
        s.write_all(b"\r\n").expect("end of headers");
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).expect("status line");
        assert_eq!(&buf, b"HTTP/1.1 200");
    }
    let mut third = connect(addr);
    let _ = third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let refused = read_to_close(&mut third).unwrap_or_default();
    assert!(
        refused.is_empty(),
        "a connection past the limit was served: {:?}",
        String::from_utf8_lossy(&refused)
    );
    // ...and once they go away, service resumes.
    drop(idle);
    let deadline = std::time::Instant::now() + HANG_GUARD;
    loop {
        let mut s = connect(addr);
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let r = read_to_close(&mut s).unwrap_or_default();
        if r.starts_with(b"HTTP/1.1 200") {
            break;
        }
        // The permits are released when the server notices the closed sockets; retry until then.
        assert!(
            std::time::Instant::now() < deadline,
            "the server never recovered its connection permits"
        );
        std::thread::yield_now();
    }
}

#[test]
fn api_routes_parse_queries_and_encode_json() {
    let (_rt, addr) = start(Limits::default());
    let r = get(addr, "/api/v1/files?sort=opens&limit=3&path=a%20b");
    assert_eq!(r.status, 200, "{r:?}");
    let rows: Vec<api::FileRow> = serde_json::from_str(&r.body).expect("rows");
    assert_eq!(rows[0].path, "sort=opens&limit=3&path=a%20b");
    let r = get(addr, "/api/v1/snapshot?sort=path");
    let s: api::Snapshot = serde_json::from_str(&r.body).expect("snapshot");
    assert_eq!(s.files[0].path, "sort=path&limit=100");
    let r = get(addr, "/api/v1/snapshot?sort=size");
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            400,
            "sort=size: expected last_access, opens, faults, fmap_bytes or path\n"
        )
    );
    let r = get(addr, "/api/v1/snapshot?limit=0");
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, "no snapshot of nothing\n")
    );
    assert_eq!(get(addr, "/api/v1/probes").body, "[]");
    let r = get(
        addr,
        &format!("{}?{}", api::FILE_PATH, api::file_path_query("known dir/a")),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let d: api::FileDetail = serde_json::from_str(&r.body).expect("detail");
    assert_eq!((d.file.path.as_str(), d.file.opens), ("known dir/a", 2));
    assert_eq!(
        (d.processes.opens[0].pid, d.processes.opens[0].comm.as_str()),
        (7, "cat")
    );
    let r = get(addr, "/api/v1/file?path=nope");
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            404,
            "no file \"nope\" has been opened or faulted since the daemon started\n"
        )
    );
    let r = get(addr, "/api/v1/file?sort=path");
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "unknown query parameter \"sort=path\" (path)\n")
    );
    let r = get(addr, "/api/v1/file");
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "missing path= (the file's path in the image)\n")
    );
    let r = get(addr, "/api/v2");
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, "no such endpoint: /api/v2\n")
    );
}

/// A connection to `addr` from the loopback address `from` (127.0.0.0/8 is all loopback on Linux).
fn connect_from(rt: &tokio::runtime::Runtime, from: &str, addr: SocketAddr) -> TcpStream {
    let s = rt
        .block_on(async {
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.bind(format!("{from}:0").parse().expect("from"))?;
            sock.connect(addr).await
        })
        .expect("connect")
        .into_std()
        .expect("std stream");
    s.set_nonblocking(false).expect("blocking");
    s.set_read_timeout(Some(HANG_GUARD)).expect("timeout");
    s
}

/// Send a keep-alive GET on `s`: whether a 200 came back (false: the server closed the connection).
fn served(s: &mut TcpStream) -> bool {
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    // The whole answer (headers, then the body of `ok\n`), so the next request starts clean.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).unwrap_or(0) != 1 {
            return false;
        }
        head.push(b[0]);
    }
    let mut body = [0u8; 3];
    s.read_exact(&mut body).is_ok() && head.starts_with(b"HTTP/1.1 200") && &body == b"ok\n"
}

#[test]
fn one_client_cannot_take_every_connection() {
    let (rt, addr) = start(Limits {
        max_connections: 6,
        max_connections_per_client: 2,
        header_read_timeout: Duration::from_secs(30),
        connection_deadline: Duration::from_secs(60),
    });
    // Six idle keep-alive connections from one client: the first two are served and stay open, the
    // rest are closed unanswered.
    let mut idle: Vec<TcpStream> = (0..6)
        .map(|_| connect_from(&rt, "127.0.0.2", addr))
        .collect();
    let answered: Vec<bool> = idle.iter_mut().map(served).collect();
    assert_eq!(answered, [true, true, false, false, false, false]);
    // Another client is served meanwhile, on new connections...
    for _ in 0..3 {
        assert_eq!(get(addr, "/healthz").status, 200);
    }
    // ...while the first client's two still hold their places.
    assert!(served(&mut idle[0]) && served(&mut idle[1]));
    let mut more = connect_from(&rt, "127.0.0.2", addr);
    assert!(!served(&mut more));
}

/// A web config in `dir` (which holds the test PKI) with `tls` under tls_server_config and one
/// basic-auth user `prom` with password `s3cret`.
fn web(dir: &std::path::Path, tls: &str) -> WebConfig {
    let text = format!(
        "tls_server_config:\n{tls}basic_auth_users:\n  prom: {}\n\
         http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n",
        bcrypt::hash("s3cret", 4).expect("hash")
    );
    WebConfig::parse(&text, dir).expect("web config")
}

fn secured(
    addr: SocketAddr,
    ca: Option<&std::path::Path>,
    user: Option<(&str, &str)>,
) -> Result<client::Response, client::ClientError> {
    let opts = client::ClientOptions {
        ca_file: ca.map(std::path::Path::to_path_buf),
        user: user.map(|u| u.0.to_string()),
        password: user.map(|u| u.1.to_string()),
        ..Default::default()
    };
    let sec = client::ClientSecurity::load(&opts, "127.0.0.1").expect("client security");
    client::Client::new(addr, HANG_GUARD)
        .expect("client")
        .with_security(sec)
        .fetch("/metrics", None)
}

#[test]
fn tls_with_basic_auth() {
    let d = tempfile::tempdir().expect("tempdir");
    let pki = testpki::make(d.path());
    let (_rt, addr) = start_with(
        Limits::default(),
        web(
            d.path(),
            "  cert_file: server.pem\n  key_file: server-key.pem\n",
        ),
    );
    let ok = secured(addr, Some(&pki.ca), Some(("prom", "s3cret"))).expect("answer");
    assert_eq!((ok.status, ok.body.as_str()), (200, "famfs_test 1\n"));
    // Cached now: the same again.
    let ok = secured(addr, Some(&pki.ca), Some(("prom", "s3cret"))).expect("answer");
    assert_eq!(ok.status, 200);
    for user in [None, Some(("prom", "wrong")), Some(("root", "s3cret"))] {
        let r = secured(addr, Some(&pki.ca), user).expect("answer");
        assert_eq!(
            (r.status, r.body.as_str()),
            (401, "401 Unauthorized: basic authentication required\n"),
            "{user:?}"
        );
    }
    // A client that does not trust the server's CA stops at the handshake.
    let e = secured(addr, Some(&pki.other_ca), Some(("prom", "s3cret"))).unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("{addr}: TLS handshake: invalid peer certificate")),
        "{text}"
    );
    // Plain HTTP to the TLS port gets no HTTP answer.
    assert!(secured(addr, None, Some(("prom", "s3cret"))).is_err());
}

#[test]
fn unauthorized_answers_carry_the_challenge_and_the_configured_headers() {
    let d = tempfile::tempdir().expect("tempdir");
    let (_rt, addr) = start_with(Limits::default(), web(d.path(), ""));
    let mut s = connect(addr);
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("request");
    let text = String::from_utf8(read_to_close(&mut s).expect("answer")).expect("utf-8");
    let head = text.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 401 unauthorized\r\n"), "{text}");
    assert!(
        head.contains("\r\nwww-authenticate: basic realm=\"famfs-daemon\"\r\n"),
        "{text}"
    );
    assert!(
        head.contains("\r\nx-content-type-options: nosniff\r\n"),
        "{text}"
    );
    // Authorized over plain HTTP (no TLS configured), the header is there too.
    let r = secured(addr, None, Some(("prom", "s3cret"))).expect("answer");
    assert_eq!(r.status, 200);
}

#[test]
fn client_certificates_when_required() {
    let d = tempfile::tempdir().expect("tempdir");
    let pki = testpki::make(d.path());
    let (_rt, addr) = start_with(
        Limits::default(),
        web(
            d.path(),
            "  cert_file: server.pem\n  key_file: server-key.pem\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
        ),
    );
    let with_cert = |cert: bool| {
        let opts = client::ClientOptions {
            ca_file: Some(pki.ca.clone()),
            cert_file: cert.then(|| pki.client_cert.clone()),
            key_file: cert.then(|| pki.client_key.clone()),
            user: Some("prom".into()),
            password: Some("s3cret".into()),
            ..Default::default()
        };
        let sec = client::ClientSecurity::load(&opts, "localhost").expect("client security");
        client::Client::new(addr, HANG_GUARD)
            .expect("client")
            .with_security(sec)
            .fetch("/healthz", None)
    };
    assert_eq!(with_cert(true).expect("answer").status, 200);
    // Without one, TLS 1.3 reports the server's refusal on the first read.
    assert!(with_cert(false).is_err());
}
