//! The famfs FUSE server (`server::FamfsFs`) over a simulated kernel: one end of a
//! `socketpair(AF_UNIX, SOCK_SEQPACKET)` plays `/dev/fuse` while a `Session` serves a real famfs image
//! built with the format library from real log entries. For each dialect (off, rfc-v2, v3): INIT with
//! and without the famfs bits, the namespace and data opcodes with exact replies, GET_FMAP (byte-exact
//! against the protocol spec's 56- and 104-byte examples, RFC V2's needed-size retry, V3's EINVAL),
//! GET_DAXDEV, ENOSYS for everything else, malformed requests, the client-role refresh with its
//! invalidation notifications, and no heap allocation per hot-path request. No root needed.

mod server_support;

use std::path::{Path, PathBuf};

use famfs_daemon::{
    famfs::{Fmap, Image},
    fuse::{
        DialectConfig,
        abi::{
            self, AttrOut, EntryOut, GetattrIn, InHeader, Kstatfs, OpenIn, OpenOut, ReleaseIn,
            SetattrIn, WriteIn, WriteOut, fattr, init_flags, opcode,
        },
        dt,
        sim::{
            self, Dirent, FMAP_EXAMPLE_INTERLEAVED, FMAP_EXAMPLE_SIMPLE, batch_forget_in,
            fmap_size_body, forget_in, getattr_in, getxattr_in, hex, parse_direntplus,
            parse_dirents, read_in, write_in,
        },
    },
    join::{Catalog, FileInfo},
    server::{FamfsFs, ServerConfig},
};
use server_support::{self as sup, MIB, MIB2, ext};

/// Counts heap allocations per thread (for the no-allocation-per-request check).
#[global_allocator]
static GLOBAL: sim::CountingAlloc = sim::CountingAlloc;

// ---------------------------------------------------------------------------------------------
// The image: every object comes from a real log entry (inode id = 16 + log index).

const ROOT: u64 = 1;
const META: u64 = 2;
const SB_INO: u64 = 3;
const LOG_INO: u64 = 4;
/// Entry 0: `file0`, 1 MiB, uid/gid 1000, mode 0644, allocated at the first free unit (0xA00000).
const FILE0: u64 = 16;
/// Entry 1: `interleaved`, 3 MiB over 2 strips at 0x8600000 and 0x2600000, chunk 2 MiB.
const INTERLEAVED: u64 = 17;
/// Entry 2: directory `dir` (0750).
const DIR: u64 = 18;
/// Entry 3: `dir/many`, 16 simple extents of 2 MiB with gaps between them.
const MANY: u64 = 19;
/// Entry 4: `dir/wide`, interleaved over 16 strips.
const WIDE: u64 = 20;
/// Entry 5: `hello.txt`.
const HELLO: u64 = 21;

const HELLO_TXT: &[u8] = b"hello, famfs over FUSE\n";
const MANY_SIZE: u64 = 16 * MIB2 - 100;
const WIDE_SIZE: u64 = 32 * MIB2;
const DAXDEV: &str = "/dev/dax0.0";

fn many_extents() -> Vec<famfs_daemon::famfs::Extent> {
    // Every other 2 MiB unit from 256 MiB: not contiguous, so reads cross extent boundaries.
    (0..16u64)
        .map(|k| ext(0x1000_0000 + k * 2 * MIB2, MIB2))
        .collect()
}

fn wide_strips() -> Vec<famfs_daemon::famfs::Extent> {
    (0..16u64)
        .map(|k| ext(0x4000_0000 + k * 4 * MIB2, 2 * MIB2))
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    many: Vec<u8>,
    wide: Vec<u8>,
    file0: Vec<u8>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut img) = sup::mkfs(dir.path(), "famfs.img", 4 * sup::GIB);
    assert_eq!(
        img.creat("file0", MIB, 0o644, 1000, 1000, None).unwrap(),
        FILE0
    );
    let inter = Fmap::Interleaved {
        chunk_size: MIB2,
        strips: vec![ext(0x860_0000, MIB2), ext(0x260_0000, MIB2)],
    };
    assert_eq!(
        img.creat_with_fmap("interleaved", 3 * MIB, 0o644, 1000, 1000, &inter)
            .unwrap(),
        INTERLEAVED
    );
    assert_eq!(img.mkdir("dir", 0o750, 7, 8, false).unwrap(), DIR);
    assert_eq!(
        img.creat_with_fmap(
            "dir/many",
            MANY_SIZE,
            0o600,
            0,
            0,
            &Fmap::Simple(many_extents())
        )
        .unwrap(),
        MANY
    );
    let wide = Fmap::Interleaved {
        chunk_size: MIB2,
        strips: wide_strips(),
    };
    assert_eq!(
        img.creat_with_fmap("dir/wide", WIDE_SIZE, 0o644, 0, 0, &wide)
            .unwrap(),
        WIDE
    );
    assert_eq!(sup::put(&mut img, "hello.txt", HELLO_TXT), HELLO);
    let many = sup::pattern(MANY_SIZE as usize, 3);
    img.write_file(MANY, 0, &many).unwrap();
    let wide_data = sup::pattern(WIDE_SIZE as usize, 9);
    img.write_file(WIDE, 0, &wide_data).unwrap();
    let file0 = sup::pattern(MIB as usize, 5);
    img.write_file(FILE0, 0, &file0).unwrap();
    Fixture {
        _dir: dir,
        path,
        many,
        wide: wide_data,
        file0,
    }
}

fn open_fs(f: &Fixture, daxdev: Option<&str>) -> FamfsFs {
    FamfsFs::open(
        &f.path,
        &ServerConfig {
            daxdev: daxdev.map(PathBuf::from),
            system_uuid_path: Some(sup::uuid_file(f._dir.path())),
            ..Default::default()
        },
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The simulated kernel (`famfs_daemon::fuse::sim`) with this file's session settings.

type Sim = sim::Sim<FamfsFs>;

const CONN: u32 = 77;
const EPOCH: u64 = 5;
/// What the session accepts of the simulated kernel's offer: ASYNC_READ, BIG_WRITES,
/// PARALLEL_DIROPS, MAX_PAGES, INIT_EXT, and the server's DO_READDIRPLUS and READDIRPLUS_AUTO.
const WANT_FLAGS: u32 = 0x4044_6021;

fn start(fs: FamfsFs, dialect: DialectConfig) -> Sim {
    Sim::builder(fs)
        .config(sim::session_config(CONN, EPOCH, dialect))
        .records(4096)
        .start()
        .unwrap()
}

/// Typed requests: the decoded reply, or the reply's error.
trait Ops {
    fn lookup(&mut self, parent: u64, name: &str) -> Result<EntryOut, i32>;
    fn getattr(&mut self, ino: u64) -> Result<abi::Attr, i32>;
    fn read(&mut self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, i32>;
    fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, i32>;
    fn readdir(&mut self, ino: u64, offset: u64, size: u32) -> Vec<Dirent>;
}

impl Ops for Sim {
    fn lookup(&mut self, parent: u64, name: &str) -> Result<EntryOut, i32> {
        let r = self.call(opcode::LOOKUP, parent, &sim::name(name)).unwrap();
        if r.error != 0 {
            assert!(r.body.is_empty(), "an error reply is the header alone");
            return Err(r.error);
        }
        Ok(r.decode::<EntryOut>().unwrap())
    }

    fn getattr(&mut self, ino: u64) -> Result<abi::Attr, i32> {
        let r = self.call(opcode::GETATTR, ino, &getattr_in()).unwrap();
        if r.error != 0 {
            return Err(r.error);
        }
        Ok(r.decode::<AttrOut>().unwrap().attr)
    }

    fn read(&mut self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, i32> {
        let r = self
            .call(opcode::READ, ino, &read_in(0, offset, size))
            .unwrap();
        if r.error != 0 {
            return Err(r.error);
        }
        Ok(r.body)
    }

    fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, i32> {
        let r = self
            .call(opcode::WRITE, ino, &write_in(0, offset, data))
            .unwrap();
        if r.error != 0 {
            return Err(r.error);
        }
        Ok(r.decode::<WriteOut>().unwrap().size)
    }

    fn readdir(&mut self, ino: u64, offset: u64, size: u32) -> Vec<Dirent> {
        let r = self
            .call(opcode::READDIR, ino, &read_in(0, offset, size))
            .unwrap();
        assert_eq!(r.error, 0);
        parse_dirents(&r.body).unwrap()
    }
}
/// The serialized fmap the server must send for a simple file: header + extents.
fn simple_fmap_bytes(size: u64, exts: &[(u64, u64)]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&[0, 0, 1, 0]);
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&(exts.len() as u32).to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&size.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    for &(off, len) in exts {
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&off.to_le_bytes());
        v.extend_from_slice(&len.to_le_bytes());
    }
    v
}

fn interleaved_fmap_bytes(size: u64, chunk: u32, strips: &[(u64, u64)]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&[0, 0, 1, 0]);
    v.extend_from_slice(&1u32.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&size.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&(strips.len() as u32).to_le_bytes());
    v.extend_from_slice(&chunk.to_le_bytes());
    v.extend_from_slice(&size.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    for &(off, len) in strips {
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&off.to_le_bytes());
        v.extend_from_slice(&len.to_le_bytes());
    }
    v
}

/// (dialect, its famfs INIT bit in flags2, its (GET_FMAP, GET_DAXDEV) opcodes).
type DialectCase = (DialectConfig, u32, Option<(u32, u32)>);

const DIALECTS: [DialectCase; 3] = [
    (DialectConfig::Off, 0, None),
    (DialectConfig::RfcV2, 0x400, Some((53, 54))),
    (DialectConfig::V3, 0x800, Some((54, 55))),
];

// ---------------------------------------------------------------------------------------------

#[test]
fn init_with_and_without_famfs_flags_per_dialect() {
    let f = fixture();
    for (dialect, bit, ops) in DIALECTS {
        for offered in [0u32, 0xc00] {
            let ctx = format!("{dialect} offered {offered:#x}");
            let mut sim = start(open_fs(&f, Some(DAXDEV)), dialect);
            let out = sim.init_offer(offered).unwrap();
            assert_eq!(out.flags, WANT_FLAGS, "{ctx}");
            let want2 = if offered == 0 { 0 } else { bit };
            assert_eq!(out.flags2, want2, "{ctx}");
            assert_eq!((out.major, out.minor, out.max_write), (7, 45, 1 << 20));
            let n = sim.session().negotiated().unwrap();
            let expect = if offered == 0 { None } else { ops };
            assert_eq!(
                n.get_fmap_opcode().zip(n.get_daxdev_opcode()),
                expect,
                "{ctx}"
            );
            assert!(n.has(init_flags::DO_READDIRPLUS));
            // The filesystem serves either way.
            assert_eq!(sim.getattr(ROOT).unwrap().ino, ROOT);
        }
    }
}

#[test]
fn namespace_opcodes_in_every_dialect() {
    let f = fixture();
    for (dialect, bit, _) in DIALECTS {
        let ctx = dialect.to_string();
        let mut sim = start(open_fs(&f, Some(DAXDEV)), dialect);
        sim.init_offer(bit).unwrap();

        // LOOKUP: entry with nodeid = st_ino = inode id; missing names are an ENOENT error.
        let e = sim.lookup(ROOT, "file0").unwrap();
        assert_eq!(
            (e.nodeid, e.generation, e.attr.ino),
            (FILE0, 1, FILE0),
            "{ctx}"
        );
        assert_eq!((e.entry_valid, e.attr_valid), (30, 30));
        let a = e.attr;
        assert_eq!(
            (a.size, a.blocks, a.mode, a.nlink, a.uid, a.gid, a.blksize),
            (MIB, MIB2 / 512, 0o100644, 1, 1000, 1000, 2 << 20),
            "{ctx}"
        );
        assert_eq!(a.atime, a.mtime);
        assert_eq!(sim.lookup(ROOT, "missing"), Err(-libc::ENOENT));
        assert_eq!(sim.lookup(FILE0, "x"), Err(-libc::ENOTDIR));
        assert_eq!(sim.lookup(999_999, "x"), Err(-libc::ENOENT));
        let d = sim.lookup(ROOT, "dir").unwrap();
        assert_eq!(
            (d.nodeid, d.attr.mode, d.attr.nlink, d.attr.uid, d.attr.gid),
            (DIR, 0o40750, 2, 7, 8)
        );
        assert_eq!(sim.lookup(DIR, "many").unwrap().attr.size, MANY_SIZE);
        let l = sim.lookup(META, ".log").unwrap();
        assert_eq!(
            (l.nodeid, l.attr.size, l.attr.mode),
            (LOG_INO, 0x80_0000, 0o100644)
        );
        assert_eq!(sim.lookup(META, ".superblock").unwrap().attr.mode, 0o100444);
        assert_eq!(sim.fs().lookup_count(FILE0), 1);
        assert_eq!(sim.fs().lookup_count(DIR), 1);

        // GETATTR: stable, size never changes; root nlink = 2 + (.meta, dir).
        let r = sim.getattr(ROOT).unwrap();
        assert_eq!((r.ino, r.mode, r.nlink, r.size), (ROOT, 0o40755, 4, 0));
        assert_eq!(sim.getattr(FILE0).unwrap(), a);
        assert_eq!(sim.getattr(123_456), Err(-libc::ENOENT));

        // READDIR: ".", "..", then children in log order; offset k resumes after entry k.
        let all = sim.readdir(ROOT, 0, 4096);
        let want: Vec<Dirent> = [
            (ROOT, ".", dt::DIR),
            (ROOT, "..", dt::DIR),
            (META, ".meta", dt::DIR),
            (FILE0, "file0", dt::REG),
            (INTERLEAVED, "interleaved", dt::REG),
            (DIR, "dir", dt::DIR),
            (HELLO, "hello.txt", dt::REG),
        ]
        .iter()
        .enumerate()
        .map(|(i, &(ino, n, t))| Dirent::new(ino, i as u64 + 1, t, n))
        .collect();
        assert_eq!(all, want, "{ctx}");
        assert_eq!(sim.readdir(ROOT, 3, 4096), want[3..].to_vec());
        assert_eq!(sim.readdir(ROOT, 7, 4096), vec![]);
        // A small buffer: whole entries only (24 + name, padded to 8).
        assert_eq!(sim.readdir(ROOT, 0, 96), want[..3].to_vec());
        assert_eq!(sim.readdir(ROOT, 0, 95), want[..2].to_vec());
        assert_eq!(
            sim.readdir(DIR, 0, 4096)
                .into_iter()
                .map(|d| (d.ino, d.name))
                .collect::<Vec<_>>(),
            vec![
                (DIR, ".".into()),
                (ROOT, "..".into()),
                (MANY, "many".into()),
                (WIDE, "wide".into())
            ]
        );
        let r = sim
            .call(opcode::READDIR, FILE0, &read_in(0, 0, 4096))
            .unwrap();
        assert_eq!(r.error, -libc::ENOTDIR);

        // READDIRPLUS: attributes inline and a lookup reference per real entry.
        let before = sim.fs().lookup_count(MANY);
        let r = sim
            .call(opcode::READDIRPLUS, DIR, &read_in(0, 0, 4096))
            .unwrap();
        assert_eq!(r.error, 0);
        assert_eq!(
            parse_direntplus(&r.body)
                .unwrap()
                .into_iter()
                .map(|p| (
                    p.entry.nodeid,
                    p.entry.attr.ino,
                    p.dirent.off,
                    p.dirent.typ,
                    p.dirent.name,
                    p.entry.attr.size
                ))
                .collect::<Vec<_>>(),
            vec![
                (0, DIR, 1, dt::DIR, ".".into(), 0),
                (0, ROOT, 2, dt::DIR, "..".into(), 0),
                (MANY, MANY, 3, dt::REG, "many".into(), MANY_SIZE),
                (WIDE, WIDE, 4, dt::REG, "wide".into(), WIDE_SIZE),
            ]
        );
        assert_eq!(sim.fs().lookup_count(MANY), before + 1);
        // FORGET and BATCH_FORGET drop references; no reply is sent for either.
        sim.request(opcode::FORGET, MANY, &forget_in(1)).unwrap();
        let bf = batch_forget_in(&[(FILE0, 1), (WIDE, 1)]);
        sim.request(opcode::BATCH_FORGET, 0, &bf).unwrap();
        // The next reply proves the forgets were handled (one worker, in order).
        sim.getattr(ROOT).unwrap();
        assert_eq!(
            (
                sim.fs().lookup_count(MANY),
                sim.fs().lookup_count(FILE0),
                sim.fs().lookup_count(WIDE)
            ),
            (before, 0, 0)
        );

        // OPENDIR / OPEN type checks; RELEASEDIR / FLUSH / RELEASE succeed.
        let open = OpenIn {
            flags: libc::O_RDWR as u32,
            ..Default::default()
        }
        .to_bytes();
        assert_eq!(sim.call(opcode::OPEN, FILE0, &open).unwrap().error, 0);
        assert_eq!(
            sim.call(opcode::OPEN, DIR, &open).unwrap().error,
            -libc::EISDIR
        );
        assert_eq!(
            sim.call(opcode::OPENDIR, FILE0, &open).unwrap().error,
            -libc::ENOTDIR
        );
        let od = sim.call(opcode::OPENDIR, DIR, &open).unwrap();
        assert_eq!((od.error, od.body.len()), (0, OpenOut::SIZE));
        let rel = ReleaseIn::default().to_bytes();
        assert_eq!(sim.call(opcode::RELEASEDIR, DIR, &rel).unwrap().error, 0);
        assert_eq!(sim.call(opcode::RELEASE, FILE0, &rel).unwrap().error, 0);

        // STATFS from the device size and the allocator: 4 GiB = 2048 units; used = 5 (superblock
        // + log) + file0 1 + interleaved 2 + many 16 + wide 16 × 2 + hello 1 = 57.
        let r = sim.call(opcode::STATFS, ROOT, &[]).unwrap();
        assert_eq!(r.error, 0);
        let s = Kstatfs::decode(&r.body, 0, 0).unwrap();
        assert_eq!(
            (s.blocks, s.bfree, s.bavail, s.bsize, s.frsize, s.namelen),
            (2048, 2048 - 57, 2048 - 57, 2 << 20, 2 << 20, 79)
        );
        assert_eq!((s.files, s.ffree), (15_420 + 15, 15_420 - 6));

        // GETXATTR: nothing stored.
        let x = getxattr_in(64, b"user.anything");
        assert_eq!(
            sim.call(opcode::GETXATTR, FILE0, &x).unwrap().error,
            -libc::ENODATA
        );

        // SETATTR: size changes refused; the same size and time updates are accepted unchanged.
        let set = |valid: u32, size: u64, mode: u32| {
            SetattrIn {
                valid,
                size,
                mode,
                ..Default::default()
            }
            .to_bytes()
        };
        assert_eq!(
            sim.call(opcode::SETATTR, FILE0, &set(fattr::SIZE, 0, 0))
                .unwrap()
                .error,
            -libc::EINVAL
        );
        assert_eq!(
            sim.call(opcode::SETATTR, FILE0, &set(fattr::SIZE, 2 * MIB, 0))
                .unwrap()
                .error,
            -libc::EINVAL
        );
        let r = sim
            .call(
                opcode::SETATTR,
                FILE0,
                &set(fattr::SIZE | fattr::MTIME_NOW, MIB, 0),
            )
            .unwrap();
        assert_eq!(r.error, 0);
        assert_eq!(AttrOut::decode(&r.body, 0, 0).unwrap().attr, a);
        assert_eq!(
            sim.call(opcode::SETATTR, FILE0, &set(fattr::MODE, 0, 0o600))
                .unwrap()
                .error,
            -libc::EPERM
        );
        assert_eq!(sim.getattr(FILE0).unwrap().size, MIB);

        // Everything else is ENOSYS; famfs opcodes only with the famfs bit negotiated.
        for op in [
            opcode::MKDIR,
            opcode::UNLINK,
            opcode::CREATE,
            opcode::RENAME,
            99,
            200,
        ] {
            let r = sim.call(op, ROOT, &[0u8; 64]).unwrap();
            assert_eq!(
                (r.error, r.body.len()),
                (-libc::ENOSYS, 0),
                "{ctx} opcode {op}"
            );
        }
        if bit == 0 {
            for op in [53, 54, 55] {
                let r = sim.call(op, FILE0, &fmap_size_body(4096)).unwrap();
                assert_eq!(r.error, -libc::ENOSYS, "{ctx} opcode {op}");
            }
        }
    }
}

#[test]
fn read_and_write_through_the_extents() {
    let f = fixture();
    let mut sim = start(open_fs(&f, None), DialectConfig::Off);
    sim.init_offer(0).unwrap();
    // Simple file, whole and partial; past EOF is empty.
    assert_eq!(sim.read(HELLO, 0, 4096).unwrap(), HELLO_TXT);
    assert_eq!(sim.read(HELLO, 7, 5).unwrap(), &HELLO_TXT[7..12]);
    assert_eq!(sim.read(HELLO, 1000, 10).unwrap(), b"");
    // 16 non-contiguous extents: reads across each boundary.
    for k in 1..16u64 {
        let off = k * MIB2 - 100;
        assert_eq!(
            sim.read(MANY, off, 300).unwrap(),
            &f.many[off as usize..off as usize + 300],
            "extent boundary {k}"
        );
    }
    // The tail: cut at fm_size.
    let tail = sim.read(MANY, MANY_SIZE - 50, 4096).unwrap();
    assert_eq!(tail, &f.many[(MANY_SIZE - 50) as usize..]);
    // Interleaved over 16 strips: chunk boundaries, and a whole 1 MiB read.
    for c in [1u64, 15, 16, 17, 31] {
        let off = c * MIB2 - 10;
        assert_eq!(
            sim.read(WIDE, off, 20).unwrap(),
            &f.wide[off as usize..off as usize + 20]
        );
    }
    // (Replies stay under the socket's 208 KiB message limit; a real kernel takes 1 MiB.)
    let k128 = 128 * 1024;
    assert_eq!(
        sim.read(WIDE, 17 * MIB2 - k128 / 2, k128 as u32).unwrap(),
        &f.wide[(17 * MIB2 - k128 / 2) as usize..(17 * MIB2 + k128 / 2) as usize]
    );
    for off in (0..MIB).step_by(k128 as usize) {
        assert_eq!(
            sim.read(FILE0, off, k128 as u32).unwrap(),
            &f.file0[off as usize..(off + k128) as usize]
        );
    }
    assert_eq!(sim.read(DIR, 0, 10), Err(-libc::EISDIR));
    assert_eq!(sim.read(555, 0, 10), Err(-libc::ENOENT));

    // WRITE within the file; crossing EOF is cut at EOF; at or past EOF is EFBIG.
    assert_eq!(sim.write(HELLO, 0, b"HELLO").unwrap(), 5);
    let n = HELLO_TXT.len() as u64;
    assert_eq!(sim.write(HELLO, n - 3, b"ABCDEFG").unwrap(), 3);
    assert_eq!(sim.write(HELLO, n, b"x"), Err(-libc::EFBIG));
    assert_eq!(sim.write(HELLO, n + 100, b"x"), Err(-libc::EFBIG));
    let mut want = HELLO_TXT.to_vec();
    want[..5].copy_from_slice(b"HELLO");
    want[n as usize - 3..].copy_from_slice(b"ABC");
    assert_eq!(sim.read(HELLO, 0, 4096).unwrap(), want);
    assert_eq!(sim.getattr(HELLO).unwrap().size, n, "size never changes");
    // A write across an extent boundary of `many`.
    let data = sup::pattern(5000, 77);
    assert_eq!(sim.write(MANY, 3 * MIB2 - 2500, &data).unwrap(), 5000);
    assert_eq!(sim.read(MANY, 3 * MIB2 - 2500, 5000).unwrap(), data);
    // FLUSH makes it durable (msync); the bytes are in the image where the fmap says.
    let fl = abi::FlushIn::default().to_bytes();
    assert_eq!(sim.call(opcode::FLUSH, MANY, &fl).unwrap().error, 0);
    assert_eq!(sim.call(opcode::FSYNC, HELLO, &[0u8; 16]).unwrap().error, 0);
    sim.stop().unwrap();
    let img = Image::open(&f.path, false).unwrap();
    let mut got = vec![0u8; 5000];
    img.read_file(MANY, 3 * MIB2 - 2500, &mut got).unwrap();
    assert_eq!(got, data);
    let mut got = vec![0u8; n as usize];
    img.read_file(HELLO, 0, &mut got).unwrap();
    assert_eq!(got, want);
    // The records carry the transferred bytes.
    let recs = sim.records();
    let writes: Vec<(u64, u32, i32)> = recs
        .iter()
        .filter(|r| r.opcode == opcode::WRITE)
        .map(|r| (r.nodeid, r.io_bytes, r.error))
        .collect();
    assert_eq!(
        writes,
        vec![
            (HELLO, 5, 0),
            (HELLO, 3, 0),
            (HELLO, 0, -libc::EFBIG),
            (HELLO, 0, -libc::EFBIG),
            (MANY, 5000, 0)
        ]
    );
}

#[test]
fn read_only_server_refuses_writes() {
    let f = fixture();
    let fs = FamfsFs::open(
        &f.path,
        &ServerConfig {
            read_only: true,
            system_uuid_path: Some(sup::uuid_file(f._dir.path())),
            ..Default::default()
        },
    )
    .unwrap();
    let mut sim = start(fs, DialectConfig::Off);
    sim.init_offer(0).unwrap();
    assert_eq!(sim.write(HELLO, 0, b"x"), Err(-libc::EROFS));
    let open = |flags: i32| {
        OpenIn {
            flags: flags as u32,
            ..Default::default()
        }
        .to_bytes()
    };
    assert_eq!(
        sim.call(opcode::OPEN, HELLO, &open(libc::O_RDWR))
            .unwrap()
            .error,
        -libc::EROFS
    );
    assert_eq!(
        sim.call(opcode::OPEN, HELLO, &open(libc::O_RDONLY))
            .unwrap()
            .error,
        0
    );
    assert_eq!(sim.read(HELLO, 0, 100).unwrap(), HELLO_TXT);
    let s = Kstatfs::decode(&sim.call(opcode::STATFS, ROOT, &[]).unwrap().body, 0, 0).unwrap();
    assert_eq!(s.bavail, 0);
}

#[test]
fn get_fmap_rfc_v2_exact_bytes_and_needed_size_retry() {
    let f = fixture();
    let mut sim = start(open_fs(&f, Some(DAXDEV)), DialectConfig::RfcV2);
    assert_eq!(sim.init_offer(0x400).unwrap().flags2, 0x400);
    // The spec's examples, produced from log entries 0 and 1.
    let r = sim.call(53, FILE0, &fmap_size_body(4096)).unwrap();
    assert_eq!((r.error, r.body), (0, hex(FMAP_EXAMPLE_SIMPLE).unwrap()));
    let r = sim.call(53, INTERLEAVED, &fmap_size_body(4096)).unwrap();
    assert_eq!(
        (r.error, r.body),
        (0, hex(FMAP_EXAMPLE_INTERLEAVED).unwrap())
    );
    // 16 simple extents = 416 bytes: a 64-byte buffer gets exactly the 4-byte needed size…
    let many: Vec<(u64, u64)> = many_extents().iter().map(|e| (e.offset, e.len)).collect();
    let want_many = simple_fmap_bytes(MANY_SIZE, &many);
    assert_eq!(want_many.len(), 416);
    let u1 = sim.request(53, MANY, &fmap_size_body(64)).unwrap();
    let r = sim.recv().unwrap();
    assert_eq!(
        (r.unique, r.error, r.body.as_slice()),
        (u1, 0, &416u32.to_ne_bytes()[..])
    );
    // …and the kernel's one retry with a large enough buffer gets the whole map.
    let u2 = sim.request(53, MANY, &fmap_size_body(416)).unwrap();
    let r = sim.recv().unwrap();
    assert_eq!((r.unique, r.error, &r.body), (u2, 0, &want_many));
    // A large interleaved map: 16 strips = 440 bytes.
    let strips: Vec<(u64, u64)> = wide_strips().iter().map(|e| (e.offset, e.len)).collect();
    let want_wide = interleaved_fmap_bytes(WIDE_SIZE, MIB2 as u32, &strips);
    assert_eq!(want_wide.len(), 440);
    let r = sim.call(53, WIDE, &fmap_size_body(439)).unwrap();
    assert_eq!(r.body, 440u32.to_ne_bytes());
    let r = sim.call(53, WIDE, &fmap_size_body(4096)).unwrap();
    assert_eq!(r.body, want_wide);
    // The meta files have fmaps too.
    let r = sim.call(53, LOG_INO, &fmap_size_body(4096)).unwrap();
    assert_eq!(
        r.body,
        simple_fmap_bytes(0x80_0000, &[(0x20_0000, 0x80_0000)])
    );
    let r = sim.call(53, SB_INO, &fmap_size_body(4096)).unwrap();
    assert_eq!(r.body, simple_fmap_bytes(0x20_0000, &[(0, 0x20_0000)]));
    // A directory has no map (ENOENT); an unknown inode is EINVAL.
    assert_eq!(
        sim.call(53, DIR, &fmap_size_body(4096)).unwrap().error,
        -libc::ENOENT
    );
    assert_eq!(
        sim.call(53, 4242, &fmap_size_body(4096)).unwrap().error,
        -libc::EINVAL
    );
    // GET_DAXDEV (54 in RFC V2): the configured path for index 0, EINVAL otherwise.
    let r = sim.call(54, 0, &[]).unwrap();
    assert_eq!((r.error, r.body.len()), (0, 280));
    assert_eq!(&r.body[..24], &[0u8; 24]);
    assert_eq!(&r.body[24..36], b"/dev/dax0.0\0");
    assert!(r.body[36..].iter().all(|&b| b == 0));
    assert_eq!(sim.call(54, 1, &[]).unwrap().error, -libc::EINVAL);
    // 55 is nothing in RFC V2.
    assert_eq!(sim.call(55, 0, &[]).unwrap().error, -libc::ENOSYS);
    sim.stop().unwrap();
    let view: Vec<_> = sim.records()[1..]
        .iter()
        .filter(|r| r.opcode == 53)
        .map(|r| {
            (
                r.nodeid,
                r.reply_bytes,
                r.fmap_bytes,
                r.fmap_extents,
                r.retry,
            )
        })
        .collect();
    assert_eq!(
        view,
        vec![
            (FILE0, 72, 56, 1, false),
            (INTERLEAVED, 120, 104, 2, false),
            (MANY, 20, 0, 0, true),
            (MANY, 432, 416, 16, false),
            (WIDE, 20, 0, 0, true),
            (WIDE, 456, 440, 16, false),
            (LOG_INO, 72, 56, 1, false),
            (SB_INO, 72, 56, 1, false),
            (DIR, 16, 0, 0, false),
            (4242, 16, 0, 0, false),
        ]
    );
}

#[test]
fn get_fmap_v3_page_buffer_no_retry() {
    let f = fixture();
    let mut sim = start(open_fs(&f, Some(DAXDEV)), DialectConfig::V3);
    assert_eq!(sim.init_offer(0xc00).unwrap().flags2, 0x800);
    // V3 requests carry no body (len 40): the page-sized buffer.
    let r = sim.call(54, FILE0, &[]).unwrap();
    assert_eq!((r.error, r.body), (0, hex(FMAP_EXAMPLE_SIMPLE).unwrap()));
    let r = sim.call(54, INTERLEAVED, &[]).unwrap();
    assert_eq!(
        (r.error, r.body),
        (0, hex(FMAP_EXAMPLE_INTERLEAVED).unwrap())
    );
    let many: Vec<(u64, u64)> = many_extents().iter().map(|e| (e.offset, e.len)).collect();
    assert_eq!(
        sim.call(54, MANY, &[]).unwrap().body,
        simple_fmap_bytes(MANY_SIZE, &many)
    );
    // A buffer too small and no retry in V3: EINVAL, header only.
    let r = sim.call(54, MANY, &fmap_size_body(64)).unwrap();
    assert_eq!((r.error, r.body.len()), (-libc::EINVAL, 0));
    // GET_DAXDEV is 55.
    let r = sim.call(55, 0, &[]).unwrap();
    assert_eq!((r.error, r.body.len()), (0, 280));
    assert_eq!(&r.body[24..36], b"/dev/dax0.0\0");
    assert_eq!(sim.call(55, 3, &[]).unwrap().error, -libc::EINVAL);
    // 53 is COPY_FILE_RANGE_64 here: not implemented.
    assert_eq!(sim.call(53, FILE0, &[]).unwrap().error, -libc::ENOSYS);
}

#[test]
fn get_daxdev_defaults_to_the_superblock_name() {
    let f = fixture();
    let mut sim = start(open_fs(&f, None), DialectConfig::V3);
    sim.init_offer(0x800).unwrap();
    let r = sim.call(55, 0, &[]).unwrap();
    assert_eq!(r.error, 0);
    // mkfs recorded the image path (bounded to 64 bytes, like the reference) as dd_daxdev.
    let p = f.path.as_os_str().as_encoded_bytes();
    let n = p.len().min(64);
    assert_eq!(&r.body[24..24 + n], &p[..n]);
    assert_eq!(r.body[24 + n], 0);
    assert_eq!(
        sim.fs().daxdev(),
        Path::new(std::str::from_utf8(&p[..n]).unwrap())
    );
}

#[test]
fn malformed_requests_get_errors_and_serving_goes_on() {
    let f = fixture();
    let mut sim = start(open_fs(&f, Some(DAXDEV)), DialectConfig::RfcV2);
    sim.init_offer(0x400).unwrap();
    let ok = |sim: &mut Sim| assert_eq!(sim.getattr(FILE0).unwrap().size, MIB);
    // Header shorter than 40 bytes with a readable unique: EIO.
    let mut short = vec![0u8; 24];
    short[0..4].copy_from_slice(&24u32.to_ne_bytes());
    short[4..8].copy_from_slice(&opcode::LOOKUP.to_ne_bytes());
    short[8..16].copy_from_slice(&9001u64.to_ne_bytes());
    sim.send_raw(&short).unwrap();
    let r = sim.recv().unwrap();
    assert_eq!((r.unique, r.error), (9001, -libc::EIO));
    ok(&mut sim);
    // Length field that disagrees with the message.
    let mut h = InHeader {
        len: 100,
        opcode: opcode::GETATTR,
        unique: 9003,
        nodeid: ROOT,
        ..Default::default()
    }
    .to_bytes()
    .to_vec();
    h.extend_from_slice(&GetattrIn::default().to_bytes());
    sim.send_raw(&h).unwrap();
    assert_eq!(sim.recv().unwrap().error, -libc::EIO);
    ok(&mut sim);
    // Bodies too short for their opcode, a name without NUL, WRITE data shorter than its size.
    assert_eq!(
        sim.call(opcode::READ, HELLO, &[0u8; 12]).unwrap().error,
        -libc::EINVAL
    );
    assert_eq!(
        sim.call(opcode::LOOKUP, ROOT, b"file0").unwrap().error,
        -libc::EINVAL
    );
    assert_eq!(
        sim.call(opcode::SETATTR, FILE0, &[0u8; 40]).unwrap().error,
        -libc::EINVAL
    );
    let mut w = WriteIn {
        size: 64,
        ..Default::default()
    }
    .to_bytes()
    .to_vec();
    w.extend_from_slice(b"short");
    assert_eq!(
        sim.call(opcode::WRITE, HELLO, &w).unwrap().error,
        -libc::EINVAL
    );
    // GET_FMAP with a 3-byte body reads as "no size given" (4096): served.
    assert_eq!(
        sim.call(53, FILE0, &[1, 2, 3]).unwrap().body,
        hex(FMAP_EXAMPLE_SIMPLE).unwrap()
    );
    // Garbage.
    sim.send_raw(&[0xee; 48]).unwrap();
    assert_eq!(sim.recv().unwrap().error, -libc::EIO);
    ok(&mut sim);
    assert_eq!(sim.session().stats().malformed(), 7);
    assert_eq!(
        sim.read(HELLO, 0, 100).unwrap(),
        HELLO_TXT,
        "the file was not touched"
    );
}

#[test]
fn refresh_finds_appended_entries_and_invalidates_the_kernel_view() {
    let f = fixture();
    let mut sim = start(open_fs(&f, None), DialectConfig::Off);
    sim.init_offer(0).unwrap();
    assert_eq!(sim.lookup(ROOT, "late.txt"), Err(-libc::ENOENT));
    let notifier = sim.session().notifier();
    // Nothing appended yet: one 8-byte read of the header, no replay.
    let s = sim.fs().refresh(Some(&notifier), false).unwrap();
    assert!(!s.replayed);
    // Another writer (here: a second handle on the image) appends a directory and a file.
    let mut img = sup::open_rw(&f.path);
    img.mkdir("later", 0o755, 0, 0, false).unwrap();
    let late = sup::put(&mut img, "later/late.txt", b"appended by another writer\n");
    let late2 = sup::put(&mut img, "late.txt", b"second\n");
    assert_eq!((late, late2), (23, 24));
    let s = sim.fs().refresh(Some(&notifier), false).unwrap();
    assert!(s.replayed);
    assert_eq!(
        s.report
            .added
            .iter()
            .map(|a| (
                a.id,
                a.parent,
                String::from_utf8_lossy(&a.name).into_owned()
            ))
            .collect::<Vec<_>>(),
        vec![
            (22, ROOT, "later".to_string()),
            (23, 22, "late.txt".to_string()),
            (24, ROOT, "late.txt".to_string())
        ]
    );
    assert_eq!(s.report.next_index, 9);
    // The kernel side receives INVAL_ENTRY for every new name, then INVAL_INODE for each parent.
    let mut notes = Vec::new();
    for _ in 0..5 {
        let r = sim.recv().unwrap();
        assert_eq!(r.unique, 0, "a notification");
        notes.push((r.error, r.body));
    }
    let entry = |parent: u64, name: &str| {
        let mut b = abi::NotifyInvalEntryOut {
            parent,
            namelen: name.len() as u32,
            flags: 0,
        }
        .to_bytes()
        .to_vec();
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        (abi::notify::INVAL_ENTRY, b)
    };
    let inode = |ino: u64| {
        (
            abi::notify::INVAL_INODE,
            abi::NotifyInvalInodeOut {
                ino,
                off: 0,
                len: 0,
            }
            .to_bytes()
            .to_vec(),
        )
    };
    assert_eq!(
        notes,
        vec![
            entry(ROOT, "later"),
            entry(22, "late.txt"),
            entry(ROOT, "late.txt"),
            inode(ROOT),
            inode(22)
        ]
    );
    // Now the names resolve, with the right sizes, data and nlink.
    let e = sim.lookup(22, "late.txt").unwrap();
    assert_eq!((e.nodeid, e.attr.size), (23, 27));
    assert_eq!(
        sim.read(23, 0, 100).unwrap(),
        b"appended by another writer\n"
    );
    assert_eq!(sim.getattr(ROOT).unwrap().nlink, 5);
    let st = sim.fs().refresh_stats();
    assert_eq!(st.added.load(std::sync::atomic::Ordering::Relaxed), 3);
    // A forced refresh with nothing new replays nothing and sends nothing.
    let s = sim.fs().refresh(Some(&notifier), true).unwrap();
    assert!(s.report.added.is_empty());
    assert_eq!(sim.getattr(24).unwrap().size, 7);
}

#[test]
fn catalog_describes_files_for_the_join() {
    let f = fixture();
    let fs = open_fs(&f, None);
    assert_eq!(
        fs.file(MANY),
        Some(FileInfo {
            path: "/dir/many".into(),
            size: MANY_SIZE,
            fmap_bytes: 32 + 16 * 24,
            fmap_extents: 16
        })
    );
    assert_eq!(
        fs.file(INTERLEAVED),
        Some(FileInfo {
            path: "/interleaved".into(),
            size: 3 * MIB,
            fmap_bytes: 104,
            fmap_extents: 2
        })
    );
    assert_eq!(fs.file(LOG_INO).map(|i| i.path), Some("/.meta/.log".into()));
    assert_eq!(fs.file(DIR), None);
    assert_eq!(fs.file(ROOT), None);
    assert_eq!(fs.file(9999), None);
}

/// Serve `rounds` rounds of the hot-path opcodes on one worker; return that thread's allocations.
fn server_thread_allocations(f: &Fixture, rounds: usize) -> u64 {
    let mut sim = Sim::builder(open_fs(f, Some(DAXDEV)))
        .config(sim::session_config(0, 0, DialectConfig::V3))
        .records(1 << 16)
        .start()
        .unwrap();
    sim.init_offer(0x800).unwrap();
    for _ in 0..rounds {
        let replies = [
            sim.call(opcode::LOOKUP, DIR, b"many\0").unwrap().error,
            sim.call(opcode::GETATTR, MANY, &getattr_in())
                .unwrap()
                .error,
            sim.call(opcode::READ, MANY, &read_in(0, MIB2 - 4096, 65_536))
                .unwrap()
                .error,
            sim.call(opcode::READ, WIDE, &read_in(0, 0, 131_072))
                .unwrap()
                .error,
            sim.call(opcode::READDIR, DIR, &read_in(0, 0, 4096))
                .unwrap()
                .error,
            sim.call(opcode::READDIRPLUS, DIR, &read_in(0, 0, 4096))
                .unwrap()
                .error,
            sim.call(54, MANY, &[]).unwrap().error,
            sim.call(opcode::LOOKUP, ROOT, b"nope\0").unwrap().error,
        ];
        assert_eq!(replies, [0, 0, 0, 0, 0, 0, 0, -libc::ENOENT]);
        sim.request(opcode::FORGET, MANY, &forget_in(2)).unwrap();
        let _ = sim.records();
    }
    sim.stop().unwrap();
    sim.serving_thread_allocations()
        .expect("the serving thread ended")
}

#[test]
fn hot_path_requests_allocate_nothing() {
    let f = fixture();
    let few = server_thread_allocations(&f, 5);
    let many = server_thread_allocations(&f, 105);
    assert_eq!(
        many, few,
        "allocations on the server thread: {few} for 5 rounds vs {many} for 105"
    );
}
