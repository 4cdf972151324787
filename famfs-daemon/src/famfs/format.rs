//! famfs on-media structures (superblock versions 47 and 48): constants, typed views, checked decoders
//! and byte-exact encoders. See `/work/shared/docs/famfs-format.md` (§ numbers below refer to it).
//!
//! Owns: byte layout, CRC rules (§5), the superblock (S1-S5) and log-header (H1-H3) checks, entry
//! framing (E1), and the per-entry path (E3) and fmap (F1-F3) checks that need nothing but the entry and
//! the device geometry. Must not touch memory maps, files or the namespace: callers hand in byte slices.
//!
//! Everything is explicit little-endian (de)serialization at the offsets of the C layout; encoders start
//! from a zeroed buffer so padding and unused union bytes are zero, and compute CRCs last.

use thiserror::Error;

// ---------------------------------------------------------------------------------------------------
// Constants (§3)

/// `ts_magic`.
pub const SB_MAGIC: u64 = 0x87b2_82ff;
/// Superblock version 47 (Aug 2024 – 2026-06).
pub const VERSION_47: u64 = 47;
/// Superblock version 48 (current; what we write unless asked otherwise).
pub const VERSION_48: u64 = 48;
/// The version written by default.
pub const CURRENT_VERSION: u64 = VERSION_48;
/// OMF major version written by mkfs (checked on read, S5).
pub const OMF_MAJOR: u32 = 2;
/// Log offset = size of the superblock region.
pub const LOG_OFFSET: u64 = 0x20_0000;
/// Size of the superblock region (`.meta/.superblock`).
pub const SB_REGION_SIZE: u64 = LOG_OFFSET;
/// Default and minimum log length.
pub const DEFAULT_LOG_LEN: u64 = 0x80_0000;
/// Minimum log length.
pub const MIN_LOG_LEN: u64 = DEFAULT_LOG_LEN;
/// Allocation unit (2 MiB). Every extent offset and length must be a multiple of it (F2).
pub const ALLOC_UNIT: u64 = 0x20_0000;
/// The other `ts_alloc_unit` value a reader accepts (S4).
pub const ALT_ALLOC_UNIT: u64 = 4096;
/// Minimum device size for mkfs.
pub const MIN_DEV_SIZE: u64 = 4 << 30;
/// `famfs_log_magic`.
pub const LOG_MAGIC: u64 = 0xbad_cafe_f00d;

/// Byte sizes of the C structures (§1).
pub const SB_SIZE: usize = 200;
pub const DAXDEV_SIZE: usize = 88;
pub const LOG_HEADER_SIZE: usize = 48;
pub const ENTRY_SIZE: usize = 544;
pub const ENTRY_BODY_SIZE: usize = 520;
pub const FMAP_SIZE: usize = 416;
pub const MKDIR_BODY_SIZE: usize = 92;
pub const ADD_DAXDEV_BODY_SIZE: usize = 32;
pub const SIMPLE_EXT_SIZE: usize = 24;
pub const IEXT_SIZE: usize = 400;

/// `fm_relpath` / `md_relpath` size including the NUL (79 usable bytes).
pub const RELPATH_LEN: usize = 80;
/// Maximum simple extents per FILE entry.
pub const MAX_SIMPLE_EXTENTS: usize = 16;
/// Maximum strips of an interleaved extent.
pub const MAX_STRIPS: usize = 16;
/// Maximum allocator buckets for interleaved allocation.
pub const MAX_BUCKETS: u32 = 64;
/// `dd_daxdev` size.
pub const DAXDEV_NAME_LEN: usize = 64;

/// `fm_flags` values.
pub const FILE_FLAG_ALL_HOSTS_RO: u32 = 1;
pub const FILE_FLAG_ALL_HOSTS_RW: u32 = 2;

/// Entry type codes (u32). 0-2 are the same in v47 and v48.
pub const ENTRY_FILE: u32 = 0;
pub const ENTRY_MKDIR: u32 = 1;
pub const ENTRY_DELETE: u32 = 2;
/// v48: ADD_DAXDEV. v47: INVALID.
pub const ENTRY_ADD_DAXDEV: u32 = 3;
pub const ENTRY_INVALID_V47: u32 = 3;
pub const ENTRY_INVALID_V48: u32 = 4;

/// Extent type codes (u32).
pub const EXT_SIMPLE: u32 = 0;
pub const EXT_INTERLEAVE: u32 = 1;

// Superblock field offsets.
const SB_OFF_MAGIC: usize = 0;
const SB_OFF_VERSION: usize = 8;
const SB_OFF_LOG_OFFSET: usize = 16;
const SB_OFF_LOG_LEN: usize = 24;
const SB_OFF_ALLOC_UNIT: usize = 32;
const SB_OFF_OMF_MAJOR: usize = 40;
const SB_OFF_OMF_MINOR: usize = 44;
const SB_OFF_UUID: usize = 48;
const SB_OFF_DEV_UUID: usize = 64;
const SB_OFF_SYSTEM_UUID: usize = 80;
/// Superblock CRC slot; the CRC covers `[0, SB_OFF_CRC)`.
pub const SB_OFF_CRC: usize = 96;
const SB_OFF_FLAGS: usize = 104;
const SB_OFF_DD_SIZE: usize = 112;
const SB_OFF_DD_UUID: usize = 120;
const SB_OFF_DD_NAME: usize = 136;

// Log header field offsets.
const LH_OFF_MAGIC: usize = 0;
const LH_OFF_LEN: usize = 8;
const LH_OFF_LAST_INDEX: usize = 16;
/// Log header CRC slot; the CRC covers `[0, LH_OFF_CRC)`.
pub const LH_OFF_CRC: usize = 24;
/// `famfs_log_next_seqnum`; `famfs_log_next_index` follows at +8. Appends rewrite these 16 bytes.
pub const LH_OFF_NEXT_SEQNUM: usize = 32;
const LH_OFF_NEXT_INDEX: usize = 40;

// Entry field offsets.
const E_OFF_SEQNUM: usize = 0;
const E_OFF_TYPE: usize = 8;
/// Entry CRC slot; the CRC covers `[0, E_OFF_CRC)`.
pub const E_OFF_CRC: usize = 536;
const F_OFF_SIZE: usize = 16;
const F_OFF_FLAGS: usize = 24;
const F_OFF_UID: usize = 28;
const F_OFF_GID: usize = 32;
const F_OFF_MODE: usize = 36;
const F_OFF_RELPATH: usize = 40;
const F_OFF_EXT_TYPE: usize = 120;
const F_OFF_NEXTENTS: usize = 128;
const F_OFF_UNION: usize = 136;
const F_OFF_IE_NSTRIPS: usize = 136;
const F_OFF_IE_CHUNK: usize = 144;
const F_OFF_IE_STRIPS: usize = 152;
const M_OFF_UID: usize = 16;
const M_OFF_GID: usize = 20;
const M_OFF_MODE: usize = 24;
const M_OFF_RELPATH: usize = 28;
const D_OFF_SIZE: usize = 16;
const D_OFF_UUID: usize = 24;
const D_OFF_INDEX: usize = 40;

// ---------------------------------------------------------------------------------------------------
// Little-endian helpers over fixed-size buffers (offsets are constants inside the buffer).

fn get_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

fn get_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn get_arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[off..off + N]);
    a
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// CRC-32/ISO-HDLC (zlib `crc32(0, ...)`), widened to the u64 slot.
pub fn crc(bytes: &[u8]) -> u64 {
    u64::from(crc32fast::hash(bytes))
}

/// Canonical lowercase 8-4-4-4-12 text of a raw UUID (what `uuid_unparse` prints).
pub fn format_uuid(u: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Parse `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (case-insensitive, surrounding whitespace ignored).
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let s = s.trim();
    if s.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut n = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if bytes[i] != b'-' {
                return None;
            }
            i += 1;
            continue;
        }
        let hi = (bytes[i] as char).to_digit(16)?;
        let lo = (*bytes.get(i + 1)? as char).to_digit(16)?;
        *out.get_mut(n)? = (hi * 16 + lo) as u8;
        n += 1;
        i += 2;
    }
    (n == 16).then_some(out)
}

/// Byte offset of log entry `index` for a log at `log_offset` (saturating; for messages and bounds).
pub fn entry_offset(log_offset: u64, index: u64) -> u64 {
    log_offset
        .saturating_add(LOG_HEADER_SIZE as u64)
        .saturating_add(index.saturating_mul(ENTRY_SIZE as u64))
}

/// Number of entry slots in a log of `log_len` bytes.
pub fn log_slots(log_len: u64) -> u64 {
    log_len.saturating_sub(LOG_HEADER_SIZE as u64) / ENTRY_SIZE as u64
}

// ---------------------------------------------------------------------------------------------------
// Errors

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

fn need<'a, const N: usize>(
    b: &'a [u8],
    what: &'static str,
    offset: u64,
) -> Result<&'a [u8; N], FormatError> {
    b.get(..N)
        .and_then(|s| <&[u8; N]>::try_from(s).ok())
        .ok_or(FormatError::Truncated {
            what,
            offset,
            need: N as u64,
            have: b.len() as u64,
        })
}

// ---------------------------------------------------------------------------------------------------
// Superblock (§4.1, §4.2)

/// The 200-byte superblock with its daxdev descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub magic: u64,
    pub version: u64,
    pub log_offset: u64,
    pub log_len: u64,
    pub alloc_unit: u64,
    pub omf_major: u32,
    pub omf_minor: u32,
    pub uuid: [u8; 16],
    pub dev_uuid: [u8; 16],
    pub system_uuid: [u8; 16],
    /// As stored (decode checks it; encode recomputes it).
    pub crc: u64,
    /// Not covered by the CRC; opaque, preserved.
    pub sb_flags: u32,
    /// `ts_daxdev.dd_size`.
    pub dev_size: u64,
    /// `ts_daxdev.dd_uuid` (not set by mkfs).
    pub dd_uuid: [u8; 16],
    /// `ts_daxdev.dd_daxdev`: device path at mkfs time, NUL-padded (no NUL if 64 bytes or longer).
    pub dev_name: [u8; DAXDEV_NAME_LEN],
}

impl Superblock {
    /// A fresh superblock as mkfs writes it (CRC filled in).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        version: u64,
        log_len: u64,
        dev_size: u64,
        uuid: [u8; 16],
        dev_uuid: [u8; 16],
        system_uuid: [u8; 16],
        dev_name: &[u8],
    ) -> Superblock {
        let mut name = [0u8; DAXDEV_NAME_LEN];
        let n = dev_name.len().min(DAXDEV_NAME_LEN);
        name[..n].copy_from_slice(&dev_name[..n]);
        let mut sb = Superblock {
            magic: SB_MAGIC,
            version,
            log_offset: LOG_OFFSET,
            log_len,
            alloc_unit: ALLOC_UNIT,
            omf_major: OMF_MAJOR,
            omf_minor: if version == VERSION_47 { 1 } else { 2 },
            uuid,
            dev_uuid,
            system_uuid,
            crc: 0,
            sb_flags: 0,
            dev_size,
            dd_uuid: [0; 16],
            dev_name: name,
        };
        sb.crc = sb.computed_crc();
        sb
    }

    /// Field view of 200 bytes, no checks.
    pub fn parse(b: &[u8; SB_SIZE]) -> Superblock {
        Superblock {
            magic: get_u64(b, SB_OFF_MAGIC),
            version: get_u64(b, SB_OFF_VERSION),
            log_offset: get_u64(b, SB_OFF_LOG_OFFSET),
            log_len: get_u64(b, SB_OFF_LOG_LEN),
            alloc_unit: get_u64(b, SB_OFF_ALLOC_UNIT),
            omf_major: get_u32(b, SB_OFF_OMF_MAJOR),
            omf_minor: get_u32(b, SB_OFF_OMF_MINOR),
            uuid: get_arr(b, SB_OFF_UUID),
            dev_uuid: get_arr(b, SB_OFF_DEV_UUID),
            system_uuid: get_arr(b, SB_OFF_SYSTEM_UUID),
            crc: get_u64(b, SB_OFF_CRC),
            sb_flags: get_u32(b, SB_OFF_FLAGS),
            dev_size: get_u64(b, SB_OFF_DD_SIZE),
            dd_uuid: get_arr(b, SB_OFF_DD_UUID),
            dev_name: get_arr(b, SB_OFF_DD_NAME),
        }
    }

    /// Decode and apply S1-S5 (all but the device-length part of S5, see [`Geometry::new`]), in the
    /// reference order: magic, version (before the CRC), CRC, alloc unit, geometry.
    pub fn decode(bytes: &[u8]) -> Result<Superblock, FormatError> {
        let b = need::<SB_SIZE>(bytes, "superblock", 0)?;
        let sb = Superblock::parse(b);
        if sb.magic != SB_MAGIC {
            return Err(FormatError::SbMagic { found: sb.magic });
        }
        if sb.version != VERSION_47 && sb.version != VERSION_48 {
            return Err(FormatError::SbVersion { found: sb.version });
        }
        let computed = crc(&b[..SB_OFF_CRC]);
        if sb.crc != computed {
            return Err(FormatError::SbCrc {
                stored: sb.crc,
                computed,
            });
        }
        if sb.alloc_unit != ALLOC_UNIT && sb.alloc_unit != ALT_ALLOC_UNIT {
            return Err(FormatError::SbAllocUnit {
                found: sb.alloc_unit,
            });
        }
        let geo = |field, offset: usize, problem: String| FormatError::SbGeometry {
            field,
            offset: offset as u64,
            problem,
        };
        if sb.log_offset != LOG_OFFSET {
            return Err(geo(
                "ts_log_offset",
                SB_OFF_LOG_OFFSET,
                format!("{:#x}, expected {LOG_OFFSET:#x}", sb.log_offset),
            ));
        }
        if !sb.log_len.is_power_of_two() || sb.log_len < MIN_LOG_LEN {
            return Err(geo(
                "ts_log_len",
                SB_OFF_LOG_LEN,
                format!(
                    "{:#x} is not a power of 2 of at least {MIN_LOG_LEN:#x}",
                    sb.log_len
                ),
            ));
        }
        match sb.log_offset.checked_add(sb.log_len) {
            Some(end) if end <= sb.dev_size => {}
            _ => {
                return Err(geo(
                    "dd_size",
                    SB_OFF_DD_SIZE,
                    format!(
                        "device size {:#x} does not hold the log [{:#x}, +{:#x})",
                        sb.dev_size, sb.log_offset, sb.log_len
                    ),
                ));
            }
        }
        if sb.omf_major != OMF_MAJOR {
            return Err(geo(
                "ts_omf_ver_major",
                SB_OFF_OMF_MAJOR,
                format!("{}, expected {OMF_MAJOR}", sb.omf_major),
            ));
        }
        Ok(sb)
    }

    /// CRC over `[0, 96)` of the encoded fields.
    pub fn computed_crc(&self) -> u64 {
        let b = self.encode_fields();
        crc(&b[..SB_OFF_CRC])
    }

    fn encode_fields(&self) -> [u8; SB_SIZE] {
        let mut b = [0u8; SB_SIZE];
        put_u64(&mut b, SB_OFF_MAGIC, self.magic);
        put_u64(&mut b, SB_OFF_VERSION, self.version);
        put_u64(&mut b, SB_OFF_LOG_OFFSET, self.log_offset);
        put_u64(&mut b, SB_OFF_LOG_LEN, self.log_len);
        put_u64(&mut b, SB_OFF_ALLOC_UNIT, self.alloc_unit);
        put_u32(&mut b, SB_OFF_OMF_MAJOR, self.omf_major);
        put_u32(&mut b, SB_OFF_OMF_MINOR, self.omf_minor);
        b[SB_OFF_UUID..SB_OFF_UUID + 16].copy_from_slice(&self.uuid);
        b[SB_OFF_DEV_UUID..SB_OFF_DEV_UUID + 16].copy_from_slice(&self.dev_uuid);
        b[SB_OFF_SYSTEM_UUID..SB_OFF_SYSTEM_UUID + 16].copy_from_slice(&self.system_uuid);
        put_u32(&mut b, SB_OFF_FLAGS, self.sb_flags);
        put_u64(&mut b, SB_OFF_DD_SIZE, self.dev_size);
        b[SB_OFF_DD_UUID..SB_OFF_DD_UUID + 16].copy_from_slice(&self.dd_uuid);
        b[SB_OFF_DD_NAME..SB_OFF_DD_NAME + DAXDEV_NAME_LEN].copy_from_slice(&self.dev_name);
        b
    }

    /// The 200 stored bytes: padding zero, CRC computed over `[0, 96)` and written last.
    pub fn encode(&self) -> [u8; SB_SIZE] {
        let mut b = self.encode_fields();
        let c = crc(&b[..SB_OFF_CRC]);
        put_u64(&mut b, SB_OFF_CRC, c);
        b
    }

    /// `ts_uuid` as text, e.g. for an `fs_uuid` metric label.
    pub fn fs_uuid_string(&self) -> String {
        format_uuid(&self.uuid)
    }

    /// `dd_daxdev` up to its NUL (or all 64 bytes), lossily decoded.
    pub fn dev_name_lossy(&self) -> String {
        let n = self
            .dev_name
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(DAXDEV_NAME_LEN);
        String::from_utf8_lossy(&self.dev_name[..n]).into_owned()
    }
}

/// The validated layout the rest of the crate works with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub version: u64,
    pub log_offset: u64,
    pub log_len: u64,
    /// `dd_size`, checked to fit in the backing store.
    pub dev_size: u64,
    /// Entry slots in the log (`last_index + 1`).
    pub slots: u64,
}

impl Geometry {
    /// From a decoded superblock; S5 also requires `dd_size` to fit in the backing store of
    /// `device_len` bytes (a lying superblock must not make us address memory we do not have).
    pub fn new(sb: &Superblock, device_len: u64) -> Result<Geometry, FormatError> {
        if sb.dev_size > device_len {
            return Err(FormatError::SbGeometry {
                field: "dd_size",
                offset: SB_OFF_DD_SIZE as u64,
                problem: format!(
                    "device size {:#x} exceeds the image/device length {device_len:#x}",
                    sb.dev_size
                ),
            });
        }
        Ok(Geometry {
            version: sb.version,
            log_offset: sb.log_offset,
            log_len: sb.log_len,
            dev_size: sb.dev_size,
            slots: log_slots(sb.log_len),
        })
    }

    /// First byte of the data area (`log_offset + log_len`); everything below is metadata.
    pub fn data_start(&self) -> u64 {
        self.log_offset + self.log_len
    }

    /// Device byte offset of entry `index`.
    pub fn entry_offset(&self, index: u64) -> u64 {
        entry_offset(self.log_offset, index)
    }
}

// ---------------------------------------------------------------------------------------------------
// Log header (§4.3)

/// The 48-byte log header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogHeader {
    pub magic: u64,
    pub len: u64,
    pub last_index: u64,
    pub crc: u64,
    pub next_seqnum: u64,
    pub next_index: u64,
}

impl LogHeader {
    /// An empty log's header (what mkfs writes), CRC filled in.
    pub fn new(log_len: u64) -> LogHeader {
        let mut h = LogHeader {
            magic: LOG_MAGIC,
            len: log_len,
            last_index: log_slots(log_len).saturating_sub(1),
            crc: 0,
            next_seqnum: 0,
            next_index: 0,
        };
        h.crc = crc(&h.encode_fields()[..LH_OFF_CRC]);
        h
    }

    /// Field view, no checks.
    pub fn parse(b: &[u8; LOG_HEADER_SIZE]) -> LogHeader {
        LogHeader {
            magic: get_u64(b, LH_OFF_MAGIC),
            len: get_u64(b, LH_OFF_LEN),
            last_index: get_u64(b, LH_OFF_LAST_INDEX),
            crc: get_u64(b, LH_OFF_CRC),
            next_seqnum: get_u64(b, LH_OFF_NEXT_SEQNUM),
            next_index: get_u64(b, LH_OFF_NEXT_INDEX),
        }
    }

    /// Decode and apply H1-H3. `offset` is the header's device offset (for messages), `sb_log_len`
    /// the superblock's `ts_log_len`.
    pub fn decode(bytes: &[u8], offset: u64, sb_log_len: u64) -> Result<LogHeader, FormatError> {
        let b = need::<LOG_HEADER_SIZE>(bytes, "log header", offset)?;
        let h = LogHeader::parse(b);
        if h.magic != LOG_MAGIC {
            return Err(FormatError::LogMagic {
                offset,
                found: h.magic,
            });
        }
        let computed = crc(&b[..LH_OFF_CRC]);
        if h.crc != computed {
            return Err(FormatError::LogCrc {
                offset: offset + LH_OFF_CRC as u64,
                stored: h.crc,
                computed,
            });
        }
        let bad = |field, off: usize, problem: String| FormatError::LogHeader {
            field,
            offset: offset + off as u64,
            problem,
        };
        if h.len != sb_log_len {
            return Err(bad(
                "famfs_log_len",
                LH_OFF_LEN,
                format!(
                    "{:#x} differs from the superblock's log length {sb_log_len:#x}",
                    h.len
                ),
            ));
        }
        let slots = log_slots(h.len);
        if slots == 0 || h.last_index != slots - 1 {
            return Err(bad(
                "famfs_log_last_index",
                LH_OFF_LAST_INDEX,
                format!(
                    "{} but a log of {:#x} bytes has {slots} slots",
                    h.last_index, h.len
                ),
            ));
        }
        if h.next_index > slots {
            return Err(bad(
                "famfs_log_next_index",
                LH_OFF_NEXT_INDEX,
                format!("{} is past the last slot {}", h.next_index, slots - 1),
            ));
        }
        if h.next_seqnum != h.next_index {
            return Err(bad(
                "famfs_log_next_seqnum",
                LH_OFF_NEXT_SEQNUM,
                format!("{} differs from next_index {}", h.next_seqnum, h.next_index),
            ));
        }
        Ok(h)
    }

    fn encode_fields(&self) -> [u8; LOG_HEADER_SIZE] {
        let mut b = [0u8; LOG_HEADER_SIZE];
        put_u64(&mut b, LH_OFF_MAGIC, self.magic);
        put_u64(&mut b, LH_OFF_LEN, self.len);
        put_u64(&mut b, LH_OFF_LAST_INDEX, self.last_index);
        put_u64(&mut b, LH_OFF_NEXT_SEQNUM, self.next_seqnum);
        put_u64(&mut b, LH_OFF_NEXT_INDEX, self.next_index);
        b
    }

    /// The 48 stored bytes, CRC computed over `[0, 24)` (next_seqnum/next_index are not covered).
    pub fn encode(&self) -> [u8; LOG_HEADER_SIZE] {
        let mut b = self.encode_fields();
        let c = crc(&b[..LH_OFF_CRC]);
        put_u64(&mut b, LH_OFF_CRC, c);
        b
    }

    /// The log has no free slot.
    pub fn is_full(&self) -> bool {
        self.next_index > self.last_index
    }
}

// ---------------------------------------------------------------------------------------------------
// Paths (E3)

/// Why a relpath is rejected (E3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum PathProblem {
    #[error("relpath has no NUL within its 80 bytes")]
    NoNul,
    #[error("relpath is empty")]
    Empty,
    #[error("relpath is absolute (starts with '/')")]
    Absolute,
    #[error("relpath has a '.' or '..' component")]
    DotComponent,
    #[error("relpath has an empty component ('//' or a trailing '/')")]
    EmptyComponent,
    #[error("relpath is longer than 79 bytes")]
    TooLong,
    #[error("relpath contains a NUL byte")]
    InteriorNul,
}

/// Check a path relative to the mount root (E3 plus the [derived] component rules).
pub fn check_relpath(p: &[u8]) -> Result<(), PathProblem> {
    if p.is_empty() {
        return Err(PathProblem::Empty);
    }
    if p[0] == b'/' {
        return Err(PathProblem::Absolute);
    }
    if p.len() >= RELPATH_LEN {
        return Err(PathProblem::TooLong);
    }
    if p.contains(&0) {
        return Err(PathProblem::InteriorNul);
    }
    for c in p.split(|&c| c == b'/') {
        if c.is_empty() {
            return Err(PathProblem::EmptyComponent);
        }
        if c == b"." || c == b".." {
            return Err(PathProblem::DotComponent);
        }
    }
    Ok(())
}

/// An 80-byte NUL-padded relpath field, kept exactly as stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RelPath([u8; RELPATH_LEN]);

impl RelPath {
    /// A checked path for writing (≤ 79 bytes, so always NUL-terminated).
    pub fn new(path: &[u8]) -> Result<RelPath, PathProblem> {
        check_relpath(path)?;
        let mut raw = [0u8; RELPATH_LEN];
        raw[..path.len()].copy_from_slice(path);
        Ok(RelPath(raw))
    }

    /// The field as stored, unchecked.
    pub fn from_raw(raw: [u8; RELPATH_LEN]) -> RelPath {
        RelPath(raw)
    }

    pub fn raw(&self) -> &[u8; RELPATH_LEN] {
        &self.0
    }

    /// The path up to its NUL, checked (E3).
    pub fn checked(&self) -> Result<&[u8], PathProblem> {
        let n = self
            .0
            .iter()
            .position(|&c| c == 0)
            .ok_or(PathProblem::NoNul)?;
        let p = &self.0[..n];
        check_relpath(p)?;
        Ok(p)
    }

    /// For messages: up to the NUL (or all 80 bytes), lossily decoded.
    pub fn lossy(&self) -> String {
        let n = self.0.iter().position(|&c| c == 0).unwrap_or(RELPATH_LEN);
        String::from_utf8_lossy(&self.0[..n]).into_owned()
    }
}

impl std::fmt::Debug for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RelPath({:?})", self.lossy())
    }
}

// ---------------------------------------------------------------------------------------------------
// Extents and fmaps (§4.6-§4.8, §9)

/// A simple extent (24 bytes on media).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Extent {
    pub devindex: u64,
    pub offset: u64,
    pub len: u64,
}

/// A checked file map (what the namespace keeps and GET_FMAP serves).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fmap {
    /// The file is the concatenation of the extents in list order.
    Simple(Vec<Extent>),
    /// Chunks of `chunk_size` bytes go round-robin over the strips.
    Interleaved {
        chunk_size: u64,
        strips: Vec<Extent>,
    },
}

impl Fmap {
    /// Map a file offset to `(device offset, contiguous bytes from there)` (§9). The byte count stays
    /// within the extent (simple) or the chunk (interleaved) and within `file_size`. `None` past EOF or
    /// past the mapped space.
    pub fn resolve(&self, file_off: u64, file_size: u64) -> Option<(u64, u64)> {
        if file_off >= file_size {
            return None;
        }
        let to_eof = file_size - file_off;
        match self {
            Fmap::Simple(exts) => {
                let mut base = 0u64;
                for e in exts {
                    let end = base.checked_add(e.len)?;
                    if file_off < end {
                        let within = file_off - base;
                        let dev = e.offset.checked_add(within)?;
                        return Some((dev, (e.len - within).min(to_eof)));
                    }
                    base = end;
                }
                None
            }
            Fmap::Interleaved { chunk_size, strips } => {
                let c = *chunk_size;
                if c == 0 || strips.is_empty() {
                    return None;
                }
                let n = strips.len() as u64;
                let chunk_num = file_off / c;
                let chunk_off = file_off % c;
                let stripe = chunk_num / n;
                let strip = strips.get((chunk_num % n) as usize)?;
                let within = stripe.checked_mul(c)?.checked_add(chunk_off)?;
                if within >= strip.len {
                    return None;
                }
                let dev = strip.offset.checked_add(within)?;
                Some((dev, (c - chunk_off).min(strip.len - within).min(to_eof)))
            }
        }
    }

    /// The extents (simple) or strips (interleaved).
    pub fn extents(&self) -> &[Extent] {
        match self {
            Fmap::Simple(e) => e,
            Fmap::Interleaved { strips, .. } => strips,
        }
    }

    /// Sum of the extent/strip lengths (u128: cannot overflow).
    pub fn total_len(&self) -> u128 {
        self.extents().iter().map(|e| u128::from(e.len)).sum()
    }
}

/// The fmap field of a FILE entry as stored (counts unchecked; all 16 slots kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawFmap {
    Simple {
        nextents: u32,
        extents: [Extent; MAX_SIMPLE_EXTENTS],
    },
    Interleave {
        niext: u32,
        nstrips: u64,
        chunk_size: u64,
        strips: [Extent; MAX_STRIPS],
    },
    /// An extent type this tool does not know; the union bytes are kept verbatim.
    Unknown {
        ext_type: u32,
        count: u32,
        raw: [u8; IEXT_SIZE],
    },
}

/// Why a FILE entry's fmap is rejected (F1-F3). `k` is the extent/strip number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum FmapProblem {
    #[error("[F1] unknown extent type {0}")]
    ExtType(u32),
    #[error("[F1] simple extent count {0} (must be 1..=16)")]
    ExtentCount(u32),
    #[error("[F1] interleaved extent count {0} (must be 1)")]
    InterleaveCount(u32),
    #[error("[F1] strip count {0} (must be 1..=16)")]
    StripCount(u64),
    #[error("[F2] extent {k}: devindex {devindex} (must be 0)")]
    DevIndex { k: usize, devindex: u64 },
    #[error("[F2] extent {k}: offset 0 (only .meta/.superblock may start at 0)")]
    ZeroOffset { k: usize },
    #[error("[F2] extent {k}: offset {offset:#x} / length {len:#x} not multiples of 2 MiB")]
    Misaligned { k: usize, offset: u64, len: u64 },
    #[error("[F2] extent {k}: [{offset:#x}, +{len:#x}) ends past the device size {dev_size:#x}")]
    PastDevice {
        k: usize,
        offset: u64,
        len: u64,
        dev_size: u64,
    },
    #[error(
        "[F2] extent {k}: offset {offset:#x} overlaps the superblock/log area [0, {data_start:#x})"
    )]
    InMetadata {
        k: usize,
        offset: u64,
        data_start: u64,
    },
    #[error("[F3] file size {size:#x} exceeds the mapped space {mapped:#x}")]
    SizeExceedsExtents { size: u64, mapped: u128 },
    #[error("[F3] chunk size {0:#x} is not a power of 2 and a multiple of 2 MiB")]
    ChunkSize(u64),
    #[error("[F3] strip {k} length {len:#x} differs from strip 0 length {first:#x}")]
    UnequalStrips { k: usize, len: u64, first: u64 },
}

impl FmapProblem {
    pub fn code(&self) -> &'static str {
        match self {
            FmapProblem::ExtType(_)
            | FmapProblem::ExtentCount(_)
            | FmapProblem::InterleaveCount(_)
            | FmapProblem::StripCount(_) => "F1",
            FmapProblem::DevIndex { .. }
            | FmapProblem::ZeroOffset { .. }
            | FmapProblem::Misaligned { .. }
            | FmapProblem::PastDevice { .. }
            | FmapProblem::InMetadata { .. } => "F2",
            FmapProblem::SizeExceedsExtents { .. }
            | FmapProblem::ChunkSize(_)
            | FmapProblem::UnequalStrips { .. } => "F3",
        }
    }
}

fn check_extent(k: usize, e: &Extent, geo: &Geometry) -> Result<(), FmapProblem> {
    if e.devindex != 0 {
        return Err(FmapProblem::DevIndex {
            k,
            devindex: e.devindex,
        });
    }
    if e.offset == 0 {
        return Err(FmapProblem::ZeroOffset { k });
    }
    if !e.offset.is_multiple_of(ALLOC_UNIT) || !e.len.is_multiple_of(ALLOC_UNIT) {
        return Err(FmapProblem::Misaligned {
            k,
            offset: e.offset,
            len: e.len,
        });
    }
    match e.offset.checked_add(e.len) {
        Some(end) if end <= geo.dev_size => {}
        _ => {
            return Err(FmapProblem::PastDevice {
                k,
                offset: e.offset,
                len: e.len,
                dev_size: geo.dev_size,
            });
        }
    }
    if e.offset < geo.data_start() {
        return Err(FmapProblem::InMetadata {
            k,
            offset: e.offset,
            data_start: geo.data_start(),
        });
    }
    Ok(())
}

impl RawFmap {
    /// The on-media form of a checked fmap (F1 counts enforced so it can be stored).
    pub fn from_fmap(f: &Fmap) -> Result<RawFmap, FmapProblem> {
        match f {
            Fmap::Simple(exts) => {
                if exts.is_empty() || exts.len() > MAX_SIMPLE_EXTENTS {
                    return Err(FmapProblem::ExtentCount(exts.len() as u32));
                }
                let mut extents = [Extent::default(); MAX_SIMPLE_EXTENTS];
                extents[..exts.len()].copy_from_slice(exts);
                Ok(RawFmap::Simple {
                    nextents: exts.len() as u32,
                    extents,
                })
            }
            Fmap::Interleaved { chunk_size, strips } => {
                if strips.is_empty() || strips.len() > MAX_STRIPS {
                    return Err(FmapProblem::StripCount(strips.len() as u64));
                }
                let mut s = [Extent::default(); MAX_STRIPS];
                s[..strips.len()].copy_from_slice(strips);
                Ok(RawFmap::Interleave {
                    niext: 1,
                    nstrips: strips.len() as u64,
                    chunk_size: *chunk_size,
                    strips: s,
                })
            }
        }
    }

    /// F1-F3 against `geo` for a file of `size` bytes; the checked [`Fmap`] on success.
    pub fn check(&self, size: u64, geo: &Geometry) -> Result<Fmap, FmapProblem> {
        match self {
            RawFmap::Simple { nextents, extents } => {
                let n = *nextents as usize;
                if n == 0 || n > MAX_SIMPLE_EXTENTS {
                    return Err(FmapProblem::ExtentCount(*nextents));
                }
                let used = &extents[..n];
                for (k, e) in used.iter().enumerate() {
                    check_extent(k, e, geo)?;
                }
                let mapped: u128 = used.iter().map(|e| u128::from(e.len)).sum();
                if u128::from(size) > mapped {
                    return Err(FmapProblem::SizeExceedsExtents { size, mapped });
                }
                Ok(Fmap::Simple(used.to_vec()))
            }
            RawFmap::Interleave {
                niext,
                nstrips,
                chunk_size,
                strips,
            } => {
                if *niext != 1 {
                    return Err(FmapProblem::InterleaveCount(*niext));
                }
                if *nstrips == 0 || *nstrips > MAX_STRIPS as u64 {
                    return Err(FmapProblem::StripCount(*nstrips));
                }
                if !chunk_size.is_power_of_two() || chunk_size % ALLOC_UNIT != 0 {
                    return Err(FmapProblem::ChunkSize(*chunk_size));
                }
                let used = &strips[..*nstrips as usize];
                for (k, e) in used.iter().enumerate() {
                    check_extent(k, e, geo)?;
                }
                let first = used[0].len;
                if let Some((k, e)) = used.iter().enumerate().find(|(_, e)| e.len != first) {
                    return Err(FmapProblem::UnequalStrips {
                        k,
                        len: e.len,
                        first,
                    });
                }
                let mapped = u128::from(first) * u128::from(*nstrips);
                if u128::from(size) > mapped {
                    return Err(FmapProblem::SizeExceedsExtents { size, mapped });
                }
                Ok(Fmap::Interleaved {
                    chunk_size: *chunk_size,
                    strips: used.to_vec(),
                })
            }
            RawFmap::Unknown { ext_type, .. } => Err(FmapProblem::ExtType(*ext_type)),
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Log entries (§4.4, §4.5, §4.9, §4.10)

/// FILE body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub size: u64,
    pub flags: u32,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits as stored (`mode & 0777` when famfs writes it).
    pub mode: u32,
    pub relpath: RelPath,
    pub fmap: RawFmap,
}

/// MKDIR body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MkdirEntry {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub relpath: RelPath,
}

/// ADD_DAXDEV body (v48 only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddDaxdevEntry {
    pub size: u64,
    pub uuid: [u8; 16],
    pub index: u32,
}

/// An entry's typed body.
// The FILE variant is ~530 bytes; entries are decoded onto the stack during replay, and boxing it would
// cost an allocation per entry.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryBody {
    File(FileEntry),
    Mkdir(MkdirEntry),
    AddDaxdev(AddDaxdevEntry),
    /// DELETE, INVALID or an unknown type code; the body is not interpreted (E2).
    Other {
        etype: u32,
    },
}

impl EntryBody {
    /// The stored type code for `version`, or an error for a body the version cannot hold.
    pub fn type_code(&self, version: u64) -> Result<u32, FormatError> {
        Ok(match self {
            EntryBody::File(_) => ENTRY_FILE,
            EntryBody::Mkdir(_) => ENTRY_MKDIR,
            EntryBody::AddDaxdev(_) if version == VERSION_47 => {
                return Err(FormatError::Unencodable {
                    what: "an ADD_DAXDEV entry",
                    version,
                });
            }
            EntryBody::AddDaxdev(_) => ENTRY_ADD_DAXDEV,
            EntryBody::Other { etype } => *etype,
        })
    }
}

/// A decoded log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub seqnum: u64,
    pub body: EntryBody,
}

/// Human name of an entry type code for `version`.
pub fn entry_type_name(etype: u32, version: u64) -> &'static str {
    match (etype, version) {
        (ENTRY_FILE, _) => "FILE",
        (ENTRY_MKDIR, _) => "MKDIR",
        (ENTRY_DELETE, _) => "DELETE",
        (3, VERSION_47) => "INVALID",
        (3, _) => "ADD_DAXDEV",
        (4, VERSION_48) => "INVALID",
        _ => "unknown",
    }
}

fn parse_extents<const N: usize>(b: &[u8], off: usize) -> [Extent; N] {
    let mut out = [Extent::default(); N];
    for (k, e) in out.iter_mut().enumerate() {
        let o = off + SIMPLE_EXT_SIZE * k;
        *e = Extent {
            devindex: get_u64(b, o),
            offset: get_u64(b, o + 8),
            len: get_u64(b, o + 16),
        };
    }
    out
}

fn put_extents(b: &mut [u8], off: usize, exts: &[Extent]) {
    for (k, e) in exts.iter().enumerate() {
        let o = off + SIMPLE_EXT_SIZE * k;
        put_u64(b, o, e.devindex);
        put_u64(b, o + 8, e.offset);
        put_u64(b, o + 16, e.len);
    }
}

impl LogEntry {
    /// Check framing (E1: CRC over `[0, 536)` then `seqnum == index`) and decode the body. Never fails
    /// on body contents: path and fmap checks are separate ([`RelPath::checked`], [`RawFmap::check`]).
    /// `offset` is the entry's device offset (for messages).
    pub fn decode(
        raw: &[u8; ENTRY_SIZE],
        index: u64,
        version: u64,
        offset: u64,
    ) -> Result<LogEntry, FormatError> {
        let stored = get_u64(raw, E_OFF_CRC);
        let computed = crc(&raw[..E_OFF_CRC]);
        if stored != computed {
            return Err(FormatError::EntryCrc {
                index,
                offset,
                stored,
                computed,
            });
        }
        let seqnum = get_u64(raw, E_OFF_SEQNUM);
        if seqnum != index {
            return Err(FormatError::EntrySeqnum {
                index,
                offset,
                found: seqnum,
            });
        }
        Ok(LogEntry {
            seqnum,
            body: Self::decode_body(raw, version),
        })
    }

    /// The body of an entry whose framing was checked (or that the caller wants to inspect anyway).
    pub fn decode_body(raw: &[u8; ENTRY_SIZE], version: u64) -> EntryBody {
        let etype = get_u32(raw, E_OFF_TYPE);
        match etype {
            ENTRY_FILE => {
                let ext_type = get_u32(raw, F_OFF_EXT_TYPE);
                let count = get_u32(raw, F_OFF_NEXTENTS);
                let fmap = match ext_type {
                    EXT_SIMPLE => RawFmap::Simple {
                        nextents: count,
                        extents: parse_extents(raw, F_OFF_UNION),
                    },
                    EXT_INTERLEAVE => RawFmap::Interleave {
                        niext: count,
                        nstrips: get_u64(raw, F_OFF_IE_NSTRIPS),
                        chunk_size: get_u64(raw, F_OFF_IE_CHUNK),
                        strips: parse_extents(raw, F_OFF_IE_STRIPS),
                    },
                    _ => RawFmap::Unknown {
                        ext_type,
                        count,
                        raw: get_arr(raw, F_OFF_UNION),
                    },
                };
                EntryBody::File(FileEntry {
                    size: get_u64(raw, F_OFF_SIZE),
                    flags: get_u32(raw, F_OFF_FLAGS),
                    uid: get_u32(raw, F_OFF_UID),
                    gid: get_u32(raw, F_OFF_GID),
                    mode: get_u32(raw, F_OFF_MODE),
                    relpath: RelPath::from_raw(get_arr(raw, F_OFF_RELPATH)),
                    fmap,
                })
            }
            ENTRY_MKDIR => EntryBody::Mkdir(MkdirEntry {
                uid: get_u32(raw, M_OFF_UID),
                gid: get_u32(raw, M_OFF_GID),
                mode: get_u32(raw, M_OFF_MODE),
                relpath: RelPath::from_raw(get_arr(raw, M_OFF_RELPATH)),
            }),
            ENTRY_ADD_DAXDEV if version == VERSION_48 => EntryBody::AddDaxdev(AddDaxdevEntry {
                size: get_u64(raw, D_OFF_SIZE),
                uuid: get_arr(raw, D_OFF_UUID),
                index: get_u32(raw, D_OFF_INDEX),
            }),
            etype => EntryBody::Other { etype },
        }
    }

    /// The 544 stored bytes for `version`: zeroed, fields filled, CRC over `[0, 536)` last.
    pub fn encode(&self, version: u64) -> Result<[u8; ENTRY_SIZE], FormatError> {
        let mut b = [0u8; ENTRY_SIZE];
        put_u64(&mut b, E_OFF_SEQNUM, self.seqnum);
        put_u32(&mut b, E_OFF_TYPE, self.body.type_code(version)?);
        match &self.body {
            EntryBody::File(f) => {
                put_u64(&mut b, F_OFF_SIZE, f.size);
                put_u32(&mut b, F_OFF_FLAGS, f.flags);
                put_u32(&mut b, F_OFF_UID, f.uid);
                put_u32(&mut b, F_OFF_GID, f.gid);
                put_u32(&mut b, F_OFF_MODE, f.mode);
                b[F_OFF_RELPATH..F_OFF_RELPATH + RELPATH_LEN].copy_from_slice(f.relpath.raw());
                match &f.fmap {
                    RawFmap::Simple { nextents, extents } => {
                        put_u32(&mut b, F_OFF_EXT_TYPE, EXT_SIMPLE);
                        put_u32(&mut b, F_OFF_NEXTENTS, *nextents);
                        put_extents(&mut b, F_OFF_UNION, extents);
                    }
                    RawFmap::Interleave {
                        niext,
                        nstrips,
                        chunk_size,
                        strips,
                    } => {
                        put_u32(&mut b, F_OFF_EXT_TYPE, EXT_INTERLEAVE);
                        put_u32(&mut b, F_OFF_NEXTENTS, *niext);
                        put_u64(&mut b, F_OFF_IE_NSTRIPS, *nstrips);
                        put_u64(&mut b, F_OFF_IE_CHUNK, *chunk_size);
                        put_extents(&mut b, F_OFF_IE_STRIPS, strips);
                    }
                    RawFmap::Unknown {
                        ext_type,
                        count,
                        raw,
                    } => {
                        put_u32(&mut b, F_OFF_EXT_TYPE, *ext_type);
                        put_u32(&mut b, F_OFF_NEXTENTS, *count);
                        b[F_OFF_UNION..F_OFF_UNION + IEXT_SIZE].copy_from_slice(raw);
                    }
                }
            }
            EntryBody::Mkdir(m) => {
                put_u32(&mut b, M_OFF_UID, m.uid);
                put_u32(&mut b, M_OFF_GID, m.gid);
                put_u32(&mut b, M_OFF_MODE, m.mode);
                b[M_OFF_RELPATH..M_OFF_RELPATH + RELPATH_LEN].copy_from_slice(m.relpath.raw());
            }
            EntryBody::AddDaxdev(d) => {
                put_u64(&mut b, D_OFF_SIZE, d.size);
                b[D_OFF_UUID..D_OFF_UUID + 16].copy_from_slice(&d.uuid);
                put_u32(&mut b, D_OFF_INDEX, d.index);
            }
            EntryBody::Other { .. } => {}
        }
        let c = crc(&b[..E_OFF_CRC]);
        put_u64(&mut b, E_OFF_CRC, c);
        Ok(b)
    }
}
