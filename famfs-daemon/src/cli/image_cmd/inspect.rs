//! The read-only commands: ls, getmap, fsck, logplay --dry-run and read, and their output (text,
//! JSON, file bytes on stdout).
//!
//! Owns presentation only: what the namespace, the fsck report and the replay anomalies look like on
//! a terminal. Must not write to the image, nor decide what is a problem (that is
//! [`crate::famfs::Severity`] and the fsck report).

use std::{collections::HashMap, io::Write, path::Path, process::ExitCode};

use anyhow::{Context, Result, anyhow, bail};

use super::{FsckArgs, GetmapArgs, LogplayArgs, LsArgs, ReadArgs, join, open};
use crate::famfs::{
    Anomaly, Fmap, Image, ImageOptions, InodeKind, Namespace, entry_ino, fsck as famfs_fsck, role,
    store::Store,
};

pub(super) fn ls(a: &LsArgs, up: Option<&Path>) -> Result<ExitCode> {
    let img = open(&a.image, false, up)?;
    list(&img, a)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn getmap(a: &GetmapArgs, up: Option<&Path>) -> Result<ExitCode> {
    let img = open(&a.image, false, up)?;
    print_map(&img, a)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn fsck(a: &FsckArgs, up: Option<&Path>) -> Result<ExitCode> {
    let store = Store::open(&a.image, false).with_context(|| format!("{}", a.image.display()))?;
    let host = role::host_uuid_for_role(up);
    let r = famfs_fsck::fsck(&store, host.as_ref());
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

pub(super) fn logplay(a: &LogplayArgs, up: Option<&Path>) -> Result<ExitCode> {
    if !a.dry_run {
        bail!(
            "logplay needs --dry-run: this tool has no mount to play into (the daemon plays the log when it serves the image)"
        );
    }
    let img = Image::open_with(
        &a.image,
        &ImageOptions {
            writable: false,
            system_uuid_path: up.map(Path::to_path_buf),
            host_uuid: None,
        },
    )
    .with_context(|| format!("{}", a.image.display()))?;
    Ok(play_dry_run(&img))
}

/// Write a file's bytes to stdout.
pub(super) fn read(a: &ReadArgs, up: Option<&Path>) -> Result<ExitCode> {
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

pub(super) fn mode_string(dir: bool, mode: u32) -> String {
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

fn list(img: &Image, a: &LsArgs) -> Result<()> {
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

fn print_map(img: &Image, a: &GetmapArgs) -> Result<()> {
    let id = img.resolve(&a.path)?;
    let ino = img
        .namespace()
        .get(id)
        .ok_or_else(|| anyhow!("{}: vanished", a.path))?;
    let InodeKind::File { size, fmap } = &ino.kind else {
        bail!("{}: is a directory (no extents)", a.path);
    };
    let (kind, chunk) = match fmap {
        Fmap::Simple(_) => ("simple", None),
        Fmap::Interleaved { chunk_size, .. } => ("interleaved", Some(*chunk_size)),
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

fn play_dry_run(img: &Image) -> ExitCode {
    let ns = img.namespace();
    let mut by_index: HashMap<u64, Vec<&Anomaly>> = HashMap::new();
    for an in ns.anomalies() {
        by_index.entry(an.index).or_default().push(an);
    }
    let (mut dirs, mut files, mut skipped) = (0u64, 0u64, 0u64);
    for i in 0..ns.next_index() {
        let id = entry_ino(i);
        if let Some(ino) = ns.get(id) {
            let path = ns.path_of(id).map_or_else(
                || format!("<inode {id} has no path from the root>"),
                |p| String::from_utf8_lossy(&p).into_owned(),
            );
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
    let bad = ns.problem_count() + usize::from(ns.stopped().is_some());
    println!(
        "logplay (dry run): {} of {} entries played ({} bytes of log), {dirs} directories and {files} files created, {skipped} entries created nothing, {bad} problems{}",
        ns.next_index(),
        img.log_header().next_index,
        img.log_header().used_len(),
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
