//! The FUSE wire as the simulated kernel sees it: one reply or notification ([`Reply`]), READDIR and
//! READDIRPLUS reply parsers, hex test vectors, and builders for request bodies.
//!
//! Owns decoding what the session wrote and encoding what the kernel sends, on the caller's thread.
//! Must not talk to the socket (that is `kernel`).

use std::io;

use super::{
    super::abi::{
        self, BatchForgetIn, DirentHead, EntryOut, ForgetOne, GetFmapIn, GetattrIn, GetxattrIn,
        OpenIn, OutHeader, ReadIn, WireField, WriteIn, opcode,
    },
    invalid,
};

/// One message from the session: a reply (`unique` of its request) or a notification (`unique` 0,
/// `error` = notify code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub unique: u64,
    /// `-errno`, 0 for success (or the notify code).
    pub error: i32,
    /// What follows the 16-byte `fuse_out_header`.
    pub body: Vec<u8>,
}

impl Reply {
    /// Bytes on the wire, header included (equal to the header's `len`, which `recv` checked).
    pub fn wire_len(&self) -> usize {
        OutHeader::SIZE + self.body.len()
    }

    /// The body as one wire struct: the reply must be a success of exactly `T`'s size.
    pub fn decode<T: WireField>(&self) -> io::Result<T> {
        let what = std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("?");
        if self.error != 0 {
            return Err(io::Error::other(format!(
                "unique {}: expected a {what}, got error {}",
                self.unique, self.error
            )));
        }
        if self.body.len() != T::LEN {
            return Err(invalid(format!(
                "unique {}: a {what} is {} bytes, the reply body has {}",
                self.unique,
                T::LEN,
                self.body.len()
            )));
        }
        Ok(T::read(&self.body))
    }
}

/// A READDIR entry as the kernel reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirent {
    pub ino: u64,
    /// Offset of the next entry.
    pub off: u64,
    /// `DT_*` type.
    pub typ: u32,
    pub name: String,
}

impl Dirent {
    pub fn new(ino: u64, off: u64, typ: u32, name: &str) -> Dirent {
        Dirent {
            ino,
            off,
            typ,
            name: name.to_string(),
        }
    }
}

/// A READDIRPLUS entry: the entry (attributes, lookup reference) and its dirent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirentPlus {
    pub entry: EntryOut,
    pub dirent: Dirent,
}

/// The dirent at `pos` of `b` and the position of the next one.
fn dirent_at(b: &[u8], pos: usize, base: usize) -> io::Result<(Dirent, usize)> {
    let h = DirentHead::decode(&b[pos..], opcode::READDIR, base + pos)
        .map_err(|e| invalid(format!("dirent at byte {}: {e}", base + pos)))?;
    let name_at = pos + DirentHead::SIZE;
    let namelen = h.namelen as usize;
    let next = pos + abi::dirent_size(namelen);
    if next > b.len() {
        return Err(invalid(format!(
            "dirent at byte {}: a name of {namelen} bytes (padded) runs past the end at {}",
            base + pos,
            base + b.len()
        )));
    }
    let name = String::from_utf8_lossy(&b[name_at..name_at + namelen]).into_owned();
    Ok((
        Dirent {
            ino: h.ino,
            off: h.off,
            typ: h.typ,
            name,
        },
        next,
    ))
}

/// Parse a READDIR reply body: packed dirents, each padded to 8 bytes.
pub fn parse_dirents(b: &[u8]) -> io::Result<Vec<Dirent>> {
    let mut v = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let (d, next) = dirent_at(b, pos, 0)?;
        v.push(d);
        pos = next;
    }
    Ok(v)
}

/// Parse a READDIRPLUS reply body: `fuse_entry_out` then a dirent, per name.
pub fn parse_direntplus(b: &[u8]) -> io::Result<Vec<DirentPlus>> {
    let mut v = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let entry = EntryOut::decode(&b[pos..], opcode::READDIRPLUS, pos)
            .map_err(|e| invalid(format!("direntplus at byte {pos}: {e}")))?;
        let d_at = pos + EntryOut::SIZE;
        let (dirent, next) = dirent_at(&b[d_at..], 0, d_at)?;
        v.push(DirentPlus { entry, dirent });
        pos = d_at + next;
    }
    Ok(v)
}

/// Bytes from whitespace-separated hex pairs (`"00 0a ff"`); an error names the bad token's index.
pub fn hex(s: &str) -> io::Result<Vec<u8>> {
    s.split_whitespace()
        .enumerate()
        .map(|(i, t)| {
            u8::from_str_radix(t, 16).map_err(|e| invalid(format!("hex token {i} {t:?}: {e}")))
        })
        .collect()
}

// Request bodies.

/// `fuse_getattr_in` with no flags.
pub fn getattr_in() -> [u8; GetattrIn::SIZE] {
    GetattrIn::default().to_bytes()
}

/// `fuse_read_in` (READ, READDIR, READDIRPLUS).
pub fn read_in(fh: u64, offset: u64, size: u32) -> [u8; ReadIn::SIZE] {
    ReadIn {
        fh,
        offset,
        size,
        ..Default::default()
    }
    .to_bytes()
}

/// `fuse_open_in` (OPEN, OPENDIR) with `flags` (`O_*`).
pub fn open_in(flags: u32) -> [u8; OpenIn::SIZE] {
    OpenIn {
        flags,
        ..Default::default()
    }
    .to_bytes()
}

/// A famfs GET_FMAP body announcing a `size`-byte reply buffer (RFC V2 sends it; V3 sends none).
pub fn fmap_size_body(size: u32) -> [u8; GetFmapIn::SIZE] {
    GetFmapIn {
        size,
        ..Default::default()
    }
    .to_bytes()
}

/// A name as requests carry it: the bytes, then a NUL.
pub fn name(n: impl AsRef<[u8]>) -> Vec<u8> {
    let n = n.as_ref();
    let mut v = Vec::with_capacity(n.len() + 1);
    v.extend_from_slice(n);
    v.push(0);
    v
}

/// `fuse_write_in` for `data` at `offset`, followed by the data.
pub fn write_in(fh: u64, offset: u64, data: &[u8]) -> Vec<u8> {
    let mut v = WriteIn {
        fh,
        offset,
        size: u32::try_from(data.len()).unwrap_or(u32::MAX),
        ..Default::default()
    }
    .to_bytes()
    .to_vec();
    v.extend_from_slice(data);
    v
}

/// `fuse_getxattr_in` for a `size`-byte buffer, then the attribute's name and its NUL.
pub fn getxattr_in(size: u32, attr: &[u8]) -> Vec<u8> {
    let mut v = GetxattrIn {
        size,
        ..Default::default()
    }
    .to_bytes()
    .to_vec();
    v.extend_from_slice(&name(attr));
    v
}

/// A FORGET body: `nlookup`.
pub fn forget_in(nlookup: u64) -> [u8; 8] {
    nlookup.to_ne_bytes()
}

/// A BATCH_FORGET body for `(nodeid, nlookup)` pairs.
pub fn batch_forget_in(nodes: &[(u64, u64)]) -> Vec<u8> {
    let mut v = BatchForgetIn {
        count: u32::try_from(nodes.len()).unwrap_or(u32::MAX),
        ..Default::default()
    }
    .to_bytes()
    .to_vec();
    for &(nodeid, nlookup) in nodes {
        v.extend_from_slice(&ForgetOne { nodeid, nlookup }.to_bytes());
    }
    v
}
