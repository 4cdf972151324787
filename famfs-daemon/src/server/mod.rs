//! The famfs FUSE server: a [`Filesystem`] over the namespace replayed from a famfs image's log.
//!
//! * Metadata: LOOKUP (ENOENT as an error, so names appended later are found), FORGET/BATCH_FORGET
//!   (lookup counts per nodeid), GETATTR (`st_ino` = inode id = nodeid; `st_size` = `fm_size`, which
//!   never changes), SETATTR (size changes refused with EINVAL), STATFS (device size and allocator),
//!   OPENDIR/READDIR/READDIRPLUS/RELEASEDIR (offset = index into `.`, `..`, then the directory's
//!   children in creation order, which only ever grows at the end), GETXATTR (ENODATA).
//! * famfs: GET_FMAP (the media fmap translated to the wire; the session applies the dialect's size
//!   rules) and GET_DAXDEV (index 0 only).
//! * Stock-kernel data path: OPEN/READ/WRITE/FLUSH/FSYNC/RELEASE through a shared map of the device
//!   ([`data::DataMap`]) and the file's extents; writes stay within the fixed file size.
//! * Client role: [`FamfsFs::refresh`] applies entries other writers appended and invalidates the
//!   kernel's view of what changed; [`LogWatcher`] calls it on a timer and on demand (SIGHUP).
//!
//! Owns the filesystem semantics only. Must not do wire encoding or INIT (that is `fuse`), parse media
//! bytes (that is `famfs`, reached only through `volume`), or touch probes and the join beyond
//! answering [`Catalog`] queries. Hot path (LOOKUP, GETATTR, READ): a read lock on the volume, atomics
//! for lookup counts, no allocation.

pub mod data;
pub mod volume;

/// Walk directory `ino` of `vol` from listing offset `offset`: ".", "..", then the children in
/// creation order; offset `k + 1` resumes after entry `k`, so offsets stay stable while entries are
/// appended. `emit(next_offset, id, name, node)` gets `None` for "." and ".." and returns false when
/// the reply buffer is full. Shared by READDIR and READDIRPLUS.
fn walk_dir(
    vol: &Volume,
    ino: u64,
    offset: u64,
    mut emit: impl FnMut(u64, u64, &[u8], Option<&Node<'_>>) -> bool,
) -> Result<(), Errno> {
    let dir = vol.node(ino).ok_or(Errno::ENOENT)?;
    if !dir.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    let children = vol.children(ino);
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    for k in start..children.len().saturating_add(2) {
        let next = k as u64 + 1;
        let more = match k {
            0 => emit(next, ino, b".", None),
            1 => emit(next, dir.parent, b"..", None),
            _ => {
                let (name, id) = &children[k - 2];
                let Some(n) = vol.node(*id) else { continue };
                emit(next, *id, name, Some(&n))
            }
        };
        if !more {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

use std::{
    ffi::OsStr,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{Receiver, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

use thiserror::Error;

use crate::{
    fuse::{
        DirentBuf, DirentPlusBuf, Errno, Filesystem, FmapReply, Notifier, Request, WireExtent,
        abi::{
            Attr, AttrOut, EntryOut, FlushIn, FsyncIn, GetattrIn, Kstatfs, OpenIn, OpenOut, ReadIn,
            ReleaseIn, SetattrIn, WriteIn, fattr, init_flags,
        },
        dt,
        stats::RateLimit,
    },
    join::{Catalog, FileInfo},
    util::monotonic_ns,
};

use data::{DataMap, WriteError};
use volume::{Node, NodeKind, Volume, WIRE_EXTENTS_INLINE};

pub use volume::{AddedNode, RefreshReport};

/// `st_blksize`: the famfs allocation unit.
pub const BLKSIZE: u32 = 2 << 20;
/// Longest name component a famfs relpath can hold (79 bytes including the rest of the path).
pub const NAME_MAX: u32 = 79;

/// How the server behaves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Refuse writes (the map is read-only too).
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
    #[error("{0}")]
    Data(#[from] std::io::Error),
    #[error("the namespace lock is poisoned (a worker panicked)")]
    Poisoned,
}

/// Counters of the client role (refreshes from the log).
#[derive(Debug, Default)]
pub struct RefreshStats {
    pub polls: AtomicU64,
    pub refreshes: AtomicU64,
    pub added: AtomicU64,
    pub errors: AtomicU64,
    pub notify_errors: AtomicU64,
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
    data: DataMap,
    /// Kernel lookup references per inode id (LOOKUP, READDIRPLUS entries; FORGET drops them).
    lookups: Box<[AtomicU64]>,
    /// Files written since their last flush, per inode id.
    dirty: Box<[AtomicBool]>,
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
    /// Open the image at `path`, replay its log and map its data.
    pub fn open(path: &Path, cfg: &ServerConfig) -> Result<FamfsFs, ServerError> {
        let vol = Volume::open(path, cfg.system_uuid_path.as_deref()).map_err(|source| {
            ServerError::Image {
                path: path.display().to_string(),
                source,
            }
        })?;
        let data = DataMap::open(path, vol.device_len(), !cfg.read_only)?;
        let n = usize::try_from(vol.max_ids()).unwrap_or(usize::MAX);
        let lookups = (0..n).map(|_| AtomicU64::new(0)).collect();
        let dirty = (0..n).map(|_| AtomicBool::new(false)).collect();
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
                vol: RwLock::new(vol),
                data,
                lookups,
                dirty,
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
        self.slot(&self.inner.lookups, id)
            .map_or(0, |c| c.load(Ordering::Relaxed))
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

    fn slot<'a, T>(&self, table: &'a [T], id: u64) -> Option<&'a T> {
        table.get(usize::try_from(id).ok()?)
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

    fn add_lookup(&self, id: u64) {
        if let Some(c) = self.slot(&self.inner.lookups, id) {
            c.fetch_add(1, Ordering::Relaxed);
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

    /// msync the extents of `ino` if it was written since the last flush.
    fn flush_file(&self, ino: u64) -> Result<(), Errno> {
        let Some(d) = self.slot(&self.inner.dirty, ino) else {
            return Ok(());
        };
        if !d.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let vol = self.vol()?;
        let (_, fmap) = Self::file(&vol, ino)?;
        for (off, len) in volume::extents(fmap) {
            if let Err(e) = self.inner.data.flush(off, len) {
                d.store(true, Ordering::Release);
                self.warn(format_args!(
                    "msync of inode {ino} [{off:#x}, +{len:#x}): {e}"
                ));
                return Err(Errno::EIO);
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------------------
    // Client role

    /// Apply log entries appended since the last refresh (by another process or host) and tell the
    /// kernel what changed: `inval_entry(parent, name)` for every new name and `inval_inode(parent)`
    /// for every directory that gained one. Without `force`, first compares the log header's
    /// `next_index` (one 8-byte read of the map) with the namespace and returns at once when nothing
    /// was appended. Notifications are sent after the namespace lock is released.
    pub fn refresh(
        &self,
        notifier: Option<&Notifier>,
        force: bool,
    ) -> Result<RefreshSummary, ServerError> {
        let st = &self.inner.refresh_stats;
        st.polls.fetch_add(1, Ordering::Relaxed);
        if !force {
            let on_media = self.inner.data.read_u64(self.inner.next_index_off).ok();
            let vol = self.vol().map_err(|_| ServerError::Poisoned)?;
            if on_media == Some(vol.next_index()) && !vol.is_stopped() {
                return Ok(RefreshSummary::default());
            }
        }
        if let Err(e) = self.inner.data.recheck() {
            self.warn(format_args!("fstat of the image: {e}"));
        }
        let report = {
            let mut vol = self.vol_mut()?;
            let path = vol.path().display().to_string();
            vol.refresh().map_err(|source| {
                st.errors.fetch_add(1, Ordering::Relaxed);
                ServerError::Image { path, source }
            })?
        };
        st.refreshes.fetch_add(1, Ordering::Relaxed);
        st.added
            .fetch_add(report.added.len() as u64, Ordering::Relaxed);
        if let Some(n) = notifier {
            let mut parents: Vec<u64> = Vec::new();
            for a in &report.added {
                // ENOENT: the kernel had no such dentry cached, which is the common case.
                if let Err(e) = n.inval_entry(a.parent, &a.name)
                    && e.raw_os_error() != Some(libc::ENOENT)
                {
                    st.notify_errors.fetch_add(1, Ordering::Relaxed);
                    self.warn(format_args!(
                        "inval_entry({}, {:?}): {e}",
                        a.parent,
                        String::from_utf8_lossy(&a.name)
                    ));
                }
                if !parents.contains(&a.parent) {
                    parents.push(a.parent);
                }
            }
            for p in parents {
                if let Err(e) = n.inval_inode(p, 0, 0)
                    && e.raw_os_error() != Some(libc::ENOENT)
                {
                    st.notify_errors.fetch_add(1, Ordering::Relaxed);
                    self.warn(format_args!("inval_inode({p}): {e}"));
                }
            }
        }
        Ok(RefreshSummary {
            replayed: true,
            report,
        })
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

impl Filesystem for FamfsFs {
    fn init_flags(&self) -> u64 {
        init_flags::DO_READDIRPLUS | init_flags::READDIRPLUS_AUTO
    }

    fn destroy(&self) {
        // Make every written byte durable before the connection goes away.
        for (id, d) in self.inner.dirty.iter().enumerate() {
            if d.load(Ordering::Acquire) {
                let _ = self.flush_file(id as u64);
            }
        }
    }

    fn lookup(&self, _req: &Request<'_>, parent: u64, name: &OsStr) -> Result<EntryOut, Errno> {
        let vol = self.vol()?;
        let p = vol.node(parent).ok_or(Errno::ENOENT)?;
        if !p.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let id = vol.lookup(parent, name.as_bytes()).ok_or(Errno::ENOENT)?;
        let n = vol.node(id).ok_or(Errno::ENOENT)?;
        let e = self.entry(&n);
        self.add_lookup(id);
        Ok(e)
    }

    fn forget(&self, _req: &Request<'_>, nodeid: u64, nlookup: u64) {
        if let Some(c) = self.slot(&self.inner.lookups, nodeid) {
            let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(nlookup))
            });
        }
    }

    fn getattr(&self, _req: &Request<'_>, ino: u64, _arg: &GetattrIn) -> Result<AttrOut, Errno> {
        let vol = self.vol()?;
        let n = vol.node(ino).ok_or(Errno::ENOENT)?;
        let (s, ns) = self.inner.ttl;
        Ok(AttrOut {
            attr_valid: s,
            attr_valid_nsec: ns,
            attr: self.attr(&n),
            ..Default::default()
        })
    }

    fn setattr(&self, _req: &Request<'_>, ino: u64, arg: &SetattrIn) -> Result<AttrOut, Errno> {
        let vol = self.vol()?;
        let n = vol.node(ino).ok_or(Errno::ENOENT)?;
        let cur = self.attr(&n);
        if arg.valid & fattr::SIZE != 0 && arg.size != cur.size {
            // famfs file sizes are fixed at creation (the kernel marks a file whose size changes bad).
            return Err(if n.is_dir() {
                Errno::EISDIR
            } else {
                Errno::EINVAL
            });
        }
        let changes_owner = (arg.valid & fattr::MODE != 0
            && arg.mode & 0o7777 != cur.mode & 0o7777)
            || (arg.valid & fattr::UID != 0 && arg.uid != cur.uid)
            || (arg.valid & fattr::GID != 0 && arg.gid != cur.gid);
        if changes_owner {
            // Metadata lives in the append-only log, which has no entry type for it.
            return Err(Errno::EPERM);
        }
        // Time updates are accepted and have no effect: famfs keeps no times.
        let (s, ns) = self.inner.ttl;
        Ok(AttrOut {
            attr_valid: s,
            attr_valid_nsec: ns,
            attr: cur,
            ..Default::default()
        })
    }

    fn statfs(&self, _req: &Request<'_>, _ino: u64) -> Result<Kstatfs, Errno> {
        let sp = self.vol()?.space();
        let unit = u32::try_from(sp.unit).unwrap_or(BLKSIZE);
        Ok(Kstatfs {
            blocks: sp.units,
            bfree: sp.free_units,
            bavail: if self.inner.read_only {
                0
            } else {
                sp.free_units
            },
            files: sp.files,
            ffree: sp.free_files,
            bsize: unit,
            namelen: NAME_MAX,
            frsize: unit,
            ..Default::default()
        })
    }

    fn opendir(&self, _req: &Request<'_>, ino: u64, _arg: &OpenIn) -> Result<OpenOut, Errno> {
        match self.vol()?.node(ino) {
            Some(n) if n.is_dir() => Ok(OpenOut::default()),
            Some(_) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn readdir(
        &self,
        _req: &Request<'_>,
        ino: u64,
        arg: &ReadIn,
        out: &mut DirentBuf<'_>,
    ) -> Result<(), Errno> {
        let vol = self.vol()?;
        walk_dir(&vol, ino, arg.offset, |next, id, name, node| {
            let typ = match node {
                Some(n) if !n.is_dir() => dt::REG,
                _ => dt::DIR,
            };
            out.push(id, next, typ, name)
        })
    }

    fn readdirplus(
        &self,
        _req: &Request<'_>,
        ino: u64,
        arg: &ReadIn,
        out: &mut DirentPlusBuf<'_>,
    ) -> Result<(), Errno> {
        let vol = self.vol()?;
        walk_dir(&vol, ino, arg.offset, |next, id, name, node| match node {
            // No nodeid for "." and "..": the kernel takes no lookup reference for them.
            None => {
                let e = EntryOut {
                    attr: Attr {
                        ino: id,
                        mode: libc::S_IFDIR,
                        ..Default::default()
                    },
                    ..Default::default()
                };
                out.push(&e, next, dt::DIR, name)
            }
            Some(n) => {
                let typ = if n.is_dir() { dt::DIR } else { dt::REG };
                let pushed = out.push(&self.entry(n), next, typ, name);
                if pushed {
                    self.add_lookup(id);
                }
                pushed
            }
        })
    }

    fn releasedir(&self, _req: &Request<'_>, _ino: u64, _arg: &ReleaseIn) -> Result<(), Errno> {
        Ok(())
    }

    fn open(&self, _req: &Request<'_>, ino: u64, arg: &OpenIn) -> Result<OpenOut, Errno> {
        let vol = self.vol()?;
        Self::file(&vol, ino)?;
        let acc = arg.flags as i32 & libc::O_ACCMODE;
        if self.inner.read_only && acc != libc::O_RDONLY {
            return Err(Errno::EROFS);
        }
        // Page cache on, dropped at every open (no KEEP_CACHE): another host may have written the
        // shared memory since.
        Ok(OpenOut::default())
    }

    fn release(&self, _req: &Request<'_>, ino: u64, _arg: &ReleaseIn) -> Result<(), Errno> {
        self.flush_file(ino)
    }

    fn flush(&self, _req: &Request<'_>, ino: u64, _arg: &FlushIn) -> Result<(), Errno> {
        self.flush_file(ino)
    }

    fn fsync(&self, _req: &Request<'_>, ino: u64, _arg: &FsyncIn) -> Result<(), Errno> {
        self.flush_file(ino)
    }

    fn read<'a>(
        &'a self,
        _req: &Request<'_>,
        ino: u64,
        arg: &ReadIn,
        buf: &'a mut [u8],
    ) -> Result<&'a [u8], Errno> {
        let vol = self.vol()?;
        let (size, fmap) = Self::file(&vol, ino)?;
        let off = arg.offset;
        if off >= size {
            return Ok(&buf[..0]);
        }
        let want = (buf.len() as u64).min(size - off) as usize;
        let mut done = 0usize;
        while done < want {
            let fo = off + done as u64;
            let Some((dev, avail)) = volume::resolve(fmap, fo, size) else {
                self.warn(format_args!(
                    "READ inode {ino}: file offset {fo:#x} is not mapped by its extents: EIO"
                ));
                return Err(Errno::EIO);
            };
            let n = (avail.min((want - done) as u64)) as usize;
            if let Err(e) = self.inner.data.read_into(dev, &mut buf[done..done + n]) {
                self.warn(format_args!("READ inode {ino} at {fo:#x}: {e}: EIO"));
                return Err(Errno::EIO);
            }
            done += n;
        }
        Ok(&buf[..want])
    }

    fn write(
        &self,
        _req: &Request<'_>,
        ino: u64,
        arg: &WriteIn,
        data: &[u8],
    ) -> Result<u32, Errno> {
        if self.inner.read_only {
            return Err(Errno::EROFS);
        }
        let vol = self.vol()?;
        let (size, fmap) = Self::file(&vol, ino)?;
        let off = arg.offset;
        if data.is_empty() {
            return Ok(0);
        }
        if off >= size {
            // The size is fixed: nothing can be written at or past the end.
            return Err(Errno::EFBIG);
        }
        let want = (data.len() as u64).min(size - off) as usize;
        let mut done = 0usize;
        while done < want {
            let fo = off + done as u64;
            let Some((dev, avail)) = volume::resolve(fmap, fo, size) else {
                self.warn(format_args!(
                    "WRITE inode {ino}: file offset {fo:#x} is not mapped by its extents: EIO"
                ));
                return Err(Errno::EIO);
            };
            let n = (avail.min((want - done) as u64)) as usize;
            match self.inner.data.write_from(dev, &data[done..done + n]) {
                Ok(()) => {}
                Err(WriteError::ReadOnly) => return Err(Errno::EROFS),
                Err(WriteError::Range(e)) => {
                    self.warn(format_args!("WRITE inode {ino} at {fo:#x}: {e}: EIO"));
                    return Err(Errno::EIO);
                }
            }
            done += n;
        }
        if let Some(d) = self.slot(&self.inner.dirty, ino) {
            d.store(true, Ordering::Release);
        }
        // `want` ≤ data.len(), which the session bounded by a u32 request field.
        Ok(want as u32)
    }

    fn getxattr<'a>(
        &'a self,
        _req: &Request<'_>,
        ino: u64,
        _name: &OsStr,
        _buf: &'a mut [u8],
    ) -> Result<&'a [u8], Errno> {
        if self.vol()?.node(ino).is_none() {
            return Err(Errno::ENOENT);
        }
        Err(Errno::ENODATA)
    }

    fn get_fmap(&self, _req: &Request<'_>, ino: u64, out: &mut FmapReply<'_>) -> Result<(), Errno> {
        let vol = self.vol()?;
        let (size, fmap) = match vol.node(ino) {
            Some(Node {
                kind: NodeKind::File { size, fmap },
                ..
            }) => (size, fmap),
            // As the reference: ENOENT for an object without a map, EINVAL for an unknown inode.
            Some(_) => return Err(Errno::ENOENT),
            None => return Err(Errno::EINVAL),
        };
        let mut buf = [WireExtent::default(); WIRE_EXTENTS_INLINE];
        let mut spill = Vec::new();
        let wire = volume::wire_fmap(fmap, size, &mut buf, &mut spill).map_err(|e| {
            self.warn(format_args!("GET_FMAP inode {ino}: {e}: EINVAL"));
            Errno::EINVAL
        })?;
        out.set(&wire).map_err(|e| {
            self.warn(format_args!("GET_FMAP inode {ino}: {e}: EINVAL"));
            Errno::EINVAL
        })
    }

    fn get_daxdev(&self, _req: &Request<'_>, index: u64) -> Result<&Path, Errno> {
        if index != 0 {
            return Err(Errno::EINVAL);
        }
        if self.inner.daxdev.as_os_str().is_empty() {
            return Err(Errno::EOPNOTSUPP);
        }
        Ok(&self.inner.daxdev)
    }
}

/// Calls [`FamfsFs::refresh`] every `interval` and whenever something is sent on its wake channel
/// (the daemon forwards SIGHUP there); stops when the wake channel's sender is dropped.
#[derive(Debug)]
pub struct LogWatcher {
    handle: Option<JoinHandle<()>>,
}

impl LogWatcher {
    pub fn start(
        fs: FamfsFs,
        notifier: Option<Notifier>,
        interval: Duration,
        wake: Receiver<()>,
    ) -> std::io::Result<LogWatcher> {
        let handle = std::thread::Builder::new()
            .name("famfs-log-watch".into())
            .spawn(move || {
                let mut last_stop: Option<String> = None;
                // A persistent failure (a re-created image) is logged once, not every poll.
                let mut last_err: Option<String> = None;
                loop {
                    let force = match wake.recv_timeout(interval) {
                        Ok(()) => true,
                        Err(RecvTimeoutError::Timeout) => false,
                        Err(RecvTimeoutError::Disconnected) => return,
                    };
                    let r = fs.refresh(notifier.as_ref(), force);
                    if r.is_ok() && last_err.take().is_some() {
                        log::info!("famfs: log refresh works again");
                    }
                    match r {
                        Ok(s) if s.replayed => {
                            let r = &s.report;
                            if !r.added.is_empty() || force {
                                log::info!(
                                    "famfs: log refreshed{}: {} new objects, next index {}",
                                    if force { " (requested)" } else { "" },
                                    r.added.len(),
                                    r.next_index
                                );
                            }
                            for a in &r.anomalies {
                                log::warn!("famfs: log: {a}");
                            }
                            if r.stopped != last_stop {
                                if let Some(st) = &r.stopped {
                                    log::warn!("famfs: log play stopped: {st}");
                                }
                                last_stop = r.stopped.clone();
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let msg = e.to_string();
                            if last_err.as_deref() != Some(msg.as_str()) {
                                log::warn!("famfs: log refresh failed: {msg}");
                                last_err = Some(msg);
                            }
                        }
                    }
                }
            })?;
        Ok(LogWatcher {
            handle: Some(handle),
        })
    }

    /// Wait for the thread (after the wake sender was dropped).
    pub fn join(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
