//! `famfs-daemon demo`: the embedded default job. Builds a demo famfs image (a sparse temp file, made
//! with the format library: a few directories, ~20 files including a 64 MiB one and a striped one),
//! mounts it with our own FUSE server (a child `famfs-daemon run`, probes and /metrics included), runs
//! a light workload (opens, reads, an mmap read, a missing name), prints what to look at, and repeats
//! the workload every few seconds until Ctrl-C (or exits at once with `--once`). Everything it creates
//! lives in one private temporary directory (mode 0700, a random name made with `mkdir`, so nothing
//! planted in the temp dir is followed; the image inside is created with O_EXCL|O_NOFOLLOW) that is
//! removed on exit; the mount is always taken down.
//!
//! Owns the demo's content and lifecycle only; serving is `run`'s job, the arguments `cli::demo`'s.

use std::{
    fs::{OpenOptions, Permissions},
    hint::black_box,
    io::{BufRead, BufReader, Read, Write},
    net::SocketAddr,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    famfs::{Image, MkfsOptions, StripeSpec},
    http::{
        api::{FILES_PATH, FileRow, PROBES_PATH, ProbeRow, file_query_string},
        client::Client,
    },
    join::{FileQuery, FileSort},
};

const MIB: u64 = 1 << 20;
/// The demo image's (sparse) size.
const IMAGE_SIZE: u64 = 8 << 30;
/// The demo's big file: large enough for huge-page-sized mappings, small enough to write quickly.
const BIG: u64 = 64 * MIB;
const STRIPED: u64 = 24 * MIB;
const SMALL_FILES: u32 = 16;

/// HTTP requests to the demo's daemon may take this long.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the join gets to count the workload before the summary is printed anyway.
const JOIN_DEADLINE: Duration = Duration::from_secs(10);

/// What the demo does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoConfig {
    /// Address for /metrics and the HTTP API.
    pub listen: SocketAddr,
    /// Run the workload once, print the summary and exit instead of serving until Ctrl-C.
    pub once: bool,
    /// Load eBPF probes.
    pub probes: bool,
}

/// Stops the daemon (SIGTERM to its PID, then wait), detaches a mount it left, removes the temp dir
/// (unless a mount is still in it: removing would descend into the mounted filesystem).
struct Cleanup {
    daemon: Option<Child>,
    mount: Option<PathBuf>,
    dir: Option<tempfile::TempDir>,
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
        let mut mounted = false;
        if let Some(m) = self.mount.take() {
            while crate::fuse::channel::mount_connection(&m).is_ok() {
                if crate::fuse::channel::umount_detach(&m).is_err() {
                    mounted = true;
                    break;
                }
            }
        }
        if let Some(d) = self.dir.take()
            && mounted
        {
            eprintln!(
                "demo: a mount is still in {}; leaving the directory",
                d.keep().display()
            );
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

/// Make the demo filesystem with the format library, in a new image file (O_EXCL|O_NOFOLLOW: a name
/// planted in `dir` fails the demo instead of being followed).
fn make_image(dir: &Path) -> Result<(PathBuf, Layout)> {
    let img = dir.join("demo.img");
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&img)
        .and_then(|f| f.set_len(IMAGE_SIZE))
        .with_context(|| format!("creating {}", img.display()))?;
    let mut fs = Image::mkfs(
        &img,
        &MkfsOptions {
            size: Some(IMAGE_SIZE),
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

/// The child `famfs-daemon run` serving `img` at `mnt`, once it printed its ready line: its address,
/// connection and fs_uuid.
fn start_daemon(
    cfg: &DemoConfig,
    tmp: &Path,
    img: &Path,
    mnt: &Path,
    cleanup: &mut Cleanup,
) -> Result<(SocketAddr, String, String)> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .args(["--listen", &cfg.listen.to_string()])
        .arg("--image")
        .arg(img)
        .arg("--mountpoint")
        .arg(mnt)
        .env("FAMFS_SYSTEM_UUID_PATH", tmp.join("system_uuid"))
        .stdout(Stdio::piped());
    if !cfg.probes {
        cmd.arg("--no-probes");
    }
    let mut child = cmd.spawn().context("starting famfs-daemon run")?;
    let stdout = child.stdout.take().context("daemon stdout")?;
    cleanup.daemon = Some(child);
    cleanup.mount = Some(mnt.to_path_buf());
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
    Ok((addr, conn, uuid))
}

/// Wait (at most [`JOIN_DEADLINE`]) until the join has counted every byte the kernel read for the
/// mmap of `big` (the last thing the workload did) and, when the page-cache probe is attached, that
/// mmap's page-cache faults (applied on the join's own tick).
fn wait_for_join(client: &Client, big: &str) -> Result<()> {
    let probes: Vec<ProbeRow> = client.get_json(PROBES_PATH)?;
    let page_cache_probe = probes
        .iter()
        .any(|p| p.attached() && p.target.ends_with("mm_filemap_fault"));
    let q = FileQuery {
        sort: FileSort::Path,
        limit: 1,
        path: Some(big.to_string()),
    };
    let path = format!("{FILES_PATH}?{}", file_query_string(&q));
    let end = Instant::now() + JOIN_DEADLINE;
    while Instant::now() < end {
        let rows: Vec<FileRow> = client.get_json(&path)?;
        let counted = rows
            .first()
            .is_some_and(|f| f.read_bytes >= BIG && (!page_cache_probe || f.page_cache_faults > 0));
        if counted {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn print_summary(addr: SocketAddr, metrics: &str, big: &str, mnt: &Path) -> Result<()> {
    let want = format!("path=\"{big}\"");
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
    println!("  http://{addr}/api/v1/snapshot      everything top and snapshot read (JSON)");
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
    Ok(())
}

pub fn run(cfg: &DemoConfig) -> Result<ExitCode> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo mounts a FUSE filesystem and loads eBPF probes: run it as root");
    }
    // A fresh private directory (mkdir with a random name, mode 0700): never a predictable path.
    let dir = tempfile::Builder::new()
        .prefix("famfs-demo-")
        .permissions(Permissions::from_mode(0o700))
        .tempdir()
        .with_context(|| {
            format!(
                "creating a private directory in {}",
                std::env::temp_dir().display()
            )
        })?;
    let tmp = dir.path().to_path_buf();
    let mut cleanup = Cleanup {
        daemon: None,
        mount: None,
        dir: Some(dir),
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
    let (addr, conn, uuid) = start_daemon(cfg, &tmp, &img, &mnt, &mut cleanup)?;
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

    let client = Client::new(addr, HTTP_TIMEOUT)?;
    let big = format!("/{}", layout.big);
    wait_for_join(&client, &big)?;
    let metrics = client.get("/metrics")?;
    print_summary(addr, &metrics, &big, &mnt)?;

    if !cfg.once {
        println!("demo: serving; the workload repeats every 10 s; press Ctrl-C to stop");
        serve_until_signal(Duration::from_secs(10), || {
            workload(&mnt, &layout, &big_want).map(|_| ())
        })?;
    }
    println!("demo: stopping (unmount, remove {})", tmp.display());
    drop(cleanup);
    Ok(ExitCode::SUCCESS)
}
