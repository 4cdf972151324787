//! Serving goes on after malformed requests (framing and bodies), and the hot-path opcodes allocate
//! nothing per request on the serving thread (counted by the binary's `CountingAlloc`).

use famfs_daemon::fuse::{
    DialectConfig,
    abi::{GetattrIn, InHeader, WriteIn, opcode},
    sim::{self, FMAP_EXAMPLE_SIMPLE, forget_in, getattr_in, hex, read_in},
};

use crate::{
    fixture::{DAXDEV, DIR, FILE0, Fixture, HELLO, HELLO_TXT, MANY, ROOT, WIDE, fixture, open_fs},
    harness::{Ops, Sim, start},
    support::{MIB, MIB2},
};

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
