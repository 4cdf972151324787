//! `famfs-daemon image ...` run as a real process on sparse image files in temp dirs: mkfs rules,
//! mkdir/creat/cp/ls/getmap/read/logplay output, the master/client rule, and one corrupted image per
//! §10 validation class (each a distinct error with its location and a non-zero exit, never a panic).
//! The host UUID file is always a temp file (FAMFS_SYSTEM_UUID_PATH), never /opt/famfs.

// A test binary: a failed unwrap/expect/panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    process::Command,
};

use famfs_daemon::famfs::format::{
    self, ALLOC_UNIT, EntryBody, Extent, FILE_FLAG_ALL_HOSTS_RW, FileEntry, LH_OFF_CRC,
    LH_OFF_NEXT_INDEX, LH_OFF_NEXT_SEQNUM, LOG_OFFSET, LogEntry, MAX_SIMPLE_EXTENTS, MkdirEntry,
    RELPATH_LEN, RawFmap, RelPath, SB_OFF_CRC,
};
use support::{MIB, image::ext, pattern};

struct Out {
    code: i32,
    raw: Vec<u8>,
    stdout: String,
    stderr: String,
}

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    img: PathBuf,
    uuid: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        Env {
            img: root.join("famfs.img"),
            uuid: root.join("system_uuid"),
            root,
            _dir: dir,
        }
    }

    fn run_with_uuid(&self, uuid: &Path, args: &[&str]) -> Out {
        let o = Command::new(env!("CARGO_BIN_EXE_famfs-daemon"))
            .arg("image")
            .args(args)
            .env("FAMFS_SYSTEM_UUID_PATH", uuid)
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("run famfs-daemon");
        let out = Out {
            code: o.status.code().unwrap_or(-1),
            raw: o.stdout.clone(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        };
        assert!(
            !out.stderr.contains("panicked"),
            "{args:?} panicked: {}",
            out.stderr
        );
        out
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_with_uuid(&self.uuid, args)
    }

    /// Run with the image path as the first argument after the command.
    fn img(&self, cmd: &str, rest: &[&str]) -> Out {
        let mut a = vec![cmd, self.img.to_str().unwrap()];
        a.extend_from_slice(rest);
        self.run(&a)
    }

    fn ok(&self, cmd: &str, rest: &[&str]) -> String {
        let o = self.img(cmd, rest);
        assert_eq!(o.code, 0, "{cmd} {rest:?}: {}{}", o.stdout, o.stderr);
        o.stdout
    }

    fn mkfs(&self) {
        let o = self.run(&["mkfs", self.img.to_str().unwrap(), "--size", "4G"]);
        assert_eq!(o.code, 0, "{}", o.stderr);
    }
}

#[test]
fn mkfs_sizes_force_and_refusals() {
    let e = Env::new();
    // Missing file without --size; below 4 GiB; bad log length; bad suffix (usage error, exit 2).
    let o = e.img("mkfs", &[]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("give --size"), "{}", o.stderr);
    let o = e.img("mkfs", &["-s", "1G"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains("0x40000000 bytes is smaller than the minimum device size 0x100000000"),
        "{}",
        o.stderr
    );
    let o = e.img("mkfs", &["-s", "4G", "--log-len", "12M", "--force"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("must be a power of 2"), "{}", o.stderr);
    let o = e.img("mkfs", &["-s", "4Q"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("expected a size"), "{}", o.stderr);
    // A good mkfs creates the host uuid file and a sparse 4 GiB image.
    let out = e.ok("mkfs", &["-s", "4G", "-l", "16M"]);
    assert!(out.contains("famfs version 48"), "{out}");
    assert!(out.contains("log 0x1000000 bytes (30840 entries)"), "{out}");
    let host = std::fs::read_to_string(&e.uuid).unwrap();
    assert!(out.contains(host.trim()), "{out} / {host}");
    assert_eq!(std::fs::metadata(&e.img).unwrap().len(), 4 << 30);
    // Refuses to overwrite without --force (exit 1), names the filesystem.
    e.ok("mkdir", &["keep"]);
    let o = e.img("mkfs", &["-s", "4G"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("already holds a famfs filesystem") && o.stderr.contains("use --force"),
        "{}",
        o.stderr
    );
    assert!(e.ok("ls", &[]).contains("keep"));
    // Another host's filesystem is refused too, and says so.
    let other = e.root.join("other_uuid");
    let o = e.run_with_uuid(&other, &["mkfs", e.img.to_str().unwrap()]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("this host is its client"), "{}", o.stderr);
    // --force re-creates it empty; version 47 on request.
    let out = e.ok("mkfs", &["--force", "--format-version", "47"]);
    assert!(out.contains("famfs version 47"), "{out}");
    assert!(!e.ok("ls", &[]).contains("keep"));
    let fsck = e.ok("fsck", &[]);
    assert!(
        fsck.contains("version 47") && fsck.contains("clean"),
        "{fsck}"
    );
}

#[test]
fn create_copy_list_map_read_and_play() {
    let e = Env::new();
    e.mkfs();
    e.ok("mkdir", &["-p", "data/deep/er", "-m", "750"]);
    // Without -p a missing parent is an error; an existing dir too.
    let o = e.img("mkdir", &["x/y"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("\"x\": no such file or directory"),
        "{}",
        o.stderr
    );
    let o = e.img("mkdir", &["data"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("already exists (inode 16)"),
        "{}",
        o.stderr
    );
    let out = e.ok(
        "creat",
        &["data/blob", "-s", "3M", "-m", "600", "-u", "7", "-g", "8"],
    );
    assert_eq!(out.trim(), "data/blob inode 19 size 3145728");
    e.ok(
        "creat",
        &[
            "data/striped",
            "-s",
            "13M",
            "--nstrips",
            "3",
            "--nbuckets",
            "4",
            "--chunk-size",
            "2M",
        ],
    );
    let o = e.img("creat", &["data/bad", "-s", "1M", "-N", "3", "-B", "2"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("nbuckets 2"), "{}", o.stderr);
    // A host tree: sizes 0, 1, 2M, 2M+1, 5M random, nested.
    let src = e.root.join("src");
    std::fs::create_dir_all(src.join("sub/subsub")).unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("one", vec![b'x']),
        ("sub/two_mib", pattern(2 * MIB as usize, 1)),
        ("sub/two_mib_plus", pattern(2 * MIB as usize + 1, 2)),
        ("sub/subsub/five", pattern(5 * MIB as usize + 17, 3)),
    ];
    for (p, d) in &files {
        std::fs::write(src.join(p), d).unwrap();
    }
    e.ok("cp", &["-r", src.to_str().unwrap(), "data"]);
    // A single file to a new name, then into a directory.
    let single = e.root.join("single.bin");
    std::fs::write(&single, pattern(1000, 9)).unwrap();
    e.ok("cp", &[single.to_str().unwrap(), "data/renamed"]);
    e.ok("cp", &[single.to_str().unwrap(), "data/deep"]);
    // A directory without -r is skipped with exit 1.
    let o = e.img("cp", &[src.to_str().unwrap(), "data/deep"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("omitting directory"), "{}", o.stderr);
    for (p, d) in &files {
        let o = Command::new(env!("CARGO_BIN_EXE_famfs-daemon"))
            .args([
                "image",
                "read",
                e.img.to_str().unwrap(),
                &format!("data/src/{p}"),
            ])
            .env("FAMFS_SYSTEM_UUID_PATH", &e.uuid)
            .output()
            .unwrap();
        assert!(o.status.success());
        assert!(
            o.stdout == *d,
            "data/src/{p} differs ({} bytes)",
            o.stdout.len()
        );
    }
    let o = e.img("read", &["data/renamed"]);
    assert!(o.raw == pattern(1000, 9));
    // ls -l of one directory: exact lines.
    let ls = e.ok("ls", &["-l", "-i", "data"]);
    let lines: Vec<&str> = ls.lines().collect();
    assert_eq!(
        lines[0],
        "      17 drwxr-x---      0      0            0 deep"
    );
    assert_eq!(
        lines[1],
        "      19 -rw-------      7      8      3145728 blob"
    );
    assert_eq!(
        lines[2],
        "      20 -rw-r--r--      0      0     13631488 striped"
    );
    assert!(lines[3].ends_with(" src"), "{ls}");
    assert!(lines[4].ends_with(" renamed"), "{ls}");
    assert_eq!(lines.len(), 5, "{ls}");
    let lsr = e.ok("ls", &["-R", "/"]);
    assert!(lsr.contains("/data/src/sub/subsub:\nfive\n"), "{lsr}");
    assert!(lsr.contains("/.meta:\n.superblock\n.log\n"), "{lsr}");
    // getmap: simple and interleaved, text and JSON.
    let gm = e.ok("getmap", &["data/blob"]);
    assert_eq!(
        gm,
        "path: data/blob\ninode: 19\nsize: 3145728\ntype: simple\nextents: 1\n  0: devindex 0 offset 0xa00000 len 0x400000\n"
    );
    let gm: serde_json::Value =
        serde_json::from_str(&e.ok("getmap", &["data/striped", "--json"])).unwrap();
    assert_eq!(gm["type"], "interleaved");
    assert_eq!(gm["chunk_size"], 2 * MIB);
    assert_eq!(gm["extents"].as_array().unwrap().len(), 3);
    let bucket = (4u64 << 30) / 4;
    for (k, s) in gm["extents"].as_array().unwrap().iter().enumerate() {
        assert_eq!(s["len"], 6 * MIB);
        assert_eq!(s["offset"].as_u64().unwrap() / bucket, k as u64);
    }
    let o = e.img("getmap", &["data"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is a directory"), "{}", o.stderr);
    let o = e.img("read", &["nope"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("\"nope\": no such file"), "{}", o.stderr);
    // fsck clean (text and JSON), logplay --dry-run lists every entry.
    let f = e.ok("fsck", &[]);
    assert!(
        f.contains("fsck: clean: 0 errors, 0 warnings, 0 notes; 15 entries played"),
        "{f}"
    );
    let j: serde_json::Value = serde_json::from_str(&e.ok("fsck", &["--json"])).unwrap();
    assert_eq!(j["clean"], true);
    assert_eq!(j["files"], 9);
    assert_eq!(j["dirs"], 6);
    let lp = e.ok("logplay", &["--dry-run"]);
    assert!(
        lp.starts_with("entry 0: mkdir data (inode 16, mode 750, uid 0, gid 0)\n"),
        "{lp}"
    );
    assert!(
        lp.contains("entry 3: file data/blob (inode 19, size 3145728, 1 extent(s), mode 600, uid 7, gid 8)\n"),
        "{lp}"
    );
    assert!(
        lp.ends_with("15 of 15 entries played (8208 bytes of log), 6 directories and 9 files created, 0 entries created nothing, 0 problems\n"),
        "{lp}"
    );
    let o = e.img("logplay", &[]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("needs --dry-run"), "{}", o.stderr);
}

#[test]
fn client_hosts_cannot_append() {
    let e = Env::new();
    e.mkfs();
    e.ok("mkdir", &["mine"]);
    let other = e.root.join("other_uuid");
    std::fs::write(&other, "00000000-1111-2222-3333-444444444444\n").unwrap();
    let o = e.run_with_uuid(&other, &["mkdir", e.img.to_str().unwrap(), "theirs"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains("not the master of this filesystem (role client)")
            && o.stderr
                .contains("host uuid 00000000-1111-2222-3333-444444444444"),
        "{}",
        o.stderr
    );
    // Reading works for clients; .log is read-only for them.
    let o = e.run_with_uuid(&other, &["ls", "-l", e.img.to_str().unwrap(), ".meta"]);
    assert_eq!(o.code, 0);
    assert!(
        o.stdout
            .contains("-r--r--r--      0      0      8388608 .log"),
        "{}",
        o.stdout
    );
    let o = e.run_with_uuid(
        &e.root.join("missing_uuid"),
        &["creat", e.img.to_str().unwrap(), "f", "-s", "1"],
    );
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("host uuid unknown"), "{}", o.stderr);
}

// ------------------------------------------------------------------------------------------------
// One corrupted image per §10 class. The helpers take offsets from the format's owner; the expected
// messages spell the spec's numbers out.

const LOG: u64 = LOG_OFFSET;

fn rd(img: &Path, off: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(img).unwrap();
    let mut b = vec![0u8; len];
    f.read_exact_at(&mut b, off).unwrap();
    b
}

fn wr(img: &Path, off: u64, b: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(b, off).unwrap();
}

fn reseal_sb(img: &Path) {
    let b = rd(img, 0, SB_OFF_CRC);
    wr(
        img,
        SB_OFF_CRC as u64,
        &u64::from(crc32fast::hash(&b)).to_le_bytes(),
    );
}

fn reseal_header(img: &Path) {
    let b = rd(img, LOG, LH_OFF_CRC);
    wr(
        img,
        LOG + LH_OFF_CRC as u64,
        &u64::from(crc32fast::hash(&b)).to_le_bytes(),
    );
}

fn next_index(img: &Path) -> u64 {
    u64::from_le_bytes(
        rd(img, LOG + LH_OFF_NEXT_INDEX as u64, 8)
            .try_into()
            .unwrap(),
    )
}

/// Append a raw (possibly invalid) entry the way the writer would.
fn append_raw(img: &Path, body: EntryBody) -> u64 {
    let i = next_index(img);
    let e = LogEntry { seqnum: i, body }.encode(48).unwrap();
    wr(img, format::entry_offset(LOG, i), &e);
    let mut pair = [0u8; 16];
    pair[..8].copy_from_slice(&(i + 1).to_le_bytes());
    pair[8..].copy_from_slice(&(i + 1).to_le_bytes());
    wr(img, LOG + LH_OFF_NEXT_SEQNUM as u64, &pair);
    i
}

fn relpath(p: &str) -> RelPath {
    let mut r = [0u8; RELPATH_LEN];
    r[..p.len()].copy_from_slice(p.as_bytes());
    RelPath::from_raw(r)
}

fn file(p: &str, size: u64, nextents: u32, exts: &[Extent]) -> EntryBody {
    let mut a = [Extent::default(); MAX_SIMPLE_EXTENTS];
    a[..exts.len()].copy_from_slice(exts);
    EntryBody::File(FileEntry {
        size,
        flags: FILE_FLAG_ALL_HOSTS_RW,
        uid: 0,
        gid: 0,
        mode: 0o644,
        relpath: relpath(p),
        fmap: RawFmap::Simple {
            nextents,
            extents: a,
        },
    })
}

fn mkdir(p: &str) -> EntryBody {
    EntryBody::Mkdir(MkdirEntry {
        uid: 0,
        gid: 0,
        mode: 0o755,
        relpath: relpath(p),
    })
}

/// Device space far from anything the fixture allocates.
const FREE: u64 = 0x40000000;

/// A corruption applied to the image file.
type Corrupt = Box<dyn Fn(&Path)>;
/// (class, corruption, text that must appear: what + where, fatal for every command?)
type Case = (&'static str, Corrupt, &'static str, bool);

/// Superblock and log-header classes (S1-S5, H1-H3): fatal for every command.
fn superblock_and_header_cases() -> Vec<Case> {
    vec![
        (
            "S1",
            Box::new(|p| wr(p, 0, &[0])),
            "at byte offset 0x0",
            true,
        ),
        (
            "S2",
            Box::new(|p| {
                wr(p, 8, &46u64.to_le_bytes());
                reseal_sb(p)
            }),
            "wrong superblock version 46 at byte offset 0x8",
            true,
        ),
        (
            "S3",
            Box::new(|p| wr(p, 50, &[0xee])),
            "CRC at byte offset 0x60",
            true,
        ),
        (
            "S4",
            Box::new(|p| {
                wr(p, 32, &8192u64.to_le_bytes());
                reseal_sb(p)
            }),
            "alloc unit 0x2000 at byte offset 0x20",
            true,
        ),
        (
            "S5",
            Box::new(|p| {
                wr(p, 24, &0x900000u64.to_le_bytes());
                reseal_sb(p)
            }),
            "ts_log_len at byte offset 0x18",
            true,
        ),
        (
            "S5",
            Box::new(|p| {
                wr(p, 112, &(8u64 << 30).to_le_bytes());
            }),
            "dd_size at byte offset 0x70: device size 0x200000000 exceeds the image/device length 0x100000000",
            true,
        ),
        (
            "H1",
            Box::new(|p| wr(p, LOG, &[0])),
            "bad log header magic 0xbadcafef000 at byte offset 0x200000",
            true,
        ),
        (
            "H2",
            Box::new(|p| wr(p, LOG + 16, &[0])),
            "CRC at byte offset 0x200018",
            true,
        ),
        (
            "H3",
            Box::new(|p| {
                wr(p, LOG + 32, &[0xff; 16]);
            }),
            "famfs_log_next_index at byte offset 0x200028",
            true,
        ),
        (
            "H3",
            Box::new(|p| {
                wr(p, LOG + 8, &0x1000000u64.to_le_bytes());
                reseal_header(p)
            }),
            "famfs_log_len at byte offset 0x200008",
            true,
        ),
    ]
}

/// Entry classes (E1-E3, F1-F4, D1, D2) on the fixture's log (entry 1 is `d/f` at 0xa00000): the
/// play skips or stops at the entry, and the other commands warn.
fn entry_cases() -> Vec<Case> {
    vec![
        (
            "E1",
            Box::new(|p| wr(p, format::entry_offset(LOG, 1) + 60, &[1])),
            "corrupt log entry 1 at byte offset 0x200250",
            false,
        ),
        (
            "E1",
            Box::new(|p| {
                let b = rd(p, format::entry_offset(LOG, 1), 544);
                wr(p, format::entry_offset(LOG, 2), &b);
            }),
            "log entry 2 at byte offset 0x200470 has seqnum 1",
            false,
        ),
        (
            "E2",
            Box::new(|p| {
                append_raw(p, EntryBody::Other { etype: 77 });
            }),
            "[E2] log entry 3 (byte offset 0x200690): entry type 77 (unknown) is not played",
            false,
        ),
        (
            "E3",
            Box::new(|p| {
                append_raw(p, file("/abs", 1, 1, &[ext(FREE, ALLOC_UNIT)]));
            }),
            "[E3] log entry 3 (byte offset 0x200690): relpath is absolute",
            false,
        ),
        (
            "E3",
            Box::new(|p| {
                append_raw(p, mkdir("d/../x"));
            }),
            "relpath has a '.' or '..' component (\"d/../x\")",
            false,
        ),
        (
            "F1",
            Box::new(|p| {
                append_raw(p, file("d/h", 1, 0, &[]));
            }),
            "[F1] simple extent count 0 (must be 1..=16) in log entry 3",
            false,
        ),
        (
            "F2",
            Box::new(|p| {
                append_raw(p, file("d/h", 1, 1, &[ext(0, ALLOC_UNIT)]));
            }),
            "[F2] extent 0: offset 0",
            false,
        ),
        (
            "F2",
            Box::new(|p| {
                append_raw(p, file("d/h", 1, 1, &[ext(FREE + 4096, ALLOC_UNIT)]));
            }),
            "not multiples of 2 MiB in log entry 3",
            false,
        ),
        (
            "F2",
            Box::new(|p| {
                append_raw(p, file("d/h", 1, 1, &[ext(4 << 30, ALLOC_UNIT)]));
            }),
            "ends past the device size 0x100000000",
            false,
        ),
        (
            "F3",
            Box::new(|p| {
                append_raw(p, file("d/h", 3 * MIB, 1, &[ext(FREE, ALLOC_UNIT)]));
            }),
            "[F3] file size 0x300000 exceeds the mapped space 0x200000 in log entry 3",
            false,
        ),
        (
            "F4",
            Box::new(|p| {
                append_raw(p, file("d/h", 1, 1, &[ext(0xa00000, ALLOC_UNIT)]));
            }),
            "[F4] log entry 3 (byte offset 0x200690): \"d/h\" claims device space at 0xa00000 already allocated to inode 17",
            false,
        ),
        (
            "D1",
            Box::new(|p| {
                append_raw(p, mkdir("d/f"));
            }),
            "[D1] log entry 3 (byte offset 0x200690): \"d/f\" already exists as inode 17 of another kind",
            false,
        ),
        (
            "D2",
            Box::new(|p| {
                append_raw(p, mkdir("nope/x"));
            }),
            "[D2] log entry 3 (byte offset 0x200690): parent \"nope\" of \"nope/x\" does not exist",
            false,
        ),
    ]
}

#[test]
fn every_validation_class_is_a_distinct_located_error() {
    let e = Env::new();
    e.mkfs();
    e.ok("mkdir", &["d"]);
    e.ok("creat", &["d/f", "-s", "1M"]); // entry 1: extent at 0xa00000
    e.ok("mkdir", &["d/g"]);
    let img = e.img.clone();
    let cases: Vec<Case> = superblock_and_header_cases()
        .into_iter()
        .chain(entry_cases())
        .collect();
    let saved_head = rd(&img, 0, 200);
    let saved_log = rd(&img, LOG, 48 + 8 * 544);
    let mut messages = Vec::new();
    for (class, corrupt, want, fatal) in &cases {
        corrupt(&img);
        let o = e.img("fsck", &[]);
        assert_eq!(o.code, 1, "{class}: fsck exit {}: {}", o.code, o.stdout);
        let tag = format!("[{class}]");
        assert!(o.stdout.contains(&tag), "{class}: {}", o.stdout);
        assert!(
            o.stdout.contains(want),
            "{class}: want {want:?} in:\n{}",
            o.stdout
        );
        assert!(o.stdout.contains("NOT CLEAN"), "{class}: {}", o.stdout);
        let j: serde_json::Value =
            serde_json::from_str(&e.img("fsck", &["--json"]).stdout).unwrap();
        let f0 = &j["findings"][0];
        assert_eq!(f0["code"], *class, "{class}: {j}");
        assert!(f0["offset"].is_u64(), "{class}: {j}");
        let line = o
            .stdout
            .lines()
            .find(|l| l.contains(&tag))
            .unwrap()
            .to_string();
        messages.push(line);
        // Other commands: fatal classes fail them with the same error; entry-level classes warn.
        let ls = e.img("ls", &["-R"]);
        if *fatal {
            assert_eq!(ls.code, 1, "{class}: ls");
            assert!(ls.stderr.contains(want), "{class}: ls stderr {}", ls.stderr);
            let w = e.img("mkdir", &["z"]);
            assert_eq!(w.code, 1, "{class}: mkdir");
        } else {
            assert_eq!(ls.code, 0, "{class}: ls {}", ls.stderr);
            assert!(
                ls.stderr.contains("warning"),
                "{class}: ls stderr {}",
                ls.stderr
            );
            let lp = e.img("logplay", &["-n"]);
            assert_eq!(lp.code, 1, "{class}: logplay");
            assert!(lp.stdout.contains(want), "{class}: logplay {}", lp.stdout);
        }
        wr(&img, 0, &saved_head);
        wr(&img, LOG, &saved_log);
        assert_eq!(e.img("fsck", &[]).code, 0, "{class}: restore");
    }
    // Distinct messages for distinct cases.
    let mut uniq = messages.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), messages.len(), "{messages:#?}");
}

#[test]
fn garbage_inputs_fail_cleanly() {
    let e = Env::new();
    std::fs::write(&e.img, pattern(3 * MIB as usize, 5)).unwrap();
    for args in [
        vec!["ls"],
        vec!["fsck"],
        vec!["fsck", "--json"],
        vec!["getmap", "x"],
        vec!["read", "x"],
        vec!["logplay", "-n"],
        vec!["mkdir", "a"],
        vec!["creat", "a", "-s", "1"],
    ] {
        let o = e.img(args[0], &args[1..]);
        assert_eq!(o.code, 1, "{args:?}: {}{}", o.stdout, o.stderr);
        let all = format!("{}{}", o.stdout, o.stderr);
        assert!(
            all.contains("[S1] not a famfs filesystem"),
            "{args:?}: {all}"
        );
    }
    std::fs::write(&e.img, []).unwrap();
    let o = e.img("fsck", &[]);
    assert_eq!(o.code, 1);
    assert!(
        o.stdout
            .contains("superblock at byte offset 0x0 needs 200 bytes, only 0 available"),
        "{}",
        o.stdout
    );
    let o = e.run(&["ls", "/nonexistent/famfs.img"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains("/nonexistent/famfs.img: open: No such file"),
        "{}",
        o.stderr
    );
    let o = e.run(&["ls", "/dev/null"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
}
