//! The simulated kernel (`famfs_daemon::fuse::sim`) with these tests' session settings: a session
//! of [`TestFs`] on connection [`CONN`] / epoch [`EPOCH`], and the INIT flags it must accept.

use std::path::{Path, PathBuf};

use famfs_daemon::fuse::{DialectConfig, SessionConfig, sim};

use crate::testfs::TestFs;

pub type Sim = sim::Sim<TestFs>;

pub struct SimOpts {
    pub dialect: DialectConfig,
    pub daxdev: bool,
    pub kallsyms: Option<PathBuf>,
    pub workers: usize,
    pub sink: usize,
    /// [`SessionConfig::max_readahead`] (0: echo the kernel's offer).
    pub max_readahead: u32,
}

impl Default for SimOpts {
    fn default() -> Self {
        SimOpts {
            dialect: DialectConfig::Off,
            daxdev: true,
            kallsyms: None,
            workers: 1,
            sink: 4096,
            max_readahead: 0,
        }
    }
}

pub const CONN: u32 = 4242;
pub const EPOCH: u64 = 17;
/// What the session must accept of the simulated kernel's offer ([`sim::OFFER_FLAGS`],
/// [`sim::OFFER_FLAGS2`]): ASYNC_READ, BIG_WRITES, PARALLEL_DIROPS, MAX_PAGES, INIT_EXT, plus
/// DO_READDIRPLUS and FLOCK_LOCKS that TestFs asks for.
pub const WANT_FLAGS: u32 = 0x4044_2421;

pub fn start(o: SimOpts) -> Sim {
    let base = sim::session_config(CONN, EPOCH, o.dialect);
    Sim::builder(TestFs::new())
        .config(SessionConfig {
            daxdev_configured: o.daxdev,
            kallsyms: o.kallsyms.unwrap_or(base.kallsyms),
            max_readahead: o.max_readahead,
            ..base
        })
        .workers(o.workers)
        .records(o.sink)
        .start()
        .unwrap()
}

pub fn kallsyms_with_famfs(dir: &Path) -> PathBuf {
    let p = dir.join("kallsyms");
    std::fs::write(
        &p,
        "ffffffffc0000000 t fuse_open\t[fuse]\nffffffffc0001000 t famfs_fuse_iomap_begin\t[fuse]\n",
    )
    .unwrap();
    p
}
