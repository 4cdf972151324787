//! The [`Filesystem`] implementation of [`FamfsFs`]: one method per FUSE opcode the server answers
//! (namespace, directory listing, the stock-kernel data path through the device map, famfs GET_FMAP
//! and GET_DAXDEV).
//!
//! Owns each opcode's semantics over the volume (what is refused, what is counted). Must not do wire
//! encoding (that is `fuse`) or parse media bytes (that is `famfs`, through `volume`).

use std::{ffi::OsStr, os::unix::ffi::OsStrExt, path::Path};

use super::{
    BLKSIZE, FamfsFs, NAME_MAX,
    data::IoOp,
    volume::{self, LOG_INO, Node, NodeKind, SUPERBLOCK_INO, Volume, WIRE_EXTENTS_INLINE},
};
use crate::fuse::{
    DirentBuf, DirentPlusBuf, Errno, FdRead, Filesystem, FmapReply, Request, WireExtent,
    abi::{
        Attr, AttrOut, EntryOut, FlushIn, FsyncIn, GetattrIn, Kstatfs, OpenIn, OpenOut, ReadIn,
        ReleaseIn, SetattrIn, WriteIn, fattr, init_flags,
    },
    dt,
};

/// `.meta/.superblock` and `.meta/.log`: read-only through the mount.
fn is_meta_file(ino: u64) -> bool {
    ino == SUPERBLOCK_INO || ino == LOG_INO
}

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

impl FamfsFs {
    /// How many bytes a READ of up to `len` at `off` of a file of `size` returns (0 at or past the
    /// end); EIO once the maps went stale (the image changed under us).
    fn read_len(&self, size: u64, off: u64, len: u64) -> Result<u64, Errno> {
        if self.is_stale() {
            return Err(Errno::EIO);
        }
        Ok(len.min(size.saturating_sub(off)))
    }
}

impl Filesystem for FamfsFs {
    fn init_flags(&self) -> u64 {
        init_flags::DO_READDIRPLUS | init_flags::READDIRPLUS_AUTO
    }

    fn destroy(&self) {
        // Make every written byte durable before the connection goes away.
        let ids = self.vol().map(|v| v.dirty_ids()).unwrap_or_default();
        for id in ids {
            let _ = self.flush_file(id);
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
        vol.add_lookup(id);
        Ok(e)
    }

    fn forget(&self, _req: &Request<'_>, nodeid: u64, nlookup: u64) {
        if let Ok(vol) = self.vol() {
            vol.forget(nodeid, nlookup);
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
                    vol.add_lookup(id);
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
        if is_meta_file(ino) && acc != libc::O_RDONLY {
            // The superblock and the log change only through the log's own rules (image tools).
            return Err(Errno::EPERM);
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
        let want = self.read_len(size, off, buf.len() as u64)? as usize;
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
                return Err(self.io_fault(IoOp::Read, ino, fo, dev, &e));
            }
            done += n;
        }
        Ok(&buf[..want])
    }

    fn read_fd<'a>(
        &'a self,
        _req: &Request<'_>,
        ino: u64,
        arg: &ReadIn,
        out: &mut FdRead<'a>,
    ) -> Result<bool, Errno> {
        let vol = self.vol()?;
        let (size, fmap) = Self::file(&vol, ino)?;
        let off = arg.offset;
        let want = self.read_len(size, off, u64::from(arg.size))?;
        let mut done = 0u64;
        while done < want {
            let fo = off + done;
            // Unmapped offsets, bounds and fd-less stores: `read` answers (and records the fault).
            let Some((dev, avail)) = volume::resolve(fmap, fo, size) else {
                return Ok(false);
            };
            let n = avail.min(want - done);
            let Ok(Some(fd)) = self.inner.data.read_fd(dev, n) else {
                return Ok(false);
            };
            if !out.push(fd, dev, n as usize) {
                return Ok(false);
            }
            done += n;
        }
        Ok(true)
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
        if is_meta_file(ino) {
            return Err(Errno::EPERM);
        }
        let vol = self.vol()?;
        let (size, fmap) = Self::file(&vol, ino)?;
        if self.is_stale() {
            return Err(Errno::EIO);
        }
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
            if let Err(e) = self.inner.data.write_from(dev, &data[done..done + n]) {
                if matches!(e, volume::StoreError::ReadOnly) {
                    return Err(Errno::EROFS);
                }
                let errno = self.io_fault(IoOp::Write, ino, fo, dev, &e);
                if done == 0 {
                    return Err(errno);
                }
                // What was written before the failure is reported (a short write); the writer's
                // next write at the following offset gets the error.
                break;
            }
            done += n;
        }
        vol.mark_dirty(ino);
        let want = done;
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
        if self.is_stale() {
            // The map describes a filesystem that is gone: a kernel must not map its file with it.
            return Err(Errno::EIO);
        }
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
