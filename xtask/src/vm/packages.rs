//! The guest's Debian packages: picks the newest 6.12 kernel image, `apt-get download`s it, `busybox-static`
//! and `kmod` into the cache (once), unpacks them with `dpkg -x` (once), runs the unpacked kmod's `depmod`
//! on the unpacked kernel tree, and orders modules by the resulting `modules.dep`.
//!
//! Owns the cache's package layout only; must not install anything on the host nor read the console.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::output;

/// The unpacked guest kernel and the busybox that goes with it.
pub(super) struct Kernel {
    /// Root of the unpacked kernel package (`boot/`, `lib/modules/<version>/`).
    pub root: PathBuf,
    /// The kernel release, the one directory under `lib/modules`.
    pub version: String,
    /// The unpacked static busybox binary.
    pub busybox: PathBuf,
}

impl Kernel {
    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join(format!("boot/vmlinuz-{}", self.version))
    }
}

/// Fetch and unpack the kernel, busybox and kmod into `cache`, and give the kernel tree its modules.dep.
pub(super) fn fetch(cache: &Path) -> Result<Kernel> {
    let kpkg = pick_kernel()?;
    eprintln!("== vm-test: kernel package {kpkg}");
    let debs = cache.join("debs");
    let root = unpack(&debs, cache, &kpkg)?;
    let bbroot = unpack(&debs, cache, "busybox-static")?;
    let kmodroot = unpack(&debs, cache, "kmod")?;
    let version = kernel_version(&root)?;
    depmod(&kmodroot, &root, &version)?;
    Ok(Kernel {
        root,
        version,
        busybox: bbroot.join("bin/busybox"),
    })
}

/// Known `linux-image-6.12.N+deb12-amd64[-unsigned]` packages, newest patch first and, at equal patch,
/// the signed name (shorter) first.
fn kernel_packages() -> Result<Vec<(u32, String)>> {
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
    v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.len().cmp(&b.1.len())));
    Ok(v)
}

/// Newest `linux-image-6.12.N+deb12-amd64` (the signed image; `-unsigned` only when no signed one).
fn pick_kernel() -> Result<String> {
    let mut found = kernel_packages()?;
    if found.is_empty() {
        eprintln!("vm-test: no 6.12 kernel package known; running apt-get update");
        output(
            "apt-get update",
            Command::new("apt-get").args(["update", "-qq"]),
        )?;
        found = kernel_packages()?;
    }
    match found.into_iter().next() {
        Some((_, name)) => Ok(name),
        None => bail!(
            "no linux-image-6.12.*+deb12-amd64 package in the apt sources: the VM lane needs Debian's \
             bookworm-security suite (check with `apt-cache policy 'linux-image-6.12.*'`)"
        ),
    }
}

/// The downloaded `.deb` of `pkg` in `debs`, if any.
fn find_deb(debs: &Path, pkg: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{pkg}_");
    for e in std::fs::read_dir(debs).with_context(|| format!("listing {}", debs.display()))? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// `apt-get download` `pkg` into `debs` (once) and `dpkg -x` it into `cache/pkg` (once).
fn unpack(debs: &Path, cache: &Path, pkg: &str) -> Result<PathBuf> {
    let dest = cache.join(pkg);
    let done = dest.join(".unpacked");
    if done.exists() {
        return Ok(dest);
    }
    std::fs::create_dir_all(debs).with_context(|| format!("creating {}", debs.display()))?;
    let deb = match find_deb(debs, pkg)? {
        Some(d) => d,
        None => {
            eprintln!("vm-test: apt-get download {pkg}");
            output(
                &format!("apt-get download {pkg} (is the Debian mirror reachable?)"),
                Command::new("apt-get")
                    .args(["download", "-q", "-o", "APT::Sandbox::User=root", pkg])
                    .current_dir(debs),
            )?;
            find_deb(debs, pkg)?.with_context(|| format!("apt-get download {pkg} left no .deb"))?
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

/// modules.dep as a table: module name → (path relative to the modules dir, names of its dependencies).
type DepTable = HashMap<String, (String, Vec<String>)>;

/// Module name of a modules.dep path: file name without `.ko*`, `-` spelled `_`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

fn dep_table(modules_dep: &str) -> Result<DepTable> {
    let mut table = DepTable::new();
    for (i, line) in modules_dep.lines().enumerate() {
        let Some((path, deps)) = line.split_once(':') else {
            bail!("modules.dep line {}: no ':' in {line:?}", i + 1);
        };
        table.insert(
            module_name(path),
            (
                path.to_string(),
                deps.split_whitespace().map(module_name).collect(),
            ),
        );
    }
    Ok(table)
}

/// Depth-first: `name`'s dependencies, then `name`, each once.
fn visit(
    name: &str,
    table: &DepTable,
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

/// Modules to load, dependencies first, from modules.dep: (name, path relative to the modules dir).
pub(super) fn module_order(modules_dep: &str, wanted: &[&str]) -> Result<Vec<(String, String)>> {
    let table = dep_table(modules_dep)?;
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for w in wanted {
        visit(w, &table, &mut seen, &mut order, 0)?;
    }
    Ok(order)
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
}
