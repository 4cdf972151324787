//! A minimal reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`, and a module's split BTF on top of
//! it) that answers one question: at which byte offset, and with which size, does a member path such as
//! `fuse_req.in.h.unique` sit on the running kernel? The request-pointer probes read those fields with
//! `bpf_probe_read_kernel` at offsets filled in at load time — hand-rolled CO-RE for the few fields they
//! need. Owns BTF parsing only; must not attach anything or touch maps.

use std::path::Path;

use anyhow::{Context, Result, bail};
use famfs_common::fuse_request::ReqOffsets;

const MAGIC: u16 = 0xeb9f;
const HDR_MIN: usize = 24;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Clone, Copy, Debug)]
struct TypeRec {
    name_off: u32,
    info: u32,
    size_type: u32,
    /// Byte offset of the kind-specific data (members of a struct) in the type section.
    extra: usize,
}

impl TypeRec {
    fn kind(&self) -> u32 {
        (self.info >> 24) & 0x1f
    }
    fn vlen(&self) -> usize {
        (self.info & 0xffff) as usize
    }
    fn kind_flag(&self) -> bool {
        self.info >> 31 != 0
    }
}

/// One parsed BTF blob; a split blob (a module's) keeps its base (vmlinux) for ids and strings below it.
#[derive(Debug)]
pub struct Btf {
    types_sec: Vec<u8>,
    strs: Vec<u8>,
    types: Vec<TypeRec>,
    /// Ids of this blob start at `first_id` (1 for vmlinux, base count + 1 for a split blob).
    first_id: u32,
    /// String offsets of this blob start at `str_base` (base string length for a split blob).
    str_base: u32,
    base: Option<Box<Btf>>,
}

fn u32_at(b: &[u8], off: usize, what: &str) -> Result<u32> {
    let s = b
        .get(off..off + 4)
        .with_context(|| format!("BTF truncated: {what} at byte {off}"))?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl Btf {
    /// Parse a little-endian BTF blob. `base` is the vmlinux BTF when `data` is a module's split BTF.
    pub fn parse(data: &[u8], base: Option<Btf>) -> Result<Btf> {
        if data.len() < HDR_MIN {
            bail!(
                "BTF blob of {} bytes is shorter than its header",
                data.len()
            );
        }
        let magic = u16::from_le_bytes([data[0], data[1]]);
        if magic != MAGIC {
            bail!("BTF magic {magic:#06x} at byte 0, expected {MAGIC:#06x} (little-endian)");
        }
        let hdr_len = u32_at(data, 4, "hdr_len")? as usize;
        let type_off = u32_at(data, 8, "type_off")? as usize;
        let type_len = u32_at(data, 12, "type_len")? as usize;
        let str_off = u32_at(data, 16, "str_off")? as usize;
        let str_len = u32_at(data, 20, "str_len")? as usize;
        let sec = |off: usize, len: usize, what: &str| -> Result<Vec<u8>> {
            let start = hdr_len
                .checked_add(off)
                .with_context(|| format!("BTF {what} offset overflows"))?;
            data.get(start..start + len)
                .map(<[u8]>::to_vec)
                .with_context(|| {
                    format!(
                        "BTF {what} section {start}..{} lies beyond the blob ({} bytes)",
                        start + len,
                        data.len()
                    )
                })
        };
        let types_sec = sec(type_off, type_len, "type")?;
        let strs = sec(str_off, str_len, "string")?;
        let (first_id, str_base) = match &base {
            Some(b) => (b.next_id(), b.str_end()),
            None => (1, 0),
        };
        let mut types = Vec::new();
        let mut off = 0usize;
        while off < types_sec.len() {
            let name_off = u32_at(&types_sec, off, "type name")?;
            let info = u32_at(&types_sec, off + 4, "type info")?;
            let size_type = u32_at(&types_sec, off + 8, "type size")?;
            let rec = TypeRec {
                name_off,
                info,
                size_type,
                extra: off + 12,
            };
            let vlen = rec.vlen();
            let extra = match rec.kind() {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                k => bail!(
                    "BTF type {} at byte {off} of the type section has unknown kind {k}",
                    first_id as usize + types.len()
                ),
            };
            types.push(rec);
            off += 12 + extra;
        }
        if off != types_sec.len() {
            bail!("BTF type section ends inside a type record");
        }
        Ok(Btf {
            types_sec,
            strs,
            types,
            first_id,
            str_base,
            base: base.map(Box::new),
        })
    }

    /// The running kernel's BTF for `struct_name`: vmlinux, else the split BTF of `module` on top of it.
    pub fn for_struct(struct_name: &str, module: &str) -> Result<Btf> {
        let dir = Path::new("/sys/kernel/btf");
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
        };
        let vmlinux = Btf::parse(&read("vmlinux")?, None).context("parsing vmlinux BTF")?;
        if vmlinux.find_struct(struct_name).is_some() {
            return Ok(vmlinux);
        }
        let m = read(module).with_context(|| {
            format!("struct {struct_name} is not in vmlinux BTF and module {module} has no BTF")
        })?;
        Btf::parse(&m, Some(vmlinux)).with_context(|| format!("parsing {module} BTF"))
    }

    fn next_id(&self) -> u32 {
        self.first_id + self.types.len() as u32
    }

    fn str_end(&self) -> u32 {
        self.str_base + self.strs.len() as u32
    }

    fn ty(&self, id: u32) -> Option<(&Btf, TypeRec)> {
        if id < self.first_id {
            return self.base.as_deref()?.ty(id);
        }
        let t = *self.types.get((id - self.first_id) as usize)?;
        Some((self, t))
    }

    fn name(&self, off: u32) -> &str {
        if off < self.str_base {
            return self.base.as_deref().map(|b| b.name(off)).unwrap_or("");
        }
        let start = (off - self.str_base) as usize;
        let Some(rest) = self.strs.get(start..) else {
            return "";
        };
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Id of the struct named `name` (a complete definition, not a forward declaration).
    pub fn find_struct(&self, name: &str) -> Option<u32> {
        for (i, t) in self.types.iter().enumerate() {
            if t.kind() == KIND_STRUCT && self.name(t.name_off) == name {
                return Some(self.first_id + i as u32);
            }
        }
        self.base.as_deref()?.find_struct(name)
    }

    /// Skip typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Result<(u32, TypeRec)> {
        for _ in 0..32 {
            let (_, t) = self
                .ty(id)
                .with_context(|| format!("BTF type id {id} out of range"))?;
            match t.kind() {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_type
                }
                _ => return Ok((id, t)),
            }
        }
        bail!("BTF type id {id}: typedef chain longer than 32")
    }

    /// Byte size of a resolved type (integers, enums, pointers, structs and unions).
    fn size_of(&self, id: u32) -> Result<u32> {
        let (_, t) = self.resolve(id)?;
        match t.kind() {
            KIND_INT | KIND_ENUM | KIND_ENUM64 | KIND_STRUCT | KIND_UNION | KIND_FLOAT => {
                Ok(t.size_type)
            }
            KIND_PTR => Ok(8),
            k => bail!("BTF type id {id} (kind {k}) has no plain size"),
        }
    }

    /// (byte offset, member type id) of `member` in the struct or union `id`, looking through anonymous
    /// struct/union members.
    fn member(&self, id: u32, member: &str) -> Result<Option<(u32, u32)>> {
        let (rid, t) = self.resolve(id)?;
        if !matches!(t.kind(), KIND_STRUCT | KIND_UNION) {
            bail!("BTF type id {rid} is not a struct or union");
        }
        let (owner, _) = self
            .ty(rid)
            .with_context(|| format!("BTF type id {rid} out of range"))?;
        for i in 0..t.vlen() {
            let m = t.extra + 12 * i;
            let name_off = u32_at(&owner.types_sec, m, "member name")?;
            let mtype = u32_at(&owner.types_sec, m + 4, "member type")?;
            let raw = u32_at(&owner.types_sec, m + 8, "member offset")?;
            let (bit_off, bitfield) = if t.kind_flag() {
                (raw & 0xff_ffff, raw >> 24 != 0)
            } else {
                (raw, false)
            };
            let name = owner.name(name_off);
            if name == member {
                if bitfield || bit_off % 8 != 0 {
                    bail!("member `{member}` is a bitfield (bit offset {bit_off})");
                }
                return Ok(Some((bit_off / 8, mtype)));
            }
            if name.is_empty()
                && let Some((off, ty)) = self.member(mtype, member)?
            {
                if bit_off % 8 != 0 {
                    bail!("anonymous member holding `{member}` is not byte aligned");
                }
                return Ok(Some((bit_off / 8 + off, ty)));
            }
        }
        Ok(None)
    }

    /// Byte offset of a member path (`["in", "h", "unique"]`) in struct `root`, checking that the last
    /// member is `size` bytes wide.
    pub fn offset_of(&self, root: &str, path: &[&str], size: u32) -> Result<u32> {
        let what = format!("{root}.{}", path.join("."));
        let mut id = self
            .find_struct(root)
            .with_context(|| format!("struct {root} not in the kernel BTF"))?;
        let mut off = 0u32;
        for m in path {
            let (o, ty) = self
                .member(id, m)
                .with_context(|| format!("resolving {what}"))?
                .with_context(|| format!("{what}: no member `{m}`"))?;
            off += o;
            id = ty;
        }
        let got = self.size_of(id).with_context(|| what.clone())?;
        if got != size {
            bail!("{what} is {got} bytes wide, expected {size}");
        }
        Ok(off)
    }

    /// Whether `member` of struct `root` is a pointer to struct `target`.
    pub fn points_to(&self, root: &str, member: &str, target: &str) -> Result<()> {
        let id = self
            .find_struct(root)
            .with_context(|| format!("struct {root} not in the kernel BTF"))?;
        let (_, ty) = self
            .member(id, member)?
            .with_context(|| format!("{root}: no member `{member}`"))?;
        let (_, t) = self.resolve(ty)?;
        if t.kind() != KIND_PTR {
            bail!("{root}.{member} is not a pointer");
        }
        let (pid, p) = self.resolve(t.size_type)?;
        let (owner, _) = self
            .ty(pid)
            .with_context(|| format!("BTF type id {pid} out of range"))?;
        let name = owner.name(p.name_off);
        if !matches!(p.kind(), KIND_STRUCT | KIND_FWD) || name != target {
            bail!("{root}.{member} points to `{name}`, expected struct {target}");
        }
        Ok(())
    }
}

/// Offsets of the `struct fuse_req` fields the request-pointer probes read, from the kernel's BTF.
pub fn fuse_req_offsets(btf: &Btf) -> Result<ReqOffsets> {
    btf.points_to("fuse_req", "fm", "fuse_mount")?;
    btf.points_to("fuse_mount", "fc", "fuse_conn")?;
    Ok(ReqOffsets {
        in_unique: btf.offset_of("fuse_req", &["in", "h", "unique"], 8)?,
        in_opcode: btf.offset_of("fuse_req", &["in", "h", "opcode"], 4)?,
        in_len: btf.offset_of("fuse_req", &["in", "h", "len"], 4)?,
        out_error: btf.offset_of("fuse_req", &["out", "h", "error"], 4)?,
        out_len: btf.offset_of("fuse_req", &["out", "h", "len"], 4)?,
        req_fm: btf.offset_of("fuse_req", &["fm"], 8)?,
        fm_fc: btf.offset_of("fuse_mount", &["fc"], 8)?,
        fc_dev: btf.offset_of("fuse_conn", &["dev"], 4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob type by type.
    #[derive(Default)]
    struct Builder {
        types: Vec<u8>,
        strs: Vec<u8>,
        count: u32,
    }

    impl Builder {
        fn new() -> Self {
            Builder {
                strs: vec![0],
                ..Default::default()
            }
        }
        fn s(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = self.strs.len() as u32;
            self.strs.extend_from_slice(name.as_bytes());
            self.strs.push(0);
            off
        }
        fn push(&mut self, name: &str, kind: u32, vlen: u32, kflag: bool, size_type: u32) -> u32 {
            let n = self.s(name);
            let info = (kind << 24) | vlen | ((kflag as u32) << 31);
            for v in [n, info, size_type] {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
            self.count += 1;
            self.count
        }
        fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.push(name, KIND_INT, 0, false, size);
            self.types.extend_from_slice(&(size * 8).to_le_bytes());
            id
        }
        fn typedef(&mut self, name: &str, to: u32) -> u32 {
            self.push(name, KIND_TYPEDEF, 0, false, to)
        }
        fn ptr(&mut self, to: u32) -> u32 {
            self.push("", KIND_PTR, 0, false, to)
        }
        fn fwd(&mut self, name: &str) -> u32 {
            self.push(name, KIND_FWD, 0, false, 0)
        }
        /// Members: (name, type, byte offset).
        fn strukt(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            let id = self.push(name, KIND_STRUCT, members.len() as u32, false, size);
            for (m, ty, off) in members {
                let n = self.s(m);
                for v in [n, *ty, off * 8] {
                    self.types.extend_from_slice(&v.to_le_bytes());
                }
            }
            id
        }
        fn blob(&self) -> Vec<u8> {
            let mut b = Vec::new();
            b.extend_from_slice(&MAGIC.to_le_bytes());
            b.push(1);
            b.push(0);
            for v in [
                24u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strs.len() as u32,
            ] {
                b.extend_from_slice(&v.to_le_bytes());
            }
            b.extend_from_slice(&self.types);
            b.extend_from_slice(&self.strs);
            b
        }
    }

    /// A fuse_req shaped like Linux 6.12's (anonymous `in`/`out` wrappers, `fm` after other members).
    fn fuse_blob() -> Vec<u8> {
        let mut b = Builder::new();
        let u32t = b.int("unsigned int", 4);
        let u64t = b.int("long long unsigned int", 8);
        let i32t = b.int("int", 4);
        let dev_t = b.typedef("dev_t", u32t);
        let in_h = b.strukt(
            "fuse_in_header",
            40,
            &[
                ("len", u32t, 0),
                ("opcode", u32t, 4),
                ("unique", u64t, 8),
                ("nodeid", u64t, 16),
            ],
        );
        let out_h = b.strukt(
            "fuse_out_header",
            16,
            &[("len", u32t, 0), ("error", i32t, 4), ("unique", u64t, 8)],
        );
        let in_w = b.strukt("", 40, &[("h", in_h, 0)]);
        let out_w = b.strukt("", 16, &[("h", out_h, 0)]);
        let conn_fwd = b.fwd("fuse_conn");
        let conn_p = b.ptr(conn_fwd);
        let fm = b.strukt("fuse_mount", 16, &[("fc", conn_p, 8)]);
        let fm_p = b.ptr(fm);
        b.strukt(
            "fuse_req",
            200,
            &[
                ("flags", u64t, 40),
                ("in", in_w, 48),
                ("out", out_w, 88),
                ("fm", fm_p, 184),
            ],
        );
        b.strukt("fuse_conn", 1000, &[("dev", dev_t, 640)]);
        b.blob()
    }

    #[test]
    fn resolves_fuse_req_offsets() {
        let btf = Btf::parse(&fuse_blob(), None).unwrap();
        let o = fuse_req_offsets(&btf).unwrap();
        assert_eq!(
            o,
            ReqOffsets {
                in_unique: 56,
                in_opcode: 52,
                in_len: 48,
                out_error: 92,
                out_len: 88,
                req_fm: 184,
                fm_fc: 8,
                fc_dev: 640,
            }
        );
    }

    #[test]
    fn size_and_missing_members_are_named() {
        let btf = Btf::parse(&fuse_blob(), None).unwrap();
        let e = btf
            .offset_of("fuse_req", &["in", "h", "unique"], 4)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "fuse_req.in.h.unique is 8 bytes wide, expected 4"
        );
        let e = btf
            .offset_of("fuse_req", &["in", "h", "nope"], 4)
            .unwrap_err();
        assert_eq!(e.to_string(), "fuse_req.in.h.nope: no member `nope`");
        let e = btf.offset_of("fuse_nothing", &["x"], 4).unwrap_err();
        assert_eq!(e.to_string(), "struct fuse_nothing not in the kernel BTF");
        let e = btf.points_to("fuse_req", "fm", "fuse_conn").unwrap_err();
        assert_eq!(
            e.to_string(),
            "fuse_req.fm points to `fuse_mount`, expected struct fuse_conn"
        );
    }

    #[test]
    fn split_blob_uses_base_ids_and_strings() {
        // Base: the integer types. Split: the structs, referring to base ids.
        let mut base = Builder::new();
        let u32t = base.int("unsigned int", 4);
        let base_btf = Btf::parse(&base.blob(), None).unwrap();
        // Split string offsets continue after the base strings; ids after the base count.
        let base_strs = base.strs.len() as u32;
        let mut b2 = Builder {
            types: Vec::new(),
            strs: vec![0],
            count: base.count,
        };
        let n = base_strs + b2.strs.len() as u32;
        b2.strs.extend_from_slice(b"fuse_conn\0");
        let m = base_strs + b2.strs.len() as u32;
        b2.strs.extend_from_slice(b"dev\0");
        for v in [n, (KIND_STRUCT << 24) | 1, 8, m, u32t, 32] {
            b2.types.extend_from_slice(&v.to_le_bytes());
        }
        let btf = Btf::parse(&b2.blob(), Some(base_btf)).unwrap();
        assert_eq!(btf.find_struct("fuse_conn"), Some(2));
        assert_eq!(btf.offset_of("fuse_conn", &["dev"], 4).unwrap(), 4);
    }

    #[test]
    fn bad_blobs_are_refused_with_where() {
        let e = Btf::parse(&[0u8; 10], None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "BTF blob of 10 bytes is shorter than its header"
        );
        let mut b = fuse_blob();
        b[0] = 0;
        let e = Btf::parse(&b, None).unwrap_err();
        assert!(e.to_string().starts_with("BTF magic"), "{e}");
        let mut b = fuse_blob();
        let len = b.len();
        b.truncate(len - 5);
        let e = Btf::parse(&b, None).unwrap_err();
        assert!(e.to_string().contains("lies beyond the blob"), "{e}");
    }

    #[test]
    fn running_kernel_has_fuse_req_when_it_has_btf() {
        if !Path::new("/sys/kernel/btf/vmlinux").exists() {
            println!("SKIP: running_kernel_has_fuse_req_when_it_has_btf: no kernel BTF");
            return;
        }
        let btf = Btf::for_struct("fuse_req", "fuse").unwrap();
        let o = fuse_req_offsets(&btf).unwrap();
        // Header fields keep their wire order: len, opcode, unique.
        assert_eq!(o.in_opcode, o.in_len + 4);
        assert_eq!(o.in_unique, o.in_len + 8);
        assert_eq!(o.out_error, o.out_len + 4);
    }
}
