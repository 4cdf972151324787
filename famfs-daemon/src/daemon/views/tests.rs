//! The daemon's views end to end, in process: a join that counted a famfs file (a GET_FMAP that failed,
//! a 824-byte map of 32 extents: the fields whose schema once drifted) served over HTTP on loopback,
//! read back by `top`'s collector through the one client, drawn by `top`, saved as a snapshot file and
//! compared by `diff` — and the same numbers in `/metrics`.

use std::time::{Duration, Instant};

use super::*;
use crate::{
    fuse::RequestRecord,
    http::{Limits, client::Client},
    join::{FileSort, FileState, Join},
    server::{Catalog, FileInfo},
    top::{app::App, collector},
};

struct Cat;

impl Catalog for Cat {
    fn file(&self, nodeid: u64) -> Option<FileInfo> {
        Some(FileInfo {
            path: format!("/data/f{nodeid}.bin"),
            size: 1 << 20,
            fmap_bytes: 56,
            fmap_extents: 1,
        })
    }
}

fn record(unique: u64, opcode: u32, nodeid: u64) -> RequestRecord {
    RequestRecord {
        mount_epoch: 3,
        connection: 40,
        unique,
        opcode,
        nodeid,
        recv_ns: 10 + unique,
        reply_ns: 20 + unique,
        ..Default::default()
    }
}

/// File 7: two OPENs, a GET_FMAP answered EINVAL, one sending 824 bytes (32 extents). File 8: one OPEN.
fn state() -> SharedFileState {
    let mut j = Join::new(40, 3, 0, 54);
    j.ingest_server(&record(2, 14, 7), &Cat);
    j.ingest_server(&record(4, 14, 7), &Cat);
    let mut r = record(6, 54, 7);
    r.error = -libc::EINVAL;
    j.ingest_server(&r, &Cat);
    let mut r = record(8, 54, 7);
    r.fmap_bytes = 824;
    r.fmap_extents = 32;
    j.ingest_server(&r, &Cat);
    j.ingest_server(&record(10, 14, 8), &Cat);
    SharedFileState::new(FileState {
        join: j,
        fs_uuid: "3f2d9c1e-7b4a-4e8f-9a61-0c5d2e7f8a93".into(),
        max_series: 10,
    })
}

#[test]
fn drifted_fields_travel_from_the_join_to_top_and_snapshot_files() {
    let files = state();
    let views = DaemonViews {
        metrics: Metrics::new(None, Some(files.clone())),
        probes: None,
        files: Some(files),
        session_ended: None,
        fs: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(crate::http::bind("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(crate::http::serve(
        listener,
        Arc::new(views),
        Limits::default(),
        crate::http::WebConfig::default(),
    ));
    let client = Client::new(addr, Duration::from_secs(20)).unwrap();

    // What `top` and `snapshot` read.
    let q = FileQuery {
        sort: FileSort::FmapBytes,
        limit: 10,
        path: Some("/data/".into()),
    };
    let snap = collector::fetch_snapshot(&client, &q).unwrap();
    assert_eq!(snap.daemon, addr.to_string());
    assert_eq!(snap.format, crate::http::api::SNAPSHOT_FORMAT);
    let rows: Vec<(&str, u64, u64, u64, u64, u64)> = snap
        .files
        .iter()
        .map(|f| {
            (
                f.path.as_str(),
                f.opens,
                f.get_fmap,
                f.get_fmap_errors,
                f.fmap_bytes,
                f.fmap_extents,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("/data/f7.bin", 2, 2, 1, 824, 32),
            ("/data/f8.bin", 1, 0, 0, 56, 1)
        ]
    );
    // `/api/v1/files` answers the same rows.
    let api: Vec<FileRow> = client
        .get_json("/api/v1/files?sort=fmap_bytes&path=%2Fdata%2F")
        .unwrap();
    let strip = |v: &[FileRow]| -> Vec<FileRow> {
        v.iter()
            .map(|f| FileRow {
                last_access_age_seconds: None,
                ..f.clone()
            })
            .collect()
    };
    assert_eq!(strip(&api), strip(&snap.files));

    // `top` draws them, in the daemon's order, with the fmap size.
    let mut app = App::new(addr.to_string(), Duration::ZERO, q.sort, String::new(), 10);
    app.apply(collector::Update::Data {
        rates: collector::rates(None, &snap),
        snapshot: Box::new(snap.clone()),
        at: Instant::now(),
    });
    let frame = crate::top::frame_text(&app, 120).unwrap();
    let row = frame
        .lines()
        .find(|l| l.contains("/data/f7.bin"))
        .unwrap_or_else(|| panic!("{frame}"));
    let cells: Vec<&str> = row.trim_matches('│').split_whitespace().collect();
    assert_eq!(&cells[..2], ["/data/f7.bin", "2"], "{frame}");
    assert_eq!(cells[3], "824", "{frame}");

    // A snapshot file keeps them; `diff` reads it back.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.json");
    std::fs::write(&p, serde_json::to_string_pretty(&snap).unwrap()).unwrap();
    let back = Snapshot::from_json(&std::fs::read_to_string(&p).unwrap()).unwrap();
    assert_eq!(back, snap);
    assert_eq!(crate::regress::compare(&back, &snap, 0.1).regressions(), 0);

    // The same numbers in /metrics.
    let text = client.get("/metrics").unwrap();
    for line in [
        "famfs_file_get_fmap_errors_total{fs_uuid=\"3f2d9c1e-7b4a-4e8f-9a61-0c5d2e7f8a93\",path=\"/data/f7.bin\"} 1",
        "famfs_file_fmap_bytes{fs_uuid=\"3f2d9c1e-7b4a-4e8f-9a61-0c5d2e7f8a93\",path=\"/data/f7.bin\"} 824",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}
