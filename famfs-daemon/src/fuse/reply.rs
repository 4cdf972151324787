//! Output buffers a filesystem fills while answering a request: READDIR / READDIRPLUS entry packing
//! straight into the worker's reply buffer, the GET_FMAP reply slot, and a READ described as byte
//! ranges of a descriptor ([`FdRead`]). Nothing here allocates.
//!
//! Owns only packing; sending, size limits and records are the session's.

use std::os::fd::BorrowedFd;

use super::{
    Errno,
    abi::{DirentHead, EntryOut, WireField, dirent_size, direntplus_size},
    fmap::{FmapError, WireFmap},
};

/// Directory entry types for [`DirentBuf::push`] (`DT_*`, = `st_mode >> 12`).
pub mod dt {
    pub const UNKNOWN: u32 = 0;
    pub const FIFO: u32 = 1;
    pub const CHR: u32 = 2;
    pub const DIR: u32 = 4;
    pub const BLK: u32 = 6;
    pub const REG: u32 = 8;
    pub const LNK: u32 = 10;
    pub const SOCK: u32 = 12;

    /// The `DT_*` type of a `st_mode`.
    pub const fn of_mode(mode: u32) -> u32 {
        (mode >> 12) & 0xf
    }
}

/// Write a dirent (head + name + zero padding to 8) at the start of `dst`, which is exactly
/// `dirent_size(name.len())` long.
fn write_dirent(dst: &mut [u8], ino: u64, next_off: u64, typ: u32, name: &[u8], namelen: u32) {
    let head = DirentHead {
        ino,
        off: next_off,
        namelen,
        typ,
    };
    head.write(dst);
    let end = DirentHead::SIZE + name.len();
    dst[DirentHead::SIZE..end].copy_from_slice(name);
    dst[end..].fill(0);
}

/// READDIR reply under construction: packed `fuse_dirent`s, never more than the kernel asked for.
#[derive(Debug)]
pub struct DirentBuf<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> DirentBuf<'a> {
    /// Pack into `buf` (its length is the reply's limit).
    pub fn new(buf: &'a mut [u8]) -> Self {
        DirentBuf { buf, len: 0 }
    }

    /// Append an entry; `next_off` is the offset the kernel passes back to continue after it, `typ` a
    /// [`dt`] value. Returns false (nothing written) when it does not fit: stop there.
    pub fn push(&mut self, ino: u64, next_off: u64, typ: u32, name: &[u8]) -> bool {
        let Ok(namelen) = u32::try_from(name.len()) else {
            return false;
        };
        let need = dirent_size(name.len());
        let Some(dst) = self.buf.get_mut(self.len..self.len + need) else {
            return false;
        };
        write_dirent(dst, ino, next_off, typ, name, namelen);
        self.len += need;
        true
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The packed bytes so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// READDIRPLUS reply under construction: each entry is a 128-byte `fuse_entry_out` then a dirent.
///
/// The kernel takes a lookup reference for every entry whose `nodeid` is non-zero except `.` and `..`
/// (answer those with `nodeid` 0 or expect no FORGET for them).
#[derive(Debug)]
pub struct DirentPlusBuf<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> DirentPlusBuf<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        DirentPlusBuf { buf, len: 0 }
    }

    /// Append an entry with its attributes; false (nothing written) when it does not fit.
    pub fn push(&mut self, entry: &EntryOut, next_off: u64, typ: u32, name: &[u8]) -> bool {
        let Ok(namelen) = u32::try_from(name.len()) else {
            return false;
        };
        let need = direntplus_size(name.len());
        let Some(dst) = self.buf.get_mut(self.len..self.len + need) else {
            return false;
        };
        entry.write(dst);
        write_dirent(
            &mut dst[EntryOut::SIZE..],
            entry.attr.ino,
            next_off,
            typ,
            name,
            namelen,
        );
        self.len += need;
        true
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The GET_FMAP reply slot: the filesystem calls [`FmapReply::set`] once with the file's map; the
/// session then applies the dialect's size rule (full reply, needed-size reply, or EINVAL).
#[derive(Debug)]
pub struct FmapReply<'a> {
    buf: &'a mut Vec<u8>,
    encoded: Option<(usize, usize)>,
}

impl<'a> FmapReply<'a> {
    /// A slot encoding into `buf` (reused across requests).
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        FmapReply { buf, encoded: None }
    }

    /// Serialize `fmap` as the reply. A later call replaces an earlier one.
    pub fn set(&mut self, fmap: &WireFmap<'_>) -> Result<(), FmapError> {
        self.encoded = None;
        let bytes = fmap.encode_into(self.buf)?;
        self.encoded = Some((bytes, fmap.extent_count()));
        Ok(())
    }

    /// `(serialized bytes, extent records)` once set.
    pub fn encoded(&self) -> Option<(usize, usize)> {
        self.encoded
    }

    /// The serialized fmap (empty until set).
    pub fn bytes(&self) -> &[u8] {
        match self.encoded {
            Some((n, _)) => &self.buf[..n],
            None => &[],
        }
    }
}

impl From<FmapError> for Errno {
    fn from(_: FmapError) -> Errno {
        Errno::EINVAL
    }
}

/// Ranges of one descriptor a READ reply may hold at most.
pub const FD_READ_RANGES: usize = 8;

/// A READ answered as "these byte ranges of this descriptor, in order": the session may splice them
/// into `/dev/fuse` without copying them through its memory. At most [`FD_READ_RANGES`] ranges, all
/// of one descriptor, never more bytes in total than the limit it was made with.
#[derive(Debug)]
pub struct FdRead<'a> {
    fd: Option<BorrowedFd<'a>>,
    ranges: [(u64, usize); FD_READ_RANGES],
    n: usize,
    total: usize,
    limit: usize,
}

impl<'a> FdRead<'a> {
    /// An empty answer of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        FdRead {
            fd: None,
            ranges: [(0, 0); FD_READ_RANGES],
            n: 0,
            total: 0,
            limit,
        }
    }

    /// Append `len` bytes at offset `off` of `fd`. False (nothing added) if `fd` differs from the
    /// earlier ranges' descriptor, the ranges are full, or the limit would be passed.
    pub fn push(&mut self, fd: BorrowedFd<'a>, off: u64, len: usize) -> bool {
        use std::os::fd::AsRawFd;
        if self.fd.is_some_and(|f| f.as_raw_fd() != fd.as_raw_fd())
            || self.n == FD_READ_RANGES
            || self.total + len > self.limit
        {
            return false;
        }
        self.fd = Some(fd);
        self.ranges[self.n] = (off, len);
        self.n += 1;
        self.total += len;
        true
    }

    /// The descriptor (none until a range was pushed).
    pub fn fd(&self) -> Option<BorrowedFd<'a>> {
        self.fd
    }

    /// The ranges, as `(offset, length)`.
    pub fn ranges(&self) -> &[(u64, usize)] {
        &self.ranges[..self.n]
    }

    /// Bytes in all ranges.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Drop every range (the limit stays).
    pub fn clear(&mut self) {
        self.fd = None;
        self.n = 0;
        self.total = 0;
    }
}
