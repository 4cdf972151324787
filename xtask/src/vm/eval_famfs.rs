//! The host-side assertions on the famfs server check (`xtask vm-guest famfs`): the workload's own
//! counts, the famfs-serving daemon's per-file metrics, the kernel's and the server's view of the
//! connection, the join between them, the 6.12 unique-0 quirk, and the SIGTERM stop. Every expected
//! value is derived from `famfs_files`.
//!
//! Owns these expected values only; parsing is `console`'s, the workload is `guest`'s. Metric names
//! come from `famfs_common::metric_names`.

use famfs_common::metric_names::{
    FILE_OPEN_DURATION, FILE_OPEN_ERRORS, FILE_OPENS, FILE_PAGE_CACHE_FAULTS, FILE_READ,
    FILE_READS, FILE_SERIES_FOLDED, FILE_SIZE, FILE_WRITTEN, FUSE_REQUEST_DURATION,
    FUSE_REQUEST_ERRORS, FUSE_REQUESTS, JOIN_EVENTS, PROBE_ATTACHED, PROBE_EVENTS, SERVER_RECORDS,
    SERVER_REQUESTS,
};

use super::{
    console::{Results, exited_ok, metric_at, opcode_samples},
    eval::exact,
    famfs_files::{FAMFS_MMAP_FILE, FAMFS_READ_FILES, PAGE},
};

/// Console prefix of the famfs-serving daemon's samples.
const FMETRIC: &str = "FMETRIC ";

/// The famfs-serving daemon's samples on the console, and the problems found in them so far.
struct Samples<'a> {
    console: &'a str,
    problems: Vec<String>,
}

impl Samples<'_> {
    /// Sample `name{labels}` (labels matched as a subset).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric_at(self.console, FMETRIC, name, labels)
    }

    /// Compare sample `name{labels}` with `want`.
    fn expect(&mut self, name: &str, labels: &[(&str, &str)], want: f64) {
        match self.get(name, labels) {
            Some(got) if got == want => {}
            got => self.problems.push(format!(
                "famfs: {name}{labels:?} = {got:?}, expected {want}"
            )),
        }
    }
}

/// `<family>_count`: the sample count of a histogram family.
fn count(family: &str) -> String {
    format!("{family}_count")
}

/// Opens of the workload: every read file n times, plus the one open of the mapped file.
fn workload_opens() -> u64 {
    FAMFS_READ_FILES.iter().map(|f| f.2).sum::<u64>() + 1
}

/// The famfs server check's exact values, derived from [`FAMFS_READ_FILES`] and [`FAMFS_MMAP_FILE`].
pub(super) fn famfs_checks(console: &str, res: &Results) -> Vec<String> {
    let mut v = exited_ok(console, "famfs");
    let (_, msize) = FAMFS_MMAP_FILE;
    let opens = workload_opens();
    let read_bytes: u64 = FAMFS_READ_FILES.iter().map(|f| f.1 * f.2).sum();
    v.extend(exact(
        res,
        "famfs",
        "workload",
        &[
            ("opens", opens.to_string()),
            ("read_bytes", read_bytes.to_string()),
            ("mismatches", "0".into()),
            ("mmap_pages", msize.div_ceil(PAGE).to_string()),
            ("mmap_bytes", msize.to_string()),
            ("mmap_mismatches", "0".into()),
        ],
    ));
    let ready = res.get(&("famfs".to_string(), "ready".to_string()));
    let Some((conn, uuid)) =
        ready.and_then(|f| Some((f.get("connection")?.as_str(), f.get("fs_uuid")?.as_str())))
    else {
        v.push("no `RESULT famfs ready` line with connection= and fs_uuid=".into());
        return v;
    };
    // The ready line's connection is the mount's device minor, and the mount is ours.
    v.extend(exact(
        res,
        "famfs",
        "ready",
        &[("mountinfo_connection", conn), ("fstype", "fuse.famfs")],
    ));
    // The guest scraped once the join had taken in every server record and a kernel event per open.
    v.extend(exact(res, "famfs", "scrape", &[("settled", "1")]));

    let mut s = Samples {
        console,
        problems: v,
    };
    let file_reads = per_file(&mut s, uuid);
    connection_requests(&mut s, conn, file_reads);
    let answered = served_requests(&mut s, conn);
    join_outcomes(&mut s, answered);
    probe_health(&mut s);
    s.problems
}

/// Per file. The server answers OPEN without KEEP_CACHE, so each open drops the file's page cache
/// and each full read READs the whole file again: read bytes are exactly size × opens, with no page
/// cache faults (read(2) does not fault). The mapped file is opened once and, with MADV_RANDOM (no
/// readahead, and fault-around only maps pages already cached), each touched page takes exactly
/// one page-cache fault and one READ of that page: `pages` of each, `size` bytes. Returns the sum of
/// the files' READ counts.
fn per_file(s: &mut Samples<'_>, uuid: &str) -> f64 {
    let (mpath, msize) = FAMFS_MMAP_FILE;
    let pages = msize.div_ceil(PAGE);
    let mut file_reads = 0.0;
    let files = FAMFS_READ_FILES
        .iter()
        .map(|&(p, s, n)| (p, s, n, false))
        .chain([(mpath, msize, 1, true)]);
    let open_count = count(FILE_OPEN_DURATION.name);
    for (path, size, n, mapped) in files {
        let p = format!("/{path}");
        let l = [("fs_uuid", uuid), ("path", p.as_str())];
        for (name, want) in [
            (FILE_OPENS.name, n as f64),
            (FILE_OPEN_ERRORS.name, 0.0),
            // The kernel-observed latency, joined per file despite the unique-0 sends.
            (&open_count, n as f64),
            (FILE_SIZE.name, size as f64),
            (FILE_READ.name, (size * n) as f64),
            (FILE_WRITTEN.name, 0.0),
            (
                FILE_PAGE_CACHE_FAULTS.name,
                if mapped { pages as f64 } else { 0.0 },
            ),
        ] {
            s.expect(name, &l, want);
        }
        if mapped {
            s.expect(FILE_READS.name, &l, pages as f64);
        }
        file_reads += s.get(FILE_READS.name, &l).unwrap_or(0.0);
    }
    s.expect(FILE_SERIES_FOLDED.name, &[("fs_uuid", uuid)], 0.0);
    file_reads
}

/// The kernel's view of the connection (probes) and the server's own: every open is one OPEN the
/// kernel queued and completed without error and the server answered; every READ the kernel queued
/// was answered by the server and attributed to a file (`file_reads`, the per-file sum).
fn connection_requests(s: &mut Samples<'_>, conn: &str, file_reads: f64) {
    let open = [("connection", conn), ("opcode", "OPEN")];
    let o = workload_opens() as f64;
    s.expect(FUSE_REQUESTS.name, &open, o);
    s.expect(&count(FUSE_REQUEST_DURATION.name), &open, o);
    s.expect(FUSE_REQUEST_ERRORS.name, &open, 0.0);
    s.expect(SERVER_REQUESTS.name, &[("opcode", "OPEN")], o);
    let read = [("connection", conn), ("opcode", "READ")];
    let k_reads = s.get(FUSE_REQUESTS.name, &read);
    let s_reads = s.get(SERVER_REQUESTS.name, &[("opcode", "READ")]);
    if k_reads.is_none() || k_reads != s_reads || k_reads != Some(file_reads) {
        s.problems.push(format!(
            "famfs: READs: kernel {k_reads:?}, server {s_reads:?}, per-file sum {file_reads}: expected all equal"
        ));
    }
}

/// Every request the kernel queued on the connection, opcode by opcode, is one the server answered.
/// The exception is INIT: mount(2) queues it before the daemon knows its connection number, so the
/// probes, filtered to the daemon's own connection, never count it (it is the `filtered` send and
/// end). Returns the number of requests the server answered.
fn served_requests(s: &mut Samples<'_>, conn: &str) -> f64 {
    let served = opcode_samples(s.console, &format!("{FMETRIC}{}{{", SERVER_REQUESTS.name));
    let answered: f64 = served.iter().map(|(_, n)| n).sum();
    if served.iter().all(|(op, _)| op != "OPEN") {
        s.problems
            .push(format!("famfs: no {} samples", SERVER_REQUESTS.name));
    }
    for (op, n) in &served {
        let l = [("connection", conn), ("opcode", op.as_str())];
        let k = s.get(FUSE_REQUESTS.name, &l);
        let want = if op == "INIT" { None } else { Some(*n) };
        if k != want {
            s.problems.push(format!(
                "famfs: {op}: the kernel queued {k:?}, the server answered {n}, expected {want:?}"
            ));
        }
    }
    let kernel_total: f64 = opcode_samples(
        s.console,
        &format!("{FMETRIC}{}{{connection=\"{conn}\",", FUSE_REQUESTS.name),
    )
    .iter()
    .map(|(_, n)| n)
    .sum();
    if kernel_total + 1.0 != answered {
        s.problems.push(format!(
            "famfs: the kernel queued {kernel_total} requests, the server answered {answered}: expected \
             one more (INIT)"
        ));
    }
    answered
}

/// Each answer was handed to the join as one record (`answered` of them). One kernel OPEN completion
/// per open reaches the join and matches its server record; the latency is the kernel's own
/// (server_timed 0: the send was paired in the kernel by address).
fn join_outcomes(s: &mut Samples<'_>, answered: f64) {
    let opens = workload_opens();
    let o = opens as f64;
    s.expect(SERVER_RECORDS.name, &[("outcome", "sent")], answered);
    for (outcome, want) in [
        ("kernel_event", o),
        ("matched", o),
        ("server_timed", 0.0),
        ("unmatched_server", 0.0),
        ("unmatched_kernel", 0.0),
        ("late", 0.0),
        ("foreign", 0.0),
        ("stale_record", 0.0),
        ("non_file", 0.0),
    ] {
        s.expect(JOIN_EVENTS.name, &[("outcome", outcome)], want);
    }
    let sent = s.get(SERVER_RECORDS.name, &[("outcome", "sent")]);
    let joined = s.get(JOIN_EVENTS.name, &[("outcome", "server_record")]);
    if sent.is_none_or(|x| x < o) || sent != joined {
        s.problems.push(format!(
            "famfs: server records sent {sent:?}, taken in by the join {joined:?}: expected equal and at least {opens}"
        ));
    }
    s.expect(SERVER_RECORDS.name, &[("outcome", "dropped")], 0.0);
}

/// The quirk is there (every send reports unique 0) and did not hurt: no unmatched end, no drop; the
/// request probes are the raw-tracepoint (pointer-pairing) ones.
fn probe_health(s: &mut Samples<'_>) {
    let o = workload_opens() as f64;
    let ev = |e: &str| s.get(PROBE_EVENTS.name, &[("event", e)]);
    let (send, zero) = (ev("send"), ev("send_unique_zero"));
    if send.is_none_or(|x| x < o) || send != zero {
        s.problems.push(format!(
            "famfs: probe sends {send:?}, with unique 0 {zero:?}: the 6.12 quirk was expected on every send"
        ));
    }
    for e in ["unmatched_end", "ringbuf_drop", "inflight_full"] {
        s.expect(PROBE_EVENTS.name, &[("event", e)], 0.0);
    }
    s.expect(
        PROBE_ATTACHED.name,
        &[("probe", "fuse_request_send"), ("kind", "tp_btf")],
        1.0,
    );
}

/// SIGTERM: the daemon unmounts (its closing line), exits 0, and the mount is gone.
pub(super) fn famfs_stop_checks(res: &Results) -> Vec<String> {
    exact(
        res,
        "famfs",
        "stop",
        &[
            ("exit", "0"),
            ("mounted_after", "0"),
            ("stopped_line", "1"),
            ("stderr_panics", "0"),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::console::results;

    /// `FMETRIC <family>{labels} value` lines of the per-file families for one file.
    fn file_lines(l: &mut Vec<String>, path: &str, size: u64, n: u64, reads: u64, faults: u64) {
        let lb = format!("{{fs_uuid=\"U\",path=\"/{path}\"}}");
        for (name, v) in [
            (FILE_OPENS.name.to_string(), n),
            (FILE_OPEN_ERRORS.name.to_string(), 0),
            (count(FILE_OPEN_DURATION.name), n),
            (FILE_SIZE.name.to_string(), size),
            (FILE_READS.name.to_string(), reads),
            (FILE_READ.name.to_string(), size * n),
            (FILE_WRITTEN.name.to_string(), 0),
            (FILE_PAGE_CACHE_FAULTS.name.to_string(), faults),
        ] {
            l.push(format!("FMETRIC {name}{lb} {v}"));
        }
    }

    /// `FMETRIC` lines of the kernel's and the server's per-opcode counts; returns the requests answered.
    fn request_lines(l: &mut Vec<String>, reads: u64) -> u64 {
        let requests = [("LOOKUP", 7), ("OPEN", 15), ("READ", reads), ("FLUSH", 15)];
        for (op, n) in requests {
            let lb = format!("{{connection=\"27\",opcode=\"{op}\"}}");
            l.push(format!("FMETRIC {}{lb} {n}", FUSE_REQUESTS.name));
            l.push(format!("FMETRIC {}{lb} 0", FUSE_REQUEST_ERRORS.name));
            l.push(format!(
                "FMETRIC {}{lb} {n}",
                count(FUSE_REQUEST_DURATION.name)
            ));
        }
        let mut answered = 1;
        for (op, n) in requests.iter().chain(&[("INIT", 1)]) {
            l.push(format!(
                "FMETRIC {}{{opcode=\"{op}\"}} {n}",
                SERVER_REQUESTS.name
            ));
            answered += if *op == "INIT" { 0 } else { *n };
        }
        answered
    }

    /// `FMETRIC` lines of the join, the server's records and the probes' health.
    fn join_and_probe_lines(l: &mut Vec<String>, answered: u64) {
        for (o, n) in [
            ("server_record", answered),
            ("kernel_event", 15),
            ("matched", 15),
            ("unmatched_server", 0),
            ("unmatched_kernel", 0),
            ("late", 0),
            ("server_timed", 0),
            ("foreign", 0),
            ("stale_record", 0),
            ("non_file", 0),
        ] {
            l.push(format!(
                "FMETRIC {}{{outcome=\"{o}\"}} {n}",
                JOIN_EVENTS.name
            ));
        }
        let records = SERVER_RECORDS.name;
        l.push(format!("FMETRIC {records}{{outcome=\"sent\"}} {answered}"));
        l.push(format!("FMETRIC {records}{{outcome=\"dropped\"}} 0"));
        let sends = answered - 1;
        for (e, n) in [
            ("send", sends),
            ("end", sends),
            ("unmatched_end", 0),
            ("inflight_full", 0),
            ("send_unique_zero", sends),
            ("ringbuf_drop", 0),
        ] {
            l.push(format!(
                "FMETRIC {}{{event=\"{e}\"}} {n}",
                PROBE_EVENTS.name
            ));
        }
        l.push(format!(
            "FMETRIC {}{{probe=\"fuse_request_send\",target=\"fuse:fuse_request_send\",\
             kind=\"tp_btf\"}} 1",
            PROBE_ATTACHED.name
        ));
    }

    /// A console of a famfs check run that went as expected, with `edit` applied to each line.
    fn famfs_console(edit: impl Fn(String) -> String) -> String {
        let mut l = vec![
            "RESULT famfs ready connection=27 mountinfo_connection=27 fstype=fuse.famfs fs_uuid=U"
                .to_string(),
            "RESULT famfs workload opens=15 read_bytes=5806212 mismatches=0 mmap_pages=74 \
             mmap_bytes=300003 mmap_mismatches=0"
                .into(),
            "RESULT famfs scrape settled=1".into(),
            "RESULT famfs stop exit=0 mounted_after=0 stderr_panics=0 stopped_line=1".into(),
            "VMTEST EXIT famfs 0".into(),
        ];
        let files = FAMFS_READ_FILES
            .iter()
            .map(|&(p, s, n)| (p, s, n, 0))
            .chain([(FAMFS_MMAP_FILE.0, FAMFS_MMAP_FILE.1, 1, 74)]);
        let mut reads = 0;
        for (path, size, n, faults) in files {
            let r = if faults > 0 {
                faults
            } else {
                size.div_ceil(32768) * n
            };
            reads += r;
            file_lines(&mut l, path, size, n, r, faults);
        }
        l.push(format!(
            "FMETRIC {}{{fs_uuid=\"U\"}} 0",
            FILE_SERIES_FOLDED.name
        ));
        let answered = request_lines(&mut l, reads);
        join_and_probe_lines(&mut l, answered);
        l.into_iter().map(edit).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn famfs_checks_pass_on_expected_values_and_name_each_deviation() {
        let good = famfs_console(|l| l);
        let res = results(&good);
        assert_eq!(famfs_checks(&good, &res), Vec::<String>::new());
        assert_eq!(famfs_stop_checks(&res), Vec::<String>::new());

        // One OPEN latency of /d lost by the join.
        let open_count = count(FILE_OPEN_DURATION.name);
        let bad = famfs_console(|l| {
            if l.starts_with(&format!("FMETRIC {open_count}")) && l.contains("path=\"/d\"") {
                l.replace(" 5", " 4")
            } else {
                l
            }
        });
        assert_eq!(
            famfs_checks(&bad, &results(&bad)),
            vec![format!(
                "famfs: {open_count}[(\"fs_uuid\", \"U\"), (\"path\", \"/d\")] = Some(4.0), expected 5"
            )]
        );
        // Latencies taken from the server's receive time (the kernel could not pair the sends).
        let bad = famfs_console(|l| {
            l.replace(
                "outcome=\"server_timed\"} 0",
                "outcome=\"server_timed\"} 15",
            )
        });
        assert_eq!(famfs_checks(&bad, &results(&bad)).len(), 1);
        // A request the kernel queued that the server never answered.
        let lookup = format!(
            "{}{{connection=\"27\",opcode=\"LOOKUP\"}}",
            FUSE_REQUESTS.name
        );
        let bad = famfs_console(|l| l.replace(&format!("{lookup} 7"), &format!("{lookup} 8")));
        assert_eq!(famfs_checks(&bad, &results(&bad)).len(), 2);
        // The mount left behind.
        let bad = famfs_console(|l| l.replace("mounted_after=0", "mounted_after=1"));
        assert_eq!(
            famfs_stop_checks(&results(&bad)),
            vec!["famfs stop: mounted_after=1, expected 0"]
        );
    }
}
