//! The allow-list and the capability drop installed on one test thread (seccomp filters without
//! TSYNC, NO_NEW_PRIVS and capabilities are per thread): what is refused and what still works.

use std::{
    ffi::CString,
    io::{self, Read, Write},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

use famfs_daemon::daemon::privilege::{
    self, CAP_SYS_ADMIN,
    seccomp::{self, Scope},
};

use super::field;
use crate::support::require_root;

/// errno of a failed raw call (0 when it succeeded).
fn errno(r: libc::c_long) -> i32 {
    if r == -1 {
        io::Error::last_os_error().raw_os_error().unwrap()
    } else {
        0
    }
}

fn own_status() -> String {
    std::fs::read_to_string("/proc/thread-self/status").unwrap()
}

/// Calls the steady state never makes, each with the errno it gets under the filter. Each would get
/// another answer (or succeed) without it.
fn refused_calls(scratch: &std::path::Path) -> Vec<(&'static str, i32)> {
    let c = |s: &str| CString::new(s).unwrap();
    let missing = c("/nonexistent-famfs-privilege-test");
    let tmpfs = c("tmpfs");
    // SAFETY: all calls below are raw system calls with valid or null pointers, checked for their
    // errno only; a call that unexpectedly succeeds is undone (fd closed, mapping unmapped, forked
    // child exits at once).
    unsafe {
        let mut v = Vec::new();
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        v.push(("socket", errno(fd.into())));
        if fd >= 0 {
            libc::close(fd);
        }
        let r = libc::mount(
            tmpfs.as_ptr(),
            missing.as_ptr(),
            tmpfs.as_ptr(),
            0,
            std::ptr::null(),
        );
        v.push(("mount", errno(r.into())));
        v.push((
            "openat O_CREAT",
            std::fs::File::create(scratch.join("created"))
                .err()
                .and_then(|e| e.raw_os_error())
                .unwrap_or(0),
        ));
        let m = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        v.push((
            "mmap PROT_EXEC",
            if m == libc::MAP_FAILED { errno(-1) } else { 0 },
        ));
        if m != libc::MAP_FAILED {
            libc::munmap(m, 4096);
        }
        let rw = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(rw, libc::MAP_FAILED, "an ordinary mapping must work");
        let r = libc::mprotect(rw, 4096, libc::PROT_READ | libc::PROT_EXEC);
        v.push(("mprotect PROT_EXEC", errno(r.into())));
        libc::munmap(rw, 4096);
        // BPF_PROG_LOAD (5) with no attributes.
        v.push((
            "bpf BPF_PROG_LOAD",
            errno(libc::syscall(libc::SYS_bpf, 5, std::ptr::null::<u8>(), 0)),
        ));
        let mut n: libc::c_int = 0;
        v.push((
            "ioctl FIONREAD",
            errno(libc::ioctl(0, libc::FIONREAD, &mut n).into()),
        ));
        v.push((
            "prctl PR_SET_DUMPABLE",
            errno(libc::prctl(libc::PR_SET_DUMPABLE, 1).into()),
        ));
        v.push((
            "umount2 without MNT_DETACH",
            errno(libc::umount2(missing.as_ptr(), 0).into()),
        ));
        v.push((
            "tgkill of pid 1",
            errno(libc::syscall(libc::SYS_tgkill, 1, 1, 0)),
        ));
        let pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0);
        if pid == 0 {
            libc::_exit(0);
        }
        v.push(("clone without CLONE_THREAD (fork)", errno(pid)));
        if pid > 0 {
            libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
        }
        v.push((
            "clone3",
            errno(libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0)),
        ));
        v
    }
}

#[test]
fn the_allow_list_refuses_what_the_steady_state_never_does_and_allows_the_rest() {
    // No root needed: NO_NEW_PRIVS lets any thread install a filter.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().to_path_buf();
    let (filtered_tx, filtered_rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        let n = seccomp::install(Scope::CallingThread).unwrap();
        assert_eq!(n, seccomp::allowed_names().len());
        filtered_tx.send(()).unwrap();
        let status = own_status();
        assert_eq!(
            (field(&status, "NoNewPrivs"), field(&status, "Seccomp")),
            ("1", "2")
        );
        let refused = refused_calls(&dir);
        assert!(!dir.join("created").exists());
        // Allowed: new threads (clone3 answers ENOSYS, glibc falls back to clone), randomness,
        // reading /proc, HTTP on a listener bound before, capget.
        let child = std::thread::spawn(|| field(&own_status(), "Seccomp").to_string());
        assert_eq!(child.join().unwrap(), "2");
        let mut b = [0u8; 16];
        // SAFETY: getrandom writes at most 16 bytes into `b`.
        assert_eq!(unsafe { libc::getrandom(b.as_mut_ptr().cast(), 16, 0) }, 16);
        let (mut s, _) = listener.accept().unwrap();
        let mut ping = [0u8; 4];
        s.read_exact(&mut ping).unwrap();
        s.write_all(b"pong").unwrap();
        assert_eq!(&ping, b"ping");
        privilege::capget().unwrap();
        refused
    });
    filtered_rx.recv().unwrap();
    // This thread has no filter: it can still make sockets.
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"ping").unwrap();
    let mut pong = [0u8; 4];
    c.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"pong");
    let refused = t.join().unwrap();
    let eperm = libc::EPERM;
    assert_eq!(
        refused,
        [
            ("socket", eperm),
            ("mount", eperm),
            ("openat O_CREAT", eperm),
            ("mmap PROT_EXEC", eperm),
            ("mprotect PROT_EXEC", eperm),
            ("bpf BPF_PROG_LOAD", eperm),
            ("ioctl FIONREAD", eperm),
            ("prctl PR_SET_DUMPABLE", eperm),
            ("umount2 without MNT_DETACH", eperm),
            ("tgkill of pid 1", eperm),
            ("clone without CLONE_THREAD (fork)", eperm),
            ("clone3", libc::ENOSYS),
        ]
    );
    let own = own_status();
    assert_eq!(
        field(&own, "Seccomp"),
        "0",
        "the filter leaked to another thread"
    );
}

#[test]
fn capabilities_drop_per_thread_and_rise_only_around_the_unmount() {
    let test = "capabilities_drop_per_thread_and_rise_only_around_the_unmount";
    if !require_root(test) {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let target = CString::new(scratch.path().to_str().unwrap()).unwrap();
    let t = std::thread::spawn(move || {
        let keep = privilege::cap_bit(CAP_SYS_ADMIN);
        let bounding = privilege::drop_thread_capabilities(keep).unwrap();
        assert_eq!(bounding, 0x20_0000);
        let creds = |s: &str| {
            ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"].map(|k| field(s, k).to_string())
        };
        let dropped = [
            "0000000000000000",
            "0000000000200000",
            "0000000000000000",
            "0000000000200000",
            "0000000000000000",
        ];
        assert_eq!(creds(&own_status()), dropped);
        // No effective capability: mount(2) is refused by the kernel itself.
        let tmpfs = c"tmpfs";
        // SAFETY: mount(2) with valid C strings; undone below if it unexpectedly succeeds.
        let r = unsafe {
            libc::mount(
                tmpfs.as_ptr(),
                target.as_ptr(),
                tmpfs.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        let e = errno(r.into());
        if r == 0 {
            // SAFETY: detach the tmpfs this thread just mounted on its own scratch dir.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        assert_eq!(e, libc::EPERM);
        let inside =
            privilege::with_unmount_capability(|| field(&own_status(), "CapEff").to_string());
        assert_eq!(inside, "0000000000200000");
        assert_eq!(creds(&own_status()), dropped);
        // A thread started now inherits exactly this.
        let child = std::thread::spawn(move || creds(&own_status()));
        assert_eq!(child.join().unwrap(), dropped);
    });
    t.join().unwrap();
    // Capabilities are per thread: this one keeps root's.
    assert_ne!(field(&own_status(), "CapEff"), "0000000000000000");
}
