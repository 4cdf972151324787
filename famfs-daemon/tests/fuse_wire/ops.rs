//! The ordinary opcodes over the simulated kernel, in every famfs dialect setting, with exact
//! replies; malformed requests (framing and bodies) answered with errors while serving goes on; the
//! opcodes that get no reply; SETLK / SETLKW reaching the filesystem.

use std::sync::atomic::Ordering;

use famfs_daemon::fuse::{
    DialectConfig,
    abi::{
        self, AttrOut, EntryOut, InHeader, OpenIn, OpenOut, ReleaseIn, WriteIn, init_flags, opcode,
    },
    sim::{
        Dirent, batch_forget_in, forget_in, getattr_in, getxattr_in, parse_dirents, read_in,
        write_in,
    },
};

use crate::{
    harness::{Sim, SimOpts, start},
    testfs::{
        FILE0_INO, HELLO_INO, NESTED_INO, PATTERN_INO, PATTERN_LEN, ROOT, SCRATCH_INO, SUB_INO,
        TestFs,
    },
};

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
        lookup_getattr_open(&mut sim, &fs, dialect);
        reads(&mut sim, &fs);
        directories(&mut sim, &fs, dialect);
        statfs_getxattr_write(&mut sim);
        unimplemented_are_enosys(&mut sim, dialect);
        sim.stop().unwrap();
        assert_eq!(
            sim.session().stats().requests(opcode::READDIR),
            4,
            "{dialect}"
        );
        assert_eq!(sim.session().stats().errors(opcode::LOOKUP), 1);
    }
}

/// LOOKUP (the exact 128-byte entry, ENOENT for a missing name), GETATTR (104 bytes), OPEN.
fn lookup_getattr_open(sim: &mut Sim, fs: &TestFs, dialect: DialectConfig) {
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
}

/// READ: borrowed slice and filled buffer; short at EOF.
fn reads(sim: &mut Sim, fs: &TestFs) {
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
}

/// OPENDIR, READDIR (whole, in a small buffer, resumed, at the end), READDIRPLUS, RELEASEDIR.
fn directories(sim: &mut Sim, fs: &TestFs, dialect: DialectConfig) {
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
}

/// STATFS, GETXATTR, WRITE then READ back, FLUSH and RELEASE.
fn statfs_getxattr_write(sim: &mut Sim) {
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
}

/// SETATTR (the trait default), unknown opcodes and famfs opcodes not in force: ENOSYS.
fn unimplemented_are_enosys(sim: &mut Sim, dialect: DialectConfig) {
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
