//! Shared byte helpers of the format structures: little-endian field access at constant offsets
//! inside fixed-size buffers, the §5 CRC, and the length check that turns a short slice into
//! [`FormatError::Truncated`].
//!
//! Owns: the byte-order and CRC rules. Must not know any structure's layout (callers pass offsets).

use super::error::FormatError;

pub(super) fn get_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

pub(super) fn get_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

pub(super) fn get_arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[off..off + N]);
    a
}

pub(super) fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

pub(super) fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// CRC-32/ISO-HDLC (zlib `crc32(0, ...)`), widened to the u64 slot.
pub fn crc(bytes: &[u8]) -> u64 {
    u64::from(crc32fast::hash(bytes))
}

pub(super) fn need<'a, const N: usize>(
    b: &'a [u8],
    what: &'static str,
    offset: u64,
) -> Result<&'a [u8; N], FormatError> {
    b.get(..N)
        .and_then(|s| <&[u8; N]>::try_from(s).ok())
        .ok_or(FormatError::Truncated {
            what,
            offset,
            need: N as u64,
            have: b.len() as u64,
        })
}
