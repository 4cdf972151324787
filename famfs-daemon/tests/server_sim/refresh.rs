//! The client role: a refresh applies entries another writer appended to the log and sends the
//! kernel invalidation notifications for what changed; and the catalog the join asks for file facts.

use famfs_daemon::{
    fuse::{DialectConfig, abi},
    join::{Catalog, FileInfo},
};

use crate::{
    fixture::{DIR, INTERLEAVED, LOG_INO, MANY, MANY_SIZE, ROOT, fixture, open_fs},
    harness::{Ops, start},
    support::{
        MIB,
        image::{open_rw, put},
    },
};

#[test]
fn refresh_finds_appended_entries_and_invalidates_the_kernel_view() {
    let f = fixture();
    let mut sim = start(open_fs(&f, None), DialectConfig::Off);
    sim.init_offer(0).unwrap();
    assert_eq!(sim.lookup(ROOT, "late.txt"), Err(-libc::ENOENT));
    let notifier = sim.session().notifier();
    // Nothing appended yet: one 8-byte read of the header, no replay.
    let s = sim.fs().refresh(Some(&notifier), false).unwrap();
    assert!(!s.replayed);
    // Another writer (here: a second handle on the image) appends a directory and a file.
    let mut img = open_rw(&f.path);
    img.mkdir("later", 0o755, 0, 0, false).unwrap();
    let late = put(&mut img, "later/late.txt", b"appended by another writer\n");
    let late2 = put(&mut img, "late.txt", b"second\n");
    assert_eq!((late, late2), (23, 24));
    let s = sim.fs().refresh(Some(&notifier), false).unwrap();
    assert!(s.replayed);
    assert_eq!(
        s.report
            .added
            .iter()
            .map(|a| (
                a.id,
                a.parent,
                String::from_utf8_lossy(&a.name).into_owned()
            ))
            .collect::<Vec<_>>(),
        vec![
            (22, ROOT, "later".to_string()),
            (23, 22, "late.txt".to_string()),
            (24, ROOT, "late.txt".to_string())
        ]
    );
    assert_eq!(s.report.next_index, 9);
    // The kernel side receives INVAL_ENTRY for every new name, then INVAL_INODE for each parent.
    let mut notes = Vec::new();
    for _ in 0..5 {
        let r = sim.recv().unwrap();
        assert_eq!(r.unique, 0, "a notification");
        notes.push((r.error, r.body));
    }
    let entry = |parent: u64, name: &str| {
        let mut b = abi::NotifyInvalEntryOut {
            parent,
            namelen: name.len() as u32,
            flags: 0,
        }
        .to_bytes()
        .to_vec();
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        (abi::notify::INVAL_ENTRY, b)
    };
    let inode = |ino: u64| {
        (
            abi::notify::INVAL_INODE,
            abi::NotifyInvalInodeOut {
                ino,
                off: 0,
                len: 0,
            }
            .to_bytes()
            .to_vec(),
        )
    };
    assert_eq!(
        notes,
        vec![
            entry(ROOT, "later"),
            entry(22, "late.txt"),
            entry(ROOT, "late.txt"),
            inode(ROOT),
            inode(22)
        ]
    );
    // Now the names resolve, with the right sizes, data and nlink.
    let e = sim.lookup(22, "late.txt").unwrap();
    assert_eq!((e.nodeid, e.attr.size), (23, 27));
    assert_eq!(
        sim.read(23, 0, 100).unwrap(),
        b"appended by another writer\n"
    );
    assert_eq!(sim.getattr(ROOT).unwrap().nlink, 5);
    let st = sim.fs().refresh_stats();
    assert_eq!(st.added.load(std::sync::atomic::Ordering::Relaxed), 3);
    // A forced refresh with nothing new replays nothing and sends nothing.
    let s = sim.fs().refresh(Some(&notifier), true).unwrap();
    assert!(s.report.added.is_empty());
    assert_eq!(sim.getattr(24).unwrap().size, 7);
}

#[test]
fn catalog_describes_files_for_the_join() {
    let f = fixture();
    let fs = open_fs(&f, None);
    assert_eq!(
        fs.file(MANY),
        Some(FileInfo {
            path: "/dir/many".into(),
            size: MANY_SIZE,
            fmap_bytes: 32 + 16 * 24,
            fmap_extents: 16
        })
    );
    assert_eq!(
        fs.file(INTERLEAVED),
        Some(FileInfo {
            path: "/interleaved".into(),
            size: 3 * MIB,
            fmap_bytes: 104,
            fmap_extents: 2
        })
    );
    assert_eq!(fs.file(LOG_INO).map(|i| i.path), Some("/.meta/.log".into()));
    assert_eq!(fs.file(DIR), None);
    assert_eq!(fs.file(ROOT), None);
    assert_eq!(fs.file(9999), None);
}
