//! Log replay: turns log entries into the in-memory namespace (inodes, directories, fmaps) and the
//! allocation map, following the reference logplay rules (§8, §10):
//!
//! * entries are applied in index order; a framing failure (E1: CRC or seqnum) stops the play at that
//!   index, entries already applied stay applied, and the next refresh retries from there;
//! * FILE/MKDIR with a bad relpath (E3) or a bad fmap (F1-F3) are skipped with an anomaly;
//! * a missing or non-directory parent (D2) is skipped; parents are never created;
//! * an existing path (D1): the first entry wins; same kind → warning, other kind → error;
//! * DELETE, INVALID and unknown types are ignored and counted (E2); ADD_DAXDEV is ignored (note);
//! * every well-formed FILE entry's extents are claimed in the space map (even if D1/D2 reject the
//!   entry, as the reference builds its allocation bitmap from the log); a unit claimed twice is a
//!   collision (F4, warning, the file is still created).
//!
//! Inode ids are deterministic (stable across remounts and hosts, and equal to `st_ino`): root = 1,
//! `.meta` = 2, `.meta/.superblock` = 3, `.meta/.log` = 4, and the object created by log entry `i` is
//! `FIRST_LOG_INO + i`. Replay is incremental: [`Namespace::apply_log`] applies entries from
//! [`Namespace::next_index`] on, and applying in pieces gives the same namespace as one full play.
//! A whole play decodes and applies slot by slot ([`Namespace::apply_slots`]). A server splits it in
//! two halves: [`decode_entries_into`] frames a chunk of slots (E1) without the namespace, and
//! [`Namespace::apply_decoded`] applies the rules to it; it decodes outside its lock and holds the
//! lock only to apply one chunk ([`DECODE_CHUNK`] entries at most).
//!
//! Resources follow the log, not the superblock: the per-inode tables grow with the entries replayed
//! ([`Namespace::id_bound`]), the allocation map is an interval map of the runs the log claims
//! ([`SpaceMap`]), and a collision costs O(log n) (`owners`), so neither a huge `log_len` nor a huge
//! device size nor a log of colliding extents costs memory or time beyond the entries themselves.
//!
//! Owns: [`Namespace`], [`Inode`], the inode-id rule and the replay rules above; what an anomaly is
//! and how it reads is `anomaly` ([`Anomaly`]), the framing half is `decode`, collision owners are
//! `owners`. Must not touch the store: callers pass the log bytes. Allocation per entry is limited to
//! the inode's own name (kept once in the inode and once in the directory listing) and fmap vector.

use std::{
    collections::{HashMap, hash_map::Entry},
    hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState},
};

use super::{
    alloc::SpaceMap,
    format::{
        ALLOC_UNIT, EntryBody, Extent, FileEntry, Fmap, Geometry, LogHeader, MkdirEntry,
        SB_REGION_SIZE, entry_offset,
    },
    role::Role,
};

mod anomaly;
mod decode;
mod owners;

pub use anomaly::{Anomaly, AnomalyKind, Severity};
use decode::decode_slot;
pub use decode::{DECODE_CHUNK, Decoded, decode_entries_into};
use owners::Owners;

/// Root directory.
pub const ROOT_INO: u64 = 1;
/// Synthesized `.meta` directory.
pub const META_DIR_INO: u64 = 2;
/// Synthesized `.meta/.superblock` (extent `{0, 2 MiB}`).
pub const SUPERBLOCK_INO: u64 = 3;
/// Synthesized `.meta/.log` (extent `{0x200000, log_len}`).
pub const LOG_INO: u64 = 4;
/// Inode id of the object created by log entry 0; entry `i` gets `FIRST_LOG_INO + i` ([`entry_ino`]).
pub const FIRST_LOG_INO: u64 = 16;

/// Inode id of the object log entry `index` creates (if it creates one).
pub const fn entry_ino(index: u64) -> u64 {
    FIRST_LOG_INO + index
}

/// What an inode is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InodeKind {
    Dir,
    File { size: u64, fmap: Fmap },
}

/// One namespace object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    pub id: u64,
    /// Parent directory id (root's parent is root).
    pub parent: u64,
    /// Last path component (root: empty).
    pub name: Box<[u8]>,
    pub kind: InodeKind,
    /// Permission bits only (add `S_IFDIR`/`S_IFREG` for `st_mode`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// The log entry that created it; `None` for root and the synthesized `.meta` objects.
    pub log_index: Option<u64>,
}

impl Inode {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, InodeKind::Dir)
    }

    /// File size (0 for directories).
    pub fn size(&self) -> u64 {
        match &self.kind {
            InodeKind::Dir => 0,
            InodeKind::File { size, .. } => *size,
        }
    }

    pub fn fmap(&self) -> Option<&Fmap> {
        match &self.kind {
            InodeKind::Dir => None,
            InodeKind::File { fmap, .. } => Some(fmap),
        }
    }
}

/// An inode created by a replay step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Added {
    pub id: u64,
    pub parent: u64,
    pub name: Box<[u8]>,
}

/// Result of one [`Namespace::apply_log`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Inodes created (only when asked for).
    pub added: Vec<Added>,
    /// Anomalies recorded by this step (only when asked for: copies of the tail of
    /// [`Namespace::anomalies`]).
    pub anomalies: Vec<Anomaly>,
    /// Set when the play stopped at a corrupt entry (E1); [`Namespace::next_index`] is that entry.
    pub stopped: Option<Anomaly>,
    /// Entries applied (including skipped/ignored ones).
    pub applied: u64,
}

/// Identity hasher for keys that are already SipHash outputs.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A directory's entries: (name, inode id) in creation order.
pub type Listing = Vec<(Box<[u8]>, u64)>;

/// Counts by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NsStats {
    pub dirs: u64,
    pub files: u64,
    pub file_bytes: u64,
}

/// The filesystem tree built from the log.
#[derive(Clone)]
pub struct Namespace {
    geo: Geometry,
    inodes: Vec<Option<Inode>>,
    children: Vec<Listing>,
    /// SipHash(parent, name) → id; `overflow` holds the (astronomically rare) second owners of a hash.
    index: HashMap<u64, u64, BuildHasherDefault<PreHashed>>,
    overflow: Vec<(u64, u64)>,
    hasher: RandomState,
    live: usize,
    next_index: u64,
    anomalies: Vec<Anomaly>,
    stopped: Option<Anomaly>,
    space: SpaceMap,
    owners: Owners,
    /// Scratch list of the unit ranges a FILE entry claims first (reused: no allocation per entry).
    fresh: Vec<(u64, u64)>,
    stats: NsStats,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("inodes", &self.live)
            .field("next_index", &self.next_index)
            .field("anomalies", &self.anomalies.len())
            .field("stopped", &self.stopped)
            .finish()
    }
}

/// Namespaces are equal when they hold the same inodes, listings, anomalies, space map and position.
impl PartialEq for Namespace {
    fn eq(&self, o: &Self) -> bool {
        let trim = |v: &[Option<Inode>]| {
            let n = v.iter().rposition(Option::is_some).map_or(0, |p| p + 1);
            v[..n].to_vec()
        };
        let trim_c = |v: &[Listing]| {
            let n = v.iter().rposition(|c| !c.is_empty()).map_or(0, |p| p + 1);
            v[..n].to_vec()
        };
        self.geo == o.geo
            && trim(&self.inodes) == trim(&o.inodes)
            && trim_c(&self.children) == trim_c(&o.children)
            && self.next_index == o.next_index
            && self.anomalies == o.anomalies
            && self.stopped == o.stopped
            && self.space == o.space
            && self.stats == o.stats
    }
}

impl Namespace {
    /// Root, `.meta`, `.meta/.superblock` and `.meta/.log` (0644 on the master, 0444 otherwise), and the
    /// space map with `[0, 2 MiB + log_len)` claimed. No log entries applied yet. Nothing is sized from
    /// the geometry: a superblock claiming a huge log or device costs no memory here.
    pub fn new(geo: &Geometry, role: Role) -> Namespace {
        let mut ns = Namespace {
            geo: *geo,
            inodes: Vec::with_capacity(FIRST_LOG_INO as usize),
            children: Vec::new(),
            index: HashMap::default(),
            overflow: Vec::new(),
            hasher: RandomState::new(),
            live: 0,
            next_index: 0,
            anomalies: Vec::new(),
            stopped: None,
            space: SpaceMap::new(geo.dev_size),
            owners: Owners::new(geo.dev_size),
            fresh: Vec::new(),
            stats: NsStats::default(),
        };
        ns.space.mark(0, geo.data_start());
        let dir = |id, parent, name: &[u8], mode| Inode {
            id,
            parent,
            name: name.into(),
            kind: InodeKind::Dir,
            mode,
            uid: 0,
            gid: 0,
            log_index: None,
        };
        let file = |id, name: &[u8], mode, off, len| Inode {
            id,
            parent: META_DIR_INO,
            name: name.into(),
            kind: InodeKind::File {
                size: len,
                fmap: Fmap::Simple(vec![Extent {
                    devindex: 0,
                    offset: off,
                    len,
                }]),
            },
            mode,
            uid: 0,
            gid: 0,
            log_index: None,
        };
        ns.insert(dir(ROOT_INO, ROOT_INO, b"", 0o755));
        ns.insert(dir(META_DIR_INO, ROOT_INO, b".meta", 0o755));
        ns.insert(file(
            SUPERBLOCK_INO,
            b".superblock",
            0o444,
            0,
            SB_REGION_SIZE,
        ));
        let log_mode = if role == Role::Master { 0o644 } else { 0o444 };
        ns.insert(file(
            LOG_INO,
            b".log",
            log_mode,
            geo.log_offset,
            geo.log_len,
        ));
        ns.stats = NsStats::default();
        ns
    }

    fn key(&self, parent: u64, name: &[u8]) -> u64 {
        self.hasher.hash_one((parent, name))
    }

    fn insert(&mut self, inode: Inode) {
        let id = inode.id as usize;
        if self.inodes.len() <= id {
            self.inodes.resize_with(id + 1, || None);
        }
        if inode.id != ROOT_INO {
            let p = inode.parent as usize;
            if self.children.len() <= p {
                self.children.resize_with(p + 1, Vec::new);
            }
            self.children[p].push((inode.name.clone(), inode.id));
            let k = self.key(inode.parent, &inode.name);
            if let Entry::Vacant(e) = self.index.entry(k) {
                e.insert(inode.id);
            } else {
                self.overflow.push((k, inode.id));
            }
        }
        match &inode.kind {
            InodeKind::Dir => self.stats.dirs += 1,
            InodeKind::File { size, .. } => {
                self.stats.files += 1;
                self.stats.file_bytes = self.stats.file_bytes.saturating_add(*size);
            }
        }
        self.inodes[id] = Some(inode);
        self.live += 1;
    }

    /// The device geometry the namespace was built for.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    pub fn get(&self, id: u64) -> Option<&Inode> {
        self.inodes.get(usize::try_from(id).ok()?)?.as_ref()
    }

    /// Child `name` of directory `parent`.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Option<u64> {
        let k = self.key(parent, name);
        let hit = |id: u64| {
            self.get(id)
                .is_some_and(|i| i.parent == parent && &*i.name == name)
        };
        let first = *self.index.get(&k)?;
        if hit(first) {
            return Some(first);
        }
        self.overflow
            .iter()
            .find(|&&(h, id)| h == k && hit(id))
            .map(|&(_, id)| id)
    }

    /// Resolve a path from the root ("" and "/" are the root; a leading '/' is ignored).
    pub fn lookup_path(&self, path: &[u8]) -> Option<u64> {
        let mut cur = ROOT_INO;
        for c in path.split(|&c| c == b'/').filter(|c| !c.is_empty()) {
            cur = self.lookup(cur, c)?;
        }
        Some(cur)
    }

    /// Entries of directory `dir` in creation order (stable: READDIR offsets index into it). Empty for
    /// files and unknown ids.
    pub fn children(&self, dir: u64) -> &[(Box<[u8]>, u64)] {
        usize::try_from(dir)
            .ok()
            .and_then(|d| self.children.get(d))
            .map_or(&[], |v| v.as_slice())
    }

    /// Path of `id` from the root, without a leading '/' (root: empty).
    pub fn path_of(&self, id: u64) -> Option<Vec<u8>> {
        let mut parts = Vec::new();
        let mut cur = self.get(id)?;
        while cur.id != ROOT_INO {
            parts.push(&cur.name);
            cur = self.get(cur.parent)?;
            if parts.len() > self.live {
                return None;
            }
        }
        let mut out = Vec::new();
        for (i, p) in parts.iter().rev().enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            out.extend_from_slice(p);
        }
        Some(out)
    }

    /// Live inodes, including root and the `.meta` objects.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// All live inodes in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Inode> {
        self.inodes.iter().flatten()
    }

    /// First log index not yet applied.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Every anomaly recorded so far, in log order (the current stop, if any, is [`Self::stopped`]).
    pub fn anomalies(&self) -> &[Anomaly] {
        &self.anomalies
    }

    /// Recorded anomalies that are problems ([`Severity::is_problem`]; the stop is not counted).
    pub fn problem_count(&self) -> usize {
        self.anomalies
            .iter()
            .filter(|a| a.severity().is_problem())
            .count()
    }

    /// The corrupt entry the last play stopped at, if it did not reach the header's `next_index`.
    pub fn stopped(&self) -> Option<&Anomaly> {
        self.stopped.as_ref()
    }

    /// The allocated space rebuilt from the entries applied so far.
    pub fn space(&self) -> &SpaceMap {
        &self.space
    }

    /// One past the largest inode id in use: per-inode tables indexed by id need this many slots. It
    /// grows with the entries replayed (at most [`FIRST_LOG_INO`] + [`Self::next_index`]).
    pub fn id_bound(&self) -> u64 {
        self.inodes.len() as u64
    }

    /// Directory and file counts from the log (the synthesized objects excluded).
    pub fn stats(&self) -> NsStats {
        self.stats
    }

    /// Apply entries `[next_index, hdr.next_index)` from `log`, the log region's bytes (header
    /// included, `log[0]` = device byte `log_offset`). Stops at the first corrupt entry. `collect`:
    /// also return the inodes created and the anomalies found.
    pub fn apply_log(&mut self, log: &[u8], hdr: &LogHeader, collect: bool) -> ApplyOutcome {
        let from = self.next_index;
        let bytes = usize::try_from(entry_offset(0, from))
            .ok()
            .and_then(|r| log.get(r..))
            .unwrap_or(&[]);
        self.apply_slots(from, hdr.next_index.min(self.geo.slots), bytes, collect)
    }

    /// [`Namespace::apply_log`] over a window of the log region: `window[0]` is the log region's
    /// byte `base` (the header's first byte is 0), and entries are applied from
    /// [`Self::next_index`] up to index `end`. An entry not wholly inside the window stops the play
    /// as truncated. `collect`: also return the inodes created and the anomalies found.
    pub fn apply_window(
        &mut self,
        window: &[u8],
        base: u64,
        end: u64,
        collect: bool,
    ) -> ApplyOutcome {
        let from = self.next_index;
        let bytes = entry_offset(0, from)
            .checked_sub(base)
            .and_then(|r| usize::try_from(r).ok())
            .and_then(|r| window.get(r..))
            .unwrap_or(&[]);
        self.apply_slots(from, end.min(self.geo.slots), bytes, collect)
    }

    /// Decode and apply slots `[first, end)` one at a time from `bytes` (which start at slot
    /// `first`; too few bytes is a truncated log), stopping at the first corrupt one. `first` must be
    /// [`Self::next_index`] (otherwise nothing is applied). `collect`: also return the inodes created
    /// and the anomalies found. Nothing is copied: the way a whole log is played.
    pub fn apply_slots(
        &mut self,
        first: u64,
        end: u64,
        bytes: &[u8],
        collect: bool,
    ) -> ApplyOutcome {
        let mut out = ApplyOutcome::default();
        let first_anomaly = self.anomalies.len();
        self.stopped = None;
        if first == self.next_index {
            for (k, i) in (first..end).enumerate() {
                match decode_slot(&self.geo, i, k, bytes) {
                    Ok(e) => {
                        let offset = self.geo.entry_offset(i);
                        self.apply_one(i, offset, &e.body, collect, &mut out);
                    }
                    Err(a) => {
                        self.stopped = Some(a.clone());
                        out.stopped = Some(a);
                        break;
                    }
                }
            }
        }
        if collect {
            out.anomalies = self.anomalies[first_anomaly..].to_vec();
        }
        out
    }

    /// Apply a decoded chunk that starts at [`Self::next_index`] (entries below it are skipped, a
    /// chunk that starts past it is not applied), then record its stop, if it has one. `collect`:
    /// also return the inodes created and the anomalies found.
    pub fn apply_decoded(&mut self, d: &Decoded, collect: bool) -> ApplyOutcome {
        let mut out = ApplyOutcome::default();
        let first_anomaly = self.anomalies.len();
        self.stopped = None;
        for (i, (offset, body)) in (d.first..).zip(&d.entries) {
            if i < self.next_index {
                continue;
            }
            if i > self.next_index {
                break;
            }
            self.apply_one(i, *offset, body, collect, &mut out);
        }
        if self.next_index == d.end() {
            self.stopped.clone_from(&d.stopped);
            out.stopped.clone_from(&d.stopped);
        }
        if collect {
            out.anomalies = self.anomalies[first_anomaly..].to_vec();
        }
        out
    }

    /// Apply framed entry `i` (which is [`Self::next_index`]) and advance.
    fn apply_one(
        &mut self,
        i: u64,
        offset: u64,
        body: &EntryBody,
        collect: bool,
        out: &mut ApplyOutcome,
    ) {
        let added = self.apply_entry(i, offset, body);
        if collect
            && let Some(id) = added
            && let Some(ino) = self.get(id)
        {
            out.added.push(Added {
                id,
                parent: ino.parent,
                name: ino.name.clone(),
            });
        }
        self.next_index = i + 1;
        out.applied += 1;
    }

    fn note(&mut self, index: u64, offset: u64, kind: AnomalyKind) {
        self.anomalies.push(Anomaly {
            index,
            offset,
            kind,
        });
    }

    /// Parent id and last component of a checked relpath, or the D2 anomaly.
    fn parent_of<'p>(&self, path: &'p [u8]) -> Result<(u64, &'p [u8]), AnomalyKind> {
        let (dir, name) = match path.iter().rposition(|&c| c == b'/') {
            Some(p) => (&path[..p], &path[p + 1..]),
            None => (&path[..0], path),
        };
        let mut cur = ROOT_INO;
        if !dir.is_empty() {
            let mut consumed = 0usize;
            for c in dir.split(|&c| c == b'/') {
                consumed += c.len();
                let missing = |not_dir| AnomalyKind::NoParent {
                    path: path.into(),
                    missing: dir[..consumed].into(),
                    not_dir,
                };
                match self.lookup(cur, c) {
                    None => return Err(missing(false)),
                    Some(id) if !self.get(id).is_some_and(Inode::is_dir) => {
                        return Err(missing(true));
                    }
                    Some(id) => cur = id,
                }
                consumed += 1;
            }
        }
        Ok((cur, name))
    }

    /// Apply one framed entry; returns the created inode id.
    fn apply_entry(&mut self, i: u64, offset: u64, body: &EntryBody) -> Option<u64> {
        match body {
            EntryBody::File(f) => self.apply_file(i, offset, f),
            EntryBody::Mkdir(m) => self.apply_mkdir(i, offset, m),
            EntryBody::AddDaxdev(d) => {
                self.note(
                    i,
                    offset,
                    AnomalyKind::AddDaxdevIgnored { dd_index: d.index },
                );
                None
            }
            EntryBody::Other { etype } => {
                self.note(
                    i,
                    offset,
                    AnomalyKind::IgnoredType {
                        etype: *etype,
                        version: self.geo.version,
                    },
                );
                None
            }
        }
    }

    fn apply_file(&mut self, i: u64, offset: u64, f: &FileEntry) -> Option<u64> {
        let path = match f.relpath.checked() {
            Ok(p) => p,
            Err(problem) => {
                let path = f.relpath.lossy().into_bytes().into_boxed_slice();
                self.note(i, offset, AnomalyKind::BadPath { path, problem });
                return None;
            }
        };
        let fmap = match f.fmap.check(f.size, &self.geo) {
            Ok(m) => m,
            Err(problem) => {
                self.note(
                    i,
                    offset,
                    AnomalyKind::BadFmap {
                        path: path.into(),
                        problem,
                    },
                );
                return None;
            }
        };
        // Units this entry claims first; they become the file's (or orphans if it is rejected).
        let mut fresh = std::mem::take(&mut self.fresh);
        fresh.clear();
        for e in fmap.extents() {
            let (first, end) = self.space.unit_range(e.offset, e.len);
            if let Some(unit) = self.space.mark_units(first, end, |s, e| fresh.push((s, e))) {
                let at = unit * ALLOC_UNIT;
                let other = self.owners.owner_of(unit);
                self.note(
                    i,
                    offset,
                    AnomalyKind::Collision {
                        path: path.into(),
                        offset: at,
                        other,
                    },
                );
            }
        }
        let target = match self.parent_of(path) {
            Err(kind) => Err(kind),
            Ok((parent, name)) => match self.lookup(parent, name) {
                None => Ok((parent, name)),
                Some(existing) => Err(AnomalyKind::Exists {
                    path: path.into(),
                    existing,
                    conflict: self.get(existing).is_some_and(Inode::is_dir),
                }),
            },
        };
        let (parent, name) = match target {
            Ok(x) => x,
            Err(kind) => {
                self.note(i, offset, kind);
                self.owners.record(&fresh, None);
                self.fresh = fresh;
                return None;
            }
        };
        let id = entry_ino(i);
        for e in fmap.extents() {
            let (first, end) = self.space.unit_range(e.offset, e.len);
            self.owners.adopt(first, end, id);
        }
        self.owners.record(&fresh, Some(id));
        self.fresh = fresh;
        self.insert(Inode {
            id,
            parent,
            name: name.into(),
            kind: InodeKind::File { size: f.size, fmap },
            mode: f.mode & 0o7777,
            uid: f.uid,
            gid: f.gid,
            log_index: Some(i),
        });
        Some(id)
    }

    fn apply_mkdir(&mut self, i: u64, offset: u64, m: &MkdirEntry) -> Option<u64> {
        let path = match m.relpath.checked() {
            Ok(p) => p,
            Err(problem) => {
                let path = m.relpath.lossy().into_bytes().into_boxed_slice();
                self.note(i, offset, AnomalyKind::BadPath { path, problem });
                return None;
            }
        };
        let (parent, name) = match self.parent_of(path) {
            Ok(x) => x,
            Err(kind) => {
                self.note(i, offset, kind);
                return None;
            }
        };
        if let Some(existing) = self.lookup(parent, name) {
            let conflict = !self.get(existing).is_some_and(Inode::is_dir);
            self.note(
                i,
                offset,
                AnomalyKind::Exists {
                    path: path.into(),
                    existing,
                    conflict,
                },
            );
            return None;
        }
        // Reference quirk: the owner is set only when both uid and gid are non-zero; otherwise the
        // directory belongs to the user running logplay (root).
        let (uid, gid) = if m.uid != 0 && m.gid != 0 {
            (m.uid, m.gid)
        } else {
            (0, 0)
        };
        let id = entry_ino(i);
        self.insert(Inode {
            id,
            parent,
            name: name.into(),
            kind: InodeKind::Dir,
            mode: m.mode & 0o7777,
            uid,
            gid,
            log_index: Some(i),
        });
        Some(id)
    }

    /// The live file whose extents cover device byte `at` (the first in log order; O(log n)).
    pub fn owner_of(&self, at: u64) -> Option<u64> {
        self.owners.owner_of(at / ALLOC_UNIT)
    }
}
