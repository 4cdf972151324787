//! INIT negotiation (protocol spec §2 and the famfs dialect rule §5): version checks, the flag set
//! the session accepts of the kernel's offer, the famfs dialect in force, and the [`Negotiated`]
//! outcome every later request sees.
//!
//! Owns: the INIT request's handling and reply, the flags the session always asks for and those a
//! filesystem may not ask for. Must not decide the famfs dialect itself (that is `dialect::resolve`)
//! nor serve any other opcode (that is `dispatch`).

use super::{
    super::{
        Errno, Filesystem,
        abi::{
            COMPAT_22_INIT_OUT_SIZE, DecodeError, InHeader, InitIn, InitOut, KERNEL_MINOR_VERSION,
            KERNEL_VERSION, MIN_KERNEL_MINOR, WireField, init_flags, opcode,
        },
        dialect::{self, DialectConfig, DialectSpec, Reason},
    },
    RunState, Session,
    worker::{Ctx, Sent},
};

/// INIT capabilities the session always asks for (when offered).
pub const DEFAULT_INIT_FLAGS: u64 = init_flags::ASYNC_READ
    | init_flags::BIG_WRITES
    | init_flags::PARALLEL_DIROPS
    | init_flags::MAX_PAGES;

/// Bits a filesystem may not request through [`Filesystem::init_flags`]: the famfs bits are granted
/// only by the dialect rule, INIT_EXT is always set.
const RESERVED_INIT_FLAGS: u64 = init_flags::FAMFS_DAX_FMAP_RFC
    | init_flags::FAMFS_DAX_FMAP_V3
    | init_flags::INIT_EXT
    | init_flags::INIT_RESERVED;

/// What INIT settled for a connection. Visible to the filesystem (every
/// [`Request`](super::super::Request)) and to callers ([`Session::negotiated`],
/// [`Session::wait_negotiated`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub kernel_major: u32,
    pub kernel_minor: u32,
    /// The minor both sides use: `min(kernel_minor, KERNEL_MINOR_VERSION)`.
    pub minor: u32,
    /// The kernel's offered 64-bit flag set (`flags | flags2 << 32`, flags2 only with INIT_EXT).
    pub offered: u64,
    /// The flags sent in the reply (accepted bits, INIT_EXT included).
    pub flags: u64,
    /// Announced in the reply: [`super::SessionConfig::max_readahead`], or the kernel's offer.
    pub max_readahead: u32,
    pub max_write: u32,
    pub max_pages: u16,
    pub max_background: u16,
    pub congestion_threshold: u16,
    pub time_gran: u32,
    /// The famfs dialect in force, `None` when famfs mode is off.
    pub famfs: Option<&'static DialectSpec>,
    pub famfs_config: DialectConfig,
    /// Why famfs mode is on or off.
    pub famfs_reason: Reason,
    pub connection: u32,
    pub mount_epoch: u64,
    /// CLOCK_MONOTONIC ns at which INIT was received.
    pub init_ns: u64,
}

impl Negotiated {
    /// True when `flag` (an `init_flags` bit) was offered and accepted.
    pub fn has(&self, flag: u64) -> bool {
        self.flags & flag == flag
    }

    pub fn dialect(&self) -> Option<dialect::Dialect> {
        self.famfs.map(|s| s.dialect)
    }

    /// The GET_FMAP opcode in force (the join's `fmap_opcode`), if famfs mode is on.
    pub fn get_fmap_opcode(&self) -> Option<u32> {
        self.famfs.map(|s| s.get_fmap)
    }

    pub fn get_daxdev_opcode(&self) -> Option<u32> {
        self.famfs.map(|s| s.get_daxdev)
    }

    /// The opcode's name on this connection: famfs names for the negotiated famfs opcodes, upstream
    /// names otherwise.
    pub fn opcode_name(&self, op: u32) -> Option<&'static str> {
        match self.famfs {
            Some(s) if op == s.get_fmap => Some("GET_FMAP"),
            Some(s) if op == s.get_daxdev => Some("GET_DAXDEV"),
            _ => famfs_common::opcode::name(op),
        }
    }
}

/// The INIT body as a full `fuse_init_in`: kernels before 7.36 send only 16 bytes, the rest reads as
/// zero. A body shorter than 16 bytes is malformed (the error names the first field that does not
/// fit).
fn read_init_in(body: &[u8]) -> Result<InitIn, DecodeError> {
    if body.len() < 16 {
        return Err(InitIn::decode(body, opcode::INIT, InHeader::SIZE)
            .err()
            .unwrap_or(DecodeError {
                opcode: opcode::INIT,
                what: InitIn::C_NAME,
                field: "flags",
                offset: InHeader::SIZE + 12,
                need: 4,
                have: body.len().saturating_sub(12),
            }));
    }
    let mut raw = [0u8; InitIn::SIZE];
    let n = body.len().min(InitIn::SIZE);
    raw[..n].copy_from_slice(&body[..n]);
    Ok(InitIn::read(&raw))
}

/// What this session settles for the kernel's (supported) offer `arg` received at `init_ns`: the
/// accepted flags, the famfs dialect, the limits. Logs the outcome (a warning when the famfs
/// decision is one).
fn negotiate<F: Filesystem>(s: &Session<F>, arg: &InitIn, init_ns: u64) -> Negotiated {
    let ext = u64::from(arg.flags) & init_flags::INIT_EXT != 0;
    let offered = u64::from(arg.flags) | if ext { u64::from(arg.flags2) << 32 } else { 0 };
    let cfg = &s.cfg;
    let res = dialect::resolve(cfg.dialect, offered, cfg.daxdev_configured, || {
        dialect::kallsyms_has_famfs(&cfg.kallsyms)
    });
    let desired = DEFAULT_INIT_FLAGS | (s.fs.init_flags() & !RESERVED_INIT_FLAGS);
    let mut want = desired & offered;
    if let Some(d) = res.dialect {
        want |= d.spec().init_bit;
    }
    let flags = want | init_flags::INIT_EXT;
    let line = format!(
        "fuse: INIT kernel 7.{} offered {offered:#x}, reply flags {flags:#x}; famfs dialect {} \
         (configured {}): {}",
        arg.minor,
        res.dialect.map_or("off", |d| d.spec().name),
        cfg.dialect,
        res.reason
    );
    if res.reason.is_warning() {
        log::warn!("{line}");
    } else {
        log::info!("{line}");
    }
    Negotiated {
        kernel_major: arg.major,
        kernel_minor: arg.minor,
        minor: arg.minor.min(KERNEL_MINOR_VERSION),
        offered,
        flags,
        max_readahead: match cfg.max_readahead {
            0 => arg.max_readahead,
            ra => ra,
        },
        max_write: s.max_write,
        max_pages: s.max_pages,
        max_background: cfg.max_background,
        congestion_threshold: cfg.congestion_threshold,
        time_gran: 1,
        famfs: res.dialect.map(|d| d.spec()),
        famfs_config: cfg.dialect,
        famfs_reason: res.reason,
        connection: cfg.connection,
        mount_epoch: cfg.mount_epoch,
        init_ns,
    }
}

/// The INIT reply for `neg`: the full `fuse_init_out` and how much of it to send (24 bytes to
/// kernels before 7.23).
fn init_reply(neg: &Negotiated) -> ([u8; InitOut::SIZE], usize) {
    let out = InitOut {
        major: KERNEL_VERSION,
        minor: KERNEL_MINOR_VERSION,
        max_readahead: neg.max_readahead,
        flags: neg.flags as u32,
        max_background: neg.max_background,
        congestion_threshold: neg.congestion_threshold,
        max_write: neg.max_write,
        time_gran: neg.time_gran,
        max_pages: neg.max_pages,
        flags2: (neg.flags >> 32) as u32,
        ..Default::default()
    }
    .to_bytes();
    let len = if neg.kernel_minor < 23 {
        COMPAT_22_INIT_OUT_SIZE
    } else {
        InitOut::SIZE
    };
    (out, len)
}

impl<F: Filesystem> Ctx<'_, F> {
    /// INIT: refuse a second one and unsupported versions, answer a newer major with ours only, else
    /// negotiate, let the filesystem accept, and reply. `Err` = the body is malformed.
    pub(super) fn init(&mut self, h: &InHeader, body: &[u8]) -> Result<Sent, DecodeError> {
        let s = self.s;
        let u = h.unique;
        let arg = read_init_in(body)?;
        if s.negotiated.get().is_some() {
            s.log_limited(format_args!(
                "second INIT (unique {u}) after negotiation: EINVAL"
            ));
            return Ok(self.send_err(u, Errno::EINVAL));
        }
        if arg.major < KERNEL_VERSION {
            s.log_limited(format_args!(
                "INIT: kernel protocol {}.{} is older than {KERNEL_VERSION}: EPROTO",
                arg.major, arg.minor
            ));
            return Ok(self.send_err(u, Errno::EPROTO));
        }
        if arg.major > KERNEL_VERSION {
            // Announce our major only; the kernel sends a second INIT.
            let out = InitOut {
                major: KERNEL_VERSION,
                minor: KERNEL_MINOR_VERSION,
                ..Default::default()
            };
            return Ok(self.send(u, 0, &[&out.to_bytes()]));
        }
        if arg.minor < MIN_KERNEL_MINOR {
            s.log_limited(format_args!(
                "INIT: kernel protocol 7.{} is older than 7.{MIN_KERNEL_MINOR}: EPROTO",
                arg.minor
            ));
            return Ok(self.send_err(u, Errno::EPROTO));
        }
        let neg = negotiate(s, &arg, self.rec.recv_ns);
        if let Err(e) = s.fs.init(&neg) {
            log::warn!("fuse: filesystem refused INIT: {e}");
            return Ok(self.send_err(u, e));
        }
        let (out, len) = init_reply(&neg);
        // Visible to every worker before the kernel can send the next request.
        let _ = s.negotiated.set(neg);
        let sent = self.send(u, 0, &[&out[..len]]);
        // Waiters ([`Session::wait_negotiated`]) wake only once the reply is written: the kernel has
        // then ended INIT, so what they start next (e.g. probes following this connection) never sees
        // INIT's end without its send.
        s.set_state(RunState::Negotiated);
        Ok(sent)
    }
}
