//! INIT negotiation over the simulated kernel: the exact reply flags for every famfs dialect
//! setting, daxdev and kallsyms combination and famfs bit offered; old minors (the 24-byte reply),
//! no INIT_EXT, a too-old and a too-new major, a second INIT and a short INIT body; the configured
//! read-ahead announced instead of the offer's.

use std::sync::atomic::Ordering;

use famfs_daemon::fuse::{
    DialectConfig,
    abi::{InitOut, opcode},
    dialect::Reason,
    sim::{OFFER_FLAGS, OFFER_FLAGS2, getattr_in},
};

use crate::{
    harness::{CONN, EPOCH, SimOpts, WANT_FLAGS, kallsyms_with_famfs, start},
    testfs::ROOT,
};

/// One INIT case: (dialect, daxdev configured, kallsyms has famfs, famfs bits offered, flags2
/// expected, reason).
type InitCase = (DialectConfig, bool, bool, u32, u32, Reason);

const INIT_CASES: &[InitCase] = &[
    (
        DialectConfig::Off,
        true,
        true,
        0xc00,
        0,
        Reason::ConfiguredOff,
    ),
    (DialectConfig::Off, true, true, 0, 0, Reason::ConfiguredOff),
    (
        DialectConfig::RfcV2,
        true,
        false,
        0x400,
        0x400,
        Reason::Explicit,
    ),
    (
        DialectConfig::RfcV2,
        true,
        false,
        0xc00,
        0x400,
        Reason::Explicit,
    ),
    (
        DialectConfig::RfcV2,
        true,
        false,
        0x800,
        0,
        Reason::BitNotOffered,
    ),
    (
        DialectConfig::RfcV2,
        true,
        false,
        0,
        0,
        Reason::BitNotOffered,
    ),
    (
        DialectConfig::V3,
        true,
        false,
        0x800,
        0x800,
        Reason::Explicit,
    ),
    (
        DialectConfig::V3,
        true,
        false,
        0xc00,
        0x800,
        Reason::Explicit,
    ),
    (
        DialectConfig::V3,
        true,
        false,
        0x400,
        0,
        Reason::BitNotOffered,
    ),
    (DialectConfig::V3, true, false, 0, 0, Reason::BitNotOffered),
    (DialectConfig::V3, false, false, 0x800, 0, Reason::NoDaxdev),
    (
        DialectConfig::Auto,
        true,
        true,
        0xc00,
        0x800,
        Reason::AutoV3,
    ),
    (
        DialectConfig::Auto,
        true,
        true,
        0x400,
        0,
        Reason::AutoAmbiguous,
    ),
    (
        DialectConfig::Auto,
        true,
        true,
        0,
        0,
        Reason::AutoNotOffered,
    ),
    (
        DialectConfig::Auto,
        true,
        false,
        0x800,
        0,
        Reason::AutoNoKernelSupport,
    ),
];

#[test]
fn init_reply_flags_per_dialect_exact() {
    let dir = tempfile::tempdir().unwrap();
    let ks = kallsyms_with_famfs(dir.path());
    for &(dialect, daxdev, famfs_kernel, offered, want2, reason) in INIT_CASES {
        let ctx = format!("{dialect} daxdev={daxdev} kallsyms={famfs_kernel} offered={offered:#x}");
        let mut sim = start(SimOpts {
            dialect,
            daxdev,
            kallsyms: famfs_kernel.then(|| ks.clone()),
            ..Default::default()
        });
        let out = sim.init_offer(offered).unwrap();
        assert_eq!(out.flags, WANT_FLAGS, "{ctx}: flags");
        assert_eq!(out.flags2, want2, "{ctx}: flags2");
        assert_eq!(
            (out.major, out.minor, out.max_readahead, out.max_write),
            (7, 45, 131_072, 1 << 20),
            "{ctx}"
        );
        assert_eq!(
            (
                out.time_gran,
                out.max_pages,
                out.max_background,
                out.congestion_threshold
            ),
            (1, 256, 64, 48),
            "{ctx}"
        );
        assert_eq!(
            (out.map_alignment, out.max_stack_depth, out.request_timeout),
            (0, 0, 0)
        );
        let n = sim.session().negotiated().expect("negotiated").clone();
        assert_eq!(n.famfs_reason, reason, "{ctx}");
        assert_eq!(
            n.flags,
            u64::from(WANT_FLAGS) | (u64::from(want2) << 32),
            "{ctx}"
        );
        assert_eq!(
            n.offered,
            u64::from(OFFER_FLAGS) | (u64::from(OFFER_FLAGS2 | offered) << 32)
        );
        let expect_ops = match want2 {
            0x400 => Some((53, 54)),
            0x800 => Some((54, 55)),
            _ => None,
        };
        assert_eq!(
            n.get_fmap_opcode().zip(n.get_daxdev_opcode()),
            expect_ops,
            "{ctx}"
        );
        assert_eq!((n.connection, n.mount_epoch, n.minor), (CONN, EPOCH, 45));
        assert_eq!(sim.fs().inits.load(Ordering::Relaxed), 1);
    }
}

#[test]
fn init_variants_old_minor_no_init_ext_bad_major() {
    // Minor < 23: the 24-byte INIT reply.
    let mut sim = start(SimOpts::default());
    let r = sim.init_with(7, 22, 0x3f_ffff, 0).unwrap();
    assert_eq!((r.error, r.body.len()), (0, 24));
    assert_eq!(&r.body[0..8], &[7, 0, 0, 0, 45, 0, 0, 0]);
    assert_eq!(sim.session().negotiated().unwrap().minor, 22);

    // No INIT_EXT offered: flags2 is not read, so no famfs even in v3 with bit 43 "there".
    let mut sim = start(SimOpts {
        dialect: DialectConfig::V3,
        ..Default::default()
    });
    let r = sim
        .init_with(7, 45, OFFER_FLAGS & !(1 << 30), 0x800)
        .unwrap();
    let out = InitOut::decode(&r.body, 0, 0).unwrap();
    assert_eq!((out.flags, out.flags2), (WANT_FLAGS, 0));
    let n = sim.session().negotiated().unwrap();
    assert_eq!((n.famfs, n.famfs_reason), (None, Reason::BitNotOffered));

    // Major 6: EPROTO, not negotiated; requests before INIT get EIO.
    let mut sim = start(SimOpts::default());
    let r = sim.init_with(6, 45, OFFER_FLAGS, 0).unwrap();
    assert_eq!((r.error, r.body.len()), (-libc::EPROTO, 0));
    assert!(sim.session().negotiated().is_none());
    let r = sim.call(opcode::GETATTR, ROOT, &getattr_in()).unwrap();
    assert_eq!(r.error, -libc::EIO);

    // Major 8: we answer with our major only and negotiate on the second INIT.
    let mut sim = start(SimOpts::default());
    let r = sim.init_with(8, 0, 0, 0).unwrap();
    let out = InitOut::decode(&r.body, 0, 0).unwrap();
    assert_eq!((r.error, out.major, out.minor, out.flags), (0, 7, 45, 0));
    assert!(sim.session().negotiated().is_none());
    let out = sim.init_offer(0).unwrap();
    assert_eq!(out.flags, WANT_FLAGS);
    // A third INIT after negotiation is refused.
    let r = sim.init_with(7, 45, OFFER_FLAGS, 0).unwrap();
    assert_eq!(r.error, -libc::EINVAL);
    // Short INIT body: EINVAL, named in the log; session keeps serving.
    let r = sim.call(opcode::INIT, 0, &[7, 0, 0, 0]).unwrap();
    assert_eq!(r.error, -libc::EINVAL);
    assert_eq!(
        sim.call(opcode::GETATTR, ROOT, &getattr_in())
            .unwrap()
            .error,
        0
    );
}

#[test]
fn init_announces_the_configured_read_ahead_not_the_offer() {
    let mut sim = start(SimOpts {
        max_readahead: 8 << 20,
        ..Default::default()
    });
    let out = sim.init_offer(0).unwrap();
    // The simulated kernel offers 128 KiB; the session announces what it was configured with.
    assert_eq!(
        (out.max_readahead, out.max_write, out.max_pages),
        (8 << 20, 1 << 20, 256)
    );
    let n = sim.session().negotiated().expect("negotiated");
    assert_eq!(n.max_readahead, 8 << 20);
}
