//! The famfs server check's workload, defined once: the files the guest copies into its famfs image and
//! reads back (`guest`), from which the host derives every expected value (`eval_famfs`).
//!
//! Owns the file table and the content pattern; must not run or assert anything.

/// Files `image cp`ed into a famfs image in the guest, as (path in the image, size, times opened and
/// fully read with read(2)). Sizes are distinct and no multiple of the 4 KiB page (so every file ends
/// in a short READ), open counts are distinct (so a request joined to the wrong file shows in its
/// counts).
pub(super) const FAMFS_READ_FILES: [(&str, u64, u64); 4] = [
    ("data/a", 1_000, 2),
    ("data/b", 12_345, 3),
    ("data/sub/c", 131_073, 4),
    ("d", 1_048_577, 5),
];
/// The file the famfs check reads through a shared mapping: opened once (an open count no read file
/// has), `MADV_RANDOM`, every page touched once in order.
pub(super) const FAMFS_MMAP_FILE: (&str, u64) = ("data/mapped", 300_003);
pub(super) const PAGE: u64 = 4096;

/// Byte `j` of famfs check file number `k` (the read files in order, then the mapped file): the page
/// number and the file number are mixed in, so a page served from the wrong offset or file differs.
pub(super) fn famfs_pattern(k: usize, size: u64) -> Vec<u8> {
    (0..size)
        .map(|j| ((j.wrapping_mul(31) ^ (j >> 12)) as u8).wrapping_add((k as u8).wrapping_mul(17)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn famfs_patterns_differ_by_file_and_page() {
        let a = famfs_pattern(0, 3 * PAGE);
        let b = famfs_pattern(1, 3 * PAGE);
        assert_eq!(a.len(), 3 * PAGE as usize);
        assert_ne!(a, b);
        // A page served from the wrong offset differs.
        let p = PAGE as usize;
        assert_ne!(a[..p], a[p..2 * p]);
        assert_ne!(a[p..2 * p], a[2 * p..]);
    }
}
