//! Tests of the famfs format module: exact bytes of the spec's worked example (§13), round-trip
//! properties, §9 resolution, replay rules (§8, §10), incremental replay, crash safety, a sparse image
//! with real file data, the full default log, and the fuzz properties over decode + replay.
//!
//! Fuzzing: `fuzz_*` run 256 (random bytes) and 128 (byte flips) cases by default, fast enough for every
//! `cargo test`; set `PROPTEST_CASES=N` to run N cases, e.g.
//! `PROPTEST_CASES=100000 cargo test --release -p famfs-daemon --lib famfs::tests::fuzz`.

use std::path::Path;

use proptest::prelude::*;

use super::{
    alloc::StripeSpec,
    format::*,
    fsck::fsck,
    image::{Image, ImageError, ImageOptions, MkfsOptions},
    log::{self, LogError},
    replay::*,
    role::Role,
    store::Store,
};

const MIB: u64 = 1 << 20;
const HOST: [u8; 16] = hex16("5e0f7a2cd3b14a96b8e421c7f09a6d3b");
const FS_UUID: [u8; 16] = hex16("3f2d9c1e7b4a4e8f9a610c5d2e7f8a93");
const DEV_UUID: [u8; 16] = hex16("a81c0b5219d44c2e8f076e3b95d1c4f0");

const fn hex16(s: &str) -> [u8; 16] {
    let b = s.as_bytes();
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = (nib(b[2 * i]) << 4) | nib(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nib(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("bad hex"),
    }
}

/// "ff 82 b2 ..." → bytes.
fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

fn opts() -> ImageOptions {
    ImageOptions {
        writable: true,
        system_uuid_path: None,
        host_uuid: Some(HOST),
    }
}

fn mkfs_opts(version: u64) -> MkfsOptions {
    MkfsOptions {
        version,
        host_uuid: Some(HOST),
        uuid: Some(FS_UUID),
        dev_uuid: Some(DEV_UUID),
        ..Default::default()
    }
}

/// An in-memory filesystem of `size` bytes (no 4 GiB minimum).
fn mem_image(size: u64, version: u64) -> Image {
    let o = MkfsOptions {
        min_size: 0,
        ..mkfs_opts(version)
    };
    Image::mkfs_store(Store::from_vec(vec![0; size as usize]), &o, b"<memory>").unwrap()
}

/// A sparse image file of `size` bytes in `dir`, formatted.
fn file_image(dir: &Path, size: u64) -> (std::path::PathBuf, Image) {
    let p = dir.join("famfs.img");
    let o = MkfsOptions {
        size: Some(size),
        ..mkfs_opts(VERSION_48)
    };
    let img = Image::mkfs(&p, &o).unwrap();
    (p, img)
}

fn ext(offset: u64, len: u64) -> Extent {
    Extent {
        devindex: 0,
        offset,
        len,
    }
}

fn file_body(path: &str, size: u64, fmap: RawFmap) -> EntryBody {
    EntryBody::File(FileEntry {
        size,
        flags: FILE_FLAG_ALL_HOSTS_RW,
        uid: 1000,
        gid: 1000,
        mode: 0o644,
        relpath: RelPath::from_raw(raw_path(path.as_bytes())),
        fmap,
    })
}

fn simple(exts: &[Extent]) -> RawFmap {
    let mut a = [Extent::default(); MAX_SIMPLE_EXTENTS];
    a[..exts.len()].copy_from_slice(exts);
    RawFmap::Simple {
        nextents: exts.len() as u32,
        extents: a,
    }
}

fn raw_path(p: &[u8]) -> [u8; RELPATH_LEN] {
    let mut r = [0u8; RELPATH_LEN];
    let n = p.len().min(RELPATH_LEN);
    r[..n].copy_from_slice(&p[..n]);
    r
}

fn mkdir_body(path: &str, uid: u32, gid: u32) -> EntryBody {
    EntryBody::Mkdir(MkdirEntry {
        uid,
        gid,
        mode: 0o755,
        relpath: RelPath::from_raw(raw_path(path.as_bytes())),
    })
}

/// Append raw bodies bypassing the namespace checks (to build anomalous logs), then refresh.
fn append_raw(img: &mut Image, bodies: &[EntryBody]) -> u64 {
    let geo = *img.geometry();
    let i = log::append(img.store_mut(), &geo, bodies).unwrap();
    img.refresh().unwrap();
    i
}

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

// -------------------------------------------------------------------------------------------------
// Replay rules

#[test]
fn replay_rules_ids_duplicates_parents_and_types() {
    let mut img = mem_image(32 * MIB, VERSION_48);
    let au = ALLOC_UNIT;
    let first = append_raw(
        &mut img,
        &[
            mkdir_body("a", 1000, 1000),                           // 0: ok
            mkdir_body("a/b", 0, 1000),                            // 1: ok, owner quirk → 0:0
            file_body("a/b/f", 5, simple(&[ext(10 * MIB, au)])),   // 2: ok
            file_body("a/b/f", 5, simple(&[ext(12 * MIB, au)])),   // 3: D1 duplicate (warning)
            mkdir_body("a/b/f", 1, 1),                             // 4: D1 conflict (error)
            file_body("a", 1, simple(&[ext(14 * MIB, au)])),       // 5: D1 conflict
            mkdir_body("x/y", 1, 1),                               // 6: D2 missing
            file_body("a/b/f/z", 1, simple(&[ext(16 * MIB, au)])), // 7: D2 not a dir
            EntryBody::Other { etype: 2 },                         // 8: E2 DELETE
            EntryBody::Other { etype: 99 },                        // 9: E2 unknown
            EntryBody::AddDaxdev(AddDaxdevEntry {
                size: 1,
                uuid: [1; 16],
                index: 1,
            }), // 10: note
            file_body("/abs", 1, simple(&[ext(18 * MIB, au)])),    // 11: E3
            file_body("c", 1, simple(&[ext(0, au)])),              // 12: F2
            file_body("d", 1, simple(&[ext(10 * MIB, au)])), // 13: F4 collision with entry 2 (created)
            mkdir_body("a", 1, 1),                           // 14: D1 duplicate dir (warning)
        ],
    );
    assert_eq!(first, 0);
    let ns = img.namespace();
    assert_eq!(ns.next_index(), 15);
    assert!(ns.stopped().is_none());
    let a = ns.lookup(ROOT_INO, b"a").unwrap();
    assert_eq!(a, FIRST_LOG_INO);
    let b = ns.lookup(a, b"b").unwrap();
    assert_eq!(b, FIRST_LOG_INO + 1);
    let f = ns.lookup_path(b"a/b/f").unwrap();
    assert_eq!(f, FIRST_LOG_INO + 2);
    let fi = ns.get(f).unwrap();
    assert_eq!(
        (
            fi.parent,
            &*fi.name,
            fi.size(),
            fi.mode,
            fi.uid,
            fi.gid,
            fi.log_index
        ),
        (b, &b"f"[..], 5, 0o644, 1000, 1000, Some(2))
    );
    assert_eq!(fi.fmap(), Some(&Fmap::Simple(vec![ext(10 * MIB, au)])));
    assert_eq!(
        (ns.get(a).unwrap().uid, ns.get(a).unwrap().gid),
        (1000, 1000)
    );
    assert_eq!((ns.get(b).unwrap().uid, ns.get(b).unwrap().gid), (0, 0));
    assert_eq!(ns.lookup_path(b"d"), Some(FIRST_LOG_INO + 13));
    let got: Vec<(u64, &str, Severity)> = ns
        .anomalies()
        .iter()
        .map(|a| (a.index, a.code(), a.severity()))
        .collect();
    assert_eq!(
        got,
        vec![
            (3, "D1", Severity::Warning),
            (4, "D1", Severity::Error),
            (5, "D1", Severity::Error),
            (6, "D2", Severity::Error),
            (7, "D2", Severity::Error),
            (8, "E2", Severity::Error),
            (9, "E2", Severity::Error),
            (10, "NOTE", Severity::Note),
            (11, "E3", Severity::Error),
            (12, "F2", Severity::Error),
            (13, "F4", Severity::Warning),
            (14, "D1", Severity::Warning),
        ]
    );
    // Messages name the entry, its byte offset and the object.
    let msg = ns.anomalies()[3].to_string();
    assert_eq!(
        msg,
        "[D2] log entry 6 (byte offset 0x200cf0): parent \"x\" of \"x/y\" does not exist; entry skipped"
    );
    let msg = ns.anomalies()[4].to_string();
    assert!(
        msg.contains("parent \"a/b/f\" of \"a/b/f/z\" is not a directory"),
        "{msg}"
    );
    let msg = ns.anomalies()[10].to_string();
    assert!(
        msg.contains(&format!("already allocated to inode {f}")),
        "{msg}"
    );
    assert_eq!(
        ns.children(ROOT_INO)
            .iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect::<Vec<_>>(),
        vec![".meta", "a", "d"]
    );
    assert_eq!(ns.path_of(f).unwrap(), b"a/b/f");
    // 4 synthesized + a, a/b, a/b/f, d.
    assert_eq!(ns.len(), 8);
    // fsck reports them all, not clean.
    let r = fsck(img.store(), Some(&HOST));
    assert!(!r.is_clean());
    assert_eq!(r.findings.len(), 12);
}

#[test]
fn meta_files_and_client_role() {
    let img = mem_image(16 * MIB, VERSION_48);
    let ns = img.namespace();
    assert_eq!(img.role(), Role::Master);
    assert_eq!(ns.lookup_path(b".meta/.superblock"), Some(SUPERBLOCK_INO));
    assert_eq!(ns.lookup_path(b".meta/.log"), Some(LOG_INO));
    let sbf = ns.get(SUPERBLOCK_INO).unwrap();
    assert_eq!(
        (sbf.size(), sbf.mode, sbf.fmap()),
        (2 * MIB, 0o444, Some(&Fmap::Simple(vec![ext(0, 2 * MIB)])))
    );
    let lf = ns.get(LOG_INO).unwrap();
    assert_eq!(
        (lf.size(), lf.mode, lf.fmap()),
        (
            8 * MIB,
            0o644,
            Some(&Fmap::Simple(vec![ext(0x200000, 8 * MIB)]))
        )
    );
    assert_eq!(ns.get(META_DIR_INO).unwrap().parent, ROOT_INO);
    // The same bytes opened by another host: client, .log read-only, appends refused.
    let store = img.into_store();
    let mut other = ImageOptions {
        host_uuid: Some([9; 16]),
        ..opts()
    };
    let mut c = Image::from_store(store, &other).unwrap();
    assert_eq!(c.role(), Role::Client);
    assert_eq!(c.namespace().get(LOG_INO).unwrap().mode, 0o444);
    let e = c.mkdir("x", 0o755, 0, 0, false).unwrap_err();
    assert!(
        matches!(e, ImageError::Log(LogError::NotMaster { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("only the master appends"), "{e}");
    // An unknown host uuid is a client too.
    other.host_uuid = None;
    other.system_uuid_path = Some("/nonexistent/famfs-test/system_uuid".into());
    let c = Image::from_store(c.into_store(), &other).unwrap();
    assert_eq!(c.role(), Role::Client);
}

#[test]
fn version_47_images_are_read_and_written() {
    let mut img = mem_image(32 * MIB, VERSION_47);
    assert_eq!(img.superblock().omf_minor, 1);
    img.mkdir("d", 0o755, 0, 0, false).unwrap();
    let id = img.creat("d/f", 3, 0o600, 0, 0, None).unwrap();
    img.write_file(id, 0, b"abc").unwrap();
    // Type 3 in v47 is INVALID: ignored with E2; ADD_DAXDEV cannot be appended.
    let geo = *img.geometry();
    assert!(matches!(
        log::append(
            img.store_mut(),
            &geo,
            &[EntryBody::AddDaxdev(AddDaxdevEntry {
                size: 0,
                uuid: [0; 16],
                index: 0
            })]
        ),
        Err(LogError::Format(FormatError::Unencodable { .. }))
    ));
    append_raw(&mut img, &[EntryBody::Other { etype: 3 }]);
    let a = &img.namespace().anomalies()[0];
    assert_eq!(a.code(), "E2");
    assert!(a.to_string().contains("INVALID"), "{a}");
    let img2 = Image::from_store(img.into_store(), &opts()).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(img2.read_file(id, 0, &mut buf).unwrap(), 3);
    assert_eq!(&buf[..3], b"abc");
}

// -------------------------------------------------------------------------------------------------
// Incremental replay, crash safety, E1

fn ns_from(log: &[u8], geo: &Geometry, upto: &[u64]) -> Namespace {
    let mut ns = Namespace::new(geo, Role::Master);
    let full = LogHeader::decode(log, geo.log_offset, geo.log_len).unwrap();
    for &k in upto.iter().chain([full.next_index].iter()) {
        let mut h = full;
        h.next_index = k.min(full.next_index);
        h.next_seqnum = h.next_index;
        ns.apply_log(log, &h, true);
    }
    ns
}

fn arb_small_body() -> impl Strategy<Value = EntryBody> {
    let names = prop_oneof![
        Just("a"),
        Just("b"),
        Just("a/b"),
        Just("a/c"),
        Just("b/a"),
        Just("a/b/c"),
        Just("/x"),
        Just("")
    ];
    prop_oneof![
        (names.clone(), 0u32..3).prop_map(|(p, u)| mkdir_body(p, u, u)),
        (names, 10u64..16, 1u64..3, 0u64..5 * MIB).prop_map(|(p, o, l, s)| file_body(
            p,
            s,
            simple(&[ext(o * MIB * 2, l * ALLOC_UNIT)])
        )),
        (2u32..6).prop_map(|etype| EntryBody::Other { etype }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Applying a log in arbitrary pieces gives the same namespace as one full play.
    #[test]
    fn prop_incremental_replay_equals_full(
        bodies in proptest::collection::vec(arb_small_body(), 0..40),
        cuts in proptest::collection::vec(0u64..45, 0..6),
    ) {
        let mut img = mem_image(40 * MIB, VERSION_48);
        let geo = *img.geometry();
        log::append(img.store_mut(), &geo, &bodies).unwrap();
        let log = img.store().read(geo.log_offset, geo.log_len).unwrap().to_vec();
        let full = ns_from(&log, &geo, &[]);
        let mut cuts = cuts;
        cuts.sort();
        let pieces = ns_from(&log, &geo, &cuts);
        prop_assert_eq!(&pieces, &full);
        prop_assert_eq!(full.next_index(), bodies.len() as u64);
        // Image::refresh after each append agrees too.
        let mut inc = mem_image(40 * MIB, VERSION_48);
        let mut added = 0;
        for b in &bodies {
            log::append(inc.store_mut(), &geo, std::slice::from_ref(b)).unwrap();
            added += inc.refresh().unwrap().added.len();
        }
        prop_assert_eq!(inc.namespace(), &full);
        prop_assert_eq!(added, full.iter().filter(|i| i.log_index.is_some()).count());
    }
}

#[test]
fn torn_append_is_invisible_and_e1_stops_the_play() {
    let mut img = mem_image(32 * MIB, VERSION_48);
    img.mkdir("a", 0o755, 0, 0, false).unwrap();
    img.mkdir("b", 0o755, 0, 0, false).unwrap();
    let geo = *img.geometry();
    // A crash after the entry write but before the header update: slot 2 written, header still 2.
    let torn = LogEntry {
        seqnum: 2,
        body: mkdir_body("torn", 0, 0),
    }
    .encode(48)
    .unwrap();
    img.store_mut()
        .write_at(geo.entry_offset(2), &torn)
        .unwrap();
    let r = img.refresh().unwrap();
    assert!(r.added.is_empty() && r.stopped.is_none());
    assert_eq!(img.namespace().lookup_path(b"torn"), None);
    let report = fsck(img.store(), Some(&HOST));
    assert!(report.is_clean(), "{}", report.render_text());
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].code, "NOTE");
    assert_eq!(report.findings[0].index, Some(2));
    // The next append overwrites the torn slot.
    let c = img.mkdir("c", 0o755, 0, 0, false).unwrap();
    assert_eq!(c, FIRST_LOG_INO + 2);
    assert!(fsck(img.store(), Some(&HOST)).findings.is_empty());

    // Header advanced over a slot whose bytes are bad (e.g. reordered writes): E1 stop at 3.
    img.mkdir("d", 0o755, 0, 0, false).unwrap();
    img.mkdir("e", 0o755, 0, 0, false).unwrap();
    let off = geo.entry_offset(3) + 40;
    img.store_mut().write_at(off, b"X").unwrap();
    let mut img2 = Image::from_store(img.into_store(), &opts()).unwrap();
    let ns = img2.namespace();
    assert_eq!(ns.next_index(), 3);
    assert!(ns.lookup_path(b"c").is_some());
    assert!(ns.lookup_path(b"d").is_none() && ns.lookup_path(b"e").is_none());
    let stop = ns.stopped().unwrap();
    assert_eq!((stop.index, stop.code()), (3, "E1"));
    assert_eq!(stop.offset, 0x200000 + 48 + 3 * 544);
    // Appends are refused while the play is stopped.
    let e = img2.mkdir("f", 0o755, 0, 0, false).unwrap_err();
    assert!(matches!(e, ImageError::LogStopped(_)), "{e}");
    let report = fsck(img2.store(), Some(&HOST));
    assert_eq!(report.findings[0].code, "E1");
    assert_eq!(report.findings[0].index, Some(3));
    // Repair the byte: the next refresh continues from entry 3.
    img2.store_mut().write_at(off, &[0]).unwrap();
    let r = img2.refresh().unwrap();
    assert_eq!(r.stopped, None);
    assert_eq!(
        r.added.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![FIRST_LOG_INO + 3, FIRST_LOG_INO + 4]
    );
    assert_eq!(r.added[1].name.as_ref(), b"e");
    assert_eq!(r.added[1].parent, ROOT_INO);
}

#[test]
fn mkdir_p_and_creat_errors() {
    let mut img = mem_image(64 * MIB, VERSION_48);
    let c = img.mkdir("/x/y/z/", 0o750, 5, 6, true).unwrap();
    assert_eq!(c, FIRST_LOG_INO + 2);
    assert_eq!(img.namespace().path_of(c).unwrap(), b"x/y/z");
    // -p on an existing path returns it without appending.
    assert_eq!(img.mkdir("x/y/z", 0o750, 5, 6, true).unwrap(), c);
    assert_eq!(img.namespace().next_index(), 3);
    assert!(matches!(
        img.mkdir("x/y", 0o750, 5, 6, false),
        Err(ImageError::Exists { .. })
    ));
    assert!(matches!(
        img.mkdir("q/r", 0o750, 5, 6, false),
        Err(ImageError::NotFound { .. })
    ));
    let f = img.creat("x/f", 1, 0o7777, 0, 0, None).unwrap();
    assert_eq!(img.namespace().get(f).unwrap().mode, 0o777);
    assert!(matches!(
        img.mkdir("x/f/g", 0o750, 5, 6, true),
        Err(ImageError::NotDir { .. })
    ));
    assert!(matches!(
        img.creat("x/f/g", 1, 0o644, 0, 0, None),
        Err(ImageError::NotDir { .. })
    ));
    assert!(matches!(
        img.creat("x/f", 1, 0o644, 0, 0, None),
        Err(ImageError::Exists { .. })
    ));
    for bad in ["", "a/../b", &"n".repeat(80)] {
        assert!(
            matches!(
                img.creat(bad, 1, 0o644, 0, 0, None),
                Err(ImageError::BadPath { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        img.creat("big", 1 << 40, 0o644, 0, 0, None),
        Err(ImageError::Alloc(_))
    ));
    // Data past EOF and on directories.
    assert!(matches!(
        img.write_file(f, 0, b"ab"),
        Err(ImageError::PastEof { .. })
    ));
    assert!(matches!(
        img.write_file(c, 0, b"a"),
        Err(ImageError::NotFile { .. })
    ));
    assert!(matches!(
        img.read_file(999, 0, &mut [0; 1]),
        Err(ImageError::NoInode { .. })
    ));
    assert_eq!(img.read_file(f, 1, &mut [0; 4]).unwrap(), 0);
}

// -------------------------------------------------------------------------------------------------
// A sparse image with real data

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

fn read_all(img: &Image, id: u64) -> Vec<u8> {
    let size = img.namespace().get(id).unwrap().size() as usize;
    let mut buf = vec![0u8; size + 7];
    // Read in odd-sized pieces to cross extent and chunk boundaries.
    let mut off = 0;
    loop {
        let end = (off + 1_000_003).min(buf.len());
        let n = img.read_file(id, off as u64, &mut buf[off..end]).unwrap();
        off += n;
        if n == 0 {
            break;
        }
    }
    assert_eq!(off, size);
    buf.truncate(size);
    buf
}

#[test]
fn sparse_image_files_written_and_read_back_through_extents() {
    let d = tempfile::tempdir().unwrap();
    let (path, mut img) = file_image(d.path(), 4 << 30);
    img.mkdir("data/set/deep", 0o755, 1000, 1000, true).unwrap();
    let stripe = StripeSpec {
        nstrips: 3,
        nbuckets: 8,
        chunk_size: 2 * MIB,
    };
    let specs: Vec<(&str, u64, Option<StripeSpec>)> = vec![
        ("data/empty", 0, None),
        ("data/one", 1, None),
        ("data/set/two_mib", 2 * MIB, None),
        ("data/set/two_mib_plus", 2 * MIB + 1, None),
        ("data/set/deep/sixty_four", 64 * MIB, None),
        ("data/striped", 13 * MIB + 5, Some(stripe)),
    ];
    let mut files = Vec::new();
    for (i, (p, size, st)) in specs.iter().enumerate() {
        let id = img.creat(p, *size, 0o644, 1000, 1000, *st).unwrap();
        let data = pattern(i as u64 + 1, *size as usize);
        // Write in two uneven halves.
        let h = data.len() / 3;
        img.write_file(id, 0, &data[..h]).unwrap();
        img.write_file(id, h as u64, &data[h..]).unwrap();
        files.push((id, data));
    }
    // Fragment the free space with 2 MiB spacers every 30 units from just after the used area; an
    // explicit 3-extent file; then a 64 MiB simple file no longer fits in one run and is split.
    let units = img.geometry().dev_size / ALLOC_UNIT;
    let s0 = img
        .namespace()
        .bitmap()
        .free_runs(0, units)
        .next()
        .unwrap()
        .0
        + 10;
    let mut unit = s0;
    let mut n = 0;
    while unit < units {
        let fm = Fmap::Simple(vec![ext(unit * ALLOC_UNIT, ALLOC_UNIT)]);
        img.creat_with_fmap(&format!("spacer{n}"), 1, 0o644, 0, 0, &fm)
            .unwrap();
        unit += 30;
        n += 1;
    }
    let explicit = Fmap::Simple(vec![
        ext((s0 + 1) * ALLOC_UNIT, 3 * ALLOC_UNIT),
        ext((s0 + 31) * ALLOC_UNIT, ALLOC_UNIT),
        ext((s0 + 61) * ALLOC_UNIT, 2 * ALLOC_UNIT),
    ]);
    let id = img
        .creat_with_fmap("data/multi", 11 * MIB + 3, 0o600, 0, 0, &explicit)
        .unwrap();
    let data = pattern(78, (11 * MIB + 3) as usize);
    img.write_file(id, 0, &data).unwrap();
    // Independent placement check: the bytes sit at the extents' device offsets in list order.
    assert_eq!(
        img.store().read((s0 + 31) * ALLOC_UNIT, 16).unwrap(),
        &data[6 * MIB as usize..6 * MIB as usize + 16]
    );
    assert_eq!(
        img.store().read((s0 + 61) * ALLOC_UNIT, 16).unwrap(),
        &data[8 * MIB as usize..8 * MIB as usize + 16]
    );
    files.push((id, data));
    // Explicit extents must pass F1-F3.
    assert!(matches!(
        img.creat_with_fmap(
            "data/f3",
            3 * MIB,
            0o600,
            0,
            0,
            &Fmap::Simple(vec![ext((units - 1) * ALLOC_UNIT, ALLOC_UNIT)])
        ),
        Err(ImageError::BadFmap {
            problem: FmapProblem::SizeExceedsExtents { .. },
            ..
        })
    ));
    assert!(matches!(
        img.creat_with_fmap("data/f1", 1, 0o600, 0, 0, &Fmap::Simple(vec![])),
        Err(ImageError::BadFmap {
            problem: FmapProblem::ExtentCount(0),
            ..
        })
    ));
    // Taking an allocated range explicitly is refused.
    assert!(matches!(
        img.creat_with_fmap(
            "data/clash",
            1,
            0o600,
            0,
            0,
            &Fmap::Simple(vec![ext(s0 * ALLOC_UNIT, ALLOC_UNIT)])
        ),
        Err(ImageError::NotFree { .. })
    ));
    let id = img
        .creat("data/fragmented", 64 * MIB, 0o644, 0, 0, None)
        .unwrap();
    let fm = img.namespace().get(id).unwrap().fmap().unwrap().clone();
    assert!(
        matches!(&fm, Fmap::Simple(e) if e.len() == 2 && e[0].len == 29 * ALLOC_UNIT),
        "expected a 2-extent fallback: {fm:?}"
    );
    let data = pattern(77, 64 * MIB as usize);
    img.write_file(id, 0, &data).unwrap();
    let second = fm.extents()[1];
    assert_eq!(
        img.store().read(second.offset, 16).unwrap(),
        &data[58 * MIB as usize..58 * MIB as usize + 16]
    );
    files.push((id, data));
    // Interleave placement per §9, checked against raw device bytes.
    let (sid, sdata) = &files[5];
    let Some(Fmap::Interleaved { chunk_size, strips }) =
        img.namespace().get(*sid).unwrap().fmap().cloned()
    else {
        panic!("striped file is not interleaved")
    };
    assert_eq!((chunk_size, strips.len()), (2 * MIB, 3));
    assert!(strips.iter().all(|s| s.len == 6 * MIB));
    let bucket = img.geometry().dev_size / ALLOC_UNIT / 8 * ALLOC_UNIT;
    let buckets: Vec<u64> = strips.iter().map(|s| s.offset / bucket).collect();
    assert_eq!(buckets, vec![0, 1, 2], "one strip per bucket");
    for chunk in 0..7u64 {
        let dev = strips[(chunk % 3) as usize].offset + (chunk / 3) * chunk_size;
        let fo = (chunk * chunk_size) as usize;
        let n = 4096.min(sdata.len() - fo);
        assert_eq!(img.store().read(dev, n as u64).unwrap(), &sdata[fo..fo + n]);
    }
    for (id, data) in &files {
        assert!(read_all(&img, *id) == *data, "inode {id} differs");
    }
    let report = fsck(img.store(), Some(&HOST));
    assert!(report.is_clean(), "{}", report.render_text());
    drop(img);
    // Reopen read-only: same namespace and bytes.
    let img = Image::open_with(
        &path,
        &ImageOptions {
            writable: false,
            ..opts()
        },
    )
    .unwrap();
    for (id, data) in &files {
        assert!(
            read_all(&img, *id) == *data,
            "inode {id} differs after reopen"
        );
    }
    assert_eq!(img.namespace().get(files[0].0).unwrap().size(), 0);
    assert_eq!(
        img.namespace().lookup_path(b"data/set/deep/sixty_four"),
        Some(files[4].0)
    );
    // The image stays sparse: far less than 4 GiB allocated.
    use std::os::unix::fs::MetadataExt;
    let blocks = std::fs::metadata(&path).unwrap().blocks() * 512;
    assert!(blocks < 400 * MIB, "{blocks} bytes allocated");
}

#[test]
fn truncated_image_errors_instead_of_faulting() {
    let d = tempfile::tempdir().unwrap();
    let (path, mut img) = file_image(d.path(), 4 << 30);
    let id = img.creat("f", 4 * MIB, 0o644, 0, 0, None).unwrap();
    img.write_file(id, 0, &[7u8; 4096]).unwrap();
    // Truncate behind the open image's back, then refresh: errors, no SIGBUS.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(3 * MIB)
        .unwrap();
    let e = img.refresh().unwrap_err();
    assert!(e.to_string().contains("[S5]"), "{e}");
    let e = img.read_file(id, 0, &mut [0u8; 16]).unwrap_err();
    assert!(
        e.to_string().contains("truncated after it was opened"),
        "{e}"
    );
    assert!(img.write_file(id, 0, b"x").is_err());
    // Opening a truncated image: dd_size exceeds the file.
    let e = Image::open_with(&path, &opts()).err().unwrap();
    assert!(e.to_string().contains("[S5]"), "{e}");
    // Shorter than the log header / superblock.
    std::fs::write(&path, [0u8; 100]).unwrap();
    let e = Image::open_with(&path, &opts()).err().unwrap();
    assert!(e.to_string().contains("superblock"), "{e}");
    std::fs::write(&path, []).unwrap();
    assert!(Image::open_with(&path, &opts()).is_err());
}

// -------------------------------------------------------------------------------------------------
// Full default log

#[test]
fn full_default_log_reports_log_full() {
    let d = tempfile::tempdir().unwrap();
    let (path, mut img) = file_image(d.path(), 4 << 30);
    let slots = img.geometry().slots;
    assert_eq!(slots, 15_420);
    let geo = *img.geometry();
    let names: Vec<String> = (0..slots - 1).map(|i| format!("d{i:05}")).collect();
    let bodies: Vec<EntryBody> = names.iter().map(|n| mkdir_body(n, 1, 1)).collect();
    for chunk in bodies.chunks(4096) {
        log::append(img.store_mut(), &geo, chunk).unwrap();
    }
    img.refresh().unwrap();
    // The last slot through the high-level API, then "log full".
    let last = img.mkdir("last", 0o755, 0, 0, false).unwrap();
    assert_eq!(last, FIRST_LOG_INO + 15_419);
    assert_eq!(img.log_header().next_index, 15_420);
    let e = img.mkdir("one-more", 0o755, 0, 0, false).unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::Log(LogError::Full {
                slots: 15_420,
                next_index: 15_420,
                ..
            })
        ),
        "{e}"
    );
    assert!(e.to_string().starts_with("log full"), "{e}");
    assert!(matches!(
        img.creat("f", 1, 0o644, 0, 0, None),
        Err(ImageError::Log(LogError::Full { .. }))
    ));
    drop(img);
    let img = Image::open_with(&path, &opts()).unwrap();
    assert_eq!(img.namespace().len(), 4 + 15_420);
    assert_eq!(img.namespace().next_index(), 15_420);
    assert!(img.namespace().anomalies().is_empty());
    assert_eq!(img.namespace().children(ROOT_INO).len(), 1 + 15_420);
    let report = fsck(img.store(), Some(&HOST));
    assert!(report.is_clean());
    assert_eq!(report.entries_played, 15_420);
}

// -------------------------------------------------------------------------------------------------
// Fuzz: decode + replay never panic

fn fuzz_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Exercise everything reachable from an opened image: every inode, resolve, reads, fsck.
fn exercise(store: Store) {
    let report = fsck(&store, Some(&HOST));
    let _ = report.render_text();
    let _ = report.to_json();
    // fsck and open agree on what is fatal (superblock / header classes).
    let fatal = report.findings.iter().any(|f| {
        f.code.starts_with('S')
            || f.code.starts_with('H')
            || f.code == "IO"
            || f.code == "TRUNCATED"
    });
    let opened = Image::from_store(store, &opts());
    assert_eq!(opened.is_ok(), !fatal, "{}", report.render_text());
    if let Ok(mut img) = opened {
        let ns = img.namespace();
        let ids: Vec<u64> = ns.iter().map(|i| i.id).collect();
        for &id in &ids {
            let ns = img.namespace();
            let _ = ns.path_of(id);
            let _ = ns.children(id);
            if let Some(i) = ns.get(id).filter(|i| i.id != ROOT_INO) {
                assert!(ns.lookup(i.parent, &i.name).is_some());
                if let Some(f) = i.fmap() {
                    let size = i.size();
                    for off in [0, size / 2, size.saturating_sub(1), size] {
                        let _ = f.resolve(off, size);
                    }
                }
            }
            let mut buf = [0u8; 64];
            let _ = img.read_file(id, 0, &mut buf);
        }
        for a in img.namespace().anomalies() {
            let _ = a.to_string();
        }
        let _ = img.refresh();
        let _ = img.mkdir("fz", 0o755, 0, 0, true);
        let _ = img.creat("fz/f", 3 * MIB, 0o644, 0, 0, None);
    }
}

fn valid_image() -> Vec<u8> {
    let mut img = mem_image(24 * MIB, VERSION_48);
    img.mkdir("a/b", 0o755, 1, 1, true).unwrap();
    let f = img.creat("a/b/f", 100, 0o644, 1, 1, None).unwrap();
    img.write_file(f, 0, &[5; 100]).unwrap();
    img.creat(
        "a/s",
        3 * MIB,
        0o644,
        1,
        1,
        Some(StripeSpec {
            nstrips: 2,
            nbuckets: 4,
            chunk_size: 2 * MIB,
        }),
    )
    .unwrap();
    append_raw(
        &mut img,
        &[
            EntryBody::Other { etype: 9 },
            file_body("a/x", 1, simple(&[ext(20 * MIB, ALLOC_UNIT)])),
        ],
    );
    img.into_store().into_vec().unwrap()
}

#[test]
fn fuzz_random_bytes_decode_and_replay() {
    let mut runner =
        proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(fuzz_cases(256)));
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..4096), |bytes| {
            let _ = Superblock::decode(&bytes);
            let _ = LogHeader::decode(&bytes, 0, DEFAULT_LOG_LEN);
            if bytes.len() >= ENTRY_SIZE {
                let raw: &[u8; ENTRY_SIZE] = bytes[..ENTRY_SIZE].try_into().unwrap();
                for v in [47, 48, 49] {
                    let _ = LogEntry::decode(raw, 0, v, 0);
                    if let EntryBody::File(f) = LogEntry::decode_body(raw, v) {
                        let geo = Geometry {
                            version: v,
                            log_offset: LOG_OFFSET,
                            log_len: DEFAULT_LOG_LEN,
                            dev_size: 1 << 40,
                            slots: 15420,
                        };
                        let _ = f.relpath.checked();
                        if let Ok(m) = f.fmap.check(f.size, &geo) {
                            let _ = m.resolve(f.size / 2, f.size);
                        }
                    }
                }
            }
            exercise(Store::from_vec(bytes));
            Ok(())
        })
        .unwrap();
}

#[test]
fn fuzz_valid_image_with_byte_flips() {
    let base = valid_image();
    // Sanity: the base image is clean apart from its deliberate E2.
    let r = fsck(&Store::from_vec(base.clone()), Some(&HOST));
    assert_eq!(
        r.findings.iter().map(|f| f.code).collect::<Vec<_>>(),
        vec!["E2"]
    );
    let hot = (LOG_OFFSET as usize) + LOG_HEADER_SIZE + 8 * ENTRY_SIZE;
    let mut runner =
        proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(fuzz_cases(128)));
    let flips = proptest::collection::vec(
        (
            prop_oneof![0usize..SB_SIZE, LOG_OFFSET as usize..hot],
            any::<u8>(),
            any::<bool>(),
        ),
        1..6,
    );
    runner
        .run(&flips, |flips| {
            let mut img = base.clone();
            for &(at, v, fix_crc) in &flips {
                img[at] ^= v | 1;
                // Half the time re-seal the CRC so the checks behind it get exercised.
                if fix_crc {
                    reseal(&mut img, at);
                }
            }
            exercise(Store::from_vec(img));
            Ok(())
        })
        .unwrap();
}

/// Recompute the CRC of the structure containing byte `at`.
fn reseal(img: &mut [u8], at: usize) {
    let lo = LOG_OFFSET as usize;
    let put = |img: &mut [u8], start: usize, len: usize| {
        let c = u64::from(crc32fast::hash(&img[start..start + len]));
        img[start + len..start + len + 8].copy_from_slice(&c.to_le_bytes());
    };
    if at < SB_SIZE {
        put(img, 0, 96);
    } else if at < lo + LOG_HEADER_SIZE {
        put(img, lo, 24);
    } else {
        let i = (at - lo - LOG_HEADER_SIZE) / ENTRY_SIZE;
        put(img, lo + LOG_HEADER_SIZE + i * ENTRY_SIZE, 536);
    }
}

/// The FUSE server shares an `Image` across threads (behind its own lock).
#[test]
fn image_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Image>();
    check::<Namespace>();
    check::<Store>();
}

#[test]
fn a_file_no_larger_than_one_chunk_is_placed_simple_even_when_striping_is_asked() {
    let mut img = mem_image(8 << 30, 48);
    let stripe = StripeSpec {
        nstrips: 3,
        nbuckets: 8,
        chunk_size: 4 * MIB,
    };
    // 3 MiB ≤ one 4 MiB chunk: one simple 4 MiB run, not 3 strips of 4 MiB.
    let small = img
        .creat("small", 3 * MIB, 0o644, 0, 0, Some(stripe))
        .unwrap();
    match img.namespace().get(small).unwrap().fmap().unwrap() {
        Fmap::Simple(e) => {
            assert_eq!(e.len(), 1);
            assert_eq!(e[0].len, 4 * MIB);
        }
        other => panic!("expected a simple fmap, got {other:?}"),
    }
    // Exactly one chunk is still simple; one byte more is striped over 3 strips of one chunk each.
    let one = img
        .creat("one", 4 * MIB, 0o644, 0, 0, Some(stripe))
        .unwrap();
    assert!(matches!(
        img.namespace().get(one).unwrap().fmap().unwrap(),
        Fmap::Simple(_)
    ));
    let big = img
        .creat("big", 4 * MIB + 1, 0o644, 0, 0, Some(stripe))
        .unwrap();
    match img.namespace().get(big).unwrap().fmap().unwrap() {
        Fmap::Interleaved { chunk_size, strips } => {
            assert_eq!(*chunk_size, 4 * MIB);
            assert_eq!(strips.len(), 3);
            assert!(strips.iter().all(|s| s.len == 4 * MIB));
        }
        other => panic!("expected an interleaved fmap, got {other:?}"),
    }
}
