//! One worker thread: its loop (receive a request into a reused buffer, serve it, repeat until the
//! connection ends), request framing checks, the request record, and reply writing.
//!
//! Owns: the worker's buffers and pipe, the framing of requests (header, length field, extensions),
//! the one `writev` per reply and how its outcome (or a spliced READ reply's, `splice`) is classified
//! and counted, delivering each record without blocking. Must not decode request bodies or call the
//! filesystem (that is `dispatch` and `init`).

use std::{
    io::{self, IoSlice},
    sync::{
        atomic::Ordering,
        mpsc::{SyncSender, TrySendError},
    },
};

use super::{
    super::{
        Errno, Filesystem, RequestRecord,
        abi::{InHeader, OutHeader, WireField, opcode},
        channel::Channel,
    },
    PAGE, Session,
    gate::Gate,
    splice::SplicePipe,
};
use crate::util::monotonic_ns;

/// What a worker does after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    /// DESTROY answered or the connection is gone.
    Exit,
}

/// A reply as written (or not).
#[derive(Clone, Copy, Debug)]
pub(super) struct Sent {
    pub(super) error: i32,
    pub(super) bytes: u32,
    pub(super) gone: bool,
}

pub(super) const NO_REPLY: Sent = Sent {
    error: 0,
    bytes: 0,
    gone: false,
};

/// One worker thread's state: its channel and reusable buffers.
pub(super) struct Worker<'s, F> {
    req: Vec<u8>,
    ctx: Ctx<'s, F>,
}

/// What serving one request needs: the session, this worker's channel and reusable reply
/// buffers, the record sink, and the record of the request being served.
pub(super) struct Ctx<'s, F> {
    pub(super) s: &'s Session<F>,
    pub(super) ch: Channel,
    pub(super) data: Vec<u8>,
    pub(super) fmap: Vec<u8>,
    /// This worker's pipe for spliced READ replies (`/dev/fuse` channels with splicing configured).
    pub(super) pipe: Option<SplicePipe>,
    records: Option<SyncSender<RequestRecord>>,
    pub(super) rec: RequestRecord,
}

impl<'s, F: Filesystem> Worker<'s, F> {
    pub(super) fn new(s: &'s Session<F>, ch: Channel) -> Self {
        Worker {
            req: vec![0u8; s.request_buffer_size()],
            ctx: Ctx {
                s,
                ch,
                data: vec![0u8; s.data_buffer_size()],
                fmap: Vec::with_capacity(PAGE),
                pipe: s.take_pipe(),
                records: s.cfg.records.clone(),
                rec: RequestRecord::default(),
            },
        }
    }

    /// Serve until the connection ends. `gate`: on-demand workers (see `gate`); `lead` says whether
    /// this worker blocks on the channel (the lead) or waits at the gate (a helper, whose channel
    /// does not block).
    pub(super) fn run(mut self, gate: Option<&Gate>, lead: bool) -> io::Result<()> {
        let r = match gate {
            Some(g) if !lead => self.help(g),
            _ => self.serve(gate, false),
        };
        if let Some(g) = gate {
            g.end();
        }
        r.map(|_| ())
    }

    fn help(&mut self, gate: &Gate) -> io::Result<Flow> {
        while gate.park() {
            if self.serve(Some(gate), true)? == Flow::Exit {
                return Ok(Flow::Exit);
            }
        }
        Ok(Flow::Exit)
    }

    /// Receive and serve requests until the connection ends (`Exit`) or, with `until_empty` on a
    /// non-blocking channel, until none is queued (`Continue`). With a gate, a request taken while
    /// another is queued wakes a parked helper.
    fn serve(&mut self, gate: Option<&Gate>, until_empty: bool) -> io::Result<Flow> {
        loop {
            let n = match self.ctx.ch.receive(&mut self.req) {
                Ok(0) => return Ok(Flow::Exit),
                Ok(n) => n,
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) if until_empty => return Ok(Flow::Continue),
                    Some(libc::ENOENT | libc::EINTR | libc::EAGAIN) => continue,
                    Some(libc::ENODEV) => return Ok(Flow::Exit),
                    _ => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("read from the FUSE channel: {e}"),
                        ));
                    }
                },
            };
            let recv_ns = monotonic_ns();
            if let Some(g) = gate
                && g.has_parked()
                && self.ctx.ch.pending()
                && g.wake_one()
            {
                self.ctx
                    .s
                    .stats
                    .helper_wakeups
                    .fetch_add(1, Ordering::Relaxed);
            }
            if self.ctx.handle(&self.req[..n], recv_ns) == Flow::Exit {
                return Ok(Flow::Exit);
            }
        }
    }
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4).map(u32::read)
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    b.get(off..off + 8).map(u64::read)
}

/// Opcodes the kernel expects no reply to.
pub(super) fn no_reply(op: u32) -> bool {
    matches!(
        op,
        opcode::FORGET | opcode::BATCH_FORGET | opcode::NOTIFY_REPLY | opcode::INTERRUPT
    )
}

impl<F: Filesystem> Ctx<'_, F> {
    /// Serve one request; always finishes with a record.
    fn handle(&mut self, msg: &[u8], recv_ns: u64) -> Flow {
        let s = self.s;
        self.rec = RequestRecord {
            mount_epoch: s.cfg.mount_epoch,
            connection: s.cfg.connection,
            recv_ns,
            ..Default::default()
        };
        // Framing: header, length field, extensions.
        if msg.len() < InHeader::SIZE {
            let op = u32_at(msg, 4).unwrap_or(0);
            let unique = u64_at(msg, 8);
            s.log_malformed(
                op,
                unique.unwrap_or(0),
                &format_args!(
                    "short read: {} bytes, the header alone is {}",
                    msg.len(),
                    InHeader::SIZE
                ),
            );
            let Some(unique) = unique else {
                // Nothing identifies the request: no reply, no record.
                return Flow::Continue;
            };
            s.stats.count_request(op);
            self.rec.opcode = op;
            self.rec.unique = unique;
            let sent = if no_reply(op) {
                NO_REPLY
            } else {
                self.send_err(unique, Errno::EIO)
            };
            return self.finish(sent);
        }
        let h = InHeader::read(msg);
        s.stats.count_request(h.opcode);
        self.rec.opcode = h.opcode;
        self.rec.unique = h.unique;
        self.rec.nodeid = h.nodeid;
        self.rec.pid = h.pid;
        let ext = usize::from(h.total_extlen) * 8;
        let framing = if h.len as usize != msg.len() {
            Some(format!(
                "length field {} but {} bytes were read",
                h.len,
                msg.len()
            ))
        } else if InHeader::SIZE + ext > msg.len() {
            Some(format!(
                "extensions of {ext} bytes do not fit a {}-byte request",
                msg.len()
            ))
        } else {
            None
        };
        if let Some(what) = framing {
            s.log_malformed(h.opcode, h.unique, &what);
            let sent = if no_reply(h.opcode) {
                NO_REPLY
            } else {
                self.send_err(h.unique, Errno::EIO)
            };
            return self.finish(sent);
        }
        let body = &msg[InHeader::SIZE..msg.len() - ext];
        let (sent, flow) = match self.dispatch(&h, body) {
            Ok(r) => r,
            Err(e) => {
                s.log_malformed(h.opcode, h.unique, &e);
                let sent = if no_reply(h.opcode) {
                    NO_REPLY
                } else {
                    self.send_err(h.unique, Errno::EINVAL)
                };
                (sent, Flow::Continue)
            }
        };
        match self.finish(sent) {
            Flow::Exit => Flow::Exit,
            Flow::Continue => flow,
        }
    }

    /// Complete the record, count errors, deliver the record without blocking.
    fn finish(&mut self, sent: Sent) -> Flow {
        let s = self.s;
        self.rec.reply_ns = monotonic_ns();
        self.rec.reply_bytes = sent.bytes;
        self.rec.error = sent.error;
        if sent.error != 0 {
            s.stats.count_error(self.rec.opcode);
        }
        if let Some(tx) = &self.records {
            match tx.try_send(self.rec) {
                Ok(()) => {
                    s.stats.records_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    s.stats.records_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if sent.gone {
            Flow::Exit
        } else {
            Flow::Continue
        }
    }

    /// Write one reply: header + `parts` in one `writev`.
    pub(super) fn send(&self, unique: u64, error: i32, parts: &[&[u8]]) -> Sent {
        send_on(self.s, &self.ch, unique, error, parts)
    }

    pub(super) fn send_err(&self, unique: u64, e: Errno) -> Sent {
        self.send(unique, e.wire(), &[])
    }

    pub(super) fn send_result<const N: usize>(
        &self,
        unique: u64,
        r: Result<[u8; N], Errno>,
    ) -> Sent {
        match r {
            Ok(b) => self.send(unique, 0, &[&b]),
            Err(e) => self.send_err(unique, e),
        }
    }

    pub(super) fn send_unit(&self, unique: u64, r: Result<(), Errno>) -> Sent {
        match r {
            Ok(()) => self.send(unique, 0, &[]),
            Err(e) => self.send_err(unique, e),
        }
    }
}

/// Write one reply on `ch`: header + `parts` in a single `writev`; classifies the outcome.
pub(super) fn send_on<F>(
    s: &Session<F>,
    ch: &Channel,
    unique: u64,
    error: i32,
    parts: &[&[u8]],
) -> Sent {
    // Header + up to 3 body parts (callers pass at most 2); the length counts exactly what is sent.
    let mut bodies = [&[][..]; 3];
    let mut nb = 0;
    for p in parts.iter().filter(|p| !p.is_empty()) {
        if nb == bodies.len() {
            debug_assert!(false, "reply with more than 3 body parts");
            break;
        }
        bodies[nb] = p;
        nb += 1;
    }
    let total = OutHeader::SIZE + bodies[..nb].iter().map(|p| p.len()).sum::<usize>();
    let Ok(len) = u32::try_from(total) else {
        s.stats.reply_failures.fetch_add(1, Ordering::Relaxed);
        return NO_REPLY;
    };
    if unique == 0 {
        // unique 0 would read as a notification.
        s.stats.reply_failures.fetch_add(1, Ordering::Relaxed);
        return NO_REPLY;
    }
    let head = OutHeader { len, error, unique }.to_bytes();
    let mut iov = [IoSlice::new(&[]); 4];
    iov[0] = IoSlice::new(&head);
    for (slot, b) in iov[1..].iter_mut().zip(&bodies[..nb]) {
        *slot = IoSlice::new(b);
    }
    let k = 1 + nb;
    let sent = Sent {
        error,
        bytes: len,
        gone: false,
    };
    classify(s, unique, total, sent, s_send(ch, &iov[..k]))
}

/// Count and log a reply's outcome (`r`: what writing its `total` bytes returned).
pub(super) fn classify<F>(
    s: &Session<F>,
    unique: u64,
    total: usize,
    sent: Sent,
    r: io::Result<usize>,
) -> Sent {
    let error = sent.error;
    match r {
        Ok(n) if n == total => sent,
        Ok(n) => {
            s.stats.reply_failures.fetch_add(1, Ordering::Relaxed);
            log::warn!("fuse: reply to unique {unique}: wrote {n} of {total} bytes");
            sent
        }
        Err(e) => match e.raw_os_error() {
            Some(libc::ENOENT) => {
                s.stats.replies_interrupted.fetch_add(1, Ordering::Relaxed);
                sent
            }
            Some(libc::ENODEV | libc::EPIPE | libc::ECONNRESET) => Sent { gone: true, ..sent },
            _ => {
                s.stats.reply_failures.fetch_add(1, Ordering::Relaxed);
                if let Some(sup) = s.log_limit.check(monotonic_ns()) {
                    log::warn!(
                        "fuse: reply to unique {unique} ({total} bytes, error {error}) failed: {e} \
                         ({sup} similar lines suppressed)"
                    );
                }
                sent
            }
        },
    }
}

fn s_send(ch: &Channel, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    loop {
        match ch.send(iov) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            r => return r,
        }
    }
}
