//! The sandboxed daemon: every thread's credentials after the ready line, and that it still does
//! everything the steady state needs.

use std::{
    io::Read,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{CAP_SYS_ADMIN_MASK, Launched, field, metric, thread_status};
use crate::support::{
    MIB, can_mount,
    image::{image_cli, mkfs, put},
    pattern, require_root, wait_for,
};

/// A temp dir with a 4 GiB image holding `/a.bin` (3 MiB of pattern 1) and an empty mount point.
pub fn image(dir: &Path) -> (PathBuf, PathBuf) {
    let (img, mut fs) = mkfs(dir, "img", 4 << 30);
    put(&mut fs, "/a.bin", &pattern(3 * MIB as usize, 1));
    drop(fs);
    let mnt = dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    (img, mnt)
}

/// Run `famfs-daemon run` with probes on `img` at `mnt`, plus `extra`.
pub fn start(dir: &Path, wrapper: &[&str], img: &Path, mnt: &Path, extra: &[&str]) -> Launched {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "4",
        "--image",
        img.to_str().unwrap(),
        "--mountpoint",
        mnt.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Launched::start(dir, wrapper, &args, Some(mnt))
}

/// What a serving daemon must still do once sandboxed: reads through the mount, a write that lands
/// in the image, per-file metrics and probe statistics (BPF map reads and BPF_OBJ_GET_INFO_BY_FD
/// without capabilities), the log poll picking up a file another writer appended, SIGHUP.
pub fn exercise(d: &Launched, dir: &Path, img: &Path, mnt: &Path) {
    let want = pattern(3 * MIB as usize, 1);
    let mut got = Vec::new();
    std::fs::File::open(mnt.join("a.bin"))
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert!(got == want, "read of /a.bin through the mount differs");

    // The join counts the kernel's reads of the whole file, and the probes saw the requests.
    let client = d.client();
    let text = wait_for(Duration::from_secs(15), || {
        let t = client.get("/metrics").ok()?;
        (metric(&t, "famfs_file_read_bytes_total", "path=\"/a.bin\"") == Some(3.0 * MIB as f64))
            .then_some(t)
    })
    .expect("famfs_file_read_bytes_total for /a.bin never reached 3 MiB");
    let runs = metric(
        &text,
        "famfs_probe_runs_total",
        "probe=\"fuse_request_send\"",
    );
    assert!(runs.is_some_and(|r| r > 0.0), "probe runs: {runs:?}");
    assert_eq!(
        metric(&text, "famfs_probe_attached", "probe=\"fuse_request_end\""),
        Some(1.0)
    );

    // A write through the mount reaches the image (read back by another process).
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(mnt.join("a.bin"))
        .unwrap();
    let patch = pattern(8192, 77);
    f.write_all_at(&patch, MIB).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let out = image_cli(dir, &["read", img.to_str().unwrap(), "/a.bin"]);
    let mut expect = want.clone();
    expect[MIB as usize..MIB as usize + 8192].copy_from_slice(&patch);
    assert!(out.stdout == expect, "the write did not reach the image");

    // Another writer appends a file: the log poll makes it appear in the mount.
    let src = dir.join("late.txt");
    std::fs::write(&src, b"appended while sandboxed\n").unwrap();
    image_cli(
        dir,
        &[
            "cp",
            img.to_str().unwrap(),
            src.to_str().unwrap(),
            "/late.txt",
        ],
    );
    let late = wait_for(Duration::from_secs(10), || {
        std::fs::read(mnt.join("late.txt")).ok()
    });
    assert_eq!(
        late.as_deref(),
        Some(&b"appended while sandboxed\n"[..]),
        "the log poll did not bring /late.txt into the mount within 10 s"
    );

    d.signal(libc::SIGHUP);
    d.wait_stderr("SIGHUP: refreshing from the log");
    d.wait_stderr("log refreshed (requested)");
}

#[test]
fn every_thread_ends_with_the_documented_set_and_the_daemon_still_serves() {
    let test = "every_thread_ends_with_the_documented_set_and_the_daemon_still_serves";
    if !can_mount(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (img, mnt) = image(tmp.path());
    let mut d = start(tmp.path(), &[], &img, &mnt, &[]);
    let line = d.wait_stderr("famfs-daemon: sandbox:");
    assert!(
        line.contains("permitted cap_sys_admin, bounding cap_sys_admin, no_new_privs"),
        "{line}"
    );

    let threads = thread_status(d.pid);
    let names: Vec<&str> = threads.iter().map(|t| t.1.as_str()).collect();
    for want in [
        "famfs-daemon",
        "fuse-worker-0",
        "fuse-worker-1",
        "fuse-worker-2",
        "fuse-worker-3",
        "famfs-join",
        "famfs-log-watch",
        "famfs-http",
    ] {
        assert!(names.contains(&want), "no thread {want} in {names:?}");
    }
    assert!(threads.len() >= 9, "{names:?}");
    for (tid, name, status) in &threads {
        let got = [
            "CapInh",
            "CapPrm",
            "CapEff",
            "CapBnd",
            "CapAmb",
            "NoNewPrivs",
            "Seccomp",
            "Seccomp_filters",
        ]
        .map(|k| field(status, k));
        assert_eq!(
            got,
            [
                "0000000000000000",
                "0000000000200000",
                "0000000000000000",
                "0000000000200000",
                "0000000000000000",
                "1",
                "2",
                "1"
            ],
            "thread {tid} ({name})"
        );
    }
    assert_eq!(CAP_SYS_ADMIN_MASK, 1 << 21);

    exercise(&d, tmp.path(), &img, &mnt);

    // Threads started later (none are expected, but tokio may add blocking threads) inherit the set.
    for (tid, name, status) in thread_status(d.pid) {
        assert_eq!(field(&status, "CapEff"), "0000000000000000", "{tid} {name}");
        assert_eq!(field(&status, "Seccomp"), "2", "{tid} {name}");
    }

    let s = d.stop();
    assert!(s.ok, "the daemon did not exit cleanly: {s:?}");
    assert!(!s.left_mounted, "the daemon left its mount: {s:?}");
    assert!(
        s.stderr
            .iter()
            .any(|l| l.starts_with("famfs-daemon: unmounted")),
        "{s:?}"
    );
    assert!(
        !s.stderr
            .iter()
            .any(|l| l.starts_with("famfs-daemon: unmount ")),
        "{s:?}"
    );
}

#[test]
fn no_sandbox_keeps_roots_capabilities() {
    let test = "no_sandbox_keeps_roots_capabilities";
    if !can_mount(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (img, mnt) = image(tmp.path());
    let mut d = start(
        tmp.path(),
        &[],
        &img,
        &mnt,
        &["--no-probes", "--no-sandbox"],
    );
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    for (tid, name, status) in thread_status(d.pid) {
        for k in ["CapEff", "CapPrm", "CapBnd"] {
            assert_eq!(field(&status, k), field(&own, k), "{tid} {name} {k}");
        }
        assert_eq!(field(&status, "Seccomp"), "0", "{tid} {name}");
        assert_eq!(field(&status, "NoNewPrivs"), "0", "{tid} {name}");
    }
    let s = d.stop();
    assert!(s.ok && !s.left_mounted, "{s:?}");
    assert!(!s.stderr.iter().any(|l| l.contains("sandbox:")), "{s:?}");
}

#[test]
fn without_a_mount_no_capability_stays() {
    let test = "without_a_mount_no_capability_stays";
    if !require_root(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Launched::start(
        tmp.path(),
        &[],
        &["--listen", "127.0.0.1:0", "--no-probes"],
        None,
    );
    for (tid, name, status) in thread_status(d.pid) {
        let got =
            ["CapPrm", "CapEff", "CapBnd", "NoNewPrivs", "Seccomp"].map(|k| field(&status, k));
        assert_eq!(
            got,
            [
                "0000000000000000",
                "0000000000000000",
                "0000000000000000",
                "1",
                "2"
            ],
            "thread {tid} ({name})"
        );
    }
    assert!(d.client().get("/metrics").unwrap().contains("famfs_"));
    let s = d.stop();
    assert!(s.ok, "{s:?}");
}
