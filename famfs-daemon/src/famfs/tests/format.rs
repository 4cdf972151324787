//! Format layer: structure sizes and the exact bytes of the spec's worked example (§13), encode/decode
//! round-trip properties, every S/H/E/F decoder check with its offset, and §9 offset resolution.

use super::*;

// -------------------------------------------------------------------------------------------------
// Sizes and the §13 worked example

#[test]
fn structure_sizes_match_the_c_layout() {
    let sb = Superblock::new(48, DEFAULT_LOG_LEN, 8 << 30, FS_UUID, DEV_UUID, HOST, b"x");
    assert_eq!(sb.encode().len(), 200);
    assert_eq!(LogHeader::new(DEFAULT_LOG_LEN).encode().len(), 48);
    let e = LogEntry {
        seqnum: 0,
        body: mkdir_body("a", 0, 0),
    };
    assert_eq!(e.encode(48).unwrap().len(), 544);
    assert_eq!(
        (
            SB_SIZE,
            LOG_HEADER_SIZE,
            ENTRY_SIZE,
            ENTRY_BODY_SIZE,
            FMAP_SIZE
        ),
        (200, 48, 544, 520, 416)
    );
    assert_eq!(
        (
            MKDIR_BODY_SIZE,
            ADD_DAXDEV_BODY_SIZE,
            SIMPLE_EXT_SIZE,
            IEXT_SIZE,
            DAXDEV_SIZE
        ),
        (92, 32, 24, 400, 88)
    );
    // Entry slots of the default log and the entry offset rule.
    assert_eq!(log_slots(DEFAULT_LOG_LEN), 15_420);
    assert_eq!(entry_offset(LOG_OFFSET, 0), 0x200030);
    assert_eq!(entry_offset(LOG_OFFSET, 1), 0x200250);
}

fn example_superblock_bytes(version_byte: &str, minor: &str, crc: &str) -> Vec<u8> {
    let mut v = hex(&format!(
        "ff 82 b2 87 00 00 00 00  {version_byte} 00 00 00 00 00 00 00
         00 00 20 00 00 00 00 00  00 00 80 00 00 00 00 00  00 00 20 00 00 00 00 00
         02 00 00 00  {minor} 00 00 00
         3f 2d 9c 1e 7b 4a 4e 8f 9a 61 0c 5d 2e 7f 8a 93
         a8 1c 0b 52 19 d4 4c 2e 8f 07 6e 3b 95 d1 c4 f0
         5e 0f 7a 2c d3 b1 4a 96 b8 e4 21 c7 f0 9a 6d 3b
         {crc} 00 00 00 00
         00 00 00 00  00 00 00 00
         00 00 00 00 02 00 00 00"
    ));
    v.extend([0u8; 16]);
    v.extend(b"/dev/dax0.0");
    v.extend([0u8; 53]);
    assert_eq!(v.len(), 200);
    v
}

#[test]
fn superblock_matches_worked_example_13_1() {
    let sb = Superblock::new(
        48,
        0x800000,
        0x2_0000_0000,
        FS_UUID,
        DEV_UUID,
        HOST,
        b"/dev/dax0.0",
    );
    let want = example_superblock_bytes("30", "02", "32 26 be 2c");
    assert_eq!(sb.encode().to_vec(), want);
    assert_eq!(sb.crc, 0x2cbe2632);
    assert_eq!(crc32fast::hash(&want[..96]), 0x2cbe2632);
    let d = Superblock::decode(&want).unwrap();
    assert_eq!(d, sb);
    assert_eq!(d.fs_uuid_string(), "3f2d9c1e-7b4a-4e8f-9a61-0c5d2e7f8a93");
    assert_eq!(d.dev_name_lossy(), "/dev/dax0.0");
    // Version 47 / OMF 2.1 test vector.
    let sb47 = Superblock::new(
        47,
        0x800000,
        0x2_0000_0000,
        FS_UUID,
        DEV_UUID,
        HOST,
        b"/dev/dax0.0",
    );
    let want47 = example_superblock_bytes("2f", "01", "77 04 7a 45");
    assert_eq!(sb47.encode().to_vec(), want47);
    assert_eq!(sb47.crc, 0x457a0477);
    assert_eq!(Superblock::decode(&want47).unwrap(), sb47);
}

fn example_header_bytes() -> Vec<u8> {
    hex(
        "0d f0 fe ca ad 0b 00 00  00 00 80 00 00 00 00 00  3b 3c 00 00 00 00 00 00
         78 50 87 a5 00 00 00 00  01 00 00 00 00 00 00 00  01 00 00 00 00 00 00 00",
    )
}

fn example_entry_bytes() -> Vec<u8> {
    let mut e = vec![0u8; 544];
    let mut put = |off: usize, bytes: &str| {
        let b = hex(bytes);
        e[off..off + b.len()].copy_from_slice(&b);
    };
    put(0x010, "00 00 10 00 00 00 00 00");
    put(0x018, "02 00 00 00");
    put(0x01c, "e8 03 00 00");
    put(0x020, "e8 03 00 00");
    put(0x024, "a4 01 00 00");
    put(0x028, "66 69 6c 65 30");
    put(0x080, "01 00 00 00");
    put(0x090, "00 00 a0 00 00 00 00 00");
    put(0x098, "00 00 20 00 00 00 00 00");
    put(0x218, "82 b1 6a eb 00 00 00 00");
    e
}

#[test]
fn log_header_and_entry_match_worked_example_13_2_and_13_3() {
    let mut h = LogHeader::new(0x800000);
    assert_eq!(h.crc, 0xa5875078);
    assert_eq!(h.last_index, 15419);
    h.next_seqnum = 1;
    h.next_index = 1;
    let want = example_header_bytes();
    assert_eq!(h.encode().to_vec(), want);
    assert_eq!(LogHeader::decode(&want, LOG_OFFSET, 0x800000).unwrap(), h);

    let e = LogEntry {
        seqnum: 0,
        body: EntryBody::File(FileEntry {
            size: 0x100000,
            flags: 2,
            uid: 1000,
            gid: 1000,
            mode: 0o644,
            relpath: RelPath::new(b"file0").unwrap(),
            fmap: simple(&[ext(0xA00000, 0x200000)]),
        }),
    };
    let want = example_entry_bytes();
    assert_eq!(e.encode(48).unwrap().to_vec(), want);
    assert_eq!(crc32fast::hash(&want[..536]), 0xeb6ab182);
    let raw: [u8; 544] = want.clone().try_into().unwrap();
    assert_eq!(LogEntry::decode(&raw, 0, 48, 0x200030).unwrap(), e);
    // Version 47 encodes FILE identically.
    assert_eq!(e.encode(47).unwrap().to_vec(), want);
}

/// The header's append position (what an append rewrites and a poller reads) against the §13.2 bytes.
#[test]
fn log_header_position_and_next_index_offset_match_worked_example_13_2() {
    let mut h = LogHeader::new(0x800000);
    h.next_seqnum = 1;
    h.next_index = 1;
    let want = example_header_bytes();
    assert_eq!(h.encode_position().to_vec(), want[32..48].to_vec());
    assert_eq!(
        (LH_OFF_NEXT_SEQNUM, LH_OFF_NEXT_INDEX, LH_POSITION_LEN),
        (32, 40, 16)
    );
    assert_eq!(h.used_len(), 48 + 544);
    let img = mem_image(32 * MIB, VERSION_48);
    assert_eq!(img.geometry().next_index_offset(), 0x200028);
    let at = img.geometry().next_index_offset();
    assert_eq!(img.store().read(at, 8).unwrap(), &0u64.to_le_bytes());
}

/// mkfs + creat on an 8 GiB sparse image reproduce the §13 bytes on disk.
#[test]
fn image_writes_the_worked_example_bytes() {
    let d = tempfile::tempdir().unwrap();
    let (p, mut img) = file_image(d.path(), 8 << 30);
    let id = img
        .creat("file0", 0x100000, 0o644, 1000, 1000, None)
        .unwrap();
    assert_eq!(id, FIRST_LOG_INO);
    drop(img);
    let st = Store::open(&p, false).unwrap();
    let sb = st.read(0, 200).unwrap();
    let want = example_superblock_bytes("30", "02", "32 26 be 2c");
    // dd_daxdev holds the image path instead of "/dev/dax0.0" (not covered by the CRC).
    assert_eq!(&sb[..0x88], &want[..0x88]);
    assert_eq!(st.read(0x200000, 48).unwrap(), &example_header_bytes()[..]);
    assert_eq!(st.read(0x200030, 544).unwrap(), &example_entry_bytes()[..]);
    // Slot 1 and the rest of the log are zero.
    assert!(
        st.read(0x200250, 0x800000 - 0x250)
            .unwrap()
            .iter()
            .all(|&b| b == 0)
    );
}

// -------------------------------------------------------------------------------------------------
// Round-trip properties

fn arb_extent() -> impl Strategy<Value = Extent> {
    (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(devindex, offset, len)| Extent {
        devindex,
        offset,
        len,
    })
}

fn arb_relpath() -> impl Strategy<Value = RelPath> {
    proptest::collection::vec(1u8..=255, 0..=79).prop_map(|v| RelPath::from_raw(raw_path(&v)))
}

fn arb_raw_fmap() -> impl Strategy<Value = RawFmap> {
    prop_oneof![
        (
            any::<u32>(),
            proptest::collection::vec(arb_extent(), MAX_SIMPLE_EXTENTS)
        )
            .prop_map(|(n, v)| RawFmap::Simple {
                nextents: n,
                extents: v.try_into().unwrap()
            }),
        (
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(arb_extent(), MAX_STRIPS)
        )
            .prop_map(|(niext, nstrips, chunk_size, v)| RawFmap::Interleave {
                niext,
                nstrips,
                chunk_size,
                strips: v.try_into().unwrap()
            }),
        (
            2u32..,
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), IEXT_SIZE)
        )
            .prop_map(|(ext_type, count, raw)| RawFmap::Unknown {
                ext_type,
                count,
                raw: raw.try_into().unwrap()
            }),
    ]
}

fn arb_body() -> impl Strategy<Value = EntryBody> {
    prop_oneof![
        (
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            arb_relpath(),
            arb_raw_fmap()
        )
            .prop_map(|(size, flags, uid, gid, mode, relpath, fmap)| {
                EntryBody::File(FileEntry {
                    size,
                    flags,
                    uid,
                    gid,
                    mode,
                    relpath,
                    fmap,
                })
            }),
        (any::<u32>(), any::<u32>(), any::<u32>(), arb_relpath()).prop_map(
            |(uid, gid, mode, relpath)| EntryBody::Mkdir(MkdirEntry {
                uid,
                gid,
                mode,
                relpath
            })
        ),
        (any::<u64>(), any::<[u8; 16]>(), any::<u32>()).prop_map(|(size, uuid, index)| {
            EntryBody::AddDaxdev(AddDaxdevEntry { size, uuid, index })
        }),
        (2u32..).prop_map(|etype| EntryBody::Other {
            etype: if etype == 3 { 2 } else { etype }
        }),
    ]
}

proptest! {
    #[test]
    fn prop_entry_round_trip(seqnum in any::<u64>(), body in arb_body()) {
        let e = LogEntry { seqnum, body };
        let bytes = e.encode(VERSION_48).unwrap();
        let d = LogEntry::decode(&bytes, seqnum, VERSION_48, 0).unwrap();
        prop_assert_eq!(d, e);
        prop_assert_eq!(d.encode(VERSION_48).unwrap(), bytes);
        // Upper half of the CRC slot is zero; CRC covers [0, 536).
        prop_assert_eq!(&bytes[540..544], &[0u8; 4]);
        prop_assert_eq!(u64::from_le_bytes(bytes[536..544].try_into().unwrap()),
            u64::from(crc32fast::hash(&bytes[..536])));
        // v47 cannot hold ADD_DAXDEV; everything else encodes identically.
        match body {
            EntryBody::AddDaxdev(_) => prop_assert!(e.encode(VERSION_47).is_err()),
            _ => prop_assert_eq!(e.encode(VERSION_47).unwrap(), bytes),
        }
    }

    #[test]
    fn prop_superblock_round_trip(
        v47 in any::<bool>(), log_shift in 23u32..30, extra in 0u64..1 << 40,
        uuid in any::<[u8; 16]>(), dev_uuid in any::<[u8; 16]>(), sys in any::<[u8; 16]>(),
        name in proptest::collection::vec(any::<u8>(), 0..80), flags in any::<u32>(), dd_uuid in any::<[u8; 16]>(),
    ) {
        let log_len = 1u64 << log_shift;
        let version = if v47 { 47 } else { 48 };
        let mut sb = Superblock::new(version, log_len, LOG_OFFSET + log_len + extra, uuid, dev_uuid, sys, &name);
        sb.sb_flags = flags;
        sb.dd_uuid = dd_uuid;
        let b = sb.encode();
        prop_assert_eq!(Superblock::decode(&b).unwrap(), sb.clone());
        prop_assert_eq!(Superblock::parse(&b).encode(), b);
        prop_assert_eq!(&b[108..112], &[0u8; 4]);
        // sb_flags and daxdev are outside the CRC.
        let mut b2 = b;
        b2[104] ^= 0xff;
        b2[150] ^= 0xff;
        prop_assert!(Superblock::decode(&b2).is_ok());
    }

    #[test]
    fn prop_header_round_trip(log_shift in 23u32..34, next in any::<u64>()) {
        let log_len = 1u64 << log_shift;
        let mut h = LogHeader::new(log_len);
        let next = next % (h.last_index + 2);
        h.next_index = next;
        h.next_seqnum = next;
        let b = h.encode();
        prop_assert_eq!(LogHeader::decode(&b, LOG_OFFSET, log_len).unwrap(), h);
        // next_seqnum / next_index are not covered by the CRC.
        prop_assert_eq!(&b[24..32], &LogHeader::new(log_len).encode()[24..32]);
    }

    #[test]
    fn prop_interleave_resolve_matches_the_formula(
        n in 1usize..=16, cshift in 0u32..3, stripes in 1u64..4, off_frac in 0.0f64..1.0,
    ) {
        let c = ALLOC_UNIT << cshift;
        let strips: Vec<Extent> = (0..n as u64).map(|k| ext((k + 1) * (1 << 32), stripes * c)).collect();
        let size = n as u64 * stripes * c;
        let f = Fmap::Interleaved { chunk_size: c, strips: strips.clone() };
        let off = ((size as f64) * off_frac) as u64 % size;
        let (dev, avail) = f.resolve(off, size).unwrap();
        let chunk = off / c;
        prop_assert_eq!(dev, strips[(chunk % n as u64) as usize].offset + (chunk / n as u64) * c + off % c);
        prop_assert_eq!(avail, c - off % c);
        prop_assert_eq!(f.resolve(size, size), None);
    }
}

// -------------------------------------------------------------------------------------------------
// Decoder checks: every S/H/E class with its offset

#[test]
fn superblock_checks_s1_to_s5_in_order() {
    let good = Superblock::new(48, DEFAULT_LOG_LEN, 8 << 30, FS_UUID, DEV_UUID, HOST, b"d");
    let enc = |f: &dyn Fn(&mut Superblock)| {
        let mut s = good.clone();
        f(&mut s);
        s.encode()
    };
    let code = |b: &[u8]| Superblock::decode(b).unwrap_err().code();
    // S1: magic (even with everything else broken).
    let mut b = enc(&|s| s.magic = 0x1234);
    b[96] ^= 1;
    assert_eq!(code(&b), "S1");
    // S2 before the CRC.
    let mut b = enc(&|s| s.version = 46);
    b[96] ^= 1;
    assert_eq!(
        Superblock::decode(&b).unwrap_err(),
        FormatError::SbVersion { found: 46 }
    );
    // S3: a stored CRC that is off, or has a non-zero upper half.
    let mut b = good.encode();
    b[40] ^= 1; // omf major changes, CRC now stale
    assert!(matches!(
        Superblock::decode(&b),
        Err(FormatError::SbCrc { .. })
    ));
    let mut b = good.encode();
    b[100] = 1;
    assert_eq!(code(&b), "S3");
    assert_eq!(code(&enc(&|s| s.alloc_unit = 8192)), "S4");
    assert!(Superblock::decode(&enc(&|s| s.alloc_unit = 4096)).is_ok());
    for bad in [
        enc(&|s| s.log_offset = 0x400000),
        enc(&|s| s.log_len = 0x900000),
        enc(&|s| s.log_len = 0x400000),
        enc(&|s| s.dev_size = 0x900000),
        enc(&|s| s.omf_major = 3),
    ] {
        let e = Superblock::decode(&bad).unwrap_err();
        assert_eq!(e.code(), "S5", "{e}");
    }
    assert_eq!(code(&good.encode()[..199]), "TRUNCATED");
    // S5 against the device: dd_size larger than the store.
    let e = Geometry::new(&good, (8 << 30) - 1).unwrap_err();
    assert_eq!(e.code(), "S5");
    assert!(
        e.to_string().contains("exceeds the image/device length"),
        "{e}"
    );
}

#[test]
fn header_checks_h1_to_h3() {
    let good = LogHeader::new(DEFAULT_LOG_LEN);
    let dec = |h: &LogHeader| LogHeader::decode(&h.encode(), LOG_OFFSET, DEFAULT_LOG_LEN);
    let mut b = good.encode();
    b[0] ^= 1;
    assert_eq!(
        LogHeader::decode(&b, LOG_OFFSET, DEFAULT_LOG_LEN)
            .unwrap_err()
            .code(),
        "H1"
    );
    let mut b = good.encode();
    b[16] ^= 1;
    let e = LogHeader::decode(&b, LOG_OFFSET, DEFAULT_LOG_LEN).unwrap_err();
    assert_eq!(e.code(), "H2");
    assert_eq!(e.offset(), Some(0x200018));
    // H3: log_len differs from the superblock; next_index past the end; seqnum != index.
    assert_eq!(
        LogHeader::decode(&good.encode(), LOG_OFFSET, 2 * DEFAULT_LOG_LEN)
            .unwrap_err()
            .code(),
        "H3"
    );
    let mut h = good;
    h.next_index = 15421;
    h.next_seqnum = 15421;
    assert_eq!(dec(&h).unwrap_err().offset(), Some(0x200028));
    h.next_index = 15420;
    h.next_seqnum = 15420;
    assert!(dec(&h).is_ok());
    h.next_seqnum = 3;
    assert_eq!(dec(&h).unwrap_err().offset(), Some(0x200020));
}

#[test]
fn entry_framing_e1() {
    let e = LogEntry {
        seqnum: 5,
        body: mkdir_body("a", 1, 1),
    };
    let b = e.encode(48).unwrap();
    assert!(LogEntry::decode(&b, 5, 48, 0).is_ok());
    assert_eq!(
        LogEntry::decode(&b, 6, 48, 0x1234).unwrap_err(),
        FormatError::EntrySeqnum {
            index: 6,
            offset: 0x1234,
            found: 5
        }
    );
    let mut c = b;
    c[300] = 1; // unused union tail is covered by the CRC
    assert_eq!(LogEntry::decode(&c, 5, 48, 0).unwrap_err().code(), "E1");
    let mut c = b;
    c[543] = 1; // upper half of the CRC slot
    assert!(matches!(
        LogEntry::decode(&c, 5, 48, 0),
        Err(FormatError::EntryCrc { .. })
    ));
    // Type 3 is ADD_DAXDEV in v48 and INVALID in v47; 4 is INVALID in v48.
    let mut raw = [0u8; 544];
    raw[8] = 3;
    assert!(matches!(
        LogEntry::decode_body(&raw, 48),
        EntryBody::AddDaxdev(_)
    ));
    assert_eq!(
        LogEntry::decode_body(&raw, 47),
        EntryBody::Other { etype: 3 }
    );
    assert_eq!(entry_type_name(3, 47), "INVALID");
    assert_eq!(entry_type_name(4, 48), "INVALID");
}

#[test]
fn relpath_checks_e3() {
    assert_eq!(check_relpath(b"a/b.c/d"), Ok(()));
    assert_eq!(check_relpath(b""), Err(PathProblem::Empty));
    assert_eq!(check_relpath(b"/a"), Err(PathProblem::Absolute));
    assert_eq!(check_relpath(b"a//b"), Err(PathProblem::EmptyComponent));
    assert_eq!(check_relpath(b"a/"), Err(PathProblem::EmptyComponent));
    assert_eq!(check_relpath(b"a/./b"), Err(PathProblem::DotComponent));
    assert_eq!(check_relpath(b".."), Err(PathProblem::DotComponent));
    assert_eq!(check_relpath(&[b'x'; 79]), Ok(()));
    assert_eq!(check_relpath(&[b'x'; 80]), Err(PathProblem::TooLong));
    assert_eq!(
        RelPath::from_raw([b'x'; 80]).checked(),
        Err(PathProblem::NoNul)
    );
    assert_eq!(RelPath::new(b"ab").unwrap().checked(), Ok(&b"ab"[..]));
}

#[test]
fn fmap_checks_f1_to_f3() {
    let geo = Geometry {
        version: 48,
        log_offset: LOG_OFFSET,
        log_len: DEFAULT_LOG_LEN,
        dev_size: 64 * MIB,
        slots: 15420,
    };
    let au = ALLOC_UNIT;
    let check = |f: RawFmap, size| f.check(size, &geo).map_err(|p| p.code());
    assert!(check(simple(&[ext(10 * MIB, au)]), au).is_ok());
    assert_eq!(check(simple(&[]), 0), Err("F1"));
    assert_eq!(
        check(
            RawFmap::Simple {
                nextents: 17,
                extents: [ext(10 * MIB, au); 16]
            },
            1
        ),
        Err("F1")
    );
    let mut dev1 = ext(10 * MIB, au);
    dev1.devindex = 1;
    for (bad, want) in [
        (dev1, "F2"),
        (ext(0, au), "F2"),
        (ext(10 * MIB + 4096, au), "F2"),
        (ext(10 * MIB, 4096), "F2"),
        (ext(62 * MIB, 2 * au), "F2"),
        (ext(u64::MAX - au + 1, au), "F2"),
        (ext(8 * MIB, au), "F2"),
    ] {
        assert_eq!(check(simple(&[bad]), 1), Err(want), "{bad:?}");
    }
    assert_eq!(check(simple(&[ext(10 * MIB, au)]), au + 1), Err("F3"));
    let il = |niext, nstrips, chunk, strips: &[Extent]| {
        let mut s = [Extent::default(); 16];
        s[..strips.len()].copy_from_slice(strips);
        RawFmap::Interleave {
            niext,
            nstrips,
            chunk_size: chunk,
            strips: s,
        }
    };
    let two = [ext(10 * MIB, 2 * au), ext(20 * MIB, 2 * au)];
    assert!(check(il(1, 2, au, &two), 8 * MIB).is_ok());
    assert_eq!(check(il(2, 2, au, &two), 1), Err("F1"));
    assert_eq!(check(il(1, 0, au, &two), 1), Err("F1"));
    assert_eq!(check(il(1, 17, au, &two), 1), Err("F1"));
    assert_eq!(check(il(1, 2, 3 * au, &two), 1), Err("F3"));
    assert_eq!(check(il(1, 2, 0, &two), 1), Err("F3"));
    assert_eq!(check(il(1, 2, 4096, &two), 1), Err("F3"));
    assert_eq!(check(il(1, 2, au, &two), 8 * MIB + 1), Err("F3"));
    assert_eq!(
        check(il(1, 2, au, &[two[0], ext(20 * MIB, au)]), 1),
        Err("F3")
    );
    assert_eq!(check(il(1, 3, au, &two), 1), Err("F2")); // strip 2 is all zero: offset 0
    assert_eq!(
        check(
            RawFmap::Unknown {
                ext_type: 2,
                count: 1,
                raw: [0; 400]
            },
            1
        ),
        Err("F1")
    );
}

#[test]
fn resolve_worked_example_section_9() {
    let f = Fmap::Interleaved {
        chunk_size: 2 * MIB,
        strips: vec![
            ext(0x1000000, 4 * MIB),
            ext(0x2000000, 4 * MIB),
            ext(0x3000000, 4 * MIB),
        ],
    };
    let size = 12 * MIB;
    assert_eq!(f.resolve(0, size), Some((0x1000000, 2 * MIB)));
    assert_eq!(f.resolve(0x280000, size), Some((0x2080000, 0x180000)));
    assert_eq!(f.resolve(0x480000, size), Some((0x3080000, 0x180000)));
    assert_eq!(f.resolve(0x6C0000, size), Some((0x12C0000, 0x140000)));
    assert_eq!(f.resolve(size, size), None);
    // Clipped to the file size; past the strips is unmapped even below the size.
    assert_eq!(f.resolve(0x6C0000, 0x6C0010), Some((0x12C0000, 0x10)));
    assert_eq!(f.resolve(12 * MIB, 13 * MIB), None);
    let s = Fmap::Simple(vec![ext(0xA00000, 2 * MIB), ext(0x2000000, 4 * MIB)]);
    assert_eq!(s.resolve(0, 5 * MIB), Some((0xA00000, 2 * MIB)));
    assert_eq!(s.resolve(2 * MIB - 1, 5 * MIB), Some((0xBFFFFF, 1)));
    assert_eq!(s.resolve(2 * MIB, 5 * MIB), Some((0x2000000, 3 * MIB)));
    assert_eq!(s.resolve(5 * MIB, 5 * MIB), None);
    assert_eq!(s.resolve(6 * MIB, 7 * MIB), None);
}
