//! The web config file: what each key does, the exporter toolkit's defaults, and errors that name the
//! key (and the file where one is read).

use super::*;
use crate::http::testpki;

fn parse(text: &str, dir: &Path) -> Result<WebConfig, String> {
    WebConfig::parse(text, dir)
}

fn err(text: &str, dir: &Path) -> String {
    match parse(text, dir) {
        Ok(c) => panic!("accepted: {}", c.describe()),
        Err(e) => e,
    }
}

fn hash() -> String {
    bcrypt::hash("pw", 4).unwrap()
}

#[test]
fn empty_files_and_empty_sections_mean_plain_http() {
    let d = tempfile::tempdir().unwrap();
    for text in [
        "",
        "# nothing\n",
        "tls_server_config:\nbasic_auth_users:\nhttp_server_config:\n",
    ] {
        let c = parse(text, d.path()).unwrap();
        assert!(!c.is_tls() && c.auth.is_none(), "{text:?}");
        assert!(c.warnings.is_empty(), "{text:?}: {:?}", c.warnings);
        assert_eq!(c.describe(), "plain HTTP, no authentication");
    }
}

#[test]
fn tls_with_relative_files_and_basic_auth() {
    let d = tempfile::tempdir().unwrap();
    testpki::make(d.path());
    let text = format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  min_version: TLS12\n\
         basic_auth_users:\n  prom: {}\n  ops: {}\n",
        hash(),
        hash()
    );
    let c = parse(&text, d.path()).unwrap();
    assert!(c.is_tls());
    assert_eq!(
        c.describe(),
        "TLS 1.2/1.3 (no client certificates), basic auth (2 users)"
    );
    let c = parse(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  min_version: TLS13\n",
        d.path(),
    )
    .unwrap();
    assert_eq!(
        c.describe(),
        "TLS 1.3 (client certificates required), no authentication"
    );
}

#[test]
fn inline_pem_is_accepted() {
    let d = tempfile::tempdir().unwrap();
    let pki = testpki::make(d.path());
    let indent = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let text = format!(
        "tls_server_config:\n  cert: |\n{}  key: |\n{}",
        indent(&pki.cert),
        indent(&pki.key)
    );
    assert!(parse(&text, Path::new("/nonexistent")).unwrap().is_tls());
}

#[test]
fn errors_name_the_key() {
    let d = tempfile::tempdir().unwrap();
    testpki::make(d.path());
    let tls = "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n";
    let cases: Vec<(String, &str)> = vec![
        (
            "tls_server_config:\n  cert_fil: x\n".into(),
            "tls_server_config: unknown field `cert_fil`",
        ),
        ("basic_auth: {}\n".into(), "unknown field `basic_auth`"),
        (
            "tls_server_config:\n  key_file: server-key.pem\n".into(),
            "tls_server_config: missing one of cert or cert_file",
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n".into(),
            "tls_server_config: missing one of key or key_file",
        ),
        (
            "tls_server_config:\n  cert_file: nope.pem\n  key_file: server-key.pem\n".into(),
            "tls_server_config.cert_file ",
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.pem\n".into(),
            "tls_server_config.key_file ",
        ),
        (
            "tls_server_config:\n  cert_file: server-key.pem\n  key_file: server-key.pem\n".into(),
            "no PEM certificate in it",
        ),
        (
            format!("{tls}  min_version: TLS14\n"),
            "tls_server_config.min_version \"TLS14\": expected TLS10, TLS11, TLS12 or TLS13",
        ),
        (
            format!("{tls}  max_version: TLS11\n"),
            "tls_server_config.max_version TLS11: famfs-daemon (rustls) speaks TLS 1.2 and 1.3 only",
        ),
        (
            format!("{tls}  min_version: TLS13\n  max_version: TLS12\n"),
            "min_version TLS13 is above max_version TLS12",
        ),
        (
            format!("{tls}  client_auth_type: RequireAndVerifyClientCert\n"),
            "client_auth_type RequireAndVerifyClientCert: needs client_ca_file",
        ),
        (
            format!("{tls}  client_ca_file: ca.pem\n"),
            "client CAs are configured without a client_auth_type",
        ),
        (
            format!("{tls}  client_auth_type: RequireAnyClientCert\n"),
            "client_auth_type RequireAnyClientCert: not supported",
        ),
        (
            format!("{tls}  client_auth_type: Sometimes\n"),
            "client_auth_type \"Sometimes\": expected",
        ),
        (
            format!(
                "{tls}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  client_allowed_sans: [a]\n"
            ),
            "tls_server_config.client_allowed_sans: not supported",
        ),
        (
            format!("{tls}  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n"),
            "tls_server_config.cipher_suites: \"TLS_RSA_WITH_RC4_128_SHA\" is not offered",
        ),
        (
            format!("{tls}  curve_preferences: [CurveP521]\n"),
            "tls_server_config.curve_preferences: CurveP521 is not offered",
        ),
        (
            format!("{tls}  curve_preferences: [Curve9]\n"),
            "unknown curve \"Curve9\"",
        ),
        (
            "basic_auth_users:\n  prom: hunter2\n".into(),
            "basic_auth_users.prom: not a bcrypt hash",
        ),
        (
            "http_server_config:\n  headers:\n    X-Powered-By: famfs\n".into(),
            "http_server_config.headers: \"X-Powered-By\" cannot be configured",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n".into(),
            "http_server_config.headers.X-Frame-Options: \"allow\", expected one of deny, sameorigin",
        ),
        (
            "tls_server_config: [1]\n".into(),
            "tls_server_config: invalid type",
        ),
    ];
    for (text, want) in cases {
        let e = err(&text, d.path());
        assert!(
            e.contains(want),
            "{text:?}\n  gave {e:?}\n  wanted {want:?}"
        );
    }
}

#[test]
fn load_names_the_file() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("web.yml");
    std::fs::write(&p, "tls_server_config:\n  cert_fil: x\n").unwrap();
    let e = WebConfig::load(&p).unwrap_err();
    assert!(
        e.starts_with(&format!(
            "web config {}: tls_server_config: unknown field `cert_fil`",
            p.display()
        )),
        "{e}"
    );
    let e = WebConfig::load(&d.path().join("missing.yml")).unwrap_err();
    assert!(e.contains("missing.yml: No such file"), "{e}");
}

#[test]
fn unsupported_but_harmless_keys_are_warnings() {
    let d = tempfile::tempdir().unwrap();
    testpki::make(d.path());
    let c = parse(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  min_version: TLS10\n  \
         client_auth_type: RequestClientCert\n  prefer_server_cipher_suites: false\n  \
         cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256]\n  \
         curve_preferences: [X25519, CurveP256]\n\
         http_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: DENY\n    X-Content-Type-Options: ''\n\
         rate_limit:\n  interval: 1s\n  burst: 10\n",
        d.path(),
    )
    .unwrap();
    assert_eq!(
        c.warnings,
        [
            "tls_server_config.min_version TLS10: TLS 1.2 is the lowest version served",
            "tls_server_config.client_auth_type RequestClientCert: client certificates are not \
             requested (an unverified certificate grants nothing)",
            "http_server_config.http2: ignored, famfs-daemon serves HTTP/1.1 only",
            "rate_limit: ignored, famfs-daemon limits connections per client instead \
             (--http-max-connections-per-client)",
        ]
    );
    // Blank headers are unset; the rest are sent as written.
    assert_eq!(c.headers.len(), 1);
    assert_eq!(
        (c.headers[0].0.as_str(), c.headers[0].1.to_str().unwrap()),
        ("x-frame-options", "DENY")
    );
    // TLS settings without a certificate: plain HTTP, said so.
    let c = parse("tls_server_config:\n  min_version: TLS13\n", d.path()).unwrap();
    assert!(!c.is_tls());
    assert_eq!(
        c.warnings,
        [
            "tls_server_config: no certificate configured, serving plain HTTP; the TLS settings are ignored"
        ]
    );
}
