//! The server's connections: the accept loop and what each connection goes through before its requests
//! reach the router.
//!
//! Owns the admission of connections (a global cap and a cap per client address, refusals logged at a
//! bounded rate), the back-off after accept errors (EMFILE and the like: 10 ms doubling to 1 s instead
//! of a busy loop), the TLS handshake (bounded by the header timeout), the whole-connection deadline,
//! and basic authentication before routing. Must not know any endpoint.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::{OwnedSemaphorePermit, Semaphore},
};

use super::{Limits, Views, WebConfig, route};

/// First and longest pause after a failed accept.
pub const ACCEPT_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(1));
/// At most one log line about refused connections per this long.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The pause after each of a run of accept errors: 10 ms doubling to 1 s; reset by a success.
#[derive(Debug, Default)]
pub struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    pub fn failed(&mut self) -> Duration {
        let d = self.next.unwrap_or(ACCEPT_BACKOFF.0);
        self.next = Some((d * 2).min(ACCEPT_BACKOFF.1));
        d
    }

    pub fn succeeded(&mut self) {
        self.next = None;
    }

    /// Whether the last call was the first failure of a run.
    fn first(&self) -> bool {
        self.next == Some(ACCEPT_BACKOFF.0 * 2)
    }
}

/// Whom a connection is counted against: its IPv4 address, or the /64 of an IPv6 one (a host usually
/// has a whole /64).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Open connections per client; an entry exists only while its count is above zero.
#[derive(Debug)]
struct PerClient {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection's place in its client's count, given back on drop.
struct ClientSlot {
    table: Arc<PerClient>,
    key: IpAddr,
}

impl PerClient {
    fn take(table: &Arc<PerClient>, ip: IpAddr) -> Option<ClientSlot> {
        let key = client_key(ip);
        let mut open = table.open.lock().ok()?;
        let n = open.entry(key).or_insert(0);
        if *n >= table.cap {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            table: table.clone(),
            key,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.table.open.lock()
            && let Some(n) = open.get_mut(&self.key)
        {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Refused connections, logged at most every [`REFUSAL_LOG_EVERY`] with a count.
#[derive(Default)]
struct Refusals {
    last_log: Option<Instant>,
    since: u64,
}

impl Refusals {
    fn refused(&mut self, peer: SocketAddr, why: &str) {
        self.since += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_EVERY)
        {
            return;
        }
        log::warn!(
            "HTTP connection from {peer} refused: {why} ({} refused since the last such message)",
            self.since
        );
        self.last_log = Some(now);
        self.since = 0;
    }
}

/// What every connection task shares.
struct Shared {
    views: Arc<dyn Views>,
    web: WebConfig,
    limits: Limits,
}

/// Accept connections until the future is dropped.
pub async fn accept_loop(
    listener: TcpListener,
    views: Arc<dyn Views>,
    limits: Limits,
    web: WebConfig,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_client = Arc::new(PerClient {
        cap: limits.max_connections_per_client.max(1),
        open: Mutex::new(HashMap::new()),
    });
    let shared = Arc::new(Shared { views, web, limits });
    let mut backoff = Backoff::default();
    let mut refusals = Refusals::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => {
                backoff.succeeded();
                s
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                // The client gave up before we took it: nothing wrong on our side.
                continue;
            }
            Err(e) => {
                let pause = backoff.failed();
                if backoff.first() {
                    log::warn!(
                        "HTTP accept failed: {e}; retrying after pauses of {pause:?} doubling to {:?}",
                        ACCEPT_BACKOFF.1
                    );
                }
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refusals.refused(
                peer,
                &format!("{} connections open", limits.max_connections),
            );
            continue;
        };
        let Some(slot) = PerClient::take(&per_client, peer.ip()) else {
            refusals.refused(
                peer,
                &format!(
                    "{} connections open from {}",
                    per_client.cap,
                    client_key(peer.ip())
                ),
            );
            continue;
        };
        tokio::spawn(connection(shared.clone(), stream, peer, (permit, slot)));
    }
}

/// One connection: TLS if configured, then HTTP/1.1, all within the connection deadline.
async fn connection(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    held: (OwnedSemaphorePermit, ClientSlot),
) {
    let limits = shared.limits;
    let work = async {
        match shared.web.tls.clone() {
            None => http(shared.clone(), stream, peer).await,
            Some(acceptor) => {
                match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(tls)) => http(shared.clone(), tls, peer).await,
                    Ok(Err(e)) => log::debug!("TLS handshake with {peer} failed: {e}"),
                    Err(_) => log::debug!("TLS handshake with {peer} timed out"),
                }
            }
        }
    };
    if tokio::time::timeout(limits.connection_deadline, work)
        .await
        .is_err()
    {
        log::debug!("HTTP connection from {peer} closed at its deadline");
    }
    drop(held);
}

async fn http<I>(shared: Arc<Shared>, io: I, peer: SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = shared.limits.header_read_timeout;
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(answer(&shared, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), svc);
    if let Err(e) = conn.await {
        log::debug!("HTTP connection from {peer}: {e}");
    }
}

/// 401 with the challenge that makes clients send credentials.
fn unauthorized() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(header::WWW_AUTHENTICATE, "Basic realm=\"famfs-daemon\"")
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(
            b"401 Unauthorized: basic authentication required\n",
        )))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"unauthorized\n"))))
}

async fn answer(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut resp = match &shared.web.auth {
        Some(auth) if !auth.check(req.headers().get(header::AUTHORIZATION)).await => unauthorized(),
        _ => route(shared.views.as_ref(), &req),
    };
    for (k, v) in &shared.web.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_10ms_to_1s_and_resets() {
        let mut b = Backoff::default();
        let got: Vec<u64> = (0..10).map(|_| b.failed().as_millis() as u64).collect();
        assert_eq!(got, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(), Duration::from_millis(10));
        assert!(b.first());
        b.failed();
        assert!(!b.first());
    }

    #[test]
    fn clients_are_counted_by_ipv4_address_or_ipv6_64() {
        let k = |s: &str| client_key(s.parse().unwrap()).to_string();
        assert_eq!(k("10.1.2.3"), "10.1.2.3");
        assert_eq!(k("::ffff:10.1.2.3"), "10.1.2.3");
        assert_eq!(k("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::");
        let table = Arc::new(PerClient {
            cap: 2,
            open: Mutex::new(HashMap::new()),
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = PerClient::take(&table, a).unwrap();
        let _s2 = PerClient::take(&table, a).unwrap();
        assert!(PerClient::take(&table, a).is_none());
        let sb = PerClient::take(&table, b).unwrap();
        drop(s1);
        let _s3 = PerClient::take(&table, a).unwrap();
        drop(sb);
        // No entry is left for a client with nothing open.
        assert_eq!(table.open.lock().unwrap().len(), 1);
    }
}
