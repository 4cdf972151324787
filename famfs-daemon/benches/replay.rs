//! Log replay benchmark (not a test): a full default log (15,420 entries: nested directories and files)
//! replayed into the namespace, printed as entries/s and total time beside a baseline measured in the
//! same run (a bare CRC pass over the same log bytes), plus the incremental apply of the last 1,000
//! entries, a full `Image::open` of a sparse image file holding the log, and a log of the same length
//! whose extents all collide.
//! Run: `cargo bench -p famfs-daemon --bench replay`.

// A benchmark binary over fixed, valid inputs: a failed unwrap or assertion aborts it with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/bench.rs"]
mod bench;

use std::{hint::black_box, time::Instant};

use famfs_daemon::famfs::{
    Image, ImageOptions, MkfsOptions, Namespace, Role, Store,
    format::{
        ALLOC_UNIT, DEFAULT_LOG_LEN, E_OFF_CRC, ENTRY_SIZE, EntryBody, Extent,
        FILE_FLAG_ALL_HOSTS_RW, FileEntry, Geometry, LOG_HEADER_SIZE, LOG_OFFSET, LogEntry,
        LogHeader, MAX_SIMPLE_EXTENTS, MkdirEntry, RawFmap, RelPath, VERSION_48, entry_offset,
        log_slots,
    },
};

const ITERS: usize = 25;
const DEV_SIZE: u64 = 64 << 30;

fn bodies(n: u64) -> Vec<EntryBody> {
    let mut out = Vec::with_capacity(n as usize);
    let mut unit = (LOG_OFFSET + DEFAULT_LOG_LEN) / ALLOC_UNIT;
    let mut g = 0;
    'outer: loop {
        let top = format!("group{g:04}");
        let dirs = [top.clone(), format!("{top}/a"), format!("{top}/a/b")];
        for d in &dirs {
            if out.len() as u64 == n {
                break 'outer;
            }
            out.push(EntryBody::Mkdir(MkdirEntry {
                uid: 1000,
                gid: 1000,
                mode: 0o755,
                relpath: RelPath::new(d.as_bytes()).unwrap(),
            }));
        }
        for j in 0..97 {
            if out.len() as u64 == n {
                break 'outer;
            }
            let path = format!("{}/file{j:03}.dat", dirs[j % 3]);
            let mut extents = [Extent::default(); MAX_SIMPLE_EXTENTS];
            extents[0] = Extent {
                devindex: 0,
                offset: unit * ALLOC_UNIT,
                len: ALLOC_UNIT,
            };
            unit += 1;
            out.push(EntryBody::File(FileEntry {
                size: 4096 * (j as u64 + 1),
                flags: FILE_FLAG_ALL_HOSTS_RW,
                uid: 1000,
                gid: 1000,
                mode: 0o644,
                relpath: RelPath::new(path.as_bytes()).unwrap(),
                fmap: RawFmap::Simple {
                    nextents: 1,
                    extents,
                },
            }));
        }
        g += 1;
    }
    out
}

/// A full default log on an 8 TiB device where every entry is a file whose 16 extents all span the
/// whole data area: every extent of every entry collides (F4).
fn colliding_log() -> (Vec<u8>, Geometry) {
    let slots = log_slots(DEFAULT_LOG_LEN);
    let geo = Geometry {
        version: VERSION_48,
        log_offset: LOG_OFFSET,
        log_len: DEFAULT_LOG_LEN,
        dev_size: 8 << 40,
        slots,
    };
    let span = Extent {
        devindex: 0,
        offset: geo.data_start(),
        len: geo.dev_size - geo.data_start(),
    };
    let bodies = (0..slots).map(|i| {
        EntryBody::File(FileEntry {
            size: 4096,
            flags: FILE_FLAG_ALL_HOSTS_RW,
            uid: 0,
            gid: 0,
            mode: 0o644,
            relpath: RelPath::new(format!("f{i:05}").as_bytes()).unwrap(),
            fmap: RawFmap::Simple {
                nextents: 16,
                extents: [span; MAX_SIMPLE_EXTENTS],
            },
        })
    });
    (encode_log(&geo, bodies), geo)
}

/// The log region: a header saying every slot is used, then `bodies` encoded.
fn encode_log(geo: &Geometry, bodies: impl Iterator<Item = EntryBody>) -> Vec<u8> {
    let mut log = vec![0u8; geo.log_len as usize];
    let mut h = LogHeader::new(geo.log_len);
    h.next_index = geo.slots;
    h.next_seqnum = geo.slots;
    log[..LOG_HEADER_SIZE].copy_from_slice(&h.encode());
    for (i, body) in bodies.enumerate() {
        let e = LogEntry {
            seqnum: i as u64,
            body,
        }
        .encode(geo.version)
        .unwrap();
        let off = entry_offset(0, i as u64) as usize;
        log[off..off + ENTRY_SIZE].copy_from_slice(&e);
    }
    log
}

/// The log region (header + entries) of a full default log.
fn full_log() -> (Vec<u8>, Geometry) {
    let slots = log_slots(DEFAULT_LOG_LEN);
    let geo = Geometry {
        version: VERSION_48,
        log_offset: LOG_OFFSET,
        log_len: DEFAULT_LOG_LEN,
        dev_size: DEV_SIZE,
        slots,
    };
    (encode_log(&geo, bodies(slots).into_iter()), geo)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (log, geo) = full_log();
    let hdr = LogHeader::decode(&log, LOG_OFFSET, DEFAULT_LOG_LEN).unwrap();
    let n = hdr.next_index as usize;
    assert_eq!(n, 15_420);

    // Baseline: CRC-32 of every entry's covered bytes, nothing else.
    let mut base = Vec::new();
    for _ in 0..ITERS {
        let t = Instant::now();
        let mut acc = 0u32;
        for i in 0..n {
            let off = entry_offset(0, i as u64) as usize;
            acc ^= crc32fast::hash(&log[off..off + E_OFF_CRC]);
        }
        black_box(acc);
        base.push(t.elapsed().as_secs_f64());
    }

    // Full replay into a fresh namespace (drop excluded).
    let mut full = Vec::new();
    let mut kept = None;
    for _ in 0..ITERS {
        let t = Instant::now();
        let mut ns = Namespace::new(&geo, Role::Master);
        let out = ns.apply_log(&log, &hdr, false);
        black_box(&ns);
        full.push(t.elapsed().as_secs_f64());
        assert_eq!(out.applied, n as u64);
        assert!(ns.anomalies().is_empty() && ns.stopped().is_none());
        assert_eq!(ns.len(), 4 + n);
        kept = Some(ns);
    }

    // Incremental: the last 1,000 entries on top of a namespace holding the rest.
    let mut inc = Vec::new();
    let mut part = hdr;
    part.next_index = hdr.next_index - 1000;
    part.next_seqnum = part.next_index;
    for _ in 0..ITERS {
        let mut ns = Namespace::new(&geo, Role::Master);
        ns.apply_log(&log, &part, false);
        let t = Instant::now();
        let out = ns.apply_log(&log, &hdr, true);
        inc.push(t.elapsed().as_secs_f64());
        assert_eq!(out.added.len(), 1000);
        assert!(&ns == kept.as_ref().unwrap());
    }

    // Image::open of a sparse 64 GiB image file holding the same log (open + checks + replay).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.img");
    let host = [7u8; 16];
    let img = Image::mkfs(
        &path,
        &MkfsOptions {
            size: Some(DEV_SIZE),
            host_uuid: Some(host),
            ..Default::default()
        },
    )
    .unwrap();
    let store: Store = img.into_store();
    store.write_at(LOG_OFFSET, &log).unwrap();
    store.flush(LOG_OFFSET, DEFAULT_LOG_LEN).unwrap();
    drop(store);
    let opts = ImageOptions {
        writable: false,
        system_uuid_path: None,
        host_uuid: Some(host),
    };
    let mut open = Vec::new();
    for _ in 0..ITERS {
        let t = Instant::now();
        let img = Image::open_with(&path, &opts).unwrap();
        open.push(t.elapsed().as_secs_f64());
        assert_eq!(img.namespace().len(), 4 + n);
    }

    // A log whose extents all collide (F4 for every extent of every entry).
    let (clog, cgeo) = colliding_log();
    let chdr = LogHeader::decode(&clog, LOG_OFFSET, DEFAULT_LOG_LEN).unwrap();
    let mut coll = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut ns = Namespace::new(&cgeo, Role::Master);
        let out = ns.apply_log(&clog, &chdr, false);
        coll.push(t.elapsed().as_secs_f64());
        assert_eq!(out.applied, n as u64);
        assert_eq!(ns.anomalies().len(), 16 * n - 1);
        black_box(&ns);
    }

    let (b, f, i, o) = (median(base), median(full), median(inc), median(open));
    let c = median(coll);
    println!(
        "replay: full default log, {n} entries (mkdir + file, 3-level paths), median of {ITERS} runs"
    );
    println!(
        "  full replay into the namespace: {:.3} ms = {:.2} M entries/s",
        f * 1e3,
        n as f64 / f / 1e6
    );
    println!(
        "  baseline (bare CRC pass over the same log bytes): {:.3} ms = {:.2} M entries/s; replay/baseline time ratio {:.2}",
        b * 1e3,
        n as f64 / b / 1e6,
        f / b
    );
    println!(
        "  incremental apply of the last 1000 entries: {:.3} ms = {:.2} M entries/s",
        i * 1e3,
        1000.0 / i / 1e6
    );
    println!(
        "  Image::open of a sparse 64 GiB image with this log (open, checks, replay): {:.3} ms; open/baseline ratio {:.2}",
        o * 1e3,
        o / b
    );
    println!(
        "  {n} entries whose 16 extents all collide (8 TiB device, median of 5): {:.3} ms; collide/baseline ratio {:.2}",
        c * 1e3,
        c / b
    );
    let ms = |v: f64| format!("{:.2} ms", v * 1e3);
    let base = format!("bare CRC pass over the same log: {}", ms(b));
    bench::row(&bench::Row {
        figure: &format!("log replay: full default log, {n} entries"),
        ours: format!("{} ({:.1} M entries/s)", ms(f), n as f64 / f / 1e6),
        baseline: base.clone(),
        ratio: Some(f / b),
        goal: "< 20 ms",
        met: Some(f < 0.020),
    });
    bench::row(&bench::Row {
        figure: "log replay: incremental, last 1,000 entries",
        ours: ms(i),
        baseline: base.clone(),
        ratio: Some(i / b),
        goal: "",
        met: None,
    });
    bench::row(&bench::Row {
        figure: "image open (sparse 64 GiB image, checks + replay)",
        ours: ms(o),
        baseline: base.clone(),
        ratio: Some(o / b),
        goal: "",
        met: None,
    });
    bench::row(&bench::Row {
        figure: &format!("log replay: {n} entries, all 16 extents colliding"),
        ours: ms(c),
        baseline: base,
        ratio: Some(c / b),
        goal: "< 20 ms",
        met: Some(c < 0.020),
    });
}
