//! Tests of the famfs library across its layers, one file per layer: [`format`] (exact bytes of the
//! spec's worked example (§13), round-trip properties, decoder checks, §9 resolution), [`replay`]
//! (replay rules (§8, §10), incremental replay, crash safety), [`image`] (a sparse image with real file
//! data, errors, the full default log) and [`fuzz`] (properties over decode + replay). This file holds
//! the fixtures they share. Unit tests of a single small module (alloc, role, store) sit in that module.
//!
//! Fuzzing: `fuzz::fuzz_*` run 256 (random bytes) and 128 (byte flips) cases by default, fast enough for
//! every `cargo test`; set `PROPTEST_CASES=N` to run N cases, e.g.
//! `PROPTEST_CASES=100000 cargo test --release -p famfs-daemon --lib famfs::tests::fuzz`.

use std::path::Path;

use proptest::prelude::*;

use super::{
    alloc::StripeSpec,
    format::*,
    fsck::fsck,
    image::{Image, ImageError, ImageOptions, MkfsOptions},
    log::{self, LogError},
    replay::*,
    role::Role,
    store::Store,
};

mod format;
mod fuzz;
mod image;
mod replay;

const MIB: u64 = 1 << 20;
const HOST: [u8; 16] = hex16("5e0f7a2cd3b14a96b8e421c7f09a6d3b");
const FS_UUID: [u8; 16] = hex16("3f2d9c1e7b4a4e8f9a610c5d2e7f8a93");
const DEV_UUID: [u8; 16] = hex16("a81c0b5219d44c2e8f076e3b95d1c4f0");

const fn hex16(s: &str) -> [u8; 16] {
    let b = s.as_bytes();
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = (nib(b[2 * i]) << 4) | nib(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nib(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("bad hex"),
    }
}

/// "ff 82 b2 ..." → bytes.
fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

fn opts() -> ImageOptions {
    ImageOptions {
        writable: true,
        system_uuid_path: None,
        host_uuid: Some(HOST),
    }
}

fn mkfs_opts(version: u64) -> MkfsOptions {
    MkfsOptions {
        version,
        host_uuid: Some(HOST),
        uuid: Some(FS_UUID),
        dev_uuid: Some(DEV_UUID),
        ..Default::default()
    }
}

/// An in-memory filesystem of `size` bytes (no 4 GiB minimum).
fn mem_image(size: u64, version: u64) -> Image {
    let o = MkfsOptions {
        min_size: 0,
        ..mkfs_opts(version)
    };
    Image::mkfs_store(Store::from_vec(vec![0; size as usize]), &o, b"<memory>").unwrap()
}

/// A sparse image file of `size` bytes in `dir`, formatted.
fn file_image(dir: &Path, size: u64) -> (std::path::PathBuf, Image) {
    let p = dir.join("famfs.img");
    let o = MkfsOptions {
        size: Some(size),
        ..mkfs_opts(VERSION_48)
    };
    let img = Image::mkfs(&p, &o).unwrap();
    (p, img)
}

fn ext(offset: u64, len: u64) -> Extent {
    Extent {
        devindex: 0,
        offset,
        len,
    }
}

fn file_body(path: &str, size: u64, fmap: RawFmap) -> EntryBody {
    EntryBody::File(FileEntry {
        size,
        flags: FILE_FLAG_ALL_HOSTS_RW,
        uid: 1000,
        gid: 1000,
        mode: 0o644,
        relpath: RelPath::from_raw(raw_path(path.as_bytes())),
        fmap,
    })
}

fn simple(exts: &[Extent]) -> RawFmap {
    let mut a = [Extent::default(); MAX_SIMPLE_EXTENTS];
    a[..exts.len()].copy_from_slice(exts);
    RawFmap::Simple {
        nextents: exts.len() as u32,
        extents: a,
    }
}

fn raw_path(p: &[u8]) -> [u8; RELPATH_LEN] {
    let mut r = [0u8; RELPATH_LEN];
    let n = p.len().min(RELPATH_LEN);
    r[..n].copy_from_slice(&p[..n]);
    r
}

fn mkdir_body(path: &str, uid: u32, gid: u32) -> EntryBody {
    EntryBody::Mkdir(MkdirEntry {
        uid,
        gid,
        mode: 0o755,
        relpath: RelPath::from_raw(raw_path(path.as_bytes())),
    })
}

/// Append raw bodies bypassing the namespace checks (to build anomalous logs), then refresh.
fn append_raw(img: &mut Image, bodies: &[EntryBody]) -> u64 {
    let geo = *img.geometry();
    let i = log::append(img.store_mut(), &geo, bodies).unwrap();
    img.refresh().unwrap();
    i
}
