//! Crash-safe log append (§7): entries are encoded (zeroed, CRC last) and written to the slots from
//! `next_index` on, the entry range is flushed (fdatasync), and only then is the header's
//! `next_seqnum`/`next_index` pair advanced (one 16-byte write) and flushed. A crash before the header
//! write leaves the entries beyond `next_index`, where replay never looks: a torn append is invisible.
//!
//! Owns: reading the validated header from a store, playing the log into a namespace in bounded
//! windows ([`play`]), and appending. Preconditions the caller provides for an append:
//! the exclusive log lock ([`super::store::Store::lock_exclusive`]) and an up-to-date namespace for any
//! allocation it did. The master/client rule (§11) is enforced here. Must not interpret entries beyond
//! encoding them.

use thiserror::Error;

use super::{
    format::{
        ENTRY_SIZE, EntryBody, FormatError, Geometry, LH_OFF_NEXT_SEQNUM, LOG_HEADER_SIZE,
        LogEntry, LogHeader, entry_offset, format_uuid,
    },
    replay::{ApplyOutcome, Namespace},
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
    Ok(LogHeader::decode(&bytes, geo.log_offset, geo.log_len)?)
}

/// Entries read per window by [`play`] (about 0.5 MiB).
const PLAY_WINDOW_ENTRIES: u64 = 1024;

/// Apply the entries `[ns.next_index(), end)` of the log on `store` to `ns`, reading the log in
/// windows of [`PLAY_WINDOW_ENTRIES`] entries (memory stays bounded whatever the header claims;
/// the play stops at the first corrupt entry, which an all-zero slot of a crafted header is). On a
/// DAX device each window's cache lines are dropped before it is read. Only the readable part of the
/// log region counts: an entry past the end of a shrunk image stops the play as truncated.
pub fn play(
    store: &Store,
    geo: &Geometry,
    ns: &mut Namespace,
    end: u64,
    collect_added: bool,
) -> Result<ApplyOutcome, StoreError> {
    let readable = store.len().saturating_sub(geo.log_offset).min(geo.log_len);
    let end = end.min(geo.slots);
    let mut out = ApplyOutcome::default();
    let mut buf = Vec::new();
    loop {
        let from = ns.next_index();
        let start = entry_offset(0, from).min(readable);
        let upto = end.min(from.saturating_add(PLAY_WINDOW_ENTRIES));
        let stop = entry_offset(0, upto).min(readable);
        let n = usize::try_from(stop - start).unwrap_or(0);
        buf.resize(n, 0);
        store.invalidate(geo.log_offset + start, n as u64)?;
        store.read_into(geo.log_offset + start, &mut buf)?;
        let o = ns.apply_window(&buf, start, upto, collect_added);
        out.added.extend(o.added);
        out.anomalies.extend(o.anomalies);
        out.applied += o.applied;
        out.stopped = o.stopped;
        if out.stopped.is_some() || ns.next_index() >= end || o.applied == 0 {
            return Ok(out);
        }
    }
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
