//! The guest's initramfs: busybox, the kernel modules in load order (decompressed), `mke2fs`,
//! `squashfuse` and a squashfs image of known files, this workspace's binaries (stripped) with the
//! shared libraries `ldd` lists, and `/init` rendered from `init.sh`.
//!
//! Owns what goes into the guest and where; the archive format is `cpio`'s, the packages are
//! `packages`'s. Must not touch the host beyond its work directory under `<target dir>/vm-cache`.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::{FUSE_FILES, cpio::Cpio, eval, on_path, output, packages::module_order};

/// Modules the guest loads (with their dependencies from modules.dep): legacy e820 pmem → /dev/pmem0,
/// ext4, and crc32c (an ext4 soft dependency that modules.dep does not list).
const MODULES: &[&str] = &["nd_e820", "nd_pmem", "crc32c_generic", "ext4"];

/// The guest's /init, with its placeholder (see the script's header).
const INIT_TEMPLATE: &str = include_str!("init.sh");
/// Replaced in [`INIT_TEMPLATE`] by the `grep -E` alternation of [`eval::console_metric_families`].
const METRIC_FAMILIES: &str = "@METRIC_FAMILIES@";

/// Directories of the guest's root that the init script and the checks use.
const DIRS: &[&str] = &[
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
];

pub(super) struct Input<'a> {
    pub initrd: &'a Path,
    pub work: &'a Path,
    pub kroot: &'a Path,
    pub kver: &'a str,
    pub busybox: &'a Path,
    pub famfs_trace: &'a Path,
    pub famfs_daemon: &'a Path,
    /// This binary: the guest runs `xtask vm-guest famfs` (see `guest`).
    pub xtask: &'a Path,
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("reading {}", p.display()))
}

/// Write the initramfs of `i` to `i.initrd`, using `i.work` (cleared first) for intermediate files.
pub(super) fn build(i: &Input<'_>) -> Result<()> {
    if i.work.exists() {
        std::fs::remove_dir_all(i.work)
            .with_context(|| format!("clearing {}", i.work.display()))?;
    }
    std::fs::create_dir_all(i.work).with_context(|| format!("creating {}", i.work.display()))?;
    let mut c = Cpio::default();
    for d in DIRS {
        c.dir(d)?;
    }
    c.symlink("etc/mtab", "/proc/mounts")?;
    c.file("bin/busybox", 0o755, &read(i.busybox)?)?;
    add_modules(&mut c, i)?;
    add_programs(&mut c, i)?;
    add_fuse_image(&mut c, i.work)?;
    c.file("init", 0o755, render_init()?.as_bytes())?;

    let bytes = c.finish()?;
    let mut f = std::fs::File::create(i.initrd)
        .with_context(|| format!("creating {}", i.initrd.display()))?;
    f.write_all(&bytes)
        .with_context(|| format!("writing {}", i.initrd.display()))?;
    Ok(())
}

/// The kernel modules, decompressed here (busybox insmod takes plain .ko files), and
/// `lib/modules/order` naming them in load order.
fn add_modules(c: &mut Cpio, i: &Input<'_>) -> Result<()> {
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
        c.file(&format!("lib/modules/{name}.ko"), 0o644, &data)?;
        names.push_str(name);
        names.push('\n');
    }
    c.file("lib/modules/order", 0o644, names.as_bytes())?;
    Ok(())
}

/// Programs with their shared libraries.
fn add_programs(c: &mut Cpio, i: &Input<'_>) -> Result<()> {
    let mke2fs = ["/usr/sbin/mke2fs", "/sbin/mke2fs"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .context("mke2fs not found (Debian package e2fsprogs; `cargo xtask setup` installs it)")?;
    let squashfuse =
        on_path("squashfuse").context("squashfuse not found (`cargo xtask setup` installs it)")?;
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
        c.file(guest, 0o755, &data)?;
        libs.extend(ldd(host)?);
    }
    libs.sort();
    libs.dedup();
    for l in &libs {
        let guest = l.to_str().context("library path is not UTF-8")?;
        c.file(guest, 0o755, &read(l)?)?;
    }
    Ok(())
}

/// A squashfs image (`/fuse.sqfs`) with [`FUSE_FILES`] regular files of known sizes.
fn add_fuse_image(c: &mut Cpio, work: &Path) -> Result<()> {
    let mksquashfs = on_path("mksquashfs")
        .context("mksquashfs not found (`cargo xtask setup` installs squashfs-tools)")?;
    let src = work.join("fuse-src");
    std::fs::create_dir_all(&src).with_context(|| format!("creating {}", src.display()))?;
    for n in 0..FUSE_FILES {
        let body: Vec<u8> = (0..(1000 * n + 10)).map(|b| (b * 7 + n) as u8).collect();
        std::fs::write(src.join(format!("f{n}")), body).context("writing squashfs source")?;
    }
    let img = work.join("fuse.sqfs");
    output(
        "mksquashfs",
        Command::new(&mksquashfs).arg(&src).arg(&img).args([
            "-quiet",
            "-no-progress",
            "-noappend",
            "-all-root",
        ]),
    )?;
    c.file("fuse.sqfs", 0o644, &read(&img)?)?;
    Ok(())
}

/// The guest's /init: [`INIT_TEMPLATE`] with its placeholder replaced.
fn render_init() -> Result<String> {
    let families = eval::console_metric_families();
    if INIT_TEMPLATE.matches(METRIC_FAMILIES).count() != 1 {
        bail!("init.sh must hold the placeholder {METRIC_FAMILIES} exactly once");
    }
    // The names go into a shell-quoted ERE: only [a-z0-9_] may appear in them.
    if let Some(bad) = families.iter().find(|f| {
        f.is_empty()
            || !f
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    }) {
        bail!("metric family {bad:?} cannot go into the init script's grep pattern");
    }
    Ok(INIT_TEMPLATE.replace(METRIC_FAMILIES, &families.join("|")))
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
    read(src)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_greps_exactly_the_asserted_metric_families() {
        let init = render_init().unwrap();
        assert!(init.starts_with("#!/bin/busybox sh\n"));
        assert!(!init.contains(METRIC_FAMILIES));
        let want = format!(
            "grep -E '^({})' /tmp/metrics | sed 's/^/METRIC /'",
            eval::console_metric_families().join("|")
        );
        assert!(init.contains(&want), "{want}");
        assert!(init.ends_with("echo \"VM done\"\npoweroff -f\n"));
    }
}
