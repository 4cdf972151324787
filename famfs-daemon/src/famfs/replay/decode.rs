//! The first half of replay: framing checks (E1: CRC and seqnum) of consecutive log slots, without the
//! namespace. A reader can decode a chunk of new entries while others keep using the namespace, then
//! apply it ([`super::Namespace::apply_decoded`]) in a short exclusive step.
//!
//! Owns: [`Decoded`], [`decode_entries_into`] (reusing a buffer) and the chunk size
//! [`DECODE_CHUNK`]. Must not apply the replay
//! rules (that is the parent module).

use super::anomaly::{Anomaly, AnomalyKind};
use crate::famfs::format::{ENTRY_SIZE, EntryBody, FormatError, Geometry, LogEntry};

/// Entries read and decoded per step (about 1 MiB of log): bounds the memory of a step and the time a
/// step's apply holds a lock, whatever the log's size.
pub const DECODE_CHUNK: u64 = 2048;

/// Consecutive log entries that passed the framing checks, and the entry that stopped the chunk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Log index of `entries[0]`.
    pub first: u64,
    /// Device byte offset and body of each entry, in index order.
    pub entries: Vec<(u64, EntryBody)>,
    /// The first slot that failed (E1), or whose bytes were missing; nothing after it is decoded.
    pub stopped: Option<Anomaly>,
}

impl Decoded {
    /// One past the last decoded index.
    pub fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }
}

/// Decode slots `[first, end)` from `bytes`, the log bytes starting at slot `first` (device byte
/// `geo.entry_offset(first)`; fewer bytes than the range needs is a truncated log) into `out`, reusing
/// its allocation (a replay decodes every chunk into one). Stops at the first slot that fails.
pub fn decode_entries_into(geo: &Geometry, first: u64, end: u64, bytes: &[u8], out: &mut Decoded) {
    out.first = first;
    out.entries.clear();
    out.stopped = None;
    out.entries
        .reserve(end.saturating_sub(first).min(DECODE_CHUNK) as usize);
    for (k, i) in (first..end).enumerate() {
        match decode_slot(geo, i, k, bytes) {
            Ok(e) => out.entries.push((geo.entry_offset(i), e.body)),
            Err(a) => {
                out.stopped = Some(a);
                break;
            }
        }
    }
}

/// Frame-check slot `i`, the `k`-th slot of `bytes`: the entry, or the anomaly that stops the play
/// there (E1, or too few bytes).
pub(super) fn decode_slot(
    geo: &Geometry,
    i: u64,
    k: usize,
    bytes: &[u8],
) -> Result<LogEntry, Anomaly> {
    let rel = k.saturating_mul(ENTRY_SIZE);
    let raw = bytes
        .get(rel..rel.saturating_add(ENTRY_SIZE))
        .and_then(|s| <&[u8; ENTRY_SIZE]>::try_from(s).ok());
    let offset = geo.entry_offset(i);
    let kind = match raw {
        Some(raw) => match LogEntry::decode(raw, i, geo.version, offset) {
            Ok(e) => return Ok(e),
            Err(err) => AnomalyKind::Corrupt(err),
        },
        None => AnomalyKind::Corrupt(FormatError::Truncated {
            what: "log entry",
            offset,
            need: ENTRY_SIZE as u64,
            have: (bytes.len() as u64).saturating_sub(rel as u64),
        }),
    };
    Err(Anomaly {
        index: i,
        offset,
        kind,
    })
}
