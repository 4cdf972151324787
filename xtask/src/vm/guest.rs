//! `xtask vm-guest <check>`: the guest half of a check, run by the guest's /init (never on the host).
//!
//! The famfs server check: an image made and filled with the image CLI on a tmpfs, served by
//! `famfs-daemon run` with its probes, a workload of known counts on the mount (`famfs_files`), the
//! daemon's metrics once its join has taken in everything (printed as `FMETRIC` lines), then SIGTERM
//! and the mount gone. Results are `RESULT famfs <what> k=v ...` lines for the host's `eval_famfs`.
//!
//! Owns the guest workload and its console lines; must not assert expected values (the host does) and
//! runs only inside the guest, where it may mount and start processes.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    os::fd::AsRawFd,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc::{self, RecvTimeoutError},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use famfs_common::metric_names::{
    ALL, FILE_PAGE_CACHE_FAULTS, FUSE_REQUEST_DURATION, FUSE_REQUEST_ERRORS, FUSE_REQUESTS,
    JOIN_EVENTS, PAGE_CACHE_FAULTS, PROBE_ATTACHED, PROBE_EVENTS, SERVER_RECORDS, SERVER_REQUESTS,
};

use super::{
    console::opcode_samples,
    famfs_files::{FAMFS_MMAP_FILE, FAMFS_READ_FILES, PAGE, famfs_pattern},
    output,
};

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

/// `xtask vm-guest <check>`: the guest half of a check, run by the guest's /init (never on the host).
pub fn guest(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("famfs") => run_famfs(),
        other => bail!("vm-guest: unknown check {other:?} (known: famfs)"),
    }
}

/// Prefixes of the metric lines printed for the host (histogram buckets and `_created` left out): every
/// per-file and server family, the join's outcomes, the kernel's per-opcode counts, the probes' events
/// and the request probes' attach state.
fn printed_families() -> Vec<String> {
    let mut v: Vec<String> = ALL
        .iter()
        .filter(|m| m.base.starts_with("file_") || m.base.starts_with("server_"))
        .map(|m| m.name.to_string())
        .collect();
    v.extend([
        JOIN_EVENTS.name.to_string(),
        FUSE_REQUESTS.name.to_string(),
        FUSE_REQUEST_ERRORS.name.to_string(),
        format!("{}_count", FUSE_REQUEST_DURATION.name),
        PROBE_EVENTS.name.to_string(),
        format!("{}{{probe=\"fuse_request", PROBE_ATTACHED.name),
    ]);
    v
}

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
                // Past the deadline: the outcome is `killed` either way.
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
            // Cleanup on an error path: the error being returned is the one to report.
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
    let text = std::fs::read_to_string("/proc/self/mountinfo").context("/proc/self/mountinfo")?;
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

/// Copy the mapping at `base` (`len` readable bytes) page by page, in order.
///
/// # Safety
/// `base` must point to a mapping readable for `len` bytes that stays mapped during the call.
unsafe fn touch_pages(base: *const u8, len: usize) -> Vec<u8> {
    let page = PAGE as usize;
    let mut out = vec![0u8; len];
    for off in (0..len).step_by(page) {
        let end = (off + page).min(len);
        for (j, b) in out[off..end].iter_mut().enumerate() {
            // SAFETY: off + j < len: inside the mapping, readable for `len` bytes (the caller's
            // contract).
            *b = unsafe { std::ptr::read_volatile(base.add(off + j)) };
        }
    }
    out
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
        // SAFETY: the mapping made above is readable up to the file's end (the file is `size` bytes,
        // fixed by famfs) and is unmapped only below, after this call.
        Ok(unsafe { touch_pages(p.cast::<u8>(), len) })
    };
    // SAFETY: unmaps exactly the mapping made above; no reference into it outlives this call.
    unsafe { libc::munmap(p, len) };
    res
}

/// The image: a 4 GiB sparse file on a tmpfs, the files copied in with the image CLI.
fn make_image(t0: Instant) -> Result<()> {
    std::fs::create_dir_all(DIR).with_context(|| format!("creating {DIR}"))?;
    std::fs::create_dir_all(MNT).with_context(|| format!("creating {MNT}"))?;
    output(
        "mount tmpfs",
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=256m", "famfs-tmp", DIR]),
    )?;
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
    Ok(())
}

/// The daemon's stderr, for messages and the stop report.
fn daemon_stderr() -> Result<String> {
    std::fs::read_to_string(STDERR).with_context(|| format!("reading {STDERR}"))
}

/// Start the daemon, probes on; readiness is its ready line (printed once INIT was answered), returned.
fn start_daemon() -> Result<(Daemon, String)> {
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
    let daemon = Daemon {
        child,
        stopped: false,
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("famfs-daemon: ready") {
                // Err: the waiter has its line or gave up; keep draining stdout either way.
                let _ = tx.send(line);
            }
        }
    });
    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(l) => Ok((daemon, l)),
        Err(RecvTimeoutError::Timeout) => {
            bail!("famfs-daemon printed no ready line within {READY_TIMEOUT:?}")
        }
        Err(RecvTimeoutError::Disconnected) => bail!(
            "famfs-daemon exited before its ready line: {}",
            daemon_stderr().unwrap_or_else(|e| format!("({e:#})"))
        ),
    }
}

/// The workload: each read file opened n times and read to its end, then the mapped file. Returns the
/// number of opens.
fn workload(t0: Instant) -> Result<u64> {
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
    Ok(opens)
}

/// Page-cache faults on connection `conn` as the kernel map counts them at this scrape, and as the
/// join's per-file table has taken them in (on its own fault tick).
fn page_cache_faults(text: &str, conn: &str) -> (f64, f64) {
    let kernel = sample(
        text,
        PAGE_CACHE_FAULTS.name,
        &format!("device=\"0:{conn}\""),
    )
    .unwrap_or(0.0);
    let per_file = text
        .lines()
        .filter_map(|l| {
            l.strip_prefix(FILE_PAGE_CACHE_FAULTS.name)?
                .strip_prefix('{')
        })
        .filter_map(|rest| rest.split_once("} ")?.1.trim().parse::<f64>().ok())
        .sum();
    (kernel, per_file)
}

/// Whether the scrape `text` shows a quiet mount: everything the kernel queued on connection `conn` was
/// answered (INIT, queued before the probes knew the connection, aside), every answer's record was
/// handed to the join and taken in, the join saw a kernel event per open, and its per-file table holds
/// every page-cache fault the kernel counted.
fn settled(text: &str, conn: &str, opens: u64) -> bool {
    let kernel_prefix = format!("{}{{connection=\"{conn}\",", FUSE_REQUESTS.name);
    let queued: f64 = opcode_samples(text, &kernel_prefix)
        .iter()
        .map(|(_, n)| n)
        .sum();
    let served = opcode_samples(text, &format!("{}{{", SERVER_REQUESTS.name));
    let all: f64 = served.iter().map(|(_, n)| n).sum();
    let answered: f64 = served
        .iter()
        .filter(|(op, _)| op != "INIT")
        .map(|(_, n)| n)
        .sum();
    let sent = sample(text, SERVER_RECORDS.name, "outcome=\"sent\"");
    let joined = sample(text, JOIN_EVENTS.name, "outcome=\"server_record\"");
    let kernel = sample(text, JOIN_EVENTS.name, "outcome=\"kernel_event\"");
    queued > 0.0
        && queued == answered
        && sent == Some(all)
        && sent == joined
        && kernel >= Some(opens as f64)
        && {
            let (kernel_pc, per_file_pc) = page_cache_faults(text, conn);
            kernel_pc == per_file_pc
        }
}

/// Requests end asynchronously (RELEASE is queued in the background after close) and the join works on
/// its own thread: scrape until the mount is quiet ([`settled`]), then print the families the host
/// asserts on. The host then asserts exact values; past the deadline it sees `settled=0`.
fn settle_and_print(addr: &str, conn: &str, opens: u64, t0: Instant) -> Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let (text, settled) = loop {
        let text = scrape(addr)?;
        let ok = settled(&text, conn, opens);
        if ok || Instant::now() >= deadline {
            break (text, ok);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let families = printed_families();
    for l in text.lines().filter(|l| {
        families.iter().any(|f| l.starts_with(f.as_str()))
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
    Ok(())
}

/// SIGTERM: the daemon unmounts and exits 0; report its exit, the mount and its stderr.
fn stop_and_report(mut daemon: Daemon, t0: Instant) -> Result<()> {
    let code = daemon.stop()?;
    let still = mountinfo(MNT)?.is_some();
    let err = daemon_stderr()?;
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

/// The famfs server check inside the guest, from image to stop.
fn run_famfs() -> Result<()> {
    let t0 = Instant::now();
    make_image(t0)?;
    let (daemon, ready) = start_daemon()?;
    let addr = field(&ready, "listen").context("ready line without listen=")?;
    let conn = field(&ready, "connection").context("ready line without connection=")?;
    let uuid = field(&ready, "fs_uuid").context("ready line without fs_uuid=")?;
    let (mi_conn, fstype) = mountinfo(MNT)?.context("the mount is not in mountinfo")?;
    println!(
        "RESULT famfs ready connection={conn} mountinfo_connection={mi_conn} fstype={fstype} \
         fs_uuid={uuid} secs={:.1}",
        t0.elapsed().as_secs_f64()
    );
    let opens = workload(t0)?;
    settle_and_print(addr, conn, opens, t0)?;
    stop_and_report(daemon, t0)
}
