//! The HTTP face of the daemon (hyper): `/metrics`, `/healthz`, `/api/v1/probes`, `/api/v1/files`.
//!
//! Owns routing, content negotiation, and protection against slow or abusive clients (header read
//! timeout, a whole-connection deadline, a connection limit). Must not compute anything itself: it asks
//! the [`Views`] it was given, which must answer from in-memory state without blocking on the FUSE server.

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

use crate::metrics::Format;

/// What the HTTP layer can show. Implemented by the daemon's state.
pub trait Views: Send + Sync + 'static {
    /// Metrics in the requested wire format.
    fn metrics(&self, format: Format) -> Result<String, String>;
    /// Probe table as JSON.
    fn probes_json(&self) -> String;
    /// Per-file snapshot as JSON; `query` is the raw query string (sort, limit, path filter).
    fn files_json(&self, query: Option<&str>) -> Result<String, String>;
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

fn route(views: &dyn Views, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    const JSON: &str = "application/json";
    const TEXT: &str = "text/plain; charset=utf-8";
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
        "/api/v1/probes" => respond(StatusCode::OK, JSON, views.probes_json()),
        "/api/v1/files" => match views.files_json(req.uri().query()) {
            Ok(body) => respond(StatusCode::OK, JSON, body),
            Err(e) => respond(StatusCode::BAD_REQUEST, TEXT, format!("{e}\n")),
        },
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
