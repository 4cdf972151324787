//! [`Image`]: one famfs filesystem on a backing store, tying the layers together: superblock and
//! geometry checks at open, role, incremental replay ([`Image::refresh`]), and the high-level
//! operations the CLI and the FUSE server use (mkfs, mkdir, creat, file data through the fmaps).
//!
//! Every log-changing operation takes the exclusive log lock, refreshes (so it sees other writers'
//! entries), checks the namespace, allocates from the replayed space map, appends crash-safely and
//! replays its own entry, so the in-memory namespace is always exactly "what the log says". A file
//! created with contents ([`Image::creat_from`], `image cp`) gets its data written and flushed
//! before its entry is appended (`fill.rs`), so a crash never leaves a file with stale contents.
//! Creating a filesystem is `mkfs` ([`MkfsOptions`]). Must not know about FUSE or the CLI's output
//! format.

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::{
    alloc::{AllocError, StripeSpec, alloc_simple, alloc_striped},
    format::{
        ENTRY_SIZE, EntryBody, FILE_FLAG_ALL_HOSTS_RW, FileEntry, Fmap, FmapProblem, FormatError,
        Geometry, LOG_HEADER_SIZE, LogHeader, MkdirEntry, PathProblem, RawFmap, RelPath, SB_SIZE,
        Superblock, format_uuid,
    },
    log::{self, LogError},
    replay::{
        Added, Anomaly, DECODE_CHUNK, Decoded, Inode, InodeKind, Namespace, ROOT_INO,
        decode_entries_into, entry_ino,
    },
    role::{self, Role, RoleError},
    store::{LockGuard, Store, StoreError},
};

mod fill;
mod mkfs;

pub use mkfs::MkfsOptions;

/// Errors of the image layer (wrapping the lower layers' errors unchanged).
#[derive(Debug, Error)]
pub enum ImageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Role(#[from] RoleError),
    #[error(transparent)]
    Alloc(#[from] AllocError),
    #[error("{path:?}: {problem}")]
    BadPath { path: String, problem: PathProblem },
    #[error("{path:?}: no such file or directory")]
    NotFound { path: String },
    #[error("{path:?}: {parent:?} is not a directory")]
    NotDir { path: String, parent: String },
    #[error("{path:?}: already exists (inode {id})")]
    Exists { path: String, id: u64 },
    #[error("inode {id}: no such inode")]
    NoInode { id: u64 },
    #[error("inode {id} is a directory, not a file")]
    NotFile { id: u64 },
    #[error("inode {id}: {len} bytes at file offset {off} go past the file size {size}")]
    PastEof {
        id: u64,
        off: u64,
        len: u64,
        size: u64,
    },
    #[error("inode {id}: file offset {off:#x} is not mapped by the file's extents")]
    Unmapped { id: u64, off: u64 },
    #[error("the image is open read-only")]
    ReadOnly,
    #[error("refusing to append: {0} (run `famfs-daemon image fsck`)")]
    LogStopped(Anomaly),
    #[error(
        "log header next_index went back from {was} to {now}: the filesystem was re-created or corrupted"
    )]
    LogRegressed { was: u64, now: u64 },
    #[error("the superblock changed since open (filesystem re-created?): uuid {was} → {now}")]
    Reformatted { was: String, now: String },
    #[error("{path}: already holds a famfs filesystem ({detail}); use --force to overwrite it")]
    AlreadyFamfs { path: String, detail: String },
    #[error("{path}: {size:#x} bytes is smaller than the minimum device size {min:#x}")]
    TooSmall { path: String, size: u64, min: u64 },
    #[error("mkfs: {0}")]
    Mkfs(String),
    #[error("{path:?}: {problem}")]
    BadFmap { path: String, problem: FmapProblem },
    #[error("{path:?}: explicit extents [{offset:#x}, +{len:#x}) are not free")]
    NotFree { path: String, offset: u64, len: u64 },
    #[error(
        "{path:?}: reading the source at byte {off}: {source} (nothing was appended; the file does not exist)"
    )]
    Source {
        path: String,
        off: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("{path:?}: appended at log index {index} but the entry was not played: {why}")]
    NotCreated {
        path: String,
        index: u64,
        why: String,
    },
}

/// How to open an image.
#[derive(Clone, Debug, Default)]
pub struct ImageOptions {
    pub writable: bool,
    /// Host UUID file (default: `$FAMFS_SYSTEM_UUID_PATH`, else `/opt/famfs/system_uuid`).
    pub system_uuid_path: Option<PathBuf>,
    /// Use this host UUID instead of reading a file (tests, in-memory images).
    pub host_uuid: Option<[u8; 16]>,
}

impl ImageOptions {
    fn host(&self) -> Option<[u8; 16]> {
        self.host_uuid
            .or_else(|| role::host_uuid_for_role(self.system_uuid_path.as_deref()))
    }
}

/// What [`Image::refresh`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refresh {
    /// Inodes created by the newly applied entries.
    pub added: Vec<Added>,
    /// Anomalies of the newly applied entries.
    pub anomalies: Vec<Anomaly>,
    /// The play stopped at this corrupt entry (retried once); later refreshes retry it.
    pub stopped: Option<Anomaly>,
    /// The namespace's next index after the refresh.
    pub next_index: u64,
}

/// Read and frame-check log slots `[from, to)` from `store` (what exists of them: a store too short
/// for the range is a truncation), dropping stale cache lines first (DAX). The caller bounds the range
/// (e.g. to [`DECODE_CHUNK`] slots): this reads all of it.
pub fn read_slots(
    store: &Store,
    geo: &Geometry,
    from: u64,
    to: u64,
) -> Result<Decoded, StoreError> {
    let mut d = Decoded::default();
    read_slots_into(store, geo, from, to, &mut d)?;
    Ok(d)
}

/// [`read_slots`] into `d`, reusing its allocation (the slots' bytes are read into a buffer of the
/// chunk's size first).
pub fn read_slots_into(
    store: &Store,
    geo: &Geometry,
    from: u64,
    to: u64,
    d: &mut Decoded,
) -> Result<(), StoreError> {
    let bytes = slot_bytes(store, geo, from, to)?;
    decode_entries_into(geo, from, to, &bytes, d);
    Ok(())
}

/// The bytes of log slots `[from, to)` that the store holds (fewer when it is too short), after
/// dropping stale cache lines (DAX). The caller bounds the range.
pub fn slot_bytes(
    store: &Store,
    geo: &Geometry,
    from: u64,
    to: u64,
) -> Result<Vec<u8>, StoreError> {
    let mut buf = Vec::new();
    slot_bytes_into(store, geo, from, to, &mut buf)?;
    Ok(buf)
}

/// [`slot_bytes`] into `buf` (resized to what was read), reusing its allocation.
pub fn slot_bytes_into(
    store: &Store,
    geo: &Geometry,
    from: u64,
    to: u64,
    buf: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let off = geo.entry_offset(from);
    let want = to.saturating_sub(from).saturating_mul(ENTRY_SIZE as u64);
    let len = want.min(store.len().saturating_sub(off));
    buf.clear();
    if len == 0 {
        return Ok(());
    }
    let n = usize::try_from(len).map_err(|_| StoreError::ReadTooLarge {
        len,
        max: usize::MAX as u64,
    })?;
    store.invalidate(off, len)?;
    buf.resize(n, 0);
    store.read_into(off, buf)
}

/// An open famfs filesystem.
pub struct Image {
    store: Store,
    sb: Superblock,
    geo: Geometry,
    header: LogHeader,
    ns: Namespace,
    role: Role,
    host: Option<[u8; 16]>,
}

fn path_str(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Trim leading/trailing '/' and check the components (≤ 79 bytes in total).
fn norm_path(path: &str) -> Result<&[u8], ImageError> {
    let p = path.trim_matches('/').as_bytes();
    RelPath::new(p).map_err(|problem| ImageError::BadPath {
        path: path.to_string(),
        problem,
    })?;
    Ok(p)
}

impl Image {
    /// Open `path` (image file or device) with the default host-UUID lookup.
    pub fn open(path: impl AsRef<Path>, writable: bool) -> Result<Image, ImageError> {
        Image::open_with(
            path,
            &ImageOptions {
                writable,
                ..Default::default()
            },
        )
    }

    pub fn open_with(path: impl AsRef<Path>, opts: &ImageOptions) -> Result<Image, ImageError> {
        let store = Store::open(path.as_ref(), opts.writable)?;
        Image::from_store(store, opts)
    }

    /// Check the superblock (S1-S5) and log header (H1-H3), determine the role and replay the log.
    /// A corrupt entry (E1) does not fail the open: the namespace holds what precedes it and
    /// [`Namespace::stopped`] says where the play stopped.
    pub fn from_store(store: Store, opts: &ImageOptions) -> Result<Image, ImageError> {
        let sb = Superblock::decode(&store.read(0, store.len().min(SB_SIZE as u64))?)?;
        let geo = Geometry::new(&sb, store.len())?;
        let host = opts.host();
        let role = role::role_for(&sb.system_uuid, host.as_ref());
        let header = log::read_header(&store, &geo)?;
        let ns = Namespace::new(&geo, role);
        let mut img = Image {
            store,
            sb,
            geo,
            header,
            ns,
            role,
            host,
        };
        img.play(false)?;
        Ok(img)
    }

    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// `ts_uuid` as text (for the `fs_uuid` label).
    pub fn fs_uuid_string(&self) -> String {
        self.sb.fs_uuid_string()
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The log header as of the last refresh.
    pub fn log_header(&self) -> &LogHeader {
        &self.header
    }

    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn host_uuid(&self) -> Option<&[u8; 16]> {
        self.host.as_ref()
    }

    /// Checked reads of the device.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Checked writes (`write_at`, `flush`) when opened writable. Writing over the superblock or the
    /// log by hand bypasses every rule of this module.
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    pub fn into_store(self) -> Store {
        self.store
    }

    /// Re-read the log header and apply only the entries appended since the last refresh.
    pub fn refresh(&mut self) -> Result<Refresh, ImageError> {
        self.play(true)
    }

    /// Play the new entries in place, a chunk of the log at a time (what opens and the CLI do; a
    /// server that must keep serving uses the steps below instead).
    fn play(&mut self, collect: bool) -> Result<Refresh, ImageError> {
        self.recheck_len()?;
        let hdr = self.check_log()?;
        self.header = hdr;
        let end = hdr.next_index.min(self.geo.slots);
        let mut out = Refresh::default();
        let mut retried = false;
        let mut bytes = Vec::new();
        while self.ns.next_index() < end {
            let from = self.ns.next_index();
            let to = end.min(from.saturating_add(DECODE_CHUNK));
            slot_bytes_into(&self.store, &self.geo, from, to, &mut bytes)?;
            let o = self.ns.apply_slots(from, to, &bytes, collect);
            out.added.extend(o.added);
            out.anomalies.extend(o.anomalies);
            out.stopped = o.stopped;
            if out.stopped.is_some() {
                // The reference re-reads a failing entry once before giving up (§8.2.1).
                if retried {
                    break;
                }
                retried = true;
            } else if self.ns.next_index() == from {
                break;
            }
        }
        out.next_index = self.ns.next_index();
        Ok(out)
    }

    /// First step of a refresh (one fstat): re-check the backing object's length, which a regular
    /// file can lose behind our back (every handle on the store sees the new length). Returns the
    /// accessible length.
    pub fn recheck_len(&self) -> Result<u64, ImageError> {
        Ok(self.store.refresh()?)
    }

    /// Second step, read-only: the superblock still describes the filesystem that was opened, and the
    /// log header (H1-H3, re-read past any stale cache lines) did not go back. Returns the header
    /// whose `next_index` the refresh plays up to.
    pub fn check_log(&self) -> Result<LogHeader, ImageError> {
        let sb = Superblock::decode(&self.store.read(0, self.store.len().min(SB_SIZE as u64))?)?;
        if sb.uuid != self.sb.uuid || Geometry::new(&sb, self.store.len())? != self.geo {
            return Err(ImageError::Reformatted {
                was: format_uuid(&self.sb.uuid),
                now: format_uuid(&sb.uuid),
            });
        }
        // On shared DAX memory another host appends: drop stale cache lines first (a no-op for files).
        self.store
            .invalidate(self.geo.log_offset, LOG_HEADER_SIZE as u64)?;
        let hdr = log::read_header(&self.store, &self.geo)?;
        if hdr.next_index < self.ns.next_index() {
            return Err(ImageError::LogRegressed {
                was: self.ns.next_index(),
                now: hdr.next_index,
            });
        }
        Ok(hdr)
    }

    /// Third step, read-only and repeated: read and frame-check (E1) the next chunk of at most
    /// [`DECODE_CHUNK`] entries between the namespace's next index and `hdr.next_index`. A failing
    /// entry is re-read once (after dropping its cache lines, as the reference does, §8.2.1) before it
    /// stops the chunk. Reads no more than the chunk, whatever the header claims.
    pub fn read_entries(&self, hdr: &LogHeader) -> Result<Decoded, ImageError> {
        let mut d = Decoded::default();
        self.read_entries_into(hdr, &mut d)?;
        Ok(d)
    }

    /// [`Self::read_entries`] into `d`, reusing its allocation.
    pub fn read_entries_into(&self, hdr: &LogHeader, d: &mut Decoded) -> Result<(), ImageError> {
        let from = self.ns.next_index();
        let to = hdr
            .next_index
            .min(self.geo.slots)
            .min(from.saturating_add(DECODE_CHUNK));
        read_slots_into(&self.store, &self.geo, from, to, d)?;
        if let Some(stop) = &d.stopped {
            let again = read_slots(&self.store, &self.geo, stop.index, to)?;
            d.stopped = again.stopped;
            d.entries.extend(again.entries);
        }
        Ok(())
    }

    /// Last step, repeated: apply a chunk from [`Self::read_entries`] (a short exclusive step: no I/O,
    /// at most [`DECODE_CHUNK`] entries) and collect what it did into `out`. Returns true when the
    /// refresh is complete (the header's `next_index` was reached or the play stopped).
    pub fn apply_entries(
        &mut self,
        hdr: &LogHeader,
        d: &Decoded,
        collect: bool,
        out: &mut Refresh,
    ) -> bool {
        self.header = *hdr;
        let before = self.ns.next_index();
        let o = self.ns.apply_decoded(d, collect);
        out.added.extend(o.added);
        out.anomalies.extend(o.anomalies);
        out.stopped = o.stopped;
        out.next_index = self.ns.next_index();
        out.stopped.is_some()
            || self.ns.next_index() >= hdr.next_index.min(self.geo.slots)
            || self.ns.next_index() == before
    }

    // -----------------------------------------------------------------------------------------------
    // Writing

    fn check_appendable(&self) -> Result<(), ImageError> {
        if !self.store.is_writable() {
            return Err(ImageError::ReadOnly);
        }
        log::check_master(self.role, self.host.as_ref(), &self.sb.system_uuid)?;
        Ok(())
    }

    /// Lock, refresh, and refuse when the play is stopped at a corrupt entry.
    fn prepare_append(&mut self) -> Result<LockGuard, ImageError> {
        self.check_appendable()?;
        let guard = self.store.lock_exclusive()?;
        self.play(false)?;
        if let Some(a) = self.ns.stopped() {
            return Err(ImageError::LogStopped(a.clone()));
        }
        Ok(guard)
    }

    /// Parent directory id of a normalized path, or NotFound/NotDir.
    fn parent_dir(&self, orig: &str, p: &[u8]) -> Result<(u64, usize), ImageError> {
        let cut = p.iter().rposition(|&c| c == b'/');
        let dir = cut.map_or(&p[..0], |c| &p[..c]);
        let id = self
            .ns
            .lookup_path(dir)
            .ok_or_else(|| ImageError::NotFound {
                path: path_str(dir),
            })?;
        if !self.ns.get(id).is_some_and(Inode::is_dir) {
            return Err(ImageError::NotDir {
                path: orig.to_string(),
                parent: path_str(dir),
            });
        }
        Ok((id, cut.map_or(0, |c| c + 1)))
    }

    fn append_and_play(&mut self, path: &[u8], bodies: &[EntryBody]) -> Result<u64, ImageError> {
        let first = log::append(&mut self.store, &self.geo, bodies)?;
        self.play(false)?;
        let last = first + bodies.len() as u64 - 1;
        let id = entry_ino(last);
        if self.ns.get(id).is_none() {
            let why = self
                .ns
                .anomalies()
                .iter()
                .rev()
                .find(|a| a.index == last)
                .map(|a| a.to_string())
                .or_else(|| self.ns.stopped().map(|a| a.to_string()))
                .unwrap_or_else(|| "no inode".into());
            return Err(ImageError::NotCreated {
                path: path_str(path),
                index: last,
                why,
            });
        }
        Ok(id)
    }

    /// Create a directory (`parents`: also every missing ancestor, one MKDIR each, parent first, all in
    /// one append; an existing directory is then not an error). Returns its inode id.
    pub fn mkdir(
        &mut self,
        path: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        parents: bool,
    ) -> Result<u64, ImageError> {
        let p = norm_path(path)?;
        let _lock = self.prepare_append()?;
        let mk = |prefix: &[u8]| -> Result<EntryBody, ImageError> {
            Ok(EntryBody::Mkdir(MkdirEntry {
                uid,
                gid,
                mode: mode & 0o7777,
                relpath: RelPath::new(prefix).map_err(|problem| ImageError::BadPath {
                    path: path_str(prefix),
                    problem,
                })?,
            }))
        };
        if !parents {
            let (parent, name_at) = self.parent_dir(path, p)?;
            if let Some(id) = self.ns.lookup(parent, &p[name_at..]) {
                return Err(ImageError::Exists {
                    path: path.to_string(),
                    id,
                });
            }
            return self.append_and_play(p, &[mk(p)?]);
        }
        let mut bodies = Vec::new();
        let mut cur = Some(ROOT_INO);
        let mut end = 0;
        for comp in p.split(|&c| c == b'/') {
            end += comp.len();
            let prefix = &p[..end];
            match cur.and_then(|d| self.ns.lookup(d, comp)) {
                Some(id) if self.ns.get(id).is_some_and(Inode::is_dir) => cur = Some(id),
                Some(_) => {
                    return Err(ImageError::NotDir {
                        path: path.to_string(),
                        parent: path_str(prefix),
                    });
                }
                None => {
                    cur = None;
                    bodies.push(mk(prefix)?);
                }
            }
            end += 1;
        }
        match cur {
            Some(id) if bodies.is_empty() => Ok(id),
            _ => self.append_and_play(p, &bodies),
        }
    }

    /// Create a file of `size` bytes (mode `& 0777`, flags ALL_HOSTS_RW), placed by the simple or the
    /// striped allocator (a file no larger than one chunk is placed simple). Returns its inode id.
    pub fn creat(
        &mut self,
        path: &str,
        size: u64,
        mode: u32,
        uid: u32,
        gid: u32,
        stripe: Option<StripeSpec>,
    ) -> Result<u64, ImageError> {
        let p = norm_path(path)?;
        let _lock = self.prepare_append()?;
        self.check_new_name(path, p)?;
        let fmap = self.place(size, stripe)?;
        self.append_file(p, size, mode, uid, gid, &fmap)
    }

    /// Allocate `size` bytes from the replayed space map (nothing is marked until the entry is
    /// appended and replayed). A file no larger than one chunk gains nothing from striping: like the
    /// reference CLI, it is placed as a simple file instead of reserving `nstrips` chunks.
    fn place(&self, size: u64, stripe: Option<StripeSpec>) -> Result<Fmap, ImageError> {
        let data_start = self.geo.data_start();
        if let Some(s) = &stripe {
            s.check()?;
        }
        Ok(match stripe {
            Some(s) if size > s.chunk_size => alloc_striped(self.ns.space(), data_start, size, &s)?,
            _ => Fmap::Simple(alloc_simple(self.ns.space(), data_start, size)?),
        })
    }

    /// Create a file with explicit extents (a low-level tool, like famfs's test-only `clone`): the
    /// fmap must pass F1-F3 and lie in free space.
    pub fn creat_with_fmap(
        &mut self,
        path: &str,
        size: u64,
        mode: u32,
        uid: u32,
        gid: u32,
        fmap: &Fmap,
    ) -> Result<u64, ImageError> {
        let p = norm_path(path)?;
        let _lock = self.prepare_append()?;
        self.check_new_name(path, p)?;
        for e in fmap.extents() {
            if !self.ns.space().is_free(e.offset, e.len) {
                return Err(ImageError::NotFree {
                    path: path.to_string(),
                    offset: e.offset,
                    len: e.len,
                });
            }
        }
        self.append_file(p, size, mode, uid, gid, fmap)
    }

    fn check_new_name(&self, orig: &str, p: &[u8]) -> Result<(), ImageError> {
        let (parent, name_at) = self.parent_dir(orig, p)?;
        if let Some(id) = self.ns.lookup(parent, &p[name_at..]) {
            return Err(ImageError::Exists {
                path: orig.to_string(),
                id,
            });
        }
        Ok(())
    }

    fn append_file(
        &mut self,
        p: &[u8],
        size: u64,
        mode: u32,
        uid: u32,
        gid: u32,
        fmap: &Fmap,
    ) -> Result<u64, ImageError> {
        let entry = self.file_entry(p, size, mode, uid, gid, fmap)?;
        self.append_and_play(p, &[EntryBody::File(entry)])
    }

    /// The FILE entry for `p`, checked as replay will check it (so nothing bad reaches the log).
    fn file_entry(
        &self,
        p: &[u8],
        size: u64,
        mode: u32,
        uid: u32,
        gid: u32,
        fmap: &Fmap,
    ) -> Result<FileEntry, ImageError> {
        let bad = |problem| ImageError::BadFmap {
            path: path_str(p),
            problem,
        };
        let raw = RawFmap::from_fmap(fmap).map_err(bad)?;
        let entry = FileEntry {
            size,
            flags: FILE_FLAG_ALL_HOSTS_RW,
            uid,
            gid,
            mode: mode & 0o777,
            relpath: RelPath::new(p).map_err(|problem| ImageError::BadPath {
                path: path_str(p),
                problem,
            })?,
            fmap: raw,
        };
        raw.check(size, &self.geo).map_err(bad)?;
        Ok(entry)
    }

    fn file(&self, id: u64) -> Result<(u64, &Fmap), ImageError> {
        match self.ns.get(id) {
            None => Err(ImageError::NoInode { id }),
            Some(Inode {
                kind: InodeKind::File { size, fmap },
                ..
            }) => Ok((*size, fmap)),
            Some(_) => Err(ImageError::NotFile { id }),
        }
    }

    /// Write `data` at file offset `off` through the file's extents and flush it. The file size is
    /// fixed: writes past it fail.
    pub fn write_file(&mut self, id: u64, off: u64, data: &[u8]) -> Result<(), ImageError> {
        if !self.store.is_writable() {
            return Err(ImageError::ReadOnly);
        }
        let (size, fmap) = match self.ns.get(id) {
            None => return Err(ImageError::NoInode { id }),
            Some(Inode {
                kind: InodeKind::File { size, fmap },
                ..
            }) => (*size, fmap),
            Some(_) => return Err(ImageError::NotFile { id }),
        };
        let len = data.len() as u64;
        if off.checked_add(len).is_none_or(|end| end > size) {
            return Err(ImageError::PastEof { id, off, len, size });
        }
        let mut done = 0u64;
        while done < len {
            let fo = off + done;
            let (dev, avail) = fmap
                .resolve(fo, size)
                .ok_or(ImageError::Unmapped { id, off: fo })?;
            let n = avail.min(len - done);
            let piece = &data[done as usize..(done + n) as usize];
            self.store.write_at(dev, piece)?;
            self.store.flush(dev, n)?;
            done += n;
        }
        Ok(())
    }

    /// Read up to `buf.len()` bytes at file offset `off`; returns the count (0 at or past EOF).
    pub fn read_file(&self, id: u64, off: u64, buf: &mut [u8]) -> Result<usize, ImageError> {
        let (size, fmap) = self.file(id)?;
        if off >= size {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(size - off);
        let mut done = 0u64;
        while done < want {
            let fo = off + done;
            let (dev, avail) = fmap
                .resolve(fo, size)
                .ok_or(ImageError::Unmapped { id, off: fo })?;
            let n = avail.min(want - done);
            self.store
                .read_into(dev, &mut buf[done as usize..(done + n) as usize])?;
            done += n;
        }
        Ok(want as usize)
    }

    /// Inode id of a path ("/" and "" are the root).
    pub fn resolve(&self, path: &str) -> Result<u64, ImageError> {
        self.ns
            .lookup_path(path.as_bytes())
            .ok_or_else(|| ImageError::NotFound {
                path: path.to_string(),
            })
    }
}
