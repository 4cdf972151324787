//! Unit tests of the store: bounds, positional I/O on files (a truncated file is an error, not a
//! signal), one descriptor behind every handle, symbolic links refused, sparse-preserving zero-fill
//! and the hole-skipping scan.

use std::os::unix::fs::MetadataExt;

use super::*;

fn file_of(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn bounds_are_checked_in_memory() {
    let s = Store::from_vec(vec![1u8; 8192]);
    assert_eq!(s.read(8190, 2).unwrap(), &[1, 1]);
    assert!(matches!(
        s.read(8191, 2),
        Err(StoreError::OutOfBounds {
            off: 8191,
            len: 2,
            size: 8192,
            ..
        })
    ));
    assert!(s.read(u64::MAX, 2).is_err());
    assert!(s.write_at(8192, &[0]).is_err());
    assert!(matches!(
        s.read(0, READ_MAX + 1),
        Err(StoreError::ReadTooLarge { .. })
    ));
    s.write_at(100, &[7; 10]).unwrap();
    assert_eq!(s.first_nonzero(0, 8192).unwrap(), Some(0));
    s.zero_range(0, 4096).unwrap();
    assert!(s.read(0, 4096).unwrap().iter().all(|&b| b == 0));
    assert_eq!(s.read(4096, 1).unwrap(), &[1]);
    assert_eq!(s.first_nonzero(0, 8192).unwrap(), Some(4096));
    assert_eq!(s.first_nonzero(0, 4096).unwrap(), None);
    s.invalidate(0, 8192).unwrap();
    s.flush(0, 8192).unwrap();
    assert!(s.flush(1, 8192).is_err());
    let v = s.read_only_view();
    assert!(matches!(v.write_at(0, &[1]), Err(StoreError::ReadOnly)));
    // Still shared: no bytes to take back.
    assert!(s.into_vec().is_none());
    assert_eq!(v.read(4096, 1).unwrap(), &[1]);
}

#[test]
fn cache_flush_of_unaligned_ranges_is_harmless() {
    let b = vec![5u8; 1000];
    // SAFETY: the range lies inside `b`.
    unsafe {
        cache_flush(b.as_ptr().add(3), 200);
        cache_flush(b.as_ptr(), 0);
    }
    assert_eq!(b[3], 5);
}

#[test]
fn a_file_truncated_under_the_store_is_an_error_not_a_signal() {
    let d = tempfile::tempdir().unwrap();
    let p = file_of(d.path(), "f", &vec![3u8; 3 * 4096]);
    let s = Store::open(&p, false).unwrap();
    assert_eq!(
        (s.kind(), s.len(), s.is_writable()),
        (StoreKind::Regular, 3 * 4096, false)
    );
    assert!(matches!(s.write_at(0, &[1]), Err(StoreError::ReadOnly)));
    assert!(matches!(s.flush(0, 1), Err(StoreError::ReadOnly)));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(4096 + 10)
        .unwrap();
    // Before any refresh the store still believes 3 pages: the read meets the end of the file and
    // fails with how far it got (a mapping would have raised SIGBUS here).
    let mut buf = [0u8; 100];
    match s.read_into(4096, &mut buf) {
        Err(e @ StoreError::Short { done: 10, .. }) => {
            assert!(e.to_string().contains("truncated?"), "{e}");
        }
        other => panic!("expected a short read, got {other:?}"),
    }
    assert!(matches!(
        s.read_into(2 * 4096, &mut buf),
        Err(StoreError::Short { done: 0, .. })
    ));
    assert_eq!(s.refresh().unwrap(), 4096 + 10);
    assert!(
        s.read(4096 + 10, 1)
            .unwrap_err()
            .to_string()
            .contains("truncated after it was opened")
    );
    assert_eq!(s.read(0, 4096).unwrap()[4095], 3);
    // Growing back never exposes more than was there at open.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(10 * 4096)
        .unwrap();
    assert_eq!(s.refresh().unwrap(), 3 * 4096);
    assert!(matches!(
        Store::open(d.path(), false),
        Err(StoreError::Unsupported { .. })
    ));
    assert!(matches!(
        Store::open(&d.path().join("nope"), false),
        Err(StoreError::Io { .. })
    ));
}

#[test]
fn every_handle_uses_the_one_descriptor_and_symlinks_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let p = file_of(d.path(), "img", &[b'a'; 8192]);
    let link = d.path().join("link");
    std::os::unix::fs::symlink(&p, &link).unwrap();
    let e = Store::open(&link, false).unwrap_err();
    assert!(matches!(e, StoreError::Symlink { .. }), "{e:?}");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    // A link in a directory prefix is not the image itself: it opens.
    let dlink = d.path().join("dlink");
    std::os::unix::fs::symlink(d.path(), &dlink).unwrap();
    Store::open(&dlink.join("img"), false).unwrap();

    let s = Store::open(&p, true).unwrap();
    let ro = s.read_only_view();
    let again = s.share();
    // Replace the file at the path: every handle still reaches the original (nothing reopens).
    std::fs::rename(&p, d.path().join("moved")).unwrap();
    std::fs::write(&p, [b'z'; 8192]).unwrap();
    again.write_at(10, b"XY").unwrap();
    assert_eq!(ro.read(9, 4).unwrap(), b"aXYa");
    assert!(matches!(ro.write_at(0, b"q"), Err(StoreError::ReadOnly)));
    drop(s);
    drop(again);
    assert_eq!(ro.read(0, 1).unwrap(), b"a");
    assert_eq!(
        &std::fs::read(d.path().join("moved")).unwrap()[9..13],
        b"aXYa"
    );
    assert_eq!(std::fs::read(&p).unwrap()[10], b'z');
}

#[test]
fn zero_fill_keeps_a_sparse_file_sparse_and_skips_its_holes() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("sparse");
    let f = std::fs::File::create(&p).unwrap();
    // 1 TiB, all hole but two written pages.
    f.set_len(1 << 40).unwrap();
    f.write_all_at(&[9u8; 4096], 5 << 30).unwrap();
    f.write_all_at(&[0u8; 4096], 6 << 30).unwrap();
    f.write_all_at(&[1u8; 10], (7 << 30) + 4090).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let s = Store::open(&p, true).unwrap();
    let t = std::time::Instant::now();
    assert_eq!(s.first_nonzero(0, 1 << 40).unwrap(), Some(5 << 30));
    assert_eq!(
        s.first_nonzero((5 << 30) + 4096, (1 << 40) - (5 << 30) - 4096)
            .unwrap(),
        Some((7 << 30) + 4090)
    );
    s.zero_range(4096, (1 << 40) - 4096).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!("scan + zero-fill of a 1 TiB sparse file: {secs:.3} s");
    assert!(secs < 10.0, "holes are skipped, not read ({secs:.1} s)");
    assert_eq!(s.first_nonzero(0, 1 << 40).unwrap(), None);
    let md = std::fs::metadata(&p).unwrap();
    assert!(
        md.blocks() * 512 <= 64 << 10,
        "still sparse: {} bytes allocated",
        md.blocks() * 512
    );
}

#[test]
fn a_write_never_regrows_a_truncated_file() {
    let d = tempfile::tempdir().unwrap();
    let p = file_of(d.path(), "f", &vec![3u8; 4 * 4096]);
    let s = Store::open(&p, true).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(4096)
        .unwrap();
    // The store still believed 4 pages; the write rechecks and refuses.
    let e = s.write_at(3 * 4096, b"x").unwrap_err();
    assert!(
        matches!(e, StoreError::OutOfBounds { size: 4096, .. }),
        "{e:?}"
    );
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 4096);
    s.write_at(4095, b"y").unwrap();
    assert_eq!(std::fs::read(&p).unwrap()[4095], b'y');
}
