//! `famfs-daemon demo`: the embedded default job. Starts the daemon (probes + /metrics), mounts a demo
//! filesystem, runs a light workload, prints what to look at, and stops cleanly on Ctrl-C (or at once
//! with `--once`). Everything it creates lives in a temporary directory and is removed on exit.

use std::{
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
};

use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address for /metrics and the HTTP API.
    #[arg(long, default_value = super::DEFAULT_LISTEN, value_parser = super::parse_listen)]
    pub listen: SocketAddr,
    /// Run the workload, print the summary and exit instead of serving until Ctrl-C.
    #[arg(long)]
    pub once: bool,
}

struct Cleanup {
    daemon: Option<Child>,
    mount: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(m) = self.mount.take() {
            let _ = Command::new("umount").arg(&m).status();
        }
        if let Some(mut c) = self.daemon.take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

fn sample_tree(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir.join("datasets/small"))?;
    for i in 0..16u32 {
        let body: Vec<u8> = (0..(4096 * (i + 1))).map(|b| (b ^ i) as u8).collect();
        std::fs::write(dir.join(format!("datasets/small/part-{i:02}.bin")), body)?;
    }
    std::fs::write(dir.join("README.txt"), b"famfs-trace demo data\n")?;
    Ok(())
}

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo loads eBPF probes and mounts a FUSE filesystem: run it as root");
    }
    let tmp = tempdir()?;
    let mut cleanup = Cleanup {
        daemon: None,
        mount: None,
    };
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["run", "--listen", &args.listen.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting famfs-daemon run")?;
    let stdout = child.stdout.take().context("daemon stdout")?;
    cleanup.daemon = Some(child);
    let mut lines = BufReader::new(stdout).lines();
    let ready = loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("famfs-daemon: ready") => break l,
            Some(Ok(_)) => {}
            _ => bail!("the daemon exited before it was ready"),
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    let addr = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("listen="))
        .context("ready line without listen=")?
        .to_string();

    let src = tmp.join("src");
    sample_tree(&src)?;
    let img = tmp.join("demo.sqfs");
    let ok = Command::new("mksquashfs")
        .args([src.as_os_str(), img.as_os_str()])
        .args(["-quiet", "-no-progress", "-noappend"])
        .status()
        .context("mksquashfs (run `cargo xtask setup`)")?
        .success();
    if !ok {
        bail!("mksquashfs failed");
    }
    let mnt = tmp.join("mnt");
    std::fs::create_dir(&mnt)?;
    if !Command::new("squashfuse")
        .arg(&img)
        .arg(&mnt)
        .status()?
        .success()
    {
        bail!("squashfuse failed");
    }
    cleanup.mount = Some(mnt.clone());

    let mut bytes = 0usize;
    let mut opens = 0usize;
    for round in 0..3 {
        for i in 0..16u32 {
            let mut buf = Vec::new();
            let p = mnt.join(format!("datasets/small/part-{i:02}.bin"));
            bytes += std::fs::File::open(&p)?.read_to_end(&mut buf)?;
            opens += 1;
            if round == 0 && i == 0 {
                let _ = std::fs::metadata(mnt.join("datasets/missing"));
            }
        }
    }
    println!(
        "demo: mounted {} and read {bytes} bytes in {opens} opens",
        mnt.display()
    );
    println!("demo: metrics at http://{addr}/metrics  probes at http://{addr}/api/v1/probes");
    println!("demo: try   curl -s http://{addr}/metrics | grep famfs_fuse_requests_total");
    if !args.once {
        println!("demo: serving; press Ctrl-C to stop");
        wait_for_signal()?;
    }
    drop(cleanup);
    std::fs::remove_dir_all(&tmp).ok();
    Ok(ExitCode::SUCCESS)
}

fn tempdir() -> Result<PathBuf> {
    let p = std::env::temp_dir().join(format!("famfs-demo-{}", std::process::id()));
    std::fs::create_dir_all(&p)?;
    Ok(p)
}

fn wait_for_signal() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    })
}
