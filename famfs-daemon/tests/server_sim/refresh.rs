//! The client role: a refresh applies entries another writer appended to the log and sends the
//! kernel invalidation notifications for what changed, reading the log without blocking requests;
//! and the catalog the join asks for file facts.

use std::{
    sync::{Mutex, atomic::Ordering, mpsc},
    time::Duration,
};

use famfs_daemon::{
    famfs::{
        format::{EntryBody, MkdirEntry, RelPath},
        log,
        replay::DECODE_CHUNK,
    },
    fuse::{DialectConfig, abi},
    server::{Catalog, FileInfo},
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

/// A refresh reads and checks the log outside the namespace's write lock: while it is paused after
/// reading each chunk (a test hook, called with the shared lock held), GETATTR and LOOKUP are
/// answered; entries show up one applied chunk at a time; the write lock is taken once per chunk.
#[test]
fn refresh_reads_without_blocking_requests_and_applies_per_chunk() {
    let f = fixture();
    let mut sim = start(open_fs(&f, None), DialectConfig::Off);
    sim.init_offer(0).unwrap();
    // Another writer appends 5,000 directories: three chunks of at most DECODE_CHUNK entries.
    const N: u64 = 5000;
    let mut img = open_rw(&f.path);
    let geo = *img.geometry();
    let first = img.log_header().next_index;
    let names: Vec<String> = (0..N).map(|k| format!("n{k:05}")).collect();
    let bodies: Vec<EntryBody> = names
        .iter()
        .map(|n| {
            EntryBody::Mkdir(MkdirEntry {
                uid: 0,
                gid: 0,
                mode: 0o755,
                relpath: RelPath::new(n.as_bytes()).unwrap(),
            })
        })
        .collect();
    log::append(img.store_mut(), &geo, &bodies).unwrap();
    // The hook reports each chunk and waits until the test lets it go on.
    let (entered_tx, entered) = mpsc::channel::<(u64, u64)>();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    sim.fs().set_refresh_hook(Some(Box::new(move |first, n| {
        let _ = entered_tx.send((first, n));
        let _ = release_rx.lock().unwrap().recv();
    })));
    let fs = sim.fs().clone();
    let refresher = std::thread::spawn(move || fs.refresh(None, true).map_err(|e| e.to_string()));
    let mut chunks = Vec::new();
    let mut at = first;
    while at < first + N {
        let (c_first, n) = entered.recv_timeout(Duration::from_secs(30)).unwrap();
        chunks.push((c_first, n));
        // Paused between reading chunk `c_first` and applying it: requests are answered, what the
        // earlier chunks created is visible, this chunk's names are not yet.
        assert_eq!(sim.getattr(ROOT).unwrap().ino, ROOT);
        assert_eq!(sim.lookup(ROOT, "hello.txt").unwrap().nodeid, 21);
        let k = c_first - first;
        assert_eq!(sim.lookup(ROOT, &names[k as usize]), Err(-libc::ENOENT));
        if k > 0 {
            let prev = &names[k as usize - 1];
            assert_eq!(sim.lookup(ROOT, prev).unwrap().nodeid, 16 + c_first - 1);
        }
        release.send(()).unwrap();
        at = c_first + n;
    }
    let s = refresher.join().unwrap().unwrap();
    assert_eq!(
        chunks,
        vec![
            (first, DECODE_CHUNK),
            (first + DECODE_CHUNK, DECODE_CHUNK),
            (first + 2 * DECODE_CHUNK, N - 2 * DECODE_CHUNK)
        ]
    );
    assert_eq!(s.report.added.len() as u64, N);
    assert_eq!(s.report.next_index, first + N);
    let last = sim.lookup(ROOT, &names[N as usize - 1]).unwrap();
    assert_eq!(last.nodeid, 16 + first + N - 1);
    assert_eq!(sim.getattr(ROOT).unwrap().nlink, 2 + 2 + N as u32);
    let st = sim.fs().refresh_stats();
    let (steps, apply_max, read) = (
        st.apply_steps.load(Ordering::Relaxed),
        st.apply_max_ns.load(Ordering::Relaxed),
        st.read_ns.load(Ordering::Relaxed),
    );
    println!(
        "refresh of {N} entries: {steps} write-lock steps, longest {apply_max} ns; reading and checking under the shared lock {read} ns (including the test's pauses)"
    );
    assert_eq!(steps, 3);
    sim.fs().set_refresh_hook(None);
}
