//! The simulated kernel (`famfs_daemon::fuse::sim`) with these tests' session settings, typed
//! requests over it ([`Ops`]), and the famfs dialect settings every dialect test runs through.

use famfs_daemon::{
    fuse::{
        DialectConfig,
        abi::{self, AttrOut, EntryOut, WriteOut, opcode},
        sim::{self, Dirent, getattr_in, parse_dirents, read_in, write_in},
    },
    server::FamfsFs,
};

pub type Sim = sim::Sim<FamfsFs>;

pub const CONN: u32 = 77;
pub const EPOCH: u64 = 5;
/// What the session accepts of the simulated kernel's offer: ASYNC_READ, BIG_WRITES,
/// PARALLEL_DIROPS, MAX_PAGES, INIT_EXT, and the server's DO_READDIRPLUS and READDIRPLUS_AUTO.
pub const WANT_FLAGS: u32 = 0x4044_6021;

pub fn start(fs: FamfsFs, dialect: DialectConfig) -> Sim {
    Sim::builder(fs)
        .config(sim::session_config(CONN, EPOCH, dialect))
        .records(4096)
        .start()
        .unwrap()
}

/// Typed requests: the decoded reply, or the reply's error.
pub trait Ops {
    fn lookup(&mut self, parent: u64, name: &str) -> Result<EntryOut, i32>;
    fn getattr(&mut self, ino: u64) -> Result<abi::Attr, i32>;
    fn read(&mut self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, i32>;
    fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, i32>;
    fn readdir(&mut self, ino: u64, offset: u64, size: u32) -> Vec<Dirent>;
}

impl Ops for Sim {
    fn lookup(&mut self, parent: u64, name: &str) -> Result<EntryOut, i32> {
        let r = self.call(opcode::LOOKUP, parent, &sim::name(name)).unwrap();
        if r.error != 0 {
            assert!(r.body.is_empty(), "an error reply is the header alone");
            return Err(r.error);
        }
        Ok(r.decode::<EntryOut>().unwrap())
    }

    fn getattr(&mut self, ino: u64) -> Result<abi::Attr, i32> {
        let r = self.call(opcode::GETATTR, ino, &getattr_in()).unwrap();
        if r.error != 0 {
            return Err(r.error);
        }
        Ok(r.decode::<AttrOut>().unwrap().attr)
    }

    fn read(&mut self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, i32> {
        let r = self
            .call(opcode::READ, ino, &read_in(0, offset, size))
            .unwrap();
        if r.error != 0 {
            return Err(r.error);
        }
        Ok(r.body)
    }

    fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, i32> {
        let r = self
            .call(opcode::WRITE, ino, &write_in(0, offset, data))
            .unwrap();
        if r.error != 0 {
            return Err(r.error);
        }
        Ok(r.decode::<WriteOut>().unwrap().size)
    }

    fn readdir(&mut self, ino: u64, offset: u64, size: u32) -> Vec<Dirent> {
        let r = self
            .call(opcode::READDIR, ino, &read_in(0, offset, size))
            .unwrap();
        assert_eq!(r.error, 0);
        parse_dirents(&r.body).unwrap()
    }
}

/// (dialect, its famfs INIT bit in flags2, its (GET_FMAP, GET_DAXDEV) opcodes).
pub type DialectCase = (DialectConfig, u32, Option<(u32, u32)>);

pub const DIALECTS: [DialectCase; 3] = [
    (DialectConfig::Off, 0, None),
    (DialectConfig::RfcV2, 0x400, Some((53, 54))),
    (DialectConfig::V3, 0x800, Some((54, 55))),
];
