//! File data over the simulated kernel: READ and WRITE through simple and interleaved extents
//! (boundaries, EOF, the fixed size), FLUSH / FSYNC making writes durable in the image, the records'
//! transferred bytes, and a read-only server refusing writes.

use famfs_daemon::{
    famfs::Image,
    fuse::{
        DialectConfig,
        abi::{self, Kstatfs, OpenIn, opcode},
    },
    server::{FamfsFs, ServerConfig},
};

use crate::{
    fixture::{DIR, FILE0, HELLO, HELLO_TXT, MANY, MANY_SIZE, ROOT, WIDE, fixture, open_fs},
    harness::{Ops, start},
    support::{MIB, MIB2, image::uuid_file, pattern},
};

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
    let data = pattern(5000, 77);
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
            system_uuid_path: Some(uuid_file(f._dir.path())),
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
