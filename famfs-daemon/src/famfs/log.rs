//! Crash-safe log append (§7): entries are encoded (zeroed, CRC last) and written to the slots from
//! `next_index` on, the entry range is flushed (msync), and only then is the header's
//! `next_seqnum`/`next_index` pair advanced (one 16-byte write) and flushed. A crash before the header
//! write leaves the entries beyond `next_index`, where replay never looks: a torn append is invisible.
//!
//! Owns: reading the validated header from a store and appending. Preconditions the caller provides:
//! the exclusive log lock ([`super::store::Store::lock_exclusive`]) and an up-to-date namespace for any
//! allocation it did. The master/client rule (§11) is enforced here. Must not interpret entries beyond
//! encoding them.

use thiserror::Error;

use super::{
    format::{
        ENTRY_SIZE, EntryBody, FormatError, Geometry, LH_OFF_NEXT_SEQNUM, LOG_HEADER_SIZE,
        LogEntry, LogHeader, format_uuid,
    },
    role::Role,
    store::{Store, StoreError},
};

/// Append failures.
#[derive(Debug, Error)]
pub enum LogError {
    #[error(
        "log full: all {slots} entries are in use (next_index {next_index}); {wanted} more cannot be appended"
    )]
    Full {
        slots: u64,
        next_index: u64,
        wanted: u64,
    },
    #[error(
        "this host is not the master of this filesystem (role {role}): only the master appends to the log (host uuid {host}, master uuid {master})"
    )]
    NotMaster {
        role: &'static str,
        host: String,
        master: String,
    },
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Read and validate (H1-H3) the log header.
pub fn read_header(store: &Store, geo: &Geometry) -> Result<LogHeader, LogError> {
    let avail = store.len().saturating_sub(geo.log_offset);
    let bytes = store.read(geo.log_offset, avail.min(LOG_HEADER_SIZE as u64))?;
    Ok(LogHeader::decode(bytes, geo.log_offset, geo.log_len)?)
}

/// Check the §11 rule: only the master appends.
pub fn check_master(
    role: Role,
    host: Option<&[u8; 16]>,
    master: &[u8; 16],
) -> Result<(), LogError> {
    if role == Role::Master {
        return Ok(());
    }
    Err(LogError::NotMaster {
        role: role.as_str(),
        host: host.map_or_else(|| "unknown".to_string(), format_uuid),
        master: format_uuid(master),
    })
}

/// Append `bodies` as consecutive entries; returns the index of the first. Entries are durable before
/// the header says they exist. Nothing is written if any body cannot be encoded or the log lacks room.
pub fn append(store: &mut Store, geo: &Geometry, bodies: &[EntryBody]) -> Result<u64, LogError> {
    let hdr = read_header(store, geo)?;
    let n = bodies.len() as u64;
    let first = hdr.next_index;
    if first.saturating_add(n) > geo.slots {
        return Err(LogError::Full {
            slots: geo.slots,
            next_index: first,
            wanted: n,
        });
    }
    if n == 0 {
        return Ok(first);
    }
    let mut buf = Vec::with_capacity(bodies.len() * ENTRY_SIZE);
    for (k, body) in bodies.iter().enumerate() {
        let e = LogEntry {
            seqnum: hdr.next_seqnum + k as u64,
            body: *body,
        };
        buf.extend_from_slice(&e.encode(geo.version)?);
    }
    let off = geo.entry_offset(first);
    store.write_at(off, &buf)?;
    store.flush(off, buf.len() as u64)?;
    let advanced = LogHeader {
        next_seqnum: hdr.next_seqnum + n,
        next_index: first + n,
        ..hdr
    };
    let hoff = geo.log_offset + LH_OFF_NEXT_SEQNUM as u64;
    store.write_at(hoff, &advanced.encode_position())?;
    store.flush(geo.log_offset, LOG_HEADER_SIZE as u64)?;
    Ok(first)
}
