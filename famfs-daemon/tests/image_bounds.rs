//! Resources bounded by what the log holds, not by what the superblock claims, and crash-honest
//! copies, with real processes on sparse image files:
//! * `image mkfs --size 8T --log-len 1T` finishes in well under 20 s and 512 MiB (wall time and peak
//!   RSS of the process measured with wait4), and the result checks clean;
//! * a daemon serving an 8 TiB image whose superblock claims a 4 TiB log (valid CRCs) and whose log
//!   header claims all 8 billion slots are in use starts in < 1 s with a peak RSS < 64 MiB (root,
//!   real mount; SKIP otherwise), serving the entries that are really there;
//! * `image cp` killed with SIGKILL while it copies (seen in the bytes it has read, not by sleeping)
//!   leaves a clean fsck and no file, although the space it was filling held stale bytes;
//! * mkfs on a block device (a loop device the test sets up and detaches; root) zeroes a log region
//!   that held old bytes.

// Test code: a failed unwrap/expect/assertion is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    fs::OpenOptions,
    io::Read,
    os::unix::{fs::FileExt, process::CommandExt},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use famfs_daemon::famfs::{
    Image, MkfsOptions,
    format::{LH_OFF_NEXT_SEQNUM, LOG_OFFSET},
};
use support::{
    self as sup, GIB, MIB, can_mount,
    daemon::Daemon,
    image::{HOST, image_cli, mkfs, uuid_file},
};

const TIB: u64 = 1 << 40;

/// Run `famfs-daemon image ARGS` to completion; returns (exit code, stdout, stderr, wall time, peak
/// RSS of that process in KiB). The peak is `VmHWM` read at its exit, where ptrace stops it
/// (PTRACE_O_TRACEEXIT): wait4's `ru_maxrss` would include this test process's own RSS, which a
/// spawned child inherits until its exec.
fn image_measured(dir: &Path, args: &[&str]) -> (i32, String, String, Duration, u64) {
    let t = Instant::now();
    let mut cmd = Command::new(sup::DAEMON);
    cmd.arg("image")
        .args(args)
        .env("FAMFS_SYSTEM_UUID_PATH", uuid_file(dir))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: ptrace(PTRACE_TRACEME) is async-signal-safe and touches no memory of ours; the child
    // then stops at its exec until we let it go on.
    unsafe {
        cmd.pre_exec(|| {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id() as libc::pid_t;
    let mut hwm = 0;
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a pointer to a live local.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            break;
        }
        let sig = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xff;
        let mut deliver = 0;
        if sig == libc::SIGTRAP && event == libc::PTRACE_EVENT_EXIT {
            hwm = vm_hwm_kib(pid);
        } else if sig == libc::SIGTRAP && event == 0 && hwm == 0 {
            // The stop at exec: ask for a stop at exit too.
            // SAFETY: ptrace on our stopped tracee; the option is a plain integer.
            let r =
                unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, libc::PTRACE_O_TRACEEXIT) };
            assert_eq!(r, 0);
        } else {
            deliver = sig;
        }
        // SAFETY: resume our stopped tracee, passing on any signal that stopped it.
        let r = unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, deliver) };
        assert_eq!(r, 0);
    }
    let took = t.elapsed();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    // Already reaped by waitpid: do not wait on `child` again.
    std::mem::forget(child);
    (code, out.join().unwrap(), err.join().unwrap(), took, hwm)
}

#[test]
fn mkfs_of_an_8t_image_with_a_1t_log_is_fast_and_small() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("big.img");
    let p = img.to_str().unwrap();
    let (code, out, err, took, rss_kib) =
        image_measured(dir.path(), &["mkfs", p, "--size", "8T", "--log-len", "1T"]);
    println!("mkfs 8T image, 1T log: {took:?}, peak RSS {rss_kib} KiB");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("log 0x10000000000 bytes (2021161080 entries)"),
        "{out}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(rss_kib > 0 && rss_kib < 512 * 1024, "{rss_kib} KiB");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 8 * TIB);
    // The image is usable and checks clean; the check reads only the log's used part.
    image_cli(dir.path(), &["mkdir", p, "d"]);
    let src = dir.path().join("src.txt");
    std::fs::write(&src, b"on a 1 TiB log\n").unwrap();
    image_cli(dir.path(), &["cp", p, src.to_str().unwrap(), "d/f"]);
    let (code, out, err, took, rss_kib) = image_measured(dir.path(), &["fsck", p]);
    println!("fsck of it: {took:?}, peak RSS {rss_kib} KiB");
    assert!(rss_kib > 0 && rss_kib < 512 * 1024, "{rss_kib} KiB");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("log: 2 of 2021161080 entries used"), "{out}");
    assert!(
        out.contains("fsck: clean: 0 errors, 0 warnings, 0 notes"),
        "{out}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    let read = image_cli(dir.path(), &["read", p, "d/f"]);
    assert_eq!(read.stdout, b"on a 1 TiB log\n");
    // Re-creating it zeroes the old log entries (only where the log holds data): the check finds
    // no leftover slot.
    let (code, out, err, took, _) = image_measured(
        dir.path(),
        &["mkfs", p, "--size", "8T", "--log-len", "1T", "--force"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    let fsck = image_cli(dir.path(), &["fsck", p]);
    let text = String::from_utf8_lossy(&fsck.stdout);
    assert!(text.contains("log: 0 of 2021161080 entries used"), "{text}");
    assert!(text.contains("0 notes"), "{text}");
}

/// `VmHWM` (peak resident set) of `pid`, in KiB.
fn vm_hwm_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn crafted_superblock_and_header_are_served_with_little_memory() {
    if !can_mount("crafted_superblock_and_header_are_served_with_little_memory") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crafted.img");
    // An 8 TiB sparse image whose superblock (valid CRC) gives the log 4 TiB: 8,084,644,321 slots.
    let mut img = Image::mkfs(
        &path,
        &MkfsOptions {
            size: Some(8 * TIB),
            log_len: 4 * TIB,
            host_uuid: Some(HOST),
            system_uuid_path: Some(uuid_file(dir.path())),
            ..Default::default()
        },
    )
    .unwrap();
    let slots = img.geometry().slots;
    assert_eq!(slots, 8_084_644_321);
    img.mkdir("d", 0o755, 0, 0, false).unwrap();
    let hello = b"two real entries, eight billion claimed\n";
    let mut fill = |off: u64, buf: &mut [u8]| {
        buf.copy_from_slice(&hello[off as usize..off as usize + buf.len()]);
        Ok(())
    };
    img.creat_from("d/hello", hello.len() as u64, 0o644, 0, 0, None, &mut fill)
        .unwrap();
    drop(img);
    // The header (its CRC covers neither field) claims every slot is in use.
    let mut pos = [0u8; 16];
    pos[..8].copy_from_slice(&slots.to_le_bytes());
    pos[8..].copy_from_slice(&slots.to_le_bytes());
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&pos, LOG_OFFSET + LH_OFF_NEXT_SEQNUM as u64)
        .unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let t = Instant::now();
    let d = Daemon::serve(dir.path(), &path, &mnt, &[]);
    let pid = d.pid().unwrap();
    let start = t.elapsed();
    let hwm = vm_hwm_kib(pid);
    println!("daemon on the crafted image: ready after {start:?}, VmHWM {hwm} KiB");
    // It serves what is really in the log, and says where the play stopped.
    let m = &mnt;
    assert_eq!(std::fs::read(m.join("d/hello")).unwrap(), hello);
    assert_eq!(
        std::fs::metadata(m.join(".meta/.log")).unwrap().len(),
        4 * TIB
    );
    let line = d.wait_stderr("log play stopped").unwrap();
    assert!(line.contains("entry 2"), "{line}");
    let hwm = vm_hwm_kib(pid);
    println!("VmHWM after serving: {hwm} KiB");
    assert!(start < Duration::from_secs(1), "{start:?}");
    assert!(hwm < 64 * 1024, "{hwm} KiB");
}

/// Bytes `pid` has read through read(2)-like calls (`rchar` of /proc/PID/io).
fn rchar(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn cp_killed_while_copying_leaves_no_file_and_a_clean_log() {
    let dir = tempfile::tempdir().unwrap();
    let (path, img) = mkfs(dir.path(), "famfs.img", 8 * GIB);
    let data_start = img.geometry().data_start();
    drop(img);
    let p = path.to_str().unwrap();
    // A 1 GiB source, and stale bytes (0xEE) where the copy will be placed (first fit).
    const SIZE: u64 = GIB;
    let src = dir.path().join("big.src");
    let f = std::fs::File::create(&src).unwrap();
    let chunk = sup::pattern(4 * MIB as usize, 11);
    let stale = vec![0xEEu8; 4 * MIB as usize];
    let imgf = OpenOptions::new().write(true).open(&path).unwrap();
    for k in 0..SIZE / (4 * MIB) {
        f.write_all_at(&chunk, k * 4 * MIB).unwrap();
        imgf.write_all_at(&stale, data_start + k * 4 * MIB).unwrap();
    }
    drop((f, imgf));
    // Start the copy; once it has read 64 MiB of the source it is writing into the image: kill it.
    let mut child = Command::new(sup::DAEMON)
        .args(["image", "cp", p, src.to_str().unwrap(), "big"])
        .env("FAMFS_SYSTEM_UUID_PATH", uuid_file(dir.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let seen = sup::wait_for(Duration::from_secs(60), || {
        rchar(pid).filter(|&n| n >= 64 * MIB)
    });
    child.kill().unwrap();
    let status = child.wait().unwrap();
    println!("cp killed after reading {seen:?} bytes of the source: {status:?}");
    assert!(seen.is_some(), "cp never read 64 MiB");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "killed mid-copy");
    // The log is clean and has no entry for the file: nothing with stale contents is visible.
    let fsck = image_cli(dir.path(), &["fsck", p]);
    let text = String::from_utf8_lossy(&fsck.stdout);
    assert!(text.contains("log: 0 of 15420 entries used"), "{text}");
    assert!(
        text.contains("fsck: clean: 0 errors, 0 warnings, 0 notes"),
        "{text}"
    );
    let ls = image_cli(dir.path(), &["ls", "-R", p]);
    assert_eq!(
        String::from_utf8_lossy(&ls.stdout),
        "/:\n.meta\n\n/.meta:\n.superblock\n.log\n"
    );
    // A copy that completes puts every byte of the source over the stale ones.
    image_cli(dir.path(), &["cp", p, src.to_str().unwrap(), "big"]);
    let read = image_cli(dir.path(), &["read", p, "big"]);
    assert_eq!(read.stdout.len() as u64, SIZE);
    for (k, c) in read.stdout.chunks(chunk.len()).enumerate() {
        assert!(c == chunk.as_slice(), "chunk {k} differs from the source");
    }
}

/// A loop device over a sparse file; detached (by its own path) on drop.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn mkfs_on_a_block_device_zeroes_the_old_log() {
    if !sup::require_root("mkfs_on_a_block_device_zeroes_the_old_log") {
        return;
    }
    if Command::new("losetup").arg("--version").output().is_err() {
        println!("SKIP: mkfs_on_a_block_device_zeroes_the_old_log: losetup is missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("disk");
    let f = std::fs::File::create(&backing).unwrap();
    f.set_len(4 * GIB).unwrap();
    // Old bytes where the log will be: mkfs must leave the whole log region zero.
    const LOG: u64 = 32 * MIB;
    f.write_all_at(&vec![0xABu8; LOG as usize], LOG_OFFSET)
        .unwrap();
    f.sync_all().unwrap();
    drop(f);
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&backing)
        .output()
        .unwrap();
    if !out.status.success() {
        println!(
            "SKIP: mkfs_on_a_block_device_zeroes_the_old_log: losetup: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    let dev = Loop(String::from_utf8_lossy(&out.stdout).trim().to_string());
    let (code, out, err, took, rss) = image_measured(dir.path(), &["mkfs", &dev.0, "-l", "32M"]);
    println!("mkfs on {}: {took:?}, peak RSS {rss} KiB", dev.0);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("size 4294967296"), "{out}");
    let fsck = image_cli(dir.path(), &["fsck", &dev.0]);
    let text = String::from_utf8_lossy(&fsck.stdout);
    assert!(
        text.contains("fsck: clean: 0 errors, 0 warnings, 0 notes"),
        "{text}"
    );
    // Through the backing file: the log region past its 48-byte header reads as zeros.
    let mut region = vec![0u8; LOG as usize];
    std::fs::File::open(&backing)
        .unwrap()
        .read_exact_at(&mut region, LOG_OFFSET)
        .unwrap();
    let nonzero = region[48..].iter().filter(|&&b| b != 0).count();
    assert_eq!(nonzero, 0, "old bytes left in the log region");
    image_cli(dir.path(), &["mkdir", &dev.0, "on-a-loop-device"]);
    let ls = image_cli(dir.path(), &["ls", &dev.0]);
    assert!(String::from_utf8_lossy(&ls.stdout).contains("on-a-loop-device"));
}
