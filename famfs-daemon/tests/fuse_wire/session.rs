//! The session's own behaviour over the simulated kernel: request records with exact fields, a full
//! record sink counted without blocking, DESTROY ending the session, notifications with unique 0,
//! four workers on a shared channel, and no heap allocation per request on the serving thread
//! (counted by the binary's `CountingAlloc`).

use std::{sync::atomic::Ordering, time::Duration};

use famfs_daemon::{
    fuse::{
        DialectConfig, RequestRecord,
        abi::{self, OpenIn, ReleaseIn, opcode},
        sim::{self, forget_in, getattr_in, getxattr_in, read_in},
    },
    util::monotonic_ns,
};

use crate::{
    harness::{CONN, EPOCH, Sim, SimOpts, start},
    testfs::{FILE0_INO, HELLO_INO, INTERLEAVED_INO, PATTERN_INO, PATTERN_LEN, ROOT, TestFs},
};

#[test]
fn records_carry_exact_fields() {
    let mut sim = start(SimOpts {
        dialect: DialectConfig::V3,
        ..Default::default()
    });
    let t0 = monotonic_ns();
    sim.init_offer(0x800).unwrap();
    let ul = sim.request(opcode::LOOKUP, ROOT, b"file0\0").unwrap();
    sim.recv().unwrap();
    let ur = sim
        .request(opcode::READ, HELLO_INO, &read_in(1, 0, 4096))
        .unwrap();
    sim.recv().unwrap();
    let uf = sim.request(54, FILE0_INO, &[]).unwrap();
    sim.recv().unwrap();
    sim.stop().unwrap();
    // After the worker ended: every record's reply time is before this.
    let t1 = monotonic_ns();
    let recs = sim.records();
    assert_eq!(recs.len(), 4);
    for r in &recs {
        assert!(
            t0 <= r.recv_ns && r.recv_ns <= r.reply_ns && r.reply_ns <= t1,
            "{r:?}"
        );
    }
    let strip = |r: &RequestRecord| RequestRecord {
        recv_ns: 0,
        reply_ns: 0,
        ..*r
    };
    // The simulated kernel puts this process's pid in every header; the record carries it.
    let base = RequestRecord {
        mount_epoch: EPOCH,
        connection: CONN,
        pid: std::process::id(),
        ..Default::default()
    };
    assert_eq!(
        recs.iter().map(strip).collect::<Vec<_>>(),
        vec![
            RequestRecord {
                unique: 2,
                opcode: 26,
                reply_bytes: 80,
                ..base
            },
            RequestRecord {
                unique: ul,
                opcode: 1,
                nodeid: ROOT,
                reply_bytes: 144,
                ..base
            },
            RequestRecord {
                unique: ur,
                opcode: 15,
                nodeid: HELLO_INO,
                reply_bytes: 16 + 13,
                io_bytes: 13,
                ..base
            },
            RequestRecord {
                unique: uf,
                opcode: 54,
                nodeid: FILE0_INO,
                reply_bytes: 72,
                fmap_bytes: 56,
                fmap_extents: 1,
                ..base
            },
        ]
    );
    let n = sim.session().negotiated().unwrap();
    assert!(t0 <= n.init_ns && n.init_ns == recs[0].recv_ns);
    assert_eq!(sim.session().stats().records_sent(), 4);
    assert_eq!(sim.session().stats().records_dropped(), 0);
}

#[test]
fn full_sink_counts_drops_without_blocking() {
    let mut sim = start(SimOpts {
        sink: 1,
        ..Default::default()
    });
    sim.init_offer(0).unwrap();
    // Nobody drains the sink: every request is still answered.
    for _ in 0..50 {
        assert_eq!(
            sim.call(opcode::GETATTR, ROOT, &getattr_in())
                .unwrap()
                .error,
            0
        );
    }
    sim.stop().unwrap();
    let st = sim.session().stats();
    assert_eq!((st.records_sent(), st.records_dropped()), (1, 50));
    let recs = sim.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].opcode, opcode::INIT);
}

#[test]
fn destroy_is_answered_and_ends_the_session() {
    let mut sim = start(SimOpts::default());
    sim.init_offer(0).unwrap();
    let r = sim.call(opcode::DESTROY, 0, &[]).unwrap();
    assert_eq!((r.error, r.body.len()), (0, 0));
    // The worker left: run() returns while the kernel side is still open.
    assert!(sim.is_open());
    sim.wait_ended(Duration::from_secs(10))
        .expect("run() returned Ok after DESTROY");
    assert!(sim.fs().destroyed.load(Ordering::Relaxed));
}

#[test]
fn notifications_are_written_with_unique_zero() {
    let mut sim = start(SimOpts::default());
    sim.init_offer(0).unwrap();
    let n = sim.session().notifier();
    n.inval_entry(ROOT, b"hello.txt").unwrap();
    let r = sim.recv().unwrap();
    assert_eq!((r.unique, r.error), (0, 3));
    let mut want = abi::NotifyInvalEntryOut {
        parent: 1,
        namelen: 9,
        flags: 0,
    }
    .to_bytes()
    .to_vec();
    want.extend_from_slice(b"hello.txt\0");
    assert_eq!(r.body, want);
    n.inval_inode(HELLO_INO, 0, -1).unwrap();
    let r = sim.recv().unwrap();
    assert_eq!((r.unique, r.error, r.body.len()), (0, 2, 24));
    assert_eq!(&r.body[0..8], &2u64.to_ne_bytes());
    assert_eq!(&r.body[16..24], &(-1i64).to_ne_bytes());
}

#[test]
fn four_workers_on_a_shared_channel_answer_every_request() {
    let mut sim = start(SimOpts {
        workers: 4,
        ..Default::default()
    });
    sim.init_offer(0).unwrap();
    let fs = TestFs::new();
    let mut sent = std::collections::HashMap::new();
    // Pipelined in batches of 20 requests in flight (each batch fits the socket buffers).
    for batch in 0..10u64 {
        for i in 0..20u64 {
            let off = (batch * 20 + i) * 300;
            let u = sim
                .request(opcode::READ, PATTERN_INO, &read_in(3, off, 300))
                .unwrap();
            sent.insert(u, off as usize);
        }
        for _ in 0..20 {
            let r = sim.recv().unwrap();
            let off = sent
                .remove(&r.unique)
                .expect("reply to a request we sent, once");
            let end = (off + 300).min(PATTERN_LEN);
            assert_eq!(r.body, fs.pattern[off..end].to_vec());
        }
    }
    assert!(sent.is_empty());
    let st = sim.session().stats();
    assert_eq!(st.requests(opcode::READ), 200);
    assert_eq!(
        (st.workers(), st.cloned_fds()),
        (4, 0),
        "a socket is shared, not cloned"
    );
}

/// Serve `rounds` rounds of every hot-path opcode on one worker (the spawned thread) and return the
/// heap allocations that thread made in total.
fn server_thread_allocations(rounds: usize) -> u64 {
    let mut sim = Sim::builder(TestFs::new())
        .config(sim::session_config(0, 0, DialectConfig::V3))
        .records(1 << 16)
        .start()
        .unwrap();
    sim.init_offer(0x800).unwrap();
    let x = getxattr_in(100, b"user.test");
    for _ in 0..rounds {
        let replies = [
            sim.call(opcode::LOOKUP, ROOT, b"hello.txt\0")
                .unwrap()
                .error,
            sim.call(opcode::GETATTR, HELLO_INO, &getattr_in())
                .unwrap()
                .error,
            sim.call(opcode::OPEN, HELLO_INO, &OpenIn::default().to_bytes())
                .unwrap()
                .error,
            sim.call(opcode::READ, HELLO_INO, &read_in(1, 0, 4096))
                .unwrap()
                .error,
            sim.call(opcode::READ, PATTERN_INO, &read_in(1, 0, 65_536))
                .unwrap()
                .error,
            sim.call(opcode::READDIR, ROOT, &read_in(1, 0, 4096))
                .unwrap()
                .error,
            sim.call(opcode::READDIRPLUS, ROOT, &read_in(1, 0, 4096))
                .unwrap()
                .error,
            sim.call(opcode::GETXATTR, HELLO_INO, &x).unwrap().error,
            sim.call(54, INTERLEAVED_INO, &[]).unwrap().error,
            sim.call(55, 0, &[]).unwrap().error,
            sim.call(
                opcode::FLUSH,
                HELLO_INO,
                &abi::FlushIn::default().to_bytes(),
            )
            .unwrap()
            .error,
            sim.call(opcode::RELEASE, HELLO_INO, &ReleaseIn::default().to_bytes())
                .unwrap()
                .error,
            sim.call(99, ROOT, &[]).unwrap().error,
        ];
        assert_eq!(replies, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -libc::ENOSYS]);
        sim.request(opcode::FORGET, HELLO_INO, &forget_in(1))
            .unwrap();
        let _ = sim.records();
    }
    sim.stop().unwrap();
    sim.serving_thread_allocations()
        .expect("the serving thread ended")
}

#[test]
fn serving_requests_allocates_nothing_per_request() {
    let few = server_thread_allocations(5);
    let many = server_thread_allocations(105);
    // 100 more rounds × 14 requests: any per-request allocation would show here.
    assert_eq!(
        many, few,
        "allocations on the server thread: {few} vs {many}"
    );
}
