//! `famfs-daemon image <command>`: tools over a famfs image file or device, byte-compatible with the
//! reference famfs (mkfs, mkdir, creat, cp, ls, getmap, fsck, logplay --dry-run, read).
//!
//! Owns argument parsing (sizes with K/M/G/T suffixes, octal modes) and output formatting. All format
//! logic lives in [`crate::famfs`]; this module must not touch bytes of the image itself.
//! Exit status: 0 on success (fsck: clean), 1 on an error or an unclean check, 2 on usage errors.

use std::{
    collections::HashMap,
    io::{Read, Write},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};

use crate::famfs::{
    Image, ImageOptions, InodeKind, MkfsOptions, Namespace, Severity, StripeSpec,
    format::{self, ALLOC_UNIT, ENTRY_SIZE, LOG_HEADER_SIZE, format_uuid},
    fsck,
    store::Store,
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

fn caller_ids() -> (u32, u32) {
    // SAFETY: geteuid/getegid have no preconditions and cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

fn open(path: &Path, writable: bool, uuid_path: &Option<PathBuf>) -> Result<Image> {
    let img = Image::open_with(
        path,
        &ImageOptions {
            writable,
            system_uuid_path: uuid_path.clone(),
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
    let bad = ns
        .anomalies()
        .iter()
        .filter(|a| a.severity() != Severity::Note)
        .count();
    if bad > 0 {
        eprintln!(
            "famfs-daemon image: warning: {bad} log entries were skipped or conflict (run fsck)"
        );
    }
}

/// Run `famfs-daemon image ...`.
pub fn run(args: ImageArgs) -> Result<ExitCode> {
    let up = &args.system_uuid_path;
    match args.cmd {
        ImageCmd::Mkfs(a) => mkfs(a, up),
        ImageCmd::Mkdir(a) => {
            let mut img = open(&a.image, true, up)?;
            let (u, g) = caller_ids();
            for p in &a.paths {
                img.mkdir(p, a.mode, a.uid.unwrap_or(u), a.gid.unwrap_or(g), a.parents)
                    .with_context(|| format!("mkdir {p}"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ImageCmd::Creat(a) => {
            let mut img = open(&a.image, true, up)?;
            let (u, g) = caller_ids();
            let id = img
                .creat(
                    &a.path,
                    a.size,
                    a.mode,
                    a.uid.unwrap_or(u),
                    a.gid.unwrap_or(g),
                    a.stripe.spec()?,
                )
                .with_context(|| format!("creat {}", a.path))?;
            println!("{} inode {id} size {}", a.path.trim_matches('/'), a.size);
            Ok(ExitCode::SUCCESS)
        }
        ImageCmd::Cp(a) => cp(a, up),
        ImageCmd::Ls(a) => {
            let img = open(&a.image, false, up)?;
            ls(&img, &a)?;
            Ok(ExitCode::SUCCESS)
        }
        ImageCmd::Getmap(a) => {
            let img = open(&a.image, false, up)?;
            getmap(&img, &a)?;
            Ok(ExitCode::SUCCESS)
        }
        ImageCmd::Fsck(a) => {
            let store =
                Store::open(&a.image, false).with_context(|| format!("{}", a.image.display()))?;
            let host = crate::famfs::role::read_host_uuid(&crate::famfs::role::system_uuid_path(
                up.as_deref(),
            ))
            .ok();
            let r = fsck::fsck(&store, host.as_ref());
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r.to_json())?);
            } else {
                print!("{}", r.render_text());
            }
            Ok(if r.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        ImageCmd::Logplay(a) => {
            if !a.dry_run {
                bail!(
                    "logplay needs --dry-run: this tool has no mount to play into (the daemon plays the log when it serves the image)"
                );
            }
            let img = Image::open_with(
                &a.image,
                &ImageOptions {
                    writable: false,
                    system_uuid_path: up.clone(),
                    host_uuid: None,
                },
            )
            .with_context(|| format!("{}", a.image.display()))?;
            Ok(logplay(&img))
        }
        ImageCmd::Read(a) => {
            let img = open(&a.image, false, up)?;
            let id = img.resolve(&a.path)?;
            let size = img
                .namespace()
                .get(id)
                .map(|i| i.size())
                .ok_or_else(|| anyhow!("{}: vanished", a.path))?;
            let mut out = std::io::stdout().lock();
            let mut buf = vec![0u8; (4 << 20).min(size.max(1) as usize)];
            let mut off = 0u64;
            while off < size {
                let n = img.read_file(id, off, &mut buf)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])?;
                off += n as u64;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn mkfs(a: MkfsArgs, up: &Option<PathBuf>) -> Result<ExitCode> {
    let img = Image::mkfs(
        &a.image,
        &MkfsOptions {
            size: a.size,
            log_len: a.log_len,
            force: a.force,
            version: a.format_version,
            system_uuid_path: up.clone(),
            ..Default::default()
        },
    )
    .context("mkfs")?;
    let sb = img.superblock();
    println!(
        "mkfs: {}: famfs version {}, uuid {}, size {} ({:#x}), log {:#x} bytes ({} entries), master {}",
        a.image.display(),
        sb.version,
        sb.fs_uuid_string(),
        sb.dev_size,
        sb.dev_size,
        sb.log_len,
        img.geometry().slots,
        format_uuid(&sb.system_uuid)
    );
    Ok(ExitCode::SUCCESS)
}

fn join(dir: &str, name: &str) -> String {
    let d = dir.trim_matches('/');
    if d.is_empty() {
        name.to_string()
    } else {
        format!("{d}/{name}")
    }
}

fn is_dir(img: &Image, path: &str) -> bool {
    img.namespace()
        .lookup_path(path.as_bytes())
        .and_then(|id| img.namespace().get(id))
        .is_some_and(|i| i.is_dir())
}

fn cp(a: CpArgs, up: &Option<PathBuf>) -> Result<ExitCode> {
    let mut img = open(&a.image, true, up)?;
    let Some((dest, sources)) = a.paths.split_last() else {
        bail!("cp needs SOURCE... DEST");
    };
    let stripe = a.stripe.spec()?;
    let into_dir = sources.len() > 1 || is_dir(&img, dest);
    if sources.len() > 1 && !into_dir {
        bail!("cp: {dest:?} is not a directory in the image (needed for several sources)");
    }
    let mut failed = false;
    for src in sources {
        let sp = Path::new(src);
        let md = std::fs::metadata(sp).with_context(|| format!("cp: {src}"))?;
        let target = if into_dir {
            let name = sp
                .file_name()
                .ok_or_else(|| anyhow!("cp: {src}: has no file name"))?
                .to_string_lossy()
                .into_owned();
            join(dest, &name)
        } else {
            dest.trim_matches('/').to_string()
        };
        if md.is_dir() {
            if !a.recursive {
                eprintln!("famfs-daemon image: cp: omitting directory {src} (use -r)");
                failed = true;
                continue;
            }
            failed |= copy_tree(&mut img, sp, &target, &a, stripe)?;
        } else if md.is_file() {
            copy_file(&mut img, sp, &md, &target, &a, stripe)?;
        } else {
            eprintln!("famfs-daemon image: cp: skipping {src}: not a regular file or directory");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn owner(md: &std::fs::Metadata, a: &CpArgs) -> (u32, u32, u32) {
    (
        a.mode.unwrap_or(md.permissions().mode() & 0o777),
        a.uid.unwrap_or(md.uid()),
        a.gid.unwrap_or(md.gid()),
    )
}

fn copy_file(
    img: &mut Image,
    src: &Path,
    md: &std::fs::Metadata,
    target: &str,
    a: &CpArgs,
    stripe: Option<StripeSpec>,
) -> Result<()> {
    let (mode, uid, gid) = owner(md, a);
    let size = md.len();
    let id = img
        .creat(target, size, mode, uid, gid, stripe)
        .with_context(|| format!("cp {} → {target}", src.display()))?;
    let mut f = std::fs::File::open(src).with_context(|| format!("cp: {}", src.display()))?;
    let mut buf = vec![0u8; (4 << 20).min(size.max(1) as usize)];
    let mut off = 0u64;
    while off < size {
        let n = ((size - off) as usize).min(buf.len());
        f.read_exact(&mut buf[..n])
            .with_context(|| format!("cp: reading {} at {off}", src.display()))?;
        img.write_file(id, off, &buf[..n])
            .with_context(|| format!("cp: writing {target} at {off}"))?;
        off += n as u64;
    }
    Ok(())
}

/// Copy a host directory tree; returns true when something was skipped.
fn copy_tree(
    img: &mut Image,
    src: &Path,
    target: &str,
    a: &CpArgs,
    stripe: Option<StripeSpec>,
) -> Result<bool> {
    let md = std::fs::metadata(src).with_context(|| format!("cp: {}", src.display()))?;
    let (mode, uid, gid) = owner(&md, a);
    if !is_dir(img, target) {
        img.mkdir(target, mode, uid, gid, false)
            .with_context(|| format!("cp: mkdir {target}"))?;
    }
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .with_context(|| format!("cp: {}", src.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    let mut skipped = false;
    for e in entries {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let t = join(target, &name);
        let md = std::fs::symlink_metadata(&p)?;
        if md.is_dir() {
            skipped |= copy_tree(img, &p, &t, a, stripe)?;
        } else if md.is_file() {
            copy_file(img, &p, &md, &t, a, stripe)?;
        } else {
            eprintln!(
                "famfs-daemon image: cp: skipping {}: not a regular file or directory",
                p.display()
            );
            skipped = true;
        }
    }
    Ok(skipped)
}

fn mode_string(dir: bool, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(if dir { 'd' } else { '-' });
    for shift in [6, 3, 0] {
        let m = (mode >> shift) & 7;
        s.push(if m & 4 != 0 { 'r' } else { '-' });
        s.push(if m & 2 != 0 { 'w' } else { '-' });
        s.push(if m & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn ls_line(ns: &Namespace, id: u64, name: &[u8], a: &LsArgs) -> String {
    let mut s = String::new();
    if a.inode {
        s.push_str(&format!("{id:>8} "));
    }
    if let (true, Some(i)) = (a.long, ns.get(id)) {
        s.push_str(&format!(
            "{} {:>6} {:>6} {:>12} ",
            mode_string(i.is_dir(), i.mode),
            i.uid,
            i.gid,
            i.size()
        ));
    }
    s.push_str(&String::from_utf8_lossy(name));
    s
}

fn ls(img: &Image, a: &LsArgs) -> Result<()> {
    let ns = img.namespace();
    let id = img.resolve(&a.path)?;
    let ino = ns.get(id).ok_or_else(|| anyhow!("{}: vanished", a.path))?;
    let mut out = std::io::stdout().lock();
    if !ino.is_dir() {
        writeln!(
            out,
            "{}",
            ls_line(ns, id, a.path.trim_matches('/').as_bytes(), a)
        )?;
        return Ok(());
    }
    let mut stack = vec![(a.path.trim_matches('/').to_string(), id)];
    let mut first = true;
    while let Some((path, dir)) = stack.pop() {
        if a.recursive {
            if !first {
                writeln!(out)?;
            }
            writeln!(out, "/{path}:")?;
        }
        first = false;
        let mut subdirs = Vec::new();
        for (name, cid) in ns.children(dir) {
            writeln!(out, "{}", ls_line(ns, *cid, name, a))?;
            if a.recursive && ns.get(*cid).is_some_and(|i| i.is_dir()) {
                subdirs.push((join(&path, &String::from_utf8_lossy(name)), *cid));
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

fn getmap(img: &Image, a: &GetmapArgs) -> Result<()> {
    let id = img.resolve(&a.path)?;
    let ino = img
        .namespace()
        .get(id)
        .ok_or_else(|| anyhow!("{}: vanished", a.path))?;
    let InodeKind::File { size, fmap } = &ino.kind else {
        bail!("{}: is a directory (no extents)", a.path);
    };
    let (kind, chunk) = match fmap {
        crate::famfs::Fmap::Simple(_) => ("simple", None),
        crate::famfs::Fmap::Interleaved { chunk_size, .. } => ("interleaved", Some(*chunk_size)),
    };
    let exts = fmap.extents();
    if a.json {
        let v = serde_json::json!({
            "path": a.path.trim_matches('/'),
            "inode": id,
            "size": size,
            "type": kind,
            "chunk_size": chunk,
            "log_index": ino.log_index,
            "extents": exts.iter().map(|e| serde_json::json!({
                "devindex": e.devindex, "offset": e.offset, "len": e.len,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("path: {}", a.path.trim_matches('/'));
    println!("inode: {id}");
    println!("size: {size}");
    println!("type: {kind}");
    if let Some(c) = chunk {
        println!("chunk_size: {c:#x}");
        println!("strips: {}", exts.len());
    } else {
        println!("extents: {}", exts.len());
    }
    for (k, e) in exts.iter().enumerate() {
        println!(
            "  {k}: devindex {} offset {:#x} len {:#x}",
            e.devindex, e.offset, e.len
        );
    }
    Ok(())
}

fn logplay(img: &Image) -> ExitCode {
    let ns = img.namespace();
    let mut by_index: HashMap<u64, Vec<&crate::famfs::Anomaly>> = HashMap::new();
    for an in ns.anomalies() {
        by_index.entry(an.index).or_default().push(an);
    }
    let (mut dirs, mut files, mut skipped) = (0u64, 0u64, 0u64);
    for i in 0..ns.next_index() {
        let id = crate::famfs::FIRST_LOG_INO + i;
        if let Some(ino) = ns.get(id) {
            let path = ns
                .path_of(id)
                .map(|p| String::from_utf8_lossy(&p).into_owned())
                .unwrap_or_default();
            match &ino.kind {
                InodeKind::Dir => {
                    dirs += 1;
                    println!(
                        "entry {i}: mkdir {path} (inode {id}, mode {:o}, uid {}, gid {})",
                        ino.mode, ino.uid, ino.gid
                    );
                }
                InodeKind::File { size, fmap } => {
                    files += 1;
                    println!(
                        "entry {i}: file {path} (inode {id}, size {size}, {} extent(s), mode {:o}, uid {}, gid {})",
                        fmap.extents().len(),
                        ino.mode,
                        ino.uid,
                        ino.gid
                    );
                }
            }
        } else {
            skipped += 1;
        }
        for an in by_index.get(&i).into_iter().flatten() {
            println!("entry {i}: {}: {an}", an.severity().as_str());
        }
    }
    if let Some(stop) = ns.stopped() {
        println!("entry {}: error: {stop}", stop.index);
    }
    let bad = ns
        .anomalies()
        .iter()
        .filter(|a| a.severity() != Severity::Note)
        .count()
        + usize::from(ns.stopped().is_some());
    println!(
        "logplay (dry run): {} of {} entries played ({} bytes of log), {dirs} directories and {files} files created, {skipped} entries created nothing, {bad} problems{}",
        ns.next_index(),
        img.log_header().next_index,
        LOG_HEADER_SIZE as u64 + img.log_header().next_index * ENTRY_SIZE as u64,
        if ns.stopped().is_some() {
            "; play stopped"
        } else {
            ""
        }
    );
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
