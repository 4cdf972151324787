//! Fuzz properties over decode + replay: random bytes, and valid images with random byte flips, never
//! panic in open, replay, reads or fsck, and fsck and open agree on which problems are fatal.

use super::*;

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
