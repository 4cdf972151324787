//! Per-process attribution on a real famfs mount (root; SKIP otherwise): a `famfs-daemon run` serving
//! a one-file image (no probes: opens come from the FUSE server's own records), and three known
//! processes — `/bin/sh` started through symlinks named `reader-a`, `reader-b`, `reader-c`, so each has
//! its own `comm` — that open the file 5, 3 and 1 times and then wait on stdin. `/api/v1/file` must
//! name exactly those pids with those names and counts (most opens first, no "other"), the file's
//! total must be their sum, and `/metrics` must carry no pid or comm. After the processes exit their
//! counts stay and their names read empty. A path the daemon never saw answers 404. While they run,
//! `famfs-trace top` in tmux shows the same rows after Enter on the file, and Esc returns.

// Test code: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    io::Write,
    path::Path,
    process::{Child, Command, Stdio},
};

use famfs_daemon::http::api::{FILE_PATH, FileDetail, ProcRow, file_path_query};
use support::{
    DEADLINE, TRACE, can_mount, daemon::Daemon, image::mkfs, image::put, pattern, require_program,
    tmux::Tmux, wait_for,
};

const FILE: &str = "data/shared.bin";

/// `sh` started as `name` (a symlink in `dir`): opens `file` `n` times, then waits for a line on
/// stdin. Returns once every open is done (the script prints `done` after the last).
fn reader(dir: &Path, name: &str, file: &Path, n: u32) -> Child {
    let link = dir.join(name);
    std::os::unix::fs::symlink("/bin/sh", &link).unwrap();
    let script = r#"i=0; while [ $i -lt "$1" ]; do exec 3< "$2"; i=$((i+1)); done; exec 3<&-; echo done; read x"#;
    let mut c = Command::new(&link)
        .args(["-c", script, name, &n.to_string()])
        .arg(file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(c.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "done\n", "{name} did not finish its opens");
    c
}

/// `famfs-trace top` in tmux: Enter on the (only) file row shows the processes with their counts;
/// Esc returns to the table; `q` quits.
fn check_top_detail(test: &str, d: &Daemon, want: &[ProcRow]) {
    if !require_program(test, "tmux") {
        return;
    }
    let tmux = Tmux::start("procs");
    tmux.type_line(&format!(
        "{TRACE} top --addr {} --interval 200ms; echo TOP-EXIT=$?",
        d.addr
    ));
    tmux.wait_screen("the file row", |s| {
        s.contains("┌ Files: 1 ─") && s.contains(FILE)
    });
    tmux.key("Enter");
    let rows = |s: &str| -> Vec<Vec<String>> {
        s.lines()
            .filter(|l| l.starts_with("││") && l.contains("reader-"))
            .map(|l| {
                l.trim_matches('│')
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    };
    let expect: Vec<Vec<String>> = want
        .iter()
        .map(|p| vec![p.pid.to_string(), p.comm.clone(), p.count.to_string()])
        .collect();
    let screen = tmux.wait_screen("the processes that opened the file", |s| {
        s.contains("Processes that opened it: 3") && rows(s) == expect
    });
    assert!(screen.contains(&format!("┌ File: /{FILE} ")), "{screen}");
    assert!(
        screen.contains("Processes that DAX-faulted on it: 0"),
        "{screen}"
    );
    tmux.key("Escape");
    tmux.wait_screen("the file table again", |s| s.contains("┌ Files: 1 ─"));
    tmux.key("q");
    tmux.wait_screen("top to exit", |s| s.contains("TOP-EXIT=0"));
}

fn detail(d: &Daemon) -> (u16, String) {
    d.get(&format!("{FILE_PATH}?{}", file_path_query(FILE)))
}

#[test]
fn api_names_the_processes_that_opened_a_file() {
    let test = "api_names_the_processes_that_opened_a_file";
    if !can_mount(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, mut image) = mkfs(dir.path(), "procs.img", 4 << 30);
    image.mkdir("data", 0o755, 0, 0, false).unwrap();
    put(&mut image, FILE, &pattern(4096, 3));
    drop(image);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut d = Daemon::serve(dir.path(), &img, &mnt, &[]);
    let (code, body) = detail(&d);
    assert_eq!(
        (code, body.as_str()),
        (
            404,
            "no file \"data/shared.bin\" has been opened or faulted since the daemon started\n"
        )
    );

    let file = mnt.join(FILE);
    let mut kids: Vec<(Child, &str, u64)> = [("reader-a", 5), ("reader-b", 3), ("reader-c", 1)]
        .into_iter()
        .map(|(name, n)| (reader(dir.path(), name, &file, n), name, u64::from(n)))
        .collect();
    let want: Vec<ProcRow> = kids
        .iter()
        .map(|(c, name, n)| ProcRow {
            pid: c.id(),
            comm: (*name).to_string(),
            count: *n,
        })
        .collect();
    let got = wait_for(DEADLINE, || {
        let (code, body) = detail(&d);
        let v: FileDetail = serde_json::from_str(&body).ok()?;
        (code == 200 && v.file.opens == 9).then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "the file's 9 opens never showed: {:?}; files {:?}",
            detail(&d),
            d.get("/api/v1/files")
        )
    });
    assert_eq!(got.file.path, format!("/{FILE}"));
    assert_eq!(got.processes.opens, want);
    assert_eq!(got.processes.other_opens, 0);
    let metrics = d.metrics();
    for (c, name, _) in &kids {
        assert!(!metrics.contains(name), "{name} in /metrics");
        assert!(
            !metrics.contains(&format!("pid=\"{}\"", c.id())),
            "a pid label in /metrics"
        );
    }

    check_top_detail(test, &d, &want);

    // The processes exit: their counts stay, their names are gone.
    for (c, _, _) in &mut kids {
        c.stdin.take().unwrap().write_all(b"\n").unwrap();
        assert!(c.wait().unwrap().success());
    }
    // The path as `/api/v1/files` spells it (leading `/`) names the same file.
    let (code, body) = d.get(&format!(
        "{FILE_PATH}?{}",
        file_path_query(&format!("/{FILE}"))
    ));
    assert_eq!(code, 200, "{body}");
    let v: FileDetail = serde_json::from_str(&body).unwrap();
    let gone: Vec<ProcRow> = want
        .into_iter()
        .map(|p| ProcRow {
            comm: String::new(),
            ..p
        })
        .collect();
    assert_eq!(v.processes.opens, gone);
    let (code, body) = d.get("/api/v1/file?path=nope");
    assert_eq!(code, 404, "{body}");
    d.stop();
}
