//! The HTTP face of the daemon (hyper): `/metrics`, `/healthz`, `/api/v1/probes`, `/api/v1/files`,
//! `/api/v1/snapshot`; the API's schema ([`api`]) and the one HTTP client the client code uses
//! ([`client`]).
//!
//! The server side owns routing, content negotiation and JSON encoding (here), the web configuration
//! (`--web-config-file`: TLS, basic auth, extra headers; [`webconfig`], [`auth`]) and protection against
//! slow or abusive clients (header read timeout, a whole-connection deadline, a global and a per-client
//! connection cap, back-off after accept errors; `conn`). Must not compute anything itself: it asks the
//! [`Views`] it was given, which must answer from in-memory state without blocking on the FUSE server.

pub mod api;
pub mod auth;
pub mod client;
mod conn;
#[cfg(test)]
mod testpki;
pub mod webconfig;

pub use conn::{ACCEPT_BACKOFF, Backoff, client_key};
pub use webconfig::WebConfig;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header,
};
use tokio::net::TcpListener;

use crate::{join::FileQuery, metrics::Format};

/// What the HTTP layer can show. Implemented by the daemon's state.
pub trait Views: Send + Sync + 'static {
    /// Metrics in the requested wire format.
    fn metrics(&self, format: Format) -> Result<String, String>;
    /// The probe table.
    fn probes(&self) -> Result<Vec<api::ProbeRow>, String>;
    /// The file table, as `query` selects and orders it.
    fn files(&self, query: &FileQuery) -> Result<Vec<api::FileRow>, String>;
    /// [`Views::files`] as its JSON text (what `/api/v1/files` sends). A view over a large table may
    /// encode the rows one at a time instead of building them all first; the text must be the same.
    fn files_json(&self, query: &FileQuery) -> Result<String, String> {
        serde_json::to_string(&self.files(query)?).map_err(|e| format!("encoding JSON: {e}"))
    }
    /// One file's detail (`path` as `/api/v1/files` spells it; the leading `/` may be left out); `Ok(None)` when no such file was seen.
    fn file(&self, path: &str) -> Result<Option<api::FileDetail>, String>;
    /// Everything the operator views read at once; the files as `query` selects them.
    fn snapshot(&self, query: &FileQuery) -> Result<api::Snapshot, String>;
    /// `None` when healthy, else why not.
    fn unhealthy(&self) -> Option<String>;
}

/// Limits applied to every client.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// Connections open at once from one client (IPv4 address or IPv6 /64).
    pub max_connections_per_client: usize,
    /// How long a client may take to send a request's headers (the TLS handshake included), and stay
    /// idle between requests.
    pub header_read_timeout: Duration,
    /// A connection is closed after this long, whatever it is doing (kills idle keep-alives and trickling clients).
    pub connection_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            max_connections_per_client: 8,
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

/// A JSON answer at least this long was made of many small blocks (one listing of a whole large file
/// table): once they are freed, their pages go back to the kernel.
const RELEASE_AFTER: usize = 4 << 20;

/// A view's answer as JSON: 200, or 500 with the view's reason.
fn json<T: serde::Serialize>(answer: Result<T, String>) -> Response<Full<Bytes>> {
    match answer.and_then(|v| serde_json::to_string(&v).map_err(|e| format!("encoding JSON: {e}")))
    {
        Ok(body) => {
            if body.len() >= RELEASE_AFTER {
                crate::util::alloc::release_free();
            }
            respond(StatusCode::OK, JSON, body)
        }
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
        api::FILES_PATH => match api::parse_file_query(req.uri().query()) {
            Ok(q) => match views.files_json(&q) {
                Ok(body) => respond(StatusCode::OK, JSON, body),
                Err(e) => respond(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
            },
            Err(e) => respond(StatusCode::BAD_REQUEST, TEXT, format!("{e}\n")),
        },
        api::FILE_PATH => match api::parse_file_path(req.uri().query()) {
            Err(e) => respond(StatusCode::BAD_REQUEST, TEXT, format!("{e}\n")),
            Ok(path) => match views.file(&path) {
                Ok(Some(d)) => json(Ok(d)),
                Ok(None) => respond(
                    StatusCode::NOT_FOUND,
                    TEXT,
                    format!(
                        "no file {path:?} has been opened or faulted since the daemon started\n"
                    ),
                ),
                Err(e) => json::<()>(Err(e)),
            },
        },
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

/// Serve until the returned future is dropped, with `web`'s TLS and authentication (plain HTTP without
/// authentication for [`WebConfig::default`]).
pub async fn serve(listener: TcpListener, views: Arc<dyn Views>, limits: Limits, web: WebConfig) {
    conn::accept_loop(listener, views, limits, web).await;
}

#[cfg(test)]
mod tests;
