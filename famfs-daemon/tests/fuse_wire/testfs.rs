//! The in-memory filesystem every wire test serves: a fixed tree of nine nodes, file contents
//! borrowed from constants or copied into the session's buffer, a writable scratch file, flock
//! locks, famfs fmaps (one simple extent, two interleaved strips, and 170 extents that overflow a
//! page) and a daxdev. It records what the session asked of it (forgets, locks, INIT, DESTROY).

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use famfs_daemon::fuse::{
    DirentBuf, DirentPlusBuf, Errno, Filesystem, FmapReply, Negotiated, Request, WireExtent,
    WireFmap, WireLayout,
    abi::{
        self, AttrOut, EntryOut, GetattrIn, Kstatfs, OpenIn, OpenOut, ReadIn, ReleaseIn, WriteIn,
        famfs, fopen, init_flags,
    },
    dt,
};

use crate::support::{MIB2, pattern};

// ---------------------------------------------------------------------------------------------
// The in-memory test filesystem.

pub const HELLO: &[u8] = b"hello, famfs\n";
pub const NESTED: &[u8] = b"nested\n";
pub const PATTERN_LEN: usize = 65_659;

pub const ROOT: u64 = 1;
pub const HELLO_INO: u64 = 2;
pub const PATTERN_INO: u64 = 3;
pub const FILE0_INO: u64 = 4;
pub const INTERLEAVED_INO: u64 = 5;
pub const BIG_INO: u64 = 6;
pub const SUB_INO: u64 = 7;
pub const NESTED_INO: u64 = 8;
pub const SCRATCH_INO: u64 = 9;

const BIG_EXTENTS: usize = 170;

/// (ino, parent, name, is_dir)
const TREE: [(u64, u64, &str, bool); 9] = [
    (ROOT, ROOT, "", true),
    (HELLO_INO, ROOT, "hello.txt", false),
    (PATTERN_INO, ROOT, "pattern.bin", false),
    (FILE0_INO, ROOT, "file0", false),
    (INTERLEAVED_INO, ROOT, "interleaved", false),
    (BIG_INO, ROOT, "big", false),
    (SUB_INO, ROOT, "sub", true),
    (NESTED_INO, SUB_INO, "nested.txt", false),
    (SCRATCH_INO, ROOT, "scratch", false),
];

const FILE0_EXT: [WireExtent; 1] = [WireExtent {
    devindex: 0,
    offset: 0xa0_0000,
    len: MIB2,
}];

const STRIPS: [WireExtent; 2] = [
    WireExtent {
        devindex: 0,
        offset: 0x860_0000,
        len: MIB2,
    },
    WireExtent {
        devindex: 0,
        offset: 0x260_0000,
        len: MIB2,
    },
];

pub struct TestFs {
    pub pattern: Vec<u8>,
    big: Vec<WireExtent>,
    scratch: Mutex<Vec<u8>>,
    daxdev: PathBuf,
    pub forgotten: AtomicU64,
    pub destroyed: AtomicBool,
    pub locks: Mutex<Vec<(u64, u32, bool)>>,
    pub inits: AtomicU64,
}

impl TestFs {
    pub fn new() -> TestFs {
        TestFs {
            pattern: pattern(PATTERN_LEN, 7),
            big: (0..BIG_EXTENTS as u64)
                .map(|i| WireExtent {
                    devindex: 0,
                    offset: (i + 16) * MIB2,
                    len: MIB2,
                })
                .collect(),
            scratch: Mutex::new(Vec::new()),
            daxdev: PathBuf::from("/dev/dax0.0"),
            forgotten: AtomicU64::new(0),
            destroyed: AtomicBool::new(false),
            locks: Mutex::new(Vec::new()),
            inits: AtomicU64::new(0),
        }
    }

    fn size(&self, ino: u64) -> u64 {
        match ino {
            HELLO_INO => HELLO.len() as u64,
            PATTERN_INO => PATTERN_LEN as u64,
            FILE0_INO => 0x10_0000,
            INTERLEAVED_INO => 0x30_0000,
            BIG_INO => BIG_EXTENTS as u64 * MIB2,
            NESTED_INO => NESTED.len() as u64,
            SCRATCH_INO => self.scratch.lock().unwrap().len() as u64,
            _ => 0,
        }
    }

    fn node(ino: u64) -> Option<(u64, u64, &'static str, bool)> {
        TREE.iter().copied().find(|n| n.0 == ino)
    }

    fn attr(&self, ino: u64) -> Option<abi::Attr> {
        let (_, _, _, dir) = Self::node(ino)?;
        let size = self.size(ino);
        Some(abi::Attr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: 1_700_000_000,
            mtime: 1_700_000_000,
            ctime: 1_700_000_000,
            mtimensec: 5,
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

    /// Directory listing: ".", "..", then children in table order (allocation-free).
    fn listing(dir: u64) -> impl Iterator<Item = (u64, &'static str, u32)> {
        let (is_dir, parent) = match Self::node(dir) {
            Some((_, parent, _, true)) => (true, parent),
            _ => (false, 0),
        };
        [(dir, ".", dt::DIR), (parent, "..", dt::DIR)]
            .into_iter()
            .chain(
                TREE.iter()
                    .filter(move |n| n.1 == dir && n.0 != dir)
                    .map(|n| (n.0, n.2, if n.3 { dt::DIR } else { dt::REG })),
            )
            .filter(move |_| is_dir)
    }
}

impl Filesystem for TestFs {
    fn init_flags(&self) -> u64 {
        // Also asks for a famfs bit, which the session must ignore (the dialect rule decides).
        init_flags::DO_READDIRPLUS | init_flags::FLOCK_LOCKS | init_flags::FAMFS_DAX_FMAP_V3
    }

    fn init(&self, _n: &Negotiated) -> Result<(), Errno> {
        self.inits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn destroy(&self) {
        self.destroyed.store(true, Ordering::Relaxed);
    }

    fn lookup(&self, _r: &Request<'_>, parent: u64, name: &OsStr) -> Result<EntryOut, Errno> {
        let n = TREE
            .iter()
            .find(|n| n.1 == parent && n.0 != parent && OsStr::new(n.2) == name)
            .ok_or(Errno::ENOENT)?;
        self.entry(n.0).ok_or(Errno::ENOENT)
    }

    fn forget(&self, _r: &Request<'_>, _ino: u64, nlookup: u64) {
        self.forgotten.fetch_add(nlookup, Ordering::Relaxed);
    }

    fn getattr(&self, _r: &Request<'_>, ino: u64, _a: &GetattrIn) -> Result<AttrOut, Errno> {
        Ok(AttrOut {
            attr_valid: 1,
            attr: self.attr(ino).ok_or(Errno::ENOENT)?,
            ..Default::default()
        })
    }

    fn statfs(&self, _r: &Request<'_>, _ino: u64) -> Result<Kstatfs, Errno> {
        Ok(Kstatfs {
            blocks: 1000,
            bfree: 10,
            bavail: 10,
            files: 9,
            bsize: 4096,
            namelen: 255,
            frsize: 4096,
            ..Default::default()
        })
    }

    fn opendir(&self, _r: &Request<'_>, ino: u64, _a: &OpenIn) -> Result<OpenOut, Errno> {
        match Self::node(ino) {
            Some((_, _, _, true)) => Ok(OpenOut {
                fh: 100 + ino,
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
        for (i, (child, name, typ)) in Self::listing(ino).enumerate().skip(a.offset as usize) {
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
        for (i, (child, name, typ)) in Self::listing(ino).enumerate().skip(a.offset as usize) {
            let e = if name == "." || name == ".." {
                EntryOut {
                    attr: abi::Attr {
                        ino: child,
                        ..Default::default()
                    },
                    ..Default::default()
                }
            } else {
                self.entry(child).ok_or(Errno::EIO)?
            };
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
                fh: 1000 + ino,
                open_flags: if ino == PATTERN_INO {
                    fopen::DIRECT_IO
                } else {
                    0
                },
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

    fn read<'a>(
        &'a self,
        _r: &Request<'_>,
        ino: u64,
        a: &ReadIn,
        buf: &'a mut [u8],
    ) -> Result<&'a [u8], Errno> {
        fn window<'d>(data: &'d [u8], a: &ReadIn) -> &'d [u8] {
            let off = (a.offset as usize).min(data.len());
            let end = (off + a.size as usize).min(data.len());
            &data[off..end]
        }
        let slice = |data: &'a [u8]| window(data, a);
        match ino {
            // Borrowed straight from the filesystem's memory.
            HELLO_INO => Ok(slice(HELLO)),
            NESTED_INO => Ok(slice(NESTED)),
            // Copied into the session's buffer.
            PATTERN_INO => {
                let src = slice(&self.pattern);
                let n = src.len().min(buf.len());
                buf[..n].copy_from_slice(&src[..n]);
                Ok(&buf[..n])
            }
            FILE0_INO | INTERLEAVED_INO | BIG_INO => {
                let size = self.size(ino);
                let n = (size.saturating_sub(a.offset) as usize).min(buf.len());
                buf[..n].fill(0);
                Ok(&buf[..n])
            }
            SCRATCH_INO => {
                let s = self.scratch.lock().unwrap();
                let src = window(&s, a);
                buf[..src.len()].copy_from_slice(src);
                Ok(&buf[..src.len()])
            }
            _ => Err(Errno::EISDIR),
        }
    }

    fn write(&self, _r: &Request<'_>, ino: u64, a: &WriteIn, data: &[u8]) -> Result<u32, Errno> {
        if ino != SCRATCH_INO {
            return Err(Errno::EROFS);
        }
        let mut s = self.scratch.lock().unwrap();
        let end = a.offset as usize + data.len();
        if s.len() < end {
            s.resize(end, 0);
        }
        s[a.offset as usize..end].copy_from_slice(data);
        Ok(data.len() as u32)
    }

    fn getxattr<'a>(
        &'a self,
        _r: &Request<'_>,
        ino: u64,
        name: &OsStr,
        _buf: &'a mut [u8],
    ) -> Result<&'a [u8], Errno> {
        if ino == HELLO_INO && name == "user.test" {
            Ok(b"value-123")
        } else {
            Err(Errno::ENODATA)
        }
    }

    fn setlk(&self, _r: &Request<'_>, ino: u64, a: &abi::LkIn, sleep: bool) -> Result<(), Errno> {
        if ino != SCRATCH_INO || a.lk_flags & abi::LK_FLOCK == 0 {
            return Err(Errno::EINVAL);
        }
        self.locks.lock().unwrap().push((a.owner, a.lk.typ, sleep));
        Ok(())
    }

    fn get_fmap(&self, _r: &Request<'_>, ino: u64, out: &mut FmapReply<'_>) -> Result<(), Errno> {
        let layout = match ino {
            FILE0_INO => WireLayout::Simple(&FILE0_EXT),
            INTERLEAVED_INO => WireLayout::Interleaved {
                nstrips: 2,
                chunk_size: MIB2 as u32,
                nbytes: 0x30_0000,
                strips: &STRIPS,
            },
            BIG_INO => WireLayout::Simple(&self.big),
            _ if Self::node(ino).is_some() => return Err(Errno::ENOENT),
            _ => return Err(Errno::EINVAL),
        };
        out.set(&WireFmap {
            file_type: famfs::FILE_TYPE_REG,
            file_size: self.size(ino),
            layout,
        })?;
        Ok(())
    }

    fn get_daxdev(&self, _r: &Request<'_>, index: u64) -> Result<&Path, Errno> {
        if index == 0 {
            Ok(&self.daxdev)
        } else {
            Err(Errno::EINVAL)
        }
    }
}
