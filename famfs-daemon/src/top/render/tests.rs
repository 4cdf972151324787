//! Render tests on ratatui's in-memory backend: exact screens for a known state, for no data, for a
//! daemon that is down; sort order, selection scrolling, help, pause and filter editing.

use std::time::{Duration, Instant};

use ratatui::{Terminal, backend::TestBackend, style::Modifier};

use super::*;
use crate::{
    http::api::{FaultClass, FaultCounts, FileRow, Histogram, OpcodeStats, ProbeRow, Snapshot},
    join::FileSort,
    top::{
        app::Action,
        collector::{Rates, Update, rates},
    },
};

fn screen(app: &App, w: u16, h: u16) -> Vec<String> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| render(f, app)).unwrap();
    buffer_lines(t.backend().buffer())
}

fn new_app(sort: FileSort) -> App {
    App::new(
        "127.0.0.1:9464".into(),
        Duration::from_secs(1),
        sort,
        String::new(),
        100,
    )
}

fn probe(name: &str, attached: bool) -> ProbeRow {
    ProbeRow {
        program: name.into(),
        kind: "tracepoint".into(),
        target: format!("x:{name}"),
        purpose: String::new(),
        state: if attached { "attached" } else { "unavailable" }.into(),
        reason: (!attached).then(|| "missing".into()),
    }
}

/// Latency histogram over log2 ns bounds (2 ns .. 2^20 ns) with `n` observations in (2^(k-1), 2^k] ns.
fn lat(n: u64, k: usize) -> Histogram {
    let bounds: Vec<f64> = (1..=20).map(|i| (1u64 << i) as f64 * 1e-9).collect();
    let cumulative = (1..=20).map(|i| if i >= k { n } else { 0 }).collect();
    Histogram {
        bounds,
        cumulative,
        count: n,
        sum: 0.0,
    }
}

fn file(path: &str, opens: u64, fmap: u64, pte: u64, pmd: u64, last: u64, age: f64) -> FileRow {
    // Two OPENs in slot 12 (4096..=8191 ns): p99 = 4096 + 4096 * 0.99 ns = 8151 ns.
    let mut slots = vec![0u64; 13];
    slots[12] = 2;
    FileRow {
        path: path.into(),
        opens,
        fmap_bytes: fmap,
        fmap_extents: 1,
        open_latency_count: 2,
        open_latency_mean_seconds: 6e-6,
        open_latency_log2_ns: slots,
        get_fmap_retries: opens / 3,
        faults_pte: pte,
        faults_pmd: pmd,
        last_access_ns: last,
        last_access_age_seconds: Some(age),
        ..Default::default()
    }
}

fn snapshot(opens_total: u64, pmd: FaultClass, pte_ok: u64) -> Snapshot {
    Snapshot {
        files: vec![
            file("data/a.bin", 3, 56, 10, 2, 300, 0.5),
            file("data/b.bin", 9, 128, 0, 40, 100, 75.0),
            file("logs/c.log", 9, 80, 512, 0, 200, 4000.0),
        ],
        opcodes: vec![
            OpcodeStats {
                connection: 40,
                opcode: "OPEN".into(),
                requests: opens_total,
                errors: 1,
                // All OPENs in (2048, 4096] ns.
                latency: lat(opens_total, 12),
            },
            OpcodeStats {
                connection: 40,
                opcode: "GETATTR".into(),
                requests: 4,
                errors: 0,
                latency: lat(4, 10),
            },
        ],
        faults: FaultCounts {
            pte: FaultClass {
                ok: pte_ok,
                ..Default::default()
            },
            pmd,
        },
        probes: vec![probe("a", true), probe("b", true), probe("c", false)],
        ..Default::default()
    }
}

/// An app after two polls one second apart: OPEN went 10 → 30 (20/s), GETATTR stayed at 4; PMD
/// attempts 4 → 8 with 1 new fallback (25 %), PTE 100 → 150 (50/s). Shown 1.5 s after the poll.
fn known_app(sort: FileSort) -> App {
    let a = snapshot(
        10,
        FaultClass {
            ok: 4,
            ..Default::default()
        },
        100,
    );
    let b = snapshot(
        30,
        FaultClass {
            ok: 7,
            fallback: 1,
            error: 0,
        },
        150,
    );
    let r = rates(Some((&a, Duration::from_secs(1))), &b);
    let at = Instant::now();
    let mut app = new_app(sort);
    app.apply(Update::Data {
        snapshot: Box::new(b),
        rates: r,
        at,
    });
    app.tick(at + Duration::from_millis(1500));
    app
}

#[test]
fn known_state_exact_screen() {
    let app = known_app(FileSort::Opens);
    let s = screen(&app, 100, 18);
    let want = [
        " famfs-trace top   daemon 127.0.0.1:9464  updated 1.5s ago  probes 2 attached / 1 unavailable",
        " sort: opens  filter: none   q quit  s sort  / filter  p pause  j/k move  Enter detail  ? help",
        "┌ FUSE requests (kernel, per opcode) ──────────────────────────────────────────────────────────────┐",
        "│OPCODE                                      CONN     REQ/S      TOTAL   ERRORS       P50       P99│",
        "│OPEN                                          40      20.0         30        1     3.1µs     4.1µs│",
        "│GETATTR                                       40       0.0          4        0         -         -│",
        "└──────────────────────────────────────────────────────────────────────────────────────────────────┘",
        "┌ DAX faults ──────────────────────────────────────────────────────────────────────────────────────┐",
        "│ PTE (4K) 50.0/s   PMD (2M) 4.0/s   PMD->PTE fallback 25.0%   totals: pte 150 pmd 8 fallback 1 err│",
        "└──────────────────────────────────────────────────────────────────────────────────────────────────┘",
        "┌ Files: 3 ────────────────────────────────────────────────────────────────────────────────────────┐",
        "│PATH                                   OPENS  OPEN P99   FMAP B   RETRY      PTE      PMD     LAST│",
        "│data/b.bin                                 9     8.2µs      128       3        0       40       1m│",
        "│logs/c.log                                 9     8.2µs       80       3      512        0       1h│",
        "│data/a.bin                                 3     8.2µs       56       1       10        2     0.5s│",
        "│                                                                                                  │",
        "│                                                                                                  │",
        "└──────────────────────────────────────────────────────────────────────────────────────────────────┘",
    ];
    assert_eq!(s, want, "\n{}", s.join("\n"));
}

#[test]
fn empty_data_screen() {
    let mut app = new_app(FileSort::LastAccess);
    let s = screen(&app, 80, 12);
    assert_eq!(
        s[0],
        " famfs-trace top   daemon 127.0.0.1:9464  connecting..."
    );
    let at = Instant::now();
    app.apply(Update::Data {
        snapshot: Box::default(),
        rates: Rates::default(),
        at,
    });
    let s = screen(&app, 80, 12);
    let want = [
        " famfs-trace top   daemon 127.0.0.1:9464  updated 0.0s ago  probes: none loaded",
        " sort: last_access  filter: none   q quit  s sort  / filter  p pause  j/k move",
        "┌ FUSE requests (kernel, per opcode) ──────────────────────────────────────────┐",
        "│ no FUSE requests seen (no probes, or no FUSE traffic yet)                    │",
        "└──────────────────────────────────────────────────────────────────────────────┘",
        "┌ DAX faults ──────────────────────────────────────────────────────────────────┐",
        "│ PTE (4K) -/s   PMD (2M) -/s   PMD->PTE fallback -   totals: pte 0 pmd 0 fallb│",
        "└──────────────────────────────────────────────────────────────────────────────┘",
        "┌ Files: 0 ────────────────────────────────────────────────────────────────────┐",
        "│ no files (the daemon serves no famfs mount, or none was accessed yet)        │",
        "│                                                                              │",
        "└──────────────────────────────────────────────────────────────────────────────┘",
    ];
    assert_eq!(s, want, "\n{}", s.join("\n"));
    // A tiny terminal does not panic.
    let mut known = known_app(FileSort::Opens);
    for (w, h) in [(1, 1), (10, 3), (20, 6), (0, 0)] {
        screen(&app, w, h);
        screen(&known, w, h);
        known.help = true;
        screen(&known, w, h);
        known.help = false;
    }
}

#[test]
fn daemon_down_keeps_last_data_and_says_why() {
    let mut app = known_app(FileSort::Opens);
    app.apply(Update::Unreachable {
        reason: "127.0.0.1:9464: connection refused".into(),
        at: Instant::now(),
    });
    let s = screen(&app, 160, 18);
    assert_eq!(
        s[0],
        " famfs-trace top   daemon 127.0.0.1:9464  daemon unreachable: 127.0.0.1:9464: connection refused (retrying every 1.0s)  probes 2 attached / 1 unavailable"
    );
    // The last good data stays on screen.
    assert!(s[12].starts_with("│data/b.bin "), "{}", s[12]);

    // Never reachable: the message and empty panels.
    let mut app = new_app(FileSort::Opens);
    app.apply(Update::Unreachable {
        reason: "127.0.0.1:1: connection refused".into(),
        at: Instant::now(),
    });
    let s = screen(&app, 120, 12);
    assert_eq!(
        s[0],
        " famfs-trace top   daemon 127.0.0.1:9464  daemon unreachable: 127.0.0.1:1: connection refused (retrying every 1.0s)"
    );
    assert_eq!(
        s[9],
        "│ no files (the daemon serves no famfs mount, or none was accessed yet)                                                │"
    );
}

fn path_column(s: &[String]) -> Vec<String> {
    s.iter()
        .skip_while(|l| !l.starts_with("│PATH"))
        .skip(1)
        .filter_map(|l| l.strip_prefix('│'))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .filter(|p| !p.is_empty() && p != "│")
        .collect()
}

#[test]
fn sort_order_follows_the_key() {
    let mut app = known_app(FileSort::Opens);
    let order = |app: &App| path_column(&screen(app, 100, 18));
    assert_eq!(order(&app), ["data/b.bin", "logs/c.log", "data/a.bin"]);
    app.handle(Action::CycleSort);
    assert!(screen(&app, 100, 18)[1].starts_with(" sort: faults "));
    // Faults: c 512, b 40, a 12.
    assert_eq!(order(&app), ["logs/c.log", "data/b.bin", "data/a.bin"]);
    app.handle(Action::CycleSort);
    assert_eq!(order(&app), ["data/b.bin", "logs/c.log", "data/a.bin"]);
    app.handle(Action::CycleSort);
    assert_eq!(order(&app), ["data/a.bin", "data/b.bin", "logs/c.log"]);
    app.handle(Action::CycleSort);
    // Last access: a 300, c 200, b 100.
    assert_eq!(order(&app), ["data/a.bin", "logs/c.log", "data/b.bin"]);
}

#[test]
fn selection_scrolls_and_is_highlighted() {
    let mut app = new_app(FileSort::Path);
    let files = (0..50)
        .map(|i| file(&format!("f{i:02}"), 1, 1, 0, 0, 1, 1.0))
        .collect();
    let at = Instant::now();
    app.apply(Update::Data {
        snapshot: Box::new(Snapshot {
            files,
            ..Default::default()
        }),
        rates: Rates::default(),
        at,
    });
    for _ in 0..40 {
        app.handle(Action::Down);
    }
    let mut t = Terminal::new(TestBackend::new(80, 20)).unwrap();
    t.draw(|f| render(f, &app)).unwrap();
    let lines = buffer_lines(t.backend().buffer());
    // Files panel: rows 8..=19 → 12 lines, 9 data rows; the selected f40 is the last visible.
    assert_eq!(
        file_rows_visible(&app, ratatui::layout::Rect::new(0, 0, 80, 20)),
        9
    );
    let col = path_column(&lines);
    assert_eq!(col.first().map(String::as_str), Some("f32"));
    assert_eq!(col.last().map(String::as_str), Some("f40"));
    let y = lines.iter().position(|l| l.starts_with("│f40")).unwrap() as u16;
    let buf = t.backend().buffer();
    assert!(buf[(1, y)].modifier.contains(Modifier::REVERSED));
    assert!(!buf[(1, y - 1)].modifier.contains(Modifier::REVERSED));
}

#[test]
fn help_pause_and_filter_editing_show() {
    let mut app = known_app(FileSort::Opens);
    app.handle(Action::TogglePause);
    let s = screen(&app, 100, 18);
    assert_eq!(
        s[1],
        " sort: opens  filter: none  PAUSED   q quit  s sort  / filter  p pause  j/k move  Enter detail  ? he"
    );
    app.handle(Action::TogglePause);
    app.handle(Action::StartFilter);
    for c in "logs".chars() {
        app.handle(Action::FilterChar(c));
    }
    assert_eq!(
        screen(&app, 100, 18)[1],
        " sort: opens  filter: logs_  (Enter apply, Esc cancel)"
    );
    app.handle(Action::FilterApply);
    let s = screen(&app, 100, 18);
    assert_eq!(s[1].split("   ").next(), Some(" sort: opens  filter: logs"));
    assert!(
        s[10].starts_with("┌ Files: 1 matching \"logs\" ─"),
        "{}",
        s[10]
    );
    assert_eq!(path_column(&s), ["logs/c.log"]);
    // The next poll carries the filter, so the daemon answers only the matching file: same title.
    let mut filtered = snapshot(30, FaultClass::default(), 150);
    filtered.files.retain(|f| f.path.contains("logs"));
    app.apply(Update::Data {
        snapshot: Box::new(filtered),
        rates: Rates::default(),
        at: Instant::now(),
    });
    let s2 = screen(&app, 100, 18);
    let title = |s: &[String]| s.iter().find(|l| l.starts_with("┌ Files:")).cloned();
    assert_eq!(title(&s2), Some(s[10].clone()));
    assert_eq!(path_column(&s2), ["logs/c.log"]);
    app.handle(Action::ToggleHelp);
    let s = screen(&app, 100, 18);
    assert!(s.iter().any(|l| l.contains("┌ keys ─")));
    assert!(s.iter().any(|l| l.contains("│ s           next sort key")));
}

#[test]
fn full_height_frame_shows_every_row() {
    let app = known_app(FileSort::Opens);
    // 2 header + (2 + 3) opcodes + 3 faults + (3 + 3) files.
    assert_eq!(full_height(&app), 16);
    let s = screen(&app, 100, full_height(&app));
    assert_eq!(s.len(), 16);
    assert_eq!(path_column(&s), ["data/b.bin", "logs/c.log", "data/a.bin"]);
    assert!(s[15].starts_with("└"));
}

#[test]
fn enter_opens_the_file_detail_and_esc_returns() {
    use crate::http::api::{FileDetail, FileProcesses, ProcRow};
    use crate::top::app::{Effect, Mode};
    let mut app = known_app(FileSort::Opens);
    assert_eq!(
        app.handle(Action::OpenDetail),
        Effect::Detail(Some("data/b.bin".into()))
    );
    assert_eq!(app.mode, Mode::Detail("data/b.bin".into()));
    let s = screen(&app, 100, 18);
    assert_eq!(
        s[10],
        "┌ File: data/b.bin ────────────────────────────────────────────────────────────────────────────────┐"
    );
    assert_eq!(
        s[11],
        "│ waiting for the daemon's answer...                                                               │"
    );
    // An answer about another file (asked before) is not shown.
    let detail = |path: &str| FileDetail {
        file: FileRow {
            path: path.into(),
            opens: 9,
            size: 4096,
            fmap_bytes: 128,
            fmap_extents: 2,
            faults_pmd: 40,
            ..Default::default()
        },
        processes: FileProcesses {
            opens: vec![
                ProcRow {
                    pid: 4242,
                    comm: "reader".into(),
                    count: 5,
                },
                ProcRow {
                    pid: 77,
                    comm: String::new(),
                    count: 3,
                },
            ],
            other_opens: 1,
            faults: vec![ProcRow {
                pid: 4242,
                comm: "reader".into(),
                count: 40,
            }],
            other_faults: 0,
        },
    };
    assert!(!app.apply(Update::Detail {
        path: "logs/c.log".into(),
        answer: Ok(Box::new(detail("logs/c.log"))),
    }));
    assert!(app.apply(Update::Detail {
        path: "data/b.bin".into(),
        answer: Ok(Box::new(detail("data/b.bin"))),
    }));
    let s = screen(&app, 100, 26);
    let want = [
        " sort: opens  filter: none   Esc back  q quit  p pause  ? help",
        "┌ File: data/b.bin ────────────────────────────────────────────────────────────────────────────────┐",
        "│ opens 9 (errors 0)  size 4096  fmap 128 B / 2 extents                                            │",
        "│ faults: pte 0  pmd 40  fallback 0  error 0  page cache 0                                         │",
        "│┌ Processes that opened it: 2 ───────────────────────────────────────────────────────────────────┐│",
        "││     PID COMM                                                                              OPENS││",
        "││    4242 reader                                                                                5││",
        "││      77 (exited)                                                                              3││",
        "││       - (other processes)                                                                     1││",
        "│└────────────────────────────────────────────────────────────────────────────────────────────────┘│",
        "│┌ Processes that DAX-faulted on it: 1 ───────────────────────────────────────────────────────────┐│",
        "││     PID COMM                                                                             FAULTS││",
        "││    4242 reader                                                                               40││",
        "││                                                                                                ││",
        "││                                                                                                ││",
        "│└────────────────────────────────────────────────────────────────────────────────────────────────┘│",
        "└──────────────────────────────────────────────────────────────────────────────────────────────────┘",
    ];
    let got: Vec<&str> = std::iter::once(s[1].as_str())
        .chain(s[10..26].iter().map(String::as_str))
        .collect();
    assert_eq!(got, want, "\n{}", s.join("\n"));
    assert_eq!(app.handle(Action::CloseDetail), Effect::Detail(None));
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(
        screen(&app, 100, 18)[10],
        "┌ Files: 3 ────────────────────────────────────────────────────────────────────────────────────────┐"
    );
    // An answer arriving after the view closed is dropped.
    assert!(!app.apply(Update::Detail {
        path: "data/b.bin".into(),
        answer: Err("x".into()),
    }));
    assert_eq!(app.detail, None);
}
