//! Property test (fuzz) of the FUSE request decoder and dispatcher, through the public API only: a
//! simulated kernel on one end of a `socketpair(AF_UNIX, SOCK_SEQPACKET)` sends a `Session` (one
//! worker, serving a small in-memory filesystem) random INIT bodies, then — after a valid INIT — a
//! batch of random byte strings and mutated valid requests: random opcodes 0..=80, wrong `len` and
//! `total_extlen` fields, truncated and extended bodies, names without a NUL, flipped bytes, random
//! node ids and uniques (0 included), in all three famfs dialect settings.
//!
//! Properties, per message:
//! - a message of 16 bytes or more (its `unique` is readable) gets exactly one reply carrying its
//!   `unique` — none when the opcode is FORGET, BATCH_FORGET, NOTIFY_REPLY or INTERRUPT, or when the
//!   unique is 0 (a reply with unique 0 would read as a notification); a shorter message gets none;
//!   "exactly one" is checked by a sentinel GETATTR after each message: every reply before the
//!   sentinel's belongs to the message;
//! - an error reply is the 16-byte header alone; a reply's `len` field equals the bytes written;
//!   successful replies of fixed-size opcodes have their exact size;
//! - every message of 16 bytes or more yields exactly one request record with its unique, opcode and
//!   the reply's error;
//!
//! and per case: the session never panics, a valid LOOKUP, GETATTR and READ (and GET_FMAP when famfs
//! mode is on) after the batch are answered exactly, and DESTROY ends the session cleanly.
//!
//! Layout: the filesystem served ([`fuzzfs`]), the session over the simulated kernel ([`harness`]),
//! what is sent ([`input`]: shapes, mutations and their strategies), and the per-message oracle and
//! one whole case ([`oracle`]).
//!
//! Runs 256 cases in the normal `cargo test`; set `PROPTEST_CASES` for a longer run, e.g.
//! `PROPTEST_CASES=20000 cargo test -p famfs-daemon --test fuse_fuzz`.

// Test code: a failed unwrap/expect/assertion is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fuzzfs;
mod harness;
mod input;
mod oracle;

use famfs_daemon::fuse::{
    DialectConfig,
    abi::{InHeader, InitIn, opcode},
    sim::{OFFER_FLAGS, OFFER_FLAGS2},
};
use proptest::prelude::*;

use crate::{
    fuzzfs::ROOT,
    harness::start,
    input::{fuzz_strategy, init_strategy},
    oracle::{exchange, run_case},
};

fn dialect_strategy() -> impl Strategy<Value = (DialectConfig, u32)> {
    prop::sample::select(vec![
        (DialectConfig::Off, 0xc00),
        (DialectConfig::RfcV2, 0x400),
        (DialectConfig::V3, 0x800),
        (DialectConfig::V3, 0),
    ])
}

proptest! {
    // The default config reads PROPTEST_CASES (256 when unset). Failures print the shrunk input;
    // nothing is written into the source tree.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn session_survives_random_and_mutated_requests(
        (dialect, famfs_bits) in dialect_strategy(),
        inits in prop::collection::vec(init_strategy(), 0..3),
        batch in prop::collection::vec(fuzz_strategy(), 1..24),
    ) {
        run_case(dialect, famfs_bits, &inits, &batch)?;
    }
}

/// Messages that once needed care, pinned: each kind of framing damage, checked with the same oracle.
#[test]
fn framing_edge_cases() {
    let mut k = start(DialectConfig::V3).unwrap();
    let init = InitIn {
        major: 7,
        minor: 45,
        flags: OFFER_FLAGS,
        flags2: OFFER_FLAGS2 | 0x800,
        ..Default::default()
    }
    .to_bytes();
    assert_eq!(k.call(opcode::INIT, 0, &init).unwrap().error, 0);
    let header = |len: u32, op: u32, unique: u64, extlen: u16| {
        InHeader {
            len,
            opcode: op,
            unique,
            nodeid: ROOT,
            total_extlen: extlen,
            ..Default::default()
        }
        .to_bytes()
        .to_vec()
    };
    // (message, expected error; None = no reply)
    let cases: Vec<(Vec<u8>, Option<i32>)> = vec![
        // Shorter than a unique: nothing to answer.
        (vec![1, 2, 3], None),
        (header(40, opcode::GETATTR, 5, 0)[..15].to_vec(), None),
        // A readable unique but a short header: EIO.
        (
            header(40, opcode::GETATTR, 5, 0)[..16].to_vec(),
            Some(-libc::EIO),
        ),
        (header(40, opcode::FORGET, 5, 0)[..20].to_vec(), None),
        // Length field disagrees with the bytes read.
        (header(41, opcode::GETATTR, 6, 0), Some(-libc::EIO)),
        (header(u32::MAX, opcode::STATFS, 7, 0), Some(-libc::EIO)),
        // Extensions longer than the request.
        (header(40, opcode::STATFS, 8, 1), Some(-libc::EIO)),
        // Unique 0 is never answered.
        (header(40, opcode::STATFS, 0, 0), None),
        // Body too short for its struct; name without NUL.
        (header(40, opcode::GETATTR, 9, 0), Some(-libc::EINVAL)),
        (
            [header(43, opcode::LOOKUP, 10, 0), b"abc".to_vec()].concat(),
            Some(-libc::EINVAL),
        ),
        // Unknown opcode.
        (header(40, 80, 11, 0), Some(-libc::ENOSYS)),
    ];
    for (msg, want) in cases {
        let r = exchange(&mut k, &msg).unwrap();
        assert_eq!(r.map(|r| r.error), want, "{msg:?}");
    }
}
