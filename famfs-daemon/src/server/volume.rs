//! The thin glue between the FUSE server and the famfs format library ([`crate::famfs`]): open an
//! image, look names up, list directories, refresh from the log, and translate a media [`Fmap`] into
//! the wire description the session serializes ([`WireFmap`]).
//!
//! Owns: every use of the format library's API by the server (so an API change there touches only this
//! file) and the derived per-directory subdirectory counts (`st_nlink`). Must not do FUSE I/O or touch
//! file data (that is `data`).

use std::path::{Path, PathBuf};

use crate::{
    famfs::{self, Fmap, Image, ImageError, ImageOptions, InodeKind, format::ALLOC_UNIT},
    fuse::{WireExtent, WireFmap, WireLayout, abi::famfs as wire},
};

pub use crate::famfs::{
    FIRST_LOG_INO, LOG_INO, META_DIR_INO, ROOT_INO, SUPERBLOCK_INO, Store, StoreError,
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

/// An open famfs filesystem as the server sees it.
pub struct Volume {
    image: Image,
    path: PathBuf,
    /// Subdirectory count per inode id (directories only).
    subdirs: Vec<u32>,
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
        };
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

    /// One past the largest inode id the log can ever produce (sizes per-inode tables once).
    pub fn max_ids(&self) -> u64 {
        FIRST_LOG_INO + self.image.geometry().slots
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
        let bm = ns.bitmap();
        let slots = self.image.geometry().slots;
        Space {
            unit: ALLOC_UNIT,
            units: bm.units(),
            free_units: bm.free_bytes() / ALLOC_UNIT,
            files: slots + (FIRST_LOG_INO - 1),
            free_files: slots.saturating_sub(ns.next_index()),
        }
    }

    /// Apply the log entries appended since the last refresh.
    pub fn refresh(&mut self) -> Result<RefreshReport, ImageError> {
        let r = self.image.refresh()?;
        let mut out = RefreshReport {
            next_index: r.next_index,
            anomalies: r.anomalies.iter().map(|a| a.to_string()).collect(),
            stopped: r.stopped.as_ref().map(|a| a.to_string()),
            added: Vec::with_capacity(r.added.len()),
        };
        for a in r.added {
            if self.image.namespace().get(a.id).is_some_and(|i| i.is_dir()) {
                self.count_subdir(a.parent);
            }
            out.added.push(AddedNode {
                id: a.id,
                parent: a.parent,
                name: a.name,
            });
        }
        Ok(out)
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
