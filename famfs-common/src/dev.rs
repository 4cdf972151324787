//! Device numbers as the kernel's tracepoints and maps carry them: the kernel-internal `dev_t`
//! (`major << 20 | minor`), which differs from user space's `st_dev` encoding. For FUSE's anonymous
//! devices the major is 0, so the value equals the minor, which is also the FUSE connection id.

/// Kernel `dev_t` from a major and minor number.
pub const fn kernel_dev(major: u32, minor: u32) -> u32 {
    (major << 20) | minor
}

/// Kernel `dev_t` of a user-space `st_dev` (glibc's encoding: minor bits 0..7 and 20..31, major
/// bits 8..19 and 32..43).
pub const fn kernel_dev_of_st_dev(st_dev: u64) -> u32 {
    let major = (((st_dev >> 32) & 0xffff_f000) | ((st_dev >> 8) & 0x0000_0fff)) as u32;
    let minor = (((st_dev >> 12) & 0xffff_ff00) | (st_dev & 0x0000_00ff)) as u32;
    kernel_dev(major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(kernel_dev(0, 42), 42);
        assert_eq!(kernel_dev(259, 3), (259 << 20) | 3);
        // st_dev of 259:3 in glibc's encoding is 0x10303; of 0:300 it is 0x1_0_02c (minor high bits at 20).
        assert_eq!(kernel_dev_of_st_dev(0x10303), (259 << 20) | 3);
        assert_eq!(
            kernel_dev_of_st_dev((300 & 0xff) | ((300 & !0xff) << 12)),
            300
        );
    }
}
