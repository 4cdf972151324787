//! `cargo xtask vm-test`: the VM lane. Proves in a qemu guest what the host kernel cannot show: DAX faults
//! on real pmem, fentry and kprobe programs, and a stock 6.12 kernel's FUSE tracepoints (with its
//! unique-0 send quirk) against a real FUSE mount.
//!
//! Host side: picks the newest `linux-image-6.12.*+deb12-amd64` package, fetches it, `busybox-static` and
//! `kmod` with `apt-get download` into `target/vm-cache` and unpacks them with `dpkg -x` (nothing is
//! installed on the host); runs the package's own `depmod` from the unpacked kmod; writes an initramfs
//! (newc cpio, built here) with busybox, the pmem/ext4 modules, `mke2fs`, `squashfuse` and a squashfs
//! image, and this workspace's `famfs-trace` / `famfs-daemon` with the shared libraries `ldd` lists; boots
//! it under `timeout` with `qemu -accel tcg -cpu max -smp 2`, `memmap=512M!1G` (pmem), `-no-reboot` and
//! `panic=-1`; reads `RESULT`/`CHECK`/`METRIC`/`FMETRIC` lines from the serial console and asserts exact
//! counts.
//!
//! Guest side: the shell `/init` below, and [`guest`] (`xtask vm-guest famfs`, this binary copied into
//! the initramfs), which serves a famfs image with `famfs-daemon run` in the guest, runs a workload of
//! known counts on the mount, and prints the daemon's per-file and join metrics for the host to assert.
//!
//! Owns only the lane; must not touch the host's packages, mounts or modules.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// Guest wall-clock budget; the whole lane must stay under 3 minutes.
const GUEST_TIMEOUT: Duration = Duration::from_secs(150);
/// Files in the guest's squashfs image: each is opened exactly once per FUSE check.
const FUSE_FILES: u64 = 5;
/// Modules the guest loads (with their dependencies from modules.dep): legacy e820 pmem → /dev/pmem0,
/// ext4, and crc32c (an ext4 soft dependency that modules.dep does not list).
const MODULES: &[&str] = &["nd_e820", "nd_pmem", "crc32c_generic", "ext4"];

/// The famfs server check: files `image cp`ed into a famfs image in the guest, as (path in the image,
/// size, times opened and fully read with read(2)). Sizes are distinct and no multiple of the 4 KiB
/// page (so every file ends in a short READ), open counts are distinct (so a request joined to the
/// wrong file shows in its counts).
const FAMFS_READ_FILES: [(&str, u64, u64); 4] = [
    ("data/a", 1_000, 2),
    ("data/b", 12_345, 3),
    ("data/sub/c", 131_073, 4),
    ("d", 1_048_577, 5),
];
/// The file the famfs check reads through a shared mapping: opened once (an open count no read file
/// has), `MADV_RANDOM`, every page touched once in order.
const FAMFS_MMAP_FILE: (&str, u64) = ("data/mapped", 300_003);
const PAGE: u64 = 4096;

/// Byte `j` of famfs check file number `k` (the read files in order, then the mapped file): the page
/// number and the file number are mixed in, so a page served from the wrong offset or file differs.
fn famfs_pattern(k: usize, size: u64) -> Vec<u8> {
    (0..size)
        .map(|j| ((j.wrapping_mul(31) ^ (j >> 12)) as u8).wrapping_add((k as u8).wrapping_mul(17)))
        .collect()
}

/// Outcome of the lane, counted into `cargo xtask test`'s closing tally.
#[derive(Debug, Default)]
pub struct Outcome {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn output(what: &str, cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("{what}: cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn on_path(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(prog))
            .find(|p| p.is_file())
    })
}

/// Run the lane. `Err` = the lane could not run (no kernel package, boot failure): a loud failure.
pub fn run() -> Result<Outcome> {
    let started = Instant::now();
    let Some(qemu) = on_path("qemu-system-x86_64") else {
        println!(
            "SKIP: vm-test: qemu-system-x86_64 is not installed (`cargo xtask setup` installs qemu-system-x86)"
        );
        return Ok(Outcome {
            skipped: 1,
            ..Default::default()
        });
    };
    let cache = root().join("target/vm-cache");
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;

    eprintln!("== vm-test: building famfs-trace and famfs-daemon");
    let st = Command::new("cargo")
        .args(["build", "--quiet", "-p", "famfs-daemon", "--bins"])
        .current_dir(root())
        .status()
        .context("cargo build")?;
    if !st.success() {
        bail!("cargo build -p famfs-daemon --bins failed");
    }
    let bins = root().join("target/debug");

    let kpkg = pick_kernel()?;
    eprintln!("== vm-test: kernel package {kpkg}");
    let debs = cache.join("debs");
    let kroot = unpack(&debs, &cache, &kpkg)?;
    let bbroot = unpack(&debs, &cache, "busybox-static")?;
    let kmodroot = unpack(&debs, &cache, "kmod")?;
    let busybox = bbroot.join("bin/busybox");
    let kver = kernel_version(&kroot)?;
    depmod(&kmodroot, &kroot, &kver)?;

    let initrd = cache.join("initramfs.cpio");
    build_initramfs(&InitramfsInput {
        initrd: &initrd,
        work: &cache.join("work"),
        kroot: &kroot,
        kver: &kver,
        busybox: &busybox,
        famfs_trace: &bins.join("famfs-trace"),
        famfs_daemon: &bins.join("famfs-daemon"),
        xtask: &std::env::current_exe().context("locating the xtask binary")?,
    })?;
    let prep = started.elapsed();

    eprintln!(
        "== vm-test: booting {kver} under qemu (TCG), prepared in {:.1}s",
        prep.as_secs_f64()
    );
    let vmlinuz = kroot.join(format!("boot/vmlinuz-{kver}"));
    let console = boot(&qemu, &vmlinuz, &initrd, &cache.join("console.log"))?;
    let out = evaluate(&console, &kver);
    println!(
        "vm-test result: {}. {} passed; {} failed; finished in {:.1}s (prepare {:.1}s, guest {:.1}s)",
        if out.failed == 0 { "ok" } else { "FAILED" },
        out.passed,
        out.failed,
        started.elapsed().as_secs_f64(),
        prep.as_secs_f64(),
        (started.elapsed() - prep).as_secs_f64()
    );
    if out.failed > 0 {
        println!(
            "vm-test: full console log in {}",
            cache.join("console.log").display()
        );
    }
    Ok(out)
}

/// Newest `linux-image-6.12.N+deb12-amd64` (the signed image; `-unsigned` only when no signed one).
fn pick_kernel() -> Result<String> {
    let list = || -> Result<Vec<(u32, String)>> {
        let names = output(
            "apt-cache pkgnames",
            Command::new("apt-cache").args(["pkgnames", "linux-image-6.12."]),
        )?;
        let mut v: Vec<(u32, String)> = names
            .lines()
            .filter_map(|n| {
                let rest = n.strip_prefix("linux-image-6.12.")?;
                let (patch, flavour) = rest.split_once('+')?;
                let patch: u32 = patch.parse().ok()?;
                matches!(flavour, "deb12-amd64" | "deb12-amd64-unsigned")
                    .then(|| (patch, n.to_string()))
            })
            .collect();
        // Newest patch first; at equal patch the signed name (shorter) first.
        v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.len().cmp(&b.1.len())));
        Ok(v)
    };
    let mut found = list()?;
    if found.is_empty() {
        eprintln!("vm-test: no 6.12 kernel package known; running apt-get update");
        output(
            "apt-get update",
            Command::new("apt-get").args(["update", "-qq"]),
        )?;
        found = list()?;
    }
    match found.into_iter().next() {
        Some((_, name)) => Ok(name),
        None => bail!(
            "no linux-image-6.12.*+deb12-amd64 package in the apt sources: the VM lane needs Debian's \
             bookworm-security suite (check with `apt-cache policy 'linux-image-6.12.*'`)"
        ),
    }
}

/// `apt-get download` `pkg` into `debs` (once) and `dpkg -x` it into `cache/pkg` (once).
fn unpack(debs: &Path, cache: &Path, pkg: &str) -> Result<PathBuf> {
    let dest = cache.join(pkg);
    let done = dest.join(".unpacked");
    if done.exists() {
        return Ok(dest);
    }
    std::fs::create_dir_all(debs).with_context(|| format!("creating {}", debs.display()))?;
    let find = || -> Result<Option<PathBuf>> {
        let prefix = format!("{pkg}_");
        for e in std::fs::read_dir(debs).with_context(|| format!("listing {}", debs.display()))? {
            let p = e?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with(&prefix) && name.ends_with(".deb") {
                return Ok(Some(p));
            }
        }
        Ok(None)
    };
    let deb = match find()? {
        Some(d) => d,
        None => {
            eprintln!("vm-test: apt-get download {pkg}");
            output(
                &format!("apt-get download {pkg} (is the Debian mirror reachable?)"),
                Command::new("apt-get")
                    .args(["download", "-q", "-o", "APT::Sandbox::User=root", pkg])
                    .current_dir(debs),
            )?;
            find()?.with_context(|| format!("apt-get download {pkg} left no .deb"))?
        }
    };
    if dest.exists() {
        std::fs::remove_dir_all(&dest).with_context(|| format!("clearing {}", dest.display()))?;
    }
    output(
        &format!("dpkg -x {}", deb.display()),
        Command::new("dpkg").arg("-x").arg(&deb).arg(&dest),
    )?;
    std::fs::write(&done, b"").with_context(|| format!("writing {}", done.display()))?;
    Ok(dest)
}

fn kernel_version(kroot: &Path) -> Result<String> {
    let dir = kroot.join("lib/modules");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    v.sort();
    match v.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "{} holds {} kernel versions, expected one",
            dir.display(),
            v.len()
        ),
    }
}

/// The package ships no modules.dep: run the unpacked kmod's depmod on the unpacked tree (once).
fn depmod(kmodroot: &Path, kroot: &Path, kver: &str) -> Result<()> {
    let dep = kroot.join(format!("lib/modules/{kver}/modules.dep"));
    if dep.exists() {
        return Ok(());
    }
    // kmod picks its personality from argv[0].
    let link = kmodroot.join("depmod");
    if !link.exists() {
        std::os::unix::fs::symlink(kmodroot.join("bin/kmod"), &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    output("depmod", Command::new(&link).arg("-b").arg(kroot).arg(kver))?;
    Ok(())
}

/// Modules to load, dependencies first, from modules.dep: (name, path relative to the modules dir).
fn module_order(modules_dep: &str, wanted: &[&str]) -> Result<Vec<(String, String)>> {
    let mut table: HashMap<String, (String, Vec<String>)> = HashMap::new();
    let name_of = |path: &str| -> String {
        let file = path.rsplit('/').next().unwrap_or(path);
        file.split(".ko").next().unwrap_or(file).replace('-', "_")
    };
    for (i, line) in modules_dep.lines().enumerate() {
        let Some((path, deps)) = line.split_once(':') else {
            bail!("modules.dep line {}: no ':' in {line:?}", i + 1);
        };
        table.insert(
            name_of(path),
            (
                path.to_string(),
                deps.split_whitespace().map(name_of).collect(),
            ),
        );
    }
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    fn visit(
        name: &str,
        table: &HashMap<String, (String, Vec<String>)>,
        seen: &mut HashSet<String>,
        order: &mut Vec<(String, String)>,
        depth: usize,
    ) -> Result<()> {
        if depth > 32 {
            bail!("module dependency chain through {name} is longer than 32");
        }
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        let (path, deps) = table
            .get(name)
            .with_context(|| format!("module {name} is not in modules.dep"))?;
        for d in deps {
            visit(d, table, seen, order, depth + 1)?;
        }
        order.push((name.to_string(), path.clone()));
        Ok(())
    }
    for w in wanted {
        visit(w, &table, &mut seen, &mut order, 0)?;
    }
    Ok(order)
}

/// A newc cpio archive built in memory.
#[derive(Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
    dirs: HashSet<String>,
}

impl Cpio {
    fn header(&mut self, name: &str, mode: u32, size: usize) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            size as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
    }
    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
    /// Create `path`'s parent directories (guest paths without the leading '/').
    fn parents(&mut self, path: &str) {
        let mut acc = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for p in &parts[..parts.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(p);
            self.dir(&acc.clone());
        }
    }
    fn dir(&mut self, path: &str) {
        let path = path.trim_start_matches('/');
        if path.is_empty() || self.dirs.contains(path) {
            return;
        }
        self.parents(path);
        self.dirs.insert(path.to_string());
        self.header(path, 0o040755, 0);
    }
    fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        let path = path.trim_start_matches('/');
        self.parents(path);
        self.header(path, 0o100000 | mode, data.len());
        self.buf.extend_from_slice(data);
        self.pad();
    }
    fn symlink(&mut self, path: &str, target: &str) {
        let path = path.trim_start_matches('/');
        self.parents(path);
        self.header(path, 0o120777, target.len());
        self.buf.extend_from_slice(target.as_bytes());
        self.pad();
    }
    fn finish(mut self) -> Vec<u8> {
        self.header("TRAILER!!!", 0, 0);
        while !self.buf.len().is_multiple_of(512) {
            self.buf.push(0);
        }
        self.buf
    }
}

/// Shared libraries of `bin` as `ldd` lists them (absolute paths, the loader included).
fn ldd(bin: &Path) -> Result<Vec<PathBuf>> {
    let text = output(
        &format!("ldd {}", bin.display()),
        Command::new("ldd").arg(bin),
    )?;
    let mut v = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            v.push(PathBuf::from(p));
        }
    }
    Ok(v)
}

/// A binary without its debug sections (a copy of it if `strip` is not installed).
fn stripped(bin: &Path, work: &Path) -> Result<Vec<u8>> {
    let name = bin.file_name().context("binary path has no file name")?;
    let out = work.join(name);
    let ok = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&out)
        .arg(bin)
        .status()
        .is_ok_and(|s| s.success());
    let src = if ok { out.as_path() } else { bin };
    std::fs::read(src).with_context(|| format!("reading {}", src.display()))
}

struct InitramfsInput<'a> {
    initrd: &'a Path,
    work: &'a Path,
    kroot: &'a Path,
    kver: &'a str,
    busybox: &'a Path,
    famfs_trace: &'a Path,
    famfs_daemon: &'a Path,
    /// This binary: the guest runs `xtask vm-guest famfs` (see [`guest`]).
    xtask: &'a Path,
}

fn build_initramfs(i: &InitramfsInput<'_>) -> Result<()> {
    if i.work.exists() {
        std::fs::remove_dir_all(i.work)
            .with_context(|| format!("clearing {}", i.work.display()))?;
    }
    std::fs::create_dir_all(i.work).with_context(|| format!("creating {}", i.work.display()))?;
    let mut c = Cpio::default();
    for d in [
        "proc",
        "sys",
        "dev",
        "tmp",
        "mnt/dax",
        "mnt/fuse",
        "mnt/famfs",
        "famfs",
        "etc",
        "root",
    ] {
        c.dir(d);
    }
    c.symlink("etc/mtab", "/proc/mounts");
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    c.file("bin/busybox", 0o755, &read(i.busybox)?);

    // Kernel modules, decompressed here (busybox insmod takes plain .ko files), in load order.
    let mdir = i.kroot.join(format!("lib/modules/{}", i.kver));
    let dep = std::fs::read_to_string(mdir.join("modules.dep"))
        .with_context(|| format!("reading {}/modules.dep", mdir.display()))?;
    let order = module_order(&dep, MODULES)?;
    let mut names = String::new();
    for (name, rel) in &order {
        let src = mdir.join(rel);
        let data = if rel.ends_with(".ko.xz") {
            let out = Command::new(i.busybox)
                .args(["unxz", "-c"])
                .arg(&src)
                .output()
                .with_context(|| format!("unxz {}", src.display()))?;
            if !out.status.success() {
                bail!("unxz {} failed ({})", src.display(), out.status);
            }
            out.stdout
        } else if rel.ends_with(".ko") {
            read(&src)?
        } else {
            bail!("module {rel}: only .ko and .ko.xz are supported");
        };
        c.file(&format!("lib/modules/{name}.ko"), 0o644, &data);
        names.push_str(name);
        names.push('\n');
    }
    c.file("lib/modules/order", 0o644, names.as_bytes());

    // Programs with their shared libraries.
    let mke2fs = ["/usr/sbin/mke2fs", "/sbin/mke2fs"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .context("mke2fs not found (Debian package e2fsprogs; `cargo xtask setup` installs it)")?;
    let squashfuse =
        on_path("squashfuse").context("squashfuse not found (`cargo xtask setup` installs it)")?;
    let mksquashfs = on_path("mksquashfs")
        .context("mksquashfs not found (`cargo xtask setup` installs squashfs-tools)")?;
    let mut libs: Vec<PathBuf> = Vec::new();
    for (guest, host, strip) in [
        ("sbin/mke2fs", mke2fs.as_path(), false),
        ("bin/squashfuse", squashfuse.as_path(), false),
        ("bin/famfs-trace", i.famfs_trace, true),
        ("bin/famfs-daemon", i.famfs_daemon, true),
        ("bin/xtask", i.xtask, true),
    ] {
        let data = if strip {
            stripped(host, i.work)?
        } else {
            read(host)?
        };
        c.file(guest, 0o755, &data);
        libs.extend(ldd(host)?);
    }
    libs.sort();
    libs.dedup();
    for l in &libs {
        let guest = l.to_str().context("library path is not UTF-8")?;
        c.file(guest, 0o755, &read(l)?);
    }

    // A squashfs image with FUSE_FILES regular files of known sizes.
    let src = i.work.join("fuse-src");
    std::fs::create_dir_all(&src).with_context(|| format!("creating {}", src.display()))?;
    for n in 0..FUSE_FILES {
        let body: Vec<u8> = (0..(1000 * n + 10)).map(|b| (b * 7 + n) as u8).collect();
        std::fs::write(src.join(format!("f{n}")), body).context("writing squashfs source")?;
    }
    let img = i.work.join("fuse.sqfs");
    output(
        "mksquashfs",
        Command::new(&mksquashfs).arg(&src).arg(&img).args([
            "-quiet",
            "-no-progress",
            "-noappend",
            "-all-root",
        ]),
    )?;
    c.file("fuse.sqfs", 0o644, &read(&img)?);
    c.file("init", 0o755, INIT.as_bytes());

    let bytes = c.finish();
    let mut f = std::fs::File::create(i.initrd)
        .with_context(|| format!("creating {}", i.initrd.display()))?;
    f.write_all(&bytes)
        .with_context(|| format!("writing {}", i.initrd.display()))?;
    Ok(())
}

/// The guest's /init. Prints `VM ...` progress, the checks' `RESULT`/`CHECK` lines, `VMTEST EXIT <check>
/// <rc>` per check, `PROBE ...` (the probe table), `METRIC ...` (the first daemon's /metrics) and, from
/// `xtask vm-guest famfs`, `FMETRIC ...` (the famfs-serving daemon's /metrics), then powers off. Waits
/// are bounded polls on real state.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin RUST_LOG=warn
up() { cut -d' ' -f1 /proc/uptime; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
echo "VM kernel $(uname -r)"
for m in $(cat /lib/modules/order); do
  insmod /lib/modules/$m.ko || echo "VM module-failed $m"
done
# Poll (bounded) for the pmem block device: probing may finish after insmod returns.
i=0; while [ ! -b /dev/pmem0 ] && [ $i -lt 200 ]; do i=$((i+1)); usleep 50000; done
if [ -b /dev/pmem0 ] \
  && /sbin/mke2fs -q -t ext4 -b 4096 -E stride=512,stripe_width=512 /dev/pmem0 \
  && mount -t ext4 -o dax /dev/pmem0 /mnt/dax; then
  echo "VM dax-mounted $(grep ' /mnt/dax ' /proc/mounts)"
else
  echo "VM dax-failed"
fi
if squashfuse /fuse.sqfs /mnt/fuse; then echo "VM fuse-mounted"; else echo "VM fuse-failed"; fi
ip link set lo up

set -- $(stat -c '%t %T' /dev/pmem0)
DAXDEV=$(( (0x$1 << 20) | 0x$2 ))
FUSECONN=$(awk '$5=="/mnt/fuse" { split($3, a, ":"); print a[2] }' /proc/self/mountinfo)
echo "VM devices dax=$DAXDEV fuse=$FUSECONN"
echo "VM timing mounts end=$(up)"

echo "VM timing boot end=$(up)"
famfs-trace probes | sed 's/^/PROBE /'
echo "VM timing probes end=$(up)"

# The daemon watches the DAX device and the FUSE connection for the whole run; scraped at the end.
famfs-daemon run --listen 127.0.0.1:0 --connection $DAXDEV --connection $FUSECONN >/tmp/daemon.out 2>/tmp/daemon.err &
DPID=$!
i=0; while ! grep -q 'famfs-daemon: ready' /tmp/daemon.out && [ $i -lt 600 ]; do i=$((i+1)); usleep 50000; done
ADDR=$(sed -n 's/.*listen=\([^ ]*\).*/\1/p' /tmp/daemon.out)
echo "VM daemon addr=$ADDR"
echo "VM timing daemon-ready end=$(up)"

run() { name=$1; shift; t0=$(up); "$@"; rc=$?; echo "VMTEST EXIT $name $rc"; echo "VM timing $name start=$t0 end=$(up)"; }
run dax famfs-trace selftest dax --dir /mnt/dax
run kfuncs-fentry famfs-trace selftest kfuncs --dir /mnt/dax --fuse-dir /mnt/fuse --mode fentry
run kfuncs-kprobe famfs-trace selftest kfuncs --dir /mnt/dax --fuse-dir /mnt/fuse --mode kprobe
run fuse-auto famfs-trace selftest fuse --fuse-dir /mnt/fuse --pairing auto
run fuse-unique famfs-trace selftest fuse --fuse-dir /mnt/fuse --pairing unique

if wget -q -O /tmp/metrics "http://$ADDR/metrics"; then
  grep -E '^famfs_(dax_faults_total|fuse_requests_total|fuse_request_errors_total|fuse_request_duration_seconds_count|probe_attached|probe_runs_total)' /tmp/metrics | sed 's/^/METRIC /'
else
  echo "VM metrics-failed"
fi
kill $DPID; wait $DPID; echo "VMTEST EXIT daemon $?"
grep -i -e warn -e error -e panick /tmp/daemon.err | sed 's/^/VM daemon-stderr /' | head -20
echo "VM timing daemon-stopped end=$(up)"

# Our own famfs FUSE server with its probes on this kernel (see `guest` in vm.rs).
run famfs xtask vm-guest famfs
umount /mnt/fuse
echo "VM done"
poweroff -f
"#;

/// Boot the guest, echo its check lines, save the console; return the console text.
fn boot(qemu: &Path, vmlinuz: &Path, initrd: &Path, log: &Path) -> Result<String> {
    let mut child = Command::new("timeout")
        .arg("--kill-after=5")
        .arg(GUEST_TIMEOUT.as_secs().to_string())
        .arg(qemu)
        .args(["-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "2048"])
        .args(["-nodefaults", "-display", "none", "-serial", "stdio"])
        .args(["-no-reboot", "-kernel"])
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            "console=ttyS0 panic=-1 memmap=512M!1G quiet loglevel=3",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu under timeout")?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let mut text = String::new();
    let mut reader = BufReader::new(stdout);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let n = reader
            .read_until(b'\n', &mut raw)
            .context("reading the serial console")?;
        if n == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\n', '\r']);
        if ["RESULT ", "CHECK ", "VM ", "VMTEST "]
            .iter()
            .any(|p| line.starts_with(p))
        {
            println!("vm| {line}");
        }
        text.push_str(line);
        text.push('\n');
    }
    let status = child.wait().context("waiting for qemu")?;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    std::fs::write(log, &text).with_context(|| format!("writing {}", log.display()))?;
    if status.code() == Some(124) || status.code() == Some(137) {
        bail!(
            "the guest did not power off within {}s (console log: {})",
            GUEST_TIMEOUT.as_secs(),
            log.display()
        );
    }
    if !status.success() {
        bail!("qemu failed ({status}): {err}");
    }
    if !text.contains("VM done") {
        bail!(
            "the guest stopped before its last step (console log: {})",
            log.display()
        );
    }
    Ok(text)
}

type Fields = BTreeMap<String, String>;

/// `RESULT <check> <what> k=v ...` lines by (check, what).
fn results(console: &str) -> BTreeMap<(String, String), Fields> {
    let mut out: BTreeMap<(String, String), Fields> = BTreeMap::new();
    for line in console.lines() {
        let Some(rest) = line.strip_prefix("RESULT ") else {
            continue;
        };
        let mut w = rest.split_whitespace();
        let (Some(check), Some(what)) = (w.next(), w.next()) else {
            continue;
        };
        let e = out.entry((check.into(), what.into())).or_default();
        for kv in w {
            if let Some((k, v)) = kv.split_once('=') {
                e.insert(k.into(), v.into());
            }
        }
    }
    out
}

/// The value of metric `name` (from the first daemon's `METRIC` lines) whose labels include every
/// `(k, v)`.
fn metric(console: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metric_at(console, "METRIC ", name, labels)
}

/// The value of metric `name` on console lines starting with `prefix` whose labels include every
/// `(k, v)`; the first such line counts.
fn metric_at(console: &str, prefix: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in console.lines() {
        let Some(rest) = line.strip_prefix(prefix) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix(name) else {
            continue;
        };
        let (lbl, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once('}') {
                Some(x) => x,
                None => continue,
            },
            // Another family whose name starts with `name` (`name_count`, ...).
            None if !rest.starts_with(' ') => continue,
            None => ("", rest),
        };
        if labels
            .iter()
            .all(|(k, v)| lbl.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
        {
            return value.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

/// Compare `fields` of one RESULT line with `want` exactly; every key named must be present.
fn exact<K: AsRef<str>, V: AsRef<str>>(
    res: &BTreeMap<(String, String), Fields>,
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

fn exited_ok(console: &str, check: &str) -> Vec<String> {
    let want = format!("VMTEST EXIT {check} ");
    match console.lines().find_map(|l| l.strip_prefix(&want)) {
        Some("0") => Vec::new(),
        Some(rc) => vec![format!("{check} exited with {rc}")],
        None => vec![format!("{check} never finished")],
    }
}

/// Probe table row (`PROBE <program> <kind> <target> <state...>`): (kind, state).
fn probe_row(console: &str, program: &str) -> Option<(String, String)> {
    console.lines().find_map(|l| {
        let rest = l.strip_prefix("PROBE ")?;
        let mut w = rest.split_whitespace();
        if w.next()? != program {
            return None;
        }
        let kind = w.next()?.to_string();
        let _target = w.next()?;
        Some((kind, w.collect::<Vec<_>>().join(" ")))
    })
}

/// The host-side assertions. Expected values are exact for the stock 6.12 kernel; each is explained.
fn evaluate(console: &str, kver: &str) -> Outcome {
    let res = results(console);
    let n = FUSE_FILES.to_string();
    let mut checks: Vec<(&str, Vec<String>)> = Vec::new();

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
    checks.push(("boot_pmem_ext4_dax_and_fuse", boot));

    // Probe table on 6.12: every tracepoint attached, the request probes as raw tracepoints (pointer
    // pairing), fentry for the kernel functions that exist, famfs functions absent with the reason.
    let mut table = Vec::new();
    for (prog, kind) in [
        ("fuse_request_send", "raw_tracepoint"),
        ("fuse_request_end", "raw_tracepoint"),
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
    checks.push(("probe_table", table));

    // DAX faults on ext4 -o dax. A 1 MiB mapping at a 2 MiB-aligned address: the first fault finds no
    // page table for the 2 MiB region, so the kernel first tries a huge page, which falls back (the VMA
    // is smaller than 2 MiB) -- twice, once under the per-VMA lock and once more under mmap_lock after
    // the PTE path asked for the retry -- then 256 PTE faults, one per page. Read-then-write doubles the
    // PTE faults (the read maps read-only, the write faults again to make it writable): 512, which is the
    // "512 dax_pte_fault events" of environment.md. An 8 MiB 2 MiB-aligned mapping takes 4 PMD faults
    // (8 read-then-write). The kernel's thp_fault_fallback counter agrees with the probes.
    let mut dax = exited_ok(console, "dax");
    dax.extend(exact(
        &res,
        "dax",
        "pte-write",
        &fault_want(&[
            ("pte_ok_w", "256"),
            ("pmd_fallback_w", "2"),
            ("lat_count", "258"),
            ("vmstat_thp_fault_fallback", "2"),
        ]),
    ));
    dax.extend(exact(
        &res,
        "dax",
        "pte-readwrite",
        &fault_want(&[
            ("pte_ok_r", "256"),
            ("pte_ok_w", "256"),
            ("pmd_fallback_r", "2"),
            ("lat_count", "514"),
            ("vmstat_thp_fault_fallback", "2"),
        ]),
    ));
    checks.push(("dax_pte_faults_exact", dax));
    let mut pmd = Vec::new();
    pmd.extend(exact(
        &res,
        "dax",
        "pmd-write",
        &fault_want(&[
            ("pmd_ok_w", "4"),
            ("lat_count", "4"),
            ("vmstat_thp_fault_fallback", "0"),
        ]),
    ));
    pmd.extend(exact(
        &res,
        "dax",
        "pmd-readwrite",
        &fault_want(&[
            ("pmd_ok_r", "4"),
            ("pmd_ok_w", "4"),
            ("lat_count", "8"),
            ("vmstat_thp_fault_fallback", "0"),
        ]),
    ));
    // Per-program run counts: (256 + 512) PTE and (2 + 2 + 4 + 8) PMD events; nothing unmatched.
    pmd.extend(exact(
        &res,
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
        &res,
        "dax",
        "health",
        &[
            ("unmatched_fault", "0"),
            ("fault_start_full", "0"),
            ("ringbuf_drop", "0"),
        ],
    ));
    checks.push(("dax_pmd_faults_exact", pmd));

    // Kernel-function probes, attached as fentry/fexit and then as kprobe/kretprobe: the 1 MiB write
    // workload calls dax_iomap_fault 258 times (256 PTE + 2 PMD attempts), and each of the 5 files on
    // the squashfuse mount is opened once: 5 fuse_open calls.
    for (check, kind, name) in [
        ("kfuncs-fentry", "Fentry", "kfuncs_fentry_exact"),
        ("kfuncs-kprobe", "Kprobe", "kfuncs_kprobe_exact"),
    ] {
        let mut v = exited_ok(console, check);
        for f in ["dax_iomap_fault", "fuse_open"] {
            let want = format!("RESULT {check} probe function={f} kind={kind} state=attached");
            if !console.lines().any(|l| l == want) {
                v.push(format!("{check}: no `{want}` line"));
            }
        }
        v.extend(exact(
            &res,
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
            &res,
            check,
            "fuse_open",
            &[
                ("calls", &n),
                ("returns", &n),
                ("lat_count", &n),
                ("opens", &n),
            ],
        ));
        checks.push((name, v));
    }

    // FUSE request probes on 6.12, whose fuse_request_send reports unique 0 for every request. Auto
    // pairing picks the request address: all 5 OPENs complete (32-byte replies), the missing name fails
    // one LOOKUP, 5 OPEN events carry 5 distinct real uniques; the quirk is detected (every send counted
    // in send_unique_zero). Forced unique pairing shows the quirk: 5 OPENs sent, none completed.
    let mut fuse = exited_ok(console, "fuse-auto");
    fuse.extend(exact(
        &res,
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
    let quirk = |check: &str| -> Vec<String> {
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
    };
    fuse.extend(quirk("fuse-auto"));
    checks.push(("fuse_pointer_pairing_exact", fuse));
    let mut uniq = exited_ok(console, "fuse-unique");
    uniq.extend(exact(
        &res,
        "fuse-unique",
        "requests",
        &[
            ("pairing", "unique"),
            ("open_sent", &n),
            ("open_completed", "0"),
            ("open_events", "0"),
        ],
    ));
    uniq.extend(quirk("fuse-unique"));
    checks.push(("fuse_unique_quirk_detected", uniq));

    // The daemon, running through all of the above and watching the DAX device and the FUSE connection:
    // PTE ok = 256 + 512 (dax) + 256 + 256 (kfuncs twice); PMD ok = 4 + 8; PMD fallback = 2 + 2 + 2 + 2;
    // OPEN = 5 per check in kfuncs (×2) and fuse (×2), all completed by pointer pairing; 2 failed LOOKUPs.
    let mut d = exited_ok(console, "daemon");
    let n4 = (4 * FUSE_FILES) as f64;
    for (name, labels, want) in [
        (
            "famfs_dax_faults_total",
            &[("size", "pte"), ("result", "ok")][..],
            1280.0,
        ),
        (
            "famfs_dax_faults_total",
            &[("size", "pmd"), ("result", "ok")],
            12.0,
        ),
        (
            "famfs_dax_faults_total",
            &[("size", "pmd"), ("result", "fallback")],
            8.0,
        ),
        (
            "famfs_dax_faults_total",
            &[("size", "pte"), ("result", "error")],
            0.0,
        ),
        ("famfs_fuse_requests_total", &[("opcode", "OPEN")], n4),
        (
            "famfs_fuse_request_duration_seconds_count",
            &[("opcode", "OPEN")],
            n4,
        ),
        (
            "famfs_fuse_request_errors_total",
            &[("opcode", "LOOKUP")],
            2.0,
        ),
        (
            "famfs_probe_attached",
            &[("probe", "fuse_open"), ("kind", "fentry")],
            1.0,
        ),
        (
            "famfs_probe_attached",
            &[("probe", "fuse_request_send"), ("kind", "raw_tracepoint")],
            1.0,
        ),
        (
            "famfs_probe_runs_total",
            &[("probe", "dax_pte_fault_done")],
            1280.0,
        ),
    ] {
        match metric(console, name, labels) {
            Some(v) if v == want => {}
            got => d.push(format!("{name}{labels:?} = {got:?}, expected {want}")),
        }
    }
    checks.push(("daemon_metrics_exact", d));

    // Our own famfs FUSE server in the guest (`xtask vm-guest famfs`), with its probes, on 6.12, whose
    // fuse_request_send reports unique 0: the probes pair sends and ends by request address (kernel
    // BTF), so every OPEN's kernel latency reaches the join and is attributed to its file.
    checks.push(("famfs_server_join_exact", famfs_checks(console, &res)));
    checks.push(("famfs_server_sigterm_unmounts", famfs_stop_checks(&res)));

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

/// Compare `FMETRIC` sample `name{labels}` (the famfs-serving daemon's /metrics) with `want`.
fn famfs_metric(
    v: &mut Vec<String>,
    console: &str,
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
) {
    match metric_at(console, "FMETRIC ", name, labels) {
        Some(got) if got == want => {}
        got => v.push(format!(
            "famfs: {name}{labels:?} = {got:?}, expected {want}"
        )),
    }
}

/// The famfs server check's exact values, derived from [`FAMFS_READ_FILES`] and [`FAMFS_MMAP_FILE`].
fn famfs_checks(console: &str, res: &BTreeMap<(String, String), Fields>) -> Vec<String> {
    let mut v = exited_ok(console, "famfs");
    let (mpath, msize) = FAMFS_MMAP_FILE;
    let pages = msize.div_ceil(PAGE);
    // Every read file n times, plus the one open of the mapped file.
    let opens = FAMFS_READ_FILES.iter().map(|f| f.2).sum::<u64>() + 1;
    let read_bytes: u64 = FAMFS_READ_FILES.iter().map(|f| f.1 * f.2).sum();
    v.extend(exact(
        res,
        "famfs",
        "workload",
        &[
            ("opens", opens.to_string()),
            ("read_bytes", read_bytes.to_string()),
            ("mismatches", "0".into()),
            ("mmap_pages", pages.to_string()),
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

    // Per file. The server answers OPEN without KEEP_CACHE, so each open drops the file's page cache
    // and each full read READs the whole file again: read bytes are exactly size × opens, with no page
    // cache faults (read(2) does not fault). The mapped file is opened once and, with MADV_RANDOM (no
    // readahead, and fault-around only maps pages already cached), each touched page takes exactly
    // one page-cache fault and one READ of that page: `pages` of each, `size` bytes.
    let mut file_reads = 0.0;
    let files = FAMFS_READ_FILES
        .iter()
        .map(|&(p, s, n)| (p, s, n, false))
        .chain([(mpath, msize, 1, true)]);
    for (path, size, n, mapped) in files {
        let p = format!("/{path}");
        let l = [("fs_uuid", uuid), ("path", p.as_str())];
        for (name, want) in [
            ("famfs_file_opens_total", n as f64),
            ("famfs_file_open_errors_total", 0.0),
            // The kernel-observed latency, joined per file despite the unique-0 sends.
            ("famfs_file_open_duration_seconds_count", n as f64),
            ("famfs_file_size_bytes", size as f64),
            ("famfs_file_read_bytes_total", (size * n) as f64),
            ("famfs_file_written_bytes_total", 0.0),
            (
                "famfs_file_page_cache_faults_total",
                if mapped { pages as f64 } else { 0.0 },
            ),
        ] {
            famfs_metric(&mut v, console, name, &l, want);
        }
        if mapped {
            famfs_metric(&mut v, console, "famfs_file_reads_total", &l, pages as f64);
        }
        file_reads += metric_at(console, "FMETRIC ", "famfs_file_reads_total", &l).unwrap_or(0.0);
    }
    famfs_metric(
        &mut v,
        console,
        "famfs_file_series_folded",
        &[("fs_uuid", uuid)],
        0.0,
    );

    // The kernel's view of the connection (probes), the server's own, and the join between them.
    let open = [("connection", conn), ("opcode", "OPEN")];
    let o = opens as f64;
    famfs_metric(&mut v, console, "famfs_fuse_requests_total", &open, o);
    famfs_metric(
        &mut v,
        console,
        "famfs_fuse_request_duration_seconds_count",
        &open,
        o,
    );
    famfs_metric(
        &mut v,
        console,
        "famfs_fuse_request_errors_total",
        &open,
        0.0,
    );
    famfs_metric(
        &mut v,
        console,
        "famfs_server_requests_total",
        &[("opcode", "OPEN")],
        o,
    );
    // Every READ the kernel queued was answered by the server and attributed to a file.
    let read = [("connection", conn), ("opcode", "READ")];
    let k_reads = metric_at(console, "FMETRIC ", "famfs_fuse_requests_total", &read);
    let s_reads = metric_at(
        console,
        "FMETRIC ",
        "famfs_server_requests_total",
        &[("opcode", "READ")],
    );
    if k_reads.is_none() || k_reads != s_reads || k_reads != Some(file_reads) {
        v.push(format!(
            "famfs: READs: kernel {k_reads:?}, server {s_reads:?}, per-file sum {file_reads}: expected all equal"
        ));
    }
    // Every request the kernel queued on the connection, opcode by opcode, is one the server answered,
    // and each answer was handed to the join as one record. The exception is INIT: mount(2) queues it
    // before the daemon knows its connection number, so the probes, filtered to the daemon's own
    // connection, never count it (it is the `filtered` send and end).
    let served = opcode_samples(console, "FMETRIC famfs_server_requests_total{");
    let answered: f64 = served.iter().map(|(_, n)| n).sum();
    if served.iter().all(|(op, _)| op != "OPEN") {
        v.push("famfs: no famfs_server_requests_total samples".into());
    }
    for (op, n) in &served {
        let l = [("connection", conn), ("opcode", op.as_str())];
        let k = metric_at(console, "FMETRIC ", "famfs_fuse_requests_total", &l);
        let want = if op == "INIT" { None } else { Some(*n) };
        if k != want {
            v.push(format!(
                "famfs: {op}: the kernel queued {k:?}, the server answered {n}, expected {want:?}"
            ));
        }
    }
    let kernel_total: f64 = opcode_samples(
        console,
        &format!("FMETRIC famfs_fuse_requests_total{{connection=\"{conn}\","),
    )
    .iter()
    .map(|(_, n)| n)
    .sum();
    if kernel_total + 1.0 != answered {
        v.push(format!(
            "famfs: the kernel queued {kernel_total} requests, the server answered {answered}: expected \
             one more (INIT)"
        ));
    }
    famfs_metric(
        &mut v,
        console,
        "famfs_server_records_total",
        &[("outcome", "sent")],
        answered,
    );
    // One kernel OPEN completion per open reaches the join and matches its server record; the
    // latency is the kernel's own (server_timed 0: the send was paired in the kernel by address).
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
        famfs_metric(
            &mut v,
            console,
            "famfs_join_events_total",
            &[("outcome", outcome)],
            want,
        );
    }
    let sent = metric_at(
        console,
        "FMETRIC ",
        "famfs_server_records_total",
        &[("outcome", "sent")],
    );
    let joined = metric_at(
        console,
        "FMETRIC ",
        "famfs_join_events_total",
        &[("outcome", "server_record")],
    );
    if sent.is_none_or(|s| s < o) || sent != joined {
        v.push(format!(
            "famfs: server records sent {sent:?}, taken in by the join {joined:?}: expected equal and at least {opens}"
        ));
    }
    famfs_metric(
        &mut v,
        console,
        "famfs_server_records_total",
        &[("outcome", "dropped")],
        0.0,
    );
    // The quirk is there (every send reports unique 0) and did not hurt: no unmatched end, no drop.
    let ev = |e: &str| {
        metric_at(
            console,
            "FMETRIC ",
            "famfs_probe_events_total",
            &[("event", e)],
        )
    };
    if ev("send").is_none_or(|s| s < o) || ev("send") != ev("send_unique_zero") {
        v.push(format!(
            "famfs: probe sends {:?}, with unique 0 {:?}: the 6.12 quirk was expected on every send",
            ev("send"),
            ev("send_unique_zero")
        ));
    }
    for e in ["unmatched_end", "ringbuf_drop", "inflight_full"] {
        famfs_metric(
            &mut v,
            console,
            "famfs_probe_events_total",
            &[("event", e)],
            0.0,
        );
    }
    famfs_metric(
        &mut v,
        console,
        "famfs_probe_attached",
        &[("probe", "fuse_request_send"), ("kind", "raw_tracepoint")],
        1.0,
    );
    v
}

/// `(opcode, value)` of every console line `<prefix>...opcode="X"...} value`, e.g. the per-opcode
/// samples of one family (and connection).
fn opcode_samples(console: &str, prefix: &str) -> Vec<(String, f64)> {
    console
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(prefix)?;
            let (labels, value) = rest.split_once("} ")?;
            let op = labels
                .split(',')
                .find_map(|kv| kv.strip_prefix("opcode=\""))?
                .trim_end_matches('"');
            Some((op.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// SIGTERM: the daemon unmounts (its closing line), exits 0, and the mount is gone.
fn famfs_stop_checks(res: &BTreeMap<(String, String), Fields>) -> Vec<String> {
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

/// `xtask vm-guest <check>`: the guest half of a check, run by the guest's /init (never on the host).
pub fn guest(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("famfs") => famfs_guest::run(),
        other => bail!("vm-guest: unknown check {other:?} (known: famfs)"),
    }
}

/// The famfs server check inside the guest: an image made and filled with the image CLI on a tmpfs,
/// served by `famfs-daemon run` with its probes, a workload of known counts on the mount, the daemon's
/// metrics once its join has taken in everything, then SIGTERM and the mount gone.
mod famfs_guest {
    use std::{
        fs::File,
        io::Read,
        os::fd::AsRawFd,
        process::Child,
        sync::mpsc::{self, RecvTimeoutError},
    };

    use super::*;

    const DIR: &str = "/famfs";
    const IMAGE: &str = "/famfs/famfs.img";
    const MNT: &str = "/mnt/famfs";
    const DAEMON: &str = "/bin/famfs-daemon";
    const STDERR: &str = "/famfs/daemon.err";
    /// mkfs records this host as the image's master here; `cp` and `run` read it back.
    const UUID_ENV: (&str, &str) = ("FAMFS_SYSTEM_UUID_PATH", "/famfs/system_uuid");
    /// Deadlines for real state (the guest is an emulated CPU running debug builds).
    const READY_TIMEOUT: Duration = Duration::from_secs(60);
    const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
    const STOP_TIMEOUT: Duration = Duration::from_secs(30);
    /// Metric families printed for the host (histogram buckets and `_created` left out).
    const FAMILIES: &[&str] = &[
        "famfs_file_",
        "famfs_join_events_total",
        "famfs_fuse_requests_total",
        "famfs_fuse_request_errors_total",
        "famfs_fuse_request_duration_seconds_count",
        "famfs_server_",
        "famfs_probe_events_total",
        "famfs_probe_attached{probe=\"fuse_request",
    ];

    /// The running daemon; dropping it stops it (SIGTERM, then SIGKILL past the deadline).
    struct Daemon {
        child: Child,
        stopped: bool,
    }

    impl Daemon {
        /// SIGTERM and wait (bounded) for the exit; `Ok(None)` when it had to be killed.
        fn stop(&mut self) -> Result<Option<i32>> {
            self.stopped = true;
            let pid = libc::pid_t::try_from(self.child.id()).context("daemon pid")?;
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
            if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
                bail!(
                    "SIGTERM to famfs-daemon: {}",
                    std::io::Error::last_os_error()
                );
            }
            let end = Instant::now() + STOP_TIMEOUT;
            loop {
                if let Some(st) = self.child.try_wait().context("waiting for famfs-daemon")? {
                    return Ok(Some(st.code().unwrap_or(-1)));
                }
                if Instant::now() >= end {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            if !self.stopped {
                let _ = self.stop();
            }
        }
    }

    fn cli(what: &str, args: &[&str]) -> Result<()> {
        output(
            what,
            Command::new(DAEMON).args(args).env(UUID_ENV.0, UUID_ENV.1),
        )
        .map(|_| ())
    }

    /// `value` of `key=value` in a whitespace-separated line.
    fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }

    /// (connection, fstype) of the mount at `mnt` in /proc/self/mountinfo, if mounted.
    fn mountinfo(mnt: &str) -> Result<Option<(String, String)>> {
        let text =
            std::fs::read_to_string("/proc/self/mountinfo").context("/proc/self/mountinfo")?;
        Ok(text.lines().find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.get(4) != Some(&mnt) {
                return None;
            }
            let minor = w.get(2)?.split_once(':')?.1.to_string();
            let dash = w.iter().position(|x| *x == "-")?;
            Some((minor, w.get(dash + 1)?.to_string()))
        }))
    }

    fn scrape(addr: &str) -> Result<String> {
        output(
            "wget /metrics",
            Command::new("wget").args(["-q", "-O", "-", &format!("http://{addr}/metrics")]),
        )
    }

    /// The first sample of `name` with exactly the label text `labels` (`""` for none).
    fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
        let want = if labels.is_empty() {
            format!("{name} ")
        } else {
            format!("{name}{{{labels}}} ")
        };
        text.lines()
            .find_map(|l| l.strip_prefix(&want)?.trim().parse().ok())
    }

    /// Read every page of `f` (`size` bytes) through a shared read-only mapping with `MADV_RANDOM`,
    /// touching the pages once each in order: one page-cache fault and one READ of that page per page.
    /// Returns the bytes seen.
    fn mmap_read(f: &File, size: u64) -> Result<Vec<u8>> {
        let len = usize::try_from(size).context("mapping length")?;
        // SAFETY: a fresh read-only shared mapping of an open file; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            bail!("mmap: {}", std::io::Error::last_os_error());
        }
        // SAFETY: advice on the mapping made above, of its exact length.
        let adv = unsafe { libc::madvise(p, len, libc::MADV_RANDOM) };
        let res = if adv != 0 {
            Err(anyhow::anyhow!(
                "madvise(MADV_RANDOM): {}",
                std::io::Error::last_os_error()
            ))
        } else {
            let base = p.cast::<u8>();
            let mut out = vec![0u8; len];
            for off in (0..len).step_by(PAGE as usize) {
                let end = (off + PAGE as usize).min(len);
                for (j, b) in out[off..end].iter_mut().enumerate() {
                    // SAFETY: off + j < len: inside the mapping, which is readable up to the file's
                    // end (the file is `size` bytes, fixed by famfs).
                    *b = unsafe { std::ptr::read_volatile(base.add(off + j)) };
                }
            }
            Ok(out)
        };
        // SAFETY: unmaps exactly the mapping made above; no reference into it outlives this call.
        unsafe { libc::munmap(p, len) };
        res
    }

    pub fn run() -> Result<()> {
        let t0 = Instant::now();
        std::fs::create_dir_all(DIR).with_context(|| format!("creating {DIR}"))?;
        std::fs::create_dir_all(MNT).with_context(|| format!("creating {MNT}"))?;
        output(
            "mount tmpfs",
            Command::new("mount").args(["-t", "tmpfs", "-o", "size=256m", "famfs-tmp", DIR]),
        )?;

        // The image: a 4 GiB sparse file on tmpfs, the files copied in with the image CLI.
        let src = Path::new(DIR).join("src");
        std::fs::create_dir_all(&src).context("creating the source dir")?;
        cli("image mkfs", &["image", "mkfs", IMAGE, "--size", "4G"])?;
        cli("image mkdir", &["image", "mkdir", "-p", IMAGE, "data/sub"])?;
        let all = FAMFS_READ_FILES
            .iter()
            .map(|(p, s, _)| (*p, *s))
            .chain([FAMFS_MMAP_FILE]);
        for (k, (path, size)) in all.enumerate() {
            let host = src.join(format!("f{k}"));
            std::fs::write(&host, famfs_pattern(k, size))
                .with_context(|| format!("writing {}", host.display()))?;
            let host = host.to_str().context("source path")?;
            cli("image cp", &["image", "cp", IMAGE, host, path])?;
        }
        println!(
            "RESULT famfs image files={} secs={:.1}",
            FAMFS_READ_FILES.len() + 1,
            t0.elapsed().as_secs_f64()
        );

        // The daemon, probes on; readiness is its ready line (printed once INIT was answered).
        let stderr = File::create(STDERR).with_context(|| format!("creating {STDERR}"))?;
        let mut child = Command::new(DAEMON)
            .args(["run", "--image", IMAGE, "--mountpoint", MNT])
            .args(["--listen", "127.0.0.1:0"])
            .env(UUID_ENV.0, UUID_ENV.1)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("starting famfs-daemon run")?;
        let stdout = child.stdout.take().context("daemon stdout")?;
        let mut daemon = Daemon {
            child,
            stopped: false,
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("famfs-daemon: ready") {
                    let _ = tx.send(line);
                }
            }
        });
        let ready = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => {
                bail!("famfs-daemon printed no ready line within {READY_TIMEOUT:?}")
            }
            Err(RecvTimeoutError::Disconnected) => bail!(
                "famfs-daemon exited before its ready line: {}",
                std::fs::read_to_string(STDERR).unwrap_or_default()
            ),
        };
        let addr = field(&ready, "listen").context("ready line without listen=")?;
        let conn = field(&ready, "connection").context("ready line without connection=")?;
        let uuid = field(&ready, "fs_uuid").context("ready line without fs_uuid=")?;
        let (mi_conn, fstype) = mountinfo(MNT)?.context("the mount is not in mountinfo")?;
        println!(
            "RESULT famfs ready connection={conn} mountinfo_connection={mi_conn} fstype={fstype} \
             fs_uuid={uuid} secs={:.1}",
            t0.elapsed().as_secs_f64()
        );

        // The workload: each read file opened n times and read to its end, then the mapped file.
        let (mut opens, mut read_bytes, mut mismatches) = (0u64, 0u64, 0u64);
        for (k, (path, size, n)) in FAMFS_READ_FILES.iter().enumerate() {
            let want = famfs_pattern(k, *size);
            let p = Path::new(MNT).join(path);
            for _ in 0..*n {
                let mut f = File::open(&p).with_context(|| format!("open {}", p.display()))?;
                let mut got = Vec::with_capacity(want.len());
                f.read_to_end(&mut got)
                    .with_context(|| format!("read {}", p.display()))?;
                opens += 1;
                read_bytes += got.len() as u64;
                mismatches += u64::from(got != want);
            }
        }
        let (path, size) = FAMFS_MMAP_FILE;
        let p = Path::new(MNT).join(path);
        let f = File::open(&p).with_context(|| format!("open {}", p.display()))?;
        opens += 1;
        let got = mmap_read(&f, size)?;
        drop(f);
        let mmap_mismatch = got != famfs_pattern(FAMFS_READ_FILES.len(), size);
        println!(
            "RESULT famfs workload opens={opens} read_bytes={read_bytes} mismatches={mismatches} \
             mmap_pages={} mmap_bytes={} mmap_mismatches={} secs={:.1}",
            size.div_ceil(PAGE),
            got.len(),
            u64::from(mmap_mismatch),
            t0.elapsed().as_secs_f64()
        );

        // Requests end asynchronously (RELEASE is queued in the background after close) and the join
        // works on its own thread: scrape until the mount is quiet -- everything the kernel queued on
        // the connection was answered (INIT, queued before the probes knew the connection, aside) --
        // and every answer's record was handed to the join and taken in, with a kernel event per open.
        // The host then asserts exact values; past the deadline it sees `settled=0`.
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let kernel_prefix = format!("famfs_fuse_requests_total{{connection=\"{conn}\",");
        let (text, settled) = loop {
            let text = scrape(addr)?;
            let queued: f64 = opcode_samples(&text, &kernel_prefix)
                .iter()
                .map(|(_, n)| n)
                .sum();
            let served = opcode_samples(&text, "famfs_server_requests_total{");
            let all: f64 = served.iter().map(|(_, n)| n).sum();
            let answered: f64 = served
                .iter()
                .filter(|(op, _)| op != "INIT")
                .map(|(_, n)| n)
                .sum();
            let sent = sample(&text, "famfs_server_records_total", "outcome=\"sent\"");
            let joined = sample(
                &text,
                "famfs_join_events_total",
                "outcome=\"server_record\"",
            );
            let kernel = sample(&text, "famfs_join_events_total", "outcome=\"kernel_event\"");
            let settled = queued > 0.0
                && queued == answered
                && sent == Some(all)
                && sent == joined
                && kernel >= Some(opens as f64);
            if settled || Instant::now() >= deadline {
                break (text, settled);
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        for l in text.lines().filter(|l| {
            FAMILIES.iter().any(|f| l.starts_with(f))
                && !l.contains("_bucket{")
                && !l.contains("_created")
        }) {
            println!("FMETRIC {l}");
        }
        println!(
            "RESULT famfs scrape settled={} secs={:.1}",
            u8::from(settled),
            t0.elapsed().as_secs_f64()
        );

        // SIGTERM: the daemon unmounts and exits 0.
        let code = daemon.stop()?;
        let still = mountinfo(MNT)?.is_some();
        let err = std::fs::read_to_string(STDERR).unwrap_or_default();
        for l in err.lines().filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("warn") || l.contains("error") || l.contains("panick")
        }) {
            println!("VM famfs-daemon-stderr {l}");
        }
        println!(
            "RESULT famfs stop exit={} mounted_after={} stderr_panics={} stopped_line={} secs={:.1}",
            code.map_or("killed".to_string(), |c| c.to_string()),
            u8::from(still),
            err.lines().filter(|l| l.contains("panicked")).count(),
            u8::from(
                err.lines()
                    .any(|l| l.starts_with("famfs-daemon: unmounted"))
            ),
            t0.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_order_puts_dependencies_first() {
        let dep = "kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko.xz kernel/fs/jbd2/jbd2.ko.xz\n\
                   kernel/lib/crc16.ko.xz:\n\
                   kernel/fs/jbd2/jbd2.ko.xz:\n\
                   kernel/drivers/nvdimm/nd_pmem.ko.xz: kernel/drivers/nvdimm/libnvdimm.ko.xz\n\
                   kernel/drivers/nvdimm/libnvdimm.ko.xz:\n";
        let o = module_order(dep, &["nd_pmem", "ext4"]).unwrap();
        let names: Vec<&str> = o.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["libnvdimm", "nd_pmem", "crc16", "jbd2", "ext4"]);
        let e = module_order(dep, &["nope"]).unwrap_err();
        assert_eq!(e.to_string(), "module nope is not in modules.dep");
        let e = module_order("garbage", &["x"]).unwrap_err();
        assert!(e.to_string().starts_with("modules.dep line 1"), "{e}");
    }

    #[test]
    fn cpio_is_newc_with_parents_and_trailer() {
        let mut c = Cpio::default();
        c.file("a/b/c", 0o644, b"hello");
        let b = c.finish();
        assert_eq!(b.len() % 512, 0);
        let text = String::from_utf8_lossy(&b);
        assert!(text.starts_with("070701"));
        // Parents first: a, a/b, then a/b/c, then the trailer.
        let pos = |s: &str| text.find(s).unwrap();
        assert!(pos("a\0") < pos("a/b\0"));
        assert!(pos("a/b\0") < pos("a/b/c\0"));
        assert!(pos("a/b/c\0") < pos("hello"));
        assert!(pos("hello") < pos("TRAILER!!!"));
        // File size field (7th) of the file header is 5.
        let h = pos("a/b/c\0") - 110;
        assert_eq!(&text[h + 6 + 6 * 8..h + 6 + 7 * 8], "00000005");
    }

    #[test]
    fn results_and_metrics_parse() {
        let console = "junk\nRESULT dax pte-write pte_ok_w=256 lat_count=258\n\
                       METRIC famfs_dax_faults_total{size=\"pte\",result=\"ok\"} 1280\n\
                       VMTEST EXIT dax 0\n";
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
            metric(
                console,
                "famfs_dax_faults_total",
                &[("result", "ok"), ("size", "pte")]
            ),
            Some(1280.0)
        );
        assert_eq!(
            metric(console, "famfs_dax_faults_total", &[("size", "pmd")]),
            None
        );
        assert!(exited_ok(console, "dax").is_empty());
        assert_eq!(exited_ok(console, "fuse"), vec!["fuse never finished"]);
    }

    #[test]
    fn metric_at_skips_longer_names_and_other_prefixes() {
        let console = "METRIC x_count{a=\"1\"} 5\nFMETRIC x_count 7\nFMETRIC x 3\n\
                       FMETRIC famfs_server_requests_total{opcode=\"OPEN\"} 15\n\
                       FMETRIC famfs_server_requests_total{opcode=\"READ\"} 2\n";
        assert_eq!(metric_at(console, "FMETRIC ", "x", &[]), Some(3.0));
        assert_eq!(metric_at(console, "FMETRIC ", "x_count", &[]), Some(7.0));
        assert_eq!(metric(console, "x_count", &[("a", "1")]), Some(5.0));
        assert_eq!(metric(console, "x", &[]), None);
        assert_eq!(
            opcode_samples(console, "FMETRIC famfs_server_requests_total{"),
            vec![("OPEN".to_string(), 15.0), ("READ".to_string(), 2.0)]
        );
    }

    #[test]
    fn famfs_patterns_differ_by_file_and_page() {
        let a = famfs_pattern(0, 3 * PAGE);
        let b = famfs_pattern(1, 3 * PAGE);
        assert_eq!(a.len(), 3 * PAGE as usize);
        assert_ne!(a, b);
        // A page served from the wrong offset differs.
        let p = PAGE as usize;
        assert_ne!(a[..p], a[p..2 * p]);
        assert_ne!(a[p..2 * p], a[2 * p..]);
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
            let lb = format!("{{fs_uuid=\"U\",path=\"/{path}\"}}");
            let r = if faults > 0 {
                faults
            } else {
                size.div_ceil(32768) * n
            };
            reads += r;
            for (name, v) in [
                ("famfs_file_opens_total", n),
                ("famfs_file_open_errors_total", 0),
                ("famfs_file_open_duration_seconds_count", n),
                ("famfs_file_size_bytes", size),
                ("famfs_file_reads_total", r),
                ("famfs_file_read_bytes_total", size * n),
                ("famfs_file_written_bytes_total", 0),
                ("famfs_file_page_cache_faults_total", faults),
            ] {
                l.push(format!("FMETRIC {name}{lb} {v}"));
            }
        }
        l.push("FMETRIC famfs_file_series_folded{fs_uuid=\"U\"} 0".into());
        let requests = [("LOOKUP", 7), ("OPEN", 15), ("READ", reads), ("FLUSH", 15)];
        for (op, n) in requests {
            let lb = format!("{{connection=\"27\",opcode=\"{op}\"}}");
            l.push(format!("FMETRIC famfs_fuse_requests_total{lb} {n}"));
            l.push(format!("FMETRIC famfs_fuse_request_errors_total{lb} 0"));
            l.push(format!(
                "FMETRIC famfs_fuse_request_duration_seconds_count{lb} {n}"
            ));
        }
        let mut answered = 1;
        for (op, n) in requests.iter().chain(&[("INIT", 1)]) {
            l.push(format!(
                "FMETRIC famfs_server_requests_total{{opcode=\"{op}\"}} {n}"
            ));
            answered += if *op == "INIT" { 0 } else { *n };
        }
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
                "FMETRIC famfs_join_events_total{{outcome=\"{o}\"}} {n}"
            ));
        }
        l.push(format!(
            "FMETRIC famfs_server_records_total{{outcome=\"sent\"}} {answered}"
        ));
        l.push("FMETRIC famfs_server_records_total{outcome=\"dropped\"} 0".into());
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
                "FMETRIC famfs_probe_events_total{{event=\"{e}\"}} {n}"
            ));
        }
        l.push(
            "FMETRIC famfs_probe_attached{probe=\"fuse_request_send\",target=\"fuse:fuse_request_send\",\
             kind=\"raw_tracepoint\"} 1"
                .into(),
        );
        l.into_iter().map(edit).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn famfs_checks_pass_on_expected_values_and_name_each_deviation() {
        let good = famfs_console(|l| l);
        let res = results(&good);
        assert_eq!(famfs_checks(&good, &res), Vec::<String>::new());
        assert_eq!(famfs_stop_checks(&res), Vec::<String>::new());

        // One OPEN latency of /d lost by the join.
        let bad = famfs_console(|l| {
            if l.starts_with("FMETRIC famfs_file_open_duration_seconds_count")
                && l.contains("path=\"/d\"")
            {
                l.replace(" 5", " 4")
            } else {
                l
            }
        });
        assert_eq!(
            famfs_checks(&bad, &results(&bad)),
            vec![
                "famfs: famfs_file_open_duration_seconds_count[(\"fs_uuid\", \"U\"), (\"path\", \"/d\")] \
                 = Some(4.0), expected 5"
            ]
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
        let bad = famfs_console(|l| {
            l.replace(
                "famfs_fuse_requests_total{connection=\"27\",opcode=\"LOOKUP\"} 7",
                "famfs_fuse_requests_total{connection=\"27\",opcode=\"LOOKUP\"} 8",
            )
        });
        assert_eq!(famfs_checks(&bad, &results(&bad)).len(), 2);
        // The mount left behind.
        let bad = famfs_console(|l| l.replace("mounted_after=0", "mounted_after=1"));
        assert_eq!(
            famfs_stop_checks(&results(&bad)),
            vec!["famfs stop: mounted_after=1, expected 0"]
        );
    }
}
