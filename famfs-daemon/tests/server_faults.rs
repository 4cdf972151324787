//! The famfs server on real FUSE mounts of this kernel (root; SKIP otherwise) when the image fails
//! under it, each served by a `famfs-daemon run` process the test starts, stops by PID and unmounts:
//! * the image file truncated under a live mount: reads of a file stored past the new end get EIO,
//!   the other files still read byte for byte, the daemon stays up and `/healthz` says degraded;
//! * a sparse image on a small tmpfs (mounted here, unmounted in Drop) written through the mount until
//!   the tmpfs is full: the writer gets ENOSPC (or EIO), everything written before reads back, the
//!   other files are intact, the daemon stays up, `/healthz` names the failure, fsck is clean;
//! * `.meta/.superblock` and `.meta/.log` refuse opening for writing with EPERM, root included;
//! * the filesystem re-created under the mount: `/healthz` says stale, file reads get EIO;
//! * an image given through a symbolic link is refused at start with a clear message;
//! * spliced READ replies (the default; a pipe per worker): every file reads back exactly the image's
//!   bytes (ends not on a page boundary, reads at odd offsets, replies that fit the pipe and 1 MiB
//!   ones that may not), and past a truncated image's end they answer EIO, never short garbage.

// Test code: a failed unwrap/expect/assertion is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    ffi::CString,
    fs::{File, OpenOptions},
    io::{Read, Write},
    os::unix::{ffi::OsStrExt, fs::FileExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use famfs_daemon::famfs::{Fmap, Image};
use support::{
    DAEMON, GIB, MIB, can_mount,
    daemon::{Daemon, wait_exit},
    image::{image_cli, mkfs, put, uuid_file},
    mounts::is_mounted,
    pattern, wait_for,
};

fn mnt_dir(dir: &Path, name: &str) -> PathBuf {
    let m = dir.join(name);
    std::fs::create_dir_all(&m).unwrap();
    m.canonicalize().unwrap()
}

/// Read a whole file through a fresh open: its bytes, or the errno of the first failure.
fn read_all(p: &Path) -> Result<Vec<u8>, i32> {
    let mut f = File::open(p).map_err(|e| e.raw_os_error().unwrap_or(0))?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)
        .map_err(|e| e.raw_os_error().unwrap_or(0))?;
    Ok(v)
}

/// The device offset of the first extent of `id`.
fn first_extent(img: &Image, id: u64) -> u64 {
    match img.namespace().get(id).and_then(|i| i.fmap()) {
        Some(Fmap::Simple(e)) => e[0].offset,
        other => panic!("inode {id}: a simple file expected, got {other:?}"),
    }
}

/// Wait (15 s at most) until `/healthz` answers `code` with a body containing `needle`.
fn wait_health(d: &Daemon, code: u16, needle: &str) -> String {
    let mut last = (0, String::new());
    let got = wait_for(Duration::from_secs(15), || {
        last = d.get("/healthz");
        (last.0 == code && last.1.contains(needle)).then(|| last.1.clone())
    });
    got.unwrap_or_else(|| panic!("/healthz never said {code} {needle:?}; last: {last:?}"))
}

#[test]
fn truncating_the_image_under_a_live_mount_gives_eio_past_the_end_only() {
    let test = "truncating_the_image_under_a_live_mount_gives_eio_past_the_end_only";
    if !can_mount(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (img, mut image) = mkfs(d, "famfs.img", 4 * GIB);
    let near = pattern(MIB as usize + 17, 1);
    let near_id = put(&mut image, "near.bin", &near);
    let small = b"small and near\n".to_vec();
    let small_id = put(&mut image, "dir-less-small.txt", &small);
    // Push the next file far up: a 64 MiB file in between, then the far one.
    image.creat("filler", 64 * MIB, 0o644, 0, 0, None).unwrap();
    let far = pattern(3 * MIB as usize, 2);
    let far_id = put(&mut image, "far.bin", &far);
    assert!(first_extent(&image, near_id) + near.len() as u64 <= 16 * MIB);
    assert!(first_extent(&image, small_id) + small.len() as u64 <= 16 * MIB);
    assert!(first_extent(&image, far_id) >= 64 * MIB);
    drop(image);
    let mnt = mnt_dir(d, "mnt");
    let mut daemon = Daemon::serve(d, &img, &mnt, &["--poll-interval", "100ms"]);
    assert_eq!(daemon.get("/healthz"), (200, "ok\n".into()));
    assert!(read_all(&mnt.join("far.bin")).unwrap() == far);

    OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(16 * MIB)
        .unwrap();
    // The file past the end: EIO (the daemon did not die of SIGBUS).
    assert_eq!(read_all(&mnt.join("far.bin")), Err(libc::EIO));
    // The others: byte for byte.
    assert!(read_all(&mnt.join("near.bin")).unwrap() == near, "near.bin");
    assert_eq!(read_all(&mnt.join("dir-less-small.txt")).unwrap(), small);
    let h = wait_health(&daemon, 503, "shrank to 0x1000000");
    println!("/healthz: {h}");
    daemon
        .wait_stderr("famfs: the image shrank to 0x1000000")
        .expect("the shrink is logged");
    // Still up and serving: another read, a listing, the process itself.
    assert_eq!(read_all(&mnt.join("far.bin")), Err(libc::EIO));
    assert!(read_all(&mnt.join("near.bin")).unwrap() == near);
    let names: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(daemon.is_running());
    assert!(is_mounted(&mnt));
    let st = daemon.stop().expect("the daemon exits on SIGTERM");
    assert!(st.success(), "{st:?}");
}

/// A tmpfs of `size` mounted at `dir`; detached in Drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let c = |s: &[u8]| CString::new(s).unwrap();
        let (src, target, fstype, data) = (
            c(b"tmpfs"),
            c(dir.as_os_str().as_bytes()),
            c(b"tmpfs"),
            c(format!("size={size},mode=0700").as_bytes()),
        );
        // SAFETY: NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let p = CString::new(self.0.as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path; detaching our own tmpfs.
        unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn writing_a_sparse_image_on_a_full_tmpfs_fails_the_writer_only() {
    let test = "writing_a_sparse_image_on_a_full_tmpfs_fails_the_writer_only";
    if !can_mount(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let shm = Tmpfs::mount(&d.join("shm"), "40m");
    let (img, mut image) = mkfs(&shm.0, "famfs.img", 4 * GIB);
    let keep = pattern(2 * MIB as usize + 5, 3);
    put(&mut image, "keep.bin", &keep);
    // 256 MiB never written: all hole in the image, much more than the tmpfs holds.
    image
        .creat("big.bin", 256 * MIB, 0o644, 0, 0, None)
        .unwrap();
    drop(image);
    let mnt = mnt_dir(d, "mnt");
    let mut daemon = Daemon::serve(d, &img, &mnt, &[]);
    let mut f = OpenOptions::new()
        .write(true)
        .open(mnt.join("big.bin"))
        .unwrap();
    let chunk = MIB as usize;
    let mut written = 0usize;
    let err = loop {
        let data = pattern(chunk, (written / chunk) as u8);
        match f.write(&data) {
            Ok(0) => panic!("write returned 0 at {written}"),
            Ok(n) => written += n,
            Err(e) => break e,
        }
        assert!(written < 256 * MIB as usize, "the tmpfs never filled up");
    };
    let code = err.raw_os_error();
    println!("writer stopped after {written} bytes: {err}");
    assert!(
        code == Some(libc::ENOSPC) || code == Some(libc::EIO),
        "ENOSPC or EIO expected, got {err}"
    );
    assert!(
        (20 * MIB as usize..40 * MIB as usize).contains(&written),
        "{written} bytes fit in a 40 MiB tmpfs"
    );
    drop(f);
    // Nothing else lost: the other file, and every byte written before the failure.
    assert!(read_all(&mnt.join("keep.bin")).unwrap() == keep, "keep.bin");
    let back = File::open(mnt.join("big.bin")).unwrap();
    let mut buf = vec![0u8; chunk];
    for k in 0..written / chunk {
        back.read_exact_at(&mut buf, (k * chunk) as u64).unwrap();
        assert!(buf == pattern(chunk, k as u8), "big.bin MiB {k}");
    }
    drop(back);
    let h = wait_health(&daemon, 503, "No space left on device");
    assert!(h.contains("WRITE of inode"), "{h}");
    println!("/healthz: {h}");
    assert!(daemon.is_running());
    let st = daemon.stop().expect("the daemon exits on SIGTERM");
    assert!(st.success(), "{st:?}");
    // The log was never touched: fsck is clean.
    let out = image_cli(d, &["fsck", img.to_str().unwrap()]);
    println!("{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn meta_files_refuse_writers_with_eperm_even_root() {
    let test = "meta_files_refuse_writers_with_eperm_even_root";
    if !can_mount(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (img, mut image) = mkfs(d, "famfs.img", 4 * GIB);
    put(&mut image, "f.txt", b"data\n");
    drop(image);
    let head = |p: &Path| {
        let mut b = vec![0u8; (10 * MIB) as usize];
        File::open(p).unwrap().read_exact_at(&mut b, 0).unwrap();
        b
    };
    let before = head(&img);
    let mnt = mnt_dir(d, "mnt");
    let daemon = Daemon::serve(d, &img, &mnt, &[]);
    for name in [".meta/.superblock", ".meta/.log"] {
        let p = mnt.join(name);
        for (w, rw, trunc) in [
            (true, false, false),
            (true, true, false),
            (true, false, true),
        ] {
            let e = OpenOptions::new()
                .read(rw)
                .write(w)
                .truncate(trunc)
                .open(&p)
                .unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{name}: {e}");
        }
        // `sh -c 'echo > FILE'` as an operator would try it.
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!("echo x > '{}'", p.display()))
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!st.success(), "{name}: the shell's redirection must fail");
        assert!(!read_all(&p).unwrap().is_empty(), "{name} still reads");
    }
    assert_eq!(read_all(&mnt.join("f.txt")).unwrap(), b"data\n");
    drop(daemon);
    assert!(head(&img) == before, "superblock and log unchanged");
}

#[test]
fn a_filesystem_recreated_under_the_mount_is_served_no_more() {
    let test = "a_filesystem_recreated_under_the_mount_is_served_no_more";
    if !can_mount(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (img, mut image) = mkfs(d, "famfs.img", 4 * GIB);
    let data = pattern(100_000, 4);
    put(&mut image, "f.bin", &data);
    drop(image);
    let mnt = mnt_dir(d, "mnt");
    let mut daemon = Daemon::serve(d, &img, &mnt, &["--poll-interval", "100ms"]);
    assert!(read_all(&mnt.join("f.bin")).unwrap() == data);
    image_cli(d, &["mkfs", "--force", img.to_str().unwrap()]);
    let h = wait_health(&daemon, 503, "stale: ");
    assert!(h.contains("superblock changed since open"), "{h}");
    let line = daemon
        .wait_stderr("famfs: stale: ")
        .expect("said in the log");
    assert!(line.contains("restart the daemon"), "{line}");
    assert_eq!(read_all(&mnt.join("f.bin")), Err(libc::EIO));
    assert!(daemon.is_running());
    let st = daemon.stop().expect("exits");
    assert!(st.success(), "{st:?}");
    // Every line up to the shutdown's last one: none repeats the stale reason (polls went on).
    let mut later = Vec::new();
    loop {
        let l = daemon
            .stderr
            .recv_timeout(Duration::from_secs(15))
            .expect("the shutdown line");
        if l.contains("famfs-daemon: unmounted") {
            break;
        }
        later.push(l);
    }
    let again: Vec<&String> = later.iter().filter(|l| l.contains("stale")).collect();
    assert!(again.is_empty(), "said once: {again:?}");
}

#[test]
fn an_image_behind_a_symbolic_link_is_refused_at_start() {
    let test = "an_image_behind_a_symbolic_link_is_refused_at_start";
    if !can_mount(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (img, image) = mkfs(d, "famfs.img", 4 * GIB);
    drop(image);
    let link = d.join("link.img");
    std::os::unix::fs::symlink(&img, &link).unwrap();
    let mnt = mnt_dir(d, "mnt");
    let mut child = Command::new(DAEMON)
        .args(["run", "--listen", "127.0.0.1:0", "--no-probes", "--image"])
        .arg(&link)
        .arg("--mountpoint")
        .arg(&mnt)
        .env("FAMFS_SYSTEM_UUID_PATH", uuid_file(d))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let st = wait_exit(&mut child, Duration::from_secs(30))
        .unwrap()
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("the daemon did not exit");
        });
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!st.success());
    assert!(
        err.contains("link.img") && err.contains("is a symbolic link"),
        "{err}"
    );
    assert!(!is_mounted(&mnt));
    std::io::stderr().write_all(err.as_bytes()).unwrap();
}

/// Pipe descriptors the process `pid` holds.
fn pipe_fds(pid: libc::pid_t) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with("pipe:"))
        .count()
}

/// `len` bytes at `off` of `p` through one pread (loops over short reads), or the errno.
fn pread_exact(p: &Path, off: u64, len: usize) -> Result<Vec<u8>, i32> {
    let f = File::open(p).map_err(|e| e.raw_os_error().unwrap_or(0))?;
    let mut v = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match f.read_at(&mut v[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) => return Err(e.raw_os_error().unwrap_or(0)),
        }
    }
    v.truncate(done);
    Ok(v)
}

#[test]
fn spliced_reads_give_the_image_bytes_exactly_and_eio_past_a_truncated_end() {
    let test = "spliced_reads_give_the_image_bytes_exactly_and_eio_past_a_truncated_end";
    if !can_mount(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (img, mut image) = mkfs(d, "famfs.img", 4 * GIB);
    // Ends off a page boundary; one file spanning several 2 MiB allocation units.
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("odd.bin", pattern(3 * MIB as usize + 4095, 3)),
        ("tiny.txt", b"seventeen bytes!\n".to_vec()),
        ("page-and-one.bin", pattern(4097, 4)),
    ];
    for (name, data) in &files {
        let id = put(&mut image, name, data);
        assert!(
            first_extent(&image, id) + data.len() as u64 <= 64 * MIB,
            "{name}"
        );
    }
    image.creat("filler", 64 * MIB, 0o644, 0, 0, None).unwrap();
    let far = pattern(2 * MIB as usize + 123, 5);
    let far_id = put(&mut image, "far.bin", &far);
    assert!(first_extent(&image, far_id) >= 64 * MIB);
    drop(image);
    // The copying daemon's pipes, for the count below.
    let mnt = mnt_dir(d, "mnt");
    let mut copying = Daemon::serve(
        d,
        &img,
        &mnt,
        &["--workers", "4", "--splice-reads", "false"],
    );
    let copy_pipes = pipe_fds(copying.pid().unwrap());
    for (name, data) in &files {
        assert!(
            read_all(&mnt.join(name)).unwrap() == *data,
            "{name} (copied)"
        );
    }
    assert!(copying.stop().unwrap().success());

    // 512 KiB read-ahead: replies of 512 KiB fit a pipe of pipe-max-size and are spliced.
    let mut daemon = Daemon::serve(d, &img, &mnt, &["--workers", "4", "--read-ahead", "512K"]);
    let pid = daemon.pid().unwrap();
    assert_eq!(
        pipe_fds(pid),
        copy_pipes + 2 * 4,
        "one pipe (two fds) per worker"
    );
    for (name, data) in files.iter().chain([("far.bin", far.clone())].iter()) {
        assert!(read_all(&mnt.join(name)).unwrap() == *data, "{name}");
    }
    // Reads at odd offsets and lengths, the file's last bytes among them.
    let (name, data) = &files[0];
    let n = data.len() as u64;
    for (off, len) in [
        (5u64, 4093usize),
        (MIB - 1, MIB as usize + 2),
        (n - 10, 100),
        (n, 10),
    ] {
        let end = (off as usize + len).min(data.len());
        let want = &data[(off as usize).min(end)..end];
        assert!(
            pread_exact(&mnt.join(name), off, len).unwrap() == want,
            "{name} at {off}+{len}"
        );
    }

    OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    // Past the new end: EIO on every try (a splice from beyond EOF comes back short and the
    // copying path answers), never a short reply.
    for _ in 0..3 {
        assert_eq!(read_all(&mnt.join("far.bin")), Err(libc::EIO));
    }
    for (name, data) in &files {
        assert!(
            read_all(&mnt.join(name)).unwrap() == *data,
            "{name} after the truncation"
        );
    }
    assert!(daemon.is_running());
    assert!(daemon.stop().unwrap().success());
}
