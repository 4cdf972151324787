//! A real mount of the test filesystem through `/dev/fuse` + `mount(2)` (root; SKIP otherwise):
//! `ls`, `stat`, reads, 4 concurrent readers on cloned fds, unmount; the mount is removed by a guard
//! even when the test panics; a stale mount left by a dead server is detached before mounting.

use std::{
    io,
    os::unix::fs::{FileExt, MetadataExt},
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::Ordering,
        mpsc::{Receiver, RecvTimeoutError, channel, sync_channel},
    },
    thread::JoinHandle,
    time::Duration,
};

use famfs_daemon::fuse::{
    Mount, MountOptions, RequestRecord, Session, SessionConfig,
    abi::{init_flags, opcode},
};

use crate::{
    support::{
        can_mount,
        mounts::{MountGuard, mount_connection},
        pattern,
    },
    testfs::{HELLO, NESTED, PATTERN_LEN, TestFs},
};

/// The mount and its serving thread: detaches the mount and waits for the thread on drop, aborting
/// the connection through fusectl (when mounted) if the thread has not ended within 10 s.
struct Served {
    mount: Option<Mount>,
    conn: u32,
    /// What `Session::run` returned, sent by the serving thread as it ends (disconnected if it
    /// panicked).
    done: Option<Receiver<io::Result<()>>>,
    thread: Option<JoinHandle<()>>,
}

impl Served {
    fn stop(&mut self) -> io::Result<()> {
        if let Some(mut m) = self.mount.take() {
            m.unmount()?;
        }
        let Some(done) = self.done.take() else {
            return Ok(());
        };
        let panicked = || io::Error::other("session thread panicked");
        let result = match done.recv_timeout(Duration::from_secs(10)) {
            Ok(r) => r,
            Err(RecvTimeoutError::Disconnected) => Err(panicked()),
            Err(RecvTimeoutError::Timeout) => {
                let abort = format!("/sys/fs/fuse/connections/{}/abort", self.conn);
                let _ = std::fs::write(abort, "1");
                match done.recv_timeout(Duration::from_secs(5)) {
                    Ok(r) => r,
                    Err(RecvTimeoutError::Disconnected) => Err(panicked()),
                    Err(RecvTimeoutError::Timeout) => {
                        // Never hang the test run: report and leave the thread.
                        return Err(io::Error::other("session did not end after unmount"));
                    }
                }
            }
        };
        // The thread has sent its result (or unwound): joining it does not wait on the session.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        result
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Mount the test filesystem at `mnt` and serve it with 4 workers (extra ones on demand or all
/// blocking on the device).
fn serve(mnt: &Path, on_demand: bool) -> (Served, Arc<Session<TestFs>>, Receiver<RequestRecord>) {
    let (mount, ch) = Mount::new(
        mnt,
        &MountOptions {
            source: "famfs-wire-test".into(),
            ..Default::default()
        },
    )
    .expect("mount");
    let conn = mount.connection();
    let (tx, rx) = sync_channel(1 << 16);
    let session = Arc::new(Session::new(
        TestFs::new(),
        ch,
        SessionConfig {
            connection: conn,
            mount_epoch: 3,
            records: Some(tx),
            on_demand_workers: on_demand,
            ..Default::default()
        },
    ));
    let s2 = session.clone();
    let (done_tx, done) = channel();
    let thread = std::thread::spawn(move || {
        let _ = done_tx.send(s2.run(4));
    });
    let served = Served {
        mount: Some(mount),
        conn,
        done: Some(done),
        thread: Some(thread),
    };
    (served, session, rx)
}

#[test]
fn real_mount_ls_stat_read_concurrent_readers_unmount() {
    if can_mount("real_mount_ls_stat_read_concurrent_readers_unmount") {
        ls_stat_read_concurrent_readers_unmount(false);
    }
}

/// The same with on-demand workers: three helpers wait off the device; every request is still
/// answered once and they all leave at unmount.
#[test]
fn real_mount_on_demand_workers_serve_and_leave_at_unmount() {
    if can_mount("real_mount_on_demand_workers_serve_and_leave_at_unmount") {
        ls_stat_read_concurrent_readers_unmount(true);
    }
}

fn ls_stat_read_concurrent_readers_unmount(on_demand: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let (mut served, session, rx) = serve(&mnt, on_demand);
    let mnt = served.mount.as_ref().unwrap().path().to_path_buf();
    let conn = served.conn;

    let neg = session
        .wait_negotiated(Duration::from_secs(10))
        .expect("INIT negotiated")
        .clone();
    assert_eq!(neg.famfs, None, "this kernel has no famfs");
    assert!(neg.has(init_flags::ASYNC_READ | init_flags::MAX_PAGES));
    // After INIT, stat is safe: the connection id is the minor of st_dev.
    let st_dev = std::fs::metadata(&mnt).unwrap().dev();
    assert_eq!(libc::major(st_dev), 0);
    assert_eq!(libc::minor(st_dev), conn);
    assert_eq!(mount_connection(&mnt), Some(conn));

    let ls = Command::new("ls")
        .arg("-1")
        .arg(&mnt)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(
        ls.status.success(),
        "ls: {}",
        String::from_utf8_lossy(&ls.stderr)
    );
    assert_eq!(
        String::from_utf8(ls.stdout).unwrap(),
        "big\nfile0\nhello.txt\ninterleaved\npattern.bin\nscratch\nsub\n"
    );
    let stat = Command::new("stat")
        .args(["-c", "%s %F %i %a %h"])
        .arg(mnt.join("hello.txt"))
        .arg(mnt.join("sub"))
        .output()
        .unwrap();
    assert!(stat.status.success());
    assert_eq!(
        String::from_utf8(stat.stdout).unwrap(),
        "13 regular file 2 644 1\n0 directory 7 755 2\n"
    );
    assert_eq!(std::fs::read(mnt.join("hello.txt")).unwrap(), HELLO);
    assert_eq!(std::fs::read(mnt.join("sub/nested.txt")).unwrap(), NESTED);
    assert_eq!(
        std::fs::metadata(mnt.join("missing")).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );

    // 4 concurrent readers of a direct-I/O file: every read reaches the server.
    let reads_before = session.stats().requests(opcode::READ);
    let want = pattern(PATTERN_LEN, 7);
    const ROUNDS: usize = 25;
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let f = std::fs::File::open(mnt.join("pattern.bin")).unwrap();
                let mut buf = vec![0u8; PATTERN_LEN];
                for _ in 0..ROUNDS {
                    buf.fill(0);
                    f.read_exact_at(&mut buf, 0).unwrap();
                    assert!(buf == want, "pattern.bin content");
                }
            });
        }
    });
    assert_eq!(
        session.stats().requests(opcode::READ) - reads_before,
        4 * ROUNDS as u64
    );

    served.stop().expect("session ended cleanly after unmount");
    assert_eq!(mount_connection(&mnt), None, "mount removed");
    assert!(session.fs().destroyed.load(Ordering::Relaxed));
    let st = session.stats();
    assert_eq!((st.requests(opcode::INIT), st.malformed()), (1, 0));
    assert_eq!(
        (st.workers(), st.cloned_fds()),
        (4, 3),
        "each extra worker has its own FUSE_DEV_IOC_CLONE fd"
    );
    assert_eq!(st.errors(opcode::READ), 0);
    let recs: Vec<RequestRecord> = rx.try_iter().collect();
    assert_eq!(recs[0].opcode, opcode::INIT);
    assert!(
        recs.iter()
            .all(|r| r.connection == conn && r.mount_epoch == 3)
    );
    let full_reads = recs
        .iter()
        .filter(|r| r.opcode == opcode::READ && r.io_bytes == PATTERN_LEN as u32)
        .count();
    assert_eq!(full_reads, 4 * ROUNDS);
    assert_eq!(st.records_dropped(), 0);
}

#[test]
fn real_mount_is_removed_when_the_test_panics() {
    if !can_mount("real_mount_is_removed_when_the_test_panics") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt").to_path_buf();
    std::fs::create_dir(&mnt).unwrap();
    let mnt = mnt.canonicalize().unwrap();
    let m2 = mnt.clone();
    let r = std::panic::catch_unwind(move || {
        let (_served, session, _rx) = serve(&m2, false);
        session.wait_negotiated(Duration::from_secs(10)).unwrap();
        let f = std::fs::File::open(m2.join("hello.txt")).unwrap();
        assert!(mount_connection(&m2).is_some());
        drop(f);
        panic!("deliberate failure with the mount up");
    });
    assert!(r.is_err());
    assert_eq!(mount_connection(&mnt), None, "the guard removed the mount");
}

#[test]
fn stale_mount_is_detected_and_detached_before_mounting() {
    if !can_mount("stale_mount_is_detected_and_detached_before_mounting") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mnt = mnt.canonicalize().unwrap();
    // Removes whatever is left at `mnt` if an assertion fails (drops before `dir`).
    let _cleanup = MountGuard(mnt.clone());
    let (stale, ch) = Mount::new(&mnt, &MountOptions::default()).unwrap();
    // A server that died: its /dev/fuse fd is closed while the mount stays. (Forgetting the Mount
    // skips its detach on drop; `_cleanup` still covers the path.)
    std::mem::forget(stale);
    drop(ch);
    let e = std::fs::metadata(&mnt).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "{e}");

    let (mut served, session, _rx) = serve(&mnt, true);
    assert!(served.mount.as_ref().unwrap().stale_detached());
    session.wait_negotiated(Duration::from_secs(10)).unwrap();
    assert_eq!(std::fs::read(mnt.join("hello.txt")).unwrap(), HELLO);
    served.stop().unwrap();
    assert_eq!(mount_connection(&mnt), None);
}
