//! End-to-end tests of the operator views against a real daemon:
//! - `famfs-trace top` in a real terminal (tmux, fixed 120x40 window, private tmux server): the header
//!   and panels appear, `s` changes the sort label, a dead daemon is reported and retried, `q` exits
//!   with status 0 and the shell's screen is back (alternate screen left, cursor shown);
//! - the `/api/v1/snapshot` that `top` reads (JSON) from a daemon tracing a real FUSE mount,
//!   cross-checked value by value against that daemon's `/metrics` text and `/api/v1/probes`, and
//!   `top --once` on that daemon;
//! - `famfs-trace snapshot` twice and `famfs-trace diff`: 0 on identical snapshots, 1 with the expected
//!   line on a constructed PMD-fallback regression, 2 on a file that is not a snapshot.

// Test code: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{fs, path::Path, process::Command, time::Duration};

use famfs_daemon::{
    http::{
        api::{ProbeRow, Snapshot},
        client::Client,
    },
    join::{FileQuery, FileSort},
    top::collector,
};
use support::{
    DEADLINE, TRACE, daemon::Daemon, free_port, http::get_json, mounts::SquashMount, pattern,
    prometheus::metric, require_program, require_root, tmux::Tmux, trace, wait_for,
};

#[test]
fn top_runs_in_a_real_terminal_and_restores_it() {
    let t = "top_runs_in_a_real_terminal_and_restores_it";
    if !require_program(t, "tmux") {
        return;
    }
    let daemon = Daemon::start(&["--no-probes"]);
    let addr = daemon.addr.to_string();
    let tmux = Tmux::start("live");
    tmux.type_line(&format!(
        "{TRACE} top --addr {addr} --interval 200ms; echo TOP-EXIT=$?"
    ));
    let s = tmux.wait_screen("the header and panels", |s| {
        s.contains(&format!("daemon {addr}  updated"))
            && s.contains("probes: none loaded")
            && s.contains("FUSE requests")
            && s.contains("DAX faults")
            && s.contains("Files: 0")
            && s.contains("sort: last_access")
    });
    assert!(!s.contains("READY$"), "top should own the screen:\n{s}");
    assert_eq!(tmux.pane_var("alternate_on"), "1");
    assert_eq!(tmux.pane_var("cursor_flag"), "0");

    tmux.key("s");
    tmux.wait_screen("the sort label to change", |s| {
        s.contains("sort: opens") && !s.contains("sort: last_access")
    });
    tmux.key("s");
    tmux.wait_screen("the next sort label", |s| s.contains("sort: faults"));

    tmux.key("q");
    let s = tmux.wait_screen("top to exit and the shell to come back", |s| {
        s.contains("TOP-EXIT=0") && s.trim_end().ends_with("READY$")
    });
    assert!(!s.contains("FUSE requests"), "screen not restored:\n{s}");
    assert_eq!(tmux.pane_var("alternate_on"), "0");
    assert_eq!(tmux.pane_var("cursor_flag"), "1");
    assert_eq!(tmux.pane_var("pane_current_command"), "bash");

    // A daemon that is not there: the reason is shown and polling goes on until q.
    let port = free_port();
    tmux.type_line(&format!(
        "clear; {TRACE} top --addr 127.0.0.1:{port} --interval 200ms; echo TOP-EXIT=$?"
    ));
    tmux.wait_screen("the unreachable message", |s| {
        s.contains(&format!(
            "daemon unreachable: 127.0.0.1:{port}: connection refused (retrying every 0.2s)"
        ))
    });
    tmux.key("q");
    tmux.wait_screen("top to exit again", |s| {
        s.contains("TOP-EXIT=0") && s.trim_end().ends_with("READY$")
    });
    assert_eq!(tmux.pane_var("alternate_on"), "0");
}

#[test]
fn top_once_against_a_dead_daemon_exits_1() {
    let port = free_port();
    let out = Command::new(TRACE)
        .args(["top", "--once", "--interval", "0s", "--width", "120"])
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().next(),
        Some(
            format!(
                " famfs-trace top   daemon 127.0.0.1:{port}  daemon unreachable: 127.0.0.1:{port}: connection refused (retrying every 0.0s)"
            )
            .as_str()
        )
    );
}

/// A squashfuse mount with two files read three times each; the daemon traces only its connection.
/// Returns when the kernel has sent every OPEN and RELEASE (RELEASE asynchronously, after close) and
/// seen each answered.
fn traced_mount(t: &str) -> Option<(SquashMount, Daemon)> {
    let files = [("a", pattern(100, 1)), ("d/b", pattern(5000, 2))];
    let sq = SquashMount::new(t, &files)?;
    let daemon = Daemon::start(&["--connection", &sq.conn.to_string()]);
    for _ in 0..3 {
        for (name, body) in &files {
            assert_eq!(&fs::read(sq.mnt.join(name)).unwrap(), body);
        }
    }
    let c = sq.conn.to_string();
    // Quiet means completed, not only queued: `_requests_total` counts what the kernel sent, the
    // latency histogram's `_count` what was answered (a RELEASE's reply can lag its send).
    let settled = wait_for(DEADLINE, || {
        let m = daemon.metrics();
        let n = |name, op| metric(&m, name, &[("connection", &c), ("opcode", op)]);
        let done = |op| {
            n("famfs_fuse_requests_total", op) == Some(6.0)
                && n("famfs_fuse_request_duration_seconds_count", op) == Some(6.0)
        };
        (done("OPEN") && done("RELEASE")).then_some(())
    });
    assert!(
        settled.is_some(),
        "OPEN/RELEASE counts (sent and answered) did not reach 6"
    );
    Some((sq, daemon))
}

#[test]
fn the_snapshot_top_reads_matches_the_metrics_text() {
    let t = "the_snapshot_top_reads_matches_the_metrics_text";
    if !require_root(t) {
        return;
    }
    let Some((sq, daemon)) = traced_mount(t) else {
        return;
    };
    let c = sq.conn.to_string();
    // What `top` reads: the whole snapshot over HTTP, as JSON.
    let q = FileQuery {
        sort: FileSort::Opens,
        path: None,
        limit: 10,
    };
    let client = Client::new(daemon.addr, Duration::from_secs(10)).unwrap();
    let s = collector::fetch_snapshot(&client, &q).unwrap();
    // The mount is quiet (traced_mount waited for every OPEN and RELEASE): /metrics now shows the
    // same kernel counters.
    let text = daemon.metrics();
    let ours: Vec<_> = s
        .opcodes
        .iter()
        .filter(|o| o.connection == sq.conn)
        .collect();
    assert!(ours.len() >= 4, "{ours:?}");
    for o in &ours {
        let l = [("connection", c.as_str()), ("opcode", o.opcode.as_str())];
        let get = |name: &str| metric(&text, name, &l).unwrap_or_else(|| panic!("{name} {l:?}"));
        assert_eq!(
            o.requests as f64,
            get("famfs_fuse_requests_total"),
            "{}",
            o.opcode
        );
        assert_eq!(o.errors as f64, get("famfs_fuse_request_errors_total"));
        assert_eq!(
            o.latency.count as f64,
            get("famfs_fuse_request_duration_seconds_count")
        );
        assert_eq!(
            o.latency.sum,
            get("famfs_fuse_request_duration_seconds_sum")
        );
        // Every finite bucket of the text, in order (39 of the kernel's 40 log2 slots).
        assert_eq!(o.latency.bounds.len(), 39);
        for (b, cum) in o.latency.bounds.iter().zip(&o.latency.cumulative) {
            // The bucket line whose le parses to this bound (an independent, minimal reading).
            let want: f64 = text
                .lines()
                .filter(|line| {
                    line.starts_with("famfs_fuse_request_duration_seconds_bucket{")
                        && line.contains(&format!("connection=\"{c}\""))
                        && line.contains(&format!("opcode=\"{}\"", o.opcode))
                })
                .find_map(|line| {
                    let le_txt = line.split("le=\"").nth(1)?.split('"').next()?;
                    if le_txt.parse::<f64>().ok()? != *b {
                        return None;
                    }
                    line.rsplit(' ').next()?.parse().ok()
                })
                .unwrap_or_else(|| panic!("bucket le={b} of {}", o.opcode));
            assert_eq!(*cum as f64, want, "{} le={b}", o.opcode);
        }
        assert!(o.latency.quantile(0.5).is_some());
    }
    let open = ours.iter().find(|o| o.opcode == "OPEN").unwrap();
    assert_eq!((open.requests, open.latency.count), (6, 6));
    // The DAX fault totals are the text's (none on this host's FUSE mount, but every cell must agree).
    for (size, class) in [("pte", s.faults.pte), ("pmd", s.faults.pmd)] {
        for (result, n) in [
            ("ok", class.ok),
            ("fallback", class.fallback),
            ("error", class.error),
        ] {
            let l = [("size", size), ("result", result)];
            assert_eq!(
                metric(&text, "famfs_dax_faults_total", &l),
                Some(n as f64),
                "{l:?}"
            );
        }
    }

    // Probes: the snapshot's table is /api/v1/probes, and agrees with famfs_probe_attached.
    let probes: Vec<ProbeRow> = get_json(daemon.addr, "/api/v1/probes");
    assert!(!probes.is_empty());
    assert_eq!(s.probes, probes);
    for p in &probes {
        let v = metric(
            &text,
            "famfs_probe_attached",
            &[("probe", p.program.as_str()), ("target", p.target.as_str())],
        );
        assert_eq!(
            v,
            Some(if p.attached() { 1.0 } else { 0.0 }),
            "{}",
            p.program
        );
        assert_eq!(p.reason.is_some(), !p.attached(), "{}", p.program);
    }

    // `top --once` shows the same row: OPEN on our connection, 6 requests, no errors.
    let out = Command::new(TRACE)
        .args(["top", "--once", "--interval", "0s", "--width", "120"])
        .args(["--addr", &daemon.addr.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let frame = String::from_utf8(out.stdout).unwrap();
    let row: Vec<&str> = frame
        .lines()
        .find(|l| l.starts_with("│OPEN "))
        .unwrap_or_else(|| panic!("no OPEN row:\n{frame}"))
        .trim_matches('│')
        .split_whitespace()
        .collect();
    assert_eq!(&row[..5], ["OPEN", c.as_str(), "-", "6", "0"], "{frame}");
    assert!(frame.contains("probes "), "{frame}");
}

fn edit(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn snapshot_and_diff_end_to_end() {
    let t = "snapshot_and_diff_end_to_end";
    if !require_root(t) {
        return;
    }
    let Some((sq, daemon)) = traced_mount(t) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let before = dir.path().join("before.json");
    let after = dir.path().join("after.json");
    let addr = daemon.addr.to_string();
    for p in [&before, &after] {
        let out = trace(&["snapshot", "--addr", &addr, "-o", p.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("famfs-trace: snapshot of {addr}: 0 files")),
            "{err}"
        );
    }
    let s: Snapshot = serde_json::from_str(&fs::read_to_string(&before).unwrap()).unwrap();
    assert_eq!(s.format, "famfs-trace-snapshot/1");
    assert_eq!(s.daemon, addr);
    assert!(s.taken_unix_seconds > 1.6e9);
    let open = s
        .opcodes
        .iter()
        .find(|o| o.connection == sq.conn && o.opcode == "OPEN")
        .unwrap();
    assert_eq!(open.requests, 6);
    // Only our connection is traced, so every opcode row is ours.
    assert!(s.opcodes.iter().all(|o| o.connection == sq.conn));

    // Identical workload state: no regression.
    let out = trace(&["diff", before.to_str().unwrap(), after.to_str().unwrap()]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let n = famfs_daemon::regress::compare(&s, &s, 0.1).changes.len();
    assert!(n >= 4 * 4 + 2, "{n}");
    assert_eq!(
        stdout,
        format!("no regression above 10% ({n} values compared)\n")
    );

    // Constructed regression: every 2 MiB fault now falls back to 4 KiB pages.
    edit(&before, |v| v["faults"]["pmd"]["ok"] = 100.into());
    edit(&after, |v| v["faults"]["pmd"]["fallback"] = 100.into());
    let out = trace(&["diff", before.to_str().unwrap(), after.to_str().unwrap()]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let lines: Vec<String> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        lines.contains(&"dax PMD fallback ratio 0.0% 100.0% +100.0pt REGRESSION".to_string()),
        "{stdout}"
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some(format!("1 regression above 10% ({} values compared)", n + 1).as_str())
    );
    // A higher threshold does not change a +100 point jump.
    let out = trace(&[
        "diff",
        "--threshold",
        "50%",
        before.to_str().unwrap(),
        after.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));

    // Not a snapshot: exit 2 naming the file.
    let bad = dir.path().join("bad.json");
    fs::write(&bad, "{\"format\": \"something-else\"}").unwrap();
    let out = trace(&["diff", bad.to_str().unwrap(), after.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.json: format \"something-else\""), "{err}");
}
