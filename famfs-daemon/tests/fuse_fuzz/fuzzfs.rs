//! A small in-memory filesystem for the fuzz test: every reply it can produce is far below a socket
//! message's limit. Five nodes, a borrowed and a copied file, a bounded writable scratch file, an
//! xattr, flock locks, a one-extent famfs fmap for every regular file and a daxdev.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    sync::Mutex,
};

use famfs_daemon::fuse::{
    DirentBuf, DirentPlusBuf, Errno, Filesystem, FmapReply, Request, WireExtent, WireFmap,
    WireLayout,
    abi::{
        self, AttrOut, EntryOut, GetattrIn, Kstatfs, LkIn, OpenIn, OpenOut, ReadIn, ReleaseIn,
        WriteIn, famfs, init_flags,
    },
    dt,
};

pub const ROOT: u64 = 1;
pub const HELLO: u64 = 2;
pub const DATA: u64 = 3;
const SUB: u64 = 4;
const SCRATCH: u64 = 5;
const HELLO_TEXT: &[u8] = b"hello, fuzz\n";
pub const DATA_LEN: usize = 20_000;
const SCRATCH_MAX: u64 = 64 * 1024;
/// (ino, parent, name, is_dir)
const TREE: [(u64, u64, &str, bool); 5] = [
    (ROOT, ROOT, "", true),
    (HELLO, ROOT, "hello.txt", false),
    (DATA, ROOT, "data.bin", false),
    (SUB, ROOT, "sub", true),
    (SCRATCH, SUB, "scratch", false),
];
const FMAP_EXT: [WireExtent; 1] = [WireExtent {
    devindex: 0,
    offset: 0xa0_0000,
    len: 0x20_0000,
}];

pub struct FuzzFs {
    pub data: Vec<u8>,
    scratch: Mutex<Vec<u8>>,
    daxdev: PathBuf,
}

impl FuzzFs {
    pub fn new() -> FuzzFs {
        FuzzFs {
            data: (0..DATA_LEN).map(|i| (i * 7 + 3) as u8).collect(),
            scratch: Mutex::new(Vec::new()),
            daxdev: PathBuf::from("/dev/dax0.0"),
        }
    }

    fn node(ino: u64) -> Option<(u64, u64, &'static str, bool)> {
        TREE.iter().copied().find(|n| n.0 == ino)
    }

    fn size(&self, ino: u64) -> u64 {
        match ino {
            HELLO => HELLO_TEXT.len() as u64,
            DATA => DATA_LEN as u64,
            SCRATCH => self.scratch.lock().map_or(0, |s| s.len() as u64),
            _ => 0,
        }
    }

    fn attr(&self, ino: u64) -> Option<abi::Attr> {
        let (_, _, _, dir) = Self::node(ino)?;
        Some(abi::Attr {
            ino,
            size: self.size(ino),
            mode: if dir { 0o40755 } else { 0o100644 },
            nlink: if dir { 2 } else { 1 },
            blksize: 4096,
            ..Default::default()
        })
    }

    pub fn entry(&self, ino: u64) -> Option<EntryOut> {
        Some(EntryOut {
            nodeid: ino,
            generation: 1,
            entry_valid: 1,
            attr_valid: 1,
            attr: self.attr(ino)?,
            ..Default::default()
        })
    }

    fn children(dir: u64) -> impl Iterator<Item = (u64, &'static str, u32)> {
        let parent = match Self::node(dir) {
            Some((_, p, _, true)) => Some(p),
            _ => None,
        };
        parent
            .into_iter()
            .flat_map(move |p| [(dir, ".", dt::DIR), (p, "..", dt::DIR)])
            .chain(
                TREE.iter()
                    .filter(move |n| n.1 == dir && n.0 != dir)
                    .map(|n| (n.0, n.2, if n.3 { dt::DIR } else { dt::REG })),
            )
    }
}

fn window(data: &[u8], offset: u64, size: u32) -> &[u8] {
    let off = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(data.len());
    let end = off.saturating_add(size as usize).min(data.len());
    &data[off..end]
}

impl Filesystem for FuzzFs {
    fn init_flags(&self) -> u64 {
        init_flags::DO_READDIRPLUS | init_flags::FLOCK_LOCKS
    }

    fn lookup(&self, _r: &Request<'_>, parent: u64, name: &OsStr) -> Result<EntryOut, Errno> {
        let n = TREE
            .iter()
            .find(|n| n.1 == parent && n.0 != parent && OsStr::new(n.2) == name)
            .ok_or(Errno::ENOENT)?;
        self.entry(n.0).ok_or(Errno::ENOENT)
    }

    fn getattr(&self, _r: &Request<'_>, ino: u64, _a: &GetattrIn) -> Result<AttrOut, Errno> {
        Ok(AttrOut {
            attr_valid: 1,
            attr: self.attr(ino).ok_or(Errno::ENOENT)?,
            ..Default::default()
        })
    }

    fn setattr(&self, _r: &Request<'_>, _ino: u64, _a: &abi::SetattrIn) -> Result<AttrOut, Errno> {
        Err(Errno::EINVAL)
    }

    fn statfs(&self, _r: &Request<'_>, _ino: u64) -> Result<Kstatfs, Errno> {
        Ok(Kstatfs {
            blocks: 100,
            bsize: 4096,
            namelen: 255,
            ..Default::default()
        })
    }

    fn opendir(&self, _r: &Request<'_>, ino: u64, _a: &OpenIn) -> Result<OpenOut, Errno> {
        match Self::node(ino) {
            Some((_, _, _, true)) => Ok(OpenOut {
                fh: ino,
                ..Default::default()
            }),
            Some(_) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn readdir(
        &self,
        _r: &Request<'_>,
        ino: u64,
        a: &ReadIn,
        out: &mut DirentBuf<'_>,
    ) -> Result<(), Errno> {
        let skip = usize::try_from(a.offset).unwrap_or(usize::MAX);
        for (i, (child, name, typ)) in Self::children(ino).enumerate().skip(skip) {
            if !out.push(child, i as u64 + 1, typ, name.as_bytes()) {
                break;
            }
        }
        Ok(())
    }

    fn readdirplus(
        &self,
        _r: &Request<'_>,
        ino: u64,
        a: &ReadIn,
        out: &mut DirentPlusBuf<'_>,
    ) -> Result<(), Errno> {
        let skip = usize::try_from(a.offset).unwrap_or(usize::MAX);
        for (i, (child, name, typ)) in Self::children(ino).enumerate().skip(skip) {
            let e = self.entry(child).unwrap_or_default();
            if !out.push(&e, i as u64 + 1, typ, name.as_bytes()) {
                break;
            }
        }
        Ok(())
    }

    fn releasedir(&self, _r: &Request<'_>, _ino: u64, _a: &ReleaseIn) -> Result<(), Errno> {
        Ok(())
    }

    fn open(&self, _r: &Request<'_>, ino: u64, _a: &OpenIn) -> Result<OpenOut, Errno> {
        match Self::node(ino) {
            Some((_, _, _, false)) => Ok(OpenOut {
                fh: 100 + ino,
                ..Default::default()
            }),
            Some(_) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn release(&self, _r: &Request<'_>, _ino: u64, _a: &ReleaseIn) -> Result<(), Errno> {
        Ok(())
    }

    fn flush(&self, _r: &Request<'_>, _ino: u64, _a: &abi::FlushIn) -> Result<(), Errno> {
        Ok(())
    }

    fn fsync(&self, _r: &Request<'_>, _ino: u64, _a: &abi::FsyncIn) -> Result<(), Errno> {
        Ok(())
    }

    fn read<'a>(
        &'a self,
        _r: &Request<'_>,
        ino: u64,
        a: &ReadIn,
        buf: &'a mut [u8],
    ) -> Result<&'a [u8], Errno> {
        match ino {
            HELLO => Ok(window(HELLO_TEXT, a.offset, a.size)),
            DATA => {
                let src = window(&self.data, a.offset, a.size);
                let n = src.len().min(buf.len());
                buf[..n].copy_from_slice(&src[..n]);
                Ok(&buf[..n])
            }
            SCRATCH => {
                let s = self.scratch.lock().map_err(|_| Errno::EIO)?;
                let src = window(&s, a.offset, a.size);
                let n = src.len().min(buf.len());
                buf[..n].copy_from_slice(&src[..n]);
                Ok(&buf[..n])
            }
            _ if Self::node(ino).is_some() => Err(Errno::EISDIR),
            _ => Err(Errno::ENOENT),
        }
    }

    fn write(&self, _r: &Request<'_>, ino: u64, a: &WriteIn, data: &[u8]) -> Result<u32, Errno> {
        if ino != SCRATCH {
            return Err(Errno::EROFS);
        }
        let end = a
            .offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= SCRATCH_MAX)
            .ok_or(Errno::EFBIG)?;
        let mut s = self.scratch.lock().map_err(|_| Errno::EIO)?;
        if (s.len() as u64) < end {
            s.resize(end as usize, 0);
        }
        s[a.offset as usize..end as usize].copy_from_slice(data);
        Ok(data.len() as u32)
    }

    fn getxattr<'a>(
        &'a self,
        _r: &Request<'_>,
        ino: u64,
        name: &OsStr,
        _buf: &'a mut [u8],
    ) -> Result<&'a [u8], Errno> {
        if ino == HELLO && name == "user.k" {
            Ok(b"value")
        } else {
            Err(Errno::ENODATA)
        }
    }

    fn setlk(&self, _r: &Request<'_>, _ino: u64, a: &LkIn, _sleep: bool) -> Result<(), Errno> {
        if a.lk_flags & abi::LK_FLOCK == 0 {
            Err(Errno::EINVAL)
        } else {
            Ok(())
        }
    }

    fn get_fmap(&self, _r: &Request<'_>, ino: u64, out: &mut FmapReply<'_>) -> Result<(), Errno> {
        match Self::node(ino) {
            Some((_, _, _, false)) => {
                out.set(&WireFmap {
                    file_type: famfs::FILE_TYPE_REG,
                    file_size: self.size(ino),
                    layout: WireLayout::Simple(&FMAP_EXT),
                })?;
                Ok(())
            }
            Some(_) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn get_daxdev(&self, _r: &Request<'_>, index: u64) -> Result<&Path, Errno> {
        if index == 0 {
            Ok(&self.daxdev)
        } else {
            Err(Errno::EINVAL)
        }
    }
}
