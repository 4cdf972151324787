//! Which live file owns each allocated unit, for the F4 (allocation collision) message: the first live
//! file, in log order, whose extents cover the unit. Kept as disjoint pieces `[start, end) → inode`
//! beside a [`SpaceMap`] of the owned units, so claiming a file's extents and asking for a unit's owner
//! cost O(log n) (plus the pieces a claim creates), whatever the extents' sizes: a log of colliding
//! entries replays in O(n log n), not O(n²) scans of every inode.
//!
//! Owns: [`Owners`]. Must not decide what a collision is (that is the space map's first set unit) or
//! which files are live (that is the replay rules).

use std::collections::BTreeMap;

use crate::famfs::alloc::SpaceMap;

/// Owner pieces of the device's allocation units.
#[derive(Clone, Debug)]
pub(super) struct Owners {
    /// Units with an owner (merged runs; answers "is this part already owned?").
    owned: SpaceMap,
    /// start unit → (end unit, inode id); pieces never overlap.
    pieces: BTreeMap<u64, (u64, u64)>,
}

impl Owners {
    /// No owners on a device of `dev_size` bytes.
    pub(super) fn new(dev_size: u64) -> Owners {
        Owners {
            owned: SpaceMap::new(dev_size),
            pieces: BTreeMap::new(),
        }
    }

    /// Give inode `id` every unit of device bytes `[off, off + len)` (rounded out to units) that has no
    /// owner yet (earlier files keep theirs).
    pub(super) fn claim(&mut self, off: u64, len: u64, id: u64) {
        let (first, end) = self.owned.unit_range(off, len);
        let pieces = &mut self.pieces;
        self.owned.mark_units(first, end, |s, e| {
            pieces.insert(s, (e, id));
        });
    }

    /// The inode owning `unit`, if any.
    pub(super) fn owner_of(&self, unit: u64) -> Option<u64> {
        self.pieces
            .range(..=unit)
            .next_back()
            .filter(|&(_, &(end, _))| end > unit)
            .map(|(_, &(_, id))| id)
    }
}
