//! The one HTTP client of the crate's client code (`top`'s collector, `snapshot`, the demo, the
//! integration tests' helpers): blocking `GET`s over hyper's HTTP/1 client connection on a small
//! current-thread tokio runtime, one connection per request, over TLS and with basic-auth credentials
//! when given a [`ClientSecurity`] (loaded by [`security`]).
//!
//! Owns: timeouts (the connect, the TLS handshake, the response head and every body read are each
//! bounded, so a large body that keeps coming is not cut off while a stalled peer is), the body size
//! cap, and errors that name the address and, once connected, the request path. Must not know any
//! endpoint's schema beyond decoding JSON into a type the caller names.

pub mod security;

use std::{net::SocketAddr, time::Duration};

use http_body_util::{BodyExt, Empty};
use hyper::{Request, body::Bytes, header};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    runtime::Runtime,
};

pub use security::{ClientOptions, ClientSecurity};

/// Largest response body read by default (a 100k-file table is about 60 MiB of JSON).
pub const MAX_BODY: usize = 256 << 20;

/// Why a request failed, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The daemon could not be reached (refused, unreachable, timed out).
    #[error("{addr}: {what}")]
    Connect { addr: SocketAddr, what: String },
    /// The request failed on an open connection (a broken or malformed answer, a timeout).
    #[error("{addr}: GET {path}: {what}")]
    Request {
        addr: SocketAddr,
        path: String,
        what: String,
    },
    /// The daemon answered with another status than 200.
    #[error("{addr}: GET {path}: HTTP {status}: {body}")]
    Status {
        addr: SocketAddr,
        path: String,
        status: u16,
        /// The start of the answer's body (the daemon's explanation).
        body: String,
    },
    /// A 200 answer whose body is not what was asked for.
    #[error("{addr}: GET {path}: {what}")]
    Decode {
        addr: SocketAddr,
        path: String,
        what: String,
    },
}

/// A complete answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// A client for one server address.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    timeout: Duration,
    max_body: usize,
    security: ClientSecurity,
    rt: Runtime,
}

/// Describe an I/O error the way an operator reads it ("connection refused", not "os error 111").
fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        TimedOut | WouldBlock => "timed out".into(),
        ConnectionReset => "connection reset".into(),
        _ => e.to_string(),
    }
}

/// An error with its causes (`hyper::Error`'s own text leaves the I/O cause out).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

impl Client {
    /// A client for `addr`; `timeout` bounds the connect, the wait for the answer's head and every read
    /// of its body.
    pub fn new(addr: SocketAddr, timeout: Duration) -> std::io::Result<Client> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        Ok(Client {
            addr,
            timeout,
            max_body: MAX_BODY,
            security: ClientSecurity::default(),
            rt,
        })
    }

    /// The same client with another body size cap.
    pub fn with_max_body(mut self, bytes: usize) -> Client {
        self.max_body = bytes;
        self
    }

    /// The same client over TLS and/or with credentials.
    pub fn with_security(mut self, security: ClientSecurity) -> Client {
        self.security = security;
        self
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `GET path` (with `Accept: accept` if given): the answer whatever its status.
    pub fn fetch(&self, path: &str, accept: Option<&str>) -> Result<Response, ClientError> {
        self.rt.block_on(self.exchange(path, accept))
    }

    /// `GET path`: the body of a 200 answer, else an error naming the path (and the daemon's reason).
    pub fn get(&self, path: &str) -> Result<String, ClientError> {
        let r = self.fetch(path, None)?;
        if r.status != 200 {
            return Err(ClientError::Status {
                addr: self.addr,
                path: path.to_string(),
                status: r.status,
                body: r.body.trim().chars().take(200).collect(),
            });
        }
        Ok(r.body)
    }

    /// `GET path` and decode the 200 answer's JSON; decoding errors name the line and column.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let body = self.get(path)?;
        serde_json::from_str(&body).map_err(|e| ClientError::Decode {
            addr: self.addr,
            path: path.to_string(),
            what: e.to_string(),
        })
    }

    fn request_error(&self, path: &str, what: String) -> ClientError {
        ClientError::Request {
            addr: self.addr,
            path: path.to_string(),
            what,
        }
    }

    async fn exchange(&self, path: &str, accept: Option<&str>) -> Result<Response, ClientError> {
        let t = self.timeout;
        let connect_error = |what: String| ClientError::Connect {
            addr: self.addr,
            what,
        };
        let stream = match tokio::time::timeout(t, TcpStream::connect(self.addr)).await {
            Err(_) => return Err(connect_error("timed out".into())),
            Ok(Err(e)) => return Err(connect_error(describe_io(&e))),
            Ok(Ok(s)) => s,
        };
        let mut req = Request::get(path).header(header::HOST, self.addr.to_string());
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        if let Some(a) = &self.security.authorization {
            req = req.header(header::AUTHORIZATION, a.clone());
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| self.request_error(path, format!("bad request: {e}")))?;
        match &self.security.tls {
            None => self.over(stream, req, path).await,
            Some((connector, name)) => {
                match tokio::time::timeout(t, connector.connect(name.clone(), stream)).await {
                    Err(_) => Err(connect_error("TLS handshake timed out".into())),
                    Ok(Err(e)) => Err(connect_error(format!("TLS handshake: {}", describe(&e)))),
                    Ok(Ok(tls)) => self.over(tls, req, path).await,
                }
            }
        }
    }

    /// One request over an open connection (plain or TLS).
    async fn over<I>(
        &self,
        io: I,
        req: Request<Empty<Bytes>>,
        path: &str,
    ) -> Result<Response, ClientError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.request_error(path, describe(&e)))?;
        // The connection's I/O runs beside the request; it ends when the answer is read or dropped.
        let conn = tokio::spawn(conn);
        let answer = self.read_answer(&mut sender, req, path, self.timeout).await;
        conn.abort();
        answer
    }

    async fn read_answer(
        &self,
        sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
        req: Request<Empty<Bytes>>,
        path: &str,
        t: Duration,
    ) -> Result<Response, ClientError> {
        let timed_out = || self.request_error(path, "timed out".into());
        let resp = tokio::time::timeout(t, sender.send_request(req))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| self.request_error(path, describe(&e)))?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = tokio::time::timeout(t, body.frame())
            .await
            .map_err(|_| timed_out())?
        {
            let frame = frame.map_err(|e| {
                self.request_error(path, format!("reading the body: {}", describe(&e)))
            })?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > self.max_body {
                    return Err(self
                        .request_error(path, format!("body larger than {} bytes", self.max_body)));
                }
                buf.extend_from_slice(&data);
            }
        }
        let body = String::from_utf8(buf).map_err(|e| ClientError::Decode {
            addr: self.addr,
            path: path.to_string(),
            what: format!("body is not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
        })?;
        Ok(Response { status, body })
    }
}

#[cfg(test)]
mod tests;
