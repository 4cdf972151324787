//! [`FormatError`]: why a superblock, log header or log entry failed its §10 check, with the check's
//! code, the device byte offset and the log index.
//!
//! Owns: the error type and its messages. Must not decode anything itself.

use thiserror::Error;

use super::{
    consts::{LOG_MAGIC, SB_MAGIC},
    superblock::{SB_OFF_ALLOC_UNIT, SB_OFF_CRC, SB_OFF_MAGIC, SB_OFF_VERSION},
};

/// A structure failed a check of §10. Every variant names the check (S1...E1), what was found and
/// where (device byte offset, log index).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatError {
    #[error(
        "[S1] not a famfs filesystem: superblock magic {found:#x} at byte offset 0x0 (expected {SB_MAGIC:#x})"
    )]
    SbMagic { found: u64 },
    #[error("[S2] wrong superblock version {found} at byte offset 0x8 (this tool reads 47 and 48)")]
    SbVersion { found: u64 },
    #[error(
        "[S3] corrupt superblock: CRC at byte offset 0x60 is {stored:#x}, CRC of bytes [0x0, 0x60) is {computed:#x}"
    )]
    SbCrc { stored: u64, computed: u64 },
    #[error(
        "[S4] invalid superblock: alloc unit {found:#x} at byte offset 0x20 (expected 0x200000 or 0x1000)"
    )]
    SbAllocUnit { found: u64 },
    #[error("[S5] invalid superblock geometry: {field} at byte offset {offset:#x}: {problem}")]
    SbGeometry {
        field: &'static str,
        offset: u64,
        problem: String,
    },
    #[error(
        "[H1] bad log header magic {found:#x} at byte offset {offset:#x} (expected {LOG_MAGIC:#x})"
    )]
    LogMagic { offset: u64, found: u64 },
    #[error(
        "[H2] corrupt log header: CRC at byte offset {offset:#x} is {stored:#x}, CRC of the 24 bytes before it is {computed:#x}"
    )]
    LogCrc {
        offset: u64,
        stored: u64,
        computed: u64,
    },
    #[error("[H3] inconsistent log header: {field} at byte offset {offset:#x}: {problem}")]
    LogHeader {
        field: &'static str,
        offset: u64,
        problem: String,
    },
    #[error(
        "[E1] corrupt log entry {index} at byte offset {offset:#x}: CRC is {stored:#x}, CRC of its first 536 bytes is {computed:#x}"
    )]
    EntryCrc {
        index: u64,
        offset: u64,
        stored: u64,
        computed: u64,
    },
    #[error(
        "[E1] log entry {index} at byte offset {offset:#x} has seqnum {found} (must equal its index)"
    )]
    EntrySeqnum { index: u64, offset: u64, found: u64 },
    #[error("{what} at byte offset {offset:#x} needs {need} bytes, only {have} available")]
    Truncated {
        what: &'static str,
        offset: u64,
        need: u64,
        have: u64,
    },
    #[error("cannot encode {what} in a version {version} log")]
    Unencodable { what: &'static str, version: u64 },
}

impl FormatError {
    /// The §10 check this error belongs to ("S1" ... "E1"), or "IO" for truncation/encoding problems.
    pub fn code(&self) -> &'static str {
        match self {
            FormatError::SbMagic { .. } => "S1",
            FormatError::SbVersion { .. } => "S2",
            FormatError::SbCrc { .. } => "S3",
            FormatError::SbAllocUnit { .. } => "S4",
            FormatError::SbGeometry { .. } => "S5",
            FormatError::LogMagic { .. } => "H1",
            FormatError::LogCrc { .. } => "H2",
            FormatError::LogHeader { .. } => "H3",
            FormatError::EntryCrc { .. } | FormatError::EntrySeqnum { .. } => "E1",
            FormatError::Truncated { .. } => "TRUNCATED",
            FormatError::Unencodable { .. } => "ENCODE",
        }
    }

    /// Device byte offset the error points at, when it has one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            FormatError::SbMagic { .. } => Some(SB_OFF_MAGIC as u64),
            FormatError::SbVersion { .. } => Some(SB_OFF_VERSION as u64),
            FormatError::SbCrc { .. } => Some(SB_OFF_CRC as u64),
            FormatError::SbAllocUnit { .. } => Some(SB_OFF_ALLOC_UNIT as u64),
            FormatError::SbGeometry { offset, .. }
            | FormatError::LogMagic { offset, .. }
            | FormatError::LogCrc { offset, .. }
            | FormatError::LogHeader { offset, .. }
            | FormatError::EntryCrc { offset, .. }
            | FormatError::EntrySeqnum { offset, .. }
            | FormatError::Truncated { offset, .. } => Some(*offset),
            FormatError::Unencodable { .. } => None,
        }
    }

    /// Log index the error belongs to (E1).
    pub fn index(&self) -> Option<u64> {
        match self {
            FormatError::EntryCrc { index, .. } | FormatError::EntrySeqnum { index, .. } => {
                Some(*index)
            }
            _ => None,
        }
    }
}
