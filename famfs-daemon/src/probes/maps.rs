//! Map maintenance on a loaded object: the connection watch set, forgetting a connection's aggregates,
//! expiring lost in-flight requests, and handing out the event ring buffer. Reading the aggregates is
//! `snapshot`; attaching is `attach`. Touches only the maps of our own object.

use std::time::Duration;

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData, PerCpuHashMap, RingBuf},
};
use famfs_common::{
    fault::{FaultKey, FaultStats, FileKey, ProcFaultKey, ProcFaultStats},
    fuse_request::{Inflight, InflightKey, ReqKey, ReqStats},
    names,
};

use super::{EventReader, Probes};

/// Add `connection` to the object's watch set.
pub(crate) fn watch(ebpf: &mut Ebpf, connection: u32) -> anyhow::Result<()> {
    let map = ebpf
        .map_mut(names::WATCH_CONN)
        .ok_or_else(|| anyhow::anyhow!("WATCH_CONN map missing"))?;
    let mut m = BpfHashMap::<_, u32, u32>::try_from(map)?;
    m.insert(connection, 1, 0)?;
    Ok(())
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
        if let Some(Ok(mut m)) = ebpf
            .map_mut(names::INFLIGHT)
            .map(BpfHashMap::<_, InflightKey, Inflight>::try_from)
        {
            remove_matching!(m, |k: &InflightKey| k.connection == connection);
        }
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
        let Some(map) = ebpf.map_mut(names::INFLIGHT) else {
            return 0;
        };
        let Ok(mut m) = BpfHashMap::<_, InflightKey, Inflight>::try_from(map) else {
            return 0;
        };
        let now = crate::util::monotonic_ns();
        let max = max_age.as_nanos() as u64;
        let stale: Vec<InflightKey> = m
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| now.saturating_sub(v.start_ns) > max)
            .map(|(k, _)| k)
            .collect();
        let mut n = 0;
        for k in stale {
            if m.remove(&k).is_ok() {
                n += 1;
            }
        }
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
