//! Which live file owns each allocated unit, for the F4 (allocation collision) message: the first live
//! file, in log order, whose extents cover the unit. Kept as disjoint pieces `[start, end) → inode`,
//! so claiming and asking cost O(log n) whatever the extents' sizes: a log of colliding entries
//! replays in O(n log n), not with a scan of every inode per collision.
//!
//! Pieces come from the units an entry claims first (the gaps its marks filled in the space map).
//! Units first claimed by an entry that is then rejected (D1/D2) are orphans until a live file covers
//! them. Owns: [`Owners`]. Must not decide what a collision is (that is the space map) or which files
//! are live (that is the replay rules).

use std::collections::BTreeMap;

use crate::famfs::alloc::SpaceMap;

/// Owner pieces of the device's allocation units.
#[derive(Clone, Debug)]
pub(super) struct Owners {
    /// start unit → (end unit, inode id); pieces never overlap.
    pieces: BTreeMap<u64, (u64, u64)>,
    /// Claimed units with no live owner yet (first claimed by a rejected entry).
    orphans: SpaceMap,
}

impl Owners {
    /// No owners on a device of `dev_size` bytes.
    pub(super) fn new(dev_size: u64) -> Owners {
        Owners {
            pieces: BTreeMap::new(),
            orphans: SpaceMap::new(dev_size),
        }
    }

    /// An entry claimed the unit ranges `fresh` first (nobody held them): inode `id` owns them if
    /// the entry created a live file, else they wait for one.
    pub(super) fn record(&mut self, fresh: &[(u64, u64)], id: Option<u64>) {
        for &(s, e) in fresh {
            match id {
                Some(id) => {
                    self.pieces.insert(s, (e, id));
                }
                None => {
                    self.orphans.mark_units(s, e, |_, _| {});
                }
            }
        }
    }

    /// Live file `id` covers units `[first, end)`: it owns every orphan unit there.
    pub(super) fn adopt(&mut self, first: u64, end: u64, id: u64) {
        if self.orphans.is_empty() {
            return;
        }
        let pieces = &mut self.pieces;
        self.orphans.clear_units(first, end, |s, e| {
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
