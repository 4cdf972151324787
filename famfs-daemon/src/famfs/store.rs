//! Backing store: a memory map (memmap2) of a regular, possibly sparse, image file, a block device or a
//! device-DAX character device; or an in-memory buffer (tests, fuzzing).
//!
//! Owns: opening and sizing the backing object, the mapping, bounds-checked reads and writes, flushes
//! (msync of a range), the exclusive log lock (flock on the image) and zero-filling without
//! un-sparsing. Must not interpret bytes: that is `format`'s job.
//!
//! Safety against SIGBUS: the mapping is sized from the object's length at open, and every access is
//! checked against `valid_len` before memory is touched. For regular files [`Store::refresh`] re-reads
//! the length with fstat and shrinks `valid_len` if the file was truncated behind our back (a truncation
//! between that check and an access can still fault; that window is inherent to mapped files).
//!
//! Coherence: on a DAX device shared by several hosts (CXL memory) CPU caches are not coherent across
//! hosts, so [`Store::flush`] also writes back the cache lines (clflush + fence) and
//! [`Store::invalidate`] drops them before a re-read, as the reference does. Regular files and block
//! devices go through the page cache and need only msync.

use std::{
    fs::{File, OpenOptions},
    io::{Seek, SeekFrom},
    os::{
        fd::AsRawFd,
        unix::fs::{FileTypeExt, MetadataExt},
    },
    path::{Path, PathBuf},
};

use memmap2::{Mmap, MmapMut, MmapOptions};
use thiserror::Error;

/// Errors of the store layer; each names the object or the byte range.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{len} bytes at byte offset {off:#x} are outside the image, which has {size:#x} bytes{note}"
    )]
    OutOfBounds {
        off: u64,
        len: u64,
        size: u64,
        note: &'static str,
    },
    #[error("{path}: not a regular file, block device or DAX character device")]
    Unsupported { path: String },
    #[error("{path}: {len:#x} bytes do not fit in this process's address space")]
    TooLarge { path: String, len: u64 },
    #[error("the image is open read-only")]
    ReadOnly,
}

/// What the store maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Regular,
    BlockDevice,
    DaxDevice,
    Memory,
}

enum Map {
    None,
    Ro(Mmap),
    Rw(MmapMut),
    Mem(Vec<u8>),
}

/// A checked view of the whole device/image.
pub struct Store {
    path: PathBuf,
    file: Option<File>,
    map: Map,
    kind: StoreKind,
    writable: bool,
    /// Bytes mapped at open.
    map_len: u64,
    /// Bytes that may be touched (≤ `map_len`; smaller if a regular file shrank).
    valid_len: u64,
}

/// Holds the exclusive log lock (flock) until dropped.
pub struct LockGuard {
    file: Option<File>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            // SAFETY: flock on a descriptor we own; unlocking cannot violate memory safety.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        op,
        source,
    }
}

/// Size of the object behind `file` (regular file length, block device size, DAX device size).
fn object_len(path: &Path, file: &mut File) -> Result<(u64, StoreKind), StoreError> {
    let md = file.metadata().map_err(io_err(path, "fstat"))?;
    let ft = md.file_type();
    if ft.is_file() {
        Ok((md.len(), StoreKind::Regular))
    } else if ft.is_block_device() {
        let len = file
            .seek(SeekFrom::End(0))
            .map_err(io_err(path, "seek to end of block device"))?;
        Ok((len, StoreKind::BlockDevice))
    } else if ft.is_char_device() {
        let rdev = md.rdev();
        let sys = format!(
            "/sys/dev/char/{}:{}/size",
            libc::major(rdev),
            libc::minor(rdev)
        );
        let text = std::fs::read_to_string(&sys).map_err(|source| StoreError::Io {
            path: path.display().to_string(),
            op: "read the DAX device size from /sys/dev/char/MAJ:MIN/size",
            source,
        })?;
        let len = text.trim().parse::<u64>().map_err(|_| StoreError::Io {
            path: path.display().to_string(),
            op: "parse the DAX device size",
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{sys}: {text:?}"),
            ),
        })?;
        Ok((len, StoreKind::DaxDevice))
    } else {
        Err(StoreError::Unsupported {
            path: path.display().to_string(),
        })
    }
}

impl Store {
    /// Map `path` read-only or read-write. The mapping length is the object's length now.
    pub fn open(path: &Path, writable: bool) -> Result<Store, StoreError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(io_err(path, "open"))?;
        let (len, kind) = object_len(path, &mut file)?;
        let map_len = usize::try_from(len).map_err(|_| StoreError::TooLarge {
            path: path.display().to_string(),
            len,
        })?;
        let map = if map_len == 0 {
            Map::None
        } else if writable {
            // SAFETY: a shared mapping of the image. Other processes (and hosts, on shared memory) may
            // change the bytes underneath; that is the nature of a shared-memory filesystem and every
            // reader re-validates (CRCs) what it reads. The length comes from the object itself and
            // every access below is bounds-checked against it.
            Map::Rw(
                unsafe { MmapOptions::new().len(map_len).map_mut(&file) }
                    .map_err(io_err(path, "mmap read-write"))?,
            )
        } else {
            // SAFETY: as above, read-only.
            Map::Ro(
                unsafe { MmapOptions::new().len(map_len).map(&file) }
                    .map_err(io_err(path, "mmap read-only"))?,
            )
        };
        Ok(Store {
            path: path.to_path_buf(),
            file: Some(file),
            map,
            kind,
            writable,
            map_len: len,
            valid_len: len,
        })
    }

    /// An in-memory store over `bytes` (always writable; flush and lock are no-ops).
    pub fn from_vec(bytes: Vec<u8>) -> Store {
        let len = bytes.len() as u64;
        Store {
            path: PathBuf::from("<memory>"),
            file: None,
            map: Map::Mem(bytes),
            kind: StoreKind::Memory,
            writable: true,
            map_len: len,
            valid_len: len,
        }
    }

    /// The in-memory bytes of a [`Store::from_vec`] store.
    pub fn into_vec(self) -> Option<Vec<u8>> {
        match self.map {
            Map::Mem(v) => Some(v),
            _ => None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// Bytes that may be accessed.
    pub fn len(&self) -> u64 {
        self.valid_len
    }

    pub fn is_empty(&self) -> bool {
        self.valid_len == 0
    }

    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Re-check the object's length (regular files: fstat). Returns the accessible length.
    pub fn refresh(&mut self) -> Result<u64, StoreError> {
        if self.kind == StoreKind::Regular
            && let Some(f) = &self.file
        {
            let now = f.metadata().map_err(io_err(&self.path, "fstat"))?.len();
            self.valid_len = now.min(self.map_len);
        }
        Ok(self.valid_len)
    }

    fn check(&self, off: u64, len: u64) -> Result<std::ops::Range<usize>, StoreError> {
        match off.checked_add(len) {
            Some(end) if end <= self.valid_len => Ok(off as usize..end as usize),
            _ => Err(StoreError::OutOfBounds {
                off,
                len,
                size: self.valid_len,
                note: if self.valid_len < self.map_len {
                    " (it was truncated after it was opened)"
                } else {
                    ""
                },
            }),
        }
    }

    /// `len` bytes at `off`, bounds-checked.
    pub fn read(&self, off: u64, len: u64) -> Result<&[u8], StoreError> {
        let r = self.check(off, len)?;
        Ok(match &self.map {
            Map::None => &[],
            Map::Ro(m) => &m[r],
            Map::Rw(m) => &m[r],
            Map::Mem(v) => &v[r],
        })
    }

    /// A fixed-size copy of `N` bytes at `off`.
    pub fn read_array<const N: usize>(&self, off: u64) -> Result<[u8; N], StoreError> {
        let s = self.read(off, N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn slice_mut(&mut self, off: u64, len: u64) -> Result<&mut [u8], StoreError> {
        let r = self.check(off, len)?;
        match &mut self.map {
            Map::Rw(m) => Ok(&mut m[r]),
            Map::Mem(v) => Ok(&mut v[r]),
            Map::None if r.is_empty() && self.writable => Ok(&mut []),
            _ => Err(StoreError::ReadOnly),
        }
    }

    /// Copy `data` to `off`, bounds-checked. Not flushed: see [`Store::flush`].
    pub fn write_at(&mut self, off: u64, data: &[u8]) -> Result<(), StoreError> {
        self.slice_mut(off, data.len() as u64)?
            .copy_from_slice(data);
        Ok(())
    }

    /// Make `[off, off + len)` durable (msync of the covering pages; on DAX devices the CPU cache lines
    /// are written back first; no-op in memory).
    pub fn flush(&self, off: u64, len: u64) -> Result<(), StoreError> {
        let r = self.check(off, len)?;
        if let (StoreKind::DaxDevice, Map::Rw(m)) = (self.kind, &self.map) {
            cache_flush(&m[r.clone()]);
        }
        match &self.map {
            Map::Rw(m) => m
                .flush_range(r.start, r.len())
                .map_err(io_err(&self.path, "msync")),
            Map::Mem(_) => Ok(()),
            Map::None if r.is_empty() && self.writable => Ok(()),
            _ => Err(StoreError::ReadOnly),
        }
    }

    /// Drop this CPU's cached copies of `[off, off + len)` before re-reading bytes another host may
    /// have written (DAX devices only; everything else is coherent through the page cache).
    pub fn invalidate(&self, off: u64, len: u64) -> Result<(), StoreError> {
        let r = self.check(off, len)?;
        if self.kind == StoreKind::DaxDevice {
            match &self.map {
                Map::Ro(m) => cache_flush(&m[r]),
                Map::Rw(m) => cache_flush(&m[r]),
                _ => {}
            }
        }
        Ok(())
    }

    /// Zero `[off, off + len)`, writing only 4 KiB pages that are not already zero, so a sparse image
    /// stays sparse. Not flushed.
    pub fn zero_range(&mut self, off: u64, len: u64) -> Result<(), StoreError> {
        let s = self.slice_mut(off, len)?;
        for page in s.chunks_mut(4096) {
            if page.iter().any(|&b| b != 0) {
                page.fill(0);
            }
        }
        Ok(())
    }

    /// Take the exclusive log lock (flock LOCK_EX on the image; blocks while another process holds it).
    pub fn lock_exclusive(&self) -> Result<LockGuard, StoreError> {
        let Some(f) = &self.file else {
            return Ok(LockGuard { file: None });
        };
        let dup = f.try_clone().map_err(io_err(&self.path, "dup"))?;
        loop {
            // SAFETY: flock on a descriptor we own.
            let rc = unsafe { libc::flock(dup.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(LockGuard { file: Some(dup) });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(io_err(&self.path, "flock LOCK_EX")(e));
            }
        }
    }
}

/// Write back and invalidate the cache lines covering `bytes` (clflush each line, then a fence).
/// Only x86_64 has an implementation; elsewhere this is a no-op.
fn cache_flush(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        const LINE: usize = 64;
        let start = bytes.as_ptr() as usize;
        let mut line = start & !(LINE - 1);
        let end = start + bytes.len();
        while line < end {
            // SAFETY: the line overlaps `bytes`, so at least one of its bytes is mapped; a cache line
            // never crosses a page, so the whole line is mapped. clflush needs nothing else, and SSE2
            // is part of the x86_64 baseline.
            unsafe { core::arch::x86_64::_mm_clflush(line as *const u8) };
            line += LINE;
        }
        // A SeqCst fence is an mfence on x86_64: it orders the clflushes before later accesses.
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_and_cache_flush_is_harmless() {
        let mut s = Store::from_vec(vec![1u8; 8192]);
        assert_eq!(s.read(8190, 2).unwrap(), &[1, 1]);
        assert!(matches!(
            s.read(8191, 2),
            Err(StoreError::OutOfBounds {
                off: 8191,
                len: 2,
                size: 8192,
                ..
            })
        ));
        assert!(s.read(u64::MAX, 2).is_err());
        assert!(s.write_at(8192, &[0]).is_err());
        s.write_at(100, &[7; 10]).unwrap();
        s.zero_range(0, 4096).unwrap();
        assert!(s.read(0, 4096).unwrap().iter().all(|&b| b == 0));
        assert_eq!(s.read(4096, 1).unwrap(), &[1]);
        // Unaligned ranges spanning lines.
        cache_flush(s.read(3, 200).unwrap());
        cache_flush(&[]);
        s.invalidate(0, 8192).unwrap();
        s.flush(0, 8192).unwrap();
        assert!(s.flush(1, 8192).is_err());
    }

    #[test]
    fn read_only_file_store_refuses_writes_and_tracks_truncation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, vec![3u8; 3 * 4096]).unwrap();
        let mut s = Store::open(&p, false).unwrap();
        assert_eq!(
            (s.kind(), s.len(), s.is_writable()),
            (StoreKind::Regular, 3 * 4096, false)
        );
        assert!(matches!(s.write_at(0, &[1]), Err(StoreError::ReadOnly)));
        assert!(matches!(s.flush(0, 1), Err(StoreError::ReadOnly)));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(4096)
            .unwrap();
        assert_eq!(s.refresh().unwrap(), 4096);
        assert!(
            s.read(4096, 1)
                .unwrap_err()
                .to_string()
                .contains("truncated after it was opened")
        );
        assert_eq!(s.read(0, 4096).unwrap()[4095], 3);
        assert!(matches!(
            Store::open(d.path(), false),
            Err(StoreError::Unsupported { .. })
        ));
        assert!(matches!(
            Store::open(&d.path().join("nope"), false),
            Err(StoreError::Io { .. })
        ));
    }
}
