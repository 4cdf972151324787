//! Host role (§11): this host's system UUID (text in `/opt/famfs/system_uuid`, shared with the C tools),
//! and whether it is the filesystem's master (may append and mkfs) or a client (read-only).
//!
//! The UUID file path can be overridden with the `FAMFS_SYSTEM_UUID_PATH` environment variable or an
//! explicit option, so tests never depend on the host's file. Owns reading/creating that file and
//! random UUIDs. Must not touch images.

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::format::{format_uuid, parse_uuid};

/// Where famfs keeps this host's UUID.
pub const DEFAULT_SYSTEM_UUID_PATH: &str = "/opt/famfs/system_uuid";
/// Environment variable overriding [`DEFAULT_SYSTEM_UUID_PATH`].
pub const SYSTEM_UUID_ENV: &str = "FAMFS_SYSTEM_UUID_PATH";

/// Host role (in memory only; the numbers are famfs's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// This host created the filesystem: it may append to the log.
    Master = 1,
    /// Another host's filesystem (or this host's UUID is unreadable): read-only.
    Client = 2,
    /// No valid superblock.
    NoSuper = 3,
    /// No device.
    NoDev = 4,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Client => "client",
            Role::NoSuper => "nosuper",
            Role::NoDev => "nodev",
        }
    }
}

/// Role errors.
#[derive(Debug, Error)]
pub enum RoleError {
    #[error("{path}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a UUID: {text:?}")]
    Parse { path: String, text: String },
}

/// Where this host's UUID lives: `explicit`, else `$FAMFS_SYSTEM_UUID_PATH`, else the famfs default.
pub fn system_uuid_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os(SYSTEM_UUID_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_SYSTEM_UUID_PATH),
    }
}

/// Read this host's UUID from `path`.
pub fn read_host_uuid(path: &Path) -> Result<[u8; 16], RoleError> {
    let text = std::fs::read_to_string(path).map_err(|source| RoleError::Io {
        path: path.display().to_string(),
        op: "read",
        source,
    })?;
    parse_uuid(&text).ok_or_else(|| RoleError::Parse {
        path: path.display().to_string(),
        text: text.chars().take(64).collect(),
    })
}

/// This host's UUID for deciding a role: `None` when the file ([`system_uuid_path`] of `explicit`) is
/// missing or unreadable. That is not an error: §11 makes a host with an unknown UUID a client.
pub fn host_uuid_for_role(explicit: Option<&Path>) -> Option<[u8; 16]> {
    read_host_uuid(&system_uuid_path(explicit)).ok()
}

/// Read this host's UUID, creating the file with a random UUID if it does not exist (as famfs does on
/// first use). Used by mkfs.
pub fn host_uuid_or_create(path: &Path) -> Result<[u8; 16], RoleError> {
    match std::fs::metadata(path) {
        Ok(_) => read_host_uuid(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let u = random_uuid().map_err(|source| RoleError::Io {
                path: "/dev/urandom".into(),
                op: "read",
                source,
            })?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| RoleError::Io {
                    path: dir.display().to_string(),
                    op: "create directory",
                    source,
                })?;
            }
            std::fs::write(path, format!("{}\n", format_uuid(&u))).map_err(|source| {
                RoleError::Io {
                    path: path.display().to_string(),
                    op: "write",
                    source,
                }
            })?;
            Ok(u)
        }
        Err(source) => Err(RoleError::Io {
            path: path.display().to_string(),
            op: "stat",
            source,
        }),
    }
}

/// A random (version 4, RFC 4122 variant) UUID from the kernel's CSPRNG.
pub fn random_uuid() -> std::io::Result<[u8; 16]> {
    use std::io::Read;
    let mut u = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut u)?;
    Ok(super::format::uuid_v4_from(u))
}

/// MASTER when the host UUID equals the superblock's `ts_system_uuid` byte for byte, CLIENT otherwise
/// (including an unknown host UUID).
pub fn role_for(sb_system_uuid: &[u8; 16], host: Option<&[u8; 16]>) -> Role {
    match host {
        Some(h) if h == sb_system_uuid => Role::Master,
        _ => Role::Client,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_round_trip_and_rejects() {
        let u = [
            0x3f, 0x2d, 0x9c, 0x1e, 0x7b, 0x4a, 0x4e, 0x8f, 0x9a, 0x61, 0x0c, 0x5d, 0x2e, 0x7f,
            0x8a, 0x93,
        ];
        assert_eq!(format_uuid(&u), "3f2d9c1e-7b4a-4e8f-9a61-0c5d2e7f8a93");
        assert_eq!(
            parse_uuid(" 3F2D9C1E-7B4A-4E8F-9A61-0C5D2E7F8A93\n"),
            Some(u)
        );
        for bad in [
            "",
            "3f2d9c1e7b4a4e8f9a610c5d2e7f8a93",
            "3f2d9c1e-7b4a-4e8f-9a61-0c5d2e7f8a9",
            "3f2d9c1e-7b4a-4e8f-9a61_0c5d2e7f8a93",
            "3f2d9c1e-7b4a-4e8f-9a61-0c5d2e7f8a9g",
            "3f2d9c1e-7b4a-4e8f-9a61-0c5d2e7f8é3",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn host_uuid_created_once_then_read_and_role() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/system_uuid");
        let a = host_uuid_or_create(&p).unwrap();
        assert_eq!(a[6] >> 4, 4);
        assert_eq!(a[8] >> 6, 2);
        let b = host_uuid_or_create(&p).unwrap();
        assert_eq!(a, b);
        assert_eq!(read_host_uuid(&p).unwrap(), a);
        assert_eq!(role_for(&a, Some(&a)), Role::Master);
        let mut other = a;
        other[15] ^= 1;
        assert_eq!(role_for(&other, Some(&a)), Role::Client);
        assert_eq!(role_for(&a, None), Role::Client);
        std::fs::write(&p, "garbage").unwrap();
        assert!(matches!(read_host_uuid(&p), Err(RoleError::Parse { .. })));
        assert_eq!(
            system_uuid_path(Some(Path::new("/x/y"))),
            PathBuf::from("/x/y")
        );
    }
}
