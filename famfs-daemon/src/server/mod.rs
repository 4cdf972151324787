//! The famfs FUSE server: a [`Filesystem`] over the namespace replayed from a famfs image's log.
//!
//! * Metadata: LOOKUP (ENOENT as an error, so names appended later are found), FORGET/BATCH_FORGET
//!   (lookup counts per nodeid), GETATTR (`st_ino` = inode id = nodeid; `st_size` = `fm_size`, which
//!   never changes), SETATTR (size changes refused with EINVAL), STATFS (device size and allocator),
//!   OPENDIR/READDIR/READDIRPLUS/RELEASEDIR (offset = index into `.`, `..`, then the directory's
//!   children in creation order, which only ever grows at the end), GETXATTR (ENODATA).
//! * famfs: GET_FMAP (the media fmap translated to the wire; the session applies the dialect's size
//!   rules) and GET_DAXDEV (index 0 only).
//! * Stock-kernel data path: OPEN/READ/WRITE/FLUSH/FSYNC/RELEASE with positional I/O on the image's
//!   descriptor ([`data::DataPath`]) through the file's extents (READ also as descriptor ranges the
//!   session may splice, `read_fd`); writes stay within the fixed file size. `.meta/.superblock` and `.meta/.log` are read-only through the mount (open for writing
//!   and WRITE: EPERM, for root too: only the log's own rules may change them).
//! * One open: [`FamfsFs::open`] opens the image once (`O_NOFOLLOW`); the metadata side (a read-only
//!   handle) and the data path share that descriptor.
//! * Client role: [`FamfsFs::refresh`] applies entries other writers appended and invalidates the
//!   kernel's view of what changed; [`LogWatcher`] calls it on a timer and on demand (SIGHUP). It
//!   rechecks the image's size before it reads the log.
//! * Health ([`FamfsFs::health`], for `/healthz`): an image that shrank below the filesystem's size,
//!   recent I/O failures, and a filesystem that was re-created or whose log went back under us
//!   ("stale": from then on READ, WRITE and GET_FMAP answer EIO rather than use the old extent maps).
//!
//! Layout: this file holds the shared state ([`FamfsFs`]) and what both paths need (attributes,
//! entries, flushing); `ops` is the [`Filesystem`] implementation (one method per opcode), `refresh`
//! the client role ([`FamfsFs::refresh`], [`LogWatcher`]), `volume` the glue to the format library,
//! `data` the data path over the image's descriptor, `health` the health state.
//!
//! Owns the filesystem semantics only. Must not do wire encoding or INIT (that is `fuse`), parse media
//! bytes (that is `famfs`, reached only through `volume`), or touch probes and the join beyond
//! answering [`Catalog`] queries. Hot path (LOOKUP, GETATTR, READ): a read lock on the volume, atomics
//! for lookup counts, no allocation.
//!
//! [`Filesystem`]: crate::fuse::Filesystem

mod catalog;
pub mod data;
mod health;
mod ops;
mod refresh;
pub mod volume;

#[cfg(test)]
mod tests;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, atomic::AtomicU64},
    time::{Duration, SystemTime},
};

use thiserror::Error;

use crate::{
    fuse::{
        Errno,
        abi::{Attr, EntryOut},
        stats::RateLimit,
    },
    util::monotonic_ns,
};

use data::DataPath;
use health::Health;
use volume::{Node, NodeKind, Store, StoreError, Volume};

pub use catalog::{Catalog, FileInfo};
pub use refresh::LogWatcher;
#[cfg(any(test, feature = "sim"))]
pub use refresh::RefreshHook;
pub use volume::{AddedNode, RefreshReport};

/// `st_blksize`: the famfs allocation unit.
pub const BLKSIZE: u32 = 2 << 20;
/// Longest name component a famfs relpath can hold (79 bytes including the rest of the path).
pub const NAME_MAX: u32 = 79;

/// How the server behaves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Refuse writes (the image is opened read-only too).
    pub read_only: bool,
    /// Daxdev path for GET_DAXDEV index 0; `None`: the superblock's `dd_daxdev`.
    pub daxdev: Option<PathBuf>,
    /// Entry and attribute validity the kernel may cache. Names never disappear and sizes never
    /// change, so caching is safe; new names are found because LOOKUP answers ENOENT as an error.
    pub ttl: Duration,
    /// This host's UUID file (decides master/client, shown as the mode of `.meta/.log`); default:
    /// `$FAMFS_SYSTEM_UUID_PATH`, else `/opt/famfs/system_uuid`.
    pub system_uuid_path: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            read_only: false,
            daxdev: None,
            ttl: Duration::from_secs(30),
            system_uuid_path: None,
        }
    }
}

/// Errors opening or refreshing the filesystem.
#[derive(Debug, Error)]
pub enum ServerError {
    #[error("{path}: {source}")]
    Image {
        path: String,
        #[source]
        source: volume::VolumeError,
    },
    /// Opening the image, or re-reading its length (the message names it).
    #[error(transparent)]
    Open(#[from] StoreError),
    #[error("the namespace lock is poisoned (a worker panicked)")]
    Poisoned,
    #[error(
        "{path}: the image is {len:#x} bytes, smaller than the filesystem's {need:#x} (dd_size): it shrank after it was opened; files stored past its end answer EIO and the log is not read until it is whole again"
    )]
    Shrunk { path: String, len: u64, need: u64 },
    #[error("{0}")]
    Stale(String),
}

/// Counters of the client role (refreshes from the log).
#[derive(Debug, Default)]
pub struct RefreshStats {
    pub polls: AtomicU64,
    pub refreshes: AtomicU64,
    pub added: AtomicU64,
    pub errors: AtomicU64,
    pub notify_errors: AtomicU64,
    /// Chunks a refresh applied under the namespace's write lock (at most
    /// [`volume::DECODE_CHUNK`] entries each).
    pub apply_steps: AtomicU64,
    /// Longest time a refresh held the namespace's write lock, ns (one chunk's apply: no I/O).
    pub apply_max_ns: AtomicU64,
    /// Time refreshes spent reading and checking log entries under the shared lock, ns.
    pub read_ns: AtomicU64,
}

/// What one [`FamfsFs::refresh`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefreshSummary {
    /// Whether the log was replayed at all (false: nothing new).
    pub replayed: bool,
    pub report: RefreshReport,
}

struct Inner {
    vol: RwLock<Volume>,
    /// One refresh at a time (its steps alternate between the shared and the exclusive lock).
    refresh_gate: Mutex<()>,
    /// Test builds: called after each chunk of a refresh was read, with the shared lock held.
    #[cfg(any(test, feature = "sim"))]
    refresh_hook: Mutex<Option<RefreshHook>>,
    data: DataPath,
    health: Health,
    /// The filesystem's size (`dd_size`): the image must be at least this long.
    dev_size: u64,
    daxdev: PathBuf,
    read_only: bool,
    ttl: (u64, u32),
    /// The per-mount time every object reports (famfs keeps no times).
    time: (u64, u32),
    next_index_off: u64,
    fs_uuid: String,
    refresh_stats: RefreshStats,
    log_limit: RateLimit,
}

/// The famfs filesystem. Cheap to clone (shared state): the session serves one clone, the join's
/// catalog and the log watcher hold others.
#[derive(Clone)]
pub struct FamfsFs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FamfsFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FamfsFs")
            .field("fs_uuid", &self.inner.fs_uuid)
            .field("data", &self.inner.data)
            .finish_non_exhaustive()
    }
}

fn split_duration(d: Duration) -> (u64, u32) {
    (d.as_secs(), d.subsec_nanos())
}

impl FamfsFs {
    /// Open the image at `path` once (`O_NOFOLLOW`: a symbolic link is refused; read-write unless
    /// `cfg.read_only`) and serve it: see [`FamfsFs::from_store`].
    pub fn open(path: &Path, cfg: &ServerConfig) -> Result<FamfsFs, ServerError> {
        let store = Store::open(path, !cfg.read_only)?;
        FamfsFs::from_store(store, cfg)
    }

    /// Serve the image behind `store`: replay its log through a read-only handle on it, and use
    /// `store` itself for file data (so both use the one descriptor).
    pub fn from_store(store: Store, cfg: &ServerConfig) -> Result<FamfsFs, ServerError> {
        let path = store.path().to_path_buf();
        let vol = Volume::open(store.read_only_view(), cfg.system_uuid_path.as_deref()).map_err(
            |source| ServerError::Image {
                path: path.display().to_string(),
                source,
            },
        )?;
        let data = if cfg.read_only {
            DataPath::new(store.read_only_view())
        } else {
            DataPath::new(store)
        };
        let daxdev = cfg
            .daxdev
            .clone()
            .unwrap_or_else(|| PathBuf::from(vol.sb_daxdev()));
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(FamfsFs {
            inner: Arc::new(Inner {
                next_index_off: vol.next_index_offset(),
                fs_uuid: vol.fs_uuid(),
                dev_size: vol.dev_size(),
                health: Health::default(),
                vol: RwLock::new(vol),
                refresh_gate: Mutex::new(()),
                #[cfg(any(test, feature = "sim"))]
                refresh_hook: Mutex::new(None),
                data,
                daxdev,
                read_only: cfg.read_only,
                ttl: split_duration(cfg.ttl),
                time: split_duration(now),
                refresh_stats: RefreshStats::default(),
                log_limit: RateLimit::new(10_000_000_000, 20),
            }),
        })
    }

    pub fn fs_uuid(&self) -> &str {
        &self.inner.fs_uuid
    }

    /// The GET_DAXDEV answer for index 0.
    pub fn daxdev(&self) -> &Path {
        &self.inner.daxdev
    }

    pub fn read_only(&self) -> bool {
        self.inner.read_only
    }

    pub fn refresh_stats(&self) -> &RefreshStats {
        &self.inner.refresh_stats
    }

    /// Kernel lookup references currently held on `id`.
    pub fn lookup_count(&self, id: u64) -> u64 {
        self.vol().map_or(0, |v| v.lookup_count(id))
    }

    /// Live objects in the namespace (root and `.meta` included).
    pub fn objects(&self) -> usize {
        self.vol().map_or(0, |v| v.len())
    }

    /// First log index not yet applied.
    pub fn next_index(&self) -> u64 {
        self.vol().map_or(0, |v| v.next_index())
    }

    fn vol(&self) -> Result<RwLockReadGuard<'_, Volume>, Errno> {
        self.inner.vol.read().map_err(|_| Errno::EIO)
    }

    fn vol_mut(&self) -> Result<RwLockWriteGuard<'_, Volume>, ServerError> {
        self.inner.vol.write().map_err(|_| ServerError::Poisoned)
    }

    fn warn(&self, args: std::fmt::Arguments<'_>) {
        if let Some(sup) = self.inner.log_limit.check(monotonic_ns()) {
            if sup > 0 {
                log::warn!("famfs: {args} ({sup} similar lines suppressed)");
            } else {
                log::warn!("famfs: {args}");
            }
        }
    }

    fn attr(&self, n: &Node<'_>) -> Attr {
        let (mode, size, blocks, nlink) = match n.kind {
            NodeKind::Dir { nlink } => (libc::S_IFDIR | n.perm, 0, 0, nlink),
            NodeKind::File { size, fmap } => {
                let alloc: u64 = volume::extents(fmap).map(|(_, l)| l).sum();
                (libc::S_IFREG | n.perm, size, alloc / 512, 1)
            }
        };
        let (t, tn) = self.inner.time;
        Attr {
            ino: n.id,
            size,
            blocks,
            atime: t,
            mtime: t,
            ctime: t,
            atimensec: tn,
            mtimensec: tn,
            ctimensec: tn,
            mode,
            nlink,
            uid: n.uid,
            gid: n.gid,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        }
    }

    fn entry(&self, n: &Node<'_>) -> EntryOut {
        let (s, ns) = self.inner.ttl;
        EntryOut {
            nodeid: n.id,
            generation: 1,
            entry_valid: s,
            attr_valid: s,
            entry_valid_nsec: ns,
            attr_valid_nsec: ns,
            attr: self.attr(n),
        }
    }

    /// The file `ino`: `(size, fmap)` under the held read guard.
    fn file(vol: &Volume, ino: u64) -> Result<(u64, &crate::famfs::Fmap), Errno> {
        match vol.node(ino) {
            Some(Node {
                kind: NodeKind::File { size, fmap },
                ..
            }) => Ok((size, fmap)),
            Some(_) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    /// Make the extents of `ino` durable if it was written since the last flush.
    fn flush_file(&self, ino: u64) -> Result<(), Errno> {
        let vol = self.vol()?;
        if !vol.take_dirty(ino) {
            return Ok(());
        }
        let (_, fmap) = Self::file(&vol, ino)?;
        if let Err(e) = self.inner.data.flush(volume::extents(fmap)) {
            vol.mark_dirty(ino);
            let errno = data::errno_of(&e);
            let first = volume::extents(fmap).next().map_or(0, |(o, _)| o);
            self.inner
                .data
                .record_fault(data::IoOp::Flush, ino, first, errno);
            self.warn(format_args!("flush of inode {ino}: {e}"));
            return Err(Errno(errno));
        }
        Ok(())
    }

    /// The data-path failure `e` of request `op` on `ino` at device offset `dev`: recorded for
    /// `/healthz`, logged (rate-limited), answered with its errno.
    fn io_fault(&self, op: data::IoOp, ino: u64, fo: u64, dev: u64, e: &StoreError) -> Errno {
        let errno = data::errno_of(e);
        self.inner.data.record_fault(op, ino, dev, errno);
        let answer = match errno {
            libc::ENOSPC => "ENOSPC",
            libc::EDQUOT => "EDQUOT",
            _ => "EIO",
        };
        self.warn(format_args!(
            "{} inode {ino} at file offset {fo:#x}: {e}: answered {answer}",
            op.as_str()
        ));
        Errno(errno)
    }
}

impl Catalog for FamfsFs {
    fn file(&self, nodeid: u64) -> Option<FileInfo> {
        let vol = self.vol().ok()?;
        let n = vol.node(nodeid)?;
        let NodeKind::File { size, fmap } = n.kind else {
            return None;
        };
        let (fmap_bytes, fmap_extents) = volume::fmap_wire_size(fmap);
        Some(FileInfo {
            path: format!("/{}", vol.path_of(nodeid)?),
            size,
            fmap_bytes,
            fmap_extents,
        })
    }
}
