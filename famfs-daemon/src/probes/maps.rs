//! Map maintenance on a loaded object: the connection watch set, forgetting a connection's aggregates,
//! expiring lost in-flight requests, and handing out the event ring buffer. Reading the aggregates is
//! `snapshot`; attaching is `attach`. Touches only the maps of our own object.

use std::time::Duration;

use aya::{
    Ebpf,
    maps::{
        Array, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues, RingBuf,
    },
};
use famfs_common::{
    fault::{FaultKey, FaultStats, FileKey, ProcFaultKey, ProcFaultStats},
    fuse_request::{
        Inflight, ReqKey, ReqStats, STATS_OPCODES, STATS_SLOTS, WatchList, stats_index,
    },
    names,
};

use super::{EventReader, Probes};

/// Add `connection` to the object's watch set, with the first free stats slot (its own rows in
/// `REQ_SLOTS`) while there is one, else 0 (its rows go to the `REQ_STATS` hash). Watching a watched
/// connection again keeps its slot.
pub(crate) fn watch(ebpf: &mut Ebpf, connection: u32) -> anyhow::Result<()> {
    let map = ebpf
        .map_mut(names::WATCH_CONN)
        .ok_or_else(|| anyhow::anyhow!("WATCH_CONN map missing"))?;
    let mut m = BpfHashMap::<_, u32, u32>::try_from(map)?;
    if m.get(&connection, 0).is_ok() {
        return Ok(());
    }
    let used: Vec<u32> = m.iter().filter_map(Result::ok).map(|(_, v)| v).collect();
    let slot = match connection {
        0 => 0,
        _ => (1..=STATS_SLOTS).find(|s| !used.contains(s)).unwrap_or(0),
    };
    m.insert(connection, slot, 0)?;
    let map = ebpf
        .map_mut(names::WATCH_LIST)
        .ok_or_else(|| anyhow::anyhow!("WATCH_LIST map missing"))?;
    let mut list = Array::<_, WatchList>::try_from(map)?;
    let mut l = list.get(&0, 0)?;
    match slot {
        0 => l.overflow = 1,
        s => l.conns[(s - 1) as usize] = connection,
    }
    list.set(0, l, 0)?;
    Ok(())
}

/// The stats slot of a watched `connection` (0: none, or not watched).
pub(crate) fn stats_slot(ebpf: &Ebpf, connection: u32) -> u32 {
    ebpf.map(names::WATCH_CONN)
        .and_then(|m| BpfHashMap::<_, u32, u32>::try_from(m).ok())
        .and_then(|m| m.get(&connection, 0).ok())
        .unwrap_or(0)
}

/// Zero the `REQ_SLOTS` rows of stats slot `slot` on every CPU.
fn zero_slot_rows(ebpf: &mut Ebpf, slot: u32) {
    let Some(Ok(mut m)) = ebpf
        .map_mut(names::REQ_SLOTS)
        .map(PerCpuArray::<_, ReqStats>::try_from)
    else {
        return;
    };
    for opcode in 0..STATS_OPCODES {
        let Some(i) = stats_index(slot, opcode) else {
            return;
        };
        let Ok(v) = m.get(&i, 0) else {
            continue;
        };
        if let Ok(zero) = PerCpuValues::try_from(vec![ReqStats::ZERO; v.len()]) {
            let _ = m.set(i, zero, 0);
        }
    }
}

/// Remove the entries of a hash map (per-CPU or not) whose key `matches`; unreadable keys are skipped.
macro_rules! remove_matching {
    ($m:expr, $matches:expr) => {{
        let keys: Vec<_> = $m.keys().filter_map(Result::ok).filter($matches).collect();
        for k in keys {
            let _ = $m.remove(&k);
        }
    }};
}

/// Free the taken `INFLIGHT` slots whose entry `matches`; returns how many were freed.
fn clear_inflight(ebpf: &mut Ebpf, matches: impl Fn(&Inflight) -> bool) -> usize {
    let Some(Ok(mut m)) = ebpf
        .map_mut(names::INFLIGHT)
        .map(Array::<_, Inflight>::try_from)
    else {
        return 0;
    };
    let taken: Vec<u32> = m
        .iter()
        .enumerate()
        .filter_map(|(i, v)| Some((i as u32, v.ok()?)))
        .filter(|(_, v)| v.key != 0 && matches(v))
        .map(|(i, _)| i)
        .collect();
    taken
        .into_iter()
        .filter(|i| m.set(*i, Inflight::default(), 0).is_ok())
        .count()
}

impl Probes {
    /// Add a FUSE connection (or device) to the watch set (effective when loaded with a filter).
    pub fn watch_connection(&mut self, connection: u32) -> anyhow::Result<()> {
        let ebpf = self
            .ebpf
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("probes are not loaded"))?;
        watch(ebpf, connection)
    }

    /// Forget everything recorded for `connection`: connection numbers are reused by later mounts, so a
    /// new mount epoch starts from zero (Prometheus sees an ordinary counter reset).
    pub fn reset_connection(&mut self, connection: u32) {
        let Some(ebpf) = self.ebpf.as_mut() else {
            return;
        };
        if let Some(Ok(mut m)) = ebpf
            .map_mut(names::REQ_STATS)
            .map(PerCpuHashMap::<_, ReqKey, ReqStats>::try_from)
        {
            remove_matching!(m, |k: &ReqKey| k.connection == connection);
        }
        let slot = stats_slot(ebpf, connection);
        if slot != 0 {
            zero_slot_rows(ebpf, slot);
        }
        clear_inflight(ebpf, |v| v.connection == connection);
        if let Some(Ok(mut m)) = ebpf
            .map_mut(names::FAULT_STATS)
            .map(BpfHashMap::<_, FaultKey, FaultStats>::try_from)
        {
            remove_matching!(m, |k: &FaultKey| k.dev == connection);
        }
        if let Some(Ok(mut m)) = ebpf
            .map_mut(names::FAULT_PROCS)
            .map(BpfHashMap::<_, ProcFaultKey, ProcFaultStats>::try_from)
        {
            remove_matching!(m, |k: &ProcFaultKey| k.dev == connection);
        }
        if let Some(Ok(mut m)) = ebpf
            .map_mut(names::FILEMAP_STATS)
            .map(BpfHashMap::<_, FileKey, u64>::try_from)
        {
            remove_matching!(m, |k: &FileKey| k.dev == connection);
        }
    }

    /// Remove in-flight entries older than `max_age` (their end event was lost, e.g. an aborted
    /// connection) so the bounded map never fills with garbage. Returns how many were removed.
    pub fn expire_inflight(&mut self, max_age: Duration) -> usize {
        let Some(ebpf) = self.ebpf.as_mut() else {
            return 0;
        };
        let now = crate::util::monotonic_ns();
        let max = max_age.as_nanos() as u64;
        let n = clear_inflight(ebpf, |v| now.saturating_sub(v.start_ns) > max);
        self.expired_inflight += n as u64;
        n
    }

    /// Take the per-event ring buffer (once).
    pub fn take_events(&mut self) -> Option<EventReader> {
        let map = self.ebpf.as_mut()?.take_map(names::EVENTS)?;
        match RingBuf::<MapData>::try_from(map) {
            Ok(rb) => Some(EventReader::new(rb)),
            Err(e) => {
                log::warn!("EVENTS ring buffer unusable: {e}");
                None
            }
        }
    }
}
