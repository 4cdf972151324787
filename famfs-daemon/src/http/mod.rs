//! The HTTP face of the daemon (hyper): `/metrics`, `/healthz`, `/api/v1/probes`, `/api/v1/files`,
//! `/api/v1/snapshot`; the API's schema ([`api`]) and the one HTTP client the client code uses
//! ([`client`]).
//!
//! The server side owns routing, content negotiation, JSON encoding and protection against slow or
//! abusive clients (header read timeout, a whole-connection deadline, a connection limit). Must not
//! compute anything itself: it asks the [`Views`] it was given, which must answer from in-memory state
//! without blocking on the FUSE server.

pub mod api;
pub mod client;

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};

use crate::{join::FileQuery, metrics::Format};

/// What the HTTP layer can show. Implemented by the daemon's state.
pub trait Views: Send + Sync + 'static {
    /// Metrics in the requested wire format.
    fn metrics(&self, format: Format) -> Result<String, String>;
    /// The probe table.
    fn probes(&self) -> Result<Vec<api::ProbeRow>, String>;
    /// The file table, as `query` selects and orders it.
    fn files(&self, query: &FileQuery) -> Result<Vec<api::FileRow>, String>;
    /// Everything the operator views read at once; the files as `query` selects them.
    fn snapshot(&self, query: &FileQuery) -> Result<api::Snapshot, String>;
    /// `None` when healthy, else why not.
    fn unhealthy(&self) -> Option<String>;
}

/// Limits applied to every client.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// A connection is closed after this long, whatever it is doing (kills idle keep-alives and trickling clients).
    pub connection_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(5),
            connection_deadline: Duration::from_secs(60),
        }
    }
}

fn respond(status: StatusCode, ctype: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, ctype)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"internal error\n"))))
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// A view's answer as JSON: 200, or 500 with the view's reason.
fn json<T: serde::Serialize>(answer: Result<T, String>) -> Response<Full<Bytes>> {
    match answer.and_then(|v| serde_json::to_string(&v).map_err(|e| format!("encoding JSON: {e}")))
    {
        Ok(body) => respond(StatusCode::OK, JSON, body),
        Err(e) => respond(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
    }
}

/// A view of the file table: 400 when the query string is bad.
fn file_view<T: serde::Serialize>(
    query: Option<&str>,
    view: impl FnOnce(&FileQuery) -> Result<T, String>,
) -> Response<Full<Bytes>> {
    match api::parse_file_query(query) {
        Ok(q) => json(view(&q)),
        Err(e) => respond(StatusCode::BAD_REQUEST, TEXT, format!("{e}\n")),
    }
}

fn route(views: &dyn Views, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET is served\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let fmt = Format::from_accept(accept);
            match views.metrics(fmt) {
                Ok(body) => respond(StatusCode::OK, fmt.content_type(), body),
                Err(e) => respond(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
            }
        }
        "/healthz" => match views.unhealthy() {
            None => respond(StatusCode::OK, TEXT, "ok\n".into()),
            Some(why) => respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("{why}\n")),
        },
        api::PROBES_PATH => json(views.probes()),
        api::FILES_PATH => file_view(req.uri().query(), |q| views.files(q)),
        api::SNAPSHOT_PATH => file_view(req.uri().query(), |q| views.snapshot(q)),
        other => respond(
            StatusCode::NOT_FOUND,
            TEXT,
            format!("no such endpoint: {other}\n"),
        ),
    }
}

/// Bind `addr`. Separate from [`serve`] so callers learn the real port (for `:0`) before serving.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the HTTP listener on {addr}"))
}

/// Serve until the returned future is dropped.
pub async fn serve(listener: TcpListener, views: Arc<dyn Views>, limits: Limits) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                log::warn!("HTTP accept failed: {e}");
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            log::warn!(
                "HTTP connection from {peer} refused: {} connections open",
                limits.max_connections
            );
            drop(stream);
            continue;
        };
        let views = views.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let views = views.clone();
                async move { Ok::<_, Infallible>(route(views.as_ref(), &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), svc);
            match tokio::time::timeout(limits.connection_deadline, conn).await {
                Ok(Err(e)) => log::debug!("HTTP connection from {peer}: {e}"),
                Err(_) => log::debug!("HTTP connection from {peer} closed at its deadline"),
                Ok(Ok(())) => {}
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    //! The client limits against real sockets on loopback: a client that never sends its headers is
    //! disconnected, connections past the limit are refused, and neither stalls a well-behaved client.

    use std::{
        io::{Read, Write},
        net::TcpStream,
    };

    use super::*;

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
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(bind("127.0.0.1:0".parse().expect("addr")))
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        rt.spawn(serve(listener, Arc::new(Fixed), limits));
        (rt, addr)
    }

    #[test]
    fn silent_and_excess_clients_are_cut_off_without_stalling_others() {
        let (_rt, addr) = start(Limits {
            max_connections: 2,
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
        let r = get(addr, "/api/v2");
        assert_eq!(
            (r.status, r.body.as_str()),
            (404, "no such endpoint: /api/v2\n")
        );
    }
}
