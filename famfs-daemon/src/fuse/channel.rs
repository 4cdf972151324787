//! The transport under the session: a [`Channel`] over `/dev/fuse` (or any message fd, such as one end
//! of a `socketpair(AF_UNIX, SOCK_SEQPACKET)` acting as a simulated kernel in tests), and the mount
//! itself: `mount(2)` of type `fuse`, the connection id from `/proc/self/mountinfo`, stale-mount
//! detection and `umount2(MNT_DETACH)`.
//!
//! Owns: fds, mount(2)/umount2(2), the FUSE_DEV_IOC_CLONE ioctl, mountinfo parsing, the mount's
//! read-ahead (its backing device info's `read_ahead_kb` in sysfs). Must not interpret
//! requests (that is `session`). Never `stat()`s its own mount point after mounting: before INIT is
//! answered that sends GETATTR to a server that is not serving yet.

use std::{
    ffi::CString,
    io::{self, IoSlice},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
    sync::Arc,
};

use super::abi::FUSE_DEV_IOC_CLONE;

/// What kind of fd a channel carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// An fd of `/dev/fuse` (clonable per worker).
    FuseDev,
    /// Any other message-preserving fd (a SEQPACKET socket in tests); shared between workers.
    Other,
}

/// One FUSE message stream: each `receive` returns one request, each `send` writes one reply or
/// notification. Cheap to clone (the fd is shared).
#[derive(Clone, Debug)]
pub struct Channel {
    fd: Arc<OwnedFd>,
    kind: ChannelKind,
}

impl Channel {
    /// Open `/dev/fuse` read-write (close-on-exec).
    pub fn open_fuse_dev() -> io::Result<Channel> {
        let fd = open_dev_fuse()?;
        Ok(Channel {
            fd: Arc::new(fd),
            kind: ChannelKind::FuseDev,
        })
    }

    /// A channel over any message-preserving fd (e.g. a `SOCK_SEQPACKET` socket whose peer plays the
    /// kernel). It is shared, never cloned, between workers.
    pub fn from_fd(fd: OwnedFd) -> Channel {
        Channel {
            fd: Arc::new(fd),
            kind: ChannelKind::Other,
        }
    }

    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Read one message into `buf`. `Ok(0)` means the peer closed (sockets); `/dev/fuse` reports an
    /// unmounted or aborted connection as ENODEV. Errors are returned as they are (the session decides
    /// which to retry).
    pub fn receive(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes; the fd is open while `self` lives.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast::<libc::c_void>(),
                buf.len(),
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Write one message gathered from `iov` in a single `writev`. Returns the bytes written.
    pub fn send(&self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
        // IoSlice is ABI-compatible with `struct iovec` on Unix (documented by std).
        let cnt = libc::c_int::try_from(iov.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: `iov` points to `cnt` valid iovecs whose buffers outlive the call; fd is open.
        let n =
            unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr().cast::<libc::iovec>(), cnt) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Make reads on this channel's fd return EAGAIN instead of blocking (a cloned `/dev/fuse` fd is
    /// its own open file, so this does not affect the other workers' fds).
    pub fn set_nonblocking(&self) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        // SAFETY: F_GETFL/F_SETFL on an fd that is open while `self` lives.
        let r = unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            if fl < 0 {
                fl
            } else {
                libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK)
            }
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Whether a message is waiting to be read (a `poll` with no timeout); false on error.
    pub fn pending(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, valid for the call; timeout 0 never blocks.
        let r = unsafe { libc::poll(&mut p, 1, 0) };
        r > 0 && p.revents & libc::POLLIN != 0
    }

    /// A channel for another worker thread: for `/dev/fuse`, a new fd attached to the same connection
    /// with `FUSE_DEV_IOC_CLONE` (each worker then has its own processing queue; a reply must go to the
    /// fd its request was read from, which the session guarantees). Falls back to sharing this fd
    /// when cloning is unsupported; the bool says whether a clone was made.
    pub fn clone_for_worker(&self) -> (Channel, bool) {
        if self.kind != ChannelKind::FuseDev {
            return (self.clone(), false);
        }
        match clone_dev_fd(self.fd.as_raw_fd()) {
            Ok(fd) => (
                Channel {
                    fd: Arc::new(fd),
                    kind: ChannelKind::FuseDev,
                },
                true,
            ),
            Err(e) => {
                log::debug!("FUSE_DEV_IOC_CLONE failed ({e}); workers share one /dev/fuse fd");
                (self.clone(), false)
            }
        }
    }
}

fn open_dev_fuse() -> io::Result<OwnedFd> {
    // SAFETY: a static NUL-terminated path; flags are valid.
    let fd = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("open /dev/fuse: {e}")));
    }
    // SAFETY: `fd` was just returned by open(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn clone_dev_fd(old: RawFd) -> io::Result<OwnedFd> {
    let new = open_dev_fuse()?;
    let arg: u32 = old as u32;
    // SAFETY: FUSE_DEV_IOC_CLONE reads one u32 (the fd to clone from) through the pointer, which is
    // valid for the call; `new` is an open /dev/fuse fd.
    let r = unsafe { libc::ioctl(new.as_raw_fd(), FUSE_DEV_IOC_CLONE as _, &arg as *const u32) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(new)
}

/// How to mount.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// `mount(2)` source, shown in mountinfo (e.g. `famfs`).
    pub source: String,
    /// Filesystem subtype: type `fuse.<subtype>` instead of `fuse`.
    pub subtype: Option<String>,
    pub read_only: bool,
    pub allow_other: bool,
    pub default_permissions: bool,
    /// `user_id=` / `group_id=` (the mount's owner); default: the effective ids.
    pub user_id: u32,
    pub group_id: u32,
    /// Detach a stale mount (stat → ENOTCONN) at the mount point before mounting.
    pub detach_stale: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            source: "famfs".into(),
            subtype: None,
            read_only: false,
            allow_other: false,
            default_permissions: true,
            // SAFETY: geteuid/getegid have no preconditions.
            user_id: unsafe { libc::geteuid() },
            // SAFETY: as above.
            group_id: unsafe { libc::getegid() },
            detach_stale: true,
        }
    }
}

impl MountOptions {
    /// The `mount(2)` data string for `/dev/fuse` fd `fd`.
    pub fn data(&self, fd: RawFd) -> String {
        let mut s = format!(
            "fd={fd},rootmode=40000,user_id={},group_id={}",
            self.user_id, self.group_id
        );
        if self.default_permissions {
            s.push_str(",default_permissions");
        }
        if self.allow_other {
            s.push_str(",allow_other");
        }
        s
    }

    /// `mount(2)` flags: always nosuid, nodev; read-only when asked.
    pub fn flags(&self) -> libc::c_ulong {
        let mut f = libc::MS_NOSUID | libc::MS_NODEV;
        if self.read_only {
            f |= libc::MS_RDONLY;
        }
        f
    }

    pub fn fstype(&self) -> String {
        match &self.subtype {
            Some(s) => format!("fuse.{s}"),
            None => "fuse".into(),
        }
    }
}

/// A live FUSE mount made by this process. Dropping it detaches the mount (`umount2(MNT_DETACH)`),
/// which ends the session's workers with ENODEV once no file on it is open.
#[derive(Debug)]
pub struct Mount {
    path: PathBuf,
    connection: u32,
    mounted_ns: u64,
    stale_detached: bool,
    active: bool,
}

impl Mount {
    /// Mount a FUSE filesystem at `mountpoint` and return the mount and the `/dev/fuse` channel to
    /// serve it on. The kernel's INIT is queued but not answered: run a session on the channel. The
    /// connection id is read from `/proc/self/mountinfo` (never by `stat()`).
    pub fn new(mountpoint: &Path, opts: &MountOptions) -> io::Result<(Mount, Channel)> {
        let stale_detached = if opts.detach_stale {
            detach_stale(mountpoint)?
        } else {
            false
        };
        let path = mountpoint.canonicalize().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("mount point {}: {e}", mountpoint.display()),
            )
        })?;
        let ch = Channel::open_fuse_dev()?;
        let c_path = cstring(path.as_os_str().as_bytes(), "mount point")?;
        let c_src = cstring(opts.source.as_bytes(), "mount source")?;
        let c_type = cstring(opts.fstype().as_bytes(), "fs type")?;
        let c_data = cstring(opts.data(ch.raw_fd()).as_bytes(), "mount data")?;
        let mounted_ns = crate::util::monotonic_ns();
        // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
        let r = unsafe {
            libc::mount(
                c_src.as_ptr(),
                c_path.as_ptr(),
                c_type.as_ptr(),
                opts.flags(),
                c_data.as_ptr().cast::<libc::c_void>(),
            )
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("mount(2) fuse at {}: {e}", path.display()),
            ));
        }
        let mut m = Mount {
            path,
            connection: 0,
            mounted_ns,
            stale_detached,
            active: true,
        };
        match mount_connection(&m.path) {
            Ok(c) => m.connection = c,
            Err(e) => {
                // Dropping `m` detaches the mount we just made.
                return Err(e);
            }
        }
        Ok((m, ch))
    }

    /// The canonical mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The FUSE connection id (minor of the mount's `st_dev`): the `connection` field of the
    /// `fuse:fuse_request_*` tracepoints and the `dev` of DAX fault events.
    pub fn connection(&self) -> u32 {
        self.connection
    }

    /// CLOCK_MONOTONIC ns just before `mount(2)` (which queues INIT): the earliest time a kernel event
    /// of this mount can carry.
    pub fn mounted_ns(&self) -> u64 {
        self.mounted_ns
    }

    /// Whether a stale mount was detached from the mount point first.
    pub fn stale_detached(&self) -> bool {
        self.stale_detached
    }

    /// The kernel's read-ahead for this mount, in KiB ([`read_ahead_kb`]).
    pub fn read_ahead_kb(&self) -> io::Result<u32> {
        read_ahead_kb(self.connection)
    }

    /// Set the kernel's read-ahead for this mount ([`set_read_ahead_kb`]): only after INIT was
    /// answered, or INIT lowers it again.
    pub fn set_read_ahead_kb(&self, kb: u32) -> io::Result<()> {
        set_read_ahead_kb(self.connection, kb)
    }

    /// Detach the mount now (idempotent).
    pub fn unmount(&mut self) -> io::Result<()> {
        if !self.active {
            return Ok(());
        }
        self.active = false;
        umount_detach(&self.path)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            log::warn!("unmount {}: {e}", self.path.display());
        }
    }
}

fn cstring(b: &[u8], what: &str) -> io::Result<CString> {
    CString::new(b).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    })
}

/// The sysfs file holding the read-ahead (KiB) of FUSE connection `connection`'s backing device
/// info: FUSE registers it as `MAJOR:MINOR` of the mount's device.
pub fn read_ahead_path(connection: u32) -> PathBuf {
    PathBuf::from(format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        connection >> 20,
        connection & 0xf_ffff
    ))
}

/// The read-ahead (KiB) the kernel uses for files of FUSE connection `connection`.
pub fn read_ahead_kb(connection: u32) -> io::Result<u32> {
    let p = read_ahead_path(connection);
    let text = std::fs::read_to_string(&p)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
    text.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a number: {:?}", p.display(), text.trim()),
        )
    })
}

/// Set the read-ahead (KiB) of FUSE connection `connection`. The kernel caps FUSE read-ahead at
/// this value whatever INIT's `max_readahead` says, and INIT's reply lowers it to
/// `min(this, max_readahead)`: set it after INIT was answered. Needs write access to sysfs (root).
pub fn set_read_ahead_kb(connection: u32, kb: u32) -> io::Result<()> {
    let p = read_ahead_path(connection);
    std::fs::write(&p, kb.to_string())
        .map_err(|e| io::Error::new(e.kind(), format!("write {kb} to {}: {e}", p.display())))
}

/// `umount2(path, MNT_DETACH)`.
pub fn umount_detach(path: &Path) -> io::Result<()> {
    let c = cstring(path.as_os_str().as_bytes(), "mount point")?;
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("umount2 {}: {e}", path.display()),
        ));
    }
    Ok(())
}

/// If `mountpoint` is a FUSE mount whose server is gone (stat or statfs gives ENOTCONN), detach it
/// and return true (with a warning in the log). Any other outcome: false.
///
/// statfs is asked too because `stat` of a dead mount succeeds while the kernel still holds cached
/// root attributes (attr timeout); STATFS is never cached, so it reaches the dead connection.
pub fn detach_stale(mountpoint: &Path) -> io::Result<bool> {
    let stat = std::fs::metadata(mountpoint).map(|_| ());
    let dead = |r: &io::Result<()>| matches!(r, Err(e) if e.raw_os_error() == Some(libc::ENOTCONN));
    let stale = dead(&stat) || (stat.is_ok() && dead(&statfs(mountpoint)));
    if !stale {
        return Ok(false);
    }
    log::warn!(
        "{}: stale FUSE mount (ENOTCONN), detaching it",
        mountpoint.display()
    );
    umount_detach(mountpoint)?;
    Ok(true)
}

fn statfs(path: &Path) -> io::Result<()> {
    let c = cstring(path.as_os_str().as_bytes(), "mount point")?;
    // SAFETY: an all-zero statfs is a valid value for the kernel to overwrite.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a valid, writable statfs for the call.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The connection id of the FUSE mount at `mountpoint` (canonical path) from `/proc/self/mountinfo`.
pub fn mount_connection(mountpoint: &Path) -> io::Result<u32> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    connection_from_mountinfo(&info, mountpoint).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no FUSE mount at {} in /proc/self/mountinfo",
                mountpoint.display()
            ),
        )
    })
}

/// From mountinfo text: the last `fuse`/`fuse.*` mount at `mountpoint` (escapes such as `\040`
/// decoded), as the kernel's dev_t (`major << 20 | minor`, = minor for FUSE's anonymous devices).
pub fn connection_from_mountinfo(info: &str, mountpoint: &Path) -> Option<u32> {
    let want = mountpoint.as_os_str().as_bytes();
    info.lines().rev().find_map(|l| {
        let mut f = l.split(' ');
        let dev = f.nth(2)?;
        let mp = f.nth(1)?;
        let (_, after) = l.split_once(" - ")?;
        let fstype = after.split(' ').next()?;
        if fstype != "fuse" && !fstype.starts_with("fuse.") {
            return None;
        }
        if !mountinfo_path_eq(mp, want) {
            return None;
        }
        let (maj, min) = dev.split_once(':')?;
        let maj: u32 = maj.parse().ok()?;
        let min: u32 = min.parse().ok()?;
        Some(famfs_common::dev::kernel_dev(maj, min))
    })
}

/// Compare a mountinfo path field (octal escapes `\ooo`) with raw bytes.
fn mountinfo_path_eq(field: &str, want: &[u8]) -> bool {
    let b = field.as_bytes();
    let (mut i, mut j) = (0, 0);
    while i < b.len() {
        let c = if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            i += 4;
            match u8::try_from(v) {
                Ok(v) => v,
                Err(_) => return false,
            }
        } else {
            i += 1;
            b[i - 1]
        };
        if want.get(j) != Some(&c) {
            return false;
        }
        j += 1;
    }
    j == want.len()
}
