//! Unit tests of the FUSE wire layer: ABI layouts and checked decoding, dirent packing, famfs fmap /
//! daxdev encoding (byte-exact against the protocol spec's examples), the dialect table and rule,
//! mountinfo parsing, the log rate limiter, and the simulated kernel (`sim`) itself: its parsers,
//! deadlines, reply checks and session lifetime. The session is tested end to end over the simulated
//! kernel in `tests/fuse_wire/`.

use std::{
    io::{self, IoSlice},
    path::Path,
    time::Duration,
};

use super::{
    Filesystem,
    abi::{self, *},
    dialect::{self, *},
    fmap::*,
    reply::*,
    sim::{self, Dirent, FMAP_EXAMPLE_INTERLEAVED, FMAP_EXAMPLE_SIMPLE, Kernel, Sim},
    stats::RateLimit,
};

fn hex(s: &str) -> Vec<u8> {
    sim::hex(s).unwrap()
}

#[test]
fn layout_constants() {
    assert_eq!(FUSE_DEV_IOC_CLONE, 0x8004_e500);
    assert_eq!(
        [
            InHeader::SIZE,
            OutHeader::SIZE,
            InitIn::SIZE,
            InitOut::SIZE,
            EntryOut::SIZE,
            Attr::SIZE,
            AttrOut::SIZE,
            OpenIn::SIZE,
            OpenOut::SIZE,
            ReadIn::SIZE,
            WriteIn::SIZE,
            WriteOut::SIZE,
            ReleaseIn::SIZE,
            FlushIn::SIZE,
            GetattrIn::SIZE,
            SetattrIn::SIZE,
            Kstatfs::SIZE,
            LkIn::SIZE,
            DaxdevOut::SIZE,
            FmapHeader::SIZE,
        ],
        [
            40, 16, 64, 64, 128, 88, 104, 8, 16, 40, 40, 8, 24, 24, 16, 88, 80, 48, 280, 32
        ]
    );
    assert_eq!(init_flags::FAMFS_DAX_FMAP_V3 >> 32, 0x800);
    assert_eq!(init_flags::FAMFS_DAX_FMAP_RFC >> 32, 0x400);
}

#[test]
fn header_roundtrip_is_host_order_at_spec_offsets() {
    let h = InHeader {
        len: 48,
        opcode: 54,
        unique: 0x1122_3344_5566_7788,
        nodeid: 9,
        uid: 1000,
        gid: 100,
        pid: 4242,
        total_extlen: 0,
        ..Default::default()
    };
    let b = h.to_bytes();
    assert_eq!(&b[0..4], &48u32.to_ne_bytes());
    assert_eq!(&b[4..8], &54u32.to_ne_bytes());
    assert_eq!(&b[8..16], &0x1122_3344_5566_7788u64.to_ne_bytes());
    assert_eq!(&b[16..24], &9u64.to_ne_bytes());
    assert_eq!(&b[32..36], &4242u32.to_ne_bytes());
    assert_eq!(&b[36..40], &[0, 0, 0, 0]);
    assert_eq!(InHeader::decode(&b, 0, 0), Ok(h));
}

#[test]
fn decode_error_names_opcode_struct_field_and_offset() {
    // 20 body bytes: fh, offset and size fit; read_flags (body offset 20) does not.
    let e = ReadIn::decode(&[0u8; 20], opcode::READ, 40).unwrap_err();
    assert_eq!(
        e,
        DecodeError {
            opcode: 15,
            what: "fuse_read_in",
            field: "read_flags",
            offset: 60,
            need: 4,
            have: 0,
        }
    );
    assert_eq!(
        e.to_string(),
        "opcode 15: fuse_read_in.read_flags at byte 60: needs 4 bytes, request has 0"
    );
    // A nested struct: the first field that does not fit is the nested one.
    let e = EntryOut::decode(&[0u8; 50], 1, 0).unwrap_err();
    assert_eq!((e.field, e.offset, e.need, e.have), ("attr", 40, 88, 10));
    assert!(OpenIn::decode(&[], opcode::OPEN, 40).is_err());
    // Longer input is fine (trailing data belongs to the next part).
    assert!(OpenIn::decode(&[1, 0, 0, 0, 2, 0, 0, 0, 9, 9], opcode::OPEN, 40).is_ok());
}

#[test]
fn padding_is_zeroed_on_encode_and_ignored_on_decode() {
    let ff = [0xffu8; 88];
    let s = SetattrIn::decode(&ff, opcode::SETATTR, 40).unwrap();
    assert_eq!(s.valid, u32::MAX);
    let b = s.to_bytes();
    for (off, len) in [(4usize, 4usize), (72, 4), (84, 4)] {
        assert_eq!(&b[off..off + len], &[0, 0, 0, 0][..len], "padding at {off}");
    }
    assert_eq!(b.iter().filter(|&&x| x == 0).count(), 12);
    let ks = Kstatfs {
        bsize: 4096,
        ..Default::default()
    }
    .to_bytes();
    assert_eq!(ks.iter().filter(|&&x| x != 0).count(), 1);
}

#[test]
fn c_name_requires_nul() {
    assert_eq!(abi::c_name(b"abc\0def", 1, 40), Ok(&b"abc"[..]));
    let e = abi::c_name(b"abc", 1, 40).unwrap_err();
    assert_eq!((e.opcode, e.what, e.offset, e.have), (1, "name", 40, 3));
}

#[test]
fn dirent_packing_pads_to_8_and_stops_when_full() {
    assert_eq!(dirent_size(1), 32);
    assert_eq!(dirent_size(8), 32);
    assert_eq!(dirent_size(9), 40);
    assert_eq!(direntplus_size(1), 160);
    let mut raw = [0xeeu8; 72];
    let mut d = DirentBuf::new(&mut raw);
    assert!(d.push(5, 1, dt::REG, b"a"));
    assert!(d.push(6, 2, dt::DIR, b"abcdefghi"));
    assert!(
        !d.push(7, 3, dt::REG, b"x"),
        "a third entry does not fit 72 bytes"
    );
    assert_eq!(d.len(), 72);
    let b = d.bytes();
    assert_eq!(&b[0..8], &5u64.to_ne_bytes());
    assert_eq!(&b[8..16], &1u64.to_ne_bytes());
    assert_eq!(&b[16..20], &1u32.to_ne_bytes());
    assert_eq!(&b[20..24], &8u32.to_ne_bytes());
    assert_eq!(&b[24..32], b"a\0\0\0\0\0\0\0");
    assert_eq!(&b[32 + 24..72], b"abcdefghi\0\0\0\0\0\0\0");
    assert_eq!(dt::of_mode(0o040755), dt::DIR);
    assert_eq!(dt::of_mode(0o100644), dt::REG);

    let mut raw = [0xeeu8; 200];
    let mut p = DirentPlusBuf::new(&mut raw);
    let mut e = EntryOut {
        nodeid: 9,
        ..Default::default()
    };
    e.attr.ino = 9;
    assert!(p.push(&e, 1, dt::REG, b"f"));
    assert!(!p.push(&e, 2, dt::REG, b"g"));
    assert_eq!(p.len(), 160);
    assert_eq!(&p.bytes()[0..8], &9u64.to_ne_bytes());
    assert_eq!(
        &p.bytes()[128..136],
        &9u64.to_ne_bytes(),
        "dirent ino = attr.ino"
    );
}

const FILE0: [WireExtent; 1] = [WireExtent {
    devindex: 0,
    offset: 0xa0_0000,
    len: 0x20_0000,
}];

const STRIPS: [WireExtent; 2] = [
    WireExtent {
        devindex: 0,
        offset: 0x860_0000,
        len: 0x20_0000,
    },
    WireExtent {
        devindex: 0,
        offset: 0x260_0000,
        len: 0x20_0000,
    },
];

#[test]
fn fmap_simple_matches_spec_example_byte_for_byte() {
    let f = WireFmap {
        file_type: famfs::FILE_TYPE_REG,
        file_size: 0x10_0000,
        layout: WireLayout::Simple(&FILE0),
    };
    let mut out = Vec::new();
    assert_eq!(f.encode_into(&mut out), Ok(56));
    assert_eq!(out, hex(FMAP_EXAMPLE_SIMPLE));
    assert_eq!((f.encoded_len(), f.extent_count()), (56, 1));
}

#[test]
fn fmap_interleaved_matches_spec_example_byte_for_byte() {
    let f = WireFmap {
        file_type: famfs::FILE_TYPE_REG,
        file_size: 0x30_0000,
        layout: WireLayout::Interleaved {
            nstrips: 2,
            chunk_size: 0x20_0000,
            nbytes: 0x30_0000,
            strips: &STRIPS,
        },
    };
    // The buffer is reused: stale content must not leak into the reply.
    let mut out = vec![0xffu8; 300];
    assert_eq!(f.encode_into(&mut out), Ok(104));
    assert_eq!(out, hex(FMAP_EXAMPLE_INTERLEAVED));
    assert_eq!((f.encoded_len(), f.extent_count()), (104, 2));
}

#[test]
fn fmap_rejects_inconsistent_descriptions() {
    let mut out = Vec::new();
    let bad = |layout| WireFmap {
        file_type: 0,
        file_size: 1,
        layout,
    };
    assert_eq!(
        bad(WireLayout::Simple(&[])).encode_into(&mut out),
        Err(FmapError::NoExtents)
    );
    assert_eq!(
        bad(WireLayout::Interleaved {
            nstrips: 3,
            chunk_size: 1,
            nbytes: 1,
            strips: &STRIPS
        })
        .encode_into(&mut out),
        Err(FmapError::StripCount {
            nstrips: 3,
            strips: 2
        })
    );
    assert_eq!(
        bad(WireLayout::Interleaved {
            nstrips: 2,
            chunk_size: 1,
            nbytes: 0,
            strips: &STRIPS
        })
        .encode_into(&mut out),
        Err(FmapError::ZeroNbytes)
    );
    let mut slot_buf = Vec::new();
    let mut slot = FmapReply::new(&mut slot_buf);
    assert!(slot.set(&bad(WireLayout::Simple(&[]))).is_err());
    assert_eq!(slot.encoded(), None);
    assert_eq!(slot.bytes(), b"");
}

#[test]
fn page_holds_169_simple_extents() {
    let ext = vec![FILE0[0]; 170];
    let fits = WireFmap {
        file_type: 0,
        file_size: 1,
        layout: WireLayout::Simple(&ext[..169]),
    };
    let over = WireFmap {
        layout: WireLayout::Simple(&ext),
        ..fits
    };
    assert_eq!(fits.encoded_len(), 4088);
    assert_eq!(over.encoded_len(), 4112);
    let v3 = Dialect::V3.spec();
    let v2 = Dialect::RfcV2.spec();
    assert_eq!(v3.fmap_size(4096, fits.encoded_len()), FmapSize::Full);
    assert_eq!(v3.fmap_size(4096, over.encoded_len()), FmapSize::TooBig);
    assert_eq!(
        v2.fmap_size(4096, over.encoded_len()),
        FmapSize::NeededSize(4112)
    );
    assert_eq!(v2.fmap_size(8192, over.encoded_len()), FmapSize::Full);
}

#[test]
fn daxdev_reply_is_280_bytes_with_nul_terminated_name() {
    let d = daxdev_reply(0, b"/dev/dax0.0").unwrap();
    let b = d.to_bytes();
    assert_eq!(b.len(), 280);
    assert_eq!(&b[0..24], &[0u8; 24]);
    assert_eq!(&b[24..35], b"/dev/dax0.0");
    assert!(b[35..].iter().all(|&x| x == 0));
    assert_eq!(
        daxdev_reply(3, b"x").unwrap().to_bytes()[0..2],
        3u16.to_ne_bytes()
    );
    assert!(daxdev_reply(0, &[b'a'; 255]).is_some());
    assert!(
        daxdev_reply(0, &[b'a'; 256]).is_none(),
        "no room for the NUL"
    );
    assert!(daxdev_reply(0, b"a\0b").is_none());
    assert!(daxdev_reply(70_000, b"x").is_none(), "index is a u16");
}

#[test]
fn dialect_table() {
    let v2 = Dialect::RfcV2.spec();
    let v3 = Dialect::V3.spec();
    assert_eq!(
        (v2.get_fmap, v2.get_daxdev, v2.init_bit, v2.name),
        (53, 54, 1 << 42, "rfc-v2")
    );
    assert_eq!(
        (v3.get_fmap, v3.get_daxdev, v3.init_bit, v3.name),
        (54, 55, 1 << 43, "v3")
    );
    assert_eq!(v2.fmap_request, FmapRequestBody::SizeU32);
    assert_eq!(v3.fmap_request, FmapRequestBody::None);
    assert_eq!(v2.size_handling, SizeHandling::NeededSizeRetry);
    assert_eq!(v3.size_handling, SizeHandling::FixedNoRetry);
    let mut body = [0u8; 8];
    body[..4].copy_from_slice(&16384u32.to_ne_bytes());
    assert_eq!(v2.fmap_limit(&body), 16384);
    assert_eq!(v2.fmap_limit(&[]), 4096);
    assert_eq!(v2.fmap_limit(&body[..4]), 4096, "a partial body is ignored");
    assert_eq!(v3.fmap_limit(&body), 16384, "parsed defensively in v3 too");
    for d in DialectConfig::ALL {
        assert_eq!(d.to_string().parse::<DialectConfig>(), Ok(d));
    }
    let e = "v10".parse::<DialectConfig>().unwrap_err();
    assert!(e.contains("\"v10\"") && e.contains("rfc-v2"), "{e}");
}

#[test]
fn dialect_rule() {
    const B42: u64 = 1 << 42;
    const B43: u64 = 1 << 43;
    let r = |cfg, offered, dax, famfs_kernel: bool| {
        let mut asked = false;
        let res = dialect::resolve(cfg, offered, dax, || {
            asked = true;
            famfs_kernel
        });
        (res.dialect, res.reason, asked)
    };
    use DialectConfig as C;
    use Reason as R;
    assert_eq!(
        r(C::Off, B42 | B43, true, true),
        (None, R::ConfiguredOff, false)
    );
    assert_eq!(r(C::V3, B43, false, true), (None, R::NoDaxdev, false));
    assert_eq!(
        r(C::V3, B43, true, false),
        (Some(Dialect::V3), R::Explicit, false)
    );
    assert_eq!(r(C::V3, B42, true, true), (None, R::BitNotOffered, false));
    assert_eq!(
        r(C::RfcV2, B42, true, false),
        (Some(Dialect::RfcV2), R::Explicit, false)
    );
    assert_eq!(
        r(C::RfcV2, B43, true, true),
        (None, R::BitNotOffered, false)
    );
    assert_eq!(
        r(C::Auto, B43, true, false),
        (None, R::AutoNoKernelSupport, true)
    );
    assert_eq!(
        r(C::Auto, B42 | B43, true, true),
        (Some(Dialect::V3), R::AutoV3, true)
    );
    assert_eq!(r(C::Auto, B42, true, true), (None, R::AutoAmbiguous, true));
    assert_eq!(r(C::Auto, 0, true, true), (None, R::AutoNotOffered, true));
    assert_eq!(r(C::Auto, B43, false, true), (None, R::NoDaxdev, false));
    assert!(R::AutoAmbiguous.is_warning() && R::BitNotOffered.is_warning());
    assert!(!R::AutoV3.is_warning() && !R::AutoNoKernelSupport.is_warning());
}

#[test]
fn kallsyms_probe() {
    let dir = tempfile::tempdir().unwrap();
    let with = dir.path().join("with");
    let without = dir.path().join("without");
    std::fs::write(
        &with,
        "0000000000000000 T fuse_open\n0000000000000000 t famfs_fuse_iomap_begin\t[fuse]\n",
    )
    .unwrap();
    std::fs::write(
        &without,
        "0000000000000000 T fuse_open\n0000000000000000 t famfs_fuse_iomap_begin_x\t[fuse]\n",
    )
    .unwrap();
    assert!(kallsyms_has_famfs(&with));
    assert!(!kallsyms_has_famfs(&without));
    assert!(!kallsyms_has_famfs(&dir.path().join("absent")));
}

#[test]
fn mountinfo_connection() {
    let info = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
90 22 0:77 / /tmp/a\\040b rw,nosuid,nodev - fuse famfs rw,user_id=0,group_id=0
91 22 0:55 / /mnt/x rw - tmpfs tmpfs rw
92 91 0:58 / /mnt/x rw,nosuid,nodev - fuse.famfs famfs rw,user_id=0,group_id=0
93 91 0:59 / /mnt/x rw,nosuid,nodev - fuse.famfs famfs rw,user_id=0,group_id=0
94 22 8:1 / /mnt/blk rw - fuseblk /dev/sda1 rw
95 22 0:60 / /mnt/t rw - tmpfs tmpfs rw
";
    let c = |p: &str| super::channel::connection_from_mountinfo(info, Path::new(p));
    assert_eq!(c("/tmp/a b"), Some(77));
    assert_eq!(c("/mnt/x"), Some(59), "the last (topmost) mount wins");
    assert_eq!(c("/mnt/t"), None, "not FUSE");
    assert_eq!(c("/mnt/blk"), None, "fuseblk is not a fuse mount of ours");
    assert_eq!(c("/tmp/a"), None);
    assert_eq!(c("/mnt/none"), None);
    let big = "1 1 3:5 / /m rw - fuse x rw\n";
    assert_eq!(
        super::channel::connection_from_mountinfo(big, Path::new("/m")),
        Some((3 << 20) | 5)
    );
}

#[test]
fn mount_options_data_and_flags() {
    let o = super::MountOptions {
        user_id: 0,
        group_id: 0,
        allow_other: true,
        read_only: true,
        subtype: Some("famfs".into()),
        ..Default::default()
    };
    assert_eq!(
        o.data(7),
        "fd=7,rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other"
    );
    assert_eq!(
        o.flags(),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_RDONLY
    );
    assert_eq!(o.fstype(), "fuse.famfs");
    let plain = super::MountOptions {
        user_id: 5,
        group_id: 6,
        default_permissions: false,
        ..Default::default()
    };
    assert_eq!(plain.data(3), "fd=3,rootmode=40000,user_id=5,group_id=6");
    assert_eq!(plain.flags(), libc::MS_NOSUID | libc::MS_NODEV);
}

#[test]
fn rate_limit_allows_a_burst_per_window_and_reports_suppressed() {
    let r = RateLimit::new(1000, 2);
    assert_eq!(r.check(5000), Some(0));
    assert_eq!(r.check(5001), Some(0));
    assert_eq!(r.check(5002), None);
    assert_eq!(r.check(5003), None);
    assert_eq!(
        r.check(6001),
        Some(2),
        "new window reports the suppressed count"
    );
    assert_eq!(r.check(6002), Some(0));
    assert_eq!(r.check(6003), None);
}

#[test]
fn errno_wire_values() {
    assert_eq!(super::Errno::ENOENT.wire(), -2);
    assert_eq!(super::Errno(0).wire(), -libc::EIO);
    assert_eq!(super::Errno(600).wire(), -libc::EIO);
    assert_eq!(
        super::Errno::from(std::io::Error::from_raw_os_error(libc::EACCES)),
        super::Errno::EACCES
    );
}

// ---------------------------------------------------------------------------------------------
// The simulated kernel.

/// A filesystem with every method at its default (ENOSYS; FORGET does nothing).
struct Nothing;

impl Filesystem for Nothing {}

#[test]
fn sim_parsers_round_trip_and_name_the_byte_of_damage() {
    let mut raw = [0u8; 200];
    let mut d = DirentBuf::new(&mut raw);
    assert!(d.push(5, 1, dt::REG, b"a"));
    assert!(d.push(6, 2, dt::DIR, b"abcdefghi"));
    let b = d.bytes().to_vec();
    assert_eq!(
        sim::parse_dirents(&b).unwrap(),
        vec![
            Dirent::new(5, 1, dt::REG, "a"),
            Dirent::new(6, 2, dt::DIR, "abcdefghi")
        ]
    );
    assert_eq!(sim::parse_dirents(&[]).unwrap(), vec![]);
    // The second entry (at byte 32) cut inside its name, then inside its head.
    let e = sim::parse_dirents(&b[..60]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert_eq!(
        e.to_string(),
        "dirent at byte 32: a name of 9 bytes (padded) runs past the end at 60"
    );
    let e = sim::parse_dirents(&b[..40]).unwrap_err();
    assert!(e.to_string().starts_with("dirent at byte 32: "), "{e}");

    let mut raw = [0u8; 400];
    let mut p = DirentPlusBuf::new(&mut raw);
    let mut entry = EntryOut {
        nodeid: 9,
        ..Default::default()
    };
    entry.attr.ino = 9;
    entry.attr.size = 4242;
    assert!(p.push(&entry, 1, dt::REG, b"f"));
    assert!(p.push(&entry, 2, dt::REG, b"gg"));
    let b = p.bytes().to_vec();
    let got = sim::parse_direntplus(&b).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[1].entry, &got[1].dirent),
        (entry, &Dirent::new(9, 2, dt::REG, "gg"))
    );
    let e = sim::parse_direntplus(&b[..200]).unwrap_err();
    assert!(e.to_string().starts_with("direntplus at byte 160: "), "{e}");

    assert_eq!(sim::hex("00 0a\n ff").unwrap(), vec![0, 10, 255]);
    let e = sim::hex("00 0g").unwrap_err();
    assert!(e.to_string().starts_with("hex token 1 \"0g\""), "{e}");
}

#[test]
fn sim_request_builders_match_the_abi() {
    assert_eq!(sim::name("ab"), b"ab\0");
    let w = sim::write_in(7, 3, b"xyz");
    let h = WriteIn::decode(&w, opcode::WRITE, 40).unwrap();
    assert_eq!((h.fh, h.offset, h.size, &w[40..]), (7, 3, 3, &b"xyz"[..]));
    let x = sim::getxattr_in(100, b"user.k");
    assert_eq!(
        GetxattrIn::decode(&x, opcode::GETXATTR, 40).unwrap().size,
        100
    );
    assert_eq!(&x[8..], b"user.k\0");
    let b = sim::batch_forget_in(&[(3, 4), (5, 6)]);
    assert_eq!(b.len(), 8 + 2 * 16);
    assert_eq!(
        BatchForgetIn::decode(&b, opcode::BATCH_FORGET, 40)
            .unwrap()
            .count,
        2
    );
    assert_eq!(
        ForgetOne::decode(&b[24..], opcode::BATCH_FORGET, 64).unwrap(),
        ForgetOne {
            nodeid: 5,
            nlookup: 6
        }
    );
    let r = ReadIn::decode(&sim::read_in(1, 2, 3), opcode::READ, 40).unwrap();
    assert_eq!((r.fh, r.offset, r.size), (1, 2, 3));
    assert_eq!(
        OpenIn::decode(&sim::open_in(2), opcode::OPEN, 40)
            .unwrap()
            .flags,
        2
    );
    assert_eq!(sim::fmap_size_body(416)[..4], 416u32.to_ne_bytes());
}

#[test]
fn sim_kernel_reports_missing_and_malformed_replies() {
    // Nobody serves the channel: the deadline passes and the error names the request.
    let (mut k, server) = Kernel::pair().unwrap();
    k.set_timeout(Duration::from_millis(50));
    let e = k.call(opcode::GETATTR, 1, &sim::getattr_in()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert_eq!(e.to_string(), "opcode 3 unique 2: no reply within 50ms");
    // The request arrived as the kernel would write it.
    let mut buf = [0u8; 100];
    let n = server.receive(&mut buf).unwrap();
    let h = InHeader::decode(&buf[..n], 0, 0).unwrap();
    assert_eq!((n, h.len, h.opcode, h.unique, h.nodeid), (56, 56, 3, 2, 1));

    // A header whose len disagrees with the bytes written.
    let bad = OutHeader {
        len: 20,
        error: 0,
        unique: 4,
    }
    .to_bytes();
    server.send(&[IoSlice::new(&bad)]).unwrap();
    let e = k.recv().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert_eq!(
        e.to_string(),
        "unique 4: the header's len is 20, 16 bytes were written"
    );
    // A reply to another request.
    k.request(opcode::STATFS, 1, &[]).unwrap();
    let other = OutHeader {
        len: 16,
        error: 0,
        unique: 99,
    }
    .to_bytes();
    server.send(&[IoSlice::new(&other)]).unwrap();
    let e = k.call(opcode::STATFS, 1, &[]);
    assert!(e.is_err());
    // (the first STATFS was unique 4, the call's is 6; the reply said 99)
    assert_eq!(
        e.unwrap_err().to_string(),
        "the reply to opcode 17 (unique 6) carries unique 99 (error 0)"
    );
    // The server side closing reads as EOF; a closed kernel side refuses to send.
    drop(server);
    assert_eq!(k.recv().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    k.close();
    assert_eq!(
        k.send_raw(&[1]).unwrap_err().kind(),
        io::ErrorKind::NotConnected
    );
}

#[test]
fn sim_serves_checks_silence_and_sees_the_session_end() {
    let mut sim = Sim::builder(Nothing).records(16).start().unwrap();
    // A kernel before 7.23 gets the 24-byte reply, decoded with the later fields zero.
    let out = sim.init(22, 0x3f_ffff, 0).unwrap();
    assert_eq!(
        (
            out.major,
            out.minor,
            out.max_write,
            out.flags2,
            out.max_pages
        ),
        (7, 45, 1 << 20, 0, 0)
    );
    assert_eq!(sim.session().negotiated().unwrap().minor, 22);
    let r = sim.call(opcode::GETATTR, 1, &sim::getattr_in()).unwrap();
    assert_eq!((r.error, r.wire_len()), (-libc::ENOSYS, 16));
    assert!(r.decode::<AttrOut>().is_err());
    // FORGET is not answered: the sentinel's reply comes first.
    sim.request(opcode::FORGET, 1, &sim::forget_in(1)).unwrap();
    let s = sim.expect_no_reply(1).unwrap();
    assert_eq!(s.unique, sim.last_unique());
    // A request that is answered is caught.
    sim.request(opcode::STATFS, 1, &[]).unwrap();
    let e = sim.expect_no_reply(1).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("1 message(s) arrived where none was due"),
        "{e}"
    );
    // DESTROY ends the session with the kernel side open; a wait for a reply then fails at once.
    assert_eq!(sim.call(opcode::DESTROY, 0, &[]).unwrap().error, 0);
    sim.wait_ended(Duration::from_secs(10)).unwrap();
    assert!(!sim.is_running() && sim.is_open());
    let e = sim.recv().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    let ops: Vec<u32> = sim.records().iter().map(|r| r.opcode).collect();
    assert_eq!(ops, [26, 3, 2, 3, 17, 3, 38]);
    sim.stop().unwrap();
    sim.stop().unwrap();
}

#[test]
fn sim_stop_ends_a_running_session() {
    let mut sim = Sim::builder(Nothing).workers(3).start().unwrap();
    sim.init_offer(0).unwrap();
    assert!(sim.is_running());
    assert_eq!(sim.serving_thread_allocations(), None, "still serving");
    sim.stop().unwrap();
    assert!(!sim.is_running());
    // This binary's allocator does not count (`sim::CountingAlloc` is not installed).
    assert_eq!(sim.serving_thread_allocations(), Some(0));
    assert_eq!(sim.session().stats().workers(), 3);
    assert_eq!(
        sim.call(opcode::STATFS, 1, &[]).unwrap_err().kind(),
        io::ErrorKind::NotConnected
    );
}
