//! Per-file process attribution: a bounded top-N of the processes (by pid) that opened a file, kept in
//! a fixed-size array so counting an event never allocates. When the table is full, a new pid takes
//! the slot of the least-counted one and that slot's count moves to `other`, so the sum of the slots
//! and `other` is always the exact total.
//!
//! Owns the table and its eviction rule. Pids only: names (`comm`) are resolved by whoever shows the
//! table, at view time. Never a metric label (its cardinality is the host's process count).

/// Slots of a [`ProcTop`].
pub const PROC_SLOTS: usize = 8;

/// One process's count in a [`ProcTop`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcCount {
    pub pid: u32,
    pub count: u64,
}

/// A bounded top-N of pids by count, with the evicted remainder in `other`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcTop {
    slots: [ProcCount; PROC_SLOTS],
    used: usize,
    /// Counts of pids evicted from the table (or never admitted).
    pub other: u64,
}

impl ProcTop {
    /// Count one event of `pid` (pid 0, a request the kernel made on no process's behalf, goes to
    /// `other`).
    pub fn count(&mut self, pid: u32) {
        if pid == 0 {
            self.other += 1;
            return;
        }
        if let Some(s) = self.slots[..self.used].iter_mut().find(|s| s.pid == pid) {
            s.count += 1;
            return;
        }
        if self.used < PROC_SLOTS {
            self.slots[self.used] = ProcCount { pid, count: 1 };
            self.used += 1;
            return;
        }
        // Full: the least-counted slot (the oldest of equals) gives way; its count is kept in `other`.
        let mut min = 0;
        for (i, s) in self.slots.iter().enumerate() {
            if s.count < self.slots[min].count {
                min = i;
            }
        }
        self.other += self.slots[min].count;
        self.slots[min] = ProcCount { pid, count: 1 };
    }

    /// The tracked processes, in no particular order.
    pub fn entries(&self) -> &[ProcCount] {
        &self.slots[..self.used]
    }

    /// Every event counted: the slots and `other`.
    pub fn total(&self) -> u64 {
        self.entries().iter().map(|s| s.count).sum::<u64>() + self.other
    }

    /// The tracked processes, most events first (ties by pid).
    pub fn sorted(&self) -> Vec<ProcCount> {
        let mut v = self.entries().to_vec();
        v.sort_by(|a, b| b.count.cmp(&a.count).then(a.pid.cmp(&b.pid)));
        v
    }
}

/// One process's DAX faults on a file, with its name as the kernel saw it at its last fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcFaults {
    pub pid: u32,
    pub comm: [u8; 16],
    pub count: u64,
}

impl ProcFaults {
    /// The name up to its first NUL.
    pub fn comm_str(&self) -> String {
        let end = self.comm.iter().position(|&b| b == 0).unwrap_or(16);
        String::from_utf8_lossy(&self.comm[..end]).into_owned()
    }
}

/// The processes that faulted on a file: the kernel's cumulative per-process counts, the top
/// [`PROC_SLOTS`] by count kept (fixed-size), the rest of the file's DAX faults in `other` (so the
/// slots plus `other` are the file's DAX fault total, including processes the kernel's bounded map
/// has forgotten).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultTop {
    slots: [ProcFaults; PROC_SLOTS],
    used: usize,
    pub other: u64,
}

impl FaultTop {
    /// No processes, no faults.
    pub const EMPTY: FaultTop = FaultTop {
        slots: [ProcFaults {
            pid: 0,
            comm: [0; 16],
            count: 0,
        }; PROC_SLOTS],
        used: 0,
        other: 0,
    };

    /// Rebuild from one snapshot: `rows` are this file's per-process counts, `total` its DAX faults.
    pub fn rebuild(&mut self, rows: impl Iterator<Item = ProcFaults>, total: u64) {
        self.used = 0;
        for r in rows {
            if self.used < PROC_SLOTS {
                self.slots[self.used] = r;
                self.used += 1;
                continue;
            }
            let mut min = 0;
            for (i, s) in self.slots.iter().enumerate() {
                if s.count < self.slots[min].count {
                    min = i;
                }
            }
            if r.count > self.slots[min].count {
                self.slots[min] = r;
            }
        }
        let kept: u64 = self.entries().iter().map(|s| s.count).sum();
        self.other = total.saturating_sub(kept);
    }

    pub fn entries(&self) -> &[ProcFaults] {
        &self.slots[..self.used]
    }

    /// Most faults first (ties by pid).
    pub fn sorted(&self) -> Vec<ProcFaults> {
        let mut v = self.entries().to_vec();
        v.sort_by(|a, b| b.count.cmp(&a.count).then(a.pid.cmp(&b.pid)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pf(pid: u32, count: u64) -> ProcFaults {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"proc");
        ProcFaults { pid, comm, count }
    }

    #[test]
    fn fault_top_keeps_the_largest_and_the_rest_is_other() {
        let mut t = FaultTop::default();
        // Ten processes with 1..=10 faults, and 5 faults the kernel's map no longer attributes.
        let total = (1..=10).sum::<u64>() + 5;
        t.rebuild((1..=10).map(|i| pf(100 + i as u32, i)), total);
        let got: Vec<(u32, u64)> = t.sorted().iter().map(|p| (p.pid, p.count)).collect();
        assert_eq!(
            got,
            vec![
                (110, 10),
                (109, 9),
                (108, 8),
                (107, 7),
                (106, 6),
                (105, 5),
                (104, 4),
                (103, 3)
            ]
        );
        assert_eq!(t.other, 1 + 2 + 5);
        assert_eq!(t.sorted()[0].comm_str(), "proc");
        // A later snapshot replaces the table whole.
        t.rebuild(std::iter::once(pf(7, 3)), 3);
        assert_eq!((t.entries().len(), t.other), (1, 0));
    }

    #[test]
    fn counts_per_pid_and_pid_zero_is_other() {
        let mut t = ProcTop::default();
        for pid in [10, 11, 10, 0, 10] {
            t.count(pid);
        }
        assert_eq!(
            t.sorted(),
            vec![
                ProcCount { pid: 10, count: 3 },
                ProcCount { pid: 11, count: 1 }
            ]
        );
        assert_eq!((t.other, t.total()), (1, 5));
    }

    #[test]
    fn eviction_moves_the_least_counted_to_other_and_keeps_the_total() {
        let mut t = ProcTop::default();
        // pid 100 + i is counted i + 2 times, for 8 pids: every slot taken.
        let mut total = 0;
        for i in 0..PROC_SLOTS as u32 {
            for _ in 0..i + 2 {
                t.count(100 + i);
                total += 1;
            }
        }
        assert_eq!((t.entries().len(), t.other), (PROC_SLOTS, 0));
        // A ninth pid evicts pid 100 (2 events), a tenth then evicts the ninth (1 event).
        t.count(900);
        t.count(901);
        total += 2;
        assert_eq!(t.other, 3);
        assert_eq!(t.total(), total);
        let pids: Vec<u32> = t.sorted().iter().map(|s| s.pid).collect();
        assert_eq!(pids, vec![107, 106, 105, 104, 103, 102, 101, 901]);
        assert_eq!(t.sorted()[0].count, 9);
    }
}
