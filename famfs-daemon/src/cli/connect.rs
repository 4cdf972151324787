//! How `famfs-trace top` and `snapshot` reach the daemon: its address, and for a daemon started with
//! `--web-config-file`, the CA to trust, a client certificate and basic-auth credentials. The password
//! is read from `$FAMFS_TRACE_PASSWORD` or `--password-file`, never from the command line (argv is
//! visible to every local user).
//!
//! Owns these flags and where the password comes from; the TLS and header work is `http::client`'s.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{
    http::client::{ClientOptions, ClientSecurity, security::host_of},
    top::collector,
};

/// Environment variable holding the basic-auth password of `--user`.
pub const PASSWORD_ENV: &str = "FAMFS_TRACE_PASSWORD";

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Daemon HTTP address (HOST:PORT).
    #[arg(long, default_value = super::DEFAULT_LISTEN)]
    pub addr: String,
    /// Use TLS, trusting the CA certificate(s) in FILE (PEM) for the daemon's certificate.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Name the daemon's certificate must be valid for (default: the host of --addr).
    #[arg(long, value_name = "NAME", requires = "ca_file")]
    pub server_name: Option<String>,
    /// Client certificate (PEM), for a daemon that requires one.
    #[arg(long, value_name = "FILE", requires_all = ["client_key", "ca_file"])]
    pub client_cert: Option<PathBuf>,
    /// Key of --client-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Basic-auth user; the password comes from $FAMFS_TRACE_PASSWORD or --password-file.
    #[arg(long)]
    pub user: Option<String>,
    /// File whose first line is the basic-auth password (instead of $FAMFS_TRACE_PASSWORD).
    #[arg(long, value_name = "FILE", requires = "user")]
    pub password_file: Option<PathBuf>,
}

impl ConnectArgs {
    /// The password of `--user`: the file's first line, else the environment variable.
    fn password(&self) -> Result<Option<String>> {
        if self.user.is_none() {
            return Ok(None);
        }
        if let Some(f) = &self.password_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("--password-file {}", f.display()))?;
            let line = text.lines().next().unwrap_or("");
            return Ok(Some(line.to_string()));
        }
        match std::env::var(PASSWORD_ENV) {
            Ok(p) => Ok(Some(p)),
            Err(_) => {
                bail!("--user needs a password: set ${PASSWORD_ENV} or give --password-file")
            }
        }
    }

    /// The daemon's address and what the client needs to talk to it.
    pub fn resolve(&self) -> Result<(SocketAddr, ClientSecurity)> {
        let addr = collector::resolve(&self.addr).map_err(anyhow::Error::msg)?;
        let opts = ClientOptions {
            ca_file: self.ca_file.clone(),
            server_name: self.server_name.clone(),
            cert_file: self.client_cert.clone(),
            key_file: self.client_key.clone(),
            user: self.user.clone(),
            password: self.password()?,
        };
        let security =
            ClientSecurity::load(&opts, host_of(&self.addr)).map_err(anyhow::Error::msg)?;
        Ok((addr, security))
    }
}
