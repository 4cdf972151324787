//! HTTP GETs of the tests, through the crate's one client (`famfs_daemon::http::client`): status and
//! body, or decoded JSON. Owns the per-request timeout of the tests; knows nothing of the endpoints.

use std::{net::SocketAddr, time::Duration};

use famfs_daemon::http::client::{Client, ClientError};

/// How long one test request may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

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
