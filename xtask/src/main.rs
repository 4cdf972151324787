//! Project tasks: `cargo xtask setup | test | bench | demo | vm-test`.
//!
//! `setup` installs, idempotently and quietly, everything a fresh Debian machine lacks (rust-src, a pinned
//! bpf-linker, the Debian packages the tests use). `test` runs setup, then every check CI runs. `demo`
//! runs setup, builds, and starts the daemon's demo. `bench` runs every benchmark and prints one
//! table (`bench.rs`). `vm-test` (also run by `test`) is the qemu lane in
//! `vm/`. Owns no product logic; must not be imported by (or import) the product crates, except the
//! shared names of `famfs-common`.

use std::{
    path::PathBuf,
    process::{Command, ExitCode, Stdio},
};

use anyhow::{Context, Result, bail};

mod bench;
mod vm;

const TOOLCHAIN: &str = "1.95.0";
/// The eBPF crate's target: it is built only for it (by famfs-daemon's build.rs), so it is linted there.
const BPF_TARGET: &str = "bpfel-unknown-none";
/// Lints beyond `-D warnings` that the eBPF crate is held to (clippy.toml allows them in tests).
const STRICT_LINTS: &[&str] = &[
    "-W",
    "clippy::unwrap_used",
    "-W",
    "clippy::expect_used",
    "-W",
    "clippy::panic",
    "-W",
    "clippy::too_many_lines",
];
const BPF_LINKER_VERSION: &str = "0.10.0";
/// Debian packages used by tests, the demo and the VM lane.
const APT_PACKAGES: &[&str] = &[
    "fuse3",
    "squashfuse",
    "squashfs-tools",
    "prometheus",
    "tmux",
    // tests/privilege.rs: `systemd-analyze verify`/`security` of the shipped unit, and strace of the
    // daemon run with the unit's restrictions (setpriv is util-linux, always present).
    "systemd",
    "strace",
    // The VM lane: qemu on the host, mke2fs copied into the guest. (The guest's kernel, busybox and
    // kmod are `apt-get download`ed into target/vm-cache and unpacked, never installed.)
    "qemu-system-x86",
    "e2fsprogs",
    // benches/probe_cost.rs: the bpftrace baseline (a per-opcode latency histogram on the FUSE request
    // tracepoints); bpftool to inspect per-program BPF statistics and translated code by hand.
    "bpftrace",
    "bpftool",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("setup") => setup(),
        Some("test") => setup().and_then(|()| test(&args[1..])),
        Some("demo") => setup().and_then(|()| demo(&args[1..])),
        Some("bench") => setup().and_then(|()| bench::run(&args[1..])),
        Some("vm-test") => setup().and_then(|()| match vm::run()? {
            o if o.failed > 0 => bail!("vm-test: {} check(s) failed", o.failed),
            _ => Ok(()),
        }),
        // The guest half of the VM lane: run inside the qemu guest by its /init, never on the host.
        Some("vm-guest") => vm::guest(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <setup | test | bench [CARGO-BENCH-ARGS...] | demo [ARGS...] | vm-test>"
            );
            return ExitCode::from(2);
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The target directory cargo builds into: `CARGO_TARGET_DIR` when set (e.g. one shared by several
/// checkouts), else the workspace's `target/`. Built binaries and the VM lane's cache are found there.
fn target_dir() -> Result<PathBuf> {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => std::path::absolute(&d)
            .with_context(|| format!("CARGO_TARGET_DIR {}", PathBuf::from(&d).display())),
        None => Ok(root().join("target")),
    }
}

fn quiet(cmd: &mut Command) -> Result<bool> {
    Ok(cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success())
}

/// Run `cmd`, keeping its output in a log that is printed only on failure.
fn logged(what: &str, cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("{what}: cannot start {cmd:?}"))?;
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        bail!("{what} failed ({})", out.status);
    }
    Ok(())
}

fn setup() -> Result<()> {
    // rust-src for -Z build-std=core.
    let installed = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", TOOLCHAIN])
        .output()
        .context("rustup is required")?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        eprintln!("setup: adding rust-src to {TOOLCHAIN}");
        logged(
            "rustup component add rust-src",
            Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", TOOLCHAIN]),
        )?;
    }
    // bpf-linker, pinned: it must use the same LLVM as rustc.
    let have = Command::new("bpf-linker").arg("--version").output();
    let ok = have.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION));
    if !ok {
        eprintln!("setup: installing bpf-linker {BPF_LINKER_VERSION} (a few minutes)");
        logged(
            "cargo install bpf-linker",
            Command::new("cargo").args([
                &format!("+{TOOLCHAIN}"),
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
                "--quiet",
            ]),
        )?;
    }
    // Debian packages (plus Node.js and npm when the machine has no npm of its own: the machine image
    // ships Node.js 20 with npm 11, whose package conflicts with Debian's `npm`). Dashboard JSON is
    // type-checked against Grafana's published schema (@grafana/schema + tsc, npm ci'd into
    // target/grafana-schema by tests/rules.rs).
    let has_npm = quiet(Command::new("npm").arg("--version")).unwrap_or(false);
    let node_packages: &[&str] = if has_npm { &[] } else { &["nodejs", "npm"] };
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .chain(node_packages)
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if !missing.is_empty() {
        eprintln!("setup: installing Debian packages: {}", missing.join(" "));
        logged(
            "apt-get update",
            Command::new("apt-get").args(["update", "-qq"]),
        )?;
        logged(
            "apt-get install",
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&missing),
        )?;
    }
    // The Debian prometheus package starts a service on :9090; tests start their own instance.
    if missing.contains(&"prometheus") {
        let _ = quiet(Command::new("systemctl").args(["disable", "--now", "prometheus"]));
    }
    Ok(())
}

fn cargo(args: &[&str]) -> Result<()> {
    let st = Command::new("cargo")
        .args(args)
        .current_dir(root())
        .status()?;
    if !st.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

/// Clippy on `famfs-ebpf`, which the workspace run skips (not a default member; a host build of it is
/// meaningless): for the BPF target with `core` built from rust-src on the pinned stable toolchain
/// (`RUSTC_BOOTSTRAP=1`, as famfs-daemon's build.rs builds it), with the strict lints.
fn clippy_ebpf() -> Result<()> {
    let mut args = vec![
        "clippy",
        "--quiet",
        "-p",
        "famfs-ebpf",
        "--target",
        BPF_TARGET,
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ];
    args.extend(STRICT_LINTS);
    let st = Command::new("cargo")
        .env("RUSTC_BOOTSTRAP", "1")
        .args(&args)
        .current_dir(root())
        .status()
        .context("starting cargo clippy for famfs-ebpf")?;
    if !st.success() {
        bail!("RUSTC_BOOTSTRAP=1 cargo {} failed", args.join(" "));
    }
    Ok(())
}

/// Totals of `test result:` lines.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Tally {
    /// Count one `test result: ok. 3 passed; 0 failed; 1 ignored; ...` line.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut w = part.split_whitespace().rev();
            let (Some(kind), Some(n)) = (w.next(), w.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match kind {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// Run `cargo test`, echoing its output, and add its result lines to `tally`. Returns its success.
fn cargo_test(args: &[&str], tally: &mut Tally) -> Result<bool> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new("cargo")
        .args(args)
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().context("cargo test stdout")?;
    for line in BufReader::new(out).lines() {
        let line = line?;
        println!("{line}");
        tally.add_line(&line);
    }
    Ok(child.wait()?.success())
}

fn test(extra: &[String]) -> Result<()> {
    eprintln!("== cargo fmt --check");
    cargo(&["fmt", "--all", "--", "--check"])?;
    eprintln!("== cargo clippy --all-targets -- -D warnings");
    cargo(&["clippy", "--quiet", "--all-targets", "--", "-D", "warnings"])?;
    eprintln!("== cargo clippy -p famfs-ebpf --target {BPF_TARGET} (strict lints)");
    clippy_ebpf()?;
    eprintln!(
        "== cargo test --benches --no-run (benchmarks compile; `cargo xtask bench` runs them)"
    );
    cargo(&[
        "test",
        "--quiet",
        "-p",
        "famfs-daemon",
        "--benches",
        "--no-run",
    ])?;
    eprintln!("== cargo test");
    let mut args = vec![
        "test",
        "--workspace",
        "--exclude",
        "famfs-ebpf",
        "--no-fail-fast",
    ];
    args.extend(extra.iter().map(String::as_str));
    let mut tally = Tally::default();
    let ok = cargo_test(&args, &mut tally)?;
    eprintln!("== cargo xtask vm-test");
    match vm::run() {
        Ok(o) => {
            tally.passed += o.passed;
            tally.failed += o.failed;
            tally.ignored += o.skipped;
        }
        Err(e) => {
            println!("test vm::lane ... FAILED\n    {e:#}");
            tally.failed += 1;
        }
    }
    println!(
        "tests: {} passed, {} failed, {} skipped",
        tally.passed, tally.failed, tally.ignored
    );
    if !ok || tally.failed > 0 {
        bail!("{} test(s) failed", tally.failed.max(1));
    }
    if tally.passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

fn demo(extra: &[String]) -> Result<()> {
    cargo(&["build", "--quiet", "--release", "-p", "famfs-daemon"])?;
    let bin = target_dir()?.join("release/famfs-daemon");
    let st = Command::new(bin).arg("demo").args(extra).status()?;
    if !st.success() {
        bail!("famfs-daemon demo failed ({st})");
    }
    Ok(())
}
