//! Mounts in the tests: the tests' own reading of `/proc/self/mountinfo` (independent of the crate's,
//! so it can check it), unmounting (a guard that unmounts on drop, and a forced detach for cleanup),
//! mount point directories, and a squashfuse mount of a FUSE filesystem this project did not write.
//! It only undoes mounts the tests made; it never serves a filesystem itself.

use std::{
    ffi::CString,
    io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::Command,
};

use super::{require_program, require_root};

/// A mountinfo path field with its octal escapes (`\040` for a space, ...) decoded.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Connection number (minor of `st_dev`) of the topmost mount of any type at `mountpoint`, from
/// /proc/self/mountinfo; `None` when nothing is mounted there.
pub fn mount_connection(mountpoint: &Path) -> Option<u32> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mountpoint.as_os_str().as_bytes();
    info.lines()
        .rfind(|l| l.split(' ').nth(4).is_some_and(|mp| unescape(mp) == want))
        .and_then(|l| l.split(' ').nth(2))
        .and_then(|dev| dev.split(':').nth(1))
        .and_then(|m| m.parse().ok())
}

/// True when something is mounted at `mountpoint` (canonical path).
pub fn is_mounted(mountpoint: &Path) -> bool {
    mount_connection(mountpoint).is_some()
}

fn umount2(path: &Path, flags: libc::c_int) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Detach whatever is mounted at `mountpoint`, every layer (test cleanup; errors end the loop).
pub fn force_unmount(mountpoint: &Path) {
    while is_mounted(mountpoint) {
        if umount2(mountpoint, libc::MNT_DETACH).is_err() {
            break;
        }
    }
}

/// `dir/name` created (with its parents) and canonicalized: a mount point as mountinfo shows it.
pub fn mnt_dir(dir: &Path, name: &str) -> PathBuf {
    let m = dir.join(name);
    std::fs::create_dir_all(&m).expect("create mount point");
    m.canonicalize().expect("canonical mount point")
}

/// Unmounts `path` on drop (lazily, if busy).
pub struct MountGuard(pub PathBuf);

impl MountGuard {
    /// A plain unmount now; false when it failed (busy, not mounted).
    pub fn unmount(&self) -> bool {
        umount2(&self.0, 0).is_ok()
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if is_mounted(&self.0) && !self.unmount() {
            force_unmount(&self.0);
        }
    }
}

/// A squashfuse mount of a squashfs image built from `files`, in its own temp dir; unmounted on drop.
pub struct SquashMount {
    // Field order is drop order: unmount before the temp dir is removed.
    guard: MountGuard,
    pub mnt: PathBuf,
    pub conn: u32,
    pub dir: tempfile::TempDir,
}

impl SquashMount {
    /// `None` (after printing a SKIP line) when root or the squashfs tools are missing.
    pub fn new(test: &str, files: &[(&str, Vec<u8>)]) -> Option<SquashMount> {
        if !require_root(test)
            || !require_program(test, "squashfuse")
            || !require_program(test, "mksquashfs")
        {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        for (rel, body) in files {
            let p = src.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, body).expect("write");
        }
        let img = dir.path().join("img.sqfs");
        let st = Command::new("mksquashfs")
            .args([src.as_os_str(), img.as_os_str()])
            .args(["-quiet", "-no-progress", "-noappend"])
            .status()
            .expect("mksquashfs");
        assert!(st.success(), "mksquashfs failed");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir mnt");
        // squashfuse daemonizes once the mount exists, so the mount is there when it returns.
        let st = Command::new("squashfuse")
            .arg(&img)
            .arg(&mnt)
            .status()
            .expect("squashfuse");
        assert!(st.success(), "squashfuse failed");
        let guard = MountGuard(mnt.clone());
        let conn = mount_connection(&mnt).expect("squashfuse mount in mountinfo");
        Some(SquashMount {
            dir,
            mnt,
            conn,
            guard,
        })
    }

    /// A plain unmount now; false when it failed.
    pub fn unmount(&self) -> bool {
        self.guard.unmount()
    }
}
