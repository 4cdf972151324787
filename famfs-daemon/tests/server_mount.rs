//! The famfs server on real FUSE mounts of this kernel (root; SKIP otherwise), each served by a
//! `famfs-daemon run` process that the test starts, stops by PID and unmounts in Drop:
//! `ls -lR`, `stat` and sha256 of every file against what the image tools wrote; writes through the
//! mount surviving unmount and remount byte for byte; `find` over 5,000 files; 8 concurrent readers;
//! `mmap` of a 64 MiB file (reads, and writes that reach the image); a stale mount left by a SIGKILLed
//! daemon cleared by the next start; clean unmount on SIGINT/SIGTERM; `--read-ahead` setting the
//! mount's kernel read-ahead exactly, and its bad values refused with the reason.

// Test code: a failed unwrap/expect/assertion is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    collections::{BTreeMap, HashMap},
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom},
    os::unix::fs::{FileExt, MetadataExt, PermissionsExt},
    path::Path,
    process::Command,
    time::Duration,
};

use support::{
    GIB, MIB, can_mount,
    daemon::Daemon,
    image::{image_cli, mkfs, put},
    mounts::{is_mounted, mnt_dir},
    pattern, sha256, wait_for,
};

fn write_src(p: &Path, data: &[u8], mode: u32) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Walk `root`: relative path → (is_dir, mode & 0o7777, size, subdirectory count).
fn walk(root: &Path) -> BTreeMap<String, (bool, u32, u64, u32)> {
    let mut out = BTreeMap::new();
    fn rec(root: &Path, dir: &Path, out: &mut BTreeMap<String, (bool, u32, u64, u32)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if md.is_dir() {
                let subdirs = std::fs::read_dir(&p)
                    .unwrap()
                    .filter(|c| c.as_ref().unwrap().file_type().unwrap().is_dir())
                    .count() as u32;
                out.insert(rel, (true, md.mode() & 0o7777, 0, subdirs));
                rec(root, &p, out);
            } else {
                out.insert(rel, (false, md.mode() & 0o7777, md.len(), 0));
            }
        }
    }
    rec(root, root, &mut out);
    out
}

/// `ls -lRn` of `dir` parsed into relative path → (mode string, nlink, uid, gid, size).
fn ls_lr(dir: &Path) -> BTreeMap<String, (String, u32, u32, u32, u64)> {
    let out = Command::new("ls")
        .args(["-lRn", "--time-style=+%s"])
        .arg(dir)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ls -lR: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let base = dir.to_string_lossy().into_owned();
    let mut cur = String::new();
    let mut m = BTreeMap::new();
    for line in text.lines() {
        if let Some(h) = line.strip_suffix(':') {
            cur = h
                .strip_prefix(&base)
                .unwrap()
                .trim_start_matches('/')
                .to_string();
            continue;
        }
        if line.is_empty() || line.starts_with("total ") {
            continue;
        }
        // mode nlink uid gid size time name (our names have no spaces)
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 7, "ls line {line:?}");
        let name = f[6].to_string();
        let rel = if cur.is_empty() {
            name
        } else {
            format!("{cur}/{name}")
        };
        m.insert(
            rel,
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
            ),
        );
    }
    m
}

fn mode_string(is_dir: bool, mode: u32) -> String {
    let mut s = String::from(if is_dir { "d" } else { "-" });
    for shift in [6, 3, 0] {
        let b = (mode >> shift) & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// `famfs-daemon image ls -Ri IMG`: relative path → inode id.
fn image_ids(dir: &Path, img: &Path) -> HashMap<String, u64> {
    let out = image_cli(dir, &["ls", "-R", "-i", img.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut cur = String::new();
    let mut m = HashMap::new();
    for line in text.lines() {
        if let Some(h) = line.strip_suffix(':') {
            cur = h.trim_start_matches('/').to_string();
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 2 {
            continue;
        }
        let name = f[f.len() - 1];
        let rel = if cur.is_empty() {
            name.to_string()
        } else {
            format!("{cur}/{name}")
        };
        m.insert(rel, f[0].parse().unwrap());
    }
    m
}

#[test]
fn ls_stat_and_sha256_match_what_the_image_tools_wrote() {
    let test = "ls_stat_and_sha256_match_what_the_image_tools_wrote";
    if !can_mount(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A host tree with sizes around page and allocation-unit boundaries, modes, nesting.
    let src = d.join("src");
    write_src(&src.join("empty"), b"", 0o644);
    write_src(&src.join("one"), b"1", 0o600);
    write_src(&src.join("page-1"), &pattern(4095, 1), 0o644);
    write_src(&src.join("page"), &pattern(4096, 2), 0o640);
    write_src(&src.join("unit"), &pattern(2 * MIB as usize, 3), 0o644);
    write_src(
        &src.join("unit+1"),
        &pattern(2 * MIB as usize + 1, 4),
        0o755,
    );
    write_src(
        &src.join("a/b/c/deep.bin"),
        &pattern(5 * MIB as usize + 333, 5),
        0o644,
    );
    write_src(&src.join("a/b/note.txt"), b"nested note\n", 0o444);
    write_src(&src.join("a/x.txt"), b"x\n", 0o644);
    std::fs::set_permissions(src.join("a/b"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let striped_src = d.join("striped.bin");
    write_src(&striped_src, &pattern(9 * MIB as usize + 5, 6), 0o644);

    let img = d.join("famfs.img");
    let imgs = img.to_str().unwrap();
    image_cli(d, &["mkfs", imgs, "-s", "8G"]);
    let mut cp = vec!["cp", "-r", imgs];
    let names: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .collect();
    cp.extend(names.iter().map(String::as_str));
    cp.push("/");
    image_cli(d, &cp);
    image_cli(
        d,
        &[
            "cp",
            "-N",
            "4",
            "-C",
            "2M",
            imgs,
            striped_src.to_str().unwrap(),
            "/striped.bin",
        ],
    );

    let mnt = mnt_dir(d, "mnt");
    let daemon = Daemon::serve(d, &img, &mnt, &[]);
    assert_eq!(daemon.field("mountpoint").as_deref(), mnt.to_str());
    let conn: u32 = daemon.field("connection").unwrap().parse().unwrap();
    assert_eq!(
        famfs_daemon::fuse::channel::mount_connection(&mnt).unwrap(),
        conn
    );
    assert_eq!(daemon.field("fs_uuid").unwrap().len(), 36);

    // ls -lR: every name, type, mode, link count and size.
    let mut want = walk(&src);
    want.insert("striped.bin".into(), (false, 0o644, 9 * MIB + 5, 0));
    let got = ls_lr(&mnt);
    let want_ls: BTreeMap<String, (String, u32, u32, u32, u64)> = want
        .iter()
        .map(|(k, &(is_dir, mode, size, subdirs))| {
            let nlink = if is_dir { 2 + subdirs } else { 1 };
            (k.clone(), (mode_string(is_dir, mode), nlink, 0, 0, size))
        })
        .collect();
    assert_eq!(got, want_ls);

    // stat: inode numbers are the image's inode ids (16 + log index), sizes and types exact.
    let ids = image_ids(d, &img);
    for (rel, &(is_dir, mode, size, _)) in &want {
        let p = mnt.join(rel);
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!(md.ino(), ids[rel], "{rel}: st_ino");
        assert_eq!(md.is_dir(), is_dir, "{rel}");
        assert_eq!(md.mode() & 0o7777, mode, "{rel}");
        if !is_dir {
            assert_eq!(md.len(), size, "{rel}");
            assert_eq!(md.blksize(), 2 * MIB, "{rel}");
        }
    }
    let out = Command::new("stat")
        .args(["-c", "%i %s %a %h %F"])
        .arg(mnt.join("a/b/c/deep.bin"))
        .arg(mnt.join("a/b"))
        .arg(mnt.join(".meta/.log"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "{} {} 644 1 regular file\n{} 0 750 3 directory\n4 8388608 644 1 regular file\n",
            ids["a/b/c/deep.bin"],
            5 * MIB + 333,
            ids["a/b"]
        )
    );
    // sha256 of every file equals the source's.
    for (rel, &(is_dir, ..)) in &want {
        if is_dir {
            continue;
        }
        let srcp = if rel == "striped.bin" {
            striped_src.clone()
        } else {
            src.join(rel)
        };
        assert_eq!(sha256(&mnt.join(rel)), sha256(&srcp), "{rel}");
    }
    // Missing names are ENOENT; df reports the image.
    assert_eq!(
        std::fs::metadata(mnt.join("a/missing"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ENOENT)
    );
    let df = Command::new("df")
        .args(["-B1", "--output=size"])
        .arg(&mnt)
        .output()
        .unwrap();
    let size: u64 = String::from_utf8(df.stdout)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(size, 8 * GIB);
}

#[test]
fn writes_through_the_mount_survive_unmount_and_remount() {
    let test = "writes_through_the_mount_survive_unmount_and_remount";
    if !can_mount(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (img, mut image) = mkfs(d, "famfs.img", 4 * GIB);
    let size = 5 * MIB as usize + 123;
    let orig = pattern(size, 11);
    put(&mut image, "data.bin", &orig);
    drop(image);
    let mnt = mnt_dir(d, "mnt");
    let mut want = orig.clone();
    {
        let mut daemon = Daemon::serve(d, &img, &mnt, &[]);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(mnt.join("data.bin"))
            .unwrap();
        let edits: [(u64, Vec<u8>); 3] = [
            (0, b"HEAD".to_vec()),
            (2 * MIB - 7, pattern(70_000, 99)),
            (4 * MIB + 1, pattern(3, 42)),
        ];
        for (off, data) in &edits {
            f.write_all_at(data, *off).unwrap();
            want[*off as usize..*off as usize + data.len()].copy_from_slice(data);
        }
        // A write crossing EOF is cut at EOF; at EOF the size is fixed: EFBIG.
        let n = f.write_at(b"0123456789", size as u64 - 4).unwrap();
        assert_eq!(n, 4);
        want[size - 4..].copy_from_slice(b"0123");
        let e = f.write_at(b"x", size as u64).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EFBIG), "{e}");
        // Truncation is refused; the size never changes.
        let e = f.set_len(10).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
        f.sync_all().unwrap();
        assert_eq!(f.metadata().unwrap().len(), size as u64);
        let mut back = vec![0u8; size];
        f.read_exact_at(&mut back, 0).unwrap();
        assert!(back == want, "read back through the mount");
        drop(f);
        // O_TRUNC would change the size: refused.
        let e = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(mnt.join("data.bin"))
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
        // Clean stop: exit status 0 and the mount is gone.
        let st = daemon.stop().expect("daemon exited");
        assert!(st.success(), "{st:?}");
        assert!(!is_mounted(&mnt), "unmounted on SIGTERM");
        daemon
            .wait_stderr("famfs-daemon: unmounted")
            .expect("shutdown line");
    }
    // The image holds the bytes (read with the image tools)…
    let out = image_cli(d, &["read", img.to_str().unwrap(), "data.bin"]);
    assert!(out.stdout == want, "image read after unmount");
    // …and a new mount serves them.
    let daemon = Daemon::serve(d, &img, &mnt, &[]);
    let mut f = File::open(mnt.join("data.bin")).unwrap();
    let mut back = Vec::new();
    f.read_to_end(&mut back).unwrap();
    assert!(back == want, "read after remount");
    f.seek(SeekFrom::Start(2 * MIB - 7)).unwrap();
    let mut b = vec![0u8; 70_000];
    f.read_exact(&mut b).unwrap();
    assert_eq!(b, pattern(70_000, 99));
    // SIGINT stops it cleanly too.
    drop(f);
    daemon.signal(libc::SIGINT);
    let gone = wait_for(Duration::from_secs(15), || {
        (!is_mounted(&mnt)).then_some(())
    });
    assert!(gone.is_some(), "unmounted on SIGINT");
}

#[test]
fn find_counts_5000_files_exactly() {
    let test = "find_counts_5000_files_exactly";
    if !can_mount(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 1,000 files in the root and 20 directories of 200: each file takes one 2 MiB unit.
    let (img, mut image) = mkfs(d, "famfs.img", 16 * GIB);
    for k in 0..20 {
        image
            .mkdir(&format!("d{k:02}"), 0o755, 0, 0, false)
            .unwrap();
        for i in 0..200 {
            image
                .creat(&format!("d{k:02}/f{i:03}"), 100 + i, 0o644, 0, 0, None)
                .unwrap();
        }
    }
    for i in 0..1000 {
        image
            .creat(&format!("r{i:04}"), 1, 0o644, 0, 0, None)
            .unwrap();
    }
    drop(image);
    let mnt = mnt_dir(d, "mnt");
    let _daemon = Daemon::serve(d, &img, &mnt, &[]);
    let count = |args: &[&str]| -> usize {
        let out = Command::new("find").arg(&mnt).args(args).output().unwrap();
        assert!(out.status.success(), "find {args:?}");
        String::from_utf8(out.stdout).unwrap().lines().count()
    };
    // Plus .meta/.superblock and .meta/.log.
    assert_eq!(count(&["-type", "f"]), 5000 + 2);
    assert_eq!(count(&["-type", "f", "-not", "-path", "*/.meta/*"]), 5000);
    assert_eq!(count(&["-type", "d"]), 1 + 1 + 20);
    // A second pass (warm caches) sees the same.
    assert_eq!(count(&["-type", "f", "-name", "f1*"]), 20 * 100);
    let mut names: Vec<String> = std::fs::read_dir(mnt.join("d07"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let want: Vec<String> = (0..200).map(|i| format!("f{i:03}")).collect();
    assert_eq!(names, want);
    assert_eq!(std::fs::metadata(mnt.join("d07/f150")).unwrap().len(), 250);
}

#[test]
fn eight_concurrent_readers_get_exact_bytes() {
    let test = "eight_concurrent_readers_get_exact_bytes";
    if !can_mount(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (img, mut image) = mkfs(d, "famfs.img", 4 * GIB);
    let simple = pattern(16 * MIB as usize + 4097, 21);
    put(&mut image, "simple.bin", &simple);
    let striped = pattern(24 * MIB as usize - 3, 22);
    let id = image
        .creat(
            "striped.bin",
            striped.len() as u64,
            0o644,
            0,
            0,
            Some(famfs_daemon::famfs::StripeSpec {
                nstrips: 4,
                nbuckets: 8,
                chunk_size: 2 * MIB,
            }),
        )
        .unwrap();
    image.write_file(id, 0, &striped).unwrap();
    drop(image);
    let mnt = mnt_dir(d, "mnt");
    let _daemon = Daemon::serve(d, &img, &mnt, &["--workers", "4"]);
    std::thread::scope(|s| {
        for t in 0..8usize {
            let (name, want) = if t % 2 == 0 {
                ("simple.bin", &simple)
            } else {
                ("striped.bin", &striped)
            };
            let p = mnt.join(name);
            s.spawn(move || {
                // Each reader its own chunk size, three passes.
                let chunk = [4096, 65_536, 1 << 20, 12_345, 131_072, 7, 300_000, 2 << 20][t];
                for _ in 0..3 {
                    let mut f = File::open(&p).unwrap();
                    let mut got = Vec::with_capacity(want.len());
                    let mut buf = vec![0u8; chunk];
                    loop {
                        let n = f.read(&mut buf).unwrap();
                        if n == 0 {
                            break;
                        }
                        got.extend_from_slice(&buf[..n]);
                        if chunk == 7 && got.len() > 1 << 20 {
                            // The 7-byte reader checks a prefix only (it is slow by design).
                            break;
                        }
                    }
                    assert!(want.starts_with(&got), "{name}: reader {t} got other bytes");
                    if chunk != 7 {
                        assert_eq!(got.len(), want.len(), "{name}: reader {t}");
                    }
                }
            });
        }
    });
}

#[test]
fn mmap_of_a_64_mib_file_reads_and_writes_exact_bytes() {
    let test = "mmap_of_a_64_mib_file_reads_and_writes_exact_bytes";
    if !can_mount(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (img, mut image) = mkfs(d, "famfs.img", 4 * GIB);
    let size = 64 * MIB as usize;
    let data = pattern(size, 33);
    let id = put(&mut image, "big.bin", &data);
    drop(image);
    let mnt = mnt_dir(d, "mnt");
    let mut daemon = Daemon::serve(d, &img, &mnt, &[]);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(mnt.join("big.bin"))
        .unwrap();
    // SAFETY: a shared mapping of a file on our own test mount; nothing else writes it meanwhile.
    let mut map = unsafe { memmap2::MmapOptions::new().len(size).map_mut(&f) }.unwrap();
    assert!(map[..] == data[..], "mmap read of 64 MiB");
    for off in [
        0usize,
        4095,
        2 * MIB as usize,
        33 * MIB as usize + 17,
        size - 1,
    ] {
        assert_eq!(map[off], data[off], "byte {off}");
    }
    // Writes through the mapping reach the image after msync (FUSE writes the dirty pages back).
    map[MIB as usize..MIB as usize + 5].copy_from_slice(b"MMAPW");
    map.flush().unwrap();
    drop(map);
    drop(f);
    daemon.stop();
    let img = famfs_daemon::famfs::Image::open(&img, false).unwrap();
    let mut got = vec![0u8; 9];
    img.read_file(id, MIB - 2, &mut got).unwrap();
    let mut want = data[MIB as usize - 2..MIB as usize + 7].to_vec();
    want[2..7].copy_from_slice(b"MMAPW");
    assert_eq!(got, want);
}

#[test]
fn stale_mount_of_a_killed_daemon_is_cleared_by_the_next_start() {
    let test = "stale_mount_of_a_killed_daemon_is_cleared_by_the_next_start";
    if !can_mount(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (img, mut image) = mkfs(d, "famfs.img", 4 * GIB);
    put(&mut image, "f.txt", b"still here\n");
    drop(image);
    let mnt = mnt_dir(d, "mnt");
    let mut first = Daemon::serve(d, &img, &mnt, &[]);
    assert_eq!(std::fs::read(mnt.join("f.txt")).unwrap(), b"still here\n");
    first.kill9();
    // The connection is dead: statfs (never cached by the kernel) fails with ENOTCONN.
    let c = std::ffi::CString::new(mnt.to_str().unwrap()).unwrap();
    // SAFETY: an all-zero statfs is valid for the kernel to overwrite; `c` is NUL-terminated.
    let rc = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st)
    };
    let e = std::io::Error::last_os_error();
    assert_eq!(
        (rc, e.raw_os_error()),
        (-1, Some(libc::ENOTCONN)),
        "stale: {e}"
    );
    assert!(is_mounted(&mnt), "the dead mount is still listed");
    let second = Daemon::serve(d, &img, &mnt, &[]);
    second
        .wait_stderr("cleared a stale mount")
        .expect("the second daemon says it cleared the stale mount");
    assert_eq!(std::fs::read(mnt.join("f.txt")).unwrap(), b"still here\n");
    // Exactly one famfs mount at the mount point now.
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let here = info
        .lines()
        .filter(|l| l.split(' ').nth(4) == mnt.to_str())
        .count();
    assert_eq!(here, 1, "{info}");
}

/// The kernel's read-ahead (KiB) of FUSE connection `conn`: its bdi is named `MAJOR:MINOR`.
fn bdi_read_ahead_kb(conn: u32) -> u32 {
    let p = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        conn >> 20,
        conn & 0xf_ffff
    );
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{p}: {e}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn read_ahead_flag_sets_the_mounts_kernel_read_ahead_exactly() {
    let test = "read_ahead_flag_sets_the_mounts_kernel_read_ahead_exactly";
    if !can_mount(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (img, mut image) = mkfs(d, "famfs.img", 4 * GIB);
    let data = pattern(8 * MIB as usize + 123, 31);
    put(&mut image, "f.bin", &data);
    drop(image);
    let mnt = mnt_dir(d, "mnt");
    // (arguments, KiB the kernel must use): the default 512K, an explicit size, 0 = the kernel's own
    // default (VM_READAHEAD_PAGES, 128 KiB).
    let cases: [(&[&str], u32); 3] = [
        (&[], 512),
        (&["--read-ahead", "8M"], 8192),
        (&["--read-ahead", "0"], 128),
    ];
    for (args, want) in cases {
        let mut daemon = Daemon::serve(d, &img, &mnt, args);
        assert_eq!(bdi_read_ahead_kb(daemon.connection()), want, "{args:?}");
        // Reads through the mount with that read-ahead return the file's bytes.
        assert_eq!(std::fs::read(mnt.join("f.bin")).unwrap(), data, "{args:?}");
        daemon.stop();
        assert!(!is_mounted(&mnt), "{args:?}: unmounted at stop");
    }
}

#[test]
fn bad_read_ahead_values_are_refused_with_the_reason() {
    let cases = [
        (
            "5000",
            "--read-ahead \"5000\": must be a multiple of 4K (the kernel counts read-ahead in pages)",
        ),
        ("257M", "--read-ahead \"257M\": at most 256M"),
        (
            "fast",
            "--read-ahead \"fast\": expected a size such as 4096, 0x1000, 512K, 8M, 4G",
        ),
    ];
    for (v, why) in cases {
        let out = Command::new(support::DAEMON)
            .args(["run", "--no-probes", "--read-ahead", v])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{v}: {err}");
        let line = format!("error: invalid value '{v}' for '--read-ahead <SIZE>': {why}");
        assert!(
            err.lines().any(|l| l == line),
            "{v}: want {line:?} in {err}"
        );
    }
}
