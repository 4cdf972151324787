//! The data path's view of the device: a handle on the image's one open descriptor
//! ([`Store`], shared with the metadata side), through which READ copies out and WRITE
//! copies in; and the record of recent I/O failures that `/healthz` reports.
//!
//! Owns: turning store failures into errnos for the FUSE reply (`EIO`; `ENOSPC`/`EDQUOT` when the
//! image's filesystem is full), the last I/O failure (what, where, when), flushes, handing out the
//! descriptor for a READ the session splices (`read_fd`; bounds-checked like the copies). Must not interpret
//! bytes (no famfs structures here) or resolve file offsets (the server does, with the file's fmap).
//!
//! No access raises SIGBUS on an image file or block device: the store uses `pread`/`pwrite`, so a
//! truncated image, a device read error or a full filesystem under a sparse image comes back as an
//! error code for that one request (see `famfs/store.rs` for device DAX, where a media error still
//! raises SIGBUS). Hot path: no allocation; a failure takes a small lock to record itself.

use std::sync::{
    Mutex, PoisonError,
    atomic::{AtomicU64, Ordering},
};

use super::volume::{Store, StoreError};
use crate::util::monotonic_ns;

/// Which request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    Read,
    Write,
    Flush,
}

impl IoOp {
    pub fn as_str(self) -> &'static str {
        match self {
            IoOp::Read => "READ",
            IoOp::Write => "WRITE",
            IoOp::Flush => "flush",
        }
    }
}

/// The last I/O failure: enough to say what and where, without allocating on the failing request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoFault {
    pub op: IoOp,
    pub ino: u64,
    /// Device byte offset.
    pub dev_off: u64,
    /// The errno answered to the kernel.
    pub errno: i32,
    /// `util::monotonic_ns` at the failure.
    pub at_ns: u64,
}

/// The data path over the image's descriptor.
pub struct DataPath {
    store: Store,
    faults: AtomicU64,
    last: Mutex<Option<IoFault>>,
}

impl std::fmt::Debug for DataPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPath")
            .field("store", &self.store)
            .field("faults", &self.faults.load(Ordering::Relaxed))
            .finish()
    }
}

/// The errno a failed store access answers: the image's filesystem being full is passed through
/// (the writer can act on it), everything else is `EIO`.
pub fn errno_of(e: &StoreError) -> i32 {
    match e.raw_os_error() {
        Some(c @ (libc::ENOSPC | libc::EDQUOT)) => c,
        _ => libc::EIO,
    }
}

impl DataPath {
    /// The data path over `store` (a handle on the image's descriptor; writable unless the server
    /// is read-only).
    pub fn new(store: Store) -> DataPath {
        DataPath {
            store,
            faults: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }

    pub fn is_writable(&self) -> bool {
        self.store.is_writable()
    }

    /// The image's path (for messages).
    pub fn path(&self) -> &std::path::Path {
        self.store.path()
    }

    /// Bytes currently accessible (the image's length, lowered if it shrank).
    pub fn len(&self) -> u64 {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// Re-read a regular file's length (fstat); returns the accessible length.
    pub fn recheck(&self) -> Result<u64, StoreError> {
        self.store.refresh()
    }

    /// Copy `dst.len()` bytes at device offset `off` into `dst`.
    pub fn read_into(&self, off: u64, dst: &mut [u8]) -> Result<(), StoreError> {
        self.store.read_into(off, dst)
    }

    /// The image's descriptor for reading `[off, off + len)` without a copy through our memory
    /// (`None` for a mapped device: use [`DataPath::read_into`]).
    pub fn read_fd(
        &self,
        off: u64,
        len: u64,
    ) -> Result<Option<std::os::fd::BorrowedFd<'_>>, StoreError> {
        self.store.read_fd(off, len)
    }

    /// Copy `src` to device offset `off`.
    pub fn write_from(&self, off: u64, src: &[u8]) -> Result<(), StoreError> {
        self.store.write_at(off, src)
    }

    /// An 8-byte little-endian value at `off` (e.g. the log header's `next_index`).
    pub fn read_u64(&self, off: u64) -> Result<u64, StoreError> {
        self.store.read_array::<8>(off).map(u64::from_le_bytes)
    }

    /// Make the ranges durable (one fdatasync for an image file or block device).
    pub fn flush(
        &self,
        ranges: impl IntoIterator<Item = (u64, u64)> + Clone,
    ) -> Result<(), StoreError> {
        if !self.store.is_writable() {
            return Ok(());
        }
        self.store.flush_ranges(ranges)
    }

    /// Record a failure answered with `errno`.
    pub fn record_fault(&self, op: IoOp, ino: u64, dev_off: u64, errno: i32) {
        self.faults.fetch_add(1, Ordering::Relaxed);
        let f = IoFault {
            op,
            ino,
            dev_off,
            errno,
            at_ns: monotonic_ns(),
        };
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(f);
    }

    /// Failures so far.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    /// The most recent failure.
    pub fn last_fault(&self) -> Option<IoFault> {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
