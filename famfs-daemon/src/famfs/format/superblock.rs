//! The superblock (§4.1, §4.2) and the [`Geometry`] validated from it.
//!
//! Owns: the superblock's field offsets, its decoder with the S1-S5 checks (in the reference order),
//! its byte-exact encoder and CRC, and the device layout derived from it. Must not touch the log
//! header's or the entries' bytes.

use super::{
    bytes::{crc, get_arr, get_u32, get_u64, need, put_u32, put_u64},
    consts::{
        ALLOC_UNIT, ALT_ALLOC_UNIT, DAXDEV_NAME_LEN, LOG_OFFSET, MIN_LOG_LEN, OMF_MAJOR, SB_MAGIC,
        SB_SIZE, VERSION_47, VERSION_48,
    },
    error::FormatError,
    log_header::{LH_OFF_NEXT_INDEX, entry_offset, log_slots},
    uuid::format_uuid,
};

// Superblock field offsets.
pub(super) const SB_OFF_MAGIC: usize = 0;
pub(super) const SB_OFF_VERSION: usize = 8;
const SB_OFF_LOG_OFFSET: usize = 16;
const SB_OFF_LOG_LEN: usize = 24;
pub(super) const SB_OFF_ALLOC_UNIT: usize = 32;
const SB_OFF_OMF_MAJOR: usize = 40;
/// `ts_omf_ver_minor` (mkfs writes [`omf_minor_for`] the version; readers only note a difference).
pub const SB_OFF_OMF_MINOR: usize = 44;
const SB_OFF_UUID: usize = 48;
const SB_OFF_DEV_UUID: usize = 64;
const SB_OFF_SYSTEM_UUID: usize = 80;
/// Superblock CRC slot; the CRC covers `[0, SB_OFF_CRC)`.
pub const SB_OFF_CRC: usize = 96;
const SB_OFF_FLAGS: usize = 104;
const SB_OFF_DD_SIZE: usize = 112;
const SB_OFF_DD_UUID: usize = 120;
const SB_OFF_DD_NAME: usize = 136;

/// The OMF minor version mkfs writes for superblock `version` (1 for v47, 2 for v48).
pub fn omf_minor_for(version: u64) -> u32 {
    if version == VERSION_47 { 1 } else { 2 }
}

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
    // Each argument is a field mkfs chooses; a parameter struct would restate `Superblock` itself.
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
            omf_minor: omf_minor_for(version),
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

    /// Device byte offset of the log header's `next_index` (8 bytes, little-endian): pollers read it
    /// to notice appends without decoding the header.
    pub fn next_index_offset(&self) -> u64 {
        self.log_offset + LH_OFF_NEXT_INDEX as u64
    }
}
