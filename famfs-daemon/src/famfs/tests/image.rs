//! Image layer: mkdir -p and creat errors, file data written and read back through simple, explicit
//! and interleaved extents on a sparse image file, a truncated image, the full default log, and the
//! striping rule for small files.

use super::*;

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

/// Files of sizes around the 2 MiB unit (one striped), each written in two uneven halves: (id, data).
fn create_and_write_sized_files(img: &mut Image) -> Vec<(u64, Vec<u8>)> {
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
    files
}

/// Interleave placement per §9 of striped file `id`, checked against raw device bytes.
fn assert_interleave_placement(img: &Image, id: u64, data: &[u8]) {
    let Some(Fmap::Interleaved { chunk_size, strips }) =
        img.namespace().get(id).unwrap().fmap().cloned()
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
        let n = 4096.min(data.len() - fo);
        assert_eq!(img.store().read(dev, n as u64).unwrap(), &data[fo..fo + n]);
    }
}

#[test]
fn sparse_image_files_written_and_read_back_through_extents() {
    let d = tempfile::tempdir().unwrap();
    let (path, mut img) = file_image(d.path(), 4 << 30);
    img.mkdir("data/set/deep", 0o755, 1000, 1000, true).unwrap();
    let mut files = create_and_write_sized_files(&mut img);
    // Fragment the free space with 2 MiB spacers every 30 units from just after the used area; an
    // explicit 3-extent file; then a 64 MiB simple file no longer fits in one run and is split.
    let units = img.geometry().dev_size / ALLOC_UNIT;
    let s0 = img
        .namespace()
        .space()
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
    let (sid, sdata) = &files[5];
    assert_interleave_placement(&img, *sid, sdata);
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
