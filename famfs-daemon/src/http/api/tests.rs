//! Schema tests: histogram arithmetic, fault ratios, per-opcode sums, conversions from the daemon's
//! state, the query string of the file table.

use super::*;

fn h(bounds: &[f64], cum: &[u64], count: u64, sum: f64) -> Histogram {
    Histogram {
        bounds: bounds.to_vec(),
        cumulative: cum.to_vec(),
        count,
        sum,
    }
}

#[test]
fn quantiles_interpolate_inside_the_bucket() {
    // 10 observations: 4 in (0, 1], 4 in (1, 2], 2 in (2, 4].
    let x = h(&[1.0, 2.0, 4.0], &[4, 8, 10], 10, 20.0);
    assert_eq!(x.quantile(0.5), Some(1.25));
    assert_eq!(x.quantile(0.2), Some(0.5));
    assert_eq!(x.quantile(0.9), Some(3.0));
    assert_eq!(x.quantile(1.0), Some(4.0));
    assert_eq!(x.mean(), Some(2.0));
}

#[test]
fn quantile_above_last_bound_is_that_bound_and_empty_is_none() {
    let x = h(&[1.0, 2.0], &[1, 1], 4, 10.0);
    assert_eq!(x.quantile(0.99), Some(2.0));
    assert_eq!(x.quantile(0.1), Some(0.4));
    assert_eq!(Histogram::default().quantile(0.5), None);
    assert_eq!(Histogram::default().mean(), None);
}

#[test]
fn log2_slots_become_second_buckets() {
    // 3 values in slot 10 (1024..=2047 ns), 1 in slot 12 (4096..=8191 ns).
    let mut slots = vec![0u64; 13];
    slots[10] = 3;
    slots[12] = 1;
    let x = Histogram::from_log2_ns(&slots, 40, 1e-5);
    assert_eq!(x.bounds.len(), 13);
    assert_eq!(x.bounds[10], 2048e-9);
    assert_eq!(x.cumulative[10], 3);
    assert_eq!(x.cumulative[11], 3);
    assert_eq!(x.cumulative[12], 4);
    assert_eq!(x.count, 4);
    // p50: rank 2 of 3 in (1024, 2048] ns.
    let p50 = x.quantile(0.5).unwrap();
    assert!(
        (p50 - (1024.0 + 1024.0 * 2.0 / 3.0) * 1e-9).abs() < 1e-18,
        "{p50}"
    );
    // The open-ended last slot only counts toward the total.
    let mut all = vec![0u64; 40];
    all[39] = 2;
    let y = Histogram::from_log2_ns(&all, 40, 0.0);
    assert_eq!((y.bounds.len(), y.count, y.cumulative[38]), (39, 2, 0));
}

#[test]
fn since_subtracts_and_detects_resets() {
    let a = h(&[1.0, 2.0], &[1, 2], 3, 3.0);
    let b = h(&[1.0, 2.0], &[3, 5], 7, 10.0);
    assert_eq!(b.since(&a), h(&[1.0, 2.0], &[2, 3], 4, 7.0));
    // A restart: counters went down, the new reading counts whole.
    assert_eq!(a.since(&b), a);
    let f = FaultClass {
        ok: 5,
        fallback: 1,
        error: 0,
    };
    let g = FaultClass {
        ok: 7,
        fallback: 0,
        error: 2,
    };
    assert_eq!(
        g.since(&f),
        FaultClass {
            ok: 2,
            fallback: 0,
            error: 2
        }
    );
}

#[test]
fn by_opcode_sums_connections() {
    let s = Snapshot {
        opcodes: vec![
            OpcodeStats {
                connection: 40,
                opcode: "OPEN".into(),
                requests: 2,
                errors: 1,
                latency: h(&[1.0], &[2], 2, 1.0),
            },
            OpcodeStats {
                connection: 41,
                opcode: "OPEN".into(),
                requests: 3,
                errors: 0,
                latency: h(&[1.0], &[1], 3, 5.0),
            },
            OpcodeStats {
                connection: 40,
                opcode: "GETATTR".into(),
                requests: 1,
                errors: 0,
                latency: h(&[1.0], &[1], 1, 0.5),
            },
        ],
        ..Default::default()
    };
    let v = s.by_opcode();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].opcode, "GETATTR");
    assert_eq!((v[1].connection, v[1].requests, v[1].errors), (0, 5, 1));
    assert_eq!(v[1].latency, h(&[1.0], &[3], 5, 6.0));
}

#[test]
fn fallback_ratios() {
    let f = FaultCounts {
        pte: FaultClass::default(),
        pmd: FaultClass {
            ok: 3,
            fallback: 1,
            error: 0,
        },
    };
    assert_eq!(f.pmd_fallback_ratio(), Some(0.25));
    assert_eq!(FaultCounts::default().pmd_fallback_ratio(), None);
    let r = FileRow {
        faults_pmd: 1,
        faults_fallback: 3,
        ..Default::default()
    };
    assert_eq!(r.fallback_ratio(), Some(0.75));
}

#[test]
fn file_queries_parse_and_name_what_is_wrong() {
    assert_eq!(parse_file_query(None).unwrap(), FileQuery::default());
    let q = parse_file_query(Some("sort=opens&limit=1&path=dir%2F")).unwrap();
    assert_eq!(
        q,
        FileQuery {
            sort: FileSort::Opens,
            limit: 1,
            path: Some("dir/".into())
        }
    );
    assert_eq!(
        parse_file_query(Some("path=a+b%26c"))
            .unwrap()
            .path
            .as_deref(),
        Some("a b&c")
    );
    assert_eq!(
        parse_file_query(Some("sort=size")).unwrap_err(),
        "sort=size: expected last_access, opens, faults, fmap_bytes or path"
    );
    assert!(
        parse_file_query(Some("limit=x"))
            .unwrap_err()
            .contains("limit=x")
    );
    assert!(
        parse_file_query(Some("colour=red"))
            .unwrap_err()
            .contains("colour")
    );
    assert_eq!(
        parse_file_query(Some("path=ab%4")).unwrap_err(),
        "truncated escape in \"ab%4\""
    );
    assert_eq!(
        parse_file_query(Some("path=%zz")).unwrap_err(),
        "bad escape %zz in \"%zz\""
    );
    assert_eq!(
        parse_file_query(Some("path=%ff")).unwrap_err(),
        "\"%ff\" is not UTF-8"
    );
}

#[test]
fn file_query_strings_encode_the_filter_and_read_back() {
    let q = FileQuery {
        sort: FileSort::Opens,
        limit: 7,
        path: Some("a b&c/d".into()),
    };
    assert_eq!(file_query_string(&q), "sort=opens&limit=7&path=a%20b%26c/d");
    assert_eq!(parse_file_query(Some(&file_query_string(&q))).unwrap(), q);
    let odd = FileQuery {
        sort: FileSort::Path,
        limit: 1 << 40,
        path: Some("é+%/x?=#".into()),
    };
    assert_eq!(
        parse_file_query(Some(&file_query_string(&odd))).unwrap(),
        odd
    );
    // An empty filter is no filter.
    let none = FileQuery {
        path: Some(String::new()),
        ..Default::default()
    };
    assert_eq!(file_query_string(&none), "sort=last_access&limit=100");
}

struct Cat;

impl crate::server::Catalog for Cat {
    fn file(&self, nodeid: u64) -> Option<crate::server::FileInfo> {
        Some(crate::server::FileInfo {
            path: format!("/f{nodeid}"),
            size: 100 * nodeid,
            fmap_bytes: 56,
            fmap_extents: 1,
        })
    }
}

fn record(unique: u64, opcode: u32, nodeid: u64) -> crate::fuse::RequestRecord {
    crate::fuse::RequestRecord {
        mount_epoch: 1,
        connection: 9,
        unique,
        opcode,
        nodeid,
        recv_ns: 1000 + unique,
        reply_ns: 2000 + unique,
        ..Default::default()
    }
}

#[test]
fn file_rows_carry_open_latency_slots_fmap_errors_and_last_access_age() {
    use famfs_common::event::{Event, KIND_REQ_END};
    let mut j = crate::join::Join::new(9, 1, 0, 54);
    // Two OPENs of file 2: kernel latencies 3000 ns (slot 11) and 5000 ns (slot 12).
    for (u, lat) in [(10u64, 3000u64), (12, 5000)] {
        j.ingest_server(&record(u, 14, 2), &Cat);
        j.ingest_kernel(&Event {
            kind: KIND_REQ_END,
            conn: 9,
            id: u,
            ts_ns: 100 + u,
            lat_ns: lat,
            op: 14,
            ..Default::default()
        });
    }
    // A GET_FMAP that failed and one that sent an 824-byte map of 32 extents.
    let mut r = record(14, 54, 2);
    r.error = -libc::EINVAL;
    j.ingest_server(&r, &Cat);
    let mut r = record(16, 54, 2);
    r.fmap_bytes = 824;
    r.fmap_extents = 32;
    j.ingest_server(&r, &Cat);
    let f = j.file(2).unwrap();
    // Last access is the last reply (2016 ns); the row is made at 1_000_002_016 ns.
    let row = FileRow::of(f, 1_000_002_016);
    let mut slots = vec![0u64; 13];
    slots[11] = 1;
    slots[12] = 1;
    assert_eq!(row.open_latency_count, 2);
    assert_eq!(row.open_latency_log2_ns, slots);
    assert!((row.open_latency_mean_seconds - 4000e-9).abs() < 1e-18);
    assert_eq!(
        (
            row.get_fmap,
            row.get_fmap_errors,
            row.fmap_bytes,
            row.fmap_extents
        ),
        (2, 1, 824, 32)
    );
    assert_eq!(row.last_access_ns, 2016);
    assert_eq!(row.last_access_age_seconds, Some(1.0));
    let json = serde_json::to_value(&row).unwrap();
    assert_eq!(json["open_latency_log2_ns"].as_array().unwrap().len(), 13);
    assert_eq!(json["last_access_age_seconds"], 1.0);
    assert_eq!(json["get_fmap_errors"], 1);
    // What a client reads back is the same row.
    assert_eq!(serde_json::from_value::<FileRow>(json).unwrap(), row);
    // A file never accessed has no age, and the field is left out of the JSON.
    j.track(3, &Cat);
    let plain = FileRow::of(j.file(3).unwrap(), 5);
    assert_eq!(plain.last_access_age_seconds, None);
    assert!(
        serde_json::to_value(&plain)
            .unwrap()
            .get("last_access_age_seconds")
            .is_none()
    );
}

#[test]
fn rows_sort_like_the_daemon_sorts_its_files() {
    let mut j = crate::join::Join::new(9, 1, 0, 0);
    for (u, id) in [(2u64, 3u64), (4, 3), (6, 4), (8, 2), (10, 5)] {
        j.ingest_server(&record(u, 14, id), &Cat);
    }
    for sort in FileSort::ALL {
        let q = FileQuery {
            sort,
            ..Default::default()
        };
        let daemon: Vec<String> = crate::join::query(&j, &q)
            .iter()
            .map(|f| f.info.path.clone())
            .collect();
        let mut rows: Vec<FileRow> = j.files().map(|f| FileRow::of(f, 0)).collect();
        rows.sort_by(|a, b| sort.compare(&a.sort_fields(), &b.sort_fields()));
        let client: Vec<String> = rows.into_iter().map(|r| r.path).collect();
        assert_eq!(client, daemon, "{sort}");
    }
}

#[test]
fn probe_rows_use_the_probes_own_spelling() {
    use crate::probes::{ProbeKind, ProbeState, ProbeStatus};
    let up = ProbeStatus {
        program: "fuse_request_send",
        kind: ProbeKind::RawTracepoint,
        target: "fuse:fuse_request_send".into(),
        purpose: "requests",
        state: ProbeState::Attached,
    };
    let down = ProbeStatus {
        program: "dax_iomap_fault",
        kind: ProbeKind::Function,
        target: "dax_iomap_fault".into(),
        purpose: "faults",
        state: ProbeState::Unavailable("EPERM".into()),
    };
    let rows = [ProbeRow::of(&up).unwrap(), ProbeRow::of(&down).unwrap()];
    assert_eq!(
        rows,
        [
            ProbeRow {
                program: "fuse_request_send".into(),
                kind: "raw_tracepoint".into(),
                target: "fuse:fuse_request_send".into(),
                purpose: "requests".into(),
                state: "attached".into(),
                reason: None,
            },
            ProbeRow {
                program: "dax_iomap_fault".into(),
                kind: "function".into(),
                target: "dax_iomap_fault".into(),
                purpose: "faults".into(),
                state: "unavailable".into(),
                reason: Some("EPERM".into()),
            }
        ]
    );
    // The API's JSON of a row is the probe's own JSON.
    assert_eq!(
        serde_json::to_value(&rows[1]).unwrap(),
        serde_json::to_value(&down).unwrap()
    );
    assert!(rows[0].attached() && !rows[1].attached());
}

#[test]
fn snapshots_take_the_kernels_counters_as_metrics_labels_them() {
    use crate::probes::{FaultRow, RequestRow};
    use famfs_common::{
        fault::{FaultKey, FaultStats},
        fuse_request::{ReqKey, ReqStats},
    };
    let req = |connection: u32, opcode: u32, sent: u64, slot: usize| {
        let mut stats = ReqStats::ZERO;
        stats.sent = sent;
        stats.errors = 1;
        stats.lat_slots[slot] = sent;
        stats.lat_sum_ns = 1000 * sent;
        RequestRow {
            key: ReqKey { connection, opcode },
            stats,
        }
    };
    let fault = |size: u8, result: u8, count: u64| FaultRow {
        key: FaultKey {
            dev: 9,
            size,
            result,
            write: 0,
            _pad: 0,
            ino: 2,
        },
        stats: FaultStats {
            count,
            ..FaultStats::ZERO
        },
    };
    let kernel = ProbeSnapshot {
        requests: vec![
            req(9, 14, 3, 10),
            req(9, 1, 2, 9),
            req(9, 70, 1, 9),
            req(9, 71, 1, 12),
            req(8, 14, 5, 10),
        ],
        faults: vec![
            fault(SIZE_PTE, RESULT_OK, 4),
            fault(SIZE_PMD, RESULT_OK, 2),
            fault(SIZE_PMD, RESULT_FALLBACK, 1),
            fault(SIZE_PMD, RESULT_ERROR, 1),
        ],
        ..Default::default()
    };
    let s = Snapshot::of(Vec::new(), &kernel, Vec::new(), 1.7e9);
    assert_eq!(s.format, SNAPSHOT_FORMAT);
    assert_eq!(s.taken_unix_seconds, 1.7e9);
    let names: Vec<(u32, &str, u64, u64)> = s
        .opcodes
        .iter()
        .map(|o| (o.connection, o.opcode.as_str(), o.requests, o.errors))
        .collect();
    assert_eq!(
        names,
        [
            (8, "OPEN", 5, 1),
            (9, "LOOKUP", 2, 1),
            (9, "OPEN", 3, 1),
            // Opcodes 70 and 71 have no name: both are `other`, summed.
            (9, "other", 2, 2),
        ]
    );
    let open = &s.opcodes[2].latency;
    assert_eq!((open.bounds.len(), open.count, open.sum), (39, 3, 3e-6));
    assert_eq!(open.bounds[10], 2048e-9);
    assert_eq!((open.cumulative[9], open.cumulative[10]), (0, 3));
    assert_eq!(s.opcodes[3].latency.count, 2);
    assert_eq!(
        s.faults,
        FaultCounts {
            pte: FaultClass {
                ok: 4,
                fallback: 0,
                error: 0
            },
            pmd: FaultClass {
                ok: 2,
                fallback: 1,
                error: 1
            },
        }
    );
    // The daemon leaves `daemon` to the reader; it is not in the JSON.
    assert!(serde_json::to_value(&s).unwrap().get("daemon").is_none());
}

#[test]
fn sums_read_back_bit_for_bit() {
    // 22658 ns as seconds is 2.2658000000000002e-5: a JSON reader that rounds reads 2.2658e-5.
    let ns: u64 = 22658;
    let sum = ns as f64 * 1e-9;
    let s = Snapshot {
        opcodes: vec![OpcodeStats {
            latency: Histogram {
                sum,
                ..Default::default()
            },
            ..Default::default()
        }],
        ..Default::default()
    };
    let back: Snapshot = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back.opcodes[0].latency.sum.to_bits(), sum.to_bits());
}

#[test]
fn file_rows_encode_as_the_vector_of_rows() {
    let mut j = crate::join::Join::new(9, 1, 0, 0);
    for (u, id) in [(10u64, 2u64), (12, 3), (14, 2)] {
        j.ingest_server(&record(u, 14, id), &Cat);
    }
    j.track(4, &Cat);
    let files: Vec<&FileStats> = j.files().collect();
    let rows: Vec<FileRow> = files.iter().map(|f| FileRow::of(f, 5_000)).collect();
    let want = serde_json::to_string(&rows).unwrap();
    assert!(want.contains("\"path\":\"/f4\""), "{want}");
    // In batches of 1 and 3 rows: the same text.
    let mut got = FileRowsJson::new(5_000, 0);
    for batch in files.chunks(1).take(1).chain(files[1..].chunks(3)) {
        for f in batch {
            got.push(f).unwrap();
        }
    }
    assert_eq!(got.len(), files.len());
    assert_eq!(got.finish(), want);
    let none = FileRowsJson::new(0, 0);
    assert!(none.is_empty());
    assert_eq!(none.finish(), "[]");
}
