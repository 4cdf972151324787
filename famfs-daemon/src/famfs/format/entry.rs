//! Log entries (§4.4, §4.5, §4.9, §4.10): the 544-byte entry with its FILE, MKDIR and ADD_DAXDEV
//! bodies.
//!
//! Owns: the entry's field offsets, framing (E1: CRC and seqnum), the typed bodies and their
//! byte-exact encoding. Must not check paths or fmaps (that is `path` and `fmap`, called by replay).

use super::{
    bytes::{crc, get_arr, get_u32, get_u64, put_u32, put_u64},
    consts::{
        ENTRY_ADD_DAXDEV, ENTRY_DELETE, ENTRY_FILE, ENTRY_MKDIR, ENTRY_SIZE, EXT_INTERLEAVE,
        EXT_SIMPLE, IEXT_SIZE, RELPATH_LEN, SIMPLE_EXT_SIZE, VERSION_47, VERSION_48,
    },
    error::FormatError,
    fmap::{Extent, RawFmap},
    path::RelPath,
};

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
