//! `famfs-daemon image <command>`: tools over a famfs image file or device, byte-compatible with the
//! reference famfs (mkfs, mkdir, creat, cp, ls, getmap, fsck, logplay --dry-run, read).
//!
//! Owns argument parsing (sizes with K/M/G/T suffixes, octal modes), dispatch, and the commands'
//! glue and output: `write` (mkfs, mkdir, creat, cp from host files) and `inspect` (ls, getmap, fsck,
//! logplay, read). All format logic lives in [`crate::famfs`]; this module must not touch bytes of the
//! image itself, nor decide format rules (entry offsets, inode ids, anomaly severities).
//! Exit status: 0 on success (fsck: clean), 1 on an error or an unclean check, 2 on usage errors.

mod inspect;
mod write;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::famfs::{
    Image, ImageOptions, StripeSpec,
    format::{self, ALLOC_UNIT},
};

#[derive(Debug, Args)]
pub struct ImageArgs {
    /// This host's UUID file (default: $FAMFS_SYSTEM_UUID_PATH, else /opt/famfs/system_uuid).
    #[arg(long, global = true, value_name = "PATH")]
    pub system_uuid_path: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: ImageCmd,
}

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Create a filesystem on an image file (created/resized with --size) or a device.
    Mkfs(MkfsArgs),
    /// Create directories.
    Mkdir(MkdirArgs),
    /// Create a file of a fixed size (simple or striped allocation).
    Creat(CreatArgs),
    /// Copy host files (and with -r, directories) into the filesystem.
    Cp(CpArgs),
    /// List a directory.
    Ls(LsArgs),
    /// Print a file's extents.
    Getmap(GetmapArgs),
    /// Check the superblock, the log and every entry; exit 1 unless clean.
    Fsck(FsckArgs),
    /// Play the log and print what it creates (only --dry-run: the daemon plays the log at mount).
    Logplay(LogplayArgs),
    /// Write a file's bytes to stdout.
    Read(ReadArgs),
}

#[derive(Debug, Args)]
pub struct MkfsArgs {
    /// Image file or device.
    pub image: PathBuf,
    /// Image file size (created or resized), e.g. 4G. Devices use their own size.
    #[arg(short, long, value_parser = parse_size)]
    pub size: Option<u64>,
    /// Log length: a power of 2, at least 8M.
    #[arg(short = 'l', long = "log-len", value_parser = parse_size, default_value = "8M")]
    pub log_len: u64,
    /// Overwrite an existing famfs filesystem.
    #[arg(short, long)]
    pub force: bool,
    /// Superblock version to write (47 or 48).
    #[arg(long = "format-version", default_value_t = format::CURRENT_VERSION,
          value_parser = clap::value_parser!(u64).range(47..=48))]
    pub format_version: u64,
}

#[derive(Debug, Args)]
pub struct MkdirArgs {
    pub image: PathBuf,
    /// Directories to create (relative to the filesystem root).
    #[arg(required = true)]
    pub paths: Vec<String>,
    /// Create missing parents; an existing directory is not an error.
    #[arg(short, long)]
    pub parents: bool,
    /// Permission bits (octal).
    #[arg(short, long, value_parser = parse_mode, default_value = "755")]
    pub mode: u32,
    /// Owner (default: the caller's).
    #[arg(short, long)]
    pub uid: Option<u32>,
    #[arg(short, long)]
    pub gid: Option<u32>,
}

#[derive(Debug, Args)]
pub struct StripeArgs {
    /// Striped (interleaved) allocation: number of strips (1-16).
    #[arg(short = 'N', long)]
    pub nstrips: Option<u32>,
    /// Buckets the device is split into (nstrips-64; default nstrips).
    #[arg(short = 'B', long)]
    pub nbuckets: Option<u32>,
    /// Chunk size: a power of 2 and a multiple of 2M (default 2M).
    #[arg(short = 'C', long = "chunk-size", value_parser = parse_size)]
    pub chunk_size: Option<u64>,
}

impl StripeArgs {
    fn spec(&self) -> Result<Option<StripeSpec>> {
        match (self.nstrips, self.nbuckets, self.chunk_size) {
            (None, None, None) => Ok(None),
            (None, _, _) => bail!("--nbuckets/--chunk-size need --nstrips"),
            (Some(n), b, c) => Ok(Some(StripeSpec {
                nstrips: n,
                nbuckets: b.unwrap_or(n),
                chunk_size: c.unwrap_or(ALLOC_UNIT),
            })),
        }
    }
}

#[derive(Debug, Args)]
pub struct CreatArgs {
    pub image: PathBuf,
    pub path: String,
    /// File size, e.g. 1M (fixed for the file's lifetime).
    #[arg(short, long, value_parser = parse_size)]
    pub size: u64,
    #[arg(short, long, value_parser = parse_mode, default_value = "644")]
    pub mode: u32,
    #[arg(short, long)]
    pub uid: Option<u32>,
    #[arg(short, long)]
    pub gid: Option<u32>,
    #[command(flatten)]
    pub stripe: StripeArgs,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    pub image: PathBuf,
    /// SOURCE... DEST: host paths, then a path in the filesystem (an existing directory receives the
    /// sources by name).
    #[arg(required = true, num_args = 2..)]
    pub paths: Vec<String>,
    /// Copy directories recursively.
    #[arg(short, long)]
    pub recursive: bool,
    /// Permission bits for the copies (default: the source's).
    #[arg(short, long, value_parser = parse_mode)]
    pub mode: Option<u32>,
    /// Owner for the copies (default: the source's).
    #[arg(short, long)]
    pub uid: Option<u32>,
    #[arg(short, long)]
    pub gid: Option<u32>,
    #[command(flatten)]
    pub stripe: StripeArgs,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    pub image: PathBuf,
    #[arg(default_value = "/")]
    pub path: String,
    /// Long listing: mode, uid, gid, size.
    #[arg(short, long)]
    pub long: bool,
    /// Recurse into directories.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Show inode ids.
    #[arg(short, long)]
    pub inode: bool,
}

#[derive(Debug, Args)]
pub struct GetmapArgs {
    pub image: PathBuf,
    pub path: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FsckArgs {
    pub image: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogplayArgs {
    pub image: PathBuf,
    /// Print what the log creates without creating anything.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    pub image: PathBuf,
    pub path: String,
}

/// Parse a byte count: decimal or 0x-hex, optional K/M/G/T suffix (powers of 1024, optional "B"/"iB").
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (num, shift) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 10),
        Some('m') => (&body[..body.len() - 1], 20),
        Some('g') => (&body[..body.len() - 1], 30),
        Some('t') => (&body[..body.len() - 1], 40),
        _ => (body, 0),
    };
    let v = match num.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => num.parse::<u64>(),
    }
    .map_err(|_| format!("{s:?}: expected a size such as 4096, 0x1000, 512K, 8M, 4G"))?;
    v.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?}: size overflows 64 bits"))
}

/// Parse octal permission bits ("644", "0644", "0o644").
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let t = s.trim_start_matches("0o");
    match u32::from_str_radix(t, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!("{s:?}: expected octal permission bits such as 644")),
    }
}

/// Run `famfs-daemon image ...`.
pub fn run(args: ImageArgs) -> Result<ExitCode> {
    let up = args.system_uuid_path.as_deref();
    match args.cmd {
        ImageCmd::Mkfs(a) => write::mkfs(&a, up),
        ImageCmd::Mkdir(a) => write::mkdir(&a, up),
        ImageCmd::Creat(a) => write::creat(&a, up),
        ImageCmd::Cp(a) => write::cp(&a, up),
        ImageCmd::Ls(a) => inspect::ls(&a, up),
        ImageCmd::Getmap(a) => inspect::getmap(&a, up),
        ImageCmd::Fsck(a) => inspect::fsck(&a, up),
        ImageCmd::Logplay(a) => inspect::logplay(&a, up),
        ImageCmd::Read(a) => inspect::read(&a, up),
    }
}

/// The caller's effective uid and gid (the default owner of what mkdir/creat create).
fn caller_ids() -> (u32, u32) {
    // SAFETY: geteuid/getegid have no preconditions and cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Open the image and warn (stderr) when its namespace is partial or its log has problems.
fn open(path: &Path, writable: bool, uuid_path: Option<&Path>) -> Result<Image> {
    let img = Image::open_with(
        path,
        &ImageOptions {
            writable,
            system_uuid_path: uuid_path.map(Path::to_path_buf),
            host_uuid: None,
        },
    )
    .with_context(|| format!("{}", path.display()))?;
    warn_partial(&img);
    Ok(img)
}

/// One stderr line when the namespace is incomplete or the log has anomalies.
fn warn_partial(img: &Image) {
    let ns = img.namespace();
    if let Some(stop) = ns.stopped() {
        eprintln!("famfs-daemon image: warning: {stop} (the namespace is partial; run fsck)");
    }
    let bad = ns.problem_count();
    if bad > 0 {
        eprintln!(
            "famfs-daemon image: warning: {bad} log entries were skipped or conflict (run fsck)"
        );
    }
}

/// `name` inside directory `dir` of the image (no leading or trailing '/').
fn join(dir: &str, name: &str) -> String {
    let d = dir.trim_matches('/');
    if d.is_empty() {
        name.to_string()
    } else {
        format!("{d}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::{inspect::mode_string, *};

    #[test]
    fn sizes_and_modes_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0x1000"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("8m"), Ok(8 << 20));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("2MB"), Ok(2 << 20));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert!(parse_size("").is_err());
        assert!(parse_size("4X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(
            parse_size("99999999999T")
                .unwrap_err()
                .contains("overflows")
        );
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("0o750"), Ok(0o750));
        assert_eq!(parse_mode("04755"), Ok(0o4755));
        assert!(parse_mode("9").is_err());
        assert!(parse_mode("77777").is_err());
        assert_eq!(mode_string(true, 0o750), "drwxr-x---");
        assert_eq!(mode_string(false, 0o644), "-rw-r--r--");
    }
}
