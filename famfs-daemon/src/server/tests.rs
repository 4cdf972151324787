//! Unit tests of the server's pieces that need no FUSE peer: the data path's bounds, copies and
//! faults, a symbolic link refused, the fmap wire-size rule, and duration parsing for `run`. The server over a simulated kernel is tested
//! in `tests/server_sim/`, on real mounts in `tests/server_mount.rs`.

use std::io::Write;

use super::{
    data::{DataPath, IoOp, errno_of},
    volume::{WIRE_EXTENTS_INLINE, fmap_wire_size, wire_fmap},
};
use crate::{
    famfs::{Extent, Fmap, Store, StoreError},
    fuse::{WireExtent, WireLayout},
};

fn ext(offset: u64, len: u64) -> Extent {
    Extent {
        devindex: 0,
        offset,
        len,
    }
}

fn temp_file(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    let body: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    f.write_all(&body).unwrap();
    f.flush().unwrap();
    (f, body)
}

#[test]
fn data_path_copies_in_and_out_within_bounds() {
    let (f, body) = temp_file(3 * 4096);
    let m = DataPath::new(Store::open(f.path(), true).unwrap());
    let mut b = vec![0u8; 100];
    m.read_into(4000, &mut b).unwrap();
    assert_eq!(b, &body[4000..4100]);
    m.write_from(8190, b"xyz").unwrap();
    let mut c = [0u8; 5];
    m.read_into(8189, &mut c).unwrap();
    assert_eq!(&c, &[body[8189], b'x', b'y', b'z', body[8193]]);
    m.flush([(8190, 3)]).unwrap();
    assert_eq!(&std::fs::read(f.path()).unwrap()[8190..8193], b"xyz");
    // The last byte is fine, one more is not.
    let mut one = [0u8; 1];
    m.read_into(3 * 4096 - 1, &mut one).unwrap();
    assert!(matches!(
        m.read_into(3 * 4096 - 1, &mut [0u8; 2]),
        Err(StoreError::OutOfBounds {
            off: 0x2fff,
            len: 2,
            size: 0x3000,
            ..
        })
    ));
    assert!(m.read_into(u64::MAX - 1, &mut [0u8; 4]).is_err());
    assert!(m.write_from(3 * 4096, b"a").is_err());
    assert_eq!(
        m.read_u64(0).unwrap(),
        u64::from_le_bytes(body[..8].try_into().unwrap())
    );
}

#[test]
fn data_path_follows_a_truncated_file_and_records_faults() {
    let (f, _) = temp_file(4 * 4096);
    let m = DataPath::new(Store::open(f.path(), false).unwrap());
    assert!(matches!(m.write_from(0, b"a"), Err(StoreError::ReadOnly)));
    f.as_file().set_len(4096).unwrap();
    // Before the recheck: the read meets the file's end (no SIGBUS), an error answered EIO.
    let e = m.read_into(4096, &mut [0u8; 1]).unwrap_err();
    assert!(matches!(e, StoreError::Short { .. }), "{e:?}");
    assert_eq!(errno_of(&e), libc::EIO);
    assert_eq!(m.recheck().unwrap(), 4096);
    assert!(
        m.read_into(4096, &mut [0u8; 1]).is_err(),
        "no access past the new end"
    );
    m.read_into(4095, &mut [0u8; 1]).unwrap();
    assert_eq!((m.faults(), m.last_fault()), (0, None));
    m.record_fault(IoOp::Write, 17, 0x1234, libc::ENOSPC);
    let fault = m.last_fault().unwrap();
    assert_eq!(
        (m.faults(), fault.op, fault.ino, fault.dev_off, fault.errno),
        (1, IoOp::Write, 17, 0x1234, libc::ENOSPC)
    );
}

#[test]
fn a_full_filesystem_is_passed_through_everything_else_is_eio() {
    let io = |code: i32| StoreError::Io {
        path: "img".into(),
        op: "pwrite",
        source: std::io::Error::from_raw_os_error(code),
    };
    assert_eq!(errno_of(&io(libc::ENOSPC)), libc::ENOSPC);
    assert_eq!(errno_of(&io(libc::EDQUOT)), libc::EDQUOT);
    assert_eq!(errno_of(&io(libc::EIO)), libc::EIO);
    assert_eq!(errno_of(&io(libc::EBADF)), libc::EIO);
    assert_eq!(errno_of(&StoreError::ReadOnly), libc::EIO);
}

#[test]
fn the_server_refuses_an_image_behind_a_symbolic_link() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("famfs.img");
    crate::famfs::Image::mkfs(
        &img,
        &crate::famfs::MkfsOptions {
            size: Some(4 << 30),
            host_uuid: Some([1; 16]),
            system_uuid_path: Some(dir.path().join("uuid")),
            ..Default::default()
        },
    )
    .unwrap();
    let link = dir.path().join("link.img");
    std::os::unix::fs::symlink(&img, &link).unwrap();
    let cfg = super::ServerConfig {
        system_uuid_path: Some(dir.path().join("uuid")),
        ..Default::default()
    };
    let e = super::FamfsFs::open(&link, &cfg).unwrap_err().to_string();
    assert!(e.contains("link.img") && e.contains("symbolic link"), "{e}");
    super::FamfsFs::open(&img, &cfg).unwrap();
}

#[test]
fn wire_size_and_translation() {
    let simple = Fmap::Simple(vec![ext(0xa0_0000, 0x20_0000), ext(0xe0_0000, 0x40_0000)]);
    assert_eq!(fmap_wire_size(&simple), (32 + 2 * 24, 2));
    let inter = Fmap::Interleaved {
        chunk_size: 0x20_0000,
        strips: vec![ext(0x860_0000, 0x20_0000), ext(0x260_0000, 0x20_0000)],
    };
    assert_eq!(fmap_wire_size(&inter), (104, 2));
    let mut buf = [WireExtent::default(); WIRE_EXTENTS_INLINE];
    let mut spill = Vec::new();
    let w = wire_fmap(&inter, 0x30_0000, &mut buf, &mut spill).unwrap();
    assert_eq!(w.encoded_len(), 104);
    match w.layout {
        WireLayout::Interleaved {
            nstrips,
            chunk_size,
            nbytes,
            strips,
        } => {
            assert_eq!((nstrips, chunk_size, nbytes), (2, 0x20_0000, 0x30_0000));
            assert_eq!(strips[1].offset, 0x260_0000);
        }
        WireLayout::Simple(_) => panic!("interleaved expected"),
    }
    assert!(spill.is_empty(), "no spill for a small map");
    // Wider than the inline buffer: the spill vector carries it.
    let wide = Fmap::Simple((0..40u64).map(|k| ext((k + 8) << 21, 1 << 21)).collect());
    let w = wire_fmap(&wide, 40 << 21, &mut buf, &mut spill).unwrap();
    assert_eq!(w.extent_count(), 40);
    // A devindex or chunk size that does not fit the wire's u32 is refused, not truncated.
    let bad = Fmap::Simple(vec![Extent {
        devindex: 1 << 40,
        offset: 0xa0_0000,
        len: 0x20_0000,
    }]);
    assert!(wire_fmap(&bad, 1, &mut buf, &mut spill).is_err());
    let bad = Fmap::Interleaved {
        chunk_size: 1 << 33,
        strips: vec![ext(0xa0_0000, 1 << 33)],
    };
    assert!(wire_fmap(&bad, 1, &mut buf, &mut spill).is_err());
}
