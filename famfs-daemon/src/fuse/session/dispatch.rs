//! Request dispatch: decode one request's body for its opcode, call the [`Filesystem`] method, and
//! shape its answer into the reply — including the session-side rules some opcodes carry (READ's
//! cut to the asked size, GETXATTR's size probe and ERANGE, READDIR's buffer, famfs GET_FMAP's
//! dialect size rule and GET_DAXDEV's path reply).
//!
//! Owns the opcode → method mapping and those per-opcode rules. Must not do framing or reply writing
//! (that is `worker`), INIT (that is `init`), or any filesystem logic.

use std::{ffi::OsStr, os::unix::ffi::OsStrExt, sync::atomic::Ordering};

use super::{
    super::{
        Errno, Filesystem, ForgetList, Request,
        abi::{
            self, BatchForgetIn, DecodeError, FlushIn, ForgetIn, ForgetOne, FsyncIn, GetattrIn,
            GetxattrIn, GetxattrOut, InHeader, InterruptIn, LkIn, OpenIn, OutHeader, ReadIn,
            ReleaseIn, SetattrIn, WriteIn, WriteOut, opcode,
        },
        dialect::{DialectSpec, FmapSize},
        fmap,
        reply::{DirentBuf, DirentPlusBuf, FdRead, FmapReply},
    },
    splice::Filled,
    worker::{Ctx, Flow, NO_REPLY, Sent, classify, no_reply, send_on},
};

/// Body offsets in errors count from the start of the request.
const B: usize = InHeader::SIZE;

impl<F: Filesystem> Ctx<'_, F> {
    /// Decode and serve. `Err` = the body is malformed (answered EINVAL by the caller).
    pub(super) fn dispatch(
        &mut self,
        h: &InHeader,
        body: &[u8],
    ) -> Result<(Sent, Flow), DecodeError> {
        let s = self.s;
        let op = h.opcode;
        let u = h.unique;
        if op == opcode::INIT {
            return Ok((self.init(h, body)?, Flow::Continue));
        }
        let Some(neg) = s.negotiated.get() else {
            if no_reply(op) {
                return Ok((NO_REPLY, Flow::Continue));
            }
            s.log_limited(format_args!(
                "opcode {op} unique {u} before INIT was negotiated: EIO"
            ));
            return Ok((self.send_err(u, Errno::EIO), Flow::Continue));
        };
        let req = Request {
            unique: u,
            opcode: op,
            nodeid: h.nodeid,
            uid: h.uid,
            gid: h.gid,
            pid: h.pid,
            negotiated: neg,
        };
        let ino = h.nodeid;
        let fs = &s.fs;
        if let Some(spec) = neg.famfs {
            if op == spec.get_fmap {
                return Ok((self.get_fmap(&req, spec, body), Flow::Continue));
            }
            if op == spec.get_daxdev {
                return Ok((self.get_daxdev(&req), Flow::Continue));
            }
        }
        let sent = match op {
            opcode::LOOKUP => {
                let name = abi::c_name(body, op, B)?;
                let r = fs.lookup(&req, ino, OsStr::from_bytes(name));
                self.send_result(u, r.map(|e| e.to_bytes()))
            }
            opcode::FORGET => {
                let a = ForgetIn::decode(body, op, B)?;
                fs.forget(&req, ino, a.nlookup);
                NO_REPLY
            }
            opcode::BATCH_FORGET => {
                self.batch_forget(&req, body)?;
                NO_REPLY
            }
            opcode::GETATTR => {
                let a = GetattrIn::decode(body, op, B)?;
                let r = fs.getattr(&req, ino, &a);
                self.send_result(u, r.map(|a| a.to_bytes()))
            }
            opcode::SETATTR => {
                let a = SetattrIn::decode(body, op, B)?;
                let r = fs.setattr(&req, ino, &a);
                self.send_result(u, r.map(|a| a.to_bytes()))
            }
            opcode::STATFS => {
                let r = fs.statfs(&req, ino);
                self.send_result(u, r.map(|a| a.to_bytes()))
            }
            opcode::OPEN | opcode::OPENDIR => {
                let a = OpenIn::decode(body, op, B)?;
                let r = if op == opcode::OPEN {
                    fs.open(&req, ino, &a)
                } else {
                    fs.opendir(&req, ino, &a)
                };
                self.send_result(u, r.map(|o| o.to_bytes()))
            }
            opcode::RELEASE | opcode::RELEASEDIR => {
                let a = ReleaseIn::decode(body, op, B)?;
                let r = if op == opcode::RELEASE {
                    fs.release(&req, ino, &a)
                } else {
                    fs.releasedir(&req, ino, &a)
                };
                self.send_unit(u, r)
            }
            opcode::FLUSH => {
                let a = FlushIn::decode(body, op, B)?;
                let r = fs.flush(&req, ino, &a);
                self.send_unit(u, r)
            }
            opcode::FSYNC => {
                let a = FsyncIn::decode(body, op, B)?;
                let r = fs.fsync(&req, ino, &a);
                self.send_unit(u, r)
            }
            opcode::READ => {
                let a = ReadIn::decode(body, op, B)?;
                self.read(&req, &a)
            }
            opcode::WRITE => self.write(&req, body)?,
            opcode::GETXATTR => {
                let a = GetxattrIn::decode(body, op, B)?;
                let name = abi::c_name(&body[GetxattrIn::SIZE..], op, B + GetxattrIn::SIZE)?;
                self.getxattr(&req, &a, OsStr::from_bytes(name))
            }
            opcode::READDIR | opcode::READDIRPLUS => {
                let a = ReadIn::decode(body, op, B)?;
                self.readdir(&req, &a, op == opcode::READDIRPLUS)
            }
            opcode::SETLK | opcode::SETLKW => {
                let a = LkIn::decode(body, op, B)?;
                let r = fs.setlk(&req, ino, &a, op == opcode::SETLKW);
                self.send_unit(u, r)
            }
            opcode::INTERRUPT => {
                // Validated, then ignored: every request is answered when it completes anyway.
                InterruptIn::decode(body, op, B)?;
                NO_REPLY
            }
            opcode::NOTIFY_REPLY => NO_REPLY,
            opcode::DESTROY => {
                s.destroy_once();
                let sent = self.send(u, 0, &[]);
                return Ok((sent, Flow::Exit));
            }
            _ => self.send_err(u, Errno::ENOSYS),
        };
        Ok((sent, Flow::Continue))
    }

    /// BATCH_FORGET: the entries present are served even when `count` promises more (logged as
    /// malformed); no reply either way.
    fn batch_forget(&mut self, req: &Request<'_>, body: &[u8]) -> Result<(), DecodeError> {
        let s = self.s;
        let op = req.opcode;
        let a = BatchForgetIn::decode(body, op, B)?;
        let list = &body[BatchForgetIn::SIZE..];
        let want = a.count as usize * ForgetOne::SIZE;
        if want > list.len() {
            s.log_malformed(
                op,
                req.unique,
                &format_args!(
                    "count {} needs {want} bytes of entries, request has {}",
                    a.count,
                    list.len()
                ),
            );
        }
        s.fs.batch_forget(req, ForgetList::new(&list[..want.min(list.len())]));
        Ok(())
    }

    /// WRITE: the data must be as long as `size` says (`Err` otherwise).
    fn write(&mut self, req: &Request<'_>, body: &[u8]) -> Result<Sent, DecodeError> {
        let s = self.s;
        let (op, u) = (req.opcode, req.unique);
        let a = WriteIn::decode(body, op, B)?;
        let data = &body[WriteIn::SIZE..];
        let Some(data) = data.get(..a.size as usize) else {
            return Err(DecodeError {
                opcode: op,
                what: "write data",
                field: "data",
                offset: B + WriteIn::SIZE,
                need: a.size as usize,
                have: data.len(),
            });
        };
        Ok(match s.fs.write(req, req.nodeid, &a, data) {
            Ok(n) => {
                self.rec.io_bytes = n;
                let out = WriteOut {
                    size: n,
                    ..Default::default()
                };
                self.send(u, 0, &[&out.to_bytes()])
            }
            Err(e) => self.send_err(u, e),
        })
    }

    fn read(&mut self, req: &Request<'_>, a: &ReadIn) -> Sent {
        let s = self.s;
        let lim = (a.size as usize).min(self.data.len());
        if self.pipe.is_some()
            && s.splice_on.load(Ordering::Relaxed)
            && let Some(sent) = self.read_spliced(req, a, lim)
        {
            return sent;
        }
        let Ctx { ch, data, rec, .. } = self;
        match s.fs.read(req, req.nodeid, a, &mut data[..lim]) {
            Ok(bytes) => {
                let bytes = if bytes.len() > a.size as usize {
                    s.log_limited(format_args!(
                        "READ unique {}: filesystem returned {} bytes for a {}-byte read; cut",
                        req.unique,
                        bytes.len(),
                        a.size
                    ));
                    &bytes[..a.size as usize]
                } else {
                    bytes
                };
                rec.io_bytes = bytes.len() as u32;
                send_on(s, ch, req.unique, 0, &[bytes])
            }
            Err(e) => send_on(s, ch, req.unique, e.wire(), &[]),
        }
    }

    /// READ through `Filesystem::read_fd` and this worker's pipe. None: answer by copying (the
    /// filesystem declined, the reply does not fit the pipe, or a splice from its descriptor came
    /// back short: the copying path then reads the same bytes or answers the error).
    fn read_spliced(&mut self, req: &Request<'_>, a: &ReadIn, lim: usize) -> Option<Sent> {
        let s = self.s;
        let Ctx {
            ch,
            data,
            rec,
            pipe,
            ..
        } = self;
        let pipe = pipe.as_ref().filter(|p| p.may_fit(lim))?;
        let mut src = FdRead::new(lim);
        match s.fs.read_fd(req, req.nodeid, a, &mut src) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(send_on(s, ch, req.unique, e.wire(), &[])),
        }
        if src.total() == 0 {
            rec.io_bytes = 0;
            return Some(send_on(s, ch, req.unique, 0, &[]));
        }
        let total = OutHeader::SIZE + src.total();
        let len = u32::try_from(total).ok()?;
        let head = OutHeader {
            len,
            error: 0,
            unique: req.unique,
        }
        .to_bytes();
        if pipe.fill(&head, &src, data) != Filled::Whole {
            s.stats.splice_fallbacks.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        rec.io_bytes = src.total() as u32;
        let sent = Sent {
            error: 0,
            bytes: len,
            gone: false,
        };
        let r = pipe.send(ch.raw_fd(), total, data);
        s.stats.spliced_replies.fetch_add(1, Ordering::Relaxed);
        Some(classify(s, req.unique, total, sent, r))
    }

    fn getxattr(&mut self, req: &Request<'_>, a: &GetxattrIn, name: &OsStr) -> Sent {
        let s = self.s;
        let Ctx { ch, data, .. } = self;
        match s.fs.getxattr(req, req.nodeid, name, &mut data[..]) {
            Ok(value) => {
                if a.size == 0 {
                    match u32::try_from(value.len()) {
                        Ok(size) => {
                            let out = GetxattrOut {
                                size,
                                ..Default::default()
                            };
                            send_on(s, ch, req.unique, 0, &[&out.to_bytes()])
                        }
                        Err(_) => send_on(s, ch, req.unique, Errno::ERANGE.wire(), &[]),
                    }
                } else if value.len() > a.size as usize {
                    send_on(s, ch, req.unique, Errno::ERANGE.wire(), &[])
                } else {
                    send_on(s, ch, req.unique, 0, &[value])
                }
            }
            Err(e) => send_on(s, ch, req.unique, e.wire(), &[]),
        }
    }

    fn readdir(&mut self, req: &Request<'_>, a: &ReadIn, plus: bool) -> Sent {
        let s = self.s;
        let lim = (a.size as usize).min(self.data.len());
        let Ctx { ch, data, .. } = self;
        let buf = &mut data[..lim];
        let r = if plus {
            let mut out = DirentPlusBuf::new(buf);
            s.fs.readdirplus(req, req.nodeid, a, &mut out)
                .map(|()| out.len())
        } else {
            let mut out = DirentBuf::new(buf);
            s.fs.readdir(req, req.nodeid, a, &mut out)
                .map(|()| out.len())
        };
        match r {
            Ok(n) => send_on(s, ch, req.unique, 0, &[&data[..n]]),
            Err(e) => send_on(s, ch, req.unique, e.wire(), &[]),
        }
    }

    fn get_fmap(&mut self, req: &Request<'_>, spec: &DialectSpec, body: &[u8]) -> Sent {
        let s = self.s;
        let limit = spec.fmap_limit(body);
        let Ctx { ch, fmap, rec, .. } = self;
        let mut out = FmapReply::new(fmap);
        if let Err(e) = s.fs.get_fmap(req, req.nodeid, &mut out) {
            return send_on(s, ch, req.unique, e.wire(), &[]);
        }
        let Some((total, extents)) = out.encoded() else {
            s.log_limited(format_args!(
                "GET_FMAP unique {} nodeid {}: filesystem returned no fmap: EIO",
                req.unique, req.nodeid
            ));
            return send_on(s, ch, req.unique, Errno::EIO.wire(), &[]);
        };
        match spec.fmap_size(limit, total) {
            FmapSize::Full => {
                rec.fmap_bytes = total as u32;
                rec.fmap_extents = extents as u32;
                send_on(s, ch, req.unique, 0, &[out.bytes()])
            }
            FmapSize::NeededSize(need) => {
                rec.retry = true;
                send_on(s, ch, req.unique, 0, &[&need.to_ne_bytes()])
            }
            FmapSize::TooBig => {
                s.log_limited(format_args!(
                    "GET_FMAP unique {} nodeid {}: fmap of {total} bytes ({extents} extents) does not \
                     fit the kernel's {limit}-byte buffer and {} has no retry: EINVAL",
                    req.unique, req.nodeid, spec.name
                ));
                send_on(s, ch, req.unique, Errno::EINVAL.wire(), &[])
            }
        }
    }

    fn get_daxdev(&mut self, req: &Request<'_>) -> Sent {
        let s = self.s;
        match s.fs.get_daxdev(req, req.nodeid) {
            Ok(path) => match fmap::daxdev_reply(req.nodeid, path.as_os_str().as_bytes()) {
                Some(out) => self.send(req.unique, 0, &[&out.to_bytes()]),
                None => {
                    s.log_limited(format_args!(
                        "GET_DAXDEV unique {} index {}: index or path {} does not fit the reply: EINVAL",
                        req.unique,
                        req.nodeid,
                        path.display()
                    ));
                    self.send_err(req.unique, Errno::EINVAL)
                }
            },
            Err(e) => self.send_err(req.unique, e),
        }
    }
}
