//! The famfs server over the simulated kernel when the filesystem is re-created or its log goes back
//! under it: the extent maps go stale (READ, WRITE, GET_FMAP answer EIO, names and attributes still
//! answer), `/healthz`'s reason says so, later polls read nothing, and the log says it once. A test
//! binary of its own because it installs a logger to count the lines (see `server_sim/integrity.rs`).

// Test code: a failed unwrap/expect/assertion is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "server_sim/fixture.rs"]
mod fixture;
#[allow(dead_code)]
#[path = "server_sim/harness.rs"]
mod harness;
mod support;

use std::sync::{Mutex, OnceLock};

use famfs_daemon::{
    famfs::{Image, MkfsOptions, format::LH_OFF_NEXT_SEQNUM},
    fuse::{DialectConfig, sim::fmap_size_body},
    server::ServerError,
};

use crate::{
    fixture::{DAXDEV, FILE0, HELLO, fixture, open_fs},
    harness::{Ops, start},
    support::{
        MIB,
        image::{HOST, open_rw, uuid_file},
    },
};

/// Every log line of this test binary (the server logs through the `log` crate).
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        let line = format!("{} {}", r.level(), r.args());
        eprintln!("[log] {line}");
        self.0.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static C: OnceLock<&'static Capture> = OnceLock::new();
    C.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(c).unwrap();
        log::set_max_level(log::LevelFilter::Info);
        c
    })
}

/// Log lines so far that contain every one of `needles`.
fn logged(needles: &[&str]) -> usize {
    capture()
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

#[test]
fn a_reformatted_image_makes_the_maps_stale_and_says_so_once() {
    let f = fixture();
    let mut sim = start(open_fs(&f, Some(DAXDEV)), DialectConfig::V3);
    sim.init_offer(0x800).unwrap();
    assert_eq!(sim.call(54, FILE0, &[]).unwrap().error, 0);
    // Someone re-creates the filesystem on the image under the mount.
    Image::mkfs(
        &f.path,
        &MkfsOptions {
            force: true,
            host_uuid: Some(HOST),
            system_uuid_path: Some(uuid_file(f._dir.path())),
            ..Default::default()
        },
    )
    .unwrap();
    capture();
    let path = f.path.display().to_string();
    let h = match sim.fs().refresh(None, false) {
        Err(ServerError::Stale(why)) => why,
        other => panic!("expected Stale, got {other:?}"),
    };
    assert!(h.contains("superblock changed since open"), "{h}");
    assert!(h.starts_with("stale: ") && h.contains(&path), "{h}");
    assert_eq!(sim.fs().health().as_deref(), Some(h.as_str()));
    // Data and maps: EIO, whatever the file; names and attributes still answer.
    assert_eq!(sim.read(FILE0, 0, 10), Err(-libc::EIO));
    assert_eq!(sim.read(HELLO, 0, 10), Err(-libc::EIO));
    assert_eq!(sim.write(FILE0, 0, b"x"), Err(-libc::EIO));
    assert_eq!(sim.call(54, FILE0, &[]).unwrap().error, -libc::EIO);
    assert_eq!(sim.getattr(FILE0).unwrap().size, MIB);
    // Later polls read nothing and answer the same reason.
    for force in [false, true] {
        match sim.fs().refresh(None, force) {
            Err(ServerError::Stale(why)) => assert_eq!(why, h),
            other => panic!("expected Stale, got {other:?}"),
        }
    }
    assert_eq!(sim.read(FILE0, 0, 10), Err(-libc::EIO));
    assert_eq!(logged(&["ERROR", "stale:", &path]), 1, "said once");
}

#[test]
fn a_log_gone_back_makes_the_maps_stale() {
    let f = fixture();
    let mut sim = start(open_fs(&f, Some(DAXDEV)), DialectConfig::RfcV2);
    sim.init_offer(0x400).unwrap();
    // Rewrite the header's append position (next_seqnum, next_index) from (6, 6) to (2, 2): a
    // valid header (the position is not covered by its CRC) for a shorter log.
    let img = open_rw(&f.path);
    let at = img.geometry().log_offset + LH_OFF_NEXT_SEQNUM as u64;
    let pos = [2u64.to_le_bytes(), 2u64.to_le_bytes()].concat();
    img.store().write_at(at, &pos).unwrap();
    img.store().flush(at, 16).unwrap();
    drop(img);
    capture();
    let path = f.path.display().to_string();
    let e = sim.fs().refresh(None, false).unwrap_err().to_string();
    assert!(e.contains("went back from 6 to 2"), "{e}");
    assert!(sim.fs().health().unwrap().contains("went back from 6 to 2"));
    assert_eq!(sim.read(FILE0, 0, 10), Err(-libc::EIO));
    assert_eq!(
        sim.call(53, FILE0, &fmap_size_body(4096)).unwrap().error,
        -libc::EIO
    );
    assert!(matches!(
        sim.fs().refresh(None, true),
        Err(ServerError::Stale(_))
    ));
    assert_eq!(logged(&["ERROR", "stale:", &path]), 1, "said once");
}
