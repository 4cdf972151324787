//! [`Image`]: one famfs filesystem on a backing store, tying the layers together: superblock and
//! geometry checks at open, role, incremental replay ([`Image::refresh`]), and the high-level
//! operations the CLI and the FUSE server use (mkfs, mkdir, creat, file data through the fmaps).
//!
//! Every log-changing operation takes the exclusive log lock, refreshes (so it sees other writers'
//! entries), checks the namespace, allocates from the replayed bitmap, appends crash-safely and
//! replays its own entry, so the in-memory namespace is always exactly "what the log says".
//! Must not know about FUSE or the CLI's output format.

use std::{
    fs::OpenOptions,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use thiserror::Error;

use super::{
    alloc::{AllocError, StripeSpec, alloc_simple, alloc_striped},
    format::{
        ALLOC_UNIT, CURRENT_VERSION, DEFAULT_LOG_LEN, EntryBody, FILE_FLAG_ALL_HOSTS_RW, FileEntry,
        Fmap, FmapProblem, FormatError, Geometry, LOG_HEADER_SIZE, LOG_OFFSET, LogHeader,
        MIN_DEV_SIZE, MIN_LOG_LEN, MkdirEntry, PathProblem, RawFmap, RelPath, SB_MAGIC, SB_SIZE,
        Superblock, VERSION_47, VERSION_48, format_uuid,
    },
    log::{self, LogError},
    replay::{Added, Anomaly, FIRST_LOG_INO, Inode, InodeKind, Namespace},
    role::{self, Role, RoleError},
    store::{Store, StoreError},
};

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
        self.host_uuid.or_else(|| {
            role::read_host_uuid(&role::system_uuid_path(self.system_uuid_path.as_deref())).ok()
        })
    }
}

/// How to create a filesystem.
#[derive(Clone, Debug)]
pub struct MkfsOptions {
    /// Size of a regular image file (created or resized); must be absent or equal for devices.
    pub size: Option<u64>,
    /// Log length: a power of 2, at least 8 MiB.
    pub log_len: u64,
    /// Overwrite an existing famfs filesystem (or another host's).
    pub force: bool,
    /// 48 (default) or 47.
    pub version: u64,
    /// Host UUID file; created with a random UUID if missing.
    pub system_uuid_path: Option<PathBuf>,
    /// Use this host UUID instead of the file.
    pub host_uuid: Option<[u8; 16]>,
    /// Minimum device size (4 GiB; tests of in-memory images lower it).
    pub min_size: u64,
    /// Fixed filesystem / device UUIDs (default random).
    pub uuid: Option<[u8; 16]>,
    pub dev_uuid: Option<[u8; 16]>,
}

impl Default for MkfsOptions {
    fn default() -> Self {
        MkfsOptions {
            size: None,
            log_len: DEFAULT_LOG_LEN,
            force: false,
            version: CURRENT_VERSION,
            system_uuid_path: None,
            host_uuid: None,
            min_size: MIN_DEV_SIZE,
            uuid: None,
            dev_uuid: None,
        }
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
        let sb = Superblock::decode(store.read(0, store.len().min(SB_SIZE as u64))?)?;
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

    fn play(&mut self, collect: bool) -> Result<Refresh, ImageError> {
        self.store.refresh()?;
        let sb = Superblock::decode(self.store.read(0, self.store.len().min(SB_SIZE as u64))?)?;
        if sb.uuid != self.sb.uuid || Geometry::new(&sb, self.store.len())? != self.geo {
            return Err(ImageError::Reformatted {
                was: format_uuid(&self.sb.uuid),
                now: format_uuid(&sb.uuid),
            });
        }
        let mut out = Refresh::default();
        for attempt in 0..2 {
            // On shared DAX memory another host appends: drop stale cache lines first (a no-op for
            // files). The first attempt covers the header and the new entries; the retry everything
            // from the entry that failed.
            self.store
                .invalidate(self.geo.log_offset, LOG_HEADER_SIZE as u64)?;
            let hdr = log::read_header(&self.store, &self.geo)?;
            if hdr.next_index < self.ns.next_index() {
                return Err(ImageError::LogRegressed {
                    was: self.ns.next_index(),
                    now: hdr.next_index,
                });
            }
            self.header = hdr;
            let need = LOG_HEADER_SIZE as u64 + hdr.next_index * super::format::ENTRY_SIZE as u64;
            let avail = self.store.len().saturating_sub(self.geo.log_offset);
            let from =
                (self.geo.entry_offset(self.ns.next_index()) - self.geo.log_offset).min(need);
            self.store.invalidate(
                self.geo.log_offset + from,
                need.min(avail).saturating_sub(from),
            )?;
            let log = self.store.read(self.geo.log_offset, need.min(avail))?;
            let o = self.ns.apply_log(log, &hdr, collect);
            out.added.extend(o.added);
            out.anomalies.extend(o.anomalies);
            out.stopped = o.stopped;
            // The reference re-reads a failing entry once before giving up (§8.2.1).
            if out.stopped.is_none() || attempt == 1 {
                break;
            }
        }
        out.next_index = self.ns.next_index();
        Ok(out)
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
    fn prepare_append(&mut self) -> Result<super::store::LockGuard, ImageError> {
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
        let id = FIRST_LOG_INO + last;
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
        let mut cur = Some(super::replay::ROOT_INO);
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
        let data_start = self.geo.data_start();
        // A file no larger than one chunk gains nothing from striping: like the reference CLI, place it
        // as a simple file instead of reserving `nstrips` chunks for it.
        if let Some(s) = &stripe {
            s.check()?;
        }
        let fmap = match stripe {
            Some(s) if size > s.chunk_size => {
                alloc_striped(self.ns.bitmap(), data_start, size, &s)?
            }
            _ => Fmap::Simple(alloc_simple(self.ns.bitmap(), data_start, size)?),
        };
        self.append_file(p, size, mode, uid, gid, &fmap)
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
            if !self.ns.bitmap().is_free(e.offset, e.len) {
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
        // Reject what replay would reject before it reaches the log.
        raw.check(size, &self.geo).map_err(bad)?;
        self.append_and_play(p, &[EntryBody::File(entry)])
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
            buf[done as usize..(done + n) as usize].copy_from_slice(self.store.read(dev, n)?);
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

    // -----------------------------------------------------------------------------------------------
    // mkfs

    /// Create a filesystem on a regular file (created or resized to `opts.size`) or a device.
    pub fn mkfs(path: impl AsRef<Path>, opts: &MkfsOptions) -> Result<Image, ImageError> {
        let path = path.as_ref();
        let pstr = path.display().to_string();
        let io = |op: &'static str| {
            let p = pstr.clone();
            move |source| {
                ImageError::Store(StoreError::Io {
                    path: p,
                    op,
                    source,
                })
            }
        };
        let exists = path.exists();
        if !exists && opts.size.is_none() {
            return Err(ImageError::Mkfs(format!(
                "{pstr} does not exist; give --size to create an image file"
            )));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(!exists)
            .truncate(false)
            .open(path)
            .map_err(io("open"))?;
        let ft = file.metadata().map_err(io("fstat"))?.file_type();
        if exists {
            let mut head = [0u8; SB_SIZE];
            let n = read_full_at(&file, &mut head).map_err(io("read superblock"))?;
            if n == SB_SIZE {
                check_existing(&pstr, &head, opts)?;
            }
        }
        if let Some(size) = opts.size
            && ft.is_file()
        {
            file.set_len(size).map_err(io("set length"))?;
        }
        drop(file);
        let store = Store::open(path, true)?;
        if let Some(size) = opts.size
            && !ft.is_file()
            && size != store.len()
        {
            return Err(ImageError::Mkfs(format!(
                "{pstr} is a device of {:#x} bytes; --size {size:#x} does not match",
                store.len()
            )));
        }
        Image::mkfs_store(store, opts, path.as_os_str().as_encoded_bytes())
    }

    /// Create a filesystem on an open store; `dev_name` goes to `dd_daxdev` (64 bytes, bounded copy).
    pub fn mkfs_store(
        mut store: Store,
        opts: &MkfsOptions,
        dev_name: &[u8],
    ) -> Result<Image, ImageError> {
        let pstr = store.path().display().to_string();
        let size = store.len();
        if size < opts.min_size {
            return Err(ImageError::TooSmall {
                path: pstr,
                size,
                min: opts.min_size,
            });
        }
        if opts.version != VERSION_47 && opts.version != VERSION_48 {
            return Err(ImageError::Mkfs(format!(
                "version {} (this tool writes 47 or 48)",
                opts.version
            )));
        }
        if !opts.log_len.is_power_of_two() || opts.log_len < MIN_LOG_LEN {
            return Err(ImageError::Mkfs(format!(
                "log length {:#x} must be a power of 2 of at least {MIN_LOG_LEN:#x}",
                opts.log_len
            )));
        }
        if LOG_OFFSET + opts.log_len + ALLOC_UNIT > size {
            return Err(ImageError::Mkfs(format!(
                "a log of {:#x} bytes leaves no data space on {size:#x} bytes",
                opts.log_len
            )));
        }
        if store.len() >= SB_SIZE as u64 {
            let head = store.read_array::<SB_SIZE>(0)?;
            check_existing(&pstr, &head, opts)?;
        }
        let host = match opts.host_uuid {
            Some(h) => h,
            None => role::host_uuid_or_create(&role::system_uuid_path(
                opts.system_uuid_path.as_deref(),
            ))?,
        };
        let rnd = || {
            role::random_uuid().map_err(|source| {
                ImageError::Store(StoreError::Io {
                    path: "/dev/urandom".into(),
                    op: "read",
                    source,
                })
            })
        };
        let uuid = match opts.uuid {
            Some(u) => u,
            None => rnd()?,
        };
        let dev_uuid = match opts.dev_uuid {
            Some(u) => u,
            None => rnd()?,
        };
        let mut sb = Superblock::new(
            opts.version,
            opts.log_len,
            size,
            uuid,
            dev_uuid,
            host,
            dev_name,
        );
        // mkfs does not set sb_flags or dd_uuid: keep what the device holds.
        let old = Superblock::parse(&store.read_array::<SB_SIZE>(0)?);
        sb.sb_flags = old.sb_flags;
        sb.dd_uuid = old.dd_uuid;
        // Log: zero the whole region (without un-sparsing), header, flush; then the superblock.
        store.zero_range(LOG_OFFSET, opts.log_len)?;
        store.write_at(LOG_OFFSET, &LogHeader::new(opts.log_len).encode())?;
        store.flush(LOG_OFFSET, opts.log_len)?;
        store.write_at(0, &sb.encode())?;
        store.flush(0, SB_SIZE as u64)?;
        Image::from_store(
            store,
            &ImageOptions {
                writable: true,
                system_uuid_path: opts.system_uuid_path.clone(),
                host_uuid: Some(host),
            },
        )
    }
}

fn read_full_at(f: &std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Refuse (without force) to overwrite a valid or wrong-version famfs superblock, or another host's.
fn check_existing(path: &str, head: &[u8; SB_SIZE], opts: &MkfsOptions) -> Result<(), ImageError> {
    if opts.force {
        return Ok(());
    }
    let raw = Superblock::parse(head);
    if raw.magic != SB_MAGIC {
        return Ok(());
    }
    let detail = match Superblock::decode(head) {
        Ok(sb) => {
            let host = opts.host_uuid.or_else(|| {
                role::read_host_uuid(&role::system_uuid_path(opts.system_uuid_path.as_deref())).ok()
            });
            let r = role::role_for(&sb.system_uuid, host.as_ref());
            format!(
                "version {}, uuid {}, this host is its {}",
                sb.version,
                sb.fs_uuid_string(),
                r.as_str()
            )
        }
        Err(e @ FormatError::SbVersion { .. }) => e.to_string(),
        Err(_) => return Ok(()),
    };
    Err(ImageError::AlreadyFamfs {
        path: path.to_string(),
        detail,
    })
}
