//! tracefs: make sure it is mounted (aya reads tracepoint ids there) and read event `format` files so
//! probes use the running kernel's field offsets instead of assumed ones.

use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use famfs_common::{
    fault::{DaxOffsets, FilemapOffsets},
    fuse_request::TpOffsets,
};

pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Where tracefs is mounted, mounting it at `/sys/kernel/tracing` when it is mounted nowhere.
/// Returns the path and whether this call mounted it.
pub fn ensure_mounted() -> Result<(PathBuf, bool)> {
    if let Some(p) = find_mount()? {
        return Ok((p, false));
    }
    let target = CString::new(TRACEFS)?;
    let fstype = CString::new("tracefs")?;
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call; data is null.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        bail!("tracefs is not mounted and mounting it at {TRACEFS} failed: {err}");
    }
    Ok((PathBuf::from(TRACEFS), true))
}

/// The first tracefs mount point in /proc/self/mounts (debugfs' `tracing` subdir counts too).
pub fn find_mount() -> Result<Option<PathBuf>> {
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (_, Some(dir), Some(kind)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if kind == "tracefs" {
            return Ok(Some(PathBuf::from(dir)));
        }
        if kind == "debugfs" && Path::new(dir).join("tracing/events").is_dir() {
            return Ok(Some(Path::new(dir).join("tracing")));
        }
    }
    Ok(None)
}

/// Whether `category:event` exists on this kernel.
pub fn event_exists(root: &Path, category: &str, event: &str) -> bool {
    root.join("events")
        .join(category)
        .join(event)
        .join("format")
        .is_file()
}

/// Field name → (offset, size) from a tracefs `format` file.
pub fn parse_format(text: &str) -> Vec<(String, u32, u32)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut decl = None;
        let mut offset = None;
        let mut size = None;
        for part in rest.split(';') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("offset:") {
                offset = v.trim().parse::<u32>().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.trim().parse::<u32>().ok();
            } else if decl.is_none() && !part.is_empty() {
                decl = Some(part);
            }
        }
        let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
            continue;
        };
        // "unsigned long long unique" / "char comm[16]" → last identifier without array suffix.
        let name = decl.rsplit(' ').next().unwrap_or(decl);
        let name = name.split('[').next().unwrap_or(name);
        out.push((name.to_string(), offset, size));
    }
    out
}

fn field(fields: &[(String, u32, u32)], name: &str, size: u32, event: &str) -> Result<u32> {
    match fields.iter().find(|(n, _, _)| n == name) {
        Some((_, off, sz)) if *sz == size => Ok(*off),
        Some((_, _, sz)) => bail!("{event}: field `{name}` has size {sz}, expected {size}"),
        None => bail!("{event}: field `{name}` missing from its tracefs format"),
    }
}

fn read_event(root: &Path, category: &str, event: &str) -> Result<Vec<(String, u32, u32)>> {
    let p = root
        .join("events")
        .join(category)
        .join(event)
        .join("format");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Ok(parse_format(&text))
}

/// Offsets of a `fs_dax:dax_{pte,pmd}_fault[_done]` event on the running kernel.
pub fn dax_offsets(root: &Path, event: &str) -> Result<DaxOffsets> {
    let f = read_event(root, "fs_dax", event)?;
    Ok(DaxOffsets {
        ino: field(&f, "ino", 8, event)?,
        pgoff: field(&f, "pgoff", 8, event)?,
        dev: field(&f, "dev", 4, event)?,
        flags: field(&f, "flags", 4, event)?,
        result: field(&f, "result", 4, event)?,
        _pad: 0,
    })
}

/// Offsets of `filemap:mm_filemap_fault` on the running kernel.
pub fn filemap_offsets(root: &Path) -> Result<FilemapOffsets> {
    let ev = "mm_filemap_fault";
    let f = read_event(root, "filemap", ev)?;
    Ok(FilemapOffsets {
        ino: field(&f, "i_ino", 8, ev)?,
        dev: field(&f, "s_dev", 4, ev)?,
        index: field(&f, "index", 8, ev)?,
        _pad: 0,
    })
}

/// Offsets of the fuse_request_send / fuse_request_end fields on the running kernel.
pub fn fuse_request_offsets(root: &Path) -> Result<TpOffsets> {
    let read = |ev: &str| -> Result<Vec<(String, u32, u32)>> {
        let p = root.join("events/fuse").join(ev).join("format");
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        Ok(parse_format(&text))
    };
    let send = read("fuse_request_send")?;
    let end = read("fuse_request_end")?;
    Ok(TpOffsets {
        send_connection: field(&send, "connection", 4, "fuse_request_send")?,
        send_unique: field(&send, "unique", 8, "fuse_request_send")?,
        send_opcode: field(&send, "opcode", 4, "fuse_request_send")?,
        send_len: field(&send, "len", 4, "fuse_request_send")?,
        end_connection: field(&end, "connection", 4, "fuse_request_end")?,
        end_unique: field(&end, "unique", 8, "fuse_request_end")?,
        end_len: field(&end, "len", 4, "fuse_request_end")?,
        end_error: field(&end, "error", 4, "fuse_request_end")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEND: &str = "name: fuse_request_send\nID: 1234\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:dev_t connection;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:uint64_t unique;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:enum fuse_opcode opcode;\toffset:24;\tsize:4;\tsigned:0;\n\tfield:uint32_t len;\toffset:28;\tsize:4;\tsigned:0;\n\nprint fmt: \"x\"\n";

    #[test]
    fn parses_6_18_send_format() {
        let f = parse_format(SEND);
        assert_eq!(field(&f, "connection", 4, "t").unwrap(), 8);
        assert_eq!(field(&f, "unique", 8, "t").unwrap(), 16);
        assert_eq!(field(&f, "opcode", 4, "t").unwrap(), 24);
        assert_eq!(field(&f, "len", 4, "t").unwrap(), 28);
        assert_eq!(field(&f, "common_pid", 4, "t").unwrap(), 4);
        let err = field(&f, "unique", 4, "t").unwrap_err().to_string();
        assert!(err.contains("size 8"), "{err}");
        let err = field(&f, "nodeid", 8, "t").unwrap_err().to_string();
        assert!(err.contains("`nodeid` missing"), "{err}");
    }

    #[test]
    fn parses_array_fields() {
        let f = parse_format("\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n");
        assert_eq!(f, vec![("comm".to_string(), 8, 16)]);
    }
}
