//! The famfs-mode join end to end, without root: a simulated kernel (one end of a
//! `socketpair(AF_UNIX, SOCK_SEQPACKET)` playing `/dev/fuse`) drives the real famfs server
//! (`server::FamfsFs`) in a `fuse::Session` over an image built with the format library; the session's
//! request records feed a real `JoinWorker` into the `FileState` that `Metrics` renders, wired as
//! `famfs-daemon run` wires them (probes off). Asserted on the rendered `/metrics` text, exactly:
//!
//! * RFC V2 (needed-size retry): a 16-extent file (fmap 32 + 16·24 = 416 bytes) first asked with a
//!   100-byte buffer gets the 4-byte needed size and is asked again → 2 GET_FMAP, 1 retry, 416 bytes,
//!   16 extents; a 16-strip interleaved file (440 bytes) likewise; a 1-extent file (56 bytes) fits →
//!   0 retries. A second OPEN of an inode sends no GET_FMAP (the kernel caches the map per inode).
//! * V3 (page buffer, no retry): the map that does not fit is answered EINVAL → 1 GET_FMAP, 0 retries,
//!   1 error; the file that fits → 0 errors.
//! * The server's own counters (`famfs_server_*`) agree, and the join saw every record.
//! * Every family the daemon renders is in the README's metric table, and every name there is rendered.

// Test code: a failed unwrap/expect/assertion is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{path::PathBuf, sync::Arc, time::Duration};

use famfs_daemon::{
    famfs::Fmap,
    fuse::{
        DialectConfig,
        abi::{EntryOut, ReleaseIn, opcode},
        sim::{self, Reply, Sim, fmap_size_body, open_in},
    },
    http::api::FileRow,
    join::{FileQuery, FileSort, FileState, Join, JoinInputs, JoinWorker, SharedFileState, query},
    metrics::{Format, Metrics},
    server::{FamfsFs, ServerConfig},
};
use support::{
    GIB, MIB, MIB2,
    image::{MANY_SIZE, WIDE_SIZE, many_extents, mkfs, uuid_file, wide_strips},
    wait_for,
};

const CONN: u32 = 91;
const EPOCH: u64 = 11;
const ROOT: u64 = 1;
/// `small`: 1 MiB in one allocated extent → 32 + 24 = 56 bytes.
const SMALL_SIZE: u64 = MIB;
/// The simulated kernel's first GET_FMAP buffer: too small for `many` and `wide`, big enough for
/// `small`.
const SMALL_BUFFER: u32 = 100;

struct Image {
    dir: tempfile::TempDir,
    path: PathBuf,
}

fn image() -> Image {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut img) = mkfs(dir.path(), "famfs.img", 4 * GIB);
    // `many`: fmap 32 + 16 × 24 = 416 bytes; `wide`: 32 + 24 + 16 × 24 = 440 bytes.
    img.creat_with_fmap(
        "many",
        MANY_SIZE,
        0o644,
        0,
        0,
        &Fmap::Simple(many_extents()),
    )
    .unwrap();
    img.creat_with_fmap(
        "wide",
        WIDE_SIZE,
        0o644,
        0,
        0,
        &Fmap::Interleaved {
            chunk_size: MIB2,
            strips: wide_strips(),
        },
    )
    .unwrap();
    img.creat("small", SMALL_SIZE, 0o644, 0, 0, None).unwrap();
    Image { dir, path }
}

/// The simulated kernel, the session serving it, and the daemon's join and metrics behind it.
struct Rig {
    sim: Sim<FamfsFs>,
    state: SharedFileState,
    worker: Option<JoinWorker>,
    metrics: Metrics,
    fs_uuid: String,
    /// Requests sent so far (each gets exactly one record from the session).
    sent: u64,
    _image: Image,
}

impl Rig {
    /// Start the session, answer INIT offering `famfs_bit` (in flags2) and wire the join as
    /// `famfs-daemon run` does once the kernel's INIT was answered.
    fn start(dialect: DialectConfig, famfs_bit: u32) -> Rig {
        let image = image();
        let fs = FamfsFs::open(
            &image.path,
            &ServerConfig {
                daxdev: Some(PathBuf::from("/dev/dax0.0")),
                system_uuid_path: Some(uuid_file(image.dir.path())),
                ..Default::default()
            },
        )
        .unwrap();
        let fs_uuid = fs.fs_uuid().to_string();
        let mut sim = Sim::builder(fs.clone())
            .config(sim::session_config(CONN, EPOCH, dialect))
            .records(4096)
            .start()
            .unwrap();
        let rx = sim.take_records().unwrap();
        // INIT, then the join exactly as `run` builds it from the negotiated state.
        sim.init_offer(famfs_bit).unwrap();
        let n = sim
            .session()
            .wait_negotiated(Duration::from_secs(10))
            .expect("negotiated")
            .clone();
        let fmap_opcode = n.get_fmap_opcode().expect("famfs mode negotiated");
        let state = SharedFileState::new(FileState {
            join: Join::new(n.connection, n.mount_epoch, n.init_ns, fmap_opcode),
            fs_uuid: fs_uuid.clone(),
            max_series: 500,
        });
        let inputs = JoinInputs {
            events: None,
            records: rx,
            catalog: Arc::new(fs),
            faults: None,
        };
        let worker = JoinWorker::start(state.clone(), inputs).unwrap();
        let mut metrics = Metrics::new(None, Some(state.clone()));
        metrics.add_server(
            sim.session().stats().clone(),
            n.get_fmap_opcode().zip(n.get_daxdev_opcode()),
        );
        Rig {
            sim,
            state,
            worker: Some(worker),
            metrics,
            fs_uuid,
            sent: 1,
            _image: image,
        }
    }

    fn call(&mut self, op: u32, nodeid: u64, body: &[u8]) -> Reply {
        self.sent += 1;
        self.sim.call(op, nodeid, body).unwrap()
    }

    fn lookup(&mut self, name: &str) -> u64 {
        let r = self.call(opcode::LOOKUP, ROOT, &sim::name(name));
        assert_eq!(r.error, 0, "LOOKUP {name}");
        r.decode::<EntryOut>().unwrap().nodeid
    }

    fn open(&mut self, nodeid: u64) {
        let r = self.call(opcode::OPEN, nodeid, &open_in(0));
        assert_eq!((r.error, r.body.len()), (0, 16), "OPEN {nodeid}");
    }

    fn release(&mut self, nodeid: u64) {
        let r = self.call(opcode::RELEASE, nodeid, &ReleaseIn::default().to_bytes());
        assert_eq!(r.error, 0, "RELEASE {nodeid}");
    }

    /// GET_FMAP with a `{u32 size, u32 pad}` body (RFC V2), or none (`size` None: V3's page buffer).
    fn get_fmap(&mut self, op: u32, nodeid: u64, size: Option<u32>) -> Reply {
        match size {
            Some(s) => self.call(op, nodeid, &fmap_size_body(s)),
            None => self.call(op, nodeid, &[]),
        }
    }

    /// Wait (deadline, polling the join's real state) until the join has taken every record the
    /// session produced: one per request sent.
    fn wait_joined(&self) {
        let want = self.sent;
        let stats = self.sim.session().stats();
        let mut got = 0;
        let joined = wait_for(Duration::from_secs(20), || {
            got = self.state.read().unwrap().join.health.server_records;
            (got == want && stats.records_sent() == want).then_some(())
        });
        assert!(
            joined.is_some(),
            "the join took {got} of {want} records within 20 s (session sent {}, dropped {})",
            stats.records_sent(),
            stats.records_dropped()
        );
    }

    fn render(&self) -> String {
        self.metrics.render(Format::PrometheusText).unwrap()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Closing the kernel end ends the session (bounded wait); then the join thread stops.
        let _ = self.sim.stop();
        if let Some(w) = self.worker.take() {
            w.stop();
        }
    }
}

/// The value text of the sample `name{labels}` (labels exactly as rendered), or a panic showing the
/// family's lines.
fn sample<'a>(text: &'a str, name: &str, labels: &str) -> &'a str {
    let head = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(head.as_str()))
        .unwrap_or_else(|| {
            let fam: Vec<&str> = text.lines().filter(|l| l.starts_with(name)).collect();
            panic!("no sample {head:?}; {name} lines: {fam:#?}")
        })
}

/// Assert every `(family, value)` of the file `path` exactly.
fn assert_file(text: &str, fs_uuid: &str, path: &str, want: &[(&str, &str)]) {
    let labels = format!("fs_uuid=\"{fs_uuid}\",path=\"{path}\"");
    let got: Vec<(&str, &str)> = want
        .iter()
        .map(|(name, _)| (*name, sample(text, name, &labels)))
        .collect();
    assert_eq!(got, want, "{path}");
}

/// `fmap` header fields (ext_type, nextents, file_size) of a GET_FMAP reply body.
fn fmap_header(b: &[u8]) -> (u32, u32, u64) {
    (
        u32::from_le_bytes(b[4..8].try_into().unwrap()),
        u32::from_le_bytes(b[8..12].try_into().unwrap()),
        u64::from_le_bytes(b[16..24].try_into().unwrap()),
    )
}

#[test]
fn rfc_v2_needed_size_retries_fmap_bytes_and_extents_per_file() {
    let mut rig = Rig::start(DialectConfig::RfcV2, 0x400);
    const GET_FMAP: u32 = 53;

    // many: OPEN, GET_FMAP with the small buffer → exactly the 4-byte needed size; the kernel's one
    // retry with that size → the whole 416-byte map.
    let many = rig.lookup("many");
    rig.open(many);
    let r = rig.get_fmap(GET_FMAP, many, Some(SMALL_BUFFER));
    assert_eq!((r.error, r.body), (0, 416u32.to_ne_bytes().to_vec()));
    let r = rig.get_fmap(GET_FMAP, many, Some(416));
    assert_eq!((r.error, r.body.len()), (0, 416));
    assert_eq!(fmap_header(&r.body), (0, 16, MANY_SIZE));

    // wide: the same for an interleaved map of 16 strips (440 bytes).
    let wide = rig.lookup("wide");
    rig.open(wide);
    let r = rig.get_fmap(GET_FMAP, wide, Some(SMALL_BUFFER));
    assert_eq!((r.error, r.body), (0, 440u32.to_ne_bytes().to_vec()));
    let r = rig.get_fmap(GET_FMAP, wide, Some(440));
    assert_eq!((r.error, r.body.len()), (0, 440));
    assert_eq!(fmap_header(&r.body), (1, 1, WIDE_SIZE));

    // small: 56 bytes fit the small buffer at once.
    let small = rig.lookup("small");
    rig.open(small);
    let r = rig.get_fmap(GET_FMAP, small, Some(SMALL_BUFFER));
    assert_eq!((r.error, r.body.len()), (0, 56));
    assert_eq!(fmap_header(&r.body), (0, 1, SMALL_SIZE));

    // A second open of `many`: the kernel keeps the parsed map per inode, so OPEN alone.
    rig.open(many);
    rig.release(many);
    rig.release(many);

    rig.wait_joined();
    let text = rig.render();
    let u = rig.fs_uuid.clone();
    assert_file(
        &text,
        &u,
        "/many",
        &[
            ("famfs_file_opens_total", "2"),
            ("famfs_file_open_errors_total", "0"),
            ("famfs_file_get_fmap_total", "2"),
            ("famfs_file_get_fmap_retries_total", "1"),
            ("famfs_file_get_fmap_errors_total", "0"),
            ("famfs_file_fmap_bytes", "416"),
            ("famfs_file_fmap_extents", "16"),
            ("famfs_file_size_bytes", &MANY_SIZE.to_string()),
        ],
    );
    assert_file(
        &text,
        &u,
        "/wide",
        &[
            ("famfs_file_opens_total", "1"),
            ("famfs_file_get_fmap_total", "2"),
            ("famfs_file_get_fmap_retries_total", "1"),
            ("famfs_file_get_fmap_errors_total", "0"),
            ("famfs_file_fmap_bytes", "440"),
            ("famfs_file_fmap_extents", "16"),
            ("famfs_file_size_bytes", &WIDE_SIZE.to_string()),
        ],
    );
    assert_file(
        &text,
        &u,
        "/small",
        &[
            ("famfs_file_opens_total", "1"),
            ("famfs_file_get_fmap_total", "1"),
            ("famfs_file_get_fmap_retries_total", "0"),
            ("famfs_file_get_fmap_errors_total", "0"),
            ("famfs_file_fmap_bytes", "56"),
            ("famfs_file_fmap_extents", "1"),
            ("famfs_file_size_bytes", &SMALL_SIZE.to_string()),
        ],
    );
    assert_eq!(
        sample(
            &text,
            "famfs_file_series_folded",
            &format!("fs_uuid=\"{u}\"")
        ),
        "0"
    );
    // The server's own view: 5 GET_FMAP (two of them needed-size replies, which are not errors), 4
    // OPEN; and the join took all 15 records (INIT, 3 LOOKUP, 4 OPEN, 5 GET_FMAP, 2 RELEASE).
    for (name, labels, want) in [
        ("famfs_server_requests_total", "opcode=\"GET_FMAP\"", "5"),
        (
            "famfs_server_request_errors_total",
            "opcode=\"GET_FMAP\"",
            "0",
        ),
        ("famfs_server_requests_total", "opcode=\"OPEN\"", "4"),
        ("famfs_server_requests_total", "opcode=\"LOOKUP\"", "3"),
        ("famfs_server_records_total", "outcome=\"dropped\"", "0"),
        ("famfs_join_events_total", "outcome=\"stale_record\"", "0"),
        ("famfs_join_events_total", "outcome=\"non_file\"", "0"),
    ] {
        assert_eq!(sample(&text, name, labels), want, "{name}{{{labels}}}");
    }
    assert_eq!(
        sample(
            &text,
            "famfs_join_events_total",
            "outcome=\"server_record\""
        ),
        rig.sent.to_string()
    );
    assert_eq!(rig.sent, 15);

    // /api/v1/files shows the same per-file numbers.
    let q = FileQuery {
        sort: FileSort::Path,
        ..Default::default()
    };
    let views: Vec<FileRow> = query(&rig.state.read().unwrap().join, &q)
        .into_iter()
        .map(|f| FileRow::of(f, 0))
        .collect();
    let got: Vec<_> = views
        .iter()
        .map(|v| {
            (
                v.path.as_str(),
                v.opens,
                v.get_fmap,
                v.get_fmap_retries,
                v.get_fmap_errors,
                v.fmap_bytes,
                v.fmap_extents,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("/many", 2, 2, 1, 0, 416, 16),
            ("/small", 1, 1, 0, 0, 56, 1),
            ("/wide", 1, 2, 1, 0, 440, 16),
        ]
    );
}

#[test]
fn v3_map_that_does_not_fit_is_an_error_not_a_retry() {
    let mut rig = Rig::start(DialectConfig::V3, 0x800);
    const GET_FMAP: u32 = 54;

    // A V3 kernel sends no body and a page buffer, which every famfs map fits (at most 16 extents or
    // strips: ≤ 440 bytes). To exercise V3's no-retry rule the simulated kernel announces a 100-byte
    // buffer in a body, which the session honours whatever the dialect: EINVAL, header only, and the
    // kernel fails the open (it releases the file).
    let many = rig.lookup("many");
    rig.open(many);
    let r = rig.get_fmap(GET_FMAP, many, Some(SMALL_BUFFER));
    assert_eq!((r.error, r.body.len()), (-libc::EINVAL, 0));
    rig.release(many);

    // small: no body (the page buffer) → the 56-byte map.
    let small = rig.lookup("small");
    rig.open(small);
    let r = rig.get_fmap(GET_FMAP, small, None);
    assert_eq!((r.error, r.body.len()), (0, 56));
    assert_eq!(fmap_header(&r.body), (0, 1, SMALL_SIZE));

    rig.wait_joined();
    let text = rig.render();
    let u = rig.fs_uuid.clone();
    assert_file(
        &text,
        &u,
        "/many",
        &[
            ("famfs_file_opens_total", "1"),
            ("famfs_file_get_fmap_total", "1"),
            ("famfs_file_get_fmap_retries_total", "0"),
            ("famfs_file_get_fmap_errors_total", "1"),
            // The file's map is still 416 bytes and 16 extents (from the namespace); it just was not
            // sent.
            ("famfs_file_fmap_bytes", "416"),
            ("famfs_file_fmap_extents", "16"),
        ],
    );
    assert_file(
        &text,
        &u,
        "/small",
        &[
            ("famfs_file_opens_total", "1"),
            ("famfs_file_get_fmap_total", "1"),
            ("famfs_file_get_fmap_retries_total", "0"),
            ("famfs_file_get_fmap_errors_total", "0"),
            ("famfs_file_fmap_bytes", "56"),
            ("famfs_file_fmap_extents", "1"),
        ],
    );
    // `wide` was never touched: no series.
    assert!(
        !text.contains("path=\"/wide\""),
        "an untouched file has no series"
    );
    for (name, labels, want) in [
        ("famfs_server_requests_total", "opcode=\"GET_FMAP\"", "2"),
        (
            "famfs_server_request_errors_total",
            "opcode=\"GET_FMAP\"",
            "1",
        ),
        ("famfs_server_requests_total", "opcode=\"OPEN\"", "2"),
    ] {
        assert_eq!(sample(&text, name, labels), want, "{name}{{{labels}}}");
    }
    assert_eq!(rig.sent, 8);
    assert_eq!(
        sample(
            &text,
            "famfs_join_events_total",
            "outcome=\"server_record\""
        ),
        "8"
    );
}

#[test]
fn every_rendered_family_is_in_the_readme_table_and_back() {
    // A rig with a file series, the server's counters and the (probe-less) kernel families.
    let mut rig = Rig::start(DialectConfig::RfcV2, 0x400);
    let many = rig.lookup("many");
    rig.open(many);
    rig.wait_joined();
    let text = rig.render();
    let rendered: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(rendered.len() >= 40, "{rendered:?}");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    // The first column of the metric table: backticked names, several per row.
    let documented: std::collections::BTreeSet<&str> = readme
        .lines()
        .filter(|l| l.starts_with("| `famfs_"))
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(|c| c.split('`').skip(1).step_by(2))
        .collect();
    let undocumented: Vec<_> = rendered.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&rendered).collect();
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "rendered but not in the README table: {undocumented:?}; in the table but never rendered: {stale:?}"
    );
}
