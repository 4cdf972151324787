//! The client role on real mounts (root; SKIP otherwise): two daemons serve one image at two mount
//! points; a file appended with the image tools (another process) appears in both mounts without a
//! remount — within one second by the 200 ms log poll, and at once on SIGHUP for a daemon whose poll
//! interval is an hour. The measured delays are printed.

// Test code: a failed unwrap/expect/assertion is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use support::{
    GIB, MIB, can_mount,
    daemon::Daemon,
    image::{image_cli, mkfs, put},
    mounts::mnt_dir,
    pattern, sha256, wait_for,
};

/// Poll (5 ms steps, up to `limit`) until `path` exists; the delay since `t0`.
fn appeared_after(path: &Path, t0: Instant, limit: Duration) -> Option<Duration> {
    wait_for(limit, || path.exists().then(|| t0.elapsed()))
}

#[test]
fn appended_files_appear_in_other_mounts_without_a_remount() {
    let test = "appended_files_appear_in_other_mounts_without_a_remount";
    if !can_mount(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (img, mut image) = mkfs(d, "famfs.img", 4 * GIB);
    put(&mut image, "first.txt", b"first\n");
    image.mkdir("sub", 0o755, 0, 0, false).unwrap();
    drop(image);
    let (ma, mb, mc) = (mnt_dir(d, "a"), mnt_dir(d, "b"), mnt_dir(d, "c"));
    let a = Daemon::serve(d, &img, &ma, &["--poll-interval", "200ms"]);
    let b = Daemon::serve(d, &img, &mb, &["--poll-interval", "200ms"]);
    let c = Daemon::serve(d, &img, &mc, &["--poll-interval", "1h"]);
    assert_ne!(a.field("connection"), b.field("connection"));
    assert_eq!(a.field("fs_uuid"), b.field("fs_uuid"));
    // Looked up (and missed) before it exists: the kernel must not keep a negative answer.
    for m in [&ma, &mb, &mc] {
        assert!(!m.join("sub/new.bin").exists());
        assert_eq!(
            std::fs::read_dir(m.join("sub")).unwrap().count(),
            0,
            "empty before"
        );
    }

    // Another process appends a file with the image tools.
    let body = pattern(3 * MIB as usize + 5, 44);
    let src = d.join("new.bin");
    std::fs::write(&src, &body).unwrap();
    image_cli(
        d,
        &[
            "cp",
            img.to_str().unwrap(),
            src.to_str().unwrap(),
            "/sub/new.bin",
        ],
    );
    let t0 = Instant::now();
    let in_b = appeared_after(&mb.join("sub/new.bin"), t0, Duration::from_secs(1));
    let in_a = appeared_after(&ma.join("sub/new.bin"), t0, Duration::from_secs(1));
    let (Some(db), Some(da)) = (in_b, in_a) else {
        panic!("new file not visible within 1 s: mount b {in_b:?}, mount a {in_a:?}");
    };
    println!(
        "RESULT client-role: appended file visible in mount b after {:.1} ms, mount a after {:.1} ms (poll 200 ms)",
        db.as_secs_f64() * 1e3,
        da.as_secs_f64() * 1e3
    );
    // The contents, the listing and the size are right in the other mount.
    assert!(std::fs::read(mb.join("sub/new.bin")).unwrap() == body);
    let names: Vec<String> = std::fs::read_dir(mb.join("sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["new.bin".to_string()]);
    assert_eq!(sha256(&mb.join("sub/new.bin")), sha256(&src));

    // The hour-long poller does not know yet; SIGHUP makes it look now.
    c.signal(libc::SIGHUP);
    let t1 = Instant::now();
    let in_c = appeared_after(&mc.join("sub/new.bin"), t1, Duration::from_secs(1));
    let Some(dc) = in_c else {
        panic!("SIGHUP did not refresh mount c within 1 s");
    };
    println!(
        "RESULT client-role: after SIGHUP visible in mount c after {:.1} ms (poll 1 h)",
        dc.as_secs_f64() * 1e3
    );
    c.wait_stderr("log refreshed (requested)")
        .expect("daemon c logs the requested refresh");
    assert!(std::fs::read(mc.join("sub/new.bin")).unwrap() == body);

    // A write through mount a is seen through mount b (same shared memory; b's page cache is dropped
    // at open).
    std::fs::OpenOptions::new()
        .write(true)
        .open(ma.join("first.txt"))
        .and_then(|f| std::os::unix::fs::FileExt::write_all_at(&f, b"FIRST", 0))
        .unwrap();
    assert_eq!(std::fs::read(mb.join("first.txt")).unwrap(), b"FIRST\n");
}
