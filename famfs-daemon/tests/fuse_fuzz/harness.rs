//! The session of [`FuzzFs`] over the simulated kernel (`famfs_daemon::fuse::sim`), with uniques for
//! sentinels and checks kept apart from fuzzed ones, and harness errors as test-case failures.

use std::{io, time::Duration};

use famfs_daemon::fuse::{DialectConfig, SessionConfig, sim};
use proptest::test_runner::TestCaseError;

use crate::fuzzfs::FuzzFs;

const CONN: u32 = 777;
const EPOCH: u64 = 3;
/// Uniques of the sentinel and check requests; fuzzed uniques are kept below.
pub const SENTINEL_BASE: u64 = 0xF000_0000_0000_0000;

pub type Sim = sim::Sim<FuzzFs>;

/// A session serving [`FuzzFs`] over the simulated kernel; automatic uniques (sentinels and checks)
/// continue after [`SENTINEL_BASE`].
pub fn start(dialect: DialectConfig) -> Result<Sim, TestCaseError> {
    let mut sim = Sim::builder(FuzzFs::new())
        .config(SessionConfig {
            max_write: 64 * 1024,
            ..sim::session_config(CONN, EPOCH, dialect)
        })
        .records(1 << 16)
        .timeout(Duration::from_secs(30))
        .start()
        .map_err(fail)?;
    sim.set_last_unique(SENTINEL_BASE);
    Ok(sim)
}

/// A harness error (no reply within 30 s, the session ended, a bad length field, ...) as a failure.
pub fn fail(e: io::Error) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}
