//! The image every server test serves, built with the format library from real log entries (inode
//! id = 16 + log index): a simple file, an interleaved one, a directory with a 16-extent file and a
//! 16-strip file, and a small text file, with known contents. The layouts of the 16-extent and
//! 16-strip files are `support::image`'s (shared with `join_famfs_sim`), re-exported here.

use std::path::PathBuf;

use famfs_daemon::{
    famfs::Fmap,
    server::{FamfsFs, ServerConfig},
};

pub use crate::support::image::{MANY_SIZE, WIDE_SIZE, many_extents, wide_strips};
use crate::support::{
    GIB, MIB, MIB2,
    image::{ext, mkfs, put, uuid_file},
    pattern,
};

pub const ROOT: u64 = 1;
pub const META: u64 = 2;
pub const SB_INO: u64 = 3;
pub const LOG_INO: u64 = 4;
/// Entry 0: `file0`, 1 MiB, uid/gid 1000, mode 0644, allocated at the first free unit (0xA00000).
pub const FILE0: u64 = 16;
/// Entry 1: `interleaved`, 3 MiB over 2 strips at 0x8600000 and 0x2600000, chunk 2 MiB.
pub const INTERLEAVED: u64 = 17;
/// Entry 2: directory `dir` (0750).
pub const DIR: u64 = 18;
/// Entry 3: `dir/many`, 16 simple extents of 2 MiB with gaps between them.
pub const MANY: u64 = 19;
/// Entry 4: `dir/wide`, interleaved over 16 strips.
pub const WIDE: u64 = 20;
/// Entry 5: `hello.txt`.
pub const HELLO: u64 = 21;

pub const HELLO_TXT: &[u8] = b"hello, famfs over FUSE\n";
pub const DAXDEV: &str = "/dev/dax0.0";

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub many: Vec<u8>,
    pub wide: Vec<u8>,
    pub file0: Vec<u8>,
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut img) = mkfs(dir.path(), "famfs.img", 4 * GIB);
    assert_eq!(
        img.creat("file0", MIB, 0o644, 1000, 1000, None).unwrap(),
        FILE0
    );
    let inter = Fmap::Interleaved {
        chunk_size: MIB2,
        strips: vec![ext(0x860_0000, MIB2), ext(0x260_0000, MIB2)],
    };
    assert_eq!(
        img.creat_with_fmap("interleaved", 3 * MIB, 0o644, 1000, 1000, &inter)
            .unwrap(),
        INTERLEAVED
    );
    assert_eq!(img.mkdir("dir", 0o750, 7, 8, false).unwrap(), DIR);
    assert_eq!(
        img.creat_with_fmap(
            "dir/many",
            MANY_SIZE,
            0o600,
            0,
            0,
            &Fmap::Simple(many_extents())
        )
        .unwrap(),
        MANY
    );
    let wide = Fmap::Interleaved {
        chunk_size: MIB2,
        strips: wide_strips(),
    };
    assert_eq!(
        img.creat_with_fmap("dir/wide", WIDE_SIZE, 0o644, 0, 0, &wide)
            .unwrap(),
        WIDE
    );
    assert_eq!(put(&mut img, "hello.txt", HELLO_TXT), HELLO);
    let many = pattern(MANY_SIZE as usize, 3);
    img.write_file(MANY, 0, &many).unwrap();
    let wide_data = pattern(WIDE_SIZE as usize, 9);
    img.write_file(WIDE, 0, &wide_data).unwrap();
    let file0 = pattern(MIB as usize, 5);
    img.write_file(FILE0, 0, &file0).unwrap();
    Fixture {
        _dir: dir,
        path,
        many,
        wide: wide_data,
        file0,
    }
}

pub fn open_fs(f: &Fixture, daxdev: Option<&str>) -> FamfsFs {
    FamfsFs::open(
        &f.path,
        &ServerConfig {
            daxdev: daxdev.map(PathBuf::from),
            system_uuid_path: Some(uuid_file(f._dir.path())),
            ..Default::default()
        },
    )
    .unwrap()
}
