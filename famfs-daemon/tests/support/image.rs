//! famfs test images: sparse image files in temp dirs made with the format library (with this host as
//! their master), files put into them, the host UUID file the daemon and the image CLI read, the
//! image CLI run as a process, and the extent layouts several tests share (the 16-extent `many` file
//! and the 16-strip `wide` file). Owns the test host's UUID; it never mounts or serves an image.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use famfs_daemon::famfs::{Extent, Image, ImageOptions, MkfsOptions};

use super::{DAEMON, MIB2};

/// The host UUID every test image is made with (written to the temp dir's `system_uuid` file, so the
/// daemons and the image CLI see themselves as the image's master).
pub const HOST: [u8; 16] = [
    0x5e, 0x0f, 0x7a, 0x2c, 0xd3, 0xb1, 0x4a, 0x96, 0xb8, 0xe4, 0x21, 0xc7, 0xf0, 0x9a, 0x6d, 0x3b,
];

/// The `system_uuid` file holding [`HOST`] in `dir` (written on first use).
pub fn uuid_file(dir: &Path) -> PathBuf {
    let p = dir.join("system_uuid");
    if !p.exists() {
        let text = format!("{}\n", famfs_daemon::famfs::format::format_uuid(&HOST));
        std::fs::write(&p, text).expect("write system_uuid");
    }
    p
}

/// A fresh sparse image file `name` of `size` bytes in `dir`, formatted with [`HOST`] as master.
pub fn mkfs(dir: &Path, name: &str, size: u64) -> (PathBuf, Image) {
    let p = dir.join(name);
    let o = MkfsOptions {
        size: Some(size),
        host_uuid: Some(HOST),
        system_uuid_path: Some(uuid_file(dir)),
        ..Default::default()
    };
    let img = Image::mkfs(&p, &o).expect("mkfs");
    (p, img)
}

/// Reopen an image writable as its master.
pub fn open_rw(path: &Path) -> Image {
    Image::open_with(
        path,
        &ImageOptions {
            writable: true,
            host_uuid: Some(HOST),
            ..Default::default()
        },
    )
    .expect("open image")
}

/// An extent on device 0.
pub fn ext(offset: u64, len: u64) -> Extent {
    Extent {
        devindex: 0,
        offset,
        len,
    }
}

/// Create `path` of `data.len()` bytes (simple allocation) and write `data` into it; returns its id.
pub fn put(img: &mut Image, path: &str, data: &[u8]) -> u64 {
    let id = img
        .creat(path, data.len() as u64, 0o644, 0, 0, None)
        .unwrap_or_else(|e| panic!("creat {path}: {e}"));
    if !data.is_empty() {
        img.write_file(id, 0, data)
            .unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
    id
}

/// Run `famfs-daemon image ARGS` with the host UUID file of `dir`; panics unless it succeeds.
pub fn image_cli(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(DAEMON)
        .arg("image")
        .args(args)
        .env("FAMFS_SYSTEM_UUID_PATH", uuid_file(dir))
        .output()
        .expect("run famfs-daemon image");
    assert!(
        out.status.success(),
        "famfs-daemon image {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Size of the `many` file: 16 simple extents of 2 MiB ([`many_extents`]), the last one not full →
/// fmap 32 + 16 × 24 = 416 bytes.
pub const MANY_SIZE: u64 = 16 * MIB2 - 100;
/// Size of the `wide` file: interleaved over 16 strips of 4 MiB ([`wide_strips`]), chunk 2 MiB →
/// fmap 32 + 24 + 16 × 24 = 440 bytes.
pub const WIDE_SIZE: u64 = 32 * MIB2;

/// The extents of the `many` file: every other 2 MiB unit from 256 MiB, so not contiguous and reads
/// cross extent boundaries.
pub fn many_extents() -> Vec<Extent> {
    (0..16u64)
        .map(|k| ext(0x1000_0000 + k * 2 * MIB2, MIB2))
        .collect()
}

/// The strips of the `wide` file: 16 strips of 4 MiB, 8 MiB apart, from 1 GiB.
pub fn wide_strips() -> Vec<Extent> {
    (0..16u64)
        .map(|k| ext(0x4000_0000 + k * 4 * MIB2, 2 * MIB2))
        .collect()
}
