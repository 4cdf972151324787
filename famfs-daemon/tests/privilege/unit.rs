//! `deploy/famfs-daemon.service`: systemd's own checks, and the daemon run the way the unit runs it
//! (its capability bounding set, no ambient or inheritable capabilities, NoNewPrivileges) under
//! `strace -f`, so the unit's SystemCallFilter= is checked against every call the daemon makes.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    process::Command,
};

use famfs_daemon::{daemon::privilege::seccomp, http::api::ProbeRow};

use super::{daemon, have};
use crate::support::{DAEMON, can_mount};

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/famfs-daemon.service")
}

fn unit_text() -> String {
    std::fs::read_to_string(unit_path()).unwrap()
}

/// The values of `Key=` lines (comments skipped), in order.
fn directives(unit: &str, key: &str) -> Vec<String> {
    let k = format!("{key}=");
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(k.as_str()).map(str::to_string))
        .collect()
}

fn need(tool: &str) {
    assert!(
        have(tool),
        "{tool} is missing: `cargo xtask setup` installs it (xtask APT_PACKAGES)"
    );
}

#[test]
fn unit_passes_systemd_analyze_and_needs_no_mount_namespace() {
    need("systemd-analyze");
    let unit = unit_text();
    let exec = directives(&unit, "ExecStart");
    assert_eq!(exec.len(), 1);
    assert!(
        exec[0].starts_with("/usr/local/bin/famfs-daemon run "),
        "{}",
        exec[0]
    );
    // A FUSE server's mount must be visible to the host: nothing that gives the service its own
    // mount namespace (systemd turns propagation to the host off there).
    for key in [
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "PrivateMounts",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectProc",
        "ProcSubset",
        "ReadOnlyPaths",
        "ReadWritePaths",
        "InaccessiblePaths",
        "TemporaryFileSystem",
        "BindPaths",
        "BindReadOnlyPaths",
        "PrivateIPC",
        "PrivateNetwork",
        "PrivateUsers",
        "MountFlags",
        "RootDirectory",
    ] {
        assert!(directives(&unit, key).is_empty(), "{key}= is set");
    }
    for (key, want) in [
        ("NoNewPrivileges", "yes"),
        (
            "CapabilityBoundingSet",
            "CAP_SYS_ADMIN CAP_BPF CAP_PERFMON CAP_SETPCAP",
        ),
        ("SystemCallArchitectures", "native"),
        ("DeviceAllow", "/dev/fuse rw"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ] {
        assert!(
            directives(&unit, key).iter().any(|v| v == want),
            "{key}={want} missing"
        );
    }

    // verify wants the ExecStart binary to exist: point it at the one just built.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("famfs-daemon.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/famfs-daemon", DAEMON)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "systemd-analyze verify:\n{err}"
    );

    let sec = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&copy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&sec.stdout);
    match text.lines().find(|l| l.contains("Overall exposure level")) {
        Some(line) => {
            println!("systemd-analyze security --offline=yes: {}", line.trim());
            let score: f64 = line
                .rsplit(':')
                .next()
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap();
            assert!(score <= 4.5, "exposure {score} (was 4.3): {line}");
        }
        None => println!(
            "SKIP: systemd-analyze security --offline=yes is not supported here: {}",
            String::from_utf8_lossy(&sec.stderr).trim()
        ),
    }
}

/// Every system call the members of `groups` (e.g. `@system-service`, `bpf`) name, as
/// `systemd-analyze syscall-filter` lists them.
fn expand(groups: &[&str], cache: &mut HashMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for g in groups {
        if !g.starts_with('@') {
            all.insert((*g).to_string());
            continue;
        }
        if let Some(s) = cache.get(*g) {
            all.extend(s.iter().cloned());
            continue;
        }
        let out = Command::new("systemd-analyze")
            .args(["syscall-filter", "--no-pager", g])
            .output()
            .unwrap();
        assert!(out.status.success(), "systemd-analyze syscall-filter {g}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // "@group" then its members indented: "# comment", "@subgroup" or a call name.
        let members: Vec<String> = text
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with(' ') || l.is_empty())
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        let refs: Vec<&str> = members.iter().map(String::as_str).collect();
        let s = expand(&refs, cache);
        cache.insert((*g).to_string(), s.clone());
        all.extend(s);
    }
    all
}

/// The call name of one `strace -f` line (`PID name(...`, `PID <... name resumed>...`).
fn call_name(line: &str) -> Option<&str> {
    let rest = line.split_once(' ')?.1.trim_start();
    let name = match rest.strip_prefix("<... ") {
        Some(r) => r.split_once(' ')?.0,
        None => rest.split_once('(')?.0,
    };
    name.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        .then_some(name)
        .filter(|n| !n.is_empty())
}

#[test]
fn units_capabilities_and_system_call_filter_cover_what_the_daemon_does() {
    let test = "units_capabilities_and_system_call_filter_cover_what_the_daemon_does";
    if !can_mount(test) {
        return;
    }
    for tool in ["systemd-analyze", "strace", "setpriv"] {
        need(tool);
    }
    let unit = unit_text();
    let caps = directives(&unit, "CapabilityBoundingSet");
    let bounding: Vec<String> = caps[0]
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let bounding = format!("-all,{}", bounding.join(","));
    assert_eq!(directives(&unit, "NoNewPrivileges"), ["yes"]);
    assert_eq!(directives(&unit, "AmbientCapabilities"), [""]);

    let tmp = tempfile::tempdir().unwrap();
    let (img, mnt) = daemon::image(tmp.path());
    let log = tmp.path().join("strace.log");
    let wrapper = [
        "strace",
        "-f",
        "-qq",
        "-o",
        log.to_str().unwrap(),
        "setpriv",
        "--bounding-set",
        &bounding,
        "--inh-caps",
        "-all",
        "--ambient-caps",
        "-all",
        "--no-new-privs",
        "--",
    ];
    let mut d = daemon::start(tmp.path(), &wrapper, &img, &mnt, &[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid)).unwrap();
    assert_eq!(super::field(&status, "CapEff"), "0000000000000000");
    daemon::exercise(&d, tmp.path(), &img, &mnt);
    let served: Vec<ProbeRow> = d.client().get_json("/api/v1/probes").unwrap();
    let s = d.stop();
    assert!(s.ok && !s.left_mounted, "{s:?}");

    // The same probes attach as for unrestricted root.
    let out = Command::new(env!("CARGO_BIN_EXE_famfs-trace"))
        .args(["probes", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let root: Vec<ProbeRow> = serde_json::from_slice(&out.stdout).unwrap();
    let attached = |rows: &[ProbeRow]| -> BTreeSet<String> {
        rows.iter()
            .filter(|r| r.attached())
            .map(|r| r.program.clone())
            .collect()
    };
    assert!(attached(&served).contains("fuse_request_send"));
    assert_eq!(attached(&served), attached(&root));

    // From the daemon's execve on: every call is in the unit's filter, and none made after the
    // daemon's own filter was installed was refused.
    let trace = std::fs::read_to_string(&log).unwrap();
    let exec = format!("execve(\"{}\"", DAEMON);
    let start = trace
        .lines()
        .position(|l| l.contains(&exec) && l.ends_with("= 0"))
        .expect("no execve of the daemon in the trace");
    let lines: Vec<&str> = trace.lines().skip(start + 1).collect();
    let used: BTreeSet<&str> = lines.iter().filter_map(|l| call_name(l)).collect();
    let filter = directives(&unit, "SystemCallFilter");
    assert_eq!(filter.len(), 1, "{filter:?}");
    let groups: Vec<&str> = filter[0].split_whitespace().collect();
    let allowed = expand(&groups, &mut HashMap::new());
    let outside: Vec<&&str> = used.iter().filter(|c| !allowed.contains(**c)).collect();
    assert!(
        outside.is_empty(),
        "calls outside SystemCallFilter=: {outside:?}"
    );
    let own: Vec<&str> = seccomp::allowed_names()
        .into_iter()
        .filter(|c| !allowed.contains(*c))
        .collect();
    assert!(
        own.is_empty(),
        "the daemon's allow-list has calls the unit refuses: {own:?}"
    );
    let locked = lines
        .iter()
        .position(|l| l.contains("seccomp(SECCOMP_SET_MODE_FILTER"))
        .expect("the daemon installed no seccomp filter");
    let refused: Vec<&&str> = lines[locked..]
        .iter()
        .filter(|l| l.contains("= -1 EPERM"))
        .collect();
    assert!(refused.is_empty(), "refused once sandboxed: {refused:#?}");
    println!(
        "{} system calls used by the daemon under the unit's restrictions, all allowed",
        used.len()
    );
}
