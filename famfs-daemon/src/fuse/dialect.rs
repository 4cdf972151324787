//! famfs dialects: which opcode numbers, INIT bit, GET_FMAP request body and reply-size rule a famfs
//! kernel speaks (protocol spec §4–§6.5), as configuration (`off | rfc-v2 | v3 | auto`) and one table
//! keyed by dialect, plus the rule that decides at INIT whether famfs mode is on.
//!
//! Owns: [`DialectConfig`], [`Dialect`], the [`DIALECTS`] table, [`resolve`] (spec §5 rules 3–4) and the
//! GET_FMAP size decision ([`DialectSpec::fmap_size`]). Must not do wire I/O or encode replies (the
//! session does; `fmap` serializes).

use std::{fmt, path::Path, str::FromStr};

use super::abi::init_flags;

/// The configured dialect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DialectConfig {
    /// famfs never negotiated; 53/54/55 are ordinary (unimplemented) opcodes.
    #[default]
    Off,
    /// RFC V2 (2025-07): GET_FMAP 53 / GET_DAXDEV 54, INIT bit 42.
    RfcV2,
    /// V3..V10 (2026-01..03): GET_FMAP 54 / GET_DAXDEV 55, INIT bit 43.
    V3,
    /// Decide at INIT from `/proc/kallsyms` and the offered bits (spec §5 rule 3).
    Auto,
}

impl DialectConfig {
    pub const ALL: [DialectConfig; 4] = [
        DialectConfig::Off,
        DialectConfig::RfcV2,
        DialectConfig::V3,
        DialectConfig::Auto,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DialectConfig::Off => "off",
            DialectConfig::RfcV2 => "rfc-v2",
            DialectConfig::V3 => "v3",
            DialectConfig::Auto => "auto",
        }
    }
}

impl fmt::Display for DialectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DialectConfig {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DialectConfig::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| format!("famfs dialect {s:?}: expected one of off, rfc-v2, v3, auto"))
    }
}

/// A concrete famfs dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    RfcV2,
    V3,
}

/// What the GET_FMAP request carries after the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FmapRequestBody {
    /// `{u32 size, u32 pad}`: the kernel's reply buffer size (`len` 48).
    SizeU32,
    /// Nothing (`len` 40); the kernel's buffer is one page.
    None,
}

/// What happens when the serialized fmap does not fit the kernel's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeHandling {
    /// Reply exactly 4 bytes (the needed size as u32); the kernel reallocates and resends once.
    NeededSizeRetry,
    /// No retry exists: reply an error (EINVAL) and the kernel fails the open.
    FixedNoRetry,
}

/// Everything that differs between dialects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DialectSpec {
    pub dialect: Dialect,
    /// The configuration name.
    pub name: &'static str,
    /// The famfs INIT capability bit (as a 64-bit mask).
    pub init_bit: u64,
    pub get_fmap: u32,
    pub get_daxdev: u32,
    pub fmap_request: FmapRequestBody,
    pub size_handling: SizeHandling,
    /// The kernel's buffer when the request does not say (one x86_64 page).
    pub default_limit: u32,
}

/// The one table: everything keyed by dialect.
pub static DIALECTS: [DialectSpec; 2] = [
    DialectSpec {
        dialect: Dialect::RfcV2,
        name: "rfc-v2",
        init_bit: init_flags::FAMFS_DAX_FMAP_RFC,
        get_fmap: 53,
        get_daxdev: 54,
        fmap_request: FmapRequestBody::SizeU32,
        size_handling: SizeHandling::NeededSizeRetry,
        default_limit: 4096,
    },
    DialectSpec {
        dialect: Dialect::V3,
        name: "v3",
        init_bit: init_flags::FAMFS_DAX_FMAP_V3,
        get_fmap: 54,
        get_daxdev: 55,
        fmap_request: FmapRequestBody::None,
        size_handling: SizeHandling::FixedNoRetry,
        default_limit: 4096,
    },
];

impl Dialect {
    pub fn spec(self) -> &'static DialectSpec {
        match self {
            Dialect::RfcV2 => &DIALECTS[0],
            Dialect::V3 => &DIALECTS[1],
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spec().name)
    }
}

/// The outcome of fitting a serialized fmap of `total` bytes into the kernel's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FmapSize {
    /// Send the whole fmap.
    Full,
    /// Send only the needed size (4-byte body); the kernel retries once with a larger buffer.
    NeededSize(u32),
    /// Does not fit and the dialect has no retry: reply EINVAL.
    TooBig,
}

impl DialectSpec {
    /// The kernel's reply buffer size for a GET_FMAP whose body (after the 40-byte header) is `body`:
    /// the u32 at body offset 0 when there are ≥ 8 body bytes (parsed whatever the dialect says, the
    /// spec's defensive rule), else `default_limit`.
    pub fn fmap_limit(&self, body: &[u8]) -> u32 {
        match body.get(..4) {
            Some(b) if body.len() >= 8 => {
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                u32::from_ne_bytes(a)
            }
            _ => self.default_limit,
        }
    }

    /// Decide how to answer a GET_FMAP whose serialized fmap is `total` bytes against `limit`.
    pub fn fmap_size(&self, limit: u32, total: usize) -> FmapSize {
        if total <= limit as usize {
            return FmapSize::Full;
        }
        match (self.size_handling, u32::try_from(total)) {
            (SizeHandling::NeededSizeRetry, Ok(t)) => FmapSize::NeededSize(t),
            _ => FmapSize::TooBig,
        }
    }
}

/// Why famfs mode is on or off for a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The configuration says `off`.
    ConfiguredOff,
    /// A dialect was configured but no daxdev is: famfs mode needs one.
    NoDaxdev,
    /// The configured dialect's bit was offered: on.
    Explicit,
    /// The configured dialect's INIT bit was not offered by the kernel (warning).
    BitNotOffered,
    /// `auto`: no `famfs_fuse_iomap_begin` in kallsyms.
    AutoNoKernelSupport,
    /// `auto`: the kernel has famfs and offered bit 43: V3.
    AutoV3,
    /// `auto`: only bit 42 offered, which is also upstream REQUEST_TIMEOUT: not enabled, configure
    /// `rfc-v2` explicitly (warning).
    AutoAmbiguous,
    /// `auto`: the kernel has famfs but offered neither bit.
    AutoNotOffered,
}

impl Reason {
    /// True when the decision deserves a warning (the operator asked for something not granted).
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            Reason::NoDaxdev | Reason::BitNotOffered | Reason::AutoAmbiguous
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ConfiguredOff => "famfs dialect configured off",
            Reason::NoDaxdev => "no daxdev configured; famfs mode needs one",
            Reason::Explicit => "configured dialect's INIT bit offered by the kernel",
            Reason::BitNotOffered => "the kernel did not offer the configured dialect's INIT bit",
            Reason::AutoNoKernelSupport => "no famfs_fuse_iomap_begin in kallsyms",
            Reason::AutoV3 => "kernel has famfs and offered bit 43",
            Reason::AutoAmbiguous => {
                "only bit 42 offered (also upstream REQUEST_TIMEOUT): ambiguous, configure rfc-v2 explicitly"
            }
            Reason::AutoNotOffered => "kernel has famfs but offered no famfs INIT bit",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub dialect: Option<Dialect>,
    pub reason: Reason,
}

/// Decide the famfs dialect at INIT. `offered` is the kernel's 64-bit flag set; `kernel_has_famfs` is
/// called only for `auto` (normally [`kallsyms_has_famfs`]).
pub fn resolve(
    cfg: DialectConfig,
    offered: u64,
    daxdev_configured: bool,
    kernel_has_famfs: impl FnOnce() -> bool,
) -> Resolution {
    let off = |reason| Resolution {
        dialect: None,
        reason,
    };
    let explicit = |d: Dialect| {
        if offered & d.spec().init_bit != 0 {
            Resolution {
                dialect: Some(d),
                reason: Reason::Explicit,
            }
        } else {
            off(Reason::BitNotOffered)
        }
    };
    match cfg {
        DialectConfig::Off => off(Reason::ConfiguredOff),
        _ if !daxdev_configured => off(Reason::NoDaxdev),
        DialectConfig::RfcV2 => explicit(Dialect::RfcV2),
        DialectConfig::V3 => explicit(Dialect::V3),
        DialectConfig::Auto => {
            if !kernel_has_famfs() {
                off(Reason::AutoNoKernelSupport)
            } else if offered & init_flags::FAMFS_DAX_FMAP_V3 != 0 {
                Resolution {
                    dialect: Some(Dialect::V3),
                    reason: Reason::AutoV3,
                }
            } else if offered & init_flags::FAMFS_DAX_FMAP_RFC != 0 {
                off(Reason::AutoAmbiguous)
            } else {
                off(Reason::AutoNotOffered)
            }
        }
    }
}

/// The symbol the famfs CLI itself probes for.
pub const FAMFS_KALLSYMS_SYMBOL: &str = "famfs_fuse_iomap_begin";

/// True when `kallsyms` (normally `/proc/kallsyms`) lists `famfs_fuse_iomap_begin` (in vmlinux or in
/// the fuse module). An unreadable file counts as absent: without it famfs support cannot be detected.
pub fn kallsyms_has_famfs(kallsyms: &Path) -> bool {
    matches!(
        crate::util::kallsyms::has_symbol(kallsyms, FAMFS_KALLSYMS_SYMBOL),
        Ok(true)
    )
}
