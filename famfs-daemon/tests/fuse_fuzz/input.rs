//! What the fuzz test sends: well-formed requests of known shapes with random fields ([`Shape`]),
//! damaged in one way ([`Mutation`]), or raw bytes ([`Fuzz`]); the proptest strategies producing
//! them, and random INIT bodies. DESTROY is never sent (it ends the session) and fuzzed uniques stay
//! below the harness's sentinel uniques.

use famfs_daemon::fuse::abi::{self, InHeader, InitIn, ReadIn, WriteIn, opcode};
use proptest::prelude::*;

use crate::harness::SENTINEL_BASE;

/// A well-formed request of a known shape (bodies hold random field values).
#[derive(Clone, Debug)]
pub enum Shape {
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
pub enum Mutation {
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
pub enum Fuzz {
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
    pub fn bytes(&self) -> Vec<u8> {
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

pub fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

pub fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    b.get(off..off + 8).map(|s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_ne_bytes(a)
    })
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

pub fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
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

pub fn fuzz_strategy() -> impl Strategy<Value = Fuzz> {
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
pub fn init_strategy() -> impl Strategy<Value = Vec<u8>> {
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
