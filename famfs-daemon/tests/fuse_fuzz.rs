//! Property test (fuzz) of the FUSE request decoder and dispatcher, through the public API only: a
//! simulated kernel on one end of a `socketpair(AF_UNIX, SOCK_SEQPACKET)` sends a `Session` (one
//! worker, serving a small in-memory filesystem) random INIT bodies, then — after a valid INIT — a
//! batch of random byte strings and mutated valid requests: random opcodes 0..=80, wrong `len` and
//! `total_extlen` fields, truncated and extended bodies, names without a NUL, flipped bytes, random
//! node ids and uniques (0 included), in all three famfs dialect settings.
//!
//! Properties, per message:
//! - a message of 16 bytes or more (its `unique` is readable) gets exactly one reply carrying its
//!   `unique` — none when the opcode is FORGET, BATCH_FORGET, NOTIFY_REPLY or INTERRUPT, or when the
//!   unique is 0 (a reply with unique 0 would read as a notification); a shorter message gets none;
//!   "exactly one" is checked by a sentinel GETATTR after each message: every reply before the
//!   sentinel's belongs to the message;
//! - an error reply is the 16-byte header alone; a reply's `len` field equals the bytes written;
//!   successful replies of fixed-size opcodes have their exact size;
//! - every message of 16 bytes or more yields exactly one request record with its unique, opcode and
//!   the reply's error;
//!
//! and per case: the session never panics, a valid LOOKUP, GETATTR and READ (and GET_FMAP when famfs
//! mode is on) after the batch are answered exactly, and DESTROY ends the session cleanly.
//!
//! Runs 256 cases in the normal `cargo test`; set `PROPTEST_CASES` for a longer run, e.g.
//! `PROPTEST_CASES=20000 cargo test -p famfs-daemon --test fuse_fuzz`.

use std::{
    ffi::OsStr,
    io,
    path::{Path, PathBuf},
    sync::Mutex,
    time::Duration,
};

use famfs_daemon::fuse::{
    DialectConfig, DirentBuf, DirentPlusBuf, Errno, Filesystem, FmapReply, Request, SessionConfig,
    WireExtent, WireFmap, WireLayout,
    abi::{
        self, AttrOut, EntryOut, GetattrIn, InHeader, InitIn, Kstatfs, LkIn, OpenIn, OpenOut,
        ReadIn, ReleaseIn, WriteIn, famfs, init_flags, opcode,
    },
    dt,
    sim::{self, OFFER_FLAGS, OFFER_FLAGS2, Reply},
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// A small in-memory filesystem: every reply it can produce is far below a socket message's limit.

const ROOT: u64 = 1;
const HELLO: u64 = 2;
const DATA: u64 = 3;
const SUB: u64 = 4;
const SCRATCH: u64 = 5;
const HELLO_TEXT: &[u8] = b"hello, fuzz\n";
const DATA_LEN: usize = 20_000;
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

struct FuzzFs {
    data: Vec<u8>,
    scratch: Mutex<Vec<u8>>,
    daxdev: PathBuf,
}

impl FuzzFs {
    fn new() -> FuzzFs {
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

// ---------------------------------------------------------------------------------------------
// The simulated kernel.

const CONN: u32 = 777;
const EPOCH: u64 = 3;
/// Uniques of the sentinel and check requests; fuzzed uniques are kept below.
const SENTINEL_BASE: u64 = 0xF000_0000_0000_0000;

type Sim = sim::Sim<FuzzFs>;

/// A session serving [`FuzzFs`] over the simulated kernel; automatic uniques (sentinels and checks)
/// continue after [`SENTINEL_BASE`].
fn start(dialect: DialectConfig) -> Result<Sim, TestCaseError> {
    let mut sim = Sim::builder(FuzzFs::new())
        .config(SessionConfig {
            max_write: 64 * 1024,
            ..sim::session_config(CONN, EPOCH, dialect)
        })
        .records(1 << 16)
        .timeout(Duration::from_secs(30))
        .start()
        .map_err(fail)?;
    sim.set_last_unique(SENTINEL_BASE);
    Ok(sim)
}

/// A harness error (no reply within 30 s, the session ended, a bad length field, ...) as a failure.
fn fail(e: io::Error) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

// ---------------------------------------------------------------------------------------------
// What is sent.

/// A well-formed request of a known shape (bodies hold random field values).
#[derive(Clone, Debug)]
enum Shape {
    Lookup(Vec<u8>),
    Forget(u64),
    Getattr([u8; 16]),
    Setattr(Vec<u8>),
    Statfs,
    Open(u32, [u8; 8]),
    Read(u32, u64, u64, u32),
    Write(u64, u64, Vec<u8>),
    Release(u32, [u8; 24]),
    Flush([u8; 24]),
    Fsync([u8; 16]),
    Getxattr(u32, Vec<u8>),
    Lk(u32, Vec<u8>),
    Interrupt(u64),
    BatchForget(u32, Vec<u8>),
    Init(Vec<u8>),
    /// famfs GET_FMAP / GET_DAXDEV numbers of either dialect (53..=55), with a size body.
    Famfs(u32, u32),
    /// Anything else, with a random body.
    Other(u32, Vec<u8>),
}

impl Shape {
    fn opcode_and_body(&self) -> (u32, Vec<u8>) {
        let with_nul = |n: &[u8]| {
            let mut v = n.to_vec();
            v.push(0);
            v
        };
        match self {
            Shape::Lookup(name) => (opcode::LOOKUP, with_nul(name)),
            Shape::Forget(n) => (opcode::FORGET, n.to_ne_bytes().to_vec()),
            Shape::Getattr(b) => (opcode::GETATTR, b.to_vec()),
            Shape::Setattr(b) => (opcode::SETATTR, b.clone()),
            Shape::Statfs => (opcode::STATFS, Vec::new()),
            Shape::Open(op, b) => (*op, b.to_vec()),
            Shape::Read(op, fh, offset, size) => (
                *op,
                ReadIn {
                    fh: *fh,
                    offset: *offset,
                    size: *size,
                    ..Default::default()
                }
                .to_bytes()
                .to_vec(),
            ),
            Shape::Write(fh, offset, data) => {
                let mut b = WriteIn {
                    fh: *fh,
                    offset: *offset,
                    size: data.len() as u32,
                    ..Default::default()
                }
                .to_bytes()
                .to_vec();
                b.extend_from_slice(data);
                (opcode::WRITE, b)
            }
            Shape::Release(op, b) => (*op, b.to_vec()),
            Shape::Flush(b) => (opcode::FLUSH, b.to_vec()),
            Shape::Fsync(b) => (opcode::FSYNC, b.to_vec()),
            Shape::Getxattr(size, name) => {
                let mut b = abi::GetxattrIn {
                    size: *size,
                    ..Default::default()
                }
                .to_bytes()
                .to_vec();
                b.extend_from_slice(&with_nul(name));
                (opcode::GETXATTR, b)
            }
            Shape::Lk(op, b) => (*op, b.clone()),
            Shape::Interrupt(u) => (opcode::INTERRUPT, u.to_ne_bytes().to_vec()),
            Shape::BatchForget(count, entries) => {
                let mut b = count.to_ne_bytes().to_vec();
                b.extend_from_slice(&[0; 4]);
                b.extend_from_slice(entries);
                (opcode::BATCH_FORGET, b)
            }
            Shape::Init(b) => (opcode::INIT, b.clone()),
            Shape::Famfs(op, size) => {
                let mut b = size.to_ne_bytes().to_vec();
                b.extend_from_slice(&[0; 4]);
                (*op, b)
            }
            Shape::Other(op, b) => (*op, b.clone()),
        }
    }
}

/// How a well-formed request is damaged.
#[derive(Clone, Debug)]
enum Mutation {
    None,
    /// Keep this fraction (in 1/256) of the body; the length field follows.
    Truncate(u8),
    /// The length field says this instead of the real size.
    Len(u32),
    /// The length field is off by this much.
    LenDelta(i8),
    /// `total_extlen` (in 8-byte units).
    Extlen(u16),
    /// Replace the opcode.
    Opcode(u32),
    /// Overwrite bytes at (position in 1/256 of the message, value).
    Flip(Vec<(u8, u8)>),
    /// Extra bytes after the body, counted in the length field.
    Append(Vec<u8>),
}

#[derive(Clone, Debug)]
enum Fuzz {
    /// Any bytes at all (1..=300 of them).
    Raw(Vec<u8>),
    Request {
        shape: Shape,
        nodeid: u64,
        unique: u64,
        mutation: Mutation,
    },
}

const DESTROY_REPLACEMENT: u32 = 0x7fff_0000;

impl Fuzz {
    fn bytes(&self) -> Vec<u8> {
        let mut m = match self {
            Fuzz::Raw(b) => b.clone(),
            Fuzz::Request {
                shape,
                nodeid,
                unique,
                mutation,
            } => {
                let (op, mut body) = shape.opcode_and_body();
                let mut h = InHeader {
                    len: 0,
                    opcode: op,
                    unique: *unique,
                    nodeid: *nodeid,
                    uid: 0,
                    gid: 0,
                    pid: 9,
                    ..Default::default()
                };
                let mut len_override = None;
                match mutation {
                    Mutation::Truncate(f) => body.truncate(body.len() * usize::from(*f) / 256),
                    Mutation::Len(l) => len_override = Some(*l),
                    Mutation::Extlen(e) => h.total_extlen = *e,
                    Mutation::Opcode(o) => h.opcode = *o,
                    Mutation::Append(x) => body.extend_from_slice(x),
                    Mutation::None | Mutation::LenDelta(_) | Mutation::Flip(_) => {}
                }
                let real = (InHeader::SIZE + body.len()) as u32;
                h.len = match (mutation, len_override) {
                    (_, Some(l)) => l,
                    (Mutation::LenDelta(d), _) => real.wrapping_add_signed(i32::from(*d)),
                    _ => real,
                };
                let mut m = h.to_bytes().to_vec();
                m.extend_from_slice(&body);
                if let Mutation::Flip(flips) = mutation {
                    for &(pos, val) in flips {
                        let i = m.len() * usize::from(pos) / 256;
                        m[i] = val;
                    }
                }
                m
            }
        };
        if m.is_empty() {
            // A zero-length datagram reads as the peer closing the socket: not a request.
            m.push(0);
        }
        // DESTROY ends the session (tested once at the end of every case); never fuzz it.
        if u32_at(&m, 4) == Some(opcode::DESTROY) {
            m[4..8].copy_from_slice(&DESTROY_REPLACEMENT.to_ne_bytes());
        }
        // Keep fuzzed uniques apart from the sentinels'.
        if let Some(u) = u64_at(&m, 8)
            && u >= SENTINEL_BASE
        {
            m[15] &= 0x0f;
        }
        m
    }
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    b.get(off..off + 8).map(|s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_ne_bytes(a)
    })
}

fn no_reply(op: u32) -> bool {
    matches!(
        op,
        opcode::FORGET | opcode::BATCH_FORGET | opcode::NOTIFY_REPLY | opcode::INTERRUPT
    )
}

/// The body size of a successful reply to `op`, when it is fixed (famfs opcodes excluded).
fn fixed_reply_size(op: u32) -> Option<usize> {
    match op {
        opcode::LOOKUP => Some(EntryOut::SIZE),
        opcode::GETATTR | opcode::SETATTR => Some(AttrOut::SIZE),
        opcode::OPEN | opcode::OPENDIR => Some(OpenOut::SIZE),
        opcode::STATFS => Some(Kstatfs::SIZE),
        opcode::WRITE => Some(8),
        opcode::RELEASE
        | opcode::RELEASEDIR
        | opcode::FLUSH
        | opcode::FSYNC
        | opcode::SETLK
        | opcode::SETLKW => Some(0),
        _ => None,
    }
}

fn name_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(vec![
            b"hello.txt".to_vec(),
            b"data.bin".to_vec(),
            b"sub".to_vec(),
            b"scratch".to_vec(),
            b"missing".to_vec(),
            b"user.k".to_vec(),
            Vec::new(),
        ]),
        2 => prop::collection::vec(any::<u8>(), 0..300),
    ]
}

fn nodeid_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..=6,
        1 => any::<u64>(),
    ]
}

fn unique_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 1u64..1_000_000,
        1 => Just(0u64),
        1 => any::<u64>(),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn shape_strategy() -> impl Strategy<Value = Shape> {
    let small_or_any_u64 = prop_oneof![3 => 0u64..70_000, 1 => any::<u64>()];
    let read_size = prop_oneof![3 => 0u32..70_000, 1 => any::<u32>()];
    prop_oneof![
        name_strategy().prop_map(Shape::Lookup),
        any::<u64>().prop_map(Shape::Forget),
        any::<[u8; 16]>().prop_map(Shape::Getattr),
        prop::collection::vec(any::<u8>(), 88).prop_map(Shape::Setattr),
        Just(Shape::Statfs),
        (
            prop::sample::select(vec![opcode::OPEN, opcode::OPENDIR]),
            any::<[u8; 8]>()
        )
            .prop_map(|(o, b)| Shape::Open(o, b)),
        (
            prop::sample::select(vec![opcode::READ, opcode::READDIR, opcode::READDIRPLUS]),
            any::<u64>(),
            small_or_any_u64.clone(),
            read_size
        )
            .prop_map(|(o, fh, off, size)| Shape::Read(o, fh, off, size)),
        (any::<u64>(), small_or_any_u64, bytes(5000))
            .prop_map(|(fh, off, d)| Shape::Write(fh, off, d)),
        (
            prop::sample::select(vec![opcode::RELEASE, opcode::RELEASEDIR]),
            any::<[u8; 24]>()
        )
            .prop_map(|(o, b)| Shape::Release(o, b)),
        any::<[u8; 24]>().prop_map(Shape::Flush),
        any::<[u8; 16]>().prop_map(Shape::Fsync),
        (prop_oneof![0u32..64, any::<u32>()], name_strategy())
            .prop_map(|(s, n)| Shape::Getxattr(s, n)),
        (
            prop::sample::select(vec![opcode::SETLK, opcode::SETLKW, opcode::GETLK]),
            prop::collection::vec(any::<u8>(), 48)
        )
            .prop_map(|(o, b)| Shape::Lk(o, b)),
        any::<u64>().prop_map(Shape::Interrupt),
        (prop_oneof![0u32..8, any::<u32>()], bytes(130))
            .prop_map(|(c, e)| Shape::BatchForget(c, e)),
        bytes(100).prop_map(Shape::Init),
        (53u32..=55, prop_oneof![0u32..200, any::<u32>()]).prop_map(|(o, s)| Shape::Famfs(o, s)),
        (0u32..=80, bytes(200)).prop_map(|(o, b)| Shape::Other(o, b)),
    ]
}

fn mutation_strategy() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => Just(Mutation::None),
        2 => any::<u8>().prop_map(Mutation::Truncate),
        1 => any::<u32>().prop_map(Mutation::Len),
        2 => any::<i8>().prop_map(Mutation::LenDelta),
        1 => any::<u16>().prop_map(Mutation::Extlen),
        2 => (0u32..=80).prop_map(Mutation::Opcode),
        2 => prop::collection::vec(any::<(u8, u8)>(), 1..6).prop_map(Mutation::Flip),
        1 => bytes(64).prop_map(Mutation::Append),
    ]
}

fn fuzz_strategy() -> impl Strategy<Value = Fuzz> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 1..300).prop_map(Fuzz::Raw),
        4 => (shape_strategy(), nodeid_strategy(), unique_strategy(), mutation_strategy())
            .prop_map(|(shape, nodeid, unique, mutation)| Fuzz::Request {
                shape,
                nodeid,
                unique,
                mutation,
            }),
    ]
}

/// A random INIT sent before the valid one: random body bytes, or an `InitIn` with random fields.
fn init_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        bytes(100),
        (
            prop_oneof![Just(7u32), 0u32..10, any::<u32>()],
            prop_oneof![0u32..50, any::<u32>()],
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            0usize..=64
        )
            .prop_map(|(major, minor, flags, flags2, ra, keep)| {
                let mut b = InitIn {
                    major,
                    minor,
                    max_readahead: ra,
                    flags,
                    flags2,
                    ..Default::default()
                }
                .to_bytes()
                .to_vec();
                b.truncate(keep);
                b
            }),
    ]
}

// ---------------------------------------------------------------------------------------------
// The property.

/// Send `msg` and check its replies: every reply that arrives before the following sentinel's
/// belongs to `msg`; there must be exactly the expected number. Returns the reply, if any.
fn exchange(k: &mut Sim, msg: &[u8]) -> Result<Option<Reply>, TestCaseError> {
    k.send_raw(msg).map_err(fail)?;
    let (mut got, r) = k.until_sentinel(ROOT).map_err(fail)?;
    // Served after `msg`, so INIT (if `msg` was one) is settled: before negotiation every request
    // is EIO.
    if k.session().negotiated().is_some() {
        prop_assert_eq!(
            (r.error, r.body.len()),
            (0, AttrOut::SIZE),
            "sentinel GETATTR"
        );
    } else {
        prop_assert_eq!(
            (r.error, r.wire_len()),
            (-libc::EIO, 16),
            "sentinel before INIT"
        );
    }
    let n = msg.len();
    let op = u32_at(msg, 4).unwrap_or(0);
    let unique = u64_at(msg, 8);
    let expect_reply = n >= 16 && !no_reply(op) && unique != Some(0);
    prop_assert_eq!(
        got.len(),
        usize::from(expect_reply),
        "replies to a {}-byte message (opcode {}, unique {:?}): {:?}",
        n,
        op,
        unique,
        got
    );
    let Some(r) = got.pop() else {
        return Ok(None);
    };
    prop_assert_eq!(Some(r.unique), unique);
    if r.error != 0 {
        prop_assert!(
            (-511..0).contains(&r.error),
            "error {} is not a negative errno",
            r.error
        );
        prop_assert_eq!(r.wire_len(), 16, "error reply with a body: {:?}", r);
    }
    Ok(Some(r))
}

/// One record per message of 16 bytes or more, in order: (unique, opcode, error).
fn expect_record(k: &Sim, want: &mut Vec<(u64, u32, i32)>, msg: &[u8], reply: &Option<Reply>) {
    if let (Some(u), Some(op)) = (u64_at(msg, 8), u32_at(msg, 4)) {
        want.push((u, op, reply.as_ref().map_or(0, |r| r.error)));
    }
    // The sentinel's record.
    let err = if k.session().negotiated().is_some() {
        0
    } else {
        -libc::EIO
    };
    want.push((k.last_unique(), opcode::GETATTR, err));
}

fn run_case(
    dialect: DialectConfig,
    famfs_bits: u32,
    inits: &[Vec<u8>],
    batch: &[Fuzz],
) -> Result<(), TestCaseError> {
    let mut k = start(dialect)?;
    let mut want_records = Vec::new();

    // Random INITs first: each answered exactly once; errors are header-only.
    for (i, body) in inits.iter().enumerate() {
        let h = InHeader {
            len: (InHeader::SIZE + body.len()) as u32,
            opcode: opcode::INIT,
            unique: 1 + i as u64,
            ..Default::default()
        };
        let mut msg = h.to_bytes().to_vec();
        msg.extend_from_slice(body);
        let was = k.session().negotiated().is_some();
        let r = exchange(&mut k, &msg)?.ok_or_else(|| TestCaseError::fail("INIT not answered"))?;
        let now = k.session().negotiated().is_some();
        if was {
            prop_assert_eq!(r.error, -libc::EINVAL, "a second INIT must be refused");
        }
        if r.error != 0 || was {
            prop_assert_eq!(now, was, "a refused INIT changed the negotiation");
        } else if now {
            // Negotiated: the full reply, or the 24-byte one for kernels before 7.23.
            let minor = u32_at(body, 4).unwrap_or(0);
            prop_assert_eq!(r.body.len(), if minor < 23 { 24 } else { 64 });
        } else {
            // A newer major: our major and minor only, to be followed by another INIT.
            prop_assert!(
                u32_at(body, 0).is_some_and(|m| m > 7),
                "INIT answered 0 but not negotiated"
            );
            prop_assert_eq!(r.body.len(), 64);
            prop_assert_eq!(&r.body[..8], &[7, 0, 0, 0, 45, 0, 0, 0][..]);
        }
        expect_record(&k, &mut want_records, &msg, &Some(r));
    }
    // The valid INIT (refused with EINVAL if a random one already negotiated).
    let negotiated_before = k.session().negotiated().is_some();
    let r = k
        .init_with(7, 45, OFFER_FLAGS, OFFER_FLAGS2 | famfs_bits)
        .map_err(fail)?;
    want_records.push((k.last_unique(), opcode::INIT, r.error));
    if negotiated_before {
        prop_assert_eq!(r.error, -libc::EINVAL);
        prop_assert_eq!(r.wire_len(), 16);
    } else {
        prop_assert_eq!((r.error, r.body.len()), (0, 64));
    }
    let neg = k
        .session()
        .negotiated()
        .cloned()
        .ok_or_else(|| TestCaseError::fail("not negotiated after a valid INIT"))?;

    // The batch.
    for f in batch {
        let msg = f.bytes();
        let reply = exchange(&mut k, &msg)?;
        if let Some(r) = &reply {
            let op = u32_at(&msg, 4).unwrap_or(0);
            let famfs_op = neg
                .famfs
                .is_some_and(|s| op == s.get_fmap || op == s.get_daxdev);
            if r.error == 0
                && !famfs_op
                && msg.len() >= InHeader::SIZE
                && let Some(size) = fixed_reply_size(op)
            {
                prop_assert_eq!(r.body.len(), size, "reply size of opcode {}", op);
            }
        }
        expect_record(&k, &mut want_records, &msg, &reply);
    }

    // Still serving, correctly.
    let fs = FuzzFs::new();
    let r = k.call(opcode::LOOKUP, ROOT, b"hello.txt\0").map_err(fail)?;
    prop_assert_eq!(r.error, 0);
    prop_assert_eq!(
        r.body,
        fs.entry(HELLO)
            .map(|e| e.to_bytes().to_vec())
            .unwrap_or_default()
    );
    want_records.push((k.last_unique(), opcode::LOOKUP, 0));
    let r = k
        .call(opcode::GETATTR, DATA, &GetattrIn::default().to_bytes())
        .map_err(fail)?;
    prop_assert_eq!(r.error, 0);
    let a = AttrOut::decode(&r.body, 0, 0).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!((a.attr.ino, a.attr.size), (DATA, DATA_LEN as u64));
    want_records.push((k.last_unique(), opcode::GETATTR, 0));
    let read = ReadIn {
        fh: 103,
        offset: 1000,
        size: 4096,
        ..Default::default()
    };
    let r = k.call(opcode::READ, DATA, &read.to_bytes()).map_err(fail)?;
    prop_assert_eq!(r.error, 0);
    prop_assert_eq!(&r.body[..], &fs.data[1000..5096]);
    want_records.push((k.last_unique(), opcode::READ, 0));
    if let Some(spec) = neg.famfs {
        let r = k
            .call(spec.get_fmap, HELLO, &[0, 16, 0, 0, 0, 0, 0, 0])
            .map_err(fail)?;
        prop_assert_eq!((r.error, r.body.len()), (0, 56), "GET_FMAP after the batch");
        want_records.push((k.last_unique(), spec.get_fmap, 0));
    }

    // DESTROY is answered and ends the session cleanly.
    let r = k.call(opcode::DESTROY, 0, &[]).map_err(fail)?;
    prop_assert_eq!((r.error, r.wire_len()), (0, 16));
    let end = k.wait_ended(Duration::from_secs(30));
    prop_assert!(end.is_ok(), "session did not end cleanly: {:?}", end);
    want_records.push((k.last_unique(), opcode::DESTROY, 0));

    // Records (each is handed over after its reply, so read once the session has ended): exactly one
    // per message with a readable unique, in order.
    let got: Vec<(u64, u32, i32)> = k
        .records()
        .iter()
        .map(|r| (r.unique, r.opcode, r.error))
        .collect();
    prop_assert_eq!(got, want_records);

    Ok(())
}

fn dialect_strategy() -> impl Strategy<Value = (DialectConfig, u32)> {
    prop::sample::select(vec![
        (DialectConfig::Off, 0xc00),
        (DialectConfig::RfcV2, 0x400),
        (DialectConfig::V3, 0x800),
        (DialectConfig::V3, 0),
    ])
}

proptest! {
    // The default config reads PROPTEST_CASES (256 when unset). Failures print the shrunk input;
    // nothing is written into the source tree.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn session_survives_random_and_mutated_requests(
        (dialect, famfs_bits) in dialect_strategy(),
        inits in prop::collection::vec(init_strategy(), 0..3),
        batch in prop::collection::vec(fuzz_strategy(), 1..24),
    ) {
        run_case(dialect, famfs_bits, &inits, &batch)?;
    }
}

/// Messages that once needed care, pinned: each kind of framing damage, checked with the same oracle.
#[test]
fn framing_edge_cases() {
    let mut k = start(DialectConfig::V3).unwrap();
    let init = InitIn {
        major: 7,
        minor: 45,
        flags: OFFER_FLAGS,
        flags2: OFFER_FLAGS2 | 0x800,
        ..Default::default()
    }
    .to_bytes();
    assert_eq!(k.call(opcode::INIT, 0, &init).unwrap().error, 0);
    let header = |len: u32, op: u32, unique: u64, extlen: u16| {
        InHeader {
            len,
            opcode: op,
            unique,
            nodeid: ROOT,
            total_extlen: extlen,
            ..Default::default()
        }
        .to_bytes()
        .to_vec()
    };
    // (message, expected error; None = no reply)
    let cases: Vec<(Vec<u8>, Option<i32>)> = vec![
        // Shorter than a unique: nothing to answer.
        (vec![1, 2, 3], None),
        (header(40, opcode::GETATTR, 5, 0)[..15].to_vec(), None),
        // A readable unique but a short header: EIO.
        (
            header(40, opcode::GETATTR, 5, 0)[..16].to_vec(),
            Some(-libc::EIO),
        ),
        (header(40, opcode::FORGET, 5, 0)[..20].to_vec(), None),
        // Length field disagrees with the bytes read.
        (header(41, opcode::GETATTR, 6, 0), Some(-libc::EIO)),
        (header(u32::MAX, opcode::STATFS, 7, 0), Some(-libc::EIO)),
        // Extensions longer than the request.
        (header(40, opcode::STATFS, 8, 1), Some(-libc::EIO)),
        // Unique 0 is never answered.
        (header(40, opcode::STATFS, 0, 0), None),
        // Body too short for its struct; name without NUL.
        (header(40, opcode::GETATTR, 9, 0), Some(-libc::EINVAL)),
        (
            [header(43, opcode::LOOKUP, 10, 0), b"abc".to_vec()].concat(),
            Some(-libc::EINVAL),
        ),
        // Unknown opcode.
        (header(40, 80, 11, 0), Some(-libc::ENOSYS)),
    ];
    for (msg, want) in cases {
        let r = exchange(&mut k, &msg).unwrap();
        assert_eq!(r.map(|r| r.error), want, "{msg:?}");
    }
}
