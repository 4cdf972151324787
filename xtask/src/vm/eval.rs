//! The host-side assertions on the guest's console, one function per check. Expected values are exact for
//! the stock 6.12 kernel; each is explained where it is stated. The famfs server's checks are in
//! `eval_famfs`.
//!
//! Owns the expected values and the pass/fail report; parsing is `console`'s. Metric names come from
//! `famfs_common::metric_names`.

use famfs_common::metric_names::{
    DAX_FAULTS, FUSE_REQUEST_DURATION, FUSE_REQUEST_ERRORS, FUSE_REQUESTS, PROBE_ATTACHED,
    PROBE_RUNS,
};

use super::{
    FUSE_FILES, Outcome,
    console::{Results, exited_ok, metric, probe_row, results},
    eval_famfs,
};

/// Families of the first daemon's /metrics that the guest's /init prints as `METRIC` lines (its
/// `grep -E` pattern) for [`daemon_metrics`].
pub(super) fn console_metric_families() -> Vec<String> {
    vec![
        DAX_FAULTS.name.to_string(),
        FUSE_REQUESTS.name.to_string(),
        FUSE_REQUEST_ERRORS.name.to_string(),
        format!("{}_count", FUSE_REQUEST_DURATION.name),
        PROBE_ATTACHED.name.to_string(),
        PROBE_RUNS.name.to_string(),
    ]
}

/// Compare `fields` of one RESULT line with `want` exactly; every key named must be present.
pub(super) fn exact<K: AsRef<str>, V: AsRef<str>>(
    res: &Results,
    check: &str,
    what: &str,
    want: &[(K, V)],
) -> Vec<String> {
    let Some(f) = res.get(&(check.to_string(), what.to_string())) else {
        return vec![format!("no `RESULT {check} {what}` line")];
    };
    want.iter()
        .filter_map(|(k, v)| {
            let (k, v) = (k.as_ref(), v.as_ref());
            match f.get(k) {
                Some(got) if got == v => None,
                Some(got) => Some(format!("{check} {what}: {k}={got}, expected {v}")),
                None => Some(format!("{check} {what}: no {k}")),
            }
        })
        .collect()
}

/// Every fault field of a `RESULT dax <workload>` line: the named ones as given, all others 0.
fn fault_want(nonzero: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for size in ["pte", "pmd"] {
        for res in ["ok", "fallback", "error"] {
            for rw in ["r", "w"] {
                let key = format!("{size}_{res}_{rw}");
                let val = nonzero
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| *v)
                    .unwrap_or("0");
                v.push((key, val.to_string()));
            }
        }
    }
    v.extend(
        nonzero
            .iter()
            .filter(|(k, _)| !k.starts_with("pte_") && !k.starts_with("pmd_"))
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    v
}

/// Run every check on `console` (the guest booted kernel `kver`), print one `test vm::<name>` line each
/// with its problems, and count them.
pub(super) fn evaluate(console: &str, kver: &str) -> Outcome {
    let res = results(console);
    let checks: [(&str, Vec<String>); 11] = [
        ("boot_pmem_ext4_dax_and_fuse", boot(console, kver)),
        ("probe_table", probe_table(console)),
        ("dax_pte_faults_exact", dax_pte_faults(console, &res)),
        ("dax_pmd_faults_exact", dax_pmd_faults(&res)),
        (
            "kfuncs_fentry_exact",
            kfuncs(console, &res, "kfuncs-fentry", "Fentry"),
        ),
        (
            "kfuncs_kprobe_exact",
            kfuncs(console, &res, "kfuncs-kprobe", "Kprobe"),
        ),
        (
            "fuse_pointer_pairing_exact",
            fuse_pointer_pairing(console, &res),
        ),
        (
            "fuse_unique_quirk_detected",
            fuse_unique_quirk(console, &res),
        ),
        ("daemon_metrics_exact", daemon_metrics(console)),
        // Our own famfs FUSE server in the guest (`xtask vm-guest famfs`), with its probes, on 6.12,
        // whose fuse_request_send reports unique 0: the probes pair sends and ends by request address
        // (kernel BTF), so every OPEN's kernel latency reaches the join and is attributed to its file.
        (
            "famfs_server_join_exact",
            eval_famfs::famfs_checks(console, &res),
        ),
        (
            "famfs_server_sigterm_unmounts",
            eval_famfs::famfs_stop_checks(&res),
        ),
    ];
    let mut out = Outcome::default();
    for (name, problems) in checks {
        if problems.is_empty() {
            println!("test vm::{name} ... ok");
            out.passed += 1;
        } else {
            println!("test vm::{name} ... FAILED");
            for p in problems {
                println!("    {p}");
            }
            out.failed += 1;
        }
    }
    out
}

/// The guest booted `kver`, loaded its modules, mounted pmem with `-o dax` and the squashfuse mount.
fn boot(console: &str, kver: &str) -> Vec<String> {
    let mut boot = Vec::new();
    if !console.contains(&format!("VM kernel {kver}")) {
        boot.push(format!("the guest did not report kernel {kver}"));
    }
    for bad in ["VM module-failed", "VM dax-failed", "VM fuse-failed"] {
        if let Some(l) = console.lines().find(|l| l.starts_with(bad)) {
            boot.push(l.to_string());
        }
    }
    if !console
        .lines()
        .any(|l| l.starts_with("VM dax-mounted") && l.contains("dax"))
    {
        boot.push("/dev/pmem0 not mounted with -o dax".into());
    }
    boot
}

/// Probe table on 6.12: every tracepoint attached, the request probes as BTF tracepoints (pointer
/// pairing), fentry for the kernel functions that exist, famfs functions absent with the reason.
fn probe_table(console: &str) -> Vec<String> {
    let mut table = Vec::new();
    for (prog, kind) in [
        ("fuse_request_send", "tp_btf"),
        ("fuse_request_end", "tp_btf"),
        ("dax_pte_fault", "tracepoint"),
        ("dax_pte_fault_done", "tracepoint"),
        ("dax_pmd_fault", "tracepoint"),
        ("dax_pmd_fault_done", "tracepoint"),
        ("mm_filemap_fault", "tracepoint"),
        ("fuse_open", "fentry"),
        ("dax_iomap_fault", "fentry"),
    ] {
        match probe_row(console, prog) {
            Some((k, s)) if k == kind && s == "attached" => {}
            other => table.push(format!("{prog}: {other:?}, expected {kind} attached")),
        }
    }
    for f in [
        "fuse_get_fmap",
        "famfs_filemap_fault",
        "famfs_filemap_huge_fault",
        "famfs_fuse_iomap_begin",
    ] {
        let want = format!("unavailable: function {f} is not in this kernel (/proc/kallsyms)");
        match probe_row(console, f) {
            Some((_, s)) if s == want => {}
            other => table.push(format!("{f}: {other:?}, expected `{want}`")),
        }
    }
    table
}

/// DAX faults on ext4 -o dax. A 1 MiB mapping at a 2 MiB-aligned address: the first fault finds no
/// page table for the 2 MiB region, so the kernel first tries a huge page, which falls back (the VMA
/// is smaller than 2 MiB) -- twice, once under the per-VMA lock and once more under mmap_lock after
/// the PTE path asked for the retry -- then 256 PTE faults, one per page. Read-then-write doubles the
/// PTE faults (the read maps read-only, the write faults again to make it writable): 512, which is the
/// "512 dax_pte_fault events" of environment.md. The kernel's thp_fault_fallback counter agrees with
/// the probes.
fn dax_pte_faults(console: &str, res: &Results) -> Vec<String> {
    let mut dax = exited_ok(console, "dax");
    dax.extend(exact(
        res,
        "dax",
        "pte-write",
        &fault_want(&[
            ("by_process", "258"),
            ("by_process_comm", "famfs-trace"),
            ("pte_ok_w", "256"),
            ("pmd_fallback_w", "2"),
            ("lat_count", "258"),
            ("vmstat_thp_fault_fallback", "2"),
        ]),
    ));
    dax.extend(exact(
        res,
        "dax",
        "pte-readwrite",
        &fault_want(&[
            ("by_process", "514"),
            ("by_process_comm", "famfs-trace"),
            ("pte_ok_r", "256"),
            ("pte_ok_w", "256"),
            ("pmd_fallback_r", "2"),
            ("lat_count", "514"),
            ("vmstat_thp_fault_fallback", "2"),
        ]),
    ));
    dax
}

/// An 8 MiB 2 MiB-aligned mapping takes 4 PMD faults (8 read-then-write); the per-program run counts
/// and the probes' health counters over the whole dax check.
fn dax_pmd_faults(res: &Results) -> Vec<String> {
    let mut pmd = Vec::new();
    pmd.extend(exact(
        res,
        "dax",
        "pmd-write",
        &fault_want(&[
            ("by_process", "4"),
            ("by_process_comm", "famfs-trace"),
            ("pmd_ok_w", "4"),
            ("lat_count", "4"),
            ("vmstat_thp_fault_fallback", "0"),
        ]),
    ));
    pmd.extend(exact(
        res,
        "dax",
        "pmd-readwrite",
        &fault_want(&[
            ("by_process", "8"),
            ("by_process_comm", "famfs-trace"),
            ("pmd_ok_r", "4"),
            ("pmd_ok_w", "4"),
            ("lat_count", "8"),
            ("vmstat_thp_fault_fallback", "0"),
        ]),
    ));
    // Per-program run counts: (256 + 512) PTE and (2 + 2 + 4 + 8) PMD events; nothing unmatched.
    pmd.extend(exact(
        res,
        "dax",
        "runs",
        &[
            ("dax_pte_fault", "768"),
            ("dax_pte_fault_done", "768"),
            ("dax_pmd_fault", "16"),
            ("dax_pmd_fault_done", "16"),
        ],
    ));
    pmd.extend(exact(
        res,
        "dax",
        "health",
        &[
            ("unmatched_fault", "0"),
            ("fault_start_full", "0"),
            ("ringbuf_drop", "0"),
        ],
    ));
    pmd
}

/// Kernel-function probes of check `check`, attached as `kind` (fentry/fexit, or kprobe/kretprobe): the
/// 1 MiB write workload calls dax_iomap_fault 258 times (256 PTE + 2 PMD attempts), and each of the 5
/// files on the squashfuse mount is opened once: 5 fuse_open calls.
fn kfuncs(console: &str, res: &Results, check: &str, kind: &str) -> Vec<String> {
    let n = FUSE_FILES.to_string();
    let mut v = exited_ok(console, check);
    for f in ["dax_iomap_fault", "fuse_open"] {
        let want = format!("RESULT {check} probe function={f} kind={kind} state=attached");
        if !console.lines().any(|l| l == want) {
            v.push(format!("{check}: no `{want}` line"));
        }
    }
    v.extend(exact(
        res,
        check,
        "dax_iomap_fault",
        &[
            ("calls", "258"),
            ("returns", "258"),
            ("lat_count", "258"),
            ("tracepoint_faults", "258"),
        ],
    ));
    v.extend(exact(
        res,
        check,
        "fuse_open",
        &[
            ("calls", &n),
            ("returns", &n),
            ("lat_count", &n),
            ("opens", &n),
        ],
    ));
    v
}

/// 6.12's fuse_request_send reports unique 0 for every request: check `check` must have counted every
/// send in `send_unique_zero`.
fn unique_zero_quirk(res: &Results, check: &str) -> Vec<String> {
    match res.get(&(check.to_string(), "requests".to_string())) {
        Some(f) if f.get("sends").is_some() && f.get("sends") == f.get("send_unique_zero") => {
            if f.get("sends").map(String::as_str) == Some("0") {
                vec![format!("{check}: no sends seen")]
            } else {
                Vec::new()
            }
        }
        other => vec![format!(
            "{check}: the unique-0 send quirk of 6.12 was not detected on every send: {other:?}"
        )],
    }
}

/// FUSE request probes on 6.12, whose fuse_request_send reports unique 0 for every request. Auto
/// pairing picks the request address: all 5 OPENs complete (32-byte replies), the missing name fails
/// one LOOKUP, 5 OPEN events carry 5 distinct real uniques; the quirk is detected (every send counted
/// in send_unique_zero).
fn fuse_pointer_pairing(console: &str, res: &Results) -> Vec<String> {
    let n = FUSE_FILES.to_string();
    let mut fuse = exited_ok(console, "fuse-auto");
    fuse.extend(exact(
        res,
        "fuse-auto",
        "requests",
        &[
            ("pairing", "pointer"),
            ("files", &n),
            ("open_sent", &n),
            ("open_completed", &n),
            ("open_errors", "0"),
            ("open_reply_bytes", &(32 * FUSE_FILES).to_string()),
            ("open_lat_count", &n),
            ("lookup_errors", "1"),
            ("open_events", &n),
            ("open_event_uniques", &n),
            ("open_events_own_pid", &n),
            ("unmatched_end_events", "0"),
        ],
    ));
    fuse.extend(unique_zero_quirk(res, "fuse-auto"));
    fuse
}

/// Forced unique pairing shows the quirk: 5 OPENs sent, none completed.
fn fuse_unique_quirk(console: &str, res: &Results) -> Vec<String> {
    let n = FUSE_FILES.to_string();
    let mut uniq = exited_ok(console, "fuse-unique");
    uniq.extend(exact(
        res,
        "fuse-unique",
        "requests",
        &[
            ("pairing", "unique"),
            ("open_sent", &n),
            ("open_completed", "0"),
            ("open_events", "0"),
        ],
    ));
    uniq.extend(unique_zero_quirk(res, "fuse-unique"));
    uniq
}

/// A sample's family, labels (a subset of its labels) and expected value.
type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// The daemon, running through all of the above and watching the DAX device and the FUSE connection:
/// PTE ok = 256 + 512 (dax) + 256 + 256 (kfuncs twice); PMD ok = 4 + 8; PMD fallback = 2 + 2 + 2 + 2;
/// OPEN = 5 per check in kfuncs (×2) and fuse (×2), all completed by pointer pairing; 2 failed LOOKUPs.
fn daemon_metrics(console: &str) -> Vec<String> {
    let mut d = exited_ok(console, "daemon");
    let n4 = (4 * FUSE_FILES) as f64;
    let duration_count = format!("{}_count", FUSE_REQUEST_DURATION.name);
    let want: [Expected<'_>; 10] = [
        (
            DAX_FAULTS.name,
            &[("size", "pte"), ("result", "ok")],
            1280.0,
        ),
        (DAX_FAULTS.name, &[("size", "pmd"), ("result", "ok")], 12.0),
        (
            DAX_FAULTS.name,
            &[("size", "pmd"), ("result", "fallback")],
            8.0,
        ),
        (
            DAX_FAULTS.name,
            &[("size", "pte"), ("result", "error")],
            0.0,
        ),
        (FUSE_REQUESTS.name, &[("opcode", "OPEN")], n4),
        (&duration_count, &[("opcode", "OPEN")], n4),
        (FUSE_REQUEST_ERRORS.name, &[("opcode", "LOOKUP")], 2.0),
        (
            PROBE_ATTACHED.name,
            &[("probe", "fuse_open"), ("kind", "fentry")],
            1.0,
        ),
        (
            PROBE_ATTACHED.name,
            &[("probe", "fuse_request_send"), ("kind", "tp_btf")],
            1.0,
        ),
        (PROBE_RUNS.name, &[("probe", "dax_pte_fault_done")], 1280.0),
    ];
    for (name, labels, want) in want {
        match metric(console, name, labels) {
            Some(v) if v == want => {}
            got => d.push(format!("{name}{labels:?} = {got:?}, expected {want}")),
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_metrics_parse() {
        let dax = DAX_FAULTS.name;
        let console = format!(
            "junk\nRESULT dax pte-write pte_ok_w=256 lat_count=258\n\
             METRIC {dax}{{size=\"pte\",result=\"ok\"}} 1280\n\
             VMTEST EXIT dax 0\n"
        );
        let console = console.as_str();
        let r = results(console);
        assert!(exact(&r, "dax", "pte-write", &[("pte_ok_w", "256")]).is_empty());
        let want = fault_want(&[("pte_ok_w", "256"), ("lat_count", "258")]);
        assert_eq!(want.len(), 13);
        assert!(want.contains(&("pmd_ok_r".to_string(), "0".to_string())));
        assert!(want.contains(&("lat_count".to_string(), "258".to_string())));
        assert_eq!(
            exact(&r, "dax", "pte-write", &[("lat_count", "257")]),
            vec!["dax pte-write: lat_count=258, expected 257"]
        );
        assert_eq!(
            exact::<&str, &str>(&r, "dax", "pmd-write", &[]),
            vec!["no `RESULT dax pmd-write` line"]
        );
        assert_eq!(
            metric(console, dax, &[("result", "ok"), ("size", "pte")]),
            Some(1280.0)
        );
        assert_eq!(metric(console, dax, &[("size", "pmd")]), None);
        assert!(exited_ok(console, "dax").is_empty());
        assert_eq!(exited_ok(console, "fuse"), vec!["fuse never finished"]);
    }
}
