//! Replay layer: the §8/§10 replay rules (inode ids, duplicates, parents, entry types), the `.meta`
//! files and the client role, version 47 images, incremental replay equal to a full play, crash
//! safety (a torn append is invisible; E1 stops the play), and resources bounded by the log
//! (colliding logs replay in O(n log n), a huge geometry allocates nothing up front).

use std::time::{Duration, Instant};

use super::*;

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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// F4 names the first live file (in log order) that held the unit before the colliding entry,
    /// exactly as a scan of every inode would.
    #[test]
    fn prop_collision_owner_is_the_first_earlier_live_file(
        bodies in proptest::collection::vec(arb_small_body(), 0..40),
    ) {
        let mut img = mem_image(40 * MIB, VERSION_48);
        let geo = *img.geometry();
        log::append(img.store_mut(), &geo, &bodies).unwrap();
        img.refresh().unwrap();
        let ns = img.namespace();
        for a in ns.anomalies() {
            let AnomalyKind::Collision { offset, other, .. } = &a.kind else { continue };
            let naive = ns
                .iter()
                .filter(|i| i.log_index.is_some_and(|k| k < a.index))
                .find(|i| {
                    i.fmap().is_some_and(|m| {
                        m.extents().iter().any(|e| *offset >= e.offset && *offset < e.offset + e.len)
                    })
                })
                .map(|i| i.id);
            prop_assert_eq!(*other, naive, "{}", a);
        }
    }
}

/// A full default log (15,420 FILE entries) on an 8 TiB device where entry `i`'s 16 extents are
/// `extents(i)`, replayed from scratch; returns the namespace and the time the replay took.
fn replay_generated(extents: impl Fn(u64, &Geometry) -> Vec<Extent>) -> (Namespace, Duration) {
    const DEV: u64 = 8 << 40;
    let slots = log_slots(DEFAULT_LOG_LEN);
    let geo = Geometry {
        version: VERSION_48,
        log_offset: LOG_OFFSET,
        log_len: DEFAULT_LOG_LEN,
        dev_size: DEV,
        slots,
    };
    let mut log = vec![0u8; DEFAULT_LOG_LEN as usize];
    let mut h = LogHeader::new(DEFAULT_LOG_LEN);
    h.next_index = slots;
    h.next_seqnum = slots;
    log[..LOG_HEADER_SIZE].copy_from_slice(&h.encode());
    for i in 0..slots {
        let body = file_body(&format!("f{i:05}"), 4096, simple(&extents(i, &geo)));
        let e = LogEntry { seqnum: i, body }.encode(VERSION_48).unwrap();
        let off = entry_offset(0, i) as usize;
        log[off..off + ENTRY_SIZE].copy_from_slice(&e);
    }
    let t = Instant::now();
    let mut ns = Namespace::new(&geo, Role::Master);
    let out = ns.apply_log(&log, &h, false);
    let took = t.elapsed();
    assert_eq!(out.applied, slots);
    assert!(out.stopped.is_none());
    assert_eq!(ns.len() as u64, 4 + slots, "every file is still created");
    (ns, took)
}

/// `(index, device offset, owner)` of every F4 anomaly.
fn collisions(ns: &Namespace) -> Vec<(u64, u64, Option<u64>)> {
    ns.anomalies()
        .iter()
        .filter_map(|a| match &a.kind {
            AnomalyKind::Collision { offset, other, .. } => Some((a.index, *offset, *other)),
            _ => None,
        })
        .collect()
}

/// 15,420 entries whose 16 extents all span the whole data area of an 8 TiB device: every extent of
/// every entry collides. A per-unit bitmap (4 M units per extent) and a scan of every inode per
/// collision made this take hours; it must replay in under a second.
#[test]
fn log_of_15420_colliding_entries_replays_in_under_a_second() {
    let span = |_: u64, g: &Geometry| vec![ext(g.data_start(), g.dev_size - g.data_start()); 16];
    let (ns, took) = replay_generated(span);
    println!("replay of 15420 entries, all 16 extents colliding (8 TiB device): {took:?}");
    let geo = *ns.geometry();
    let c = collisions(&ns);
    // Entry 0's extents 1..15 collide with its own extent 0 (no earlier owner); every later extent
    // collides with entry 0's file, inode 16.
    assert_eq!(c.len() as u64, 16 * geo.slots - 1);
    assert!(c[..15].iter().all(|&(i, _, o)| i == 0 && o.is_none()));
    assert!(
        c[15..]
            .iter()
            .all(|&(i, off, o)| i > 0 && off == geo.data_start() && o == Some(FIRST_LOG_INO))
    );
    assert_eq!(
        ns.space().runs().collect::<Vec<_>>(),
        vec![(0, geo.dev_size / ALLOC_UNIT)]
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
}

/// Scaling with many runs: the first half claims 16 scattered units each (123,360 separate runs),
/// the second half spans the whole data area. The first spanning extent merges every run once; an
/// O(n) step per collision would take hours here. The F4 owner is right for every collision.
#[test]
fn scattered_then_spanning_extents_replay_in_n_log_n() {
    let half = log_slots(DEFAULT_LOG_LEN) / 2;
    let (ns, took) = replay_generated(|i, g| {
        let first = g.data_start() / ALLOC_UNIT;
        (0..16u64)
            .map(|k| {
                if i < half {
                    // Every third unit, so no two runs touch.
                    ext((first + 3 * (i * 16 + k)) * ALLOC_UNIT, ALLOC_UNIT)
                } else {
                    ext(g.data_start(), g.dev_size - g.data_start())
                }
            })
            .collect()
    });
    println!("replay of 7710 scattered + 7710 spanning entries (123,360 runs merged): {took:?}");
    let geo = *ns.geometry();
    let c = collisions(&ns);
    assert_eq!(c.len() as u64, (geo.slots - half) * 16);
    assert!(
        c.iter()
            .all(|&(i, off, o)| i >= half && off == geo.data_start() && o == Some(FIRST_LOG_INO)),
        "{:?}",
        &c[..3]
    );
    // The unit after entry 0's first one was a gap: the first spanning file owns it.
    assert_eq!(
        ns.owner_of(geo.data_start() + ALLOC_UNIT),
        Some(FIRST_LOG_INO + half)
    );
    assert_eq!(
        ns.space().runs().collect::<Vec<_>>(),
        vec![(0, geo.dev_size / ALLOC_UNIT)]
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
}

/// A geometry claiming a huge log and device costs nothing until entries exist: the namespace's
/// tables are sized by what was replayed.
#[test]
fn huge_geometry_allocates_nothing_up_front() {
    let log_len = 1u64 << 50;
    let geo = Geometry {
        version: VERSION_48,
        log_offset: LOG_OFFSET,
        log_len,
        dev_size: 1 << 62,
        slots: log_slots(log_len),
    };
    let mut ns = Namespace::new(&geo, Role::Client);
    assert_eq!(
        ns.id_bound(),
        LOG_INO + 1,
        "root and the .meta objects only"
    );
    assert_eq!(ns.space().runs().count(), 1);
    // A header claiming every slot over a log whose first entry is zero: one E1 stop, nothing more.
    let mut h = LogHeader::new(log_len);
    h.next_index = geo.slots;
    h.next_seqnum = geo.slots;
    let mut log = vec![0u8; 4096];
    log[..LOG_HEADER_SIZE].copy_from_slice(&h.encode());
    let out = ns.apply_log(&log, &h, true);
    assert_eq!(out.applied, 0);
    assert_eq!(out.stopped.map(|a| a.index), Some(0));
    assert_eq!(ns.id_bound(), LOG_INO + 1);
}
