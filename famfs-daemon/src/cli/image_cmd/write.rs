//! The image-changing commands: mkfs, mkdir, creat, and cp (host files and trees into the image; each
//! file's data is durable before its log entry is appended, so an interrupted cp leaves no file).
//!
//! Owns the glue between the arguments, the host files cp reads and [`Image`]'s operations, and the
//! lines these commands print. Must not build log entries or allocate: [`Image`] does that.

use std::{
    io::Read,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    process::ExitCode,
};

use anyhow::{Context, Result, anyhow, bail};

use super::{CpArgs, CreatArgs, MkdirArgs, MkfsArgs, caller_ids, join, open};
use crate::famfs::{Image, MkfsOptions, StripeSpec, format::format_uuid};

pub(super) fn mkfs(a: &MkfsArgs, up: Option<&Path>) -> Result<ExitCode> {
    let img = Image::mkfs(
        &a.image,
        &MkfsOptions {
            size: a.size,
            log_len: a.log_len,
            force: a.force,
            version: a.format_version,
            system_uuid_path: up.map(Path::to_path_buf),
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

pub(super) fn mkdir(a: &MkdirArgs, up: Option<&Path>) -> Result<ExitCode> {
    let mut img = open(&a.image, true, up)?;
    let (u, g) = caller_ids();
    for p in &a.paths {
        img.mkdir(p, a.mode, a.uid.unwrap_or(u), a.gid.unwrap_or(g), a.parents)
            .with_context(|| format!("mkdir {p}"))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn creat(a: &CreatArgs, up: Option<&Path>) -> Result<ExitCode> {
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

fn is_dir(img: &Image, path: &str) -> bool {
    img.namespace()
        .lookup_path(path.as_bytes())
        .and_then(|id| img.namespace().get(id))
        .is_some_and(|i| i.is_dir())
}

pub(super) fn cp(a: &CpArgs, up: Option<&Path>) -> Result<ExitCode> {
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
            failed |= copy_tree(&mut img, sp, &target, a, stripe)?;
        } else if md.is_file() {
            copy_file(&mut img, sp, &md, &target, a, stripe)?;
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
    let mut f = std::fs::File::open(src).with_context(|| format!("cp: {}", src.display()))?;
    // The data is written and flushed before the entry is appended: an interrupted cp leaves no file.
    let mut fill = |_off: u64, buf: &mut [u8]| f.read_exact(buf);
    img.creat_from(target, size, mode, uid, gid, stripe, &mut fill)
        .with_context(|| format!("cp {} → {target}", src.display()))?;
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
