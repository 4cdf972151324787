//! Boots the guest: `qemu-system-x86_64 -accel tcg` under `timeout`, serial console on stdout, pmem from
//! `memmap=512M!1G`, `-no-reboot` and `panic=-1` so every guest end also ends qemu. Echoes the check lines
//! as they come, saves the whole console to a log and returns it.
//!
//! Owns the qemu command line and the boot's success conditions; must not interpret check results.

use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{ChildStdout, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};

/// Guest wall-clock budget; the whole lane must stay under 3 minutes.
const GUEST_TIMEOUT: Duration = Duration::from_secs(150);
/// Console lines echoed while the guest runs.
const ECHOED: [&str; 4] = ["RESULT ", "CHECK ", "VM ", "VMTEST "];

/// Boot the guest, echo its check lines, save the console; return the console text.
pub(super) fn boot(qemu: &Path, vmlinuz: &Path, initrd: &Path, log: &Path) -> Result<String> {
    let mut child = Command::new("timeout")
        .arg("--kill-after=5")
        .arg(GUEST_TIMEOUT.as_secs().to_string())
        .arg(qemu)
        .args(["-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "2048"])
        .args(["-nodefaults", "-display", "none", "-serial", "stdio"])
        .args(["-no-reboot", "-kernel"])
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            "console=ttyS0 panic=-1 memmap=512M!1G quiet loglevel=3",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu under timeout")?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let text = read_console(stdout)?;
    let status = child.wait().context("waiting for qemu")?;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        // Only for the message below: an unreadable stderr leaves it empty, the failure is reported anyway.
        let _ = e.read_to_string(&mut err);
    }
    std::fs::write(log, &text).with_context(|| format!("writing {}", log.display()))?;
    if status.code() == Some(124) || status.code() == Some(137) {
        bail!(
            "the guest did not power off within {}s (console log: {})",
            GUEST_TIMEOUT.as_secs(),
            log.display()
        );
    }
    if !status.success() {
        bail!("qemu failed ({status}): {err}");
    }
    if !text.contains("VM done") {
        bail!(
            "the guest stopped before its last step (console log: {})",
            log.display()
        );
    }
    Ok(text)
}

/// Read the serial console to its end, echoing the check lines; line ends normalised to `\n`.
fn read_console(stdout: ChildStdout) -> Result<String> {
    let mut text = String::new();
    let mut reader = BufReader::new(stdout);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let n = reader
            .read_until(b'\n', &mut raw)
            .context("reading the serial console")?;
        if n == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\n', '\r']);
        if ECHOED.iter().any(|p| line.starts_with(p)) {
            println!("vm| {line}");
        }
        text.push_str(line);
        text.push('\n');
    }
    Ok(text)
}
