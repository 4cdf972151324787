//! The log header (§4.3) and the log's layout: where entry `i` lives and how many slots a log has.
//!
//! Owns: the header's field offsets (the one place that knows `next_index` is at byte 40), its
//! decoder with the H1-H3 checks, its byte-exact encoder and CRC. Must not touch entries' bytes.

use super::{
    bytes::{crc, get_arr, get_u64, need, put_u64},
    consts::{ENTRY_SIZE, LOG_HEADER_SIZE, LOG_MAGIC},
    error::FormatError,
};

// Log header field offsets.
const LH_OFF_MAGIC: usize = 0;
const LH_OFF_LEN: usize = 8;
const LH_OFF_LAST_INDEX: usize = 16;
/// Log header CRC slot; the CRC covers `[0, LH_OFF_CRC)`.
pub const LH_OFF_CRC: usize = 24;
/// `famfs_log_next_seqnum`; `famfs_log_next_index` follows at [`LH_OFF_NEXT_INDEX`]. Appends rewrite
/// these two fields together ([`LogHeader::encode_position`]).
pub const LH_OFF_NEXT_SEQNUM: usize = 32;
/// `famfs_log_next_index`: the first free slot (pollers read these 8 bytes to notice appends).
pub const LH_OFF_NEXT_INDEX: usize = 40;
/// Bytes from [`LH_OFF_NEXT_SEQNUM`] to the end of the header: the `next_seqnum`/`next_index` pair.
pub const LH_POSITION_LEN: usize = LOG_HEADER_SIZE - LH_OFF_NEXT_SEQNUM;

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

    /// The `next_seqnum`/`next_index` pair as stored at [`LH_OFF_NEXT_SEQNUM`]: what an append
    /// rewrites (in one write) after its entries are durable. Not covered by the CRC.
    pub fn encode_position(&self) -> [u8; LH_POSITION_LEN] {
        get_arr(&self.encode_fields(), LH_OFF_NEXT_SEQNUM)
    }

    /// Bytes of the log region in use: the header and the entries below `next_index` (saturating).
    pub fn used_len(&self) -> u64 {
        entry_offset(0, self.next_index)
    }

    /// The log has no free slot.
    pub fn is_full(&self) -> bool {
        self.next_index > self.last_index
    }
}
