//! `famfs-daemon demo --once` end to end (root; SKIP otherwise): it builds the demo image, mounts it
//! with our server (a child `run` with probes), runs the workload, prints the per-file metrics the join
//! produced and what to look at, then unmounts and removes everything it created.

// Test code: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use support::{DAEMON, can_mount};

#[test]
fn demo_once_mounts_serves_reports_and_cleans_up() {
    let test = "demo_once_mounts_serves_reports_and_cleans_up";
    if !can_mount(test) {
        return;
    }
    let out = Command::new(DAEMON)
        .args(["demo", "--once", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
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
    let tmp = std::path::Path::new(&mnt).parent().unwrap();
    assert!(!tmp.exists(), "{} left behind", tmp.display());
    assert!(stderr.contains("famfs-daemon: unmounted"), "{stderr}");
}
