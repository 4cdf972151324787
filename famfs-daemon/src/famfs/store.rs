//! Backing store: one open file descriptor of a regular (possibly sparse) image file, a block device
//! or a device-DAX character device; or an in-memory buffer (tests, fuzzing).
//!
//! Owns: opening the backing object (once, `O_NOFOLLOW`) and sizing it, bounds-checked positional
//! reads and writes, flushes, the exclusive log lock (flock on the image) and zero-filling without
//! un-sparsing. Must not interpret bytes: that is `format`'s job.
//!
//! How bytes move, and why no access can raise SIGBUS:
//! * Regular files and block devices: `pread(2)`/`pwrite(2)` on the one descriptor. A page that is
//!   missing (the file was truncated behind our back), a read error of the device, or a write that
//!   finds no space (a sparse image on a full filesystem) comes back as an error code (a short
//!   transfer or `EIO`/`ENOSPC`), never as a signal. Flushes are `fdatasync(2)` of the descriptor.
//! * Device-DAX character devices (`/dev/daxX.Y`) support neither `read(2)` nor `write(2)`: memory
//!   mapping is the only way to reach them, so they are mapped (shared, once) and copied from and to
//!   with `ptr::copy`. A device's length never changes, so bounds checks prevent every fault except
//!   one: an uncorrectable media error (poisoned memory) in the range touched. The kernel then sends
//!   SIGBUS (`BUS_MCEERR_AR`) to the thread doing the copy, and the process dies (the mount goes with
//!   it). Nothing here can turn that into an error code; the media error is the operator's to repair
//!   (see the README's "Media errors on DAX devices").
//! * Memory: a `Vec` behind a lock.
//!
//! A [`Store`] is a cheap handle: [`Store::share`] and [`Store::read_only_view`] give more handles on
//! the same descriptor (the FUSE server's metadata and data paths share one open of the image).
//!
//! The length: [`Store::len`] is the object's length at open, lowered by [`Store::refresh`] when a
//! regular file shrank (it never grows past the length at open). A transfer past it is refused with
//! [`StoreError::OutOfBounds`]; one that meets the end of a file truncated since the last refresh
//! gets [`StoreError::Short`].
//!
//! Coherence: on a DAX device shared by several hosts (CXL memory) CPU caches are not coherent across
//! hosts, so [`Store::flush`] also writes back the cache lines (clflush + fence) and
//! [`Store::invalidate`] drops them before a re-read, as the reference does. Regular files and block
//! devices go through the page cache and need only fdatasync.

use std::{
    fs::{File, OpenOptions},
    io::{Seek, SeekFrom},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd},
        unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use memmap2::{MmapOptions, MmapRaw};
use thiserror::Error;

/// Largest single [`Store::read`] (an owned buffer): bulk readers go through [`Store::read_into`]
/// with a buffer of their own, in windows.
pub const READ_MAX: u64 = 64 << 20;

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
    #[error(
        "{path}: {op} of {len} bytes at byte offset {off:#x} stopped after {done} bytes: the image ends there (truncated?)"
    )]
    Short {
        path: String,
        op: &'static str,
        off: u64,
        len: u64,
        done: u64,
    },
    #[error("{path}: not a regular file, block device or DAX character device")]
    Unsupported { path: String },
    #[error(
        "{path}: is a symbolic link; images are opened with O_NOFOLLOW so that a link cannot swap in another file: give the real path (readlink -f)"
    )]
    Symlink { path: String },
    #[error("{path}: {len:#x} bytes do not fit in this process's address space")]
    TooLarge { path: String, len: u64 },
    #[error(
        "a read of {len:#x} bytes is more than one buffer may hold ({max:#x}); read it in windows"
    )]
    ReadTooLarge { len: u64, max: u64 },
    #[error("the image is open read-only")]
    ReadOnly,
}

impl StoreError {
    /// The operating system's error code behind this error, if there is one (`EIO`, `ENOSPC`, …).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            StoreError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// What the store reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Regular,
    BlockDevice,
    DaxDevice,
    Memory,
}

enum Backing {
    /// Regular files and block devices: positional I/O.
    Fd(File),
    /// Device DAX: the only way in is a mapping (kept with its descriptor, for flock).
    Dax {
        file: File,
        map: MmapRaw,
    },
    Mem(RwLock<Vec<u8>>),
}

struct Shared {
    path: PathBuf,
    backing: Backing,
    kind: StoreKind,
    /// Whether the descriptor (or memory) allows writes.
    fd_writable: bool,
    /// Bytes at open.
    open_len: u64,
    /// Bytes that may be touched (≤ `open_len`; smaller if a regular file shrank).
    len: AtomicU64,
}

/// A handle on the whole device/image: bounds-checked positional access. Cheap to clone through
/// [`Store::share`]; every handle uses the same descriptor.
pub struct Store {
    shared: Arc<Shared>,
    writable: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path)
            .field("kind", &self.shared.kind)
            .field("writable", &self.writable)
            .field("len", &self.len())
            .finish()
    }
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

/// Transfer size of one chunk of the bulk helpers (zero-fill, scans).
const CHUNK: usize = 1 << 20;
/// Granularity of [`Store::zero_range`]'s "already zero" test.
const PAGE: usize = 4096;

impl Store {
    /// Open `path` once, read-only or read-write, refusing a symbolic link (`O_NOFOLLOW`), and size it.
    pub fn open(path: &Path, writable: bool) -> Result<Store, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| {
                // ELOOP is also "too many links" in a directory prefix: name the link only when the
                // last component is one.
                if e.raw_os_error() == Some(libc::ELOOP)
                    && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
                {
                    StoreError::Symlink {
                        path: path.display().to_string(),
                    }
                } else {
                    io_err(path, "open")(e)
                }
            })?;
        Store::from_file(path, file, writable)
    }

    /// A store over an already open `file` (opened with write access when `writable`); `path` only
    /// names it in messages.
    pub fn from_file(path: &Path, mut file: File, writable: bool) -> Result<Store, StoreError> {
        let (len, kind) = object_len(path, &mut file)?;
        let backing = if kind == StoreKind::DaxDevice {
            let n = usize::try_from(len).map_err(|_| StoreError::TooLarge {
                path: path.display().to_string(),
                len,
            })?;
            let mut opts = MmapOptions::new();
            opts.len(n);
            let map = if writable {
                opts.map_raw(&file)
            } else {
                opts.map_raw_read_only(&file)
            }
            .map_err(io_err(path, "mmap of the DAX device"))?;
            Backing::Dax { file, map }
        } else {
            Backing::Fd(file)
        };
        Ok(Store {
            shared: Arc::new(Shared {
                path: path.to_path_buf(),
                backing,
                kind,
                fd_writable: writable,
                open_len: len,
                len: AtomicU64::new(len),
            }),
            writable,
        })
    }

    /// An in-memory store over `bytes` (always writable; flush and lock are no-ops).
    pub fn from_vec(bytes: Vec<u8>) -> Store {
        let len = bytes.len() as u64;
        Store {
            shared: Arc::new(Shared {
                path: PathBuf::from("<memory>"),
                backing: Backing::Mem(RwLock::new(bytes)),
                kind: StoreKind::Memory,
                fd_writable: true,
                open_len: len,
                len: AtomicU64::new(len),
            }),
            writable: true,
        }
    }

    /// The in-memory bytes of a [`Store::from_vec`] store (None while other handles share it).
    pub fn into_vec(self) -> Option<Vec<u8>> {
        let shared = Arc::try_unwrap(self.shared).ok()?;
        match shared.backing {
            Backing::Mem(v) => Some(v.into_inner().unwrap_or_else(PoisonError::into_inner)),
            _ => None,
        }
    }

    /// Another handle on the same descriptor, with the same access.
    pub fn share(&self) -> Store {
        Store {
            shared: self.shared.clone(),
            writable: self.writable,
        }
    }

    /// Another handle on the same descriptor that refuses writes.
    pub fn read_only_view(&self) -> Store {
        Store {
            shared: self.shared.clone(),
            writable: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    pub fn kind(&self) -> StoreKind {
        self.shared.kind
    }

    /// Bytes that may be accessed.
    pub fn len(&self) -> u64 {
        self.shared.len.load(Ordering::Acquire)
    }

    /// Bytes at open.
    pub fn open_len(&self) -> u64 {
        self.shared.open_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Re-check the object's length (regular files: fstat). Returns the accessible length.
    pub fn refresh(&self) -> Result<u64, StoreError> {
        if let (StoreKind::Regular, Backing::Fd(f)) = (self.shared.kind, &self.shared.backing) {
            let now = f
                .metadata()
                .map_err(io_err(&self.shared.path, "fstat"))?
                .len();
            self.shared
                .len
                .store(now.min(self.shared.open_len), Ordering::Release);
        }
        Ok(self.len())
    }

    fn check(&self, off: u64, len: u64) -> Result<(), StoreError> {
        let size = self.len();
        match off.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(StoreError::OutOfBounds {
                off,
                len,
                size,
                note: if size < self.shared.open_len {
                    " (it was truncated after it was opened)"
                } else {
                    ""
                },
            }),
        }
    }

    /// The descriptor to read `[off, off + len)` from directly (e.g. to splice it), bounds-checked:
    /// `Some` for a regular file or block device, `None` for a mapped device or memory (read those
    /// with [`Store::read_into`]). A read through it may still come back short if the image shrank.
    pub fn read_fd(&self, off: u64, len: u64) -> Result<Option<BorrowedFd<'_>>, StoreError> {
        self.check(off, len)?;
        Ok(match &self.shared.backing {
            Backing::Fd(f) => Some(f.as_fd()),
            Backing::Dax { .. } | Backing::Mem(_) => None,
        })
    }

    /// Fill `buf` from byte offset `off`, bounds-checked.
    pub fn read_into(&self, off: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        self.check(off, buf.len() as u64)?;
        match &self.shared.backing {
            Backing::Fd(f) => {
                let mut done = 0usize;
                while done < buf.len() {
                    match f.read_at(&mut buf[done..], off + done as u64) {
                        Ok(0) => {
                            return Err(StoreError::Short {
                                path: self.shared.path.display().to_string(),
                                op: "read",
                                off,
                                len: buf.len() as u64,
                                done: done as u64,
                            });
                        }
                        Ok(n) => done += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(io_err(&self.shared.path, "pread")(e)),
                    }
                }
            }
            Backing::Dax { map, .. } => {
                // SAFETY: `check` proved `[off, off + len)` lies inside the mapping (len ≤ the length
                // mapped at open, which a device never changes), so the source is mapped for the
                // lifetime of `map`. `buf` is our own exclusive buffer and cannot overlap the
                // mapping. The mapped bytes may change concurrently (other processes and hosts write
                // the device); we only copy them out and never create a reference into them.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        map.as_ptr().add(off as usize),
                        buf.as_mut_ptr(),
                        buf.len(),
                    );
                }
            }
            Backing::Mem(v) => {
                let v = v.read().unwrap_or_else(PoisonError::into_inner);
                let start = off as usize;
                buf.copy_from_slice(&v[start..start + buf.len()]);
            }
        }
        Ok(())
    }

    /// `len` bytes at `off` in a new buffer, bounds-checked; at most [`READ_MAX`] bytes.
    pub fn read(&self, off: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        if len > READ_MAX {
            return Err(StoreError::ReadTooLarge { len, max: READ_MAX });
        }
        self.check(off, len)?;
        let mut v = vec![0u8; len as usize];
        self.read_into(off, &mut v)?;
        Ok(v)
    }

    /// A fixed-size copy of `N` bytes at `off`.
    pub fn read_array<const N: usize>(&self, off: u64) -> Result<[u8; N], StoreError> {
        let mut a = [0u8; N];
        self.read_into(off, &mut a)?;
        Ok(a)
    }

    /// Copy `data` to `off`, bounds-checked. Not flushed: see [`Store::flush`]. On a regular file the
    /// length is rechecked first (one fstat), so a write never re-grows an image that was truncated.
    pub fn write_at(&self, off: u64, data: &[u8]) -> Result<(), StoreError> {
        if !self.writable {
            return Err(StoreError::ReadOnly);
        }
        if self.shared.kind == StoreKind::Regular {
            self.refresh()?;
        }
        self.check(off, data.len() as u64)?;
        match &self.shared.backing {
            Backing::Fd(f) => {
                let mut done = 0usize;
                while done < data.len() {
                    match f.write_at(&data[done..], off + done as u64) {
                        Ok(0) => {
                            return Err(StoreError::Short {
                                path: self.shared.path.display().to_string(),
                                op: "write",
                                off,
                                len: data.len() as u64,
                                done: done as u64,
                            });
                        }
                        Ok(n) => done += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(io_err(&self.shared.path, "pwrite")(e)),
                    }
                }
            }
            Backing::Dax { map, .. } => {
                if !self.shared.fd_writable {
                    return Err(StoreError::ReadOnly);
                }
                // SAFETY: as in `read_into`, the destination range is inside a writable shared
                // mapping that lives as long as `self.shared`; `data` is a distinct buffer.
                // Concurrent writers of the same bytes (a shared-memory filesystem has no byte-range
                // locking) can interleave, but no Rust reference into the mapping exists.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        data.as_ptr(),
                        map.as_mut_ptr().add(off as usize),
                        data.len(),
                    );
                }
            }
            Backing::Mem(v) => {
                let mut v = v.write().unwrap_or_else(PoisonError::into_inner);
                let start = off as usize;
                v[start..start + data.len()].copy_from_slice(data);
            }
        }
        Ok(())
    }

    /// Make `[off, off + len)` durable (no-op in memory).
    pub fn flush(&self, off: u64, len: u64) -> Result<(), StoreError> {
        self.flush_ranges(std::iter::once((off, len)))
    }

    /// Make every range of `ranges` durable: one `fdatasync` of the descriptor for files and block
    /// devices (it covers all ranges, and whatever else is dirty); on a DAX device the CPU cache lines
    /// of each range are written back and the range is msynced. Every range is bounds-checked first.
    pub fn flush_ranges(
        &self,
        ranges: impl IntoIterator<Item = (u64, u64)> + Clone,
    ) -> Result<(), StoreError> {
        if !self.writable {
            return Err(StoreError::ReadOnly);
        }
        for (off, len) in ranges.clone() {
            self.check(off, len)?;
        }
        match &self.shared.backing {
            Backing::Fd(f) => f
                .sync_data()
                .map_err(io_err(&self.shared.path, "fdatasync")),
            Backing::Dax { map, .. } => {
                for (off, len) in ranges {
                    if len == 0 {
                        continue;
                    }
                    // SAFETY: the range was bounds-checked against the mapping above.
                    unsafe { cache_flush(map.as_ptr().add(off as usize), len as usize) };
                    map.flush_range(off as usize, len as usize)
                        .map_err(io_err(&self.shared.path, "msync"))?;
                }
                Ok(())
            }
            Backing::Mem(_) => Ok(()),
        }
    }

    /// Drop this CPU's cached copies of `[off, off + len)` before re-reading bytes another host may
    /// have written (DAX devices only; everything else is coherent through the page cache).
    pub fn invalidate(&self, off: u64, len: u64) -> Result<(), StoreError> {
        self.check(off, len)?;
        if let Backing::Dax { map, .. } = &self.shared.backing
            && len > 0
        {
            // SAFETY: the range was bounds-checked against the mapping.
            unsafe { cache_flush(map.as_ptr().add(off as usize), len as usize) };
        }
        Ok(())
    }

    /// The next `(start, end)` range at or after `pos` and before `end` that may hold data: regular
    /// files skip holes with `SEEK_DATA`/`SEEK_HOLE`; anything else is all data.
    fn next_data(&self, pos: u64, end: u64) -> Result<Option<(u64, u64)>, StoreError> {
        if pos >= end {
            return Ok(None);
        }
        let Backing::Fd(f) = &self.shared.backing else {
            return Ok(Some((pos, end)));
        };
        if self.shared.kind != StoreKind::Regular {
            return Ok(Some((pos, end)));
        }
        let seek = |from: u64, whence: i32| -> Result<Result<u64, i32>, StoreError> {
            let at = libc::off_t::try_from(from).map_err(|_| StoreError::OutOfBounds {
                off: from,
                len: 0,
                size: self.len(),
                note: "",
            })?;
            // SAFETY: lseek on a descriptor we own. Only the descriptor's file offset changes, which
            // nothing here uses (all transfers are positional).
            let r = unsafe { libc::lseek(f.as_raw_fd(), at, whence) };
            if r >= 0 {
                return Ok(Ok(r as u64));
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(c @ (libc::ENXIO | libc::EINVAL)) => Ok(Err(c)),
                _ => Err(io_err(&self.shared.path, "lseek SEEK_DATA/SEEK_HOLE")(e)),
            }
        };
        let start = match seek(pos, libc::SEEK_DATA)? {
            Ok(s) => s,
            // No data at or after `pos`.
            Err(libc::ENXIO) => return Ok(None),
            // A filesystem without SEEK_DATA: treat everything as data.
            Err(_) => return Ok(Some((pos, end))),
        };
        if start >= end {
            return Ok(None);
        }
        let stop = seek(start, libc::SEEK_HOLE)?.unwrap_or(end);
        Ok(Some((start, stop.clamp(start + 1, end))))
    }

    /// Zero `[off, off + len)`, writing only 4 KiB pages (counted from `off`) that are not already
    /// zero, and skipping a sparse image's holes, so the image stays sparse. Not flushed.
    pub fn zero_range(&self, off: u64, len: u64) -> Result<(), StoreError> {
        if !self.writable {
            return Err(StoreError::ReadOnly);
        }
        self.check(off, len)?;
        let end = off + len;
        let zeros = [0u8; PAGE];
        let mut buf = vec![0u8; CHUNK.min(len as usize)];
        let mut pos = off;
        while let Some((start, stop)) = self.next_data(pos, end)? {
            // Page-align the data range to `off`'s page grid.
            let mut at = off + (start - off) / PAGE as u64 * PAGE as u64;
            while at < stop {
                let n = (CHUNK as u64).min(end - at) as usize;
                let b = &mut buf[..n];
                self.read_into(at, b)?;
                for (k, page) in b.chunks(PAGE).enumerate() {
                    if page.iter().any(|&x| x != 0) {
                        self.write_at(at + (k * PAGE) as u64, &zeros[..page.len()])?;
                    }
                }
                at += n as u64;
            }
            pos = at;
        }
        Ok(())
    }

    /// Byte offset of the first non-zero byte in `[off, off + len)`, skipping a sparse image's holes.
    /// Tests only: they check with it what `zero_range` left (fsck stops at the first zero slot instead).
    #[cfg(test)]
    pub(crate) fn first_nonzero(&self, off: u64, len: u64) -> Result<Option<u64>, StoreError> {
        self.check(off, len)?;
        let end = off + len;
        let mut buf = vec![0u8; CHUNK.min(len as usize)];
        let mut pos = off;
        while let Some((start, stop)) = self.next_data(pos, end)? {
            let mut at = start;
            while at < stop {
                let n = (CHUNK as u64).min(stop - at) as usize;
                let b = &mut buf[..n];
                self.read_into(at, b)?;
                if let Some(k) = b.iter().position(|&x| x != 0) {
                    return Ok(Some(at + k as u64));
                }
                at += n as u64;
            }
            pos = stop;
        }
        Ok(None)
    }

    /// Take the exclusive log lock (flock LOCK_EX on the image; blocks while another process holds it).
    pub fn lock_exclusive(&self) -> Result<LockGuard, StoreError> {
        let f = match &self.shared.backing {
            Backing::Fd(f) | Backing::Dax { file: f, .. } => f,
            Backing::Mem(_) => return Ok(LockGuard { file: None }),
        };
        let dup = f.try_clone().map_err(io_err(&self.shared.path, "dup"))?;
        loop {
            // SAFETY: flock on a descriptor we own.
            let rc = unsafe { libc::flock(dup.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(LockGuard { file: Some(dup) });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(io_err(&self.shared.path, "flock LOCK_EX")(e));
            }
        }
    }
}

/// Write back and invalidate the cache lines covering `len` bytes at `ptr` (clflush each line, then a
/// fence). Only x86_64 has an implementation; elsewhere this is a no-op.
///
/// # Safety
/// `[ptr, ptr + len)` must lie inside one live mapping.
unsafe fn cache_flush(ptr: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        const LINE: usize = 64;
        let start = ptr as usize;
        let mut line = start & !(LINE - 1);
        let end = start + len;
        while line < end {
            // SAFETY: the line overlaps `[ptr, ptr + len)`, which the caller guarantees is mapped; a
            // cache line never crosses a page, so the whole line is mapped. clflush needs nothing
            // else, and SSE2 is part of the x86_64 baseline.
            unsafe { core::arch::x86_64::_mm_clflush(line as *const u8) };
            line += LINE;
        }
        // A SeqCst fence is an mfence on x86_64: it orders the clflushes before later accesses.
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

#[cfg(test)]
mod tests;
