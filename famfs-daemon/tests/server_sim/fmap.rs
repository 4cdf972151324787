//! famfs GET_FMAP and GET_DAXDEV served from the image: byte-exact against the protocol spec's
//! examples and against maps built here field by field, RFC V2's needed-size retry, V3's page buffer
//! with EINVAL for a map that does not fit, and the daxdev path (configured, or the superblock's).

use std::path::Path;

use famfs_daemon::fuse::{
    DialectConfig,
    sim::{FMAP_EXAMPLE_INTERLEAVED, FMAP_EXAMPLE_SIMPLE, fmap_size_body, hex},
};

use crate::{
    fixture::{
        DAXDEV, DIR, FILE0, INTERLEAVED, LOG_INO, MANY, MANY_SIZE, SB_INO, WIDE, WIDE_SIZE,
        fixture, many_extents, open_fs, wide_strips,
    },
    harness::start,
    support::MIB2,
};

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
