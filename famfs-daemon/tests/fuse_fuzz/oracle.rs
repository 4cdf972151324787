//! The properties: per message, exactly the replies due (checked with a sentinel request), error
//! replies header-only, fixed-size replies exact, one record each; per case, the whole sequence of
//! random INITs, the valid INIT, the batch, still serving correctly, DESTROY, and the records.

use std::time::Duration;

use famfs_daemon::fuse::{
    DialectConfig,
    abi::{AttrOut, EntryOut, GetattrIn, InHeader, Kstatfs, OpenOut, ReadIn, opcode},
    sim::{OFFER_FLAGS, OFFER_FLAGS2, Reply},
};
use proptest::prelude::*;

use crate::{
    fuzzfs::{DATA, DATA_LEN, FuzzFs, HELLO, ROOT},
    harness::{Sim, fail, start},
    input::{Fuzz, u32_at, u64_at},
};

fn no_reply(op: u32) -> bool {
    matches!(
        op,
        opcode::FORGET | opcode::BATCH_FORGET | opcode::NOTIFY_REPLY | opcode::INTERRUPT
    )
}

/// The body size of a successful reply to `op`, when it is fixed (famfs opcodes excluded).
fn fixed_reply_size(op: u32) -> Option<usize> {
    match op {
        opcode::LOOKUP => Some(EntryOut::SIZE),
        opcode::GETATTR | opcode::SETATTR => Some(AttrOut::SIZE),
        opcode::OPEN | opcode::OPENDIR => Some(OpenOut::SIZE),
        opcode::STATFS => Some(Kstatfs::SIZE),
        opcode::WRITE => Some(8),
        opcode::RELEASE
        | opcode::RELEASEDIR
        | opcode::FLUSH
        | opcode::FSYNC
        | opcode::SETLK
        | opcode::SETLKW => Some(0),
        _ => None,
    }
}

/// Send `msg` and check its replies: every reply that arrives before the following sentinel's
/// belongs to `msg`; there must be exactly the expected number. Returns the reply, if any.
pub fn exchange(k: &mut Sim, msg: &[u8]) -> Result<Option<Reply>, TestCaseError> {
    k.send_raw(msg).map_err(fail)?;
    let (mut got, r) = k.until_sentinel(ROOT).map_err(fail)?;
    // Served after `msg`, so INIT (if `msg` was one) is settled: before negotiation every request
    // is EIO.
    if k.session().negotiated().is_some() {
        prop_assert_eq!(
            (r.error, r.body.len()),
            (0, AttrOut::SIZE),
            "sentinel GETATTR"
        );
    } else {
        prop_assert_eq!(
            (r.error, r.wire_len()),
            (-libc::EIO, 16),
            "sentinel before INIT"
        );
    }
    let n = msg.len();
    let op = u32_at(msg, 4).unwrap_or(0);
    let unique = u64_at(msg, 8);
    let expect_reply = n >= 16 && !no_reply(op) && unique != Some(0);
    prop_assert_eq!(
        got.len(),
        usize::from(expect_reply),
        "replies to a {}-byte message (opcode {}, unique {:?}): {:?}",
        n,
        op,
        unique,
        got
    );
    let Some(r) = got.pop() else {
        return Ok(None);
    };
    prop_assert_eq!(Some(r.unique), unique);
    if r.error != 0 {
        prop_assert!(
            (-511..0).contains(&r.error),
            "error {} is not a negative errno",
            r.error
        );
        prop_assert_eq!(r.wire_len(), 16, "error reply with a body: {:?}", r);
    }
    Ok(Some(r))
}

/// One record per message of 16 bytes or more, in order: (unique, opcode, error).
fn expect_record(k: &Sim, want: &mut Vec<(u64, u32, i32)>, msg: &[u8], reply: &Option<Reply>) {
    if let (Some(u), Some(op)) = (u64_at(msg, 8), u32_at(msg, 4)) {
        want.push((u, op, reply.as_ref().map_or(0, |r| r.error)));
    }
    // The sentinel's record.
    let err = if k.session().negotiated().is_some() {
        0
    } else {
        -libc::EIO
    };
    want.push((k.last_unique(), opcode::GETATTR, err));
}

pub fn run_case(
    dialect: DialectConfig,
    famfs_bits: u32,
    inits: &[Vec<u8>],
    batch: &[Fuzz],
) -> Result<(), TestCaseError> {
    let mut k = start(dialect)?;
    let mut want_records = Vec::new();

    // Random INITs first: each answered exactly once; errors are header-only.
    for (i, body) in inits.iter().enumerate() {
        let h = InHeader {
            len: (InHeader::SIZE + body.len()) as u32,
            opcode: opcode::INIT,
            unique: 1 + i as u64,
            ..Default::default()
        };
        let mut msg = h.to_bytes().to_vec();
        msg.extend_from_slice(body);
        let was = k.session().negotiated().is_some();
        let r = exchange(&mut k, &msg)?.ok_or_else(|| TestCaseError::fail("INIT not answered"))?;
        let now = k.session().negotiated().is_some();
        if was {
            prop_assert_eq!(r.error, -libc::EINVAL, "a second INIT must be refused");
        }
        if r.error != 0 || was {
            prop_assert_eq!(now, was, "a refused INIT changed the negotiation");
        } else if now {
            // Negotiated: the full reply, or the 24-byte one for kernels before 7.23.
            let minor = u32_at(body, 4).unwrap_or(0);
            prop_assert_eq!(r.body.len(), if minor < 23 { 24 } else { 64 });
        } else {
            // A newer major: our major and minor only, to be followed by another INIT.
            prop_assert!(
                u32_at(body, 0).is_some_and(|m| m > 7),
                "INIT answered 0 but not negotiated"
            );
            prop_assert_eq!(r.body.len(), 64);
            prop_assert_eq!(&r.body[..8], &[7, 0, 0, 0, 45, 0, 0, 0][..]);
        }
        expect_record(&k, &mut want_records, &msg, &Some(r));
    }
    // The valid INIT (refused with EINVAL if a random one already negotiated).
    let negotiated_before = k.session().negotiated().is_some();
    let r = k
        .init_with(7, 45, OFFER_FLAGS, OFFER_FLAGS2 | famfs_bits)
        .map_err(fail)?;
    want_records.push((k.last_unique(), opcode::INIT, r.error));
    if negotiated_before {
        prop_assert_eq!(r.error, -libc::EINVAL);
        prop_assert_eq!(r.wire_len(), 16);
    } else {
        prop_assert_eq!((r.error, r.body.len()), (0, 64));
    }
    let neg = k
        .session()
        .negotiated()
        .cloned()
        .ok_or_else(|| TestCaseError::fail("not negotiated after a valid INIT"))?;

    // The batch.
    for f in batch {
        let msg = f.bytes();
        let reply = exchange(&mut k, &msg)?;
        if let Some(r) = &reply {
            let op = u32_at(&msg, 4).unwrap_or(0);
            let famfs_op = neg
                .famfs
                .is_some_and(|s| op == s.get_fmap || op == s.get_daxdev);
            if r.error == 0
                && !famfs_op
                && msg.len() >= InHeader::SIZE
                && let Some(size) = fixed_reply_size(op)
            {
                prop_assert_eq!(r.body.len(), size, "reply size of opcode {}", op);
            }
        }
        expect_record(&k, &mut want_records, &msg, &reply);
    }

    // Still serving, correctly.
    let fs = FuzzFs::new();
    let r = k.call(opcode::LOOKUP, ROOT, b"hello.txt\0").map_err(fail)?;
    prop_assert_eq!(r.error, 0);
    prop_assert_eq!(
        r.body,
        fs.entry(HELLO)
            .map(|e| e.to_bytes().to_vec())
            .unwrap_or_default()
    );
    want_records.push((k.last_unique(), opcode::LOOKUP, 0));
    let r = k
        .call(opcode::GETATTR, DATA, &GetattrIn::default().to_bytes())
        .map_err(fail)?;
    prop_assert_eq!(r.error, 0);
    let a = AttrOut::decode(&r.body, 0, 0).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!((a.attr.ino, a.attr.size), (DATA, DATA_LEN as u64));
    want_records.push((k.last_unique(), opcode::GETATTR, 0));
    let read = ReadIn {
        fh: 103,
        offset: 1000,
        size: 4096,
        ..Default::default()
    };
    let r = k.call(opcode::READ, DATA, &read.to_bytes()).map_err(fail)?;
    prop_assert_eq!(r.error, 0);
    prop_assert_eq!(&r.body[..], &fs.data[1000..5096]);
    want_records.push((k.last_unique(), opcode::READ, 0));
    if let Some(spec) = neg.famfs {
        let r = k
            .call(spec.get_fmap, HELLO, &[0, 16, 0, 0, 0, 0, 0, 0])
            .map_err(fail)?;
        prop_assert_eq!((r.error, r.body.len()), (0, 56), "GET_FMAP after the batch");
        want_records.push((k.last_unique(), spec.get_fmap, 0));
    }

    // DESTROY is answered and ends the session cleanly.
    let r = k.call(opcode::DESTROY, 0, &[]).map_err(fail)?;
    prop_assert_eq!((r.error, r.wire_len()), (0, 16));
    let end = k.wait_ended(Duration::from_secs(30));
    prop_assert!(end.is_ok(), "session did not end cleanly: {:?}", end);
    want_records.push((k.last_unique(), opcode::DESTROY, 0));

    // Records (each is handed over after its reply, so read once the session has ended): exactly one
    // per message with a readable unique, in order.
    let got: Vec<(u64, u32, i32)> = k
        .records()
        .iter()
        .map(|r| (r.unique, r.opcode, r.error))
        .collect();
    prop_assert_eq!(got, want_records);

    Ok(())
}
