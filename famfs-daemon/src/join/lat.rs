//! A per-file log2 latency histogram that is exact and small: a file's latencies usually fall in a few
//! neighbouring slots, so up to [`INLINE`] distinct slots are kept inline (48 bytes instead of the
//! 320 of a full `[u64; LAT_SLOTS]`), and a file that needs more spills once into a full array on the
//! heap. Counting allocates nothing except at that one spill per file.
//!
//! Owns the representation only; what the slots mean (`famfs_common::hist::log2_slot`) is the caller's.
//! Must not import anything of the daemon.

use famfs_common::hist::LAT_SLOTS;

/// Distinct slots held inline before the histogram spills to a full array.
pub const INLINE: usize = 4;

/// Exact counts per log2 slot (`0..LAT_SLOTS`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatHist {
    /// Slot numbers of the inline counts (the first `used`).
    slot: [u8; INLINE],
    used: u8,
    count: [u64; INLINE],
    /// Every slot, once more than [`INLINE`] distinct slots were counted (then the inline part is unused).
    full: Option<Box<[u64; LAT_SLOTS]>>,
}

impl LatHist {
    /// Count `n` observations in `slot` (clamped to the last slot).
    pub fn add(&mut self, slot: usize, n: u64) {
        let slot = slot.min(LAT_SLOTS - 1);
        if let Some(full) = &mut self.full {
            full[slot] += n;
            return;
        }
        let used = usize::from(self.used);
        if let Some(i) = self.slot[..used]
            .iter()
            .position(|&s| usize::from(s) == slot)
        {
            self.count[i] += n;
            return;
        }
        if used < INLINE {
            // `slot < LAT_SLOTS` (40) fits a u8.
            self.slot[used] = slot as u8;
            self.count[used] = n;
            self.used += 1;
            return;
        }
        let mut full = Box::new(self.to_array());
        full[slot] += n;
        self.full = Some(full);
        self.used = 0;
    }

    /// The count of `slot`.
    pub fn get(&self, slot: usize) -> u64 {
        match &self.full {
            Some(full) => full.get(slot).copied().unwrap_or(0),
            None => self.slot[..usize::from(self.used)]
                .iter()
                .zip(&self.count)
                .filter(|(s, _)| usize::from(**s) == slot)
                .map(|(_, c)| *c)
                .sum(),
        }
    }

    /// Call `f(slot, count)` for every slot with a count (in no particular order).
    pub fn for_each(&self, mut f: impl FnMut(usize, u64)) {
        match &self.full {
            Some(full) => {
                for (i, c) in full.iter().enumerate().filter(|(_, c)| **c != 0) {
                    f(i, *c);
                }
            }
            None => {
                for (s, c) in self.slot[..usize::from(self.used)].iter().zip(&self.count) {
                    f(usize::from(*s), *c);
                }
            }
        }
    }

    /// Every slot.
    pub fn to_array(&self) -> [u64; LAT_SLOTS] {
        let mut a = [0u64; LAT_SLOTS];
        self.for_each(|i, c| a[i] += c);
        a
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        match &self.full {
            Some(full) => full.iter().all(|&c| c == 0),
            None => self.count[..usize::from(self.used)].iter().all(|&c| c == 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_then_spilled_counts_stay_exact() {
        let mut h = LatHist::default();
        let mut want = [0u64; LAT_SLOTS];
        assert!(h.is_empty());
        // Four distinct slots stay inline.
        for (slot, n) in [(10, 1), (11, 2), (10, 3), (0, 1), (39, 7)] {
            h.add(slot, n);
            want[slot] += n;
        }
        assert!(h.full.is_none());
        assert_eq!(h.to_array(), want);
        assert_eq!((h.get(10), h.get(11), h.get(12)), (4, 2, 0));
        // A fifth spills, keeping every count; a slot past the end clamps to the last.
        h.add(20, 5);
        h.add(99, 1);
        want[20] += 5;
        want[39] += 1;
        assert!(h.full.is_some());
        assert_eq!(h.to_array(), want);
        assert_eq!(h.get(39), 8);
        let mut seen = Vec::new();
        h.for_each(|i, c| seen.push((i, c)));
        assert_eq!(seen, vec![(0, 1), (10, 4), (11, 2), (20, 5), (39, 8)]);
    }
}
