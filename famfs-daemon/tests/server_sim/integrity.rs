//! What the server does when the image is not what it was: `.meta/.superblock` and `.meta/.log`
//! refused for writing (EPERM), one open of the image serving metadata and data (a file swapped in at
//! the path is never read), an image truncated under the server (EIO for what is gone, exact bytes
//! for the rest, health degraded, the log not read). A filesystem re-created or a log gone back under
//! the server is `tests/server_stale.rs` (it captures the log, which this binary must not: its
//! allocation count of the serving thread would see the logger).

use std::path::Path;

use famfs_daemon::{
    famfs::{Image, format::LH_OFF_NEXT_INDEX},
    fuse::{
        DialectConfig,
        abi::{OpenIn, opcode},
    },
    server::ServerError,
};

use crate::{
    fixture::{FILE0, HELLO, HELLO_TXT, LOG_INO, MANY, ROOT, SB_INO, fixture, open_fs},
    harness::{Ops, start},
    support::{
        GIB, MIB,
        image::{mkfs, put},
    },
};

fn open_flags(flags: i32) -> [u8; OpenIn::SIZE] {
    OpenIn {
        flags: flags as u32,
        ..Default::default()
    }
    .to_bytes()
}

/// Descriptors of this process open on `path`.
fn fds_on(path: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t == path)
        .count()
}

#[test]
fn meta_files_are_read_only_eperm_even_for_root() {
    let f = fixture();
    let mut sim = start(open_fs(&f, None), DialectConfig::Off);
    sim.init_offer(0).unwrap();
    for ino in [SB_INO, LOG_INO] {
        for flags in [
            libc::O_WRONLY,
            libc::O_RDWR,
            libc::O_RDWR | libc::O_APPEND,
            libc::O_WRONLY | libc::O_TRUNC,
        ] {
            let r = sim.call(opcode::OPEN, ino, &open_flags(flags)).unwrap();
            assert_eq!(r.error, -libc::EPERM, "OPEN inode {ino} flags {flags:#o}");
        }
        assert_eq!(
            sim.call(opcode::OPEN, ino, &open_flags(libc::O_RDONLY))
                .unwrap()
                .error,
            0
        );
        assert_eq!(sim.write(ino, 0, b"junk"), Err(-libc::EPERM), "inode {ino}");
        assert_eq!(sim.write(ino, 1 << 20, b"junk"), Err(-libc::EPERM));
    }
    // Reading them is fine and exact: the superblock's magic, the log header's next_index (6).
    let img = Image::open(&f.path, false).unwrap();
    let sb = img.store().read(0, 4096).unwrap();
    assert_eq!(sim.read(SB_INO, 0, 4096).unwrap(), sb);
    let at = (LH_OFF_NEXT_INDEX) as u64;
    assert_eq!(
        sim.read(LOG_INO, at, 8).unwrap(),
        6u64.to_le_bytes().to_vec()
    );
    // Ordinary files still take writes.
    assert_eq!(sim.write(HELLO, 0, b"H").unwrap(), 1);
}

#[test]
fn one_open_of_the_image_serves_metadata_and_data() {
    let f = fixture();
    let fs = open_fs(&f, None);
    assert_eq!(
        fds_on(&f.path),
        1,
        "the server holds exactly one descriptor"
    );
    let mut sim = start(fs, DialectConfig::Off);
    sim.init_offer(0).unwrap();
    // Swap another filesystem in at the path: the server never opens the path again, so it goes
    // on serving the original image, data and log alike.
    let moved = f._dir.path().join("moved.img");
    std::fs::rename(&f.path, &moved).unwrap();
    let (_, mut other) = mkfs(f._dir.path(), "famfs.img", 4 * GIB);
    put(&mut other, "intruder", b"not ours\n");
    drop(other);
    assert_eq!(sim.read(HELLO, 0, 100).unwrap(), HELLO_TXT);
    assert_eq!(sim.read(FILE0, 0, 4096).unwrap(), &f.file0[..4096]);
    let s = sim.fs().refresh(None, true).unwrap();
    assert!(s.report.added.is_empty(), "{:?}", s.report);
    assert_eq!(sim.lookup(ROOT, "intruder"), Err(-libc::ENOENT));
    assert_eq!(sim.fs().health(), None);
    // The one descriptor points at the moved file.
    assert_eq!(fds_on(&moved), 1);
    assert_eq!(fds_on(&f.path), 0);
}

#[test]
fn a_truncated_image_answers_eio_for_what_is_gone_and_exact_bytes_for_the_rest() {
    let f = fixture();
    let mut sim = start(open_fs(&f, None), DialectConfig::Off);
    sim.init_offer(0).unwrap();
    // FILE0 lives at 10 MiB, `many` from 256 MiB: cut the image at 128 MiB.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f.path)
        .unwrap()
        .set_len(128 * MIB)
        .unwrap();
    // Before the watcher noticed: the read meets the end of the file, EIO (no SIGBUS).
    assert_eq!(sim.read(MANY, 0, 4096), Err(-libc::EIO));
    assert_eq!(sim.write(MANY, 0, b"x"), Err(-libc::EIO));
    assert_eq!(sim.read(FILE0, 0, 65536).unwrap(), &f.file0[..65536]);
    assert_eq!(sim.read(HELLO, 0, 100).unwrap(), HELLO_TXT);
    // The poll sees the size first and reads nothing of the log.
    let e = sim.fs().refresh(None, true).unwrap_err();
    assert!(
        matches!(e, ServerError::Shrunk { len, need, .. } if len == 128 * MIB && need == 4 * GIB),
        "{e}"
    );
    let h = sim.fs().health().unwrap();
    assert!(h.contains("shrank to 0x8000000"), "{h}");
    assert_eq!(sim.read(MANY, 0, 4096), Err(-libc::EIO));
    assert_eq!(
        sim.read(FILE0, MIB - 10, 10).unwrap(),
        &f.file0[MIB as usize - 10..]
    );
    // Whole again (the cut bytes are zeros now): the shrink is over; the I/O failures of the last
    // minute still keep the health degraded, and say what failed.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f.path)
        .unwrap()
        .set_len(4 * GIB)
        .unwrap();
    sim.fs().refresh(None, true).unwrap();
    let h = sim.fs().health().unwrap();
    assert!(
        h.contains("3 I/O failure(s)") && h.contains(&format!("READ of inode {MANY}")),
        "{h}"
    );
    assert_eq!(sim.read(MANY, 0, 16).unwrap(), vec![0u8; 16]);
}
