//! `--web-config-file`: the web configuration format of the Prometheus exporter toolkit, read once at
//! start-up into what the server needs: a rustls acceptor (`tls_server_config`), the basic-auth users
//! (`basic_auth_users`, bcrypt hashes, see [`super::auth`]) and extra response headers
//! (`http_server_config.headers`).
//!
//! Owns the file's keys, their defaults and validation (every error names the key), and which keys are
//! accepted but not acted on (reported as warnings): `http_server_config.http2` (HTTP/1.1 only) and
//! `rate_limit` (the per-client connection cap applies instead). Keys that would tighten security but
//! cannot be honoured here are refused rather than ignored: `client_allowed_sans`,
//! `client_auth_type: RequireAnyClientCert`, `CurveP521`, cipher suites rustls does not implement,
//! `max_version` below TLS 1.2. Must not do I/O besides reading the files the configuration names.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use hyper::header::{HeaderName, HeaderValue};
use rustls::{
    NamedGroup, RootCertStore, ServerConfig, SupportedProtocolVersion,
    crypto::{CryptoProvider, ring},
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use serde::{Deserialize, Deserializer};

use super::auth::BasicAuth;

/// A loaded web configuration. [`WebConfig::default`] is plain HTTP without authentication.
#[derive(Clone, Default)]
pub struct WebConfig {
    pub(super) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(super) auth: Option<Arc<BasicAuth>>,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    /// Keys accepted but not acted on, in words for the operator's log.
    pub warnings: Vec<String>,
    summary: String,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl WebConfig {
    /// Start what serving with this configuration needs beyond the loaded files (the bcrypt thread
    /// of basic auth). Loading starts nothing, so the daemon can drop privileges single-threaded.
    pub fn start(&self) -> Result<(), String> {
        self.auth.as_ref().map_or(Ok(()), |a| a.start())
    }

    /// Read and check `path`; errors name the file and the key.
    pub fn load(path: &Path) -> Result<WebConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("web config {}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        WebConfig::parse(&text, dir).map_err(|e| format!("web config {}: {e}", path.display()))
    }

    /// Parse a configuration text; relative file names are taken from `dir` (the file's directory, as
    /// the exporter toolkit does).
    pub fn parse(text: &str, dir: &Path) -> Result<WebConfig, String> {
        let raw: RawConfig = if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            RawConfig::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?
        };
        let mut warnings = Vec::new();
        let mut parts = Vec::new();
        let tls = match tls_config(&raw.tls_server_config, dir, &mut warnings)? {
            Some((cfg, what)) => {
                parts.push(what);
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
            }
            None => {
                parts.push("plain HTTP".to_string());
                None
            }
        };
        let auth = if raw.basic_auth_users.is_empty() {
            parts.push("no authentication".into());
            None
        } else {
            let n = raw.basic_auth_users.len();
            parts.push(format!(
                "basic auth ({n} user{})",
                if n == 1 { "" } else { "s" }
            ));
            Some(Arc::new(BasicAuth::new(&raw.basic_auth_users)?))
        };
        let headers = headers(&raw.http_server_config.headers)?;
        if raw.http_server_config.http2 == Some(true) {
            warnings.push(
                "http_server_config.http2: ignored, famfs-daemon serves HTTP/1.1 only".into(),
            );
        }
        if raw.rate_limit.is_some() {
            warnings.push(
                "rate_limit: ignored, famfs-daemon limits connections per client instead \
                 (--http-max-connections-per-client)"
                    .into(),
            );
        }
        Ok(WebConfig {
            tls,
            auth,
            headers,
            warnings,
            summary: parts.join(", "),
        })
    }

    /// One line for the start-up log: TLS or not, client certificates, authentication.
    pub fn describe(&self) -> String {
        if self.summary.is_empty() {
            "plain HTTP, no authentication".into()
        } else {
            self.summary.clone()
        }
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// `null` (a key with nothing after it) reads as the type's default, as the exporter toolkit reads it.
fn null_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    #[serde(deserialize_with = "null_default")]
    tls_server_config: RawTls,
    #[serde(deserialize_with = "null_default")]
    http_server_config: RawHttp,
    rate_limit: Option<serde_yaml_ng::Value>,
    #[serde(deserialize_with = "null_default")]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTls {
    #[serde(deserialize_with = "null_default")]
    cert: String,
    #[serde(deserialize_with = "null_default")]
    key: String,
    #[serde(deserialize_with = "null_default")]
    client_ca: String,
    #[serde(deserialize_with = "null_default")]
    cert_file: String,
    #[serde(deserialize_with = "null_default")]
    key_file: String,
    #[serde(deserialize_with = "null_default")]
    client_auth_type: String,
    #[serde(deserialize_with = "null_default")]
    client_ca_file: String,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    #[serde(deserialize_with = "null_default")]
    cipher_suites: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    curve_preferences: Vec<String>,
    prefer_server_cipher_suites: Option<bool>,
}

impl RawTls {
    /// TLS is on when any certificate, key or client-auth key is set (the toolkit's `IsEnabled`).
    fn enabled(&self) -> bool {
        [
            &self.cert,
            &self.key,
            &self.client_ca,
            &self.cert_file,
            &self.key_file,
            &self.client_auth_type,
            &self.client_ca_file,
        ]
        .iter()
        .any(|s| !s.is_empty())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHttp {
    http2: Option<bool>,
    #[serde(deserialize_with = "null_default")]
    headers: BTreeMap<String, String>,
}

/// PEM text from `file` (relative to `dir`) or inline `text`: exactly one of them may be set.
fn pem_source(
    dir: &Path,
    file_key: &str,
    file: &str,
    text_key: &str,
    text: &str,
) -> Result<Option<(String, Vec<u8>)>, String> {
    match (file.is_empty(), text.is_empty()) {
        (false, false) => Err(format!(
            "tls_server_config: {file_key} and {text_key} are both set; set one"
        )),
        (false, true) => {
            let p: PathBuf = dir.join(file);
            let data = std::fs::read(&p)
                .map_err(|e| format!("tls_server_config.{file_key} {}: {e}", p.display()))?;
            Ok(Some((
                format!("tls_server_config.{file_key} {}", p.display()),
                data,
            )))
        }
        (true, false) => Ok(Some((
            format!("tls_server_config.{text_key}"),
            text.as_bytes().to_vec(),
        ))),
        (true, true) => Ok(None),
    }
}

/// Every certificate in a PEM text; an error when there is none.
fn certificates(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no PEM certificate in it"));
    }
    Ok(certs)
}

fn tls_version(key: &str, v: &str) -> Result<u8, String> {
    match v {
        "TLS10" => Ok(10),
        "TLS11" => Ok(11),
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        _ => Err(format!(
            "tls_server_config.{key} {v:?}: expected TLS10, TLS11, TLS12 or TLS13"
        )),
    }
}

/// The protocol versions between `min_version` and `max_version` (rustls has TLS 1.2 and 1.3 only).
fn versions(
    t: &RawTls,
    warnings: &mut Vec<String>,
) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let min = tls_version("min_version", t.min_version.as_deref().unwrap_or("TLS12"))?;
    let max = tls_version("max_version", t.max_version.as_deref().unwrap_or("TLS13"))?;
    if max < 12 {
        return Err(format!(
            "tls_server_config.max_version TLS{max}: famfs-daemon (rustls) speaks TLS 1.2 and 1.3 only"
        ));
    }
    if min > max {
        return Err(format!(
            "tls_server_config: min_version TLS{min} is above max_version TLS{max}"
        ));
    }
    if min < 12 {
        warnings.push(format!(
            "tls_server_config.min_version TLS{min}: TLS 1.2 is the lowest version served"
        ));
    }
    let mut v: Vec<&'static SupportedProtocolVersion> = Vec::new();
    if min <= 12 {
        v.push(&rustls::version::TLS12);
    }
    if max >= 13 {
        v.push(&rustls::version::TLS13);
    }
    Ok(v)
}

/// The rustls crypto provider of both ends: *ring*. rustls 0.23.48 deprecates it for lacking
/// post-quantum key exchange; it is kept because its only system call is getrandom(2), which matters
/// for a daemon that runs under a seccomp allow-list (aws-lc, the alternative, brings a C library with
/// its own fork detection and memory advice calls), and because it builds without cmake.
#[allow(deprecated)]
pub fn ring_provider() -> CryptoProvider {
    ring::default_provider()
}

/// The ring provider with `cipher_suites` (TLS 1.2 suites, by their IANA/Go names; TLS 1.3 suites are
/// not configurable, as in Go) and `curve_preferences` applied.
fn provider(t: &RawTls) -> Result<CryptoProvider, String> {
    let mut p = ring_provider();
    if !t.cipher_suites.is_empty() {
        let name = |s: &rustls::SupportedCipherSuite| format!("{:?}", s.suite());
        let mut tls12 = Vec::new();
        for want in &t.cipher_suites {
            if want.starts_with("TLS_AES_") || want.starts_with("TLS_CHACHA20_") {
                continue;
            }
            let found = p
                .cipher_suites
                .iter()
                .find(|s| s.version() == &rustls::version::TLS12 && name(s) == *want)
                .ok_or_else(|| {
                    let known: Vec<String> = p
                        .cipher_suites
                        .iter()
                        .filter(|s| s.version() == &rustls::version::TLS12)
                        .map(name)
                        .collect();
                    format!(
                        "tls_server_config.cipher_suites: {want:?} is not offered (choose from {})",
                        known.join(", ")
                    )
                })?;
            tls12.push(*found);
        }
        let tls13 = p
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied();
        p.cipher_suites = tls13.chain(tls12).collect();
    }
    if !t.curve_preferences.is_empty() {
        let mut groups = Vec::new();
        for c in &t.curve_preferences {
            let id = match c.as_str() {
                "X25519" => NamedGroup::X25519,
                "CurveP256" => NamedGroup::secp256r1,
                "CurveP384" => NamedGroup::secp384r1,
                "CurveP521" => {
                    return Err(
                        "tls_server_config.curve_preferences: CurveP521 is not offered (choose from X25519, CurveP256, CurveP384)"
                            .into(),
                    );
                }
                other => {
                    return Err(format!(
                        "tls_server_config.curve_preferences: unknown curve {other:?} (expected X25519, CurveP256 or CurveP384)"
                    ));
                }
            };
            if let Some(g) = p.kx_groups.iter().find(|g| g.name() == id) {
                groups.push(*g);
            }
        }
        p.kx_groups = groups;
    }
    Ok(p)
}

/// The client-certificate policy: `None` for no client certificates, else (roots, required).
fn client_auth(
    t: &RawTls,
    dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Option<(RootCertStore, bool)>, String> {
    let ca = pem_source(
        dir,
        "client_ca_file",
        &t.client_ca_file,
        "client_ca",
        &t.client_ca,
    )?;
    let required = match t.client_auth_type.as_str() {
        "" | "NoClientCert" => None,
        "RequestClientCert" => {
            warnings.push(
                "tls_server_config.client_auth_type RequestClientCert: client certificates are \
                 not requested (an unverified certificate grants nothing)"
                    .into(),
            );
            None
        }
        "VerifyClientCertIfGiven" => Some(false),
        "RequireAndVerifyClientCert" => Some(true),
        "RequireAnyClientCert" | "RequireClientCert" => {
            return Err(format!(
                "tls_server_config.client_auth_type {}: not supported (an unverified client \
                 certificate proves nothing); use RequireAndVerifyClientCert with client_ca_file",
                t.client_auth_type
            ));
        }
        other => {
            return Err(format!(
                "tls_server_config.client_auth_type {other:?}: expected NoClientCert, \
                 RequestClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            ));
        }
    };
    if t.client_allowed_sans.is_some() {
        return Err(
            "tls_server_config.client_allowed_sans: not supported by famfs-daemon; restrict \
             clients through the CA in client_ca_file"
                .into(),
        );
    }
    match (required, ca) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(
            "tls_server_config: client CAs are configured without a client_auth_type that verifies them"
                .into(),
        ),
        (Some(_), None) => Err(format!(
            "tls_server_config.client_auth_type {}: needs client_ca_file (or client_ca)",
            t.client_auth_type
        )),
        (Some(req), Some((what, pem))) => {
            let mut roots = RootCertStore::empty();
            for c in certificates(&what, &pem)? {
                roots
                    .add(c)
                    .map_err(|e| format!("{what}: not a usable CA certificate: {e}"))?;
            }
            Ok(Some((roots, req)))
        }
    }
}

/// The rustls server configuration and a description, or `None` when no TLS key is set.
fn tls_config(
    t: &RawTls,
    dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Option<(ServerConfig, String)>, String> {
    if !t.enabled() {
        if t.min_version.is_some()
            || t.max_version.is_some()
            || !t.cipher_suites.is_empty()
            || !t.curve_preferences.is_empty()
        {
            warnings.push(
                "tls_server_config: no certificate configured, serving plain HTTP; the TLS \
                 settings are ignored"
                    .into(),
            );
        }
        return Ok(None);
    }
    if t.cert_file.is_empty() && t.cert.is_empty() {
        return Err("tls_server_config: missing one of cert or cert_file".into());
    }
    if t.key_file.is_empty() && t.key.is_empty() {
        return Err("tls_server_config: missing one of key or key_file".into());
    }
    let (cert_what, cert_pem) = pem_source(dir, "cert_file", &t.cert_file, "cert", &t.cert)?
        .ok_or("tls_server_config: missing one of cert or cert_file")?;
    let (key_what, key_pem) = pem_source(dir, "key_file", &t.key_file, "key", &t.key)?
        .ok_or("tls_server_config: missing one of key or key_file")?;
    let chain = certificates(&cert_what, &cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{key_what}: no usable PEM private key: {e}"))?;
    let versions = versions(t, warnings)?;
    let provider = Arc::new(provider(t)?);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let client = client_auth(t, dir, warnings)?;
    let clients = match &client {
        None => "no client certificates",
        Some((_, true)) => "client certificates required",
        Some((_, false)) => "client certificates verified if given",
    };
    let builder = match client {
        None => builder.with_no_client_auth(),
        Some((roots, required)) => {
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if required {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                v.build()
                    .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?,
            )
        }
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("{cert_what} with {key_what}: {e}"))?;
    cfg.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let names: Vec<&str> = versions
        .iter()
        .map(|v| {
            if v.version == rustls::ProtocolVersion::TLSv1_3 {
                "1.3"
            } else {
                "1.2"
            }
        })
        .collect();
    Ok(Some((cfg, format!("TLS {} ({clients})", names.join("/")))))
}

/// `http_server_config.headers`: only the toolkit's five security headers, with its value checks.
fn headers(h: &BTreeMap<String, String>) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    const ALLOWED: [(&str, &[&str]); 5] = [
        ("Strict-Transport-Security", &[]),
        ("X-Content-Type-Options", &["nosniff"]),
        ("X-Frame-Options", &["deny", "sameorigin"]),
        ("X-XSS-Protection", &[]),
        ("Content-Security-Policy", &[]),
    ];
    let mut out = Vec::new();
    for (k, v) in h {
        let Some((_, values)) = ALLOWED.iter().find(|(n, _)| n == k) else {
            return Err(format!(
                "http_server_config.headers: {k:?} cannot be configured (only {})",
                ALLOWED.map(|(n, _)| n).join(", ")
            ));
        };
        if v.is_empty() {
            // Unset if blank.
            continue;
        }
        if !values.is_empty() && !values.iter().any(|a| a.eq_ignore_ascii_case(v)) {
            return Err(format!(
                "http_server_config.headers.{k}: {v:?}, expected one of {}",
                values.join(", ")
            ));
        }
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| format!("http_server_config.headers.{k}: {e}"))?;
        let value =
            HeaderValue::from_str(v).map_err(|e| format!("http_server_config.headers.{k}: {e}"))?;
        out.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
