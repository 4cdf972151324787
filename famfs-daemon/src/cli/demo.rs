//! `famfs-daemon demo`: the embedded default job. Builds a demo famfs image (a sparse temp file, made
//! with the format library: a few directories, ~20 files including a 64 MiB one and a striped one),
//! mounts it with our own FUSE server (a child `famfs-daemon run`, probes and /metrics included), runs
//! a light workload (opens, reads, an mmap read, a missing name), prints what to look at, and repeats
//! the workload every few seconds until Ctrl-C (or exits at once with `--once`). Everything it creates
//! lives in one temporary directory that is removed on exit; the mount is always taken down.
//!
//! Owns the demo's content and lifecycle only; serving is `run`'s job.

use std::{
    hint::black_box,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::famfs::{Image, MkfsOptions, StripeSpec};

const MIB: u64 = 1 << 20;
/// The demo's big file: large enough for huge-page-sized mappings, small enough to write quickly.
const BIG: u64 = 64 * MIB;
const STRIPED: u64 = 24 * MIB;
const SMALL_FILES: u32 = 16;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address for /metrics and the HTTP API.
    #[arg(long, default_value = super::DEFAULT_LISTEN, value_parser = super::parse_listen)]
    pub listen: SocketAddr,
    /// Run the workload once, print the summary and exit instead of serving until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// Do not load eBPF probes (the per-file metrics then come from the server alone).
    #[arg(long)]
    pub no_probes: bool,
}

/// Stops the daemon (SIGTERM to its PID, then wait), detaches a mount it left, removes the temp dir.
struct Cleanup {
    daemon: Option<Child>,
    mount: Option<PathBuf>,
    dir: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            // SAFETY: kill(2) on our own child's PID.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let end = Instant::now() + Duration::from_secs(15);
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < end => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
        if let Some(m) = self.mount.take() {
            while crate::fuse::channel::mount_connection(&m).is_ok() {
                if crate::fuse::channel::umount_detach(&m).is_err() {
                    break;
                }
            }
        }
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Deterministic contents.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 12) as u8))
        .collect()
}

/// Paths (relative to the mount) of the demo's files, for the workload.
struct Layout {
    small: Vec<String>,
    big: &'static str,
    striped: &'static str,
    text: Vec<&'static str>,
}

/// Make the demo filesystem with the format library.
fn make_image(dir: &Path) -> Result<(PathBuf, Layout)> {
    let img = dir.join("demo.img");
    let mut fs = Image::mkfs(
        &img,
        &MkfsOptions {
            size: Some(8 << 30),
            system_uuid_path: Some(dir.join("system_uuid")),
            ..Default::default()
        },
    )
    .context("mkfs of the demo image")?;
    for d in ["datasets", "datasets/small", "models", "logs"] {
        fs.mkdir(d, 0o755, 0, 0, false)
            .with_context(|| format!("mkdir {d}"))?;
    }
    let mut put = |path: &str, data: &[u8], stripe: Option<StripeSpec>| -> Result<()> {
        let id = fs
            .creat(path, data.len() as u64, 0o644, 0, 0, stripe)
            .with_context(|| format!("creat {path}"))?;
        fs.write_file(id, 0, data)
            .with_context(|| format!("write {path}"))?;
        Ok(())
    };
    let mut small = Vec::new();
    for i in 0..SMALL_FILES {
        let p = format!("datasets/small/part-{i:02}.bin");
        put(&p, &pattern(4096 * (i as usize + 1), i as u8), None)?;
        small.push(p);
    }
    put("models/weights-64m.bin", &pattern(BIG as usize, 7), None)?;
    put(
        "datasets/striped-24m.bin",
        &pattern(STRIPED as usize, 9),
        Some(StripeSpec {
            nstrips: 4,
            nbuckets: 8,
            chunk_size: 2 * MIB,
        }),
    )?;
    put(
        "logs/app.log",
        b"2026-01-01T00:00:00Z demo started\n2026-01-01T00:00:01Z famfs mounted\n",
        None,
    )?;
    put(
        "README.txt",
        b"famfs-trace demo data: a famfs image served by famfs-daemon's own FUSE server\n",
        None,
    )?;
    Ok((
        img,
        Layout {
            small,
            big: "models/weights-64m.bin",
            striped: "datasets/striped-24m.bin",
            text: vec!["logs/app.log", "README.txt"],
        },
    ))
}

/// What one workload pass did.
#[derive(Default)]
struct Work {
    opens: usize,
    bytes: u64,
    mmap_bytes: u64,
}

fn workload(mnt: &Path, l: &Layout, big_want: &[u8]) -> Result<Work> {
    let mut w = Work::default();
    let mut buf = Vec::new();
    for _ in 0..3 {
        for p in l
            .small
            .iter()
            .map(String::as_str)
            .chain(l.text.iter().copied())
        {
            buf.clear();
            w.bytes += std::fs::File::open(mnt.join(p))
                .with_context(|| format!("open {p}"))?
                .read_to_end(&mut buf)? as u64;
            w.opens += 1;
        }
    }
    buf.clear();
    w.bytes += std::fs::File::open(mnt.join(l.striped))?.read_to_end(&mut buf)? as u64;
    w.opens += 1;
    // A name that does not exist (an ENOENT LOOKUP in the metrics).
    let _ = std::fs::metadata(mnt.join("datasets/missing.bin"));
    // An mmap read of the 64 MiB file, checked byte for byte.
    let f = std::fs::File::open(mnt.join(l.big))?;
    w.opens += 1;
    // SAFETY: a read-only shared mapping of a demo file that nothing writes while it is mapped.
    let map = unsafe { memmap2::Mmap::map(&f) }.context("mmap of the 64 MiB file")?;
    if map[..] != big_want[..] {
        bail!("mmap read of {} returned other bytes", l.big);
    }
    w.mmap_bytes = black_box(map.len()) as u64;
    Ok(w)
}

/// GET `path` from the daemon (Connection: close); the body.
fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or(""));
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((len, r)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
            if n == 0 || r.len() < n {
                break;
            }
            out.push_str(&r[..n]);
            rest = r[n..].trim_start_matches("\r\n");
        }
        return Ok(out);
    }
    Ok(body.to_string())
}

/// Until SIGINT/SIGTERM: run `tick` every `every` (an error from it ends the loop).
fn serve_until_signal(every: Duration, mut tick: impl FnMut() -> Result<()>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        // Registered once: a signal that arrives during `tick` is kept for the next wait.
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        loop {
            let sig = async {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            };
            if tokio::time::timeout(every, sig).await.is_ok() {
                return Ok(());
            }
            tick()?;
        }
    })
}

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo mounts a FUSE filesystem and loads eBPF probes: run it as root");
    }
    let tmp = std::env::temp_dir().join(format!("famfs-demo-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut cleanup = Cleanup {
        daemon: None,
        mount: None,
        dir: Some(tmp.clone()),
    };
    let t0 = Instant::now();
    let (img, layout) = make_image(&tmp)?;
    println!(
        "demo: famfs image {} (8 GiB sparse; {} files in 4 directories) made in {:.1} s",
        img.display(),
        layout.small.len() + 2 + layout.text.len(),
        t0.elapsed().as_secs_f64()
    );
    let mnt = tmp.join("mnt");
    std::fs::create_dir(&mnt)?;

    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .args(["--listen", &args.listen.to_string()])
        .arg("--image")
        .arg(&img)
        .arg("--mountpoint")
        .arg(&mnt)
        .env("FAMFS_SYSTEM_UUID_PATH", tmp.join("system_uuid"))
        .stdout(Stdio::piped());
    if args.no_probes {
        cmd.arg("--no-probes");
    }
    let mut child = cmd.spawn().context("starting famfs-daemon run")?;
    let stdout = child.stdout.take().context("daemon stdout")?;
    cleanup.daemon = Some(child);
    cleanup.mount = Some(mnt.clone());
    let mut lines = BufReader::new(stdout).lines();
    let ready = loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("famfs-daemon: ready") => break l,
            Some(Ok(_)) => {}
            _ => bail!("the daemon exited before it was ready (see its messages above)"),
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    let field = |k: &str| {
        ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix(k).map(str::to_string))
    };
    let addr: SocketAddr = field("listen=")
        .and_then(|a| a.parse().ok())
        .context("ready line without listen=")?;
    let conn = field("connection=").unwrap_or_default();
    let uuid = field("fs_uuid=").unwrap_or_default();
    println!(
        "demo: mounted at {} by our FUSE server (connection {conn}, fs_uuid {uuid})",
        mnt.display()
    );

    let big_want = pattern(BIG as usize, 7);
    let w = workload(&mnt, &layout, &big_want)?;
    println!(
        "demo: workload: {} opens, {} bytes read, {} MiB read through mmap (checked byte for byte)",
        w.opens,
        w.bytes,
        w.mmap_bytes / MIB
    );

    // The join lands per-file series within a few of its 50 ms batches: wait until it has counted
    // every byte the kernel read for the mmap (the last thing the workload did).
    let want = format!("path=\"/{}\"", layout.big);
    let mut metrics = String::new();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        metrics = http_get(addr, "/metrics")?;
        let read = metrics
            .lines()
            .find(|l| l.starts_with("famfs_file_read_bytes_total") && l.contains(&want))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        if read.is_some_and(|r| r >= BIG as f64) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("demo: per-file metrics now include:");
    for l in metrics.lines().filter(|l| {
        (l.starts_with("famfs_file_opens_total")
            || l.starts_with("famfs_file_read_bytes_total")
            || l.starts_with("famfs_file_page_cache_faults_total")
            || l.starts_with("famfs_file_fmap_bytes"))
            && (l.contains(&want) || l.contains("striped-24m"))
    }) {
        println!("  {l}");
    }
    println!();
    println!("Look at:");
    println!("  http://{addr}/metrics              Prometheus metrics");
    println!("  http://{addr}/api/v1/files?sort=opens&limit=10   per-file table (JSON)");
    println!("  http://{addr}/api/v1/probes        which probes attached on this kernel");
    println!("  famfs-trace top --addr {addr}      live terminal view");
    println!("  curl -s http://{addr}/metrics | grep '^famfs_file_'");
    println!(
        "  ls -l {}   cat {}/README.txt",
        mnt.display(),
        mnt.display()
    );
    println!("PromQL:");
    println!("  topk(5, rate(famfs_file_opens_total[1m]))");
    println!(
        "  histogram_quantile(0.99, sum by (le, opcode) (rate(famfs_fuse_request_duration_seconds_bucket[5m])))"
    );
    println!("  sum by (path) (rate(famfs_file_read_bytes_total[1m]))");
    std::io::stdout().flush()?;

    if !args.once {
        println!("demo: serving; the workload repeats every 10 s; press Ctrl-C to stop");
        serve_until_signal(Duration::from_secs(10), || {
            workload(&mnt, &layout, &big_want).map(|_| ())
        })?;
    }
    println!("demo: stopping (unmount, remove {})", tmp.display());
    drop(cleanup);
    Ok(ExitCode::SUCCESS)
}
