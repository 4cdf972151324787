//! The daemon's FUSE request probes against a FUSE filesystem this project did not write: Debian's
//! `squashfuse` serving an image made by `mksquashfs`. Asserts exact per-opcode counts for that
//! connection where the kernel makes them exact.

mod support;

use std::{fs, io::Read, time::Duration};

use support::{
    daemon::Daemon, http::http_get, mounts::SquashMount, pattern, prometheus::metric, require_root,
    wait_for,
};

#[test]
fn squashfuse_per_opcode_counts_are_exact() {
    let files = [
        ("a.txt", vec![b'a'; 100]),
        ("b.bin", pattern(5000, 7)),
        ("sub/c.txt", b"hello\n".to_vec()),
    ];
    if !require_root("squashfuse_per_opcode_counts_are_exact") {
        return;
    }
    // The daemon first, so the mount's INIT is seen.
    let daemon = Daemon::start(&[]);
    let Some(sq) = SquashMount::new("squashfuse_per_opcode_counts_are_exact", &files) else {
        return;
    };
    let mnt = sq.mnt.clone();
    let conn_s = sq.conn.to_string();

    // Workload: 4 opens of 3 files, each read to the end; one failed lookup.
    let mut total = 0usize;
    for rel in ["a.txt", "a.txt", "b.bin", "sub/c.txt"] {
        let mut buf = Vec::new();
        total += fs::File::open(mnt.join(rel))
            .unwrap()
            .read_to_end(&mut buf)
            .unwrap();
    }
    assert_eq!(total, 100 + 100 + 5000 + 6);
    assert!(fs::metadata(mnt.join("missing")).is_err());

    let count = |m: &str, op: &str| {
        metric(
            m,
            "famfs_fuse_requests_total",
            &[("connection", &conn_s), ("opcode", op)],
        )
    };
    let errors = |m: &str, op: &str| {
        metric(
            m,
            "famfs_fuse_request_errors_total",
            &[("connection", &conn_s), ("opcode", op)],
        )
    };
    let m = daemon.metrics();
    assert_eq!(count(&m, "INIT"), Some(1.0), "INIT\n{m}");
    assert_eq!(count(&m, "OPEN"), Some(4.0), "OPEN\n{m}");
    assert_eq!(errors(&m, "OPEN"), Some(0.0));
    // Fresh page cache: each file is read by exactly one READ (all are far below the readahead window).
    assert_eq!(count(&m, "READ"), Some(3.0), "READ\n{m}");
    assert_eq!(
        errors(&m, "LOOKUP"),
        Some(1.0),
        "the lookup of `missing` fails once"
    );
    let open_lat = metric(
        &m,
        "famfs_fuse_request_duration_seconds_count",
        &[("connection", &conn_s), ("opcode", "OPEN")],
    );
    assert_eq!(
        open_lat,
        Some(4.0),
        "every OPEN completion is in the latency histogram"
    );
    let read_bytes = metric(
        &m,
        "famfs_fuse_reply_size_bytes_sum",
        &[("connection", &conn_s), ("opcode", "READ")],
    );
    assert_eq!(
        read_bytes,
        Some((3 * 16 + 100 + 5000 + 6) as f64),
        "READ replies: header + data"
    );

    // RELEASE is sent asynchronously after close(): wait for all four, then unmount.
    let released = wait_for(Duration::from_secs(10), || {
        let m = daemon.metrics();
        (count(&m, "RELEASE") == Some(4.0)).then_some(())
    });
    assert!(released.is_some(), "4 RELEASE requests");
    assert!(sq.unmount(), "unmount squashfuse");
    let m = daemon.metrics();
    assert_eq!(
        metric(
            &m,
            "famfs_probe_attached",
            &[("probe", "fuse_request_send")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "famfs_probe_attached", &[("probe", "fuse_request_end")]),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "famfs_probe_events_total",
            &[("event", "inflight_full")]
        ),
        Some(0.0)
    );
    let runs = metric(
        &m,
        "famfs_probe_runs_total",
        &[("probe", "fuse_request_send")],
    )
    .unwrap();
    assert!(
        runs >= 12.0,
        "BPF run count covers at least our requests: {runs}"
    );
}

#[test]
fn unknown_endpoint_is_refused_and_healthz_answers() {
    if !require_root("unknown_endpoint_is_refused_and_healthz_answers") {
        return;
    }
    let daemon = Daemon::start(&["--no-probes"]);
    let (code, body) = daemon.get("/nope");
    assert_eq!(code, 404);
    assert!(body.contains("/nope"));
    let (code, body) = daemon.get("/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, _) = http_get(
        daemon.addr,
        "/metrics",
        Some("application/openmetrics-text"),
    );
    assert_eq!(code, 200);
}
