//! famfs on-media structures (superblock versions 47 and 48): constants, typed views, checked decoders
//! and byte-exact encoders. See `/work/shared/docs/famfs-format.md` (§ numbers below refer to it).
//!
//! Owns: byte layout, CRC rules (§5), the superblock (S1-S5) and log-header (H1-H3) checks, entry
//! framing (E1), and the per-entry path (E3) and fmap (F1-F3) checks that need nothing but the entry and
//! the device geometry. Must not touch memory maps, files or the namespace: callers hand in byte slices.
//!
//! Everything is explicit little-endian (de)serialization at the offsets of the C layout; encoders start
//! from a zeroed buffer so padding and unused union bytes are zero, and compute CRCs last.
//!
//! One file per structure, each owning its field offsets: [`superblock`] (and the [`Geometry`] derived
//! from it), [`log_header`] (and the log layout), [`entry`], [`fmap`] (extents), [`path`] (relpaths);
//! shared pieces: [`consts`] (§3), `bytes` (little-endian access, CRC), [`error`], [`uuid`]. Everything
//! public is re-exported here, so users name `format::X` whatever file `X` lives in.

pub mod consts;
pub mod entry;
pub mod error;
pub mod fmap;
pub mod log_header;
pub mod path;
pub mod superblock;
pub mod uuid;

mod bytes;

pub use bytes::crc;
pub use consts::*;
pub use entry::{
    AddDaxdevEntry, E_OFF_CRC, EntryBody, FileEntry, LogEntry, MkdirEntry, entry_type_name,
};
pub use error::FormatError;
pub use fmap::{Extent, Fmap, FmapProblem, RawFmap};
pub use log_header::{
    LH_OFF_CRC, LH_OFF_NEXT_INDEX, LH_OFF_NEXT_SEQNUM, LH_POSITION_LEN, LogHeader, entry_offset,
    log_slots,
};
pub use path::{PathProblem, RelPath, check_relpath};
pub use superblock::{Geometry, SB_OFF_CRC, SB_OFF_OMF_MINOR, Superblock, omf_minor_for};
pub use uuid::{format_uuid, parse_uuid, uuid_v4_from};
