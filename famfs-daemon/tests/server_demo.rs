//! `famfs-daemon demo --once` end to end (root; SKIP otherwise): it builds the demo image, mounts it
//! with our server (a child `run` with probes), runs the workload, prints the per-file metrics the join
//! produced and what to look at, then unmounts and removes everything it created.
//!
//! Its files live in a private directory: the test plants a symlink at the predictable path older
//! versions used (`$TMPDIR/famfs-demo-<pid>`, the demo's PID known in advance by starting it through
//! `sh -c 'read; exec ...'`) pointing at a victim directory; the demo must not follow it, and its own
//! directory must be a fresh 0700 one.

// Test code: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use support::{DAEMON, can_mount, daemon::wait_exit};

/// What the test saw of the demo's private directory while it ran.
struct Private {
    /// The demo's PID (the planted symlink is `famfs-demo-<pid>`).
    pid: u32,
    dir: PathBuf,
    mode: u32,
    is_dir: bool,
}

/// Run the demo with `TMPDIR=tmp` and a symlink planted at `tmp/famfs-demo-<its pid>` → `victim`;
/// returns its stdout, stderr, exit status and its directory as seen while it ran.
fn run_demo(tmp: &Path, victim: &Path) -> (String, String, bool, Private) {
    let mut child = Command::new("sh")
        .args(["-c", "read _ && exec \"$0\" \"$@\""])
        .arg(DAEMON)
        .args(["demo", "--once", "--listen", "127.0.0.1:0"])
        .env("TMPDIR", tmp)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `exec` keeps the PID: this is the demo's.
    std::os::unix::fs::symlink(victim, tmp.join(format!("famfs-demo-{}", child.id()))).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut err = child.stderr.take().unwrap();
    let errs = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let mut private = None;
    for l in BufReader::new(child.stdout.take().unwrap()).lines() {
        let l = l.unwrap();
        // "demo: famfs image DIR/demo.img (8 GiB sparse; ...": look at DIR while the demo runs.
        if let Some(rest) = l.strip_prefix("demo: famfs image ") {
            let img = Path::new(rest.split_whitespace().next().unwrap());
            let dir = img.parent().unwrap().to_path_buf();
            let meta = std::fs::symlink_metadata(&dir).unwrap();
            private = Some(Private {
                pid: child.id(),
                mode: meta.permissions().mode() & 0o7777,
                is_dir: meta.file_type().is_dir(),
                dir,
            });
        }
        stdout.push_str(&l);
        stdout.push('\n');
    }
    let status = wait_exit(&mut child, std::time::Duration::from_secs(120))
        .unwrap()
        .expect("the demo did not exit");
    let stderr = errs.join().unwrap();
    let private = private.unwrap_or_else(|| panic!("no image line in:\n{stdout}\n{stderr}"));
    (stdout, stderr, status.success(), private)
}

#[test]
fn demo_once_in_a_private_dir_mounts_serves_reports_and_cleans_up() {
    let test = "demo_once_in_a_private_dir_mounts_serves_reports_and_cleans_up";
    if !can_mount(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let (stdout, stderr, ok, private) = run_demo(tmp.path(), &victim);
    assert!(ok, "demo failed:\n{stdout}\n{stderr}");
    // A fresh private directory, not the planted path, and nothing written through the symlink.
    assert!(
        private.is_dir,
        "{} is not a directory",
        private.dir.display()
    );
    assert_eq!(private.mode, 0o700, "{}", private.dir.display());
    assert_eq!(private.dir.parent(), Some(tmp.path()));
    let name = private.dir.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("famfs-demo-"), "{name}");
    assert_ne!(name, format!("famfs-demo-{}", private.pid));
    let planted = tmp.path().join(format!("famfs-demo-{}", private.pid));
    assert_eq!(std::fs::read_link(&planted).unwrap(), victim);
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        0,
        "the demo wrote into the victim"
    );
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{stdout}"))
            .to_string()
    };
    let mounted = line("demo: mounted at ");
    let mnt = mounted
        .strip_prefix("demo: mounted at ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    // 3 passes × (16 small + 2 text files) + the striped file + the mmap'd file.
    assert_eq!(
        line("demo: workload: "),
        "demo: workload: 56 opens, 26837433 bytes read, 64 MiB read through mmap (checked byte for byte)"
    );
    // The join's per-file series for the mmap'd file: one open, its 64 MiB read once by the kernel
    // (page cache faults on the stock-kernel path), and its 56-byte fmap.
    let big = "path=\"/models/weights-64m.bin\"";
    let value = |metric: &str| -> f64 {
        stdout
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(metric) && l.contains(big))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {metric} for {big} in:\n{stdout}"))
    };
    assert_eq!(value("famfs_file_opens_total"), 1.0);
    assert_eq!(value("famfs_file_read_bytes_total"), 67_108_864.0);
    assert_eq!(value("famfs_file_fmap_bytes"), 56.0);
    assert!(stdout.contains("famfs-trace top --addr 127.0.0.1:"));
    assert!(stdout.contains("/metrics"));
    // Everything is gone afterwards: the mount and the temp dir.
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!info.contains(&mnt), "mount {mnt} left behind");
    assert_eq!(Path::new(&mnt).parent(), Some(private.dir.as_path()));
    assert!(
        !private.dir.exists(),
        "{} left behind",
        private.dir.display()
    );
    assert!(stderr.contains("famfs-daemon: unmounted"), "{stderr}");
}
