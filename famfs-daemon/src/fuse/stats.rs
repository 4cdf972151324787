//! The server's own view of its traffic: per-opcode request and error counters, malformed requests,
//! dropped records, interrupted replies — all atomics, updated lock-free by every worker. Also the
//! rate limiter for per-request log lines.
//!
//! Owns counting only; exporting them (Prometheus) is `metrics`' job and naming opcodes is the
//! negotiated state's (`Negotiated::opcode_name`).

use std::sync::atomic::{AtomicU64, Ordering};

/// Opcodes below this are counted individually; the rest share one "other" slot.
pub const OPCODE_SLOTS: usize = 64;

/// Counters of one session, shared by its workers.
#[derive(Debug)]
pub struct SessionStats {
    requests: [AtomicU64; OPCODE_SLOTS],
    errors: [AtomicU64; OPCODE_SLOTS],
    requests_other: AtomicU64,
    errors_other: AtomicU64,
    /// Requests answered with an error (or dropped, when nothing was readable) because they were
    /// malformed.
    pub malformed: AtomicU64,
    /// Records not delivered because the sink was full or gone.
    pub records_dropped: AtomicU64,
    /// Records delivered to the sink.
    pub records_sent: AtomicU64,
    /// Replies the kernel refused with ENOENT (request interrupted or aborted meanwhile).
    pub replies_interrupted: AtomicU64,
    /// Replies that failed to write for any other reason.
    pub reply_failures: AtomicU64,
    /// Worker threads started by `run` (the calling thread included).
    pub workers: AtomicU64,
    /// Workers serving on their own cloned `/dev/fuse` fd (the others share the session's fd).
    pub cloned_fds: AtomicU64,
    /// READ replies spliced from the filesystem's descriptor into `/dev/fuse`.
    pub spliced_replies: AtomicU64,
    /// READs the filesystem offered as descriptor ranges but that were copied after all (too big
    /// for the worker's pipe, or a splice from the descriptor came back short).
    pub splice_fallbacks: AtomicU64,
    /// Times an on-demand helper worker was woken because requests were queued behind the one a
    /// worker had just taken.
    pub helper_wakeups: AtomicU64,
}

impl Default for SessionStats {
    fn default() -> Self {
        SessionStats {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            requests_other: AtomicU64::new(0),
            errors_other: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            records_dropped: AtomicU64::new(0),
            records_sent: AtomicU64::new(0),
            replies_interrupted: AtomicU64::new(0),
            reply_failures: AtomicU64::new(0),
            workers: AtomicU64::new(0),
            cloned_fds: AtomicU64::new(0),
            spliced_replies: AtomicU64::new(0),
            splice_fallbacks: AtomicU64::new(0),
            helper_wakeups: AtomicU64::new(0),
        }
    }
}

impl SessionStats {
    fn slot<'a>(
        arr: &'a [AtomicU64; OPCODE_SLOTS],
        other: &'a AtomicU64,
        op: u32,
    ) -> &'a AtomicU64 {
        arr.get(op as usize).unwrap_or(other)
    }

    pub fn count_request(&self, op: u32) {
        Self::slot(&self.requests, &self.requests_other, op).fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_error(&self, op: u32) {
        Self::slot(&self.errors, &self.errors_other, op).fetch_add(1, Ordering::Relaxed);
    }

    /// Requests received with opcode `op` (opcodes ≥ 64 share the "other" count).
    pub fn requests(&self, op: u32) -> u64 {
        Self::slot(&self.requests, &self.requests_other, op).load(Ordering::Relaxed)
    }

    /// Replies with a non-zero error for opcode `op`.
    pub fn errors(&self, op: u32) -> u64 {
        Self::slot(&self.errors, &self.errors_other, op).load(Ordering::Relaxed)
    }

    /// Requests with opcodes ≥ 64.
    pub fn requests_other(&self) -> u64 {
        self.requests_other.load(Ordering::Relaxed)
    }

    pub fn errors_other(&self) -> u64 {
        self.errors_other.load(Ordering::Relaxed)
    }

    /// `(opcode, requests, errors)` for every opcode below 64 seen at least once.
    pub fn per_opcode(&self) -> impl Iterator<Item = (u32, u64, u64)> + '_ {
        (0..OPCODE_SLOTS as u32).filter_map(|op| {
            let r = self.requests(op);
            (r > 0).then(|| (op, r, self.errors(op)))
        })
    }

    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    pub fn records_dropped(&self) -> u64 {
        self.records_dropped.load(Ordering::Relaxed)
    }

    pub fn records_sent(&self) -> u64 {
        self.records_sent.load(Ordering::Relaxed)
    }

    pub fn replies_interrupted(&self) -> u64 {
        self.replies_interrupted.load(Ordering::Relaxed)
    }

    pub fn spliced_replies(&self) -> u64 {
        self.spliced_replies.load(Ordering::Relaxed)
    }

    pub fn splice_fallbacks(&self) -> u64 {
        self.splice_fallbacks.load(Ordering::Relaxed)
    }

    pub fn helper_wakeups(&self) -> u64 {
        self.helper_wakeups.load(Ordering::Relaxed)
    }

    pub fn reply_failures(&self) -> u64 {
        self.reply_failures.load(Ordering::Relaxed)
    }

    pub fn workers(&self) -> u64 {
        self.workers.load(Ordering::Relaxed)
    }

    pub fn cloned_fds(&self) -> u64 {
        self.cloned_fds.load(Ordering::Relaxed)
    }
}

/// At most `burst` log lines per `window_ns`; lines beyond are counted and the count is reported with
/// the next allowed line. Lock-free; races may let a line or two more through, never fewer.
#[derive(Debug)]
pub struct RateLimit {
    window_ns: u64,
    burst: u64,
    window_start: AtomicU64,
    in_window: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    pub const fn new(window_ns: u64, burst: u64) -> RateLimit {
        RateLimit {
            window_ns,
            burst,
            window_start: AtomicU64::new(0),
            in_window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may be logged now (`n` lines were suppressed since the last one), `None`
    /// when it must be suppressed.
    pub fn check(&self, now_ns: u64) -> Option<u64> {
        let start = self.window_start.load(Ordering::Relaxed);
        if now_ns.saturating_sub(start) >= self.window_ns
            && self
                .window_start
                .compare_exchange(start, now_ns, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.in_window.store(0, Ordering::Relaxed);
        }
        if self.in_window.fetch_add(1, Ordering::Relaxed) < self.burst {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}
