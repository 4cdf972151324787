//! The space allocator: the allocated 2 MiB units of the device as an interval map ([`SpaceMap`]),
//! rebuilt from the log (replay marks the superblock + log area and every extent/strip of every
//! well-formed FILE entry), and the two placement
//! policies: simple (contiguous first-fit, falling back to at most 16 extents) and interleaved (the
//! device is split into `nbuckets` buckets; one strip is taken from each of `nstrips` buckets).
//!
//! Owns: [`SpaceMap`], [`StripeSpec`], [`alloc_simple`], [`alloc_striped`]. Allocation is a pure function
//! of the space map: nothing is marked until the new entry is appended and replayed, so the map is always
//! exactly "what the log says". Must not touch the store or the log.
//!
//! [derived] famfs picks buckets at random; this allocator takes them in device order (first buckets with
//! room), which is deterministic and produces the same kind of layout.

use std::collections::BTreeMap;

use thiserror::Error;

use super::format::{ALLOC_UNIT, Extent, Fmap, MAX_BUCKETS, MAX_SIMPLE_EXTENTS, MAX_STRIPS};

/// Allocation failures.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AllocError {
    #[error("no space: {need:#x} bytes needed, {free:#x} bytes free")]
    NoSpace { need: u64, free: u64 },
    #[error(
        "free space too fragmented: {need:#x} bytes would need more than {MAX_SIMPLE_EXTENTS} extents"
    )]
    Fragmented { need: u64 },
    #[error("invalid stripe: {0}")]
    BadStripe(String),
    #[error(
        "striped allocation: {nstrips} strips of {strip_len:#x} bytes needed, only {found} of {nbuckets} buckets have a free run that long"
    )]
    NoBuckets {
        nstrips: u32,
        strip_len: u64,
        found: u32,
        nbuckets: u32,
    },
}

/// Interleaved placement request (`famfs creat -N/-B/-C`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StripeSpec {
    /// Strips (1..=16).
    pub nstrips: u32,
    /// Buckets the device is split into (`nstrips..=64`).
    pub nbuckets: u32,
    /// Chunk size: a power of 2 and a multiple of 2 MiB.
    pub chunk_size: u64,
}

impl StripeSpec {
    pub fn check(&self) -> Result<(), AllocError> {
        if self.nstrips == 0 || self.nstrips as usize > MAX_STRIPS {
            return Err(AllocError::BadStripe(format!(
                "nstrips {} (must be 1..={MAX_STRIPS})",
                self.nstrips
            )));
        }
        if self.nbuckets < self.nstrips || self.nbuckets > MAX_BUCKETS {
            return Err(AllocError::BadStripe(format!(
                "nbuckets {} (must be nstrips..={MAX_BUCKETS}, nstrips = {})",
                self.nbuckets, self.nstrips
            )));
        }
        if !self.chunk_size.is_power_of_two() || !self.chunk_size.is_multiple_of(ALLOC_UNIT) {
            return Err(AllocError::BadStripe(format!(
                "chunk size {:#x} (must be a power of 2 and a multiple of 2 MiB)",
                self.chunk_size
            )));
        }
        Ok(())
    }
}

/// The allocated 2 MiB units of the device as a set of disjoint, non-adjacent runs `[start, end)` (an
/// interval map): memory grows with the number of separate allocated runs the log describes, never
/// with the device size a superblock claims, and marking or testing a range costs O(log n) plus the
/// runs it merges (each run is merged away once, so a whole replay stays O(n log n)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaceMap {
    /// start unit → end unit (exclusive); runs never overlap or touch (touching runs are merged).
    runs: BTreeMap<u64, u64>,
    units: u64,
    used: u64,
}

fn units_for(bytes: u64) -> u64 {
    bytes / ALLOC_UNIT + u64::from(!bytes.is_multiple_of(ALLOC_UNIT))
}

impl SpaceMap {
    /// All free; `dev_size / 2 MiB` units (a partial tail unit is never allocated).
    pub fn new(dev_size: u64) -> SpaceMap {
        SpaceMap {
            runs: BTreeMap::new(),
            units: dev_size / ALLOC_UNIT,
            used: 0,
        }
    }

    pub fn units(&self) -> u64 {
        self.units
    }

    /// The run containing `unit`, if any.
    fn run_at(&self, unit: u64) -> Option<(u64, u64)> {
        self.runs
            .range(..=unit)
            .next_back()
            .filter(|&(_, &e)| e > unit)
            .map(|(&s, &e)| (s, e))
    }

    pub fn is_set(&self, unit: u64) -> bool {
        self.run_at(unit).is_some()
    }

    /// First allocated unit inside `[first, end)`.
    pub fn first_set(&self, first: u64, end: u64) -> Option<u64> {
        if first >= end {
            return None;
        }
        if self.run_at(first).is_some() {
            return Some(first);
        }
        self.runs.range(first..end).next().map(|(&s, _)| s)
    }

    /// The unit range `[off, off + len)` covers, rounded out to whole units and clipped to the device.
    pub fn unit_range(&self, off: u64, len: u64) -> (u64, u64) {
        let first = off / ALLOC_UNIT;
        let end = off
            .checked_add(len)
            .map_or(self.units, units_for)
            .min(self.units);
        (first, end)
    }

    /// Mark `[off, off + len)`, rounded out to whole units and clipped to the device. Returns the
    /// first unit that was already set (an allocation collision), if any; every unit ends up set.
    pub fn mark(&mut self, off: u64, len: u64) -> Option<u64> {
        let (first, end) = self.unit_range(off, len);
        self.mark_units(first, end, |_, _| {})
    }

    /// Mark units `[first, end)`; `gap(s, e)` is called, in order, for every part that was free.
    /// Returns the first unit that was already set.
    pub fn mark_units(
        &mut self,
        first: u64,
        end: u64,
        mut gap: impl FnMut(u64, u64),
    ) -> Option<u64> {
        if first >= end {
            return None;
        }
        // At or after the last run (the usual allocation, in device order): extend it or append.
        if let Some(mut last) = self.runs.last_entry()
            && *last.key() <= first
        {
            let le = *last.get();
            if le >= end {
                return Some(first);
            }
            if le >= first {
                gap(le, end);
                self.used += end - le;
                *last.get_mut() = end;
                return (le > first).then_some(first);
            }
            gap(first, end);
            self.used += end - first;
            self.runs.insert(first, end);
            return None;
        }
        // Already set as a whole (the usual collision): nothing changes.
        let prev = self.runs.range(..=first).next_back().map(|(&s, &e)| (s, e));
        if prev.is_some_and(|(_, e)| e >= end) {
            return Some(first);
        }
        // No run starts inside `(first, end]`: extend the run reaching `first`, or add one (the
        // usual allocation, no merge).
        if self.runs.range(first + 1..=end).next().is_none() {
            return match prev {
                Some((ps, pe)) if pe >= first => {
                    gap(pe, end);
                    self.used += end - pe;
                    self.runs.insert(ps, end);
                    (pe > first).then_some(first)
                }
                _ => {
                    gap(first, end);
                    self.used += end - first;
                    self.runs.insert(first, end);
                    None
                }
            };
        }
        let mut collision = None;
        let (mut s, mut e) = (first, end);
        // A run that starts before `first` and reaches it (overlapping or touching) is merged.
        if let Some((&ps, &pe)) = self.runs.range(..first).next_back()
            && pe >= first
        {
            s = ps;
            e = e.max(pe);
        }
        // That run and every run starting inside `[first, end]` (touching at `end` included) are
        // taken out and merged into one.
        let mut cursor = first;
        while let Some((&rs, &re)) = self.runs.range(s..=end).next() {
            self.runs.remove(&rs);
            self.used -= re - rs;
            if rs > cursor {
                gap(cursor, rs.min(end));
            }
            if rs < end && re > first && collision.is_none() {
                collision = Some(rs.max(first));
            }
            cursor = cursor.max(re);
            e = e.max(re);
        }
        if cursor < end {
            gap(cursor, end);
        }
        self.runs.insert(s, e);
        self.used += e - s;
        collision
    }

    /// Free units `[first, end)`; `removed(s, e)` is called, in order, for every part that was set.
    pub fn clear_units(&mut self, first: u64, end: u64, mut removed: impl FnMut(u64, u64)) {
        if first >= end || self.runs.is_empty() {
            return;
        }
        // A run starting before `first` keeps its head (and its tail past `end`, if any).
        if let Some((rs, re)) = self.run_at(first)
            && rs < first
        {
            let ce = re.min(end);
            removed(first, ce);
            self.used -= ce - first;
            self.runs.insert(rs, first);
            if re > end {
                self.runs.insert(end, re);
                return;
            }
        }
        while let Some((&rs, &re)) = self.runs.range(first..end).next() {
            self.runs.remove(&rs);
            let ce = re.min(end);
            removed(rs, ce);
            self.used -= ce - rs;
            if re > end {
                self.runs.insert(end, re);
                return;
            }
        }
    }

    /// True when nothing is allocated.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// True when every unit of `[off, off + len)` is free (and inside the device).
    pub fn is_free(&self, off: u64, len: u64) -> bool {
        let first = off / ALLOC_UNIT;
        let Some(end) = off.checked_add(len).map(units_for) else {
            return false;
        };
        end <= self.units && self.first_set(first, end).is_none()
    }

    pub fn used_units(&self) -> u64 {
        self.used
    }

    pub fn free_bytes(&self) -> u64 {
        (self.units - self.used) * ALLOC_UNIT
    }

    /// Allocated runs `(first unit, end unit)` in device order.
    pub fn runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.runs.iter().map(|(&s, &e)| (s, e))
    }

    /// Free runs `(first unit, units)` inside `[from, to)`, in device order.
    pub fn free_runs(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let to = to.min(self.units);
        let mut cursor = self.run_at(from).map_or(from, |(_, e)| e);
        let mut next = self.runs.range(cursor..);
        let mut done = false;
        std::iter::from_fn(move || {
            while !done && cursor < to {
                let (start, after) = match next.next() {
                    Some((&s, &e)) => (s.min(to), e),
                    None => {
                        done = true;
                        (to, to)
                    }
                };
                let run = (cursor, start - cursor);
                cursor = after;
                if run.1 > 0 {
                    return Some(run);
                }
            }
            None
        })
    }

    /// First free run of `n` units inside `[from, to)`.
    pub fn find_run(&self, from: u64, to: u64, n: u64) -> Option<u64> {
        self.free_runs(from, to)
            .find(|&(_, len)| len >= n)
            .map(|(s, _)| s)
    }
}

/// Place a simple file of `size` bytes (at least one unit) in the data area starting at `data_start`:
/// the first contiguous run that fits, else the fewest free runs (largest first, at most 16), listed in
/// device order.
pub fn alloc_simple(bm: &SpaceMap, data_start: u64, size: u64) -> Result<Vec<Extent>, AllocError> {
    let need = units_for(size).max(1);
    let from = units_for(data_start);
    if let Some(start) = bm.find_run(from, bm.units(), need) {
        return Ok(vec![Extent {
            devindex: 0,
            offset: start * ALLOC_UNIT,
            len: need * ALLOC_UNIT,
        }]);
    }
    let mut runs: Vec<(u64, u64)> = bm.free_runs(from, bm.units()).collect();
    let free: u64 = runs.iter().map(|r| r.1).sum();
    if free < need {
        return Err(AllocError::NoSpace {
            need: need.saturating_mul(ALLOC_UNIT),
            free: free * ALLOC_UNIT,
        });
    }
    runs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut left = need;
    let mut chosen = Vec::new();
    for (start, len) in runs {
        if left == 0 {
            break;
        }
        if chosen.len() == MAX_SIMPLE_EXTENTS {
            return Err(AllocError::Fragmented {
                need: need * ALLOC_UNIT,
            });
        }
        let take = len.min(left);
        chosen.push(Extent {
            devindex: 0,
            offset: start * ALLOC_UNIT,
            len: take * ALLOC_UNIT,
        });
        left -= take;
    }
    chosen.sort_by_key(|e| e.offset);
    Ok(chosen)
}

/// Place an interleaved file: strips of `ceil(size / (chunk × nstrips)) × chunk` bytes (at least one
/// chunk), one from each of the first `nstrips` buckets (in device order) that have a free run that
/// long. Buckets split the whole device into `nbuckets` equal unit ranges (the last takes the rest).
pub fn alloc_striped(
    bm: &SpaceMap,
    data_start: u64,
    size: u64,
    spec: &StripeSpec,
) -> Result<Fmap, AllocError> {
    spec.check()?;
    let stripe_bytes = spec.chunk_size.saturating_mul(u64::from(spec.nstrips));
    let stripes = size.div_ceil(stripe_bytes).max(1);
    let strip_len = stripes
        .checked_mul(spec.chunk_size)
        .ok_or(AllocError::NoSpace {
            need: u64::MAX,
            free: bm.free_bytes(),
        })?;
    let strip_units = strip_len / ALLOC_UNIT;
    let bucket_units = bm.units() / u64::from(spec.nbuckets);
    if bucket_units < strip_units {
        return Err(AllocError::BadStripe(format!(
            "a strip of {strip_len:#x} bytes does not fit in a bucket of {:#x} bytes ({} buckets)",
            bucket_units * ALLOC_UNIT,
            spec.nbuckets
        )));
    }
    let from = units_for(data_start);
    let mut strips = Vec::with_capacity(spec.nstrips as usize);
    for b in 0..u64::from(spec.nbuckets) {
        if strips.len() == spec.nstrips as usize {
            break;
        }
        let lo = (b * bucket_units).max(from);
        let hi = if b + 1 == u64::from(spec.nbuckets) {
            bm.units()
        } else {
            (b + 1) * bucket_units
        };
        if let Some(start) = bm.find_run(lo, hi, strip_units) {
            strips.push(Extent {
                devindex: 0,
                offset: start * ALLOC_UNIT,
                len: strip_len,
            });
        }
    }
    if strips.len() < spec.nstrips as usize {
        return Err(AllocError::NoBuckets {
            nstrips: spec.nstrips,
            strip_len,
            found: strips.len() as u32,
            nbuckets: spec.nbuckets,
        });
    }
    Ok(Fmap::Interleaved {
        chunk_size: spec.chunk_size,
        strips,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const AU: u64 = ALLOC_UNIT;

    #[test]
    fn mark_reports_first_collision_and_sets_everything() {
        let mut bm = SpaceMap::new(100 * AU);
        assert_eq!(bm.mark(10 * AU, 5 * AU), None);
        assert_eq!(bm.mark(12 * AU, 5 * AU), Some(12));
        assert!((10..17).all(|u| bm.is_set(u)));
        assert!(!bm.is_set(17) && !bm.is_set(9));
        assert_eq!(bm.used_units(), 7);
        // Rounding out: a 1-byte range marks its unit; clipped to the device.
        assert_eq!(bm.mark(50 * AU + 1, 1), None);
        assert!(bm.is_set(50));
        assert_eq!(bm.mark(99 * AU, 10 * AU), None);
        assert_eq!(bm.used_units(), 9);
        assert_eq!(bm.mark(u64::MAX - 5, 100), None);
    }

    #[test]
    fn runs_merge_touching_and_overlapping_and_report_gaps() {
        let mut m = SpaceMap::new(100 * AU);
        assert_eq!(m.mark(10 * AU, 2 * AU), None);
        assert_eq!(m.mark(20 * AU, 2 * AU), None);
        // Touching runs merge: [10, 12) + [12, 14) = [10, 14).
        assert_eq!(m.mark(12 * AU, 2 * AU), None);
        assert_eq!(m.runs().collect::<Vec<_>>(), vec![(10, 14), (20, 22)]);
        // One mark over both: collision at the first set unit, the gaps reported in order.
        let mut gaps = Vec::new();
        assert_eq!(m.mark_units(8, 25, |s, e| gaps.push((s, e))), Some(10));
        assert_eq!(gaps, vec![(8, 10), (14, 20), (22, 25)]);
        assert_eq!(m.runs().collect::<Vec<_>>(), vec![(8, 25)]);
        assert_eq!(m.used_units(), 17);
        assert_eq!(m.first_set(0, 8), None);
        assert_eq!(m.first_set(0, 9), Some(8));
        assert_eq!(m.first_set(24, 30), Some(24));
        assert_eq!(m.first_set(25, 30), None);
        // A huge device costs nothing until the log claims space in it.
        let mut big = SpaceMap::new(u64::MAX);
        assert_eq!(big.units(), u64::MAX / AU);
        assert_eq!(big.mark(AU, u64::MAX - AU), None);
        assert_eq!(big.runs().count(), 1);
        assert_eq!(big.mark(7 * AU, AU), Some(7));
        assert_eq!(
            big.free_runs(0, big.units()).collect::<Vec<_>>(),
            vec![(0, 1)]
        );
    }

    proptest::proptest! {
        /// The interval map answers exactly like a plain bitmap for every operation.
        #[test]
        fn space_map_equals_a_bitmap(
            ops in proptest::collection::vec((0u8..4, 0u64..130, 0u64..40), 1..60),
            probe in (0u64..130, 0u64..140, 1u64..20),
        ) {
            const UNITS: u64 = 128;
            let mut m = SpaceMap::new(UNITS * AU + 5);
            let mut bits = vec![false; UNITS as usize];
            for &(op, u, n) in &ops {
                let end = (u + n).min(UNITS);
                if op == 0 {
                    // Clear: the removed parts are exactly the set units, in order.
                    let mut gone = Vec::new();
                    m.clear_units(u, end, |s, e| gone.extend(s..e));
                    let set: Vec<u64> = (u..end).filter(|&k| bits[k as usize]).collect();
                    proptest::prop_assert_eq!(gone, set);
                    for k in u..end {
                        bits[k as usize] = false;
                    }
                    continue;
                }
                let want = (u..end).find(|&k| bits[k as usize]);
                let mut newly = Vec::new();
                let got = m.mark_units(u, end, |s, e| newly.extend(s..e));
                let fresh: Vec<u64> = (u..end).filter(|&k| !bits[k as usize]).collect();
                proptest::prop_assert_eq!(got, want);
                proptest::prop_assert_eq!(newly, fresh);
                for k in u..end {
                    bits[k as usize] = true;
                }
            }
            // Canonical form: no two runs touch, so equal sets compare equal.
            let runs: Vec<(u64, u64)> = m.runs().collect();
            proptest::prop_assert!(runs.windows(2).all(|w| w[0].1 < w[1].0), "{:?}", runs);
            let used = bits.iter().filter(|&&b| b).count() as u64;
            proptest::prop_assert_eq!(m.used_units(), used);
            proptest::prop_assert_eq!(m.free_bytes(), (UNITS - used) * AU);
            for k in 0..UNITS + 3 {
                proptest::prop_assert_eq!(m.is_set(k), bits.get(k as usize) == Some(&true));
            }
            let (from, to, n) = probe;
            let mut runs = Vec::new();
            let mut k = from;
            while k < to.min(UNITS) {
                if bits[k as usize] {
                    k += 1;
                    continue;
                }
                let s = k;
                while k < to.min(UNITS) && !bits[k as usize] {
                    k += 1;
                }
                runs.push((s, k - s));
            }
            proptest::prop_assert_eq!(m.free_runs(from, to).collect::<Vec<_>>(), runs.clone());
            proptest::prop_assert_eq!(
                m.find_run(from, to, n),
                runs.iter().find(|r| r.1 >= n).map(|r| r.0)
            );
            let free = from + n <= UNITS && (from..from + n).all(|k| !bits[k as usize]);
            proptest::prop_assert_eq!(m.is_free(from * AU, n * AU), free);
        }
    }

    #[test]
    fn free_runs_cross_word_boundaries() {
        let mut bm = SpaceMap::new(300 * AU);
        bm.mark(0, 5 * AU);
        bm.mark(70 * AU, AU);
        bm.mark(128 * AU, 64 * AU);
        let runs: Vec<_> = bm.free_runs(0, 300).collect();
        assert_eq!(runs, vec![(5, 65), (71, 57), (192, 108)]);
        assert_eq!(bm.find_run(0, 300, 60), Some(5));
        assert_eq!(bm.find_run(0, 300, 66), Some(192));
        assert_eq!(bm.find_run(0, 200, 66), None);
    }

    #[test]
    fn simple_contiguous_then_fragmented_fallback() {
        let mut bm = SpaceMap::new(64 * AU);
        bm.mark(0, 5 * AU);
        let e = alloc_simple(&bm, 5 * AU, 3 * AU + 1).unwrap();
        assert_eq!(
            e,
            vec![Extent {
                devindex: 0,
                offset: 5 * AU,
                len: 4 * AU
            }]
        );
        // 0 bytes still get one unit.
        assert_eq!(alloc_simple(&bm, 5 * AU, 0).unwrap()[0].len, AU);
        // Fragment: every other unit used from 5 to 39; free: singles 6, 8, .., 38 and 40..64.
        for u in (5..41).step_by(2) {
            bm.mark(u * AU, AU);
        }
        let e = alloc_simple(&bm, 5 * AU, 25 * AU).unwrap();
        // Largest run (40..64 = 24 units) plus one single unit, in device order.
        assert_eq!(
            e,
            vec![
                Extent {
                    devindex: 0,
                    offset: 6 * AU,
                    len: AU
                },
                Extent {
                    devindex: 0,
                    offset: 40 * AU,
                    len: 24 * AU
                }
            ]
        );
        for x in &e {
            assert!(bm.is_free(x.offset, x.len));
        }
        // More than 16 pieces needed.
        assert!(matches!(
            alloc_simple(&bm, 5 * AU, 24 * AU + 16 * AU),
            Err(AllocError::Fragmented { .. })
        ));
        assert!(matches!(
            alloc_simple(&bm, 5 * AU, 100 * AU),
            Err(AllocError::NoSpace { .. })
        ));
    }

    #[test]
    fn striped_one_strip_per_bucket() {
        let mut bm = SpaceMap::new(64 * AU);
        bm.mark(0, 5 * AU);
        let spec = StripeSpec {
            nstrips: 3,
            nbuckets: 4,
            chunk_size: AU,
        };
        // 5 MiB over 3 strips of 2 MiB chunks: 1 stripe → strips of 2 MiB.
        let f = alloc_striped(&bm, 5 * AU, 5 << 20, &spec).unwrap();
        let Fmap::Interleaved { chunk_size, strips } = &f else {
            panic!()
        };
        assert_eq!(*chunk_size, AU);
        let offs: Vec<u64> = strips.iter().map(|s| s.offset / AU).collect();
        assert_eq!(offs, vec![5, 16, 32]);
        assert!(strips.iter().all(|s| s.len == AU));
        // Bucket 0 full → buckets 1, 2, 3.
        bm.mark(5 * AU, 11 * AU);
        let f = alloc_striped(&bm, 5 * AU, 13 << 20, &spec).unwrap();
        let offs: Vec<(u64, u64)> = f
            .extents()
            .iter()
            .map(|s| (s.offset / AU, s.len / AU))
            .collect();
        // 13 MiB / (2 MiB × 3) → 3 stripes → strips of 3 units.
        assert_eq!(offs, vec![(16, 3), (32, 3), (48, 3)]);
        bm.mark(32 * AU, 16 * AU);
        assert!(matches!(
            alloc_striped(&bm, 5 * AU, 13 << 20, &spec),
            Err(AllocError::NoBuckets { found: 2, .. })
        ));
        for bad in [
            StripeSpec { nstrips: 0, ..spec },
            StripeSpec {
                nstrips: 17,
                nbuckets: 20,
                ..spec
            },
            StripeSpec {
                nbuckets: 2,
                ..spec
            },
            StripeSpec {
                nbuckets: 65,
                ..spec
            },
            StripeSpec {
                chunk_size: 3 * AU,
                ..spec
            },
            StripeSpec {
                chunk_size: 4096,
                ..spec
            },
        ] {
            assert!(matches!(
                alloc_striped(&bm, 5 * AU, 1, &bad),
                Err(AllocError::BadStripe(_))
            ));
        }
    }
}
