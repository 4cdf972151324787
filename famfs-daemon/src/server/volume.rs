//! The thin glue between the FUSE server and the famfs format library ([`crate::famfs`]): open an
//! image, look names up, list directories, refresh from the log, and translate a media [`Fmap`] into
//! the wire description the session serializes ([`WireFmap`]).
//!
//! Owns: every use of the format library's API by the server (so an API change there touches only this
//! file), the per-inode tables the server keeps beside the namespace (subdirectory counts for
//! `st_nlink`, kernel lookup references, written-since-flush flags) and the steps of a refresh. Must
//! not do FUSE I/O or touch file data (that is `data`).
//!
//! Bounded by the log: every per-inode table is sized by the ids the replayed entries produced
//! ([`famfs::Namespace::id_bound`]) and grows when a refresh adds inodes, never by the superblock's
//! `log_len` (a crafted one may claim billions of slots).
//!
//! Refresh steps, so a server can keep serving while it replays: [`Volume::recheck_len`] (one fstat;
//! the image's one descriptor is shared with the data path, so the server's own recheck there serves
//! too), [`Volume::begin_refresh`] and [`Volume::read_chunk`] (`&self`: the log I/O and the CRC
//! checks, under a shared lock), [`Volume::apply_chunk`] (`&mut`: applies at most
//! [`DECODE_CHUNK`] decoded entries, no I/O). [`Volume::refresh`] runs them all.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use crate::{
    famfs::{
        self, Fmap, Image, ImageError, ImageOptions, InodeKind, LogHeader, Refresh,
        format::ALLOC_UNIT, replay::Decoded,
    },
    fuse::{WireExtent, WireFmap, WireLayout, abi::famfs as wire},
};

pub use crate::famfs::{
    FIRST_LOG_INO, LOG_INO, META_DIR_INO, ROOT_INO, SUPERBLOCK_INO, Store, StoreError,
    replay::DECODE_CHUNK,
};

/// Simple extents / strips a wire fmap can hold without allocating (V3 kernels accept at most 32).
pub const WIRE_EXTENTS_INLINE: usize = 32;

/// What a namespace object is, as the server needs it.
#[derive(Clone, Copy, Debug)]
pub enum NodeKind<'a> {
    /// `nlink` = 2 + subdirectories.
    Dir {
        nlink: u32,
    },
    File {
        size: u64,
        fmap: &'a Fmap,
    },
}

/// One namespace object, borrowed from the volume.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    pub id: u64,
    pub parent: u64,
    pub name: &'a [u8],
    /// Permission bits only.
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub kind: NodeKind<'a>,
}

impl Node<'_> {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, NodeKind::Dir { .. })
    }
}

/// An object created by a refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedNode {
    pub id: u64,
    pub parent: u64,
    pub name: Box<[u8]>,
}

/// What a refresh applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefreshReport {
    pub added: Vec<AddedNode>,
    /// Problems of the newly applied entries, as text with their log index.
    pub anomalies: Vec<String>,
    /// The play stopped at this corrupt entry (later refreshes retry it).
    pub stopped: Option<String>,
    pub next_index: u64,
}

/// Space and inode counts for STATFS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    pub unit: u64,
    pub units: u64,
    pub free_units: u64,
    /// Inode capacity (log slots plus the synthesized objects) and how many are still free.
    pub files: u64,
    pub free_files: u64,
}

/// A refresh in progress: the log header it plays up to and what it did so far.
#[derive(Debug)]
pub struct PendingRefresh {
    hdr: LogHeader,
    done: Refresh,
    report: RefreshReport,
}

impl PendingRefresh {
    /// What the refresh applied.
    pub fn into_report(self) -> RefreshReport {
        self.report
    }
}

/// An open famfs filesystem as the server sees it.
pub struct Volume {
    image: Image,
    path: PathBuf,
    /// Subdirectory count per inode id (directories only).
    subdirs: Vec<u32>,
    /// Kernel lookup references per inode id (LOOKUP, READDIRPLUS entries; FORGET drops them).
    lookups: Vec<AtomicU64>,
    /// Files written since their last flush, per inode id.
    dirty: Vec<AtomicBool>,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("path", &self.path)
            .field("next_index", &self.next_index())
            .finish_non_exhaustive()
    }
}

impl Volume {
    /// Replay the log of the image behind `store` (a read-only handle on the server's one open of
    /// the image: metadata is only read; file data goes through the server's data path).
    /// `system_uuid_path`: this host's UUID file (master or client role).
    pub fn open(store: Store, system_uuid_path: Option<&Path>) -> Result<Volume, ImageError> {
        let path = store.path().to_path_buf();
        let image = Image::from_store(
            store,
            &ImageOptions {
                writable: false,
                system_uuid_path: system_uuid_path.map(Path::to_path_buf),
                host_uuid: None,
            },
        )?;
        let mut v = Volume {
            image,
            path,
            subdirs: Vec::new(),
            lookups: Vec::new(),
            dirty: Vec::new(),
        };
        v.grow_tables();
        let ids: Vec<(u64, u64)> = v
            .image
            .namespace()
            .iter()
            .filter(|i| i.is_dir() && i.id != ROOT_INO)
            .map(|i| (i.id, i.parent))
            .collect();
        for (_, parent) in ids {
            v.count_subdir(parent);
        }
        Ok(v)
    }

    /// Size the per-inode tables for every id the namespace uses now.
    fn grow_tables(&mut self) {
        let n = usize::try_from(self.image.namespace().id_bound()).unwrap_or(usize::MAX);
        if self.lookups.len() < n {
            self.lookups.resize_with(n, || AtomicU64::new(0));
            self.dirty.resize_with(n, || AtomicBool::new(false));
        }
    }

    fn slot<T>(table: &[T], id: u64) -> Option<&T> {
        table.get(usize::try_from(id).ok()?)
    }

    /// Count one kernel lookup reference on `id`.
    pub fn add_lookup(&self, id: u64) {
        if let Some(c) = Self::slot(&self.lookups, id) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drop `n` kernel lookup references on `id` (FORGET).
    pub fn forget(&self, id: u64, n: u64) {
        if let Some(c) = Self::slot(&self.lookups, id) {
            let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
        }
    }

    /// Kernel lookup references currently held on `id`.
    pub fn lookup_count(&self, id: u64) -> u64 {
        Self::slot(&self.lookups, id).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Note that `id` was written since its last flush.
    pub fn mark_dirty(&self, id: u64) {
        if let Some(d) = Self::slot(&self.dirty, id) {
            d.store(true, Ordering::Release);
        }
    }

    /// Clear `id`'s written flag; true when it was set (the caller flushes, and calls
    /// [`Self::mark_dirty`] again if that fails).
    pub fn take_dirty(&self, id: u64) -> bool {
        Self::slot(&self.dirty, id).is_some_and(|d| d.swap(false, Ordering::AcqRel))
    }

    /// Ids written since their last flush.
    pub fn dirty_ids(&self) -> Vec<u64> {
        (0u64..)
            .zip(&self.dirty)
            .filter(|(_, d)| d.load(Ordering::Acquire))
            .map(|(id, _)| id)
            .collect()
    }

    fn count_subdir(&mut self, parent: u64) {
        let p = parent as usize;
        if self.subdirs.len() <= p {
            self.subdirs.resize(p + 1, 0);
        }
        self.subdirs[p] = self.subdirs[p].saturating_add(1);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of the backing object (what the data map covers).
    pub fn device_len(&self) -> u64 {
        self.image.store().len()
    }

    /// The filesystem's size (`dd_size`): the image must be at least this long.
    pub fn dev_size(&self) -> u64 {
        self.image.geometry().dev_size
    }

    pub fn fs_uuid(&self) -> String {
        self.image.fs_uuid_string()
    }

    /// The superblock's `dd_daxdev` (empty if unset).
    pub fn sb_daxdev(&self) -> String {
        self.image.superblock().dev_name_lossy()
    }

    /// Device offset of the log header's `next_index` (polled to notice appends cheaply).
    pub fn next_index_offset(&self) -> u64 {
        self.image.geometry().next_index_offset()
    }

    /// First log index not yet applied.
    pub fn next_index(&self) -> u64 {
        self.image.namespace().next_index()
    }

    /// True while the play is stopped at a corrupt entry.
    pub fn is_stopped(&self) -> bool {
        self.image.namespace().stopped().is_some()
    }

    pub fn node(&self, id: u64) -> Option<Node<'_>> {
        let i = self.image.namespace().get(id)?;
        let kind = match &i.kind {
            InodeKind::Dir => NodeKind::Dir {
                nlink: 2u32.saturating_add(self.subdirs.get(id as usize).copied().unwrap_or(0)),
            },
            InodeKind::File { size, fmap } => NodeKind::File { size: *size, fmap },
        };
        Some(Node {
            id,
            parent: i.parent,
            name: &i.name,
            perm: i.mode & 0o7777,
            uid: i.uid,
            gid: i.gid,
            kind,
        })
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Option<u64> {
        self.image.namespace().lookup(parent, name)
    }

    /// Entries of `dir` in creation order (stable: READDIR offsets index into it).
    pub fn children(&self, dir: u64) -> &[(Box<[u8]>, u64)] {
        self.image.namespace().children(dir)
    }

    /// `/`-separated path from the root (root: empty), lossily decoded.
    pub fn path_of(&self, id: u64) -> Option<String> {
        self.image
            .namespace()
            .path_of(id)
            .map(|p| String::from_utf8_lossy(&p).into_owned())
    }

    /// Live objects (root and `.meta` included).
    pub fn len(&self) -> usize {
        self.image.namespace().len()
    }

    pub fn is_empty(&self) -> bool {
        self.image.namespace().is_empty()
    }

    pub fn space(&self) -> Space {
        let ns = self.image.namespace();
        let space = ns.space();
        let slots = self.image.geometry().slots;
        Space {
            unit: ALLOC_UNIT,
            units: space.units(),
            free_units: space.free_bytes() / ALLOC_UNIT,
            files: slots + (FIRST_LOG_INO - 1),
            free_files: slots.saturating_sub(ns.next_index()),
        }
    }

    /// Apply the log entries appended since the last refresh (all steps at once).
    pub fn refresh(&mut self) -> Result<RefreshReport, ImageError> {
        self.recheck_len()?;
        let mut p = self.begin_refresh()?;
        loop {
            let chunk = self.read_chunk(&p)?;
            if self.apply_chunk(&mut p, &chunk) {
                return Ok(p.into_report());
            }
        }
    }

    /// Refresh step 1 (one fstat): re-check the image's length (every handle on the image's
    /// descriptor sees the new length).
    pub fn recheck_len(&self) -> Result<u64, ImageError> {
        self.image.recheck_len()
    }

    /// Refresh step 2 (read-only): the superblock is unchanged and the log header did not go back.
    pub fn begin_refresh(&self) -> Result<PendingRefresh, ImageError> {
        Ok(PendingRefresh {
            hdr: self.image.check_log()?,
            done: Refresh::default(),
            report: RefreshReport {
                next_index: self.next_index(),
                ..RefreshReport::default()
            },
        })
    }

    /// Refresh step 3 (read-only, repeated): read and frame-check the next chunk of new entries.
    pub fn read_chunk(&self, p: &PendingRefresh) -> Result<Decoded, ImageError> {
        self.image.read_entries(&p.hdr)
    }

    /// Refresh step 4 (`&mut`, repeated; no I/O, at most one chunk of entries): apply `chunk`, grow
    /// the per-inode tables, count new subdirectories. Returns true when the refresh is complete.
    pub fn apply_chunk(&mut self, p: &mut PendingRefresh, chunk: &Decoded) -> bool {
        p.done = Refresh::default();
        let complete = self.image.apply_entries(&p.hdr, chunk, true, &mut p.done);
        self.grow_tables();
        let r = &mut p.report;
        r.next_index = p.done.next_index;
        r.anomalies
            .extend(p.done.anomalies.iter().map(|a| a.to_string()));
        r.stopped = p.done.stopped.as_ref().map(|a| a.to_string());
        for a in p.done.added.drain(..) {
            if self.image.namespace().get(a.id).is_some_and(|i| i.is_dir()) {
                self.count_subdir(a.parent);
            }
            r.added.push(AddedNode {
                id: a.id,
                parent: a.parent,
                name: a.name,
            });
        }
        complete
    }
}

/// The serialized GET_FMAP size of `fmap` and its extent records: 32-byte header, 24 bytes per simple
/// extent or strip, plus a 24-byte interleaved-extent head.
pub fn fmap_wire_size(fmap: &Fmap) -> (u32, u32) {
    let (n, head) = match fmap {
        Fmap::Simple(e) => (e.len(), 0),
        Fmap::Interleaved { strips, .. } => (strips.len(), 24),
    };
    let n32 = u32::try_from(n).unwrap_or(u32::MAX);
    (
        32u32
            .saturating_add(head)
            .saturating_add(n32.saturating_mul(24)),
        n32,
    )
}

/// Why a media fmap cannot be put on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireFmapError {
    /// A devindex, strip count or chunk size does not fit the wire's u32 field.
    FieldTooWide(&'static str, u64),
}

impl std::fmt::Display for WireFmapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireFmapError::FieldTooWide(field, v) => {
                write!(f, "fmap field {field} = {v:#x} does not fit the wire's u32")
            }
        }
    }
}

/// Translate `fmap` (of a file of `size` bytes) for the wire, using `buf` for the converted extents
/// (`spill` when there are more than [`WIRE_EXTENTS_INLINE`]; never for log-created files, which hold
/// at most 16). The reference daemon sends `file_type` REG for every file, meta files included.
pub fn wire_fmap<'b>(
    fmap: &Fmap,
    size: u64,
    buf: &'b mut [WireExtent; WIRE_EXTENTS_INLINE],
    spill: &'b mut Vec<WireExtent>,
) -> Result<WireFmap<'b>, WireFmapError> {
    let src = fmap.extents();
    let dst: &mut [WireExtent] = if src.len() <= WIRE_EXTENTS_INLINE {
        &mut buf[..src.len()]
    } else {
        spill.clear();
        spill.resize(src.len(), WireExtent::default());
        &mut spill[..]
    };
    for (d, e) in dst.iter_mut().zip(src) {
        *d = WireExtent {
            devindex: u32::try_from(e.devindex)
                .map_err(|_| WireFmapError::FieldTooWide("devindex", e.devindex))?,
            offset: e.offset,
            len: e.len,
        };
    }
    let dst: &'b [WireExtent] = dst;
    let layout = match fmap {
        Fmap::Simple(_) => WireLayout::Simple(dst),
        Fmap::Interleaved { chunk_size, strips } => WireLayout::Interleaved {
            nstrips: u32::try_from(strips.len())
                .map_err(|_| WireFmapError::FieldTooWide("nstrips", strips.len() as u64))?,
            chunk_size: u32::try_from(*chunk_size)
                .map_err(|_| WireFmapError::FieldTooWide("chunk_size", *chunk_size))?,
            nbytes: size,
            strips: dst,
        },
    };
    Ok(WireFmap {
        file_type: wire::FILE_TYPE_REG,
        file_size: size,
        layout,
    })
}

/// Map file offset `off` of a file of `size` bytes to `(device offset, contiguous bytes)`.
pub fn resolve(fmap: &Fmap, off: u64, size: u64) -> Option<(u64, u64)> {
    fmap.resolve(off, size)
}

/// Every extent of `fmap` as `(device offset, length)` (for flushing a file's data).
pub fn extents(fmap: &Fmap) -> impl Iterator<Item = (u64, u64)> + Clone + '_ {
    fmap.extents().iter().map(|e| (e.offset, e.len))
}

/// Re-export for callers that need to name the error.
pub type VolumeError = famfs::ImageError;
