//! The seccomp allow-list of the daemon's steady state, compiled with `seccompiler` and installed
//! with `SECCOMP_FILTER_FLAG_TSYNC` (every thread) and `SECCOMP_FILTER_FLAG_LOG` (the kernel logs
//! what it refuses).
//!
//! The list is what the serving daemon was seen to do (`strace -f` of a daemon with probes, a mount,
//! reads and writes, scrapes, log polls, SIGHUP and SIGTERM; `tests/privilege.rs` keeps it honest):
//! FUSE `read`/`writev` on `/dev/fuse` (and the FUSE_DEV_IOC_CLONE ioctl of a worker's fd), image
//! `pread`/`pwrite`/`msync`, `splice` of image data into a worker's pipe (made before the drop) and
//! on into `/dev/fuse`, BPF map reads and `BPF_OBJ_GET_INFO_BY_FD` on fds the probes opened,
//! `/proc/self/fdinfo` and sysfs reads, epoll/`accept4`/`recvfrom`/`sendto` for HTTP, futexes,
//! clocks, the allocator's `mmap`/`munmap`/`madvise`/`brk`, new threads (`clone` with CLONE_THREAD
//! only), signals, `capset` and `umount2(MNT_DETACH)` for the unmount at shutdown, `exit_group`.
//!
//! Anything else fails with EPERM rather than killing the daemon: the mount stays up for its users,
//! the failing operation reports an ordinary error, and the kernel's audit log names the call
//! (`type=1326 ... syscall=N`). Arguments are checked where that narrows the call: no executable
//! mappings, no file creation, `clone` only for threads (`clone3` answers ENOSYS, so glibc falls
//! back to `clone`, whose flags a filter can see), only the listed `ioctl`, `prctl` and `bpf`
//! commands, `tgkill` only within this process.
//!
//! Owns the list and its installation; must not decide when it is installed.

use std::io;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

use crate::fuse::abi::FUSE_DEV_IOC_CLONE;

/// What a call's arguments must satisfy (32-bit comparisons: every argument checked is an `int`
/// or its low half is what the kernel reads).
#[derive(Clone, Copy, Debug)]
enum Args {
    Any,
    /// Argument `.0` is this value.
    Is(u8, u64),
    /// Argument `.0` is one of these values.
    OneOf(u8, &'static [u64]),
    /// Argument `.0` has none of these bits.
    Without(u8, u64),
    /// Argument `.0` has all of these bits.
    With(u8, u64),
}

/// One allowed system call.
#[derive(Clone, Copy, Debug)]
struct Allowed {
    name: &'static str,
    nr: libc::c_long,
    args: Args,
}

const fn any(name: &'static str, nr: libc::c_long) -> Allowed {
    Allowed {
        name,
        nr,
        args: Args::Any,
    }
}

const fn with(name: &'static str, nr: libc::c_long, args: Args) -> Allowed {
    Allowed { name, nr, args }
}

// The ioctl request type is `c_ulong` on glibc targets and `c_int` elsewhere.
#[allow(clippy::unnecessary_cast)]
const IOCTLS: &[u64] = &[
    FUSE_DEV_IOC_CLONE as u64,
    libc::FIONBIO as u64,
    libc::FIOCLEX as u64,
];
const PRCTLS: &[u64] = &[libc::PR_SET_NAME as u64, libc::PR_GET_NAME as u64];
/// BPF_MAP_LOOKUP_ELEM, _UPDATE_ELEM, _DELETE_ELEM, _GET_NEXT_KEY, BPF_OBJ_GET_INFO_BY_FD: work on
/// fds the probes already hold. Loading, attaching, pinning and fd-by-id lookups are refused.
const BPF_CMDS: &[u64] = &[1, 2, 3, 4, 15];
const UMOUNT_FLAGS: &[u64] = &[libc::MNT_DETACH as u64];
/// O_CREAT and O_TMPFILE's own bit (O_TMPFILE includes O_DIRECTORY, which is fine alone).
const CREATE_FLAGS: u64 = (libc::O_CREAT | (libc::O_TMPFILE & !libc::O_DIRECTORY)) as u64;

/// The allow-list; `pid` is this process (for `tgkill`).
fn allow_list(pid: u64) -> Vec<Allowed> {
    use libc::*;
    let mut v = vec![
        // File and socket I/O on fds opened during start-up (FUSE, image, listener, BPF, stdio).
        any("read", SYS_read),
        any("write", SYS_write),
        any("readv", SYS_readv),
        any("writev", SYS_writev),
        any("pread64", SYS_pread64),
        any("pwrite64", SYS_pwrite64),
        any("preadv", SYS_preadv),
        any("pwritev", SYS_pwritev),
        any("preadv2", SYS_preadv2),
        any("pwritev2", SYS_pwritev2),
        // Spliced READ replies: image → a worker's pipe (made before the drop) → /dev/fuse.
        any("splice", SYS_splice),
        any("lseek", SYS_lseek),
        any("close", SYS_close),
        any("fcntl", SYS_fcntl),
        any("fstat", SYS_fstat),
        any("newfstatat", SYS_newfstatat),
        any("statx", SYS_statx),
        any("getdents64", SYS_getdents64),
        any("fsync", SYS_fsync),
        any("fdatasync", SYS_fdatasync),
        any("msync", SYS_msync),
        // Advisory locks on the image fd (the log's writer lock).
        any("flock", SYS_flock),
        // Reading /proc and /sys files (fdinfo, task status, cpu list) and TLS files; never creating.
        with("openat", SYS_openat, Args::Without(2, CREATE_FLAGS)),
        with("ioctl", SYS_ioctl, Args::OneOf(1, IOCTLS)),
        // Memory: the allocator and thread stacks; never executable.
        with("mmap", SYS_mmap, Args::Without(2, PROT_EXEC as u64)),
        with("mprotect", SYS_mprotect, Args::Without(2, PROT_EXEC as u64)),
        any("munmap", SYS_munmap),
        any("mremap", SYS_mremap),
        any("madvise", SYS_madvise),
        any("brk", SYS_brk),
        // Threads, synchronisation, time, randomness.
        with("clone", SYS_clone, Args::With(0, CLONE_THREAD as u64)),
        any("futex", SYS_futex),
        any("set_robust_list", SYS_set_robust_list),
        any("rseq", SYS_rseq),
        any("sched_yield", SYS_sched_yield),
        any("sched_getaffinity", SYS_sched_getaffinity),
        with("prctl", SYS_prctl, Args::OneOf(0, PRCTLS)),
        any("gettid", SYS_gettid),
        any("getpid", SYS_getpid),
        any("getuid", SYS_getuid),
        any("geteuid", SYS_geteuid),
        any("getgid", SYS_getgid),
        any("getegid", SYS_getegid),
        any("getrandom", SYS_getrandom),
        any("clock_gettime", SYS_clock_gettime),
        any("clock_getres", SYS_clock_getres),
        any("clock_nanosleep", SYS_clock_nanosleep),
        any("nanosleep", SYS_nanosleep),
        any("gettimeofday", SYS_gettimeofday),
        // Signals (tokio's handlers, SIGTERM/SIGINT/SIGHUP; abort() within this process).
        any("rt_sigaction", SYS_rt_sigaction),
        any("rt_sigprocmask", SYS_rt_sigprocmask),
        any("rt_sigreturn", SYS_rt_sigreturn),
        any("sigaltstack", SYS_sigaltstack),
        any("restart_syscall", SYS_restart_syscall),
        with("tgkill", SYS_tgkill, Args::Is(0, pid)),
        // Event loops: tokio (epoll), the probes' ring buffer (poll).
        any("epoll_pwait", SYS_epoll_pwait),
        any("epoll_pwait2", SYS_epoll_pwait2),
        any("epoll_ctl", SYS_epoll_ctl),
        any("ppoll", SYS_ppoll),
        // HTTP on the listener bound at start-up (no new sockets, no bind/connect).
        any("accept4", SYS_accept4),
        any("recvfrom", SYS_recvfrom),
        any("recvmsg", SYS_recvmsg),
        any("sendto", SYS_sendto),
        any("sendmsg", SYS_sendmsg),
        any("shutdown", SYS_shutdown),
        any("getsockopt", SYS_getsockopt),
        any("setsockopt", SYS_setsockopt),
        any("getsockname", SYS_getsockname),
        any("getpeername", SYS_getpeername),
        // Probe maps and statistics.
        with("bpf", SYS_bpf, Args::OneOf(0, BPF_CMDS)),
        // Shutdown: raise CAP_SYS_ADMIN (permitted only) and detach the mount.
        any("capget", SYS_capget),
        any("capset", SYS_capset),
        with("umount2", SYS_umount2, Args::OneOf(1, UMOUNT_FLAGS)),
        any("exit", SYS_exit),
        any("exit_group", SYS_exit_group),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([any("epoll_wait", SYS_epoll_wait), any("poll", SYS_poll)]);
    v
}

/// The names of the allowed system calls (for tests and documentation).
pub fn allowed_names() -> Vec<&'static str> {
    let mut v: Vec<_> = allow_list(0).iter().map(|a| a.name).collect();
    v.sort_unstable();
    v
}

fn rule(args: Args) -> io::Result<Vec<SeccompRule>> {
    let cond = |i: u8, op: SeccompCmpOp, value: u64| {
        SeccompCondition::new(i, SeccompCmpArgLen::Dword, op, value)
            .and_then(|c| SeccompRule::new(vec![c]))
            .map_err(io::Error::other)
    };
    Ok(match args {
        Args::Any => Vec::new(),
        Args::Is(i, v) => vec![cond(i, SeccompCmpOp::Eq, v)?],
        Args::OneOf(i, values) => values
            .iter()
            .map(|v| cond(i, SeccompCmpOp::Eq, *v))
            .collect::<io::Result<_>>()?,
        Args::Without(i, bits) => vec![cond(i, SeccompCmpOp::MaskedEq(bits), 0)?],
        Args::With(i, bits) => vec![cond(i, SeccompCmpOp::MaskedEq(bits), bits)?],
    })
}

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;

/// The compiled filter for process `pid`.
pub fn program(pid: u32) -> io::Result<BpfProgram> {
    let mut rules = std::collections::BTreeMap::new();
    for a in allow_list(u64::from(pid)) {
        rules.insert(a.nr, rule(a.args)?);
    }
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(io::Error::other)?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(io::Error::other)?;
    let mut prog: BpfProgram = filter.try_into().map_err(io::Error::other)?;
    // After the 3-instruction architecture check, answer clone3 with ENOSYS (glibc then uses
    // clone, whose flags the list can check); seccompiler has one match action per filter.
    let nr_load = |p: &sock_filter| p.code == BPF_LD_W_ABS && p.k == 0;
    if !prog.get(3).is_some_and(nr_load) {
        return Err(io::Error::other(
            "unexpected seccompiler program layout (no syscall-number load after the arch check)",
        ));
    }
    let block = [
        sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        sock_filter {
            code: BPF_JMP_JEQ_K,
            jt: 0,
            jf: 1,
            k: libc::SYS_clone3 as u32,
        },
        sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        },
    ];
    prog.splice(3..3, block);
    Ok(prog)
}

/// Which threads a filter covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every thread of the process (TSYNC), and every thread started later.
    Process,
    /// The calling thread (and threads it starts later) only: for tests.
    CallingThread,
}

#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const sock_filter,
}

/// Set NO_NEW_PRIVS on the calling thread (TSYNC extends it to every thread) and install the
/// allow-list. Returns the number of allowed system calls.
pub fn install(scope: Scope) -> io::Result<usize> {
    let prog = program(std::process::id())?;
    super::set_no_new_privs()?;
    let fprog = SockFprog {
        len: libc::c_ushort::try_from(prog.len()).map_err(io::Error::other)?,
        filter: prog.as_ptr(),
    };
    let sync = match scope {
        Scope::Process => libc::SECCOMP_FILTER_FLAG_TSYNC,
        Scope::CallingThread => 0,
    };
    let mut flags = sync | libc::SECCOMP_FILTER_FLAG_LOG;
    loop {
        // SAFETY: seccomp(2) copies the program `fprog` points at (valid for the call: `prog` lives
        // until the end of this function) into the kernel; nothing is retained.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &fprog as *const SockFprog,
            )
        };
        if r == 0 {
            return Ok(allow_list(0).len());
        }
        if r > 0 {
            return Err(io::Error::other(format!(
                "thread {r} could not take the filter (TSYNC)"
            )));
        }
        let e = io::Error::last_os_error();
        // Kernels before 4.14 lack the LOG flag: install without it.
        if e.raw_os_error() == Some(libc::EINVAL) && flags & libc::SECCOMP_FILTER_FLAG_LOG != 0 {
            flags = sync;
            continue;
        }
        return Err(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_compiles_with_the_clone3_answer_after_the_arch_check() {
        let p = program(1234).unwrap();
        assert_eq!(p[3].code, BPF_LD_W_ABS);
        assert_eq!(p[4].k, libc::SYS_clone3 as u32);
        assert_eq!(p[5].k, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
        // The original syscall-number load follows.
        assert_eq!((p[6].code, p[6].k), (BPF_LD_W_ABS, 0));
        // The default: EPERM.
        assert_eq!(
            p.last().map(|i| i.k),
            Some(libc::SECCOMP_RET_ERRNO | libc::EPERM as u32)
        );
    }

    #[test]
    fn names_are_unique_and_numbers_distinct() {
        let l = allow_list(0);
        let mut nrs: Vec<_> = l.iter().map(|a| a.nr).collect();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), l.len());
        let names = allowed_names();
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        for banned in [
            "execve", "mount", "socket", "connect", "bind", "ptrace", "clone3",
        ] {
            assert!(!names.contains(&banned), "{banned} is allowed");
        }
    }
}
