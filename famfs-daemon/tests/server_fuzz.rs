//! Property test (fuzz) of the real famfs server's handlers (`server::FamfsFs` over the image the
//! server tests share, built from real log entries) through the simulated kernel
//! (`famfs_daemon::fuse::sim`), in the three dialect settings (off, RFC V2, V3): well-formed requests
//! with random node ids (the `.meta` objects 2–4, holes in the id space, ids just inside and past the
//! per-inode tables, u64::MAX), offsets and READDIR cookies near u64::MAX, READ/WRITE sizes from 0 up,
//! random names, OPEN flags and SETATTR fields, GET_FMAP on directories and unknown ids, GET_DAXDEV
//! indexes, FORGET / BATCH_FORGET counts.
//!
//! The oracle is a model of the image (its namespace, attributes and every file's bytes, updated by
//! each accepted WRITE): every request gets exactly one reply (none for the FORGETs, checked with a
//! sentinel), with the exact errno, or the exact bytes, entries or sizes the model predicts; and no
//! handler panics (a panicking worker ends the session, which fails the next request).
//!
//! Runs 20,000 cases in the normal `cargo test` (about 8 requests each); set `PROPTEST_CASES` for
//! more or fewer.

// Test code: a failed unwrap/expect/assertion is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "server_sim/fixture.rs"]
mod fixture;
mod support;

use std::{cell::RefCell, collections::HashMap};

use famfs_daemon::{
    famfs::{Image, ImageOptions},
    fuse::{
        DialectConfig,
        abi::{
            AttrOut, BatchForgetIn, EntryOut, FlushIn, ForgetIn, ForgetOne, FsyncIn, GetxattrIn,
            Kstatfs, OpenIn, ReleaseIn, SetattrIn, WriteOut, fattr, opcode,
        },
        sim::{self, fmap_size_body, parse_direntplus, parse_dirents, read_in, write_in},
    },
    server::FamfsFs,
};
use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};

use fixture::{
    DAXDEV, DIR, FILE0, HELLO, HELLO_TXT, INTERLEAVED, LOG_INO, MANY, META, ROOT, SB_INO, WIDE,
    fixture, open_fs,
};
use support::MIB;

type Sim = sim::Sim<FamfsFs>;

/// One past the largest id the per-inode tables hold: 16 + the 15,420 slots of the default log.
const TABLE_END: u64 = 16 + 15_420;
const ENOENT: i32 = -libc::ENOENT;

/// A namespace object of the model.
#[derive(Clone, Debug)]
struct Node {
    parent: u64,
    dir: bool,
    size: u64,
    perm: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    /// Directories: (name, id) in listing order.
    children: Vec<(Vec<u8>, u64)>,
    /// Files: the serialized GET_FMAP size.
    fmap_bytes: usize,
}

/// The image as the server must present it.
struct Model {
    nodes: HashMap<u64, Node>,
    data: HashMap<u64, Vec<u8>>,
}

impl Model {
    fn node(&self, id: u64) -> Option<&Node> {
        self.nodes.get(&id)
    }
    fn is_meta_file(id: u64) -> bool {
        id == SB_INO || id == LOG_INO
    }
}

/// The (GET_FMAP, GET_DAXDEV) opcodes of a famfs dialect; None when famfs mode is off.
type FamfsOps = Option<(u32, u32)>;

/// Who the requests go to: a session per dialect, all serving the same image.
struct World {
    sims: Vec<(DialectConfig, FamfsOps, Sim)>,
    model: Model,
    requests: u64,
}

#[derive(Clone, Debug)]
enum Op {
    Lookup(u64, Vec<u8>),
    Getattr(u64),
    Setattr {
        ino: u64,
        valid: u32,
        size: u64,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Open(u64, u32),
    Opendir(u64),
    Read(u64, u64, u32),
    Write(u64, u64, usize, u8),
    Flush(u64),
    Fsync(u64),
    Release(u64),
    Releasedir(u64),
    Readdir {
        ino: u64,
        cookie: u64,
        size: u32,
        plus: bool,
    },
    Statfs(u64),
    Getxattr(u64, u32),
    GetFmap(u64, u32),
    GetDaxdev(u64),
    Forget(u64, u64),
    BatchForget(Vec<(u64, u64)>),
}

fn id_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => prop::sample::select(vec![
            ROOT, META, SB_INO, LOG_INO, FILE0, INTERLEAVED, DIR, MANY, WIDE, HELLO,
        ]),
        2 => prop::sample::select(vec![
            0,
            5,
            15,
            22,
            23,
            TABLE_END - 1,
            TABLE_END,
            TABLE_END + 1,
            u64::MAX - 1,
            u64::MAX,
        ]),
        1 => any::<u64>(),
    ]
}

/// File offsets and cookies: small, around the files' sizes, near u64::MAX, anything.
fn offset_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..70 * MIB,
        1 => prop::sample::select(vec![0, 22, 23, 24, MIB - 1, MIB, 3 * MIB - 5, 64 * MIB - 1]),
        1 => (0u64..1 << 20).prop_map(|k| u64::MAX - k),
        1 => any::<u64>(),
    ]
}

/// READDIR cookies: inside the listings (at most 7 entries), just past them, near u64::MAX, anything.
fn cookie_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..10,
        1 => (0u64..4).prop_map(|k| u64::MAX - k),
        1 => any::<u64>(),
    ]
}

fn size_strategy(max: u32) -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => 0u32..8192,
        1 => 0u32..=max,
        1 => prop::sample::select(vec![0u32, 1, 24, 4095, 4096, max]),
    ]
}

fn name_strategy() -> impl Strategy<Value = Vec<u8>> {
    let known: Vec<Vec<u8>> = [
        "file0",
        "interleaved",
        "dir",
        "many",
        "wide",
        "hello.txt",
        ".meta",
        ".superblock",
        ".log",
        ".",
        "..",
        "dir/many",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    prop_oneof![
        3 => prop::sample::select(known),
        1 => prop::collection::vec(1u8..=255, 1..300),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let id = id_strategy;
    prop_oneof![
        1 => (id(), name_strategy()).prop_map(|(p, n)| Op::Lookup(p, n)),
        1 => id().prop_map(Op::Getattr),
        1 => (id(), any::<u32>(), offset_strategy(), any::<u32>(), 0u32..2000, 0u32..2000).prop_map(
            |(ino, valid, size, mode, uid, gid)| Op::Setattr {
                ino,
                valid: valid & 0xfff,
                size,
                mode,
                uid,
                gid,
            }
        ),
        1 => (id(), any::<u32>()).prop_map(|(i, f)| Op::Open(i, f)),
        1 => id().prop_map(Op::Opendir),
        3 => (id(), offset_strategy(), size_strategy(128 << 10)).prop_map(|(i, o, s)| Op::Read(i, o, s)),
        2 => (id(), offset_strategy(), 0usize..16384, any::<u8>())
            .prop_map(|(i, o, n, seed)| Op::Write(i, o, n, seed)),
        1 => id().prop_map(Op::Flush),
        1 => id().prop_map(Op::Fsync),
        1 => id().prop_map(Op::Release),
        1 => id().prop_map(Op::Releasedir),
        2 => (id(), cookie_strategy(), size_strategy(64 << 10), any::<bool>())
            .prop_map(|(ino, cookie, size, plus)| Op::Readdir { ino, cookie, size, plus }),
        1 => id().prop_map(Op::Statfs),
        1 => (id(), size_strategy(4096)).prop_map(|(i, s)| Op::Getxattr(i, s)),
        2 => (id(), size_strategy(4096)).prop_map(|(i, s)| Op::GetFmap(i, s)),
        1 => prop_oneof![Just(0u64), any::<u64>()].prop_map(Op::GetDaxdev),
        1 => (id(), any::<u64>()).prop_map(|(i, n)| Op::Forget(i, n)),
        1 => prop::collection::vec((id(), any::<u64>()), 0..8).prop_map(Op::BatchForget),
    ]
}

fn data_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn dirent_size(name: usize, plus: bool) -> usize {
    (24 + name).next_multiple_of(8) + if plus { EntryOut::SIZE } else { 0 }
}

/// Send `op` to `sim` and check the reply against the model (updating it for an accepted WRITE).
// One arm per request kind of the oracle, each a few lines; split apart they would only scatter it.
#[allow(clippy::too_many_lines)]
fn check(
    sim: &mut Sim,
    famfs: FamfsOps,
    dialect: DialectConfig,
    m: &mut Model,
    op: &Op,
) -> Result<(), TestCaseError> {
    let fail = |e: std::io::Error| TestCaseError::fail(format!("{op:?}: {e}"));
    let err = |r: &sim::Reply| r.error;
    match op {
        Op::Lookup(parent, name) => {
            let r = sim
                .call(opcode::LOOKUP, *parent, &sim::name(name))
                .map_err(fail)?;
            let want = match m.node(*parent) {
                None => Err(ENOENT),
                Some(p) if !p.dir => Err(-libc::ENOTDIR),
                Some(p) => p
                    .children
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|&(_, id)| id)
                    .ok_or(ENOENT),
            };
            match want {
                Err(e) => prop_assert_eq!(err(&r), e, "{:?}", op),
                Ok(id) => {
                    prop_assert_eq!(err(&r), 0, "{:?}", op);
                    let e = r.decode::<EntryOut>().map_err(fail)?;
                    prop_assert_eq!(
                        (e.nodeid, e.attr.ino, e.attr.size),
                        (id, id, m.nodes[&id].size)
                    );
                }
            }
        }
        Op::Getattr(ino) => {
            let r = sim
                .call(opcode::GETATTR, *ino, &sim::getattr_in())
                .map_err(fail)?;
            match m.node(*ino) {
                None => prop_assert_eq!(err(&r), ENOENT),
                Some(n) => {
                    prop_assert_eq!(err(&r), 0);
                    let a = r.decode::<AttrOut>().map_err(fail)?.attr;
                    let kind = if n.dir { libc::S_IFDIR } else { libc::S_IFREG };
                    prop_assert_eq!(
                        (a.ino, a.size, a.mode, a.uid, a.gid, a.nlink),
                        (*ino, n.size, kind | n.perm, n.uid, n.gid, n.nlink)
                    );
                }
            }
        }
        Op::Setattr {
            ino,
            valid,
            size,
            mode,
            uid,
            gid,
        } => {
            let body = SetattrIn {
                valid: *valid,
                size: *size,
                mode: *mode,
                uid: *uid,
                gid: *gid,
                ..Default::default()
            }
            .to_bytes();
            let r = sim.call(opcode::SETATTR, *ino, &body).map_err(fail)?;
            let want = match m.node(*ino) {
                None => ENOENT,
                Some(n) if valid & fattr::SIZE != 0 && *size != n.size => {
                    if n.dir {
                        -libc::EISDIR
                    } else {
                        -libc::EINVAL
                    }
                }
                Some(n)
                    if (valid & fattr::MODE != 0 && mode & 0o7777 != n.perm)
                        || (valid & fattr::UID != 0 && *uid != n.uid)
                        || (valid & fattr::GID != 0 && *gid != n.gid) =>
                {
                    -libc::EPERM
                }
                Some(_) => 0,
            };
            prop_assert_eq!(err(&r), want, "{:?}", op);
        }
        Op::Open(ino, flags) => {
            let body = OpenIn {
                flags: *flags,
                ..Default::default()
            }
            .to_bytes();
            let r = sim.call(opcode::OPEN, *ino, &body).map_err(fail)?;
            let want = match m.node(*ino) {
                None => ENOENT,
                Some(n) if n.dir => -libc::EISDIR,
                Some(_)
                    if Model::is_meta_file(*ino)
                        && (*flags as i32 & libc::O_ACCMODE) != libc::O_RDONLY =>
                {
                    -libc::EPERM
                }
                Some(_) => 0,
            };
            prop_assert_eq!(err(&r), want, "{:?}", op);
        }
        Op::Opendir(ino) => {
            let r = sim
                .call(opcode::OPENDIR, *ino, &OpenIn::default().to_bytes())
                .map_err(fail)?;
            let want = match m.node(*ino) {
                None => ENOENT,
                Some(n) if !n.dir => -libc::ENOTDIR,
                Some(_) => 0,
            };
            prop_assert_eq!(err(&r), want, "{:?}", op);
        }
        Op::Read(ino, off, size) => {
            let r = sim
                .call(opcode::READ, *ino, &read_in(0, *off, *size))
                .map_err(fail)?;
            match m.node(*ino) {
                None => prop_assert_eq!(err(&r), ENOENT),
                Some(n) if n.dir => prop_assert_eq!(err(&r), -libc::EISDIR),
                Some(n) => {
                    prop_assert_eq!(err(&r), 0, "{:?}", op);
                    let want: &[u8] = if *off >= n.size {
                        &[]
                    } else {
                        let end = n.size.min(off + u64::from(*size));
                        &m.data[ino][*off as usize..end as usize]
                    };
                    prop_assert!(
                        r.body == want,
                        "{:?}: {} bytes, {} expected",
                        op,
                        r.body.len(),
                        want.len()
                    );
                }
            }
        }
        Op::Write(ino, off, len, seed) => {
            let data = data_of(*len, *seed);
            let r = sim
                .call(opcode::WRITE, *ino, &write_in(0, *off, &data))
                .map_err(fail)?;
            let want = if Model::is_meta_file(*ino) {
                Err(-libc::EPERM)
            } else {
                match m.node(*ino) {
                    None => Err(ENOENT),
                    Some(n) if n.dir => Err(-libc::EISDIR),
                    Some(_) if data.is_empty() => Ok(0),
                    Some(n) if *off >= n.size => Err(-libc::EFBIG),
                    Some(n) => Ok((n.size - off).min(*len as u64) as usize),
                }
            };
            match want {
                Err(e) => prop_assert_eq!(err(&r), e, "{:?}", op),
                Ok(k) => {
                    prop_assert_eq!(err(&r), 0, "{:?}", op);
                    prop_assert_eq!(r.decode::<WriteOut>().map_err(fail)?.size as usize, k);
                    if k > 0 {
                        let o = *off as usize;
                        m.data.get_mut(ino).unwrap()[o..o + k].copy_from_slice(&data[..k]);
                    }
                }
            }
        }
        Op::Flush(ino) | Op::Fsync(ino) | Op::Release(ino) | Op::Releasedir(ino) => {
            let (code, body) = match op {
                Op::Flush(_) => (opcode::FLUSH, FlushIn::default().to_bytes().to_vec()),
                Op::Fsync(_) => (opcode::FSYNC, FsyncIn::default().to_bytes().to_vec()),
                Op::Release(_) => (opcode::RELEASE, ReleaseIn::default().to_bytes().to_vec()),
                _ => (opcode::RELEASEDIR, ReleaseIn::default().to_bytes().to_vec()),
            };
            let r = sim.call(code, *ino, &body).map_err(fail)?;
            prop_assert_eq!((err(&r), r.body.len()), (0, 0), "{:?}", op);
        }
        Op::Readdir {
            ino,
            cookie,
            size,
            plus,
        } => {
            let code = if *plus {
                opcode::READDIRPLUS
            } else {
                opcode::READDIR
            };
            let r = sim
                .call(code, *ino, &read_in(0, *cookie, *size))
                .map_err(fail)?;
            match m.node(*ino) {
                None => prop_assert_eq!(err(&r), ENOENT),
                Some(n) if !n.dir => prop_assert_eq!(err(&r), -libc::ENOTDIR),
                Some(n) => {
                    prop_assert_eq!(err(&r), 0, "{:?}", op);
                    let mut all: Vec<(Vec<u8>, u64)> =
                        vec![(b".".to_vec(), *ino), (b"..".to_vec(), n.parent)];
                    all.extend(n.children.iter().cloned());
                    let mut want = Vec::new();
                    let mut used = 0usize;
                    for (k, (name, id)) in all
                        .iter()
                        .enumerate()
                        .skip(usize::try_from(*cookie).unwrap_or(usize::MAX))
                    {
                        let need = dirent_size(name.len(), *plus);
                        if used + need > *size as usize {
                            break;
                        }
                        used += need;
                        want.push((name.clone(), *id, k as u64 + 1));
                    }
                    let got: Vec<(Vec<u8>, u64, u64)> = if *plus {
                        parse_direntplus(&r.body)
                            .map_err(fail)?
                            .into_iter()
                            .map(|d| (d.dirent.name.into_bytes(), d.dirent.ino, d.dirent.off))
                            .collect()
                    } else {
                        parse_dirents(&r.body)
                            .map_err(fail)?
                            .into_iter()
                            .map(|d| (d.name.into_bytes(), d.ino, d.off))
                            .collect()
                    };
                    prop_assert_eq!(got, want, "{:?}", op);
                    prop_assert_eq!(r.body.len(), used);
                }
            }
        }
        Op::Statfs(ino) => {
            let r = sim.call(opcode::STATFS, *ino, &[]).map_err(fail)?;
            prop_assert_eq!((err(&r), r.body.len()), (0, Kstatfs::SIZE));
        }
        Op::Getxattr(ino, size) => {
            let mut body = GetxattrIn {
                size: *size,
                ..Default::default()
            }
            .to_bytes()
            .to_vec();
            body.extend_from_slice(b"user.x\0");
            let r = sim.call(opcode::GETXATTR, *ino, &body).map_err(fail)?;
            let want = if m.node(*ino).is_some() {
                -libc::ENODATA
            } else {
                ENOENT
            };
            prop_assert_eq!(err(&r), want, "{:?}", op);
        }
        Op::GetFmap(ino, size) => {
            let Some((get_fmap, _)) = famfs else {
                // Famfs opcodes are not famfs without the dialect: 53 is COPY_FILE_RANGE_64.
                return Ok(());
            };
            let body = fmap_size_body(*size);
            let v2 = dialect == DialectConfig::RfcV2;
            let r = sim
                .call(get_fmap, *ino, if v2 { &body[..] } else { &[] })
                .map_err(fail)?;
            match m.node(*ino) {
                None => prop_assert_eq!(err(&r), -libc::EINVAL),
                Some(n) if n.dir => prop_assert_eq!(err(&r), ENOENT),
                Some(n) => {
                    prop_assert_eq!(err(&r), 0, "{:?}", op);
                    let limit = if v2 { *size as usize } else { 4096 };
                    if n.fmap_bytes <= limit {
                        prop_assert_eq!(r.body.len(), n.fmap_bytes, "{:?}", op);
                    } else {
                        prop_assert_eq!(&r.body[..], &(n.fmap_bytes as u32).to_ne_bytes()[..]);
                    }
                }
            }
        }
        Op::GetDaxdev(index) => {
            let Some((_, get_daxdev)) = famfs else {
                return Ok(());
            };
            let r = sim.call(get_daxdev, *index, &[]).map_err(fail)?;
            if *index == 0 {
                prop_assert_eq!((err(&r), r.body.len()), (0, 280));
            } else {
                prop_assert_eq!(err(&r), -libc::EINVAL);
            }
        }
        Op::Forget(ino, n) => {
            sim.request(opcode::FORGET, *ino, &ForgetIn { nlookup: *n }.to_bytes())
                .map_err(fail)?;
            sim.expect_no_reply(ROOT).map_err(fail)?;
        }
        Op::BatchForget(list) => {
            let mut body = BatchForgetIn {
                count: list.len() as u32,
                ..Default::default()
            }
            .to_bytes()
            .to_vec();
            for &(nodeid, nlookup) in list {
                body.extend_from_slice(&ForgetOne { nodeid, nlookup }.to_bytes());
            }
            sim.request(opcode::BATCH_FORGET, 0, &body).map_err(fail)?;
            sim.expect_no_reply(ROOT).map_err(fail)?;
        }
    }
    Ok(())
}

/// The model of the fixture image: attributes and listings as the fixture made them (the
/// synthesized objects' attributes as the first GETATTR reports them), every file's bytes.
fn model(f: &fixture::Fixture, sim: &mut Sim) -> Model {
    // As the server sees it: this host is the master (`.meta/.log`'s mode depends on the role).
    let img = Image::open_with(
        &f.path,
        &ImageOptions {
            writable: false,
            host_uuid: Some(support::image::HOST),
            ..Default::default()
        },
    )
    .unwrap();
    let mut nodes = HashMap::new();
    let ns = img.namespace();
    for i in ns.iter() {
        let (size, fmap_bytes) = match i.fmap() {
            Some(fm) => (
                i.size(),
                famfs_daemon::server::volume::fmap_wire_size(fm).0 as usize,
            ),
            None => (0, 0),
        };
        nodes.insert(
            i.id,
            Node {
                parent: i.parent,
                dir: i.is_dir(),
                size,
                perm: i.mode & 0o7777,
                uid: i.uid,
                gid: i.gid,
                nlink: 1,
                children: ns
                    .children(i.id)
                    .iter()
                    .map(|(n, id)| (n.to_vec(), *id))
                    .collect(),
                fmap_bytes,
            },
        );
    }
    // nlink: 2 + subdirectories (the root is nobody's subdirectory, though its parent is itself).
    let dir_parents: Vec<u64> = ns
        .iter()
        .filter(|i| i.is_dir() && i.id != ROOT)
        .map(|i| i.parent)
        .collect();
    for (id, n) in nodes.iter_mut().filter(|(_, n)| n.dir) {
        n.nlink = 2 + dir_parents.iter().filter(|&&p| p == *id).count() as u32;
    }
    // Exact facts of the fixture, so the model is not merely what the server says.
    let hello = &nodes[&HELLO];
    assert_eq!(
        (hello.size, hello.perm, hello.parent),
        (HELLO_TXT.len() as u64, 0o644, ROOT)
    );
    assert_eq!(
        (nodes[&DIR].perm, nodes[&DIR].uid, nodes[&DIR].gid),
        (0o750, 7, 8)
    );
    let names = |id: u64| -> Vec<String> {
        nodes[&id]
            .children
            .iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect()
    };
    let mut root = names(ROOT);
    root.sort();
    assert_eq!(root, [".meta", "dir", "file0", "hello.txt", "interleaved"]);
    assert_eq!(names(DIR), ["many", "wide"]);
    assert_eq!(names(META), [".superblock", ".log"]);
    assert_eq!(nodes.len(), 10);
    // Every file's bytes, read through the format library (not the server).
    let mut data = HashMap::new();
    for (&id, n) in &nodes {
        if !n.dir {
            let mut b = vec![0u8; n.size as usize];
            assert_eq!(img.read_file(id, 0, &mut b).unwrap(), b.len());
            data.insert(id, b);
        }
    }
    assert!(data[&FILE0] == f.file0 && data[&MANY] == f.many && data[&WIDE] == f.wide);
    // The server agrees on the root's attributes (nlink counts `.meta` and `dir`).
    let r = sim.call(opcode::GETATTR, ROOT, &sim::getattr_in()).unwrap();
    assert_eq!(nodes[&ROOT].nlink, 4);
    assert_eq!(r.decode::<AttrOut>().unwrap().attr.nlink, 4);
    Model { nodes, data }
}

#[test]
fn famfs_server_handlers_answer_random_requests_exactly() {
    let f = fixture();
    let dialects: [(DialectConfig, u32, FamfsOps); 3] = [
        (DialectConfig::Off, 0, None),
        (DialectConfig::RfcV2, 0x400, Some((53, 54))),
        (DialectConfig::V3, 0x800, Some((54, 55))),
    ];
    let mut sims = Vec::new();
    for (d, bit, ops) in dialects {
        let mut s = Sim::builder(open_fs(&f, Some(DAXDEV)))
            .config(sim::session_config(99, 1, d))
            .start()
            .unwrap();
        assert_eq!(s.init_offer(bit).unwrap().flags2 & bit, bit);
        sims.push((d, ops, s));
    }
    let model = model(&f, &mut sims[0].2);
    let world = RefCell::new(World {
        sims,
        model,
        requests: 0,
    });
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (0usize..3, prop::collection::vec(op_strategy(), 1..16));
    let t = std::time::Instant::now();
    let result = runner.run(&strategy, |(k, ops)| {
        let mut w = world.borrow_mut();
        let World {
            sims,
            model,
            requests,
        } = &mut *w;
        let (d, famfs, sim) = &mut sims[k];
        for op in &ops {
            check(sim, *famfs, *d, model, op)?;
            *requests += 1;
        }
        // Still serving: a sentinel.
        let r = sim
            .call(opcode::GETATTR, ROOT, &sim::getattr_in())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(r.error, 0);
        Ok(())
    });
    let mut w = world.into_inner();
    println!(
        "{cases} cases, {} requests in {:.1} s",
        w.requests,
        t.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    // Every session still runs, ends cleanly, and no request was malformed.
    for (d, _, s) in &mut w.sims {
        assert!(s.is_running(), "{d:?}");
        assert_eq!(s.session().stats().malformed(), 0, "{d:?}");
        s.stop().unwrap();
    }
}
