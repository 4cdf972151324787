//! famfs GET_FMAP / GET_DAXDEV over the simulated kernel: byte-exact replies against the protocol
//! spec's examples, RFC V2's needed-size reply and retry, V3's fixed page and EINVAL for a map that
//! does not fit, the records they leave, and ENOSYS when famfs mode was not negotiated.

use famfs_daemon::fuse::{
    DialectConfig,
    abi::opcode,
    sim::{FMAP_EXAMPLE_INTERLEAVED, FMAP_EXAMPLE_SIMPLE, fmap_size_body, hex},
};

use crate::{
    harness::{SimOpts, start},
    support::MIB2,
    testfs::{BIG_INO, FILE0_INO, INTERLEAVED_INO, ROOT},
};

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
