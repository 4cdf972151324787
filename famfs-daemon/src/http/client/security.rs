//! What the client needs to reach a daemon started with `--web-config-file`: the CA its certificate is
//! checked against (and the name checked), an optional client certificate, and basic-auth credentials,
//! loaded once into a [`ClientSecurity`] that every request of a [`super::Client`] uses.
//!
//! Owns reading those files and building the `Authorization` header. Must not decide where a password
//! comes from (the CLI reads it from the environment or a file, never from argv).

use std::{net::IpAddr, path::PathBuf, sync::Arc};

use base64::Engine as _;
use hyper::header::HeaderValue;
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};

/// The operator's choices, as paths and strings.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// PEM CA certificate(s) the daemon's certificate must chain to: TLS is used when set.
    pub ca_file: Option<PathBuf>,
    /// Name the daemon's certificate must be valid for (default: the host the address was given as).
    pub server_name: Option<String>,
    /// Client certificate chain and key (PEM), for `client_auth_type: RequireAndVerifyClientCert`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Basic-auth user and password.
    pub user: Option<String>,
    pub password: Option<String>,
}

/// TLS and credentials, loaded. [`ClientSecurity::default`] is plain HTTP without credentials.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    pub(super) tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    pub(super) authorization: Option<HeaderValue>,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("tls", &self.tls.as_ref().map(|(_, n)| n.to_str()))
            .field("basic_auth", &self.authorization.is_some())
            .finish()
    }
}

fn read(what: &str, p: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{what} {}: {e}", p.display()))
}

fn certificates(what: &str, p: &PathBuf) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(what, p)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {}: {e}", p.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {}: no PEM certificate in it", p.display()));
    }
    Ok(certs)
}

/// The host part of `HOST:PORT` or `[V6]:PORT`.
pub fn host_of(addr: &str) -> &str {
    let a = addr;
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    a.rsplit_once(':').map_or(a, |(h, _)| h)
}

impl ClientSecurity {
    /// Load `opts`; `host` is the daemon's host as the operator gave it (the default server name).
    pub fn load(opts: &ClientOptions, host: &str) -> Result<ClientSecurity, String> {
        let tls = match &opts.ca_file {
            None => {
                if opts.server_name.is_some() || opts.cert_file.is_some() {
                    return Err(
                        "--server-name and --client-cert need --ca-file (they only apply to TLS)"
                            .into(),
                    );
                }
                None
            }
            Some(ca) => Some(Self::tls(opts, ca, host)?),
        };
        let authorization = match (&opts.user, &opts.password) {
            (None, None) => None,
            (Some(u), Some(p)) => {
                if u.contains(':') {
                    return Err(format!("--user {u:?}: a basic-auth user name has no ':'"));
                }
                let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                let mut v = HeaderValue::from_str(&format!("Basic {b}"))
                    .map_err(|e| format!("--user: {e}"))?;
                v.set_sensitive(true);
                Some(v)
            }
            (Some(_), None) => return Err("--user needs a password".into()),
            (None, Some(_)) => return Err("a password was given without --user".into()),
        };
        Ok(ClientSecurity { tls, authorization })
    }

    fn tls(
        opts: &ClientOptions,
        ca: &PathBuf,
        host: &str,
    ) -> Result<(tokio_rustls::TlsConnector, ServerName<'static>), String> {
        let mut roots = RootCertStore::empty();
        for c in certificates("--ca-file", ca)? {
            roots
                .add(c)
                .map_err(|e| format!("--ca-file {}: {e}", ca.display()))?;
        }
        let provider = Arc::new(crate::http::webconfig::ring_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots);
        let mut cfg = match (&opts.cert_file, &opts.key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(c), Some(k)) => {
                let chain = certificates("--client-cert", c)?;
                let key = PrivateKeyDer::from_pem_slice(&read("--client-key", k)?)
                    .map_err(|e| format!("--client-key {}: {e}", k.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("--client-cert with --client-key: {e}"))?
            }
            _ => return Err("--client-cert and --client-key go together".into()),
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name_text = opts.server_name.as_deref().unwrap_or(host);
        let name = match name_text.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(name_text.to_string())
                .map_err(|e| format!("server name {name_text:?}: {e}"))?,
        };
        Ok((tokio_rustls::TlsConnector::from(Arc::new(cfg)), name))
    }

    /// Whether requests go over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("127.0.0.1:9464"), "127.0.0.1");
        assert_eq!(host_of("daemon.example:9464"), "daemon.example");
        assert_eq!(host_of("[::1]:9464"), "::1");
    }

    #[test]
    fn options_are_checked() {
        let e = |o: ClientOptions| ClientSecurity::load(&o, "localhost").unwrap_err();
        assert_eq!(
            e(ClientOptions {
                user: Some("prom".into()),
                ..Default::default()
            }),
            "--user needs a password"
        );
        assert_eq!(
            e(ClientOptions {
                user: Some("a:b".into()),
                password: Some("x".into()),
                ..Default::default()
            }),
            "--user \"a:b\": a basic-auth user name has no ':'"
        );
        let missing = e(ClientOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        });
        assert!(
            missing.starts_with("--ca-file /nonexistent/ca.pem: "),
            "{missing}"
        );
        let s = ClientSecurity::load(
            &ClientOptions {
                user: Some("prom".into()),
                password: Some("pw".into()),
                ..Default::default()
            },
            "localhost",
        )
        .unwrap();
        assert!(!s.is_tls());
        // base64("prom:pw")
        assert_eq!(
            s.authorization.unwrap().to_str().unwrap(),
            "Basic cHJvbTpwdw=="
        );
    }
}
