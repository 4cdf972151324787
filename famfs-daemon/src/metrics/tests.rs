//! `--file-labels`: the per-file families of a join that counted two files, labelled by path, by hash
//! (exact values: the hash an operator computes with `sha256sum`) or not exported at all.

use super::*;
use crate::{
    fuse::RequestRecord,
    join::{FileState, Join},
    server::{Catalog, FileInfo},
};

const UUID: &str = "3f2d9c1e-7b4a-4e8f-9a61-0c5d2e7f8a93";

struct Cat;

impl Catalog for Cat {
    fn file(&self, nodeid: u64) -> Option<FileInfo> {
        Some(FileInfo {
            path: format!("/data/f{nodeid}.bin"),
            size: 4096,
            fmap_bytes: 56,
            fmap_extents: 1,
        })
    }
}

/// File 7 opened twice, then file 8 once (OPEN is opcode 14).
fn state(max_series: usize) -> SharedFileState {
    let mut j = Join::new(40, 3, 0, 0);
    for (unique, nodeid) in [(2, 7), (4, 7), (6, 8)] {
        let r = RequestRecord {
            mount_epoch: 3,
            connection: 40,
            unique,
            opcode: 14,
            nodeid,
            recv_ns: 10 + unique,
            reply_ns: 20 + unique,
            ..Default::default()
        };
        j.ingest_server(&r, &Cat);
    }
    SharedFileState::new(FileState {
        join: j,
        fs_uuid: UUID.into(),
        max_series,
    })
}

fn render(labels: FileLabels, max_series: usize) -> String {
    Metrics::with_file_labels(None, Some(state(max_series)), labels)
        .render(Format::PrometheusText)
        .unwrap()
}

fn has(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[test]
fn path_hashes_are_sha256_of_the_uuid_and_path() {
    // printf '%s\0%s' 3f2d9c1e-7b4a-4e8f-9a61-0c5d2e7f8a93 /data/f7.bin | sha256sum | cut -c1-16
    assert_eq!(path_hash(UUID, "/data/f7.bin"), "7f6d08528fb9cc58");
    assert_eq!(path_hash(UUID, "/data/f8.bin"), "669ecd1ebd4ec77b");
    assert_ne!(
        path_hash("00000000-0000-0000-0000-000000000000", "/data/f7.bin"),
        "7f6d08528fb9cc58"
    );
    assert_eq!("hash".parse::<FileLabels>(), Ok(FileLabels::Hash));
    assert_eq!(
        "paths".parse::<FileLabels>(),
        Err("\"paths\": expected path, hash or none".into())
    );
}

#[test]
fn paths_hashes_or_nothing() {
    let text = render(FileLabels::Path, 10);
    assert!(has(
        &text,
        &format!("famfs_file_opens_total{{fs_uuid=\"{UUID}\",path=\"/data/f7.bin\"}} 2")
    ));

    let text = render(FileLabels::Hash, 10);
    for (hash, opens) in [("7f6d08528fb9cc58", 2), ("669ecd1ebd4ec77b", 1)] {
        let line = format!("famfs_file_opens_total{{fs_uuid=\"{UUID}\",path=\"{hash}\"}} {opens}");
        assert!(has(&text, &line), "no {line:?} in\n{text}");
    }
    assert!(!text.contains("/data/"), "{text}");
    // The fold keeps its name: the least recently active file (7) folds into __other__.
    let text = render(FileLabels::Hash, 1);
    for line in [
        format!("famfs_file_opens_total{{fs_uuid=\"{UUID}\",path=\"669ecd1ebd4ec77b\"}} 1"),
        format!("famfs_file_opens_total{{fs_uuid=\"{UUID}\",path=\"__other__\"}} 2"),
        format!("famfs_file_series_folded{{fs_uuid=\"{UUID}\"}} 1"),
    ] {
        assert!(has(&text, &line), "no {line:?} in\n{text}");
    }

    let text = render(FileLabels::None, 10);
    assert!(
        !text.lines().any(|l| l.contains("famfs_file_")),
        "per-file families with --file-labels none:\n{text}"
    );
    assert!(!text.contains("/data/"), "{text}");
    // The aggregates remain.
    assert!(
        has(
            &text,
            "famfs_join_events_total{outcome=\"server_record\"} 3"
        ),
        "{text}"
    );
    assert!(text.contains("famfs_build_info{"), "{text}");
}
