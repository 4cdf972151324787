//! The data path's view of the device: one shared raw memory map (`memmap2::MmapRaw`) of the image
//! file or DAX device, through which READ copies out and WRITE copies in.
//!
//! Owns: the mapping, bounds checks against the object's current length, flushes (msync of a range).
//! Must not interpret bytes (no famfs structures here) or resolve file offsets (the server does, with
//! the file's fmap).
//!
//! Why a raw map and copies: the mapping is shared memory that other processes (and, on CXL, other
//! hosts) may write at any time, so handing out `&[u8]` into it would assert an immutability Rust
//! cannot guarantee. Every access is a `ptr::copy_nonoverlapping` between the mapping and a buffer we
//! own, under a bounds check. A regular image file truncated behind our back could still fault between
//! the length check and the copy; [`DataMap::recheck`] (called by the log watcher) narrows that window.

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::FileTypeExt,
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
};

use memmap2::{MmapOptions, MmapRaw};

/// An access outside the mapped and currently valid range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange {
    pub off: u64,
    pub len: u64,
    pub valid: u64,
}

impl std::fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes at device offset {:#x} are outside the {:#x} valid bytes of the image",
            self.len, self.off, self.valid
        )
    }
}

/// A shared read/write (or read-only) raw mapping of `len` bytes of the device.
pub struct DataMap {
    map: MmapRaw,
    file: File,
    regular: bool,
    writable: bool,
    /// Bytes that may be touched: the mapping length, less if a regular file shrank.
    valid: AtomicU64,
}

impl std::fmt::Debug for DataMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataMap")
            .field("len", &self.map.len())
            .field("writable", &self.writable)
            .field("valid", &self.valid.load(Ordering::Relaxed))
            .finish()
    }
}

impl DataMap {
    /// Map the first `len` bytes of `path` (an image file or a device), shared, read-write unless
    /// `writable` is false.
    pub fn open(path: &Path, len: u64, writable: bool) -> io::Result<DataMap> {
        let what = |op: &str, e: io::Error| {
            io::Error::new(e.kind(), format!("{}: {op}: {e}", path.display()))
        };
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| what("open", e))?;
        let ft = file.metadata().map_err(|e| what("fstat", e))?.file_type();
        let regular = ft.is_file();
        if !(regular || ft.is_block_device() || ft.is_char_device()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: not a regular file, block device or DAX device",
                    path.display()
                ),
            ));
        }
        let n = usize::try_from(len).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: {len:#x} bytes do not fit the address space",
                    path.display()
                ),
            )
        })?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: empty image", path.display()),
            ));
        }
        let mut opts = MmapOptions::new();
        opts.len(n);
        let map = if writable {
            opts.map_raw(&file)
        } else {
            opts.map_raw_read_only(&file)
        }
        .map_err(|e| what("mmap", e))?;
        Ok(DataMap {
            map,
            file,
            regular,
            writable,
            valid: AtomicU64::new(len),
        })
    }

    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Bytes currently accessible.
    pub fn valid_len(&self) -> u64 {
        self.valid.load(Ordering::Acquire)
    }

    /// Re-read a regular file's length (fstat) and shrink the accessible range if it was truncated.
    pub fn recheck(&self) -> io::Result<u64> {
        if self.regular {
            let now = self.file.metadata()?.len().min(self.len());
            self.valid.store(now, Ordering::Release);
        }
        Ok(self.valid_len())
    }

    fn check(&self, off: u64, len: usize) -> Result<usize, OutOfRange> {
        let valid = self.valid_len();
        let len64 = len as u64;
        match off.checked_add(len64) {
            Some(end) if end <= valid => Ok(off as usize),
            _ => Err(OutOfRange {
                off,
                len: len64,
                valid,
            }),
        }
    }

    /// Copy `dst.len()` bytes at device offset `off` into `dst`.
    pub fn read_into(&self, off: u64, dst: &mut [u8]) -> Result<(), OutOfRange> {
        let at = self.check(off, dst.len())?;
        // SAFETY: `check` proved `[off, off + dst.len())` lies inside the mapping (valid ≤ map length),
        // so the source range is mapped for the lifetime of `self.map`. `dst` is our own exclusive
        // buffer and cannot overlap the mapping. The mapped bytes may be changed concurrently by other
        // processes; we only copy them into owned memory and never create a reference to them.
        unsafe {
            std::ptr::copy_nonoverlapping(self.map.as_ptr().add(at), dst.as_mut_ptr(), dst.len());
        }
        Ok(())
    }

    /// Copy `src` to device offset `off`. Fails on a read-only map.
    pub fn write_from(&self, off: u64, src: &[u8]) -> Result<(), WriteError> {
        if !self.writable {
            return Err(WriteError::ReadOnly);
        }
        let at = self.check(off, src.len()).map_err(WriteError::Range)?;
        // SAFETY: as in `read_into`, the destination range is inside a writable shared mapping that
        // lives as long as `self`; `src` is a distinct buffer. Concurrent writers of the same bytes (a
        // shared-memory filesystem has no byte-range locking) can interleave, but no Rust reference
        // into the mapping exists, so no aliasing rule is broken.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.map.as_mut_ptr().add(at), src.len());
        }
        Ok(())
    }

    /// An 8-byte little-endian value at `off` (e.g. the log header's `next_index`).
    pub fn read_u64(&self, off: u64) -> Result<u64, OutOfRange> {
        let mut b = [0u8; 8];
        self.read_into(off, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Make `[off, off + len)` durable (msync of the covering pages).
    pub fn flush(&self, off: u64, len: u64) -> io::Result<()> {
        if !self.writable {
            return Ok(());
        }
        let at = self
            .check(off, usize::try_from(len).unwrap_or(usize::MAX))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        self.map.flush_range(at, len as usize)
    }
}

/// Why a write through the map failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    ReadOnly,
    Range(OutOfRange),
}
