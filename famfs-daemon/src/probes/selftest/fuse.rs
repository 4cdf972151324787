//! `selftest fuse`: the FUSE request probes on a FUSE mount with one pairing (by request address, by
//! unique, or whichever the kernel allows). Every regular file is opened and read once and one missing
//! name is looked up; OPEN counts, completions, errors, reply sizes and ring-buffer events must be exact,
//! or, where the kernel's send event carries unique 0 and pairing is by unique, exactly unpaired.

use std::{io::Write, path::Path};

use anyhow::{Context, Result, bail};
use famfs_common::{
    counters, event,
    fuse_request::ReqStats,
    names,
    opcode::{LOOKUP, OPEN},
};

use super::{Verdict, open_and_read, print_health, regular_files, verdict};
use crate::{
    fuse::channel::mount_connection,
    probes::{ProbeConfig, ProbeSnapshot, Probes, RequestPairing},
};

/// What one run of the workload produced on the mount's connection.
#[derive(Clone, Debug)]
struct Observed {
    /// Regular files opened (and read) once each.
    files: u64,
    bytes: usize,
    /// The pairing the probes used (`Unique` or `Pointer`).
    pairing: RequestPairing,
    open: ReqStats,
    lookup: ReqStats,
    /// Requests of every opcode sent on the connection.
    sends: u64,
    /// Sends whose tracepoint record carried unique 0 (the 6.12 quirk), all connections.
    send_unique_zero: u64,
    /// OPEN completion events from the ring buffer.
    open_events: u64,
    /// Their distinct uniques, sorted (0 included when seen).
    uniques: Vec<u64>,
    /// OPEN events caused by this process.
    own_pid: u64,
    /// Unmatched request-end events.
    unmatched: u64,
    ringbuf_drops: u64,
}

impl Observed {
    fn nonzero_uniques(&self) -> usize {
        self.uniques.iter().filter(|u| **u != 0).count()
    }
}

/// Run the workload on `conn` (the mount at `fuse_dir`) and collect what the probes saw.
fn observe(
    probes: &mut Probes,
    conn: u32,
    fuse_dir: &Path,
    files: &[std::path::PathBuf],
) -> Result<(Observed, ProbeSnapshot)> {
    let pairing = probes.request_pairing();
    let mut reader = probes.take_events().context("ring buffer")?;

    let bytes = open_and_read(files)?;
    let missing = fuse_dir.join(format!("famfs-selftest-missing-{}", std::process::id()));
    if std::fs::symlink_metadata(&missing).is_ok() {
        bail!("{} exists", missing.display());
    }

    let mut opens = Vec::new();
    let mut unmatched = 0u64;
    // The ring buffer is filled synchronously by the end probes, which ran before our syscalls
    // returned: one drain is complete.
    reader.poll(0, |ev| {
        if ev.conn == conn && ev.kind == event::KIND_REQ_END && ev.op == OPEN {
            opens.push(*ev);
        } else if ev.conn == conn && ev.kind == event::KIND_REQ_END_UNMATCHED {
            unmatched += 1;
        }
    });
    let snap = probes.snapshot();
    let row = |op: u32| {
        snap.requests
            .iter()
            .find(|r| r.key.connection == conn && r.key.opcode == op)
            .map_or(ReqStats::ZERO, |r| r.stats)
    };
    let mut uniques: Vec<u64> = opens.iter().map(|e| e.id).collect();
    uniques.sort_unstable();
    uniques.dedup();
    let obs = Observed {
        files: files.len() as u64,
        bytes,
        pairing,
        open: row(OPEN),
        lookup: row(LOOKUP),
        sends: snap
            .requests
            .iter()
            .filter(|r| r.key.connection == conn)
            .map(|r| r.stats.sent)
            .sum(),
        send_unique_zero: snap.counters[counters::SEND_UNIQUE_ZERO as usize],
        open_events: opens.len() as u64,
        uniques,
        own_pid: opens.iter().filter(|e| e.pid == std::process::id()).count() as u64,
        unmatched,
        ringbuf_drops: snap.counters[counters::RINGBUF_DROPS as usize],
    };
    Ok((obs, snap))
}

/// The `RESULT <check> requests ...` line.
fn result_line(check: &str, o: &Observed) -> String {
    format!(
        "RESULT {check} requests pairing={} files={} bytes={} open_sent={} open_completed={} open_errors={} open_reply_bytes={} open_lat_count={} lookup_errors={} sends={} send_unique_zero={} open_events={} open_event_uniques={} open_events_own_pid={} unmatched_end_events={}",
        o.pairing.as_str(),
        o.files,
        o.bytes,
        o.open.sent,
        o.open.completed,
        o.open.errors,
        o.open.reply_bytes_sum,
        o.open.lat_slots.iter().sum::<u64>(),
        o.lookup.errors,
        o.sends,
        o.send_unique_zero,
        o.open_events,
        o.nonzero_uniques(),
        o.own_pid,
        o.unmatched,
    )
}

/// What the workload must produce: every OPEN sent; with the unique-0 quirk and unique pairing nothing
/// paired and every end reported unmatched; otherwise every OPEN completed once, with its latency, its
/// 32-byte reply and an event carrying its real unique, and the one failed LOOKUP.
fn expectations(o: &Observed) -> Vec<String> {
    let mut problems = Vec::new();
    let n = o.files;
    if o.open.sent != n {
        problems.push(format!("OPEN sent {} != {n} opens", o.open.sent));
    }
    let quirk = o.send_unique_zero > 0;
    if quirk && o.send_unique_zero != o.sends {
        problems.push(format!(
            "{} of {} sends carried unique 0: the quirk is all or nothing per kernel",
            o.send_unique_zero, o.sends
        ));
    }
    if o.pairing == RequestPairing::Unique && quirk {
        // Detected: no send can be paired by unique; every end is reported unmatched instead.
        if o.open.completed != 0 || o.open_events != 0 {
            problems.push("unique pairing paired requests whose send had unique 0".into());
        }
        if o.unmatched < n {
            problems.push(format!(
                "{} unmatched-end events for {n} unpairable OPENs",
                o.unmatched
            ));
        }
    } else {
        paired_expectations(o, &mut problems);
    }
    if o.ringbuf_drops != 0 {
        problems.push("ring buffer drops".into());
    }
    problems
}

/// Paired: every OPEN completes, once, with its latency, its 32-byte reply and an event carrying its
/// real unique.
fn paired_expectations(o: &Observed, problems: &mut Vec<String>) {
    let (n, open) = (o.files, &o.open);
    if (open.completed, open.errors, open.reply_bytes_sum) != (n, 0, 32 * n) {
        problems.push(format!(
            "OPEN completed/errors/reply bytes ({}, {}, {}) != ({n}, 0, {})",
            open.completed,
            open.errors,
            open.reply_bytes_sum,
            32 * n
        ));
    }
    if open.lat_slots.iter().sum::<u64>() != n {
        problems.push("OPEN latency histogram does not hold every completion".into());
    }
    if o.lookup.errors != 1 {
        problems.push(format!(
            "LOOKUP errors {} != 1 (the lookup of a missing name)",
            o.lookup.errors
        ));
    }
    if (o.open_events, o.uniques.len() as u64, o.own_pid) != (n, n, n) || o.uniques.contains(&0) {
        problems.push(format!(
            "OPEN events: {} events, {} distinct non-zero uniques, {} from this process; want {n} each",
            o.open_events,
            o.nonzero_uniques(),
            o.own_pid
        ));
    }
}

/// `selftest fuse --fuse-dir DIR --pairing PAIRING`.
pub fn check_fuse(
    fuse_dir: &Path,
    pairing: RequestPairing,
    out: &mut dyn Write,
) -> Result<Verdict> {
    // The connection from /proc/self/mountinfo: a stat of the mount point itself would be a FUSE request.
    let mountpoint = fuse_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", fuse_dir.display()))?;
    let conn = mount_connection(&mountpoint)?;
    let files = regular_files(fuse_dir)?;
    let check = format!("fuse-{}", pairing.as_str());
    let mut probes = Probes::load(&ProbeConfig {
        connections: Some(vec![conn]),
        kfuncs: false,
        request_pairing: pairing,
        ..Default::default()
    });
    let mut problems = Vec::new();
    for p in [names::PROG_FUSE_REQUEST_SEND, names::PROG_FUSE_REQUEST_END] {
        if !probes.attached(p) {
            problems.push(format!("probe {p} not attached: {:?}", probes.status()));
        }
    }
    let (obs, snap) = observe(&mut probes, conn, fuse_dir, &files)?;
    writeln!(out, "{}", result_line(&check, &obs))?;
    print_health(out, &check, &snap)?;
    problems.extend(expectations(&obs));
    Ok(verdict(out, &check, &problems)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Five files read, every OPEN paired and reported, one failed LOOKUP.
    fn paired() -> Observed {
        let mut open = ReqStats::ZERO;
        open.sent = 5;
        open.completed = 5;
        open.reply_bytes_sum = 160;
        open.lat_slots[3] = 5;
        let mut lookup = ReqStats::ZERO;
        lookup.errors = 1;
        Observed {
            files: 5,
            bytes: 5106,
            pairing: RequestPairing::Pointer,
            open,
            lookup,
            sends: 17,
            send_unique_zero: 0,
            open_events: 5,
            uniques: vec![10, 12, 14, 16, 18],
            own_pid: 5,
            unmatched: 0,
            ringbuf_drops: 0,
        }
    }

    #[test]
    fn paired_run_passes_and_prints_its_line() {
        let o = paired();
        assert!(expectations(&o).is_empty(), "{:?}", expectations(&o));
        assert_eq!(
            result_line("fuse-auto", &o),
            "RESULT fuse-auto requests pairing=pointer files=5 bytes=5106 open_sent=5 open_completed=5 \
             open_errors=0 open_reply_bytes=160 open_lat_count=5 lookup_errors=1 sends=17 \
             send_unique_zero=0 open_events=5 open_event_uniques=5 open_events_own_pid=5 \
             unmatched_end_events=0"
        );
    }

    #[test]
    fn paired_run_needs_real_uniques_and_the_failed_lookup() {
        let mut o = paired();
        o.uniques = vec![0, 12, 14, 16, 18];
        o.lookup.errors = 0;
        o.ringbuf_drops = 1;
        assert_eq!(
            expectations(&o),
            [
                "LOOKUP errors 0 != 1 (the lookup of a missing name)",
                "OPEN events: 5 events, 4 distinct non-zero uniques, 5 from this process; want 5 each",
                "ring buffer drops",
            ]
        );
    }

    #[test]
    fn quirk_with_unique_pairing_must_pair_nothing() {
        let mut o = paired();
        o.pairing = RequestPairing::Unique;
        o.send_unique_zero = 17;
        o.open.completed = 0;
        o.open.reply_bytes_sum = 0;
        o.open.lat_slots = [0; famfs_common::hist::LAT_SLOTS];
        o.open_events = 0;
        o.uniques.clear();
        o.own_pid = 0;
        o.unmatched = 6;
        assert!(expectations(&o).is_empty(), "{:?}", expectations(&o));
        o.unmatched = 4;
        o.send_unique_zero = 16;
        assert_eq!(
            expectations(&o),
            [
                "16 of 17 sends carried unique 0: the quirk is all or nothing per kernel",
                "4 unmatched-end events for 5 unpairable OPENs",
            ]
        );
    }
}
