//! Log2 histogram geometry shared by kernel aggregation and user-space bucket rebuilding.
//!
//! Slot `i` counts values `v` with `floor(log2(v)) == i` (slot 0 also takes `v == 0`); the last slot takes
//! everything larger. User space turns slots into cumulative buckets with upper bound `2^(i+1) - 1`.

/// Latency slots, in nanoseconds: the last slot starts at 2^39 ns (about 9 minutes).
pub const LAT_SLOTS: usize = 40;
/// Size slots, in bytes: the last slot starts at 2^23 bytes (8 MiB).
pub const SIZE_SLOTS: usize = 24;

/// `floor(log2(v))`, 0 for `v == 0`, clamped to `slots - 1`. Branch-light so the verifier accepts it.
#[inline(always)]
pub fn log2_slot(v: u64, slots: usize) -> usize {
    let mut x = v;
    let mut r: u32 = 0;
    let mut shift: u32;
    shift = ((x > 0xFFFF_FFFF) as u32) << 5;
    x >>= shift;
    r |= shift;
    shift = ((x > 0xFFFF) as u32) << 4;
    x >>= shift;
    r |= shift;
    shift = ((x > 0xFF) as u32) << 3;
    x >>= shift;
    r |= shift;
    shift = ((x > 0xF) as u32) << 2;
    x >>= shift;
    r |= shift;
    shift = ((x > 0x3) as u32) << 1;
    x >>= shift;
    r |= shift;
    r |= (x >> 1) as u32;
    let r = r as usize;
    if r >= slots { slots - 1 } else { r }
}

/// Inclusive upper bound of slot `i` (`2^(i+1) - 1`), or `None` for the open-ended last slot.
pub fn slot_upper_bound(i: usize, slots: usize) -> Option<u64> {
    if i + 1 >= slots {
        None
    } else {
        Some((1u64 << (i + 1)) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_slots_match_definition() {
        assert_eq!(log2_slot(0, 40), 0);
        assert_eq!(log2_slot(1, 40), 0);
        assert_eq!(log2_slot(2, 40), 1);
        assert_eq!(log2_slot(3, 40), 1);
        assert_eq!(log2_slot(4, 40), 2);
        assert_eq!(log2_slot(1023, 40), 9);
        assert_eq!(log2_slot(1024, 40), 10);
        assert_eq!(log2_slot(u64::MAX, 64), 63);
        assert_eq!(log2_slot(u64::MAX, 40), 39);
        for i in 0..63u32 {
            assert_eq!(log2_slot(1u64 << i, 64), i as usize);
            assert_eq!(log2_slot((1u64 << (i + 1)) - 1, 64), i as usize);
        }
    }

    #[test]
    fn upper_bounds() {
        assert_eq!(slot_upper_bound(0, 40), Some(1));
        assert_eq!(slot_upper_bound(9, 40), Some(1023));
        assert_eq!(slot_upper_bound(39, 40), None);
    }
}
