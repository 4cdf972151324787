//! INIT with and without the famfs bits, and the namespace opcodes with exact replies, in every
//! famfs dialect setting.

use famfs_daemon::fuse::{
    abi::{
        self, AttrOut, Kstatfs, OpenIn, OpenOut, ReleaseIn, SetattrIn, fattr, init_flags, opcode,
    },
    dt,
    sim::{
        Dirent, batch_forget_in, fmap_size_body, forget_in, getxattr_in, parse_direntplus, read_in,
    },
};

use crate::{
    fixture::{
        DAXDEV, DIR, FILE0, HELLO, INTERLEAVED, LOG_INO, MANY, MANY_SIZE, META, ROOT, WIDE,
        WIDE_SIZE, fixture, open_fs,
    },
    harness::{DIALECTS, Ops, Sim, WANT_FLAGS, start},
    support::{MIB, MIB2},
};

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
        let a = lookups(&mut sim, &ctx);
        getattr_readdir(&mut sim, &ctx, a);
        readdirplus_forget(&mut sim);
        open_statfs_getxattr(&mut sim);
        setattr(&mut sim, a);
        unimplemented(&mut sim, &ctx, bit);
    }
}

/// LOOKUP: entry with nodeid = st_ino = inode id, attributes from the log entry; missing names,
/// non-directories and unknown parents are errors; lookup counts.
fn lookups(sim: &mut Sim, ctx: &str) -> abi::Attr {
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
    a
}

/// GETATTR (stable; root nlink = 2 + subdirectories) and READDIR (log order, resumable offsets,
/// whole entries only in a small buffer).
fn getattr_readdir(sim: &mut Sim, ctx: &str, a: abi::Attr) {
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
}

/// READDIRPLUS (attributes inline, a lookup reference per real entry), then FORGET and
/// BATCH_FORGET dropping references without a reply.
fn readdirplus_forget(sim: &mut Sim) {
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
}

/// OPENDIR / OPEN type checks, RELEASEDIR / RELEASE, STATFS from the device and the allocator,
/// GETXATTR (nothing stored).
fn open_statfs_getxattr(sim: &mut Sim) {
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
}

/// SETATTR: size changes refused; the same size and time updates are accepted unchanged.
fn setattr(sim: &mut Sim, a: abi::Attr) {
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
}

/// Everything else is ENOSYS; famfs opcodes only with the famfs bit negotiated.
fn unimplemented(sim: &mut Sim, ctx: &str, bit: u32) {
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
