//! The FUSE wire layer end to end, through its public API only.
//!
//! (a) A simulated kernel on one end of a `socketpair(AF_UNIX, SOCK_SEQPACKET)` drives a `Session`
//!     serving a tiny in-memory filesystem: INIT negotiation per famfs dialect (exact flags), the
//!     ordinary opcodes, famfs GET_FMAP / GET_DAXDEV (byte-exact replies, RFC V2 needed-size retry,
//!     V3 too-big EINVAL), ENOSYS for everything unknown, malformed requests, no-reply opcodes,
//!     request records and a full record sink. No root needed.
//! (b) A real mount of the same filesystem through `/dev/fuse` + `mount(2)` (root; SKIP otherwise):
//!     `ls`, `stat`, reads, 4 concurrent readers, unmount — the mount is removed by a guard even when
//!     the test fails.

mod common;

use std::{
    ffi::OsStr,
    io,
    os::unix::fs::{FileExt, MetadataExt},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{Receiver, sync_channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use famfs_daemon::{
    fuse::{
        DialectConfig, DirentBuf, DirentPlusBuf, Errno, Filesystem, FmapReply, Mount, MountOptions,
        Negotiated, Request, Session, SessionConfig, WireExtent, WireFmap, WireLayout,
        abi::{
            self, AttrOut, EntryOut, GetattrIn, InHeader, InitOut, Kstatfs, OpenIn, OpenOut,
            ReadIn, ReleaseIn, WriteIn, famfs, fopen, init_flags, opcode,
        },
        dialect::Reason,
        dt,
        sim::{
            self, Dirent, FMAP_EXAMPLE_INTERLEAVED, FMAP_EXAMPLE_SIMPLE, OFFER_FLAGS, OFFER_FLAGS2,
            batch_forget_in, fmap_size_body, forget_in, getattr_in, getxattr_in, hex,
            parse_dirents, read_in, write_in,
        },
    },
    join::RequestRecord,
};

/// Counts heap allocations per thread (for the no-allocation-per-request check).
#[global_allocator]
static GLOBAL: sim::CountingAlloc = sim::CountingAlloc;

// ---------------------------------------------------------------------------------------------
// The in-memory test filesystem.

const HELLO: &[u8] = b"hello, famfs\n";
const NESTED: &[u8] = b"nested\n";
const PATTERN_LEN: usize = 65_659;
const MIB2: u64 = 0x20_0000;

const ROOT: u64 = 1;
const HELLO_INO: u64 = 2;
const PATTERN_INO: u64 = 3;
const FILE0_INO: u64 = 4;
const INTERLEAVED_INO: u64 = 5;
const BIG_INO: u64 = 6;
const SUB_INO: u64 = 7;
const NESTED_INO: u64 = 8;
const SCRATCH_INO: u64 = 9;

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

struct TestFs {
    pattern: Vec<u8>,
    big: Vec<WireExtent>,
    scratch: Mutex<Vec<u8>>,
    daxdev: PathBuf,
    forgotten: AtomicU64,
    destroyed: AtomicBool,
    locks: Mutex<Vec<(u64, u32, bool)>>,
    inits: AtomicU64,
}

impl TestFs {
    fn new() -> TestFs {
        TestFs {
            pattern: common::pattern(PATTERN_LEN, 7),
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

    fn entry(&self, ino: u64) -> Option<EntryOut> {
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

// ---------------------------------------------------------------------------------------------
// The simulated kernel (`famfs_daemon::fuse::sim`) with this file's session settings.

type Sim = sim::Sim<TestFs>;

struct SimOpts {
    dialect: DialectConfig,
    daxdev: bool,
    kallsyms: Option<PathBuf>,
    workers: usize,
    sink: usize,
}

impl Default for SimOpts {
    fn default() -> Self {
        SimOpts {
            dialect: DialectConfig::Off,
            daxdev: true,
            kallsyms: None,
            workers: 1,
            sink: 4096,
        }
    }
}

const CONN: u32 = 4242;
const EPOCH: u64 = 17;
/// What the session must accept of the simulated kernel's offer ([`sim::OFFER_FLAGS`],
/// [`sim::OFFER_FLAGS2`]): ASYNC_READ, BIG_WRITES, PARALLEL_DIROPS, MAX_PAGES, INIT_EXT, plus
/// DO_READDIRPLUS and FLOCK_LOCKS that TestFs asks for.
const WANT_FLAGS: u32 = 0x4044_2421;

fn start(o: SimOpts) -> Sim {
    let base = sim::session_config(CONN, EPOCH, o.dialect);
    Sim::builder(TestFs::new())
        .config(SessionConfig {
            daxdev_configured: o.daxdev,
            kallsyms: o.kallsyms.unwrap_or(base.kallsyms),
            ..base
        })
        .workers(o.workers)
        .records(o.sink)
        .start()
        .unwrap()
}

fn kallsyms_with_famfs(dir: &Path) -> PathBuf {
    let p = dir.join("kallsyms");
    std::fs::write(
        &p,
        "ffffffffc0000000 t fuse_open\t[fuse]\nffffffffc0001000 t famfs_fuse_iomap_begin\t[fuse]\n",
    )
    .unwrap();
    p
}

// ---------------------------------------------------------------------------------------------
// (a) Simulated kernel.

#[test]
fn init_reply_flags_per_dialect_exact() {
    let dir = tempfile::tempdir().unwrap();
    let ks = kallsyms_with_famfs(dir.path());
    // (dialect, daxdev, kallsyms has famfs, famfs bits offered, flags2 expected, reason)
    let cases: &[(DialectConfig, bool, bool, u32, u32, Reason)] = &[
        (
            DialectConfig::Off,
            true,
            true,
            0xc00,
            0,
            Reason::ConfiguredOff,
        ),
        (DialectConfig::Off, true, true, 0, 0, Reason::ConfiguredOff),
        (
            DialectConfig::RfcV2,
            true,
            false,
            0x400,
            0x400,
            Reason::Explicit,
        ),
        (
            DialectConfig::RfcV2,
            true,
            false,
            0xc00,
            0x400,
            Reason::Explicit,
        ),
        (
            DialectConfig::RfcV2,
            true,
            false,
            0x800,
            0,
            Reason::BitNotOffered,
        ),
        (
            DialectConfig::RfcV2,
            true,
            false,
            0,
            0,
            Reason::BitNotOffered,
        ),
        (
            DialectConfig::V3,
            true,
            false,
            0x800,
            0x800,
            Reason::Explicit,
        ),
        (
            DialectConfig::V3,
            true,
            false,
            0xc00,
            0x800,
            Reason::Explicit,
        ),
        (
            DialectConfig::V3,
            true,
            false,
            0x400,
            0,
            Reason::BitNotOffered,
        ),
        (DialectConfig::V3, true, false, 0, 0, Reason::BitNotOffered),
        (DialectConfig::V3, false, false, 0x800, 0, Reason::NoDaxdev),
        (
            DialectConfig::Auto,
            true,
            true,
            0xc00,
            0x800,
            Reason::AutoV3,
        ),
        (
            DialectConfig::Auto,
            true,
            true,
            0x400,
            0,
            Reason::AutoAmbiguous,
        ),
        (
            DialectConfig::Auto,
            true,
            true,
            0,
            0,
            Reason::AutoNotOffered,
        ),
        (
            DialectConfig::Auto,
            true,
            false,
            0x800,
            0,
            Reason::AutoNoKernelSupport,
        ),
    ];
    for &(dialect, daxdev, famfs_kernel, offered, want2, reason) in cases {
        let ctx = format!("{dialect} daxdev={daxdev} kallsyms={famfs_kernel} offered={offered:#x}");
        let mut sim = start(SimOpts {
            dialect,
            daxdev,
            kallsyms: famfs_kernel.then(|| ks.clone()),
            ..Default::default()
        });
        let out = sim.init_offer(offered).unwrap();
        assert_eq!(out.flags, WANT_FLAGS, "{ctx}: flags");
        assert_eq!(out.flags2, want2, "{ctx}: flags2");
        assert_eq!(
            (out.major, out.minor, out.max_readahead, out.max_write),
            (7, 45, 131_072, 1 << 20),
            "{ctx}"
        );
        assert_eq!(
            (
                out.time_gran,
                out.max_pages,
                out.max_background,
                out.congestion_threshold
            ),
            (1, 256, 64, 48),
            "{ctx}"
        );
        assert_eq!(
            (out.map_alignment, out.max_stack_depth, out.request_timeout),
            (0, 0, 0)
        );
        let n = sim.session().negotiated().expect("negotiated").clone();
        assert_eq!(n.famfs_reason, reason, "{ctx}");
        assert_eq!(
            n.flags,
            u64::from(WANT_FLAGS) | (u64::from(want2) << 32),
            "{ctx}"
        );
        assert_eq!(
            n.offered,
            u64::from(OFFER_FLAGS) | (u64::from(OFFER_FLAGS2 | offered) << 32)
        );
        let expect_ops = match want2 {
            0x400 => Some((53, 54)),
            0x800 => Some((54, 55)),
            _ => None,
        };
        assert_eq!(
            n.get_fmap_opcode().zip(n.get_daxdev_opcode()),
            expect_ops,
            "{ctx}"
        );
        assert_eq!((n.connection, n.mount_epoch, n.minor), (CONN, EPOCH, 45));
        assert_eq!(sim.fs().inits.load(Ordering::Relaxed), 1);
    }
}

#[test]
fn init_variants_old_minor_no_init_ext_bad_major() {
    // Minor < 23: the 24-byte INIT reply.
    let mut sim = start(SimOpts::default());
    let r = sim.init_with(7, 22, 0x3f_ffff, 0).unwrap();
    assert_eq!((r.error, r.body.len()), (0, 24));
    assert_eq!(&r.body[0..8], &[7, 0, 0, 0, 45, 0, 0, 0]);
    assert_eq!(sim.session().negotiated().unwrap().minor, 22);

    // No INIT_EXT offered: flags2 is not read, so no famfs even in v3 with bit 43 "there".
    let mut sim = start(SimOpts {
        dialect: DialectConfig::V3,
        ..Default::default()
    });
    let r = sim
        .init_with(7, 45, OFFER_FLAGS & !(1 << 30), 0x800)
        .unwrap();
    let out = InitOut::decode(&r.body, 0, 0).unwrap();
    assert_eq!((out.flags, out.flags2), (WANT_FLAGS, 0));
    let n = sim.session().negotiated().unwrap();
    assert_eq!((n.famfs, n.famfs_reason), (None, Reason::BitNotOffered));

    // Major 6: EPROTO, not negotiated; requests before INIT get EIO.
    let mut sim = start(SimOpts::default());
    let r = sim.init_with(6, 45, OFFER_FLAGS, 0).unwrap();
    assert_eq!((r.error, r.body.len()), (-libc::EPROTO, 0));
    assert!(sim.session().negotiated().is_none());
    let r = sim.call(opcode::GETATTR, ROOT, &getattr_in()).unwrap();
    assert_eq!(r.error, -libc::EIO);

    // Major 8: we answer with our major only and negotiate on the second INIT.
    let mut sim = start(SimOpts::default());
    let r = sim.init_with(8, 0, 0, 0).unwrap();
    let out = InitOut::decode(&r.body, 0, 0).unwrap();
    assert_eq!((r.error, out.major, out.minor, out.flags), (0, 7, 45, 0));
    assert!(sim.session().negotiated().is_none());
    let out = sim.init_offer(0).unwrap();
    assert_eq!(out.flags, WANT_FLAGS);
    // A third INIT after negotiation is refused.
    let r = sim.init_with(7, 45, OFFER_FLAGS, 0).unwrap();
    assert_eq!(r.error, -libc::EINVAL);
    // Short INIT body: EINVAL, named in the log; session keeps serving.
    let r = sim.call(opcode::INIT, 0, &[7, 0, 0, 0]).unwrap();
    assert_eq!(r.error, -libc::EINVAL);
    assert_eq!(
        sim.call(opcode::GETATTR, ROOT, &getattr_in())
            .unwrap()
            .error,
        0
    );
}

#[test]
fn ordinary_ops_in_every_dialect() {
    for (dialect, bits) in [
        (DialectConfig::Off, 0xc00),
        (DialectConfig::RfcV2, 0x400),
        (DialectConfig::V3, 0x800),
    ] {
        let mut sim = start(SimOpts {
            dialect,
            ..Default::default()
        });
        sim.init_offer(bits).unwrap();
        let fs = TestFs::new();

        // LOOKUP: the exact 128-byte entry.
        let r = sim.call(opcode::LOOKUP, ROOT, b"hello.txt\0").unwrap();
        assert_eq!(r.error, 0);
        assert_eq!(r.body, fs.entry(HELLO_INO).unwrap().to_bytes().to_vec());
        assert_eq!(&r.body[0..8], &2u64.to_ne_bytes(), "{dialect}: nodeid");
        assert_eq!(
            &r.body[48..56],
            &13u64.to_ne_bytes(),
            "{dialect}: attr.size"
        );
        let r = sim.call(opcode::LOOKUP, SUB_INO, b"nested.txt\0").unwrap();
        assert_eq!((r.error, &r.body[0..8]), (0, &8u64.to_ne_bytes()[..]));
        // A missing name is an ENOENT error, header only.
        let r = sim.call(opcode::LOOKUP, ROOT, b"missing\0").unwrap();
        assert_eq!((r.error, r.body.len()), (-libc::ENOENT, 0));

        // GETATTR: 104 bytes.
        let r = sim
            .call(opcode::GETATTR, PATTERN_INO, &getattr_in())
            .unwrap();
        assert_eq!(r.error, 0);
        let a = AttrOut::decode(&r.body, 0, 0).unwrap();
        assert_eq!(r.body.len(), 104);
        assert_eq!(
            (
                a.attr_valid,
                a.attr.ino,
                a.attr.size,
                a.attr.mode,
                a.attr.blocks
            ),
            (1, 3, PATTERN_LEN as u64, 0o100644, 129)
        );

        // OPEN: 16 bytes with fh and open_flags.
        let r = sim
            .call(opcode::OPEN, PATTERN_INO, &OpenIn::default().to_bytes())
            .unwrap();
        let o = OpenOut::decode(&r.body, 0, 0).unwrap();
        assert_eq!(
            (r.error, r.body.len(), o.fh, o.open_flags),
            (0, 16, 1003, 1)
        );
        let r = sim
            .call(opcode::OPEN, ROOT, &OpenIn::default().to_bytes())
            .unwrap();
        assert_eq!(r.error, -libc::EISDIR);

        // READ: borrowed slice and filled buffer; short at EOF.
        let r = sim
            .call(opcode::READ, HELLO_INO, &read_in(1002, 7, 100))
            .unwrap();
        assert_eq!((r.error, r.body.as_slice()), (0, &b"famfs\n"[..]));
        let r = sim
            .call(opcode::READ, PATTERN_INO, &read_in(1003, 1000, 4096))
            .unwrap();
        assert_eq!(r.body, fs.pattern[1000..5096].to_vec());
        let r = sim
            .call(opcode::READ, PATTERN_INO, &read_in(1003, 65_536, 4096))
            .unwrap();
        assert_eq!(r.body, fs.pattern[65_536..].to_vec());
        let r = sim
            .call(
                opcode::READ,
                PATTERN_INO,
                &read_in(1003, 0, PATTERN_LEN as u32),
            )
            .unwrap();
        assert_eq!(r.body, fs.pattern);

        // READDIR: all entries, then a buffer that holds only the first two, then the rest.
        let r = sim
            .call(opcode::OPENDIR, ROOT, &OpenIn::default().to_bytes())
            .unwrap();
        assert_eq!(OpenOut::decode(&r.body, 0, 0).unwrap().fh, 101);
        let r = sim
            .call(opcode::READDIR, ROOT, &read_in(101, 0, 4096))
            .unwrap();
        let all = parse_dirents(&r.body).unwrap();
        let want: Vec<Dirent> = [
            (1, ".", 4),
            (1, "..", 4),
            (2, "hello.txt", 8),
            (3, "pattern.bin", 8),
            (4, "file0", 8),
            (5, "interleaved", 8),
            (6, "big", 8),
            (7, "sub", 4),
            (9, "scratch", 8),
        ]
        .iter()
        .enumerate()
        .map(|(i, &(ino, n, t))| Dirent::new(ino, i as u64 + 1, t, n))
        .collect();
        assert_eq!(all, want, "{dialect}");
        let r = sim
            .call(opcode::READDIR, ROOT, &read_in(101, 0, 64))
            .unwrap();
        assert_eq!(parse_dirents(&r.body).unwrap(), want[..2].to_vec());
        assert_eq!(r.body.len(), 64);
        let r = sim
            .call(opcode::READDIR, ROOT, &read_in(101, 2, 4096))
            .unwrap();
        assert_eq!(parse_dirents(&r.body).unwrap(), want[2..].to_vec());
        let r = sim
            .call(opcode::READDIR, ROOT, &read_in(101, 9, 4096))
            .unwrap();
        assert_eq!((r.error, r.body.len()), (0, 0), "end of directory");
        // READDIRPLUS: entry + dirent per name.
        let r = sim
            .call(opcode::READDIRPLUS, SUB_INO, &read_in(107, 0, 4096))
            .unwrap();
        assert_eq!(r.body.len(), 160 + 160 + 168);
        let e = EntryOut::decode(&r.body[320..], 0, 0).unwrap();
        assert_eq!(e, fs.entry(NESTED_INO).unwrap());
        assert_eq!(
            parse_dirents(&r.body[320 + 128..]).unwrap(),
            vec![Dirent::new(8, 3, 8, "nested.txt")]
        );
        let r = sim
            .call(opcode::RELEASEDIR, ROOT, &ReleaseIn::default().to_bytes())
            .unwrap();
        assert_eq!((r.error, r.body.len()), (0, 0));

        // STATFS: 80 bytes.
        let r = sim.call(opcode::STATFS, ROOT, &[]).unwrap();
        assert_eq!(r.body.len(), 80);
        assert_eq!(&r.body[0..8], &1000u64.to_ne_bytes(), "blocks");
        assert_eq!(
            &r.body[40..48],
            &[0, 16, 0, 0, 255, 0, 0, 0],
            "bsize, namelen"
        );

        // GETXATTR: size probe, too small, fits, absent.
        let mut x = getxattr_in(0, b"user.test");
        let r = sim.call(opcode::GETXATTR, HELLO_INO, &x).unwrap();
        assert_eq!(
            (r.error, r.body.as_slice()),
            (0, &[9, 0, 0, 0, 0, 0, 0, 0][..])
        );
        x[0] = 4;
        assert_eq!(
            sim.call(opcode::GETXATTR, HELLO_INO, &x).unwrap().error,
            -libc::ERANGE
        );
        x[0] = 100;
        let r = sim.call(opcode::GETXATTR, HELLO_INO, &x).unwrap();
        assert_eq!((r.error, r.body.as_slice()), (0, &b"value-123"[..]));
        assert_eq!(
            sim.call(opcode::GETXATTR, ROOT, &x).unwrap().error,
            -libc::ENODATA
        );

        // WRITE then READ back; FLUSH and RELEASE answer with the header only.
        let w = write_in(1009, 3, b"abcde");
        let r = sim.call(opcode::WRITE, SCRATCH_INO, &w).unwrap();
        assert_eq!(
            (r.error, r.body.as_slice()),
            (0, &[5, 0, 0, 0, 0, 0, 0, 0][..])
        );
        let r = sim
            .call(opcode::READ, SCRATCH_INO, &read_in(1009, 0, 100))
            .unwrap();
        assert_eq!(r.body, b"\0\0\0abcde");
        let r = sim
            .call(
                opcode::FLUSH,
                SCRATCH_INO,
                &abi::FlushIn::default().to_bytes(),
            )
            .unwrap();
        assert_eq!((r.error, r.body.len()), (0, 0));
        let r = sim
            .call(
                opcode::RELEASE,
                SCRATCH_INO,
                &ReleaseIn::default().to_bytes(),
            )
            .unwrap();
        assert_eq!((r.error, r.body.len()), (0, 0));

        // Unimplemented here: SETATTR gets the trait default ENOSYS; unknown opcodes ENOSYS.
        let r = sim.call(opcode::SETATTR, HELLO_INO, &[0u8; 88]).unwrap();
        assert_eq!(r.error, -libc::ENOSYS);
        for op in [99, 7, 4096, opcode::MKDIR, opcode::STATX] {
            let r = sim.call(op, ROOT, &[0u8; 16]).unwrap();
            assert_eq!((r.error, r.body.len()), (-libc::ENOSYS, 0), "opcode {op}");
        }
        // famfs opcodes not in force in this dialect are ENOSYS too.
        let famfs_ops: &[u32] = match dialect {
            DialectConfig::RfcV2 => &[55],
            DialectConfig::V3 => &[53],
            _ => &[53, 54, 55],
        };
        for &op in famfs_ops {
            assert_eq!(
                sim.call(op, FILE0_INO, &[]).unwrap().error,
                -libc::ENOSYS,
                "{dialect}: opcode {op}"
            );
        }
        sim.stop().unwrap();
        assert_eq!(
            sim.session().stats().requests(opcode::READDIR),
            4,
            "{dialect}"
        );
        assert_eq!(sim.session().stats().errors(opcode::LOOKUP), 1);
    }
}

#[test]
fn get_fmap_rfc_v2_needed_size_retry() {
    let mut sim = start(SimOpts {
        dialect: DialectConfig::RfcV2,
        ..Default::default()
    });
    sim.init_offer(0x400).unwrap();
    // Byte-exact replies to a 48-byte request (size 4096).
    let r = sim.call(53, FILE0_INO, &fmap_size_body(4096)).unwrap();
    assert_eq!(
        (r.error, r.body.clone()),
        (0, hex(FMAP_EXAMPLE_SIMPLE).unwrap())
    );
    let r = sim
        .call(53, INTERLEAVED_INO, &fmap_size_body(4096))
        .unwrap();
    assert_eq!(
        (r.error, r.body.clone()),
        (0, hex(FMAP_EXAMPLE_INTERLEAVED).unwrap())
    );
    // A 40-byte request (no body) means a 4096-byte buffer.
    let r = sim.call(53, FILE0_INO, &[]).unwrap();
    assert_eq!(r.body, hex(FMAP_EXAMPLE_SIMPLE).unwrap());
    // 170 extents = 4112 bytes: exactly a 4-byte needed-size reply (len 20)…
    let u1 = sim.request(53, BIG_INO, &fmap_size_body(4096)).unwrap();
    let r = sim.recv().unwrap();
    assert_eq!(
        (r.unique, r.error, r.body.as_slice()),
        (u1, 0, &4112u32.to_ne_bytes()[..])
    );
    // …then the kernel's retry with a larger buffer gets the whole map.
    let u2 = sim.request(53, BIG_INO, &fmap_size_body(8192)).unwrap();
    let r = sim.recv().unwrap();
    assert_eq!((r.unique, r.error, r.body.len()), (u2, 0, 4112));
    assert_eq!(
        &r.body[0..16],
        &hex("00 00 01 00 00 00 00 00 aa 00 00 00 00 00 00 00").unwrap()[..]
    );
    assert_eq!(
        &r.body[32 + 169 * 24 + 8..32 + 169 * 24 + 16],
        &(185 * MIB2).to_ne_bytes()
    );
    // GET_DAXDEV (54): 280 bytes.
    let r = sim.call(54, 0, &[]).unwrap();
    assert_eq!((r.error, r.body.len()), (0, 280));
    assert_eq!(&r.body[..24], &[0u8; 24]);
    assert_eq!(&r.body[24..36], b"/dev/dax0.0\0");
    assert!(r.body[36..].iter().all(|&b| b == 0));
    assert_eq!(sim.call(54, 1, &[]).unwrap().error, -libc::EINVAL);
    // Errors from the filesystem: a directory has no fmap (ENOENT), unknown inode EINVAL.
    assert_eq!(
        sim.call(53, ROOT, &fmap_size_body(4096)).unwrap().error,
        -libc::ENOENT
    );
    assert_eq!(
        sim.call(53, 999, &fmap_size_body(4096)).unwrap().error,
        -libc::EINVAL
    );

    sim.stop().unwrap();
    let recs = sim.records();
    assert_eq!(recs[0].opcode, opcode::INIT);
    let recs = &recs[1..];
    let view: Vec<_> = recs
        .iter()
        .map(|r| {
            (
                r.opcode,
                r.nodeid,
                r.reply_bytes,
                r.error,
                r.fmap_bytes,
                r.fmap_extents,
                r.retry,
            )
        })
        .collect();
    assert_eq!(
        view,
        vec![
            (53, FILE0_INO, 72, 0, 56, 1, false),
            (53, INTERLEAVED_INO, 120, 0, 104, 2, false),
            (53, FILE0_INO, 72, 0, 56, 1, false),
            (53, BIG_INO, 20, 0, 0, 0, true),
            (53, BIG_INO, 16 + 4112, 0, 4112, 170, false),
            (54, 0, 296, 0, 0, 0, false),
            (54, 1, 16, -libc::EINVAL, 0, 0, false),
            (53, ROOT, 16, -libc::ENOENT, 0, 0, false),
            (53, 999, 16, -libc::EINVAL, 0, 0, false),
        ]
    );
    assert_eq!(recs[3].unique, u1);
    assert_eq!(recs[4].unique, u2);
}

#[test]
fn get_fmap_v3_fixed_page_no_retry() {
    let mut sim = start(SimOpts {
        dialect: DialectConfig::V3,
        ..Default::default()
    });
    sim.init_offer(0xc00).unwrap();
    let r = sim.call(54, FILE0_INO, &[]).unwrap();
    assert_eq!(
        (r.error, r.body.clone()),
        (0, hex(FMAP_EXAMPLE_SIMPLE).unwrap())
    );
    let r = sim.call(54, INTERLEAVED_INO, &[]).unwrap();
    assert_eq!(
        (r.error, r.body.clone()),
        (0, hex(FMAP_EXAMPLE_INTERLEAVED).unwrap())
    );
    // Too big for the page and no retry in V3: EINVAL, header only.
    let r = sim.call(54, BIG_INO, &[]).unwrap();
    assert_eq!((r.error, r.body.len()), (-libc::EINVAL, 0));
    // GET_DAXDEV is 55 in V3.
    let r = sim.call(55, 0, &[]).unwrap();
    assert_eq!((r.error, r.body.len()), (0, 280));
    assert_eq!(&r.body[24..36], b"/dev/dax0.0\0");
    // 53 is COPY_FILE_RANGE_64 here, which is not implemented.
    assert_eq!(sim.call(53, FILE0_INO, &[]).unwrap().error, -libc::ENOSYS);
    sim.stop().unwrap();
    let recs = sim.records();
    assert_eq!(recs[0].opcode, opcode::INIT);
    let view: Vec<_> = recs[1..]
        .iter()
        .map(|r| (r.opcode, r.reply_bytes, r.error, r.fmap_bytes, r.retry))
        .collect();
    assert_eq!(
        view,
        vec![
            (54, 72, 0, 56, false),
            (54, 120, 0, 104, false),
            (54, 16, -libc::EINVAL, 0, false),
            (55, 296, 0, 0, false),
            (53, 16, -libc::ENOSYS, 0, false),
        ]
    );
    let st = sim.session().stats();
    assert_eq!((st.requests(54), st.errors(54)), (3, 1));
    assert_eq!(
        sim.session().negotiated().unwrap().opcode_name(54),
        Some("GET_FMAP")
    );
    assert_eq!(
        sim.session().negotiated().unwrap().opcode_name(53),
        Some("COPY_FILE_RANGE_64")
    );
}

#[test]
fn famfs_opcodes_are_enosys_when_not_negotiated() {
    // rfc-v2 configured but the kernel offers only bit 43: famfs off, 53/54 are not famfs.
    let mut sim = start(SimOpts {
        dialect: DialectConfig::RfcV2,
        ..Default::default()
    });
    let out = sim.init_offer(0x800).unwrap();
    assert_eq!(out.flags2, 0);
    for op in [53, 54, 55] {
        let r = sim.call(op, FILE0_INO, &fmap_size_body(4096)).unwrap();
        assert_eq!((r.error, r.body.len()), (-libc::ENOSYS, 0), "opcode {op}");
    }
}

#[test]
fn malformed_requests_get_errors_and_the_session_keeps_serving() {
    let mut sim = start(SimOpts::default());
    sim.init_offer(0).unwrap();
    let ok = |sim: &mut Sim| {
        let r = sim.call(opcode::GETATTR, ROOT, &getattr_in()).unwrap();
        assert_eq!(r.error, 0, "the next valid request is answered");
    };

    // Short read (< 40) with a readable unique: EIO for that unique.
    let mut short = vec![0u8; 20];
    short[0..4].copy_from_slice(&20u32.to_ne_bytes());
    short[4..8].copy_from_slice(&opcode::GETATTR.to_ne_bytes());
    short[8..16].copy_from_slice(&1234u64.to_ne_bytes());
    sim.send_raw(&short).unwrap();
    let r = sim.recv().unwrap();
    assert_eq!((r.unique, r.error, r.body.len()), (1234, -libc::EIO, 0));
    ok(&mut sim);

    // Too short to carry a unique: nothing to answer; the next request still is.
    sim.send_raw(&[1, 2, 3, 4, 5]).unwrap();
    ok(&mut sim);

    // Length field disagrees with the bytes read.
    let mut h = InHeader {
        len: 60,
        opcode: opcode::GETATTR,
        unique: 5550,
        nodeid: ROOT,
        ..Default::default()
    }
    .to_bytes()
    .to_vec();
    h.extend_from_slice(&getattr_in());
    sim.send_raw(&h).unwrap();
    let r = sim.recv().unwrap();
    assert_eq!((r.unique, r.error), (5550, -libc::EIO));
    ok(&mut sim);

    // Garbage: 64 bytes of 0xab (len field 0xabababab ≠ 64).
    sim.send_raw(&[0xab; 64]).unwrap();
    let r = sim.recv().unwrap();
    assert_eq!((r.unique, r.error), (0xabab_abab_abab_abab, -libc::EIO));
    ok(&mut sim);

    // Extensions longer than the request.
    let mut h = InHeader {
        len: 56,
        opcode: opcode::GETATTR,
        unique: 5552,
        nodeid: ROOT,
        total_extlen: 4,
        ..Default::default()
    }
    .to_bytes()
    .to_vec();
    h.extend_from_slice(&getattr_in());
    sim.send_raw(&h).unwrap();
    assert_eq!(sim.recv().unwrap().error, -libc::EIO);

    // Body too short for the opcode: EINVAL.
    let r = sim.call(opcode::READ, HELLO_INO, &[0u8; 10]).unwrap();
    assert_eq!(r.error, -libc::EINVAL);
    let r = sim.call(opcode::GETATTR, ROOT, &[0u8; 8]).unwrap();
    assert_eq!(r.error, -libc::EINVAL);
    // WRITE whose size exceeds its data.
    let mut w = WriteIn {
        size: 100,
        ..Default::default()
    }
    .to_bytes()
    .to_vec();
    w.extend_from_slice(b"only10byte");
    assert_eq!(
        sim.call(opcode::WRITE, SCRATCH_INO, &w).unwrap().error,
        -libc::EINVAL
    );
    // Name without its NUL.
    let r = sim.call(opcode::LOOKUP, ROOT, b"hello.txt").unwrap();
    assert_eq!(r.error, -libc::EINVAL);
    let mut x = abi::GetxattrIn {
        size: 100,
        ..Default::default()
    }
    .to_bytes()
    .to_vec();
    x.extend_from_slice(b"user.test");
    assert_eq!(
        sim.call(opcode::GETXATTR, HELLO_INO, &x).unwrap().error,
        -libc::EINVAL
    );
    // A malformed FORGET still gets no reply.
    sim.request(opcode::FORGET, HELLO_INO, &[1, 2]).unwrap();
    ok(&mut sim);

    assert_eq!(sim.session().stats().malformed(), 11);
    assert_eq!(sim.fs().forgotten.load(Ordering::Relaxed), 0);
    sim.stop().unwrap();
    // Every request with a readable unique left a record.
    // Every request with a readable unique left a record: INIT, 10 malformed, 5 GETATTR.
    let recs = sim.records();
    assert_eq!(recs.len(), 16);
    assert_eq!(recs[1].unique, 1234);
    assert_eq!((recs[1].reply_bytes, recs[1].error), (16, -libc::EIO));
    assert_eq!(
        recs.iter().filter(|r| r.error == -libc::EINVAL).count(),
        5,
        "READ, GETATTR, WRITE, LOOKUP, GETXATTR bodies; FORGET has no reply"
    );
}

#[test]
fn no_reply_opcodes_forget_batch_forget_interrupt_notify_reply() {
    let mut sim = start(SimOpts::default());
    sim.init_offer(0).unwrap();
    sim.request(opcode::FORGET, HELLO_INO, &forget_in(3))
        .unwrap();
    let b = batch_forget_in(&[(PATTERN_INO, 5), (FILE0_INO, 7)]);
    sim.request(opcode::BATCH_FORGET, 0, &b).unwrap();
    sim.request(opcode::INTERRUPT, 0, &4u64.to_ne_bytes())
        .unwrap();
    sim.request(opcode::NOTIFY_REPLY, 0, &[0u8; 16]).unwrap();
    // The first reply the kernel sees is the (sentinel) GETATTR's: none of the above was answered.
    let (before, sentinel) = sim.until_sentinel(ROOT).unwrap();
    assert_eq!(before, vec![]);
    assert_eq!(sentinel.unique, sim.last_unique());
    assert_eq!(sim.fs().forgotten.load(Ordering::Relaxed), 15);
    sim.stop().unwrap();
    let recs = sim.records();
    let view: Vec<_> = recs.iter().map(|r| (r.opcode, r.reply_bytes)).collect();
    assert_eq!(
        view,
        vec![(26, 80), (2, 0), (42, 0), (36, 0), (41, 0), (3, 120)]
    );
}

#[test]
fn setlk_and_setlkw_reach_the_filesystem() {
    let mut sim = start(SimOpts::default());
    let out = sim.init_offer(0).unwrap();
    assert_ne!(out.flags & init_flags::FLOCK_LOCKS as u32, 0);
    let lk = |typ: u32| {
        abi::LkIn {
            fh: 1009,
            owner: 77,
            lk: abi::FileLock {
                typ,
                ..Default::default()
            },
            lk_flags: abi::LK_FLOCK,
            ..Default::default()
        }
        .to_bytes()
    };
    let r = sim
        .call(opcode::SETLKW, SCRATCH_INO, &lk(libc::F_WRLCK as u32))
        .unwrap();
    assert_eq!((r.error, r.body.len()), (0, 0));
    let r = sim
        .call(opcode::SETLK, SCRATCH_INO, &lk(libc::F_UNLCK as u32))
        .unwrap();
    assert_eq!((r.error, r.body.len()), (0, 0));
    assert_eq!(
        sim.call(opcode::SETLK, HELLO_INO, &lk(1)).unwrap().error,
        -libc::EINVAL
    );
    assert_eq!(
        sim.call(opcode::SETLK, SCRATCH_INO, &[0u8; 40])
            .unwrap()
            .error,
        -libc::EINVAL,
        "short body"
    );
    assert_eq!(
        sim.call(opcode::GETLK, SCRATCH_INO, &lk(1)).unwrap().error,
        -libc::ENOSYS
    );
    assert_eq!(
        *sim.fs().locks.lock().unwrap(),
        vec![
            (77, libc::F_WRLCK as u32, true),
            (77, libc::F_UNLCK as u32, false)
        ]
    );
}

#[test]
fn records_carry_exact_fields() {
    let mut sim = start(SimOpts {
        dialect: DialectConfig::V3,
        ..Default::default()
    });
    let t0 = famfs_daemon::util::monotonic_ns();
    sim.init_offer(0x800).unwrap();
    let ul = sim.request(opcode::LOOKUP, ROOT, b"file0\0").unwrap();
    sim.recv().unwrap();
    let ur = sim
        .request(opcode::READ, HELLO_INO, &read_in(1, 0, 4096))
        .unwrap();
    sim.recv().unwrap();
    let uf = sim.request(54, FILE0_INO, &[]).unwrap();
    sim.recv().unwrap();
    sim.stop().unwrap();
    // After the worker ended: every record's reply time is before this.
    let t1 = famfs_daemon::util::monotonic_ns();
    let recs = sim.records();
    assert_eq!(recs.len(), 4);
    for r in &recs {
        assert!(
            t0 <= r.recv_ns && r.recv_ns <= r.reply_ns && r.reply_ns <= t1,
            "{r:?}"
        );
    }
    let strip = |r: &RequestRecord| RequestRecord {
        recv_ns: 0,
        reply_ns: 0,
        ..*r
    };
    let base = RequestRecord {
        mount_epoch: EPOCH,
        connection: CONN,
        ..Default::default()
    };
    assert_eq!(
        recs.iter().map(strip).collect::<Vec<_>>(),
        vec![
            RequestRecord {
                unique: 2,
                opcode: 26,
                reply_bytes: 80,
                ..base
            },
            RequestRecord {
                unique: ul,
                opcode: 1,
                nodeid: ROOT,
                reply_bytes: 144,
                ..base
            },
            RequestRecord {
                unique: ur,
                opcode: 15,
                nodeid: HELLO_INO,
                reply_bytes: 16 + 13,
                io_bytes: 13,
                ..base
            },
            RequestRecord {
                unique: uf,
                opcode: 54,
                nodeid: FILE0_INO,
                reply_bytes: 72,
                fmap_bytes: 56,
                fmap_extents: 1,
                ..base
            },
        ]
    );
    let n = sim.session().negotiated().unwrap();
    assert!(t0 <= n.init_ns && n.init_ns == recs[0].recv_ns);
    assert_eq!(sim.session().stats().records_sent(), 4);
    assert_eq!(sim.session().stats().records_dropped(), 0);
}

#[test]
fn full_sink_counts_drops_without_blocking() {
    let mut sim = start(SimOpts {
        sink: 1,
        ..Default::default()
    });
    sim.init_offer(0).unwrap();
    // Nobody drains the sink: every request is still answered.
    for _ in 0..50 {
        assert_eq!(
            sim.call(opcode::GETATTR, ROOT, &getattr_in())
                .unwrap()
                .error,
            0
        );
    }
    sim.stop().unwrap();
    let st = sim.session().stats();
    assert_eq!((st.records_sent(), st.records_dropped()), (1, 50));
    let recs = sim.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].opcode, opcode::INIT);
}

#[test]
fn destroy_is_answered_and_ends_the_session() {
    let mut sim = start(SimOpts::default());
    sim.init_offer(0).unwrap();
    let r = sim.call(opcode::DESTROY, 0, &[]).unwrap();
    assert_eq!((r.error, r.body.len()), (0, 0));
    // The worker left: run() returns while the kernel side is still open.
    assert!(sim.is_open());
    sim.wait_ended(Duration::from_secs(10))
        .expect("run() returned Ok after DESTROY");
    assert!(sim.fs().destroyed.load(Ordering::Relaxed));
}

#[test]
fn notifications_are_written_with_unique_zero() {
    let mut sim = start(SimOpts::default());
    sim.init_offer(0).unwrap();
    let n = sim.session().notifier();
    n.inval_entry(ROOT, b"hello.txt").unwrap();
    let r = sim.recv().unwrap();
    assert_eq!((r.unique, r.error), (0, 3));
    let mut want = abi::NotifyInvalEntryOut {
        parent: 1,
        namelen: 9,
        flags: 0,
    }
    .to_bytes()
    .to_vec();
    want.extend_from_slice(b"hello.txt\0");
    assert_eq!(r.body, want);
    n.inval_inode(HELLO_INO, 0, -1).unwrap();
    let r = sim.recv().unwrap();
    assert_eq!((r.unique, r.error, r.body.len()), (0, 2, 24));
    assert_eq!(&r.body[0..8], &2u64.to_ne_bytes());
    assert_eq!(&r.body[16..24], &(-1i64).to_ne_bytes());
}

#[test]
fn four_workers_on_a_shared_channel_answer_every_request() {
    let mut sim = start(SimOpts {
        workers: 4,
        ..Default::default()
    });
    sim.init_offer(0).unwrap();
    let fs = TestFs::new();
    let mut sent = std::collections::HashMap::new();
    // Pipelined in batches of 20 requests in flight (each batch fits the socket buffers).
    for batch in 0..10u64 {
        for i in 0..20u64 {
            let off = (batch * 20 + i) * 300;
            let u = sim
                .request(opcode::READ, PATTERN_INO, &read_in(3, off, 300))
                .unwrap();
            sent.insert(u, off as usize);
        }
        for _ in 0..20 {
            let r = sim.recv().unwrap();
            let off = sent
                .remove(&r.unique)
                .expect("reply to a request we sent, once");
            let end = (off + 300).min(PATTERN_LEN);
            assert_eq!(r.body, fs.pattern[off..end].to_vec());
        }
    }
    assert!(sent.is_empty());
    let st = sim.session().stats();
    assert_eq!(st.requests(opcode::READ), 200);
    assert_eq!(
        (st.workers(), st.cloned_fds()),
        (4, 0),
        "a socket is shared, not cloned"
    );
}

/// Serve `rounds` rounds of every hot-path opcode on one worker (the spawned thread) and return the
/// heap allocations that thread made in total.
fn server_thread_allocations(rounds: usize) -> u64 {
    let mut sim = Sim::builder(TestFs::new())
        .config(sim::session_config(0, 0, DialectConfig::V3))
        .records(1 << 16)
        .start()
        .unwrap();
    sim.init_offer(0x800).unwrap();
    let x = getxattr_in(100, b"user.test");
    for _ in 0..rounds {
        let replies = [
            sim.call(opcode::LOOKUP, ROOT, b"hello.txt\0")
                .unwrap()
                .error,
            sim.call(opcode::GETATTR, HELLO_INO, &getattr_in())
                .unwrap()
                .error,
            sim.call(opcode::OPEN, HELLO_INO, &OpenIn::default().to_bytes())
                .unwrap()
                .error,
            sim.call(opcode::READ, HELLO_INO, &read_in(1, 0, 4096))
                .unwrap()
                .error,
            sim.call(opcode::READ, PATTERN_INO, &read_in(1, 0, 65_536))
                .unwrap()
                .error,
            sim.call(opcode::READDIR, ROOT, &read_in(1, 0, 4096))
                .unwrap()
                .error,
            sim.call(opcode::READDIRPLUS, ROOT, &read_in(1, 0, 4096))
                .unwrap()
                .error,
            sim.call(opcode::GETXATTR, HELLO_INO, &x).unwrap().error,
            sim.call(54, INTERLEAVED_INO, &[]).unwrap().error,
            sim.call(55, 0, &[]).unwrap().error,
            sim.call(
                opcode::FLUSH,
                HELLO_INO,
                &abi::FlushIn::default().to_bytes(),
            )
            .unwrap()
            .error,
            sim.call(opcode::RELEASE, HELLO_INO, &ReleaseIn::default().to_bytes())
                .unwrap()
                .error,
            sim.call(99, ROOT, &[]).unwrap().error,
        ];
        assert_eq!(replies, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -libc::ENOSYS]);
        sim.request(opcode::FORGET, HELLO_INO, &forget_in(1))
            .unwrap();
        let _ = sim.records();
    }
    sim.stop().unwrap();
    sim.serving_thread_allocations()
        .expect("the serving thread ended")
}

#[test]
fn serving_requests_allocates_nothing_per_request() {
    let few = server_thread_allocations(5);
    let many = server_thread_allocations(105);
    // 100 more rounds × 14 requests: any per-request allocation would show here.
    assert_eq!(
        many, few,
        "allocations on the server thread: {few} vs {many}"
    );
}

// ---------------------------------------------------------------------------------------------
// (b) A real mount.

/// The mount and its serving thread: detaches the mount and joins the thread on drop, aborting the
/// connection through fusectl (when mounted) if the thread has not ended within 10 s.
struct Served {
    mount: Option<Mount>,
    conn: u32,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Served {
    fn stop(&mut self) -> io::Result<()> {
        if let Some(mut m) = self.mount.take() {
            m.unmount()?;
        }
        let Some(t) = self.thread.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !t.is_finished() {
            let abort = format!("/sys/fs/fuse/connections/{}/abort", self.conn);
            let _ = std::fs::write(abort, "1");
            let deadline = Instant::now() + Duration::from_secs(5);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if !t.is_finished() {
                // Never hang the test run: report and leave the thread.
                return Err(io::Error::other("session did not end after unmount"));
            }
        }
        t.join()
            .unwrap_or_else(|_| Err(io::Error::other("session thread panicked")))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Root and /dev/fuse, or a SKIP line.
fn can_mount(test: &str) -> bool {
    if !common::require_root(test) {
        return false;
    }
    if !Path::new("/dev/fuse").exists() {
        println!("SKIP: {test}: /dev/fuse is missing");
        return false;
    }
    true
}

/// Mount the test filesystem at `mnt` and serve it with 4 workers.
fn serve(mnt: &Path) -> (Served, Arc<Session<TestFs>>, Receiver<RequestRecord>) {
    let (mount, ch) = Mount::new(
        mnt,
        &MountOptions {
            source: "famfs-wire-test".into(),
            ..Default::default()
        },
    )
    .expect("mount");
    let conn = mount.connection();
    let (tx, rx) = sync_channel(1 << 16);
    let session = Arc::new(Session::new(
        TestFs::new(),
        ch,
        SessionConfig {
            connection: conn,
            mount_epoch: 3,
            records: Some(tx),
            ..Default::default()
        },
    ));
    let s2 = session.clone();
    let served = Served {
        mount: Some(mount),
        conn,
        thread: Some(std::thread::spawn(move || s2.run(4))),
    };
    (served, session, rx)
}

#[test]
fn real_mount_ls_stat_read_concurrent_readers_unmount() {
    if !can_mount("real_mount_ls_stat_read_concurrent_readers_unmount") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let (mut served, session, rx) = serve(&mnt);
    let mnt = served.mount.as_ref().unwrap().path().to_path_buf();
    let conn = served.conn;

    let neg = session
        .wait_negotiated(Duration::from_secs(10))
        .expect("INIT negotiated")
        .clone();
    assert_eq!(neg.famfs, None, "this kernel has no famfs");
    assert!(neg.has(init_flags::ASYNC_READ | init_flags::MAX_PAGES));
    // After INIT, stat is safe: the connection id is the minor of st_dev.
    let st_dev = std::fs::metadata(&mnt).unwrap().dev();
    assert_eq!(libc::major(st_dev), 0);
    assert_eq!(libc::minor(st_dev), conn);
    assert_eq!(common::mount_connection(&mnt), Some(conn));

    let ls = Command::new("ls")
        .arg("-1")
        .arg(&mnt)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(
        ls.status.success(),
        "ls: {}",
        String::from_utf8_lossy(&ls.stderr)
    );
    assert_eq!(
        String::from_utf8(ls.stdout).unwrap(),
        "big\nfile0\nhello.txt\ninterleaved\npattern.bin\nscratch\nsub\n"
    );
    let stat = Command::new("stat")
        .args(["-c", "%s %F %i %a %h"])
        .arg(mnt.join("hello.txt"))
        .arg(mnt.join("sub"))
        .output()
        .unwrap();
    assert!(stat.status.success());
    assert_eq!(
        String::from_utf8(stat.stdout).unwrap(),
        "13 regular file 2 644 1\n0 directory 7 755 2\n"
    );
    assert_eq!(std::fs::read(mnt.join("hello.txt")).unwrap(), HELLO);
    assert_eq!(std::fs::read(mnt.join("sub/nested.txt")).unwrap(), NESTED);
    assert_eq!(
        std::fs::metadata(mnt.join("missing")).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );

    // 4 concurrent readers of a direct-I/O file: every read reaches the server.
    let reads_before = session.stats().requests(opcode::READ);
    let want = common::pattern(PATTERN_LEN, 7);
    const ROUNDS: usize = 25;
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let f = std::fs::File::open(mnt.join("pattern.bin")).unwrap();
                let mut buf = vec![0u8; PATTERN_LEN];
                for _ in 0..ROUNDS {
                    buf.fill(0);
                    f.read_exact_at(&mut buf, 0).unwrap();
                    assert!(buf == want, "pattern.bin content");
                }
            });
        }
    });
    assert_eq!(
        session.stats().requests(opcode::READ) - reads_before,
        4 * ROUNDS as u64
    );

    served.stop().expect("session ended cleanly after unmount");
    assert_eq!(common::mount_connection(&mnt), None, "mount removed");
    assert!(session.fs().destroyed.load(Ordering::Relaxed));
    let st = session.stats();
    assert_eq!((st.requests(opcode::INIT), st.malformed()), (1, 0));
    assert_eq!(
        (st.workers(), st.cloned_fds()),
        (4, 3),
        "each extra worker has its own FUSE_DEV_IOC_CLONE fd"
    );
    assert_eq!(st.errors(opcode::READ), 0);
    let recs: Vec<RequestRecord> = rx.try_iter().collect();
    assert_eq!(recs[0].opcode, opcode::INIT);
    assert!(
        recs.iter()
            .all(|r| r.connection == conn && r.mount_epoch == 3)
    );
    let full_reads = recs
        .iter()
        .filter(|r| r.opcode == opcode::READ && r.io_bytes == PATTERN_LEN as u32)
        .count();
    assert_eq!(full_reads, 4 * ROUNDS);
    assert_eq!(st.records_dropped(), 0);
}

#[test]
fn real_mount_is_removed_when_the_test_panics() {
    if !can_mount("real_mount_is_removed_when_the_test_panics") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt").to_path_buf();
    std::fs::create_dir(&mnt).unwrap();
    let mnt = mnt.canonicalize().unwrap();
    let m2 = mnt.clone();
    let r = std::panic::catch_unwind(move || {
        let (_served, session, _rx) = serve(&m2);
        session.wait_negotiated(Duration::from_secs(10)).unwrap();
        let f = std::fs::File::open(m2.join("hello.txt")).unwrap();
        assert!(common::mount_connection(&m2).is_some());
        drop(f);
        panic!("deliberate failure with the mount up");
    });
    assert!(r.is_err());
    assert_eq!(
        common::mount_connection(&mnt),
        None,
        "the guard removed the mount"
    );
}

#[test]
fn stale_mount_is_detected_and_detached_before_mounting() {
    if !can_mount("stale_mount_is_detected_and_detached_before_mounting") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mnt = mnt.canonicalize().unwrap();
    // Removes whatever is left at `mnt` if an assertion fails (drops before `dir`).
    let _cleanup = common::MountGuard(mnt.clone());
    let (stale, ch) = Mount::new(&mnt, &MountOptions::default()).unwrap();
    // A server that died: its /dev/fuse fd is closed while the mount stays. (Forgetting the Mount
    // skips its detach on drop; `_cleanup` still covers the path.)
    std::mem::forget(stale);
    drop(ch);
    let e = std::fs::metadata(&mnt).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "{e}");

    let (mut served, session, _rx) = serve(&mnt);
    assert!(served.mount.as_ref().unwrap().stale_detached());
    session.wait_negotiated(Duration::from_secs(10)).unwrap();
    assert_eq!(std::fs::read(mnt.join("hello.txt")).unwrap(), HELLO);
    served.stop().unwrap();
    assert_eq!(common::mount_connection(&mnt), None);
}
