//! Least privilege for `famfs-daemon run`. Start-up needs root's capabilities (mount(2) of the FUSE
//! filesystem, loading and attaching the eBPF probes, mounting tracefs, BPF_ENABLE_STATS); the steady
//! state (FUSE requests on the `/dev/fuse` fds, I/O on the open image, BPF map reads on open map fds,
//! HTTP on the bound listener, the log poll) needs none. Capabilities are per thread on Linux, so the
//! order is what makes every thread end with the same reduced set:
//!
//! 1. [`Sandbox::drop_privileges`] runs on the process's only thread, after the mount, the probes
//!    and the listener exist and before any thread starts (it refuses to run otherwise): it clears
//!    the bounding and ambient sets, empties the effective and inheritable sets, keeps only
//!    CAP_SYS_ADMIN in the permitted set and only when there is a mount to take down, and sets
//!    NO_NEW_PRIVS. Every thread started afterwards (FUSE workers, the join, the log watcher, tokio's
//!    workers and blocking pool) inherits exactly these credentials.
//! 2. [`Sandbox::lock_down`], once serving: the seccomp allow-list of the steady state ([`seccomp`])
//!    on every thread (TSYNC), then a check of `/proc/self/task/*/status` that every thread has the
//!    documented set ([`Sandbox::expected`]); a thread that does not fails the start.
//! 3. [`with_unmount_capability`] raises CAP_SYS_ADMIN into the calling thread's effective set for
//!    the `umount2` at shutdown only.
//!
//! Owns the capability, NO_NEW_PRIVS and seccomp system calls, the allow-list and the per-thread
//! check. Must not decide when they happen (that is `daemon::run`'s start-up order) and must not
//! know what the FUSE, famfs or HTTP layers do beyond the system calls they make.

pub mod seccomp;

use std::{io, path::Path};

use anyhow::{Context, Result, bail};

pub const CAP_SETPCAP: u32 = 8;
pub const CAP_SYS_ADMIN: u32 = 21;

/// Capability names by number (`linux/capability.h`, up to CAP_CHECKPOINT_RESTORE).
const CAP_NAMES: [&str; 41] = [
    "cap_chown",
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",
];

/// The mask bit of capability `cap`.
pub const fn cap_bit(cap: u32) -> u64 {
    1 << cap
}

/// `cap_a,cap_b` for a capability mask (`none` when empty; unknown numbers as `cap_N`).
pub fn cap_names(mask: u64) -> String {
    let names: Vec<String> = (0..64u32)
        .filter(|c| mask & cap_bit(*c) != 0)
        .map(|c| {
            CAP_NAMES
                .get(c as usize)
                .map_or_else(|| format!("cap_{c}"), |n| (*n).to_string())
        })
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    }
}

/// A thread's effective, permitted and inheritable capability sets (capget/capset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct` (two of them for the 64 capability bits of version 3).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn split(v: u64) -> (u32, u32) {
    (v as u32, (v >> 32) as u32)
}

/// The calling thread's capability sets.
pub fn capget() -> io::Result<CapSets> {
    let mut h = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut d = [CapData::default(); 2];
    // SAFETY: capget(2) with a version-3 header reads the header and writes two data structs,
    // both valid for the call; pid 0 is the calling thread.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h as *mut CapHeader, d.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok(CapSets {
        effective: join(d[0].effective, d[1].effective),
        permitted: join(d[0].permitted, d[1].permitted),
        inheritable: join(d[0].inheritable, d[1].inheritable),
    })
}

/// Set the calling thread's capability sets.
pub fn capset(s: CapSets) -> io::Result<()> {
    let mut h = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let (e0, e1) = split(s.effective);
    let (p0, p1) = split(s.permitted);
    let (i0, i1) = split(s.inheritable);
    let d = [
        CapData {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        CapData {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: capset(2) with a version-3 header reads the header and two data structs, both valid
    // for the call; pid 0 is the calling thread.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut h as *mut CapHeader, d.as_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn prctl(option: libc::c_int, arg: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: the prctl options used here (CAPBSET_READ/DROP, CAP_AMBIENT clear, NO_NEW_PRIVS) take
    // integers only and touch no memory of ours.
    let r = unsafe { libc::prctl(option, arg, 0 as libc::c_ulong, 0 as libc::c_ulong, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// The calling thread's bounding set (every capability the running kernel knows).
pub fn bounding_set() -> io::Result<u64> {
    let mut set = 0;
    for cap in 0..64u32 {
        match prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap)) {
            Ok(1) => set |= cap_bit(cap),
            Ok(_) => {}
            // Past the kernel's last capability.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(set)
}

/// Reduce the calling thread's capabilities to `keep`, held in the permitted set only (effective,
/// inheritable and ambient sets empty), and clear the bounding set but `keep` when the thread may
/// (it needs CAP_SETPCAP, which root has; without it the bounding set stays, and NO_NEW_PRIVS is
/// what keeps execve from gaining anything). Returns the bounding set left.
pub fn drop_thread_capabilities(keep: u64) -> io::Result<u64> {
    let now = capget()?;
    let bounding = bounding_set()?;
    if bounding & !keep != 0 && now.effective & cap_bit(CAP_SETPCAP) != 0 {
        for cap in (0..64u32).filter(|c| bounding & !keep & cap_bit(*c) != 0) {
            prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "dropping {} from the bounding set: {e}",
                        cap_names(cap_bit(cap))
                    ),
                )
            })?;
        }
    }
    match prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    ) {
        // EINVAL: a kernel without ambient capabilities has none to clear.
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => {
            return Err(io::Error::new(
                e.kind(),
                format!("clearing the ambient set: {e}"),
            ));
        }
        _ => {}
    }
    capset(CapSets {
        effective: 0,
        permitted: now.permitted & keep,
        inheritable: 0,
    })
    .map_err(|e| io::Error::new(e.kind(), format!("capset: {e}")))?;
    bounding_set()
}

/// Set NO_NEW_PRIVS on the calling thread (inherited by threads it starts later).
pub fn set_no_new_privs() -> io::Result<()> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map(|_| ())
}

/// A thread's credentials as `/proc/PID/task/TID/status` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadCreds {
    pub inheritable: u64,
    pub permitted: u64,
    pub effective: u64,
    pub bounding: u64,
    pub ambient: u64,
    pub no_new_privs: bool,
    /// 0 none, 1 strict, 2 filter.
    pub seccomp: u8,
}

impl ThreadCreds {
    /// Parse the `Cap*:`, `NoNewPrivs:` and `Seccomp:` lines of a status file; `None` when one is
    /// missing or malformed.
    pub fn parse(status: &str) -> Option<ThreadCreds> {
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
        };
        let hex = |key: &str| field(key).and_then(|v| u64::from_str_radix(v, 16).ok());
        Some(ThreadCreds {
            inheritable: hex("CapInh:")?,
            permitted: hex("CapPrm:")?,
            effective: hex("CapEff:")?,
            bounding: hex("CapBnd:")?,
            ambient: hex("CapAmb:")?,
            no_new_privs: field("NoNewPrivs:")? == "1",
            seccomp: field("Seccomp:")?.parse().ok()?,
        })
    }

    /// What differs from `want`, as `CapEff 0000000000200000 (want 0000000000000000)` items.
    pub fn differences(&self, want: &ThreadCreds) -> Vec<String> {
        let mut d = Vec::new();
        let mut cap = |name: &str, have: u64, want: u64| {
            if have != want {
                d.push(format!("{name} {have:016x} (want {want:016x})"));
            }
        };
        cap("CapInh", self.inheritable, want.inheritable);
        cap("CapPrm", self.permitted, want.permitted);
        cap("CapEff", self.effective, want.effective);
        cap("CapBnd", self.bounding, want.bounding);
        cap("CapAmb", self.ambient, want.ambient);
        if self.no_new_privs != want.no_new_privs {
            d.push(format!("NoNewPrivs {}", u8::from(self.no_new_privs)));
        }
        if self.seccomp != want.seccomp {
            d.push(format!("Seccomp {} (want {})", self.seccomp, want.seccomp));
        }
        d
    }
}

/// Every thread of the process whose `/proc` directory is `proc_pid`: (tid, name, credentials).
/// Threads that end while they are read are left out.
pub fn threads(proc_pid: &Path) -> io::Result<Vec<(u32, String, ThreadCreds)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(proc_pid.join("task"))? {
        let e = e?;
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let status = match std::fs::read_to_string(e.path().join("status")) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .map(|n| n.trim().to_string())
            .unwrap_or_default();
        let creds = ThreadCreds::parse(&status).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: no capability lines", e.path().display()),
            )
        })?;
        out.push((tid, name, creds));
    }
    out.sort_by_key(|t| t.0);
    Ok(out)
}

/// The process's reduced credentials, from [`Sandbox::drop_privileges`] on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sandbox {
    /// Permitted set kept (CAP_SYS_ADMIN when there is a mount to take down, else nothing).
    permitted: u64,
    /// Bounding set left (the same as `permitted` when the process had CAP_SETPCAP).
    bounding: u64,
}

impl Sandbox {
    /// Drop every capability the steady state does not need and set NO_NEW_PRIVS, on the process's
    /// only thread (an error if another one exists: it would keep its capabilities). With `unmount`,
    /// CAP_SYS_ADMIN stays in the permitted set (not effective) for `umount2` at shutdown.
    pub fn drop_privileges(unmount: bool) -> Result<Sandbox> {
        let n = std::fs::read_dir("/proc/self/task")
            .context("listing /proc/self/task")?
            .count();
        if n != 1 {
            bail!(
                "dropping privileges: {n} threads run, but it must happen before the first thread \
                 starts (capabilities are per thread); a start-up step started one"
            );
        }
        let keep = if unmount { cap_bit(CAP_SYS_ADMIN) } else { 0 };
        let bounding = drop_thread_capabilities(keep).context("dropping capabilities")?;
        set_no_new_privs().context("setting NO_NEW_PRIVS")?;
        let permitted = capget().context("capget")?.permitted;
        Ok(Sandbox {
            permitted,
            bounding,
        })
    }

    /// What every thread's status shows once locked down.
    pub fn expected(&self) -> ThreadCreds {
        ThreadCreds {
            inheritable: 0,
            permitted: self.permitted,
            effective: 0,
            bounding: self.bounding,
            ambient: 0,
            no_new_privs: true,
            seccomp: 2,
        }
    }

    /// Install the steady state's seccomp allow-list on every thread, then check that every thread
    /// has [`Self::expected`]. Prints one line saying what is in force.
    pub fn lock_down(&self) -> Result<()> {
        let n = seccomp::install(seccomp::Scope::Process)
            .context("installing the seccomp allow-list")?;
        let want = self.expected();
        let threads = threads(Path::new("/proc/self")).context("reading /proc/self/task")?;
        for (tid, name, creds) in &threads {
            let d = creds.differences(&want);
            if !d.is_empty() {
                bail!(
                    "thread {tid} ({name}) was not sandboxed: {} (started before the privilege \
                     drop?)",
                    d.join(", ")
                );
            }
        }
        // Without CAP_SETPCAP (not root) the bounding set stays; NO_NEW_PRIVS keeps execve from
        // using it.
        let bounding = if self.bounding & !self.permitted == 0 {
            cap_names(self.bounding)
        } else {
            "left as it was (no cap_setpcap)".into()
        };
        eprintln!(
            "famfs-daemon: sandbox: {} threads with no effective capability, permitted {}, \
             bounding {bounding}, no_new_privs, seccomp allow-list of {n} system calls (others \
             fail with EPERM and are logged by the kernel)",
            threads.len(),
            cap_names(self.permitted),
        );
        Ok(())
    }
}

/// Run `f` with CAP_SYS_ADMIN in the calling thread's effective set when it is only permitted (the
/// sandboxed daemon's `umount2` at shutdown), lowering it again afterwards. Without the capability
/// in the permitted set, `f` simply runs (and its unmount fails with EPERM, reported by the caller).
pub fn with_unmount_capability<T>(f: impl FnOnce() -> T) -> T {
    let admin = cap_bit(CAP_SYS_ADMIN);
    let raised = match capget() {
        Ok(c) if c.permitted & admin != 0 && c.effective & admin == 0 => {
            match capset(CapSets {
                effective: c.effective | admin,
                ..c
            }) {
                Ok(()) => Some(c),
                Err(e) => {
                    log::warn!("raising cap_sys_admin for the unmount: {e}");
                    None
                }
            }
        }
        _ => None,
    };
    let r = f();
    if let Some(c) = raised
        && let Err(e) = capset(c)
    {
        log::warn!("lowering cap_sys_admin after the unmount: {e}");
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tfuse-worker-1\nUmask:\t0022\nState:\tS (sleeping)\n\
        CapInh:\t0000000000000000\nCapPrm:\t0000000000200000\nCapEff:\t0000000000000000\n\
        CapBnd:\t0000000000200000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n\
        Seccomp_filters:\t1\n";

    #[test]
    fn status_lines_parse_and_compare() {
        let c = ThreadCreds::parse(STATUS).unwrap();
        assert_eq!(
            c,
            ThreadCreds {
                inheritable: 0,
                permitted: 0x20_0000,
                effective: 0,
                bounding: 0x20_0000,
                ambient: 0,
                no_new_privs: true,
                seccomp: 2,
            }
        );
        let s = Sandbox {
            permitted: 0x20_0000,
            bounding: 0x20_0000,
        };
        assert!(c.differences(&s.expected()).is_empty());
        let root = ThreadCreds {
            effective: 0x1ff_ffff_ffff,
            ..c
        };
        assert_eq!(
            root.differences(&s.expected()),
            ["CapEff 000001ffffffffff (want 0000000000000000)"]
        );
        assert_eq!(ThreadCreds::parse("Name:\tx\nCapInh:\tzz\n"), None);
    }

    #[test]
    fn capability_names() {
        assert_eq!(cap_names(0), "none");
        assert_eq!(cap_names(cap_bit(CAP_SYS_ADMIN)), "cap_sys_admin");
        assert_eq!(
            cap_names(cap_bit(CAP_SETPCAP) | cap_bit(39) | cap_bit(38) | cap_bit(50)),
            "cap_setpcap,cap_perfmon,cap_bpf,cap_50"
        );
    }
}
