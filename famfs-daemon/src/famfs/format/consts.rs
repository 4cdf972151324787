//! The format constants of §3: magic numbers, versions, region sizes and positions, the byte sizes of
//! the C structures, field limits and the stored type codes.
//!
//! Owns: every number of the on-media format that is not a field offset inside one structure (those
//! live with their structure). Must not hold code: values only.

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
