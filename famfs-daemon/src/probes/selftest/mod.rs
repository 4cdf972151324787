//! The probes' self-test against real kernel activity (`famfs-trace selftest ...`), printed as
//! `RESULT <check> <workload> key=value ...` and `CHECK <check> PASS|FAIL: why` lines. The VM lane
//! (`cargo xtask vm-test`) runs them in a guest whose kernel has what this host lacks (DAX, kprobes,
//! fentry) and asserts the exact counts on the host; each check also asserts the kernel-independent
//! relations itself (one fault per page, PMD fallbacks = the kernel's own `thp_fault_fallback` count,
//! function calls = tracepoint faults, one `fuse_open` per open(2)). They run anywhere the kernel offers
//! the same.
//!
//! Owns the workloads, the verdicts and the exact text of the RESULT/CHECK lines (the VM lane parses
//! them: keep them byte for byte). One check per module: `dax`, `kfuncs`, `fuse`. Loading and reading
//! the probes is the rest of `probes`; argument parsing is `cli::selftest_cmd`.

mod dax;
mod fuse;
mod kfuncs;

use std::{
    fs::File,
    io::{self, Read, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use famfs_common::counters;

pub use dax::check_dax;
pub use fuse::check_fuse;
pub use kfuncs::check_kfuncs;

use super::ProbeSnapshot;

/// The outcome of one check, after its `CHECK` line was printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
}

/// Print the `CHECK` line of `check`: PASS without problems, else FAIL with every problem.
fn verdict(out: &mut dyn Write, check: &str, problems: &[String]) -> io::Result<Verdict> {
    if problems.is_empty() {
        writeln!(out, "CHECK {check} PASS")?;
        Ok(Verdict::Pass)
    } else {
        writeln!(out, "CHECK {check} FAIL: {}", problems.join("; "))?;
        Ok(Verdict::Fail)
    }
}

/// Health counters and per-program run counts, one RESULT line each, for diagnosis.
fn print_health(out: &mut dyn Write, check: &str, snap: &ProbeSnapshot) -> io::Result<()> {
    let mut line = format!("RESULT {check} health");
    for (name, value) in counters::NAMES.iter().zip(snap.counters) {
        line.push_str(&format!(" {name}={value}"));
    }
    writeln!(out, "{line}")?;
    let mut line = format!("RESULT {check} runs");
    for p in &snap.programs {
        line.push_str(&format!(" {}={}", p.program, p.run_count));
    }
    writeln!(out, "{line}")?;
    let mut line = format!("RESULT {check} misses");
    for p in &snap.programs {
        line.push_str(&format!(" {}={}", p.program, p.recursion_misses));
    }
    writeln!(out, "{line}")
}

/// The regular files directly under `dir`, sorted.
fn regular_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        if e.file_type()?.is_file() {
            v.push(e.path());
        }
    }
    v.sort();
    if v.is_empty() {
        bail!("{} holds no regular file to open", dir.display());
    }
    Ok(v)
}

/// Open and read every file once. Returns the bytes read.
fn open_and_read(files: &[PathBuf]) -> Result<usize> {
    let mut total = 0;
    let mut buf = Vec::new();
    for p in files {
        buf.clear();
        total += File::open(p)
            .with_context(|| format!("opening {}", p.display()))?
            .read_to_end(&mut buf)
            .with_context(|| format!("reading {}", p.display()))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::ProgramCost;

    fn text(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
        let mut buf = Vec::new();
        f(&mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn check_lines() {
        let mut v = None;
        let pass = text(|o| {
            v = Some(verdict(o, "dax", &[])?);
            Ok(())
        });
        assert_eq!(
            (pass.as_str(), v),
            ("CHECK dax PASS\n", Some(Verdict::Pass))
        );
        let fail = text(|o| {
            v = Some(verdict(o, "fuse-auto", &["a".into(), "b c".into()])?);
            Ok(())
        });
        assert_eq!(
            (fail.as_str(), v),
            ("CHECK fuse-auto FAIL: a; b c\n", Some(Verdict::Fail))
        );
    }

    #[test]
    fn health_lines() {
        let mut snap = ProbeSnapshot::default();
        snap.counters[0] = 7;
        snap.programs.push(ProgramCost {
            program: "fentry_fuse_open".into(),
            run_count: 5,
            run_time_ns: 100,
            recursion_misses: 1,
        });
        let got = text(|o| print_health(o, "kfuncs-fentry", &snap));
        let mut health = "RESULT kfuncs-fentry health".to_string();
        for (i, name) in counters::NAMES.iter().enumerate() {
            health.push_str(&format!(" {name}={}", if i == 0 { 7 } else { 0 }));
        }
        assert_eq!(
            got,
            format!(
                "{health}\nRESULT kfuncs-fentry runs fentry_fuse_open=5\n\
                 RESULT kfuncs-fentry misses fentry_fuse_open=1\n"
            )
        );
    }

    #[test]
    fn regular_files_are_sorted_and_required() {
        let dir = tempfile::tempdir().unwrap();
        assert!(regular_files(dir.path()).is_err());
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("b"), b"12").unwrap();
        std::fs::write(dir.path().join("a"), b"345").unwrap();
        let files = regular_files(dir.path()).unwrap();
        assert_eq!(files, [dir.path().join("a"), dir.path().join("b")]);
        assert_eq!(open_and_read(&files).unwrap(), 5);
    }
}
